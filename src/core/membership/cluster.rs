//! This node's part in the cluster: gossip glue, member-table sync, join and leave.
//!
//! foca decides who is alive; this module turns its events into the membership view
//! ([`super::Membership`]), keeps the member table (who owns partitions) the same on every
//! node, and runs the two operator actions that change ownership. Table sync is
//! push-pull over the reliable peer protocol: every `member_sync_interval_ms` a node sends
//! its table to one random live member, and a receiver that knows something newer
//! answers with its own, so every record reaches every node in O(log n) rounds even after
//! broadcasts stop. A node persists the table whenever it changes, so the ring survives
//! restarts.
//!
//! What a membership change means for the other subsystems (hints to push when a member
//! comes back, requests to fail when one goes down, a leave that waits for transfers) is
//! decided by the node, from what these methods return.

use std::collections::BTreeMap;

use crate::core::membership::Membership;
use crate::core::membership::gossip::{
    Gossip, GossipEvent, GossipId, GossipState, GossipTimer, MemberMeta, MemberPhase,
};
use crate::core::node::{Cx, META_MEMBERS_KEY};
use crate::core::placement::ring::{MEMBERS_MAX, NodeId};
use crate::core::timer::Timer;
use crate::proto::{ClientReply, PeerMessage, RequestError};
use crate::storage::{Rmw, Space, Storage};

/// The membership subsystem: the view, foca, and this node's joining and leaving.
#[derive(Debug)]
pub(crate) struct Cluster {
    view: Membership,
    gossip: Gossip,
    /// False while a node that joins through seeds has not received a member table.
    synced: bool,
    seeds: Vec<String>,
    /// Set once this node has handed everything over and left the cluster.
    left: bool,
    counters: ClusterCounters,
}

/// What the membership subsystem counted, for status output and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterCounters {
    /// Members gossip reported up / down (a false down under loss shows here).
    pub(crate) gossip_ups: u64,
    pub(crate) gossip_downs: u64,
    /// Gossip packets refused (undecodable, too big, or from an impostor).
    pub(crate) gossip_refused: u64,
    /// Member tables refused because the sender's partition count differs.
    pub(crate) members_refused: u64,
    /// Local suspicions raised by failed RPCs (renewals not counted).
    pub(crate) suspicions: u64,
}

/// How a `ringkv leave` request went.
#[derive(Debug)]
pub(crate) enum LeaveStart {
    /// This node was already leaving.
    AlreadyLeaving,
    /// Leaving is refused; the reply says why.
    Refused(ClientReply),
    /// This node left the ring and starts handing its partitions over.
    Started,
}

impl Cluster {
    pub(crate) fn new(
        view: Membership,
        gossip: Gossip,
        synced: bool,
        seeds: Vec<String>,
    ) -> Cluster {
        Cluster {
            view,
            gossip,
            synced,
            seeds,
            left: false,
            counters: ClusterCounters::default(),
        }
    }

    /// Who is in the cluster, where they listen, and who is alive.
    pub(crate) fn view(&self) -> &Membership {
        &self.view
    }

    pub(crate) fn counters(&self) -> ClusterCounters {
        self.counters
    }

    /// True once this node has handed everything over and left.
    pub(crate) fn has_left(&self) -> bool {
        self.left
    }

    /// True when the node knows the cluster's member table (a node joining through a
    /// seed does not until its first sync).
    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }

    /// The next gossip datagram to send: (destination address, packet).
    pub(crate) fn poll_datagram(&mut self) -> Option<(String, Vec<u8>)> {
        self.gossip.poll_datagram()
    }

    /// What gossip reported, one event at a time; the node applies each.
    pub(crate) fn poll_gossip_event(&mut self) -> Option<GossipEvent> {
        self.gossip.poll_event()
    }

    /// Fires one of foca's timers.
    pub(crate) fn on_gossip_timer(&mut self, cx: &mut Cx<'_>, timer: GossipTimer) {
        if let Err(e) = self.gossip.handle_timer(cx.now.mono_ms, cx.timers, timer) {
            tracing::debug!(node = %cx.me(), error = %e, "gossip timer");
        }
    }

    /// Any valid message from `from` is proof of life; true when it was down or
    /// suspected here before.
    pub(crate) fn heard_from(&mut self, cx: &Cx<'_>, from: &NodeId) -> bool {
        self.view.heard_from(from, cx.now.mono_ms)
    }

    /// An RPC to `node` failed (the driver could not deliver, its connection was lost,
    /// or it let a request time out): suspect it here at once. foca is not told: its
    /// own probes confirm (down) or refute (any packet from `node` clears this).
    pub(crate) fn suspect(&mut self, cx: &Cx<'_>, node: &NodeId) {
        if self.view.suspect_here(node, cx.now.mono_ms) {
            self.counters.suspicions += 1;
            tracing::debug!(node = %cx.config.name, suspect = %node, "suspecting a peer after a failed RPC");
        }
    }

    /// A gossip datagram from the node whose certificate names it `from`; true when it
    /// brought `from` back up.
    pub(crate) fn handle_datagram(&mut self, cx: &mut Cx<'_>, from: &NodeId, data: &[u8]) -> bool {
        match self
            .gossip
            .handle_data(cx.now.mono_ms, cx.timers, from, data)
        {
            // A valid packet is proof of life even before foca says so.
            Ok(()) => self.view.heard_from(from, cx.now.mono_ms),
            Err(e) => {
                self.counters.gossip_refused += 1;
                tracing::debug!(node = %cx.me(), %from, error = %e, "gossip packet refused");
                false
            }
        }
    }

    /// Announces to every known member and seed, so probing starts at once.
    pub(crate) fn announce_all(&mut self, cx: &mut Cx<'_>) {
        let me = cx.config.name.clone();
        let mut addrs: Vec<String> = self
            .view
            .members()
            .filter(|m| m.name != me)
            .map(|m| m.addr.clone())
            .collect();
        if !self.synced {
            addrs.extend(self.seeds.iter().cloned());
        }
        for addr in addrs {
            if let Err(e) = self.gossip.announce(cx.now.mono_ms, cx.timers, &addr) {
                tracing::debug!(node = %me, %addr, error = %e, "gossip announce");
            }
        }
    }

    /// Writes the member table to the `Meta` space; the driver persists it with the batch.
    pub(crate) fn persist_members(&self, cx: &Cx<'_>, storage: &dyn Storage) {
        let bytes = match rmp_serde::to_vec(&self.view.table()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(node = %cx.config.name, error = %e, "cannot encode the member table");
                return;
            }
        };
        let result = storage.update(Space::Meta, META_MEMBERS_KEY, &mut |_| {
            Rmw::Put(bytes.clone())
        });
        if let Err(e) = result {
            tracing::error!(node = %cx.config.name, error = %e, "cannot store the member table; the ring may be stale after a restart");
        }
    }

    /// Merges member records from gossip or a table sync.
    pub(crate) fn merge_members(
        &mut self,
        cx: &mut Cx<'_>,
        storage: &dyn Storage,
        metas: &[MemberMeta],
    ) {
        let me = cx.config.name.clone();
        let mut changed = false;
        for meta in metas.iter().take(MEMBERS_MAX) {
            if meta.name == me {
                let own = self.view.get(&me).map_or(0, |m| m.version);
                if meta.version > own {
                    // The cluster remembers a newer record of us (we lost our disk, or
                    // left and came back): outrank it with our current phase.
                    let phase = self.view.own_phase();
                    if let Ok(record) = self.view.bump_own(phase, meta.version + 1) {
                        self.publish_own(cx, record);
                        changed = true;
                    }
                }
                continue;
            }
            match self.view.merge_meta(meta, cx.now.mono_ms) {
                Ok(true) => changed = true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %me, member = %meta.name, error = %e, "member record refused")
                }
            }
        }
        if changed {
            self.on_members_changed(cx, storage);
        }
    }

    /// A `Members` message: merge, and answer with our table when the sender lacks
    /// something we know.
    pub(crate) fn on_members_message(
        &mut self,
        cx: &mut Cx<'_>,
        storage: &dyn Storage,
        from: NodeId,
        partitions: u32,
        members: Vec<MemberMeta>,
    ) {
        if partitions != cx.config.partitions {
            self.counters.members_refused += 1;
            tracing::error!(
                node = %cx.config.name, %from, theirs = partitions, ours = cx.config.partitions,
                "member table from a cluster with another partition count refused; a node can only join a cluster created with the same --partitions"
            );
            return;
        }
        if members.len() > MEMBERS_MAX {
            self.counters.members_refused += 1;
            tracing::warn!(node = %cx.config.name, %from, len = members.len(), max = MEMBERS_MAX, "member table over the limit refused");
            return;
        }
        let theirs: BTreeMap<&NodeId, u64> = members.iter().map(|m| (&m.name, m.version)).collect();
        let sender_behind = self
            .view
            .table()
            .iter()
            .any(|m| theirs.get(&m.name).is_none_or(|v| *v < m.version));
        self.merge_members(cx, storage, &members);
        if !self.synced && members.iter().any(|m| m.name != cx.config.name) {
            self.synced = true;
            tracing::info!(node = %cx.config.name, via = %from, members = self.view.len(), "joined the cluster");
        }
        if sender_behind {
            self.send_table(cx, from);
        }
    }

    /// Periodic: push our table to a random live member, announce to members foca has
    /// not met (down when we started, or just learned from a table), and to the seeds
    /// until we are in.
    pub(crate) fn on_sync_tick(&mut self, cx: &mut Cx<'_>) {
        let interval = cx.config.member_sync_interval_ms.max(1);
        let jitter = rand::RngCore::next_u64(cx.rng) % (interval / 4 + 1);
        cx.timers
            .set(cx.now.mono_ms + interval + jitter, Timer::MemberSync);
        let me = cx.config.name.clone();
        let others: Vec<(NodeId, String)> = self
            .view
            .members()
            .filter(|m| m.name != me)
            .map(|m| (m.name.clone(), m.addr.clone()))
            .collect();
        let live: Vec<&NodeId> = others
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.view.is_up(n))
            .collect();
        if !live.is_empty() {
            let pick = (rand::RngCore::next_u64(cx.rng) % live.len() as u64) as usize;
            let to = live[pick].clone();
            self.send_table(cx, to);
        }
        for (name, addr) in &others {
            match self.gossip.state_of(name) {
                None => {
                    let _ = self.gossip.announce(cx.now.mono_ms, cx.timers, addr);
                }
                Some(GossipState::Suspect) => {
                    self.view.mark_suspect(name, true);
                }
                Some(GossipState::Alive) => {
                    self.view.mark_suspect(name, false);
                }
                Some(GossipState::Down) => {}
            }
        }
        if !self.synced {
            for seed in self.seeds.clone() {
                let _ = self.gossip.announce(cx.now.mono_ms, cx.timers, &seed);
            }
        }
        self.gossip.set_cluster_size(self.view.len() as u32);
    }

    /// `ringkv join SEED`: announce to the member at `seed`; its table arrives in reply.
    /// Err when the announce failed; on Ok the node applies gossip's events before it
    /// answers.
    pub(crate) fn join_through(
        &mut self,
        cx: &mut Cx<'_>,
        seed: String,
    ) -> Result<ClientReply, ClientReply> {
        if let Err(e) = self.gossip.announce(cx.now.mono_ms, cx.timers, &seed) {
            return Err(ClientReply::Error(RequestError::BadRequest(format!(
                "cannot announce to {seed}: {e}"
            ))));
        }
        if !self.seeds.contains(&seed) {
            self.seeds.push(seed.clone());
        }
        Ok(ClientReply::Changed(format!(
            "{} is joining through {seed}; `ringkv status` shows it when every member knows it, and partitions stream to it",
            cx.config.name
        )))
    }

    /// `ringkv leave`: leave the ring now (others stop routing to us); the node then
    /// hands our partitions to their new owners, and we are gone once nothing is left to
    /// hand over.
    pub(crate) fn start_leave(&mut self, cx: &mut Cx<'_>, storage: &dyn Storage) -> LeaveStart {
        let me = cx.config.name.clone();
        match self.view.own_phase() {
            MemberPhase::Normal => {}
            MemberPhase::Leaving | MemberPhase::Left => return LeaveStart::AlreadyLeaving,
        }
        let remaining = self
            .view
            .ring()
            .members()
            .iter()
            .filter(|m| m.name != me)
            .count();
        if remaining < cx.config.n as usize {
            return LeaveStart::Refused(ClientReply::Error(RequestError::BadRequest(format!(
                "{me} cannot leave: {remaining} members would remain for N={}, so keys would lose replicas; add a node first",
                cx.config.n
            ))));
        }
        let record = match self.view.bump_own(MemberPhase::Leaving, cx.now.wall_ms) {
            Ok(r) => r,
            Err(e) => {
                return LeaveStart::Refused(ClientReply::Error(RequestError::BadRequest(format!(
                    "{me} cannot leave: {e}"
                ))));
            }
        };
        self.publish_own(cx, record);
        self.on_members_changed(cx, storage);
        cx.timers.set(cx.now.mono_ms, Timer::Transfer);
        LeaveStart::Started
    }

    /// Everything is handed over: mark ourselves left, tell everyone, stop gossiping.
    pub(crate) fn finish_leave(&mut self, cx: &mut Cx<'_>, storage: &dyn Storage) {
        let record = match self.view.bump_own(MemberPhase::Left, cx.now.wall_ms) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(node = %cx.config.name, error = %e, "cannot record our departure");
                return;
            }
        };
        self.publish_own(cx, record);
        self.persist_members(cx, storage);
        if let Err(e) = self.gossip.leave(cx.now.mono_ms, cx.timers) {
            tracing::debug!(node = %cx.config.name, error = %e, "gossip leave");
        }
        self.left = true;
        tracing::info!(node = %cx.config.name, "left the cluster");
    }

    /// Spreads our own new record: a gossip broadcast plus a table push to every member.
    fn publish_own(&mut self, cx: &mut Cx<'_>, record: MemberMeta) {
        if let Err(e) = self.gossip.broadcast_meta(&record) {
            tracing::debug!(node = %cx.config.name, error = %e, "gossip broadcast");
        }
        let me = cx.config.name.clone();
        let others: Vec<NodeId> = self
            .view
            .members()
            .filter(|m| m.name != me)
            .map(|m| m.name.clone())
            .collect();
        for node in others {
            self.send_table(cx, node);
        }
    }

    /// A gossip event, other than up and down, that the node hands back.
    pub(crate) fn on_gossip_meta(
        &mut self,
        cx: &mut Cx<'_>,
        storage: &dyn Storage,
        meta: MemberMeta,
    ) {
        self.merge_members(cx, storage, std::slice::from_ref(&meta));
    }

    /// foca saw `id` up. None when the event is about us or an older incarnation;
    /// otherwise whether the member came back up (its hints are due). The node then
    /// sends it our table ([`Cluster::send_table`]).
    pub(crate) fn on_gossip_up(
        &mut self,
        cx: &mut Cx<'_>,
        storage: &dyn Storage,
        id: &GossipId,
    ) -> Option<bool> {
        if id.name == cx.config.name || id.name.as_str().is_empty() {
            return None;
        }
        if !self.view.observe_generation(&id.name, id.generation) {
            return None;
        }
        self.counters.gossip_ups += 1;
        if self.view.get(&id.name).is_none() {
            // Met through gossip before its record arrived: it announced itself, so it
            // is joining; its own record (with its version) follows in a sync.
            let meta = MemberMeta {
                name: id.name.clone(),
                addr: id.addr.clone(),
                vnodes: id.vnodes,
                version: 0,
                phase: MemberPhase::Normal,
            };
            self.merge_members(cx, storage, &[meta]);
        }
        Some(self.view.heard_from(&id.name, cx.now.mono_ms))
    }

    /// foca declared `id` down; true when that changed our view (requests waiting on it
    /// must fail over).
    pub(crate) fn on_gossip_down(&mut self, cx: &Cx<'_>, id: &GossipId) -> bool {
        if id.name == cx.config.name || !self.view.observe_generation(&id.name, id.generation) {
            return false;
        }
        self.counters.gossip_downs += 1;
        if self.view.mark_down(&id.name) {
            tracing::info!(node = %cx.config.name, down = %id.name, "gossip marked a member down");
            return true;
        }
        false
    }

    fn on_members_changed(&mut self, cx: &mut Cx<'_>, storage: &dyn Storage) {
        self.persist_members(cx, storage);
        self.gossip.set_cluster_size(self.view.len() as u32);
        // A new ring may move partitions away from us: look at once.
        cx.timers.set(cx.now.mono_ms, Timer::Transfer);
    }

    pub(crate) fn send_table(&self, cx: &mut Cx<'_>, to: NodeId) {
        let msg = PeerMessage::Members {
            partitions: cx.config.partitions,
            members: self.view.table(),
        };
        cx.out.send(to, msg);
    }
}
