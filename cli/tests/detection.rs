//! How fast a survivor notices a peer killed with SIGKILL, on real processes over QUIC.
//!
//! Nothing is sent to the victim after the kill: the survivors must notice it from the
//! silence of their connections to it (the QUIC idle timeout, `IDLE_TIMEOUT_MS`, with
//! keep-alives) and from SWIM. The time from the kill until a survivor's `status` no
//! longer shows the victim `up` (it shows `suspect` once a connection to it timed out,
//! `down` once SWIM declared it) is printed. The goal is about 1 s; the assertion only
//! bounds it generously, below SWIM's own suspicion timeout plus slack, because each
//! `status` poll is a client process and debug builds on loaded machines are slow.

mod common;

use std::time::{Duration, Instant};

use common::WAIT_MS;
use common::cluster::Cluster;

/// The node killed (n3), and the survivor that watches for it (n1).
const VICTIM: usize = 2;
const WATCHER: usize = 0;
/// Upper bound on the detection time; the figure printed is what matters.
const DETECTION_BOUND_MS: u64 = 8_000;
/// Pause between `status` polls (each is a client process, itself ~100 ms).
const POLL_MS: u64 = 20;

#[test]
fn a_sigkilled_peer_is_suspected_by_a_survivor_within_the_idle_timeout() {
    let mut cluster = Cluster::start(3);
    let victim = cluster.name(VICTIM).to_string();
    // Everyone up in the watcher's eyes, and its connections to the victim in use.
    common::eventually("n1 sees every member up", WAIT_MS, || {
        let states = cluster.states_seen_by(WATCHER);
        states.len() == 3 && states.values().all(|s| s == "up")
    });
    cluster
        .client(WATCHER, &["put", "detect/k", "v", "--n", "3", "--w", "3"])
        .success();
    cluster.kill(VICTIM);
    let killed = Instant::now();
    let mut seen = String::from("up");
    while seen == "up" {
        let elapsed = killed.elapsed();
        assert!(
            elapsed < Duration::from_millis(DETECTION_BOUND_MS),
            "n1 still saw {victim} up {} ms after it was killed",
            elapsed.as_millis()
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
        seen = cluster
            .states_seen_by(WATCHER)
            .get(&victim)
            .cloned()
            .unwrap_or_default();
    }
    println!(
        "{victim} killed with SIGKILL: n1 saw it {seen} after {} ms",
        killed.elapsed().as_millis()
    );
}
