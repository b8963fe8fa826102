//! The node driver's core task: inputs in, batches through the core, group commit, outputs
//! out — with the fsync overlapped with the next batches instead of stalling them.
//!
//! Why pipelined: with the fsync in line, a node's core did nothing while its disk synced,
//! and a durable N=3 put crosses two cores' fsyncs in series, so the CPUs sat partly idle
//! under load (docs/BENCHMARKS.md, "peer streams and a pipelined group commit"). Here the
//! fsync runs on a blocking thread while the core keeps handling inputs; their outputs
//! gather and leave after the *next* fsync.
//!
//! The group-commit contract: no ack or reply leaves before the writes of its batch are
//! durable. Outputs of a batch are released only after a persist that *started* after the
//! batch was handled; a persist covers every write made before it starts, and only one
//! runs at a time, so whatever a batch read or wrote is durable before its outputs go,
//! including the unsynced writes of earlier batches it may have read. When no persist is
//! running and nothing was written since the last one (reads, forwards, acks), outputs
//! leave at once. If a persist fails the node stops (fail-stop) without releasing what
//! waited for it. The rule of what waits for which persist is the core's [`CommitGate`],
//! which the simulator's deferred persists use too; this task only tells it when a batch
//! produced outputs and when a persist starts and completes.
//!
//! Replication does not wait: `Replicate`, `Read` and `Forward` messages promise nothing
//! about this node's disk ([`PeerMessage::may_precede_persist`]) and leave right after
//! their batch, so a coordinator's fsync and its replicas' run side by side instead of in
//! series. The coordinator's own reply still waits for its persist. A crash in between may
//! leave the replicas holding a write this node lost; the node then restarts under a fresh
//! actor id (a clean stop records a marker that keeps it), so it never issues those dots
//! again (`sim/persist.rs` plays this window; `tests/sim_world.rs` shows the lost update
//! the old actor would cause).
//!
//! Metrics: this loop is where a request's life is visible end to end, so it records
//! request counts and latencies (client requests from input to reply, peers' reads,
//! replicates and forwards from input to answer), persist durations and batch sizes into
//! the node's own recorder, and copies the core's counters every
//! [`METRICS_SAMPLE_INTERVAL_MS`] ([`crate::net::metrics`]). The core records nothing.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::commit_gate::{CommitGate, Departure};
use crate::core::node::{Node, Now};
use crate::core::placement::ring::{MEMBERS_MAX, NodeId};
use crate::net::driver::datagrams::DatagramSender;
use crate::net::driver::error::DriverError;
use crate::net::driver::input::{Input, ReplyTo};
use crate::net::driver::peer_link::PeerLinks;
use crate::net::driver::persist_tracker::PersistTracker;
use crate::net::metrics::NodeMetrics;
use crate::net::metrics::catalog::{OBJECT_BYTES, READ_SIBLINGS};
use crate::net::metrics::labels::{
    PeerOp, ROLE_COORDINATOR, RequestLabels, peer_answer, peer_request, read_siblings,
    reply_outcome,
};
use crate::net::metrics::sample::sample;
use crate::net::metrics::timing::{PeerTimings, Started};
use crate::proto::{ClientReply, PeerMessage};
use crate::storage::{Storage, StorageError};

/// Inputs fed to the core between two persists.
pub const BATCH_MAX: usize = 1_024;
/// How long a node that has left waits for its last messages to go out.
pub const LEAVE_DRAIN_MS: u64 = 3_000;
/// Outputs waiting for a persist at most (messages plus replies); beyond it the core
/// stops taking inputs until the running persist ends, so a slow disk pushes back.
pub const OUTPUTS_WAITING_MAX: usize = BATCH_MAX * 16;
/// How often the core's counters and gauges are copied into the metrics recorder.
pub const METRICS_SAMPLE_INTERVAL_MS: u64 = 1_000;

/// The driver's clocks, read once per batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
}

/// The core task's state.
pub(crate) struct CoreLoop {
    node: Node,
    rx: mpsc::Receiver<Input>,
    datagrams: DatagramSender,
    links: PeerLinks,
    clock: Clock,
    tracker: Arc<PersistTracker>,
    waiting: HashMap<u64, Waiting>,
    addrs: AddrCache,
    next_req: u64,
    /// Which outputs may leave now and which wait for which persist.
    gate: CommitGate<Output>,
    /// The running persist; the gate holds what it releases.
    sync: Option<JoinHandle<Result<(), StorageError>>>,
    /// The node's metrics recorder.
    metrics: NodeMetrics,
    /// Peer requests whose answers are timed.
    peer_timings: PeerTimings,
    /// When the running persist started, and the inputs handled before it.
    persist_started: Option<(Instant, u64)>,
    /// Inputs handled since the last persist started.
    inputs_since_persist: u64,
}

/// A client request waiting for its reply: where it goes, and what its metrics need.
#[derive(Debug)]
struct Waiting {
    reply: ReplyTo,
    at: Instant,
    labels: RequestLabels,
}

/// One output of the core on its way through the commit gate.
#[derive(Debug)]
enum Output {
    Transmit(NodeId, PeerMessage),
    Reply(Waiting, ClientReply),
}

/// Member addresses resolved once each (they are `IP:port` strings in practice).
#[derive(Debug, Default)]
struct AddrCache {
    resolved: HashMap<String, Option<SocketAddr>>,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            mono_ms: self.start.elapsed().as_millis() as u64,
            wall_ms,
        }
    }

    fn instant_of(&self, mono_ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_millis(mono_ms))
    }
}

impl CoreLoop {
    pub(crate) fn new(
        node: Node,
        rx: mpsc::Receiver<Input>,
        datagrams: DatagramSender,
        links: PeerLinks,
        clock: Clock,
        tracker: Arc<PersistTracker>,
        metrics: NodeMetrics,
    ) -> CoreLoop {
        CoreLoop {
            node,
            rx,
            datagrams,
            links,
            clock,
            tracker,
            waiting: HashMap::new(),
            addrs: AddrCache::default(),
            next_req: 1,
            gate: CommitGate::new(),
            sync: None,
            metrics,
            peer_timings: PeerTimings::default(),
            persist_started: None,
            inputs_since_persist: 0,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), DriverError> {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut sample_tick =
            tokio::time::interval(Duration::from_millis(METRICS_SAMPLE_INTERVAL_MS));
        sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.node.poll_timeout().map(|d| self.clock.instant_of(d));
            let syncing = self.sync.is_some();
            let room = self.gate.gathered_len() < OUTPUTS_WAITING_MAX;
            tokio::select! {
                done = wait_sync(&mut self.sync), if syncing => {
                    self.sync = None;
                    self.check(done)?;
                    self.persist_done();
                    let outputs = self.gate.complete_persist();
                    self.dispatch(outputs).await;
                }
                input = self.rx.recv(), if room => {
                    let Some(input) = input else {
                        self.flush().await?;
                        return Ok(());
                    };
                    batch.push(input);
                    while batch.len() < BATCH_MAX {
                        match self.rx.try_recv() {
                            Ok(input) => batch.push(input),
                            Err(_) => break,
                        }
                    }
                    if self.handle_batch(&mut batch) {
                        if let Err(e) = self.node.mark_clean_stop() {
                            // The next start then takes a fresh actor id, which is safe.
                            tracing::warn!(node = %self.node.name(), error = %e, "cannot record the clean stop");
                        }
                        self.flush().await?;
                        tracing::info!(node = %self.node.name(), "node stopped");
                        return Ok(());
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.node.handle_timeout(now);
                    self.collect();
                }
                _ = sample_tick.tick() => {
                    let now = self.clock.now();
                    sample(&self.metrics, &self.node, self.tracker.as_ref(), now.mono_ms);
                }
            }
            self.send_early().await;
            self.start_persist().await;
            if self.node.has_left() {
                self.flush().await?;
                let Self { links, node, .. } = self;
                links.close(LEAVE_DRAIN_MS).await;
                tracing::info!(node = %node.name(), "node left the cluster and stopped");
                return Ok(());
            }
        }
    }

    /// Feeds a batch to the core; true when it held a shutdown.
    fn handle_batch(&mut self, batch: &mut Vec<Input>) -> bool {
        let now = self.clock.now();
        let at = Instant::now();
        let mut stop = false;
        self.inputs_since_persist += batch.len() as u64;
        for input in batch.drain(..) {
            match input {
                Input::Client { request, reply } => {
                    let id = self.next_req;
                    self.next_req += 1;
                    let labels = RequestLabels::of_request(&request);
                    self.waiting.insert(id, Waiting { reply, at, labels });
                    self.node.handle_client(now, id, request);
                }
                Input::Peer { from, msg } => {
                    self.time_peer_request(&from, &msg, at);
                    self.node.handle_message(now, from, msg)
                }
                Input::Unreachable(peer) => self.node.handle_unreachable(now, peer),
                Input::Datagram { from, data } => self.node.handle_datagram(now, from, &data),
                Input::Shutdown => stop = true,
            }
        }
        self.node.handle_timeout(now);
        self.collect();
        stop
    }

    /// Drains the core's outputs into the commit gate; gossip datagrams carry no stored
    /// state and leave at once.
    fn collect(&mut self) {
        while let Some((to, msg)) = self.node.poll_transmit() {
            let departure = Departure::of_message(&msg);
            self.gate.push(Output::Transmit(to, msg), departure);
        }
        while let Some((id, reply)) = self.node.poll_reply() {
            if let Some(waiting) = self.waiting.remove(&id) {
                self.gate
                    .push(Output::Reply(waiting, reply), Departure::of_reply());
            }
        }
        while let Some((addr, data)) = self.node.poll_datagram() {
            if let Some(addr) = self.addrs.resolve(&addr) {
                self.datagrams.send(addr, data);
            }
        }
    }

    /// Starts a persist for what gathered, unless one is running; with nothing written
    /// since the last one, releases the outputs at once instead.
    async fn start_persist(&mut self) {
        if self.sync.is_some() {
            return;
        }
        let dirty = self.tracker.is_dirty();
        if !dirty {
            let outputs = self.gate.release_unwritten();
            if !outputs.is_empty() {
                self.dispatch(outputs).await;
            }
            return;
        }
        let storage = self.tracker.clone();
        self.sync = Some(tokio::task::spawn_blocking(move || storage.persist()));
        self.persist_started = Some((Instant::now(), self.inputs_since_persist));
        self.inputs_since_persist = 0;
        self.gate.start_persist();
    }

    /// Records the persist that just completed.
    fn persist_done(&mut self) {
        if let Some((started, inputs)) = self.persist_started.take() {
            self.metrics.observe_persist(started.elapsed(), inputs);
        }
    }

    /// Starts timing a peer's read, replicate or forward until its answer leaves.
    fn time_peer_request(&mut self, from: &NodeId, msg: &PeerMessage, at: Instant) {
        let Some((op, id)) = peer_request(msg) else {
            return;
        };
        let policy = match msg {
            PeerMessage::Replicate { object, .. } => {
                let policy = object.policy().name();
                if let Some(bytes) = crate::net::metrics::object_bytes(object) {
                    self.metrics
                        .histogram(OBJECT_BYTES, &[("policy", policy)])
                        .record(bytes as f64);
                }
                Some(policy)
            }
            PeerMessage::Forward { request, .. } => RequestLabels::of_request(request).policy,
            _ => None,
        };
        self.peer_timings
            .start(from.clone(), op, id, Started { at, policy });
    }

    /// Records an answer to a peer's request leaving, if the request was timed.
    fn observe_peer_answer(&mut self, to: &NodeId, msg: &PeerMessage) {
        let Some((op, id, outcome, answer_policy)) = peer_answer(msg) else {
            return;
        };
        let Some(started) = self.peer_timings.finish(to, op, id) else {
            return;
        };
        let op_label = match op {
            PeerOp::Read => "read",
            PeerOp::Replicate => "replicate",
            PeerOp::Forward => "forward",
        };
        let policy = started
            .policy
            .or(answer_policy)
            .unwrap_or(crate::net::metrics::labels::POLICY_NONE);
        self.metrics
            .observe_request(op.role(), op_label, policy, outcome, started.at.elapsed());
    }

    /// Records a client reply leaving.
    fn observe_reply(&self, waiting: &Waiting, reply: &ClientReply) {
        let labels = waiting.labels;
        self.metrics.observe_request(
            ROLE_COORDINATOR,
            labels.op,
            labels.policy_with(reply),
            reply_outcome(reply),
            waiting.at.elapsed(),
        );
        if let Some(siblings) = read_siblings(reply) {
            self.metrics
                .histogram(READ_SIBLINGS, &[])
                .record(siblings as f64);
        }
    }

    /// Waits until everything handled so far is durable and sent (shutdown, leave).
    async fn flush(&mut self) -> Result<(), DriverError> {
        if let Some(task) = self.sync.take() {
            let done = task.await;
            self.check(done)?;
            self.persist_done();
            let outputs = self.gate.complete_persist();
            self.dispatch(outputs).await;
        }
        let storage = self.tracker.clone();
        self.gate.start_persist();
        self.persist_started = Some((Instant::now(), self.inputs_since_persist));
        self.inputs_since_persist = 0;
        let done = tokio::task::spawn_blocking(move || storage.persist()).await;
        self.check(done)?;
        self.persist_done();
        let outputs = self.gate.complete_persist();
        self.dispatch(outputs).await;
        self.send_early().await;
        Ok(())
    }

    /// Sends the messages that need not wait for a persist.
    async fn send_early(&mut self) {
        let outputs = self.gate.take_early();
        if outputs.is_empty() {
            return;
        }
        self.dispatch(outputs).await;
    }

    /// Fail-stop on a failed persist.
    fn check(
        &self,
        done: Result<Result<(), StorageError>, tokio::task::JoinError>,
    ) -> Result<(), DriverError> {
        let node = self.node.name().clone();
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                tracing::error!(%node, error = %source, "persist failed; stopping the node");
                Err(DriverError::Persist { node, source })
            }
            Err(e) => {
                tracing::error!(%node, error = %e, "the persist task failed; stopping the node");
                Err(DriverError::Crashed(node))
            }
        }
    }

    /// Sends outputs the gate released: messages first, then replies, each in order.
    async fn dispatch(&mut self, outputs: Vec<Output>) {
        let now = self.clock.now();
        let mut replies = Vec::new();
        for out in outputs {
            let (to, msg) = match out {
                Output::Transmit(to, msg) => (to, msg),
                Output::Reply(to, reply) => {
                    replies.push((to, reply));
                    continue;
                }
            };
            self.observe_peer_answer(&to, &msg);
            let member_addr = self.node.membership().get(&to).map(|m| m.addr.clone());
            match member_addr.and_then(|a| self.addrs.resolve(&a)) {
                Some(addr) => {
                    if !self.links.send(to.clone(), addr, msg).await {
                        tracing::debug!(node = %self.node.name(), %to, "peer queue full or closed; message dropped");
                        self.node.handle_unreachable(now, to);
                    }
                }
                None => {
                    tracing::debug!(node = %self.node.name(), %to, "no usable address for member; message dropped");
                    self.node.handle_unreachable(now, to);
                }
            }
        }
        for (waiting, reply) in replies {
            self.observe_reply(&waiting, &reply);
            waiting.reply.send(reply);
        }
        // Unreachable peers may have failed requests: their replies wait like any other.
        self.collect();
    }
}

impl AddrCache {
    fn resolve(&mut self, addr: &str) -> Option<SocketAddr> {
        if let Some(known) = self.resolved.get(addr) {
            return *known;
        }
        let found = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        if self.resolved.len() < MEMBERS_MAX * 4 {
            self.resolved.insert(addr.to_string(), found);
        }
        found
    }
}

async fn wait_sync(
    sync: &mut Option<JoinHandle<Result<(), StorageError>>>,
) -> Result<Result<(), StorageError>, tokio::task::JoinError> {
    match sync {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
