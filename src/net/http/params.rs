//! What a request says besides its body: the key in the path, the query parameters, and
//! the causal-context and operation-id headers. Each is checked here, with a sentence
//! for what is wrong, before anything reaches the core.

use axum::extract::Query;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::core::object::{Context, OpId};
use crate::proto::{Key, QuorumOpts};

use super::error::HttpError;
use super::limits::{BUCKET_BYTES_MAX, KEY_BYTES_MAX};

/// The causal context, both ways: a read answers it, a write passes it back.
pub const CONTEXT_HEADER: &str = "x-ringkv-context";
/// An optional operation id, `<16 hex digits client>-<decimal seq>`: a retry with the same
/// id is applied at most once.
pub const OP_ID_HEADER: &str = "x-ringkv-op-id";
/// A node's warning about the object (for example, many siblings).
pub const WARNING_HEADER: &str = "x-ringkv-warning";

/// The write policy of `PUT /v1/buckets/{bucket}/keys/{key}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyPolicy {
    /// Concurrent writes are kept as siblings until a write with their context.
    #[default]
    Siblings,
    /// Last writer wins: the newest write replaces the value.
    Lww,
}

/// Query parameters of the key routes.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyParams {
    /// Replicas, 1 to 9 and at most the cluster's size (default: the node's).
    pub n: Option<u8>,
    /// Acks a write waits for (default: the node's).
    pub w: Option<u8>,
    /// Replies a read waits for (default: the node's).
    pub r: Option<u8>,
    /// Count only primary replicas, never sloppy fallbacks.
    #[serde(default)]
    pub strict: bool,
    /// How long the coordinator waits for replicas, clamped to 1..=60000.
    pub timeout_ms: Option<u32>,
    /// Answer a write with the merged object (200 or 300) instead of 204.
    #[serde(default)]
    pub returnbody: bool,
    /// `siblings` (default) or `lww` for last-writer-wins writes.
    #[serde(default)]
    #[param(inline)]
    pub policy: KeyPolicy,
}

/// Query parameters of the CRDT routes.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CrdtParams {
    /// Replicas, 1 to 9 and at most the cluster's size (default: the node's).
    pub n: Option<u8>,
    /// Acks a write waits for (default: the node's).
    pub w: Option<u8>,
    /// Replies a read waits for (default: the node's).
    pub r: Option<u8>,
    /// Count only primary replicas, never sloppy fallbacks.
    #[serde(default)]
    pub strict: bool,
    /// How long the coordinator waits for replicas, clamped to 1..=60000.
    pub timeout_ms: Option<u32>,
    /// Answer a write with the object's new value (200) instead of 204.
    #[serde(default)]
    pub returnbody: bool,
}

/// The quorum settings every data route takes.
pub(crate) trait Quorum {
    fn opts(&self) -> QuorumOpts;
}

impl Quorum for KeyParams {
    fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: self.n,
            w: self.w,
            r: self.r,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
        }
    }
}

impl Quorum for CrdtParams {
    fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: self.n,
            w: self.w,
            r: self.r,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// The query parameters, or a 400 that quotes what was wrong.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, HttpError> {
    q.map(|Query(t)| t).map_err(|e| {
        HttpError::BadRequest(format!(
            "bad query parameters ({}); see /v1/openapi.json for the parameters of this route",
            e.body_text()
        ))
    })
}

/// The bucket and key of the path, checked against their limits.
pub(crate) fn key(
    path: Result<axum::extract::Path<(String, String)>, PathRejection>,
) -> Result<Key, HttpError> {
    let axum::extract::Path((bucket, key)) =
        path.map_err(|e| HttpError::BadRequest(format!("bad path: {}", e.body_text())))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(HttpError::BadRequest(
            "the bucket and the key must not be empty".into(),
        ));
    }
    if bucket.len() > BUCKET_BYTES_MAX {
        return Err(HttpError::BadRequest(format!(
            "the bucket is {} bytes, over the limit of {BUCKET_BYTES_MAX}",
            bucket.len()
        )));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(HttpError::BadRequest(format!(
            "the key is {} bytes, over the HTTP limit of {KEY_BYTES_MAX}; use the QUIC client for longer keys",
            key.len()
        )));
    }
    Ok(Key::new(bucket, key))
}

/// A header's value as text; `None` when absent.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HttpError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                HttpError::BadRequest(format!("the {name} header is not visible ASCII"))
            })
        })
        .transpose()
}

/// The context a write passes back: the body's when it has one, else the header's, else
/// `None`.
pub(crate) fn context(
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Option<Context>, HttpError> {
    let Some(token) = body.or(header(headers, CONTEXT_HEADER)?) else {
        return Ok(None);
    };
    Context::from_token(token)
        .map(Some)
        .map_err(|e| HttpError::BadRequest(e.to_string()))
}

/// The operation id of `X-Ringkv-Op-Id`, if the request has one.
pub(crate) fn op_id(headers: &HeaderMap) -> Result<Option<OpId>, HttpError> {
    header(headers, OP_ID_HEADER)?.map(parse_op_id).transpose()
}

/// Parses `<16 hex digits>-<decimal>`.
pub fn parse_op_id(text: &str) -> Result<OpId, HttpError> {
    let bad = || {
        HttpError::BadRequest(format!(
            "the {OP_ID_HEADER} header {text:?} is not CLIENT-SEQ: 16 hex digits naming the client, a dash, and a decimal sequence number (for example 00000000deadbeef-42)"
        ))
    };
    let (client, seq) = text.split_once('-').ok_or_else(bad)?;
    if client.len() != 16 || !client.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(OpId {
        client: u64::from_str_radix(client, 16).map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_parse_strictly() {
        // invariant: test-only; a literal the test controls
        assert_eq!(
            parse_op_id("00000000deadbeef-42").unwrap(),
            OpId {
                client: 0xdead_beef,
                seq: 42
            }
        );
        for bad in [
            "deadbeef-42",
            "00000000deadbeef",
            "00000000deadbeeg-1",
            "00000000deadbeef-",
            "00000000deadbeef--1",
            "00000000deadbeef-99999999999999999999999",
        ] {
            assert!(parse_op_id(bad).is_err(), "{bad}");
        }
    }
}
