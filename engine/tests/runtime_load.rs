//! Load, CI size: one engine runs 100 jobs at once over disjoint VMs on a
//! zero-latency simulated fabric and a durable SledStore; nothing is lost:
//! every job succeeds, every step is in its log once, every (job, operation,
//! VM) ran under exactly one key, once. The full size (1,000 jobs) is
//! `cargo run --release -p drplan-engine --example load -- 1000 4`, with
//! its figures in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use drplan_engine::core::{JobEvent, JobStatus};
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::generate;
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{Engine, EngineConfig, Submission, SystemClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::JobId;
use drplan_engine::store::sled_store::SledStore;

const JOBS: usize = 100;
const VMS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_at_once_lose_nothing_and_run_each_operation_once() {
    let g = generate::large_plan(JOBS, VMS, 5);
    let inv = g.inventory().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fabric = Arc::new(SimFabric::new(
        &inv,
        SimConfig::instant(),
        FaultSet::default(),
    ));
    let engine = Arc::new(
        Engine::start(EngineConfig {
            store: Arc::new(SledStore::open(dir.path()).unwrap()),
            fabric: fabric.clone(),
            scripts: ScriptRunner::new(RunnerConfig::from_process_env()),
            clock: Arc::new(SystemClock),
            max_concurrent_vm_ops: 64,
            inventory: Some(inv),
        })
        .await
        .unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    // One single-group plan per job: its own VMs.
    for plan in g.unattended_per_group("load") {
        let engine = engine.clone();
        tasks.spawn(async move {
            let sub = Submission::new(
                plan,
                "# load\n".into(),
                Operation::failover(FailoverKind::Planned),
                "load",
            );
            let job = engine.submit(sub).await.unwrap();
            let end = engine.wait_until(job, |s| s.is_terminal()).await.unwrap();
            (job, end)
        });
    }
    let mut ended = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ended.push(r.unwrap());
    }
    assert_eq!(ended.len(), JOBS);
    for (job, end) in &ended {
        assert_eq!(*end, JobStatus::Succeeded, "job {job}");
        let log = engine.events(*job).await.unwrap();
        let mut steps: Vec<usize> = log
            .iter()
            .filter_map(|e| match e {
                JobEvent::StepFinished { step, .. } => Some(*step),
                _ => None,
            })
            .collect();
        steps.sort_unstable();
        assert_eq!(steps, (0..VMS * 4).collect::<Vec<_>>(), "job {job}");
    }
    let mut per: BTreeMap<(JobId, String, String), u64> = BTreeMap::new();
    for (key, calls) in fabric.executed() {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(calls, 1, "{key} submitted {calls} times");
        let job = JobId(parts[0].parse().unwrap());
        *per.entry((job, parts[4].into(), parts[3].into()))
            .or_default() += 1;
    }
    assert_eq!(per.len(), JOBS * VMS * 4, "operations missing");
    assert!(
        per.values().all(|&n| n == 1),
        "an operation ran under two keys"
    );
    assert!(engine.journal().leases().unwrap().is_empty(), "leases left");
    let stats = engine.journal().commit_stats();
    assert!(stats.flushes < stats.batches, "{stats:?}");
    engine.shutdown().await;
}
