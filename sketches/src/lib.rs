//! Mergeable, serde-ready sketches for ringkv.
//!
//! ringkv nodes summarise what they hold and what they serve without shipping the data
//! itself: anti-entropy sizes and exchanges Bloom filters of keys, and statistics roll up
//! distinct-key counts and hot keys from every node into one cluster figure. That only
//! works if every summary can travel over the wire and be merged with a peer's, so each
//! type here is `Serialize + Deserialize + Clone + Debug` and has a checked
//! `merge(&mut self, other: &Self) -> Result<(), SketchError>` that refuses a sketch built
//! with another size or seed instead of silently producing garbage.
//!
//! - [`Bloom`] wraps `bloomfilter` 3. Its 32-byte seed keys two SipHash-1-3 hashers, one per
//!   half; equal halves make both hashers identical, so the double-hashing scheme collapses
//!   to one hash and the false-positive rate roughly quadruples. Seeds with equal halves are
//!   therefore refused, and [`Bloom::with_random_seed`] draws one from a caller-supplied RNG
//!   (the ringkv core owns no randomness of its own).
//! - [`Hll`] wraps `hyperloglogplus` 0.4 (HyperLogLog++) at precision [`HLL_PRECISION`] (or a
//!   smaller one chosen with [`Hll::with_precision`]) with a fixed-seed xxHash64 hasher so
//!   that every node hashes alike. The similarly named
//!   `hyperloglogplusplus` crate is an empty placeholder, which is why `hyperloglogplus` is used.
//! - [`CountMin`] is ours: the published count-min crates either undercount (they are not
//!   conservative upper bounds) or cannot merge. [`TopK`] tracks heavy hitters on top of it.
//!
//! ```
//! use rand::SeedableRng;
//! use ringkv_sketches::{Bloom, CountMin, Hll, SketchError};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let mut ours = Bloom::with_random_seed(1_000, 0.01, &mut rng)?;
//! let mut theirs = Bloom::new(1_000, 0.01, ours.seed())?;
//! ours.insert(b"bucket/a");
//! theirs.insert(b"bucket/b");
//! ours.merge(&theirs)?;
//! assert!(ours.contains(b"bucket/a") && ours.contains(b"bucket/b"));
//!
//! let (mut node_a, mut node_b) = (Hll::new(), Hll::new());
//! node_a.insert(b"k1");
//! node_b.insert(b"k2");
//! node_a.merge(&node_b)?;
//! assert_eq!(node_a.estimate(), 2);
//!
//! let mut hot = CountMin::new(0.001, 0.01, 42)?;
//! hot.add(b"k1", 3);
//! assert!(hot.estimate(b"k1") >= 3);
//! let elsewhere = CountMin::new(0.001, 0.01, 43)?;
//! assert!(matches!(
//!     hot.merge(&elsewhere),
//!     Err(SketchError::IncompatibleCountMin { .. })
//! ));
//! # Ok::<(), SketchError>(())
//! ```
//!
//! Byte-oriented hashing note: `Bloom` hashes items through `Hash for [u8]`, whose length
//! prefix is a `usize`; filters are therefore only comparable between nodes with the same
//! pointer width (ringkv targets 64-bit platforms). `Hll` and `CountMin` hash the raw bytes
//! and are platform-independent.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod bloom;
mod countmin;
mod hll;
mod hll_wire;
mod topk;

pub use bloom::{
    BLOOM_BITMAP_BYTES_MAX, BLOOM_HASHES_MAX, BLOOM_HEADER_BYTES, BLOOM_SEED_DRAWS_MAX, Bloom,
    BloomParams,
};
pub use countmin::{
    COUNTMIN_COUNTERS_MAX, COUNTMIN_DEPTH_MAX, COUNTMIN_WIDTH_MAX, CountMin, CountMinParams,
};
pub use hll::{
    HLL_HASH_SEED, HLL_PRECISION, HLL_PRECISION_MAX, HLL_PRECISION_MIN, Hll, HllHashBuilder,
};
pub use topk::{TOPK_K_MAX, TopK};

/// Why a sketch could not be built, decoded or merged.
///
/// One enum for the whole crate: callers (anti-entropy, statistics) treat every variant
/// the same way — log it with the peer's name and drop or rebuild the sketch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// A Bloom seed whose two 16-byte halves are equal.
    #[error(
        "bloom seed halves are equal: both SipHash keys would be the same, the filter's \
         double hashing collapses to a single hash and its false-positive rate roughly \
         quadruples; draw the seed with Bloom::with_random_seed (tried {draws} draw(s))"
    )]
    BloomSeedHalvesEqual {
        /// How many seeds were drawn before giving up (1 for a caller-supplied seed).
        draws: usize,
    },
    /// A constructor argument outside its valid range.
    #[error("invalid {sketch} parameter {name} = {value}: {expected}")]
    InvalidParameter {
        /// Which sketch type refused it.
        sketch: &'static str,
        /// The argument's name.
        name: &'static str,
        /// The value given, formatted.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// Two Bloom filters with a different size, hash count or seed.
    #[error(
        "cannot merge bloom filters: ours is {ours}, theirs is {theirs}; only filters with \
         the same bits, hashes and seed merge — rebuild one with the other's parameters"
    )]
    IncompatibleBloom {
        /// Our parameters.
        ours: BloomParams,
        /// The other filter's parameters.
        theirs: BloomParams,
    },
    /// Two count-min sketches with a different width, depth or seed.
    #[error(
        "cannot merge count-min sketches: ours is {ours}, theirs is {theirs}; only sketches \
         with the same width, depth and seed merge — build both from the same epsilon, delta \
         and seed"
    )]
    IncompatibleCountMin {
        /// Our parameters.
        ours: CountMinParams,
        /// The other sketch's parameters.
        theirs: CountMinParams,
    },
    /// Two top-k trackers with a different `k`.
    #[error(
        "cannot merge top-k trackers: ours keeps k = {ours_k}, theirs keeps k = {theirs_k}; \
         configure every node with the same k"
    )]
    IncompatibleTopK {
        /// Our bound.
        ours_k: usize,
        /// The other tracker's bound.
        theirs_k: usize,
    },
    /// Two HyperLogLog sketches of different precisions (or another refusal of the library).
    #[error(
        "cannot merge hyperloglog sketches: {reason}; only sketches of the same precision \
         merge — build both with precision {precision}"
    )]
    IncompatibleHll {
        /// What differed.
        reason: String,
        /// Our sketch's precision.
        precision: u8,
    },
    /// Bytes from the network or disk that do not decode to a valid sketch.
    #[error(
        "malformed {sketch} (input size {len}): {reason}; the sender is corrupt or runs an \
         incompatible version — drop this sketch and request a fresh one"
    )]
    Malformed {
        /// Which sketch type was being decoded.
        sketch: &'static str,
        /// Size of the rejected input: bytes for a Bloom filter, counters × 8 for a
        /// count-min sketch, candidates for a top-k tracker.
        len: usize,
        /// What was wrong with it.
        reason: String,
    },
}
