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
    /// The endpoint or the node's certificates failed (binding, loading the identity, TLS
    /// setup).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The core refused to start: a bad configuration, member list or data directory.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The storage engine could not open the data directory; nothing was started.
    #[error("cannot open the data directory {dir}: {source}")]
    Storage {
        /// The directory the engine was opened on (the data directory's `data`).
        dir: PathBuf,
        /// The engine's error.
        source: StorageError,
    },
    /// A member's address does not resolve to a socket address; nothing was started.
    #[error("member {name} has address '{addr}', which does not resolve: {reason}")]
    BadAddress {
        /// The member whose address is bad.
        name: NodeId,
        /// The address as configured.
        addr: String,
        /// The resolver's error, as text.
        reason: String,
    },
    /// A persist (the sync before acks go out) failed, so the node stopped rather than ack
    /// writes it may not hold; writes since the last persist are not acknowledged.
    #[error(
        "node {node} stopped because it could not persist writes ({source}); check the disk, then restart it"
    )]
    Persist {
        /// The node that stopped.
        node: NodeId,
        /// The storage error from the persist.
        source: StorageError,
    },
    /// The HTTP API could not be served on its address; the node itself runs.
    #[error("cannot serve the HTTP API on {addr}: {reason}")]
    Http {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node's core task (or its persist task) panicked, or it did not stop within the
    /// shutdown wait (`SHUTDOWN_WAIT_MS`).
    #[error("the node task of {0} ended unexpectedly")]
    Crashed(NodeId),
}
