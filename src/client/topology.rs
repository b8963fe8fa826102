//! The client's copy of one node's membership view, and the order in which a key's
//! request tries the nodes.
//!
//! Why the client keeps a view at all: a request sent to a node outside the key's
//! preference list costs a forward hop (and a second node's queue), and a client that
//! knows only one node is down when that node is. A node answers
//! [`ClientRequest::Topology`](crate::proto::ClientRequest::Topology) with its members,
//! their addresses, vnode counts, phases and liveness; the ring is a pure function of the
//! members in the `Normal` phase and the partition count, so [`Ring::new`] rebuilds here
//! exactly the ring every node with the same view computes, and the key's preference list
//! comes from the same [`Ring::preference_list`] the coordinator uses. Nothing is copied
//! from the core, so the two cannot drift apart.
//!
//! The order ([`View::candidates`]): the key's preference list (live primaries in ring
//! order, then the fallbacks standing in for down ones), members the view holds "up"
//! before "suspect" ones; then the rest of the ring walk, live members first; members
//! the view holds down come last, since the view may be stale. Any node of the preference
//! list coordinates the request itself, so the first candidate saves the forward hop and
//! the next ones are where a retry costs least.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use thiserror::Error;

use crate::core::placement::ring::{
    MEMBERS_MAX, Member, NodeId, Reach, Ring, RingError, key_position,
};
use crate::proto::{Key, TopologyInfo};

/// A member's liveness as the answering node reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum State {
    /// Up: tried first.
    Up,
    /// Suspected by SWIM but not declared down: still a target, tried after the up ones.
    Suspect,
    /// Down: tried only when nothing else is left.
    Down,
}

/// One member of the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Where it listens; `None` when its advertised address is not usable from here
    /// (not `ip:port`, or an unspecified IP such as 0.0.0.0).
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) state: State,
}

/// One node to try: its address and, when the view knows it, its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) addr: SocketAddr,
    pub(crate) name: Option<NodeId>,
}

/// One node's view, rebuilt into a ring.
#[derive(Clone, Debug)]
pub(crate) struct View {
    /// The node that answered, and the address it was reached on.
    pub(crate) source: Candidate,
    n_default: u8,
    ring: Ring,
    peers: BTreeMap<NodeId, Peer>,
}

/// Why a topology answer cannot be used; the client keeps its previous view.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopologyError {
    /// More members than a ring may hold.
    #[error("the topology lists {0} members, more than the ring's limit of {MEMBERS_MAX}")]
    TooManyMembers(usize),
    /// The members and partition count do not make a ring.
    #[error("the topology does not make a ring: {0}")]
    Ring(#[from] RingError),
}

impl View {
    /// The view in `info`, answered by the node reached at `source_addr`. Addresses that
    /// are not `ip:port` are looked up in `resolved` (the caller resolves host names
    /// beforehand, so this stays free of I/O).
    pub(crate) fn new(
        info: TopologyInfo,
        source_addr: SocketAddr,
        resolved: &BTreeMap<String, SocketAddr>,
    ) -> Result<View, TopologyError> {
        if info.members.len() > MEMBERS_MAX {
            return Err(TopologyError::TooManyMembers(info.members.len()));
        }
        let ring_members: Vec<Member> = info
            .members
            .iter()
            .filter(|m| m.in_ring)
            .map(|m| Member {
                name: m.name.clone(),
                vnodes: m.vnodes,
            })
            .collect();
        let ring = Ring::new(&ring_members, info.partitions)?;
        let peers = info
            .members
            .into_iter()
            .map(|m| {
                let addr = if m.name == info.node {
                    // Whatever it advertises, it answered on this address.
                    Some(source_addr)
                } else {
                    usable_addr(&m.addr, resolved)
                };
                let state = match m.state.as_str() {
                    "up" => State::Up,
                    "suspect" => State::Suspect,
                    _ => State::Down,
                };
                (m.name, Peer { addr, state })
            })
            .collect();
        Ok(View {
            source: Candidate {
                addr: source_addr,
                name: Some(info.node),
            },
            n_default: info.n,
            ring,
            peers,
        })
    }

    /// Every member's address, for bounding per-node state to the view.
    pub(crate) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers.values().filter_map(|p| p.addr)
    }

    /// The name of the member at `addr`, if the view has one there.
    pub(crate) fn name_at(&self, addr: SocketAddr) -> Option<&NodeId> {
        self.peers
            .iter()
            .find(|(_, p)| p.addr == Some(addr))
            .map(|(name, _)| name)
    }

    /// Up to `limit` members the view holds up or suspect, with a usable address, up ones
    /// first.
    pub(crate) fn live(&self, limit: usize) -> Vec<Candidate> {
        let in_state = |wanted: State| {
            self.peers
                .iter()
                .filter(move |(_, p)| p.state == wanted)
                .filter_map(|(name, p)| {
                    p.addr.map(|addr| Candidate {
                        addr,
                        name: Some(name.clone()),
                    })
                })
        };
        in_state(State::Up)
            .chain(in_state(State::Suspect))
            .take(limit)
            .collect()
    }

    /// Up to `limit` nodes to send a request for `key` to, best first (see the module
    /// docs); `n` is the request's N, the answering node's default when `None`.
    pub(crate) fn candidates(&self, key: &Key, n: Option<u8>, limit: usize) -> Vec<Candidate> {
        let members = self.ring.members().len();
        let n = usize::from(n.unwrap_or(self.n_default)).clamp(1, members.max(1));
        let partition = self.ring.partition_of(key_position(&key.bucket, &key.key));
        let state = |node: &NodeId| self.peers.get(node).map_or(State::Down, |p| p.state);
        let preference = self
            .ring
            .preference_list(partition, n, false, |node| match state(node) {
                State::Up => Reach::Up,
                State::Suspect => Reach::Suspect,
                State::Down => Reach::Down,
            });
        // A stable sort: the preference order holds among members of the same state.
        let mut targets: Vec<&NodeId> = preference.targets.iter().map(|t| &t.node).collect();
        targets.sort_by_key(|node| state(node));
        let mut rest: Vec<&NodeId> = self
            .ring
            .primaries(partition, members)
            .into_iter()
            .filter(|node| !targets.contains(node))
            .collect();
        rest.sort_by_key(|node| state(node));
        targets
            .into_iter()
            .chain(rest)
            .filter_map(|name| {
                self.peers.get(name)?.addr.map(|addr| Candidate {
                    addr,
                    name: Some(name.clone()),
                })
            })
            .take(limit)
            .collect()
    }
}

/// A member's advertised address as a socket address this client can dial.
fn usable_addr(addr: &str, resolved: &BTreeMap<String, SocketAddr>) -> Option<SocketAddr> {
    let addr = addr
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| resolved.get(addr).copied())?;
    (!addr.ip().is_unspecified()).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TopologyMember;

    const PARTITIONS: u32 = 64;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7100 + i as u16))
    }

    fn info(states: &[&str]) -> TopologyInfo {
        TopologyInfo {
            node: NodeId::from("n1"),
            partitions: PARTITIONS,
            n: 3,
            members: states
                .iter()
                .enumerate()
                .map(|(i, state)| TopologyMember {
                    name: NodeId::new(format!("n{}", i + 1)),
                    addr: addr(i + 1).to_string(),
                    vnodes: 16,
                    in_ring: true,
                    state: state.to_string(),
                })
                .collect(),
        }
    }

    fn ring_of(info: &TopologyInfo) -> Ring {
        let members: Vec<Member> = info
            .members
            .iter()
            .map(|m| Member {
                name: m.name.clone(),
                vnodes: m.vnodes,
            })
            .collect();
        Ring::new(&members, info.partitions).expect("a valid ring")
    }

    fn names(candidates: &[Candidate]) -> Vec<String> {
        candidates
            .iter()
            .map(|c| c.name.as_ref().map_or("?".into(), |n| n.to_string()))
            .collect()
    }

    #[test]
    fn the_first_candidate_is_the_keys_coordinator_and_the_next_ones_its_replicas() {
        let info = info(&["up"; 5]);
        let ring = ring_of(&info);
        let view = View::new(info, addr(1), &BTreeMap::new()).expect("view");
        for i in 0..50 {
            let key = Key::new("b", format!("k{i}"));
            let partition = ring.partition_of(key_position(&key.bucket, &key.key));
            let primaries: Vec<String> = ring
                .primaries(partition, 3)
                .iter()
                .map(|n| n.to_string())
                .collect();
            let got = view.candidates(&key, None, 5);
            assert_eq!(got.len(), 5, "{key}: every member is a candidate");
            assert_eq!(names(&got[..3]), primaries, "{key}");
            let expected = addr(primaries[0][1..].parse().expect("a number"));
            assert_eq!(got[0].addr, expected, "{key}: the coordinator's address");
        }
    }

    #[test]
    fn down_members_go_last_and_suspects_after_up_ones() {
        let info = info(&["up", "down", "suspect", "up", "up"]);
        let view = View::new(info, addr(1), &BTreeMap::new()).expect("view");
        for i in 0..50 {
            let key = Key::new("b", format!("k{i}"));
            let got = names(&view.candidates(&key, Some(3), 5));
            assert_eq!(got.last().map(String::as_str), Some("n2"), "{key}: {got:?}");
            let suspect = got.iter().position(|n| n == "n3").expect("n3 listed");
            assert!(
                suspect < 4,
                "{key}: a suspect is still tried before the down: {got:?}"
            );
        }
        let live = names(&view.live(5));
        assert_eq!(live, ["n1", "n4", "n5", "n3"]);
        assert_eq!(names(&view.live(2)), ["n1", "n4"]);
    }

    #[test]
    fn the_limit_bounds_the_list_and_bad_addresses_are_skipped() {
        let mut info = info(&["up", "up", "up"]);
        info.members[1].addr = "0.0.0.0:7102".into();
        info.members[2].addr = "db-3.example:7103".into();
        // The answering node is reachable where it answered, whatever it advertises.
        info.members[0].addr = "0.0.0.0:7101".into();
        let resolved = BTreeMap::from([("db-3.example:7103".to_string(), addr(3))]);
        let view = View::new(info, addr(9), &resolved).expect("view");
        let key = Key::new("b", "k");
        let got = view.candidates(&key, None, 5);
        let addrs: Vec<SocketAddr> = got.iter().map(|c| c.addr).collect();
        assert_eq!(addrs.len(), 2, "{got:?}");
        assert!(
            addrs.contains(&addr(9)) && addrs.contains(&addr(3)),
            "{got:?}"
        );
        assert_eq!(view.candidates(&key, None, 1).len(), 1);
        assert_eq!(view.name_at(addr(3)), Some(&NodeId::from("n3")));
    }

    #[test]
    fn a_topology_that_makes_no_ring_is_refused() {
        let mut info = info(&["up"]);
        info.partitions = 3;
        let err = View::new(info, addr(1), &BTreeMap::new()).expect_err("3 partitions");
        assert!(err.to_string().contains("power of two"), "{err}");
    }
}
