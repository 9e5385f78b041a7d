//! Shared helpers of the `fabric_*` tests: the shipped inventory, contexts,
//! keys and the operation chains a plan compiles to.
#![allow(dead_code)]

use std::path::PathBuf;

use drplan_engine::core::Millis;
use drplan_engine::fabric::{
    Fabric, FabricError, FaultSet, OpContext, OpKey, OpReport, SimConfig, SimFabric,
};
use drplan_engine::plan::compile::{Operation, RecoveryPoint, VmOp};
use drplan_engine::plan::model::{Direction, FailoverKind, Inventory};

/// 2026-09-01T00:00:00Z: a fixed "now", so recovery points are exact.
pub const NOW: Millis = 1_788_220_800_000;

pub fn shipped() -> Inventory {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plans/fabric.yaml");
    let (inv, _, diags) = drplan_engine::plan::load_fabric(&path);
    inv.unwrap_or_else(|| panic!("the shipped inventory is valid: {diags:?}"))
}

pub fn instant(inv: &Inventory) -> SimFabric {
    SimFabric::new(inv, SimConfig::instant(), FaultSet::default())
}

pub fn with_faults(inv: &Inventory, faults: &[&str]) -> SimFabric {
    SimFabric::new(
        inv,
        SimConfig::instant(),
        FaultSet::from_cli(faults).expect("good faults"),
    )
}

pub fn ctx(kind: FailoverKind) -> OpContext {
    OpContext::for_operation(&Operation::failover(kind), NOW)
}

pub fn ctx_dir(kind: FailoverKind, direction: Direction, now: Millis) -> OpContext {
    OpContext::for_operation(
        &Operation::Failover {
            kind,
            direction,
            recovery_point: RecoveryPoint::default(),
            shutdown_primary: true,
        },
        now,
    )
}

pub fn plain() -> OpContext {
    OpContext::at(NOW)
}

/// `job/vm/op/attempt`, the shape of a core idempotency key.
pub fn key(job: &str, vm: &str, op: &VmOp, attempt: u32) -> OpKey {
    OpKey(format!("{job}/{vm}/{}/{attempt}", op.name()))
}

pub fn planned_chain() -> Vec<VmOp> {
    vec![
        VmOp::ShutdownPrimary {
            if_reachable: false,
        },
        VmOp::SyncFinalDelta,
        VmOp::Failover {
            recovery_point: RecoveryPoint::Latest,
        },
        VmOp::StartReplica,
    ]
}

pub fn unplanned_chain(rp: RecoveryPoint) -> Vec<VmOp> {
    vec![
        VmOp::ShutdownPrimary { if_reachable: true },
        VmOp::Failover { recovery_point: rp },
        VmOp::StartReplica,
    ]
}

pub fn test_chain(network: Option<&str>) -> Vec<VmOp> {
    vec![
        VmOp::CreateTestVm {
            network: network.map(str::to_string),
        },
        VmOp::StartTestVm,
    ]
}

/// Run a chain on one VM, attempt 1 each, stopping at the first failure:
/// the reports so far, and the failure with the op it happened at.
pub async fn run_chain(
    f: &dyn Fabric,
    job: &str,
    vm: &str,
    chain: &[VmOp],
    cx: &OpContext,
) -> (Vec<OpReport>, Option<(VmOp, FabricError)>) {
    let mut reports = Vec::new();
    for op in chain {
        match f.run(&key(job, vm, op, 1), vm, op, cx).await {
            Ok(r) => reports.push(r),
            Err(e) => return (reports, Some((op.clone(), e))),
        }
    }
    (reports, None)
}

/// Like [`run_chain`], but every step must succeed.
pub async fn run_ok(
    f: &dyn Fabric,
    job: &str,
    vm: &str,
    chain: &[VmOp],
    cx: &OpContext,
) -> Vec<OpReport> {
    let (reports, err) = run_chain(f, job, vm, chain, cx).await;
    if let Some((op, e)) = err {
        panic!("{} of {vm} failed: {e}", op.name());
    }
    reports
}
