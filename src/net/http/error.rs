//! The one error type of the HTTP layer, and the status code of each case.
//!
//! Every refusal is a JSON body `{"error": SENTENCE, "code": NAME}` with a status code a
//! Riak or Garage user would expect; a failed quorum adds `"quorum"` with the counts and
//! the nodes, and a missing key that was deleted carries its context in
//! `X-Ringkv-Context`, so a client can write over the tombstone.
//!
//! | case | status |
//! | --- | --- |
//! | malformed request, bad parameter, header, key or batch over a limit | 400 |
//! | no client certificate, and no valid read-only token for a read-only route | 401 |
//! | missing key or object | 404 |
//! | the key holds an object of another policy; too many siblings | 409 |
//! | body or value over its limit | 413 |
//! | storage or internal failure | 500 |
//! | quorum not met, node overloaded, not ready, shutting down, forward failed | 503 |

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;
use utoipa::ToSchema;

use crate::core::object::{ObjectError, Policy};
use crate::proto::{QuorumFailure, RequestError};

use super::params::CONTEXT_HEADER;

/// Why an HTTP request was refused.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The request is malformed, or a header, key, list or parameter is over its limit.
    #[error("{0}")]
    BadRequest(String),
    /// The body (or the value it makes) is over its limit.
    #[error("{what} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size, or the size read so far.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The connection presented no client certificate, and the request no read-only
    /// token that opens its route.
    #[error("{0}")]
    Unauthorized(String),
    /// No replica holds the key, or it is deleted.
    #[error("{key} is not found")]
    NotFound {
        /// The key, as `bucket/key`.
        key: String,
        /// The deleted object's context token, if the key is a tombstone.
        context: Option<String>,
    },
    /// The key holds an object of another policy than the route serves.
    #[error("{key} holds a `{stored}` object; read and write it at {route} instead")]
    WrongPolicy {
        /// The key, as `bucket/key`.
        key: String,
        /// The stored object's policy.
        stored: Policy,
        /// The route that serves that policy.
        route: String,
    },
    /// The node refused or failed the request.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The node did not take or answer the request (it is shutting down, or timed out).
    #[error("{0}")]
    Unavailable(String),
    /// The node answered with something this layer cannot use (a bug, or a mixed build).
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of every refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do, as one sentence.
    pub error: String,
    /// A stable name for the case: `bad_request`, `too_large`, `unauthorized`, `not_found`,
    /// `wrong_policy`, `conflict`, `quorum_failed`, `overloaded`, `not_ready`,
    /// `forward_failed`, `unavailable` or `internal`.
    pub code: String,
    /// For `quorum_failed`: `op`, `key`, `needed`, `n`, `strict`, `acked`, `failed`
    /// (`[{"node", "error"}]`), `timed_out`, `unreachable` and `up` (set when no replica
    /// was asked because too few were up).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub quorum: Option<Value>,
}

impl HttpError {
    /// The status code and the stable name of the case.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            HttpError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            HttpError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            HttpError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            HttpError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            HttpError::WrongPolicy { .. } => (StatusCode::CONFLICT, "wrong_policy"),
            HttpError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            HttpError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            HttpError::Request(e) => request_status(e),
        }
    }
}

fn request_status(e: &RequestError) -> (StatusCode, &'static str) {
    match e {
        RequestError::InvalidQuorum(_) | RequestError::BadRequest(_) => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        RequestError::QuorumFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "quorum_failed"),
        RequestError::Object { error, .. } => match error {
            ObjectError::PolicyMismatch { .. } => (StatusCode::CONFLICT, "wrong_policy"),
            ObjectError::TooManySiblings { .. } | ObjectError::NotDeletable { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            ObjectError::BadContext(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ObjectError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        },
        RequestError::Storage { .. } | RequestError::Internal { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
        RequestError::Overloaded { .. } | RequestError::TimersFull { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
        }
        RequestError::NotReady { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        RequestError::Forward { .. } => (StatusCode::SERVICE_UNAVAILABLE, "forward_failed"),
    }
}

/// The counts and nodes of a failed quorum, as JSON.
fn quorum_json(q: &QuorumFailure) -> Value {
    let failed: Vec<Value> = q
        .failed
        .iter()
        .map(|(node, error)| json!({ "node": node.0, "error": error }))
        .collect();
    let names = |nodes: &[crate::core::placement::ring::NodeId]| -> Vec<String> {
        nodes.iter().map(|n| n.0.clone()).collect()
    };
    json!({
        "op": q.op,
        "key": q.key,
        "needed": q.needed,
        "n": q.n,
        "strict": q.strict,
        "acked": names(&q.acked),
        "failed": failed,
        "timed_out": names(&q.timed_out),
        "unreachable": names(&q.unreachable),
        "up": q.up.as_deref().map(names),
    })
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let quorum = match &self {
            HttpError::Request(RequestError::QuorumFailed(q)) => Some(quorum_json(q)),
            _ => None,
        };
        let body = ErrorBody {
            error: self.to_string(),
            code: code.to_string(),
            quorum,
        };
        let mut response = (status, Json(body)).into_response();
        if let HttpError::Unauthorized(_) = &self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ringkv\""),
            );
        }
        if let HttpError::NotFound {
            context: Some(token),
            ..
        } = &self
            && let Ok(value) = HeaderValue::from_str(token)
        {
            response.headers_mut().insert(CONTEXT_HEADER, value);
        }
        response
    }
}
