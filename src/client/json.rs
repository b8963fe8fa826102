//! The JSON shapes of the operations reports — `ringkv status --json`, `ringkv ring
//! --json` and `ringkv stats --json` — built here, in the library, so the CLI and the HTTP
//! API (`GET /v1/status`, `/v1/ring`, `/v1/stats`) answer the very same document.
//!
//! These shapes are a contract scripts rely on: fields may be added, never renamed. The
//! CLI's tests pin every field name.

use serde_json::{Value, json};

use crate::core::stats::{ClusterStats, HotKey, StatsInfo};
use crate::proto::{RingInfo, StatusInfo};

/// Hot keys listed per node in the stats report (the cluster list has its own `top`).
pub const NODE_HOT_KEYS_SHOWN: usize = 3;

/// Whether the stats report lists every node's partitions (`ringkv stats --partitions`,
/// `GET /v1/stats?partitions=true`) or only the per-node summary (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartitionRows {
    /// Per-node figures only; no `partitions` field.
    #[default]
    Omit,
    /// A `partitions` array on every node that answered.
    List,
}

impl PartitionRows {
    /// `List` when asked for, `Omit` otherwise.
    pub fn listed_if(list: bool) -> PartitionRows {
        if list {
            PartitionRows::List
        } else {
            PartitionRows::Omit
        }
    }
}

/// `status`: `{"node": "n1", "nodes": [{"name", "addr", "state", "phase", "share",
/// "hints"}], "transfers": {"pending", "done", "keys_sent", "bytes_sent"}}`.
pub fn status(info: &StatusInfo) -> Value {
    let nodes: Vec<Value> = info
        .members
        .iter()
        .map(|m| {
            json!({
                "name": m.name.0,
                "addr": m.addr,
                "state": m.state,
                "phase": m.phase,
                "share": m.share,
                "hints": m.hints,
            })
        })
        .collect();
    let t = &info.transfers;
    let transfers = json!({
        "pending": t.pending,
        "done": t.done,
        "keys_sent": t.keys_sent,
        "bytes_sent": t.bytes_sent,
    });
    json!({ "node": info.node.0, "nodes": nodes, "transfers": transfers })
}

/// `ring`: `{"partitions", "n", "balance", "nodes": [{"name", "vnodes",
/// "primary_partitions", "replica_share"}]}`.
pub fn ring(info: &RingInfo) -> Value {
    let nodes: Vec<Value> = info
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name.0,
                "vnodes": n.vnodes,
                "primary_partitions": n.primary_partitions,
                "replica_share": n.replica_share,
            })
        })
        .collect();
    json!({
        "partitions": info.partitions,
        "n": info.n,
        "balance": info.balance,
        "nodes": nodes,
    })
}

/// `stats`: the merged figures of every member that answered, and who did not.
///
/// ```text
/// {"cluster": {"distinct_keys", "hot_keys": [{"key", "count"}], "requests_counted",
///              "partial", "nodes_answered", "unanswered": [{"name", "addr", "error"}],
///              "scans_incomplete": ["n1"]},
///  "nodes": [{"name", "addr", "answered": true, "distinct_keys", "scan_complete",
///             "partitions_with_keys", "partition_sketch_bytes", "partition_precision",
///             "window_ms", "hot_keys": [...],
///             "ae": {"exchanges", "mismatches", "keys_repaired", "bytes_sent",
///                    "primary_partitions", "partitions_compared", "oldest_exchange_age_ms"},
///             "partitions": [{"partition", "distinct_keys", "sketch_bytes",
///                             "last_exchange_age_ms"}]},
///            {"name", "addr", "answered": false, "error"}]}
/// ```
///
/// `partitions` is present only with [`PartitionRows::List`]: one row per partition of
/// every node is about 200 KB for three nodes, which a dashboard polling the summary does
/// not want.
pub fn stats(stats: &ClusterStats, rows: PartitionRows) -> Value {
    let mut nodes: Vec<Value> = stats
        .nodes
        .iter()
        .map(|(addr, info)| node_stats(addr, info, rows))
        .collect();
    nodes.extend(
        stats.unanswered.iter().map(
            |u| json!({ "name": u.node.0, "addr": u.addr, "answered": false, "error": u.error }),
        ),
    );
    let unanswered: Vec<Value> = stats
        .unanswered
        .iter()
        .map(|u| json!({ "name": u.node.0, "addr": u.addr, "error": u.error }))
        .collect();
    let scans: Vec<&str> = stats.scans_incomplete.iter().map(|n| n.as_str()).collect();
    json!({
        "cluster": {
            "distinct_keys": stats.distinct_keys,
            "hot_keys": hot_keys(&stats.hot_keys),
            "requests_counted": stats.requests_counted,
            "partial": stats.partial,
            "nodes_answered": stats.nodes.len(),
            "unanswered": unanswered,
            "scans_incomplete": scans,
        },
        "nodes": nodes,
    })
}

fn node_stats(addr: &str, info: &StatsInfo, rows: PartitionRows) -> Value {
    let hot = info
        .hot_keys(NODE_HOT_KEYS_SHOWN)
        .map(|h| hot_keys(&h))
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let mut node = json!({
        "name": info.node.0,
        "addr": addr,
        "answered": true,
        "distinct_keys": info.distinct_keys,
        "scan_complete": info.scan_complete,
        "partitions_with_keys": info.partitions_with_keys(),
        "partition_sketch_bytes": info.partition_sketch_bytes,
        "partition_precision": info.partition_precision,
        "window_ms": info.window_ms,
        "hot_keys": hot,
        "ae": {
            "exchanges": info.ae.exchanges,
            "mismatches": info.ae.mismatches,
            "keys_repaired": info.ae.keys_repaired,
            "bytes_sent": info.ae.bytes_sent,
            "primary_partitions": info.ae.primary_partitions,
            "partitions_compared": info.ae.partitions_compared,
            "oldest_exchange_age_ms": info.ae.oldest_exchange_age_ms,
        },
    });
    if rows == PartitionRows::List {
        let partitions: Vec<Value> = info
            .partition_stats
            .iter()
            .map(|p| {
                json!({
                    "partition": p.partition,
                    "distinct_keys": p.distinct_keys,
                    "sketch_bytes": p.sketch_bytes,
                    "last_exchange_age_ms": p.last_exchange_age_ms,
                })
            })
            .collect();
        if let Value::Object(fields) = &mut node {
            fields.insert("partitions".to_owned(), Value::Array(partitions));
        }
    }
    node
}

fn hot_keys(hot: &[HotKey]) -> Value {
    hot.iter()
        .map(|h| json!({ "key": h.key.to_string(), "count": h.count }))
        .collect()
}
