//! `ringkv stats`: the cluster figures, then one line per node.
//!
//! Kept apart from the other renderings because it is the only one built from several
//! nodes' answers, with a partial result to flag. JSON shape (fields may be added):
//!
//! ```text
//! {"cluster": {"distinct_keys", "hot_keys": [{"key", "count"}], "requests_counted",
//!              "partial", "nodes_answered", "unanswered": [{"name", "addr", "error"}],
//!              "scans_incomplete": ["n1"]},
//!  "nodes": [{"name", "addr", "answered": true, "distinct_keys", "scan_complete",
//!             "partitions_with_keys", "partition_sketch_bytes", "partition_precision",
//!             "window_ms", "hot_keys": [...],
//!             "ae": {"exchanges", "mismatches", "keys_repaired", "bytes_sent",
//!                    "primary_partitions", "partitions_compared", "oldest_exchange_age_ms"},
//!             "partitions": [{"partition", "distinct_keys", "sketch_bytes",
//!                             "last_exchange_age_ms"}]},
//!            {"name", "addr", "answered": false, "error"}]}
//! ```

use ringkv::{ClusterStats, HotKey, StatsInfo};
use serde_json::{Value, json};

use super::{Rendered, table};

/// Hot keys listed per node (the cluster list has `--top`).
pub const NODE_HOT_KEYS_SHOWN: usize = 3;

/// `stats`: the merged figures of every member that answered, and who did not.
pub fn stats(stats: &ClusterStats) -> Rendered {
    let mut nodes: Vec<Value> = stats
        .nodes
        .iter()
        .map(|(addr, info)| node_json(addr, info))
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
    let json = json!({
        "cluster": {
            "distinct_keys": stats.distinct_keys,
            "hot_keys": hot_json(&stats.hot_keys),
            "requests_counted": stats.requests_counted,
            "partial": stats.partial,
            "nodes_answered": stats.nodes.len(),
            "unanswered": unanswered,
            "scans_incomplete": scans,
        },
        "nodes": nodes,
    });
    let mut rendered = Rendered::new(json, human(stats));
    for u in &stats.unanswered {
        rendered = rendered.warn(Some(format!(
            "{} ({}) did not answer: {}; the cluster figures leave it out",
            u.node, u.addr, u.error
        )));
    }
    if !stats.scans_incomplete.is_empty() {
        rendered = rendered.warn(Some(format!(
            "{} still scanning their data after a start-up; their distinct keys may be undercounted until it ends",
            scans.join(", ")
        )));
    }
    rendered
}

fn node_json(addr: &str, info: &StatsInfo) -> Value {
    let hot = info
        .hot_keys(NODE_HOT_KEYS_SHOWN)
        .map(|h| hot_json(&h))
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
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
    json!({
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
        "partitions": partitions,
    })
}

fn hot_json(hot: &[HotKey]) -> Value {
    hot.iter()
        .map(|h| json!({ "key": h.key.to_string(), "count": h.count }))
        .collect()
}

fn human(stats: &ClusterStats) -> String {
    let members = stats.nodes.len() + stats.unanswered.len();
    let window_s = stats
        .nodes
        .first()
        .map_or(0, |(_, info)| info.window_ms / 1_000);
    let mut text = format!(
        "cluster: ~{} distinct keys from {} of {members} nodes{}; {} requests counted over the last 1-2 windows of {window_s} s\n",
        stats.distinct_keys,
        stats.nodes.len(),
        if stats.partial { " (partial)" } else { "" },
        stats.requests_counted,
    );
    if stats.hot_keys.is_empty() {
        text.push_str("no requests counted yet\n");
    } else {
        let rows: Vec<Vec<String>> = stats
            .hot_keys
            .iter()
            .map(|h| vec![h.key.to_string(), format!("~{}", h.count)])
            .collect();
        text.push_str(&table(&["HOT KEY", "REQUESTS"], &rows));
        text.push('\n');
    }
    let mut rows: Vec<Vec<String>> = stats
        .nodes
        .iter()
        .map(|(_, info)| {
            vec![
                info.node.0.clone(),
                format!(
                    "~{}{}",
                    info.distinct_keys,
                    if info.scan_complete {
                        ""
                    } else {
                        " (scanning)"
                    }
                ),
                info.partitions_with_keys().to_string(),
                info.partition_sketch_bytes.to_string(),
                info.ae.exchanges.to_string(),
                info.ae.mismatches.to_string(),
                info.ae.keys_repaired.to_string(),
                info.ae.bytes_sent.to_string(),
                format!(
                    "{}/{}",
                    info.ae.partitions_compared, info.ae.primary_partitions
                ),
                info.ae
                    .oldest_exchange_age_ms
                    .map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1e3)),
            ]
        })
        .collect();
    rows.extend(stats.unanswered.iter().map(|u| {
        let mut row = vec![u.node.0.clone(), "no answer".to_string()];
        row.resize(10, "-".to_string());
        row
    }));
    text.push_str(&table(
        &[
            "NODE",
            "DISTINCT KEYS",
            "PARTITIONS",
            "SKETCH BYTES",
            "AE EXCHANGES",
            "MISMATCHES",
            "REPAIRED",
            "AE BYTES",
            "COMPARED",
            "OLDEST",
        ],
        &rows,
    ));
    text
}
