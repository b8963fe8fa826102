//! What an operator watches a cluster by, against real `ringkv node` processes: the
//! Prometheus metrics at `/metrics`, the read-only token (which opens `/`, `/metrics` and
//! the status routes, never data), and the live status page loaded in headless Chromium.
//!
//! The Chromium test needs Debian's `chromium` (`.ci/run` installs it); without it the
//! test fails with a sentence saying so instead of passing silently.

mod common;
#[path = "common/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{POLL_MS, WAIT_MS, args};
use http::HttpClient;
use hyper::Method;

/// The read-only token the nodes are started with.
const TOKEN: &str = "status-page-test-token-0123456789";
/// Longest one Chromium run may take.
const CHROMIUM_TIMEOUT_MS: u64 = 90_000;
/// Virtual time a Chromium run lets the page's script run: several refreshes.
const VIRTUAL_TIME_BUDGET_MS: u64 = 7_000;
/// Writes to one key before the page loads, so it shows as the hottest.
const HOT_KEY_WRITES: usize = 20;
/// The browser, from `RINGKV_CHROMIUM` or `PATH`.
const CHROMIUM_NAMES: &[&str] = &["chromium", "chromium-browser"];

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let token_file = dir.path().join("read-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))
        .unwrap_or_else(|e| panic!("cannot write the token file: {e}"));
    let cluster = Cluster::start_http_with(
        3,
        args(&["--http-read-token-file", &token_file.display().to_string()]),
    );
    // The nodes read the file at start; it may go now.
    drop(dir);
    cluster
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Polls `check` every [`POLL_MS`] until it returns `Some`, at most [`WAIT_MS`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(found) => return found,
            Err(last) if start.elapsed() > Duration::from_millis(WAIT_MS) => {
                panic!("{what} did not happen within {WAIT_MS} ms; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(POLL_MS)),
        }
    }
}

/// The value of the sample `series` (name and labels exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_are_served_per_node_and_the_token_opens_only_read_only_routes() {
    let cluster = start_cluster();
    let with_cert = HttpClient::new(&cluster.http_url(0), &cluster.certs, Some("client"));
    let anonymous = HttpClient::new(&cluster.http_url(0), &cluster.certs, None);
    let auth = bearer();
    let token = [("authorization", auth.as_str())];

    // A write and a read through n1, as a client with a certificate.
    with_cert
        .send(Method::PUT, "/v1/buckets/demo/keys/k", &[], b"v".to_vec())
        .expect(204);
    with_cert.get("/v1/buckets/demo/keys/k").expect(200);
    with_cert.get("/v1/buckets/demo/keys/missing").expect(404);

    let metrics = with_cert.get("/metrics").expect(200);
    assert_eq!(
        metrics.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    for series in [
        r#"ringkv_requests_total{role="coordinator",op="put",policy="siblings",outcome="ok"}"#,
        r#"ringkv_requests_total{role="coordinator",op="get",policy="siblings",outcome="ok"}"#,
        r#"ringkv_requests_total{role="coordinator",op="get",policy="none",outcome="not_found"}"#,
        r#"ringkv_request_duration_seconds_count{role="coordinator",op="put",policy="siblings",outcome="ok"}"#,
    ] {
        assert_eq!(sample(&text, series), Some(1.0), "{series} in:\n{text}");
    }
    assert!(text.contains("# TYPE ringkv_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE ringkv_fsync_duration_seconds histogram"));

    // The sampled gauges arrive within a sampling interval; the replicas count the
    // replicated write as replicas.
    wait_for("n1's metrics to show three members up", || {
        let text = with_cert.get("/metrics").expect(200).text();
        match sample(&text, r#"ringkv_members{state="up"}"#) {
            Some(3.0) if text.contains("ringkv_storage_bytes ") => Ok(()),
            other => Err(format!("members up {other:?}")),
        }
    });
    let replica = HttpClient::new(&cluster.http_url(1), &cluster.certs, Some("client"));
    wait_for("n2 to count a replicated write", || {
        let text = replica.get("/metrics").expect(200).text();
        let series = r#"ringkv_requests_total{role="replica",op="replicate",policy="siblings",outcome="ok"}"#;
        match sample(&text, series) {
            Some(n)
                if n >= 1.0 && text.contains("ringkv_object_bytes_bucket{policy=\"siblings\"") =>
            {
                Ok(())
            }
            other => Err(format!("{series} = {other:?}")),
        }
    });
    // n2 coordinated nothing: each node shows only its own figures.
    let n2 = replica.get("/metrics").expect(200).text();
    assert!(!n2.contains(r#"role="coordinator",op="put""#), "{n2}");

    // Without a certificate: the token opens the read-only routes, and nothing else.
    for path in ["/metrics", "/v1/status", "/v1/ring", "/v1/stats", "/"] {
        anonymous
            .send(Method::GET, path, &token, Vec::new())
            .expect(200);
        let refused = anonymous.get(path).expect(401);
        assert_eq!(refused.json()["code"], "unauthorized");
        assert!(refused.header("www-authenticate").is_some());
    }
    anonymous
        .send(Method::GET, &format!("/?token={TOKEN}"), &[], Vec::new())
        .expect(200);
    anonymous
        .send(Method::GET, "/v1/buckets/demo/keys/k", &token, Vec::new())
        .expect(401);
    anonymous
        .send(
            Method::PUT,
            "/v1/buckets/demo/keys/k",
            &token,
            b"x".to_vec(),
        )
        .expect(401);
    anonymous
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", "Bearer not-the-token-0123456789")],
            Vec::new(),
        )
        .expect(401);
    // The write above was refused before it reached the core. And the `/v1/stats` above
    // (which asks n2 and n3) left n1's peer links alone: this R=2 read needs them (it
    // failed with n2 and n3 "unreachable" when `/v1/stats` dialled them anew under n1's
    // certificate, which they took for a restart of n1).
    assert_eq!(
        with_cert.get("/v1/buckets/demo/keys/k").expect(200).text(),
        "v"
    );
}

#[test]
fn the_status_page_shows_every_node_in_headless_chromium_and_follows_a_stop() {
    let chromium = find_chromium();
    let mut cluster = start_cluster();
    let url = format!("{}/?token={TOKEN}", cluster.http_url(0));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let browser_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));

    // Some traffic, so the page has a hot key and distinct keys to show.
    let writer = HttpClient::new(&cluster.http_url(0), &cluster.certs, Some("client"));
    for i in 0..HOT_KEY_WRITES {
        writer
            .send(
                Method::PUT,
                "/v1/buckets/page/keys/hot",
                &[],
                i.to_string().into_bytes(),
            )
            .expect(204);
    }

    // All three members up, as n1 sees them once gossip settled.
    let dom = wait_for("the page to show n1, n2 and n3 up", || {
        let dom = run_chromium(&chromium, browser_dir.path(), &url, None)?;
        let states = member_states(&dom);
        if states == [("n1", "up"), ("n2", "up"), ("n3", "up")].map(owned) {
            Ok(dom)
        } else {
            Err(format!("{states:?}"))
        }
    });
    assert_refreshed(&dom);
    assert!(dom.contains("distinct keys"), "{dom}");
    // The stats poll ran too: the hot key is listed by name.
    assert!(dom.contains("<td>page/hot</td>"), "{dom}");
    let shot = shots.join("status-page-3-up.png");
    run_chromium(&chromium, browser_dir.path(), &url, Some(&shot))
        .unwrap_or_else(|e| panic!("the screenshot run failed: {e}"));
    assert_png(&shot);

    // n3 stops; the page (still served by n1) shows it suspect, then down.
    cluster.kill(2);
    let dom = wait_for("the page to show n3 no longer up", || {
        let dom = run_chromium(&chromium, browser_dir.path(), &url, None)?;
        let states = member_states(&dom);
        match states.iter().find(|(name, _)| name == "n3") {
            Some((_, state)) if state == "suspect" || state == "down" => Ok(dom),
            _ => Err(format!("{states:?}")),
        }
    });
    assert_refreshed(&dom);
    let states = member_states(&dom);
    assert!(states.contains(&owned(("n1", "up"))), "{states:?}");
    assert!(states.contains(&owned(("n2", "up"))), "{states:?}");
    let shot = shots.join("status-page-n3-stopped.png");
    run_chromium(&chromium, browser_dir.path(), &url, Some(&shot))
        .unwrap_or_else(|e| panic!("the screenshot run failed: {e}"));
    assert_png(&shot);
}

fn owned((a, b): (&str, &str)) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// The browser to test with; fails the test when there is none.
fn find_chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("RINGKV_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in CHROMIUM_NAMES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no chromium on PATH: this test loads the status page in headless Chromium; install it (`apt-get install -y chromium`, as .ci/run does) or point RINGKV_CHROMIUM at a Chromium binary"
    );
}

/// Loads `url` in a fresh headless Chromium, lets the page's script run for
/// [`VIRTUAL_TIME_BUDGET_MS`] of virtual time, and returns the DOM it built (or, with
/// `screenshot`, writes a PNG there and returns Chromium's output).
fn run_chromium(
    chromium: &Path,
    profile: &Path,
    url: &str,
    screenshot: Option<&Path>,
) -> Result<String, String> {
    let out_dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            // The nodes' certificates come from the test's own CA.
            "--ignore-certificate-errors",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"));
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let mut child = command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(file(&stdout_path)?)
        .stderr(file(&stderr_path)?)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > Duration::from_millis(CHROMIUM_TIMEOUT_MS) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {CHROMIUM_TIMEOUT_MS} ms");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(POLL_MS)),
            Err(e) => panic!("cannot wait for chromium: {e}"),
        }
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    if !status.success() {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        panic!("chromium failed ({status}); stderr:\n{stderr}");
    }
    Ok(stdout)
}

/// (node, state) of every row of the page's members table, from the dumped DOM.
fn member_states(dom: &str) -> Vec<(String, String)> {
    let Some(start) = dom.find(r#"<table id="members">"#) else {
        return Vec::new();
    };
    let table = &dom[start..];
    let table = &table[..table.find("</table>").unwrap_or(table.len())];
    table
        .split("<tr ")
        .skip(1)
        .filter_map(|row| {
            let node = attribute(row, "data-node")?;
            let state = attribute(row, "data-state")?;
            Some((node, state))
        })
        .collect()
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let rest = &tag[tag.find(&format!("{name}=\""))? + name.len() + 2..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The page's script ran its refresh at least twice (it counts on `<body>`).
fn assert_refreshed(dom: &str) {
    let count = attribute(dom, "data-refreshed")
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(count >= 2, "the page refreshed {count} times:\n{dom}");
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a screenshot ({} bytes)",
        path.display(),
        bytes.len()
    );
}
