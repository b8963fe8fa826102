//! The clients' side of the world: programs, requests in flight, replies and time-outs.
//!
//! A simulated client behaves like a real one: it sends one request to a random running
//! node, waits for the answer or its own time-out, records both in the history, pauses,
//! and asks its program for the next request. A write that failed or timed out is sent
//! again to another running node with the same operation id, up to
//! `CLIENT_ATTEMPTS_MAX` times, as `ringkv::Client` does; each try is its own entry in
//! the history, and the program hears only how the last one ended. Kept apart from
//! `world.rs` so the node and network plumbing there reads on its own.

use rand::Rng;

use crate::core::placement::ring::NodeId;
use crate::proto::ClientRequest;
use crate::sim::history::{OpOutcome, REPAIR_CLIENT};
use crate::sim::workload::Program;
use crate::sim::world::{Event, SimClient, World};

/// Most times a client sends one write (the first try included). Generous, so that a
/// write outliving a fault is still acknowledged once the fault heals, which is what
/// lets the checkers demand exact counts.
pub const CLIENT_ATTEMPTS_MAX: u32 = 40;

/// Adds a client that starts after a think pause; returns its index.
pub(crate) fn add_client(world: &mut World, program: Box<dyn Program>) -> usize {
    let client = world.clients.len();
    world.clients.push(SimClient {
        program,
        waiting: None,
        attempts: 0,
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
        c.attempts = 1;
    }
    send_request(world, node, id);
}

/// Sends a failed write again, with the same operation id, to another running node when
/// there is one; true when it did.
fn retry(world: &mut World, client: usize, failed: u64) -> bool {
    let Some(op) = world.history.get(failed) else {
        return false;
    };
    let (request, last_node) = (op.request.clone(), op.node.clone());
    if !matches!(request, ClientRequest::Write { id: Some(_), .. }) {
        return false;
    }
    let Some(c) = world.clients.get_mut(client) else {
        return false;
    };
    if c.attempts >= CLIENT_ATTEMPTS_MAX {
        return false;
    }
    c.attempts += 1;
    let others: Vec<NodeId> = world
        .node_names()
        .into_iter()
        .filter(|n| world.is_up(n) && n != &last_node)
        .collect();
    let node = if others.is_empty() {
        pick_node(world)
    } else {
        others[world.rng.random_range(0..others.len())].clone()
    };
    let id = world
        .history
        .invoke(client, node.clone(), request, world.now);
    if let Some(c) = world.clients.get_mut(client) {
        c.waiting = Some(id);
    }
    send_request(world, node, id);
    true
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
    if !outcome.is_ok() && retry(world, client, op) {
        return;
    }
    let Some(c) = world.clients.get_mut(client) else {
        return;
    };
    c.program.complete(&outcome);
    c.waiting = None;
    let think = think(world);
    world.push(world.now + think, Event::ClientWake { client });
}
