//! The container files in `deploy/`, checked without an image registry: the entrypoint
//! under plain `sh` (syntax, a real `ringkv --version`, real certificates, a dry run of the
//! node command), and the compose file through `docker compose config` when Docker's compose
//! plugin is present (skipped with a printed reason otherwise).

mod common;

use std::path::{Path, PathBuf};

use common::{BIN, Outcome, Setup, ringkv_with};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `sh deploy/entrypoint.sh ARGS` with `RINGKV_BIN` pointing at the binary under test.
fn entrypoint(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut full = vec![repo_file("deploy/entrypoint.sh").display().to_string()];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let mut vars = vec![("RINGKV_BIN".to_owned(), BIN.to_owned())];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    ringkv_with(
        &full,
        &Setup {
            env: vars,
            program: Some("sh".to_owned()),
            ..Setup::default()
        },
    )
}

#[test]
fn the_entrypoint_parses_and_runs_under_plain_sh() {
    let script = repo_file("deploy/entrypoint.sh");
    let syntax = ringkv_with(
        &["-n".to_owned(), script.display().to_string()],
        &Setup {
            program: Some("sh".to_owned()),
            ..Setup::default()
        },
    );
    syntax.success();

    let version = entrypoint(&["--version"], &[]);
    version.success();
    assert!(version.stdout.starts_with("ringkv "), "{}", version.stdout);

    let dry = entrypoint(&[], &[("RINGKV_ENTRYPOINT_DRY_RUN", "1")]);
    dry.success();
    assert_eq!(dry.stdout.trim(), format!("{BIN} node"));
    let dry = entrypoint(
        &["node", "--vnodes", "32"],
        &[("RINGKV_ENTRYPOINT_DRY_RUN", "1")],
    );
    assert_eq!(dry.stdout.trim(), format!("{BIN} node --vnodes 32"));
}

#[test]
fn the_entrypoint_makes_certificates_once_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let certs = dir.path().join("certs");
    let certs_env = certs.display().to_string();
    let env = [
        ("RINGKV_CERTS", certs_env.as_str()),
        ("RINGKV_NODES", "n1,n2 n3"),
    ];
    entrypoint(&["certs"], &env).success();
    let files = [
        "ca.pem",
        "n1.pem",
        "n2.pem",
        "n3.pem",
        "client.pem",
        "n3.key",
    ];
    let read = |name: &str| {
        std::fs::read(certs.join(name)).unwrap_or_else(|e| panic!("no {name} in {certs_env}: {e}"))
    };
    let first: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    let again = entrypoint(&["certs"], &env);
    again.success();
    assert!(again.stdout.contains("keeping the CA"), "{}", again.stdout);
    let second: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    assert!(first == second, "a second run must keep every certificate");

    let missing = entrypoint(&["certs"], &[("RINGKV_CERTS", certs_env.as_str())]);
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("RINGKV_NODES"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_compose_file_parses_when_docker_compose_is_present() {
    let compose = repo_file("deploy/compose.yaml");
    let docker = |args: &[&str]| {
        ringkv_with(
            &args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
            &Setup {
                program: Some("docker".to_owned()),
                ..Setup::default()
            },
        )
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("docker").is_file()));
    if !on_path {
        println!(
            "skipped `docker compose config`: docker is not installed ({} was not parsed by Docker)",
            compose.display()
        );
        return;
    }
    if docker(&["compose", "version"]).code != Some(0) {
        println!(
            "skipped `docker compose config`: no docker compose plugin on this machine ({} was not parsed by Docker)",
            compose.display()
        );
        return;
    }
    docker(&[
        "compose",
        "-f",
        &compose.display().to_string(),
        "config",
        "--quiet",
    ])
    .success();
}
