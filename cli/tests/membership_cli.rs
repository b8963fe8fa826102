//! Growing and shrinking a cluster of `ringkv node` processes from the command line:
//! `ringkv node --seed` joins, `status` and `ring` show the change, `ringkv leave NAME`
//! hands the node's data over and the process exits cleanly.

mod common;

use common::cluster::Cluster;
use common::{STOP_TIMEOUT_MS, WAIT_MS, eventually};
use serde_json::Value;

const KEYS: usize = 40;

fn status(cluster: &Cluster, i: usize) -> Value {
    let out = cluster.client(i, &["status", "--json"]);
    out.success();
    out.json()
}

fn member_names(status: &Value) -> Vec<String> {
    status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_node_joins_with_seed_and_leaves_with_ringkv_leave() {
    let mut cluster = Cluster::start(3);
    for k in 0..KEYS {
        let key = format!("grow/k{k}");
        cluster.client(0, &["put", &key, "v", "--w", "3"]).success();
    }

    let n4 = cluster.join(0);
    eventually("every member lists n4 as up", WAIT_MS, || {
        (0..4).all(|i| {
            cluster
                .states_seen_by(i)
                .get("n4")
                .is_some_and(|s| s == "up")
        })
    });
    eventually("partition transfers finish", WAIT_MS, || {
        (0..4).all(|i| status(&cluster, i)["transfers"]["pending"] == 0)
    });
    let ring = cluster.client(n4, &["ring", "--json"]);
    ring.success();
    let ring = ring.json();
    let Some(nodes) = ring["nodes"].as_array() else {
        panic!("ring --json has no nodes: {ring}");
    };
    assert_eq!(nodes.len(), 4, "{ring}");
    assert!(ring["balance"].as_f64().is_some_and(|b| b >= 1.0), "{ring}");
    let n4_primaries = nodes
        .iter()
        .find(|n| n["name"] == "n4")
        .and_then(|n| n["primary_partitions"].as_u64())
        .unwrap_or(0);
    assert!(n4_primaries > 0, "n4 owns no partition: {ring}");
    for k in 0..KEYS {
        let key = format!("grow/k{k}");
        let got = cluster.client(n4, &["get", &key, "--json"]);
        got.success();
        assert_eq!(got.json()["found"], true, "{key} after the join");
    }

    let left = cluster.client(0, &["leave", "n4", "--json"]);
    left.success();
    let text = left.json()["result"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("leaving"), "{text}");
    let (exit, stderr) = cluster.wait_exit(n4, STOP_TIMEOUT_MS);
    assert!(
        exit.is_some_and(|s| s.success()),
        "n4 did not exit cleanly after leaving: {exit:?}\n{stderr}"
    );
    assert!(stderr.contains("left the cluster"), "{stderr}");
    eventually("the others drop n4", WAIT_MS, || {
        (0..3).all(|i| !member_names(&status(&cluster, i)).contains(&"n4".to_owned()))
    });
    for k in 0..KEYS {
        let key = format!("grow/k{k}");
        let got = cluster.client(1, &["get", &key, "--r", "3", "--json"]);
        got.success();
        assert_eq!(got.json()["found"], true, "{key} after the leave");
    }
    // Leaving below N members is refused with a sentence, and nothing changes.
    let refused = cluster.client(0, &["leave", "n3"]);
    assert_ne!(
        refused.code,
        Some(0),
        "a leave below N=3 members was accepted"
    );
    assert!(
        refused.stderr.contains("add a node first"),
        "{}",
        refused.stderr
    );
}
