//! The availability checker: requests that failed although enough replicas were up and
//! reachable from their coordinator for the whole request.
//!
//! A Dynamo store exists to hide a crash, so a failure is only excusable when the
//! cluster really could not answer: fewer than W (or R) eligible replicas were up and on
//! the coordinator's side of every partition from the request's start to its end. Loss
//! and reordering do not excuse a failure (retries and failover must cover them); a
//! coordinator that crashed does. Eligible means the key's N primaries for a strict
//! request, and any node for a sloppy one, which may use fallbacks. The checker reads
//! only the history and the world's log of crashes, restarts and partitions.

use std::collections::BTreeSet;

use crate::core::node::NodeConfig;
use crate::core::placement::ring::{NodeId, key_position};
use crate::sim::history::OpOutcome;
use crate::sim::world::World;

/// One change of who is up or who can reach whom, as the world applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Up(NodeId),
    Down(NodeId),
    Partition(Vec<Vec<NodeId>>),
    Heal,
}

/// Which requests the checker looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The client programs' requests.
    Workload,
    /// Those and the requests sent with [`World::submit`] (the settle phase's reads).
    Everything,
}

/// Requests that failed or timed out while at least W (or R) eligible replicas were up
/// and reachable from their coordinator the whole time, one line each.
pub fn unavailable_while_possible(world: &World, scope: Scope) -> Vec<String> {
    let defaults = NodeConfig::new("defaults");
    let all: BTreeSet<NodeId> = world.node_names().into_iter().collect();
    let mut out = Vec::new();
    let ops = world
        .history()
        .ops
        .iter()
        .filter(|op| scope == Scope::Everything || op.is_workload());
    for op in ops {
        if op.outcome.is_ok() || op.outcome == OpOutcome::Pending {
            continue;
        }
        let Some(end_ms) = op.completed_ms else {
            continue;
        };
        let Some(key) = op.key() else {
            continue;
        };
        let opts = op.opts();
        let n = opts.n.unwrap_or(defaults.n);
        let needed = if op.is_write() {
            opts.w.unwrap_or(defaults.w.min(n))
        } else {
            opts.r.unwrap_or(defaults.r.min(n))
        } as usize;
        let stable = reachable_throughout(world, &op.node, &all, op.invoked_ms, end_ms);
        if !stable.contains(&op.node) {
            // the coordinator itself went down or away: the failure is excused
            continue;
        }
        let eligible: BTreeSet<NodeId> = if opts.strict {
            let ring = world.ring();
            let partition = ring.partition_of(key_position(&key.bucket, &key.key));
            ring.primaries(partition, n as usize)
                .into_iter()
                .cloned()
                .collect()
        } else {
            all.clone()
        };
        let available = stable.intersection(&eligible).count();
        if available >= needed {
            out.push(format!(
                "#{} {} {key} via {} failed with {available} of {needed} needed replicas up and reachable throughout: {:?}",
                op.id,
                if op.is_write() { "write" } else { "get" },
                op.node,
                op.outcome
            ));
        }
    }
    out
}

/// The nodes that were up and on `coordinator`'s side of every partition from `start_ms`
/// to `end_ms`.
fn reachable_throughout(
    world: &World,
    coordinator: &NodeId,
    all: &BTreeSet<NodeId>,
    start_ms: u64,
    end_ms: u64,
) -> BTreeSet<NodeId> {
    let mut up: BTreeSet<NodeId> = BTreeSet::new();
    let mut groups: Option<Vec<Vec<NodeId>>> = None;
    let mut stable: Option<BTreeSet<NodeId>> = None;
    let side = |groups: &Option<Vec<Vec<NodeId>>>| -> BTreeSet<NodeId> {
        match groups {
            None => all.clone(),
            Some(groups) => groups
                .iter()
                .find(|g| g.contains(coordinator))
                .map(|g| g.iter().cloned().collect())
                .unwrap_or_default(),
        }
    };
    for (at, change) in &world.timeline {
        if *at > end_ms {
            break;
        }
        if *at > start_ms && stable.is_none() {
            stable = Some(up.intersection(&side(&groups)).cloned().collect());
        }
        match change {
            Change::Up(node) => {
                up.insert(node.clone());
            }
            Change::Down(node) => {
                up.remove(node);
            }
            Change::Partition(g) => groups = Some(g.clone()),
            Change::Heal => groups = None,
        }
        if let Some(s) = stable.as_mut() {
            let now_side = side(&groups);
            s.retain(|node| up.contains(node) && now_side.contains(node));
        }
    }
    stable.unwrap_or_else(|| up.intersection(&side(&groups)).cloned().collect())
}
