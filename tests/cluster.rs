//! Real clusters over QUIC on 127.0.0.1: quorums, fallbacks and hinted handoff, siblings,
//! counters, read repair, invalid settings and restarts.

mod common;

use common::{TestCluster, eventually};
use ringkv::client::ClientError;
use ringkv::proto::{Key, QuorumOpts, RequestError};

fn w(w: u8) -> QuorumOpts {
    QuorumOpts {
        w: Some(w),
        ..QuorumOpts::default()
    }
}

fn r(r: u8) -> QuorumOpts {
    QuorumOpts {
        r: Some(r),
        ..QuorumOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_w2_then_get_r2_reads_your_write() {
    let cluster = TestCluster::start(3).await;
    let key = Key::new("users", "alice");
    let client = cluster.client(0).await;
    client
        .put(&key, b"hello".to_vec(), None, w(2))
        .await
        .unwrap();
    let other = cluster.client(2).await;
    let got = other.get(&key, r(2)).await.unwrap();
    assert!(got.found);
    assert_eq!(got.values, vec![b"hello".to_vec()]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primary_is_covered_by_a_fallback_and_gets_its_hint_back() {
    let mut cluster = TestCluster::start(4).await;
    let key = Key::new("b", "handoff");
    let prim = cluster.primaries(&key, 4);
    let (coord, down, fallback) = (prim[0], prim[2], prim[3]);
    cluster.stop(down).await;
    eventually("the coordinator sees the stopped primary as down", || {
        let c = &cluster;
        async move { c.state_of(coord, down).await == "down" }
    })
    .await;
    let client = cluster.client(coord).await;

    // strict W=3 counts primaries only: two are up, so it fails and names the acks
    let strict = QuorumOpts {
        w: Some(3),
        strict: true,
        ..QuorumOpts::default()
    };
    let err = client
        .put(&key, b"v".to_vec(), None, strict)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Request(RequestError::QuorumFailed(_))),
        "{text}"
    );
    // the coordinator holds the primary down, so it refuses before asking anyone
    assert!(
        text.contains("only 2 of the 3 replicas it needs are up"),
        "{text}"
    );
    assert!(text.contains(&format!("n{}", down + 1)), "{text}");

    // sloppy W=3 succeeds through the fallback, which keeps a hint
    client.put(&key, b"v".to_vec(), None, w(3)).await.unwrap();
    assert!(
        cluster.local(fallback, &key).is_none(),
        "a hint is not data"
    );
    assert_eq!(cluster.hints_held(fallback, down).await, 1);

    // the primary comes back: handoff delivers, the hint is dropped
    cluster.restart(down).await;
    eventually("hinted handoff delivers to the returned primary", || {
        let c = &cluster;
        let key = key.clone();
        async move { c.local(down, &key).is_some() && c.hints_held(fallback, down).await == 0 }
    })
    .await;
    assert!(cluster.local(fallback, &key).is_none());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_puts_with_one_context_make_siblings_and_the_read_context_resolves_them() {
    let cluster = TestCluster::start(3).await;
    let key = Key::new("b", "siblings");
    let c1 = cluster.client(0).await;
    let c2 = cluster.client(1).await;
    let first = c1.put(&key, b"base".to_vec(), None, w(2)).await.unwrap();
    c1.put(&key, b"x".to_vec(), Some(&first.context), w(2))
        .await
        .unwrap();
    c2.put(&key, b"y".to_vec(), Some(&first.context), w(2))
        .await
        .unwrap();
    let read = c1.get(&key, r(2)).await.unwrap();
    let mut values = read.values.clone();
    values.sort();
    assert_eq!(values, vec![b"x".to_vec(), b"y".to_vec()]);
    c2.put(&key, b"merged".to_vec(), Some(&read.context), w(2))
        .await
        .unwrap();
    let after = c1.get(&key, r(3)).await.unwrap();
    assert_eq!(after.values, vec![b"merged".to_vec()]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_increments_through_different_nodes_with_one_down_sum_exactly() {
    let mut cluster = TestCluster::start(3).await;
    let key = Key::new("b", "counter");
    cluster.stop(2).await;
    let (a, b) = (cluster.client(0).await, cluster.client(1).await);
    for _ in 0..5 {
        a.counter_add(&key, 3, w(2)).await.unwrap();
        b.counter_add(&key, 2, w(2)).await.unwrap();
    }
    cluster.restart(2).await;
    let c = cluster.client(2).await;
    eventually(
        "the restarted node is back in the coordinators' view",
        || {
            let cl = &cluster;
            async move { cl.state_of(0, 2).await == "up" && cl.state_of(1, 2).await == "up" }
        },
    )
    .await;
    c.counter_add(&key, 1, w(2)).await.unwrap();
    let total = c.counter_get(&key, r(3)).await.unwrap();
    assert_eq!(total, 5 * 3 + 5 * 2 + 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_r_equal_n_repairs_a_replica_that_missed_the_write() {
    let mut cluster = TestCluster::start(3).await;
    let key = Key::new("b", "repair");
    cluster.stop(2).await;
    let client = cluster.client(0).await;
    client.put(&key, b"v".to_vec(), None, w(2)).await.unwrap();
    cluster.restart(2).await;
    assert!(cluster.local(2, &key).is_none(), "n3 missed the write");
    eventually("a get with R=3 succeeds and repairs n3", || {
        let cl = &cluster;
        let client = &client;
        let key = key.clone();
        async move {
            let got = client.get(&key, r(3)).await;
            got.is_ok_and(|g| g.values == vec![b"v".to_vec()]) && cl.local(2, &key).is_some()
        }
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_n_w_r_are_refused_with_a_clear_error() {
    let cluster = TestCluster::start(3).await;
    let key = Key::new("b", "k");
    let client = cluster.client(0).await;
    let cases = [
        (
            QuorumOpts {
                n: Some(2),
                w: Some(3),
                ..QuorumOpts::default()
            },
            "w=3 with n=2",
        ),
        (
            QuorumOpts {
                w: Some(0),
                ..QuorumOpts::default()
            },
            "w=0",
        ),
        (
            QuorumOpts {
                n: Some(5),
                w: Some(2),
                strict: true,
                ..QuorumOpts::default()
            },
            "only 3 member",
        ),
    ];
    for (opts, expect) in cases {
        let err = client
            .put(&key, b"v".to_vec(), None, opts)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ClientError::Request(RequestError::InvalidQuorum(_))),
            "{text}"
        );
        assert!(text.contains(expect), "'{text}' should mention '{expect}'");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_restarts_with_every_write_it_acknowledged() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client(0).await;
    let opts = QuorumOpts {
        n: Some(3),
        w: Some(3),
        ..QuorumOpts::default()
    };
    let keys: Vec<Key> = (0..50)
        .map(|i| Key::new("crash", format!("k{i}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        client
            .put(key, format!("v{i}").into_bytes(), None, opts)
            .await
            .unwrap();
    }
    // W=3: every node acknowledged every write; kill n2 without a clean shutdown
    cluster.kill(1).await;
    cluster.restart(1).await;
    for key in &keys {
        assert!(
            cluster.local(1, key).is_some(),
            "n2 lost the acknowledged write of {key}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_works_end_to_end() {
    let cluster = TestCluster::start(3).await;
    let c = cluster.client(1).await;
    let q = QuorumOpts::default();
    let k = |name: &str| Key::new("all", name);
    c.put_lww(&k("lww"), b"one".to_vec(), q).await.unwrap();
    c.put_lww(&k("lww"), b"two".to_vec(), q).await.unwrap();
    assert_eq!(
        c.get(&k("lww"), q).await.unwrap().values,
        vec![b"two".to_vec()]
    );
    c.set_add(&k("set"), vec!["a".into(), "b".into()], q)
        .await
        .unwrap();
    c.set_remove(&k("set"), vec!["a".into()], q).await.unwrap();
    assert_eq!(
        c.set_get(&k("set"), q).await.unwrap().members,
        vec!["b".to_string()]
    );
    c.map_set(&k("map"), "name", "ada", q).await.unwrap();
    c.map_incr(&k("map"), "visits", 2, q).await.unwrap();
    let map = c.map_get(&k("map"), q).await.unwrap();
    assert_eq!(map.fields["name"].register, vec!["ada".to_string()]);
    assert_eq!(map.fields["visits"].counter, Some(2));
    let items: Vec<Vec<u8>> = (0..1000).map(|i| format!("item{i}").into_bytes()).collect();
    c.hll_add(&k("hll"), items, q).await.unwrap();
    let estimate = c.hll_count(&k("hll"), q).await.unwrap();
    assert!((980..=1020).contains(&estimate), "estimate {estimate}");
    // deletes leave a tombstone: not found afterwards
    c.put(&k("gone"), b"x".to_vec(), None, q).await.unwrap();
    c.delete(&k("gone"), None, q).await.unwrap();
    assert!(!c.get(&k("gone"), q).await.unwrap().found);
    // a write of another policy to an existing key is refused naming both
    let err = c
        .counter_add(&k("set"), 1, q)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("set") && err.contains("counter"), "{err}");
    cluster.shutdown().await;
}
