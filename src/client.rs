//! The Rust client: one QUIC connection to one node, and typed calls for every policy.
//!
//! The CLI, the integration tests, the benches and the examples all talk to a cluster the
//! same way, so the wire details live here once: the versioned envelope, the mTLS client
//! certificate, the per-call deadline, and turning replies into plain Rust values. Causal
//! contexts cross this API as opaque tokens, so that their encoding can change without
//! breaking callers: a caller passes back exactly the string a read returned and never
//! looks inside it.
//!
//! A [`Client`] is cheap to clone; clones share one pooled connection and one session on
//! it (many requests in flight on one stream: `client/session.rs`), both reopened lazily if
//! the node restarts. Any node can take any request: a node outside the key's
//! preference list forwards it to the key's coordinator.

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
    ClientReply, ClientRequest, Key, QuorumOpts, RequestError, RingInfo, StatusInfo, WireResponse,
};

use self::session::{CallError, SessionSlot};

/// Deadline for one call (connecting, sending and the node's answer) unless the request's
/// own quorum timeout needs longer.
pub const CLIENT_TIMEOUT_MS: u64 = 10_000;
/// Headroom over a request's `timeout_ms`, so a node's quorum failure (which names the
/// nodes that did not answer) reaches the client before the client gives up on its own.
pub const CLIENT_TIMEOUT_MARGIN_MS: u64 = 2_000;
/// Times a call is resent on a fresh connection when the pooled one was found dead before
/// anything was sent (for example, the node restarted since the last call).
pub const RECONNECTS_MAX: usize = 1;

/// A connection to one node of a cluster.
///
/// Every call and every clone of a `Client` share one QUIC connection and one session
/// stream, so clone it freely across tasks. Each call takes its own [`QuorumOpts`]: N,
/// W or R, strictness and a timeout, per request.
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
    pool: ConnectionPool,
    session: Arc<SessionSlot>,
    addr: SocketAddr,
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

impl Client {
    /// Loads `certs_dir/cert_name.{pem,key}` and opens a connection to `addr`.
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
            .pool
            .get(addr)
            .await
            .map_err(|source| ClientError::Net {
                addr,
                source: Box::new(source),
            })?;
        Ok(client)
    }

    /// A client with an already loaded identity; connects on the first call. Must be
    /// called inside a tokio runtime (the QUIC endpoint needs one).
    pub fn with_identity(addr: SocketAddr, identity: &Identity) -> Result<Client, ClientError> {
        let local = if addr.ip().is_loopback() {
            // Loopback targets get a loopback socket: nothing leaves the machine.
            SocketAddr::new(addr.ip(), 0)
        } else if addr.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let endpoint =
            bind_client(local, identity).map_err(|e| ClientError::Endpoint(Box::new(e)))?;
        Ok(Client {
            pool: ConnectionPool::new(endpoint),
            session: Arc::new(SessionSlot::default()),
            addr,
            timeout_ms: CLIENT_TIMEOUT_MS,
        })
    }

    /// Overrides the per-call deadline ([`CLIENT_TIMEOUT_MS`] by default).
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Client {
        self.timeout_ms = timeout_ms;
        self
    }

    /// The node this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends any client request. A [`ClientReply::Error`] comes back as
    /// [`ClientError::Request`], so `Ok` is always a successful answer.
    pub async fn call(&self, request: ClientRequest) -> Result<ClientReply, ClientError> {
        let name = request_name(&request);
        let timeout_ms = call_timeout_ms(self.timeout_ms, &request);
        match self.exchange(request, timeout_ms).await? {
            WireResponse::Client(ClientReply::Error(e)) => Err(ClientError::Request(e)),
            WireResponse::Client(reply) => Ok(reply),
            WireResponse::Refused(reason) => Err(ClientError::Refused {
                addr: self.addr,
                reason,
            }),
            WireResponse::PeerAccepted => Err(ClientError::UnexpectedReply {
                addr: self.addr,
                request: name,
                got: "a peer acknowledgement",
            }),
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
            id: None,
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

    /// Sends `request` on the client's session and waits for its answer until the
    /// deadline; a request that was not sent (the session had ended, or the pooled
    /// connection was found dead while opening one) is resent once on a fresh session:
    /// nothing reached the node, so even a counter add is safe to resend.
    async fn exchange(
        &self,
        request: ClientRequest,
        timeout_ms: u64,
    ) -> Result<WireResponse, ClientError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let net = |source: NetError| ClientError::Net {
            addr: self.addr,
            source: Box::new(source),
        };
        let mut request = request;
        let mut reconnects = 0;
        loop {
            let attempt = async {
                match self.session.get(&self.pool, self.addr).await {
                    Ok(session) => session.call(request).await,
                    Err(reason @ NetError::ConnectionLost { .. }) => Err(CallError::NotSent {
                        request: Box::new(request),
                        reason,
                    }),
                    Err(e) => Err(CallError::Failed(e)),
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(CallError::NotSent {
                    request: unsent, ..
                })) if reconnects < RECONNECTS_MAX => {
                    reconnects += 1;
                    request = *unsent;
                }
                Ok(Err(CallError::NotSent { reason, .. } | CallError::Failed(reason))) => {
                    return Err(net(reason));
                }
                Err(_) => {
                    return Err(net(NetError::Timeout {
                        what: "request to",
                        addr: self.addr,
                        timeout_ms,
                    }));
                }
            }
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
            addr: self.addr,
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
        | ClientRequest::Stats => None,
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
    }
}

fn reply_kind(reply: &ClientReply) -> &'static str {
    match reply {
        ClientReply::Read { .. } => "a read result",
        ClientReply::Written { .. } => "a write result",
        ClientReply::Status(_) => "a status report",
        ClientReply::Ring(_) => "a ring report",
        ClientReply::Changed(_) => "a membership change",
        ClientReply::Stats(_) => "a stats report",
        ClientReply::Error(_) => "an error",
    }
}

pub mod json;
mod session;
pub(crate) mod stats;

#[cfg(test)]
mod tests;
