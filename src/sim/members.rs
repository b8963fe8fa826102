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
use crate::sim::network::Fate;
use crate::sim::world::{Event, SimNode, World};

/// Request id the world uses for operator commands (join, leave); the history never
/// issues it, so the reply is dropped.
const OPERATOR_REQUEST_ID: u64 = u64::MAX;

impl World {
    /// True once `node` has handed everything over and left.
    pub fn has_left(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.left)
    }

    /// Partitions that running nodes hold but no longer own (transfers still to do).
    pub fn transfers_pending(&self) -> u64 {
        self.nodes
            .values()
            .filter_map(|n| n.node.as_ref())
            .map(|n| u64::from(n.transfer_info().pending))
            .sum()
    }

    /// Recomputes the world's reference ring from a running, synced member (checkers
    /// and settling use it to find each key's primaries after the ring changed).
    pub fn refresh_ring(&mut self) {
        let ring: Option<Ring> = self
            .nodes
            .values()
            .filter_map(|n| n.node.as_ref())
            .find(|n| n.is_synced() && n.membership().own_phase() == MemberPhase::Normal)
            .map(|n| n.membership().ring().clone());
        if let Some(ring) = ring {
            self.ring = ring;
        }
    }

    /// Starts `name` as a new node that joins through `seed`.
    pub(crate) fn join(&mut self, name: NodeId, seed: NodeId) {
        let now = self.now;
        if self.nodes.contains_key(&name) {
            self.errors
                .push(format!("@{now}: {name} cannot join: the name is taken"));
            return;
        }
        let Some(seed_addr) = self.nodes.get(&seed).map(|n| n.addr.clone()) else {
            self.errors
                .push(format!("@{now}: {name} cannot join through unknown {seed}"));
            return;
        };
        let addr = format!("sim:{name}");
        let skew = self.config.skew_ms_max as i64;
        let skew_ms = rand::Rng::random_range(&mut self.rng, -skew..=skew);
        self.nodes.insert(
            name.clone(),
            SimNode::new(
                addr.clone(),
                vec![MemberSpec::new(name.0.clone(), addr.clone())],
                vec![seed_addr],
                skew_ms,
            ),
        );
        self.addrs.insert(addr, name.clone());
        self.history
            .fault(now, format!("join {name} through {seed}"));
        if let Err(e) = self.start_node(&name) {
            self.errors
                .push(format!("@{now}: {name} did not start: {e}"));
        }
    }

    /// Tells `name` to leave (`ringkv leave`).
    pub(crate) fn leave(&mut self, name: &NodeId) {
        self.history.fault(self.now, format!("leave {name}"));
        self.input(name, |node, now| {
            node.handle_client(now, OPERATOR_REQUEST_ID, ClientRequest::Leave)
        });
    }

    /// Stops a node that has left; its storage is kept for inspection.
    pub(crate) fn retire(&mut self, name: &NodeId) {
        let now = self.now;
        if let Some(sim) = self.nodes.get_mut(name) {
            sim.node = None;
            sim.left = true;
            sim.incarnation += 1;
            sim.timer_at = None;
            self.history.fault(now, format!("{name} left the cluster"));
        }
    }

    pub(crate) fn send_datagram(&mut self, from: &NodeId, addr: &str, data: Vec<u8>) {
        let Some(to) = self.addrs.get(addr).cloned() else {
            self.stats.lost += 1;
            return;
        };
        let up = self.is_up(&to);
        match self.network.fate(from, &to, up, &mut self.rng) {
            Fate::Deliver(delays) => self.push_copies(&delays, || Event::Datagram {
                from: from.clone(),
                to: to.clone(),
                data: data.clone(),
            }),
            Fate::Lost | Fate::Unreachable(_) => self.stats.lost += 1,
        }
    }

    pub(crate) fn deliver_datagram(&mut self, from: NodeId, to: NodeId, data: Vec<u8>) {
        if !self.is_up(&to) || !self.network.connected(&from, &to) {
            self.stats.lost += 1;
            return;
        }
        self.stats.delivered += 1;
        self.input(&to, |node, now| node.handle_datagram(now, from, &data));
    }
}
