//! What a [`Client`](super::Client) and its clones share: the seeds, the view of the
//! cluster and its refresh, one session per node, the nodes that failed lately, and the
//! operation ids.
//!
//! Why it is shaped so: a cluster-aware client must keep working when any one node dies,
//! including the one it was given. So it learns every member from whichever seed answers
//! ([`ClientRequest::Topology`]), keeps that view fresh in a background task (every
//! [`VIEW_REFRESH_INTERVAL_MS`], and at once — but at most once per
//! [`VIEW_REFRESH_GAP_MS`] — after a call failed), and opens a session to a node only
//! when a call goes there. The task holds only a weak reference, so it ends with the last
//! clone. Every per-node table is bounded by the view plus the seeds.
//!
//! A node that failed a call is tried last for [`AVOID_MS`], whatever the view says:
//! right after a crash the survivors still hold it up until their failure detector
//! notices, and a client that kept sending there first would pay a connect timeout per
//! call.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::route::ATTEMPTS_MAX;
use crate::client::session::{CallError, SessionSlot};
use crate::client::topology::{Candidate, View};
use crate::client::{ClientError, reply_kind};
use crate::core::object::OpId;
use crate::core::placement::ring::MEMBERS_MAX;
use crate::net::{ConnectionPool, NetError};
use crate::proto::{ClientReply, ClientRequest, WireResponse};

/// Most seed addresses a client takes.
pub const SEEDS_MAX: usize = 64;
/// Period of the background refresh of the cluster view.
pub const VIEW_REFRESH_INTERVAL_MS: u64 = 2_000;
/// Shortest time between two refreshes, however many calls fail meanwhile.
pub const VIEW_REFRESH_GAP_MS: u64 = 250;
/// Deadline for asking one node for its view.
pub const TOPOLOGY_TIMEOUT_MS: u64 = 2_000;
/// Nodes asked for a view in one refresh before it gives up until the next.
pub const TOPOLOGY_SOURCES_MAX: usize = 3;
/// How long a node that failed a call is tried after every other candidate.
pub const AVOID_MS: u64 = 5_000;
/// Connect deadline of a cluster client: a dead node costs at most this before the next
/// candidate is tried. A loopback or LAN handshake takes milliseconds.
pub const CLUSTER_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Times a call is resent on a fresh connection to the same node when the pooled one was
/// found dead before anything was sent (for example, the node restarted since the last
/// call).
pub const RECONNECTS_MAX: usize = 1;
/// Most nodes with per-node state (sessions, failure marks): every member and every seed.
const NODES_MAX: usize = MEMBERS_MAX + SEEDS_MAX;

/// Where a client's calls go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every call goes to the one node given ([`super::Client::connect`]).
    Pinned,
    /// Data calls go to the key's replicas, learned from the seeds.
    Cluster,
}

/// The state every clone of a client shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: ConnectionPool,
    pub(crate) mode: Mode,
    /// At least one, at most [`SEEDS_MAX`]; the first is the client's home node.
    pub(crate) seeds: Vec<SocketAddr>,
    /// This client's random half of every operation id.
    op_client: u64,
    op_seq: AtomicU64,
    sessions: Mutex<HashMap<SocketAddr, Arc<SessionSlot>>>,
    view: Mutex<Option<Arc<View>>>,
    /// Nodes that failed a call, and until when they are tried last.
    avoided: Mutex<HashMap<SocketAddr, Instant>>,
    refresh: Arc<Notify>,
}

impl Shared {
    pub(crate) fn new(pool: ConnectionPool, mode: Mode, seeds: Vec<SocketAddr>) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            pool,
            mode,
            seeds,
            op_client: rand::random(),
            op_seq: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            view: Mutex::new(None),
            avoided: Mutex::new(HashMap::new()),
            refresh: Arc::new(Notify::new()),
        });
        if mode == Mode::Cluster {
            tokio::spawn(refresh_loop(
                Arc::downgrade(&shared),
                shared.refresh.clone(),
            ));
        }
        shared
    }

    /// A fresh operation id: this client's random id and the next sequence number.
    pub(crate) fn next_op_id(&self) -> OpId {
        OpId {
            client: self.op_client,
            seq: self.op_seq.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// The current view, if one was learned.
    pub(crate) fn view(&self) -> Option<Arc<View>> {
        lock(&self.view).clone()
    }

    /// The nodes to try for `request`, best first (at most [`ATTEMPTS_MAX`] are used).
    pub(crate) fn candidates(&self, request: &ClientRequest) -> Vec<Candidate> {
        // Seeds carry no name here: the view may not list them, and error texts look
        // names up only when needed.
        let seeds = || {
            self.seeds
                .iter()
                .map(|&addr| Candidate { addr, name: None })
        };
        let home = || seeds().take(1).collect::<Vec<_>>();
        if self.mode == Mode::Pinned {
            return home();
        }
        let view = self.view();
        let live = || {
            view.as_ref()
                .map(|v| v.live(ATTEMPTS_MAX))
                .unwrap_or_default()
        };
        let mut list: Vec<Candidate> = match request {
            ClientRequest::Get { key, opts } | ClientRequest::Write { key, opts, .. } => {
                let mut list = view
                    .as_ref()
                    .map(|v| v.candidates(key, opts.n, ATTEMPTS_MAX))
                    .unwrap_or_default();
                list.extend(live());
                list.extend(seeds().take(ATTEMPTS_MAX));
                list
            }
            // Reports of one node: the seeds in the order given, then any live member.
            ClientRequest::Status
            | ClientRequest::Ring
            | ClientRequest::Stats
            | ClientRequest::Topology => {
                let mut list: Vec<Candidate> = seeds().take(ATTEMPTS_MAX).collect();
                list.extend(live());
                list
            }
            // A membership change is meant for one node: the first seed, never another.
            ClientRequest::Join { .. } | ClientRequest::Leave => return home(),
        };
        self.demote_avoided(&mut list);
        list
    }

    /// Moves the nodes that failed lately behind the others, keeping the order otherwise.
    fn demote_avoided(&self, list: &mut [Candidate]) {
        let mut avoided = lock(&self.avoided);
        if avoided.is_empty() {
            return;
        }
        let now = Instant::now();
        avoided.retain(|_, until| *until > now);
        list.sort_by_key(|c| avoided.contains_key(&c.addr));
    }

    /// A call to `addr` failed in a way that blames the node: try it last for a while,
    /// and look at the cluster again.
    pub(crate) fn avoid(&self, addr: SocketAddr) {
        let mut avoided = lock(&self.avoided);
        let now = Instant::now();
        if avoided.len() >= NODES_MAX {
            avoided.retain(|_, until| *until > now);
        }
        if avoided.len() < NODES_MAX {
            avoided.insert(addr, now + Duration::from_millis(AVOID_MS));
        }
    }

    /// A call to `addr` succeeded: it is no longer avoided.
    pub(crate) fn answered(&self, addr: SocketAddr) {
        let mut avoided = lock(&self.avoided);
        if !avoided.is_empty() {
            avoided.remove(&addr);
        }
    }

    /// Asks the background task for a refresh now (rate-limited by the task).
    pub(crate) fn refresh_soon(&self) {
        if self.mode == Mode::Cluster {
            self.refresh.notify_one();
        }
    }

    /// Sends `request` to `addr` on the client's session with it and waits for its
    /// answer until `deadline`; a request that was not sent (the session had ended, or
    /// the pooled connection was found dead while opening one) is resent once on a fresh
    /// session: nothing reached the node, so even a counter add is safe to resend.
    pub(crate) async fn exchange(
        &self,
        addr: SocketAddr,
        request: ClientRequest,
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<WireResponse, ClientError> {
        let net = |source: NetError| ClientError::Net {
            addr,
            source: Box::new(source),
        };
        let slot = self.session_slot(addr).map_err(net)?;
        let mut request = request;
        let mut reconnects = 0;
        loop {
            let attempt = async {
                match slot.get(&self.pool, addr).await {
                    Ok(session) => session.call(request).await,
                    Err(reason @ NetError::ConnectionLost { .. }) => Err(CallError::NotSent {
                        request: Box::new(request),
                        reason,
                    }),
                    Err(e) => Err(CallError::Failed(e)),
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(CallError::NotSent {
                    request: unsent, ..
                })) if reconnects < RECONNECTS_MAX => {
                    reconnects += 1;
                    request = *unsent;
                }
                Ok(Err(CallError::NotSent { reason, .. } | CallError::Failed(reason))) => {
                    return Err(net(reason));
                }
                Err(_) => {
                    return Err(net(NetError::Timeout {
                        what: "request to",
                        addr,
                        timeout_ms,
                    }));
                }
            }
        }
    }

    /// One request to `addr`, its answer as a reply or a typed error.
    pub(crate) async fn ask(
        &self,
        addr: SocketAddr,
        request: ClientRequest,
        name: &'static str,
        deadline: Instant,
        timeout_ms: u64,
    ) -> Result<ClientReply, ClientError> {
        match self.exchange(addr, request, deadline, timeout_ms).await? {
            WireResponse::Client(ClientReply::Error(e)) => Err(ClientError::Request(e)),
            WireResponse::Client(reply) => Ok(reply),
            WireResponse::Refused(reason) => Err(ClientError::Refused { addr, reason }),
            WireResponse::PeerAccepted => Err(ClientError::UnexpectedReply {
                addr,
                request: name,
                got: "a peer acknowledgement",
            }),
        }
    }

    /// Asks one node after another (the last view's source, live members, the seeds) for
    /// its view, until one answers with a usable one. Returns the last failure when none
    /// does; the previous view is kept then.
    pub(crate) async fn refresh(&self, sources_max: usize) -> Result<(), ClientError> {
        let mut sources: Vec<Candidate> = Vec::new();
        if let Some(view) = self.view() {
            sources.push(view.source.clone());
            sources.extend(view.live(sources_max));
        }
        sources.extend(
            self.seeds
                .iter()
                .map(|&addr| Candidate { addr, name: None }),
        );
        self.demote_avoided(&mut sources);
        let mut asked: Vec<SocketAddr> = Vec::with_capacity(sources_max);
        // A node that answered without a view says more than one that did not answer.
        let (mut answered, mut unreachable) = (None, None);
        for source in sources {
            if asked.len() == sources_max {
                break;
            }
            if asked.contains(&source.addr) {
                continue;
            }
            asked.push(source.addr);
            match self.fetch_view(source.addr).await {
                Ok(view) => {
                    self.install(view);
                    self.answered(source.addr);
                    return Ok(());
                }
                Err(err @ ClientError::Net { .. }) => {
                    self.avoid(source.addr);
                    unreachable = Some(err);
                }
                Err(err) => {
                    if super::route::Retry::blames_node(&err) {
                        self.avoid(source.addr);
                    }
                    answered = Some(err);
                }
            }
        }
        Err(answered
            .or(unreachable)
            .unwrap_or_else(|| ClientError::Seeds("no node to ask for the cluster's view".into())))
    }

    /// One node's view, with host names among the addresses resolved.
    async fn fetch_view(&self, addr: SocketAddr) -> Result<View, ClientError> {
        let deadline = Instant::now() + Duration::from_millis(TOPOLOGY_TIMEOUT_MS);
        let reply = self
            .ask(
                addr,
                ClientRequest::Topology,
                "topology",
                deadline,
                TOPOLOGY_TIMEOUT_MS,
            )
            .await?;
        let ClientReply::Topology(info) = reply else {
            return Err(ClientError::UnexpectedReply {
                addr,
                request: "topology",
                got: reply_kind(&reply),
            });
        };
        let mut resolved = BTreeMap::new();
        for member in &info.members {
            if member.addr.parse::<SocketAddr>().is_err()
                && let Ok(Ok(mut found)) =
                    tokio::time::timeout_at(deadline, tokio::net::lookup_host(member.addr.as_str()))
                        .await
                && let Some(found) = found.next()
            {
                resolved.insert(member.addr.clone(), found);
            }
        }
        View::new(info, addr, &resolved).map_err(|source| ClientError::Topology { addr, source })
    }

    /// Takes `view` and drops per-node state of nodes neither in it nor among the seeds.
    fn install(&self, view: View) {
        let keep: Vec<SocketAddr> = view.addrs().chain(self.seeds.iter().copied()).collect();
        lock(&self.sessions).retain(|addr, _| keep.contains(addr));
        lock(&self.avoided).retain(|addr, _| keep.contains(addr));
        *lock(&self.view) = Some(Arc::new(view));
    }

    /// The session slot of `addr`, made on first use.
    fn session_slot(&self, addr: SocketAddr) -> Result<Arc<SessionSlot>, NetError> {
        let mut sessions = lock(&self.sessions);
        if let Some(slot) = sessions.get(&addr) {
            return Ok(slot.clone());
        }
        if sessions.len() >= NODES_MAX {
            sessions.retain(|_, slot| slot.is_live());
            if sessions.len() >= NODES_MAX {
                return Err(NetError::PoolFull {
                    addr,
                    max: NODES_MAX,
                });
            }
        }
        let slot = Arc::new(SessionSlot::default());
        sessions.insert(addr, slot.clone());
        Ok(slot)
    }
}

/// Refreshes the view every [`VIEW_REFRESH_INTERVAL_MS`] or when asked, at most once per
/// [`VIEW_REFRESH_GAP_MS`]; ends once every clone of the client is gone.
async fn refresh_loop(shared: Weak<Shared>, asked: Arc<Notify>) {
    let interval = Duration::from_millis(VIEW_REFRESH_INTERVAL_MS);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = asked.notified() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A failed refresh keeps the previous view; the next round tries again.
        if let Err(e) = shared.refresh(TOPOLOGY_SOURCES_MAX).await {
            tracing::debug!(error = %e, "cluster view refresh failed");
        }
        drop(shared);
        tokio::time::sleep(Duration::from_millis(VIEW_REFRESH_GAP_MS)).await;
    }
}

/// The lock of state that holds only maps and views: a panic elsewhere cannot leave it
/// half-updated, so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
