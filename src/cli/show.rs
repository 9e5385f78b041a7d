//! `drplan show JOB`: a job's timeline, read from the store (nothing runs):
//! groups with their VMs and steps, start offsets, durations, attempts,
//! outcomes and output tails, the critical path marked `*`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::api::Control;
use drplan_engine::core::{JobContext, StepState};
use drplan_engine::journal::{JobMeta, Journal};
use drplan_engine::plan::model::Plan;
use drplan_engine::report::{StepView, Timeline};
use drplan_engine::store::{JobId, Store};

use super::engine_host;
use super::progress::{duration, now_ms};
use super::validate::OutputFormat;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a readable timeline, or one JSON document
    /// `{"job","plan","operation","status","verdict","rto","critical_path",
    /// "groups","steps","failures","warnings",...}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// A data directory opened for reading timelines.
/// Read access to a data directory's jobs for `show`, `report`, `history`
/// and `graph --job`: through the data directory's server when one runs,
/// else straight from the store (no engine runs, nothing is written).
pub struct Reader {
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    session: engine_host::Session,
    /// The journal over the store when this process opened it.
    journal: Option<Journal>,
}

impl Reader {
    /// Open `--data-dir` (never creating one). A store held by a process
    /// that serves no API is exit 2, naming the holder.
    pub fn open(given: Option<&Path>) -> Result<Reader, Exit> {
        let dir = engine_host::data_dir(given)?;
        if !dir.exists() {
            eprintln!("drplan: no data directory `{}`", dir.display());
            return Err(Exit::CouldNotRun);
        }
        let rt = engine_host::runtime()?;
        let session = rt.block_on(engine_host::Session::open_reading(&dir))?;
        let journal = match &session {
            engine_host::Session::Local(store) => {
                let dynstore: Arc<dyn Store> = store.clone();
                Some(Journal::open(dynstore).map_err(|e| {
                    eprintln!("drplan: {e}");
                    Exit::CouldNotRun
                })?)
            }
            engine_host::Session::Remote(_) => None,
        };
        Ok(Reader {
            dir,
            rt,
            session,
            journal,
        })
    }

    pub fn meta(&self, job: JobId) -> Result<JobMeta, Exit> {
        self.rt
            .block_on(self.session.job_meta(job))?
            .ok_or_else(|| {
                eprintln!(
                    "drplan: job {job} does not exist in `{}`",
                    self.dir.display()
                );
                Exit::CouldNotRun
            })
    }

    /// Every job, oldest first.
    pub fn all_jobs(&self) -> Result<Vec<JobMeta>, Exit> {
        self.rt.block_on(self.session.all_jobs())
    }

    /// The timeline of a job, and the plan it ran.
    pub fn timeline(&self, meta: &JobMeta) -> Result<(Timeline, Plan), Exit> {
        let job = meta.id;
        let (plan, _) = self.rt.block_on(self.session.job_plan(meta))?;
        let ctx = JobContext::new(&plan, meta.operation);
        let missing = || {
            eprintln!("drplan: job {job} does not exist");
            Exit::CouldNotRun
        };
        let (st, events) = match (&self.journal, &self.session) {
            (Some(journal), _) => {
                let fail = |e: drplan_engine::journal::JournalError| {
                    eprintln!("drplan: job {job}: {e}");
                    Exit::CouldNotRun
                };
                let st = journal.job(job).map_err(fail)?.ok_or_else(missing)?;
                (st, journal.events(job).map_err(fail)?)
            }
            (None, engine_host::Session::Remote(c)) => self.rt.block_on(async {
                let st = c
                    .job(job)
                    .await
                    .map_err(engine_host::api_fail)?
                    .ok_or_else(missing)?;
                let events = c.events(job).await.map_err(engine_host::api_fail)?;
                Ok::<_, Exit>((st, events))
            })?,
            (None, engine_host::Session::Local(_)) => return Err(missing()),
        };
        Ok((Timeline::build(&plan, &st, &ctx, &events, now_ms()), plan))
    }
}

pub fn time(ms: Option<u64>) -> String {
    ms.map(|t| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(t)).to_string())
        .unwrap_or_else(|| "-".into())
}

/// The wall-clock time of an instant, to the second: `HH:MM:SS` on the day
/// the job started, the whole date otherwise.
pub fn clock(t: &Timeline, at: Option<u64>) -> String {
    let Some(at) = at else { return "-".into() };
    let full = time(Some(at)).replace('T', " ").replace('Z', "");
    let day = |ms: u64| ms / 86_400_000;
    match t.started_at {
        Some(s) if day(s) == day(at) => full.get(11..).unwrap_or(&full).to_string(),
        _ => full,
    }
}

/// The kind of a failed attempt's error and whether a retry can help.
pub fn error_class(kind: Option<drplan_engine::core::ErrorKind>, retryable: bool) -> String {
    let how = if retryable {
        "retryable"
    } else {
        "not retryable: fix the cause first"
    };
    match kind {
        Some(k) => format!("{}, {how}", k.as_str()),
        None => how.to_string(),
    }
}

/// `+1.2s` from the job's start.
fn offset(t: &Timeline, at: Option<u64>) -> String {
    match (t.started_at, at) {
        (Some(s), Some(a)) => format!("+{}", duration(a.saturating_sub(s))),
        _ => "-".into(),
    }
}

pub fn rto_text(t: &Timeline) -> String {
    if !t.rto.applicable {
        return "n/a (the operation starts no VM)".into();
    }
    match (t.rto.achieved_ms, &t.rto.last_vm) {
        (Some(ms), Some(vm)) => format!("{} (last required VM running: {vm})", duration(ms)),
        (Some(ms), None) => duration(ms),
        _ if t.rto.not_running.is_empty() => "not reached yet".into(),
        _ => format!(
            "not achieved: not running: {}",
            t.rto.not_running.join(", ")
        ),
    }
}

fn step_line(o: &mut String, t: &Timeline, s: &StepView) {
    let mark = if s.critical { "*" } else { " " };
    let attempts = match s.attempts {
        0 | 1 => String::new(),
        n => format!(" ({n} attempts)"),
    };
    let took = s.duration_ms.map(duration).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "  {mark} {:>8} {:>8}  {:>8} {:>8}  {:<18} {}{attempts}",
        offset(t, s.started_at),
        took,
        clock(t, s.started_at),
        clock(t, s.finished_at),
        s.state,
        s.key
    );
    for out in &s.attempt_log {
        let what = match &out.outcome {
            drplan_engine::core::Outcome::Failed {
                error,
                error_kind,
                retryable,
            } => format!("error: {error} ({})", error_class(*error_kind, *retryable)),
            drplan_engine::core::Outcome::TimedOut => "timed out".into(),
            _ => continue,
        };
        let _ = writeln!(o, "      attempt {}: {what}", out.attempt);
    }
    // A failure without a recorded outcome (a manual step answered "not
    // done", a timed-out manual step) carries its error in the state.
    if let StepState::Failed { error, .. } = &s.detail
        && !s.attempt_log.iter().any(|a| {
            matches!(&a.outcome, drplan_engine::core::Outcome::Failed { error: e, .. } if e == error)
        })
    {
        let _ = writeln!(o, "      error: {error}");
    }
    if let StepState::Skipped { reason } = &s.detail {
        let _ = writeln!(o, "      skipped: {}", skip_text(t, reason));
    }
    if let Some(a) = &s.answer {
        let what = if a.done { "done" } else { "not done" };
        let note = a
            .note
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        let _ = writeln!(o, "      answered {what} by {}{note}", a.by);
    }
    for a in &s.attempt_log {
        for w in &a.warnings {
            let _ = writeln!(o, "      warning (attempt {}): {w}", a.attempt);
        }
        if let Some(p) = &a.recovery_point {
            let _ = writeln!(
                o,
                "      recovery point: {} ({})",
                time(Some(p.at)),
                p.kind.as_str()
            );
        }
    }
    if let Some(tail) = &s.output_tail {
        // A script's last lines say what it did; a VM operation's summary
        // only matters when it failed.
        if s.vm.is_none() || s.detail.is_failure() {
            let all: Vec<&str> = tail.lines().collect();
            for l in &all[all.len().saturating_sub(10)..] {
                let _ = writeln!(o, "      | {l}");
            }
        }
    }
}

/// The figures of the verdict: VMs recovered, failures, errors.
pub fn counts_text(t: &Timeline) -> (String, String) {
    let c = &t.counts;
    let vms = format!("{} / {} required", c.vms_recovered, c.vms_required);
    let failures = format!(
        "{} ({} required), {} skipped after failing, {} recovered by a retry",
        super::text::count(c.failed_steps, "failed step"),
        c.failed_required,
        c.skipped_steps,
        super::text::count(c.recovered_attempts, "failed attempt"),
    );
    (vms, failures)
}

/// The data-loss line: the worst achieved RPO, or why there is none.
pub fn rpo_text(t: &Timeline) -> Option<String> {
    let worst = t.recovery_points.iter().max_by_key(|p| p.data_loss_ms)?;
    Some(format!(
        "{} (worst: {}, {} point of {})",
        duration(worst.data_loss_ms),
        worst.vm,
        worst.kind.as_str(),
        time(Some(worst.point_at))
    ))
}

pub fn skip_text(t: &Timeline, r: &drplan_engine::core::SkipReason) -> String {
    use drplan_engine::core::SkipReason;
    match r {
        SkipReason::ChainFailed { step } => format!(
            "{} failed earlier",
            t.steps
                .get(*step)
                .map(|s| s.key.as_str())
                .unwrap_or("a step")
        ),
        SkipReason::Operator { by } => format!("by {by}"),
        SkipReason::ManualTimedOut => "not answered in time".into(),
        SkipReason::NothingToClean => "nothing to clean".into(),
        SkipReason::LeftAlone => "left alone (already done)".into(),
    }
}

pub fn human(t: &Timeline) -> String {
    let mut o = String::new();
    let hash: String = t.plan_hash.chars().take(12).collect();
    let _ = writeln!(
        o,
        "job {}: {} of plan {} (plan hash {hash})",
        t.job, t.operation, t.plan
    );
    let _ = writeln!(o, "  status:        {}", t.status);
    let _ = writeln!(o, "  verdict:       {}", t.verdict.as_str());
    let _ = writeln!(o, "  requested by:  {}", t.requested_by);
    let _ = writeln!(o, "  started:       {}", time(t.started_at));
    let _ = writeln!(o, "  finished:      {}", time(t.finished_at));
    if let Some(d) = t.duration_ms {
        let running = if t.finished_at.is_none() {
            " so far"
        } else {
            ""
        };
        let _ = writeln!(o, "  duration:      {}{running}", duration(d));
    }
    let _ = writeln!(o, "  achieved RTO:  {}", rto_text(t));
    if let Some(rpo) = rpo_text(t) {
        let _ = writeln!(o, "  data lost:     {rpo}");
    }
    let (vms, failures) = counts_text(t);
    if t.counts.vms_required > 0 {
        let _ = writeln!(o, "  VMs recovered: {vms}");
    }
    let _ = writeln!(o, "  failures:      {failures}");
    if let Some(ms) = t.critical_path_ms {
        let _ = writeln!(
            o,
            "  critical path: {} over {} (marked *)",
            duration(ms),
            super::text::count(t.critical_path.len(), "step")
        );
    }
    if let Some(c) = &t.test {
        let forced = if c.forced { " (forcibly ended)" } else { "" };
        let _ = writeln!(o, "  test closed:   by {}{forced}: {}", c.by, c.notes);
    }
    if !t.errors.is_empty() {
        let _ = writeln!(o, "\nerrors:");
        for e in &t.errors {
            let _ = writeln!(o, "  - {e}");
        }
    }
    if !t.recovery_points.is_empty() {
        let _ = writeln!(o, "\nrecovery points used (data lost = job start - point):");
        for p in &t.recovery_points {
            let _ = writeln!(
                o,
                "  {:<16} {}  {:<16}  data lost {}",
                p.vm,
                time(Some(p.point_at)),
                p.kind.as_str(),
                duration(p.data_loss_ms)
            );
        }
    }
    let _ = writeln!(
        o,
        "\n  {:>10} {:>8}  {:>8} {:>8}  {:<18} STEP",
        "START", "TOOK", "FROM", "TO", "STATE"
    );
    for g in &t.groups {
        let took = g.duration_ms.map(duration).unwrap_or_else(|| "-".into());
        let failed = if g.vms_failed > 0 {
            format!(", {} FAILED", g.vms_failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\ngroup {}: {}/{} {} done{failed}, {took}",
            g.name,
            g.vms_done,
            g.vms_total,
            super::text::noun_for(g.vms_total, "VM")
        );
        for &s in &g.steps {
            step_line(&mut o, t, &t.steps[s]);
        }
    }
    let cleanup: Vec<&StepView> = t.steps.iter().filter(|s| s.cleanup).collect();
    if !cleanup.is_empty() {
        let _ = writeln!(o, "\ntest cleanup:");
        for s in cleanup {
            step_line(&mut o, t, s);
        }
    }
    if !t.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &t.warnings {
            let _ = writeln!(o, "  - {w}");
        }
    }
    if !t.operator_actions.is_empty() {
        let _ = writeln!(o, "\noperator actions:");
        for a in &t.operator_actions {
            let _ = writeln!(o, "  {}", action_text(a));
        }
    }
    o
}

/// One operator action: when, who, what, on which step, the note.
pub fn action_text(a: &drplan_engine::report::ActionView) -> String {
    let step = a
        .step
        .as_deref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let note = a
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    format!("{}  {}  {}{step}{note}", time(Some(a.at)), a.by, a.action)
}

pub fn run(args: &ShowArgs) -> Exit {
    match run_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &ShowArgs) -> Result<Exit, Exit> {
    let job = JobId(args.job);
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    if !dir.exists() {
        eprintln!(
            "drplan: job {job} does not exist (no data directory `{}`)",
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    let r = Reader::open(Some(&dir))?;
    let meta = r.meta(job)?;
    let (t, _) = r.timeline(&meta)?;
    Ok(match args.format {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(&t).map_err(|e| {
                eprintln!("drplan: {e}");
                Exit::CouldNotRun
            })?;
            text.push('\n');
            emit(&text)
        }
        OutputFormat::Human => emit(&human(&t)),
    })
}
