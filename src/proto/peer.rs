//! The peer protocol: what nodes tell each other.

use ringkv_sketches::Bloom;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::core::membership::gossip::MemberMeta;
use crate::core::object::Object;
use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, Key};

/// What nodes tell each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A client request the receiver should coordinate (sent by a node outside the key's
    /// preference list). Never forwarded again.
    Forward {
        id: u64,
        request: ClientRequest,
    },
    ForwardReply {
        id: u64,
        reply: ClientReply,
    },
    /// Merge `object` into the replica (or, with `hint`, into the hint store for that
    /// primary) and ack after it is persisted.
    Replicate {
        id: u64,
        key: Key,
        object: Object,
        hint: Option<NodeId>,
    },
    ReplicateAck {
        id: u64,
        error: Option<String>,
    },
    /// Send back the replica's copy (from the hint store, with `hint`).
    Read {
        id: u64,
        key: Key,
        hint: Option<NodeId>,
    },
    ReadReply {
        id: u64,
        object: Option<Object>,
        error: Option<String>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// The sender's member table (push-pull: the receiver answers with its own when the
    /// sender lacks something). `partitions` must match, or the clusters are different.
    Members {
        partitions: u32,
        members: Vec<MemberMeta>,
    },
    /// Objects of a partition the sender no longer owns; merge, persist, then ack.
    Transfer {
        id: u64,
        partition: u32,
        objects: Vec<(Key, Object)>,
    },
    TransferAck {
        id: u64,
        error: Option<String>,
    },
    /// Anti-entropy: the initiator's roots of the partitions it compares with the
    /// receiver this tick, as packed records `[partition delta, LEB128][root u16 BE]` in
    /// partition order, each root cut to 16 bits under `salt` (see
    /// `anti_entropy::short16`). One message per peer per tick: a message per partition
    /// would cost more in framing than in hashes.
    AeRoots {
        salt: u64,
        #[serde(with = "serde_bytes")]
        roots: Vec<u8>,
    },
    /// Anti-entropy: per partition whose root differed, the responder's 16 branch hashes
    /// (XOR of 16 leaves each), u16 BE each under `salt`.
    AeBranches {
        salt: u64,
        parts: Vec<(u32, ByteBuf)>,
    },
    /// Anti-entropy: per partition, for each differing branch the record
    /// `[branch u8][bitmap u16 BE of non-empty leaves][u16 BE per non-empty leaf]`.
    AeLeaves {
        salt: u64,
        parts: Vec<(u32, ByteBuf)>,
    },
    /// Anti-entropy: per partition, the differing segments (one byte each) and the
    /// sender's entry hashes in them (`short32` of `hash(key ‖ digest)`, u32 BE each).
    AeKeys {
        salt: u64,
        parts: Vec<(u32, ByteBuf, ByteBuf)>,
    },
    /// Anti-entropy: per partition, segments and the entry hashes (as in `AeKeys`) the
    /// sender lacks; the receiver answers with a `Replicate` of each such key (merge
    /// repairs, so it is safe to repeat).
    AePull {
        salt: u64,
        parts: Vec<(u32, ByteBuf, ByteBuf)>,
    },
    /// Anti-entropy: an HLL sketch of the sender's entries (`hash(key ‖ digest)`) of a
    /// partition whose roots differ, with its branches (as in `AeBranches`) so that the
    /// receiver can still descend the tree when the estimated difference is small.
    AeSketch {
        salt: u64,
        partition: u32,
        #[serde(with = "serde_bytes")]
        branches: Vec<u8>,
        /// The sketch as compact msgpack; decoded (and validated) by the receiver.
        #[serde(with = "serde_bytes")]
        hll: Vec<u8>,
    },
    /// Anti-entropy, Bloom path: the sender's root and a filter of its entries; the
    /// receiver pushes the entries the filter lacks, then answers with its own filter.
    /// `estimate` is the expected number of differing entries, which sizes the filters.
    AeBloom {
        partition: u32,
        round: u8,
        root: u64,
        estimate: u64,
        filter: Box<Bloom>,
    },
    /// Anti-entropy, Bloom path: the answer to `AeBloom` — `pushed` entries were sent,
    /// and here is the responder's filter (fresh seed) for the other direction.
    AeBloomReply {
        partition: u32,
        round: u8,
        estimate: u64,
        pushed: u32,
        filter: Box<Bloom>,
    },
    /// Anti-entropy, Bloom path: a round found differences; if the receiver's root still
    /// differs from `root`, it starts round `round` by sending its filter.
    AeBloomNext {
        partition: u32,
        round: u8,
        root: u64,
        estimate: u64,
    },
    /// Tombstone reaping: the partition's first primary asks another primary whether it
    /// has held each of these tombstones (key, version digest) for the grace period.
    ReapCheck {
        round: u64,
        partition: u32,
        entries: Vec<(Key, u64)>,
    },
    /// Tombstone reaping: the keys of a `ReapCheck` the sender holds as the same
    /// tombstone, and has for the grace period.
    ReapConfirm {
        round: u64,
        partition: u32,
        keys: Vec<Key>,
    },
    /// Tombstone reaping: every primary confirmed these; remove each key that is still
    /// exactly this tombstone.
    Reap {
        partition: u32,
        entries: Vec<(Key, u64)>,
    },
}

impl PeerMessage {
    /// True for messages that promise nothing about the sender's disk, so a driver may
    /// send them before the persist that covers the batch that produced them: a
    /// `Replicate` asks its receiver to merge and persist an object (the receiver's ack
    /// is the promise), and `Read` and `Forward` are bare requests. Acks, replies and
    /// everything else wait for the persist. A node that crashes before persisting what
    /// it replicated restarts under a fresh actor id (`core/node/boot.rs`), so it never issues
    /// the dots it lost again.
    pub fn may_precede_persist(&self) -> bool {
        matches!(
            self,
            PeerMessage::Replicate { .. } | PeerMessage::Read { .. } | PeerMessage::Forward { .. }
        )
    }
}
