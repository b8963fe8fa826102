//! `ringkv bench`: the load generator.
//!
//! Speed is measured here and in criterion benches, never by timing assertions in tests
//! (on a shared machine they would be flaky and prove nothing), so this tool is how
//! ringkv's throughput and tail latency are known — and compared with Redis by
//! `scripts/compare-redis.sh`. It goes through the same Rust client as every other
//! command, so what it measures is what an application gets.
//!
//! The parts: `keys` (zipfian or uniform key choice), `workload` (the operation mix and
//! how each operation is sent), `runner` (preload, workers, sampling), `stats` (HDR
//! histograms and error kinds), `progress` (the terminal bar), `report` (JSON and table),
//! `svg` (the plot over time) and `latency_log` (per-request records for windows of a run).

pub mod keys;
pub mod latency_log;
pub mod progress;
pub mod report;
pub mod runner;
pub mod stats;
pub mod svg;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringkv::client::{Client, ClientError};
use ringkv::net::BIDI_STREAMS_CONCURRENT_MAX;

use crate::error::CliError;
use crate::output::Rendered;
use crate::{GlobalArgs, ReadWriteQuorum};

use self::keys::{Distribution, KEYS_MAX, KeyChooser};
use self::latency_log::LatencyLog;
use self::report::RunInfo;
use self::runner::Plan;
use self::workload::{Target, VALUE_BYTES_MAX, Workload, make_value};

/// Requests a run performs when neither `--ops` nor `--duration-s` is given.
pub const OPS_DEFAULT: u64 = 100_000;
/// Most requests one run may perform.
pub const OPS_MAX: u64 = 10_000_000_000;
/// Longest `--duration-s`: a day.
pub const DURATION_S_MAX: u64 = 86_400;
/// Most requests in flight: the node's stream credit per connection (more would only
/// queue inside QUIC and inflate the measured latency).
pub const CONCURRENCY_MAX: u32 = BIDI_STREAMS_CONCURRENT_MAX;
/// Seed of the key and operation streams unless `--seed` says otherwise.
pub const SEED_DEFAULT: u64 = 0x5eed;

/// `ringkv bench`: load through the client against `--node`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Operation mix: put, get, mixed (50/50), ycsb-a (50/50), ycsb-b (95/5 read/update),
    /// ycsb-c (read only), ycsb-f (read-modify-write).
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub workload: Workload,
    /// Requests to perform [default: 100000 unless --duration-s is given]; with
    /// --duration-s too, whichever comes first ends the run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=OPS_MAX))]
    pub ops: Option<u64>,
    /// Run for this many seconds (with --ops too, whichever comes first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=DURATION_S_MAX))]
    pub duration_s: Option<u64>,
    /// Requests in flight at once, over one QUIC connection.
    #[arg(long, default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CONCURRENCY_MAX)))]
    pub concurrency: u32,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(VALUE_BYTES_MAX)))]
    pub value_size: u32,
    /// Distinct keys the run touches (and a read workload preloads).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=KEYS_MAX))]
    pub keys: u64,
    /// Key popularity: zipfian (YCSB's, θ = 0.99) or uniform.
    #[arg(long, value_enum, default_value_t = Distribution::Zipfian)]
    pub distribution: Distribution,
    /// Seed of the key choice and operation mix (the same seed repeats a run's requests).
    #[arg(long, default_value_t = SEED_DEFAULT)]
    pub seed: u64,
    /// Bucket the benchmark keys live in.
    #[arg(long, default_value = "bench", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub bucket: String,
    /// Do not write the keys a read workload needs first (they exist from an earlier run).
    #[arg(long)]
    pub skip_preload: bool,
    /// Write a plot of throughput and p99 per second to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub out: Option<PathBuf>,
    /// Write one line per timed request (start offset, latency, ok) to this CSV file,
    /// after the run's start as Unix milliseconds, for percentiles over any window.
    #[arg(long, value_name = "FILE.csv")]
    pub latency_out: Option<PathBuf>,
    #[command(flatten)]
    pub quorum: ReadWriteQuorum,
}

/// Why a benchmark could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "preloading failed at key {key} after {done} of {keys} keys: {source}; fix the cluster (or the quorum flags) and rerun, or pass --skip-preload if the keys already exist"
    )]
    Preload {
        key: String,
        done: u64,
        keys: u64,
        #[source]
        source: Box<ClientError>,
    },
    #[error("a benchmark worker stopped unexpectedly: {0}; this is a bug, please report it")]
    Worker(String),
    #[error("cannot write the plot to {}: {source}; check that the directory exists and is writable", path.display())]
    Plot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the latency records to {}: {source}; check that the directory exists and is writable", path.display())]
    LatencyLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BenchArgs {
    /// The run these flags describe.
    pub fn plan(&self) -> Plan {
        let duration = self.duration_s.map(Duration::from_secs);
        let ops = match (self.ops, duration) {
            (None, None) => Some(OPS_DEFAULT),
            (ops, _) => ops,
        };
        Plan {
            workload: self.workload,
            ops,
            duration,
            concurrency: self.concurrency as usize,
            keys: self.keys,
            chooser: KeyChooser::new(self.distribution, self.keys),
            seed: self.seed,
            preload: self.workload.needs_preload() && !self.skip_preload,
        }
    }
}

impl From<BenchError> for CliError {
    fn from(err: BenchError) -> Self {
        CliError::Bench(Box::new(err))
    }
}

/// Runs the benchmark `args` describe against `--node` and reports it.
pub async fn run(global: &GlobalArgs, args: &BenchArgs) -> Result<Rendered, CliError> {
    // Created first, so a path that cannot be written fails before any load is sent.
    let log = match &args.latency_out {
        Some(path) => Some(Arc::new(LatencyLog::create(path).map_err(|source| {
            BenchError::LatencyLog {
                path: path.clone(),
                source,
            }
        })?)),
        None => None,
    };
    let client = connect(global).await?;
    let plan = args.plan();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let target = Target {
        client,
        bucket: args.bucket.clone(),
        value: make_value(&mut rng, args.value_size),
        quorum: args.quorum.opts(),
    };
    let preloaded = if plan.preload {
        runner::preload(&target, &plan).await?
    } else {
        0
    };
    let mut outcome = runner::run(&target, &plan, log.clone()).await?;
    if let Some(log) = &log {
        log.finish().map_err(|source| BenchError::LatencyLog {
            path: log.path().to_owned(),
            source,
        })?;
    }
    outcome.preloaded = preloaded;
    let info = RunInfo {
        plan,
        value_size: args.value_size,
        distribution: args.distribution.name(),
        n: args.quorum.n,
        w: args.quorum.w,
        r: args.quorum.r,
        strict: args.quorum.strict,
    };
    if let Some(path) = &args.out {
        let title = format!(
            "ringkv bench {}: {} keys ({}), {} in flight",
            info.plan.workload.name(),
            info.plan.keys,
            info.distribution,
            info.plan.concurrency
        );
        std::fs::write(path, svg::plot(&outcome.timeline, &title)).map_err(|source| {
            BenchError::Plot {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(report::render(&info, &outcome))
}

/// Connects as every client command does, with the same errors.
/// Connects as every client command does, with the same errors and the same routing.
async fn connect(global: &GlobalArgs) -> Result<Client, CliError> {
    crate::client_cmds::connect(global).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = Cli::try_parse_from(["ringkv", "bench"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Bench(args) => Ok(args),
            other => panic!("not a bench: {other:?}"),
        }
    }

    #[test]
    fn every_documented_flag_parses() {
        let args = parse(&[
            "--workload",
            "ycsb-f",
            "--ops",
            "500",
            "--concurrency",
            "50",
            "--value-size",
            "100",
            "--keys",
            "1000",
            "--n",
            "3",
            "--w",
            "2",
            "--r",
            "2",
            "--strict",
            "--timeout-ms",
            "500",
            "--duration-s",
            "5",
            "--distribution",
            "uniform",
            "--out",
            "plot.svg",
            "--latency-out",
            "lat.csv",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.workload, Workload::YcsbF);
        assert_eq!(args.distribution, Distribution::Uniform);
        assert_eq!(args.out, Some(PathBuf::from("plot.svg")));
        assert_eq!(args.latency_out, Some(PathBuf::from("lat.csv")));
        let opts = args.quorum.opts();
        assert_eq!(
            (opts.n, opts.w, opts.r, opts.strict, opts.timeout_ms),
            (Some(3), Some(2), Some(2), true, Some(500))
        );
        let plan = args.plan();
        assert_eq!(plan.ops, Some(500));
        assert_eq!(plan.duration, Some(Duration::from_secs(5)));
        assert_eq!((plan.concurrency, plan.keys), (50, 1000));
        assert!(plan.preload);
        for workload in ["put", "get", "mixed", "ycsb-a", "ycsb-b", "ycsb-c"] {
            let args = parse(&["--workload", workload]).unwrap();
            assert_eq!(args.workload.name(), workload);
        }
    }

    #[test]
    fn the_ops_default_applies_only_without_a_duration() {
        let plan = parse(&[]).unwrap().plan();
        assert_eq!((plan.ops, plan.duration), (Some(OPS_DEFAULT), None));
        let plan = parse(&["--duration-s", "3"]).unwrap().plan();
        assert_eq!(
            (plan.ops, plan.duration),
            (None, Some(Duration::from_secs(3)))
        );
        let plan = parse(&["--workload", "put", "--skip-preload"])
            .unwrap()
            .plan();
        assert!(!plan.preload);
        let plan = parse(&["--workload", "get", "--skip-preload"])
            .unwrap()
            .plan();
        assert!(!plan.preload);
    }

    #[test]
    fn out_of_range_flags_are_usage_errors() {
        for args in [
            &["--workload", "ycsb-d"][..],
            &["--ops", "0"],
            &["--concurrency", "0"],
            &["--concurrency", "100000"],
            &["--keys", "0"],
            &["--duration-s", "0"],
            &["--value-size", "99999999"],
            &["--distribution", "latest"],
            &["--bucket", ""],
            &["--w", "0"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should be refused"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
