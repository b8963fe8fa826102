//! A real cluster of in-process nodes on 127.0.0.1 with ephemeral ports: every message
//! between nodes and from clients crosses QUIC with mutual TLS.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ringkv::client::Client;
use ringkv::core::node::{MemberSpec, NodeConfig};
use ringkv::core::object::Object;
use ringkv::core::placement::ring::{Member, NodeId, Ring, key_position};
use ringkv::core::repair::transfer::TRANSFER_BYTES_PER_SEC_DEFAULT;
use ringkv::core::replica::location;
use ringkv::net::driver::{NodeHandle, NodeOptions, bind_node, start_bound};
use ringkv::net::{CertStore, Role};
use ringkv::proto::Key;
use ringkv::storage::{Storage, SyncMode};

/// Longest any test waits for a condition.
pub const WAIT_MS: u64 = 20_000;
/// Pause between two checks of a condition.
pub const POLL_MS: u64 = 50;
/// Partitions in test rings: small, so rings build fast.
pub const PARTITIONS: u32 = 64;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub certs: PathBuf,
    pub members: Vec<MemberSpec>,
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Option<NodeHandle>>,
    /// Partition streaming budget of every node (ring-change tests slow it down).
    pub transfer_bytes_per_sec: u64,
}

impl TestCluster {
    /// Starts `count` nodes n1..nK.
    pub async fn start(count: usize) -> TestCluster {
        Self::start_throttled(count, TRANSFER_BYTES_PER_SEC_DEFAULT).await
    }

    /// Starts `count` nodes whose partition streaming is limited to `bytes_per_sec`.
    pub async fn start_throttled(count: usize, transfer_bytes_per_sec: u64) -> TestCluster {
        // RUST_LOG=ringkv=debug shows what the nodes do; off by default.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let store = CertStore::init(&certs).expect("CA");
        for i in 1..=count {
            store
                .issue(&format!("n{i}"), Role::Node)
                .expect("node cert");
        }
        store.issue("client", Role::Client).expect("client cert");
        let mut bound = Vec::new();
        for i in 1..=count {
            let b =
                bind_node("127.0.0.1:0".parse().unwrap(), &certs, &format!("n{i}")).expect("bind");
            bound.push(b);
        }
        let addrs: Vec<SocketAddr> = bound.iter().map(|b| b.addr()).collect();
        let members: Vec<MemberSpec> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut m = MemberSpec::new(format!("n{}", i + 1), a.to_string());
                m.vnodes = 16;
                m
            })
            .collect();
        let mut cluster = TestCluster {
            dir,
            certs,
            members,
            addrs,
            nodes: Vec::new(),
            transfer_bytes_per_sec,
        };
        for (i, b) in bound.into_iter().enumerate() {
            let handle = start_bound(b, cluster.options(i)).await.expect("start");
            cluster.nodes.push(Some(handle));
        }
        cluster
    }

    /// Starts node n{K+1} with no static peers, joining through node `seed` (gossip
    /// announce, like `ringkv node --seed`); returns its index.
    pub async fn join(&mut self, seed: usize) -> usize {
        let seeds = vec![self.addrs[seed].to_string()];
        self.start_extra(seeds).await
    }

    /// Starts node n{K+1} alone: no static peers and no seeds, so it forms a cluster of
    /// one until it is told to join (`ringkv join`); returns its index.
    pub async fn join_later(&mut self) -> usize {
        self.start_extra(Vec::new()).await
    }

    async fn start_extra(&mut self, seeds: Vec<String>) -> usize {
        let i = self.nodes.len();
        let name = format!("n{}", i + 1);
        CertStore::open(&self.certs)
            .expect("CA")
            .issue(&name, Role::Node)
            .expect("node cert");
        let bound = bind_node("127.0.0.1:0".parse().unwrap(), &self.certs, &name).expect("bind");
        let mut spec = MemberSpec::new(name.clone(), bound.addr().to_string());
        spec.vnodes = 16;
        self.addrs.push(bound.addr());
        self.members.push(spec.clone());
        let mut opts = self.options(i);
        opts.members = vec![spec];
        opts.config.seeds = seeds;
        let handle = start_bound(bound, opts).await.expect("start");
        self.nodes.push(Some(handle));
        i
    }

    /// Forgets node `i` in the test's own ring (after it has left the cluster).
    pub fn forget(&mut self, i: usize) {
        let name = NodeId::new(format!("n{}", i + 1));
        self.members.retain(|m| m.name != name);
    }

    /// True once node `i` has stopped by itself (for example after leaving).
    pub fn has_stopped(&self, i: usize) -> bool {
        self.nodes[i].as_ref().is_none_or(|n| n.is_finished())
    }

    fn options(&self, i: usize) -> NodeOptions {
        let mut config = NodeConfig::new(format!("n{}", i + 1));
        config.partitions = PARTITIONS;
        config.probe_period_ms = 200;
        config.handoff_interval_ms = 200;
        config.request_timeout_ms = 1_500;
        config.transfer_bytes_per_sec = self.transfer_bytes_per_sec;
        NodeOptions {
            config,
            members: self.members.clone(),
            certs_dir: self.certs.clone(),
            data_dir: self.dir.path().join(format!("n{}", i + 1)),
            sync: SyncMode::Group,
        }
    }

    /// A client connected to node `i` (0-based).
    pub async fn client(&self, i: usize) -> Client {
        Client::connect(self.addrs[i], &self.certs, "client")
            .await
            .expect("client connects")
    }

    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        node.shutdown().await.expect("clean shutdown");
    }

    pub async fn kill(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        node.kill().await;
    }

    /// Restarts node `i` on its old address and data directory.
    pub async fn restart(&mut self, i: usize) {
        let name = format!("n{}", i + 1);
        let mut bound = None;
        for _ in 0..(WAIT_MS / POLL_MS) {
            match bind_node(self.addrs[i], &self.certs, &name) {
                Ok(b) => {
                    bound = Some(b);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
            }
        }
        let bound = bound.expect("the old port frees up");
        let handle = start_bound(bound, self.options(i)).await.expect("restart");
        self.nodes[i] = Some(handle);
    }

    pub fn storage(&self, i: usize) -> Arc<dyn Storage> {
        self.nodes[i].as_ref().expect("node is running").storage()
    }

    /// The ring every node computes.
    pub fn ring(&self) -> Ring {
        let members: Vec<Member> = self
            .members
            .iter()
            .map(|m| Member {
                name: m.name.clone(),
                vnodes: m.vnodes,
            })
            .collect();
        Ring::new(&members, PARTITIONS).expect("ring")
    }

    /// Indices (0-based) of the key's first `n` primaries.
    pub fn primaries(&self, key: &Key, n: usize) -> Vec<usize> {
        let ring = self.ring();
        let p = ring.partition_of(key_position(&key.bucket, &key.key));
        ring.primaries(p, n).into_iter().map(index_of).collect()
    }

    /// The copy node `i` holds of `key` in its data space (not its hints).
    pub fn local(&self, i: usize, key: &Key) -> Option<Object> {
        let (space, raw) = location(key, None).expect("valid key");
        let bytes = self.storage(i).get(space, &raw).expect("storage read")?;
        Some(rmp_serde::from_slice(&bytes).expect("stored object decodes"))
    }

    /// Hints node `i` holds for node `primary`, per `ringkv status` on node `i`.
    pub async fn hints_held(&self, i: usize, primary: usize) -> u64 {
        let status = self.client(i).await.status().await.expect("status");
        let name = NodeId::new(format!("n{}", primary + 1));
        status
            .members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.hints)
            .unwrap_or(0)
    }

    pub async fn state_of(&self, observer: usize, node: usize) -> String {
        let status = self.client(observer).await.status().await.expect("status");
        let name = NodeId::new(format!("n{}", node + 1));
        status
            .members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.state.clone())
            .unwrap_or_default()
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                if self.has_stopped(i) {
                    self.nodes[i] = None;
                } else {
                    self.stop(i).await;
                }
            }
        }
    }
}

pub fn index_of(name: &NodeId) -> usize {
    name.as_str()[1..].parse::<usize>().expect("nK name") - 1
}

/// Waits (bounded by [`WAIT_MS`]) until `check` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    panic!("timed out after {WAIT_MS} ms waiting for: {what}");
}
