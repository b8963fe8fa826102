use std::collections::BTreeMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::core::node::{MemberSpec, Node, NodeConfig, Now};
use crate::core::object::clock::{ActorId, Timestamp};
use crate::core::object::{Limits, Object, Op, ReadValue};
use crate::core::repair::exchange::AeStats;
use crate::storage::MemoryStorage;

fn entries(range: std::ops::Range<u32>, digest: u64) -> Vec<(Key, u64)> {
    range
        .map(|i| (Key::new("b", format!("k{i}")), digest))
        .collect()
}

#[test]
fn the_difference_estimate_tracks_the_true_difference() {
    let a = sketch_of(&entries(0..5_000, 1));
    let b = sketch_of(&entries(1_000..6_000, 1));
    // 1000 only in a, 1000 only in b
    let d = difference_estimate(&a, &b).unwrap();
    assert!((1_700..=2_300).contains(&d), "estimated {d}, true 2000");
    // a changed version is a difference too: 500 keys at another digest, both ways
    let mut changed = entries(0..4_500, 1);
    changed.extend(entries(4_500..5_000, 2));
    let d = difference_estimate(&a, &sketch_of(&changed)).unwrap();
    assert!((800..=1_200).contains(&d), "estimated {d}, true 1000");
    // equal sides estimate (almost) nothing, never below zero
    let same = difference_estimate(&a, &a.clone()).unwrap();
    assert!(same < 50, "estimated {same} for equal sketches");
    let small = sketch_of(&entries(0..100, 1));
    assert_eq!(difference_estimate(&small, &small.clone()).unwrap(), 0);
}

#[test]
fn the_false_positive_rate_follows_the_estimate_and_the_budget() {
    assert_eq!(bloom_fp_rate(1, 100), Some(BLOOM_FP_MAX));
    assert_eq!(bloom_fp_rate(100, 100), Some(BLOOM_MISSES_TARGET / 100.0));
    assert_eq!(bloom_fp_rate(u64::MAX, 100), Some(BLOOM_FP_MIN));
    // ten million entries at 1e-4 need ~23 MiB: the rate rises to fit 1 MiB ...
    let raised = bloom_fp_rate(u64::MAX, 2_000_000).unwrap();
    assert!(raised > BLOOM_FP_MIN && raised <= BLOOM_FP_MAX, "{raised}");
    // ... unless even the highest rate does not fit
    assert_eq!(bloom_fp_rate(1, 100_000_000), None);
    assert_eq!(next_estimate(0, 0.1), 1);
    assert_eq!(next_estimate(1_000, 0.01), 10);
}

#[test]
fn a_false_positive_is_caught_by_a_later_round_with_a_fresh_seed() {
    // two replicas of 200 keys; b holds a newer version of 60 and 20 keys a lacks
    let mut a: BTreeMap<Key, u64> = entries(0..200, 1).into_iter().collect();
    let mut b = a.clone();
    for i in 0..60 {
        b.insert(Key::new("b", format!("k{i}")), 2);
    }
    for (k, d) in entries(200..220, 1) {
        b.insert(k, d);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut seeds = BTreeSet::new();
    let mut found_per_round = Vec::new();
    // A filter sized for half the entries at the highest rate: about half of all
    // lookups are false positives, so differences survive a round.
    let tiny = |side: &BTreeMap<Key, u64>, rng: &mut ChaCha8Rng| {
        let mut f = Bloom::with_random_seed(side.len() / 2, BLOOM_FP_MAX, rng).unwrap();
        for (k, d) in side {
            f.insert(&entry_item(k, *d));
        }
        f
    };
    // "merge" keeps the higher digest: the newer version, as an object merge would
    let merge = |into: &mut BTreeMap<Key, u64>, from: &BTreeMap<Key, u64>, keys: Vec<Key>| {
        for k in keys {
            let d = from[&k];
            let e = into.entry(k).or_insert(d);
            *e = (*e).max(d);
        }
    };
    while a != b {
        assert!(
            found_per_round.len() < 40,
            "no convergence: {found_per_round:?}"
        );
        let fa = tiny(&a, &mut rng);
        let from_b = missing_from(&b.clone().into_iter().collect::<Vec<_>>(), &fa);
        let fb = tiny(&b, &mut rng);
        let from_a = missing_from(&a.clone().into_iter().collect::<Vec<_>>(), &fb);
        seeds.insert(fa.seed());
        seeds.insert(fb.seed());
        found_per_round.push(from_b.len() + from_a.len());
        let b_now = b.clone();
        merge(&mut a, &b_now, from_b);
        let a_now = a.clone();
        merge(&mut b, &a_now, from_a);
    }
    // round one missed some differences (false positives) that later rounds caught
    assert!(found_per_round.len() >= 2, "{found_per_round:?}");
    assert!(
        found_per_round[0] > 0 && found_per_round[0] < 80,
        "{found_per_round:?}"
    );
    assert!(found_per_round[1..].iter().sum::<usize>() > 0);
    assert_eq!(
        seeds.len(),
        2 * found_per_round.len(),
        "every filter has a fresh seed"
    );
    assert_eq!(
        a.values().filter(|d| **d == 2).count(),
        60,
        "no newer version lost"
    );
    assert_eq!(a.len(), 220);
}

fn sorted_store(n: u32) -> Vec<(u64, Key)> {
    let mut all: Vec<(u64, Key)> = (0..n)
        .map(|i| {
            let k = Key::new("b", format!("k{i}"));
            (key_position(&k.bucket, &k.key), k)
        })
        .collect();
    all.sort();
    all
}

fn scan_of(all: &[(u64, Key)], lo: u64, limit: usize) -> Result<Vec<(Key, u64)>, ReplicaError> {
    let first = all.partition_point(|(p, _)| *p < lo);
    Ok(all[first..]
        .iter()
        .take(limit)
        .map(|(_, k)| (k.clone(), 7))
        .collect())
}

#[test]
fn a_partition_scan_pages_without_losing_or_doubling_keys() {
    let all = sorted_store(25_000);
    let got = scan_partition(0, u64::MAX, &|lo, limit| scan_of(&all, lo, limit))
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), all.len());
    let distinct: BTreeSet<&Key> = got.iter().map(|(k, _)| k).collect();
    assert_eq!(distinct.len(), all.len());
    // a partition over the bound is refused rather than half-scanned
    let huge = sorted_store(RECONCILE_ENTRIES_MAX as u32 + 1);
    let refused = scan_partition(0, u64::MAX, &|lo, limit| scan_of(&huge, lo, limit)).unwrap();
    assert!(refused.is_none());
}

/// Two core nodes, N=2, wired directly, with a clock for their anti-entropy ticks.
struct Pair {
    nodes: Vec<Node>,
    now: Now,
}

impl Pair {
    fn new(path: AePath, partitions: u32) -> Pair {
        let members = vec![
            MemberSpec::new("n1", "127.0.0.1:1"),
            MemberSpec::new("n2", "127.0.0.1:2"),
        ];
        let now = Now {
            mono_ms: 0,
            wall_ms: 1_000_000,
        };
        let nodes = ["n1", "n2"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut cfg = NodeConfig::new(*name);
                cfg.partitions = partitions;
                cfg.n = 2;
                cfg.w = 1;
                cfg.r = 1;
                cfg.rng_seed = 10 + i as u64;
                cfg.probe_period_ms = 3_600_000;
                cfg.handoff_interval_ms = 3_600_000;
                cfg.ae_path = path;
                let mut node =
                    Node::new(cfg, members.clone(), Arc::new(MemoryStorage::new()), now).unwrap();
                node.handle_timeout(now);
                node
            })
            .collect();
        Pair { nodes, now }
    }

    fn store(&mut self, n: usize, key: &Key, object: &Object) {
        self.nodes[n]
            .replica_mut()
            .merge(key, object, None)
            .unwrap();
    }

    fn in_sync(&self) -> bool {
        let partitions = self.nodes[0].config().partitions;
        (0..partitions).all(|p| {
            self.nodes[0].replica().trees().root(p) == self.nodes[1].replica().trees().root(p)
        })
    }

    /// Runs anti-entropy ticks until in sync; returns the ticks it took.
    fn converge(&mut self, ticks_max: usize) -> usize {
        let mut ticks = 0;
        while !self.in_sync() {
            assert!(ticks < ticks_max, "not in sync after {ticks_max} ticks");
            ticks += 1;
            self.tick();
        }
        ticks
    }

    /// One anti-entropy tick on both nodes, delivering every message until quiet.
    fn tick(&mut self) {
        self.now.mono_ms += 1_300;
        for node in self.nodes.iter_mut() {
            node.handle_timeout(self.now);
        }
        loop {
            let mut wire = Vec::new();
            for (n, node) in self.nodes.iter_mut().enumerate() {
                while let Some((to, msg)) = node.poll_transmit() {
                    wire.push((n, to, msg));
                }
            }
            if wire.is_empty() {
                break;
            }
            for (from, to, msg) in wire {
                let target = usize::from(to.as_str() == "n2");
                let from = NodeId::from(if from == 0 { "n1" } else { "n2" });
                self.nodes[target].handle_message(self.now, from, msg);
            }
        }
    }
}

fn counter(actor: u64, delta: i64, base: Option<&Object>) -> Object {
    Object::apply(
        base,
        Op::CounterAdd { delta },
        None,
        ActorId(actor),
        Timestamp::default(),
        &Limits::default(),
    )
    .unwrap()
    .0
}

#[test]
fn a_replica_that_missed_many_writes_converges_through_the_bloom_path() {
    // two partitions of ~6000 keys: even the replica that was away holds enough of them
    // (~2400) for Auto to offer sketches
    let mut pair = Pair::new(AePath::Auto, 2);
    let keys: Vec<Key> = (0..12_000)
        .map(|i| Key::new("ae", format!("k{i}")))
        .collect();
    let mut expected = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let base = counter(1, 1, None);
        match i % 10 {
            // n2 was away: it missed these writes entirely
            0..=5 => pair.store(0, key, &base),
            // n1 missed these
            6 => pair.store(1, key, &base),
            // concurrent increments by two actors: the merge must keep both
            7 => {
                pair.store(0, key, &base);
                pair.store(1, key, &counter(2, 10, None));
            }
            // n2 holds a newer version of a shared key
            8 => {
                pair.store(0, key, &base);
                pair.store(1, key, &counter(1, 4, Some(&base)));
            }
            _ => {
                pair.store(0, key, &base);
                pair.store(1, key, &base);
            }
        }
        let value = match i % 10 {
            7 => 11,
            8 => 5,
            _ => 1,
        };
        expected.insert(key.clone(), value);
    }
    let ticks = pair.converge(60);
    let stats: Vec<&AeStats> = pair.nodes.iter().map(|n| n.ae_stats()).collect();
    assert!(
        stats.iter().map(|s| s.bloom_exchanges).sum::<u64>() >= 2,
        "most partitions should switch to Bloom: {stats:?}"
    );
    assert!(stats.iter().map(|s| s.sketches_sent).sum::<u64>() > 0);
    for key in &keys {
        let a = pair.nodes[0].replica().read(key, None).unwrap().unwrap();
        let b = pair.nodes[1].replica().read(key, None).unwrap().unwrap();
        assert_eq!(a, b, "{key} differs after {ticks} ticks");
        assert_eq!(
            a.read(),
            ReadValue::Counter {
                value: expected[key]
            },
            "{key}"
        );
    }
    // once in sync, a full cycle finds nothing more to send
    let sent: u64 = pair.nodes.iter().map(|n| n.ae_stats().keys_sent).sum();
    let exchanges: u64 = pair.nodes.iter().map(|n| n.ae_stats().exchanges).sum();
    for _ in 0..2 {
        pair.tick();
    }
    let compared: u64 = pair.nodes.iter().map(|n| n.ae_stats().exchanges).sum();
    assert!(
        compared >= exchanges + 2,
        "a full cycle compared every partition"
    );
    let after: u64 = pair.nodes.iter().map(|n| n.ae_stats().keys_sent).sum();
    assert_eq!(after, sent);
}

#[test]
fn forced_paths_both_converge_a_small_difference() {
    for path in [AePath::Merkle, AePath::Bloom] {
        let mut pair = Pair::new(path, 16);
        for i in 0..500 {
            let key = Key::new("ae", format!("k{i}"));
            let base = counter(1, 1, None);
            pair.store(0, &key, &base);
            let other = if i % 50 == 0 {
                counter(1, 1, Some(&base))
            } else {
                base
            };
            pair.store(1, &key, &other);
        }
        pair.converge(20);
        let s: Vec<&AeStats> = pair.nodes.iter().map(|n| n.ae_stats()).collect();
        let rounds: u64 = s.iter().map(|s| s.bloom_rounds).sum();
        match path {
            AePath::Bloom => assert!(rounds > 0, "{s:?}"),
            _ => assert_eq!(rounds, 0, "{s:?}"),
        }
    }
}
