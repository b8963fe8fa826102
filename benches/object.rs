//! What each conflict policy costs per replica exchange and per write.
//!
//! Replication, read repair and anti-entropy all work by "ship the whole object, merge on
//! arrival", and storage and the wire both carry objects as msgpack, so merge and
//! encode/decode are paid on nearly every message; apply is paid once per write at the
//! coordinator. Each policy's objects are built through `Object::apply` with several
//! actors, at sizes a real key plausibly reaches, so the figures compare policies fairly.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringkv::core::object::clock::{ActorId, Timestamp};
use ringkv::core::object::{Context, Limits, MapOp, Object, Op, Policy, ReadValue};

/// Bytes in each `siblings` / `lww` value.
const VALUE_BYTES: usize = 100;
/// Actors that wrote the shared history of `counter`, `set` and `map` objects.
const ACTORS: u64 = 10;
/// Members in the shared history of a `set` (100 per actor).
const SET_MEMBERS: usize = 1000;
/// Members each replica adds (and, on one side, removes) after the replicas diverge.
const SET_DIVERGENT: usize = 10;
/// Fields of a `map`.
const MAP_FIELDS: usize = 20;
/// Distinct items across both `hll` replicas (they overlap by a fifth).
const HLL_ITEMS: usize = 10_000;

/// The two divergent replicas of one policy's object, and the state they merge to.
struct Replicas {
    policy: Policy,
    a: Object,
    b: Object,
    merged: Object,
}

/// Applies a write that the bench's own construction guarantees is valid.
fn apply(existing: Option<&Object>, op: Op, actor: u64, wall_ms: u64) -> Object {
    let limits = Limits::default();
    let ts = Timestamp {
        wall_ms,
        logical: 0,
    };
    match Object::apply(existing, op, None, ActorId(actor), ts, &limits) {
        Ok((obj, _)) => obj,
        Err(e) => panic!("bench write by actor {actor} was refused: {e}"),
    }
}

fn value(tag: u8) -> Vec<u8> {
    vec![tag; VALUE_BYTES]
}

fn context_of(obj: &Object) -> Context {
    match obj.read() {
        ReadValue::Siblings { context, .. }
        | ReadValue::Set { context, .. }
        | ReadValue::Map { context, .. } => context,
        _ => Context::empty(),
    }
}

fn members(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("member-{i:06}")).collect()
}

/// `siblings`: both replicas saw one base value; A then takes two concurrent writes with
/// that context through actor 1, B one through actor 2, so the merge holds 3 siblings.
fn siblings() -> Replicas {
    let base = apply(
        None,
        Op::Put {
            value: value(0),
            context: Context::empty(),
        },
        1,
        1,
    );
    let ctx = context_of(&base);
    let put = |tag: u8| Op::Put {
        value: value(tag),
        context: ctx.clone(),
    };
    let a = apply(Some(&base), put(1), 1, 2);
    let a = apply(Some(&a), put(2), 1, 3);
    let b = apply(Some(&base), put(3), 2, 2);
    replicas(Policy::Siblings, a, b)
}

/// `lww`: each replica holds a different 100-byte value from a different actor.
fn lww() -> Replicas {
    let put = |tag: u8| Op::PutLww { value: value(tag) };
    let a = apply(None, put(1), 1, 10);
    let b = apply(None, put(2), 2, 11);
    replicas(Policy::Lww, a, b)
}

/// `counter`: ten actors built the shared total; then one more increment on A (actor 1)
/// and a decrement on B (actor 2).
fn counter() -> Replicas {
    let mut base = Object::empty(Policy::Counter);
    for actor in 1..=ACTORS {
        let op = Op::CounterAdd {
            delta: actor as i64 * 7,
        };
        base = apply(Some(&base), op, actor, actor);
    }
    let a = apply(Some(&base), Op::CounterAdd { delta: 5 }, 1, 20);
    let b = apply(Some(&base), Op::CounterAdd { delta: -3 }, 2, 20);
    replicas(Policy::Counter, a, b)
}

/// `set`: ten actors added 100 members each; A then adds 10 and removes 10 it saw, B adds
/// 10 others.
fn set() -> Replicas {
    let per_actor = SET_MEMBERS / ACTORS as usize;
    let mut base = Object::empty(Policy::Set);
    for actor in 1..=ACTORS {
        let start = (actor as usize - 1) * per_actor;
        let op = Op::SetAdd {
            members: members(start, start + per_actor),
        };
        base = apply(Some(&base), op, actor, actor);
    }
    let end = SET_MEMBERS;
    let a = apply(
        Some(&base),
        Op::SetAdd {
            members: members(end, end + SET_DIVERGENT),
        },
        1,
        20,
    );
    let a = apply(
        Some(&a),
        Op::SetRemove {
            members: members(0, SET_DIVERGENT),
            context: context_of(&a),
        },
        1,
        21,
    );
    let b = apply(
        Some(&base),
        Op::SetAdd {
            members: members(end + SET_DIVERGENT, end + 2 * SET_DIVERGENT),
        },
        2,
        20,
    );
    replicas(Policy::Set, a, b)
}

/// One map update of the kind field `i` holds: registers, counters and sets in turn.
fn map_op(i: usize, round: usize) -> Op {
    let field = format!("field-{i:02}");
    Op::Map(match i % 3 {
        0 => MapOp::SetRegister {
            field,
            value: format!("value {i} round {round}"),
        },
        1 => MapOp::Increment {
            field,
            delta: (i + round) as i64,
        },
        _ => MapOp::AddMembers {
            field,
            members: vec![format!("tag-{i}-{round}"), format!("tag-{round}")],
        },
    })
}

/// `map`: ten actors wrote the 20 fields between them; A then updates fields 0..5
/// (actor 1) and B fields 5..10 (actor 2).
fn map() -> Replicas {
    let mut base = Object::empty(Policy::Map);
    for i in 0..MAP_FIELDS {
        let actor = i as u64 % ACTORS + 1;
        base = apply(Some(&base), map_op(i, 0), actor, i as u64);
    }
    let mut a = base.clone();
    for i in 0..5 {
        a = apply(Some(&a), map_op(i, 1), 1, 100 + i as u64);
    }
    let mut b = base;
    for i in 5..10 {
        b = apply(Some(&b), map_op(i, 1), 2, 100 + i as u64);
    }
    replicas(Policy::Map, a, b)
}

fn hll_items(from: usize, to: usize) -> Vec<Vec<u8>> {
    (from..to)
        .map(|i| format!("visitor-{i:08}").into_bytes())
        .collect()
}

/// `hll`: A added items 0..6000 (actor 1), B items 4000..10000 (actor 2).
fn hll() -> Replicas {
    let split = HLL_ITEMS * 3 / 5;
    let overlap = HLL_ITEMS * 2 / 5;
    let a = apply(
        None,
        Op::HllAdd {
            items: hll_items(0, split),
        },
        1,
        1,
    );
    let b = apply(
        None,
        Op::HllAdd {
            items: hll_items(overlap, HLL_ITEMS),
        },
        2,
        1,
    );
    replicas(Policy::Hll, a, b)
}

fn replicas(policy: Policy, a: Object, b: Object) -> Replicas {
    let mut merged = a.clone();
    let dropped = merged.merge(&b);
    assert_eq!(dropped, None, "{policy} replicas must share their policy");
    Replicas {
        policy,
        a,
        b,
        merged,
    }
}

/// Checks each merged object holds what the bench claims to measure.
fn check(r: &Replicas) {
    match (r.policy, r.merged.read()) {
        (Policy::Siblings, ReadValue::Siblings { values, .. }) => {
            assert_eq!(values.len(), 3, "siblings merge should keep 3 values");
        }
        (Policy::Lww, ReadValue::Lww { value: stored, .. }) => {
            // The later write (B's, tag 2) wins.
            assert_eq!(stored.map(|v| v.to_vec()), Some(value(2)));
        }
        (Policy::Counter, ReadValue::Counter { value }) => {
            let base: i64 = (1..=ACTORS as i64).map(|a| a * 7).sum();
            assert_eq!(value, base + 5 - 3);
        }
        (Policy::Set, ReadValue::Set { members, .. }) => {
            assert_eq!(members.len(), SET_MEMBERS + SET_DIVERGENT);
        }
        (Policy::Map, ReadValue::Map { fields, .. }) => {
            assert_eq!(fields.len(), MAP_FIELDS);
        }
        (Policy::Hll, ReadValue::Hll { estimate }) => {
            let err = (estimate as f64 - HLL_ITEMS as f64).abs() / HLL_ITEMS as f64;
            assert!(
                err < 0.05,
                "hll estimate {estimate} is far from {HLL_ITEMS}"
            );
        }
        (policy, read) => panic!("{policy} object read back as {read:?}"),
    }
}

/// A typical single write of the policy, applied to the merged object by a third actor.
fn put_op(r: &Replicas) -> Op {
    let ctx = context_of(&r.merged);
    match r.policy {
        // A read-modify-write that resolves the siblings it read.
        Policy::Siblings => Op::Put {
            value: value(9),
            context: ctx,
        },
        Policy::Lww => Op::PutLww { value: value(9) },
        Policy::Counter => Op::CounterAdd { delta: 1 },
        Policy::Set => Op::SetAdd {
            members: vec!["member-new".to_string()],
        },
        Policy::Map => Op::Map(MapOp::SetRegister {
            field: "field-00".to_string(),
            value: "new value".to_string(),
        }),
        Policy::Hll => Op::HllAdd {
            items: vec![b"visitor-new".to_vec()],
        },
    }
}

fn all() -> Vec<Replicas> {
    let all = vec![siblings(), lww(), counter(), set(), map(), hll()];
    for r in &all {
        check(r);
    }
    all
}

fn encode(obj: &Object) -> Vec<u8> {
    match rmp_serde::to_vec(obj) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a {} object must encode: {e}", obj.policy()),
    }
}

/// Clone + merge of B into A, as a replica does with a copy that arrived from a peer.
/// `iter` frees each result inside the timed loop, so freeing the object is included.
fn merge(c: &mut Criterion) {
    let all = all();
    let mut group = c.benchmark_group("object_merge");
    for r in &all {
        group.bench_with_input(BenchmarkId::from_parameter(r.policy), r, |bench, r| {
            bench.iter(|| {
                let mut x = r.a.clone();
                x.merge(black_box(&r.b));
                x
            })
        });
    }
    group.finish();
    // The clone alone, to tell how much of the merge figure is copying.
    let mut group = c.benchmark_group("object_clone");
    for r in &all {
        group.bench_with_input(BenchmarkId::from_parameter(r.policy), r, |bench, r| {
            bench.iter(|| black_box(&r.a).clone())
        });
    }
    group.finish();
}

/// A coordinator's write: `Object::apply` of one typical put on the merged object.
fn apply_put(c: &mut Criterion) {
    let all = all();
    let limits = Limits::default();
    let ts = Timestamp {
        wall_ms: 1_000,
        logical: 0,
    };
    let mut group = c.benchmark_group("object_apply_put");
    for r in &all {
        let op = put_op(r);
        group.bench_with_input(BenchmarkId::from_parameter(r.policy), r, |bench, r| {
            // The new object is freed inside the timed routine, as in the merge and clone
            // groups, so all object figures include releasing what they built.
            bench.iter_batched(
                || op.clone(),
                |op| {
                    black_box(Object::apply(
                        Some(&r.merged),
                        op,
                        None,
                        ActorId(3),
                        ts,
                        &limits,
                    ))
                    .is_ok()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// msgpack encode and decode of the merged object: what storage and replication pay.
fn codec(c: &mut Criterion) {
    let all = all();
    let sizes: Vec<String> = all
        .iter()
        .map(|r| format!("{}={}B", r.policy, encode(&r.merged).len()))
        .collect();
    eprintln!("encoded object sizes: {}", sizes.join(" "));
    let mut group = c.benchmark_group("object_encode");
    for r in &all {
        let len = encode(&r.merged).len() as u64;
        group.throughput(Throughput::Bytes(len));
        group.bench_with_input(BenchmarkId::from_parameter(r.policy), r, |bench, r| {
            bench.iter(|| rmp_serde::to_vec(black_box(&r.merged)))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("object_decode");
    for r in &all {
        let bytes = encode(&r.merged);
        let back: Result<Object, _> = rmp_serde::from_slice(&bytes);
        assert!(
            matches!(&back, Ok(obj) if obj == &r.merged),
            "{} object must decode to itself",
            r.policy
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(r.policy),
            &bytes,
            |bench, bytes| bench.iter(|| rmp_serde::from_slice::<Object>(black_box(bytes))),
        );
    }
    group.finish();
}

criterion_group!(benches, merge, apply_put, codec);
criterion_main!(benches);
