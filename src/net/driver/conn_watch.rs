//! Noticing a dead peer without having to send it anything.
//!
//! A peer that dies without closing (a crash, a `kill -9`, a cut cable) is only noticed
//! by QUIC's idle timeout (`IDLE_TIMEOUT_MS`, with keep-alives on every connection). A
//! write to such a connection succeeds until then (it is only buffered), so waiting for a
//! write to fail would notice the death one timeout *plus* one message late, and not at
//! all while nothing is sent. Every node connection therefore gets a watcher: when it
//! ends because the peer went silent (`TimedOut`) or no longer knows it (`Reset`, a
//! restarted peer's stateless reset), the core hears `Unreachable(peer)` at once and
//! suspects the peer (`Node::handle_unreachable`). Closes either side chose (a clean
//! shutdown, a superseded or evicted connection) are not reported: the server already
//! reports a restart itself, and a clean stop is told by gossip.

use tokio::sync::mpsc;

use crate::core::placement::ring::NodeId;
use crate::net::driver::input::Input;

/// True when a connection ended because the peer stopped answering, or answered with a
/// stateless reset: what a crashed or restarted peer looks like.
pub(crate) fn peer_lost(reason: &quinn::ConnectionError) -> bool {
    matches!(
        reason,
        quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset
    )
}

/// Reports `peer` unreachable to the core once `conn` ends because the peer is lost.
/// One task per connection, ending with it.
pub(crate) fn watch(peer: NodeId, conn: quinn::Connection, inputs: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let reason = conn.closed().await;
        if peer_lost(&reason) {
            tracing::debug!(%peer, %reason, "connection to a peer lost; reporting it unreachable");
            // Waits for room rather than drop the report: the input queue is bounded
            // and the core drains it continuously.
            let _ = inputs.send(Input::Unreachable(peer)).await;
        }
    });
}
