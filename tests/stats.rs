//! Statistics accuracy through the real node code paths: five core nodes (N = 3) over
//! memory storage, driven in-process by a lossless zero-delay bus. Client requests enter
//! through `handle_client`, are forwarded, coordinated and replicated exactly as over QUIC,
//! and `ClientRequest::Stats` replies are merged with `ClusterStats::merge`, as `ringkv
//! stats` does. Deterministic: fixed seeds, virtual time that never advances, no threads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringkv::core::node::{MemberSpec, Node, NodeConfig, Now};
use ringkv::core::object::{Context, Op};
use ringkv::core::placement::ring::{NodeId, key_position};
use ringkv::core::stats::{ClusterStats, HOT_KEYS_EPSILON, NodeAnswer, StatsInfo};
use ringkv::proto::{ClientReply, ClientRequest, Key, PeerMessage, QuorumOpts};
use ringkv::storage::{MemoryStorage, Storage};

const NODES: usize = 5;
/// Distinct keys written in the accuracy test.
const KEYS: u64 = 100_000;
/// Zipf skew (YCSB's default) and the zipf workload's size.
const ZIPF_THETA: f64 = 0.99;
const ZIPF_KEYS: usize = 1_000;
const ZIPF_REQUESTS: u64 = 20_000;
/// Most timer rounds a restarted node may need to finish its start-up scans.
const STARTUP_ROUNDS_MAX: usize = 10_000;
/// Hot keys asked of the merge.
const HOT_KEYS_SHOWN: usize = 10;

/// Five nodes and the messages between them.
struct Bus {
    nodes: BTreeMap<NodeId, Node>,
    storages: BTreeMap<NodeId, Arc<MemoryStorage>>,
    members: Vec<MemberSpec>,
    queue: VecDeque<(NodeId, NodeId, PeerMessage)>,
    replies: Vec<(NodeId, u64, ClientReply)>,
    next_req: u64,
    now: Now,
}

impl Bus {
    fn new() -> Bus {
        let members: Vec<MemberSpec> = (1..=NODES)
            .map(|i| MemberSpec::new(format!("n{i}"), format!("127.0.0.1:{i}")))
            .collect();
        let mut bus = Bus {
            nodes: BTreeMap::new(),
            storages: BTreeMap::new(),
            members,
            queue: VecDeque::new(),
            replies: Vec::new(),
            next_req: 1,
            now: Now {
                mono_ms: 1_000,
                wall_ms: 1_700_000_000_000,
            },
        };
        for spec in bus.members.clone() {
            bus.start(&spec.name, Arc::new(MemoryStorage::new()));
        }
        bus
    }

    /// Opens node `name` over `storage` and runs its start-up scans to the end.
    fn start(&mut self, name: &NodeId, storage: Arc<MemoryStorage>) {
        let mut config = NodeConfig::new(name.as_str());
        // Anti-entropy would only add repair traffic to a lossless bus.
        config.anti_entropy_interval_ms = 0;
        config.rng_seed = 7;
        let dyn_storage: Arc<dyn Storage> = storage.clone();
        let mut node = match Node::new(config, self.members.clone(), dyn_storage, self.now) {
            Ok(node) => node,
            Err(e) => panic!("node {name} does not start: {e}"),
        };
        for _ in 0..STARTUP_ROUNDS_MAX {
            match node.poll_timeout() {
                Some(deadline) if deadline <= self.now.mono_ms => node.handle_timeout(self.now),
                _ => break,
            }
        }
        self.nodes.insert(name.clone(), node);
        self.storages.insert(name.clone(), storage);
        self.drain(name);
    }

    fn node(&mut self, name: &NodeId) -> &mut Node {
        match self.nodes.get_mut(name) {
            Some(node) => node,
            None => panic!("no node {name}"),
        }
    }

    fn drain(&mut self, name: &NodeId) {
        let node = self.node(name);
        let mut out = Vec::new();
        while let Some((to, msg)) = node.poll_transmit() {
            out.push((to, msg));
        }
        let mut replies = Vec::new();
        while let Some((id, reply)) = node.poll_reply() {
            replies.push((id, reply));
        }
        for (to, msg) in out {
            self.queue.push_back((to, name.clone(), msg));
        }
        for (id, reply) in replies {
            self.replies.push((name.clone(), id, reply));
        }
    }

    /// Sends `request` to node `at`, delivers every message it causes, returns the reply.
    fn request(&mut self, at: &NodeId, request: ClientRequest) -> ClientReply {
        let id = self.next_req;
        self.next_req += 1;
        let now = self.now;
        self.node(at).handle_client(now, id, request);
        self.drain(at);
        while let Some((to, from, msg)) = self.queue.pop_front() {
            self.node(&to).handle_message(now, from, msg);
            self.drain(&to);
        }
        let Some(found) = self
            .replies
            .iter()
            .position(|(node, req, _)| node == at && *req == id)
        else {
            panic!("node {at} did not answer request {id}");
        };
        self.replies.swap_remove(found).2
    }

    fn stats(&mut self, at: &NodeId) -> StatsInfo {
        match self.request(at, ClientRequest::Stats) {
            ClientReply::Stats(info) => *info,
            other => panic!("stats of {at}: {other:?}"),
        }
    }

    fn cluster_stats(&mut self) -> ClusterStats {
        let names: Vec<NodeId> = self.nodes.keys().cloned().collect();
        let answers = names
            .into_iter()
            .map(|name| NodeAnswer {
                addr: format!("{name}:0"),
                result: Ok(self.stats(&name)),
                node: name,
            })
            .collect();
        ClusterStats::merge(answers, HOT_KEYS_SHOWN)
    }

    fn name(&self, i: usize) -> NodeId {
        self.members[i % NODES].name.clone()
    }
}

fn written(reply: &ClientReply, key: &Key) {
    match reply {
        ClientReply::Written { .. } | ClientReply::Read { .. } => {}
        other => panic!("{key}: {other:?}"),
    }
}

fn relative_error(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64).abs() / truth as f64
}

#[test]
fn cluster_distinct_keys_are_within_2_percent_at_100k_keys_despite_3_copies() {
    let mut bus = Bus::new();
    for i in 0..KEYS {
        let key = Key::new("acc", format!("key-{i}"));
        let request = ClientRequest::Write {
            key: key.clone(),
            op: Op::Put {
                value: b"v".to_vec(),
                context: Context::empty(),
            },
            opts: QuorumOpts::default(),
            id: None,
        };
        let at = bus.name(i as usize);
        written(&bus.request(&at, request), &key);
    }
    // The truth per node: keys whose three primaries include it.
    let mut held: BTreeMap<NodeId, u64> = BTreeMap::new();
    {
        let ring = bus.nodes[&bus.name(0)].membership().ring().clone();
        for i in 0..KEYS {
            let position = key_position(b"acc", format!("key-{i}").as_bytes());
            for node in ring.primaries(ring.partition_of(position), 3) {
                *held.entry(node.clone()).or_default() += 1;
            }
        }
    }
    let cluster = bus.cluster_stats();
    assert!(
        !cluster.partial && cluster.unanswered.is_empty(),
        "{:?}",
        cluster.unanswered
    );
    assert_eq!(cluster.nodes.len(), NODES);
    let copies: u64 = cluster.nodes.iter().map(|(_, s)| s.distinct_keys).sum();
    let error = relative_error(cluster.distinct_keys, KEYS);
    println!(
        "stats accuracy: cluster estimate {} for {KEYS} keys (error {:.3} %), sum of node estimates {copies}, node sketch {} B",
        cluster.distinct_keys,
        100.0 * error,
        cluster.nodes[0].1.distinct_sketch.len()
    );
    assert!(
        error <= 0.02,
        "cluster estimate {} for {KEYS}",
        cluster.distinct_keys
    );
    assert!(
        copies > 2 * KEYS,
        "three copies of every key: the nodes' own figures add up to about 3 × {KEYS}, got {copies}"
    );
    for (_, info) in &cluster.nodes {
        let truth = held[&info.node];
        let node_error = relative_error(info.distinct_keys, truth);
        let bytes_max = info
            .partition_stats
            .iter()
            .map(|p| p.sketch_bytes)
            .max()
            .unwrap_or(0);
        println!(
            "  {}: estimate {} of {truth} held (error {:.3} %), {} partitions with keys, partition sketches {} B in all, {} B at most",
            info.node,
            info.distinct_keys,
            100.0 * node_error,
            info.partitions_with_keys(),
            info.partition_sketch_bytes,
            bytes_max
        );
        assert!(info.scan_complete);
        assert!(
            node_error <= 0.02,
            "{}: {} of {truth}",
            info.node,
            info.distinct_keys
        );
        // Bounded memory: p = 10 sketches stay near 1 KiB however many keys they see.
        assert!(
            bytes_max <= 1_100,
            "{}: a partition sketch of {bytes_max} B",
            info.node
        );
        let per_partition: u64 = info.partition_stats.iter().map(|p| p.distinct_keys).sum();
        assert!(
            relative_error(per_partition, truth) <= 0.05,
            "{}: partition estimates sum to {per_partition} of {truth}",
            info.node
        );
    }

    // A restart rebuilds the figures from storage with the start-up scan.
    let n1 = bus.name(0);
    let before = cluster
        .nodes
        .iter()
        .find(|(_, s)| s.node == n1)
        .map(|(_, s)| s.distinct_keys);
    let storage = bus.storages[&n1].clone();
    bus.nodes.remove(&n1);
    bus.start(&n1, storage);
    let after = bus.stats(&n1);
    assert!(after.scan_complete);
    assert_eq!(
        Some(after.distinct_keys),
        before,
        "estimate after a restart"
    );
}

/// Draws ranks `0..keys` with probability ∝ 1/(rank+1)^θ by inverting the cumulative sum.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(keys: usize, theta: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..keys)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(theta);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

#[test]
fn the_top_key_of_a_zipfian_workload_is_the_clusters_first_hot_key() {
    let mut bus = Bus::new();
    let zipf = Zipf::new(ZIPF_KEYS, ZIPF_THETA);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut truth = vec![0u64; ZIPF_KEYS];
    for i in 0..ZIPF_REQUESTS {
        let rank = zipf.draw(&mut rng);
        truth[rank] += 1;
        let key = Key::new("zipf", format!("user-{rank}"));
        let request = if rng.random_bool(0.5) {
            ClientRequest::Get {
                key: key.clone(),
                opts: QuorumOpts::default(),
            }
        } else {
            ClientRequest::Write {
                key: key.clone(),
                op: Op::PutLww {
                    value: i.to_be_bytes().to_vec(),
                },
                opts: QuorumOpts::default(),
                id: None,
            }
        };
        let at = bus.name(rng.random_range(0..NODES));
        written(&bus.request(&at, request), &key);
    }
    let mut ranked: Vec<(usize, u64)> = truth.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let cluster = bus.cluster_stats();
    assert!(!cluster.partial);
    assert_eq!(
        cluster.requests_counted, ZIPF_REQUESTS,
        "each request counted once, by its coordinator"
    );
    let shown: Vec<String> = cluster
        .hot_keys
        .iter()
        .take(5)
        .map(|h| format!("{} ({})", h.key, h.count))
        .collect();
    println!(
        "zipf: true top {:?}, cluster hot keys {shown:?}",
        &ranked[..5]
    );
    let top = &cluster.hot_keys[0];
    assert_eq!(top.key, Key::new("zipf", format!("user-{}", ranked[0].0)));
    let slack = (HOT_KEYS_EPSILON * ZIPF_REQUESTS as f64).ceil() as u64;
    assert!(
        top.count >= ranked[0].1 && top.count <= ranked[0].1 + slack,
        "count {} for a true {}",
        top.count,
        ranked[0].1
    );
    // The next two are well separated in a zipf of this size, so they are found in order.
    let names: Vec<Key> = cluster
        .hot_keys
        .iter()
        .take(3)
        .map(|h| h.key.clone())
        .collect();
    let expected: Vec<Key> = ranked[..3]
        .iter()
        .map(|(rank, _)| Key::new("zipf", format!("user-{rank}")))
        .collect();
    assert_eq!(names, expected);
    // A request is counted by the node that coordinates it, and any of a key's three
    // primaries coordinates the requests it receives, so the hottest key's count is split
    // over several nodes and only the merge sees all of it.
    let item = ringkv::core::stats::sketch_item(&top.key);
    let per_node: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|(_, info)| match info.hot_windows() {
            Ok((current, previous)) => {
                current.sketch().estimate(&item) + previous.sketch().estimate(&item)
            }
            Err(e) => panic!("{e}"),
        })
        .collect();
    println!("zipf: top key counted per node {per_node:?}");
    assert!(
        per_node.iter().filter(|&&c| c > 0).count() >= 2,
        "{per_node:?}"
    );
    assert!(per_node.iter().all(|&c| c < top.count), "{per_node:?}");
}
