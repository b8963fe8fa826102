//! The cluster-aware client's routing and retries, against fake nodes over real QUIC on
//! 127.0.0.1.
//!
//! Each fake node answers `Topology` with one shared member list and records every data
//! request it receives, so a test sees exactly which node a request reached: the key's
//! coordinator (computed here independently with `Ring::new`), and nobody else — a real
//! node would have had to forward it otherwise. Fake nodes can be told to refuse data
//! requests, to show which refusals the client takes elsewhere and that a retried write
//! carries the same operation id.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ringkv::client::{ATTEMPTS_MAX, Client, ClientError};
use ringkv::core::placement::ring::{Member, NodeId, Ring, key_position};
use ringkv::net::transport::certs::CertStore;
use ringkv::net::{
    FRAME_BYTES_MAX, FrameReader, Handler, NetError, PeerIdentity, Role, bind, decode_body,
    encode_frame_into, load_identity, serve,
};
use ringkv::proto::{
    ClientReply, ClientRequest, Key, QuorumOpts, RequestError, SessionRequest, SessionResponse,
    TopologyInfo, TopologyMember, WireBody, WireRequest, WireResponse,
};
use ringkv::{OpId, ReadValue};

/// Partitions of the fake cluster's ring.
const PARTITIONS: u32 = 256;
/// Vnodes per fake node.
const VNODES: u32 = 16;
/// The fake cluster's default N.
const N_DEFAULT: u8 = 3;
/// Keys each routing test writes and reads.
const KEYS: usize = 40;
/// Longest any call of these tests may take (loopback answers in microseconds).
const CALL_TIMEOUT_MS: u64 = 5_000;

/// How a fake node answers data requests.
const SERVE: u8 = 0;
const NOT_READY: u8 = 1;
const BAD_REQUEST: u8 = 2;

/// One fake node: its name, what it received, how it answers.
#[derive(Debug)]
struct FakeNode {
    name: String,
    members: Arc<OnceLock<Vec<TopologyMember>>>,
    received: Mutex<Vec<ClientRequest>>,
    behaviour: AtomicU8,
}

struct FakeCluster {
    _dir: tempfile::TempDir,
    certs: std::path::PathBuf,
    nodes: Vec<Arc<FakeNode>>,
    addrs: Vec<SocketAddr>,
    endpoints: Vec<quinn::Endpoint>,
    ring: Ring,
}

impl FakeNode {
    fn answer(&self, request: ClientRequest) -> WireResponse {
        let reply = match request {
            ClientRequest::Topology => ClientReply::Topology(TopologyInfo {
                node: NodeId::new(self.name.clone()),
                partitions: PARTITIONS,
                n: N_DEFAULT,
                members: self.members.get().cloned().unwrap_or_default(),
            }),
            ClientRequest::Get { .. } | ClientRequest::Write { .. } => {
                self.received
                    .lock()
                    .expect("test lock")
                    .push(request.clone());
                match self.behaviour.load(Ordering::SeqCst) {
                    NOT_READY => ClientReply::Error(RequestError::NotReady {
                        node: NodeId::new(self.name.clone()),
                        reason: "it is still joining".into(),
                    }),
                    BAD_REQUEST => {
                        ClientReply::Error(RequestError::BadRequest("not on this node".into()))
                    }
                    _ if matches!(request, ClientRequest::Get { .. }) => ClientReply::Read {
                        found: false,
                        value: None,
                        warning: None,
                    },
                    _ => ClientReply::Written {
                        value: ReadValue::Counter { value: 1 },
                        warning: None,
                    },
                }
            }
            other => ClientReply::Error(RequestError::BadRequest(format!(
                "a fake node does not serve {other:?}"
            ))),
        };
        WireResponse::Client(reply)
    }

    fn received(&self) -> Vec<ClientRequest> {
        self.received.lock().expect("test lock").clone()
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
        let response = match req.body {
            WireBody::Client(request) => self.answer(request),
            _ => WireResponse::Refused("not a client request".into()),
        };
        async move { response }
    }

    fn bad_request(&self, _peer: &PeerIdentity, err: &NetError) -> Option<WireResponse> {
        Some(WireResponse::Refused(err.to_string()))
    }

    fn opens_session(&self, req: &WireRequest) -> bool {
        matches!(req.body, WireBody::Session)
    }

    async fn serve_session(
        &self,
        _peer: PeerIdentity,
        _remote: SocketAddr,
        _req: WireRequest,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let mut reader = FrameReader::new(FRAME_BYTES_MAX);
        while let Ok(Some(body)) = reader.next(&mut recv).await {
            let Ok(SessionRequest { id, request }) = decode_body::<SessionRequest>(body) else {
                return;
            };
            let response = self.answer(request);
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

impl FakeCluster {
    async fn start(count: usize) -> FakeCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let store = CertStore::init(&certs).expect("CA");
        store.issue("client", Role::Client).expect("client cert");
        let members = Arc::new(OnceLock::new());
        let (mut nodes, mut addrs, mut endpoints) = (Vec::new(), Vec::new(), Vec::new());
        for i in 1..=count {
            let name = format!("n{i}");
            store.issue(&name, Role::Node).expect("node cert");
            let identity = load_identity(&certs, &name).expect("node identity");
            let endpoint = bind("127.0.0.1:0".parse().expect("addr"), &identity).expect("bind");
            addrs.push(endpoint.local_addr().expect("local addr"));
            let node = Arc::new(FakeNode {
                name,
                members: members.clone(),
                received: Mutex::new(Vec::new()),
                behaviour: AtomicU8::new(SERVE),
            });
            tokio::spawn(serve(endpoint.clone(), node.clone()));
            nodes.push(node);
            endpoints.push(endpoint);
        }
        let list: Vec<TopologyMember> = nodes
            .iter()
            .zip(&addrs)
            .map(|(node, addr)| TopologyMember {
                name: NodeId::new(node.name.clone()),
                addr: addr.to_string(),
                vnodes: VNODES,
                in_ring: true,
                state: "up".into(),
            })
            .collect();
        let ring_members: Vec<Member> = list
            .iter()
            .map(|m| Member {
                name: m.name.clone(),
                vnodes: m.vnodes,
            })
            .collect();
        let ring = Ring::new(&ring_members, PARTITIONS).expect("ring");
        members.set(list).expect("members set once");
        FakeCluster {
            _dir: dir,
            certs,
            nodes,
            addrs,
            endpoints,
            ring,
        }
    }

    async fn client(&self, seeds: &[SocketAddr]) -> Client {
        Client::connect_cluster(seeds, &self.certs, "client")
            .await
            .expect("client learns the cluster")
            .with_timeout_ms(CALL_TIMEOUT_MS)
    }

    /// The key's preference list (N primaries), as indexes into `nodes`.
    fn primaries(&self, key: &Key, n: usize) -> Vec<usize> {
        let partition = self.ring.partition_of(key_position(&key.bucket, &key.key));
        self.ring
            .primaries(partition, n)
            .iter()
            .map(|name| {
                self.nodes
                    .iter()
                    .position(|node| node.name == name.as_str())
                    .expect("a member")
            })
            .collect()
    }

    /// Which nodes received a data request for `key`, and the write ids they saw.
    fn receivers(&self, key: &Key) -> Vec<(usize, Option<OpId>)> {
        let mut got = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for request in node.received() {
                match request {
                    ClientRequest::Write { key: k, id, .. } if &k == key => got.push((i, id)),
                    ClientRequest::Get { key: k, .. } if &k == key => got.push((i, None)),
                    _ => {}
                }
            }
        }
        got
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for endpoint in &self.endpoints {
            endpoint.close(quinn::VarInt::from_u32(0), b"test over");
        }
    }
}

#[tokio::test]
async fn each_request_goes_straight_to_its_keys_coordinator() {
    let cluster = FakeCluster::start(5).await;
    // One seed: the client learns the other four from it.
    let client = cluster.client(&cluster.addrs[..1]).await;
    let opts = QuorumOpts::default();
    let mut coordinators = std::collections::BTreeSet::new();
    for i in 0..KEYS {
        let key = Key::new("route", format!("k{i}"));
        let primaries = cluster.primaries(&key, usize::from(N_DEFAULT));
        let coordinator = primaries[0];
        assert_eq!(
            client.route(&key, None)[0],
            cluster.addrs[coordinator],
            "{key}"
        );
        client
            .put(&key, b"v".to_vec(), None, opts)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        client
            .get(&key, opts)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        let receivers = cluster.receivers(&key);
        assert_eq!(receivers.len(), 2, "{key}: {receivers:?}");
        assert!(
            receivers.iter().all(|(node, _)| *node == coordinator),
            "{key}: sent to {receivers:?}, not only to its coordinator n{}",
            coordinator + 1
        );
        assert!(receivers[0].1.is_some(), "{key}: a write carries an id");
        coordinators.insert(coordinator);
    }
    assert!(
        coordinators.len() > 1,
        "{KEYS} keys should have several coordinators: {coordinators:?}"
    );
    // Operation ids: one client id, a new sequence number per write.
    let ids: Vec<OpId> = cluster
        .nodes
        .iter()
        .flat_map(|n| n.received())
        .filter_map(|r| match r {
            ClientRequest::Write { id, .. } => id,
            _ => None,
        })
        .collect();
    let mut seqs: Vec<u64> = ids.iter().map(|id| id.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), KEYS, "one sequence number per write");
    assert!(ids.iter().all(|id| id.client == ids[0].client));
}

#[tokio::test]
async fn a_refusing_coordinator_is_retried_on_the_next_replica_with_the_same_operation_id() {
    let cluster = FakeCluster::start(4).await;
    let client = cluster.client(&cluster.addrs[..1]).await;
    let key = (0..)
        .map(|i| Key::new("retry", format!("k{i}")))
        .find(|k| cluster.primaries(k, 3)[0] != 0)
        .expect("a key n1 does not coordinate");
    let primaries = cluster.primaries(&key, 3);
    cluster.nodes[primaries[0]]
        .behaviour
        .store(NOT_READY, Ordering::SeqCst);
    let total = client
        .counter_add(&key, 1, QuorumOpts::default())
        .await
        .expect("the second replica takes it");
    assert_eq!(total, 1);
    // `receivers` lists by node, not by time: compare as sets.
    let receivers = cluster.receivers(&key);
    let mut nodes: Vec<usize> = receivers.iter().map(|(n, _)| *n).collect();
    nodes.sort_unstable();
    let mut expected = primaries[..2].to_vec();
    expected.sort_unstable();
    assert_eq!(nodes, expected, "{receivers:?}");
    assert!(receivers[0].1.is_some());
    assert_eq!(receivers[0].1, receivers[1].1, "the retry reuses the id");
    let first_id = receivers[0].1;

    // The refusing node is now tried last; the next write of the key goes to the second
    // replica at once, with a new id.
    client
        .counter_add(&key, 1, QuorumOpts::default())
        .await
        .expect("second write");
    let receivers = cluster.receivers(&key);
    assert_eq!(receivers.len(), 3, "{receivers:?}");
    let at = |node: usize| -> Vec<Option<OpId>> {
        receivers
            .iter()
            .filter(|(n, _)| *n == node)
            .map(|(_, id)| *id)
            .collect()
    };
    assert_eq!(at(primaries[0]).len(), 1, "{receivers:?}");
    let second = at(primaries[1]);
    assert_eq!(second.len(), 2, "{receivers:?}");
    assert!(second.contains(&first_id));
    assert!(second.iter().any(|id| *id != first_id && id.is_some()));
}

#[tokio::test]
async fn every_node_refusing_ends_after_the_attempt_limit_naming_each_node() {
    let cluster = FakeCluster::start(6).await;
    let client = cluster.client(&cluster.addrs[..1]).await;
    for node in &cluster.nodes {
        node.behaviour.store(NOT_READY, Ordering::SeqCst);
    }
    let key = Key::new("retry", "everywhere");
    let err = client
        .put(&key, b"v".to_vec(), None, QuorumOpts::default())
        .await
        .expect_err("no node serves");
    let receivers = cluster.receivers(&key);
    assert_eq!(receivers.len(), ATTEMPTS_MAX, "{receivers:?}");
    assert!(receivers.iter().all(|(_, id)| *id == receivers[0].1));
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Exhausted { attempts, .. } if attempts == ATTEMPTS_MAX),
        "{text}"
    );
    assert!(text.contains("retry/everywhere"), "{text}");
    assert!(text.contains(&format!("{ATTEMPTS_MAX} attempts")), "{text}");
    for (node, _) in receivers {
        assert!(text.contains(&cluster.nodes[node].name), "{text}");
    }
}

#[tokio::test]
async fn a_failure_every_node_would_repeat_is_not_retried() {
    let cluster = FakeCluster::start(3).await;
    let client = cluster.client(&cluster.addrs[..1]).await;
    for node in &cluster.nodes {
        node.behaviour.store(BAD_REQUEST, Ordering::SeqCst);
    }
    let key = Key::new("retry", "bad");
    let err = client
        .get(&key, QuorumOpts::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, ClientError::Request(RequestError::BadRequest(_))),
        "{err}"
    );
    assert_eq!(cluster.receivers(&key).len(), 1);
}

#[tokio::test]
async fn a_dead_coordinator_is_skipped_and_a_dead_first_seed_too() {
    let cluster = FakeCluster::start(4).await;
    // A seed that never answers comes first: the client goes on to the next.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead_seed = silent.local_addr().expect("addr");
    let started = Instant::now();
    let client = cluster.client(&[dead_seed, cluster.addrs[1]]).await;
    assert!(
        started.elapsed() < Duration::from_millis(CALL_TIMEOUT_MS),
        "{:?}",
        started.elapsed()
    );
    let key = (0..)
        .map(|i| Key::new("dead", format!("k{i}")))
        .find(|k| cluster.primaries(k, 3)[0] == 2)
        .expect("a key n3 coordinates");
    // n3 stops: its connections close and it takes no new ones.
    cluster.endpoints[2].close(quinn::VarInt::from_u32(0), b"killed");
    let started = Instant::now();
    client
        .put(&key, b"v".to_vec(), None, QuorumOpts::default())
        .await
        .expect("the next replica takes it");
    assert!(
        started.elapsed() < Duration::from_millis(CALL_TIMEOUT_MS),
        "{:?}",
        started.elapsed()
    );
    let receivers = cluster.receivers(&key);
    assert_eq!(receivers.len(), 1, "{receivers:?}");
    assert_eq!(receivers[0].0, cluster.primaries(&key, 3)[1]);
}
