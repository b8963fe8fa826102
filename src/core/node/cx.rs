//! What every subsystem may use during one input: the clocks, the settings, the outbox,
//! the timer table, request ids and the seeded RNG.
//!
//! The node owns these in [`Shared`] and lends them as a [`Cx`] for one call, next to the
//! other subsystems' state that call needs as explicit arguments (quinn-proto's borrow
//! splitting: `Connection` owns `StreamsState` and lends `Streams<'_>`). A subsystem can
//! therefore reach another one only through an argument its caller chose to pass, and the
//! coupling is visible in the signatures.

use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;

use crate::core::node::{NodeConfig, Now};
use crate::core::placement::ring::NodeId;
use crate::core::timer::TimerTable;
use crate::proto::{ClientReply, PeerMessage};

/// Most outputs queued between two drains; a drain happens after every input, so
/// only a bug could reach it, and then messages are dropped (retries and repair cover).
pub const OUTBOX_MAX: usize = 1 << 20;

/// The node-wide state every subsystem may borrow.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) out: Outbox,
    pub(crate) timers: TimerTable,
    pub(crate) ids: Ids,
    pub(crate) rng: ChaCha8Rng,
}

/// [`Shared`] lent for one input handled at `now`.
#[derive(Debug)]
pub(crate) struct Cx<'a> {
    pub(crate) now: Now,
    pub(crate) config: &'a NodeConfig,
    pub(crate) out: &'a mut Outbox,
    pub(crate) timers: &'a mut TimerTable,
    pub(crate) ids: &'a mut Ids,
    pub(crate) rng: &'a mut ChaCha8Rng,
}

/// Messages to peers and replies to the driver's clients, in the order they were made.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    transmits: VecDeque<(NodeId, PeerMessage)>,
    replies: VecDeque<(u64, ClientReply)>,
    /// Messages dropped because the outbox was full.
    dropped: u64,
}

/// Ids of the requests this node starts: replications, reads, forwards, transfers,
/// reaping rounds. They never repeat across restarts (see [`Ids::starting_at`]).
#[derive(Debug)]
pub(crate) struct Ids {
    next: u64,
}

impl Shared {
    pub(crate) fn lend(&mut self, now: Now) -> Cx<'_> {
        Cx {
            now,
            config: &self.config,
            out: &mut self.out,
            timers: &mut self.timers,
            ids: &mut self.ids,
            rng: &mut self.rng,
        }
    }
}

impl Cx<'_> {
    /// This node's name.
    pub(crate) fn me(&self) -> &NodeId {
        &self.config.name
    }
}

impl Outbox {
    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMessage) {
        if self.transmits.len() >= OUTBOX_MAX {
            self.dropped += 1;
            return;
        }
        self.transmits.push_back((to, msg));
    }

    pub(crate) fn reply(&mut self, req_id: u64, reply: ClientReply) {
        self.replies.push_back((req_id, reply));
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<(NodeId, PeerMessage)> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_reply(&mut self) -> Option<(u64, ClientReply)> {
        self.replies.pop_front()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Ids {
    /// Request ids must not repeat across restarts: peers remember forwarded ids to drop
    /// duplicates, and a late reply to the previous incarnation must not match a new
    /// request. The node starts at a random point in a 2^48 range, which makes a
    /// collision negligible and leaves room to count up without overflow.
    pub(crate) fn starting_at(first: u64) -> Ids {
        Ids { next: first }
    }

    pub(crate) fn fresh(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }
}
