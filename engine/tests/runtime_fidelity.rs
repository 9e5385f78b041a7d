//! Critical-path fidelity of the runtime: with fixed operation latencies
//! (jitter 0, time scale 1) on tokio's paused clock, a planned failover
//! finishes within 1 % of the longest path of its compiled DAG. Virtual
//! time is deterministic, so this is not a timed test.

use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::SimConfig;
use drplan_engine::plan::model::{Inventory, Plan};
use drplan_engine::runtime::TestClock;
use drplan_engine::store::mem::MemStore;

#[path = "runtime_support/fidelity.rs"]
#[allow(dead_code)]
mod fidelity;
use fidelity::{fixed_latencies, ideal, run_planned, start_engine, vm_only};

async fn makespan(plan: &Plan, inv: &Inventory, config: SimConfig, vm_ops: usize) -> Duration {
    let clock = Arc::new(TestClock::new(1_795_651_200_000));
    let engine = start_engine(Arc::new(MemStore::new()), config, clock, inv, vm_ops).await;
    let t = tokio::time::Instant::now();
    let (_, end) = tokio::time::timeout(
        Duration::from_secs(30 * 24 * 3600),
        run_planned(&engine, plan, "test"),
    )
    .await
    .expect("the job ends in virtual time");
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
