//! Following jobs in the foreground: one line per meaningful update, then
//! either the outcome or exactly what the operator has to type next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    pub fn suffix(&self) -> String {
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

/// Whether to colour what goes to stdout (set once by `main` from
/// `--color` and NO_COLOR).
static COLOR: AtomicBool = AtomicBool::new(false);

pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// `text` in bold red when colour is on (failures, things to act on).
fn alarm(text: &str) -> String {
    if COLOR.load(Ordering::Relaxed) {
        format!("\x1b[1;31m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `text` in bold yellow when colour is on (waiting for an operator).
fn attention(text: &str) -> String {
    if COLOR.load(Ordering::Relaxed) {
        format!("\x1b[1;33m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Where a group of a job stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupStat {
    pub name: String,
    pub vms_total: usize,
    pub vms_done: usize,
    pub vms_failed: usize,
    pub started_at: Option<u64>,
    /// Every step of the group is final.
    pub finished_at: Option<u64>,
    /// Steps that failed for good, or halted the job.
    pub failed: Vec<String>,
    /// A step running, or waiting for an operator.
    pub current: Option<String>,
}

/// The groups of a job from its state, in plan order, then the test
/// cleanup once it has begun.
pub fn group_stats(st: &JobState, ctx: &JobContext) -> Vec<GroupStat> {
    let mut groups: BTreeMap<usize, GroupStat> = BTreeMap::new();
    // Per group and VM: (all succeeded, any failed for good).
    let mut vms: BTreeMap<(usize, String), (bool, bool)> = BTreeMap::new();
    // A test's cleanup counts as one more group once it has begun (its
    // steps are pending until an operator closes the test).
    let cleanup_begun = (ctx.main_len()..st.steps.len()).any(|s| st.steps[s].started_at.is_some());
    let last = if cleanup_begun {
        st.steps.len()
    } else {
        ctx.main_len().min(st.steps.len())
    };
    for (s, rec) in st.steps.iter().enumerate().take(last) {
        let Some(node) = ctx.node(s) else { continue };
        let g = if ctx.is_cleanup(s) {
            usize::MAX
        } else {
            let Some(g) = node.group else { continue };
            g
        };
        let stat = groups.entry(g).or_insert_with(|| GroupStat {
            name: if g == usize::MAX {
                "test cleanup".to_string()
            } else {
                node.key.split('/').next().unwrap_or("?").to_string()
            },
            vms_total: 0,
            vms_done: 0,
            vms_failed: 0,
            started_at: None,
            finished_at: Some(0),
            failed: Vec::new(),
            current: None,
        });
        if let Some(a) = rec.started_at {
            stat.started_at = Some(stat.started_at.map_or(a, |b| b.min(a)));
        }
        stat.finished_at = match (stat.finished_at, rec.state.is_final(), rec.finished_at) {
            (Some(f), true, Some(e)) => Some(f.max(e)),
            (Some(f), true, None) => Some(f),
            _ => None,
        };
        let halted = matches!(
            rec.state,
            StepState::AwaitingOperator {
                reason: AwaitReason::Failed { .. },
                ..
            }
        );
        if rec.state.is_failure() || halted {
            stat.failed.push(node.key.clone());
        } else if matches!(rec.state, StepState::AwaitingOperator { .. }) {
            stat.current = Some(attention(&format!("waits for an operator: {}", node.key)));
        } else if matches!(rec.state, StepState::RetryWaiting { .. }) {
            stat.current = Some(format!("retry soon: {}", node.key));
        } else if matches!(rec.state, StepState::Running { .. }) && stat.current.is_none() {
            stat.current = Some(node.key.clone());
        }
        if let Some(vm) = node.vm() {
            let e = vms.entry((g, vm.to_string())).or_insert((true, false));
            e.0 &= matches!(rec.state, StepState::Succeeded { .. });
            e.1 |= rec.state.is_failure() || halted;
        }
    }
    for ((g, _), (ok, failed)) in vms {
        if let Some(stat) = groups.get_mut(&g) {
            stat.vms_total += 1;
            stat.vms_done += usize::from(ok);
            stat.vms_failed += usize::from(failed);
        }
    }
    for stat in groups.values_mut() {
        if stat.started_at.is_none() {
            stat.finished_at = None;
        }
    }
    groups.into_values().collect()
}

/// The plain line of a group: `web  1/2 VMs  3.2s  running web/vm/web-02/start-replica`.
pub fn group_line(g: &GroupStat, now: u64) -> String {
    let mut s = format!(
        "group {:<14} {}/{} {}",
        g.name,
        g.vms_done,
        g.vms_total,
        super::text::noun_for(g.vms_total, "VM")
    );
    match (g.started_at, g.finished_at) {
        (None, _) => s.push_str("  pending"),
        (Some(a), Some(b)) => {
            let _ = write!(s, "  done in {}", duration(b.saturating_sub(a)));
        }
        (Some(a), None) => {
            let _ = write!(s, "  {}", duration(now.saturating_sub(a)));
            if let Some(c) = &g.current {
                let _ = write!(s, "  {c}");
            }
        }
    }
    if !g.failed.is_empty() {
        let _ = write!(
            s,
            "  {}",
            alarm(&format!("FAILED: {}", g.failed.join(", ")))
        );
    }
    s
}

/// The bars of the jobs followed on a terminal: one per group.
struct Bars {
    multi: MultiProgress,
    bars: HashMap<(JobId, usize), ProgressBar>,
    /// What each bar shows now (redraw only on change).
    shown: HashMap<(JobId, usize), GroupStat>,
}

fn bar_style(active: bool, vms: usize) -> ProgressStyle {
    // "1/1 VM ", "0/3 VMs": the noun agrees with the group's size.
    let t = match (active, vms == 1) {
        (true, false) => "{prefix:<16} [{bar:24}] {pos:>3}/{len:<3} VMs {elapsed:>4}  {wide_msg}",
        (true, true) => "{prefix:<16} [{bar:24}] {pos:>3}/{len:<3} VM  {elapsed:>4}  {wide_msg}",
        (false, false) => "{prefix:<16} [{bar:24}] {pos:>3}/{len:<3} VMs       {wide_msg}",
        (false, true) => "{prefix:<16} [{bar:24}] {pos:>3}/{len:<3} VM        {wide_msg}",
    };
    ProgressStyle::with_template(t)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: HashMap::new(),
            shown: HashMap::new(),
        }
    }

    fn println(&self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn update(&mut self, job: JobId, stats: &[GroupStat], now: u64) {
        for (i, g) in stats.iter().enumerate() {
            let k = (job, i);
            if self.shown.get(&k) == Some(g) {
                continue;
            }
            let was_started = self.shown.get(&k).is_some_and(|o| o.started_at.is_some());
            let bar = self.bars.entry(k).or_insert_with(|| {
                let elapsed = g
                    .started_at
                    .map(|a| Duration::from_millis(now.saturating_sub(a)))
                    .unwrap_or_default();
                // Styled before it is added: the first draw is already right.
                let b = ProgressBar::with_draw_target(
                    Some(g.vms_total as u64),
                    ProgressDrawTarget::hidden(),
                )
                .with_style(bar_style(g.started_at.is_some(), g.vms_total))
                .with_prefix(g.name.clone())
                .with_elapsed(elapsed);
                self.multi.add(b)
            });
            if g.started_at.is_some() && !was_started && self.shown.contains_key(&k) {
                bar.reset_elapsed();
            }
            bar.set_length(g.vms_total as u64);
            bar.set_position(g.vms_done as u64);
            let failed =
                (!g.failed.is_empty()).then(|| alarm(&format!("FAILED: {}", g.failed.join(", "))));
            match (g.started_at, g.finished_at) {
                (None, _) => {
                    bar.set_style(bar_style(false, g.vms_total));
                    bar.set_message("pending");
                }
                (Some(a), Some(b)) => {
                    bar.set_style(bar_style(false, g.vms_total));
                    bar.set_message(
                        failed.unwrap_or_else(|| {
                            format!("done in {}", duration(b.saturating_sub(a)))
                        }),
                    );
                    bar.tick();
                }
                (Some(_), None) => {
                    bar.set_style(bar_style(true, g.vms_total));
                    bar.enable_steady_tick(Duration::from_millis(250));
                    let mut msg = g.current.clone().unwrap_or_default();
                    if let Some(f) = failed {
                        msg = if msg.is_empty() {
                            f
                        } else {
                            format!("{f}  {msg}")
                        };
                    }
                    bar.set_message(msg);
                }
            }
            self.shown.insert(k, g.clone());
        }
    }

    /// Leave a job's bars on screen, frozen, before its outcome or prompt.
    fn freeze(&mut self, job: JobId) {
        let keys: Vec<(JobId, usize)> = self.bars.keys().filter(|k| k.0 == job).copied().collect();
        let mut keys = keys;
        keys.sort();
        for k in keys {
            if let Some(b) = self.bars.remove(&k) {
                b.disable_steady_tick();
                b.abandon();
            }
            self.shown.remove(&k);
        }
        if self.bars.is_empty() {
            // A fresh area for the next round: what is printed between the
            // rounds (the prompt and its answers) is not the bars' to
            // redraw over.
            *self = Bars::new();
        }
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
    /// Terminal view: one bar per group (`None` when piped, quiet or JSON).
    bars: Option<Bars>,
    /// The groups as last printed (plain lines on a group's start and end).
    groups: HashMap<JobId, Vec<GroupStat>>,
}

impl<'a> Follower<'a> {
    pub fn new(engine: &'a dyn Control, printer: Printer) -> Follower<'a> {
        // Bars only on a terminal that can redraw, for people reading.
        let tty =
            std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let bars = (tty && !printer.quiet && printer.format == FollowFormat::Human).then(Bars::new);
        Follower {
            engine,
            printer,
            contexts: HashMap::new(),
            started: HashMap::new(),
            bars,
            groups: HashMap::new(),
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
        for &job in jobs {
            self.refresh(job).await;
        }
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
                match self.engine.halted() {
                    Some(detail) => {
                        let jobs: Vec<String> = pending.iter().map(|j| j.to_string()).collect();
                        eprintln!(
                            "{}",
                            store_failed_line(&detail, &jobs, &self.printer.suffix())
                        );
                    }
                    None => eprintln!("drplan: the engine stopped while jobs were running"),
                }
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
        // A timer already due (a test deadline that passed while no engine
        // ran, a manual step's timeout) is about to change the job: follow
        // it until it really stops rather than print a wait it is leaving.
        Ok((!busy && !timer_due(&st, now_ms())).then_some(Stop::Waiting))
    }

    async fn state(&self, job: JobId) -> Result<JobState, String> {
        self.engine
            .job(job)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such job".to_string())
    }

    /// A human line: above the bars on a terminal, else plain.
    fn out(&self, text: &str) {
        match &self.bars {
            Some(b) => b.println(text),
            None => self.printer.line(text),
        }
    }

    /// Re-read a job's groups: redraw the bars, or (plain) print a line when
    /// a group starts or ends.
    async fn refresh(&mut self, job: JobId) {
        if self.printer.quiet || self.printer.format != FollowFormat::Human {
            return;
        }
        let (Ok(st), Some(ctx)) = (self.state(job).await, self.ctx(job).await) else {
            return;
        };
        let mut stats = group_stats(&st, &ctx);
        let now = now_ms();
        let fresh = st.steps.iter().all(|r| r.finished_at.is_none());
        if fresh && !self.groups.contains_key(&job) && self.bars.is_none() {
            // A job that just started: its groups' starts are news to come.
            for g in &mut stats {
                g.started_at = None;
            }
            self.groups.insert(job, stats);
            return;
        }
        if let Some(b) = &mut self.bars {
            b.update(job, &stats, now);
        } else {
            let before = self.groups.get(&job);
            let mut lines = Vec::new();
            for (i, g) in stats.iter().enumerate() {
                let old = before.and_then(|b| b.get(i));
                let ended = g.finished_at.is_some() && old.is_none_or(|o| o.finished_at.is_none());
                let started = g.started_at.is_some() && old.is_none_or(|o| o.started_at.is_none());
                // The first look at a job already under way shows where each
                // group stands; afterwards only changes are news.
                // Each line carries the time of what it reports (a group's
                // end or start), not the time of looking: `watch` of a
                // finished job prints when things happened.
                if before.is_none() && g.started_at.is_some() || before.is_some() && ended {
                    lines.push((g.finished_at.unwrap_or(now), group_line(g, now)));
                } else if before.is_some() && started {
                    lines.push((
                        g.started_at.unwrap_or(now),
                        format!(
                            "group {:<14} started ({})",
                            g.name,
                            super::text::count(g.vms_total, "VM")
                        ),
                    ));
                }
            }
            for (at, l) in lines {
                self.printer.line(&format!("{}  {l}", clock(at)));
            }
        }
        self.groups.insert(job, stats);
    }

    async fn print_update(&mut self, u: &JobUpdate) {
        let Some(ctx) = self.ctx(u.job).await else {
            return;
        };
        let p = self.printer.clone();
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
                        let line = format!("{}  started   {k}{again}", clock(now));
                        if self.bars.is_some() {
                            // The bars show what runs.
                            self.refresh(u.job).await;
                        } else {
                            p.line(&line);
                        }
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
                        // On a terminal the bars carry the routine progress:
                        // only what an operator must notice scrolls above.
                        let routine = self.bars.is_some()
                            && matches!(ev, JobEvent::StepFinished { outcome: Outcome::Succeeded, warnings, .. }
                                if warnings.is_empty());
                        if let Some(text) = human_event(&ctx, ev, took)
                            && !routine
                        {
                            self.out(&text);
                        }
                    }
                }
                self.refresh(u.job).await;
            }
        }
    }

    /// Print how a job stopped; the exit code it deserves.
    async fn report_stop(&mut self, job: JobId, stop: &Stop) -> Exit {
        self.refresh(job).await;
        if let Some(b) = &mut self.bars {
            b.freeze(job);
            // The frozen bars leave the cursor at the end of their last
            // line: end it, so what follows starts on a line of its own.
            let _ = emit("\n");
        }
        let p = self.printer.clone();
        match stop {
            Stop::Ended(status) => {
                let st = self.state(job).await.ok();
                let ctx = self.ctx(job).await;
                let took = st
                    .as_ref()
                    .and_then(|st| Some(st.finished_at?.saturating_sub(st.started_at?)));
                // The verdict `show` and `report` give (docs/operator.md,
                // "Outcome"): a test the core closed normally can still have
                // had a required VM that never ran.
                let verdict = match (&st, &ctx) {
                    (Some(st), Some(ctx)) => {
                        let events = self.engine.events(job).await.unwrap_or_default();
                        Some(drplan_engine::report::Timeline::verdict(st, ctx, &events).0)
                    }
                    _ => None,
                };
                // A drill an operator cancelled and then cleaned up ends
                // well for the command that closed it (docs/operator.md).
                let good = matches!(status, JobStatus::Succeeded | JobStatus::TestCompleted)
                    && verdict.is_none_or(|v| {
                        matches!(
                            v,
                            drplan_engine::report::Verdict::Success
                                | drplan_engine::report::Verdict::Warnings
                        ) || (v == drplan_engine::report::Verdict::Cancelled
                            && *status == JobStatus::TestCompleted)
                    });
                let verdict = verdict.map(|v| v.as_str());
                match p.format {
                    FollowFormat::Json => p.json(json!({
                        "job": job, "event": "ended", "status": status.as_str(),
                        "verdict": verdict, "duration_ms": took,
                    })),
                    FollowFormat::Human => {
                        let took = took.map(|t| format!(" in {}", duration(t)));
                        let mark = if good { "" } else { "!! " };
                        let verdict = verdict.map(|v| format!(": {v}")).unwrap_or_default();
                        p.line(&format!(
                            "{mark}job {job} {}{}{verdict}",
                            status.as_str(),
                            took.unwrap_or_default()
                        ));
                    }
                }
                if !good
                    && let (Some(st), Some(ctx)) = (&st, &ctx)
                    && let Some(w) = way_forward(job, st, ctx, &p.suffix())
                {
                    print_prompts(&p, job, Some(*status), &[w]);
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
                print_prompts(&p, job, status, &prompts);
                Exit::Ok
            }
        }
    }
}

/// Whether one of the job's timers is due at `now` (Unix ms): the engine
/// fires it at once, so the job is not waiting for anyone.
pub(super) fn timer_due(st: &JobState, now: u64) -> bool {
    st.timers.values().any(|&due| due <= now)
}

/// Prints what the operator is asked to do (a wait, or the way forward
/// after a failover that stopped midway).
fn print_prompts(p: &Printer, job: JobId, status: Option<JobStatus>, prompts: &[Prompt]) {
    match p.format {
        FollowFormat::Json => {
            for w in prompts {
                p.json(json!({
                    "job": job, "event": w.event, "status": status.map(|s| s.as_str()),
                    "step": w.step, "reason": w.reason,
                    "message": w.message, "commands": w.commands,
                }));
            }
        }
        FollowFormat::Human => {
            let mut out = String::new();
            for w in prompts {
                let head = if w.event == "waiting" {
                    format!(">> job {job} waits: {}", w.title)
                } else {
                    format!(">> job {job}: {}", w.title)
                };
                let _ = writeln!(out, "\n{}", attention(&head));
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
}

/// The way forward from a planned or unplanned failover that ended without
/// succeeding (cancelled, failed, completed with errors): some VMs may have
/// failed over and others not. Every command offered is one the engine
/// accepts now (docs/operator.md "A way forward from every stop"):
/// `continue` when a VM is still to fail over, `commit` when one failed
/// over, and `rollback` always (it takes every VM not committed).
pub(super) fn way_forward(
    job: JobId,
    st: &JobState,
    ctx: &JobContext,
    suffix: &str,
) -> Option<Prompt> {
    use drplan_engine::plan::FailoverKind;
    use drplan_engine::plan::Operation;
    use drplan_engine::plan::compile::VmOp;
    if !matches!(
        st.spec.operation,
        Operation::Failover {
            kind: FailoverKind::Planned | FailoverKind::Unplanned,
            ..
        }
    ) || !matches!(
        st.status(),
        JobStatus::Cancelled | JobStatus::Failed | JobStatus::CompletedWithErrors
    ) {
        return None;
    }
    // Failed over: by an earlier job (left alone here) or by this one.
    let mut moved: BTreeSet<&str> = st.spec.left_alone.iter().map(String::as_str).collect();
    for s in 0..ctx.main_len() {
        if let Some(n) = ctx.node(s)
            && let NodeKind::Vm {
                vm,
                op: VmOp::Failover { .. },
            } = &n.kind
            && matches!(st.steps[s].state, StepState::Succeeded { .. })
        {
            moved.insert(vm);
        }
    }
    let all = ctx.main.vms();
    let rest: Vec<&str> = all.iter().copied().filter(|v| !moved.contains(v)).collect();
    let names = |v: &[&str]| {
        let mut s = v.iter().take(6).copied().collect::<Vec<_>>().join(", ");
        if v.len() > 6 {
            let _ = write!(s, " and {} more", v.len() - 6);
        }
        s
    };
    let vms = |n: usize| if n == 1 { "VM" } else { "VMs" };
    let moved: Vec<&str> = moved.into_iter().collect();
    let mut message = String::new();
    if !moved.is_empty() {
        let _ = writeln!(
            message,
            "failed over: {} {} ({})",
            moved.len(),
            vms(moved.len()),
            names(&moved)
        );
    }
    if !rest.is_empty() {
        let _ = writeln!(
            message,
            "not failed over: {} {} ({})",
            rest.len(),
            vms(rest.len()),
            names(&rest)
        );
    }
    let mut labelled = Vec::new();
    if !rest.is_empty() {
        labelled.push(("continue:", format!("drplan continue {job}{suffix}")));
    }
    labelled.push(("rollback:", format!("drplan rollback {job}{suffix}")));
    if !moved.is_empty() {
        labelled.push(("commit:", format!("drplan commit {job}{suffix}")));
    }
    let _ = write!(
        message,
        "continue fails over the VMs not yet failed over; rollback returns every VM to \
         the primary; commit keeps the failed-over VMs where they are (see \
         docs/operator.md, \"A way forward from every stop\")"
    );
    if !st.spec.left_alone.is_empty() {
        // This job continued an earlier one: some of the VMs it left alone
        // may have been committed since, and a rollback names those.
        let _ = write!(
            message,
            "\na VM committed since an earlier job cannot be rolled back: rollback \
             names it; reprotect and fail it back instead"
        );
    }
    Some(Prompt {
        event: "way_forward",
        step: None,
        reason: "stopped_midway",
        title: format!(
            "{} of {} {} failed over; a way forward",
            moved.len(),
            all.len(),
            vms(all.len())
        ),
        message,
        commands: labelled.iter().map(|(_, c)| c.clone()).collect(),
        labelled,
    })
}

/// One thing an operator is asked to do.
pub(super) struct Prompt {
    /// `waiting` (the job waits for this) or `way_forward` (the job ended;
    /// these commands move on from where it stopped).
    pub event: &'static str,
    pub step: Option<String>,
    pub reason: &'static str,
    pub title: String,
    pub message: String,
    pub labelled: Vec<(&'static str, String)>,
    pub commands: Vec<String>,
}

pub(super) fn prompts(
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
                event: "waiting",
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
                let mut message = format!("error: {failure}");
                if !ctx.is_test() {
                    // What a cancel leads to (printed again when it ends).
                    message.push_str(
                        "\nafter a cancel: `drplan continue`, `drplan rollback` or `drplan commit` \
                         of this job moves on from the VMs' sides",
                    );
                }
                ("failed", format!("step {k} FAILED"), message)
            }
        };
        out.push(Prompt {
            event: "waiting",
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
                event: "waiting",
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
                event: "waiting",
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
            warnings,
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
                Outcome::Failed { error, .. } => {
                    format!("{at}  {} {k}{again}{took}: {error}", alarm("FAILED   "))
                }
                Outcome::TimedOut => format!("{at}  {} {k}{again}{took}", alarm("TIMED OUT")),
                Outcome::Cancelled => format!("{at}  cancelled {k}{again}{took}"),
            };
            // Warnings are data on the event, never read out of the output.
            for w in warnings {
                let _ = write!(s, "\n          warning: {w}");
            }
            // A failure: its last lines say why.
            if let Some(tail) = output_tail
                && !matches!(outcome, Outcome::Succeeded)
            {
                let lines: Vec<&str> = tail.lines().collect();
                for l in &lines[lines.len().saturating_sub(8)..] {
                    let _ = write!(s, "\n          | {l}");
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

/// The one line a followed job's end gets when the engine's store could not
/// write (`Engine::halted`'s detail): what happened in plain words, what to
/// free or fix, and the command that continues. The engine's own logs of the
/// failure are filtered out at the default verbosity (`-v` shows them).
fn store_failed_line(detail: &str, jobs: &[String], suffix: &str) -> String {
    let full = [
        "No space left on device",
        "StorageFull",
        "os error 28",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|m| detail.contains(m));
    let read_only = ["Read-only file system", "os error 30"]
        .iter()
        .any(|m| detail.contains(m));
    let what = if full {
        "The disk holding drplan's data directory is full: free space on it".to_string()
    } else if read_only {
        "drplan's data directory became read-only: make it writable".to_string()
    } else {
        let short: String = detail.chars().take(200).collect();
        format!("The store could not write ({short}): fix the disk")
    };
    let resume: Vec<String> = jobs
        .iter()
        .map(|j| format!("drplan resume {j}{suffix}"))
        .collect();
    format!(
        "drplan: {} stopped; nothing acknowledged was lost. {what}, then run: {}",
        match jobs {
            [j] => format!("job {j}"),
            _ => format!("jobs {}", jobs.join(", ")),
        },
        resume.join(" ; ")
    )
}

#[cfg(test)]
mod store_failed_tests {
    use super::store_failed_line;

    #[test]
    fn a_full_disk_is_one_plain_line_with_what_to_free_and_what_to_run() {
        let detail = "the store could not make writes durable (sled could not write its log in \
                      /d: IO error: Os { code: 28, kind: StorageFull, message: \"No space left on \
                      device\" }); nothing since was acknowledged";
        let line = store_failed_line(detail, &["1".into()], " --data-dir /d");
        assert_eq!(
            line,
            "drplan: job 1 stopped; nothing acknowledged was lost. The disk holding drplan's \
             data directory is full: free space on it, then run: drplan resume 1 --data-dir /d"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn other_store_failures_say_what_failed_bounded() {
        let detail = "x".repeat(1000);
        let line = store_failed_line(&detail, &["1".into(), "2".into()], "");
        assert!(line.starts_with("drplan: jobs 1, 2 stopped;"), "{line}");
        assert!(
            line.ends_with("drplan resume 1 ; drplan resume 2"),
            "{line}"
        );
        assert!(line.len() < 400, "{}", line.len());
    }
}
