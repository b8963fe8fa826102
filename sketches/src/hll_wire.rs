//! Validated decoding of `hyperloglogplus` 0.4 sketches received from peers.
//!
//! The library derives `Deserialize` and then trusts every field: a varint buffer that runs
//! off its end, an unsorted sparse list, a register count that disagrees with the registers
//! or a precision of 0 all make later calls index out of bounds or overflow, i.e. panic the
//! node. Its fields are private, so this module mirrors the serde layout of the library's
//! structs field for field (same names, order and types), checks every invariant the
//! library relies on, and only then re-encodes the mirror with MessagePack and lets the
//! library decode it. A unit test pins the mirror to the library's layout.

use std::collections::HashSet;
use std::marker::PhantomData;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::hll::{HLL_PRECISION_MAX, HLL_PRECISION_MIN, HllHashBuilder, Inner};

/// The library's sparse precision p' = 25 and its linear-counting range 2^(p'-1).
const SPARSE_PRECISION: u32 = 25;
const SPARSE_REGISTERS: usize = 1 << (SPARSE_PRECISION - 1);
/// Six-bit registers, five per u32 word.
const REGISTERS_PER_WORD: usize = 5;
const REGISTER_BITS: usize = 6;
/// A u32 varint has at most five bytes.
const VARINT_BYTES_MAX: usize = 5;

/// Every size the library derives from a precision p.
#[derive(Clone, Copy, Debug)]
struct Shape {
    precision: u8,
    /// Dense registers: 2^p.
    registers: usize,
    register_words: usize,
    /// The library's dense size in bytes; the sparse list converts to dense above it.
    dense_bytes: usize,
    /// The pending-code set is folded into the sparse list once `len * 100 > dense_bytes`.
    pending_codes_max: usize,
    /// Largest rank a 64-bit hash yields once p bits went to the index: 64 - p + 1.
    rank_max: u32,
}

/// Mirror of `hyperloglogplus::HyperLogLogPlus<Vec<u8>, HllHashBuilder>`.
#[derive(Serialize, Deserialize)]
#[serde(rename = "HyperLogLogPlus")]
struct SketchMirror {
    builder: HllHashBuilder,
    precision: u8,
    counts: (usize, usize, usize),
    tmpset: HashSet<u32>,
    sparse: SparseMirror,
    registers: Option<RegistersMirror>,
    phantom: PhantomData<Vec<u8>>,
}

/// Mirror of the library's `DifIntVec`: sorted codes, difference- then varint-encoded.
#[derive(Serialize, Deserialize)]
#[serde(rename = "DifIntVec")]
struct SparseMirror {
    count: usize,
    last: u32,
    buf: VarIntMirror,
}

/// Mirror of the library's `VarIntVec`.
#[derive(Serialize, Deserialize)]
#[serde(rename = "VarIntVec")]
struct VarIntMirror(Vec<u8>);

/// Mirror of the library's `RegistersPlus`.
#[derive(Serialize, Deserialize)]
#[serde(rename = "RegistersPlus")]
struct RegistersMirror {
    buf: Vec<u32>,
    count: usize,
    zeros: usize,
}

impl Shape {
    fn of(precision: u8) -> Option<Shape> {
        if !(HLL_PRECISION_MIN..=HLL_PRECISION_MAX).contains(&precision) {
            return None;
        }
        let registers = 1usize << precision;
        let dense_bytes = 4 * registers / REGISTERS_PER_WORD;
        Some(Shape {
            precision,
            registers,
            register_words: registers.div_ceil(REGISTERS_PER_WORD),
            dense_bytes,
            pending_codes_max: dense_bytes / 100,
            rank_max: 64 - u32::from(precision) + 1,
        })
    }

    /// Whether `code` is something the library's sparse encoder can emit.
    fn valid_code(&self, code: u32) -> bool {
        let fine_bits = SPARSE_PRECISION - u32::from(self.precision);
        if code & 1 == 1 {
            // Rank stored in bits 1..=6, offset by p' - p on decode.
            let rank = (code >> 1) & 0x3f;
            rank >= 1 && rank + fine_bits <= self.rank_max
        } else {
            // A p'-bit index shifted left once, whose low p' - p bits are not all zero.
            code >> (SPARSE_PRECISION + 1) == 0 && (code >> 1) & ((1 << fine_bits) - 1) != 0
        }
    }
}

impl SketchMirror {
    fn validate(&self) -> Result<(), String> {
        let shape = Shape::of(self.precision).ok_or_else(|| {
            format!(
                "precision {} (between {HLL_PRECISION_MIN} and {HLL_PRECISION_MAX} allowed)",
                self.precision
            )
        })?;
        let counts = (shape.registers, SPARSE_REGISTERS, shape.dense_bytes);
        if self.counts != counts {
            return Err(format!(
                "size fields {:?}, expected {counts:?}",
                self.counts
            ));
        }
        match &self.registers {
            Some(registers) => {
                if !self.tmpset.is_empty()
                    || self.sparse.count != 0
                    || !self.sparse.buf.0.is_empty()
                {
                    return Err("dense sketch still carries sparse codes".to_string());
                }
                registers.validate(&shape)
            }
            None => {
                if self.tmpset.len() > shape.pending_codes_max {
                    return Err(format!(
                        "{} pending sparse codes, above the {} allowed",
                        self.tmpset.len(),
                        shape.pending_codes_max
                    ));
                }
                if let Some(code) = self.tmpset.iter().find(|code| !shape.valid_code(**code)) {
                    return Err(format!("invalid pending sparse code {code:#010x}"));
                }
                self.sparse.validate(&shape)
            }
        }
    }
}

impl SparseMirror {
    fn validate(&self, shape: &Shape) -> Result<(), String> {
        let bytes = &self.buf.0;
        if bytes.len() > shape.dense_bytes {
            return Err(format!(
                "sparse list of {} bytes, above the {} at which it turns dense",
                bytes.len(),
                shape.dense_bytes
            ));
        }
        let (mut at, mut decoded, mut previous) = (0usize, 0usize, None::<u32>);
        while at < bytes.len() {
            let (delta, next) = decode_varint(bytes, at)?;
            at = next;
            let code = match previous {
                None => delta,
                Some(previous) if delta > 0 => previous
                    .checked_add(delta)
                    .ok_or_else(|| "sparse codes overflow u32".to_string())?,
                Some(_) => return Err("sparse codes not strictly increasing".to_string()),
            };
            if !shape.valid_code(code) {
                return Err(format!("invalid sparse code {code:#010x}"));
            }
            previous = Some(code);
            decoded += 1;
        }
        if decoded != self.count || previous.unwrap_or(0) != self.last {
            return Err(format!(
                "sparse header says {} codes ending at {}, the list holds {decoded} ending at {}",
                self.count,
                self.last,
                previous.unwrap_or(0)
            ));
        }
        Ok(())
    }
}

impl RegistersMirror {
    fn validate(&self, shape: &Shape) -> Result<(), String> {
        if self.count != shape.registers || self.buf.len() != shape.register_words {
            return Err(format!(
                "{} registers in {} words, expected {} in {}",
                self.count,
                self.buf.len(),
                shape.registers,
                shape.register_words
            ));
        }
        let mask = (1u32 << REGISTER_BITS) - 1;
        let mut zeros = 0usize;
        for (word_index, word) in self.buf.iter().enumerate() {
            for slot in 0..REGISTERS_PER_WORD {
                let value = (word >> (slot * REGISTER_BITS)) & mask;
                let in_use = word_index * REGISTERS_PER_WORD + slot < shape.registers;
                if !in_use && value != 0 {
                    return Err(format!("padding bits set in register word {word_index}"));
                }
                if value > shape.rank_max {
                    return Err(format!(
                        "register value {value} above the {} possible",
                        shape.rank_max
                    ));
                }
                zeros += usize::from(in_use && value == 0);
            }
            if word >> (REGISTERS_PER_WORD * REGISTER_BITS) != 0 {
                return Err(format!("spare bits set in register word {word_index}"));
            }
        }
        if zeros != self.zeros {
            return Err(format!(
                "zero-register count says {}, the registers hold {zeros}",
                self.zeros
            ));
        }
        Ok(())
    }
}

/// Decodes a sketch and its precision, refusing anything the library could not handle
/// safely.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(Inner, u8), D::Error> {
    let mirror = SketchMirror::deserialize(deserializer)?;
    mirror.validate().map_err(|reason| {
        D::Error::custom(format!(
            "malformed hyperloglog: {reason}; the sender is corrupt or runs an incompatible \
             version — drop this sketch and request a fresh one"
        ))
    })?;
    let packed = rmp_serde::to_vec(&mirror)
        .map_err(|err| D::Error::custom(format!("re-encoding a validated hyperloglog: {err}")))?;
    let inner = rmp_serde::from_slice(&packed)
        .map_err(|err| D::Error::custom(format!("decoding a validated hyperloglog: {err}")))?;
    Ok((inner, mirror.precision))
}

/// Decodes one little-endian base-128 varint starting at `at`; returns it and the next offset.
fn decode_varint(bytes: &[u8], at: usize) -> Result<(u32, usize), String> {
    let mut value = 0u32;
    for i in 0..VARINT_BYTES_MAX {
        let byte = *bytes
            .get(at + i)
            .ok_or_else(|| "sparse list ends inside a varint".to_string())?;
        let low = u32::from(byte & 0x7f);
        if i == VARINT_BYTES_MAX - 1 && (byte & 0x80 != 0 || low > 0x0f) {
            return Err("sparse varint longer than 32 bits".to_string());
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, at + i + 1));
        }
    }
    Err("sparse varint longer than 32 bits".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hll;

    /// Re-encoding through the mirror must reproduce the library's bytes exactly, in both
    /// representations; otherwise the mirror has drifted from the library's layout.
    #[test]
    fn mirror_matches_the_library_layout() {
        for (precision, items) in [10u8, 14]
            .into_iter()
            .flat_map(|p| [0u64, 10, 3_000, 50_000].map(|items| (p, items)))
        {
            let mut hll = Hll::with_precision(precision).expect("valid precision");
            for i in 0..items {
                hll.insert(&i.to_le_bytes());
            }
            // Folds the pending set, whose HashSet order would otherwise vary.
            hll.estimate();
            for named in [false, true] {
                let library = if named {
                    rmp_serde::to_vec_named(&hll)
                } else {
                    rmp_serde::to_vec(&hll)
                }
                .expect("encode");
                let mirror: SketchMirror = rmp_serde::from_slice(&library).expect("mirror decodes");
                mirror.validate().expect("a genuine sketch validates");
                let again = if named {
                    rmp_serde::to_vec_named(&mirror)
                } else {
                    rmp_serde::to_vec(&mirror)
                }
                .expect("encode");
                assert_eq!(
                    again, library,
                    "p={precision}, {items} items, named fields: {named}"
                );
            }
        }
    }

    #[test]
    fn varints_decode_like_the_library_encodes() {
        // The library's own test vector: 7, 128, 300, 127.
        let bytes = [7, 128, 1, 172, 2, 127];
        let mut at = 0;
        let mut values = Vec::new();
        while at < bytes.len() {
            let (value, next) = decode_varint(&bytes, at).expect("valid");
            values.push(value);
            at = next;
        }
        assert_eq!(values, [7, 128, 300, 127]);
        assert!(decode_varint(&[0x80], 0).is_err());
        assert!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0).is_ok());
        assert!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0).is_err());
        assert!(decode_varint(&[0xff; 6], 0).is_err());
    }

    #[test]
    fn code_validity_matches_the_encoder_bounds() {
        let shape = Shape::of(crate::HLL_PRECISION).expect("valid precision");
        let valid_code = |code| shape.valid_code(code);
        assert!(valid_code((5 << 7) | (1 << 1) | 1));
        assert!(valid_code((5 << 7) | (40 << 1) | 1));
        assert!(!valid_code((5 << 7) | (41 << 1) | 1));
        assert!(!valid_code((5 << 7) | 1));
        assert!(valid_code(1 << 1));
        assert!(!valid_code(0));
        assert!(!valid_code(1 << 12), "fine bits all zero");
        assert!(!valid_code((1 << 26) | (1 << 1)), "index wider than p'");
    }
}
