//! The durable engine, on fjall 3 (an LSM tree: write-optimised, which suits a store
//! whose every replica write is a blind put or a small read-modify-write).
//!
//! One fjall `Database` per node directory, one fjall keyspace per [`Space`]. Every write
//! (an `update` or a `batch`) is one fjall `WriteBatch`, which fjall journals as one unit
//! and replays all-or-nothing on recovery, so batches stay atomic across a crash, even
//! across spaces.
//!
//! Reads (`get`, `scan`) go through a fjall snapshot, not `Keyspace::get`/`range`. The
//! plain keyspace reads look at sequence number `MAX`, so they can see the first items
//! of a batch that is still being applied to the memtables and miss the rest (our
//! `batch_is_atomic` test caught exactly that). A snapshot reads at the last *published*
//! sequence number, and fjall publishes a batch only after all its items are in, so a
//! reader sees a batch whole or not at all. The one exception is the read inside
//! `update`, made under the key's stripe lock, which no half-applied write of that key
//! can hold (see `FjallStorage::read_locked`).
//!
//! Durability: each batch is committed with `PersistMode::SyncAll` under
//! [`SyncMode::Always`], and with `PersistMode::Buffer` otherwise (the journal's buffer
//! goes to the OS, so a killed process loses nothing, but nothing is fsynced).
//! [`Storage::persist`] is `Database::persist(PersistMode::SyncAll)`: one fsync of the
//! journal covering every write before it, which is the group commit.
//!
//! Atomic read-modify-write uses a striped lock, not a fjall transaction. fjall 3 offers
//! two transactional databases: `SingleWriterTxDatabase` serialises every write
//! transaction of the whole database behind one lock, and `OptimisticTxDatabase` aborts
//! on conflict and leaves retrying to the caller, which would call our closure more than
//! once. Both also replace the plain `Database` type, and so the batch API used here.
//! With [`LOCK_STRIPES`] mutexes chosen by a hash of (space, key), updates of different
//! keys run in parallel, updates of one key are serialised, and the closure runs exactly
//! once. `batch` takes the stripes of all its keys (in ascending order, so no two writers
//! can deadlock) so a batch never lands between an update's read and its write.

use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Slice};
use twox_hash::XxHash3_64;

use super::{
    BatchOp, KeyValue, Rmw, Space, Storage, StorageError, SyncMode, check_batch, check_key,
    check_rmw, check_scan, scan_is_empty, show_key,
};

/// Number of per-key lock stripes. Two keys share a stripe with probability 1/64, which
/// only costs a little parallelism, never correctness.
pub const LOCK_STRIPES: usize = 64;

/// Durable [`Storage`] on fjall 3.
pub struct FjallStorage {
    db: Database,
    spaces: [Keyspace; 3],
    stripes: Box<[Mutex<()>]>,
    sync: SyncMode,
    dir: PathBuf,
}

/// One write of a commit, borrowing the caller's key and value.
#[derive(Clone, Copy, Debug)]
enum Write<'a> {
    Put {
        space: Space,
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        space: Space,
        key: &'a [u8],
    },
}

impl FjallStorage {
    /// Opens (creating or recovering) the database in `dir`. Recovery replays the
    /// journal, so every write that was synced before a crash is back.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Self, StorageError> {
        let open_error = |source| StorageError::Open {
            dir: dir.to_path_buf(),
            source,
        };
        let db = Database::builder(dir).open().map_err(open_error)?;
        let open_space = |space: Space| {
            db.keyspace(space.name(), KeyspaceCreateOptions::default)
                .map_err(open_error)
        };
        let spaces = [
            open_space(Space::Data)?,
            open_space(Space::Hints)?,
            open_space(Space::Meta)?,
        ];
        Ok(Self {
            db,
            spaces,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            sync,
            dir: dir.to_path_buf(),
        })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        &self.spaces[space.index()]
    }

    fn stripe_of(space: Space, key: &[u8]) -> usize {
        let hash = XxHash3_64::oneshot_with_seed(space.index() as u64, key);
        // The remainder is below LOCK_STRIPES, so it fits in usize on every target.
        (hash % LOCK_STRIPES as u64) as usize
    }

    // The stripes guard no data (`()`), so a poisoned stripe (a panicking update closure)
    // protects nothing inconsistent: take it over. `stripe` comes from `stripe_of`, so it
    // is below LOCK_STRIPES, the length of `stripes`.
    fn lock_stripe(&self, stripe: usize) -> MutexGuard<'_, ()> {
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads one key through a snapshot (see the module docs for why), as fjall's bytes.
    fn read(&self, space: Space, key: &[u8]) -> Result<Option<Slice>, StorageError> {
        self.db
            .snapshot()
            .get(self.keyspace(space), key)
            .map_err(|source| StorageError::Engine {
                op: "get",
                target: format!("key {} in space {space}", show_key(key)),
                source,
            })
    }

    /// Reads a key whose stripe the caller holds, without a snapshot.
    ///
    /// A snapshot (see the module docs) keeps a reader from seeing half of a batch that is
    /// still being applied. Every write of this key, by `update` or by `batch`, holds its
    /// stripe until it has been applied and published, so while the caller holds the
    /// stripe no write of this key is half done, and the latest version is the one a
    /// snapshot would return. Opening and closing a snapshot costs a shared map insert
    /// and removal, on every write.
    fn read_locked(&self, space: Space, key: &[u8]) -> Result<Option<Slice>, StorageError> {
        self.keyspace(space)
            .get(key)
            .map_err(|source| StorageError::Engine {
                op: "get",
                target: format!("key {} in space {space}", show_key(key)),
                source,
            })
    }

    /// Commits writes as one journal unit with this engine's durability.
    ///
    /// The writes are borrowed: fjall copies every key and value into its own buffers
    /// (`ByteView::new`, also from a `Vec`), so owned copies here would only be thrown away.
    fn commit(&self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        let deduped;
        let kept = if writes.len() < 2 {
            writes
        } else {
            deduped = last_write_per_key(writes);
            deduped.as_slice()
        };
        let mode = match self.sync {
            SyncMode::Always => PersistMode::SyncAll,
            SyncMode::Group | SyncMode::None => PersistMode::Buffer,
        };
        let mut batch = self.db.batch().durability(Some(mode));
        for write in kept {
            match *write {
                Write::Put { space, key, value } => {
                    batch.insert(self.keyspace(space), key, value);
                }
                Write::Delete { space, key } => batch.remove(self.keyspace(space), key),
            }
        }
        // The error's description is built only when the commit failed: formatting it
        // up front cost every write an escaped copy of its key.
        batch.commit().map_err(|source| StorageError::Engine {
            op: "write",
            target: match kept {
                [one] => format!("key {} in space {}", show_key(one.key()), one.space()),
                _ => format!("a batch of {} ops", writes.len()),
            },
            source,
        })
    }
}

impl<'a> Write<'a> {
    fn space(&self) -> Space {
        match *self {
            Write::Put { space, .. } | Write::Delete { space, .. } => space,
        }
    }

    fn key(&self) -> &'a [u8] {
        match *self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

impl fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStorage")
            .field("dir", &self.dir)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl<'a> From<&'a BatchOp> for Write<'a> {
    fn from(op: &'a BatchOp) -> Self {
        match op {
            BatchOp::Put { space, key, value } => Write::Put {
                space: *space,
                key,
                value,
            },
            BatchOp::Delete { space, key } => Write::Delete { space: *space, key },
        }
    }
}

impl Storage for FjallStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(space, key)?;
        Ok(self.read(space, key)?.map(|v| v.to_vec()))
    }

    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
    ) -> Result<(), StorageError> {
        check_key(space, key)?;
        let _stripe = self.lock_stripe(Self::stripe_of(space, key));
        // The closure reads fjall's own bytes: no copy of the current value is made.
        let current = self.read_locked(space, key)?;
        let decision = f(current.as_deref());
        check_rmw(space, key, &decision)?;
        match decision {
            Rmw::Keep => Ok(()),
            Rmw::Put(value) => self.commit(&[Write::Put {
                space,
                key,
                value: &value,
            }]),
            Rmw::Delete => self.commit(&[Write::Delete { space, key }]),
        }
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
        let mut rows = Vec::with_capacity(limit.min(64));
        for guard in self
            .db
            .snapshot()
            .range::<&[u8], _>(self.keyspace(space), (Bound::Included(start), upper))
            .take(limit)
        {
            let (key, value) = guard.into_inner().map_err(|source| StorageError::Engine {
                op: "scan",
                target: format!("space {space} from key {}", show_key(start)),
                source,
            })?;
            rows.push((key.to_vec(), value.to_vec()));
        }
        Ok(rows)
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        check_batch(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut stripes: Vec<usize> = ops
            .iter()
            .map(|op| Self::stripe_of(op.space(), op.key()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<MutexGuard<'_, ()>> =
            stripes.into_iter().map(|s| self.lock_stripe(s)).collect();
        let writes: Vec<Write<'_>> = ops.iter().map(Write::from).collect();
        self.commit(&writes)
    }

    fn persist(&self) -> Result<(), StorageError> {
        match self.sync {
            // Already synced on every write (Always) or never synced (None).
            SyncMode::Always | SyncMode::None => Ok(()),
            SyncMode::Group => {
                self.db
                    .persist(PersistMode::SyncAll)
                    .map_err(|source| StorageError::Persist {
                        dir: self.dir.clone(),
                        source,
                    })
            }
        }
    }

    fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    fn disk_bytes(&self) -> Option<u64> {
        // fjall sums the table sizes it tracks and the journal files' sizes; no scan.
        self.db.disk_space().ok()
    }
}

/// Keeps only the last write on each (space, key), in their original order. fjall gives
/// all items of a batch one sequence number, so two writes of one key in a batch would tie
/// and which one wins would be up to the memtable; the trait promises "in order", i.e.
/// the last one wins, so that is made explicit here.
fn last_write_per_key<'a>(writes: &[Write<'a>]) -> Vec<Write<'a>> {
    let mut seen = HashSet::with_capacity(writes.len());
    let mut kept: Vec<Write<'a>> = writes
        .iter()
        .copied()
        .rev()
        .filter(|write| seen.insert((write.space(), write.key())))
        .collect();
    kept.reverse();
    kept
}
