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
//!                             "last_exchange_age_ms"}]},   (only with --partitions)
//!            {"name", "addr", "answered": false, "error"}]}
//! ```

use ringkv::ClusterStats;
use ringkv::client::json::PartitionRows;

use super::{Rendered, table};

/// `stats`: the merged figures of every member that answered, and who did not. The JSON
/// is the library's ([`ringkv::client::json::stats`]), shared with `GET /v1/stats`.
pub fn stats(stats: &ClusterStats, rows: PartitionRows) -> Rendered {
    let scans: Vec<&str> = stats.scans_incomplete.iter().map(|n| n.as_str()).collect();
    let mut rendered = Rendered::new(ringkv::client::json::stats(stats, rows), human(stats, rows));
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

fn human(stats: &ClusterStats, partition_rows: PartitionRows) -> String {
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
    if partition_rows == PartitionRows::List {
        text.push('\n');
        text.push_str(&partitions(stats));
    }
    text
}

/// One row per partition of every node that answered (`--partitions`).
fn partitions(stats: &ClusterStats) -> String {
    let rows: Vec<Vec<String>> = stats
        .nodes
        .iter()
        .flat_map(|(_, info)| {
            info.partition_stats.iter().map(|p| {
                vec![
                    info.node.0.clone(),
                    p.partition.to_string(),
                    format!("~{}", p.distinct_keys),
                    p.sketch_bytes.to_string(),
                    p.last_exchange_age_ms
                        .map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1e3)),
                ]
            })
        })
        .collect();
    table(
        &[
            "NODE",
            "PARTITION",
            "DISTINCT KEYS",
            "SKETCH BYTES",
            "LAST EXCHANGE",
        ],
        &rows,
    )
}
