//! Golden simulator histories: the behaviour witness for refactors.
//!
//! For a fixed set of seeds per policy (half of them deferring persists, all with gossip
//! on), the rendered history of the sweep's scenario, its world statistics and its
//! verdict are kept under `tests/golden/`. A change that only moves code must leave
//! every byte as it was; a change that means to alter behaviour regenerates the files in
//! a commit of its own, with `RINGKV_GOLDEN_WRITE=1 cargo test --test sim_golden`, and
//! says why in its message.

use std::fmt::Write as _;
use std::path::PathBuf;

use ringkv::core::object::Policy;
use ringkv::sim::run_seed;

/// Seeds rendered per policy.
const GOLDEN_SEEDS: u64 = 50;

fn golden_path(policy: Policy) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.txt", policy.name()))
}

/// The text kept for one policy: every seed's history, statistics and verdict.
fn render(policy: Policy) -> String {
    let mut out = String::new();
    for seed in 0..GOLDEN_SEEDS {
        let run = run_seed(seed, policy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let _ = writeln!(out, "=== seed {seed}");
        out.push_str(&run.history.render());
        let _ = writeln!(out, "stats {:?}", run.stats);
        let _ = writeln!(out, "failures {:?}", run.failures);
    }
    out
}

fn check(policy: Policy) {
    let path = golden_path(policy);
    let text = render(policy);
    if std::env::var_os("RINGKV_GOLDEN_WRITE").is_some() {
        std::fs::write(&path, &text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); generate it with RINGKV_GOLDEN_WRITE=1",
            path.display()
        )
    });
    if text == golden {
        return;
    }
    let (line, (want, got)) = golden
        .lines()
        .zip(text.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((
            golden.lines().count().min(text.lines().count()),
            ("<end of file>", "<end of file>"),
        ));
    panic!(
        "{policy} history differs from {} at line {}:\n  golden: {want}\n  now:    {got}\n\
         ({} golden lines, {} now)",
        path.display(),
        line + 1,
        golden.lines().count(),
        text.lines().count()
    );
}

#[test]
fn golden_siblings() {
    check(Policy::Siblings);
}

#[test]
fn golden_lww() {
    check(Policy::Lww);
}

#[test]
fn golden_counter() {
    check(Policy::Counter);
}

#[test]
fn golden_set() {
    check(Policy::Set);
}

#[test]
fn golden_map() {
    check(Policy::Map);
}

#[test]
fn golden_hll() {
    check(Policy::Hll);
}
