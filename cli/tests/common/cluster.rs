//! A cluster of `ringkv node` processes with static peers, one OS process per node, so a
//! test can SIGKILL any of them and restart it on the same port and data directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::{
    Outcome, Proc, START_ATTEMPTS_MAX, START_TIMEOUT_MS, STOP_TIMEOUT_MS, WaitError, args,
    free_udp_ports, make_certs, ringkv,
};

/// What `ringkv node` prints on stderr once it serves requests.
pub const LISTENING: &str = "listening on";
/// What precedes the HTTP API's URL in `ringkv node`'s start-up line.
pub const HTTP_ON: &str = "HTTP API on ";

/// One member of a [`Cluster`].
#[derive(Debug)]
pub struct ClusterNode {
    pub name: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Joins through this member's address instead of the static peer list.
    pub seed: Option<SocketAddr>,
    /// `None` while the node is stopped.
    proc: Option<Proc>,
}

/// Nodes `n1..nK` on ephemeral 127.0.0.1 ports, certificates and data in a temp dir.
#[derive(Debug)]
pub struct Cluster {
    pub certs: PathBuf,
    pub nodes: Vec<ClusterNode>,
    /// Every node also serves its HTTP API (`--http 127.0.0.1:0`).
    http: bool,
    /// Flags every node gets besides the harness's own.
    extra_args: Vec<String>,
    // Last, so the processes are killed before their directories are removed.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `count` nodes and waits until each says it is listening.
    pub fn start(count: usize) -> Cluster {
        Cluster::start_with(count, false, Vec::new())
    }

    /// Starts `count` nodes that also serve the HTTP API, each on an ephemeral port (see
    /// [`Cluster::http_url`]).
    pub fn start_http(count: usize) -> Cluster {
        Cluster::start_with(count, true, Vec::new())
    }

    /// As [`Cluster::start_http`], every node also given `extra` flags.
    pub fn start_http_with(count: usize, extra: Vec<String>) -> Cluster {
        Cluster::start_with(count, true, extra)
    }

    fn start_with(count: usize, http: bool, extra_args: Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
        let certs = dir.path().join("certs");
        make_certs(&certs, count);
        let mut cluster = Cluster {
            certs,
            nodes: Vec::new(),
            http,
            extra_args,
            dir,
        };
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            cluster.nodes = free_udp_ports(count)
                .into_iter()
                .enumerate()
                .map(|(i, port)| {
                    let name = format!("n{}", i + 1);
                    ClusterNode {
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        data_dir: cluster.dir.path().join(&name),
                        name,
                        seed: None,
                        proc: None,
                    }
                })
                .collect();
            match cluster.spawn_all() {
                Ok(()) => return cluster,
                // A port was taken between choosing and binding it: all again, new ports
                // (dropping the old nodes kills the ones that did start).
                Err(WaitError::Exited(why)) => last_failure = why,
                Err(WaitError::TimedOut(why)) => panic!("{why}"),
            }
        }
        panic!(
            "no {count}-node cluster started in {START_ATTEMPTS_MAX} attempts; last failure: {last_failure}"
        );
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// SIGKILLs node `i` and reaps it: the crash a power cut or an OOM kill gives.
    pub fn kill(&mut self, i: usize) {
        match self.nodes[i].proc.take() {
            Some(mut proc) => proc.kill(),
            None => panic!("{} is not running", self.nodes[i].name),
        }
    }

    /// Ctrl-C (SIGINT) to node `i`; returns its exit status and stdout once it exited.
    pub fn interrupt(&mut self, i: usize) -> (ExitStatus, String) {
        let Some(mut proc) = self.nodes[i].proc.take() else {
            panic!("{} is not running", self.nodes[i].name);
        };
        proc.interrupt();
        match proc.wait_exit(STOP_TIMEOUT_MS) {
            Some(status) => (status, proc.stdout()),
            None => panic!(
                "{} still runs {STOP_TIMEOUT_MS} ms after SIGINT; stderr:\n{}",
                self.nodes[i].name,
                proc.stderr()
            ),
        }
    }

    /// Starts node `i` again on its old port and data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].proc.is_none(),
            "{} is still running",
            self.nodes[i].name
        );
        let mut last_failure = String::new();
        // The port cannot change (the peers know it), so a port briefly held by another
        // process can only be waited out by trying again.
        for _ in 0..START_ATTEMPTS_MAX {
            let mut proc = self.spawn_node(i);
            match proc.wait_for_stderr(LISTENING, START_TIMEOUT_MS) {
                Ok(()) => {
                    self.nodes[i].proc = Some(proc);
                    return;
                }
                Err(WaitError::Exited(why)) => last_failure = why,
                Err(WaitError::TimedOut(why)) => panic!("{why}"),
            }
        }
        panic!("{} did not restart: {last_failure}", self.nodes[i].name);
    }

    /// Starts a new node that joins through node `seed` with `ringkv node --seed`;
    /// returns its index.
    pub fn join(&mut self, seed: usize) -> usize {
        let i = self.nodes.len();
        let name = format!("n{}", i + 1);
        let certs = self.certs.display().to_string();
        ringkv(&args(&["certs", "issue", "--dir", &certs, "--name", &name])).success();
        let seed_addr = self.addr(seed);
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            let port = free_udp_ports(1)[0];
            let node = ClusterNode {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                data_dir: self.dir.path().join(&name),
                name: name.clone(),
                seed: Some(seed_addr),
                proc: None,
            };
            if self.nodes.len() > i {
                self.nodes[i] = node;
            } else {
                self.nodes.push(node);
            }
            let mut proc = self.spawn_node(i);
            match proc.wait_for_stderr(LISTENING, START_TIMEOUT_MS) {
                Ok(()) => {
                    self.nodes[i].proc = Some(proc);
                    return i;
                }
                Err(WaitError::Exited(why)) => last_failure = why,
                Err(WaitError::TimedOut(why)) => panic!("{why}"),
            }
        }
        panic!("{name} did not start: {last_failure}");
    }

    /// Waits until node `i` exits by itself; its exit status and stderr.
    pub fn wait_exit(&mut self, i: usize, timeout_ms: u64) -> (Option<ExitStatus>, String) {
        let Some(mut proc) = self.nodes[i].proc.take() else {
            panic!("{} is not running", self.nodes[i].name);
        };
        let status = proc.wait_exit(timeout_ms);
        let stderr = proc.stderr();
        if status.is_none() {
            self.nodes[i].proc = Some(proc);
        }
        (status, stderr)
    }

    /// Runs a client command against node `i`: `ringkv ARGS --node ADDR --certs DIR`.
    pub fn client(&self, i: usize, command: &[&str]) -> Outcome {
        let mut full = args(command);
        full.extend(args(&[
            "--node",
            &self.addr(i).to_string(),
            "--certs",
            &self.certs.display().to_string(),
        ]));
        ringkv(&full)
    }

    /// Member states (`up`, `suspect`, `down`) as node `i` reports them in `status --json`.
    pub fn states_seen_by(&self, i: usize) -> BTreeMap<String, String> {
        let status = self.client(i, &["status", "--json"]);
        status.success();
        let json = status.json();
        let Some(nodes) = json["nodes"].as_array() else {
            panic!("status --json has no \"nodes\" array: {json}");
        };
        nodes
            .iter()
            .map(|n| match (n["name"].as_str(), n["state"].as_str()) {
                (Some(name), Some(state)) => (name.to_owned(), state.to_owned()),
                _ => panic!("status --json node without a name or state: {n}"),
            })
            .collect()
    }

    /// Node `i`'s HTTP API base URL, as its start-up line names it.
    pub fn http_url(&self, i: usize) -> String {
        let log = self.log(i);
        let Some(start) = log.find(HTTP_ON) else {
            panic!(
                "{} does not say where it serves HTTP; stderr:\n{log}",
                self.name(i)
            );
        };
        let rest = &log[start + HTTP_ON.len()..];
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// What node `i` wrote to stderr (empty while it is stopped).
    pub fn log(&self, i: usize) -> String {
        self.nodes[i]
            .proc
            .as_ref()
            .map(Proc::stderr)
            .unwrap_or_default()
    }

    fn spawn_all(&mut self) -> Result<(), WaitError> {
        for i in 0..self.nodes.len() {
            let proc = self.spawn_node(i);
            self.nodes[i].proc = Some(proc);
        }
        for node in &mut self.nodes {
            if let Some(proc) = node.proc.as_mut() {
                proc.wait_for_stderr(LISTENING, START_TIMEOUT_MS)?;
            }
        }
        Ok(())
    }

    fn spawn_node(&self, i: usize) -> Proc {
        let node = &self.nodes[i];
        let mut command = args(&[
            "node",
            "--name",
            &node.name,
            "--listen",
            &node.addr.to_string(),
            "--dir",
            &node.data_dir.display().to_string(),
            "--certs",
            &self.certs.display().to_string(),
        ]);
        if self.http {
            command.extend(args(&["--http", "127.0.0.1:0"]));
        }
        command.extend(self.extra_args.iter().cloned());
        if let Some(seed) = node.seed {
            command.push("--seed".to_owned());
            command.push(seed.to_string());
        } else {
            // Every static node gets the same list of the static nodes; each one skips
            // its own entry.
            for peer in self.nodes.iter().filter(|p| p.seed.is_none()) {
                command.push("--peer".to_owned());
                command.push(format!("{}={}", peer.name, peer.addr));
            }
        }
        Proc::spawn(&format!("node {}", node.name), &command)
    }
}
