//! The client protocol: what a client asks a node and what the node answers.

use serde::{Deserialize, Serialize};

use crate::core::object::{Context, Op, OpId, ReadValue};
use crate::core::placement::ring::NodeId;
pub use crate::core::stats::StatsInfo;
use crate::proto::{Key, RequestError};

/// Largest N a request may ask for.
pub const REPLICAS_MAX: u8 = 9;
/// Longest request timeout a client may ask for.
pub const REQUEST_TIMEOUT_MS_MAX: u32 = 60_000;

/// Per-request replication settings; `None` takes the node's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumOpts {
    /// Replicas to write or read, from 1 to `REPLICAS_MAX` and at most the cluster's size.
    pub n: Option<u8>,
    /// Replica acks a write waits for, from 1 to N; `None` takes the node's W, capped at N.
    pub w: Option<u8>,
    /// Replica answers a read waits for, from 1 to N; `None` takes the node's R, capped at
    /// N.
    pub r: Option<u8>,
    /// Count only primaries (PW/PR-style); never use sloppy fallbacks.
    #[serde(default)]
    pub strict: bool,
    /// How long the coordinator waits for the quorum, in milliseconds, clamped to 1 ..=
    /// `REQUEST_TIMEOUT_MS_MAX`; `None` takes the node's request timeout.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Read a key: the coordinator asks its N replicas, answers with `ClientReply::Read`
    /// once R of them replied, and read-repairs stale ones.
    Get {
        /// The key to read.
        key: Key,
        /// N, R, strictness and timeout for this read.
        opts: QuorumOpts,
    },
    /// Apply `op` to a key: the coordinator applies it to its own copy, replicates the
    /// result to the other replicas and answers with `ClientReply::Written` once W acked.
    Write {
        /// The key to write.
        key: Key,
        /// The operation (put, delete, set or map update), with the context it was based
        /// on.
        op: Op,
        /// N, W, strictness and timeout for this write.
        opts: QuorumOpts,
        /// The operation's id: a retry with the same id is applied at most once, through
        /// any node. `None` (older clients) means every delivery applies.
        #[serde(default)]
        id: Option<OpId>,
    },
    /// Ask for membership as the node sees it; answered with `ClientReply::Status`.
    Status,
    /// Ask for the ring's layout; answered with `ClientReply::Ring`.
    Ring,
    /// Join the cluster that the member at `seed` (an address) belongs to.
    Join {
        /// The seed member's gossip address, as `host:port`.
        seed: String,
    },
    /// Hand every partition to its new owners, then leave the cluster.
    Leave,
    /// Ask for the node's counters and sketches; answered with `ClientReply::Stats`.
    Stats,
    /// Ask for what a client needs to route requests itself: the partition count, every
    /// member's address, vnode count, phase and liveness; answered with
    /// `ClientReply::Topology`. The client rebuilds the ring from it with the same code.
    Topology,
}

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    /// `value` is `None` when no replica knows the key; a deleted key has `found: false`
    /// but still a value, whose context a later write can use.
    Read {
        /// False when no replica holds the key or it is deleted (a tombstone).
        found: bool,
        /// The merged object as the client sees it.
        value: Option<ReadValue>,
        /// Set when the merged object has more siblings than the node's warning threshold.
        warning: Option<String>,
    },
    /// The object after the write, as the coordinator merged it.
    Written {
        /// The object after the write.
        value: ReadValue,
        /// Set when the object now has more siblings than the node's warning threshold.
        warning: Option<String>,
    },
    /// The answer to `ClientRequest::Status`.
    Status(StatusInfo),
    /// The answer to `ClientRequest::Ring`.
    Ring(RingInfo),
    /// A membership change was accepted; the text says what happens next.
    Changed(String),
    /// The request failed; nothing guarantees whether a failed write reached any replica.
    Error(RequestError),
    /// Boxed: the largest reply by far (sketches), kept out of every other reply's size.
    Stats(Box<StatsInfo>),
    /// The answer to `ClientRequest::Topology`.
    Topology(TopologyInfo),
}

/// The membership view a client routes by: one node's, taken at one instant.
///
/// The ring is a pure function of the members in the `Normal` phase (names and vnode
/// counts) and the partition count, so a client that rebuilds it with
/// `Ring::new` computes the same preference lists as every node that holds this view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyInfo {
    /// The reporting node.
    pub node: NodeId,
    /// Number of partitions of the ring.
    pub partitions: u32,
    /// The reporting node's default replica count (N when a request names none).
    pub n: u8,
    /// Every member that has not left, the reporting node included (at most the ring's
    /// `MEMBERS_MAX`).
    pub members: Vec<TopologyMember>,
}

/// One member as [`TopologyInfo`] carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyMember {
    /// The member's node id.
    pub name: NodeId,
    /// The address it listens on for peers and clients, as `host:port`.
    pub addr: String,
    /// Virtual nodes it places on the ring.
    pub vnodes: u32,
    /// True in the `Normal` phase: the member owns partitions. A leaving member still
    /// serves requests but is not in the ring.
    pub in_ring: bool,
    /// Liveness as the reporting node sees it: "up", "suspect" or "down" (the reporting
    /// node always shows itself "up").
    pub state: String,
}

/// Membership as one node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The reporting node.
    pub node: NodeId,
    /// Every member of the reporting node's table, itself included.
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
    /// Keys sent to new owners since the node started.
    pub keys_sent: u64,
    /// Bytes of objects sent to new owners since the node started.
    pub bytes_sent: u64,
}

/// One member's line in `ringkv status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member's node id.
    pub name: NodeId,
    /// The address it listens on for peers and clients.
    pub addr: String,
    /// Liveness as the reporting node sees it: "up", "suspect" or "down" (the reporting
    /// node always shows itself "up").
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
    /// Number of partitions the key space is cut into, fixed when the cluster is created.
    pub partitions: u32,
    /// The reporting node's default replica count, used for the shares.
    pub n: u8,
    /// Every ring member, with its share.
    pub nodes: Vec<RingNode>,
    /// Largest primary-partition count over the mean.
    pub balance: f64,
}

/// One node's part of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingNode {
    /// The node's id.
    pub name: NodeId,
    /// Virtual nodes it places on the ring.
    pub vnodes: u32,
    /// Partitions whose preference list it heads.
    pub primary_partitions: u32,
    /// Share of (partition, replica) slots it holds among the first N of every preference
    /// list.
    pub replica_share: f64,
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
