//! Cluster figures from every node's statistics: union of HLLs, sum of count-mins.
//!
//! Lives in the library, not the CLI, so tests and other tools merge exactly as `ringkv
//! stats` does. A node that did not answer, or answered with a sketch that does not decode
//! or does not match the others, is named in [`ClusterStats::unanswered`] and the figures
//! are marked partial rather than silently computed from fewer nodes. A node's sketches
//! are merged all or nothing, so a bad count-min cannot leave its HLL half counted.

use serde::Serialize;

use ringkv_sketches::{Hll, TopK};

use crate::core::placement::ring::NodeId;
use crate::core::stats::{StatsError, StatsInfo, item_key};
use crate::proto::Key;

/// A key and its estimated request count (an upper bound: count-min never undercounts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HotKey {
    /// The key.
    pub key: Key,
    /// Requests for the key that the answering nodes coordinated over their current and
    /// previous windows, summed.
    pub count: u64,
}

/// What one member answered to a stats request (or why it did not).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeAnswer {
    /// The member's node id.
    pub node: NodeId,
    /// The address the stats request was sent to.
    pub addr: String,
    /// The node's statistics, or why they could not be had (unreachable, an error reply),
    /// as text.
    pub result: Result<StatsInfo, String>,
}

/// A member whose statistics are missing from the cluster figures, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unanswered {
    /// The member's node id.
    pub node: NodeId,
    /// Its address.
    pub addr: String,
    /// Why its statistics are missing: it did not answer, or its sketches did not decode or
    /// did not match the others'.
    pub error: String,
}

/// The cluster's statistics, merged from its members' answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStats {
    /// Estimated distinct keys in the cluster, each counted once however many replicas
    /// hold it (the estimate of the union of the nodes' HLLs).
    pub distinct_keys: u64,
    /// The hottest keys over the nodes' last one to two windows, hottest first.
    pub hot_keys: Vec<HotKey>,
    /// Requests counted by the merged windows (the count-min total).
    pub requests_counted: u64,
    /// True when some member is missing from the figures (see `unanswered`).
    pub partial: bool,
    /// The members merged, in the order given.
    pub nodes: Vec<(String, StatsInfo)>,
    /// The members not merged, with the reason.
    pub unanswered: Vec<Unanswered>,
    /// Members still running their start-up scan: their keys may be undercounted.
    pub scans_incomplete: Vec<NodeId>,
}

/// The running union: HLL and two-window hot-key aggregate.
struct Union {
    hll: Hll,
    hot: Option<TopK>,
}

impl HotKey {
    /// The `max` hottest candidates of `topk`, as keys; items that name no key are skipped.
    pub fn top(topk: &TopK, max: usize) -> Vec<HotKey> {
        topk.top()
            .into_iter()
            .filter_map(|(item, count)| item_key(item).map(|key| HotKey { key, count }))
            .take(max)
            .collect()
    }
}

impl ClusterStats {
    /// Merges every member's answer; lists at most `hot_keys_max` hot keys.
    pub fn merge(answers: Vec<NodeAnswer>, hot_keys_max: usize) -> ClusterStats {
        let mut union = Union {
            hll: Hll::new(),
            hot: None,
        };
        let mut nodes = Vec::new();
        let mut unanswered = Vec::new();
        for answer in answers {
            let info = match answer.result {
                Ok(info) => info,
                Err(error) => {
                    unanswered.push(Unanswered {
                        node: answer.node,
                        addr: answer.addr,
                        error,
                    });
                    continue;
                }
            };
            match union.add(&info) {
                Ok(next) => {
                    union = next;
                    nodes.push((answer.addr, info));
                }
                Err(e) => unanswered.push(Unanswered {
                    node: answer.node,
                    addr: answer.addr,
                    error: e.to_string(),
                }),
            }
        }
        let (hot_keys, requests_counted) = match &union.hot {
            Some(hot) => (HotKey::top(hot, hot_keys_max), hot.sketch().total()),
            None => (Vec::new(), 0),
        };
        let scans_incomplete = nodes
            .iter()
            .filter(|(_, info)| !info.scan_complete)
            .map(|(_, info)| info.node.clone())
            .collect();
        ClusterStats {
            distinct_keys: union.hll.estimate(),
            hot_keys,
            requests_counted,
            partial: !unanswered.is_empty(),
            nodes,
            unanswered,
            scans_incomplete,
        }
    }
}

impl Union {
    /// The union with `info` added, or why `info` cannot be added (the union is unchanged).
    fn add(&self, info: &StatsInfo) -> Result<Union, StatsError> {
        let incompatible = |what, source: ringkv_sketches::SketchError| StatsError::Sketch {
            node: info.node.clone(),
            what,
            source: Box::new(source),
        };
        let mut hll = self.hll.clone();
        hll.merge(&info.distinct_sketch()?)
            .map_err(|e| incompatible("distinct-key sketch", e))?;
        let (current, previous) = info.hot_windows()?;
        // A count-min sum is not idempotent: each window of each node is added exactly once,
        // into an aggregate that starts empty.
        let mut hot = match &self.hot {
            Some(hot) => hot.clone(),
            None => current.cleared(),
        };
        hot.merge(&current)
            .map_err(|e| incompatible("request-count window", e))?;
        hot.merge(&previous)
            .map_err(|e| incompatible("request-count window", e))?;
        Ok(Union {
            hll,
            hot: Some(hot),
        })
    }
}
