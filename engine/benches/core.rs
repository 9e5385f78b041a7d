//! Pure transitions per second (no store, no I/O): a whole planned failover
//! of 10 groups × 100 VMs, every outcome a success, driven event by event.
//! Also prints the snapshot size of a 10,000-VM job (the in-memory size is
//! measured by `tests/core_memory.rs` with a counting allocator).

#[path = "../tests/core_support/mod.rs"]
mod core_support;

use std::hint::black_box;

use core_support::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use drplan_engine::core::*;

/// Run a job to its end; returns the number of events applied.
fn run(ctx: &JobContext, mut state: JobState) -> (JobState, u64) {
    let mut n = 0u64;
    let mut now = T0;
    let mut fx = apply(ctx, &mut state, &JobEvent::Started { at: now }).unwrap();
    n += 1;
    let mut runs = Vec::new();
    loop {
        runs.clear();
        runs.extend(fx.iter().filter_map(|e| match e {
            Effect::RunVmOp { step, attempt, .. } | Effect::RunScript { step, attempt, .. } => {
                Some((*step, *attempt))
            }
            _ => None,
        }));
        if runs.is_empty() {
            break;
        }
        fx.clear();
        for &(step, attempt) in &runs {
            now += 1;
            fx.extend(
                apply(
                    ctx,
                    &mut state,
                    &JobEvent::StepFinished {
                        step,
                        attempt,
                        outcome: Outcome::Succeeded,
                        output_tail: None,
                        values: Default::default(),
                        at: now,
                        warnings: Vec::new(),
                        recovery_point: None,
                    },
                )
                .unwrap(),
            );
            n += 1;
        }
    }
    assert!(state.is_terminal());
    (state, n)
}

fn bench(c: &mut Criterion) {
    let p = big_plan(10, 100);
    let ctx = JobContext::new(&p, planned());
    let (fresh, _) = submit(
        &ctx,
        &JobEvent::Submitted {
            spec: spec(&ctx, planned()),
            at: T0,
        },
    )
    .unwrap();
    let (_, events) = run(&ctx, fresh.clone());
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(events));
    g.bench_function("planned failover 10x100 VMs, transitions", |b| {
        b.iter_batched(
            || fresh.clone(),
            |s| black_box(run(&ctx, s)),
            BatchSize::LargeInput,
        )
    });
    // The copying variant: what `transition` costs when the caller keeps the
    // previous state (a clone per event).
    let (mid, _) = submit(
        &ctx,
        &JobEvent::Submitted {
            spec: spec(&ctx, planned()),
            at: T0,
        },
    )
    .unwrap();
    let (mid, fx) = transition(&ctx, &mid, &JobEvent::Started { at: T0 }).unwrap();
    let first = fx
        .iter()
        .find_map(|e| match e {
            Effect::RunScript { step, attempt, .. } => Some((*step, *attempt)),
            _ => None,
        })
        .unwrap();
    let ev = JobEvent::StepFinished {
        step: first.0,
        attempt: first.1,
        outcome: Outcome::Succeeded,
        output_tail: None,
        values: Default::default(),
        at: T0 + 1,
        warnings: Vec::new(),
        recovery_point: None,
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("transition (copying) on a 1,000-VM job", |b| {
        b.iter(|| black_box(transition(&ctx, &mid, &ev).unwrap()))
    });
    g.finish();

    let big = big_plan(10, 1_000);
    let ctx = JobContext::new(&big, planned());
    let (s, _) = submit(
        &ctx,
        &JobEvent::Submitted {
            spec: spec(&ctx, planned()),
            at: T0,
        },
    )
    .unwrap();
    let (done, _) = run(&ctx, s.clone());
    eprintln!(
        "10,000-VM job ({} steps): JSON snapshot {:.2} MB at submit, {:.2} MB at the end",
        ctx.len(),
        serde_json::to_vec(&s).unwrap().len() as f64 / 1e6,
        serde_json::to_vec(&done).unwrap().len() as f64 / 1e6
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
