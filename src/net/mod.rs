//! The network edge: the only async code of ringkv.
//!
//! The core is sans-IO; everything that touches sockets, disks' fsync timing and tokio
//! lives here, in two layers that depend one way only:
//!
//! - `transport`: QUIC, mutual TLS with the cluster CA, framing and batched stream
//!   writers, generic over the message types;
//! - `driver`: the node driver, which runs one core node on top of the transport (its
//!   inputs, the core loop with the group commit, peer links and client sessions);
//! - [`http`]: the HTTP/JSON API, a second front door that feeds the driver's input
//!   channel exactly as QUIC request streams do;
//! - [`metrics`]: each node's own Prometheus recorder, fed by the driver (never by the
//!   core) and rendered by the HTTP API's `/metrics`.
//!
//! The items most callers need are re-exported here.

#[cfg(feature = "sim")]
pub mod driver;
#[cfg(not(feature = "sim"))]
pub(crate) mod driver;
pub mod http;
pub mod metrics;
#[cfg(feature = "sim")]
pub mod transport;
#[cfg(not(feature = "sim"))]
pub(crate) mod transport;

pub use driver::{
    Bound, DriverError, NodeHandle, NodeOptions, bind_node, start_bound, start_node,
    start_with_storage,
};
pub use http::{HttpOptions, HttpServer};
pub use transport::certs::validate_name;
pub use transport::certs::{CertStore, Identity, issue, load_identity};
pub use transport::endpoint::{ConnectionPool, bind, bind_client, connect, request};
pub use transport::error::NetError;
pub use transport::frame::{
    FRAME_BYTES_MAX, FrameReader, decode_body, decode_frame, encode_frame, encode_frame_into,
    read_frame, write_frame,
};
pub use transport::identity::{PeerIdentity, Role, peer_identity};
pub use transport::serve::{Handler, serve};
pub use transport::tls::BIDI_STREAMS_CONCURRENT_MAX;
pub use transport::tls::{ALPN, SERVER_NAME, client_config, server_config};
