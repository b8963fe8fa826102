//! Ring changes and gossip in the simulator: joins, leaves and datagrams.
//!
//! Gossip packets are addressed by network address, not by node name (a joining node
//! knows its seed only by address), so the world keeps an address book. Datagrams go
//! through the same network model as peer messages — delay, loss, duplication,
//! partitions — but a lost datagram is simply gone: SWIM expects that and never learns
//! of it, which is exactly the condition its failure detector must survive.

use crate::core::membership::gossip::MemberPhase;
use crate::core::node::MemberSpec;
use crate::core::placement::ring::{NodeId, Ring};
use crate::proto::ClientRequest;
use crate::sim::availability::Change;
use crate::sim::network::Fate;
use crate::sim::world::{Event, SimNode, World};

/// Request id the world uses for operator commands (join, leave); the history never
/// issues it, so the reply is dropped.
const OPERATOR_REQUEST_ID: u64 = u64::MAX;

/// True once `node` has handed everything over and left.
pub(crate) fn has_left(world: &World, node: &NodeId) -> bool {
    world.nodes.get(node).is_some_and(|n| n.left)
}

/// Partitions that running nodes hold but no longer own (transfers still to do).
pub(crate) fn transfers_pending(world: &World) -> u64 {
    world
        .nodes
        .values()
        .filter_map(|n| n.node.as_ref())
        .map(|n| u64::from(n.transfer_info().pending))
        .sum()
}

/// Recomputes the world's reference ring from a running, synced member (checkers
/// and settling use it to find each key's primaries after the ring changed).
pub(crate) fn refresh_ring(world: &mut World) {
    let ring: Option<Ring> = world
        .nodes
        .values()
        .filter_map(|n| n.node.as_ref())
        .find(|n| n.is_synced() && n.membership().own_phase() == MemberPhase::Normal)
        .map(|n| n.membership().ring().clone());
    if let Some(ring) = ring {
        world.ring = ring;
    }
}

/// Starts `name` as a new node that joins through `seed`.
pub(crate) fn join(world: &mut World, name: NodeId, seed: NodeId) {
    let now = world.now;
    if world.nodes.contains_key(&name) {
        world
            .errors
            .push(format!("@{now}: {name} cannot join: the name is taken"));
        return;
    }
    let Some(seed_addr) = world.nodes.get(&seed).map(|n| n.addr.clone()) else {
        world
            .errors
            .push(format!("@{now}: {name} cannot join through unknown {seed}"));
        return;
    };
    let addr = format!("sim:{name}");
    let skew = world.config.skew_ms_max as i64;
    let skew_ms = rand::Rng::random_range(&mut world.rng, -skew..=skew);
    world.nodes.insert(
        name.clone(),
        SimNode::new(
            addr.clone(),
            vec![MemberSpec::new(name.0.clone(), addr.clone())],
            vec![seed_addr],
            skew_ms,
        ),
    );
    world.addrs.insert(addr, name.clone());
    world
        .history
        .fault(now, format!("join {name} through {seed}"));
    if let Err(e) = world.start_node(&name) {
        world
            .errors
            .push(format!("@{now}: {name} did not start: {e}"));
    }
}

/// Tells `name` to leave (`ringkv leave`).
pub(crate) fn leave(world: &mut World, name: &NodeId) {
    world.history.fault(world.now, format!("leave {name}"));
    world.input(name, |node, now| {
        node.handle_client(now, OPERATOR_REQUEST_ID, ClientRequest::Leave)
    });
}

/// Stops a node that has left; its storage is kept for inspection.
pub(crate) fn retire(world: &mut World, name: &NodeId) {
    let now = world.now;
    if let Some(sim) = world.nodes.get_mut(name) {
        sim.node = None;
        sim.left = true;
        sim.incarnation += 1;
        sim.timer_at = None;
        world.history.fault(now, format!("{name} left the cluster"));
        world.timeline.push((now, Change::Down(name.clone())));
    }
}

pub(crate) fn send_datagram(world: &mut World, from: &NodeId, addr: &str, data: Vec<u8>) {
    let Some(to) = world.addrs.get(addr).cloned() else {
        world.stats.lost += 1;
        return;
    };
    let up = world.is_up(&to);
    match world.network.fate(from, &to, up, &mut world.rng) {
        Fate::Deliver(delays) => world.push_copies(&delays, || Event::Datagram {
            from: from.clone(),
            to: to.clone(),
            data: data.clone(),
        }),
        Fate::Lost | Fate::Unreachable(_) => world.stats.lost += 1,
    }
}

pub(crate) fn deliver_datagram(world: &mut World, from: NodeId, to: NodeId, data: Vec<u8>) {
    if !world.is_up(&to) || !world.network.connected(&from, &to) {
        world.stats.lost += 1;
        return;
    }
    world.stats.delivered += 1;
    world.input(&to, |node, now| node.handle_datagram(now, from, &data));
}
