//! Who may call what: a client certificate from the cluster CA opens every route; a
//! read-only bearer token (`--http-read-token-file`) opens only [`READ_TOKEN_ROUTES`].
//!
//! Why a token at all: a browser or a Prometheus server is awkward to give a client
//! certificate, but an operator wants the status page and the metrics without handing out
//! the key that reads and writes every value. So when a token is configured, the TLS
//! handshake accepts clients without a certificate (a certificate, when sent, must still be
//! the CA's), the connection is marked [`ConnAuth::Anonymous`], and such a request passes
//! only on a read-only route, only as `GET`, and only with `Authorization: Bearer TOKEN`
//! (or, for the page itself, `?token=TOKEN`, since a browser cannot add a header to the
//! address it opens; the page then sends the header on its own requests). Everything else
//! is 401 with a sentence. Without a token nothing changes: no certificate, no handshake.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::HttpError;

/// The routes a read-only token opens, all `GET`: the page and what it fetches, and the
/// metrics. Never a data route.
pub const READ_TOKEN_ROUTES: &[&str] = &["/", "/metrics", "/v1/status", "/v1/ring", "/v1/stats"];
/// Shortest token accepted: 16 bytes of random text.
pub const READ_TOKEN_BYTES_MIN: usize = 16;
/// Longest token accepted.
pub const READ_TOKEN_BYTES_MAX: usize = 256;

/// How the connection a request came on was authenticated; the server sets it on every
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnAuth {
    /// A client certificate signed by the cluster CA: every route.
    Certificate,
    /// TLS without a client certificate (only when a read-only token is configured).
    Anonymous,
    /// Plain HTTP on loopback (`--http-insecure`): every route, as documented there.
    Plain,
}

/// A read-only bearer token; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadToken(Arc<str>);

/// Why a read-only token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Too short to resist guessing, or too long for a header.
    #[error(
        "the read-only token is {len} bytes; use {READ_TOKEN_BYTES_MIN} to {READ_TOKEN_BYTES_MAX} bytes (for example `openssl rand -hex 24`)"
    )]
    Length {
        /// The token's length in bytes.
        len: usize,
    },
    /// A character a header cannot carry verbatim.
    #[error(
        "the read-only token holds a character other than ASCII letters, digits and -._~+/=; use for example `openssl rand -hex 24`"
    )]
    Charset,
}

impl ReadToken {
    /// A token from its text, surrounding whitespace (a file's newline) removed.
    pub fn new(text: &str) -> Result<ReadToken, TokenError> {
        let text = text.trim();
        if !(READ_TOKEN_BYTES_MIN..=READ_TOKEN_BYTES_MAX).contains(&text.len()) {
            return Err(TokenError::Length { len: text.len() });
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            return Err(TokenError::Charset);
        }
        Ok(ReadToken(Arc::from(text)))
    }

    /// True when `offered` is this token; compares every byte whatever differs, so the
    /// time taken does not say how much of a guess was right.
    pub fn matches(&self, offered: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), offered.as_bytes());
        if ours.len() != theirs.len() {
            return false;
        }
        ours.iter()
            .zip(theirs)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl fmt::Debug for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadToken(..)")
    }
}

/// The middleware: lets a request through when its connection's [`ConnAuth`] and its
/// token allow its route.
pub(crate) async fn check_access(
    State(token): State<Option<ReadToken>>,
    request: Request,
    next: Next,
) -> Response {
    let auth = request
        .extensions()
        .get::<ConnAuth>()
        .copied()
        // No mark means the router was called without the server (in-process tests).
        .unwrap_or(ConnAuth::Anonymous);
    match allowed(auth, token.as_ref(), &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The decision of [`check_access`].
fn allowed(auth: ConnAuth, token: Option<&ReadToken>, request: &Request) -> Result<(), HttpError> {
    if auth != ConnAuth::Anonymous {
        return Ok(());
    }
    let path = request.uri().path();
    let Some(token) = token else {
        return Err(HttpError::Unauthorized(
            "this connection has no client certificate; present one signed by the cluster CA"
                .into(),
        ));
    };
    if request.method() != Method::GET || !READ_TOKEN_ROUTES.contains(&path) {
        return Err(HttpError::Unauthorized(format!(
            "{} {path} needs a client certificate signed by the cluster CA; the read-only token opens only GET {}",
            request.method(),
            READ_TOKEN_ROUTES.join(", ")
        )));
    }
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = (path == "/")
        .then(|| query_token(request.uri().query().unwrap_or_default()))
        .flatten();
    match from_header.or(from_query) {
        Some(offered) if token.matches(offered) => Ok(()),
        Some(_) => Err(HttpError::Unauthorized(
            "the bearer token is not this node's read-only token".into(),
        )),
        None => Err(HttpError::Unauthorized(format!(
            "GET {path} needs a client certificate signed by the cluster CA or `Authorization: Bearer TOKEN` with the node's read-only token"
        ))),
    }
}

/// The `token` parameter of a query string (tokens hold no characters that need
/// percent-decoding, see [`ReadToken::new`]).
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    const TOKEN: &str = "0123456789abcdef0123";

    fn request(method: Method, uri: &str, bearer: Option<&str>) -> Request {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        // invariant: test-only; a literal method, URI and header always build
        builder.body(Body::empty()).unwrap()
    }

    fn token() -> ReadToken {
        // invariant: test-only; the literal is a valid token
        ReadToken::new(TOKEN).unwrap()
    }

    #[test]
    fn a_certificate_opens_every_route_and_a_token_only_the_read_only_ones() {
        let t = token();
        let put = request(Method::PUT, "/v1/buckets/b/keys/k", Some(TOKEN));
        assert!(allowed(ConnAuth::Certificate, Some(&t), &put).is_ok());
        assert!(allowed(ConnAuth::Plain, None, &put).is_ok());
        assert!(allowed(ConnAuth::Anonymous, Some(&t), &put).is_err());
        let get_key = request(Method::GET, "/v1/buckets/b/keys/k", Some(TOKEN));
        assert!(allowed(ConnAuth::Anonymous, Some(&t), &get_key).is_err());
        for route in READ_TOKEN_ROUTES {
            let ok = request(Method::GET, route, Some(TOKEN));
            assert!(
                allowed(ConnAuth::Anonymous, Some(&t), &ok).is_ok(),
                "{route}"
            );
            let wrong = request(Method::GET, route, Some("0123456789abcdef0124"));
            assert!(
                allowed(ConnAuth::Anonymous, Some(&t), &wrong).is_err(),
                "{route}"
            );
            let none = request(Method::GET, route, None);
            assert!(
                allowed(ConnAuth::Anonymous, Some(&t), &none).is_err(),
                "{route}"
            );
            assert!(allowed(ConnAuth::Anonymous, None, &ok).is_err(), "{route}");
        }
    }

    #[test]
    fn only_the_page_takes_the_token_in_its_query() {
        let t = token();
        let page = request(Method::GET, &format!("/?token={TOKEN}"), None);
        assert!(allowed(ConnAuth::Anonymous, Some(&t), &page).is_ok());
        let metrics = request(Method::GET, &format!("/metrics?token={TOKEN}"), None);
        assert!(allowed(ConnAuth::Anonymous, Some(&t), &metrics).is_err());
    }

    #[test]
    fn tokens_are_checked_for_length_and_characters() {
        assert_eq!(ReadToken::new("short"), Err(TokenError::Length { len: 5 }));
        assert_eq!(
            ReadToken::new("0123456789abcdef 0123"),
            Err(TokenError::Charset)
        );
        assert_eq!(ReadToken::new(&format!("{TOKEN}\n")), Ok(token()));
        assert!(!format!("{:?}", token()).contains(TOKEN));
        assert!(!token().matches("0123456789abcdef012"));
    }
}
