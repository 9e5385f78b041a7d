//! Helpers shared by the CLI integration tests (tests/cli_*.rs), so that
//! every test runs the built binary in the same controlled environment.
//! Each tests/*.rs is its own crate and includes this with `mod support;`;
//! a crate that uses only some helpers would warn about the rest, hence the
//! `dead_code` allowance. A file that needs a different environment or
//! flags builds on [`cmd`] / [`cmd_in`] locally rather than copying them.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// How long one command may run before [`output`] kills it and fails the
/// test: a command that hangs (say a follower of a job that never moves)
/// must fail its test in minutes, not use up CI's whole time limit.
/// `DRPLAN_TEST_COMMAND_TIMEOUT` (seconds) overrides it for slow machines.
pub fn command_timeout() -> Duration {
    let secs = std::env::var("DRPLAN_TEST_COMMAND_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// A child's pipe, collected on a thread of its own so that what the
/// child printed can be shown even if it never closes the pipe.
struct Drain {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drain {
    fn new(pipe: Option<impl Read + Send + 'static>) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let thread = pipe.map(|mut pipe| {
            let sink = Arc::clone(&buf);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Drain { buf, thread }
    }

    /// What was read so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Everything, once the pipe closed (as `Command::output` waits: until
    /// whatever the child started and left holding the pipe exits too).
    fn finish(mut self) -> Vec<u8> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.buf.lock().unwrap())
    }
}

/// Runs `c` to completion, or kills it after [`command_timeout`] and
/// panics with what it printed so far.
pub fn output(c: Command) -> Output {
    output_within(c, command_timeout())
}

/// [`output`] with another limit.
pub fn output_within(mut c: Command, limit: Duration) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("drplan runs");
    let stdout = Drain::new(child.stdout.take());
    let stderr = Drain::new(child.stderr.take());
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for drplan") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{c:?} did not finish within {limit:?} and was killed; it printed:\n{}{}",
                stdout.text(),
                stderr.text()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
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
