//! Anti-entropy's Bloom path: reconciling a partition that differs a lot, sans-IO.
//!
//! The Merkle descent costs bytes per differing key; when a replica was away a long time
//! and a large part of a partition differs, it ends up listing nearly every entry hash.
//! A Bloom filter of a side's entries costs a fixed ~1–2 bytes per entry instead, whatever
//! the difference, so it wins when the difference is a large share of the partition.
//! To decide, the two sides exchange HLL sketches of their entries and estimate the
//! difference d̂ = 2·|A∪B| − |A| − |B|.
//!
//! An entry is `hash(key ‖ version digest)`, so "in the other side's filter" means "the
//! other side holds this exact version", and a side pushes every entry of its own that the
//! filter lacks. The receiver merges what it gets: a newer version wins, concurrent ones
//! become siblings or a CRDT merge — a push can never lose a write. Both sides filter and
//! push, so repair runs both ways. A false positive hides a difference for one round; the
//! next round's filters use fresh seeds, so it is caught then. Rounds continue while the
//! roots differ, up to [`BLOOM_ROUNDS_MAX`]; each round starts with a root comparison, so
//! converged replicas spend no filter on confirming it.
//!
//! The sketches are built from a bounded scan of the partition when needed, not kept
//! incrementally: an HLL cannot forget, so an overwritten version or a reaped tombstone
//! would stay counted, and the estimate would drift further with every write. A scan
//! costs reads, but only for partitions whose roots already differ, and it is bounded by
//! [`RECONCILE_ENTRIES_MAX`]; a larger partition keeps to the Merkle path.
//!
//! The exchange keeps no state on either node: every message carries its partition,
//! round and estimate, so a lost message simply ends the exchange until the next cycle.

use std::collections::BTreeSet;
use std::f64::consts::LN_2;

use ringkv_sketches::{Bloom, Hll, SketchError};
use serde_bytes::ByteBuf;

use crate::core::placement::ring::{NodeId, key_position};
use crate::core::repair::exchange::{AE_KEYS_MAX, AeCx, pack_branches};
use crate::core::repair::merkle::{AePath, entry_hash};
use crate::core::replica::ReplicaError;
use crate::proto::{Key, PeerMessage};
use crate::storage::SCAN_ROWS_MAX;

/// In [`AePath::Auto`], the Bloom path is taken when d̂ is at least this share of the
/// partition's entries. Below it, the descent's cost per differing key stays under a
/// filter's cost per entry.
pub const BLOOM_SWITCH_FRACTION: f64 = 0.25;
/// Most Bloom rounds per exchange; a difference left after them waits for the next cycle.
pub const BLOOM_ROUNDS_MAX: u8 = 4;
/// Differing entries one filter may miss, on average: the false-positive rate is this over
/// d̂, so a round usually catches everything and a second one is rarely needed.
pub const BLOOM_MISSES_TARGET: f64 = 0.25;
/// Lowest false-positive rate used, however large d̂ (~2.4 bytes per entry).
pub const BLOOM_FP_MIN: f64 = 1e-4;
/// Highest false-positive rate used; a filter over its budget beyond it is not sent.
pub const BLOOM_FP_MAX: f64 = 0.2;
/// Largest bitmap one filter may have.
pub const BLOOM_FILTER_BYTES_MAX: usize = 1 << 20;
/// Most entries of a partition scanned for a sketch or a filter.
pub const RECONCILE_ENTRIES_MAX: usize = 100_000;
/// In [`AePath::Auto`], fewest entries a partition must hold before its sketch is offered.
/// A sketch costs ~5 bytes per entry while sparse (up to ~12 KiB dense) and each filter
/// carries a 45-byte header, so on smaller partitions the compact descent is cheaper
/// (measured by `examples/ae_bytes.rs`).
pub const SKETCH_ENTRIES_MIN: usize = 2_048;

/// Sends `to` an HLL sketch of our entries in `partition`, with our branches (so it
/// can still descend the tree). False when the partition is too large to scan, or
/// the sketch cannot be encoded: the caller then keeps to the Merkle path.
pub(crate) fn send_sketch(ae: &mut AeCx<'_, '_>, to: &NodeId, salt: u64, partition: u32) -> bool {
    let Some(entries) = partition_entries(ae, partition) else {
        return false;
    };
    if ae.cx.config.ae_path == AePath::Auto && entries.len() < SKETCH_ENTRIES_MIN {
        return false;
    }
    let hll = match rmp_serde::to_vec(&sketch_of(&entries)) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(node = %ae.cx.config.name, partition, error = %e, "cannot encode an HLL sketch; using the Merkle path");
            return false;
        }
    };
    let branches = pack_branches(salt, &ae.replica.trees().branches(partition));
    ae.stats.sketches_sent += 1;
    ae.send(
        to.clone(),
        PeerMessage::AeSketch {
            salt,
            partition,
            branches,
            hll,
        },
    );
    true
}

pub(crate) fn on_message(ae: &mut AeCx<'_, '_>, from: NodeId, msg: PeerMessage) {
    match msg {
        PeerMessage::AeSketch {
            salt,
            partition,
            branches,
            hll,
        } => on_sketch(ae, from, salt, partition, branches, &hll),
        PeerMessage::AeBloom {
            partition,
            round,
            root,
            estimate,
            filter,
        } if differs(ae, partition, round, root) => {
            let Some(entries) = partition_entries(ae, partition) else {
                return;
            };
            let pushed = push_missing(ae, &from, &entries, &filter);
            send_filter(ae, from, partition, round, estimate, &entries, Some(pushed));
        }
        PeerMessage::AeBloomReply {
            partition,
            round,
            estimate,
            pushed,
            filter,
        } => {
            if partition >= ae.members.ring().partitions() {
                return;
            }
            let Some(entries) = partition_entries(ae, partition) else {
                return;
            };
            let ours = push_missing(ae, &from, &entries, &filter);
            let found = u64::from(pushed) + u64::from(ours);
            if round < BLOOM_ROUNDS_MAX {
                let fp = bloom_fp_rate(estimate, entries.len()).unwrap_or(BLOOM_FP_MAX);
                let root = ae.replica.trees().root(partition);
                ae.send(
                    from,
                    PeerMessage::AeBloomNext {
                        partition,
                        round: round + 1,
                        root,
                        estimate: next_estimate(found, fp),
                    },
                );
            }
        }
        PeerMessage::AeBloomNext {
            partition,
            round,
            root,
            estimate,
        } if differs(ae, partition, round, root) => {
            let Some(entries) = partition_entries(ae, partition) else {
                return;
            };
            send_filter(ae, from, partition, round, estimate, &entries, None);
        }
        // converged, past the round limit, or not a Bloom message
        _ => {}
    }
}

/// Whether a Bloom message for `partition` in `round` should be acted on: the round
/// is within the limit and our root still differs from the sender's.
fn differs(ae: &AeCx<'_, '_>, partition: u32, round: u8, root: u64) -> bool {
    partition < ae.members.ring().partitions()
        && (1..=BLOOM_ROUNDS_MAX).contains(&round)
        && ae.replica.trees().root(partition) != root
}

fn on_sketch(
    ae: &mut AeCx<'_, '_>,
    from: NodeId,
    salt: u64,
    partition: u32,
    branches: Vec<u8>,
    hll: &[u8],
) {
    if partition >= ae.members.ring().partitions() {
        return;
    }
    let estimate = match (
        rmp_serde::from_slice::<Hll>(hll),
        partition_entries(ae, partition),
    ) {
        (Ok(theirs), Some(entries)) => match difference_estimate(&sketch_of(&entries), &theirs) {
            Ok(d) => Some((d, entries)),
            Err(e) => {
                tracing::warn!(node = %ae.cx.config.name, peer = %from, partition, error = %e, "cannot compare HLL sketches; using the Merkle path");
                None
            }
        },
        (Err(e), _) => {
            tracing::warn!(node = %ae.cx.config.name, peer = %from, partition, error = %e, "malformed HLL sketch; using the Merkle path");
            None
        }
        (Ok(_), None) => None,
    };
    if let Some((estimate, entries)) = estimate {
        let large = estimate as f64 >= BLOOM_SWITCH_FRACTION * entries.len().max(1) as f64;
        let bloom = match ae.cx.config.ae_path {
            AePath::Bloom => true,
            AePath::Auto => large,
            AePath::Merkle => false,
        };
        if bloom && send_filter(ae, from.clone(), partition, 1, estimate, &entries, None) {
            ae.stats.bloom_exchanges += 1;
            return;
        }
    }
    // A small difference (or no way to filter): descend the tree from the branches
    // the peer sent, without offering a sketch back.
    ae.descend_branches(
        from,
        salt,
        vec![(partition, ByteBuf::from(branches))],
        false,
    );
}

/// Sends a filter of `entries` with a fresh seed: as `AeBloom` (starting a round) or,
/// with `pushed`, as the `AeBloomReply` that ends one. False when no filter fits
/// [`BLOOM_FILTER_BYTES_MAX`] at [`BLOOM_FP_MAX`] or the filter cannot be built.
fn send_filter(
    ae: &mut AeCx<'_, '_>,
    to: NodeId,
    partition: u32,
    round: u8,
    estimate: u64,
    entries: &[(Key, u64)],
    pushed: Option<u32>,
) -> bool {
    let Some(fp) = bloom_fp_rate(estimate, entries.len()) else {
        return false;
    };
    let filter = match filter_of(entries, fp, ae.cx.rng) {
        Ok(f) => Box::new(f),
        Err(e) => {
            tracing::warn!(node = %ae.cx.config.name, partition, error = %e, "cannot build a Bloom filter");
            return false;
        }
    };
    let msg = match pushed {
        None => {
            ae.stats.bloom_rounds += 1;
            PeerMessage::AeBloom {
                partition,
                round,
                root: ae.replica.trees().root(partition),
                estimate,
                filter,
            }
        }
        Some(pushed) => PeerMessage::AeBloomReply {
            partition,
            round,
            estimate,
            pushed,
            filter,
        },
    };
    ae.send(to, msg);
    true
}

/// Pushes to `to` our entries its filter lacks; returns how many.
fn push_missing(ae: &mut AeCx<'_, '_>, to: &NodeId, entries: &[(Key, u64)], filter: &Bloom) -> u32 {
    let missing = missing_from(entries, filter);
    let count = missing.len() as u32;
    ae.push_objects(to, missing);
    count
}

/// All our (key, digest) entries of a partition, or None when there are more than
/// [`RECONCILE_ENTRIES_MAX`] or the scan failed (logged).
fn partition_entries(ae: &AeCx<'_, '_>, partition: u32) -> Option<Vec<(Key, u64)>> {
    let (start, end) = ae.members.ring().partition_range(partition);
    match scan_partition(start, end, &|lo, limit| {
        ae.replica.digests_in(lo, end, limit)
    }) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(node = %ae.cx.config.name, partition, error = %e, "anti-entropy scan failed");
            None
        }
    }
}

/// Pages through a position range with `scan(from_position, limit)`, at most
/// [`RECONCILE_ENTRIES_MAX`] entries (None beyond). A page restarts at the last position
/// seen, skipping the keys already read there, so keys sharing a position are neither
/// lost nor doubled at a page boundary.
fn scan_partition(
    start: u64,
    end: u64,
    scan: &dyn Fn(u64, usize) -> Result<Vec<(Key, u64)>, ReplicaError>,
) -> Result<Option<Vec<(Key, u64)>>, ReplicaError> {
    let mut out: Vec<(Key, u64)> = Vec::new();
    let mut lo = start;
    let mut at_lo: BTreeSet<Key> = BTreeSet::new();
    loop {
        let page = scan(lo, SCAN_ROWS_MAX)?;
        let full = page.len() >= SCAN_ROWS_MAX;
        let before = out.len();
        out.extend(page.into_iter().filter(|(k, _)| !at_lo.contains(k)));
        if out.len() > RECONCILE_ENTRIES_MAX {
            return Ok(None);
        }
        if !full || out.len() == before || lo >= end {
            return Ok(Some(out));
        }
        let Some((last, _)) = out.last() else {
            return Ok(Some(out));
        };
        let position = key_position(&last.bucket, &last.key);
        if position != lo {
            at_lo.clear();
            lo = position;
        }
        at_lo.extend(
            out.iter()
                .rev()
                .take_while(|(k, _)| key_position(&k.bucket, &k.key) == lo)
                .map(|(k, _)| k.clone()),
        );
    }
}

/// What a filter and a sketch hold for an entry: its `hash(key ‖ digest)`.
fn entry_item(key: &Key, digest: u64) -> [u8; 8] {
    entry_hash(&key.bucket, &key.key, digest).to_le_bytes()
}

/// An HLL sketch of a partition's entries.
pub fn sketch_of(entries: &[(Key, u64)]) -> Hll {
    let mut hll = Hll::new();
    for (key, digest) in entries {
        hll.insert(&entry_item(key, *digest));
    }
    // Estimating folds the pending codes (a hash set sent as 5 bytes a code) into the
    // varint-packed sparse list, which is what should travel.
    hll.estimate();
    hll
}

/// The estimated number of entries in one sketch but not the other (either way):
/// 2·|A∪B| − |A| − |B|, clamped at 0 (estimation error can make it negative).
pub fn difference_estimate(ours: &Hll, theirs: &Hll) -> Result<u64, SketchError> {
    let mut union = ours.clone();
    union.merge(theirs)?;
    let both = union.estimate().saturating_mul(2);
    Ok(both.saturating_sub(
        ours.clone()
            .estimate()
            .saturating_add(theirs.clone().estimate()),
    ))
}

/// The false-positive rate for a filter of `items` entries when `estimate` of them are
/// expected to differ: [`BLOOM_MISSES_TARGET`] / estimate within
/// [`BLOOM_FP_MIN`]..[`BLOOM_FP_MAX`], raised to fit [`BLOOM_FILTER_BYTES_MAX`]; None when
/// even [`BLOOM_FP_MAX`] does not fit.
pub fn bloom_fp_rate(estimate: u64, items: usize) -> Option<f64> {
    let wanted = (BLOOM_MISSES_TARGET / estimate.max(1) as f64).clamp(BLOOM_FP_MIN, BLOOM_FP_MAX);
    // An optimal filter needs n·ln(1/p)/ln²2 bits; the budget bounds p from below.
    let bits_max = (BLOOM_FILTER_BYTES_MAX * 8) as f64;
    let fitting = (-bits_max * LN_2 * LN_2 / items.max(1) as f64).exp();
    let fp = wanted.max(fitting);
    (fp <= BLOOM_FP_MAX).then_some(fp)
}

/// A filter of `entries` at rate `fp`, with a fresh seed from `rng`.
pub fn filter_of(
    entries: &[(Key, u64)],
    fp: f64,
    rng: &mut impl rand::Rng,
) -> Result<Bloom, SketchError> {
    let mut filter = Bloom::with_random_seed(entries.len().max(1), fp, rng)?;
    for (key, digest) in entries {
        filter.insert(&entry_item(key, *digest));
    }
    Ok(filter)
}

/// Our entries the other side's filter lacks — versions it surely does not hold — at
/// most [`AE_KEYS_MAX`] (the rest is found by a later round).
pub fn missing_from(entries: &[(Key, u64)], filter: &Bloom) -> Vec<Key> {
    entries
        .iter()
        .filter(|(key, digest)| !filter.contains(&entry_item(key, *digest)))
        .take(AE_KEYS_MAX)
        .map(|(key, _)| key.clone())
        .collect()
}

/// The differences expected to remain after a round found `found` at rate `fp`: each
/// found one had a chance `fp` of a twin hidden by a false positive. At least 1, since
/// the round is only run when the roots still differ.
pub fn next_estimate(found: u64, fp: f64) -> u64 {
    ((found as f64 * fp).ceil() as u64).max(1)
}

#[cfg(test)]
mod tests;
