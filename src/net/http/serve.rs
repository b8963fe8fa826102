//! Listening: the TCP accept loop, TLS with the node's certificate (a client certificate
//! signed by the cluster CA is required, as on the QUIC endpoint), and hyper's HTTP/1.1
//! with bounded heads, head-read and handshake timeouts, and a bounded connection count.
//!
//! Plain HTTP is refused unless asked for with `insecure`, and then only on a loopback
//! address, with a warning in the log: anyone who can reach the port can then read and
//! write every key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::net::driver::error::DriverError;
use crate::net::metrics::catalog::{CONNECTIONS, CONNECTIONS_TOTAL};
use crate::net::metrics::{NodeMetrics, OpenGuard};
use crate::net::transport::tls::{ClientAuth, rustls_server_config};

use super::auth::{ConnAuth, ReadToken};
use super::front::Front;
use super::limits::{
    CONNECTIONS_MAX, HEAD_BUF_BYTES_MAX, HEAD_READ_TIMEOUT_MS, HEADERS_COUNT_MAX,
    TLS_HANDSHAKE_TIMEOUT_MS,
};
use super::router::router;

/// The ALPN id the HTTP API offers.
pub const HTTP_ALPN: &[u8] = b"http/1.1";
/// Headers hyper parses at most; between [`HEADERS_COUNT_MAX`] and this the router
/// answers 400 with a sentence, past it hyper answers 431.
const HYPER_HEADERS_MAX: usize = HEADERS_COUNT_MAX * 2;
/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_RETRY_MS: u64 = 50;

/// How a node serves its HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// The TCP address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Plain HTTP without TLS or client certificates: only on a loopback address.
    pub insecure: bool,
    /// A read-only bearer token: with one, clients without a certificate may `GET` the
    /// routes in [`super::auth::READ_TOKEN_ROUTES`] by presenting it.
    pub read_token: Option<ReadToken>,
}

/// A running HTTP API; dropping it does not stop it, [`HttpServer::stop`] does.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL: `https://ADDR`, or `http://ADDR` when insecure.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting and drops every connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Binds `opts.listen` and serves the API for the node behind `front`.
pub(crate) async fn start(opts: &HttpOptions, front: Front) -> Result<HttpServer, DriverError> {
    let fail = |reason: String| DriverError::Http {
        addr: opts.listen,
        reason,
    };
    let acceptor = if opts.insecure {
        if opts.read_token.is_some() {
            return Err(fail(
                "a read-only token limits clients without a certificate, but plain HTTP (--http-insecure) lets every client do everything; drop one of the two".into(),
            ));
        }
        if !opts.listen.ip().is_loopback() {
            return Err(fail(
                "plain HTTP (--http-insecure) is served only on a loopback address; drop --http-insecure to serve TLS with client certificates, or listen on 127.0.0.1".into(),
            ));
        }
        tracing::warn!(addr = %opts.listen, node = %front.node, "serving the HTTP API without TLS or client certificates: anyone who can reach this port can read and write every key");
        None
    } else {
        let client_auth = match opts.read_token {
            Some(_) => ClientAuth::Optional,
            None => ClientAuth::Required,
        };
        let config = rustls_server_config(
            &front.identity,
            HTTP_ALPN,
            "the HTTP server config",
            client_auth,
        )?;
        Some(TlsAcceptor::from(Arc::new(config)))
    };
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let tls = acceptor.is_some();
    let read_token = opts.read_token.is_some();
    tracing::info!(node = %front.node, %addr, tls, read_token, "HTTP API listening");
    let metrics = front.metrics.clone();
    let app = router(front, opts.read_token.clone());
    let task = tokio::spawn(accept_loop(listener, acceptor, app, metrics));
    Ok(HttpServer { addr, tls, task })
}

/// Accepts until aborted; aborting drops the set, which aborts every connection task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    metrics: NodeMetrics,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        // The semaphore is never closed, so this waits for a free slot.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                let open = metrics.open(CONNECTIONS, CONNECTIONS_TOTAL, &[("transport", "http")]);
                connections.spawn(connection(
                    stream,
                    peer,
                    acceptor.clone(),
                    app.clone(),
                    (slot, open),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the HTTP API could not accept a connection");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    _held: (OwnedSemaphorePermit, OpenGuard),
) {
    let Some(acceptor) = acceptor else {
        return http1(stream, peer, app, ConnAuth::Plain).await;
    };
    let handshake = tokio::time::timeout(
        Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS),
        acceptor.accept(stream),
    );
    match handshake.await {
        Ok(Ok(tls)) => {
            // The verifier checked any certificate sent against the cluster CA.
            let auth = match tls.get_ref().1.peer_certificates() {
                Some(certs) if !certs.is_empty() => ConnAuth::Certificate,
                _ => ConnAuth::Anonymous,
            };
            http1(tls, peer, app, auth).await
        }
        // Among these: a client without a certificate from the cluster CA.
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "refused an HTTP API connection at the TLS handshake")
        }
        Err(_) => {
            tracing::info!(%peer, "an HTTP API client did not finish the TLS handshake in time")
        }
    }
}

async fn http1<S>(stream: S, peer: SocketAddr, app: Router, auth: ConnAuth)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Every request of this connection carries how the connection was authenticated.
    let app = app.layer(axum::Extension(auth));
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HEAD_READ_TIMEOUT_MS))
        .max_buf_size(HEAD_BUF_BYTES_MAX)
        .max_headers(HYPER_HEADERS_MAX)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "an HTTP API connection ended with an error");
    }
}
