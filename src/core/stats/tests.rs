//! Window rotation, sketch merges and the cluster merge, without nodes or a network.

use std::sync::Arc;

use ringkv_sketches::{CountMin, TopK};

use super::*;
use crate::core::placement::ring::key_position;
use crate::core::repair::merkle::{REBUILD_ROWS_PER_STEP, RebuildProgress};
use crate::core::replica::Replica;
use crate::storage::{MemoryStorage, Rmw, Space, Storage, encode_data_key};

const WINDOW_MS: u64 = 1_000;

fn key(i: u64) -> Key {
    Key::new("b", format!("k{i}"))
}

fn count(topk: &TopK, key: &Key) -> u64 {
    topk.sketch().estimate(&sketch_item(key))
}

#[test]
fn windows_rotate_by_whole_windows_and_forget_after_two() {
    assert!(matches!(
        RequestWindows::new(0, 0),
        Err(StatsError::ZeroWindow)
    ));
    let mut windows = RequestWindows::new(WINDOW_MS, 500).expect("valid window");
    for _ in 0..3 {
        windows.observe(500, &key(1));
    }
    windows.observe(1_499, &key(2));
    assert_eq!(count(windows.current(), &key(1)), 3);
    assert_eq!(windows.current_age_ms(1_499), 999);

    // One window ended: the current one becomes the previous one.
    windows.observe(1_500, &key(2));
    assert_eq!(windows.current_age_ms(1_500), 0);
    assert_eq!(count(windows.previous(), &key(1)), 3);
    assert_eq!(count(windows.previous(), &key(2)), 1);
    assert_eq!(count(windows.current(), &key(1)), 0);
    assert_eq!(count(windows.current(), &key(2)), 1);
    let recent = windows.recent();
    assert_eq!(count(&recent, &key(2)), 2);
    assert_eq!(
        recent.top()[0].1,
        3,
        "key 1 is the hottest over both windows"
    );

    // Rotation is lazy and idempotent within a window.
    windows.rotate(2_499);
    windows.rotate(2_499);
    assert_eq!(count(windows.previous(), &key(1)), 3);

    // Two windows ended at once: everything older than the current window is gone, and the
    // window start stays on the original grid.
    windows.rotate(3_700);
    assert_eq!(windows.current_age_ms(3_700), 200);
    assert_eq!(windows.previous().sketch().total(), 0);
    assert_eq!(windows.current().sketch().total(), 0);
    assert!(windows.recent().top().is_empty());

    // A reading before the window start (not monotonic) changes nothing.
    windows.observe(3_600, &key(3));
    windows.rotate(10);
    assert_eq!(count(windows.current(), &key(3)), 1);
}

#[test]
fn distinct_keys_count_each_key_once_and_merge_as_a_union() {
    let mut a = DistinctKeys::new(64);
    let mut b = DistinctKeys::new(64);
    for i in 0..6_000u64 {
        a.insert(key_position(b"b", format!("k{i}").as_bytes()));
    }
    // Overlapping half, inserted twice: duplicates never count.
    for i in 3_000..9_000u64 {
        for _ in 0..2 {
            b.insert(key_position(b"b", format!("k{i}").as_bytes()));
        }
    }
    let estimate = a.estimate();
    assert!(estimate.abs_diff(6_000) <= 120, "node estimate {estimate}");
    let partitions = a.partition_estimates();
    assert_eq!(
        partitions.len(),
        64,
        "6000 keys reach every one of 64 partitions"
    );
    let summed: u64 = partitions.iter().map(|&(_, e, _)| e).sum();
    assert!(
        summed.abs_diff(6_000) <= 300,
        "partition estimates sum to {summed}"
    );
    assert!(partitions.iter().all(|&(_, _, bytes)| bytes <= 1_100));

    a.merge(&b).expect("same shape");
    let union = a.estimate();
    assert!(union.abs_diff(9_000) <= 180, "union {union}");

    let other_ring = DistinctKeys::new(128);
    assert_eq!(
        a.merge(&other_ring),
        Err(StatsError::Partitions {
            ours: 64,
            theirs: 128
        })
    );
    assert_eq!(a.estimate(), union, "a refused merge changes nothing");
}

#[test]
fn the_startup_scan_counts_stored_keys_in_bounded_steps() {
    let storage = Arc::new(MemoryStorage::new());
    let total = 2 * REBUILD_ROWS_PER_STEP as u64 + 17;
    for i in 0..total {
        let k = key(i);
        let raw =
            encode_data_key(key_position(&k.bucket, &k.key), &k.bucket, &k.key).expect("valid key");
        storage
            .update(Space::Data, &raw, &mut |_| Rmw::Put(b"v".to_vec()))
            .expect("memory write");
    }
    // The Merkle tree rebuild is the one start-up scan; it fills the distinct keys too.
    let mut replica = Replica::open(storage, 16, 16).expect("replica opens");
    assert!(!replica.trees().is_ready());
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= 10, "the scan does not finish");
        match replica.rebuild_trees_step().expect("memory scan") {
            RebuildProgress::Scanned(rows) => {
                assert_eq!(rows, steps * REBUILD_ROWS_PER_STEP as u64)
            }
            RebuildProgress::Done(rows) => {
                assert_eq!(rows, total);
                break;
            }
        }
    }
    assert_eq!(steps, 3);
    assert!(replica.trees().is_ready());
    assert_eq!(
        replica.rebuild_trees_step().expect("done"),
        RebuildProgress::Done(0)
    );
    let distinct = replica.distinct_mut();
    let estimate = distinct.estimate();
    assert!(
        estimate.abs_diff(total) <= total / 50,
        "{estimate} of {total}"
    );
}

#[test]
fn items_name_their_keys_and_anything_else_is_refused() {
    let k = Key::new("users", b"a\0b/c".to_vec());
    assert_eq!(item_key(&sketch_item(&k)), Some(k));
    assert_eq!(item_key(b"no separator"), None);
    assert_eq!(item_key(b"\0empty bucket"), None);
}

#[test]
fn ae_progress_keeps_the_latest_comparison_per_partition() {
    let mut progress = AeProgress::new(8);
    progress.record(3, 100);
    progress.record(3, 50);
    progress.record(5, 70);
    progress.record(99, 70);
    assert_eq!(progress.last(3), Some(100));
    assert_eq!(progress.last(4), None);
    assert_eq!(progress.last(99), None);
    assert_eq!(
        progress.compared().collect::<Vec<_>>(),
        vec![(3, 100), (5, 70)]
    );
}

/// A stats report as a node would send it: `keys` stored, `requests` counted per key.
fn report(node: &str, keys: std::ops::Range<u64>, requests: &[(u64, u64)]) -> StatsInfo {
    let mut distinct = DistinctKeys::new(16);
    for i in keys {
        let k = key(i);
        distinct.insert(key_position(&k.bucket, &k.key));
    }
    let mut windows = RequestWindows::new(WINDOW_MS, 0).expect("valid window");
    for &(i, n) in requests {
        for _ in 0..n {
            windows.observe(0, &key(i));
        }
    }
    StatsInfo {
        node: NodeId::new(node),
        distinct_keys: distinct.estimate(),
        scan_complete: true,
        distinct_sketch: rmp_serde::to_vec(distinct.node_sketch()).expect("encode"),
        partitions: 16,
        partition_precision: PARTITION_HLL_PRECISION,
        partition_sketch_bytes: 0,
        partition_stats: Vec::new(),
        window_ms: WINDOW_MS,
        window_age_ms: 0,
        hot_current: rmp_serde::to_vec(windows.current()).expect("encode"),
        hot_previous: rmp_serde::to_vec(windows.previous()).expect("encode"),
        ae: AeReport::default(),
    }
}

fn answer(info: StatsInfo) -> NodeAnswer {
    NodeAnswer {
        node: info.node.clone(),
        addr: format!("{}:1", info.node),
        result: Ok(info),
    }
}

#[test]
fn cluster_merge_unions_keys_sums_requests_and_names_missing_nodes() {
    // Three replicas of overlapping key ranges: 0..1500 in all, one node has 500 more.
    let n1 = report("n1", 0..1_500, &[(7, 30), (8, 5)]);
    let n2 = report("n2", 0..1_500, &[(7, 25), (9, 20)]);
    let n3 = report("n3", 0..2_000, &[(9, 20)]);
    assert_eq!(n1.hot_keys(1).expect("valid")[0].key, key(7));
    let complete = ClusterStats::merge(vec![answer(n1.clone()), answer(n2.clone()), answer(n3)], 3);
    assert!(!complete.partial);
    assert!(complete.distinct_keys.abs_diff(2_000) <= 40, "{complete:?}");
    assert_eq!(complete.requests_counted, 100);
    let hot: Vec<(Key, u64)> = complete
        .hot_keys
        .iter()
        .map(|h| (h.key.clone(), h.count))
        .collect();
    assert_eq!(hot, vec![(key(7), 55), (key(9), 40), (key(8), 5)]);

    // n3 is down, and n4 runs a release with another count-min seed.
    let mut n4 = report("n4", 0..10, &[]);
    let alien = TopK::new(
        HOT_KEYS_K,
        CountMin::new(HOT_KEYS_EPSILON, HOT_KEYS_DELTA, 1).expect("valid"),
    )
    .expect("valid");
    n4.hot_current = rmp_serde::to_vec(&alien).expect("encode");
    let mut n5 = report("n5", 0..10, &[]);
    n5.distinct_sketch = vec![0xc1];
    let partial = ClusterStats::merge(
        vec![
            answer(n1),
            NodeAnswer {
                node: NodeId::new("n3"),
                addr: "n3:1".into(),
                result: Err("connection refused".into()),
            },
            answer(n2),
            answer(n4),
            answer(n5),
        ],
        3,
    );
    assert!(partial.partial);
    let missing: Vec<&str> = partial.unanswered.iter().map(|u| u.node.as_str()).collect();
    assert_eq!(missing, ["n3", "n4", "n5"]);
    assert!(
        partial.unanswered[1].error.contains("n4"),
        "{:?}",
        partial.unanswered
    );
    assert!(
        partial.unanswered[2].error.contains("malformed"),
        "{:?}",
        partial.unanswered
    );
    // The refused nodes left no trace: n4's keys 0..10 are within n1's anyway, but its
    // HLL was not merged either, and the requests are n1's and n2's only.
    assert_eq!(partial.requests_counted, 80);
    assert!(partial.distinct_keys.abs_diff(1_500) <= 30);
    assert_eq!(partial.nodes.len(), 2);
}
