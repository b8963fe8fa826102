//! What do W and R buy? N=3 and seven (W, R) pairs under a node crash, then a partition.
//!
//! Four clients increment and read counters (a read is stale when it returns less than
//! the increments acknowledged before it began). A third of the way in, the first
//! primary of the first key crashes and later restarts; after that, the cluster is cut
//! 2|3 with that node on the small side, and later healed. Per setting the table shows
//! availability (share of requests that succeeded), stale reads, and latency.
//!
//! ```text
//! cargo run --example quorum_tuning -- [--seed 1] [--clients 4] [--duration-ms 12000] [--json]
//! cargo run --example quorum_tuning -- --cluster 127.0.0.1:7101 [--certs ./ringkv-dev/certs] [--ops 200]
//! ```
//!
//! In the simulator latencies are virtual milliseconds and a seed always prints the
//! same table. With `--cluster` the workload runs against a real cluster (no faults are
//! injected there) and latencies are wall-clock milliseconds.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ringkv::core::placement::ring::NodeId;
use ringkv::sim::check::{Staleness, percentile, stale_reads};
use ringkv::sim::history::{History, OpOutcome};
use ringkv::sim::remote::run_programs;
use ringkv::sim::workload::{Program, QuorumProgram, WORKLOAD_N, keys_for};
use ringkv::sim::{Fault, NetConfig, World, WorldConfig};

/// The (W, R) pairs compared, for N=3.
const SETTINGS: [(u8, u8); 7] = [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (1, 3), (3, 3)];
/// Counter keys the clients share.
const KEYS: usize = 3;
/// Nodes in the simulated cluster: more than N, so sloppy fallbacks exist.
const NODES: usize = 5;
/// Requests per simulated client: more than fit in the duration, which ends the run.
const SIM_OPS_MAX: u64 = 1_000_000;

struct Args {
    seed: u64,
    clients: usize,
    duration_ms: u64,
    ops: u64,
    json: bool,
    cluster: Option<SocketAddr>,
    certs: PathBuf,
}

struct Row {
    w: u8,
    r: u8,
    ops: usize,
    ok: usize,
    staleness: Staleness,
    p50_ms: u64,
    p99_ms: u64,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "usage: quorum_tuning [--seed N] [--clients N] [--duration-ms MS] [--ops N] [--json] [--cluster ADDR] [--certs DIR]"
            );
            return ExitCode::from(2);
        }
    };
    let rows = match args.cluster {
        Some(addr) => run_cluster(&args, addr),
        None => SETTINGS
            .iter()
            .map(|&(w, r)| run_sim(&args, w, r).map_err(|e| e.to_string()))
            .collect(),
    };
    match rows {
        Ok(rows) => {
            print_rows(&args, &rows);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run_sim(args: &Args, w: u8, r: u8) -> Result<Row, ringkv::sim::SimError> {
    let mut config = WorldConfig::new(NODES);
    config.net = NetConfig {
        delay_max_ms: 20,
        ..NetConfig::reliable()
    };
    let mut world = World::new(args.seed, config)?;
    let keys = keys_for("quorum", KEYS);
    for _ in 0..args.clients {
        world.add_client(Box::new(QuorumProgram::new(
            keys.clone(),
            w,
            r,
            SIM_OPS_MAX,
        )));
    }
    let d = args.duration_ms;
    let victim = world.primaries(&keys[0], 1).remove(0);
    world.schedule(
        d / 6,
        Fault::Crash {
            node: victim.clone(),
            lose_disk: false,
        },
    );
    world.schedule(d * 2 / 6, Fault::Restart(victim.clone()));
    let others: Vec<NodeId> = world
        .node_names()
        .into_iter()
        .filter(|n| n != &victim)
        .collect();
    let (small, large) = others.split_at(1);
    let small = vec![victim, small[0].clone()];
    world.schedule(d * 3 / 6, Fault::Partition(vec![small, large.to_vec()]));
    world.schedule(d * 5 / 6, Fault::Heal);
    world.run_until(d);
    world.stop_clients();
    let deadline = world.now() + world_client_timeout();
    world.run_while(World::clients_busy, deadline);
    Ok(row(w, r, world.history()))
}

/// How long a simulated client waits at most (the world's default).
fn world_client_timeout() -> u64 {
    WorldConfig::new(NODES).client_timeout_ms + 1
}

fn run_cluster(args: &Args, addr: SocketAddr) -> Result<Vec<Row>, String> {
    common::on_cluster(addr, &args.certs, |client, run| async move {
        let mut rows = Vec::new();
        for (w, r) in SETTINGS {
            let keys = keys_for(&format!("quorum-{run}-w{w}r{r}"), KEYS);
            let programs: Vec<Box<dyn Program>> = (0..args.clients)
                .map(|_| {
                    Box::new(QuorumProgram::new(keys.clone(), w, r, args.ops)) as Box<dyn Program>
                })
                .collect();
            let history = run_programs(&client, programs, args.seed).await;
            rows.push(row(w, r, &history));
        }
        Ok(rows)
    })
}

fn row(w: u8, r: u8, history: &History) -> Row {
    let done: Vec<_> = history
        .workload()
        .filter(|o| o.outcome != OpOutcome::Pending)
        .collect();
    let ok = done.iter().filter(|o| o.outcome.is_ok()).count();
    let mut latencies: Vec<u64> = done.iter().filter_map(|o| o.latency_ms()).collect();
    latencies.sort_unstable();
    Row {
        w,
        r,
        ops: done.len(),
        ok,
        staleness: stale_reads(history),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    }
}

fn availability(row: &Row) -> f64 {
    if row.ops == 0 {
        0.0
    } else {
        row.ok as f64 / row.ops as f64
    }
}

fn print_rows(args: &Args, rows: &[Row]) {
    if args.json {
        for row in rows {
            let line = serde_json::json!({
                "n": WORKLOAD_N,
                "w": row.w,
                "r": row.r,
                "ops": row.ops,
                "availability": (availability(row) * 1000.0).round() / 1000.0,
                "reads": row.staleness.reads,
                "stale_reads": row.staleness.stale,
                "p50_ms": row.p50_ms,
                "p99_ms": row.p99_ms,
            });
            println!("{line}");
        }
        return;
    }
    match args.cluster {
        Some(addr) => println!(
            "cluster {addr}: {} clients x {} requests per setting, wall-clock ms, no injected faults\n",
            args.clients, args.ops
        ),
        None => println!(
            "simulator, seed {}, {NODES} nodes, {} clients for {} virtual ms: a primary crashes at 1/6 and restarts at 2/6; it is partitioned 2|3 from 3/6 to 5/6\n",
            args.seed, args.clients, args.duration_ms
        ),
    }
    println!(
        "{:>3} {:>3} {:>7} {:>6} {:>12} {:>11} {:>7} {:>7}",
        "W", "R", "W+R>N", "ops", "availability", "stale reads", "p50 ms", "p99 ms"
    );
    for row in rows {
        println!(
            "{:>3} {:>3} {:>7} {:>6} {:>11.1}% {:>5} / {:<5} {:>7} {:>7}",
            row.w,
            row.r,
            if row.w + row.r > WORKLOAD_N {
                "yes"
            } else {
                "no"
            },
            row.ops,
            100.0 * availability(row),
            row.staleness.stale,
            row.staleness.reads,
            row.p50_ms,
            row.p99_ms
        );
    }
    println!("\nstale read = a counter read below the increments acknowledged before it began.");
    println!(
        "W+R>N makes read and write sets overlap while the primaries are reachable; sloppy fallbacks"
    );
    println!(
        "keep writes available through failures, at the price of reads that can miss them until handoff."
    );
    println!("Higher W or R costs availability and tail latency when nodes are down or cut off.");
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: 1,
        clients: 4,
        duration_ms: 12_000,
        ops: 200,
        json: false,
        cluster: None,
        certs: PathBuf::from("./ringkv-dev/certs"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seed" => args.seed = common::number(&value("--seed")?, "--seed")?,
            "--clients" => args.clients = common::number(&value("--clients")?, "--clients")?,
            "--duration-ms" => {
                args.duration_ms = common::number(&value("--duration-ms")?, "--duration-ms")?
            }
            "--ops" => args.ops = common::number(&value("--ops")?, "--ops")?,
            "--json" => args.json = true,
            "--cluster" => {
                let text = value("--cluster")?;
                let addr = text.parse().map_err(|e| {
                    format!("--cluster {text}: not an address like 127.0.0.1:7101 ({e})")
                })?;
                args.cluster = Some(addr);
            }
            "--certs" => args.certs = PathBuf::from(value("--certs")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.clients == 0 || args.ops == 0 || args.duration_ms == 0 {
        return Err("--clients, --ops and --duration-ms must be at least 1".into());
    }
    Ok(args)
}
