//! The engine end to end on the shipped three-tier plan: a simulated fabric,
//! the plan's real scripts, operators answering through the API, paused
//! (virtual) time.

mod runtime_support;

use std::sync::Arc;

use drplan_engine::core::{JobEvent, JobStatus, OperatorAction};
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::TestClock;
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
