//! The simulated cluster: core nodes over memory storage, one event queue, virtual time.
//!
//! Everything that happens — a message arriving, a timer firing, a client waking up, a
//! fault — is an event in one queue ordered by (virtual time, insertion sequence), and
//! every random choice comes from one seeded RNG, so a seed fixes the whole run. The
//! world drives each node exactly as `net/driver/core_loop.rs` does: feed one input, persist the
//! node's storage, then drain its messages, replies and next deadline. A crash drops
//! what was not persisted; a disk loss replaces the storage, so the node returns as a new
//! actor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::core::commit_gate::CommitGate;
use crate::core::node::{MemberSpec, Node, NodeConfig, Now};
use crate::core::placement::ring::{NodeId, Ring};
use crate::proto::{ClientRequest, Key, PeerMessage};
use crate::sim::SimError;
use crate::sim::availability::Change;
use crate::sim::history::{History, OpOutcome};
use crate::sim::network::{Fate, NetConfig, Network};
use crate::sim::persist::Held;
use crate::sim::settle::{ReplicaCopy, Settled};
use crate::sim::workload::Program;
use crate::sim::{client, members, persist, settle};
use crate::storage::{MemoryStorage, Storage, SyncMode};

/// Wall-clock origin of virtual time (2024-01-01), so HLC stamps look like real ones.
pub const WALL_EPOCH_MS: u64 = 1_704_067_200_000;
/// Ring partitions in the simulator: fewer than production, so rings build fast.
pub const SIM_PARTITIONS: u32 = 64;
/// Most events one `run_*` call processes; a run that needs more is livelocked.
pub const EVENTS_PER_RUN_MAX: u64 = 50_000_000;

/// How the simulated cluster is built.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub nodes: usize,
    pub net: NetConfig,
    /// Each node's wall clock is off by a draw from `-skew_ms_max..=skew_ms_max`.
    pub skew_ms_max: u64,
    /// The core's quorum timeout.
    pub request_timeout_ms: u64,
    /// How long a client waits for a reply before it records a time-out.
    pub client_timeout_ms: u64,
    /// One-way delay between a client and a node, drawn from `1..=client_delay_ms_max`.
    pub client_delay_ms_max: u64,
    /// Pause between a client's operations, drawn from `0..=think_ms_max`.
    pub think_ms_max: u64,
    /// Every node's tombstone grace period (hints expire after half of it).
    pub tombstone_grace_ms: u64,
    /// Partition streaming budget of every node when the ring changes.
    pub transfer_bytes_per_sec: u64,
    /// How long after a node's input its persist runs, as the real driver's overlapped
    /// group commit does. 0 persists after every input. Above 0, replication leaves at
    /// once, acks and replies wait for the persist, and a crash in between loses the
    /// unpersisted writes and the outputs held for them (`sim/persist.rs`).
    pub persist_delay_ms: u64,
}

/// A fault or a change of the network, applied at a scheduled time.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Partition(Vec<Vec<NodeId>>),
    Heal,
    /// Stops a node; with `lose_disk` its storage is replaced by an empty one.
    Crash {
        node: NodeId,
        lose_disk: bool,
    },
    Restart(NodeId),
    Net(NetConfig),
    /// A new node starts and joins through `seed` (gossip announce).
    Join {
        node: NodeId,
        seed: NodeId,
    },
    /// A member hands its partitions over and leaves.
    Leave(NodeId),
}

/// Counters of what the world did, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    pub events: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unreachable: u64,
    pub crashes: u64,
    pub disk_losses: u64,
    /// Writes rolled back by crashes: 0 when persist runs after every input, and only
    /// unacknowledged ones when it is deferred (`persist_delay_ms`).
    pub unpersisted_lost: u64,
}

/// `Deliver` is nearly every event, so boxing its message would cost an allocation per
/// simulated message to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Event {
    Deliver {
        from: NodeId,
        from_incarnation: u64,
        to: NodeId,
        msg: PeerMessage,
    },
    Unreachable {
        at: NodeId,
        incarnation: u64,
        dest: NodeId,
    },
    Timer {
        node: NodeId,
        incarnation: u64,
    },
    Datagram {
        from: NodeId,
        to: NodeId,
        data: Vec<u8>,
    },
    ClientArrive {
        node: NodeId,
        op: u64,
    },
    ClientResult {
        op: u64,
        outcome: OpOutcome,
    },
    ClientTimeout {
        op: u64,
    },
    ClientWake {
        client: usize,
    },
    /// A node's deferred persist (see [`WorldConfig::persist_delay_ms`]).
    Persist {
        node: NodeId,
        incarnation: u64,
    },
    Fault(Fault),
}

#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) node: Option<Node>,
    pub(crate) storage: MemoryStorage,
    pub(crate) incarnation: u64,
    pub(crate) skew_ms: i64,
    /// The earliest timer event queued for this incarnation.
    pub(crate) timer_at: Option<u64>,
    /// Its address, static member list and seeds, reused on every restart.
    pub(crate) addr: String,
    pub(crate) members: Vec<MemberSpec>,
    pub(crate) seeds: Vec<String>,
    /// It handed everything over and left; it is never restarted.
    pub(crate) left: bool,
    /// Outputs waiting for the node's next persist, and when that persist runs.
    pub(crate) gate: CommitGate<Held>,
    pub(crate) persist_at: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct SimClient {
    pub(crate) program: Box<dyn Program>,
    pub(crate) waiting: Option<u64>,
    /// Times the request in flight has been sent (1 for the first try).
    pub(crate) attempts: u32,
    pub(crate) done: bool,
}

/// The simulated cluster and its clients.
#[derive(Debug)]
pub struct World {
    pub(crate) config: WorldConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: u64,
    pub(crate) seq: u64,
    pub(crate) queue: BTreeMap<(u64, u64), Event>,
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    /// Which node listens at which address (gossip datagrams are addressed by address).
    pub(crate) addrs: BTreeMap<String, NodeId>,
    pub(crate) ring: Ring,
    pub(crate) network: Network,
    pub(crate) clients: Vec<SimClient>,
    pub(crate) clients_stopped: bool,
    pub(crate) history: History,
    /// Every change of who is up and who reaches whom, in order (the availability
    /// checker's input).
    pub(crate) timeline: Vec<(u64, Change)>,
    pub(crate) stats: WorldStats,
    /// Things that went wrong inside the simulator or a node's storage; a checker
    /// reports each as a failure.
    pub(crate) errors: Vec<String>,
}

impl SimNode {
    /// A node not started yet, on an empty disk.
    pub(crate) fn new(
        addr: String,
        members: Vec<MemberSpec>,
        seeds: Vec<String>,
        skew_ms: i64,
    ) -> SimNode {
        SimNode {
            node: None,
            storage: MemoryStorage::with_sync_mode(SyncMode::Group),
            incarnation: 0,
            skew_ms,
            timer_at: None,
            addr,
            members,
            seeds,
            left: false,
            gate: CommitGate::new(),
            persist_at: None,
        }
    }
}

impl WorldConfig {
    /// `nodes` nodes on a reliable network with core defaults.
    pub fn new(nodes: usize) -> WorldConfig {
        WorldConfig {
            nodes,
            net: NetConfig::reliable(),
            skew_ms_max: 200,
            request_timeout_ms: crate::core::node::REQUEST_TIMEOUT_MS_DEFAULT,
            client_timeout_ms: 5_000,
            client_delay_ms_max: 3,
            think_ms_max: 40,
            tombstone_grace_ms: crate::core::repair::reap::TOMBSTONE_GRACE_MS_DEFAULT,
            transfer_bytes_per_sec: crate::core::repair::transfer::TRANSFER_BYTES_PER_SEC_DEFAULT,
            persist_delay_ms: 0,
        }
    }
}

impl World {
    /// Builds nodes `n1..nK`, all up, at virtual time 0.
    pub fn new(seed: u64, config: WorldConfig) -> Result<World, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let members: Vec<MemberSpec> = (1..=config.nodes)
            .map(|i| MemberSpec::new(format!("n{i}"), format!("sim:{i}")))
            .collect();
        let ring_members: Vec<crate::core::placement::ring::Member> = members
            .iter()
            .map(|m| crate::core::placement::ring::Member {
                name: m.name.clone(),
                vnodes: m.vnodes,
            })
            .collect();
        let ring = Ring::new(&ring_members, SIM_PARTITIONS)?;
        let mut nodes = BTreeMap::new();
        for m in &members {
            let skew = config.skew_ms_max as i64;
            let skew_ms = rng.random_range(-skew..=skew);
            nodes.insert(
                m.name.clone(),
                SimNode::new(m.addr.clone(), members.clone(), Vec::new(), skew_ms),
            );
        }
        let network = Network::new(config.net);
        let addrs = members
            .iter()
            .map(|m| (m.addr.clone(), m.name.clone()))
            .collect();
        let mut world = World {
            config,
            rng,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            addrs,
            ring,
            network,
            clients: Vec::new(),
            clients_stopped: false,
            history: History::default(),
            timeline: Vec::new(),
            stats: WorldStats::default(),
            errors: Vec::new(),
        };
        let names: Vec<NodeId> = world.nodes.keys().cloned().collect();
        for name in names {
            world.start_node(&name)?;
        }
        Ok(world)
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn stats(&self) -> &WorldStats {
        &self.stats
    }

    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn node_names(&self) -> Vec<NodeId> {
        self.nodes.keys().cloned().collect()
    }

    pub fn is_up(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.node.is_some())
    }

    /// A running node, for inspection.
    pub fn node(&self, name: &NodeId) -> Option<&Node> {
        self.nodes.get(name).and_then(|n| n.node.as_ref())
    }

    /// Queues a fault at virtual time `at` (now, if earlier).
    pub fn schedule(&mut self, at: u64, fault: Fault) {
        self.push(at.max(self.now), Event::Fault(fault));
    }

    /// Applies a fault now.
    pub fn apply(&mut self, fault: Fault) {
        let now = self.now;
        match fault {
            Fault::Partition(groups) => {
                let text: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        let names: Vec<&str> = g.iter().map(NodeId::as_str).collect();
                        names.join(",")
                    })
                    .collect();
                self.history
                    .fault(now, format!("partition {}", text.join(" | ")));
                self.network.partition(&groups);
                self.timeline.push((now, Change::Partition(groups)));
            }
            Fault::Heal => {
                self.history.fault(now, "heal".into());
                self.network.heal();
                self.timeline.push((now, Change::Heal));
            }
            Fault::Crash { node, lose_disk } => self.crash(&node, lose_disk),
            Fault::Join { node, seed } => members::join(self, node, seed),
            Fault::Leave(node) => members::leave(self, &node),
            Fault::Restart(node) => {
                if !self.is_up(&node) && !members::has_left(self, &node) {
                    self.history.fault(now, format!("restart {node}"));
                    if let Err(e) = self.start_node(&node) {
                        self.errors
                            .push(format!("@{now}: {node} did not restart: {e}"));
                    }
                }
            }
            Fault::Net(config) => {
                self.history.fault(
                    now,
                    format!(
                        "net delay {}..{} ms loss {:.3} dup {:.3}",
                        config.delay_min_ms, config.delay_max_ms, config.loss, config.duplicate
                    ),
                );
                self.network.config = config;
            }
        }
    }

    /// Processes every event up to and including virtual time `until`.
    pub fn run_until(&mut self, until: u64) {
        self.run_while(|_| true, until);
        self.now = self.now.max(until);
    }

    /// Processes events while `cond` holds and the next event is due by `deadline`.
    pub fn run_while(&mut self, cond: impl Fn(&World) -> bool, deadline: u64) {
        for _ in 0..EVENTS_PER_RUN_MAX {
            if !cond(self) {
                return;
            }
            match self.queue.first_key_value() {
                Some((&(at, _), _)) if at <= deadline => {}
                _ => return,
            }
            self.step();
        }
        self.errors.push(format!(
            "@{}: more than {EVENTS_PER_RUN_MAX} events in one run; the cluster is livelocked",
            self.now
        ));
    }

    /// Processes the next event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        self.stats.events += 1;
        match event {
            Event::Deliver {
                from,
                from_incarnation,
                to,
                msg,
            } => self.deliver(from, from_incarnation, to, msg),
            Event::Unreachable {
                at,
                incarnation,
                dest,
            } => {
                if self.incarnation(&at) == Some(incarnation) {
                    self.input(&at, |node, now| node.handle_unreachable(now, dest));
                }
            }
            Event::Timer { node, incarnation } => self.fire_timer(&node, incarnation, at),
            Event::Datagram { from, to, data } => members::deliver_datagram(self, from, to, data),
            Event::ClientArrive { node, op } => client::arrive(self, node, op),
            Event::ClientResult { op, outcome } => client::finish_op(self, op, outcome),
            Event::ClientTimeout { op } => client::finish_op(self, op, OpOutcome::TimedOut),
            Event::ClientWake { client } => client::wake(self, client),
            Event::Persist { node, incarnation } => persist::on_persist(self, &node, incarnation),
            Event::Fault(fault) => self.apply(fault),
        }
        true
    }

    pub(crate) fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    pub(crate) fn incarnation(&self, node: &NodeId) -> Option<u64> {
        self.nodes
            .get(node)
            .filter(|n| n.node.is_some())
            .map(|n| n.incarnation)
    }

    fn clock(&self, node: &NodeId) -> Now {
        let skew = self.nodes.get(node).map_or(0, |n| n.skew_ms);
        let wall = (WALL_EPOCH_MS + self.now) as i64 + skew;
        Now {
            mono_ms: self.now,
            wall_ms: wall.max(0) as u64,
        }
    }

    pub(crate) fn start_node(&mut self, name: &NodeId) -> Result<(), SimError> {
        let now = self.clock(name);
        let mut config = NodeConfig::new(name.0.clone());
        config.partitions = SIM_PARTITIONS;
        config.request_timeout_ms = self.config.request_timeout_ms;
        config.tombstone_grace_ms = self.config.tombstone_grace_ms;
        config.transfer_bytes_per_sec = self.config.transfer_bytes_per_sec;
        config.rng_seed = self.rng.next_u64();
        let Some(sim) = self.nodes.get_mut(name) else {
            return Err(SimError::UnknownNode(name.clone()));
        };
        config.addr = sim.addr.clone();
        config.seeds = sim.seeds.clone();
        let members = sim.members.clone();
        let storage: Arc<dyn Storage> = Arc::new(sim.storage.clone());
        sim.node = Some(Node::new(config, members, storage, now)?);
        self.timeline.push((self.now, Change::Up(name.clone())));
        sim.incarnation += 1;
        sim.timer_at = None;
        self.drain(name);
        Ok(())
    }

    fn crash(&mut self, name: &NodeId, lose_disk: bool) {
        let now = self.now;
        let Some(sim) = self.nodes.get_mut(name) else {
            return;
        };
        if sim.node.take().is_none() {
            return;
        }
        self.timeline.push((now, Change::Down(name.clone())));
        sim.incarnation += 1;
        sim.timer_at = None;
        sim.gate.crash();
        sim.persist_at = None;
        let lost = sim.storage.simulate_crash();
        if lose_disk {
            sim.storage = MemoryStorage::with_sync_mode(SyncMode::Group);
            self.stats.disk_losses += 1;
        }
        self.stats.crashes += 1;
        self.stats.unpersisted_lost += lost as u64;
        self.history.fault(
            now,
            format!(
                "crash {name}{} ({lost} unpersisted writes dropped)",
                if lose_disk { " losing its disk" } else { "" }
            ),
        );
    }

    /// Feeds one input to a running node, then persists and drains it.
    pub(crate) fn input(&mut self, name: &NodeId, f: impl FnOnce(&mut Node, Now)) {
        let now = self.clock(name);
        let Some(node) = self.nodes.get_mut(name).and_then(|n| n.node.as_mut()) else {
            return;
        };
        f(node, now);
        self.drain(name);
    }

    /// Drains what the node produced: with persists in line, persists its writes and
    /// sends everything; with deferred persists, sends what may precede a persist and
    /// holds the rest for it (`sim/persist.rs`) — the durability contract of
    /// `core/commit_gate.rs`, as the real driver keeps it.
    fn drain(&mut self, name: &NodeId) {
        let now = self.now;
        let deferred = self.config.persist_delay_ms > 0;
        let Some(sim) = self.nodes.get_mut(name) else {
            return;
        };
        let incarnation = sim.incarnation;
        let Some(node) = sim.node.as_mut() else {
            return;
        };
        let left = node.has_left();
        let mut transmits = Vec::new();
        while let Some(t) = node.poll_transmit() {
            transmits.push(t);
        }
        let mut replies = Vec::new();
        while let Some(r) = node.poll_reply() {
            replies.push(r);
        }
        let mut datagrams = Vec::new();
        while let Some(d) = node.poll_datagram() {
            datagrams.push(d);
        }
        let timer = match node.poll_timeout().map(|d| d.max(now)) {
            Some(d) if sim.timer_at.is_none_or(|t| d < t) => {
                sim.timer_at = Some(d);
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = timer {
            let event = Event::Timer {
                node: name.clone(),
                incarnation,
            };
            self.push(d, event);
        }
        for (addr, data) in datagrams {
            members::send_datagram(self, name, &addr, data);
        }
        persist::hold(self, name, incarnation, transmits, replies);
        // In line, or a node that has left, which flushes as the driver does.
        if !deferred || left {
            persist::persist_and_release(self, name);
        }
        if left {
            members::retire(self, name);
        }
    }

    pub(crate) fn transmit(
        &mut self,
        from: &NodeId,
        incarnation: u64,
        to: NodeId,
        msg: PeerMessage,
    ) {
        let up = self.is_up(&to);
        match self.network.fate(from, &to, up, &mut self.rng) {
            Fate::Deliver(delays) => self.push_copies(&delays, || Event::Deliver {
                from: from.clone(),
                from_incarnation: incarnation,
                to: to.clone(),
                msg: msg.clone(),
            }),
            Fate::Lost => self.stats.lost += 1,
            Fate::Unreachable(after) => self.report_unreachable(from, incarnation, to, after),
        }
    }

    /// Queues one copy of an event per delay (two delays: the network duplicated it).
    pub(crate) fn push_copies(&mut self, delays: &[u64], event: impl Fn() -> Event) {
        self.stats.duplicated += delays.len().saturating_sub(1) as u64;
        for delay in delays {
            self.push(self.now + delay, event());
        }
    }

    fn report_unreachable(&mut self, at: &NodeId, incarnation: u64, dest: NodeId, after: u64) {
        self.stats.unreachable += 1;
        let event = Event::Unreachable {
            at: at.clone(),
            incarnation,
            dest,
        };
        self.push(self.now + after, event);
    }

    fn deliver(&mut self, from: NodeId, from_incarnation: u64, to: NodeId, msg: PeerMessage) {
        if !self.is_up(&to) || !self.network.connected(&from, &to) {
            let after = self.network.config.connect_timeout_ms;
            self.report_unreachable(&from, from_incarnation, to, after);
            return;
        }
        self.stats.delivered += 1;
        self.input(&to, |node, now| node.handle_message(now, from, msg));
    }

    fn fire_timer(&mut self, name: &NodeId, incarnation: u64, at: u64) {
        let Some(sim) = self.nodes.get_mut(name) else {
            return;
        };
        // Stale: an older incarnation's timer, or superseded by an earlier one.
        if sim.incarnation != incarnation || sim.timer_at != Some(at) {
            return;
        }
        sim.timer_at = None;
        self.input(name, |node, now| node.handle_timeout(now));
    }

    /// Adds a client that starts after a think pause; returns its index.
    pub fn add_client(&mut self, program: Box<dyn Program>) -> usize {
        client::add_client(self, program)
    }

    /// Clients start no new operation from now on.
    pub fn stop_clients(&mut self) {
        client::stop_clients(self)
    }

    /// True while some client waits for an answer.
    pub fn clients_busy(&self) -> bool {
        client::clients_busy(self)
    }

    /// True once every client has finished its program or been stopped, and none waits.
    pub fn clients_finished(&self) -> bool {
        client::clients_finished(self)
    }

    /// Workload operations that have ended, one way or another.
    pub fn completed_ops(&self) -> usize {
        client::completed_ops(self)
    }

    /// Sends a request outside the client programs (the settle phase's repair reads).
    pub fn submit(&mut self, node: NodeId, request: ClientRequest) -> u64 {
        client::submit(self, node, request)
    }

    /// True once `node` has handed everything over and left.
    pub fn has_left(&self, node: &NodeId) -> bool {
        members::has_left(self, node)
    }

    /// Partitions that running nodes hold but no longer own (transfers still to do).
    pub fn transfers_pending(&self) -> u64 {
        members::transfers_pending(self)
    }

    /// Recomputes the world's reference ring from a running, synced member (checkers
    /// and settling use it to find each key's primaries after the ring changed).
    pub fn refresh_ring(&mut self) {
        members::refresh_ring(self)
    }

    /// Every key some workload request wrote to.
    pub fn written_keys(&self) -> BTreeSet<Key> {
        settle::written_keys(self)
    }

    /// Hints held by running nodes.
    pub fn hints_pending(&self) -> u64 {
        settle::hints_pending(self)
    }

    /// The first `n` nodes of the key's preference list.
    pub fn primaries(&self, key: &Key, n: usize) -> Vec<NodeId> {
        settle::primaries(self, key, n)
    }

    /// Each primary's copy of `key`, read straight from its storage.
    pub fn replicas(&self, key: &Key, n: usize) -> Vec<ReplicaCopy> {
        settle::replicas(self, key, n)
    }

    /// Stops the clients, lets their last requests end, heals the network, restarts
    /// every node, drains hints and repairs every written key; returns the replicas.
    pub fn settle(&mut self) -> Settled {
        settle::settle(self)
    }
}
