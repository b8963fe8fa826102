//! A version digest per object: equal states give equal digests on every replica.
//!
//! Anti-entropy compares replicas by hashing `key ‖ version digest`, so the digest must
//! not depend on in-memory layout. Most policies encode canonically (sorted maps and
//! vectors), so the digest is xxh3 of their msgpack. The `crdts` OR-set keeps hash maps,
//! so its digest is taken over a sorted view (clock, then each member with its dots).
//! A HyperLogLog may be sparse or dense for the same registers; its digest is its
//! estimate, so two sketches that estimate alike count as equal — an approximation that
//! suits a structure which is itself an estimate.

use twox_hash::XxHash3_64;

use super::{Object, SetObj, Value};

/// Digest input reserved up front: a small object's encoding fits without regrowing.
const DIGEST_INPUT_PREALLOC_BYTES: usize = 256;

/// The version digest of `object` ([`Object::digest`]).
pub(super) fn digest(object: &Object) -> u64 {
    // The policy byte, then the msgpack, in one buffer: every write digests the old
    // and the new object, so the encoding goes straight where it is hashed.
    let mut input = Vec::with_capacity(DIGEST_INPUT_PREALLOC_BYTES);
    input.push(object.policy() as u8);
    let encoded = match object.value() {
        Value::Siblings(d) => rmp_serde::encode::write(&mut input, d),
        Value::Lww(c) => rmp_serde::encode::write(&mut input, c),
        Value::Counter(c) => rmp_serde::encode::write(&mut input, c),
        Value::Map(m) => rmp_serde::encode::write(&mut input, m),
        Value::Set(s) => rmp_serde::encode::write(&mut input, &set_view(s)),
        Value::Hll(h) => rmp_serde::encode::write(&mut input, &h.0.clone().estimate()),
    };
    // The applied ids are state too: two copies that differ only there must still
    // exchange them, or a repeat one of them knows could go uncancelled on the other.
    let encoded = encoded.and_then(|()| {
        if object.applied().is_empty() {
            Ok(())
        } else {
            rmp_serde::encode::write(&mut input, object.applied())
        }
    });
    // Encoding these plain values into a Vec cannot fail; if it ever did, hash the
    // policy byte alone, as the digest always has.
    if encoded.is_err() {
        input.truncate(1);
    }
    XxHash3_64::oneshot(&input)
}

/// A version vector as sorted (actor, counter) pairs.
type Dots = Vec<(u64, u64)>;

/// The OR-set in sorted form: its clock and each member with the clock of its dots.
fn set_view(s: &SetObj) -> (Dots, Vec<(String, Dots)>) {
    let inner = s.inner();
    let clock = inner.clock().dots.iter().map(|(a, c)| (a.0, *c)).collect();
    let mut members: Vec<(String, Dots)> = inner
        .iter()
        .map(|entry| {
            let dots = entry.rm_clock.dots.iter().map(|(a, c)| (a.0, *c)).collect();
            (entry.val.clone(), dots)
        })
        .collect();
    members.sort();
    (clock, members)
}

#[cfg(test)]
mod tests {
    use crate::core::object::clock::{ActorId, Timestamp};
    use crate::core::object::{Limits, Object, Op};

    fn apply(obj: Option<&Object>, op: Op, actor: u64) -> Object {
        Object::apply(
            obj,
            op,
            None,
            ActorId(actor),
            Timestamp::default(),
            &Limits::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn equal_sets_built_in_different_orders_have_equal_digests() {
        let names: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
        let mut a = apply(None, Op::SetAdd { members: vec![] }, 1);
        let mut b = a.clone();
        for m in &names {
            a = apply(
                Some(&a),
                Op::SetAdd {
                    members: vec![m.clone()],
                },
                1,
            );
        }
        let x = a.clone();
        b.merge(&x);
        assert_eq!(a.digest(), b.digest());
        let c = apply(
            Some(&a),
            Op::SetAdd {
                members: vec!["new".into()],
            },
            2,
        );
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn a_write_changes_the_digest_and_policies_never_collide_on_empty() {
        let a = apply(None, Op::CounterAdd { delta: 1 }, 1);
        let b = apply(Some(&a), Op::CounterAdd { delta: 1 }, 1);
        assert_ne!(a.digest(), b.digest());
        let empties: std::collections::BTreeSet<u64> = crate::core::object::Policy::ALL
            .iter()
            .map(|p| Object::empty(*p).digest())
            .collect();
        assert_eq!(empties.len(), 6);
    }
}
