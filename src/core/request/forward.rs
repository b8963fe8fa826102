//! Forwarded requests: a node outside a key's preference list hands the request to the
//! first live replica once, and remembers which forwards it has served so a duplicate
//! delivery is not run twice (a forward is an operation, not a state: running it twice
//! would apply a counter increment or a set add twice).

use std::collections::{BTreeSet, VecDeque};

use crate::core::placement::ring::NodeId;

/// Times a client's get, or a write with an operation id, moves on to another
/// coordinator after one failed (unreachable or timed out). A write without an id never
/// moves: one that timed out may have been applied, and only the id lets a second
/// application be recognised (`core/object/applied.rs`).
pub const FORWARD_FAILOVERS_MAX: usize = 2;
/// Forwarded requests remembered to recognise a duplicate delivery.
pub const FORWARDS_SEEN_MAX: usize = 65_536;

/// The (forwarder, its request id) of recent forwards, bounded by [`FORWARDS_SEEN_MAX`].
#[derive(Debug, Default)]
pub(crate) struct ForwardsSeen {
    seen: BTreeSet<(NodeId, u64)>,
    /// Oldest first.
    order: VecDeque<(NodeId, u64)>,
}

impl ForwardsSeen {
    /// Records a forward; false when the same one was delivered before.
    pub(crate) fn first(&mut self, from: &NodeId, id: u64) -> bool {
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
