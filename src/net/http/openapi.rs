//! The OpenAPI 3 document of the API, generated from the handlers' annotations
//! (`utoipa`): the router registers each handler together with its path item
//! ([`super::router`]), so a route cannot be served without being documented. Only the
//! JSON is served, at `/v1/openapi.json`; no UI bundle.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use utoipa::OpenApi;

/// The document's fixed parts; the paths come from the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ringkv HTTP API",
        description = "Every node serves this API over TLS with its certificate and requires a client certificate signed by the cluster CA. The causal context travels in X-Ringkv-Context; an optional X-Ringkv-Op-Id (CLIENT-SEQ) makes a write exactly-once. Errors are JSON {\"error\", \"code\"} with a sentence.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "keys", description = "Values with siblings or last-writer-wins"),
        (name = "crdts", description = "Counters, sets, maps and HyperLogLogs"),
        (name = "operations", description = "Membership, ring and statistics"),
        (name = "observability", description = "Prometheus metrics and the live status page; a read-only bearer token (when the node has one) opens these and /v1/status, /v1/ring, /v1/stats"),
        (name = "meta", description = "This document")
    ),
    paths(openapi_json)
)]
pub struct ApiDoc;

/// The finished document, served as it is.
#[derive(Clone, Debug)]
pub(crate) struct Document(pub(crate) Arc<Value>);

/// This OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document of every route", body = Object))
)]
pub(crate) async fn openapi_json(State(doc): State<Document>) -> Json<Value> {
    Json(doc.0.as_ref().clone())
}
