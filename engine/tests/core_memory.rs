//! The memory a job's state takes, measured with a counting allocator: a
//! 10,000-VM plan's job must stay under 50 MB (it is kept in memory for
//! every running job and written as snapshots).

mod core_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use core_support::*;
use drplan_engine::core::*;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const LIMIT: isize = 50 * 1024 * 1024;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Run a job over a 10,000-VM plan to its end; return the bytes its state
/// holds at submission, at its largest sampled point and at the end.
fn measure(op: drplan_engine::plan::compile::Operation) -> (isize, isize, isize, usize) {
    let p = big_plan(10, 1_000);
    let ctx = JobContext::new(&p, op);
    let mut spec = spec(&ctx, op);
    spec.requested_by = "alice".into();
    let base = live();
    let (mut state, fx) = submit(&ctx, &JobEvent::Submitted { spec, at: T0 }).unwrap();
    drop(fx);
    let at_submit = live() - base;
    let mut peak = at_submit;
    let mut now = T0;
    let mut fx = apply(&ctx, &mut state, &JobEvent::Started { at: now }).unwrap();
    let mut events = 0usize;
    loop {
        // Finish every running operation reported by the last effects.
        let runs: Vec<(usize, u32)> =
            fx.iter()
                .filter_map(|e| match e {
                    Effect::RunVmOp { step, attempt, .. }
                    | Effect::RunScript { step, attempt, .. } => Some((*step, *attempt)),
                    _ => None,
                })
                .collect();
        drop(fx);
        fx = Vec::new();
        if runs.is_empty() {
            if state.status() == JobStatus::AwaitingCleanup {
                now += 1;
                fx = apply(
                    &ctx,
                    &mut state,
                    &JobEvent::OperatorAction {
                        action: OperatorAction::CompleteTest { notes: "ok".into() },
                        by: "a".into(),
                        at: now,
                    },
                )
                .unwrap();
                continue;
            }
            break;
        }
        for (step, attempt) in runs {
            now += 1;
            let mut more = apply(
                &ctx,
                &mut state,
                &JobEvent::StepFinished {
                    step,
                    attempt,
                    outcome: Outcome::Succeeded,
                    output_tail: Some("ok\n".into()),
                    values: Default::default(),
                    at: now,
                    warnings: Vec::new(),
                    recovery_point: None,
                },
            )
            .unwrap();
            events += 1;
            fx.append(&mut more);
        }
        peak = peak.max(live() - base);
    }
    assert!(state.is_terminal(), "{:?}", state.status());
    let at_end = live() - base;
    drop(state);
    (at_submit, peak, at_end, events)
}

#[test]
fn a_10000_vm_job_state_stays_under_50_mb() {
    for op in [planned(), test_op()] {
        let (submit, peak, end, events) = measure(op);
        eprintln!(
            "{op}: state at submit {:.2} MB, peak while running {:.2} MB (incl. pending effects), at end {:.2} MB, {events} outcomes",
            submit as f64 / 1e6,
            peak as f64 / 1e6,
            end as f64 / 1e6
        );
        assert!(
            submit > 0 && end >= submit / 2,
            "the counter measures something"
        );
        assert!(peak < LIMIT, "{op}: {peak} bytes");
        assert!(end < LIMIT, "{op}: {end} bytes");
    }
}
