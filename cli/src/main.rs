//! The `ringkv` command-line tool: every client operation, certificate management, a
//! node, a local dev cluster, and the load generator.
//!
//! This file holds the whole command-line grammar, so the contract users script against
//! is in one place; what each command does lives in `client_cmds`, `certs_cmd` and
//! `cluster_cmds`, and how results look (human or `--json`) lives in `output`.

mod bench;
mod certs_cmd;
mod client_cmds;
mod cluster_cmds;
mod config;
mod dev_cmd;
mod error;
mod logging;
mod output;
mod parse;
mod value_io;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ringkv::HOT_KEYS_K;
use ringkv::VNODES_MAX;
use ringkv::proto::{Key, QuorumOpts, REPLICAS_MAX, REQUEST_TIMEOUT_MS_MAX};
use ringkv::storage::SyncMode;

use crate::error::CliError;
use crate::logging::LogFormat;
use crate::parse::{PeerSpec, parse_key};

// mimalloc instead of the system allocator: a node allocates per request (messages,
// encoded objects, keys) on every core, and glibc malloc/free/realloc was about a fifth
// of a 3-node put's CPU. The library leaves the choice to the binary that embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where client commands go unless `--node` or `RINGKV_NODE` says otherwise.
pub const DEFAULT_NODE: &str = "127.0.0.1:7101";
/// Where client commands find certificates: the directory `ringkv dev` creates.
pub const DEFAULT_CERTS_DIR: &str = "./ringkv-dev/certs";
/// The client certificate a client command presents.
pub const DEFAULT_CERT_NAME: &str = "client";
/// Where `ringkv dev` keeps its certificates and node data.
pub const DEFAULT_DEV_DIR: &str = "./ringkv-dev";
/// Nodes `ringkv dev` starts by default.
pub const DEV_NODES_DEFAULT: u8 = 3;
/// Most nodes `ringkv dev` starts on one machine.
pub const DEV_NODES_MAX: u8 = 32;
/// Node i of `ringkv dev` listens on this port + i.
pub const DEV_BASE_PORT_DEFAULT: u16 = 7100;
/// Node i of `ringkv dev` serves its HTTP API on this TCP port + i.
pub const DEV_HTTP_BASE_PORT_DEFAULT: u16 = 8100;

/// Help heading of the flags every command accepts.
const GLOBAL: &str = "Global options";

/// ringkv: an eventually consistent, Dynamo-style key-value store with CRDTs.
#[derive(Debug, Parser)]
#[command(name = "ringkv", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Nodes to reach the cluster through (HOST:PORT, comma-separated); the client learns
    /// every member from the first that answers and sends each request to a replica of
    /// its key.
    #[arg(long, global = true, env = "RINGKV_NODE", default_value = DEFAULT_NODE, help_heading = GLOBAL)]
    pub node: String,
    /// Certificate directory (cluster CA and client certificates).
    #[arg(long, global = true, env = "RINGKV_CERTS", default_value = DEFAULT_CERTS_DIR, help_heading = GLOBAL)]
    pub certs: PathBuf,
    /// Client certificate to present: CERTS/NAME.pem and CERTS/NAME.key.
    #[arg(long, global = true, default_value = DEFAULT_CERT_NAME, help_heading = GLOBAL)]
    pub cert_name: String,
    /// Print machine-readable JSON on stdout (errors still go to stderr).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// How logs on stderr look: text or json (one object per line). RUST_LOG filters them
    /// [default: text, warnings only].
    #[arg(long, global = true, env = "RINGKV_LOG_FORMAT", value_enum, help_heading = GLOBAL)]
    pub log_format: Option<LogFormat>,
    /// True when --certs is the default, not from the command line or RINGKV_CERTS, so a
    /// node's config file may set it.
    #[arg(skip)]
    pub certs_defaulted: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local cluster n1..nK on 127.0.0.1 (Ctrl-C stops it; a restart reuses the data).
    Dev(DevArgs),
    /// Run one node.
    ///
    /// Each setting comes from its flag, else its variable (RINGKV_ + the key in capitals:
    /// RINGKV_NAME, RINGKV_LISTEN, RINGKV_DIR, RINGKV_PEERS, ...), else the --config file,
    /// else its default. README, "Config file", lists every key.
    Node(NodeArgs),
    /// Manage the cluster CA and node/client certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    #[command(flatten)]
    Client(ClientCommand),
    /// Load generator: workloads, concurrency, N/W/R, progress bar, latency percentiles.
    Bench(bench::BenchArgs),
}

/// Commands that talk to a running cluster through `--node`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Write a value (siblings policy; --lww for last-writer-wins).
    Put(PutArgs),
    /// Read a value: all siblings and the context to write back with.
    Get(GetValueArgs),
    /// Delete a key (without --context: what a read sees now).
    Del(DelArgs),
    /// PN-counter operations.
    #[command(subcommand)]
    Counter(CounterCommand),
    /// OR-set (add wins) operations.
    #[command(subcommand)]
    Set(SetCommand),
    /// Map operations: registers and counters per field.
    #[command(subcommand)]
    Map(MapCommand),
    /// HyperLogLog operations: approximate distinct counts.
    #[command(subcommand)]
    Hll(HllCommand),
    /// Members as the node sees them: address, state, owned share, pending hints,
    /// partition transfers.
    Status,
    /// Partitions per node, replication and balance.
    Ring,
    /// Tell the --node to join the cluster of the member at SEED (gossip announce); its
    /// partitions then stream to it.
    Join {
        /// Address of any member of the cluster to join.
        seed: String,
    },
    /// Hand a node's partitions to their new owners, then stop it (decommission).
    Leave {
        /// The member that leaves [default: the --node itself].
        name: Option<String>,
    },
    /// Distinct keys (HLL), hot keys (count-min) and anti-entropy progress, per node and
    /// for the cluster (every member is asked; one that does not answer is named).
    Stats(StatsArgs),
}

/// Hot keys `ringkv stats` lists unless `--top` says otherwise.
pub const STATS_TOP_DEFAULT: usize = 10;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Cluster hot keys to list (each node keeps its 32 hottest candidates per window).
    #[arg(long, default_value_t = STATS_TOP_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=HOT_KEYS_K as u64))]
    pub top: usize,
    /// Also list every node's partitions (one row each; about 200 KB of JSON for three
    /// nodes, so only on request).
    #[arg(long)]
    pub partitions: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA (ca.pem, ca.key); refuses to replace an existing one.
    Init {
        /// Certificate directory [default: the global --certs].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Issue a node certificate (or, with --client, a client certificate) signed by the CA.
    Issue {
        /// Certificate directory [default: the global --certs].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Node or client name: letters, digits and '-'.
        #[arg(long)]
        name: String,
        /// Issue a client certificate (client API only) instead of a node certificate.
        #[arg(long)]
        client: bool,
    },
}

#[derive(Debug, Args)]
pub struct PutArgs {
    #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
    pub key: Key,
    /// The value as text; `-` reads it from stdin (any bytes, at most 1 MiB).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from a file (any bytes, at most 1 MiB).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Last-writer-wins: the newest write replaces the value; concurrent writes are lost.
    #[arg(long, conflicts_with = "context")]
    pub lww: bool,
    /// Context token from an earlier get: the write supersedes exactly what that read saw.
    #[arg(long, value_name = "TOKEN")]
    pub context: Option<String>,
    #[command(flatten)]
    pub quorum: WriteQuorum,
}

/// `get`: a read, shown as text (or `--json`), or one value's bytes with `--raw`.
#[derive(Debug, Args)]
pub struct GetValueArgs {
    #[command(flatten)]
    pub get: GetArgs,
    /// Write the value's bytes to stdout exactly as stored, without a newline (for binary
    /// values: `ringkv get KEY --raw > file`); fails when the key is missing or has
    /// siblings.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
    pub key: Key,
    #[command(flatten)]
    pub quorum: ReadQuorum,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
    pub key: Key,
    /// Context token from an earlier get; without it the key is read first.
    #[arg(long, value_name = "TOKEN")]
    pub context: Option<String>,
    #[command(flatten)]
    pub quorum: ReadWriteQuorum,
}

#[derive(Debug, Subcommand)]
pub enum CounterCommand {
    /// Add AMOUNT (default 1).
    Incr(CounterStep),
    /// Subtract AMOUNT (default 1).
    Decr(CounterStep),
    /// Read the value.
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub struct CounterStep {
    #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
    pub key: Key,
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    pub amount: i64,
    #[command(flatten)]
    pub quorum: WriteQuorum,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Add members.
    Add(SetMembers<WriteQuorum>),
    /// Remove members (the set is read first: a remove needs its context).
    Remove(SetMembers<ReadWriteQuorum>),
    /// Read the members and context.
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub struct SetMembers<Q: Args> {
    #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
    pub key: Key,
    #[arg(value_name = "MEMBER", required = true, num_args = 1..)]
    pub members: Vec<String>,
    #[command(flatten)]
    pub quorum: Q,
}

#[derive(Debug, Subcommand)]
pub enum MapCommand {
    /// Set FIELD's register to VALUE.
    Set {
        #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
        key: Key,
        field: String,
        value: String,
        #[command(flatten)]
        quorum: WriteQuorum,
    },
    /// Add AMOUNT (default 1, may be negative) to FIELD's counter.
    Incr {
        #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
        key: Key,
        field: String,
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        amount: i64,
        #[command(flatten)]
        quorum: WriteQuorum,
    },
    /// Read every field and the context.
    Get(GetArgs),
}

#[derive(Debug, Subcommand)]
pub enum HllCommand {
    /// Add items.
    Add {
        #[arg(value_name = "BUCKET/KEY", value_parser = parse_key)]
        key: Key,
        #[arg(value_name = "ITEM", required = true, num_args = 1..)]
        items: Vec<String>,
        #[command(flatten)]
        quorum: WriteQuorum,
    },
    /// Estimate the number of distinct items.
    Count(GetArgs),
}

/// N/R for reads.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ReadQuorum {
    /// Replicas (default: the node's, usually 3).
    #[arg(long, value_parser = replicas())]
    pub n: Option<u8>,
    /// Replies to wait for (default: the node's, usually 2).
    #[arg(long, value_parser = replicas())]
    pub r: Option<u8>,
    /// Count only primary replicas, never sloppy fallbacks.
    #[arg(long)]
    pub strict: bool,
    /// How long the coordinator waits for replicas.
    #[arg(long, value_parser = request_timeout())]
    pub timeout_ms: Option<u32>,
}

/// N/W for writes.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct WriteQuorum {
    /// Replicas (default: the node's, usually 3).
    #[arg(long, value_parser = replicas())]
    pub n: Option<u8>,
    /// Acks to wait for (default: the node's, usually 2).
    #[arg(long, value_parser = replicas())]
    pub w: Option<u8>,
    /// Count only primary replicas, never sloppy fallbacks.
    #[arg(long)]
    pub strict: bool,
    /// How long the coordinator waits for replicas.
    #[arg(long, value_parser = request_timeout())]
    pub timeout_ms: Option<u32>,
}

/// N/R/W for commands that read, then write with the context they read.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ReadWriteQuorum {
    /// Replicas (default: the node's, usually 3).
    #[arg(long, value_parser = replicas())]
    pub n: Option<u8>,
    /// Replies the read waits for.
    #[arg(long, value_parser = replicas())]
    pub r: Option<u8>,
    /// Acks the write waits for.
    #[arg(long, value_parser = replicas())]
    pub w: Option<u8>,
    /// Count only primary replicas, never sloppy fallbacks.
    #[arg(long)]
    pub strict: bool,
    /// How long the coordinator waits for replicas.
    #[arg(long, value_parser = request_timeout())]
    pub timeout_ms: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Number of nodes (n1..nK); requests default to N = min(3, nodes) replicas and W = R
    /// = a majority of N.
    #[arg(long, default_value_t = DEV_NODES_DEFAULT,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(DEV_NODES_MAX)))]
    pub nodes: u8,
    /// Node i listens on 127.0.0.1:(BASE_PORT + i).
    #[arg(long, default_value_t = DEV_BASE_PORT_DEFAULT)]
    pub base_port: u16,
    /// Node i serves its HTTP API (TLS, client certificates) on 127.0.0.1:(HTTP_BASE_PORT +
    /// i); 0 lets the system pick each port (the banner names them).
    #[arg(long, default_value_t = DEV_HTTP_BASE_PORT_DEFAULT)]
    pub http_base_port: u16,
    /// Directory for certificates (DIR/certs), node data (DIR/n1, ...) and the config
    /// file each node is started from (DIR/n1.toml, ...).
    #[arg(long, default_value = DEFAULT_DEV_DIR)]
    pub dir: PathBuf,
    /// When writes reach the disk: group (one fsync per batch, before any ack), always
    /// (one per write), or none (never; acknowledged writes can be lost on an OS crash).
    #[arg(long, default_value = "group")]
    pub sync: SyncMode,
    /// A file holding a read-only bearer token (16 to 256 characters): browsers and
    /// Prometheus may then GET /, /metrics, /v1/status, /v1/ring and /v1/stats with
    /// `Authorization: Bearer TOKEN` instead of a client certificate. Never data routes.
    #[arg(long, value_name = "PATH")]
    pub http_read_token_file: Option<PathBuf>,
}

/// One node. Every setting also has a key in the `--config` file and a `RINGKV_KEY`
/// variable; flags override variables, which override the file. Its certificates come
/// from the global --certs (env RINGKV_CERTS, key `certs`).
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// A TOML file with any of the settings below (keys as the flags, with '_' for '-';
    /// `peer` and `seed` are lists `peers` and `seeds`). Unknown keys are refused.
    #[arg(long, value_name = "FILE", env = "RINGKV_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's name; it loads CERTS/NAME.pem and CERTS/NAME.key [required: flag,
    /// RINGKV_NAME or `name`].
    #[arg(long)]
    pub name: Option<String>,
    /// UDP address to serve QUIC on [required].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [required].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A static member, NAME=ADDR (repeatable; replaces the file's `peers`).
    #[arg(long = "peer", value_name = "NAME=ADDR")]
    pub peers: Vec<PeerSpec>,
    /// A member to join through by gossip (repeatable; replaces the file's `seeds`);
    /// --listen must then be an address the other members can reach.
    #[arg(long = "seed", value_name = "ADDR")]
    pub seeds: Vec<SocketAddr>,
    /// Virtual nodes this node places on the ring (more for bigger machines) [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(VNODES_MAX)))]
    pub vnodes: Option<u32>,
    /// When writes reach the disk: group, always, or none (loses acked writes on a crash)
    /// [default: group].
    #[arg(long)]
    pub sync: Option<SyncMode>,
    /// TCP address to serve the HTTP/JSON API on, over TLS with this node's certificate;
    /// clients need a certificate from the cluster CA.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Serve the HTTP API as plain HTTP, without TLS or client certificates: loopback
    /// addresses only, for local experiments.
    #[arg(long)]
    pub http_insecure: bool,
    /// A file holding a read-only bearer token (16 to 256 characters): clients without a
    /// certificate may then GET /, /metrics, /v1/status, /v1/ring and /v1/stats with
    /// `Authorization: Bearer TOKEN` (the page also takes `/?token=TOKEN`). Never data
    /// routes; every other request still needs a client certificate.
    #[arg(long, value_name = "PATH")]
    pub http_read_token_file: Option<PathBuf>,
    /// Default replicas of a request that does not say [default: 3].
    #[arg(long, value_parser = replicas())]
    pub n: Option<u8>,
    /// Default write quorum, 1..=N [default: a majority of N].
    #[arg(long, value_parser = replicas())]
    pub w: Option<u8>,
    /// Default read quorum, 1..=N [default: a majority of N].
    #[arg(long, value_parser = replicas())]
    pub r: Option<u8>,
}

impl ReadQuorum {
    pub fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: self.n,
            r: self.r,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
            ..QuorumOpts::default()
        }
    }
}

impl WriteQuorum {
    pub fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: self.n,
            w: self.w,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
            ..QuorumOpts::default()
        }
    }
}

impl ReadWriteQuorum {
    pub fn opts(&self) -> QuorumOpts {
        QuorumOpts {
            n: self.n,
            w: self.w,
            r: self.r,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
        }
    }
}

fn replicas() -> clap::builder::RangedI64ValueParser<u8> {
    clap::value_parser!(u8).range(1..=i64::from(REPLICAS_MAX))
}

fn request_timeout() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(REQUEST_TIMEOUT_MS_MAX))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_with_sources();
    let json = cli.global.json;
    let log_format = cli.global.log_format.unwrap_or_default();
    let result = match cli.command {
        // A node's log format may come from its config file: it starts logging itself.
        Command::Node(args) => cluster_cmds::node(&cli.global, &args).await,
        Command::Dev(args) => {
            logging::init(log_format);
            dev_cmd::dev(&cli.global, &args).await
        }
        Command::Certs(cmd) => {
            logging::init(log_format);
            certs_cmd::run(&cli.global, cmd)
        }
        Command::Client(cmd) => {
            logging::init(log_format);
            client_cmds::run(&cli.global, cmd).await
        }
        Command::Bench(args) => {
            logging::init(log_format);
            bench::run(&cli.global, &args).await
        }
    };
    match result.and_then(|rendered| rendered.print(json).map_err(CliError::Output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

impl Cli {
    /// Parses the process's arguments (exiting on a usage error, as clap does) and notes
    /// which global values are defaults.
    fn parse_with_sources() -> Cli {
        Cli::from_matches(&Cli::command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    fn from_matches(matches: &clap::ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = Cli::from_arg_matches(matches)?;
        cli.global.certs_defaulted = is_default(matches, "certs");
        Ok(cli)
    }
}

/// Whether a global argument took its default value. Global values are propagated to
/// every subcommand level, so the deepest one knows where the value came from.
fn is_default(matches: &clap::ArgMatches, id: &str) -> bool {
    let mut deepest = matches;
    while let Some((_, sub)) = deepest.subcommand() {
        deepest = sub;
    }
    matches!(
        deepest.value_source(id),
        Some(ValueSource::DefaultValue) | None
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("ringkv").chain(args.iter().copied()))?;
        Cli::from_matches(&matches)
    }

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_have_the_documented_env_and_defaults() {
        let cmd = Cli::command();
        let arg = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .cloned()
                .unwrap_or_else(|| panic!("no --{id}"))
        };
        let node = arg("node");
        assert_eq!(node.get_env(), Some(std::ffi::OsStr::new("RINGKV_NODE")));
        assert_eq!(node.get_default_values(), [DEFAULT_NODE]);
        let certs = arg("certs");
        assert_eq!(certs.get_env(), Some(std::ffi::OsStr::new("RINGKV_CERTS")));
        assert_eq!(certs.get_default_values(), [DEFAULT_CERTS_DIR]);
        assert_eq!(arg("cert_name").get_default_values(), ["client"]);
        assert!(arg("json").is_global_set());
    }

    #[test]
    fn put_takes_quorum_flags_context_and_global_flags_after_the_subcommand() {
        let cli = parse(&[
            "put",
            "users/alice",
            "hi",
            "--n",
            "3",
            "--w",
            "1",
            "--strict",
            "--context",
            "TOK",
            "--json",
            "--node",
            "10.0.0.1:7101",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.node, "10.0.0.1:7101");
        let Command::Client(ClientCommand::Put(put)) = cli.command else {
            panic!("not a put: {:?}", cli.command);
        };
        assert_eq!(put.key, Key::new("users", "alice"));
        assert_eq!(put.value.as_deref(), Some("hi"));
        assert_eq!(put.context.as_deref(), Some("TOK"));
        let opts = put.quorum.opts();
        assert_eq!(
            (opts.n, opts.w, opts.r, opts.strict),
            (Some(3), Some(1), None, true)
        );
    }

    #[test]
    fn usage_errors_are_caught_before_any_request() {
        for args in [
            &["put", "nokey", "v"][..],
            &["put", "b/k", "v", "--lww", "--context", "T"],
            &["put", "b/k", "v", "--w", "0"],
            &["get", "b/k", "--n", "10"],
            &["get", "b/k", "--w", "2"],
            &["counter", "incr", "b/k", "0"],
            &["set", "add", "b/k"],
            &["dev", "--nodes", "0"],
            &[
                "node",
                "--name",
                "n1",
                "--listen",
                "127.0.0.1:7101",
                "--dir",
                "d",
                "--sync",
                "often",
            ],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn counters_default_to_one_and_map_incr_takes_negative_amounts() {
        let cli = parse(&["counter", "decr", "b/k"]).unwrap();
        let Command::Client(ClientCommand::Counter(CounterCommand::Decr(step))) = cli.command
        else {
            panic!("not a decr");
        };
        assert_eq!(step.amount, 1);
        let cli = parse(&["map", "incr", "b/k", "visits", "-3"]).unwrap();
        let Command::Client(ClientCommand::Map(MapCommand::Incr { amount, field, .. })) =
            cli.command
        else {
            panic!("not a map incr");
        };
        assert_eq!((field.as_str(), amount), ("visits", -3));
    }

    #[test]
    fn certs_from_the_command_line_is_told_from_the_default() {
        for (args, defaulted) in [
            (&["node", "--name", "n1"][..], true),
            (&["node", "--certs", "c", "--name", "n1"], false),
            (&["--certs", "c", "node", "--name", "n1"], false),
            (&["get", "b/k"], true),
            (&["get", "b/k", "--certs", "c"], false),
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.global.certs_defaulted, defaulted, "{args:?}");
        }
    }

    #[test]
    fn node_settings_may_all_come_from_a_file() {
        let cli = parse(&["node", "--config", "n1.toml", "--log-format", "json"]).unwrap();
        let Command::Node(node) = cli.command else {
            panic!("not a node");
        };
        assert_eq!(node.config, Some(PathBuf::from("n1.toml")));
        assert_eq!((node.name, node.listen, node.dir), (None, None, None));
        assert_eq!(cli.global.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn put_reads_stdin_or_a_file_and_get_writes_raw_bytes() {
        let cli = parse(&["put", "b/k", "-"]).unwrap();
        let Command::Client(ClientCommand::Put(put)) = cli.command else {
            panic!("not a put");
        };
        assert_eq!(put.value.as_deref(), Some("-"));
        let cli = parse(&["put", "b/k", "--file", "v.bin"]).unwrap();
        let Command::Client(ClientCommand::Put(put)) = cli.command else {
            panic!("not a put");
        };
        assert_eq!((put.value, put.file), (None, Some(PathBuf::from("v.bin"))));
        let cli = parse(&["get", "b/k", "--raw"]).unwrap();
        let Command::Client(ClientCommand::Get(get)) = cli.command else {
            panic!("not a get");
        };
        assert!(get.raw);
        for args in [&["put", "b/k"][..], &["put", "b/k", "v", "--file", "f"]] {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn node_takes_repeated_peers_and_seeds() {
        let cli = parse(&[
            "node",
            "--name",
            "n1",
            "--listen",
            "127.0.0.1:7101",
            "--dir",
            "data/n1",
            "--peer",
            "n2=127.0.0.1:7102",
            "--peer",
            "n3=127.0.0.1:7103",
            "--seed",
            "127.0.0.1:7102",
            "--vnodes",
            "128",
            "--sync",
            "always",
        ])
        .unwrap();
        let Command::Node(node) = cli.command else {
            panic!("not a node");
        };
        assert_eq!(node.peers.len(), 2);
        assert_eq!(node.peers[1].name, "n3");
        assert_eq!(
            node.seeds,
            vec!["127.0.0.1:7102".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(node.vnodes, Some(128));
        assert_eq!(node.sync, Some(SyncMode::Always));
    }
}
