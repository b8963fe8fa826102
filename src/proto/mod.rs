//! The wire protocols: what clients ask nodes, and what nodes tell each other.
//!
//! Both protocols are plain serde enums, encoded as msgpack inside length-prefixed frames
//! by `net/`. rmp-serde encodes an enum variant by its *name*, so variants may be added
//! and reordered freely but never renamed; fields may be added with `#[serde(default)]`.
//! Every frame carries [`PROTOCOL_VERSION`] in its envelope, so a node refuses a peer
//! that speaks another version with a clear error instead of misreading it. Every peer
//! message that changes state is idempotent: replication ships whole objects and merges
//! them, so retries and duplicates are harmless.
//!
//! - [`key`]: the bucket/key pair every data request names;
//! - [`client`]: client requests and replies, and the status and ring reports;
//! - [`peer`]: node-to-node messages (replication, forwards, repair, membership);
//! - [`wire`]: the envelopes around both: frames, sessions and peer-stream headers;
//! - [`error`]: why a client request failed, as sent on the wire.

pub mod client;
pub mod error;
pub mod key;
pub mod peer;
pub mod wire;

pub use client::{
    ClientReply, ClientRequest, MemberStatus, QuorumOpts, REPLICAS_MAX, REQUEST_TIMEOUT_MS_MAX,
    RingInfo, RingNode, StatusInfo, TopologyInfo, TopologyMember, TransferInfo,
};
pub use error::{QuorumFailure, RequestError};
pub use key::Key;
pub use peer::PeerMessage;
pub use wire::{
    PROTOCOL_VERSION, PeerStreamHeader, SESSION_ID_NONE, SessionRequest, SessionResponse, WireBody,
    WireRequest, WireResponse,
};
