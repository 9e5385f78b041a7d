//! Critical-path fidelity of the runtime: with fixed operation latencies
//! (jitter 0, time scale 1) on tokio's paused clock, a planned failover
//! finishes within 1 % of the longest path of its compiled DAG. Virtual
//! time is deterministic, so this is not a timed test.

use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, Submission, TestClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::mem::MemStore;

#[path = "runtime_support/fidelity.rs"]
mod fidelity;
use fidelity::{fixed_latencies, ideal, vm_only};

async fn makespan(plan: &Plan, inv: &Inventory, config: SimConfig, vm_ops: usize) -> Duration {
    let clock = Arc::new(TestClock::new(1_795_651_200_000));
    let fabric = Arc::new(SimFabric::new(inv, config, FaultSet::default()));
    let engine = Engine::start(EngineConfig {
        store: Arc::new(MemStore::new()),
        fabric,
        scripts: ScriptRunner::new(RunnerConfig::from_process_env()),
        clock,
        max_concurrent_vm_ops: vm_ops,
        inventory: Some(inv.clone()),
    })
    .await
    .expect("engine starts");
    let sub = Submission::new(
        plan.clone(),
        format!("# {}\n", plan.name),
        Operation::failover(FailoverKind::Planned),
        "test",
    );
    let t = tokio::time::Instant::now();
    let job = engine.submit(sub).await.expect("submitted");
    let end = tokio::time::timeout(
        Duration::from_secs(30 * 24 * 3600),
        engine.wait_until(job, |s| {
            s.is_terminal() || s == JobStatus::WaitingForOperator
        }),
    )
    .await
    .expect("the job ends in virtual time")
    .expect("wait");
    let took = t.elapsed();
    assert_eq!(end, JobStatus::Succeeded);
    engine.shutdown().await;
    took
}

#[tokio::test(start_paused = true)]
async fn planned_failover_runs_on_its_critical_path() {
    for (groups, vms, seed) in [(10, 100, 7), (30, 5, 11)] {
        let (plan, inv) = vm_only(groups, vms, seed);
        let config = fixed_latencies();
        let ideal = ideal(&plan, &config);
        let got = makespan(&plan, &inv, config, 100_000).await;
        let ratio = got.as_secs_f64() / ideal.as_secs_f64();
        assert!(
            (1.0..=1.01).contains(&ratio),
            "{groups}x{vms}: makespan {got:?}, ideal {ideal:?}, ratio {ratio}"
        );
    }
}

/// The check can fail: a concurrency cap below the widest group makes the
/// makespan exceed the critical path, and the ratio shows it.
#[tokio::test(start_paused = true)]
async fn a_concurrency_cap_stretches_the_makespan() {
    let (plan, inv) = vm_only(3, 20, 7);
    let config = fixed_latencies();
    let ideal = ideal(&plan, &config);
    let got = makespan(&plan, &inv, config, 2).await;
    assert!(
        got.as_secs_f64() > ideal.as_secs_f64() * 1.01,
        "makespan {got:?}, ideal {ideal:?}"
    );
}
