//! The HTTP/JSON API every node can serve next to its QUIC endpoint (`ringkv node --http
//! ADDR`), so applications in any language, `curl` and monitoring can use the store.
//!
//! It is a second front door, not a second node: each request becomes the same
//! [`ClientRequest`](crate::proto::ClientRequest) a QUIC client sends, enqueued on the
//! node's one input channel and answered by the one core loop (see `front.rs`); nothing
//! here touches the core or storage. Security matches QUIC's: TLS 1.3 with the node's
//! certificate, and a client certificate signed by the cluster CA is required ([`serve`]);
//! only a read-only token, when configured, opens the page, the metrics and the status
//! routes without one ([`auth`]).
//! Plain HTTP exists only on loopback, only when asked for, and logs a warning.
//!
//! - [`limits`]: every bound on what a request may carry, by name;
//! - [`error`]: the one error type of this layer, and its status codes;
//! - [`params`]: query parameters, the context and operation-id headers;
//! - [`envelope`]: how an HTTP write keeps its content type inside the stored value;
//! - [`keys`]: `GET`/`PUT`/`DELETE /v1/buckets/{bucket}/keys/{key}`;
//! - [`crdt`]: counters, sets, maps and HLLs;
//! - [`ops`]: `GET /v1/status`, `/v1/ring`, `/v1/stats`;
//! - [`observe`]: `GET /metrics` (Prometheus) and `GET /` (the live status page);
//! - [`auth`]: client certificates open every route, a read-only token only the
//!   read-only ones;
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers;
//! - [`router`]: the routes and the layers around them (extend here);
//! - [`serve`]: listening, TLS and the per-connection limits.

pub mod auth;
pub mod crdt;
pub mod envelope;
pub mod error;
pub(crate) mod front;
pub mod keys;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod router;
pub mod serve;

pub use auth::{READ_TOKEN_ROUTES, ReadToken, TokenError};
pub use error::HttpError;
pub use serve::{HttpOptions, HttpServer};
