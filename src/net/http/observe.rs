//! `GET /metrics` and `GET /`: what an operator watches a node by. Both only read — the
//! metrics from this node's own recorder (`crate::net::metrics`), the page from the
//! binary — so a read-only token opens them ([`super::auth`]).
//!
//! The page is one HTML file with its script inline (`status.html`): no CDN, no build
//! step, nothing fetched but this node's own `/v1/status`, `/v1/stats` and `/v1/ring`,
//! so it works offline and behind the same TLS as the API.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::front::Front;

/// The status page, embedded at build time.
pub const STATUS_PAGE_HTML: &str = include_str!("status.html");
/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What the page may load and run: its own inline script and style, requests to this
/// node only.
pub const STATUS_PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/// This node's metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4: this node's counters, gauges and histograms (listed in the README)", content_type = "text/plain", body = String),
        (status = 401, description = "No client certificate and no valid read-only token", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn metrics(State(front): State<Front>) -> Response {
    let mut response = front.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
}

/// The live status page: members, ring shares, hints, transfers, anti-entropy, keys.
#[utoipa::path(
    get,
    path = "/",
    tag = "observability",
    params(("token" = Option<String>, Query, description = "The read-only token, for a browser without a client certificate (the page then sends it as a bearer token)")),
    responses(
        (status = 200, description = "One HTML page with an inline script that polls /v1/status, /v1/stats and /v1/ring", content_type = "text/html", body = String),
        (status = 401, description = "No client certificate and no valid read-only token", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn status_page() -> Response {
    let mut response = axum::response::Html(STATUS_PAGE_HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(STATUS_PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
