//! rustls and quinn configuration for mutual TLS inside one cluster.
//!
//! Both directions trust only the cluster CA: a server demands a client certificate signed
//! by it, and a client checks the server against it under the shared name
//! [`SERVER_NAME`] (peers know each other only by address). The crypto provider is pinned
//! to `ring` and TLS 1.3 so the build never depends on a process-wide default provider.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use super::certs::Identity;
use super::error::NetError;

/// ALPN protocol id; bumping it makes old and new nodes refuse each other cleanly.
pub const ALPN: &[u8] = b"ringkv/1";
/// The DNS name every node certificate carries and every dialer asks for (SNI).
pub const SERVER_NAME: &str = "ringkv.node";
/// A connection that hears nothing from its peer (keep-alives included) for this long is
/// closed: this is how a peer that died without closing (a crash, a `kill -9`, a cut
/// cable) is noticed, and the node driver reports it to the core the moment it happens
/// (`net/driver/conn_watch.rs`), which suspects the peer and routes around it. 1 s is the
/// goal for noticing a dead peer (issue 13); with keep-alives every
/// [`KEEP_ALIVE_INTERVAL_MS`] a live peer must lose four in a row, or its QUIC tasks stall
/// for a whole second, before its connection is dropped. A false drop costs little: the
/// connection is redialled, and the suspicion it raised ends with the peer's next packet
/// (its gossip arrives several times a second). A restarted peer is noticed sooner still,
/// by its new connection (`net/driver/server.rs`). (quinn never times out sooner than
/// three probe timeouts, a few ms on a LAN, more on a slow path.)
pub const IDLE_TIMEOUT_MS: u32 = 1_000;
/// Keep-alive period: four fit in the idle timeout, so a live idle connection survives
/// three lost keep-alives in a row. One small packet per connection every 250 ms costs
/// nothing measurable.
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 250;
/// Bidirectional streams (one per request) a peer may have open on one connection.
pub const BIDI_STREAMS_CONCURRENT_MAX: u32 = 256;
/// Unidirectional streams a peer may have open on one connection: the node driver's
/// long-lived peer streams, one per link, plus room for the streams a link reopens after
/// a failure while the old one is being reset.
pub const UNI_STREAMS_CONCURRENT_MAX: u32 = 8;

/// The crypto provider every config of this crate uses.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings shared by both sides of every connection.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        IDLE_TIMEOUT_MS,
    ))));
    transport.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(BIDI_STREAMS_CONCURRENT_MAX));
    // Requests use bidirectional streams; node-to-node messages use a few long-lived
    // unidirectional peer streams (refused on client connections by the node driver).
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(UNI_STREAMS_CONCURRENT_MAX));
    transport
}

/// Server side: present our certificate and require a client certificate signed by the CA.
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, NetError> {
    const WHAT: &str = "the server config";
    let tls = rustls_server_config(identity, ALPN, WHAT, ClientAuth::Required)?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::TlsConfig {
        what: WHAT,
        reason: e.to_string(),
    })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Whether a server's TLS handshake insists on a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// No certificate from the cluster CA, no connection (QUIC, and HTTP by default).
    Required,
    /// A certificate, when sent, must be the CA's; a client may also send none, and the
    /// HTTP layer then opens only its read-only routes, with a token.
    Optional,
}

/// The rustls side of a server that presents `identity`'s certificate, checks client
/// certificates against the cluster CA (`client_auth` says whether one is required),
/// speaks TLS 1.3 only and offers `alpn`: the QUIC endpoint's and the HTTP API's, so both
/// doors check clients the same way.
pub(crate) fn rustls_server_config(
    identity: &Identity,
    alpn: &[u8],
    what: &'static str,
    client_auth: ClientAuth,
) -> Result<rustls::ServerConfig, NetError> {
    let provider = crypto_provider();
    let builder =
        WebPkiClientVerifier::builder_with_provider(root_store(identity, what)?, provider.clone());
    let builder = match client_auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder.build().map_err(|e| NetError::TlsConfig {
        what,
        reason: e.to_string(),
    })?;
    let tls_err = |e: rustls::Error| NetError::TlsConfig {
        what,
        reason: e.to_string(),
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain.clone(), identity.key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// Client side: present our certificate and trust only servers signed by the CA.
pub fn client_config(identity: &Identity) -> Result<quinn::ClientConfig, NetError> {
    const WHAT: &str = "the client config";
    let tls_err = |e: rustls::Error| NetError::TlsConfig {
        what: WHAT,
        reason: e.to_string(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(root_store(identity, WHAT)?)
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::TlsConfig {
        what: WHAT,
        reason: e.to_string(),
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The trust anchors of a config: the cluster CA and nothing else.
fn root_store(identity: &Identity, what: &'static str) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(identity.ca.clone())
        .map_err(|e| NetError::TlsConfig {
            what,
            reason: format!("the CA certificate is not a usable trust anchor: {e}"),
        })?;
    Ok(Arc::new(roots))
}
