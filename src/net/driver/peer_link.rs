//! Node-to-node messages on one long-lived stream per peer, batched.
//!
//! Why: a request/response stream per peer message cost a dozen `sendmsg` calls per client
//! request, a spawned task on both sides and a response frame that carried nothing the
//! core used (docs/BENCHMARKS.md, "Where the time goes"). Here each destination has one
//! task that drains a bounded queue, encodes whatever is queued into one reused buffer and
//! hands it to one QUIC unidirectional stream in a single write; the receiver reads frames
//! off the stream in a loop, through one reused buffer, and feeds the core's input queue.
//!
//! There is no per-message response: the core's own acks (`ReplicateAck`, `ReadReply`,
//! ...) are the application-level answer, and a delivery failure shows as the stream or
//! the connection erroring, which the link reports to the core as `Unreachable(node)`,
//! as the per-message path did. Messages still queued for a peer that just failed are
//! dropped with it: the core suspects the peer and routes around it.
//!
//! One exception: when the server sees a peer restart it closes the pooled connection to
//! the peer's previous process and reports the peer unreachable itself
//! (`server.rs`, `Server::connected`). A link whose stream rode on that connection finds
//! it closed by this node before its next write and opens a new stream on a new
//! connection for what is queued, instead of failing it: what it had written to the dead
//! process is what the server's report covers.
//!
//! Security is the same as on request streams: a peer stream is accepted only on a
//! connection whose certificate is a node's ([`Role::Node`]), its first frame (a
//! [`PeerStreamHeader`]) must name that same node, frames are bounded by
//! [`FRAME_BYTES_MAX`], and malformed input gets a log line and a stopped stream, never a
//! panic; the connection and the node keep serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::core::placement::ring::{MEMBERS_MAX, NodeId};
use crate::net::driver::conn_watch;
use crate::net::driver::input::Input;
use crate::net::transport::batch_writer::{
    BatchLimits, BatchSink, Flow, Queue, WriteFailure, write_batches,
};
use crate::net::{
    ConnectionPool, FRAME_BYTES_MAX, FrameReader, NetError, PeerIdentity, Role, decode_body,
    encode_frame_into,
};
use crate::proto::{PROTOCOL_VERSION, PeerMessage, PeerStreamHeader};

/// Messages queued for one peer; beyond it the core waits up to [`PEER_QUEUE_WAIT_MS`].
pub const PEER_QUEUE_MAX: usize = 4_096;
/// How long the core waits for room in a full peer queue before it counts the peer as
/// unreachable: backpressure from a slow peer, bounded so a dead one cannot stall it.
pub const PEER_QUEUE_WAIT_MS: u64 = 1_000;
/// Encoded bytes gathered into one write; a longer backlog goes out in several.
pub const PEER_WRITE_BYTES_MAX: usize = 256 * 1024;
/// Deadline for one write (dialling and opening the stream included).
pub const PEER_WRITE_TIMEOUT_MS: u64 = 2_000;
/// How long a closing link waits for the peer to acknowledge the end of its stream.
pub const PEER_CLOSE_WAIT_MS: u64 = 2_000;
/// Deadline for a new peer stream's header frame.
pub const PEER_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Links (one per destination) kept at most; idle ones are dropped beyond it (each peer
/// may open at most [`crate::net::transport::tls::UNI_STREAMS_CONCURRENT_MAX`] streams on
/// a connection).
pub const PEER_LINKS_MAX: usize = MEMBERS_MAX * 2;

/// Stream stop code: a client certificate tried to open a peer stream.
pub const STREAM_CODE_NOT_A_NODE: u32 = 0x14;
/// Stream stop code: the header named another node, or another protocol version.
pub const STREAM_CODE_BAD_HEADER: u32 = 0x15;
/// Stream stop code: a frame on a peer stream was oversized, cut short or not a message.
pub const STREAM_CODE_BAD_PEER_FRAME: u32 = 0x16;
/// Stream reset code: the sender gave up on a stream after a failed write.
pub const STREAM_CODE_ABANDONED: u32 = 0x17;

/// The sending side: one queue and one task per destination node, owned by the core task.
#[derive(Debug)]
pub(crate) struct PeerLinks {
    me: NodeId,
    pool: ConnectionPool,
    inputs: mpsc::Sender<Input>,
    links: HashMap<NodeId, Link>,
}

#[derive(Debug)]
struct Link {
    addr: SocketAddr,
    queue: mpsc::Sender<PeerMessage>,
    task: JoinHandle<()>,
}

/// One destination's writer: its queue, batched into its stream.
struct LinkTask {
    queue: mpsc::Receiver<PeerMessage>,
    stream: LinkStream,
}

/// The stream side of one destination's writer, opened on first use and again after a
/// failure.
struct LinkStream {
    me: NodeId,
    to: NodeId,
    addr: SocketAddr,
    pool: ConnectionPool,
    inputs: mpsc::Sender<Input>,
    /// The open stream and the connection it rides on.
    stream: Option<(quinn::Connection, quinn::SendStream)>,
    /// The connection last given a watcher (`conn_watch`), by its stable id.
    watched: Option<usize>,
}

impl PeerLinks {
    pub(crate) fn new(me: NodeId, pool: ConnectionPool, inputs: mpsc::Sender<Input>) -> PeerLinks {
        PeerLinks {
            me,
            pool,
            inputs,
            links: HashMap::new(),
        }
    }

    /// Queues `msg` for `to` at `addr`; false when it could not be queued (the link is
    /// gone or stayed full for [`PEER_QUEUE_WAIT_MS`]), which the core treats as the
    /// peer being unreachable.
    pub(crate) async fn send(&mut self, to: NodeId, addr: SocketAddr, msg: PeerMessage) -> bool {
        let queue = self.link(to, addr);
        match queue.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let wait = Duration::from_millis(PEER_QUEUE_WAIT_MS);
                matches!(
                    tokio::time::timeout(wait, queue.send(msg)).await,
                    Ok(Ok(()))
                )
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes every link: each writes what it has queued, finishes its stream and waits
    /// for the peer's acknowledgement, all within `wait_ms` in total.
    pub(crate) async fn close(self, wait_ms: u64) {
        let tasks: Vec<JoinHandle<()>> = self.links.into_values().map(|l| l.task).collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(wait_ms), all).await;
    }

    /// The queue of the live link to `to` at `addr`, starting one if needed.
    fn link(&mut self, to: NodeId, addr: SocketAddr) -> mpsc::Sender<PeerMessage> {
        if let Some(link) = self.links.get(&to) {
            if link.addr == addr && !link.task.is_finished() {
                return link.queue.clone();
            }
        }
        if self.links.len() >= PEER_LINKS_MAX {
            // Links of departed members linger; an idle link costs only a parked task.
            self.links
                .retain(|_, l| l.queue.capacity() < l.queue.max_capacity());
        }
        let (queue, rx) = mpsc::channel(PEER_QUEUE_MAX);
        let task = LinkTask {
            queue: rx,
            stream: LinkStream {
                me: self.me.clone(),
                to: to.clone(),
                addr,
                pool: self.pool.clone(),
                inputs: self.inputs.clone(),
                stream: None,
                watched: None,
            },
        };
        let task = tokio::spawn(task.run());
        // Replacing a link (its member moved) drops the old queue: the old task finishes
        // its stream and ends.
        self.links.insert(
            to,
            Link {
                addr,
                queue: queue.clone(),
                task,
            },
        );
        queue
    }
}

impl LinkTask {
    async fn run(mut self) {
        let limits = BatchLimits {
            bytes_max: PEER_WRITE_BYTES_MAX,
            write_timeout_ms: PEER_WRITE_TIMEOUT_MS,
        };
        write_batches(&mut self.queue, &mut self.stream, limits).await;
        self.stream.finish().await;
    }
}

impl LinkStream {
    async fn open(&mut self) -> Result<(quinn::Connection, quinn::SendStream), NetError> {
        let addr = self.addr;
        let conn = self.pool.get(addr).await?;
        if self.watched != Some(conn.stable_id()) {
            // Streams reopen on the same pooled connection: one watcher per connection.
            self.watched = Some(conn.stable_id());
            conn_watch::watch(self.to.clone(), conn.clone(), self.inputs.clone());
        }
        let mut stream = conn
            .open_uni()
            .await
            .map_err(|source| NetError::ConnectionLost { addr, source })?;
        let mut header = Vec::new();
        encode_frame_into(
            &mut header,
            &PeerStreamHeader::new(self.me.clone()),
            FRAME_BYTES_MAX,
        )?;
        stream
            .write_all(&header)
            .await
            .map_err(|source| NetError::StreamWrite { source })?;
        Ok((conn, stream))
    }

    async fn finish(&mut self) {
        if let Some((_, mut stream)) = self.stream.take() {
            if stream.finish().is_ok() {
                let wait = Duration::from_millis(PEER_CLOSE_WAIT_MS);
                let _ = tokio::time::timeout(wait, stream.stopped()).await;
            }
        }
    }
}

impl BatchSink<PeerMessage> for LinkStream {
    type Error = NetError;

    fn encode(&mut self, batch: &mut Vec<u8>, msg: PeerMessage) {
        if let Err(e) = encode_frame_into(batch, &msg, FRAME_BYTES_MAX) {
            warn!(node = %self.me, to = %self.to, error = %e, "a peer message cannot be encoded; dropped");
            let _ = self.inputs.try_send(Input::Unreachable(self.to.clone()));
        }
    }

    /// Writes a batch to the stream, opening the connection and stream if needed.
    async fn write(&mut self, batch: &[u8]) -> Result<(), NetError> {
        let closed_here = self.stream.as_ref().is_some_and(|(conn, _)| {
            matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::LocallyClosed)
            )
        });
        if closed_here {
            // This node closed the connection under the stream (the peer restarted, see
            // the module docs): not a delivery failure of this batch, which goes out on a
            // new connection.
            debug!(node = %self.me, to = %self.to, addr = %self.addr, "connection closed here; reopening the peer stream");
            self.stream = None;
        }
        if self.stream.is_none() {
            self.stream = Some(self.open().await?);
        }
        let Some((_, stream)) = self.stream.as_mut() else {
            return Err(NetError::StreamClosed);
        };
        stream
            .write_all(batch)
            .await
            .map_err(|source| NetError::StreamWrite { source })
    }

    /// The stream failed: abandon it, drop what is queued and tell the core once.
    fn failed<Q: Queue<Item = PeerMessage>>(
        &mut self,
        failure: WriteFailure<NetError>,
        queue: &mut Q,
    ) -> Flow {
        let err = match failure {
            WriteFailure::Failed(e) => e,
            WriteFailure::TimedOut => NetError::Timeout {
                what: "writing peer messages to",
                addr: self.addr,
                timeout_ms: PEER_WRITE_TIMEOUT_MS,
            },
        };
        if let Some((_, mut stream)) = self.stream.take() {
            let _ = stream.reset(quinn::VarInt::from_u32(STREAM_CODE_ABANDONED));
        }
        if err.is_connection_lost() {
            self.pool.evict(self.addr);
        }
        let mut dropped = 0usize;
        while queue.try_recv().is_some() {
            dropped += 1;
        }
        debug!(node = %self.me, to = %self.to, addr = %self.addr, error = %err, dropped, "peer unreachable");
        let _ = self.inputs.try_send(Input::Unreachable(self.to.clone()));
        Flow::Continue
    }
}

/// Serves the peer streams a connection opens, for as long as it lives: read and
/// forwarded to the core when the certificate is a node's, refused otherwise.
pub(crate) fn accept_peer_streams(
    peer: PeerIdentity,
    conn: quinn::Connection,
    inputs: mpsc::Sender<Input>,
) {
    tokio::spawn(async move {
        while let Ok(mut recv) = conn.accept_uni().await {
            if peer.role != Role::Node {
                warn!(%peer, "refused a peer stream from a client certificate");
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_NOT_A_NODE));
                continue;
            }
            tokio::spawn(read_peer_stream(peer.clone(), recv, inputs.clone()));
        }
    });
}

async fn read_peer_stream(
    peer: PeerIdentity,
    mut recv: quinn::RecvStream,
    inputs: mpsc::Sender<Input>,
) {
    let mut reader = FrameReader::new(FRAME_BYTES_MAX);
    let wait = Duration::from_millis(PEER_HEADER_TIMEOUT_MS);
    let header = match tokio::time::timeout(wait, reader.next(&mut recv)).await {
        Ok(Ok(Some(body))) => decode_body::<PeerStreamHeader>(body),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(e),
        Err(_) => {
            warn!(%peer, timeout_ms = PEER_HEADER_TIMEOUT_MS, "a peer stream sent no header in time");
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_HEADER));
            return;
        }
    };
    let from = match header {
        Ok(h) if h.version != PROTOCOL_VERSION => {
            warn!(%peer, version = h.version, ours = PROTOCOL_VERSION, "refused a peer stream of another protocol version; upgrade the older node");
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_HEADER));
            return;
        }
        Ok(h) if h.from.as_str() != peer.name => {
            warn!(%peer, claimed = %h.from, "refused a peer stream under another node's name");
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_HEADER));
            return;
        }
        Ok(h) => h.from,
        Err(e) => {
            warn!(%peer, error = %e, "refused a peer stream with a malformed header");
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_HEADER));
            return;
        }
    };
    loop {
        let msg = match reader.next(&mut recv).await {
            Ok(Some(body)) => decode_body::<PeerMessage>(body),
            Ok(None) => {
                debug!(%peer, "peer stream finished");
                return;
            }
            Err(NetError::StreamRead { source }) => {
                debug!(%peer, error = %source, "peer stream aborted");
                return;
            }
            Err(e) => Err(e),
        };
        match msg {
            Ok(msg) => {
                let input = Input::Peer {
                    from: from.clone(),
                    msg,
                };
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing a peer stream after a malformed frame");
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_CODE_BAD_PEER_FRAME));
                return;
            }
        }
    }
}
