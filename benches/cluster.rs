//! End-to-end cost of a request on a real local cluster: client → QUIC with mutual TLS →
//! node → coordinator → replicas → durable group commit → reply.
//!
//! The micro benches (ring, object, storage) price one layer each; this one shows what a
//! client actually waits for and how the layers add up under load. Three nodes run in
//! this process on 127.0.0.1 (ephemeral ports) on fjall with `SyncMode::Group`, so every
//! ack is durable and writes that arrive together share one fsync. One client, connected
//! to `n1`, keeps `C` requests in flight on its one QUIC connection (one stream per
//! request); requests for keys that `n1` does not coordinate are forwarded by `n1`, as in
//! production.
//!
//! Each criterion iteration is one request, so the reported time is the wall time per
//! request at that concurrency (the inverse of throughput), not the latency of one
//! request. With `C` in flight in a closed loop, mean latency = `C` × time per request
//! (Little's law); the bench also measures it directly and prints it after each case.
//!
//! Values are LWW writes of 100 bytes: blind writes to a key never grow siblings, so the
//! cost does not drift with the number of iterations criterion chooses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringkv::client::Client;
use ringkv::core::node::{MemberSpec, NodeConfig};
use ringkv::core::object::ReadValue;
use ringkv::net::driver::{NodeHandle, NodeOptions, bind_node, start_bound};
use ringkv::net::{CertStore, Role};
use ringkv::proto::{Key, QuorumOpts};
use ringkv::storage::SyncMode;
use tokio::task::JoinSet;

// The same allocator as the `ringkv` binary, so the bench prices what a node pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nodes in the bench cluster.
const NODES: usize = 3;
/// Distinct keys the requests spread over.
const KEYS: u64 = 10_000;
/// Bytes per value.
const VALUE_BYTES: usize = 100;
/// Requests kept in flight on the client's connection in the loaded cases.
const IN_FLIGHT: usize = 64;
/// Tokio worker threads: the bench machine has two cores, shared by client and nodes.
const RUNTIME_THREADS: usize = 2;
/// Requests in flight while preloading keys for the get benches.
const PRELOAD_IN_FLIGHT: usize = 64;
/// Stride between consecutive key indexes: coprime with [`KEYS`], so a batch touches keys
/// all over the ring rather than neighbours.
const KEY_STRIDE: u64 = 7_919;

/// Which operation a case runs.
#[derive(Clone, Copy, Debug)]
enum Op {
    Put,
    Get,
}

/// One measured configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    n: u8,
    w: u8,
    r: u8,
    in_flight: usize,
}

/// A running cluster and the client that drives it.
struct BenchCluster {
    _dir: tempfile::TempDir,
    nodes: Vec<NodeHandle>,
    client: Client,
}

/// Sum of the latencies the workers saw, to print the directly measured mean.
#[derive(Default)]
struct LatencyTally {
    total_ns: AtomicU64,
    requests: AtomicU64,
}

impl Case {
    fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: Some(self.n),
            w: Some(self.w),
            r: Some(self.r),
            ..QuorumOpts::default()
        }
    }
}

impl BenchCluster {
    /// Starts n1..n3 on fjall with group commit and connects a client to n1.
    async fn start() -> Result<BenchCluster, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        let store = CertStore::init(&certs)?;
        for i in 1..=NODES {
            store.issue(&format!("n{i}"), Role::Node)?;
        }
        store.issue("client", Role::Client)?;
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let mut bound = Vec::new();
        for i in 1..=NODES {
            bound.push(bind_node(loopback, &certs, &format!("n{i}"))?);
        }
        let members: Vec<MemberSpec> = bound
            .iter()
            .enumerate()
            .map(|(i, b)| MemberSpec::new(format!("n{}", i + 1), b.addr().to_string()))
            .collect();
        let first = bound[0].addr();
        let mut nodes = Vec::new();
        for (i, b) in bound.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let options = NodeOptions {
                config: NodeConfig::new(name.clone()),
                members: members.clone(),
                certs_dir: certs.clone(),
                data_dir: data_dir(dir.path(), &name),
                sync: SyncMode::Group,
            };
            nodes.push(start_bound(b, options).await?);
        }
        let client = Client::connect(first, &certs, "client").await?;
        Ok(BenchCluster {
            _dir: dir,
            nodes,
            client,
        })
    }

    async fn shutdown(self) {
        for node in self.nodes {
            let name = node.name().clone();
            if let Err(e) = node.shutdown().await {
                eprintln!("bench cluster: node {name} did not stop cleanly: {e}");
            }
        }
    }
}

impl LatencyTally {
    fn record(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn mean_ms(&self) -> f64 {
        let requests = self.requests.load(Ordering::Relaxed).max(1);
        self.total_ns.load(Ordering::Relaxed) as f64 / requests as f64 / 1_000_000.0
    }
}

fn data_dir(root: &std::path::Path, name: &str) -> PathBuf {
    root.join("data").join(name)
}

fn keys() -> Arc<Vec<Key>> {
    Arc::new(
        (0..KEYS)
            .map(|i| Key::new("bench", format!("key-{i:05}")))
            .collect(),
    )
}

/// Runs `requests` operations with up to `in_flight` outstanding and returns the wall
/// time. Workers pull request numbers from a shared counter so the total is exact
/// whatever `in_flight` is.
async fn run_batch(
    client: &Client,
    keys: &Arc<Vec<Key>>,
    op: Op,
    opts: QuorumOpts,
    requests: u64,
    in_flight: usize,
    tally: &Arc<LatencyTally>,
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let workers = usize::try_from(requests)
        .unwrap_or(usize::MAX)
        .min(in_flight);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let client = client.clone();
        let keys = keys.clone();
        let next = next.clone();
        let tally = tally.clone();
        set.spawn(async move {
            let value = vec![0x5A; VALUE_BYTES];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                let key = &keys[((i % KEYS) * KEY_STRIDE % KEYS) as usize];
                let sent = Instant::now();
                one_request(&client, key, op, opts, &value).await;
                tally.record(sent.elapsed());
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            panic!("a bench worker failed: {e}");
        }
    }
    start.elapsed()
}

/// One request; a failure aborts the bench, since its figures would be meaningless.
async fn one_request(client: &Client, key: &Key, op: Op, opts: QuorumOpts, value: &[u8]) {
    match op {
        Op::Put => {
            if let Err(e) = client.put_lww(key, value.to_vec(), opts).await {
                panic!("put of {key:?} failed: {e}");
            }
        }
        Op::Get => match client.get(key, opts).await {
            Ok(got) => match got.value {
                Some(ReadValue::Lww { .. }) if got.found && got.values.len() == 1 => {}
                other => panic!("get of preloaded {key:?} returned {other:?}"),
            },
            Err(e) => panic!("get of {key:?} failed: {e}"),
        },
    }
}

/// Writes every key on all three replicas, so reads at any N find them.
async fn preload(cluster: &BenchCluster, keys: &Arc<Vec<Key>>) {
    let all = QuorumOpts {
        n: Some(3),
        w: Some(3),
        r: Some(3),
        ..QuorumOpts::default()
    };
    let tally = Arc::new(LatencyTally::default());
    // KEY_STRIDE is coprime with KEYS, so KEYS requests write every key exactly once.
    run_batch(
        &cluster.client,
        keys,
        Op::Put,
        all,
        KEYS,
        PRELOAD_IN_FLIGHT,
        &tally,
    )
    .await;
}

fn bench_op(c: &mut Criterion, op: Op, cases: &[Case]) {
    let group_name = match op {
        Op::Put => "cluster/put",
        Op::Get => "cluster/get",
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{group_name}: cannot build the tokio runtime: {e}"),
    };
    let cluster = match rt.block_on(BenchCluster::start()) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{group_name}: cannot start the bench cluster: {e}"),
    };
    let keys = keys();
    // Here, not inside the first `iter_custom` call: criterion's warm-up counts the wall
    // time of the whole closure, so a preload there would end the warm-up after one
    // request and skew the iteration counts of every sample.
    if let Op::Get = op {
        rt.block_on(preload(&cluster, &keys));
    }
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for case in cases {
        let tally = Arc::new(LatencyTally::default());
        let id = BenchmarkId::new(case.name, format!("c{}", case.in_flight));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(run_batch(
                    &cluster.client,
                    &keys,
                    op,
                    case.opts(),
                    iters,
                    case.in_flight,
                    &tally,
                ))
            })
        });
        let requests = tally.requests.load(Ordering::Relaxed);
        if requests == 0 {
            // Filtered out on the command line.
            continue;
        }
        eprintln!(
            "{group_name}/{}/c{}: measured mean latency {:.2} ms over {} requests (warm-up included)",
            case.name,
            case.in_flight,
            tally.mean_ms(),
            requests
        );
    }
    group.finish();
    rt.block_on(cluster.shutdown());
}

const CASES: [Case; 3] = [
    Case {
        name: "n3w2r2",
        n: 3,
        w: 2,
        r: 2,
        in_flight: IN_FLIGHT,
    },
    Case {
        name: "n1w1r1",
        n: 1,
        w: 1,
        r: 1,
        in_flight: IN_FLIGHT,
    },
    Case {
        name: "n3w2r2",
        n: 3,
        w: 2,
        r: 2,
        in_flight: 1,
    },
];

fn cluster_benches(c: &mut Criterion) {
    bench_op(c, Op::Put, &CASES);
    bench_op(c, Op::Get, &CASES);
}

criterion_group!(benches, cluster_benches);
criterion_main!(benches);
