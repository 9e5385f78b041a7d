//! Crash safety of the real `drplan` binary: a plan is run with `drplan
//! run`, answered with `drplan ack` / `drplan cleanup`, and every one of
//! these processes may be killed with SIGKILL at a random moment; the job is
//! then continued with `drplan resume JOB` (or started again with `run` when
//! it never became durable), until it ends. Then, from the store:
//!
//! - the job has the status of an uninterrupted run of the same plan, and
//!   every step the same final state (no step lost, none run twice);
//! - every event a killed process printed (`--format json` prints an event
//!   only once it is durable) is in the job's history: nothing acknowledged
//!   was lost; no (step, attempt) has two outcomes;
//! - the simulated fabric executed exactly the operation keys of the
//!   uninterrupted run, each once (a repeated key after a crash is answered
//!   from the fabric's key record: its `calls` count says how often);
//! - no VM lease, no armed timer and (for a test failover) no test VM is left.
//!
//! The fabric's key records of a finished job are normally forgotten; the
//! processes run with `DRPLAN_SIM_KEEP_OP_KEYS=1` so they stay in the store.
//!
//! CI runs a few dozen kills. The crash soak is the same tests with more
//! kills and the shipped 1,000-VM plan (see README, "Testing"):
//!
//! ```text
//! DRPLAN_CRASH_KILLS=300 DRPLAN_CRASH_LARGE=1 DRPLAN_CRASH_LARGE_KILLS=40 \
//!   cargo test --release -p drplan --test cli_crash -- --nocapture --test-threads 1
//! ```
//!
//! `DRPLAN_CRASH_SEED=N` replays a run's kill times (the seed is printed at
//! the start; where a kill lands still depends on the machine's speed).
//! `DRPLAN_CRASH_KEEP=1` keeps the data directories and a log of every
//! command (what it printed, whether it was killed) for a post-mortem.
//! `DRPLAN_CRASH_KINDS=test` (comma-separated: test, planned, unplanned)
//! soaks only those failover kinds; a kind keeps its seed offset, so a
//! replay of one kind meets the kill times of the full run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drplan_engine::core::{JobEvent, JobStatus};
use drplan_engine::fabric::{FabricState, FaultSet, SimConfig, SimFabric};
use drplan_engine::journal::{JobMeta, Journal};
use drplan_engine::runtime::{DELTA_PREFIX, FULL_KEY};
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store};
use serde_json::Value;

/// One scenario at a time: each one keeps both cores of the machine busy,
/// and the final check opens a store in this process (a child spawned by a
/// parallel test could inherit its lock between fork and exec).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{v}`")),
    )
}

/// The seed of this run: `DRPLAN_CRASH_SEED`, else from the clock.
fn seed() -> u64 {
    env_u64("DRPLAN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

/// splitmix64: small, good enough to spread kill times, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: Duration) -> Duration {
        let ms = max.as_micros() as u64;
        Duration::from_micros(self.next() % (ms + 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Test,
    Planned,
    Unplanned,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Test => "test",
            Kind::Planned => "planned",
            Kind::Unplanned => "unplanned",
        }
    }

    fn good_end(self) -> JobStatus {
        match self {
            Kind::Test => JobStatus::TestCompleted,
            Kind::Planned | Kind::Unplanned => JobStatus::Succeeded,
        }
    }
}

struct Scenario {
    plan: PathBuf,
    fabric: PathBuf,
    kind: Kind,
    time_scale: f64,
    kills: u64,
    /// A command running longer than this is a hang: the test fails.
    hang: Duration,
    /// The longest a kill waits after a command starts (`None`: the longest
    /// command of the uninterrupted run).
    max_kill_delay: Option<Duration>,
}

/// What one process did before it exited or was killed.
#[derive(Debug, Default)]
struct Ran {
    /// Complete stdout lines (a line cut by the kill is dropped).
    lines: Vec<String>,
    stderr: String,
    status: Option<ExitStatus>,
    killed: bool,
    took: Duration,
}

impl Ran {
    fn json(&self) -> impl Iterator<Item = Value> + '_ {
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    }

    fn all(&self) -> String {
        format!("{}\n{}", self.lines.join("\n"), self.stderr)
    }
}

/// Runs `drplan ARGS --data-dir DIR --format json --time-scale X`, killing
/// it with SIGKILL after `kill_after` if it is still running then.
fn drplan(sc: &Scenario, dir: &Path, args: &[&str], kill_after: Option<Duration>) -> Ran {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drplan"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--format", "json", "--time-scale"])
        .arg(sc.time_scale.to_string())
        .env_remove("DRPLAN_DATA_DIR")
        .env_remove("RUST_LOG")
        .env("DRPLAN_SIM_KEEP_OP_KEYS", "1")
        .env("USER", "crash-test")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drplan starts");
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdout.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                // A line without its newline was cut by the kill: the
                // process never finished printing it.
                Ok(_) if buf.last() == Some(&b'\n') => {
                    lines.push(String::from_utf8_lossy(&buf).trim_end().to_string());
                }
                Ok(_) => break,
            }
        }
        let _ = tx.send(lines);
    });
    let (etx, erx) = mpsc::channel::<String>();
    let mut stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = etx.send(s);
    });
    let mut killed = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for drplan") {
            break st;
        }
        let now = start.elapsed();
        if kill_after.is_some_and(|k| now >= k) {
            child.kill().expect("SIGKILL drplan");
            killed = true;
            break child.wait().expect("wait for drplan");
        }
        if now > sc.hang {
            let _ = child.kill();
            let _ = child.wait();
            let lines = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            panic!(
                "`drplan {}` hangs: still running after {:?}\n{}",
                args.join(" "),
                sc.hang,
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = start.elapsed();
    // Script processes orphaned by a kill never hold drplan's own stdout or
    // stderr (their output goes to the runner's pipes), so both end now.
    let lines = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let stderr = erx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default();
    Ran {
        lines,
        stderr,
        status: Some(status),
        killed,
        took,
    }
}

/// When kills land, after a command starts.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Duration,
    to: Duration,
}

impl Window {
    const NEVER: Window = Window {
        from: Duration::ZERO,
        to: Duration::ZERO,
    };

    fn pick(&self, rng: &mut Rng) -> Duration {
        self.from + rng.upto(self.to.saturating_sub(self.from))
    }
}

/// What the driver does next.
#[derive(Debug, Clone)]
enum Next {
    Run,
    Resume(u64),
    Ack(u64, String),
    Cleanup(u64),
}

/// The figures of one scenario.
#[derive(Debug, Default, Clone)]
struct Figures {
    commands: u64,
    kills: u64,
    /// Kills while the killed process had announced an attempt (a VM
    /// operation or a script) that it had not seen finish.
    kills_mid_operation: u64,
    acknowledged: u64,
    events: u64,
    op_keys: u64,
    /// Submissions of a key the fabric answered from its record (repeats
    /// after a crash).
    repeats: u64,
    /// Attempts announced twice (re-issued by a later process).
    reissued: u64,
    jobs: u64,
    /// Longest and shortest (not killed) single command of the run.
    longest: Duration,
    shortest: Duration,
    elapsed: Duration,
}

impl Figures {
    /// Adds the per-process figures of one driven job.
    fn add(&mut self, f: &Figures) {
        self.commands += f.commands;
        self.kills += f.kills;
        self.kills_mid_operation += f.kills_mid_operation;
        self.reissued += f.reissued;
        self.elapsed += f.elapsed;
    }
}

/// Drives one job to its end, killing processes while `kills` remain.
/// Returns the job id, the acknowledged events and the figures.
fn drive(sc: &Scenario, dir: &Path, rng: &mut Rng, window: Window) -> (u64, Vec<Value>, Figures) {
    let start = Instant::now();
    let mut fig = Figures::default();
    let mut acked: Vec<Value> = Vec::new();
    let mut job: Option<u64> = None;
    let mut next = Next::Run;
    let plan = sc.plan.display().to_string();
    let mut announced: BTreeSet<(String, u64)> = BTreeSet::new();
    loop {
        let kill_after = (fig.kills < sc.kills).then(|| window.pick(rng));
        let job_s;
        let args: Vec<&str> = match &next {
            Next::Run => vec![
                "run",
                &plan,
                "--failover",
                sc.kind.as_str(),
                "--by",
                "crash-test",
            ],
            Next::Resume(j) => {
                job_s = j.to_string();
                vec!["resume", &job_s]
            }
            Next::Ack(j, step) => {
                job_s = j.to_string();
                vec![
                    "ack",
                    &job_s,
                    step.as_str(),
                    "--by",
                    "crash-test",
                    "--note",
                    "ok",
                ]
            }
            Next::Cleanup(j) => {
                job_s = j.to_string();
                vec![
                    "cleanup",
                    &job_s,
                    "--notes",
                    "crash test",
                    "--by",
                    "crash-test",
                ]
            }
        };
        let ran = drplan(sc, dir, &args, kill_after);
        log(dir, &args, &ran);
        fig.commands += 1;
        fig.longest = fig.longest.max(ran.took);
        if !ran.killed {
            fig.shortest = if fig.shortest.is_zero() {
                ran.took
            } else {
                fig.shortest.min(ran.took)
            };
        }
        let mut in_flight: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut waiting: Vec<(String, Option<String>)> = Vec::new();
        let mut ended: Option<String> = None;
        for v in ran.json() {
            if let Some(j) = v["job"].as_u64() {
                job.get_or_insert(j);
            }
            let event = v["event"].as_str().unwrap_or_default();
            if event == "step_started" {
                let k = (
                    v["step"].as_str().unwrap_or_default().to_string(),
                    v["attempt"].as_u64().unwrap_or_default(),
                );
                if !announced.insert(k.clone()) {
                    fig.reissued += 1;
                }
                in_flight.insert(k);
            }
            if !v["detail"].is_null() {
                if event == "step_finished" {
                    let step = v["step"].as_str().unwrap_or_default().to_string();
                    in_flight.retain(|(s, _)| *s != step);
                }
                acked.push(v.clone());
            }
            match event {
                "waiting" => waiting.push((
                    v["reason"].as_str().unwrap_or_default().to_string(),
                    v["step"].as_str().map(str::to_string),
                )),
                "ended" => ended = v["status"].as_str().map(str::to_string),
                _ => {}
            }
        }
        if ran.killed {
            fig.kills += 1;
            if !in_flight.is_empty() {
                fig.kills_mid_operation += 1;
            }
            if job.is_none() {
                job = jobs(sc, dir).first().map(|m| m.id.0);
            }
            next = match job {
                Some(j) => Next::Resume(j),
                // Killed before the submission was durable: submit again.
                None => Next::Run,
            };
            continue;
        }
        let code = ran.status.and_then(|s| s.code());
        if let Some(status) = ended {
            assert_eq!(code, Some(0), "job ended {status}:\n{}", ran.all());
            break;
        }
        assert_eq!(
            code,
            Some(0),
            "`drplan {}` failed:\n{}",
            args.join(" "),
            ran.all()
        );
        let j = job.expect("a job id once a command succeeded");
        next = match waiting.first() {
            Some((reason, Some(step))) if reason == "manual" => Next::Ack(j, step.clone()),
            Some((reason, _)) if reason == "cleanup" => Next::Cleanup(j),
            Some(other) => panic!("unexpected wait {other:?}:\n{}", ran.all()),
            None if ran
                .lines
                .iter()
                .any(|l| l.starts_with("no unfinished jobs")) =>
            {
                break;
            }
            None => panic!(
                "`drplan {}` printed no outcome:\n{}",
                args.join(" "),
                ran.all()
            ),
        };
    }
    fig.elapsed = start.elapsed();
    (job.expect("a job"), acked, fig)
}

/// Appends a command and what it printed to `DIR.log` (kept with
/// `DRPLAN_CRASH_KEEP=1`, for a failure's post-mortem).
fn log(dir: &Path, args: &[&str], ran: &Ran) {
    use std::io::Write as _;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
    else {
        return;
    };
    let how = if ran.killed { "KILLED" } else { "exited" };
    let _ = writeln!(
        f,
        "$ drplan {}  # {how} after {:?} ({:?})\n{}\n",
        args.join(" "),
        ran.took,
        ran.status,
        ran.all()
    );
}

fn jobs(sc: &Scenario, dir: &Path) -> Vec<JobMeta> {
    let out = Command::new(env!("CARGO_BIN_EXE_drplan"))
        .args(["jobs", "--format", "json", "--data-dir"])
        .arg(dir)
        .env_remove("DRPLAN_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("drplan jobs runs");
    if !out.status.success() {
        // No data directory yet: no job.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !dir.join("db").exists() || err.is_empty(),
            "`drplan jobs` failed in {:?} ({}): {err}",
            dir,
            sc.kind.as_str()
        );
        return Vec::new();
    }
    serde_json::from_slice(&out.stdout).expect("jobs as JSON")
}

/// What the store says about a finished scenario.
#[derive(Debug)]
struct Outcome {
    status: JobStatus,
    /// Each step's final state (Debug form), in step order.
    steps: Vec<String>,
    /// Executed operation keys without the job id, with their call counts.
    keys: BTreeMap<String, u64>,
    events: Vec<JobEvent>,
}

fn inspect(sc: &Scenario, dir: &Path, job: u64) -> Outcome {
    let store: Arc<SledStore> = Arc::new(SledStore::open(dir).expect("the store opens"));
    let journal = Journal::open(store.clone()).expect("the journal opens");
    let id = JobId(job);
    let state = journal.job(id).expect("job").expect("the job exists");
    let status = state.status();
    let events = journal.events(id).expect("events");
    let leases = journal.leases().expect("leases");
    assert!(leases.is_empty(), "VM leases left: {leases:?}");
    let timers = store.timers().expect("timers");
    assert!(timers.is_empty(), "timers left: {timers:?}");

    let (inv, _, diags) = drplan_engine::plan::load_fabric(&sc.fabric);
    let inv = inv.unwrap_or_else(|| panic!("inventory: {diags:?}"));
    let world = SimFabric::new(&inv, SimConfig::default(), FaultSet::default());
    let deltas = store
        .blobs_with_prefix(DELTA_PREFIX)
        .expect("fabric deltas")
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    world
        .restore_from(store.blob(FULL_KEY).expect("fabric"), deltas)
        .expect("the saved world restores");
    let residue = world.residue();
    if !residue.is_empty() {
        if std::env::var_os("DRPLAN_CRASH_KEEP").is_some() {
            // A panic drops the TempDir: move the evidence aside first.
            let keep = std::env::temp_dir()
                .join(format!("drplan-crash-failed-{}-{job}", std::process::id()));
            let _ = std::fs::rename(dir, &keep);
            let _ = std::fs::rename(dir.with_extension("log"), keep.with_extension("log"));
            eprintln!("kept {}", keep.display());
        }
        panic!(
            "test VMs left: {residue:?}\nstatus {status:?}\nhistory:\n{}",
            events
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let prefix = format!("{job}/");
    let keys = world
        .executed()
        .into_iter()
        .map(|(k, calls)| {
            let rest = k
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("key {k} of another job"));
            (rest.to_string(), calls)
        })
        .collect();
    Outcome {
        status,
        steps: state
            .steps
            .iter()
            .map(|s| format!("{:?}", s.state))
            .collect(),
        keys,
        events,
    }
}

/// Runs a scenario uninterrupted, then job after job (each in a fresh data
/// directory) with kills until `sc.kills` kills have landed, checking each
/// job against the uninterrupted one. Returns the figures of the kills.
fn check(sc: &Scenario, seed: u64) -> Figures {
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("DRPLAN_CRASH_KEEP").is_some() {
        eprintln!("keeping {}", tmp.path().display());
    }
    let label = format!("{} failover of {}", sc.kind.as_str(), sc.plan.display());

    // The uninterrupted run: what every interrupted one must match.
    let clean = Scenario {
        kills: 0,
        ..copy(sc)
    };
    let rdir = tmp.path().join("reference");
    let (rjob, _, rfig) = drive(&clean, &rdir, &mut rng, Window::NEVER);
    let reference = inspect(sc, &rdir, rjob);
    assert_eq!(
        reference.status,
        sc.kind.good_end(),
        "{label}: reference run"
    );
    assert!(
        reference.keys.values().all(|&c| c == 1),
        "{label}: the uninterrupted run repeated keys: {:?}",
        reference.keys
    );
    // Kills land between half the shortest command (start-up is included:
    // a kill while the store opens or the world is restored counts too)
    // and the longest one.
    let mut window = Window {
        from: rfig.shortest / 2,
        to: sc.max_kill_delay.unwrap_or(rfig.longest),
    };

    let mut fig = Figures::default();
    while fig.kills < sc.kills {
        let dir = tmp.path().join(format!("crashed-{}", fig.jobs + 1));
        let left = Scenario {
            kills: sc.kills - fig.kills,
            ..copy(sc)
        };
        let (job, acked, f) = drive(&left, &dir, &mut rng, window);
        let got = inspect(sc, &dir, job);
        let label = format!("{label}, job {}", fig.jobs + 1);
        compare(&label, &got, &reference, &acked);
        if f.kills == 0 {
            // Every command beat its kill time: the reference met a busier
            // machine than this job did (a one-command scenario's window is
            // [T/2, T] of the reference). Kill earlier from now on, or no
            // kill would ever land and the loop would never end.
            window.to = window.to.min(f.longest);
            window.from = window.from.min(window.to / 2);
        }
        fig.add(&f);
        fig.jobs += 1;
        fig.acknowledged += acked.len() as u64;
        fig.events += got.events.len() as u64;
        fig.op_keys += got.keys.len() as u64;
        fig.repeats += got.keys.values().map(|c| c - 1).sum::<u64>();
        // Nothing but the scenario's data directories fills the disk.
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::env::var_os("DRPLAN_CRASH_KEEP").is_some() {
        let _ = tmp.keep();
    }
    eprintln!(
        "{label}: {} kills ({} mid-operation) over {} commands and {} jobs, {} acknowledged \
         (printed) events all found among {} stored, {} operation keys each executed once \
         ({} repeats answered from the key record, {} attempts re-announced), {:.1}s",
        fig.kills,
        fig.kills_mid_operation,
        fig.commands,
        fig.jobs,
        fig.acknowledged,
        fig.events,
        fig.op_keys,
        fig.repeats,
        fig.reissued,
        fig.elapsed.as_secs_f64()
    );
    fig
}

/// Checks a job run with kills against the uninterrupted run.
fn compare(label: &str, got: &Outcome, reference: &Outcome, acked: &[Value]) {
    assert_eq!(got.status, reference.status, "{label}: status");
    assert_eq!(got.steps.len(), reference.steps.len(), "{label}: steps");
    for (i, (g, r)) in got.steps.iter().zip(&reference.steps).enumerate() {
        assert_eq!(g, r, "{label}: step {i}");
    }
    // Exactly the keys of the uninterrupted run: no operation re-issued
    // under a new key, none lost. Each key executed once: the fabric
    // answered every repeat from its record.
    let got_keys: BTreeSet<&String> = got.keys.keys().collect();
    let want_keys: BTreeSet<&String> = reference.keys.keys().collect();
    assert_eq!(got_keys, want_keys, "{label}: operation keys");

    // Every event a killed process printed is durable.
    for v in acked {
        let ev: JobEvent = serde_json::from_value(v["detail"].clone())
            .unwrap_or_else(|e| panic!("{label}: printed event {v}: {e}"));
        assert!(
            got.events.contains(&ev),
            "{label}: acknowledged event lost: {v}"
        );
    }
    // No (step, attempt) has two outcomes.
    let mut outcomes = BTreeSet::new();
    for ev in &got.events {
        if let JobEvent::StepFinished { step, attempt, .. } = ev {
            assert!(
                outcomes.insert((*step, *attempt)),
                "{label}: two outcomes of step {step} attempt {attempt}"
            );
        }
    }
}

fn copy(sc: &Scenario) -> Scenario {
    Scenario {
        plan: sc.plan.clone(),
        fabric: sc.fabric.clone(),
        kind: sc.kind,
        time_scale: sc.time_scale,
        kills: sc.kills,
        hang: sc.hang,
        max_kill_delay: sc.max_kill_delay,
    }
}

fn total(figs: &[Figures]) -> String {
    let sum = |f: fn(&Figures) -> u64| figs.iter().map(f).sum::<u64>();
    format!(
        "TOTAL: {} kills ({} mid-operation), {} commands, {} jobs, {} acknowledged events, \
         {} operation keys, {} repeats answered from key records, {:.1}s",
        sum(|f| f.kills),
        sum(|f| f.kills_mid_operation),
        sum(|f| f.commands),
        sum(|f| f.jobs),
        sum(|f| f.acknowledged),
        sum(|f| f.op_keys),
        sum(|f| f.repeats),
        figs.iter().map(|f| f.elapsed.as_secs_f64()).sum::<f64>()
    )
}

const KINDS: [Kind; 3] = [Kind::Test, Kind::Planned, Kind::Unplanned];

/// Whether `DRPLAN_CRASH_KINDS` (default: every kind) includes `kind`. An
/// unknown name fails the run rather than silently soaking nothing.
fn wanted(kind: Kind) -> bool {
    let Ok(list) = std::env::var("DRPLAN_CRASH_KINDS") else {
        return true;
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    for n in &names {
        assert!(
            KINDS.iter().any(|k| k.as_str() == *n),
            "DRPLAN_CRASH_KINDS: unknown kind `{n}` (test, planned, unplanned)"
        );
    }
    names.contains(&kind.as_str())
}

#[test]
fn three_tier_survives_sigkill_at_random_moments_in_every_failover_kind() {
    let _g = serial();
    let seed = seed();
    eprintln!("crash test seed: {seed} (replay with DRPLAN_CRASH_SEED={seed})");
    let kills = env_u64("DRPLAN_CRASH_KILLS").unwrap_or(8);
    let mut figs = Vec::new();
    for (i, kind) in KINDS.into_iter().enumerate() {
        if !wanted(kind) {
            continue;
        }
        let sc = Scenario {
            plan: repo().join("plans/three-tier.yaml"),
            fabric: repo().join("plans/fabric.yaml"),
            kind,
            time_scale: 0.001,
            kills,
            hang: Duration::from_secs(120),
            max_kill_delay: None,
        };
        figs.push(check(&sc, seed.wrapping_add(i as u64)));
    }
    eprintln!("three-tier: {}", total(&figs));
    // The kills must exercise the interesting cases, not only start-up.
    let mid: u64 = figs.iter().map(|f| f.kills_mid_operation).sum();
    assert!(mid > 0, "no kill landed while an operation was in flight");
}

#[test]
fn a_generated_plan_survives_sigkill_at_random_moments_in_every_failover_kind() {
    let _g = serial();
    let base = seed();
    eprintln!("crash test seed: {base} (replay with DRPLAN_CRASH_SEED={base})");
    // Not the three-tier test's kill times.
    let seed = base ^ 0x5EED;
    let large = std::env::var_os("DRPLAN_CRASH_LARGE").is_some_and(|v| v == "1");
    let tmp = tempfile::tempdir().unwrap();
    let (plan, fabric, kills, scale) = if large {
        // The shipped 1,000-VM plan (50 waves, scripts, manual and wait steps).
        (
            repo().join("plans/large.yaml"),
            repo().join("plans/large-fabric.yaml"),
            env_u64("DRPLAN_CRASH_LARGE_KILLS").unwrap_or(20),
            0.0001,
        )
    } else {
        // CI: a small plan of the same generator (6 waves of 4 VMs).
        let g = drplan_engine::plan::generate::large_plan(6, 4, 7);
        let plan = tmp.path().join("generated.yaml");
        let fabric = tmp
            .path()
            .join(drplan_engine::plan::generate::LARGE_FABRIC_FILE);
        std::fs::write(&plan, &g.plan_yaml).unwrap();
        std::fs::write(&fabric, &g.fabric_yaml).unwrap();
        (
            plan,
            fabric,
            env_u64("DRPLAN_CRASH_GENERATED_KILLS").unwrap_or(3),
            0.001,
        )
    };
    let mut figs = Vec::new();
    for (i, kind) in KINDS.into_iter().enumerate() {
        if !wanted(kind) {
            continue;
        }
        let sc = Scenario {
            plan: plan.clone(),
            fabric: fabric.clone(),
            kind,
            time_scale: scale,
            kills,
            hang: Duration::from_secs(if large { 900 } else { 120 }),
            max_kill_delay: None,
        };
        figs.push(check(&sc, seed.wrapping_add(i as u64)));
    }
    eprintln!("{}: {}", plan.display(), total(&figs));
}
