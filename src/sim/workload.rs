//! Client programs: what simulated (or real) clients ask for, one request at a time.
//!
//! A program is sans-IO like the core: it proposes the next request and is told how the
//! previous one ended, so the simulator drives it in virtual time and `remote` drives the
//! very same program against a real cluster. Every update carries a unique token (client
//! and sequence number), and a read-modify-write writes back the union of every token it
//! read plus its own. That makes "was an acknowledged update lost?" a set question the
//! checkers can answer from the final state alone, for every policy alike.

use std::collections::BTreeSet;
use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::core::object::{Context, MapOp, Op, OpId, Policy, ReadValue};
use crate::proto::{ClientReply, ClientRequest, Key, QuorumOpts};
use crate::sim::history::OpOutcome;

/// Field of a `map` key that the workload increments.
pub const MAP_COUNTER_FIELD: &str = "n";
/// Field of a `map` key that the workload adds tokens to.
pub const MAP_SET_FIELD: &str = "s";
/// Largest counter step a workload takes.
pub const COUNTER_DELTA_MAX: i64 = 3;
/// Replication factor the workloads ask for.
pub const WORKLOAD_N: u8 = 3;

/// A client's behaviour: proposes requests and hears how they ended.
pub trait Program: fmt::Debug + Send {
    /// The next request, or `None` when the program is done.
    fn next(&mut self, rng: &mut ChaCha8Rng) -> Option<ClientRequest>;
    /// How the request last returned by `next` ended.
    fn complete(&mut self, outcome: &OpOutcome);
}

/// How a program picks N/W/R for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumChoice {
    /// N=3 with the node defaults for W and R.
    Default,
    /// N=3 and these W and R.
    Fixed { w: u8, r: u8 },
    /// N=3, W and R drawn from 1..=3 per request, and 1 request in 8 strict.
    Random,
}

/// Updates and read-modify-writes of one policy on a few hot keys.
#[derive(Debug)]
pub struct RmwProgram {
    pub policy: Policy,
    client: usize,
    keys: Vec<Key>,
    quorum: QuorumChoice,
    ops_left: u64,
    seq: u64,
    /// Sequence number of the last write's operation id.
    op_seq: u64,
    /// Whether `set` programs also remove members they read.
    removes: bool,
    /// The key of the outstanding read, if the last request was a read.
    reading: Option<Key>,
    /// What the last successful read returned, for the write that follows it.
    read: Option<(Key, ReadValue)>,
}

/// Counter increments and reads with fixed W and R, for quorum comparisons.
#[derive(Debug)]
pub struct QuorumProgram {
    keys: Vec<Key>,
    w: u8,
    r: u8,
    ops_left: u64,
}

impl QuorumChoice {
    fn opts(self, rng: &mut ChaCha8Rng, write: bool) -> QuorumOpts {
        let mut opts = QuorumOpts {
            n: Some(WORKLOAD_N),
            ..QuorumOpts::default()
        };
        match self {
            QuorumChoice::Default => {}
            QuorumChoice::Fixed { w, r } => {
                opts.w = Some(w);
                opts.r = Some(r);
            }
            QuorumChoice::Random => {
                let q = rng.random_range(1..=WORKLOAD_N);
                if write {
                    opts.w = Some(q);
                } else {
                    opts.r = Some(q);
                }
                opts.strict = rng.random_ratio(1, 8);
            }
        }
        opts
    }
}

impl RmwProgram {
    /// A program for client `client` doing `ops` requests on `keys`.
    pub fn new(
        policy: Policy,
        client: usize,
        keys: Vec<Key>,
        quorum: QuorumChoice,
        ops: u64,
    ) -> RmwProgram {
        RmwProgram {
            policy,
            client,
            keys,
            quorum,
            ops_left: ops,
            seq: 0,
            op_seq: 0,
            removes: false,
            reading: None,
            read: None,
        }
    }

    /// Lets a `set` program remove members it has read (with the read's context).
    pub fn with_removes(mut self, removes: bool) -> RmwProgram {
        self.removes = removes;
        self
    }

    fn token(&mut self) -> String {
        self.seq += 1;
        format!("c{}.{}", self.client, self.seq)
    }

    fn get(&mut self, key: Key, rng: &mut ChaCha8Rng) -> ClientRequest {
        self.reading = Some(key.clone());
        ClientRequest::Get {
            key,
            opts: self.quorum.opts(rng, false),
        }
    }

    /// A write with its own operation id, which the client's retries reuse.
    fn write(&mut self, key: Key, op: Op, rng: &mut ChaCha8Rng) -> ClientRequest {
        self.op_seq += 1;
        ClientRequest::Write {
            key,
            op,
            opts: self.quorum.opts(rng, true),
            id: Some(OpId {
                client: self.client as u64,
                seq: self.op_seq,
            }),
        }
    }

    /// The write that completes a read-modify-write, from what the read returned.
    fn write_after_read(
        &mut self,
        key: Key,
        value: ReadValue,
        rng: &mut ChaCha8Rng,
    ) -> Option<ClientRequest> {
        let op = match (self.policy, value) {
            (Policy::Siblings, ReadValue::Siblings { values, context }) => {
                let mut seen = BTreeSet::new();
                for v in &values {
                    seen.extend(decode_tokens(v).1);
                }
                let own = self.token();
                Op::Put {
                    value: encode_tokens(&own, &seen),
                    context,
                }
            }
            (Policy::Lww, ReadValue::Lww { value, .. }) => {
                let seen = value.map(|v| decode_tokens(&v).1).unwrap_or_default();
                let own = self.token();
                Op::PutLww {
                    value: encode_tokens(&own, &seen),
                }
            }
            (Policy::Set, ReadValue::Set { members, context }) if !members.is_empty() => {
                let pick = members[rng.random_range(0..members.len())].clone();
                Op::SetRemove {
                    members: vec![pick],
                    context,
                }
            }
            _ => return None,
        };
        Some(self.write(key, op, rng))
    }

    fn blind_update(&mut self, key: Key, rng: &mut ChaCha8Rng) -> ClientRequest {
        let op = match self.policy {
            Policy::Counter => Op::CounterAdd {
                delta: rng.random_range(1..=COUNTER_DELTA_MAX),
            },
            Policy::Set => Op::SetAdd {
                members: vec![self.token()],
            },
            Policy::Map => {
                if rng.random_bool(0.5) {
                    Op::Map(MapOp::Increment {
                        field: MAP_COUNTER_FIELD.to_string(),
                        delta: rng.random_range(1..=COUNTER_DELTA_MAX),
                    })
                } else {
                    Op::Map(MapOp::AddMembers {
                        field: MAP_SET_FIELD.to_string(),
                        members: vec![self.token()],
                    })
                }
            }
            Policy::Hll => Op::HllAdd {
                items: vec![self.token().into_bytes()],
            },
            // Values need a read first; an empty context is what a first writer has.
            Policy::Siblings => Op::Put {
                value: encode_tokens(&self.token(), &BTreeSet::new()),
                context: Context::empty(),
            },
            Policy::Lww => Op::PutLww {
                value: encode_tokens(&self.token(), &BTreeSet::new()),
            },
        };
        self.write(key, op, rng)
    }
}

impl Program for RmwProgram {
    fn next(&mut self, rng: &mut ChaCha8Rng) -> Option<ClientRequest> {
        if self.ops_left == 0 || self.keys.is_empty() {
            return None;
        }
        self.ops_left -= 1;
        self.reading = None;
        if let Some((key, value)) = self.read.take()
            && let Some(request) = self.write_after_read(key, value, rng)
        {
            return Some(request);
        }
        let key = self.keys[rng.random_range(0..self.keys.len())].clone();
        let read_first = match self.policy {
            Policy::Siblings | Policy::Lww => true,
            Policy::Set if self.removes => rng.random_ratio(1, 3),
            _ => rng.random_ratio(1, 8),
        };
        Some(if read_first {
            self.get(key, rng)
        } else {
            self.blind_update(key, rng)
        })
    }

    fn complete(&mut self, outcome: &OpOutcome) {
        let Some(key) = self.reading.take() else {
            return;
        };
        // A read that found nothing still carries the context of a tombstone, if any; a
        // read that failed leaves the next request a fresh one.
        self.read = match outcome {
            OpOutcome::Ok(ClientReply::Read { value, .. }) => {
                let value = value.clone().unwrap_or_else(|| empty_read(self.policy));
                Some((key, value))
            }
            _ => None,
        };
    }
}

impl QuorumProgram {
    pub fn new(keys: Vec<Key>, w: u8, r: u8, ops: u64) -> QuorumProgram {
        QuorumProgram {
            keys,
            w,
            r,
            ops_left: ops,
        }
    }
}

impl Program for QuorumProgram {
    fn next(&mut self, rng: &mut ChaCha8Rng) -> Option<ClientRequest> {
        if self.ops_left == 0 || self.keys.is_empty() {
            return None;
        }
        self.ops_left -= 1;
        let key = self.keys[rng.random_range(0..self.keys.len())].clone();
        let opts = QuorumChoice::Fixed {
            w: self.w,
            r: self.r,
        }
        .opts(rng, false);
        Some(if rng.random_bool(0.5) {
            ClientRequest::Write {
                key,
                op: Op::CounterAdd { delta: 1 },
                opts,
                id: None,
            }
        } else {
            ClientRequest::Get { key, opts }
        })
    }

    fn complete(&mut self, _outcome: &OpOutcome) {}
}

/// A workload's value: the writer's own token first, then every token it read, sorted.
pub fn encode_tokens(own: &str, read: &BTreeSet<String>) -> Vec<u8> {
    let mut parts = vec![own.to_string()];
    parts.extend(read.iter().filter(|t| t.as_str() != own).cloned());
    parts.join(",").into_bytes()
}

/// The writer's own token and every token a value carries (its own included).
pub fn decode_tokens(value: &[u8]) -> (Option<String>, BTreeSet<String>) {
    let text = String::from_utf8_lossy(value);
    let mut parts = text
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let own = parts.next();
    let mut all: BTreeSet<String> = parts.collect();
    if let Some(own) = &own {
        all.insert(own.clone());
    }
    (own, all)
}

/// The keys a workload of `policy` uses in `bucket`: `k0`, `k1`, ...
pub fn keys_for(bucket: &str, count: usize) -> Vec<Key> {
    (0..count)
        .map(|i| Key::new(bucket, format!("k{i}")))
        .collect()
}

/// What a reader of a key that no replica holds would see.
fn empty_read(policy: Policy) -> ReadValue {
    crate::core::object::Object::empty(policy).read()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_round_trip_with_the_own_token_first() {
        let read: BTreeSet<String> = ["c1.2", "c0.1"].iter().map(|s| s.to_string()).collect();
        let value = encode_tokens("c2.9", &read);
        assert_eq!(value, b"c2.9,c0.1,c1.2".to_vec());
        let (own, all) = decode_tokens(&value);
        assert_eq!(own.as_deref(), Some("c2.9"));
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn a_siblings_program_writes_back_the_union_it_read_with_the_context() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let keys = keys_for("b", 1);
        let mut p = RmwProgram::new(Policy::Siblings, 4, keys, QuorumChoice::Default, 2);
        let Some(ClientRequest::Get { .. }) = p.next(&mut rng) else {
            panic!("a siblings program reads first");
        };
        let context = Context::empty();
        p.complete(&OpOutcome::Ok(ClientReply::Read {
            found: true,
            value: Some(ReadValue::Siblings {
                values: vec![
                    serde_bytes::ByteBuf::from(b"c1.1".to_vec()),
                    serde_bytes::ByteBuf::from(b"c2.1,c0.1".to_vec()),
                ],
                context: context.clone(),
            }),
            warning: None,
        }));
        let Some(ClientRequest::Write {
            op: Op::Put {
                value,
                context: sent,
            },
            ..
        }) = p.next(&mut rng)
        else {
            panic!("the read is followed by a put");
        };
        assert_eq!(sent, context);
        assert_eq!(value, b"c4.1,c0.1,c1.1,c2.1".to_vec());
        assert!(p.next(&mut rng).is_none(), "the budget is two requests");
    }
}
