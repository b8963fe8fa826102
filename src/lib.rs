//! ringkv: an eventually consistent, Dynamo-style key-value store with CRDTs.
//!
//! The crate is split the way `DESIGN.md` §1 describes: a sans-IO [`core`] that holds
//! every protocol decision, storage engines behind one trait, and a thin async network
//! driver around the core.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod client;
pub mod core;
pub mod net;
pub mod proto;
pub mod sim;
pub mod storage;
