//! Client sessions against real nodes: many calls on one stream with answers matched by
//! id, hostile session frames, another protocol version, and sessions that end under
//! their calls (node killed, node restarted).

mod common;

use std::time::{Duration, Instant};

use common::{TestCluster, eventually};
use ringkv::client::ClientError;
use ringkv::core::object::ReadValue;
use ringkv::net::{
    ConnectionPool, FRAME_BYTES_MAX, NetError, bind_client, decode_frame, encode_frame,
    load_identity,
};
use ringkv::proto::{
    ClientReply, ClientRequest, Key, PROTOCOL_VERSION, QuorumOpts, SESSION_ID_NONE, SessionRequest,
    SessionResponse, WireBody, WireRequest, WireResponse,
};
use tokio::task::JoinSet;

/// Deadline for one step of a test.
const STEP_MS: u64 = 10_000;
/// Calls kept in flight at once on one client.
const CALLS: usize = 400;
/// A client deadline far longer than any step, so a call that ends early was ended by
/// its session, not by its deadline.
const LONG_CLIENT_TIMEOUT_MS: u64 = 60_000;
/// How soon calls must fail once their node is killed: well below the client deadline.
const FAIL_FAST_MS: u64 = 5_000;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(STEP_MS), f)
        .await
        .expect("step finished in time")
}

fn key(i: usize) -> Key {
    Key::new("session", format!("k{i}"))
}

/// Splits a byte string holding back-to-back frames into session responses.
fn responses(mut bytes: &[u8]) -> Vec<SessionResponse> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let (frame, rest) = bytes.split_at(4 + len);
        out.push(decode_frame(frame, FRAME_BYTES_MAX).expect("a session response"));
        bytes = rest;
    }
    assert!(bytes.is_empty(), "no partial frame at the end");
    out
}

/// A raw QUIC connection to node 0 under the client certificate.
async fn raw_connection(cluster: &TestCluster) -> quinn::Connection {
    let identity = load_identity(&cluster.certs, "client").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint);
    within(pool.get(cluster.addrs[0])).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_on_one_session_each_get_their_own_answer() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client(0).await;
    let opts = QuorumOpts::default();
    let mut puts = JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        puts.spawn(async move {
            let value = format!("v{i}").into_bytes();
            client.put_lww(&key(i), value, opts).await
        });
    }
    while let Some(done) = within(puts.join_next()).await {
        done.unwrap().expect("every put is acknowledged");
    }
    let mut gets = JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        gets.spawn(async move { (i, client.get(&key(i), opts).await) });
    }
    let mut answered = 0;
    while let Some(done) = within(gets.join_next()).await {
        let (i, got) = done.unwrap();
        let got = got.expect("every get is answered");
        assert_eq!(
            got.values,
            vec![format!("v{i}").into_bytes()],
            "the answer to key {i} is its own value, not another call's"
        );
        answered += 1;
    }
    assert_eq!(answered, CALLS);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_session_frame_ends_that_session_with_a_refusal_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let conn = raw_connection(&cluster).await;
    let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
    let mut bytes = encode_frame(&WireRequest::new(WireBody::Session), FRAME_BYTES_MAX).unwrap();
    let status = SessionRequest {
        id: 7,
        request: ClientRequest::Status,
    };
    bytes.extend(encode_frame(&status, FRAME_BYTES_MAX).unwrap());
    // a frame whose body is not msgpack at all
    bytes.extend(7u32.to_be_bytes());
    bytes.extend([0xc1; 7]);
    within(send.write_all(&bytes)).await.unwrap();
    let answers = within(recv.read_to_end(FRAME_BYTES_MAX)).await.unwrap();
    let answers = responses(&answers);
    assert_eq!(
        answers.len(),
        2,
        "the status answer and the refusal: {answers:?}"
    );
    let status = answers.iter().find(|a| a.id == 7).expect("status answered");
    assert!(matches!(
        status.response,
        WireResponse::Client(ClientReply::Status(_))
    ));
    let refusal = answers
        .iter()
        .find(|a| a.id == SESSION_ID_NONE)
        .expect("the session is refused");
    match &refusal.response {
        WireResponse::Refused(text) => assert!(
            text.contains("cannot read") && text.contains("same ringkv version"),
            "the refusal says what happened and what to do: {text}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(conn.close_reason().is_none(), "only the session ended");
    let client = cluster.client(0).await;
    within(client.status())
        .await
        .expect("the node still serves");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_another_protocol_version_is_refused_with_a_sentence() {
    let cluster = TestCluster::start(3).await;
    let conn = raw_connection(&cluster).await;
    let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
    let old = PROTOCOL_VERSION - 1;
    let opening = WireRequest {
        version: old,
        body: WireBody::Session,
    };
    within(send.write_all(&encode_frame(&opening, FRAME_BYTES_MAX).unwrap()))
        .await
        .unwrap();
    let answers = within(recv.read_to_end(FRAME_BYTES_MAX)).await.unwrap();
    let answers = responses(&answers);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].id, SESSION_ID_NONE);
    match &answers[0].response {
        WireResponse::Refused(text) => assert!(
            text.contains(&format!("protocol version {old}")) && text.contains("upgrade"),
            "{text}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_fail_at_once_when_their_node_dies() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster
        .client(0)
        .await
        .with_timeout_ms(LONG_CLIENT_TIMEOUT_MS);
    let opts = QuorumOpts::default();
    within(client.put_lww(&key(0), b"v".to_vec(), opts))
        .await
        .expect("the session works");
    // Many calls in flight on one session; the node dies under them. Whichever were
    // answered before the kill succeed; none may wait for its deadline.
    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        calls.spawn(async move { client.put_lww(&key(i), b"w".to_vec(), opts).await });
    }
    tokio::task::yield_now().await;
    let killed_at = Instant::now();
    cluster.kill(0).await;
    let mut failed = 0;
    while let Some(done) = within(calls.join_next()).await {
        match done.unwrap() {
            Ok(_) => {}
            Err(ClientError::Net { source, .. }) => {
                assert!(
                    !matches!(*source, NetError::Timeout { .. }),
                    "a call fails with its session, not its deadline: {source}"
                );
                failed += 1;
            }
            // The kill stops the core before the session's tasks: a call read in between
            // is refused at once ("shutting down"), which is failing fast too.
            Err(ClientError::Refused { .. }) => failed += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_millis(FAIL_FAST_MS),
        "the calls ended {took:?} after the kill, not at their {LONG_CLIENT_TIMEOUT_MS} ms deadline"
    );
    // A call after the kill fails too, with the session's or the connection's reason.
    let after = within(client.get(&key(0), opts)).await;
    assert!(after.is_err(), "the node is gone");
    eprintln!("{failed} of {CALLS} calls failed with their session");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_working_across_a_restart_of_its_node() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client(0).await;
    let opts = QuorumOpts::default();
    within(client.put_lww(&key(1), b"before".to_vec(), opts))
        .await
        .expect("written before the restart");
    cluster.stop(0).await;
    cluster.restart(0).await;
    // The same client value: its session and connection ended with the old process.
    eventually("the client's next calls reach the restarted node", || {
        let client = client.clone();
        async move {
            matches!(
                client.get(&key(1), opts).await,
                Ok(got) if matches!(&got.value, Some(ReadValue::Lww { .. })) && got.values == vec![b"before".to_vec()]
            )
        }
    })
    .await;
    cluster.shutdown().await;
}
