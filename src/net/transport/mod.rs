//! The transport: QUIC with mutual TLS under the cluster CA, and length-prefixed frames.
//!
//! It is generic over the message types: it knows certificates, connections, streams and
//! frames, never what a put or a gossip round is, so the protocol enums (in `proto`) and
//! the node driver ([`super::driver`]) sit on top of it without the transport depending
//! on either.
//!
//! - [`certs`]: the cluster CA and the PEM files `ringkv certs` manages;
//! - [`tls`]: rustls/quinn configs that trust only that CA, both ways;
//! - [`identity`]: who the peer of a connection is (node or client, and its name);
//! - [`frame`]: u32-length-prefixed msgpack frames with a hard size limit;
//! - [`endpoint`]: binding, the per-address connection pool and one-stream requests;
//! - [`serve`]: the accept loop that hands typed requests to a [`serve::Handler`];
//! - [`batch_writer`]: one writer per long-lived stream, batching what is queued;
//! - [`error`]: what can go wrong on the network edge.

pub mod batch_writer;
pub mod certs;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod identity;
pub mod serve;
pub mod tls;
