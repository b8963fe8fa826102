//! One ringkv node as a sans-IO state machine.
//!
//! The driver (the real network in `net/`, a virtual one in `sim/`) feeds it inputs —
//! [`Node::handle_client`], [`Node::handle_message`], [`Node::handle_datagram`],
//! [`Node::handle_unreachable`], [`Node::handle_timeout`] — each with the current [`Now`],
//! and after every input drains its outputs: [`Node::poll_transmit`],
//! [`Node::poll_reply`], [`Node::poll_datagram`] and [`Node::poll_timeout`]. It never
//! reads a clock, opens a socket or draws unseeded randomness, so the same code runs in
//! production and, replayably, in the simulator.
//!
//! The node owns every subsystem and is the only place where they meet: each input is
//! routed to the subsystem that owns the state it concerns, with the node's shared
//! context (`cx::Cx`) and exactly the other subsystems' state it needs lent as
//! arguments. What one subsystem's event means for another (a member back up has hints
//! due; a member down fails the requests waiting on it; a finished transfer lets a
//! leaving node go) is decided here, in the order written below.
//!
//! Durability contract with the driver: writes go to [`Storage`] as inputs are handled,
//! and the driver persists them in groups. Replication, reads and forwards
//! ([`PeerMessage::may_precede_persist`]) may leave before the persist that covers the
//! batch that made them; acks, other messages and client replies leave only after it.
//! That is group commit, and it is why an ack never leaves before its write is durable.
//! A crash between a replication and its persist can leave replicas holding a write this
//! node lost; it then restarts under a fresh actor id, so it never issues those dots
//! again.

mod boot;
mod config;
pub(crate) mod cx;
mod reports;

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::core::membership::Membership;
use crate::core::membership::cluster::{Cluster, LeaveStart};
use crate::core::membership::gossip::{Gossip, GossipEvent, GossipId, MemberMeta, MemberPhase};
use crate::core::object::clock::{ActorId, Hlc};
use crate::core::object::{Object, Value, Write};
use crate::core::placement::ring::{NodeId, VNODES_DEFAULT};
use crate::core::repair::exchange::{AeStats, Exchange};
use crate::core::repair::reap::Reaper;
use crate::core::repair::transfer::{self, Transfer, TransferOutcome};
use crate::core::replica::Replica;
use crate::core::replica::handoff::Handoff;
use crate::core::request::{self, Data, Origin, Requests};
use crate::core::stats::{AeProgress, RequestWindows, Statistics, StatsError, StatsInfo};
use crate::core::timer::{Timer, TimerTable};
use crate::proto::{
    ClientReply, ClientRequest, Key, PeerMessage, QuorumOpts, RequestError, TransferInfo,
};
use crate::storage::{Rmw, Space, Storage};

#[cfg(feature = "sim")]
pub use config::{
    ANTI_ENTROPY_INTERVAL_MS_DEFAULT, INFLIGHT_MAX_DEFAULT, MEMBER_SYNC_INTERVAL_MS_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT,
};
pub use config::{
    META_ACTOR_KEY, META_CLEAN_STOP_KEY, META_MEMBERS_KEY, MemberSpec, NodeConfig, NodeError,
    NodeStats, Now,
};
pub(crate) use cx::Cx;
use cx::{Ids, Outbox, Shared};

/// The node state machine: every subsystem, owned.
#[derive(Debug)]
pub struct Node {
    shared: Shared,
    actor: ActorId,
    hlc: Hlc,
    cluster: Cluster,
    replica: Replica,
    requests: Requests,
    handoff: Handoff,
    exchange: Exchange,
    reaper: Reaper,
    transfer: Transfer,
    stats: Statistics,
}

/// The borrows `Requests` needs, built from the node's disjoint fields (a macro, not a
/// method, so that `self.shared` can stay lent as `Cx` at the same time).
macro_rules! lend_data {
    ($node:ident, $members:expr) => {
        Data {
            replica: &mut $node.replica,
            members: $members,
            hlc: &mut $node.hlc,
            actor: $node.actor,
            traffic: $node.stats.traffic_mut(),
        }
    };
}

impl Node {
    /// Opens a node over `storage`. The actor id is read from the data directory after a
    /// clean stop, or drawn from the seeded RNG and stored when the directory is new or
    /// the node crashed.
    pub fn new(
        config: NodeConfig,
        members: Vec<MemberSpec>,
        storage: Arc<dyn Storage>,
        now: Now,
    ) -> Result<Node, NodeError> {
        if !(1..=config.n).contains(&config.w) || !(1..=config.n).contains(&config.r) {
            return Err(NodeError::BadQuorumDefaults {
                n: config.n,
                w: config.w,
                r: config.r,
            });
        }
        let mut members = members;
        let own_addr = match members.iter().find(|m| m.name == config.name) {
            Some(m) => m.addr.clone(),
            None if !config.addr.is_empty() => {
                members.push(MemberSpec {
                    name: config.name.clone(),
                    addr: config.addr.clone(),
                    vnodes: VNODES_DEFAULT,
                });
                config.addr.clone()
            }
            None => return Err(NodeError::NotAMember(config.name.clone())),
        };
        let own_vnodes = members
            .iter()
            .find(|m| m.name == config.name)
            .map_or(VNODES_DEFAULT, |m| m.vnodes);
        let static_others = members.len() > 1;
        let mut view = Membership::new(
            config.name.clone(),
            members
                .into_iter()
                .map(|m| (m.name, m.addr, m.vnodes))
                .collect(),
            config.partitions,
            now.mono_ms,
            config.probe_period_ms,
        )?;
        let stored = boot::load_members(storage.as_ref())?;
        let stored_others = stored.iter().any(|m| m.name != config.name);
        let mut own_phase = MemberPhase::Normal;
        for meta in &stored {
            if meta.name == config.name {
                // A node that was leaving when it stopped goes on leaving; one that had
                // left and is started again joins afresh.
                if meta.phase == MemberPhase::Leaving {
                    own_phase = MemberPhase::Leaving;
                }
                view.merge_meta(
                    &MemberMeta {
                        addr: own_addr.clone(),
                        vnodes: own_vnodes,
                        ..meta.clone()
                    },
                    now.mono_ms,
                )?;
            } else {
                view.merge_meta(meta, now.mono_ms)?;
            }
        }
        // Our record's version is at least the wall clock, so a node that left (or lost
        // its disk) and comes back outranks what the cluster remembers of it.
        view.bump_own(own_phase, now.wall_ms)?;
        let cluster_size = view.len() as u32;
        let mut rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        let actor = boot::load_or_create_actor(storage.as_ref(), &mut rng)?;
        let mut replica = Replica::open(storage, config.hints_max, config.partitions)?;
        replica.set_tombstone_grace_ms(config.tombstone_grace_ms);
        replica.set_wall_ms(now.wall_ms);
        let stats = Statistics::new(config.stats_window_ms, config.partitions, now.mono_ms)
            .map_err(NodeError::Stats)?;
        let ids = Ids::starting_at((rand::RngCore::next_u64(&mut rng) >> 16) + 1);
        let gossip = Gossip::new(
            GossipId {
                name: config.name.clone(),
                addr: own_addr,
                vnodes: own_vnodes,
                generation: now.wall_ms,
            },
            cluster_size,
            rand::RngCore::next_u64(&mut rng),
            config.probe_period_ms,
        );
        let seeds = config.seeds.clone();
        let synced = static_others || stored_others || seeds.is_empty();
        let mut node = Node {
            shared: Shared {
                config,
                out: Outbox::default(),
                timers: TimerTable::new(),
                ids,
                rng,
            },
            actor,
            hlc: Hlc::new(),
            cluster: Cluster::new(view, gossip, synced, seeds),
            replica,
            requests: Requests::default(),
            handoff: Handoff::default(),
            exchange: Exchange::default(),
            reaper: Reaper::default(),
            transfer: Transfer::default(),
            stats,
        };
        // A node that starts is a node that comes back: compare everything it shares
        // with each member once its trees are built.
        let others: Vec<NodeId> = node
            .cluster
            .view()
            .members()
            .map(|m| m.name.clone())
            .filter(|name| name != node.name())
            .collect();
        for peer in &others {
            node.exchange.on_member_up(peer);
        }
        let mut cx = node.shared.lend(now);
        node.cluster
            .persist_members(&cx, node.replica.storage().as_ref());
        node.cluster.announce_all(&mut cx);
        let timers = &mut node.shared.timers;
        let config = &node.shared.config;
        timers.set(now.mono_ms, Timer::TreeRebuild);
        if config.anti_entropy_interval_ms > 0 {
            timers.set(
                now.mono_ms + config.anti_entropy_interval_ms,
                Timer::AntiEntropy,
            );
            timers.set(now.mono_ms + config.anti_entropy_interval_ms, Timer::Reap);
        }
        timers.set(now.mono_ms, Timer::MemberSync);
        timers.set(now.mono_ms, Timer::Transfer);
        timers.set(now.mono_ms + config.handoff_interval_ms, Timer::Handoff);
        Ok(node)
    }

    /// This node's id, from its configuration.
    pub fn name(&self) -> &NodeId {
        &self.shared.config.name
    }

    /// The actor id this node stamps its writes' dots with: kept across clean restarts,
    /// fresh after a crash or a lost data directory.
    pub fn actor(&self) -> ActorId {
        self.actor
    }

    /// Records a clean stop, for the driver to call just before its last persist: the
    /// next start then keeps this actor id. Nothing may be handled after it.
    pub fn mark_clean_stop(&mut self) -> Result<(), NodeError> {
        self.replica
            .storage()
            .update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Put(vec![1]))?;
        Ok(())
    }

    /// The settings the node was started with.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// Who is in the cluster, where they listen, and who is alive, as this node sees it.
    pub fn membership(&self) -> &Membership {
        self.cluster.view()
    }

    /// The storage engine under the replica.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.replica.storage()
    }

    /// The local replica: its storage, hints and tombstone stamps.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, for tests that seed data without going through requests.
    #[cfg(test)]
    pub(crate) fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Counters of every subsystem, for status output and tests.
    pub fn stats(&self) -> NodeStats {
        let cluster = self.cluster.counters();
        NodeStats {
            hints_delivered: self.handoff.delivered(),
            read_repairs: self.requests.read_repairs(),
            outbox_dropped: self.shared.out.dropped(),
            gossip_ups: cluster.gossip_ups,
            gossip_downs: cluster.gossip_downs,
            gossip_refused: cluster.gossip_refused,
            members_refused: cluster.members_refused,
            suspicions: cluster.suspicions,
        }
    }

    /// What anti-entropy has done on this node.
    pub fn ae_stats(&self) -> &AeStats {
        self.exchange.stats()
    }

    /// Tombstones this replica removed after every primary confirmed them.
    pub fn tombstones_reaped(&self) -> u64 {
        self.reaper.reaped()
    }

    /// Request counts of the keys this node coordinated (hot keys).
    pub fn traffic(&self) -> &RequestWindows {
        self.stats.traffic()
    }

    /// When this node last compared each partition with a peer.
    pub fn ae_progress(&self) -> &AeProgress {
        self.stats.progress()
    }

    /// Requests coordinated or forwarded, and hints being delivered, not yet finished.
    pub fn inflight(&self) -> usize {
        self.requests.len() + self.handoff.len()
    }

    /// True once this node has handed everything over and left; the driver stops it.
    pub fn has_left(&self) -> bool {
        self.cluster.has_left()
    }

    /// True when the node knows the cluster's member table (a node joining through a
    /// seed does not until its first sync).
    pub fn is_synced(&self) -> bool {
        self.cluster.is_synced()
    }

    /// Partition streaming as `ringkv status` shows it.
    pub fn transfer_info(&self) -> TransferInfo {
        self.transfer
            .info(&self.shared.config, &self.replica, self.cluster.view())
    }

    /// This node's statistics at `now`; rotates the request windows first.
    pub fn stats_info(&mut self, now: Now) -> Result<StatsInfo, StatsError> {
        self.stats.report(
            now,
            &self.shared.config,
            &mut self.replica,
            self.cluster.view(),
            self.exchange.stats(),
        )
    }

    /// A client request arrived; `req_id` is the driver's, echoed in `poll_reply`.
    pub fn handle_client(&mut self, now: Now, req_id: u64, request: ClientRequest) {
        self.replica.set_wall_ms(now.wall_ms);
        self.start_request(now, Origin::Client(req_id), request);
        self.check_invariants();
    }

    /// A peer message arrived from `from`.
    pub fn handle_message(&mut self, now: Now, from: NodeId, msg: PeerMessage) {
        self.replica.set_wall_ms(now.wall_ms);
        let mut cx = self.shared.lend(now);
        if self.cluster.heard_from(&cx, &from) {
            self.handoff.on_member_up(&mut cx, &mut self.replica, &from);
            self.exchange.on_member_up(&from);
        }
        self.stats.note_message(now, &self.replica, &msg);
        self.route(now, from, msg);
        self.check_invariants();
    }

    /// A gossip datagram arrived from the node whose certificate names it `from`.
    pub fn handle_datagram(&mut self, now: Now, from: NodeId, data: &[u8]) {
        self.replica.set_wall_ms(now.wall_ms);
        let mut cx = self.shared.lend(now);
        if self.cluster.handle_datagram(&mut cx, &from, data) {
            self.handoff.on_member_up(&mut cx, &mut self.replica, &from);
            self.exchange.on_member_up(&from);
        }
        self.drain_gossip(now);
    }

    /// The driver could not deliver to `node` (connect or stream failure), or lost its
    /// connection to it: it is suspected here at once, and whatever waits on it counts
    /// it missing.
    pub fn handle_unreachable(&mut self, now: Now, node: NodeId) {
        self.replica.set_wall_ms(now.wall_ms);
        self.cluster.suspect(&self.shared.lend(now), &node);
        self.on_unreachable(now, &node);
        self.check_invariants();
    }

    /// Time passed; fires every due timer (stale ones are no-ops).
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(timer) = self.shared.timers.pop_due_gossip(now.mono_ms) {
            let mut cx = self.shared.lend(now);
            self.cluster.on_gossip_timer(&mut cx, timer);
        }
        self.drain_gossip(now);
        self.replica.set_wall_ms(now.wall_ms);
        for timer in self.shared.timers.expire(now.mono_ms) {
            let mut cx = self.shared.lend(now);
            let members = self.cluster.view();
            match timer {
                Timer::Request(id)
                    if self.requests.owns(id) && !self.requests.is_deadline(id, now.mono_ms) =>
                {
                    let data = lend_data!(self, self.cluster.view());
                    self.requests.on_reask(&mut cx, data, id)
                }
                Timer::Request(id) if self.requests.owns(id) => {
                    // Whoever let the request time out is suspected before it fails
                    // over, so the failover (and the next requests) route around it.
                    for silent in self.requests.silent(cx.me(), id) {
                        self.cluster.suspect(&cx, &silent);
                    }
                    let data = lend_data!(self, self.cluster.view());
                    self.requests.on_timeout(&mut cx, data, id)
                }
                Timer::Request(id) => self.handoff.on_timeout(&mut cx, id),
                Timer::TransferBatch(id) => self.transfer.on_batch_timeout(&cx, id),
                Timer::ReapRound { partition, round } => {
                    self.reaper.on_round_timeout(partition, round)
                }
                Timer::Gossip(timer) => self.cluster.on_gossip_timer(&mut cx, timer),
                Timer::MemberSync => {
                    self.cluster.on_sync_tick(&mut cx);
                    self.drain_gossip(now);
                }
                Timer::Transfer => {
                    let ready = !self.cluster.has_left() && self.cluster.is_synced();
                    let outcome = self
                        .transfer
                        .on_tick(&mut cx, &mut self.replica, members, ready);
                    if outcome == TransferOutcome::HandedOver {
                        let storage = self.replica.storage().clone();
                        self.cluster.finish_leave(&mut cx, storage.as_ref());
                    }
                }
                Timer::Handoff => self.handoff.on_tick(&mut cx, &mut self.replica, members),
                Timer::TreeRebuild => self.exchange.on_rebuild_tick(&mut cx, &mut self.replica),
                Timer::AntiEntropy => self.exchange.on_tick(
                    &mut cx,
                    &self.replica,
                    members,
                    self.stats.progress_mut(),
                ),
                Timer::Reap => self.reaper.on_tick(&mut cx, &mut self.replica, members),
            }
        }
        self.check_invariants();
    }

    /// The next peer message to send, with its destination; `None` when the outbox is
    /// empty. Unless `PeerMessage::may_precede_persist`, it may only leave after the
    /// persist that covers the input that produced it.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, PeerMessage)> {
        self.shared.out.poll_transmit()
    }

    /// The next client reply, with the `req_id` given to `handle_client`; like acks, it
    /// waits for the persist.
    pub fn poll_reply(&mut self) -> Option<(u64, ClientReply)> {
        self.shared.out.poll_reply()
    }

    /// The next gossip datagram to send: (destination address, packet).
    pub fn poll_datagram(&mut self) -> Option<(String, Vec<u8>)> {
        self.cluster.poll_datagram()
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.shared.timers.next_deadline()
    }

    /// Routes a peer message to the subsystem that owns what it concerns.
    fn route(&mut self, now: Now, from: NodeId, msg: PeerMessage) {
        let mut cx = self.shared.lend(now);
        let members = self.cluster.view();
        match msg {
            PeerMessage::Forward { id, request } => {
                if self.requests.admit_forward(&from, id, &request) {
                    self.start_request(now, Origin::Peer { node: from, id }, request)
                }
            }
            PeerMessage::ForwardReply { id, reply } => {
                self.requests.on_forward_reply(&mut cx, &from, id, reply)
            }
            PeerMessage::Replicate {
                id,
                key,
                object,
                hint,
            } => self.serve_replicate(now, from, id, &key, &object, hint),
            PeerMessage::ReplicateAck { id, error } => {
                if self.requests.owns(id) {
                    self.requests
                        .on_replicate_ack(&mut cx, members, id, &from, error);
                } else {
                    self.handoff
                        .on_ack(&mut cx, &mut self.replica, members, id, &from, error);
                }
            }
            PeerMessage::Read { id, key, hint } => {
                let hint = hint.filter(|p| p != cx.me());
                let (object, error) = match self.replica.read(&key, hint.as_ref()) {
                    Ok(o) => (o, None),
                    Err(e) => (None, Some(e.to_string())),
                };
                cx.out
                    .send(from, PeerMessage::ReadReply { id, object, error });
            }
            PeerMessage::ReadReply { id, object, error } => {
                let result = match error {
                    Some(e) => Err(e),
                    None => Ok(object),
                };
                let data = lend_data!(self, members);
                self.requests.on_read_reply(&mut cx, data, id, from, result);
            }
            PeerMessage::Ping { nonce } => cx.out.send(from, PeerMessage::Pong { nonce }),
            PeerMessage::Pong { .. } => {}
            PeerMessage::Members {
                partitions,
                members,
            } => {
                let storage = self.replica.storage().clone();
                self.cluster.on_members_message(
                    &mut cx,
                    storage.as_ref(),
                    from,
                    partitions,
                    members,
                );
            }
            PeerMessage::Transfer { id, objects, .. } => {
                transfer::on_transfer(&mut cx, &mut self.replica, from, id, objects)
            }
            PeerMessage::TransferAck { id, error } => {
                let outcome = self
                    .transfer
                    .on_ack(&mut cx, &mut self.replica, &from, id, error);
                if let TransferOutcome::BatchDone {
                    partition,
                    keys_dropped,
                } = outcome
                {
                    if keys_dropped > 0 {
                        self.renew_actor();
                    }
                    let mut cx = self.shared.lend(now);
                    self.transfer.after_batch(&mut cx, &self.replica, partition);
                }
            }
            msg @ (PeerMessage::AeRoots { .. }
            | PeerMessage::AeBranches { .. }
            | PeerMessage::AeLeaves { .. }
            | PeerMessage::AeKeys { .. }
            | PeerMessage::AePull { .. }
            | PeerMessage::AeSketch { .. }
            | PeerMessage::AeBloom { .. }
            | PeerMessage::AeBloomReply { .. }
            | PeerMessage::AeBloomNext { .. }) => {
                self.exchange
                    .on_message(&mut cx, &self.replica, members, from, msg)
            }
            msg @ (PeerMessage::ReapCheck { .. }
            | PeerMessage::ReapConfirm { .. }
            | PeerMessage::Reap { .. }) => {
                self.reaper
                    .on_message(&mut cx, &mut self.replica, members, from, msg)
            }
        }
    }

    /// A replica's part of a write: merge the object (idempotent) and ack.
    fn serve_replicate(
        &mut self,
        now: Now,
        from: NodeId,
        id: u64,
        key: &Key,
        object: &Object,
        hint: Option<NodeId>,
    ) {
        if let Value::Lww(cell) = object.value() {
            // A peer's clock far in the future is refused; the data still merges.
            let _ = self.hlc.observe(cell.ts, now.wall_ms);
        }
        let cx = self.shared.lend(now);
        let hint = hint.filter(|p| p != cx.me());
        let error = self
            .replica
            .merge(key, object, hint.as_ref())
            .err()
            .map(|e| e.to_string());
        cx.out.send(from, PeerMessage::ReplicateAck { id, error });
    }

    /// A client's request, or one forwarded by a peer: operator requests are answered
    /// here, data requests go to the requests subsystem.
    fn start_request(&mut self, now: Now, origin: Origin, request: ClientRequest) {
        let (key, write, opts): (Key, Option<Write>, QuorumOpts) = match request {
            ClientRequest::Status => {
                let status = reports::status(
                    &self.shared.config,
                    now.mono_ms,
                    self.cluster.view(),
                    &self.replica,
                    self.transfer_info(),
                );
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, ClientReply::Status(status));
            }
            ClientRequest::Ring => {
                let ring = reports::ring_info(&self.shared.config, self.cluster.view());
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, ClientReply::Ring(ring));
            }
            ClientRequest::Topology => {
                let topology = reports::topology(&self.shared.config, self.cluster.view());
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, ClientReply::Topology(topology));
            }
            ClientRequest::Join { seed } => {
                let reply = match self.cluster.join_through(&mut self.shared.lend(now), seed) {
                    Ok(reply) => {
                        self.drain_gossip(now);
                        reply
                    }
                    Err(reply) => reply,
                };
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, reply);
            }
            ClientRequest::Leave => {
                let reply = self.start_leave(now);
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, reply);
            }
            ClientRequest::Stats => {
                let reply = match self.stats_info(now) {
                    Ok(info) => ClientReply::Stats(Box::new(info)),
                    Err(e) => ClientReply::Error(RequestError::Internal {
                        node: self.shared.config.name.clone(),
                        message: e.to_string(),
                    }),
                };
                let mut cx = self.shared.lend(now);
                return request::finish(&mut cx, origin, reply);
            }
            ClientRequest::Get { key, opts } => (key, None, opts),
            ClientRequest::Write { key, op, opts, id } => (key, Some(Write { op, id }), opts),
        };
        let mut cx = self.shared.lend(now);
        if !self.cluster.is_synced() || self.cluster.has_left() {
            let reason = if self.cluster.has_left() {
                "it has left the cluster; send requests to another node".to_string()
            } else {
                "it is still joining and has not received the member table from its seeds; retry on another node or in a moment".to_string()
            };
            let err = RequestError::NotReady {
                node: cx.me().clone(),
                reason,
            };
            return request::finish(&mut cx, origin, ClientReply::Error(err));
        }
        let data = lend_data!(self, self.cluster.view());
        let others = self.handoff.len();
        self.requests
            .start(&mut cx, data, origin, key, write, opts, others);
    }

    /// `ringkv leave`: see [`Cluster::start_leave`]; partitions stream from the next
    /// transfer tick, which is due at once.
    fn start_leave(&mut self, now: Now) -> ClientReply {
        let me = self.shared.config.name.clone();
        let storage = self.replica.storage().clone();
        let mut cx = self.shared.lend(now);
        match self.cluster.start_leave(&mut cx, storage.as_ref()) {
            LeaveStart::AlreadyLeaving => ClientReply::Changed(format!(
                "{me} is already leaving; {} partitions still to hand over",
                self.transfer_info().pending
            )),
            LeaveStart::Refused(reply) => reply,
            LeaveStart::Started => {
                let pending = self.transfer_info().pending;
                tracing::info!(node = %me, pending, "leaving: handing partitions over");
                ClientReply::Changed(format!(
                    "{me} is leaving: handing {pending} partitions to their new owners, then it stops; watch `ringkv status`"
                ))
            }
        }
    }

    /// Applies what gossip reported since the last call, one event at a time.
    fn drain_gossip(&mut self, now: Now) {
        while let Some(event) = self.cluster.poll_gossip_event() {
            let storage = self.replica.storage().clone();
            let mut cx = self.shared.lend(now);
            match event {
                GossipEvent::Up(id) => {
                    let Some(came_up) = self.cluster.on_gossip_up(&mut cx, storage.as_ref(), &id)
                    else {
                        continue;
                    };
                    if came_up {
                        self.handoff
                            .on_member_up(&mut cx, &mut self.replica, &id.name);
                        self.exchange.on_member_up(&id.name);
                    }
                    self.cluster.send_table(&mut cx, id.name);
                }
                GossipEvent::Down(id) => {
                    if self.cluster.on_gossip_down(&cx, &id) {
                        // SWIM's verdict can be wrong under loss, so requests waiting on
                        // the node keep waiting (and sloppy ones ask a stand-in now);
                        // only the transport failing counts the node out.
                        let data = lend_data!(self, self.cluster.view());
                        self.requests.on_declared_down(&mut cx, data, &id.name);
                        self.handoff.on_unreachable(&mut cx, &id.name);
                    }
                }
                GossipEvent::Meta(meta) => {
                    self.cluster.on_gossip_meta(&mut cx, storage.as_ref(), meta)
                }
            }
        }
    }

    /// `node` is down or cannot be reached: every request and delivery waiting on it
    /// counts it as missing.
    fn on_unreachable(&mut self, now: Now, node: &NodeId) {
        let mut cx = self.shared.lend(now);
        let data = lend_data!(self, self.cluster.view());
        self.requests.on_unreachable(&mut cx, data, node);
        self.handoff.on_unreachable(&mut cx, node);
    }

    /// Cross-subsystem invariants, checked after every input in debug builds (the
    /// simulator sweeps run them on every step): a request id belongs to one subsystem,
    /// and the node never holds more requests than its in-flight limit plus the hint
    /// deliveries it admits.
    fn check_invariants(&self) {
        debug_assert!(
            self.requests.ids().all(|id| !self.handoff.owns(id)),
            "a request id is both a coordinated request and a hint delivery"
        );
        debug_assert!(
            self.requests.len()
                <= self.shared.config.inflight_max
                    + crate::core::replica::handoff::HANDOFF_INFLIGHT_MAX,
            "more requests in flight than admitted"
        );
    }

    /// Takes a fresh actor id and stores it for restarts. A node that dropped keys it
    /// handed over no longer remembers its own dots and counter entries for them, and
    /// reusing them would make a later write look already seen.
    fn renew_actor(&mut self) {
        let actor = ActorId::random(&mut self.shared.rng);
        let stored = self
            .replica
            .storage()
            .update(Space::Meta, META_ACTOR_KEY, &mut |_| {
                Rmw::Put(actor.0.to_be_bytes().to_vec())
            });
        // Switch even if storing failed: reusing the old actor is the unsafe choice, and
        // a failed store fails the batch's persist, which stops the node anyway.
        self.actor = actor;
        if let Err(e) = stored {
            tracing::error!(node = %self.shared.config.name, error = %e, "cannot store a fresh actor id");
        }
    }
}
