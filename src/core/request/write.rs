//! A write this node coordinates: applied locally, replicated as the resulting object,
//! answered after W acks.

use crate::core::object::{Object, ReadValue};
use crate::core::placement::quorum::{Outcome, Quorum};
use crate::core::placement::ring::{NodeId, Target};
use crate::core::request::Origin;
use crate::proto::{ClientReply, Key, RequestError};

/// A write waiting for its acks.
#[derive(Debug)]
pub(crate) struct WriteState {
    pub(crate) origin: Origin,
    pub(crate) key: Key,
    pub(crate) op_name: &'static str,
    pub(crate) quorum: Quorum,
    /// Every node asked, with the primary a stand-in holds a hint for.
    pub(crate) targets: Vec<Target>,
    /// What was replicated, to send again to a replica that stays silent.
    pub(crate) object: Object,
    /// What the client gets when the quorum is met.
    pub(crate) value: ReadValue,
    pub(crate) warning: Option<String>,
}

impl WriteState {
    /// Counts an ack or a refusal from `from`; true when it counted (not a duplicate).
    pub(crate) fn on_ack(&mut self, from: &NodeId, error: Option<String>) -> bool {
        match error {
            None => self.quorum.ack(from),
            Some(e) => self.quorum.fail(from, e),
        }
    }

    /// The answer once the quorum is met or can no longer be; None while it may still be.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match self.quorum.outcome() {
            Outcome::Pending => None,
            done => Some(done),
        }
    }

    /// The client's answer for a decided write.
    pub(crate) fn into_reply(self, outcome: Outcome) -> (Origin, ClientReply) {
        let reply = if outcome == Outcome::Met {
            ClientReply::Written {
                value: self.value,
                warning: self.warning,
            }
        } else {
            self.failure()
        };
        (self.origin, reply)
    }

    /// The failure a write that ran out of time answers, naming who acked and who not.
    pub(crate) fn failure(&self) -> ClientReply {
        let failure = self.quorum.failure(self.op_name, self.key.to_string());
        ClientReply::Error(RequestError::QuorumFailed(Box::new(failure)))
    }
}
