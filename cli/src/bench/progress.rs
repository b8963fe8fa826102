//! The live progress bar on stderr.
//!
//! A bar is for a person watching: when stderr is a file or a pipe (a script, CI, the
//! comparison script) it would only fill logs with carriage returns, so it is drawn only
//! when stderr is a terminal, and never touches stdout, where `--json` writes its object.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// Width of the bar in characters.
pub const BAR_WIDTH: usize = 30;

/// Draws one line, redrawn in place.
#[derive(Debug, Clone)]
pub struct ProgressBar {
    enabled: bool,
    label: &'static str,
    total_ops: Option<u64>,
    duration: Option<Duration>,
}

impl ProgressBar {
    /// A bar that draws only if stderr is a terminal. `total_ops` and `duration` bound the
    /// run; the bar shows whichever is closer to done.
    pub fn new(label: &'static str, total_ops: Option<u64>, duration: Option<Duration>) -> Self {
        ProgressBar {
            enabled: io::stderr().is_terminal(),
            label,
            total_ops,
            duration,
        }
    }

    /// Redraws the line: `done` requests finished (`errors` of them failed) after
    /// `elapsed`, at `rate` successful requests per second lately.
    pub fn update(&self, done: u64, errors: u64, elapsed: Duration, rate: f64) {
        if !self.enabled {
            return;
        }
        let line = self.line(done, errors, elapsed, rate);
        let mut err = io::stderr().lock();
        // A terminal that went away is no reason to stop the run.
        let _ = write!(err, "\r{line}\x1b[K").and_then(|()| err.flush());
    }

    /// Clears the line so the report starts on a clean one.
    pub fn finish(&self) {
        if !self.enabled {
            return;
        }
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[K").and_then(|()| err.flush());
    }

    /// The text of the bar, without the terminal control codes.
    pub fn line(&self, done: u64, errors: u64, elapsed: Duration, rate: f64) -> String {
        let by_ops = self
            .total_ops
            .map(|total| done as f64 / total.max(1) as f64);
        let by_time = self
            .duration
            .map(|d| elapsed.as_secs_f64() / d.as_secs_f64().max(f64::MIN_POSITIVE));
        let fraction = match (by_ops, by_time) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0.0,
        }
        .clamp(0.0, 1.0);
        let filled = (fraction * BAR_WIDTH as f64).round() as usize;
        let count = match self.total_ops {
            Some(total) => format!("{done}/{total}"),
            None => done.to_string(),
        };
        format!(
            "{:<7} [{}{}] {:>3.0}% {count} ops  {rate:.0} ops/s  {errors} errors  {:.1} s",
            self.label,
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            fraction * 100.0,
            elapsed.as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_whichever_bound_is_closer() {
        let bar = ProgressBar::new("run", Some(1000), Some(Duration::from_secs(10)));
        let line = bar.line(250, 3, Duration::from_secs(5), 51_234.4);
        assert!(line.starts_with("run     ["), "{line}");
        assert!(line.contains(" 50% 250/1000 ops"), "{line}");
        assert!(line.contains("51234 ops/s"), "{line}");
        assert!(line.contains("3 errors"), "{line}");
        assert_eq!(line.matches('#').count(), BAR_WIDTH / 2);

        let by_ops = ProgressBar::new("preload", Some(4), None);
        let line = by_ops.line(4, 0, Duration::from_millis(10), 0.0);
        assert!(line.contains("100% 4/4 ops"), "{line}");
        assert_eq!(line.matches('#').count(), BAR_WIDTH);
    }
}
