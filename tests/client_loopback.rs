//! The Rust client over real QUIC on 127.0.0.1 against a one-replica in-memory node.
//!
//! The node here is deliberately tiny (no ring, no quorum): it applies writes with the
//! real object model, so these tests prove the client's side of the contract — envelope,
//! mTLS identity, reply decoding, context tokens, read-before-remove, error mapping —
//! independently of the node driver, which has its own cluster tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringkv::client::{Client, ClientError};
use ringkv::core::object::clock::{ActorId, Timestamp};
use ringkv::core::object::{Context, Limits, Object, ObjectError, Op};
use ringkv::core::placement::ring::NodeId;
use ringkv::net::transport::certs::CertStore;
use ringkv::net::{
    FRAME_BYTES_MAX, FrameReader, Handler, NetError, PeerIdentity, Role, bind, decode_body,
    encode_frame_into, load_identity, serve,
};
use ringkv::proto::{
    ClientReply, ClientRequest, Key, MemberStatus, QuorumFailure, QuorumOpts, RequestError,
    RingInfo, RingNode, SessionRequest, SessionResponse, StatusInfo, WireBody, WireRequest,
    WireResponse,
};

/// Bucket whose reads the fake node refuses at the frame level.
const REFUSED_BUCKET: &[u8] = b"refuse";
/// Bucket whose writes fail their quorum.
const NO_QUORUM_BUCKET: &[u8] = b"noquorum";
/// Per-call deadline for the unreachable-node test: loopback answers in microseconds.
const SHORT_TIMEOUT_MS: u64 = 500;
/// Calls made at once by clones of one client.
const CONCURRENT_CALLS: usize = 100;

/// One replica in memory; every write goes through `Object::apply` with actor 1.
#[derive(Debug, Default)]
struct FakeNode {
    objects: Mutex<BTreeMap<Key, Object>>,
    requests: Mutex<Vec<ClientRequest>>,
    clock_ms: AtomicU64,
    connections: AtomicU64,
    sessions: AtomicU64,
}

struct Cluster {
    _dir: tempfile::TempDir,
    certs: std::path::PathBuf,
    addr: SocketAddr,
    node: Arc<FakeNode>,
    endpoint: quinn::Endpoint,
}

impl FakeNode {
    fn answer(&self, body: WireBody) -> WireResponse {
        let WireBody::Client(request) = body else {
            return WireResponse::Refused("this test node serves clients only".into());
        };
        self.requests
            .lock()
            .expect("test lock")
            .push(request.clone());
        let reply = match request {
            ClientRequest::Get { key, .. } if key.bucket == REFUSED_BUCKET => {
                return WireResponse::Refused("protocol version 0 is not served here".into());
            }
            ClientRequest::Get { key, .. } => {
                let objects = self.objects.lock().expect("test lock");
                let object = objects.get(&key);
                ClientReply::Read {
                    found: object.is_some_and(|o| !o.is_tombstone()),
                    value: object.map(Object::read),
                    warning: None,
                }
            }
            ClientRequest::Write { key, .. } if key.bucket == NO_QUORUM_BUCKET => {
                ClientReply::Error(RequestError::QuorumFailed(Box::new(QuorumFailure {
                    op: "put".into(),
                    key: key.to_string(),
                    needed: 2,
                    n: 3,
                    strict: false,
                    acked: vec![NodeId::from("n1")],
                    failed: vec![],
                    timed_out: vec![NodeId::from("n2"), NodeId::from("n3")],
                    unreachable: vec![],
                    up: None,
                })))
            }
            ClientRequest::Write { key, op, .. } => self.apply(key, op),
            ClientRequest::Status => ClientReply::Status(StatusInfo {
                node: NodeId::from("n1"),
                members: vec![MemberStatus {
                    name: NodeId::from("n1"),
                    addr: "127.0.0.1:7101".into(),
                    state: "up".into(),
                    share: 1.0,
                    hints: 0,
                    phase: "normal".into(),
                }],
                transfers: Default::default(),
            }),
            ClientRequest::Ring => ClientReply::Ring(RingInfo {
                partitions: 1024,
                n: 1,
                nodes: vec![RingNode {
                    name: NodeId::from("n1"),
                    vnodes: 64,
                    primary_partitions: 1024,
                    replica_share: 1.0,
                }],
                balance: 1.0,
            }),
            ClientRequest::Join { .. } | ClientRequest::Leave => {
                ClientReply::Changed("membership changes are not simulated here".into())
            }
            ClientRequest::Stats => ClientReply::Error(RequestError::BadRequest(
                "this fake node keeps no statistics".into(),
            )),
            ClientRequest::Topology => ClientReply::Error(RequestError::BadRequest(
                "this fake node has no ring".into(),
            )),
        };
        WireResponse::Client(reply)
    }

    fn apply(&self, key: Key, op: Op) -> ClientReply {
        let ts = Timestamp {
            wall_ms: self.clock_ms.fetch_add(1, Ordering::SeqCst) + 1,
            logical: 0,
        };
        let mut objects = self.objects.lock().expect("test lock");
        match Object::apply(
            objects.get(&key),
            op,
            None,
            ActorId(1),
            ts,
            &Limits::default(),
        ) {
            Ok((object, applied)) => {
                let value = object.read();
                objects.insert(key, object);
                ClientReply::Written {
                    value,
                    warning: applied.warning,
                }
            }
            Err(error) => ClientReply::Error(RequestError::Object {
                key: key.to_string(),
                error,
            }),
        }
    }

    fn writes(&self) -> Vec<Op> {
        self.requests
            .lock()
            .expect("test lock")
            .iter()
            .filter_map(|r| match r {
                ClientRequest::Write { op, .. } => Some(op.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Handler for FakeNode {
    type Request = WireRequest;
    type Response = WireResponse;

    fn handle(
        &self,
        _peer: PeerIdentity,
        req: WireRequest,
    ) -> impl Future<Output = WireResponse> + Send {
        let response = self.answer(req.body);
        async move { response }
    }

    fn bad_request(&self, _peer: &PeerIdentity, err: &NetError) -> Option<WireResponse> {
        Some(WireResponse::Refused(err.to_string()))
    }

    fn connected(&self, _peer: &PeerIdentity, _conn: &quinn::Connection) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    fn opens_session(&self, req: &WireRequest) -> bool {
        matches!(req.body, WireBody::Session)
    }

    /// Answers a session's requests one by one, in order (the real node answers out of
    /// order; the client matches answers by id either way).
    async fn serve_session(
        &self,
        _peer: PeerIdentity,
        _remote: SocketAddr,
        _req: WireRequest,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        let mut reader = FrameReader::new(FRAME_BYTES_MAX);
        while let Ok(Some(body)) = reader.next(&mut recv).await {
            let Ok(SessionRequest { id, request }) = decode_body::<SessionRequest>(body) else {
                return;
            };
            let response = self.answer(WireBody::Client(request));
            let mut frame = Vec::new();
            encode_frame_into(
                &mut frame,
                &SessionResponse { id, response },
                FRAME_BYTES_MAX,
            )
            .expect("answer encodes");
            if send.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let store = CertStore::init(&certs).expect("CA");
        store.issue("n1", Role::Node).expect("node cert");
        store.issue("client", Role::Client).expect("client cert");
        let identity = load_identity(&certs, "n1").expect("node identity");
        let endpoint = bind("127.0.0.1:0".parse().expect("addr"), &identity).expect("bind");
        let addr = endpoint.local_addr().expect("local addr");
        let node = Arc::new(FakeNode::default());
        tokio::spawn(serve(endpoint.clone(), node.clone()));
        Cluster {
            _dir: dir,
            certs,
            addr,
            node,
            endpoint,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr, &self.certs, "client")
            .await
            .expect("client connects")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"test over");
    }
}

fn bytes(values: &[&str]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

#[tokio::test]
async fn blind_puts_become_siblings_and_a_put_with_their_context_resolves_them() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let key = Key::new("users", "alice");
    let opts = QuorumOpts::default();

    let missing = client.get(&key, opts).await.unwrap();
    assert!(!missing.found);
    assert!(missing.values.is_empty());

    client.put(&key, b"v1".to_vec(), None, opts).await.unwrap();
    client.put(&key, b"v2".to_vec(), None, opts).await.unwrap();
    let read = client.get(&key, opts).await.unwrap();
    assert!(read.found);
    let mut values = read.values.clone();
    values.sort();
    assert_eq!(values, bytes(&["v1", "v2"]), "blind writes are both kept");

    let written = client
        .put(&key, b"v3".to_vec(), Some(&read.context), opts)
        .await
        .unwrap();
    assert!(!written.context.is_empty());
    assert_eq!(client.get(&key, opts).await.unwrap().values, bytes(&["v3"]));

    client.delete(&key, None, opts).await.unwrap();
    let gone = client.get(&key, opts).await.unwrap();
    assert!(
        !gone.found,
        "a delete without a context removes what it read"
    );
    assert!(gone.values.is_empty());
}

#[tokio::test]
async fn lww_counter_set_map_and_hll_round_trip() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let opts = QuorumOpts::default();

    let cell = Key::new("cfg", "mode");
    client.put_lww(&cell, b"fast".to_vec(), opts).await.unwrap();
    client.put_lww(&cell, b"safe".to_vec(), opts).await.unwrap();
    let read = client.get(&cell, opts).await.unwrap();
    assert_eq!(read.values, bytes(&["safe"]), "the later stamp wins");
    assert_eq!(read.context, "", "lww has no causal context");

    let hits = Key::new("stats", "hits");
    assert_eq!(client.counter_get(&hits, opts).await.unwrap(), 0);
    assert_eq!(client.counter_add(&hits, 5, opts).await.unwrap(), 5);
    assert_eq!(client.counter_add(&hits, -2, opts).await.unwrap(), 3);
    assert_eq!(client.counter_get(&hits, opts).await.unwrap(), 3);

    let tags = Key::new("post", "tags");
    let members = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let added = client
        .set_add(&tags, members(&["a", "b", "c"]), opts)
        .await
        .unwrap();
    assert_eq!(added.members, members(&["a", "b", "c"]));
    let removed = client
        .set_remove(&tags, members(&["b"]), opts)
        .await
        .unwrap();
    assert_eq!(removed.members, members(&["a", "c"]));
    let set_get = client.set_get(&tags, opts).await.unwrap();
    assert_eq!(set_get.members, members(&["a", "c"]));
    let remove_ops: Vec<Context> = cluster
        .node
        .writes()
        .into_iter()
        .filter_map(|op| match op {
            Op::SetRemove { context, .. } => Some(context),
            _ => None,
        })
        .collect();
    assert_eq!(remove_ops.len(), 1);
    assert!(
        !remove_ops[0].is_empty(),
        "set_remove sends the context of its read"
    );

    let missing_set = Key::new("post", "none");
    let writes_before = cluster.node.writes().len();
    let nothing = client
        .set_remove(&missing_set, members(&["x"]), opts)
        .await
        .unwrap();
    assert!(nothing.members.is_empty());
    assert_eq!(
        cluster.node.writes().len(),
        writes_before,
        "removing from a missing set writes nothing"
    );

    let profile = Key::new("users", "bob");
    client.map_set(&profile, "name", "Bob", opts).await.unwrap();
    client.map_incr(&profile, "visits", 2, opts).await.unwrap();
    let map = client.map_get(&profile, opts).await.unwrap();
    assert_eq!(map.fields["name"].register, vec!["Bob".to_string()]);
    assert_eq!(map.fields["visits"].counter, Some(2));
    assert!(!map.context.is_empty());

    let visitors = Key::new("site", "visitors");
    let items: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let estimate = client.hll_add(&visitors, items, opts).await.unwrap();
    assert!((190..=210).contains(&estimate), "estimate {estimate}");
    assert_eq!(client.hll_count(&visitors, opts).await.unwrap(), estimate);
}

#[tokio::test]
async fn node_errors_arrive_as_typed_errors_with_their_sentences() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let opts = QuorumOpts::default();

    let tags = Key::new("post", "tags");
    client.set_add(&tags, vec!["a".into()], opts).await.unwrap();
    let err = client.counter_add(&tags, 1, opts).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Request(RequestError::Object {
                error: ObjectError::PolicyMismatch { .. },
                ..
            })
        ),
        "{err}"
    );
    let err = client.counter_get(&tags, opts).await.unwrap_err();
    assert!(matches!(err, ClientError::WrongPolicy { .. }), "{err}");

    let err = client
        .put(&Key::new("noquorum", "k"), b"v".to_vec(), None, opts)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("got 1 of the 2 acks needed"), "{text}");
    assert!(text.contains("timed out: n2, n3"), "{text}");

    let err = client
        .get(&Key::new("refuse", "k"), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Refused { .. }), "{err}");

    let err = client
        .put(&Key::new("b", "k"), b"v".to_vec(), Some("%%%"), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::BadContext { .. }), "{err}");

    let status = client.status().await.unwrap();
    assert_eq!(status.members[0].name, NodeId::from("n1"));
    let ring = client.ring().await.unwrap();
    assert_eq!(ring.partitions, 1024);
}

#[tokio::test]
async fn clones_share_one_connection_and_one_session() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let clone = client.clone();
    let key = Key::new("stats", "hits");
    let opts = QuorumOpts::default();
    let (a, b) = tokio::join!(
        client.counter_add(&key, 1, opts),
        clone.counter_add(&key, 1, opts)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(client.counter_get(&key, opts).await.unwrap(), 2);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_CALLS {
        let client = client.clone();
        let key = key.clone();
        calls.spawn(async move { client.counter_add(&key, 1, opts).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    let total = 2 + CONCURRENT_CALLS as i64;
    assert_eq!(clone.counter_get(&key, opts).await.unwrap(), total);
    assert_eq!(cluster.node.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        cluster.node.sessions.load(Ordering::SeqCst),
        1,
        "every call of every clone went on one session stream"
    );
}

#[tokio::test]
async fn a_missing_certificate_names_the_command_that_issues_it() {
    let cluster = Cluster::start().await;
    let err = Client::connect(cluster.addr, &cluster.certs, "nobody")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Identity { .. }), "{text}");
    assert!(text.contains("ringkv certs issue"), "{text}");
}

#[tokio::test]
async fn an_unreachable_node_fails_within_the_deadline_with_a_hint() {
    let cluster = Cluster::start().await;
    // A bound socket that never answers: the handshake can only time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let identity = load_identity(&cluster.certs, "client").expect("client identity");
    let client = Client::with_identity(addr, &identity)
        .expect("endpoint")
        .with_timeout_ms(SHORT_TIMEOUT_MS);
    let err = client.status().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Net { .. }), "{text}");
    assert!(text.contains("ringkv dev"), "{text}");
}
