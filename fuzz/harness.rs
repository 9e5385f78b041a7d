//! What each fuzz target does with its input, shared by the libFuzzer
//! targets (`fuzz/fuzz_targets/*.rs`) and by the regression test that
//! replays the committed corpus under plain `cargo test`
//! (`engine/tests/fuzz_regressions.rs`, which includes this file by path).
//!
//! Every function must return normally for every input: a panic, a hang, a
//! stack overflow or a huge allocation is a bug in drplan, never in the
//! input. Results are checked only where a wrong answer is cheap to detect
//! (a valid plan must compile; an import that succeeded must export the
//! same records again).

#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use drplan_engine::core::{JobContext, JobEvent, JobState};
use drplan_engine::fabric::{SimDelta, SimState};
use drplan_engine::journal::{JobMeta, PlanRecord};
use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::plan::fabric_file::FabricFile;
use drplan_engine::plan::file::PlanFile;
use drplan_engine::plan::model::{Direction, FailoverKind, Inventory, Plan};
use drplan_engine::plan::{compile, validate, yaml};
use drplan_engine::store::codec;

/// The directory of the shipped plans: scripts named by fuzzed plans are
/// looked up here, so that inputs derived from the shipped plans validate.
fn plans_dir() -> &'static Path {
    // Both crates that include this file sit one level below the root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plans"))
}

/// The shipped two-site inventory, validated once.
fn inventory() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        let text = include_str!("../plans/fabric.yaml");
        let file: FabricFile = yaml::parse("fabric.yaml", text.as_bytes())
            .unwrap_or_else(|d| panic!("the shipped inventory does not parse: {d:?}"));
        let (inv, diags) = validate::validate_fabric("fabric.yaml", &file);
        inv.unwrap_or_else(|| panic!("the shipped inventory is invalid: {diags:?}"))
    })
}

/// Every operation a job can run.
pub fn operations() -> Vec<Operation> {
    let mut ops = Vec::new();
    for kind in [
        FailoverKind::Test,
        FailoverKind::Planned,
        FailoverKind::Unplanned,
    ] {
        for direction in [Direction::Forward, Direction::Reverse] {
            ops.push(Operation::Failover {
                kind,
                direction,
                recovery_point: RecoveryPoint::default(),
                shutdown_primary: true,
            });
        }
    }
    ops.extend([
        Operation::TestCleanup,
        Operation::Commit,
        Operation::ChangeRecoveryPoint {
            recovery_point: RecoveryPoint::LatestAppConsistent,
        },
        Operation::ReverseReplicate,
        Operation::Rollback,
    ]);
    ops
}

/// Compiles a plan for every operation, as a job would.
fn compile_all(plan: &Plan) {
    for op in operations() {
        let exec = compile(plan, op);
        // Deterministic numbering is what durable jobs rely on.
        assert_eq!(
            compile(plan, op).nodes.len(),
            exec.nodes.len(),
            "compiling twice differs"
        );
        let _ = JobContext::new(plan, op);
    }
}

/// (a) The plan file: bytes → shape → validation (with and without the
/// inventory) → compilation of every operation when valid.
pub fn plan(data: &[u8]) {
    let (file, shape) = yaml::parse_lenient::<PlanFile>("plan.yaml", data);
    let Some(file) = file else {
        assert!(!shape.is_empty(), "no plan and no diagnostic");
        return;
    };
    for inv in [None, Some(inventory())] {
        let (plan, diags) = validate::validate_plan("plan.yaml", &file, plans_dir(), inv);
        if let Some(plan) = plan {
            compile_all(&plan);
        } else {
            assert!(!diags.is_empty(), "an invalid plan without a diagnostic");
        }
    }
}

/// (b) The inventory file: bytes → shape → validation.
pub fn inventory_file(data: &[u8]) {
    let (file, shape) = yaml::parse_lenient::<FabricFile>("fabric.yaml", data);
    let Some(file) = file else {
        assert!(!shape.is_empty(), "no inventory and no diagnostic");
        return;
    };
    let (inv, diags) = validate::validate_fabric("fabric.yaml", &file);
    if inv.is_none() {
        assert!(
            !diags.is_empty(),
            "an invalid inventory without a diagnostic"
        );
    }
}

/// (c) One stored record: the bytes decoded as every record type the store
/// holds. A plan model that decodes is also compiled, as `Journal::open`
/// would (a decoded model never went through validation).
pub fn records(data: &[u8]) {
    let _ = codec::peek_version(data);
    let _ = codec::decode::<JobMeta>(data);
    let _ = codec::decode::<JobEvent>(data);
    let _ = codec::decode::<JobState>(data);
    let _ = codec::decode::<drplan_engine::core::ItemState>(data);
    let _ = codec::decode::<SimState>(data);
    let _ = codec::decode::<SimDelta>(data);
    if let Ok(record) = codec::decode::<PlanRecord>(data)
        && record.plan.check().is_ok()
    {
        compile_all(&record.plan);
    }
}
