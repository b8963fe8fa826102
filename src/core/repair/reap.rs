//! Tombstone reaping: removing deletes once no replica can bring the key back.
//!
//! A delete leaves a tombstone because a replica that missed the delete would otherwise
//! hand its old value back through read repair or anti-entropy, and the merge could not
//! tell "deleted" from "never written". Tombstones cost space forever unless reaped, and
//! reaping one too early resurrects the key. The rule: a tombstone goes
//! only when all N primaries hold that very tombstone (same version digest) and every one
//! of them has held it for the grace period.
//!
//! The partition's first primary runs the rounds, and only while all N primaries are up
//! — strict primaries, never fallbacks, so a primary that is down blocks the reap of its
//! partitions however long it is away, and can never miss one. A round: scan this
//! replica's tombstone index for the partition (bounded), ask the other N−1 primaries
//! ([`PeerMessage::ReapCheck`]) which of those tombstones they hold with the same digest
//! for the grace period; the keys every primary confirms go out in a
//! [`PeerMessage::Reap`], and each primary removes a key only if it still holds exactly
//! that tombstone — a write that lands meanwhile changes the digest and survives. A
//! primary that lacks the tombstone says nothing about it; anti-entropy repairs it and a
//! later round tries again.
//!
//! Which objects have tombstones: `siblings` objects whose every sibling is a delete, and
//! `lww` cells whose winning write is a delete ([`Object::is_tombstone`]). CRDT deletes
//! are not tombstones and are never reaped: a counter's delete is a reset snapshot that
//! must outlive late increments, a set's or map's delete keeps the causal clock that lets
//! it win over the adds it saw, and `hll` cannot be deleted.
//!
//! What else could bring a reaped key back, and why it cannot:
//! - a hint held by a stand-in from before the delete: hints expire after half the grace
//!   period (`core/replica/tombstones.rs`), so one still in flight lands before a reap;
//! - a reused dot in the key's second life: `siblings` dots are floored by the HLC
//!   (`object/dvv.rs`), so an old context never covers a new write;
//! - a node that left the ring and rejoins with its old data: not prevented here — it
//!   must rejoin with an empty data directory once it has been out longer than the grace
//!   period (see README, repair).
//!
//! One path stays narrowly open: a stand-in coordinator keeps a data-space copy of the
//! keys it wrote for a down primary ([`crate::core::replica::Replica::apply`]), which no
//! delete reaches. If the key is deleted and reaped and the same node later stands in
//! again and coordinates a write to it, that old value comes back as a sibling of the new
//! write. Dropping the copy on its own would be worse: the stand-in's next write would
//! claim (through its version vector) to have seen its own earlier dots and erase them at
//! the primaries — the simulator sweep lost acknowledged writes that way. So partition
//! transfer (`core/repair/transfer.rs`) hands the copy to the primaries once all of them
//! are up, drops it, and the node then takes a fresh actor id (a node-wide form of Riak's
//! per-key actor epochs). The path stays open only for a stand-in cut off from the
//! primaries for longer than the grace period.
//!
//! [`Object::is_tombstone`]: crate::core::object::Object::is_tombstone

use std::collections::{BTreeMap, BTreeSet};

use crate::core::membership::Membership;
use crate::core::node::{Cx, NodeConfig};
use crate::core::placement::ring::{NodeId, key_position};
use crate::core::replica::Replica;
use crate::core::timer::{Timer, TimerId};
use crate::proto::{Key, PeerMessage};

/// Default grace period: one hour. Hints live half of it, so a stand-in can hand off
/// after a primary's half-hour restart or maintenance; a longer outage is repaired by
/// anti-entropy instead. Tombstones are small, so keeping them an hour is cheap.
pub const TOMBSTONE_GRACE_MS_DEFAULT: u64 = 60 * 60 * 1_000;
/// Partitions one node looks at per reap tick (as their first primary).
pub const REAP_PARTITIONS_PER_TICK: u32 = 64;
/// Most tombstones one round checks and reaps.
pub const REAP_BATCH_MAX: usize = 256;
/// Most rounds one node has in flight.
pub const REAP_ROUNDS_MAX: usize = 64;

/// The reaping rounds a node runs as first primary, and where it looks next.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    cursor: u32,
    /// In-flight rounds by partition (one per partition at a time).
    rounds: BTreeMap<u32, Round>,
    /// Tombstones this replica removed after every primary confirmed them.
    reaped: u64,
}

/// A primary's answer to a round: the keys it holds as the same tombstone.
#[derive(Debug)]
struct Confirm {
    from: NodeId,
    round: u64,
    partition: u32,
    keys: Vec<Key>,
}

#[derive(Debug)]
struct Round {
    id: u64,
    /// The tombstones asked about, with their digests.
    entries: BTreeMap<Key, u64>,
    /// The primaries that have not answered yet.
    awaiting: BTreeSet<NodeId>,
    /// The primaries of the partition when the round started, this node included.
    primaries: Vec<NodeId>,
    /// Keys every primary that answered so far confirmed.
    confirmed: BTreeSet<Key>,
    /// When the round is abandoned if some primary has not answered.
    deadline: TimerId,
}

impl Reaper {
    /// Tombstones this replica removed after every primary confirmed them.
    pub(crate) fn reaped(&self) -> u64 {
        self.reaped
    }

    /// A round's deadline passed with a primary silent (a lost message, a primary that
    /// went down): it is abandoned, and a later round asks again.
    pub(crate) fn on_round_timeout(&mut self, partition: u32, round: u64) {
        if self.rounds.get(&partition).is_some_and(|r| r.id == round) {
            self.rounds.remove(&partition);
        }
    }

    /// Starts reaping rounds for the next partitions this node is first primary of.
    pub(crate) fn on_tick(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, members: &Membership) {
        let interval = cx.config.anti_entropy_interval_ms;
        if interval == 0 {
            return;
        }
        cx.timers.set(cx.now.mono_ms + interval, Timer::Reap);
        let me = cx.config.name.clone();
        let n = cx.config.n as usize;
        let partitions = members.ring().partitions();
        for _ in 0..REAP_PARTITIONS_PER_TICK.min(partitions) {
            if self.rounds.len() >= REAP_ROUNDS_MAX {
                break;
            }
            let p = self.cursor % partitions;
            self.cursor = self.cursor.wrapping_add(1);
            if self.rounds.contains_key(&p) {
                continue;
            }
            let Some(primaries) = all_primaries_up(cx.me(), members, p, n) else {
                continue;
            };
            if primaries.first() != Some(&me) || primaries.len() < 2 {
                continue;
            }
            let (start, end) = members.ring().partition_range(p);
            let due = match replica.tombstones_due(start, end, REAP_BATCH_MAX) {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(node = %me, partition = p, error = %e, "cannot scan tombstones to reap");
                    continue;
                }
            };
            if due.is_empty() {
                continue;
            }
            let id = cx.ids.fresh();
            let others: BTreeSet<NodeId> =
                primaries.iter().filter(|x| **x != me).cloned().collect();
            for peer in &others {
                cx.out.send(
                    peer.clone(),
                    PeerMessage::ReapCheck {
                        round: id,
                        partition: p,
                        entries: due.clone(),
                    },
                );
            }
            let deadline = cx.timers.set(
                cx.now.mono_ms + cx.config.request_timeout_ms,
                Timer::ReapRound {
                    partition: p,
                    round: id,
                },
            );
            self.rounds.insert(
                p,
                Round {
                    id,
                    confirmed: due.iter().map(|(k, _)| k.clone()).collect(),
                    entries: due.into_iter().collect(),
                    awaiting: others,
                    primaries,
                    deadline,
                },
            );
        }
    }

    pub(crate) fn on_message(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        members: &Membership,
        from: NodeId,
        msg: PeerMessage,
    ) {
        match msg {
            PeerMessage::ReapCheck {
                round,
                partition,
                entries,
            } => {
                if !is_fellow_primary(cx.config, members, partition, &from) {
                    return;
                }
                let grace = replica.tombstone_grace_ms();
                let mut keys = Vec::new();
                for (key, digest) in entries.into_iter().take(REAP_BATCH_MAX) {
                    if !in_partition(members, &key, partition) {
                        continue;
                    }
                    match replica.tombstone_age_ms(&key, digest) {
                        Ok(Some(age)) if age >= grace => keys.push(key),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(node = %cx.config.name, %key, error = %e, "cannot check a tombstone to reap")
                        }
                    }
                }
                cx.out.send(
                    from,
                    PeerMessage::ReapConfirm {
                        round,
                        partition,
                        keys,
                    },
                );
            }
            PeerMessage::ReapConfirm {
                round,
                partition,
                keys,
            } => {
                let confirm = Confirm {
                    from,
                    round,
                    partition,
                    keys,
                };
                self.on_confirm(cx, replica, members, confirm)
            }
            PeerMessage::Reap { partition, entries } => {
                if !is_fellow_primary(cx.config, members, partition, &from) {
                    return;
                }
                let entries: Vec<(Key, u64)> = entries
                    .into_iter()
                    .take(REAP_BATCH_MAX)
                    .filter(|(k, _)| in_partition(members, k, partition))
                    .collect();
                self.reap_local(cx, replica, &entries);
            }
            _ => {}
        }
    }

    fn on_confirm(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        members: &Membership,
        confirm: Confirm,
    ) {
        let Confirm {
            from,
            round,
            partition,
            keys,
        } = confirm;
        let Some(r) = self.rounds.get_mut(&partition) else {
            return;
        };
        if r.id != round || !r.awaiting.remove(&from) {
            return;
        }
        let theirs: BTreeSet<Key> = keys.into_iter().take(REAP_BATCH_MAX).collect();
        r.confirmed.retain(|k| theirs.contains(k));
        if !r.awaiting.is_empty() {
            return;
        }
        let Some(r) = self.rounds.remove(&partition) else {
            return;
        };
        cx.timers.cancel(r.deadline);
        // The ring or liveness may have changed while the round ran: reap only if the
        // primaries asked are still exactly the partition's primaries, all up.
        let n = cx.config.n as usize;
        if all_primaries_up(cx.me(), members, partition, n).as_ref() != Some(&r.primaries) {
            return;
        }
        let entries: Vec<(Key, u64)> = r
            .confirmed
            .iter()
            .filter_map(|k| r.entries.get(k).map(|d| (k.clone(), *d)))
            .collect();
        if entries.is_empty() {
            return;
        }
        let me = cx.config.name.clone();
        for peer in r.primaries.iter().filter(|x| **x != me) {
            cx.out.send(
                peer.clone(),
                PeerMessage::Reap {
                    partition,
                    entries: entries.clone(),
                },
            );
        }
        self.reap_local(cx, replica, &entries);
    }

    /// Removes each key that is still exactly the confirmed tombstone.
    fn reap_local(&mut self, cx: &Cx<'_>, replica: &mut Replica, entries: &[(Key, u64)]) {
        for (key, digest) in entries {
            match replica.reap_if_unchanged(key, *digest) {
                Ok(true) => self.reaped += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %cx.config.name, %key, error = %e, "cannot reap a tombstone")
                }
            }
        }
    }
}

/// The partition's N primaries when every one of them is up (self included).
fn all_primaries_up(
    me: &NodeId,
    members: &Membership,
    partition: u32,
    n: usize,
) -> Option<Vec<NodeId>> {
    let primaries: Vec<NodeId> = members
        .ring()
        .primaries(partition, n)
        .into_iter()
        .cloned()
        .collect();
    (primaries.len() == n && primaries.iter().all(|p| p == me || members.is_up(p)))
        .then_some(primaries)
}

/// True when both this node and `from` are primaries of `partition`.
fn is_fellow_primary(
    config: &NodeConfig,
    members: &Membership,
    partition: u32,
    from: &NodeId,
) -> bool {
    let ring = members.ring();
    if partition >= ring.partitions() {
        return false;
    }
    let primaries = ring.primaries(partition, config.n as usize);
    primaries.contains(&from) && primaries.contains(&&config.name)
}

fn in_partition(members: &Membership, key: &Key, partition: u32) -> bool {
    members
        .ring()
        .partition_of(key_position(&key.bucket, &key.key))
        == partition
}

#[cfg(test)]
mod tests;
