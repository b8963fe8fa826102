//! Forwarded requests: a node outside a key's preference list hands the request to the
//! first live replica, and the coordinator remembers which forwards it has served.
//!
//! A repeat of a forward is one of two things. The network may duplicate a datagram:
//! a write without an operation id must then not run twice (a forward is an operation,
//! not a state: running it twice would apply a counter increment or a set add twice).
//! Or the forwarder asks again because no answer came (`reask.rs`): the answer may have
//! been lost, and only running the request again sends a new one. A get, and a write
//! whose operation id makes a second application a no-op (`core/object/applied.rs`),
//! are therefore run again when they are not running here any more; while they run the
//! repeat is dropped, since the answer is on its way and a second run would only add
//! load to a coordinator that is already slow.

use std::collections::{BTreeSet, VecDeque};

use crate::core::placement::ring::NodeId;

/// Times a client's get, or a write with an operation id, moves on to another
/// coordinator after one failed (unreachable or timed out). A write without an id never
/// moves: one that timed out may have been applied, and only the id lets a second
/// application be recognised (`core/object/applied.rs`).
///
/// More than N: an unreachable report may be about a message sent before the request
/// (a partition that has just healed reports every message it held at once), so a
/// write that has tried every replica starts again from the first while its budget
/// ([`budget_ms`]) lasts.
pub const FORWARD_FAILOVERS_MAX: usize = 5;

/// The time a forwarded request that may move on has, from its first forward until its
/// last failover must be answered: two request timeouts. One timeout for a coordinator
/// that fails late, one for the next; within the client's own deadline
/// (`ringkv::client::CLIENT_TIMEOUT_MS`, and the request timeout plus its margin).
pub fn budget_ms(timeout_ms: u64) -> u64 {
    timeout_ms.saturating_mul(2)
}

/// How long one forward waits for its coordinator's answer: a quarter past the
/// coordinator's own timeout, so its error (which names the replicas) arrives first,
/// while a coordinator that stays silent leaves most of a timeout of the budget
/// ([`budget_ms`]) to the failover.
pub fn attempt_ms(timeout_ms: u64) -> u64 {
    timeout_ms.saturating_add(timeout_ms / 4)
}
/// Forwarded requests remembered to recognise a duplicate delivery.
pub const FORWARDS_SEEN_MAX: usize = 65_536;

/// The (forwarder, its request id) of recent forwards, bounded by [`FORWARDS_SEEN_MAX`],
/// and of those being coordinated here now.
#[derive(Debug, Default)]
pub(crate) struct ForwardsSeen {
    seen: BTreeSet<(NodeId, u64)>,
    /// Oldest first.
    order: VecDeque<(NodeId, u64)>,
    /// Forwards coordinated here and not answered yet: a subset of the pending
    /// requests, so bounded by the timer table as they are.
    running: BTreeSet<(NodeId, u64)>,
}

impl ForwardsSeen {
    /// Whether to run a forward: its first delivery, or a repeat of a `movable` one (a
    /// get, or a write with an operation id) that is not running here now.
    pub(crate) fn admit(&mut self, from: &NodeId, id: u64, movable: bool) -> bool {
        if self.first(from, id) {
            return true;
        }
        movable && !self.running.contains(&(from.clone(), id))
    }

    /// A forward's request is now pending here.
    pub(crate) fn started(&mut self, from: &NodeId, id: u64) {
        self.running.insert((from.clone(), id));
    }

    /// A forward's request was answered here (or timed out), though a read may still
    /// wait for late replicas to repair them.
    pub(crate) fn ended(&mut self, from: &NodeId, id: u64) {
        self.running.remove(&(from.clone(), id));
    }

    /// Forwards being coordinated here now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Records a forward; false when the same one was delivered before.
    fn first(&mut self, from: &NodeId, id: u64) -> bool {
        if !self.seen.insert((from.clone(), id)) {
            return false;
        }
        self.order.push_back((from.clone(), id));
        if self.order.len() > FORWARDS_SEEN_MAX
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        debug_assert_eq!(self.seen.len(), self.order.len());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::from(name)
    }

    #[test]
    fn a_repeat_runs_again_only_when_movable_and_not_running() {
        let mut seen = ForwardsSeen::default();
        let n1 = node("n1");
        assert!(seen.admit(&n1, 7, false), "a first delivery runs");
        assert!(
            !seen.admit(&n1, 7, false),
            "a repeat of a write without id never runs"
        );
        assert!(seen.admit(&n1, 8, true));
        seen.started(&n1, 8);
        assert!(
            !seen.admit(&n1, 8, true),
            "a repeat is dropped while the first runs"
        );
        seen.ended(&n1, 8);
        assert!(
            seen.admit(&n1, 8, true),
            "a repeat after the end runs again"
        );
        assert!(seen.admit(&node("n2"), 8, false), "ids are per forwarder");
        assert_eq!(seen.running(), 0);
    }

    #[test]
    fn the_seen_set_is_bounded() {
        let mut seen = ForwardsSeen::default();
        let n1 = node("n1");
        for id in 0..(FORWARDS_SEEN_MAX as u64 + 10) {
            assert!(seen.admit(&n1, id, false));
        }
        assert_eq!(seen.seen.len(), FORWARDS_SEEN_MAX);
        assert!(seen.admit(&n1, 0, false), "the oldest was forgotten");
    }
}
