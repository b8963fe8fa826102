//! The figures the core keeps, copied into the recorder on the core loop's sampling
//! timer: counters as absolute values (the core's count since start is the truth), gauges
//! as they stand. Reading them is cheap (no scans; `transfer_info` walks the ring once),
//! and it happens in the task that owns the `Node`, between inputs.

use crate::core::membership::Liveness;
use crate::core::membership::gossip::MemberPhase;
use crate::core::node::Node;
use crate::storage::Storage;

use super::NodeMetrics;
use super::catalog::{
    AE_BYTES_TOTAL, AE_EXCHANGES_TOTAL, AE_KEYS_REPAIRED_TOTAL, AE_MISMATCHES_TOTAL,
    HINTS_HANDED_OFF_TOTAL, HINTS_QUEUED, MEMBERS, READ_REPAIRS_TOTAL, REQUESTS_INFLIGHT,
    STORAGE_BYTES, SUSPICIONS_TOTAL, TRANSFER_BYTES_TOTAL, TRANSFER_KEYS_TOTAL,
    TRANSFER_PARTITIONS_PENDING,
};

/// Members by state, as [`MEMBERS`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Up (this node always is).
    pub up: u64,
    /// Up by gossip but suspected here, or suspected by gossip.
    pub suspect: u64,
    /// Declared down by gossip.
    pub down: u64,
}

/// Copies the core's counters and gauges, and the storage engine's size, into `metrics`.
pub fn sample(metrics: &NodeMetrics, node: &Node, storage: &dyn Storage, now_ms: u64) {
    let stats = node.stats();
    metrics
        .counter(READ_REPAIRS_TOTAL, &[])
        .absolute(stats.read_repairs);
    metrics
        .counter(HINTS_HANDED_OFF_TOTAL, &[])
        .absolute(stats.hints_delivered);
    metrics
        .counter(SUSPICIONS_TOTAL, &[])
        .absolute(stats.suspicions);
    metrics
        .gauge(HINTS_QUEUED, &[])
        .set(node.replica().hints().total() as f64);
    metrics
        .gauge(REQUESTS_INFLIGHT, &[])
        .set(node.inflight() as f64);

    let ae = node.ae_stats();
    metrics
        .counter(AE_EXCHANGES_TOTAL, &[])
        .absolute(ae.exchanges);
    metrics
        .counter(AE_MISMATCHES_TOTAL, &[])
        .absolute(ae.mismatches);
    metrics
        .counter(AE_KEYS_REPAIRED_TOTAL, &[])
        .absolute(ae.keys_sent);
    metrics.counter(AE_BYTES_TOTAL, &[]).absolute(ae.bytes_sent);

    let transfer = node.transfer_info();
    metrics
        .counter(TRANSFER_BYTES_TOTAL, &[])
        .absolute(transfer.bytes_sent);
    metrics
        .counter(TRANSFER_KEYS_TOTAL, &[])
        .absolute(transfer.keys_sent);
    metrics
        .gauge(TRANSFER_PARTITIONS_PENDING, &[])
        .set(f64::from(transfer.pending));

    let members = member_counts(node, now_ms);
    metrics
        .gauge(MEMBERS, &[("state", "up")])
        .set(members.up as f64);
    metrics
        .gauge(MEMBERS, &[("state", "suspect")])
        .set(members.suspect as f64);
    metrics
        .gauge(MEMBERS, &[("state", "down")])
        .set(members.down as f64);

    if let Some(bytes) = storage.disk_bytes() {
        metrics.gauge(STORAGE_BYTES, &[]).set(bytes as f64);
    }
}

/// Members that have not left, by state as `ringkv status` shows it: this node is up, a
/// member up by gossip but suspected here after a failed RPC is a suspect.
pub fn member_counts(node: &Node, now_ms: u64) -> MemberCounts {
    let view = node.membership();
    let mut counts = MemberCounts::default();
    for m in view.members() {
        if m.phase == MemberPhase::Left {
            continue;
        }
        let state = if m.name == *node.name() {
            Liveness::Up
        } else if m.state == Liveness::Up && view.is_suspected_here(&m.name, now_ms) {
            Liveness::Suspect
        } else {
            m.state
        };
        match state {
            Liveness::Up => counts.up += 1,
            Liveness::Suspect => counts.suspect += 1,
            Liveness::Down => counts.down += 1,
        }
    }
    counts
}
