//! The routes, and the layers every request passes: the header limits and a JSON 404
//! for paths that name no route.
//!
//! To add a route: write its handler with a `#[utoipa::path]` annotation (for a route
//! outside `/v1`, such as `/metrics` or a status page, annotate it too, or add it with
//! `route` on the finished router if it must stay out of the document), register it with
//! `routes!` in `documented` below, and list it in [`ROUTES`]; the tests check that the document
//! and that list agree and that every documented route answers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{ReadToken, check_access};
use super::error::HttpError;
use super::front::Front;
use super::limits::{HEADERS_BYTES_MAX, HEADERS_COUNT_MAX};
use super::openapi::{ApiDoc, Document, openapi_json};
use super::{crdt, keys, observe, ops};

/// Every route served, as (method, path template): the contract of the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/buckets/{bucket}/keys/{key}"),
    ("put", "/v1/buckets/{bucket}/keys/{key}"),
    ("delete", "/v1/buckets/{bucket}/keys/{key}"),
    ("get", "/v1/buckets/{bucket}/counters/{key}"),
    ("post", "/v1/buckets/{bucket}/counters/{key}"),
    ("get", "/v1/buckets/{bucket}/sets/{key}"),
    ("post", "/v1/buckets/{bucket}/sets/{key}"),
    ("get", "/v1/buckets/{bucket}/maps/{key}"),
    ("post", "/v1/buckets/{bucket}/maps/{key}"),
    ("get", "/v1/buckets/{bucket}/hlls/{key}"),
    ("post", "/v1/buckets/{bucket}/hlls/{key}"),
    ("get", "/v1/status"),
    ("get", "/v1/ring"),
    ("get", "/v1/stats"),
    ("get", "/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/"),
];

/// What the handlers share: the way to the core, the finished document, and the
/// read-only token if one is configured.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    front: Front,
    doc: Document,
    read_token: Option<ReadToken>,
}

impl FromRef<AppState> for Option<ReadToken> {
    fn from_ref(state: &AppState) -> Option<ReadToken> {
        state.read_token.clone()
    }
}

impl FromRef<AppState> for Front {
    fn from_ref(state: &AppState) -> Front {
        state.front.clone()
    }
}

impl FromRef<AppState> for Document {
    fn from_ref(state: &AppState) -> Document {
        state.doc.clone()
    }
}

/// The documented routes and their OpenAPI document, before state is given.
fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(keys::get_key, keys::put_key, keys::delete_key))
        .routes(routes!(crdt::get_counter, crdt::post_counter))
        .routes(routes!(crdt::get_set, crdt::post_set))
        .routes(routes!(crdt::get_map, crdt::post_map))
        .routes(routes!(crdt::get_hll, crdt::post_hll))
        .routes(routes!(ops::status))
        .routes(routes!(ops::ring))
        .routes(routes!(ops::stats))
        .routes(routes!(observe::metrics))
        .routes(routes!(observe::status_page))
        .split_for_parts()
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

/// The whole API, ready to serve. Every request passes the header limits, then the
/// access check ([`check_access`]: a client certificate, or the read-only token on a
/// read-only route), before its route.
pub(crate) fn router(front: Front, read_token: Option<ReadToken>) -> Router {
    let (routes, doc) = documented();
    let doc = Document(Arc::new(serde_json::to_value(&doc).unwrap_or_default()));
    let state = AppState {
        front,
        doc,
        read_token,
    };
    routes
        .route("/v1/openapi.json", get(openapi_json))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), check_access))
        .layer(middleware::from_fn(check_headers))
        .with_state(state)
}

/// Refuses requests whose headers are over [`HEADERS_COUNT_MAX`] or
/// [`HEADERS_BYTES_MAX`].
async fn check_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if headers.len() > HEADERS_COUNT_MAX {
        return HttpError::BadRequest(format!(
            "the request has {} headers, over the limit of {HEADERS_COUNT_MAX}",
            headers.len()
        ))
        .into_response();
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > HEADERS_BYTES_MAX {
        return HttpError::BadRequest(format!(
            "the request headers are {bytes} bytes, over the limit of {HEADERS_BYTES_MAX}"
        ))
        .into_response();
    }
    next.run(request).await
}

async fn no_route(method: Method, uri: Uri) -> Response {
    let body = super::error::ErrorBody {
        error: format!(
            "no route for {method} {}; the routes are listed in /v1/openapi.json",
            uri.path()
        ),
        code: "no_route".into(),
        quorum: None,
    };
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        // invariant: test-only; the document is built in-process by utoipa, not read from the network
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut documented = BTreeSet::new();
        // invariant: test-only; the document is built in-process by utoipa, not read from the network
        for (path, item) in doc["paths"].as_object().unwrap() {
            // invariant: test-only; the document is built in-process by utoipa, not read from the network
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
        // invariant: test-only; the document is built in-process by utoipa, not read from the network
        assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    }
}
