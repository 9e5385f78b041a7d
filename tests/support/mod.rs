//! Helpers shared by the CLI integration tests (tests/cli_*.rs), so that
//! every test runs the built binary in the same controlled environment.
//! Each tests/*.rs is its own crate and includes this with `mod support;`;
//! a crate that uses only some helpers would warn about the rest, hence the
//! `dead_code` allowance. A file that needs a different environment or
//! flags builds on [`cmd`] / [`cmd_in`] locally rather than copying them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

/// Runs the tests of one file one at a time: a store's lock is an `flock`
/// on an open file, and a child spawned by a parallel test could inherit
/// the descriptor between its fork and exec (holding a lock a test expects
/// free); servers, runs and hostile scripts also share the machine's two
/// cores, and the timing assertions ("quickly") need them. Each test crate
/// gets its own mutex.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes [`SERIAL`]; a test that panicked while holding it does not fail
/// the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The built `drplan` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_drplan")
}

/// A file shipped in the repository's plans/ directory.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(name)
}

/// The shipped three-tier plan most tests run.
pub fn plan() -> PathBuf {
    shipped("three-tier.yaml")
}

/// drplan with `args` in the tests' environment: no data directory from
/// the caller's environment (a test must never touch a real one), a fixed
/// user (recorded in the history), no colour, and stdin not a terminal.
pub fn cmd(args: &[&str]) -> Command {
    cmd_of(Path::new(bin()), args)
}

/// [`cmd`] with another copy of the binary (say one another user can reach).
pub fn cmd_of(program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .env_remove("DRPLAN_DATA_DIR")
        .env("USER", "alice")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// [`cmd`] followed by `--data-dir DIR`.
pub fn cmd_in(dir: &Path, args: &[&str]) -> Command {
    let mut c = cmd(args);
    c.arg("--data-dir").arg(dir);
    c
}

/// Runs `c` to completion.
pub fn output(mut c: Command) -> Output {
    c.output().expect("drplan runs")
}

/// Runs [`cmd`].
pub fn drplan(args: &[&str]) -> Output {
    output(cmd(args))
}

/// Runs [`cmd_in`].
pub fn drplan_in(dir: &Path, args: &[&str]) -> Output {
    output(cmd_in(dir, args))
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr, for assertions on what the user saw and for
/// failure messages.
pub fn all(o: &Output) -> String {
    format!("{}{}", out(o), err(o))
}

#[track_caller]
pub fn expect_code(o: &Output, want: i32) {
    assert_eq!(o.status.code(), Some(want), "output:\n{}", all(o));
}

#[track_caller]
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", all(o)))
}
