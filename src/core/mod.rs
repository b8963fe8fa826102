//! The sans-IO heart of ringkv.
//!
//! Nothing in here touches sockets, tokio, the wall clock or an unseeded RNG: every input
//! (time, messages, client requests) arrives as a value and every output (messages,
//! replies, timer deadlines) leaves as a value. That is what lets `net/` drive it over QUIC
//! and `sim/` drive it deterministically from a seed.
//!
//! The rooms, each owning its state:
//! - [`node`]: the [`node::Node`] that owns every subsystem, takes inputs, routes them,
//!   and hands out outputs;
//! - [`placement`]: the ring, preference lists and quorum counting;
//! - [`object`]: values and their conflict policies (DVV siblings, LWW, CRDTs), clocks;
//! - [`request`]: the requests this node coordinates or forwards;
//! - [`replica`]: this node's copies of data, hints and tombstones, and hinted handoff;
//! - [`repair`]: Merkle trees, the Merkle and sketch exchanges, reaping, and transfers;
//! - [`membership`]: the member table, liveness, and gossip;
//! - [`stats`]: hot keys, distinct keys and repair progress;
//! - [`timer`]: the one table of deadlines.

pub mod commit_gate;
pub mod membership;
pub mod node;
pub mod object;
pub mod placement;
pub mod repair;
pub mod replica;
pub mod request;
pub mod stats;
pub mod timer;
