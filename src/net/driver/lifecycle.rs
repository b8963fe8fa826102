//! Starting and stopping a node: bind its endpoint, open its storage, spawn its core
//! loop and its server, and later shut them down cleanly (or kill them, for tests).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::node::{MemberSpec, Node, NodeConfig};
use crate::core::placement::ring::NodeId;
use crate::net::driver::core_loop::{Clock, CoreLoop};
use crate::net::driver::datagrams::DatagramSender;
use crate::net::driver::error::DriverError;
use crate::net::driver::input::Input;
use crate::net::driver::peer_link::PeerLinks;
use crate::net::driver::persist_tracker::PersistTracker;
use crate::net::driver::server::Server;
use crate::net::http::front::Front;
use crate::net::http::{HttpOptions, HttpServer};
use crate::net::metrics::NodeMetrics;
use crate::net::{ConnectionPool, Identity, NetError, bind, load_identity, serve};
use crate::storage::{FjallStorage, Storage, SyncMode};

/// Inputs queued for the core at most; senders wait when it is full (backpressure).
pub const INPUT_QUEUE_MAX: usize = 65_536;
/// How long a clean shutdown waits for the core to persist and stop.
pub const SHUTDOWN_WAIT_MS: u64 = 3_000;
/// How long a clean shutdown lets closing connections drain; attempts still dialling a
/// dead peer would otherwise hold it for their whole connect timeout.
pub const DRAIN_WAIT_MS: u64 = 500;

/// What a node needs to start.
#[derive(Debug)]
pub struct NodeOptions {
    /// The core's settings; `addr` is filled in from the bound endpoint when empty, and
    /// `rng_seed` is replaced by an OS-random seed.
    pub config: NodeConfig,
    /// The members the node starts with (each address must resolve); this node is added
    /// from `config.addr` when it is not among them.
    pub members: Vec<MemberSpec>,
    /// Directory holding the cluster CA and this node's certificate and key.
    pub certs_dir: PathBuf,
    /// Directory of the node's data; the storage engine lives in its `data` subdirectory.
    pub data_dir: PathBuf,
    /// When storage writes are synced to disk.
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
    /// The node's certificate: the HTTP API serves it and asks other members with it.
    identity: Arc<Identity>,
    /// The HTTP API, once [`NodeHandle::serve_http`] started it.
    http: Option<HttpServer>,
    /// The node's own metrics recorder (`GET /metrics`).
    metrics: NodeMetrics,
    /// The node's connections to its peers, shared with the HTTP API's `/v1/stats`.
    pool: ConnectionPool,
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
    let datagrams = DatagramSender::new(name.clone(), pool.clone());
    let links = PeerLinks::new(name.clone(), pool.clone(), tx.clone());
    // This node's own recorder: several nodes may share the process (tests, `dev`).
    let metrics = NodeMetrics::new();
    let core = tokio::spawn(
        CoreLoop::new(node, rx, datagrams, links, clock, tracker, metrics.clone()).run(),
    );
    let server = tokio::spawn(serve(
        bound.endpoint.clone(),
        Arc::new(Server::new(tx.clone(), pool.clone(), metrics.clone())),
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
        identity: Arc::new(bound.identity),
        http: None,
        metrics,
        pool,
    })
}

impl NodeHandle {
    /// The node's id.
    pub fn name(&self) -> &NodeId {
        &self.name
    }

    /// The address its endpoint is bound to (the actual port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's metrics, as `GET /metrics` renders them.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// The node's storage, for inspection by tests and tools.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// Serves the HTTP/JSON API on `opts.listen` (see [`crate::net::http`]): its requests
    /// enter this node's input channel like QUIC clients' requests. Returns its address.
    pub async fn serve_http(&mut self, opts: &HttpOptions) -> Result<SocketAddr, DriverError> {
        if let Some(running) = &self.http {
            return Err(DriverError::Http {
                addr: opts.listen,
                reason: format!("this node already serves HTTP on {}", running.addr()),
            });
        }
        let front = Front::new(
            self.inputs.clone(),
            self.identity.clone(),
            self.name.clone(),
            self.metrics.clone(),
            self.pool.clone(),
        );
        let server = crate::net::http::serve::start(opts, front).await?;
        let addr = server.addr();
        self.http = Some(server);
        Ok(addr)
    }

    /// The HTTP API's base URL (`https://ADDR`), once it is served.
    pub fn http_url(&self) -> Option<String> {
        self.http.as_ref().map(HttpServer::url)
    }

    /// Stops cleanly: the core persists what it has, connections close.
    pub async fn shutdown(self) -> Result<(), DriverError> {
        if let Some(http) = &self.http {
            http.stop();
        }
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
        if let Some(http) = &self.http {
            http.stop();
        }
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
