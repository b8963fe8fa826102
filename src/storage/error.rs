//! The storage layer's one error type.
//!
//! Every variant says what was refused or what failed, names the key, space or directory
//! involved, and tells the caller what to do next. Validation errors (bad bucket, too
//! long, too many) leave storage unchanged; engine errors may mean the disk is failing.

use std::path::PathBuf;

use super::Space;

/// Everything that can go wrong in `src/storage`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A data key was built with an empty bucket name.
    #[error("bucket name is empty; every key needs a non-empty bucket")]
    BucketEmpty,

    /// A bucket name holds the byte that separates bucket from key on disk.
    #[error(
        "bucket {bucket} contains a 0x00 byte at offset {offset}; bucket names must not \
         contain NUL (it separates bucket from key in storage), rename the bucket"
    )]
    BucketContainsNul {
        /// The bucket, escaped for display.
        bucket: String,
        /// Offset of the first 0x00 byte.
        offset: usize,
    },

    /// A bucket name is over [`super::BUCKET_BYTES_MAX`].
    #[error("bucket {bucket} is {len} bytes, over the {max}-byte limit; use a shorter bucket name")]
    BucketTooLong {
        /// The bucket, escaped and elided for display.
        bucket: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A user key is over [`super::KEY_BYTES_MAX`].
    #[error(
        "key {key} in bucket {bucket} is {len} bytes, over the {max}-byte limit; use a shorter key"
    )]
    KeyTooLong {
        /// The bucket, escaped for display.
        bucket: String,
        /// The key, escaped and elided for display.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Bytes read from the data space do not decode as a data key.
    #[error(
        "data key {key} ({len} bytes) is malformed: {reason}; the data space holds a key \
         ringkv did not write, check that the data directory belongs to this ringkv version"
    )]
    MalformedDataKey {
        /// The raw key, escaped and elided for display.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// Engines cannot store an empty key (fjall refuses them).
    #[error("empty key in space {space}; storage keys must be at least one byte long")]
    EmptyKey {
        /// The space written or read.
        space: Space,
    },

    /// A raw storage key is over [`super::STORED_KEY_BYTES_MAX`].
    #[error(
        "key {key} in space {space} is {len} bytes, over the engine limit of {max} bytes; \
         use a shorter key"
    )]
    StoredKeyTooLong {
        /// The space written or read.
        space: Space,
        /// The key, escaped and elided for display.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A value is over [`super::VALUE_BYTES_MAX`].
    #[error(
        "value for key {key} in space {space} is {len} bytes, over the {max}-byte limit; \
         the write was refused, store a smaller value"
    )]
    ValueTooLarge {
        /// The space written.
        space: Space,
        /// The key, escaped and elided for display.
        key: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A scan asked for more than [`super::SCAN_ROWS_MAX`] rows.
    #[error(
        "scan of space {space} asked for {limit} rows, over the maximum of {max}; page \
         through the range with smaller limits, restarting after the last key returned"
    )]
    ScanLimitTooLarge {
        /// The space scanned.
        space: Space,
        /// The limit asked for.
        limit: usize,
        /// The maximum.
        max: usize,
    },

    /// A batch carried more than [`super::BATCH_OPS_MAX`] operations.
    #[error(
        "batch of {ops} operations is over the maximum of {max}; split it into smaller batches"
    )]
    BatchTooLarge {
        /// Operations in the refused batch.
        ops: usize,
        /// The maximum.
        max: usize,
    },

    /// A sync mode name did not parse.
    #[error("unknown sync mode {given:?}; use one of: always, group, none")]
    InvalidSyncMode {
        /// What was given.
        given: String,
    },

    /// The fjall database could not be opened or recovered.
    #[error(
        "could not open the fjall database at {}: {source}; check that the directory is \
         writable, that no other ringkv process has it open, and that its journal is intact",
        .dir.display()
    )]
    Open {
        /// The database directory.
        dir: PathBuf,
        /// fjall's error.
        source: fjall::Error,
    },

    /// A fjall read or write failed.
    #[error(
        "fjall {op} of {target} failed: {source}; after an I/O failure fjall refuses further \
         writes, check the disk and restart the node"
    )]
    Engine {
        /// The operation: get, scan, update, batch.
        op: &'static str,
        /// What it touched: a key and space, or a batch size.
        target: String,
        /// fjall's error.
        source: fjall::Error,
    },

    /// Syncing the journal failed; nothing written since the last sync may be acked.
    #[error(
        "syncing the fjall journal at {} failed: {source}; writes since the last successful \
         sync are not durable and must not be acknowledged, check the disk and restart the node",
        .dir.display()
    )]
    Persist {
        /// The database directory.
        dir: PathBuf,
        /// fjall's error.
        source: fjall::Error,
    },
}
