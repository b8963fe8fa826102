//! Request counts in rotating windows, so hot keys describe recent traffic.
//!
//! A count-min sketch only ever grows; a key that was hot yesterday would stay on top
//! forever. Two windows of `window_ms` each — the current one and the one before — bound
//! what the hot-key list remembers to between one and two windows, at the cost of two
//! sketches. Rotation is lazy (on the next observation or report) and by whole windows:
//! after a silence longer than two windows both are empty.

use ringkv_sketches::{CountMin, TopK};

use crate::core::stats::{
    HOT_KEYS_DELTA, HOT_KEYS_EPSILON, HOT_KEYS_K, HOT_KEYS_SEED, StatsError, write_sketch_item,
};
use crate::proto::Key;

/// The current and the previous window of request counts, each with its hot-key candidates.
#[derive(Clone, Debug)]
pub struct RequestWindows {
    window_ms: u64,
    /// Monotonic start of the current window.
    current_start_ms: u64,
    current: TopK,
    previous: TopK,
    /// The item of the last observed key; reused so counting a request allocates nothing.
    item: Vec<u8>,
}

impl RequestWindows {
    /// Empty windows of `window_ms` (at least 1), the current one starting at `now_ms`.
    pub fn new(window_ms: u64, now_ms: u64) -> Result<RequestWindows, StatsError> {
        if window_ms == 0 {
            return Err(StatsError::ZeroWindow);
        }
        let sketch = CountMin::new(HOT_KEYS_EPSILON, HOT_KEYS_DELTA, HOT_KEYS_SEED)
            .map_err(|e| StatsError::BadSketchSetting(Box::new(e)))?;
        let current =
            TopK::new(HOT_KEYS_K, sketch).map_err(|e| StatsError::BadSketchSetting(Box::new(e)))?;
        Ok(RequestWindows {
            window_ms,
            current_start_ms: now_ms,
            previous: current.cleared(),
            current,
            item: Vec::new(),
        })
    }

    /// Counts one request for `key` at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, key: &Key) {
        self.rotate(now_ms);
        write_sketch_item(&mut self.item, key);
        self.current.observe(&self.item, 1);
    }

    /// Moves to the window holding `now_ms`: the current window becomes the previous one if
    /// exactly one window ended, and both start empty if more did. A time before the
    /// current window's start (which a monotonic clock never gives) changes nothing.
    pub fn rotate(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.current_start_ms);
        let ended = elapsed / self.window_ms;
        if ended == 0 {
            return;
        }
        let fresh = self.current.cleared();
        self.previous = if ended == 1 {
            std::mem::replace(&mut self.current, fresh)
        } else {
            self.current = fresh;
            self.current.cleared()
        };
        self.current_start_ms += ended * self.window_ms;
    }

    /// The window length.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// How long the current window has run at `now_ms` (call [`Self::rotate`] first).
    pub fn current_age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.current_start_ms)
    }

    /// The current window's counts and candidates.
    pub fn current(&self) -> &TopK {
        &self.current
    }

    /// The previous window's counts and candidates.
    pub fn previous(&self) -> &TopK {
        &self.previous
    }

    /// Both windows as one tracker: the traffic of the last one to two windows.
    pub fn recent(&self) -> TopK {
        let mut recent = self.current.clone();
        // Both windows were built from the same parameters, so the merge cannot fail; if
        // it ever did, the current window alone is still a correct (shorter) view.
        if let Err(e) = recent.merge(&self.previous) {
            tracing::warn!(error = %e, "request windows do not merge; reporting the current one only");
            return self.current.clone();
        }
        recent
    }
}
