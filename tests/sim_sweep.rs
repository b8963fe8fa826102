//! The simulation sweep: hundreds of seeds per policy, each with partitions, loss,
//! duplication, reordering and crash-restart (some with disk loss), then the checkers.
//!
//! A failure prints its seed and the one command that replays it:
//! `RINGKV_SIM_SEED=<seed> RINGKV_SIM_POLICY=<policy> cargo test --test sim_sweep replay -- --nocapture`.
//! `RINGKV_SIM_SEEDS=<count>` changes the number of seeds per policy, and
//! `RINGKV_SIM_SEED_START=<first>` moves the range (CI keeps `0..500`), so a long run can
//! sweep fresh seeds: `RINGKV_SIM_SEED_START=100000 RINGKV_SIM_SEEDS=10000 cargo test
//! --release --test sim_sweep`. `RINGKV_SIM_SHOWN=<count>` prints that many flagged
//! requests and failing seeds instead of the first five.

use std::time::Instant;

use ringkv::core::object::Policy;
use ringkv::sim::{SeedRun, run_seed};

/// Seeds per policy unless `RINGKV_SIM_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 500;
/// Failing seeds (and flagged requests) printed in full before the sweep gives up
/// listing them, unless `RINGKV_SIM_SHOWN` says otherwise.
const FAILURES_SHOWN_DEFAULT: usize = 5;
/// The seed `replay` runs when no seed is given.
const REPLAY_SEED_DEFAULT: u64 = 42;

fn seeds() -> u64 {
    std::env::var("RINGKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS_DEFAULT)
}

/// How many failing seeds and flagged requests to print.
fn shown() -> usize {
    std::env::var("RINGKV_SIM_SHOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(FAILURES_SHOWN_DEFAULT)
}

/// The first seed of the sweep unless `RINGKV_SIM_SEED_START` says otherwise.
fn seed_start() -> u64 {
    std::env::var("RINGKV_SIM_SEED_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn replay_command(run: &SeedRun) -> String {
    format!(
        "RINGKV_SIM_SEED={} RINGKV_SIM_POLICY={} cargo test --test sim_sweep replay -- --nocapture",
        run.seed, run.policy
    )
}

fn sweep(policy: Policy) {
    let count = seeds();
    let first = seed_start();
    let started = Instant::now();
    let mut failed: Vec<SeedRun> = Vec::new();
    let (mut acked_updates, mut lost, mut ops) = (0u64, 0u64, 0u64);
    let mut unpersisted_lost = 0u64;
    let (mut exact, mut unresolved) = (0u64, 0u64);
    let mut unavailable: Vec<(u64, String)> = Vec::new();
    for seed in first..first.saturating_add(count) {
        let run = match run_seed(seed, policy) {
            Ok(run) => run,
            Err(e) => panic!("seed {seed} ({policy}) could not be simulated: {e}"),
        };
        acked_updates += run.report.acked_updates;
        lost += run.report.lost_acked;
        ops += run.report.attempted;
        unpersisted_lost += run.stats.unpersisted_lost;
        exact += run.report.exact_counters;
        unresolved += run.report.unresolved_writes;
        unavailable.extend(run.unavailable.iter().map(|line| (seed, line.clone())));
        if !run.passed() {
            failed.push(run);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sim sweep {policy}: {count} seeds from {first}, {ops} ops, {acked_updates} acknowledged updates, {lost} acknowledged updates lost ({:.1}%), {unpersisted_lost} unpersisted writes dropped by crashes, {} failing seeds, {secs:.1} s",
        if acked_updates == 0 {
            0.0
        } else {
            100.0 * lost as f64 / acked_updates as f64
        },
        failed.len()
    );
    if matches!(policy, Policy::Counter | Policy::Map) {
        println!(
            "  {exact} counters checked exactly (every increment acknowledged after retries with the same operation id); {unresolved} writes never acknowledged"
        );
        // Clients retry until acknowledged, so most counters must get the exact check,
        // or the check that no retry double counts went untested.
        assert!(
            count < 10 || exact > 0,
            "no {policy} counter was checked for exactness in {count} seeds"
        );
    }
    println!(
        "  {} requests failed although enough replicas were up and reachable throughout",
        unavailable.len()
    );
    for (seed, line) in unavailable.iter().take(shown()) {
        println!("    seed {seed}: {line}");
    }
    if policy != Policy::Lww && lost > 0 {
        // Any loss the checkers did not excuse fails its seed; these were acknowledged
        // with W no larger than the number of disks the run destroyed, which the
        // durability contract allows to be lost.
        println!("  ({lost} lost updates, all acknowledged with W <= disks lost in their run)");
    }
    if failed.is_empty() {
        // Half the seeds defer persists like the driver: unless the sweep was cut short,
        // some crash must have landed between a node's replication and its persist, or
        // that window went untested.
        assert!(
            count < SEEDS_DEFAULT || unpersisted_lost > 0,
            "no crash fell between a replication and its persist in {count} {policy} seeds"
        );
        // Failover, re-asks, stand-ins and doubted down verdicts leave no request failing
        // while a quorum of its replicas was up and reachable for the whole request.
        assert!(
            unavailable.is_empty(),
            "{} {policy} requests failed although enough replicas were up and reachable; the first: seed {}",
            unavailable.len(),
            unavailable
                .first()
                .map_or(String::new(), |(seed, line)| format!("{seed}: {line}"))
        );
        return;
    }
    for run in failed.iter().take(shown()) {
        eprintln!("seed {} ({policy}) failed:", run.seed);
        for line in &run.failures {
            eprintln!("  {line}");
        }
        eprintln!("  replay: {}", replay_command(run));
    }
    let seeds: Vec<u64> = failed.iter().map(|r| r.seed).collect();
    panic!(
        "{} of {count} {policy} seeds failed: {seeds:?}; replay the first with: {}",
        failed.len(),
        replay_command(&failed[0])
    );
}

#[test]
fn sweep_siblings() {
    sweep(Policy::Siblings);
}

#[test]
fn sweep_lww() {
    sweep(Policy::Lww);
}

#[test]
fn sweep_counter() {
    sweep(Policy::Counter);
}

#[test]
fn sweep_set() {
    sweep(Policy::Set);
}

#[test]
fn sweep_map() {
    sweep(Policy::Map);
}

#[test]
fn sweep_hll() {
    sweep(Policy::Hll);
}

/// Replays one seed twice, prints its history, and checks both runs agree to the byte
/// and pass. Without `RINGKV_SIM_SEED`/`RINGKV_SIM_POLICY` it replays a fixed seed.
#[test]
fn replay() {
    let seed = std::env::var("RINGKV_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(REPLAY_SEED_DEFAULT);
    let policy: Policy = match std::env::var("RINGKV_SIM_POLICY") {
        Ok(name) => name.parse().unwrap_or_else(|e| panic!("{e}")),
        Err(_) => Policy::Siblings,
    };
    let first = run_seed(seed, policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let second = run_seed(seed, policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let text = first.history.render();
    if std::env::var("RINGKV_SIM_SEED").is_ok() {
        println!("{text}");
        println!("stats: {:?}", first.stats);
        println!("report: {:?}", first.report);
    }
    assert_eq!(
        text,
        second.history.render(),
        "seed {seed} did not replay identically"
    );
    assert!(
        first.passed(),
        "seed {seed} ({policy}) failed:\n{}",
        first.failures.join("\n")
    );
}

/// Counter seed 1719 once failed its settle phase: strict R=3 reads kept failing with
/// "unreachable or down: n3" after every heal and restart, because a node held a
/// healthy peer down. It passes since failed sends only suspect a peer (and a message
/// clears that) and since requests re-ask; kept so it stays fixed.
#[test]
fn counter_seed_1719_settles() {
    let run = match run_seed(1719, Policy::Counter) {
        Ok(run) => run,
        Err(e) => panic!("seed 1719 could not be simulated: {e}"),
    };
    assert!(run.passed(), "seed 1719 failed: {:?}", run.failures);
}
