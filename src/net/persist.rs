//! How the node driver runs its group-commit persist, so the fsync costs no more than it
//! must.
//!
//! The driver persists once per batch of inputs before it lets any output go (DESIGN.md
//! §7). Two things made that dearer than the sync itself: the fsync ran on a runtime
//! worker, stalling every other task queued there; and it ran after every batch, also
//! after batches that wrote nothing (reads, forwarded requests, acks, pings). An fsync
//! of an unchanged file is not free: on ext4 it still flushes the device cache, which
//! costs about as much as syncing a small write. [`persist_off_worker`] fixes the first,
//! [`PersistTracker`] the second; neither changes what is durable when.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::storage::{BatchOp, KeyValue, Rmw, Space, Storage, StorageError, SyncMode};

/// A storage engine that remembers whether anything was written since the last
/// persist, and skips the persist (the fsync) when nothing was.
///
/// A write marks the tracker dirty only after the engine returned from it, and a persist
/// clears the mark before it syncs. So a write made before a persist starts is always
/// either synced by it or still marked for the next one; a failed persist marks the
/// tracker dirty again. Reads, scans and read-modify-writes that decide to keep the key
/// as it is leave it clean.
pub struct PersistTracker {
    inner: Arc<dyn Storage>,
    dirty: AtomicBool,
}

impl PersistTracker {
    /// Wraps `inner`; starts dirty, so the first persist always syncs whatever the
    /// engine or an earlier owner left unsynced.
    pub fn new(inner: Arc<dyn Storage>) -> PersistTracker {
        PersistTracker {
            inner,
            dirty: AtomicBool::new(true),
        }
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }
}

impl fmt::Debug for PersistTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistTracker")
            .field("inner", &self.inner)
            .field("dirty", &self.dirty.load(Ordering::Relaxed))
            .finish()
    }
}

impl Storage for PersistTracker {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }

    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
    ) -> Result<(), StorageError> {
        let mut writes = false;
        let result = self.inner.update(space, key, &mut |current| {
            let decision = f(current);
            writes = decision != Rmw::Keep;
            decision
        });
        // An error may come after a partial write; syncing once too often is harmless.
        if writes || result.is_err() {
            self.mark_dirty();
        }
        result
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.inner.scan(space, start, end, limit)
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        let writes = !ops.is_empty();
        let result = self.inner.batch(ops);
        if writes {
            self.mark_dirty();
        }
        result
    }

    fn persist(&self) -> Result<(), StorageError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.inner.persist();
        if result.is_err() {
            self.mark_dirty();
        }
        result
    }

    fn sync_mode(&self) -> SyncMode {
        self.inner.sync_mode()
    }

    fn put(&self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), StorageError> {
        let result = self.inner.put(space, key, value);
        self.mark_dirty();
        result
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StorageError> {
        let result = self.inner.delete(space, key);
        self.mark_dirty();
        result
    }
}

/// Runs `storage.persist()` (an fsync) without stalling the runtime worker it runs on.
///
/// On a worker of the multi-thread runtime, a plain call would hold that worker for the
/// whole sync, and with it every task queued there: QUIC connection drivers, the server,
/// other nodes of the same process. `block_in_place` hands the worker's queue to another
/// thread first, so they keep running and new inputs gather for the next batch, while
/// this task still does nothing else until the sync is done (so an abort cannot land
/// mid-persist and outputs still leave only after it). A current-thread runtime has no
/// other worker to hand over to, so there it is a plain call.
pub fn persist_off_worker(storage: &dyn Storage) -> Result<(), StorageError> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| storage.persist())
        }
        _ => storage.persist(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    /// Counts persists that reach the engine.
    #[derive(Debug, Default)]
    struct CountingStorage {
        memory: MemoryStorage,
        persists: std::sync::atomic::AtomicUsize,
    }

    impl Storage for CountingStorage {
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            self.memory.get(space, key)
        }

        fn update(
            &self,
            space: Space,
            key: &[u8],
            f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
        ) -> Result<(), StorageError> {
            self.memory.update(space, key, f)
        }

        fn scan(
            &self,
            space: Space,
            start: &[u8],
            end: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<KeyValue>, StorageError> {
            self.memory.scan(space, start, end, limit)
        }

        fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
            self.memory.batch(ops)
        }

        fn persist(&self) -> Result<(), StorageError> {
            self.persists.fetch_add(1, Ordering::SeqCst);
            self.memory.persist()
        }

        fn sync_mode(&self) -> SyncMode {
            SyncMode::Group
        }
    }

    fn tracked() -> (Arc<CountingStorage>, PersistTracker) {
        let inner = Arc::new(CountingStorage::default());
        let tracker = PersistTracker::new(inner.clone());
        (inner, tracker)
    }

    fn persists(inner: &CountingStorage) -> usize {
        inner.persists.load(Ordering::SeqCst)
    }

    #[test]
    fn the_first_persist_syncs_and_an_idle_one_is_skipped() -> Result<(), StorageError> {
        let (inner, tracker) = tracked();
        tracker.persist()?;
        assert_eq!(persists(&inner), 1);
        tracker.get(Space::Data, b"k")?;
        tracker.scan(Space::Data, b"", None, 10)?;
        tracker.persist()?;
        assert_eq!(persists(&inner), 1, "reads alone must not sync");
        Ok(())
    }

    #[test]
    fn every_kind_of_write_makes_the_next_persist_sync() -> Result<(), StorageError> {
        let (inner, tracker) = tracked();
        tracker.persist()?;
        let writes: [&dyn Fn() -> Result<(), StorageError>; 4] = [
            &|| tracker.put(Space::Data, b"a", b"1".to_vec()),
            &|| tracker.delete(Space::Data, b"a"),
            &|| {
                tracker.batch(vec![BatchOp::Put {
                    space: Space::Hints,
                    key: b"h".to_vec(),
                    value: b"2".to_vec(),
                }])
            },
            &|| tracker.update(Space::Data, b"b", &mut |_| Rmw::Put(b"3".to_vec())),
        ];
        for (i, write) in writes.iter().enumerate() {
            write()?;
            tracker.persist()?;
            assert_eq!(persists(&inner), i + 2, "write {i} was not synced");
            tracker.persist()?;
            assert_eq!(persists(&inner), i + 2, "write {i} was synced twice");
        }
        assert_eq!(tracker.get(Space::Data, b"b")?, Some(b"3".to_vec()));
        Ok(())
    }

    #[test]
    fn an_update_that_keeps_the_key_or_an_empty_batch_does_not_sync() -> Result<(), StorageError> {
        let (inner, tracker) = tracked();
        tracker.persist()?;
        tracker.update(Space::Data, b"k", &mut |_| Rmw::Keep)?;
        tracker.batch(Vec::new())?;
        tracker.persist()?;
        assert_eq!(persists(&inner), 1);
        Ok(())
    }

    #[test]
    fn persist_off_worker_syncs_on_both_runtime_flavours() -> Result<(), Box<dyn std::error::Error>>
    {
        for multi in [false, true] {
            let rt = if multi {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .build()?
            } else {
                tokio::runtime::Builder::new_current_thread().build()?
            };
            let (inner, tracker) = tracked();
            let tracker = Arc::new(tracker);
            let task = tracker.clone();
            rt.block_on(
                async move { tokio::spawn(async move { persist_off_worker(&*task) }).await },
            )??;
            assert_eq!(persists(&inner), 1, "multi-thread runtime: {multi}");
        }
        Ok(())
    }
}
