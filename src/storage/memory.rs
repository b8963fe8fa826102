//! The in-memory engine, for tests and the deterministic simulator.
//!
//! It exists so the core can be exercised without a disk, fast and reproducibly. A
//! [`MemoryStorage`] is a handle: clones share the same maps, so the simulator can hand a
//! "restarted" node the storage its previous incarnation wrote (or a fresh one, to model
//! disk loss).
//!
//! It also models what a crash loses under each [`SyncMode`], so the simulator can check
//! the group-commit rule (no ack before `persist`): under `Group` and `None` every write
//! is remembered with an undo record until `persist` makes it durable, and
//! [`MemoryStorage::simulate_crash`] rolls back the writes not yet durable. Under `Always`
//! nothing is ever lost. The undo window is bounded by [`UNPERSISTED_WRITES_MAX`]; older
//! writes count as flushed, which is also what a real OS eventually does with dirty pages.
//!
//! One `RwLock` over all spaces gives `update` and `batch` their atomicity trivially;
//! contention does not matter for a test engine.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    BatchOp, KeyValue, Rmw, Space, Storage, StorageError, SyncMode, check_batch, check_key,
    check_rmw, check_scan, scan_is_empty,
};

/// Most un-persisted writes (updates or whole batches) kept for crash modelling; beyond
/// it the oldest count as durable.
pub const UNPERSISTED_WRITES_MAX: usize = 65_536;

/// In-memory [`Storage`]; cloning gives another handle to the same data.
#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<RwLock<Inner>>,
    sync: SyncMode,
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

struct Inner {
    spaces: [Map; 3],
    /// One entry per write (update or batch) not yet durable, oldest first.
    unpersisted: VecDeque<Vec<Undo>>,
}

/// What a key held before a not-yet-durable write changed it.
struct Undo {
    space: Space,
    key: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl MemoryStorage {
    /// Empty storage that behaves as [`SyncMode::Always`]: no write is ever lost.
    pub fn new() -> Self {
        Self::with_sync_mode(SyncMode::Always)
    }

    /// Empty storage whose [`MemoryStorage::simulate_crash`] loses the writes `sync`
    /// would leave un-synced.
    pub fn with_sync_mode(sync: SyncMode) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                spaces: Default::default(),
                unpersisted: VecDeque::new(),
            })),
            sync,
        }
    }

    /// Rolls back every write not yet made durable by [`Storage::persist`], as a crash
    /// of the machine would, newest first. Batches are rolled back whole. Returns the
    /// number of updates and batches lost. Always 0 under [`SyncMode::Always`].
    pub fn simulate_crash(&self) -> usize {
        let mut inner = self.write();
        let lost = inner.unpersisted.len();
        while let Some(write) = inner.unpersisted.pop_back() {
            for undo in write.into_iter().rev() {
                let map = &mut inner.spaces[undo.space.index()];
                match undo.previous {
                    Some(value) => map.insert(undo.key, value),
                    None => map.remove(&undo.key),
                };
            }
        }
        lost
    }

    /// Number of keys in one space.
    pub fn len(&self, space: Space) -> usize {
        self.read().spaces[space.index()].len()
    }

    /// True when a space holds no key.
    pub fn is_empty(&self, space: Space) -> bool {
        self.len(space) == 0
    }

    /// Number of writes a crash would lose right now.
    pub fn unpersisted_writes(&self) -> usize {
        self.read().unpersisted.len()
    }

    // A panic in an `update` closure poisons the lock, but the closure runs before any
    // mutation, so the maps are consistent and recovering the guard is sound.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Applies one write unit, recording undo records when the mode can lose it.
    fn apply(&mut self, sync: SyncMode, ops: Vec<BatchOp>) {
        let mut undo = Vec::new();
        for op in ops {
            let (space, key, value) = match op {
                BatchOp::Put { space, key, value } => (space, key, Some(value)),
                BatchOp::Delete { space, key } => (space, key, None),
            };
            let map = &mut self.spaces[space.index()];
            let previous = match value {
                Some(value) => map.insert(key.clone(), value),
                None => map.remove(&key),
            };
            if sync != SyncMode::Always {
                undo.push(Undo {
                    space,
                    key,
                    previous,
                });
            }
        }
        if !undo.is_empty() {
            if self.unpersisted.len() == UNPERSISTED_WRITES_MAX {
                self.unpersisted.pop_front();
            }
            self.unpersisted.push_back(undo);
        }
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("MemoryStorage")
            .field("sync", &self.sync)
            .field("data_keys", &inner.spaces[Space::Data.index()].len())
            .field("hints_keys", &inner.spaces[Space::Hints.index()].len())
            .field("meta_keys", &inner.spaces[Space::Meta.index()].len())
            .field("unpersisted_writes", &inner.unpersisted.len())
            .finish()
    }
}

impl Storage for MemoryStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(space, key)?;
        Ok(self.read().spaces[space.index()].get(key).cloned())
    }

    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
    ) -> Result<(), StorageError> {
        check_key(space, key)?;
        let mut inner = self.write();
        let decision = f(inner.spaces[space.index()].get(key).map(Vec::as_slice));
        check_rmw(space, key, &decision)?;
        let op = match decision {
            Rmw::Keep => return Ok(()),
            Rmw::Put(value) => BatchOp::Put {
                space,
                key: key.to_vec(),
                value,
            },
            Rmw::Delete => BatchOp::Delete {
                space,
                key: key.to_vec(),
            },
        };
        inner.apply(self.sync, vec![op]);
        Ok(())
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        check_scan(space, limit)?;
        if scan_is_empty(start, end, limit) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let inner = self.read();
        Ok(inner.spaces[space.index()]
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        check_batch(&ops)?;
        self.write().apply(self.sync, ops);
        Ok(())
    }

    fn persist(&self) -> Result<(), StorageError> {
        if self.sync == SyncMode::Group {
            self.write().unpersisted.clear();
        }
        Ok(())
    }

    fn sync_mode(&self) -> SyncMode {
        self.sync
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &MemoryStorage, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        s.put(Space::Data, key, value.to_vec())
    }

    #[test]
    fn always_loses_nothing_on_crash() -> Result<(), StorageError> {
        let s = MemoryStorage::new();
        put(&s, b"a", b"1")?;
        assert_eq!(s.simulate_crash(), 0);
        assert_eq!(s.get(Space::Data, b"a")?, Some(b"1".to_vec()));
        Ok(())
    }

    #[test]
    fn group_loses_exactly_the_writes_after_the_last_persist() -> Result<(), StorageError> {
        let s = MemoryStorage::with_sync_mode(SyncMode::Group);
        put(&s, b"a", b"1")?;
        put(&s, b"b", b"1")?;
        s.persist()?;
        put(&s, b"a", b"2")?;
        s.delete(Space::Data, b"b")?;
        s.batch(vec![
            BatchOp::Put {
                space: Space::Hints,
                key: b"h".to_vec(),
                value: b"x".to_vec(),
            },
            BatchOp::Put {
                space: Space::Data,
                key: b"a".to_vec(),
                value: b"3".to_vec(),
            },
        ])?;
        let handle = s.clone();
        assert_eq!(handle.simulate_crash(), 3);
        assert_eq!(s.get(Space::Data, b"a")?, Some(b"1".to_vec()));
        assert_eq!(s.get(Space::Data, b"b")?, Some(b"1".to_vec()));
        assert_eq!(s.get(Space::Hints, b"h")?, None);
        Ok(())
    }

    #[test]
    fn none_never_persists_but_the_window_is_bounded() -> Result<(), StorageError> {
        let s = MemoryStorage::with_sync_mode(SyncMode::None);
        put(&s, b"first", b"1")?;
        s.persist()?;
        assert_eq!(s.unpersisted_writes(), 1);
        for i in 0..UNPERSISTED_WRITES_MAX {
            put(&s, format!("k{i}").as_bytes(), b"v")?;
        }
        assert_eq!(s.unpersisted_writes(), UNPERSISTED_WRITES_MAX);
        assert_eq!(s.simulate_crash(), UNPERSISTED_WRITES_MAX);
        // The oldest write aged out of the window, so it counts as flushed.
        assert_eq!(s.get(Space::Data, b"first")?, Some(b"1".to_vec()));
        assert_eq!(s.len(Space::Data), 1);
        Ok(())
    }

    #[test]
    fn keep_records_nothing() -> Result<(), StorageError> {
        let s = MemoryStorage::with_sync_mode(SyncMode::Group);
        s.update(Space::Meta, b"m", &mut |_| Rmw::Keep)?;
        assert_eq!(s.unpersisted_writes(), 0);
        assert!(s.is_empty(Space::Meta));
        Ok(())
    }
}
