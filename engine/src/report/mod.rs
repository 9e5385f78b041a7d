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
//! - **required VM**: a VM the plan does not mark `optional`.
//! - **achieved RTO**: from the job's start until the last required VM was
//!   *running*: its `start-replica` (planned, unplanned, failback) or
//!   `start-test-vm` (test) operation succeeded. Scripts and manual steps
//!   after that are not part of it. When a required VM never came up, the
//!   RTO was not achieved (`achieved_ms: None`, the VMs listed in
//!   `not_running`). Operations that start no VM (commit, reprotect, ...)
//!   have no RTO (`applicable: false`).
//! - **verdict**: `CANCELLED` (cancelled), `ERRORS` (failed, completed with
//!   errors, cleanup incomplete), `WARNINGS` (ended well, but a step failed
//!   on the way and was retried or skipped, an optional step failed, a
//!   step's output carries a `warning:` line, a manual step timed out and
//!   the plan continued, or the test was forcibly ended at its deadline),
//!   `SUCCESS` otherwise; `IN PROGRESS` while the job has not ended.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{
    Answer, JobContext, JobEvent, JobState, JobStatus, Outcome, SkipReason, StepState, TestClosure,
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
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Finished: end - start; running: now - start.
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
    /// `pending`, `running` (its chain is under way), `done`, `failed`.
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
    pub output_tail: Option<String>,
    /// The step succeeded later (retried) or was skipped: the job went on.
    pub recovered: bool,
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
    /// Why the verdict is WARNINGS (also listed when it is worse).
    pub warnings: Vec<String>,
}

/// The warning lines of an output tail (`warning: ...`, any case).
pub fn warning_lines(tail: &str) -> impl Iterator<Item = &str> {
    tail.lines()
        .map(str::trim)
        .filter(|l| l.to_ascii_lowercase().starts_with("warning:"))
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
        let status = st.status();
        let mut attempts: BTreeMap<usize, Vec<AttemptView>> = BTreeMap::new();
        for ev in events {
            if let JobEvent::StepFinished {
                step,
                attempt,
                outcome,
                output_tail,
                at,
                ..
            } = ev
            {
                attempts.entry(*step).or_default().push(AttemptView {
                    attempt: *attempt,
                    outcome: outcome.clone(),
                    at: *at,
                    output_tail: output_tail.clone(),
                });
            }
        }

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
            let running = matches!(
                rec.state,
                StepState::Running { .. }
                    | StepState::RetryWaiting { .. }
                    | StepState::AwaitingOperator { .. }
            );
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
                key: node
                    .map(|n| n.key.clone())
                    .unwrap_or_else(|| format!("#{s}")),
                group: node
                    .and_then(|n| n.group)
                    .and_then(|g| plan.groups.get(g))
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
        let mut groups: Vec<GroupView> = plan
            .groups
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
        for (s, v) in steps.iter().enumerate().take(main) {
            let Some(node) = ctx.node(s) else { continue };
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
                    let at = matches!(v.detail, StepState::Succeeded { .. })
                        .then_some(v.finished_at)
                        .flatten();
                    view.up_at = at;
                    if !node.optional {
                        required.push(vm.clone());
                        up.insert(vm.clone(), at);
                    }
                }
            }
        }
        for g in &mut groups {
            for vm in &mut g.vms {
                let states: Vec<&StepState> = vm.steps.iter().map(|&s| &steps[s].detail).collect();
                vm.state = if states.iter().any(|s| {
                    s.is_failure()
                        || matches!(s, StepState::Skipped { .. } | StepState::Cancelled { .. })
                }) && states.iter().all(|s| s.is_final())
                {
                    "failed"
                } else if !states.is_empty()
                    && states
                        .iter()
                        .all(|s| matches!(s, StepState::Succeeded { .. }))
                {
                    "done"
                } else if states.iter().any(|s| !matches!(s, StepState::Pending)) {
                    "running"
                } else {
                    "pending"
                };
                vm.duration_ms = match vm.state {
                    "done" | "failed" => vm
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
            let all_final = g.steps.iter().all(|&s| steps[s].detail.is_final());
            g.duration_ms = match (g.started_at, g.finished_at) {
                (Some(a), Some(b)) if all_final => Some(b.saturating_sub(a)),
                (Some(a), _) => Some(now.saturating_sub(a)),
                _ => None,
            };
            if !all_final {
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
        let rto = Rto {
            applicable: !required.is_empty() || has_up_ops(ctx),
            achieved_ms,
            last_vm: last.filter(|_| not_running.is_empty()).map(|(_, v)| v),
            required_vms: required,
            not_running,
        };

        // Failures and warnings.
        let mut failures = Vec::new();
        let mut warnings = Vec::new();
        for v in &steps {
            let recovered = matches!(
                v.detail,
                StepState::Succeeded { .. } | StepState::Skipped { .. }
            );
            for a in &v.attempt_log {
                let error = match &a.outcome {
                    Outcome::Failed { error } => error.clone(),
                    Outcome::TimedOut => "timed out".into(),
                    Outcome::Succeeded | Outcome::Cancelled => continue,
                };
                // Attempts before the last one were retried.
                let later = a.attempt < v.attempts;
                failures.push(FailureView {
                    step: v.key.clone(),
                    attempt: a.attempt,
                    at: a.at,
                    error,
                    output_tail: a.output_tail.clone(),
                    recovered: recovered || later,
                });
            }
            // A manual step answered "not done" (or timed out) carries its
            // failure in its state only.
            if let StepState::Failed { error, attempt } = &v.detail
                && !v
                    .attempt_log
                    .iter()
                    .any(|a| matches!(&a.outcome, Outcome::Failed { error: e } if e == error))
            {
                failures.push(FailureView {
                    step: v.key.clone(),
                    attempt: *attempt,
                    at: v.finished_at.unwrap_or(0),
                    error: error.clone(),
                    output_tail: v.output_tail.clone(),
                    recovered: false,
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
                    output_tail: None,
                    recovered: false,
                });
            }
            let failed_attempts = v
                .attempt_log
                .iter()
                .filter(|a| matches!(a.outcome, Outcome::Failed { .. } | Outcome::TimedOut))
                .count();
            match &v.detail {
                StepState::Succeeded { attempt } if failed_attempts > 0 => warnings.push(format!(
                    "{} succeeded on attempt {attempt} after {}",
                    v.key,
                    crate::text::count(failed_attempts, "failed attempt")
                )),
                StepState::Skipped {
                    reason: SkipReason::Operator { by },
                } => warnings.push(format!("{} failed and was skipped by {by}", v.key)),
                StepState::Skipped {
                    reason: SkipReason::ManualTimedOut,
                } => warnings.push(format!(
                    "manual step {} was not answered in time; the plan continued",
                    v.key
                )),
                s if s.is_failure() && v.optional => {
                    warnings.push(format!("optional step {} failed", v.key))
                }
                _ => {}
            }
            if let Some(tail) = &v.output_tail {
                for w in warning_lines(tail) {
                    warnings.push(format!("{}: {w}", v.key));
                }
            }
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

        let verdict = match status {
            JobStatus::Cancelled | JobStatus::Cancelling => Verdict::Cancelled,
            JobStatus::Failed | JobStatus::CompletedWithErrors | JobStatus::CleanupIncomplete => {
                Verdict::Errors
            }
            JobStatus::Succeeded | JobStatus::TestCompleted | JobStatus::TestForciblyEnded => {
                if warnings.is_empty() && failures.is_empty() {
                    Verdict::Success
                } else {
                    Verdict::Warnings
                }
            }
            JobStatus::NotStarted
            | JobStatus::InProgress
            | JobStatus::WaitingForOperator
            | JobStatus::AwaitingCleanup
            | JobStatus::CleaningUp => Verdict::InProgress,
        };

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
            warnings,
        }
    }

    /// The step with this key.
    pub fn step(&self, key: &str) -> Option<&StepView> {
        self.steps.iter().find(|s| s.key == key)
    }
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
