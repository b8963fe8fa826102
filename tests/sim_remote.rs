//! The simulator's client programs against a real 3-node cluster on 127.0.0.1: the
//! `--cluster` path of the examples, end to end over QUIC with mTLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringkv::client::Client;
use ringkv::core::node::{MemberSpec, NodeConfig};
use ringkv::core::object::Policy;
use ringkv::net::driver::{bind_node, start_with_storage};
use ringkv::net::{CertStore, Role};
use ringkv::sim::check_history;
use ringkv::sim::remote::{final_reads, run_programs};
use ringkv::sim::workload::{Program, QuorumChoice, RmwProgram, keys_for};
use ringkv::storage::MemoryStorage;

/// Bound on the whole test; loopback answers in milliseconds.
const TEST_TIMEOUT_MS: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_run_against_a_real_cluster_and_pass_the_checkers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).expect("CA");
    for name in ["n1", "n2", "n3"] {
        store.issue(name, Role::Node).expect("node cert");
    }
    store.issue("client", Role::Client).expect("client cert");
    let local: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut bound = Vec::new();
    for name in ["n1", "n2", "n3"] {
        bound.push((name, bind_node(local, &certs, name).expect("bind")));
    }
    let members: Vec<MemberSpec> = bound
        .iter()
        .map(|(name, b)| MemberSpec::new(*name, b.addr().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (name, b) in bound {
        let mut config = NodeConfig::new(name);
        config.partitions = 64;
        let storage = Arc::new(MemoryStorage::new());
        nodes.push(start_with_storage(b, config, members.clone(), storage).expect("start"));
    }
    let addr = nodes[0].addr();
    let run = async {
        let client = Client::connect(addr, &certs, "client")
            .await
            .expect("connect");
        let mut results = BTreeMap::new();
        for policy in [Policy::Siblings, Policy::Counter, Policy::Set] {
            let bucket = format!("remote-{policy}");
            let programs: Vec<Box<dyn Program>> = (0..3)
                .map(|c| {
                    let p =
                        RmwProgram::new(policy, c, keys_for(&bucket, 2), QuorumChoice::Default, 12);
                    Box::new(p) as Box<dyn Program>
                })
                .collect();
            let history = run_programs(&client, programs, 5).await;
            let fin = final_reads(&client, &keys_for(&bucket, 2)).await;
            let report = check_history(&history, &fin.values, 0);
            results.insert(policy, (history.ops.len(), report, fin.unsettled));
        }
        results
    };
    let results = tokio::time::timeout(Duration::from_millis(TEST_TIMEOUT_MS), run)
        .await
        .expect("the remote workload finishes in time");
    for (policy, (ops, report, unsettled)) in results {
        assert_eq!(ops, 36, "{policy}: every request is recorded");
        assert!(
            report.acked_updates > 0,
            "{policy}: updates were acknowledged"
        );
        assert!(
            report.violations.is_empty(),
            "{policy}: {:?}",
            report.violations
        );
        assert!(unsettled.is_empty(), "{policy}: {unsettled:?}");
    }
    for node in nodes {
        node.shutdown().await.expect("clean shutdown");
    }
}
