//! Everything that brings replicas back into agreement without a client asking:
//! incremental Merkle trees, the Merkle exchange, the sketch (HLL + Bloom) exchange for
//! partitions that differ a lot, tombstone reaping, and partition transfer when the ring
//! changes.

pub mod exchange;
pub mod merkle;
pub mod reap;
pub mod sketch;
pub mod transfer;
