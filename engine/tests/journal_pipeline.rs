//! Pipelined commits of ONE job (`Journal::begin_record`): concurrent
//! outcomes of one job are applied and queued under its lock and wait for
//! durability outside it, so they share flushes. These tests pin what must
//! not change with that:
//!
//! - every effect handed back is justified by the DURABLE state at the
//!   moment it is handed back (a crash right then would find its event and,
//!   replaying the durable log, the step running that very attempt);
//! - the durable log at every flush (`crash_copy` taken inside the flush) is
//!   a dense prefix of the final log, in the order events were applied, and
//!   replays;
//! - a failed flush in the middle of concurrent completions: nothing is
//!   handed back after it, every later call is refused (`Poisoned`), and a
//!   journal reopened on the durable state finishes the job with every step
//!   finished exactly once.

mod core_support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_support::{group, plan};
use drplan_engine::core::{
    self, Effect, JobContext, JobEvent, JobState, JobStatus, Outcome, StepState,
};
use drplan_engine::journal::{Journal, JournalError, JournalOptions, SubmitRequest};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::{FailoverKind, Plan};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::on_flush::OnFlush;
use drplan_engine::store::{JobId, Store, StoreError, codec};

const T0: u64 = 1_700_000_000_000;
const VMS: usize = 24;
const THREADS: usize = 8;

fn the_plan() -> Plan {
    let names: Vec<String> = (0..VMS).map(|i| format!("vm-{i:02}")).collect();
    let vms: Vec<(&str, bool)> = names.iter().map(|v| (v.as_str(), false)).collect();
    let mut p = plan(vec![group("g", vec![], &vms, vec![], vec![])], vec![]);
    p.name = "pipeline".into();
    p
}

fn op() -> Operation {
    Operation::failover(FailoverKind::Planned)
}

/// What a restart would find in `store`'s durable state for `job`.
fn durable_log(copy: &MemStore, job: JobId) -> Vec<JobEvent> {
    copy.events(job, 0)
        .unwrap()
        .into_iter()
        .map(|(_, b)| codec::decode(&b).unwrap())
        .collect()
}

/// A store whose flush takes a little while (so that outcomes queue up
/// behind it), keeps the durable state of the job after every flush, and
/// fails flush number `fail_at` (counting from 1) when asked.
struct Harness {
    store: Arc<OnFlush<MemStore>>,
    flushes: Arc<AtomicUsize>,
    copies: Arc<Mutex<Vec<MemStore>>>,
}

fn harness(fail_at: Option<usize>) -> Harness {
    let flushes = Arc::new(AtomicUsize::new(0));
    let copies = Arc::new(Mutex::new(Vec::new()));
    let (f, c) = (flushes.clone(), copies.clone());
    let store = Arc::new(OnFlush::new(MemStore::new(), move |s: &MemStore| {
        std::thread::sleep(Duration::from_micros(300));
        let n = f.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == fail_at {
            return Err(StoreError::FlushFailed {
                detail: format!("injected failure of flush {n}"),
            });
        }
        s.flush()?;
        c.lock().unwrap().push(s.crash_copy());
        Ok(())
    }));
    Harness {
        store,
        flushes,
        copies,
    }
}

/// Checks that `fx`, handed back for `event`, is justified by what is
/// durable right now.
fn assert_justified(
    store: &OnFlush<MemStore>,
    ctx: &JobContext,
    job: JobId,
    event: &JobEvent,
    fx: &[Effect],
) {
    let log = durable_log(&store.inner().crash_copy(), job);
    assert!(
        log.contains(event),
        "effects {fx:?} handed back for {event:?}, which is not durable"
    );
    let state = core::replay(ctx, &log).unwrap();
    for e in fx {
        if let Effect::RunVmOp { step, attempt, .. } = e {
            assert_eq!(
                state.steps[*step].state,
                StepState::Running { attempt: *attempt },
                "{e:?} handed back before the durable state runs it"
            );
        }
    }
}

/// Runs the job's VM operations from `THREADS` threads, each outcome
/// recorded as soon as its operation is taken; returns the first error.
fn drive(
    journal: &Journal,
    store: &OnFlush<MemStore>,
    ctx: &JobContext,
    job: JobId,
    start: Vec<Effect>,
) -> Option<JournalError> {
    let queue = Mutex::new(start);
    let busy = AtomicUsize::new(0);
    let clock = AtomicU64::new(T0 + 10);
    let error: Mutex<Option<JournalError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    if error.lock().unwrap().is_some() {
                        return;
                    }
                    let next = {
                        let mut q = queue.lock().unwrap();
                        let e = q.pop();
                        if e.is_some() {
                            busy.fetch_add(1, Ordering::SeqCst);
                        }
                        e
                    };
                    let Some(effect) = next else {
                        if busy.load(Ordering::SeqCst) == 0 && queue.lock().unwrap().is_empty() {
                            return;
                        }
                        std::thread::yield_now();
                        continue;
                    };
                    let Effect::RunVmOp { step, attempt, .. } = effect else {
                        busy.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    };
                    let event = JobEvent::StepFinished {
                        step,
                        attempt,
                        outcome: Outcome::Succeeded,
                        output_tail: None,
                        values: Default::default(),
                        at: clock.fetch_add(1, Ordering::SeqCst),
                        warnings: Vec::new(),
                        recovery_point: None,
                    };
                    match journal.record(job, event.clone()) {
                        Ok(fx) => {
                            assert_justified(store, ctx, job, &event, &fx);
                            queue.lock().unwrap().extend(fx);
                        }
                        Err(e) => {
                            error.lock().unwrap().get_or_insert(e);
                        }
                    }
                    busy.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    error.into_inner().unwrap()
}

fn submit(journal: &Journal, p: &Plan) -> JobId {
    journal
        .submit(SubmitRequest {
            plan: p.clone(),
            plan_text: "# pipeline\n".into(),
            operation: op(),
            requested_by: "alice".into(),
            at: T0,
            start_at: None,
            parent: None,
        })
        .unwrap()
        .0
}

fn steps_finished(log: &[JobEvent]) -> Vec<usize> {
    let mut steps: Vec<usize> = log
        .iter()
        .filter_map(|e| match e {
            JobEvent::StepFinished { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    steps.sort_unstable();
    steps
}

#[test]
fn one_jobs_concurrent_outcomes_share_flushes_and_act_only_on_durable_events() {
    let p = the_plan();
    let ctx = JobContext::new(&p, op());
    let h = harness(None);
    let journal = Journal::open_with(h.store.clone(), JournalOptions::default()).unwrap();
    let job = submit(&journal, &p);
    let start = journal
        .record(job, JobEvent::Started { at: T0 + 1 })
        .unwrap();
    let before = journal.commit_stats();
    assert!(drive(&journal, &h.store, &ctx, job, start).is_none());

    let stats = journal.commit_stats();
    let batches = stats.batches - before.batches;
    let flushes = stats.flushes - before.flushes;
    assert_eq!(batches as usize, ctx.len(), "one batch per step outcome");
    // The point of pipelining: outcomes of ONE job share flushes (before
    // it, one job's batches never did: largest group 1).
    assert!(
        flushes < batches && stats.largest_group >= 2,
        "one job's outcomes did not share flushes: {batches} batches in {flushes} flushes"
    );

    // Final state: every step once, the log replays to the state.
    let final_log = journal.events(job).unwrap();
    let state: JobState = journal.job(job).unwrap().unwrap();
    assert_eq!(state.status(), JobStatus::Succeeded);
    assert_eq!(core::replay(&ctx, &final_log).unwrap(), state);
    assert_eq!(
        steps_finished(&final_log),
        (0..ctx.len()).collect::<Vec<_>>()
    );

    // Crash at every flush: the durable log is a prefix of the final log
    // (store order = applied order) and a reopened journal resumes it.
    let copies = std::mem::take(&mut *h.copies.lock().unwrap());
    assert!(copies.len() >= 4, "{} flushes kept", copies.len());
    let mut last_len = 0;
    for (i, copy) in copies.into_iter().enumerate() {
        let log = durable_log(&copy, job);
        assert!(log.len() >= last_len, "flush {i}: the durable log shrank");
        assert_eq!(log[..], final_log[..log.len()], "flush {i}: not a prefix");
        last_len = log.len();
        let reopened = Journal::open(Arc::new(copy)).unwrap();
        // (Before `Started` a job has nothing in flight.)
        if log.len() >= 2 && log.len() < final_log.len() {
            let resumed = reopened.job(job).unwrap().unwrap();
            assert_eq!(resumed, core::replay(&ctx, &log).unwrap());
            assert!(
                !reopened.resume().is_empty(),
                "flush {i}: nothing to resume"
            );
        }
    }
    assert!(h.flushes.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_failed_flush_among_concurrent_outcomes_stops_everything_after_it() {
    let p = the_plan();
    let ctx = JobContext::new(&p, op());
    // Flush 1: submit, 2: Started; fail one in the middle of the outcomes.
    let h = harness(Some(9));
    let journal = Journal::open_with(h.store.clone(), JournalOptions::default()).unwrap();
    let job = submit(&journal, &p);
    let start = journal
        .record(job, JobEvent::Started { at: T0 + 1 })
        .unwrap();
    let err = drive(&journal, &h.store, &ctx, job, start).expect("the failed flush surfaces");
    assert!(matches!(err, JournalError::Poisoned { .. }), "{err}");
    assert!(
        err.to_string().contains("injected failure of flush 9"),
        "{err}"
    );
    // Every later call is refused, and says why.
    let again = journal.record(
        job,
        JobEvent::StepFinished {
            step: 0,
            attempt: 1,
            outcome: Outcome::Succeeded,
            output_tail: None,
            values: Default::default(),
            at: T0 + 999,
            warnings: Vec::new(),
            recovery_point: None,
        },
    );
    assert!(
        matches!(again, Err(JournalError::Poisoned { .. })),
        "{again:?}"
    );

    // A restart on what is durable finishes the job: every step exactly once.
    let durable = h.store.inner().crash_copy();
    drop(journal);
    let reopened_store = Arc::new(OnFlush::new(durable, |s: &MemStore| s.flush()));
    let reopened = Journal::open(reopened_store.clone()).unwrap();
    let resumed: Vec<Effect> = reopened.resume().into_iter().map(|(_, e)| e).collect();
    assert!(!resumed.is_empty());
    assert!(drive(&reopened, &reopened_store, &ctx, job, resumed).is_none());
    let log = reopened.events(job).unwrap();
    assert_eq!(
        reopened.job(job).unwrap().unwrap().status(),
        JobStatus::Succeeded
    );
    assert_eq!(steps_finished(&log), (0..ctx.len()).collect::<Vec<_>>());
}

/// The runtime announces an event to subscribers (and `--format json`
/// prints it) only when the journal says it is in the store: an outcome
/// delivered after its job ended is dropped, and must say so.
#[test]
fn a_late_delivery_is_dropped_and_not_reported_as_stored() {
    let p = the_plan();
    let ctx = JobContext::new(&p, op());
    let h = harness(None);
    let journal = Journal::open_with(h.store.clone(), JournalOptions::default()).unwrap();
    let job = submit(&journal, &p);
    let start = journal
        .begin_record(
            job,
            JobEvent::Started { at: T0 + 1 },
            &mut || Ok(Vec::new()),
        )
        .unwrap()
        .wait(&journal)
        .unwrap();
    assert!(start.stored, "a durable event reports itself stored");
    assert!(drive(&journal, &h.store, &ctx, job, start.effects).is_none());
    assert_eq!(
        journal.job(job).unwrap().unwrap().status(),
        JobStatus::Succeeded
    );
    let logged = journal.events(job).unwrap().len();
    let late = journal
        .begin_record(
            job,
            JobEvent::StepFinished {
                step: 0,
                attempt: 1,
                outcome: Outcome::Succeeded,
                output_tail: None,
                values: Default::default(),
                at: T0 + 999,
                warnings: Vec::new(),
                recovery_point: None,
            },
            &mut || Ok(Vec::new()),
        )
        .unwrap()
        .wait(&journal)
        .unwrap();
    assert!(!late.stored, "a dropped late delivery claimed to be stored");
    assert_eq!(journal.events(job).unwrap().len(), logged);
}
