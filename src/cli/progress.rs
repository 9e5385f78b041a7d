//! Following jobs in the foreground: one line per meaningful update, then
//! either the outcome or exactly what the operator has to type next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::ValueEnum;
use drplan_engine::api::{Control, Updates};
use drplan_engine::core::{
    AwaitReason, JobContext, JobEvent, JobState, JobStatus, OperatorAction, Outcome, StepState,
    TimerId,
};
use drplan_engine::plan::compile::NodeKind;
use drplan_engine::plan::model::StepAction;
use drplan_engine::runtime::{JobUpdate, Update};
use drplan_engine::store::JobId;
use serde_json::json;

use super::{Exit, emit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FollowFormat {
    /// One plain line per update.
    Human,
    /// One JSON object per line.
    Json,
}

/// How to print, and what to add to the commands suggested to the operator
/// so that they reach the same data directory and inventory.
#[derive(Debug, Clone)]
pub struct Printer {
    pub format: FollowFormat,
    /// Only the outcome (and what to type next).
    pub quiet: bool,
    pub data_dir: Option<PathBuf>,
    pub fabric: Option<PathBuf>,
}

/// How a followed job stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Ended(JobStatus),
    /// Waiting for an operator (or a scheduled start): exit 0.
    Waiting,
}

impl Printer {
    fn line(&self, text: &str) {
        let _ = emit(&format!("{text}\n"));
    }

    fn json(&self, v: serde_json::Value) {
        let _ = emit(&format!("{v}\n"));
    }

    /// ` --data-dir D --fabric F` when they were given explicitly.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.data_dir {
            let _ = write!(s, " --data-dir {}", shell_word(&d.display().to_string()));
        }
        if let Some(f) = &self.fabric {
            let _ = write!(s, " --fabric {}", shell_word(&f.display().to_string()));
        }
        s
    }
}

/// Quote a word for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn clock(ms: u64) -> String {
    let t = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    // `2026-11-26T15:04:05Z` → `15:04:05`
    t.get(11..19).map(str::to_string).unwrap_or(t)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `850ms`, `3.2s`, `2m05s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// The warning lines of an output tail (the fabric's "attached to no
/// network", "primary unreachable", a runner's warnings).
pub fn warnings(tail: &str) -> impl Iterator<Item = &str> {
    tail.lines()
        .map(str::trim)
        .filter(|l| l.to_ascii_lowercase().starts_with("warning:"))
}

fn key(ctx: &JobContext, step: usize) -> String {
    ctx.node(step)
        .map(|n| n.key.clone())
        .unwrap_or_else(|| format!("#{step}"))
}

/// Follows jobs until each one ends or waits for an operator.
pub struct Follower<'a> {
    /// The engine in this process, or a `drplan serve` through its API.
    pub engine: &'a dyn Control,
    pub printer: Printer,
    contexts: HashMap<JobId, Arc<JobContext>>,
    /// When each running attempt was seen to start (for durations).
    started: HashMap<(JobId, usize), u64>,
}

impl<'a> Follower<'a> {
    pub fn new(engine: &'a dyn Control, printer: Printer) -> Follower<'a> {
        Follower {
            engine,
            printer,
            contexts: HashMap::new(),
            started: HashMap::new(),
        }
    }

    async fn ctx(&mut self, job: JobId) -> Option<Arc<JobContext>> {
        if let Some(c) = self.contexts.get(&job) {
            return Some(c.clone());
        }
        let c = self.engine.context(job).await.ok()?;
        self.contexts.insert(job, c.clone());
        Some(c)
    }

    /// Follow `jobs` with `updates` (subscribed before anything was done to
    /// them, so nothing is missed). The exit code: 0 when every job
    /// succeeded or waits, 1 when one ended badly, 2 when the engine failed.
    /// `on_settle` runs whenever a step finished (to save the simulated
    /// world as it goes).
    pub async fn follow(
        &mut self,
        jobs: &[JobId],
        mut updates: Updates,
        on_step: &dyn Fn(),
    ) -> Exit {
        let mut pending: BTreeSet<JobId> = jobs.iter().copied().collect();
        let mut exit = Exit::Ok;
        // Check every job once first: it may wait already (an `ack` on a job
        // whose answer leads straight to the next prompt, a `resume`).
        let mut check: BTreeSet<JobId> = pending.clone();
        loop {
            for job in std::mem::take(&mut check) {
                match self.settled(job).await {
                    Ok(Some(stop)) => {
                        // The status may be ahead of the updates received:
                        // print what is already on its way first.
                        self.drain(&pending, &mut updates, on_step).await;
                        exit = exit.max(self.report_stop(job, &stop).await);
                        pending.remove(&job);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("drplan: job {job}: {e}");
                        pending.remove(&job);
                        exit = exit.max(Exit::CouldNotRun);
                    }
                }
            }
            if pending.is_empty() {
                return exit;
            }
            let Some(u) = updates.next().await else {
                eprintln!("drplan: the engine stopped while jobs were running");
                return exit.max(Exit::CouldNotRun);
            };
            if !pending.contains(&u.job) {
                continue;
            }
            if matches!(u.update, Update::Recorded(JobEvent::StepFinished { .. })) {
                on_step();
            }
            self.print_update(&u).await;
            check.insert(u.job);
        }
    }

    /// Print the updates already published (and those a few milliseconds
    /// away: publishing follows the durable write).
    async fn drain(&mut self, jobs: &BTreeSet<JobId>, updates: &mut Updates, on_step: &dyn Fn()) {
        while let Ok(Some(u)) =
            tokio::time::timeout(Duration::from_millis(30), updates.next()).await
        {
            if !jobs.contains(&u.job) {
                continue;
            }
            if matches!(u.update, Update::Recorded(JobEvent::StepFinished { .. })) {
                on_step();
            }
            self.print_update(&u).await;
        }
    }

    /// `Some` once the job ended, or waits with nothing left running.
    async fn settled(&mut self, job: JobId) -> Result<Option<Stop>, String> {
        let status = self
            .engine
            .status(job)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such job".to_string())?;
        if status.is_terminal() {
            return Ok(Some(Stop::Ended(status)));
        }
        let waiting = matches!(
            status,
            JobStatus::WaitingForOperator
                | JobStatus::AwaitingCleanup
                | JobStatus::CleanupIncomplete
                | JobStatus::NotStarted
        );
        if !waiting {
            return Ok(None);
        }
        let st = self.state(job).await?;
        let busy = st.active.iter().any(|&s| {
            matches!(
                st.steps[s].state,
                StepState::Running { .. } | StepState::RetryWaiting { .. }
            )
        });
        Ok((!busy).then_some(Stop::Waiting))
    }

    async fn state(&self, job: JobId) -> Result<JobState, String> {
        self.engine
            .job(job)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such job".to_string())
    }

    async fn print_update(&mut self, u: &JobUpdate) {
        let Some(ctx) = self.ctx(u.job).await else {
            return;
        };
        let p = &self.printer;
        let now = now_ms();
        match &u.update {
            Update::AttemptStarted { step, attempt, .. } => {
                self.started.insert((u.job, *step), now);
                if p.quiet {
                    return;
                }
                let k = key(&ctx, *step);
                match p.format {
                    FollowFormat::Json => p.json(json!({
                        "job": u.job, "event": "step_started", "step": k,
                        "attempt": attempt, "at": now,
                    })),
                    FollowFormat::Human => {
                        let again = if *attempt > 1 {
                            format!(" (attempt {attempt})")
                        } else {
                            String::new()
                        };
                        p.line(&format!("{}  started   {k}{again}", clock(now)));
                    }
                }
            }
            Update::AwaitingOperator { .. } => {}
            Update::Recorded(ev) => {
                if p.quiet {
                    return;
                }
                let took = match ev {
                    JobEvent::StepFinished { step, at, .. } => self
                        .started
                        .remove(&(u.job, *step))
                        .map(|s| at.saturating_sub(s)),
                    _ => None,
                };
                match p.format {
                    FollowFormat::Json => {
                        let mut v = json!({
                            "job": u.job, "event": event_name(ev), "at": ev.at(),
                            "detail": ev,
                            "status": u.status.map(|s| s.as_str()),
                        });
                        if let Some(s) = event_step(ev) {
                            v["step"] = json!(key(&ctx, s));
                        }
                        if let Some(ms) = took {
                            v["duration_ms"] = json!(ms);
                        }
                        p.json(v);
                    }
                    FollowFormat::Human => {
                        if let Some(text) = human_event(&ctx, ev, took) {
                            p.line(&text);
                        }
                    }
                }
            }
        }
    }

    /// Print how a job stopped; the exit code it deserves.
    async fn report_stop(&mut self, job: JobId, stop: &Stop) -> Exit {
        let p = self.printer.clone();
        match stop {
            Stop::Ended(status) => {
                let good = matches!(status, JobStatus::Succeeded | JobStatus::TestCompleted);
                let took = self
                    .state(job)
                    .await
                    .ok()
                    .and_then(|st| Some(st.finished_at?.saturating_sub(st.started_at?)));
                match p.format {
                    FollowFormat::Json => p.json(json!({
                        "job": job, "event": "ended", "status": status.as_str(),
                        "duration_ms": took,
                    })),
                    FollowFormat::Human => {
                        let took = took.map(|t| format!(" in {}", duration(t)));
                        let mark = if good { "" } else { "!! " };
                        p.line(&format!(
                            "{mark}job {job} {}{}",
                            status.as_str(),
                            took.unwrap_or_default()
                        ));
                    }
                }
                if good { Exit::Ok } else { Exit::Problems }
            }
            Stop::Waiting => {
                let Ok(st) = self.state(job).await else {
                    return Exit::CouldNotRun;
                };
                let Some(ctx) = self.ctx(job).await else {
                    return Exit::CouldNotRun;
                };
                let status = self.engine.status(job).await.ok().flatten();
                let prompts = prompts(job, status, &st, &ctx, &p.suffix());
                match p.format {
                    FollowFormat::Json => {
                        for w in &prompts {
                            p.json(json!({
                                "job": job, "event": "waiting", "status": status.map(|s| s.as_str()),
                                "step": w.step, "reason": w.reason,
                                "message": w.message, "commands": w.commands,
                            }));
                        }
                    }
                    FollowFormat::Human => {
                        let mut out = String::new();
                        for w in &prompts {
                            let _ = writeln!(out, "\n>> job {job} waits: {}", w.title);
                            for l in w.message.lines() {
                                let _ = writeln!(out, "   {l}");
                            }
                            for (what, cmd) in &w.labelled {
                                let _ = writeln!(out, "   {what:<10} {cmd}");
                            }
                        }
                        let _ = emit(&out);
                    }
                }
                Exit::Ok
            }
        }
    }
}

/// One thing an operator is asked to do.
struct Prompt {
    step: Option<String>,
    reason: &'static str,
    title: String,
    message: String,
    labelled: Vec<(&'static str, String)>,
    commands: Vec<String>,
}

fn prompts(
    job: JobId,
    status: Option<JobStatus>,
    st: &JobState,
    ctx: &JobContext,
    suffix: &str,
) -> Vec<Prompt> {
    let mut out = Vec::new();
    if status == Some(JobStatus::CleanupIncomplete) {
        // Cleanup steps that failed for good: the test stays open until
        // each is retried until it succeeds, or skipped.
        for s in ctx.main_len()..ctx.len() {
            if !st.steps[s].state.is_failure() {
                continue;
            }
            let k = key(ctx, s);
            let error = match &st.steps[s].state {
                StepState::Failed { error, .. } => format!("error: {error}"),
                _ => "timed out".into(),
            };
            let labelled = vec![
                ("retry:", format!("drplan retry {job} {k}{suffix}")),
                ("skip:", format!("drplan skip {job} {k}{suffix}")),
            ];
            out.push(Prompt {
                step: Some(k.clone()),
                reason: "cleanup_failed",
                title: format!("cleanup step {k} FAILED (the test stays open)"),
                message: error,
                commands: labelled.iter().map(|(_, c)| c.clone()).collect(),
                labelled,
            });
        }
    }
    for &s in &st.active {
        let StepState::AwaitingOperator { reason, .. } = &st.steps[s].state else {
            continue;
        };
        let k = key(ctx, s);
        let mut labelled = Vec::new();
        let (reason, title, message) = match reason {
            AwaitReason::Manual => {
                let instructions = ctx
                    .node(s)
                    .and_then(|n| match &n.kind {
                        NodeKind::Step(step) => match &step.action {
                            StepAction::Manual { instructions, .. } => Some(instructions.clone()),
                            _ => None,
                        },
                        NodeKind::Vm { .. } => None,
                    })
                    .unwrap_or_default();
                labelled.push((
                    "done:",
                    format!("drplan ack {job} {k} --by NAME [--note TEXT]{suffix}"),
                ));
                labelled.push((
                    "not done:",
                    format!("drplan ack {job} {k} --failed --by NAME [--note TEXT]{suffix}"),
                ));
                ("manual", format!("manual step {k}"), instructions)
            }
            AwaitReason::Failed { failure } => {
                labelled.push(("retry:", format!("drplan retry {job} {k}{suffix}")));
                labelled.push(("skip:", format!("drplan skip {job} {k}{suffix}")));
                labelled.push(("cancel:", format!("drplan cancel {job}{suffix}")));
                (
                    "failed",
                    format!("step {k} FAILED"),
                    format!("error: {failure}"),
                )
            }
        };
        out.push(Prompt {
            step: Some(k),
            reason,
            title,
            message,
            commands: labelled.iter().map(|(_, c)| c.clone()).collect(),
            labelled,
        });
    }
    if out.is_empty() {
        // No step waits: the test waits for its cleanup, or a scheduled
        // start.
        if st.started_at.is_none() {
            let when = st
                .spec
                .start_at
                .map(|t| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(t)))
                .map(|t| format!("scheduled to start at {t}"))
                .unwrap_or_else(|| "not started".into());
            out.push(Prompt {
                step: None,
                reason: "scheduled",
                title: when,
                message: String::new(),
                labelled: vec![("follow:", format!("drplan resume {job}{suffix}"))],
                commands: vec![format!("drplan resume {job}{suffix}")],
            });
        } else {
            let cmd = format!("drplan cleanup {job} --notes TEXT{suffix}");
            out.push(Prompt {
                step: None,
                reason: "cleanup",
                title: "the test failover is up; check it, then clean up".into(),
                message: "test VMs stay until the cleanup (or the test deadline)".into(),
                labelled: vec![("cleanup:", cmd.clone())],
                commands: vec![cmd],
            });
        }
    }
    out
}

fn event_step(ev: &JobEvent) -> Option<usize> {
    match ev {
        JobEvent::StepFinished { step, .. } | JobEvent::ManualAnswered { step, .. } => Some(*step),
        JobEvent::OperatorAction {
            action: OperatorAction::Retry { step } | OperatorAction::Skip { step },
            ..
        } => Some(*step),
        _ => None,
    }
}

fn event_name(ev: &JobEvent) -> &'static str {
    match ev {
        JobEvent::Submitted { .. } => "submitted",
        JobEvent::Started { .. } => "started",
        JobEvent::StepFinished { .. } => "step_finished",
        JobEvent::ManualAnswered { .. } => "manual_answered",
        JobEvent::TimerFired { .. } => "timer_fired",
        JobEvent::OperatorAction { .. } => "operator_action",
    }
}

/// The line(s) of a durable event, `None` for the uninteresting ones.
fn human_event(ctx: &JobContext, ev: &JobEvent, took: Option<u64>) -> Option<String> {
    let at = clock(ev.at());
    let took = took
        .map(|t| format!(" ({})", duration(t)))
        .unwrap_or_default();
    match ev {
        JobEvent::StepFinished {
            step,
            attempt,
            outcome,
            output_tail,
            ..
        } => {
            let k = key(ctx, *step);
            let again = if *attempt > 1 {
                format!(" attempt {attempt}")
            } else {
                String::new()
            };
            let mut s = match outcome {
                Outcome::Succeeded => format!("{at}  ok        {k}{again}{took}"),
                Outcome::Failed { error } => {
                    format!("{at}  FAILED    {k}{again}{took}: {error}")
                }
                Outcome::TimedOut => format!("{at}  TIMED OUT {k}{again}{took}"),
                Outcome::Cancelled => format!("{at}  cancelled {k}{again}{took}"),
            };
            if let Some(tail) = output_tail {
                if matches!(outcome, Outcome::Succeeded) {
                    for w in warnings(tail) {
                        let _ = write!(s, "\n          {w}");
                    }
                } else {
                    // A failure: its last lines say why.
                    let lines: Vec<&str> = tail.lines().collect();
                    for l in &lines[lines.len().saturating_sub(8)..] {
                        let _ = write!(s, "\n          | {l}");
                    }
                }
            }
            Some(s)
        }
        JobEvent::ManualAnswered {
            step,
            done,
            by,
            note,
            ..
        } => {
            let what = if *done { "done" } else { "NOT done" };
            let note = note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            Some(format!(
                "{at}  answered  {} {what} by {by}{note}",
                key(ctx, *step)
            ))
        }
        JobEvent::OperatorAction { action, by, .. } => {
            let what = match action {
                OperatorAction::Retry { step } => format!("retry {}", key(ctx, *step)),
                OperatorAction::Skip { step } => format!("skip {}", key(ctx, *step)),
                OperatorAction::Cancel => "cancel".into(),
                OperatorAction::CompleteTest { notes } => format!("complete the test: {notes}"),
                OperatorAction::StartNow => "start now".into(),
            };
            Some(format!("{at}  operator  {what} (by {by})"))
        }
        JobEvent::Started { .. } => Some(format!("{at}  job started")),
        JobEvent::TimerFired { timer, .. } => Some(match timer {
            TimerId::TestDeadline => {
                format!("{at}  !! the test failover reached its deadline: ending it")
            }
            TimerId::Retry { step, attempt } => {
                format!(
                    "{at}  retrying  {} (after attempt {attempt})",
                    key(ctx, *step)
                )
            }
            TimerId::ManualTimeout { step } => {
                format!(
                    "{at}  !! manual step {} was not answered in time",
                    key(ctx, *step)
                )
            }
            TimerId::Wait { step } => format!("{at}  waited    {}", key(ctx, *step)),
            TimerId::ScheduledStart => format!("{at}  scheduled start"),
        }),
        JobEvent::Submitted { .. } => None,
    }
}

/// Step keys of a job, for "did you mean" hints.
pub fn step_keys(ctx: &JobContext) -> Vec<String> {
    (0..ctx.len())
        .filter_map(|s| ctx.node(s).map(|n| n.key.clone()))
        .collect()
}

/// The keys closest to `wanted` (at most five).
pub fn close_matches(wanted: &str, keys: &[String]) -> Vec<String> {
    let mut scored: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for k in keys {
        let sim = strsim::normalized_levenshtein(wanted, k);
        let last = k.rsplit('/').next().unwrap_or(k);
        let tail =
            strsim::normalized_levenshtein(wanted.rsplit('/').next().unwrap_or(wanted), last);
        let score = sim
            .max(tail * 0.9)
            .max(if k.contains(wanted) { 0.8 } else { 0.0 });
        if score >= 0.5 {
            scored
                .entry(((1.0 - score) * 1000.0) as u64)
                .or_default()
                .push(k.clone());
        }
    }
    scored.into_values().flatten().take(5).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(3_240), "3.2s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(3_720_000), "1h02m");
    }

    #[test]
    fn warnings_are_picked_from_a_tail() {
        let tail = "started web-01 on host-b\nwarning: attached to no network\nok";
        assert_eq!(
            warnings(tail).collect::<Vec<_>>(),
            ["warning: attached to no network"]
        );
    }

    #[test]
    fn close_matches_prefer_the_same_step_name() {
        let keys: Vec<String> = [
            "application/post/verify-health",
            "web/post/update-dns",
            "database/pre/quiesce",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            close_matches("application/post/verify-helth", &keys),
            ["application/post/verify-health"]
        );
        assert_eq!(
            close_matches("web/update-dns", &keys),
            ["web/post/update-dns"]
        );
        assert!(close_matches("zzzzzz", &keys).is_empty());
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/data-1"), "/tmp/data-1");
        assert_eq!(shell_word("my dir"), "'my dir'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
