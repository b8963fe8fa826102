//! Hinted handoff: a fallback that took a write for a down primary keeps it as a hint
//! (see [`super::hints`]) and hands it to the primary once the primary is back.
//!
//! Each hint travels as a plain `Replicate` of the hinted object; the hint is dropped only
//! after the primary acked *and* only if the hint is unchanged since it was read, so a
//! newer write for the same key that arrived meanwhile is handed off in a later round.
//! Hints of a member that has left are folded into this node's data space instead, from
//! where partition transfer streams them to the key's current owners.
//!
//! Deliveries are a window of [`HANDOFF_INFLIGHT_MAX`] clocked by acks: once half the
//! window has been acked, the next hints go out at once, so a primary seen up drains at
//! the pace of its acks, not one window per handoff tick. (It used to be one window per
//! tick: 64 hints a second, and a window sent to a restarted primary's dead previous
//! process held its slots for a whole request timeout, which is how a few hundred hints
//! took ~20 s.) A primary the failure detector suspects is skipped until it is trusted
//! again; being heard from again pushes its hints at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::membership::Membership;
use crate::core::membership::gossip::MemberPhase;
use crate::core::node::Cx;
use crate::core::object::Object;
use crate::core::placement::ring::{NodeId, Reach};
use crate::core::replica::Replica;
use crate::core::timer::{Timer, TimerId, TimerTable};
use crate::proto::{Key, PeerMessage};

/// Default period of hinted-handoff rounds.
pub const HANDOFF_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Most hints in flight to primaries at once.
pub const HANDOFF_INFLIGHT_MAX: usize = 64;
/// Most hints of a departed member folded into the data space per round.
pub const ABSORB_BATCH_MAX: usize = 512;

/// The handoff subsystem: hints on their way to their primaries.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// Deliveries waiting for the primary's ack, by request id.
    inflight: BTreeMap<u64, Delivery>,
    /// (primary, key) of every delivery in flight, so a hint is never sent twice at once.
    keys: BTreeSet<(NodeId, Key)>,
    /// Hints the primaries acknowledged and this node then dropped.
    delivered: u64,
}

/// One hint sent to its primary.
#[derive(Debug)]
struct Delivery {
    primary: NodeId,
    key: Key,
    object: Object,
    deadline: TimerId,
}

impl Handoff {
    /// Deliveries in flight.
    pub(crate) fn len(&self) -> usize {
        self.inflight.len()
    }

    /// True when `id` is a delivery in flight.
    pub(crate) fn owns(&self, id: u64) -> bool {
        self.inflight.contains_key(&id)
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Periodic: folds hints of departed members into the data space and pushes hints
    /// to every primary that is up.
    pub(crate) fn on_tick(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, members: &Membership) {
        let departed: Vec<NodeId> = replica
            .hints()
            .primaries()
            .filter(|p| members.get(p).is_none_or(|m| m.phase == MemberPhase::Left))
            .cloned()
            .collect();
        for primary in departed {
            absorb_hints_of(cx, replica, &primary);
        }
        let now_ms = cx.now.mono_ms;
        let primaries: Vec<NodeId> = replica
            .hints()
            .primaries()
            .filter(|p| members.reach(p, now_ms) == Reach::Up)
            .cloned()
            .collect();
        for primary in primaries {
            self.push(cx, replica, &primary);
        }
        cx.timers.set(
            cx.now.mono_ms + cx.config.handoff_interval_ms,
            Timer::Handoff,
        );
    }

    /// A member came back: push its hints now rather than at the next tick.
    pub(crate) fn on_member_up(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, node: &NodeId) {
        if replica.hints().for_primary(node) > 0 {
            self.push(cx, replica, node);
        }
    }

    /// Pushes up to a batch of hints for `primary`, bounded by the in-flight limit.
    pub(crate) fn push(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, primary: &NodeId) {
        let room = HANDOFF_INFLIGHT_MAX.saturating_sub(self.keys.len());
        if room == 0 {
            return;
        }
        let hinted = match replica.hinted(primary, room + self.keys.len()) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(node = %cx.me(), %primary, error = %e, "cannot read hints");
                return;
            }
        };
        for (key, object) in hinted {
            if self.keys.len() >= HANDOFF_INFLIGHT_MAX || !cx.timers.has_room() {
                break;
            }
            if !self.keys.insert((primary.clone(), key.clone())) {
                continue;
            }
            let id = cx.ids.fresh();
            let msg = PeerMessage::Replicate {
                id,
                key: key.clone(),
                object: object.clone(),
                hint: None,
            };
            cx.out.send(primary.clone(), msg);
            let deadline = cx.timers.set(
                cx.now.mono_ms + cx.config.request_timeout_ms,
                Timer::Request(id),
            );
            self.inflight.insert(
                id,
                Delivery {
                    primary: primary.clone(),
                    key,
                    object,
                    deadline,
                },
            );
        }
        debug_assert_eq!(self.keys.len(), self.inflight.len());
    }

    /// The primary's ack of a delivery: drop the hint if it is unchanged, and once half
    /// the window is free, send the primary's next hints (only after a delivery that
    /// succeeded: a primary that refuses is retried at the next tick, not in a loop).
    pub(crate) fn on_ack(
        &mut self,
        cx: &mut Cx<'_>,
        replica: &mut Replica,
        members: &Membership,
        id: u64,
        from: &NodeId,
        error: Option<String>,
    ) {
        if self.settle_ack(cx.timers, replica, id, from, error)
            && self.keys.len() <= HANDOFF_INFLIGHT_MAX / 2
            && members.reach(from, cx.now.mono_ms) == Reach::Up
            && replica.hints().for_primary(from) > 0
        {
            self.push(cx, replica, from);
        }
    }

    /// Ends the delivery an ack answers; true when the hint was delivered and dropped.
    fn settle_ack(
        &mut self,
        timers: &mut TimerTable,
        replica: &mut Replica,
        id: u64,
        from: &NodeId,
        error: Option<String>,
    ) -> bool {
        if self.inflight.get(&id).is_none_or(|d| &d.primary != from) {
            return false;
        }
        let Some(d) = self.inflight.remove(&id) else {
            return false;
        };
        timers.cancel(d.deadline);
        self.keys.remove(&(d.primary.clone(), d.key.clone()));
        if error.is_none()
            && let Ok(true) = replica.drop_hint_if_unchanged(&d.primary, &d.key, &d.object)
        {
            self.delivered += 1;
            return true;
        }
        false
    }

    /// `node` cannot be reached: its deliveries end, and a later round retries them.
    pub(crate) fn on_unreachable(&mut self, cx: &mut Cx<'_>, node: &NodeId) {
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, d)| &d.primary == node)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(d) = self.inflight.remove(&id) {
                cx.timers.cancel(d.deadline);
                self.keys.remove(&(d.primary, d.key));
            }
        }
    }

    /// A delivery's deadline passed; a later round retries it.
    pub(crate) fn on_timeout(&mut self, cx: &mut Cx<'_>, id: u64) {
        if let Some(d) = self.inflight.remove(&id) {
            debug_assert!(!cx.timers.cancel(d.deadline), "a fired timer is still set");
            self.keys.remove(&(d.primary, d.key));
        }
    }
}

/// Hints held for a member that has left can never be handed to it: fold them into
/// our data space, from where partition transfer streams them to the key's current
/// owners.
pub(crate) fn absorb_hints_of(cx: &Cx<'_>, replica: &mut Replica, primary: &NodeId) {
    let hinted = match replica.hinted(primary, ABSORB_BATCH_MAX) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(node = %cx.me(), %primary, error = %e, "cannot read hints");
            return;
        }
    };
    for (key, object) in hinted {
        let merged = replica.merge(&key, &object, None);
        if let Err(e) = merged.and_then(|_| replica.drop_hint_if_unchanged(primary, &key, &object))
        {
            tracing::warn!(node = %cx.me(), %primary, %key, error = %e, "cannot absorb a hint of a departed member");
        }
    }
}
