//! The failover phases of the compiled DAG (docs/plan-format.md, "Failover
//! phases"): Shutdown (front end first), Failover (every VM), Boot (group by
//! group with its `pre` and `post` steps), checked on the shipped three-tier
//! plan; the per-group layout kept for plan models stored before phases;
//! and a snapshot of each compiled failover.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use drplan_engine::journal::PlanRecord;
use drplan_engine::plan::compile::{ExecPlan, NodeKind, Operation, Stage, VmOp, compile};
use drplan_engine::plan::generate::large_plan;
use drplan_engine::plan::model::{CompileLayout, Direction, FailoverKind, Plan};
use drplan_engine::plan::{RecoveryPoint, load};
use drplan_engine::store::codec;

fn three_tier() -> Plan {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/three-tier.yaml");
    load(&p, None).plan.expect("the shipped plan is valid")
}

fn id(exec: &ExecPlan, key: &str) -> usize {
    exec.node(key).unwrap_or_else(|| panic!("no node {key}")).id
}

/// Every node `key` waits for, directly or not.
fn ancestors(exec: &ExecPlan, key: &str) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![id(exec, key)];
    while let Some(n) = todo.pop() {
        for &d in &exec.nodes[n].deps {
            if seen.insert(d) {
                todo.push(d);
            }
        }
    }
    seen
}

fn waits_for(exec: &ExecPlan, later: &str, earlier: &str) -> bool {
    ancestors(exec, later).contains(&id(exec, earlier))
}

fn vm_ops(exec: &ExecPlan, name: &str) -> Vec<String> {
    exec.nodes
        .iter()
        .filter(|n| matches!(&n.kind, NodeKind::Vm { op, .. } if op.name() == name))
        .map(|n| n.key.clone())
        .collect()
}

/// One line per node: id, phase, key, and the ids it waits for.
fn listing(exec: &ExecPlan) -> String {
    let mut out = String::new();
    for n in &exec.nodes {
        let stage = n.stage.map_or("-", Stage::as_str);
        let _ = writeln!(out, "{:>2} {stage:<8} {} <- {:?}", n.id, n.key, n.deps);
    }
    out
}

#[test]
fn planned_shuts_every_primary_down_front_end_first_then_fails_over_then_boots_in_order() {
    let plan = three_tier();
    assert_eq!(plan.layout, CompileLayout::Phases);
    let exec = compile(&plan, Operation::failover(FailoverKind::Planned));
    let shutdowns = vm_ops(&exec, "shutdown-primary");
    assert_eq!(shutdowns.len(), 7, "every VM of the plan is shut down");
    // Front end first: a tier's shutdowns wait for those of the tier after it.
    for (later, earlier) in [("application", "web"), ("database", "application")] {
        for l in shutdowns.iter().filter(|k| k.starts_with(later)) {
            for e in shutdowns.iter().filter(|k| k.starts_with(earlier)) {
                assert!(waits_for(&exec, l, e), "{l} must wait for {e}");
            }
        }
    }
    for w in shutdowns.iter().filter(|k| k.starts_with("web/")) {
        assert!(exec.node(w).unwrap().deps.is_empty(), "{w} starts at once");
    }
    // Nothing moves before every primary is down.
    for n in &exec.nodes {
        if n.stage != Some(Stage::Shutdown) {
            for s in &shutdowns {
                assert!(waits_for(&exec, &n.key, s), "{} must wait for {s}", n.key);
            }
        }
    }
    // Every VM's final sync and failover run in parallel: no VM's failover
    // waits for another VM's failover phase.
    let failover_phase: Vec<&str> = exec
        .nodes
        .iter()
        .filter(|n| n.stage == Some(Stage::Failover))
        .map(|n| n.key.as_str())
        .collect();
    assert_eq!(failover_phase.len(), 14);
    for a in &failover_phase {
        for b in &failover_phase {
            let same_vm = a.rsplit_once('/').unwrap().0 == b.rsplit_once('/').unwrap().0;
            if !same_vm {
                assert!(!waits_for(&exec, a, b), "{a} must not wait for {b}");
            }
        }
    }
    // Boot in dependency order, each group with its pre and post steps.
    let boot = [
        ("database/pre/quiesce", "database/vm/sql-01/failover"),
        ("database/vm/sql-01/start-replica", "database/pre/quiesce"),
        (
            "application/vm/app-01/start-replica",
            "database/vm/sql-02/start-replica",
        ),
        (
            "application/post/verify-health",
            "application/vm/app-03/start-replica",
        ),
        ("web/vm/web-01/start-replica", "application/post/settle"),
        ("web/post/update-dns", "web/vm/web-02/start-replica"),
    ];
    for (later, earlier) in boot {
        assert!(waits_for(&exec, later, earlier), "{later} after {earlier}");
    }
    // The boot of the database does not wait for the front end's failover:
    // it waits for its own VMs only.
    assert!(!waits_for(
        &exec,
        "database/vm/sql-01/start-replica",
        "web/vm/web-01/failover"
    ));
    // Each VM's operations keep their order.
    for vm in ["sql-01", "app-03", "web-02"] {
        let ids: Vec<usize> = exec
            .nodes
            .iter()
            .filter(|n| n.vm() == Some(vm))
            .map(|n| n.id)
            .collect();
        let ops: Vec<&str> = ids
            .iter()
            .map(|&i| match &exec.nodes[i].kind {
                NodeKind::Vm { op, .. } => op.name(),
                NodeKind::Step(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            ops,
            [
                "shutdown-primary",
                "sync-final-delta",
                "failover",
                "start-replica"
            ]
        );
        for w in ids.windows(2) {
            assert!(ancestors(&exec, &exec.nodes[w[1]].key).contains(&w[0]));
        }
    }
}

#[test]
fn a_planned_failback_has_the_same_phases() {
    let plan = three_tier();
    let back = compile(
        &plan,
        Operation::Failover {
            kind: FailoverKind::Planned,
            direction: Direction::Reverse,
            recovery_point: RecoveryPoint::default(),
            shutdown_primary: true,
        },
    );
    let forward = compile(&plan, Operation::failover(FailoverKind::Planned));
    let shape = |e: &ExecPlan| -> Vec<(String, Vec<usize>, Option<Stage>)> {
        e.nodes
            .iter()
            .filter(|n| n.vm().is_some())
            .map(|n| (n.key.clone(), n.deps.clone(), n.stage))
            .collect()
    };
    assert_eq!(shape(&back), shape(&forward));
}

#[test]
fn unplanned_never_waits_for_a_shutdown_except_the_vms_own_start() {
    let plan = three_tier();
    let exec = compile(&plan, Operation::failover(FailoverKind::Unplanned));
    let shutdowns = vm_ops(&exec, "shutdown-primary");
    assert_eq!(shutdowns.len(), 7);
    for s in &shutdowns {
        let n = exec.node(s).unwrap();
        assert!(n.deps.is_empty(), "{s}: best effort, at once");
        assert_eq!(
            n.kind,
            NodeKind::Vm {
                vm: n.vm().unwrap().to_string(),
                op: VmOp::ShutdownPrimary { if_reachable: true }
            }
        );
    }
    for n in &exec.nodes {
        let Some(vm) = n.vm() else { continue };
        let own = format!(
            "{}/vm/{vm}/shutdown-primary",
            n.key.split('/').next().unwrap()
        );
        match &n.kind {
            // The failover never waits for any shutdown...
            NodeKind::Vm {
                op: VmOp::Failover { .. },
                ..
            } => {
                for s in &shutdowns {
                    assert!(!waits_for(&exec, &n.key, s), "{} waits for {s}", n.key);
                }
            }
            // ...the start waits for the VM's own shutdown attempt (so that,
            // where the primary answers, it and the replica never run at once).
            NodeKind::Vm {
                op: VmOp::StartReplica,
                ..
            } => assert!(waits_for(&exec, &n.key, &own), "{}", n.key),
            _ => {}
        }
    }
    // Without the shutdown there is no Shutdown phase at all.
    let exec = compile(
        &plan,
        Operation::Failover {
            kind: FailoverKind::Unplanned,
            direction: Direction::Forward,
            recovery_point: RecoveryPoint::default(),
            shutdown_primary: false,
        },
    );
    assert!(vm_ops(&exec, "shutdown-primary").is_empty());
    assert!(exec.nodes.iter().all(|n| n.stage != Some(Stage::Shutdown)));
}

#[test]
fn test_failover_never_touches_production_and_creates_before_booting_by_group() {
    let plan = three_tier();
    let exec = compile(&plan, Operation::failover(FailoverKind::Test));
    for n in &exec.nodes {
        if let NodeKind::Vm { op, .. } = &n.kind {
            assert!(!op.touches_production(), "{}", n.key);
        }
    }
    let creates = vm_ops(&exec, "create-test-vm");
    assert_eq!(creates.len(), 7);
    for c in &creates {
        let n = exec.node(c).unwrap();
        assert!(n.deps.is_empty(), "{c}: every test VM is created at once");
        assert_eq!(n.stage, Some(Stage::Failover));
    }
    assert!(waits_for(
        &exec,
        "web/vm/web-01/start-test-vm",
        "application/post/settle"
    ));
    assert!(waits_for(
        &exec,
        "application/vm/app-01/start-test-vm",
        "database/vm/sql-01/start-test-vm"
    ));
}

#[test]
fn compiled_failovers_of_the_three_tier_plan() {
    let plan = three_tier();
    for (name, kind) in [
        ("planned", FailoverKind::Planned),
        ("unplanned", FailoverKind::Unplanned),
        ("test", FailoverKind::Test),
    ] {
        let exec = compile(&plan, Operation::failover(kind));
        insta::assert_snapshot!(format!("three_tier_{name}"), listing(&exec));
    }
}

/// A plan model stored by a drplan before phases has no `layout`: it reads
/// as the per-group layout and compiles to the numbering its jobs' event
/// logs refer to; a new model says `phases` when stored.
#[test]
fn a_model_stored_before_phases_keeps_the_per_group_layout() {
    let mut old = three_tier();
    old.layout = CompileLayout::Groups;
    let bytes = codec::encode(&PlanRecord { plan: old.clone() });
    let text = std::str::from_utf8(&bytes[6..]).unwrap();
    assert!(!text.contains("layout"), "the old form has no layout field");
    let back: PlanRecord = codec::decode(&bytes).expect("reads");
    assert_eq!(back.plan.layout, CompileLayout::Groups);
    let exec = compile(&back.plan, Operation::failover(FailoverKind::Planned));
    let keys: Vec<&str> = exec.nodes.iter().map(|n| n.key.as_str()).collect();
    // The numbering of drplan before phases, spelled out.
    assert_eq!(
        keys[..10],
        [
            "database/pre/quiesce",
            "database/vm/sql-01/shutdown-primary",
            "database/vm/sql-01/sync-final-delta",
            "database/vm/sql-01/failover",
            "database/vm/sql-01/start-replica",
            "database/vm/sql-02/shutdown-primary",
            "database/vm/sql-02/sync-final-delta",
            "database/vm/sql-02/failover",
            "database/vm/sql-02/start-replica",
            "application/vm/app-01/shutdown-primary",
        ]
    );
    assert!(exec.nodes.iter().all(|n| n.stage.is_none()));
    assert_eq!(
        exec.node("application/vm/app-01/shutdown-primary")
            .unwrap()
            .deps,
        [4, 8]
    );

    let new = three_tier();
    let text = String::from_utf8(codec::encode(&PlanRecord { plan: new })[6..].to_vec()).unwrap();
    assert!(text.contains(r#""layout":"phases""#), "{text}");
}

/// Operations other than failovers have no phases: the two layouts agree.
#[test]
fn other_operations_are_the_same_in_both_layouts() {
    let new = three_tier();
    let mut old = new.clone();
    old.layout = CompileLayout::Groups;
    for op in [
        Operation::TestCleanup,
        Operation::Commit,
        Operation::Rollback,
        Operation::ReverseReplicate,
    ] {
        let a = compile(&new, op);
        let b = compile(&old, op);
        assert_eq!(a.nodes, b.nodes, "{op}");
    }
}

/// The phase barrier costs edges from one group's shutdowns only (the
/// groups without `after` go down one after another), not from every
/// independent group's: a plan of many independent groups stays linear.
#[test]
fn the_phase_barrier_stays_small_in_a_plan_of_many_independent_groups() {
    let g = large_plan(300, 10, 7);
    let roots = g.plan.groups.iter().filter(|g| g.after.is_empty()).count();
    assert!(
        roots > 5,
        "the generated plan has independent groups: {roots}"
    );
    let exec = compile(&g.plan, Operation::failover(FailoverKind::Planned));
    let vms = 300 * 10;
    let edges: usize = exec.nodes.iter().map(|n| n.deps.len()).sum();
    // Barrier: 10 shutdowns × 3,000 syncs; everything else a few per node.
    assert!(
        edges < 10 * vms + 40 * exec.nodes.len(),
        "{edges} edges for {} nodes",
        exec.nodes.len()
    );
    let syncs: Vec<_> = exec
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                &n.kind,
                NodeKind::Vm {
                    op: VmOp::SyncFinalDelta,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(syncs.len(), vms);
    assert!(
        syncs
            .iter()
            .all(|s| s.deps == syncs[0].deps && s.deps.len() == 10)
    );
    // Still: everything shut down first.
    let last_shutdown = exec
        .nodes
        .iter()
        .filter(|n| n.stage == Some(Stage::Shutdown))
        .map(|n| n.id)
        .max()
        .unwrap();
    let first = &syncs[0].key;
    let before = ancestors(&exec, first);
    assert!(
        exec.nodes
            .iter()
            .filter(|n| n.stage == Some(Stage::Shutdown))
            .all(|n| before.contains(&n.id)),
        "every shutdown precedes {first} (last shutdown id {last_shutdown})"
    );
}
