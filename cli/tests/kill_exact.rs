//! Availability and exactness with real `ringkv node` processes and `kill -9` (issue 13,
//! item 7): counter increments that the cluster-aware client retries on another node
//! (with the same operation id) add up to exactly the acknowledged calls; a mixed load
//! through one seed keeps serving when another node dies; and a restarted node serves
//! again soon after it is started on its old data directory.
//!
//! Every wait is bounded: the load is a fixed number of calls or a fixed time, each
//! call has the client's deadline, and the convergence checks poll with a deadline.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::POLL_MS;
use common::cluster::Cluster;
use ringkv::client::{Client, ClientError};
use ringkv::proto::{Key, QuorumOpts};
use tokio::runtime::Runtime;

/// Members of every cluster here: N=3 of five, so every key keeps two live primaries
/// while one node is down.
const NODES: usize = 5;
/// Replicas per key.
const N: u8 = 3;
/// Failed calls kept in full for the report.
const ERRORS_KEPT_MAX: usize = 10;
/// How long the replicas of a key get to agree after the load before the check fails.
const CONVERGE_MS: u64 = 20_000;
/// How long the load may take before the test gives up waiting for it to get somewhere.
const LOAD_PROGRESS_MS: u64 = 60_000;

fn quorum(w: u8, r: u8) -> QuorumOpts {
    QuorumOpts {
        n: Some(N),
        w: Some(w),
        r: Some(r),
        ..QuorumOpts::default()
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// The node (not in `spare`) that is among the first `N` replicas of the most `keys`
/// (and, of those, the coordinator of the most): its index, how many keys it replicates
/// and how many it coordinates.
fn busiest_replica(
    cluster: &Cluster,
    client: &Client,
    keys: &[Key],
    spare: &[usize],
) -> (usize, usize, usize) {
    let mut best: Option<(usize, usize, usize)> = None;
    for i in (0..cluster.nodes.len()).filter(|i| !spare.contains(i)) {
        let addr = cluster.addr(i);
        let routes: Vec<Vec<SocketAddr>> = keys.iter().map(|k| client.route(k, Some(N))).collect();
        let replicated = routes
            .iter()
            .filter(|r| r.iter().take(usize::from(N)).any(|a| *a == addr))
            .count();
        let coordinated = routes.iter().filter(|r| r.first() == Some(&addr)).count();
        if best.is_none_or(|(_, r, c)| (replicated, coordinated) > (r, c)) {
            best = Some((i, replicated, coordinated));
        }
    }
    best.unwrap_or_else(|| panic!("no node to choose from"))
}

/// Waits (polling, bounded) until `progress` reaches `target`.
fn wait_progress(progress: &AtomicUsize, target: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_millis(LOAD_PROGRESS_MS);
    while progress.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "the load did not reach {target} calls ({what}) within {LOAD_PROGRESS_MS} ms; it made {}",
            progress.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// The 99th percentile and the largest of `latencies`.
fn p99_and_max(latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort();
    match latencies.last() {
        None => (Duration::ZERO, Duration::ZERO),
        Some(&max) => {
            let at = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
            (latencies[at], max)
        }
    }
}

/// What one task of a load saw.
#[derive(Debug, Default)]
struct Tally {
    /// Acknowledged increments, by counter key index.
    acked: BTreeMap<usize, i64>,
    /// Calls that succeeded, of any kind.
    ok: usize,
    /// Calls that failed outright.
    failed: usize,
    /// Reads that did not return the value the same task had just written.
    stale: usize,
    errors: Vec<String>,
    /// When each call started, and how long it took.
    calls: Vec<(Instant, Duration)>,
}

impl Tally {
    fn failure(&mut self, what: String, err: &ClientError) {
        self.failed += 1;
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(format!("{what}: {err}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, n) in other.acked {
            *self.acked.entry(k).or_default() += n;
        }
        self.ok += other.ok;
        self.failed += other.failed;
        self.stale += other.stale;
        for e in other.errors {
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(e);
            }
        }
        self.calls.extend(other.calls);
    }

    /// The 99th percentile and the slowest of the calls started at or after `from`, and
    /// how many there were.
    fn latency_from(&self, from: Instant) -> (usize, Duration, Duration) {
        let mut after: Vec<Duration> = self
            .calls
            .iter()
            .filter(|(started, _)| *started >= from)
            .map(|(_, took)| *took)
            .collect();
        let (p99, max) = p99_and_max(&mut after);
        (after.len(), p99, max)
    }
}

/// Joins the tasks of a load and sums what they saw.
fn join_load(runtime: &Runtime, tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    runtime.block_on(async {
        let mut total = Tally::default();
        for task in tasks {
            match task.await {
                Ok(t) => total.merge(t),
                Err(e) => panic!("a load task panicked: {e}"),
            }
        }
        total
    })
}

/// What [`read_counters`] found: the last values read, every distinct value seen per
/// key, the first read that missed (if any), and how long it took.
type CounterReads = (
    Vec<Result<i64, String>>,
    Vec<Vec<i64>>,
    Option<String>,
    Duration,
);

/// Reads every counter with `opts` until each equals its acknowledged increments (or
/// `CONVERGE_MS` passed).
fn read_counters(
    runtime: &Runtime,
    client: &Client,
    keys: &[Key],
    acked: &BTreeMap<usize, i64>,
    opts: QuorumOpts,
) -> CounterReads {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(CONVERGE_MS);
    let mut seen: Vec<Vec<i64>> = vec![Vec::new(); keys.len()];
    let mut first_miss = None;
    loop {
        let values: Vec<Result<i64, String>> = runtime.block_on(async {
            let mut values = Vec::new();
            for key in keys {
                values.push(
                    client
                        .counter_get(key, opts)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            values
        });
        for (i, v) in values.iter().enumerate() {
            match v {
                Ok(v) if !seen[i].contains(v) => seen[i].push(*v),
                _ => {}
            }
        }
        let miss = values
            .iter()
            .enumerate()
            .find(|(i, v)| v.as_ref().ok() != Some(&acked.get(i).copied().unwrap_or(0)));
        match miss {
            None => return (values, seen, first_miss, started.elapsed()),
            Some((i, v)) => {
                if first_miss.is_none() {
                    first_miss = Some(format!("{} after {:?}: {v:?}", keys[i], started.elapsed()));
                }
            }
        }
        if Instant::now() >= deadline {
            return (values, seen, first_miss, started.elapsed());
        }
        thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Concurrent increment tasks.
const INC_TASKS: usize = 6;
/// Increments each task makes.
const INC_PER_TASK: usize = 150;
/// Counter keys the increments are spread over.
const COUNTERS: usize = 4;

fn counter(i: usize) -> Key {
    Key::new("exact", format!("c{i}"))
}

/// `INC_PER_TASK` increments of 1 at W=2, round robin over the counters; every
/// acknowledged one is counted.
async fn increments(client: Client, task: usize, progress: Arc<AtomicUsize>) -> Tally {
    let mut tally = Tally::default();
    for j in 0..INC_PER_TASK {
        let k = (task + j) % COUNTERS;
        let key = counter(k);
        let started = Instant::now();
        let result = client.counter_add(&key, 1, quorum(2, 2)).await;
        tally.calls.push((started, started.elapsed()));
        match result {
            Ok(_) => {
                tally.ok += 1;
                *tally.acked.entry(k).or_default() += 1;
            }
            Err(e) => tally.failure(format!("counter_add {key}"), &e),
        }
        progress.fetch_add(1, Ordering::SeqCst);
    }
    tally
}

#[test]
fn increments_retried_across_a_sigkill_and_restart_add_up_to_the_acknowledged_calls() {
    let mut cluster = Cluster::start(NODES);
    let runtime = runtime();
    let certs = cluster.certs.clone();
    let seeds: Vec<SocketAddr> = (0..NODES).map(|i| cluster.addr(i)).collect();
    let client = runtime
        .block_on(Client::connect_cluster(&seeds, &certs, "client"))
        .unwrap_or_else(|e| panic!("the client cannot learn the cluster: {e}"));
    let keys: Vec<Key> = (0..COUNTERS).map(counter).collect();
    let (victim, replicated, coordinated) = busiest_replica(&cluster, &client, &keys, &[]);
    assert!(
        replicated > 0,
        "no node replicates any of {COUNTERS} counters"
    );
    let victim_name = cluster.name(victim).to_owned();

    let total = INC_TASKS * INC_PER_TASK;
    let progress = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..INC_TASKS)
        .map(|t| runtime.spawn(increments(client.clone(), t, Arc::clone(&progress))))
        .collect();
    // Kill once a fifth of the calls are done, restart at three fifths: both happen
    // while increments are in flight.
    wait_progress(&progress, total / 5, "before the kill");
    cluster.kill(victim);
    let killed = Instant::now();
    let done_at_kill = progress.load(Ordering::SeqCst);
    wait_progress(&progress, total * 3 / 5, "before the restart");
    let restart_started = Instant::now();
    cluster.restart(victim);
    let restarted_after = restart_started.elapsed();
    let done_at_restart = progress.load(Ordering::SeqCst);
    let tally = join_load(&runtime, tasks);
    let (after_kill, p99, slowest) = tally.latency_from(killed);
    // Calls that had started but not finished when the node died: those sent to it were
    // interrupted and retried elsewhere.
    let in_flight_at_kill = tally
        .calls
        .iter()
        .filter(|(started, took)| *started < killed && *started + *took > killed)
        .count();

    let (values, seen, first_miss, converged_in) =
        read_counters(&runtime, &client, &keys, &tally.acked, quorum(2, 3));
    let report = format!(
        "killed {victim_name} (a replica of {replicated} of {COUNTERS} counters, coordinator of {coordinated}) \
         after {done_at_kill} of {total} calls, with {in_flight_at_kill} in flight; \
         restarted it after {done_at_restart} (restart took {restarted_after:?}); \
         {} acknowledged, {} failed; {after_kill} calls after the kill, p99 {p99:?}, slowest {slowest:?}; \
         acknowledged per counter {:?}; R=3 values {values:?} (distinct values seen {seen:?}) after {converged_in:?}, first miss {first_miss:?}; \
         errors: {:#?}",
        tally.ok, tally.failed, tally.acked, tally.errors
    );
    println!("{report}");
    assert!(
        done_at_kill < total && after_kill > 0 && in_flight_at_kill > 0,
        "the kill did not happen during the load: {report}"
    );
    for (i, value) in values.iter().enumerate() {
        let acked = tally.acked.get(&i).copied().unwrap_or(0);
        assert_eq!(
            value.as_ref().ok(),
            Some(&acked),
            "counter {} is not its acknowledged increments: {report}",
            counter(i)
        );
    }
    assert_eq!(tally.failed, 0, "{report}");
    assert_eq!(tally.ok, total, "{report}");
}

/// Concurrent tasks of the mixed load.
const MIXED_TASKS: usize = 6;
/// Keys written and read by the mixed load, a multiple of `MIXED_TASKS`: each task has
/// its own.
const MIXED_KEYS: usize = 42;
/// How long the mixed load runs after the kill: past the QUIC idle timeout (2 s) and
/// the members' failure detection (~1 s).
const MIXED_AFTER_KILL_MS: u64 = 6_000;
/// Bound on the rounds (put, get, increment) of one task, whatever the machine's speed.
const MIXED_ROUNDS_MAX: usize = 2_000;

fn mixed_key(i: usize) -> Key {
    Key::new("mixed", format!("k{i}"))
}

/// Rounds of put, get (which must see the put) and counter increment until `until`.
async fn mixed(client: Client, task: usize, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let opts = quorum(2, 2);
    for round in 0..MIXED_ROUNDS_MAX {
        if Instant::now() >= until {
            break;
        }
        // Each task writes its own keys, so a read must see the task's last write.
        let key = mixed_key(task + MIXED_TASKS * (round % (MIXED_KEYS / MIXED_TASKS)));
        let value = format!("t{task}-r{round}").into_bytes();
        let started = Instant::now();
        let put = client.put_lww(&key, value.clone(), opts).await;
        tally.calls.push((started, started.elapsed()));
        match put {
            Ok(_) => {
                tally.ok += 1;
                let started = Instant::now();
                let got = client.get(&key, opts).await;
                tally.calls.push((started, started.elapsed()));
                match got {
                    Ok(read) => {
                        tally.ok += 1;
                        if read.values != [value.clone()] {
                            tally.stale += 1;
                            if tally.errors.len() < ERRORS_KEPT_MAX {
                                tally.errors.push(format!(
                                    "get {key} after put {:?} read {:?}",
                                    String::from_utf8_lossy(&value),
                                    read.values
                                        .iter()
                                        .map(|v| String::from_utf8_lossy(v).into_owned())
                                        .collect::<Vec<_>>()
                                ));
                            }
                        }
                    }
                    Err(e) => tally.failure(format!("get {key}"), &e),
                }
            }
            Err(e) => tally.failure(format!("put {key}"), &e),
        }
        let k = (task + round) % COUNTERS;
        let key = Key::new("mixed-counter", format!("c{k}"));
        let started = Instant::now();
        let added = client.counter_add(&key, 1, opts).await;
        tally.calls.push((started, started.elapsed()));
        match added {
            Ok(_) => {
                tally.ok += 1;
                *tally.acked.entry(k).or_default() += 1;
            }
            Err(e) => tally.failure(format!("counter_add {key}"), &e),
        }
    }
    tally
}

#[test]
fn a_mixed_load_through_one_seed_has_no_failed_request_when_another_node_is_sigkilled() {
    let mut cluster = Cluster::start(NODES);
    let runtime = runtime();
    let certs = cluster.certs.clone();
    let seed = cluster.addr(0);
    let client = runtime
        .block_on(Client::connect_cluster(&[seed], &certs, "client"))
        .unwrap_or_else(|e| panic!("the client cannot learn the cluster from {seed}: {e}"));
    let counters: Vec<Key> = (0..COUNTERS)
        .map(|k| Key::new("mixed-counter", format!("c{k}")))
        .collect();
    // Warm up: every key exists and every connection is open before the kill.
    runtime.block_on(async {
        for i in 0..MIXED_KEYS {
            client
                .put_lww(&mixed_key(i), b"before".to_vec(), quorum(2, 2))
                .await
                .unwrap_or_else(|e| panic!("put before the kill: {e}"));
        }
    });
    let mut all_keys: Vec<Key> = (0..MIXED_KEYS).map(mixed_key).collect();
    all_keys.extend(counters.iter().cloned());
    let (victim, replicated, _) = busiest_replica(&cluster, &client, &all_keys, &[0]);
    let victim_name = cluster.name(victim).to_owned();

    cluster.kill(victim);
    let killed = Instant::now();
    let until = killed + Duration::from_millis(MIXED_AFTER_KILL_MS);
    let tasks: Vec<_> = (0..MIXED_TASKS)
        .map(|t| runtime.spawn(mixed(client.clone(), t, until)))
        .collect();
    let tally = join_load(&runtime, tasks);
    let (after_kill, p99, slowest) = tally.latency_from(killed);
    let (values, seen, first_miss, converged_in) =
        read_counters(&runtime, &client, &counters, &tally.acked, quorum(2, 2));
    let report = format!(
        "seed n1 only; killed {victim_name} (a replica of {replicated} of {} keys); after the kill: \
         {} ok, {} failed, {} stale reads; {after_kill} calls, p99 {p99:?}, slowest {slowest:?}; \
         acknowledged increments {:?}; R=2 values {values:?} (distinct values seen {seen:?}) after {converged_in:?}, first miss {first_miss:?}; \
         errors: {:#?}",
        all_keys.len(),
        tally.ok,
        tally.failed,
        tally.stale,
        tally.acked,
        tally.errors
    );
    println!("{report}");
    assert!(tally.ok > MIXED_KEYS, "too few requests ran: {report}");
    assert_eq!(tally.failed, 0, "{report}");
    assert_eq!(tally.stale, 0, "{report}");
    for (i, value) in values.iter().enumerate() {
        let acked = tally.acked.get(&i).copied().unwrap_or(0);
        assert_eq!(
            value.as_ref().ok(),
            Some(&acked),
            "counter {} is not its acknowledged increments: {report}",
            counters[i]
        );
    }
}

/// How long a restarted node may take to serve before the test fails; the target is
/// 2 s, the bound is generous for a loaded machine.
const SERVE_BOUND_MS: u64 = 10_000;
/// Deadline of each call to the restarted node while it is polled.
const SERVE_CALL_TIMEOUT_MS: u64 = 1_000;

#[test]
fn a_node_restarted_after_a_sigkill_serves_gets_and_puts_within_seconds() {
    let mut cluster = Cluster::start(NODES);
    let runtime = runtime();
    let certs = cluster.certs.clone();
    let victim = 2;
    let victim_addr = cluster.addr(victim);
    let seeds: Vec<SocketAddr> = (0..NODES).map(|i| cluster.addr(i)).collect();
    let router = runtime
        .block_on(Client::connect_cluster(&seeds, &certs, "client"))
        .unwrap_or_else(|e| panic!("the client cannot learn the cluster: {e}"));
    // A key the victim replicates and one it does not (which it must forward).
    let replicates = |k: &Key| {
        router
            .route(k, Some(N))
            .iter()
            .take(usize::from(N))
            .any(|a| *a == victim_addr)
    };
    let pick = |want: bool| {
        (0..1_000)
            .map(|i| Key::new("restart", format!("k{i}")))
            .find(|k| replicates(k) == want)
            .unwrap_or_else(|| panic!("no key among 1000 with replicated-by-victim = {want}"))
    };
    let local = pick(true);
    let forwarded = pick(false);
    runtime.block_on(async {
        for key in [&local, &forwarded] {
            router
                .put_lww(key, b"before".to_vec(), quorum(2, 2))
                .await
                .unwrap_or_else(|e| panic!("put before the kill: {e}"));
        }
    });

    cluster.kill(victim);
    // Written while the victim is down: it must learn these (from hints or the read).
    runtime.block_on(async {
        for key in [&local, &forwarded] {
            router
                .put_lww(key, b"while-down".to_vec(), quorum(2, 2))
                .await
                .unwrap_or_else(|e| panic!("put while the victim is down: {e}"));
        }
    });

    let restart_started = Instant::now();
    cluster.restart(victim);
    let listening = restart_started.elapsed();
    let deadline = restart_started + Duration::from_millis(SERVE_BOUND_MS);
    let mut attempts = 0usize;
    let mut last_error = String::new();
    let served = loop {
        attempts += 1;
        let result: Result<(), String> = runtime.block_on(async {
            let direct = Client::connect(victim_addr, &certs, "client")
                .await
                .map_err(|e| format!("connect: {e}"))?
                .with_timeout_ms(SERVE_CALL_TIMEOUT_MS);
            for (name, key) in [("local", &local), ("forwarded", &forwarded)] {
                let got = direct
                    .get(key, quorum(2, 2))
                    .await
                    .map_err(|e| format!("get {name} {key}: {e}"))?;
                // "after" when a put of an earlier attempt failed but was applied.
                if got.values != [b"while-down".to_vec()] && got.values != [b"after".to_vec()] {
                    return Err(format!(
                        "get {name} {key} read {:?}",
                        got.values
                            .iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect::<Vec<_>>()
                    ));
                }
                direct
                    .put_lww(key, b"after".to_vec(), quorum(2, 2))
                    .await
                    .map_err(|e| format!("put {name} {key}: {e}"))?;
            }
            Ok(())
        });
        match result {
            Ok(()) => break restart_started.elapsed(),
            Err(e) => last_error = e,
        }
        assert!(
            Instant::now() < deadline,
            "{} does not serve {SERVE_BOUND_MS} ms after its restart ({attempts} attempts); last error: {last_error}",
            cluster.name(victim)
        );
        thread::sleep(Duration::from_millis(POLL_MS));
    };
    println!(
        "{} restarted: listening after {} ms; served a get and a put of a key it replicates and of one it forwards {} ms after the restart began ({attempts} attempts; last error before: {last_error:?}); target 2000 ms",
        cluster.name(victim),
        listening.as_millis(),
        served.as_millis(),
    );
    // What the restarted node acknowledged is what the cluster reads.
    runtime.block_on(async {
        for key in [&local, &forwarded] {
            let got = router
                .get(key, quorum(2, 3))
                .await
                .unwrap_or_else(|e| panic!("get {key} after the restart: {e}"));
            assert_eq!(got.values, [b"after".to_vec()], "{key}");
        }
    });
    assert!(
        served < Duration::from_millis(SERVE_BOUND_MS),
        "served after {served:?}"
    );
}
