//! The CRDT policies: `counter`, `set` and `map`, on the `crdts` crate.
//!
//! Replication is state-based: replicas ship whole states and merge them, so a lost or
//! repeated message can never double-count. Operations are applied only at the
//! coordinator, with the coordinator's own actor, and the resulting state is replicated.

use crdts::ctx::RmCtx;
use crdts::{CmRDT, CvRDT, Orswot, PNCounter};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::core::object::clock::ActorId;

/// A PN-counter that can be reset without losing concurrent increments.
///
/// A delete snapshots the counter state it observed into `reset`; the value is
/// `total − reset`. Both halves merge as PN-counters (per-actor maximum), so increments
/// the delete did not see survive it, and the pair is still a lattice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    total: PNCounter<ActorId>,
    reset: PNCounter<ActorId>,
}

/// An add-wins observed-remove set of UTF-8 members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetObj(Orswot<String, ActorId>);

impl Counter {
    pub fn add(&mut self, actor: ActorId, delta: i64) {
        let steps = delta.unsigned_abs();
        if delta > 0 {
            self.total.apply(self.total.inc_many(actor, steps));
        } else if delta < 0 {
            self.total.apply(self.total.dec_many(actor, steps));
        }
    }

    pub fn value(&self) -> i64 {
        let (total, reset) = (self.total.read(), self.reset.read());
        let negative = total < reset;
        // Beyond i64, saturate rather than wrap.
        i64::try_from(&(total - reset)).unwrap_or(if negative { i64::MIN } else { i64::MAX })
    }

    /// Resets everything this replica has observed; increments it has not seen survive.
    pub fn reset(&mut self) {
        self.reset.merge(self.total.clone());
    }

    pub fn merge(&mut self, other: &Counter) {
        self.total.merge(other.total.clone());
        self.reset.merge(other.reset.clone());
    }

    /// Cancels `amount` counted in excess by repeated applications of one operation: the
    /// opposite amount is held under `correction` (an actor no node uses, derived from the
    /// operation's id) in `total`. The per-actor maximum of the merge keeps it exactly
    /// once however often replicas fold it, and a later reset sees it like any entry.
    pub fn cancel(&mut self, correction: ActorId, amount: i64) {
        let steps = amount.unsigned_abs();
        let mut fold = PNCounter::default();
        if amount > 0 {
            fold.apply(fold.dec_many(correction, steps));
        } else if amount < 0 {
            fold.apply(fold.inc_many(correction, steps));
        }
        self.total.merge(fold);
    }
}

impl SetObj {
    /// Adds members under one new dot of `actor`; returns that dot's counter.
    pub fn add(&mut self, actor: ActorId, members: Vec<String>) -> u64 {
        let ctx = self.0.read_ctx().derive_add_ctx(actor);
        let counter = ctx.dot.counter;
        self.0.apply(self.0.add_all(members, ctx));
        counter
    }

    /// Treats `aliases` (the add dots of one operation applied more than once) as one
    /// add: a member whose add under one alias is no longer held exactly loses the
    /// others too.
    ///
    /// An OR-set entry keeps only the newest dot per actor, so an alias is "not held"
    /// either because a remove took it (the clock covers it, the entry is below it) or
    /// because a later add by the same actor stands over it (the entry is above it).
    /// The two cannot be told apart, and need not be: a later add keeps the member
    /// alive by itself, and any remove that takes that later add covers the alias too,
    /// so the other aliases would be doomed then. Dropping them now keeps the state a
    /// function of what has been seen, whatever the order of merges.
    pub fn unify(&mut self, aliases: &[(ActorId, u64)]) {
        let clock = self.0.clock();
        let doomed: Vec<(String, crdts::VClock<ActorId>)> = self
            .0
            .iter()
            .filter_map(|entry| {
                let removed = aliases.iter().any(|(actor, counter)| {
                    clock.get(actor) >= *counter && entry.rm_clock.get(actor) != *counter
                });
                if !removed {
                    return None;
                }
                let mut rm = crdts::VClock::new();
                for (actor, counter) in aliases {
                    if entry.rm_clock.get(actor) == *counter {
                        rm.apply(crdts::Dot::new(*actor, *counter));
                    }
                }
                (!rm.is_empty()).then(|| (entry.val.clone(), rm))
            })
            .collect();
        for (member, rm) in doomed {
            self.0.apply(self.0.rm(member, RmCtx { clock: rm }));
        }
    }

    /// Removes members as far as `context` (from the client's read) has seen them: an
    /// add the reader did not see survives (add wins).
    pub fn remove(&mut self, members: Vec<String>, context: &Context) {
        let ctx = RmCtx {
            clock: context.0.clone(),
        };
        self.0.apply(self.0.rm_all(members, ctx));
    }

    /// Removes every member the context has seen.
    pub fn clear(&mut self, context: &Context) {
        let members: Vec<String> = self.members();
        self.remove(members, context);
    }

    /// Members in sorted order.
    pub fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self.0.read().val.into_iter().collect();
        m.sort();
        m
    }

    pub fn context(&self) -> Context {
        Context(self.0.clock())
    }

    /// The underlying OR-set, for canonical digests.
    pub(crate) fn inner(&self) -> &Orswot<String, ActorId> {
        &self.0
    }

    pub fn merge(&mut self, other: &SetObj) {
        self.0.merge(other.0.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_increments_on_three_replicas_sum_exactly_in_any_order() {
        let actors = [ActorId(1), ActorId(2), ActorId(3)];
        let mut replicas: Vec<Counter> = vec![Counter::default(); 3];
        for (i, r) in replicas.iter_mut().enumerate() {
            for _ in 0..=i {
                r.add(actors[i], 5);
            }
            r.add(actors[i], -1);
        }
        // expected: (5-1) + (10-1) + (15-1) = 27
        let orders = [
            [0, 1, 2],
            [2, 1, 0],
            [1, 2, 0],
            [1, 0, 2],
            [0, 2, 1],
            [2, 0, 1],
        ];
        for order in orders {
            let mut acc = Counter::default();
            for &i in &order {
                acc.merge(&replicas[i]);
            }
            acc.merge(&replicas[order[0]]);
            assert_eq!(acc.value(), 27, "order {order:?}");
        }
    }

    #[test]
    fn a_counter_reset_keeps_increments_it_did_not_see() {
        let mut a = Counter::default();
        a.add(ActorId(1), 10);
        let mut b = a.clone();
        a.reset();
        b.add(ActorId(2), 3);
        a.merge(&b);
        assert_eq!(a.value(), 3);
    }

    #[test]
    fn set_concurrent_add_and_remove_leaves_the_member_present() {
        let mut base = SetObj::default();
        base.add(ActorId(1), vec!["x".into()]);
        let read_ctx = base.context();
        let mut r1 = base.clone();
        let mut r2 = base.clone();
        r1.remove(vec!["x".into()], &read_ctx);
        r2.add(ActorId(2), vec!["x".into()]);
        r1.merge(&r2);
        assert_eq!(r1.members(), vec!["x".to_string()]);
    }

    #[test]
    fn set_remove_with_the_context_of_a_seen_add_leaves_it_absent() {
        let mut r1 = SetObj::default();
        r1.add(ActorId(1), vec!["x".into(), "y".into()]);
        let mut r2 = r1.clone();
        let ctx = r2.context();
        r2.remove(vec!["x".into()], &ctx);
        r1.merge(&r2);
        assert_eq!(r1.members(), vec!["y".to_string()]);
    }
}
