//! Properties of the simulated fabric under random operation sequences:
//! repeats of a key change nothing and return the recorded result, a
//! restored snapshot behaves exactly like the original, and the world's
//! invariants hold after every step (whatever is legal or not).

mod fabric_support;

use drplan_engine::fabric::sim::Replication;
use drplan_engine::fabric::{Fabric, FaultSet, OpContext, OpKey, OpResult, SimConfig, SimFabric};
use drplan_engine::plan::compile::{RecoveryPoint, VmOp};
use drplan_engine::plan::model::{Direction, FailoverKind, Inventory};
use fabric_support::*;
use proptest::prelude::*;

const VMS: [&str; 3] = ["web-01", "sql-01", "front-01"];

#[derive(Debug, Clone)]
enum Step {
    /// A new operation (fresh key).
    Op {
        vm: usize,
        op: usize,
        kind: usize,
        dir: bool,
    },
    /// Repeat the key of an earlier operation (index modulo the count).
    Repeat(usize),
    /// Snapshot, restore into a new fabric, and go on with that one.
    Restart,
    /// Toggle a fault.
    Fault(usize),
}

fn ops() -> Vec<VmOp> {
    vec![
        VmOp::ShutdownPrimary {
            if_reachable: false,
        },
        VmOp::ShutdownPrimary { if_reachable: true },
        VmOp::SyncFinalDelta,
        VmOp::Failover {
            recovery_point: RecoveryPoint::Latest,
        },
        VmOp::Failover {
            recovery_point: RecoveryPoint::LatestAppConsistent,
        },
        VmOp::StartReplica,
        VmOp::CreateTestVm {
            network: Some("test-bubble".into()),
        },
        VmOp::StartTestVm,
        VmOp::DeleteTestVm,
        VmOp::Commit,
        VmOp::ChangeRecoveryPoint {
            recovery_point: RecoveryPoint::LatestProcessed,
        },
        VmOp::ReverseReplicate,
        VmOp::Rollback,
    ]
}

const FAULTS: [&str; 3] = [
    "site-down:primary-vmm",
    "fail-once:*:web-01",
    "host-down:hv-s01",
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..VMS.len(), 0..13usize, 0..3usize, proptest::bool::weighted(0.15))
            .prop_map(|(vm, op, kind, dir)| Step::Op { vm, op, kind, dir }),
        2 => any::<usize>().prop_map(Step::Repeat),
        1 => Just(Step::Restart),
        1 => (0..FAULTS.len()).prop_map(Step::Fault),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48)
}

fn check_invariants(f: &SimFabric) -> Result<(), TestCaseError> {
    for vm in VMS {
        let v = f.vm(vm).unwrap();
        if let Some(t) = &v.test_vm {
            prop_assert_eq!(
                Some(&t.host),
                v.target().map(|c| &c.host),
                "test VM off the replica host"
            );
            prop_assert!(v.failover.is_none(), "test VM of a failed-over VM");
        }
        if v.failover.is_some() {
            prop_assert!(
                matches!(v.replication, Replication::Stopped { .. }),
                "failed over but still replicating: {:?}",
                v.replication
            );
        }
        if let Some(t) = v.target()
            && t.running
        {
            prop_assert!(v.failover.is_some(), "a replica runs without a failover");
        }
    }
    for r in f.residue() {
        prop_assert!(VMS.contains(&r.vm.as_str()));
    }
    Ok(())
}

async fn scenario(inv: &Inventory, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut f = SimFabric::new(inv, SimConfig::instant(), FaultSet::default());
    let all = ops();
    // Every issued key with its call and first result.
    let mut issued: Vec<(OpKey, usize, VmOp, OpContext, OpResult)> = Vec::new();
    let mut faults: Vec<bool> = vec![false; FAULTS.len()];
    for (i, s) in steps.into_iter().enumerate() {
        let now = NOW + i as u64 * 60_000;
        match s {
            Step::Op { vm, op, kind, dir } => {
                let kind = [
                    FailoverKind::Test,
                    FailoverKind::Planned,
                    FailoverKind::Unplanned,
                ][kind];
                let direction = if dir {
                    Direction::Reverse
                } else {
                    Direction::Forward
                };
                let cx = ctx_dir(kind, direction, now);
                let key = OpKey(format!("k{i}"));
                let op = all[op].clone();
                let r = f.run(&key, VMS[vm], &op, &cx).await;
                issued.push((key, vm, op, cx, r));
            }
            Step::Repeat(n) if !issued.is_empty() => {
                let (key, vm, op, cx, first) = &issued[n % issued.len()];
                let before = f.snapshot().vms;
                let again = f.run(key, VMS[*vm], op, cx).await;
                prop_assert_eq!(&again, first, "a repeated key gave another result");
                prop_assert_eq!(before, f.snapshot().vms, "a repeated key changed the world");
            }
            Step::Repeat(_) => {}
            Step::Restart => {
                let saved = serde_json::to_string(&f.snapshot()).unwrap();
                let state = serde_json::from_str(&saved).unwrap();
                let g = SimFabric::restore(inv, SimConfig::instant(), f.faults(), state).unwrap();
                prop_assert_eq!(g.snapshot(), f.snapshot());
                f = g;
            }
            Step::Fault(n) => {
                faults[n] = !faults[n];
                let on: Vec<&str> = FAULTS
                    .iter()
                    .zip(&faults)
                    .filter(|(_, on)| **on)
                    .map(|(f, _)| *f)
                    .collect();
                f.set_faults(FaultSet::from_cli(&on).unwrap());
            }
        }
        check_invariants(&f)?;
    }
    // Every key ran exactly once, however often it was submitted.
    for (key, ..) in &issued {
        let calls = f.executed().into_iter().find(|(k, _)| k == key.as_str());
        prop_assert!(calls.is_some(), "key {key} not recorded");
    }
    prop_assert_eq!(f.executed().len(), issued.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_operation_sequences_keep_the_fabric_consistent(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        let inv = shipped();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(scenario(&inv, steps))?;
    }
}
