//! Measured durations from the event logs of past jobs.
//!
//! A job's log says when each attempt *finished* (`StepFinished { at }`),
//! not when it started: an attempt starts when the event that made it
//! runnable was recorded. Replaying the log through the pure core gives
//! exactly that: every `RunVmOp` / `RunScript` / `AwaitOperator` effect is
//! stamped with the `at` of the event that produced it. No clock, no guess.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{self, Effect, JobContext, JobEvent, JobStatus, Millis, Outcome, Rejected};
use crate::journal::{JobMeta, PlanRecord};
use crate::plan::compile::{NodeKind, StepId};
use crate::plan::model::StepAction;
use crate::store::{JobId, Store, StoreError, codec};

/// How one timed piece of a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanEnd {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// A manual step answered (done or not: the operator's delay either way).
    Answered {
        done: bool,
    },
}

/// One attempt of a VM operation or script, or one prompt of a manual step
/// until its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub step: StepId,
    /// 0 for manual prompts.
    pub attempt: u32,
    pub started: Millis,
    pub finished: Millis,
    pub end: SpanEnd,
}

impl Span {
    pub fn duration_ms(&self) -> u64 {
        self.finished.saturating_sub(self.started)
    }
}

/// Every finished span of a job's log (attempts still running when the log
/// ends are left out).
pub fn spans(ctx: &JobContext, events: &[JobEvent]) -> Result<Vec<Span>, Rejected> {
    let Some((first, rest)) = events.split_first() else {
        return Ok(Vec::new());
    };
    let is_manual = |step: StepId| {
        ctx.node(step).is_some_and(|n| match &n.kind {
            NodeKind::Step(s) => matches!(s.action, StepAction::Manual { .. }),
            NodeKind::Vm { .. } => false,
        })
    };
    let (mut st, fx) = core::submit(ctx, first)?;
    let mut open: BTreeMap<(StepId, u32), Millis> = BTreeMap::new();
    let mut out = Vec::new();
    let note_starts = |fx: &[Effect], at: Millis, open: &mut BTreeMap<(StepId, u32), Millis>| {
        for f in fx {
            match f {
                Effect::RunVmOp { step, attempt, .. } | Effect::RunScript { step, attempt, .. } => {
                    open.entry((*step, *attempt)).or_insert(at);
                }
                Effect::AwaitOperator { step } if is_manual(*step) => {
                    open.entry((*step, 0)).or_insert(at);
                }
                _ => {}
            }
        }
    };
    note_starts(&fx, first.at(), &mut open);
    for ev in rest {
        let fx = core::apply(ctx, &mut st, ev)?;
        let closed = match ev {
            JobEvent::StepFinished {
                step,
                attempt,
                outcome,
                at,
                ..
            } => {
                let end = match outcome {
                    Outcome::Succeeded => SpanEnd::Succeeded,
                    Outcome::Failed { .. } => SpanEnd::Failed,
                    Outcome::TimedOut => SpanEnd::TimedOut,
                    Outcome::Cancelled => SpanEnd::Cancelled,
                };
                Some(((*step, *attempt), end, *at))
            }
            JobEvent::ManualAnswered { step, done, at, .. } => {
                Some(((*step, 0), SpanEnd::Answered { done: *done }, *at))
            }
            JobEvent::TimerFired {
                timer: core::TimerId::ManualTimeout { step },
                at,
            } => Some(((*step, 0), SpanEnd::TimedOut, *at)),
            _ => None,
        };
        if let Some(((step, attempt), end, at)) = closed
            && let Some(started) = open.remove(&(step, attempt))
        {
            out.push(Span {
                step,
                attempt,
                started,
                finished: at,
                end,
            });
        }
        note_starts(&fx, ev.at(), &mut open);
    }
    Ok(out)
}

/// Samples (milliseconds) of one figure.
pub type Samples = Vec<u64>;

/// Durations measured in past jobs of one plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measurements {
    /// (operation name, VM) → successful attempts.
    pub vm_ops: BTreeMap<(String, String), Samples>,
    /// Operation name → successful attempts on any VM.
    pub ops: BTreeMap<String, Samples>,
    /// Script step key (`web/post/update-dns`) → successful attempts.
    pub scripts: BTreeMap<String, Samples>,
    /// Manual step key → prompt-to-answer delays.
    pub manual: BTreeMap<String, Samples>,
    /// The jobs the samples come from.
    pub jobs: Vec<JobId>,
}

impl Measurements {
    /// Add one job's log. Only successful attempts count for VM operations
    /// and scripts: a failed or timed-out attempt measures the failure (a
    /// timeout, an error after a second), not the work.
    pub fn add_job(
        &mut self,
        job: JobId,
        ctx: &JobContext,
        events: &[JobEvent],
    ) -> Result<(), Rejected> {
        for span in spans(ctx, events)? {
            let Some(node) = ctx.node(span.step) else {
                continue;
            };
            let ms = span.duration_ms();
            match (&node.kind, &span.end) {
                (NodeKind::Vm { vm, op }, SpanEnd::Succeeded) => {
                    let name = op.name().to_string();
                    self.vm_ops
                        .entry((name.clone(), vm.clone()))
                        .or_default()
                        .push(ms);
                    self.ops.entry(name).or_default().push(ms);
                }
                (NodeKind::Step(s), end) => match (&s.action, end) {
                    (StepAction::Script { .. }, SpanEnd::Succeeded) => {
                        self.scripts.entry(node.key.clone()).or_default().push(ms);
                    }
                    (StepAction::Manual { .. }, SpanEnd::Answered { .. }) => {
                        self.manual.entry(node.key.clone()).or_default().push(ms);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        self.jobs.push(job);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.scripts.is_empty() && self.manual.is_empty()
    }
}

/// The median of samples (the lower middle for an even count: a real
/// observed figure, never an average of two).
pub fn median(samples: &[u64]) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {job}: damaged record in the store: {detail}")]
    Damaged { job: JobId, detail: String },
}

/// Whether a job's history is complete enough to measure: it ended, or it
/// is a test failover whose failover part ended (awaiting its cleanup).
pub fn measurable(status: JobStatus) -> bool {
    status.is_terminal()
        || matches!(
            status,
            JobStatus::AwaitingCleanup | JobStatus::CleanupIncomplete
        )
}

/// Measurements from every finished job of plan `plan_name` in `store`,
/// read directly from the store's records (no journal is opened, so nothing
/// is written).
pub fn measurements_from_store(
    store: &dyn Store,
    plan_name: &str,
) -> Result<Measurements, HistoryError> {
    measurements_from_store_where(store, plan_name, &mut |_| true)
}

/// [`measurements_from_store`] of the finished jobs `keep` accepts (say
/// those run at one time scale); `keep` sees every finished job of the plan
/// once, in no particular order.
pub fn measurements_from_store_where(
    store: &dyn Store,
    plan_name: &str,
    keep: &mut dyn FnMut(&JobMeta) -> bool,
) -> Result<Measurements, HistoryError> {
    let mut m = Measurements::default();
    let mut metas: Vec<JobMeta> = Vec::new();
    for (id, bytes) in store.jobs()? {
        let meta: JobMeta = codec::decode(&bytes).map_err(|e| HistoryError::Damaged {
            job: id,
            detail: format!("job metadata: {e}"),
        })?;
        if meta.plan_name == plan_name && measurable(meta.status) && keep(&meta) {
            metas.push(meta);
        }
    }
    metas.sort_by_key(|m| m.id);
    for meta in metas {
        let job = meta.id;
        let damaged = |detail: String| HistoryError::Damaged { job, detail };
        let text = store
            .text(&meta.model_key)?
            .ok_or_else(|| damaged("its plan model is missing".into()))?;
        let plan = codec::decode::<PlanRecord>(text.as_bytes())
            .map_err(|e| damaged(format!("plan model: {e}")))?
            .plan;
        let ctx = JobContext::new(&plan, meta.operation);
        let mut events = Vec::new();
        for (seq, bytes) in store.events(job, 0)? {
            events.push(
                codec::decode::<JobEvent>(&bytes)
                    .map_err(|e| damaged(format!("event {seq}: {e}")))?,
            );
        }
        m.add_job(job, &ctx, &events)
            .map_err(|e| damaged(format!("its log does not replay: {e}")))?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{JobSpec, Outcome};
    use crate::plan::compile::Operation;
    use crate::plan::model::FailoverKind;

    fn three_tier_test() -> JobContext {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/three-tier.yaml");
        let loaded = crate::plan::load(&path, None);
        let plan = loaded.plan.expect("the shipped plan loads");
        JobContext::new(&plan, Operation::failover(FailoverKind::Test))
    }

    fn id(ctx: &JobContext, key: &str) -> StepId {
        ctx.main.node(key).unwrap_or_else(|| panic!("{key}")).id
    }

    fn finished(step: StepId, attempt: u32, outcome: Outcome, at: Millis) -> JobEvent {
        JobEvent::StepFinished {
            step,
            attempt,
            outcome,
            output_tail: None,
            values: Default::default(),
            at,
            warnings: Vec::new(),
            recovery_point: None,
        }
    }

    #[test]
    fn an_attempt_starts_when_the_event_that_made_it_runnable_was_recorded() {
        let ctx = three_tier_test();
        let spec = JobSpec {
            id: JobId(7),
            plan_name: "orders".into(),
            plan_hash: "h".into(),
            operation: ctx.main.operation,
            requested_by: "t".into(),
            vms: ctx.main.vms().iter().map(|s| s.to_string()).collect(),
            start_at: None,
            parent: None,
            left_alone: Vec::new(),
        };
        let create1 = id(&ctx, "database/vm/sql-01/create-test-vm");
        let start1 = id(&ctx, "database/vm/sql-01/start-test-vm");
        let create2 = id(&ctx, "database/vm/sql-02/create-test-vm");
        let events = vec![
            JobEvent::Submitted { spec, at: 1_000 },
            JobEvent::Started { at: 2_000 },
            finished(create1, 1, Outcome::Succeeded, 47_000),
            // Failed: measured as a span, but not as the operation's duration.
            finished(
                create2,
                1,
                Outcome::Failed {
                    error: "boom".into(),
                    error_kind: None,
                    retryable: true,
                },
                3_000,
            ),
            finished(start1, 1, Outcome::Succeeded, 50_000),
        ];
        let s = spans(&ctx, &events).expect("the log replays");
        let span = |step| s.iter().find(|x| x.step == step).expect("a span");
        assert_eq!(
            (span(create1).started, span(create1).finished),
            (2_000, 47_000)
        );
        assert_eq!(span(create2).end, SpanEnd::Failed);
        // start-test-vm became runnable when create-test-vm finished.
        assert_eq!(
            (span(start1).started, span(start1).finished),
            (47_000, 50_000)
        );

        let mut m = Measurements::default();
        m.add_job(JobId(7), &ctx, &events).unwrap();
        assert_eq!(
            m.vm_ops[&("create-test-vm".to_string(), "sql-01".to_string())],
            [45_000]
        );
        assert_eq!(m.ops["create-test-vm"], [45_000]);
        assert_eq!(m.ops["start-test-vm"], [3_000]);
        assert_eq!(m.jobs, [JobId(7)]);
    }

    #[test]
    fn the_median_is_an_observed_figure() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[40, 10, 30, 20]), Some(20));
    }
}
