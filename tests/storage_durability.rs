//! Crash durability of the fjall engine: no acknowledged write is lost when the process
//! dies without any clean shutdown.
//!
//! The test re-executes its own binary to run only `durability_child_writer`, which
//! writes keys and prints `acked <i>` once write `i` is durable (after each write under
//! `always`; after a `persist()` covering a group of writes under `group`, the way the
//! node driver acks). The parent reads a bounded number of acks, SIGKILLs the child
//! mid-stream, reopens the directory and checks every acked key.
//!
//! What this can and cannot prove: SIGKILL loses the process, not the OS page cache, so
//! it checks that acks come after the write reached the journal and that fjall's journal
//! recovery brings back every acked write, including a torn tail. Losing the page cache
//! (power loss) cannot be simulated in a test; that is what the fsync in
//! `PersistMode::SyncAll` is for.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ringkv::storage::{FjallStorage, Rmw, Space, Storage, SyncMode};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Name of the test function the parent runs in the child process.
const CHILD_TEST: &str = "durability_child_writer";
/// Tells the child where the database lives; unset means "not a child".
const DIR_ENV: &str = "RINGKV_DURABILITY_DIR";
/// Tells the child which sync mode to open with.
const SYNC_ENV: &str = "RINGKV_DURABILITY_SYNC";
/// The child stops on its own after this many writes, so it can never run forever.
const CHILD_WRITES_MAX: u64 = 5_000;
/// The parent kills the child after reading this many acks (well before it finishes).
const KILL_AFTER_ACKS: usize = 120;
/// Writes per group commit in `group` mode.
const GROUP_WRITES: usize = 8;
/// Longest the parent waits for the child's acks, and then for its pipe to close.
const CHILD_TIMEOUT_MS: u64 = 60_000;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 64) as usize)).into_bytes()
}

/// Parses a complete `acked <i>` line; anything else (libtest chatter, a line torn by
/// the kill) is not an ack.
fn parse_ack(line: &str) -> Option<u64> {
    line.strip_suffix('\n')?
        .strip_prefix("acked ")?
        .parse()
        .ok()
}

fn crash_keeps_acked_writes(sync: SyncMode) -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env::current_exe()?)
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .env(SYNC_ENV, sync.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout pipe")?;

    // A thread turns the blocking pipe into a channel the parent can wait on with a
    // timeout. It ends when the pipe closes, i.e. when the child is dead.
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = Instant::now() + Duration::from_millis(CHILD_TIMEOUT_MS);
    let mut acked = Vec::new();
    let mut child_ended_early = false;
    while acked.len() < KILL_AFTER_ACKS {
        match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => acked.extend(parse_ack(&line)),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => {
                child_ended_early = true;
                break;
            }
        }
    }
    child.kill()?; // SIGKILL on unix: no destructor, no flush, no journal sync.
    let status = child.wait()?;

    // Acks printed before the kill but not read yet count too.
    loop {
        match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => acked.extend(parse_ack(&line)),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => return Err("child's stdout did not close".into()),
        }
    }
    reader.join().map_err(|_| "stdout reader panicked")?;

    assert!(
        !child_ended_early,
        "the child exited on its own ({status}) after {} acks; run `{CHILD_TEST}` with \
         {DIR_ENV} set to see why",
        acked.len()
    );
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "timed out after {CHILD_TIMEOUT_MS} ms with {} of {KILL_AFTER_ACKS} acks",
        acked.len()
    );
    assert!(!status.success(), "the child was killed, not finished");
    let expected: Vec<u64> = (0..acked.len() as u64).collect();
    assert_eq!(acked, expected, "acks arrive in write order, none skipped");

    let reopened = FjallStorage::open(dir.path(), SyncMode::Always)?;
    for &i in &acked {
        assert_eq!(
            reopened.get(Space::Data, &key(i))?,
            Some(value(i)),
            "acked write {i} lost after SIGKILL under sync={sync}"
        );
    }
    Ok(())
}

#[test]
fn sigkill_keeps_every_acked_write_with_sync_always() -> TestResult {
    crash_keeps_acked_writes(SyncMode::Always)
}

#[test]
fn sigkill_keeps_every_acked_write_with_group_commit() -> TestResult {
    crash_keeps_acked_writes(SyncMode::Group)
}

/// The writer half, run only as a child process by the tests above.
#[test]
#[ignore = "child process of the sigkill durability tests, which run it themselves"]
fn durability_child_writer() -> TestResult {
    let dir = env::var_os(DIR_ENV).ok_or("set RINGKV_DURABILITY_DIR to a scratch directory")?;
    let sync: SyncMode = env::var(SYNC_ENV)?.parse()?;
    let storage = FjallStorage::open(Path::new(&dir), sync)?;
    let mut out = std::io::stdout().lock();
    // libtest has printed "test durability_child_writer ... " without a newline; end that
    // line so the first ack starts a line of its own.
    writeln!(out)?;
    let mut unacked = Vec::with_capacity(GROUP_WRITES);
    for i in 0..CHILD_WRITES_MAX {
        // Alternate blind puts and read-modify-writes: both paths must be durable.
        if i % 2 == 0 {
            storage.put(Space::Data, &key(i), value(i))?;
        } else {
            storage.update(Space::Data, &key(i), &mut |_| Rmw::Put(value(i)))?;
        }
        unacked.push(i);
        if sync == SyncMode::Always || unacked.len() == GROUP_WRITES {
            storage.persist()?;
            for acked in unacked.drain(..) {
                writeln!(out, "acked {acked}")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
