//! The cluster CA on disk: what `ringkv certs init/issue` writes and what nodes load.

use std::path::Path;

use ringkv::net::transport::certs::{CertStore, NAME_BYTES_MAX, issue, load_identity};
use ringkv::net::{NetError, PeerIdentity, Role, SERVER_NAME};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

#[test]
fn init_creates_the_ca_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let store = CertStore::init(&certs).unwrap();
    assert!(store.ca_cert_path().exists() && store.ca_key_path().exists());
    assert!(CertStore::exists(&certs));

    let before = std::fs::read(store.ca_key_path()).unwrap();
    let err = CertStore::init(&certs).unwrap_err();
    assert!(matches!(err, NetError::CaExists { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ca.pem") && text.contains("refusing to overwrite"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(store.ca_key_path()).unwrap(),
        before,
        "CA key was replaced"
    );

    let der = pem_der(&store.ca_cert_path());
    let (_, ca) = X509Certificate::from_der(&der).unwrap();
    assert!(ca.is_ca());
}

#[cfg(unix)]
#[test]
fn private_keys_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::init(dir.path()).unwrap();
    store.issue("n1", Role::Node).unwrap();
    for key in [store.ca_key_path(), store.key_path("n1")] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
}

#[test]
fn node_certificate_has_the_shared_server_name_and_both_usages() {
    let dir = tempfile::tempdir().unwrap();
    CertStore::init(dir.path()).unwrap();
    issue(dir.path(), "n1", Role::Node).unwrap();

    let der = pem_der(&dir.path().join("n1.pem"));
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "ringkv-node:n1");

    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &sans.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(dns, [SERVER_NAME, "n1", "localhost"]);
    assert_eq!(ips, [vec![127, 0, 0, 1]]);

    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);
    assert!(!cert.is_ca());
    assert_eq!(
        PeerIdentity::from_cert_der(&der).unwrap(),
        PeerIdentity {
            role: Role::Node,
            name: "n1".to_owned()
        }
    );
}

#[test]
fn client_certificate_is_for_client_auth_only() {
    let dir = tempfile::tempdir().unwrap();
    CertStore::init(dir.path()).unwrap();
    issue(dir.path(), "client", Role::Client).unwrap();

    let der = pem_der(&dir.path().join("client.pem"));
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "ringkv-client:client");
}

#[test]
fn identities_roundtrip_through_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::init(dir.path()).unwrap();
    store.issue("n1", Role::Node).unwrap();
    store.issue("alice", Role::Client).unwrap();

    let node = load_identity(dir.path(), "n1").unwrap();
    assert_eq!((node.name.as_str(), node.role), ("n1", Role::Node));
    assert_eq!(node.cert_chain.len(), 1);
    assert_eq!(node.ca.to_vec(), pem_der(&store.ca_cert_path()));

    let client = store.load_identity("alice").unwrap();
    assert_eq!((client.name.as_str(), client.role), ("alice", Role::Client));
    // The private key never reaches Debug output.
    let debug = format!("{client:?}");
    assert!(
        !debug.contains("PRIVATE") && !debug.contains("key:"),
        "{debug}"
    );

    // Both build TLS configs: the key matches the certificate.
    ringkv::net::server_config(&node).unwrap();
    ringkv::net::client_config(&client).unwrap();

    let err = store.issue("n1", Role::Node).unwrap_err();
    assert!(matches!(err, NetError::IdentityExists { .. }), "{err}");
}

#[test]
fn missing_files_name_the_file_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();

    let err = issue(dir.path(), "n1", Role::Node).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NetError::CertFileMissing { .. }), "{text}");
    assert!(text.contains("ca.pem"), "{text}");
    assert!(
        text.contains(&format!("ringkv certs init --dir {d}")),
        "{text}"
    );

    CertStore::init(dir.path()).unwrap();
    let err = load_identity(dir.path(), "n7").unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("{d}/n7.pem")), "{text}");
    assert!(
        text.contains(&format!("ringkv certs issue --dir {d} --name n7")),
        "{text}"
    );

    // A certificate without its key names the key file.
    issue(dir.path(), "n1", Role::Node).unwrap();
    std::fs::remove_file(dir.path().join("n1.key")).unwrap();
    let text = load_identity(dir.path(), "n1").unwrap_err().to_string();
    assert!(
        text.contains("n1.key") && text.contains("ringkv certs issue"),
        "{text}"
    );

    // A missing CA certificate names the init command.
    issue(dir.path(), "n2", Role::Node).unwrap();
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    let text = load_identity(dir.path(), "n2").unwrap_err().to_string();
    assert!(
        text.contains("ca.pem") && text.contains("ringkv certs init"),
        "{text}"
    );
}

#[test]
fn corrupt_and_renamed_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::init(dir.path()).unwrap();
    store.issue("n1", Role::Node).unwrap();

    std::fs::copy(store.cert_path("n1"), store.cert_path("n3")).unwrap();
    std::fs::copy(store.key_path("n1"), store.key_path("n3")).unwrap();
    let err = store.load_identity("n3").unwrap_err();
    assert!(matches!(err, NetError::CertNameMismatch { .. }), "{err}");

    std::fs::write(store.cert_path("n1"), b"not a pem file").unwrap();
    let err = store.load_identity("n1").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NetError::PemInvalid { .. }), "{text}");
    assert!(
        text.contains("n1.pem") && text.contains("ringkv certs issue"),
        "{text}"
    );
}

#[test]
fn names_must_be_one_dns_label() {
    let dir = tempfile::tempdir().unwrap();
    let store = CertStore::init(dir.path()).unwrap();
    let long = "a".repeat(NAME_BYTES_MAX + 1);
    for bad in [
        "",
        "ca",
        "CA",
        "../x",
        "a/b",
        "a_b",
        "-a",
        "a-",
        "a.b",
        long.as_str(),
    ] {
        let err = store.issue(bad, Role::Node).unwrap_err();
        assert!(
            matches!(err, NetError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    store.issue("node-7", Role::Node).unwrap();
    store
        .issue(&"a".repeat(NAME_BYTES_MAX), Role::Client)
        .unwrap();
}
