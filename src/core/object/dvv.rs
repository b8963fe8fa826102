//! The `siblings` policy: dotted version vectors.
//!
//! Every stored value carries its own dot (the actor that wrote it and that actor's
//! counter), and the object carries one version vector of everything it has seen. A write
//! removes exactly the values its context covers and adds one new dotted value, so two
//! writes with the same context through the same node both survive — the lost update a
//! plain per-node vector clock suffers cannot happen. Merge keeps a value if both sides
//! have it, or if the other side has not seen its dot yet.
//!
//! A new dot's counter never starts below a floor taken from the coordinator's HLC
//! ([`dot_floor`]). Without it, a key whose tombstone was reaped (or a stand-in whose hint
//! copy was handed off and dropped) would count again from 1, and the reused dot would be
//! covered by any old context still around — a client's stale token, a replica that had
//! not reaped yet — silently erasing the new write. With the floor, a key's second life
//! uses counters far above its first life's.

use crdts::{CmRDT, CvRDT, Dot, VClock};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::core::object::clock::{ActorId, Timestamp};

/// Dot counters per millisecond of HLC time: a burst of more writes than this to one
/// key through one actor within one millisecond only borrows from the next millisecond.
pub const DOT_COUNTERS_PER_MS: u64 = 1 << 10;

/// The lowest counter a dot written at `ts` may take (see the module docs).
pub fn dot_floor(ts: Timestamp) -> u64 {
    ts.wall_ms
        .saturating_mul(DOT_COUNTERS_PER_MS)
        .saturating_add(u64::from(ts.logical).min(DOT_COUNTERS_PER_MS - 1))
}

/// One concurrent value. `value: None` is a tombstone written by a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    pub dot: Dot<ActorId>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A dotted-version-vector set of siblings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dvv {
    clock: VClock<ActorId>,
    /// Sorted by dot, so equal states are equal values.
    siblings: Vec<Sibling>,
}

impl Dvv {
    pub fn new() -> Dvv {
        Dvv::default()
    }

    /// Writes `value` (or a tombstone) through `actor`, superseding what `context` saw.
    /// The new dot's counter is at least `floor` (normally [`dot_floor`] of the write's
    /// HLC stamp). Returns the new value's dot.
    pub fn write(
        &mut self,
        actor: ActorId,
        context: &Context,
        value: Option<Vec<u8>>,
        floor: u64,
    ) -> Dot<ActorId> {
        self.siblings
            .retain(|s| !context.covers(&s.dot.actor, s.dot.counter));
        let counter = self
            .clock
            .get(&actor)
            .max(context.0.get(&actor))
            .max(floor.saturating_sub(1))
            .saturating_add(1);
        let dot = Dot::new(actor, counter);
        self.clock.merge(context.0.clone());
        self.clock.apply(dot);
        self.siblings.push(Sibling { dot, value });
        self.canonicalize();
        dot
    }

    /// Joins another replica's state into this one (commutative, associative, idempotent).
    pub fn merge(&mut self, other: &Dvv) {
        let ours = std::mem::take(&mut self.siblings);
        let mut kept: Vec<Sibling> = ours
            .into_iter()
            .filter(|s| other.has_dot(&s.dot) || other.clock.get(&s.dot.actor) < s.dot.counter)
            .collect();
        for s in &other.siblings {
            let already = kept.iter().any(|k| k.dot == s.dot);
            if !already && self.clock.get(&s.dot.actor) < s.dot.counter {
                kept.push(s.clone());
            }
        }
        self.siblings = kept;
        self.clock.merge(other.clock.clone());
        self.canonicalize();
    }

    /// Treats `aliases` (the dots of one operation applied more than once) as one write:
    /// once any of them is superseded (covered by the clock but gone), the others go too.
    pub fn unify(&mut self, aliases: &[Dot<ActorId>]) {
        let superseded = aliases
            .iter()
            .any(|d| self.clock.get(&d.actor) >= d.counter && !self.has_dot(d));
        if superseded {
            self.siblings.retain(|s| !aliases.contains(&s.dot));
        }
    }

    /// Live values, leaving out the siblings at `hidden` dots.
    pub fn values_except(&self, hidden: &[Dot<ActorId>]) -> Vec<Vec<u8>> {
        self.siblings
            .iter()
            .filter(|s| !hidden.contains(&s.dot))
            .filter_map(|s| s.value.clone())
            .collect()
    }

    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// Live values (tombstones left out), in dot order.
    pub fn values(&self) -> Vec<Vec<u8>> {
        self.siblings
            .iter()
            .filter_map(|s| s.value.clone())
            .collect()
    }

    /// Everything this object has seen: the context a reader gets.
    pub fn context(&self) -> Context {
        Context(self.clock.clone())
    }

    /// True when every sibling is a tombstone (or there is none).
    pub fn is_tombstone(&self) -> bool {
        self.siblings.iter().all(|s| s.value.is_none())
    }

    fn has_dot(&self, dot: &Dot<ActorId>) -> bool {
        self.siblings.iter().any(|s| &s.dot == dot)
    }

    fn canonicalize(&mut self) {
        self.siblings.sort_by_key(|s| (s.dot.actor, s.dot.counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ActorId = ActorId(1);
    const B: ActorId = ActorId(2);

    #[test]
    fn two_writes_with_the_same_context_through_one_actor_both_survive() {
        let mut obj = Dvv::new();
        obj.write(A, &Context::empty(), Some(b"v0".to_vec()), 0);
        let ctx = obj.context();
        obj.write(A, &ctx, Some(b"x".to_vec()), 0);
        obj.write(A, &ctx, Some(b"y".to_vec()), 0);
        assert_eq!(obj.values(), vec![b"x".to_vec(), b"y".to_vec()]);
        // a write whose context covers both replaces them
        let both = obj.context();
        obj.write(A, &both, Some(b"z".to_vec()), 0);
        assert_eq!(obj.values(), vec![b"z".to_vec()]);
    }

    #[test]
    fn an_empty_context_next_to_a_value_gives_siblings() {
        let mut obj = Dvv::new();
        obj.write(A, &Context::empty(), Some(b"a".to_vec()), 0);
        obj.write(B, &Context::empty(), Some(b"b".to_vec()), 0);
        assert_eq!(obj.values().len(), 2);
    }

    #[test]
    fn merge_drops_values_the_other_side_superseded() {
        let mut r1 = Dvv::new();
        r1.write(A, &Context::empty(), Some(b"old".to_vec()), 0);
        let mut r2 = r1.clone();
        let ctx = r2.context();
        r2.write(B, &ctx, Some(b"new".to_vec()), 0);
        r1.merge(&r2);
        assert_eq!(r1.values(), vec![b"new".to_vec()]);
    }

    #[test]
    fn a_delete_leaves_a_tombstone_that_reads_as_empty() {
        let mut obj = Dvv::new();
        obj.write(A, &Context::empty(), Some(b"a".to_vec()), 0);
        let ctx = obj.context();
        obj.write(A, &ctx, None, 0);
        assert!(obj.is_tombstone());
        assert!(obj.values().is_empty());
    }

    #[test]
    fn a_second_life_after_a_reap_is_not_covered_by_the_first_lifes_context() {
        let t = |wall_ms| Timestamp {
            wall_ms,
            logical: 0,
        };
        let mut first = Dvv::new();
        first.write(
            A,
            &Context::empty(),
            Some(b"old".to_vec()),
            dot_floor(t(1_000)),
        );
        let stale = first.context();
        first.write(A, &stale, None, dot_floor(t(1_001)));
        // reaped: the key is gone; a new write starts from nothing
        let mut second = Dvv::new();
        let dot = second.write(
            A,
            &Context::empty(),
            Some(b"new".to_vec()),
            dot_floor(t(9_000)),
        );
        assert!(!stale.covers(&dot.actor, dot.counter));
        // a replica that has not reaped yet, or a client's old token, cannot erase it
        second.merge(&first);
        assert_eq!(second.values(), vec![b"new".to_vec()]);
        second.write(B, &stale, Some(b"late".to_vec()), dot_floor(t(9_001)));
        assert_eq!(second.values(), vec![b"new".to_vec(), b"late".to_vec()]);
    }
}
