//! Who is on the other end of a connection.
//!
//! mTLS proves that a peer holds a certificate signed by the cluster CA; this module turns
//! that certificate into a typed [`PeerIdentity`] (node or client, and its name) so the
//! server-side dispatch can decide what the peer may do. The role comes from the common
//! name that `ringkv certs issue` wrote and the CA signed, so a client certificate can
//! never pass for a node.

use std::fmt;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::NetError;

/// Common-name prefix of node certificates.
pub const NODE_CN_PREFIX: &str = "ringkv-node:";
/// Common-name prefix of client certificates.
pub const CLIENT_CN_PREFIX: &str = "ringkv-client:";

/// What a certificate allows its holder to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A cluster member: may send peer (node-to-node) messages and call the client API.
    Node,
    /// A client: may call the client API only.
    Client,
}

/// The authenticated identity of a connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Node or client, from the certificate's common-name prefix.
    pub role: Role,
    /// The name after the prefix: a node's id, or the client's chosen name.
    pub name: String,
}

impl Role {
    /// The common name a certificate of this role carries for `name`.
    pub fn common_name(self, name: &str) -> String {
        match self {
            Role::Node => format!("{NODE_CN_PREFIX}{name}"),
            Role::Client => format!("{CLIENT_CN_PREFIX}{name}"),
        }
    }
}

impl PeerIdentity {
    /// Parses a common name of the form `ringkv-node:NAME` or `ringkv-client:NAME`.
    pub fn from_common_name(cn: &str) -> Result<PeerIdentity, NetError> {
        let (role, name) = if let Some(name) = cn.strip_prefix(NODE_CN_PREFIX) {
            (Role::Node, name)
        } else if let Some(name) = cn.strip_prefix(CLIENT_CN_PREFIX) {
            (Role::Client, name)
        } else {
            return Err(NetError::BadCommonName { cn: cn.to_owned() });
        };
        if name.is_empty() {
            return Err(NetError::BadCommonName { cn: cn.to_owned() });
        }
        Ok(PeerIdentity {
            role,
            name: name.to_owned(),
        })
    }

    /// Reads the identity from a DER certificate's subject common name.
    pub fn from_cert_der(der: &[u8]) -> Result<PeerIdentity, NetError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| NetError::BadCommonName {
            cn: format!("<unparsable certificate: {e}>"),
        })?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .ok_or_else(|| NetError::BadCommonName {
                cn: "<no common name>".to_owned(),
            })?
            .as_str()
            .map_err(|e| NetError::BadCommonName {
                cn: format!("<non-string common name: {e}>"),
            })?;
        PeerIdentity::from_common_name(cn)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Client => "client",
        })
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// The identity of the peer of an established connection, from its end-entity certificate.
///
/// With the configs of `transport::tls` a completed handshake always carries a CA-verified
/// certificate; the error cases cover a foreign configuration or a certificate that was
/// signed by the CA without a ringkv common name.
pub fn peer_identity(conn: &quinn::Connection) -> Result<PeerIdentity, NetError> {
    let addr = conn.remote_address();
    let any = conn
        .peer_identity()
        .ok_or_else(|| NetError::NoPeerIdentity {
            addr,
            reason: "the peer presented no certificate".to_owned(),
        })?;
    let chain = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| NetError::NoPeerIdentity {
            addr,
            reason: "the TLS session holds no X.509 certificate chain".to_owned(),
        })?;
    let end_entity = chain.first().ok_or_else(|| NetError::NoPeerIdentity {
        addr,
        reason: "the peer's certificate chain is empty".to_owned(),
    })?;
    PeerIdentity::from_cert_der(end_entity).map_err(|e| NetError::NoPeerIdentity {
        addr,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_parse_into_roles() -> Result<(), Box<dyn std::error::Error>> {
        let node = PeerIdentity::from_common_name("ringkv-node:n1")?;
        assert_eq!(node.role, Role::Node);
        assert_eq!(node.name, "n1");
        let client = PeerIdentity::from_common_name("ringkv-client:alice")?;
        assert_eq!(client.role, Role::Client);
        assert_eq!(client.name, "alice");
        assert_eq!(Role::Node.common_name("n1"), "ringkv-node:n1");
        assert_eq!(Role::Client.common_name("c"), "ringkv-client:c");
        Ok(())
    }

    #[test]
    fn foreign_common_names_are_refused() {
        for cn in ["n1", "ringkv-node:", "ringkv-admin:x", "", "RINGKV-NODE:n1"] {
            let err = PeerIdentity::from_common_name(cn).unwrap_err();
            assert!(matches!(err, NetError::BadCommonName { .. }), "{cn}: {err}");
        }
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        let err = PeerIdentity::from_cert_der(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("unparsable certificate"), "{err}");
    }
}
