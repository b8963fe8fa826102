//! One request's bookkeeping: who was asked, who answered, and whether W or R is met.
//!
//! The coordinator feeds it every reply, failure and timeout; it ignores duplicates and
//! replies from nodes it never asked, so late or repeated messages cannot inflate a
//! count. When a quorum fails, it produces the exact story for the error message: how
//! many acks of how many were needed, and which nodes acked, failed, timed out or were
//! unreachable.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::placement::ring::{NodeId, Target};
use crate::proto::QuorumFailure;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Enough acks.
    Met,
    /// Not enough acks yet, and still possible.
    Pending,
    /// Even if every outstanding node answered, the quorum could not be met.
    Impossible,
}

/// Replies for one request.
#[derive(Clone, Debug)]
pub struct Quorum {
    needed: usize,
    n: usize,
    strict: bool,
    /// Every node asked, and whether it is a primary (not a stand-in).
    asked: BTreeMap<NodeId, bool>,
    acked: Vec<NodeId>,
    failed: BTreeMap<NodeId, String>,
    unreachable: BTreeSet<NodeId>,
    /// Nodes reported unreachable that are still waited on, to be asked again: the
    /// report may concern messages sent before the request started.
    reported: BTreeSet<NodeId>,
}

impl Quorum {
    /// `targets` are the nodes asked; `uncovered` are primaries nobody could stand in for.
    pub fn new(
        needed: usize,
        n: usize,
        strict: bool,
        targets: &[Target],
        uncovered: &[NodeId],
    ) -> Quorum {
        Quorum {
            needed,
            n,
            strict,
            asked: targets
                .iter()
                .map(|t| (t.node.clone(), t.hint.is_none()))
                .collect(),
            acked: Vec::new(),
            failed: BTreeMap::new(),
            unreachable: uncovered.iter().cloned().collect(),
            reported: BTreeSet::new(),
        }
    }

    /// Asks one more node, a stand-in (never counted as a primary), while the request
    /// waits: false, changing nothing, when it was asked already.
    pub fn ask(&mut self, stand_in: &Target) -> bool {
        if self.asked.contains_key(&stand_in.node) {
            return false;
        }
        self.asked.insert(stand_in.node.clone(), false);
        self.check_invariants();
        true
    }

    /// True when only primaries count (a strict request).
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// N, the replicas the request is for.
    pub fn n(&self) -> usize {
        self.n
    }

    /// True when `node` was asked and has not answered in any way.
    pub fn is_silent(&self, node: &NodeId) -> bool {
        self.outstanding(node)
    }

    /// True when `node` was asked.
    pub fn was_asked(&self, node: &NodeId) -> bool {
        self.asked.contains_key(node)
    }

    /// Records an ack. Returns false (and changes nothing) for a duplicate, a node that
    /// was not asked, or one already counted as failed.
    pub fn ack(&mut self, node: &NodeId) -> bool {
        if !self.outstanding(node) {
            return false;
        }
        self.acked.push(node.clone());
        self.check_invariants();
        true
    }

    /// Records a node's refusal or error.
    pub fn fail(&mut self, node: &NodeId, reason: impl Into<String>) -> bool {
        if !self.outstanding(node) {
            return false;
        }
        self.failed.insert(node.clone(), reason.into());
        self.check_invariants();
        true
    }

    /// Notes that a node was reported unreachable while it is still waited on (it will
    /// be asked again); a failure then names it unreachable rather than timed out.
    pub fn report(&mut self, node: &NodeId) -> bool {
        if !self.outstanding(node) {
            return false;
        }
        self.reported.insert(node.clone());
        true
    }

    /// Records that a node could not be reached at all.
    pub fn unreachable(&mut self, node: &NodeId) -> bool {
        if !self.outstanding(node) {
            return false;
        }
        self.unreachable.insert(node.clone());
        self.check_invariants();
        true
    }

    pub fn outcome(&self) -> Outcome {
        let counted = self.counted();
        if counted >= self.needed {
            return Outcome::Met;
        }
        let waiting = self
            .asked
            .iter()
            .filter(|(node, primary)| (!self.strict || **primary) && self.outstanding(node))
            .count();
        if counted + waiting < self.needed {
            Outcome::Impossible
        } else {
            Outcome::Pending
        }
    }

    /// The nodes asked that have not answered in any way: at a deadline, the ones that
    /// let the request time out.
    pub fn silent(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.asked.keys().filter(|n| self.outstanding(n))
    }

    /// True once every node asked has answered one way or another.
    pub fn settled(&self) -> bool {
        self.asked.keys().all(|n| !self.outstanding(n))
    }

    /// Why the quorum was not met, for the client.
    pub fn failure(&self, op: &str, key: String) -> QuorumFailure {
        QuorumFailure {
            op: op.to_string(),
            key,
            needed: self.needed,
            n: self.n,
            strict: self.strict,
            acked: self.acked.clone(),
            failed: self
                .failed
                .iter()
                .map(|(n, e)| (n.clone(), e.clone()))
                .collect(),
            timed_out: self
                .silent()
                .filter(|n| !self.reported.contains(*n))
                .cloned()
                .collect(),
            unreachable: self
                .unreachable
                .iter()
                .chain(self.silent().filter(|n| self.reported.contains(*n)))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            up: None,
        }
    }

    /// Every node is in at most one of acked, failed and unreachable; acks come only
    /// from nodes asked, once each; and never more acks than nodes asked.
    fn check_invariants(&self) {
        debug_assert!(
            self.acked.iter().all(|n| self.asked.contains_key(n)),
            "an ack from a node never asked"
        );
        debug_assert!(
            self.acked
                .iter()
                .all(|n| !self.failed.contains_key(n) && !self.unreachable.contains(n)),
            "a node counted both as acked and as failed or unreachable"
        );
        debug_assert!(
            self.failed.keys().all(|n| !self.unreachable.contains(n)),
            "a node counted both as failed and unreachable"
        );
        debug_assert!(
            self.acked.len() <= self.asked.len(),
            "more acks than nodes asked"
        );
        debug_assert!(
            self.needed >= 1 && self.needed <= self.n,
            "W or R outside 1..=N"
        );
    }

    fn counted(&self) -> usize {
        self.acked
            .iter()
            .filter(|n| !self.strict || self.asked.get(*n).copied().unwrap_or(false))
            .count()
    }

    fn outstanding(&self, node: &NodeId) -> bool {
        self.asked.contains_key(node)
            && !self.acked.contains(node)
            && !self.failed.contains_key(node)
            && !self.unreachable.contains(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, hint: Option<&str>) -> Target {
        Target {
            node: NodeId::from(name),
            hint: hint.map(NodeId::from),
        }
    }

    #[test]
    fn duplicates_and_strangers_do_not_count() {
        let mut q = Quorum::new(
            2,
            3,
            false,
            &[t("a", None), t("b", None), t("c", None)],
            &[],
        );
        assert!(q.ack(&NodeId::from("a")));
        assert!(!q.ack(&NodeId::from("a")));
        assert!(!q.ack(&NodeId::from("zz")));
        assert_eq!(q.outcome(), Outcome::Pending);
        assert!(q.ack(&NodeId::from("b")));
        assert_eq!(q.outcome(), Outcome::Met);
    }

    #[test]
    fn too_many_failures_make_it_impossible_and_the_failure_names_everyone() {
        let mut q = Quorum::new(
            2,
            3,
            false,
            &[t("a", None), t("b", None)],
            &[NodeId::from("c")],
        );
        q.ack(&NodeId::from("a"));
        q.fail(&NodeId::from("b"), "disk full");
        assert_eq!(q.outcome(), Outcome::Impossible);
        assert!(q.settled());
        let f = q.failure("put", "b/k".into());
        assert_eq!(f.acked, vec![NodeId::from("a")]);
        assert_eq!(f.failed, vec![(NodeId::from("b"), "disk full".to_string())]);
        assert_eq!(f.unreachable, vec![NodeId::from("c")]);
        assert!(f.timed_out.is_empty());
    }

    #[test]
    fn strict_counts_only_primaries() {
        let mut q = Quorum::new(2, 3, true, &[t("a", None), t("x", Some("b"))], &[]);
        q.ack(&NodeId::from("a"));
        q.ack(&NodeId::from("x"));
        assert_eq!(q.outcome(), Outcome::Impossible);
    }

    #[test]
    fn a_stand_in_asked_later_counts_unless_strict() {
        let mut q = Quorum::new(2, 2, false, &[t("a", None), t("b", None)], &[]);
        q.ack(&NodeId::from("a"));
        assert!(q.ask(&t("x", Some("b"))));
        assert!(!q.ask(&t("x", Some("b"))), "asked twice");
        assert!(!q.ask(&t("a", Some("b"))), "a target is not asked again");
        assert!(q.ack(&NodeId::from("x")));
        assert_eq!(q.outcome(), Outcome::Met);

        let mut strict = Quorum::new(2, 2, true, &[t("a", None), t("b", None)], &[]);
        strict.ack(&NodeId::from("a"));
        strict.ask(&t("x", Some("b")));
        strict.ack(&NodeId::from("x"));
        assert_eq!(strict.outcome(), Outcome::Pending, "b may still answer");
    }

    #[test]
    fn silent_nodes_are_reported_as_timed_out() {
        let q = Quorum::new(2, 2, false, &[t("a", None), t("b", None)], &[]);
        let f = q.failure("get", "b/k".into());
        assert_eq!(f.timed_out.len(), 2);
    }
}
