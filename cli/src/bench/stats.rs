//! What a run measured: latencies in HDR histograms, errors by kind, and a per-second
//! timeline of throughput and p99.
//!
//! Every worker records into one [`Recorder`] behind a mutex: a record is a few counter
//! bumps (well under a microsecond) against requests that take tens of microseconds or
//! more, so sharding it per worker would buy nothing measurable. A sampler takes the
//! per-interval histogram once a second for the timeline, the progress bar and the plot.

use std::time::Duration;

use hdrhistogram::Histogram;
use ringkv::client::ClientError;
use ringkv::proto::RequestError;

use crate::bench::workload::OpKind;

/// Highest latency the histograms track exactly; slower requests count as this.
pub const LATENCY_US_MAX: u64 = 120_000_000;
/// Significant decimal digits of the histograms (0.1% relative error).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Points kept for the timeline (one per second): a day of samples.
pub const TIMELINE_POINTS_MAX: usize = 86_400;

/// Why a request failed, as the report groups errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The coordinator did not get W acks or R replies.
    Quorum,
    /// The node did not answer in time, could not be reached, or its coordinator did not.
    Timeout,
    /// The node refused the request (overloaded, or not allowed).
    Refused,
    Other,
}

/// Counts of failed requests by [`ErrorKind`], with the first message of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorCounts {
    pub quorum: u64,
    pub timeout: u64,
    pub refused: u64,
    pub other: u64,
    /// The first error message seen of each kind, in the order they happened.
    pub samples: Vec<(ErrorKind, String)>,
}

/// One second (or the last part of one) of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelinePoint {
    /// Seconds since the timed run started, at the end of this interval.
    pub t_s: f64,
    /// Successful requests per second in this interval.
    pub ops_per_sec: f64,
    /// p99 latency of this interval's successful requests (0 when there were none).
    pub p99_ms: f64,
    pub errors: u64,
}

/// Latency percentiles of successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Live counters and histograms of a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    total: Histogram<u64>,
    interval: Histogram<u64>,
    ok: u64,
    errors: ErrorCounts,
    interval_errors: u64,
    reads: u64,
    updates: u64,
    rmws: u64,
}

/// A snapshot for the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub ok: u64,
    pub errors: u64,
}

impl ErrorKind {
    /// Groups a client error by what its last attempt met; quorum failures carry their own
    /// counts and node names.
    pub fn of(err: &ClientError) -> ErrorKind {
        match err.last_attempt() {
            ClientError::Request(RequestError::QuorumFailed(_)) => ErrorKind::Quorum,
            ClientError::Net { .. } | ClientError::Request(RequestError::Forward { .. }) => {
                ErrorKind::Timeout
            }
            ClientError::Refused { .. } | ClientError::Request(RequestError::Overloaded { .. }) => {
                ErrorKind::Refused
            }
            _ => ErrorKind::Other,
        }
    }

    /// The name in `errors_by_kind`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Quorum => "quorum",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "refused",
            ErrorKind::Other => "other",
        }
    }

    /// How the human report names the kind.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Quorum => "quorum failed",
            ErrorKind::Timeout => "timeout/unreachable",
            ErrorKind::Refused => "refused",
            ErrorKind::Other => "other",
        }
    }
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.quorum + self.timeout + self.refused + self.other
    }

    /// Every kind with its count, in report order.
    pub fn by_kind(&self) -> [(ErrorKind, u64); 4] {
        [
            (ErrorKind::Quorum, self.quorum),
            (ErrorKind::Timeout, self.timeout),
            (ErrorKind::Refused, self.refused),
            (ErrorKind::Other, self.other),
        ]
    }

    fn add(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        let count = match kind {
            ErrorKind::Quorum => &mut self.quorum,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Other => &mut self.other,
        };
        *count += 1;
        if *count == 1 {
            self.samples.push((kind, message()));
        }
    }
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        let histogram = || {
            // invariant: constant bounds, 1 <= LATENCY_US_MAX and 3 significant digits are valid.
            Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
                .expect("invariant: valid constant histogram bounds")
        };
        Recorder {
            total: histogram(),
            interval: histogram(),
            ok: 0,
            errors: ErrorCounts::default(),
            interval_errors: 0,
            reads: 0,
            updates: 0,
            rmws: 0,
        }
    }

    /// Records one finished request.
    pub fn record(&mut self, kind: OpKind, latency: Duration, result: Result<(), &ClientError>) {
        match kind {
            OpKind::Read => self.reads += 1,
            OpKind::Update => self.updates += 1,
            OpKind::ReadModifyWrite => self.rmws += 1,
        }
        match result {
            Ok(()) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                let us = us.clamp(1, LATENCY_US_MAX);
                self.total.saturating_record(us);
                self.interval.saturating_record(us);
                self.ok += 1;
            }
            Err(err) => {
                self.errors.add(ErrorKind::of(err), || err.to_string());
                self.interval_errors += 1;
            }
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            ok: self.ok,
            errors: self.errors.total(),
        }
    }

    /// Closes the interval that lasted `interval_s` and ended `t_s` into the run.
    pub fn take_interval(&mut self, t_s: f64, interval_s: f64) -> TimelinePoint {
        let count = self.interval.len();
        let point = TimelinePoint {
            t_s,
            ops_per_sec: if interval_s > 0.0 {
                count as f64 / interval_s
            } else {
                0.0
            },
            p99_ms: Percentiles::of(&self.interval).p99_ms,
            errors: self.interval_errors,
        };
        self.interval.reset();
        self.interval_errors = 0;
        point
    }

    /// True when the current interval saw any request finish.
    pub fn interval_is_empty(&self) -> bool {
        self.interval.is_empty() && self.interval_errors == 0
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.total)
    }

    /// Requests by kind: reads, updates, read-modify-writes.
    pub fn op_counts(&self) -> (u64, u64, u64) {
        (self.reads, self.updates, self.rmws)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::NodeId;
    use ringkv::proto::QuorumFailure;

    fn quorum_failure() -> ClientError {
        ClientError::Request(RequestError::QuorumFailed(Box::new(QuorumFailure {
            op: "put".to_owned(),
            key: "bench/k1".to_owned(),
            needed: 3,
            n: 3,
            strict: true,
            acked: vec![NodeId::new("n1"), NodeId::new("n2")],
            failed: Vec::new(),
            timed_out: Vec::new(),
            unreachable: vec![NodeId::new("n3")],
            up: None,
        })))
    }

    #[test]
    fn errors_are_grouped_by_kind_with_the_first_message_kept() {
        let refused = ClientError::Refused {
            addr: "127.0.0.1:1".parse().unwrap(),
            reason: "client certificates may not send peer messages".to_owned(),
        };
        let other = ClientError::BadContext {
            reason: "not base64".to_owned(),
        };
        let mut rec = Recorder::new();
        let ms = Duration::from_millis(1);
        rec.record(OpKind::Update, ms, Err(&quorum_failure()));
        rec.record(OpKind::Update, ms, Err(&quorum_failure()));
        rec.record(OpKind::Read, ms, Err(&refused));
        rec.record(OpKind::Read, ms, Err(&other));
        rec.record(OpKind::Read, ms, Ok(()));
        let errors = rec.errors();
        assert_eq!(
            (errors.quorum, errors.timeout, errors.refused, errors.other),
            (2, 0, 1, 1)
        );
        assert_eq!(errors.total(), 4);
        assert_eq!(errors.samples.len(), 3);
        assert_eq!(errors.samples[0].0, ErrorKind::Quorum);
        assert!(
            errors.samples[0].1.contains("n3"),
            "{}",
            errors.samples[0].1
        );
        assert_eq!(rec.ok(), 1);
        assert_eq!(rec.op_counts(), (3, 2, 0));
    }

    #[test]
    fn percentiles_and_intervals_come_from_successful_requests() {
        let mut rec = Recorder::new();
        for us in 1..=1000_u64 {
            rec.record(OpKind::Read, Duration::from_micros(us * 10), Ok(()));
        }
        rec.record(OpKind::Read, Duration::from_secs(1), Err(&quorum_failure()));
        let p = rec.percentiles();
        assert!((p.p50_ms - 5.0).abs() < 0.05, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.05, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.05, "{p:?}");
        assert!(p.p50_ms <= p.p99_ms && p.p99_ms <= p.p999_ms && p.p999_ms <= p.max_ms);

        let point = rec.take_interval(2.0, 0.5);
        assert_eq!(point.ops_per_sec, 2000.0);
        assert_eq!(point.errors, 1);
        assert!((point.p99_ms - 9.9).abs() < 0.05);
        assert!(rec.interval_is_empty());
        let empty = rec.take_interval(3.0, 1.0);
        assert_eq!(
            (empty.ops_per_sec, empty.p99_ms, empty.errors),
            (0.0, 0.0, 0)
        );
        // The run totals survive the interval reset.
        assert_eq!(rec.percentiles(), p);
        assert_eq!(
            Percentiles::of(&Recorder::new().total),
            Percentiles::default()
        );
    }

    #[test]
    fn latencies_beyond_the_range_are_clamped_not_lost() {
        let mut rec = Recorder::new();
        rec.record(OpKind::Update, Duration::from_secs(3600), Ok(()));
        rec.record(OpKind::Update, Duration::ZERO, Ok(()));
        assert_eq!(rec.ok(), 2);
        assert!(rec.percentiles().max_ms >= (LATENCY_US_MAX / 1000) as f64 * 0.99);
    }
}
