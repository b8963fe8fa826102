//! The node driver's group commit with the persist overlapped with the next batches:
//! a reply still leaves only after a persist that covers its write, while replication
//! leaves at once; and the actor id survives a clean stop but not a crash.
//!
//! Real nodes on a storage whose persist can be held shut: while it is held, an
//! acknowledged put must not come back (even when the other replicas have persisted it);
//! once it opens, the put completes.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ringkv::client::Client;
use ringkv::core::node::{META_ACTOR_KEY, MemberSpec, NodeConfig};
use ringkv::core::object::{Object, ReadValue};
use ringkv::core::replica::location;
use ringkv::net::driver::{NodeHandle, bind_node, start_with_storage};
use ringkv::net::{CertStore, Role};
use ringkv::proto::{Key, QuorumOpts};
use ringkv::storage::{
    BatchOp, KeyValue, MemoryStorage, Rmw, Space, Storage, StorageError, SyncMode,
};

/// Longest any step waits.
const STEP_MS: u64 = 10_000;
/// How long the put is given to (wrongly) come back while persists are held.
const HELD_MS: u64 = 300;

/// Memory storage whose persists block while the gate is shut, and say when one starts.
struct GatedStorage {
    inner: MemoryStorage,
    shut: Mutex<bool>,
    opened: Condvar,
    started: Mutex<Option<std_mpsc::Sender<()>>>,
}

impl GatedStorage {
    fn set_shut(&self, shut: bool) {
        *self.shut.lock().unwrap() = shut;
        self.opened.notify_all();
    }
}

impl std::fmt::Debug for GatedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedStorage")
    }
}

impl Storage for GatedStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }

    fn update(
        &self,
        space: Space,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>) -> Rmw,
    ) -> Result<(), StorageError> {
        self.inner.update(space, key, f)
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.inner.scan(space, start, end, limit)
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        self.inner.batch(ops)
    }

    fn persist(&self) -> Result<(), StorageError> {
        let mut shut = self.shut.lock().unwrap();
        if *shut {
            if let Some(tx) = self.started.lock().unwrap().as_ref() {
                let _ = tx.send(());
            }
            // Bounded: a test that never opens the gate fails on its own timeouts.
            let (guard, _) = self
                .opened
                .wait_timeout_while(shut, Duration::from_millis(STEP_MS * 2), |s| *s)
                .unwrap();
            shut = guard;
        }
        drop(shut);
        self.inner.persist()
    }

    fn sync_mode(&self) -> SyncMode {
        self.inner.sync_mode()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_for_the_persist_that_covers_its_write() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).unwrap();
    store.issue("n1", Role::Node).unwrap();
    store.issue("client", Role::Client).unwrap();
    let (storage, started_rx) = gated_storage();
    let (nodes, addr) = start_cluster(&certs, storage.clone(), &[]);
    let client = Client::connect(addr, &certs, "client").await.unwrap();
    let opts = QuorumOpts {
        n: Some(1),
        w: Some(1),
        r: Some(1),
        ..QuorumOpts::default()
    };
    let key = Key::new("b", "k");
    // A put while persists flow normally: it completes.
    put_in_time(&client, &key, b"1", opts).await;

    storage.set_shut(true);
    let put = spawn_put(&client, &key, b"2", opts);
    // The put's write starts a persist, which now blocks.
    tokio::task::spawn_blocking(move || {
        started_rx
            .recv_timeout(Duration::from_millis(STEP_MS))
            .expect("a persist started after the put")
    })
    .await
    .unwrap();
    held_until_opened(
        &storage,
        put,
        "the put was acknowledged before its write was persisted",
    )
    .await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A put that must complete within [`STEP_MS`].
async fn put_in_time(client: &Client, key: &Key, value: &[u8], opts: QuorumOpts) {
    tokio::time::timeout(
        Duration::from_millis(STEP_MS),
        client.put_lww(key, value.to_vec(), opts),
    )
    .await
    .expect("the put finished in time")
    .expect("the put succeeded");
}

/// Checks that `put` does not come back while `gate`'s persists are held (`why` says
/// what it would mean), then opens the gate and checks that it succeeds.
async fn held_until_opened(
    gate: &GatedStorage,
    mut put: tokio::task::JoinHandle<
        Result<ringkv::client::WriteResult, ringkv::client::ClientError>,
    >,
    why: &str,
) {
    let early = tokio::time::timeout(Duration::from_millis(HELD_MS), &mut put).await;
    assert!(early.is_err(), "{why}: {early:?}");
    gate.set_shut(false);
    tokio::time::timeout(Duration::from_millis(STEP_MS), put)
        .await
        .expect("the put completes once the persist does")
        .unwrap()
        .expect("the put succeeds");
}

/// A put running in the background, to check when it comes back.
fn spawn_put(
    client: &Client,
    key: &Key,
    value: &[u8],
    opts: QuorumOpts,
) -> tokio::task::JoinHandle<Result<ringkv::client::WriteResult, ringkv::client::ClientError>> {
    let (client, key, value) = (client.clone(), key.clone(), value.to_vec());
    tokio::spawn(async move { client.put_lww(&key, value, opts).await })
}

/// Starts n1 (on `gated`) and, with `others`, n2 and n3 on plain memory storage.
fn start_cluster(
    certs: &std::path::Path,
    gated: Arc<GatedStorage>,
    others: &[Arc<MemoryStorage>],
) -> (Vec<NodeHandle>, std::net::SocketAddr) {
    let count = 1 + others.len();
    let bound: Vec<_> = (1..=count)
        .map(|i| bind_node("127.0.0.1:0".parse().unwrap(), certs, &format!("n{i}")).unwrap())
        .collect();
    let members: Vec<MemberSpec> = bound
        .iter()
        .enumerate()
        .map(|(i, b)| MemberSpec::new(format!("n{}", i + 1), b.addr().to_string()))
        .collect();
    let addr = bound[0].addr();
    let mut nodes = Vec::new();
    for (i, b) in bound.into_iter().enumerate() {
        let mut config = NodeConfig::new(format!("n{}", i + 1));
        config.partitions = 64;
        let storage: Arc<dyn Storage> = if i == 0 {
            gated.clone()
        } else {
            others[i - 1].clone()
        };
        nodes.push(start_with_storage(b, config, members.clone(), storage).unwrap());
    }
    (nodes, addr)
}

fn gated_storage() -> (Arc<GatedStorage>, std_mpsc::Receiver<()>) {
    let (started_tx, started_rx) = std_mpsc::channel();
    let storage = Arc::new(GatedStorage {
        inner: MemoryStorage::with_sync_mode(SyncMode::Group),
        shut: Mutex::new(false),
        opened: Condvar::new(),
        started: Mutex::new(Some(started_tx)),
    });
    (storage, started_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_leaves_before_the_coordinators_persist_but_the_reply_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).unwrap();
    for name in ["n1", "n2", "n3"] {
        store.issue(name, Role::Node).unwrap();
    }
    store.issue("client", Role::Client).unwrap();
    let (gated, started_rx) = gated_storage();
    let others = [
        Arc::new(MemoryStorage::with_sync_mode(SyncMode::Group)),
        Arc::new(MemoryStorage::with_sync_mode(SyncMode::Group)),
    ];
    let (nodes, addr) = start_cluster(&certs, gated.clone(), &others);
    let client = Client::connect(addr, &certs, "client").await.unwrap();
    let opts = QuorumOpts {
        n: Some(3),
        w: Some(2),
        r: Some(2),
        ..QuorumOpts::default()
    };
    let key = Key::new("b", "k");
    put_in_time(&client, &key, b"1", opts).await;

    // Drain the persists n1 started so far; the next one is the held put's.
    while started_rx.try_recv().is_ok() {}
    gated.set_shut(true);
    let put = spawn_put(&client, &key, b"2", opts);
    // With n1's persist held, the other two replicas still get the write and persist it:
    // replication did not wait for the coordinator's fsync.
    let (space, raw) = location(&key, None).unwrap();
    let holds_2 = |s: &Arc<MemoryStorage>| {
        let Some(bytes) = s.get(space, &raw).unwrap() else {
            return false;
        };
        let object: Object = rmp_serde::from_slice(&bytes).unwrap();
        matches!(object.read(), ReadValue::Lww { value: Some(v), .. } if v.as_slice() == b"2")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(STEP_MS);
    while !others.iter().all(holds_2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "n2 and n3 got the write while n1's persist was held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held_until_opened(
        &gated,
        put,
        "W=2 was met by n2 and n3, but the coordinator's reply must still wait for its own persist",
    )
    .await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_id_survives_a_clean_stop_and_is_renewed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).unwrap();
    store.issue("n1", Role::Node).unwrap();
    let (gated, _started) = gated_storage();
    let actor = |s: &GatedStorage| s.get(Space::Meta, META_ACTOR_KEY).unwrap();

    let (nodes, _) = start_cluster(&certs, gated.clone(), &[]);
    let first = actor(&gated).expect("an actor id is stored at start");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
    let (nodes, _) = start_cluster(&certs, gated.clone(), &[]);
    assert_eq!(
        actor(&gated),
        Some(first.clone()),
        "a clean stop keeps the actor"
    );

    for node in nodes {
        node.kill().await;
    }
    let (nodes, _) = start_cluster(&certs, gated.clone(), &[]);
    let third = actor(&gated).expect("an actor id is stored at start");
    assert_ne!(third, first, "a crash makes a fresh actor");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
