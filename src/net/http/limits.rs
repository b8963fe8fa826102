//! Every bound on what one HTTP request may carry, by name, so the README, the OpenAPI
//! document and the checks quote the same numbers. A request over a limit is refused
//! before anything reaches the core: 413 for a body, 400 for the rest, each with a
//! sentence naming the limit.

use crate::core::object::{OP_ITEMS_MAX, VALUE_BYTES_MAX};

/// Largest content type kept with a value (it is stored in the value's envelope).
pub const CONTENT_TYPE_BYTES_MAX: usize = 255;
/// Bytes the content-type envelope adds to a value at most.
pub const ENVELOPE_BYTES_MAX: usize = super::envelope::MAGIC.len() + 1 + CONTENT_TYPE_BYTES_MAX;
/// Largest body of `PUT /v1/buckets/{bucket}/keys/{key}`: the largest value less room for
/// the content-type envelope.
pub const VALUE_BODY_BYTES_MAX: usize = VALUE_BYTES_MAX - ENVELOPE_BYTES_MAX;
/// Largest JSON body of a CRDT operation.
pub const JSON_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest total of all request header names and values.
pub const HEADERS_BYTES_MAX: usize = 32 * 1024;
/// Most request headers.
pub const HEADERS_COUNT_MAX: usize = 64;
/// The HTTP/1 read buffer: a request head (line and headers) larger than this is cut off
/// by hyper with 431 before our checks can speak.
pub const HEAD_BUF_BYTES_MAX: usize = 64 * 1024;
/// Longest bucket name (the storage engine's limit).
pub const BUCKET_BYTES_MAX: usize = crate::storage::key::BUCKET_BYTES_MAX;
/// Longest key over HTTP (it travels in the URL); longer keys need the QUIC client.
pub const KEY_BYTES_MAX: usize = 4096;
/// Most members, items or fields in one set or HLL operation list.
pub const BATCH_ITEMS_MAX: usize = OP_ITEMS_MAX;
/// Most field operations in one map request (each is one write).
pub const MAP_OPS_MAX: usize = 64;
/// Connections served at once; more wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long a client has for the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// How long a client has to send a request head once it starts one.
pub const HEAD_READ_TIMEOUT_MS: u64 = 10_000;
/// An oversized body is read and dropped up to this many bytes before the 413, so a
/// client that sends it whole still reads the answer; past it the connection closes.
pub const OVERSIZE_DRAIN_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long reading and dropping an oversized body may take.
pub const OVERSIZE_DRAIN_MS: u64 = 5_000;
