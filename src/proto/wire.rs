//! The envelopes on the wire: one-request frames, client sessions and peer streams.

use serde::{Deserialize, Serialize};

use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, PeerMessage};

/// The protocol version this build speaks. 2: gossip membership, batched peer streams and
/// the short-hash anti-entropy messages (a version-1 node cannot talk to a version-2 one).
/// 3: client sessions ([`WireBody::Session`]), many requests on one long-lived stream.
pub const PROTOCOL_VERSION: u16 = 3;
/// The session response id that answers no request (see [`SessionResponse`]); clients
/// number their requests from 1.
pub const SESSION_ID_NONE: u64 = 0;

/// One frame's body on the wire, client or peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    /// The sender's protocol version; a node answers a frame of another version with
    /// `WireResponse::Refused`.
    pub version: u16,
    /// What the frame asks.
    pub body: WireBody,
}

/// What a frame on a client stream carries: one client request, a peer message (refused),
/// or the opening of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireBody {
    /// One client request; the node answers it with one `WireResponse` frame and the stream
    /// ends.
    Client(ClientRequest),
    /// A peer message on a one-request stream. Nodes refuse it (peer messages travel on
    /// peer streams, see [`PeerStreamHeader`]) so that a forged or outdated sender gets
    /// a clear answer; tools still use the envelope to measure message sizes.
    Peer {
        /// The node the message claims to come from.
        from: NodeId,
        /// The peer message.
        msg: PeerMessage,
    },
    /// Opens a client session on this stream: the stream stays open, the client sends
    /// [`SessionRequest`] frames and the node answers each with a [`SessionResponse`]
    /// frame carrying the same id, in whatever order the answers are ready.
    Session,
}

/// One request on a client session; `id` is the client's, unique among its requests in
/// flight on the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// The client's id for this request, from 1 up; the response carries it back.
    pub id: u64,
    /// The client request.
    pub request: ClientRequest,
}

/// The answer to the session request with the same `id`. Id [`SESSION_ID_NONE`] answers
/// no request: a `Refused` with it refuses the whole session (another protocol version,
/// a malformed frame), and the node then ends the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The `id` of the request this answers, or `SESSION_ID_NONE` when it refuses the whole
    /// session.
    pub id: u64,
    /// The node's answer.
    pub response: WireResponse,
}

/// The first frame of a peer stream: a long-lived QUIC unidirectional stream from one
/// node to another that carries many [`PeerMessage`] frames and gets no response frames
/// (the messages' own acks, such as `ReplicateAck`, are the application-level answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStreamHeader {
    /// The sender's protocol version; a receiver of another version stops the stream.
    pub version: u16,
    /// The sending node; must match the name in its certificate.
    pub from: NodeId,
}

/// The answer on the same stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireResponse {
    /// The node's reply to a client request, errors included.
    Client(ClientReply),
    /// Never sent by this version (peer messages get no response frame on peer
    /// streams); clients treat it as an unexpected reply.
    PeerAccepted,
    /// The frame was refused; the text says why and what to do.
    Refused(String),
}

impl PeerStreamHeader {
    /// A header for `from` at this build's `PROTOCOL_VERSION`.
    pub fn new(from: NodeId) -> PeerStreamHeader {
        PeerStreamHeader {
            version: PROTOCOL_VERSION,
            from,
        }
    }
}

impl WireRequest {
    /// A frame carrying `body` at this build's `PROTOCOL_VERSION`.
    pub fn new(body: WireBody) -> WireRequest {
        WireRequest {
            version: PROTOCOL_VERSION,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Key;

    #[test]
    fn messages_round_trip_through_msgpack() {
        let msg = WireRequest::new(WireBody::Peer {
            from: NodeId::from("n1"),
            msg: PeerMessage::Read {
                id: 9,
                key: Key::new("b", "k"),
                hint: Some(NodeId::from("n2")),
            },
        });
        let bytes = rmp_serde::to_vec(&msg).unwrap();
        let back: WireRequest = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, msg);
    }
}
