//! The network edge: QUIC transport, mutual TLS with the cluster CA, and framing.
//!
//! This is the only async code of ringkv (DESIGN.md §1, §8). It is generic over the
//! message types so the protocol enums (in `core`) and the node driver can be written on
//! top of it without the transport knowing what a put or a gossip round is:
//!
//! - [`certs`]: the cluster CA and the PEM files `ringkv certs` manages;
//! - [`tls`]: rustls/quinn configs that trust only that CA, both ways;
//! - [`identity`]: who the peer of a connection is (node or client, and its name);
//! - [`frame`]: u32-length-prefixed msgpack frames with a hard size limit;
//! - [`endpoint`]: binding, the per-address connection pool and one-stream requests;
//! - [`serve`]: the accept loop that hands typed requests to a [`Handler`];
//! - [`peer_link`]: node-to-node messages on one long-lived stream per peer, batched;
//! - [`session`]: the node's half of client sessions, many requests on one stream;
//! - [`core_loop`]: the node's core task, with the group-commit fsync overlapped with
//!   the next batches;
//! - [`persist`]: the node driver's group-commit persist, run off runtime workers and
//!   skipped after batches that wrote nothing.

pub mod certs;
pub mod core_loop;
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod identity;
pub mod peer_link;
pub mod persist;
pub mod serve;
pub mod session;
pub mod tls;

pub use certs::{CertStore, Identity, issue, load_identity};
pub use endpoint::{ConnectionPool, bind, bind_client, connect, request};
pub use error::NetError;
pub use frame::{
    FRAME_BYTES_MAX, FrameReader, decode_body, decode_frame, encode_frame, encode_frame_into,
    read_frame, write_frame,
};
pub use identity::{PeerIdentity, Role, peer_identity};
pub use serve::{Handler, serve};
pub use tls::{ALPN, SERVER_NAME, client_config, server_config};
