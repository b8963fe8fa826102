//! Membership changes on a node: gossip glue, member-table sync, join and leave.
//!
//! foca decides who is alive; this module turns its events into the membership view,
//! keeps the member table (who owns partitions) the same on every node, and runs the two
//! operator actions that change ownership. Table sync is push-pull over the reliable peer
//! protocol: every `member_sync_interval_ms` a node sends its table to one random live
//! member, and a receiver that knows something newer answers with its own, so every
//! record reaches every node in O(log n) rounds even after broadcasts stop. A node
//! persists the table whenever it changes, so the ring survives restarts.

use std::collections::BTreeMap;

use crate::core::membership::gossip::{
    GossipEvent, GossipId, GossipState, MemberMeta, MemberPhase,
};
use crate::core::node::{META_MEMBERS_KEY, Node, Now};
use crate::core::placement::ring::{MEMBERS_MAX, NodeId};
use crate::core::timer::Timer;
use crate::proto::{ClientReply, PeerMessage, RequestError};
use crate::storage::{Rmw, Space};

impl Node {
    /// A gossip datagram arrived from the node whose certificate names it `from`.
    pub fn handle_datagram(&mut self, now: Now, from: NodeId, data: &[u8]) {
        self.replica.set_wall_ms(now.wall_ms);
        match self.gossip.handle_data(now.mono_ms, &from, data) {
            Ok(()) => {
                // A valid packet is proof of life even before foca says so.
                if self.membership.heard_from(&from, now.mono_ms) {
                    self.on_member_up(now, &from);
                }
            }
            Err(e) => {
                self.stats.gossip_refused += 1;
                tracing::debug!(node = %self.config.name, %from, error = %e, "gossip packet refused");
            }
        }
        self.drain_gossip(now);
    }

    /// The next gossip datagram to send: (destination address, packet).
    pub fn poll_datagram(&mut self) -> Option<(String, Vec<u8>)> {
        self.gossip.poll_datagram()
    }

    /// True once this node has handed everything over and left; the driver stops it.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// True when the node knows the cluster's member table (a node joining through a
    /// seed does not until its first sync).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Applies what gossip reported since the last call.
    pub(crate) fn drain_gossip(&mut self, now: Now) {
        while let Some(event) = self.gossip.poll_event() {
            match event {
                GossipEvent::Up(id) => self.on_gossip_up(now, id),
                GossipEvent::Down(id) => self.on_gossip_down(now, id),
                GossipEvent::Meta(meta) => self.merge_members(now, std::slice::from_ref(&meta)),
            }
        }
    }

    /// Announces to every known member and seed, so probing starts at once.
    pub(crate) fn announce_all(&mut self, now: Now) {
        let me = self.config.name.clone();
        let mut addrs: Vec<String> = self
            .membership
            .members()
            .filter(|m| m.name != me)
            .map(|m| m.addr.clone())
            .collect();
        if !self.synced {
            addrs.extend(self.seeds.iter().cloned());
        }
        for addr in addrs {
            if let Err(e) = self.gossip.announce(now.mono_ms, &addr) {
                tracing::debug!(node = %me, %addr, error = %e, "gossip announce");
            }
        }
    }

    /// Writes the member table to the `Meta` space; the driver persists it with the batch.
    pub(crate) fn persist_members(&mut self) {
        let bytes = match rmp_serde::to_vec(&self.membership.table()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(node = %self.config.name, error = %e, "cannot encode the member table");
                return;
            }
        };
        let result = self
            .replica
            .storage()
            .update(Space::Meta, META_MEMBERS_KEY, &mut |_| {
                Rmw::Put(bytes.clone())
            });
        if let Err(e) = result {
            tracing::error!(node = %self.config.name, error = %e, "cannot store the member table; the ring may be stale after a restart");
        }
    }

    /// Merges member records from gossip or a table sync.
    pub(crate) fn merge_members(&mut self, now: Now, metas: &[MemberMeta]) {
        let me = self.config.name.clone();
        let mut changed = false;
        for meta in metas.iter().take(MEMBERS_MAX) {
            if meta.name == me {
                let own = self.membership.get(&me).map_or(0, |m| m.version);
                if meta.version > own {
                    // The cluster remembers a newer record of us (we lost our disk, or
                    // left and came back): outrank it with our current phase.
                    let phase = self.membership.own_phase();
                    if let Ok(record) = self.membership.bump_own(phase, meta.version + 1) {
                        self.publish_own(record);
                        changed = true;
                    }
                }
                continue;
            }
            match self.membership.merge_meta(meta, now.mono_ms) {
                Ok(true) => changed = true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %me, member = %meta.name, error = %e, "member record refused")
                }
            }
        }
        if changed {
            self.on_members_changed(now);
        }
    }

    /// A `Members` message: merge, and answer with our table when the sender lacks
    /// something we know.
    pub(crate) fn on_members_message(
        &mut self,
        now: Now,
        from: NodeId,
        partitions: u32,
        members: Vec<MemberMeta>,
    ) {
        if partitions != self.config.partitions {
            self.stats.members_refused += 1;
            tracing::error!(
                node = %self.config.name, %from, theirs = partitions, ours = self.config.partitions,
                "member table from a cluster with another partition count refused; a node can only join a cluster created with the same --partitions"
            );
            return;
        }
        if members.len() > MEMBERS_MAX {
            self.stats.members_refused += 1;
            tracing::warn!(node = %self.config.name, %from, len = members.len(), max = MEMBERS_MAX, "member table over the limit refused");
            return;
        }
        let theirs: BTreeMap<&NodeId, u64> = members.iter().map(|m| (&m.name, m.version)).collect();
        let sender_behind = self
            .membership
            .table()
            .iter()
            .any(|m| theirs.get(&m.name).is_none_or(|v| *v < m.version));
        self.merge_members(now, &members);
        if !self.synced && members.iter().any(|m| m.name != self.config.name) {
            self.synced = true;
            tracing::info!(node = %self.config.name, via = %from, members = self.membership.len(), "joined the cluster");
        }
        if sender_behind {
            self.send_table(from);
        }
    }

    /// Periodic: push our table to a random live member, announce to members foca has
    /// not met (down when we started, or just learned from a table), and to the seeds
    /// until we are in.
    pub(crate) fn on_member_sync_tick(&mut self, now: Now) {
        let interval = self.config.member_sync_interval_ms.max(1);
        let jitter = rand::RngCore::next_u64(&mut self.rng) % (interval / 4 + 1);
        self.timers
            .set(now.mono_ms + interval + jitter, Timer::MemberSync);
        let me = self.config.name.clone();
        let others: Vec<(NodeId, String)> = self
            .membership
            .members()
            .filter(|m| m.name != me)
            .map(|m| (m.name.clone(), m.addr.clone()))
            .collect();
        let live: Vec<&NodeId> = others
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.membership.is_up(n))
            .collect();
        if !live.is_empty() {
            let pick = (rand::RngCore::next_u64(&mut self.rng) % live.len() as u64) as usize;
            let to = live[pick].clone();
            self.send_table(to);
        }
        for (name, addr) in &others {
            match self.gossip.state_of(name) {
                None => {
                    let _ = self.gossip.announce(now.mono_ms, addr);
                }
                Some(GossipState::Suspect) => {
                    self.membership.mark_suspect(name, true);
                }
                Some(GossipState::Alive) => {
                    self.membership.mark_suspect(name, false);
                }
                Some(GossipState::Down) => {}
            }
        }
        if !self.synced {
            for seed in self.seeds.clone() {
                let _ = self.gossip.announce(now.mono_ms, &seed);
            }
        }
        self.gossip.set_cluster_size(self.membership.len() as u32);
        self.drain_gossip(now);
    }

    /// `ringkv join SEED`: announce to the member at `seed`; its table arrives in reply.
    pub(crate) fn join_through(&mut self, now: Now, seed: String) -> ClientReply {
        if let Err(e) = self.gossip.announce(now.mono_ms, &seed) {
            return ClientReply::Error(RequestError::BadRequest(format!(
                "cannot announce to {seed}: {e}"
            )));
        }
        if !self.seeds.contains(&seed) {
            self.seeds.push(seed.clone());
        }
        self.drain_gossip(now);
        ClientReply::Changed(format!(
            "{} is joining through {seed}; `ringkv status` shows it when every member knows it, and partitions stream to it",
            self.config.name
        ))
    }

    /// `ringkv leave`: leave the ring now (others stop routing to us) and start handing
    /// our partitions to their new owners; we are gone once nothing is left to hand over.
    pub(crate) fn start_leave(&mut self, now: Now) -> ClientReply {
        let me = self.config.name.clone();
        match self.membership.own_phase() {
            MemberPhase::Normal => {}
            MemberPhase::Leaving | MemberPhase::Left => {
                return ClientReply::Changed(format!(
                    "{me} is already leaving; {} partitions still to hand over",
                    self.transfer_info().pending
                ));
            }
        }
        let remaining = self
            .membership
            .ring()
            .members()
            .iter()
            .filter(|m| m.name != me)
            .count();
        if remaining < self.config.n as usize {
            return ClientReply::Error(RequestError::BadRequest(format!(
                "{me} cannot leave: {remaining} members would remain for N={}, so keys would lose replicas; add a node first",
                self.config.n
            )));
        }
        let record = match self.membership.bump_own(MemberPhase::Leaving, now.wall_ms) {
            Ok(r) => r,
            Err(e) => {
                return ClientReply::Error(RequestError::BadRequest(format!(
                    "{me} cannot leave: {e}"
                )));
            }
        };
        self.publish_own(record);
        self.on_members_changed(now);
        self.timers.set(now.mono_ms, Timer::Transfer);
        let pending = self.transfer_info().pending;
        tracing::info!(node = %me, pending, "leaving: handing partitions over");
        ClientReply::Changed(format!(
            "{me} is leaving: handing {pending} partitions to their new owners, then it stops; watch `ringkv status`"
        ))
    }

    /// Everything is handed over: mark ourselves left, tell everyone, stop gossiping.
    pub(crate) fn finish_leave(&mut self, now: Now) {
        let record = match self.membership.bump_own(MemberPhase::Left, now.wall_ms) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(node = %self.config.name, error = %e, "cannot record our departure");
                return;
            }
        };
        self.publish_own(record);
        self.persist_members();
        if let Err(e) = self.gossip.leave(now.mono_ms) {
            tracing::debug!(node = %self.config.name, error = %e, "gossip leave");
        }
        self.left = true;
        tracing::info!(node = %self.config.name, "left the cluster");
    }

    /// Spreads our own new record: a gossip broadcast plus a table push to every member.
    fn publish_own(&mut self, record: MemberMeta) {
        if let Err(e) = self.gossip.broadcast_meta(&record) {
            tracing::debug!(node = %self.config.name, error = %e, "gossip broadcast");
        }
        let me = self.config.name.clone();
        let others: Vec<NodeId> = self
            .membership
            .members()
            .filter(|m| m.name != me)
            .map(|m| m.name.clone())
            .collect();
        for node in others {
            self.send_table(node);
        }
    }

    fn on_gossip_up(&mut self, now: Now, id: GossipId) {
        if id.name == self.config.name || id.name.as_str().is_empty() {
            return;
        }
        if !self.membership.observe_generation(&id.name, id.generation) {
            return;
        }
        self.stats.gossip_ups += 1;
        if self.membership.get(&id.name).is_none() {
            // Met through gossip before its record arrived: it announced itself, so it
            // is joining; its own record (with its version) follows in a sync.
            let meta = MemberMeta {
                name: id.name.clone(),
                addr: id.addr.clone(),
                vnodes: id.vnodes,
                version: 0,
                phase: MemberPhase::Normal,
            };
            self.merge_members(now, &[meta]);
        }
        if self.membership.heard_from(&id.name, now.mono_ms) {
            self.on_member_up(now, &id.name);
        }
        self.send_table(id.name);
    }

    fn on_gossip_down(&mut self, now: Now, id: GossipId) {
        if id.name == self.config.name
            || !self.membership.observe_generation(&id.name, id.generation)
        {
            return;
        }
        self.stats.gossip_downs += 1;
        if self.membership.mark_down(&id.name) {
            tracing::info!(node = %self.config.name, down = %id.name, "gossip marked a member down");
            self.on_unreachable(now, &id.name);
        }
    }

    fn on_members_changed(&mut self, now: Now) {
        self.persist_members();
        self.gossip.set_cluster_size(self.membership.len() as u32);
        // A new ring may move partitions away from us: look at once.
        self.timers.set(now.mono_ms, Timer::Transfer);
    }

    fn send_table(&mut self, to: NodeId) {
        let msg = PeerMessage::Members {
            partitions: self.config.partitions,
            members: self.membership.table(),
        };
        self.send(to, msg);
    }
}
