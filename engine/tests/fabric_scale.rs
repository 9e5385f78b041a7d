//! The simulated fabric at the size of a large plan: every VM
//! fails over at once (in paused virtual time), nothing runs twice, and the
//! snapshot round-trips. Prints the figures docs/fabric.md quotes.

mod fabric_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan_engine::fabric::{Fabric, FaultSet, OpKind, SimConfig, SimFabric, SimState};
use drplan_engine::plan::model::FailoverKind;
use fabric_support::*;

#[tokio::test(start_paused = true)]
async fn a_large_estate_fails_over_in_parallel() {
    // The inventory of a generated plan: 2,000 VMs by default so the file
    // runs in seconds in debug builds; FABRIC_SCALE_GROUPS=500 gives the
    // 10,000-VM plan of the plan benchmark (the figures in docs/fabric.md).
    let groups = std::env::var("FABRIC_SCALE_GROUPS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(100);
    let generated = drplan_engine::plan::generate::large_plan(groups, 20, 2026);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fabric.yaml");
    std::fs::write(&path, &generated.fabric_yaml).unwrap();
    let (inv, _, diags) = drplan_engine::plan::load_fabric(&path);
    let inv = inv.unwrap_or_else(|| panic!("{diags:?}"));
    let names: Vec<String> = inv
        .vms
        .iter()
        .filter(|v| v.protection == drplan_engine::plan::model::ProtectionState::Protected)
        .map(|v| v.name.clone())
        .collect();
    assert!(names.len() >= groups * 18, "{} protected VMs", names.len());
    let cfg = SimConfig::default().with_time_scale(0.01);
    let f = Arc::new(SimFabric::new(&inv, cfg, FaultSet::default()));
    let cx = ctx(FailoverKind::Planned);
    let wall = Instant::now();
    let t0 = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for vm in names.clone() {
        let f: Arc<dyn Fabric> = f.clone();
        tasks.spawn(async move {
            let (_, err) = run_chain(&*f, "big", &vm, &planned_chain(), &cx).await;
            err.map(|(op, e)| format!("{} of {vm}: {e}", op.name()))
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), None);
    }
    let virt = t0.elapsed();
    let wall = wall.elapsed();
    // In parallel: the slowest chain (150 s × 1 % × 1.1 jitter), not the sum.
    assert!(virt <= Duration::from_millis(1660), "{virt:?}");
    assert_eq!(f.duplicate_count(), 0);
    assert_eq!(f.executed().len(), names.len() * 4);
    assert_eq!(f.executions(OpKind::StartReplica, &names[0]), 1);
    let s = Instant::now();
    let state = f.snapshot();
    let json = serde_json::to_vec(&state).unwrap();
    let back: SimState = serde_json::from_slice(&json).unwrap();
    let ser = s.elapsed();
    assert_eq!(back, state);
    // Incremental persistence: what one more operation adds.
    f.take_delta();
    let vm = &names[0];
    f.commit(&"big2/commit/1".into(), vm, &plain())
        .await
        .unwrap();
    let delta = serde_json::to_vec(&f.take_delta()).unwrap();
    assert!(delta.len() < 8 * 1024, "{} bytes", delta.len());
    // Forgetting the finished job's keys shrinks the snapshot to the VMs.
    assert_eq!(f.forget_keys("big/"), names.len() * 4);
    let small = serde_json::to_vec(&f.snapshot()).unwrap();
    println!(
        "{} VMs, {} operations: {wall:?} wall, {virt:?} virtual; snapshot {} KiB JSON \
         ({} KiB without the job's keys), snapshot+encode+decode {ser:?}; one-op delta {} bytes",
        names.len(),
        names.len() * 4,
        json.len() / 1024,
        small.len() / 1024,
        delta.len()
    );
}
