//! The QUIC server's view of a node: it validates what arrives and enqueues it for the
//! core, and never touches the core itself.
//!
//! A request stream carries one client request and waits for its answer; a session
//! stream is handed to [`super::node_session`]; each connection's peer streams and gossip
//! datagrams get their readers once its identity is known. Roles are checked here: peer
//! messages never travel on request streams, and only node certificates may open peer
//! streams or gossip.
//!
//! A new connection from a node also tells something about that node: a live node keeps
//! its one connection to us, so a second one while the first still looks open means the
//! node restarted (its previous process died without closing anything). The server then
//! drops what leads to the previous process, so the next message dials the new one
//! instead of vanishing until the idle timeout ([`Server::connected`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::core::placement::ring::{MEMBERS_MAX, NodeId};
use crate::net::driver::conn_watch;
use crate::net::driver::datagrams::read_datagrams;
use crate::net::driver::input::{Input, submit};
use crate::net::driver::node_session::serve_session;
use crate::net::driver::peer_link::accept_peer_streams;
use crate::net::metrics::NodeMetrics;
use crate::net::metrics::catalog::{
    CLIENT_SESSIONS, CLIENT_SESSIONS_TOTAL, CONNECTIONS, CONNECTIONS_TOTAL,
};
use crate::net::{ConnectionPool, Handler, NetError, PeerIdentity, Role};
use crate::proto::{PROTOCOL_VERSION, WireBody, WireRequest, WireResponse};

/// Incoming node connections remembered (the latest per node name); beyond it the
/// closed ones are forgotten first.
pub const INCOMING_NODES_MAX: usize = MEMBERS_MAX * 2;

/// QUIC application close code: an incoming connection superseded by a newer one from the
/// same node, which restarted.
pub const CLOSE_CODE_SUPERSEDED: u32 = 0x1a;

/// The node's [`Handler`]: it only validates and enqueues.
#[derive(Debug)]
pub(crate) struct Server {
    inputs: mpsc::Sender<Input>,
    /// The pool the node dials its peers from (shared with the peer links and gossip).
    pool: ConnectionPool,
    /// The latest incoming connection of each node, by certificate name.
    incoming: Mutex<HashMap<String, quinn::Connection>>,
    /// The node's metrics: open connections and client sessions.
    metrics: NodeMetrics,
}

impl Server {
    pub(crate) fn new(
        inputs: mpsc::Sender<Input>,
        pool: ConnectionPool,
        metrics: NodeMetrics,
    ) -> Server {
        Server {
            inputs,
            pool,
            incoming: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Records `conn` as `peer`'s latest incoming connection; true when it supersedes one
    /// that still looked open, i.e. `peer` restarted.
    fn supersedes(&self, peer: &PeerIdentity, conn: &quinn::Connection) -> bool {
        let mut incoming = self
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if incoming.len() >= INCOMING_NODES_MAX && !incoming.contains_key(&peer.name) {
            incoming.retain(|_, c| c.close_reason().is_none());
        }
        if incoming.len() >= INCOMING_NODES_MAX && !incoming.contains_key(&peer.name) {
            // Only certificates the cluster CA signed get here; with the table full of
            // live connections, this one is simply not remembered.
            return false;
        }
        let previous = incoming.insert(peer.name.clone(), conn.clone());
        match previous {
            Some(old) if old.stable_id() != conn.stable_id() && old.close_reason().is_none() => {
                old.close(
                    quinn::VarInt::from_u32(CLOSE_CODE_SUPERSEDED),
                    b"superseded by a newer connection",
                );
                true
            }
            _ => false,
        }
    }

    /// `peer` restarted: close our pooled connections to its previous process (the peer
    /// links' streams on them fail or reopen on a new one, gossip redials), and report it
    /// unreachable, so requests waiting on messages sent to the previous process fail
    /// over at once instead of timing out. The report is queued before this connection's
    /// readers start, so the core handles it before anything the new process sends.
    fn peer_restarted(&self, peer: &PeerIdentity, accepted: Instant) {
        let closed = self.pool.evict_peer(peer, accepted);
        tracing::info!(%peer, closed, "a node connected again while its previous connection looked open: it restarted; dropping the connections to its previous process");
        let input = Input::Unreachable(NodeId::new(peer.name.clone()));
        if let Err(mpsc::error::TrySendError::Full(input)) = self.inputs.try_send(input) {
            // A full queue is rare (it holds INPUT_QUEUE_MAX); the report may then come
            // after the new process's first messages, which only delays its being seen up.
            let inputs = self.inputs.clone();
            tokio::spawn(async move {
                let _ = inputs.send(input).await;
            });
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
            WireBody::Client(request) => submit(&self.inputs, request).await,
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
        let _open = self
            .metrics
            .open(CLIENT_SESSIONS, CLIENT_SESSIONS_TOTAL, &[]);
        serve_session(self.inputs.clone(), peer, remote, req.version, send, recv).await;
    }

    fn connected(&self, peer: &PeerIdentity, conn: &quinn::Connection) {
        let open = self
            .metrics
            .open(CONNECTIONS, CONNECTIONS_TOTAL, &[("transport", "quic")]);
        let closing = conn.clone();
        tokio::spawn(async move {
            closing.closed().await;
            drop(open);
        });
        if peer.role == Role::Node {
            let accepted = Instant::now();
            if self.supersedes(peer, conn) {
                self.peer_restarted(peer, accepted);
            }
            // A peer that dies shows here within the idle timeout, sent to or not.
            conn_watch::watch(
                NodeId::new(peer.name.clone()),
                conn.clone(),
                self.inputs.clone(),
            );
        }
        // Peer streams check the role themselves, so a client's attempt gets a log line.
        accept_peer_streams(peer.clone(), conn.clone(), self.inputs.clone());
        read_datagrams(peer, conn, self.inputs.clone());
    }

    fn bad_request(&self, peer: &PeerIdentity, err: &NetError) -> Option<WireResponse> {
        Some(WireResponse::Refused(format!(
            "{peer} sent a frame this node cannot read ({err}); check that both sides run the same ringkv version"
        )))
    }
}
