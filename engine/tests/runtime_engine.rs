//! The engine end to end on the shipped three-tier plan: a simulated fabric,
//! the plan's real scripts, operators answering through the API, paused
//! (virtual) time.

mod runtime_support;

use std::sync::Arc;

use drplan_engine::core::{JobEvent, JobStatus, OperatorAction};
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{Clock, TestClock};
use runtime_support::*;

#[tokio::test(start_paused = true)]
async fn test_failover_waits_for_the_operator_then_completes_without_residue() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;

    let job = engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .expect("submitted");
    let st = wait(&engine, job, |s| s == JobStatus::WaitingForOperator).await;
    assert_eq!(st, JobStatus::WaitingForOperator);
    let manual = engine
        .step_id(job, "application/post/verify-health")
        .await
        .unwrap()
        .expect("the manual step");
    engine
        .answer_manual(job, manual, true, "bob", Some("all ok".into()))
        .await
        .expect("answered");

    wait(&engine, job, |s| s == JobStatus::AwaitingCleanup).await;
    assert!(
        !fabric.residue().is_empty(),
        "an open test keeps its test VMs"
    );
    engine
        .complete_test(job, "RTO 9 minutes; DNS ok", "bob")
        .await
        .expect("complete");
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    let events = engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::TestCompleted, "{}", history(&events));
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
    assert!(failures(&events).is_empty(), "{}", history(&events));
    // The scripts really ran, and their output reached the history.
    let ctx = engine.context(job).await.unwrap();
    let dns = engine
        .step_id(job, "web/post/register-test-dns")
        .await
        .unwrap()
        .unwrap();
    let tail = events.iter().find_map(|e| match e {
        JobEvent::StepFinished {
            step, output_tail, ..
        } if *step == dns => output_tail.clone(),
        _ => None,
    });
    assert!(
        tail.as_deref().is_some_and(|t| !t.is_empty()),
        "script output tail of {}: {tail:?}",
        ctx.node(dns).unwrap().key
    );
    assert!(events.iter().any(|e| matches!(
        e,
        JobEvent::OperatorAction { action: OperatorAction::CompleteTest { notes }, by, .. }
            if notes == "RTO 9 minutes; DNS ok" && by == "bob"
    )));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn planned_failover_halts_at_a_failed_step_and_a_retry_finishes_it() {
    use drplan_engine::fabric::OpKind;
    let s = three_tier();
    let fabric = sim(&s.inventory, &["fail-once:start-replica:web-01"]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    answer_verify_health(&engine, job).await;

    // The planned policy halts the plan at the failure.
    let mut st = wait(&engine, job, |s| s != JobStatus::InProgress).await;
    while st == JobStatus::InProgress {
        st = wait(&engine, job, |s| s != JobStatus::InProgress).await;
    }
    assert_eq!(st, JobStatus::WaitingForOperator);
    let w = awaiting(&engine, job).await;
    assert_eq!(w.len(), 1, "{w:?}");
    let (step, key, failed) = w[0].clone();
    assert_eq!(key, "web/vm/web-01/start-replica");
    assert!(failed);
    let events = engine.events(job).await.unwrap();
    let f = failures(&events);
    assert_eq!(f.len(), 1, "{}", history(&events));
    assert_eq!(f[0].0, step);
    assert!(f[0].1.contains("injected fault"), "{}", f[0].1);
    // The smoke test after the web VMs has not run: the plan is halted.
    let smoke = engine
        .step_id(job, "web/post/smoke-test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        engine.job(job).await.unwrap().unwrap().steps[smoke].state,
        drplan_engine::core::StepState::Pending
    );

    engine.retry(job, step, "bob").await.expect("retry");
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    let events = engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::Succeeded, "{}", history(&events));
    // Attempt 2 ran under a new key; nothing else ran twice.
    assert_eq!(fabric.executions(OpKind::StartReplica, "web-01"), 2);
    assert_eq!(fabric.executions(OpKind::StartReplica, "web-02"), 1);
    assert_eq!(fabric.executions(OpKind::Failover, "web-01"), 1);
    assert_eq!(fabric.duplicate_count(), 0);
    assert!(events.iter().any(|e| matches!(
        e,
        JobEvent::OperatorAction { action: OperatorAction::Retry { step: s }, .. } if *s == step
    )));
}

#[tokio::test(start_paused = true)]
async fn unplanned_failover_with_the_primary_site_down_runs_to_the_end() {
    use drplan_engine::fabric::OpKind;
    let s = three_tier();
    // The primary site is gone; app-03's replica (an optional VM) and
    // web-02's (a required one) also fail to start: the plan must still run
    // to its end.
    let fabric = sim(
        &s.inventory,
        &[
            "site-down:primary-vmm",
            "fail:start-replica:app-03",
            "fail:start-replica:web-02",
        ],
    );
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Unplanned))
        .await
        .unwrap();
    answer_verify_health(&engine, job).await;
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    let events = engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::CompletedWithErrors, "{}", history(&events));
    // Every failed step of the final state has its failure in the history.
    let st = engine.job(job).await.unwrap().unwrap();
    let ctx = engine.context(job).await.unwrap();
    let f = failures(&events);
    let failed: Vec<usize> = (0..st.steps.len())
        .filter(|&i| st.steps[i].state.is_failure())
        .collect();
    assert!(!failed.is_empty());
    for step in &failed {
        assert!(
            f.iter().any(|(s, _)| s == step),
            "{} failed without a recorded failure",
            ctx.node(*step).unwrap().key
        );
    }
    assert!(
        f.iter().any(
            |(s, e)| ctx.node(*s).unwrap().key == "application/vm/app-03/start-replica"
                && e.contains("injected fault")
        ),
        "{f:?}"
    );
    // The unreachable primary was noted, not failed: the report says so.
    let sql = engine
        .step_id(job, "database/vm/sql-01/shutdown-primary")
        .await
        .unwrap()
        .unwrap();
    let tail = events.iter().find_map(|e| match e {
        JobEvent::StepFinished {
            step, output_tail, ..
        } if *step == sql => output_tail.clone(),
        _ => None,
    });
    assert!(tail.is_some(), "{}", history(&events));
    // The one-minute `settle` wait fired a minute after the manual answer:
    // not before, and not at the timer loop's next routine look.
    let answered = events
        .iter()
        .find_map(|e| match e {
            JobEvent::ManualAnswered { at, .. } => Some(*at),
            _ => None,
        })
        .unwrap();
    let fired = events
        .iter()
        .find_map(|e| match e {
            JobEvent::TimerFired { at, .. } => Some(*at),
            _ => None,
        })
        .unwrap();
    assert!(
        (answered + 60_000..answered + 61_000).contains(&fired),
        "settle fired {} ms after the answer",
        fired - answered
    );
    // The rest of the plan still ran, up to the smoke test after web-02.
    let smoke = engine
        .step_id(job, "web/post/smoke-test")
        .await
        .unwrap()
        .unwrap();
    assert!(st.steps[smoke].state.is_final(), "{:?}", st.steps[smoke]);
    assert_eq!(fabric.executions(OpKind::StartReplica, "web-01"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_test_left_open_is_forcibly_ended_at_its_deadline() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    answer_verify_health(&engine, job).await;
    wait(&engine, job, |s| s == JobStatus::AwaitingCleanup).await;
    let opened = clock.now_ms();
    assert!(!fabric.residue().is_empty());
    // Nobody completes the test: virtual time runs to the 7-day deadline.
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::TestForciblyEnded);
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
    let st = engine.job(job).await.unwrap().unwrap();
    let closure = st.test.expect("closure");
    assert!(closure.forced);
    let started = st.started_at.unwrap();
    let seven_days = 7 * 24 * 3600 * 1000;
    assert!(
        closure.at >= started + seven_days,
        "fired early: {} < {}",
        closure.at,
        started + seven_days
    );
    assert!(closure.at < opened + seven_days + 3_600_000, "fired late");
}

#[tokio::test(start_paused = true)]
async fn a_test_deadline_passed_during_downtime_fires_at_the_restart() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let store = mem();
    let first = engine(store.clone(), fabric.clone(), clock.clone(), &s.inventory).await;
    let job = first
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    answer_verify_health(&first, job).await;
    wait(&first, job, |s| s == JobStatus::AwaitingCleanup).await;
    first.shutdown().await;
    drop(first);

    // drplan stays down for fifteen days.
    clock.jump(std::time::Duration::from_secs(15 * 24 * 3600));
    let restarted_at = clock.now_ms();
    let second = engine(store, fabric.clone(), clock.clone(), &s.inventory).await;
    let end = wait(&second, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::TestForciblyEnded);
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
    let closure = second.job(job).await.unwrap().unwrap().test.unwrap();
    assert!(closure.forced);
    // Fired at once, not a further week later.
    assert!(closure.at >= restarted_at && closure.at < restarted_at + 60_000);
}

#[tokio::test(start_paused = true)]
async fn a_second_job_over_the_same_vms_is_refused_naming_the_first() {
    use drplan_engine::journal::JournalError;
    use drplan_engine::runtime::EngineError;
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric, clock, &s.inventory).await;
    let first = engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    let err = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .expect_err("VMs are leased by the first job");
    match &err {
        EngineError::Journal(JournalError::VmBusy { holder, .. }) => assert_eq!(*holder, first),
        other => panic!("not VmBusy: {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("job {first}")), "{msg}");
    assert!(msg.contains("test failover"), "{msg}");
    assert_eq!(engine.jobs().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_job_cancels_its_operation_in_flight() {
    use drplan_engine::core::{Outcome, StepState};
    use drplan_engine::runtime::Update;
    let s = three_tier();
    // sql-01's failover takes an hour: the cancel arrives while it runs.
    let fabric = sim(&s.inventory, &["slow:failover:sql-01:1h"]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let mut updates = engine.subscribe_all();
    let job = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    let slow = engine
        .step_id(job, "database/vm/sql-01/failover")
        .await
        .unwrap()
        .unwrap();
    loop {
        let u = updates.next().await.expect("updates");
        if matches!(u.update, Update::AttemptStarted { step, .. } if step == slow) {
            break;
        }
    }
    engine.cancel(job, "bob").await.expect("cancel");
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    let events = engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::Cancelled, "{}", history(&events));
    assert!(
        events.iter().any(|e| matches!(
            e,
            JobEvent::StepFinished { step, outcome: Outcome::Cancelled, .. } if *step == slow
        )),
        "{}",
        history(&events)
    );
    let st = engine.job(job).await.unwrap().unwrap();
    assert!(matches!(st.steps[slow].state, StepState::Cancelled { .. }));
    // The dropped call left the fabric as if it had never been made.
    assert!(
        !fabric
            .executed()
            .iter()
            .any(|(k, _)| k.contains("sql-01/failover")),
        "{:?}",
        fabric.executed()
    );
    // Cancelled long before the hour the operation would have taken.
    assert!(st.finished_at.unwrap() < T0 + 3_600_000);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_job_starts_on_its_timer_or_when_told() {
    use drplan_engine::runtime::Submission;
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;
    let at = T0 + 2 * 3_600_000;
    let job = engine
        .submit(Submission {
            start_at: Some(at),
            ..submission(&s, FailoverKind::Test)
        })
        .await
        .unwrap();
    assert_eq!(
        engine.status(job).await.unwrap(),
        Some(JobStatus::NotStarted)
    );
    wait(&engine, job, |s| s != JobStatus::NotStarted).await;
    let st = engine.job(job).await.unwrap().unwrap();
    let started = st.started_at.expect("started");
    assert!(
        (at..at + 1000).contains(&started),
        "started {} ms after its time",
        started as i64 - at as i64
    );

    // A second scheduled job, over other VMs, started by hand before its
    // time.
    let loaded = drplan_engine::plan::load(&plans_dir().join("diamond.yaml"), None);
    let plan = loaded.plan.expect("diamond plan");
    let far = clock.now_ms() + 24 * 3_600_000;
    let other = engine
        .submit(Submission {
            start_at: Some(far),
            ..Submission::new(
                plan,
                loaded.plan_text.unwrap(),
                drplan_engine::plan::compile::Operation::failover(FailoverKind::Test),
                "alice",
            )
        })
        .await
        .unwrap();
    engine.start_now(other, "bob").await.expect("start now");
    let st = engine.job(other).await.unwrap().unwrap();
    assert!(st.started_at.unwrap() < far);
    assert!(engine.start_now(other, "bob").await.is_err(), "twice");
}
