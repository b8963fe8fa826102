//! In the simulator: after divergence with hints lost (a fallback crashes and loses its
//! disk) and no client reads, anti-entropy alone converges every replica.

use ringkv::core::object::Op;
use ringkv::core::placement::ring::NodeId;
use ringkv::proto::{ClientRequest, Key, QuorumOpts};
use ringkv::sim::{Fault, World, WorldConfig};

/// Virtual time between two convergence checks: about one anti-entropy tick.
const ROUND_MS: u64 = 1_250;
/// Rounds allowed before the test calls anti-entropy stuck.
const ROUNDS_MAX: u64 = 40;

#[test]
fn anti_entropy_alone_converges_replicas_after_hints_are_lost() {
    let mut world = World::new(11, WorldConfig::new(5)).expect("a 5-node world starts");
    let keys: Vec<Key> = (0..200).map(|i| Key::new("ae", format!("k{i}"))).collect();
    let down = NodeId::from("n3");
    world.apply(Fault::Crash {
        node: down.clone(),
        lose_disk: false,
    });
    // long enough for every node to see n3 down and route to fallbacks
    world.run_until(world.now() + 5_000);
    let live: Vec<NodeId> = world
        .node_names()
        .into_iter()
        .filter(|n| n != &down)
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let request = ClientRequest::Write {
            key: key.clone(),
            op: Op::CounterAdd { delta: 1 },
            opts: QuorumOpts {
                w: Some(2),
                ..QuorumOpts::default()
            },
            id: None,
        };
        world.submit(live[i % live.len()].clone(), request);
    }
    world.run_until(world.now() + 3_000);
    let acked = world
        .history()
        .ops
        .iter()
        .filter(|o| o.outcome.is_ok())
        .count();
    assert_eq!(acked, keys.len(), "every write is acknowledged");
    // the fallback holding the most hints for n3 crashes and loses its disk: its hints
    // are gone, and so is its own data
    let hints = |w: &World, n: &NodeId| {
        w.node(n)
            .map_or(0, |node| node.replica().hints().for_primary(&down))
    };
    let holder = live
        .iter()
        .max_by_key(|n| hints(&world, n))
        .cloned()
        .expect("live nodes");
    assert!(hints(&world, &holder) > 0, "the writes used fallbacks");
    world.apply(Fault::Crash {
        node: holder.clone(),
        lose_disk: true,
    });
    world.apply(Fault::Restart(holder));
    world.apply(Fault::Restart(down.clone()));
    let converged = |w: &World| {
        keys.iter().all(|k| {
            let copies: Vec<_> = w
                .primaries(k, 3)
                .iter()
                .map(|p| {
                    w.node(p)
                        .and_then(|node| node.replica().read(k, None).ok().flatten())
                        .map(|o| o.read())
                })
                .collect();
            copies[0].is_some() && copies.iter().all(|c| c == &copies[0])
        })
    };
    assert!(!converged(&world), "the lost hints left replicas behind");
    let mut rounds = 0;
    while !converged(&world) {
        rounds += 1;
        assert!(
            rounds <= ROUNDS_MAX,
            "not converged after {ROUNDS_MAX} rounds of {ROUND_MS} ms"
        );
        let until = world.now() + ROUND_MS;
        world.run_until(until);
    }
    println!(
        "anti-entropy converged {} keys on every primary in {rounds} rounds of {ROUND_MS} ms, with no reads",
        keys.len()
    );
}
