//! A deterministic, mergeable HyperLogLog++ distinct counter over byte strings.
//!
//! Statistics need per-partition distinct-key counts that add up to a cluster figure, and
//! anti-entropy needs a cheap estimate of how far two replicas have drifted to size its
//! Bloom exchange. Both only work if every node hashes keys identically, so the hasher is a
//! fixed-seed xxHash64 ([`HllHashBuilder`]) rather than a per-process random state.
//! [`Hll::new`] uses [`HLL_PRECISION`] everywhere a figure must be accurate (node and
//! cluster distinct keys, the `hll` CRDT); [`Hll::with_precision`] builds smaller sketches
//! where memory matters more than accuracy, such as one per partition. Only sketches of
//! the same precision merge; a mismatch is a typed error, never a silent wrong answer.
//!
//! Known limitation of `hyperloglogplus` 0.4 (tabac/hyperloglog.rs#19): its sparse
//! representation keeps two codes for the same fine-grained index when their rank differs,
//! which can overcount very slightly below ~5k items. Once dense, it is the textbook
//! algorithm (about 0.8 % standard error at p = 14).

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use twox_hash::XxHash64;

use crate::SketchError;
use crate::hll_wire;

/// Register-index bits: 2^14 registers, ~12 KiB dense, ~0.8 % standard error.
pub const HLL_PRECISION: u8 = 14;

/// Smallest precision accepted: 16 registers (the library's lower bound).
pub const HLL_PRECISION_MIN: u8 = 4;

/// Largest precision accepted: 2^18 registers, ~205 KiB dense (the library's upper bound).
pub const HLL_PRECISION_MAX: u8 = 18;

/// Seed of the xxHash64 every node uses for HLL items (ASCII "ringkvhl"); changing it makes
/// new sketches incomparable with stored ones.
pub const HLL_HASH_SEED: u64 = u64::from_be_bytes(*b"ringkvhl");

// hyperloglogplus accepts precisions 4..=18 only.
const _: () = assert!(HLL_PRECISION >= HLL_PRECISION_MIN && HLL_PRECISION <= HLL_PRECISION_MAX);
const _: () = assert!(HLL_PRECISION_MIN >= 4 && HLL_PRECISION_MAX <= 18);

/// The `BuildHasher` every [`Hll`] uses: xxHash64 with [`HLL_HASH_SEED`].
///
/// Zero-sized and serde-able because `hyperloglogplus` stores and serialises its builder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HllHashBuilder;

/// The library type. `H` only appears in a `PhantomData` and in the `HyperLogLog` trait,
/// which we bypass with `insert_any`; it must be `Sized + Clone` for the derived `Clone`.
pub(crate) type Inner = HyperLogLogPlus<Vec<u8>, HllHashBuilder>;

/// A HyperLogLog++ sketch, at precision [`HLL_PRECISION`] unless built otherwise.
#[derive(Clone)]
pub struct Hll {
    inner: Inner,
    /// Kept beside `inner` because the library only exposes it through a private trait.
    precision: u8,
}

/// An `io::Write` that only counts, to measure an encoding without allocating it.
struct ByteCounter(usize);

/// Hashes exactly the item's bytes, without the `usize` length prefix `Hash for [u8]`
/// adds, so estimates do not depend on the platform's pointer width.
struct RawBytes<'a>(&'a [u8]);

impl Hll {
    /// An empty sketch.
    pub fn new() -> Hll {
        let inner = Inner::new(HLL_PRECISION, HllHashBuilder)
            .expect("invariant: HLL_PRECISION is within 4..=18, checked at compile time"); // invariant: const-asserted above
        Hll {
            inner,
            precision: HLL_PRECISION,
        }
    }

    /// An empty sketch of 2^`precision` registers: standard error about 1.04 / √(2^p),
    /// dense size 0.8 × 2^p bytes. Fails outside
    /// [`HLL_PRECISION_MIN`]`..=`[`HLL_PRECISION_MAX`].
    pub fn with_precision(precision: u8) -> Result<Hll, SketchError> {
        let invalid = || SketchError::InvalidParameter {
            sketch: "hyperloglog",
            name: "precision",
            value: precision.to_string(),
            expected: format!("between {HLL_PRECISION_MIN} and {HLL_PRECISION_MAX}"),
        };
        if !(HLL_PRECISION_MIN..=HLL_PRECISION_MAX).contains(&precision) {
            return Err(invalid());
        }
        let inner = Inner::new(precision, HllHashBuilder).map_err(|_| invalid())?;
        Ok(Hll { inner, precision })
    }

    /// Register-index bits of this sketch.
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// Bytes of this sketch's MessagePack encoding: what a peer receives, and a close upper
    /// bound on its heap size (sparse codes, or dense registers at 0.8 byte each, plus a
    /// few bytes per header field).
    pub fn encoded_bytes(&self) -> usize {
        let mut counter = ByteCounter(0);
        // The encoder's only failure modes are a failing writer (this one never fails) and
        // types MessagePack cannot express (the sketch holds integers and byte lists).
        rmp_serde::encode::write(&mut counter, self)
            .expect("invariant: encoding a sketch into a counter cannot fail"); // invariant: see above
        counter.0
    }

    /// Records `item`.
    pub fn insert(&mut self, item: &[u8]) {
        self.inner.insert_any(&RawBytes(item));
    }

    /// The estimated number of distinct items inserted (in this sketch and all merged in).
    ///
    /// Takes `&mut self` because the sparse representation folds its pending buffer first.
    pub fn estimate(&mut self) -> u64 {
        // A float-to-int `as` saturates; the estimate is non-negative and finite in practice.
        self.inner.count().round() as u64
    }

    /// Adds every item of `other` to `self` (register-wise maximum).
    ///
    /// Fails, leaving `self` unchanged, unless both sketches have the same precision.
    pub fn merge(&mut self, other: &Hll) -> Result<(), SketchError> {
        if self.precision != other.precision {
            return Err(SketchError::IncompatibleHll {
                reason: format!(
                    "ours has precision {}, theirs {}",
                    self.precision, other.precision
                ),
                precision: self.precision,
            });
        }
        self.inner
            .merge(&other.inner)
            .map_err(|err| SketchError::IncompatibleHll {
                reason: err.to_string(),
                precision: self.precision,
            })
    }

    pub(crate) fn from_inner(inner: Inner, precision: u8) -> Hll {
        Hll { inner, precision }
    }
}

impl BuildHasher for HllHashBuilder {
    type Hasher = XxHash64;

    fn build_hasher(&self) -> XxHash64 {
        XxHash64::with_seed(HLL_HASH_SEED)
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

impl fmt::Debug for Hll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The derived Debug of the library prints all 16384 registers; keep logs readable.
        f.debug_struct("Hll")
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl Hash for RawBytes<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Hll {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hll_wire::deserialize(deserializer)
            .map(|(inner, precision)| Hll::from_inner(inner, precision))
    }
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
