//! The CRDT policies: `counter`, `set` and `map`, on the `crdts` crate.
//!
//! Replication is state-based: replicas ship whole states and merge them, so a lost or
//! repeated message can never double-count. Operations are applied only at the
//! coordinator, with the coordinator's own actor, and the resulting state is replicated.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crdts::ctx::RmCtx;
use crdts::{CmRDT, CvRDT, MVReg, Map, Orswot, PNCounter, ResetRemove, VClock};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::core::clock::ActorId;

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

/// One field of a `map`: a product of a register, a counter and a set. Most fields use
/// one of the three; a product (rather than an enum) keeps merge lawful even when two
/// clients concurrently use the same field as different types.
///
/// Every part is written with the map's dots, so removing a field (which resets what
/// the remover's map clock covers) removes exactly the parts it saw. That is why the
/// counter is a multi-value register of per-actor (increments, decrements) totals rather
/// than a `PNCounter`, whose dots are its own and would not be covered by the map clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub register: MVReg<String, ActorId>,
    pub counter: MVReg<PnTotals, ActorId>,
    pub set: Orswot<String, ActorId>,
}

/// Per-actor (increments, decrements) totals; both only grow.
pub type PnTotals = BTreeMap<ActorId, (u64, u64)>;

/// An operation on one [`Field`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FieldOp {
    Register(crdts::mvreg::Op<String, ActorId>),
    Counter(crdts::mvreg::Op<PnTotals, ActorId>),
    Set(crdts::orswot::Op<String, ActorId>),
}

/// A map of named fields, merged per field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapObj(Map<String, Field, ActorId>);

/// What a client asks of a map field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapOp {
    /// Set the field's register, superseding every value the coordinator has seen.
    SetRegister { field: String, value: String },
    /// Add to (or, negative, subtract from) the field's counter.
    Increment { field: String, delta: i64 },
    /// Add members to the field's set.
    AddMembers { field: String, members: Vec<String> },
    /// Remove members the coordinator has observed from the field's set.
    RemoveMembers { field: String, members: Vec<String> },
    /// Remove the whole field, as far as the client's context has seen it.
    RemoveField { field: String, context: Context },
}

/// A field as a reader sees it; empty parts are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRead {
    pub register: Vec<String>,
    pub counter: Option<i64>,
    pub set: Vec<String>,
}

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
}

impl SetObj {
    pub fn add(&mut self, actor: ActorId, members: Vec<String>) {
        let ctx = self.0.read_ctx().derive_add_ctx(actor);
        self.0.apply(self.0.add_all(members, ctx));
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

    pub fn merge(&mut self, other: &SetObj) {
        self.0.merge(other.0.clone());
    }
}

impl MapObj {
    pub fn apply(&mut self, actor: ActorId, op: MapOp) {
        let add = |map: &Map<String, Field, ActorId>| map.read_ctx().derive_add_ctx(actor);
        let op = match op {
            MapOp::SetRegister { field, value } => {
                let ctx = add(&self.0);
                self.0.update(field, ctx, |f, ctx| {
                    FieldOp::Register(f.register.write(value, ctx))
                })
            }
            MapOp::Increment { field, delta } => {
                let ctx = add(&self.0);
                self.0.update(field, ctx, |f, ctx| {
                    let mut totals = f.counter_totals();
                    let entry = totals.entry(actor).or_default();
                    if delta >= 0 {
                        entry.0 = entry.0.saturating_add(delta.unsigned_abs());
                    } else {
                        entry.1 = entry.1.saturating_add(delta.unsigned_abs());
                    }
                    FieldOp::Counter(f.counter.write(totals, ctx))
                })
            }
            MapOp::AddMembers { field, members } => {
                let ctx = add(&self.0);
                self.0.update(field, ctx, |f, ctx| {
                    FieldOp::Set(f.set.add_all(members, ctx))
                })
            }
            MapOp::RemoveMembers { field, members } => {
                let ctx = add(&self.0);
                self.0.update(field, ctx, |f, _| {
                    let rm = f.set.read_ctx().derive_rm_ctx();
                    FieldOp::Set(f.set.rm_all(members, rm))
                })
            }
            MapOp::RemoveField { field, context } => self.0.rm(field, RmCtx { clock: context.0 }),
        };
        self.0.apply(op);
    }

    /// Removes every field the context has seen.
    pub fn clear(&mut self, context: &Context) {
        let fields: Vec<String> = self.0.keys().map(|k| k.val.clone()).collect();
        for field in fields {
            self.0.apply(self.0.rm(
                field,
                RmCtx {
                    clock: context.0.clone(),
                },
            ));
        }
    }

    pub fn read(&self) -> BTreeMap<String, FieldRead> {
        self.0
            .iter()
            .map(|entry| {
                let (name, field) = entry.val;
                (name.clone(), field.read())
            })
            .collect()
    }

    pub fn context(&self) -> Context {
        Context(self.0.read_ctx().add_clock)
    }

    pub fn merge(&mut self, other: &MapObj) {
        self.0.merge(other.0.clone());
    }
}

impl Field {
    /// The counter's per-actor totals: the pointwise maximum over its concurrent values.
    fn counter_totals(&self) -> PnTotals {
        let mut totals = PnTotals::new();
        for value in self.counter.read().val {
            for (actor, (p, n)) in value {
                let e = totals.entry(actor).or_default();
                e.0 = e.0.max(p);
                e.1 = e.1.max(n);
            }
        }
        totals
    }

    fn read(&self) -> FieldRead {
        let mut register = self.register.read().val;
        register.sort();
        let totals = self.counter_totals();
        let counter = (!totals.is_empty()).then(|| {
            let sum: i128 = totals.values().map(|&(p, n)| p as i128 - n as i128).sum();
            sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64
        });
        let mut set: Vec<String> = self.set.read().val.into_iter().collect();
        set.sort();
        FieldRead {
            register,
            counter,
            set,
        }
    }
}

impl CmRDT for Field {
    type Op = FieldOp;
    type Validation = Infallible;

    fn validate_op(&self, _op: &FieldOp) -> Result<(), Infallible> {
        Ok(())
    }

    fn apply(&mut self, op: FieldOp) {
        match op {
            FieldOp::Register(op) => self.register.apply(op),
            FieldOp::Counter(op) => self.counter.apply(op),
            FieldOp::Set(op) => self.set.apply(op),
        }
    }
}

impl CvRDT for Field {
    type Validation = Infallible;

    fn validate_merge(&self, _other: &Self) -> Result<(), Infallible> {
        Ok(())
    }

    fn merge(&mut self, other: Field) {
        self.register.merge(other.register);
        self.counter.merge(other.counter);
        self.set.merge(other.set);
    }
}

impl ResetRemove<ActorId> for Field {
    fn reset_remove(&mut self, clock: &VClock<ActorId>) {
        self.register.reset_remove(clock);
        self.counter.reset_remove(clock);
        self.set.reset_remove(clock);
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

    #[test]
    fn map_fields_hold_registers_counters_and_sets() {
        let mut m = MapObj::default();
        let a = ActorId(1);
        m.apply(
            a,
            MapOp::SetRegister {
                field: "name".into(),
                value: "ada".into(),
            },
        );
        m.apply(
            a,
            MapOp::Increment {
                field: "visits".into(),
                delta: 3,
            },
        );
        m.apply(
            a,
            MapOp::AddMembers {
                field: "tags".into(),
                members: vec!["x".into(), "y".into()],
            },
        );
        m.apply(
            a,
            MapOp::RemoveMembers {
                field: "tags".into(),
                members: vec!["x".into()],
            },
        );
        let read = m.read();
        assert_eq!(read["name"].register, vec!["ada".to_string()]);
        assert_eq!(read["visits"].counter, Some(3));
        assert_eq!(read["tags"].set, vec!["y".to_string()]);
        let ctx = m.context();
        m.apply(
            a,
            MapOp::RemoveField {
                field: "name".into(),
                context: ctx,
            },
        );
        assert!(!m.read().contains_key("name"));
    }
}
