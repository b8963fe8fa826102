//! The node's half of a client session: many client requests on one long-lived stream,
//! answered out of order, in batches.
//!
//! Why: with one QUIC stream per client request, every request cost a stream opened and
//! accepted, a spawned task, a oneshot wake-up and a response frame written on its own,
//! on both sides, and in the profile of the durable 3-node put the kernel's context
//! switches and wake-ups were among the largest costs (docs/BENCHMARKS.md, "client
//! sessions"). A session is one bidirectional stream: a reader loop feeds
//! [`SessionRequest`]s to the core, and one writer task drains every answer that is
//! ready into one buffer and one write ([`crate::net::transport::batch_writer`]), as
//! peer streams ([`super::peer_link`]) do for node-to-node messages.
//!
//! Bounds: a session has at most [`SESSION_IN_FLIGHT_MAX`] requests in the node at once;
//! beyond it the reader stops reading, so QUIC flow control pushes back on the client.
//! A malformed frame gets a `Refused` answer with `SESSION_ID_NONE` and ends the
//! session; the connection and the node keep serving. Roles are the driver's business as
//! on request streams: a session carries client requests only, which any certificate of
//! the cluster may send.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::net::driver::input::{Answer, Input, ReplyTo};
use crate::net::transport::batch_writer::{
    BatchLimits, BatchSink, Ended, Flow, Queue, WriteFailure, write_batches,
};
use crate::net::{
    FRAME_BYTES_MAX, FrameReader, NetError, PeerIdentity, decode_body, encode_frame_into,
};
use crate::proto::{PROTOCOL_VERSION, SessionRequest, SessionResponse, WireResponse};

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

/// The stream side of a session's writer.
struct AnswerStream {
    peer: PeerIdentity,
    remote: SocketAddr,
    send: quinn::SendStream,
}

impl BatchSink<Answer> for AnswerStream {
    type Error = quinn::WriteError;

    fn encode(&mut self, batch: &mut Vec<u8>, answer: Answer) {
        encode_answer(batch, answer, &self.peer);
    }

    async fn write(&mut self, batch: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(batch).await
    }

    /// A client that fails a write went away; one that takes nothing in time loses its
    /// session. Either way the writer ends.
    fn failed<Q: Queue<Item = Answer>>(
        &mut self,
        failure: WriteFailure<quinn::WriteError>,
        _queue: &mut Q,
    ) -> Flow {
        let (peer, remote) = (&self.peer, self.remote);
        match failure {
            WriteFailure::Failed(e) => {
                debug!(%peer, %remote, error = %e, "session answers not delivered; the client went away");
            }
            WriteFailure::TimedOut => {
                warn!(%peer, %remote, timeout_ms = SESSION_WRITE_TIMEOUT_MS, "a session's client took no answers in time; ending the session");
                let _ = self
                    .send
                    .reset(quinn::VarInt::from_u32(STREAM_CODE_SESSION_WRITE_TIMEOUT));
            }
        }
        Flow::Stop
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
    let _ = out.send(Answer::refuse_session(reason));
}

/// Writes answers as they come, batching whatever is ready into one write; finishes the
/// stream when no more can come.
async fn write_answers(
    peer: PeerIdentity,
    remote: SocketAddr,
    send: quinn::SendStream,
    mut answers: mpsc::UnboundedReceiver<Answer>,
) {
    let limits = BatchLimits {
        bytes_max: SESSION_WRITE_BYTES_MAX,
        write_timeout_ms: SESSION_WRITE_TIMEOUT_MS,
    };
    let mut sink = AnswerStream { peer, remote, send };
    if write_batches(&mut answers, &mut sink, limits).await == Ended::Drained {
        // Already closed means the client went away; there is nothing left to tell it.
        let _ = sink.send.finish();
    }
}

/// Appends one answer's frame; an answer too large for a frame is replaced by a refusal
/// that says so, so the client's call ends instead of waiting for its deadline.
fn encode_answer(buf: &mut Vec<u8>, answer: Answer, peer: &PeerIdentity) {
    let (id, response) = answer.into_parts();
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
