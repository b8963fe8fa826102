//! The cluster-aware client against real `ringkv node` processes: it starts through any
//! live seed, and it keeps serving when the node it was given dies with SIGKILL, through
//! the members it learned from that node.
//!
//! Both are things only a separate process can show: the node gets no chance to close its
//! connections, so the client finds out the hard way (a lost connection, an idle
//! timeout, a connect that is never answered), as it would after a power cut.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{COMMAND_TIMEOUT_MS, args, free_udp_ports, ringkv};
use ringkv::client::{Client, ClientError};
use ringkv::proto::{Key, QuorumOpts};
use serde_json::json;

/// Nodes of the cluster the seed is killed in: N=3 of five, so every key keeps two live
/// primaries.
const NODES: usize = 5;
/// Keys written before the kill and read and written again after it.
const KEYS: usize = 60;
/// Requests in flight at once after the kill.
const WORKERS: usize = 6;
/// How long requests keep going after the kill: past the QUIC idle timeout (2 s) and the
/// members' own failure detection, the window in which requests meet the dead node.
const AFTER_KILL_MS: u64 = 6_000;
/// Bound on the requests made after the kill, whatever the speed of the machine.
const OPS_AFTER_KILL_MAX: usize = 20_000;
/// Failed requests kept in full for the report.
const ERRORS_KEPT_MAX: usize = 10;

fn opts() -> QuorumOpts {
    QuorumOpts {
        n: Some(3),
        w: Some(2),
        r: Some(2),
        ..QuorumOpts::default()
    }
}

fn key(i: usize) -> Key {
    Key::new("failover", format!("k{i}"))
}

#[test]
fn a_list_of_seeds_whose_first_is_dead_still_works() {
    let mut cluster = Cluster::start(3);
    cluster.kill(0);
    // A port nobody listens on, then the killed node, then a live one.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_udp_ports(1)[0]));
    let seeds = format!("{nobody},{},{}", cluster.addr(0), cluster.addr(1));
    let certs = cluster.certs.display().to_string();
    let run = |command: &[&str]| {
        let mut full = args(command);
        full.extend(args(&["--node", &seeds, "--certs", &certs]));
        ringkv(&full)
    };
    let put = run(&["put", "seeds/k", "v", "--w", "2", "--json"]);
    put.success();
    let got = run(&["get", "seeds/k", "--r", "2", "--json"]);
    got.success();
    assert_eq!(got.json()["values"], json!(["v"]), "{}", got.stdout);
    // Reports go to the first seed that answers.
    let status = run(&["status", "--json"]);
    status.success();
    assert_eq!(
        status.json()["node"],
        json!(cluster.name(1)),
        "{}",
        status.stdout
    );
    // A single dead address still fails with the same hint as before.
    let alone = ringkv(&args(&[
        "get",
        "seeds/k",
        "--node",
        &nobody.to_string(),
        "--certs",
        &certs,
    ]));
    assert_eq!(alone.code, Some(1), "{alone:?}");
    assert!(alone.stderr.contains("ringkv dev"), "{}", alone.stderr);
}

/// What the requests after the kill met.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: usize,
    /// Reads that did not find the value written just before.
    stale: usize,
    errors: Vec<String>,
    slowest: Duration,
}

impl Tally {
    fn failure(&mut self, what: String, err: &ClientError) {
        self.failed += 1;
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(format!("{what}: {err}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.stale += other.stale;
        self.slowest = self.slowest.max(other.slowest);
        for e in other.errors {
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(e);
            }
        }
    }
}

/// Writes and reads back keys `worker, worker + WORKERS, ...` until `until`.
async fn work(client: Client, worker: usize, until: Instant, ops_max: usize) -> Tally {
    let mut tally = Tally::default();
    let mut round = 0usize;
    for i in (worker..).step_by(WORKERS) {
        if Instant::now() >= until || tally.ok + tally.failed >= ops_max {
            break;
        }
        let key = key(i % KEYS);
        round += 1;
        let value = format!("w{worker}-r{round}").into_bytes();
        let started = Instant::now();
        let put = client.put_lww(&key, value.clone(), opts()).await;
        tally.slowest = tally.slowest.max(started.elapsed());
        match put {
            Ok(_) => tally.ok += 1,
            Err(e) => {
                tally.failure(format!("put {key}"), &e);
                continue;
            }
        }
        let started = Instant::now();
        let got = client.get(&key, opts()).await;
        tally.slowest = tally.slowest.max(started.elapsed());
        match got {
            Ok(read) if read.values == [value.clone()] => tally.ok += 1,
            Ok(_) => {
                tally.ok += 1;
                tally.stale += 1;
            }
            Err(e) => tally.failure(format!("get {key}"), &e),
        }
    }
    tally
}

#[test]
fn a_client_whose_only_seed_is_sigkilled_keeps_serving_through_the_members_it_learned() {
    let mut cluster = Cluster::start(NODES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
    let seed = cluster.addr(0);
    let certs = cluster.certs.clone();
    let (client, learned) = runtime.block_on(async {
        let started = Instant::now();
        let client = Client::connect_cluster(&[seed], &certs, "client")
            .await
            .unwrap_or_else(|e| panic!("the client cannot learn the cluster from {seed}: {e}"));
        let learned = started.elapsed();
        for i in 0..KEYS {
            client
                .put_lww(&key(i), b"before".to_vec(), opts())
                .await
                .unwrap_or_else(|e| panic!("put before the kill: {e}"));
        }
        (client, learned)
    });
    // Every member is known, and the keys are spread over them: many go to others than
    // the seed.
    let routed_elsewhere = (0..KEYS)
        .filter(|&i| client.route(&key(i), Some(3)).first() != Some(&seed))
        .count();
    assert!(
        routed_elsewhere > KEYS / 2,
        "only {routed_elsewhere} of {KEYS} keys are coordinated by others than the seed"
    );

    cluster.kill(0);
    let killed = Instant::now();
    let until = killed + Duration::from_millis(AFTER_KILL_MS);
    let tally = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..WORKERS {
            tasks.spawn(work(
                client.clone(),
                worker,
                until,
                OPS_AFTER_KILL_MAX / WORKERS,
            ));
        }
        let mut tally = Tally::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(t) => tally.merge(t),
                Err(e) => panic!("a worker panicked: {e}"),
            }
        }
        tally
    });
    let report = format!(
        "learned the ring in {learned:?}; after the kill: {} ok, {} failed, {} stale reads, slowest call {:?}; errors: {:#?}",
        tally.ok, tally.failed, tally.stale, tally.slowest, tally.errors
    );
    eprintln!("{report}");
    assert!(tally.ok > KEYS, "too few requests ran: {report}");
    assert_eq!(tally.failed, 0, "{report}");
    assert_eq!(tally.stale, 0, "{report}");
    assert!(
        tally.slowest < Duration::from_millis(COMMAND_TIMEOUT_MS),
        "{report}"
    );
}
