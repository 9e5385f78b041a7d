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

pub fn runner() -> ScriptRunner {
    let mut config = RunnerConfig::from_process_env();
    config.kill_grace = Duration::from_millis(200);
    ScriptRunner::new(config)
}

pub async fn engine(
    store: Arc<dyn Store>,
    fabric: Arc<SimFabric>,
    clock: Arc<TestClock>,
    inv: &Inventory,
) -> Engine {
    Engine::start(EngineConfig {
        store,
        fabric,
        scripts: runner(),
        clock,
        max_concurrent_vm_ops: 4,
        inventory: Some(inv.clone()),
    })
    .await
    .expect("engine starts")
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
                outcome: Outcome::Failed { error },
                ..
            } => Some((*step, error.clone())),
            _ => None,
        })
        .collect()
}
