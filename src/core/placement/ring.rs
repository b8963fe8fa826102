//! Placement: partitions, virtual-node tokens and preference lists.
//!
//! The 64-bit hash ring is cut into Q fixed partitions (a power of two). Partitions, not
//! keys, are the unit of replication, hinted handoff, anti-entropy and transfer, so the
//! expensive part of placement — walking tokens to find distinct physical nodes — is done
//! once per partition when the ring is built, and a lookup is a shift plus a slice.
//!
//! The ring is a pure function of the member set (names and vnode counts): members are
//! sorted and tokens are hashes of names, so every node that sees the same members
//! computes the same ring, and nobody has to decide ownership.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use twox_hash::XxHash3_64;

/// Default number of partitions (Q). Fixed when a cluster is created.
pub const PARTITIONS_DEFAULT: u32 = 1024;
/// Largest Q we accept; the per-partition walk table is Q × members entries.
pub const PARTITIONS_MAX: u32 = 1 << 16;
/// Default virtual-node tokens per physical node (V).
pub const VNODES_DEFAULT: u32 = 64;
/// Most tokens a single node may place.
pub const VNODES_MAX: u32 = 4096;
/// Most physical members a ring holds.
pub const MEMBERS_MAX: usize = 1024;
/// Longest hash input joined on the stack by [`xxh3_joined`]; longer ones go to the heap.
const HASH_STACK_BYTES_MAX: usize = 256;

/// A physical node's name, unique in the cluster (`n1`, `db-7`, ...).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

/// A member as the ring sees it: its name and how many tokens it places.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub name: NodeId,
    pub vnodes: u32,
}

/// How far a request may count on a node, as the failure detector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Believed alive: a target like any other.
    Up,
    /// Suspected (a failed RPC, or SWIM's suspicion): replaced by an up stand-in when one
    /// exists, asked only when needed.
    Suspect,
    /// Declared down (or gone): never asked; a stand-in takes its place.
    Down,
}

impl Reach {
    /// `Up` or `Down` from a plain liveness test (no suspicion).
    pub fn from_up(up: bool) -> Reach {
        if up { Reach::Up } else { Reach::Down }
    }
}

/// One entry of a preference list: the node to send to and, for a sloppy fallback, the
/// primary it stands in for (the hint it must keep until that primary is back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: NodeId,
    pub hint: Option<NodeId>,
}

/// The nodes a request for one partition goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferenceList {
    pub partition: u32,
    /// Live primaries first (in ring order), then fallbacks carrying their hint.
    pub targets: Vec<Target>,
    /// Primaries that are down and for which no live stand-in was found.
    pub uncovered: Vec<NodeId>,
}

/// Errors building a ring. No ring is built, and the membership view that asked for
/// one keeps its current ring.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RingError {
    #[error(
        "partition count {0} is not a power of two between 1 and {PARTITIONS_MAX}; pick e.g. 1024"
    )]
    /// The partition count is not a power of two in range.
    BadPartitionCount(u32),
    #[error("node {node} asks for {vnodes} vnodes; use 1..={VNODES_MAX}")]
    /// A member asks for no vnodes or more than the limit.
    BadVnodes { node: NodeId, vnodes: u32 },
    #[error("the ring has {0} members, more than the limit of {MEMBERS_MAX}")]
    /// More members than the ring supports.
    TooManyMembers(usize),
    #[error("node {0} is listed twice in the member set")]
    /// One name appears twice.
    DuplicateMember(NodeId),
    #[error("node {0} is not in the member table")]
    /// An update names a member the table does not hold.
    UnknownMember(NodeId),
}

/// The consistent-hash ring.
#[derive(Clone, Debug)]
pub struct Ring {
    partition_bits: u32,
    members: Vec<Member>,
    /// Sorted (token, member index); ties broken by member index, which is name order.
    tokens: Vec<(u64, u16)>,
    /// For each partition, every distinct member in clockwise order from its start.
    walks: Vec<Vec<u16>>,
}

impl NodeId {
    /// A node id from its name (the name in its certificate and the cluster's member
    /// table).
    pub fn new(name: impl Into<String>) -> Self {
        NodeId(name.into())
    }

    /// The node's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's position on the ring: `xxh3_64(bucket ‖ 0x00 ‖ key)`, seed 0.
pub fn key_position(bucket: &[u8], key: &[u8]) -> u64 {
    xxh3_joined(&[bucket, &[0], key])
}

/// `xxh3_64` (seed 0) of `parts` joined, as a streaming hasher would compute it, but
/// without one: `XxHash3_64::with_seed` heap-allocates its secret and zeroes a 256-byte
/// buffer, which showed up on every request (positions are taken several times per write).
/// Short inputs are joined on the stack and hashed in one shot.
pub(crate) fn xxh3_joined(parts: &[&[u8]]) -> u64 {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > HASH_STACK_BYTES_MAX {
        return XxHash3_64::oneshot(&parts.concat());
    }
    let mut buf = [0u8; HASH_STACK_BYTES_MAX];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    XxHash3_64::oneshot(&buf[..len])
}

/// Token `i` of a node: `xxh3_64(node_name ‖ i)` with `i` as 4 big-endian bytes.
pub fn vnode_token(name: &NodeId, i: u32) -> u64 {
    let mut hasher = XxHash3_64::with_seed(0);
    std::hash::Hasher::write(&mut hasher, name.0.as_bytes());
    std::hash::Hasher::write(&mut hasher, &i.to_be_bytes());
    std::hash::Hasher::finish(&hasher)
}

impl Ring {
    /// Builds the ring for a member set. Input order does not matter.
    pub fn new(members: &[Member], partitions: u32) -> Result<Ring, RingError> {
        if partitions == 0 || !partitions.is_power_of_two() || partitions > PARTITIONS_MAX {
            return Err(RingError::BadPartitionCount(partitions));
        }
        if members.len() > MEMBERS_MAX {
            return Err(RingError::TooManyMembers(members.len()));
        }
        let mut sorted: Vec<Member> = members.to_vec();
        sorted.sort();
        for pair in sorted.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(RingError::DuplicateMember(pair[0].name.clone()));
            }
        }
        let mut tokens = Vec::new();
        for (idx, m) in sorted.iter().enumerate() {
            if m.vnodes == 0 || m.vnodes > VNODES_MAX {
                return Err(RingError::BadVnodes {
                    node: m.name.clone(),
                    vnodes: m.vnodes,
                });
            }
            // MEMBERS_MAX fits in u16, checked above.
            let idx = idx as u16;
            tokens.extend((0..m.vnodes).map(|i| (vnode_token(&m.name, i), idx)));
        }
        tokens.sort_unstable();
        let partition_bits = partitions.trailing_zeros();
        let walks = (0..partitions)
            .map(|p| walk_from(&tokens, sorted.len(), partition_start(p, partition_bits)))
            .collect();
        Ok(Ring {
            partition_bits,
            members: sorted,
            tokens,
            walks,
        })
    }

    pub fn partitions(&self) -> u32 {
        1 << self.partition_bits
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn is_member(&self, node: &NodeId) -> bool {
        self.members.iter().any(|m| &m.name == node)
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The partition a ring position falls in: its top log2(Q) bits.
    pub fn partition_of(&self, position: u64) -> u32 {
        if self.partition_bits == 0 {
            0
        } else {
            (position >> (64 - self.partition_bits)) as u32
        }
    }

    /// First and last ring position of a partition (inclusive).
    pub fn partition_range(&self, partition: u32) -> (u64, u64) {
        let start = partition_start(partition, self.partition_bits);
        let len = if self.partition_bits == 0 {
            u64::MAX
        } else {
            (1u64 << (64 - self.partition_bits)) - 1
        };
        (start, start + len)
    }

    /// The first `n` distinct nodes clockwise from the partition's start: its primaries.
    pub fn primaries(&self, partition: u32, n: usize) -> Vec<&NodeId> {
        self.walk(partition)
            .take(n)
            .map(|i| &self.members[i].name)
            .collect()
    }

    /// The nodes after the partition's first `n` in ring order: who may stand in for
    /// its primaries.
    pub fn beyond(&self, partition: u32, n: usize) -> impl Iterator<Item = &NodeId> + '_ {
        self.walk(partition).skip(n).map(|i| &self.members[i].name)
    }

    /// The primary owner of a partition (first node of its preference list).
    pub fn owner(&self, partition: u32) -> Option<&NodeId> {
        self.walk(partition).next().map(|i| &self.members[i].name)
    }

    /// The sloppy preference list. Primaries `reach` calls up come first, in ring order.
    /// Each primary that is down gets a stand-in found by walking on past the primaries
    /// (an up node, else a suspected one), which names the primary it stands in for.
    /// Each suspected primary is then replaced by an up stand-in when one is left, and
    /// otherwise kept, last: a request never waits on a suspect another node can answer
    /// for, but still asks it when nothing else can. With `strict`, stand-ins are never
    /// used: suspected primaries are kept and down ones are uncovered.
    ///
    /// Target order is live primaries, stand-ins, kept suspects, so the first target
    /// is the best coordinator a forward can pick.
    pub fn preference_list(
        &self,
        partition: u32,
        n: usize,
        strict: bool,
        reach: impl Fn(&NodeId) -> Reach,
    ) -> PreferenceList {
        let walk: &[u16] = self
            .walks
            .get(partition as usize)
            .map_or(&[], Vec::as_slice);
        let name = |i: &u16| &self.members[*i as usize].name;
        let split = n.min(walk.len());
        let (primaries, beyond) = walk.split_at(split);
        let mut targets = Vec::with_capacity(n);
        let mut down = Vec::new();
        let mut suspected = Vec::new();
        for primary in primaries.iter().map(name) {
            match reach(primary) {
                Reach::Up => targets.push(Target {
                    node: primary.clone(),
                    hint: None,
                }),
                Reach::Suspect => suspected.push(primary.clone()),
                Reach::Down => down.push(primary.clone()),
            }
        }
        // Stand-ins are taken in walk order, up ones and suspected ones each from their
        // own cursor, so no node stands in twice.
        let mut up_cursor = 0;
        let mut suspect_cursor = 0;
        let next = |cursor: &mut usize, wanted: Reach| -> Option<NodeId> {
            while let Some(i) = beyond.get(*cursor) {
                *cursor += 1;
                let node = name(i);
                if reach(node) == wanted {
                    return Some(node.clone());
                }
            }
            None
        };
        let mut uncovered = Vec::new();
        let mut kept = Vec::new();
        for primary in down {
            let stand_in = if strict {
                None
            } else {
                next(&mut up_cursor, Reach::Up)
                    .or_else(|| next(&mut suspect_cursor, Reach::Suspect))
            };
            match stand_in {
                Some(node) => targets.push(Target {
                    node,
                    hint: Some(primary),
                }),
                None => uncovered.push(primary),
            }
        }
        for primary in suspected {
            let stand_in = if strict {
                None
            } else {
                next(&mut up_cursor, Reach::Up)
            };
            match stand_in {
                Some(node) => targets.push(Target {
                    node,
                    hint: Some(primary),
                }),
                None => kept.push(Target {
                    node: primary,
                    hint: None,
                }),
            }
        }
        targets.extend(kept);
        debug_assert!(
            targets.len() + uncovered.len() <= n,
            "more targets than replicas"
        );
        debug_assert!(
            targets
                .iter()
                .enumerate()
                .all(|(i, t)| targets[..i].iter().all(|u| u.node != t.node)),
            "a node is targeted twice"
        );
        PreferenceList {
            partition,
            targets,
            uncovered,
        }
    }

    /// Number of partitions each member owns as first primary, in member order.
    pub fn primary_counts(&self) -> BTreeMap<&NodeId, usize> {
        let mut counts: BTreeMap<&NodeId, usize> =
            self.members.iter().map(|m| (&m.name, 0)).collect();
        for p in 0..self.partitions() {
            if let Some(owner) = self.owner(p) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        counts
    }

    /// The share of (partition, replica) slots a node holds among the first `n` of every
    /// preference list: what `ringkv status` reports as "owned share".
    pub fn replica_share(&self, node: &NodeId, n: usize) -> f64 {
        let held = (0..self.partitions())
            .filter(|&p| self.primaries(p, n).contains(&node))
            .count();
        held as f64 / self.partitions() as f64
    }

    /// Largest primary-partition count over the mean: 1.0 is perfect balance.
    pub fn balance(&self) -> f64 {
        let counts = self.primary_counts();
        if counts.is_empty() {
            return 1.0;
        }
        let max = counts.values().copied().max().unwrap_or(0) as f64;
        let mean = self.partitions() as f64 / counts.len() as f64;
        max / mean
    }

    fn walk(&self, partition: u32) -> impl Iterator<Item = usize> + '_ {
        self.walks
            .get(partition as usize)
            .into_iter()
            .flatten()
            .map(|&i| i as usize)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

fn partition_start(partition: u32, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        (partition as u64) << (64 - bits)
    }
}

/// Distinct members clockwise from `start` (wrapping), in first-token order.
fn walk_from(tokens: &[(u64, u16)], member_count: usize, start: u64) -> Vec<u16> {
    let first = tokens.partition_point(|&(t, _)| t < start);
    let mut seen = vec![false; member_count];
    let mut order = Vec::with_capacity(member_count);
    for &(_, idx) in tokens[first..].iter().chain(tokens[..first].iter()) {
        if !seen[idx as usize] {
            seen[idx as usize] = true;
            order.push(idx);
            if order.len() == member_count {
                break;
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The placement hash, `xxh3_64(bucket ‖ 0x00 ‖ key)` with seed 0, through the
    /// streaming hasher.
    fn streamed_position(bucket: &[u8], key: &[u8]) -> u64 {
        let mut hasher = XxHash3_64::with_seed(0);
        std::hash::Hasher::write(&mut hasher, bucket);
        std::hash::Hasher::write(&mut hasher, &[0]);
        std::hash::Hasher::write(&mut hasher, key);
        std::hash::Hasher::finish(&hasher)
    }

    #[test]
    fn key_position_equals_the_streaming_hash_at_every_length() {
        // Covers xxh3's short, mid and long input paths and both sides of the stack limit.
        for len in (0..=600).chain([1_000, 4_096, 10_000]) {
            let key: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for bucket in [&b"b"[..], b"bucket", &[7u8; 255]] {
                assert_eq!(
                    key_position(bucket, &key),
                    streamed_position(bucket, &key),
                    "bucket {} bytes, key {len} bytes",
                    bucket.len()
                );
            }
        }
    }

    fn members(count: usize, vnodes: u32) -> Vec<Member> {
        (0..count)
            .map(|i| Member {
                name: NodeId(format!("n{i}")),
                vnodes,
            })
            .collect()
    }

    #[test]
    fn every_preference_list_has_n_distinct_nodes() {
        let ring = Ring::new(&members(7, 64), 1024).unwrap();
        for n in 1..=5 {
            for p in 0..ring.partitions() {
                let list = ring.preference_list(p, n, false, |_| Reach::Up);
                let distinct: BTreeSet<_> = list.targets.iter().map(|t| &t.node).collect();
                assert_eq!(distinct.len(), n, "partition {p}, n {n}");
                assert!(list.targets.iter().all(|t| t.hint.is_none()));
                assert!(list.uncovered.is_empty());
            }
        }
    }

    #[test]
    fn a_join_moves_about_one_over_s_plus_one_of_the_partitions() {
        for s in [3usize, 5, 9] {
            let before = Ring::new(&members(s, 64), 1024).unwrap();
            let after = Ring::new(&members(s + 1, 64), 1024).unwrap();
            let newcomer = NodeId(format!("n{s}"));
            let mut moved = 0;
            for p in 0..1024 {
                let (a, b) = (before.owner(p).unwrap(), after.owner(p).unwrap());
                if a != b {
                    moved += 1;
                    assert_eq!(b, &newcomer, "partition {p} moved between old nodes");
                }
            }
            let share = moved as f64 / 1024.0;
            let ideal = 1.0 / (s as f64 + 1.0);
            println!("join onto {s} nodes moved {share:.3} of partitions (ideal {ideal:.3})");
            assert!(
                (share - ideal).abs() < ideal * 0.35,
                "moved share {share} too far from {ideal}"
            );
        }
    }

    #[test]
    fn ten_nodes_are_balanced_within_thirty_percent() {
        let ring = Ring::new(&members(10, 64), 1024).unwrap();
        let balance = ring.balance();
        println!("10 nodes x 64 vnodes, Q=1024: max/mean primary partitions = {balance:.3}");
        assert!(balance <= 1.3, "max/mean {balance} above 1.3");
    }

    #[test]
    fn fallbacks_skip_down_nodes_and_name_their_primary() {
        let ring = Ring::new(&members(6, 64), 256).unwrap();
        for p in 0..ring.partitions() {
            let primaries: Vec<NodeId> = ring.primaries(p, 3).into_iter().cloned().collect();
            let down: BTreeSet<NodeId> = [primaries[1].clone()].into();
            let list = ring.preference_list(p, 3, false, |n| Reach::from_up(!down.contains(n)));
            assert_eq!(list.targets.len(), 3);
            assert!(list.targets.iter().all(|t| !down.contains(&t.node)));
            let fallbacks: Vec<_> = list.targets.iter().filter(|t| t.hint.is_some()).collect();
            assert_eq!(fallbacks.len(), 1);
            assert_eq!(fallbacks[0].hint.as_ref(), Some(&primaries[1]));
            assert!(!primaries.contains(&fallbacks[0].node));
            // strict: no stand-ins, the down primary is reported uncovered
            let strict = ring.preference_list(p, 3, true, |n| Reach::from_up(!down.contains(n)));
            assert_eq!(strict.targets.len(), 2);
            assert_eq!(strict.uncovered, vec![primaries[1].clone()]);
        }
    }

    #[test]
    fn a_suspected_primary_gives_way_to_an_up_fallback() {
        let ring = Ring::new(&members(6, 64), 256).unwrap();
        for p in 0..ring.partitions() {
            let primaries: Vec<NodeId> = ring.primaries(p, 3).into_iter().cloned().collect();
            let suspect = primaries[0].clone();
            let reach = |n: &NodeId| {
                if *n == suspect {
                    Reach::Suspect
                } else {
                    Reach::Up
                }
            };
            let list = ring.preference_list(p, 3, false, reach);
            assert_eq!(list.targets.len(), 3);
            assert!(list.targets.iter().all(|t| t.node != suspect));
            assert_eq!(
                list.targets[0].node, primaries[1],
                "a live primary coordinates"
            );
            assert_eq!(list.targets[2].hint.as_ref(), Some(&suspect));
            // strict: the suspect is still asked (nobody may stand in), last
            let strict = ring.preference_list(p, 3, true, reach);
            assert_eq!(strict.targets.len(), 3);
            assert_eq!(
                strict.targets[2],
                Target {
                    node: suspect.clone(),
                    hint: None
                }
            );
            assert!(strict.uncovered.is_empty());
        }
    }

    #[test]
    fn a_suspect_is_kept_when_nobody_else_can_stand_in() {
        let ring = Ring::new(&members(3, 16), 64).unwrap();
        let primaries: Vec<NodeId> = ring.primaries(0, 3).into_iter().cloned().collect();
        let list = ring.preference_list(0, 3, false, |n| {
            if *n == primaries[0] {
                Reach::Suspect
            } else {
                Reach::Up
            }
        });
        let nodes: Vec<&NodeId> = list.targets.iter().map(|t| &t.node).collect();
        assert_eq!(nodes, vec![&primaries[1], &primaries[2], &primaries[0]]);
        assert!(list.targets.iter().all(|t| t.hint.is_none()));
    }

    #[test]
    fn down_primaries_take_the_up_fallbacks_before_suspects_do() {
        // 4 nodes, N=3: one fallback. A down primary needs it more than a suspected one,
        // which can still be asked itself.
        let ring = Ring::new(&members(4, 16), 64).unwrap();
        for p in 0..ring.partitions() {
            let primaries: Vec<NodeId> = ring.primaries(p, 3).into_iter().cloned().collect();
            let (suspect, down) = (primaries[1].clone(), primaries[2].clone());
            let list = ring.preference_list(p, 3, false, |n| {
                if *n == suspect {
                    Reach::Suspect
                } else if *n == down {
                    Reach::Down
                } else {
                    Reach::Up
                }
            });
            assert_eq!(list.targets.len(), 3);
            assert_eq!(list.targets[1].hint.as_ref(), Some(&down));
            assert_eq!(
                list.targets[2],
                Target {
                    node: suspect.clone(),
                    hint: None
                }
            );
            assert!(list.uncovered.is_empty());
        }
    }

    #[test]
    fn too_few_live_nodes_leaves_primaries_uncovered() {
        let ring = Ring::new(&members(3, 16), 64).unwrap();
        let list = ring.preference_list(0, 3, false, |n| Reach::from_up(n.0 == "n0"));
        assert_eq!(list.targets.len(), 1);
        assert_eq!(list.uncovered.len(), 2);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(
            Ring::new(&members(3, 8), 1000).unwrap_err(),
            RingError::BadPartitionCount(1000)
        );
        assert!(matches!(
            Ring::new(&members(3, 0), 64),
            Err(RingError::BadVnodes { .. })
        ));
        let mut dup = members(3, 8);
        dup.push(dup[0].clone());
        assert!(matches!(
            Ring::new(&dup, 64),
            Err(RingError::DuplicateMember(_))
        ));
    }

    #[test]
    fn partition_of_matches_partition_range() {
        let ring = Ring::new(&members(3, 8), 1024).unwrap();
        for p in [0u32, 1, 511, 1023] {
            let (start, end) = ring.partition_range(p);
            assert_eq!(ring.partition_of(start), p);
            assert_eq!(ring.partition_of(end), p);
        }
        assert_eq!(ring.partition_range(1023).1, u64::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn ring_is_a_pure_function_of_the_member_set(
            count in 1usize..12,
            vnodes in 1u32..32,
            seed in any::<u64>(),
        ) {
            let ordered = members(count, vnodes);
            let mut shuffled = ordered.clone();
            // deterministic Fisher-Yates driven by the proptest seed
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a = Ring::new(&ordered, 256).unwrap();
            let b = Ring::new(&shuffled, 256).unwrap();
            for p in 0..256 {
                prop_assert_eq!(a.primaries(p, 3), b.primaries(p, 3));
            }
        }
    }
}
