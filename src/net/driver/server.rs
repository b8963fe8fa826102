//! The QUIC server's view of a node: it validates what arrives and enqueues it for the
//! core, and never touches the core itself.
//!
//! A request stream carries one client request and waits for its answer; a session
//! stream is handed to [`super::node_session`]; each connection's peer streams and gossip
//! datagrams get their readers once its identity is known. Roles are checked here: peer
//! messages never travel on request streams, and only node certificates may open peer
//! streams or gossip.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::net::driver::datagrams::read_datagrams;
use crate::net::driver::input::{Input, ReplyTo};
use crate::net::driver::node_session::serve_session;
use crate::net::driver::peer_link::accept_peer_streams;
use crate::net::{Handler, NetError, PeerIdentity};
use crate::proto::{PROTOCOL_VERSION, REQUEST_TIMEOUT_MS_MAX, WireBody, WireRequest, WireResponse};

/// How long the server waits for the core to answer a client request: the longest
/// request timeout plus forwarding slack.
pub const CLIENT_WAIT_MS: u64 = REQUEST_TIMEOUT_MS_MAX as u64 * 2 + 5_000;

/// The node's [`Handler`]: it only validates and enqueues.
#[derive(Debug)]
pub(crate) struct Server {
    inputs: mpsc::Sender<Input>,
}

impl Server {
    pub(crate) fn new(inputs: mpsc::Sender<Input>) -> Server {
        Server { inputs }
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
        read_datagrams(peer, conn, self.inputs.clone());
    }

    fn bad_request(&self, peer: &PeerIdentity, err: &NetError) -> Option<WireResponse> {
        Some(WireResponse::Refused(format!(
            "{peer} sent a frame this node cannot read ({err}); check that both sides run the same ringkv version"
        )))
    }
}
