//! Accuracy, merge and wire-format tests for [`Bloom`]; every RNG has a fixed seed.

use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const ITEMS: usize = 100_000;
const FP_TARGET: f64 = 0.01;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn member(i: usize) -> Vec<u8> {
    format!("member/{i}").into_bytes()
}

fn filter(seed: u64) -> Bloom {
    Bloom::with_random_seed(1_000, FP_TARGET, &mut rng(seed)).expect("valid parameters")
}

/// An RNG that always yields zeros, to show a broken RNG cannot produce a degenerate seed.
struct ZeroRng;

impl RngCore for ZeroRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
}

#[test]
fn false_positive_rate_at_100k_items_stays_within_1_3x_target() {
    let mut bloom = Bloom::with_random_seed(ITEMS, FP_TARGET, &mut rng(1)).expect("valid");
    for i in 0..ITEMS {
        bloom.insert(&member(i));
    }
    for i in 0..ITEMS {
        assert!(bloom.contains(&member(i)), "false negative for member {i}");
    }
    let false_positives = (0..ITEMS)
        .filter(|i| bloom.contains(format!("stranger/{i}").as_bytes()))
        .count();
    let observed = false_positives as f64 / ITEMS as f64;
    println!(
        "bloom: {} bits, {} hashes; observed false-positive rate {observed:.5} \
         ({false_positives}/{ITEMS}) for a {FP_TARGET} target",
        bloom.bits(),
        bloom.hashes()
    );
    assert!(
        observed <= 1.3 * FP_TARGET,
        "observed {observed} above 1.3 x {FP_TARGET}"
    );
}

#[test]
fn union_contains_both_sets_and_nothing_is_lost() {
    let mut left = filter(2);
    let mut right = Bloom::new(1_000, FP_TARGET, left.seed()).expect("same params");
    for i in 0..500 {
        left.insert(&member(i));
        right.insert(&member(i + 500));
    }
    let (left_before, right_before) = (left.clone(), right.clone());
    let union = left.union(&right).expect("compatible");
    assert!((0..1_000).all(|i| union.contains(&member(i))));
    assert_eq!(
        (&left, &right),
        (&left_before, &right_before),
        "union() is pure"
    );
    left.merge(&right).expect("compatible");
    assert_eq!(left, union);
}

#[test]
fn merge_with_another_seed_or_size_is_a_typed_error() {
    let mut ours = filter(3);
    let before = ours.clone();
    let other_seed = filter(4);
    let err = ours.merge(&other_seed).expect_err("different seeds");
    assert_eq!(
        err,
        SketchError::IncompatibleBloom {
            ours: before.params(),
            theirs: other_seed.params()
        }
    );
    let message = err.to_string();
    assert!(
        message.contains(&before.params().to_string())
            && message.contains(&other_seed.params().to_string()),
        "the error names both parameter sets: {message}"
    );
    let other_size = Bloom::new(50_000, FP_TARGET, ours.seed()).expect("valid");
    assert!(matches!(
        ours.union(&other_size),
        Err(SketchError::IncompatibleBloom { .. })
    ));
    assert_eq!(ours, before, "a refused merge leaves the filter unchanged");
}

#[test]
fn seed_with_equal_halves_is_refused() {
    let mut seed = [7u8; 32];
    let err = Bloom::new(1_000, FP_TARGET, seed).expect_err("equal halves");
    assert_eq!(err, SketchError::BloomSeedHalvesEqual { draws: 1 });
    assert!(err.to_string().contains("quadruples"));
    seed[31] = 8;
    assert!(Bloom::new(1_000, FP_TARGET, seed).is_ok());
    let err = Bloom::with_random_seed(1_000, FP_TARGET, &mut ZeroRng).expect_err("zero RNG");
    assert_eq!(
        err,
        SketchError::BloomSeedHalvesEqual {
            draws: BLOOM_SEED_DRAWS_MAX
        }
    );
}

#[test]
fn invalid_parameters_are_refused() {
    let seed = filter(5).seed();
    for fp in [0.0, 1.0, -0.5, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                Bloom::new(1_000, fp, seed),
                Err(SketchError::InvalidParameter {
                    name: "fp_rate",
                    ..
                })
            ),
            "fp_rate {fp} accepted"
        );
    }
    assert!(matches!(
        Bloom::new(0, FP_TARGET, seed),
        Err(SketchError::InvalidParameter {
            name: "items_expected",
            ..
        })
    ));
    assert!(matches!(
        Bloom::new(usize::MAX / 2, FP_TARGET, seed),
        Err(SketchError::InvalidParameter {
            name: "items_expected",
            ..
        })
    ));
    assert!(matches!(
        Bloom::new(10, 1e-30, seed),
        Err(SketchError::InvalidParameter {
            name: "fp_rate",
            ..
        })
    ));
}

#[test]
fn bytes_and_serde_roundtrip() {
    let mut bloom = filter(6);
    for i in 0..700 {
        bloom.insert(&member(i));
    }
    let bytes = bloom.to_bytes();
    assert_eq!(
        bytes.len() as u64,
        BLOOM_HEADER_BYTES as u64 + bloom.bits() / 8,
        "bloomfilter's header layout changed"
    );
    let decoded = Bloom::from_bytes(&bytes).expect("own bytes decode");
    assert_eq!(decoded, bloom);
    assert_eq!(decoded.params(), bloom.params());
    assert!((0..700).all(|i| decoded.contains(&member(i))));

    let packed = rmp_serde::to_vec(&bloom).expect("encode");
    let unpacked: Bloom = rmp_serde::from_slice(&packed).expect("decode");
    assert_eq!(unpacked, bloom);
    // JSON has no bytes type, so this exercises the sequence-of-bytes path.
    let json = serde_json::to_string(&bloom).expect("encode");
    let from_json: Bloom = serde_json::from_str(&json).expect("decode");
    assert_eq!(from_json, bloom);
}

#[test]
fn malformed_bytes_are_errors_not_panics() {
    let valid = filter(7).to_bytes();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("header only", valid[..BLOOM_HEADER_BYTES].to_vec()),
        ("truncated", valid[..valid.len() - 1].to_vec()),
        ("extended", [valid.as_slice(), &[0]].concat()),
    ];
    let mut bad_version = valid.clone();
    bad_version[0] = 99;
    cases.push(("bad version", bad_version));
    let mut zero_hashes = valid.clone();
    zero_hashes[9..13].copy_from_slice(&0u32.to_le_bytes());
    cases.push(("zero hashes", zero_hashes));
    let mut many_hashes = valid.clone();
    many_hashes[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("u32::MAX hashes", many_hashes));
    let mut lying_length = valid.clone();
    lying_length[1..9].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("length field u64::MAX", lying_length));
    let mut equal_halves = valid.clone();
    equal_halves[13..29].fill(1);
    equal_halves[29..45].fill(1);
    cases.push(("equal seed halves", equal_halves));
    let mut garbage_rng = rng(8);
    for len in [1, 44, 45, 46, 100, 4_096] {
        let mut garbage = vec![0u8; len];
        garbage_rng.fill_bytes(&mut garbage);
        cases.push(("random garbage", garbage));
    }
    for (what, bytes) in cases {
        let err = Bloom::from_bytes(&bytes).expect_err(what);
        assert!(
            matches!(err, SketchError::Malformed { len, .. } if len == bytes.len()),
            "{what}: {err}"
        );
        let packed = rmp_serde::to_vec(&serde_bytes::Bytes::new(&bytes)).expect("encode");
        assert!(
            rmp_serde::from_slice::<Bloom>(&packed).is_err(),
            "{what} via serde"
        );
    }
}

fn arb_filter() -> impl Strategy<Value = Bloom> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..200).prop_map(|items| {
        // One shared seed: merges are only defined between compatible filters.
        let mut bloom = filter(9);
        for item in &items {
            bloom.insert(item);
        }
        bloom
    })
}

fn merged(a: &Bloom, b: &Bloom) -> Bloom {
    a.union(b).expect("same params")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        a in arb_filter(),
        b in arb_filter(),
        c in arb_filter(),
    ) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
    }
}
