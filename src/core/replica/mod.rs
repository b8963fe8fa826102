//! What a replica does with its storage: read, apply and merge objects, keep hints.
//!
//! Every change is one atomic read-modify-write of one key, so a merge can never
//! interleave with another write to the same key. A copy held for a down primary goes to
//! the hint store instead of the data space, so this node never serves it as its own and
//! hands exactly it back when the primary returns. Stored bytes are decoded here, at the
//! disk edge, and a corrupt record is an error naming the key, never a panic.
//!
//! Tombstone arrival times and hint creation times live next to the data, in the `Meta`
//! space (see `tombstones`), so tombstones can be reaped and old hints expired without
//! ever bringing a deleted key back.

pub(crate) mod handoff;
pub mod hints;
mod tombstones;

use tombstones::Stamps;

use std::sync::Arc;

use thiserror::Error;

use crate::core::object::clock::{ActorId, Timestamp};
use crate::core::object::{Applied, Limits, Object, ObjectError, Write};
use crate::core::placement::ring::{NodeId, key_position};
use crate::core::repair::merkle::{MerkleTrees, RebuildProgress};
use crate::core::repair::reap::TOMBSTONE_GRACE_MS_DEFAULT;
use crate::core::replica::hints::Hints;
use crate::core::stats::DistinctKeys;
use crate::proto::Key;
use crate::storage::{self, Rmw, SCAN_ROWS_MAX, Space, Storage, StorageError};

/// Errors from replica operations. A read-modify-write either stores its new record
/// whole or leaves the old one; the Merkle trees, statistics and indexes change only
/// after a record was stored.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The storage engine failed; the record is as the engine left it (engines apply a
    /// write whole or not at all).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored record does not decode, or a new one does not encode; nothing was
    /// written.
    #[error(
        "the stored object for {key} cannot be decoded ({error}); the record is corrupt, repair it from a replica"
    )]
    Corrupt {
        /// The key, as `bucket/key`.
        key: String,
        /// What failed.
        #[source]
        error: RecordError,
    },
    /// The operation does not apply to the stored object; nothing was written.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A stand-in write found the hint store full; nothing was written.
    #[error(
        "the hint store is full ({limit} hints); this node cannot stand in for {primary} until hints drain"
    )]
    HintsFull { primary: NodeId, limit: u64 },
}

/// Why a stored record is unusable.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The stored bytes are not an object.
    #[error("{0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The new object could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Bytes reserved beyond the old record's length for its re-encoding (a new dot, a
/// longer value), so a typical update encodes without regrowing its buffer.
const RECORD_SLACK_BYTES: usize = 64;

/// A read-modify-write step over a decoded object: the new object plus a by-product. It
/// gets the decoded object by value, so a step that changes it need not copy it first.
type RmwFn<'a, T> = dyn FnMut(Option<Object>) -> Result<(Object, T), ReplicaError> + 'a;

/// A node's local replica: its storage plus hint bookkeeping.
#[derive(Debug)]
pub struct Replica {
    storage: Arc<dyn Storage>,
    hints: Hints,
    /// Merkle trees over the data space, updated on every data write.
    trees: MerkleTrees,
    /// Distinct keys of the data space (statistics), counted on every key creation.
    distinct: DistinctKeys,
    /// Merges that met an object of another policy (concurrent first writes).
    pub policy_conflicts: u64,
    /// When tombstones and hints were first held here, and the clock that stamps them.
    stamps: Stamps,
}

impl Replica {
    /// Opens the replica of a ring of `partitions`. Its Merkle trees start empty and
    /// must be rebuilt with [`Replica::rebuild_trees_step`] before anti-entropy uses them.
    pub fn open(
        storage: Arc<dyn Storage>,
        hints_max: u64,
        partitions: u32,
    ) -> Result<Replica, ReplicaError> {
        let hints = Hints::load(storage.as_ref(), hints_max)?;
        Ok(Replica {
            storage,
            hints,
            trees: MerkleTrees::new(partitions),
            distinct: DistinctKeys::new(partitions),
            policy_conflicts: 0,
            stamps: Stamps::new(TOMBSTONE_GRACE_MS_DEFAULT),
        })
    }

    /// Tells the replica the node's wall-clock time for the input being handled; it
    /// stamps tombstones and hints with it.
    pub fn set_wall_ms(&mut self, wall_ms: u64) {
        self.stamps.set_wall_ms(wall_ms);
    }

    pub fn tombstone_grace_ms(&self) -> u64 {
        self.stamps.grace_ms()
    }

    /// Sets the grace period; hints expire after half of it.
    pub fn set_tombstone_grace_ms(&mut self, grace_ms: u64) {
        self.stamps.set_grace_ms(grace_ms);
    }

    /// Age after which a hint is expired.
    pub fn hint_ttl_ms(&self) -> u64 {
        self.stamps.hint_ttl_ms()
    }

    /// Hints dropped because they outlived the hint TTL.
    pub fn hints_expired(&self) -> u64 {
        self.stamps.hints_expired()
    }

    /// Up to `limit` tombstones with positions in `[start, end]` that this replica has
    /// held for at least the grace period, as (key, version digest).
    pub fn tombstones_due(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(Key, u64)>, ReplicaError> {
        self.stamps
            .tombstones_due(self.storage.as_ref(), start, end, limit)
    }

    /// How long this replica has held `key` as a tombstone with version `digest`; None
    /// when it holds something else or nothing.
    pub fn tombstone_age_ms(&self, key: &Key, digest: u64) -> Result<Option<u64>, ReplicaError> {
        let Some(object) = self.read(key, None)? else {
            return Ok(None);
        };
        if !object.is_tombstone() || object.digest() != digest {
            return Ok(None);
        }
        let (_, data_key) = location(key, None)?;
        let age = self
            .stamps
            .tombstone_age_ms(self.storage.as_ref(), &data_key)?;
        Ok(Some(age))
    }

    /// Removes `key` if it is still the tombstone with version `digest`, and takes it out
    /// of the Merkle tree and the index. Returns whether it was removed; anything else
    /// there (a write that landed since the check) is left alone.
    pub fn reap_if_unchanged(&mut self, key: &Key, digest: u64) -> Result<bool, ReplicaError> {
        self.remove_if_unchanged(key, digest, true)
    }

    pub fn trees(&self) -> &MerkleTrees {
        &self.trees
    }

    pub fn distinct(&self) -> &DistinctKeys {
        &self.distinct
    }

    pub fn distinct_mut(&mut self) -> &mut DistinctKeys {
        &mut self.distinct
    }

    /// One bounded step of the start-up tree rebuild (which also fills the distinct-key
    /// sketches).
    pub fn rebuild_trees_step(&mut self) -> Result<RebuildProgress, ReplicaError> {
        let digest = |bytes: &[u8]| {
            rmp_serde::from_slice::<Object>(bytes)
                .ok()
                .map(|o| o.digest())
        };
        // The same scan counts the stored keys for the distinct-key sketches.
        let distinct = &mut self.distinct;
        Ok(self
            .trees
            .rebuild_step(self.storage.as_ref(), &digest, &mut |p| distinct.insert(p))?)
    }

    /// This replica's keys and version digests with positions in `[start, end]`, at most
    /// `limit` (a corrupt record is skipped: reads of it report the corruption).
    pub fn digests_in(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(Key, u64)>, ReplicaError> {
        let objects = self.objects_in(start, end, limit)?;
        Ok(objects.into_iter().map(|(k, o)| (k, o.digest())).collect())
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// This replica's copy of `key` (from the hint store when standing in for `hint`).
    /// An expired hint reads as absent: it may predate a delete that was since reaped.
    pub fn read(&self, key: &Key, hint: Option<&NodeId>) -> Result<Option<Object>, ReplicaError> {
        let (space, raw) = location(key, hint)?;
        match self.storage.get(space, &raw)? {
            Some(_)
                if hint.is_some() && self.stamps.hint_expired(self.storage.as_ref(), &raw)? =>
            {
                Ok(None)
            }
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Applies a client operation as coordinator; returns the new object.
    ///
    /// A stand-in (`hint`) applies on its hint copy merged with its data-space copy and
    /// keeps the result in both. The hint copy alone is not enough: it is dropped after
    /// each handoff, and with it this actor's earlier dots and counter entries for the
    /// key, so the next write would reuse them and be lost on merge (found by the
    /// simulator: counter seed 14, lost acknowledged increments). The data-space copy
    /// stays until partition transfer hands it to the primaries, after which the node
    /// takes a fresh actor, so this actor never forgets a write it made to the key.
    ///
    /// Until then that copy is reached by no delete, so for `siblings` and `lww` it can
    /// bring a reaped key back into a later write made through this stand-in; see
    /// `core/repair/reap.rs` and docs/ARCHITECTURE.md
    /// for why it is kept anyway.
    pub fn apply(
        &mut self,
        key: &Key,
        write: Write,
        actor: ActorId,
        ts: Timestamp,
        limits: &Limits,
        hint: Option<&NodeId>,
    ) -> Result<(Object, Applied), ReplicaError> {
        let mut own = match hint {
            Some(_) => self.read(key, None)?,
            None => None,
        };
        let mut write = Some(write);
        let done = self.rmw(key, hint, &mut |existing| {
            let Write { op, id } = write
                .take()
                .ok_or(ObjectError::BadContext("operation applied twice".into()))?;
            let base = match (existing, own.take()) {
                (Some(mut base), Some(o)) => {
                    base.merge(&o);
                    Some(base)
                }
                (e, o) => e.or(o),
            };
            Object::apply_owned(base, op, id, actor, ts, limits).map_err(ReplicaError::from)
        })?;
        if hint.is_some() {
            self.merge(key, &done.0, None)?;
        }
        Ok(done)
    }

    /// Merges a replicated object into the local copy; returns the merged object.
    pub fn merge(
        &mut self,
        key: &Key,
        incoming: &Object,
        hint: Option<&NodeId>,
    ) -> Result<Object, ReplicaError> {
        let mut conflicts = 0;
        let (obj, ()) = self.rmw(key, hint, &mut |existing| {
            let Some(mut obj) = existing else {
                return Ok((incoming.clone(), ()));
            };
            if obj.merge(incoming).is_some() {
                conflicts += 1;
            }
            Ok((obj, ()))
        })?;
        self.policy_conflicts += conflicts;
        Ok(obj)
    }

    /// Up to `limit` hints held for `primary`, as (key, object). Expired hints met on
    /// the way are dropped, never returned.
    pub fn hinted(
        &mut self,
        primary: &NodeId,
        limit: usize,
    ) -> Result<Vec<(Key, Object)>, ReplicaError> {
        let (start, end) = hints::hint_prefix(primary);
        let rows = self
            .storage
            .scan(Space::Hints, &start, Some(&end), limit.min(SCAN_ROWS_MAX))?;
        let mut out = Vec::with_capacity(rows.len());
        for (raw, bytes) in rows {
            let Some((_, data_key)) = hints::split_hint_key(&raw) else {
                continue;
            };
            let dk = storage::decode_data_key(data_key)?;
            let key = Key {
                bucket: dk.bucket,
                key: dk.key,
            };
            if self.stamps.hint_expired(self.storage.as_ref(), &raw)? {
                tracing::info!(%primary, %key, ttl_ms = self.hint_ttl_ms(), "dropping an expired hint; anti-entropy repairs the primary instead");
                self.expire_hint(primary, &raw)?;
                continue;
            }
            let obj = decode(&key, &bytes)?;
            out.push((key, obj));
        }
        Ok(out)
    }

    /// Drops the hint for `key` held for `primary` if it still equals `delivered`.
    /// Returns whether it was dropped.
    pub fn drop_hint_if_unchanged(
        &mut self,
        primary: &NodeId,
        key: &Key,
        delivered: &Object,
    ) -> Result<bool, ReplicaError> {
        let (_, raw) = location(key, Some(primary))?;
        let dropped = delete_if(self.storage.as_ref(), Space::Hints, &raw, key, |current| {
            current == delivered
        })?;
        if dropped {
            self.hints.counted(primary.clone(), -1);
            self.stamps.unstamp_hint(self.storage.as_ref(), &raw)?;
        }
        Ok(dropped)
    }

    /// Removes the data-space copy of `key` if its version digest is still `digest`
    /// (nothing newer arrived since it was read); returns whether it was removed. Used
    /// once every owner has acknowledged a transferred copy.
    pub fn remove_if_digest(&mut self, key: &Key, digest: u64) -> Result<bool, ReplicaError> {
        self.remove_if_unchanged(key, digest, false)
    }

    /// Up to `limit` objects of this replica with positions in `[start, end]` (a corrupt
    /// record is skipped: reads of it report the corruption).
    pub fn objects_in(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(Key, Object)>, ReplicaError> {
        let (from, to) = storage::position_range(start, end);
        let rows =
            self.storage
                .scan(Space::Data, &from, to.as_deref(), limit.min(SCAN_ROWS_MAX))?;
        let mut out = Vec::with_capacity(rows.len());
        for (raw, bytes) in rows {
            let Ok(dk) = storage::decode_data_key(&raw) else {
                continue;
            };
            let key = Key {
                bucket: dk.bucket,
                key: dk.key,
            };
            if let Ok(obj) = decode(&key, &bytes) {
                out.push((key, obj));
            }
        }
        Ok(out)
    }

    /// One atomic read-modify-write of the copy at (key, hint).
    fn rmw<T>(
        &mut self,
        key: &Key,
        hint: Option<&NodeId>,
        f: &mut RmwFn<'_, T>,
    ) -> Result<(Object, T), ReplicaError> {
        let position = key_position(&key.bucket, &key.key);
        let (space, raw) = location_at(key, position, hint)?;
        let hints_full = self.hints.is_full();
        // An expired hint is replaced, not merged into: it may predate a reaped delete.
        let hint_expired = hint.is_some()
            && self.storage.get(space, &raw)?.is_some()
            && self.stamps.hint_expired(self.storage.as_ref(), &raw)?;
        let mut result: Option<Result<(Object, T), ReplicaError>> = None;
        let mut created = false;
        let mut fresh = false;
        let tracked = space == Space::Data;
        let mut digests = (None, None);
        let mut tombstones = (None, false);
        self.storage.update(space, &raw, &mut |existing| {
            created = existing.is_none();
            let existing = existing.filter(|_| !hint_expired);
            let current = match existing.map(|b| decode(key, b)).transpose() {
                Ok(c) => c,
                Err(e) => {
                    result = Some(Err(e));
                    return Rmw::Keep;
                }
            };
            if let (Some(primary), None, true) = (hint, &current, hints_full) {
                result = Some(Err(ReplicaError::HintsFull {
                    primary: primary.clone(),
                    limit: 0,
                }));
                return Rmw::Keep;
            }
            fresh = current.is_none();
            // Taken before `f` consumes the current object.
            let before = match (&current, tracked) {
                (Some(c), true) => Some((c.digest(), c.is_tombstone())),
                _ => None,
            };
            // The new encoding is about as long as the old one; reserving that much
            // spares the buffer its doublings.
            let mut bytes =
                Vec::with_capacity(existing.map_or(0, <[u8]>::len) + RECORD_SLACK_BYTES);
            match f(current) {
                Ok((obj, extra)) => match rmp_serde::encode::write(&mut bytes, &obj) {
                    Ok(()) => {
                        if tracked {
                            digests = (before.map(|(d, _)| d), Some(obj.digest()));
                            tombstones = (before.map(|(_, t)| t), obj.is_tombstone());
                        }
                        result = Some(Ok((obj, extra)));
                        Rmw::Put(bytes)
                    }
                    Err(e) => {
                        result = Some(Err(ReplicaError::Corrupt {
                            key: key.to_string(),
                            error: RecordError::Encode(e),
                        }));
                        Rmw::Keep
                    }
                },
                Err(e) => {
                    result = Some(Err(e));
                    Rmw::Keep
                }
            }
        })?;
        let out = match result {
            Some(r) => r,
            None => Err(ReplicaError::Object(ObjectError::BadContext(
                "storage did not run the update".into(),
            ))),
        };
        let out = out.map_err(|e| match e {
            ReplicaError::HintsFull { primary, .. } => ReplicaError::HintsFull {
                primary,
                limit: self.hints.max(),
            },
            other => other,
        });
        if out.is_ok() && tracked && digests.0 != digests.1 {
            self.trees
                .update(position, &raw, &key.bucket, &key.key, digests.0, digests.1);
            self.stamps
                .index_tombstone(self.storage.as_ref(), &raw, tombstones.0, tombstones.1);
        }
        if out.is_ok() && hint.is_some() && fresh {
            self.stamps.stamp_hint(self.storage.as_ref(), &raw)?;
        }
        if out.is_ok() && tracked && created {
            self.distinct.insert(position);
        }
        if out.is_ok()
            && created
            && let Some(primary) = hint
        {
            self.hints.counted(primary.clone(), 1);
        }
        out
    }

    /// Removes the data-space copy of `key` if its version digest is still `digest` (and,
    /// with `tombstones_only`, if it is a tombstone), updating the Merkle tree and the
    /// tombstone index. Reaping and partition transfer both end this way.
    fn remove_if_unchanged(
        &mut self,
        key: &Key,
        digest: u64,
        tombstones_only: bool,
    ) -> Result<bool, ReplicaError> {
        let (_, data_key) = location(key, None)?;
        let reaped = delete_if(
            self.storage.as_ref(),
            Space::Data,
            &data_key,
            key,
            |current| (!tombstones_only || current.is_tombstone()) && current.digest() == digest,
        )?;
        if reaped {
            let position = key_position(&key.bucket, &key.key);
            self.trees.update(
                position,
                &data_key,
                &key.bucket,
                &key.key,
                Some(digest),
                None,
            );
            self.stamps
                .unindex_tombstone(self.storage.as_ref(), &data_key)?;
        }
        Ok(reaped)
    }

    /// Drops an expired hint held for `primary` (whatever it holds) and its time.
    fn expire_hint(&mut self, primary: &NodeId, hint_key: &[u8]) -> Result<(), ReplicaError> {
        let mut existed = false;
        self.storage
            .update(Space::Hints, hint_key, &mut |existing| {
                existed = existing.is_some();
                Rmw::Delete
            })?;
        self.stamps.unstamp_hint(self.storage.as_ref(), hint_key)?;
        if existed {
            self.hints.counted(primary.clone(), -1);
            self.stamps.count_expired_hint();
        }
        Ok(())
    }
}

/// Where the copy of `key` lives: the data space, or the hint store for a primary.
pub fn location(key: &Key, hint: Option<&NodeId>) -> Result<(Space, Vec<u8>), StorageError> {
    location_at(key, key_position(&key.bucket, &key.key), hint)
}

/// [`location`] for a key whose ring position is already known.
fn location_at(
    key: &Key,
    position: u64,
    hint: Option<&NodeId>,
) -> Result<(Space, Vec<u8>), StorageError> {
    let data_key = storage::encode_data_key(position, &key.bucket, &key.key)?;
    Ok(match hint {
        Some(primary) => (Space::Hints, hints::hint_key(primary, &data_key)),
        None => (Space::Data, data_key),
    })
}

/// Deletes the record of `key` at `raw` in `space` if it decodes and `unchanged` holds
/// for it, in one read-modify-write; returns whether it was deleted. A record that does
/// not decode is kept and reported.
fn delete_if(
    storage: &dyn Storage,
    space: Space,
    raw: &[u8],
    key: &Key,
    unchanged: impl Fn(&Object) -> bool,
) -> Result<bool, ReplicaError> {
    let mut deleted = false;
    let mut failure = None;
    storage.update(space, raw, &mut |existing| {
        let Some(bytes) = existing else {
            return Rmw::Keep;
        };
        match decode(key, bytes) {
            Ok(current) if unchanged(&current) => {
                deleted = true;
                Rmw::Delete
            }
            Ok(_) => Rmw::Keep,
            Err(e) => {
                failure = Some(e);
                Rmw::Keep
            }
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

fn decode(key: &Key, bytes: &[u8]) -> Result<Object, ReplicaError> {
    rmp_serde::from_slice(bytes).map_err(|e| ReplicaError::Corrupt {
        key: key.to_string(),
        error: RecordError::Decode(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::{Context, Op, Policy, ReadValue};
    use crate::storage::MemoryStorage;

    fn replica() -> Replica {
        Replica::open(Arc::new(MemoryStorage::new()), 2, 64).unwrap()
    }

    #[test]
    fn apply_then_merge_then_read() {
        let mut r = replica();
        let key = Key::new("b", "k");
        let ts = Timestamp::default();
        let (obj, _) = r
            .apply(
                &key,
                Write {
                    op: Op::CounterAdd { delta: 2 },
                    id: None,
                },
                ActorId(1),
                ts,
                &Limits::default(),
                None,
            )
            .unwrap();
        let mut other = Object::empty(Policy::Counter);
        let (other_obj, _) = Object::apply(
            Some(&other),
            Op::CounterAdd { delta: 5 },
            None,
            ActorId(2),
            ts,
            &Limits::default(),
        )
        .unwrap();
        other = other_obj;
        let merged = r.merge(&key, &other, None).unwrap();
        assert_eq!(merged.read(), ReadValue::Counter { value: 7 });
        assert_eq!(r.read(&key, None).unwrap().unwrap(), merged);
        assert_ne!(obj, merged);
    }

    #[test]
    fn hints_are_kept_apart_bounded_and_dropped_only_if_unchanged() {
        let mut r = replica();
        let primary = NodeId::from("n9");
        let key = Key::new("b", "k");
        let (obj, _) = Object::apply(
            None,
            Op::Put {
                value: b"v".to_vec(),
                context: Context::empty(),
            },
            None,
            ActorId(1),
            Timestamp::default(),
            &Limits::default(),
        )
        .unwrap();
        r.merge(&key, &obj, Some(&primary)).unwrap();
        assert!(r.read(&key, None).unwrap().is_none(), "a hint is not data");
        assert_eq!(r.hints().for_primary(&primary), 1);
        let listed = r.hinted(&primary, 10).unwrap();
        assert_eq!(listed, vec![(key.clone(), obj.clone())]);
        // the store holds at most 2 hints
        r.merge(&Key::new("b", "k2"), &obj, Some(&primary)).unwrap();
        assert!(matches!(
            r.merge(&Key::new("b", "k3"), &obj, Some(&primary)),
            Err(ReplicaError::HintsFull { limit: 2, .. })
        ));
        // a stale delivery does not drop a hint that changed
        let stale = Object::empty(Policy::Siblings);
        assert!(!r.drop_hint_if_unchanged(&primary, &key, &stale).unwrap());
        assert!(r.drop_hint_if_unchanged(&primary, &key, &obj).unwrap());
        assert_eq!(r.hints().for_primary(&primary), 1);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_the_key() {
        let r = replica();
        let key = Key::new("b", "bad");
        let (space, raw) = location(&key, None).unwrap();
        r.storage()
            .update(space, &raw, &mut |_| Rmw::Put(vec![0xc1, 0xff]))
            .unwrap();
        let err = r.read(&key, None).unwrap_err();
        assert!(err.to_string().contains("b/bad"), "{err}");
    }
}
