//! Request state machines: put, get, delete and every CRDT update, coordinated with
//! per-request N, W and R over a sloppy preference list.
//!
//! A write is applied locally first (new dot, HLC stamp or CRDT op with this node's
//! actor), then the resulting object — not the operation — is sent to the other
//! replicas, so every replication message is an idempotent merge. The client gets its
//! answer after W acks (this node included); a get answers after R replies with the
//! merge of what it received, then read-repairs every replica that sent a stale copy or
//! none. A node outside the key's preference list forwards the request once to the
//! first live replica. Late, duplicate and unknown replies are ignored.

use std::collections::BTreeMap;

use crate::core::membership::gossip::MemberPhase;
use crate::core::node::{HANDOFF_INFLIGHT_MAX, Node, Now};
use crate::core::object::{Object, Op, ReadValue};
use crate::core::placement::quorum::{Outcome, Quorum};
use crate::core::placement::ring::{NodeId, Target, key_position};
use crate::core::replica::ReplicaError;
use crate::core::timer::Timer;
use crate::proto::{
    ClientReply, ClientRequest, Key, MemberStatus, PeerMessage, QuorumOpts, REPLICAS_MAX,
    REQUEST_TIMEOUT_MS_MAX, RequestError, RingInfo, RingNode, StatusInfo,
};
use crate::storage::check_data_key;

/// Who is waiting for a request's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Client(u64),
    Peer { node: NodeId, id: u64 },
}

/// A request this node is working on.
#[derive(Debug)]
pub(crate) enum Pending {
    Write(WriteState),
    Read(ReadState),
    Forward {
        origin: Origin,
        coordinator: NodeId,
    },
    Handoff {
        primary: NodeId,
        key: Key,
        object: Object,
    },
}

#[derive(Debug)]
pub(crate) struct WriteState {
    origin: Origin,
    key: Key,
    op_name: &'static str,
    quorum: Quorum,
    value: ReadValue,
    warning: Option<String>,
}

#[derive(Debug)]
pub(crate) struct ReadState {
    origin: Origin,
    key: Key,
    quorum: Quorum,
    targets: Vec<Target>,
    replies: BTreeMap<NodeId, Option<Object>>,
    merged: Option<Object>,
    replied: bool,
}

/// A request this node coordinates, as it starts.
struct Job {
    id: u64,
    origin: Origin,
    key: Key,
    /// The primary this node stands in for, when it is a fallback for the key.
    my_hint: Option<NodeId>,
    quorum: Quorum,
    targets: Vec<Target>,
}

/// Resolved replication settings of one request.
struct Plan {
    n: usize,
    needed: usize,
    strict: bool,
    timeout_ms: u64,
}

impl Node {
    pub(crate) fn start_request(&mut self, now: Now, origin: Origin, request: ClientRequest) {
        let (key, op, opts) = match request {
            ClientRequest::Status => {
                let status = self.status();
                return self.finish(origin, ClientReply::Status(status));
            }
            ClientRequest::Ring => {
                let ring = self.ring_info();
                return self.finish(origin, ClientReply::Ring(ring));
            }
            ClientRequest::Join { seed } => {
                let reply = self.join_through(now, seed);
                return self.finish(origin, reply);
            }
            ClientRequest::Leave => {
                let reply = self.start_leave(now);
                return self.finish(origin, reply);
            }
            ClientRequest::Stats => {
                let reply = match self.stats_info(now) {
                    Ok(info) => ClientReply::Stats(Box::new(info)),
                    Err(e) => ClientReply::Error(RequestError::Internal {
                        node: self.config.name.clone(),
                        message: e.to_string(),
                    }),
                };
                return self.finish(origin, reply);
            }
            ClientRequest::Get { key, opts } => (key, None, opts),
            ClientRequest::Write { key, op, opts } => (key, Some(op), opts),
        };
        if !self.synced || self.left {
            let reason = if self.left {
                "it has left the cluster; send requests to another node".to_string()
            } else {
                "it is still joining and has not received the member table from its seeds; retry on another node or in a moment".to_string()
            };
            let err = RequestError::NotReady {
                node: self.config.name.clone(),
                reason,
            };
            return self.finish(origin, ClientReply::Error(err));
        }
        if self.pending.len() >= self.config.inflight_max {
            let err = RequestError::Overloaded {
                node: self.config.name.clone(),
                inflight: self.pending.len(),
                limit: self.config.inflight_max,
            };
            return self.finish(origin, ClientReply::Error(err));
        }
        if let Err(e) = check_data_key(&key.bucket, &key.key) {
            let err = RequestError::BadRequest(format!("{key}: {e}"));
            return self.finish(origin, ClientReply::Error(err));
        }
        let plan = match self.plan(&opts, op.is_none()) {
            Ok(p) => p,
            Err(e) => return self.finish(origin, ClientReply::Error(e)),
        };
        let ring = self.membership.ring();
        let partition = ring.partition_of(key_position(&key.bucket, &key.key));
        let membership = &self.membership;
        let pref = ring.preference_list(partition, plan.n, plan.strict, |n| membership.is_up(n));
        let op_name = op.as_ref().map_or("get", op_name);
        if pref.targets.len() < plan.needed {
            let quorum = Quorum::new(plan.needed, plan.n, plan.strict, &[], &pref.uncovered);
            let mut failure = quorum.failure(op_name, key.to_string());
            failure.unreachable = pref
                .uncovered
                .iter()
                .chain(pref.targets.iter().map(|t| &t.node))
                .filter(|n| !self.membership.is_up(n))
                .cloned()
                .collect();
            failure.acked.clear();
            let err = RequestError::QuorumFailed(Box::new(failure));
            return self.finish(origin, ClientReply::Error(err));
        }
        let me = self.config.name.clone();
        let Some(my_hint) = pref
            .targets
            .iter()
            .find(|t| t.node == me)
            .map(|t| t.hint.clone())
        else {
            let request = match op {
                Some(op) => ClientRequest::Write { key, op, opts },
                None => ClientRequest::Get { key, opts },
            };
            let deadline_ms = now.mono_ms + plan.timeout_ms + plan.timeout_ms / 2;
            let coordinator = pref.targets[0].node.clone();
            return self.forward(deadline_ms, origin, request, coordinator);
        };
        self.traffic.observe(now.mono_ms, &key);
        let id = self.fresh_id();
        let job = Job {
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
        };
        match op {
            Some(op) => self.coordinate_write(job, op, op_name, now),
            None => self.coordinate_read(job),
        }
        if self.pending.contains_key(&id) {
            self.timers
                .set(now.mono_ms + plan.timeout_ms, Timer::Request(id));
        }
    }

    fn coordinate_write(&mut self, job: Job, op: Op, op_name: &'static str, now: Now) {
        let Job {
            id,
            origin,
            key,
            my_hint,
            mut quorum,
            targets,
        } = job;
        let ts = self.hlc.now(now.wall_ms);
        let limits = self.config.limits;
        let (object, applied) =
            match self
                .replica
                .apply(&key, op, self.actor, ts, &limits, my_hint.as_ref())
            {
                Ok(done) => done,
                Err(ReplicaError::Object(error)) => {
                    let err = RequestError::Object {
                        key: key.to_string(),
                        error,
                    };
                    return self.finish(origin, ClientReply::Error(err));
                }
                Err(e) => {
                    let err = RequestError::Storage {
                        node: self.config.name.clone(),
                        message: e.to_string(),
                    };
                    return self.finish(origin, ClientReply::Error(err));
                }
            };
        let me = self.config.name.clone();
        quorum.ack(&me);
        let value = object.read();
        // The last replica gets the object itself, the others a copy.
        let mut object = Some(object);
        let mut peers = targets.iter().filter(|t| t.node != me).peekable();
        while let Some(t) = peers.next() {
            let copy = match peers.peek() {
                Some(_) => object.clone(),
                None => object.take(),
            };
            let Some(copy) = copy else { break };
            let msg = PeerMessage::Replicate {
                id,
                key: key.clone(),
                object: copy,
                hint: t.hint.clone(),
            };
            self.send(t.node.clone(), msg);
        }
        let state = WriteState {
            origin,
            key,
            op_name,
            quorum,
            value,
            warning: applied.warning,
        };
        self.pending.insert(id, Pending::Write(state));
        self.check_write(id);
    }

    fn coordinate_read(&mut self, job: Job) {
        let Job {
            id,
            origin,
            key,
            my_hint,
            quorum,
            targets,
        } = job;
        let me = self.config.name.clone();
        for t in targets.iter().filter(|t| t.node != me) {
            let msg = PeerMessage::Read {
                id,
                key: key.clone(),
                hint: t.hint.clone(),
            };
            self.send(t.node.clone(), msg);
        }
        let local = self.replica.read(&key, my_hint.as_ref());
        let state = ReadState {
            origin,
            key,
            quorum,
            targets,
            replies: BTreeMap::new(),
            merged: None,
            replied: false,
        };
        self.pending.insert(id, Pending::Read(state));
        self.on_read_reply(id, me, local.map_err(|e| e.to_string()));
    }

    /// Hands the request to `coordinator`; the answer comes back as a `ForwardReply`.
    fn forward(
        &mut self,
        deadline_ms: u64,
        origin: Origin,
        request: ClientRequest,
        coordinator: NodeId,
    ) {
        if let Origin::Peer { .. } = origin {
            // Forwarded once already and our view disagrees with the sender's: refuse
            // rather than bounce the request around the ring.
            let err = RequestError::Forward {
                via: self.config.name.clone(),
                coordinator,
                reason: "the membership views disagree about who replicates this key".into(),
            };
            return self.finish(origin, ClientReply::Error(err));
        }
        let id = self.fresh_id();
        self.send(coordinator.clone(), PeerMessage::Forward { id, request });
        self.pending.insert(
            id,
            Pending::Forward {
                origin,
                coordinator,
            },
        );
        // Later than the coordinator's own timeout, so its error arrives first.
        self.timers.set(deadline_ms, Timer::Request(id));
    }

    pub(crate) fn on_peer_message(&mut self, now: Now, from: NodeId, msg: PeerMessage) {
        match msg {
            PeerMessage::Forward { id, request } => {
                if self.first_forward(&from, id) {
                    self.start_request(now, Origin::Peer { node: from, id }, request)
                }
            }
            PeerMessage::ForwardReply { id, reply } => {
                if let Some(Pending::Forward { coordinator, .. }) = self.pending.get(&id)
                    && coordinator == &from
                    && let Some(Pending::Forward { origin, .. }) = self.pending.remove(&id)
                {
                    self.finish(origin, reply);
                }
            }
            PeerMessage::Replicate {
                id,
                key,
                object,
                hint,
            } => {
                if let Object::Lww(cell) = &object {
                    // A peer's clock far in the future is refused; the data still merges.
                    let _ = self.hlc.observe(cell.ts, now.wall_ms);
                }
                let hint = hint.filter(|p| p != &self.config.name);
                let error = self
                    .replica
                    .merge(&key, &object, hint.as_ref())
                    .err()
                    .map(|e| e.to_string());
                self.send(from, PeerMessage::ReplicateAck { id, error });
            }
            PeerMessage::ReplicateAck { id, error } => self.on_replicate_ack(id, from, error),
            PeerMessage::Read { id, key, hint } => {
                let hint = hint.filter(|p| p != &self.config.name);
                let (object, error) = match self.replica.read(&key, hint.as_ref()) {
                    Ok(o) => (o, None),
                    Err(e) => (None, Some(e.to_string())),
                };
                self.send(from, PeerMessage::ReadReply { id, object, error });
            }
            PeerMessage::ReadReply { id, object, error } => {
                let result = match error {
                    Some(e) => Err(e),
                    None => Ok(object),
                };
                self.on_read_reply(id, from, result);
            }
            PeerMessage::Ping { nonce } => self.send(from, PeerMessage::Pong { nonce }),
            PeerMessage::Pong { .. } => {}
            PeerMessage::Members {
                partitions,
                members,
            } => self.on_members_message(now, from, partitions, members),
            PeerMessage::Transfer { id, objects, .. } => self.on_transfer(from, id, objects),
            PeerMessage::TransferAck { id, error } => self.on_transfer_ack(now, from, id, error),
            msg @ (PeerMessage::AeRoots { .. }
            | PeerMessage::AeBranches { .. }
            | PeerMessage::AeLeaves { .. }
            | PeerMessage::AeKeys { .. }
            | PeerMessage::AePull { .. }) => self.on_ae_message(from, msg),
            msg @ (PeerMessage::AeSketch { .. }
            | PeerMessage::AeBloom { .. }
            | PeerMessage::AeBloomReply { .. }
            | PeerMessage::AeBloomNext { .. }) => self.on_reconcile_message(from, msg),
            msg @ (PeerMessage::ReapCheck { .. }
            | PeerMessage::ReapConfirm { .. }
            | PeerMessage::Reap { .. }) => self.on_reap_message(from, msg),
        }
    }

    fn on_replicate_ack(&mut self, id: u64, from: NodeId, error: Option<String>) {
        match self.pending.get_mut(&id) {
            Some(Pending::Write(w)) => {
                let counted = match error {
                    None => w.quorum.ack(&from),
                    Some(e) => w.quorum.fail(&from, e),
                };
                if counted {
                    self.check_write(id);
                }
            }
            Some(Pending::Handoff { primary, .. }) if primary == &from => {
                let Some(Pending::Handoff {
                    primary,
                    key,
                    object,
                }) = self.pending.remove(&id)
                else {
                    return;
                };
                self.handoff_inflight
                    .remove(&(primary.clone(), key.clone()));
                if error.is_none()
                    && let Ok(true) = self.replica.drop_hint_if_unchanged(&primary, &key, &object)
                {
                    self.stats.hints_delivered += 1;
                }
            }
            _ => {}
        }
    }

    fn on_read_reply(&mut self, id: u64, from: NodeId, result: Result<Option<Object>, String>) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        let counted = match result {
            Ok(object) => {
                if !r.quorum.ack(&from) {
                    return;
                }
                if let Some(obj) = &object {
                    match &mut r.merged {
                        Some(m) => {
                            m.merge(obj);
                        }
                        None => r.merged = Some(obj.clone()),
                    }
                }
                r.replies.insert(from, object);
                true
            }
            Err(e) => r.quorum.fail(&from, e),
        };
        if counted {
            self.check_read(id);
        }
    }

    pub(crate) fn on_unreachable(&mut self, _now: Now, node: &NodeId) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            match self.pending.get_mut(&id) {
                Some(Pending::Write(w)) => {
                    let counted = w.quorum.unreachable(node);
                    if counted {
                        self.check_write(id);
                    }
                }
                Some(Pending::Read(r)) => {
                    let counted = r.quorum.unreachable(node);
                    if counted {
                        self.check_read(id);
                    }
                }
                Some(Pending::Forward { coordinator, .. }) if coordinator == node => {
                    self.fail_forward(id, "it is unreachable");
                }
                Some(Pending::Handoff { primary, .. }) if primary == node => {
                    self.drop_handoff(id);
                }
                _ => {}
            }
        }
    }

    pub(crate) fn on_request_timeout(&mut self, _now: Now, id: u64) {
        match self.pending.get(&id) {
            Some(Pending::Write(_)) => {
                if let Some(Pending::Write(w)) = self.pending.remove(&id) {
                    let failure = w.quorum.failure(w.op_name, w.key.to_string());
                    let err = RequestError::QuorumFailed(Box::new(failure));
                    self.finish(w.origin, ClientReply::Error(err));
                }
            }
            Some(Pending::Read(_)) => {
                if let Some(Pending::Read(r)) = self.pending.remove(&id) {
                    self.end_read(r);
                }
            }
            Some(Pending::Forward { .. }) => self.fail_forward(id, "it timed out"),
            Some(Pending::Handoff { .. }) => self.drop_handoff(id),
            None => {}
        }
    }

    /// Pushes up to a batch of hints for `primary`, bounded by the in-flight limit.
    pub(crate) fn push_hints(&mut self, now: Now, primary: &NodeId) {
        let room = HANDOFF_INFLIGHT_MAX.saturating_sub(self.handoff_inflight.len());
        if room == 0 {
            return;
        }
        let hinted = match self
            .replica
            .hinted(primary, room + self.handoff_inflight.len())
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(node = %self.config.name, %primary, error = %e, "cannot read hints");
                return;
            }
        };
        for (key, object) in hinted {
            if self.handoff_inflight.len() >= HANDOFF_INFLIGHT_MAX {
                break;
            }
            if !self.handoff_inflight.insert((primary.clone(), key.clone())) {
                continue;
            }
            let id = self.fresh_id();
            let msg = PeerMessage::Replicate {
                id,
                key: key.clone(),
                object: object.clone(),
                hint: None,
            };
            self.send(primary.clone(), msg);
            self.pending.insert(
                id,
                Pending::Handoff {
                    primary: primary.clone(),
                    key,
                    object,
                },
            );
            self.timers.set(
                now.mono_ms + self.config.request_timeout_ms,
                Timer::Request(id),
            );
        }
    }

    fn check_write(&mut self, id: u64) {
        let Some(Pending::Write(w)) = self.pending.get(&id) else {
            return;
        };
        let outcome = w.quorum.outcome();
        if outcome == Outcome::Pending {
            return;
        }
        let Some(Pending::Write(w)) = self.pending.remove(&id) else {
            return;
        };
        let reply = if outcome == Outcome::Met {
            ClientReply::Written {
                value: w.value,
                warning: w.warning,
            }
        } else {
            let failure = w.quorum.failure(w.op_name, w.key.to_string());
            ClientReply::Error(RequestError::QuorumFailed(Box::new(failure)))
        };
        self.finish(w.origin, reply);
    }

    fn check_read(&mut self, id: u64) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        let outcome = r.quorum.outcome();
        if outcome == Outcome::Met && !r.replied {
            r.replied = true;
            let reply = read_reply(&r.merged, self.config.limits.siblings_warn);
            let origin = r.origin.clone();
            self.finish(origin, reply);
        }
        let Some(Pending::Read(r)) = self.pending.get(&id) else {
            return;
        };
        if r.quorum.settled() || outcome == Outcome::Impossible {
            if let Some(Pending::Read(r)) = self.pending.remove(&id) {
                self.end_read(r);
            }
        }
    }

    /// Answers the client if it is still waiting, then repairs stale replicas.
    fn end_read(&mut self, r: ReadState) {
        if !r.replied {
            let reply = if r.quorum.outcome() == Outcome::Met {
                read_reply(&r.merged, self.config.limits.siblings_warn)
            } else {
                let failure = r.quorum.failure("get", r.key.to_string());
                ClientReply::Error(RequestError::QuorumFailed(Box::new(failure)))
            };
            self.finish(r.origin.clone(), reply);
        }
        let Some(merged) = r.merged else { return };
        let me = self.config.name.clone();
        for (node, copy) in &r.replies {
            if copy.as_ref() == Some(&merged) {
                continue;
            }
            let hint = r
                .targets
                .iter()
                .find(|t| &t.node == node)
                .and_then(|t| t.hint.clone());
            self.stats.read_repairs += 1;
            if node == &me {
                if let Err(e) = self.replica.merge(&r.key, &merged, hint.as_ref()) {
                    tracing::warn!(node = %me, key = %r.key, error = %e, "local read repair failed");
                }
            } else {
                let id = self.fresh_id();
                let msg = PeerMessage::Replicate {
                    id,
                    key: r.key.clone(),
                    object: merged.clone(),
                    hint,
                };
                self.send(node.clone(), msg);
            }
        }
    }

    fn fail_forward(&mut self, id: u64, reason: &str) {
        if let Some(Pending::Forward {
            origin,
            coordinator,
        }) = self.pending.remove(&id)
        {
            let err = RequestError::Forward {
                via: self.config.name.clone(),
                coordinator,
                reason: reason.to_string(),
            };
            self.finish(origin, ClientReply::Error(err));
        }
    }

    fn drop_handoff(&mut self, id: u64) {
        if let Some(Pending::Handoff { primary, key, .. }) = self.pending.remove(&id) {
            self.handoff_inflight.remove(&(primary, key));
        }
    }

    fn finish(&mut self, origin: Origin, reply: ClientReply) {
        match origin {
            Origin::Client(req) => self.reply(req, reply),
            Origin::Peer { node, id } => self.send(node, PeerMessage::ForwardReply { id, reply }),
        }
    }

    fn plan(&self, opts: &QuorumOpts, read: bool) -> Result<Plan, RequestError> {
        let n = opts.n.unwrap_or(self.config.n);
        if n == 0 || n > REPLICAS_MAX {
            return Err(RequestError::InvalidQuorum(format!(
                "n={n}: n must be between 1 and {REPLICAS_MAX}"
            )));
        }
        let (name, given, default) = if read {
            ("r", opts.r, self.config.r)
        } else {
            ("w", opts.w, self.config.w)
        };
        let needed = given.unwrap_or(default.min(n));
        if needed == 0 || needed > n {
            return Err(RequestError::InvalidQuorum(format!(
                "{name}={needed} with n={n}: {name} must be between 1 and n"
            )));
        }
        let members = self.membership.len();
        if n as usize > members {
            return Err(RequestError::InvalidQuorum(format!(
                "n={n} but the cluster has only {members} member(s){}; lower --n or add nodes",
                if opts.strict {
                    " and --strict counts only primaries"
                } else {
                    ""
                }
            )));
        }
        let timeout_ms = opts
            .timeout_ms
            .map(|t| t.clamp(1, REQUEST_TIMEOUT_MS_MAX) as u64)
            .unwrap_or(self.config.request_timeout_ms);
        Ok(Plan {
            n: n as usize,
            needed: needed as usize,
            strict: opts.strict,
            timeout_ms,
        })
    }

    fn status(&self) -> StatusInfo {
        let ring = self.membership.ring();
        let members = self
            .membership
            .members()
            .map(|m| MemberStatus {
                name: m.name.clone(),
                addr: m.addr.clone(),
                state: if m.name == self.config.name {
                    "up".to_string()
                } else {
                    m.state.to_string()
                },
                share: ring.replica_share(&m.name, self.config.n as usize),
                hints: self.replica.hints().for_primary(&m.name),
                phase: match m.phase {
                    MemberPhase::Normal => "normal",
                    MemberPhase::Leaving => "leaving",
                    MemberPhase::Left => "left",
                }
                .to_string(),
            })
            .collect();
        StatusInfo {
            node: self.config.name.clone(),
            members,
            transfers: self.transfer_info(),
        }
    }

    fn ring_info(&self) -> RingInfo {
        let ring = self.membership.ring();
        let counts = ring.primary_counts();
        let n = self.config.n;
        RingInfo {
            partitions: ring.partitions(),
            n,
            nodes: ring
                .members()
                .iter()
                .map(|m| RingNode {
                    name: m.name.clone(),
                    vnodes: m.vnodes,
                    primary_partitions: counts.get(&m.name).copied().unwrap_or(0) as u32,
                    replica_share: ring.replica_share(&m.name, n as usize),
                })
                .collect(),
            balance: ring.balance(),
        }
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

fn read_reply(merged: &Option<Object>, siblings_warn: usize) -> ClientReply {
    let warning = merged
        .as_ref()
        .map(Object::sibling_count)
        .filter(|&c| c > siblings_warn)
        .map(|c| format!("the key has {c} siblings; write back with the context to resolve them"));
    ClientReply::Read {
        found: merged.as_ref().is_some_and(|o| !o.is_tombstone()),
        value: merged.as_ref().map(Object::read),
        warning,
    }
}

#[cfg(test)]
mod tests;
