//! `ringkv bench` end to end: the real binary against a real cluster of in-process nodes
//! on 127.0.0.1 ephemeral ports, every request over QUIC with mutual TLS.
//!
//! These tests check what the tool reports, never how fast anything is: timing
//! assertions on a shared machine would be flaky and prove nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ringkv::client::Client;
use ringkv::core::node::{MemberSpec, NodeConfig};
use ringkv::net::driver::{NodeHandle, NodeOptions, bind_node, start_bound};
use ringkv::net::{CertStore, Role};
use ringkv::storage::SyncMode;
use serde_json::Value;

/// Longest one `ringkv bench` run may take before the test fails.
const RUN_TIMEOUT_MS: u64 = 120_000;
/// Longest a test waits for the cluster to notice a killed node.
const WAIT_MS: u64 = 20_000;
/// Pause between two checks of a condition.
const POLL_MS: u64 = 50;
/// Partitions in test rings: small, so rings build fast.
const PARTITIONS: u32 = 64;

/// In-process nodes n1..nK with their certificates in a temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    certs: PathBuf,
    addrs: Vec<SocketAddr>,
    nodes: Vec<Option<NodeHandle>>,
}

impl Cluster {
    async fn start(count: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let store = CertStore::init(&certs).expect("CA");
        for i in 1..=count {
            store
                .issue(&format!("n{i}"), Role::Node)
                .expect("node cert");
        }
        store.issue("client", Role::Client).expect("client cert");
        let bound: Vec<_> = (1..=count)
            .map(|i| {
                let any_port: SocketAddr = "127.0.0.1:0".parse().expect("address");
                bind_node(any_port, &certs, &format!("n{i}")).expect("bind")
            })
            .collect();
        let addrs: Vec<SocketAddr> = bound.iter().map(|b| b.addr()).collect();
        let members: Vec<MemberSpec> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut m = MemberSpec::new(format!("n{}", i + 1), a.to_string());
                m.vnodes = 16;
                m
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, b) in bound.into_iter().enumerate() {
            let mut config = NodeConfig::new(format!("n{}", i + 1));
            config.partitions = PARTITIONS;
            config.probe_period_ms = 200;
            config.request_timeout_ms = 1_500;
            let options = NodeOptions {
                config,
                members: members.clone(),
                certs_dir: certs.clone(),
                data_dir: dir.path().join(format!("n{}", i + 1)),
                sync: SyncMode::Group,
            };
            nodes.push(Some(start_bound(b, options).await.expect("start")));
        }
        Cluster {
            dir,
            certs,
            addrs,
            nodes,
        }
    }

    /// Runs `ringkv --node n1 --certs ... --json bench ARGS` and returns its exit status,
    /// stdout and stderr.
    async fn bench(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringkv"));
        cmd.arg("--node")
            .arg(self.addrs[0].to_string())
            .arg("--certs")
            .arg(&self.certs)
            .arg("--json")
            .arg("bench")
            .args(args)
            .env_remove("RINGKV_NODE")
            .env_remove("RINGKV_CERTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.output();
        let output = tokio::time::timeout(Duration::from_millis(RUN_TIMEOUT_MS), run)
            .await
            .unwrap_or_else(|_| panic!("ringkv bench {args:?} did not finish in time"))
            .expect("ringkv runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Waits until node `observer` reports node `node` (0-based) in one of `states`.
    async fn wait_for_state(&self, observer: usize, node: usize, states: &[&str]) {
        let client = Client::connect(self.addrs[observer], &self.certs, "client")
            .await
            .expect("client connects");
        let name = format!("n{}", node + 1);
        for _ in 0..(WAIT_MS / POLL_MS) {
            if let Ok(status) = client.status().await {
                let seen = status
                    .members
                    .iter()
                    .find(|m| m.name.as_str() == name)
                    .map(|m| m.state.clone());
                if seen.as_deref().is_some_and(|s| states.contains(&s)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        panic!(
            "n{} never saw {name} in any of {states:?} within {WAIT_MS} ms",
            observer + 1
        );
    }

    async fn shutdown(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.shutdown().await.expect("clean shutdown");
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Stdout must hold exactly one JSON object.
fn one_object(stdout: &str) -> Value {
    let mut stream = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let value = stream
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout: {stdout:?}"))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"));
    assert!(stream.next().is_none(), "more than one value: {stdout:?}");
    assert!(value.is_object(), "{value}");
    value
}

fn number(json: &Value, field: &str) -> f64 {
    json[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {json}"))
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_reports_the_contract_fields_with_sane_values() {
    let cluster = Cluster::start(3).await;
    let plot = cluster.path("get.svg");
    let plot_arg = plot.to_string_lossy().into_owned();
    let latencies = cluster.path("get-latency.csv");
    let latencies_arg = latencies.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = cluster
        .bench(&[
            "--workload",
            "get",
            "--ops",
            "500",
            "--concurrency",
            "8",
            "--keys",
            "100",
            "--value-size",
            "64",
            "--out",
            &plot_arg,
            "--latency-out",
            &latencies_arg,
        ])
        .await;
    assert!(ok, "bench failed: {stderr}");
    let json = one_object(&stdout);
    assert_eq!(json["workload"], "get");
    assert_eq!(json["ops"], 500);
    assert_eq!(json["errors"], 0);
    assert_eq!(json["ok"], 500);
    assert_eq!(json["reads"], 500);
    assert_eq!(json["preloaded"], 100);
    assert_eq!(json["concurrency"], 8);
    let secs = number(&json, "secs");
    let rate = number(&json, "ops_per_sec");
    assert!(
        secs > 0.0 && secs < RUN_TIMEOUT_MS as f64 / 1000.0,
        "{json}"
    );
    // ops_per_sec is the rounded ok/secs, and secs itself is rounded to milliseconds:
    // up to half a millisecond off, which is more than 1% of a run shorter than 50 ms.
    let secs_rounding = 0.0005 / (secs - 0.0005);
    assert!(
        (rate - 500.0 / secs).abs() <= 1.0 + rate * secs_rounding.max(0.01),
        "{json}"
    );
    let (p50, p99, p999, max) = (
        number(&json, "p50_ms"),
        number(&json, "p99_ms"),
        number(&json, "p999_ms"),
        number(&json, "max_ms"),
    );
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{json}"
    );
    assert!(
        max <= secs * 1000.0,
        "a request cannot outlast the run: {json}"
    );
    for kind in ["quorum", "timeout", "refused", "other"] {
        assert_eq!(json["errors_by_kind"][kind], 0, "{kind}: {json}");
    }
    // Piped stderr gets no progress bar.
    assert!(
        !stderr.contains('\r'),
        "progress bar drawn on a pipe: {stderr:?}"
    );
    let svg = read_text(&plot);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 2);
    // One record per timed request (the preload is not timed), each successful and no
    // longer than the run.
    let records = read_text(&latencies);
    let mut lines = records.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("# run_start_unix_ms=")),
        "{records}"
    );
    assert_eq!(lines.next(), Some("start_us,latency_us,ok"), "{records}");
    let rows: Vec<Vec<u64>> = lines
        .by_ref()
        .take_while(|l| !l.starts_with('#'))
        .map(|l| {
            l.split(',')
                .map(|f| f.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 500, "{records}");
    let run_us = secs * 1_000_000.0;
    for row in &rows {
        assert_eq!(row.len(), 3, "{row:?}");
        assert_eq!(row[2], 1, "{row:?}");
        assert!(
            (row[0] + row[1]) as f64 <= run_us + 1_000.0,
            "{row:?} in {json}"
        );
    }
    assert!(records.ends_with("# dropped=0\n"), "{records}");

    // Every other workload, with the quorum flags; a write-only run preloads nothing.
    for (workload, reads, updates, rmws) in [
        ("put", Some(0), Some(200), Some(0)),
        ("mixed", None, None, Some(0)),
        ("ycsb-a", None, None, Some(0)),
        ("ycsb-b", None, None, Some(0)),
        ("ycsb-c", Some(200), Some(0), Some(0)),
        ("ycsb-f", Some(0), Some(0), Some(200)),
    ] {
        let (ok, stdout, stderr) = cluster
            .bench(&[
                "--workload",
                workload,
                "--ops",
                "200",
                "--concurrency",
                "4",
                "--keys",
                "50",
                "--n",
                "3",
                "--w",
                "2",
                "--r",
                "2",
            ])
            .await;
        assert!(ok, "{workload} failed: {stderr}");
        let json = one_object(&stdout);
        assert_eq!(json["workload"], workload);
        assert_eq!(
            (json["ops"].as_u64(), json["errors"].as_u64()),
            (Some(200), Some(0)),
            "{json}"
        );
        let counts = [&json["reads"], &json["updates"], &json["rmws"]].map(Value::as_u64);
        assert_eq!(counts.iter().flatten().sum::<u64>(), 200, "{json}");
        for (field, want) in [("reads", reads), ("updates", updates), ("rmws", rmws)] {
            if let Some(want) = want {
                assert_eq!(json[field], want, "{workload} {field}: {json}");
            }
        }
        let preloaded = if workload == "put" { 0 } else { 50 };
        assert_eq!(json["preloaded"], preloaded, "{json}");
        assert!(
            number(&json, "p50_ms") <= number(&json, "p999_ms"),
            "{json}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_node_is_counted_as_quorum_errors_and_the_run_still_reports() {
    let mut cluster = Cluster::start(3).await;
    if let Some(n3) = cluster.nodes[2].take() {
        n3.kill().await;
    }
    // Once n1 no longer sees n3 up (suspected after a failed send, or down), a strict
    // W=3 write, which needs n3's ack on every key of a 3-node cluster, fails fast.
    cluster.wait_for_state(0, 2, &["suspect", "down"]).await;
    let (ok, stdout, stderr) = cluster
        .bench(&[
            "--workload",
            "put",
            "--ops",
            "40",
            "--concurrency",
            "4",
            "--keys",
            "20",
            "--n",
            "3",
            "--w",
            "3",
            "--strict",
            "--timeout-ms",
            "500",
        ])
        .await;
    assert!(ok, "a run with failed requests still reports: {stderr}");
    let json = one_object(&stdout);
    assert_eq!(json["workload"], "put");
    assert_eq!(json["ops"], 40);
    assert_eq!(json["errors"], 40, "{json}");
    assert_eq!(json["ok"], 0);
    assert_eq!(json["errors_by_kind"]["quorum"], 40, "{json}");
    assert_eq!(json["errors_by_kind"]["timeout"], 0, "{json}");
    let sample = json["error_samples"]["quorum"].as_str().unwrap_or_default();
    assert!(
        sample.contains("n3"),
        "the quorum error names the missing node: {sample}"
    );
    assert_eq!(
        json["p99_ms"], 0.0,
        "no successful request, no latency: {json}"
    );

    // W=2 without --strict still succeeds with n3 down: the errors were n3's absence.
    let (ok, stdout, stderr) = cluster
        .bench(&[
            "--workload",
            "put",
            "--ops",
            "40",
            "--concurrency",
            "4",
            "--n",
            "3",
            "--w",
            "2",
        ])
        .await;
    assert!(ok, "{stderr}");
    let json = one_object(&stdout);
    assert_eq!(
        (json["ops"].as_u64(), json["errors"].as_u64()),
        (Some(40), Some(0)),
        "{json}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_bound_ends_the_run_and_the_human_report_is_a_table() {
    let cluster = Cluster::start(1).await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringkv"));
    cmd.arg("--node")
        .arg(cluster.addrs[0].to_string())
        .arg("--certs")
        .arg(&cluster.certs)
        .args([
            "bench",
            "--workload",
            "ycsb-b",
            "--duration-s",
            "1",
            "--concurrency",
            "4",
            "--keys",
            "20",
            "--n",
            "1",
            "--w",
            "1",
            "--r",
            "1",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_millis(RUN_TIMEOUT_MS), cmd.output())
        .await
        .expect("a 1-second run finishes")
        .expect("ringkv runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "workload     ycsb-b",
        "ops          ",
        "throughput   ",
        "latency      p50 ",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
    assert!(stdout.contains("n/w/r 1/1/1"), "{stdout}");
    let secs: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ops          "))
        .and_then(|rest| rest.split(" in ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no duration in:\n{stdout}"));
    // The clock stops issuing at 1 s; requests in flight then still finish.
    assert!((1.0..30.0).contains(&secs), "{secs} s:\n{stdout}");
    cluster.shutdown().await;
}
