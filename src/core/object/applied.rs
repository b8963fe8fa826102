//! Operation ids, and the set of ids an object has applied.
//!
//! A client that did not hear back from a write cannot know whether it was applied, so
//! it retries with the same [`OpId`]. For the retry to be harmless wherever it lands, the
//! memory of applied ids travels inside the replicated object: a coordinator that
//! receives an id its copy already lists does not apply it again.
//!
//! That alone cannot catch a retry that reaches a coordinator whose copy has not yet
//! heard of the first application (the first coordinator died before replicating, or
//! replicated to other nodes). Both applications then happen, and each records which
//! actor applied the id and what it produced. When the two copies meet, the merge finds
//! the id listed by two actors and reconciles the applications (see
//! `Object::cancel_duplicates`): a counter folds the excess into a correction, and the
//! dots the applications wrote become aliases of one write. It does so the same way on
//! every replica, so the value converges to "applied once" whatever the order of merges.
//!
//! The set is a join-semilattice: a map from id to the applications seen (union), plus
//! a horizon (maximum) below which applications are forgotten. Each application is kept
//! or dropped by its own timestamp, so filtering commutes with union. The horizon
//! follows the newest application (`APPLIED_AGE_MS` behind it) and rises further when
//! the set holds more than `APPLIED_IDS_MAX` ids. A retry later than that may apply
//! again; clients retry within their request deadline, far inside both bounds.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::object::clock::{ActorId, Timestamp};

/// How long after the newest application an applied id is remembered.
pub const APPLIED_AGE_MS: u64 = 10 * 60 * 1000;
/// Most ids one object remembers; older ones are forgotten first.
pub const APPLIED_IDS_MAX: usize = 256;

/// A client operation's identity: the client's random id and its own sequence number.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct OpId {
    /// Random per client instance, so two clients never share ids.
    pub client: u64,
    /// Increases with every operation the client sends; a retry reuses it.
    pub seq: u64,
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{}", self.client, self.seq)
    }
}

/// The ids an object has applied, with who applied each and what it produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedIds {
    /// Applications stamped before this are forgotten.
    horizon: Timestamp,
    /// Every remembered id, with its applications by actor.
    ids: BTreeMap<OpId, BTreeMap<ActorId, Application>>,
}

/// One coordinator's application of an id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Application {
    /// The coordinator's HLC stamp for the write.
    pub ts: Timestamp,
    /// What the write produced that a second application would repeat.
    pub effect: Effect,
}

/// What an application produced, as far as a duplicate must be cancelled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Effect {
    /// Nothing a repeat would change: the operation is idempotent in value (a
    /// last-writer-wins put, removes, deletes, sketch adds).
    Idempotent,
    /// A counter increment by this amount.
    Add(i64),
    /// A `siblings` value, or a set add, written under this dot counter of the applying
    /// actor.
    Dot(u64),
    /// A map field's counter incremented by this amount.
    FieldAdd(String, i64),
    /// A map field's register value or set add, written under this dot counter of the
    /// applying actor.
    FieldDot(String, u64),
}

/// An id applied by more than one coordinator: every application, in actor order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// The operation.
    pub id: OpId,
    /// Its applications; at least two.
    pub applications: Vec<(ActorId, Application)>,
}

impl AppliedIds {
    /// True when some coordinator already applied `id` to this copy.
    pub fn contains(&self, id: &OpId) -> bool {
        self.ids.contains_key(id)
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records that `actor` applied `id` at `ts`, then forgets what the bounds allow.
    pub fn record(&mut self, id: OpId, actor: ActorId, application: Application) {
        let ts = application.ts;
        self.ids.entry(id).or_default().insert(actor, application);
        let aged = Timestamp {
            wall_ms: ts.wall_ms.saturating_sub(APPLIED_AGE_MS),
            logical: 0,
        };
        self.horizon = self.horizon.max(aged);
        self.forget_old();
    }

    /// Joins another copy's set into this one: union of applications, highest horizon.
    pub fn merge(&mut self, other: &AppliedIds) {
        self.horizon = self.horizon.max(other.horizon);
        for (id, apps) in &other.ids {
            let mine = self.ids.entry(*id).or_default();
            for (actor, app) in apps {
                match mine.get_mut(actor) {
                    // One actor applies an id once; should two records ever differ, the
                    // larger wins on every replica alike.
                    Some(have) if &*have >= app => {}
                    Some(have) => *have = app.clone(),
                    None => {
                        mine.insert(*actor, app.clone());
                    }
                }
            }
        }
        self.forget_old();
    }

    /// Ids applied by more than one coordinator.
    pub fn duplicates(&self) -> impl Iterator<Item = Duplicate> + '_ {
        self.ids
            .iter()
            .filter(|(_, apps)| apps.len() > 1)
            .map(|(id, apps)| Duplicate {
                id: *id,
                applications: apps.iter().map(|(a, app)| (*a, app.clone())).collect(),
            })
    }

    /// Drops applications below the horizon, after raising it past the oldest ids when
    /// there are more than `APPLIED_IDS_MAX`. The raise depends only on the union of what
    /// was seen (adding ids can only raise it), so it commutes with merge.
    fn forget_old(&mut self) {
        if self.ids.len() > APPLIED_IDS_MAX {
            let mut newest: Vec<Timestamp> = self
                .ids
                .values()
                .filter_map(|apps| apps.values().map(|a| a.ts).max())
                .collect();
            newest.sort_unstable();
            let excess = self.ids.len() - APPLIED_IDS_MAX;
            if let Some(last_gone) = newest.get(excess - 1) {
                let past = Timestamp {
                    wall_ms: last_gone.wall_ms,
                    logical: last_gone.logical.saturating_add(1),
                };
                self.horizon = self.horizon.max(past);
            }
        }
        let horizon = self.horizon;
        self.ids.retain(|_, apps| {
            apps.retain(|_, app| app.ts >= horizon);
            !apps.is_empty()
        });
        debug_assert!(
            self.ids.len() <= APPLIED_IDS_MAX,
            "the applied set holds {} ids, over its limit {APPLIED_IDS_MAX}",
            self.ids.len()
        );
    }
}

impl Duplicate {
    /// The actor that stands in for this id's cancelled repeats in counter state: a pure
    /// function of the id, so every replica folds the same correction under the same
    /// entry and a per-actor maximum keeps it once.
    pub fn correction_actor(&self) -> ActorId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.id.client.to_le_bytes());
        bytes[8..].copy_from_slice(&self.id.seq.to_le_bytes());
        ActorId(twox_hash::XxHash3_64::oneshot(&bytes))
    }

    /// Applications after the first, which the merge cancels.
    pub fn repeats(&self) -> u64 {
        self.applications.len().saturating_sub(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(wall_ms: u64) -> Timestamp {
        Timestamp {
            wall_ms,
            logical: 0,
        }
    }

    fn app(wall_ms: u64) -> Application {
        Application {
            ts: ts(wall_ms),
            effect: Effect::Idempotent,
        }
    }

    fn id(seq: u64) -> OpId {
        OpId { client: 1, seq }
    }

    #[test]
    fn the_oldest_ids_are_forgotten_past_the_count_limit() {
        let mut set = AppliedIds::default();
        let total = APPLIED_IDS_MAX as u64 + 10;
        for seq in 0..total {
            set.record(id(seq), ActorId(1), app(1_000 + seq));
        }
        assert_eq!(set.len(), APPLIED_IDS_MAX);
        assert!(!set.contains(&id(9)), "the oldest ten are gone");
        assert!(set.contains(&id(10)) && set.contains(&id(total - 1)));
    }

    #[test]
    fn ids_older_than_the_age_limit_are_forgotten() {
        let mut set = AppliedIds::default();
        set.record(id(1), ActorId(1), app(1_000));
        set.record(id(2), ActorId(1), app(1_000 + APPLIED_AGE_MS - 1));
        assert!(set.contains(&id(1)));
        set.record(id(3), ActorId(1), app(1_001 + APPLIED_AGE_MS));
        assert!(!set.contains(&id(1)));
        assert!(set.contains(&id(2)) && set.contains(&id(3)));
    }

    #[test]
    fn merge_is_a_lattice_across_horizons() {
        let mut a = AppliedIds::default();
        a.record(id(1), ActorId(1), app(10));
        a.record(id(2), ActorId(1), app(APPLIED_AGE_MS + 20));
        let mut b = AppliedIds::default();
        b.record(id(1), ActorId(2), app(APPLIED_AGE_MS + 5));
        b.record(id(3), ActorId(2), app(15));
        let mut c = AppliedIds::default();
        c.record(id(2), ActorId(3), app(40));
        let join = |x: &AppliedIds, y: &AppliedIds| {
            let mut z = x.clone();
            z.merge(y);
            z
        };
        assert_eq!(join(&a, &b), join(&b, &a));
        assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
        assert_eq!(join(&a, &a), a);
        let all = join(&join(&a, &b), &c);
        // id 1: only the application above the horizon is left; id 3 is forgotten.
        assert_eq!(
            all.duplicates().count(),
            1,
            "id 2 applied by actors 1 and 3"
        );
        assert!(!all.contains(&id(3)));
    }
}
