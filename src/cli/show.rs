//! `drplan show JOB`: a job's timeline, read from the store (nothing runs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::api::Control;
use drplan_engine::api::client::Client;
use drplan_engine::core::{JobContext, JobEvent, JobState, Outcome, StepState};
use drplan_engine::journal::{JobMeta, Journal};
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store};
use serde::Serialize;

use super::engine_host;
use super::progress::duration;
use super::validate::OutputFormat;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB")]
    pub job: u64,
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a readable timeline, or one JSON document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// One step of the timeline.
#[derive(Debug, Serialize)]
pub struct StepView {
    pub key: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, ...
    pub state: &'static str,
    /// The state with its details (attempt, error, skip reason).
    pub detail: StepState,
    pub attempts: u32,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub duration_ms: Option<u64>,
    /// The outcome of every finished attempt, in order.
    pub outcomes: Vec<Outcome>,
    /// The last output lines of the latest attempt that had output.
    pub output_tail: Option<String>,
    /// A manual step's answer.
    pub answer: Option<AnswerView>,
}

#[derive(Debug, Serialize)]
pub struct AnswerView {
    pub done: bool,
    pub by: String,
    pub note: Option<String>,
    pub at: u64,
}

/// The JSON document.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub job: JobId,
    pub plan: String,
    pub operation: String,
    pub status: &'static str,
    pub requested_by: String,
    pub submitted_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub duration_ms: Option<u64>,
    /// How the test was closed (test failovers): notes, by, forced.
    pub test: Option<drplan_engine::core::TestClosure>,
    pub steps: Vec<StepView>,
}

fn state_name(s: &StepState) -> &'static str {
    match s {
        StepState::Pending => "pending",
        StepState::Running { .. } => "running",
        StepState::RetryWaiting { .. } => "retry_waiting",
        StepState::AwaitingOperator { .. } => "awaiting_operator",
        StepState::Succeeded { .. } => "succeeded",
        StepState::Failed { .. } => "failed",
        StepState::TimedOut { .. } => "timed_out",
        StepState::Skipped { .. } => "skipped",
        StepState::Cancelled { .. } => "cancelled",
    }
}

fn attempt_of(s: &StepState) -> Option<u32> {
    match s {
        StepState::Running { attempt }
        | StepState::RetryWaiting { attempt, .. }
        | StepState::AwaitingOperator { attempt, .. }
        | StepState::Succeeded { attempt }
        | StepState::Failed { attempt, .. }
        | StepState::TimedOut { attempt }
        | StepState::Cancelled { attempt } => Some(*attempt),
        StepState::Pending | StepState::Skipped { .. } => None,
    }
}

pub fn view(meta: &JobMeta, st: &JobState, ctx: &JobContext, events: &[JobEvent]) -> JobView {
    let mut outcomes: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
    let mut tails: BTreeMap<usize, String> = BTreeMap::new();
    for ev in events {
        if let JobEvent::StepFinished {
            step,
            outcome,
            output_tail,
            ..
        } = ev
        {
            outcomes.entry(*step).or_default().push(outcome.clone());
            if let Some(t) = output_tail {
                tails.insert(*step, t.clone());
            }
        }
    }
    let steps = st
        .steps
        .iter()
        .enumerate()
        .map(|(s, rec)| {
            let outs = outcomes.remove(&s).unwrap_or_default();
            StepView {
                key: ctx
                    .node(s)
                    .map(|n| n.key.clone())
                    .unwrap_or_else(|| format!("#{s}")),
                state: state_name(&rec.state),
                detail: rec.state.clone(),
                attempts: attempt_of(&rec.state).unwrap_or(outs.len() as u32),
                started_at: rec.started_at,
                finished_at: rec.finished_at,
                duration_ms: rec
                    .started_at
                    .zip(rec.finished_at)
                    .map(|(a, b)| b.saturating_sub(a)),
                outcomes: outs,
                output_tail: tails.remove(&s).or_else(|| st.outputs.get(&s).cloned()),
                answer: st.answers.get(&s).map(|a| AnswerView {
                    done: a.done,
                    by: a.by.clone(),
                    note: a.note.clone(),
                    at: a.at,
                }),
            }
        })
        .collect();
    JobView {
        job: meta.id,
        plan: meta.plan_name.clone(),
        operation: meta.operation.to_string(),
        status: meta.status.as_str(),
        requested_by: meta.requested_by.clone(),
        submitted_at: st.submitted_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        duration_ms: st
            .started_at
            .zip(st.finished_at)
            .map(|(a, b)| b.saturating_sub(a)),
        test: st.test.clone(),
        steps,
    }
}

fn time(ms: Option<u64>) -> String {
    ms.map(|t| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(t)).to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn human(v: &JobView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "job {}: {} of plan {}", v.job, v.operation, v.plan);
    let _ = writeln!(o, "  status:        {}", v.status);
    let _ = writeln!(o, "  requested by:  {}", v.requested_by);
    let _ = writeln!(o, "  started:       {}", time(v.started_at));
    let _ = writeln!(o, "  finished:      {}", time(v.finished_at));
    if let Some(d) = v.duration_ms {
        let _ = writeln!(o, "  duration:      {}", duration(d));
    }
    if let Some(t) = &v.test {
        let forced = if t.forced { " (forcibly ended)" } else { "" };
        let _ = writeln!(o, "  test closed:   by {}{forced}: {}", t.by, t.notes);
    }
    let _ = writeln!(o, "\nsteps:");
    for s in &v.steps {
        let attempts = match s.attempts {
            0 | 1 => String::new(),
            n => format!(", {n} attempts"),
        };
        let took = s
            .duration_ms
            .map(|d| format!(", {}", duration(d)))
            .unwrap_or_default();
        let _ = writeln!(o, "  {:<44} {}{attempts}{took}", s.key, s.state);
        if s.started_at.is_some() {
            let _ = writeln!(o, "      {} -> {}", time(s.started_at), time(s.finished_at));
        }
        for out in &s.outcomes {
            match out {
                Outcome::Failed { error } => {
                    let _ = writeln!(o, "      error: {error}");
                }
                Outcome::TimedOut => {
                    let _ = writeln!(o, "      timed out");
                }
                Outcome::Cancelled | Outcome::Succeeded => {}
            }
        }
        // A failure without a recorded outcome (a manual step answered
        // "not done", a timed-out manual step) carries its error in the state.
        if let StepState::Failed { error, .. } = &s.detail
            && !s
                .outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Failed { error: e } if e == error))
        {
            let _ = writeln!(o, "      error: {error}");
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
        if let Some(tail) = &s.output_tail {
            let lines: Vec<&str> = tail.lines().collect();
            for l in &lines[lines.len().saturating_sub(10)..] {
                let _ = writeln!(o, "      | {l}");
            }
        }
    }
    o
}

type Read = (JobMeta, JobState, Arc<JobContext>, Vec<JobEvent>);

/// The job straight from the store (no engine runs).
fn read_local(dir: &std::path::Path, store: Arc<SledStore>, job: JobId) -> Result<Read, Exit> {
    let Some(meta) = engine_host::job_meta(store.as_ref(), job)? else {
        eprintln!("drplan: job {job} does not exist in `{}`", dir.display());
        return Err(Exit::CouldNotRun);
    };
    let plan = engine_host::job_plan(store.as_ref(), &meta)?;
    let ctx = Arc::new(JobContext::new(&plan, meta.operation));
    let store: Arc<dyn Store> = store;
    let journal = Journal::open(store).map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let fail = |e: drplan_engine::journal::JournalError| {
        eprintln!("drplan: job {job}: {e}");
        Exit::CouldNotRun
    };
    let st = journal.job(job).map_err(fail)?.ok_or_else(|| {
        eprintln!("drplan: job {job} does not exist");
        Exit::CouldNotRun
    })?;
    let events = journal.events(job).map_err(fail)?;
    Ok((meta, st, ctx, events))
}

/// The job from the data directory's server.
async fn read_remote(dir: &std::path::Path, c: &Client, job: JobId) -> Result<Read, Exit> {
    let Some(meta) = c.meta(job).await.map_err(engine_host::api_fail)? else {
        eprintln!("drplan: job {job} does not exist in `{}`", dir.display());
        return Err(Exit::CouldNotRun);
    };
    let ctx = c.context(job).await.map_err(engine_host::api_fail)?;
    let st = c
        .job(job)
        .await
        .map_err(engine_host::api_fail)?
        .ok_or_else(|| {
            eprintln!("drplan: job {job} does not exist");
            Exit::CouldNotRun
        })?;
    let events = c.events(job).await.map_err(engine_host::api_fail)?;
    Ok((meta, st, ctx, events))
}

pub fn run(args: &ShowArgs) -> Exit {
    match run_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &ShowArgs) -> Result<Exit, Exit> {
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    let job = JobId(args.job);
    if !dir.exists() {
        eprintln!(
            "drplan: job {job} does not exist (no data directory `{}`)",
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    let rt = engine_host::runtime()?;
    let (meta, st, ctx, events) = rt.block_on(async {
        match engine_host::Session::open(&dir).await? {
            engine_host::Session::Local(store) => read_local(&dir, store, job),
            engine_host::Session::Remote(c) => read_remote(&dir, &c, job).await,
        }
    })?;
    let v = view(&meta, &st, &ctx, &events);
    Ok(match args.format {
        OutputFormat::Json => {
            let mut t = serde_json::to_string_pretty(&v).map_err(|e| {
                eprintln!("drplan: {e}");
                Exit::CouldNotRun
            })?;
            t.push('\n');
            emit(&t)
        }
        OutputFormat::Human => emit(&human(&v)),
    })
}
