//! The sans-IO heart of ringkv.
//!
//! Nothing in here touches sockets, tokio, the wall clock or an unseeded RNG: every input
//! (time, messages, client requests) arrives as a value and every output (messages,
//! replies, timer deadlines) leaves as a value. That is what lets `net/` drive it over QUIC
//! and `sim/` drive it deterministically from a seed.

pub mod anti_entropy;
pub mod clock;
pub mod cluster;
pub mod commit_gate;
pub mod coordinator;
pub mod exchange;
pub mod gossip;
pub mod hints;
pub mod membership;
pub mod message;
pub mod node;
pub mod object;
pub mod quorum;
pub mod reap;
pub mod reconcile;
pub mod replica;
pub mod ring;
pub mod stats;
pub mod timer;
pub mod transfer;
