//! The coordinator driven by hand, with no sockets: every message is delivered, dropped
//! or duplicated by the test.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::node::{MemberSpec, Node, NodeConfig, Now};
use crate::core::object::{Context, Op, OpId, ReadValue};
use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, Key, PeerMessage, QuorumOpts, RequestError};
use crate::storage::MemoryStorage;

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    now: Now,
    wire: Vec<(NodeId, NodeId, PeerMessage)>,
    replies: Vec<(NodeId, u64, ClientReply)>,
}

fn id(s: &str) -> NodeId {
    NodeId::from(s)
}

impl Cluster {
    fn new(count: usize) -> Cluster {
        Cluster::with_partitions(count, 64)
    }

    fn with_partitions(count: usize, partitions: u32) -> Cluster {
        let members: Vec<MemberSpec> = (1..=count)
            .map(|i| MemberSpec::new(format!("n{i}"), format!("127.0.0.1:{}", 7100 + i)))
            .collect();
        let now = Now {
            mono_ms: 1_000,
            wall_ms: 1_000_000,
        };
        let nodes = members
            .iter()
            .map(|m| {
                let mut cfg = NodeConfig::new(m.name.0.clone());
                cfg.partitions = partitions;
                cfg.rng_seed = 7;
                // liveness by silence is tested in membership; here only explicit
                // unreachability marks a node down
                cfg.probe_period_ms = 600_000;
                let storage = Arc::new(MemoryStorage::new());
                let node = Node::new(cfg, members.clone(), storage, now).unwrap();
                (m.name.clone(), node)
            })
            .collect();
        Cluster {
            nodes,
            now,
            wire: Vec::new(),
            replies: Vec::new(),
        }
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(&id(name)).unwrap()
    }

    fn drain(&mut self) {
        for (name, node) in self.nodes.iter_mut() {
            while let Some((to, msg)) = node.poll_transmit() {
                self.wire.push((name.clone(), to, msg));
            }
            while let Some((req, reply)) = node.poll_reply() {
                self.replies.push((name.clone(), req, reply));
            }
        }
    }

    fn client(&mut self, at: &str, req: u64, request: ClientRequest) {
        let now = self.now;
        self.node(at).handle_client(now, req, request);
        self.drain();
    }

    /// Delivers messages until the wire is empty, dropping those `keep` refuses.
    fn run(&mut self, keep: impl Fn(&NodeId, &NodeId, &PeerMessage) -> bool) {
        for _ in 0..1000 {
            if self.wire.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.wire);
            for (from, to, msg) in batch {
                if keep(&from, &to, &msg) {
                    let now = self.now;
                    self.nodes
                        .get_mut(&to)
                        .unwrap()
                        .handle_message(now, from, msg);
                }
            }
            self.drain();
        }
        panic!("messages kept flowing");
    }

    fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.wall_ms += ms;
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.handle_timeout(now);
        }
        self.drain();
    }

    fn reply(&mut self, req: u64) -> ClientReply {
        let pos = self
            .replies
            .iter()
            .position(|(_, r, _)| *r == req)
            .unwrap_or_else(|| panic!("no reply for request {req}"));
        self.replies.remove(pos).2
    }

    fn has_reply(&self, req: u64) -> bool {
        self.replies.iter().any(|(_, r, _)| *r == req)
    }
}

fn put(value: &str, w: u8) -> ClientRequest {
    put_with(value, w, false)
}

/// A put of `b/k` with W=`w`, strict (primaries only) or not.
fn put_with(value: &str, w: u8, strict: bool) -> ClientRequest {
    ClientRequest::Write {
        key: Key::new("b", "k"),
        op: Op::Put {
            value: value.as_bytes().to_vec(),
            context: Context::empty(),
        },
        opts: QuorumOpts {
            w: Some(w),
            strict,
            ..QuorumOpts::default()
        },
        id: None,
    }
}

/// The key's first `count` nodes in ring order.
fn ring_order(c: &mut Cluster, key: &Key, count: usize) -> Vec<NodeId> {
    let ring = c.node("n1").membership().ring().clone();
    let partition = ring.partition_of(crate::core::placement::ring::key_position(
        &key.bucket,
        &key.key,
    ));
    ring.primaries(partition, count)
        .into_iter()
        .cloned()
        .collect()
}

fn get(r: u8) -> ClientRequest {
    ClientRequest::Get {
        key: Key::new("b", "k"),
        opts: QuorumOpts {
            r: Some(r),
            ..QuorumOpts::default()
        },
    }
}

fn values(reply: &ClientReply) -> Vec<Vec<u8>> {
    match reply {
        ClientReply::Read {
            value: Some(ReadValue::Siblings { values, .. }),
            ..
        } => values.iter().map(|v| v.to_vec()).collect(),
        other => panic!("not a siblings read: {other:?}"),
    }
}

fn all(_: &NodeId, _: &NodeId, _: &PeerMessage) -> bool {
    true
}

#[test]
fn put_with_w2_then_get_with_r2_reads_the_value() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("hello", 2));
    c.run(all);
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
    c.client("n2", 2, get(2));
    c.run(all);
    assert_eq!(values(&c.reply(2)), vec![b"hello".to_vec()]);
}

#[test]
fn too_few_acks_fail_at_the_timeout_naming_who_acked_and_who_timed_out() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("v", 3));
    c.run(|_, to, _| to == &id("n1") || to == &id("n2"));
    assert!(!c.has_reply(1), "W=3 cannot be met with n3 silent");
    c.advance(2_500);
    let ClientReply::Error(RequestError::QuorumFailed(f)) = c.reply(1) else {
        panic!("expected a quorum failure");
    };
    assert_eq!(f.needed, 3);
    assert_eq!(f.acked, vec![id("n1"), id("n2")]);
    assert_eq!(f.timed_out, vec![id("n3")]);
}

#[test]
fn duplicate_acks_count_once_and_late_acks_are_ignored() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("v", 3));
    // deliver the replicate to n2 only, then hand its ack to n1 twice
    let wire = std::mem::take(&mut c.wire);
    let to_n2: Vec<_> = wire
        .into_iter()
        .filter(|(_, to, _)| to == &id("n2"))
        .collect();
    for (from, to, msg) in to_n2 {
        let now = c.now;
        c.node(to.as_str()).handle_message(now, from, msg);
    }
    c.drain();
    let acks = std::mem::take(&mut c.wire);
    assert_eq!(acks.len(), 1);
    for _ in 0..2 {
        let (from, to, msg) = acks[0].clone();
        let now = c.now;
        c.node(to.as_str()).handle_message(now, from, msg);
    }
    c.drain();
    assert!(!c.has_reply(1), "a duplicate ack must not complete W=3");
    c.advance(2_500);
    assert!(matches!(c.reply(1), ClientReply::Error(_)));
    // a late ack after the failure changes nothing and produces no second reply
    let (from, to, msg) = acks[0].clone();
    let now = c.now;
    c.node(to.as_str()).handle_message(now, from, msg);
    c.drain();
    assert!(c.replies.is_empty());
}

#[test]
fn invalid_n_w_r_are_refused_with_a_clear_error() {
    let mut c = Cluster::new(3);
    for (n, w) in [(Some(3), 4), (Some(3), 0), (Some(5), 2)] {
        let req = ClientRequest::Write {
            key: Key::new("b", "k"),
            op: Op::CounterAdd { delta: 1 },
            opts: QuorumOpts {
                n,
                w: Some(w),
                strict: true,
                ..QuorumOpts::default()
            },
            id: None,
        };
        c.client("n1", 9, req);
        match c.reply(9) {
            ClientReply::Error(RequestError::InvalidQuorum(text)) => {
                assert!(text.contains("n="), "{text}")
            }
            other => panic!("expected InvalidQuorum, got {other:?}"),
        }
    }
}

#[test]
fn a_down_node_is_covered_by_a_fallback_whose_hint_is_handed_off_on_return() {
    let mut c = Cluster::new(4);
    let key = Key::new("b", "k");
    let ring = c.node("n1").membership().ring().clone();
    let partition = ring.partition_of(crate::core::placement::ring::key_position(
        &key.bucket,
        &key.key,
    ));
    let primaries: Vec<NodeId> = ring.primaries(partition, 3).into_iter().cloned().collect();
    let outsider = ring.primaries(partition, 4)[3].clone();
    let (coord, down) = (primaries[0].clone(), primaries[2].clone());
    let now = c.now;
    c.node(coord.as_str()).handle_unreachable(now, down.clone());
    // strict: only 2 primaries are live, W=3 fails at once naming the down node
    let strict = put_with("v", 3, true);
    // the down primary is only suspected: a strict write still asks it (nobody may
    // stand in), asks it again after a failed send (the report may be stale), and
    // fails at its deadline naming it unreachable
    c.client(coord.as_str(), 1, strict);
    assert!(!c.has_reply(1));
    c.node(coord.as_str()).handle_unreachable(now, down.clone());
    c.drain();
    assert!(!c.has_reply(1));
    let down_s = down.clone();
    c.run(move |_, to, _| to != &down_s);
    c.advance(NodeConfig::new("d").request_timeout_ms);
    let ClientReply::Error(RequestError::QuorumFailed(f)) = c.reply(1) else {
        panic!("strict W=3 must fail");
    };
    assert_eq!(f.unreachable, vec![down.clone()]);
    c.wire.clear();
    // sloppy: the outsider stands in, and W=3 is met
    c.client(coord.as_str(), 2, put("v", 3));
    let down_c = down.clone();
    c.run(move |_, to, _| to != &down_c);
    assert!(matches!(c.reply(2), ClientReply::Written { .. }));
    assert_eq!(
        c.node(outsider.as_str())
            .replica()
            .hints()
            .for_primary(&down),
        1
    );
    assert!(
        c.node(down.as_str())
            .replica()
            .read(&key, None)
            .unwrap()
            .is_none()
    );
    // the primary is up (to the outsider): the next handoff round delivers and drops it
    c.advance(1_000);
    c.run(all);
    assert!(
        c.node(down.as_str())
            .replica()
            .read(&key, None)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        c.node(outsider.as_str())
            .replica()
            .hints()
            .for_primary(&down),
        0
    );
    assert_eq!(c.node(outsider.as_str()).stats().hints_delivered, 1);
}

#[test]
fn a_get_with_r_equal_n_repairs_a_replica_that_missed_the_write() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("v", 2));
    c.run(|_, to, _| to != &id("n3"));
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
    let key = Key::new("b", "k");
    assert!(c.node("n3").replica().read(&key, None).unwrap().is_none());
    c.client("n1", 2, get(3));
    c.run(all);
    assert_eq!(values(&c.reply(2)), vec![b"v".to_vec()]);
    assert!(c.node("n3").replica().read(&key, None).unwrap().is_some());
    assert!(c.node("n1").stats().read_repairs >= 1);
}

#[test]
fn a_node_outside_the_preference_list_forwards_to_a_replica() {
    let mut c = Cluster::new(5);
    let key = Key::new("b", "k");
    let ring = c.node("n1").membership().ring().clone();
    let partition = ring.partition_of(crate::core::placement::ring::key_position(
        &key.bucket,
        &key.key,
    ));
    let outsider = ring.primaries(partition, 5)[4].clone();
    c.client(outsider.as_str(), 1, put("fwd", 2));
    c.run(all);
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
    c.client(outsider.as_str(), 2, get(2));
    c.run(all);
    assert_eq!(values(&c.reply(2)), vec![b"fwd".to_vec()]);
    assert!(
        c.node(outsider.as_str())
            .replica()
            .read(&key, None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_get_whose_coordinator_is_silent_fails_over_to_the_next_replica_and_a_write_without_an_id_does_not()
 {
    let mut c = Cluster::new(5);
    let key = Key::new("b", "k");
    let ring = c.node("n1").membership().ring().clone();
    let partition = ring.partition_of(crate::core::placement::ring::key_position(
        &key.bucket,
        &key.key,
    ));
    let order = ring.primaries(partition, 5);
    let (coordinator, outsider) = (order[0].clone(), order[4].clone());
    c.client(outsider.as_str(), 1, put("v", 3));
    c.run(all);
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
    // the first replica is alive in everyone's view but answers nothing
    let silent = coordinator.clone();
    let not_silent = move |from: &NodeId, _: &NodeId, _: &PeerMessage| from != &silent;
    c.client(outsider.as_str(), 2, get(2));
    c.run(&not_silent);
    assert!(!c.has_reply(2));
    // the forward's deadline (1.5 x the request timeout) passes: the get moves on
    c.advance(3_100);
    c.run(&not_silent);
    assert_eq!(values(&c.reply(2)), vec![b"v".to_vec()]);
    // the silent coordinator is suspected now, so the next get is not forwarded to it
    c.client(outsider.as_str(), 4, get(2));
    c.run(&not_silent);
    assert_eq!(values(&c.reply(4)), vec![b"v".to_vec()]);
    // once the suspicion expires, it is tried again: a write is never sent twice, so it
    // fails, naming the coordinator
    c.advance(crate::core::membership::LOCAL_SUSPICION_MS);
    c.run(&not_silent);
    c.client(outsider.as_str(), 3, put("w", 2));
    c.run(&not_silent);
    c.advance(3_100);
    c.run(&not_silent);
    match c.reply(3) {
        ClientReply::Error(RequestError::Forward {
            coordinator: who, ..
        }) => {
            assert_eq!(who, coordinator)
        }
        other => panic!("expected a forward failure, got {other:?}"),
    }
}

#[test]
fn a_counter_increment_with_an_id_fails_over_and_counts_once_when_the_silent_coordinator_applied_it()
 {
    let mut c = Cluster::new(5);
    let key = Key::new("b", "k");
    let ring = c.node("n1").membership().ring().clone();
    let partition = ring.partition_of(crate::core::placement::ring::key_position(
        &key.bucket,
        &key.key,
    ));
    let order = ring.primaries(partition, 5);
    let (coordinator, outsider) = (order[0].clone(), order[4].clone());
    let incr = |seq: u64| ClientRequest::Write {
        key: key.clone(),
        op: Op::CounterAdd { delta: 5 },
        opts: QuorumOpts {
            w: Some(2),
            ..QuorumOpts::default()
        },
        id: Some(OpId { client: 9, seq }),
    };
    // The coordinator applies the increment, but nothing it sends arrives: not the
    // replication, not its answer.
    let silent = coordinator.clone();
    let not_silent = move |from: &NodeId, _: &NodeId, _: &PeerMessage| from != &silent;
    c.client(outsider.as_str(), 1, incr(1));
    c.run(&not_silent);
    assert!(!c.has_reply(1));
    c.advance(3_100);
    c.run(&not_silent);
    // The forward moved on to the next replica, which applied it again and acked.
    let ClientReply::Written { value, .. } = c.reply(1) else {
        panic!("the increment fails over, got {:?}", c.reply(1));
    };
    assert_eq!(value, ReadValue::Counter { value: 5 });
    // The coordinator speaks again: merging both applications counts the id once.
    c.client(outsider.as_str(), 2, get(3));
    c.run(all);
    c.advance(3_100);
    c.run(all);
    let counter = |r: &ClientReply| match r {
        ClientReply::Read {
            value: Some(ReadValue::Counter { value }),
            ..
        } => *value,
        other => panic!("expected a counter read, got {other:?}"),
    };
    assert_eq!(counter(&c.reply(2)), 5);
    let held = c
        .node(coordinator.as_str())
        .replica()
        .read(&key, None)
        .unwrap()
        .expect("the coordinator applied the first try");
    assert_eq!(held.read(), ReadValue::Counter { value: 5 });
    // A retry of the same id through any node changes nothing.
    c.client(order[2].as_str(), 3, incr(1));
    c.run(all);
    let ClientReply::Written { value, .. } = c.reply(3) else {
        panic!("a repeated id is acknowledged, got {:?}", c.reply(3));
    };
    assert_eq!(value, ReadValue::Counter { value: 5 });
}

#[test]
fn an_unreachable_replica_is_asked_again_then_named_when_the_request_fails() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("v", 3));
    let now = c.now;
    c.node("n1").handle_unreachable(now, id("n3"));
    c.drain();
    // W=3 needs n3 and no node can stand in; the report may concern an older message,
    // so the write waits for its re-asks rather than failing at once
    assert!(!c.has_reply(1));
    c.wire.clear();
    c.advance(NodeConfig::new("d").request_timeout_ms);
    let ClientReply::Error(RequestError::QuorumFailed(f)) = c.reply(1) else {
        panic!("expected a quorum failure");
    };
    assert_eq!(f.unreachable, vec![id("n3")]);
    assert_eq!(f.acked, vec![id("n1")]);
    assert_eq!(f.timed_out, vec![id("n2")]);
}

#[test]
fn a_replica_unreachable_again_after_the_last_re_ask_fails_the_request_at_once() {
    let mut c = Cluster::new(3);
    c.client("n1", 1, put("v", 3));
    c.wire.clear();
    // past the last re-ask, a report counts the node out at once
    let timeout_ms = NodeConfig::new("d").request_timeout_ms;
    let mut waited_ms = 0;
    while waited_ms + crate::core::request::reask::every_ms(timeout_ms) < timeout_ms {
        let step = crate::core::request::reask::every_ms(timeout_ms);
        c.advance(step);
        c.wire.clear();
        waited_ms += step;
    }
    assert!(!c.has_reply(1));
    let now = c.now;
    c.node("n1").handle_unreachable(now, id("n3"));
    c.drain();
    let ClientReply::Error(RequestError::QuorumFailed(f)) = c.reply(1) else {
        panic!("expected a quorum failure");
    };
    assert_eq!(f.unreachable, vec![id("n3")]);
}

#[test]
fn anti_entropy_alone_repairs_replicas_that_missed_writes_without_any_read() {
    let mut c = Cluster::new(3);
    // let the start-up tree rebuilds finish
    c.advance(1);
    // n3 misses every write, and there is no fallback to keep a hint
    let keys = write_missing_n3(&mut c, 40);
    let missing = |c: &mut Cluster| {
        keys.iter()
            .filter(|k| c.node("n3").replica().read(k, None).unwrap().is_none())
            .count()
    };
    assert_eq!(missing(&mut c), keys.len());
    let mut rounds = 0;
    while missing(&mut c) > 0 {
        rounds += 1;
        assert!(rounds <= 10, "anti-entropy did not converge in 10 rounds");
        c.advance(1_300);
        c.run(all);
    }
    println!(
        "anti-entropy repaired {} keys in {rounds} rounds",
        keys.len()
    );
    assert!(c.node("n3").ae_stats().keys_sent + c.node("n1").ae_stats().keys_sent > 0);
    // and once in sync, further rounds find nothing to send
    let sent = c.node("n1").ae_stats().keys_sent + c.node("n2").ae_stats().keys_sent;
    c.advance(1_300);
    c.run(all);
    c.advance(1_300);
    c.run(all);
    assert_eq!(
        c.node("n1").ae_stats().keys_sent + c.node("n2").ae_stats().keys_sent,
        sent
    );
}

/// Writes `count` counter keys through n1 with W=2 while n3 receives nothing.
fn write_missing_n3(c: &mut Cluster, count: usize) -> Vec<Key> {
    let keys: Vec<Key> = (0..count)
        .map(|i| Key::new("ae", format!("k{i}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let req = ClientRequest::Write {
            key: key.clone(),
            op: Op::CounterAdd { delta: 1 },
            opts: QuorumOpts {
                w: Some(2),
                ..QuorumOpts::default()
            },
            id: None,
        };
        c.client("n1", 1_000 + i as u64, req);
        c.run(|_, to, _| to != &id("n3"));
    }
    keys
}

/// Advances in 100 ms steps, delivering everything, until n3 holds every key; returns
/// the virtual time that took, or panics past `limit_ms`.
fn converge_n3(c: &mut Cluster, keys: &[Key], limit_ms: u64) -> u64 {
    let missing = |c: &mut Cluster| {
        keys.iter()
            .filter(|k| c.node("n3").replica().read(k, None).unwrap().is_none())
            .count()
    };
    assert_eq!(missing(c), keys.len(), "n3 missed every write");
    let mut waited_ms = 0;
    while missing(c) > 0 {
        assert!(
            waited_ms <= limit_ms,
            "n3 still lacks {} of {} keys after {waited_ms} ms",
            missing(c),
            keys.len()
        );
        c.advance(100);
        c.run(all);
        waited_ms += 100;
    }
    waited_ms
}

/// n1 and n2 lose n3 (suspected, so it gets none of the writes), 500 writes go through
/// n1, then n3 speaks to both again; returns the keys it missed.
fn n3_misses_500_writes_and_comes_back(c: &mut Cluster) -> Vec<Key> {
    let now = c.now;
    for name in ["n1", "n2"] {
        c.node(name).handle_unreachable(now, id("n3"));
    }
    let keys = write_missing_n3(c, 500);
    c.node("n3").handle_unreachable(now, id("n1"));
    let now = c.now;
    for name in ["n1", "n2"] {
        c.node(name)
            .handle_message(now, id("n3"), PeerMessage::Pong { nonce: 0 });
    }
    c.drain();
    keys
}

#[test]
fn round_robin_repairs_a_replica_that_missed_500_writes_within_30_s_at_1024_partitions() {
    let mut c = Cluster::with_partitions(3, 1024);
    // the start-up tree rebuilds scan an empty store, and the first tick's whole
    // comparisons with every member (a node that starts compares everything) pass
    c.advance(1);
    c.advance(1_300);
    c.run(all);
    let keys = write_missing_n3(&mut c, 500);
    // n3 was never seen down: only the regular rounds compare, each (partition, peer)
    // pair in turn
    let took_ms = converge_n3(&mut c, &keys, 30_000);
    println!("500 keys repaired on a silent replica in {took_ms} ms of anti-entropy");
}

#[test]
fn a_peer_seen_up_again_is_compared_whole_at_the_next_tick() {
    let mut c = Cluster::with_partitions(3, 1024);
    // past the start-up comparisons and their per-peer rate limit
    c.advance(1);
    for _ in 0..9 {
        c.advance(1_300);
        c.run(all);
    }
    // n3 speaks again: n1 and n2 see it up and sweep everything they share with it
    let keys = n3_misses_500_writes_and_comes_back(&mut c);
    let took_ms = converge_n3(&mut c, &keys, 3_000);
    println!("500 keys repaired on a returning replica in {took_ms} ms");
}

#[test]
fn a_peer_back_soon_after_the_start_up_sweep_is_swept_once_the_rate_limit_passes() {
    let mut c = Cluster::with_partitions(3, 1024);
    // the first tick's whole comparisons with every member start the per-peer limit
    c.advance(1);
    c.advance(1_300);
    c.run(all);
    let keys = n3_misses_500_writes_and_comes_back(&mut c);
    // owed a sweep that waits out the rest of AE_SWEEP_INTERVAL_MIN_MS, far sooner than
    // the round robin's passes (about 27 s, the test above)
    let took_ms = converge_n3(&mut c, &keys, 12_000);
    println!("500 keys repaired on a replica back within the sweep limit in {took_ms} ms");
}

mod reask;
mod suspicion;
