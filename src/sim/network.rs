//! The simulated network: delay, loss, duplication and partitions, all drawn from the
//! world's seeded RNG.
//!
//! Reordering is not a separate knob: every message gets its own random delay, so two
//! messages on one link can overtake each other, which is exactly what a real network
//! with several streams does. A message to a node that is down or across a partition is
//! not silently lost: the sender is told, after a connect timeout, as the real driver
//! tells its core about a failed send. Random loss, by contrast, is silent, and only the
//! core's own timeouts can notice it.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::core::placement::ring::NodeId;

/// Longest one-way delay the simulator accepts, so a schedule cannot stall virtual time.
pub const DELAY_MS_MAX: u64 = 10_000;
/// Default time after which a failed send is reported to the sender.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 50;

/// How messages between nodes behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way delay, drawn uniformly from `delay_min_ms..=delay_max_ms`.
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Probability that a message vanishes without a trace.
    pub loss: f64,
    /// Probability that a delivered message is delivered a second time.
    pub duplicate: f64,
    /// Delay before a sender learns that its destination was unreachable.
    pub connect_timeout_ms: u64,
}

/// What happens to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after each of these delays (two for a duplicate).
    Deliver(Vec<u64>),
    /// Lost silently.
    Lost,
    /// The destination cannot be reached; the sender hears so after this delay.
    Unreachable(u64),
}

/// Link state: which nodes can talk to which.
#[derive(Clone, Debug)]
pub struct Network {
    pub config: NetConfig,
    /// Partition group of each node; nodes talk only within their group. Empty = healed.
    groups: BTreeMap<NodeId, usize>,
}

impl NetConfig {
    /// A network that delivers everything once, with small delays.
    pub fn reliable() -> NetConfig {
        NetConfig {
            delay_min_ms: 1,
            delay_max_ms: 10,
            loss: 0.0,
            duplicate: 0.0,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }

    /// Draws one delay.
    pub fn delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        let max = self.delay_max_ms.min(DELAY_MS_MAX);
        let min = self.delay_min_ms.min(max);
        rng.random_range(min..=max)
    }
}

impl Network {
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            groups: BTreeMap::new(),
        }
    }

    /// Splits the nodes into groups; a node named in no group is alone in its own.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.groups.clear();
        for (i, group) in groups.iter().enumerate() {
            for node in group {
                self.groups.insert(node.clone(), i + 1);
            }
        }
    }

    pub fn heal(&mut self) {
        self.groups.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether `a` and `b` are on the same side of every partition.
    pub fn connected(&self, a: &NodeId, b: &NodeId) -> bool {
        if self.groups.is_empty() || a == b {
            return true;
        }
        match (self.groups.get(a), self.groups.get(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// Decides a message's fate at send time. `dest_up` is whether the destination runs.
    pub fn fate(&self, from: &NodeId, to: &NodeId, dest_up: bool, rng: &mut ChaCha8Rng) -> Fate {
        if !dest_up || !self.connected(from, to) {
            return Fate::Unreachable(self.config.connect_timeout_ms);
        }
        if self.config.loss > 0.0 && rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
            return Fate::Lost;
        }
        let mut delays = vec![self.config.delay(rng)];
        if self.config.duplicate > 0.0 && rng.random_bool(self.config.duplicate.clamp(0.0, 1.0)) {
            delays.push(self.config.delay(rng));
        }
        Fate::Deliver(delays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    #[test]
    fn partitions_cut_links_between_groups_and_heal_restores_them() {
        let mut net = Network::new(NetConfig::reliable());
        net.partition(&[vec![n("a"), n("b")], vec![n("c")]]);
        assert!(net.connected(&n("a"), &n("b")));
        assert!(!net.connected(&n("a"), &n("c")));
        assert!(!net.connected(&n("d"), &n("a")), "an unnamed node is alone");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            net.fate(&n("a"), &n("c"), true, &mut rng),
            Fate::Unreachable(CONNECT_TIMEOUT_MS_DEFAULT)
        );
        net.heal();
        assert!(net.connected(&n("a"), &n("c")));
        assert!(matches!(
            net.fate(&n("a"), &n("c"), true, &mut rng),
            Fate::Deliver(d) if d.len() == 1
        ));
    }

    #[test]
    fn loss_and_duplication_follow_their_rates() {
        let config = NetConfig {
            loss: 0.2,
            duplicate: 0.5,
            ..NetConfig::reliable()
        };
        let net = Network::new(config);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut lost, mut dup) = (0, 0);
        for _ in 0..10_000 {
            match net.fate(&n("a"), &n("b"), true, &mut rng) {
                Fate::Lost => lost += 1,
                Fate::Deliver(d) if d.len() == 2 => dup += 1,
                Fate::Deliver(d) => assert!(d.iter().all(|&ms| (1..=10).contains(&ms))),
                Fate::Unreachable(_) => panic!("the destination is up and connected"),
            }
        }
        assert!((1_800..2_200).contains(&lost), "lost {lost}");
        assert!((3_700..4_300).contains(&dup), "duplicated {dup}");
    }
}
