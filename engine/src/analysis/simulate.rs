//! What-if simulation: the real engine, on an in-memory store and the
//! simulated fabric, in virtual time.
//!
//! The plan runs exactly as `drplan run` would run it — the same core, the
//! same journal, the same runtime, the same `SimFabric` with the same
//! faults — so its error policy, chain failures and skips are the real
//! ones. What differs, by design:
//! - time is tokio's paused clock (a [`TestClock`]): hours of simulated
//!   recovery take milliseconds, and nothing depends on the host's speed;
//! - the fabric's latencies are its configured ones without jitter, so the
//!   simulated durations are the estimate's assumed figures;
//! - scripts are not executed unless asked ([`SimRequest::run_scripts`]):
//!   each script step becomes a wait of its estimated duration (a script
//!   may touch production — DNS, load balancers — and a what-if must not);
//! - manual steps are answered "done" by the simulation after the estimated
//!   operator delay (unless that delay reaches the step's timeout: then the
//!   timeout fires, as it would for a slow operator);
//! - `fail-step:STEP` faults make a script fail every attempt (a shell that
//!   exits 1; its retries run) or a manual step be answered "not done".
//!
//! Failed steps that halt a planned failover are not decided: the
//! simulation stops where `drplan run` would stop and reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::estimate::{Basis, DurationModel, Figure};
use crate::core::{
    AwaitReason, JobContext, JobEvent, JobState, JobStatus, Millis, StepState, TimerId,
};
use crate::fabric::{FaultSet, SimConfig, SimFabric};
use crate::plan::compile::{NodeKind, Operation, StepId};
use crate::plan::model::{Command, Inventory, Plan, Step, StepAction};
use crate::runtime::{Engine, EngineConfig, EngineError, Submission, TestClock};
use crate::script::ScriptRunner;
use crate::store::JobId;
use crate::store::mem::MemStore;

/// The prefix of the simulation-only fault that fails a plan step.
pub const FAIL_STEP: &str = "fail-step:";

/// Who answers manual steps in a simulation (shown in the timeline).
pub const SIMULATED_OPERATOR: &str = "simulation";

/// What to simulate.
pub struct SimRequest {
    pub plan: Plan,
    pub plan_text: String,
    pub inventory: Inventory,
    pub operation: Operation,
    /// Fabric faults (`fail:start-replica:web-01`, `site-down:...`).
    pub faults: FaultSet,
    /// Node keys of steps that fail (see [`resolve_step_faults`]).
    pub fail_steps: BTreeSet<String>,
    /// Execute scripts for real instead of simulating them.
    pub run_scripts: bool,
    /// Runs scripts (with `run_scripts`, and the failing shells of
    /// `fail-step` faults).
    pub scripts: ScriptRunner,
    pub model: DurationModel,
    /// VM operations in flight at once (`drplan run` uses 8).
    pub max_concurrent_vm_ops: usize,
    /// The virtual start (Unix ms): recovery points derive from it.
    pub start_at: Millis,
}

/// How the simulation ended.
pub struct Simulation {
    pub job: JobId,
    pub status: JobStatus,
    pub state: JobState,
    pub events: Vec<JobEvent>,
    /// The job's steps, compiled from the plan as written (the simulation
    /// replaced its scripts by waits; the ids are the same).
    pub ctx: JobContext,
    /// The duration each simulated script and each manual answer was given.
    pub figures: BTreeMap<StepId, Figure>,
    pub run_scripts: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot start the simulation's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("the simulated engine failed: {0}")]
    Engine(#[from] EngineError),
    #[error("the simulated job did not settle within {days} virtual days (last status: {status})")]
    Stuck { days: u64, status: JobStatus },
}

/// Split `--inject` values into fabric faults and `fail-step:` faults.
pub fn split_injections<S: AsRef<str>>(all: &[S]) -> (Vec<String>, Vec<String>) {
    let (steps, fabric): (Vec<String>, Vec<String>) = all
        .iter()
        .map(|s| s.as_ref().to_string())
        .partition(|s| s.starts_with(FAIL_STEP));
    (fabric, steps)
}

/// Resolve `fail-step:STEP` faults against the compiled plan: STEP is a
/// step key (`web/post/smoke-test`) or a step name that names exactly one
/// script or manual step. Every wrong fault is reported, with a hint.
pub fn resolve_step_faults(
    ctx: &JobContext,
    faults: &[String],
) -> Result<BTreeSet<String>, Vec<String>> {
    let steps: Vec<(&str, &str, &StepAction)> = ctx
        .main
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Step(s) => Some((n.key.as_str(), s.name.as_str(), &s.action)),
            NodeKind::Vm { .. } => None,
        })
        .collect();
    let mut ok = BTreeSet::new();
    let mut errors = Vec::new();
    for f in faults {
        let want = f.strip_prefix(FAIL_STEP).unwrap_or(f);
        let found: Vec<_> = steps
            .iter()
            .filter(|(key, name, _)| *key == want || *name == want)
            .collect();
        match found.as_slice() {
            [(key, _, action)] => {
                if matches!(action, StepAction::Wait { .. }) {
                    errors.push(format!(
                        "--inject `{f}`: `{key}` is a wait step; only scripts and manual steps can fail"
                    ));
                } else {
                    ok.insert(key.to_string());
                }
            }
            [] => {
                let best = steps
                    .iter()
                    .map(|(key, _, _)| (strsim::jaro_winkler(want, key), *key))
                    .chain(
                        steps
                            .iter()
                            .map(|(key, name, _)| (strsim::jaro_winkler(want, name), *key)),
                    )
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let hint = best
                    .map(|(_, k)| format!("; did you mean `{FAIL_STEP}{k}`?"))
                    .unwrap_or_else(|| {
                        let keys: Vec<&str> = steps.iter().map(|(k, _, _)| *k).collect();
                        if keys.is_empty() {
                            "; the plan has no script or manual step for this failover".into()
                        } else {
                            format!("; its steps: {}", keys.join(", "))
                        }
                    });
                errors.push(format!(
                    "--inject `{f}`: no script or manual step `{want}` in this failover{hint}"
                ));
            }
            many => errors.push(format!(
                "--inject `{f}`: `{want}` names {} steps ({}); give the step key",
                many.len(),
                many.iter()
                    .map(|(k, _, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}

/// The plan as the simulation runs it: scripts that are not executed
/// become waits of their estimated duration; failing scripts become a
/// shell that exits 1 (keeping their timeout and retries); waits are scaled
/// like the fabric. Returns the figures given to simulated steps.
fn for_simulation(
    mut plan: Plan,
    ctx: &JobContext,
    req: &SimRequest,
) -> (Plan, BTreeMap<StepId, Figure>) {
    let mut figures = BTreeMap::new();
    let mut by_key: BTreeMap<String, (StepId, Figure)> = BTreeMap::new();
    for node in &ctx.main.nodes {
        if let NodeKind::Step(_) = node.kind {
            by_key.insert(node.key.clone(), (node.id, req.model.figure(node)));
        }
    }
    let scale = req.model.time_scale;
    for group in &mut plan.groups {
        let name = group.name.clone();
        for (phase, steps) in [("pre", &mut group.pre), ("post", &mut group.post)] {
            for step in steps.iter_mut() {
                let key = format!("{name}/{phase}/{}", step.name);
                let Some((id, figure)) = by_key.get(&key).cloned() else {
                    continue; // not part of this failover (`when`)
                };
                rewrite(step, &key, id, figure, req, scale, &mut figures);
            }
        }
    }
    (plan, figures)
}

fn rewrite(
    step: &mut Step,
    key: &str,
    id: StepId,
    figure: Figure,
    req: &SimRequest,
    scale: f64,
    figures: &mut BTreeMap<StepId, Figure>,
) {
    let failing = req.fail_steps.contains(key);
    match &mut step.action {
        StepAction::Script { command, .. } if failing => {
            *command = Command::Shell(format!(
                "echo 'simulated failure (--inject {FAIL_STEP}{key})' >&2; exit 1"
            ));
        }
        StepAction::Script { .. } if !req.run_scripts => {
            step.action = StepAction::Wait {
                duration: Duration::from_millis(figure.ms),
            };
            figures.insert(id, figure);
        }
        StepAction::Script { retry_delay, .. } => *retry_delay = retry_delay.mul_f64(scale),
        StepAction::Wait { duration } => *duration = duration.mul_f64(scale),
        StepAction::Manual { .. } => {
            figures.insert(id, figure);
        }
    }
}

/// Run the simulation to where `drplan run` would stop: the job ended, or
/// it waits for an operator's decision with nothing left running (manual
/// steps are answered by the simulation).
pub fn simulate(req: SimRequest) -> Result<Simulation, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    rt.block_on(drive(req))
}

/// 60 virtual days: beyond any plan's steps (a test stays open at most 14
/// days), so a simulation that never settles is reported, not looped on.
const MAX_VIRTUAL: Duration = Duration::from_secs(60 * 24 * 3600);

async fn drive(req: SimRequest) -> Result<Simulation, SimError> {
    let ctx = JobContext::new(&req.plan, req.operation);
    let (plan, figures) = for_simulation(req.plan.clone(), &ctx, &req);
    let fabric_config = SimConfig {
        latencies: crate::fabric::OpKind::ALL
            .iter()
            .map(|&op| (op, req.model.fabric.latency(op)))
            .collect(),
        time_scale: req.model.time_scale,
        // The estimate's figures, exactly: a what-if compares outcomes, and
        // jitter would only blur them.
        jitter: 0.0,
        ..req.model.fabric.clone()
    };
    let clock = Arc::new(TestClock::new(req.start_at));
    let fabric = Arc::new(SimFabric::new(
        &req.inventory,
        fabric_config,
        req.faults.clone(),
    ));
    let engine = Engine::start(EngineConfig {
        store: Arc::new(MemStore::new()),
        fabric,
        scripts: req.scripts.clone(),
        clock: clock.clone(),
        max_concurrent_vm_ops: req.max_concurrent_vm_ops.max(1),
        inventory: Some(req.inventory.clone()),
    })
    .await?;
    let result = run_job(&engine, &clock, &ctx, plan, &req, &figures).await;
    engine.shutdown().await;
    let (job, status, state, events) = result?;
    Ok(Simulation {
        job,
        status,
        state,
        events,
        ctx,
        figures,
        run_scripts: req.run_scripts,
    })
}

type Ended = (JobId, JobStatus, JobState, Vec<JobEvent>);

async fn run_job(
    engine: &Engine,
    clock: &TestClock,
    ctx: &JobContext,
    plan: Plan,
    req: &SimRequest,
    figures: &BTreeMap<StepId, Figure>,
) -> Result<Ended, SimError> {
    use crate::runtime::Clock;
    let mut updates = engine.subscribe_all();
    let sub = Submission::new(
        plan,
        req.plan_text.clone(),
        req.operation,
        SIMULATED_OPERATOR,
    );
    let job = engine.submit(sub).await?;
    let deadline = tokio::time::Instant::now() + MAX_VIRTUAL;
    // Manual steps to answer: step → (when, done).
    let mut answers: BTreeMap<StepId, (tokio::time::Instant, bool)> = BTreeMap::new();
    let mut prompted: BTreeSet<StepId> = BTreeSet::new();
    loop {
        let status = engine
            .status(job)
            .await?
            .ok_or(EngineError::UnknownJob(job))?;
        if status.is_terminal() {
            break;
        }
        let waiting = matches!(
            status,
            JobStatus::WaitingForOperator
                | JobStatus::AwaitingCleanup
                | JobStatus::CleanupIncomplete
                | JobStatus::NotStarted
        );
        if waiting || !answers.is_empty() {
            let st = engine.job(job).await?.ok_or(EngineError::UnknownJob(job))?;
            for &s in &st.active {
                let StepState::AwaitingOperator {
                    reason: AwaitReason::Manual,
                    ..
                } = st.steps[s].state
                else {
                    continue;
                };
                if !prompted.insert(s) {
                    continue;
                }
                let Some(delay) = answer_delay(ctx, s, figures.get(&s)) else {
                    continue; // the timeout answers
                };
                let prompted_at = st.steps[s].started_at.unwrap_or_else(|| clock.now_ms());
                let due_ms = prompted_at.saturating_add(delay);
                let wait = Duration::from_millis(due_ms.saturating_sub(clock.now_ms()));
                let done = !ctx.node(s).is_some_and(|n| req.fail_steps.contains(&n.key));
                answers.insert(s, (tokio::time::Instant::now() + wait, done));
            }
            let busy = !answers.is_empty()
                || st.active.iter().any(|&s| {
                    matches!(
                        st.steps[s].state,
                        StepState::Running { .. } | StepState::RetryWaiting { .. }
                    )
                })
                || st.timers.keys().any(|t| {
                    matches!(
                        t,
                        TimerId::Wait { .. }
                            | TimerId::Retry { .. }
                            | TimerId::ManualTimeout { .. }
                    )
                });
            if waiting && !busy {
                break;
            }
        }
        let next = answers.values().map(|(at, _)| *at).min();
        tokio::select! {
            u = updates.next() => {
                if u.is_none() {
                    return Err(EngineError::ShuttingDown.into());
                }
            }
            () = sleep_until_opt(next) => {
                let now = tokio::time::Instant::now();
                let due: Vec<(StepId, bool)> = answers
                    .iter()
                    .filter(|(_, (at, _))| *at <= now)
                    .map(|(s, (_, done))| (*s, *done))
                    .collect();
                for (s, done) in due {
                    answers.remove(&s);
                    let note = (!done).then(|| format!("simulated: --inject {FAIL_STEP}"));
                    // A step that timed out meanwhile refuses the answer:
                    // the timeout decided, as it would have for a person.
                    let _ = engine.answer_manual(job, s, done, SIMULATED_OPERATOR, note).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let status = engine.status(job).await?.unwrap_or(JobStatus::NotStarted);
                return Err(SimError::Stuck { days: MAX_VIRTUAL.as_secs() / 86_400, status });
            }
        }
    }
    let status = engine
        .status(job)
        .await?
        .ok_or(EngineError::UnknownJob(job))?;
    let state = engine.job(job).await?.ok_or(EngineError::UnknownJob(job))?;
    let events = engine.events(job).await?;
    Ok((job, status, state, events))
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When the simulated operator answers a manual step: after its figure,
/// unless that reaches the step's timeout (the figure is then the timeout
/// itself, or a measured delay longer than it): the timeout fires instead,
/// as it would for a slow operator.
fn answer_delay(ctx: &JobContext, step: StepId, figure: Option<&Figure>) -> Option<u64> {
    let f = figure?;
    if f.basis == Basis::ManualTimeout {
        return None;
    }
    let timeout = ctx.node(step).and_then(|n| match &n.kind {
        NodeKind::Step(s) => match &s.action {
            StepAction::Manual { timeout, .. } => *timeout,
            _ => None,
        },
        NodeKind::Vm { .. } => None,
    });
    match timeout {
        Some(t) if u128::from(f.ms) >= t.as_millis() => None,
        _ => Some(f.ms),
    }
}
