//! The accept loop: connections in, one typed request per stream, one response out — or,
//! when a stream's first request opens a session, many requests and responses on it.
//!
//! This is where untrusted bytes meet the node, so it is written to survive anything a
//! peer sends: every connection must carry a CA-signed ringkv identity, every stream is
//! decoded once at the edge by [`super::frame`], malformed input gets an error response (if
//! the handler offers one) and a log line, and every bound — connections, streams in flight,
//! frame size, read and write time — is a named constant. What a peer may *do* is the
//! [`Handler`]'s decision: it receives the [`PeerIdentity`] with every request, so it can
//! refuse peer (node-to-node) messages from client certificates.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::error::NetError;
use super::frame::{FRAME_BYTES_MAX, encode_frame, read_frame};
use super::identity::{PeerIdentity, peer_identity};
use super::tls::BIDI_STREAMS_CONCURRENT_MAX;

/// Connections served at once; further handshakes are refused until one closes.
pub const CONNECTIONS_ACCEPTED_MAX: usize = 4_096;
/// Requests handled at once on one connection (matches the QUIC stream credit).
pub const STREAMS_IN_FLIGHT_PER_CONNECTION_MAX: usize = BIDI_STREAMS_CONCURRENT_MAX as usize;
/// Deadline for an incoming handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Deadline for receiving a whole request frame once its stream is open.
pub const REQUEST_READ_TIMEOUT_MS: u64 = 10_000;
/// Deadline for sending a response frame.
pub const RESPONSE_WRITE_TIMEOUT_MS: u64 = 10_000;

/// QUIC application close code: the peer's certificate carries no ringkv identity.
pub const CLOSE_CODE_NO_IDENTITY: u32 = 0x10;
/// Stream reset/stop code: the request frame was refused (too large, malformed, too slow).
pub const STREAM_CODE_BAD_REQUEST: u32 = 0x11;
/// Stream reset code: the response could not be encoded within the frame limit.
pub const STREAM_CODE_RESPONSE_UNENCODABLE: u32 = 0x12;
/// Stream reset code: the peer did not take the response within the write deadline.
pub const STREAM_CODE_RESPONSE_TIMEOUT: u32 = 0x13;
/// Stream reset code: a session was asked of a protocol that has none.
pub const STREAM_CODE_NO_SESSIONS: u32 = 0x18;

/// What a server does with the requests of one protocol.
///
/// The transport knows nothing about the message enums; the handler does, and it is the
/// one that enforces roles (for example: peer messages only from [`super::identity::Role::Node`]).
pub trait Handler: Send + Sync + 'static {
    /// The request enum, decoded from each stream's frame.
    type Request: DeserializeOwned + Send + 'static;
    /// The response enum, written back on the same stream.
    type Response: Serialize + Send + 'static;

    /// Answers one well-formed request from an authenticated peer.
    fn handle(
        &self,
        peer: PeerIdentity,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send;

    /// The response to send when a request could not be decoded (or a response could not
    /// be encoded); `None` just finishes the stream without one.
    fn bad_request(&self, peer: &PeerIdentity, err: &NetError) -> Option<Self::Response>;

    /// Called once per accepted connection after its identity is checked, before its first
    /// stream is read; a driver that also uses QUIC datagrams (gossip) can spawn their
    /// reader here. The accept loop itself reads bidirectional streams only.
    fn connected(&self, _peer: &PeerIdentity, _conn: &quinn::Connection) {}

    /// Limit on request and response frames for this protocol.
    fn frame_bytes_max(&self) -> usize {
        FRAME_BYTES_MAX
    }

    /// True when `req`, a stream's first frame, opens a session: the stream then stays
    /// open and [`Handler::serve_session`] serves it, instead of one response.
    fn opens_session(&self, _req: &Self::Request) -> bool {
        false
    }

    /// Serves a stream whose first frame opened a session, until either side ends it;
    /// the stream holds one of its connection's stream slots meanwhile. A protocol
    /// without sessions keeps this default, which refuses the stream.
    fn serve_session(
        &self,
        peer: PeerIdentity,
        _remote: SocketAddr,
        _req: Self::Request,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> impl Future<Output = ()> + Send {
        debug!(%peer, "refusing a session: this protocol has none");
        let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_NO_SESSIONS));
        let _ = send.reset(quinn::VarInt::from_u32(STREAM_CODE_NO_SESSIONS));
        std::future::ready(())
    }
}

/// Accepts connections on `endpoint` until it is closed, serving each with `handler`.
pub async fn serve<H: Handler>(endpoint: quinn::Endpoint, handler: Arc<H>) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_ACCEPTED_MAX));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!(
                remote = %incoming.remote_address(),
                max = CONNECTIONS_ACCEPTED_MAX,
                "refusing a connection: the node already serves its maximum of connections"
            );
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            serve_connection(incoming, handler).await;
            drop(permit);
        });
    }
    debug!("endpoint closed; accept loop ends");
}

async fn serve_connection<H: Handler>(incoming: quinn::Incoming, handler: Arc<H>) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), incoming)
        .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            warn!(%remote, error = %e, "handshake failed (wrong CA, bad certificate or not a ringkv peer)");
            return;
        }
        Err(_) => {
            warn!(%remote, timeout_ms = HANDSHAKE_TIMEOUT_MS, "handshake timed out");
            return;
        }
    };
    let peer = match peer_identity(&conn) {
        Ok(peer) => peer,
        Err(e) => {
            warn!(%remote, error = %e, "closing a connection without a ringkv identity");
            conn.close(
                quinn::VarInt::from_u32(CLOSE_CODE_NO_IDENTITY),
                b"certificate carries no ringkv identity",
            );
            return;
        }
    };
    debug!(%remote, %peer, "connection accepted");
    handler.connected(&peer, &conn);

    let streams = Arc::new(Semaphore::new(STREAMS_IN_FLIGHT_PER_CONNECTION_MAX));
    loop {
        // Waiting for a permit before accepting stops reading new streams while the
        // connection is at its in-flight bound, so QUIC flow control pushes back on the peer.
        let Ok(permit) = streams.clone().acquire_owned().await else {
            break;
        };
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => {
                debug!(%remote, %peer, reason = %e, "connection closed");
                break;
            }
        };
        tokio::spawn(serve_stream(
            handler.clone(),
            peer.clone(),
            remote,
            send,
            recv,
            permit,
        ));
    }
}

async fn serve_stream<H: Handler>(
    handler: Arc<H>,
    peer: PeerIdentity,
    remote: SocketAddr,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    _permit: OwnedSemaphorePermit,
) {
    let max = handler.frame_bytes_max();
    let read = tokio::time::timeout(
        Duration::from_millis(REQUEST_READ_TIMEOUT_MS),
        read_frame::<H::Request>(&mut recv, max),
    )
    .await
    .unwrap_or(Err(NetError::Timeout {
        what: "reading a request from",
        addr: remote,
        timeout_ms: REQUEST_READ_TIMEOUT_MS,
    }));
    let response = match read {
        Ok(req) if handler.opens_session(&req) => {
            handler.serve_session(peer, remote, req, send, recv).await;
            return;
        }
        Ok(req) => Some(handler.handle(peer.clone(), req).await),
        Err(NetError::StreamRead { source }) => {
            // The peer reset the stream or the connection went away: nobody to answer.
            debug!(%remote, %peer, error = %source, "request stream aborted");
            return;
        }
        Err(err) => {
            warn!(%remote, %peer, error = %err, "refusing a malformed request");
            // Tell the sender to stop: it may still be pushing an oversized body.
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_REQUEST));
            handler.bad_request(&peer, &err)
        }
    };
    if let Some(response) = response {
        let frame = match encode_frame(&response, max) {
            Ok(frame) => frame,
            Err(err) => {
                warn!(%remote, %peer, error = %err, "cannot encode the response");
                match handler
                    .bad_request(&peer, &err)
                    .map(|fallback| encode_frame(&fallback, max))
                {
                    Some(Ok(frame)) => frame,
                    _ => {
                        let _ =
                            send.reset(quinn::VarInt::from_u32(STREAM_CODE_RESPONSE_UNENCODABLE));
                        return;
                    }
                }
            }
        };
        let write = tokio::time::timeout(
            Duration::from_millis(RESPONSE_WRITE_TIMEOUT_MS),
            send.write_all(&frame),
        )
        .await;
        match write {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%remote, %peer, error = %e, "response not delivered");
                return;
            }
            Err(_) => {
                warn!(%remote, %peer, timeout_ms = RESPONSE_WRITE_TIMEOUT_MS, "response write timed out");
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_CODE_RESPONSE_TIMEOUT));
                return;
            }
        }
    }
    // Already closed means the peer went away; there is nothing left to tell it.
    let _ = send.finish();
}
