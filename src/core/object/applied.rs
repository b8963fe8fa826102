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
//! the id listed by two actors and cancels all but one application (see
//! `Object::cancel_duplicates`), the same way on every replica, so the value converges to
//! "applied once" whatever the order of merges.
//!
//! The set is a join-semilattice: a map from id to the applications seen (union), plus
//! a horizon (maximum) below which applications are forgotten. Each application is kept
//! or dropped by its own timestamp, so filtering commutes with union. The horizon
//! follows the newest application (`APPLIED_AGE_MS` behind it) and rises further when
//! the set holds more than `APPLIED_IDS_MAX` ids. A retry later than that may apply
//! again; clients retry within their request deadline, far inside both bounds.

use std::fmt;

use serde::{Deserialize, Serialize};

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
