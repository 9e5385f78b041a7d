//! The script runner: runs **one attempt** of a plan's script step as a
//! child process and reports how it ended.
//!
//! The runtime performs `Effect::RunScript` with it; retries, retry delays
//! and idempotency keys are decided by the pure core, not here. What this
//! module guarantees, whatever the script does:
//!
//! - **It ends.** On timeout or cancellation the script's whole process
//!   group gets `SIGTERM`, then, after [`RunnerConfig::kill_grace`],
//!   `SIGKILL`. After the main process exits, the group's leftovers are
//!   stopped the same way, and output is read for at most
//!   [`RunnerConfig::drain_timeout`] longer, so a daemon holding the output
//!   pipe open (even one that escaped the group with `setsid`) cannot keep
//!   the run going.
//! - **Memory is bounded.** Output (stdout and stderr, interleaved in write
//!   order) keeps only the last [`RunnerConfig::output_limit`] bytes; the
//!   published-values file is read up to [`RunnerConfig::values_limit`].
//! - **No secrets leak.** The environment is built from nothing: an
//!   allowlist of the engine's variables, the step's `env`, then the
//!   `DRPLAN_*` context (see [`mod@env`]).
//! - **Clear failures.** A program that is missing, not executable or has
//!   a broken `#!` line is [`ScriptOutcome::CouldNotStart`] with a message
//!   that says which and where.
//!
//! Script authors' view: `docs/scripts.md`. Unix only (process groups).

pub mod env;
mod process;
mod tail;
pub mod values;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::plan::model::{Command, Direction, FailoverKind};
use process::Group;
use tail::Tail;

/// Output kept per attempt: the last 64 KiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;
/// Largest `DRPLAN_OUTPUT` file read: 64 KiB.
pub const DEFAULT_VALUES_LIMIT: u64 = 64 * 1024;
/// Time between `SIGTERM` and `SIGKILL`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read once the script's processes are gone.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How the runner behaves; one per engine.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Between `SIGTERM` and `SIGKILL` to the script's process group.
    pub kill_grace: Duration,
    /// After the main process exits: how long to wait for the output pipe to
    /// close before stopping the group's leftovers, and again before giving
    /// up on a pipe held by a process outside the group.
    pub drain_timeout: Duration,
    /// Bytes of output kept (the last ones).
    pub output_limit: usize,
    /// Largest `DRPLAN_OUTPUT` file read.
    pub values_limit: u64,
    /// Where the per-attempt `DRPLAN_OUTPUT` files are created.
    pub scratch_dir: PathBuf,
    /// The engine variables scripts inherit, already filtered by
    /// [`env::is_inherited`] (filtered again at use, so a hand-built list
    /// cannot widen the allowlist).
    pub inherited_env: Vec<(OsString, OsString)>,
}

impl RunnerConfig {
    /// Defaults, inheriting the allowlisted part of this process's
    /// environment.
    pub fn from_process_env() -> RunnerConfig {
        RunnerConfig {
            kill_grace: DEFAULT_KILL_GRACE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            values_limit: DEFAULT_VALUES_LIMIT,
            scratch_dir: std::env::temp_dir(),
            inherited_env: env::inherited_from(std::env::vars_os()),
        }
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig::from_process_env()
    }
}

/// One attempt to run.
#[derive(Debug, Clone)]
pub struct ScriptRequest {
    pub command: Command,
    /// The plan's directory: the working directory, and where a relative
    /// program path (one containing `/`) is found.
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// The step's `env` from the plan.
    pub env: BTreeMap<String, String>,
    pub context: ScriptContext,
}

/// What the script is told about the job (the `DRPLAN_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptContext {
    pub job_id: String,
    pub plan: String,
    pub kind: FailoverKind,
    pub direction: Direction,
    /// `None` for test cleanup steps, which belong to no group.
    pub group: Option<String>,
    pub step: String,
    pub attempt: u32,
    /// `IdemKey` as text: the same for a re-issued attempt after a crash.
    pub idempotency_key: String,
    /// The group's VMs (`DRPLAN_VMS`, as JSON).
    pub vms: Vec<ScriptVm>,
    /// Values published by earlier steps of the job.
    pub values: BTreeMap<String, String>,
}

/// A VM as a script sees it in `DRPLAN_VMS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptVm {
    pub name: String,
    pub nics: Vec<ScriptNic>,
}

/// A NIC of a VM after failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptNic {
    /// The network of the source VM.
    pub source_network: String,
    /// The network the replica attaches to (`None`: no mapping, so no
    /// network, or a test failover without a test network).
    pub network: Option<String>,
    pub subnet: Option<String>,
    /// The address, when known.
    pub ip: Option<String>,
}

/// How a process ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// How the attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ScriptOutcome {
    /// Exit status 0.
    Succeeded,
    /// A non-zero status or a signal the runner did not send.
    Failed { exit: Exit, message: String },
    /// The step's timeout passed; the group was stopped.
    TimedOut,
    /// The caller cancelled; the group was stopped.
    Cancelled,
    /// Nothing ran: the program is missing, not executable, ...
    CouldNotStart {
        message: String,
        /// Whether trying again can help with nothing changed: not for a
        /// missing or non-executable program or folder (automatic retries
        /// would only repeat the error), yes for a resource the system ran
        /// short of (a process, a scratch file).
        #[serde(default)]
        retryable: bool,
    },
}

impl ScriptOutcome {
    /// The core's view of the outcome.
    pub fn to_core(&self) -> crate::core::Outcome {
        use crate::core::{ErrorKind, Outcome};
        match self {
            ScriptOutcome::Succeeded => Outcome::Succeeded,
            ScriptOutcome::Failed { message, .. } => Outcome::Failed {
                error: message.clone(),
                error_kind: Some(ErrorKind::ScriptFailed),
                retryable: true,
            },
            ScriptOutcome::TimedOut => Outcome::TimedOut,
            ScriptOutcome::Cancelled => Outcome::Cancelled,
            ScriptOutcome::CouldNotStart { message, retryable } => Outcome::Failed {
                error: format!("could not start: {message}"),
                error_kind: Some(ErrorKind::ScriptCouldNotStart),
                retryable: *retryable,
            },
        }
    }
}

/// The report of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    pub outcome: ScriptOutcome,
    /// From just before the spawn to the end of the run.
    pub duration: Duration,
    /// The last [`RunnerConfig::output_limit`] bytes of output (never more),
    /// headed by `[... N omitted ...]` when earlier output was dropped.
    pub output: String,
    /// Bytes the script wrote in total.
    pub output_bytes: u64,
    /// Bytes of output not in [`ScriptResult::output`].
    pub output_omitted: u64,
    /// Values published through `DRPLAN_OUTPUT` (only when it succeeded).
    pub values: BTreeMap<String, String>,
    /// Things the operator should know that did not decide the outcome.
    pub warnings: Vec<String>,
}

/// Runs script attempts. Cheap to share (`&self`); attempts are independent.
#[derive(Debug, Clone, Default)]
pub struct ScriptRunner {
    config: RunnerConfig,
}

/// Makes `DRPLAN_OUTPUT` file names unique within the process.
static ATTEMPT_SEQ: AtomicU64 = AtomicU64::new(0);

/// How the main phase of a run ended.
enum End {
    Exited,
    TimedOut,
    Cancelled,
}

impl ScriptRunner {
    pub fn new(config: RunnerConfig) -> ScriptRunner {
        ScriptRunner { config }
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs one attempt. `cancel` resolving means "stop now" (e.g.
    /// `token.cancelled()`, or a oneshot receiver): the script is stopped
    /// like on a timeout and the outcome is [`ScriptOutcome::Cancelled`].
    /// Pass `std::future::pending()` for no cancellation. Dropping the
    /// returned future kills the script's group at once (`SIGKILL`).
    pub async fn run(&self, req: ScriptRequest, cancel: impl Future<Output = ()>) -> ScriptResult {
        let started = Instant::now();
        let mut warnings = Vec::new();
        let result = |outcome, tail: Option<&Tail>, values, warnings| {
            let (output, output_omitted) = tail.map(Tail::render).unwrap_or_default();
            ScriptResult {
                outcome,
                duration: started.elapsed(),
                output,
                output_bytes: tail.map_or(0, Tail::total),
                output_omitted,
                values,
                warnings,
            }
        };
        // The plan's folder or program is wrong: no retry will fix it.
        let could_not = |message: String| ScriptOutcome::CouldNotStart {
            message,
            retryable: false,
        };
        // The system ran short of something: a later attempt may start.
        let could_not_now = |message: String| ScriptOutcome::CouldNotStart {
            message,
            retryable: true,
        };

        match std::fs::metadata(&req.cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let msg = format!("the plan's folder {} is not a directory", req.cwd.display());
                return result(could_not(msg), None, BTreeMap::new(), warnings);
            }
            Err(e) => {
                let msg = format!(
                    "the plan's folder {} cannot be used: {e}",
                    req.cwd.display()
                );
                return result(could_not(msg), None, BTreeMap::new(), warnings);
            }
        }
        let output_file = match OutputFile::create(&self.config.scratch_dir, &req.context) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!(
                    "could not create the DRPLAN_OUTPUT file in {}: {e}",
                    self.config.scratch_dir.display()
                );
                return result(could_not_now(msg), None, BTreeMap::new(), warnings);
            }
        };
        let env = env::build(
            &self.config.inherited_env,
            &req.env,
            &req.context,
            output_file.path.as_os_str(),
            &mut warnings,
        );
        let (program, arg0, args) = match resolve(&req.command, &req.cwd, &env) {
            Ok(r) => r,
            Err(msg) => return result(could_not(msg), None, BTreeMap::new(), warnings),
        };

        let tail = Arc::new(Mutex::new(Tail::new(self.config.output_limit)));
        let (group, reader) = match spawn(&program, &arg0, &args, &req.cwd, &env, &tail) {
            Ok(s) => s,
            Err(e) => {
                let msg = spawn_error(&program, &arg0, &e);
                let end = match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => could_not(msg),
                    _ if e.raw_os_error() == Some(libc::ENOEXEC) => could_not(msg),
                    _ => could_not_now(msg),
                };
                return result(end, None, BTreeMap::new(), warnings);
            }
        };
        let mut group = group;
        let mut reader = AbortOnDrop(reader);

        let deadline = tokio::time::Instant::now().checked_add(req.timeout);
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                // A timeout beyond the clock's range: never.
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            // An exit that races the deadline counts as an exit.
            biased;
            _ = group.exited() => End::Exited,
            _ = timer => End::TimedOut,
            _ = cancel => End::Cancelled,
        };

        let drain = self.config.drain_timeout;
        let mut eof = false;
        match end {
            End::Exited => {
                // Read what is still in the pipe; a background process that
                // kept it open shows up as a missing EOF.
                eof = reader.finished_within(drain).await;
                match group.others_alive() {
                    Some(0) => {}
                    Some(n) => {
                        let killed = self.stop_group(&group).await;
                        let how = if killed {
                            format!(
                                "killed them (SIGKILL) after they ignored SIGTERM for {}",
                                humantime::format_duration(self.config.kill_grace)
                            )
                        } else {
                            "stopped them with SIGTERM".to_string()
                        };
                        warnings.push(format!(
                            "the script left {n} process{} running in its process group; {how}",
                            if n == 1 { "" } else { "es" },
                        ));
                    }
                    // No way to list the group here: stop whatever is left.
                    None => group.signal(libc::SIGKILL),
                }
            }
            End::TimedOut | End::Cancelled => {
                if self.stop_group(&group).await {
                    warnings.push(format!(
                        "the script did not exit within {} of SIGTERM; its process group was \
                         killed (SIGKILL)",
                        humantime::format_duration(self.config.kill_grace)
                    ));
                }
            }
        }
        if !eof && !reader.finished_within(drain).await {
            warnings.push(format!(
                "the output pipe was still open {} after the script's process group ended: a \
                 process that left the group (setsid, daemon) holds it; stopped reading. drplan \
                 cannot stop such a process",
                humantime::format_duration(drain)
            ));
        }
        reader.0.abort();
        group.reap_orphans();
        let status = group.reap();

        let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut values = BTreeMap::new();
        let outcome = match end {
            End::TimedOut => ScriptOutcome::TimedOut,
            End::Cancelled => ScriptOutcome::Cancelled,
            End::Exited => match status {
                Some(s) if s.success() => {
                    values = values::read_values(
                        &output_file.path,
                        self.config.values_limit,
                        &mut warnings,
                    );
                    ScriptOutcome::Succeeded
                }
                Some(s) => {
                    let exit = match (s.code(), s.signal()) {
                        (Some(c), _) => Exit::Code(c),
                        (None, Some(sig)) => Exit::Signal(sig),
                        (None, None) => Exit::Code(-1),
                    };
                    ScriptOutcome::Failed {
                        exit,
                        message: format!("`{}` {exit}", arg0.to_string_lossy()),
                    }
                }
                // Exited but not reapable: someone else waited for it.
                None => ScriptOutcome::Failed {
                    exit: Exit::Code(-1),
                    message: "the script's exit status was lost (reaped elsewhere)".to_string(),
                },
            },
        };
        drop(output_file);
        result(outcome, Some(&tail), values, warnings)
    }

    /// `SIGTERM` to the group; once the main process and every other member
    /// are gone, done; after the grace period, `SIGKILL`. Returns whether
    /// `SIGKILL` was needed. Output keeps being read meanwhile (by the
    /// reader task), so a script writing while it shuts down is not blocked
    /// on a full pipe.
    async fn stop_group(&self, group: &Group) -> bool {
        group.signal(libc::SIGTERM);
        // A stopped (SIGSTOP) process would hold the TERM until continued.
        group.signal(libc::SIGCONT);
        let deadline = tokio::time::Instant::now() + self.config.kill_grace;
        if tokio::time::timeout_at(deadline, group.exited())
            .await
            .is_ok()
        {
            loop {
                match group.others_alive() {
                    Some(0) => return false,
                    None => break,
                    Some(_) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        group.signal(libc::SIGKILL);
        // SIGKILL acts at once except on a process stuck in the kernel;
        // wait a little so the run ends with nothing left, but never hang.
        let gone = async {
            group.exited().await;
            while group.others_alive().is_some_and(|n| n > 0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), gone).await;
        true
    }
}

/// The reader task, aborted if the run is abandoned.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    /// Whether the reader reached end of file within `limit`.
    async fn finished_within(&mut self, limit: Duration) -> bool {
        if self.0.is_finished() {
            return true;
        }
        tokio::time::timeout(limit, &mut self.0).await.is_ok()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The per-attempt `DRPLAN_OUTPUT` file, removed when the attempt is over.
struct OutputFile {
    path: PathBuf,
}

impl OutputFile {
    fn create(dir: &Path, ctx: &ScriptContext) -> io::Result<OutputFile> {
        // The step name makes the file recognisable; the pid and a counter
        // make it unique; `create_new` makes sure no older file (or a
        // symlink planted in a shared /tmp) is reused.
        let step: String = ctx
            .step
            .chars()
            .take(40)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        loop {
            let seq = ATTEMPT_SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "drplan-output-{}-{seq}-{step}-{}",
                std::process::id(),
                ctx.attempt
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(OutputFile { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The program to execute, its `argv[0]` and its arguments. A program is
/// checked here rather than left to `exec`, whose errors (ENOENT for a
/// missing program *and* for a missing `#!` interpreter) say too little.
fn resolve(
    command: &Command,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
) -> Result<(PathBuf, OsString, Vec<String>), String> {
    match command {
        Command::Shell(line) => Ok((
            PathBuf::from("/bin/sh"),
            OsString::from("sh"),
            vec!["-c".to_string(), line.clone()],
        )),
        Command::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Err("the command is empty".to_string());
            };
            if program.is_empty() {
                return Err("the program name is empty".to_string());
            }
            let path = if program.contains('/') {
                let path = cwd.join(program);
                check_program(program, &path)?;
                path
            } else {
                let search = env.get(OsStr::new("PATH")).cloned().unwrap_or_default();
                find_on_path(program, &search, cwd).ok_or_else(|| {
                    format!(
                        "program `{program}` was not found on the script's PATH ({})",
                        search.to_string_lossy()
                    )
                })?
            };
            Ok((path, OsString::from(program), args.to_vec()))
        }
    }
}

fn check_program(program: &str, path: &Path) -> Result<(), String> {
    let shown = if Path::new(program).is_absolute() {
        format!("`{program}`")
    } else {
        format!("`{program}` ({})", path.display())
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("program {shown} does not exist"),
        _ => format!("program {shown} cannot be read: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("program {shown} is a directory, not a program"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "program {shown} is not executable (mode {:o}); make it so with `chmod +x`",
            meta.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// `execvp`'s search, done here so that "not found" can be said plainly.
fn find_on_path(program: &str, search: &OsStr, cwd: &Path) -> Option<PathBuf> {
    std::env::split_paths(search).find_map(|dir| {
        // An empty entry means the current directory, as in POSIX.
        let candidate = cwd.join(dir).join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Starts the process in a new process group, stdout and stderr on one
/// pipe, and the task reading that pipe into `tail`.
fn spawn(
    program: &Path,
    arg0: &OsStr,
    args: &[String],
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
    tail: &Arc<Mutex<Tail>>,
) -> io::Result<(Group, JoinHandle<()>)> {
    // One pipe for both streams, so the output keeps the order in which the
    // script wrote it (as `2>&1` would) and one reader drains it: a script
    // can never block on a full stderr while stdout is being read.
    let (read, write) = pipe_cloexec()?;
    let write2 = write.try_clone()?;
    let mut cmd = std::process::Command::new(program);
    cmd.arg0(arg0)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2))
        .process_group(0);
    let child = cmd.spawn();
    // The Command holds our copies of the write end: they must be closed
    // now, or the pipe never reports end of file.
    drop(cmd);
    let group = Group::new(child?);
    let rx = pipe::Receiver::from_owned_fd(read)?;
    let tail = Arc::clone(tail);
    let reader = tokio::spawn(read_output(rx, tail));
    Ok((group, reader))
}

async fn read_output(mut rx: pipe::Receiver, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own. Close-on-exec is
    // set atomically so that scripts spawned concurrently from other
    // threads never inherit this pipe (they would hold it open).
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let r = unsafe {
        let r = libc::pipe(fds.as_mut_ptr());
        if r == 0 {
            libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC);
        }
        r
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Says why `exec` failed, in the plan author's terms.
fn spawn_error(program: &Path, arg0: &OsStr, e: &io::Error) -> String {
    let name = arg0.to_string_lossy();
    match e.raw_os_error() {
        // The program was checked to exist, so ENOENT is about what `exec`
        // needed next: the interpreter of its `#!` line.
        Some(libc::ENOENT) => format!(
            "`{name}` ({}) could not be run: the interpreter named on its `#!` line was not \
             found",
            program.display()
        ),
        Some(libc::ENOEXEC) => format!(
            "`{name}` ({}) is not a program this system can run; a script needs a `#!` line",
            program.display()
        ),
        Some(libc::EACCES) => format!(
            "`{name}` ({}) could not be run: permission denied (is it, or its `#!` \
             interpreter, executable, and is its file system mounted noexec?)",
            program.display()
        ),
        Some(libc::E2BIG) => format!(
            "`{name}` could not be started: its arguments and environment are too large \
             (many or large published values?)"
        ),
        _ => format!("`{name}` ({}) could not be started: {e}", program.display()),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGBUS => "SIGBUS",
        _ => return None,
    })
}
