//! The Rust client: typed calls for every policy, sent to one node or routed across the
//! cluster.
//!
//! The CLI, the integration tests, the benches and the examples all talk to a cluster the
//! same way, so the wire details live here once: the versioned envelope, the mTLS client
//! certificate, the per-call deadline, and turning replies into plain Rust values. Causal
//! contexts cross this API as opaque tokens, so that their encoding can change without
//! breaking callers: a caller passes back exactly the string a read returned and never
//! looks inside it.
//!
//! A [`Client`] is cheap to clone; clones share pooled connections and one session per
//! node (many requests in flight on one stream: `client/session.rs`), reopened lazily if
//! a node restarts. Any node can take any request: a node outside the key's preference
//! list forwards it to the key's coordinator. A client made by [`Client::connect`] sends
//! everything to its one node. One made by [`Client::connect_cluster`] learns the members
//! and the ring from its seeds and keeps that view fresh (`client/cluster.rs`,
//! `client/topology.rs`), sends each get or write straight to a live replica of the key,
//! which saves the forward hop, and retries a call that failed on a node on the next
//! candidate (`client/route.rs`): writes with the same operation id, so a retry is
//! applied at most once.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::core::object::{Context, FieldRead, MapOp, ObjectError, Op, Policy, ReadValue};
use crate::core::stats::{ClusterStats, StatsInfo};
use crate::net::{ConnectionPool, Identity, NetError, bind_client, load_identity};
use crate::proto::{
    ClientReply, ClientRequest, Key, QuorumOpts, RequestError, RingInfo, StatusInfo,
};

pub use self::cluster::{
    AVOID_MS, RECONNECTS_MAX, SEEDS_MAX, TOPOLOGY_SOURCES_MAX, TOPOLOGY_TIMEOUT_MS,
    VIEW_REFRESH_GAP_MS, VIEW_REFRESH_INTERVAL_MS,
};
use self::cluster::{CLUSTER_CONNECT_TIMEOUT_MS, Mode, Shared};
use self::route::Attempts;
pub use self::route::{ATTEMPTS_MAX, RETRIES_DOUBTFUL_MAX, Retry};
pub use self::topology::TopologyError;

/// Deadline for one call (connecting, sending and the node's answer) unless the request's
/// own quorum timeout needs longer.
pub const CLIENT_TIMEOUT_MS: u64 = 10_000;
/// Headroom over a request's `timeout_ms`, so a node's quorum failure (which names the
/// nodes that did not answer) reaches the client before the client gives up on its own.
pub const CLIENT_TIMEOUT_MARGIN_MS: u64 = 2_000;

/// A client of a cluster: of one node ([`Client::connect`]), or of every member, learned
/// from seeds ([`Client::connect_cluster`]).
///
/// Every call and every clone of a `Client` share the QUIC connections and one session
/// stream per node, so clone it freely across tasks. Each call takes its own
/// [`QuorumOpts`]: N, W or R, strictness and a timeout, per request. Every write carries
/// an operation id ([`crate::OpId`]): this client's random id and a sequence number shared
/// by the clones, sent unchanged on every retry of the write.
///
/// # Examples
///
/// Write a value, read it back, and resolve concurrent writes (siblings) by writing
/// back with the context the read returned. `ringkv dev` listens on `127.0.0.1:7101`
/// and keeps its certificates in `./ringkv-dev/certs`:
///
/// ```no_run
/// use std::path::Path;
///
/// use ringkv::{Client, ClientError, Key, QuorumOpts};
///
/// # async fn example() -> Result<(), ClientError> {
/// let addr = "127.0.0.1:7101".parse().expect("a socket address");
/// let client = Client::connect(addr, Path::new("ringkv-dev/certs"), "client").await?;
/// let key = Key::new("users", "alice");
///
/// // W=2 of N=3: acknowledged once two replicas persisted it.
/// let opts = QuorumOpts { w: Some(2), ..QuorumOpts::default() };
/// client.put(&key, b"hello".to_vec(), None, opts).await?;
///
/// let read = client.get(&key, QuorumOpts::default()).await?;
/// if read.values.len() > 1 {
///     // Concurrent writes: merge them as the application sees fit, then write back
///     // with the read's context so the result supersedes every sibling.
///     let merged = read.values.concat();
///     client.put(&key, merged, Some(&read.context), QuorumOpts::default()).await?;
/// }
/// # Ok(())
/// # }
/// ```
///
/// Counters and sets are CRDTs: concurrent updates merge instead of conflicting.
///
/// ```no_run
/// # use ringkv::{Client, ClientError, Key, QuorumOpts};
/// # async fn example(client: Client) -> Result<(), ClientError> {
/// let visits = Key::new("stats", "visits");
/// let total = client.counter_add(&visits, 1, QuorumOpts::default()).await?;
/// assert!(total >= 1);
///
/// let tags = Key::new("posts", "42-tags");
/// client
///     .set_add(&tags, vec!["rust".into()], QuorumOpts::default())
///     .await?;
/// let members = client.set_get(&tags, QuorumOpts::default()).await?.members;
/// assert!(members.contains(&"rust".to_string()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout_ms: u64,
}

/// A `get` of a `siblings` or `lww` key.
#[derive(Debug, Clone, PartialEq)]
pub struct GetResult {
    /// False when no replica holds a live value (never written, or deleted).
    pub found: bool,
    /// The sibling values (one when there is no conflict; empty when not found). For an
    /// `lww` key, its one value.
    pub values: Vec<Vec<u8>>,
    /// The causal context to pass to the next put or delete ("" when there is none).
    pub context: String,
    /// What the node returned, for keys of other policies and for details (LWW stamps).
    pub value: Option<ReadValue>,
    /// A node's warning, such as too many siblings.
    pub warning: Option<String>,
}

/// The object after a write, as the coordinator merged it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    /// The context of the new object ("" for policies without one).
    pub context: String,
    /// The object after the write.
    pub value: ReadValue,
    /// A node's warning, such as too many siblings.
    pub warning: Option<String>,
}

/// A `set` key's members and context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRead {
    /// The members, sorted; empty for a missing or deleted key.
    pub members: Vec<String>,
    /// The context to pass to a remove, so it takes away the members read ("" when there is
    /// none).
    pub context: String,
}

/// A `map` key's fields and context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapRead {
    /// Every non-empty field by name; empty for a missing or deleted key.
    pub fields: BTreeMap<String, FieldRead>,
    /// The context to pass to a field removal ("" when there is none).
    pub context: String,
}

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The client certificate could not be loaded; nothing was sent.
    #[error("cannot load the client certificate {name:?} from {}: {source}", dir.display())]
    Identity {
        /// The certificate name asked for.
        name: String,
        /// The directory it was looked for in.
        dir: PathBuf,
        /// The transport's error.
        #[source]
        source: Box<NetError>,
    },
    /// The client's QUIC endpoint could not be bound; nothing was sent.
    #[error("cannot set up the client's QUIC endpoint: {0}")]
    Endpoint(#[source] Box<NetError>),
    /// The request could not be sent or its answer did not arrive (connect, handshake,
    /// timeout, session ended); a write may or may not have been applied.
    #[error(
        "request to node {addr} failed: {source}; if no cluster is running, start one with `ringkv dev`, or point --node at a running node"
    )]
    Net {
        /// The node the request was sent to.
        addr: SocketAddr,
        /// The transport's error.
        #[source]
        source: Box<NetError>,
    },
    /// The node's own answer; quorum failures already name the acks and the nodes.
    #[error("{0}")]
    Request(#[from] RequestError),
    /// The node refused the frame before handling it (another protocol version, a malformed
    /// frame, or the node is shutting down); nothing was applied.
    #[error("node {addr} refused the request: {reason}")]
    Refused {
        /// The refusing node.
        addr: SocketAddr,
        /// The node's reason, as text.
        reason: String,
    },
    /// A context token passed to a write could not be decoded; the write was not sent.
    #[error(
        "the causal context token is not valid ({reason}); pass the token exactly as a read returned it"
    )]
    BadContext {
        /// What is wrong with the token.
        reason: String,
    },
    /// A typed read found a live object of another policy under the key; nothing changed.
    #[error(
        "{key} holds a `{stored}` object, not a `{expected}` one; use the `{stored}` operations for this key, or another key"
    )]
    WrongPolicy {
        /// The key, as `bucket/key`.
        key: String,
        /// The policy of the stored object.
        stored: Policy,
        /// The policy the call expected.
        expected: Policy,
    },
    /// The seed list cannot be used (empty, or longer than [`SEEDS_MAX`]); nothing was
    /// sent.
    #[error("{0}")]
    Seeds(String),
    /// A node answered a cluster view this client cannot route by; the client keeps the
    /// view it had.
    #[error("node {addr} sent a cluster view this client cannot use: {source}")]
    Topology {
        /// The node that answered.
        addr: SocketAddr,
        /// What is wrong with the view.
        #[source]
        source: TopologyError,
    },
    /// A call was tried on several nodes and failed on each; `last` is the last node's
    /// error, the others are listed. A write may have been applied by any of them, but at
    /// most once: every attempt carried the same operation id.
    #[error(
        "{last} [{what}: {attempts} attempts, last on {last_node}; earlier: {}]",
        earlier.join("; ")
    )]
    Exhausted {
        /// The call, such as "write users/alice" or "status".
        what: String,
        /// Nodes the call was sent to, at most [`ATTEMPTS_MAX`].
        attempts: usize,
        /// The node of the last attempt.
        last_node: String,
        /// Each earlier attempt: the node and its error.
        earlier: Vec<String>,
        /// The last attempt's error.
        last: Box<ClientError>,
    },
    /// The node answered with a reply of the wrong kind for the request, likely from
    /// another release; a write may have been applied.
    #[error(
        "node {addr} answered a {request} request with {got}; the node and this client may be different releases, so run the same version on both"
    )]
    UnexpectedReply {
        /// The node that answered.
        addr: SocketAddr,
        /// The kind of request sent, such as "status" or "counter".
        request: &'static str,
        /// The kind of reply received.
        got: &'static str,
    },
}

impl ClientError {
    /// The error of the last attempt: the error itself, or what the last node answered
    /// when the call was tried on several ([`ClientError::Exhausted`]).
    pub fn last_attempt(&self) -> &ClientError {
        match self {
            ClientError::Exhausted { last, .. } => last.last_attempt(),
            other => other,
        }
    }
}

impl Client {
    /// Loads `certs_dir/cert_name.{pem,key}` and opens a connection to `addr`; every call
    /// goes to that node (see [`Client::connect_cluster`] for a client that routes).
    ///
    /// The connection is opened here, not on the first call, so a stopped cluster or a
    /// certificate of another CA is reported at once.
    pub async fn connect(
        addr: SocketAddr,
        certs_dir: &Path,
        cert_name: &str,
    ) -> Result<Client, ClientError> {
        let identity = load_client_identity(certs_dir, cert_name)?;
        let client = Client::with_identity(addr, &identity)?;
        client
            .shared
            .pool
            .get(addr)
            .await
            .map_err(|source| ClientError::Net {
                addr,
                source: Box::new(source),
            })?;
        Ok(client)
    }

    /// A client of the one node at `addr` with an already loaded identity; connects on
    /// the first call. Must be called inside a tokio runtime (the QUIC endpoint needs one).
    pub fn with_identity(addr: SocketAddr, identity: &Identity) -> Result<Client, ClientError> {
        let pool = ConnectionPool::new(client_endpoint(addr, identity)?);
        Ok(Client {
            shared: Shared::new(pool, Mode::Pinned, vec![addr]),
            timeout_ms: CLIENT_TIMEOUT_MS,
        })
    }

    /// Loads `certs_dir/cert_name.{pem,key}` and learns the cluster from the first of
    /// `seeds` that answers: its members, their addresses and liveness, and the ring.
    ///
    /// Gets and writes then go straight to a live replica of their key and are retried
    /// on the next candidate when a node fails them (at most [`ATTEMPTS_MAX`] nodes per
    /// call, within the call's deadline); the view is refreshed in the background every
    /// [`VIEW_REFRESH_INTERVAL_MS`] and at once after a failure, from any member, so the
    /// client outlives every seed. Status, ring and stats go to the first seed that
    /// answers; join and leave only to the first seed.
    ///
    /// Fails when no seed answers. A seed that answers but cannot report a view (an older
    /// node) is used as it is: calls go to the seeds, which forward them.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use std::path::Path;
    ///
    /// use ringkv::{Client, ClientError, Key, QuorumOpts};
    ///
    /// # async fn example() -> Result<(), ClientError> {
    /// // Any live member will do; the others are learned from it.
    /// let seeds: Vec<SocketAddr> = ["127.0.0.1:7101", "127.0.0.1:7102"]
    ///     .iter()
    ///     .map(|a| a.parse().expect("a socket address"))
    ///     .collect();
    /// let client =
    ///     Client::connect_cluster(&seeds, Path::new("ringkv-dev/certs"), "client").await?;
    /// // Sent to the key's coordinator; retried on its other replicas if that node fails.
    /// client
    ///     .counter_add(&Key::new("stats", "visits"), 1, QuorumOpts::default())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_cluster(
        seeds: &[SocketAddr],
        certs_dir: &Path,
        cert_name: &str,
    ) -> Result<Client, ClientError> {
        let identity = load_client_identity(certs_dir, cert_name)?;
        let client = Client::cluster(seeds, &identity)?;
        let sources = client.shared.seeds.len();
        match client.shared.refresh(sources).await {
            Ok(()) => Ok(client),
            // The seed is up but serves no view: route through it.
            Err(ClientError::Request(_) | ClientError::Refused { .. }) => Ok(client),
            Err(e) => Err(e),
        }
    }

    /// A cluster client ([`Client::connect_cluster`]) with an already loaded identity; it
    /// learns the cluster in the background, and until then sends calls to the seeds.
    /// Must be called inside a tokio runtime.
    pub fn with_identity_cluster(
        seeds: &[SocketAddr],
        identity: &Identity,
    ) -> Result<Client, ClientError> {
        let client = Client::cluster(seeds, identity)?;
        client.shared.refresh_soon();
        Ok(client)
    }

    /// A cluster client that has not asked for a view yet.
    fn cluster(seeds: &[SocketAddr], identity: &Identity) -> Result<Client, ClientError> {
        let Some(&first) = seeds.first() else {
            return Err(ClientError::Seeds(
                "no seed address given; pass at least one node's HOST:PORT".into(),
            ));
        };
        if seeds.len() > SEEDS_MAX {
            return Err(ClientError::Seeds(format!(
                "{} seed addresses given, more than the limit of {SEEDS_MAX}; a few per cluster are enough",
                seeds.len()
            )));
        }
        // A loopback socket only when every seed is on loopback: members may advertise
        // other addresses, which a socket bound to 127.0.0.1 cannot reach.
        let bind_for = match first {
            _ if seeds.iter().all(|s| s.ip().is_loopback()) => first,
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let pool = ConnectionPool::new(client_endpoint(bind_for, identity)?)
            .with_connect_timeout_ms(CLUSTER_CONNECT_TIMEOUT_MS);
        Ok(Client {
            shared: Shared::new(pool, Mode::Cluster, seeds.to_vec()),
            timeout_ms: CLIENT_TIMEOUT_MS,
        })
    }

    /// Overrides the per-call deadline ([`CLIENT_TIMEOUT_MS`] by default).
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Client {
        self.timeout_ms = timeout_ms;
        self
    }

    /// The node this client talks to: its one node, or its first seed.
    pub fn addr(&self) -> SocketAddr {
        self.shared.seeds[0]
    }

    /// The nodes a get or write of `key` with replica count `n` (the cluster's default
    /// when `None`) would be sent to, in order: the first is the key's coordinator when
    /// the client knows the ring, the next ones are where retries go.
    pub fn route(&self, key: &Key, n: Option<u8>) -> Vec<SocketAddr> {
        let request = ClientRequest::Get {
            key: key.clone(),
            opts: QuorumOpts {
                n,
                ..QuorumOpts::default()
            },
        };
        Attempts::new(self.shared.candidates(&request)).addrs()
    }

    /// Asks the cluster for its view now instead of waiting for the background refresh
    /// (a client of one node has none to refresh).
    pub async fn refresh_view(&self) -> Result<(), ClientError> {
        if self.shared.mode == Mode::Pinned {
            return Ok(());
        }
        self.shared.refresh(TOPOLOGY_SOURCES_MAX).await
    }

    /// Sends any client request. A [`ClientReply::Error`] comes back as
    /// [`ClientError::Request`], so `Ok` is always a successful answer.
    ///
    /// A write without an operation id gets a fresh one, so that retries on other nodes
    /// apply it at most once.
    pub async fn call(&self, request: ClientRequest) -> Result<ClientReply, ClientError> {
        let request = match request {
            ClientRequest::Write {
                key,
                op,
                opts,
                id: None,
            } => ClientRequest::Write {
                key,
                op,
                opts,
                id: Some(self.shared.next_op_id()),
            },
            other => other,
        };
        let name = request_name(&request);
        let timeout_ms = call_timeout_ms(self.timeout_ms, &request);
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut attempts = Attempts::new(self.shared.candidates(&request));
        let mut last = None;
        while let Some(node) = attempts.next() {
            if last.is_some() && Instant::now() >= deadline {
                break;
            }
            let result = self
                .shared
                .ask(node.addr, request.clone(), name, deadline, timeout_ms)
                .await;
            let err = match result {
                Ok(reply) => {
                    self.shared.answered(node.addr);
                    return Ok(reply);
                }
                Err(err) => err,
            };
            if Retry::blames_node(&err) {
                self.shared.avoid(node.addr);
            }
            if Retry::of(&err) != Retry::Never {
                self.shared.refresh_soon();
            }
            let go_on = attempts.failed(node, &err);
            last = Some(err);
            if !go_on {
                break;
            }
        }
        Err(self.gave_up(&request, attempts, last))
    }

    /// The error of a call that failed on every node it tried: the one error as it is
    /// when there was one attempt, else [`ClientError::Exhausted`] naming them all.
    fn gave_up(
        &self,
        request: &ClientRequest,
        attempts: Attempts,
        last: Option<ClientError>,
    ) -> ClientError {
        let Some(last) = last else {
            return ClientError::Seeds("no node to send the request to".into());
        };
        let mut failed = attempts.failed;
        if failed.len() <= 1 {
            return last;
        }
        let view = self.shared.view();
        let label = |c: &topology::Candidate| {
            let name = c
                .name
                .clone()
                .or_else(|| view.as_ref().and_then(|v| v.name_at(c.addr).cloned()));
            match name {
                Some(name) => format!("{name} at {}", c.addr),
                None => c.addr.to_string(),
            }
        };
        let attempts_made = failed.len();
        let last_node = failed.pop().map(|(c, _)| label(&c)).unwrap_or_default();
        let what = match request {
            ClientRequest::Get { key, .. } => format!("get {key}"),
            ClientRequest::Write { key, id, .. } => match id {
                Some(id) => format!("write {key} (operation {id})"),
                None => format!("write {key}"),
            },
            other => request_name(other).to_string(),
        };
        ClientError::Exhausted {
            what,
            attempts: attempts_made,
            last_node,
            earlier: failed
                .iter()
                .map(|(c, e)| format!("{}: {e}", label(c)))
                .collect(),
            last: Box::new(last),
        }
    }

    /// Reads a `siblings` or `lww` key (any key, in fact: see [`GetResult::value`]).
    pub async fn get(&self, key: &Key, opts: QuorumOpts) -> Result<GetResult, ClientError> {
        let (found, value, warning) = self.read(key, opts).await?;
        let (values, context) = match &value {
            Some(ReadValue::Siblings { values, context }) => (
                values.iter().map(|v| v.to_vec()).collect(),
                context.to_token(),
            ),
            Some(ReadValue::Lww { value, .. }) => {
                (value.iter().map(|v| v.to_vec()).collect(), String::new())
            }
            Some(other) => (Vec::new(), token_of(other)),
            None => (Vec::new(), String::new()),
        };
        Ok(GetResult {
            found,
            // A deleted key keeps its context (for the next write) but shows no values.
            values: if found { values } else { Vec::new() },
            context,
            value,
            warning,
        })
    }

    /// Writes a `siblings` value superseding what `context` saw; without a context the
    /// value is added as a sibling of whatever the key holds.
    pub async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        context: Option<&str>,
        opts: QuorumOpts,
    ) -> Result<WriteResult, ClientError> {
        let context = parse_context(context)?;
        self.write(key, Op::Put { value, context }, opts).await
    }

    /// Writes an `lww` value: the highest HLC stamp wins, concurrent writes are lost.
    pub async fn put_lww(
        &self,
        key: &Key,
        value: Vec<u8>,
        opts: QuorumOpts,
    ) -> Result<WriteResult, ClientError> {
        self.write(key, Op::PutLww { value }, opts).await
    }

    /// Deletes what `context` saw. Without a context the key is read first and what that
    /// read saw is deleted: a delete with an empty context would only add a tombstone
    /// beside the existing siblings.
    pub async fn delete(
        &self,
        key: &Key,
        context: Option<&str>,
        opts: QuorumOpts,
    ) -> Result<WriteResult, ClientError> {
        let context = match context {
            Some(token) => parse_context(Some(token))?,
            None => {
                let (_, value, _) = self.read(key, opts).await?;
                value.as_ref().and_then(context_of).unwrap_or_default()
            }
        };
        self.write(key, Op::Delete { context }, opts).await
    }

    /// Adds `delta` (negative to subtract) to a `counter` and returns its new value.
    pub async fn counter_add(
        &self,
        key: &Key,
        delta: i64,
        opts: QuorumOpts,
    ) -> Result<i64, ClientError> {
        let written = self.write(key, Op::CounterAdd { delta }, opts).await?;
        match expect_policy(key, Policy::Counter, true, Some(written.value))? {
            Some(ReadValue::Counter { value }) => Ok(value),
            _ => Err(self.unexpected("counter", "a write result without the counter")),
        }
    }

    /// A `counter`'s value; 0 when the key does not exist.
    pub async fn counter_get(&self, key: &Key, opts: QuorumOpts) -> Result<i64, ClientError> {
        let (found, value, _) = self.read(key, opts).await?;
        match expect_policy(key, Policy::Counter, found, value)? {
            Some(ReadValue::Counter { value }) => Ok(value),
            _ => Ok(0),
        }
    }

    /// Adds members to a `set` and returns it after the write.
    pub async fn set_add(
        &self,
        key: &Key,
        members: Vec<String>,
        opts: QuorumOpts,
    ) -> Result<SetRead, ClientError> {
        let written = self.write(key, Op::SetAdd { members }, opts).await?;
        self.set_of(key, true, Some(written.value))
    }

    /// Removes members from a `set`. Removal needs the context of a read (an OR-set
    /// removes only the adds it has seen),
    /// so this reads the key first; members that read did not see are left alone, and a
    /// set that does not exist is not created.
    pub async fn set_remove(
        &self,
        key: &Key,
        members: Vec<String>,
        opts: QuorumOpts,
    ) -> Result<SetRead, ClientError> {
        let seen = self.set_get(key, opts).await?;
        // Only a missing key reads with no context at all ("" is never a set's token).
        if seen.context.is_empty() {
            return Ok(seen);
        }
        self.set_remove_with_context(key, members, &seen.context, opts)
            .await
    }

    /// Removes members as far as the context token of an earlier read saw them.
    pub async fn set_remove_with_context(
        &self,
        key: &Key,
        members: Vec<String>,
        context: &str,
        opts: QuorumOpts,
    ) -> Result<SetRead, ClientError> {
        let context = parse_context(Some(context))?;
        let written = self
            .write(key, Op::SetRemove { members, context }, opts)
            .await?;
        self.set_of(key, true, Some(written.value))
    }

    /// A `set`'s members (sorted) and context; empty when the key does not exist.
    pub async fn set_get(&self, key: &Key, opts: QuorumOpts) -> Result<SetRead, ClientError> {
        let (found, value, _) = self.read(key, opts).await?;
        self.set_of(key, found, value)
    }

    /// Sets a `map` field's register to `value`.
    pub async fn map_set(
        &self,
        key: &Key,
        field: &str,
        value: &str,
        opts: QuorumOpts,
    ) -> Result<MapRead, ClientError> {
        let op = Op::Map(MapOp::SetRegister {
            field: field.to_owned(),
            value: value.to_owned(),
        });
        let written = self.write(key, op, opts).await?;
        self.map_of(key, true, Some(written.value))
    }

    /// Adds `delta` to a `map` field's counter.
    pub async fn map_incr(
        &self,
        key: &Key,
        field: &str,
        delta: i64,
        opts: QuorumOpts,
    ) -> Result<MapRead, ClientError> {
        let op = Op::Map(MapOp::Increment {
            field: field.to_owned(),
            delta,
        });
        let written = self.write(key, op, opts).await?;
        self.map_of(key, true, Some(written.value))
    }

    /// A `map`'s fields and context; empty when the key does not exist.
    pub async fn map_get(&self, key: &Key, opts: QuorumOpts) -> Result<MapRead, ClientError> {
        let (found, value, _) = self.read(key, opts).await?;
        self.map_of(key, found, value)
    }

    /// Adds items to an `hll` sketch and returns the new distinct-count estimate.
    pub async fn hll_add(
        &self,
        key: &Key,
        items: Vec<Vec<u8>>,
        opts: QuorumOpts,
    ) -> Result<u64, ClientError> {
        let written = self.write(key, Op::HllAdd { items }, opts).await?;
        match expect_policy(key, Policy::Hll, true, Some(written.value))? {
            Some(ReadValue::Hll { estimate }) => Ok(estimate),
            _ => Err(self.unexpected("hll", "a write result without the sketch")),
        }
    }

    /// An `hll` key's distinct-count estimate; 0 when the key does not exist.
    pub async fn hll_count(&self, key: &Key, opts: QuorumOpts) -> Result<u64, ClientError> {
        let (found, value, _) = self.read(key, opts).await?;
        match expect_policy(key, Policy::Hll, found, value)? {
            Some(ReadValue::Hll { estimate }) => Ok(estimate),
            _ => Ok(0),
        }
    }

    /// The connected node's statistics (its sketches, per-partition estimates and
    /// anti-entropy progress).
    pub async fn stats(&self) -> Result<StatsInfo, ClientError> {
        stats::node_stats(self).await
    }

    /// Every member's statistics, merged: members come from the connected node's status,
    /// and each is asked with the `certs_dir/cert_name` identity. Lists at most
    /// `hot_keys_max` cluster hot keys. Fails only if the connected node cannot say who
    /// the members are; an unreachable member makes the result partial.
    pub async fn cluster_stats(
        &self,
        certs_dir: &std::path::Path,
        cert_name: &str,
        hot_keys_max: usize,
    ) -> Result<ClusterStats, ClientError> {
        stats::cluster_stats(self, certs_dir, cert_name, hot_keys_max).await
    }

    /// Membership as the connected node sees it.
    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        match self.call(ClientRequest::Status).await? {
            ClientReply::Status(info) => Ok(info),
            other => Err(self.unexpected("status", reply_kind(&other))),
        }
    }

    /// The ring as the connected node computes it.
    pub async fn ring(&self) -> Result<RingInfo, ClientError> {
        match self.call(ClientRequest::Ring).await? {
            ClientReply::Ring(info) => Ok(info),
            other => Err(self.unexpected("ring", reply_kind(&other))),
        }
    }

    /// Asks the connected node to join the cluster of the member at `seed` (an address).
    pub async fn join(&self, seed: &str) -> Result<String, ClientError> {
        let request = ClientRequest::Join {
            seed: seed.to_string(),
        };
        match self.call(request).await? {
            ClientReply::Changed(text) => Ok(text),
            other => Err(self.unexpected("join", reply_kind(&other))),
        }
    }

    /// Asks the connected node to hand its partitions over and leave the cluster.
    pub async fn leave(&self) -> Result<String, ClientError> {
        match self.call(ClientRequest::Leave).await? {
            ClientReply::Changed(text) => Ok(text),
            other => Err(self.unexpected("leave", reply_kind(&other))),
        }
    }

    async fn read(
        &self,
        key: &Key,
        opts: QuorumOpts,
    ) -> Result<(bool, Option<ReadValue>, Option<String>), ClientError> {
        let request = ClientRequest::Get {
            key: key.clone(),
            opts,
        };
        match self.call(request).await? {
            ClientReply::Read {
                found,
                value,
                warning,
            } => Ok((found, value, warning)),
            other => Err(self.unexpected("get", reply_kind(&other))),
        }
    }

    async fn write(&self, key: &Key, op: Op, opts: QuorumOpts) -> Result<WriteResult, ClientError> {
        let request = ClientRequest::Write {
            key: key.clone(),
            op,
            opts,
            id: Some(self.shared.next_op_id()),
        };
        match self.call(request).await? {
            ClientReply::Written { value, warning } => Ok(WriteResult {
                context: token_of(&value),
                value,
                warning,
            }),
            other => Err(self.unexpected("write", reply_kind(&other))),
        }
    }

    fn set_of(
        &self,
        key: &Key,
        found: bool,
        value: Option<ReadValue>,
    ) -> Result<SetRead, ClientError> {
        match expect_policy(key, Policy::Set, found, value)? {
            Some(ReadValue::Set { members, context }) => Ok(SetRead {
                members,
                context: context.to_token(),
            }),
            _ => Ok(SetRead::default()),
        }
    }

    fn map_of(
        &self,
        key: &Key,
        found: bool,
        value: Option<ReadValue>,
    ) -> Result<MapRead, ClientError> {
        match expect_policy(key, Policy::Map, found, value)? {
            Some(ReadValue::Map { fields, context }) => Ok(MapRead {
                fields,
                context: context.to_token(),
            }),
            _ => Ok(MapRead::default()),
        }
    }

    fn unexpected(&self, request: &'static str, got: &'static str) -> ClientError {
        ClientError::UnexpectedReply {
            addr: self.addr(),
            request,
            got,
        }
    }
}

/// The policy of the object a read or write returned.
pub fn policy_of(value: &ReadValue) -> Policy {
    match value {
        ReadValue::Siblings { .. } => Policy::Siblings,
        ReadValue::Lww { .. } => Policy::Lww,
        ReadValue::Counter { .. } => Policy::Counter,
        ReadValue::Set { .. } => Policy::Set,
        ReadValue::Map { .. } => Policy::Map,
        ReadValue::Hll { .. } => Policy::Hll,
    }
}

/// The context token of a value ("" for policies without a causal context).
pub fn token_of(value: &ReadValue) -> String {
    context_of(value).map(|c| c.to_token()).unwrap_or_default()
}

fn context_of(value: &ReadValue) -> Option<Context> {
    match value {
        ReadValue::Siblings { context, .. }
        | ReadValue::Set { context, .. }
        | ReadValue::Map { context, .. } => Some(context.clone()),
        _ => None,
    }
}

fn parse_context(token: Option<&str>) -> Result<Context, ClientError> {
    let Some(token) = token else {
        return Ok(Context::empty());
    };
    Context::from_token(token).map_err(|e| ClientError::BadContext {
        reason: match e {
            ObjectError::BadContext(reason) => reason,
            other => other.to_string(),
        },
    })
}

/// Keeps a value of the `expected` policy. A value of another policy is an error only when
/// the key is live: a missing or deleted key reads as empty, whatever its tombstone holds.
fn expect_policy(
    key: &Key,
    expected: Policy,
    found: bool,
    value: Option<ReadValue>,
) -> Result<Option<ReadValue>, ClientError> {
    match value {
        Some(v) if policy_of(&v) == expected => Ok(Some(v)),
        Some(v) if found => Err(ClientError::WrongPolicy {
            key: key.to_string(),
            stored: policy_of(&v),
            expected,
        }),
        _ => Ok(None),
    }
}

/// A dial-only QUIC endpoint for reaching `target`: loopback targets get a loopback
/// socket, so nothing leaves the machine.
fn client_endpoint(
    target: SocketAddr,
    identity: &Identity,
) -> Result<quinn::Endpoint, ClientError> {
    let local = if target.ip().is_loopback() {
        SocketAddr::new(target.ip(), 0)
    } else if target.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    bind_client(local, identity).map_err(|e| ClientError::Endpoint(Box::new(e)))
}

/// Loads `certs_dir/cert_name.{pem,key}`, naming both in the error.
fn load_client_identity(certs_dir: &Path, cert_name: &str) -> Result<Identity, ClientError> {
    load_identity(certs_dir, cert_name).map_err(|source| ClientError::Identity {
        name: cert_name.to_owned(),
        dir: certs_dir.to_path_buf(),
        source: Box::new(source),
    })
}

fn call_timeout_ms(client_timeout_ms: u64, request: &ClientRequest) -> u64 {
    let requested = match request {
        ClientRequest::Get { opts, .. } | ClientRequest::Write { opts, .. } => opts.timeout_ms,
        ClientRequest::Status
        | ClientRequest::Ring
        | ClientRequest::Join { .. }
        | ClientRequest::Leave
        | ClientRequest::Stats
        | ClientRequest::Topology => None,
    };
    requested
        .map(|ms| u64::from(ms) + CLIENT_TIMEOUT_MARGIN_MS)
        .unwrap_or(0)
        .max(client_timeout_ms)
}

fn request_name(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::Get { .. } => "get",
        ClientRequest::Write { .. } => "write",
        ClientRequest::Status => "status",
        ClientRequest::Ring => "ring",
        ClientRequest::Join { .. } => "join",
        ClientRequest::Leave => "leave",
        ClientRequest::Stats => "stats",
        ClientRequest::Topology => "topology",
    }
}

/// What kind of reply this is, for errors about replies of the wrong kind.
pub(crate) fn reply_kind(reply: &ClientReply) -> &'static str {
    match reply {
        ClientReply::Read { .. } => "a read result",
        ClientReply::Written { .. } => "a write result",
        ClientReply::Status(_) => "a status report",
        ClientReply::Ring(_) => "a ring report",
        ClientReply::Changed(_) => "a membership change",
        ClientReply::Stats(_) => "a stats report",
        ClientReply::Topology(_) => "a cluster view",
        ClientReply::Error(_) => "an error",
    }
}

mod cluster;
pub mod json;
mod route;
mod session;
pub(crate) mod stats;
mod topology;

#[cfg(test)]
mod tests;
