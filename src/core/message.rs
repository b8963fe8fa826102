//! The wire protocols: what clients ask nodes, and what nodes tell each other.
//!
//! Both protocols are plain serde enums, encoded as msgpack inside length-prefixed frames
//! by `net/`. Every frame carries [`PROTOCOL_VERSION`] in its envelope, so a node can
//! refuse a peer that speaks another version with a clear error instead of
//! misinterpreting it. Fields may be added with `#[serde(default)]`; variants are never
//! renumbered. Every peer message that changes state is idempotent: replication ships
//! whole objects and merges them, so retries and duplicates are harmless.

use std::fmt;

use ringkv_sketches::Bloom;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

use crate::core::gossip::MemberMeta;
use crate::core::object::{Context, Object, ObjectError, Op, ReadValue};
use crate::core::ring::NodeId;
pub use crate::core::stats::StatsInfo;

/// The protocol version this build speaks. 2: gossip membership, batched peer streams and
/// the short-hash anti-entropy messages (a version-1 node cannot talk to a version-2 one).
/// 3: client sessions ([`WireBody::Session`]), many requests on one long-lived stream.
pub const PROTOCOL_VERSION: u16 = 3;
/// The session response id that answers no request (see [`SessionResponse`]); clients
/// number their requests from 1.
pub const SESSION_ID_NONE: u64 = 0;
/// Largest N a request may ask for.
pub const REPLICAS_MAX: u8 = 9;
/// Longest request timeout a client may ask for.
pub const REQUEST_TIMEOUT_MS_MAX: u32 = 60_000;

/// A bucket and a key, both byte strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    #[serde(with = "serde_bytes")]
    pub bucket: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

/// Per-request replication settings; `None` takes the node's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumOpts {
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub r: Option<u8>,
    /// Count only primaries (PW/PR-style); never use sloppy fallbacks.
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    Get {
        key: Key,
        opts: QuorumOpts,
    },
    Write {
        key: Key,
        op: Op,
        opts: QuorumOpts,
    },
    Status,
    Ring,
    /// Join the cluster that the member at `seed` (an address) belongs to.
    Join {
        seed: String,
    },
    /// Hand every partition to its new owners, then leave the cluster.
    Leave,
    Stats,
}

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    /// `value` is `None` when no replica knows the key; a deleted key has `found: false`
    /// but still a value, whose context a later write can use.
    Read {
        found: bool,
        value: Option<ReadValue>,
        warning: Option<String>,
    },
    /// The object after the write, as the coordinator merged it.
    Written {
        value: ReadValue,
        warning: Option<String>,
    },
    Status(StatusInfo),
    Ring(RingInfo),
    /// A membership change was accepted; the text says what happens next.
    Changed(String),
    Error(RequestError),
    /// Boxed: the largest reply by far (sketches), kept out of every other reply's size.
    Stats(Box<StatsInfo>),
}

/// Membership as one node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub node: NodeId,
    pub members: Vec<MemberStatus>,
    /// Partition transfers of the reporting node (ring changes move data).
    #[serde(default)]
    pub transfers: TransferInfo,
}

/// Partition streaming on one node, for `ringkv status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferInfo {
    /// Partitions this node holds data for but no longer owns.
    pub pending: u32,
    /// Partitions it has finished handing over since it started.
    pub done: u64,
    pub keys_sent: u64,
    pub bytes_sent: u64,
}

/// One member's line in `ringkv status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: NodeId,
    pub addr: String,
    pub state: String,
    /// Share of (partition, replica) slots it holds at the default N.
    pub share: f64,
    /// Hints the reporting node holds for this member.
    pub hints: u64,
    /// "normal" or "leaving".
    #[serde(default)]
    pub phase: String,
}

/// The ring as `ringkv ring` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingInfo {
    pub partitions: u32,
    pub n: u8,
    pub nodes: Vec<RingNode>,
    /// Largest primary-partition count over the mean.
    pub balance: f64,
}

/// One node's part of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingNode {
    pub name: NodeId,
    pub vnodes: u32,
    pub primary_partitions: u32,
    pub replica_share: f64,
}

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

/// One frame's body on the wire, client or peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    pub version: u16,
    pub body: WireBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireBody {
    Client(ClientRequest),
    /// A peer message on a request stream: refused since peer messages travel on peer
    /// streams (see [`PeerStreamHeader`]); kept so the variants keep their numbers.
    Peer {
        from: NodeId,
        msg: PeerMessage,
    },
    /// Opens a client session on this stream: the stream stays open, the client sends
    /// [`SessionRequest`] frames and the node answers each with a [`SessionResponse`]
    /// frame carrying the same id, in whatever order the answers are ready.
    Session,
}

/// One request on a client session; `id` is the client's, unique among its requests in
/// flight on the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub id: u64,
    pub request: ClientRequest,
}

/// The answer to the session request with the same `id`. Id [`SESSION_ID_NONE`] answers
/// no request: a `Refused` with it refuses the whole session (another protocol version,
/// a malformed frame), and the node then ends the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionResponse {
    pub id: u64,
    pub response: WireResponse,
}

/// The first frame of a peer stream: a long-lived QUIC unidirectional stream from one
/// node to another that carries many [`PeerMessage`] frames and gets no response frames
/// (the messages' own acks, such as `ReplicateAck`, are the application-level answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStreamHeader {
    pub version: u16,
    /// The sending node; must match the name in its certificate.
    pub from: NodeId,
}

/// The answer on the same stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireResponse {
    Client(ClientReply),
    /// No longer sent (peer messages get no response frame on peer streams); kept so
    /// the variants keep their numbers.
    PeerAccepted,
    /// The frame was refused; the text says why and what to do.
    Refused(String),
}

/// Why a client request failed. Sent on the wire, so it carries text, not sources.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum RequestError {
    #[error("invalid replication settings: {0}")]
    InvalidQuorum(String),
    #[error("{}", quorum_text(.0))]
    QuorumFailed(Box<QuorumFailure>),
    #[error("{key}: {error}")]
    Object { key: String, error: ObjectError },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("node {node} could not use its storage: {message}; check its disk and logs")]
    Storage { node: NodeId, message: String },
    #[error(
        "node {node} has {inflight} requests in flight (limit {limit}); retry with backoff or add nodes"
    )]
    Overloaded {
        node: NodeId,
        inflight: usize,
        limit: usize,
    },
    #[error("node {node} cannot serve requests yet: {reason}")]
    NotReady { node: NodeId, reason: String },
    #[error(
        "node {via} forwarded the request to coordinator {coordinator}, which did not answer: {reason}; retry, or send it to another node"
    )]
    Forward {
        via: NodeId,
        coordinator: NodeId,
        reason: String,
    },
    /// Appended last: variants are never renumbered.
    #[error("node {node} failed internally: {message}")]
    Internal { node: NodeId, message: String },
}

/// The details of a quorum that was not met.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuorumFailure {
    /// "put", "get", ...
    pub op: String,
    pub key: String,
    pub needed: usize,
    pub n: usize,
    pub strict: bool,
    pub acked: Vec<NodeId>,
    pub failed: Vec<(NodeId, String)>,
    pub timed_out: Vec<NodeId>,
    pub unreachable: Vec<NodeId>,
}

impl Key {
    pub fn new(bucket: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Key {
        Key {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Parses `bucket/key` (the key may contain further slashes).
    pub fn parse(text: &str) -> Result<Key, RequestError> {
        match text.split_once('/') {
            Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok(Key::new(b, k)),
            _ => Err(RequestError::BadRequest(format!(
                "'{text}' is not BUCKET/KEY; write it like users/alice"
            ))),
        }
    }
}

impl ClientReply {
    /// The context token of the object a read or write returned, if it has one.
    pub fn context(&self) -> Option<&Context> {
        let value = match self {
            ClientReply::Read { value, .. } => value.as_ref(),
            ClientReply::Written { value, .. } => Some(value),
            _ => None,
        };
        match value? {
            ReadValue::Siblings { context, .. }
            | ReadValue::Set { context, .. }
            | ReadValue::Map { context, .. } => Some(context),
            _ => None,
        }
    }
}

impl PeerMessage {
    /// True for messages that promise nothing about the sender's disk, so a driver may
    /// send them before the persist that covers the batch that produced them: a
    /// `Replicate` asks its receiver to merge and persist an object (the receiver's ack
    /// is the promise), and `Read` and `Forward` are bare requests. Acks, replies and
    /// everything else wait for the persist. A node that crashes before persisting what
    /// it replicated restarts under a fresh actor id (`core/node.rs`), so it never issues
    /// the dots it lost again.
    pub fn may_precede_persist(&self) -> bool {
        matches!(
            self,
            PeerMessage::Replicate { .. } | PeerMessage::Read { .. } | PeerMessage::Forward { .. }
        )
    }
}

impl PeerStreamHeader {
    pub fn new(from: NodeId) -> PeerStreamHeader {
        PeerStreamHeader {
            version: PROTOCOL_VERSION,
            from,
        }
    }
}

impl WireRequest {
    pub fn new(body: WireBody) -> WireRequest {
        WireRequest {
            version: PROTOCOL_VERSION,
            body,
        }
    }
}

impl QuorumFailure {
    /// Total number of nodes that did not ack.
    pub fn missing(&self) -> usize {
        self.failed.len() + self.timed_out.len() + self.unreachable.len()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            String::from_utf8_lossy(&self.bucket),
            String::from_utf8_lossy(&self.key)
        )
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

fn names(nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        "none".to_string()
    } else {
        nodes
            .iter()
            .map(|n| n.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn quorum_text(q: &QuorumFailure) -> String {
    let mut text = format!(
        "{} {} failed: got {} of the {} {} needed (n={}{})",
        q.op,
        q.key,
        q.acked.len(),
        q.needed,
        if q.op == "get" { "replies" } else { "acks" },
        q.n,
        if q.strict { ", strict" } else { "" },
    );
    text.push_str(&format!("; acked: {}", names(&q.acked)));
    if !q.timed_out.is_empty() {
        text.push_str(&format!("; timed out: {}", names(&q.timed_out)));
    }
    if !q.unreachable.is_empty() {
        text.push_str(&format!("; unreachable or down: {}", names(&q.unreachable)));
    }
    if !q.failed.is_empty() {
        let failed: Vec<String> = q.failed.iter().map(|(n, e)| format!("{n} ({e})")).collect();
        text.push_str(&format!("; failed: {}", failed.join(", ")));
    }
    text.push_str(". Check the nodes with `ringkv status`, ");
    if q.strict {
        text.push_str("drop --strict to allow fallbacks, ");
    }
    text.push_str("or lower the quorum and retry");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_failure_names_counts_and_nodes() {
        let err = RequestError::QuorumFailed(Box::new(QuorumFailure {
            op: "put".into(),
            key: "b/k".into(),
            needed: 2,
            n: 3,
            strict: true,
            acked: vec![NodeId::from("n1")],
            failed: vec![],
            timed_out: vec![NodeId::from("n2")],
            unreachable: vec![NodeId::from("n3")],
        }));
        let text = err.to_string();
        assert!(text.contains("got 1 of the 2 acks needed"), "{text}");
        assert!(text.contains("acked: n1"), "{text}");
        assert!(text.contains("timed out: n2"), "{text}");
        assert!(text.contains("unreachable or down: n3"), "{text}");
        assert!(text.contains("--strict"), "{text}");
    }

    #[test]
    fn keys_parse_from_bucket_slash_key() {
        assert_eq!(Key::parse("a/b/c").unwrap(), Key::new("a", "b/c"));
        assert!(Key::parse("nokey").is_err());
        assert!(Key::parse("/k").is_err());
    }

    #[test]
    fn messages_round_trip_through_msgpack() {
        let msg = WireRequest::new(WireBody::Peer {
            from: NodeId::from("n1"),
            msg: PeerMessage::Read {
                id: 9,
                key: Key::new("b", "k"),
                hint: Some(NodeId::from("n2")),
            },
        });
        let bytes = rmp_serde::to_vec(&msg).unwrap();
        let back: WireRequest = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, msg);
    }
}
