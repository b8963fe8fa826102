//! Which failures a call retries on another node, and how many nodes it tries.
//!
//! Why retries are safe at all: every write carries an operation id
//! ([`OpId`](crate::OpId)), drawn once per call and sent again unchanged on every attempt,
//! and the nodes apply an id at most once; a get changes nothing. Why they are bounded:
//! a failure that another node would meet the same way (a malformed request, an object
//! limit, too few replicas up) only adds load when repeated, so only failures that say
//! *this* node or the path through it is the problem are retried on the next candidate,
//! at most [`ATTEMPTS_MAX`] nodes per call and never past the call's deadline.
//!
//! | failure | retry |
//! |---|---|
//! | transport: connect, handshake, lost connection, ended session, timeout | next node |
//! | `Refused` (the node is shutting down, or speaks another version) | next node |
//! | `NotReady` (joining or left), `Forward` (its coordinator did not answer) | next node |
//! | `QuorumFailed` with replicas that timed out or were unreachable, or refused up front (too few replicas up); `Overloaded`, `TimersFull`, `Storage` | once, on another node |
//! | `QuorumFailed` whose replicas answered with errors, `InvalidQuorum`, `BadRequest`, `Object`, `Internal` | never |
//! | client-side errors (bad context, wrong policy, unexpected reply, frame too large) | never |

use std::net::SocketAddr;

use crate::client::ClientError;
use crate::client::topology::Candidate;
use crate::net::NetError;
use crate::proto::RequestError;

/// Most nodes one call is sent to (the first attempt included): N=3's replicas and one
/// more member.
pub const ATTEMPTS_MAX: usize = 4;
/// Of those, most attempts after failures that another node would probably meet too
/// (too few replicas up, an overloaded coordinator).
pub const RETRIES_DOUBTFUL_MAX: usize = 1;

/// Whether a failed attempt is worth sending to another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The node or the path through it failed: the next node may well succeed.
    Elsewhere,
    /// Another node would likely fail the same way, but its view may be fresher: at most
    /// [`RETRIES_DOUBTFUL_MAX`] such retries per call.
    Once,
    /// Every node would answer the same; returned as is.
    Never,
}

impl Retry {
    /// The retry class of a failed attempt.
    pub fn of(err: &ClientError) -> Retry {
        match err {
            ClientError::Net { source, .. } => Retry::of_net(source),
            ClientError::Refused { .. } => Retry::Elsewhere,
            ClientError::Request(e) => Retry::of_request(e),
            ClientError::Exhausted { last, .. } => Retry::of(last),
            ClientError::Identity { .. }
            | ClientError::Endpoint(_)
            | ClientError::BadContext { .. }
            | ClientError::WrongPolicy { .. }
            | ClientError::UnexpectedReply { .. }
            | ClientError::Seeds(_)
            | ClientError::Topology { .. } => Retry::Never,
        }
    }

    fn of_net(err: &NetError) -> Retry {
        match err.root() {
            // The same bytes fail the same way on any node.
            NetError::FrameTooLarge { .. } | NetError::FrameEncode { .. } => Retry::Never,
            // This client cannot open more connections; another node needs one too.
            NetError::PoolFull { .. } => Retry::Never,
            _ => Retry::Elsewhere,
        }
    }

    fn of_request(err: &RequestError) -> Retry {
        match err {
            RequestError::NotReady { .. } | RequestError::Forward { .. } => Retry::Elsewhere,
            // Replicas down, unreachable or silent: another coordinator whose failure
            // detector already noticed may use a fallback, but one that has not would
            // wait out the same quorum timeout, so once.
            RequestError::QuorumFailed(q)
                if q.up.is_some() || !q.timed_out.is_empty() || !q.unreachable.is_empty() =>
            {
                Retry::Once
            }
            // Every missing replica answered with an error: it would again.
            RequestError::QuorumFailed(_) => Retry::Never,
            RequestError::Overloaded { .. }
            | RequestError::TimersFull { .. }
            | RequestError::Storage { .. } => Retry::Once,
            RequestError::InvalidQuorum(_)
            | RequestError::Object { .. }
            | RequestError::BadRequest(_)
            | RequestError::Internal { .. } => Retry::Never,
        }
    }

    /// True when the failure says the node itself (not the cluster behind it) could not
    /// serve: the client tries it last for a while and refreshes its view at once.
    pub fn blames_node(err: &ClientError) -> bool {
        matches!(
            err,
            ClientError::Net { .. }
                | ClientError::Refused { .. }
                | ClientError::Request(RequestError::NotReady { .. })
        )
    }
}

/// The nodes one call may still try, in order, and what it met so far.
#[derive(Debug)]
pub(crate) struct Attempts {
    candidates: Vec<Candidate>,
    next: usize,
    doubtful: usize,
    /// Each failed attempt: the node, and its error as text.
    pub(crate) failed: Vec<(Candidate, String)>,
}

impl Attempts {
    /// At most [`ATTEMPTS_MAX`] of `candidates`, duplicates (by address) dropped.
    pub(crate) fn new(candidates: impl IntoIterator<Item = Candidate>) -> Attempts {
        let mut unique: Vec<Candidate> = Vec::with_capacity(ATTEMPTS_MAX);
        for c in candidates {
            if unique.len() == ATTEMPTS_MAX {
                break;
            }
            if !unique.iter().any(|u| u.addr == c.addr) {
                unique.push(c);
            }
        }
        Attempts {
            candidates: unique,
            next: 0,
            doubtful: 0,
            failed: Vec::with_capacity(ATTEMPTS_MAX),
        }
    }

    /// The next node to try, if the list is not used up.
    pub(crate) fn next(&mut self) -> Option<Candidate> {
        let c = self.candidates.get(self.next).cloned();
        self.next += 1;
        c
    }

    /// Records a failed attempt on `node`; true when the call should go on to the next
    /// node.
    pub(crate) fn failed(&mut self, node: Candidate, err: &ClientError) -> bool {
        self.failed.push((node, err.to_string()));
        match Retry::of(err) {
            Retry::Elsewhere => true,
            Retry::Once if self.doubtful < RETRIES_DOUBTFUL_MAX => {
                self.doubtful += 1;
                true
            }
            Retry::Once | Retry::Never => false,
        }
    }

    /// The addresses of the candidates, for tests and error texts.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.candidates.iter().map(|c| c.addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::object::ObjectError;
    use crate::core::placement::ring::NodeId;
    use crate::proto::QuorumFailure;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn quorum(timed_out: &[&str], unreachable: &[&str], up: Option<&[&str]>) -> ClientError {
        let ids = |names: &[&str]| names.iter().map(|n| NodeId::from(*n)).collect::<Vec<_>>();
        ClientError::Request(RequestError::QuorumFailed(Box::new(QuorumFailure {
            op: "put".into(),
            key: "b/k".into(),
            needed: 2,
            n: 3,
            strict: false,
            acked: ids(&["n1"]),
            failed: if timed_out.is_empty() && unreachable.is_empty() && up.is_none() {
                vec![(NodeId::from("n2"), "disk full".into())]
            } else {
                vec![]
            },
            timed_out: ids(timed_out),
            unreachable: ids(unreachable),
            up: up.map(ids),
        })))
    }

    fn net(source: NetError) -> ClientError {
        ClientError::Net {
            addr: addr(1),
            source: Box::new(source),
        }
    }

    #[test]
    fn transport_failures_and_unanswered_nodes_are_retried_elsewhere() {
        for err in [
            net(NetError::Timeout {
                what: "request to",
                addr: addr(1),
                timeout_ms: 10,
            }),
            net(NetError::SessionEnded {
                addr: addr(1),
                reason: "connection lost".into(),
            }),
            net(NetError::Connect {
                addr: addr(1),
                reason: "endpoint closing".into(),
            }),
            ClientError::Refused {
                addr: addr(1),
                reason: "the node is shutting down".into(),
            },
            ClientError::Request(RequestError::NotReady {
                node: NodeId::from("n1"),
                reason: "still joining".into(),
            }),
            ClientError::Request(RequestError::Forward {
                via: NodeId::from("n1"),
                coordinator: NodeId::from("n2"),
                reason: "it timed out".into(),
            }),
        ] {
            assert_eq!(Retry::of(&err), Retry::Elsewhere, "{err}");
        }
    }

    #[test]
    fn missing_replicas_and_overload_are_retried_once() {
        for err in [
            quorum(&[], &["n2", "n3"], Some(&["n1"])),
            quorum(&["n2", "n3"], &[], None),
            quorum(&[], &["n3"], None),
            ClientError::Request(RequestError::Overloaded {
                node: NodeId::from("n1"),
                inflight: 10,
                limit: 10,
            }),
            ClientError::Request(RequestError::TimersFull {
                node: NodeId::from("n1"),
                timers: 10,
                limit: 10,
            }),
        ] {
            assert_eq!(Retry::of(&err), Retry::Once, "{err}");
        }
        let candidates = (1..=4).map(|p| Candidate {
            addr: addr(p),
            name: None,
        });
        let mut attempts = Attempts::new(candidates);
        let unavailable = quorum(&[], &["n2", "n3"], Some(&["n1"]));
        let first = attempts.next().expect("a first node");
        assert!(attempts.failed(first, &unavailable), "one retry");
        let second = attempts.next().expect("a second node");
        assert!(!attempts.failed(second, &unavailable), "not two");
        assert_eq!(attempts.failed.len(), 2);
    }

    #[test]
    fn failures_every_node_would_repeat_are_not_retried() {
        for err in [
            quorum(&[], &[], None),
            ClientError::Request(RequestError::InvalidQuorum("w=4 over n=3".into())),
            ClientError::Request(RequestError::BadRequest("empty bucket".into())),
            ClientError::Request(RequestError::Object {
                key: "b/k".into(),
                error: ObjectError::BadContext("garbage".into()),
            }),
            ClientError::Request(RequestError::Internal {
                node: NodeId::from("n1"),
                message: "stats".into(),
            }),
            ClientError::BadContext {
                reason: "garbage".into(),
            },
            net(NetError::FrameTooLarge { len: 10, max: 5 }),
            net(NetError::PoolFull {
                addr: addr(1),
                max: 1,
            }),
        ] {
            assert_eq!(Retry::of(&err), Retry::Never, "{err}");
        }
    }

    #[test]
    fn only_node_failures_blame_the_node() {
        assert!(Retry::blames_node(&net(NetError::Timeout {
            what: "connecting to",
            addr: addr(1),
            timeout_ms: 10,
        })));
        assert!(!Retry::blames_node(&quorum(&["n2"], &[], None)));
        assert!(Retry::blames_node(&ClientError::Request(
            RequestError::NotReady {
                node: NodeId::from("n1"),
                reason: "left".into(),
            }
        )));
    }

    #[test]
    fn attempts_are_bounded_and_never_repeat_a_node() {
        let candidates = [1, 2, 1, 3, 4, 5, 6].map(|p| Candidate {
            addr: addr(p),
            name: None,
        });
        let mut attempts = Attempts::new(candidates);
        assert_eq!(attempts.addrs(), [addr(1), addr(2), addr(3), addr(4)]);
        let lost = net(NetError::SessionEnded {
            addr: addr(1),
            reason: "lost".into(),
        });
        let mut tried = 0;
        while let Some(node) = attempts.next() {
            tried += 1;
            assert!(attempts.failed(node, &lost));
        }
        assert_eq!(tried, ATTEMPTS_MAX);
    }
}
