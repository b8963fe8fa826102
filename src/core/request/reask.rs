//! Asking again, before the deadline, the nodes a request still waits on.
//!
//! A request whose message or answer was lost would otherwise wait out its whole
//! deadline and fail although every replica is up, and a replica that stalls would make
//! a W=N write fail although other nodes could hold a hint for it. So a coordinated
//! request wakes [`REASKS_PER_TIMEOUT`] times before its deadline, and each time:
//! - sends its message again to every node still silent (a replicate is an idempotent
//!   merge, a read has no effect, and an ack counts once);
//! - for a sloppy request, also asks one stand-in per silent node, the next node in
//!   ring order past the primaries that was not asked yet (those the failure detector
//!   calls down last), with a hint for the primary it covers. Strict requests never use
//!   stand-ins.
//!
//! A replica that refuses, or cannot be reached, gets its stand-in at once, the same
//! way.
//!
//! A forward that may move on (a get, or a write with an operation id) is sent again to
//! its coordinator, which drops the repeat if the first arrived. Nothing is re-asked
//! once the client has its answer. Over QUIC a message is lost only with its connection,
//! so on a healthy cluster the re-asks cost nothing but the timer; they matter when a
//! connection dies under a message, or a peer stalls.

use crate::core::membership::Membership;
use crate::core::node::Cx;
use crate::core::placement::ring::{NodeId, Reach, Target, key_position};
use crate::core::request::{Data, Pending, Requests, Retry};
use crate::core::timer::{Timer, TimerId};
use crate::proto::{ClientRequest, PeerMessage};

/// Times a request wakes to re-ask before its deadline. Eight, so that a strict request
/// (which has no stand-in) fails on a lossy link only when a replica's message or answer
/// is lost nine times running; with four, 7 % loss failed about one strict W=3 request
/// in a few thousand in the simulator. Over QUIC nothing is lost but with a connection,
/// so on real links the extra wake-ups resend only to a replica slower than an eighth of
/// the timeout.
pub const REASKS_PER_TIMEOUT: u64 = 8;
/// Shortest time between two re-asks: a request with a shorter timeout is re-asked
/// less often.
pub const REASK_MIN_MS: u64 = 50;

/// When a pending request wakes next, and why.
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) timer: TimerId,
    pub(crate) deadline_ms: u64,
    /// Time between re-asks; `None` for a request never asked again.
    reask_every_ms: Option<u64>,
}

/// Time between re-asks of a request with `timeout_ms`.
pub(crate) fn every_ms(timeout_ms: u64) -> u64 {
    (timeout_ms / REASKS_PER_TIMEOUT).max(REASK_MIN_MS)
}

impl Requests {
    /// Sets request `id`'s timer for its next re-ask, or its deadline when that comes
    /// first.
    pub(super) fn arm(
        &mut self,
        cx: &mut Cx<'_>,
        id: u64,
        deadline_ms: u64,
        reask_every_ms: Option<u64>,
    ) {
        let next_ms = reask_every_ms
            .map(|every| cx.now.mono_ms + every)
            .filter(|at| *at < deadline_ms)
            .unwrap_or(deadline_ms);
        let timer = cx.timers.set(next_ms, Timer::Request(id));
        self.deadlines.insert(
            id,
            Schedule {
                timer,
                deadline_ms,
                reask_every_ms,
            },
        );
    }

    /// True when request `id`'s timer, firing at `now_ms`, is its deadline rather than a
    /// re-ask.
    pub(crate) fn is_deadline(&self, id: u64, now_ms: u64) -> bool {
        self.deadlines
            .get(&id)
            .is_none_or(|s| now_ms >= s.deadline_ms)
    }

    /// True when request `id` will be re-asked at least once more before its deadline.
    pub(super) fn reasks_left(&self, id: u64, now_ms: u64) -> bool {
        self.deadlines.get(&id).is_some_and(|s| {
            s.reask_every_ms
                .is_some_and(|every| now_ms + every < s.deadline_ms)
        })
    }

    /// Request `id`'s timer fired before its deadline: asks again whoever is silent,
    /// and a stand-in for each of them, then sets the next wake-up.
    pub(crate) fn on_reask(&mut self, cx: &mut Cx<'_>, data: Data<'_>, id: u64) {
        let Some(schedule) = self.deadlines.remove(&id) else {
            return;
        };
        let me = cx.me().clone();
        let silent: Vec<NodeId> = self.silent(&me, id);
        match self.pending.get(&id) {
            Some(Pending::Write(w)) => {
                for t in w.targets.iter().filter(|t| silent.contains(&t.node)) {
                    let msg = PeerMessage::Replicate {
                        id,
                        key: w.key.clone(),
                        object: w.object.clone(),
                        hint: t.hint.clone(),
                    };
                    cx.out.send(t.node.clone(), msg);
                }
            }
            Some(Pending::Read(r)) if !r.replied => {
                for t in r.targets.iter().filter(|t| silent.contains(&t.node)) {
                    let msg = PeerMessage::Read {
                        id,
                        key: r.key.clone(),
                        hint: t.hint.clone(),
                    };
                    cx.out.send(t.node.clone(), msg);
                }
            }
            Some(Pending::Forward {
                coordinator,
                retry: Some(retry),
                ..
            }) => {
                let request = retry_request(retry);
                cx.out
                    .send(coordinator.clone(), PeerMessage::Forward { id, request });
            }
            _ => {}
        }
        self.cover(cx, data.members, id, &silent);
        if self.pending.contains_key(&id) {
            self.arm(cx, id, schedule.deadline_ms, schedule.reask_every_ms);
        }
        self.check_invariants();
    }

    /// The failure detector declared `node` down. Its verdict may be wrong, so the
    /// requests waiting on it still count its answer if one comes; the sloppy ones ask
    /// a stand-in for it at once.
    pub(crate) fn on_declared_down(&mut self, cx: &mut Cx<'_>, data: Data<'_>, node: &NodeId) {
        let waiting: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Write(w) => w.quorum.is_silent(node),
                Pending::Read(r) => r.quorum.is_silent(node),
                Pending::Forward { .. } => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.cover(cx, data.members, id, std::slice::from_ref(node));
        }
    }

    /// Asks a stand-in for each of `lost` (nodes request `id` waited on that failed,
    /// were unreachable or stay silent) when the request is a sloppy write, or a sloppy
    /// read whose client still waits. Stand-ins are the next nodes past the key's
    /// primaries that were not asked yet and are not this node, those believed down
    /// last, each with a hint for the primary it covers.
    pub(super) fn cover(
        &mut self,
        cx: &mut Cx<'_>,
        members: &Membership,
        id: u64,
        lost: &[NodeId],
    ) {
        let me = cx.me().clone();
        let now_ms = cx.now.mono_ms;
        // A write sends its object to a stand-in, a read asks it for its copy.
        let (quorum, targets, key, object) = match self.pending.get_mut(&id) {
            Some(Pending::Write(w)) => (&mut w.quorum, &mut w.targets, &w.key, Some(&w.object)),
            Some(Pending::Read(r)) if !r.replied => (&mut r.quorum, &mut r.targets, &r.key, None),
            _ => return,
        };
        if quorum.is_strict() || lost.is_empty() {
            return;
        }
        let ring = members.ring();
        let partition = ring.partition_of(key_position(&key.bucket, &key.key));
        // Nodes believed up or suspected first, in ring order; then, as long shots, the
        // ones this node's view calls down: the view lags a restart or a healed
        // partition, and a node really down only answers "unreachable" again.
        // A primary left out because the view calls it down is a long shot too, and
        // holds the write as its own.
        let primaries = ring.primaries(partition, quorum.n());
        let fresh: Vec<&NodeId> = ring
            .beyond(partition, quorum.n())
            .chain(primaries.iter().copied())
            .filter(|n| **n != me && !quorum.was_asked(n))
            .collect();
        let (live, long_shots): (Vec<&NodeId>, Vec<&NodeId>) = fresh
            .into_iter()
            .partition(|n| members.reach(n, now_ms) != Reach::Down);
        let mut candidates = live.into_iter().chain(long_shots);
        let added: Vec<Target> = targets
            .iter()
            .filter(|t| lost.contains(&t.node))
            .map_while(|t| {
                let node = candidates.next()?.clone();
                let hint = if primaries.contains(&&node) {
                    None
                } else {
                    Some(t.hint.clone().unwrap_or_else(|| t.node.clone()))
                };
                Some(Target { node, hint })
            })
            .collect();
        for t in added {
            quorum.ask(&t);
            targets.push(t.clone());
            let msg = match object {
                Some(object) => PeerMessage::Replicate {
                    id,
                    key: key.clone(),
                    object: object.clone(),
                    hint: t.hint,
                },
                None => PeerMessage::Read {
                    id,
                    key: key.clone(),
                    hint: t.hint,
                },
            };
            cx.out.send(t.node, msg);
        }
    }
}

/// The request a forward that may move on carries, built again to send it elsewhere or
/// once more.
pub(super) fn retry_request(retry: &Retry) -> ClientRequest {
    match retry.write.clone() {
        Some(crate::core::object::Write { op, id }) => ClientRequest::Write {
            key: retry.key.clone(),
            op,
            opts: retry.opts,
            id,
        },
        None => ClientRequest::Get {
            key: retry.key.clone(),
            opts: retry.opts,
        },
    }
}
