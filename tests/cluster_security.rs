//! Against a real node: mutual TLS with the cluster CA, roles, and hostile input.

mod common;

use std::time::Duration;

use common::TestCluster;
use ringkv::client::Client;
use ringkv::core::message::{Key, PeerMessage, WireBody, WireRequest, WireResponse};
use ringkv::core::object::{Object, Policy};
use ringkv::core::ring::NodeId;
use ringkv::net::{
    CertStore, ConnectionPool, FRAME_BYTES_MAX, Role, bind_client, encode_frame, load_identity,
};

const STEP_MS: u64 = 5_000;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_millis(STEP_MS), f)
        .await
        .expect("step finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let cluster = TestCluster::start(3).await;
    let other = tempfile::tempdir().unwrap();
    let store = CertStore::init(other.path()).unwrap();
    store.issue("client", Role::Client).unwrap();
    let result = within(Client::connect(cluster.addrs[0], other.path(), "client")).await;
    assert!(result.is_err(), "a foreign CA's client must not connect");
    // and a node certificate of another CA cannot join as a peer either
    store.issue("n1", Role::Node).unwrap();
    let identity = load_identity(other.path(), "n1").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint).with_connect_timeout_ms(STEP_MS);
    let ping = WireRequest::new(WireBody::Peer {
        from: NodeId::from("n1"),
        msg: PeerMessage::Ping { nonce: 1 },
    });
    let sent: Result<WireResponse, _> = pool
        .request(cluster.addrs[1], &ping, STEP_MS, FRAME_BYTES_MAX)
        .await;
    assert!(sent.is_err(), "a foreign CA's node must be refused");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_send_peer_messages() {
    let cluster = TestCluster::start(3).await;
    let identity = load_identity(&cluster.certs, "client").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint);
    let key = Key::new("b", "forged");
    let forged = WireRequest::new(WireBody::Peer {
        from: NodeId::from("n2"),
        msg: PeerMessage::Replicate {
            id: 1,
            key: key.clone(),
            object: Object::empty(Policy::Counter),
            hint: None,
        },
    });
    let reply: WireResponse =
        within(pool.request(cluster.addrs[0], &forged, STEP_MS, FRAME_BYTES_MAX))
            .await
            .unwrap();
    match reply {
        WireResponse::Refused(text) => assert!(text.contains("node certificate"), "{text}"),
        other => panic!("a client certificate's peer message was accepted: {other:?}"),
    }
    assert!(cluster.local(0, &key).is_none(), "nothing was written");
    // a node may not speak for another node either
    let n3 = load_identity(&cluster.certs, "n3").unwrap();
    let pool3 = ConnectionPool::new(bind_client("127.0.0.1:0".parse().unwrap(), &n3).unwrap());
    let reply: WireResponse =
        within(pool3.request(cluster.addrs[0], &forged, STEP_MS, FRAME_BYTES_MAX))
            .await
            .unwrap();
    assert!(matches!(reply, WireResponse::Refused(_)), "{reply:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_refusals_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let identity = load_identity(&cluster.certs, "client").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint);
    let conn = within(pool.get(cluster.addrs[0])).await.unwrap();
    let valid_unknown = {
        // a well-formed frame whose body is a variant this node does not know
        #[derive(serde::Serialize)]
        enum Future {
            Teleport { to: String },
        }
        encode_frame(&Future::Teleport { to: "mars".into() }, FRAME_BYTES_MAX).unwrap()
    };
    let cases: Vec<Vec<u8>> = vec![
        vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        u32::MAX.to_be_bytes().to_vec(),
        {
            let mut f = encode_frame(
                &WireRequest::new(WireBody::Client(
                    ringkv::core::message::ClientRequest::Status,
                )),
                FRAME_BYTES_MAX,
            )
            .unwrap();
            f.truncate(f.len() - 2);
            f
        },
        valid_unknown,
        Vec::new(),
    ];
    for bytes in cases {
        let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
        let _ = within(send.write_all(&bytes)).await;
        let _ = send.finish();
        // either an error frame or a closed stream: never a hang, never a crash
        let _ = within(recv.read_to_end(1 << 20)).await;
    }
    let client = cluster.client(0).await;
    let status = within(client.status())
        .await
        .expect("the node still serves");
    assert_eq!(status.members.len(), 3);
    cluster.shutdown().await;
}
