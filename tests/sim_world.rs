//! The simulator's own guarantees: seeds replay byte for byte, crashes keep what was
//! persisted, disk loss makes a new actor, and the checkers catch a lost write.

use std::collections::BTreeMap;

use ringkv::core::object::{Op, Policy, ReadValue};
use ringkv::proto::{ClientReply, ClientRequest, Key, QuorumOpts};
use ringkv::sim::availability::{Scope, unavailable_while_possible};
use ringkv::sim::workload::{QuorumChoice, RmwProgram, keys_for};
use ringkv::sim::{Fault, NetConfig, OpOutcome, World, WorldConfig, check_history, run_seed};

fn counter_write(key: &Key, w: u8) -> ClientRequest {
    ClientRequest::Write {
        key: key.clone(),
        op: Op::CounterAdd { delta: 1 },
        opts: QuorumOpts {
            n: Some(3),
            w: Some(w),
            ..QuorumOpts::default()
        },
        id: None,
    }
}

fn settle_op(world: &mut World, id: u64) -> OpOutcome {
    let deadline = world.now() + 10_000;
    world.run_while(
        |w| {
            w.history()
                .get(id)
                .is_some_and(|o| o.outcome == OpOutcome::Pending)
        },
        deadline,
    );
    world
        .history()
        .get(id)
        .map(|o| o.outcome.clone())
        .unwrap_or(OpOutcome::Pending)
}

#[test]
fn the_same_seed_renders_the_same_history_and_another_seed_does_not() {
    for policy in Policy::ALL {
        let a = run_seed(7, policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
        let b = run_seed(7, policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
        let c = run_seed(8, policy).unwrap_or_else(|e| panic!("{policy}: {e}"));
        assert!(
            a.history.ops.len() > 50,
            "{policy}: a run issues a real workload"
        );
        assert!(
            !a.history.faults.is_empty(),
            "{policy}: a run injects faults"
        );
        assert_eq!(
            a.history.render(),
            b.history.render(),
            "{policy}: seed 7 diverged"
        );
        assert_eq!(a.stats, b.stats, "{policy}: seed 7 diverged");
        assert_ne!(
            a.history.render(),
            c.history.render(),
            "{policy}: seeds 7 and 8 agree"
        );
    }
}

#[test]
fn a_crash_keeps_persisted_writes_and_takes_a_fresh_actor_as_does_a_disk_loss() {
    let mut world = World::new(3, WorldConfig::new(3)).expect("a 3-node world starts");
    let key = Key::new("b", "k");
    let node = world.primaries(&key, 1).remove(0);
    let actor = world.node(&node).map(|n| n.actor()).expect("the node runs");
    let id = world.submit(node.clone(), counter_write(&key, 3));
    assert!(settle_op(&mut world, id).is_ok());

    world.apply(Fault::Crash {
        node: node.clone(),
        lose_disk: false,
    });
    assert!(!world.is_up(&node));
    world.apply(Fault::Restart(node.clone()));
    let running = world.node(&node).expect("restarted");
    // The driver sends replication before its persist, so a crash may leave dots of the
    // old actor on other replicas that this disk never stored: a crash is a new epoch.
    assert_ne!(running.actor(), actor, "a crash is not a clean stop");
    let actor = running.actor();
    assert!(
        matches!(running.replica().read(&key, None), Ok(Some(_))),
        "the acked write survived"
    );

    world.apply(Fault::Crash {
        node: node.clone(),
        lose_disk: true,
    });
    world.apply(Fault::Restart(node.clone()));
    let running = world.node(&node).expect("restarted");
    assert_ne!(running.actor(), actor, "an empty disk is a new actor");
    assert!(
        matches!(running.replica().read(&key, None), Ok(None)),
        "the disk was lost"
    );
    assert_eq!(world.stats().disk_losses, 1);
}

#[test]
fn a_partition_fails_strict_quorums_across_it_and_heal_restores_them() {
    let mut world = World::new(5, WorldConfig::new(3)).expect("a 3-node world starts");
    let key = Key::new("b", "k");
    let primaries = world.primaries(&key, 3);
    let (alone, rest) = primaries.split_at(1);
    world.apply(Fault::Partition(vec![alone.to_vec(), rest.to_vec()]));
    let id = world.submit(alone[0].clone(), counter_write(&key, 3));
    assert!(matches!(settle_op(&mut world, id), OpOutcome::Failed(_)));
    world.apply(Fault::Heal);
    world.run_until(world.now() + 3_000);
    let id = world.submit(alone[0].clone(), counter_write(&key, 3));
    assert!(settle_op(&mut world, id).is_ok());
}

#[test]
fn the_checkers_catch_a_lost_acknowledged_update_for_every_checked_policy() {
    for policy in [Policy::Siblings, Policy::Counter, Policy::Set, Policy::Map] {
        let mut world = World::new(11, WorldConfig::new(5)).expect("world");
        for c in 0..2 {
            let keys = keys_for(policy.name(), 1);
            world.add_client(Box::new(RmwProgram::new(
                policy,
                c,
                keys,
                QuorumChoice::Fixed { w: 3, r: 3 },
                20,
            )));
        }
        world.run_while(|w| !w.clients_finished(), 60_000);
        let settled = world.settle();
        let mut finals: BTreeMap<Key, ReadValue> = settled
            .merged()
            .into_iter()
            .map(|(k, o)| (k, o.read()))
            .collect();
        let clean = check_history(world.history(), &finals, 0);
        assert!(
            clean.violations.is_empty(),
            "{policy}: {:?}",
            clean.violations
        );
        assert!(
            clean.acked_updates > 0,
            "{policy}: the workload acknowledged updates"
        );
        // Lose something acknowledged: the checker must notice.
        for value in finals.values_mut() {
            match value {
                ReadValue::Siblings { values, .. } => values.clear(),
                ReadValue::Counter { value } => *value -= 1,
                ReadValue::Set { members, .. } => {
                    members.pop();
                }
                ReadValue::Map { fields, .. } => fields.clear(),
                _ => {}
            }
        }
        let broken = check_history(world.history(), &finals, 0);
        assert!(
            !broken.violations.is_empty(),
            "{policy}: a lost update went unnoticed"
        );
    }
}

#[test]
fn a_late_reply_after_a_client_timeout_is_not_recorded_twice() {
    let mut config = WorldConfig::new(3);
    config.client_timeout_ms = 1;
    config.client_delay_ms_max = 5;
    let mut world = World::new(2, config).expect("world");
    let key = Key::new("b", "k");
    let node = world.primaries(&key, 1).remove(0);
    let id = world.submit(node, counter_write(&key, 3));
    world.run_until(world.now() + 3_000);
    let op = world.history().get(id).expect("recorded");
    assert_eq!(op.outcome, OpOutcome::TimedOut);
    assert!(!matches!(
        op.outcome,
        OpOutcome::Ok(ClientReply::Written { .. })
    ));
}

#[test]
fn a_crash_between_replication_and_its_persist_never_reuses_a_dot() {
    // Persists come 1 s after the input that needed them, as the driver's group commit
    // does in small: replication leaves at once, the coordinator's ack waits.
    let mut config = WorldConfig::new(3);
    config.persist_delay_ms = 1_000;
    let mut world = World::new(21, config).expect("a 3-node world starts");
    let key = Key::new("set", "s");
    let coordinator = world.primaries(&key, 1).remove(0);
    let add = |member: &str| ClientRequest::Write {
        key: key.clone(),
        op: Op::SetAdd {
            members: vec![member.to_string()],
        },
        opts: QuorumOpts {
            n: Some(3),
            w: Some(2),
            ..QuorumOpts::default()
        },
        id: None,
    };
    // m1 reaches the other two replicas; the coordinator dies before its persist.
    let first = world.submit(coordinator.clone(), add("m1"));
    world.run_until(world.now() + 200);
    assert_eq!(
        world.history().get(first).map(|o| o.outcome.clone()),
        Some(OpOutcome::Pending),
        "the coordinator's reply waits for its persist"
    );
    world.apply(Fault::Crash {
        node: coordinator.clone(),
        lose_disk: false,
    });
    assert!(
        world.stats().unpersisted_lost > 0,
        "the crash dropped the coordinator's unpersisted write"
    );
    world.apply(Fault::Restart(coordinator.clone()));
    // m2 through the same coordinator before anti-entropy repairs it: under its old actor
    // it would issue m1's dot again, and the replicas would take m2 for m1 and drop it.
    let second = world.submit(coordinator.clone(), add("m2"));
    assert!(settle_op(&mut world, second).is_ok(), "m2 is acknowledged");
    world.settle();
    for node in world.primaries(&key, 3) {
        let copy = world
            .node(&node)
            .and_then(|n| n.replica().read(&key, None).ok().flatten());
        match copy.map(|o| o.read()) {
            Some(ReadValue::Set { members, .. }) => assert!(
                members.contains(&"m2".to_string()),
                "{node} kept the acknowledged m2: {members:?}"
            ),
            other => panic!("{node}: expected a set, got {other:?}"),
        }
    }
}

#[test]
fn the_availability_checker_excuses_a_partition_but_not_a_lossy_network() {
    let mut world = World::new(5, WorldConfig::new(3)).expect("a 3-node world starts");
    let key = Key::new("b", "k");
    let primaries = world.primaries(&key, 3);
    let (alone, rest) = primaries.split_at(1);
    // across a partition, W=3 cannot be met: excused
    world.apply(Fault::Partition(vec![alone.to_vec(), rest.to_vec()]));
    let id = world.submit(alone[0].clone(), counter_write(&key, 3));
    assert!(matches!(settle_op(&mut world, id), OpOutcome::Failed(_)));
    assert_eq!(
        unavailable_while_possible(&world, Scope::Everything),
        Vec::<String>::new()
    );
    // every node up and on one side, but every message lost: not excused
    world.apply(Fault::Heal);
    world.run_until(world.now() + 3_000);
    world.apply(Fault::Net(NetConfig {
        loss: 1.0,
        ..NetConfig::reliable()
    }));
    let id = world.submit(alone[0].clone(), counter_write(&key, 3));
    assert!(!settle_op(&mut world, id).is_ok());
    let flagged = unavailable_while_possible(&world, Scope::Everything);
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(
        flagged[0].starts_with(&format!("#{id} write b/k")),
        "{flagged:?}"
    );
}
