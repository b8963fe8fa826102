//! The long-lived peer streams between nodes, against one real node.
//!
//! The test plays node `n2` itself: it holds n2's certificate and listens on the address
//! the real node `n1` has for n2, so it can both write a peer stream into n1 and read the
//! one n1 opens back, and see frame by frame what crosses the wire.

use std::net::SocketAddr;
use std::time::Duration;

use ringkv::core::node::{MemberSpec, NodeConfig};
use ringkv::core::placement::ring::NodeId;
use ringkv::net::driver::{NodeOptions, bind_node, start_bound};
use ringkv::net::transport::frame::decode_body;
use ringkv::net::{
    CertStore, FRAME_BYTES_MAX, FrameReader, Role, bind, connect, encode_frame_into, load_identity,
};
use ringkv::proto::{PeerMessage, PeerStreamHeader};
use ringkv::storage::SyncMode;

/// Longest any step waits.
const STEP_MS: u64 = 10_000;
/// Pings sent to the node in one stream.
const PINGS: u64 = 5_000;
/// Pings per write: several writes, each carrying many frames, as a link batches them.
const PINGS_PER_WRITE: u64 = 700;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_millis(STEP_MS), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {STEP_MS} ms"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_to_one_peer_arrive_in_order_on_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).unwrap();
    store.issue("n1", Role::Node).unwrap();
    store.issue("n2", Role::Node).unwrap();
    let n1 = bind_node("127.0.0.1:0".parse().unwrap(), &certs, "n1").unwrap();
    let n1_addr = n1.addr();
    // The test's own endpoint, with n2's certificate, where n1 will send n2's messages.
    let n2 = bind(
        "127.0.0.1:0".parse().unwrap(),
        &load_identity(&certs, "n2").unwrap(),
    )
    .unwrap();
    let n2_addr: SocketAddr = n2.local_addr().unwrap();
    let members = vec![
        MemberSpec::new("n1", n1_addr.to_string()),
        MemberSpec::new("n2", n2_addr.to_string()),
    ];
    let mut config = NodeConfig::new("n1");
    config.partitions = 64;
    let node = start_bound(
        n1,
        NodeOptions {
            config,
            members,
            certs_dir: certs.clone(),
            data_dir: dir.path().join("n1"),
            sync: SyncMode::Group,
        },
    )
    .await
    .unwrap();

    // n2 → n1: one stream, a header, then the pings in a few large writes.
    let conn = within("dialling n1", connect(&n2, n1_addr, STEP_MS))
        .await
        .unwrap();
    let mut send = within("opening a peer stream", conn.open_uni())
        .await
        .unwrap();
    let mut buf = Vec::new();
    encode_frame_into(
        &mut buf,
        &PeerStreamHeader::new(NodeId::from("n2")),
        FRAME_BYTES_MAX,
    )
    .unwrap();
    for nonce in 0..PINGS {
        encode_frame_into(&mut buf, &PeerMessage::Ping { nonce }, FRAME_BYTES_MAX).unwrap();
        if (nonce + 1) % PINGS_PER_WRITE == 0 || nonce + 1 == PINGS {
            within("writing pings", send.write_all(&buf)).await.unwrap();
            buf.clear();
        }
    }

    // n1 → n2: every pong, in order, on the one stream n1's link keeps open to n2.
    let incoming = within("n1 dialling back", n2.accept()).await.unwrap();
    let back = within("n1's handshake", incoming.accept().unwrap())
        .await
        .unwrap();
    let mut recv = within("n1's peer stream", back.accept_uni()).await.unwrap();
    let mut reader = FrameReader::new(FRAME_BYTES_MAX);
    let header = within("the header", reader.next(&mut recv))
        .await
        .unwrap()
        .expect("a header frame");
    let header: PeerStreamHeader = decode_body(header).unwrap();
    assert_eq!(header.from, NodeId::from("n1"), "n1 speaks as itself");
    let mut expected = 0u64;
    while expected < PINGS {
        let body = within("the next frame", reader.next(&mut recv))
            .await
            .unwrap()
            .expect("the stream stays open while pongs are due");
        // n1 may also send its own traffic (member sync) on the same stream.
        if let PeerMessage::Pong { nonce } = decode_body(body).unwrap() {
            assert_eq!(nonce, expected, "pongs arrive in the order of the pings");
            expected += 1;
        }
    }
    // All of it came on that one stream: no other peer stream is pending.
    let other = tokio::time::timeout(Duration::from_millis(200), back.accept_uni()).await;
    assert!(
        other.is_err(),
        "n1 opened a second peer stream while the first was healthy"
    );

    send.finish().unwrap();
    node.shutdown().await.unwrap();
}
