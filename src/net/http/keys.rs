//! `GET`, `PUT` and `DELETE /v1/buckets/{bucket}/keys/{key}`: values with siblings or
//! last-writer-wins, the causal context in `X-Ringkv-Context` both ways.
//!
//! One value is answered as the raw body with the content type it was written with
//! ([`super::envelope`]); concurrent values as 300 Multiple Choices, a JSON array of
//! base64 values, or `multipart/mixed` when the `Accept` header asks for it.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};

use crate::core::object::{Context, Op, Policy, ReadValue};
use crate::proto::{ClientReply, ClientRequest, Key};

use super::envelope;
use super::error::{ErrorBody, HttpError};
use super::front::Front;
use super::limits::{OVERSIZE_DRAIN_BYTES_MAX, OVERSIZE_DRAIN_MS, VALUE_BODY_BYTES_MAX};
use super::params::{self, CONTEXT_HEADER, KeyParams, KeyPolicy, Quorum, WARNING_HEADER};

/// Tries at most this many random multipart boundaries before giving up (each clash with
/// a value's bytes is a 2^-64 event).
const BOUNDARY_TRIES_MAX: usize = 8;

/// Read a key.
#[utoipa::path(
    get,
    path = "/v1/buckets/{bucket}/keys/{key}",
    tag = "keys",
    params(
        ("bucket" = String, Path, description = "The bucket, 1 to 255 bytes"),
        ("key" = String, Path, description = "The key, 1 to 4096 bytes (encode `/` as %2F)"),
        KeyParams,
        ("accept" = Option<String>, Header, description = "`multipart/mixed` for siblings as parts"),
    ),
    responses(
        (status = 200, description = "One value, raw, with the content type it was written with; `X-Ringkv-Context` holds the context", body = Vec<u8>),
        (status = 300, description = "Concurrent values (siblings): a JSON array of base64 values, or `multipart/mixed` parts; write back with `X-Ringkv-Context` to resolve", body = Vec<String>),
        (status = 400, description = "A bad parameter, header or key", body = ErrorBody),
        (status = 404, description = "No replica holds the key, or it is deleted (then `X-Ringkv-Context` holds the tombstone's context)", body = ErrorBody),
        (status = 409, description = "The key holds a CRDT; use its route", body = ErrorBody),
        (status = 503, description = "The read quorum was not met: counts and nodes in `quorum`", body = ErrorBody),
    )
)]
pub(crate) async fn get_key(
    State(front): State<Front>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let key = params::key(path)?;
    let params = params::query(query)?;
    let (found, value, warning) = read(&front, &key, &params).await?;
    match value {
        Some(value) if found => render(&key, value, &headers, warning),
        other => Err(not_found(&key, other.as_ref())),
    }
}

/// Write a value.
#[utoipa::path(
    put,
    path = "/v1/buckets/{bucket}/keys/{key}",
    tag = "keys",
    request_body(content = Vec<u8>, description = "The value, at most 1 MiB less 264 bytes; its Content-Type is kept", content_type = "application/octet-stream"),
    params(
        ("bucket" = String, Path, description = "The bucket, 1 to 255 bytes"),
        ("key" = String, Path, description = "The key, 1 to 4096 bytes"),
        KeyParams,
        ("x-ringkv-context" = Option<String>, Header, description = "The context of the read this write supersedes (siblings policy)"),
        ("x-ringkv-op-id" = Option<String>, Header, description = "CLIENT-SEQ (16 hex digits, a dash, a decimal): a retry with the same id is applied once"),
    ),
    responses(
        (status = 204, description = "Written; `X-Ringkv-Context` holds the new context"),
        (status = 200, description = "With `returnbody=true`: the merged object, one value", body = Vec<u8>),
        (status = 300, description = "With `returnbody=true`: the merged object has siblings", body = Vec<String>),
        (status = 400, description = "A bad parameter, header, context or key", body = ErrorBody),
        (status = 409, description = "The key holds another policy, or too many siblings", body = ErrorBody),
        (status = 413, description = "The body is over its limit", body = ErrorBody),
        (status = 503, description = "The write quorum was not met: counts and nodes in `quorum`", body = ErrorBody),
    )
)]
pub(crate) async fn put_key(
    State(front): State<Front>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let key = params::key(path)?;
    let params = params::query(query)?;
    let content_type = params::header(&headers, CONTENT_TYPE.as_str())?;
    if let Some(ct) = content_type {
        envelope::valid_content_type(ct).map_err(HttpError::BadRequest)?;
    }
    let id = params::op_id(&headers)?;
    let context = params::context(&headers, None)?;
    let body = read_body(&headers, body, VALUE_BODY_BYTES_MAX, "the value").await?;
    let value = envelope::seal(content_type, &body);
    let op = match params.policy {
        KeyPolicy::Siblings => Op::Put {
            value,
            context: context.unwrap_or_default(),
        },
        KeyPolicy::Lww if context.is_some() => {
            return Err(HttpError::BadRequest(format!(
                "a last-writer-wins write takes no {CONTEXT_HEADER}; leave it out, or drop policy=lww"
            )));
        }
        KeyPolicy::Lww => Op::PutLww { value },
    };
    let written = write(&front, key.clone(), op, &params, id).await?;
    written_response(&key, written, params.returnbody, &headers)
}

/// Delete a key.
#[utoipa::path(
    delete,
    path = "/v1/buckets/{bucket}/keys/{key}",
    tag = "keys",
    params(
        ("bucket" = String, Path, description = "The bucket"),
        ("key" = String, Path, description = "The key"),
        KeyParams,
        ("x-ringkv-context" = Option<String>, Header, description = "What the delete removes; without it the key is read first (with `r`) and what that read sees is removed"),
        ("x-ringkv-op-id" = Option<String>, Header, description = "CLIENT-SEQ operation id"),
    ),
    responses(
        (status = 204, description = "Deleted (a tombstone); `X-Ringkv-Context` holds its context"),
        (status = 400, description = "A bad parameter, header, context or key", body = ErrorBody),
        (status = 409, description = "The key holds an HLL, which cannot be deleted", body = ErrorBody),
        (status = 503, description = "The quorum was not met", body = ErrorBody),
    )
)]
pub(crate) async fn delete_key(
    State(front): State<Front>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<KeyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let key = params::key(path)?;
    let params = params::query(query)?;
    let id = params::op_id(&headers)?;
    let context = match params::context(&headers, None)? {
        Some(context) => context,
        None if params.policy == KeyPolicy::Lww => Context::empty(),
        None => read_context(&front, &key, &params).await?,
    };
    let written = write(&front, key.clone(), Op::Delete { context }, &params, id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    add_context(&mut response, token_of(&written.0).as_deref());
    Ok(response)
}

/// Reads `key`: whether it was found, the merged object and the node's warning.
pub(crate) async fn read(
    front: &Front,
    key: &Key,
    params: &impl Quorum,
) -> Result<(bool, Option<ReadValue>, Option<String>), HttpError> {
    let request = ClientRequest::Get {
        key: key.clone(),
        opts: params.opts(),
    };
    match front.call(request).await? {
        ClientReply::Read {
            found,
            value,
            warning,
        } => Ok((found, value, warning)),
        other => Err(unexpected("a read", &other)),
    }
}

/// The context of what a read of `key` sees now (empty when nothing is there).
pub(crate) async fn read_context(
    front: &Front,
    key: &Key,
    params: &impl Quorum,
) -> Result<Context, HttpError> {
    let (_, value, _) = read(front, key, params).await?;
    Ok(match value {
        Some(
            ReadValue::Siblings { context, .. }
            | ReadValue::Set { context, .. }
            | ReadValue::Map { context, .. },
        ) => context,
        _ => Context::empty(),
    })
}

/// Applies `op` to `key`: the object after the write and the node's warning.
pub(crate) async fn write(
    front: &Front,
    key: Key,
    op: Op,
    params: &impl Quorum,
    id: Option<crate::core::object::OpId>,
) -> Result<(ReadValue, Option<String>), HttpError> {
    let request = ClientRequest::Write {
        key,
        op,
        opts: params.opts(),
        id,
    };
    match front.call(request).await? {
        ClientReply::Written { value, warning } => Ok((value, warning)),
        other => Err(unexpected("a write", &other)),
    }
}

/// A reply of the wrong kind: the node and this layer disagree (a bug).
pub(crate) fn unexpected(request: &str, reply: &ClientReply) -> HttpError {
    let kind = crate::client::reply_kind(reply);
    HttpError::Internal(format!("the node answered {request} with {kind}"))
}

/// The body, at most `limit` bytes: 413 past it. An oversized body is read and dropped
/// first (up to [`OVERSIZE_DRAIN_BYTES_MAX`], within [`OVERSIZE_DRAIN_MS`]), so a client
/// that sends it whole before reading gets the 413 instead of a reset connection.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<Bytes, HttpError> {
    let too_large = |len: usize| HttpError::TooLarge {
        what: what.to_string(),
        len,
        limit,
    };
    if let Some(len) =
        params::header(headers, CONTENT_LENGTH.as_str())?.and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        drain(body).await;
        return Err(too_large(len));
    }
    let mut body = body;
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            HttpError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if collected.len() + chunk.len() > limit {
            let len = collected.len() + chunk.len();
            drain(body).await;
            return Err(too_large(len));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(collected))
}

/// Reads and drops what is left of an oversized body, within the drain bounds.
async fn drain(body: Body) {
    let dropped = Limited::new(body, OVERSIZE_DRAIN_BYTES_MAX).collect();
    let _ = tokio::time::timeout(Duration::from_millis(OVERSIZE_DRAIN_MS), dropped).await;
}

/// The 404 of a key: with the tombstone's context when there is one.
fn not_found(key: &Key, value: Option<&ReadValue>) -> HttpError {
    HttpError::NotFound {
        key: key.to_string(),
        context: value.and_then(token_of),
    }
}

/// The context token of an object, if its policy has one.
pub(crate) fn token_of(value: &ReadValue) -> Option<String> {
    match value {
        ReadValue::Siblings { context, .. }
        | ReadValue::Set { context, .. }
        | ReadValue::Map { context, .. } => Some(context.to_token()),
        _ => None,
    }
}

/// Sets `X-Ringkv-Context` (a token is URL-safe base64, always a valid header value).
pub(crate) fn add_context(response: &mut Response, token: Option<&str>) {
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
        response.headers_mut().insert(CONTEXT_HEADER, value);
    }
}

/// Sets `X-Ringkv-Warning` when the node warned (the sentence is made header-safe).
pub(crate) fn add_warning(response: &mut Response, warning: Option<&str>) {
    let Some(text) = warning else { return };
    let safe: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&safe) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(WARNING_HEADER), value);
    }
}

/// The answer to a write: 204 with the context, or the object with `returnbody`.
fn written_response(
    key: &Key,
    (value, warning): (ReadValue, Option<String>),
    returnbody: bool,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    if returnbody {
        return render(key, value, headers, warning);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    add_context(&mut response, token_of(&value).as_deref());
    add_warning(&mut response, warning.as_deref());
    Ok(response)
}

/// A value object as HTTP: 200 with one raw value, 300 with siblings, 404 when deleted,
/// 409 for a CRDT (it has its own route).
fn render(
    key: &Key,
    value: ReadValue,
    headers: &HeaderMap,
    warning: Option<String>,
) -> Result<Response, HttpError> {
    let token = token_of(&value);
    let values: Vec<Vec<u8>> = match value {
        ReadValue::Siblings { values, .. } => values.into_iter().map(|v| v.into_vec()).collect(),
        ReadValue::Lww { value, .. } => value.into_iter().map(|v| v.into_vec()).collect(),
        other => {
            let stored = crate::client::policy_of(&other);
            return Err(HttpError::WrongPolicy {
                key: key.to_string(),
                stored,
                route: crdt_route(key, stored),
            });
        }
    };
    let mut response = match values.as_slice() {
        [] => {
            return Err(HttpError::NotFound {
                key: key.to_string(),
                context: token,
            });
        }
        [one] => {
            let (ct, body) = envelope::open(one);
            let ct = HeaderValue::from_str(ct)
                .unwrap_or(HeaderValue::from_static(envelope::DEFAULT_CONTENT_TYPE));
            (
                StatusCode::OK,
                [(CONTENT_TYPE, ct)],
                Bytes::copy_from_slice(body),
            )
                .into_response()
        }
        many if wants_multipart(headers) => multipart(many)?,
        many => {
            let encoded: Vec<String> = many
                .iter()
                .map(|v| STANDARD.encode(envelope::open(v).1))
                .collect();
            (StatusCode::MULTIPLE_CHOICES, axum::Json(encoded)).into_response()
        }
    };
    add_context(&mut response, token.as_deref());
    add_warning(&mut response, warning.as_deref());
    Ok(response)
}

/// Where a CRDT key is read and written.
pub(crate) fn crdt_route(key: &Key, policy: Policy) -> String {
    let kind = match policy {
        Policy::Counter => "counters",
        Policy::Set => "sets",
        Policy::Map => "maps",
        Policy::Hll => "hlls",
        Policy::Siblings | Policy::Lww => "keys",
    };
    format!(
        "/v1/buckets/{}/{kind}/{}",
        String::from_utf8_lossy(&key.bucket),
        String::from_utf8_lossy(&key.key)
    )
}

fn wants_multipart(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("multipart/mixed"))
}

/// Siblings as `multipart/mixed`, each part with its own content type.
fn multipart(values: &[Vec<u8>]) -> Result<Response, HttpError> {
    let boundary = (0..BOUNDARY_TRIES_MAX)
        .map(|_| format!("ringkv-{:016x}", rand::random::<u64>()))
        .find(|b| {
            values
                .iter()
                .all(|v| !v.windows(b.len()).any(|w| w == b.as_bytes()))
        })
        .ok_or_else(|| {
            HttpError::Internal("no multipart boundary avoided every value's bytes".into())
        })?;
    let mut body = Vec::new();
    for value in values {
        let (ct, bytes) = envelope::open(value);
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}"))
        .map_err(|e| HttpError::Internal(format!("multipart content type: {e}")))?;
    Ok((StatusCode::MULTIPLE_CHOICES, [(CONTENT_TYPE, ct)], body).into_response())
}
