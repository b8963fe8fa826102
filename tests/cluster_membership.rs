//! Over real QUIC: a node joins a loaded cluster through a seed and takes its share of
//! the partitions while every key stays readable; a node leaves and its data stays at N
//! replicas.

mod common;

use std::time::Instant;

use common::{TestCluster, eventually};
use ringkv::core::placement::ring::NodeId;
use ringkv::proto::{Key, QuorumOpts};

const KEYS: usize = 1_000;
/// Streaming budget in the join test: slow enough that reads run during the transfer.
const THROTTLE_BYTES_PER_SEC: u64 = 24 * 1024;
/// Upper bound on one partition's batch in these tests (~16 keys × 3 owners × ~100 B).
const LAST_BATCH_BYTES_MAX: u64 = 16 * 1024;

fn keys() -> Vec<Key> {
    (0..KEYS).map(|i| Key::new("m", format!("k{i}"))).collect()
}

async fn write_all(cluster: &TestCluster, w: u8) {
    let client = cluster.client(0).await;
    let opts = QuorumOpts {
        w: Some(w),
        ..QuorumOpts::default()
    };
    for key in keys() {
        client
            .put(&key, key.key.clone(), None, opts)
            .await
            .expect("write acknowledged");
    }
}

/// Number of running nodes that hold `key` in their data space.
fn copies(cluster: &TestCluster, key: &Key) -> usize {
    (0..cluster.nodes.len())
        .filter(|&i| !cluster.has_stopped(i) && cluster.local(i, key).is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_takes_a_quarter_and_every_key_stays_readable() {
    let mut cluster = TestCluster::start_throttled(3, THROTTLE_BYTES_PER_SEC).await;
    write_all(&cluster, 3).await;

    let started = Instant::now();
    let n4 = cluster.join(0).await;
    // Read every key again and again while the ring changes and partitions stream.
    let reader = cluster.client(1).await;
    let mut reads = 0usize;
    let mut misses = Vec::new();
    let mut settled = false;
    let mut pending_seen = 0;
    for _round in 0..40 {
        for key in keys() {
            let got = reader.get(&key, QuorumOpts::default()).await;
            reads += 1;
            match got {
                Ok(r) if r.found => {}
                Ok(_) => misses.push(format!("{key}: not found")),
                Err(e) => misses.push(format!("{key}: {e}")),
            }
        }
        let status = cluster.client(n4).await.status().await.expect("status");
        let mut pending = 0;
        for i in 0..cluster.nodes.len() {
            pending += cluster
                .client(i)
                .await
                .status()
                .await
                .expect("status")
                .transfers
                .pending;
        }
        pending_seen = pending_seen.max(pending);
        if status.members.len() == 4 && pending == 0 {
            settled = true;
            break;
        }
    }
    assert!(
        settled,
        "the join did not finish streaming within 40 read rounds"
    );
    println!(
        "n4 joined and received its partitions in {:.1} s; {reads} reads during the join, {} misses; up to {pending_seen} partitions pending at once",
        started.elapsed().as_secs_f64(),
        misses.len()
    );
    assert!(
        misses.is_empty(),
        "reads failed during the join: {misses:?}"
    );
    // The rate limit: a node waits bytes/rate after each batch, so its stream took at
    // least (bytes sent - its last batch) / rate; the last batch is one partition's keys.
    let elapsed = started.elapsed().as_secs_f64();
    for i in 0..3 {
        let status = cluster.client(i).await.status().await.expect("status");
        let sent = status.transfers.bytes_sent;
        let floor =
            sent.saturating_sub(LAST_BATCH_BYTES_MAX) as f64 / THROTTLE_BYTES_PER_SEC as f64;
        println!(
            "n{} streamed {sent} bytes; rate-limit floor {floor:.2} s",
            i + 1
        );
        assert!(
            elapsed >= floor,
            "n{} sent {sent} bytes in {elapsed:.2} s, faster than the limit",
            i + 1
        );
    }

    let ring = cluster.client(0).await.ring().await.expect("ring");
    let n4_info = ring
        .nodes
        .iter()
        .find(|n| n.name == NodeId::from("n4"))
        .expect("n4 is in the ring");
    let share = f64::from(n4_info.primary_partitions) / f64::from(ring.partitions);
    println!(
        "n4 owns {share:.2} of the partitions (balance {:.2})",
        ring.balance
    );
    assert!(
        (0.12..=0.40).contains(&share),
        "n4 owns {share:.2} of the partitions"
    );
    // The test's own ring now includes n4: every key is at its three current primaries.
    for key in keys() {
        for i in cluster.primaries(&key, 3) {
            assert!(
                cluster.local(i, &key).is_some(),
                "{key} missing on primary n{}",
                i + 1
            );
        }
        assert_eq!(
            copies(&cluster, &key),
            3,
            "{key} is held by a non-owner too"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_hands_its_data_over_and_every_key_stays_at_n_replicas() {
    let mut cluster = TestCluster::start(4).await;
    write_all(&cluster, 3).await;
    let text = cluster
        .client(3)
        .await
        .leave()
        .await
        .expect("leave accepted");
    assert!(text.contains("leaving"), "{text}");
    let started = Instant::now();
    eventually("n4 hands everything over and stops", || {
        let done = cluster.has_stopped(3);
        async move { done }
    })
    .await;
    println!("n4 left in {:.1} s", started.elapsed().as_secs_f64());
    cluster.forget(3);
    eventually("the others no longer list n4", || {
        let c = &cluster;
        async move {
            let status = c.client(0).await.status().await.expect("status");
            status.members.iter().all(|m| m.name != NodeId::from("n4"))
        }
    })
    .await;
    for key in keys() {
        assert_eq!(
            copies(&cluster, &key),
            3,
            "{key} is not at 3 replicas after the leave"
        );
    }
    let client = cluster.client(0).await;
    let strict = QuorumOpts {
        r: Some(3),
        strict: true,
        ..QuorumOpts::default()
    };
    for key in keys() {
        let got = client
            .get(&key, strict)
            .await
            .expect("strict read of all 3");
        assert!(got.found, "{key} lost");
    }
    // Leaving again is refused: three members remain for N=3.
    let refused = client.leave().await;
    assert!(refused.is_err(), "a leave below N members must be refused");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_joins_with_the_join_command() {
    let mut cluster = TestCluster::start(3).await;
    write_all(&cluster, 3).await;
    // n4 starts alone (no peers, no seeds): a one-node cluster of its own.
    let n4 = cluster.join_later().await;
    let alone = cluster.client(n4).await.status().await.expect("status");
    assert_eq!(alone.members.len(), 1, "{alone:?}");
    let seed = cluster.addrs[0].to_string();
    let text = cluster
        .client(n4)
        .await
        .join(&seed)
        .await
        .expect("join accepted");
    assert!(text.contains("joining"), "{text}");
    eventually("every member lists n4 and n4 lists every member", || {
        let c = &cluster;
        async move {
            for i in 0..4 {
                let status = c.client(i).await.status().await.expect("status");
                if status.members.len() != 4 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    eventually("transfers to n4 finish", || {
        let c = &cluster;
        async move {
            for i in 0..4 {
                if c.client(i)
                    .await
                    .status()
                    .await
                    .expect("status")
                    .transfers
                    .pending
                    > 0
                {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let client = cluster.client(n4).await;
    for key in keys() {
        let got = client.get(&key, QuorumOpts::default()).await.expect("read");
        assert!(got.found, "{key} after the join");
    }
    cluster.shutdown().await;
}
