//! Heavy-hitter tests for [`TopK`] on a fixed-seed zipf-like stream.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::*;

const K: usize = 10;

fn key(rank: u64) -> Vec<u8> {
    format!("key/{rank}").into_bytes()
}

/// Key `r` occurs ⌈50000 / (r + 1)⌉ times in chunks of at most 50, shuffled: the true
/// top 10 are keys 0..10, and the 10th (5000) is well clear of the 11th (4546).
fn stream(rng_seed: u64) -> Vec<(Vec<u8>, u64)> {
    let mut events = Vec::new();
    for rank in 0..2_000u64 {
        let mut left = 50_000u64.div_ceil(rank + 1);
        while left > 0 {
            let chunk = left.min(50);
            events.push((key(rank), chunk));
            left -= chunk;
        }
    }
    events.shuffle(&mut ChaCha8Rng::seed_from_u64(rng_seed));
    events
}

fn tracker() -> TopK {
    TopK::new(K, CountMin::new(0.0005, 0.01, 9).expect("valid")).expect("valid k")
}

fn top_keys(topk: &TopK) -> Vec<Vec<u8>> {
    topk.top()
        .into_iter()
        .map(|(key, _)| key.to_vec())
        .collect()
}

#[test]
fn finds_the_true_heaviest_keys_in_order() {
    let mut topk = tracker();
    for (item, count) in stream(1) {
        topk.observe(&item, count);
    }
    let expected: Vec<Vec<u8>> = (0..K as u64).map(key).collect();
    assert_eq!(top_keys(&topk), expected);
    for (item, estimate) in topk.top() {
        assert_eq!(estimate, topk.sketch().estimate(item));
    }
    assert!(topk.top().len() <= topk.k());
}

#[test]
fn merge_across_nodes_finds_the_cluster_heavy_hitters() {
    let (mut node_a, mut node_b) = (tracker(), tracker());
    for (i, (item, count)) in stream(2).into_iter().enumerate() {
        if i % 2 == 0 { &mut node_a } else { &mut node_b }.observe(&item, count);
    }
    node_a.merge(&node_b).expect("compatible");
    let expected: Vec<Vec<u8>> = (0..K as u64).map(key).collect();
    assert_eq!(top_keys(&node_a), expected);
}

#[test]
fn incompatible_trackers_and_bad_k_are_errors() {
    let mut ours = tracker();
    ours.observe(b"a", 1);
    let before = ours.clone();
    let other_k = TopK::new(K + 1, CountMin::new(0.0005, 0.01, 9).expect("valid")).expect("k");
    assert_eq!(
        ours.merge(&other_k),
        Err(SketchError::IncompatibleTopK {
            ours_k: K,
            theirs_k: K + 1
        })
    );
    let other_seed = TopK::new(K, CountMin::new(0.0005, 0.01, 10).expect("valid")).expect("k");
    assert!(matches!(
        ours.merge(&other_seed),
        Err(SketchError::IncompatibleCountMin { .. })
    ));
    assert_eq!(ours, before, "a refused merge leaves the tracker unchanged");
    for k in [0, TOPK_K_MAX + 1] {
        assert!(TopK::new(k, CountMin::new(0.1, 0.1, 0).expect("valid")).is_err());
    }
}

#[test]
fn serde_roundtrip_and_oversized_candidate_lists() {
    let mut topk = TopK::new(3, CountMin::new(0.01, 0.1, 1).expect("valid")).expect("k");
    for (item, count) in stream(3).into_iter().take(500) {
        topk.observe(&item, count);
    }
    let packed = rmp_serde::to_vec(&topk).expect("encode");
    let unpacked: TopK = rmp_serde::from_slice(&packed).expect("decode");
    assert_eq!(unpacked, topk, "floor is rebuilt on decode");
    let value = serde_json::to_value(&topk).expect("encode");
    assert_eq!(
        serde_json::from_value::<TopK>(value.clone()).expect("decode"),
        topk
    );
    let mut fewer = value.clone();
    fewer["k"] = 2.into();
    assert!(
        serde_json::from_value::<TopK>(fewer).is_err(),
        "3 candidates for k = 2"
    );
    let mut duplicated = value;
    let candidates = duplicated["heavy"].as_array_mut().expect("array");
    candidates[1] = candidates[0].clone();
    assert!(
        serde_json::from_value::<TopK>(duplicated).is_err(),
        "duplicate keys"
    );
}

#[test]
fn a_cleared_tracker_is_empty_and_merges_with_the_original() {
    let mut topk = tracker();
    for (item, count) in stream(3).into_iter().take(500) {
        topk.observe(&item, count);
    }
    let mut fresh = topk.cleared();
    assert!(fresh.top().is_empty());
    assert_eq!(fresh.sketch().total(), 0);
    assert_eq!(fresh.sketch().params(), topk.sketch().params());
    fresh.merge(&topk).expect("same parameters");
    assert_eq!(fresh.top(), topk.top());
}

fn arb_tracker() -> impl Strategy<Value = TopK> {
    prop::collection::vec((0u8..40, 1u64..100), 0..80).prop_map(|events| {
        let mut topk = TopK::new(5, CountMin::new(0.05, 0.1, 3).expect("valid")).expect("k");
        for (item, count) in events {
            topk.observe(&[item], count);
        }
        topk
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Commutative; associativity and idempotence do not hold (see the module docs).
    #[test]
    fn merge_is_commutative(a in arb_tracker(), b in arb_tracker()) {
        let mut ab = a.clone();
        ab.merge(&b).expect("compatible");
        let mut ba = b.clone();
        ba.merge(&a).expect("compatible");
        prop_assert_eq!(ab.top(), ba.top());
        prop_assert_eq!(ab.sketch(), ba.sketch());
    }
}
