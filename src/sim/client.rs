//! The clients' side of the world: programs, requests in flight, replies and time-outs.
//!
//! A simulated client behaves like a real one: it sends one request to a random running
//! node, waits for the answer or its own time-out, records both in the history, pauses,
//! and asks its program for the next request. Kept apart from `world.rs` so the node and
//! network plumbing there reads on its own.

use rand::Rng;

use crate::core::placement::ring::NodeId;
use crate::proto::ClientRequest;
use crate::sim::history::{OpOutcome, REPAIR_CLIENT};
use crate::sim::workload::Program;
use crate::sim::world::{Event, SimClient, World};

/// Adds a client that starts after a think pause; returns its index.
pub(crate) fn add_client(world: &mut World, program: Box<dyn Program>) -> usize {
    let client = world.clients.len();
    world.clients.push(SimClient {
        program,
        waiting: None,
        done: false,
    });
    let think = think(world);
    world.push(world.now + think, Event::ClientWake { client });
    client
}

/// Clients start no new operation from now on.
pub(crate) fn stop_clients(world: &mut World) {
    world.clients_stopped = true;
}

/// True while some client waits for an answer.
pub(crate) fn clients_busy(world: &World) -> bool {
    world.clients.iter().any(|c| c.waiting.is_some())
}

/// True once every client has finished its program or been stopped, and none waits.
pub(crate) fn clients_finished(world: &World) -> bool {
    !clients_busy(world) && (world.clients_stopped || world.clients.iter().all(|c| c.done))
}

/// Workload operations that have ended, one way or another.
pub(crate) fn completed_ops(world: &World) -> usize {
    world
        .history
        .workload()
        .filter(|o| o.outcome != OpOutcome::Pending)
        .count()
}

/// Sends a request outside the client programs (the settle phase's repair reads).
pub(crate) fn submit(world: &mut World, node: NodeId, request: ClientRequest) -> u64 {
    let id = world
        .history
        .invoke(REPAIR_CLIENT, node.clone(), request, world.now);
    send_request(world, node, id);
    id
}

pub(crate) fn think(world: &mut World) -> u64 {
    world.rng.random_range(0..=world.config.think_ms_max)
}

pub(crate) fn client_delay(world: &mut World) -> u64 {
    world
        .rng
        .random_range(1..=world.config.client_delay_ms_max.max(1))
}

pub(crate) fn wake(world: &mut World, client: usize) {
    if world.clients_stopped {
        return;
    }
    let Some(c) = world.clients.get_mut(client) else {
        return;
    };
    if c.waiting.is_some() || c.done {
        return;
    }
    let Some(request) = c.program.next(&mut world.rng) else {
        c.done = true;
        return;
    };
    let node = pick_node(world);
    let id = world
        .history
        .invoke(client, node.clone(), request, world.now);
    if let Some(c) = world.clients.get_mut(client) {
        c.waiting = Some(id);
    }
    send_request(world, node, id);
}

/// A random running node (any node when none runs, so the request fails visibly).
pub(crate) fn pick_node(world: &mut World) -> NodeId {
    let up: Vec<NodeId> = world
        .node_names()
        .into_iter()
        .filter(|n| world.is_up(n))
        .collect();
    let pool = if up.is_empty() {
        world.node_names()
    } else {
        up
    };
    pool[world.rng.random_range(0..pool.len())].clone()
}

pub(crate) fn send_request(world: &mut World, node: NodeId, op: u64) {
    let delay = client_delay(world);
    world.push(world.now + delay, Event::ClientArrive { node, op });
    let timeout = world.config.client_timeout_ms;
    world.push(world.now + timeout, Event::ClientTimeout { op });
}

pub(crate) fn arrive(world: &mut World, node: NodeId, op: u64) {
    let Some(request) = world.history.get(op).map(|o| o.request.clone()) else {
        return;
    };
    if !world.is_up(&node) {
        let at = world.now + world.network.config.connect_timeout_ms;
        let outcome = OpOutcome::Failed(format!("cannot reach node {node}: it is down"));
        world.push(at, Event::ClientResult { op, outcome });
        return;
    }
    world.input(&node, |n, now| n.handle_client(now, op, request));
}

pub(crate) fn finish_op(world: &mut World, op: u64, outcome: OpOutcome) {
    if !world.history.complete(op, outcome.clone(), world.now) {
        return;
    }
    let Some(client) = world.history.get(op).map(|o| o.client) else {
        return;
    };
    let Some(c) = world.clients.get_mut(client) else {
        return;
    };
    c.program.complete(&outcome);
    c.waiting = None;
    let think = think(world);
    world.push(world.now + think, Event::ClientWake { client });
}
