//! Why a node could not start, or stopped.

use std::path::PathBuf;

use thiserror::Error;

use crate::core::node::NodeError;
use crate::core::placement::ring::NodeId;
use crate::net::NetError;
use crate::storage::StorageError;

/// Errors starting or running a node.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: PathBuf, source: StorageError },
    #[error("member {name} has address '{addr}', which does not resolve: {reason}")]
    BadAddress {
        name: NodeId,
        addr: String,
        reason: String,
    },
    #[error(
        "node {node} stopped because it could not persist writes ({source}); check the disk, then restart it"
    )]
    Persist { node: NodeId, source: StorageError },
    #[error("the node task of {0} ended unexpectedly")]
    Crashed(NodeId),
}
