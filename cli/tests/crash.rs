//! A replica killed with SIGKILL keeps every write it acknowledged.
//!
//! A replica acks only after the write is persisted (group commit). The proof
//! has to come from outside the process: the node gets no chance to flush or shut down,
//! and afterwards it must answer from its own disk alone — the other replicas are killed
//! too before it restarts, so neither read repair, hinted handoff nor a fallback can
//! hand it the data back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{COMMAND_TIMEOUT_MS, Outcome};
use serde_json::json;

/// Writes acknowledged by all three replicas before the victim is killed.
const ACKS_BEFORE_KILL: usize = 12;
/// Bound on the writer's loop, whatever happens to the kill.
const WRITES_MAX: usize = 200;
/// Counter increments made before the stream of puts.
const INCREMENTS: i64 = 4;
/// The node that is killed (n2); the writes go through the other two.
const VICTIM: usize = 1;

/// `ringkv get KEY --n 3 --r 1 --json` through `node`: with three nodes every node is a
/// primary of every key, so the node coordinates the read itself and one reply — its own,
/// read from its storage — answers it.
fn read_own_copy(cluster: &Cluster, node: usize, command: &[&str]) -> serde_json::Value {
    let mut full = command.to_vec();
    full.extend(["--n", "3", "--r", "1", "--json"]);
    let outcome = cluster.client(node, &full);
    outcome.success();
    outcome.json()
}

#[test]
fn a_sigkilled_replica_answers_every_acknowledged_write_from_its_own_disk() {
    let mut cluster = Cluster::start(3);

    // CRDT and LWW objects, each acknowledged by all three replicas (W=3 of N=3).
    for _ in 0..INCREMENTS {
        cluster
            .client(
                0,
                &["counter", "incr", "crash/hits", "--n", "3", "--w", "3"],
            )
            .success();
    }
    cluster
        .client(
            2,
            &[
                "set",
                "add",
                "crash/team",
                "ann",
                "bob",
                "cy",
                "--n",
                "3",
                "--w",
                "3",
            ],
        )
        .success();
    cluster
        .client(
            0,
            &["put", "crash/lww", "last", "--lww", "--n", "3", "--w", "3"],
        )
        .success();

    // A stream of sibling-policy puts through n1 and n3; n2 is killed in the middle of
    // it, so the kill lands wherever the stream happens to be.
    let addrs: Vec<String> = [0, 2]
        .iter()
        .map(|&i| cluster.addr(i).to_string())
        .collect();
    let certs = cluster.certs.display().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, acks) = mpsc::channel::<(usize, Outcome)>();
    let writer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            for i in 0..WRITES_MAX {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let key = format!("crash/key-{i}");
                let value = format!("value-{i}");
                let node = &addrs[i % addrs.len()];
                let outcome = common::ringkv(&common::args(&[
                    "put", &key, &value, "--n", "3", "--w", "3", "--node", node, "--certs", &certs,
                ]));
                if tx.send((i, outcome)).is_err() {
                    break;
                }
            }
        })
    };
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(COMMAND_TIMEOUT_MS);
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, outcome) = acks.recv_timeout(left).unwrap_or_else(|e| {
            panic!(
                "only {} puts acknowledged before the kill: {e}",
                acked.len()
            )
        });
        // All three nodes are up: every put must reach W=3.
        outcome.success();
        acked.push(i);
    }
    // Stop first, so at most the put in flight meets the kill; it may or may not have
    // been acknowledged, and only what exited 0 counts. Every put is bounded.
    stop.store(true, Ordering::SeqCst);
    cluster.kill(VICTIM);
    if writer.join().is_err() {
        panic!("the writer thread panicked");
    }
    let mut unacked = 0;
    for (i, outcome) in acks.try_iter() {
        match outcome.code {
            Some(0) => acked.push(i),
            _ => unacked += 1,
        }
    }
    assert!(
        unacked <= 1,
        "{unacked} puts failed; only the one in flight at the kill may"
    );

    // Written while the victim was dead: it must not find this one, which shows the
    // reads below come from its own storage and nowhere else.
    cluster
        .client(0, &["put", "crash/after-kill", "x", "--n", "3", "--w", "2"])
        .success();

    // Nobody else may hold the data when the victim comes back.
    cluster.kill(0);
    cluster.kill(2);
    cluster.restart(VICTIM);

    for &i in &acked {
        let key = format!("crash/key-{i}");
        let got = read_own_copy(&cluster, VICTIM, &["get", &key]);
        assert_eq!(
            got["found"],
            json!(true),
            "{key} lost by the SIGKILL: {got}"
        );
        assert_eq!(got["values"], json!([format!("value-{i}")]), "{key}: {got}");
    }
    let hits = read_own_copy(&cluster, VICTIM, &["counter", "get", "crash/hits"]);
    assert_eq!(hits["value"], json!(INCREMENTS), "crash/hits: {hits}");
    let team = read_own_copy(&cluster, VICTIM, &["set", "get", "crash/team"]);
    assert_eq!(
        team["members"],
        json!(["ann", "bob", "cy"]),
        "crash/team: {team}"
    );
    let lww = read_own_copy(&cluster, VICTIM, &["get", "crash/lww"]);
    assert_eq!(lww["values"], json!(["last"]), "crash/lww: {lww}");

    let missing = read_own_copy(&cluster, VICTIM, &["get", "crash/after-kill"]);
    assert_eq!(
        missing["found"],
        json!(false),
        "the victim read a write it never received, so these reads prove nothing: {missing}"
    );
    assert!(
        !cluster.log(VICTIM).contains("panicked"),
        "the restarted node panicked:\n{}",
        cluster.log(VICTIM)
    );

    // After a crash and a restart, Ctrl-C still stops the node cleanly.
    let (status, stdout) = cluster.interrupt(VICTIM);
    assert_eq!(status.code(), Some(0), "{status}; stdout: {stdout}");
    assert!(stdout.contains("stopped cleanly"), "stdout: {stdout}");
}
