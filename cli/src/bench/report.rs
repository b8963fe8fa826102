//! The end-of-run report: the `--json` object and a short table.
//!
//! Both come from the same [`Outcome`], so they cannot disagree. The JSON field names
//! are a contract scripts rely on (`scripts/compare-redis.sh` reads them): fields may be
//! added, never renamed.

use serde_json::{Value, json};

use crate::bench::runner::{Outcome, Plan};
use crate::output::Rendered;

/// How the run was configured, as the report describes it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub plan: Plan,
    pub value_size: u32,
    pub distribution: &'static str,
    pub n: Option<u8>,
    pub w: Option<u8>,
    pub r: Option<u8>,
    pub strict: bool,
}

/// The report of a finished run.
pub fn render(info: &RunInfo, outcome: &Outcome) -> Rendered {
    Rendered::new(to_json(info, outcome), to_human(info, outcome))
}

/// Successful requests per second.
fn ops_per_sec(outcome: &Outcome) -> f64 {
    if outcome.secs > 0.0 {
        outcome.ok as f64 / outcome.secs
    } else {
        0.0
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

fn to_json(info: &RunInfo, outcome: &Outcome) -> Value {
    let errors_by_kind: serde_json::Map<String, Value> = outcome
        .errors
        .by_kind()
        .iter()
        .map(|(kind, count)| (kind.name().to_owned(), json!(count)))
        .collect();
    let error_samples: serde_json::Map<String, Value> = outcome
        .errors
        .samples
        .iter()
        .map(|(kind, message)| (kind.name().to_owned(), json!(message)))
        .collect();
    let (reads, updates, rmws) = outcome.op_counts;
    let latency = &outcome.latency;
    json!({
        "workload": info.plan.workload.name(),
        "ops": outcome.ops,
        "errors": outcome.errors.total(),
        "secs": round(outcome.secs, 3),
        "ops_per_sec": ops_per_sec(outcome).round() as u64,
        "p50_ms": round(latency.p50_ms, 3),
        "p99_ms": round(latency.p99_ms, 3),
        "p999_ms": round(latency.p999_ms, 3),
        "max_ms": round(latency.max_ms, 3),
        "mean_ms": round(latency.mean_ms, 3),
        "ok": outcome.ok,
        "errors_by_kind": errors_by_kind,
        "error_samples": error_samples,
        "reads": reads,
        "updates": updates,
        "rmws": rmws,
        "concurrency": info.plan.concurrency,
        "keys": info.plan.keys,
        "distribution": info.distribution,
        "value_size": info.value_size,
        "n": info.n,
        "w": info.w,
        "r": info.r,
        "strict": info.strict,
        "seed": info.plan.seed,
        "preloaded": outcome.preloaded,
        "interrupted": outcome.interrupted,
    })
}

fn to_human(info: &RunInfo, outcome: &Outcome) -> String {
    let quorum = |q: Option<u8>| q.map_or_else(|| "default".to_owned(), |v| v.to_string());
    let plan = &info.plan;
    let mut lines = vec![
        format!(
            "workload     {} ({} over {} keys, {}-byte values, {} in flight, n/w/r {}/{}/{}{})",
            plan.workload.name(),
            info.distribution,
            plan.keys,
            info.value_size,
            plan.concurrency,
            quorum(info.n),
            quorum(info.w),
            quorum(info.r),
            if info.strict { ", strict" } else { "" },
        ),
        format!(
            "ops          {} in {:.2} s ({} ok, {} errors){}",
            outcome.ops,
            outcome.secs,
            outcome.ok,
            outcome.errors.total(),
            if outcome.interrupted {
                "; interrupted by Ctrl-C"
            } else {
                ""
            },
        ),
        format!("throughput   {:.0} ops/s", ops_per_sec(outcome)),
    ];
    let l = &outcome.latency;
    if outcome.ok > 0 {
        lines.push(format!(
            "latency      p50 {:.3} ms   p99 {:.3} ms   p99.9 {:.3} ms   max {:.3} ms",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        ));
    } else {
        lines.push("latency      no request succeeded".to_owned());
    }
    if outcome.errors.total() > 0 {
        let kinds: Vec<String> = outcome
            .errors
            .by_kind()
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{} {count}", kind.label()))
            .collect();
        lines.push(format!("errors       {}", kinds.join(", ")));
        for (kind, message) in &outcome.errors.samples {
            lines.push(format!("  first {}: {message}", kind.label()));
        }
    }
    if outcome.preloaded > 0 {
        lines.push(format!(
            "preloaded    {} keys before timing",
            outcome.preloaded
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::keys::{Distribution, KeyChooser};
    use crate::bench::stats::{ErrorCounts, ErrorKind, Percentiles};
    use crate::bench::workload::Workload;

    fn info() -> RunInfo {
        RunInfo {
            plan: Plan {
                workload: Workload::Get,
                ops: Some(100_000),
                duration: None,
                concurrency: 50,
                keys: 1000,
                chooser: KeyChooser::new(Distribution::Uniform, 1000),
                seed: 1,
                preload: true,
            },
            value_size: 100,
            distribution: "zipfian",
            n: Some(1),
            w: Some(1),
            r: None,
            strict: false,
        }
    }

    fn outcome(errors: ErrorCounts) -> Outcome {
        Outcome {
            ops: 100_000,
            ok: 100_000 - errors.total(),
            errors,
            secs: 1.9,
            latency: Percentiles {
                p50_ms: 0.8,
                p99_ms: 2.1,
                p999_ms: 4.0,
                max_ms: 9.1234,
                mean_ms: 0.9,
            },
            op_counts: (100_000, 0, 0),
            timeline: Vec::new(),
            preloaded: 1000,
            interrupted: false,
        }
    }

    #[test]
    fn the_json_has_the_contract_fields() {
        let json = render(&info(), &outcome(ErrorCounts::default())).json;
        assert_eq!(json["workload"], "get");
        assert_eq!(json["ops"], 100_000);
        assert_eq!(json["errors"], 0);
        assert_eq!(json["secs"], 1.9);
        assert_eq!(json["ops_per_sec"], 52_632);
        assert_eq!(json["p50_ms"], 0.8);
        assert_eq!(json["p99_ms"], 2.1);
        assert_eq!(json["p999_ms"], 4.0);
        assert_eq!(json["max_ms"], 9.123);
        assert_eq!(json["concurrency"], 50);
        assert_eq!(json["errors_by_kind"]["quorum"], 0);
        assert_eq!(json["n"], 1);
        assert!(json["r"].is_null());
    }

    #[test]
    fn errors_show_by_kind_with_their_first_message() {
        let errors = ErrorCounts {
            quorum: 7,
            timeout: 1,
            refused: 0,
            other: 0,
            samples: vec![
                (ErrorKind::Quorum, "got 2 of the 3 acks needed".to_owned()),
                (ErrorKind::Timeout, "timed out".to_owned()),
            ],
        };
        let rendered = render(&info(), &outcome(errors));
        assert_eq!(rendered.json["errors"], 8);
        assert_eq!(rendered.json["errors_by_kind"]["quorum"], 7);
        assert_eq!(rendered.json["errors_by_kind"]["timeout"], 1);
        assert_eq!(
            rendered.json["error_samples"]["quorum"],
            "got 2 of the 3 acks needed"
        );
        assert!(
            rendered
                .human
                .contains("errors       quorum failed 7, timeout/unreachable 1"),
            "{}",
            rendered.human
        );
        assert!(
            rendered
                .human
                .contains("first quorum failed: got 2 of the 3 acks needed")
        );
        assert!(rendered.human.contains("n/w/r 1/1/default"));
    }
}
