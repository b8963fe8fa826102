//! The group-commit gate: which of a node's outputs may leave before its writes are
//! durable, and when the others may.
//!
//! The contract: no ack or reply leaves before the writes of the input that produced it
//! are durable. A driver keeps it by persisting its storage and releasing an output only
//! after a persist that *started* after the output was produced has completed. A persist
//! covers every write made before it starts, and only one runs at a time, so whatever an
//! input read or wrote is durable before its outputs go, including the unsynced writes of
//! earlier inputs it may have read. When no persist is running and nothing was written
//! since the last one (reads, forwards, acks), the driver may release what waits at once
//! ([`CommitGate::release_unwritten`]). A crash drops whatever still waits
//! ([`CommitGate::crash`]): it was never promised.
//!
//! Some outputs promise nothing about this node's disk and leave at once
//! ([`Departure::of_message`], after [`PeerMessage::may_precede_persist`]): sending a
//! coordinator's replication before its own persist puts its fsync and its replicas' side
//! by side instead of in series. A crash in that window may leave replicas holding a write
//! the node lost; the node then restarts under a fresh actor id, so it never issues those
//! dots again.
//!
//! The gate is sans-IO and clock-free: the real driver (`net/`) runs its persist on a
//! blocking thread and tells the gate when it starts and completes; the simulator (`sim/`)
//! persists at a virtual instant. Both release exactly what the gate hands back, in the
//! order it was pushed.

use crate::proto::PeerMessage;

/// When an output may leave the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// At once: it promises nothing about this node's disk.
    Now,
    /// Only once a persist that started after it was pushed has completed.
    AfterPersist,
}

/// A node's outputs on their way out, held until the persist that makes them true.
///
/// Outputs pass through three stages: *early* ones wait only to be taken; *gathered* ones
/// wait for a persist that has not started yet; *covered* ones wait for the running
/// persist, which started after all of them were pushed.
#[derive(Debug)]
pub struct CommitGate<T> {
    early: Vec<T>,
    gathered: Vec<T>,
    covered: Vec<T>,
    persisting: bool,
}

impl Departure {
    /// A peer message leaves at once when it promises nothing about the sender's disk
    /// (replication, reads, forwards); acks and every other message wait.
    pub fn of_message(msg: &PeerMessage) -> Departure {
        if msg.may_precede_persist() {
            Departure::Now
        } else {
            Departure::AfterPersist
        }
    }

    /// A client reply always waits: it is the promise.
    pub fn of_reply() -> Departure {
        Departure::AfterPersist
    }
}

impl<T> CommitGate<T> {
    pub fn new() -> CommitGate<T> {
        CommitGate {
            early: Vec::new(),
            gathered: Vec::new(),
            covered: Vec::new(),
            persisting: false,
        }
    }

    /// Takes one output; what waits is released in the order it was pushed.
    pub fn push(&mut self, output: T, departure: Departure) {
        match departure {
            Departure::Now => self.early.push(output),
            Departure::AfterPersist => self.gathered.push(output),
        }
    }

    /// The outputs that may leave now, in the order they were pushed.
    pub fn take_early(&mut self) -> Vec<T> {
        std::mem::take(&mut self.early)
    }

    /// Outputs waiting for a persist that has not started yet (the driver's backpressure
    /// bound).
    pub fn gathered_len(&self) -> usize {
        self.gathered.len()
    }

    /// True between [`CommitGate::start_persist`] and [`CommitGate::complete_persist`].
    #[cfg(test)]
    pub fn is_persisting(&self) -> bool {
        self.persisting
    }

    /// A persist starts: everything gathered so far becomes covered by it. Only one runs
    /// at a time; while one runs this does nothing, so what was gathered waits for the
    /// next one.
    pub fn start_persist(&mut self) {
        if self.persisting {
            return;
        }
        self.persisting = true;
        if self.covered.is_empty() {
            self.covered = std::mem::take(&mut self.gathered);
        } else {
            self.covered.append(&mut self.gathered);
        }
    }

    /// The running persist completed: releases what it covered, in push order.
    pub fn complete_persist(&mut self) -> Vec<T> {
        self.persisting = false;
        std::mem::take(&mut self.covered)
    }

    /// Nothing was written since the last persist: with no persist running, what was
    /// gathered may leave now. While one runs, nothing is released (what was gathered may
    /// have read the writes it covers).
    pub fn release_unwritten(&mut self) -> Vec<T> {
        if self.persisting {
            return Vec::new();
        }
        std::mem::take(&mut self.gathered)
    }

    /// The node crashed: every held output is dropped, and no persist runs any more.
    #[cfg(any(test, feature = "sim"))]
    pub fn crash(&mut self) {
        self.early.clear();
        self.gathered.clear();
        self.covered.clear();
        self.persisting = false;
    }
}

impl<T> Default for CommitGate<T> {
    fn default() -> CommitGate<T> {
        CommitGate::new()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::Key;

    /// One call on the gate, as a driver would make it.
    #[derive(Clone, Debug)]
    enum Op {
        Push(Departure),
        TakeEarly,
        Start,
        Complete,
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Push(Departure::Now)),
            4 => Just(Op::Push(Departure::AfterPersist)),
            2 => Just(Op::TakeEarly),
            2 => Just(Op::Start),
            2 => Just(Op::Complete),
            1 => Just(Op::Crash),
        ]
    }

    #[test]
    fn early_outputs_leave_at_once_even_during_a_persist() {
        let mut gate = CommitGate::new();
        gate.push(1, Departure::AfterPersist);
        gate.start_persist();
        gate.push(2, Departure::Now);
        gate.push(3, Departure::Now);
        assert_eq!(gate.take_early(), vec![2, 3]);
        assert!(gate.take_early().is_empty());
        assert_eq!(gate.complete_persist(), vec![1]);
    }

    #[test]
    fn outputs_pushed_during_a_persist_wait_for_the_next() {
        let mut gate = CommitGate::new();
        gate.push(1, Departure::AfterPersist);
        gate.start_persist();
        gate.push(2, Departure::AfterPersist);
        assert_eq!(gate.gathered_len(), 1);
        gate.start_persist();
        assert_eq!(gate.complete_persist(), vec![1]);
        assert!(!gate.is_persisting());
        gate.start_persist();
        assert_eq!(gate.complete_persist(), vec![2]);
    }

    #[test]
    fn unwritten_batches_release_at_once_but_not_during_a_persist() {
        let mut gate = CommitGate::new();
        gate.push(1, Departure::AfterPersist);
        gate.push(2, Departure::AfterPersist);
        assert_eq!(gate.release_unwritten(), vec![1, 2]);
        gate.push(3, Departure::AfterPersist);
        gate.start_persist();
        gate.push(4, Departure::AfterPersist);
        assert!(gate.release_unwritten().is_empty());
        assert_eq!(gate.complete_persist(), vec![3]);
        assert_eq!(gate.release_unwritten(), vec![4]);
    }

    #[test]
    fn a_crash_drops_everything_held() {
        let mut gate = CommitGate::new();
        gate.push(1, Departure::AfterPersist);
        gate.start_persist();
        gate.push(2, Departure::AfterPersist);
        gate.push(3, Departure::Now);
        gate.crash();
        assert!(!gate.is_persisting());
        assert!(gate.take_early().is_empty());
        assert!(gate.complete_persist().is_empty());
        assert!(gate.release_unwritten().is_empty());
    }

    #[test]
    fn reads_leave_early_acks_and_replies_wait() {
        let read = PeerMessage::Read {
            id: 1,
            key: Key::new("b", "k"),
            hint: None,
        };
        let ack = PeerMessage::ReplicateAck { id: 1, error: None };
        assert_eq!(Departure::of_message(&read), Departure::Now);
        assert_eq!(Departure::of_message(&ack), Departure::AfterPersist);
        assert_eq!(
            Departure::of_message(&PeerMessage::Ping { nonce: 1 }),
            Departure::AfterPersist
        );
        assert_eq!(Departure::of_reply(), Departure::AfterPersist);
    }

    proptest! {
        /// Whatever the calls: an output that waits is released only by the completion of
        /// a persist that started after it was pushed; early outputs come out at the next
        /// take; each kind comes out in push order; a crash drops what was held.
        #[test]
        fn the_gate_keeps_the_group_commit_contract(ops in prop::collection::vec(op(), 0..200)) {
            let mut gate = CommitGate::new();
            // Output n was pushed at step n; the running persist started at `started`.
            let mut started: Option<usize> = None;
            let mut early_pending: Vec<usize> = Vec::new();
            let mut last_early = None;
            let mut last_waiting = None;
            let mut waiting: Vec<usize> = Vec::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(Departure::Now) => {
                        gate.push(step, Departure::Now);
                        early_pending.push(step);
                    }
                    Op::Push(Departure::AfterPersist) => {
                        gate.push(step, Departure::AfterPersist);
                        waiting.push(step);
                    }
                    Op::TakeEarly => {
                        let out = gate.take_early();
                        prop_assert_eq!(&out, &early_pending);
                        early_pending.clear();
                        if let Some(&last) = out.last() {
                            prop_assert!(last_early.is_none_or(|l| l < out[0]));
                            last_early = Some(last);
                        }
                    }
                    Op::Start => {
                        if started.is_none() {
                            started = Some(step);
                        }
                        gate.start_persist();
                    }
                    Op::Complete => {
                        let out = gate.complete_persist();
                        for n in &out {
                            prop_assert!(started.is_some_and(|s| *n < s), "{} released early", n);
                            prop_assert!(last_waiting.is_none_or(|l| l < *n), "{} out of order", n);
                            last_waiting = Some(*n);
                        }
                        waiting.retain(|n| !out.contains(n));
                        started = None;
                    }
                    Op::Crash => {
                        gate.crash();
                        early_pending.clear();
                        waiting.clear();
                        started = None;
                    }
                }
            }
            // Nothing that waits is lost without a crash: the next persists release it.
            let mut rest = gate.complete_persist();
            gate.start_persist();
            rest.extend(gate.complete_persist());
            prop_assert_eq!(rest, waiting);
        }
    }
}
