//! Insert, query and merge costs of the three sketches at the sizes ringkv uses.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringkv_sketches::{Bloom, CountMin, Hll, TopK};

/// Distinct keys loaded into each sketch before measuring queries and merges.
const KEYS: u64 = 100_000;

fn keys() -> Vec<[u8; 16]> {
    (0..KEYS)
        .map(|i| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.to_le_bytes());
            key[8..].copy_from_slice(b"/bench/k");
            key
        })
        .collect()
}

fn bloom(c: &mut Criterion) {
    let keys = keys();
    let empty = Bloom::with_random_seed(KEYS as usize, 0.01, &mut ChaCha8Rng::seed_from_u64(1))
        .expect("valid parameters");
    let mut full = empty.clone();
    for key in &keys {
        full.insert(key);
    }
    let mut group = c.benchmark_group("bloom_100k_1pct");
    let mut i = 0usize;
    group.bench_function("insert", |b| {
        let mut bloom = empty.clone();
        b.iter(|| {
            i = (i + 1) % keys.len();
            bloom.insert(black_box(&keys[i]));
        })
    });
    group.bench_function("contains_member", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(full.contains(black_box(&keys[i])))
        })
    });
    group.bench_function("contains_stranger", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(full.contains(black_box(&(i as u64).to_be_bytes())))
        })
    });
    group.bench_function("merge", |b| {
        b.iter_batched_ref(
            || full.clone(),
            |target| target.merge(black_box(&full)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("to_bytes_from_bytes", |b| {
        b.iter(|| Bloom::from_bytes(black_box(&full.to_bytes())))
    });
    group.finish();
}

fn hll(c: &mut Criterion) {
    let keys = keys();
    let mut full = Hll::new();
    for key in &keys {
        full.insert(key);
    }
    let mut group = c.benchmark_group("hll_p14");
    let mut i = 0usize;
    group.bench_function("insert_dense", |b| {
        let mut hll = full.clone();
        b.iter(|| {
            i = (i + 1) % keys.len();
            hll.insert(black_box(&keys[i]));
        })
    });
    group.bench_function("estimate_dense", |b| {
        let mut hll = full.clone();
        b.iter(|| black_box(hll.estimate()))
    });
    group.bench_function("merge_dense", |b| {
        b.iter_batched_ref(
            || full.clone(),
            |target| target.merge(black_box(&full)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("serde_roundtrip_dense", |b| {
        b.iter(|| {
            let bytes = rmp_serde::to_vec(black_box(&full)).expect("encode");
            rmp_serde::from_slice::<Hll>(&bytes).expect("decode")
        })
    });
    group.finish();
}

fn countmin(c: &mut Criterion) {
    let keys = keys();
    let mut full = CountMin::new(0.001, 0.01, 7).expect("valid parameters");
    for key in &keys {
        full.add(key, 3);
    }
    let mut group = c.benchmark_group("countmin_eps0.001_delta0.01");
    let mut i = 0usize;
    group.bench_function("add", |b| {
        let mut cm = full.clone();
        b.iter(|| {
            i = (i + 1) % keys.len();
            cm.add(black_box(&keys[i]), 1);
        })
    });
    group.bench_function("estimate", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(full.estimate(black_box(&keys[i])))
        })
    });
    group.bench_function("merge", |b| {
        b.iter_batched_ref(
            || full.clone(),
            |target| target.merge(black_box(&full)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("topk10_observe", |b| {
        let mut topk = TopK::new(10, full.clone()).expect("valid k");
        b.iter(|| {
            i = (i + 1) % keys.len();
            topk.observe(black_box(&keys[i]), 1);
        })
    });
    group.finish();
}

criterion_group!(benches, bloom, hll, countmin);
criterion_main!(benches);
