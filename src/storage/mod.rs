//! Storage: one synchronous trait, two engines.
//!
//! The sans-IO core never touches a file. It reads and writes through [`Storage`], which
//! is synchronous because the core runs one thread per node and must stay deterministic
//! under the simulator. Two engines implement it:
//!
//! - [`MemoryStorage`]: `BTreeMap`s behind a lock, for tests and the simulator. Handles are
//!   cheap clones sharing the same maps, so the simulator can keep a node's storage across
//!   a simulated crash (or drop it to model disk loss), and it can model which writes a
//!   crash loses under each [`SyncMode`].
//! - [`FjallStorage`]: the durable default, on the fjall 3 LSM engine.
//!
//! Keys live in three separate [`Space`]s so that hinted handoff and node metadata never
//! show up in a scan of the data. Data keys are laid out by [`key`] so that a partition or
//! any ring-position range is one contiguous scan.
//!
//! # Durability and group commit
//!
//! A replica acknowledges a write only once it is durable, but one fsync per write would
//! cap a node at the disk's sync rate. ringkv therefore commits in groups, and
//! [`SyncMode`] picks the policy:
//!
//! - [`SyncMode::Always`]: every `update`/`batch` is synced to disk before it returns.
//!   Simple and slow: one fsync per write.
//! - [`SyncMode::Group`] (the intended production setting): writes go to the journal
//!   without a sync. The node driver handles a whole batch of inputs (every message and
//!   request that arrived together), then calls [`Storage::persist`] once, and only THEN
//!   sends the acknowledgements those inputs produced. All writes of the batch share one
//!   fsync, and no acknowledgement ever leaves before the write it acknowledges is on
//!   disk. A crash before `persist` returns loses only unacknowledged writes.
//! - [`SyncMode::None`]: never synced; `persist` is a no-op. Writes still reach the
//!   operating system promptly, so they survive the ringkv process being killed, but an
//!   operating-system crash or power loss can lose writes that were already
//!   acknowledged. Use it only for benchmarks and throwaway clusters.
//!
//! # Atomicity
//!
//! [`Storage::update`] is an atomic read-modify-write of one key and [`Storage::batch`]
//! applies all its operations or none. Both engines make `batch` respect `update`'s
//! atomicity: a batch never slips a write to a key between an update's read and write.

mod error;
pub mod key;
mod lsm;
mod memory;

use std::fmt;
use std::str::FromStr;

pub use error::StorageError;
pub use key::{
    BUCKET_BYTES_MAX, DataKey, KEY_BYTES_MAX, check_data_key, decode_data_key, encode_data_key,
    position_range,
};
pub use lsm::{FjallStorage, LOCK_STRIPES};
pub use memory::{MemoryStorage, UNPERSISTED_WRITES_MAX};

/// Longest key either engine stores, in bytes. fjall (lsm-tree) stores key lengths as
/// `u16` and panics beyond it, so the limit is checked here and reported as an error.
pub const STORED_KEY_BYTES_MAX: usize = u16::MAX as usize;

/// Largest value either engine stores, in bytes. Far above any sane object (the client
/// protocol refuses big values long before this); it exists so a runaway sibling list
/// fails with an error instead of exhausting memory in one write.
pub const VALUE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most rows one [`Storage::scan`] may return. Scans of large ranges page through it,
/// restarting just after the last key returned.
pub const SCAN_ROWS_MAX: usize = 10_000;

/// Most operations one [`Storage::batch`] may carry, so one atomic commit stays bounded in
/// memory and in the time it holds the per-key locks.
pub const BATCH_OPS_MAX: usize = 10_000;

/// How many bytes of a key an error message shows before eliding the rest.
const KEY_SHOWN_BYTES_MAX: usize = 64;

/// One `(key, value)` row returned by [`Storage::scan`].
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A separate keyspace. Each is its own fjall keyspace, so a scan of one never sees keys
/// of another even when the bytes coincide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Replicated objects, keyed by [`encode_data_key`].
    Data,
    /// Hinted-handoff records held for a node that was down.
    Hints,
    /// Node-local metadata (identity, membership, counters).
    Meta,
}

/// When writes are synced to disk; see the module docs for what each mode promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Every write is synced before it returns.
    Always,
    /// Writes are synced together by [`Storage::persist`], called before any ack is sent.
    #[default]
    Group,
    /// Never synced: acknowledged writes can be lost on an OS crash or power loss.
    None,
}

/// What the closure of an atomic [`Storage::update`] decides to do with the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rmw {
    /// Leave the key as it is (no write happens, nothing is synced).
    Keep,
    /// Store this value.
    Put(Vec<u8>),
    /// Remove the key.
    Delete,
}

/// One write of an atomic [`Storage::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Store `value` under `key`.
    Put {
        /// Keyspace written.
        space: Space,
        /// Key written.
        key: Vec<u8>,
        /// Value stored.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Keyspace written.
        space: Space,
        /// Key removed.
        key: Vec<u8>,
    },
}

/// The synchronous storage interface of one node.
///
/// `Send + Sync` because besides the core's task, the network driver's persist (on a
/// blocking thread) shares it as `Arc<dyn Storage>`.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Reads one key.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Atomic read-modify-write of one key: no other update of the same key interleaves
    /// between the read and the write. `f` is called exactly once, with the current value.
    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
    ) -> Result<(), StorageError>;

    /// Keys in `[start, end)` (`end` `None` = to the end of the space), in key order, at
    /// most `limit` of them. `limit` above [`SCAN_ROWS_MAX`] is an error rather than a
    /// silent cap, so a caller never mistakes a capped page for the end of the range.
    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;

    /// Applies all ops atomically (all or none, also across a crash), in order.
    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError>;

    /// Group-commit point: makes every write made so far durable (one fsync for all of
    /// them). No-op under [`SyncMode::None`].
    fn persist(&self) -> Result<(), StorageError>;

    /// The sync policy this engine was opened with.
    fn sync_mode(&self) -> SyncMode;

    /// Bytes the engine holds on disk, when it can tell without a scan (metrics); `None`
    /// for engines without a disk or that cannot say.
    fn disk_bytes(&self) -> Option<u64> {
        None
    }

    /// Stores one value unconditionally (a batch of one).
    fn put(&self, space: Space, key: &[u8], value: Vec<u8>) -> Result<(), StorageError> {
        self.batch(vec![BatchOp::Put {
            space,
            key: key.to_vec(),
            value,
        }])
    }

    /// Removes one key unconditionally (a batch of one).
    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StorageError> {
        self.batch(vec![BatchOp::Delete {
            space,
            key: key.to_vec(),
        }])
    }
}

impl Space {
    /// Every space, in a fixed order (also the engines' internal index order).
    pub const ALL: [Space; 3] = [Space::Data, Space::Hints, Space::Meta];

    /// Stable lowercase name, also used as the fjall keyspace name.
    pub fn name(self) -> &'static str {
        match self {
            Space::Data => "data",
            Space::Hints => "hints",
            Space::Meta => "meta",
        }
    }

    fn index(self) -> usize {
        match self {
            Space::Data => 0,
            Space::Hints => 1,
            Space::Meta => 2,
        }
    }
}

impl SyncMode {
    /// Every mode, for help texts and tests.
    pub const ALL: [SyncMode; 3] = [SyncMode::Always, SyncMode::Group, SyncMode::None];

    /// The name accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Group => "group",
            SyncMode::None => "none",
        }
    }
}

impl BatchOp {
    /// The space this op writes.
    pub fn space(&self) -> Space {
        match self {
            BatchOp::Put { space, .. } | BatchOp::Delete { space, .. } => *space,
        }
    }

    /// The key this op writes.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key, .. } => key,
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SyncMode {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SyncMode::ALL
            .into_iter()
            .find(|mode| mode.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| StorageError::InvalidSyncMode {
                given: s.to_string(),
            })
    }
}

/// Renders a key for an error message: printable ASCII as is, other bytes escaped, long
/// keys elided, so a message stays one readable line whatever the key holds.
pub(crate) fn show_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(KEY_SHOWN_BYTES_MAX)];
    let mut out: String = shown.escape_ascii().to_string();
    if key.len() > KEY_SHOWN_BYTES_MAX {
        out.push_str(&format!("...({} bytes)", key.len()));
    }
    format!("\"{out}\"")
}

/// Checks the limits both engines share, so they fail identically instead of one of
/// them panicking deep inside fjall.
fn check_key(space: Space, key: &[u8]) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::EmptyKey { space });
    }
    if key.len() > STORED_KEY_BYTES_MAX {
        return Err(StorageError::StoredKeyTooLong {
            space,
            key: show_key(key),
            len: key.len(),
            max: STORED_KEY_BYTES_MAX,
        });
    }
    Ok(())
}

fn check_value(space: Space, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(StorageError::ValueTooLarge {
            space,
            key: show_key(key),
            len: value.len(),
            max: VALUE_BYTES_MAX,
        });
    }
    Ok(())
}

fn check_rmw(space: Space, key: &[u8], decision: &Rmw) -> Result<(), StorageError> {
    match decision {
        Rmw::Put(value) => check_value(space, key, value),
        Rmw::Keep | Rmw::Delete => Ok(()),
    }
}

fn check_scan(space: Space, limit: usize) -> Result<(), StorageError> {
    if limit > SCAN_ROWS_MAX {
        return Err(StorageError::ScanLimitTooLarge {
            space,
            limit,
            max: SCAN_ROWS_MAX,
        });
    }
    Ok(())
}

fn check_batch(ops: &[BatchOp]) -> Result<(), StorageError> {
    if ops.len() > BATCH_OPS_MAX {
        return Err(StorageError::BatchTooLarge {
            ops: ops.len(),
            max: BATCH_OPS_MAX,
        });
    }
    for op in ops {
        check_key(op.space(), op.key())?;
        if let BatchOp::Put { space, key, value } = op {
            check_value(*space, key, value)?;
        }
    }
    Ok(())
}

/// True when `[start, end)` holds no key at all. Checked before touching an engine
/// because `BTreeMap::range` panics on an inverted range.
fn scan_is_empty(start: &[u8], end: Option<&[u8]>, limit: usize) -> bool {
    limit == 0 || end.is_some_and(|end| end <= start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_mode_parses_and_displays_every_mode() {
        for mode in SyncMode::ALL {
            assert_eq!(mode.to_string().parse::<SyncMode>().ok(), Some(mode));
        }
        assert_eq!(" GROUP ".parse::<SyncMode>().ok(), Some(SyncMode::Group));
        let err = "fsync".parse::<SyncMode>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("\"fsync\"") && e.contains("always, group, none")));
    }

    #[test]
    fn show_key_escapes_and_elides() {
        assert_eq!(show_key(b"a\0b"), "\"a\\x00b\"");
        let long = vec![b'x'; KEY_SHOWN_BYTES_MAX + 10];
        let shown = show_key(&long);
        assert!(shown.ends_with(&format!("...({} bytes)\"", KEY_SHOWN_BYTES_MAX + 10)));
    }

    #[test]
    fn scan_is_empty_covers_inverted_and_zero_limit() {
        assert!(scan_is_empty(b"b", Some(b"a"), 10));
        assert!(scan_is_empty(b"a", Some(b"a"), 10));
        assert!(scan_is_empty(b"a", None, 0));
        assert!(!scan_is_empty(b"a", Some(b"b"), 1));
        assert!(!scan_is_empty(b"a", None, 1));
    }
}
