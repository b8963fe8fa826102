//! How many bytes anti-entropy spends to find and repair d divergent keys out of 100k,
//! against the ideal of d × (key + version digest), for each way of finding them.
//!
//! Two core nodes (N=2) share 100k identical keys; the second then gets a newer version
//! of d of them. Only anti-entropy runs — no reads, no hints — until both replicas'
//! Merkle roots agree on every partition. Every anti-entropy message is counted as the
//! transport would frame it (4-byte length + named msgpack of the envelope); the
//! repairing objects and their acks are counted apart. Deterministic: no timing involved.
//!
//! Run: `cargo run --release --example ae_bytes [-- --keys 100000]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ringkv::core::node::{MemberSpec, Node, NodeConfig, Now};
use ringkv::core::object::clock::{ActorId, Timestamp};
use ringkv::core::object::{Limits, Object, Op};
use ringkv::core::placement::ring::NodeId;
use ringkv::core::repair::merkle::AePath;
use ringkv::proto::{Key, PeerMessage, WireBody, WireRequest};
use ringkv::storage::MemoryStorage;

/// Bound on anti-entropy ticks per measurement.
const TICKS_MAX: usize = 2_000;
/// Simulated time between two ticks (the interval is 1 s plus up to 25 % jitter).
const TICK_MS: u64 = 1_300;
/// Length prefix of a transport frame.
const FRAME_PREFIX_BYTES: u64 = 4;

struct Measured {
    ideal: u64,
    metadata: u64,
    messages: u64,
    objects: u64,
    repaired: u64,
    ticks: usize,
    bloom_rounds: u64,
    converged: bool,
    /// Frames and bytes per anti-entropy message kind.
    by_kind: BTreeMap<&'static str, (u64, u64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: usize = args
        .iter()
        .position(|a| a == "--keys")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "anti-entropy bytes to repair d of {keys} keys (N=2, Q=1024, 256 leaves per partition)\n"
    );
    println!(
        "{:>6} {:>7} {:>10} {:>12} {:>6} {:>8} {:>14} {:>8} {:>6} {:>6}",
        "path",
        "d",
        "ideal B",
        "metadata B",
        "msgs",
        "ratio",
        "repair B",
        "objects",
        "ticks",
        "rounds"
    );
    let mut breakdown = Vec::new();
    for (name, path) in [
        ("merkle", AePath::Merkle),
        ("bloom", AePath::Bloom),
        ("auto", AePath::Auto),
    ] {
        let idle = measure(keys, 0, path);
        println!(
            "{name:>6} {:>7} {:>10} {:>12} {:>6} {:>8} {:>14} {:>8} {:>6} {:>6}",
            0, 0, idle.metadata, idle.messages, "-", idle.objects, idle.repaired, idle.ticks, 0
        );
        for d in [1usize, 10, 100, 1_000, 10_000] {
            if d > keys {
                continue;
            }
            let m = measure(keys, d, path);
            println!(
                "{name:>6} {:>7} {:>10} {:>12} {:>6} {:>8.2} {:>14} {:>8} {:>6} {:>6}{}",
                d,
                m.ideal,
                m.metadata,
                m.messages,
                m.metadata as f64 / m.ideal as f64,
                m.objects,
                m.repaired,
                m.ticks,
                m.bloom_rounds,
                if m.converged { "" } else { "  NOT CONVERGED" }
            );
            if d == 10_000 {
                breakdown.push((name, m.by_kind));
            }
        }
    }
    for (name, kinds) in breakdown {
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, (n, b))| format!("{k} {b} B in {n}"))
            .collect();
        println!("\n{name} at d = 10000: {}", parts.join(", "));
    }
    println!(
        "\nideal = d × (average key size + 8-byte version digest); metadata = every anti-entropy\n\
         frame (roots, branches, leaves, entry hashes, sketches, filters); repair B = the objects\n\
         and their acks. Every run lasts at least one full cycle (every partition compared once),\n\
         and longer until the replicas agree; d = 0 is the cost of an idle cycle."
    );
}

fn measure(keys: usize, d: usize, path: AePath) -> Measured {
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
            cfg.ae_path = path;
            let mut node = Node::new(cfg, members.clone(), Arc::new(MemoryStorage::new()), now)
                .expect("node starts");
            // the start-up tree rebuild of an empty store finishes in one step
            node.handle_timeout(now);
            node
        })
        .collect();
    let limits = Limits::default();
    let mut key_bytes = 0u64;
    let stride = keys.checked_div(d).unwrap_or(usize::MAX).max(1);
    for i in 0..keys {
        let key = Key::new("bench", format!("key-{i:08}"));
        key_bytes += (key.bucket.len() + key.key.len()) as u64;
        let op = Op::CounterAdd { delta: 1 };
        let (obj, _) = Object::apply(None, op, None, ActorId(99), Timestamp::default(), &limits)
            .expect("apply");
        let newer = (i % stride == 0 && i / stride < d).then(|| {
            Object::apply(
                Some(&obj),
                Op::CounterAdd { delta: 1 },
                None,
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
    let partitions = nodes[0].membership().ring().partitions();
    let in_sync = |nodes: &[Node]| {
        (0..partitions)
            .all(|p| nodes[0].replica().trees().root(p) == nodes[1].replica().trees().root(p))
    };
    let (mut metadata, mut messages, mut objects, mut repaired) = (0u64, 0u64, 0u64, 0u64);
    let mut by_kind = BTreeMap::new();
    let mut ticks = 0;
    // At least one full cycle (every partition compared once by its initiator): finding
    // d keys means comparing everything, wherever they happen to be.
    let cycle_ticks =
        partitions.div_ceil(ringkv::core::repair::exchange::AE_PARTITIONS_PER_TICK) as usize;
    while ticks < TICKS_MAX {
        if ticks >= cycle_ticks && in_sync(&nodes) {
            break;
        }
        ticks += 1;
        now.mono_ms += TICK_MS;
        for node in nodes.iter_mut() {
            node.handle_timeout(now);
        }
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
                let from = NodeId::from(if from == 0 { "n1" } else { "n2" });
                let frame = WireRequest::new(WireBody::Peer {
                    from: from.clone(),
                    msg,
                });
                let bytes = FRAME_PREFIX_BYTES
                    + rmp_serde::to_vec_named(&frame).map_or(0, |b| b.len() as u64);
                let WireBody::Peer { msg, .. } = frame.body else {
                    unreachable!("built as a peer frame above");
                };
                match &msg {
                    PeerMessage::Replicate { .. } => {
                        objects += bytes;
                        repaired += 1;
                    }
                    PeerMessage::ReplicateAck { .. } => objects += bytes,
                    other => {
                        metadata += bytes;
                        messages += 1;
                        let kind: &mut (u64, u64) = by_kind.entry(kind_of(other)).or_default();
                        kind.0 += 1;
                        kind.1 += bytes;
                    }
                }
                let target = if to.as_str() == "n1" { 0 } else { 1 };
                nodes[target].handle_message(now, from, msg);
            }
        }
    }
    Measured {
        ideal: ideal.max(1),
        metadata,
        messages,
        objects,
        repaired,
        ticks,
        bloom_rounds: nodes.iter().map(|n| n.ae_stats().bloom_rounds).sum(),
        converged: in_sync(&nodes),
        by_kind,
    }
}

fn kind_of(msg: &PeerMessage) -> &'static str {
    match msg {
        PeerMessage::AeRoots { .. } => "roots",
        PeerMessage::AeBranches { .. } => "branches",
        PeerMessage::AeLeaves { .. } => "leaves",
        PeerMessage::AeKeys { .. } => "entry hashes",
        PeerMessage::AePull { .. } => "pulls",
        PeerMessage::AeSketch { .. } => "HLL sketches",
        PeerMessage::AeBloom { .. } | PeerMessage::AeBloomReply { .. } => "Bloom filters",
        PeerMessage::AeBloomNext { .. } => "Bloom root checks",
        _ => "other",
    }
}
