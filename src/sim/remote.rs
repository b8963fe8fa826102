//! The simulator's client programs, run against a real cluster.
//!
//! The examples compare policies and quorum settings in the simulator, where faults are
//! injected and time is virtual; a user will then want to see the same workload on
//! their own cluster. This module drives the very same [`Program`]s through
//! [`Client`] over QUIC, one tokio task per program, and records the same [`History`]
//! (with real milliseconds since the start), so the same checkers judge it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::client::{Client, ClientError};
use crate::core::object::ReadValue;
use crate::core::placement::ring::NodeId;
use crate::proto::{ClientReply, ClientRequest, Key, QuorumOpts};
use crate::sim::history::{History, OpOutcome};
use crate::sim::workload::{Program, WORKLOAD_N};

/// What the final R=N reads of a remote run found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteFinal {
    /// The first read's value of each key.
    pub values: BTreeMap<Key, ReadValue>,
    /// Keys whose two consecutive R=N reads disagreed, or failed, with the reason.
    pub unsettled: Vec<String>,
}

/// Runs every program to completion against the node `client` talks to; program `i`
/// draws from an RNG seeded with `seed + i`. Returns the history.
pub async fn run_programs(client: &Client, programs: Vec<Box<dyn Program>>, seed: u64) -> History {
    let history = Arc::new(Mutex::new(History::default()));
    let started = Instant::now();
    let node = NodeId::new(client.addr().to_string());
    let mut tasks = Vec::new();
    for (i, mut program) in programs.into_iter().enumerate() {
        let client = client.clone();
        let history = Arc::clone(&history);
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            while let Some(request) = program.next(&mut rng) {
                let now = started.elapsed().as_millis() as u64;
                let id = lock(&history).invoke(i, node.clone(), request.clone(), now);
                let outcome = match client.call(request).await {
                    Ok(reply) => OpOutcome::Ok(reply),
                    Err(e) => OpOutcome::Failed(e.to_string()),
                };
                let now = started.elapsed().as_millis() as u64;
                lock(&history).complete(id, outcome.clone(), now);
                program.complete(&outcome);
            }
        }));
    }
    for task in tasks {
        // A program task only ends by finishing its loop; a panic there is a bug in the
        // program, and the history up to it is still worth reporting.
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "a client program task failed");
        }
    }
    lock(&history).clone()
}

/// Reads every key twice with R=N (the second read sees the first one's read repair)
/// and reports what was read and which keys did not agree.
pub async fn final_reads(client: &Client, keys: &[Key]) -> RemoteFinal {
    let mut out = RemoteFinal::default();
    for key in keys {
        let first = read_all(client, key).await;
        let second = read_all(client, key).await;
        match (first, second) {
            (Ok(a), Ok(b)) => {
                if a != b {
                    out.unsettled
                        .push(format!("{key}: two R={WORKLOAD_N} reads disagree"));
                }
                if let Some(v) = a {
                    out.values.insert(key.clone(), v);
                }
            }
            (Err(e), _) | (_, Err(e)) => out.unsettled.push(format!("{key}: {e}")),
        }
    }
    out
}

async fn read_all(client: &Client, key: &Key) -> Result<Option<ReadValue>, ClientError> {
    let request = ClientRequest::Get {
        key: key.clone(),
        opts: QuorumOpts {
            n: Some(WORKLOAD_N),
            r: Some(WORKLOAD_N),
            ..QuorumOpts::default()
        },
    };
    match client.call(request).await? {
        ClientReply::Read { value, .. } => Ok(value),
        _ => Ok(None),
    }
}

fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    history.lock().unwrap_or_else(PoisonError::into_inner)
}
