//! A conservative, mergeable count-min sketch over byte strings.
//!
//! Hot-key statistics count traffic per key on every node and add the nodes' sketches up
//! into a cluster view. The published count-min crates either lose counts (they are not a
//! guaranteed upper bound) or cannot merge, so this one is ours: `depth` rows of `width`
//! saturating u64 counters, column per row from xxh3 double hashing. An estimate is the
//! minimum over rows, which never underestimates and, with probability at least 1 − δ,
//! overestimates by at most εN where N is the total count.
//!
//! Merging is a counter-wise sum: it is commutative and associative but, unlike the Bloom
//! and HLL merges, not idempotent — each node's sketch must be added exactly once.

use std::fmt;

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use crate::SketchError;

/// Most counters per row: ε ≥ e / 2^20 ≈ 2.6e-6.
pub const COUNTMIN_WIDTH_MAX: usize = 1 << 20;

/// Most rows: δ ≥ e^-16 ≈ 1.1e-7.
pub const COUNTMIN_DEPTH_MAX: usize = 16;

/// Most counters in one sketch (width × depth): 32 MiB of u64, small enough for a frame.
pub const COUNTMIN_COUNTERS_MAX: usize = 1 << 22;

/// Mixed into the seed for the second hash of the double-hashing scheme.
const SECOND_HASH_TWEAK: u64 = 0x9e37_79b9_7f4a_7c15;

const SKETCH: &str = "count-min sketch";

/// A count-min sketch: `depth` rows of `width` counters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CountMinWire")]
pub struct CountMin {
    width: usize,
    depth: usize,
    seed: u64,
    total: u64,
    /// Row-major: row `r` is `counters[r * width..(r + 1) * width]`.
    counters: Vec<u64>,
}

/// What must match for two sketches to merge: width, depth and hash seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountMinParams {
    /// Counters per row.
    pub width: usize,
    /// Number of rows.
    pub depth: usize,
    /// Hash seed.
    pub seed: u64,
}

/// The serde form, validated before it becomes a [`CountMin`].
#[derive(Deserialize)]
struct CountMinWire {
    width: usize,
    depth: usize,
    seed: u64,
    total: u64,
    counters: Vec<u64>,
}

impl CountMin {
    /// A sketch whose estimates exceed the truth by at most `epsilon × total` with
    /// probability at least `1 − delta`: width ⌈e/ε⌉, depth ⌈ln 1/δ⌉.
    ///
    /// Sketches merge only if built with the same `epsilon`, `delta` and `seed`.
    pub fn new(epsilon: f64, delta: f64, seed: u64) -> Result<CountMin, SketchError> {
        // Written so that NaN fails too.
        if !(epsilon > 0.0 && epsilon < 1.0) {
            return Err(invalid(
                "epsilon",
                epsilon,
                "strictly between 0 and 1".to_string(),
            ));
        }
        if !(delta > 0.0 && delta < 1.0) {
            return Err(invalid(
                "delta",
                delta,
                "strictly between 0 and 1".to_string(),
            ));
        }
        let width = (std::f64::consts::E / epsilon).ceil();
        if width > COUNTMIN_WIDTH_MAX as f64 {
            return Err(invalid(
                "epsilon",
                epsilon,
                format!("at least e / {COUNTMIN_WIDTH_MAX} (width {width} too large)"),
            ));
        }
        let depth = (1.0 / delta).ln().ceil().max(1.0);
        if depth > COUNTMIN_DEPTH_MAX as f64 {
            return Err(invalid(
                "delta",
                delta,
                format!("at least e^-{COUNTMIN_DEPTH_MAX} (depth {depth} too large)"),
            ));
        }
        // Both are small positive integers here, so the casts are exact.
        let (width, depth) = (width as usize, depth as usize);
        if width * depth > COUNTMIN_COUNTERS_MAX {
            return Err(invalid(
                "epsilon",
                epsilon,
                format!(
                    "width × depth at most {COUNTMIN_COUNTERS_MAX} counters \
                     (this needs {width} × {depth}); raise epsilon or delta"
                ),
            ));
        }
        Ok(CountMin {
            width,
            depth,
            seed,
            total: 0,
            counters: vec![0; width * depth],
        })
    }

    /// An empty sketch with the same width, depth and seed, so it merges with this one.
    pub fn cleared(&self) -> CountMin {
        CountMin {
            width: self.width,
            depth: self.depth,
            seed: self.seed,
            total: 0,
            counters: vec![0; self.counters.len()],
        }
    }

    /// Adds `count` occurrences of `item`. Counters saturate at `u64::MAX`.
    pub fn add(&mut self, item: &[u8], count: u64) {
        let cells = self.cells(item);
        for cell in cells {
            self.counters[cell] = self.counters[cell].saturating_add(count);
        }
        self.total = self.total.saturating_add(count);
    }

    /// An upper bound on how many times `item` was added.
    pub fn estimate(&self, item: &[u8]) -> u64 {
        self.cells(item)
            .map(|cell| self.counters[cell])
            .min()
            .unwrap_or(0)
    }

    /// The sum of every count added (N in the εN error bound).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counters per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Hash seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The error factor the width actually gives: e / width (≤ the ε asked for).
    pub fn epsilon(&self) -> f64 {
        std::f64::consts::E / self.width as f64
    }

    /// The failure probability the depth actually gives: e^-depth (≤ the δ asked for).
    pub fn delta(&self) -> f64 {
        (-(self.depth as f64)).exp()
    }

    /// Width, depth and seed: what [`CountMin::merge`] compares.
    pub fn params(&self) -> CountMinParams {
        CountMinParams {
            width: self.width,
            depth: self.depth,
            seed: self.seed,
        }
    }

    /// Adds `other`'s counts to `self`, as if `self` had seen both streams.
    ///
    /// Fails with [`SketchError::IncompatibleCountMin`] unless width, depth and seed match;
    /// `self` is then unchanged.
    pub fn merge(&mut self, other: &CountMin) -> Result<(), SketchError> {
        let (ours, theirs) = (self.params(), other.params());
        if ours != theirs {
            return Err(SketchError::IncompatibleCountMin { ours, theirs });
        }
        for (ours, theirs) in self.counters.iter_mut().zip(&other.counters) {
            *ours = ours.saturating_add(*theirs);
        }
        self.total = self.total.saturating_add(other.total);
        Ok(())
    }

    /// The counter index of `item` in each row: (h1 + row × h2) mod width.
    fn cells(&self, item: &[u8]) -> impl Iterator<Item = usize> + use<> {
        let h1 = XxHash3_64::oneshot_with_seed(self.seed, item);
        // Odd, so h2 is never 0 and the rows cannot all collapse onto h1's column.
        let h2 = XxHash3_64::oneshot_with_seed(self.seed ^ SECOND_HASH_TWEAK, item) | 1;
        let width = self.width;
        (0..self.depth).map(move |row| {
            let column = h1.wrapping_add((row as u64).wrapping_mul(h2)) % width as u64;
            // column < width, a usize, so the cast is lossless.
            row * width + column as usize
        })
    }
}

impl fmt::Display for CountMinParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "width {}, depth {}, seed {:#018x}",
            self.width, self.depth, self.seed
        )
    }
}

impl fmt::Debug for CountMin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counters are omitted: up to millions of them.
        f.debug_struct("CountMin")
            .field("width", &self.width)
            .field("depth", &self.depth)
            .field("seed", &format_args!("{:#018x}", self.seed))
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl TryFrom<CountMinWire> for CountMin {
    type Error = SketchError;

    fn try_from(wire: CountMinWire) -> Result<Self, Self::Error> {
        let malformed = |reason: String| SketchError::Malformed {
            sketch: SKETCH,
            len: wire.counters.len() * 8,
            reason,
        };
        if !(1..=COUNTMIN_WIDTH_MAX).contains(&wire.width)
            || !(1..=COUNTMIN_DEPTH_MAX).contains(&wire.depth)
            || wire.width * wire.depth > COUNTMIN_COUNTERS_MAX
        {
            return Err(malformed(format!(
                "width {} × depth {} outside 1..={COUNTMIN_WIDTH_MAX} × 1..={COUNTMIN_DEPTH_MAX} \
                 or above {COUNTMIN_COUNTERS_MAX} counters",
                wire.width, wire.depth
            )));
        }
        if wire.counters.len() != wire.width * wire.depth {
            return Err(malformed(format!(
                "{} counters for width {} × depth {}",
                wire.counters.len(),
                wire.width,
                wire.depth
            )));
        }
        // Every add and merge puts the same amount in each row, so each row sums to the
        // total (with the same saturation); anything else is corruption.
        for (row, counters) in wire.counters.chunks(wire.width).enumerate() {
            let sum = counters.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
            if sum != wire.total {
                return Err(malformed(format!(
                    "row {row} sums to {sum}, the total says {}",
                    wire.total
                )));
            }
        }
        Ok(CountMin {
            width: wire.width,
            depth: wire.depth,
            seed: wire.seed,
            total: wire.total,
            counters: wire.counters,
        })
    }
}

fn invalid(name: &'static str, value: f64, expected: String) -> SketchError {
    SketchError::InvalidParameter {
        sketch: SKETCH,
        name,
        value: value.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests;
