//! One example per rule of the job machine, the item machine and the
//! persisted formats. The property tests cover the combinations.

mod core_support;

use std::time::Duration;

use core_support::*;
use drplan_engine::core::item::{self, ItemEvent, ItemState};
use drplan_engine::core::*;
use drplan_engine::plan::compile::{NodeKind, Operation, RecoveryPoint, VmOp};
use drplan_engine::plan::model::{CommitPolicy, Direction, FailoverKind, OnTimeout};

fn finish(job: &mut Job, step: usize, outcome: Outcome) -> Result<Vec<Effect>, Rejected> {
    let attempt = job.state.steps[step].state.attempt();
    let at = job.tick(1_000);
    job.send(JobEvent::StepFinished {
        step,
        attempt,
        outcome,
        output_tail: None,
        values: Default::default(),
        at,
        warnings: Vec::new(),
        recovery_point: None,
    })
}

fn operator(job: &mut Job, action: OperatorAction) -> Result<Vec<Effect>, Rejected> {
    let at = job.tick(1_000);
    job.send(JobEvent::OperatorAction {
        action,
        by: "bob".into(),
        at,
    })
}

fn fail() -> Outcome {
    Outcome::Failed {
        error: "host unreachable".into(),
        error_kind: None,
        retryable: true,
    }
}

fn step_id(job: &Job, key: &str) -> usize {
    (0..job.ctx.len())
        .find(|&s| job.ctx.node(s).unwrap().key == key)
        .unwrap_or_else(|| panic!("no step {key}"))
}

fn two_vms() -> drplan_engine::plan::model::Plan {
    plan(
        vec![group(
            "web",
            vec![],
            &[("a", false), ("b", false)],
            vec![],
            vec![script("dns", 0)],
        )],
        vec![script("notify", 0)],
    )
}

/// A started planned failover of [`two_vms`], and the first operations
/// (shutdown of the primary) of VMs a and b.
fn started_planned_two_vms() -> (Job, usize, usize) {
    let mut job = Job::submit(&two_vms(), planned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    let a0 = step_id(&job, "web/vm/a/shutdown-primary");
    let b0 = step_id(&job, "web/vm/b/shutdown-primary");
    (job, a0, b0)
}

#[test]
fn planned_failover_halts_on_the_first_required_failure_until_the_operator_decides() {
    let (mut job, a0, b0) = started_planned_two_vms();
    let fx = finish(&mut job, a0, fail()).unwrap();
    assert_eq!(fx, vec![Effect::AwaitOperator { step: a0 }]);
    assert_eq!(job.state.status(), JobStatus::WaitingForOperator);
    // b's shutdown finishes, but nothing new starts while halted.
    let fx = finish(&mut job, b0, Outcome::Succeeded).unwrap();
    assert!(fx.is_empty(), "{fx:?}");
    // Retry: a new attempt under a new key; the halt lifts. b's final sync
    // still waits: nothing fails over before every primary is down.
    let fx = operator(&mut job, OperatorAction::Retry { step: a0 }).unwrap();
    let keys: Vec<String> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::RunVmOp { key, .. } => Some(key.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec!["7/web/vm/a/shutdown-primary/2".to_string()]);
    // Fail again and skip: the step counts as done, the job ends with errors.
    finish(&mut job, a0, fail()).unwrap();
    operator(&mut job, OperatorAction::Skip { step: a0 }).unwrap();
    assert_eq!(
        job.state.steps[a0].state,
        StepState::Skipped {
            reason: SkipReason::Operator { by: "bob".into() }
        }
    );
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::CompletedWithErrors);
    assert_eq!(job.state.summary(&job.ctx).errors, 1);
}

/// The core keeps a count of the steps waiting for an operator instead of
/// scanning the active ones at every event. A state decoded from a snapshot
/// has no count: it must still report the halt, keep holding work back, and
/// count right once the core acts on it again.
#[test]
fn a_halt_survives_a_snapshot_round_trip() {
    let (mut job, a0, b0) = started_planned_two_vms();
    finish(&mut job, a0, fail()).unwrap();
    let snap = serde_json::to_string(&job.state).unwrap();
    job.state = serde_json::from_str::<JobState>(&snap).unwrap();
    assert_eq!(job.state.status(), JobStatus::WaitingForOperator);
    // Still halted: b's shutdown finishing starts nothing.
    let fx = finish(&mut job, b0, Outcome::Succeeded).unwrap();
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(job.state.status(), JobStatus::WaitingForOperator);
    // Retrying lifts the halt (the count went back to zero, not below):
    // the new attempt starts (b's sync waits for it, every primary down).
    let fx = operator(&mut job, OperatorAction::Retry { step: a0 }).unwrap();
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(job.state.status(), JobStatus::InProgress);
    finish(&mut job, a0, fail()).unwrap();
    assert_eq!(job.state.status(), JobStatus::WaitingForOperator);
}

#[test]
fn unplanned_failover_records_failures_skips_the_vm_chain_and_goes_on() {
    let mut job = Job::submit(&two_vms(), unplanned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    let a_fo = step_id(&job, "web/vm/a/failover");
    let a_start = step_id(&job, "web/vm/a/start-replica");
    let a0 = step_id(&job, "web/vm/a/shutdown-primary");
    finish(&mut job, a0, Outcome::Succeeded).unwrap();
    let fx = finish(&mut job, a_fo, Outcome::TimedOut).unwrap();
    assert_eq!(
        job.state.steps[a_start].state,
        StepState::Skipped {
            reason: SkipReason::ChainFailed { step: a_fo }
        }
    );
    assert!(fx.contains(&Effect::Item {
        vm: "a".into(),
        event: ItemEvent::FailoverFailed
    }));
    assert_eq!(job.state.status(), JobStatus::InProgress);
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::CompletedWithErrors);
    let s = job.state.summary(&job.ctx);
    assert_eq!((s.errors, s.warnings, s.failed, s.skipped), (1, 0, 1, 1));
}

#[test]
fn optional_vm_failures_are_warnings_not_errors() {
    let p = plan(
        vec![group(
            "g",
            vec![],
            &[("a", false), ("opt", true)],
            vec![],
            vec![],
        )],
        vec![],
    );
    for op in [planned(), unplanned()] {
        let mut job = Job::submit(&p, op);
        job.send(JobEvent::Started { at: T0 }).unwrap();
        let first = step_id(&job, "g/vm/opt/shutdown-primary");
        finish(&mut job, first, fail()).unwrap();
        assert_eq!(
            job.state.status(),
            JobStatus::InProgress,
            "{op}: optional never halts"
        );
        job.finish_all_ok();
        assert_eq!(job.state.status(), JobStatus::Succeeded, "{op}");
        assert_eq!(job.state.summary(&job.ctx).warnings, 1);
    }
}

#[test]
fn everything_fails_means_failed() {
    let p = plan(
        vec![group("g", vec![], &[("a", false)], vec![], vec![])],
        vec![],
    );
    let mut job = Job::submit(&p, unplanned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    // The best-effort shutdown and the failover run at once; both fail
    // (and so the start never runs).
    finish(&mut job, 0, fail()).unwrap();
    let failover = step_id(&job, "g/vm/a/failover");
    finish(&mut job, failover, fail()).unwrap();
    assert_eq!(job.state.status(), JobStatus::Failed);
}

#[test]
fn script_retries_wait_for_the_retry_delay_then_run_a_new_attempt() {
    let p = plan(
        vec![group("g", vec![], &[], vec![script("s", 1)], vec![])],
        vec![],
    );
    let mut job = Job::submit(&p, unplanned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    let fx = finish(&mut job, 0, fail()).unwrap();
    let due = job.now + 10_000;
    let timer = TimerId::Retry {
        step: 0,
        attempt: 1,
    };
    assert_eq!(fx, vec![Effect::ArmTimer { timer, due }]);
    assert_eq!(
        job.send(JobEvent::TimerFired { timer, at: due - 1 }),
        Err(Rejected::TimerEarly {
            job: drplan_engine::store::JobId(7),
            timer,
            due,
            at: due - 1
        })
    );
    let fx = job.send(JobEvent::TimerFired { timer, at: due }).unwrap();
    assert!(
        matches!(&fx[..], [Effect::RunScript { attempt: 2, key, .. }] if key.to_string() == "7/g/pre/s/2")
    );
    // Out of attempts: the failure is recorded.
    finish(&mut job, 0, Outcome::TimedOut).unwrap();
    assert_eq!(job.state.steps[0].state, StepState::TimedOut { attempt: 2 });
    assert_eq!(job.state.status(), JobStatus::Failed);
}

#[test]
fn manual_steps_wait_for_answers_and_their_timeouts() {
    let hour = Some(Duration::from_secs(3600));
    let p = plan(
        vec![group(
            "g",
            vec![],
            &[],
            vec![
                manual("check", hour, OnTimeout::Continue),
                manual("sign", hour, OnTimeout::Fail),
                manual("ask", None, OnTimeout::Fail),
            ],
            vec![],
        )],
        vec![],
    );
    let mut job = Job::submit(&p, planned());
    let fx = job.send(JobEvent::Started { at: T0 }).unwrap();
    let due = T0 + 3_600_000;
    assert_eq!(
        fx,
        vec![
            Effect::AwaitOperator { step: 0 },
            Effect::ArmTimer {
                timer: TimerId::ManualTimeout { step: 0 },
                due
            }
        ]
    );
    assert_eq!(job.state.status(), JobStatus::WaitingForOperator);
    // continue: skipped on timeout.
    job.send(JobEvent::TimerFired {
        timer: TimerId::ManualTimeout { step: 0 },
        at: due,
    })
    .unwrap();
    assert_eq!(
        job.state.steps[0].state,
        StepState::Skipped {
            reason: SkipReason::ManualTimedOut
        }
    );
    // fail: timed out, and a planned failover halts on it.
    job.send(JobEvent::TimerFired {
        timer: TimerId::ManualTimeout { step: 1 },
        at: due + 3_600_000,
    })
    .unwrap();
    assert!(matches!(
        job.state.steps[1].state,
        StepState::AwaitingOperator {
            reason: AwaitReason::Failed {
                failure: Failure::TimedOut
            },
            ..
        }
    ));
    // Answering a step that is not waiting for an answer is refused.
    let r = job.send(JobEvent::ManualAnswered {
        step: 1,
        done: true,
        by: "x".into(),
        note: None,
        at: due + 3_600_001,
    });
    assert!(
        matches!(r, Err(Rejected::NotAwaitingAnswer { .. })),
        "{r:?}"
    );
    operator(&mut job, OperatorAction::Retry { step: 1 }).unwrap();
    let at = job.tick(1);
    job.send(JobEvent::ManualAnswered {
        step: 1,
        done: true,
        by: "carol".into(),
        note: Some("signed".into()),
        at,
    })
    .unwrap();
    assert_eq!(
        job.state.steps[1].state,
        StepState::Succeeded { attempt: 2 }
    );
    assert_eq!(job.state.answers[&1].by, "carol");
    // not done: a failure.
    let at = job.tick(1);
    job.send(JobEvent::ManualAnswered {
        step: 2,
        done: false,
        by: "dave".into(),
        note: Some("DNS is down".into()),
        at,
    })
    .unwrap();
    assert!(matches!(
        &job.state.steps[2].state,
        StepState::AwaitingOperator { reason: AwaitReason::Failed { failure: Failure::Error { error } }, .. }
            if error.contains("DNS is down")
    ));
}

#[test]
fn wait_steps_are_timers() {
    let p = plan(
        vec![group("g", vec![], &[], vec![wait("settle", 30)], vec![])],
        vec![],
    );
    let mut job = Job::submit(&p, unplanned());
    let fx = job.send(JobEvent::Started { at: T0 }).unwrap();
    let timer = TimerId::Wait { step: 0 };
    assert_eq!(
        fx,
        vec![Effect::ArmTimer {
            timer,
            due: T0 + 30_000
        }]
    );
    assert!(
        resume_effects(&job.ctx, &job.state).is_empty(),
        "a wait needs no re-issue"
    );
    job.send(JobEvent::TimerFired {
        timer,
        at: T0 + 30_000,
    })
    .unwrap();
    assert_eq!(job.state.status(), JobStatus::Succeeded);
}

#[test]
fn test_failover_is_forcibly_ended_exactly_at_its_deadline() {
    let mut job = Job::submit(&two_vms(), test_op());
    let fx = job.send(JobEvent::Started { at: T0 }).unwrap();
    let due = T0 + 3_600_000;
    assert!(fx.contains(&Effect::ArmTimer {
        timer: TimerId::TestDeadline,
        due
    }));
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::AwaitingCleanup);
    assert!(
        job.effects
            .iter()
            .all(|e| !matches!(e, Effect::ReleaseLeases)),
        "test VMs exist: leases kept"
    );
    let early = job.send(JobEvent::TimerFired {
        timer: TimerId::TestDeadline,
        at: due - 1,
    });
    assert!(matches!(early, Err(Rejected::TimerEarly { .. })));
    let fx = job
        .send(JobEvent::TimerFired {
            timer: TimerId::TestDeadline,
            at: due,
        })
        .unwrap();
    assert_eq!(job.state.status(), JobStatus::CleaningUp);
    let ops: Vec<&VmOp> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::RunVmOp { op, .. } => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(ops, vec![&VmOp::DeleteTestVm, &VmOp::DeleteTestVm]);
    let closure = job.state.test.clone().unwrap();
    assert!(closure.forced);
    assert_eq!(
        closure.notes,
        "forcibly ended: the test was open longer than 1h"
    );
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::TestForciblyEnded);
    assert!(job.state.timers.is_empty());
}

#[test]
fn completing_a_test_cancels_running_steps_then_cleans_up_with_notes() {
    let mut job = Job::submit(&two_vms(), test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    let fx = operator(
        &mut job,
        OperatorAction::CompleteTest {
            notes: "app came up".into(),
        },
    )
    .unwrap();
    assert_eq!(job.state.status(), JobStatus::Cancelling);
    assert_eq!(
        fx.iter()
            .filter(|e| matches!(e, Effect::CancelStep { .. }))
            .count(),
        2
    );
    let a = step_id(&job, "web/vm/a/create-test-vm");
    let b = step_id(&job, "web/vm/b/create-test-vm");
    finish(&mut job, a, Outcome::Cancelled).unwrap();
    finish(&mut job, b, Outcome::Succeeded).unwrap();
    assert_eq!(job.state.status(), JobStatus::CleaningUp);
    // The test VM delete fails: cleanup is incomplete until retried.
    let del_a = step_id(&job, "web/vm/a/delete-test-vm");
    finish(&mut job, del_a, fail()).unwrap();
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::CleanupIncomplete);
    operator(&mut job, OperatorAction::Retry { step: del_a }).unwrap();
    assert_eq!(job.state.status(), JobStatus::CleaningUp);
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::TestCompleted);
    assert_eq!(job.state.test.as_ref().unwrap().notes, "app came up");
}

#[test]
fn cancelling_a_test_keeps_it_open_for_cleanup() {
    let mut job = Job::submit(&two_vms(), test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    operator(&mut job, OperatorAction::Cancel).unwrap();
    for (s, _) in job.running() {
        finish(&mut job, s, Outcome::Cancelled).unwrap();
    }
    assert_eq!(job.state.status(), JobStatus::AwaitingCleanup);
    assert!(job.state.timers.contains_key(&TimerId::TestDeadline));
    let r = operator(&mut job, OperatorAction::Cancel);
    assert!(matches!(r, Err(Rejected::CannotCancel { .. })));
}

#[test]
fn a_test_vm_never_created_needs_no_delete() {
    let mut p = plan(
        vec![
            group("a", vec![], &[("x", false)], vec![], vec![]),
            group("b", vec![0], &[("y", false)], vec![], vec![]),
        ],
        vec![],
    );
    // A job stored before failover phases: its second group's test VM is
    // created only after the first group's. (With phases every test VM is
    // created at once, so only such a job can end a test before creating
    // one.)
    p.layout = drplan_engine::plan::model::CompileLayout::Groups;
    let mut job = Job::submit(&p, test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    operator(&mut job, OperatorAction::CompleteTest { notes: "n".into() }).unwrap();
    finish(&mut job, 0, Outcome::Cancelled).unwrap();
    let del_y = step_id(&job, "b/vm/y/delete-test-vm");
    assert_eq!(
        job.state.steps[del_y].state,
        StepState::Skipped {
            reason: SkipReason::NothingToClean
        }
    );
}

#[test]
fn cancel_of_a_job() {
    // Not started: cancelled at once.
    let mut job = Job::submit(&two_vms(), planned());
    let fx = operator(&mut job, OperatorAction::Cancel).unwrap();
    assert_eq!(
        fx,
        vec![
            Effect::ReleaseLeases,
            Effect::Finished {
                status: JobStatus::Cancelled
            }
        ]
    );
    // Running: cancels running work, ends when none runs.
    let mut job = Job::submit(&two_vms(), planned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    operator(&mut job, OperatorAction::Cancel).unwrap();
    assert_eq!(job.state.status(), JobStatus::Cancelling);
    assert_eq!(
        resume_effects(&job.ctx, &job.state).len(),
        4,
        "run + cancel, per running op"
    );
    finish(&mut job, 0, Outcome::Succeeded).unwrap();
    let b0 = step_id(&job, "web/vm/b/shutdown-primary");
    let fx = finish(&mut job, b0, Outcome::Cancelled).unwrap();
    assert_eq!(job.state.status(), JobStatus::Cancelled);
    assert!(fx.contains(&Effect::ReleaseLeases));
    // The items go back to where they were.
    assert!(fx.contains(&Effect::Item {
        vm: "a".into(),
        event: ItemEvent::Aborted
    }));
}

#[test]
fn scheduled_jobs_start_on_their_timer_or_on_start_now() {
    let p = two_vms();
    let ctx = JobContext::new(&p, planned());
    let mut s = spec(&ctx, planned());
    s.start_at = Some(T0 + 60_000);
    let (mut st, fx) = submit(&ctx, &JobEvent::Submitted { spec: s, at: T0 }).unwrap();
    assert_eq!(
        fx,
        vec![Effect::ArmTimer {
            timer: TimerId::ScheduledStart,
            due: T0 + 60_000
        }]
    );
    let r = apply(&ctx, &mut st, &JobEvent::Started { at: T0 + 1 });
    assert!(matches!(r, Err(Rejected::Scheduled { .. })));
    let mut early = st.clone();
    let fx = apply(
        &ctx,
        &mut early,
        &JobEvent::OperatorAction {
            action: OperatorAction::StartNow,
            by: "eve".into(),
            at: T0 + 2,
        },
    )
    .unwrap();
    assert_eq!(
        fx[0],
        Effect::DisarmTimer {
            timer: TimerId::ScheduledStart,
            due: T0 + 60_000
        }
    );
    assert_eq!(early.status(), JobStatus::InProgress);
    apply(
        &ctx,
        &mut st,
        &JobEvent::TimerFired {
            timer: TimerId::ScheduledStart,
            at: T0 + 60_000,
        },
    )
    .unwrap();
    assert_eq!(st.started_at, Some(T0 + 60_000));
}

#[test]
fn commit_policy_schedules_the_follow_up() {
    let mut p = two_vms();
    p.commit = CommitPolicy::AutoCommit {
        after: Duration::from_secs(600),
    };
    let mut job = Job::submit(&p, unplanned());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    job.finish_all_ok();
    let at = job.now;
    assert!(job.effects.contains(&Effect::ScheduleFollowUp {
        operation: Operation::Commit,
        due: at + 600_000
    }));
    p.commit = CommitPolicy::AutoRollback {
        after: Duration::from_secs(1),
    };
    let mut job = Job::submit(&p, test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    job.finish_all_ok();
    assert!(
        !job.effects
            .iter()
            .any(|e| matches!(e, Effect::ScheduleFollowUp { .. })),
        "tests are never committed"
    );
}

#[test]
fn every_illegal_event_is_rejected_with_a_readable_reason_and_no_change() {
    let mut job = Job::submit(&two_vms(), planned());
    let snapshot = job.state.clone();
    let ctx = &job.ctx;
    let at = T0 + 5;
    let by = || "x".to_string();
    let cases: Vec<(JobEvent, &str)> = vec![
        (
            JobEvent::Submitted {
                spec: job.state.spec.clone(),
                at,
            },
            "job 7 was already submitted",
        ),
        (
            JobEvent::StepFinished {
                step: 0,
                attempt: 1,
                outcome: Outcome::Succeeded,
                output_tail: None,
                values: Default::default(),
                at,
                warnings: Vec::new(),
                recovery_point: None,
            },
            "step `web/vm/a/shutdown-primary` attempt 1 is not running (the step is pending): a stale or duplicate outcome",
        ),
        (
            JobEvent::ManualAnswered {
                step: 0,
                done: true,
                by: by(),
                note: None,
                at,
            },
            "step `web/vm/a/shutdown-primary` is not waiting for an answer (it is pending)",
        ),
        (
            JobEvent::OperatorAction {
                action: OperatorAction::Retry { step: 0 },
                by: by(),
                at,
            },
            "step `web/vm/a/shutdown-primary` cannot be retried: it is pending, not a failure waiting for a decision",
        ),
        (
            JobEvent::OperatorAction {
                action: OperatorAction::Skip { step: 99 },
                by: by(),
                at,
            },
            "job 7 has no step 99",
        ),
        (
            JobEvent::OperatorAction {
                action: OperatorAction::CompleteTest { notes: "n".into() },
                by: by(),
                at,
            },
            "job 7 is a planned failover, not a test failover; only tests are completed",
        ),
        (
            JobEvent::TimerFired {
                timer: TimerId::TestDeadline,
                at,
            },
            "timer `test deadline` of job 7 is not armed",
        ),
    ];
    for (ev, msg) in cases {
        let r = apply(ctx, &mut job.state, &ev);
        assert_eq!(r.map_err(|e| e.to_string()), Err(msg.to_string()));
        assert_eq!(job.state, snapshot);
    }
    // After the end, everything is refused.
    operator(&mut job, OperatorAction::Cancel).unwrap();
    let r = operator(&mut job, OperatorAction::StartNow).unwrap_err();
    assert_eq!(
        r.to_string(),
        "job 7 is finished (cancelled); it takes no more events"
    );
    // A submission that does not match the compiled plan.
    let mut s = job.state.spec.clone();
    s.vms.push("ghost".into());
    let r = submit(&job.ctx, &JobEvent::Submitted { spec: s, at });
    assert!(matches!(r, Err(Rejected::VmsMismatch { .. })));
    let r = submit(&job.ctx, &JobEvent::Started { at });
    assert!(matches!(r, Err(Rejected::NotSubmitted)));
    assert!(matches!(replay(&job.ctx, &[]), Err(Rejected::NotSubmitted)));
}

#[test]
fn resume_reissues_running_work_with_the_same_keys_and_prompts() {
    let p = plan(
        vec![group(
            "g",
            vec![],
            &[("a", false)],
            vec![manual("ok", None, OnTimeout::Fail)],
            vec![],
        )],
        vec![],
    );
    let external = |fx: Vec<Effect>| -> Vec<Effect> {
        fx.into_iter().filter(|e| !e.is_bookkeeping()).collect()
    };
    let mut job = Job::submit(&p, planned());
    let fx = job.send(JobEvent::Started { at: T0 }).unwrap();
    // The primary's shutdown, re-issued under the same key.
    let fx = external(fx);
    assert!(
        matches!(fx.as_slice(), [Effect::RunVmOp { step: 0, .. }]),
        "{fx:?}"
    );
    assert_eq!(resume_effects(&job.ctx, &job.state), fx);
    // The VM failed over: its group boots, with its manual pre step first.
    for k in [
        "g/vm/a/shutdown-primary",
        "g/vm/a/sync-final-delta",
        "g/vm/a/failover",
    ] {
        let s = step_id(&job, k);
        finish(&mut job, s, Outcome::Succeeded).unwrap();
    }
    let ok = step_id(&job, "g/pre/ok");
    assert_eq!(
        resume_effects(&job.ctx, &job.state),
        vec![Effect::AwaitOperator { step: ok }]
    );
    let at = job.tick(1);
    let fx = job
        .send(JobEvent::ManualAnswered {
            step: ok,
            done: true,
            by: "x".into(),
            note: None,
            at,
        })
        .unwrap();
    assert_eq!(resume_effects(&job.ctx, &job.state), external(fx));
}

#[test]
fn item_lifecycle_round_trip_through_failback() {
    use ItemEvent as E;
    let path = [
        E::EnableStarted,
        E::EnableSucceeded,
        E::TestFailoverStarted,
        E::TestFailoverFinished,
        E::TestCleanedUp,
        E::FailoverStarted,
        E::FailoverFailed,
        E::FailoverStarted,
        E::FailoverSucceeded {
            recovery_point: RecoveryPoint::Latest,
        },
        E::RecoveryPointChanged {
            recovery_point: RecoveryPoint::At(5),
        },
        E::Committed,
        E::ReverseReplicationStarted,
        E::ReverseReplicationSucceeded,
        // Failback: a planned failover in reverse.
        E::FailoverStarted,
        E::FailoverSucceeded {
            recovery_point: RecoveryPoint::Latest,
        },
        E::Committed,
        E::ReverseReplicationStarted,
        E::Aborted,
        E::ReverseReplicationStarted,
        E::ReverseReplicationSucceeded,
        E::ProtectionDisabled,
    ];
    let mut s = ItemState::Unprotected;
    let mut seen = Vec::new();
    for e in path {
        s = item::transition(&s, &e).unwrap_or_else(|err| panic!("{err}"));
        seen.push(s);
    }
    assert_eq!(s, ItemState::Unprotected);
    assert!(seen.contains(&ItemState::Protected {
        direction: Direction::Reverse
    }));
    assert!(seen.contains(&ItemState::Committed {
        direction: Direction::Reverse
    }));
    // Rollback and cancel return to the stable state.
    let failed_over = ItemState::FailedOver {
        direction: Direction::Forward,
        recovery_point: RecoveryPoint::Latest,
    };
    assert_eq!(
        item::transition(&failed_over, &E::RolledBack).unwrap(),
        ItemState::Protected {
            direction: Direction::Forward
        }
    );
    let err = item::transition(&ItemState::Unprotected, &E::Committed).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a replicated item that is unprotected cannot take `Committed`"
    );
}

#[test]
fn check_operation_says_what_a_vm_must_be() {
    let protected = ItemState::Protected {
        direction: Direction::Forward,
    };
    let op = Operation::failover(FailoverKind::Planned);
    assert!(item::check_operation("db", &protected, &op).is_ok());
    assert!(item::check_operation("db", &protected, &test_op()).is_ok());
    let err = item::check_operation("db", &protected, &Operation::Commit).unwrap_err();
    assert_eq!(
        err.to_string(),
        "VM `db` is protected (forward); commit needs it to be failed over and not yet committed"
    );
    let reverse = Operation::Failover {
        kind: FailoverKind::Planned,
        direction: Direction::Reverse,
        recovery_point: RecoveryPoint::Latest,
        shutdown_primary: true,
    };
    assert!(
        item::check_operation("db", &protected, &reverse).is_err(),
        "failback needs reverse replication"
    );
    let failed = ItemState::FailoverFailed {
        direction: Direction::Forward,
    };
    assert!(
        item::check_operation("db", &failed, &op).is_ok(),
        "a failed failover may be retried"
    );
    assert!(item::check_operation("db", &failed, &Operation::Rollback).is_ok());
    assert!(item::check_operation("db", &failed, &test_op()).is_err());
    // A whole job: every VM that is not ready is reported.
    let items = [
        ("a", protected),
        ("b", failed),
        ("c", ItemState::Unprotected),
    ];
    let errs = item::check_job(&test_op(), items.iter().map(|(v, s)| (*v, s))).unwrap_err();
    let vms: Vec<&str> = errs.iter().map(|e| e.vm.as_str()).collect();
    assert_eq!(vms, vec!["b", "c"]);
    assert!(item::check_job(&op, [("a", &protected), ("b", &failed)]).is_ok());
}

#[test]
fn timer_ids_pack_into_u64_and_back() {
    let all = [
        TimerId::TestDeadline,
        TimerId::ScheduledStart,
        TimerId::Retry {
            step: 40_000,
            attempt: 3,
        },
        TimerId::ManualTimeout { step: 0 },
        TimerId::Wait {
            step: u32::MAX as usize,
        },
    ];
    for t in all {
        let v = t.to_u64().unwrap();
        assert_eq!(TimerId::from_u64(v), Some(t), "{t}");
    }
    assert_eq!(TimerId::from_u64(u64::MAX), None);
    assert_eq!(TimerId::from_u64(1), None, "stray bits are refused");
    assert_eq!(
        TimerId::Retry {
            step: 1,
            attempt: 1 << 24
        }
        .to_u64(),
        None
    );
}

#[test]
fn persisted_records_have_a_stable_shape() {
    let ev = JobEvent::StepFinished {
        step: 3,
        attempt: 1,
        outcome: Outcome::Failed {
            error: "e".into(),
            error_kind: None,
            retryable: true,
        },
        output_tail: Some("tail".into()),
        values: Default::default(),
        at: 9,
        warnings: Vec::new(),
        recovery_point: None,
    };
    let json = serde_json::to_string(&ev).unwrap();
    assert_eq!(
        json,
        r#"{"type":"step_finished","step":3,"attempt":1,"outcome":{"kind":"failed","error":"e"},"output_tail":"tail","at":9}"#
    );
    assert_eq!(serde_json::from_str::<JobEvent>(&json).unwrap(), ev);
    let ev = JobEvent::TimerFired {
        timer: TimerId::Retry {
            step: 2,
            attempt: 1,
        },
        at: 1,
    };
    let json = serde_json::to_string(&ev).unwrap();
    assert_eq!(
        json,
        r#"{"type":"timer_fired","timer":{"timer":"retry","step":2,"attempt":1},"at":1}"#
    );
    // A whole job state round-trips (snapshots).
    let mut job = Job::submit(&two_vms(), test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    finish(&mut job, 0, fail()).unwrap();
    let snap = serde_json::to_string(&job.state).unwrap();
    assert_eq!(serde_json::from_str::<JobState>(&snap).unwrap(), job.state);
}

#[test]
fn test_failovers_only_touch_test_vms() {
    let mut job = Job::submit(&two_vms(), test_op());
    job.send(JobEvent::Started { at: T0 }).unwrap();
    job.finish_all_ok();
    operator(&mut job, OperatorAction::CompleteTest { notes: "n".into() }).unwrap();
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::TestCompleted);
    for e in &job.effects {
        if let Effect::RunVmOp { op, .. } = e {
            assert!(!op.touches_production(), "{op:?}");
        }
    }
    for s in 0..job.ctx.len() {
        if let NodeKind::Vm { op, .. } = &job.ctx.node(s).unwrap().kind {
            assert!(!op.touches_production());
        }
    }
}

/// The way forward after a failover stopped midway: each operation acts on
/// the VMs it applies to and leaves the ones already where it takes them.
#[test]
fn a_plan_on_both_sides_splits_into_acting_and_left_alone_vms() {
    use RecoveryPoint::Latest;
    let fwd = Direction::Forward;
    let protected = ItemState::Protected { direction: fwd };
    let moved = ItemState::FailedOver {
        direction: fwd,
        recovery_point: Latest,
    };
    let failed = ItemState::FailoverFailed { direction: fwd };
    let committed = ItemState::Committed { direction: fwd };
    let items = [
        ("a", moved),
        ("b", protected),
        ("c", failed),
        ("d", committed),
    ];
    let split = |op: &Operation| {
        item::check_job(op, items.iter().map(|(v, s)| (*v, s))).map(|s| (s.acting, s.left_alone))
    };
    // Continue the failover: the ones not yet failed over.
    assert_eq!(
        split(&planned()).unwrap(),
        (
            vec!["b".to_string(), "c".into()],
            vec!["a".into(), "d".into()]
        )
    );
    assert_eq!(
        split(&unplanned()).unwrap(),
        (
            vec!["b".to_string(), "c".into()],
            vec!["a".into(), "d".into()]
        )
    );
    // Commit what failed over.
    assert_eq!(
        split(&Operation::Commit).unwrap(),
        (
            vec!["a".to_string()],
            vec!["b".into(), "c".into(), "d".into()]
        )
    );
    // A committed VM cannot be rolled back: named.
    let errs = split(&Operation::Rollback).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].vm, "d");
    // Without it, rollback takes every VM (a protected one may have had its
    // primary shut down by the cancelled failover).
    let sel = item::check_job(
        &Operation::Rollback,
        items[..3].iter().map(|(v, s)| (*v, s)),
    )
    .unwrap();
    assert_eq!(sel.acting, vec!["a", "b", "c"]);
    assert!(sel.left_alone.is_empty());
    // A test failover still needs every VM protected.
    let errs = split(&test_op()).unwrap_err();
    let vms: Vec<&str> = errs.iter().map(|e| e.vm.as_str()).collect();
    assert_eq!(vms, vec!["a", "c", "d"]);
    // Nothing left to do is refused, naming every VM and saying why.
    let all_moved = [("a", moved), ("b", moved)];
    let errs = item::check_job(&planned(), all_moved.iter().map(|(v, s)| (*v, s))).unwrap_err();
    assert_eq!(errs.len(), 2);
    assert!(
        errs[0]
            .to_string()
            .contains("every VM of the plan already failed over"),
        "{}",
        errs[0]
    );
    // Rolling back a VM that never failed over keeps it protected.
    assert_eq!(
        item::transition(&protected, &ItemEvent::RolledBack),
        Ok(protected)
    );
    // Reverse direction: a failback leaves alone what already failed back.
    let back = ItemState::FailedOver {
        direction: Direction::Reverse,
        recovery_point: Latest,
    };
    assert!(item::leaves_alone(
        &back,
        &Operation::Failover {
            kind: FailoverKind::Planned,
            direction: Direction::Reverse,
            recovery_point: Latest,
            shutdown_primary: true,
        }
    ));
    assert!(!item::leaves_alone(&back, &planned()));
}

fn three_groups() -> drplan_engine::plan::model::Plan {
    plan(
        vec![
            group(
                "db",
                vec![],
                &[("d1", false), ("d2", false)],
                vec![script("quiesce", 0)],
                vec![script("check-db", 0)],
            ),
            group(
                "app",
                vec![0],
                &[("a1", false), ("a2", false)],
                vec![],
                vec![script("check-app", 0)],
            ),
            group("notify", vec![1], &[], vec![], vec![script("mail", 0)]),
        ],
        vec![],
    )
}

#[test]
fn a_continued_failover_skips_the_vms_and_groups_it_leaves_alone() {
    let p = three_groups();
    let ctx = JobContext::new(&p, planned());
    let mut sp = spec(&ctx, planned());
    // d1, d2 (the whole db group) and a1 failed over in an earlier job.
    sp.vms = vec!["a2".into()];
    sp.left_alone = vec!["a1".into(), "d1".into(), "d2".into()];
    let ev = JobEvent::Submitted {
        spec: sp.clone(),
        at: T0,
    };
    let (state, effects) = submit(&ctx, &ev).expect("submit");
    let mut job = Job {
        ctx: JobContext::new(&p, planned()),
        state,
        log: vec![ev],
        effects,
        now: T0,
    };
    job.send(JobEvent::Started { at: T0 }).unwrap();
    let state_of = |job: &Job, key: &str| job.state.steps[step_id(job, key)].state.clone();
    let left = StepState::Skipped {
        reason: SkipReason::LeftAlone,
    };
    for key in [
        "db/pre/quiesce",
        "db/post/check-db",
        "db/vm/d1/failover",
        "app/vm/a1/shutdown-primary",
        "app/vm/a1/start-replica",
    ] {
        assert_eq!(state_of(&job, key), left, "{key}");
    }
    // The group with a VM still to move keeps its steps; a group without
    // VMs too; a2 starts at once (its group's dependency is done).
    assert_eq!(state_of(&job, "app/post/check-app"), StepState::Pending);
    assert_eq!(state_of(&job, "notify/post/mail"), StepState::Pending);
    assert!(matches!(
        state_of(&job, "app/vm/a2/shutdown-primary"),
        StepState::Running { .. }
    ));
    // Left alone is not an error: run a2 through, and the job succeeds.
    while let Some(&s) = job.state.active.iter().next() {
        finish(&mut job, s, Outcome::Succeeded).unwrap();
    }
    let st = &job.state;
    assert_eq!(st.status(), JobStatus::Succeeded);
    // The acting and left-alone VMs must be the plan's VMs, each once.
    for (vms, alone) in [
        (vec!["a2"], vec!["a1", "d1"]),
        (vec!["a1", "a2"], vec!["a1", "d1", "d2"]),
    ] {
        let mut bad = sp.clone();
        bad.vms = vms.into_iter().map(String::from).collect();
        bad.left_alone = alone.into_iter().map(String::from).collect();
        let r = submit(&ctx, &JobEvent::Submitted { spec: bad, at: T0 });
        assert!(matches!(r, Err(Rejected::VmsMismatch { .. })), "{r:?}");
    }
}
