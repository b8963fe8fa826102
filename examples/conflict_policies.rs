//! Which conflict policy should I use? One concurrent workload, four policies.
//!
//! Several clients do read-modify-write on a few hot keys: each update adds a unique
//! token, and a read-modify-write writes back every token it read plus its own. Midway
//! the cluster is partitioned, later healed, then every key is repaired and read back.
//! The table shows, per policy, how many acknowledged updates survived.
//!
//! ```text
//! cargo run --example conflict_policies -- [--seed 1] [--clients 4] [--ops 60] [--no-partition] [--json]
//! cargo run --example conflict_policies -- --cluster 127.0.0.1:7101 [--certs ./ringkv-dev/certs]
//! ```
//!
//! In the simulator (the default) faults are injected and time is virtual, so a seed
//! always prints the same table. With `--cluster` the same workload runs against a real
//! cluster through `ringkv::client::Client`; nothing is injected there, so only the
//! cluster's own concurrency creates conflicts.

use std::collections::BTreeMap;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ringkv::core::object::{Policy, ReadValue};
use ringkv::core::placement::ring::NodeId;
use ringkv::proto::Key;
use ringkv::sim::check::check_convergence;
use ringkv::sim::remote::{final_reads, run_programs};
use ringkv::sim::workload::{Program, QuorumChoice, RmwProgram, decode_tokens, keys_for};
use ringkv::sim::{Fault, NetConfig, Report, World, WorldConfig, check_history};

/// Policies compared, in table order.
const POLICIES: [Policy; 4] = [Policy::Lww, Policy::Siblings, Policy::Counter, Policy::Set];
/// Hot keys per policy.
const KEYS: usize = 2;
/// Nodes in the simulated cluster.
const NODES: usize = 5;
/// Virtual time allowed for the whole workload before the example gives up on it.
const RUN_MS_MAX: u64 = 3_600_000;

struct Args {
    seed: u64,
    clients: usize,
    ops: u64,
    partition: bool,
    json: bool,
    cluster: Option<SocketAddr>,
    certs: PathBuf,
}

/// One row of the table.
struct Row {
    policy: Policy,
    report: Report,
    converged: bool,
    finals: String,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "usage: conflict_policies [--seed N] [--clients N] [--ops N] [--no-partition] [--json] [--cluster ADDR] [--certs DIR]"
            );
            return ExitCode::from(2);
        }
    };
    let rows = match args.cluster {
        Some(addr) => match run_cluster(&args, addr) {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => {
            let mut rows = Vec::new();
            for policy in POLICIES {
                match run_sim(&args, policy) {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        eprintln!("the {policy} simulation could not run: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            rows
        }
    };
    print_rows(&args, &rows);
    ExitCode::SUCCESS
}

fn programs(args: &Args, policy: Policy, bucket: &str) -> Vec<Box<dyn Program>> {
    (0..args.clients)
        .map(|c| {
            let p = RmwProgram::new(
                policy,
                c,
                keys_for(bucket, KEYS),
                QuorumChoice::Default,
                args.ops,
            );
            Box::new(p) as Box<dyn Program>
        })
        .collect()
}

fn run_sim(args: &Args, policy: Policy) -> Result<Row, ringkv::sim::SimError> {
    let mut config = WorldConfig::new(NODES);
    config.net = NetConfig {
        delay_max_ms: 20,
        ..NetConfig::reliable()
    };
    let mut world = World::new(args.seed, config)?;
    for p in programs(args, policy, policy.name()) {
        world.add_client(p);
    }
    let total = args.clients * args.ops as usize;
    if args.partition {
        world.run_while(|w| w.completed_ops() < total / 3, RUN_MS_MAX);
        let names: Vec<NodeId> = world.node_names();
        let (minority, majority) = names.split_at(2);
        world.apply(Fault::Partition(vec![minority.to_vec(), majority.to_vec()]));
        world.run_while(|w| w.completed_ops() < total * 2 / 3, RUN_MS_MAX);
        world.apply(Fault::Heal);
    }
    world.run_while(|w| !w.clients_finished(), RUN_MS_MAX);
    let settled = world.settle();
    let finals: BTreeMap<Key, ReadValue> = settled
        .merged()
        .into_iter()
        .map(|(k, o)| (k, o.read()))
        .collect();
    let converged = check_convergence(&settled.replicas).is_empty();
    let report = check_history(world.history(), &finals, world.stats().disk_losses);
    Ok(Row {
        policy,
        report,
        converged,
        finals: summary(&finals),
    })
}

fn run_cluster(args: &Args, addr: SocketAddr) -> Result<Vec<Row>, String> {
    common::on_cluster(addr, &args.certs, |client, run| async move {
        let mut rows = Vec::new();
        for policy in POLICIES {
            let bucket = format!("conflict-{run}-{policy}");
            let history = run_programs(&client, programs(args, policy, &bucket), args.seed).await;
            let keys = keys_for(&bucket, KEYS);
            let fin = final_reads(&client, &keys).await;
            for line in &fin.unsettled {
                eprintln!("{policy}: {line}");
            }
            let report = check_history(&history, &fin.values, 0);
            rows.push(Row {
                policy,
                report,
                converged: fin.unsettled.is_empty(),
                finals: summary(&fin.values),
            });
        }
        Ok(rows)
    })
}

/// A short description of each key's final value.
fn summary(finals: &BTreeMap<Key, ReadValue>) -> String {
    let parts: Vec<String> = finals
        .iter()
        .map(|(key, value)| {
            let name = String::from_utf8_lossy(&key.key).to_string();
            match value {
                ReadValue::Lww { value, .. } => {
                    let tokens = value.as_ref().map_or(0, |v| decode_tokens(v).1.len());
                    format!("{name}: 1 value, {tokens} tokens")
                }
                ReadValue::Siblings { values, .. } => {
                    let mut tokens = std::collections::BTreeSet::new();
                    for v in values {
                        tokens.extend(decode_tokens(v).1);
                    }
                    format!("{name}: {} siblings, {} tokens", values.len(), tokens.len())
                }
                ReadValue::Counter { value } => format!("{name}={value}"),
                ReadValue::Set { members, .. } => format!("{name}: {} members", members.len()),
                other => format!("{name}: {other:?}"),
            }
        })
        .collect();
    parts.join("; ")
}

fn print_rows(args: &Args, rows: &[Row]) {
    if args.json {
        for row in rows {
            let line = serde_json::json!({
                "policy": row.policy.name(),
                "ops": row.report.attempted,
                "acked": row.report.acked_updates,
                "lost_acked": row.report.lost_acked,
                "max_siblings": row.report.max_siblings,
                "converged": row.converged,
                "final": row.finals,
            });
            println!("{line}");
        }
        return;
    }
    let mode = match args.cluster {
        Some(addr) => format!("cluster {addr}"),
        None => format!(
            "simulator, seed {}, {NODES} nodes{}",
            args.seed,
            if args.partition {
                ", partitioned 2|3 for the middle third"
            } else {
                ""
            }
        ),
    };
    println!(
        "{} clients x {} requests of read-modify-write on {KEYS} hot keys ({mode})\n",
        args.clients, args.ops
    );
    println!(
        "{:<9} {:>6} {:>8} {:>10} {:>13} {:>10}  final values",
        "policy", "ops ok", "updates", "lost acked", "max siblings", "converged"
    );
    for row in rows {
        println!(
            "{:<9} {:>6} {:>8} {:>10} {:>13} {:>10}  {}",
            row.policy.name(),
            row.report.acked,
            row.report.acked_updates,
            row.report.lost_acked,
            row.report.max_siblings,
            if row.converged { "yes" } else { "NO" },
            row.finals
        );
    }
    println!(
        "\nupdates = acknowledged writes; lost acked = acknowledged updates missing at the end (counter: missing amount)."
    );
    println!("Which policy?");
    println!(
        "  lww      one value per key; concurrent writes silently lose to the latest stamp. Caches, last-seen, idempotent overwrites."
    );
    println!(
        "  siblings keeps every concurrent write until a write that read them; the app merges. Any value where losing a write is a bug."
    );
    println!(
        "  counter  increments always merge; nothing acknowledged is lost. Likes, quotas, metrics."
    );
    println!(
        "  set      adds and removes merge (add wins); nothing acknowledged is lost. Tags, memberships, carts."
    );
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: 1,
        clients: 4,
        ops: 60,
        partition: true,
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
            "--ops" => args.ops = common::number(&value("--ops")?, "--ops")?,
            "--no-partition" => args.partition = false,
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
    if args.clients == 0 || args.ops == 0 {
        return Err("--clients and --ops must be at least 1".into());
    }
    Ok(args)
}
