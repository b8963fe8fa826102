//! The node driver: the thin async shell around one sans-IO core node.
//!
//! One task owns the core [`Node`](crate::core::node::Node) ([`core_loop`]). Everything
//! that happens to it — client requests from request streams and sessions, peer messages
//! from peer streams, delivery failures from the peer links, gossip datagrams, timer
//! deadlines — arrives on one bounded channel of `input::Input`s and is fed to the core
//! in batches. That is ringkv's group commit: writes that arrive together share one
//! persist (one fsync), and no ack or reply leaves before the writes it answers for are
//! durable; which outputs wait for which persist is the core's
//! [`CommitGate`](crate::core::commit_gate::CommitGate). If persisting fails the node
//! stops (fail-stop, like Cassandra's `disk_failure_policy: stop`) rather than ack lost
//! writes.
//!
//! - [`lifecycle`]: binding, starting and stopping a node;
//! - [`input`]: what the core task takes in, and where client answers go;
//! - [`server`]: the QUIC server's side, which validates and enqueues;
//! - [`core_loop`]: the core task, with the persist overlapped with the next batches;
//! - [`persist_tracker`]: skips the persist after batches that wrote nothing;
//! - [`peer_link`]: node-to-node messages on one long-lived stream per peer, batched;
//! - [`node_session`]: the node's half of client sessions, many requests on one stream;
//! - [`datagrams`]: gossip datagrams both ways;
//! - `conn_watch`: reports a peer whose connection timed out, without waiting for a send;
//! - [`error`]: why a node could not start or stopped.

mod conn_watch;
pub mod core_loop;
pub mod datagrams;
pub mod error;
pub mod input;
pub mod lifecycle;
pub mod node_session;
pub mod peer_link;
pub mod persist_tracker;
pub mod server;

pub use error::DriverError;
pub use lifecycle::{
    Bound, NodeHandle, NodeOptions, bind_node, start_bound, start_node, start_with_storage,
};
