//! Accuracy, merge and wire-format tests for [`Hll`]. Items are deterministic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn sketch_of(range: std::ops::Range<u64>) -> Hll {
    let mut hll = Hll::new();
    for i in range {
        hll.insert(&i.to_le_bytes());
    }
    hll
}

fn relative_error(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64).abs() / truth as f64
}

#[test]
fn relative_error_at_1m_distinct_items_is_within_2_percent() {
    let truth = 1_000_000;
    let mut hll = sketch_of(0..truth);
    // Duplicates must not move the estimate.
    for i in 0..100_000u64 {
        hll.insert(&i.to_le_bytes());
    }
    let estimate = hll.estimate();
    let error = relative_error(estimate, truth);
    println!("hll: estimate {estimate} for {truth} distinct items, relative error {error:.4}");
    assert!(error <= 0.02, "relative error {error}");
}

#[test]
fn small_cardinalities_are_close() {
    for truth in [1u64, 10, 100, 1_000, 10_000] {
        let estimate = sketch_of(0..truth).estimate();
        let error = relative_error(estimate, truth);
        assert!(error <= 0.02, "{truth} items: estimate {estimate}");
    }
    assert_eq!(Hll::new().estimate(), 0);
}

#[test]
fn merge_of_overlapping_halves_matches_the_whole() {
    let mut whole = sketch_of(0..1_000_000);
    let mut merged = sketch_of(0..600_000);
    merged
        .merge(&sketch_of(400_000..1_000_000))
        .expect("same precision");
    let (whole_estimate, merged_estimate) = (whole.estimate(), merged.estimate());
    let gap = relative_error(merged_estimate, whole_estimate);
    println!("hll: whole {whole_estimate}, merged halves {merged_estimate}, gap {gap:.5}");
    assert!(
        gap <= 0.005,
        "merged {merged_estimate} vs whole {whole_estimate}"
    );
}

#[test]
fn serde_roundtrip_keeps_the_estimate_in_both_representations() {
    for items in [0u64, 50, 4_000, 200_000] {
        let mut hll = sketch_of(0..items);
        let packed = rmp_serde::to_vec(&hll).expect("encode");
        let mut unpacked: Hll = rmp_serde::from_slice(&packed).expect("decode");
        assert_eq!(unpacked.estimate(), hll.estimate(), "{items} items");
        // The decoded sketch keeps working.
        unpacked.insert(b"one more");
        unpacked.merge(&hll).expect("merge");
        let json = serde_json::to_string(&hll).expect("encode");
        let mut from_json: Hll = serde_json::from_str(&json).expect("decode");
        assert_eq!(
            from_json.estimate(),
            hll.estimate(),
            "{items} items via JSON"
        );
    }
}

#[test]
fn smaller_precisions_are_bounded_and_only_merge_with_their_own() {
    for bad in [0u8, 3, 19] {
        assert!(
            matches!(
                Hll::with_precision(bad),
                Err(SketchError::InvalidParameter { .. })
            ),
            "precision {bad}"
        );
    }
    let mut small = Hll::with_precision(10).expect("valid precision");
    assert_eq!(small.precision(), 10);
    assert_eq!(Hll::new().precision(), HLL_PRECISION);
    // Sparse while small: the encoding grows with the items, far below the dense size.
    let empty_bytes = small.encoded_bytes();
    for i in 0..20_000u64 {
        small.insert(&i.to_le_bytes());
    }
    let estimate = small.estimate();
    let error = relative_error(estimate, 20_000);
    // 1.04 / sqrt(1024) is 3.25 %; allow three standard errors.
    assert!(error <= 0.1, "p=10 estimate {estimate} for 20000");
    // Dense at p = 10: 205 register words, about 1 KiB encoded, whatever the item count.
    let dense_bytes = small.encoded_bytes();
    println!("hll p=10: empty {empty_bytes} B, dense {dense_bytes} B, estimate {estimate}");
    assert!(
        empty_bytes < 64 && dense_bytes <= 1_100,
        "{empty_bytes} / {dense_bytes}"
    );
    let packed = rmp_serde::to_vec(&small).expect("encode");
    assert_eq!(packed.len(), dense_bytes);
    let mut back: Hll = rmp_serde::from_slice(&packed).expect("decode");
    assert_eq!((back.precision(), back.estimate()), (10, estimate));
    let mut big = sketch_of(0..10);
    let before = big.estimate();
    assert!(matches!(
        big.merge(&small),
        Err(SketchError::IncompatibleHll { precision: 14, .. })
    ));
    assert_eq!(big.estimate(), before, "a refused merge changes nothing");
}

/// Encodes a sketch as a JSON value, applies `corrupt`, and expects decoding to fail.
fn assert_refused(hll: &Hll, what: &str, corrupt: impl FnOnce(&mut Value)) {
    let mut value = serde_json::to_value(hll).expect("encode");
    corrupt(&mut value);
    let err = serde_json::from_value::<Hll>(value).expect_err(what);
    println!("{what}: {err}");
}

#[test]
fn malformed_sketches_are_refused_not_trusted() {
    let mut sparse = sketch_of(0..3_000);
    sparse.estimate();
    let mut dense = sketch_of(0..100_000);
    dense.estimate();
    assert_refused(&sparse, "precision 12", |v| v["precision"] = json!(12));
    assert_refused(&sparse, "precision 0", |v| v["precision"] = json!(0));
    assert_refused(&sparse, "wrong sizes", |v| v["counts"][0] = json!(4096));
    assert_refused(&sparse, "varint runs off", |v| {
        v["sparse"]["buf"] = json!([0x80, 0x80]);
    });
    assert_refused(&sparse, "scrambled sparse list", |v| {
        let bytes = v["sparse"]["buf"].as_array_mut().expect("array");
        bytes.reverse();
    });
    assert_refused(&sparse, "count lies", |v| v["sparse"]["count"] = json!(1));
    assert_refused(&sparse, "pending zero code", |v| v["tmpset"] = json!([0]));
    assert_refused(&sparse, "too many pending", |v| {
        v["tmpset"] = json!((1..=200u32).map(|i| i << 1).collect::<Vec<_>>());
    });
    assert_refused(&dense, "short registers", |v| {
        v["registers"]["buf"].as_array_mut().expect("array").pop();
    });
    assert_refused(&dense, "register of 63", |v| {
        v["registers"]["buf"][0] = json!(63);
    });
    assert_refused(&dense, "zeros count lies", |v| {
        v["registers"]["zeros"] = json!(u32::MAX);
    });
    assert_refused(&dense, "dense with sparse codes", |v| {
        v["tmpset"] = json!([2]);
    });
    assert_refused(&dense, "not a sketch", |v| *v = json!("hello"));
}

fn arb_sketch() -> impl Strategy<Value = Hll> {
    // Up to 8k items covers the sparse list, its pending set and the dense registers.
    (0u64..1_000_000, 0u64..8_000).prop_map(|(start, len)| sketch_of(start..start + len))
}

fn merged(a: &Hll, b: &Hll) -> Hll {
    let mut out = a.clone();
    out.merge(b).expect("same precision");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        a in arb_sketch(),
        b in arb_sketch(),
        c in arb_sketch(),
    ) {
        prop_assert_eq!(merged(&a, &b).estimate(), merged(&b, &a).estimate());
        prop_assert_eq!(
            merged(&merged(&a, &b), &c).estimate(),
            merged(&a, &merged(&b, &c)).estimate()
        );
        prop_assert_eq!(merged(&a, &a).estimate(), a.clone().estimate());
    }
}
