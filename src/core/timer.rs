//! The core's timers: one table of deadlines, owned by the core, read by the driver.
//!
//! The core never sleeps. It records "wake me at t for X" here; the driver asks
//! `next_deadline()` after every input and calls `handle_timeout(now)` when it passes.
//! Timers are never cancelled: when one fires for a request that already finished, the
//! handler finds nothing to do — stale and spurious timeouts are no-ops by design, which
//! keeps the table simple and the simulator's replays exact.

use std::collections::BTreeMap;

/// Most timers the table holds; beyond it the oldest-deadline request timers still fire,
/// but new ones are refused (the node answers "overloaded" instead of growing).
pub const TIMERS_MAX: usize = 1 << 20;

/// What a timer is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A coordinated or forwarded request reaches its deadline.
    Request(u64),
    /// Time to sync the member table with a random member and re-announce.
    MemberSync,
    /// Time to stream partitions this node no longer owns to their owners.
    Transfer,
    /// Time to push hints to primaries that are back.
    Handoff,
    /// Time for the next step of the start-up Merkle tree rebuild.
    TreeRebuild,
    /// Time to compare partitions with their other replicas.
    AntiEntropy,
    /// Time to look for tombstones every primary may have held for the grace period.
    Reap,
}

/// Deadlines in monotonic milliseconds, in firing order.
#[derive(Debug, Default)]
pub struct TimerTable {
    /// Keyed by (deadline, sequence) so equal deadlines fire in insertion order.
    entries: BTreeMap<(u64, u64), Timer>,
    seq: u64,
}

impl TimerTable {
    pub fn new() -> TimerTable {
        TimerTable::default()
    }

    /// Schedules `timer` at `deadline_ms`. Returns false when the table is full.
    pub fn set(&mut self, deadline_ms: u64, timer: Timer) -> bool {
        if self.entries.len() >= TIMERS_MAX {
            return false;
        }
        self.seq += 1;
        self.entries.insert((deadline_ms, self.seq), timer);
        true
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries.keys().next().map(|&(d, _)| d)
    }

    /// Removes and returns every timer due at `now_ms`, earliest first.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Timer> {
        let later = self.entries.split_off(&(now_ms.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.entries, later);
        due.into_values().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_and_only_when_due() {
        let mut t = TimerTable::new();
        t.set(30, Timer::MemberSync);
        t.set(10, Timer::Request(1));
        t.set(10, Timer::Request(2));
        assert_eq!(t.next_deadline(), Some(10));
        assert!(t.expire(9).is_empty());
        assert_eq!(t.expire(10), vec![Timer::Request(1), Timer::Request(2)]);
        assert_eq!(t.next_deadline(), Some(30));
        assert_eq!(t.expire(100), vec![Timer::MemberSync]);
        assert!(t.is_empty());
    }
}
