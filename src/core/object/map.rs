//! The `map` policy: named fields, each a register, a counter and a set, merged per field.
//!
//! This is ringkv's own causal map rather than `crdts::Map`. The property tests in
//! `object/tests.rs` found that `crdts::Map` with nested values does not converge: it
//! resets nested values with the map's clock, whose dots mean nothing to a nested
//! counter or register, so replicas merged in different orders read different fields.
//! Here every register value and set member carries a dot from the map's own clock, and
//! merge is the dot-store join (keep a dot if both sides have it, or if the other side
//! has not seen it), which is a join-semilattice; the counter is the resettable
//! PN-counter of `crdt.rs`, itself a lattice. The product of lattices is a lattice.

use std::collections::{BTreeMap, BTreeSet};

use crdts::{CmRDT, CvRDT, VClock};
use serde::{Deserialize, Serialize};

use super::Context;
use super::crdt::Counter;
use crate::core::object::clock::ActorId;

/// A dot: (actor, that actor's counter).
type DotOf = (ActorId, u64);

/// One field: every part is optional in practice; unused parts stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Concurrent register values, each with the dot of its write.
    register: BTreeMap<DotOf, String>,
    counter: Counter,
    /// Set members with the dots of the adds that are still live.
    set: BTreeMap<String, BTreeSet<DotOf>>,
}

/// A map of named fields with one causal clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapObj {
    clock: VClock<ActorId>,
    fields: BTreeMap<String, Field>,
}

/// What a client asks of a map field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapOp {
    /// Set the field's register, superseding every value the coordinator has seen.
    SetRegister {
        /// The field's name.
        field: String,
        /// The new register value; concurrent values stay as siblings of the field.
        value: String,
    },
    /// Add to (or, negative, subtract from) the field's counter.
    Increment {
        /// The field's name.
        field: String,
        /// The amount to add; negative subtracts.
        delta: i64,
    },
    /// Add members to the field's set.
    AddMembers {
        /// The field's name.
        field: String,
        /// Members to add.
        members: Vec<String>,
    },
    /// Remove members the coordinator has observed from the field's set.
    RemoveMembers {
        /// The field's name.
        field: String,
        /// Members to remove; adds the coordinator has not seen survive.
        members: Vec<String>,
    },
    /// Remove the whole field, as far as the client's context has seen it.
    RemoveField {
        /// The field's name.
        field: String,
        /// The context of the read that saw the field; parts written concurrently survive.
        context: Context,
    },
}

/// A field as a reader sees it; empty parts are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRead {
    /// The register's concurrent values; empty when it was never set, more than one after
    /// concurrent writes.
    pub register: Vec<String>,
    /// The counter's sum; `None` when the field has no counter.
    pub counter: Option<i64>,
    /// The set's members, sorted; empty when the field has none.
    pub set: Vec<String>,
}

impl MapObj {
    /// Applies an operation at the coordinator, with its actor.
    /// Applies `op` through `actor`; returns the counter of the dot it wrote, if any (a
    /// register value or a set add).
    pub fn apply(&mut self, actor: ActorId, op: MapOp) -> Option<u64> {
        match op {
            MapOp::SetRegister { field, value } => {
                let dot = self.next_dot(actor);
                let f = self.fields.entry(field).or_default();
                f.register.clear();
                f.register.insert(dot, value);
                return Some(dot.1);
            }
            MapOp::Increment { field, delta } => {
                self.fields
                    .entry(field)
                    .or_default()
                    .counter
                    .add(actor, delta);
            }
            MapOp::AddMembers { field, members } => {
                let dot = self.next_dot(actor);
                let f = self.fields.entry(field).or_default();
                for m in members {
                    f.set.insert(m, BTreeSet::from([dot]));
                }
                return Some(dot.1);
            }
            MapOp::RemoveMembers { field, members } => {
                if let Some(f) = self.fields.get_mut(&field) {
                    for m in members {
                        f.set.remove(&m);
                    }
                }
                self.prune();
            }
            MapOp::RemoveField { field, context } => {
                if let Some(f) = self.fields.get_mut(&field) {
                    f.remove_seen(&context.0);
                }
                self.prune();
            }
        }
        None
    }

    /// Removes every field as far as the context has seen it.
    pub fn clear(&mut self, context: &Context) {
        for f in self.fields.values_mut() {
            f.remove_seen(&context.0);
        }
        self.prune();
    }

    pub fn read(&self) -> BTreeMap<String, FieldRead> {
        self.fields
            .iter()
            .map(|(name, f)| (name.clone(), f.read()))
            .filter(|(_, r)| !r.register.is_empty() || r.counter.is_some() || !r.set.is_empty())
            .collect()
    }

    pub fn context(&self) -> Context {
        Context(self.clock.clone())
    }

    /// The join: per field, dotted parts by the dot-store rule, counters as counters.
    pub fn merge(&mut self, other: &MapObj) {
        let names: BTreeSet<String> = self
            .fields
            .keys()
            .chain(other.fields.keys())
            .cloned()
            .collect();
        let empty = Field::default();
        let mut fields = BTreeMap::new();
        for name in names {
            let ours = self.fields.get(&name).unwrap_or(&empty);
            let theirs = other.fields.get(&name).unwrap_or(&empty);
            let f = Field::join(ours, &self.clock, theirs, &other.clock);
            fields.insert(name, f);
        }
        self.fields = fields;
        self.clock.merge(other.clock.clone());
        self.prune();
    }

    /// Cancels a repeated `Increment` of `field` (see `Counter::cancel`).
    pub fn cancel_increment(&mut self, field: &str, correction: ActorId, amount: i64) {
        if let Some(f) = self.fields.get_mut(field) {
            f.counter.cancel(correction, amount);
        }
    }

    /// Treats `aliases` (dots one `SetRegister` or `AddMembers` wrote to `field` when
    /// applied more than once) as one write: once any is removed (covered by the clock
    /// but gone), the others go too — from the register, and per member from the set.
    pub fn unify(&mut self, field: &str, aliases: &[(ActorId, u64)]) {
        let clock = &self.clock;
        let seen = |d: &DotOf| clock.get(&d.0) >= d.1;
        if let Some(f) = self.fields.get_mut(field) {
            let register_lost = aliases
                .iter()
                .any(|d| seen(d) && !f.register.contains_key(d));
            if register_lost && aliases.iter().any(|d| f.register.contains_key(d)) {
                f.register.retain(|dot, _| !aliases.contains(dot));
            }
            for dots in f.set.values_mut() {
                let present = aliases.iter().any(|d| dots.contains(d));
                let lost = aliases.iter().any(|d| seen(d) && !dots.contains(d));
                if present && lost {
                    dots.retain(|dot| !aliases.contains(dot));
                }
            }
            f.set.retain(|_, dots| !dots.is_empty());
        }
        self.prune();
    }

    fn next_dot(&mut self, actor: ActorId) -> DotOf {
        let dot = self.clock.inc(actor);
        let counter = dot.counter;
        self.clock.apply(dot);
        (actor, counter)
    }

    /// Drops fields identical to an absent one, so equal states are equal values.
    fn prune(&mut self) {
        self.fields.retain(|_, f| f != &Field::default());
    }
}

impl Field {
    fn remove_seen(&mut self, clock: &VClock<ActorId>) {
        let seen = |d: &DotOf| clock.get(&d.0) >= d.1;
        self.register.retain(|d, _| !seen(d));
        for dots in self.set.values_mut() {
            dots.retain(|d| !seen(d));
        }
        self.set.retain(|_, dots| !dots.is_empty());
        self.counter.reset();
    }

    fn join(a: &Field, ca: &VClock<ActorId>, b: &Field, cb: &VClock<ActorId>) -> Field {
        let mut counter = a.counter.clone();
        counter.merge(&b.counter);
        let mut set = BTreeMap::new();
        let members: BTreeSet<&String> = a.set.keys().chain(b.set.keys()).collect();
        let none = BTreeSet::new();
        for m in members {
            let da = a.set.get(m).unwrap_or(&none);
            let db = b.set.get(m).unwrap_or(&none);
            let dots = join_dots(
                da.iter().map(|d| (d, &())),
                ca,
                db.iter().map(|d| (d, &())),
                cb,
            );
            let dots: BTreeSet<DotOf> = dots.into_keys().collect();
            if !dots.is_empty() {
                set.insert(m.clone(), dots);
            }
        }
        Field {
            register: join_dots(a.register.iter(), ca, b.register.iter(), cb),
            counter,
            set,
        }
    }

    fn read(&self) -> FieldRead {
        FieldRead {
            register: self.register.values().cloned().collect(),
            counter: (self.counter != Counter::default()).then(|| self.counter.value()),
            set: self.set.keys().cloned().collect(),
        }
    }
}

/// The dot-store join: a dot survives if both sides hold it, or if the side without it
/// has not seen it (so it was not removed there).
fn join_dots<'a, V: Clone + 'a>(
    a: impl Iterator<Item = (&'a DotOf, &'a V)>,
    ca: &VClock<ActorId>,
    b: impl Iterator<Item = (&'a DotOf, &'a V)>,
    cb: &VClock<ActorId>,
) -> BTreeMap<DotOf, V> {
    let a: BTreeMap<&DotOf, &V> = a.collect();
    let b: BTreeMap<&DotOf, &V> = b.collect();
    let unseen = |c: &VClock<ActorId>, d: &DotOf| c.get(&d.0) < d.1;
    let mut out = BTreeMap::new();
    for (d, v) in &a {
        if b.contains_key(d) || unseen(cb, d) {
            out.insert(**d, (*v).clone());
        }
    }
    for (d, v) in &b {
        if !a.contains_key(d) && unseen(ca, d) {
            out.insert(**d, (*v).clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_field_removed_on_one_replica_and_written_on_another_keeps_the_new_write() {
        let a = ActorId(1);
        let b = ActorId(2);
        let mut r1 = MapObj::default();
        r1.apply(
            a,
            MapOp::SetRegister {
                field: "f".into(),
                value: "old".into(),
            },
        );
        let mut r2 = r1.clone();
        let ctx = r1.context();
        r1.apply(
            a,
            MapOp::RemoveField {
                field: "f".into(),
                context: ctx,
            },
        );
        r2.apply(
            b,
            MapOp::SetRegister {
                field: "f".into(),
                value: "new".into(),
            },
        );
        let mut x = r1.clone();
        x.merge(&r2);
        let mut y = r2.clone();
        y.merge(&r1);
        assert_eq!(x, y);
        assert_eq!(x.read()["f"].register, vec!["new".to_string()]);
    }
}
