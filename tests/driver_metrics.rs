//! Each node's metrics, with several nodes in one process: every node records into its
//! own recorder, so one node's requests never show in another's figures, and the figures
//! the driver copies from the core (members by state) follow the cluster.

mod common;

use common::{TestCluster, eventually};
use ringkv::proto::{Key, QuorumOpts};

/// The value of the sample `series` (name and labels exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn render(cluster: &TestCluster, i: usize) -> String {
    cluster.nodes[i]
        .as_ref()
        .expect("node is running")
        .metrics()
        .render()
}

const PUT_OK: &str =
    r#"ringkv_requests_total{role="coordinator",op="put",policy="siblings",outcome="ok"}"#;
const REPLICATE_OK: &str =
    r#"ringkv_requests_total{role="replica",op="replicate",policy="siblings",outcome="ok"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_one_process_keep_their_figures_apart() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client(0).await;
    // W=3: both replicas have served their replicate before the reply.
    let all = QuorumOpts {
        w: Some(3),
        ..QuorumOpts::default()
    };
    client
        .put(&Key::new("demo", "one"), b"v".to_vec(), None, all)
        .await
        .expect("put through n1");

    // The reply left n1 only after its count and latency were recorded.
    let n1 = render(&cluster, 0);
    assert_eq!(sample(&n1, PUT_OK), Some(1.0), "{n1}");
    assert!(n1.contains("ringkv_fsync_duration_seconds_count"), "{n1}");
    for i in 1..3 {
        let other = render(&cluster, i);
        assert_eq!(sample(&other, PUT_OK), None, "node {i}:\n{other}");
    }
    // The replicas count the replicate when their ack leaves, which was before n1's reply.
    eventually("both replicas to count the replicate", || {
        let counts: Vec<Option<f64>> = (1..3)
            .map(|i| sample(&render(&cluster, i), REPLICATE_OK))
            .collect();
        async move { counts.iter().all(|c| *c == Some(1.0)) }
    })
    .await;
    assert_eq!(sample(&render(&cluster, 0), REPLICATE_OK), None);

    // Members by state, copied from the core on the sampling timer.
    eventually("n1 to count three members up", || {
        let up = sample(&render(&cluster, 0), r#"ringkv_members{state="up"}"#);
        async move { up == Some(3.0) }
    })
    .await;
    cluster.kill(2).await;
    eventually("n1 to count n3 no longer up", || {
        let text = render(&cluster, 0);
        let up = sample(&text, r#"ringkv_members{state="up"}"#);
        let suspect = sample(&text, r#"ringkv_members{state="suspect"}"#).unwrap_or(0.0);
        let down = sample(&text, r#"ringkv_members{state="down"}"#).unwrap_or(0.0);
        async move { up == Some(2.0) && suspect + down == 1.0 }
    })
    .await;
    cluster.shutdown().await;
}
