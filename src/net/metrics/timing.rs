//! Peer requests this node answers (replica reads and writes, forwards it coordinates),
//! timed from the moment they enter the core loop until their answer leaves it.
//!
//! The answer carries the request's id, so the core loop matches it here by (peer, kind,
//! id). Not every request is answered (a duplicate forward is ignored by the core, a node
//! may stop), so the table is bounded ([`PEER_TIMINGS_MAX`]) and, when full, forgets
//! entries older than any request may live ([`PEER_TIMING_AGE_MAX_MS`]); a request that
//! still finds no room is answered untimed, and so is not counted in the request metrics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::placement::ring::NodeId;
use crate::proto::REQUEST_TIMEOUT_MS_MAX;

use super::labels::PeerOp;

/// Peer requests timed at once at most.
pub const PEER_TIMINGS_MAX: usize = 65_536;
/// Age past which an unanswered entry is forgotten when the table is full: twice the
/// longest request timeout.
pub const PEER_TIMING_AGE_MAX_MS: u64 = REQUEST_TIMEOUT_MS_MAX as u64 * 2;

/// Peer requests waiting for their answer to leave.
#[derive(Debug, Default)]
pub struct PeerTimings {
    started: HashMap<(NodeId, PeerOp, u64), Started>,
}

/// When a peer request entered, and the policy it named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// When the request entered the core loop.
    pub at: Instant,
    /// Its object's policy, when the request carries one.
    pub policy: Option<&'static str>,
}

impl PeerTimings {
    /// Starts timing `op` number `id` from `from`; false when the table had no room.
    pub fn start(&mut self, from: NodeId, op: PeerOp, id: u64, started: Started) -> bool {
        if self.started.len() >= PEER_TIMINGS_MAX {
            let age_max = Duration::from_millis(PEER_TIMING_AGE_MAX_MS);
            self.started
                .retain(|_, s| started.at.saturating_duration_since(s.at) < age_max);
        }
        if self.started.len() >= PEER_TIMINGS_MAX {
            return false;
        }
        self.started.insert((from, op, id), started);
        true
    }

    /// The entry of the request an answer to `to` closes, if it was timed.
    pub fn finish(&mut self, to: &NodeId, op: PeerOp, id: u64) -> Option<Started> {
        self.started.remove(&(to.clone(), op, id))
    }

    /// Requests being timed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.started.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_closes_only_its_own_request() {
        let mut t = PeerTimings::default();
        let at = Instant::now();
        let a = NodeId::new("a");
        let b = NodeId::new("b");
        let s = Started { at, policy: None };
        assert!(t.start(a.clone(), PeerOp::Read, 7, s));
        assert!(t.start(b.clone(), PeerOp::Read, 7, s));
        assert_eq!(t.finish(&a, PeerOp::Replicate, 7), None);
        assert_eq!(t.finish(&a, PeerOp::Read, 7), Some(s));
        assert_eq!(t.finish(&a, PeerOp::Read, 7), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_table_forgets_stale_entries_and_then_refuses() {
        let mut t = PeerTimings::default();
        let a = NodeId::new("a");
        let old = Instant::now();
        let new = old + Duration::from_millis(PEER_TIMING_AGE_MAX_MS + 1);
        for id in 0..PEER_TIMINGS_MAX as u64 {
            assert!(t.start(
                a.clone(),
                PeerOp::Replicate,
                id,
                Started {
                    at: old,
                    policy: None
                }
            ));
        }
        // The stale entries go, so the new one fits.
        assert!(t.start(
            a.clone(),
            PeerOp::Read,
            1,
            Started {
                at: new,
                policy: None
            }
        ));
        assert_eq!(t.len(), 1);
        for id in 2..=PEER_TIMINGS_MAX as u64 {
            t.start(
                a.clone(),
                PeerOp::Read,
                id,
                Started {
                    at: new,
                    policy: None,
                },
            );
        }
        assert!(!t.start(
            a,
            PeerOp::Forward,
            0,
            Started {
                at: new,
                policy: None
            }
        ));
        assert_eq!(t.len(), PEER_TIMINGS_MAX);
    }
}
