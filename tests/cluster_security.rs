//! Against a real node: mutual TLS with the cluster CA, roles, and hostile input.

mod common;

use std::time::Duration;

use common::TestCluster;
use ringkv::client::Client;
use ringkv::core::object::{Object, Policy};
use ringkv::core::placement::ring::NodeId;
use ringkv::net::driver::peer_link::{
    STREAM_CODE_BAD_HEADER, STREAM_CODE_BAD_PEER_FRAME, STREAM_CODE_NOT_A_NODE,
};
use ringkv::net::{
    CertStore, ConnectionPool, FRAME_BYTES_MAX, Role, bind_client, encode_frame, encode_frame_into,
    load_identity,
};
use ringkv::proto::{
    Key, PeerMessage, PeerStreamHeader, QuorumOpts, WireBody, WireRequest, WireResponse,
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
    // and a node certificate of another CA cannot open a peer stream either
    store.issue("n1", Role::Node).unwrap();
    let identity = load_identity(other.path(), "n1").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint).with_connect_timeout_ms(STEP_MS);
    let key = Key::new("b", "foreign");
    let outcome = async {
        let conn = pool
            .get(cluster.addrs[1])
            .await
            .map_err(|e| e.to_string())?;
        let mut send = open_peer_stream(&conn, "n1").await?;
        send.write_all(&replicate_frame(&key))
            .await
            .map_err(|e| e.to_string())?;
        send.stopped().await.map_err(|e| e.to_string())
    };
    let outcome = within(outcome).await;
    assert!(
        outcome.is_err(),
        "a foreign CA's node must be refused: {outcome:?}"
    );
    assert!(cluster.local(1, &key).is_none(), "nothing was written");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_open_a_peer_stream() {
    let cluster = TestCluster::start(3).await;
    let identity = load_identity(&cluster.certs, "client").unwrap();
    let endpoint = bind_client("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
    let pool = ConnectionPool::new(endpoint);
    let conn = within(pool.get(cluster.addrs[0])).await.unwrap();
    let key = Key::new("b", "forged");
    let mut send = within(open_peer_stream(&conn, "n2")).await.unwrap();
    within(send.write_all(&replicate_frame(&key)))
        .await
        .unwrap();
    // Not finished: the only way this resolves is the node stopping the stream.
    let stopped = within(send.stopped()).await.unwrap();
    assert_eq!(
        stopped,
        Some(quinn::VarInt::from_u32(STREAM_CODE_NOT_A_NODE)),
        "a client's peer stream is stopped as not a node"
    );
    assert!(cluster.local(0, &key).is_none(), "nothing was written");
    // the old path, a peer message on a request stream, is refused as well
    let forged = WireRequest::new(WireBody::Peer {
        from: NodeId::from("n2"),
        msg: replicate(&key),
    });
    let reply: WireResponse =
        within(pool.request(cluster.addrs[0], &forged, STEP_MS, FRAME_BYTES_MAX))
            .await
            .unwrap();
    assert!(matches!(reply, WireResponse::Refused(_)), "{reply:?}");
    // and the connection still serves the client API
    let client = cluster.client(0).await;
    assert_eq!(within(client.status()).await.unwrap().members.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_send_under_another_nodes_name() {
    let cluster = TestCluster::start(3).await;
    let rogue = rogue_node(&cluster);
    let pool = ConnectionPool::new(bind_client("127.0.0.1:0".parse().unwrap(), &rogue).unwrap());
    let conn = within(pool.get(cluster.addrs[0])).await.unwrap();
    let key = Key::new("b", "impostor");
    let mut send = within(open_peer_stream(&conn, "n2")).await.unwrap();
    within(send.write_all(&replicate_frame(&key)))
        .await
        .unwrap();
    let stopped = within(send.stopped()).await.unwrap();
    assert_eq!(
        stopped,
        Some(quinn::VarInt::from_u32(STREAM_CODE_BAD_HEADER)),
        "a node certificate speaking as n2 is stopped at the header"
    );
    assert!(cluster.local(0, &key).is_none(), "nothing was written");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_peer_stream_closes_that_stream_and_the_node_keeps_serving() {
    let cluster = TestCluster::start(3).await;
    let rogue = rogue_node(&cluster);
    let pool = ConnectionPool::new(bind_client("127.0.0.1:0".parse().unwrap(), &rogue).unwrap());
    let conn = within(pool.get(cluster.addrs[0])).await.unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not msgpack", {
            let mut f = 7u32.to_be_bytes().to_vec();
            f.extend([0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]);
            f
        }),
        (
            "a prefix over the frame limit",
            u32::MAX.to_be_bytes().to_vec(),
        ),
        ("an unknown message", {
            #[derive(serde::Serialize)]
            enum Future {
                Teleport { to: String },
            }
            encode_frame(&Future::Teleport { to: "mars".into() }, FRAME_BYTES_MAX).unwrap()
        }),
    ];
    for (what, bytes) in cases {
        let mut send = within(open_peer_stream(&conn, ROGUE)).await.unwrap();
        within(send.write_all(&bytes)).await.unwrap();
        let stopped = within(send.stopped()).await.unwrap();
        assert_eq!(
            stopped,
            Some(quinn::VarInt::from_u32(STREAM_CODE_BAD_PEER_FRAME)),
            "{what}: the stream is stopped"
        );
    }
    assert!(
        conn.close_reason().is_none(),
        "only the stream closed, not the connection"
    );
    // the node keeps serving: a replicated write goes through its own peer streams
    let client = cluster.client(0).await;
    let key = Key::new("b", "after-garbage");
    within(client.put_lww(&key, b"v".to_vec(), QuorumOpts::default()))
        .await
        .expect("the node still serves writes");
    let got = within(client.get(&key, QuorumOpts::default()))
        .await
        .expect("and reads");
    assert!(got.found, "the write is readable");
    cluster.shutdown().await;
}

/// Opens a peer stream on `conn` and writes its header, claiming to be `from`.
async fn open_peer_stream(
    conn: &quinn::Connection,
    from: &str,
) -> Result<quinn::SendStream, String> {
    let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
    let mut header = Vec::new();
    encode_frame_into(
        &mut header,
        &PeerStreamHeader::new(NodeId::from(from)),
        FRAME_BYTES_MAX,
    )
    .map_err(|e| e.to_string())?;
    send.write_all(&header).await.map_err(|e| e.to_string())?;
    Ok(send)
}

fn replicate(key: &Key) -> PeerMessage {
    PeerMessage::Replicate {
        id: 1,
        key: key.clone(),
        object: Object::empty(Policy::Counter),
        hint: None,
    }
}

fn replicate_frame(key: &Key) -> Vec<u8> {
    encode_frame(&replicate(key), FRAME_BYTES_MAX).unwrap()
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
                &WireRequest::new(WireBody::Client(ringkv::proto::ClientRequest::Status)),
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

/// Name of a node certificate from the cluster CA that no running node uses. Tests that
/// speak as a node use it: a second connection under a running node's name would tell
/// that node's peers it restarted, and they would close the first.
const ROGUE: &str = "rogue";

/// Issues and loads the [`ROGUE`] node identity.
fn rogue_node(cluster: &TestCluster) -> ringkv::net::Identity {
    CertStore::open(&cluster.certs)
        .expect("CA")
        .issue(ROGUE, Role::Node)
        .expect("node cert");
    load_identity(&cluster.certs, ROGUE).expect("rogue identity")
}
