//! The stored object, for every conflict policy.
//!
//! An object is self-describing: it records its policy, and an operation of another
//! policy is refused with an error that names both. Every policy's state is a join
//! semilattice: [`Object::merge`] is commutative, associative and idempotent, which is
//! what makes replication by "send the whole object, merge on arrival" safe under loss,
//! duplication and reordering. Operations are applied only by a coordinator, with its
//! own actor and HLC timestamp, through [`Object::apply`].

pub mod applied;
pub mod clock;

mod context;
mod crdt;
mod digest;
mod dvv;
mod lww;
mod map;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use applied::{AppliedIds, OpId};
use applied::{Duplicate, Effect};
pub use context::Context;
#[cfg(feature = "sim")]
pub use context::{CONTEXT_ACTORS_MAX, CONTEXT_TOKEN_BYTES_MAX};
pub use crdt::{Counter, SetObj};
#[cfg(feature = "sim")]
pub use dvv::{DOT_COUNTERS_PER_MS, Sibling};
pub use dvv::{Dvv, dot_floor};
pub use lww::LwwCell;
#[cfg(feature = "sim")]
pub use map::Field;
pub use map::{FieldRead, MapObj, MapOp};

use crate::core::object::clock::{ActorId, Timestamp};

/// Default sibling count above which a reply carries a warning.
pub const SIBLINGS_WARN_DEFAULT: usize = 25;
/// Default sibling count a write may not push an object past.
pub const SIBLINGS_MAX_DEFAULT: usize = 100;
/// Largest single value (or member, field name or item) a client may write.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most members, items or fields one operation may carry.
pub const OP_ITEMS_MAX: usize = 10_000;

/// A conflict policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Policy {
    /// Multi-value register: concurrent writes are all kept as siblings (a dotted version
    /// vector) until a write with their context supersedes them.
    Siblings,
    /// Last-writer-wins register: the write with the highest HLC timestamp wins, ties
    /// broken by actor.
    Lww,
    /// PN-counter: concurrent increments and decrements all count.
    Counter,
    /// Observed-remove set: a remove takes away only the adds its context saw, so a
    /// concurrent add survives.
    Set,
    /// Causal map of named fields, each with a register, a counter and a set.
    Map,
    /// HyperLogLog sketch: an approximate count of distinct items added; cannot be deleted.
    Hll,
}

/// The stored object: one policy's state, and the operation ids applied to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    value: Value,
    applied: AppliedIds,
}

/// One policy's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Siblings(Dvv),
    Lww(LwwCell),
    Counter(Counter),
    Set(SetObj),
    Map(MapObj),
    Hll(HllObj),
}

/// The `hll` policy's state: a HyperLogLog sketch of the items added.
///
/// Always at the crate's standard precision: the sketch decoder accepts other precisions
/// (statistics use smaller ones), so one arriving from a peer is refused at decode rather
/// than silently skipped by a merge that cannot combine the two.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "ringkv_sketches::Hll", into = "ringkv_sketches::Hll")]
pub struct HllObj(pub ringkv_sketches::Hll);

/// A write a coordinator applies to an object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `siblings`: a new value superseding what the context saw.
    Put {
        /// The new value, at most `VALUE_BYTES_MAX` bytes.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The context of the read this write is based on: the values it saw are
        /// superseded, concurrent ones stay as siblings. Empty for a blind write.
        context: Context,
    },
    /// `lww`: a new value stamped with the coordinator's HLC.
    PutLww {
        /// The new value, at most `VALUE_BYTES_MAX` bytes.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Any policy: remove what the context saw (a tombstone for values).
    Delete {
        /// For `siblings`, `set` and `map`, what the delete removes: what the client's read
        /// saw, so a concurrent write survives. `lww` and `counter` ignore it.
        context: Context,
    },
    /// `counter`: add a signed amount.
    CounterAdd {
        /// The amount to add; negative subtracts.
        delta: i64,
    },
    /// `set`: add members.
    SetAdd {
        /// Members to add, at most `OP_ITEMS_MAX`, each at most `VALUE_BYTES_MAX` bytes.
        members: Vec<String>,
    },
    /// `set`: remove members as far as the context saw them.
    SetRemove {
        /// Members to remove, at most `OP_ITEMS_MAX`.
        members: Vec<String>,
        /// The context of the read that saw the members; adds it did not see survive.
        context: Context,
    },
    /// `map`: update one field.
    Map(MapOp),
    /// `hll`: add items to the sketch.
    HllAdd {
        /// Items to add, at most `OP_ITEMS_MAX`, each at most `VALUE_BYTES_MAX` bytes; only
        /// their hash enters the sketch.
        items: Vec<Vec<u8>>,
    },
}

/// A client write as the core carries it: the operation and its id, if the client gave
/// one.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub op: Op,
    pub id: Option<OpId>,
}

/// Bounds a coordinator enforces when it applies a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub siblings_warn: usize,
    pub siblings_max: usize,
}

/// What a write did, beyond the new state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Set when the object now has more siblings than the warning threshold.
    pub warning: Option<String>,
    /// True when the object had already applied the write's operation id, so this
    /// delivery changed nothing.
    pub repeated: bool,
}

/// An object as a reader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReadValue {
    /// A `siblings` object: every concurrent value.
    Siblings {
        /// The concurrent values, in no meaningful order; empty when the key is deleted.
        values: Vec<serde_bytes::ByteBuf>,
        /// The context to pass with the next write so it supersedes these values.
        context: Context,
    },
    /// An `lww` object: the winning write.
    Lww {
        /// The winning value, `None` when the winning write was a delete.
        value: Option<serde_bytes::ByteBuf>,
        /// The winning write's HLC timestamp.
        ts: Timestamp,
    },
    /// A `counter` object.
    Counter {
        /// The sum of every increment and decrement.
        value: i64,
    },
    /// A `set` object.
    Set {
        /// The members, sorted.
        members: Vec<String>,
        /// The context to pass with a remove so it takes away these members.
        context: Context,
    },
    /// A `map` object.
    Map {
        /// Every non-empty field by name.
        fields: BTreeMap<String, FieldRead>,
        /// The context to pass with a field removal so it takes away what was read.
        context: Context,
    },
    /// An `hll` object.
    Hll {
        /// Estimated number of distinct items added.
        estimate: u64,
    },
}

/// Errors from applying operations to objects. The object is unchanged after each of
/// them. They travel to the client inside `RequestError::Object`, so they carry text,
/// not sources.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectError {
    #[error(
        "the key holds a `{stored}` object, and a `{requested}` operation cannot change it; use the `{stored}` commands for this key or write to another key"
    )]
    PolicyMismatch { stored: Policy, requested: Policy },
    #[error(
        "the write would leave {count} siblings, over the limit of {limit}; read the key and write back one value with the context you read to resolve them"
    )]
    TooManySiblings { count: usize, limit: usize },
    #[error(
        "`hll` objects cannot be deleted: a sketch has no per-item causality to remove; write to a new key instead"
    )]
    NotDeletable { policy: Policy },
    #[error(
        "the causal context token is not valid ({0}); pass the token exactly as a read returned it"
    )]
    BadContext(String),
    #[error("{what} is {len} bytes or items, over the limit of {limit}")]
    TooLarge {
        what: String,
        len: usize,
        limit: usize,
    },
}

impl Policy {
    /// Every policy, in declaration order.
    pub const ALL: [Policy; 6] = [
        Policy::Siblings,
        Policy::Lww,
        Policy::Counter,
        Policy::Set,
        Policy::Map,
        Policy::Hll,
    ];

    /// The policy's name as the CLI and error messages spell it: "siblings", "lww",
    /// "counter", "set", "map" or "hll".
    pub fn name(self) -> &'static str {
        match self {
            Policy::Siblings => "siblings",
            Policy::Lww => "lww",
            Policy::Counter => "counter",
            Policy::Set => "set",
            Policy::Map => "map",
            Policy::Hll => "hll",
        }
    }
}

impl Object {
    /// The version digest of this object: equal states give equal digests on every
    /// replica (see `digest`).
    pub fn digest(&self) -> u64 {
        digest::digest(self)
    }

    /// An empty object of a policy.
    pub fn empty(policy: Policy) -> Object {
        Object::from(Value::empty(policy))
    }

    pub fn policy(&self) -> Policy {
        self.value.policy()
    }

    /// The policy's state.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The operation ids this copy has applied.
    pub fn applied(&self) -> &AppliedIds {
        &self.applied
    }

    /// Applies a write to `existing` (None: the key is new here) through `actor` at HLC
    /// time `ts`, and returns the new object. A write whose `id` the object already lists
    /// changes nothing and comes back with `Applied::repeated`. The input is left alone on
    /// error.
    pub fn apply(
        existing: Option<&Object>,
        op: Op,
        id: Option<OpId>,
        actor: ActorId,
        ts: Timestamp,
        limits: &Limits,
    ) -> Result<(Object, Applied), ObjectError> {
        Object::apply_owned(existing.cloned(), op, id, actor, ts, limits)
    }

    /// [`Object::apply`] to an object the caller gives up (a replica's freshly decoded
    /// copy), so the write changes it in place instead of copying it first.
    pub fn apply_owned(
        existing: Option<Object>,
        op: Op,
        id: Option<OpId>,
        actor: ActorId,
        ts: Timestamp,
        limits: &Limits,
    ) -> Result<(Object, Applied), ObjectError> {
        op.check_size()?;
        let mut obj = match (existing, op.policy()) {
            (Some(obj), Some(requested)) if obj.policy() != requested => {
                return Err(ObjectError::PolicyMismatch {
                    stored: obj.policy(),
                    requested,
                });
            }
            (Some(obj), _) => obj,
            (None, Some(policy)) => Object::empty(policy),
            // A delete of a key this node has never seen leaves a `siblings` tombstone,
            // which loses to real data of any other policy when merged (see `merge`).
            (None, None) => Object::empty(Policy::Siblings),
        };
        if let Some(id) = id
            && obj.applied.contains(&id)
        {
            let applied = Applied {
                repeated: true,
                ..Applied::default()
            };
            return Ok((obj, applied));
        }
        let (applied, effect) = obj.value.apply(op, actor, ts, limits)?;
        if let Some(id) = id {
            obj.applied
                .record(id, actor, applied::Application { ts, effect });
        }
        // A write whose context saw one application of a repeated operation supersedes
        // them all.
        obj.cancel_duplicates();
        Ok((obj, applied))
    }

    /// Joins another replica's copy into this one. Commutative, associative and
    /// idempotent. Two copies of different policies can only come from concurrent first
    /// writes of different kinds to one key; the higher policy (in `Policy` order) wins so
    /// replicas still converge, and the dropped policy is returned for the caller to log.
    /// An operation the two copies show applied by different coordinators is then
    /// counted once (see `applied`).
    pub fn merge(&mut self, other: &Object) -> Option<Policy> {
        let dropped = self.value.merge(&other.value);
        self.applied.merge(&other.applied);
        self.cancel_duplicates();
        dropped
    }

    /// What a reader sees. A value written by several applications of one operation
    /// shows once.
    pub fn read(&self) -> ReadValue {
        let mut read = self.value.read();
        if let (Value::Siblings(dvv), ReadValue::Siblings { values, .. }) = (&self.value, &mut read)
        {
            let hidden: Vec<crdts::Dot<ActorId>> = self
                .applied
                .duplicates()
                .flat_map(|dup| {
                    all_dots(&dup.applications)
                        .skip(1)
                        .map(|(actor, counter)| crdts::Dot::new(actor, counter))
                        .collect::<Vec<_>>()
                })
                .collect();
            if !hidden.is_empty() {
                *values = dvv
                    .values_except(&hidden)
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect();
            }
        }
        read
    }

    /// True when the object holds nothing but deletes.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_tombstone()
    }

    /// Number of concurrent values a reader would see.
    pub fn sibling_count(&self) -> usize {
        self.value.sibling_count()
    }

    /// Makes an operation applied by several coordinators count once, by policy: a
    /// counter folds the excess into a correction entry; the dots the applications wrote
    /// (a `siblings` value, set adds, a map register or set add) become aliases of one
    /// write — a delete or overwrite that saw any of them removes all of them, and a
    /// reader sees one value. Depends only on the merged state, so every replica does
    /// the same.
    fn cancel_duplicates(&mut self) {
        let duplicates: Vec<Duplicate> = self.applied.duplicates().collect();
        for dup in duplicates {
            let Some((_, first)) = dup.applications.first() else {
                continue;
            };
            let excess = |each: i64| each.saturating_mul(dup.repeats() as i64);
            match (&mut self.value, &first.effect) {
                (Value::Counter(c), Effect::Add(each)) => {
                    c.cancel(dup.correction_actor(), excess(*each));
                }
                (Value::Map(m), Effect::FieldAdd(field, each)) => {
                    m.cancel_increment(field, dup.correction_actor(), excess(*each));
                }
                (Value::Siblings(dvv), Effect::Dot(_)) => {
                    let dots: Vec<crdts::Dot<ActorId>> = all_dots(&dup.applications)
                        .map(|(actor, counter)| crdts::Dot::new(actor, counter))
                        .collect();
                    dvv.unify(&dots);
                }
                (Value::Set(set), Effect::Dot(_)) => {
                    let dots: Vec<(ActorId, u64)> = all_dots(&dup.applications).collect();
                    set.unify(&dots);
                }
                (Value::Map(m), Effect::FieldDot(field, _)) => {
                    let dots: Vec<(ActorId, u64)> = dup
                        .applications
                        .iter()
                        .filter_map(|(actor, app)| match &app.effect {
                            Effect::FieldDot(f, counter) if f == field => Some((*actor, *counter)),
                            _ => None,
                        })
                        .collect();
                    m.unify(field, &dots);
                }
                _ => {}
            }
        }
    }
}

impl Value {
    /// An empty state of a policy.
    pub fn empty(policy: Policy) -> Value {
        match policy {
            Policy::Siblings => Value::Siblings(Dvv::new()),
            Policy::Lww => Value::Lww(LwwCell::new(Timestamp::default(), ActorId(0), None)),
            Policy::Counter => Value::Counter(Counter::default()),
            Policy::Set => Value::Set(SetObj::default()),
            Policy::Map => Value::Map(MapObj::default()),
            Policy::Hll => Value::Hll(HllObj::default()),
        }
    }

    pub fn policy(&self) -> Policy {
        match self {
            Value::Siblings(_) => Policy::Siblings,
            Value::Lww(_) => Policy::Lww,
            Value::Counter(_) => Policy::Counter,
            Value::Set(_) => Policy::Set,
            Value::Map(_) => Policy::Map,
            Value::Hll(_) => Policy::Hll,
        }
    }

    /// Applies `op` (of this state's policy, or a delete) and says what it produced that
    /// a repeat would produce again.
    fn apply(
        &mut self,
        op: Op,
        actor: ActorId,
        ts: Timestamp,
        limits: &Limits,
    ) -> Result<(Applied, Effect), ObjectError> {
        let mut applied = Applied::default();
        let mut effect = Effect::Idempotent;
        match (&mut *self, op) {
            (Value::Siblings(dvv), Op::Put { value, context }) => {
                let dot = dvv.write(actor, &context, Some(value), dot_floor(ts));
                // On error the caller drops this state (see `Object::apply_owned`).
                applied.warning = check_siblings(dvv, limits)?;
                effect = Effect::Dot(dot.counter);
            }
            (Value::Siblings(dvv), Op::Delete { context }) => {
                let dot = dvv.write(actor, &context, None, dot_floor(ts));
                effect = Effect::Dot(dot.counter);
            }
            (Value::Lww(cell), Op::PutLww { value }) => {
                *cell = LwwCell::new(ts, actor, Some(value));
            }
            (Value::Lww(cell), Op::Delete { .. }) => {
                *cell = LwwCell::new(ts, actor, None);
            }
            (Value::Counter(c), Op::CounterAdd { delta }) => {
                c.add(actor, delta);
                effect = Effect::Add(delta);
            }
            (Value::Counter(c), Op::Delete { .. }) => c.reset(),
            (Value::Set(s), Op::SetAdd { members }) => {
                effect = Effect::Dot(s.add(actor, members));
            }
            (Value::Set(s), Op::SetRemove { members, context }) => s.remove(members, &context),
            (Value::Set(s), Op::Delete { context }) => s.clear(&context),
            (Value::Map(m), Op::Map(op)) => {
                let field = match &op {
                    MapOp::Increment { field, delta } => {
                        effect = Effect::FieldAdd(field.clone(), *delta);
                        None
                    }
                    MapOp::SetRegister { field, .. } | MapOp::AddMembers { field, .. } => {
                        Some(field.clone())
                    }
                    _ => None,
                };
                if let (Some(counter), Some(field)) = (m.apply(actor, op), field) {
                    effect = Effect::FieldDot(field, counter);
                }
            }
            (Value::Map(m), Op::Delete { context }) => m.clear(&context),
            (Value::Hll(h), Op::HllAdd { items }) => {
                for item in &items {
                    h.0.insert(item);
                }
            }
            (Value::Hll(_), Op::Delete { .. }) => {
                return Err(ObjectError::NotDeletable {
                    policy: Policy::Hll,
                });
            }
            (value, op) => {
                // Unreachable by the policy check in `Object::apply`; kept as a typed
                // error, not a panic.
                return Err(ObjectError::PolicyMismatch {
                    stored: value.policy(),
                    requested: op.policy().unwrap_or(value.policy()),
                });
            }
        }
        Ok((applied, effect))
    }

    fn merge(&mut self, other: &Value) -> Option<Policy> {
        match (&mut *self, other) {
            (Value::Siblings(a), Value::Siblings(b)) => a.merge(b),
            (Value::Lww(a), Value::Lww(b)) => a.merge(b),
            (Value::Counter(a), Value::Counter(b)) => a.merge(b),
            (Value::Set(a), Value::Set(b)) => a.merge(b),
            (Value::Map(a), Value::Map(b)) => a.merge(b),
            (Value::Hll(a), Value::Hll(b)) => {
                // Both sides use the crate's fixed parameters, so this cannot fail.
                let _ = a.0.merge(&b.0);
            }
            (ours, theirs) => {
                let (mine, other_policy) = (ours.policy(), theirs.policy());
                if other_policy > mine {
                    *self = theirs.clone();
                    return Some(mine);
                }
                return Some(other_policy);
            }
        }
        None
    }

    fn read(&self) -> ReadValue {
        match self {
            Value::Siblings(d) => ReadValue::Siblings {
                values: d
                    .values()
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
                context: d.context(),
            },
            Value::Lww(c) => ReadValue::Lww {
                value: c.value.clone().map(serde_bytes::ByteBuf::from),
                ts: c.ts,
            },
            Value::Counter(c) => ReadValue::Counter { value: c.value() },
            Value::Set(s) => ReadValue::Set {
                members: s.members(),
                context: s.context(),
            },
            Value::Map(m) => ReadValue::Map {
                fields: m.read(),
                context: m.context(),
            },
            Value::Hll(h) => ReadValue::Hll {
                estimate: h.0.clone().estimate(),
            },
        }
    }

    fn is_tombstone(&self) -> bool {
        match self {
            Value::Siblings(d) => d.is_tombstone(),
            Value::Lww(c) => c.value.is_none(),
            _ => false,
        }
    }

    fn sibling_count(&self) -> usize {
        match self {
            Value::Siblings(d) => d.siblings().len(),
            _ => 1,
        }
    }
}

impl From<Value> for Object {
    fn from(value: Value) -> Object {
        Object {
            value,
            applied: AppliedIds::default(),
        }
    }
}

impl Op {
    /// The policy this operation belongs to; `None` for a delete, which fits any.
    pub fn policy(&self) -> Option<Policy> {
        match self {
            Op::Put { .. } => Some(Policy::Siblings),
            Op::PutLww { .. } => Some(Policy::Lww),
            Op::Delete { .. } => None,
            Op::CounterAdd { .. } => Some(Policy::Counter),
            Op::SetAdd { .. } | Op::SetRemove { .. } => Some(Policy::Set),
            Op::Map(_) => Some(Policy::Map),
            Op::HllAdd { .. } => Some(Policy::Hll),
        }
    }

    fn check_size(&self) -> Result<(), ObjectError> {
        let too_large = |what: &str, len: usize, limit: usize| {
            if len > limit {
                Err(ObjectError::TooLarge {
                    what: what.to_string(),
                    len,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        let strings = |what: &str, items: &[String]| -> Result<(), ObjectError> {
            too_large(what, items.len(), OP_ITEMS_MAX)?;
            items
                .iter()
                .try_for_each(|m| too_large("a member", m.len(), VALUE_BYTES_MAX))
        };
        match self {
            Op::Put { value, .. } | Op::PutLww { value } => {
                too_large("the value", value.len(), VALUE_BYTES_MAX)
            }
            Op::SetAdd { members } | Op::SetRemove { members, .. } => {
                strings("the member list", members)
            }
            Op::Map(MapOp::SetRegister { field, value }) => {
                too_large("the field name", field.len(), VALUE_BYTES_MAX)?;
                too_large("the value", value.len(), VALUE_BYTES_MAX)
            }
            Op::Map(MapOp::AddMembers { members, .. } | MapOp::RemoveMembers { members, .. }) => {
                strings("the member list", members)
            }
            Op::HllAdd { items } => {
                too_large("the item list", items.len(), OP_ITEMS_MAX)?;
                items
                    .iter()
                    .try_for_each(|i| too_large("an item", i.len(), VALUE_BYTES_MAX))
            }
            Op::Delete { .. } | Op::CounterAdd { .. } | Op::Map(_) => Ok(()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            siblings_warn: SIBLINGS_WARN_DEFAULT,
            siblings_max: SIBLINGS_MAX_DEFAULT,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown policy '{s}': use siblings, lww, counter, set, map or hll")
            })
    }
}

/// Two sketches are equal when they estimate the same count and absorb each other: the
/// representation (sparse or dense) may differ for equal registers.
impl TryFrom<ringkv_sketches::Hll> for HllObj {
    type Error = String;

    fn try_from(hll: ringkv_sketches::Hll) -> Result<HllObj, String> {
        let p = hll.precision();
        if p != ringkv_sketches::HLL_PRECISION {
            return Err(format!(
                "an hll object has precision {p}, but the hll policy uses {}",
                ringkv_sketches::HLL_PRECISION
            ));
        }
        Ok(HllObj(hll))
    }
}

impl From<HllObj> for ringkv_sketches::Hll {
    fn from(obj: HllObj) -> ringkv_sketches::Hll {
        obj.0
    }
}

impl PartialEq for HllObj {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.0.clone(), other.0.clone());
        let (ea, eb) = (a.estimate(), b.estimate());
        ea == eb
            && a.merge(&other.0).is_ok()
            && a.estimate() == ea
            && b.merge(&self.0).is_ok()
            && b.estimate() == eb
    }
}

/// The (actor, dot counter) each application wrote, in actor order.
fn all_dots(
    applications: &[(ActorId, applied::Application)],
) -> impl Iterator<Item = (ActorId, u64)> + '_ {
    applications
        .iter()
        .filter_map(|(actor, app)| match app.effect {
            Effect::Dot(counter) => Some((*actor, counter)),
            _ => None,
        })
}

fn check_siblings(dvv: &Dvv, limits: &Limits) -> Result<Option<String>, ObjectError> {
    let count = dvv.siblings().len();
    if count > limits.siblings_max {
        return Err(ObjectError::TooManySiblings {
            count,
            limit: limits.siblings_max,
        });
    }
    Ok((count > limits.siblings_warn).then(|| {
        format!(
            "the key has {count} siblings (warning at {}, limit {}); read it and write back with its context to resolve them",
            limits.siblings_warn, limits.siblings_max
        )
    }))
}

#[cfg(test)]
mod tests;
