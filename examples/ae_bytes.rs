//! How many bytes anti-entropy spends to find and repair d divergent keys out of 100k,
//! against the ideal of d × (key + version digest).
//!
//! Two core nodes (N=2) share 100k identical keys; the second then gets a newer version
//! of d of them. Only anti-entropy runs — no reads, no hints — and every message between
//! the nodes is counted. Run: `cargo run --release --example ae_bytes [-- --keys 100000]`.

use std::sync::Arc;

use ringkv::core::clock::{ActorId, Timestamp};
use ringkv::core::message::{Key, PeerMessage};
use ringkv::core::node::{MemberSpec, Node, NodeConfig, Now};
use ringkv::core::object::{Limits, Object, Op};
use ringkv::core::ring::NodeId;
use ringkv::storage::MemoryStorage;

/// Bound on message-passing rounds per measurement.
const ROUNDS_MAX: usize = 10_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: usize = args
        .iter()
        .position(|a| a == "--keys")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "anti-entropy bytes to repair d of {keys} keys (Merkle path; Q=1024, 256 leaves per partition)\n"
    );
    println!(
        "{:>6} {:>12} {:>12} {:>8} {:>14} {:>8}",
        "d", "ideal B", "metadata B", "ratio", "with objects B", "repaired"
    );
    for d in [1usize, 10, 100, 1_000, 10_000] {
        if d > keys {
            continue;
        }
        let m = measure(keys, d);
        println!(
            "{:>6} {:>12} {:>12} {:>8.1} {:>14} {:>8}",
            d,
            m.ideal,
            m.metadata,
            m.metadata as f64 / m.ideal as f64,
            m.metadata + m.objects,
            m.repaired
        );
    }
    println!(
        "\nideal = d × (average key size + 8-byte version digest); metadata = roots, leaves, keys\nand digests exchanged; objects = the repairing objects themselves (msgpack)."
    );
}

struct Measured {
    ideal: u64,
    metadata: u64,
    objects: u64,
    repaired: u64,
}

fn measure(keys: usize, d: usize) -> Measured {
    let members = vec![
        MemberSpec::new("n1", "127.0.0.1:1"),
        MemberSpec::new("n2", "127.0.0.1:2"),
    ];
    let mut now = Now {
        mono_ms: 0,
        wall_ms: 1_000_000,
    };
    let mut nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut cfg = NodeConfig::new(*name);
            cfg.n = 2;
            cfg.w = 1;
            cfg.r = 1;
            cfg.rng_seed = i as u64 + 1;
            cfg.probe_period_ms = 3_600_000;
            cfg.handoff_interval_ms = 3_600_000;
            let mut node = Node::new(cfg, members.clone(), Arc::new(MemoryStorage::new()), now)
                .expect("node starts");
            // the start-up tree rebuild of an empty store finishes in one step
            node.handle_timeout(now);
            node
        })
        .collect();
    let limits = Limits::default();
    let mut key_bytes = 0u64;
    for i in 0..keys {
        let key = Key::new("bench", format!("key-{i:08}"));
        key_bytes += (key.bucket.len() + key.key.len()) as u64;
        let op = Op::CounterAdd { delta: 1 };
        let (obj, _) =
            Object::apply(None, op, ActorId(99), Timestamp::default(), &limits).expect("apply");
        let newer = (i % (keys / d).max(1) == 0 && i / (keys / d).max(1) < d).then(|| {
            Object::apply(
                Some(&obj),
                Op::CounterAdd { delta: 1 },
                ActorId(98),
                Timestamp::default(),
                &limits,
            )
            .expect("apply")
            .0
        });
        for (n, node) in nodes.iter_mut().enumerate() {
            let object = match (&newer, n) {
                (Some(v), 1) => v.clone(),
                _ => obj.clone(),
            };
            node.handle_message(
                now,
                NodeId::from(if n == 0 { "n2" } else { "n1" }),
                PeerMessage::Replicate {
                    id: i as u64,
                    key: key.clone(),
                    object,
                    hint: None,
                },
            );
            while node.poll_transmit().is_some() {}
        }
    }
    let ideal = d as u64 * (key_bytes / keys as u64 + 8);
    // let the trees rebuild, then run anti-entropy ticks until a quiet cycle
    let mut objects = 0u64;
    let mut quiet_ticks = 0;
    for _ in 0..ROUNDS_MAX {
        now.mono_ms += 1_300;
        for node in nodes.iter_mut() {
            node.handle_timeout(now);
        }
        let mut moved = 0;
        loop {
            let mut wire = Vec::new();
            for (n, node) in nodes.iter_mut().enumerate() {
                while let Some((to, msg)) = node.poll_transmit() {
                    wire.push((n, to, msg));
                }
            }
            if wire.is_empty() {
                break;
            }
            for (from, to, msg) in wire {
                if let PeerMessage::Replicate { object, .. } = &msg {
                    objects += rmp_serde::to_vec(object).map_or(0, |b| b.len() as u64);
                    moved += 1;
                }
                let target = if to.as_str() == "n1" { 0 } else { 1 };
                let from = NodeId::from(if from == 0 { "n1" } else { "n2" });
                nodes[target].handle_message(now, from, msg);
            }
        }
        quiet_ticks = if moved == 0 { quiet_ticks + 1 } else { 0 };
        // 1024 partitions at 32 per tick per node: 40 quiet ticks is a full quiet cycle
        if quiet_ticks > 40 {
            break;
        }
    }
    let metadata = nodes.iter().map(|n| n.ae_stats().bytes_sent).sum();
    let repaired = nodes.iter().map(|n| n.ae_stats().keys_sent).sum();
    Measured {
        ideal,
        metadata,
        objects,
        repaired,
    }
}
