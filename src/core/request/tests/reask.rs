//! Re-asks on the hand-driven cluster of the parent module: a lost replication or a
//! stale "unreachable" report no longer fails a request whose replicas are all there.

use std::cell::Cell;

use super::*;
use crate::core::request::reask::{REASKS_PER_TIMEOUT, every_ms};

fn first_reask_ms() -> u64 {
    every_ms(NodeConfig::new("defaults").request_timeout_ms)
}

#[test]
fn a_lost_replication_is_sent_again_and_a_w3_write_is_met_before_its_deadline() {
    let mut c = Cluster::new(3);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 3);
    let (coord, victim) = (order[0].clone(), order[2].clone());
    // The first replication to the victim is lost, silently.
    let dropped = Cell::new(false);
    let lose_once = |_: &NodeId, to: &NodeId, msg: &PeerMessage| {
        let lose = to == &victim && matches!(msg, PeerMessage::Replicate { .. }) && !dropped.get();
        if lose {
            dropped.set(true);
        }
        !lose
    };
    c.client(coord.as_str(), 1, put("a", 3));
    c.run(lose_once);
    assert!(dropped.get());
    assert!(!c.has_reply(1), "W=3 waits for the victim");
    c.advance(first_reask_ms());
    c.run(all);
    assert!(
        matches!(c.reply(1), ClientReply::Written { .. }),
        "the re-ask reaches the victim: {:?}",
        c.reply(1)
    );
    assert!(first_reask_ms() * REASKS_PER_TIMEOUT <= NodeConfig::new("d").request_timeout_ms);
}

#[test]
fn a_stale_unreachable_report_does_not_fail_a_strict_write_whose_replica_answers() {
    let mut c = Cluster::new(3);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 3);
    let (coord, victim) = (order[0].clone(), order[2].clone());
    let strict = put_with("v", 3, true);
    // The victim's replication and ack are held back; meanwhile the transport reports
    // it unreachable (about an older message), which used to fail the write at once.
    let held = victim.clone();
    let hold = move |from: &NodeId, to: &NodeId, _: &PeerMessage| from != &held && to != &held;
    c.client(coord.as_str(), 1, strict);
    c.run(&hold);
    let now = c.now;
    c.node(coord.as_str())
        .handle_unreachable(now, victim.clone());
    c.drain();
    c.run(&hold);
    assert!(
        !c.has_reply(1),
        "a strict W=3 write still waits on the victim"
    );
    // The next re-ask reaches it, and it acks.
    c.advance(first_reask_ms());
    c.run(all);
    assert!(
        matches!(c.reply(1), ClientReply::Written { .. }),
        "got {:?}",
        c.reply(1)
    );
}

#[test]
fn a_sloppy_write_asks_a_stand_in_at_once_for_a_replica_reported_unreachable() {
    let mut c = Cluster::new(4);
    let key = Key::new("b", "k");
    let order = ring_order(&mut c, &key, 4);
    let (coord, victim, spare) = (order[0].clone(), order[2].clone(), order[3].clone());
    let gone = victim.clone();
    let alive = move |from: &NodeId, to: &NodeId, _: &PeerMessage| from != &gone && to != &gone;
    c.client(coord.as_str(), 1, put("a", 3));
    c.run(&alive);
    assert!(!c.has_reply(1));
    let now = c.now;
    c.node(coord.as_str())
        .handle_unreachable(now, victim.clone());
    c.drain();
    c.run(&alive);
    assert!(
        matches!(c.reply(1), ClientReply::Written { .. }),
        "the spare stands in without waiting for a deadline: {:?}",
        c.reply(1)
    );
    assert_eq!(
        c.node(spare.as_str())
            .replica()
            .hints()
            .for_primary(&victim),
        1
    );
}
