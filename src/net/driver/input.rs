//! What reaches a node's core task, and where the answer to a client request goes.
//!
//! Every source of work — request streams, client sessions, peer streams, peer links
//! that fail, gossip datagrams, a shutdown — feeds one bounded channel of `Input`s that
//! the core loop drains. These types sit in a module of their own so that the core loop
//! and every source can use them without depending on one another.

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::core::placement::ring::NodeId;
use crate::proto::{
    ClientReply, ClientRequest, PeerMessage, REQUEST_TIMEOUT_MS_MAX, SESSION_ID_NONE, WireResponse,
};

/// How long a one-request front (a QUIC request stream, an HTTP request) waits for the
/// core to answer a client request: the longest request timeout plus forwarding slack.
pub const CLIENT_WAIT_MS: u64 = REQUEST_TIMEOUT_MS_MAX as u64 * 2 + 5_000;

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

/// Enqueues one client request for the core and waits for its answer, at most
/// [`CLIENT_WAIT_MS`]: the path of every one-request front (QUIC request streams and the
/// HTTP API), so they share the core loop and its group commit instead of owning a copy.
pub(crate) async fn submit(inputs: &mpsc::Sender<Input>, request: ClientRequest) -> WireResponse {
    let (tx, rx) = oneshot::channel();
    let input = Input::Client {
        request,
        reply: ReplyTo::Stream(tx),
    };
    if inputs.send(input).await.is_err() {
        return WireResponse::Refused("the node is shutting down; retry on another node".into());
    }
    match tokio::time::timeout(Duration::from_millis(CLIENT_WAIT_MS), rx).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            WireResponse::Refused("the node stopped before answering; retry on another node".into())
        }
        Err(_) => WireResponse::Refused(format!("no answer within {CLIENT_WAIT_MS} ms; retry")),
    }
}

/// Where the core's answer to one client request goes.
#[derive(Debug)]
pub(crate) enum ReplyTo {
    /// The task serving a one-request stream waits on this.
    Stream(oneshot::Sender<WireResponse>),
    /// A session's writer; the permit holds the request's in-flight slot until its
    /// answer is taken for writing.
    Session {
        id: u64,
        out: mpsc::UnboundedSender<Answer>,
        permit: OwnedSemaphorePermit,
    },
}

/// One answer on its way to a session's writer.
#[derive(Debug)]
pub(crate) struct Answer {
    id: u64,
    response: WireResponse,
    /// The request's in-flight slot, freed once the answer is taken for writing; `None`
    /// for the answer that refuses a whole session.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Answer {
    /// The answer that refuses a whole session: it carries no request's id.
    pub(crate) fn refuse_session(reason: String) -> Answer {
        Answer {
            id: SESSION_ID_NONE,
            response: WireResponse::Refused(reason),
            _permit: None,
        }
    }

    /// The request id and the response, freeing the request's in-flight slot.
    pub(crate) fn into_parts(self) -> (u64, WireResponse) {
        (self.id, self.response)
    }
}

impl ReplyTo {
    /// Hands the core's reply to whoever waits for it; a client that went away is no
    /// longer waiting, which is not an error.
    pub(crate) fn send(self, reply: ClientReply) {
        self.respond(WireResponse::Client(reply));
    }

    /// Answers with a refusal instead of a reply (the node is shutting down).
    pub(crate) fn refuse(self, reason: String) {
        self.respond(WireResponse::Refused(reason));
    }

    fn respond(self, response: WireResponse) {
        match self {
            ReplyTo::Stream(tx) => {
                let _ = tx.send(response);
            }
            ReplyTo::Session { id, out, permit } => {
                let _ = out.send(Answer {
                    id,
                    response,
                    _permit: Some(permit),
                });
            }
        }
    }
}
