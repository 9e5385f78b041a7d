//! The job machine: `(context, state, event) → (state, effects)`.
//!
//! Every public entry validates the event completely before it changes
//! anything, so a rejected event leaves the state exactly as it was (the
//! runtime does not log rejected events; the property tests check this).

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::context::{JobContext, ms};
use super::item::ItemEvent;
use super::types::*;
use crate::plan::compile::{NodeKind, Operation, StepId, VmOp};
use crate::plan::model::{CommitPolicy, FailoverKind, OnTimeout, StepAction};
use crate::store::JobId;

/// Why an event was refused. The state is unchanged; the runtime does not
/// record the event. Messages are written for operators.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejected {
    #[error("a job's first event must be its submission")]
    NotSubmitted,
    #[error("job {job} was already submitted")]
    AlreadySubmitted { job: JobId },
    #[error("job {job} asks for {requested} but its plan was compiled for {compiled}")]
    OperationMismatch {
        job: JobId,
        requested: Operation,
        compiled: Operation,
    },
    #[error("job {job} lists VMs that differ from the VMs of its plan")]
    VmsMismatch { job: JobId },
    #[error("job {job} is finished ({status}); it takes no more events")]
    JobFinished { job: JobId, status: JobStatus },
    #[error("job {job} has already started")]
    AlreadyStarted { job: JobId },
    #[error("job {job} is scheduled to start at {due} (Unix ms); start it now to start earlier")]
    Scheduled { job: JobId, due: Millis },
    #[error("job {job} has no step {step}")]
    UnknownStep { job: JobId, step: StepId },
    /// A stale or duplicate outcome (at-least-once delivery): harmless, see
    /// [`Rejected::is_duplicate`].
    #[error(
        "step `{key}` attempt {attempt} is not running (the step is {state}): a stale or duplicate outcome"
    )]
    StaleOutcome {
        key: String,
        attempt: u32,
        state: &'static str,
    },
    #[error("step `{key}` is not waiting for an answer (it is {state})")]
    NotAwaitingAnswer { key: String, state: &'static str },
    #[error("step `{key}` cannot be {verb}: it is {state}, not a failure waiting for a decision")]
    NotFailed {
        key: String,
        verb: &'static str,
        state: &'static str,
    },
    #[error("job {job} is a {operation}, not a test failover; only tests are completed")]
    NotATest { job: JobId, operation: Operation },
    #[error("the test of job {job} cannot be completed while it is {status}")]
    TestNotOpen { job: JobId, status: JobStatus },
    #[error("job {job} cannot be cancelled while it is {status}")]
    CannotCancel { job: JobId, status: JobStatus },
    #[error("timer `{timer}` of job {job} is not armed")]
    TimerNotArmed { job: JobId, timer: TimerId },
    #[error("timer `{timer}` of job {job} is due at {due} (Unix ms); it cannot fire at {at}")]
    TimerEarly {
        job: JobId,
        timer: TimerId,
        due: Millis,
        at: Millis,
    },
}

impl Rejected {
    /// True for a repeated delivery of something already recorded (a stale
    /// step outcome, a timer that already fired): the runtime drops it
    /// quietly, since at-least-once delivery makes these routine.
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            Rejected::StaleOutcome { .. } | Rejected::TimerNotArmed { .. }
        )
    }
}

/// The first event of a job: `Submitted`. Checks the spec against the
/// compiled plan; a scheduled job arms its start timer.
pub fn submit(ctx: &JobContext, event: &JobEvent) -> Result<(JobState, Vec<Effect>), Rejected> {
    let JobEvent::Submitted { spec, at } = event else {
        return Err(Rejected::NotSubmitted);
    };
    if spec.operation != ctx.main.operation {
        return Err(Rejected::OperationMismatch {
            job: spec.id,
            requested: spec.operation,
            compiled: ctx.main.operation,
        });
    }
    // The VMs it acts on and those it leaves alone are, together, the
    // plan's VMs, each once.
    let mut all: Vec<&str> = spec
        .vms
        .iter()
        .chain(&spec.left_alone)
        .map(String::as_str)
        .collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) || !all.into_iter().eq(ctx.main.vms()) {
        return Err(Rejected::VmsMismatch { job: spec.id });
    }
    let mut st = JobState {
        spec: spec.clone(),
        submitted_at: *at,
        mode: Mode::NotStarted,
        started_at: None,
        finished_at: None,
        steps: vec![StepRecord::PENDING; ctx.len()],
        active: BTreeSet::new(),
        timers: Default::default(),
        outputs: Default::default(),
        answers: Default::default(),
        test: None,
        values: Default::default(),
        dep_cursor: Default::default(),
        // Every step pending: nobody waits.
        awaiting: AwaitCounts(Some(Awaiting::default())),
    };
    let mut fx = Vec::new();
    if let Some(due) = spec.start_at {
        st.timers.insert(TimerId::ScheduledStart, due);
        fx.push(Effect::ArmTimer {
            timer: TimerId::ScheduledStart,
            due,
        });
    }
    Ok((st, fx))
}

/// The pure transition: the next state and the effects, or a rejection.
pub fn transition(
    ctx: &JobContext,
    state: &JobState,
    event: &JobEvent,
) -> Result<(JobState, Vec<Effect>), Rejected> {
    let mut next = state.clone();
    let fx = apply(ctx, &mut next, event)?;
    Ok((next, fx))
}

/// The same transition in place (no copy of the state: the runtime's and the
/// benchmark's path). On `Err` the state is untouched.
pub fn apply(
    ctx: &JobContext,
    state: &mut JobState,
    event: &JobEvent,
) -> Result<Vec<Effect>, Rejected> {
    let job = state.spec.id;
    if let Mode::Finished { status } = state.mode {
        return Err(Rejected::JobFinished { job, status });
    }
    // Validation first (no mutation before this match returns a plan).
    let action = validate(ctx, state, event)?;
    if state.awaiting.0.is_none() {
        // A state this core did not build (decoded from a snapshot): count
        // once, then `Tx::set` keeps the counts.
        state.awaiting = AwaitCounts(Some(state.scan_awaiting()));
    }
    let mut tx = Tx {
        ctx,
        st: state,
        at: event.at(),
        fx: Vec::new(),
        work: BTreeSet::new(),
    };
    tx.perform(action, event);
    Ok(tx.fx)
}

/// Rebuild a job's state from its whole event log.
pub fn replay(ctx: &JobContext, events: &[JobEvent]) -> Result<JobState, Rejected> {
    let (first, rest) = events.split_first().ok_or(Rejected::NotSubmitted)?;
    let (mut st, _) = submit(ctx, first)?;
    for e in rest {
        apply(ctx, &mut st, e)?;
    }
    Ok(st)
}

/// What must be issued again after a restart: every running script or VM
/// operation with the same attempt and idempotency key (the fabric treats
/// the repeated key as the same operation), a cancel again for those a
/// cancellation is draining, and the operator prompts. Timers are not
/// re-issued: they live in the store's timer index.
pub fn resume_effects(ctx: &JobContext, state: &JobState) -> Vec<Effect> {
    let mut fx = Vec::new();
    if matches!(state.mode, Mode::Finished { .. }) {
        return fx;
    }
    let cancelling = matches!(state.mode, Mode::Cancelling { .. });
    for &s in &state.active {
        match &state.steps[s].state {
            StepState::Running { attempt } => {
                if let Some(e) = run_effect(ctx, state.spec.id, s, *attempt) {
                    fx.push(e);
                    if cancelling {
                        fx.push(Effect::CancelStep {
                            step: s,
                            attempt: *attempt,
                        });
                    }
                }
            }
            StepState::AwaitingOperator { .. } => fx.push(Effect::AwaitOperator { step: s }),
            _ => {}
        }
    }
    fx
}

/// The effect that runs attempt `attempt` of a script or VM step.
fn run_effect(ctx: &JobContext, job: JobId, step: StepId, attempt: u32) -> Option<Effect> {
    let node = ctx.node(step)?;
    let key = IdemKey {
        job,
        node: node.key.clone(),
        attempt,
    };
    match &node.kind {
        NodeKind::Vm { vm, op } => Some(Effect::RunVmOp {
            step,
            attempt,
            key,
            vm: vm.clone(),
            op: op.clone(),
        }),
        NodeKind::Step(s) if matches!(s.action, StepAction::Script { .. }) => {
            Some(Effect::RunScript { step, attempt, key })
        }
        NodeKind::Step(_) => None,
    }
}

impl JobState {
    /// The operators' status.
    pub fn status(&self) -> JobStatus {
        let awaiting = || self.awaiting_now().any > 0;
        match self.mode {
            Mode::NotStarted => JobStatus::NotStarted,
            Mode::Running if awaiting() => JobStatus::WaitingForOperator,
            Mode::Running => JobStatus::InProgress,
            Mode::CleaningUp if awaiting() => JobStatus::WaitingForOperator,
            Mode::CleaningUp => JobStatus::CleaningUp,
            Mode::Cancelling { .. } => JobStatus::Cancelling,
            Mode::AwaitingCleanup => JobStatus::AwaitingCleanup,
            Mode::CleanupIncomplete => JobStatus::CleanupIncomplete,
            Mode::Finished { status } => status,
        }
    }

    /// Active steps waiting for an operator, counted by scanning `active`.
    pub(crate) fn scan_awaiting(&self) -> Awaiting {
        let mut n = Awaiting::default();
        for &s in &self.active {
            let a = Awaiting::of(&self.steps[s].state);
            n.any += a.any;
            n.failed += a.failed;
        }
        n
    }

    /// The counts `Tx::set` keeps, or a scan when they are not known yet.
    pub(crate) fn awaiting_now(&self) -> Awaiting {
        match self.awaiting.0 {
            Some(n) => {
                debug_assert_eq!(n, self.scan_awaiting(), "await counts drifted");
                n
            }
            None => self.scan_awaiting(),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.mode, Mode::Finished { .. })
    }

    /// Counts for reports.
    pub fn summary(&self, ctx: &JobContext) -> Summary {
        let mut s = Summary::default();
        for (id, rec) in self.steps.iter().enumerate() {
            let optional = ctx.node(id).is_some_and(|n| n.optional);
            match &rec.state {
                StepState::Succeeded { .. } => s.succeeded += 1,
                StepState::Skipped { .. } => s.skipped += 1,
                StepState::Cancelled { .. } => s.cancelled += 1,
                StepState::Pending => s.not_run += 1,
                st if st.is_failure() => s.failed += 1,
                _ => s.active += 1,
            }
            if counts_as_error(&rec.state) {
                if optional {
                    s.warnings += 1;
                } else {
                    s.errors += 1;
                }
            }
        }
        s
    }
}

/// Step counts of a job. `errors` are required steps that failed (or were
/// skipped by an operator after failing); `warnings` the same for optional
/// ones, which never fail a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    pub not_run: usize,
    pub active: usize,
    pub errors: usize,
    pub warnings: usize,
}

fn counts_as_error(s: &StepState) -> bool {
    s.is_failure()
        || matches!(
            s,
            StepState::Skipped {
                reason: SkipReason::Operator { .. }
            }
        )
}

/// A validated event, ready to perform.
enum Action {
    Begin,
    Outcome { step: StepId, attempt: u32 },
    Answer { step: StepId, attempt: u32 },
    Timer { timer: TimerId },
    RetryHalted { step: StepId, attempt: u32 },
    SkipHalted { step: StepId },
    RetryCleanup { step: StepId, attempt: u32 },
    SkipCleanup { step: StepId },
    CancelNotStarted,
    CancelRunning,
    CompleteTest,
}

fn key_of(ctx: &JobContext, step: StepId) -> String {
    ctx.node(step).map(|n| n.key.clone()).unwrap_or_default()
}

fn validate(ctx: &JobContext, st: &JobState, event: &JobEvent) -> Result<Action, Rejected> {
    let job = st.spec.id;
    let known = |step: StepId| {
        if step < ctx.len() && step < st.steps.len() {
            Ok(&st.steps[step].state)
        } else {
            Err(Rejected::UnknownStep { job, step })
        }
    };
    match event {
        JobEvent::Submitted { .. } => Err(Rejected::AlreadySubmitted { job }),
        JobEvent::Started { .. } => {
            if st.mode != Mode::NotStarted {
                return Err(Rejected::AlreadyStarted { job });
            }
            if let Some(&due) = st.timers.get(&TimerId::ScheduledStart) {
                return Err(Rejected::Scheduled { job, due });
            }
            Ok(Action::Begin)
        }
        JobEvent::StepFinished { step, attempt, .. } => {
            let state = known(*step)?;
            // Only scripts and VM operations report outcomes; manual and
            // wait steps end by answers and timers.
            let runs_outside = run_effect(ctx, job, *step, 1).is_some();
            match state {
                StepState::Running { attempt: a } if a == attempt && runs_outside => {
                    Ok(Action::Outcome {
                        step: *step,
                        attempt: *attempt,
                    })
                }
                other => Err(Rejected::StaleOutcome {
                    key: key_of(ctx, *step),
                    attempt: *attempt,
                    state: other.name(),
                }),
            }
        }
        JobEvent::ManualAnswered { step, .. } => match known(*step)? {
            StepState::AwaitingOperator {
                attempt,
                reason: AwaitReason::Manual,
            } => Ok(Action::Answer {
                step: *step,
                attempt: *attempt,
            }),
            other => Err(Rejected::NotAwaitingAnswer {
                key: key_of(ctx, *step),
                state: other.name(),
            }),
        },
        JobEvent::TimerFired { timer, at } => {
            let Some(&due) = st.timers.get(timer) else {
                return Err(Rejected::TimerNotArmed { job, timer: *timer });
            };
            if *at < due {
                return Err(Rejected::TimerEarly {
                    job,
                    timer: *timer,
                    due,
                    at: *at,
                });
            }
            Ok(Action::Timer { timer: *timer })
        }
        JobEvent::OperatorAction { action, .. } => match action {
            OperatorAction::Retry { step } | OperatorAction::Skip { step } => {
                let retry = matches!(action, OperatorAction::Retry { .. });
                let state = known(*step)?;
                let in_cleanup = matches!(st.mode, Mode::CleaningUp | Mode::CleanupIncomplete);
                match state {
                    StepState::AwaitingOperator {
                        attempt,
                        reason: AwaitReason::Failed { .. },
                    } => Ok(if retry {
                        Action::RetryHalted {
                            step: *step,
                            attempt: *attempt,
                        }
                    } else {
                        Action::SkipHalted { step: *step }
                    }),
                    s if in_cleanup && ctx.is_cleanup(*step) && s.is_failure() => Ok(if retry {
                        Action::RetryCleanup {
                            step: *step,
                            attempt: s.attempt(),
                        }
                    } else {
                        Action::SkipCleanup { step: *step }
                    }),
                    other => Err(Rejected::NotFailed {
                        key: key_of(ctx, *step),
                        verb: if retry { "retried" } else { "skipped" },
                        state: other.name(),
                    }),
                }
            }
            OperatorAction::Cancel => match st.mode {
                Mode::NotStarted => Ok(Action::CancelNotStarted),
                Mode::Running => Ok(Action::CancelRunning),
                _ => Err(Rejected::CannotCancel {
                    job,
                    status: st.status(),
                }),
            },
            OperatorAction::CompleteTest { .. } => {
                if !ctx.is_test() {
                    return Err(Rejected::NotATest {
                        job,
                        operation: ctx.main.operation,
                    });
                }
                match st.mode {
                    Mode::Running
                    | Mode::AwaitingCleanup
                    | Mode::Cancelling {
                        then: AfterCancel::AwaitCleanup,
                    } => Ok(Action::CompleteTest),
                    _ => Err(Rejected::TestNotOpen {
                        job,
                        status: st.status(),
                    }),
                }
            }
            OperatorAction::StartNow => {
                if st.mode == Mode::NotStarted {
                    Ok(Action::Begin)
                } else {
                    Err(Rejected::AlreadyStarted { job })
                }
            }
        },
    }
}

/// One transition in progress.
struct Tx<'a> {
    ctx: &'a JobContext,
    st: &'a mut JobState,
    at: Millis,
    fx: Vec<Effect>,
    /// Steps whose readiness may have changed.
    work: BTreeSet<StepId>,
}

impl Tx<'_> {
    fn perform(&mut self, action: Action, event: &JobEvent) {
        match action {
            Action::Begin => self.begin(),
            Action::Outcome { step, attempt } => {
                let JobEvent::StepFinished {
                    outcome,
                    output_tail,
                    values,
                    ..
                } = event
                else {
                    return;
                };
                if let Some(out) = output_tail {
                    self.st.outputs.insert(step, out.clone());
                }
                // Only a successful attempt publishes (a failed one may have
                // written half its file).
                if *outcome == Outcome::Succeeded && !values.is_empty() {
                    self.st
                        .values
                        .extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                self.outcome(step, attempt, outcome);
            }
            Action::Answer { step, attempt } => {
                let JobEvent::ManualAnswered { done, by, note, .. } = event else {
                    return;
                };
                self.st.answers.insert(
                    step,
                    Answer {
                        done: *done,
                        by: by.clone(),
                        note: note.clone(),
                        at: self.at,
                    },
                );
                self.disarm(TimerId::ManualTimeout { step });
                if *done {
                    self.finalize(step, StepState::Succeeded { attempt });
                } else {
                    let error = match note {
                        Some(n) => format!("{by} answered: not done ({n})"),
                        None => format!("{by} answered: not done"),
                    };
                    self.fail(step, attempt, Failure::Error { error });
                }
            }
            Action::Timer { timer } => {
                self.st.timers.remove(&timer);
                self.timer(timer);
            }
            Action::RetryHalted { step, attempt } => {
                self.launch(step, attempt.saturating_add(1));
                self.seed_pending_main();
            }
            Action::SkipHalted { step } => {
                let by = operator(event);
                self.finalize(
                    step,
                    StepState::Skipped {
                        reason: SkipReason::Operator { by },
                    },
                );
                self.seed_pending_main();
            }
            Action::RetryCleanup { step, attempt } => {
                self.st.mode = Mode::CleaningUp;
                self.launch(step, attempt.saturating_add(1));
            }
            Action::SkipCleanup { step } => {
                self.st.mode = Mode::CleaningUp;
                let by = operator(event);
                self.finalize(
                    step,
                    StepState::Skipped {
                        reason: SkipReason::Operator { by },
                    },
                );
                // The operator vouches that the test VM is gone.
                if let Some(NodeKind::Vm {
                    vm,
                    op: VmOp::DeleteTestVm,
                }) = self.ctx.node(step).map(|n| &n.kind)
                {
                    self.item(vm, ItemEvent::TestCleanedUp);
                }
            }
            Action::CancelNotStarted => self.finish(JobStatus::Cancelled),
            Action::CancelRunning => {
                let then = if self.ctx.is_test() {
                    AfterCancel::AwaitCleanup
                } else {
                    AfterCancel::Cancelled
                };
                self.begin_cancel(then);
            }
            Action::CompleteTest => {
                let JobEvent::OperatorAction {
                    action: OperatorAction::CompleteTest { notes },
                    by,
                    ..
                } = event
                else {
                    return;
                };
                self.close_test(notes.clone(), by.clone(), false);
            }
        }
        self.pump();
        self.check_done();
    }

    // --- small helpers -----------------------------------------------------

    fn arm(&mut self, timer: TimerId, due: Millis) {
        self.st.timers.insert(timer, due);
        self.fx.push(Effect::ArmTimer { timer, due });
    }

    fn disarm(&mut self, timer: TimerId) {
        if let Some(due) = self.st.timers.remove(&timer) {
            self.fx.push(Effect::DisarmTimer { timer, due });
        }
    }

    fn item(&mut self, vm: &str, event: ItemEvent) {
        self.fx.push(Effect::Item {
            vm: vm.to_string(),
            event,
        });
    }

    fn set(&mut self, step: StepId, state: StepState) {
        let rec = &mut self.st.steps[step];
        if rec.state.is_final() {
            // Leaving (or replacing) a finished state: what depended on it
            // must be checked again (see `DepCursor`).
            self.st.dep_cursor.regressed();
        }
        if let Some(n) = &mut self.st.awaiting.0 {
            let (was, now) = (Awaiting::of(&rec.state), Awaiting::of(&state));
            n.any = n.any - was.any + now.any;
            n.failed = n.failed - was.failed + now.failed;
        }
        rec.state = state;
        if rec.state.is_final() {
            rec.finished_at = Some(self.at);
            self.st.active.remove(&step);
        } else {
            self.st.active.insert(step);
        }
    }

    fn seed_pending_main(&mut self) {
        let n = self.ctx.main_len();
        let pending = (0..n).filter(|&s| self.st.steps[s].state == StepState::Pending);
        self.work.extend(pending);
    }

    /// The planned-failover policy: a failed required main step halts the
    /// plan for an operator's decision.
    fn halts(&self, step: StepId) -> bool {
        !self.ctx.is_cleanup(step)
            && matches!(
                self.ctx.main.operation,
                Operation::Failover {
                    kind: FailoverKind::Planned,
                    ..
                }
            )
            && !self.ctx.node(step).is_some_and(|n| n.optional)
    }

    fn halted(&self) -> bool {
        self.st.awaiting_now().failed > 0
    }

    /// Whether a finished dependency lets its dependents start.
    fn satisfied(&self, dep: StepId) -> bool {
        let s = &self.st.steps[dep].state;
        if !s.is_final() {
            return false;
        }
        if self.halts(dep) {
            // Planned: a required step must have succeeded or been skipped
            // (a failure halts instead of getting here, except on cancel).
            matches!(s, StepState::Succeeded { .. } | StepState::Skipped { .. })
        } else {
            // Unplanned, test, cleanup, optional steps: any end will do.
            true
        }
    }

    fn ready(&mut self, step: StepId) -> bool {
        self.st.steps[step].state == StepState::Pending && self.deps_ready(step)
    }

    /// Whether every dependency of `step` is satisfied: a fact about its
    /// dependency class (the steps with the same dependency list), found
    /// once for the class (see `DepCursor`).
    fn deps_ready(&mut self, step: StepId) -> bool {
        let ctx = self.ctx;
        let class = ctx.dep_class(step);
        let deps = ctx.deps(step);
        if self.st.dep_cursor.known_satisfied(class) {
            debug_assert!(
                deps.iter().all(|&d| self.satisfied(d)),
                "step {step}: its class was found satisfied, but a dependency is not"
            );
            return true;
        }
        // Dependencies before the cursor were satisfied when last looked at:
        // resume from there while the class is not ready.
        let cursor = self.st.dep_cursor.get(class).min(deps.len());
        if let Some(i) = (cursor..deps.len()).find(|&i| !self.satisfied(deps[i])) {
            self.st.dep_cursor.set(class, i);
            return false;
        }
        // Satisfaction is not monotone (a retried step runs again), so the
        // ones before the cursor are checked again before saying yes.
        if deps[..cursor].iter().all(|&d| self.satisfied(d)) {
            self.st.dep_cursor.set(class, deps.len());
            self.st.dep_cursor.found_satisfied(class);
            true
        } else {
            self.st.dep_cursor.set(class, 0);
            false
        }
    }

    // --- scheduling --------------------------------------------------------

    /// Queues for `pump` the dependents of a step that reached a final
    /// state, if they can start now. Readiness changes only when a step or
    /// one of its dependencies changes state, so a dependent that is not
    /// ready here is queued again by whichever dependency completes it;
    /// `pump` checks again before launching. Checking here instead of
    /// queueing every dependent keeps a group join (every VM of a group
    /// waking every first operation of the next) from queueing
    /// VMs × VMs candidates.
    fn wake_dependents(&mut self, step: StepId) {
        let ctx = self.ctx;
        // One look decides for a run of dependents of one dependency class
        // (a group join's 100 first operations, say; a class split over two
        // runs is only looked at twice).
        let mut rest = ctx.dependents(step);
        while let Some(&first) = rest.first() {
            let class = ctx.dep_class(first);
            let n = rest
                .iter()
                .take_while(|&&d| ctx.dep_class(d) == class)
                .count();
            let (same, next) = rest.split_at(n);
            rest = next;
            if !self.deps_ready(first) {
                continue;
            }
            for &d in same {
                if self.st.steps[d].state == StepState::Pending {
                    self.work.insert(d);
                }
            }
        }
    }

    fn pump(&mut self) {
        let cleanup = match self.st.mode {
            Mode::Running => {
                if self.halted() {
                    self.work.clear();
                    return;
                }
                false
            }
            Mode::CleaningUp => true,
            _ => {
                self.work.clear();
                return;
            }
        };
        while let Some(s) = self.work.pop_first() {
            if self.ctx.is_cleanup(s) == cleanup && self.ready(s) {
                self.launch(s, 1);
            }
        }
    }

    /// Start attempt `attempt` of a step.
    fn launch(&mut self, step: StepId, attempt: u32) {
        let ctx = self.ctx;
        let Some(node) = ctx.node(step) else { return };
        if self.st.steps[step].started_at.is_none() {
            self.st.steps[step].started_at = Some(self.at);
        }
        match &node.kind {
            NodeKind::Vm { vm, .. } => {
                self.set(step, StepState::Running { attempt });
                if attempt == 1
                    && !ctx.is_cleanup(step)
                    && ctx
                        .chain(step)
                        .is_some_and(|(_, c)| c.steps.first() == Some(&step))
                    && let Some(ev) = chain_start_event(&ctx.main.operation)
                {
                    self.item(vm, ev);
                }
                if let Some(e) = run_effect(ctx, self.st.spec.id, step, attempt) {
                    self.fx.push(e);
                }
            }
            NodeKind::Step(s) => match &s.action {
                StepAction::Script { .. } => {
                    self.set(step, StepState::Running { attempt });
                    if let Some(e) = run_effect(ctx, self.st.spec.id, step, attempt) {
                        self.fx.push(e);
                    }
                }
                StepAction::Manual { timeout, .. } => {
                    self.set(
                        step,
                        StepState::AwaitingOperator {
                            attempt,
                            reason: AwaitReason::Manual,
                        },
                    );
                    self.fx.push(Effect::AwaitOperator { step });
                    if let Some(t) = timeout {
                        let due = self.at.saturating_add(ms(*t));
                        self.arm(TimerId::ManualTimeout { step }, due);
                    }
                }
                StepAction::Wait { duration } => {
                    self.set(step, StepState::Running { attempt });
                    let due = self.at.saturating_add(ms(*duration));
                    self.arm(TimerId::Wait { step }, due);
                }
            },
        }
    }

    /// A step reached a final state: skip the rest of a failed VM chain,
    /// record the item's progress, and wake the dependents.
    fn finalize(&mut self, step: StepId, state: StepState) {
        let failed = state.is_failure();
        let succeeded = matches!(state, StepState::Succeeded { .. });
        self.set(step, state);
        self.wake_dependents(step);
        let ctx = self.ctx;
        let Some(node) = ctx.node(step) else { return };
        let NodeKind::Vm { vm, op } = &node.kind else {
            return;
        };
        if succeeded && let Some(ev) = op_success_event(op) {
            self.item(vm, ev);
        }
        let Some((_, chain)) = ctx.chain(step) else {
            return;
        };
        if failed {
            // Later operations of this VM would act on a VM whose earlier
            // operation failed (e.g. start a replica that never failed over).
            let later = chain.steps.iter().skip_while(|&&s| s != step).skip(1);
            for &s in later {
                if self.st.steps[s].state == StepState::Pending {
                    self.set(
                        s,
                        StepState::Skipped {
                            reason: SkipReason::ChainFailed { step },
                        },
                    );
                    self.wake_dependents(s);
                }
            }
        }
        if !chain.cleanup
            && chain
                .steps
                .iter()
                .all(|&s| self.st.steps[s].state.is_final())
        {
            self.chain_end(chain.steps.as_slice(), vm);
        }
    }

    /// The item event when a VM's chain ends (or is abandoned by a cancel)
    /// without having reached its operation's goal.
    fn chain_end(&mut self, steps: &[StepId], vm: &str) {
        let Some(&first) = steps.first() else { return };
        if self.st.steps[first].started_at.is_none() {
            return; // never started: the item never left its stable state
        }
        let op = self.ctx.main.operation;
        let reached = |this: &Self, pred: fn(&VmOp) -> bool| {
            steps.iter().any(|&s| {
                matches!(this.st.steps[s].state, StepState::Succeeded { .. })
                    && this
                        .ctx
                        .node(s)
                        .is_some_and(|n| matches!(&n.kind, NodeKind::Vm { op, .. } if pred(op)))
            })
        };
        let ev = match op {
            Operation::Failover {
                kind: FailoverKind::Test,
                ..
            } => Some(ItemEvent::TestFailoverFinished),
            Operation::Failover { .. } => {
                if reached(self, |o| matches!(o, VmOp::Failover { .. })) {
                    None
                } else if steps.iter().any(|&s| self.st.steps[s].state.is_failure()) {
                    Some(ItemEvent::FailoverFailed)
                } else {
                    Some(ItemEvent::Aborted)
                }
            }
            Operation::ReverseReplicate => {
                (!reached(self, |o| matches!(o, VmOp::ReverseReplicate)))
                    .then_some(ItemEvent::Aborted)
            }
            // Protection not finalized: the VM is unprotected again (a
            // replica already created stays on the fabric and is reused by
            // the next attempt).
            Operation::EnableProtection => {
                (!reached(self, |o| matches!(o, VmOp::FinalizeProtection)))
                    .then_some(ItemEvent::Aborted)
            }
            _ => None,
        };
        if let Some(ev) = ev {
            self.item(vm, ev);
        }
    }

    /// An attempt failed: retry (scripts with attempts left), halt (planned,
    /// required), or record the failure.
    fn fail(&mut self, step: StepId, attempt: u32, failure: Failure) {
        self.fail_with(step, attempt, failure, true)
    }

    /// [`Tx::fail`], where `retryable` says whether a new attempt can
    /// succeed without anything changing. The step's retry policy applies
    /// only to a retryable failure: a script's `retries` (a script that
    /// could not start is not retried); VM operations have none, the
    /// operator decides (docs/operator.md, "Retries").
    fn fail_with(&mut self, step: StepId, attempt: u32, failure: Failure, retryable: bool) {
        let running = matches!(self.st.mode, Mode::Running | Mode::CleaningUp);
        if running
            && retryable
            && let Some(NodeKind::Step(s)) = self.ctx.node(step).map(|n| &n.kind)
            && let StepAction::Script {
                retries,
                retry_delay,
                ..
            } = &s.action
            && attempt <= *retries
        {
            let due = self.at.saturating_add(ms(*retry_delay));
            self.set(step, StepState::RetryWaiting { attempt, failure });
            self.arm(TimerId::Retry { step, attempt }, due);
            return;
        }
        if self.st.mode == Mode::Running && self.halts(step) {
            self.set(
                step,
                StepState::AwaitingOperator {
                    attempt,
                    reason: AwaitReason::Failed { failure },
                },
            );
            self.fx.push(Effect::AwaitOperator { step });
            return;
        }
        self.finalize(step, failed_state(attempt, failure));
    }

    fn outcome(&mut self, step: StepId, attempt: u32, outcome: &Outcome) {
        match outcome {
            Outcome::Succeeded => self.finalize(step, StepState::Succeeded { attempt }),
            Outcome::Failed {
                error, retryable, ..
            } => self.fail_with(
                step,
                attempt,
                Failure::Error {
                    error: error.clone(),
                },
                *retryable,
            ),
            Outcome::TimedOut => self.fail(step, attempt, Failure::TimedOut),
            Outcome::Cancelled => {
                if matches!(self.st.mode, Mode::Cancelling { .. }) {
                    self.finalize(step, StepState::Cancelled { attempt });
                } else {
                    // Nobody here asked for it: someone cancelled the
                    // operation in the fabric. That is a failure to report.
                    self.fail(
                        step,
                        attempt,
                        Failure::Error {
                            error: "the operation was cancelled outside drplan".into(),
                        },
                    );
                }
            }
        }
    }

    fn timer(&mut self, timer: TimerId) {
        match timer {
            TimerId::TestDeadline => {
                let notes = format!(
                    "forcibly ended: the test was open longer than {}",
                    humantime::format_duration(self.ctx.test_max_duration)
                );
                self.close_test(notes, "drplan".into(), true);
            }
            TimerId::ScheduledStart => {
                if self.st.mode == Mode::NotStarted {
                    self.begin();
                }
            }
            TimerId::Retry { step, attempt } => {
                if matches!(self.st.steps[step].state, StepState::RetryWaiting { attempt: a, .. } if a == attempt)
                {
                    self.launch(step, attempt.saturating_add(1));
                }
            }
            TimerId::ManualTimeout { step } => {
                if let StepState::AwaitingOperator {
                    attempt,
                    reason: AwaitReason::Manual,
                } = self.st.steps[step].state
                {
                    let on_timeout = match self.ctx.node(step).map(|n| &n.kind) {
                        Some(NodeKind::Step(s)) => match &s.action {
                            StepAction::Manual { on_timeout, .. } => *on_timeout,
                            _ => OnTimeout::Fail,
                        },
                        _ => OnTimeout::Fail,
                    };
                    match on_timeout {
                        OnTimeout::Continue => self.finalize(
                            step,
                            StepState::Skipped {
                                reason: SkipReason::ManualTimedOut,
                            },
                        ),
                        OnTimeout::Fail => self.fail(step, attempt, Failure::TimedOut),
                    }
                }
            }
            TimerId::Wait { step } => {
                if let StepState::Running { attempt } = self.st.steps[step].state {
                    self.finalize(step, StepState::Succeeded { attempt });
                }
            }
        }
    }

    // --- job phases --------------------------------------------------------

    fn begin(&mut self) {
        self.disarm(TimerId::ScheduledStart);
        self.st.mode = Mode::Running;
        self.st.started_at = Some(self.at);
        if self.ctx.is_test() {
            let due = self.at.saturating_add(self.ctx.test_max_ms());
            self.arm(TimerId::TestDeadline, due);
        }
        self.leave_alone();
        self.work.extend(0..self.ctx.main_len());
    }

    /// The steps of the VMs the job leaves alone, and the pre/post steps of
    /// groups whose VMs are all left alone (their work was done by an
    /// earlier job), end `Skipped { LeftAlone }` before anything starts.
    /// Groups without VMs keep their steps.
    fn leave_alone(&mut self) {
        if self.st.spec.left_alone.is_empty() {
            return;
        }
        let alone: BTreeSet<String> = self.st.spec.left_alone.iter().cloned().collect();
        let ctx = self.ctx;
        let main = 0..ctx.main_len();
        // Per group with VMs: whether any of them is acted on.
        let mut acts: BTreeMap<usize, bool> = BTreeMap::new();
        for node in main.clone().filter_map(|s| ctx.node(s)) {
            if let (Some(vm), Some(g)) = (node.vm(), node.group) {
                *acts.entry(g).or_default() |= !alone.contains(vm);
            }
        }
        for s in main {
            let Some(node) = ctx.node(s) else { continue };
            let skip = match node.vm() {
                Some(vm) => alone.contains(vm),
                None => node.group.is_some_and(|g| acts.get(&g) == Some(&false)),
            };
            if skip && self.st.steps[s].state == StepState::Pending {
                self.set(
                    s,
                    StepState::Skipped {
                        reason: SkipReason::LeftAlone,
                    },
                );
            }
        }
    }

    /// Close an open test (operator's CompleteTest or the deadline).
    fn close_test(&mut self, notes: String, by: String, forced: bool) {
        self.disarm(TimerId::TestDeadline);
        self.st.test = Some(TestClosure {
            notes,
            by,
            at: self.at,
            forced,
        });
        match self.st.mode {
            Mode::Running => self.begin_cancel(AfterCancel::Cleanup),
            Mode::Cancelling { .. } => {
                self.st.mode = Mode::Cancelling {
                    then: AfterCancel::Cleanup,
                }
            }
            Mode::AwaitingCleanup => self.begin_cleanup(),
            _ => {}
        }
    }

    fn begin_cancel(&mut self, then: AfterCancel) {
        self.st.mode = Mode::Cancelling { then };
        let active: Vec<StepId> = self.st.active.iter().copied().collect();
        for s in active {
            let is_wait = matches!(
                self.ctx.node(s).map(|n| &n.kind),
                Some(NodeKind::Step(st)) if matches!(st.action, StepAction::Wait { .. })
            );
            match self.st.steps[s].state.clone() {
                StepState::Running { attempt } if is_wait => {
                    self.disarm(TimerId::Wait { step: s });
                    self.finalize(s, StepState::Cancelled { attempt });
                }
                StepState::Running { attempt } => {
                    // Stays Running until the runtime reports how it ended.
                    self.fx.push(Effect::CancelStep { step: s, attempt });
                }
                StepState::RetryWaiting { attempt, failure } => {
                    self.disarm(TimerId::Retry { step: s, attempt });
                    self.finalize(s, failed_state(attempt, failure));
                }
                StepState::AwaitingOperator {
                    attempt,
                    reason: AwaitReason::Manual,
                } => {
                    self.disarm(TimerId::ManualTimeout { step: s });
                    self.finalize(s, StepState::Cancelled { attempt });
                }
                StepState::AwaitingOperator {
                    attempt,
                    reason: AwaitReason::Failed { failure },
                } => self.finalize(s, failed_state(attempt, failure)),
                _ => {}
            }
        }
    }

    fn begin_cleanup(&mut self) {
        self.disarm(TimerId::TestDeadline);
        self.st.mode = Mode::CleaningUp;
        let ctx = self.ctx;
        for (c, chain) in ctx.chains().iter().enumerate() {
            if !chain.cleanup {
                continue;
            }
            let created = ctx
                .cleanup_source(c)
                .and_then(|src| src.steps.first())
                .is_none_or(|&s| self.st.steps[s].started_at.is_some());
            if !created {
                for &s in &chain.steps {
                    self.set(
                        s,
                        StepState::Skipped {
                            reason: SkipReason::NothingToClean,
                        },
                    );
                }
            }
        }
        self.work.extend(ctx.main_len()..ctx.len());
        self.pump();
    }

    fn check_done(&mut self) {
        if !self.st.active.is_empty() {
            return;
        }
        match self.st.mode {
            Mode::Running => {
                if self.ctx.is_test() {
                    self.abandon_chains();
                    self.st.mode = Mode::AwaitingCleanup;
                } else {
                    let status = self.final_status();
                    self.finish(status);
                }
            }
            Mode::Cancelling { then } => {
                self.abandon_chains();
                match then {
                    AfterCancel::Cancelled => self.finish(JobStatus::Cancelled),
                    AfterCancel::AwaitCleanup => self.st.mode = Mode::AwaitingCleanup,
                    AfterCancel::Cleanup => {
                        self.begin_cleanup();
                        self.check_done();
                    }
                }
            }
            Mode::CleaningUp => {
                let ctx = self.ctx;
                let clean = (ctx.main_len()..ctx.len()).all(|s| {
                    matches!(
                        self.st.steps[s].state,
                        StepState::Succeeded { .. } | StepState::Skipped { .. }
                    )
                });
                if clean {
                    let forced = self.st.test.as_ref().is_some_and(|t| t.forced);
                    self.finish(if forced {
                        JobStatus::TestForciblyEnded
                    } else {
                        JobStatus::TestCompleted
                    });
                } else {
                    self.st.mode = Mode::CleanupIncomplete;
                }
            }
            _ => {}
        }
    }

    /// Chains that started but will not finish (cancelled): tell their items.
    fn abandon_chains(&mut self) {
        let ctx = self.ctx;
        for chain in ctx.chains() {
            if !chain.cleanup
                && chain
                    .steps
                    .iter()
                    .any(|&s| !self.st.steps[s].state.is_final())
            {
                self.chain_end(&chain.steps, &chain.vm);
            }
        }
    }

    /// The status of a finished non-test job.
    fn final_status(&self) -> JobStatus {
        let ctx = self.ctx;
        let mut errors = false;
        let (mut any_vm, mut vm_ok, mut any_ok) = (false, false, false);
        for s in 0..ctx.main_len() {
            let state = &self.st.steps[s].state;
            let node = &ctx.main.nodes[s];
            if !node.optional && counts_as_error(state) {
                errors = true;
            }
            let ok = matches!(state, StepState::Succeeded { .. });
            any_ok |= ok;
            if node.vm().is_some() {
                any_vm = true;
                vm_ok |= ok;
            }
        }
        // Failed: nothing was achieved (no VM operation succeeded, or for a
        // plan without VMs, no step); otherwise errors mean partial success.
        if !errors {
            JobStatus::Succeeded
        } else if (any_vm && vm_ok) || (!any_vm && any_ok) {
            JobStatus::CompletedWithErrors
        } else {
            JobStatus::Failed
        }
    }

    fn finish(&mut self, status: JobStatus) {
        let timers: Vec<TimerId> = self.st.timers.keys().copied().collect();
        for t in timers {
            self.disarm(t);
        }
        self.fx.push(Effect::ReleaseLeases);
        if matches!(
            status,
            JobStatus::Succeeded | JobStatus::CompletedWithErrors
        ) && matches!(
            self.ctx.main.operation,
            Operation::Failover {
                kind: FailoverKind::Planned | FailoverKind::Unplanned,
                ..
            }
        ) {
            let follow = match self.ctx.commit {
                CommitPolicy::Manual => None,
                CommitPolicy::AutoCommit { after } => Some((Operation::Commit, after)),
                CommitPolicy::AutoRollback { after } => Some((Operation::Rollback, after)),
            };
            if let Some((operation, after)) = follow {
                self.fx.push(Effect::ScheduleFollowUp {
                    operation,
                    due: self.at.saturating_add(ms(after)),
                });
            }
        }
        self.fx.push(Effect::Finished { status });
        self.st.mode = Mode::Finished { status };
        self.st.finished_at = Some(self.at);
        self.work.clear();
    }
}

fn operator(event: &JobEvent) -> String {
    match event {
        JobEvent::OperatorAction { by, .. } => by.clone(),
        _ => String::new(),
    }
}

fn failed_state(attempt: u32, failure: Failure) -> StepState {
    match failure {
        Failure::Error { error } => StepState::Failed { attempt, error },
        Failure::TimedOut => StepState::TimedOut { attempt },
    }
}

/// The item event when a VM's chain starts.
fn chain_start_event(op: &Operation) -> Option<ItemEvent> {
    match op {
        Operation::Failover {
            kind: FailoverKind::Test,
            ..
        } => Some(ItemEvent::TestFailoverStarted),
        Operation::Failover { .. } => Some(ItemEvent::FailoverStarted),
        Operation::ReverseReplicate => Some(ItemEvent::ReverseReplicationStarted),
        Operation::EnableProtection => Some(ItemEvent::EnableStarted),
        _ => None,
    }
}

/// The item event when a VM operation succeeds.
fn op_success_event(op: &VmOp) -> Option<ItemEvent> {
    match op {
        VmOp::Failover { recovery_point } => Some(ItemEvent::FailoverSucceeded {
            recovery_point: *recovery_point,
        }),
        VmOp::Commit => Some(ItemEvent::Committed),
        VmOp::ChangeRecoveryPoint { recovery_point } => Some(ItemEvent::RecoveryPointChanged {
            recovery_point: *recovery_point,
        }),
        VmOp::ReverseReplicate => Some(ItemEvent::ReverseReplicationSucceeded),
        VmOp::Rollback => Some(ItemEvent::RolledBack),
        VmOp::DeleteTestVm => Some(ItemEvent::TestCleanedUp),
        VmOp::FinalizeProtection => Some(ItemEvent::EnableSucceeded),
        VmOp::DisableProtection { .. } => Some(ItemEvent::ProtectionDisabled),
        _ => None,
    }
}
