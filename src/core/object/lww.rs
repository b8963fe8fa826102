//! The `lww` policy: last writer wins on hybrid logical timestamps.
//!
//! Concurrent writes are decided by the highest (timestamp, actor); the others are lost
//! by design, which is the trade-off users pick this policy for. The value itself breaks
//! the (impossible in practice) tie of equal timestamp and actor, so merge stays a total
//! order and therefore commutative, associative and idempotent.

use serde::{Deserialize, Serialize};

use crate::core::object::clock::{ActorId, Timestamp};

/// One cell: the winning write so far. `value: None` is a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwCell {
    pub ts: Timestamp,
    pub actor: ActorId,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

impl LwwCell {
    pub fn new(ts: Timestamp, actor: ActorId, value: Option<Vec<u8>>) -> LwwCell {
        LwwCell { ts, actor, value }
    }

    /// Keeps whichever of the two writes is later.
    pub fn merge(&mut self, other: &LwwCell) {
        if other.rank() > self.rank() {
            *self = other.clone();
        }
    }

    fn rank(&self) -> (Timestamp, ActorId, &Option<Vec<u8>>) {
        (self.ts, self.actor, &self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_higher_timestamp_then_the_higher_actor() {
        let t = |w| Timestamp {
            wall_ms: w,
            logical: 0,
        };
        let mut a = LwwCell::new(t(10), ActorId(1), Some(b"a".to_vec()));
        let b = LwwCell::new(t(11), ActorId(0), Some(b"b".to_vec()));
        a.merge(&b);
        assert_eq!(a.value.as_deref(), Some(&b"b"[..]));
        let c = LwwCell::new(t(11), ActorId(5), Some(b"c".to_vec()));
        a.merge(&c);
        assert_eq!(a.value.as_deref(), Some(&b"c"[..]));
        let older = LwwCell::new(t(3), ActorId(9), Some(b"old".to_vec()));
        a.merge(&older);
        assert_eq!(a.value.as_deref(), Some(&b"c"[..]));
    }
}
