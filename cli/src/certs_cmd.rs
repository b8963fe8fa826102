//! `ringkv certs` and the certificate set-up of `ringkv dev`.
//!
//! Mutual TLS is always on, so nothing runs without a cluster CA. `certs`
//! is the explicit path for real clusters; `dev` must work with no preparation, so it
//! creates whatever is missing — and only what is missing, because replacing a CA would
//! orphan every certificate it signed and a restart must reuse the old ones.

use std::path::Path;

use ringkv::net::CertStore;
use ringkv::net::{NetError, Role};
use serde_json::json;

use crate::error::CliError;
use crate::output::Rendered;
use crate::{CertsCommand, DEFAULT_CERT_NAME, GlobalArgs};

/// What `ensure_dev_certs` had to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevCerts {
    pub created_ca: bool,
    /// Names issued now (nodes first, then the client), in order.
    pub issued: Vec<String>,
}

/// Runs `certs init` or `certs issue`; `--dir` defaults to the global `--certs`.
pub fn run(global: &GlobalArgs, cmd: CertsCommand) -> Result<Rendered, CliError> {
    match cmd {
        CertsCommand::Init { dir } => {
            let dir = dir.unwrap_or_else(|| global.certs.clone());
            let store = CertStore::init(&dir)?;
            Ok(Rendered::new(
                json!({
                    "dir": store.dir().display().to_string(),
                    "ca_cert": store.ca_cert_path().display().to_string(),
                    "ca_key": store.ca_key_path().display().to_string(),
                }),
                format!(
                    "created a cluster CA in {0} (keep ca.key private); issue certificates with `ringkv certs issue --dir {0} --name NAME [--client]`",
                    store.dir().display()
                ),
            ))
        }
        CertsCommand::Issue { dir, name, client } => {
            let dir = dir.unwrap_or_else(|| global.certs.clone());
            let store = CertStore::open(&dir)?;
            let role = if client { Role::Client } else { Role::Node };
            store.issue(&name, role)?;
            let (cert, key) = (store.cert_path(&name), store.key_path(&name));
            Ok(Rendered::new(
                json!({
                    "name": name,
                    "role": role_name(role),
                    "cert": cert.display().to_string(),
                    "key": key.display().to_string(),
                }),
                format!(
                    "issued a {} certificate for {name}: {}, {}",
                    role_name(role),
                    cert.display(),
                    key.display()
                ),
            ))
        }
    }
}

/// Makes sure `dir` holds a CA, node certificates for `node_names` and a `client`
/// certificate, creating only what is missing.
pub fn ensure_dev_certs(dir: &Path, node_names: &[String]) -> Result<DevCerts, NetError> {
    let mut done = DevCerts::default();
    let store = if CertStore::exists(dir) {
        CertStore::open(dir)?
    } else {
        done.created_ca = true;
        CertStore::init(dir)?
    };
    let wanted = node_names
        .iter()
        .map(|name| (name.as_str(), Role::Node))
        .chain([(DEFAULT_CERT_NAME, Role::Client)]);
    for (name, role) in wanted {
        if !store.has_identity(name) {
            store.issue(name, role)?;
            done.issued.push(name.to_owned());
        }
    }
    Ok(done)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Node => "node",
        Role::Client => "client",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::net::load_identity;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn dev_certs_are_created_once_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let first = ensure_dev_certs(&dir, &names(3)).unwrap();
        assert!(first.created_ca);
        assert_eq!(first.issued, ["n1", "n2", "n3", "client"]);
        assert_eq!(load_identity(&dir, "n2").unwrap().role, Role::Node);
        assert_eq!(load_identity(&dir, "client").unwrap().role, Role::Client);
        let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();

        let again = ensure_dev_certs(&dir, &names(3)).unwrap();
        assert_eq!(again, DevCerts::default(), "a restart creates nothing");
        let grown = ensure_dev_certs(&dir, &names(4)).unwrap();
        assert_eq!(
            grown.issued,
            ["n4"],
            "a bigger cluster adds only the new node"
        );
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
    }

    #[test]
    fn certs_commands_init_then_issue_and_refuse_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let global = GlobalArgs {
            node: crate::DEFAULT_NODE.to_owned(),
            certs: dir.clone(),
            cert_name: DEFAULT_CERT_NAME.to_owned(),
            json: true,
            log_format: None,
            certs_defaulted: false,
        };
        let init = run(&global, CertsCommand::Init { dir: None }).unwrap();
        assert_eq!(init.json["dir"], dir.display().to_string());
        let issued = run(
            &global,
            CertsCommand::Issue {
                dir: Some(dir.clone()),
                name: "ops".into(),
                client: true,
            },
        )
        .unwrap();
        assert_eq!(issued.json["role"], "client");
        assert_eq!(load_identity(&dir, "ops").unwrap().role, Role::Client);

        let err = run(&global, CertsCommand::Init { dir: None }).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        let err = run(
            &global,
            CertsCommand::Issue {
                dir: None,
                name: "ops".into(),
                client: false,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
