//! Why a client request failed, as the wire carries it: text and names, not sources.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::object::ObjectError;
use crate::core::placement::ring::NodeId;

/// Why a client request failed. Sent on the wire, so it carries text, not sources.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum RequestError {
    #[error("invalid replication settings: {0}")]
    InvalidQuorum(String),
    #[error("{}", quorum_text(.0))]
    QuorumFailed(Box<QuorumFailure>),
    #[error("{key}: {error}")]
    Object { key: String, error: ObjectError },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("node {node} could not use its storage: {message}; check its disk and logs")]
    Storage { node: NodeId, message: String },
    #[error(
        "node {node} has {inflight} requests in flight (limit {limit}); retry with backoff or add nodes"
    )]
    Overloaded {
        node: NodeId,
        inflight: usize,
        limit: usize,
    },
    #[error("node {node} cannot serve requests yet: {reason}")]
    NotReady { node: NodeId, reason: String },
    #[error(
        "node {via} forwarded the request to coordinator {coordinator}, which did not answer: {reason}; retry, or send it to another node"
    )]
    Forward {
        via: NodeId,
        coordinator: NodeId,
        reason: String,
    },
    #[error("node {node} failed internally: {message}")]
    Internal { node: NodeId, message: String },
    #[error(
        "node {node} has {timers} timers pending (limit {limit}); retry with backoff or add nodes"
    )]
    TimersFull {
        node: NodeId,
        timers: usize,
        limit: usize,
    },
}

/// The details of a quorum that was not met.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuorumFailure {
    /// "put", "get", ...
    pub op: String,
    pub key: String,
    pub needed: usize,
    pub n: usize,
    pub strict: bool,
    pub acked: Vec<NodeId>,
    pub failed: Vec<(NodeId, String)>,
    pub timed_out: Vec<NodeId>,
    pub unreachable: Vec<NodeId>,
}

impl QuorumFailure {
    /// Total number of nodes that did not ack.
    pub fn missing(&self) -> usize {
        self.failed.len() + self.timed_out.len() + self.unreachable.len()
    }
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
        }));
        let text = err.to_string();
        assert!(text.contains("got 1 of the 2 acks needed"), "{text}");
        assert!(text.contains("acked: n1"), "{text}");
        assert!(text.contains("timed out: n2"), "{text}");
        assert!(text.contains("unreachable or down: n3"), "{text}");
        assert!(text.contains("--strict"), "{text}");
    }
}
