//! `ringkv dev` and `ringkv node`: from command-line flags to a validated plan, then to
//! the node driver.
//!
//! Everything that can be decided without starting a node is decided here — names,
//! ports, data and certificate directories, static peers — so a bad command line fails
//! in a second with a usage error instead of half-starting a cluster. Running the nodes
//! is the driver's job (`ringkv::net::start_node`): see [`run_dev`] and [`run_node`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ringkv::net::http::ReadToken;
use ringkv::net::validate_name;
use ringkv::net::{HttpOptions, NodeHandle, NodeOptions, start_node};
use ringkv::storage::SyncMode;
use ringkv::{MemberSpec, NodeConfig};

use crate::certs_cmd::ensure_dev_certs;
use crate::error::CliError;
use crate::output::Rendered;
use crate::parse::PeerSpec;
use crate::{DevArgs, GlobalArgs, NodeArgs};

/// One node of a dev cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    pub name: String,
    pub listen: SocketAddr,
    /// The HTTP API's TCP address: 127.0.0.1:(http-base-port + i).
    pub http: SocketAddr,
    pub data_dir: PathBuf,
}

/// A local cluster as `ringkv dev` will start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlan {
    /// `--dir`: holds `certs/` and one data directory per node.
    pub dir: PathBuf,
    /// `DIR/certs`: the CA, `n1..nK` and `client`.
    pub certs: PathBuf,
    /// `n1..nK` on 127.0.0.1:(base-port + i).
    pub nodes: Vec<DevNode>,
    pub sync: SyncMode,
    /// The read-only token every node's HTTP API accepts, from `--http-read-token-file`.
    pub read_token: Option<ReadToken>,
}

/// One node as `ringkv node` will start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub name: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The global `--certs`: holds `ca.pem`, `NAME.pem` and `NAME.key`.
    pub certs: PathBuf,
    /// Static members other than this node, sorted by name.
    pub peers: Vec<PeerSpec>,
    /// Gossip seeds other than this node's own address, deduplicated.
    pub seeds: Vec<SocketAddr>,
    pub vnodes: u32,
    pub sync: SyncMode,
    /// The HTTP API, when `--http` is given.
    pub http: Option<HttpOptions>,
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
                    name,
                }
            })
            .collect();
        Ok(DevPlan {
            certs: args.dir.join("certs"),
            dir: args.dir.clone(),
            nodes,
            sync: args.sync,
            read_token: read_token_file(args.http_read_token_file.as_deref())?,
        })
    }

    /// The static member list every dev node gets: all of them.
    pub fn members(&self) -> Vec<MemberSpec> {
        self.nodes
            .iter()
            .map(|n| MemberSpec::new(n.name.clone(), n.listen.to_string()))
            .collect()
    }
}

impl NodePlan {
    pub fn from_args(global: &GlobalArgs, args: &NodeArgs) -> Result<NodePlan, CliError> {
        validate_name(&args.name).map_err(|e| CliError::Usage(format!("--name: {e}")))?;
        let mut by_name: BTreeMap<&str, SocketAddr> = BTreeMap::new();
        let mut names_by_addr: BTreeMap<SocketAddr, &str> = BTreeMap::new();
        names_by_addr.insert(args.listen, &args.name);
        for peer in &args.peers {
            if peer.name == args.name {
                // One static list can be handed to every node; its own entry must agree.
                if peer.addr != args.listen {
                    return Err(CliError::Usage(format!(
                        "--peer {peer} names this node, but --listen is {}; fix one of them",
                        args.listen
                    )));
                }
                continue;
            }
            if let Some(addr) = by_name.insert(&peer.name, peer.addr) {
                return Err(CliError::Usage(format!(
                    "--peer {} is given twice ({addr} and {}); give each member once",
                    peer.name, peer.addr
                )));
            }
            if let Some(other) = names_by_addr.insert(peer.addr, &peer.name) {
                return Err(CliError::Usage(format!(
                    "--peer {peer} uses the address of {other}; every member needs its own address"
                )));
            }
        }
        let peers = by_name
            .into_iter()
            .map(|(name, addr)| PeerSpec {
                name: name.to_owned(),
                addr,
            })
            .collect();
        let seeds: BTreeSet<SocketAddr> = args
            .seeds
            .iter()
            .copied()
            .filter(|seed| *seed != args.listen)
            .collect();
        Ok(NodePlan {
            name: args.name.clone(),
            listen: args.listen,
            data_dir: args.dir.clone(),
            certs: global.certs.clone(),
            peers,
            seeds: seeds.into_iter().collect(),
            vnodes: args.vnodes,
            sync: args.sync,
            http: match args.http {
                Some(listen) => Some(HttpOptions {
                    listen,
                    insecure: args.http_insecure,
                    read_token: read_token_file(args.http_read_token_file.as_deref())?,
                }),
                None => None,
            },
        })
    }
}

/// The read-only token in `path`, if one is given: the file's text without surrounding
/// whitespace.
pub fn read_token_file(path: Option<&Path>) -> Result<Option<ReadToken>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the read-only token file {}: {e}",
            path.display()
        ))
    })?;
    ReadToken::new(&text)
        .map(Some)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// `ringkv dev`: validates the plan, creates missing certificates, runs the cluster.
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
    run_dev(plan).await
}

/// `ringkv node`: validates the plan and runs the node.
pub async fn node(global: &GlobalArgs, args: &NodeArgs) -> Result<Rendered, CliError> {
    run_node(NodePlan::from_args(global, args)?).await
}

/// Runs every node of `plan` in this process until Ctrl-C, then stops them cleanly.
pub async fn run_dev(plan: DevPlan) -> Result<Rendered, CliError> {
    let members = plan.members();
    let mut handles = Vec::new();
    for node in &plan.nodes {
        let opts = NodeOptions {
            config: NodeConfig::new(node.name.clone()),
            members: members.clone(),
            certs_dir: plan.certs.clone(),
            data_dir: node.data_dir.clone(),
            sync: plan.sync,
        };
        let started = match start_node(node.listen, opts).await {
            Ok(mut h) => {
                let http = HttpOptions {
                    listen: node.http,
                    insecure: false,
                    read_token: plan.read_token.clone(),
                };
                let served = h.serve_http(&http).await;
                handles.push(h);
                served.map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            stop_all(handles).await;
            return Err(CliError::Node(format!(
                "cannot start {} on {} (HTTP {}): {e}",
                node.name, node.listen, node.http
            )));
        }
    }
    eprintln!(
        "ringkv dev: {} nodes up ({}), data and certificates in {}",
        handles.len(),
        plan.nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.listen))
            .collect::<Vec<_>>()
            .join(", "),
        plan.dir.display()
    );
    for h in &handles {
        if let Some(url) = h.http_url() {
            eprintln!(
                "  {} HTTP API: {url} (status page {url}/, metrics {url}/metrics)",
                h.name()
            );
        }
    }
    if plan.read_token.is_some() {
        eprintln!(
            "  the read-only token opens the status page in a browser as URL/?token=TOKEN, and /metrics with `Authorization: Bearer TOKEN`"
        );
    }
    let certs = plan.certs.display();
    eprintln!(
        "in another terminal, from this directory: `ringkv put demo/hello world`, `ringkv get demo/hello`, `ringkv status`; over HTTP: `curl --cacert {certs}/ca.pem --cert {certs}/client.pem --key {certs}/client.key {}/v1/buckets/demo/keys/hello`; Ctrl-C stops the cluster",
        handles
            .first()
            .and_then(NodeHandle::http_url)
            .unwrap_or_default()
    );
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

/// Runs the node of `plan` until Ctrl-C.
pub async fn run_node(plan: NodePlan) -> Result<Rendered, CliError> {
    let mut members: Vec<MemberSpec> = plan
        .peers
        .iter()
        .map(|p| {
            let mut m = MemberSpec::new(p.name.clone(), p.addr.to_string());
            // A static peer's vnode count is assumed equal to ours until its own record
            // arrives by gossip (the record carries its real count).
            m.vnodes = plan.vnodes;
            m
        })
        .collect();
    let mut me = MemberSpec::new(plan.name.clone(), plan.listen.to_string());
    me.vnodes = plan.vnodes;
    members.push(me);
    let mut config = NodeConfig::new(plan.name.clone());
    config.addr = plan.listen.to_string();
    config.seeds = plan.seeds.iter().map(ToString::to_string).collect();
    let opts = NodeOptions {
        config,
        members,
        certs_dir: plan.certs.clone(),
        data_dir: plan.data_dir.clone(),
        sync: plan.sync,
    };
    let mut handle = start_node(plan.listen, opts)
        .await
        .map_err(|e| CliError::Node(format!("cannot start {}: {e}", plan.name)))?;
    let http = match &plan.http {
        Some(http) => match handle.serve_http(http).await {
            Ok(_) => handle.http_url().map(|url| format!(", HTTP API on {url}")),
            Err(e) => {
                stop_all(vec![handle]).await;
                return Err(CliError::Node(format!("cannot start {}: {e}", plan.name)));
            }
        },
        None => None,
    };
    if plan.http.as_ref().is_some_and(|h| h.insecure) {
        eprintln!(
            "warning: the HTTP API is plain HTTP without client certificates: anyone who can reach it can read and write every key"
        );
    }
    eprintln!(
        "ringkv node {} listening on {}{} (data in {}, sync={}); Ctrl-C stops it",
        plan.name,
        handle.addr(),
        http.unwrap_or_default(),
        plan.data_dir.display(),
        plan.sync
    );
    let mut handles = vec![handle];
    let stopped_by = wait_for_stop(&mut handles).await;
    stop_all(handles).await;
    stopped_by.map(|()| {
        Rendered::new(
            serde_json::json!({"stopped": plan.name}),
            format!("node {} stopped cleanly", plan.name),
        )
    })
}

/// How often `dev` and `node` check that their nodes still run.
const NODE_CHECK_INTERVAL_MS: u64 = 500;

/// Waits for Ctrl-C (Ok) or for a node to stop by itself (its error).
async fn wait_for_stop(handles: &mut Vec<NodeHandle>) -> Result<(), CliError> {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(NODE_CHECK_INTERVAL_MS));
    // One Ctrl-C future for the whole wait: a fresh one per pass could miss a signal
    // that lands between two passes.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            r = &mut ctrl_c => {
                return r.map_err(|e| CliError::Node(format!("cannot wait for Ctrl-C: {e}")));
            }
            _ = tick.tick() => {
                if let Some(i) = handles.iter().position(NodeHandle::is_finished) {
                    let mut dead = handles.remove(i);
                    let name = dead.name().clone();
                    match dead.wait().await {
                        // A core that ends by itself without an error has left the
                        // cluster (`ringkv leave`): that is a clean stop.
                        Ok(()) => {
                            eprintln!("node {name} handed its partitions over and left the cluster");
                            if handles.is_empty() {
                                return Ok(());
                            }
                        }
                        Err(e) => return Err(CliError::Node(e.to_string())),
                    }
                }
            }
        }
    }
}

async fn stop_all(handles: Vec<NodeHandle>) {
    for h in handles {
        let name = h.name().clone();
        if let Err(e) = h.shutdown().await {
            eprintln!("node {name} did not stop cleanly: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_args(nodes: u8, base_port: u16) -> DevArgs {
        DevArgs {
            nodes,
            base_port,
            http_base_port: crate::DEV_HTTP_BASE_PORT_DEFAULT,
            dir: PathBuf::from("dev"),
            sync: SyncMode::Group,
            http_read_token_file: None,
        }
    }

    fn node_args(peers: &[&str], seeds: &[&str]) -> NodeArgs {
        NodeArgs {
            name: "n1".into(),
            listen: "127.0.0.1:7101".parse().unwrap(),
            dir: PathBuf::from("data/n1"),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            seeds: seeds.iter().map(|s| s.parse().unwrap()).collect(),
            vnodes: 64,
            sync: SyncMode::Group,
            http: None,
            http_insecure: false,
            http_read_token_file: None,
        }
    }

    fn global() -> GlobalArgs {
        GlobalArgs {
            node: crate::DEFAULT_NODE.into(),
            certs: PathBuf::from("certs"),
            cert_name: crate::DEFAULT_CERT_NAME.into(),
            json: false,
        }
    }

    #[test]
    fn dev_nodes_are_named_and_placed_from_the_base_port() {
        let plan = DevPlan::from_args(&dev_args(3, 7100)).unwrap();
        assert_eq!(plan.certs, PathBuf::from("dev/certs"));
        let summary: Vec<(String, String, PathBuf)> = plan
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.listen.to_string(), n.data_dir.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "n1".into(),
                    "127.0.0.1:7101".into(),
                    PathBuf::from("dev/n1")
                ),
                (
                    "n2".into(),
                    "127.0.0.1:7102".into(),
                    PathBuf::from("dev/n2")
                ),
                (
                    "n3".into(),
                    "127.0.0.1:7103".into(),
                    PathBuf::from("dev/n3")
                ),
            ]
        );
        let members: Vec<String> = plan
            .members()
            .iter()
            .map(|m| format!("{}={}", m.name, m.addr))
            .collect();
        assert_eq!(
            members,
            [
                "n1=127.0.0.1:7101",
                "n2=127.0.0.1:7102",
                "n3=127.0.0.1:7103"
            ]
        );
    }

    #[test]
    fn dev_ports_past_65535_or_at_zero_are_usage_errors() {
        assert!(DevPlan::from_args(&dev_args(3, u16::MAX - 3)).is_ok());
        for base in [u16::MAX - 2, 0] {
            let err = DevPlan::from_args(&dev_args(3, base)).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{err}");
            assert!(err.to_string().contains("pick a --base-port"), "{err}");
        }
    }

    #[test]
    fn a_node_plan_drops_itself_from_peers_and_seeds() {
        let args = node_args(
            &[
                "n3=127.0.0.1:7103",
                "n1=127.0.0.1:7101",
                "n2=127.0.0.1:7102",
            ],
            &["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7102"],
        );
        let plan = NodePlan::from_args(&global(), &args).unwrap();
        let peers: Vec<String> = plan.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["n2=127.0.0.1:7102", "n3=127.0.0.1:7103"]);
        assert_eq!(
            plan.seeds,
            ["127.0.0.1:7102".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(plan.certs, PathBuf::from("certs"));
    }

    #[test]
    fn conflicting_peers_are_usage_errors_that_name_them() {
        for (peers, expected) in [
            (&["n1=127.0.0.1:9999"][..], "names this node"),
            (&["n2=127.0.0.1:7102", "n2=127.0.0.1:7103"], "given twice"),
            (&["n2=127.0.0.1:7101"], "uses the address of n1"),
            (
                &["n2=127.0.0.1:7102", "n3=127.0.0.1:7102"],
                "uses the address of n2",
            ),
        ] {
            let err = NodePlan::from_args(&global(), &node_args(peers, &[])).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{err}");
            assert!(err.to_string().contains(expected), "{peers:?}: {err}");
        }
        let mut bad_name = node_args(&[], &[]);
        bad_name.name = "n_1".into();
        let err = NodePlan::from_args(&global(), &bad_name).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
    }
}
