//! Where keys live: the consistent-hash ring with virtual nodes, preference lists with
//! sloppy fallbacks, and the quorum counter that decides when a request is done.

pub mod quorum;
pub mod ring;
