//! `ringkv stats --json` against three `ringkv node` processes: the documented fields are
//! present, the cluster's distinct keys match the keys written (three copies each, counted
//! once), the zipfian workload's hottest key leads the hot keys, per-partition rows appear
//! only with `--partitions`, and a killed node is named while the figures are marked
//! partial.

mod common;

use common::cluster::Cluster;
use serde_json::Value;

/// Keys `ringkv bench` preloads, and the reads it then makes (zipfian: key 0 is hottest).
const BENCH_KEYS: u64 = 300;
const BENCH_OPS: u64 = 3_000;
/// Partitions of the ring of a node started with the defaults.
const PARTITIONS: u64 = 1_024;

fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value.get(name) {
        Some(v) if !v.is_null() => v,
        _ => panic!("no {name:?} in {value}"),
    }
}

fn number(value: &Value, name: &str) -> u64 {
    match field(value, name).as_u64() {
        Some(n) => n,
        None => panic!("{name:?} is not a count in {value}"),
    }
}

#[test]
fn stats_json_reports_distinct_keys_hot_keys_and_a_missing_node() {
    let mut cluster = Cluster::start(3);
    let bench = cluster.client(
        0,
        &[
            "bench",
            "--workload",
            "ycsb-c",
            "--ops",
            &BENCH_OPS.to_string(),
            "--keys",
            &BENCH_KEYS.to_string(),
            "--concurrency",
            "8",
            "--json",
        ],
    );
    bench.success();
    assert_eq!(number(&bench.json(), "errors"), 0, "{}", bench.stdout);

    let stats = cluster.client(1, &["stats", "--json", "--top", "5"]);
    stats.success();
    let stats = stats.json();
    let whole = field(&stats, "cluster");
    assert_eq!(field(whole, "partial"), &Value::Bool(false), "{whole}");
    assert_eq!(number(whole, "nodes_answered"), 3);
    let distinct = number(whole, "distinct_keys");
    assert!(
        distinct.abs_diff(BENCH_KEYS) <= BENCH_KEYS / 50,
        "{distinct} distinct keys for {BENCH_KEYS} written"
    );
    assert!(number(whole, "requests_counted") >= BENCH_OPS);
    let Some(hot) = field(whole, "hot_keys").as_array() else {
        panic!("hot_keys is not a list: {whole}");
    };
    assert!(!hot.is_empty() && hot.len() <= 5, "{whole}");
    assert_eq!(field(&hot[0], "key").as_str(), Some("bench/k0"), "{whole}");
    assert!(number(&hot[0], "count") > BENCH_OPS / 20, "{whole}");

    let Some(nodes) = field(&stats, "nodes").as_array() else {
        panic!("nodes is not a list: {stats}");
    };
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        assert_eq!(field(node, "answered"), &Value::Bool(true), "{node}");
        assert!(field(node, "name").is_string());
        // Three nodes, N = 3: every node holds every key.
        let own = number(node, "distinct_keys");
        assert!(own.abs_diff(BENCH_KEYS) <= BENCH_KEYS / 50, "{node}");
        assert!(number(node, "partitions_with_keys") > 0);
        assert!(number(node, "partition_sketch_bytes") > 0);
        assert!(
            node.get("partitions").is_none(),
            "per-partition rows without --partitions: {node}"
        );
        let ae = field(node, "ae");
        for name in [
            "exchanges",
            "mismatches",
            "keys_repaired",
            "bytes_sent",
            "primary_partitions",
            "partitions_compared",
        ] {
            number(ae, name);
        }
        assert!(ae.get("oldest_exchange_age_ms").is_some(), "{ae}");
    }

    // Every partition of every node, only on request.
    let detailed = cluster.client(1, &["stats", "--json", "--partitions"]);
    detailed.success();
    let detailed = detailed.json();
    let Some(nodes) = field(&detailed, "nodes").as_array() else {
        panic!("nodes is not a list: {detailed}");
    };
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        let Some(rows) = field(node, "partitions").as_array() else {
            panic!("no partition rows with --partitions: {node}");
        };
        // Every partition holding a key here or compared by anti-entropy, in order.
        let numbers: Vec<u64> = rows.iter().map(|row| number(row, "partition")).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert!(numbers.iter().all(|p| *p < PARTITIONS), "{numbers:?}");
        let with_keys = rows
            .iter()
            .filter(|row| number(row, "distinct_keys") > 0)
            .count() as u64;
        assert_eq!(with_keys, number(node, "partitions_with_keys"));
        assert!(with_keys > 0, "{node}");
        number(&rows[0], "sketch_bytes");
        assert!(rows[0].get("last_exchange_age_ms").is_some(), "{}", rows[0]);
    }

    cluster.kill(2);
    let partial = cluster.client(0, &["stats", "--json"]);
    partial.success();
    let partial_json = partial.json();
    let whole = field(&partial_json, "cluster");
    assert_eq!(field(whole, "partial"), &Value::Bool(true), "{whole}");
    let unanswered = field(whole, "unanswered");
    assert_eq!(unanswered[0]["name"].as_str(), Some("n3"), "{whole}");
    assert!(partial.stderr.contains("n3"), "{}", partial.stderr);
    // The two remaining replicas still hold every key.
    let distinct = number(whole, "distinct_keys");
    assert!(distinct.abs_diff(BENCH_KEYS) <= BENCH_KEYS / 50, "{whole}");
}
