//! Runtime benchmarks: whole jobs driven through `Engine` on a durable
//! SledStore and a zero-latency SimFabric, next to this machine's raw
//! `fdatasync` rate measured in the same run, plus the critical-path
//! fidelity of the scheduler on tokio's paused clock.
//!
//! Run: `cargo bench -p drplan-engine --bench runtime`. Figures are in
//! BENCHMARKS.md ("Runtime").
//!
//! - `fdatasync/raw_256B`: the floor: append 256 bytes to a file and
//!   `fdatasync`, per record.
//! - `runtime/planned_10x100`: a planned failover of 10 groups × 100 VMs
//!   (`generate::large_plan(10, 100, 7)` with every pre/post step removed),
//!   submit to `Succeeded`; throughput = durable events recorded.
//! - `runtime/planned_10x100_memstore`: the same on a `MemStore` (not
//!   durable; no target): the engine's share of the figure above.
//! - `runtime/chain_1000`: a strict chain of 1,000 VM operations (groups of
//!   one VM, each after the previous one); throughput = durable events.
//! - `fidelity/critical_path`: a planned failover of 10 × 100 VMs whose
//!   operations take fixed latencies (jitter 0, time scale 1) on the paused
//!   clock; prints the makespan over the ideal critical path of the
//!   compiled DAG. Timed in wall-clock for the record; the assertion lives
//!   in tests/runtime_fidelity.rs.

/// The allocator the `drplan` binary uses (see its Cargo.toml), so these
/// figures are the product's. An embedder picks its own; BENCHMARKS.md gives
/// the figure with the system allocator too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
#[path = "../tests/runtime_support/fidelity.rs"]
#[allow(dead_code)]
mod fidelity;
use common::raw_fdatasync;
use fidelity::{fixed_latencies, ideal, run_planned, start_engine};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drplan_engine::core::JobStatus;
use drplan_engine::fabric::SimConfig;
use drplan_engine::plan::compile::{self, Operation};
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use drplan_engine::runtime::{SystemClock, TestClock};
use drplan_engine::store::Store;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::SledStore;

const SEED: u64 = 7;

/// The generated plan (VM operations only, no operator needed).
fn vm_only(groups: usize, vms: usize) -> (Plan, Inventory) {
    fidelity::unattended(groups, vms, SEED)
}

/// `n` groups of one VM each in a strict line.
fn chain(n: usize) -> (Plan, Inventory) {
    let (mut plan, inv) = vm_only(n, 1);
    for (i, group) in plan.groups.iter_mut().enumerate() {
        group.after = i.checked_sub(1).into_iter().collect();
        for vm in &mut group.vms {
            vm.optional = false;
        }
    }
    (plan, inv)
}

/// Where a run's events go.
#[derive(Clone, Copy)]
enum Backing {
    /// A `SledStore` in a fresh tempdir: every event durable.
    Sled,
    /// A `MemStore` (no disk): what the engine costs without the store.
    Memory,
}

/// One planned failover, submit to terminal, on a fresh store.
/// Returns (wall time, events recorded, commit stats summary).
fn run_durable(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    inv: &Inventory,
    backing: Backing,
) -> (Duration, usize, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let store: Arc<dyn Store> = match backing {
            Backing::Sled => Arc::new(SledStore::open(tmp.path()).expect("sled opens")),
            Backing::Memory => Arc::new(MemStore::new()),
        };
        let engine =
            start_engine(store, SimConfig::instant(), Arc::new(SystemClock), inv, 64).await;
        let t = Instant::now();
        let (job, end) = run_planned(&engine, plan, "bench").await;
        let took = t.elapsed();
        assert_eq!(end, JobStatus::Succeeded);
        let events = engine.events(job).await.expect("events").len();
        let st = engine.journal().commit_stats();
        let stats = format!(
            "{} batches in {} flushes ({:.1} per flush, largest {})",
            st.batches,
            st.flushes,
            st.batches as f64 / st.flushes.max(1) as f64,
            st.largest_group
        );
        engine.shutdown().await;
        (took, events, stats)
    })
}

fn durable_bench(c: &mut Criterion, name: &str, plan: &Plan, inv: &Inventory, backing: Backing) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let steps = compile::compile(plan, Operation::failover(FailoverKind::Planned))
        .nodes
        .len();
    // A first run counts the events (the same every run) and shows where
    // the flushes go.
    let (took, events, stats) = run_durable(&rt, plan, inv, backing);
    eprintln!(
        "{name}: {steps} steps, {events} events; warm-up run {took:?} = {:.0} events/s; {stats}",
        events as f64 / took.as_secs_f64()
    );
    let mut g = c.benchmark_group("runtime");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (took, n, _) = run_durable(&rt, plan, inv, backing);
                    assert_eq!(n, events);
                    took
                })
                .sum()
        })
    });
    g.finish();
}

fn planned_10x100(c: &mut Criterion) {
    let (plan, inv) = vm_only(10, 100);
    durable_bench(c, "planned_10x100", &plan, &inv, Backing::Sled);
}

/// The same failover on a `MemStore`: the engine's own cost (core, journal,
/// tasks, simulated fabric), to tell it from the store's.
fn planned_10x100_memory(c: &mut Criterion) {
    let (plan, inv) = vm_only(10, 100);
    durable_bench(c, "planned_10x100_memstore", &plan, &inv, Backing::Memory);
}

fn chain_1000(c: &mut Criterion) {
    // Enough one-VM groups for 1,000 VM operations in a line.
    let (probe, _) = chain(1);
    let per_vm = compile::compile(&probe, Operation::failover(FailoverKind::Planned))
        .nodes
        .len();
    let (plan, inv) = chain(1000 / per_vm.max(1));
    durable_bench(c, "chain_1000", &plan, &inv, Backing::Sled);
}

/// Makespan in virtual time of one planned failover on the paused clock.
fn virtual_makespan(plan: &Plan, inv: &Inventory, config: SimConfig) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = Arc::new(TestClock::new(1_795_651_200_000));
        let engine = start_engine(Arc::new(MemStore::new()), config, clock, inv, 100_000).await;
        let t = tokio::time::Instant::now();
        let (_, end) = run_planned(&engine, plan, "bench").await;
        let took = t.elapsed();
        assert_eq!(end, JobStatus::Succeeded);
        engine.shutdown().await;
        took
    })
}

fn fidelity(c: &mut Criterion) {
    let (plan, inv) = vm_only(10, 100);
    let config = fixed_latencies();
    let ideal = ideal(&plan, &config);
    let got = virtual_makespan(&plan, &inv, config.clone());
    eprintln!(
        "fidelity: makespan {got:?} over ideal critical path {ideal:?} = {:.4}",
        got.as_secs_f64() / ideal.as_secs_f64()
    );
    let mut g = c.benchmark_group("fidelity");
    g.sample_size(10);
    g.bench_function("critical_path_10x100", |b| {
        b.iter(|| virtual_makespan(&plan, &inv, config.clone()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = raw_fdatasync, planned_10x100, planned_10x100_memory, chain_1000, fidelity
}
criterion_main!(benches);
