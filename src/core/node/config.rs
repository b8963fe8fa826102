//! A node's settings, its clocks at an input, and the errors of starting one.

use thiserror::Error;

use crate::core::membership::gossip::PROBE_PERIOD_MS_DEFAULT;
use crate::core::object::Limits;
use crate::core::placement::ring::{NodeId, PARTITIONS_DEFAULT, RingError, VNODES_DEFAULT};
use crate::core::repair::merkle::AePath;
use crate::core::repair::reap::TOMBSTONE_GRACE_MS_DEFAULT;
use crate::core::repair::transfer::TRANSFER_BYTES_PER_SEC_DEFAULT;
use crate::core::replica::ReplicaError;
use crate::core::replica::handoff::HANDOFF_INTERVAL_MS_DEFAULT;
use crate::core::replica::hints::HINTS_MAX_DEFAULT;
use crate::core::stats::STATS_WINDOW_MS_DEFAULT;
use crate::core::stats::StatsError;
use crate::storage::StorageError;

/// Key of the actor id in the `Meta` space.
pub const META_ACTOR_KEY: &[u8] = b"actor_id";
/// Key of the clean-stop marker in the `Meta` space: stored by the last persist of a
/// clean stop (`Node::mark_clean_stop`) and removed at start, so its absence at start
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
    /// The member's node id, as in its certificate.
    pub name: NodeId,
    /// The address it listens on, as `host:port`; the driver checks that it resolves before
    /// starting.
    pub addr: String,
    /// Virtual nodes it places on the ring, 1 ..= `VNODES_MAX`; `VNODES_DEFAULT` unless
    /// set.
    pub vnodes: u32,
}

/// A node's settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id; it must match the name in its certificate.
    pub name: NodeId,
    /// Number of partitions of the key space: a power of two up to 65536, the same on every
    /// member (a member table with another count is refused). Default 1024.
    pub partitions: u32,
    /// Default N, W and R for requests that do not say.
    pub n: u8,
    /// Default W for writes, 1 ..= `n` (checked at start). Default 2.
    pub w: u8,
    /// Default R for reads, 1 ..= `n` (checked at start). Default 2.
    pub r: u8,
    /// How long a coordinator waits for W acks or R replies when the request does not say,
    /// in milliseconds. Default 2000.
    pub request_timeout_ms: u64,
    /// Sibling counts at which a write's reply warns and past which a write is refused.
    pub limits: Limits,
    /// Most hints this node holds for down primaries; once full, it cannot stand in for
    /// them until hints drain. Default 100000.
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
    /// Period at which held hints are offered to their primaries, in milliseconds. Default
    /// 1000.
    pub handoff_interval_ms: u64,
    /// Period of anti-entropy ticks; 0 turns anti-entropy off.
    pub anti_entropy_interval_ms: u64,
    /// How anti-entropy finds differences (Merkle descent, Bloom filters, or chosen per
    /// partition from HLL estimates).
    pub ae_path: AePath,
    /// Most requests this node coordinates or forwards at once; more are refused as
    /// `Overloaded`. Default 16384.
    pub inflight_max: usize,
    /// Length of one hot-key request-count window (`core::stats`).
    pub stats_window_ms: u64,
    /// How long every primary must have held a tombstone before it is reaped; hints
    /// expire after half of it (see `core/repair/reap.rs`).
    pub tombstone_grace_ms: u64,
    /// Seeds this node's RNG (ping nonces, and the actor id of a fresh data directory).
    pub rng_seed: u64,
}

/// Errors starting a node. No node exists after any of them; only [`NodeError::Storage`]
/// may come after the data directory was written (a fresh actor id stored, or the
/// clean-stop marker removed), which a retry tolerates.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The configured or stored members do not form a valid ring; nothing was written.
    #[error("the member list is not a valid ring: {0}")]
    Ring(#[from] RingError),
    /// The node is in no member list and has no address of its own; nothing was written.
    #[error(
        "node {0} is not in its own member list and has no address to announce; add it with --peer {0}=ADDR"
    )]
    NotAMember(NodeId),
    /// The member table stored by an earlier run does not decode; nothing was written.
    #[error("the stored member table is corrupt ({0}); the data directory is damaged")]
    BadMembers(#[source] rmp_serde::decode::Error),
    /// The storage engine failed while the node read or wrote its metadata.
    #[error("cannot open the node's storage: {0}")]
    Storage(#[from] StorageError),
    /// The replica could not load its hint counts; nothing was written.
    #[error("cannot open the node's replica state: {0}")]
    Replica(#[from] ReplicaError),
    /// The stored actor id has the wrong length; nothing was written.
    #[error("the stored actor id is corrupt ({0} bytes); the data directory is damaged")]
    BadActor(usize),
    /// The default W or R lies outside 1..=N; checked before anything is read.
    #[error("invalid node configuration: default w={w} and r={r} must be between 1 and n={n}")]
    BadQuorumDefaults {
        /// The default replica count.
        n: u8,
        /// The default write quorum.
        w: u8,
        /// The default read quorum.
        r: u8,
    },
    /// The statistics settings are invalid (a zero window); nothing was written.
    #[error("invalid node configuration: {0}")]
    Stats(#[source] StatsError),
}

/// Counters for status output and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Hints handed to their primary and dropped here after its ack, since start.
    pub hints_delivered: u64,
    /// Replicas a read found stale and sent the merged object to, since start.
    pub read_repairs: u64,
    /// Peer messages dropped because the outbox was full (over a million queued), since
    /// start.
    pub outbox_dropped: u64,
    /// Members gossip reported up / down (a false down under loss shows here).
    pub gossip_ups: u64,
    /// Members gossip reported down since start.
    pub gossip_downs: u64,
    /// Gossip packets refused (undecodable, too big, or from an impostor).
    pub gossip_refused: u64,
    /// Member tables refused because the sender's partition count differs.
    pub members_refused: u64,
    /// Peers suspected here after a failed RPC (a send, a lost connection, a timeout).
    pub suspicions: u64,
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
    /// A member with the default vnode count.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> MemberSpec {
        MemberSpec {
            name: NodeId::new(name),
            addr: addr.into(),
            vnodes: VNODES_DEFAULT,
        }
    }
}
