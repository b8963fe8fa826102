//! `ringkv dev` as a user runs it: one process with three nodes, Ctrl-C (SIGINT) stops
//! it with exit code 0, and running it again on the same directory brings the data back.

mod common;

use std::net::UdpSocket;
use std::path::Path;

use common::{
    Outcome, Proc, START_ATTEMPTS_MAX, START_TIMEOUT_MS, STOP_TIMEOUT_MS, WAIT_MS, WaitError, args,
    ringkv,
};
use serde_json::json;

/// Nodes of the dev cluster.
const NODES: u16 = 3;
/// Tries to find `NODES` consecutive free ports before giving up.
const PORT_SEARCH_ATTEMPTS_MAX: usize = 50;
/// What `ringkv dev` prints on stderr once every node serves requests (the banner's last
/// line, after the HTTP URLs).
const DEV_UP: &str = "Ctrl-C stops the cluster";
/// What precedes n1's HTTP API URL in the banner.
const N1_HTTP: &str = "n1 HTTP API: ";
/// How long the Python example may run.
const PYTHON_TIMEOUT_MS: u64 = 60_000;

/// A base port P with P+1..=P+NODES free on 127.0.0.1 a moment ago.
fn free_base_port() -> u16 {
    for _ in 0..PORT_SEARCH_ATTEMPTS_MAX {
        let first = UdpSocket::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind an ephemeral UDP port: {e}"));
        let port = match first.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => panic!("a bound UDP socket has no address: {e}"),
        };
        if port < 2 || u32::from(port) + u32::from(NODES) > u32::from(u16::MAX) {
            continue;
        }
        // Held together: the next ports must be free at the same moment as the first.
        let rest: Result<Vec<UdpSocket>, _> = (1..NODES)
            .map(|k| UdpSocket::bind(("127.0.0.1", port + k)))
            .collect();
        if rest.is_ok() {
            return port - 1;
        }
    }
    panic!("found no {NODES} consecutive free UDP ports in {PORT_SEARCH_ATTEMPTS_MAX} tries");
}

/// Starts `ringkv dev` on `dir`, first on `base` if given, and waits until it serves:
/// its stderr says the nodes are up and `ringkv status` through n1 answers.
fn start_dev(dir: &Path, base: Option<u16>) -> (Proc, u16) {
    let mut last_failure = String::new();
    let mut base = base.unwrap_or_else(free_base_port);
    for _ in 0..START_ATTEMPTS_MAX {
        let mut dev = Proc::spawn(
            "ringkv dev",
            &args(&[
                "dev",
                "--nodes",
                &NODES.to_string(),
                "--base-port",
                &base.to_string(),
                "--http-base-port",
                "0",
                "--dir",
                &dir.display().to_string(),
            ]),
        );
        match dev.wait_for_stderr(DEV_UP, START_TIMEOUT_MS) {
            Ok(()) => {
                common::eventually("ringkv status answers through n1", WAIT_MS, || {
                    client(dir, base, &["status", "--json"]).code == Some(0)
                });
                return (dev, base);
            }
            // A port was taken meanwhile. The data is keyed by node name, not port, so
            // other ports still show whether a restart reuses it.
            Err(WaitError::Exited(why)) => {
                last_failure = why;
                base = free_base_port();
            }
            Err(WaitError::TimedOut(why)) => panic!("{why}"),
        }
    }
    panic!("ringkv dev did not start in {START_ATTEMPTS_MAX} attempts: {last_failure}");
}

/// A client command against n1 of the dev cluster, with the certificates dev created.
fn client(dir: &Path, base: u16, command: &[&str]) -> Outcome {
    let mut full = args(command);
    full.extend(args(&[
        "--node",
        &format!("127.0.0.1:{}", base + 1),
        "--certs",
        &dir.join("certs").display().to_string(),
    ]));
    ringkv(&full)
}

/// SIGINT, then exit code 0 within the bound, with the clean-stop sentence on stdout.
fn interrupt_and_expect_clean_exit(dev: &mut Proc) {
    dev.interrupt();
    let Some(status) = dev.wait_exit(STOP_TIMEOUT_MS) else {
        panic!(
            "ringkv dev still runs {STOP_TIMEOUT_MS} ms after SIGINT; stderr:\n{}",
            dev.stderr()
        );
    };
    assert_eq!(
        status.code(),
        Some(0),
        "ringkv dev after SIGINT: {status}; stderr:\n{}",
        dev.stderr()
    );
    assert!(
        dev.stdout()
            .contains(&format!("stopped {NODES} nodes cleanly")),
        "stdout: {}",
        dev.stdout()
    );
}

#[test]
fn dev_serves_stops_cleanly_on_sigint_and_restarts_with_its_data() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let dir = tmp.path().join("ringkv-dev");

    let (mut dev, base) = start_dev(&dir, None);
    for name in ["n1", "n2", "n3"] {
        assert!(
            dev.stderr()
                .contains(&format!("{name} HTTP API: https://127.0.0.1:")),
            "the banner names {name}'s HTTP URL; stderr:\n{}",
            dev.stderr()
        );
    }
    assert!(
        dev.stderr().contains("created a cluster CA"),
        "a first start creates the CA; stderr:\n{}",
        dev.stderr()
    );
    let status = client(&dir, base, &["status", "--json"]);
    let status = status.json();
    let names: Vec<&str> = status["nodes"]
        .as_array()
        .map(|nodes| nodes.iter().filter_map(|n| n["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["n1", "n2", "n3"], "{status}");

    client(&dir, base, &["put", "demo/hello", "world", "--w", "3"]).success();
    let got = client(&dir, base, &["get", "demo/hello", "--json"]);
    got.success();
    assert_eq!(got.json()["values"], json!(["world"]), "{}", got.stdout);
    for _ in 0..2 {
        client(&dir, base, &["counter", "incr", "demo/visits", "--w", "3"]).success();
    }
    let visits = client(&dir, base, &["counter", "get", "demo/visits", "--json"]);
    visits.success();
    assert_eq!(visits.json()["value"], json!(2), "{}", visits.stdout);

    interrupt_and_expect_clean_exit(&mut dev);
    drop(dev);

    let (mut dev, base) = start_dev(&dir, Some(base));
    assert!(
        !dev.stderr().contains("created a cluster CA"),
        "a restart must reuse the CA; stderr:\n{}",
        dev.stderr()
    );
    let got = client(&dir, base, &["get", "demo/hello", "--r", "3", "--json"]);
    got.success();
    let got = got.json();
    assert_eq!(got["found"], json!(true), "{got}");
    assert_eq!(got["values"], json!(["world"]), "{got}");
    let visits = client(
        &dir,
        base,
        &["counter", "get", "demo/visits", "--r", "3", "--json"],
    );
    visits.success();
    assert_eq!(visits.json()["value"], json!(2), "{}", visits.stdout);
    interrupt_and_expect_clean_exit(&mut dev);
}

/// n1's HTTP API URL, from the banner.
fn n1_http_url(dev: &Proc) -> String {
    let stderr = dev.stderr();
    let Some(at) = stderr.find(N1_HTTP) else {
        panic!("the banner names no HTTP URL for n1; stderr:\n{stderr}");
    };
    stderr[at + N1_HTTP.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Runs `python3 ARGS` to completion within `PYTHON_TIMEOUT_MS`; `None` when python3 is
/// not installed.
fn python3(script_args: &[String]) -> Option<std::process::Output> {
    let child = std::process::Command::new("python3")
        .args(script_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PYTHON_TIMEOUT_MS);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(common::POLL_MS));
            }
            Ok(None) => {
                let _ = child.kill();
                let out = child.wait_with_output();
                panic!("the Python example still ran after {PYTHON_TIMEOUT_MS} ms: {out:?}");
            }
            Err(e) => panic!("cannot wait for python3: {e}"),
        }
    }
    Some(
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot read python3's output: {e}")),
    )
}

#[test]
fn the_python_example_puts_gets_resolves_siblings_and_counts_over_https() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/ringkv_http.py");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let dir = tmp.path().join("ringkv-dev");
    let (mut dev, _) = start_dev(&dir, None);
    let url = n1_http_url(&dev);
    let Some(out) = python3(&[
        script.display().to_string(),
        "--url".into(),
        url,
        "--certs".into(),
        dir.join("certs").display().to_string(),
    ]) else {
        println!("skipped: python3 is not installed, so the Python example cannot run");
        interrupt_and_expect_clean_exit(&mut dev);
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python example failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for line in [
        "put/get: hello from python",
        "siblings: ['apples', 'pears']",
        "resolved: apples,pears",
        "counter: 3",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    interrupt_and_expect_clean_exit(&mut dev);
}
