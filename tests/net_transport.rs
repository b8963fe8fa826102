//! The transport over real QUIC on 127.0.0.1: mTLS, roles, connection reuse, and a server
//! that survives garbage.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use ringkv::net::transport::certs::CertStore;
use ringkv::net::transport::frame::{FRAME_BYTES_MAX, encode_frame, read_frame};
use ringkv::net::{
    ConnectionPool, Handler, Identity, NetError, PeerIdentity, Role, bind, bind_client,
    load_identity, serve,
};
use serde::{Deserialize, Serialize};

/// Upper bound on every wait in these tests; far above what loopback needs.
const TEST_WAIT_MS: u64 = 10_000;
const REQUEST_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Echo(String),
    Peer(String),
    /// Never answered: exercises the request deadline.
    Stall,
}

/// A newer protocol's request enum, with a variant the server does not know.
#[derive(Debug, Serialize, Deserialize)]
enum FutureRequest {
    Shutdown { now: bool },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Response {
    Echo(String),
    PeerAck { from: String, payload: String },
    Error(String),
}

#[derive(Debug, Default)]
struct TestHandler {
    seen: Mutex<Vec<PeerIdentity>>,
    handled: AtomicUsize,
    bad_requests: AtomicUsize,
    connections: AtomicUsize,
}

/// A certificate directory with a CA, nodes n1 and n2 and client c1.
struct Certs {
    _dir: tempfile::TempDir,
    store: CertStore,
}

/// A server (node n1) running [`serve`] with a [`TestHandler`].
struct Server {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    handler: Arc<TestHandler>,
}

impl Handler for TestHandler {
    type Request = Request;
    type Response = Response;

    fn handle(&self, peer: PeerIdentity, req: Request) -> impl Future<Output = Response> + Send {
        self.handled.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(peer.clone());
        async move {
            match req {
                Request::Echo(s) => Response::Echo(s),
                // The role check the real node dispatch makes: peer messages need a node cert.
                Request::Peer(payload) if peer.role == Role::Node => Response::PeerAck {
                    from: peer.name,
                    payload,
                },
                Request::Peer(_) => Response::Error(format!(
                    "peer messages need a node certificate; {peer} may use the client API only"
                )),
                Request::Stall => std::future::pending().await,
            }
        }
    }

    fn connected(&self, _peer: &PeerIdentity, _conn: &quinn::Connection) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    fn bad_request(&self, _peer: &PeerIdentity, err: &NetError) -> Option<Response> {
        self.bad_requests.fetch_add(1, Ordering::SeqCst);
        Some(Response::Error(err.to_string()))
    }
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::init(dir.path().join("certs")).unwrap();
        for (name, role) in [("n1", Role::Node), ("n2", Role::Node), ("c1", Role::Client)] {
            store.issue(name, role).unwrap();
        }
        Certs { _dir: dir, store }
    }

    fn identity(&self, name: &str) -> Identity {
        load_identity(self.store.dir(), name).unwrap()
    }
}

impl Server {
    fn start(identity: &Identity) -> Server {
        let endpoint = bind(localhost(), identity).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let handler = Arc::new(TestHandler::default());
        tokio::spawn(serve(endpoint.clone(), handler.clone()));
        Server {
            endpoint,
            addr,
            handler,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"test over");
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_millis(TEST_WAIT_MS), fut)
        .await
        .expect("test wait timed out")
}

fn pool_for(identity: &Identity) -> ConnectionPool {
    ConnectionPool::new(bind(localhost(), identity).unwrap())
}

/// Sends raw bytes on a fresh stream and reads what comes back (at most one frame).
async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> Result<Response, NetError> {
    let (mut send, mut recv) = within(conn.open_bi()).await.unwrap();
    // The server may stop our stream as soon as it sees a bad prefix; that is fine.
    let _ = within(send.write_all(bytes)).await;
    let _ = send.finish();
    within(read_frame::<Response>(&mut recv, FRAME_BYTES_MAX)).await
}

#[tokio::test]
async fn echo_roundtrip_over_quic() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));

    let resp: Response = within(pool.request(
        server.addr,
        &Request::Echo("hello ringkv".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(resp, Response::Echo("hello ringkv".to_owned()));

    // A large value crosses many QUIC packets.
    let big = "x".repeat(1 << 20);
    let resp: Response = within(pool.request(
        server.addr,
        &Request::Echo(big.clone()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(resp, Response::Echo(big));

    let seen = server.handler.seen.lock().unwrap().clone();
    let n2 = PeerIdentity {
        role: Role::Node,
        name: "n2".to_owned(),
    };
    assert_eq!(seen, [n2.clone(), n2]);
}

#[tokio::test]
async fn node_peer_messages_are_accepted() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));
    let resp: Response = within(pool.request(
        server.addr,
        &Request::Peer("gossip".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(
        resp,
        Response::PeerAck {
            from: "n2".to_owned(),
            payload: "gossip".to_owned()
        }
    );
}

#[tokio::test]
async fn pool_reuses_one_connection_and_reconnects_after_close() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));

    let first = within(pool.get(server.addr)).await.unwrap();
    for i in 0..2 {
        let resp: Response = within(pool.request(
            server.addr,
            &Request::Echo(format!("r{i}")),
            REQUEST_TIMEOUT_MS,
            FRAME_BYTES_MAX,
        ))
        .await
        .unwrap();
        assert_eq!(resp, Response::Echo(format!("r{i}")));
    }
    let again = within(pool.get(server.addr)).await.unwrap();
    assert_eq!(first.stable_id(), again.stable_id());
    assert_eq!(pool.len(), 1);
    // The server saw one connection carry both requests.
    assert_eq!(server.handler.connections.load(Ordering::SeqCst), 1);

    first.close(quinn::VarInt::from_u32(0), b"test closes it");
    let fresh = within(pool.get(server.addr)).await.unwrap();
    assert_ne!(fresh.stable_id(), first.stable_id());
    assert!(fresh.close_reason().is_none());
    let resp: Response = within(pool.request(
        server.addr,
        &Request::Echo("after".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(resp, Response::Echo("after".to_owned()));
    assert_eq!(server.handler.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_signed_by_another_ca_is_refused() {
    let certs = Certs::new();
    let other = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&other.identity("n2"));

    // TLS 1.3 lets the client finish its side first, so the server's refusal may surface
    // at connect or at the first request; either way nothing reaches the handler.
    let result: Result<Response, NetError> = within(pool.request(
        server.addr,
        &Request::Echo("intruder".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await;
    let err = result.unwrap_err();
    assert!(err.is_connection_lost(), "{err}");
    assert_eq!(server.handler.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn server_signed_by_another_ca_is_refused() {
    let certs = Certs::new();
    let other = Certs::new();
    let rogue = Server::start(&other.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));
    let err = within(pool.get(rogue.addr)).await.unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err}");
    assert!(err.to_string().contains(&rogue.addr.to_string()), "{err}");
}

#[tokio::test]
async fn client_certificate_is_client_role_and_cannot_send_peer_messages() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let client = ConnectionPool::new(bind_client(localhost(), &certs.identity("c1")).unwrap());

    let echo: Response = within(client.request(
        server.addr,
        &Request::Echo("hi".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(echo, Response::Echo("hi".to_owned()));

    let peer: Response = within(client.request(
        server.addr,
        &Request::Peer("forged gossip".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    match peer {
        Response::Error(msg) => assert!(msg.contains("client c1"), "{msg}"),
        other => panic!("a client sent a peer message: {other:?}"),
    }
    let c1 = PeerIdentity {
        role: Role::Client,
        name: "c1".to_owned(),
    };
    assert_eq!(*server.handler.seen.lock().unwrap(), [c1.clone(), c1]);
}

#[tokio::test]
async fn client_certificate_cannot_serve_as_a_node() {
    let certs = Certs::new();
    // Someone runs a "node" with a client certificate: it lacks the serverAuth usage and
    // the ringkv.node name, so real nodes refuse to talk to it.
    let fake = Server::start(&certs.identity("c1"));
    let pool = pool_for(&certs.identity("n2"));
    let err = within(pool.get(fake.addr)).await.unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err}");
}

#[tokio::test]
async fn garbage_gets_error_responses_and_the_server_keeps_serving() {
    let logs = LogBuffer::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());

    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));
    let conn = within(pool.get(server.addr)).await.unwrap();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0bad_f00d);
    let random: Vec<u8> = (0..300).map(|_| rng.random()).collect();
    let mut random_body = 200u32.to_be_bytes().to_vec();
    random_body.extend((0..200).map(|_| rng.random::<u8>()));
    let mut over_max = u32::MAX.to_be_bytes().to_vec();
    over_max.extend_from_slice(b"and a little more");
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0x81; 10]);
    let unknown_variant =
        encode_frame(&FutureRequest::Shutdown { now: true }, FRAME_BYTES_MAX).unwrap();

    let cases: [(&str, &[u8], &str); 6] = [
        ("random bytes", &random, "exceeds the limit"),
        ("random body", &random_body, "cannot decode"),
        ("length over max", &over_max, "exceeds the limit"),
        ("truncated", &truncated, "truncated frame"),
        ("unknown variant", &unknown_variant, "Shutdown"),
        ("empty stream", &[], "truncated frame"),
    ];
    for (i, (label, bytes, expect)) in cases.into_iter().enumerate() {
        // The handler offers an error response for bad requests, so every case gets one
        // (a handler returning None would get a finished stream instead).
        match send_raw(&conn, bytes).await {
            Ok(Response::Error(msg)) => assert!(msg.contains(expect), "{label}: {msg}"),
            other => panic!("{label}: expected an error response, got {other:?}"),
        }
        // The same connection still serves a well-formed request.
        let resp: Response = within(ringkv::net::request(
            &conn,
            &Request::Echo(format!("ok {i}")),
            REQUEST_TIMEOUT_MS,
            FRAME_BYTES_MAX,
        ))
        .await
        .unwrap();
        assert_eq!(resp, Response::Echo(format!("ok {i}")), "after {label}");
    }
    assert_eq!(
        server.handler.bad_requests.load(Ordering::SeqCst),
        cases.len()
    );
    assert_eq!(server.handler.handled.load(Ordering::SeqCst), cases.len());

    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("refusing a malformed request"))
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), cases.len(), "{text}");
    assert!(warnings.iter().all(|l| l.contains("node n2")), "{text}");
    assert!(
        warnings.iter().any(|l| l.contains("4294967295")),
        "the oversize warning names the size: {text}"
    );
}

#[tokio::test]
async fn unanswered_request_times_out_with_the_address() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));
    let timeout_ms = 300;
    let err = within(pool.request::<_, Response>(
        server.addr,
        &Request::Stall,
        timeout_ms,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    // A timed-out request does not poison the connection.
    let resp: Response = within(pool.request(
        server.addr,
        &Request::Echo("still here".to_owned()),
        REQUEST_TIMEOUT_MS,
        FRAME_BYTES_MAX,
    ))
    .await
    .unwrap();
    assert_eq!(resp, Response::Echo("still here".to_owned()));
}

#[tokio::test]
async fn connecting_to_nobody_is_bounded() {
    let certs = Certs::new();
    // A port that was just free: nothing answers there.
    let silent = std::net::UdpSocket::bind(localhost()).unwrap();
    let addr = silent.local_addr().unwrap();
    drop(silent);
    let pool = pool_for(&certs.identity("n2")).with_connect_timeout_ms(300);
    let err = within(pool.get(addr)).await.unwrap_err();
    assert!(
        matches!(err, NetError::Timeout { .. } | NetError::Handshake { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn oversized_request_is_refused_by_the_sender() {
    let certs = Certs::new();
    let server = Server::start(&certs.identity("n1"));
    let pool = pool_for(&certs.identity("n2"));
    let err = within(pool.request::<_, Response>(
        server.addr,
        &Request::Echo("y".repeat(2_000)),
        REQUEST_TIMEOUT_MS,
        1_000,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err.root(), NetError::FrameTooLarge { max: 1_000, .. }),
        "{err}"
    );
    assert_eq!(server.handler.handled.load(Ordering::SeqCst), 0);
}

/// Captures log output of the current thread (tokio tests run single-threaded, so the
/// server tasks log here too).
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let buf = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || buf.clone())
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
