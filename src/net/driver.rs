//! The node driver: the thin async shell around one sans-IO core node.
//!
//! One task owns the [`Node`]. Everything that happens to it — client requests from the
//! QUIC server, peer messages from peer streams ([`super::peer_link`]), delivery
//! failures from the per-peer links, gossip datagrams, timer deadlines —
//! arrives on one bounded channel, is fed to the core in a batch, and then the driver
//! calls `Storage::persist` once for the whole batch before it sends a single ack or
//! reply. That is ringkv's group commit: writes that arrive together share one fsync, and
//! nothing is acknowledged before it is durable. If persisting fails the node stops
//! (fail-stop, like Cassandra's `disk_failure_policy: stop`) rather than ack lost writes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::node::{MemberSpec, Node, NodeConfig, NodeError};
use crate::core::placement::ring::NodeId;
use crate::net::core_loop::{Clock, CoreLoop};
use crate::net::peer_link::{PeerLinks, accept_peer_streams};
use crate::net::persist::PersistTracker;
use crate::net::session::{ReplyTo, serve_session};
use crate::net::{
    ConnectionPool, Handler, Identity, NetError, PeerIdentity, Role, bind, load_identity, serve,
};
use crate::proto::{
    ClientRequest, PROTOCOL_VERSION, PeerMessage, REQUEST_TIMEOUT_MS_MAX, WireBody, WireRequest,
    WireResponse,
};
use crate::storage::{FjallStorage, Storage, StorageError, SyncMode};

/// Inputs queued for the core at most; senders wait when it is full (backpressure).
pub const INPUT_QUEUE_MAX: usize = 65_536;
/// Inputs fed to the core between two persists.
pub const BATCH_MAX: usize = 1_024;
/// How long the server waits for the core to answer a client request: the longest
/// request timeout plus forwarding slack.
pub const CLIENT_WAIT_MS: u64 = REQUEST_TIMEOUT_MS_MAX as u64 * 2 + 5_000;
/// How long a clean shutdown waits for the core to persist and stop.
pub const SHUTDOWN_WAIT_MS: u64 = 3_000;
/// How long a clean shutdown lets closing connections drain; attempts still dialling a
/// dead peer would otherwise hold it for their whole connect timeout.
pub const DRAIN_WAIT_MS: u64 = 500;
/// Gossip datagrams being sent at once; beyond it they are dropped (SWIM tolerates loss).
pub const DATAGRAMS_INFLIGHT_MAX: usize = 1_024;
/// Largest gossip datagram read from a peer; bigger ones are dropped unread by the core.
pub const DATAGRAM_BYTES_MAX: usize = crate::core::membership::gossip::GOSSIP_PACKET_BYTES_MAX;
/// How long a node that has left waits for its last messages to go out.
pub const LEAVE_DRAIN_MS: u64 = 3_000;

/// Errors starting or running a node.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot open the data directory {dir}: {source}")]
    Storage { dir: PathBuf, source: StorageError },
    #[error("member {name} has address '{addr}', which does not resolve: {reason}")]
    BadAddress {
        name: NodeId,
        addr: String,
        reason: String,
    },
    #[error(
        "node {node} stopped because it could not persist writes ({source}); check the disk, then restart it"
    )]
    Persist { node: NodeId, source: StorageError },
    #[error("the node task of {0} ended unexpectedly")]
    Crashed(NodeId),
}

/// What a node needs to start.
#[derive(Debug)]
pub struct NodeOptions {
    pub config: NodeConfig,
    pub members: Vec<MemberSpec>,
    pub certs_dir: PathBuf,
    pub data_dir: PathBuf,
    pub sync: SyncMode,
}

/// A bound but not yet started endpoint, so tests can learn ephemeral ports first.
#[derive(Debug)]
pub struct Bound {
    endpoint: quinn::Endpoint,
    identity: Identity,
    addr: SocketAddr,
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    name: NodeId,
    addr: SocketAddr,
    inputs: mpsc::Sender<Input>,
    core: JoinHandle<Result<(), DriverError>>,
    server: JoinHandle<()>,
    endpoint: quinn::Endpoint,
    storage: Arc<dyn Storage>,
}

/// Something for the core to handle.
#[derive(Debug)]
pub(crate) enum Input {
    Client {
        request: ClientRequest,
        reply: ReplyTo,
    },
    Peer {
        from: NodeId,
        msg: PeerMessage,
    },
    Unreachable(NodeId),
    /// A gossip datagram from the node whose certificate names it `from`.
    Datagram {
        from: NodeId,
        data: Vec<u8>,
    },
    Shutdown,
}

/// The QUIC server's view of the node: it only validates and enqueues.
#[derive(Debug)]
struct Server {
    inputs: mpsc::Sender<Input>,
}

/// Sends gossip datagrams (peer messages go through [`PeerLinks`]).
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    me: NodeId,
    pool: ConnectionPool,
    datagram_slots: Arc<tokio::sync::Semaphore>,
}

impl Bound {
    /// The address the endpoint listens on (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds the node's QUIC endpoint with its certificate from `certs_dir`.
pub fn bind_node(
    listen: SocketAddr,
    certs_dir: &std::path::Path,
    name: &str,
) -> Result<Bound, DriverError> {
    let identity = load_identity(certs_dir, name)?;
    let endpoint = bind(listen, &identity)?;
    let addr = endpoint.local_addr().map_err(|e| NetError::Bind {
        addr: listen,
        source: e,
    })?;
    Ok(Bound {
        endpoint,
        identity,
        addr,
    })
}

/// Binds and starts a node on its durable fjall storage.
pub async fn start_node(listen: SocketAddr, opts: NodeOptions) -> Result<NodeHandle, DriverError> {
    let bound = bind_node(listen, &opts.certs_dir, opts.config.name.as_str())?;
    start_bound(bound, opts).await
}

/// Starts a node on an endpoint bound with [`bind_node`].
pub async fn start_bound(bound: Bound, opts: NodeOptions) -> Result<NodeHandle, DriverError> {
    let data = opts.data_dir.join("data");
    let storage: Arc<dyn Storage> = Arc::new(FjallStorage::open(&data, opts.sync).map_err(
        |source| DriverError::Storage {
            dir: data.clone(),
            source,
        },
    )?);
    start_with_storage(bound, opts.config, opts.members, storage)
}

/// Starts a node on any storage engine.
pub fn start_with_storage(
    bound: Bound,
    mut config: NodeConfig,
    members: Vec<MemberSpec>,
    storage: Arc<dyn Storage>,
) -> Result<NodeHandle, DriverError> {
    for m in &members {
        resolve(&m.name, &m.addr)?;
    }
    if config.addr.is_empty() {
        config.addr = bound.addr.to_string();
    }
    // The OS RNG seeds the core once; a fresh data directory gets a random actor.
    config.rng_seed = rand::rng().next_u64();
    // Batches that wrote nothing (reads, forwards, acks, pings) then skip the fsync.
    let tracker = Arc::new(PersistTracker::new(storage));
    let storage: Arc<dyn Storage> = tracker.clone();
    let clock = Clock::new();
    let node = Node::new(config, members, storage.clone(), clock.now())?;
    let name = node.name().clone();
    let (tx, rx) = mpsc::channel(INPUT_QUEUE_MAX);
    let pool = ConnectionPool::new(bound.endpoint.clone());
    let sender = Sender {
        me: name.clone(),
        pool: pool.clone(),
        datagram_slots: Arc::new(tokio::sync::Semaphore::new(DATAGRAMS_INFLIGHT_MAX)),
    };
    let links = PeerLinks::new(name.clone(), pool, tx.clone());
    let core = tokio::spawn(CoreLoop::new(node, rx, sender, links, clock, tracker).run());
    let server = tokio::spawn(serve(
        bound.endpoint.clone(),
        Arc::new(Server { inputs: tx.clone() }),
    ));
    tracing::info!(node = %name, addr = %bound.addr, role = %bound.identity.role, "node started");
    Ok(NodeHandle {
        name,
        addr: bound.addr,
        inputs: tx,
        core,
        server,
        endpoint: bound.endpoint,
        storage,
    })
}

impl NodeHandle {
    pub fn name(&self) -> &NodeId {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's storage, for inspection by tests and tools.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// Stops cleanly: the core persists what it has, connections close.
    pub async fn shutdown(self) -> Result<(), DriverError> {
        let _ = self.inputs.send(Input::Shutdown).await;
        let result =
            match tokio::time::timeout(Duration::from_millis(SHUTDOWN_WAIT_MS), self.core).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) | Err(_) => Err(DriverError::Crashed(self.name.clone())),
            };
        self.endpoint.close(0u32.into(), b"shutdown");
        self.server.abort();
        let _ = tokio::time::timeout(
            Duration::from_millis(DRAIN_WAIT_MS),
            self.endpoint.wait_idle(),
        )
        .await;
        result
    }

    /// Stops at once, with no clean shutdown and no final persist: a crash, for tests.
    pub async fn kill(self) {
        self.core.abort();
        self.server.abort();
        self.endpoint.close(0u32.into(), b"killed");
        let _ = self.core.await;
        let _ = self.server.await;
    }

    /// True once the node's core task has ended (it stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.core.is_finished()
    }

    /// Waits until the node stops by itself (for `ringkv node`); returns its error.
    pub async fn wait(&mut self) -> Result<(), DriverError> {
        match (&mut self.core).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Crashed(self.name.clone())),
        }
    }
}

impl Handler for Server {
    type Request = WireRequest;
    type Response = WireResponse;

    async fn handle(&self, peer: PeerIdentity, req: WireRequest) -> WireResponse {
        if req.version != PROTOCOL_VERSION {
            return WireResponse::Refused(format!(
                "protocol version {} is not spoken here (this node speaks {PROTOCOL_VERSION}); upgrade the older side",
                req.version
            ));
        }
        match req.body {
            WireBody::Client(request) => {
                let (tx, rx) = oneshot::channel();
                let input = Input::Client {
                    request,
                    reply: ReplyTo::Stream(tx),
                };
                if self.inputs.send(input).await.is_err() {
                    return WireResponse::Refused(
                        "the node is shutting down; retry on another node".into(),
                    );
                }
                match tokio::time::timeout(Duration::from_millis(CLIENT_WAIT_MS), rx).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(_)) => WireResponse::Refused(
                        "the node stopped before answering; retry on another node".into(),
                    ),
                    Err(_) => WireResponse::Refused(format!(
                        "no answer within {CLIENT_WAIT_MS} ms; retry"
                    )),
                }
            }
            WireBody::Session => WireResponse::Refused(
                "a session was asked for by a frame that is not a stream's first; open a new stream for it".into(),
            ),
            WireBody::Peer { from, .. } => {
                tracing::warn!(%peer, claimed = %from, "refused a peer message on a request stream");
                WireResponse::Refused(format!(
                    "{peer} sent a peer message on a request stream; peer messages travel on peer streams, which need a node certificate and a node of the same ringkv version"
                ))
            }
        }
    }

    fn opens_session(&self, req: &WireRequest) -> bool {
        matches!(req.body, WireBody::Session)
    }

    async fn serve_session(
        &self,
        peer: PeerIdentity,
        remote: SocketAddr,
        req: WireRequest,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        serve_session(self.inputs.clone(), peer, remote, req.version, send, recv).await;
    }

    fn connected(&self, peer: &PeerIdentity, conn: &quinn::Connection) {
        // Peer streams check the role themselves, so a client's attempt gets a log line.
        accept_peer_streams(peer.clone(), conn.clone(), self.inputs.clone());
        // Gossip rides QUIC datagrams on the same authenticated connection; only node
        // certificates may gossip, and the core checks each packet's claimed sender.
        if peer.role != Role::Node {
            return;
        }
        let from = NodeId::new(peer.name.clone());
        let conn = conn.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Ok(bytes) = conn.read_datagram().await {
                if bytes.len() > DATAGRAM_BYTES_MAX {
                    tracing::debug!(%from, len = bytes.len(), "oversized gossip datagram dropped");
                    continue;
                }
                let input = Input::Datagram {
                    from: from.clone(),
                    data: bytes.to_vec(),
                };
                // Gossip is lossy by design: never block the reader on a full queue.
                if let Err(mpsc::error::TrySendError::Closed(_)) = inputs.try_send(input) {
                    break;
                }
            }
        });
    }

    fn bad_request(&self, peer: &PeerIdentity, err: &NetError) -> Option<WireResponse> {
        Some(WireResponse::Refused(format!(
            "{peer} sent a frame this node cannot read ({err}); check that both sides run the same ringkv version"
        )))
    }
}

impl Sender {
    /// Sends one gossip datagram in the background, or drops it when too many are under
    /// way (SWIM tolerates loss; a stuck dial must not stall the core).
    pub(crate) fn send_datagram(&self, addr: SocketAddr, data: Vec<u8>) {
        let Ok(slot) = self.datagram_slots.clone().try_acquire_owned() else {
            return;
        };
        let pool = self.pool.clone();
        let me = self.me.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let sent = match pool.get(addr).await {
                Ok(conn) => conn.send_datagram(data.into()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::trace!(node = %me, %addr, error = %e, "gossip datagram not sent");
            }
        });
    }
}

fn resolve(name: &NodeId, addr: &str) -> Result<SocketAddr, DriverError> {
    let bad = |reason: String| DriverError::BadAddress {
        name: name.clone(),
        addr: addr.to_string(),
        reason,
    };
    addr.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no address found".into()))
}
