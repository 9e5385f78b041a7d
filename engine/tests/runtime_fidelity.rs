//! Critical-path fidelity of the runtime: with fixed operation latencies
//! (jitter 0, time scale 1) on tokio's paused clock, a planned failover
//! finishes within 1 % of the longest path of its compiled DAG. Virtual
//! time is deterministic, so this is not a timed test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::{FaultSet, OpKind, SimConfig, SimFabric};
use drplan_engine::plan::compile::{self, NodeKind, Operation};
use drplan_engine::plan::generate;
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, Submission, TestClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::mem::MemStore;

/// A generated plan with VM operations only (no script, manual or wait
/// step), so every node's duration is a fabric latency.
fn vm_only(groups: usize, vms: usize, seed: u64) -> (Plan, Inventory) {
    let g = generate::large_plan(groups, vms, seed);
    let file = drplan_engine::plan::yaml::parse("large-fabric.yaml", g.fabric_yaml.as_bytes())
        .expect("the generated inventory parses");
    let (inv, diags) = drplan_engine::plan::validate::validate_fabric("large-fabric.yaml", &file);
    assert!(diags.is_empty(), "{diags:?}");
    let mut plan = g.plan;
    for group in &mut plan.groups {
        group.pre.clear();
        group.post.clear();
    }
    (plan, inv.expect("inventory"))
}

/// Different latency per operation kind, so the critical path depends on
/// which operations lie on it, not just on how many.
fn fixed_latencies() -> SimConfig {
    SimConfig {
        jitter: 0.0,
        time_scale: 1.0,
        latencies: OpKind::ALL
            .iter()
            .enumerate()
            .map(|(i, &op)| (op, Duration::from_secs(10 + 5 * i as u64)))
            .collect(),
        ..SimConfig::default()
    }
}

/// Longest path of the compiled DAG, VM operations weighted by latency.
fn ideal(plan: &Plan, config: &SimConfig) -> Duration {
    let exec = compile::compile(plan, Operation::failover(FailoverKind::Planned));
    let by_name: BTreeMap<&str, OpKind> = OpKind::ALL.iter().map(|&k| (k.as_str(), k)).collect();
    let mut finish = vec![Duration::ZERO; exec.nodes.len()];
    for node in &exec.nodes {
        // Dependencies have lower ids, so one pass in id order suffices.
        let start = node
            .deps
            .iter()
            .map(|&d| finish[d])
            .max()
            .unwrap_or_default();
        let cost = match &node.kind {
            NodeKind::Vm { op, .. } => config.latency(by_name[op.name()]),
            NodeKind::Step(_) => Duration::ZERO,
        };
        finish[node.id] = start + cost;
    }
    finish.into_iter().max().unwrap_or_default()
}

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
