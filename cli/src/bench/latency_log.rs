//! `ringkv bench --latency-out FILE`: one line per timed request — when it started, how
//! long it took, whether it succeeded — so a script can take percentiles over any window
//! of a run.
//!
//! The whole-run histogram and the per-second timeline (p99 only) cannot isolate, say,
//! the ten seconds after a node was killed; raw records can, and with p99.9. The file
//! starts with the run's start as Unix milliseconds, written and flushed as the timed run
//! begins, so an outside script can both time an event (a `kill -9`) against the run and
//! place it among the records afterwards. Records are kept in memory and written after the
//! run, so the file never delays a request; at most [`LATENCY_RECORDS_MAX`] are kept and
//! the last line says how many were dropped beyond that.
//!
//! The format, after the start line: a `start_us,latency_us,ok` header, then one line per
//! request (`ok` is 1 or 0), in the order the requests finished, then `# dropped=N`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most request records kept in memory (24 bytes each: 120 MB at most).
pub const LATENCY_RECORDS_MAX: usize = 5_000_000;
/// What the first line starts with; the run's start in Unix milliseconds follows.
pub const RUN_START_PREFIX: &str = "# run_start_unix_ms=";
/// The column header after the start line.
pub const COLUMNS: &str = "start_us,latency_us,ok";

/// One timed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Microseconds from the run's start to the request's start.
    pub start_us: u64,
    pub latency_us: u64,
    pub ok: bool,
}

/// The records of one run and the file they go to.
#[derive(Debug)]
pub struct LatencyLog {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    started: Mutex<Option<Instant>>,
    records: Mutex<Vec<Record>>,
    dropped: AtomicU64,
}

impl LatencyLog {
    /// Creates (or truncates) `path` now, so a bad path fails before any load is sent.
    pub fn create(path: &Path) -> io::Result<LatencyLog> {
        Ok(LatencyLog {
            path: path.to_owned(),
            out: Mutex::new(BufWriter::new(File::create(path)?)),
            started: Mutex::new(None),
            records: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the timed run's start: writes and flushes the start line.
    pub fn begin(&self, started: Instant) -> io::Result<()> {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        writeln!(out, "{RUN_START_PREFIX}{unix_ms}")?;
        writeln!(out, "{COLUMNS}")?;
        out.flush()
    }

    /// Notes one request that started at `begun` and took `latency`.
    pub fn record(&self, begun: Instant, latency: Duration, ok: bool) {
        let started = *self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(started) = started else {
            return;
        };
        let record = Record {
            start_us: micros(begun.saturating_duration_since(started)),
            latency_us: micros(latency),
            ok,
        };
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if records.len() < LATENCY_RECORDS_MAX {
            records.push(record);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes every record and the dropped count, and flushes the file.
    pub fn finish(&self) -> io::Result<()> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        write_records(&mut *out, &records, self.dropped.load(Ordering::Relaxed))?;
        out.flush()
    }
}

/// The record lines and the closing dropped count.
pub fn write_records(out: &mut impl Write, records: &[Record], dropped: u64) -> io::Result<()> {
    for r in records {
        writeln!(out, "{},{},{}", r.start_us, r.latency_us, u8::from(r.ok))?;
    }
    writeln!(out, "# dropped={dropped}")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_the_start_line_then_one_line_per_request_then_the_dropped_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.csv");
        let log = LatencyLog::create(&path).unwrap();
        let started = Instant::now();
        // Before the run begins nothing is recorded (the preload is not the run).
        log.record(started, Duration::from_millis(1), true);
        log.begin(started).unwrap();
        let head = std::fs::read_to_string(&path).unwrap();
        let unix_ms: u64 = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix(RUN_START_PREFIX))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no start line in {head:?}"));
        assert!(unix_ms > 0);
        log.record(
            started + Duration::from_micros(1_500),
            Duration::from_micros(250),
            true,
        );
        log.record(
            started + Duration::from_secs(2),
            Duration::from_millis(2_000),
            false,
        );
        log.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [COLUMNS, "1500,250,1", "2000000,2000000,0", "# dropped=0"]
        );
    }

    #[test]
    fn the_dropped_count_closes_the_records() {
        let mut out = Vec::new();
        let record = Record {
            start_us: 7,
            latency_us: 9,
            ok: true,
        };
        write_records(&mut out, &[record], 3).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "7,9,1\n# dropped=3\n");
    }
}
