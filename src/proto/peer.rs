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
        /// The forwarding node's id for this request, echoed in the `ForwardReply`; the
        /// receiver coordinates each (sender, id) once, so a duplicate forward is ignored.
        id: u64,
        /// The client's request, unchanged.
        request: ClientRequest,
    },
    /// The coordinator's answer to a `Forward`; the receiver relays `reply` to the client
    /// that asked it.
    ForwardReply {
        /// The `id` of the `Forward` this answers.
        id: u64,
        /// The reply to pass on to the client.
        reply: ClientReply,
    },
    /// Merge `object` into the replica (or, with `hint`, into the hint store for that
    /// primary) and ack after it is persisted.
    Replicate {
        /// The coordinator's id for this write, echoed in the `ReplicateAck`.
        id: u64,
        /// The key the object is stored under.
        key: Key,
        /// The whole object (not a delta); merging it twice changes nothing.
        object: Object,
        /// `Some(primary)` when the receiver stands in for a down `primary`: it keeps the
        /// object in its hint store for later handoff instead of serving it. A hint naming
        /// the receiver itself is treated as `None`.
        hint: Option<NodeId>,
    },
    /// A replica's answer to `Replicate`: the coordinator counts it toward the write
    /// quorum, or hinted handoff marks the hint delivered.
    ReplicateAck {
        /// The `id` of the `Replicate` this answers.
        id: u64,
        /// `None` when the object was merged and will be persisted before the ack leaves;
        /// otherwise the replica's storage error as text, and nothing changed there.
        error: Option<String>,
    },
    /// Send back the replica's copy (from the hint store, with `hint`).
    Read {
        /// The coordinator's id for this read, echoed in the `ReadReply`.
        id: u64,
        /// The key to read.
        key: Key,
        /// `Some(primary)` to read the copy held in the hint store for `primary`; a hint
        /// naming the receiver itself is treated as `None`.
        hint: Option<NodeId>,
    },
    /// A replica's answer to `Read`: the coordinator counts it toward the read quorum and
    /// read-repairs stale replicas.
    ReadReply {
        /// The `id` of the `Read` this answers.
        id: u64,
        /// The replica's copy, `None` when it holds nothing for the key (or on `error`).
        object: Option<Object>,
        /// `None` on success; otherwise the replica's storage error as text.
        error: Option<String>,
    },
    /// A liveness probe: the receiver answers `Pong` with the same `nonce`.
    Ping {
        /// Chosen by the sender to match the `Pong`.
        nonce: u64,
    },
    /// The answer to a `Ping`; the receiver ignores it.
    Pong {
        /// The `nonce` of the `Ping` this answers.
        nonce: u64,
    },
    /// The sender's member table (push-pull: the receiver answers with its own when the
    /// sender lacks something). `partitions` must match, or the clusters are different.
    Members {
        /// The sender's configured partition count; a table with another count is refused.
        partitions: u32,
        /// Every member the sender knows, with its address, state and version; the receiver
        /// keeps the newer version of each, and refuses a table over the member limit.
        members: Vec<MemberMeta>,
    },
    /// Objects of a partition the sender no longer owns; merge, persist, then ack.
    Transfer {
        /// The sender's id for this batch, echoed in the `TransferAck`.
        id: u64,
        /// The partition the objects belong to.
        partition: u32,
        /// The batch: each key with its whole object, merged by the receiver like a
        /// `Replicate`.
        objects: Vec<(Key, Object)>,
    },
    /// A new owner's answer to `Transfer`: once every owner acked, the sender drops the
    /// batch's keys it no longer owns.
    TransferAck {
        /// The `id` of the `Transfer` this answers.
        id: u64,
        /// `None` when the whole batch was merged; otherwise the receiver's storage error
        /// as text, and the sender keeps the keys and retries later.
        error: Option<String>,
    },
    /// Anti-entropy: the initiator's roots of the partitions it compares with the
    /// receiver this tick, as packed records `[partition delta, LEB128][root u16 BE]` in
    /// partition order, each root cut to 16 bits under `salt` (see
    /// `anti_entropy::short16`). One message per peer per tick: a message per partition
    /// would cost more in framing than in hashes.
    AeRoots {
        /// Drawn afresh by the initiator per exchange; every later message of the exchange
        /// echoes it, and all short hashes are cut under it, so a collision only delays a
        /// repair by one cycle.
        salt: u64,
        /// The packed `[partition delta][root]` records.
        #[serde(with = "serde_bytes")]
        roots: Vec<u8>,
    },
    /// Anti-entropy: per partition whose root differed, the responder's 16 branch hashes
    /// (XOR of 16 leaves each), u16 BE each under `salt`.
    AeBranches {
        /// The exchange's salt, echoed from `AeRoots`.
        salt: u64,
        /// Per differing partition: its number and the 16 branch hashes, 2 bytes each.
        parts: Vec<(u32, ByteBuf)>,
    },
    /// Anti-entropy: per partition, for each differing branch the record
    /// `[branch u8][bitmap u16 BE of non-empty leaves][u16 BE per non-empty leaf]`.
    AeLeaves {
        /// The exchange's salt, echoed from `AeRoots`.
        salt: u64,
        /// Per partition: its number and the packed branch records.
        parts: Vec<(u32, ByteBuf)>,
    },
    /// Anti-entropy: per partition, the differing segments (one byte each) and the
    /// sender's entry hashes in them (`short32` of `hash(key ‖ digest)`, u32 BE each).
    AeKeys {
        /// The exchange's salt, echoed from `AeRoots`.
        salt: u64,
        /// Per partition: its number, the differing segments, and the sender's entry hashes
        /// in them.
        parts: Vec<(u32, ByteBuf, ByteBuf)>,
    },
    /// Anti-entropy: per partition, segments and the entry hashes (as in `AeKeys`) the
    /// sender lacks; the receiver answers with a `Replicate` of each such key (merge
    /// repairs, so it is safe to repeat).
    AePull {
        /// The exchange's salt, echoed from `AeRoots`.
        salt: u64,
        /// Per partition: its number, the segments, and the entry hashes the sender lacks.
        parts: Vec<(u32, ByteBuf, ByteBuf)>,
    },
    /// Anti-entropy: an HLL sketch of the sender's entries (`hash(key ‖ digest)`) of a
    /// partition whose roots differ, with its branches (as in `AeBranches`) so that the
    /// receiver can still descend the tree when the estimated difference is small.
    AeSketch {
        /// The exchange's salt, echoed from `AeRoots`.
        salt: u64,
        /// The partition the sketch covers.
        partition: u32,
        /// The sender's 16 branch hashes of the partition, 2 bytes each, as in
        /// `AeBranches`.
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
        /// The partition being reconciled.
        partition: u32,
        /// The round number, from 1 up to `BLOOM_ROUNDS_MAX`; a message past it is ignored.
        round: u8,
        /// The sender's full Merkle root of the partition; a receiver whose root equals it
        /// has converged and does nothing.
        root: u64,
        /// The expected number of differing entries, estimated from the HLL sketches (or
        /// from the previous round); it sizes the filters.
        estimate: u64,
        /// A Bloom filter of the sender's entries (`hash(key ‖ digest)`) in the partition.
        filter: Box<Bloom>,
    },
    /// Anti-entropy, Bloom path: the answer to `AeBloom` — `pushed` entries were sent,
    /// and here is the responder's filter (fresh seed) for the other direction.
    AeBloomReply {
        /// The partition being reconciled.
        partition: u32,
        /// The round this answers, echoed from `AeBloom`.
        round: u8,
        /// The estimate the filters are sized for, echoed from `AeBloom`.
        estimate: u64,
        /// How many entries the responder pushed (as `Replicate`) because the filter lacked
        /// them.
        pushed: u32,
        /// A filter of the responder's entries with a fresh seed, for the initiator to push
        /// what it lacks.
        filter: Box<Bloom>,
    },
    /// Anti-entropy, Bloom path: a round found differences; if the receiver's root still
    /// differs from `root`, it starts round `round` by sending its filter.
    AeBloomNext {
        /// The partition being reconciled.
        partition: u32,
        /// The next round's number, one past the round that found differences.
        round: u8,
        /// The sender's Merkle root of the partition after the previous round.
        root: u64,
        /// The expected number of differences left, from what the previous round found and
        /// the filters' false-positive rate.
        estimate: u64,
    },
    /// Tombstone reaping: the partition's first primary asks another primary whether it
    /// has held each of these tombstones (key, version digest) for the grace period.
    ReapCheck {
        /// The reaping round's id, echoed in the `ReapConfirm`.
        round: u64,
        /// The partition the tombstones belong to.
        partition: u32,
        /// Each tombstone's key and version digest.
        entries: Vec<(Key, u64)>,
    },
    /// Tombstone reaping: the keys of a `ReapCheck` the sender holds as the same
    /// tombstone, and has for the grace period.
    ReapConfirm {
        /// The `round` of the `ReapCheck` this answers.
        round: u64,
        /// The partition, echoed from the `ReapCheck`.
        partition: u32,
        /// The keys the sender holds as the same tombstone and has held for the grace
        /// period; a key left out is not reaped this round.
        keys: Vec<Key>,
    },
    /// Tombstone reaping: every primary confirmed these; remove each key that is still
    /// exactly this tombstone.
    Reap {
        /// The partition the tombstones belong to.
        partition: u32,
        /// Each key and the digest of the tombstone to remove; a key whose version changed
        /// since is kept.
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
