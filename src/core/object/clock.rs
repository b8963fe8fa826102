//! Time for last-writer-wins, and the identity of whoever writes.
//!
//! LWW needs timestamps that never run backwards on one node and that move past any
//! timestamp the node has seen, or a causally later write can lose to an earlier one
//! when wall clocks are skewed. A hybrid logical clock gives exactly that while staying
//! close to wall time. It is fed the wall-clock reading the driver passes in (`now`), so
//! the simulator can invent skewed clocks and the core never reads the system time.
//!
//! Actors are the writers that own dots in version vectors. They are nodes, never
//! clients, and they are random per data directory: a node that loses its disk comes back
//! as a new actor, so it can never reuse a dot it handed out before.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How far ahead of our own wall clock a received timestamp may be before we refuse to
/// drag our clock to it (a peer with a wildly wrong clock must not poison ours).
pub const DRIFT_MS_MAX: u64 = 60_000;

/// A writer's identity in dots and version vectors.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId(pub u64);

/// A hybrid logical timestamp: wall milliseconds, then a logical counter for events in
/// the same millisecond. Ordered lexicographically.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Wall-clock milliseconds since the Unix epoch; the stamping node's HLC may run ahead
    /// of its own wall clock after it observed a peer's timestamp.
    pub wall_ms: u64,
    /// Orders events within the same `wall_ms`; reset to 0 when `wall_ms` advances.
    pub logical: u32,
}

/// A hybrid logical clock.
#[derive(Clone, Debug, Default)]
pub struct Hlc {
    last: Timestamp,
}

/// Errors from the clock layer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClockError {
    #[error(
        "a peer's timestamp {remote_ms} ms is {ahead_ms} ms ahead of our wall clock (limit {DRIFT_MS_MAX} ms); check NTP on that node"
    )]
    /// A peer's timestamp is beyond the drift limit; the HLC did not move (the data
    /// itself still merges).
    TooFarAhead { remote_ms: u64, ahead_ms: u64 },
    #[error("'{0}' is not an actor id: expected 16 hex digits")]
    /// The text (kept as given) is not an actor id.
    BadActorId(String),
}

impl ActorId {
    /// A fresh random actor id, drawn from the RNG the caller owns (the node driver uses
    /// the OS RNG once per data directory; the simulator uses its seeded RNG).
    pub fn random(rng: &mut impl RngCore) -> ActorId {
        ActorId(rng.next_u64())
    }
}

impl Hlc {
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// The last timestamp handed out or observed.
    #[cfg(test)]
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A timestamp for a local event, strictly greater than every earlier one, given the
    /// node's wall clock reading. A wall clock that jumps backwards only stalls the wall
    /// part; the logical part keeps it moving forward.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        self.last = if wall_ms > self.last.wall_ms {
            Timestamp {
                wall_ms,
                logical: 0,
            }
        } else {
            self.successor()
        };
        self.last
    }

    /// Takes in a timestamp from another node so that our next local timestamp is past
    /// it. Refused (state unchanged) when it is implausibly far ahead of our wall clock.
    pub fn observe(&mut self, remote: Timestamp, wall_ms: u64) -> Result<(), ClockError> {
        let ahead_ms = remote.wall_ms.saturating_sub(wall_ms);
        if ahead_ms > DRIFT_MS_MAX {
            return Err(ClockError::TooFarAhead {
                remote_ms: remote.wall_ms,
                ahead_ms,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }

    fn successor(&self) -> Timestamp {
        match self.last.logical.checked_add(1) {
            Some(logical) => Timestamp {
                wall_ms: self.last.wall_ms,
                logical,
            },
            // 4 billion events in one millisecond: borrow the next millisecond.
            None => Timestamp {
                wall_ms: self.last.wall_ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "actor:{:016x}", self.0)
    }
}

impl FromStr for ActorId {
    type Err = ClockError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(ClockError::BadActorId(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(ActorId)
            .map_err(|_| ClockError::BadActorId(s.to_string()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn actor_ids_round_trip_through_text() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let a = ActorId::random(&mut rng);
        assert_eq!(a.to_string().parse::<ActorId>().unwrap(), a);
        assert!("xyz".parse::<ActorId>().is_err());
        assert_ne!(a, ActorId::random(&mut rng));
    }

    #[test]
    fn a_far_future_timestamp_is_refused_without_moving_the_clock() {
        let mut hlc = Hlc::new();
        let t = hlc.now(1_000);
        let far = Timestamp {
            wall_ms: 1_000 + DRIFT_MS_MAX + 1,
            logical: 0,
        };
        assert!(matches!(
            hlc.observe(far, 1_000),
            Err(ClockError::TooFarAhead { .. })
        ));
        assert_eq!(hlc.last(), t);
    }

    proptest! {
        #[test]
        fn stays_monotone_when_the_wall_clock_jumps_backwards(
            readings in proptest::collection::vec(0u64..10_000, 1..200)
        ) {
            let mut hlc = Hlc::new();
            let mut prev = None;
            for wall in readings {
                let t = hlc.now(wall);
                if let Some(p) = prev {
                    prop_assert!(t > p, "{t} not after {p}");
                }
                prop_assert!(t.wall_ms >= wall);
                prev = Some(t);
            }
        }

        #[test]
        fn moves_past_every_received_timestamp(
            events in proptest::collection::vec((0u64..10_000, proptest::option::of((0u64..10_000, 0u32..5))), 1..200)
        ) {
            let mut hlc = Hlc::new();
            for (wall, remote) in events {
                if let Some((rw, rl)) = remote {
                    let remote = Timestamp { wall_ms: rw, logical: rl };
                    let accepted = hlc.observe(remote, wall).is_ok();
                    let next = hlc.now(wall);
                    if accepted {
                        prop_assert!(next > remote, "{next} not after received {remote}");
                    }
                } else {
                    hlc.now(wall);
                }
            }
        }
    }
}
