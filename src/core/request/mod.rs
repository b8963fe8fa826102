//! Requests this node coordinates or forwards: put, get, delete and every CRDT update,
//! with per-request N, W and R over a sloppy preference list.
//!
//! A write is applied locally first (new dot, HLC stamp or CRDT op with this node's
//! actor), then the resulting object — not the operation — is sent to the other
//! replicas, so every replication message is an idempotent merge. The client gets its
//! answer after W acks (this node included); a get answers after R replies with the
//! merge of what it received, then read-repairs every replica that sent a stale copy or
//! none. A node outside the key's preference list forwards the request once to the
//! first live replica. Preference lists come from the failure detector's view
//! ([`Membership::reach`]): a suspected replica is replaced by an up stand-in when one
//! exists, so neither a coordinator nor a forward waits on a node already suspected when
//! another can answer. Late, duplicate and unknown replies are ignored.
//!
//! - `plan`: N, W/R, strictness and timeout of one request;
//! - [`write`] and `read`: the state of one coordinated write or read;
//! - [`forward`]: duplicate detection for forwarded requests;
//! - `reask`: asking again, before the deadline, the replicas that stay silent.

pub mod forward;
pub(crate) mod plan;
pub(crate) mod read;
pub(crate) mod reask;
pub(crate) mod write;

use std::collections::BTreeMap;

use crate::core::membership::Membership;
use crate::core::node::Cx;
use crate::core::object::clock::{ActorId, Hlc};
use crate::core::object::{Op, ReadValue, Write};
use crate::core::placement::quorum::Quorum;
use crate::core::placement::ring::{NodeId, key_position};
use crate::core::replica::{Replica, ReplicaError};
use crate::core::request::forward::{FORWARD_FAILOVERS_MAX, ForwardsSeen};
use crate::core::request::plan::Plan;
use crate::core::request::read::ReadState;
use crate::core::request::write::WriteState;
use crate::core::stats::RequestWindows;
use crate::core::timer::{TIMERS_MAX, TimerTable};
use crate::proto::{ClientReply, ClientRequest, Key, PeerMessage, QuorumOpts, RequestError};
use crate::storage::check_data_key;

/// Who is waiting for a request's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Client(u64),
    Peer { node: NodeId, id: u64 },
}

/// The requests subsystem: everything this node coordinates or forwarded, by id.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    pending: BTreeMap<u64, Pending>,
    /// When each pending request that has a deadline wakes next (a request decided
    /// while it starts never gets one).
    deadlines: BTreeMap<u64, reask::Schedule>,
    forwards: ForwardsSeen,
    /// Stale replicas repaired after reads.
    read_repairs: u64,
}

/// What the requests subsystem borrows from the data side for one call.
#[derive(Debug)]
pub(crate) struct Data<'a> {
    pub(crate) replica: &'a mut Replica,
    pub(crate) members: &'a Membership,
    pub(crate) hlc: &'a mut Hlc,
    pub(crate) actor: ActorId,
    /// Request counts of the keys this node coordinates (hot keys).
    pub(crate) traffic: &'a mut RequestWindows,
}

impl Data<'_> {
    /// The same borrows for one more call.
    pub(crate) fn reborrow(&mut self) -> Data<'_> {
        Data {
            replica: self.replica,
            members: self.members,
            hlc: self.hlc,
            actor: self.actor,
            traffic: self.traffic,
        }
    }
}

/// A request in flight.
#[derive(Debug)]
enum Pending {
    Write(WriteState),
    Read(ReadState),
    Forward {
        origin: Origin,
        coordinator: NodeId,
        /// For a client's get, or a write with an operation id: what a failover needs
        /// to send it elsewhere.
        retry: Option<Retry>,
    },
}

impl Pending {
    /// Who waits for the answer.
    fn origin(&self) -> &Origin {
        match self {
            Pending::Write(w) => &w.origin,
            Pending::Read(r) => &r.origin,
            Pending::Forward { origin, .. } => origin,
        }
    }
}

/// A forwarded request that may move on when its coordinator fails: a get, or a write
/// whose operation id makes a second delivery harmless.
#[derive(Debug)]
struct Retry {
    key: Key,
    opts: QuorumOpts,
    /// `None` for a get.
    write: Option<Write>,
    /// Coordinators that already failed this request since the last fresh start.
    tried: Vec<NodeId>,
    /// Failovers made so far, at most [`FORWARD_FAILOVERS_MAX`].
    failovers: usize,
    /// The request's timeout (`Plan::timeout_ms`).
    timeout_ms: u64,
    /// When the last answer must be in: the first forward plus
    /// [`forward::budget_ms`].
    deadline_ms: u64,
}

/// A request this node coordinates, as it starts.
struct Job {
    id: u64,
    origin: Origin,
    key: Key,
    /// This node's place among the targets: `Some(hint)` when it is one (with the
    /// primary it stands in for, if a fallback), `None` when it coordinates a get as a
    /// stand-in for coordinators that failed.
    my_hint: Option<Option<NodeId>>,
    quorum: Quorum,
    targets: Vec<crate::core::placement::ring::Target>,
}

impl Job {
    /// A request coordinated here against `pref`'s targets.
    fn new(
        id: u64,
        origin: Origin,
        key: Key,
        my_hint: Option<Option<NodeId>>,
        plan: &Plan,
        pref: crate::core::placement::ring::PreferenceList,
    ) -> Job {
        Job {
            id,
            origin,
            key,
            my_hint,
            quorum: Quorum::new(
                plan.needed,
                plan.n,
                plan.strict,
                &pref.targets,
                &pref.uncovered,
            ),
            targets: pref.targets,
        }
    }
}

impl Requests {
    /// Requests coordinated or forwarded and not yet finished.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn read_repairs(&self) -> u64 {
        self.read_repairs
    }

    /// Ids of the requests in flight.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// True when `id` is a request of this subsystem (not a handoff or a repair).
    pub(crate) fn owns(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether to run a forwarded request: its first delivery, or a forwarder's repeat
    /// of a get or a write with an operation id that is not running here any more (its
    /// answer may have been lost; see [`forward`]).
    pub(crate) fn admit_forward(
        &mut self,
        from: &NodeId,
        id: u64,
        request: &ClientRequest,
    ) -> bool {
        let movable = match request {
            ClientRequest::Get { .. } => true,
            ClientRequest::Write { id: op_id, .. } => op_id.is_some(),
            _ => false,
        };
        self.forwards.admit(from, id, movable)
    }

    /// Starts a get or a write. `other_inflight` counts the node's other requests in
    /// flight (hint deliveries), which share the in-flight limit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        cx: &mut Cx<'_>,
        data: Data<'_>,
        origin: Origin,
        key: Key,
        write: Option<Write>,
        opts: QuorumOpts,
        other_inflight: usize,
    ) {
        let inflight = self.pending.len() + other_inflight;
        if inflight >= cx.config.inflight_max {
            let err = RequestError::Overloaded {
                node: cx.me().clone(),
                inflight,
                limit: cx.config.inflight_max,
            };
            return finish(cx, origin, ClientReply::Error(err));
        }
        if !cx.timers.has_room() {
            let err = RequestError::TimersFull {
                node: cx.me().clone(),
                timers: cx.timers.len(),
                limit: TIMERS_MAX,
            };
            return finish(cx, origin, ClientReply::Error(err));
        }
        if let Err(e) = check_data_key(&key.bucket, &key.key) {
            let err = RequestError::BadRequest(format!("{key}: {e}"));
            return finish(cx, origin, ClientReply::Error(err));
        }
        let plan = match Plan::resolve(&opts, write.is_none(), cx.config, data.members.len()) {
            Ok(p) => p,
            Err(e) => return finish(cx, origin, ClientReply::Error(e)),
        };
        let members = data.members;
        let ring = members.ring();
        let partition = ring.partition_of(key_position(&key.bucket, &key.key));
        let now_ms = cx.now.mono_ms;
        let pref =
            ring.preference_list(partition, plan.n, plan.strict, |n| members.reach(n, now_ms));
        let op_name = write.as_ref().map_or("get", |w| op_name(&w.op));
        if pref.targets.len() < plan.needed {
            let err = unavailable(op_name, &key, &plan, &pref, members);
            return finish(cx, origin, ClientReply::Error(err));
        }
        let Some(my_hint) = pref
            .targets
            .iter()
            .find(|t| &t.node == cx.me())
            .map(|t| t.hint.clone())
        else {
            // A write without an operation id might be applied twice if sent again.
            let movable = write.as_ref().is_none_or(|w| w.id.is_some());
            let retry = match &origin {
                Origin::Client(_) if movable => Some(Retry {
                    key: key.clone(),
                    opts,
                    write: write.clone(),
                    tried: Vec::new(),
                    failovers: 0,
                    timeout_ms: plan.timeout_ms,
                    deadline_ms: now_ms + forward::budget_ms(plan.timeout_ms),
                }),
                _ => None,
            };
            let request = match write {
                Some(Write { op, id }) => ClientRequest::Write { key, op, opts, id },
                None => ClientRequest::Get { key, opts },
            };
            let coordinator = pref.targets[0].node.clone();
            return self.forward(cx, plan.timeout_ms, origin, request, coordinator, retry);
        };
        let my_hint = Some(my_hint);
        data.traffic.observe(cx.now.mono_ms, &key);
        let job = Job::new(cx.ids.fresh(), origin, key, my_hint, &plan, pref);
        let id = job.id;
        match write {
            Some(write) => self.coordinate_write(cx, data, job, write, op_name),
            None => self.coordinate_read(cx, data, job),
        }
        self.set_deadline(cx, id, plan.timeout_ms);
        self.check_invariants();
    }

    fn coordinate_write(
        &mut self,
        cx: &mut Cx<'_>,
        data: Data<'_>,
        job: Job,
        write: Write,
        op_name: &'static str,
    ) {
        let Job {
            id,
            origin,
            key,
            my_hint,
            mut quorum,
            targets,
        } = job;
        let ts = data.hlc.now(cx.now.wall_ms);
        let limits = cx.config.limits;
        let (object, applied) = match data.replica.apply(
            &key,
            write,
            data.actor,
            ts,
            &limits,
            my_hint.flatten().as_ref(),
        ) {
            Ok(done) => done,
            Err(ReplicaError::Object(error)) => {
                let err = RequestError::Object {
                    key: key.to_string(),
                    error,
                };
                return finish(cx, origin, ClientReply::Error(err));
            }
            Err(e) => {
                let err = RequestError::Storage {
                    node: cx.me().clone(),
                    message: e.to_string(),
                };
                return finish(cx, origin, ClientReply::Error(err));
            }
        };
        let me = cx.me().clone();
        quorum.ack(&me);
        let value: ReadValue = object.read();
        for t in targets.iter().filter(|t| t.node != me) {
            let msg = PeerMessage::Replicate {
                id,
                key: key.clone(),
                object: object.clone(),
                hint: t.hint.clone(),
            };
            cx.out.send(t.node.clone(), msg);
        }
        let state = WriteState {
            origin,
            key,
            op_name,
            quorum,
            targets,
            object,
            value,
            warning: applied.warning,
        };
        self.insert(id, Pending::Write(state));
        self.check_write(cx, id);
    }

    fn coordinate_read(&mut self, cx: &mut Cx<'_>, mut data: Data<'_>, job: Job) {
        let Job {
            id,
            origin,
            key,
            my_hint,
            quorum,
            targets,
        } = job;
        let me = cx.me().clone();
        for t in targets.iter().filter(|t| t.node != me) {
            let msg = PeerMessage::Read {
                id,
                key: key.clone(),
                hint: t.hint.clone(),
            };
            cx.out.send(t.node.clone(), msg);
        }
        let local = my_hint.map(|hint| data.replica.read(&key, hint.as_ref()));
        let state = ReadState {
            origin,
            key,
            quorum,
            targets,
            replies: BTreeMap::new(),
            merged: None,
            replied: false,
        };
        self.insert(id, Pending::Read(state));
        if let Some(local) = local {
            self.on_read_reply(
                cx,
                data.reborrow(),
                id,
                me,
                local.map_err(|e| e.to_string()),
            );
        }
    }

    /// Hands the request to `coordinator`; the answer comes back as a `ForwardReply`.
    fn forward(
        &mut self,
        cx: &mut Cx<'_>,
        timeout_ms: u64,
        origin: Origin,
        request: ClientRequest,
        coordinator: NodeId,
        retry: Option<Retry>,
    ) {
        if let Origin::Peer { .. } = origin {
            // Forwarded once already and our view disagrees with the sender's: refuse
            // rather than bounce the request around the ring.
            let err = RequestError::Forward {
                via: cx.me().clone(),
                coordinator,
                reason: "the membership views disagree about who replicates this key".into(),
            };
            return finish(cx, origin, ClientReply::Error(err));
        }
        let id = cx.ids.fresh();
        cx.out
            .send(coordinator.clone(), PeerMessage::Forward { id, request });
        // Only a request that may move on is sent again: the coordinator drops the
        // repeat if the first arrived, so a lost forward costs a re-ask, not a failover.
        let reask = retry.is_some();
        self.pending.insert(
            id,
            Pending::Forward {
                origin,
                coordinator,
                retry,
            },
        );
        let attempt_end_ms = cx.now.mono_ms + forward::attempt_ms(timeout_ms);
        let deadline_ms = match self.pending.get(&id) {
            Some(Pending::Forward {
                retry: Some(retry), ..
            }) => attempt_end_ms.min(retry.deadline_ms),
            _ => attempt_end_ms,
        };
        self.arm(
            cx,
            id,
            deadline_ms,
            reask.then(|| reask::every_ms(timeout_ms)),
        );
    }

    /// The coordinator's answer to a request this node forwarded.
    pub(crate) fn on_forward_reply(
        &mut self,
        cx: &mut Cx<'_>,
        from: &NodeId,
        id: u64,
        reply: ClientReply,
    ) {
        if let Some(Pending::Forward { coordinator, .. }) = self.pending.get(&id)
            && coordinator == from
            && let Some(Pending::Forward { origin, .. }) = self.take(cx.timers, id)
        {
            finish(cx, origin, reply);
        }
    }

    /// A replica's ack of a write this node coordinates.
    pub(crate) fn on_replicate_ack(
        &mut self,
        cx: &mut Cx<'_>,
        members: &Membership,
        id: u64,
        from: &NodeId,
        error: Option<String>,
    ) {
        let refused = error.is_some();
        if let Some(Pending::Write(w)) = self.pending.get_mut(&id)
            && w.on_ack(from, error)
        {
            if refused {
                self.cover(cx, members, id, std::slice::from_ref(from));
            }
            self.check_write(cx, id);
        }
    }

    /// A replica's reply to a read this node coordinates.
    pub(crate) fn on_read_reply(
        &mut self,
        cx: &mut Cx<'_>,
        data: Data<'_>,
        id: u64,
        from: NodeId,
        result: Result<Option<crate::core::object::Object>, String>,
    ) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        let refused = result.is_err();
        if r.on_reply(from.clone(), result) {
            if refused {
                self.cover(cx, data.members, id, &[from]);
            }
            self.check_read(cx, data.replica, id);
        }
    }

    /// `node` cannot be reached: count it against every request waiting on it.
    pub(crate) fn on_unreachable(&mut self, cx: &mut Cx<'_>, mut data: Data<'_>, node: &NodeId) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        let now_ms = cx.now.mono_ms;
        for id in ids {
            // A request that will re-ask before its deadline keeps waiting on the node:
            // the report may be about messages sent before the request started (a
            // partition that just healed). It gets a stand-in now if it is sloppy.
            if self.reasks_left(id, now_ms) {
                let reported = match self.pending.get_mut(&id) {
                    Some(Pending::Write(w)) => w.quorum.report(node),
                    Some(Pending::Read(r)) => r.quorum.report(node),
                    _ => false,
                };
                if reported {
                    self.cover(cx, data.members, id, std::slice::from_ref(node));
                    continue;
                }
            }
            let counted = match self.pending.get_mut(&id) {
                Some(Pending::Write(w)) => w.quorum.unreachable(node),
                Some(Pending::Read(r)) => r.quorum.unreachable(node),
                Some(Pending::Forward { coordinator, .. }) => coordinator == node,
                None => false,
            };
            if counted {
                self.cover(cx, data.members, id, std::slice::from_ref(node));
            }
            match self.pending.get(&id) {
                Some(Pending::Write(_)) if counted => self.check_write(cx, id),
                Some(Pending::Read(_)) if counted => self.check_read(cx, data.replica, id),
                Some(Pending::Forward { .. }) if counted => {
                    self.fail_forward(cx, data.reborrow(), id, "it is unreachable")
                }
                _ => {}
            }
        }
    }

    /// The peers request `id` still waits on: the replicas that have not answered, or a
    /// forward's coordinator. Asked when its deadline passes, so the node can suspect
    /// them before the request fails over.
    pub(crate) fn silent(&self, me: &NodeId, id: u64) -> Vec<NodeId> {
        match self.pending.get(&id) {
            Some(Pending::Write(w)) => w.quorum.silent().filter(|n| *n != me).cloned().collect(),
            Some(Pending::Read(r)) => r.quorum.silent().filter(|n| *n != me).cloned().collect(),
            Some(Pending::Forward { coordinator, .. }) => vec![coordinator.clone()],
            None => Vec::new(),
        }
    }

    /// A request's deadline passed; stale ids (finished requests) are ignored.
    pub(crate) fn on_timeout(&mut self, cx: &mut Cx<'_>, data: Data<'_>, id: u64) {
        match self.pending.get(&id) {
            Some(Pending::Write(_)) => {
                if let Some(Pending::Write(w)) = self.take(cx.timers, id) {
                    let reply = w.failure();
                    finish(cx, w.origin, reply);
                }
            }
            Some(Pending::Read(_)) => {
                if let Some(Pending::Read(r)) = self.take(cx.timers, id) {
                    self.end_read(cx, data.replica, r);
                }
            }
            Some(Pending::Forward { .. }) => self.fail_forward(cx, data, id, "it timed out"),
            None => {}
        }
    }

    fn check_write(&mut self, cx: &mut Cx<'_>, id: u64) {
        let Some(Pending::Write(w)) = self.pending.get(&id) else {
            return;
        };
        let Some(outcome) = w.outcome() else {
            return;
        };
        let Some(Pending::Write(w)) = self.take(cx.timers, id) else {
            return;
        };
        let (origin, reply) = w.into_reply(outcome);
        finish(cx, origin, reply);
    }

    fn check_read(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, id: u64) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        if let Some((origin, reply)) = r.answer_if_met(cx.config.limits.siblings_warn) {
            // Answered, though still waiting for the other replicas to repair them: a
            // forwarder's repeat now means the answer was lost, so it runs again.
            if let Origin::Peer { node, id } = &origin {
                self.forwards.ended(node, *id);
            }
            finish(cx, origin, reply);
        }
        let Some(Pending::Read(r)) = self.pending.get(&id) else {
            return;
        };
        if r.is_done()
            && let Some(Pending::Read(r)) = self.take(cx.timers, id)
        {
            self.end_read(cx, replica, r);
        }
    }

    /// Answers the client if it is still waiting, then repairs stale replicas.
    fn end_read(&mut self, cx: &mut Cx<'_>, replica: &mut Replica, r: ReadState) {
        if let Some((origin, reply)) = r.final_answer(cx.config.limits.siblings_warn) {
            finish(cx, origin, reply);
        }
        let repairs = r.repairs();
        let Some(merged) = r.merged else { return };
        let me = cx.me().clone();
        for repair in repairs {
            self.read_repairs += 1;
            if repair.node == me {
                if let Err(e) = replica.merge(&r.key, &merged, repair.hint.as_ref()) {
                    tracing::warn!(node = %me, key = %r.key, error = %e, "local read repair failed");
                }
            } else {
                let id = cx.ids.fresh();
                let msg = PeerMessage::Replicate {
                    id,
                    key: r.key.clone(),
                    object: merged.clone(),
                    hint: repair.hint,
                };
                cx.out.send(repair.node, msg);
            }
        }
    }

    /// Gives request `id` its deadline and its re-asks, unless it was decided while it
    /// started.
    fn set_deadline(&mut self, cx: &mut Cx<'_>, id: u64, timeout_ms: u64) {
        if self.pending.contains_key(&id) {
            let deadline_ms = cx.now.mono_ms + timeout_ms;
            self.arm(cx, id, deadline_ms, Some(reask::every_ms(timeout_ms)));
        }
    }

    /// Adds a request this node coordinates, noting a forwarded one as running.
    fn insert(&mut self, id: u64, pending: Pending) {
        if let Origin::Peer { node, id } = pending.origin() {
            self.forwards.started(node, *id);
        }
        self.pending.insert(id, pending);
    }

    /// Removes a request that is done, with its timer.
    fn take(&mut self, timers: &mut TimerTable, id: u64) -> Option<Pending> {
        if let Some(schedule) = self.deadlines.remove(&id) {
            timers.cancel(schedule.timer);
        }
        let pending = self.pending.remove(&id)?;
        if let Origin::Peer { node, id } = pending.origin() {
            self.forwards.ended(node, *id);
        }
        Some(pending)
    }

    /// Every deadline belongs to a pending request, and every request but a forward
    /// waits on a quorum that can still change.
    fn check_invariants(&self) {
        debug_assert!(
            self.deadlines
                .keys()
                .all(|id| self.pending.contains_key(id)),
            "a deadline outlived its request"
        );
        debug_assert!(self.pending.len() >= self.deadlines.len());
        debug_assert!(
            self.forwards.running() <= self.pending.len(),
            "a forward is noted as running but no request of it is pending"
        );
    }

    /// A forward's coordinator failed. A client's get, or a write with an operation id,
    /// moves to the next replica, or is coordinated here as a stand-in, at most
    /// [`FORWARD_FAILOVERS_MAX`] times and while its budget lasts; anything else fails,
    /// naming the coordinator (a write without an id may or may not have been applied,
    /// so it is not sent again).
    fn fail_forward(&mut self, cx: &mut Cx<'_>, data: Data<'_>, id: u64, reason: &str) {
        let Some(Pending::Forward {
            origin,
            coordinator,
            retry,
        }) = self.take(cx.timers, id)
        else {
            return;
        };
        // A failover needs time for at least one re-ask of its own.
        let in_time = |r: &Retry| cx.now.mono_ms + reask::every_ms(r.timeout_ms) <= r.deadline_ms;
        match retry {
            Some(mut retry) if retry.failovers < FORWARD_FAILOVERS_MAX && in_time(&retry) => {
                retry.tried.push(coordinator);
                retry.failovers += 1;
                self.failover(cx, data, origin, retry);
            }
            _ => {
                let err = RequestError::Forward {
                    via: cx.me().clone(),
                    coordinator,
                    reason: reason.to_string(),
                };
                finish(cx, origin, ClientReply::Error(err));
            }
        }
    }

    /// Sends a request whose coordinators in `retry.tried` failed to the next live
    /// replica, or coordinates it here: a get reading the replicas directly, a write only
    /// when this node is one of the key's targets (a write needs a replica to apply it).
    /// A write that has tried every other target starts again from the first: the
    /// reports that failed them may have been about messages sent before the request.
    /// Whatever is coordinated here gets what is left of the budget, at most a timeout.
    fn failover(&mut self, cx: &mut Cx<'_>, data: Data<'_>, origin: Origin, mut retry: Retry) {
        let members = data.members;
        let is_read = retry.write.is_none();
        let plan = match Plan::resolve(&retry.opts, is_read, cx.config, members.len()) {
            Ok(p) => p,
            Err(e) => return finish(cx, origin, ClientReply::Error(e)),
        };
        let op_name = retry.write.as_ref().map_or("get", |w| op_name(&w.op));
        let ring = members.ring();
        let partition = ring.partition_of(key_position(&retry.key.bucket, &retry.key.key));
        let now_ms = cx.now.mono_ms;
        let pref =
            ring.preference_list(partition, plan.n, plan.strict, |n| members.reach(n, now_ms));
        if pref.targets.len() < plan.needed {
            let err = unavailable(op_name, &retry.key, &plan, &pref, members);
            return finish(cx, origin, ClientReply::Error(err));
        }
        let timeout_ms = plan
            .timeout_ms
            .min(retry.deadline_ms.saturating_sub(now_ms))
            .max(1);
        let me = cx.me().clone();
        let my_hint = pref
            .targets
            .iter()
            .find(|t| t.node == me)
            .map(|t| t.hint.clone());
        let others = || pref.targets.iter().map(|t| &t.node).filter(|n| **n != me);
        if my_hint.is_none() {
            let next = others().find(|n| !retry.tried.contains(n)).cloned();
            let next = match next {
                Some(next) => Some(next),
                None if is_read => None,
                None => {
                    retry.tried.clear();
                    others().next().cloned()
                }
            };
            let Some(next) = next else {
                let job = Job::new(cx.ids.fresh(), origin, retry.key, None, &plan, pref);
                let id = job.id;
                self.coordinate_read(cx, data, job);
                return self.set_deadline(cx, id, timeout_ms);
            };
            let request = reask::retry_request(&retry);
            return self.forward(cx, plan.timeout_ms, origin, request, next, Some(retry));
        }
        data.traffic.observe(cx.now.mono_ms, &retry.key);
        let job = Job::new(cx.ids.fresh(), origin, retry.key, my_hint, &plan, pref);
        let id = job.id;
        match retry.write {
            Some(write) => self.coordinate_write(cx, data, job, write, op_name),
            None => self.coordinate_read(cx, data, job),
        }
        self.set_deadline(cx, id, timeout_ms);
    }
}

/// The error of a request refused before any replica was asked: fewer than W (or R)
/// replicas are up.
fn unavailable(
    op_name: &str,
    key: &Key,
    plan: &Plan,
    pref: &crate::core::placement::ring::PreferenceList,
    members: &Membership,
) -> RequestError {
    let quorum = Quorum::new(plan.needed, plan.n, plan.strict, &[], &pref.uncovered);
    let mut failure = quorum.failure(op_name, key.to_string());
    failure.unreachable = pref
        .uncovered
        .iter()
        .chain(pref.targets.iter().map(|t| &t.node))
        .filter(|n| !members.is_up(n))
        .cloned()
        .collect();
    failure.acked.clear();
    failure.up = Some(pref.targets.iter().map(|t| t.node.clone()).collect());
    RequestError::QuorumFailed(Box::new(failure))
}

/// Sends `reply` to whoever waits: the driver's client, or the node that forwarded.
pub(crate) fn finish(cx: &mut Cx<'_>, origin: Origin, reply: ClientReply) {
    match origin {
        Origin::Client(req) => cx.out.reply(req, reply),
        Origin::Peer { node, id } => cx.out.send(node, PeerMessage::ForwardReply { id, reply }),
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Put { .. } | Op::PutLww { .. } => "put",
        Op::Delete { .. } => "delete",
        Op::CounterAdd { .. } => "counter update",
        Op::SetAdd { .. } | Op::SetRemove { .. } => "set update",
        Op::Map(_) => "map update",
        Op::HllAdd { .. } => "hll add",
    }
}

#[cfg(test)]
mod tests;
