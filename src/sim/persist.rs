//! Deferred persists: the simulator's model of the driver's overlapped group commit.
//!
//! The real driver (`net/driver/core_loop.rs`) sends replication, reads and forwards at
//! once, and holds acks and replies until a persist that started after they were produced;
//! both it and this module keep that rule through the core's `CommitGate`, so the
//! simulator cannot drift from the driver.
//! A crash between the two loses the unpersisted writes and everything held for them,
//! while replicas may already hold what the crashed node replicated. With
//! [`super::WorldConfig::persist_delay_ms`] above 0 the world plays exactly that window:
//! each node's persist runs that long after the input that needed it, and a crash drawn
//! in between exercises it, so the checkers prove that no acknowledged write is lost and
//! no dot is reused (the node's fresh actor after a crash, `core/node/boot.rs`).

use crate::core::commit_gate::Departure;
use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, PeerMessage};
use crate::sim::client;
use crate::sim::history::OpOutcome;
use crate::sim::world::{Event, World};

/// An output on its way through its node's commit gate.
#[derive(Debug)]
pub(crate) enum Held {
    Transmit(NodeId, Box<PeerMessage>),
    Reply(u64, ClientReply),
}

/// Sends what may precede a persist and holds the rest in the node's commit gate;
/// schedules the node's next persist if none is due.
pub(crate) fn hold(
    world: &mut World,
    name: &NodeId,
    incarnation: u64,
    transmits: Vec<(NodeId, PeerMessage)>,
    replies: Vec<(u64, ClientReply)>,
) {
    let delay = world.config.persist_delay_ms;
    let at = world.now + delay;
    let Some(sim) = world.nodes.get_mut(name) else {
        return;
    };
    for (to, msg) in transmits {
        let departure = Departure::of_message(&msg);
        sim.gate.push(Held::Transmit(to, Box::new(msg)), departure);
    }
    for (op, reply) in replies {
        sim.gate.push(Held::Reply(op, reply), Departure::of_reply());
    }
    let early = sim.gate.take_early();
    let schedule = delay > 0 && sim.persist_at.is_none() && sim.node.is_some();
    if schedule {
        sim.persist_at = Some(at);
    }
    release(world, name, incarnation, early);
    if schedule {
        let event = Event::Persist {
            node: name.clone(),
            incarnation,
        };
        world.push(at, event);
    }
}

/// A deferred persist comes due (unless its node crashed since).
pub(crate) fn on_persist(world: &mut World, name: &NodeId, incarnation: u64) {
    if world.incarnation(name) != Some(incarnation) {
        return;
    }
    if let Some(sim) = world.nodes.get_mut(name) {
        sim.persist_at = None;
    }
    persist_and_release(world, name);
}

/// Persists the node's writes, then sends everything held for them. The simulated
/// persist is instantaneous, so it starts and completes at once.
pub(crate) fn persist_and_release(world: &mut World, name: &NodeId) {
    let now = world.now;
    let Some(sim) = world.nodes.get_mut(name) else {
        return;
    };
    let incarnation = sim.incarnation;
    let Some(node) = sim.node.as_ref() else {
        return;
    };
    if let Err(e) = node.storage().persist() {
        world
            .errors
            .push(format!("@{now}: {name} could not persist: {e}"));
        return;
    }
    sim.gate.start_persist();
    let held = sim.gate.complete_persist();
    release(world, name, incarnation, held);
}

/// Sends outputs the gate released, in its order.
pub(crate) fn release(world: &mut World, name: &NodeId, incarnation: u64, outputs: Vec<Held>) {
    let now = world.now;
    for out in outputs {
        match out {
            Held::Transmit(to, msg) => world.transmit(name, incarnation, to, *msg),
            Held::Reply(op, reply) => {
                let outcome = match reply {
                    ClientReply::Error(e) => OpOutcome::Failed(e.to_string()),
                    other => OpOutcome::Ok(other),
                };
                let at = now + client::client_delay(world);
                world.push(at, Event::ClientResult { op, outcome });
            }
        }
    }
}
