//! `ringkv node`: from its settings (config file, environment, flags) to a validated
//! plan, then to the node driver; and what `ringkv dev` shares with it (starting a
//! planned node, waiting for Ctrl-C, stopping).
//!
//! Everything that can be decided without starting a node is decided here — names,
//! ports, data and certificate directories, static peers, quorum defaults — so a bad
//! setting fails in a second with a usage error instead of half-starting a node. Running
//! it is the driver's job (`ringkv::net::start_node`): see [`run_node`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ringkv::net::http::ReadToken;
use ringkv::net::validate_name;
use ringkv::net::{HttpOptions, NodeHandle, NodeOptions, start_node};
use ringkv::proto::REPLICAS_MAX;
use ringkv::storage::SyncMode;
use ringkv::{MemberSpec, NodeConfig, VNODES_DEFAULT, VNODES_MAX};

use crate::config::{NodeSettings, env_var};
use crate::error::CliError;
use crate::logging::{self, LogFormat};
use crate::output::Rendered;
use crate::parse::PeerSpec;
use crate::{DEFAULT_CERTS_DIR, GlobalArgs, NodeArgs};

/// Default replicas of a node's requests when no setting says (as `NodeConfig::new`).
pub const N_DEFAULT: u8 = 3;
/// How often `dev` and `node` check that their nodes still run.
const NODE_CHECK_INTERVAL_MS: u64 = 500;

/// One node as `ringkv node` will start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub name: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Holds `ca.pem`, `NAME.pem` and `NAME.key`.
    pub certs: PathBuf,
    /// Static members other than this node, sorted by name.
    pub peers: Vec<PeerSpec>,
    /// Gossip seeds other than this node's own address, deduplicated.
    pub seeds: Vec<SocketAddr>,
    pub vnodes: u32,
    pub sync: SyncMode,
    /// The HTTP API, when an address is set.
    pub http: Option<HttpOptions>,
    /// Default N of requests that do not say.
    pub n: u8,
    /// Default W of writes that do not say.
    pub w: u8,
    /// Default R of reads that do not say.
    pub r: u8,
}

/// A node plan and how its process logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub plan: NodePlan,
    pub log_format: LogFormat,
}

impl NodePlan {
    /// The settings of `ringkv node`: the `--config` file, under the process's `RINGKV_*`
    /// variables, under the flags.
    pub fn resolve(global: &GlobalArgs, args: &NodeArgs) -> Result<Planned, CliError> {
        let file = match &args.config {
            Some(path) => NodeSettings::load(path)?,
            None => NodeSettings::default(),
        };
        let env = NodeSettings::from_env(|var| std::env::var(var).ok())?;
        NodePlan::from_settings(flag_settings(global, args).over(env.over(file)))
    }

    /// Checks merged settings and fills in defaults; a missing or conflicting setting is a
    /// usage error that names the flag, the variable and the key.
    pub fn from_settings(settings: NodeSettings) -> Result<Planned, CliError> {
        let missing = |key: &str, example: &str| {
            CliError::Usage(format!(
                "no {key} for the node: pass --{key} {example}, set {}, or put `{key} = \"{example}\"` in the --config file",
                env_var(key)
            ))
        };
        let name = settings.name.ok_or_else(|| missing("name", "n1"))?;
        let listen = settings
            .listen
            .ok_or_else(|| missing("listen", "127.0.0.1:7101"))?;
        let data_dir = settings.dir.ok_or_else(|| missing("dir", "data/n1"))?;
        validate_name(&name).map_err(|e| CliError::Usage(format!("--name {name:?}: {e}")))?;
        let vnodes = settings.vnodes.unwrap_or(VNODES_DEFAULT);
        if !(1..=VNODES_MAX).contains(&vnodes) {
            return Err(CliError::Usage(format!(
                "vnodes = {vnodes} is out of range: give 1 to {VNODES_MAX}"
            )));
        }
        let (n, w, r) = quorum_defaults(settings.n, settings.w, settings.r)?;
        let insecure = settings.http_insecure.unwrap_or(false);
        if insecure && settings.http.is_none() {
            return Err(CliError::Usage(
                "http_insecure (--http-insecure) needs an HTTP address: set --http, RINGKV_HTTP or `http`".to_owned(),
            ));
        }
        let read_token = read_token_file(settings.http_read_token_file.as_deref())?;
        if read_token.is_some() && (insecure || settings.http.is_none()) {
            return Err(CliError::Usage(
                "http_read_token_file (--http-read-token-file) needs the HTTP API over TLS: set --http, and not --http-insecure (plain HTTP lets everyone in anyway)".to_owned(),
            ));
        }
        let (peers, seeds) = members(
            &name,
            listen,
            settings.peers.unwrap_or_default(),
            settings.seeds.unwrap_or_default(),
        )?;
        Ok(Planned {
            plan: NodePlan {
                name,
                listen,
                data_dir,
                certs: settings
                    .certs
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR)),
                peers,
                seeds,
                vnodes,
                sync: settings.sync.unwrap_or_default(),
                http: settings.http.map(|listen| HttpOptions {
                    listen,
                    insecure,
                    read_token,
                }),
                n,
                w,
                r,
            },
            log_format: settings.log_format.unwrap_or_default(),
        })
    }
}

/// What the command line itself sets: flags, and the global `--certs` unless it is the
/// default. (A variable behind a global flag is read again with the other variables, at
/// the same rank, so it makes no difference that clap also reads it.)
fn flag_settings(global: &GlobalArgs, args: &NodeArgs) -> NodeSettings {
    NodeSettings {
        name: args.name.clone(),
        listen: args.listen,
        dir: args.dir.clone(),
        certs: (!global.certs_defaulted).then(|| global.certs.clone()),
        peers: (!args.peers.is_empty()).then(|| args.peers.clone()),
        seeds: (!args.seeds.is_empty()).then(|| args.seeds.clone()),
        vnodes: args.vnodes,
        sync: args.sync,
        http: args.http,
        http_insecure: args.http_insecure.then_some(true),
        http_read_token_file: args.http_read_token_file.clone(),
        n: args.n,
        w: args.w,
        r: args.r,
        log_format: global.log_format,
    }
}

/// N (default 3) and W and R (default: a majority of N), each within bounds.
fn quorum_defaults(n: Option<u8>, w: Option<u8>, r: Option<u8>) -> Result<(u8, u8, u8), CliError> {
    let n = n.unwrap_or(N_DEFAULT);
    if !(1..=REPLICAS_MAX).contains(&n) {
        return Err(CliError::Usage(format!(
            "n = {n} is out of range: give 1 to {REPLICAS_MAX} replicas"
        )));
    }
    let majority = n / 2 + 1;
    let (w, r) = (w.unwrap_or(majority), r.unwrap_or(majority));
    for (key, value) in [("w", w), ("r", r)] {
        if !(1..=n).contains(&value) {
            return Err(CliError::Usage(format!(
                "{key} = {value} is out of range: the default {key} must be between 1 and n = {n}"
            )));
        }
    }
    Ok((n, w, r))
}

/// Static peers other than this node, sorted by name, and seeds other than its own
/// address: one list can be handed to every node.
fn members(
    name: &str,
    listen: SocketAddr,
    peers: Vec<PeerSpec>,
    seeds: Vec<SocketAddr>,
) -> Result<(Vec<PeerSpec>, Vec<SocketAddr>), CliError> {
    let mut by_name: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut names_by_addr: BTreeMap<SocketAddr, String> = BTreeMap::new();
    names_by_addr.insert(listen, name.to_owned());
    for peer in &peers {
        if peer.name == name {
            // Its own entry must agree with where it listens.
            if peer.addr != listen {
                return Err(CliError::Usage(format!(
                    "--peer {peer} names this node, but --listen is {listen}; fix one of them"
                )));
            }
            continue;
        }
        if let Some(addr) = by_name.insert(peer.name.clone(), peer.addr) {
            return Err(CliError::Usage(format!(
                "--peer {} is given twice ({addr} and {}); give each member once",
                peer.name, peer.addr
            )));
        }
        if let Some(other) = names_by_addr.insert(peer.addr, peer.name.clone()) {
            return Err(CliError::Usage(format!(
                "--peer {peer} uses the address of {other}; every member needs its own address"
            )));
        }
    }
    let peers = by_name
        .into_iter()
        .map(|(name, addr)| PeerSpec { name, addr })
        .collect();
    let seeds: BTreeSet<SocketAddr> = seeds.into_iter().filter(|s| *s != listen).collect();
    Ok((peers, seeds.into_iter().collect()))
}

/// `ringkv node`: merges the settings, starts logging as they say, and runs the node.
pub async fn node(global: &GlobalArgs, args: &NodeArgs) -> Result<Rendered, CliError> {
    let planned = NodePlan::resolve(global, args);
    let log_format = planned
        .as_ref()
        .map_or(LogFormat::default(), |p| p.log_format);
    logging::init(log_format);
    run_node(planned?.plan).await
}

/// Starts the node of `plan` (and its HTTP API, if planned); stops it again if the HTTP
/// API cannot start.
pub async fn start_planned(plan: &NodePlan) -> Result<NodeHandle, CliError> {
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
    (config.n, config.w, config.r) = (plan.n, plan.w, plan.r);
    let opts = NodeOptions {
        config,
        members,
        certs_dir: plan.certs.clone(),
        data_dir: plan.data_dir.clone(),
        sync: plan.sync,
    };
    let cannot = |e: &dyn std::fmt::Display| {
        CliError::Node(format!(
            "cannot start {} on {}{}: {e}",
            plan.name,
            plan.listen,
            plan.http
                .as_ref()
                .map(|h| format!(" (HTTP {})", h.listen))
                .unwrap_or_default()
        ))
    };
    let mut handle = start_node(plan.listen, opts)
        .await
        .map_err(|e| cannot(&e))?;
    if let Some(http) = &plan.http
        && let Err(e) = handle.serve_http(http).await
    {
        stop_all(vec![handle]).await;
        return Err(cannot(&e));
    }
    Ok(handle)
}

/// Runs the node of `plan` until Ctrl-C.
pub async fn run_node(plan: NodePlan) -> Result<Rendered, CliError> {
    let handle = start_planned(&plan).await?;
    let http = handle.http_url().map(|url| format!(", HTTP API on {url}"));
    if plan.http.as_ref().is_some_and(|h| h.insecure) {
        eprintln!(
            "warning: the HTTP API is plain HTTP without client certificates: anyone who can reach it can read and write every key"
        );
    }
    eprintln!(
        "ringkv node {} listening on {}{} (data in {}, sync={}, default n={} w={} r={}); Ctrl-C stops it",
        plan.name,
        handle.addr(),
        http.unwrap_or_default(),
        plan.data_dir.display(),
        plan.sync,
        plan.n,
        plan.w,
        plan.r
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

/// Waits for Ctrl-C (Ok) or for a node to stop by itself (its error).
pub async fn wait_for_stop(handles: &mut Vec<NodeHandle>) -> Result<(), CliError> {
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

pub async fn stop_all(handles: Vec<NodeHandle>) {
    for h in handles {
        let name = h.name().clone();
        if let Err(e) = h.shutdown().await {
            eprintln!("node {name} did not stop cleanly: {e}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(peers: &[&str], seeds: &[&str]) -> NodeSettings {
        NodeSettings {
            name: Some("n1".into()),
            listen: Some("127.0.0.1:7101".parse().unwrap()),
            dir: Some(PathBuf::from("data/n1")),
            peers: Some(peers.iter().map(|p| p.parse().unwrap()).collect()),
            seeds: Some(seeds.iter().map(|s| s.parse().unwrap()).collect()),
            ..NodeSettings::default()
        }
    }

    fn plan(settings: NodeSettings) -> Result<NodePlan, CliError> {
        NodePlan::from_settings(settings).map(|p| p.plan)
    }

    #[test]
    fn a_node_plan_drops_itself_from_peers_and_seeds() {
        let plan = plan(settings(
            &[
                "n3=127.0.0.1:7103",
                "n1=127.0.0.1:7101",
                "n2=127.0.0.1:7102",
            ],
            &["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7102"],
        ))
        .unwrap();
        let peers: Vec<String> = plan.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["n2=127.0.0.1:7102", "n3=127.0.0.1:7103"]);
        assert_eq!(
            plan.seeds,
            ["127.0.0.1:7102".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn defaults_fill_what_no_layer_sets() {
        let plan = plan(settings(&[], &[])).unwrap();
        assert_eq!(plan.certs, PathBuf::from(DEFAULT_CERTS_DIR));
        assert_eq!((plan.n, plan.w, plan.r), (3, 2, 2));
        assert_eq!(plan.vnodes, VNODES_DEFAULT);
        assert_eq!(plan.sync, SyncMode::Group);
        assert_eq!(plan.http, None);
    }

    #[test]
    fn quorum_defaults_follow_n_and_stay_within_it() {
        for (given, expected) in [
            ((Some(1), None, None), (1, 1, 1)),
            ((Some(2), None, None), (2, 2, 2)),
            ((Some(5), Some(1), None), (5, 1, 3)),
            ((None, None, Some(3)), (3, 2, 3)),
        ] {
            assert_eq!(
                quorum_defaults(given.0, given.1, given.2).unwrap(),
                expected
            );
        }
        for (given, expected) in [
            ((Some(1), Some(2), None), "w = 2"),
            ((Some(2), None, Some(3)), "r = 3"),
            ((Some(10), None, None), "n = 10"),
            ((Some(0), None, None), "n = 0"),
        ] {
            let err = quorum_defaults(given.0, given.1, given.2).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn missing_settings_name_the_flag_the_variable_and_the_key() {
        for key in ["name", "listen", "dir"] {
            let mut s = settings(&[], &[]);
            match key {
                "name" => s.name = None,
                "listen" => s.listen = None,
                _ => s.dir = None,
            }
            let err = plan(s).unwrap_err();
            let shown = err.to_string();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{shown}");
            for part in [
                format!("--{key}"),
                crate::config::env_var(key),
                format!("`{key} = "),
            ] {
                assert!(shown.contains(&part), "{shown} lacks {part}");
            }
        }
        let mut insecure = settings(&[], &[]);
        insecure.http_insecure = Some(true);
        let err = plan(insecure).unwrap_err();
        assert!(err.to_string().contains("needs an HTTP address"), "{err}");
        let mut vnodes = settings(&[], &[]);
        vnodes.vnodes = Some(VNODES_MAX + 1);
        assert!(plan(vnodes).unwrap_err().to_string().contains("vnodes"));
    }

    #[test]
    fn flags_are_a_layer_and_a_default_certs_is_not_a_flag() {
        let mut global = crate::GlobalArgs {
            node: crate::DEFAULT_NODE.into(),
            certs: PathBuf::from(DEFAULT_CERTS_DIR),
            cert_name: crate::DEFAULT_CERT_NAME.into(),
            json: false,
            log_format: None,
            certs_defaulted: true,
        };
        let args = NodeArgs {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            http_insecure: true,
            ..NodeArgs::default()
        };
        let file = NodeSettings {
            certs: Some(PathBuf::from("/etc/ringkv/certs")),
            listen: Some("127.0.0.1:7101".parse().unwrap()),
            http_insecure: Some(false),
            ..settings(&[], &[])
        };
        let merged = flag_settings(&global, &args).over(file.clone());
        assert_eq!(merged.certs, Some(PathBuf::from("/etc/ringkv/certs")));
        assert_eq!(merged.listen, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(merged.http_insecure, Some(true));
        assert_eq!(merged.peers, file.peers, "no --peer: the file's list stays");
        global.certs_defaulted = false;
        global.certs = PathBuf::from("mine");
        let merged = flag_settings(&global, &args).over(file);
        assert_eq!(merged.certs, Some(PathBuf::from("mine")));
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
            let err = plan(settings(peers, &[])).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{err}");
            assert!(err.to_string().contains(expected), "{peers:?}: {err}");
        }
        let mut bad_name = settings(&[], &[]);
        bad_name.name = Some("n_1".into());
        let err = plan(bad_name).unwrap_err();
        assert!(err.to_string().contains("--name"), "{err}");
    }
}
