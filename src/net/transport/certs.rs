//! The cluster certificate authority and the PEM files it writes.
//!
//! Mutual TLS is always on, so every node and client needs a certificate
//! signed by the cluster CA. This module is what `ringkv certs` and `ringkv dev` call: it
//! creates the CA once (refusing to replace one, which would orphan every certificate it
//! signed), issues node and client certificates with the names and usages the TLS layer
//! checks, and loads an [`Identity`] with errors that name the missing file and the command
//! that creates it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::time::ASN1Time;

use super::error::NetError;
use super::identity::{PeerIdentity, Role};
use super::tls::SERVER_NAME;

/// File name of the CA certificate inside the certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Lifetime of the cluster CA.
pub const CA_VALIDITY_DAYS: u64 = 20 * 365;
/// Lifetime of node and client certificates (shorter than the CA's).
pub const CERT_VALIDITY_DAYS: u64 = 10 * 365;
/// Certificates start this far in the past so a peer whose clock runs behind accepts them.
pub const CLOCK_SKEW_ALLOWANCE_SECS: u64 = 3600;
/// Longest node or client name: one DNS label, since the name is also a SAN.
pub const NAME_BYTES_MAX: usize = 63;

const SECS_PER_DAY: u64 = 86_400;
const CA_COMMON_NAME: &str = "ringkv cluster CA";

/// A certificate directory holding a cluster CA.
#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
}

/// A node's or client's TLS identity: its certificate, private key and the cluster CA.
pub struct Identity {
    /// The name the certificate was issued for (`NAME` in `NAME.pem`).
    pub name: String,
    /// Node or client, from the certificate's common name.
    pub role: Role,
    /// The end-entity certificate first, then any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The cluster CA: the only trust anchor for peers.
    pub ca: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl CertStore {
    /// Creates the directory (if needed) and a new cluster CA in it: `ca.pem` + `ca.key`.
    ///
    /// Refuses with [`NetError::CaExists`] if either file is already there.
    pub fn init(dir: impl AsRef<Path>) -> Result<CertStore, NetError> {
        let dir = dir.as_ref().to_path_buf();
        let store = CertStore { dir };
        for path in [store.ca_cert_path(), store.ca_key_path()] {
            if path.exists() {
                return Err(NetError::CaExists { path });
            }
        }
        fs::create_dir_all(&store.dir).map_err(|source| NetError::CertFileWrite {
            path: store.dir.clone(),
            source,
        })?;

        let key = KeyPair::generate().map_err(|source| NetError::CertGenerate {
            what: "CA key".to_owned(),
            source,
        })?;
        let cert = ca_params()?
            .self_signed(&key)
            .map_err(|source| NetError::CertGenerate {
                what: "CA certificate".to_owned(),
                source,
            })?;
        write_pair(
            &store.ca_cert_path(),
            &cert.pem(),
            &store.ca_key_path(),
            &key.serialize_pem(),
        )?;
        Ok(store)
    }

    /// Opens a directory that already holds a cluster CA.
    pub fn open(dir: impl AsRef<Path>) -> Result<CertStore, NetError> {
        let store = CertStore {
            dir: dir.as_ref().to_path_buf(),
        };
        for path in [store.ca_cert_path(), store.ca_key_path()] {
            if !path.exists() {
                return Err(NetError::CertFileMissing {
                    path,
                    hint: store.init_hint(),
                });
            }
        }
        Ok(store)
    }

    /// True when `dir` already holds a CA certificate (so `init` would refuse).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(CA_CERT_FILE).exists() || dir.as_ref().join(CA_KEY_FILE).exists()
    }

    /// The certificate directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.pem`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// `DIR/ca.key`.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    /// `DIR/NAME.pem`.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `DIR/NAME.key`.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// True when a certificate or key for `name` is already in the directory.
    pub fn has_identity(&self, name: &str) -> bool {
        self.cert_path(name).exists() || self.key_path(name).exists()
    }

    /// Issues a certificate for `name` signed by the CA: `DIR/NAME.pem` + `DIR/NAME.key`.
    ///
    /// A node certificate has CN `ringkv-node:NAME`, SANs `ringkv.node` (the server name
    /// every node presents), `NAME`, `localhost` and `127.0.0.1`, and may act as server and
    /// client. A client certificate has CN `ringkv-client:NAME` and is valid for client
    /// authentication only, so it can never serve as a node.
    pub fn issue(&self, name: &str, role: Role) -> Result<(), NetError> {
        validate_name(name)?;
        for path in [self.cert_path(name), self.key_path(name)] {
            if path.exists() {
                return Err(NetError::IdentityExists {
                    name: name.to_owned(),
                    path,
                });
            }
        }
        let ca_pem = self.read_text(&self.ca_cert_path(), &self.init_hint())?;
        let ca_key_pem = self.read_text(&self.ca_key_path(), &self.init_hint())?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| NetError::PemInvalid {
            path: self.ca_key_path(),
            what: "CA private key",
            reason: e.to_string(),
            hint: self.init_hint(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| NetError::PemInvalid {
                path: self.ca_cert_path(),
                what: "CA certificate",
                reason: e.to_string(),
                hint: self.init_hint(),
            })?;

        let generate_err = |source| NetError::CertGenerate {
            what: format!("{role} certificate for {name:?}"),
            source,
        };
        let key = KeyPair::generate().map_err(generate_err)?;
        let cert = leaf_params(name, role)?
            .signed_by(&key, &issuer)
            .map_err(generate_err)?;
        write_pair(
            &self.cert_path(name),
            &cert.pem(),
            &self.key_path(name),
            &key.serialize_pem(),
        )
    }

    /// Loads `DIR/NAME.pem`, `DIR/NAME.key` and `DIR/ca.pem`.
    pub fn load_identity(&self, name: &str) -> Result<Identity, NetError> {
        let hint = self.issue_hint(name);
        let cert_path = self.cert_path(name);
        let key_path = self.key_path(name);

        let cert_pem = self.read_bytes(&cert_path, &hint)?;
        let cert_chain = parse_certs(&cert_path, &cert_pem, &hint)?;
        let key_pem = self.read_bytes(&key_path, &hint)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| NetError::PemInvalid {
            path: key_path.clone(),
            what: "private key",
            reason: e.to_string(),
            hint: hint.clone(),
        })?;
        let ca_path = self.ca_cert_path();
        let ca_pem = self.read_bytes(&ca_path, &self.init_hint())?;
        let ca = parse_certs(&ca_path, &ca_pem, &self.init_hint())?
            .into_iter()
            .next()
            .ok_or_else(|| NetError::PemInvalid {
                path: ca_path.clone(),
                what: "CA certificate",
                reason: "no certificate in the file".to_owned(),
                hint: self.init_hint(),
            })?;

        let end_entity = cert_chain.first().ok_or_else(|| NetError::PemInvalid {
            path: cert_path.clone(),
            what: "certificate",
            reason: "no certificate in the file".to_owned(),
            hint: hint.clone(),
        })?;
        let peer = PeerIdentity::from_cert_der(end_entity).map_err(|e| NetError::PemInvalid {
            path: cert_path.clone(),
            what: "ringkv certificate",
            reason: e.to_string(),
            hint: hint.clone(),
        })?;
        if peer.name != name {
            return Err(NetError::CertNameMismatch {
                path: cert_path,
                expected: name.to_owned(),
                found: peer.name,
            });
        }
        Ok(Identity {
            name: peer.name,
            role: peer.role,
            cert_chain,
            ca,
            key,
        })
    }

    fn init_hint(&self) -> String {
        format!("ringkv certs init --dir {}", self.dir.display())
    }

    fn issue_hint(&self, name: &str) -> String {
        format!(
            "ringkv certs issue --dir {} --name {name} [--client]",
            self.dir.display()
        )
    }

    fn read_bytes(&self, path: &Path, hint: &str) -> Result<Vec<u8>, NetError> {
        fs::read(path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                NetError::CertFileMissing {
                    path: path.to_path_buf(),
                    hint: hint.to_owned(),
                }
            } else {
                NetError::CertFileRead {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }

    fn read_text(&self, path: &Path, hint: &str) -> Result<String, NetError> {
        let bytes = self.read_bytes(path, hint)?;
        String::from_utf8(bytes).map_err(|_| NetError::PemInvalid {
            path: path.to_path_buf(),
            what: "PEM file",
            reason: "not UTF-8 text".to_owned(),
            hint: hint.to_owned(),
        })
    }
}

impl Identity {
    /// A copy of the private key (rustls consumes one per config it builds).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            name: self.name.clone(),
            role: self.role,
            cert_chain: self.cert_chain.clone(),
            ca: self.ca.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("cert_chain_len", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// Issues a certificate for `name` from the CA in `dir`; see [`CertStore::issue`].
pub fn issue(dir: impl AsRef<Path>, name: &str, role: Role) -> Result<(), NetError> {
    CertStore::open(dir)?.issue(name, role)
}

/// Loads the identity `name` from `dir`; see [`CertStore::load_identity`].
pub fn load_identity(dir: impl AsRef<Path>, name: &str) -> Result<Identity, NetError> {
    CertStore {
        dir: dir.as_ref().to_path_buf(),
    }
    .load_identity(name)
}

/// Checks that `name` is one DNS label (it becomes a SAN and a file name) and not `ca`.
pub fn validate_name(name: &str) -> Result<(), NetError> {
    let invalid = |reason: &str| NetError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(invalid(&format!(
            "a name has 1 to {NAME_BYTES_MAX} characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid("use only letters, digits and '-'"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("a name cannot start or end with '-'"));
    }
    if name.eq_ignore_ascii_case("ca") {
        return Err(invalid("\"ca\" is reserved for the cluster CA files"));
    }
    Ok(())
}

fn ca_params() -> Result<CertificateParams, NetError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    // Path length 0: the CA signs end-entity certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS)?;
    Ok(params)
}

fn leaf_params(name: &str, role: Role) -> Result<CertificateParams, NetError> {
    let sans = match role {
        Role::Node => vec![
            SERVER_NAME.to_owned(),
            name.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ],
        Role::Client => Vec::new(),
    };
    let mut params = CertificateParams::new(sans).map_err(|source| NetError::CertGenerate {
        what: format!("subject names for {name:?}"),
        source,
    })?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, role.common_name(name));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        // Nodes accept connections and also dial their peers.
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, CERT_VALIDITY_DAYS)?;
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, days: u64) -> Result<(), NetError> {
    // A clock before 1970 is broken beyond repair here; the certificate then starts at the
    // epoch and its lifetime is still bounded.
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let at = |secs: u64| {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|_| NetError::CertGenerate {
                what: format!("validity period (timestamp {secs}); check the system clock"),
                source: rcgen::Error::Time,
            })
    };
    params.not_before = at(now_secs.saturating_sub(CLOCK_SKEW_ALLOWANCE_SECS))?;
    params.not_after = at(now_secs.saturating_add(days * SECS_PER_DAY))?;
    Ok(())
}

fn parse_certs(
    path: &Path,
    pem: &[u8],
    hint: &str,
) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::PemInvalid {
            path: path.to_path_buf(),
            what: "certificate",
            reason: e.to_string(),
            hint: hint.to_owned(),
        })?;
    if certs.is_empty() {
        return Err(NetError::PemInvalid {
            path: path.to_path_buf(),
            what: "certificate",
            reason: "no certificate in the file".to_owned(),
            hint: hint.to_owned(),
        });
    }
    Ok(certs)
}

/// Writes the key (owner-only) and then the certificate; never overwrites either, and
/// removes the key again if the certificate cannot be written, so a retry starts clean.
fn write_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<(), NetError> {
    write_new(key_path, key_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(cert_path, cert_pem.as_bytes(), 0o644) {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(key_path);
        return Err(e);
    }
    Ok(())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), NetError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let write_err = |source| NetError::CertFileWrite {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}
