//! A follow-up job (auto-commit) that cannot start when its timer fires,
//! because one of its VMs was taken meanwhile (issue #15 item 8).
//!
//! The failed start used to rebuild the job's cache with a blocking wait
//! for the group committer (`blocking_recv`) right on the timer loop's
//! task: on a runtime worker that panics (or stalls the worker), and the
//! timer loop died with it, so no timer of any job fired again. Here, on
//! tokio's paused clock, the failed start must leave the timer loop alive:
//! another job scheduled later still starts on time.

mod runtime_support;

use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::{JobStatus, TimerId};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::{CommitPolicy, FailoverKind};
use drplan_engine::runtime::{Clock, Submission, TestClock};
use drplan_engine::store::{Store, Write};
use runtime_support::*;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_follow_up_that_cannot_start_leaves_the_timer_loop_running() {
    let mut s = three_tier();
    s.plan.commit = CommitPolicy::AutoCommit { after: HOUR };
    let store = mem();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(store.clone(), fabric, clock.clone(), &s.inventory).await;

    let parent = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    answer_verify_health(&engine, parent).await;
    assert_eq!(
        wait(&engine, parent, JobStatus::is_terminal).await,
        JobStatus::Succeeded,
        "{}",
        history(&engine.events(parent).await.unwrap())
    );
    let jobs = engine.jobs().await.unwrap();
    let child = jobs
        .iter()
        .find(|m| m.parent == Some(parent))
        .expect("the auto-commit job was scheduled");
    assert_eq!(child.operation, Operation::Commit);
    let child_id = child.id;
    let st = engine.job(child_id).await.unwrap().unwrap();
    let due = *st
        .timers
        .get(&TimerId::ScheduledStart)
        .expect("the commit waits for its timer");

    // Meanwhile another job takes one of the commit's VMs (as one
    // submitted in the moment between the parent's release and the
    // follow-up's reservation would; the store only takes holders it
    // knows, so the finished parent stands in for it).
    let vm = st.spec.vms[0].clone();
    store
        .apply(&[Write::ReleaseLeases { job: child_id }])
        .unwrap();
    store
        .acquire_leases(parent, std::slice::from_ref(&vm))
        .unwrap();

    // A job on other VMs, scheduled an hour after the commit's timer.
    let diamond = drplan_engine::plan::load(&plans_dir().join("diamond.yaml"), None);
    let mut later = Submission::new(
        diamond.plan.expect("diamond plan"),
        diamond.plan_text.expect("diamond text"),
        Operation::failover(FailoverKind::Test),
        "carol",
    );
    let later_due = due + 3_600_000;
    later.start_at = Some(later_due);
    let later = engine.submit(later).await.unwrap();

    // The commit's timer fires and its start is refused (the VM is taken).
    tokio::time::sleep(Duration::from_millis(due - clock.now_ms()) + Duration::from_secs(60)).await;
    assert_eq!(
        engine.status(child_id).await.unwrap(),
        Some(JobStatus::NotStarted),
        "the commit started although `{vm}` was taken:\n{}",
        history(&engine.events(child_id).await.unwrap())
    );
    // The timer loop lives on: the later job starts on its timer, on time.
    let started = wait(&engine, later, |s| s != JobStatus::NotStarted).await;
    assert_ne!(started, JobStatus::NotStarted);
    let events = engine.events(later).await.unwrap();
    let first_after_submit = events.get(1).map(|e| e.at()).expect("the job started");
    assert!(
        first_after_submit >= later_due && first_after_submit < later_due + 60_000,
        "the scheduled job started at {first_after_submit}, due at {later_due}"
    );
    // The commit itself is intact and still scheduled: nothing of the
    // refused start was recorded.
    let st = engine.job(child_id).await.unwrap().unwrap();
    assert_eq!(st.status(), JobStatus::NotStarted);
    assert_eq!(engine.events(child_id).await.unwrap().len(), 1);
    engine.shutdown().await;
}
