//! How the node driver knows whether its group-commit persist is needed at all.
//!
//! The driver persists before it lets the outputs of a batch go. An fsync
//! after batches that wrote nothing (reads, forwarded requests, acks, pings) is not
//! free: on ext4 it still flushes the device cache, which costs about as much as syncing
//! a small write. [`PersistTracker`] skips it, and tells the driver
//! ([`PersistTracker::is_dirty`]) when outputs need not wait for a persist at all. The
//! persist itself runs on a blocking thread, overlapped with the next batches
//! ([`super::core_loop`]); neither changes what is durable when.

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

    /// True when something was written since the last persist started.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
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

    fn disk_bytes(&self) -> Option<u64> {
        self.inner.disk_bytes()
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
    fn is_dirty_follows_writes_and_persists() -> Result<(), StorageError> {
        let (_, tracker) = tracked();
        assert!(tracker.is_dirty(), "a new tracker starts dirty");
        tracker.persist()?;
        assert!(!tracker.is_dirty());
        tracker.update(Space::Data, b"k", &mut |_| Rmw::Keep)?;
        assert!(!tracker.is_dirty(), "a kept key is no write");
        tracker.put(Space::Data, b"k", b"v".to_vec())?;
        assert!(tracker.is_dirty());
        tracker.persist()?;
        assert!(!tracker.is_dirty());
        Ok(())
    }
}
