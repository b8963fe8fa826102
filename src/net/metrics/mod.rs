//! Prometheus metrics of one node, served at `GET /metrics` of its HTTP API.
//!
//! Why here and not in the core: the core is sans-IO and deterministic (the simulator
//! replays a seed exactly), so it must not call into a global recorder or read a clock.
//! It keeps plain counters owned by each subsystem (`Node::stats`, `Node::ae_stats`,
//! `Node::transfer_info`, the hint store) and says in its outputs what became of each
//! request; the driver, which already knows when a request entered and when its answer
//! left, records latencies and outcomes at reply time ([`NodeMetrics::observe_request`])
//! and copies the core's counters and gauges on a timer (`sample`).
//!
//! Why one recorder per node and no global one: tests run several nodes in one process,
//! and each node's `/metrics` must show only its own figures. So every node builds its
//! own `PrometheusRecorder` and records through it explicitly (`Recorder::register_*`),
//! never through `metrics::set_global_recorder`.
//!
//! - [`catalog`]: every metric's name, kind, labels and help (the README's list);
//! - `labels`: label values from requests and replies;
//! - `sample`: the gauges and counters copied from the core;
//! - `timing`: the bounded table that times peers' requests until their answers leave.

pub mod catalog;
pub(crate) mod labels;
pub(crate) mod sample;
pub(crate) mod timing;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use catalog::{
    BATCH_BUCKETS, BYTES_BUCKETS, FSYNC_DURATION_SECONDS, GROUP_COMMIT_BATCH_INPUTS, Kind, METRICS,
    OBJECT_BYTES, READ_SIBLINGS, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, SECONDS_BUCKETS,
    SIBLINGS_BUCKETS,
};

/// Where the metrics say they come from (the `metrics` crate's target).
const METADATA: Metadata<'static> = Metadata::new("ringkv", Level::INFO, Some(module_path!()));

const _: () = assert!(
    !SECONDS_BUCKETS.is_empty()
        && !BYTES_BUCKETS.is_empty()
        && !SIBLINGS_BUCKETS.is_empty()
        && !BATCH_BUCKETS.is_empty()
);

/// One node's metrics: its own recorder, shared by the core loop, the servers and the
/// HTTP handler that renders it. Cloning shares it.
#[derive(Clone)]
pub struct NodeMetrics {
    recorder: Arc<PrometheusRecorder>,
}

impl NodeMetrics {
    /// A fresh recorder, every metric described, histograms with ringkv's buckets.
    pub fn new() -> NodeMetrics {
        let builder = PrometheusBuilder::new();
        let builder = with_buckets(builder, Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS);
        let builder = with_buckets(builder, Matcher::Full(OBJECT_BYTES.into()), BYTES_BUCKETS);
        let builder = with_buckets(
            builder,
            Matcher::Full(READ_SIBLINGS.into()),
            SIBLINGS_BUCKETS,
        );
        let builder = with_buckets(
            builder,
            Matcher::Full(GROUP_COMMIT_BATCH_INPUTS.into()),
            BATCH_BUCKETS,
        );
        let recorder = builder.build_recorder();
        for m in METRICS {
            let unit = if m.name.ends_with("_seconds") {
                Some(Unit::Seconds)
            } else if m.name.ends_with("_bytes") || m.name.ends_with("_bytes_total") {
                Some(Unit::Bytes)
            } else {
                None
            };
            let (name, help) = (m.name.into(), m.help.into());
            match m.kind {
                Kind::Counter => recorder.describe_counter(name, unit, help),
                Kind::Gauge => recorder.describe_gauge(name, unit, help),
                Kind::Histogram => recorder.describe_histogram(name, unit, help),
            }
        }
        NodeMetrics {
            recorder: Arc::new(recorder),
        }
    }

    /// The text exposition format (version 0.0.4) of every metric recorded so far.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// The counter `name` with `labels`.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name` with `labels`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`.
    pub fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// One answered request: its count and its latency.
    pub fn observe_request(
        &self,
        role: &'static str,
        op: &'static str,
        policy: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let labels = [
            ("role", role),
            ("op", op),
            ("policy", policy),
            ("outcome", outcome),
        ];
        self.counter(REQUESTS_TOTAL, &labels).increment(1);
        self.histogram(REQUEST_DURATION_SECONDS, &labels)
            .record(elapsed.as_secs_f64());
    }

    /// Counts one more open thing (a connection, a session) in gauge `open` and counter
    /// `total`, until the returned guard drops.
    pub fn open(
        &self,
        open: &'static str,
        total: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> OpenGuard {
        self.counter(total, labels).increment(1);
        let gauge = self.gauge(open, labels);
        gauge.increment(1.0);
        OpenGuard { gauge }
    }

    /// One completed group-commit persist, and the inputs it covered.
    pub fn observe_persist(&self, elapsed: Duration, inputs: u64) {
        self.histogram(FSYNC_DURATION_SECONDS, &[])
            .record(elapsed.as_secs_f64());
        self.histogram(GROUP_COMMIT_BATCH_INPUTS, &[])
            .record(inputs as f64);
    }
}

/// Holds one count in an "open now" gauge; dropping it takes the count back.
pub struct OpenGuard {
    gauge: Gauge,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

impl fmt::Debug for OpenGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenGuard").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics::new()
    }
}

impl fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

/// The msgpack size of an object as the peer protocol encodes it, counted without
/// building the bytes; `None` if it does not encode.
pub fn object_bytes(object: &crate::core::object::Object) -> Option<u64> {
    let mut counter = ByteCounter(0);
    rmp_serde::encode::write(&mut counter, object).ok()?;
    Some(counter.0)
}

/// A writer that only counts what it is given.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(k, v)| Label::from_static_parts(k, v))
        .collect();
    Key::from_parts(name, labels)
}

fn with_buckets(
    builder: PrometheusBuilder,
    matcher: Matcher,
    buckets: &[f64],
) -> PrometheusBuilder {
    builder
        .set_buckets_for_metric(matcher, buckets)
        // invariant: it fails only for empty buckets, and every bucket list is asserted non-empty above
        .expect("invariant: bucket lists are non-empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_in_one_process_render_only_their_own_figures() {
        let a = NodeMetrics::new();
        let b = NodeMetrics::new();
        a.observe_request(
            "coordinator",
            "get",
            "siblings",
            "ok",
            Duration::from_millis(3),
        );
        let text_a = a.render();
        let text_b = b.render();
        assert!(
            text_a.contains(
                r#"ringkv_requests_total{role="coordinator",op="get",policy="siblings",outcome="ok"} 1"#
            ),
            "{text_a}"
        );
        assert!(
            text_a.contains("# TYPE ringkv_request_duration_seconds histogram"),
            "{text_a}"
        );
        assert!(text_a.contains(r#"le="0.005""#), "{text_a}");
        assert!(!text_b.contains("ringkv_requests_total{"), "{text_b}");
    }

    #[test]
    fn an_open_guard_counts_until_it_drops() {
        let m = NodeMetrics::new();
        let labels = [("transport", "http")];
        let first = m.open(catalog::CONNECTIONS, catalog::CONNECTIONS_TOTAL, &labels);
        let second = m.open(catalog::CONNECTIONS, catalog::CONNECTIONS_TOTAL, &labels);
        assert!(
            m.render()
                .contains(r#"ringkv_connections{transport="http"} 2"#)
        );
        drop(first);
        drop(second);
        let text = m.render();
        assert!(
            text.contains(r#"ringkv_connections{transport="http"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ringkv_connections_total{transport="http"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn help_lines_come_from_the_catalog() {
        let m = NodeMetrics::new();
        m.gauge(catalog::HINTS_QUEUED, &[]).set(4.0);
        let text = m.render();
        assert!(
            text.contains("# HELP ringkv_hints_queued Hints held here"),
            "{text}"
        );
        assert!(text.contains("ringkv_hints_queued 4"), "{text}");
    }
}
