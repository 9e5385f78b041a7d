//! The timeline of a job, finished or running: what `drplan show`,
//! `drplan report`, `drplan plans` and `drplan history` render.
//!
//! [`Timeline::build`] is a pure function of the job's durable record (its
//! [`JobState`], its event log), its compiled [`JobContext`] and the
//! validated [`Plan`] (for group names): no store, no clock (`now` is an
//! argument, used only for the elapsed time of steps still running). The
//! same inputs always give the same timeline, so renderings agree with each
//! other and are cheap to test.
//!
//! Definitions (also in `docs/operator.md`):
//! - **critical path**: the chain of main-plan steps that determined the
//!   total time. It ends at the main step that finished last and walks back,
//!   at each step, to the dependency that finished last (the one that
//!   released it). Cleanup steps of a test are not on it: they start when an
//!   operator closes the test, not when the plan allows.
//! - **required VM**: a VM the plan does not mark `optional` and the job
//!   does not leave alone (a `continue` leaves alone the VMs an earlier job
//!   already failed over: they are not this job's to recover).
//! - **achieved RTO**: from the job's start until the last required VM was
//!   *running*: its `start-replica` (planned, unplanned, failback) or
//!   `start-test-vm` (test) operation succeeded. Scripts and manual steps
//!   after that are not part of it. When a required VM never came up, the
//!   RTO was not achieved (`achieved_ms: None`, the VMs listed in
//!   `not_running`). Operations that start no VM (commit, reprotect, ...)
//!   have no RTO (`applicable: false`).
//! - **verdict** ([`Verdict`], the one definition every rendering takes;
//!   `docs/operator.md`, "Outcome"), in this order:
//!   1. `CANCELLED`: an operator cancelled the job (from the moment the
//!      cancel is accepted, and still after a cancelled test's cleanup),
//!      unless its cleanup is incomplete (then `ERRORS`: test VMs may remain);
//!   2. `IN PROGRESS`: the job has not ended (not started, running, waiting
//!      for an operator, awaiting or running its cleanup);
//!   3. `ERRORS`: it ended and [`Timeline::errors`] is not empty: a required
//!      step failed or timed out, a required step failed and an operator
//!      skipped it (an error the operator accepted, never a success), a
//!      required VM is not running, the cleanup is incomplete, or the job
//!      ended failed / completed with errors;
//!   4. `WARNINGS`: it ended, no error, and [`Timeline::warnings`] is not
//!      empty: a step succeeded after failed attempts, an optional step
//!      failed or was skipped, a manual step was not answered in time and
//!      the plan continued (`on_timeout: continue`), an attempt reported
//!      warnings (typed, on its event: a NIC attached to no network, a
//!      script's `DRPLAN_OUTPUT` `warning=` line), or the test was forcibly
//!      ended at its deadline;
//!   5. `SUCCESS` otherwise.
//! - **VMs recovered**: the required VMs whose start operation succeeded
//!   (running at the end of a failover; running during a test), out of the
//!   required VMs.
//! - **achieved RPO** (data-loss window) of a VM a failover moved: the
//!   job's start minus the time of the recovery point it used, or 0 when
//!   the point is the final delta a planned failover shipped.
//! - **durations** stop when the job ends: nothing is measured against
//!   `now` once the job (or its main plan, for a cancelled test awaiting
//!   cleanup) has stopped.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{
    Answer, ErrorKind, JobContext, JobEvent, JobState, JobStatus, Mode, OperatorAction, Outcome,
    PointKind, PointRecord, SkipReason, StepState, TestClosure,
};
use crate::plan::compile::{NodeKind, Phase, VmOp};
use crate::plan::model::Plan;
use crate::store::JobId;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The verdict of a job, as audit reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Success,
    Warnings,
    Errors,
    Cancelled,
    InProgress,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Warnings => "WARNINGS",
            Verdict::Errors => "ERRORS",
            Verdict::Cancelled => "CANCELLED",
            Verdict::InProgress => "IN PROGRESS",
        }
    }
}

/// One finished attempt of a step.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub outcome: Outcome,
    pub at: Millis,
    pub output_tail: Option<String>,
    /// The warnings the attempt reported (typed, from its event).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The recovery point a failover attempt used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_point: Option<PointRecord>,
}

/// One step of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub id: usize,
    pub key: String,
    /// The group's name; `None` for test cleanup steps.
    pub group: Option<String>,
    /// `pre`, `vm`, `post` or `cleanup`.
    pub phase: Phase,
    /// `script`, `manual`, `wait` or the VM operation (`start-replica`, ...).
    pub what: String,
    pub vm: Option<String>,
    pub optional: bool,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, ...
    pub state: &'static str,
    /// The state with its details (attempt, error, skip reason).
    pub detail: StepState,
    pub attempts: u32,
    /// Wall clock (Unix ms) when the step first started.
    pub started_at: Option<Millis>,
    /// Wall clock (Unix ms) when it last finished (`None` while active).
    pub finished_at: Option<Millis>,
    /// Finished: end - start; running: now - start (never past the job's
    /// end).
    pub duration_ms: Option<Millis>,
    /// The outcome of every finished attempt, in order.
    pub outcomes: Vec<Outcome>,
    /// Every finished attempt with its time and output tail.
    pub attempt_log: Vec<AttemptView>,
    /// The last output lines of the latest attempt that had output.
    pub output_tail: Option<String>,
    /// A manual step's answer.
    pub answer: Option<Answer>,
    /// On the critical path.
    pub critical: bool,
    /// A test cleanup step (runs once the operator closes the test).
    pub cleanup: bool,
}

/// A VM of a group.
#[derive(Debug, Clone, Serialize)]
pub struct VmView {
    pub name: String,
    pub optional: bool,
    /// `pending`, `running` (its chain is under way), `done`, `failed`,
    /// `stopped` (its chain was cut by a cancel or a halt: some operations
    /// never ran).
    pub state: &'static str,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<Millis>,
    /// When its start operation succeeded (the VM was running).
    pub up_at: Option<Millis>,
    /// Its steps (ids into [`Timeline::steps`]).
    pub steps: Vec<usize>,
}

/// A group of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub name: String,
    pub vms_total: usize,
    pub vms_done: usize,
    pub vms_failed: usize,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<Millis>,
    /// Finished steps that failed (final failures, not retried ones).
    pub failed_steps: usize,
    pub vms: Vec<VmView>,
    /// Its steps, in order (ids into [`Timeline::steps`]).
    pub steps: Vec<usize>,
}

/// The recovery time the run achieved.
#[derive(Debug, Clone, Serialize)]
pub struct Rto {
    /// Whether the operation starts VMs at all.
    pub applicable: bool,
    /// From the job's start until the last required VM was running.
    pub achieved_ms: Option<Millis>,
    /// The required VM that came up last.
    pub last_vm: Option<String>,
    pub required_vms: Vec<String>,
    /// Required VMs whose start operation has not succeeded.
    pub not_running: Vec<String>,
}

/// A failed attempt, with its output.
#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub step: String,
    pub attempt: u32,
    pub at: Millis,
    pub error: String,
    /// The error's kind (a fabric error, a script that failed or could not
    /// start); `None` for drplan's own failures and older records.
    pub error_kind: Option<ErrorKind>,
    /// Whether a new attempt could succeed with nothing else changed.
    pub retryable: bool,
    pub output_tail: Option<String>,
    /// A later attempt of the step succeeded (it was retried).
    pub recovered: bool,
    /// An operator skipped the step after it failed: the job went on, the
    /// failure stands (an error the operator accepted when the step is
    /// required).
    pub skipped: bool,
    /// The step is optional: its failure is a warning, not an error.
    pub optional: bool,
}

/// The figures the report's cards show, computed with the verdict so that
/// no rendering can contradict it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Required VMs the job starts.
    pub vms_required: usize,
    /// Of those, the ones running (their start operation succeeded).
    pub vms_recovered: usize,
    /// Steps whose failure stands (failed, timed out, or skipped by an
    /// operator after failing; required and optional).
    pub failed_steps: usize,
    /// Of those, required steps: each one is an error.
    pub failed_required: usize,
    /// Failed attempts a later attempt of the same step recovered.
    pub recovered_attempts: usize,
    /// Steps an operator skipped after they failed.
    pub skipped_steps: usize,
    pub errors: usize,
    pub warnings: usize,
}

/// The recovery point a failover used for one VM, and the data it lost.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPointView {
    pub vm: String,
    /// The step that used it.
    pub step: String,
    /// When the point was taken (Unix ms).
    pub point_at: Millis,
    /// `app-consistent`, `crash-consistent` or `final sync`.
    pub kind: PointKind,
    /// Achieved RPO: the job's start minus the point's time; 0 for the
    /// final delta of a planned failover.
    pub data_loss_ms: Millis,
}

/// One operator action of the job's record: who, when, what, a note.
#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    pub at: Millis,
    pub by: String,
    /// `retry`, `skip`, `cancel`, `complete-test`, `start-now`,
    /// `answer-done`, `answer-not-done`.
    pub action: &'static str,
    /// The step acted on.
    pub step: Option<String>,
    /// The operator's note (a manual answer's note, a test's closing notes).
    pub note: Option<String>,
}

/// A job's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub job: JobId,
    pub plan: String,
    pub plan_hash: String,
    pub operation: String,
    /// `test`, `planned`, `unplanned`; `None` for other operations.
    pub failover: Option<&'static str>,
    pub status: &'static str,
    pub verdict: Verdict,
    pub requested_by: String,
    pub parent: Option<JobId>,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<Millis>,
    /// How the test was closed (test failovers): notes, by, forced.
    pub test: Option<TestClosure>,
    pub rto: Rto,
    /// Step keys of the critical path, first to last.
    pub critical_path: Vec<String>,
    /// From the first critical step's start to the last one's end.
    pub critical_path_ms: Option<Millis>,
    pub groups: Vec<GroupView>,
    pub steps: Vec<StepView>,
    pub failures: Vec<FailureView>,
    /// Why the verdict is ERRORS (listed for any ended job; for a
    /// cancelled one, what went wrong before the cancel).
    pub errors: Vec<String>,
    /// Why the verdict is WARNINGS (also listed when it is worse).
    pub warnings: Vec<String>,
    /// An operator cancelled the job.
    pub cancelled: bool,
    /// The figures of the report's cards.
    pub counts: Counts,
    /// The recovery point each failed-over VM used, in plan order.
    pub recovery_points: Vec<RecoveryPointView>,
    /// The worst data-loss window of [`Timeline::recovery_points`].
    pub achieved_rpo_ms: Option<Millis>,
    /// Every operator action and manual answer, oldest first.
    pub operator_actions: Vec<ActionView>,
}

/// The warnings of a record written by drplan before warnings were typed
/// (its events carry none): a VM operation's output tail was its one-line
/// summary followed by `warning: ...` lines drplan appended. Only those
/// count; a script's output is the script's text and never does (its old
/// runner warnings are not told apart from what the script printed).
fn legacy_vm_warnings(tail: &str) -> impl Iterator<Item = &str> {
    tail.lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("warning: "))
}

/// The VM operation after which a VM counts as running.
fn is_up_op(op: &VmOp) -> bool {
    matches!(op, VmOp::StartReplica | VmOp::StartTestVm)
}

impl Timeline {
    /// The timeline of a job. `ctx` must be the job's context
    /// (`JobContext::new(plan, state.spec.operation)`), `events` its log.
    pub fn build(
        plan: &Plan,
        st: &JobState,
        ctx: &JobContext,
        events: &[JobEvent],
        now: Millis,
    ) -> Timeline {
        Timeline::build_for(&plan.groups, st, ctx, events, now)
    }

    /// [`Timeline::build`] with the plan's groups only (what it needs of
    /// the plan: their names and VMs, for the group views).
    fn build_for(
        plan_groups: &[crate::plan::model::Group],
        st: &JobState,
        ctx: &JobContext,
        events: &[JobEvent],
        now: Millis,
    ) -> Timeline {
        let status = st.status();
        // Nothing is measured past the job's end.
        let now = match (status.is_terminal(), st.finished_at) {
            (true, Some(end)) => end,
            _ => now,
        };
        // The main plan stopped (ended, or a test awaits or runs its
        // cleanup): its groups and VMs stop their clocks too.
        let main_running = matches!(
            st.mode,
            Mode::NotStarted | Mode::Running | Mode::Cancelling { .. }
        );
        let key_of = |s: usize| {
            ctx.node(s)
                .map(|n| n.key.clone())
                .unwrap_or_else(|| format!("#{s}"))
        };
        let mut attempts: BTreeMap<usize, Vec<AttemptView>> = BTreeMap::new();
        let mut operator_actions = Vec::new();
        let mut cancelled = false;
        for ev in events {
            match ev {
                JobEvent::StepFinished {
                    step,
                    attempt,
                    outcome,
                    output_tail,
                    warnings,
                    recovery_point,
                    at,
                    ..
                } => attempts.entry(*step).or_default().push(AttemptView {
                    attempt: *attempt,
                    outcome: outcome.clone(),
                    at: *at,
                    output_tail: output_tail.clone(),
                    warnings: warnings.clone(),
                    recovery_point: *recovery_point,
                }),
                JobEvent::ManualAnswered {
                    step,
                    done,
                    by,
                    note,
                    at,
                } => operator_actions.push(ActionView {
                    at: *at,
                    by: by.clone(),
                    action: if *done {
                        "answer-done"
                    } else {
                        "answer-not-done"
                    },
                    step: Some(key_of(*step)),
                    note: note.clone(),
                }),
                JobEvent::OperatorAction { action, by, at } => {
                    let (name, step, note) = match action {
                        OperatorAction::Retry { step } => ("retry", Some(key_of(*step)), None),
                        OperatorAction::Skip { step } => ("skip", Some(key_of(*step)), None),
                        OperatorAction::Cancel => {
                            cancelled = true;
                            ("cancel", None, None)
                        }
                        OperatorAction::CompleteTest { notes } => {
                            ("complete-test", None, Some(notes.clone()))
                        }
                        OperatorAction::StartNow => ("start-now", None, None),
                    };
                    operator_actions.push(ActionView {
                        at: *at,
                        by: by.clone(),
                        action: name,
                        step,
                        note,
                    });
                }
                _ => {}
            }
        }
        cancelled |= matches!(status, JobStatus::Cancelled | JobStatus::Cancelling);

        // Steps.
        let mut steps: Vec<StepView> = Vec::with_capacity(st.steps.len());
        for (s, rec) in st.steps.iter().enumerate() {
            let node = ctx.node(s);
            let log = attempts.remove(&s).unwrap_or_default();
            let (what, vm) = match node.map(|n| &n.kind) {
                Some(NodeKind::Vm { vm, op }) => (op.name().to_string(), Some(vm.clone())),
                Some(NodeKind::Step(step)) => (step.action.kind_name().to_string(), None),
                None => ("?".into(), None),
            };
            let running = is_active(&rec.state);
            let duration_ms = match (rec.started_at, rec.finished_at) {
                (Some(a), Some(b)) if !running => Some(b.saturating_sub(a)),
                (Some(a), _) if running => Some(now.saturating_sub(a)),
                _ => None,
            };
            let output_tail = log
                .iter()
                .rev()
                .find_map(|a| a.output_tail.clone())
                .or_else(|| st.outputs.get(&s).cloned());
            steps.push(StepView {
                id: s,
                key: key_of(s),
                group: node
                    .and_then(|n| n.group)
                    .and_then(|g| plan_groups.get(g))
                    .map(|g| g.name.clone()),
                phase: node.map(|n| n.phase).unwrap_or(Phase::Cleanup),
                what,
                vm,
                optional: node.is_some_and(|n| n.optional),
                state: rec.state.machine_name(),
                detail: rec.state.clone(),
                // A step never started (pending, skipped) counts the
                // attempts its log holds.
                attempts: match rec.state.attempt() {
                    0 => log.len() as u32,
                    n => n,
                },
                started_at: rec.started_at,
                finished_at: if running { None } else { rec.finished_at },
                duration_ms,
                outcomes: log.iter().map(|a| a.outcome.clone()).collect(),
                attempt_log: log,
                output_tail,
                answer: st.answers.get(&s).cloned(),
                critical: false,
                cleanup: ctx.is_cleanup(s),
            });
        }

        // Critical path over the main plan.
        let main = ctx.main_len().min(steps.len());
        let end_of = |s: &StepView| {
            s.finished_at
                .or_else(|| s.started_at.map(|a| a + s.duration_ms.unwrap_or(0)))
        };
        let mut path = Vec::new();
        let mut cur = (0..main)
            .filter_map(|s| end_of(&steps[s]).map(|e| (e, s)))
            .max();
        while let Some((_, s)) = cur {
            path.push(s);
            cur = ctx
                .deps(s)
                .iter()
                .filter(|&&d| d < steps.len())
                .filter_map(|&d| end_of(&steps[d]).map(|e| (e, d)))
                .max();
        }
        path.reverse();
        for &s in &path {
            steps[s].critical = true;
        }
        let critical_path_ms = match (path.first(), path.last()) {
            (Some(&a), Some(&b)) => {
                let start = steps[a].started_at.or(steps[a].finished_at);
                start
                    .zip(end_of(&steps[b]))
                    .map(|(x, y)| y.saturating_sub(x))
            }
            _ => None,
        };

        // Groups and their VMs.
        let mut groups: Vec<GroupView> = plan_groups
            .iter()
            .map(|g| GroupView {
                name: g.name.clone(),
                vms_total: 0,
                vms_done: 0,
                vms_failed: 0,
                started_at: None,
                finished_at: None,
                duration_ms: None,
                failed_steps: 0,
                vms: g
                    .vms
                    .iter()
                    .map(|v| VmView {
                        name: v.name.clone(),
                        optional: v.optional,
                        state: "pending",
                        started_at: None,
                        finished_at: None,
                        duration_ms: None,
                        up_at: None,
                        steps: Vec::new(),
                    })
                    .collect(),
                steps: Vec::new(),
            })
            .collect();
        let mut required: Vec<String> = Vec::new();
        let mut up: BTreeMap<String, Option<Millis>> = BTreeMap::new();
        let mut points: Vec<RecoveryPointView> = Vec::new();
        for (s, v) in steps.iter().enumerate().take(main) {
            let Some(node) = ctx.node(s) else { continue };
            // The recovery point the VM's latest successful attempt used.
            if let (Some(vm), Some(p)) = (
                &v.vm,
                v.attempt_log
                    .iter()
                    .rev()
                    .filter(|a| a.outcome == Outcome::Succeeded)
                    .find_map(|a| a.recovery_point),
            ) {
                points.retain(|x| &x.vm != vm);
                points.push(RecoveryPointView {
                    vm: vm.clone(),
                    step: v.key.clone(),
                    point_at: p.at,
                    kind: p.kind,
                    data_loss_ms: match p.kind {
                        PointKind::FinalSync => 0,
                        _ => st
                            .started_at
                            .unwrap_or(st.submitted_at)
                            .saturating_sub(p.at),
                    },
                });
            }
            // Required VMs and when each ran, from the compiled nodes alone.
            let up_at = matches!(v.detail, StepState::Succeeded { .. })
                .then_some(v.finished_at)
                .flatten();
            // A VM the job leaves alone (`continue` after a stopped
            // failover: it moved in an earlier job) is not this job's to
            // recover: neither required nor recovered here.
            if let NodeKind::Vm { vm, op } = &node.kind
                && is_up_op(op)
                && !node.optional
                && !st.spec.left_alone.contains(vm)
            {
                required.push(vm.clone());
                up.insert(vm.clone(), up_at);
            }
            let Some(g) = node.group.and_then(|g| groups.get_mut(g)) else {
                continue;
            };
            g.steps.push(s);
            g.started_at = min_opt(g.started_at, v.started_at);
            g.finished_at = max_opt(g.finished_at, v.finished_at);
            if v.detail.is_failure() {
                g.failed_steps += 1;
            }
            if let NodeKind::Vm { vm, op } = &node.kind
                && let Some(view) = g.vms.iter_mut().find(|x| &x.name == vm)
            {
                view.steps.push(s);
                view.started_at = min_opt(view.started_at, v.started_at);
                view.finished_at = max_opt(view.finished_at, v.finished_at);
                if is_up_op(op) {
                    view.up_at = up_at;
                }
            }
        }
        for g in &mut groups {
            for vm in &mut g.vms {
                let states: Vec<&StepState> = vm.steps.iter().map(|&s| &steps[s].detail).collect();
                let any_active = states.iter().any(|s| is_active(s));
                let stopped = !main_running && !any_active;
                vm.state = if !states.is_empty()
                    && states
                        .iter()
                        .all(|s| matches!(s, StepState::Succeeded { .. }))
                {
                    "done"
                } else if states.iter().any(|s| {
                    s.is_failure()
                        || matches!(
                            s,
                            StepState::Skipped {
                                reason: SkipReason::Operator { .. }
                                    | SkipReason::ChainFailed { .. }
                            }
                        )
                }) && (stopped || states.iter().all(|s| s.is_final()))
                {
                    "failed"
                } else if stopped && states.iter().any(|s| !matches!(s, StepState::Pending)) {
                    "stopped"
                } else if states.iter().any(|s| s.is_final() || any_active) {
                    "running"
                } else {
                    "pending"
                };
                vm.duration_ms = match vm.state {
                    "done" | "failed" | "stopped" => vm
                        .started_at
                        .zip(vm.finished_at)
                        .map(|(a, b)| b.saturating_sub(a)),
                    "running" => vm.started_at.map(|a| now.saturating_sub(a)),
                    _ => None,
                };
            }
            g.vms.retain(|v| !v.steps.is_empty());
            g.vms_total = g.vms.len();
            g.vms_done = g.vms.iter().filter(|v| v.state == "done").count();
            g.vms_failed = g.vms.iter().filter(|v| v.state == "failed").count();
            let active = g.steps.iter().any(|&s| is_active(&steps[s].detail));
            let all_final = g.steps.iter().all(|&s| steps[s].detail.is_final());
            let ended = !active && (all_final || !main_running);
            g.duration_ms = match (g.started_at, g.finished_at) {
                (Some(a), Some(b)) if ended => Some(b.saturating_sub(a)),
                (Some(a), _) => Some(now.saturating_sub(a)),
                _ => None,
            };
            if !ended {
                g.finished_at = None;
            }
        }

        // Achieved RTO.
        required.sort();
        required.dedup();
        let not_running: Vec<String> = required
            .iter()
            .filter(|v| up.get(*v).copied().flatten().is_none())
            .cloned()
            .collect();
        let last = up
            .iter()
            .filter_map(|(vm, at)| at.map(|a| (a, vm.clone())))
            .max();
        let achieved_ms = match (st.started_at, &last) {
            (Some(start), Some((at, _))) if not_running.is_empty() => {
                Some(at.saturating_sub(start))
            }
            _ => None,
        };
        let mut counts = Counts {
            vms_required: required.len(),
            vms_recovered: required.len() - not_running.len(),
            ..Counts::default()
        };

        // Failures, errors and warnings.
        let mut failures = Vec::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for v in &steps {
            let succeeded = matches!(v.detail, StepState::Succeeded { .. });
            let skipped = matches!(
                v.detail,
                StepState::Skipped {
                    reason: SkipReason::Operator { .. }
                }
            );
            for a in &v.attempt_log {
                let (error, error_kind, retryable) = match &a.outcome {
                    Outcome::Failed {
                        error,
                        error_kind,
                        retryable,
                    } => (error.clone(), *error_kind, *retryable),
                    Outcome::TimedOut => ("timed out".into(), None, true),
                    Outcome::Succeeded | Outcome::Cancelled => continue,
                };
                // Attempts before the last one were retried.
                let later = a.attempt < v.attempts;
                let recovered = later && (succeeded || !v.detail.is_final());
                counts.recovered_attempts += usize::from(recovered);
                failures.push(FailureView {
                    step: v.key.clone(),
                    attempt: a.attempt,
                    at: a.at,
                    error,
                    error_kind,
                    retryable,
                    output_tail: a.output_tail.clone(),
                    recovered,
                    skipped: skipped && !later,
                    optional: v.optional,
                });
            }
            // A manual step answered "not done" (or timed out) carries its
            // failure in its state only.
            if let StepState::Failed { error, attempt } = &v.detail
                && !v
                    .attempt_log
                    .iter()
                    .any(|a| matches!(&a.outcome, Outcome::Failed { error: e, .. } if e == error))
            {
                failures.push(FailureView {
                    step: v.key.clone(),
                    attempt: *attempt,
                    at: v.finished_at.unwrap_or(0),
                    error: error.clone(),
                    error_kind: None,
                    retryable: true,
                    output_tail: v.output_tail.clone(),
                    recovered: false,
                    skipped: false,
                    optional: v.optional,
                });
            }
            // A manual step nobody answered in time (`on_timeout: fail`).
            if let StepState::TimedOut { attempt } = &v.detail
                && !v
                    .attempt_log
                    .iter()
                    .any(|a| matches!(a.outcome, Outcome::TimedOut))
            {
                failures.push(FailureView {
                    step: v.key.clone(),
                    attempt: *attempt,
                    at: v.finished_at.unwrap_or(0),
                    error: "timed out (no answer in time)".into(),
                    error_kind: None,
                    retryable: true,
                    output_tail: None,
                    recovered: false,
                    skipped: false,
                    optional: v.optional,
                });
            }
            let failed_attempts = v
                .attempt_log
                .iter()
                .filter(|a| matches!(a.outcome, Outcome::Failed { .. } | Outcome::TimedOut))
                .count();
            let stands = v.detail.is_failure() || skipped;
            counts.failed_steps += usize::from(stands);
            counts.failed_required += usize::from(stands && !v.optional);
            counts.skipped_steps += usize::from(skipped);
            let last_error = || {
                v.failure_text()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            };
            match &v.detail {
                StepState::Succeeded { attempt } if failed_attempts > 0 => warnings.push(format!(
                    "{} succeeded on attempt {attempt} after {}",
                    v.key,
                    crate::text::count(failed_attempts, "failed attempt")
                )),
                StepState::Skipped {
                    reason: SkipReason::Operator { by },
                } if v.optional => warnings.push(format!(
                    "optional step {} failed and was skipped by {by}",
                    v.key
                )),
                StepState::Skipped {
                    reason: SkipReason::Operator { by },
                } => errors.push(format!(
                    "{} failed and was skipped by {by} (an error the operator accepted){}",
                    v.key,
                    last_error()
                )),
                StepState::Skipped {
                    reason: SkipReason::ManualTimedOut,
                } => warnings.push(format!(
                    "manual step {} was not answered in time; the plan continued",
                    v.key
                )),
                s if s.is_failure() && v.optional => {
                    warnings.push(format!("optional step {} failed{}", v.key, last_error()))
                }
                s if s.is_failure() => errors.push(format!("{} failed{}", v.key, last_error())),
                _ => {}
            }
            // Typed warnings, each said once per step; records of older
            // drplan carried a VM operation's warnings in its output.
            let mut said: Vec<&str> = Vec::new();
            for a in &v.attempt_log {
                let legacy = match (&a.output_tail, a.warnings.is_empty(), &v.vm) {
                    (Some(tail), true, Some(_)) => legacy_vm_warnings(tail).collect(),
                    _ => Vec::new(),
                };
                for w in a.warnings.iter().map(String::as_str).chain(legacy) {
                    if !said.contains(&w) {
                        said.push(w);
                        warnings.push(format!("{}: {w}", v.key));
                    }
                }
            }
        }
        let ended = status.is_terminal() || status == JobStatus::CleanupIncomplete;
        if ended && !cancelled && !not_running.is_empty() {
            errors.push(format!(
                "required {} not running: {}",
                crate::text::noun_for(not_running.len(), "VM"),
                not_running.join(", ")
            ));
        }
        if status == JobStatus::CleanupIncomplete {
            errors.push("the test's cleanup is incomplete: test VMs may remain".into());
        }
        if errors.is_empty() && matches!(status, JobStatus::Failed | JobStatus::CompletedWithErrors)
        {
            errors.push(format!("the job {status}"));
        }
        if let Some(t) = &st.test
            && t.forced
        {
            warnings.push(
                "the test was not completed by an operator: it was forcibly ended at its deadline"
                    .into(),
            );
        }
        failures.sort_by_key(|f| f.at);
        counts.errors = errors.len();
        counts.warnings = warnings.len();

        let verdict = if cancelled && status != JobStatus::CleanupIncomplete {
            Verdict::Cancelled
        } else if !ended {
            Verdict::InProgress
        } else if !errors.is_empty() {
            Verdict::Errors
        } else if !warnings.is_empty() {
            Verdict::Warnings
        } else {
            Verdict::Success
        };

        let rto = Rto {
            applicable: !required.is_empty() || has_up_ops(ctx),
            achieved_ms,
            last_vm: last.filter(|_| not_running.is_empty()).map(|(_, v)| v),
            required_vms: required,
            not_running,
        };
        let achieved_rpo_ms = points.iter().map(|p| p.data_loss_ms).max();

        let spec = &st.spec;
        Timeline {
            job: spec.id,
            plan: spec.plan_name.clone(),
            plan_hash: spec.plan_hash.clone(),
            operation: spec.operation.to_string(),
            failover: spec.operation.kind().map(|k| match k {
                crate::plan::FailoverKind::Test => "test",
                crate::plan::FailoverKind::Planned => "planned",
                crate::plan::FailoverKind::Unplanned => "unplanned",
            }),
            status: status.as_str(),
            verdict,
            requested_by: spec.requested_by.clone(),
            parent: spec.parent,
            submitted_at: st.submitted_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            duration_ms: match (st.started_at, st.finished_at) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                (Some(a), None) => Some(now.saturating_sub(a)),
                _ => None,
            },
            test: st.test.clone(),
            rto,
            critical_path: path.iter().map(|&s| steps[s].key.clone()).collect(),
            critical_path_ms,
            groups,
            steps,
            failures,
            errors,
            warnings,
            cancelled,
            counts,
            recovery_points: points,
            achieved_rpo_ms,
            operator_actions,
        }
    }

    /// The verdict of a job and the figures behind it, from its record
    /// alone (no plan needed): what a command that follows a job reports
    /// when the job ends, so that its last line and exit code agree with
    /// `show` and `report`.
    pub fn verdict(st: &JobState, ctx: &JobContext, events: &[JobEvent]) -> (Verdict, Counts) {
        // The clock is irrelevant to the verdict and the counts.
        let t = Timeline::build_for(&[], st, ctx, events, st.finished_at.unwrap_or(0));
        (t.verdict, t.counts)
    }

    /// The step with this key.
    pub fn step(&self, key: &str) -> Option<&StepView> {
        self.steps.iter().find(|s| s.key == key)
    }
}

impl StepView {
    /// The error of the step's standing failure: its state's, else its
    /// last failed attempt's (a skipped step keeps it only in its log).
    pub fn failure_text(&self) -> Option<String> {
        match &self.detail {
            StepState::Failed { error, .. } => Some(error.clone()),
            StepState::TimedOut { .. } => Some("timed out".into()),
            _ => self
                .attempt_log
                .iter()
                .rev()
                .find_map(|a| match &a.outcome {
                    Outcome::Failed { error, .. } => Some(error.clone()),
                    Outcome::TimedOut => Some("timed out".into()),
                    _ => None,
                }),
        }
    }
}

/// Running, waiting to retry or waiting for an operator.
fn is_active(s: &StepState) -> bool {
    matches!(
        s,
        StepState::Running { .. }
            | StepState::RetryWaiting { .. }
            | StepState::AwaitingOperator { .. }
    )
}

fn has_up_ops(ctx: &JobContext) -> bool {
    ctx.main
        .nodes
        .iter()
        .any(|n| matches!(&n.kind, NodeKind::Vm { op, .. } if is_up_op(op)))
}

fn min_opt(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests;
