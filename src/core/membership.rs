//! The membership view: who is in the cluster, where they listen, and who is alive.
//!
//! The ring is derived from the member set; liveness only decides which preference-list
//! entries are skipped for sloppy fallbacks. For now members are a static list and
//! liveness comes from RPC outcomes (an unreachable peer is down at once) and periodic
//! pings (a member silent for `down_after_ms` is down; any message from it brings it back
//! up). Gossip (SWIM) will feed the same view through `mark_*`, `add` and `remove`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::ring::{Member, NodeId, Ring, RingError};

/// A member's liveness as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    Up,
    Suspect,
    Down,
}

/// What the view knows about one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: NodeId,
    pub addr: String,
    pub vnodes: u32,
    pub state: Liveness,
    /// Monotonic ms of the last message heard from it (or of our start).
    pub last_heard_ms: u64,
}

/// The set of members and the ring derived from it.
#[derive(Clone, Debug)]
pub struct Membership {
    me: NodeId,
    partitions: u32,
    members: BTreeMap<NodeId, MemberInfo>,
    ring: Ring,
}

impl Membership {
    /// A view of `members` (which must include `me`), all assumed up at `now_ms`.
    pub fn new(
        me: NodeId,
        members: Vec<(NodeId, String, u32)>,
        partitions: u32,
        now_ms: u64,
    ) -> Result<Membership, RingError> {
        let members: BTreeMap<NodeId, MemberInfo> = members
            .into_iter()
            .map(|(name, addr, vnodes)| {
                let info = MemberInfo {
                    name: name.clone(),
                    addr,
                    vnodes,
                    state: Liveness::Up,
                    last_heard_ms: now_ms,
                };
                (name, info)
            })
            .collect();
        let ring = Ring::new(&ring_members(&members), partitions)?;
        Ok(Membership {
            me,
            partitions,
            members,
            ring,
        })
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values()
    }

    pub fn get(&self, node: &NodeId) -> Option<&MemberInfo> {
        self.members.get(node)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether requests should be routed to `node`. We are always up to ourselves; a
    /// suspect is still tried.
    pub fn is_up(&self, node: &NodeId) -> bool {
        node == &self.me
            || self
                .members
                .get(node)
                .is_some_and(|m| m.state != Liveness::Down)
    }

    /// Records that we heard from `node`. Returns true when it was down and is now up.
    pub fn heard_from(&mut self, node: &NodeId, now_ms: u64) -> bool {
        match self.members.get_mut(node) {
            Some(m) => {
                m.last_heard_ms = m.last_heard_ms.max(now_ms);
                let was_down = m.state == Liveness::Down;
                m.state = Liveness::Up;
                was_down
            }
            None => false,
        }
    }

    /// Marks `node` down. Returns true when it was not down before.
    pub fn mark_down(&mut self, node: &NodeId) -> bool {
        if node == &self.me {
            return false;
        }
        match self.members.get_mut(node) {
            Some(m) if m.state != Liveness::Down => {
                m.state = Liveness::Down;
                true
            }
            _ => false,
        }
    }

    /// Marks down every member silent since before `now_ms - down_after_ms`; returns them.
    pub fn expire_silent(&mut self, now_ms: u64, down_after_ms: u64) -> Vec<NodeId> {
        let cutoff = now_ms.saturating_sub(down_after_ms);
        let silent: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.name != self.me && m.state != Liveness::Down && m.last_heard_ms < cutoff)
            .map(|m| m.name.clone())
            .collect();
        for node in &silent {
            self.mark_down(node);
        }
        silent
    }

    /// Adds (or updates) a member and rebuilds the ring.
    pub fn add(&mut self, info: MemberInfo) -> Result<(), RingError> {
        let mut members = self.members.clone();
        members.insert(info.name.clone(), info);
        self.ring = Ring::new(&ring_members(&members), self.partitions)?;
        self.members = members;
        Ok(())
    }

    /// Removes a member and rebuilds the ring.
    pub fn remove(&mut self, node: &NodeId) -> Result<(), RingError> {
        let mut members = self.members.clone();
        members.remove(node);
        self.ring = Ring::new(&ring_members(&members), self.partitions)?;
        self.members = members;
        Ok(())
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Up => "up",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        })
    }
}

fn ring_members(members: &BTreeMap<NodeId, MemberInfo>) -> Vec<Member> {
    members
        .values()
        .map(|m| Member {
            name: m.name.clone(),
            vnodes: m.vnodes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> Membership {
        let members = ["n1", "n2", "n3"]
            .iter()
            .map(|n| (NodeId::from(*n), format!("{n}:1"), 8))
            .collect();
        Membership::new(NodeId::from("n1"), members, 64, 0).unwrap()
    }

    #[test]
    fn silence_marks_down_and_a_message_brings_it_back() {
        let mut v = view();
        v.heard_from(&NodeId::from("n2"), 900);
        let down = v.expire_silent(1_000, 500);
        assert_eq!(down, vec![NodeId::from("n3")]);
        assert!(!v.is_up(&NodeId::from("n3")));
        assert!(
            v.is_up(&NodeId::from("n1")),
            "we are always up to ourselves"
        );
        assert!(v.heard_from(&NodeId::from("n3"), 1_100));
        assert!(v.is_up(&NodeId::from("n3")));
    }

    #[test]
    fn adding_a_member_rebuilds_the_ring() {
        let mut v = view();
        v.add(MemberInfo {
            name: NodeId::from("n4"),
            addr: "n4:1".into(),
            vnodes: 8,
            state: Liveness::Up,
            last_heard_ms: 0,
        })
        .unwrap();
        assert!(v.ring().is_member(&NodeId::from("n4")));
        v.remove(&NodeId::from("n4")).unwrap();
        assert!(!v.ring().is_member(&NodeId::from("n4")));
    }
}
