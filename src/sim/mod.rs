//! The deterministic simulator: many core nodes, virtual time, seeded faults, checkers.
//!
//! Distributed bugs live in interleavings that a real network produces rarely and never
//! twice. Because the core is sans-IO (time, messages and randomness are inputs), a
//! single-threaded loop can play the network, the clocks, the disks and the clients,
//! drawing every choice from one seeded RNG, so any failing interleaving replays exactly
//! from its seed. The pieces:
//!
//! - [`network`]: delay, loss, duplication and partitions;
//! - [`world`]: nodes over memory storage, crash and restart, the event queue (its
//!   clients' side lives in `client.rs`, deferred persists in `persist.rs`);
//! - [`workload`]: the client programs (also driven against real clusters by [`remote`]);
//! - [`history`]: what every client asked and heard, with virtual times;
//! - [`settle`]: heal, repair and read back every replica;
//! - [`check`]: convergence and per-policy rules over a history and the final state;
//! - [`scenario`]: the randomized schedule the sweep test runs per seed.

pub mod availability;
pub mod check;
mod client;
pub mod history;
mod members;
pub mod network;
mod persist;
pub mod remote;
pub mod scenario;
pub mod settle;
pub mod workload;
pub mod world;

use thiserror::Error;

use crate::core::node::NodeError;
use crate::core::placement::ring::{NodeId, RingError};

pub use check::{Report, Staleness, check_convergence, check_history, stale_reads};
pub use history::{History, OpOutcome, OpRecord};
pub use network::{NetConfig, Network};
pub use scenario::{SeedRun, run_seed};
pub use settle::Settled;
pub use workload::{Program, QuorumChoice, QuorumProgram, RmwProgram};
pub use world::{Fault, World, WorldConfig, WorldStats};

/// Errors building or driving a simulation.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("a simulated node could not start: {0}")]
    Node(#[from] NodeError),
    #[error("the simulated member list is not a valid ring: {0}")]
    Ring(#[from] RingError),
    #[error("node {0} is not part of the simulated cluster")]
    UnknownNode(NodeId),
}
