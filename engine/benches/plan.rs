//! The plan pipeline on a large estate: 10,000 VMs in 1,000 groups.
//!
//! Run with `cargo bench -p drplan-engine --bench plan`; results go in
//! BENCHMARKS.md. The target is under 50 ms for the plan's own pipeline
//! (parse and validate the plan against an already validated inventory,
//! compile a planned failover: `total-plan-only`), so that the start of
//! every job stays instant. `total` adds reading the 1.8 MB inventory,
//! which the YAML parser alone makes several times slower.
//!
//! Everything works from text in memory: file I/O is not what is measured.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use drplan_engine::plan::fabric_file::FabricFile;
use drplan_engine::plan::file::PlanFile;
use drplan_engine::plan::generate::{self, GeneratedPlan};
use drplan_engine::plan::{self, FailoverKind, Inventory, Operation, Plan};

const GROUPS: usize = 1_000;
const VMS_PER_GROUP: usize = 10;
const SEED: u64 = 42;
const PLAN_FILE: &str = "large.yaml";
const FABRIC_FILE: &str = generate::LARGE_FABRIC_FILE;

fn parse_plan(text: &str) -> PlanFile {
    plan::yaml::parse(PLAN_FILE, text.as_bytes()).expect("the generated plan parses")
}

fn parse_fabric(text: &str) -> FabricFile {
    plan::yaml::parse(FABRIC_FILE, text.as_bytes()).expect("the generated inventory parses")
}

fn validate_fabric(file: &FabricFile) -> Option<Inventory> {
    let (inv, diags) = plan::validate::validate_fabric(FABRIC_FILE, file);
    assert!(
        diags.is_empty(),
        "the generated inventory has diagnostics: {diags:?}"
    );
    inv
}

fn validate_plan(file: &PlanFile, inv: Option<&Inventory>) -> Option<Plan> {
    let (plan, diags) = plan::validate::validate_plan(PLAN_FILE, file, Path::new("."), inv);
    assert!(
        diags.is_empty(),
        "the generated plan has diagnostics: {diags:?}"
    );
    plan
}

/// The plan's share of the pipeline, with the inventory already validated
/// (what a long-running process that caches the inventory pays per plan).
fn plan_pipeline(g: &GeneratedPlan, inv: Option<&Inventory>) -> usize {
    let file = parse_plan(&g.plan_yaml);
    let validated = validate_plan(&file, inv);
    let plan = validated.as_ref().unwrap_or(&g.plan);
    plan::compile(plan, Operation::failover(FailoverKind::Planned))
        .nodes
        .len()
}

/// The whole pipeline. While validation could not yet produce a plan (it
/// was a stub when this benchmark was written), compile the generator's
/// own model instead so the compile stage is still measured.
fn pipeline(g: &GeneratedPlan) -> usize {
    let file = parse_plan(&g.plan_yaml);
    let fabric = parse_fabric(&g.fabric_yaml);
    let inv = validate_fabric(&fabric);
    let validated = validate_plan(&file, inv.as_ref());
    let plan = validated.as_ref().unwrap_or(&g.plan);
    plan::compile(plan, Operation::failover(FailoverKind::Planned))
        .nodes
        .len()
}

fn bench(c: &mut Criterion) {
    let g = generate::large_plan(GROUPS, VMS_PER_GROUP, SEED);
    let file = parse_plan(&g.plan_yaml);
    let fabric = parse_fabric(&g.fabric_yaml);
    let inv = validate_fabric(&fabric);
    let validated = validate_plan(&file, inv.as_ref());
    if validated.is_none() {
        eprintln!(
            "note: validation returned no plan (still a stub?); \
             the compile stage uses the generator's model"
        );
    }
    let plan = validated.clone().unwrap_or_else(|| g.plan.clone());
    let steps: usize = plan.groups.iter().map(|g| g.pre.len() + g.post.len()).sum();
    eprintln!(
        "plan: {} bytes, inventory: {} bytes, {} VMs, {} groups, {steps} steps, {} nodes compiled",
        g.plan_yaml.len(),
        g.fabric_yaml.len(),
        GROUPS * VMS_PER_GROUP,
        GROUPS,
        pipeline(&g)
    );

    let mut group = c.benchmark_group("plan-10k");
    // The whole pipeline takes tens of milliseconds: 20 samples over a few
    // seconds give stable medians without hogging a shared machine.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("parse-plan", |b| {
        b.iter(|| parse_plan(black_box(&g.plan_yaml)))
    });
    group.bench_function("parse-fabric", |b| {
        b.iter(|| parse_fabric(black_box(&g.fabric_yaml)))
    });
    group.bench_function("validate-fabric", |b| {
        b.iter(|| validate_fabric(black_box(&fabric)))
    });
    group.bench_function("validate-plan", |b| {
        b.iter(|| validate_plan(black_box(&file), inv.as_ref()))
    });
    group.bench_function("compile-planned", |b| {
        b.iter(|| plan::compile(black_box(&plan), Operation::failover(FailoverKind::Planned)))
    });
    group.bench_function("total-plan-only", |b| {
        b.iter(|| plan_pipeline(black_box(&g), inv.as_ref()))
    });
    group.bench_function("total", |b| b.iter(|| pipeline(black_box(&g))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
