//! Storage engine costs: put and get on the memory and fjall engines, and what group
//! commit buys over syncing every write.
//!
//! `fjall/group_persist64` calls `persist()` once every `GROUP_COMMIT_WRITES` puts, the
//! way the node driver persists once per batch of inputs; its per-put time is the
//! amortised cost. `fjall_always` syncs every put and runs with few samples because each
//! one is an fsync.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringkv::storage::{
    FjallStorage, MemoryStorage, Space, Storage, StorageError, SyncMode, encode_data_key,
};

/// Puts between two `persist()` calls in the group-commit case.
const GROUP_COMMIT_WRITES: u64 = 64;
/// Keys preloaded for the get benchmarks.
const PRELOADED_KEYS: u64 = 10_000;
/// Bytes per value: about one small msgpack'd LWW object.
const VALUE_BYTES: usize = 128;
/// Samples for the fsync-per-write case (criterion's minimum).
const ALWAYS_SAMPLES: usize = 10;

/// A data key at a spread-out ring position, as the core would write it.
fn data_key(i: u64) -> Result<Vec<u8>, StorageError> {
    encode_data_key(
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        b"bench",
        format!("key-{i}").as_bytes(),
    )
}

fn open_fjall(dir: &Path, sync: SyncMode) -> Result<FjallStorage, StorageError> {
    FjallStorage::open(dir, sync)
}

/// Benchmarks blind puts of fresh keys, persisting every `persist_every` puts if set.
fn bench_puts(c: &mut Criterion, name: &str, storage: &dyn Storage, persist_every: Option<u64>) {
    let value = vec![0xAB; VALUE_BYTES];
    let mut i = 0u64;
    let mut group = c.benchmark_group("storage/put");
    group.throughput(Throughput::Elements(1));
    if storage.sync_mode() == SyncMode::Always && persist_every.is_none() {
        group.sample_size(ALWAYS_SAMPLES);
    }
    group.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            let written = data_key(i)
                .and_then(|key| storage.put(Space::Data, &key, black_box(value.clone())))
                .and_then(|()| match persist_every {
                    Some(n) if i % n == 0 => storage.persist(),
                    _ => Ok(()),
                });
            if let Err(e) = written {
                panic!("{name}: put {i} failed: {e}");
            }
        })
    });
    group.finish();
}

fn bench_gets(c: &mut Criterion, name: &str, storage: &dyn Storage) -> Result<(), StorageError> {
    for i in 0..PRELOADED_KEYS {
        storage.put(Space::Data, &data_key(i)?, vec![0xCD; VALUE_BYTES])?;
    }
    storage.persist()?;
    let keys: Vec<Vec<u8>> = (0..PRELOADED_KEYS)
        .map(data_key)
        .collect::<Result<_, _>>()?;
    let mut i = 0usize;
    let mut group = c.benchmark_group("storage/get");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            match storage.get(Space::Data, black_box(&keys[i])) {
                Ok(Some(value)) => value,
                Ok(None) => panic!("{name}: preloaded key {i} is missing"),
                Err(e) => panic!("{name}: get {i} failed: {e}"),
            }
        })
    });
    group.finish();
    Ok(())
}

fn storage_benches(c: &mut Criterion) {
    if let Err(e) = run(c) {
        panic!("storage bench setup failed: {e}");
    }
}

fn run(c: &mut Criterion) -> Result<(), Box<dyn std::error::Error>> {
    let memory = MemoryStorage::new();
    bench_puts(c, "memory", &memory, None);
    bench_gets(c, "memory", &MemoryStorage::new())?;

    let dir = tempfile::tempdir()?;
    let fjall_none = open_fjall(&dir.path().join("none"), SyncMode::None)?;
    bench_puts(c, "fjall_none", &fjall_none, None);
    drop(fjall_none);

    let fjall_group = open_fjall(&dir.path().join("group"), SyncMode::Group)?;
    bench_puts(
        c,
        "fjall_group_persist64",
        &fjall_group,
        Some(GROUP_COMMIT_WRITES),
    );
    drop(fjall_group);

    let fjall_always = open_fjall(&dir.path().join("always"), SyncMode::Always)?;
    bench_puts(c, "fjall_always", &fjall_always, None);
    drop(fjall_always);

    let fjall_get = open_fjall(&dir.path().join("get"), SyncMode::Group)?;
    bench_gets(c, "fjall", &fjall_get)?;
    Ok(())
}

criterion_group!(benches, storage_benches);
criterion_main!(benches);
