//! Replays the committed fuzz corpus under plain `cargo test`: the seeds
//! and every minimized input the fuzzers found (a panic, a hang, a huge
//! allocation), through the same harness the cargo-fuzz targets run
//! (`fuzz/harness.rs`, `fuzz/harness_store.rs`). A fixed bug whose input is
//! here cannot come back unnoticed.
//!
//! Layout: `engine/tests/fuzz_corpus/<target>/<file>`, one input per file.
//! Running the fuzzers: README.md, "Fuzzing".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../fuzz/harness.rs"]
mod harness;
#[path = "../../fuzz/harness_store.rs"]
mod harness_store;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `target`'s corpus; each must return, and quickly
/// (a debug build is ~20x slower than the fuzzers' release build, so a
/// second per input is generous yet catches the hangs libFuzzer reports).
fn replay(target: &str, min_inputs: usize, run: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= min_inputs,
        "{target}: {} input(s), expected at least {min_inputs}",
        files.len()
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(
            outcome.is_ok(),
            "{target}: {} panicked (replay: cargo fuzz run {target} {})",
            file.display(),
            file.display()
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{target}: {} took {:?}",
            file.display(),
            start.elapsed()
        );
    }
}

#[test]
fn plan_corpus() {
    replay("plan", 3, harness::plan);
}

#[test]
fn inventory_corpus() {
    replay("inventory", 2, harness::inventory_file);
}

#[test]
fn records_corpus() {
    replay("records", 3, harness::records);
}

#[test]
fn journal_corpus() {
    replay("journal", 2, harness_store::journal);
}
