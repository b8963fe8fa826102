//! One behavioural suite run against every storage engine, so the memory engine the
//! simulator uses cannot drift from the fjall engine production uses.

use std::sync::Arc;
use std::thread;

use ringkv::storage::{
    BatchOp, DataKey, FjallStorage, MemoryStorage, Rmw, SCAN_ROWS_MAX, STORED_KEY_BYTES_MAX, Space,
    Storage, StorageError, SyncMode, VALUE_BYTES_MAX, decode_data_key, encode_data_key,
    position_range,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Threads racing on one counter in the atomicity test.
const COUNTER_THREADS: usize = 4;
/// Increments per thread; bounded so the test stays fast even with fsync-free fjall.
const COUNTER_INCREMENTS_PER_THREAD: u64 = 250;
/// Rounds of the batch-visibility race.
const BATCH_ROUNDS: u64 = 300;

/// A storage engine under test, plus whatever must outlive it (the temp directory).
struct Engine {
    storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Result<Engine, Box<dyn std::error::Error>> {
    Ok(Engine {
        storage: Arc::new(MemoryStorage::with_sync_mode(SyncMode::Group)),
        _dir: None,
    })
}

fn fjall() -> Result<Engine, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let storage = FjallStorage::open(dir.path(), SyncMode::Group)?;
    Ok(Engine {
        storage: Arc::new(storage),
        _dir: Some(dir),
    })
}

fn counter(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map_or(0, u64::from_le_bytes)
}

fn keys(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
    rows.iter().map(|(k, _)| k.as_slice()).collect()
}

fn get_update_delete(s: &dyn Storage) -> TestResult {
    assert_eq!(s.get(Space::Data, b"k")?, None);

    let mut calls = 0;
    s.update(Space::Data, b"k", &mut |current| {
        calls += 1;
        assert_eq!(current, None);
        Rmw::Put(b"v1".to_vec())
    })?;
    assert_eq!(calls, 1, "the update closure runs exactly once");
    assert_eq!(s.get(Space::Data, b"k")?, Some(b"v1".to_vec()));

    s.update(Space::Data, b"k", &mut |current| {
        assert_eq!(current, Some(&b"v1"[..]));
        Rmw::Put(b"v2".to_vec())
    })?;
    s.update(Space::Data, b"k", &mut |_| Rmw::Keep)?;
    assert_eq!(s.get(Space::Data, b"k")?, Some(b"v2".to_vec()));

    s.update(Space::Data, b"k", &mut |_| Rmw::Delete)?;
    assert_eq!(s.get(Space::Data, b"k")?, None);
    // Deleting a missing key is not an error.
    s.update(Space::Data, b"k", &mut |_| Rmw::Delete)?;

    s.put(Space::Data, b"p", b"x".to_vec())?;
    assert_eq!(s.get(Space::Data, b"p")?, Some(b"x".to_vec()));
    s.delete(Space::Data, b"p")?;
    assert_eq!(s.get(Space::Data, b"p")?, None);
    s.persist()?;
    Ok(())
}

fn rmw_is_atomic_across_threads(s: Arc<dyn Storage>) -> TestResult {
    thread::scope(|scope| -> TestResult {
        let workers: Vec<_> = (0..COUNTER_THREADS)
            .map(|_| {
                scope.spawn(|| -> Result<(), StorageError> {
                    for _ in 0..COUNTER_INCREMENTS_PER_THREAD {
                        s.update(Space::Meta, b"counter", &mut |v| {
                            // Widens the read-to-write window so a missing lock shows up.
                            thread::yield_now();
                            Rmw::Put((counter(v) + 1).to_le_bytes().to_vec())
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "counter thread panicked")??;
        }
        Ok(())
    })?;
    let total = counter(s.get(Space::Meta, b"counter")?.as_deref());
    assert_eq!(
        total,
        COUNTER_THREADS as u64 * COUNTER_INCREMENTS_PER_THREAD
    );
    Ok(())
}

fn scan_bounds_and_limits(s: &dyn Storage) -> TestResult {
    // Inserted out of order: scans must come back in key order anyway.
    for key in [&b"d"[..], b"a", b"e", b"c", b"b"] {
        s.put(Space::Hints, key, key.to_ascii_uppercase())?;
    }
    let rows = s.scan(Space::Hints, b"b", Some(b"d"), 100)?;
    assert_eq!(keys(&rows), vec![&b"b"[..], b"c"], "end is exclusive");
    assert_eq!(rows[0].1, b"B".to_vec());

    let rows = s.scan(Space::Hints, b"bb", None, 100)?;
    assert_eq!(
        keys(&rows),
        vec![&b"c"[..], b"d", b"e"],
        "open end, start between keys"
    );

    let rows = s.scan(Space::Hints, b"", None, 2)?;
    assert_eq!(keys(&rows), vec![&b"a"[..], b"b"], "limit caps the page");

    assert!(s.scan(Space::Hints, b"a", None, 0)?.is_empty());
    assert!(
        s.scan(Space::Hints, b"d", Some(b"b"), 10)?.is_empty(),
        "inverted range"
    );
    assert!(
        s.scan(Space::Hints, b"c", Some(b"c"), 10)?.is_empty(),
        "empty range"
    );
    assert!(
        s.scan(Space::Hints, b"f", None, 10)?.is_empty(),
        "past the end"
    );

    assert!(s.scan(Space::Hints, b"", None, SCAN_ROWS_MAX)?.len() == 5);
    assert!(matches!(
        s.scan(Space::Hints, b"", None, SCAN_ROWS_MAX + 1),
        Err(StorageError::ScanLimitTooLarge { limit, .. }) if limit == SCAN_ROWS_MAX + 1
    ));
    Ok(())
}

fn scan_by_position_range(s: &dyn Storage) -> TestResult {
    let entries: [(u64, &[u8], &[u8]); 6] = [
        (u64::MAX, b"b", b"last"),
        (10, b"b", b"k\0with-nul"),
        (5, b"bucket", b"k"),
        (5, b"b", b"z"),
        (0, b"b", b"first"),
        (11, b"b", b"k"),
    ];
    for (position, bucket, key) in entries {
        s.put(
            Space::Data,
            &encode_data_key(position, bucket, key)?,
            key.to_vec(),
        )?;
    }
    let decoded = |start: u64, end: u64| -> Result<Vec<DataKey>, StorageError> {
        let (lo, hi) = position_range(start, end);
        s.scan(Space::Data, &lo, hi.as_deref(), 100)?
            .iter()
            .map(|(raw, _)| decode_data_key(raw))
            .collect()
    };
    let data_key = |position: u64, bucket: &[u8], key: &[u8]| DataKey {
        position,
        bucket: bucket.to_vec(),
        key: key.to_vec(),
    };
    let mid = decoded(5, 10)?;
    assert_eq!(
        mid,
        vec![
            data_key(5, b"b", b"z"),
            data_key(5, b"bucket", b"k"),
            data_key(10, b"b", b"k\0with-nul"),
        ],
        "positions 5..=10 only, in (position, bucket, key) order"
    );
    assert_eq!(decoded(11, u64::MAX)?.len(), 2, "u64::MAX end is inclusive");
    assert_eq!(decoded(u64::MAX, u64::MAX)?.len(), 1);
    let all = decoded(0, u64::MAX)?;
    assert_eq!(all.len(), entries.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "tuple order: {all:?}");
    Ok(())
}

fn batch_is_atomic(s: Arc<dyn Storage>) -> TestResult {
    // A batch with one invalid op applies nothing.
    let refused = s.batch(vec![
        BatchOp::Put {
            space: Space::Data,
            key: b"x".to_vec(),
            value: b"1".to_vec(),
        },
        BatchOp::Delete {
            space: Space::Meta,
            key: Vec::new(),
        },
    ]);
    assert!(matches!(
        refused,
        Err(StorageError::EmptyKey { space: Space::Meta })
    ));
    assert_eq!(s.get(Space::Data, b"x")?, None);

    // Ops apply in order: the last write of a key wins.
    s.batch(vec![
        BatchOp::Put {
            space: Space::Data,
            key: b"o".to_vec(),
            value: b"1".to_vec(),
        },
        BatchOp::Delete {
            space: Space::Data,
            key: b"o".to_vec(),
        },
        BatchOp::Put {
            space: Space::Data,
            key: b"p".to_vec(),
            value: b"1".to_vec(),
        },
        BatchOp::Delete {
            space: Space::Data,
            key: b"q".to_vec(),
        },
        BatchOp::Put {
            space: Space::Data,
            key: b"p".to_vec(),
            value: b"2".to_vec(),
        },
    ])?;
    assert_eq!(s.get(Space::Data, b"o")?, None);
    assert_eq!(s.get(Space::Data, b"p")?, Some(b"2".to_vec()));

    // Readers never see half a batch: x (Data) and y (Hints) always move together, so
    // reading x first and y second must find y at least as new as x.
    thread::scope(|scope| -> TestResult {
        let writer = scope.spawn(|| -> Result<(), StorageError> {
            for round in 1..=BATCH_ROUNDS {
                let value = round.to_le_bytes().to_vec();
                s.batch(vec![
                    BatchOp::Put {
                        space: Space::Data,
                        key: b"x".to_vec(),
                        value: value.clone(),
                    },
                    BatchOp::Put {
                        space: Space::Hints,
                        key: b"y".to_vec(),
                        value,
                    },
                ])?;
            }
            Ok(())
        });
        // Bounded: the writer does BATCH_ROUNDS batches and then finishes (or fails).
        while !writer.is_finished() {
            let x = counter(s.get(Space::Data, b"x")?.as_deref());
            let y = counter(s.get(Space::Hints, b"y")?.as_deref());
            assert!(y >= x, "saw half a batch: x={x} y={y}");
        }
        writer.join().map_err(|_| "batch writer panicked")??;
        Ok(())
    })?;
    assert_eq!(counter(s.get(Space::Data, b"x")?.as_deref()), BATCH_ROUNDS);
    assert_eq!(counter(s.get(Space::Hints, b"y")?.as_deref()), BATCH_ROUNDS);
    Ok(())
}

fn spaces_are_separate(s: &dyn Storage) -> TestResult {
    for (i, space) in Space::ALL.into_iter().enumerate() {
        s.put(space, b"same", vec![i as u8])?;
    }
    for (i, space) in Space::ALL.into_iter().enumerate() {
        assert_eq!(s.get(space, b"same")?, Some(vec![i as u8]));
        assert_eq!(s.scan(space, b"", None, 10)?.len(), 1, "space {space}");
    }
    s.delete(Space::Hints, b"same")?;
    assert_eq!(s.get(Space::Hints, b"same")?, None);
    assert_eq!(s.get(Space::Data, b"same")?, Some(vec![0]));
    assert_eq!(s.get(Space::Meta, b"same")?, Some(vec![2]));
    Ok(())
}

fn limits_are_errors_not_panics(s: &dyn Storage) -> TestResult {
    assert!(matches!(
        s.get(Space::Data, b""),
        Err(StorageError::EmptyKey { .. })
    ));
    let long_key = vec![b'k'; STORED_KEY_BYTES_MAX + 1];
    assert!(matches!(
        s.put(Space::Data, &long_key, b"v".to_vec()),
        Err(StorageError::StoredKeyTooLong { .. })
    ));
    let longest_key = vec![b'k'; STORED_KEY_BYTES_MAX];
    s.put(Space::Data, &longest_key, b"v".to_vec())?;
    assert_eq!(s.get(Space::Data, &longest_key)?, Some(b"v".to_vec()));

    let mut huge = Some(vec![0u8; VALUE_BYTES_MAX + 1]);
    let refused = s.update(Space::Data, b"big", &mut |_| {
        Rmw::Put(huge.take().unwrap_or_default())
    });
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("\"big\"") && message.contains("over the"),
        "{message}"
    );
    assert_eq!(s.get(Space::Data, b"big")?, None);
    Ok(())
}

macro_rules! engine_suite {
    ($engine:ident) => {
        mod $engine {
            use super::*;

            #[test]
            fn get_update_delete() -> TestResult {
                super::get_update_delete(&*super::$engine()?.storage)
            }

            #[test]
            fn rmw_is_atomic_across_threads() -> TestResult {
                super::rmw_is_atomic_across_threads(super::$engine()?.storage)
            }

            #[test]
            fn scan_bounds_and_limits() -> TestResult {
                super::scan_bounds_and_limits(&*super::$engine()?.storage)
            }

            #[test]
            fn scan_by_position_range() -> TestResult {
                super::scan_by_position_range(&*super::$engine()?.storage)
            }

            #[test]
            fn batch_is_atomic() -> TestResult {
                super::batch_is_atomic(super::$engine()?.storage)
            }

            #[test]
            fn spaces_are_separate() -> TestResult {
                super::spaces_are_separate(&*super::$engine()?.storage)
            }

            #[test]
            fn limits_are_errors_not_panics() -> TestResult {
                super::limits_are_errors_not_panics(&*super::$engine()?.storage)
            }
        }
    };
}

engine_suite!(memory);
engine_suite!(fjall);

#[test]
fn fjall_reopens_with_its_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let s = FjallStorage::open(dir.path(), SyncMode::Group)?;
        s.put(Space::Meta, b"node", b"n1".to_vec())?;
        s.put(Space::Data, b"d", b"1".to_vec())?;
        s.persist()?;
    }
    let s = FjallStorage::open(dir.path(), SyncMode::Always)?;
    assert_eq!(s.get(Space::Meta, b"node")?, Some(b"n1".to_vec()));
    assert_eq!(s.get(Space::Data, b"d")?, Some(b"1".to_vec()));
    assert_eq!(s.get(Space::Hints, b"d")?, None);
    assert_eq!(s.sync_mode(), SyncMode::Always);
    Ok(())
}

#[test]
fn fjall_open_on_a_file_fails_with_the_path() -> TestResult {
    let file = tempfile::NamedTempFile::new()?;
    let err = FjallStorage::open(file.path(), SyncMode::Group)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&file.path().display().to_string()),
        "error should name the directory: {err:?}"
    );
    Ok(())
}
