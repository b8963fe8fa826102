//! Endpoints, a per-address connection pool, and the one-request exchange.
//!
//! QUIC connections are expensive to open (a TLS handshake) and cheap to multiplex, so a
//! node or client keeps one connection per remote address and opens its streams on it:
//! the long-lived peer links and client sessions of the driver and the client, and the
//! one-request bidirectional stream of `ConnectionPool::request` for simple tools. The
//! pool reconnects lazily when the cached connection has closed, and every step that
//! waits on the network has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::certs::Identity;
use super::error::NetError;
use super::frame::{read_frame, write_frame};
use super::identity::{PeerIdentity, peer_identity};
use super::tls::{SERVER_NAME, client_config, server_config};

/// Deadline for opening a connection (handshake included).
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Most remote addresses a pool keeps a connection to; cluster-sized with headroom.
pub const POOL_CONNECTIONS_MAX: usize = 1_024;

/// QUIC application close code of a pooled connection dropped because the node it leads
/// to was seen restarted ([`ConnectionPool::evict_peer`]).
pub const CLOSE_CODE_PEER_RESTARTED: u32 = 0x19;

type Slot = Arc<tokio::sync::Mutex<Option<Pooled>>>;

/// A cached connection, with who answered it and when it was opened.
#[derive(Debug)]
struct Pooled {
    conn: quinn::Connection,
    /// The server's identity from its certificate (`None` if it carries none, which the
    /// pool does not judge: the caller of [`ConnectionPool::get`] does).
    peer: Option<PeerIdentity>,
    opened: Instant,
}

impl Pooled {
    /// True when this connection leads to `peer` and was opened before `before`.
    fn superseded(&self, peer: &PeerIdentity, before: Instant) -> bool {
        self.opened < before && self.peer.as_ref() == Some(peer)
    }
}

/// One reusable connection per remote address.
///
/// Cloning is cheap and clones share the connections.
#[derive(Debug, Clone)]
pub struct ConnectionPool {
    endpoint: quinn::Endpoint,
    connect_timeout_ms: u64,
    connections_max: usize,
    // One async slot per address: dialers of the same address wait for a single handshake
    // instead of racing and opening duplicate connections; other addresses are unaffected.
    slots: Arc<Mutex<HashMap<SocketAddr, Slot>>>,
}

impl ConnectionPool {
    /// A pool that dials from `endpoint`, which must have a default client config
    /// (as [`bind`] and [`bind_client`] set).
    pub fn new(endpoint: quinn::Endpoint) -> ConnectionPool {
        ConnectionPool {
            endpoint,
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            connections_max: POOL_CONNECTIONS_MAX,
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Overrides the connect deadline (`CONNECT_TIMEOUT_MS` by default).
    pub fn with_connect_timeout_ms(mut self, connect_timeout_ms: u64) -> ConnectionPool {
        self.connect_timeout_ms = connect_timeout_ms;
        self
    }

    /// Overrides the address bound (`POOL_CONNECTIONS_MAX` by default).
    pub fn with_connections_max(mut self, connections_max: usize) -> ConnectionPool {
        self.connections_max = connections_max;
        self
    }

    /// The endpoint this pool dials from.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The live connection to `addr`, opening one if there is none or the cached one closed.
    pub async fn get(&self, addr: SocketAddr) -> Result<quinn::Connection, NetError> {
        let slot = self.slot(addr)?;
        let mut cached = slot.lock().await;
        if let Some(pooled) = cached.as_ref() {
            if pooled.conn.close_reason().is_none() {
                return Ok(pooled.conn.clone());
            }
        }
        *cached = None;
        let conn = connect(&self.endpoint, addr, self.connect_timeout_ms).await?;
        *cached = Some(Pooled {
            conn: conn.clone(),
            peer: peer_identity(&conn).ok(),
            opened: Instant::now(),
        });
        Ok(conn)
    }

    /// Closes every cached connection that leads to `peer` (by the identity in the
    /// certificate it answered with) and was opened before `before`, so the next
    /// [`ConnectionPool::get`] dials again: `peer` was seen restarted, and what is sent
    /// on a connection to its previous process goes nowhere until the idle timeout.
    ///
    /// Connections opened at or after `before` are kept: they lead to the new process. A
    /// slot busy at the time (a dial or a lookup in progress) is checked by a task once
    /// free. Streams riding on a closed connection fail with
    /// [`quinn::ConnectionError::LocallyClosed`]. Returns how many were closed at once.
    pub fn evict_peer(&self, peer: &PeerIdentity, before: Instant) -> usize {
        let slots: Vec<Slot> = self.lock_slots().values().cloned().collect();
        let mut closed = 0;
        for slot in slots {
            match slot.clone().try_lock_owned() {
                Ok(mut cached) => {
                    if close_superseded(&mut cached, peer, before) {
                        closed += 1;
                    }
                }
                Err(_) => {
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        let peer = peer.clone();
                        runtime.spawn(async move {
                            close_superseded(&mut *slot.lock().await, &peer, before);
                        });
                    }
                }
            }
        }
        closed
    }

    /// Drops the cached connection to `addr` (closing it), e.g. after a request on it failed
    /// with [`NetError::is_connection_lost`].
    pub fn evict(&self, addr: SocketAddr) {
        let slot = self.lock_slots().remove(&addr);
        if let Some(slot) = slot {
            if let Ok(mut cached) = slot.try_lock() {
                if let Some(pooled) = cached.take() {
                    pooled.conn.close(quinn::VarInt::from_u32(0), b"evicted");
                }
            }
        }
    }

    /// Number of addresses with a cached slot (live or not yet reaped).
    pub fn len(&self) -> usize {
        self.lock_slots().len()
    }

    /// True when no address has a cached slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`request`] over the pooled connection to `addr`; a lost connection is evicted so the
    /// next call reconnects.
    pub async fn request<Req, Resp>(
        &self,
        addr: SocketAddr,
        req: &Req,
        timeout_ms: u64,
        max: usize,
    ) -> Result<Resp, NetError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let conn = self.get(addr).await?;
        let result = request(&conn, req, timeout_ms, max).await;
        if let Err(e) = &result {
            if e.is_connection_lost() || conn.close_reason().is_some() {
                self.evict(addr);
            }
        }
        result
    }

    fn slot(&self, addr: SocketAddr) -> Result<Slot, NetError> {
        let mut slots = self.lock_slots();
        if let Some(slot) = slots.get(&addr) {
            return Ok(slot.clone());
        }
        if slots.len() >= self.connections_max {
            // Reap slots whose connection is gone; a slot being dialed (locked) is kept.
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(cached) => cached
                    .as_ref()
                    .is_some_and(|p| p.conn.close_reason().is_none()),
                Err(_) => true,
            });
            if slots.len() >= self.connections_max {
                return Err(NetError::PoolFull {
                    addr,
                    max: self.connections_max,
                });
            }
        }
        let slot = Slot::default();
        slots.insert(addr, slot.clone());
        Ok(slot)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Slot>> {
        // The map holds only Arcs; a panic elsewhere cannot leave it half-updated.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Closes the slot's connection if it is superseded (see [`ConnectionPool::evict_peer`]).
fn close_superseded(cached: &mut Option<Pooled>, peer: &PeerIdentity, before: Instant) -> bool {
    if !cached.as_ref().is_some_and(|p| p.superseded(peer, before)) {
        return false;
    }
    if let Some(pooled) = cached.take() {
        pooled.conn.close(
            quinn::VarInt::from_u32(CLOSE_CODE_PEER_RESTARTED),
            b"peer restarted",
        );
    }
    true
}

/// Binds an endpoint that accepts connections (as a node) and dials peers with the same
/// identity.
pub fn bind(addr: SocketAddr, identity: &Identity) -> Result<quinn::Endpoint, NetError> {
    let mut endpoint = quinn::Endpoint::server(server_config(identity)?, addr)
        .map_err(|source| NetError::Bind { addr, source })?;
    endpoint.set_default_client_config(client_config(identity)?);
    Ok(endpoint)
}

/// Binds a dial-only endpoint (for clients); `addr` is the local address, usually port 0.
pub fn bind_client(addr: SocketAddr, identity: &Identity) -> Result<quinn::Endpoint, NetError> {
    let mut endpoint =
        quinn::Endpoint::client(addr).map_err(|source| NetError::Bind { addr, source })?;
    endpoint.set_default_client_config(client_config(identity)?);
    Ok(endpoint)
}

/// Opens a new connection to `addr` (server name [`SERVER_NAME`]) within `timeout_ms`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    timeout_ms: u64,
) -> Result<quinn::Connection, NetError> {
    let connecting = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| NetError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    match tokio::time::timeout(Duration::from_millis(timeout_ms), connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(NetError::Handshake { addr, source }),
        Err(_) => Err(NetError::Timeout {
            what: "connecting to",
            addr,
            timeout_ms,
        }),
    }
}

/// Sends one request on a new bidirectional stream and reads the one response frame.
///
/// The whole exchange (open, write, finish, read) must finish within `timeout_ms`; `max`
/// bounds both the request and the response frame.
pub async fn request<Req, Resp>(
    conn: &quinn::Connection,
    req: &Req,
    timeout_ms: u64,
    max: usize,
) -> Result<Resp, NetError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let addr = conn.remote_address();
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|source| NetError::ConnectionLost { addr, source })?;
        let remote = |source| NetError::Remote {
            addr,
            source: Box::new(source),
        };
        write_frame(&mut send, req, max).await.map_err(remote)?;
        send.finish().map_err(|_| remote(NetError::StreamClosed))?;
        read_frame(&mut recv, max).await.map_err(remote)
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(result) => result,
        Err(_) => Err(NetError::Timeout {
            what: "request to",
            addr,
            timeout_ms,
        }),
    }
}
