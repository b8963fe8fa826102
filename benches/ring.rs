//! What placement costs a coordinator per request, and what a membership change costs.
//!
//! Every client request starts with key → position → partition → preference list, so
//! that path must stay cheap as the cluster grows; the ring precomputes each partition's
//! walk for exactly this reason, and these benches check it held. Rebuilding the ring
//! happens on every membership change, so its cost bounds how fast views can churn.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringkv::core::placement::ring::{
    Member, NodeId, PARTITIONS_DEFAULT, Reach, Ring, VNODES_DEFAULT, key_position,
};

/// Replicas per key (N), as in the default cluster configuration.
const REPLICAS: usize = 3;
/// Distinct keys a lookup bench cycles through, so one hot partition cannot flatter it.
const KEYS: usize = 4096;
/// Cluster sizes measured.
const CLUSTER_SIZES: [usize; 2] = [10, 100];
/// The bucket every bench key lives in.
const BUCKET: &[u8] = b"bench";

fn members(count: usize) -> Vec<Member> {
    (0..count)
        .map(|i| Member {
            name: NodeId::new(format!("n{i}")),
            vnodes: VNODES_DEFAULT,
        })
        .collect()
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("user:{i:08}").into_bytes())
        .collect()
}

fn build(count: usize) -> Ring {
    match Ring::new(&members(count), PARTITIONS_DEFAULT) {
        Ok(ring) => ring,
        Err(e) => panic!("the bench member set must form a ring: {e}"),
    }
}

/// Key → partition → preference list with every node up: the common request path.
fn lookup(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_lookup_all_up");
    group.throughput(Throughput::Elements(1));
    for nodes in CLUSTER_SIZES {
        let ring = build(nodes);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let partition = ring.partition_of(key_position(BUCKET, black_box(&keys[i])));
                ring.preference_list(partition, REPLICAS, false, |_| Reach::Up)
            })
        });
    }
    group.finish();
}

/// The same lookup with one node down, over only the keys that node is a primary for,
/// so every iteration walks past the primaries to find a fallback and builds its hint.
fn lookup_one_down(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_lookup_one_down_fallback");
    group.throughput(Throughput::Elements(1));
    for nodes in CLUSTER_SIZES {
        let ring = build(nodes);
        let down = NodeId::new("n0");
        let affected: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| {
                let p = ring.partition_of(key_position(BUCKET, k));
                ring.primaries(p, REPLICAS).contains(&&down)
            })
            .collect();
        assert!(
            !affected.is_empty(),
            "node {down} is a primary for none of {KEYS} keys; raise KEYS"
        );
        let first = ring.partition_of(key_position(BUCKET, affected[0]));
        let list = ring.preference_list(first, REPLICAS, false, |n| Reach::from_up(n != &down));
        assert!(
            list.targets.len() == REPLICAS && list.targets.iter().any(|t| t.hint.is_some()),
            "with {down} down the list should hold {REPLICAS} targets, one a hinted fallback: {list:?}"
        );
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &ring, |b, ring| {
            b.iter(|| {
                i = (i + 1) % affected.len();
                let partition = ring.partition_of(key_position(BUCKET, black_box(affected[i])));
                ring.preference_list(partition, REPLICAS, false, |n| Reach::from_up(n != &down))
            })
        });
    }
    group.finish();
}

/// Building the ring (tokens, sort, per-partition walks): paid on every view change.
fn construction(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build_q1024_v64");
    group.sample_size(20);
    for nodes in CLUSTER_SIZES {
        let set = members(nodes);
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &set, |b, set| {
            b.iter(|| Ring::new(black_box(set), PARTITIONS_DEFAULT))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, lookup_one_down, construction);
criterion_main!(benches);
