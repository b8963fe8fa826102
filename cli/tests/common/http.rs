//! A small HTTPS client for the HTTP API tests: HTTP/1.1 over rustls, trusting only the
//! cluster CA, presenting a client certificate from the test's certificate directory (or
//! none, to check that the node refuses). One connection per request, every step bounded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on one whole request: connect, handshake, send, and read the answer.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Panics with the answer unless the status is `expected`.
    pub fn expect(self, expected: u16) -> Answer {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "expected {expected}, got {}: {:?} {}",
            self.status,
            self.headers,
            self.text()
        );
        self
    }
}

/// An HTTPS client of one node's API.
pub struct HttpClient {
    base: String,
    connector: TlsConnector,
    runtime: tokio::runtime::Runtime,
}

impl HttpClient {
    /// A client of `base` (`https://127.0.0.1:PORT`) trusting `certs/ca.pem`, presenting
    /// `certs/NAME.pem` when `cert_name` is given.
    pub fn new(base: &str, certs: &Path, cert_name: Option<&str>) -> HttpClient {
        let ca = CertificateDer::from_pem_file(certs.join("ca.pem"))
            .unwrap_or_else(|e| panic!("cannot read ca.pem: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca)
            .unwrap_or_else(|e| panic!("the CA is not a trust anchor: {e}"));
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("no TLS versions: {e}"))
        .with_root_certificates(roots);
        let mut config = match cert_name {
            Some(name) => {
                let chain = CertificateDer::pem_file_iter(certs.join(format!("{name}.pem")))
                    .unwrap_or_else(|e| panic!("cannot read {name}.pem: {e}"))
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap_or_else(|e| panic!("bad {name}.pem: {e}"));
                let key = PrivateKeyDer::from_pem_file(certs.join(format!("{name}.key")))
                    .unwrap_or_else(|e| panic!("cannot read {name}.key: {e}"));
                builder
                    .with_client_auth_cert(chain, key)
                    .unwrap_or_else(|e| panic!("bad client certificate: {e}"))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"));
        HttpClient {
            base: base.trim_end_matches('/').to_owned(),
            connector: TlsConnector::from(Arc::new(config)),
            runtime,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Vec::new())
    }

    /// Sends a request; a connection or TLS failure is `Err` with its text.
    pub fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let authority = self
            .base
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("{} is not an https URL", self.base))
            .to_owned();
        let mut request = Request::builder().method(method).uri(&url);
        request = request.header("host", authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|e| panic!("bad request: {e}"));
        let connector = self.connector.clone();
        let exchange = async move {
            let tcp = TcpStream::connect(&authority)
                .await
                .map_err(|e| format!("connect {authority}: {e}"))?;
            let ip = authority
                .rsplit_once(':')
                .and_then(|(host, _)| host.parse::<std::net::IpAddr>().ok())
                .ok_or_else(|| format!("{authority} is not IP:PORT"))?;
            let tls = connector
                .connect(ServerName::IpAddress(ip.into()), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(conn);
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT_MS} ms")))
        })
    }

    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        self.try_send(method.clone(), path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}
