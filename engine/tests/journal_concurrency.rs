//! Concurrent use: records for different jobs from many threads share
//! flushes, outcomes of one job delivered from several threads are each
//! recorded once and in sequence, and every log replays to the state.

mod core_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use core_support::{group, plan, script};
use drplan_engine::core::{self, Effect, JobContext, JobEvent, JobStatus, Outcome};
use drplan_engine::journal::{Journal, JournalOptions, SubmitRequest};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::{FailoverKind, Plan};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::on_flush::OnFlush;
use drplan_engine::store::{JobId, Store};

const T0: u64 = 1_700_000_000_000;

/// A MemStore whose flush takes a while, like a disk's, so that commits
/// from several threads have the chance to share one.
fn slow_flush() -> OnFlush<MemStore> {
    OnFlush::new(MemStore::new(), |s| {
        std::thread::sleep(Duration::from_millis(2));
        s.flush()
    })
}

fn plan_over(name: &str, vms: &[String]) -> Plan {
    let vms: Vec<(&str, bool)> = vms.iter().map(|v| (v.as_str(), false)).collect();
    let mut p = plan(
        vec![group(
            "g",
            vec![],
            &vms,
            vec![script("pre", 0)],
            vec![script("post", 0)],
        )],
        vec![],
    );
    p.name = name.into();
    p
}

fn submit(j: &Journal, p: &Plan) -> JobId {
    j.submit(SubmitRequest {
        plan: p.clone(),
        plan_text: format!("# {}\n", p.name),
        operation: Operation::failover(FailoverKind::Planned),
        requested_by: "alice".into(),
        at: T0,
        start_at: None,
        parent: None,
    })
    .unwrap()
    .0
}

fn outcome_of(e: &Effect, at: u64) -> Option<JobEvent> {
    match e {
        Effect::RunVmOp { step, attempt, .. } | Effect::RunScript { step, attempt, .. } => {
            Some(JobEvent::StepFinished {
                step: *step,
                attempt: *attempt,
                outcome: Outcome::Succeeded,
                output_tail: None,
                values: Default::default(),
                at,
                warnings: Vec::new(),
                recovery_point: None,
            })
        }
        _ => None,
    }
}

fn check_log(j: &Journal, job: JobId, p: &Plan) {
    let state = j.job(job).unwrap().unwrap();
    assert_eq!(state.status(), JobStatus::Succeeded, "job {job}");
    let ctx = JobContext::new(p, Operation::failover(FailoverKind::Planned));
    assert_eq!(core::replay(&ctx, &j.events(job).unwrap()).unwrap(), state);
}

#[test]
fn jobs_on_many_threads_share_flushes() {
    const JOBS: usize = 16;
    let store = Arc::new(slow_flush());
    let journal = Journal::open_with(store.clone(), JournalOptions::default()).unwrap();
    let plans: Vec<Plan> = (0..JOBS)
        .map(|i| plan_over(&format!("p{i}"), &[format!("a{i}"), format!("b{i}")]))
        .collect();
    std::thread::scope(|s| {
        for p in &plans {
            let journal = &journal;
            s.spawn(move || {
                let job = submit(journal, p);
                let mut fx = journal
                    .record(job, JobEvent::Started { at: T0 + 1 })
                    .unwrap();
                let mut at = T0 + 1;
                while let Some(e) = fx.pop() {
                    at += 1;
                    if let Some(ev) = outcome_of(&e, at) {
                        fx.extend(journal.record(job, ev).unwrap());
                    }
                }
                check_log(journal, job, p);
            });
        }
    });
    let stats = journal.commit_stats();
    assert!(
        stats.flushes < stats.batches,
        "no flush was shared: {stats:?}"
    );
    assert_eq!(journal.jobs().unwrap().len(), JOBS);
    assert_eq!(store.leases().unwrap(), vec![]);
    assert_eq!(store.timers().unwrap(), vec![]);
}

#[test]
fn outcomes_of_one_job_from_several_threads_are_recorded_once_in_order() {
    let store = Arc::new(slow_flush());
    let journal = Journal::open_with(store.clone(), JournalOptions::default()).unwrap();
    let vms: Vec<String> = (0..12).map(|i| format!("vm{i:02}")).collect();
    let p = plan_over("wide", &vms);
    let job = submit(&journal, &p);
    let queue = Mutex::new(
        journal
            .record(job, JobEvent::Started { at: T0 + 1 })
            .unwrap(),
    );
    let clock = AtomicUsize::new(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().pop();
                    match next {
                        Some(e) => {
                            let at = T0 + clock.fetch_add(1, Ordering::SeqCst) as u64;
                            if let Some(ev) = outcome_of(&e, at) {
                                // Delivered twice, as at-least-once delivery may.
                                let fx = journal.record(job, ev.clone()).unwrap();
                                assert_eq!(journal.record(job, ev).unwrap(), vec![]);
                                queue.lock().unwrap().extend(fx);
                            }
                        }
                        None if journal.job(job).unwrap().unwrap().is_terminal() => return,
                        None => {
                            assert!(Instant::now() < deadline, "the job stalled");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            });
        }
    });
    check_log(&journal, job, &p);
    let log = journal.events(job).unwrap();
    let outcomes = log
        .iter()
        .filter(|e| matches!(e, JobEvent::StepFinished { .. }))
        .count();
    let ctx = JobContext::new(&p, Operation::failover(FailoverKind::Planned));
    assert_eq!(outcomes, ctx.len(), "each step's outcome once");
}
