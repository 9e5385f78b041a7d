//! The VM-only planned failover shared by `tests/runtime_fidelity.rs` (the
//! within-1 % check), `benches/runtime.rs` (throughput and the same figure,
//! recorded) and `examples/store_bytes.rs`: a VM-only plan, fixed
//! latencies, its ideal makespan, and starting an engine and running the
//! failover to its end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::{FaultSet, SimFabric};
use drplan_engine::runtime::{Clock, Engine, EngineConfig, Submission};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::{JobId, Store};

use drplan_engine::fabric::{OpKind, SimConfig};
use drplan_engine::plan::compile::{self, NodeKind, Operation};
use drplan_engine::plan::generate;
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};

/// A generated plan with VM operations only (no script, manual or wait
/// step), so every node's duration is a fabric latency.
pub fn vm_only(groups: usize, vms: usize, seed: u64) -> (Plan, Inventory) {
    let g = generate::large_plan(groups, vms, seed);
    (g.vm_only(), g.inventory().expect("the generated inventory"))
}

/// Different latency per operation kind, so the critical path depends on
/// which operations lie on it, not just on how many.
pub fn fixed_latencies() -> SimConfig {
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

/// Longest path of the compiled DAG of a planned failover, VM operations
/// weighted by their latency and every other node by zero.
pub fn ideal(plan: &Plan, config: &SimConfig) -> Duration {
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

/// [`vm_only`] with no test cleanup and no commit window, so a planned
/// failover runs to `Succeeded` without an operator.
pub fn unattended(groups: usize, vms: usize, seed: u64) -> (Plan, Inventory) {
    let g = generate::large_plan(groups, vms, seed);
    (
        g.unattended(),
        g.inventory().expect("the generated inventory"),
    )
}

/// An engine on `store` over a zero-fault SimFabric with `config`, VM
/// operations capped at `vm_ops`.
pub async fn start_engine(
    store: Arc<dyn Store>,
    config: SimConfig,
    clock: Arc<dyn Clock>,
    inv: &Inventory,
    vm_ops: usize,
) -> Engine {
    Engine::start(EngineConfig {
        store,
        fabric: Arc::new(SimFabric::new(inv, config, FaultSet::default())),
        scripts: ScriptRunner::new(RunnerConfig::from_process_env()),
        clock,
        max_concurrent_vm_ops: vm_ops,
        inventory: Some(inv.clone()),
    })
    .await
    .expect("engine starts")
}

/// Submits a planned failover of `plan` and waits until it ends or waits
/// for an operator: the job and that status.
pub async fn run_planned(engine: &Engine, plan: &Plan, by: &str) -> (JobId, JobStatus) {
    let sub = Submission::new(
        plan.clone(),
        format!("# {}\n", plan.name),
        Operation::failover(FailoverKind::Planned),
        by,
    );
    let job = engine.submit(sub).await.expect("submitted");
    let end = engine
        .wait_until(job, |s| {
            s.is_terminal() || s == JobStatus::WaitingForOperator
        })
        .await
        .expect("wait");
    (job, end)
}
