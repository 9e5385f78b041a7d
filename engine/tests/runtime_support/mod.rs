//! Shared setup of the runtime tests: the shipped three-tier plan on the
//! shipped fabric, a SimFabric with faults, a MemStore, a TestClock, all in
//! paused tokio time.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::{JobEvent, JobStatus, Outcome};
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, Submission, TestClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::{JobId, Store};

/// 2026-11-26T00:00:00Z: a plausible "now".
pub const T0: u64 = 1_795_651_200_000;

pub fn plans_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plans")
}

pub struct Shipped {
    pub plan: Plan,
    pub text: String,
    pub inventory: Inventory,
}

pub fn three_tier() -> Shipped {
    let loaded = drplan_engine::plan::load(&plans_dir().join("three-tier.yaml"), None);
    assert!(!loaded.failed(false), "{:?}", loaded.diagnostics);
    Shipped {
        plan: loaded.plan.expect("plan"),
        text: loaded.plan_text.expect("text"),
        inventory: loaded.inventory.expect("inventory"),
    }
}

pub fn sim(inv: &Inventory, faults: &[&str]) -> Arc<SimFabric> {
    let faults = FaultSet::from_cli(faults).expect("faults parse");
    // Realistic latencies in virtual time: the paused clock jumps them.
    let config = SimConfig::default().with_time_scale(0.01);
    Arc::new(SimFabric::new(inv, config, faults))
}

/// A runner whose scripts keep their state (the shipped scripts' "already
/// done for this key" markers) in `scratch`, so tests do not see each
/// other's job ids.
pub fn runner(scratch: &std::path::Path) -> ScriptRunner {
    let mut config = RunnerConfig::from_process_env();
    config.kill_grace = Duration::from_millis(200);
    config.scratch_dir = scratch.to_path_buf();
    config.inherited_env.retain(|(k, _)| k != "TMPDIR");
    config
        .inherited_env
        .push(("TMPDIR".into(), scratch.as_os_str().to_owned()));
    ScriptRunner::new(config)
}

/// An engine plus the scratch folder of its scripts.
pub struct Harness {
    pub engine: Engine,
    _scratch: tempfile::TempDir,
}

impl std::ops::Deref for Harness {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

pub async fn engine(
    store: Arc<dyn Store>,
    fabric: Arc<SimFabric>,
    clock: Arc<TestClock>,
    inv: &Inventory,
) -> Harness {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let engine = Engine::start(EngineConfig {
        store,
        fabric,
        scripts: runner(scratch.path()),
        clock,
        max_concurrent_vm_ops: 4,
        inventory: Some(inv.clone()),
    })
    .await
    .expect("engine starts");
    Harness {
        engine,
        _scratch: scratch,
    }
}

pub fn mem() -> Arc<MemStore> {
    Arc::new(MemStore::new())
}

pub fn submission(s: &Shipped, kind: FailoverKind) -> Submission {
    Submission::new(
        s.plan.clone(),
        s.text.clone(),
        Operation::failover(kind),
        "alice",
    )
}

/// Waits (in virtual time, bounded) until the job's status satisfies `pred`.
pub async fn wait(engine: &Engine, job: JobId, pred: impl Fn(JobStatus) -> bool) -> JobStatus {
    // 60 virtual days: far beyond any step of the shipped plan, so a stuck
    // job fails the test instead of hanging it.
    match tokio::time::timeout(
        Duration::from_secs(60 * 24 * 3600),
        engine.wait_until(job, pred),
    )
    .await
    {
        Ok(r) => r.expect("wait_until"),
        Err(_) => panic!(
            "job {job} stuck at {:?}; history:\n{}",
            engine.status(job).await,
            history(&engine.events(job).await.unwrap_or_default())
        ),
    }
}

pub fn history(events: &[JobEvent]) -> String {
    events
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Failed step outcomes in a history: (step, error).
pub fn failures(events: &[JobEvent]) -> Vec<(usize, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::StepFinished {
                step,
                outcome: Outcome::Failed { error, .. },
                ..
            } => Some((*step, error.clone())),
            _ => None,
        })
        .collect()
}

/// Steps waiting for an operator: (step, node key, failed?).
pub async fn awaiting(engine: &Engine, job: JobId) -> Vec<(usize, String, bool)> {
    use drplan_engine::core::{AwaitReason, StepState};
    let st = engine.job(job).await.unwrap().expect("job");
    let ctx = engine.context(job).await.unwrap();
    st.active
        .iter()
        .filter_map(|&s| match &st.steps[s].state {
            StepState::AwaitingOperator { reason, .. } => Some((
                s,
                ctx.node(s).map(|n| n.key.clone()).unwrap_or_default(),
                matches!(reason, AwaitReason::Failed { .. }),
            )),
            _ => None,
        })
        .collect()
}

/// Answers the plan's manual step once it waits (and nothing else waits).
pub async fn answer_verify_health(engine: &Engine, job: JobId) {
    wait(engine, job, |s| s == JobStatus::WaitingForOperator).await;
    let w = awaiting(engine, job).await;
    assert_eq!(
        w.iter()
            .map(|(_, k, f)| (k.as_str(), *f))
            .collect::<Vec<_>>(),
        [("application/post/verify-health", false)]
    );
    engine
        .answer_manual(job, w[0].0, true, "bob", None)
        .await
        .expect("answered");
}
