//! What scripts see from the client commands: `--json` shapes, exit codes,
//! and the stderr sentence of a failed quorum, against three `ringkv node` processes.

mod common;

use common::WAIT_MS;
use common::cluster::Cluster;
use serde_json::{Value, json};

/// Candidate keys for finding ones that a dead node is and is not a primary of.
const PAIR_KEYS: usize = 24;

/// The context token of a `put`/`del`/`get` answer: a non-empty string.
fn context_of(answer: &Value) -> String {
    match answer["context"].as_str() {
        Some(token) if !token.is_empty() => token.to_owned(),
        _ => panic!("no context token in {answer}"),
    }
}

/// A `get --json` answer has exactly the documented fields with the documented types.
fn assert_get_shape(answer: &Value) {
    assert!(answer["values"].is_array(), "values: {answer}");
    assert!(answer["context"].is_string(), "context: {answer}");
    assert!(answer["found"].is_boolean(), "found: {answer}");
}

fn sorted_values(answer: &Value) -> Vec<String> {
    let Some(values) = answer["values"].as_array() else {
        panic!("no values array in {answer}");
    };
    let mut values: Vec<String> = values
        .iter()
        .map(|v| match v.as_str() {
            Some(s) => s.to_owned(),
            None => panic!("a value that is not a string in {answer}"),
        })
        .collect();
    values.sort();
    values
}

#[test]
fn json_output_has_the_documented_shapes() {
    let cluster = Cluster::start(3);

    let put = cluster.client(0, &["put", "shape/k", "one", "--w", "3", "--json"]);
    put.success();
    let put = put.json();
    context_of(&put);

    let got = cluster.client(1, &["get", "shape/k", "--r", "3", "--json"]);
    got.success();
    let got = got.json();
    assert_get_shape(&got);
    assert_eq!(got["values"], json!(["one"]), "{got}");
    assert_eq!(got["found"], json!(true), "{got}");
    context_of(&got);

    // A second put without a context is concurrent with the first: two siblings.
    cluster
        .client(2, &["put", "shape/k", "two", "--w", "3", "--json"])
        .success();
    let siblings = cluster.client(0, &["get", "shape/k", "--r", "3", "--json"]);
    siblings.success();
    let siblings = siblings.json();
    assert_get_shape(&siblings);
    assert_eq!(sorted_values(&siblings), ["one", "two"], "{siblings}");
    let token = context_of(&siblings);

    // Writing back with that read's context resolves them.
    cluster
        .client(
            1,
            &["put", "shape/k", "three", "--context", &token, "--w", "3"],
        )
        .success();
    let resolved = cluster.client(2, &["get", "shape/k", "--r", "3", "--json"]);
    resolved.success();
    assert_eq!(
        resolved.json()["values"],
        json!(["three"]),
        "{}",
        resolved.stdout
    );

    let missing = cluster.client(0, &["get", "shape/never", "--json"]);
    missing.success();
    let missing = missing.json();
    assert_get_shape(&missing);
    assert_eq!(missing["found"], json!(false), "{missing}");
    assert_eq!(missing["values"], json!([]), "{missing}");

    let deleted = cluster.client(0, &["del", "shape/k", "--w", "3", "--json"]);
    deleted.success();
    context_of(&deleted.json());
    let gone = cluster.client(1, &["get", "shape/k", "--r", "3", "--json"]);
    gone.success();
    assert_eq!(gone.json()["found"], json!(false), "{}", gone.stdout);

    cluster
        .client(0, &["counter", "incr", "shape/c", "5", "--w", "3"])
        .success();
    cluster
        .client(1, &["counter", "decr", "shape/c", "2", "--w", "3"])
        .success();
    let counter = cluster.client(2, &["counter", "get", "shape/c", "--r", "3", "--json"]);
    counter.success();
    assert_eq!(counter.json()["value"], json!(3), "{}", counter.stdout);

    cluster
        .client(0, &["set", "add", "shape/s", "b", "a", "--w", "3"])
        .success();
    let set = cluster.client(1, &["set", "get", "shape/s", "--r", "3", "--json"]);
    set.success();
    let set = set.json();
    assert_eq!(set["members"], json!(["a", "b"]), "{set}");
    context_of(&set);

    cluster
        .client(
            0,
            &["hll", "add", "shape/h", "x", "y", "z", "x", "--w", "3"],
        )
        .success();
    let hll = cluster.client(2, &["hll", "count", "shape/h", "--r", "3", "--json"]);
    hll.success();
    assert_eq!(hll.json()["estimate"], json!(3), "{}", hll.stdout);

    let status = cluster.client(0, &["status", "--json"]);
    status.success();
    let status = status.json();
    let Some(nodes) = status["nodes"].as_array() else {
        panic!("status --json has no nodes array: {status}");
    };
    assert_eq!(nodes.len(), 3, "{status}");
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["name"], json!(cluster.name(i)), "{status}");
        assert_eq!(node["addr"], json!(cluster.addr(i).to_string()), "{status}");
        assert_eq!(node["state"], json!("up"), "{status}");
        assert!(node["share"].is_number(), "share: {status}");
        assert_eq!(node["hints"], json!(0), "{status}");
    }
}

#[test]
fn a_killed_node_fails_strict_quorums_names_itself_and_shows_down() {
    let mut cluster = Cluster::start(3);
    let (dead, dead_name) = (2, cluster.name(2).to_owned());

    cluster
        .client(0, &["put", "quorum/before", "v", "--w", "2"])
        .success();
    cluster.kill(dead);

    // Two of three replicas are enough for W=2, even before anyone noticed the death.
    cluster
        .client(0, &["put", "quorum/after", "v", "--w", "2"])
        .success();
    let read = cluster.client(1, &["get", "quorum/after", "--r", "2", "--json"]);
    read.success();
    assert_eq!(read.json()["values"], json!(["v"]), "{}", read.stdout);

    // Strict W=3 cannot be met. Whether the coordinator already holds the node down
    // (unreachable) or only finds out now (timed out), the sentence names the count
    // needed and the dead node.
    let early = cluster.client(0, &["put", "quorum/strict", "v", "--w", "3", "--strict"]);
    assert_eq!(early.code, Some(1), "{early:?}");
    assert!(
        early.stderr.contains("of the 3 acks needed (n=3, strict)")
            || early
                .stderr
                .contains("only 2 of the 3 replicas it needs are up (n=3, strict)"),
        "{}",
        early.stderr
    );
    assert!(
        early
            .stderr
            .contains(&format!("unreachable or down: {dead_name}"))
            || early
                .stderr
                .contains(&format!("down or unreachable: {dead_name}"))
            || early.stderr.contains(&format!("timed out: {dead_name}")),
        "{}",
        early.stderr
    );

    common::eventually("n1 and n2 report the killed node down", WAIT_MS, || {
        [0, 1].iter().all(|&i| {
            let states = cluster.states_seen_by(i);
            states.get(&dead_name).map(String::as_str) == Some("down")
                && states.get(cluster.name(0)).map(String::as_str) == Some("up")
                && states.get(cluster.name(1)).map(String::as_str) == Some("up")
        })
    });

    // Now the coordinator knows before it asks anyone: nothing is written, nothing acked.
    let failed = cluster.client(
        0,
        &[
            "put",
            "quorum/strict",
            "v",
            "--w",
            "3",
            "--strict",
            "--json",
        ],
    );
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert_eq!(failed.stdout, "", "a failure prints no JSON on stdout");
    let text = &failed.stderr;
    assert!(
        text.starts_with("error: put quorum/strict failed"),
        "{text}"
    );
    assert!(
        text.contains("only 2 of the 3 replicas it needs are up (n=3, strict)"),
        "{text}"
    );
    assert!(text.contains("no replica was asked"), "{text}");
    assert!(
        text.contains(&format!("down or unreachable: {dead_name}")),
        "{text}"
    );
    assert!(text.contains("drop --strict"), "{text}");

    // With N=2 of three nodes, strict refuses exactly the keys the dead node is a primary
    // of, and a sloppy write of the same key is taken by the fallback (the third node).
    let (mut strict_failed, mut strict_ok) = (0, 0);
    for i in 0..PAIR_KEYS {
        let key = format!("quorum/pair-{i}");
        let strict = cluster.client(1, &["put", &key, "v", "--n", "2", "--w", "2", "--strict"]);
        match strict.code {
            Some(0) => strict_ok += 1,
            Some(1) => {
                assert!(
                    (strict.stderr.contains("of the 2 acks needed (n=2, strict)")
                        || strict
                            .stderr
                            .contains("of the 2 replicas it needs are up (n=2, strict)"))
                        && strict.stderr.contains(&dead_name),
                    "{}",
                    strict.stderr
                );
                strict_failed += 1;
                cluster
                    .client(1, &["put", &key, "v", "--n", "2", "--w", "2"])
                    .success();
            }
            _ => panic!("{strict:?}"),
        }
    }
    assert!(
        strict_failed > 0 && strict_ok > 0,
        "{PAIR_KEYS} keys should include some with and some without {dead_name} as a primary: {strict_failed} failed, {strict_ok} succeeded"
    );
}
