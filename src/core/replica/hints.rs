//! Hinted handoff bookkeeping.
//!
//! A sloppy fallback keeps what it received for a down primary in the storage engine's
//! `Hints` space, keyed by `[primary name][0x00][data key]`, so hints survive a crash of
//! the fallback. The store is bounded (`hints_max`): when full, the fallback refuses the
//! write and the coordinator counts it as a failed replica, rather than the fallback
//! growing without limit. When the primary is back, the node pushes each hint as a normal
//! replication (merge is idempotent) and drops it after the ack — but only if it did not
//! change meanwhile, so a write that arrived during the handoff is never lost.

use std::collections::BTreeMap;

use crate::core::placement::ring::NodeId;
use crate::storage::{SCAN_ROWS_MAX, Space, Storage, StorageError};

/// Default bound on hints one node stores, over all primaries.
pub const HINTS_MAX_DEFAULT: u64 = 100_000;

/// Counts of stored hints per primary, kept in memory next to the durable store.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    counts: BTreeMap<NodeId, u64>,
    total: u64,
    max: u64,
}

impl Hints {
    /// Counts the hints already on disk (after a restart).
    pub fn load(storage: &dyn Storage, max: u64) -> Result<Hints, StorageError> {
        let mut hints = Hints {
            max,
            ..Hints::default()
        };
        let mut start = Vec::new();
        loop {
            let rows = storage.scan(Space::Hints, &start, None, SCAN_ROWS_MAX)?;
            let Some((last, _)) = rows.last() else { break };
            start = next_key(last);
            for (k, _) in &rows {
                if let Some((primary, _)) = split_hint_key(k) {
                    hints.counted(primary, 1);
                }
            }
            if rows.len() < SCAN_ROWS_MAX {
                break;
            }
        }
        Ok(hints)
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn is_full(&self) -> bool {
        self.total >= self.max
    }

    /// Hints held for one primary.
    pub fn for_primary(&self, primary: &NodeId) -> u64 {
        self.counts.get(primary).copied().unwrap_or(0)
    }

    /// Primaries we hold hints for.
    pub fn primaries(&self) -> impl Iterator<Item = &NodeId> {
        self.counts.keys()
    }

    /// Adjusts the count after a hint was stored (+1) or dropped (-1).
    pub fn counted(&mut self, primary: NodeId, delta: i64) {
        let entry = self.counts.entry(primary.clone()).or_default();
        if delta >= 0 {
            *entry += delta as u64;
            self.total += delta as u64;
        } else {
            let d = delta.unsigned_abs().min(*entry);
            *entry -= d;
            self.total -= d.min(self.total);
            if *entry == 0 {
                self.counts.remove(&primary);
            }
        }
    }
}

/// The storage key of a hint.
pub fn hint_key(primary: &NodeId, data_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(primary.0.len() + 1 + data_key.len());
    k.extend_from_slice(primary.0.as_bytes());
    k.push(0);
    k.extend_from_slice(data_key);
    k
}

/// Scan bounds of every hint for one primary.
pub fn hint_prefix(primary: &NodeId) -> (Vec<u8>, Vec<u8>) {
    let mut start = primary.0.as_bytes().to_vec();
    start.push(0);
    let mut end = primary.0.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

/// Splits a hint key into the primary's name and the data key; None for garbage.
pub fn split_hint_key(raw: &[u8]) -> Option<(NodeId, &[u8])> {
    let sep = raw.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&raw[..sep]).ok()?;
    Some((NodeId::from(name), &raw[sep + 1..]))
}

/// The smallest key after `key`.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, Rmw};

    #[test]
    fn hint_keys_split_back_and_counts_reload_from_storage() {
        let k = hint_key(&NodeId::from("n2"), b"\x00\x01data");
        let (p, rest) = split_hint_key(&k).unwrap();
        assert_eq!(p, NodeId::from("n2"));
        assert_eq!(rest, b"\x00\x01data");
        let storage = MemoryStorage::new();
        for i in 0..5u8 {
            let key = hint_key(&NodeId::from(if i < 3 { "a" } else { "b" }), &[i]);
            storage
                .update(Space::Hints, &key, &mut |_| Rmw::Put(vec![1]))
                .unwrap();
        }
        let hints = Hints::load(&storage, 10).unwrap();
        assert_eq!(hints.total(), 5);
        assert_eq!(hints.for_primary(&NodeId::from("a")), 3);
        assert_eq!(hints.for_primary(&NodeId::from("b")), 2);
        assert!(!hints.is_full());
    }
}
