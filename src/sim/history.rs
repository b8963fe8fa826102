//! What the clients did and saw, in order, with (virtual) timestamps.
//!
//! Checkers judge a run only from this record and the replicas' final state, never from
//! the simulator's internals, so the same checkers serve a run against a real cluster.
//! The rendered text is the determinism witness: one seed must always render the same
//! bytes, and a failing seed's rendering is what a developer reads first.

use std::fmt::Write as _;

use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, Key, QuorumOpts};

/// Client index used for the settle phase's repair reads.
pub const REPAIR_CLIENT: usize = usize::MAX;

/// How one operation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum OpOutcome {
    /// Invoked, no answer yet.
    Pending,
    /// A successful reply (`Read` or `Written`).
    Ok(ClientReply),
    /// An error reply, or the node could not be reached; the text says which.
    Failed(String),
    /// The client gave up waiting.
    TimedOut,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpRecord {
    /// Position in the history; also the request id the node saw.
    pub id: u64,
    pub client: usize,
    /// The node the request was sent to.
    pub node: NodeId,
    pub request: ClientRequest,
    pub invoked_ms: u64,
    pub completed_ms: Option<u64>,
    pub outcome: OpOutcome,
}

/// Every operation and every fault of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub ops: Vec<OpRecord>,
    /// (time, description) of each injected fault, in order.
    pub faults: Vec<(u64, String)>,
}

impl OpOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, OpOutcome::Ok(_))
    }

    /// The reply of a successful operation.
    pub fn reply(&self) -> Option<&ClientReply> {
        match self {
            OpOutcome::Ok(reply) => Some(reply),
            _ => None,
        }
    }
}

impl OpRecord {
    pub fn key(&self) -> Option<&Key> {
        match &self.request {
            ClientRequest::Get { key, .. } | ClientRequest::Write { key, .. } => Some(key),
            ClientRequest::Status
            | ClientRequest::Ring
            | ClientRequest::Join { .. }
            | ClientRequest::Leave
            | ClientRequest::Stats
            | ClientRequest::Topology => None,
        }
    }

    pub fn opts(&self) -> QuorumOpts {
        match &self.request {
            ClientRequest::Get { opts, .. } | ClientRequest::Write { opts, .. } => *opts,
            ClientRequest::Status
            | ClientRequest::Ring
            | ClientRequest::Join { .. }
            | ClientRequest::Leave
            | ClientRequest::Stats
            | ClientRequest::Topology => QuorumOpts::default(),
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(self.request, ClientRequest::Write { .. })
    }

    /// Part of the workload, not of the settle phase.
    pub fn is_workload(&self) -> bool {
        self.client != REPAIR_CLIENT
    }

    /// Time from invocation to answer (or give-up).
    pub fn latency_ms(&self) -> Option<u64> {
        self.completed_ms.map(|c| c.saturating_sub(self.invoked_ms))
    }
}

impl History {
    /// Starts an operation; returns its id.
    pub fn invoke(&mut self, client: usize, node: NodeId, request: ClientRequest, now: u64) -> u64 {
        let id = self.ops.len() as u64;
        self.ops.push(OpRecord {
            id,
            client,
            node,
            request,
            invoked_ms: now,
            completed_ms: None,
            outcome: OpOutcome::Pending,
        });
        id
    }

    /// Ends an operation that is still pending; returns false (and changes nothing) if it
    /// already ended, so a late reply after a client timeout is not recorded twice.
    pub fn complete(&mut self, id: u64, outcome: OpOutcome, now: u64) -> bool {
        match self.ops.get_mut(id as usize) {
            Some(op) if op.outcome == OpOutcome::Pending => {
                op.outcome = outcome;
                op.completed_ms = Some(now);
                true
            }
            _ => false,
        }
    }

    pub fn fault(&mut self, now: u64, what: String) {
        self.faults.push((now, what));
    }

    pub fn get(&self, id: u64) -> Option<&OpRecord> {
        self.ops.get(id as usize)
    }

    /// Workload operations (repair reads left out).
    pub fn workload(&self) -> impl Iterator<Item = &OpRecord> {
        self.ops.iter().filter(|o| o.is_workload())
    }

    /// One line per fault and per operation. Every part is printed from ordered data, so
    /// equal runs render equal text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (at, what) in &self.faults {
            let _ = writeln!(out, "@{at} fault {what}");
        }
        for op in &self.ops {
            let client = if op.client == REPAIR_CLIENT {
                "repair".to_string()
            } else {
                format!("c{}", op.client)
            };
            let _ = writeln!(
                out,
                "#{} {client} -> {} @{}..{} {:?} => {:?}",
                op.id,
                op.node,
                op.invoked_ms,
                op.completed_ms
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                op.request,
                op.outcome
            );
        }
        out
    }
}
