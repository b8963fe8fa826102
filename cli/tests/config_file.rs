//! Config files, `ringkv dev --nodes 1` and binary values, as users run them: real
//! processes on 127.0.0.1.
//!
//! - `ringkv dev --nodes 1` writes `DIR/n1.toml`, names it in its banner, serves the
//!   default commands (N = 1), and its banner's hint works from another directory's point
//!   of view (the `--certs` and `--node` it prints are the ones needed); after it stops,
//!   `ringkv node --config DIR/n1.toml` serves the same data.
//! - `put -`, `put --file` and `get --raw` round-trip bytes that are not UTF-8.
//! - An unknown key is refused with its name and the file's; environment variables
//!   override the file (the log format too) and flags override both.

mod common;

use std::path::Path;

use common::cluster::LISTENING;
use common::{
    Outcome, Proc, START_ATTEMPTS_MAX, START_TIMEOUT_MS, STOP_TIMEOUT_MS, Setup, WaitError, args,
    free_udp_ports, make_certs, ringkv, ringkv_with,
};

/// The last line of `ringkv dev`'s banner.
const DEV_UP: &str = "Ctrl-C stops the cluster";
/// Bytes that are not UTF-8 (and hold a NUL and a newline), as a binary value would.
const BINARY: &[u8] = &[0xff, 0x00, 0xfe, b'\n', 0x80, b'x', 0xc3];

/// `ringkv dev --nodes 1` on `dir`, up and named in its banner; with its base port.
fn start_dev_one(dir: &Path) -> (Proc, u16) {
    let mut last_failure = String::new();
    for _ in 0..START_ATTEMPTS_MAX {
        // n1 listens on base + 1: a port that was free a moment ago.
        let base = free_udp_ports(1)[0] - 1;
        let mut dev = Proc::spawn(
            "ringkv dev --nodes 1",
            &args(&[
                "dev",
                "--nodes",
                "1",
                "--base-port",
                &base.to_string(),
                "--http-base-port",
                "0",
                "--dir",
                &dir.display().to_string(),
            ]),
        );
        match dev.wait_for_stderr(DEV_UP, START_TIMEOUT_MS) {
            Ok(()) => return (dev, base),
            Err(WaitError::Exited(why)) => last_failure = why,
            Err(WaitError::TimedOut(why)) => panic!("{why}"),
        }
    }
    panic!("ringkv dev did not start in {START_ATTEMPTS_MAX} attempts: {last_failure}");
}

/// The words of the banner's hint command that ends with `tail` (`put demo/hello world`).
fn hint_command(banner: &str, tail: &str) -> Vec<String> {
    let Some(line) = banner.lines().find(|l| l.contains("from this directory")) else {
        panic!("no hint line in the banner:\n{banner}");
    };
    let Some(command) = line
        .split('`')
        .find(|part| part.starts_with("ringkv") && part.ends_with(tail))
    else {
        panic!("no `ringkv ... {tail}` in the hint: {line}");
    };
    // The temp dir's path holds no spaces, so the hint needs no quotes here.
    command
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A client command with the given flags (`--certs`, `--node`) appended.
fn client(flags: &[String], command: &[&str]) -> Outcome {
    let mut full = args(command);
    full.extend(flags.iter().cloned());
    ringkv(&full)
}

#[test]
fn a_one_node_dev_cluster_serves_default_commands_and_its_file_runs_the_node_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let dev_dir = dir.path().join("elsewhere");
    let (mut dev, base) = start_dev_one(&dev_dir);
    let banner = dev.stderr();
    let config = dev_dir.join("n1.toml");
    assert!(
        banner.contains(&format!("started from {})", config.display())),
        "{banner}"
    );
    assert!(banner.contains("N=1 W=1 R=1"), "{banner}");
    let text =
        std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("no {}: {e}", config.display()));
    assert!(text.contains("\nn = 1\n"), "{text}");

    // The hint's own command, with no --n: N = 1 is the cluster's default.
    let put = hint_command(&banner, "put demo/hello world");
    assert!(
        put.windows(2)
            .any(|w| w[0] == "--certs" && Path::new(&w[1]) == dev_dir.join("certs")),
        "{put:?}"
    );
    assert!(
        put.windows(2)
            .any(|w| w[0] == "--node" && w[1] == format!("127.0.0.1:{}", base + 1)),
        "{put:?}"
    );
    ringkv(&put).success();
    let flags: Vec<String> = hint_command(&banner, "status")
        .into_iter()
        .filter(|w| w != "status")
        .collect();
    let got = client(&flags, &["get", "demo/hello", "--json"]);
    got.success();
    assert_eq!(got.json()["values"], serde_json::json!(["world"]));

    // Binary values: stdin and a file in, raw bytes out.
    let mut put = args(&["put", "demo/bin", "-"]);
    put.extend(flags.iter().cloned());
    ringkv_with(
        &put,
        &Setup {
            stdin: Some(BINARY.to_vec()),
            ..Setup::default()
        },
    )
    .success();
    let raw = client(&flags, &["get", "demo/bin", "--raw"]);
    raw.success();
    assert_eq!(raw.stdout_bytes, BINARY, "raw bytes, no newline");
    let shown = client(&flags, &["get", "demo/bin"]);
    shown.success();
    assert!(shown.stderr.contains("not UTF-8"), "{}", shown.stderr);
    let file = dir.path().join("value.bin");
    let mut big: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    big.extend_from_slice(BINARY);
    std::fs::write(&file, &big).unwrap_or_else(|e| panic!("cannot write {file:?}: {e}"));
    client(
        &flags,
        &["put", "demo/file", "--file", &file.display().to_string()],
    )
    .success();
    let raw = client(&flags, &["get", "demo/file", "--raw"]);
    raw.success();
    assert!(raw.stdout_bytes == big, "the file's bytes come back");
    let missing = client(&flags, &["get", "demo/nothing", "--raw"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    assert!(missing.stdout_bytes.is_empty());
    let both = client(&flags, &["get", "demo/bin", "--raw", "--json"]);
    assert_eq!(both.code, Some(2), "{both:?}");

    dev.interrupt();
    let status = dev.wait_exit(STOP_TIMEOUT_MS);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", dev.stderr());

    // The same node from the file dev wrote, in a process of its own.
    let mut node = Proc::spawn(
        "ringkv node --config n1.toml",
        &args(&["node", "--config", &config.display().to_string()]),
    );
    if let Err(WaitError::Exited(why) | WaitError::TimedOut(why)) =
        node.wait_for_stderr(LISTENING, START_TIMEOUT_MS)
    {
        panic!("the node did not start from {}: {why}", config.display());
    }
    let got = client(&flags, &["get", "demo/hello", "--json"]);
    got.success();
    assert_eq!(got.json()["values"], serde_json::json!(["world"]));
}

#[test]
fn an_unknown_key_is_refused_with_its_name_and_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "name = \"n1\"\nlisten = \"127.0.0.1:7101\"\ndir = \"n1\"\nvnode = 128\n",
    )
    .unwrap_or_else(|e| panic!("cannot write {file:?}: {e}"));
    let refused = ringkv(&args(&["node", "--config", &file.display().to_string()]));
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stderr.contains("`vnode`"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&file.display().to_string()),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("line 4"), "{}", refused.stderr);
}

#[test]
fn variables_override_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    make_certs(&dir.path().join("certs"), 1);
    let env_dir = dir.path().join("from-env");
    let mut last_failure = String::new();
    for _ in 0..START_ATTEMPTS_MAX {
        let ports = free_udp_ports(3);
        let [file_port, env_port, flag_port] = [ports[0], ports[1], ports[2]];
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"n1\"\nlisten = \"127.0.0.1:{file_port}\"\ndir = \"from-file\"\ncerts = \"certs\"\nsync = \"always\"\nn = 1\nw = 1\nlog_format = \"text\"\n"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {file:?}: {e}"));
        let setup = Setup {
            env: [
                ("RINGKV_LISTEN", format!("127.0.0.1:{env_port}")),
                ("RINGKV_DIR", env_dir.display().to_string()),
                ("RINGKV_SYNC", "none".to_owned()),
                ("RINGKV_LOG_FORMAT", "json".to_owned()),
                // The storage engine logs its start at info.
                ("RUST_LOG", "info".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            ..Setup::default()
        };
        let mut node = Proc::spawn_with(
            "ringkv node (file, env, flags)",
            &args(&[
                "node",
                "--config",
                &file.display().to_string(),
                "--listen",
                &format!("127.0.0.1:{flag_port}"),
            ]),
            &setup,
        );
        match node.wait_for_stderr(LISTENING, START_TIMEOUT_MS) {
            Ok(()) => {
                let log = node.stderr();
                let expected = format!(
                    "listening on 127.0.0.1:{flag_port} (data in {}, sync=none, default n=1 w=1 r=1)",
                    env_dir.display()
                );
                assert!(log.contains(&expected), "{expected}\nnot in:\n{log}");
                let json_events = log
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|event| event.get("level").is_some())
                    .count();
                assert!(json_events > 0, "no JSON log line in:\n{log}");
                let flags = args(&[
                    "--node",
                    &format!("127.0.0.1:{flag_port}"),
                    "--certs",
                    &dir.path().join("certs").display().to_string(),
                ]);
                client(&flags, &["put", "k/v", "layered"]).success();
                let got = client(&flags, &["get", "k/v", "--json"]);
                got.success();
                assert_eq!(got.json()["values"], serde_json::json!(["layered"]));
                assert!(env_dir.is_dir(), "the data went where RINGKV_DIR said");
                assert!(!dir.path().join("from-file").exists());
                return;
            }
            Err(WaitError::Exited(why)) => last_failure = why,
            Err(WaitError::TimedOut(why)) => panic!("{why}"),
        }
    }
    panic!("the node did not start in {START_ATTEMPTS_MAX} attempts: {last_failure}");
}
