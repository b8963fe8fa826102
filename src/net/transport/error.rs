//! The one error type of the transport layer.
//!
//! Every failure the network edge can meet (certificate files, TLS setup, connecting,
//! framing, a peer without an identity) ends up here, so the node driver and the client
//! match on a single enum and every message tells the operator what went wrong and what
//! to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the QUIC transport, the cluster CA and the frame codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A certificate or key file is missing; `hint` is the command that creates it.
    #[error("{} does not exist; create it with `{hint}`", path.display())]
    CertFileMissing {
        /// The file that was expected.
        path: PathBuf,
        /// The `ringkv certs` command that creates it.
        hint: String,
    },

    /// A certificate or key file exists but could not be read.
    #[error("cannot read {}: {source}; check its permissions", path.display())]
    CertFileRead {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error from reading it.
        #[source]
        source: std::io::Error,
    },

    /// A certificate or key file (or its directory) could not be written.
    #[error("cannot write {}: {source}; check that the directory is writable", path.display())]
    CertFileWrite {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The I/O error from writing it.
        #[source]
        source: std::io::Error,
    },

    /// `init` found a CA already in place and refused to replace it.
    #[error(
        "a cluster CA already exists at {}; refusing to overwrite it (every certificate it \
         signed would stop working). Use another --dir, or delete ca.pem and ca.key first",
        path.display()
    )]
    CaExists {
        /// The directory that already holds `ca.pem`.
        path: PathBuf,
    },

    /// `issue` found a certificate for this name already in place.
    #[error(
        "a certificate for {name:?} already exists at {}; refusing to overwrite it. Delete \
         {name}.pem and {name}.key first to re-issue it",
        path.display()
    )]
    IdentityExists {
        /// The name the certificate was asked for.
        name: String,
        /// The certificate file that already exists.
        path: PathBuf,
    },

    /// A node or client name that cannot be used as a file name and a DNS label.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A PEM file did not hold what it should.
    #[error("{} is not a valid {what}: {reason}; re-create it with `{hint}`", path.display())]
    PemInvalid {
        /// The PEM file.
        path: PathBuf,
        /// What it should hold, such as "CA certificate" or "private key".
        what: &'static str,
        /// Why it was rejected, as text.
        reason: String,
        /// The command that re-creates the file.
        hint: String,
    },

    /// The certificate file of `expected` carries another identity.
    #[error(
        "{} belongs to {found:?}, not to {expected:?}; the file was renamed or copied by hand. \
         Issue a certificate for {expected:?} instead",
        path.display()
    )]
    CertNameMismatch {
        /// The certificate file.
        path: PathBuf,
        /// The name the file was loaded for.
        expected: String,
        /// The name its certificate actually carries.
        found: String,
    },

    /// rcgen failed to generate a key or sign a certificate.
    #[error("cannot generate the {what}: {source}")]
    CertGenerate {
        /// What was being generated, such as "CA key" or a role's certificate for a name.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },

    /// rustls refused the certificates or settings we gave it.
    #[error("TLS setup failed for {what}: {reason}; check the certificate files")]
    TlsConfig {
        /// Which TLS configuration, client or server side.
        what: &'static str,
        /// rustls's error, as text.
        reason: String,
    },

    /// The UDP socket of the endpoint could not be bound.
    #[error("cannot bind the QUIC endpoint to {addr}: {source}; is the port in use?")]
    Bind {
        /// The address the socket was to be bound to.
        addr: SocketAddr,
        /// The I/O error from binding.
        #[source]
        source: std::io::Error,
    },

    /// quinn refused to start a connection (bad address, endpoint closing).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's refusal, as text.
        reason: String,
    },

    /// The QUIC/TLS handshake failed (unreachable, wrong CA, bad certificate).
    #[error(
        "handshake with {addr} failed: {source}; check that the node runs and that both sides \
         use certificates of the same cluster CA"
    )]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's handshake error.
        #[source]
        source: quinn::ConnectionError,
    },

    /// The connection to `addr` was lost or could not open a stream.
    #[error("connection to {addr} lost: {source}")]
    ConnectionLost {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's error for the lost connection.
        #[source]
        source: quinn::ConnectionError,
    },

    /// Something did not finish within its deadline.
    #[error("{what} {addr} timed out after {timeout_ms} ms; is the node up and reachable?")]
    Timeout {
        /// The step that timed out, such as "connecting to" or "request to", followed by
        /// the address in the message.
        what: &'static str,
        /// The peer's address.
        addr: SocketAddr,
        /// The deadline that passed, in milliseconds.
        timeout_ms: u64,
    },

    /// The pool already holds its maximum of connections, all of them alive.
    #[error(
        "cannot open a connection to {addr}: the pool already holds {max} live connections; \
         raise the pool bound or close unused peers"
    )]
    PoolFull {
        /// The peer a new connection was wanted for.
        addr: SocketAddr,
        /// The pool's bound on connections.
        max: usize,
    },

    /// A frame announced (or would need) more bytes than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; refused without reading it")]
    FrameTooLarge {
        /// Bytes the frame announced or would need.
        len: u64,
        /// The frame limit in bytes (`FRAME_BYTES_MAX` unless configured otherwise).
        max: usize,
    },

    /// The stream or slice ended before the frame was complete.
    #[error("truncated frame: expected {expected} bytes, got {got}; the sender stopped early")]
    FrameTruncated {
        /// Bytes the frame's length prefix announced.
        expected: u64,
        /// Bytes that arrived before the end.
        got: u64,
    },

    /// The frame body is not a valid msgpack encoding of the expected message type
    /// (this includes an unknown enum variant from a newer or foreign peer).
    #[error(
        "cannot decode a {len}-byte frame: {reason}; the peer sent a malformed message or speaks \
         another protocol version"
    )]
    FrameDecode {
        /// Length of the frame body, in bytes.
        len: usize,
        /// The msgpack decoder's error, as text.
        reason: String,
    },

    /// The frame body held a message followed by extra bytes.
    #[error("frame of {len} bytes has {extra} trailing bytes after the message")]
    FrameTrailing {
        /// Length of the frame body, in bytes.
        len: usize,
        /// Bytes left after the decoded message.
        extra: usize,
    },

    /// A message could not be encoded (a bug in a message type, or an unsupported value).
    #[error("cannot encode a message: {reason}")]
    FrameEncode {
        /// The msgpack encoder's error, as text.
        reason: String,
    },

    /// Reading from a stream failed (reset by the peer, connection lost).
    #[error("stream read failed: {source}")]
    StreamRead {
        /// quinn's read error; `ConnectionLost` marks the connection unusable.
        #[source]
        source: quinn::ReadError,
    },

    /// Writing to a stream failed (stopped by the peer, connection lost).
    #[error("stream write failed: {source}")]
    StreamWrite {
        /// quinn's write error; `ConnectionLost` marks the connection unusable.
        #[source]
        source: quinn::WriteError,
    },

    /// The stream was already finished or reset when we tried to finish it.
    #[error("stream already closed when finishing the frame")]
    StreamClosed,

    /// A request to `addr` failed at the frame or stream level.
    #[error("request to {addr} failed: {source}")]
    Remote {
        /// The peer's address.
        addr: SocketAddr,
        /// The frame- or stream-level error underneath.
        #[source]
        source: Box<NetError>,
    },

    /// A client session ended before the answer came (stream or connection failed, the
    /// node stopped, or it sent something unreadable).
    #[error(
        "the session with node {addr} ended before the answer came ({reason}); the request may or may not have been applied, so check before resending one that is not idempotent"
    )]
    SessionEnded {
        /// The node's address.
        addr: SocketAddr,
        /// What ended the session, as text.
        reason: String,
    },

    /// The peer's certificate does not carry a ringkv identity.
    #[error("peer {addr} has no usable ringkv identity: {reason}")]
    NoPeerIdentity {
        /// The peer's address.
        addr: SocketAddr,
        /// Why no identity could be read (no certificate, an unparsable one, or a bad
        /// common name).
        reason: String,
    },

    /// A certificate's common name is not `ringkv-node:NAME` or `ringkv-client:NAME`.
    #[error(
        "certificate common name {cn:?} is not a ringkv identity (expected ringkv-node:NAME or \
         ringkv-client:NAME); it was not issued by `ringkv certs issue`"
    )]
    BadCommonName {
        /// The common name found in the certificate.
        cn: String,
    },
}

impl NetError {
    /// The error underneath any [`NetError::Remote`] wrapping, for matching on the cause.
    pub fn root(&self) -> &NetError {
        match self {
            NetError::Remote { source, .. } => source.root(),
            other => other,
        }
    }

    /// True when the connection this error came from is unusable and should be replaced.
    pub fn is_connection_lost(&self) -> bool {
        match self.root() {
            NetError::ConnectionLost { .. } | NetError::Handshake { .. } => true,
            NetError::StreamRead { source } => {
                matches!(source, quinn::ReadError::ConnectionLost(_))
            }
            NetError::StreamWrite { source } => {
                matches!(source, quinn::WriteError::ConnectionLost(_))
            }
            _ => false,
        }
    }
}
