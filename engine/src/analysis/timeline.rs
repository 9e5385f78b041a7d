//! A job's steps as a timeline (offsets from the job's start), its outcome
//! in an operator's words, and the recovery time it achieved.

use std::collections::BTreeMap;

use serde::Serialize;

use super::estimate::{Figure, required_vm_tails};
use crate::core::{AwaitReason, JobContext, JobEvent, JobState, JobStatus, SkipReason, StepState};
use crate::plan::compile::{NodeKind, StepId};
use crate::plan::model::FailoverKind;

/// One step of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub step: StepId,
    pub key: String,
    /// `vm-op`, `script`, `manual` or `wait`.
    pub kind: &'static str,
    pub optional: bool,
    pub state: &'static str,
    pub attempts: u32,
    /// Offsets from the job's start (ms).
    pub start_ms: Option<u64>,
    pub finish_ms: Option<u64>,
    pub error: Option<String>,
    /// Why a step was skipped.
    pub skipped: Option<String>,
    /// A simulated script's or a manual answer's assumed duration.
    pub figure: Option<Figure>,
    /// The warnings the step's attempts reported (the fabric's "attached to
    /// no network", "primary unreachable", a script runner's warnings): data
    /// on their events, never read out of the output.
    pub warnings: Vec<String>,
}

/// The outcome of a job in an operator's terms.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: JobStatus,
    /// Failed steps the job halted on (planned failover policy).
    pub halted_at: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
    /// Steps that never started.
    pub never_ran: Vec<String>,
    /// From the start until every required VM ran (its last operation
    /// succeeded); `None` when one did not.
    pub rto_ms: Option<u64>,
    /// Required VMs that are not running at the end.
    pub vms_not_recovered: Vec<String>,
    /// From the start until the last step ended.
    pub elapsed_ms: u64,
}

fn kind(ctx: &JobContext, step: StepId) -> &'static str {
    match ctx.node(step).map(|n| &n.kind) {
        Some(NodeKind::Vm { .. }) | None => "vm-op",
        Some(NodeKind::Step(s)) => s.action.kind_name(),
    }
}

fn error_of(s: &StepState) -> Option<String> {
    match s {
        StepState::Failed { error, .. } => Some(error.clone()),
        StepState::TimedOut { .. } => Some("timed out".into()),
        StepState::AwaitingOperator {
            reason: AwaitReason::Failed { failure },
            ..
        }
        | StepState::RetryWaiting { failure, .. } => Some(failure.to_string()),
        _ => None,
    }
}

fn skip_reason(ctx: &JobContext, s: &StepState) -> Option<String> {
    let StepState::Skipped { reason } = s else {
        return None;
    };
    Some(match reason {
        SkipReason::ChainFailed { step } => format!(
            "`{}` failed before it",
            ctx.node(*step).map_or("?", |n| n.key.as_str())
        ),
        SkipReason::Operator { by } => format!("skipped by {by}"),
        SkipReason::ManualTimedOut => "not answered in time (on_timeout: continue)".into(),
        SkipReason::NothingToClean => "nothing to clean up".into(),
        SkipReason::LeftAlone => "left alone: the VM was already where this job takes it".into(),
    })
}

/// The main plan's steps (test cleanup steps are left out: a simulation
/// stops before the cleanup), in id order; `events` is the job's log.
pub fn rows(
    ctx: &JobContext,
    st: &JobState,
    events: &[JobEvent],
    figures: &BTreeMap<StepId, Figure>,
) -> Vec<Row> {
    let t0 = st.started_at.unwrap_or(st.submitted_at);
    let mut warned: BTreeMap<StepId, Vec<String>> = BTreeMap::new();
    for ev in events {
        if let JobEvent::StepFinished { step, warnings, .. } = ev {
            let seen = warned.entry(*step).or_default();
            for w in warnings {
                if !seen.contains(w) {
                    seen.push(w.clone());
                }
            }
        }
    }
    (0..ctx.main_len())
        .map(|s| {
            let rec = &st.steps[s];
            let node = ctx.node(s);
            Row {
                step: s,
                key: node.map_or_else(|| format!("#{s}"), |n| n.key.clone()),
                kind: kind(ctx, s),
                optional: node.is_some_and(|n| n.optional),
                state: rec.state.machine_name(),
                attempts: rec.state.attempt(),
                start_ms: rec.started_at.map(|t| t.saturating_sub(t0)),
                finish_ms: rec.finished_at.map(|t| t.saturating_sub(t0)),
                error: error_of(&rec.state),
                skipped: skip_reason(ctx, &rec.state),
                figure: figures.get(&s).cloned(),
                warnings: warned.remove(&s).unwrap_or_default(),
            }
        })
        .collect()
}

/// The outcome of a job from its state.
pub fn outcome(ctx: &JobContext, st: &JobState, status: JobStatus) -> Outcome {
    let t0 = st.started_at.unwrap_or(st.submitted_at);
    let key = |s: StepId| {
        ctx.node(s)
            .map_or_else(|| format!("#{s}"), |n| n.key.clone())
    };
    let mut o = Outcome {
        status,
        halted_at: Vec::new(),
        failed: Vec::new(),
        skipped: Vec::new(),
        never_ran: Vec::new(),
        rto_ms: None,
        vms_not_recovered: Vec::new(),
        elapsed_ms: 0,
    };
    for s in 0..ctx.main_len() {
        let rec = &st.steps[s];
        match &rec.state {
            StepState::AwaitingOperator {
                reason: AwaitReason::Failed { .. },
                ..
            } => o.halted_at.push(key(s)),
            StepState::Failed { .. } | StepState::TimedOut { .. } => o.failed.push(key(s)),
            StepState::Skipped { .. } => o.skipped.push(key(s)),
            StepState::Pending => o.never_ran.push(key(s)),
            _ => {}
        }
        if let Some(f) = rec.finished_at {
            o.elapsed_ms = o.elapsed_ms.max(f.saturating_sub(t0));
        }
    }
    let mut rto = 0;
    for tail in required_vm_tails(&ctx.main) {
        let rec = &st.steps[tail];
        match (&rec.state, rec.finished_at) {
            (StepState::Succeeded { .. }, Some(f)) => rto = rto.max(f.saturating_sub(t0)),
            _ => o.vms_not_recovered.push(
                ctx.node(tail)
                    .and_then(|n| n.vm())
                    .unwrap_or("?")
                    .to_string(),
            ),
        }
    }
    if o.vms_not_recovered.is_empty() {
        o.rto_ms = Some(rto);
    }
    o
}

/// What the error policy of a failover kind does with a failure, in one
/// sentence (for the outcome).
pub fn policy(kind: Option<FailoverKind>) -> &'static str {
    match kind {
        Some(FailoverKind::Planned) => {
            "planned failover: a failed required step halts the plan for an operator (retry, skip or cancel)"
        }
        Some(FailoverKind::Unplanned) => {
            "unplanned failover: the plan runs to completion; every failure is recorded"
        }
        Some(FailoverKind::Test) => {
            "test failover: failures are recorded; the test stays open until it is cleaned up"
        }
        None => "",
    }
}
