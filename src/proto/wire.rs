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
    pub version: u16,
    pub body: WireBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireBody {
    Client(ClientRequest),
    /// A peer message on a one-request stream. Nodes refuse it (peer messages travel on
    /// peer streams, see [`PeerStreamHeader`]) so that a forged or outdated sender gets
    /// a clear answer; tools still use the envelope to measure message sizes.
    Peer {
        from: NodeId,
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
    pub id: u64,
    pub request: ClientRequest,
}

/// The answer to the session request with the same `id`. Id [`SESSION_ID_NONE`] answers
/// no request: a `Refused` with it refuses the whole session (another protocol version,
/// a malformed frame), and the node then ends the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionResponse {
    pub id: u64,
    pub response: WireResponse,
}

/// The first frame of a peer stream: a long-lived QUIC unidirectional stream from one
/// node to another that carries many [`PeerMessage`] frames and gets no response frames
/// (the messages' own acks, such as `ReplicateAck`, are the application-level answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStreamHeader {
    pub version: u16,
    /// The sending node; must match the name in its certificate.
    pub from: NodeId,
}

/// The answer on the same stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireResponse {
    Client(ClientReply),
    /// Never sent by this version (peer messages get no response frame on peer
    /// streams); clients treat it as an unexpected reply.
    PeerAccepted,
    /// The frame was refused; the text says why and what to do.
    Refused(String),
}

impl PeerStreamHeader {
    pub fn new(from: NodeId) -> PeerStreamHeader {
        PeerStreamHeader {
            version: PROTOCOL_VERSION,
            from,
        }
    }
}

impl WireRequest {
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
