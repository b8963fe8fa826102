//! A harness for testing the `ringkv` binary as users run it: separate OS processes,
//! real certificates from `ringkv certs`, 127.0.0.1 only.
//!
//! The library's own integration tests drive nodes in-process; these tests exist to catch
//! what only shows from outside — exit codes, stderr sentences, `--json` shapes, signals,
//! and a process dying without a chance to clean up. Every wait here is bounded, and every
//! child is killed when its guard drops, so a failing test never leaves nodes behind.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod cluster;

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test, built by cargo before the tests run.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringkv");
/// Longest one short-lived command (a client request, `certs`) may take.
pub const COMMAND_TIMEOUT_MS: u64 = 20_000;
/// Longest a node or a dev cluster may take to say it is listening.
pub const START_TIMEOUT_MS: u64 = 20_000;
/// Longest a process may take to exit after it was asked to stop.
pub const STOP_TIMEOUT_MS: u64 = 20_000;
/// Longest any test waits for a condition of the cluster to become true.
pub const WAIT_MS: u64 = 20_000;
/// Pause between two checks of a condition.
pub const POLL_MS: u64 = 50;
/// Times a start is retried with fresh ports when a port was taken meanwhile.
pub const START_ATTEMPTS_MAX: usize = 5;
/// Bytes of a child's output kept in a panic message.
pub const LOG_TAIL_BYTES_MAX: usize = 4_000;

/// Which pipe of a child a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// What the pipe readers report.
#[derive(Debug)]
enum Event {
    Line(Stream, String),
    Closed(Stream),
}

/// Why a process did not reach the line a test waited for.
#[derive(Debug)]
pub enum WaitError {
    /// It exited first (for a node: usually its port was taken).
    Exited(String),
    TimedOut(String),
}

/// A running `ringkv` process: killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    events: Receiver<Event>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout_open: bool,
    stderr_open: bool,
}

/// How a finished command ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: String,
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    /// Stdout as text (bytes that are not UTF-8 shown lossily); `stdout_bytes` has them.
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

/// What a spawned `ringkv` gets besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Environment variables set for it.
    pub env: Vec<(String, String)>,
    /// Bytes on its stdin, then end of file (none: stdin is closed at once).
    pub stdin: Option<Vec<u8>>,
    /// Another program to run instead of `ringkv` (for example `sh` with a script).
    pub program: Option<String>,
}

impl Proc {
    /// Starts `ringkv ARGS`, with the client environment variables removed so a developer's
    /// shell cannot redirect the test.
    pub fn spawn(label: &str, args: &[String]) -> Proc {
        Proc::spawn_with(label, args, &Setup::default())
    }

    /// [`Proc::spawn`] with environment variables and bytes on stdin.
    pub fn spawn_with(label: &str, args: &[String], setup: &Setup) -> Proc {
        let mut command = Command::new(setup.program.as_deref().unwrap_or(BIN));
        command.args(args);
        // Every variable a node or a client reads, so the developer's shell cannot
        // redirect the test.
        for (var, _) in std::env::vars_os() {
            let ours = var
                .to_str()
                .is_some_and(|v| v.starts_with("RINGKV_") || v == "RUST_LOG");
            if ours {
                command.env_remove(var);
            }
        }
        command.envs(setup.env.iter().map(|(k, v)| (k, v)));
        let stdin = if setup.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} for {label}: {e}"));
        if let (Some(bytes), Some(mut pipe)) = (setup.stdin.clone(), child.stdin.take()) {
            // A writer thread, so a child that does not read cannot block the test; the
            // pipe closes (end of file) when the thread ends.
            thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&bytes);
            });
        }
        let (tx, events) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stdout.take() {
            pump(pipe, Stream::Stdout, Arc::clone(&stdout), tx.clone());
        }
        if let Some(pipe) = child.stderr.take() {
            pump(pipe, Stream::Stderr, Arc::clone(&stderr), tx);
        }
        Proc {
            label: label.to_owned(),
            child,
            events,
            stdout,
            stderr,
            stdout_open: true,
            stderr_open: true,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let bytes = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes()).into_owned()
    }

    /// Everything the process wrote to stdout so far, as bytes.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout_ms: u64) -> Result<(), WaitError> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            if !self.stderr_open {
                let status = self.child.wait().map(|s| s.to_string());
                return Err(WaitError::Exited(format!(
                    "{} exited ({}) before printing {needle:?}; stderr:\n{}",
                    self.label,
                    status.unwrap_or_else(|e| format!("status unknown: {e}")),
                    tail(&self.stderr())
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Line(Stream::Stderr, line)) if line.contains(needle) => return Ok(()),
                Ok(event) => self.note(event),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(WaitError::TimedOut(format!(
                        "{} did not print {needle:?} within {timeout_ms} ms; stderr:\n{}",
                        self.label,
                        tail(&self.stderr())
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.stdout_open = false;
                    self.stderr_open = false;
                }
            }
        }
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout_ms`.
    pub fn wait_exit(&mut self, timeout_ms: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        // Both pipes close when the process exits, so their readers are the exit signal
        // and no polling of `try_wait` is needed.
        while self.stdout_open || self.stderr_open {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.note(event),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        match self.child.wait() {
            Ok(status) => Some(status),
            Err(e) => panic!("cannot reap {}: {e}", self.label),
        }
    }

    /// SIGKILL: no clean shutdown, no flush, no goodbye to peers.
    pub fn kill(&mut self) {
        // Fails only when the process has already exited, which is what we want anyway.
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            panic!("cannot reap {} after SIGKILL: {e}", self.label);
        }
    }

    /// SIGINT, as Ctrl-C in a terminal sends it.
    pub fn interrupt(&self) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -INT {pid}`: {e}"));
        assert!(
            status.success(),
            "`kill -INT {pid}` ({}) failed: {status}",
            self.label
        );
    }

    fn note(&mut self, event: Event) {
        match event {
            Event::Line(..) => {}
            Event::Closed(Stream::Stdout) => self.stdout_open = false,
            Event::Closed(Stream::Stderr) => self.stderr_open = false,
        }
    }
}

impl Outcome {
    /// Asserts exit code 0 and returns `self` for chaining.
    pub fn success(&self) -> &Outcome {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstdout: {}\nstderr: {}",
            self.command,
            self.stdout,
            tail(&self.stderr)
        );
        self
    }

    /// Stdout parsed as the one JSON object `--json` promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON object ({e})\nstdout: {}\nstderr: {}",
                self.command,
                self.stdout,
                tail(&self.stderr)
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Errors mean the process is already gone; a destructor has nobody to tell.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringkv ARGS` to completion (bounded) and returns how it ended.
pub fn ringkv(args: &[String]) -> Outcome {
    ringkv_with(args, &Setup::default())
}

/// [`ringkv`] with environment variables and bytes on stdin.
pub fn ringkv_with(args: &[String], setup: &Setup) -> Outcome {
    let command = format!("ringkv {}", args.join(" "));
    let mut proc = Proc::spawn_with(&command, args, setup);
    let Some(status) = proc.wait_exit(COMMAND_TIMEOUT_MS) else {
        panic!(
            "`{command}` did not finish within {COMMAND_TIMEOUT_MS} ms; stderr:\n{}",
            tail(&proc.stderr())
        );
    };
    Outcome {
        code: status.code(),
        stdout: proc.stdout(),
        stdout_bytes: proc.stdout_bytes(),
        stderr: proc.stderr(),
        command,
    }
}

/// Owned arguments from string slices.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

/// A CA, node certificates `n1..nK` and a `client` certificate, made by `ringkv certs`.
pub fn make_certs(dir: &Path, nodes: usize) {
    let dir = dir.display().to_string();
    ringkv(&args(&["certs", "init", "--dir", &dir])).success();
    for i in 1..=nodes {
        let name = format!("n{i}");
        ringkv(&args(&["certs", "issue", "--dir", &dir, "--name", &name])).success();
    }
    ringkv(&args(&[
        "certs", "issue", "--dir", &dir, "--name", "client", "--client",
    ]))
    .success();
}

/// `count` distinct UDP ports that were free a moment ago on 127.0.0.1.
///
/// The sockets are held together so the ports differ, then dropped so a node can bind
/// them; another process may take one in between, so callers retry a failed start.
pub fn free_udp_ports(count: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..count)
        .map(|_| {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("cannot bind an ephemeral UDP port: {e}"))
        })
        .collect();
    sockets
        .iter()
        .map(|s| match s.local_addr() {
            Ok(addr) => addr.port(),
            Err(e) => panic!("a bound UDP socket has no address: {e}"),
        })
        .collect()
}

/// Checks `condition` every [`POLL_MS`] until it holds; panics after `timeout_ms`.
pub fn eventually(what: &str, timeout_ms: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if condition() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout_ms} ms waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// The last [`LOG_TAIL_BYTES_MAX`] bytes of `text`, so panic messages stay readable.
pub fn tail(text: &str) -> &str {
    if text.len() <= LOG_TAIL_BYTES_MAX {
        return text;
    }
    let mut start = text.len() - LOG_TAIL_BYTES_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Copies lines from a child's pipe into `log` and reports them, then reports the close.
fn pump(
    pipe: impl Read + Send + 'static,
    which: Stream,
    log: Arc<Mutex<Vec<u8>>>,
    tx: Sender<Event>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buf);
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    // The receiver is gone once the Proc is dropped; keep draining the
                    // pipe anyway so the child never blocks on a full one.
                    let _ = tx.send(Event::Line(which, line.trim_end().to_owned()));
                }
            }
        }
        let _ = tx.send(Event::Closed(which));
    });
}
