//! The client's half of a session: every call of a [`super::Client`] (and of its clones)
//! goes out on one long-lived QUIC stream, and answers come back on it by request id.
//!
//! Why: a stream per call cost a stream opened, a frame written on its own and a
//! response read on its own for every request, on both sides of the connection; at
//! dozens of requests in flight the kernel's wake-ups and context switches were the
//! largest cost (docs/BENCHMARKS.md, "client sessions"). Here callers queue their
//! requests to one writer task, which encodes whatever is queued into one buffer and one
//! write; one reader task hands each answer to the call waiting for its id.
//!
//! A session ends when its stream or connection fails, when the node finishes it (it is
//! shutting down), or when the node refuses it. Every call still waiting then fails at
//! once with the reason, instead of waiting for its deadline; a call that had not been
//! queued yet gets its request back, so the client can resend it on a fresh session
//! without any risk of applying it twice. The next call opens a new session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::net::transport::batch_writer::{
    BatchLimits, BatchSink, Ended, Flow, Queue, WriteFailure, write_batches,
};
use crate::net::{
    ConnectionPool, FRAME_BYTES_MAX, FrameReader, NetError, decode_body, encode_frame,
    encode_frame_into,
};
use crate::proto::{
    ClientRequest, SESSION_ID_NONE, SessionRequest, SessionResponse, WireBody, WireRequest,
    WireResponse,
};

/// Requests queued for the session's writer; callers wait when it is full.
pub const SESSION_QUEUE_MAX: usize = 1_024;
/// Calls waiting for their answers on one session; further callers wait for a slot.
pub const SESSION_CALLS_MAX: usize = 65_536;
/// Encoded requests gathered into one write; a longer backlog goes out in several.
pub const SESSION_WRITE_BYTES_MAX: usize = 256 * 1024;
/// Deadline for one write of requests; a node that takes nothing for this long ends the
/// session.
pub const SESSION_WRITE_TIMEOUT_MS: u64 = 10_000;

/// Stream stop code: the node sent an answer this client cannot read.
pub const STREAM_CODE_BAD_ANSWER: u32 = 0x1b;
/// Stream reset code: the node took no requests within the write deadline.
pub const STREAM_CODE_REQUESTS_TIMEOUT: u32 = 0x1c;

/// The live session of a client and its clones, opened on first use and again after one
/// ends.
#[derive(Debug, Default)]
pub(crate) struct SessionSlot {
    current: Mutex<Option<Session>>,
    /// Held while a session is being opened, so concurrent callers open only one.
    opening: tokio::sync::Mutex<()>,
}

/// A handle on one session; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    queue: mpsc::Sender<SessionRequest>,
    shared: Arc<Shared>,
}

/// Why a call on a session did not get an answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Nothing was sent (the session had ended, or none could be opened on a connection
    /// found dead): the request, to resend it on a fresh session, and why.
    NotSent {
        request: Box<ClientRequest>,
        reason: NetError,
    },
    /// The request may have reached the node; the session or the frame failed.
    Failed(NetError),
}

/// What the session's caller side, writer and reader share.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    calls: Mutex<Calls>,
    slots: Semaphore,
}

#[derive(Debug, Default)]
struct Calls {
    waiting: HashMap<u64, oneshot::Sender<Result<WireResponse, NetError>>>,
    next_id: u64,
    /// Why the session ended; `None` while it lives.
    ended: Option<String>,
}

/// Removes a call's entry when its caller stops waiting (its deadline passed), so a late
/// answer is dropped and the map does not grow.
struct Waiting<'a> {
    shared: &'a Shared,
    id: u64,
}

/// The stream side of a session's writer.
struct RequestStream {
    shared: Arc<Shared>,
    send: quinn::SendStream,
}

impl SessionSlot {
    /// The live session, opening one if there is none or the last one ended.
    pub(crate) async fn get(
        &self,
        pool: &ConnectionPool,
        addr: SocketAddr,
    ) -> Result<Session, NetError> {
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let _opening = self.opening.lock().await;
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let session = Session::open(pool, addr).await?;
        *lock(&self.current) = Some(session.clone());
        Ok(session)
    }

    /// True while the slot holds a session that has not ended.
    pub(crate) fn is_live(&self) -> bool {
        self.live().is_some()
    }

    fn live(&self) -> Option<Session> {
        lock(&self.current)
            .as_ref()
            .filter(|s| !s.shared.has_ended())
            .cloned()
    }
}

impl Session {
    /// Opens a session stream on the pooled connection to `addr` and starts its writer
    /// and reader.
    async fn open(pool: &ConnectionPool, addr: SocketAddr) -> Result<Session, NetError> {
        let conn = pool.get(addr).await?;
        let (mut send, recv) = match conn.open_bi().await {
            Ok(pair) => pair,
            Err(source) => {
                pool.evict(addr);
                return Err(NetError::ConnectionLost { addr, source });
            }
        };
        let opening = encode_frame(&WireRequest::new(WireBody::Session), FRAME_BYTES_MAX)?;
        if let Err(source) = send.write_all(&opening).await {
            if conn.close_reason().is_some() {
                pool.evict(addr);
            }
            return Err(NetError::StreamWrite { source });
        }
        let shared = Arc::new(Shared {
            addr,
            calls: Mutex::new(Calls::default()),
            slots: Semaphore::new(SESSION_CALLS_MAX),
        });
        let (queue, requests) = mpsc::channel(SESSION_QUEUE_MAX);
        tokio::spawn(write_requests(shared.clone(), send, requests));
        tokio::spawn(read_answers(shared.clone(), pool.clone(), recv));
        Ok(Session { queue, shared })
    }

    /// Sends one request and waits for its answer (the caller bounds the wait).
    pub(crate) async fn call(&self, request: ClientRequest) -> Result<WireResponse, CallError> {
        let Ok(_slot) = self.shared.slots.acquire().await else {
            return Err(self.not_sent(request));
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut calls = self.shared.lock();
            if calls.ended.is_some() {
                drop(calls);
                return Err(self.not_sent(request));
            }
            calls.next_id += 1;
            let id = calls.next_id;
            calls.waiting.insert(id, tx);
            id
        };
        let _waiting = Waiting {
            shared: &self.shared,
            id,
        };
        if let Err(mpsc::error::SendError(unsent)) =
            self.queue.send(SessionRequest { id, request }).await
        {
            return Err(self.not_sent(unsent.request));
        }
        match rx.await {
            Ok(answer) => answer.map_err(CallError::Failed),
            Err(_) => Err(CallError::Failed(self.shared.ended_error())),
        }
    }

    fn not_sent(&self, request: ClientRequest) -> CallError {
        CallError::NotSent {
            request: Box::new(request),
            reason: self.shared.ended_error(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        lock(&self.calls)
    }

    fn has_ended(&self) -> bool {
        self.lock().ended.is_some()
    }

    /// Hands an answer to the call waiting for it, if it still waits.
    fn answer(&self, id: u64, response: WireResponse) {
        let waiting = self.lock().waiting.remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(Ok(response));
        }
    }

    /// Fails one call whose request could not be sent.
    fn fail(&self, id: u64, err: NetError) {
        let waiting = self.lock().waiting.remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(Err(err));
        }
    }

    /// Ends the session: every call still waiting gets `answer_of(reason)`.
    fn end(&self, reason: String, refused: bool) {
        let waiting = {
            let mut calls = self.lock();
            if calls.ended.is_none() {
                calls.ended = Some(reason.clone());
            }
            std::mem::take(&mut calls.waiting)
        };
        for (_, tx) in waiting {
            let answer = if refused {
                Ok(WireResponse::Refused(reason.clone()))
            } else {
                Err(NetError::SessionEnded {
                    addr: self.addr,
                    reason: reason.clone(),
                })
            };
            let _ = tx.send(answer);
        }
    }

    fn ended_error(&self) -> NetError {
        let reason = self
            .lock()
            .ended
            .clone()
            .unwrap_or_else(|| "its tasks stopped".into());
        NetError::SessionEnded {
            addr: self.addr,
            reason,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiting.remove(&self.id);
    }
}

impl BatchSink<SessionRequest> for RequestStream {
    type Error = quinn::WriteError;

    /// Appends one request's frame; one that cannot be framed fails its own call only.
    fn encode(&mut self, batch: &mut Vec<u8>, request: SessionRequest) {
        if let Err(e) = encode_frame_into(batch, &request, FRAME_BYTES_MAX) {
            self.shared.fail(request.id, e);
        }
    }

    async fn write(&mut self, batch: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(batch).await
    }

    /// A failed or late write ends the session: every call still waiting fails at once.
    fn failed<Q: Queue<Item = SessionRequest>>(
        &mut self,
        failure: WriteFailure<quinn::WriteError>,
        _queue: &mut Q,
    ) -> Flow {
        match failure {
            WriteFailure::Failed(e) => {
                self.shared
                    .end(format!("sending requests failed: {e}"), false);
            }
            WriteFailure::TimedOut => {
                let _ = self
                    .send
                    .reset(quinn::VarInt::from_u32(STREAM_CODE_REQUESTS_TIMEOUT));
                self.shared.end(
                    format!(
                        "the node took no requests for {SESSION_WRITE_TIMEOUT_MS} ms; it may be overloaded"
                    ),
                    false,
                );
            }
        }
        Flow::Stop
    }
}

/// Encodes queued requests, batching whatever is queued into one write; finishes the
/// stream once every handle on the session is gone.
async fn write_requests(
    shared: Arc<Shared>,
    send: quinn::SendStream,
    mut requests: mpsc::Receiver<SessionRequest>,
) {
    let limits = BatchLimits {
        bytes_max: SESSION_WRITE_BYTES_MAX,
        write_timeout_ms: SESSION_WRITE_TIMEOUT_MS,
    };
    let mut sink = RequestStream { shared, send };
    if write_batches(&mut requests, &mut sink, limits).await == Ended::Drained {
        // Every handle is gone: tell the node no more requests come.
        let _ = sink.send.finish();
    }
}

/// Hands each answer to its call until the session ends, then fails whatever still waits.
async fn read_answers(shared: Arc<Shared>, pool: ConnectionPool, mut recv: quinn::RecvStream) {
    let mut reader = FrameReader::new(FRAME_BYTES_MAX);
    let (reason, refused) = loop {
        let body = match reader.next(&mut recv).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                break (
                    "the node finished the session (it is shutting down)".into(),
                    false,
                );
            }
            Err(e) => {
                if e.is_connection_lost() {
                    pool.evict(shared.addr);
                }
                break (e.to_string(), false);
            }
        };
        match decode_body::<SessionResponse>(body) {
            Ok(SessionResponse {
                id: SESSION_ID_NONE,
                response,
            }) => {
                let reason = match response {
                    WireResponse::Refused(reason) => reason,
                    other => format!("the node answered no request with {other:?}"),
                };
                break (reason, true);
            }
            Ok(SessionResponse { id, response }) => shared.answer(id, response),
            Err(e) => {
                // A node of an older protocol answers the opening frame with one plain
                // refusal, as it would any frame it cannot read.
                if let Ok(WireResponse::Refused(reason)) = decode_body::<WireResponse>(body) {
                    break (reason, true);
                }
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_ANSWER));
                break (
                    format!(
                        "the node sent an answer this client cannot read ({e}); run the same ringkv version on both sides"
                    ),
                    false,
                );
            }
        }
    };
    shared.end(reason, refused);
}

/// The lock of state that holds only maps and flags: a panic elsewhere cannot leave it
/// half-updated, so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
