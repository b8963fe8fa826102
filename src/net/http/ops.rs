//! `GET /v1/status`, `/v1/ring` and `/v1/stats`: the same JSON documents as `ringkv
//! status --json`, `ringkv ring --json` and `ringkv stats --json`, built by the same code
//! ([`crate::client::json`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::client::CLIENT_TIMEOUT_MS;
use crate::client::json::PartitionRows;
use crate::core::stats::HOT_KEYS_K;
use std::net::SocketAddr;

use crate::core::placement::ring::NodeId;
use crate::core::stats::StatsInfo;
use crate::net::FRAME_BYTES_MAX;
use crate::proto::{
    ClientReply, ClientRequest, PROTOCOL_VERSION, StatusInfo, WireBody, WireRequest, WireResponse,
};

use super::error::{ErrorBody, HttpError};
use super::front::Front;
use super::keys::unexpected;
use super::params;

/// Cluster hot keys `/v1/stats` lists unless `top` says otherwise (as `ringkv stats`).
pub const STATS_TOP_DEFAULT: usize = 10;

/// Query parameters of `/v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Cluster hot keys to list, 1 to 32 (default 10).
    pub top: Option<usize>,
    /// List every node's partitions (about 200 KB for three nodes); default false.
    pub partitions: Option<bool>,
}

/// Membership as this node sees it.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    responses(
        (status = 200, description = "As `ringkv status --json`: `node`, `nodes` [{name, addr, state, phase, share, hints}], `transfers`", body = Object),
        (status = 503, description = "The node is shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn status(State(front): State<Front>) -> Result<Json<Value>, HttpError> {
    Ok(Json(crate::client::json::status(
        &own_status(&front).await?,
    )))
}

/// The ring's layout.
#[utoipa::path(
    get,
    path = "/v1/ring",
    tag = "operations",
    responses(
        (status = 200, description = "As `ringkv ring --json`: `partitions`, `n`, `balance`, `nodes` [{name, vnodes, primary_partitions, replica_share}]", body = Object),
        (status = 503, description = "The node is shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn ring(State(front): State<Front>) -> Result<Json<Value>, HttpError> {
    match front.call(ClientRequest::Ring).await? {
        ClientReply::Ring(info) => Ok(Json(crate::client::json::ring(&info))),
        other => Err(unexpected("a ring request", &other)),
    }
}

/// Every member's statistics, merged.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    params(StatsParams),
    responses(
        (status = 200, description = "As `ringkv stats --json`: `cluster` figures and one entry per node (a member that does not answer is named, and the figures are `partial`); per-partition rows only with `partitions=true`", body = Object),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 503, description = "The node is shutting down", body = ErrorBody),
    )
)]
pub(crate) async fn stats(
    State(front): State<Front>,
    query: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let query = params::query(query)?;
    let top = query.top.unwrap_or(STATS_TOP_DEFAULT);
    let rows = PartitionRows::listed_if(query.partitions.unwrap_or(false));
    if !(1..=HOT_KEYS_K).contains(&top) {
        return Err(HttpError::BadRequest(format!(
            "top={top} is out of range: list 1 to {HOT_KEYS_K} hot keys"
        )));
    }
    let status = own_status(&front).await?;
    // This node answers through its core; the other members over QUIC on this node's own
    // peer connections (the pool its peer links use), as a client request stream. A new
    // connection under the node's certificate would look to them like a restart of this
    // node, and they would drop its peer links.
    let ask = |member: &NodeId, addr: Result<SocketAddr, String>| {
        let front = front.clone();
        let own = *member == front.node;
        async move {
            if own {
                return match front.call(ClientRequest::Stats).await {
                    Ok(ClientReply::Stats(info)) => Ok(*info),
                    Ok(other) => Err(unexpected("a stats request", &other).to_string()),
                    Err(e) => Err(e.to_string()),
                };
            }
            ask_member(&front, addr?).await
        }
    };
    let stats = crate::client::stats::gather_with(status, ask, top).await;
    Ok(Json(crate::client::json::stats(&stats, rows)))
}

/// One member's statistics, asked on the node's own connection to it.
async fn ask_member(front: &Front, addr: SocketAddr) -> Result<StatsInfo, String> {
    let request = WireRequest {
        version: PROTOCOL_VERSION,
        body: WireBody::Client(ClientRequest::Stats),
    };
    let answer: WireResponse = front
        .pool
        .request(addr, &request, CLIENT_TIMEOUT_MS, FRAME_BYTES_MAX)
        .await
        .map_err(|e| e.to_string())?;
    match answer {
        WireResponse::Client(ClientReply::Stats(info)) => Ok(*info),
        WireResponse::Client(ClientReply::Error(e)) => Err(e.to_string()),
        WireResponse::Refused(reason) => Err(reason),
        other => Err(format!("{addr} answered a stats request with {other:?}")),
    }
}

async fn own_status(front: &Front) -> Result<StatusInfo, HttpError> {
    match front.call(ClientRequest::Status).await? {
        ClientReply::Status(info) => Ok(info),
        other => Err(unexpected("a status request", &other)),
    }
}
