//! Partition streaming: moving data to its owners when the ring changes.
//!
//! Ownership is a pure function of the member table, so after a join or a leave every
//! node can tell on its own which partitions it holds but no longer owns: those whose
//! Merkle root is non-zero (it holds keys there) while it is not among their N primaries.
//! It streams each such partition to the partition's current primaries in bounded
//! batches, rate-limited by `transfer_bytes_per_sec`, and deletes a batch's keys only
//! after *every* primary has merged and persisted it — and only keys whose version is
//! unchanged since they were read. Nothing is lost if a transfer stops half-way: the
//! state that drives it is the data itself, so after a crash the sweep resumes where the
//! remaining keys are. The same sweep hands over the data-space copies a stand-in
//! coordinator kept, and a leaving node's whole store.
//!
//! A node that dropped keys takes a fresh actor id before it coordinates again: it no
//! longer remembers its own dots and counter entries for those keys, and reusing them
//! would make a later write look already seen (the bug the simulator found for
//! stand-ins). A fresh actor costs one more entry in the clocks it writes.

use std::collections::BTreeSet;

use crate::core::membership::Membership;
use crate::core::membership::gossip::MemberPhase;
use crate::core::node::{Cx, NodeConfig};
use crate::core::object::Object;
use crate::core::placement::ring::NodeId;
use crate::core::replica::Replica;
use crate::core::timer::{Timer, TimerId};
use crate::proto::{Key, PeerMessage, TransferInfo};

/// Default streaming budget per node.
pub const TRANSFER_BYTES_PER_SEC_DEFAULT: u64 = 16 << 20;
/// Period of the transfer sweep.
pub const TRANSFER_INTERVAL_MS: u64 = 100;
/// Most keys in one transfer batch.
pub const TRANSFER_BATCH_KEYS_MAX: usize = 512;
/// Most object bytes in one transfer batch (well under the 16 MiB frame limit).
pub const TRANSFER_BATCH_BYTES_MAX: usize = 1 << 20;
/// How long a batch waits for every owner's ack before it is retried.
pub const TRANSFER_ACK_TIMEOUT_MS: u64 = 10_000;

/// The sweep's state; everything else is derived from the data.
#[derive(Debug, Default)]
pub(crate) struct Transfer {
    inflight: Option<Batch>,
    /// No new batch before this time (the rate limit).
    next_at_ms: u64,
    /// Where the next search for a partition to hand over starts.
    cursor: u32,
    done: u64,
    keys_sent: u64,
    bytes_sent: u64,
}

/// One batch waiting for its owners' acks.
#[derive(Debug)]
struct Batch {
    id: u64,
    partition: u32,
    entries: Vec<(Key, u64)>,
    waiting: BTreeSet<NodeId>,
    /// When the batch is given up if some owner has not acked.
    deadline: TimerId,
}

/// What the node must do after a transfer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferOutcome {
    /// Nothing beyond what the call did.
    Continue,
    /// A leaving node has handed everything over: it may mark itself left.
    HandedOver,
    /// Every owner acked the batch of `partition`, and `keys_dropped` of its keys were
    /// dropped. With any dropped the node must take a fresh actor id before it
    /// coordinates again (see the module doc); either way it then calls
    /// [`Transfer::after_batch`].
    BatchDone { partition: u32, keys_dropped: u64 },
}

impl Transfer {
    /// Partition streaming as `ringkv status` shows it.
    pub(crate) fn info(
        &self,
        config: &NodeConfig,
        replica: &Replica,
        members: &Membership,
    ) -> TransferInfo {
        TransferInfo {
            pending: partitions_to_hand_over(config, replica, members).len() as u32,
            done: self.done,
            keys_sent: self.keys_sent,
            bytes_sent: self.bytes_sent,
        }
    }

    /// Periodic: sends the next batch, or reports that a leaving node is done. `ready`
    /// is false while the node has left or has not joined yet.
    pub(crate) fn on_tick(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        members: &Membership,
        ready: bool,
    ) -> TransferOutcome {
        let now = cx.now;
        cx.timers
            .set(now.mono_ms + TRANSFER_INTERVAL_MS, Timer::Transfer);
        if !ready || !replica.trees().is_ready() {
            return TransferOutcome::Continue;
        }
        if self.inflight.is_some() {
            return TransferOutcome::Continue;
        }
        if now.mono_ms < self.next_at_ms {
            return TransferOutcome::Continue;
        }
        let pending = partitions_to_hand_over(cx.config, replica, members);
        if pending.is_empty() {
            if members.own_phase() == MemberPhase::Leaving && replica.hints().total() == 0 {
                return TransferOutcome::HandedOver;
            }
            return TransferOutcome::Continue;
        }
        // Resume after the last partition looked at, so one stuck partition (an owner
        // down) does not starve the others.
        let start = pending.iter().position(|&p| p >= self.cursor).unwrap_or(0);
        for &partition in pending[start..].iter().chain(&pending[..start]) {
            self.cursor = partition;
            if self.send_batch(cx, replica, members, partition) {
                return TransferOutcome::Continue;
            }
        }
        self.cursor = 0;
        TransferOutcome::Continue
    }

    /// Sends the next batch of `partition` to all its primaries; false when they are
    /// not all up (the partition waits) or there is nothing to send.
    fn send_batch(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        members: &Membership,
        partition: u32,
    ) -> bool {
        let ring = members.ring();
        let owners: Vec<NodeId> = ring
            .primaries(partition, cx.config.n as usize)
            .into_iter()
            .cloned()
            .collect();
        if owners.is_empty() || owners.iter().any(|o| !members.is_up(o)) {
            return false;
        }
        let (start, end) = ring.partition_range(partition);
        let objects = match replica.objects_in(start, end, TRANSFER_BATCH_KEYS_MAX) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(node = %cx.me(), partition, error = %e, "cannot read a partition to hand over");
                return false;
            }
        };
        let mut batch_objects: Vec<(Key, Object)> = Vec::with_capacity(objects.len());
        let mut bytes = 0usize;
        for (key, obj) in objects {
            bytes += key.bucket.len() + key.key.len() + encoded_len(&obj);
            batch_objects.push((key, obj));
            if bytes >= TRANSFER_BATCH_BYTES_MAX {
                break;
            }
        }
        if batch_objects.is_empty() {
            return false;
        }
        let id = cx.ids.fresh();
        let entries: Vec<(Key, u64)> = batch_objects
            .iter()
            .map(|(k, o)| (k.clone(), o.digest()))
            .collect();
        for owner in &owners {
            cx.out.send(
                owner.clone(),
                PeerMessage::Transfer {
                    id,
                    partition,
                    objects: batch_objects.clone(),
                },
            );
        }
        let rate = cx.config.transfer_bytes_per_sec.max(1);
        let wire_bytes = (bytes * owners.len()) as u64;
        self.bytes_sent += wire_bytes;
        self.next_at_ms = cx.now.mono_ms + wire_bytes * 1000 / rate;
        let deadline = cx.timers.set(
            cx.now.mono_ms + TRANSFER_ACK_TIMEOUT_MS,
            Timer::TransferBatch(id),
        );
        self.inflight = Some(Batch {
            id,
            partition,
            entries,
            waiting: owners.into_iter().collect(),
            deadline,
        });
        true
    }

    /// An owner's ack of a batch. Once every owner acked, drops the batch's keys whose
    /// version is unchanged.
    pub(crate) fn on_ack(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        from: &NodeId,
        id: u64,
        error: Option<String>,
    ) -> TransferOutcome {
        let Some(batch) = self.inflight.as_mut() else {
            return TransferOutcome::Continue;
        };
        if batch.id != id {
            return TransferOutcome::Continue;
        }
        if let Some(e) = error {
            tracing::warn!(node = %cx.me(), %from, partition = batch.partition, error = %e, "transfer refused; retrying later");
            cx.timers.cancel(batch.deadline);
            self.inflight = None;
            return TransferOutcome::Continue;
        }
        batch.waiting.remove(from);
        if !batch.waiting.is_empty() {
            return TransferOutcome::Continue;
        }
        let Some(batch) = self.inflight.take() else {
            return TransferOutcome::Continue;
        };
        cx.timers.cancel(batch.deadline);
        let mut removed = 0u64;
        for (key, digest) in &batch.entries {
            match replica.remove_if_digest(key, *digest) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %cx.me(), %key, error = %e, "cannot drop a handed-over key")
                }
            }
        }
        self.keys_sent += removed;
        TransferOutcome::BatchDone {
            partition: batch.partition,
            keys_dropped: removed,
        }
    }

    /// A batch's deadline passed with an owner silent: it is given up, and the sweep
    /// sends the partition again.
    pub(crate) fn on_batch_timeout(&mut self, cx: &Cx<'_>, id: u64) {
        if let Some(batch) = self.inflight.as_ref().filter(|b| b.id == id) {
            tracing::info!(node = %cx.me(), partition = batch.partition, waiting = ?batch.waiting, "transfer batch not acknowledged in time; retrying");
            self.inflight = None;
        }
    }

    /// The end of a completed batch, after the node renewed its actor if keys dropped:
    /// counts the partition if it is empty now and looks for the next batch at once.
    pub(crate) fn after_batch(&mut self, cx: &mut Cx<'_>, replica: &Replica, partition: u32) {
        if replica.trees().root(partition) == 0 {
            self.done += 1;
            tracing::info!(node = %cx.me(), partition, "partition handed over");
        }
        cx.timers.set(cx.now.mono_ms, Timer::Transfer);
    }
}

/// A `Transfer` arrived: merge every object (idempotent), then ack. The driver persists
/// before the ack leaves.
pub(crate) fn on_transfer(
    cx: &mut Cx<'_>,
    replica: &mut Replica,
    from: NodeId,
    id: u64,
    objects: Vec<(Key, Object)>,
) {
    let mut error = None;
    for (key, obj) in objects.into_iter().take(TRANSFER_BATCH_KEYS_MAX * 2) {
        if let Err(e) = replica.merge(&key, &obj, None) {
            error = Some(format!("{key}: {e}"));
            break;
        }
    }
    cx.out.send(from, PeerMessage::TransferAck { id, error });
}

/// Partitions this node holds keys in but is not a primary of.
fn partitions_to_hand_over(
    config: &NodeConfig,
    replica: &Replica,
    members: &Membership,
) -> Vec<u32> {
    let trees = replica.trees();
    if !trees.is_ready() {
        return Vec::new();
    }
    let ring = members.ring();
    let n = config.n as usize;
    (0..ring.partitions())
        .filter(|&p| trees.root(p) != 0 && !ring.primaries(p, n).contains(&&config.name))
        .collect()
}

/// The msgpack size of an object, for the transfer budget.
fn encoded_len(obj: &Object) -> usize {
    rmp_serde::to_vec(obj).map_or(0, |b| b.len())
}
