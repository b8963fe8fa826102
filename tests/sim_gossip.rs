//! SWIM membership and ring changes in the simulator: how fast news spreads among 100
//! nodes, how fast a crash is detected, that loss causes no false downs, and that a join
//! or a leave under a write load loses no acknowledged write.

use std::collections::BTreeMap;

use ringkv::core::membership::Liveness;
use ringkv::core::membership::gossip::{MemberPhase, PROBE_PERIOD_MS_DEFAULT};
use ringkv::core::object::{Policy, ReadValue};
use ringkv::core::placement::ring::NodeId;
use ringkv::sim::workload::{QuorumChoice, RmwProgram, keys_for};
use ringkv::sim::{Fault, NetConfig, World, WorldConfig, check_convergence, check_history};

/// Streaming budget in the ring-change runs: a few hundred keys take seconds to move.
const TRANSFER_BYTES_PER_SEC: u64 = 2_048;

fn n(s: &str) -> NodeId {
    NodeId::from(s)
}

/// Runs `world` until `done` holds (checked every 50 ms of virtual time) or `limit_ms`
/// passes; returns the virtual ms it took, or None.
fn time_until(world: &mut World, limit_ms: u64, done: impl Fn(&World) -> bool) -> Option<u64> {
    let start = world.now();
    while world.now() < start + limit_ms {
        if done(world) {
            return Some(world.now() - start);
        }
        let next = world.now() + 50;
        world.run_until(next);
    }
    done(world).then(|| world.now() - start)
}

/// Every running node other than `about` sees it satisfy `pred`.
fn all_see(
    world: &World,
    about: &NodeId,
    pred: impl Fn(Option<(MemberPhase, Liveness)>) -> bool,
) -> bool {
    world
        .node_names()
        .iter()
        .filter(|m| *m != about)
        .all(|m| match world.node(m) {
            Some(node) => pred(node.membership().get(about).map(|i| (i.phase, i.state))),
            None => true,
        })
}

#[test]
fn among_100_nodes_a_join_and_a_leave_reach_everyone_within_3_log2_n_periods() {
    let mut world = World::new(11, WorldConfig::new(100)).expect("100 nodes start");
    world.run_until(5_000);
    let period = PROBE_PERIOD_MS_DEFAULT;
    let bound_periods = 3.0 * (101f64).log2();

    world.apply(Fault::Join {
        node: n("n101"),
        seed: n("n1"),
    });
    let join_ms = time_until(&mut world, 120_000, |w| {
        all_see(w, &n("n101"), |s| {
            matches!(s, Some((MemberPhase::Normal, _)))
        })
    })
    .expect("every member learns of the join");
    let join_periods = join_ms as f64 / period as f64;
    println!(
        "join of n101 reached all 100 members in {join_ms} ms = {join_periods:.1} protocol periods (3·log2(n) = {bound_periods:.1})"
    );

    world.apply(Fault::Leave(n("n50")));
    let leave_ms = time_until(&mut world, 120_000, |w| {
        all_see(w, &n("n50"), |s| {
            !matches!(s, Some((MemberPhase::Normal, _)))
        })
    })
    .expect("every member learns of the leave");
    let leave_periods = leave_ms as f64 / period as f64;
    println!(
        "leave of n50 reached all 100 members in {leave_ms} ms = {leave_periods:.1} protocol periods"
    );
    assert!(
        join_periods <= bound_periods && leave_periods <= bound_periods,
        "join took {join_periods:.1} and leave {leave_periods:.1} periods; the bound is {bound_periods:.1}"
    );
    assert!(world.errors().is_empty(), "{:?}", world.errors());
}

#[test]
fn a_crashed_node_is_marked_down_everywhere_within_a_bounded_time() {
    let mut world = World::new(5, WorldConfig::new(30)).expect("30 nodes start");
    world.run_until(5_000);
    world.apply(Fault::Crash {
        node: n("n7"),
        lose_disk: false,
    });
    let bound_ms = 20 * PROBE_PERIOD_MS_DEFAULT;
    let took = time_until(&mut world, bound_ms, |w| {
        all_see(w, &n("n7"), |s| matches!(s, Some((_, Liveness::Down))))
    });
    match took {
        Some(ms) => println!(
            "crash of n7 detected by all 29 members in {ms} ms = {:.1} protocol periods",
            ms as f64 / PROBE_PERIOD_MS_DEFAULT as f64
        ),
        None => panic!("n7 was not marked down everywhere within {bound_ms} ms"),
    }
}

#[test]
fn a_node_cut_off_until_declared_down_is_seen_up_everywhere_soon_after_the_heal() {
    let mut world = World::new(9, WorldConfig::new(5)).expect("5 nodes start");
    world.run_until(5_000);
    let names = world.node_names();
    let (cut, rest): (Vec<NodeId>, Vec<NodeId>) = names.into_iter().partition(|m| *m == n("n5"));
    world.apply(Fault::Partition(vec![cut, rest]));
    let down_ms = time_until(&mut world, 30 * PROBE_PERIOD_MS_DEFAULT, |w| {
        all_see(w, &n("n5"), |s| matches!(s, Some((_, Liveness::Down))))
    })
    .expect("the others declare n5 down");
    world.apply(Fault::Heal);
    // The cut-off node hears it was declared down, renews its identity and announces
    // it; any message from it also brings it back up in a view at once.
    let bound_ms = 2 * PROBE_PERIOD_MS_DEFAULT;
    let up_ms = time_until(&mut world, bound_ms, |w| {
        all_see(w, &n("n5"), |s| matches!(s, Some((_, Liveness::Up))))
    });
    match up_ms {
        Some(ms) => {
            println!("n5 declared down in {down_ms} ms, seen up by all {ms} ms after the heal")
        }
        None => panic!("n5 was not seen up by every member within {bound_ms} ms of the heal"),
    }
}

#[test]
fn five_percent_loss_for_ten_minutes_marks_no_live_node_down() {
    let mut world = World::new(21, WorldConfig::new(10)).expect("10 nodes start");
    world.apply(Fault::Net(NetConfig {
        loss: 0.05,
        ..NetConfig::reliable()
    }));
    world.run_until(600_000);
    let mut downs = 0;
    for name in world.node_names() {
        let node = world.node(&name).expect("no node crashed");
        downs += node.stats().gossip_downs;
        for member in node.membership().members() {
            assert_ne!(
                member.state,
                Liveness::Down,
                "{name} holds live {} down at the end",
                member.name
            );
        }
    }
    println!(
        "10 nodes, 5% loss, 600 s: {downs} false downs, {} messages and datagrams lost",
        world.stats().lost
    );
    assert_eq!(downs, 0, "gossip declared a live node down under 5% loss");
}

/// What happens besides the join in one ring-change run.
#[derive(Clone, Copy, Debug)]
enum Also {
    Nothing,
    /// n2 leaves while the join's transfers may still run.
    Leave,
    /// n1, which streams partitions to n5, crashes mid-transfer and restarts.
    CrashDuringTransfer,
}

/// A write load on 4 nodes while a 5th joins (plus `also`); every acknowledged write must
/// survive and every replica converge.
fn ring_change_under_load(seed: u64, policy: Policy, also: Also) -> (Vec<String>, u64) {
    let mut config = WorldConfig::new(4);
    // Slow streaming, so the writes, the leave and the crash land mid-transfer.
    config.transfer_bytes_per_sec = TRANSFER_BYTES_PER_SEC;
    let mut world = World::new(seed, config).expect("4 nodes start");
    world.apply(Fault::Net(NetConfig {
        loss: 0.01,
        duplicate: 0.01,
        ..NetConfig::reliable()
    }));
    for client in 0..3 {
        let program = RmwProgram::new(
            policy,
            client,
            keys_for(policy.name(), 12),
            QuorumChoice::Random,
            60,
        );
        world.add_client(Box::new(program));
    }
    world.schedule(
        1_500,
        Fault::Join {
            node: n("n5"),
            seed: n("n1"),
        },
    );
    let leave = matches!(also, Also::Leave);
    match also {
        Also::Nothing => {}
        Also::Leave => world.schedule(4_000, Fault::Leave(n("n2"))),
        Also::CrashDuringTransfer => {
            world.schedule(
                1_700,
                Fault::Crash {
                    node: n("n1"),
                    lose_disk: false,
                },
            );
            world.schedule(3_000, Fault::Restart(n("n1")));
        }
    }
    world.run_until(1_800);
    let pending_mid_transfer = world.transfers_pending();
    world.run_until(8_000);
    let settled = world.settle();
    let finals: BTreeMap<_, ReadValue> = settled
        .merged()
        .into_iter()
        .map(|(k, o)| (k, o.read()))
        .collect();
    let mut failures = world.errors().to_vec();
    failures.extend(settled.repair_failures.iter().cloned());
    failures.extend(check_convergence(&settled.replicas));
    let report = check_history(world.history(), &finals, world.stats().disk_losses);
    failures.extend(report.violations.iter().cloned());
    if !world.ring().is_member(&n("n5")) {
        failures.push("n5 is not in the final ring".into());
    }
    if leave && (!world.has_left(&n("n2")) || world.ring().is_member(&n("n2"))) {
        failures.push("n2 did not finish leaving".into());
    }
    if world.transfers_pending() > 0 {
        failures.push(format!(
            "{} transfers still pending",
            world.transfers_pending()
        ));
    }
    (failures, pending_mid_transfer)
}

#[test]
fn joins_leaves_and_crashes_mid_transfer_under_writes_lose_no_acknowledged_write() {
    let mut failed = Vec::new();
    let mut runs = 0;
    let mut mid_transfer = 0;
    for policy in [Policy::Siblings, Policy::Counter, Policy::Set] {
        for seed in 0..6u64 {
            for also in [Also::Nothing, Also::Leave, Also::CrashDuringTransfer] {
                runs += 1;
                let (failures, pending) = ring_change_under_load(seed, policy, also);
                mid_transfer += u64::from(pending > 0);
                if !failures.is_empty() {
                    failed.push(format!(
                        "{policy} seed {seed} {also:?}: {}",
                        failures.join("; ")
                    ));
                }
            }
        }
    }
    println!(
        "{runs} ring-change runs, {mid_transfer} with transfers still running 300 ms after the join, {} failed",
        failed.len()
    );
    assert!(
        mid_transfer * 2 > runs,
        "the transfers finished too fast to test anything mid-way"
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
