//! Tombstone reaping end to end in the simulator: a key deleted while
//! a primary was cut off is reaped once anti-entropy has spread the tombstone to all
//! three primaries and the grace period has passed, and it stays deleted when the nodes
//! that missed the delete come back — a primary, and a stand-in holding an old hinted
//! value.

use ringkv::core::object::{Context, Op, ReadValue};
use ringkv::core::placement::ring::{NodeId, key_position};
use ringkv::proto::{ClientReply, ClientRequest, Key, QuorumOpts};
use ringkv::sim::{Fault, World, WorldConfig};

/// The grace period the worlds run with (hints expire after half of it).
const GRACE_MS: u64 = 20_000;
/// Virtual time for a request to finish.
const REQUEST_MS: u64 = 3_000;
/// Virtual time for every node to see a cut-off node as down.
const DETECT_MS: u64 = 5_000;
/// Virtual time between two checks of a condition.
const ROUND_MS: u64 = 1_000;
/// Rounds allowed before a test calls the condition stuck.
const ROUNDS_MAX: u64 = 120;

fn key() -> Key {
    Key::new("reap", "doomed")
}

fn world(seed: u64) -> World {
    let mut config = WorldConfig::new(5);
    config.tombstone_grace_ms = GRACE_MS;
    World::new(seed, config).expect("a 5-node world starts")
}

fn primaries(world: &World) -> Vec<NodeId> {
    let k = key();
    let ring = world.ring();
    let p = ring.partition_of(key_position(&k.bucket, &k.key));
    ring.primaries(p, 3).into_iter().cloned().collect()
}

fn opts() -> QuorumOpts {
    QuorumOpts {
        w: Some(3),
        r: Some(2),
        ..QuorumOpts::default()
    }
}

/// Submits a request and runs until it is answered.
fn call(world: &mut World, at: &NodeId, request: ClientRequest) -> ClientReply {
    let id = world.submit(at.clone(), request);
    world.run_until(world.now() + REQUEST_MS);
    let op = world
        .history()
        .ops
        .iter()
        .find(|o| o.id == id)
        .expect("the request is recorded");
    match op.outcome.reply() {
        Some(reply) => reply.clone(),
        None => panic!("request at {at} did not succeed: {:?}", op.outcome),
    }
}

fn read(world: &mut World, at: &NodeId) -> (bool, Context) {
    let reply = call(
        world,
        at,
        ClientRequest::Get {
            key: key(),
            opts: opts(),
        },
    );
    match reply {
        ClientReply::Read {
            found,
            value: Some(ReadValue::Siblings { context, .. }),
            ..
        } => (found, context),
        ClientReply::Read {
            found, value: None, ..
        } => (found, Context::empty()),
        other => panic!("unexpected read reply {other:?}"),
    }
}

fn write(world: &mut World, at: &NodeId, op: Op) {
    let reply = call(
        world,
        at,
        ClientRequest::Write {
            key: key(),
            op,
            opts: opts(),
            id: None,
        },
    );
    assert!(matches!(reply, ClientReply::Written { .. }), "{reply:?}");
}

fn put(world: &mut World, at: &NodeId, value: &str) {
    let (_, context) = read(world, at);
    let op = Op::Put {
        value: value.as_bytes().to_vec(),
        context,
    };
    write(world, at, op);
}

fn delete(world: &mut World, at: &NodeId) {
    let (found, context) = read(world, at);
    assert!(found, "the key exists before the delete");
    write(world, at, Op::Delete { context });
}

fn reaped(world: &World) -> u64 {
    world
        .node_names()
        .iter()
        .filter_map(|n| world.node(n))
        .map(|n| n.tombstones_reaped())
        .sum()
}

/// What `node` stores for the key in its data space: None, or whether it is live.
fn stored_live(world: &World, node: &NodeId) -> Option<bool> {
    let n = world.node(node)?;
    let copy = n.replica().read(&key(), None).expect("readable");
    copy.map(|o| !o.is_tombstone())
}

fn hints_for(world: &World, holder: &NodeId, primary: &NodeId) -> u64 {
    world
        .node(holder)
        .map_or(0, |n| n.replica().hints().for_primary(primary))
}

/// Runs in rounds until `cond` holds; panics naming `what` after `ROUNDS_MAX`.
fn run_until_true(world: &mut World, what: &str, cond: impl Fn(&World) -> bool) -> u64 {
    for round in 0..ROUNDS_MAX {
        if cond(world) {
            return round;
        }
        world.run_until(world.now() + ROUND_MS);
    }
    panic!("{what}: not reached after {ROUNDS_MAX} rounds of {ROUND_MS} ms");
}

/// Every node reads the key as not found, and no primary holds a live copy.
fn assert_stays_deleted(world: &mut World) {
    for node in world.node_names() {
        let (found, _) = read(world, &node);
        assert!(!found, "the key came back in a read at {node}");
        assert_ne!(
            stored_live(world, &node),
            Some(true),
            "{node} holds it live"
        );
    }
}

#[test]
fn a_key_deleted_during_a_partition_is_reaped_and_stays_deleted_when_the_missing_nodes_return() {
    let mut w = world(7);
    let p = primaries(&w);
    let (p1, p3) = (p[0].clone(), p[2].clone());
    let others: Vec<NodeId> = w
        .node_names()
        .into_iter()
        .filter(|n| !p.contains(n))
        .collect();
    put(&mut w, &p1, "v1");

    // p3 is cut off; a second write reaches a stand-in for it, which then crashes with
    // that (pre-delete) value in its hint store
    let rest: Vec<NodeId> = w.node_names().into_iter().filter(|n| n != &p3).collect();
    w.apply(Fault::Partition(vec![vec![p3.clone()], rest]));
    w.run_until(w.now() + DETECT_MS);
    put(&mut w, &p1, "v2");
    let stale_holder = others
        .iter()
        .find(|n| hints_for(&w, n, &p3) > 0)
        .cloned()
        .expect("a stand-in holds a hint for p3");
    w.apply(Fault::Crash {
        node: stale_holder.clone(),
        lose_disk: false,
    });
    w.run_until(w.now() + DETECT_MS);

    // the delete reaches the other stand-in, which loses its disk, and the hint with it
    delete(&mut w, &p1);
    let tomb_holder = others
        .iter()
        .find(|n| **n != stale_holder)
        .cloned()
        .expect("two stand-ins");
    assert!(
        hints_for(&w, &tomb_holder, &p3) > 0,
        "the delete used a stand-in"
    );
    w.apply(Fault::Crash {
        node: tomb_holder.clone(),
        lose_disk: true,
    });
    w.apply(Fault::Restart(tomb_holder));

    // heal: p3 still holds v1; anti-entropy spreads the tombstone, then grace passes
    w.apply(Fault::Heal);
    assert_eq!(stored_live(&w, &p3), Some(true), "p3 missed the delete");
    run_until_true(&mut w, "tombstone on p3", |w| {
        stored_live(w, &p3) == Some(false)
    });
    assert_eq!(reaped(&w), 0, "nothing is reaped before the grace period");
    let rounds = run_until_true(&mut w, "reaped on all primaries", |w| {
        p.iter().all(|n| stored_live(w, n).is_none())
    });
    assert_eq!(reaped(&w), 3);
    println!("reaped on all 3 primaries {rounds} s after the tombstone reached the last one");

    // the stand-in with the old value comes back: its hint has expired and is dropped,
    // never handed off
    w.apply(Fault::Restart(stale_holder.clone()));
    run_until_true(&mut w, "stale hint gone", |w| {
        hints_for(w, &stale_holder, &p3) == 0
    });
    w.run_until(w.now() + 5 * ROUND_MS);
    assert_stays_deleted(&mut w);
    let expired = w
        .node(&stale_holder)
        .map_or(0, |n| n.replica().hints_expired());
    assert_eq!(expired, 1, "the hint expired rather than being delivered");
}

#[test]
fn a_primary_that_is_down_blocks_the_reap_and_cannot_bring_the_key_back_when_it_returns() {
    let mut w = world(8);
    let p = primaries(&w);
    let (p1, p3) = (p[0].clone(), p[2].clone());
    put(&mut w, &p1, "v1");
    w.apply(Fault::Crash {
        node: p3.clone(),
        lose_disk: false,
    });
    w.run_until(w.now() + DETECT_MS);
    delete(&mut w, &p1);
    // far longer than the grace period: p3 is down, so nothing is reaped
    w.run_until(w.now() + 3 * GRACE_MS);
    assert_eq!(reaped(&w), 0);
    assert_eq!(stored_live(&w, &p1), Some(false), "p1 keeps the tombstone");
    // p3 returns with the old value after an absence longer than the grace period
    w.apply(Fault::Restart(p3.clone()));
    run_until_true(&mut w, "reaped on all primaries", |w| {
        p.iter().all(|n| stored_live(w, n).is_none())
    });
    assert_eq!(reaped(&w), 3);
    assert_stays_deleted(&mut w);
}
