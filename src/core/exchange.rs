//! Anti-entropy exchanges between the primaries of a partition, sans-IO.
//!
//! Read repair only fixes keys that clients read, and hinted handoff only what a fallback
//! saw; a replica that missed writes whose hints were lost stays behind until something
//! compares it. Every tick, a node compares a bounded number of its partitions with one
//! other live primary each, cheapest first: the Merkle root (one u64); if it differs, the
//! 16 branch hashes; then the leaves under differing branches; then the keys and version
//! digests of the differing leaves only. A partition's first live primary initiates. Each
//! side then sends the other the objects it holds differently, and the receiver merges
//! them, so repair runs in both directions and can never lose a write.

use std::collections::BTreeMap;

use crate::core::anti_entropy::{LEAVES_PER_BRANCH, RebuildProgress, SEGMENTS_PER_PARTITION};
use crate::core::message::{Key, PeerMessage};
use crate::core::node::{Node, Now};
use crate::core::ring::NodeId;
use crate::core::timer::Timer;

/// Partitions one node starts comparing per anti-entropy tick.
pub const AE_PARTITIONS_PER_TICK: u32 = 32;
/// Most keys one exchange message lists, and most keys one side scans per exchange.
pub const AE_KEYS_MAX: usize = 10_000;

/// What anti-entropy has done on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AeStats {
    /// Root comparisons started.
    pub exchanges: u64,
    /// Comparisons whose roots differed.
    pub mismatches: u64,
    /// Objects sent to repair a peer.
    pub keys_sent: u64,
    /// Bytes of anti-entropy metadata sent (roots, leaves, keys and digests), excluding
    /// the repairing objects themselves.
    pub bytes_sent: u64,
    /// Rows scanned by the start-up tree rebuild.
    pub rebuild_rows: u64,
    /// Tombstones this replica removed after every primary confirmed them.
    pub tombstones_reaped: u64,
}

impl Node {
    /// One step of the start-up tree rebuild; reschedules itself until done.
    pub(crate) fn on_rebuild_tick(&mut self, now: Now) {
        match self.replica.rebuild_trees_step() {
            Ok(RebuildProgress::Scanned(rows)) => {
                self.ae.rebuild_rows = rows;
                self.timers.set(now.mono_ms, Timer::TreeRebuild);
            }
            Ok(RebuildProgress::Done(rows)) => self.ae.rebuild_rows = rows,
            Err(e) => {
                tracing::warn!(node = %self.config.name, error = %e, "tree rebuild step failed; retrying");
                self.timers.set(
                    now.mono_ms + self.config.anti_entropy_interval_ms,
                    Timer::TreeRebuild,
                );
            }
        }
    }

    /// Starts root comparisons for the next partitions this node is a primary of.
    pub(crate) fn on_anti_entropy_tick(&mut self, now: Now) {
        let interval = self.config.anti_entropy_interval_ms;
        if interval == 0 {
            return;
        }
        // Jitter keeps the nodes of a cluster from comparing in lockstep.
        let jitter = rand::RngCore::next_u64(&mut self.rng) % (interval / 4 + 1);
        self.timers
            .set(now.mono_ms + interval + jitter, Timer::AntiEntropy);
        if !self.replica.trees().is_ready() {
            return;
        }
        let me = self.config.name.clone();
        let n = self.config.n as usize;
        let partitions = self.membership.ring().partitions();
        let mut started = 0;
        for _ in 0..partitions {
            if started == AE_PARTITIONS_PER_TICK {
                break;
            }
            let p = self.ae_cursor % partitions;
            self.ae_cursor = self.ae_cursor.wrapping_add(1);
            let primaries: Vec<NodeId> = self
                .membership
                .ring()
                .primaries(p, n)
                .into_iter()
                .cloned()
                .collect();
            let live: Vec<NodeId> = primaries
                .into_iter()
                .filter(|x| self.membership.is_up(x))
                .collect();
            // One initiator per partition — its first live primary — so two replicas
            // never run the same comparison at once and repair each key twice.
            if live.first() != Some(&me) {
                continue;
            }
            let peers: Vec<NodeId> = live.into_iter().filter(|x| x != &me).collect();
            if peers.is_empty() {
                continue;
            }
            let pick = rand::RngCore::next_u64(&mut self.rng) as usize % peers.len();
            let root = self.replica.trees().root(p);
            self.ae.exchanges += 1;
            self.ae.bytes_sent += 12;
            self.send(
                peers[pick].clone(),
                PeerMessage::AeRoot { partition: p, root },
            );
            started += 1;
        }
    }

    pub(crate) fn on_ae_message(&mut self, from: NodeId, msg: PeerMessage) {
        let trees = self.replica.trees();
        if !trees.is_ready() {
            return;
        }
        match msg {
            PeerMessage::AeRoot { partition, root } => {
                if partition >= self.membership.ring().partitions() || trees.root(partition) == root
                {
                    return;
                }
                self.ae.mismatches += 1;
                let branches = trees.branches(partition);
                self.ae.bytes_sent += 4 + 8 * branches.len() as u64;
                self.send(
                    from,
                    PeerMessage::AeBranches {
                        partition,
                        branches,
                    },
                );
            }
            PeerMessage::AeBranches {
                partition,
                branches,
            } => {
                let ours = trees.branches(partition);
                if branches.len() != ours.len() {
                    return;
                }
                let leaves: Vec<(u32, Vec<u64>)> = (0..ours.len() as u32)
                    .filter(|&b| ours[b as usize] != branches[b as usize])
                    .map(|b| (b, trees.leaves_of(partition, b).to_vec()))
                    .collect();
                if leaves.is_empty() {
                    return;
                }
                self.ae.bytes_sent += 4 + leaves
                    .iter()
                    .map(|(_, l)| 4 + 8 * l.len() as u64)
                    .sum::<u64>();
                self.send(from, PeerMessage::AeLeaves { partition, leaves });
            }
            PeerMessage::AeLeaves { partition, leaves } => {
                let mut differing = Vec::new();
                for (branch, theirs) in leaves.iter().take(SEGMENTS_PER_PARTITION as usize) {
                    let ours = trees.leaves_of(partition, *branch);
                    if ours.len() != theirs.len() {
                        continue;
                    }
                    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
                        if a != b {
                            differing.push(branch * LEAVES_PER_BRANCH + i as u32);
                        }
                    }
                }
                if differing.is_empty() {
                    return;
                }
                let entries = self.entries_in(partition, &differing);
                self.ae.bytes_sent += entries_bytes(&entries) + 4 * differing.len() as u64;
                self.send(
                    from,
                    PeerMessage::AeKeys {
                        partition,
                        segments: differing,
                        entries,
                    },
                );
            }
            PeerMessage::AeKeys {
                partition,
                segments,
                entries,
            } => {
                let segments: Vec<u32> = segments
                    .into_iter()
                    .filter(|&s| s < SEGMENTS_PER_PARTITION)
                    .collect();
                let ours: BTreeMap<Key, u64> =
                    self.entries_in(partition, &segments).into_iter().collect();
                let theirs: BTreeMap<Key, u64> = entries.into_iter().take(AE_KEYS_MAX).collect();
                // Ours that they lack or hold differently: push them.
                let push: Vec<Key> = ours
                    .iter()
                    .filter(|(k, d)| theirs.get(*k) != Some(*d))
                    .map(|(k, _)| k.clone())
                    .collect();
                // Theirs that we lack or hold differently: pull them.
                let pull: Vec<Key> = theirs
                    .iter()
                    .filter(|(k, d)| ours.get(*k) != Some(*d))
                    .map(|(k, _)| k.clone())
                    .collect();
                self.push_objects(&from, push);
                if !pull.is_empty() {
                    self.ae.bytes_sent += keys_bytes(&pull);
                    self.send(from, PeerMessage::AePull { keys: pull });
                }
            }
            PeerMessage::AePull { keys } => {
                let keys: Vec<Key> = keys.into_iter().take(AE_KEYS_MAX).collect();
                self.push_objects(&from, keys);
            }
            _ => {}
        }
    }

    pub fn ae_stats(&self) -> &AeStats {
        &self.ae
    }

    /// Sends our copy of each key to `to` as a replication (it merges).
    fn push_objects(&mut self, to: &NodeId, keys: Vec<Key>) {
        for key in keys {
            let object = match self.replica.read(&key, None) {
                Ok(Some(o)) => o,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(node = %self.config.name, %key, error = %e, "anti-entropy cannot read a key");
                    continue;
                }
            };
            let id = self.fresh_id();
            self.ae.keys_sent += 1;
            self.send(
                to.clone(),
                PeerMessage::Replicate {
                    id,
                    key,
                    object,
                    hint: None,
                },
            );
        }
    }

    /// Our (key, digest) pairs in the given segments of a partition, bounded.
    fn entries_in(&self, partition: u32, segments: &[u32]) -> Vec<(Key, u64)> {
        let ring = self.membership.ring();
        let (start, end) = ring.partition_range(partition);
        let width = (end - start) / SEGMENTS_PER_PARTITION as u64 + 1;
        let mut out = Vec::new();
        for &s in segments {
            let room = AE_KEYS_MAX.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let lo = start + s as u64 * width;
            let hi = lo + (width - 1);
            match self.replica.digests_in(lo, hi, room) {
                Ok(found) => out.extend(found),
                Err(e) => {
                    tracing::warn!(node = %self.config.name, partition, error = %e, "anti-entropy scan failed")
                }
            }
        }
        out
    }
}

fn keys_bytes(keys: &[Key]) -> u64 {
    keys.iter()
        .map(|k| (k.bucket.len() + k.key.len() + 2) as u64)
        .sum()
}

fn entries_bytes(entries: &[(Key, u64)]) -> u64 {
    entries
        .iter()
        .map(|(k, _)| (k.bucket.len() + k.key.len() + 2 + 8) as u64)
        .sum()
}
