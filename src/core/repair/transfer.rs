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
//! stand-ins, issue 4). A fresh actor costs one more entry in the clocks it writes.

use std::collections::BTreeSet;

use crate::core::membership::gossip::MemberPhase;
use crate::core::node::{META_ACTOR_KEY, Node, Now};
use crate::core::object::Object;
use crate::core::object::clock::ActorId;
use crate::core::placement::ring::NodeId;
use crate::core::timer::Timer;
use crate::proto::{Key, PeerMessage, TransferInfo};
use crate::storage::{Rmw, Space};

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
pub struct TransferState {
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
    sent_at_ms: u64,
}

impl Node {
    /// Partition streaming as `ringkv status` shows it.
    pub fn transfer_info(&self) -> TransferInfo {
        TransferInfo {
            pending: self.partitions_to_hand_over().len() as u32,
            done: self.transfer.done,
            keys_sent: self.transfer.keys_sent,
            bytes_sent: self.transfer.bytes_sent,
        }
    }

    /// Partitions this node holds keys in but is not a primary of.
    fn partitions_to_hand_over(&self) -> Vec<u32> {
        let trees = self.replica.trees();
        if !trees.is_ready() {
            return Vec::new();
        }
        let ring = self.membership.ring();
        let n = self.config.n as usize;
        (0..ring.partitions())
            .filter(|&p| trees.root(p) != 0 && !ring.primaries(p, n).contains(&&self.config.name))
            .collect()
    }

    pub(crate) fn on_transfer_tick(&mut self, now: Now) {
        self.timers
            .set(now.mono_ms + TRANSFER_INTERVAL_MS, Timer::Transfer);
        if self.left || !self.synced || !self.replica.trees().is_ready() {
            return;
        }
        if let Some(batch) = &self.transfer.inflight {
            if now.mono_ms < batch.sent_at_ms + TRANSFER_ACK_TIMEOUT_MS {
                return;
            }
            tracing::info!(node = %self.config.name, partition = batch.partition, waiting = ?batch.waiting, "transfer batch not acknowledged in time; retrying");
            self.transfer.inflight = None;
        }
        if now.mono_ms < self.transfer.next_at_ms {
            return;
        }
        let pending = self.partitions_to_hand_over();
        if pending.is_empty() {
            if self.membership.own_phase() == MemberPhase::Leaving
                && self.replica.hints().total() == 0
            {
                self.finish_leave(now);
            }
            return;
        }
        // Resume after the last partition looked at, so one stuck partition (an owner
        // down) does not starve the others.
        let start = pending
            .iter()
            .position(|&p| p >= self.transfer.cursor)
            .unwrap_or(0);
        for &partition in pending[start..].iter().chain(&pending[..start]) {
            self.transfer.cursor = partition;
            if self.send_batch(now, partition) {
                return;
            }
        }
        self.transfer.cursor = 0;
    }

    /// Sends the next batch of `partition` to all its primaries; false when they are
    /// not all up (the partition waits) or there is nothing to send.
    fn send_batch(&mut self, now: Now, partition: u32) -> bool {
        let ring = self.membership.ring();
        let owners: Vec<NodeId> = ring
            .primaries(partition, self.config.n as usize)
            .into_iter()
            .cloned()
            .collect();
        if owners.is_empty() || owners.iter().any(|o| !self.membership.is_up(o)) {
            return false;
        }
        let (start, end) = ring.partition_range(partition);
        let objects = match self.replica.objects_in(start, end, TRANSFER_BATCH_KEYS_MAX) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(node = %self.config.name, partition, error = %e, "cannot read a partition to hand over");
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
        let id = self.fresh_id();
        let entries: Vec<(Key, u64)> = batch_objects
            .iter()
            .map(|(k, o)| (k.clone(), o.digest()))
            .collect();
        for owner in &owners {
            self.send(
                owner.clone(),
                PeerMessage::Transfer {
                    id,
                    partition,
                    objects: batch_objects.clone(),
                },
            );
        }
        let rate = self.config.transfer_bytes_per_sec.max(1);
        let wire_bytes = (bytes * owners.len()) as u64;
        self.transfer.bytes_sent += wire_bytes;
        self.transfer.next_at_ms = now.mono_ms + wire_bytes * 1000 / rate;
        self.transfer.inflight = Some(Batch {
            id,
            partition,
            entries,
            waiting: owners.into_iter().collect(),
            sent_at_ms: now.mono_ms,
        });
        true
    }

    /// A `Transfer` arrived: merge every object (idempotent), then ack. The driver
    /// persists before the ack leaves.
    pub(crate) fn on_transfer(&mut self, from: NodeId, id: u64, objects: Vec<(Key, Object)>) {
        let mut error = None;
        for (key, obj) in objects.into_iter().take(TRANSFER_BATCH_KEYS_MAX * 2) {
            if let Err(e) = self.replica.merge(&key, &obj, None) {
                error = Some(format!("{key}: {e}"));
                break;
            }
        }
        self.send(from, PeerMessage::TransferAck { id, error });
    }

    pub(crate) fn on_transfer_ack(
        &mut self,
        now: Now,
        from: NodeId,
        id: u64,
        error: Option<String>,
    ) {
        let Some(batch) = self.transfer.inflight.as_mut() else {
            return;
        };
        if batch.id != id {
            return;
        }
        if let Some(e) = error {
            tracing::warn!(node = %self.config.name, %from, partition = batch.partition, error = %e, "transfer refused; retrying later");
            self.transfer.inflight = None;
            return;
        }
        batch.waiting.remove(&from);
        if !batch.waiting.is_empty() {
            return;
        }
        let Some(batch) = self.transfer.inflight.take() else {
            return;
        };
        let mut removed = 0u64;
        for (key, digest) in &batch.entries {
            match self.replica.remove_if_digest(key, *digest) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %self.config.name, %key, error = %e, "cannot drop a handed-over key")
                }
            }
        }
        self.transfer.keys_sent += removed;
        if removed > 0 {
            self.renew_actor();
        }
        if self.replica.trees().root(batch.partition) == 0 {
            self.transfer.done += 1;
            tracing::info!(node = %self.config.name, partition = batch.partition, "partition handed over");
        }
        self.timers.set(now.mono_ms, Timer::Transfer);
    }

    /// Takes a fresh actor id (see the module doc) and stores it for restarts.
    fn renew_actor(&mut self) {
        let actor = ActorId::random(&mut self.rng);
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
            tracing::error!(node = %self.config.name, error = %e, "cannot store a fresh actor id");
        }
    }

    /// Hints held for a member that has left can never be handed to it: fold them into
    /// our data space, from where the sweep streams them to the key's current owners.
    pub(crate) fn absorb_hints_of(&mut self, primary: &NodeId) {
        let hinted = match self.replica.hinted(primary, TRANSFER_BATCH_KEYS_MAX) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(node = %self.config.name, %primary, error = %e, "cannot read hints");
                return;
            }
        };
        for (key, object) in hinted {
            let merged = self.replica.merge(&key, &object, None);
            if let Err(e) =
                merged.and_then(|_| self.replica.drop_hint_if_unchanged(primary, &key, &object))
            {
                tracing::warn!(node = %self.config.name, %primary, %key, error = %e, "cannot absorb a hint of a departed member");
            }
        }
    }
}

/// The msgpack size of an object, for the transfer budget.
fn encoded_len(obj: &Object) -> usize {
    rmp_serde::to_vec(obj).map_or(0, |b| b.len())
}
