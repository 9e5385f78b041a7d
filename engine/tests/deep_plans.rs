//! No cliffs in the plan language: a plan of 100,000 groups, each starting
//! after the one before it (the deepest dependency graph a plan of that
//! size can have), goes through every stage that walks the plan's
//! structure: reading, validation (cycle search included), compilation,
//! the job context, the estimate's critical path and both graph renderings.
//!
//! An algorithm that recursed once per group (petgraph's `tarjan_scc` did)
//! overflows the test thread's 2 MiB stack here long before 100,000. The
//! test runs on that ordinary thread on purpose: a bigger stack would hide
//! the cliff rather than show its absence.

use std::time::Instant;

use drplan_engine::analysis::estimate::{DurationModel, estimate};
use drplan_engine::core::JobContext;
use drplan_engine::plan::compile::{Operation, Stage, compile};
use drplan_engine::plan::generate::{CHAIN_FABRIC_FILE, chain_plan};
use drplan_engine::plan::render::{RenderOptions, to_dot, to_mermaid};
use drplan_engine::plan::validate::dependency_cycles;
use drplan_engine::plan::{FailoverKind, load};

const GROUPS: usize = 100_000;

#[test]
fn a_100000_group_chain_loads_compiles_estimates_and_renders() {
    let generated = chain_plan(GROUPS);
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("chain.yaml");
    std::fs::write(&plan_path, &generated.plan_yaml).unwrap();
    std::fs::write(dir.path().join(CHAIN_FABRIC_FILE), &generated.fabric_yaml).unwrap();

    let t = Instant::now();
    let loaded = load(&plan_path, None);
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        &loaded.diagnostics[..loaded.diagnostics.len().min(5)]
    );
    let plan = loaded.plan.expect("the chain is a valid plan");
    eprintln!("load + validate: {:?}", t.elapsed());
    assert_eq!(plan.groups.len(), GROUPS);
    // Validation resolved every `after`, implicit or written, to the previous group.
    for (i, (got, want)) in plan.groups.iter().zip(&generated.plan.groups).enumerate() {
        assert_eq!(got.after, want.after, "group {i}");
        assert_eq!(got.vms, want.vms, "group {i}");
    }

    for kind in [
        FailoverKind::Test,
        FailoverKind::Planned,
        FailoverKind::Unplanned,
    ] {
        let t = Instant::now();
        let op = Operation::failover(kind);
        let exec = compile(&plan, op);
        assert!(exec.nodes.len() >= GROUPS, "{kind:?}: {}", exec.nodes.len());
        // A chain: the last group's first operation waits for the group before.
        let last = &plan.groups[GROUPS - 1].name;
        // Phased failovers: the chain runs through the Boot phase (group by
        // group); the Shutdown and Failover phases of one-VM groups are
        // side by side or reversed.
        let first_of_last = exec
            .nodes
            .iter()
            .find(|n| n.group == Some(GROUPS - 1) && n.stage == Some(Stage::Boot))
            .expect("the last group boots");
        assert!(first_of_last.key.starts_with(last.as_str()));
        assert!(
            !first_of_last.deps.is_empty(),
            "{kind:?}: the chain is kept"
        );

        let est = estimate(&exec, &DurationModel::assumed());
        // The boot phase is one chain of every group: all of it is on the
        // critical path (a planned failover's reversed shutdown chain too).
        let chained = if kind == FailoverKind::Planned {
            2 * GROUPS
        } else {
            GROUPS
        };
        assert!(
            est.critical_path.len() >= chained,
            "{kind:?}: {} of {} nodes",
            est.critical_path.len(),
            exec.nodes.len()
        );

        let ctx = JobContext::new(&plan, op);
        assert_eq!(ctx.main_len(), exec.nodes.len(), "{kind:?}");

        let dot = to_dot(&plan, &exec, &RenderOptions::default());
        let mermaid = to_mermaid(&plan, &exec, &RenderOptions::default());
        for g in [&plan.groups[0].name, last] {
            assert!(dot.contains(g.as_str()), "{kind:?}: DOT names {g}");
            assert!(mermaid.contains(g.as_str()), "{kind:?}: Mermaid names {g}");
        }
        eprintln!(
            "{kind:?}: compile, context, estimate, render: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn cycle_search_is_iterative_for_chains_and_rings() {
    // A chain: no cycle.
    let chain: Vec<Vec<usize>> = (0..GROUPS)
        .map(|i| i.checked_sub(1).into_iter().collect())
        .collect();
    assert!(dependency_cycles(&chain).is_empty());

    // The same chain closed into one ring: one cycle through every group,
    // starting at group 0, in running order.
    let mut ring = chain;
    ring[0].push(GROUPS - 1);
    let cycles = dependency_cycles(&ring);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].len(), GROUPS);
    assert!(cycles[0].iter().copied().eq(0..GROUPS));
}

#[test]
fn a_group_after_50000_others_validates_and_compiles() {
    // The widest fan-in: each `after` entry was once checked against the
    // entries before it (quadratic); now against a hashed set.
    const N: usize = 50_000;
    let mut text = String::from("drplan: 1\nname: p\nsource: a/b\ntarget: c/d\ngroups:\n");
    for i in 0..N {
        text.push_str(&format!("  - name: g{i}\n    after: []\n    vms: [v{i}]\n"));
    }
    let names: Vec<String> = (0..N).map(|i| format!("g{i}")).collect();
    text.push_str(&format!(
        "  - name: last\n    after: [{}, g0]\n    vms: [vl]\n",
        names.join(", ")
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fan-in.yaml");
    std::fs::write(&path, text).unwrap();
    let loaded = load(&path, None);
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        loaded.diagnostics.first()
    );
    let plan = loaded.plan.unwrap();
    assert!(
        plan.groups[N].after.iter().copied().eq(0..N),
        "deduplicated, in order"
    );
    let exec = compile(&plan, Operation::failover(FailoverKind::Planned));
    // The last group boots after all N others (its own failover beside).
    let first = exec
        .nodes
        .iter()
        .find(|n| n.group == Some(N) && n.stage == Some(Stage::Boot))
        .unwrap();
    assert!(first.deps.len() >= N, "{}", first.deps.len());
    assert!(first.deps.len() <= N + 1, "{}", first.deps.len());
}
