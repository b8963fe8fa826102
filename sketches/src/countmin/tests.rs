//! Accuracy, merge and wire-format tests for [`CountMin`] on a fixed-seed zipf-like stream.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::*;

const EPSILON: f64 = 0.001;
const DELTA: f64 = 0.01;
const SEED: u64 = 42;

/// Stream events (key, count) in arrival order.
type Events = Vec<(Vec<u8>, u64)>;
/// Exact count per key.
type Truth = BTreeMap<Vec<u8>, u64>;

/// A zipf-like stream: key `r` occurs ⌈20000 / (r + 1)⌉ times, split into chunks of at
/// most 64 and shuffled. Returns the events and the exact counts.
fn zipf_stream(keys: u64, rng_seed: u64) -> (Events, Truth) {
    let mut events = Vec::new();
    let mut truth = BTreeMap::new();
    for rank in 0..keys {
        let key = format!("key/{rank}").into_bytes();
        let mut left = 20_000u64.div_ceil(rank + 1);
        truth.insert(key.clone(), left);
        while left > 0 {
            let chunk = left.min(64);
            events.push((key.clone(), chunk));
            left -= chunk;
        }
    }
    events.shuffle(&mut ChaCha8Rng::seed_from_u64(rng_seed));
    (events, truth)
}

fn sketch() -> CountMin {
    CountMin::new(EPSILON, DELTA, SEED).expect("valid parameters")
}

#[test]
fn dimensions_follow_epsilon_and_delta() {
    let cm = sketch();
    assert_eq!(cm.width(), 2_719, "⌈e / 0.001⌉");
    assert_eq!(cm.depth(), 5, "⌈ln 100⌉");
    assert!(cm.epsilon() <= EPSILON && cm.delta() <= DELTA);
    assert_eq!(CountMin::new(0.5, 0.9, 0).expect("valid").depth(), 1);
}

#[test]
fn never_underestimates_and_stays_within_epsilon_n_for_1_minus_delta_of_keys() {
    let (events, truth) = zipf_stream(20_000, 1);
    let mut cm = sketch();
    for (key, count) in &events {
        cm.add(key, *count);
    }
    let n: u64 = truth.values().sum();
    assert_eq!(cm.total(), n);
    let bound = (EPSILON * n as f64).ceil() as u64;
    let mut within = 0usize;
    for (key, exact) in &truth {
        let estimate = cm.estimate(key);
        assert!(estimate >= *exact, "{key:?}: {estimate} < {exact}");
        within += usize::from(estimate - exact <= bound);
    }
    let share = within as f64 / truth.len() as f64;
    println!(
        "count-min: {} x {}, N = {n}, εN = {bound}; {within}/{} keys within εN ({share:.5}, \
         need ≥ {})",
        cm.width(),
        cm.depth(),
        truth.len(),
        1.0 - DELTA
    );
    assert!(share >= 1.0 - DELTA, "only {share} of keys within εN");
    assert_eq!(cm.estimate(b"never added"), cm.estimate(b"never added"));
}

#[test]
fn merge_equals_the_sketch_of_the_union_stream() {
    let (events, _) = zipf_stream(5_000, 2);
    let (mut whole, mut left, mut right) = (sketch(), sketch(), sketch());
    for (i, (key, count)) in events.iter().enumerate() {
        whole.add(key, *count);
        if i % 3 == 0 { &mut left } else { &mut right }.add(key, *count);
    }
    left.merge(&right).expect("compatible");
    assert_eq!(left, whole, "counters, total and params all equal");
}

#[test]
fn merge_with_other_parameters_is_a_typed_error() {
    let mut ours = sketch();
    ours.add(b"a", 3);
    let before = ours.clone();
    for theirs in [
        CountMin::new(EPSILON, DELTA, SEED + 1).expect("valid"),
        CountMin::new(EPSILON / 2.0, DELTA, SEED).expect("valid"),
        CountMin::new(EPSILON, DELTA / 10.0, SEED).expect("valid"),
    ] {
        let err = ours.merge(&theirs).expect_err("incompatible");
        assert_eq!(
            err,
            SketchError::IncompatibleCountMin {
                ours: before.params(),
                theirs: theirs.params()
            }
        );
        let message = err.to_string();
        assert!(message.contains(&theirs.params().to_string()), "{message}");
    }
    assert_eq!(ours, before, "a refused merge leaves the sketch unchanged");
}

#[test]
fn invalid_parameters_are_refused() {
    for (epsilon, delta) in [
        (0.0, 0.1),
        (1.0, 0.1),
        (f64::NAN, 0.1),
        (0.1, 0.0),
        (0.1, 1.5),
        (0.1, f64::NAN),
        (1e-9, 0.1),
        (0.1, 1e-12),
        (1e-5, 1e-7),
    ] {
        assert!(
            matches!(
                CountMin::new(epsilon, delta, 0),
                Err(SketchError::InvalidParameter { .. })
            ),
            "epsilon {epsilon}, delta {delta} accepted"
        );
    }
}

#[test]
fn counters_saturate_instead_of_overflowing() {
    let mut cm = sketch();
    cm.add(b"hot", u64::MAX - 1);
    cm.add(b"hot", 5);
    assert_eq!(cm.estimate(b"hot"), u64::MAX);
    assert_eq!(cm.total(), u64::MAX);
    let copy = cm.clone();
    cm.merge(&copy).expect("compatible");
    assert_eq!(cm.estimate(b"hot"), u64::MAX);
    let bytes = rmp_serde::to_vec(&cm).expect("encode");
    assert_eq!(
        rmp_serde::from_slice::<CountMin>(&bytes).expect("decode"),
        cm
    );
}

#[test]
fn serde_roundtrip_and_malformed_input() {
    let (events, _) = zipf_stream(500, 3);
    let mut cm = CountMin::new(0.01, 0.05, 7).expect("valid");
    for (key, count) in &events {
        cm.add(key, *count);
    }
    let packed = rmp_serde::to_vec(&cm).expect("encode");
    assert_eq!(
        rmp_serde::from_slice::<CountMin>(&packed).expect("decode"),
        cm
    );

    let value = serde_json::to_value(&cm).expect("encode");
    let corrupt = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut bad = value.clone();
        edit(&mut bad);
        serde_json::from_value::<CountMin>(bad)
    };
    assert_eq!(corrupt(&|_| {}).expect("untouched decodes"), cm);
    assert!(corrupt(&|v| v["width"] = 0.into()).is_err());
    assert!(corrupt(&|v| v["depth"] = 1_000.into()).is_err());
    assert!(corrupt(&|v| v["width"] = u64::MAX.into()).is_err());
    assert!(corrupt(&|v| v["total"] = 1.into()).is_err());
    assert!(
        corrupt(&|v| {
            v["counters"].as_array_mut().expect("array").pop();
        })
        .is_err()
    );
    assert!(corrupt(&|v| v["counters"][0] = 123_456.into()).is_err());
}

fn arb_sketch() -> impl Strategy<Value = CountMin> {
    prop::collection::vec(
        (prop::collection::vec(any::<u8>(), 0..6), 0u64..1_000),
        0..60,
    )
    .prop_map(|events| {
        let mut cm = CountMin::new(0.05, 0.1, SEED).expect("valid");
        for (key, count) in &events {
            cm.add(key, *count);
        }
        cm
    })
}

fn merged(a: &CountMin, b: &CountMin) -> CountMin {
    let mut out = a.clone();
    out.merge(b).expect("compatible");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Merge is a sum: commutative and associative, and deliberately *not* idempotent —
    /// merging a sketch into itself doubles every counter.
    #[test]
    fn merge_is_commutative_and_associative_but_adds(
        a in arb_sketch(),
        b in arb_sketch(),
        c in arb_sketch(),
    ) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        let doubled = merged(&a, &a);
        prop_assert_eq!(doubled.total(), a.total().saturating_mul(2));
        for key in [b"".as_slice(), b"x", &[1, 2, 3]] {
            prop_assert_eq!(doubled.estimate(key), a.estimate(key).saturating_mul(2));
        }
    }
}
