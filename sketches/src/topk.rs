//! Heavy-hitter tracking on top of a [`CountMin`].
//!
//! A count-min sketch answers "how hot is this key?" but cannot list the hot keys. The
//! statistics view needs that list per node and for the cluster, so [`TopK`] keeps the at
//! most `k` keys with the highest estimates seen so far next to its sketch. Merging sums the
//! sketches and re-estimates the union of both candidate lists against the merged sketch,
//! so a key that is warm on every node but hot on none still surfaces cluster-wide.
//!
//! Merge is commutative but not associative or idempotent: the sketch sum double-counts a
//! repeated merge, and a candidate dropped by an early merge cannot come back. Merge each
//! node's tracker into a fresh aggregate exactly once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::{CountMin, SketchError};

/// Largest `k` accepted: a statistics view shows tens of keys, and each candidate costs a
/// key copy and a sketch lookup on merge.
pub const TOPK_K_MAX: usize = 1024;

/// The `k` keys with the highest count-min estimates, and the sketch behind them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TopKWire")]
pub struct TopK {
    k: usize,
    sketch: CountMin,
    /// Candidate key → its estimate when last observed or merged. A list of pairs on the
    /// wire, because formats such as JSON only allow string map keys.
    #[serde(serialize_with = "serialize_candidates")]
    heavy: BTreeMap<Vec<u8>, u64>,
    /// The lowest candidate estimate once `heavy` is full, else 0: a new key must beat it.
    #[serde(skip)]
    floor: u64,
}

/// The serde form, validated before it becomes a [`TopK`].
#[derive(Deserialize)]
struct TopKWire {
    k: usize,
    sketch: CountMin,
    heavy: Vec<(serde_bytes::ByteBuf, u64)>,
}

impl TopK {
    /// Tracks at most `k` heavy hitters of the stream fed to `sketch` through this tracker.
    pub fn new(k: usize, sketch: CountMin) -> Result<TopK, SketchError> {
        if !(1..=TOPK_K_MAX).contains(&k) {
            return Err(SketchError::InvalidParameter {
                sketch: "top-k tracker",
                name: "k",
                value: k.to_string(),
                expected: format!("between 1 and {TOPK_K_MAX}"),
            });
        }
        Ok(TopK {
            k,
            sketch,
            heavy: BTreeMap::new(),
            floor: 0,
        })
    }

    /// An empty tracker with the same `k` and sketch parameters, so it merges with this one
    /// (a fresh window, or a fresh aggregate to merge every node's tracker into once).
    pub fn cleared(&self) -> TopK {
        TopK {
            k: self.k,
            sketch: self.sketch.cleared(),
            heavy: BTreeMap::new(),
            floor: 0,
        }
    }

    /// Counts `count` occurrences of `item` and updates the candidate list.
    pub fn observe(&mut self, item: &[u8], count: u64) {
        self.sketch.add(item, count);
        let estimate = self.sketch.estimate(item);
        if let Some(known) = self.heavy.get_mut(item) {
            let was_floor = *known == self.floor;
            *known = estimate;
            if was_floor {
                self.refresh_floor();
            }
            return;
        }
        if self.heavy.len() < self.k {
            self.heavy.insert(item.to_vec(), estimate);
            self.refresh_floor();
            return;
        }
        if estimate <= self.floor {
            return;
        }
        if let Some(coldest) = self.coldest() {
            self.heavy.remove(&coldest);
        }
        self.heavy.insert(item.to_vec(), estimate);
        self.refresh_floor();
    }

    /// The candidates, hottest first (ties by key), with their current estimates.
    ///
    /// Re-estimated here because a candidate's stored estimate dates from its last
    /// observation and later adds of colliding keys may have raised it since.
    pub fn top(&self) -> Vec<(&[u8], u64)> {
        let mut top: Vec<(&[u8], u64)> = self
            .heavy
            .keys()
            .map(|key| (key.as_slice(), self.sketch.estimate(key)))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        top
    }

    /// The bound on the number of candidates.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The sketch holding the whole stream's counts.
    pub fn sketch(&self) -> &CountMin {
        &self.sketch
    }

    /// Adds `other`'s stream: sums the sketches, then keeps the `k` hottest of both
    /// candidate lists as estimated by the merged sketch.
    ///
    /// Fails, leaving `self` unchanged, if `k` or the sketch parameters differ.
    pub fn merge(&mut self, other: &TopK) -> Result<(), SketchError> {
        if self.k != other.k {
            return Err(SketchError::IncompatibleTopK {
                ours_k: self.k,
                theirs_k: other.k,
            });
        }
        self.sketch.merge(&other.sketch)?;
        let mut candidates: Vec<(Vec<u8>, u64)> = std::mem::take(&mut self.heavy)
            .into_keys()
            .chain(other.heavy.keys().cloned())
            .map(|key| {
                let estimate = self.sketch.estimate(&key);
                (key, estimate)
            })
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        candidates.dedup_by(|a, b| a.0 == b.0);
        candidates.truncate(self.k);
        self.heavy = candidates.into_iter().collect();
        self.refresh_floor();
        Ok(())
    }

    /// The candidate to evict: lowest estimate, and among equals the largest key, so that
    /// eviction does not depend on insertion order.
    fn coldest(&self) -> Option<Vec<u8>> {
        self.heavy
            .iter()
            .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(key, _)| key.clone())
    }

    fn refresh_floor(&mut self) {
        self.floor = if self.heavy.len() < self.k {
            0
        } else {
            self.heavy.values().copied().min().unwrap_or(0)
        };
    }
}

impl TryFrom<TopKWire> for TopK {
    type Error = SketchError;

    fn try_from(wire: TopKWire) -> Result<Self, Self::Error> {
        let mut topk = TopK::new(wire.k, wire.sketch)?;
        let listed = wire.heavy.len();
        let malformed = |reason: String| SketchError::Malformed {
            sketch: "top-k tracker",
            len: listed,
            reason,
        };
        if listed > wire.k {
            return Err(malformed(format!("{listed} candidates for k = {}", wire.k)));
        }
        topk.heavy = wire
            .heavy
            .into_iter()
            .map(|(key, estimate)| (key.into_vec(), estimate))
            .collect();
        if topk.heavy.len() != listed {
            return Err(malformed("duplicate candidate keys".to_string()));
        }
        topk.refresh_floor();
        Ok(topk)
    }
}

fn serialize_candidates<S: Serializer>(
    heavy: &BTreeMap<Vec<u8>, u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(
        heavy
            .iter()
            .map(|(key, estimate)| (serde_bytes::Bytes::new(key), estimate)),
    )
}

#[cfg(test)]
mod tests;
