//! What a replica remembers so tombstones can be reaped without resurrecting keys.
//!
//! A tombstone may only go once every primary has held it for the grace period (see
//! `core/repair/reap.rs`), so each replica records, in the `Meta` space, the wall-clock
//! time a key first became a tombstone here: `tomb\0[data key]` → u64 ms. The data key
//! starts with the ring position, so one partition's tombstones are one contiguous scan
//! of the index and the reaper never reads the data space to find them.
//!
//! The index is written after the data and is only ever trusted after re-reading the
//! data: an entry whose key is no longer a tombstone is dropped when met, and a tombstone
//! with no entry (a crash between the two writes) is indexed when a peer asks about it.
//! Either way a crash can delay a reap, never cause a wrong one.
//!
//! Hints get the same treatment (`hint\0[hint key]` → creation ms) because a hint is the
//! one copy of old data that lives outside the primaries: a stand-in that was away while
//! a key was deleted and reaped would otherwise hand the old value back. A hint older
//! than half the grace period is expired — never read, merged into or handed off — which
//! leaves the other half for a handoff already in flight to land before any reap of a
//! delete that followed the hinted write.

use crate::core::replica::{ReplicaError, decode};
use crate::proto::Key;
use crate::storage::{self, Rmw, SCAN_ROWS_MAX, Space, Storage};

/// Meta-space prefix of the tombstone index.
pub const META_TOMBSTONE_PREFIX: &[u8] = b"tomb\0";
/// Meta-space prefix of hint creation times.
pub const META_HINT_TIME_PREFIX: &[u8] = b"hint\0";

/// When this replica first held each tombstone and created each hint, kept in the
/// `Meta` space, and the wall clock that stamps them.
#[derive(Debug)]
pub(crate) struct Stamps {
    /// The node's wall clock at the current input.
    wall_ms: u64,
    /// How long every primary must hold a tombstone before it is reaped; hints expire
    /// after half of it.
    grace_ms: u64,
    /// Hints dropped because they outlived the hint TTL.
    hints_expired: u64,
}

impl Stamps {
    pub(crate) fn new(grace_ms: u64) -> Stamps {
        Stamps {
            wall_ms: 0,
            grace_ms,
            hints_expired: 0,
        }
    }

    pub(crate) fn set_wall_ms(&mut self, wall_ms: u64) {
        self.wall_ms = wall_ms;
    }

    pub(crate) fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    pub(crate) fn set_grace_ms(&mut self, grace_ms: u64) {
        self.grace_ms = grace_ms;
    }

    /// Age after which a hint is expired.
    pub(crate) fn hint_ttl_ms(&self) -> u64 {
        self.grace_ms / 2
    }

    pub(crate) fn hints_expired(&self) -> u64 {
        self.hints_expired
    }

    pub(crate) fn count_expired_hint(&mut self) {
        self.hints_expired += 1;
    }

    /// Up to `limit` tombstones with positions in `[start, end]` held for at least the
    /// grace period, as (key, version digest). Index entries whose key is no longer a
    /// tombstone are removed on the way.
    pub(crate) fn tombstones_due(
        &self,
        storage: &dyn Storage,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(Key, u64)>, ReplicaError> {
        let (from, to) = storage::position_range(start, end);
        let from = prefixed(META_TOMBSTONE_PREFIX, &from);
        let to = match to {
            Some(to) => prefixed(META_TOMBSTONE_PREFIX, &to),
            None => prefix_end(META_TOMBSTONE_PREFIX),
        };
        let rows = storage.scan(Space::Meta, &from, Some(&to), SCAN_ROWS_MAX)?;
        let mut out = Vec::new();
        for (index_key, stamp) in rows {
            if out.len() >= limit {
                break;
            }
            let data_key = &index_key[META_TOMBSTONE_PREFIX.len()..];
            let Ok(dk) = storage::decode_data_key(data_key) else {
                storage.update(Space::Meta, &index_key, &mut |_| Rmw::Delete)?;
                continue;
            };
            let key = Key {
                bucket: dk.bucket,
                key: dk.key,
            };
            let Some(bytes) = storage.get(Space::Data, data_key)? else {
                storage.update(Space::Meta, &index_key, &mut |_| Rmw::Delete)?;
                continue;
            };
            let object = decode(&key, &bytes)?;
            if !object.is_tombstone() {
                storage.update(Space::Meta, &index_key, &mut |_| Rmw::Delete)?;
                continue;
            }
            if self.age_ms(storage, &index_key, &stamp)? >= self.grace_ms {
                out.push((key, object.digest()));
            }
        }
        Ok(out)
    }

    /// How long the tombstone stored at `data_key` has been indexed. A tombstone
    /// missing from the index is indexed now (age 0), so the grace period starts over
    /// rather than being skipped.
    pub(crate) fn tombstone_age_ms(
        &self,
        storage: &dyn Storage,
        data_key: &[u8],
    ) -> Result<u64, ReplicaError> {
        let index_key = prefixed(META_TOMBSTONE_PREFIX, data_key);
        match storage.get(Space::Meta, &index_key)? {
            Some(stamp) => self.age_ms(storage, &index_key, &stamp),
            None => {
                self.stamp(storage, &index_key)?;
                Ok(0)
            }
        }
    }

    /// Forgets the tombstone at `data_key` (it was removed).
    pub(crate) fn unindex_tombstone(
        &self,
        storage: &dyn Storage,
        data_key: &[u8],
    ) -> Result<(), ReplicaError> {
        let index_key = prefixed(META_TOMBSTONE_PREFIX, data_key);
        storage.update(Space::Meta, &index_key, &mut |_| Rmw::Delete)?;
        Ok(())
    }

    /// Keeps the tombstone index in step with a data write of `raw` from `old` to `new`.
    /// Failures are logged, not returned: the data write already happened, and a missing
    /// or stale entry only delays a reap (see the module docs).
    pub(crate) fn index_tombstone(
        &self,
        storage: &dyn Storage,
        raw: &[u8],
        old: Option<bool>,
        new: bool,
    ) {
        let index_key = prefixed(META_TOMBSTONE_PREFIX, raw);
        let result = match (old, new) {
            (None | Some(false), true) => self.stamp(storage, &index_key),
            (Some(true), false) => storage
                .update(Space::Meta, &index_key, &mut |_| Rmw::Delete)
                .map_err(ReplicaError::from),
            // Still a tombstone: grace keeps counting from its first arrival.
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot update the tombstone index; the reap of this key waits");
        }
    }

    /// True when the hint at `hint_key` is older than the hint TTL. A hint with no
    /// recorded time (written before times were kept) is stamped now.
    pub(crate) fn hint_expired(
        &self,
        storage: &dyn Storage,
        hint_key: &[u8],
    ) -> Result<bool, ReplicaError> {
        let time_key = prefixed(META_HINT_TIME_PREFIX, hint_key);
        match storage.get(Space::Meta, &time_key)? {
            Some(stamp) => Ok(self.age_ms(storage, &time_key, &stamp)? >= self.hint_ttl_ms()),
            None => {
                self.stamp(storage, &time_key)?;
                Ok(false)
            }
        }
    }

    /// Records that the hint at `hint_key` was (re)created now.
    pub(crate) fn stamp_hint(
        &self,
        storage: &dyn Storage,
        hint_key: &[u8],
    ) -> Result<(), ReplicaError> {
        self.stamp(storage, &prefixed(META_HINT_TIME_PREFIX, hint_key))
    }

    /// Forgets the creation time of a dropped hint.
    pub(crate) fn unstamp_hint(
        &self,
        storage: &dyn Storage,
        hint_key: &[u8],
    ) -> Result<(), ReplicaError> {
        let time_key = prefixed(META_HINT_TIME_PREFIX, hint_key);
        storage.update(Space::Meta, &time_key, &mut |_| Rmw::Delete)?;
        Ok(())
    }

    /// Age of a stored stamp. A malformed stamp is rewritten as now (age 0): it delays
    /// a reap or a hint's expiry, never hastens one.
    fn age_ms(
        &self,
        storage: &dyn Storage,
        meta_key: &[u8],
        stamp: &[u8],
    ) -> Result<u64, ReplicaError> {
        match <[u8; 8]>::try_from(stamp) {
            Ok(raw) => Ok(self.wall_ms.saturating_sub(u64::from_be_bytes(raw))),
            Err(_) => {
                self.stamp(storage, meta_key)?;
                Ok(0)
            }
        }
    }

    fn stamp(&self, storage: &dyn Storage, meta_key: &[u8]) -> Result<(), ReplicaError> {
        let now = self.wall_ms.to_be_bytes().to_vec();
        storage.update(Space::Meta, meta_key, &mut |_| Rmw::Put(now.clone()))?;
        Ok(())
    }
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// The first key after every key with `prefix` (whose last byte is 0).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::object::clock::{ActorId, Timestamp};
    use crate::core::object::{Context, Limits, Object, Op};
    use crate::core::placement::ring::NodeId;
    use crate::core::replica::Replica;
    use crate::storage::MemoryStorage;

    const GRACE_MS: u64 = 1_000;

    fn replica() -> Replica {
        let mut r = Replica::open(Arc::new(MemoryStorage::new()), 100, 64).unwrap();
        r.set_tombstone_grace_ms(GRACE_MS);
        r
    }

    fn object(op: Op, base: Option<&Object>, wall_ms: u64) -> Object {
        let ts = Timestamp {
            wall_ms,
            logical: 0,
        };
        Object::apply(base, op, None, ActorId(1), ts, &Limits::default())
            .unwrap()
            .0
    }

    fn put(value: &str, base: Option<&Object>, wall_ms: u64) -> Object {
        let context = base.map_or(Context::empty(), |b| match b.read() {
            crate::core::object::ReadValue::Siblings { context, .. } => context,
            _ => Context::empty(),
        });
        let op = Op::Put {
            value: value.as_bytes().to_vec(),
            context,
        };
        object(op, base, wall_ms)
    }

    fn delete(base: &Object, wall_ms: u64) -> Object {
        let crate::core::object::ReadValue::Siblings { context, .. } = base.read() else {
            panic!("siblings");
        };
        object(Op::Delete { context }, Some(base), wall_ms)
    }

    #[test]
    fn a_hint_older_than_half_the_grace_period_is_never_read_merged_or_handed_off() {
        let mut r = replica();
        let primary = NodeId::from("n3");
        let key = Key::new("b", "k");
        let old = put("old", None, 1);
        r.set_wall_ms(10_000);
        r.merge(&key, &old, Some(&primary)).unwrap();
        r.set_wall_ms(10_000 + GRACE_MS / 2 - 1);
        assert_eq!(r.read(&key, Some(&primary)).unwrap(), Some(old.clone()));
        r.set_wall_ms(10_000 + GRACE_MS / 2);
        assert_eq!(r.read(&key, Some(&primary)).unwrap(), None, "expired");
        assert!(r.hinted(&primary, 10).unwrap().is_empty());
        assert_eq!(r.hints().for_primary(&primary), 0);
        assert_eq!(r.hints_expired(), 1);
        // an expired hint that is still on disk is replaced by a new one, not merged
        let mut r = replica();
        r.set_wall_ms(10_000);
        r.merge(&key, &old, Some(&primary)).unwrap();
        r.set_wall_ms(10_000 + GRACE_MS);
        let new = put("new", None, 2);
        assert_eq!(r.merge(&key, &new, Some(&primary)).unwrap(), new);
        assert_eq!(r.hints().for_primary(&primary), 1, "counted once");
        assert_eq!(r.hinted(&primary, 10).unwrap(), vec![(key.clone(), new)]);
    }

    #[test]
    fn tombstones_come_due_after_the_grace_period_and_only_while_still_tombstones() {
        let mut r = replica();
        let (a, b) = (Key::new("b", "a"), Key::new("b", "b"));
        r.set_wall_ms(50_000);
        for key in [&a, &b] {
            let v = put("v", None, 1);
            r.merge(key, &v, None).unwrap();
            r.merge(key, &delete(&v, 2), None).unwrap();
        }
        r.set_wall_ms(50_000 + GRACE_MS - 1);
        assert!(r.tombstones_due(0, u64::MAX, 10).unwrap().is_empty());
        // b is written again: its index entry goes, and a later delete restarts grace
        let tomb_b = r.read(&b, None).unwrap().unwrap();
        r.merge(&b, &put("back", Some(&tomb_b), 3), None).unwrap();
        r.set_wall_ms(50_000 + GRACE_MS);
        let due = r.tombstones_due(0, u64::MAX, 10).unwrap();
        let tomb_a = r.read(&a, None).unwrap().unwrap();
        assert_eq!(due, vec![(a.clone(), tomb_a.digest())]);
        assert_eq!(
            r.tombstone_age_ms(&a, tomb_a.digest()).unwrap(),
            Some(GRACE_MS)
        );
        assert_eq!(r.tombstone_age_ms(&a, 7).unwrap(), None, "another digest");
        assert_eq!(r.tombstone_age_ms(&b, 7).unwrap(), None, "not a tombstone");
        // a reap with a stale digest keeps the key; the right digest removes it
        assert!(!r.reap_if_unchanged(&a, 7).unwrap());
        assert!(r.reap_if_unchanged(&a, tomb_a.digest()).unwrap());
        assert_eq!(r.read(&a, None).unwrap(), None);
        assert!(r.tombstones_due(0, u64::MAX, 10).unwrap().is_empty());
        assert!(!r.reap_if_unchanged(&b, tomb_b.digest()).unwrap());
        assert!(!r.read(&b, None).unwrap().unwrap().is_tombstone());
    }
}
