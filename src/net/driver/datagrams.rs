//! Gossip datagrams, both ways: SWIM's packets ride QUIC datagrams on the same
//! authenticated connections as everything else.
//!
//! Gossip is lossy by design, so neither side ever waits: a sender drops a datagram when
//! too many are under way (a stuck dial must not stall the core), and a reader drops one
//! when the core's queue is full. Only node certificates may gossip; the core checks each
//! packet's claimed sender against the certificate's name carried in the input.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::core::placement::ring::NodeId;
use crate::net::driver::input::Input;
use crate::net::{ConnectionPool, PeerIdentity, Role};

/// Gossip datagrams being sent at once; beyond it they are dropped (SWIM tolerates loss).
pub const DATAGRAMS_INFLIGHT_MAX: usize = 1_024;
/// Largest gossip datagram read from a peer; bigger ones are dropped unread by the core.
pub const DATAGRAM_BYTES_MAX: usize = crate::core::membership::gossip::GOSSIP_PACKET_BYTES_MAX;

/// Sends gossip datagrams (peer messages go through the peer links).
#[derive(Clone, Debug)]
pub(crate) struct DatagramSender {
    me: NodeId,
    pool: ConnectionPool,
    slots: Arc<Semaphore>,
}

impl DatagramSender {
    pub(crate) fn new(me: NodeId, pool: ConnectionPool) -> DatagramSender {
        DatagramSender {
            me,
            pool,
            slots: Arc::new(Semaphore::new(DATAGRAMS_INFLIGHT_MAX)),
        }
    }

    /// Sends one gossip datagram in the background, or drops it when too many are under
    /// way (SWIM tolerates loss; a stuck dial must not stall the core).
    pub(crate) fn send(&self, addr: SocketAddr, data: Vec<u8>) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        let pool = self.pool.clone();
        let me = self.me.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let sent = match pool.get(addr).await {
                Ok(conn) => conn.send_datagram(data.into()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::trace!(node = %me, %addr, error = %e, "gossip datagram not sent");
            }
        });
    }
}

/// Feeds the gossip datagrams of a node's connection to the core for as long as the
/// connection lives; a client's connection may not gossip.
pub(crate) fn read_datagrams(
    peer: &PeerIdentity,
    conn: &quinn::Connection,
    inputs: mpsc::Sender<Input>,
) {
    if peer.role != Role::Node {
        return;
    }
    let from = NodeId::new(peer.name.clone());
    let conn = conn.clone();
    tokio::spawn(async move {
        while let Ok(bytes) = conn.read_datagram().await {
            if bytes.len() > DATAGRAM_BYTES_MAX {
                tracing::debug!(%from, len = bytes.len(), "oversized gossip datagram dropped");
                continue;
            }
            let input = Input::Datagram {
                from: from.clone(),
                data: bytes.to_vec(),
            };
            // Gossip is lossy by design: never block the reader on a full queue.
            if let Err(mpsc::error::TrySendError::Closed(_)) = inputs.try_send(input) {
                break;
            }
        }
    });
}
