//! Why a client request failed, as the wire carries it: text and names, not sources.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::object::ObjectError;
use crate::core::placement::ring::NodeId;

/// Why a client request failed. Sent on the wire, so it carries text, not sources.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum RequestError {
    /// The request's N, W or R is out of bounds (N over `REPLICAS_MAX` or the cluster's
    /// size, W or R of 0 or over N); refused before anything was written.
    #[error("invalid replication settings: {0}")]
    InvalidQuorum(String),
    /// Fewer than W replicas acked a write (or R answered a read) before the timeout. A
    /// write may still have reached the replicas that acked, and repair spreads it from
    /// there.
    #[error("{}", quorum_text(.0))]
    QuorumFailed(Box<QuorumFailure>),
    /// The coordinator refused the operation on the key's object (a type mismatch, or a
    /// limit on size, siblings or elements exceeded); nothing was written.
    #[error("{key}: {error}")]
    Object {
        /// The key, as `bucket/key`.
        key: String,
        /// What the object refused.
        error: ObjectError,
    },
    /// The request is malformed: an invalid bucket or key name, a join seed that cannot be
    /// announced to, or a leave the cluster cannot afford.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The coordinator's storage failed while applying a write; nothing was replicated.
    #[error("node {node} could not use its storage: {message}; check its disk and logs")]
    Storage {
        /// The coordinator whose storage failed.
        node: NodeId,
        /// The storage error, as text.
        message: String,
    },
    /// The coordinator already has as many requests in flight as its `inflight_max`;
    /// nothing was done, so the request can be retried.
    #[error(
        "node {node} has {inflight} requests in flight (limit {limit}); retry with backoff or add nodes"
    )]
    Overloaded {
        /// The refusing node.
        node: NodeId,
        /// Requests it had in flight.
        inflight: usize,
        /// Its configured `inflight_max`.
        limit: usize,
    },
    /// The node is still joining (it has not received the member table yet) or has left the
    /// cluster; nothing was done.
    #[error("node {node} cannot serve requests yet: {reason}")]
    NotReady {
        /// The refusing node.
        node: NodeId,
        /// Why, and where to send the request instead.
        reason: String,
    },
    /// The node that received the request forwarded it to the key's coordinator, which was
    /// unreachable or did not answer in time, or the request was already forwarded once and
    /// would bounce again. A forwarded write may still have been applied.
    #[error(
        "node {via} forwarded the request to coordinator {coordinator}, which did not answer: {reason}; retry, or send it to another node"
    )]
    Forward {
        /// The node the client asked, which forwarded the request.
        via: NodeId,
        /// The coordinator it forwarded to.
        coordinator: NodeId,
        /// "it is unreachable", "it timed out", or why the request was not forwarded again.
        reason: String,
    },
    /// The node hit an error that is not the request's fault, such as a failure to assemble
    /// its stats.
    #[error("node {node} failed internally: {message}")]
    Internal {
        /// The failing node.
        node: NodeId,
        /// The error, as text.
        message: String,
    },
    /// The coordinator's timers are full, so it cannot track the request's deadline;
    /// nothing was done, so the request can be retried.
    #[error(
        "node {node} has {timers} timers pending (limit {limit}); retry with backoff or add nodes"
    )]
    TimersFull {
        /// The refusing node.
        node: NodeId,
        /// Timers it had pending.
        timers: usize,
        /// The most timers a node keeps pending.
        limit: usize,
    },
}

/// The details of a quorum that was not met.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuorumFailure {
    /// "put", "get", ...
    pub op: String,
    /// The key, as `bucket/key`.
    pub key: String,
    /// The W or R that was needed.
    pub needed: usize,
    /// Replicas the request asked (N).
    pub n: usize,
    /// Whether only primaries counted (`QuorumOpts::strict`).
    pub strict: bool,
    /// Nodes that acked a write or answered a read.
    pub acked: Vec<NodeId>,
    /// Nodes that answered with an error, and that error as text.
    pub failed: Vec<(NodeId, String)>,
    /// Nodes that were asked but did not answer before the deadline.
    pub timed_out: Vec<NodeId>,
    /// Nodes of the preference list that were down or could not be reached, so they were
    /// not asked.
    pub unreachable: Vec<NodeId>,
    /// Set when the coordinator refused the request before asking any replica: fewer
    /// than W (or R) replicas were up, and these are the ones that were. Nothing was
    /// written or read then.
    #[serde(default)]
    pub up: Option<Vec<NodeId>>,
}

impl QuorumFailure {
    /// Total number of nodes that did not ack.
    pub fn missing(&self) -> usize {
        self.failed.len() + self.timed_out.len() + self.unreachable.len()
    }
}

/// The sentence of a request refused before any replica was asked.
fn unavailable_text(q: &QuorumFailure, up: &[NodeId]) -> String {
    let mut text = format!(
        "{} {} failed: only {} of the {} replicas it needs are up (n={}{}); up: {}; down or unreachable: {}; no replica was asked. Check the nodes with `ringkv status`, ",
        q.op,
        q.key,
        up.len(),
        q.needed,
        q.n,
        if q.strict { ", strict" } else { "" },
        names(up),
        names(&q.unreachable),
    );
    if q.strict {
        text.push_str("drop --strict to allow fallbacks, ");
    }
    text.push_str("or lower the quorum and retry");
    text
}

fn names(nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        "none".to_string()
    } else {
        nodes
            .iter()
            .map(|n| n.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn quorum_text(q: &QuorumFailure) -> String {
    if let Some(up) = &q.up {
        return unavailable_text(q, up);
    }
    let mut text = format!(
        "{} {} failed: got {} of the {} {} needed (n={}{})",
        q.op,
        q.key,
        q.acked.len(),
        q.needed,
        if q.op == "get" { "replies" } else { "acks" },
        q.n,
        if q.strict { ", strict" } else { "" },
    );
    text.push_str(&format!("; acked: {}", names(&q.acked)));
    if !q.timed_out.is_empty() {
        text.push_str(&format!("; timed out: {}", names(&q.timed_out)));
    }
    if !q.unreachable.is_empty() {
        text.push_str(&format!("; unreachable or down: {}", names(&q.unreachable)));
    }
    if !q.failed.is_empty() {
        let failed: Vec<String> = q.failed.iter().map(|(n, e)| format!("{n} ({e})")).collect();
        text.push_str(&format!("; failed: {}", failed.join(", ")));
    }
    text.push_str(". Check the nodes with `ringkv status`, ");
    if q.strict {
        text.push_str("drop --strict to allow fallbacks, ");
    }
    text.push_str("or lower the quorum and retry");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_failure_names_counts_and_nodes() {
        let err = RequestError::QuorumFailed(Box::new(QuorumFailure {
            op: "put".into(),
            key: "b/k".into(),
            needed: 2,
            n: 3,
            strict: true,
            acked: vec![NodeId::from("n1")],
            failed: vec![],
            timed_out: vec![NodeId::from("n2")],
            unreachable: vec![NodeId::from("n3")],
            up: None,
        }));
        let text = err.to_string();
        assert!(text.contains("got 1 of the 2 acks needed"), "{text}");
        assert!(text.contains("acked: n1"), "{text}");
        assert!(text.contains("timed out: n2"), "{text}");
        assert!(text.contains("unreachable or down: n3"), "{text}");
        assert!(text.contains("--strict"), "{text}");
    }

    #[test]
    fn a_request_refused_up_front_says_how_many_replicas_are_up() {
        let err = RequestError::QuorumFailed(Box::new(QuorumFailure {
            op: "get".into(),
            key: "b/k".into(),
            needed: 3,
            n: 3,
            strict: true,
            acked: vec![],
            failed: vec![],
            timed_out: vec![],
            unreachable: vec![NodeId::from("n3")],
            up: Some(vec![NodeId::from("n1"), NodeId::from("n2")]),
        }));
        let text = err.to_string();
        assert!(
            text.contains("only 2 of the 3 replicas it needs are up (n=3, strict)"),
            "{text}"
        );
        assert!(text.contains("up: n1, n2"), "{text}");
        assert!(text.contains("down or unreachable: n3"), "{text}");
        assert!(text.contains("no replica was asked"), "{text}");
        assert!(!text.contains("acked"), "{text}");
    }
}
