//! ringkv: an eventually consistent, Dynamo-style key-value store with CRDTs.
//!
//! The crate is split so that every protocol decision lives in a sans-IO [`core`], which
//! a thin async network driver (`net`) and a deterministic simulator (`sim`) both drive;
//! storage engines sit behind one synchronous trait (`storage`) and the wire protocols
//! are plain enums (`proto`). `docs/ARCHITECTURE.md` is the map.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod client;
pub mod core;
pub mod net;
pub mod proto;
pub mod sim;
pub mod storage;
