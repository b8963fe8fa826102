//! Anti-entropy exchanges between the primaries of a partition, sans-IO: the Merkle path.
//!
//! Read repair only fixes keys that clients read, and hinted handoff only what a fallback
//! saw; a replica that missed writes whose hints were lost stays behind until something
//! compares it. Every tick, a node compares a bounded number of the partitions it
//! initiates (it is their first live primary) with one other live primary each, cheapest
//! first: the roots; for differing roots the 16 branch hashes; then the leaves under
//! differing branches; then the entry hashes of the differing leaves. Each side then
//! sends the other the objects it holds differently, and the receiver merges them, so
//! repair runs in both directions and can never lose a write.
//!
//! Bytes matter more than round trips here (the ideal is the differing keys themselves),
//! so every stage is batched — one message per peer per tick for all its partitions —
//! and hashes travel short: tree hashes as 16 bits and entry hashes as 32 bits, cut under
//! a salt drawn afresh per exchange, so that a collision delays a repair by one cycle
//! instead of hiding a difference forever. Leaves travel sparse (a bitmap of non-empty
//! leaves), and keys are never listed by name: the side that lacks an entry returns its
//! hash, and the side that holds it pushes the object. When most branches of a partition
//! differ, the sketch path ([`super::sketch`]) may take over with HLL sketches and Bloom filters.

use std::collections::{BTreeMap, BTreeSet};

use serde_bytes::ByteBuf;

use crate::core::membership::Membership;
use crate::core::node::Cx;
use crate::core::placement::ring::NodeId;
use crate::core::repair::merkle::{
    AePath, LEAVES_PER_BRANCH, MerkleTrees, RebuildProgress, SEGMENTS_PER_PARTITION, entry_hash,
    short16, short32,
};
use crate::core::repair::sketch;
use crate::core::replica::Replica;
use crate::core::stats::AeProgress;
use crate::core::timer::Timer;
use crate::proto::{Key, PeerMessage};

/// Partitions one node starts comparing per anti-entropy tick.
pub const AE_PARTITIONS_PER_TICK: u32 = 32;
/// Most keys one exchange message lists, and most keys one side scans per exchange.
pub const AE_KEYS_MAX: usize = 10_000;
/// Most partitions one batched message may carry; the rest of a larger one is ignored.
pub const AE_BATCH_PARTITIONS_MAX: usize = 1_024;
/// In [`AePath::Auto`], differing branches (of 16) from which the two sides exchange HLL
/// sketches to decide between the tree and Bloom filters. Fewer differing branches mean
/// a small difference, which the descent finds cheaper than any filter; 12 of 16 is
/// what about 22 random differing entries produce.
pub const AE_SKETCH_BRANCHES_MIN: usize = 12;
/// Shortest time between two whole-sweeps of one returning peer.
pub const AE_SWEEP_INTERVAL_MIN_MS: u64 = 10_000;
/// Longest LEB128 encoding of a u32.
const VARINT_BYTES_MAX: usize = 5;

/// What anti-entropy has done on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AeStats {
    /// Root comparisons started.
    pub exchanges: u64,
    /// Comparisons whose roots differed.
    pub mismatches: u64,
    /// Objects sent to repair a peer.
    pub keys_sent: u64,
    /// Bytes of anti-entropy messages sent (their msgpack encoding as the transport
    /// sends it, without the frame envelope), excluding the repairing objects.
    pub bytes_sent: u64,
    /// Rows scanned by the start-up tree rebuild.
    pub rebuild_rows: u64,
    /// HLL sketches sent.
    pub sketches_sent: u64,
    /// Partitions this node switched to the Bloom path.
    pub bloom_exchanges: u64,
    /// Bloom rounds this node started (each sends a filter and asks for the peer's).
    pub bloom_rounds: u64,
}

/// Counts the bytes an encoder writes, without keeping them.
struct ByteCounter(u64);

/// The Merkle exchange subsystem: its counters, the next partition it looks at, and the
/// peers that came back and are owed a comparison of everything they share with us.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    stats: AeStats,
    /// Next partition anti-entropy looks at; divided by the partition count, the number
    /// of full passes, which picks the peer in turn.
    cursor: u32,
    /// Peers seen up again and not swept yet: since the last tick, or waiting out
    /// [`AE_SWEEP_INTERVAL_MIN_MS`] (at most one entry per member).
    returned: BTreeSet<NodeId>,
    /// When each peer was last swept whole; a peer is swept at most once per
    /// [`AE_SWEEP_INTERVAL_MIN_MS`] however often it flaps.
    swept_at: BTreeMap<NodeId, u64>,
}

/// One tick's root comparisons: per peer, a salt and the partitions with their roots.
#[derive(Debug, Default)]
struct Batches {
    by_peer: BTreeMap<NodeId, (u64, Vec<(u32, u16)>)>,
    /// (peer, partition) already listed.
    listed: BTreeSet<(NodeId, u32)>,
}

/// What one anti-entropy call works with: the node's shared context, this replica (read
/// only: repairs travel as replications to the peer, and what we lack the peer pushes to
/// us), the membership view and the exchange's counters. The sketch path
/// ([`super::sketch`]) uses the same context.
#[derive(Debug)]
pub(crate) struct AeCx<'a, 'c> {
    pub(crate) cx: &'a mut Cx<'c>,
    pub(crate) replica: &'a Replica,
    pub(crate) members: &'a Membership,
    pub(crate) stats: &'a mut AeStats,
}

impl Exchange {
    pub(crate) fn stats(&self) -> &AeStats {
        &self.stats
    }

    /// `peer` was seen up again (a restart, a healed partition): the next tick compares
    /// every partition this node initiates and `peer` replicates.
    pub(crate) fn on_member_up(&mut self, peer: &NodeId) {
        self.returned.insert(peer.clone());
    }

    /// One step of the start-up tree rebuild; reschedules itself until done.
    pub(crate) fn on_rebuild_tick(&mut self, cx: &mut Cx<'_>, replica: &mut Replica) {
        let now = cx.now;
        match replica.rebuild_trees_step() {
            Ok(RebuildProgress::Scanned(rows)) => {
                self.stats.rebuild_rows = rows;
                cx.timers.set(now.mono_ms, Timer::TreeRebuild);
            }
            Ok(RebuildProgress::Done(rows)) => self.stats.rebuild_rows = rows,
            Err(e) => {
                tracing::warn!(node = %cx.me(), error = %e, "tree rebuild step failed; retrying");
                cx.timers.set(
                    now.mono_ms + cx.config.anti_entropy_interval_ms,
                    Timer::TreeRebuild,
                );
            }
        }
    }

    /// Sends the roots of the next partitions this node initiates, one message per peer.
    pub(crate) fn on_tick(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &Replica,
        members: &Membership,
        progress: &mut AeProgress,
    ) {
        let now = cx.now;
        let interval = cx.config.anti_entropy_interval_ms;
        if interval == 0 {
            return;
        }
        // Jitter keeps the nodes of a cluster from comparing in lockstep.
        let jitter = rand::RngCore::next_u64(cx.rng) % (interval / 4 + 1);
        cx.timers
            .set(now.mono_ms + interval + jitter, Timer::AntiEntropy);
        if !replica.trees().is_ready() {
            return;
        }
        let me = cx.me().clone();
        let n = cx.config.n as usize;
        let partitions = members.ring().partitions();
        let live_primaries = |p: u32| -> Vec<NodeId> {
            members
                .ring()
                .primaries(p, n)
                .into_iter()
                .filter(|x| members.is_up(x))
                .cloned()
                .collect()
        };
        let mut batches = Batches::default();
        // A peer that came back compares every partition this node initiates with it at
        // once, rather than waiting for the round robin to reach them.
        self.swept_at
            .retain(|_, at| now.mono_ms < *at + AE_SWEEP_INTERVAL_MIN_MS);
        let mut deferred = Vec::new();
        for peer in std::mem::take(&mut self.returned) {
            if !members.is_up(&peer) {
                continue;
            }
            if self.swept_at.contains_key(&peer) {
                // Swept too recently (a flap, or the sweep every node makes as it
                // starts): owed one all the same once the interval has passed, or a
                // peer that restarts soon after a sweep waits for the round robin.
                deferred.push(peer);
                continue;
            }
            self.swept_at.insert(peer.clone(), now.mono_ms);
            for p in 0..partitions {
                let live = live_primaries(p);
                if live.first() == Some(&me) && live.contains(&peer) {
                    batches.add(cx.rng, replica, &peer, p);
                }
            }
        }
        self.returned.extend(deferred);
        let mut started = 0;
        for _ in 0..partitions {
            if started == AE_PARTITIONS_PER_TICK {
                break;
            }
            let p = self.cursor % partitions;
            // Full passes over the partitions so far: the round robin's turn.
            let pass = self.cursor / partitions;
            self.cursor = self.cursor.wrapping_add(1);
            let live = live_primaries(p);
            // One initiator per partition — its first live primary — so two replicas
            // never run the same comparison at once and repair each key twice.
            if live.first() != Some(&me) {
                continue;
            }
            let peers: Vec<NodeId> = live.into_iter().filter(|x| x != &me).collect();
            if peers.is_empty() {
                continue;
            }
            // Round robin, not a random pick: every (partition, peer) pair is compared
            // within `peers.len()` passes, so a replica cannot go unchecked for long.
            let peer = peers[pass as usize % peers.len()].clone();
            batches.add(cx.rng, replica, &peer, p);
            started += 1;
        }
        for (p, _) in batches.partitions() {
            self.stats.exchanges += 1;
            progress.record(p, now.mono_ms);
        }
        let mut ae = self.lend(cx, replica, members);
        for (peer, (salt, records)) in batches.by_peer {
            let roots = pack_roots(records);
            ae.send(peer, PeerMessage::AeRoots { salt, roots });
        }
    }

    /// An anti-entropy message: the Merkle path's here, the sketch path's in
    /// [`super::sketch`].
    pub(crate) fn on_message(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &Replica,
        members: &Membership,
        from: NodeId,
        msg: PeerMessage,
    ) {
        if !replica.trees().is_ready() {
            return;
        }
        let mut ae = self.lend(cx, replica, members);
        match msg {
            PeerMessage::AeRoots { salt, roots } => ae.on_roots(from, salt, &roots),
            PeerMessage::AeBranches { salt, parts } => {
                ae.descend_branches(from, salt, parts, true);
            }
            PeerMessage::AeLeaves { salt, parts } => ae.on_leaves(from, salt, parts),
            PeerMessage::AeKeys { salt, parts } => ae.on_keys(from, salt, parts),
            PeerMessage::AePull { salt, parts } => ae.on_pull(from, salt, parts),
            other => sketch::on_message(&mut ae, from, other),
        }
    }

    fn lend<'a, 'c>(
        &'a mut self,
        cx: &'a mut Cx<'c>,
        replica: &'a Replica,
        members: &'a Membership,
    ) -> AeCx<'a, 'c> {
        AeCx {
            cx,
            replica,
            members,
            stats: &mut self.stats,
        }
    }
}

impl Batches {
    /// Adds partition `p`'s root to `peer`'s message, drawing its salt on first use; a
    /// partition already listed for `peer` is not listed twice.
    fn add(&mut self, rng: &mut rand_chacha::ChaCha8Rng, replica: &Replica, peer: &NodeId, p: u32) {
        if !self.by_peer.contains_key(peer) {
            let salt = rand::RngCore::next_u64(rng);
            self.by_peer.insert(peer.clone(), (salt, Vec::new()));
        }
        if let Some((salt, records)) = self.by_peer.get_mut(peer)
            && self.listed.insert((peer.clone(), p))
        {
            records.push((p, short16(*salt, replica.trees().root(p))));
        }
    }

    /// Every (partition, peer) listed.
    fn partitions(&self) -> impl Iterator<Item = (u32, &NodeId)> {
        self.by_peer
            .iter()
            .flat_map(|(peer, (_, records))| records.iter().map(move |(p, _)| (*p, peer)))
    }
}

impl AeCx<'_, '_> {
    /// Sends an anti-entropy message, counting its encoded size.
    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.stats.bytes_sent += wire_bytes(&msg);
        self.cx.out.send(to, msg);
    }

    /// Answers a peer's differing branches (`theirs`, per partition) with our leaves under
    /// them — or, when `sketch_ok` and the path says so, with an HLL sketch instead.
    pub(crate) fn descend_branches(
        &mut self,
        from: NodeId,
        salt: u64,
        parts: Vec<(u32, ByteBuf)>,
        sketch_ok: bool,
    ) {
        let partitions = self.members.ring().partitions();
        let mut out = Vec::new();
        for (p, theirs) in parts.into_iter().take(AE_BATCH_PARTITIONS_MAX) {
            if p >= partitions {
                continue;
            }
            let ours = pack_branches(salt, &self.replica.trees().branches(p));
            if ours.len() != theirs.len() {
                continue;
            }
            let differing: Vec<u8> = (0..ours.len() / 2)
                .filter(|&b| ours[2 * b..2 * b + 2] != theirs[2 * b..2 * b + 2])
                .map(|b| b as u8)
                .collect();
            if differing.is_empty() {
                // the roots differed under a 16-bit cut but no branch does: a collision,
                // which the next cycle's salt will not repeat
                continue;
            }
            let sketch = sketch_ok
                && match self.cx.config.ae_path {
                    AePath::Bloom => true,
                    AePath::Auto => differing.len() >= AE_SKETCH_BRANCHES_MIN,
                    AePath::Merkle => false,
                };
            if sketch && sketch::send_sketch(self, &from, salt, p) {
                continue;
            }
            let leaves = pack_leaves(salt, self.replica.trees(), p, &differing);
            out.push((p, ByteBuf::from(leaves)));
        }
        if !out.is_empty() {
            self.send(from, PeerMessage::AeLeaves { salt, parts: out });
        }
    }

    /// Our copy of each key goes to `to` as a replication (it merges).
    pub(crate) fn push_objects(&mut self, to: &NodeId, keys: Vec<Key>) {
        for key in keys {
            let object = match self.replica.read(&key, None) {
                Ok(Some(o)) => o,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(node = %self.cx.me(), %key, error = %e, "anti-entropy cannot read a key");
                    continue;
                }
            };
            let id = self.cx.ids.fresh();
            self.stats.keys_sent += 1;
            self.cx.out.send(
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

    fn on_roots(&mut self, from: NodeId, salt: u64, roots: &[u8]) {
        let partitions = self.members.ring().partitions();
        let mut parts = Vec::new();
        for (p, root) in unpack_roots(roots)
            .into_iter()
            .take(AE_BATCH_PARTITIONS_MAX)
        {
            if p >= partitions || short16(salt, self.replica.trees().root(p)) == root {
                continue;
            }
            self.stats.mismatches += 1;
            if self.cx.config.ae_path == AePath::Bloom && sketch::send_sketch(self, &from, salt, p)
            {
                continue;
            }
            let branches = pack_branches(salt, &self.replica.trees().branches(p));
            parts.push((p, ByteBuf::from(branches)));
        }
        if !parts.is_empty() {
            self.send(from, PeerMessage::AeBranches { salt, parts });
        }
    }

    fn on_leaves(&mut self, from: NodeId, salt: u64, parts: Vec<(u32, ByteBuf)>) {
        let partitions = self.members.ring().partitions();
        let mut out = Vec::new();
        let mut listed = 0;
        for (p, records) in parts.into_iter().take(AE_BATCH_PARTITIONS_MAX) {
            if p >= partitions || listed >= AE_KEYS_MAX {
                continue;
            }
            let differing = differing_segments(salt, self.replica.trees(), p, &records);
            if differing.is_empty() {
                continue;
            }
            let mut hashes = Vec::new();
            for (key, digest) in self.entries_in(p, &differing, AE_KEYS_MAX - listed) {
                hashes.extend_from_slice(&entry_short(salt, &key, digest).to_be_bytes());
                listed += 1;
            }
            out.push((p, ByteBuf::from(differing), ByteBuf::from(hashes)));
        }
        if !out.is_empty() {
            self.send(from, PeerMessage::AeKeys { salt, parts: out });
        }
    }

    fn on_keys(&mut self, from: NodeId, salt: u64, parts: Vec<(u32, ByteBuf, ByteBuf)>) {
        let partitions = self.members.ring().partitions();
        let mut push = Vec::new();
        let mut pull = Vec::new();
        for (p, segments, hashes) in parts.into_iter().take(AE_BATCH_PARTITIONS_MAX) {
            if p >= partitions || push.len() >= AE_KEYS_MAX {
                continue;
            }
            let theirs: BTreeSet<u32> = unpack_u32s(&hashes).take(AE_KEYS_MAX).collect();
            let mut ours = BTreeSet::new();
            for (key, digest) in self.entries_in(p, &segments, AE_KEYS_MAX - push.len()) {
                let h = entry_short(salt, &key, digest);
                ours.insert(h);
                if !theirs.contains(&h) {
                    push.push(key);
                }
            }
            let lacking: Vec<u8> = theirs
                .difference(&ours)
                .flat_map(|h| h.to_be_bytes())
                .collect();
            if !lacking.is_empty() {
                pull.push((p, segments, ByteBuf::from(lacking)));
            }
        }
        // The pull goes first: the peer must look its entries up before our pushes change
        // them (a merged version no longer matches the hash we ask for), or concurrent
        // versions would take a second cycle to meet.
        if !pull.is_empty() {
            self.send(from.clone(), PeerMessage::AePull { salt, parts: pull });
        }
        self.push_objects(&from, push);
    }

    fn on_pull(&mut self, from: NodeId, salt: u64, parts: Vec<(u32, ByteBuf, ByteBuf)>) {
        let partitions = self.members.ring().partitions();
        let mut push = Vec::new();
        for (p, segments, hashes) in parts.into_iter().take(AE_BATCH_PARTITIONS_MAX) {
            if p >= partitions || push.len() >= AE_KEYS_MAX {
                continue;
            }
            let wanted: BTreeSet<u32> = unpack_u32s(&hashes).take(AE_KEYS_MAX).collect();
            for (key, digest) in self.entries_in(p, &segments, AE_KEYS_MAX - push.len()) {
                if wanted.contains(&entry_short(salt, &key, digest)) {
                    push.push(key);
                }
            }
        }
        self.push_objects(&from, push);
    }

    /// Our (key, digest) pairs in the given segments of a partition, at most `limit`.
    fn entries_in(&self, partition: u32, segments: &[u8], limit: usize) -> Vec<(Key, u64)> {
        let ring = self.members.ring();
        let (start, end) = ring.partition_range(partition);
        let width = (end - start) / SEGMENTS_PER_PARTITION as u64 + 1;
        let mut out = Vec::new();
        for &s in segments {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            let lo = start + s as u64 * width;
            let hi = lo + (width - 1);
            match self.replica.digests_in(lo, hi, room) {
                Ok(found) => out.extend(found),
                Err(e) => {
                    tracing::warn!(node = %self.cx.config.name, partition, error = %e, "anti-entropy scan failed")
                }
            }
        }
        out
    }
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bytes `msg` takes in the transport's encoding (named msgpack).
pub(crate) fn wire_bytes(msg: &PeerMessage) -> u64 {
    let mut counter = ByteCounter(0);
    match rmp_serde::encode::write_named(&mut counter, msg) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// Root records sorted by partition, each `[partition delta, LEB128][root u16 BE]`: the
/// partitions of one tick are close together, so a delta mostly takes one byte.
fn pack_roots(mut records: Vec<(u32, u16)>) -> Vec<u8> {
    records.sort_unstable();
    let mut out = Vec::with_capacity(records.len() * 3);
    let mut previous = 0;
    for (p, root) in records {
        let mut delta = p - previous;
        previous = p;
        loop {
            let low = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
        out.extend_from_slice(&root.to_be_bytes());
    }
    out
}

/// The records of [`pack_roots`]; a malformed tail (bad varint, overflow, short root)
/// ends the list.
pub(crate) fn unpack_roots(bytes: &[u8]) -> Vec<(u32, u16)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut partition = 0u32;
    'records: while !rest.is_empty() {
        let mut delta = 0u32;
        let mut used = 0;
        loop {
            let Some(&byte) = rest.get(used) else {
                break 'records;
            };
            if used == VARINT_BYTES_MAX {
                break 'records;
            }
            delta |= u32::from(byte & 0x7f)
                .checked_shl(7 * used as u32)
                .unwrap_or(0);
            used += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let Some(root) = rest.get(used..used + 2) else {
            break;
        };
        let Some(p) = partition.checked_add(delta) else {
            break;
        };
        partition = p;
        out.push((p, u16::from_be_bytes([root[0], root[1]])));
        rest = &rest[used + 2..];
    }
    out
}

/// A partition's branch hashes cut to 16 bits, packed big-endian.
pub(crate) fn pack_branches(salt: u64, branches: &[u64]) -> Vec<u8> {
    branches
        .iter()
        .flat_map(|b| short16(salt, *b).to_be_bytes())
        .collect()
}

/// For each branch, `[branch][bitmap of non-empty leaves][16-bit cut of each]`. An empty
/// leaf (hash 0: no entries) costs one bitmap bit instead of two bytes; most leaves of a
/// small partition are empty.
fn pack_leaves(salt: u64, trees: &MerkleTrees, partition: u32, branches: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in branches {
        let leaves = trees.leaves_of(partition, b as u32);
        let bitmap = leaves
            .iter()
            .enumerate()
            .filter(|(_, l)| **l != 0)
            .fold(0u16, |m, (i, _)| m | (1 << i));
        out.push(b);
        out.extend_from_slice(&bitmap.to_be_bytes());
        for leaf in leaves.iter().filter(|l| **l != 0) {
            out.extend_from_slice(&short16(salt, *leaf).to_be_bytes());
        }
    }
    out
}

/// The segments whose leaves differ between ours and the packed records of a peer
/// (see [`pack_leaves`]); a malformed record ends the parse.
fn differing_segments(salt: u64, trees: &MerkleTrees, partition: u32, records: &[u8]) -> Vec<u8> {
    const _: () = assert!(LEAVES_PER_BRANCH == 16, "the leaf bitmap is a u16");
    let mut out = Vec::new();
    let mut rest = records;
    while let [branch, hi, lo, tail @ ..] = rest {
        let bitmap = u16::from_be_bytes([*hi, *lo]);
        let present = bitmap.count_ones() as usize;
        let Some(values) = tail.get(..2 * present) else {
            break;
        };
        rest = &tail[2 * present..];
        let ours = trees.leaves_of(partition, *branch as u32);
        if ours.len() != LEAVES_PER_BRANCH as usize {
            continue;
        }
        let mut theirs = values.chunks_exact(2);
        for (i, leaf) in ours.iter().enumerate() {
            let their = if bitmap & (1 << i) != 0 {
                theirs.next().map(|v| u16::from_be_bytes([v[0], v[1]]))
            } else {
                None
            };
            let our = (*leaf != 0).then(|| short16(salt, *leaf));
            if our != their {
                out.push(*branch * LEAVES_PER_BRANCH as u8 + i as u8);
            }
        }
    }
    out
}

fn entry_short(salt: u64, key: &Key, digest: u64) -> u32 {
    short32(salt, entry_hash(&key.bucket, &key.key, digest))
}

fn unpack_u32s(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::placement::ring::key_position;
    use crate::storage::{MemoryStorage, encode_data_key};

    fn trees_with(keys: &[(&str, u64)]) -> MerkleTrees {
        let storage = MemoryStorage::new();
        let mut t = MerkleTrees::new(1);
        while let Ok(RebuildProgress::Scanned(_)) =
            t.rebuild_step(&storage, &|_| Some(0), &mut |_| {})
        {}
        for (k, d) in keys {
            let pos = key_position(b"b", k.as_bytes());
            let dk = encode_data_key(pos, b"b", k.as_bytes()).unwrap();
            t.update(pos, &dk, b"b", k.as_bytes(), None, Some(*d));
        }
        t
    }

    #[test]
    fn sparse_leaves_find_exactly_the_differing_segments() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let base: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
        let a = trees_with(&base);
        let mut changed = base.clone();
        changed[7].1 = 2; // a newer version
        changed.pop(); // a key the other side lacks
        let b = trees_with(&changed);
        let expected: BTreeSet<u8> = [&keys[7], &keys[39]]
            .iter()
            .map(|k| a.segment_of(key_position(b"b", k.as_bytes())) as u8)
            .collect();
        let salt = 99;
        let all: Vec<u8> = (0..16).collect();
        let packed = pack_leaves(salt, &a, 0, &all);
        // empty leaves cost a bit, not two bytes: at most 40 of the 256 leaves are set
        assert!(packed.len() <= 16 * 3 + 2 * 40, "{} bytes", packed.len());
        let found: BTreeSet<u8> = differing_segments(salt, &b, 0, &packed)
            .into_iter()
            .collect();
        assert_eq!(found, expected);
        assert!(differing_segments(salt, &a, 0, &packed).is_empty());
        // a truncated record is ignored, never a panic
        assert!(differing_segments(salt, &b, 0, &packed[..packed.len() - 1]).len() <= 2);
    }

    #[test]
    fn roots_pack_to_three_bytes_and_survive_garbage() {
        let records = vec![(1000, 7), (3, 1), (4, 65535), (300, 2)];
        let packed = pack_roots(records.clone());
        let mut sorted = records;
        sorted.sort_unstable();
        assert_eq!(unpack_roots(&packed), sorted);
        // deltas 3, 1, 296 (two bytes), 700 (two bytes)
        assert_eq!(packed.len(), 4 * 3 + 2);
        assert_eq!(unpack_roots(&packed[..packed.len() - 1]).len(), 3);
        assert!(unpack_roots(&[0xff; 12]).is_empty());
    }

    #[test]
    fn branch_packing_is_two_bytes_a_branch_and_salted() {
        let t = trees_with(&[("x", 1), ("y", 2)]);
        let one = pack_branches(1, &t.branches(0));
        assert_eq!(one.len(), 32);
        assert_ne!(one, pack_branches(2, &t.branches(0)));
        assert_eq!(unpack_u32s(&[0, 0, 0, 7, 1]).collect::<Vec<_>>(), vec![7]);
    }
}
