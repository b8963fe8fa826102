//! A seeded, mergeable Bloom filter over byte strings.
//!
//! Anti-entropy sends a filter of the keys a replica holds so that its peer can find the
//! keys it is missing without listing them. Two replicas' filters must be built from the
//! same seed to be comparable or unioned, and a filter arriving from the network must be
//! validated before use: `bloomfilter` itself trusts its input (a zero-length bitmap makes
//! it divide by zero, a huge hash count makes every lookup spin), so [`Bloom::from_bytes`]
//! checks everything the library does not.

use std::fmt;

use bloomfilter::Bloom as Inner;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SketchError;

/// Size of the header `bloomfilter` 3 puts before the bitmap: format version (1 byte),
/// bitmap length (u64 LE), hash count (u32 LE), seed (32 bytes).
pub const BLOOM_HEADER_BYTES: usize = 1 + 8 + 4 + 32;

/// Largest bitmap accepted, built or decoded: 16 MiB holds ~14M keys at 1 % and still fits
/// a peer frame.
pub const BLOOM_BITMAP_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest number of hash functions accepted; 64 already means a 2^-64 false-positive rate,
/// and a larger count from a peer would only make every lookup slow.
pub const BLOOM_HASHES_MAX: u32 = 64;

/// How many seeds [`Bloom::with_random_seed`] draws before concluding the RNG is broken.
/// A working RNG yields equal halves with probability 2^-128 per draw.
pub const BLOOM_SEED_DRAWS_MAX: usize = 8;

const SKETCH: &str = "bloom filter";

/// A Bloom filter over byte strings with a caller-chosen 32-byte seed.
pub struct Bloom {
    inner: Inner<[u8]>,
}

/// What must match for two filters to merge: bitmap size, hash count and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BloomParams {
    /// Bitmap size in bits.
    pub bits: u64,
    /// Number of hash functions.
    pub hashes: u32,
    /// The SipHash key material (two 16-byte keys).
    pub seed: [u8; 32],
}

impl Bloom {
    /// Builds an empty filter sized for `items_expected` items at `fp_rate` false positives.
    ///
    /// The seed's two halves must differ (see the crate docs for why); prefer
    /// [`Bloom::with_random_seed`] unless you are rebuilding a peer-compatible filter.
    pub fn new(items_expected: usize, fp_rate: f64, seed: [u8; 32]) -> Result<Bloom, SketchError> {
        if halves_equal(&seed) {
            return Err(SketchError::BloomSeedHalvesEqual { draws: 1 });
        }
        if items_expected == 0 {
            return Err(invalid("items_expected", "0", "at least 1".to_string()));
        }
        // Written so that NaN fails too.
        if !(fp_rate > 0.0 && fp_rate < 1.0) {
            return Err(invalid(
                "fp_rate",
                &fp_rate.to_string(),
                "strictly between 0 and 1".to_string(),
            ));
        }
        let bitmap_bytes = Inner::<[u8]>::compute_bitmap_size(items_expected, fp_rate);
        if bitmap_bytes > BLOOM_BITMAP_BYTES_MAX {
            return Err(invalid(
                "items_expected",
                &items_expected.to_string(),
                format!(
                    "a filter needing at most {BLOOM_BITMAP_BYTES_MAX} bitmap bytes \
                     (this one needs {bitmap_bytes} at fp_rate {fp_rate}); shard the key space"
                ),
            ));
        }
        let inner = Inner::new_with_seed(bitmap_bytes, items_expected, &seed)
            .map_err(|reason| invalid("seed", "(32 bytes)", reason.to_string()))?;
        let hashes = inner.number_of_hash_functions();
        if hashes > BLOOM_HASHES_MAX {
            return Err(invalid(
                "fp_rate",
                &fp_rate.to_string(),
                format!(
                    "a rate needing at most {BLOOM_HASHES_MAX} hash functions (this one needs {hashes})"
                ),
            ));
        }
        Ok(Bloom { inner })
    }

    /// Builds an empty filter with a seed drawn from `rng`, redrawing if the halves are equal.
    ///
    /// The caller passes the RNG because the ringkv core never owns an unseeded one: a
    /// simulated cluster replays exactly from its seed.
    pub fn with_random_seed(
        items_expected: usize,
        fp_rate: f64,
        rng: &mut impl rand::Rng,
    ) -> Result<Bloom, SketchError> {
        for _ in 0..BLOOM_SEED_DRAWS_MAX {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            if !halves_equal(&seed) {
                return Bloom::new(items_expected, fp_rate, seed);
            }
        }
        Err(SketchError::BloomSeedHalvesEqual {
            draws: BLOOM_SEED_DRAWS_MAX,
        })
    }

    /// Decodes a filter produced by [`Bloom::to_bytes`], typically received from a peer.
    ///
    /// Every malformation is an error, never a panic: short or oversized input, a foreign
    /// format version, a length field that disagrees with the input, an empty bitmap, a
    /// hash count of zero or above [`BLOOM_HASHES_MAX`], or a seed with equal halves.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bloom, SketchError> {
        check_encoded_len(bytes)?;
        let inner =
            Inner::<[u8]>::from_slice(bytes).map_err(|reason| malformed(bytes.len(), reason))?;
        Bloom::checked(inner, bytes.len())
    }

    /// The filter's wire form: `bloomfilter` 3's header followed by the bitmap.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    /// Records `item`.
    pub fn insert(&mut self, item: &[u8]) {
        self.inner.set(item);
    }

    /// Whether `item` may have been inserted: false positives happen, false negatives never.
    pub fn contains(&self, item: &[u8]) -> bool {
        self.inner.check(item)
    }

    /// Whether nothing has been inserted (no bit set).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Bitmap size in bits.
    pub fn bits(&self) -> u64 {
        self.inner.len()
    }

    /// Number of hash functions.
    pub fn hashes(&self) -> u32 {
        self.inner.number_of_hash_functions()
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> [u8; 32] {
        self.inner.seed()
    }

    /// Size, hash count and seed: what [`Bloom::merge`] compares.
    pub fn params(&self) -> BloomParams {
        BloomParams {
            bits: self.bits(),
            hashes: self.hashes(),
            seed: self.seed(),
        }
    }

    /// Adds every item of `other` to `self` (bitwise OR of the bitmaps).
    ///
    /// Fails with [`SketchError::IncompatibleBloom`] unless both filters have the same bits,
    /// hashes and seed; `self` is then unchanged.
    pub fn merge(&mut self, other: &Bloom) -> Result<(), SketchError> {
        let (ours, theirs) = (self.params(), other.params());
        if ours != theirs {
            return Err(SketchError::IncompatibleBloom { ours, theirs });
        }
        // bloomfilter exposes no bitmap setter, so OR the bitmaps in the wire form and decode.
        // Equal params mean equal lengths, and the bitmap is the tail of the wire form.
        let mut bytes = self.inner.to_bytes();
        let theirs_bytes = other.inner.as_slice();
        let bitmap_start = bytes.len().saturating_sub(self.bitmap_bytes());
        for (ours_byte, theirs_byte) in bytes[bitmap_start..]
            .iter_mut()
            .zip(&theirs_bytes[bitmap_start..])
        {
            *ours_byte |= *theirs_byte;
        }
        let len = bytes.len();
        self.inner = Inner::from_bytes(bytes).map_err(|reason| {
            malformed(len, &format!("union rejected by bloomfilter: {reason}"))
        })?;
        Ok(())
    }

    /// The union of two compatible filters, leaving both inputs untouched.
    pub fn union(&self, other: &Bloom) -> Result<Bloom, SketchError> {
        let mut merged = self.clone();
        merged.merge(other)?;
        Ok(merged)
    }

    fn bitmap_bytes(&self) -> usize {
        // bits() is 8 x the bitmap length, which is at most BLOOM_BITMAP_BYTES_MAX.
        usize::try_from(self.bits() / 8).unwrap_or(usize::MAX)
    }

    fn from_vec(bytes: Vec<u8>) -> Result<Bloom, SketchError> {
        check_encoded_len(&bytes)?;
        let len = bytes.len();
        let inner = Inner::<[u8]>::from_bytes(bytes).map_err(|reason| malformed(len, reason))?;
        Bloom::checked(inner, len)
    }

    /// The checks `bloomfilter` does not make on a decoded filter.
    fn checked(inner: Inner<[u8]>, len: usize) -> Result<Bloom, SketchError> {
        let hashes = inner.number_of_hash_functions();
        if hashes > BLOOM_HASHES_MAX {
            return Err(malformed(
                len,
                &format!("{hashes} hash functions, above the {BLOOM_HASHES_MAX} allowed"),
            ));
        }
        if halves_equal(&inner.seed()) {
            return Err(malformed(
                len,
                "seed halves are equal (a degenerate filter with ~4x the false positives)",
            ));
        }
        Ok(Bloom { inner })
    }
}

impl fmt::Display for BloomParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bits, {} hashes, seed ", self.bits, self.hashes)?;
        for byte in self.seed {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl Clone for Bloom {
    fn clone(&self) -> Self {
        // bloomfilter's derived Clone needs `[u8]: Clone`, so re-decode our own valid bytes.
        let inner = Inner::from_slice(self.inner.as_slice())
            .expect("invariant: a live filter's own bytes always decode"); // invariant: they were produced by bloomfilter and validated
        Bloom { inner }
    }
}

impl fmt::Debug for Bloom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bloom")
            .field("params", &format_args!("{}", self.params()))
            .field("empty", &self.is_empty())
            .finish()
    }
}

impl PartialEq for Bloom {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_slice() == other.inner.as_slice()
    }
}

impl Eq for Bloom {}

impl Serialize for Bloom {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.inner.as_slice())
    }
}

impl<'de> Deserialize<'de> for Bloom {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Bloom::from_vec(bytes.into_vec()).map_err(D::Error::custom)
    }
}

fn halves_equal(seed: &[u8; 32]) -> bool {
    seed[..16] == seed[16..]
}

/// Length checks done before anything is copied or handed to `bloomfilter`.
fn check_encoded_len(bytes: &[u8]) -> Result<(), SketchError> {
    if bytes.len() <= BLOOM_HEADER_BYTES {
        return Err(malformed(
            bytes.len(),
            &format!("needs a {BLOOM_HEADER_BYTES}-byte header and a non-empty bitmap"),
        ));
    }
    let bitmap_bytes = bytes.len() - BLOOM_HEADER_BYTES;
    if bitmap_bytes > BLOOM_BITMAP_BYTES_MAX {
        return Err(malformed(
            bytes.len(),
            &format!("bitmap of {bitmap_bytes} bytes, above the {BLOOM_BITMAP_BYTES_MAX} allowed"),
        ));
    }
    Ok(())
}

fn malformed(len: usize, reason: &str) -> SketchError {
    SketchError::Malformed {
        sketch: SKETCH,
        len,
        reason: reason.to_string(),
    }
}

fn invalid(name: &'static str, value: &str, expected: String) -> SketchError {
    SketchError::InvalidParameter {
        sketch: SKETCH,
        name,
        value: value.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests;
