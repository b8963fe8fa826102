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

impl World {
    /// Adds a client that starts after a think pause; returns its index.
    pub fn add_client(&mut self, program: Box<dyn Program>) -> usize {
        let client = self.clients.len();
        self.clients.push(SimClient {
            program,
            waiting: None,
            done: false,
        });
        let think = self.think();
        self.push(self.now + think, Event::ClientWake { client });
        client
    }

    /// Clients start no new operation from now on.
    pub fn stop_clients(&mut self) {
        self.clients_stopped = true;
    }

    /// True while some client waits for an answer.
    pub fn clients_busy(&self) -> bool {
        self.clients.iter().any(|c| c.waiting.is_some())
    }

    /// True once every client has finished its program or been stopped, and none waits.
    pub fn clients_finished(&self) -> bool {
        !self.clients_busy() && (self.clients_stopped || self.clients.iter().all(|c| c.done))
    }

    /// Workload operations that have ended, one way or another.
    pub fn completed_ops(&self) -> usize {
        self.history
            .workload()
            .filter(|o| o.outcome != OpOutcome::Pending)
            .count()
    }

    /// Sends a request outside the client programs (the settle phase's repair reads).
    pub fn submit(&mut self, node: NodeId, request: ClientRequest) -> u64 {
        let id = self
            .history
            .invoke(REPAIR_CLIENT, node.clone(), request, self.now);
        self.send_request(node, id);
        id
    }

    pub(crate) fn think(&mut self) -> u64 {
        self.rng.random_range(0..=self.config.think_ms_max)
    }

    pub(crate) fn client_delay(&mut self) -> u64 {
        self.rng
            .random_range(1..=self.config.client_delay_ms_max.max(1))
    }

    pub(crate) fn wake(&mut self, client: usize) {
        if self.clients_stopped {
            return;
        }
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        if c.waiting.is_some() || c.done {
            return;
        }
        let Some(request) = c.program.next(&mut self.rng) else {
            c.done = true;
            return;
        };
        let node = self.pick_node();
        let id = self.history.invoke(client, node.clone(), request, self.now);
        if let Some(c) = self.clients.get_mut(client) {
            c.waiting = Some(id);
        }
        self.send_request(node, id);
    }

    /// A random running node (any node when none runs, so the request fails visibly).
    fn pick_node(&mut self) -> NodeId {
        let up: Vec<NodeId> = self
            .node_names()
            .into_iter()
            .filter(|n| self.is_up(n))
            .collect();
        let pool = if up.is_empty() { self.node_names() } else { up };
        pool[self.rng.random_range(0..pool.len())].clone()
    }

    pub(crate) fn send_request(&mut self, node: NodeId, op: u64) {
        let delay = self.client_delay();
        self.push(self.now + delay, Event::ClientArrive { node, op });
        let timeout = self.config.client_timeout_ms;
        self.push(self.now + timeout, Event::ClientTimeout { op });
    }

    pub(crate) fn arrive(&mut self, node: NodeId, op: u64) {
        let Some(request) = self.history.get(op).map(|o| o.request.clone()) else {
            return;
        };
        if !self.is_up(&node) {
            let at = self.now + self.network.config.connect_timeout_ms;
            let outcome = OpOutcome::Failed(format!("cannot reach node {node}: it is down"));
            self.push(at, Event::ClientResult { op, outcome });
            return;
        }
        self.input(&node, |n, now| n.handle_client(now, op, request));
    }

    pub(crate) fn finish_op(&mut self, op: u64, outcome: OpOutcome) {
        if !self.history.complete(op, outcome.clone(), self.now) {
            return;
        }
        let Some(client) = self.history.get(op).map(|o| o.client) else {
            return;
        };
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        c.program.complete(&outcome);
        c.waiting = None;
        let think = self.think();
        self.push(self.now + think, Event::ClientWake { client });
    }
}
