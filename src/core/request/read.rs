//! A read this node coordinates: answered after R replies with their merge, then every
//! replica that sent a stale copy or none is repaired.

use std::collections::BTreeMap;

use crate::core::object::Object;
use crate::core::placement::quorum::{Outcome, Quorum};
use crate::core::placement::ring::{NodeId, Target};
use crate::core::request::Origin;
use crate::proto::{ClientReply, Key, RequestError};

/// A read collecting replies.
#[derive(Debug)]
pub(crate) struct ReadState {
    pub(crate) origin: Origin,
    pub(crate) key: Key,
    pub(crate) quorum: Quorum,
    pub(crate) targets: Vec<Target>,
    pub(crate) replies: BTreeMap<NodeId, Option<Object>>,
    pub(crate) merged: Option<Object>,
    /// The client has its answer; the read stays only to repair.
    pub(crate) replied: bool,
}

/// One stale replica to repair with the merged object.
#[derive(Debug)]
pub(crate) struct Repair {
    pub(crate) node: NodeId,
    pub(crate) hint: Option<NodeId>,
}

impl ReadState {
    /// Takes a reply (or a replica's error); true when it counted.
    pub(crate) fn on_reply(
        &mut self,
        from: NodeId,
        result: Result<Option<Object>, String>,
    ) -> bool {
        match result {
            Ok(object) => {
                if !self.quorum.ack(&from) {
                    return false;
                }
                if let Some(obj) = &object {
                    match &mut self.merged {
                        Some(m) => {
                            m.merge(obj);
                        }
                        None => self.merged = Some(obj.clone()),
                    }
                }
                self.replies.insert(from, object);
                true
            }
            Err(e) => self.quorum.fail(&from, e),
        }
    }

    /// The answer to send now, once R replies are in (at most once).
    pub(crate) fn answer_if_met(&mut self, siblings_warn: usize) -> Option<(Origin, ClientReply)> {
        if self.quorum.outcome() == Outcome::Met && !self.replied {
            self.replied = true;
            return Some((self.origin.clone(), read_reply(&self.merged, siblings_warn)));
        }
        None
    }

    /// True when no reply can still arrive or the quorum cannot be met: time to end.
    pub(crate) fn is_done(&self) -> bool {
        self.quorum.settled() || self.quorum.outcome() == Outcome::Impossible
    }

    /// The answer a client still waiting gets when the read ends.
    pub(crate) fn final_answer(&self, siblings_warn: usize) -> Option<(Origin, ClientReply)> {
        if self.replied {
            return None;
        }
        let reply = if self.quorum.outcome() == Outcome::Met {
            read_reply(&self.merged, siblings_warn)
        } else {
            let failure = self.quorum.failure("get", self.key.to_string());
            ClientReply::Error(RequestError::QuorumFailed(Box::new(failure)))
        };
        Some((self.origin.clone(), reply))
    }

    /// The replicas whose copy differs from the merge, in node order.
    pub(crate) fn repairs(&self) -> Vec<Repair> {
        let Some(merged) = &self.merged else {
            return Vec::new();
        };
        self.replies
            .iter()
            .filter(|(_, copy)| copy.as_ref() != Some(merged))
            .map(|(node, _)| Repair {
                node: node.clone(),
                hint: self
                    .targets
                    .iter()
                    .find(|t| &t.node == node)
                    .and_then(|t| t.hint.clone()),
            })
            .collect()
    }
}

fn read_reply(merged: &Option<Object>, siblings_warn: usize) -> ClientReply {
    let warning = merged
        .as_ref()
        .map(Object::sibling_count)
        .filter(|&c| c > siblings_warn)
        .map(|c| format!("the key has {c} siblings; write back with the context to resolve them"));
    ClientReply::Read {
        found: merged.as_ref().is_some_and(|o| !o.is_tombstone()),
        value: merged.as_ref().map(Object::read),
        warning,
    }
}
