//! The end of a run: heal everything, repair every key, and read back the replicas.
//!
//! Convergence is only promised after the faults stop, so the checkers need a state in
//! which every node runs, every link works and every repair mechanism has had its
//! chance: hinted handoff drains first (a hint may hold the only copy of an acknowledged
//! write), then a strict get with R=N of every written key makes its coordinator merge
//! all N primaries and read-repair the stale ones.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::object::Object;
use crate::core::placement::ring::{NodeId, key_position};
use crate::proto::{ClientRequest, Key, QuorumOpts};
use crate::sim::history::OpOutcome;
use crate::sim::workload::WORKLOAD_N;
use crate::sim::world::{Fault, World};
use crate::sim::{client, members};

/// Virtual time given to each settle step (several ping and handoff periods).
pub const SETTLE_STEP_MS: u64 = 3_000;
/// Most handoff steps before settling gives up on hints draining.
pub const HANDOFF_ROUNDS_MAX: usize = 10;
/// Most rounds of repair reads for keys whose repair read failed.
pub const REPAIR_ROUNDS_MAX: usize = 5;

/// One replica's copy of a key: the object, or why it could not be read.
pub type ReplicaCopy = (NodeId, Result<Option<Object>, String>);

/// The cluster after settling.
#[derive(Debug, Default)]
pub struct Settled {
    /// For every written key, each primary's copy.
    pub replicas: BTreeMap<Key, Vec<ReplicaCopy>>,
    /// Hints still held after the last handoff step.
    pub hints_left: u64,
    /// Keys whose R=N repair read never succeeded, with the last error.
    pub repair_failures: Vec<String>,
}

/// Every key some workload request wrote to.
pub(crate) fn written_keys(world: &World) -> BTreeSet<Key> {
    world
        .history
        .workload()
        .filter(|o| o.is_write())
        .filter_map(|o| o.key().cloned())
        .collect()
}

/// Hints held by running nodes.
pub(crate) fn hints_pending(world: &World) -> u64 {
    world
        .node_names()
        .iter()
        .filter_map(|n| world.node(n))
        .map(|n| n.replica().hints().total())
        .sum()
}

/// The first `n` nodes of the key's preference list.
pub(crate) fn primaries(world: &World, key: &Key, n: usize) -> Vec<NodeId> {
    let partition = world.ring.partition_of(key_position(&key.bucket, &key.key));
    world
        .ring
        .primaries(partition, n)
        .into_iter()
        .cloned()
        .collect()
}

/// Each primary's copy of `key`, read straight from its storage.
pub(crate) fn replicas(world: &World, key: &Key, n: usize) -> Vec<ReplicaCopy> {
    primaries(world, key, n)
        .into_iter()
        .map(|name| {
            let copy = match world.node(&name) {
                Some(node) => node.replica().read(key, None).map_err(|e| e.to_string()),
                None => Err(format!("{name} is not running")),
            };
            (name, copy)
        })
        .collect()
}

/// Stops the clients, lets their last requests end, heals the network, restarts
/// every node, drains hints and repairs every written key; returns the replicas.
pub(crate) fn settle(world: &mut World) -> Settled {
    client::stop_clients(world);
    let deadline = world.now() + world.config.client_timeout_ms + 1;
    world.run_while(World::clients_busy, deadline);
    world.apply(Fault::Heal);
    for node in world.node_names() {
        if !world.is_up(&node) && !members::has_left(world, &node) {
            world.apply(Fault::Restart(node));
        }
    }
    let mut net = world.network.config;
    net.loss = 0.0;
    net.duplicate = 0.0;
    world.apply(Fault::Net(net));
    drain_hints(world);
    members::refresh_ring(world);
    let mut todo: Vec<Key> = written_keys(world).into_iter().collect();
    let mut repair_failures = Vec::new();
    for round in 0..REPAIR_ROUNDS_MAX {
        let ids: Vec<(Key, u64)> = todo
            .iter()
            .map(|key| {
                let coordinator = primaries(world, key, 1).remove(0);
                let request = ClientRequest::Get {
                    key: key.clone(),
                    opts: QuorumOpts {
                        n: Some(WORKLOAD_N),
                        r: Some(WORKLOAD_N),
                        strict: true,
                        ..QuorumOpts::default()
                    },
                };
                (key.clone(), client::submit(world, coordinator, request))
            })
            .collect();
        let deadline = world.now() + world.config.client_timeout_ms + 1;
        world.run_while(
            |w| {
                ids.iter().any(|(_, id)| {
                    w.history()
                        .get(*id)
                        .is_some_and(|o| o.outcome == OpOutcome::Pending)
                })
            },
            deadline,
        );
        // Read repair is sent after the reply; give it time to land.
        world.run_until(world.now() + SETTLE_STEP_MS);
        let mut failed = Vec::new();
        repair_failures.clear();
        for (key, id) in ids {
            let outcome = world.history().get(id).map(|o| o.outcome.clone());
            if !outcome.as_ref().is_some_and(OpOutcome::is_ok) {
                repair_failures.push(format!(
                    "repair read of {key} failed in round {}: {outcome:?}",
                    round + 1
                ));
                failed.push(key);
            }
        }
        todo = failed;
        if todo.is_empty() {
            break;
        }
    }
    drain_hints(world);
    let replicas = world
        .written_keys()
        .into_iter()
        .map(|key| {
            let copies = replicas(world, &key, WORKLOAD_N as usize);
            (key, copies)
        })
        .collect();
    Settled {
        replicas,
        hints_left: hints_pending(world),
        repair_failures,
    }
}

/// Runs until hints are handed off and ring-change transfers are done (bounded).
pub(crate) fn drain_hints(world: &mut World) {
    for _ in 0..HANDOFF_ROUNDS_MAX {
        world.run_until(world.now() + SETTLE_STEP_MS);
        if hints_pending(world) == 0 && members::transfers_pending(world) == 0 {
            return;
        }
    }
}

impl Settled {
    /// The join of every primary's copy of each key: what a full read would see.
    pub fn merged(&self) -> BTreeMap<Key, Object> {
        let mut out = BTreeMap::new();
        for (key, copies) in &self.replicas {
            let mut merged: Option<Object> = None;
            for (_, copy) in copies {
                if let Ok(Some(obj)) = copy {
                    match &mut merged {
                        Some(m) => {
                            m.merge(obj);
                        }
                        None => merged = Some(obj.clone()),
                    }
                }
            }
            if let Some(m) = merged {
                out.insert(key.clone(), m);
            }
        }
        out
    }
}
