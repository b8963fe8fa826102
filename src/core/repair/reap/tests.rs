//! Reaping driven by hand: three nodes (all primaries of every key), every message
//! delivered or dropped by the test, time advanced explicitly.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::node::{MemberSpec, Node, NodeConfig, Now};
use crate::core::object::{Context, Object, Op, ReadValue};
use crate::core::placement::ring::{NodeId, key_position};
use crate::proto::{ClientReply, ClientRequest, Key, PeerMessage, QuorumOpts};
use crate::storage::MemoryStorage;

/// Grace period the tests configure.
const GRACE_MS: u64 = 10_000;
/// Anti-entropy (and reap) tick period the tests configure.
const TICK_MS: u64 = 1_000;
/// Most delivery rounds before a test calls the messages a livelock.
const ROUNDS_MAX: usize = 1_000;

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    now: Now,
    wire: Vec<(NodeId, NodeId, PeerMessage)>,
    replies: Vec<(u64, ClientReply)>,
    /// While set, `Reap` messages are set aside in `held` instead of delivered.
    hold_reaps: bool,
    held: Vec<(NodeId, NodeId, PeerMessage)>,
}

fn id(s: &str) -> NodeId {
    NodeId::from(s)
}

fn key() -> Key {
    Key::new("b", "doomed")
}

fn is_ae(msg: &PeerMessage) -> bool {
    matches!(
        msg,
        PeerMessage::AeRoots { .. }
            | PeerMessage::AeBranches { .. }
            | PeerMessage::AeLeaves { .. }
            | PeerMessage::AeKeys { .. }
            | PeerMessage::AePull { .. }
            | PeerMessage::AeSketch { .. }
            | PeerMessage::AeBloom { .. }
            | PeerMessage::AeBloomReply { .. }
            | PeerMessage::AeBloomNext { .. }
    )
}

impl Cluster {
    fn new() -> Cluster {
        let members: Vec<MemberSpec> = (1..=3)
            .map(|i| MemberSpec::new(format!("n{i}"), format!("127.0.0.1:{}", 7100 + i)))
            .collect();
        let now = Now {
            mono_ms: 1_000,
            wall_ms: 5_000_000,
        };
        let nodes = members
            .iter()
            .map(|m| {
                let mut cfg = NodeConfig::new(m.name.0.clone());
                cfg.partitions = 64;
                cfg.rng_seed = 3;
                cfg.probe_period_ms = 600_000;
                cfg.anti_entropy_interval_ms = TICK_MS;
                cfg.tombstone_grace_ms = GRACE_MS;
                let storage = Arc::new(MemoryStorage::new());
                let node = Node::new(cfg, members.clone(), storage, now).unwrap();
                (m.name.clone(), node)
            })
            .collect();
        let mut c = Cluster {
            nodes,
            now,
            wire: Vec::new(),
            replies: Vec::new(),
            hold_reaps: false,
            held: Vec::new(),
        };
        // the start-up tree rebuild runs on the first timer
        c.advance(0, |_, _, _| true);
        c
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(&id(name)).unwrap()
    }

    fn drain(&mut self) {
        for (name, node) in self.nodes.iter_mut() {
            while let Some((to, msg)) = node.poll_transmit() {
                self.wire.push((name.clone(), to, msg));
            }
            while let Some(reply) = node.poll_reply() {
                self.replies.push(reply);
            }
        }
    }

    /// Delivers until the wire is empty; `keep` decides each message's fate.
    fn run(&mut self, keep: impl Fn(&NodeId, &NodeId, &PeerMessage) -> bool) {
        for _ in 0..ROUNDS_MAX {
            if self.wire.is_empty() {
                return;
            }
            for (from, to, msg) in std::mem::take(&mut self.wire) {
                if self.hold_reaps && matches!(msg, PeerMessage::Reap { .. }) {
                    self.held.push((from, to, msg));
                } else if keep(&from, &to, &msg) {
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

    /// Advances time by `ms`, fires timers, and delivers what they send through `keep`.
    fn advance(&mut self, ms: u64, keep: impl Fn(&NodeId, &NodeId, &PeerMessage) -> bool) {
        self.now.mono_ms += ms;
        self.now.wall_ms += ms;
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.handle_timeout(now);
        }
        self.drain();
        self.run(keep);
    }

    /// Advances `total_ms` in reap ticks, delivering through `keep`.
    fn tick_for(&mut self, total_ms: u64, keep: impl Fn(&NodeId, &NodeId, &PeerMessage) -> bool) {
        for _ in 0..total_ms.div_ceil(TICK_MS) {
            self.advance(TICK_MS, &keep);
        }
    }

    fn request(
        &mut self,
        at: &str,
        req: u64,
        request: ClientRequest,
        keep: impl Fn(&NodeId, &NodeId, &PeerMessage) -> bool,
    ) -> ClientReply {
        let now = self.now;
        self.node(at).handle_client(now, req, request);
        self.drain();
        self.run(keep);
        let pos = self
            .replies
            .iter()
            .position(|(r, _)| *r == req)
            .unwrap_or_else(|| panic!("no reply for request {req}"));
        self.replies.remove(pos).1
    }

    fn stored(&self, name: &str) -> Option<Object> {
        self.nodes[&id(name)].replica().read(&key(), None).unwrap()
    }

    fn reaped(&self) -> u64 {
        self.nodes.values().map(|n| n.tombstones_reaped()).sum()
    }

    fn root(&self, name: &str) -> u64 {
        let node = &self.nodes[&id(name)];
        let ring = node.membership().ring();
        let p = ring.partition_of(key_position(&key().bucket, &key().key));
        node.replica().trees().root(p)
    }
}

fn all(_: &NodeId, _: &NodeId, _: &PeerMessage) -> bool {
    true
}

fn opts(w: u8) -> QuorumOpts {
    QuorumOpts {
        w: Some(w),
        r: Some(3),
        ..QuorumOpts::default()
    }
}

fn put(value: &str, context: Context, w: u8) -> ClientRequest {
    ClientRequest::Write {
        key: key(),
        op: Op::Put {
            value: value.as_bytes().to_vec(),
            context,
        },
        opts: opts(w),
        id: None,
    }
}

fn delete(context: Context, w: u8) -> ClientRequest {
    ClientRequest::Write {
        key: key(),
        op: Op::Delete { context },
        opts: opts(w),
        id: None,
    }
}

fn get() -> ClientRequest {
    ClientRequest::Get {
        key: key(),
        opts: opts(3),
    }
}

/// (found, live values) of a read reply.
fn read(reply: &ClientReply) -> (bool, Vec<Vec<u8>>) {
    match reply {
        ClientReply::Read { found, value, .. } => {
            let values = match value {
                Some(ReadValue::Siblings { values, .. }) => {
                    values.iter().map(|v| v.to_vec()).collect()
                }
                None => Vec::new(),
                other => panic!("not a siblings read: {other:?}"),
            };
            (*found, values)
        }
        other => panic!("not a read reply: {other:?}"),
    }
}

fn context_of(reply: &ClientReply) -> Context {
    match reply {
        ClientReply::Read {
            value: Some(ReadValue::Siblings { context, .. }),
            ..
        } => context.clone(),
        other => panic!("no context in {other:?}"),
    }
}

/// Writes "v" everywhere, then deletes it with n3 cut off from the delete.
fn deleted_while_n3_missed_it(c: &mut Cluster) {
    let written = c.request("n1", 1, put("v", Context::empty(), 3), all);
    assert!(
        matches!(written, ClientReply::Written { .. }),
        "{written:?}"
    );
    let before = c.request("n1", 2, get(), all);
    let gone = c.request("n1", 3, delete(context_of(&before), 2), |_, to, m| {
        to != &id("n3") || !matches!(m, PeerMessage::Replicate { .. })
    });
    assert!(matches!(gone, ClientReply::Written { .. }), "{gone:?}");
    assert!(c.stored("n1").unwrap().is_tombstone());
    assert!(c.stored("n2").unwrap().is_tombstone());
    assert!(
        !c.stored("n3").unwrap().is_tombstone(),
        "n3 missed the delete"
    );
}

#[test]
fn no_reap_while_a_primary_lacks_the_tombstone() {
    let mut c = Cluster::new();
    deleted_while_n3_missed_it(&mut c);
    // anti-entropy is held back, so n3 keeps the old value for three grace periods
    c.tick_for(3 * GRACE_MS, |_, _, m| !is_ae(m));
    assert_eq!(c.reaped(), 0);
    assert!(c.stored("n1").unwrap().is_tombstone());
    assert!(c.stored("n2").unwrap().is_tombstone());
}

#[test]
fn no_reap_before_every_primary_has_held_the_tombstone_for_the_grace_period() {
    let mut c = Cluster::new();
    deleted_while_n3_missed_it(&mut c);
    c.tick_for(2 * GRACE_MS, |_, _, m| !is_ae(m));
    // now anti-entropy brings the tombstone to n3: n1 and n2 are long past grace, n3
    // has only just received it
    c.tick_for(3 * TICK_MS, all);
    assert!(
        c.stored("n3").unwrap().is_tombstone(),
        "anti-entropy spread it"
    );
    c.tick_for(GRACE_MS - 5 * TICK_MS, all);
    assert_eq!(c.reaped(), 0, "n3 has not held it for the grace period yet");
    assert!(c.stored("n3").is_some());
}

#[test]
fn all_three_reap_after_anti_entropy_spreads_the_tombstone_and_the_key_reads_not_found() {
    let mut c = Cluster::new();
    let empty_root = c.root("n1");
    deleted_while_n3_missed_it(&mut c);
    c.tick_for(GRACE_MS + 6 * TICK_MS, all);
    assert_eq!(c.reaped(), 3, "each primary removed its copy once");
    for n in ["n1", "n2", "n3"] {
        assert!(c.stored(n).is_none(), "{n} still holds the key");
        assert_eq!(c.root(n), empty_root, "{n}'s Merkle tree forgot the key");
    }
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        let reply = c.request(n, 10 + i as u64, get(), all);
        assert_eq!(read(&reply), (false, vec![]), "read at {n}");
    }
    // the key can live again, and its new life is not covered by the old one's context
    let stale = Context::empty();
    let again = c.request("n2", 20, put("second life", stale, 3), all);
    assert!(matches!(again, ClientReply::Written { .. }), "{again:?}");
    let reply = c.request("n3", 21, get(), all);
    assert_eq!(read(&reply), (true, vec![b"second life".to_vec()]));
}

#[test]
fn a_conditional_reap_keeps_a_key_rewritten_after_the_check() {
    let mut c = Cluster::new();
    let written = c.request("n1", 1, put("v", Context::empty(), 3), all);
    assert!(matches!(written, ClientReply::Written { .. }));
    let before = c.request("n1", 2, get(), all);
    let gone = c.request("n1", 3, delete(context_of(&before), 3), all);
    assert!(matches!(gone, ClientReply::Written { .. }));
    // past grace every primary confirms; the initiator reaps its own copy, and its Reap
    // messages to the other two are held on the wire
    c.hold_reaps = true;
    c.tick_for(GRACE_MS + 2 * TICK_MS, |_, _, m| !is_ae(m));
    let names = ["n1", "n2", "n3"];
    let initiator: Vec<&str> = names
        .into_iter()
        .filter(|n| c.stored(n).is_none())
        .collect();
    assert_eq!(initiator.len(), 1, "exactly the first primary reaped");
    assert_eq!(c.held.len(), 2, "one Reap for each other primary");
    // meanwhile a client rewrites the key through another primary, reaching it alone
    let writer = names
        .into_iter()
        .find(|n| *n != initiator[0])
        .expect("three nodes");
    let ReadValue::Siblings { context, .. } = c.stored(writer).unwrap().read() else {
        panic!("a siblings tombstone");
    };
    let rewritten = c.request(writer, 4, put("rewritten", context, 1), |_, _, m| {
        !matches!(m, PeerMessage::Replicate { .. }) && !is_ae(m)
    });
    assert!(
        matches!(rewritten, ClientReply::Written { .. }),
        "{rewritten:?}"
    );
    // now the held Reap messages arrive: the third primary reaps, the writer keeps its
    // rewrite because its digest changed
    c.hold_reaps = false;
    c.wire = std::mem::take(&mut c.held);
    c.run(|_, _, m| !is_ae(m));
    assert_eq!(c.reaped(), 2);
    assert!(
        !c.stored(writer)
            .expect("the rewrite survives")
            .is_tombstone()
    );
    // anti-entropy brings the rewrite to the replicas that reaped
    c.tick_for(6 * TICK_MS, all);
    for (i, n) in names.iter().enumerate() {
        let reply = c.request(n, 30 + i as u64, get(), all);
        assert_eq!(
            read(&reply),
            (true, vec![b"rewritten".to_vec()]),
            "read at {n}"
        );
    }
}
