//! ringkv: an eventually consistent, Dynamo-style key-value store with CRDTs.
//!
//! The crate is split so that every protocol decision lives in a sans-IO `core`, which
//! a thin async network driver (`net`) and a deterministic simulator (`sim`) both drive;
//! storage engines sit behind one synchronous trait (`storage`) and the wire protocols
//! are plain enums (`proto`). `docs/ARCHITECTURE.md` is the map.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]
// The documented API is the crate without `sim`; that feature opens the internals to the
// tests, benches and examples and promises nothing about them.
#![cfg_attr(not(feature = "sim"), warn(missing_docs))]

pub mod client;
#[cfg(feature = "sim")]
pub mod core;
#[cfg(not(feature = "sim"))]
pub(crate) mod core;
pub mod net;
pub mod proto;
#[cfg(feature = "sim")]
pub mod sim;
pub mod storage;

pub use crate::client::{Client, ClientError, GetResult, MapRead, SetRead, WriteResult, policy_of};
pub use crate::core::node::{MemberSpec, Node, NodeConfig, NodeError, NodeStats, Now};
pub use crate::core::object::clock::Timestamp;
pub use crate::core::object::{
    Context, FieldRead, MapOp, Op, OpId, Policy, ReadValue, VALUE_BYTES_MAX,
};
pub use crate::core::placement::ring::{NodeId, VNODES_DEFAULT, VNODES_MAX};
pub use crate::core::stats::{
    AeReport, ClusterStats, HOT_KEYS_K, HotKey, NodeAnswer, PartitionStats, StatsInfo, Unanswered,
};
pub use crate::proto::{Key, QuorumFailure, QuorumOpts, RequestError};
