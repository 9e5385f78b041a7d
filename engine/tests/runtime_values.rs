//! Values a script publishes (`key=value` lines in `$DRPLAN_OUTPUT`) are
//! part of the job's durable history (`JobEvent::StepFinished::values`), so
//! a later step sees them even when drplan restarted in between.

mod core_support;
mod runtime_support;

use std::time::Duration;

use drplan_engine::core::{JobEvent, JobStatus, Outcome};
use drplan_engine::plan::model::{Command, Step, StepAction};
use drplan_engine::runtime::TestClock;
use drplan_engine::store::mem::MemStore;
use runtime_support::*;
use std::sync::Arc;

fn shell(name: &str, command: &str) -> Step {
    let mut s = core_support::script(name, 0);
    if let StepAction::Script { command: c, .. } = &mut s.action {
        *c = Command::Shell(command.into());
    }
    s
}

/// The output tail recorded for the step named `key`.
async fn tail_of(
    engine: &drplan_engine::runtime::Engine,
    job: drplan_engine::store::JobId,
    key: &str,
) -> String {
    let step = engine.step_id(job, key).await.unwrap().expect(key);
    engine
        .events(job)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|e| match e {
            JobEvent::StepFinished {
                step: s,
                outcome: Outcome::Succeeded,
                output_tail,
                ..
            } if s == step => Some(output_tail.unwrap_or_default()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{key} did not succeed"))
}

#[tokio::test(start_paused = true)]
async fn a_value_published_before_a_restart_reaches_a_step_after_it() {
    let mut s = three_tier();
    // database/pre: publish, then wait for an operator (the restart comes
    // while the job waits there); application/pre: print what it sees.
    let db = &mut s.plan.groups[0];
    db.pre.push(shell(
        "publish",
        "echo greeting=hello-from-before >>\"$DRPLAN_OUTPUT\"",
    ));
    db.pre.push(core_support::manual(
        "gate",
        None,
        drplan_engine::plan::model::OnTimeout::Fail,
    ));
    s.plan.groups[1].pre.insert(
        0,
        shell("show", "echo \"seen=${DRPLAN_VALUE_greeting-unset}\""),
    );

    let store = mem();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let first = engine(store.clone(), fabric.clone(), clock.clone(), &s.inventory).await;
    let job = first
        .submit(submission(
            &s,
            drplan_engine::plan::model::FailoverKind::Planned,
        ))
        .await
        .unwrap();
    let st = wait(&first, job, |st| st != JobStatus::InProgress).await;
    assert_eq!(st, JobStatus::WaitingForOperator);
    let waiting = awaiting(&first, job).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].1, "database/pre/gate");
    // The value is in the durable history.
    let published = first.events(job).await.unwrap().into_iter().any(|e| {
        matches!(&e, JobEvent::StepFinished { values, .. }
            if values.get("greeting").map(String::as_str) == Some("hello-from-before"))
    });
    assert!(published, "the published value is not in the event log");

    // drplan stops; a new engine starts from what was flushed.
    let copy: MemStore = store.crash_copy();
    first.shutdown().await;
    drop(first);
    let second = engine(Arc::new(copy), fabric, clock, &s.inventory).await;
    loop {
        let st = wait(&second, job, |st| st != JobStatus::InProgress).await;
        if st.is_terminal() {
            assert_eq!(st, JobStatus::Succeeded);
            break;
        }
        for (step, key, failed) in awaiting(&second, job).await {
            assert!(!failed, "{key} failed");
            second
                .answer_manual(job, step, true, "bob", None)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = tail_of(&second, job, "application/pre/show").await;
    assert_eq!(seen, "seen=hello-from-before");
    // And the job's state carries them (what a re-issued script would see).
    let state = second.job(job).await.unwrap().unwrap();
    assert_eq!(state.values["greeting"], "hello-from-before");
    second.shutdown().await;
}

#[test]
fn step_finished_without_values_keeps_its_old_shape_and_old_records_decode() {
    let ev = JobEvent::StepFinished {
        step: 3,
        attempt: 1,
        outcome: Outcome::Succeeded,
        output_tail: None,
        values: Default::default(),
        at: 7,
        warnings: Vec::new(),
        recovery_point: None,
    };
    let json = serde_json::to_string(&ev).unwrap();
    assert!(!json.contains("values"), "{json}");
    // A record written before the field existed.
    let old: JobEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(old, ev);
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["values"] = serde_json::json!({"k": "v"});
    let with: JobEvent = serde_json::from_value(v).unwrap();
    let JobEvent::StepFinished { values, .. } = with else {
        panic!("{with:?}")
    };
    assert_eq!(values["k"], "v");
}
