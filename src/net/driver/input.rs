//! What reaches a node's core task, and where the answer to a client request goes.
//!
//! Every source of work — request streams, client sessions, peer streams, peer links
//! that fail, gossip datagrams, a shutdown — feeds one bounded channel of `Input`s that
//! the core loop drains. These types sit in a module of their own so that the core loop
//! and every source can use them without depending on one another.

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, PeerMessage, SESSION_ID_NONE, WireResponse};

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
