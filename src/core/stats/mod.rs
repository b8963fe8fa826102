//! Per-node statistics that merge into cluster figures: distinct keys, hot keys and
//! anti-entropy progress.
//!
//! Operators want to know how many keys the cluster holds, which keys take the traffic, and
//! whether anti-entropy keeps up. Counting exactly would mean scanning every replica and
//! de-duplicating N copies of every key across nodes, so each node keeps sketches that
//! merge instead:
//!
//! - [`DistinctKeys`]: an HLL at [`ringkv_sketches::HLL_PRECISION`] (p = 14, ~0.8 % standard error) of every
//!   key in this node's data space (hints are not data: the primary counts them), plus one
//!   small HLL per partition at [`PARTITION_HLL_PRECISION`] (p = 10, ~3.2 % standard error,
//!   at most ~1 KiB each once dense, a few bytes while sparse, nothing for a partition this
//!   node holds no key of). A p = 14 sketch per partition would cost 12 KiB × 1024 = 12 MiB
//!   per node; p = 10 caps it near 1 MiB. HLL union is a register-wise max, so the union of
//!   the nodes' sketches counts each key once however many replicas hold it. The sketches
//!   count keys *ever stored since the last start-up scan*: deletes write tombstones and
//!   reaping removes them, but an HLL cannot forget, so neither shrinks the figure until
//!   the next restart rebuilds it from storage. There is no scan of its own: the start-up
//!   Merkle tree rebuild (bounded steps) reports every stored key to it; writes during it
//!   are counted by [`crate::core::replica::Replica`] directly, and counting a key twice
//!   is harmless (HLL inserts are idempotent).
//! - [`RequestWindows`]: count-min request counts of the keys this node *coordinated*
//!   (every client get and write is coordinated by exactly one node, so summing the nodes'
//!   sketches counts each request once), in a current and a previous window of
//!   `stats_window_ms` ([`STATS_WINDOW_MS_DEFAULT`]), each with a `TopK` of
//!   [`HOT_KEYS_K`] candidates. Old traffic ages out by whole windows.
//! - [`AeProgress`]: the last time this node took part in a root comparison of each
//!   partition, as initiator or responder (a responder whose root matches sends nothing
//!   back, so only it knows the comparison completed).
//!
//! Nothing here reads a clock: times are [`Now`](crate::core::node::Now) readings passed in.
//! Sketch items are the key's ring position (`xxh3(bucket ‖ 0x00 ‖ key)`, already a
//! uniform 64-bit hash) for HLLs, and `bucket ‖ 0x00 ‖ key` for count-min, so hot keys can
//! be named (buckets never contain 0x00, keys may).

mod cluster;
mod progress;
mod report;
mod window;

use ringkv_sketches::{HLL_PRECISION_MAX, HLL_PRECISION_MIN, Hll, SketchError};
use thiserror::Error;

use crate::core::placement::ring::NodeId;
use crate::proto::Key;

pub use cluster::{ClusterStats, HotKey, NodeAnswer, Unanswered};
pub use progress::AeProgress;
pub(crate) use report::Statistics;
pub use report::{AeReport, PartitionStats, StatsInfo};
pub use window::RequestWindows;

/// Default length of one request-count window: hot keys cover the last one to two of them.
pub const STATS_WINDOW_MS_DEFAULT: u64 = 60_000;
/// Register-index bits of the per-partition HLLs: 1024 registers, ~3.2 % standard error,
/// at most ~1 KiB per partition (encoded) once dense.
pub const PARTITION_HLL_PRECISION: u8 = 10;
/// Hot-key candidates each window keeps (and the most a stats reply lists per window).
pub const HOT_KEYS_K: usize = 32;
/// Count-min error factor: an estimate exceeds the truth by at most 0.1 % of the window's
/// requests (with probability 1 − [`HOT_KEYS_DELTA`]); width 2719.
pub const HOT_KEYS_EPSILON: f64 = 0.001;
/// Count-min failure probability; depth 5. With [`HOT_KEYS_EPSILON`]: 13 595 counters,
/// ~106 KiB per window in memory.
pub const HOT_KEYS_DELTA: f64 = 0.01;
/// Count-min hash seed, the same on every node so their sketches merge (ASCII "ringkvcm").
pub const HOT_KEYS_SEED: u64 = u64::from_be_bytes(*b"ringkvcm");

const _: () = assert!(
    PARTITION_HLL_PRECISION >= HLL_PRECISION_MIN && PARTITION_HLL_PRECISION <= HLL_PRECISION_MAX
);

/// Why statistics could not be built, decoded or merged. A failed merge leaves the
/// sketches it was merging into unchanged.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// The request-count window has no length; nothing was built.
    #[error(
        "stats_window_ms is 0; give the request-count window a length in milliseconds (default 60000)"
    )]
    ZeroWindow,
    /// The hot-key sketch parameters are invalid (a bug in the constants); nothing was
    /// built.
    #[error("invalid statistics setting: {0}")]
    BadSketchSetting(#[source] Box<SketchError>),
    /// A node's reply carries a sketch that does not decode; that node is left out.
    #[error(
        "node {node} sent a {what} that cannot be used: {source}; it may run another release — upgrade it, then ask again"
    )]
    Sketch {
        node: NodeId,
        what: &'static str,
        #[source]
        source: Box<SketchError>,
    },
    /// Two sketches have different shapes (precision, width); nothing was merged.
    #[error("cannot merge {what}s: {source}")]
    Incompatible {
        what: &'static str,
        #[source]
        source: Box<SketchError>,
    },
    #[error(
        "cannot merge the distinct-key sketches of rings of {ours} and {theirs} partitions; only nodes of one cluster merge"
    )]
    /// The sketches come from rings of different sizes; nothing was merged.
    Partitions { ours: u32, theirs: u32 },
    /// This node could not encode its own sketches; no reply was built.
    #[error("node {node} could not encode its statistics: {reason}; this is a bug, report it")]
    Encode { node: NodeId, reason: String },
}

/// Distinct keys stored by one node: one accurate sketch for the node, one small sketch
/// per partition that holds keys (filled at start by the Merkle tree rebuild's scan).
#[derive(Clone, Debug)]
pub struct DistinctKeys {
    node: Hll,
    /// Index = partition; `None` until the partition's first key.
    partitions: Vec<Option<Hll>>,
    partition_bits: u32,
}

impl DistinctKeys {
    /// Empty sketches for a ring of `partitions` (a power of two).
    pub fn new(partitions: u32) -> DistinctKeys {
        DistinctKeys {
            node: Hll::new(),
            partitions: vec![None; partitions as usize],
            partition_bits: partitions.trailing_zeros(),
        }
    }

    /// Counts the key at ring `position` (its `key_position`).
    pub fn insert(&mut self, position: u64) {
        let item = position.to_be_bytes();
        self.node.insert(&item);
        let partition = self.partition_of(position);
        if let Some(slot) = self.partitions.get_mut(partition) {
            slot.get_or_insert_with(partition_sketch).insert(&item);
        }
    }

    /// The node-wide sketch (precision [`ringkv_sketches::HLL_PRECISION`]).
    pub fn node_sketch(&self) -> &Hll {
        &self.node
    }

    /// Estimated distinct keys on this node.
    pub fn estimate(&mut self) -> u64 {
        self.node.estimate()
    }

    /// A partition's sketch, if it holds any key.
    pub fn partition_sketch(&self, partition: u32) -> Option<&Hll> {
        self.partitions.get(partition as usize)?.as_ref()
    }

    /// (partition, estimated distinct keys, encoded sketch bytes) of every partition that
    /// holds a key, in partition order.
    pub fn partition_estimates(&mut self) -> Vec<(u32, u64, usize)> {
        self.partitions
            .iter_mut()
            .enumerate()
            .filter_map(|(p, slot)| {
                let hll = slot.as_mut()?;
                // p < partitions, a u32.
                Some((p as u32, hll.estimate(), hll.encoded_bytes()))
            })
            .collect()
    }

    /// Adds another node's (or another replica's) sketches: afterwards this one estimates
    /// the union of both key sets. Fails, leaving `self` unchanged, unless both cover the
    /// same number of partitions with the same precisions.
    pub fn merge(&mut self, other: &DistinctKeys) -> Result<(), StatsError> {
        if self.partitions.len() != other.partitions.len() {
            return Err(StatsError::Partitions {
                ours: self.partitions.len() as u32,
                theirs: other.partitions.len() as u32,
            });
        }
        let mut merged = self.clone();
        merged
            .node
            .merge(&other.node)
            .map_err(|source| StatsError::Incompatible {
                what: "distinct-key sketch",
                source: Box::new(source),
            })?;
        for (ours, theirs) in merged.partitions.iter_mut().zip(&other.partitions) {
            if let Some(theirs) = theirs {
                ours.get_or_insert_with(partition_sketch)
                    .merge(theirs)
                    .map_err(|source| StatsError::Incompatible {
                        what: "partition distinct-key sketch",
                        source: Box::new(source),
                    })?;
            }
        }
        self.node = merged.node;
        self.partitions = merged.partitions;
        Ok(())
    }

    fn partition_of(&self, position: u64) -> usize {
        if self.partition_bits == 0 {
            0
        } else {
            (position >> (64 - self.partition_bits)) as usize
        }
    }
}

/// The count-min item naming `key`: `bucket ‖ 0x00 ‖ key`.
#[cfg(any(test, feature = "sim"))]
pub fn sketch_item(key: &Key) -> Vec<u8> {
    let mut item = Vec::with_capacity(key.bucket.len() + 1 + key.key.len());
    write_sketch_item(&mut item, key);
    item
}

/// Replaces `item`'s contents with [`sketch_item`]`(key)`, reusing its allocation.
pub(crate) fn write_sketch_item(item: &mut Vec<u8>, key: &Key) {
    item.clear();
    item.extend_from_slice(&key.bucket);
    item.push(0);
    item.extend_from_slice(&key.key);
}

/// The key a count-min item names; `None` for bytes [`sketch_item`] cannot produce.
pub fn item_key(item: &[u8]) -> Option<Key> {
    let at = item.iter().position(|&b| b == 0)?;
    let (bucket, rest) = item.split_at(at);
    if bucket.is_empty() {
        return None;
    }
    Some(Key::new(bucket, rest.get(1..).unwrap_or_default()))
}

/// An empty per-partition sketch.
fn partition_sketch() -> Hll {
    Hll::with_precision(PARTITION_HLL_PRECISION)
        .expect("invariant: PARTITION_HLL_PRECISION is in range, asserted at compile time") // invariant: const-asserted above
}

#[cfg(test)]
mod tests;
