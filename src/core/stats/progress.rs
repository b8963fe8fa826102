//! When each partition was last compared by anti-entropy, as seen by this node.
//!
//! Anti-entropy counters (exchanges, keys repaired, bytes) say how much work was done, not
//! whether every partition gets its turn. One monotonic timestamp per partition answers
//! that: the oldest one among the partitions a node replicates bounds how stale an
//! undetected divergence can be. Memory is fixed: 16 bytes per partition.

/// The last root comparison of each partition this node took part in.
#[derive(Clone, Debug)]
pub struct AeProgress {
    /// Index = partition; monotonic milliseconds of the last comparison.
    last_ms: Vec<Option<u64>>,
}

impl AeProgress {
    /// No comparison yet, for a ring of `partitions`.
    pub fn new(partitions: u32) -> AeProgress {
        AeProgress {
            last_ms: vec![None; partitions as usize],
        }
    }

    /// Records a root comparison of `partition` at `now_ms`; a partition outside the ring
    /// (a confused peer) is ignored.
    pub fn record(&mut self, partition: u32, now_ms: u64) {
        if let Some(slot) = self.last_ms.get_mut(partition as usize) {
            *slot = Some(slot.map_or(now_ms, |last| last.max(now_ms)));
        }
    }

    /// When `partition` was last compared, in monotonic milliseconds.
    pub fn last(&self, partition: u32) -> Option<u64> {
        self.last_ms.get(partition as usize).copied().flatten()
    }

    /// Every partition compared at least once, with the time of its last comparison.
    pub fn compared(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.last_ms
            .iter()
            .enumerate()
            // p indexes a Vec built from a u32 count.
            .filter_map(|(p, last)| last.map(|ms| (p as u32, ms)))
    }
}
