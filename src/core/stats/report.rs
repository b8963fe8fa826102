//! What one node reports to `ringkv stats`, and the node-side hooks that keep it current.
//!
//! The reply carries the node's sketches themselves (serialized), not only its estimates:
//! a cluster's distinct keys are the estimate of the *union* of the nodes' HLLs, and its hot
//! keys come from the *sum* of their count-min sketches, neither of which can be computed
//! from per-node numbers. Sketches travel as MessagePack bytes inside the reply so that a
//! malformed or incompatible one is reported against its node by the merge, instead of
//! failing the whole reply's decoding.

use serde::{Deserialize, Serialize};

use ringkv_sketches::{Hll, TopK};

use crate::core::membership::Membership;
use crate::core::node::{NodeConfig, Now};
use crate::core::placement::ring::NodeId;
use crate::core::repair::exchange::AeStats;
use crate::core::replica::Replica;
use crate::core::stats::{AeProgress, RequestWindows};
use crate::core::stats::{HotKey, PARTITION_HLL_PRECISION, StatsError};
use crate::proto::PeerMessage;

/// The statistics subsystem: request counts for hot keys, and when each partition was
/// last compared. Distinct keys are counted by the replica, which sees every write.
#[derive(Debug)]
pub(crate) struct Statistics {
    traffic: RequestWindows,
    progress: AeProgress,
}

/// One node's statistics, as `ClientReply::Stats` carries them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsInfo {
    /// The reporting node.
    pub node: NodeId,
    /// Estimated distinct keys in this node's data space.
    pub distinct_keys: u64,
    /// False while the start-up scan still runs: the figures then miss older keys.
    pub scan_complete: bool,
    /// The node's distinct-key HLL (precision 14), MessagePack.
    #[serde(with = "serde_bytes")]
    pub distinct_sketch: Vec<u8>,
    /// Partitions of the ring (Q).
    pub partitions: u32,
    /// Precision of the per-partition HLLs.
    pub partition_precision: u8,
    /// Encoded bytes of all per-partition HLLs together (their memory, within a few %).
    pub partition_sketch_bytes: u64,
    /// Every partition that holds a key here or was compared by anti-entropy.
    pub partition_stats: Vec<PartitionStats>,
    /// Length of one request-count window.
    pub window_ms: u64,
    /// How long the current window has run.
    pub window_age_ms: u64,
    /// The current window's count-min sketch and hot-key candidates (`TopK`), MessagePack.
    #[serde(with = "serde_bytes")]
    pub hot_current: Vec<u8>,
    /// The previous window's, MessagePack.
    #[serde(with = "serde_bytes")]
    pub hot_previous: Vec<u8>,
    /// Anti-entropy progress of the reporting node.
    pub ae: AeReport,
}

/// One partition's line in a node's statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    /// The partition's number, from 0 to Q - 1.
    pub partition: u32,
    /// Estimated distinct keys of the partition on this node (0 if it holds none).
    pub distinct_keys: u64,
    /// Encoded bytes of the partition's HLL (0 if it holds no key).
    pub sketch_bytes: u64,
    /// Milliseconds since this node last took part in a root comparison of the partition.
    pub last_exchange_age_ms: Option<u64>,
}

/// Anti-entropy progress of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeReport {
    /// Root comparisons this node started.
    pub exchanges: u64,
    /// Comparisons (answered by this node) whose roots differed.
    pub mismatches: u64,
    /// Objects this node sent to repair a peer.
    pub keys_repaired: u64,
    /// Bytes of anti-entropy metadata this node sent.
    pub bytes_sent: u64,
    /// Partitions this node is a primary of (at the default N).
    pub primary_partitions: u32,
    /// How many of them it has compared since it started.
    pub partitions_compared: u32,
    /// Age of the least recent comparison among those, if any.
    pub oldest_exchange_age_ms: Option<u64>,
}

impl StatsInfo {
    /// The node's distinct-key sketch, decoded and validated.
    pub fn distinct_sketch(&self) -> Result<Hll, StatsError> {
        rmp_serde::from_slice(&self.distinct_sketch)
            .map_err(|e| self.bad("distinct-key sketch", self.distinct_sketch.len(), e))
    }

    /// The current and previous request windows, decoded and validated.
    pub fn hot_windows(&self) -> Result<(TopK, TopK), StatsError> {
        let current = rmp_serde::from_slice(&self.hot_current)
            .map_err(|e| self.bad("request-count window", self.hot_current.len(), e))?;
        let previous = rmp_serde::from_slice(&self.hot_previous)
            .map_err(|e| self.bad("request-count window", self.hot_previous.len(), e))?;
        Ok((current, previous))
    }

    /// This node's hottest keys over both windows, at most `max`, hottest first.
    pub fn hot_keys(&self, max: usize) -> Result<Vec<HotKey>, StatsError> {
        let (mut recent, previous) = self.hot_windows()?;
        recent
            .merge(&previous)
            .map_err(|source| StatsError::Sketch {
                node: self.node.clone(),
                what: "request-count window",
                source: Box::new(source),
            })?;
        Ok(HotKey::top(&recent, max))
    }

    /// Partitions holding at least one key on this node.
    pub fn partitions_with_keys(&self) -> usize {
        self.partition_stats
            .iter()
            .filter(|p| p.distinct_keys > 0)
            .count()
    }

    /// A sketch of this report that does not decode, as an error naming the node.
    fn bad(&self, what: &'static str, len: usize, e: rmp_serde::decode::Error) -> StatsError {
        StatsError::Sketch {
            node: self.node.clone(),
            what,
            source: Box::new(ringkv_sketches::SketchError::Malformed {
                sketch: what,
                len,
                reason: e.to_string(),
            }),
        }
    }
}

impl Statistics {
    pub(crate) fn new(
        window_ms: u64,
        partitions: u32,
        now_ms: u64,
    ) -> Result<Statistics, StatsError> {
        Ok(Statistics {
            traffic: RequestWindows::new(window_ms, now_ms)?,
            progress: AeProgress::new(partitions),
        })
    }

    /// Request counts of the keys this node coordinated (hot keys).
    pub(crate) fn traffic(&self) -> &RequestWindows {
        &self.traffic
    }

    pub(crate) fn traffic_mut(&mut self) -> &mut RequestWindows {
        &mut self.traffic
    }

    /// When this node last compared each partition with a peer.
    pub(crate) fn progress(&self) -> &AeProgress {
        &self.progress
    }

    pub(crate) fn progress_mut(&mut self) -> &mut AeProgress {
        &mut self.progress
    }

    /// This node's statistics at `now`; rotates the request windows first.
    pub(crate) fn report(
        &mut self,
        now: Now,
        config: &NodeConfig,
        replica: &mut Replica,
        members: &Membership,
        ae_stats: &AeStats,
    ) -> Result<StatsInfo, StatsError> {
        let node = config.name.clone();
        let encode = |what: &str, e: rmp_serde::encode::Error| StatsError::Encode {
            node: node.clone(),
            reason: format!("{what}: {e}"),
        };
        self.traffic.rotate(now.mono_ms);
        let hot_current =
            rmp_serde::to_vec(self.traffic.current()).map_err(|e| encode("current window", e))?;
        let hot_previous =
            rmp_serde::to_vec(self.traffic.previous()).map_err(|e| encode("previous window", e))?;
        // The start-up tree rebuild is the scan that fills the distinct-key sketches.
        let scan_complete = replica.trees().is_ready();
        let distinct = replica.distinct_mut();
        let distinct_keys = distinct.estimate();
        let distinct_sketch =
            rmp_serde::to_vec(distinct.node_sketch()).map_err(|e| encode("distinct keys", e))?;
        let estimates = distinct.partition_estimates();
        let partition_sketch_bytes = estimates.iter().map(|&(_, _, b)| b as u64).sum();

        let age = |ms: u64| now.mono_ms.saturating_sub(ms);
        let mut partition_stats: Vec<PartitionStats> = estimates
            .into_iter()
            .map(|(partition, distinct_keys, bytes)| PartitionStats {
                partition,
                distinct_keys,
                sketch_bytes: bytes as u64,
                last_exchange_age_ms: self.progress.last(partition).map(age),
            })
            .collect();
        for (partition, last) in self.progress.compared() {
            if replica.distinct().partition_sketch(partition).is_none() {
                partition_stats.push(PartitionStats {
                    partition,
                    distinct_keys: 0,
                    sketch_bytes: 0,
                    last_exchange_age_ms: Some(age(last)),
                });
            }
        }
        partition_stats.sort_by_key(|p| p.partition);

        let ring = members.ring();
        let n = usize::from(config.n);
        let mut ae = AeReport {
            exchanges: ae_stats.exchanges,
            mismatches: ae_stats.mismatches,
            keys_repaired: ae_stats.keys_sent,
            bytes_sent: ae_stats.bytes_sent,
            ..AeReport::default()
        };
        for p in 0..ring.partitions() {
            if !ring.primaries(p, n).contains(&&config.name) {
                continue;
            }
            ae.primary_partitions += 1;
            if let Some(last) = self.progress.last(p) {
                ae.partitions_compared += 1;
                ae.oldest_exchange_age_ms =
                    Some(ae.oldest_exchange_age_ms.unwrap_or(0).max(age(last)));
            }
        }
        Ok(StatsInfo {
            node: config.name.clone(),
            distinct_keys,
            scan_complete,
            distinct_sketch,
            partitions: ring.partitions(),
            partition_precision: PARTITION_HLL_PRECISION,
            partition_sketch_bytes,
            partition_stats,
            window_ms: self.traffic.window_ms(),
            window_age_ms: self.traffic.current_age_ms(now.mono_ms),
            hot_current,
            hot_previous,
            ae,
        })
    }

    /// Anti-entropy bookkeeping on a received message: each root in an `AeRoots` is a
    /// root comparison of its partition by this node, whether or not the roots match.
    pub(crate) fn note_message(&mut self, now: Now, replica: &Replica, msg: &PeerMessage) {
        if let PeerMessage::AeRoots { roots, .. } = msg
            && replica.trees().is_ready()
        {
            for (partition, _) in crate::core::repair::exchange::unpack_roots(roots) {
                self.progress.record(partition, now.mono_ms);
            }
        }
    }
}
