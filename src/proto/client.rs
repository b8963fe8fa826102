//! The client protocol: what a client asks a node and what the node answers.

use serde::{Deserialize, Serialize};

use crate::core::object::{Context, Op, ReadValue};
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
