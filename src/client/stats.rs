//! Statistics calls: one node's, and the whole cluster's merged.
//!
//! A cluster figure needs every member's sketches, not just the connected node's, so
//! [`Client::cluster_stats`] asks the connected node who the members are, asks each of them
//! at once (each call bounded by the client deadline), and merges with
//! [`ClusterStats::merge`]. A member that cannot be reached is named in the result instead
//! of failing the whole call.

use std::net::SocketAddr;
use std::path::Path;

use tokio::task::JoinSet;

use crate::client::{Client, ClientError, load_client_identity, reply_kind};
use crate::core::placement::ring::NodeId;
use crate::core::stats::{ClusterStats, NodeAnswer, StatsInfo};
use crate::net::Identity;
use crate::proto::{ClientReply, ClientRequest, StatusInfo};

/// The connected node's statistics ([`Client::stats`]).
pub(super) async fn node_stats(client: &Client) -> Result<StatsInfo, ClientError> {
    match client.call(ClientRequest::Stats).await? {
        ClientReply::Stats(info) => Ok(*info),
        other => Err(client.unexpected("stats", reply_kind(&other))),
    }
}

/// Every member's statistics, merged ([`Client::cluster_stats`]).
pub(super) async fn cluster_stats(
    client: &Client,
    certs_dir: &Path,
    cert_name: &str,
    hot_keys_max: usize,
) -> Result<ClusterStats, ClientError> {
    let status = client.status().await?;
    let identity = load_client_identity(certs_dir, cert_name)?;
    Ok(gather(status, &identity, client.timeout_ms, hot_keys_max).await)
}

/// Asks every member of `status` for its statistics at once, as `identity`, each call
/// bounded by `timeout_ms`, and merges the answers: the part of [`Client::cluster_stats`]
/// after the member list is known.
pub(crate) async fn gather(
    status: StatusInfo,
    identity: &Identity,
    timeout_ms: u64,
    hot_keys_max: usize,
) -> ClusterStats {
    let ask = |_: &NodeId, addr: Result<SocketAddr, String>| {
        let member_client = addr.and_then(|addr| {
            Client::with_identity(addr, identity)
                .map(|member| member.with_timeout_ms(timeout_ms))
                .map_err(|e| e.to_string())
        });
        async move { member_client?.stats().await.map_err(|e| e.to_string()) }
    };
    gather_with(status, ask, hot_keys_max).await
}

/// Asks every member of `status` at once with `ask` (given its name and resolved address)
/// and merges the answers; a member whose ask fails is named with its error. Shared with
/// the HTTP API, which knows the member list from its own core and asks over the node's
/// own peer connections (a second connection under the node's certificate would look to
/// the other members like a restart of this node).
pub(crate) async fn gather_with<F, Fut>(
    status: StatusInfo,
    ask: F,
    hot_keys_max: usize,
) -> ClusterStats
where
    F: Fn(&NodeId, Result<SocketAddr, String>) -> Fut,
    Fut: Future<Output = Result<StatsInfo, String>> + Send + 'static,
{
    let mut asks = JoinSet::new();
    let mut answers = Vec::with_capacity(status.members.len());
    for (index, member) in status.members.into_iter().enumerate() {
        let asking = ask(&member.name, resolve(&member.addr).await);
        asks.spawn(async move { (index, asking.await) });
        answers.push(NodeAnswer {
            node: member.name,
            addr: member.addr,
            result: Err("the stats request ended without an answer".to_string()),
        });
    }
    while let Some(joined) = asks.join_next().await {
        // A task fails to join only if it panicked or the runtime is shutting down;
        // that member keeps its "no answer" error.
        if let Ok((index, result)) = joined
            && let Some(answer) = answers.get_mut(index)
        {
            answer.result = result;
        }
    }
    ClusterStats::merge(answers, hot_keys_max)
}

/// A member's advertised address as a socket address (names are looked up).
async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(parsed) = addr.parse() {
        return Ok(parsed);
    }
    let unresolved = |reason: String| format!("member address {addr:?} does not resolve: {reason}");
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .next()
        .ok_or_else(|| unresolved("no address found".to_string()))
}
