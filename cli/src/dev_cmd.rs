//! `ringkv dev`: a local cluster n1..nK in one process, on 127.0.0.1.
//!
//! Each node is started from a config file that `dev` writes first (`DIR/NAME.toml`) and
//! then reads back through the same code as `ringkv node --config`, so the files are a
//! tested, working example of a node's settings rather than documentation that can rot.
//! The quorum defaults follow the cluster's size (N = min(3, nodes), W = R = a majority),
//! so the default commands work on a one- or two-node cluster, and the banner's hint
//! carries the flags a client needs when `--dir` or `--base-port` are not the defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ringkv::storage::SyncMode;

use crate::certs_cmd::ensure_dev_certs;
use crate::cluster_cmds::{N_DEFAULT, NodePlan, start_planned, stop_all, wait_for_stop};
use crate::config::{ConfigError, NodeSettings};
use crate::error::CliError;
use crate::output::Rendered;
use crate::{DEFAULT_CERTS_DIR, DEFAULT_NODE, DevArgs, GlobalArgs};

/// One node of a dev cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    pub name: String,
    pub listen: SocketAddr,
    /// The HTTP API's TCP address: 127.0.0.1:(http-base-port + i).
    pub http: SocketAddr,
    /// `DIR/NAME`.
    pub data_dir: PathBuf,
    /// `DIR/NAME.toml`, the file the node is started from.
    pub config: PathBuf,
}

/// A local cluster as `ringkv dev` will start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlan {
    /// `--dir`: holds `certs/`, one data directory and one config file per node.
    pub dir: PathBuf,
    /// `DIR/certs`: the CA, `n1..nK` and `client`.
    pub certs: PathBuf,
    /// `n1..nK` on 127.0.0.1:(base-port + i).
    pub nodes: Vec<DevNode>,
    pub sync: SyncMode,
    /// Default N of every node: min(3, nodes).
    pub n: u8,
    /// Default W and R of every node: a majority of N.
    pub quorum: u8,
    /// `--http-read-token-file`, made absolute: every node's read-only token.
    pub read_token_file: Option<PathBuf>,
}

impl DevPlan {
    pub fn from_args(args: &DevArgs) -> Result<DevPlan, CliError> {
        let last_port = u32::from(args.base_port) + u32::from(args.nodes);
        if args.base_port == 0 || last_port > u32::from(u16::MAX) {
            return Err(CliError::Usage(format!(
                "--base-port {} with --nodes {} needs ports {}..={last_port}; pick a --base-port between 1 and {}",
                args.base_port,
                args.nodes,
                u32::from(args.base_port) + 1,
                u32::from(u16::MAX) - u32::from(args.nodes),
            )));
        }
        let last_http_port = u32::from(args.http_base_port) + u32::from(args.nodes);
        if last_http_port > u32::from(u16::MAX) {
            return Err(CliError::Usage(format!(
                "--http-base-port {} with --nodes {} needs ports {}..={last_http_port}; pick a --http-base-port between 1 and {}, or 0 for ports the system picks",
                args.http_base_port,
                args.nodes,
                u32::from(args.http_base_port) + 1,
                u32::from(u16::MAX) - u32::from(args.nodes),
            )));
        }
        let nodes = (1..=args.nodes)
            .map(|i| {
                let name = format!("n{i}");
                DevNode {
                    listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.base_port + u16::from(i))),
                    http: SocketAddr::from((
                        Ipv4Addr::LOCALHOST,
                        match args.http_base_port {
                            0 => 0,
                            base => base + u16::from(i),
                        },
                    )),
                    data_dir: args.dir.join(&name),
                    config: args.dir.join(format!("{name}.toml")),
                    name,
                }
            })
            .collect();
        let n = args.nodes.min(N_DEFAULT);
        Ok(DevPlan {
            certs: args.dir.join("certs"),
            dir: args.dir.clone(),
            nodes,
            sync: args.sync,
            n,
            quorum: n / 2 + 1,
            read_token_file: match &args.http_read_token_file {
                Some(path) => {
                    // Checked now, so a bad token stops dev before any node starts.
                    crate::cluster_cmds::read_token_file(Some(path))?;
                    Some(std::path::absolute(path).map_err(|e| {
                        CliError::Usage(format!("--http-read-token-file {}: {e}", path.display()))
                    })?)
                }
                None => None,
            },
        })
    }

    /// The config file of `node`: every member as a static peer, and paths relative to
    /// the file's directory, so it also works as `ringkv node --config FILE` from
    /// anywhere once `ringkv dev` is stopped.
    pub fn config_text(&self, node: &DevNode) -> String {
        let peers: Vec<toml::Value> = self
            .nodes
            .iter()
            .map(|n| toml::Value::String(format!("{}={}", n.name, n.listen)))
            .collect();
        let text = |s: String| toml::Value::String(s).to_string();
        format!(
            "# ringkv node {name}: written by `ringkv dev`, which starts the node from it and
# rewrites it at every start (copy it elsewhere to keep changes). With `ringkv dev`
# stopped, `ringkv node --config {path}` runs this node alone.
# Relative paths are taken from this file's directory. Every key has a RINGKV_KEY
# environment variable and a --key flag, which override the file (README: Config file).
name = {name_value}
listen = {listen}
dir = {dir}
certs = \"certs\"
peers = {peers}
http = {http}
sync = {sync}
# Default replicas and quorums of requests that do not say.
n = {n}
w = {quorum}
r = {quorum}
{token}",
            name = node.name,
            path = node.config.display(),
            name_value = text(node.name.clone()),
            listen = text(node.listen.to_string()),
            dir = text(node.name.clone()),
            peers = toml::Value::Array(peers),
            http = text(node.http.to_string()),
            sync = text(self.sync.to_string()),
            n = self.n,
            quorum = self.quorum,
            token = self
                .read_token_file
                .as_ref()
                .map(|p| format!(
                    "# The read-only bearer token of /, /metrics and /v1/status.\nhttp_read_token_file = {}\n",
                    text(p.display().to_string())
                ))
                .unwrap_or_default(),
        )
    }

    /// The flags a client command needs for this cluster, beyond the defaults: `--certs`
    /// unless it is `./ringkv-dev/certs`, `--node` unless n1 is `127.0.0.1:7101`.
    pub fn client_flags(&self) -> String {
        let mut flags = String::new();
        if self.certs != Path::new(DEFAULT_CERTS_DIR) {
            flags.push_str(" --certs ");
            flags.push_str(&shell_word(&self.certs.display().to_string()));
        }
        if let Some(first) = self.nodes.first()
            && first.listen.to_string() != DEFAULT_NODE
        {
            flags.push_str(&format!(" --node {}", first.listen));
        }
        flags
    }

    /// The banner's "what to type next" line.
    pub fn client_hint(&self, http_url: &str) -> String {
        let flags = self.client_flags();
        let certs = shell_word(&self.certs.display().to_string());
        format!(
            "in another terminal, from this directory: `ringkv{flags} put demo/hello world`, `ringkv{flags} get demo/hello`, `ringkv{flags} status`; over HTTP: `curl --cacert {certs}/ca.pem --cert {certs}/client.pem --key {certs}/client.key {http_url}/v1/buckets/demo/keys/hello`; Ctrl-C stops the cluster"
        )
    }

    /// Writes every node's config file into `--dir`.
    fn write_configs(&self) -> Result<(), ConfigError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(write_err(&self.dir))?;
        for node in &self.nodes {
            std::fs::write(&node.config, self.config_text(node))
                .map_err(write_err(&node.config))?;
        }
        Ok(())
    }
}

/// `ringkv dev`: validates the plan, creates missing certificates, writes each node's
/// config file, starts every node from its file, and runs until Ctrl-C.
pub async fn dev(_global: &GlobalArgs, args: &DevArgs) -> Result<Rendered, CliError> {
    let plan = DevPlan::from_args(args)?;
    let names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    let created = ensure_dev_certs(&plan.certs, &names)?;
    // Progress goes to stderr so `--json` output stays one object.
    if created.created_ca {
        eprintln!("created a cluster CA in {}", plan.certs.display());
    }
    if !created.issued.is_empty() {
        eprintln!(
            "issued certificates in {}: {}",
            plan.certs.display(),
            created.issued.join(", ")
        );
    }
    plan.write_configs()?;
    run_dev(plan).await
}

/// Starts every node of `plan` from its config file, in this process, until Ctrl-C;
/// then stops them cleanly.
async fn run_dev(plan: DevPlan) -> Result<Rendered, CliError> {
    let mut handles = Vec::new();
    for node in &plan.nodes {
        // The file alone, without the environment: `dev` owns every setting.
        let started = match NodeSettings::load(&node.config) {
            Ok(settings) => match NodePlan::from_settings(settings) {
                Ok(planned) => start_planned(&planned.plan).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        match started {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                stop_all(handles).await;
                return Err(e);
            }
        }
    }
    eprintln!(
        "ringkv dev: {} up ({}), data and certificates in {}; N={} W={} R={} by default",
        match handles.len() {
            1 => "1 node".to_owned(),
            count => format!("{count} nodes"),
        },
        plan.nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.listen))
            .collect::<Vec<_>>()
            .join(", "),
        plan.dir.display(),
        plan.n,
        plan.quorum,
        plan.quorum,
    );
    for (h, node) in handles.iter().zip(&plan.nodes) {
        let url = h.http_url().unwrap_or_default();
        eprintln!(
            "  {} HTTP API: {url} (status page {url}/, metrics {url}/metrics; started from {})",
            h.name(),
            node.config.display()
        );
    }
    if plan.read_token_file.is_some() {
        eprintln!(
            "  the read-only token opens the status page in a browser as URL/?token=TOKEN, and /metrics with `Authorization: Bearer TOKEN`"
        );
    }
    let first_url = handles
        .first()
        .and_then(|h| h.http_url())
        .unwrap_or_default();
    eprintln!("{}", plan.client_hint(&first_url));
    let stopped_by = wait_for_stop(&mut handles).await;
    let count = handles.len();
    stop_all(handles).await;
    match stopped_by {
        Ok(()) => Ok(Rendered::new(
            serde_json::json!({"stopped": count}),
            format!(
                "stopped {count} nodes cleanly; `ringkv dev` again restarts them with their data"
            ),
        )),
        Err(e) => Err(e),
    }
}

/// `text` as one word of a POSIX shell command: as is when it is plain, else in single
/// quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_args(nodes: u8, base_port: u16, dir: &str) -> DevArgs {
        DevArgs {
            nodes,
            base_port,
            http_base_port: crate::DEV_HTTP_BASE_PORT_DEFAULT,
            dir: PathBuf::from(dir),
            sync: SyncMode::Group,
            http_read_token_file: None,
        }
    }

    #[test]
    fn dev_nodes_are_named_and_placed_from_the_base_port() {
        let plan = DevPlan::from_args(&dev_args(3, 7100, "dev")).unwrap();
        assert_eq!(plan.certs, PathBuf::from("dev/certs"));
        let summary: Vec<(String, String, PathBuf, PathBuf)> = plan
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.listen.to_string(),
                    n.data_dir.clone(),
                    n.config.clone(),
                )
            })
            .collect();
        let expected: Vec<(String, String, PathBuf, PathBuf)> = (1..=3)
            .map(|i| {
                (
                    format!("n{i}"),
                    format!("127.0.0.1:710{i}"),
                    PathBuf::from(format!("dev/n{i}")),
                    PathBuf::from(format!("dev/n{i}.toml")),
                )
            })
            .collect();
        assert_eq!(summary, expected);
    }

    #[test]
    fn dev_ports_past_65535_or_at_zero_are_usage_errors() {
        assert!(DevPlan::from_args(&dev_args(3, u16::MAX - 3, "dev")).is_ok());
        for base in [u16::MAX - 2, 0] {
            let err = DevPlan::from_args(&dev_args(3, base, "dev")).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{err}");
            assert!(err.to_string().contains("pick a --base-port"), "{err}");
        }
    }

    #[test]
    fn quorum_defaults_follow_the_cluster_size() {
        for (nodes, n, quorum) in [(1, 1, 1), (2, 2, 2), (3, 3, 2), (5, 3, 2)] {
            let plan = DevPlan::from_args(&dev_args(nodes, 7100, "dev")).unwrap();
            assert_eq!((plan.n, plan.quorum), (n, quorum), "{nodes} nodes");
        }
    }

    #[test]
    fn each_config_file_plans_the_node_dev_starts() {
        let dir = tempfile::tempdir().unwrap();
        let args = dev_args(3, 7100, &dir.path().display().to_string());
        let plan = DevPlan::from_args(&args).unwrap();
        plan.write_configs().unwrap();
        for node in &plan.nodes {
            let settings = NodeSettings::load(&node.config).unwrap();
            let planned = NodePlan::from_settings(settings).unwrap().plan;
            assert_eq!(planned.name, node.name);
            assert_eq!(planned.listen, node.listen);
            assert_eq!(planned.data_dir, node.data_dir);
            assert_eq!(planned.certs, plan.certs);
            assert_eq!(planned.peers.len(), 2, "every other member");
            assert_eq!(planned.http.map(|h| h.listen), Some(node.http));
            assert_eq!((planned.n, planned.w, planned.r), (3, 2, 2));
        }
        let one =
            DevPlan::from_args(&dev_args(1, 7100, &dir.path().display().to_string())).unwrap();
        one.write_configs().unwrap();
        let planned = NodePlan::from_settings(NodeSettings::load(&one.nodes[0].config).unwrap())
            .unwrap()
            .plan;
        assert_eq!((planned.n, planned.w, planned.r), (1, 1, 1));
    }

    #[test]
    fn the_hint_adds_certs_and_node_only_when_they_are_not_the_defaults() {
        let default = DevPlan::from_args(&dev_args(3, 7100, crate::DEFAULT_DEV_DIR)).unwrap();
        assert_eq!(default.client_flags(), "");
        assert!(
            default
                .client_hint("https://127.0.0.1:8101")
                .contains("`ringkv put demo/hello world`")
        );
        let elsewhere = DevPlan::from_args(&dev_args(3, 7100, "/tmp/my dev")).unwrap();
        assert_eq!(elsewhere.client_flags(), " --certs '/tmp/my dev/certs'");
        let hint = elsewhere.client_hint("https://127.0.0.1:8101");
        assert!(
            hint.contains("`ringkv --certs '/tmp/my dev/certs' get demo/hello`"),
            "{hint}"
        );
        assert!(
            hint.contains("--cacert '/tmp/my dev/certs'/ca.pem"),
            "{hint}"
        );
        let moved = DevPlan::from_args(&dev_args(2, 9000, "/srv/dev")).unwrap();
        assert_eq!(
            moved.client_flags(),
            " --certs /srv/dev/certs --node 127.0.0.1:9001"
        );
    }

    #[test]
    fn shell_words_quote_only_when_needed() {
        assert_eq!(shell_word("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
