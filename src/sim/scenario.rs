//! The sweep's scenario: one seed, one policy, a random fault schedule, then the checks.
//!
//! Every schedule has message loss, duplication, random delays (hence reordering), at
//! least one partition and at least one crash-restart, some with disk loss, all drawn
//! from the seed. The test sweep runs this for hundreds of seeds per policy; a failing
//! seed replays exactly through the same function.

use std::collections::BTreeMap;

use rand::Rng;

use crate::core::object::{Policy, ReadValue};
use crate::core::placement::ring::NodeId;
use crate::sim::SimError;
use crate::sim::availability::{Scope, unavailable_while_possible};
use crate::sim::check::{Report, check_convergence, check_history};
use crate::sim::history::History;
use crate::sim::network::NetConfig;
use crate::sim::workload::{QuorumChoice, RmwProgram, keys_for};
use crate::sim::world::{Fault, World, WorldConfig, WorldStats};

/// Nodes in a sweep cluster: more than N, so sloppy fallbacks exist.
pub const SWEEP_NODES: usize = 5;
/// Concurrent clients per run.
pub const SWEEP_CLIENTS: usize = 4;
/// Hot keys per run.
pub const SWEEP_KEYS: usize = 2;
/// Requests each client may issue.
pub const SWEEP_OPS_PER_CLIENT: u64 = 80;
/// Virtual time during which clients work and faults strike.
pub const SWEEP_WORKLOAD_MS: u64 = 8_000;
/// Most partition episodes and crash episodes per schedule (at least one of each).
pub const EPISODES_MAX: usize = 2;

/// One seed's run and verdict.
#[derive(Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub policy: Policy,
    pub history: History,
    pub report: Report,
    pub convergence: Vec<String>,
    pub stats: WorldStats,
    /// Workload requests that failed although enough replicas were up and reachable
    /// from their coordinator throughout ([`crate::sim::availability`]); not yet a
    /// failure of the seed.
    pub unavailable: Vec<String>,
    /// Everything that makes the seed fail, one line each.
    pub failures: Vec<String>,
}

impl SeedRun {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs one seed of the sweep for `policy`.
pub fn run_seed(seed: u64, policy: Policy) -> Result<SeedRun, SimError> {
    let mut config = WorldConfig::new(SWEEP_NODES);
    config.persist_delay_ms = persist_delay_ms(seed);
    let mut world = World::new(seed, config)?;
    let bucket = policy.name();
    for client in 0..SWEEP_CLIENTS {
        let program = RmwProgram::new(
            policy,
            client,
            keys_for(bucket, SWEEP_KEYS),
            QuorumChoice::Random,
            SWEEP_OPS_PER_CLIENT,
        )
        .with_removes(true);
        world.add_client(Box::new(program));
    }
    schedule_faults(&mut world, SWEEP_WORKLOAD_MS);
    world.run_until(SWEEP_WORKLOAD_MS);
    let settled = world.settle();
    let finals: BTreeMap<_, ReadValue> = settled
        .merged()
        .into_iter()
        .map(|(k, o)| (k, o.read()))
        .collect();
    let convergence = check_convergence(&settled.replicas);
    let unavailable = unavailable_while_possible(&world, Scope::Workload);
    let report = check_history(world.history(), &finals, world.stats().disk_losses);
    let mut failures = Vec::new();
    failures.extend(world.errors().iter().cloned());
    failures.extend(settled.repair_failures.iter().cloned());
    if settled.hints_left > 0 {
        failures.push(format!(
            "{} hints were never handed off after healing",
            settled.hints_left
        ));
    }
    failures.extend(convergence.iter().cloned());
    failures.extend(report.violations.iter().cloned());
    Ok(SeedRun {
        seed,
        policy,
        history: world.history().clone(),
        report,
        convergence,
        stats: world.stats().clone(),
        unavailable,
        failures,
    })
}

/// Half the seeds persist after every input; the other half defer persists by 10–40 ms,
/// as the driver's overlapped group commit does, so crashes land between a node's
/// replication and its persist.
pub fn persist_delay_ms(seed: u64) -> u64 {
    if seed % 2 == 0 {
        0
    } else {
        10 + (seed / 2) % 31
    }
}

/// Draws the network's behaviour, partitions and crashes for one run.
pub fn schedule_faults(world: &mut World, workload_ms: u64) {
    let names = world.node_names();
    let rng = &mut world.rng;
    let delay_min_ms = rng.random_range(1..=5);
    let net = NetConfig {
        delay_min_ms,
        delay_max_ms: delay_min_ms + rng.random_range(1..=60),
        loss: rng.random_range(0.005..0.08),
        duplicate: rng.random_range(0.005..0.05),
        ..NetConfig::reliable()
    };
    let mut faults: Vec<(u64, Fault)> = vec![(0, Fault::Net(net))];
    for _ in 0..rng.random_range(1..=EPISODES_MAX) {
        let start = rng.random_range(0..workload_ms * 7 / 10);
        let length = rng.random_range(300..2_500);
        faults.push((start, Fault::Partition(split(&names, rng))));
        faults.push((start + length, Fault::Heal));
    }
    let mut disk_lost = false;
    for _ in 0..rng.random_range(1..=EPISODES_MAX) {
        let node = names[rng.random_range(0..names.len())].clone();
        let start = rng.random_range(0..workload_ms * 8 / 10);
        let length = rng.random_range(5..2_500);
        let lose_disk = !disk_lost && rng.random_ratio(1, 4);
        disk_lost |= lose_disk;
        faults.push((
            start,
            Fault::Crash {
                node: node.clone(),
                lose_disk,
            },
        ));
        faults.push((start + length, Fault::Restart(node)));
    }
    for (at, fault) in faults {
        world.schedule(at, fault);
    }
}

/// A random split of the nodes into two non-empty groups.
fn split(names: &[NodeId], rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Vec<NodeId>> {
    let minority = rng.random_range(1..=names.len() / 2);
    let mut shuffled = names.to_vec();
    for i in (1..shuffled.len()).rev() {
        let j = rng.random_range(0..=i);
        shuffled.swap(i, j);
    }
    let rest = shuffled.split_off(minority);
    vec![shuffled, rest]
}
