//! Crash safety of the engine: a planned failover is interrupted at many
//! points (the store keeps only what was flushed: `MemStore::crash_copy`),
//! a new engine resumes it on the crash copy with the SAME simulated fabric
//! (an external system that survived drplan's crash), and the job ends as
//! an uninterrupted one would, with every fabric operation executed once.

mod runtime_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::SimFabric;
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{Engine, TestClock, Update};
use drplan_engine::store::JobId;
use drplan_engine::store::mem::MemStore;
use runtime_support::*;

/// Answers manual steps until the job ends; returns its final status.
async fn drive(engine: &Engine, job: JobId) -> JobStatus {
    loop {
        let st = wait(engine, job, |s| s != JobStatus::InProgress).await;
        if st.is_terminal() {
            return st;
        }
        assert_eq!(st, JobStatus::WaitingForOperator);
        for (step, key, failed) in awaiting(engine, job).await {
            assert!(!failed, "{key} failed");
            engine
                .answer_manual(job, step, true, "bob", None)
                .await
                .expect("answer");
        }
    }
}

/// (op, vm) → distinct keys executed, from the fabric's key records.
fn keys_per_op(fabric: &SimFabric) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for (key, _) in fabric.executed() {
        // key = {job}/{group}/vm/{vm}/{op}/{attempt}
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        *m.entry((parts[4].to_string(), parts[3].to_string()))
            .or_default() += 1;
    }
    m
}

#[tokio::test(start_paused = true)]
async fn a_planned_failover_survives_crashes_at_many_points() {
    let s = three_tier();

    // The uninterrupted run: what every interrupted one must match.
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let h = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let job = h
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    assert_eq!(drive(&h, job).await, JobStatus::Succeeded);
    let reference = keys_per_op(&fabric);
    let ops = reference.len();
    assert!(ops >= 7 * 4, "{reference:?}");
    h.shutdown().await;

    let mut crashes = 0;
    let mut reissued = 0;
    for k in [1usize, 2, 3, 5, 8, 12, 17, 23, 30, 38] {
        let store = mem();
        let fabric = sim(&s.inventory, &[]);
        let clock = Arc::new(TestClock::new(T0));
        let first = engine(store.clone(), fabric.clone(), clock.clone(), &s.inventory).await;
        let mut updates = first.subscribe_all();
        let job = first
            .submit(submission(&s, FailoverKind::Planned))
            .await
            .unwrap();
        // Let the job run for k recorded events (answering the manual step
        // on the way), then crash: only flushed data survives.
        let mut seen = 0;
        let mut crashed: Option<MemStore> = None;
        while let Some(u) = updates.next().await {
            match u.update {
                Update::Recorded(_) => seen += 1,
                Update::AwaitingOperator { step } => {
                    first
                        .answer_manual(job, step, true, "bob", None)
                        .await
                        .expect("answer");
                }
                Update::AttemptStarted { .. } => {}
            }
            if seen >= k {
                crashed = Some(store.crash_copy());
                break;
            }
            if u.status.is_some_and(JobStatus::is_terminal) {
                break;
            }
        }
        // The old engine goes on for a moment after the crash point: the
        // operations it had in flight finish at the fabric, but their
        // outcomes reach only the old store, not the crash copy. (On odd
        // points it stops at once: in-flight calls are dropped unfinished.)
        if k % 2 == 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        first.shutdown().await;
        drop(first);
        let Some(copy) = crashed else {
            // The job ended before k events: no later crash point.
            break;
        };
        crashes += 1;
        let before: u64 = fabric.executed().iter().map(|(_, c)| c).sum();

        let second = engine(Arc::new(copy), fabric.clone(), clock, &s.inventory).await;
        let end = drive(&second, job).await;
        let events = second.events(job).await.unwrap();
        assert_eq!(
            end,
            JobStatus::Succeeded,
            "crash after {k}: {}",
            history(&events)
        );
        // Each operation executed once; repeats were answered from the key
        // record.
        assert_eq!(keys_per_op(&fabric), reference, "crash after {k}");
        let after: u64 = fabric.executed().iter().map(|(_, c)| c).sum();
        reissued += fabric.duplicate_count();
        assert!(after >= before);
        assert!(failures(&events).is_empty(), "{}", history(&events));
        assert!(
            second.journal().leases().unwrap().is_empty(),
            "leases left after crash at {k}"
        );
        second.shutdown().await;
    }
    eprintln!("crash points: {crashes}; repeats answered from key records: {reissued}");
    assert!(crashes >= 5, "only {crashes} crash points reached");
    // Some crash caught an operation that had finished at the fabric but
    // whose outcome was not durable: the new engine re-issued its key.
    assert!(reissued > 0, "no crash point exercised a re-issued key");
}
