//! The node's half of a client session: many client requests on one long-lived stream,
//! answered out of order, in batches.
//!
//! Why: with one QUIC stream per client request, every request cost a stream opened and
//! accepted, a spawned task, a oneshot wake-up and a response frame written on its own,
//! on both sides; the profile of the durable 3-node put showed a fifth of the CPU in the
//! kernel's context switches and wake-ups (docs/BENCHMARKS.md, "Issue 6, part 4"). A
//! session is one bidirectional stream: a reader loop feeds [`SessionRequest`]s to the
//! core, and one writer task drains every answer that is ready into one buffer and one
//! write, as peer streams ([`super::peer_link`]) do for node-to-node messages.
//!
//! Bounds: a session has at most [`SESSION_IN_FLIGHT_MAX`] requests in the node at once;
//! beyond it the reader stops reading, so QUIC flow control pushes back on the client.
//! A malformed frame gets a `Refused` answer with [`SESSION_ID_NONE`] and ends the
//! session; the connection and the node keep serving. Roles are the driver's business as
//! on request streams: a session carries client requests only, which any certificate of
//! the cluster may send.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::net::driver::Input;
use crate::net::frame::{FRAME_BYTES_MAX, FrameReader, decode_body, encode_frame_into};
use crate::net::{NetError, PeerIdentity};
use crate::proto::{
    ClientReply, PROTOCOL_VERSION, SESSION_ID_NONE, SessionRequest, SessionResponse, WireResponse,
};

/// Requests of one session in the node at once; the reader waits for an answer to go out
/// before it reads more.
pub const SESSION_IN_FLIGHT_MAX: usize = 1_024;
/// Encoded answers gathered into one write; a longer backlog goes out in several.
pub const SESSION_WRITE_BYTES_MAX: usize = 256 * 1024;
/// Deadline for one write of answers; a client that takes nothing for this long loses
/// its session.
pub const SESSION_WRITE_TIMEOUT_MS: u64 = 10_000;

/// Stream stop code: a session frame was oversized, cut short or not a request.
pub const STREAM_CODE_BAD_SESSION_FRAME: u32 = 0x19;
/// Stream reset code: the client did not take answers within the write deadline.
pub const STREAM_CODE_SESSION_WRITE_TIMEOUT: u32 = 0x1a;

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
    _permit: Option<OwnedSemaphorePermit>,
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

/// Serves one session stream until the client finishes it, it fails, or the node stops:
/// every request read is answered (or the stream fails) before the stream is finished.
pub(crate) async fn serve_session(
    inputs: mpsc::Sender<Input>,
    peer: PeerIdentity,
    remote: SocketAddr,
    version: u16,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let (out, answers) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_answers(peer.clone(), remote, send, answers));
    if version != PROTOCOL_VERSION {
        warn!(%peer, %remote, version, ours = PROTOCOL_VERSION, "refused a session of another protocol version");
        refuse_session(
            &out,
            format!(
                "protocol version {version} is not spoken here (this node speaks {PROTOCOL_VERSION}); upgrade the older side"
            ),
        );
        let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_SESSION_FRAME));
    } else {
        read_requests(&inputs, &peer, remote, &out, &mut recv).await;
    }
    // The writer ends once every request read has been answered and taken.
    drop(out);
    let _ = writer.await;
}

/// Reads requests and queues them for the core, at most [`SESSION_IN_FLIGHT_MAX`] at a
/// time.
async fn read_requests(
    inputs: &mpsc::Sender<Input>,
    peer: &PeerIdentity,
    remote: SocketAddr,
    out: &mpsc::UnboundedSender<Answer>,
    recv: &mut quinn::RecvStream,
) {
    let slots = Arc::new(Semaphore::new(SESSION_IN_FLIGHT_MAX));
    let mut reader = FrameReader::new(FRAME_BYTES_MAX);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let frame = match reader.next(recv).await {
            Ok(Some(body)) => decode_body::<SessionRequest>(body),
            Ok(None) => {
                debug!(%peer, %remote, "session finished by the client");
                return;
            }
            Err(NetError::StreamRead { source }) => {
                debug!(%peer, %remote, error = %source, "session aborted");
                return;
            }
            Err(e) => Err(e),
        };
        let SessionRequest { id, request } = match frame {
            Ok(req) => req,
            Err(e) => {
                warn!(%peer, %remote, error = %e, "ending a session after a malformed frame");
                refuse_session(
                    out,
                    format!(
                        "{peer} sent a session frame this node cannot read ({e}); check that both sides run the same ringkv version"
                    ),
                );
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_SESSION_FRAME));
                return;
            }
        };
        let reply = ReplyTo::Session {
            id,
            out: out.clone(),
            permit,
        };
        if let Err(mpsc::error::SendError(input)) =
            inputs.send(Input::Client { request, reply }).await
        {
            if let Input::Client { reply, .. } = input {
                reply.refuse("the node is shutting down; retry on another node".into());
            }
            return;
        }
    }
}

/// Queues the answer that refuses the whole session.
fn refuse_session(out: &mpsc::UnboundedSender<Answer>, reason: String) {
    let _ = out.send(Answer {
        id: SESSION_ID_NONE,
        response: WireResponse::Refused(reason),
        _permit: None,
    });
}

/// Writes answers as they come, batching whatever is ready into one write; finishes the
/// stream when no more can come.
async fn write_answers(
    peer: PeerIdentity,
    remote: SocketAddr,
    mut send: quinn::SendStream,
    mut answers: mpsc::UnboundedReceiver<Answer>,
) {
    let mut buf = Vec::new();
    while let Some(first) = answers.recv().await {
        buf.clear();
        encode_answer(&mut buf, first, &peer);
        while buf.len() < SESSION_WRITE_BYTES_MAX {
            match answers.try_recv() {
                Ok(answer) => encode_answer(&mut buf, answer, &peer),
                Err(_) => break,
            }
        }
        let wait = Duration::from_millis(SESSION_WRITE_TIMEOUT_MS);
        match tokio::time::timeout(wait, send.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, %remote, error = %e, "session answers not delivered; the client went away");
                return;
            }
            Err(_) => {
                warn!(%peer, %remote, timeout_ms = SESSION_WRITE_TIMEOUT_MS, "a session's client took no answers in time; ending the session");
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_CODE_SESSION_WRITE_TIMEOUT));
                return;
            }
        }
    }
    // Already closed means the client went away; there is nothing left to tell it.
    let _ = send.finish();
}

/// Appends one answer's frame; an answer too large for a frame is replaced by a refusal
/// that says so, so the client's call ends instead of waiting for its deadline.
fn encode_answer(buf: &mut Vec<u8>, answer: Answer, peer: &PeerIdentity) {
    let Answer { id, response, .. } = answer;
    let framed = SessionResponse { id, response };
    if let Err(e) = encode_frame_into(buf, &framed, FRAME_BYTES_MAX) {
        warn!(%peer, id, error = %e, "cannot encode a session answer");
        let refusal = SessionResponse {
            id,
            response: WireResponse::Refused(format!(
                "the node cannot send its answer ({e}); ask for less at once"
            )),
        };
        if let Err(e) = encode_frame_into(buf, &refusal, FRAME_BYTES_MAX) {
            warn!(%peer, id, error = %e, "cannot encode a session refusal either");
        }
    }
}
