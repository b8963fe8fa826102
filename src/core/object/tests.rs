//! Lattice laws for every policy, and the cross-policy rules.

use super::*;
use crate::core::object::clock::Hlc;
use proptest::prelude::*;

const REPLICAS: usize = 3;

/// One step of a random history over three replicas.
#[derive(Clone, Debug)]
enum Step {
    /// Replica `r` applies an operation built from `n` (and its own current context).
    Write { r: usize, n: u8, use_ctx: bool },
    /// Replica `to` merges replica `from`'s state.
    Merge { from: usize, to: usize },
    /// Replica `r` applies again an earlier write (`k`, modulo the writes so far), with
    /// the same operation id: a client's retry through another coordinator.
    Retry { r: usize, k: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..REPLICAS, any::<u8>(), any::<bool>()).prop_map(|(r, n, use_ctx)| Step::Write { r, n, use_ctx }),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Merge { from, to }),
        1 => (0..REPLICAS, any::<usize>()).prop_map(|(r, k)| Step::Retry { r, k }),
    ]
}

fn op_for(policy: Policy, obj: &Object, n: u8, use_ctx: bool) -> Op {
    let ctx = if use_ctx {
        match obj.read() {
            ReadValue::Siblings { context, .. }
            | ReadValue::Set { context, .. }
            | ReadValue::Map { context, .. } => context,
            _ => Context::empty(),
        }
    } else {
        Context::empty()
    };
    let member = format!("m{}", n % 5);
    match policy {
        Policy::Siblings if n % 7 == 0 => Op::Delete { context: ctx },
        Policy::Siblings => Op::Put {
            value: vec![n],
            context: ctx,
        },
        Policy::Lww if n % 7 == 0 => Op::Delete { context: ctx },
        Policy::Lww => Op::PutLww { value: vec![n] },
        Policy::Counter if n % 11 == 0 => Op::Delete { context: ctx },
        Policy::Counter => Op::CounterAdd {
            delta: n as i64 - 100,
        },
        Policy::Set if n % 3 == 0 => Op::SetRemove {
            members: vec![member],
            context: ctx,
        },
        Policy::Set => Op::SetAdd {
            members: vec![member],
        },
        Policy::Map => Op::Map(match n % 5 {
            0 => MapOp::SetRegister {
                field: format!("f{}", n % 3),
                value: format!("v{n}"),
            },
            1 => MapOp::Increment {
                field: format!("f{}", n % 3),
                delta: n as i64,
            },
            2 => MapOp::AddMembers {
                field: format!("f{}", n % 3),
                members: vec![member],
            },
            3 => MapOp::RemoveMembers {
                field: format!("f{}", n % 3),
                members: vec![member],
            },
            _ => MapOp::RemoveField {
                field: format!("f{}", n % 3),
                context: ctx,
            },
        }),
        Policy::Hll => Op::HllAdd {
            items: vec![vec![n], vec![n / 2]],
        },
    }
}

/// Runs a history and returns the replicas' final states.
fn run(policy: Policy, steps: &[Step]) -> Vec<Object> {
    run_logged(policy, steps).0
}

/// Runs a history; also returns every distinct operation written, with its id (every
/// write carries one, so retries may repeat any of them).
fn run_logged(policy: Policy, steps: &[Step]) -> (Vec<Object>, Vec<(Op, OpId)>) {
    let limits = Limits {
        siblings_warn: 1000,
        siblings_max: 1000,
    };
    let mut replicas = vec![Object::empty(policy); REPLICAS];
    let mut clocks = vec![Hlc::new(); REPLICAS];
    let mut log: Vec<(Op, OpId)> = Vec::new();
    for (t, s) in steps.iter().enumerate() {
        let (r, op, id) = match *s {
            Step::Write { r, n, use_ctx } => {
                let op = op_for(policy, &replicas[r], n, use_ctx);
                let id = OpId {
                    client: 7,
                    seq: t as u64,
                };
                log.push((op.clone(), id));
                (r, op, id)
            }
            Step::Retry { r, k } => {
                let Some((op, id)) = log.get(k.checked_rem(log.len()).unwrap_or(0)) else {
                    continue;
                };
                (r, op.clone(), *id)
            }
            Step::Merge { from, to } => {
                let src = replicas[from].clone();
                assert_eq!(replicas[to].merge(&src), None);
                continue;
            }
        };
        let ts = clocks[r].now(t as u64 / 3);
        let (next, _) = Object::apply(
            Some(&replicas[r]),
            op,
            Some(id),
            ActorId(r as u64 + 1),
            ts,
            &limits,
        )
        .expect("ops of the object's own policy apply");
        replicas[r] = next;
    }
    (replicas, log)
}

fn joined(a: &Object, b: &Object) -> Object {
    let mut x = a.clone();
    x.merge(b);
    x
}

/// Checks the lattice laws on what readers see, and also on the stored state where the
/// representation is canonical. A HyperLogLog may be sparse or dense for the same
/// registers, so for `hll` equal contents need not be equal bytes.
fn check_laws(policy: Policy, steps: &[Step]) -> Result<(), TestCaseError> {
    let r = run(policy, steps);
    let (a, b, c) = (&r[0], &r[1], &r[2]);
    let canonical = policy != Policy::Hll;
    prop_assert_eq!(joined(a, b).read(), joined(b, a).read(), "commutative");
    prop_assert_eq!(
        joined(&joined(a, b), c).read(),
        joined(a, &joined(b, c)).read(),
        "associative"
    );
    prop_assert_eq!(joined(a, a).read(), a.read(), "idempotent");
    if canonical {
        prop_assert_eq!(joined(a, b), joined(b, a), "commutative (state)");
        prop_assert_eq!(
            joined(&joined(a, b), c),
            joined(a, &joined(b, c)),
            "associative (state)"
        );
        prop_assert_eq!(joined(a, a), a.clone(), "idempotent (state)");
    }
    // convergence: everyone merging everyone in another order reads the same
    let all = joined(&joined(a, b), c);
    let all2 = joined(&joined(c, a), b);
    prop_assert_eq!(all.read(), all2.read(), "convergence");
    Ok(())
}

/// A set add applied by two coordinators, then removed with the context of a read that
/// saw only the first application: the member is gone once the copies meet.
#[test]
fn a_remove_that_saw_the_first_application_of_a_repeated_add_removes_the_member() {
    let limits = Limits::default();
    let ts = Timestamp::default();
    let id = Some(OpId { client: 3, seq: 1 });
    let add = || Op::SetAdd {
        members: vec!["x".into()],
    };
    let (first, _) = Object::apply(None, add(), id, ActorId(1), ts, &limits).unwrap();
    let (repeat, _) = Object::apply(None, add(), id, ActorId(2), ts, &limits).unwrap();
    let ReadValue::Set { context, .. } = first.read() else {
        panic!("a set reads as a set");
    };
    let remove = Op::SetRemove {
        members: vec!["x".into()],
        context,
    };
    let (removed, _) = Object::apply(Some(&first), remove, None, ActorId(1), ts, &limits).unwrap();
    for (a, b) in [(&removed, &repeat), (&repeat, &removed)] {
        let merged = joined(a, b);
        let ReadValue::Set { members, .. } = merged.read() else {
            panic!("a set reads as a set");
        };
        assert!(members.is_empty(), "{members:?}");
    }
}

/// The same history with every write's `n` mapped, to pick one kind of operation.
fn with_writes(steps: &[Step], f: impl Fn(u8) -> u8) -> Vec<Step> {
    steps
        .iter()
        .map(|s| match *s {
            Step::Write { r, n, use_ctx } => Step::Write {
                r,
                n: f(n),
                use_ctx,
            },
            ref other => other.clone(),
        })
        .collect()
}

/// Every replica merged with every other: what the cluster converges to.
fn converged(replicas: &[Object]) -> Object {
    replicas
        .iter()
        .fold(replicas[0].clone(), |acc, r| joined(&acc, r))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However retries land (the same replica, another replica before or after it heard
    /// of the first application), the converged counter counts each operation once.
    #[test]
    fn retried_counter_increments_count_once(
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        // No deletes: a reset is not an increment to count.
        let steps = with_writes(&steps, |n| if n % 11 == 0 { n + 1 } else { n });
        let (replicas, log) = run_logged(Policy::Counter, &steps);
        let expected: i64 = log
            .iter()
            .map(|(op, _)| match op {
                Op::CounterAdd { delta } => *delta,
                _ => 0,
            })
            .sum();
        let all = converged(&replicas);
        prop_assert_eq!(all.read(), ReadValue::Counter { value: expected });
    }

    /// A retried put never leaves its value twice among the siblings.
    #[test]
    fn a_retried_put_is_one_sibling(steps in proptest::collection::vec(step(), 0..60)) {
        let (replicas, _) = run_logged(Policy::Siblings, &steps);
        let all = converged(&replicas);
        let ReadValue::Siblings { values, .. } = all.read() else {
            return Err(TestCaseError::fail("a siblings object reads as siblings"));
        };
        let mut distinct = values.clone();
        distinct.sort();
        distinct.dedup();
        // Two different writes may carry the same byte; a repeat of one write may not.
        let writes_per_value = |v: &serde_bytes::ByteBuf| {
            steps.iter().filter(|s| matches!(s, Step::Write { n, .. } if vec![*n] == v.to_vec())).count()
        };
        for v in &distinct {
            let copies = values.iter().filter(|x| *x == v).count();
            prop_assert!(copies <= writes_per_value(v), "{v:?} appears {copies} times");
        }
    }

    /// Map field counters and registers are cancelled the same way.
    #[test]
    fn retried_map_increments_count_once(steps in proptest::collection::vec(step(), 0..60)) {
        // Increments only (`op_for` picks `Increment` for n % 5 == 1).
        let steps = with_writes(&steps, |n| (n % 50) * 5 + 1);
        let (replicas, log) = run_logged(Policy::Map, &steps);
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for (op, _) in &log {
            if let Op::Map(MapOp::Increment { field, delta }) = op {
                *expected.entry(field.clone()).or_default() += delta;
            }
        }
        let ReadValue::Map { fields, .. } = converged(&replicas).read() else {
            return Err(TestCaseError::fail("a map reads as a map"));
        };
        for (field, sum) in expected {
            prop_assert_eq!(fields.get(&field).and_then(|f| f.counter), Some(sum));
        }
    }

    #[test]
    fn siblings_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Siblings, &steps)?;
    }

    #[test]
    fn lww_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Lww, &steps)?;
    }

    #[test]
    fn counter_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Counter, &steps)?;
    }

    #[test]
    fn set_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Set, &steps)?;
    }

    #[test]
    fn map_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Map, &steps)?;
    }

    #[test]
    fn hll_merge_is_a_lattice(steps in proptest::collection::vec(step(), 0..40)) {
        check_laws(Policy::Hll, &steps)?;
    }

    #[test]
    fn cross_policy_merge_is_still_commutative(p in 0usize..6, q in 0usize..6, steps in proptest::collection::vec(step(), 0..12)) {
        let a = run(Policy::ALL[p], &steps).remove(0);
        let b = run(Policy::ALL[q], &steps).remove(1);
        prop_assert_eq!(joined(&a, &b).read(), joined(&b, &a).read());
    }
}

#[test]
fn an_operation_of_another_policy_is_refused_naming_both() {
    let limits = Limits::default();
    let ts = Timestamp::default();
    let (counter, _) = Object::apply(
        None,
        Op::CounterAdd { delta: 1 },
        None,
        ActorId(1),
        ts,
        &limits,
    )
    .unwrap();
    let err = Object::apply(
        Some(&counter),
        Op::SetAdd {
            members: vec!["x".into()],
        },
        None,
        ActorId(1),
        ts,
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ObjectError::PolicyMismatch {
            stored: Policy::Counter,
            requested: Policy::Set
        }
    );
    let text = err.to_string();
    assert!(text.contains("counter") && text.contains("set"), "{text}");
}

#[test]
fn the_sibling_hard_limit_refuses_the_write_and_the_warning_fires_before_it() {
    let limits = Limits {
        siblings_warn: 2,
        siblings_max: 3,
    };
    let ts = Timestamp::default();
    let put = |obj: Option<&Object>| {
        Object::apply(
            obj,
            Op::Put {
                value: b"v".to_vec(),
                context: Context::empty(),
            },
            None,
            ActorId(1),
            ts,
            &limits,
        )
    };
    let (o1, a1) = put(None).unwrap();
    assert!(a1.warning.is_none());
    let (o2, _) = put(Some(&o1)).unwrap();
    let (o3, a3) = put(Some(&o2)).unwrap();
    assert!(a3.warning.unwrap().contains("3 siblings"));
    assert!(matches!(
        put(Some(&o3)),
        Err(ObjectError::TooManySiblings { count: 4, limit: 3 })
    ));
}

#[test]
fn a_delete_of_an_unknown_key_loses_to_real_data_of_another_policy() {
    let limits = Limits::default();
    let ts = Timestamp::default();
    let (mut tomb, _) = Object::apply(
        None,
        Op::Delete {
            context: Context::empty(),
        },
        None,
        ActorId(1),
        ts,
        &limits,
    )
    .unwrap();
    assert!(tomb.is_tombstone());
    let (counter, _) = Object::apply(
        None,
        Op::CounterAdd { delta: 4 },
        None,
        ActorId(2),
        ts,
        &limits,
    )
    .unwrap();
    assert_eq!(tomb.merge(&counter), Some(Policy::Siblings));
    assert_eq!(tomb.read(), ReadValue::Counter { value: 4 });
}

#[test]
fn hll_objects_refuse_deletes_and_oversized_values_are_refused() {
    let limits = Limits::default();
    let ts = Timestamp::default();
    let (hll, _) = Object::apply(
        None,
        Op::HllAdd {
            items: vec![b"a".to_vec()],
        },
        None,
        ActorId(1),
        ts,
        &limits,
    )
    .unwrap();
    assert!(matches!(
        Object::apply(
            Some(&hll),
            Op::Delete {
                context: Context::empty()
            },
            None,
            ActorId(1),
            ts,
            &limits
        ),
        Err(ObjectError::NotDeletable { .. })
    ));
    assert!(matches!(
        Object::apply(
            None,
            Op::PutLww {
                value: vec![0; VALUE_BYTES_MAX + 1]
            },
            None,
            ActorId(1),
            ts,
            &limits
        ),
        Err(ObjectError::TooLarge { .. })
    ));
}

#[test]
fn an_hll_object_of_another_precision_is_refused_at_decode() {
    let mut standard = HllObj::default();
    standard.0.insert(b"a");
    let bytes = rmp_serde::to_vec(&Object::from(Value::Hll(standard.clone()))).unwrap();
    let back: Object = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, Object::from(Value::Hll(standard)));

    let small = ringkv_sketches::Hll::with_precision(10).unwrap();
    let foreign = rmp_serde::to_vec(&small).unwrap();
    let err = rmp_serde::from_slice::<HllObj>(&foreign).unwrap_err();
    assert!(err.to_string().contains("precision 10"), "{err}");
}
