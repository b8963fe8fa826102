//! The label values of request metrics, read off the requests and replies the driver
//! already carries: every value is a `&'static str` from a closed set, so a node's series
//! are bounded whatever its clients send.

use crate::core::object::{Op, Policy, ReadValue};
use crate::proto::{ClientReply, ClientRequest, PeerMessage, RequestError};

/// The `policy` label when neither the request nor its answer names one (a delete of a
/// missing key, a membership request).
pub const POLICY_NONE: &str = "none";

/// `role` of a request a client sent to this node (coordinated here or forwarded).
pub const ROLE_COORDINATOR: &str = "coordinator";
/// `role` of a request this node coordinated for the peer that forwarded it.
pub const ROLE_FORWARDED: &str = "forwarded";
/// `role` of a peer's read or replicate served by this node's replica.
pub const ROLE_REPLICA: &str = "replica";

/// What the driver remembers of a client request until its reply leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLabels {
    /// The operation: get, put, delete, counter_add, ..., status, stats.
    pub op: &'static str,
    /// The policy the request names, if any; the reply's value may name it instead.
    pub policy: Option<&'static str>,
}

impl RequestLabels {
    /// The labels of a client request as it enters the node.
    pub fn of_request(request: &ClientRequest) -> RequestLabels {
        let (op, policy) = match request {
            ClientRequest::Get { .. } => ("get", None),
            ClientRequest::Write { op, .. } => (op_name(op), op.policy()),
            ClientRequest::Status => ("status", None),
            ClientRequest::Ring => ("ring", None),
            ClientRequest::Join { .. } => ("join", None),
            ClientRequest::Leave => ("leave", None),
            ClientRequest::Stats => ("stats", None),
            ClientRequest::Topology => ("topology", None),
        };
        RequestLabels {
            op,
            policy: policy.map(Policy::name),
        }
    }

    /// The policy label once the reply is known: the request's, else the value's.
    pub fn policy_with(&self, reply: &ClientReply) -> &'static str {
        self.policy
            .or_else(|| reply_value(reply).map(|v| value_policy(v).name()))
            .unwrap_or(POLICY_NONE)
    }
}

/// The name of a write operation.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Put { .. } => "put",
        Op::PutLww { .. } => "put_lww",
        Op::Delete { .. } => "delete",
        Op::CounterAdd { .. } => "counter_add",
        Op::SetAdd { .. } => "set_add",
        Op::SetRemove { .. } => "set_remove",
        Op::Map(_) => "map_update",
        Op::HllAdd { .. } => "hll_add",
    }
}

/// The `outcome` label of a client reply: ok, not_found, or the error's kind.
pub fn reply_outcome(reply: &ClientReply) -> &'static str {
    match reply {
        ClientReply::Read { found: false, .. } => "not_found",
        ClientReply::Error(e) => error_outcome(e),
        ClientReply::Read { .. }
        | ClientReply::Written { .. }
        | ClientReply::Status(_)
        | ClientReply::Ring(_)
        | ClientReply::Changed(_)
        | ClientReply::Stats(_)
        | ClientReply::Topology(_) => "ok",
    }
}

/// The `outcome` label of a request error.
pub fn error_outcome(error: &RequestError) -> &'static str {
    match error {
        RequestError::InvalidQuorum(_) => "invalid_quorum",
        RequestError::QuorumFailed(_) => "quorum_failed",
        RequestError::Object { .. } => "object_refused",
        RequestError::BadRequest(_) => "bad_request",
        RequestError::Storage { .. } => "storage",
        RequestError::Overloaded { .. } => "overloaded",
        RequestError::NotReady { .. } => "not_ready",
        RequestError::Forward { .. } => "forward_failed",
        RequestError::Internal { .. } => "internal",
        RequestError::TimersFull { .. } => "timers_full",
    }
}

/// The `outcome` of a peer's answer that carries an optional error text.
pub fn peer_outcome(error: &Option<String>) -> &'static str {
    if error.is_some() { "error" } else { "ok" }
}

/// Siblings a successful read returned, for a siblings-policy value.
pub fn read_siblings(reply: &ClientReply) -> Option<usize> {
    match reply {
        ClientReply::Read {
            found: true,
            value: Some(ReadValue::Siblings { values, .. }),
            ..
        } => Some(values.len()),
        _ => None,
    }
}

/// The kind of a peer request a replica (or a forward's coordinator) answers, and the
/// kind of the answer that closes it: `(request op, its id)` or `(answer op, its id)`.
pub fn peer_request(msg: &PeerMessage) -> Option<(PeerOp, u64)> {
    match msg {
        PeerMessage::Read { id, .. } => Some((PeerOp::Read, *id)),
        PeerMessage::Replicate { id, .. } => Some((PeerOp::Replicate, *id)),
        PeerMessage::Forward { id, .. } => Some((PeerOp::Forward, *id)),
        _ => None,
    }
}

/// The request an outgoing answer closes, with its outcome and, when it says, its policy.
pub fn peer_answer(msg: &PeerMessage) -> Option<(PeerOp, u64, &'static str, Option<&'static str>)> {
    match msg {
        PeerMessage::ReadReply { id, object, error } => Some((
            PeerOp::Read,
            *id,
            peer_outcome(error),
            object.as_ref().map(|o| o.policy().name()),
        )),
        PeerMessage::ReplicateAck { id, error } => {
            Some((PeerOp::Replicate, *id, peer_outcome(error), None))
        }
        PeerMessage::ForwardReply { id, reply } => Some((
            PeerOp::Forward,
            *id,
            reply_outcome(reply),
            reply_value(reply).map(|v| value_policy(v).name()),
        )),
        _ => None,
    }
}

/// A peer request whose answer the driver times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerOp {
    /// A replica read.
    Read,
    /// A replica write (a coordinator's write, read repair, handoff or repair push).
    Replicate,
    /// A request coordinated here for the peer that forwarded it.
    Forward,
}

impl PeerOp {
    /// The `role` label of its metrics.
    pub fn role(self) -> &'static str {
        match self {
            PeerOp::Read | PeerOp::Replicate => ROLE_REPLICA,
            PeerOp::Forward => ROLE_FORWARDED,
        }
    }
}

fn reply_value(reply: &ClientReply) -> Option<&ReadValue> {
    match reply {
        ClientReply::Read { value, .. } => value.as_ref(),
        ClientReply::Written { value, .. } => Some(value),
        _ => None,
    }
}

fn value_policy(value: &ReadValue) -> Policy {
    match value {
        ReadValue::Siblings { .. } => Policy::Siblings,
        ReadValue::Lww { .. } => Policy::Lww,
        ReadValue::Counter { .. } => Policy::Counter,
        ReadValue::Set { .. } => Policy::Set,
        ReadValue::Map { .. } => Policy::Map,
        ReadValue::Hll { .. } => Policy::Hll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::Context;
    use crate::proto::Key;

    #[test]
    fn a_get_takes_its_policy_from_the_value_it_read() {
        let get = ClientRequest::Get {
            key: Key::new(b"b", b"k"),
            opts: Default::default(),
        };
        let labels = RequestLabels::of_request(&get);
        assert_eq!(labels.op, "get");
        let found = ClientReply::Read {
            found: true,
            value: Some(ReadValue::Counter { value: 3 }),
            warning: None,
        };
        assert_eq!(labels.policy_with(&found), "counter");
        assert_eq!(reply_outcome(&found), "ok");
        let missing = ClientReply::Read {
            found: false,
            value: None,
            warning: None,
        };
        assert_eq!(labels.policy_with(&missing), POLICY_NONE);
        assert_eq!(reply_outcome(&missing), "not_found");
    }

    #[test]
    fn siblings_are_counted_only_for_found_siblings_values() {
        let two = ClientReply::Read {
            found: true,
            value: Some(ReadValue::Siblings {
                values: vec![
                    serde_bytes::ByteBuf::from(b"a".to_vec()),
                    serde_bytes::ByteBuf::from(b"b".to_vec()),
                ],
                context: Context::default(),
            }),
            warning: None,
        };
        assert_eq!(read_siblings(&two), Some(2));
        assert_eq!(read_siblings(&ClientReply::Changed("joined".into())), None);
    }
}
