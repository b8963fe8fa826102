//! How an HTTP request reaches the core: the same input channel and the same wait as a
//! QUIC request stream ([`submit`]), so HTTP writes join the core loop's batches and
//! group commit like any other client's.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::placement::ring::NodeId;
use crate::net::driver::input::{Input, submit};
use crate::net::metrics::NodeMetrics;
use crate::net::{ConnectionPool, Identity};
use crate::proto::{ClientReply, ClientRequest, WireResponse};

use super::error::HttpError;

/// What every handler shares: the node's input channel and identity.
#[derive(Clone, Debug)]
pub(crate) struct Front {
    inputs: mpsc::Sender<Input>,
    /// The node's certificate, which `/v1/stats` presents to ask the other members.
    pub(crate) identity: Arc<Identity>,
    /// The node's name, for log lines.
    pub(crate) node: NodeId,
    /// The node's metrics, which `/metrics` renders and the server counts connections in.
    pub(crate) metrics: NodeMetrics,
    /// The node's own connections to its peers, on which `/v1/stats` asks them.
    pub(crate) pool: ConnectionPool,
}

impl Front {
    pub(crate) fn new(
        inputs: mpsc::Sender<Input>,
        identity: Arc<Identity>,
        node: NodeId,
        metrics: NodeMetrics,
        pool: ConnectionPool,
    ) -> Front {
        Front {
            inputs,
            identity,
            node,
            metrics,
            pool,
        }
    }

    /// Hands `request` to the core and waits for its reply; an error reply becomes
    /// [`HttpError::Request`], so `Ok` is always a successful answer.
    pub(crate) async fn call(&self, request: ClientRequest) -> Result<ClientReply, HttpError> {
        match submit(&self.inputs, request).await {
            WireResponse::Client(ClientReply::Error(e)) => Err(HttpError::Request(e)),
            WireResponse::Client(reply) => Ok(reply),
            WireResponse::Refused(reason) => Err(HttpError::Unavailable(reason)),
            WireResponse::PeerAccepted => Err(HttpError::Internal(
                "the node answered a client request with a peer acknowledgement".into(),
            )),
        }
    }
}
