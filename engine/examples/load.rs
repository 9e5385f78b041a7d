//! Load: one engine running many jobs at once over disjoint VMs, on a
//! zero-latency simulated fabric and a durable SledStore (issue #6 item 3).
//!
//! ```sh
//! cargo run --release -p drplan-engine --example load -- 1000 4   # jobs, VMs per job
//! ```
//!
//! Generates one inventory of `jobs × vms` VMs (`plan::generate`), makes one
//! single-group plan per job (no scripts, planned failover), submits every
//! job concurrently, waits for all of them, then checks that nothing was
//! lost: every job `Succeeded`, every job's log holds one `StepFinished` per
//! step, and every (job, operation, VM) ran under exactly one key, once.
//! Prints the time, the throughput and the peak memory (VmHWM). Figures are
//! in BENCHMARKS.md ("Load"); `engine/tests/runtime_load.rs` runs the same
//! check with 100 jobs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use drplan_engine::core::{JobEvent, JobStatus};
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::generate;
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use drplan_engine::runtime::{Engine, EngineConfig, Submission, SystemClock};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use drplan_engine::store::JobId;
use drplan_engine::store::sled_store::SledStore;

/// One plan per job, each over its own VMs, and the shared inventory.
fn plans(jobs: usize, vms: usize) -> (Vec<Plan>, Inventory) {
    let g = generate::large_plan(jobs, vms, 3);
    let inv = g.inventory().expect("the generated inventory");
    (g.unattended_per_group("load"), inv)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let vms: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(jobs, vms))
}

async fn run(jobs: usize, vms: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (plans, inv) = plans(jobs, vms);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(dir.path())?);
    let fabric = Arc::new(SimFabric::new(
        &inv,
        SimConfig::instant(),
        FaultSet::default(),
    ));
    let engine = Arc::new(
        Engine::start(EngineConfig {
            store,
            fabric: fabric.clone(),
            scripts: ScriptRunner::new(RunnerConfig::from_process_env()),
            clock: Arc::new(SystemClock),
            max_concurrent_vm_ops: 256,
            inventory: Some(inv.clone()),
        })
        .await?,
    );
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for plan in plans {
        let engine = engine.clone();
        tasks.spawn(async move {
            let sub = Submission::new(
                plan,
                "# load\n".into(),
                Operation::failover(FailoverKind::Planned),
                "load",
            );
            let job = engine.submit(sub).await?;
            let end = engine
                .wait_until(job, |s| {
                    s.is_terminal() || s == JobStatus::WaitingForOperator
                })
                .await?;
            Ok::<_, drplan_engine::runtime::EngineError>((job, end))
        });
    }
    let mut ended = Vec::with_capacity(jobs);
    while let Some(r) = tasks.join_next().await {
        ended.push(r??);
    }
    let took = t.elapsed();

    // Nothing lost.
    let mut events = 0usize;
    for (job, end) in &ended {
        assert_eq!(*end, JobStatus::Succeeded, "job {job}");
        let log = engine.events(*job).await?;
        let finished = log
            .iter()
            .filter(|e| matches!(e, JobEvent::StepFinished { .. }))
            .count();
        assert_eq!(finished, vms * 4, "job {job}: {finished} steps finished");
        events += log.len();
    }
    let mut per: BTreeMap<(JobId, String, String), u64> = BTreeMap::new();
    for (key, calls) in fabric.executed() {
        // {job}/{group}/vm/{vm}/{op}/{attempt}
        let parts: Vec<&str> = key.split('/').collect();
        let job = JobId(parts[0].parse()?);
        assert_eq!(calls, 1, "{key} submitted {calls} times");
        *per.entry((job, parts[4].into(), parts[3].into()))
            .or_default() += 1;
    }
    assert_eq!(per.len(), jobs * vms * 4, "operations missing");
    assert!(
        per.values().all(|&n| n == 1),
        "an operation ran under two keys"
    );
    let stats = engine.journal().commit_stats();
    println!(
        "{jobs} jobs x {vms} VMs ({} VM operations, {events} durable events): {:.2} s, \
         {:.0} events/s; {} batches in {} flushes (largest {}); peak RSS {} MiB (at start {} MiB)",
        jobs * vms * 4,
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        stats.batches,
        stats.flushes,
        stats.largest_group,
        peak_rss_kib().map_or("?".into(), |k| (k / 1024).to_string()),
        rss_before.map_or("?".into(), |k| (k / 1024).to_string()),
    );
    engine.shutdown().await;
    Ok(())
}
