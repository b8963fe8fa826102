//! The core's timers: one table of deadlines, owned by the node, read by the driver.
//!
//! The core never sleeps. It records "wake me at t for X" here; the driver asks
//! [`TimerTable::next_deadline`] after every input and calls `handle_timeout(now)` when
//! it passes. Every deadline of the node lives here: request deadlines, the periodic
//! ticks, foca's gossip timers, reaping rounds and transfer batches. A timer whose reason
//! went away is cancelled by its [`TimerId`], so the driver is not woken for nothing.
//!
//! The table is bounded by [`TIMERS_MAX`]. Only request deadlines and hint deliveries can
//! grow with load, and both are admitted only while [`TimerTable::has_room`] holds (a
//! request that finds the table full is refused with an error that says so); every other
//! kind is bounded by construction (one per periodic tick, [`TIMERS_RESERVED`] for the
//! rest), so a timer is never dropped.

use std::collections::BTreeMap;

use crate::core::membership::gossip::GossipTimer;

/// Most timers the table holds.
pub const TIMERS_MAX: usize = 1 << 20;
/// Room kept for timers that do not grow with load: the periodic ticks, foca's timers
/// (a handful per member), reaping rounds and the transfer batch.
pub const TIMERS_RESERVED: usize = 1 << 16;

/// What a timer is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A coordinated or forwarded request, or a hint delivery, reaches its deadline.
    Request(u64),
    /// Time to sync the member table with a random member and re-announce.
    MemberSync,
    /// Time to stream partitions this node no longer owns to their owners.
    Transfer,
    /// A transfer batch was not acknowledged in time.
    TransferBatch(u64),
    /// Time to push hints to primaries that are back.
    Handoff,
    /// Time for the next step of the start-up Merkle tree rebuild.
    TreeRebuild,
    /// Time to compare partitions with their other replicas.
    AntiEntropy,
    /// Time to look for tombstones every primary may have held for the grace period.
    Reap,
    /// A reaping round of a partition was not answered in time.
    ReapRound { partition: u32, round: u64 },
    /// One of foca's SWIM timers.
    Gossip(GossipTimer),
}

/// Names one scheduled timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerId {
    deadline_ms: u64,
    seq: u64,
}

/// Deadlines in monotonic milliseconds, in firing order.
#[derive(Debug, Default)]
pub struct TimerTable {
    /// Keyed by (deadline, sequence) so equal deadlines fire in insertion order.
    entries: BTreeMap<TimerId, Timer>,
    seq: u64,
}

impl TimerTable {
    pub fn new() -> TimerTable {
        TimerTable::default()
    }

    /// True while a timer that grows with load (a request deadline, a hint delivery)
    /// may be admitted.
    pub fn has_room(&self) -> bool {
        self.entries.len() < TIMERS_MAX - TIMERS_RESERVED
    }

    /// Schedules `timer` at `deadline_ms`.
    pub fn set(&mut self, deadline_ms: u64, timer: Timer) -> TimerId {
        debug_assert!(
            self.entries.len() < TIMERS_MAX,
            "timer table over its bound: admission must check has_room"
        );
        self.seq += 1;
        let id = TimerId {
            deadline_ms,
            seq: self.seq,
        };
        self.entries.insert(id, timer);
        id
    }

    /// Removes a timer that has not fired; false when it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries.keys().next().map(|id| id.deadline_ms)
    }

    /// Removes and returns the earliest gossip timer due at `now_ms`.
    pub fn pop_due_gossip(&mut self, now_ms: u64) -> Option<GossipTimer> {
        let id = self
            .entries
            .iter()
            .take_while(|(id, _)| id.deadline_ms <= now_ms)
            .find(|(_, t)| matches!(t, Timer::Gossip(_)))
            .map(|(id, _)| *id)?;
        match self.entries.remove(&id) {
            Some(Timer::Gossip(t)) => Some(t),
            _ => None,
        }
    }

    /// Removes and returns every timer but gossip's due at `now_ms`, earliest first.
    /// Gossip timers are fired on their own ([`TimerTable::pop_due_gossip`]) before the
    /// others, because what foca reports decides who is up for everything else.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Timer> {
        let due: Vec<TimerId> = self
            .entries
            .iter()
            .take_while(|(id, _)| id.deadline_ms <= now_ms)
            .filter(|(_, t)| !matches!(t, Timer::Gossip(_)))
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.entries.remove(&id))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg_attr(not(any(test, feature = "sim")), allow(dead_code))]
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

    #[test]
    fn a_cancelled_timer_never_fires_and_cancels_once() {
        let mut t = TimerTable::new();
        let a = t.set(10, Timer::Request(1));
        t.set(20, Timer::Request(2));
        assert!(t.cancel(a));
        assert!(!t.cancel(a));
        assert_eq!(t.next_deadline(), Some(20));
        assert_eq!(t.expire(100), vec![Timer::Request(2)]);
    }

    #[test]
    fn admission_stops_before_the_reserved_room() {
        let mut t = TimerTable::new();
        for i in 0..(TIMERS_MAX - TIMERS_RESERVED) as u64 {
            assert!(t.has_room());
            t.set(i, Timer::Request(i));
        }
        assert!(!t.has_room());
        // The reserved room still takes the bounded kinds.
        t.set(0, Timer::MemberSync);
        assert_eq!(t.len(), TIMERS_MAX - TIMERS_RESERVED + 1);
    }
}
