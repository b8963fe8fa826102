//! Driving the load: the preload, then the timed run, with `concurrency` requests in
//! flight over the client's one QUIC connection.
//!
//! Workers are tokio tasks that each take the next operation number from one shared
//! counter, so a run of `--ops N` performs exactly N requests however fast each worker
//! goes, and a slow request holds back only its own worker. Each worker has its own
//! seeded RNG, so a run's key sequence depends only on the seed and the concurrency.
//! The main task samples the recorder for the progress bar and the per-second timeline,
//! and stops the workers on Ctrl-C, so an interrupted run still reports.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringkv::client::ClientError;
use ringkv::proto::Key;
use tokio::task::JoinSet;

use crate::bench::BenchError;
use crate::bench::keys::KeyChooser;
use crate::bench::latency_log::LatencyLog;
use crate::bench::progress::ProgressBar;
use crate::bench::stats::{ErrorCounts, Percentiles, Recorder, TIMELINE_POINTS_MAX, TimelinePoint};
use crate::bench::workload::{OpKind, Target, Workload};

/// How often the progress bar is redrawn and the clock checked.
pub const TICK_MS: u64 = 200;
/// Length of one timeline interval.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;
/// Ticks the progress bar's live rate averages over (one second of them).
const RATE_WINDOW_TICKS: usize = (SAMPLE_INTERVAL_MS / TICK_MS) as usize;

/// What to run, fully decided.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload: Workload,
    /// Requests to perform; `None` when only the duration bounds the run.
    pub ops: Option<u64>,
    pub duration: Option<Duration>,
    pub concurrency: usize,
    pub keys: u64,
    pub chooser: KeyChooser,
    pub seed: u64,
    pub preload: bool,
}

/// What a timed run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Requests that finished, successful or not.
    pub ops: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub secs: f64,
    pub latency: Percentiles,
    /// Reads, updates and read-modify-writes performed.
    pub op_counts: (u64, u64, u64),
    pub timeline: Vec<TimelinePoint>,
    /// Keys written before timing started (0 without a preload).
    pub preloaded: u64,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
}

/// State the workers share with the sampler.
#[derive(Debug)]
struct Shared {
    recorder: Mutex<Recorder>,
    issued: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            recorder: Mutex::new(Recorder::new()),
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// The recorder; a worker that panicked mid-record leaves counts that are still valid.
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next operation number, or `None` once `limit` were handed out or the run stops.
    fn next(&self, limit: u64) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        (i < limit).then_some(i)
    }
}

/// Writes every key a read workload will touch, `concurrency` at a time. Stops at the
/// first failure: reads of keys that were never written would measure nothing useful.
pub async fn preload(target: &Target, plan: &Plan) -> Result<u64, BenchError> {
    let shared = Shared::new();
    let first_error: Arc<Mutex<Option<(Key, ClientError)>>> = Arc::new(Mutex::new(None));
    let bar = ProgressBar::new("preload", Some(plan.keys), None);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency {
        let (shared, target, first_error) = (shared.clone(), target.clone(), first_error.clone());
        let (workload, keys) = (plan.workload, plan.keys);
        workers.spawn(async move {
            while let Some(i) = shared.next(keys) {
                let key = workload.key(&target.bucket, i);
                let begun = Instant::now();
                let result = target.preload(workload, &key).await;
                shared.recorder().record(
                    OpKind::Update,
                    begun.elapsed(),
                    result.as_ref().map(drop),
                );
                if let Err(err) = result {
                    shared.stop.store(true, Ordering::Relaxed);
                    let mut slot = first_error.lock().unwrap_or_else(PoisonError::into_inner);
                    slot.get_or_insert((key, err));
                }
            }
        });
    }
    drive(&mut workers, &shared, &bar, started, None).await?;
    bar.finish();
    let taken = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some((key, source)) = taken {
        return Err(BenchError::Preload {
            key: key.to_string(),
            done: shared.recorder().ok(),
            keys: plan.keys,
            source: Box::new(source),
        });
    }
    let written = shared.recorder().ok();
    Ok(written)
}

/// The timed run; every request is also noted in `log` when there is one.
pub async fn run(
    target: &Target,
    plan: &Plan,
    log: Option<Arc<LatencyLog>>,
) -> Result<Outcome, BenchError> {
    let shared = Shared::new();
    let limit = plan.ops.unwrap_or(u64::MAX);
    let bar = ProgressBar::new("run", plan.ops, plan.duration);
    let chooser = Arc::new(plan.chooser.clone());
    let started = Instant::now();
    if let Some(log) = &log {
        log.begin(started)
            .map_err(|source| BenchError::LatencyLog {
                path: log.path().to_owned(),
                source,
            })?;
    }
    let mut workers = JoinSet::new();
    for worker in 0..plan.concurrency {
        let (shared, target, chooser) = (shared.clone(), target.clone(), chooser.clone());
        let log = log.clone();
        let workload = plan.workload;
        // Distinct, reproducible streams: the seed and the worker number decide each.
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        rng.set_stream(worker as u64);
        workers.spawn(async move {
            while shared.next(limit).is_some() {
                let key = workload.key(&target.bucket, chooser.next(&mut rng));
                let kind = workload.pick(&mut rng);
                let begun = Instant::now();
                let result = target.run(kind, &key).await;
                let latency = begun.elapsed();
                if let Some(log) = &log {
                    log.record(begun, latency, result.is_ok());
                }
                shared
                    .recorder()
                    .record(kind, latency, result.as_ref().map(drop));
            }
        });
    }
    let (timeline, interrupted) =
        drive(&mut workers, &shared, &bar, started, plan.duration).await?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish();
    let recorder = shared.recorder();
    let errors = recorder.errors().clone();
    Ok(Outcome {
        ops: recorder.ok() + errors.total(),
        ok: recorder.ok(),
        errors,
        secs,
        latency: recorder.percentiles(),
        op_counts: recorder.op_counts(),
        timeline,
        preloaded: 0,
        interrupted,
    })
}

/// Waits for the workers while drawing progress, closing timeline intervals, enforcing
/// `duration` and watching for Ctrl-C. Returns the timeline and whether Ctrl-C ended it.
async fn drive(
    workers: &mut JoinSet<()>,
    shared: &Shared,
    bar: &ProgressBar,
    started: Instant,
    duration: Option<Duration>,
) -> Result<(Vec<TimelinePoint>, bool), BenchError> {
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut watching_ctrl_c = true;
    let mut timeline = Vec::new();
    let sample_s = Duration::from_millis(SAMPLE_INTERVAL_MS).as_secs_f64();
    let tick_s = Duration::from_millis(TICK_MS).as_secs_f64();
    let mut last_sample_s = 0.0;
    // (seconds, successful requests) at the last ticks, for the live rate.
    let mut recent: VecDeque<(f64, u64)> = VecDeque::with_capacity(RATE_WINDOW_TICKS + 1);
    recent.push_back((0.0, 0));
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok(())) => {}
                Some(Err(err)) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    workers.abort_all();
                    return Err(BenchError::Worker(err.to_string()));
                }
            },
            _ = tick.tick() => {
                let elapsed = started.elapsed();
                if duration.is_some_and(|d| elapsed >= d) {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                let now_s = elapsed.as_secs_f64();
                let mut recorder = shared.recorder();
                // Half a tick of slack: ticks jitter, and a second must not become 1.2 s.
                let due = now_s - last_sample_s + tick_s / 2.0 >= sample_s;
                if due && timeline.len() < TIMELINE_POINTS_MAX {
                    timeline.push(recorder.take_interval(now_s, now_s - last_sample_s));
                    last_sample_s = now_s;
                }
                let progress = recorder.progress();
                drop(recorder);
                recent.push_back((now_s, progress.ok));
                if recent.len() > RATE_WINDOW_TICKS + 1 {
                    recent.pop_front();
                }
                let rate = match (recent.front(), recent.back()) {
                    (Some((t0, ok0)), Some((t1, ok1))) if t1 > t0 => {
                        (ok1 - ok0) as f64 / (t1 - t0)
                    }
                    _ => 0.0,
                };
                bar.update(progress.ok + progress.errors, progress.errors, elapsed, rate);
            },
            result = &mut ctrl_c, if watching_ctrl_c => {
                watching_ctrl_c = false;
                // Without a signal handler Ctrl-C cannot be caught; the run just goes on.
                if result.is_ok() {
                    interrupted = true;
                    shared.stop.store(true, Ordering::Relaxed);
                }
            },
        }
    }
    let now_s = started.elapsed().as_secs_f64();
    let mut recorder = shared.recorder();
    if !recorder.interval_is_empty() && timeline.len() < TIMELINE_POINTS_MAX {
        timeline.push(recorder.take_interval(now_s, now_s - last_sample_s));
    }
    Ok((timeline, interrupted))
}
