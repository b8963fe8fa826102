//! Every metric a node exports, by name, with its kind and its one-line help: the one
//! list the recorder describes, the README documents and the tests check.

/// How Prometheus should read a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (since the node started).
    Counter,
    /// Goes up and down; a sample of the present.
    Gauge,
    /// Observations in buckets, with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The Prometheus name.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// The labels it carries, comma-separated, or "" for none.
    pub labels: &'static str,
    /// The `# HELP` line.
    pub help: &'static str,
}

/// Name of `ringkv_requests_total` (see [`METRICS`]).
pub const REQUESTS_TOTAL: &str = "ringkv_requests_total";
/// Name of `ringkv_request_duration_seconds` (see [`METRICS`]).
pub const REQUEST_DURATION_SECONDS: &str = "ringkv_request_duration_seconds";
/// Name of `ringkv_requests_inflight` (see [`METRICS`]).
pub const REQUESTS_INFLIGHT: &str = "ringkv_requests_inflight";
/// Name of `ringkv_read_siblings` (see [`METRICS`]).
pub const READ_SIBLINGS: &str = "ringkv_read_siblings";
/// Name of `ringkv_object_bytes` (see [`METRICS`]).
pub const OBJECT_BYTES: &str = "ringkv_object_bytes";
/// Name of `ringkv_read_repairs_total` (see [`METRICS`]).
pub const READ_REPAIRS_TOTAL: &str = "ringkv_read_repairs_total";
/// Name of `ringkv_hints_queued` (see [`METRICS`]).
pub const HINTS_QUEUED: &str = "ringkv_hints_queued";
/// Name of `ringkv_hints_handed_off_total` (see [`METRICS`]).
pub const HINTS_HANDED_OFF_TOTAL: &str = "ringkv_hints_handed_off_total";
/// Name of `ringkv_ae_exchanges_total` (see [`METRICS`]).
pub const AE_EXCHANGES_TOTAL: &str = "ringkv_ae_exchanges_total";
/// Name of `ringkv_ae_mismatches_total` (see [`METRICS`]).
pub const AE_MISMATCHES_TOTAL: &str = "ringkv_ae_mismatches_total";
/// Name of `ringkv_ae_keys_repaired_total` (see [`METRICS`]).
pub const AE_KEYS_REPAIRED_TOTAL: &str = "ringkv_ae_keys_repaired_total";
/// Name of `ringkv_ae_bytes_total` (see [`METRICS`]).
pub const AE_BYTES_TOTAL: &str = "ringkv_ae_bytes_total";
/// Name of `ringkv_transfer_bytes_total` (see [`METRICS`]).
pub const TRANSFER_BYTES_TOTAL: &str = "ringkv_transfer_bytes_total";
/// Name of `ringkv_transfer_keys_total` (see [`METRICS`]).
pub const TRANSFER_KEYS_TOTAL: &str = "ringkv_transfer_keys_total";
/// Name of `ringkv_transfer_partitions_pending` (see [`METRICS`]).
pub const TRANSFER_PARTITIONS_PENDING: &str = "ringkv_transfer_partitions_pending";
/// Name of `ringkv_members` (see [`METRICS`]).
pub const MEMBERS: &str = "ringkv_members";
/// Name of `ringkv_suspicions_total` (see [`METRICS`]).
pub const SUSPICIONS_TOTAL: &str = "ringkv_suspicions_total";
/// Name of `ringkv_fsync_duration_seconds` (see [`METRICS`]).
pub const FSYNC_DURATION_SECONDS: &str = "ringkv_fsync_duration_seconds";
/// Name of `ringkv_group_commit_batch_inputs` (see [`METRICS`]).
pub const GROUP_COMMIT_BATCH_INPUTS: &str = "ringkv_group_commit_batch_inputs";
/// Name of `ringkv_storage_bytes` (see [`METRICS`]).
pub const STORAGE_BYTES: &str = "ringkv_storage_bytes";
/// Name of `ringkv_client_sessions` (see [`METRICS`]).
pub const CLIENT_SESSIONS: &str = "ringkv_client_sessions";
/// Name of `ringkv_client_sessions_total` (see [`METRICS`]).
pub const CLIENT_SESSIONS_TOTAL: &str = "ringkv_client_sessions_total";
/// Name of `ringkv_connections` (see [`METRICS`]).
pub const CONNECTIONS: &str = "ringkv_connections";
/// Name of `ringkv_connections_total` (see [`METRICS`]).
pub const CONNECTIONS_TOTAL: &str = "ringkv_connections_total";

/// Every metric, in the order the README lists them.
pub const METRICS: &[Metric] = &[
    Metric {
        name: REQUESTS_TOTAL,
        kind: Kind::Counter,
        labels: "role, op, policy, outcome",
        help: "Requests answered: role=coordinator (asked by a client of this node), forwarded (coordinated for a peer) or replica (a peer's read or replicate)",
    },
    Metric {
        name: REQUEST_DURATION_SECONDS,
        kind: Kind::Histogram,
        labels: "role, op, policy, outcome",
        help: "Time from a request entering the node to its answer leaving (after the persist that covers it)",
    },
    Metric {
        name: REQUESTS_INFLIGHT,
        kind: Kind::Gauge,
        labels: "",
        help: "Requests coordinated or forwarded and hint deliveries not yet finished",
    },
    Metric {
        name: READ_SIBLINGS,
        kind: Kind::Histogram,
        labels: "",
        help: "Siblings per successful read of a siblings-policy key, as the client got them",
    },
    Metric {
        name: OBJECT_BYTES,
        kind: Kind::Histogram,
        labels: "policy",
        help: "Encoded size of each object this node received to store as a replica",
    },
    Metric {
        name: READ_REPAIRS_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Stale replicas a read coordinated here sent the merged object to",
    },
    Metric {
        name: HINTS_QUEUED,
        kind: Kind::Gauge,
        labels: "",
        help: "Hints held here for down primaries, waiting for handoff",
    },
    Metric {
        name: HINTS_HANDED_OFF_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Hints delivered to their primary and dropped here after its ack",
    },
    Metric {
        name: AE_EXCHANGES_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Anti-entropy root comparisons this node started",
    },
    Metric {
        name: AE_MISMATCHES_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Anti-entropy comparisons answered here whose roots differed",
    },
    Metric {
        name: AE_KEYS_REPAIRED_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Objects anti-entropy sent from here to repair a peer",
    },
    Metric {
        name: AE_BYTES_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Bytes of anti-entropy metadata (roots, branches, leaves, sketches) sent",
    },
    Metric {
        name: TRANSFER_BYTES_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Bytes of objects streamed to new owners of partitions this node no longer owns",
    },
    Metric {
        name: TRANSFER_KEYS_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Keys streamed to new owners",
    },
    Metric {
        name: TRANSFER_PARTITIONS_PENDING,
        kind: Kind::Gauge,
        labels: "",
        help: "Partitions this node holds data for but no longer owns",
    },
    Metric {
        name: MEMBERS,
        kind: Kind::Gauge,
        labels: "state",
        help: "Members that have not left, by state as this node sees them: up, suspect, down",
    },
    Metric {
        name: SUSPICIONS_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Peers suspected here after a failed send, a lost connection or a timeout",
    },
    Metric {
        name: FSYNC_DURATION_SECONDS,
        kind: Kind::Histogram,
        labels: "",
        help: "Group-commit persists (one fsync each), from start to completion as the core loop sees it",
    },
    Metric {
        name: GROUP_COMMIT_BATCH_INPUTS,
        kind: Kind::Histogram,
        labels: "",
        help: "Inputs (client requests, peer messages, datagrams) handled since the previous persist, per persist",
    },
    Metric {
        name: STORAGE_BYTES,
        kind: Kind::Gauge,
        labels: "",
        help: "Bytes the storage engine holds on disk (journal and tables)",
    },
    Metric {
        name: CLIENT_SESSIONS,
        kind: Kind::Gauge,
        labels: "",
        help: "Client sessions (one QUIC stream per client and its clones) open now",
    },
    Metric {
        name: CLIENT_SESSIONS_TOTAL,
        kind: Kind::Counter,
        labels: "",
        help: "Client sessions opened",
    },
    Metric {
        name: CONNECTIONS,
        kind: Kind::Gauge,
        labels: "transport",
        help: "Incoming connections open now: transport=quic (clients and peers) or http",
    },
    Metric {
        name: CONNECTIONS_TOTAL,
        kind: Kind::Counter,
        labels: "transport",
        help: "Incoming connections accepted",
    },
];

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Upper bounds of the object size buckets: 64 B to 16 MiB by fours.
pub const BYTES_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];
/// Upper bounds of the sibling-count buckets.
pub const SIBLINGS_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0];
/// Upper bounds of the group-commit batch buckets (inputs per persist).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("ringkv_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Kind::Gauge | Kind::Histogram => {
                    assert!(!m.name.ends_with("_total"), "{}", m.name)
                }
            }
        }
    }

    #[test]
    fn the_grafana_dashboard_queries_only_exported_metrics() {
        let dashboard = include_str!("../../../docs/grafana-dashboard.json");
        let names: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
        let mut used = 0;
        for (at, _) in dashboard.match_indices("ringkv_") {
            let word: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if word == "ringkv_" {
                continue;
            }
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .filter(|base| names.contains(base))
                .unwrap_or(&word);
            assert!(
                names.contains(base),
                "the dashboard queries {word}, which no node exports"
            );
            used += 1;
        }
        assert!(used > 10, "the dashboard queries {used} metrics");
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../../README.md");
        for m in METRICS {
            assert!(
                readme.contains(&format!("`{}`", m.name)),
                "README.md does not list {}",
                m.name
            );
        }
    }
}
