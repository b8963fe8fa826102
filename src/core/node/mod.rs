//! One ringkv node as a sans-IO state machine.
//!
//! The driver (real network in `net/`, virtual one in `sim/`) feeds it inputs —
//! `handle_client`, `handle_message`, `handle_unreachable`, `handle_timeout` — each with
//! the current [`Now`], and after every input drains its outputs: `poll_transmit`,
//! `poll_reply` and `poll_timeout`. It never reads a clock, opens a socket or draws
//! unseeded randomness, so the same code runs in production and, replayably, in the
//! simulator.
//!
//! Durability contract with the driver: writes go to [`Storage`] as inputs are handled;
//! the driver calls `Storage::persist` after a batch of inputs and before it sends any
//! output. That is group commit, and it is why an ack never leaves before its write is
//! durable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::core::membership::Membership;
use crate::core::membership::gossip::{
    Gossip, GossipId, MemberMeta, MemberPhase, PROBE_PERIOD_MS_DEFAULT,
};
use crate::core::object::Limits;
use crate::core::object::clock::{ActorId, Hlc};
use crate::core::placement::ring::{NodeId, PARTITIONS_DEFAULT, RingError, VNODES_DEFAULT};
use crate::core::repair::exchange::AeStats;
use crate::core::repair::merkle::AePath;
use crate::core::repair::reap::{Reaper, TOMBSTONE_GRACE_MS_DEFAULT};
use crate::core::repair::transfer::{TRANSFER_BYTES_PER_SEC_DEFAULT, TransferState};
use crate::core::replica::hints::HINTS_MAX_DEFAULT;
use crate::core::replica::{Replica, ReplicaError};
use crate::core::request::Pending;
use crate::core::stats::{AeProgress, RequestWindows, STATS_WINDOW_MS_DEFAULT};
use crate::core::timer::{Timer, TimerTable};
use crate::proto::{ClientReply, ClientRequest, PeerMessage};
use crate::storage::{Rmw, Space, Storage, StorageError};

/// Key of the actor id in the `Meta` space.
pub const META_ACTOR_KEY: &[u8] = b"actor_id";
/// Key of the clean-stop marker in the `Meta` space: stored by the last persist of a
/// clean stop ([`Node::mark_clean_stop`]) and removed at start, so its absence at start
/// means the node crashed (or failed to persist) and takes a fresh actor id.
pub const META_CLEAN_STOP_KEY: &[u8] = b"clean_stop";
/// Most requests one node coordinates or forwards at once.
pub const INFLIGHT_MAX_DEFAULT: usize = 16_384;
/// Default time a coordinator waits for W acks or R replies.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// Key of the member table in the `Meta` space (the ring survives restarts).
pub const META_MEMBERS_KEY: &[u8] = b"members";
/// Default period of anti-entropy ticks (0 turns anti-entropy off).
pub const ANTI_ENTROPY_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default period of member-table syncs.
pub const MEMBER_SYNC_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default period of hinted-handoff rounds.
pub const HANDOFF_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Most hints in flight to primaries at once.
pub const HANDOFF_INFLIGHT_MAX: usize = 64;
/// Forwarded requests remembered to recognise a duplicate delivery.
pub const FORWARDS_SEEN_MAX: usize = 65_536;
/// Most outputs queued between two drains; a drain happens after every input, so
/// only a bug could reach it, and then messages are dropped (retries and repair cover).
pub const OUTBOX_MAX: usize = 1 << 20;

/// The driver's clocks at the moment of an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds: timers and deadlines.
    pub mono_ms: u64,
    /// This node's wall-clock milliseconds: the HLC for LWW.
    pub wall_ms: u64,
}

/// A member as configured: name, address and vnode count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: NodeId,
    pub addr: String,
    pub vnodes: u32,
}

/// A node's settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: NodeId,
    pub partitions: u32,
    /// Default N, W and R for requests that do not say.
    pub n: u8,
    pub w: u8,
    pub r: u8,
    pub request_timeout_ms: u64,
    pub limits: Limits,
    pub hints_max: u64,
    /// This node's address as peers should dial it (gossip identity); taken from the
    /// member list when the node is in it.
    pub addr: String,
    /// Addresses of members to join through (gossip announce) when this node knows no
    /// other member yet.
    pub seeds: Vec<String>,
    /// SWIM protocol period: one probe per period.
    pub probe_period_ms: u64,
    /// Period of member-table syncs with one random member.
    pub member_sync_interval_ms: u64,
    /// Partition streaming budget when the ring changes.
    pub transfer_bytes_per_sec: u64,
    pub handoff_interval_ms: u64,
    /// Period of anti-entropy ticks; 0 turns anti-entropy off.
    pub anti_entropy_interval_ms: u64,
    /// How anti-entropy finds differences (Merkle descent, Bloom filters, or chosen per
    /// partition from HLL estimates).
    pub ae_path: AePath,
    pub inflight_max: usize,
    /// Length of one hot-key request-count window (`core::stats`).
    pub stats_window_ms: u64,
    /// How long every primary must have held a tombstone before it is reaped; hints
    /// expire after half of it (see `core/reap.rs`).
    pub tombstone_grace_ms: u64,
    /// Seeds this node's RNG (ping nonces, and the actor id of a fresh data directory).
    pub rng_seed: u64,
}

/// Errors starting a node.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("the member list is not a valid ring: {0}")]
    Ring(#[from] RingError),
    #[error(
        "node {0} is not in its own member list and has no address to announce; add it with --peer {0}=ADDR"
    )]
    NotAMember(NodeId),
    #[error("the stored member table is corrupt ({0}); the data directory is damaged")]
    BadMembers(String),
    #[error("cannot open the node's storage: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot open the node's replica state: {0}")]
    Replica(#[from] ReplicaError),
    #[error("the stored actor id is corrupt ({0} bytes); the data directory is damaged")]
    BadActor(usize),
    #[error("invalid node configuration: {0}")]
    Config(String),
}

/// The node state machine.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) actor: ActorId,
    pub(crate) hlc: Hlc,
    pub(crate) membership: Membership,
    pub(crate) replica: Replica,
    pub(crate) timers: TimerTable,
    pub(crate) pending: BTreeMap<u64, Pending>,
    pub(crate) next_id: u64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) transmits: VecDeque<(NodeId, PeerMessage)>,
    pub(crate) replies: VecDeque<(u64, ClientReply)>,
    /// Hints currently being handed off: (primary, storage key of the hint).
    pub(crate) handoff_inflight: BTreeSet<(NodeId, crate::proto::Key)>,
    /// (forwarder, its request id) of recent `Forward`s, oldest first in the queue.
    forwards_seen: BTreeSet<(NodeId, u64)>,
    forwards_order: VecDeque<(NodeId, u64)>,
    pub(crate) stats: NodeStats,
    pub(crate) ae: AeStats,
    /// Next partition anti-entropy looks at.
    pub(crate) ae_cursor: u32,
    pub(crate) gossip: Gossip,
    /// False while a node that joins through seeds has not received a member table.
    pub(crate) synced: bool,
    pub(crate) seeds: Vec<String>,
    /// Set once this node has handed everything over and left the cluster.
    pub(crate) left: bool,
    pub(crate) transfer: TransferState,
    /// Request counts of the keys this node coordinated, for hot keys.
    pub(crate) traffic: RequestWindows,
    /// When each partition was last compared by anti-entropy.
    pub(crate) ae_progress: AeProgress,
    /// Tombstone reaping rounds this node runs as a partition's first primary.
    pub(crate) reaper: Reaper,
}

/// Counters for status output and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub hints_delivered: u64,
    pub read_repairs: u64,
    pub outbox_dropped: u64,
    /// Members gossip reported up / down (a false down under loss shows here).
    pub gossip_ups: u64,
    pub gossip_downs: u64,
    /// Gossip packets refused (undecodable, too big, or from an impostor).
    pub gossip_refused: u64,
    /// Member tables refused because the sender's partition count differs.
    pub members_refused: u64,
}

impl NodeConfig {
    /// Defaults for a node called `name`: N/W/R 3/2/2, Q=1024.
    pub fn new(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: NodeId::new(name),
            partitions: PARTITIONS_DEFAULT,
            n: 3,
            w: 2,
            r: 2,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            limits: Limits::default(),
            hints_max: HINTS_MAX_DEFAULT,
            addr: String::new(),
            seeds: Vec::new(),
            probe_period_ms: PROBE_PERIOD_MS_DEFAULT,
            member_sync_interval_ms: MEMBER_SYNC_INTERVAL_MS_DEFAULT,
            transfer_bytes_per_sec: TRANSFER_BYTES_PER_SEC_DEFAULT,
            handoff_interval_ms: HANDOFF_INTERVAL_MS_DEFAULT,
            anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
            ae_path: AePath::Auto,
            inflight_max: INFLIGHT_MAX_DEFAULT,
            stats_window_ms: STATS_WINDOW_MS_DEFAULT,
            tombstone_grace_ms: TOMBSTONE_GRACE_MS_DEFAULT,
            rng_seed: 0,
        }
    }
}

impl MemberSpec {
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> MemberSpec {
        MemberSpec {
            name: NodeId::new(name),
            addr: addr.into(),
            vnodes: VNODES_DEFAULT,
        }
    }
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
            return Err(NodeError::Config(format!(
                "default w={} and r={} must be between 1 and n={}",
                config.w, config.r, config.n
            )));
        }
        let mut members = members;
        let own_addr = match members.iter().find(|m| m.name == config.name) {
            Some(m) => m.addr.clone(),
            None if !config.addr.is_empty() => {
                members.push(MemberSpec {
                    name: config.name.clone(),
                    addr: config.addr.clone(),
                    vnodes: crate::core::placement::ring::VNODES_DEFAULT,
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
        let mut membership = Membership::new(
            config.name.clone(),
            members
                .into_iter()
                .map(|m| (m.name, m.addr, m.vnodes))
                .collect(),
            config.partitions,
            now.mono_ms,
        )?;
        let stored = load_members(storage.as_ref())?;
        let stored_others = stored.iter().any(|m| m.name != config.name);
        let mut own_phase = MemberPhase::Normal;
        for meta in &stored {
            if meta.name == config.name {
                // A node that was leaving when it stopped goes on leaving; one that had
                // left and is started again joins afresh.
                if meta.phase == MemberPhase::Leaving {
                    own_phase = MemberPhase::Leaving;
                }
                membership.merge_meta(
                    &MemberMeta {
                        addr: own_addr.clone(),
                        vnodes: own_vnodes,
                        ..meta.clone()
                    },
                    now.mono_ms,
                )?;
            } else {
                membership.merge_meta(meta, now.mono_ms)?;
            }
        }
        // Our record's version is at least the wall clock, so a node that left (or lost
        // its disk) and comes back outranks what the cluster remembers of it.
        membership.bump_own(own_phase, now.wall_ms)?;
        let cluster_size = membership.len() as u32;
        let mut rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        let actor = load_or_create_actor(storage.as_ref(), &mut rng)?;
        let mut replica = Replica::open(storage, config.hints_max, config.partitions)?;
        replica.set_tombstone_grace_ms(config.tombstone_grace_ms);
        replica.set_wall_ms(now.wall_ms);
        let traffic = RequestWindows::new(config.stats_window_ms, now.mono_ms)
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let ae_progress = AeProgress::new(config.partitions);
        // Request ids must not repeat across restarts: peers remember forwarded ids to
        // drop duplicates, and a late reply to the previous incarnation must not match a
        // new request. A random start in a 2^48 range makes a collision negligible and
        // leaves room to count up without overflow.
        let next_id = (rand::RngCore::next_u64(&mut rng) >> 16) + 1;
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
            config,
            actor,
            hlc: Hlc::new(),
            membership,
            replica,
            timers: TimerTable::new(),
            pending: BTreeMap::new(),
            next_id,
            rng,
            transmits: VecDeque::new(),
            replies: VecDeque::new(),
            handoff_inflight: BTreeSet::new(),
            forwards_seen: BTreeSet::new(),
            forwards_order: VecDeque::new(),
            stats: NodeStats::default(),
            ae: AeStats::default(),
            ae_cursor: 0,
            gossip,
            synced,
            seeds,
            left: false,
            transfer: TransferState::default(),
            traffic,
            ae_progress,
            reaper: Reaper::default(),
        };
        node.persist_members();
        node.announce_all(now);
        node.timers.set(now.mono_ms, Timer::TreeRebuild);
        if node.config.anti_entropy_interval_ms > 0 {
            node.timers.set(
                now.mono_ms + node.config.anti_entropy_interval_ms,
                Timer::AntiEntropy,
            );
            node.timers.set(
                now.mono_ms + node.config.anti_entropy_interval_ms,
                Timer::Reap,
            );
        }
        node.timers.set(now.mono_ms, Timer::MemberSync);
        node.timers.set(now.mono_ms, Timer::Transfer);
        node.timers.set(
            now.mono_ms + node.config.handoff_interval_ms,
            Timer::Handoff,
        );
        Ok(node)
    }

    pub fn name(&self) -> &NodeId {
        &self.config.name
    }

    pub fn actor(&self) -> ActorId {
        self.actor
    }

    /// Records a clean stop, for the driver to call just before its last persist: the
    /// next start then keeps this actor id (see `load_or_create_actor`). Nothing may be
    /// handled after it.
    pub fn mark_clean_stop(&mut self) -> Result<(), NodeError> {
        self.replica
            .storage()
            .update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Put(vec![1]))?;
        Ok(())
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn membership_mut(&mut self) -> &mut Membership {
        &mut self.membership
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.replica.storage()
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Request counts of the keys this node coordinated (hot keys).
    pub fn traffic(&self) -> &RequestWindows {
        &self.traffic
    }

    /// When this node last compared each partition with a peer.
    pub fn ae_progress(&self) -> &AeProgress {
        &self.ae_progress
    }

    /// Requests coordinated or forwarded and not yet finished.
    pub fn inflight(&self) -> usize {
        self.pending.len()
    }

    /// A client request arrived; `req_id` is the driver's, echoed in `poll_reply`.
    pub fn handle_client(&mut self, now: Now, req_id: u64, request: ClientRequest) {
        self.replica.set_wall_ms(now.wall_ms);
        self.start_request(now, crate::core::request::Origin::Client(req_id), request);
    }

    /// A peer message arrived from `from`.
    pub fn handle_message(&mut self, now: Now, from: NodeId, msg: PeerMessage) {
        self.replica.set_wall_ms(now.wall_ms);
        if self.membership.heard_from(&from, now.mono_ms) {
            self.on_member_up(now, &from);
        }
        self.note_ae_message(now, &msg);
        self.on_peer_message(now, from, msg);
    }

    /// The driver could not deliver to `node` (connect or stream failure).
    pub fn handle_unreachable(&mut self, now: Now, node: NodeId) {
        self.replica.set_wall_ms(now.wall_ms);
        self.membership.mark_down(&node);
        self.on_unreachable(now, &node);
    }

    /// Time passed; fires every due timer (stale ones are no-ops).
    pub fn handle_timeout(&mut self, now: Now) {
        if let Err(e) = self.gossip.handle_due(now.mono_ms) {
            tracing::debug!(node = %self.config.name, error = %e, "gossip timer");
        }
        self.drain_gossip(now);
        self.replica.set_wall_ms(now.wall_ms);
        for timer in self.timers.expire(now.mono_ms) {
            match timer {
                Timer::Request(id) => self.on_request_timeout(now, id),
                Timer::MemberSync => self.on_member_sync_tick(now),
                Timer::Transfer => self.on_transfer_tick(now),
                Timer::Handoff => self.on_handoff_tick(now),
                Timer::TreeRebuild => self.on_rebuild_tick(now),
                Timer::AntiEntropy => self.on_anti_entropy_tick(now),
                Timer::Reap => self.on_reap_tick(now),
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(NodeId, PeerMessage)> {
        self.transmits.pop_front()
    }

    pub fn poll_reply(&mut self) -> Option<(u64, ClientReply)> {
        self.replies.pop_front()
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.timers.next_deadline(), self.gossip.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMessage) {
        if self.transmits.len() >= OUTBOX_MAX {
            self.stats.outbox_dropped += 1;
            return;
        }
        self.transmits.push_back((to, msg));
    }

    pub(crate) fn reply(&mut self, req_id: u64, reply: ClientReply) {
        self.replies.push_back((req_id, reply));
    }

    /// Records a forwarded request; false when the same one was delivered before. A
    /// forward is an operation, not a state, so running it twice would apply a counter
    /// increment or a set add twice.
    pub(crate) fn first_forward(&mut self, from: &NodeId, id: u64) -> bool {
        if !self.forwards_seen.insert((from.clone(), id)) {
            return false;
        }
        self.forwards_order.push_back((from.clone(), id));
        if self.forwards_order.len() > FORWARDS_SEEN_MAX
            && let Some(oldest) = self.forwards_order.pop_front()
        {
            self.forwards_seen.remove(&oldest);
        }
        true
    }

    pub(crate) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A member came back: push its hints now rather than at the next tick.
    pub(crate) fn on_member_up(&mut self, now: Now, node: &NodeId) {
        if self.replica.hints().for_primary(node) > 0 {
            self.push_hints(now, node);
        }
    }

    fn on_handoff_tick(&mut self, now: Now) {
        let departed: Vec<NodeId> = self
            .replica
            .hints()
            .primaries()
            .filter(|p| {
                self.membership
                    .get(p)
                    .is_none_or(|m| m.phase == MemberPhase::Left)
            })
            .cloned()
            .collect();
        for primary in departed {
            self.absorb_hints_of(&primary);
        }
        let primaries: Vec<NodeId> = self
            .replica
            .hints()
            .primaries()
            .filter(|p| self.membership.is_up(p))
            .cloned()
            .collect();
        for primary in primaries {
            self.push_hints(now, &primary);
        }
        self.timers.set(
            now.mono_ms + self.config.handoff_interval_ms,
            Timer::Handoff,
        );
    }
}

/// The member table stored by an earlier run (empty for a new data directory).
fn load_members(storage: &dyn Storage) -> Result<Vec<MemberMeta>, NodeError> {
    match storage.get(Space::Meta, META_MEMBERS_KEY)? {
        Some(bytes) => {
            rmp_serde::from_slice(&bytes).map_err(|e| NodeError::BadMembers(e.to_string()))
        }
        None => Ok(Vec::new()),
    }
}

/// The node's actor id: the stored one after a clean stop, a fresh one after a crash or
/// on a new data directory.
///
/// Why a crash renews it: the driver sends `Replicate` messages before the persist that
/// covers them (`net/core_loop.rs`), so dots and counter entries of the old actor may
/// live on other replicas while this disk lost them; under the same actor the node would
/// issue them again for other values, and replicas would take the new write for one they
/// already hold. A fresh actor never reuses them. Clocks then grow by one actor per
/// unclean restart, not per restart.
fn load_or_create_actor(storage: &dyn Storage, rng: &mut ChaCha8Rng) -> Result<ActorId, NodeError> {
    let clean = storage.get(Space::Meta, META_CLEAN_STOP_KEY)?.is_some();
    if let Some(bytes) = storage.get(Space::Meta, META_ACTOR_KEY)? {
        let raw: [u8; 8] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| NodeError::BadActor(bytes.len()))?;
        if clean {
            // The marker must not outlive this run: a crash later is not a clean stop.
            storage.update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Delete)?;
            storage.persist()?;
            return Ok(ActorId(u64::from_be_bytes(raw)));
        }
    }
    let actor = ActorId::random(rng);
    storage.update(Space::Meta, META_ACTOR_KEY, &mut |_| {
        Rmw::Put(actor.0.to_be_bytes().to_vec())
    })?;
    storage.update(Space::Meta, META_CLEAN_STOP_KEY, &mut |_| Rmw::Delete)?;
    storage.persist()?;
    Ok(actor)
}
