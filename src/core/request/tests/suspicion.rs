//! Local suspicion and the requests that route around it, on the hand-driven cluster of
//! the parent module: a failed RPC suspects a peer at once, a coordinator then never
//! waits on it when another node can answer, and hints drain as soon as a primary is
//! heard from again.

use super::*;
use crate::core::membership::LOCAL_SUSPICION_MS;
use crate::core::placement::ring::Reach;

fn reach(c: &mut Cluster, at: &str, of: &NodeId) -> Reach {
    let now_ms = c.now.mono_ms;
    c.node(at).membership().reach(of, now_ms)
}

/// Just past a request's deadline at the default settings.
fn past_deadline_ms() -> u64 {
    NodeConfig::new("defaults").request_timeout_ms + 1
}

fn get_key(key: &Key, r: u8) -> ClientRequest {
    ClientRequest::Get {
        key: key.clone(),
        opts: QuorumOpts {
            r: Some(r),
            ..QuorumOpts::default()
        },
    }
}

#[test]
fn a_failed_send_suspects_the_peer_until_it_speaks_or_the_suspicion_expires() {
    let mut c = Cluster::new(3);
    let now = c.now;
    c.node("n1").handle_unreachable(now, id("n3"));
    assert_eq!(reach(&mut c, "n1", &id("n3")), Reach::Suspect);
    assert_eq!(c.node("n1").stats().suspicions, 1);
    c.client("n1", 1, ClientRequest::Status);
    let ClientReply::Status(status) = c.reply(1) else {
        panic!("expected a status");
    };
    let n3 = status.members.iter().find(|m| m.name == id("n3"));
    assert_eq!(n3.map(|m| m.state.as_str()), Some("suspect"));
    // any message from it clears the suspicion
    c.node("n1")
        .handle_message(now, id("n3"), PeerMessage::Pong { nonce: 1 });
    assert_eq!(reach(&mut c, "n1", &id("n3")), Reach::Up);
    // and a suspicion nobody renews or clears ends on its own
    c.node("n1").handle_unreachable(now, id("n3"));
    c.drain();
    c.advance(LOCAL_SUSPICION_MS - 1);
    assert_eq!(reach(&mut c, "n1", &id("n3")), Reach::Suspect);
    c.advance(1);
    assert_eq!(reach(&mut c, "n1", &id("n3")), Reach::Up);
}

#[test]
fn a_replica_that_lets_a_write_time_out_is_suspected_and_the_next_write_does_not_wait_on_it() {
    let mut c = Cluster::new(4);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 4);
    let (coord, silent) = (order[0].clone(), order[2].clone());
    let mute = silent.clone();
    let not_silent = move |from: &NodeId, _: &NodeId, _: &PeerMessage| from != &mute;
    // W=3 needs the silent replica: the write times out, and the coordinator suspects it
    c.client(coord.as_str(), 1, put("a", 3));
    c.run(&not_silent);
    assert!(!c.has_reply(1));
    c.advance(past_deadline_ms());
    c.run(&not_silent);
    assert!(matches!(
        c.reply(1),
        ClientReply::Error(RequestError::QuorumFailed(_))
    ));
    assert_eq!(reach(&mut c, coord.as_str(), &silent), Reach::Suspect);
    // the next W=3 write goes to the fourth node in its place, with a hint, and is met
    // without waiting for any deadline
    c.client(coord.as_str(), 2, put("b", 3));
    c.run(&not_silent);
    assert!(matches!(c.reply(2), ClientReply::Written { .. }));
    assert_eq!(
        c.node(order[3].as_str())
            .replica()
            .hints()
            .for_primary(&silent),
        1
    );
}

#[test]
fn a_get_does_not_wait_on_a_suspected_replica_when_a_fallback_can_answer() {
    let mut c = Cluster::new(5);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 5);
    let (coord, dead) = (order[0].clone(), order[1].clone());
    c.client(coord.as_str(), 1, put("v", 3));
    c.run(all);
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
    // the replica dies; a failed send tells the coordinator
    let now = c.now;
    c.node(coord.as_str()).handle_unreachable(now, dead.clone());
    let gone = dead.clone();
    let alive = move |from: &NodeId, to: &NodeId, _: &PeerMessage| from != &gone && to != &gone;
    // R=3 sloppy: a fallback answers for it at once (its copy is empty, the other two
    // primaries hold the value), no deadline passes
    c.client(coord.as_str(), 2, get_key(&key, 3));
    c.run(&alive);
    assert_eq!(values(&c.reply(2)), vec![b"v".to_vec()]);
    // strict R=3 cannot use a fallback: the suspect is asked, and its silence fails the
    // read at the deadline
    let strict = ClientRequest::Get {
        key: key.clone(),
        opts: QuorumOpts {
            r: Some(3),
            strict: true,
            ..QuorumOpts::default()
        },
    };
    c.client(coord.as_str(), 3, strict);
    c.run(&alive);
    assert!(!c.has_reply(3));
    c.advance(past_deadline_ms());
    c.run(&alive);
    let ClientReply::Error(RequestError::QuorumFailed(f)) = c.reply(3) else {
        panic!("strict R=3 without a primary must fail");
    };
    assert_eq!(f.timed_out, vec![dead]);
}

#[test]
fn a_forward_skips_a_suspected_coordinator() {
    let mut c = Cluster::new(5);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 5);
    let (first, second, outsider) = (order[0].clone(), order[1].clone(), order[4].clone());
    let now = c.now;
    c.node(outsider.as_str())
        .handle_unreachable(now, first.clone());
    c.client(outsider.as_str(), 1, put("v", 2));
    let forwards: Vec<&NodeId> = c
        .wire
        .iter()
        .filter(|(from, _, m)| from == &outsider && matches!(m, PeerMessage::Forward { .. }))
        .map(|(_, to, _)| to)
        .collect();
    assert_eq!(
        forwards,
        vec![&second],
        "forwarded to the first live primary"
    );
    c.run(all);
    assert!(matches!(c.reply(1), ClientReply::Written { .. }));
}

#[test]
fn hundreds_of_hints_drain_within_2_s_of_their_primary_being_heard_from() {
    /// One-way delay of every message, in virtual ms.
    const HOP_MS: u64 = 5;
    /// How long the primary may take to get every hint.
    const DRAIN_LIMIT_MS: u64 = 2_000;
    let mut c = Cluster::new(4);
    let others = ["n1", "n2", "n3"];
    let now = c.now;
    for name in &others {
        c.node(name).handle_unreachable(now, id("n4"));
    }
    c.drain();
    // 1000 writes while n4 hears nothing: the fallbacks keep a hint for each of its keys,
    // a few hundred each (several handoff windows)
    for i in 0..1_000u64 {
        let req = ClientRequest::Write {
            key: Key::new("h", format!("k{i}")),
            op: Op::CounterAdd { delta: 1 },
            opts: QuorumOpts {
                w: Some(2),
                ..QuorumOpts::default()
            },
            id: None,
        };
        c.client("n1", 10_000 + i, req);
        c.run(|_, to, _| to != &id("n4"));
    }
    let hints = |c: &mut Cluster| -> u64 {
        others
            .iter()
            .map(|n| c.node(n).replica().hints().for_primary(&id("n4")))
            .sum()
    };
    let held = hints(&mut c);
    assert!(held >= 600, "only {held} hints were taken");
    // n4 speaks to everyone: each holder starts handing its hints over at once
    let now = c.now;
    for name in &others {
        c.node(name)
            .handle_message(now, id("n4"), PeerMessage::Pong { nonce: 2 });
    }
    c.drain();
    let mut waited_ms = 0;
    while hints(&mut c) > 0 {
        assert!(
            waited_ms <= DRAIN_LIMIT_MS,
            "{} of {held} hints still held {waited_ms} ms after n4 was heard from",
            hints(&mut c)
        );
        // one hop: deliver what is on the wire, then let time pass
        let batch = std::mem::take(&mut c.wire);
        for (from, to, msg) in batch {
            let now = c.now;
            c.node(to.as_str()).handle_message(now, from, msg);
        }
        c.drain();
        c.advance(HOP_MS);
        waited_ms += HOP_MS;
    }
    println!("{held} hints drained {waited_ms} ms after their primary was heard from");
    let delivered: u64 = others
        .iter()
        .map(|n| c.node(n).stats().hints_delivered)
        .sum();
    assert_eq!(delivered, held);
}
