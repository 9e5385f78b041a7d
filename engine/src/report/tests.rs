//! The timeline of jobs driven through the pure core by a tiny
//! discrete-event driver: every step takes a chosen time, some fail, manual
//! steps are answered a little later. No runtime, no store, no clock.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::core::{Effect, JobSpec, TimerId};
use crate::plan::compile::Operation;
use crate::plan::{FailoverKind, load};

const T0: Millis = 1_700_000_000_000;

fn three_tier() -> Plan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/three-tier.yaml");
    load(&root, None).plan.expect("the shipped plan is valid")
}

/// How the driver answers each step.
struct Script<'a> {
    /// Duration of a step by key (default 1 s).
    slow: &'a [(&'a str, Millis)],
    /// Steps whose first attempt fails.
    fail_once: &'a [&'a str],
    /// Steps that always fail.
    fail: &'a [&'a str],
    /// Retry or skip a step that halted the job.
    skip_halted: bool,
    /// Manual steps nobody answers.
    unanswered: &'a [&'a str],
    /// An operator cancels the job as this step starts.
    cancel_at: Option<&'a str>,
    /// Output tails of successful steps, by key (plain output).
    tails: &'a [(&'a str, &'a str)],
    /// Steps that always fail with an error no retry can fix.
    fail_hard: &'a [&'a str],
}

/// Run a job through the core until nothing is left to do. Returns its
/// state and log.
fn drive(plan: &Plan, op: Operation, how: &Script) -> (JobContext, JobState, Vec<JobEvent>) {
    let ctx = JobContext::new(plan, op);
    let spec = JobSpec {
        id: JobId(3),
        plan_name: plan.name.clone(),
        plan_hash: "abc".into(),
        operation: op,
        requested_by: "alice".into(),
        vms: ctx.main.vms().iter().map(|s| s.to_string()).collect(),
        start_at: None,
        parent: None,
        left_alone: Vec::new(),
    };
    let mut events = vec![JobEvent::Submitted { spec, at: T0 }];
    let (mut st, _) = crate::core::submit(&ctx, &events[0]).expect("submit");
    // (due, seq, event): a priority queue by time.
    let mut queue: BTreeSet<(Millis, u64, String)> = BTreeSet::new();
    let mut pending: Vec<JobEvent> = Vec::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BTreeSet<(Millis, u64, String)>,
                    pending: &mut Vec<JobEvent>,
                    at: Millis,
                    ev: JobEvent| {
        seq += 1;
        queue.insert((at, seq, pending.len().to_string()));
        pending.push(ev);
    };
    push(&mut queue, &mut pending, T0, JobEvent::Started { at: T0 });
    let mut answered_failures = 0;
    while let Some(first) = queue.pop_first() {
        let (now, _, idx) = first;
        let ev = pending[idx.parse::<usize>().unwrap()].clone();
        let Ok(fx) = crate::core::apply(&ctx, &mut st, &ev) else {
            continue;
        };
        events.push(ev);
        for e in fx {
            match e {
                Effect::RunVmOp { step, attempt, .. } | Effect::RunScript { step, attempt, .. } => {
                    let key = ctx.node(step).unwrap().key.clone();
                    let took = how
                        .slow
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, d)| *d)
                        .unwrap_or(1_000);
                    let hard = how.fail_hard.contains(&key.as_str());
                    let fails = hard
                        || how.fail.contains(&key.as_str())
                        || (attempt == 1 && how.fail_once.contains(&key.as_str()));
                    let outcome = if fails {
                        Outcome::Failed {
                            error: format!("{key} broke"),
                            error_kind: None,
                            retryable: !hard,
                        }
                    } else {
                        Outcome::Succeeded
                    };
                    let tail = if fails {
                        Some(format!("line 1\n{key}: exit 3"))
                    } else {
                        how.tails
                            .iter()
                            .find(|(k, _)| *k == key)
                            .map(|(_, t)| t.to_string())
                    };
                    let warnings = if !fails && key == "web/vm/web-02/start-test-vm" {
                        vec!["attached to no network".to_string()]
                    } else {
                        Vec::new()
                    };
                    let recovery_point =
                        (!fails && key.ends_with("/failover")).then(|| crate::core::PointRecord {
                            at: T0 - 120_000,
                            kind: if op == planned() {
                                crate::core::PointKind::FinalSync
                            } else {
                                crate::core::PointKind::CrashConsistent
                            },
                        });
                    if how.cancel_at == Some(key.as_str()) {
                        push(
                            &mut queue,
                            &mut pending,
                            now + 1,
                            JobEvent::OperatorAction {
                                action: crate::core::OperatorAction::Cancel,
                                by: "dave".into(),
                                at: now + 1,
                            },
                        );
                    }
                    push(
                        &mut queue,
                        &mut pending,
                        now + took,
                        JobEvent::StepFinished {
                            step,
                            attempt,
                            outcome,
                            output_tail: tail,
                            values: Default::default(),
                            at: now + took,
                            warnings,
                            recovery_point,
                        },
                    );
                }
                Effect::AwaitOperator { step }
                    if how
                        .unanswered
                        .contains(&ctx.node(step).unwrap().key.as_str()) => {}
                Effect::AwaitOperator { step } => {
                    let at = now + 5_000;
                    let manual = matches!(
                        st.steps[step].state,
                        StepState::AwaitingOperator {
                            reason: crate::core::AwaitReason::Manual,
                            ..
                        }
                    );
                    let ev = if manual {
                        JobEvent::ManualAnswered {
                            step,
                            done: true,
                            by: "bob".into(),
                            note: Some("ok".into()),
                            at,
                        }
                    } else {
                        answered_failures += 1;
                        assert!(answered_failures < 10, "the driver loops");
                        let action = if how.skip_halted {
                            crate::core::OperatorAction::Skip { step }
                        } else {
                            crate::core::OperatorAction::Retry { step }
                        };
                        JobEvent::OperatorAction {
                            action,
                            by: "bob".into(),
                            at,
                        }
                    };
                    push(&mut queue, &mut pending, at, ev);
                }
                // The test deadline would end a test left open: the driver
                // closes tests itself, never by the deadline.
                Effect::ArmTimer { timer, due } if timer != TimerId::TestDeadline => {
                    push(
                        &mut queue,
                        &mut pending,
                        due,
                        JobEvent::TimerFired { timer, at: due },
                    );
                }
                _ => {}
            }
        }
        if st.status() == JobStatus::AwaitingCleanup && st.test.is_none() {
            push(
                &mut queue,
                &mut pending,
                now + 60_000,
                JobEvent::OperatorAction {
                    action: crate::core::OperatorAction::CompleteTest {
                        notes: "drill <ok> & fine".into(),
                    },
                    by: "carol".into(),
                    at: now + 60_000,
                },
            );
        }
    }
    (ctx, st, events)
}

fn timeline(op: Operation, how: &Script) -> Timeline {
    let plan = three_tier();
    let (ctx, st, events) = drive(&plan, op, how);
    Timeline::build(&plan, &st, &ctx, &events, T0 + 10_000_000)
}

const PLAIN: Script = Script {
    slow: &[],
    fail_once: &[],
    fail: &[],
    skip_halted: false,
    unanswered: &[],
    cancel_at: None,
    tails: &[],
    fail_hard: &[],
};

fn planned() -> Operation {
    Operation::failover(FailoverKind::Planned)
}

/// The critical path is a chain of the DAG: each step depends on the one
/// before it, it ends at the main step that finished last, and the step it
/// starts from depends on nothing that ran.
fn assert_is_a_chain(t: &Timeline, ctx_op: Operation) {
    let plan = three_tier();
    let ctx = JobContext::new(&plan, ctx_op);
    let ids: Vec<usize> = t
        .critical_path
        .iter()
        .map(|k| t.step(k).unwrap().id)
        .collect();
    assert!(!ids.is_empty());
    for w in ids.windows(2) {
        assert!(ctx.deps(w[1]).contains(&w[0]), "{:?}", t.critical_path);
    }
    let last_end = t.steps[..ctx.main_len()]
        .iter()
        .filter_map(|s| s.finished_at)
        .max();
    assert_eq!(
        t.step(t.critical_path.last().unwrap()).unwrap().finished_at,
        last_end
    );
    assert!(
        ctx.deps(ids[0])
            .iter()
            .all(|&d| t.steps[d].finished_at.is_none())
    );
}

#[test]
fn the_critical_path_follows_the_slow_vm() {
    let slow_web = Script {
        slow: &[("web/vm/web-01/start-replica", 90_000)],
        ..PLAIN
    };
    let t = timeline(planned(), &slow_web);
    assert_eq!(t.status, "succeeded");
    assert_is_a_chain(&t, planned());
    assert!(
        t.critical_path
            .iter()
            .any(|k| k == "web/vm/web-01/start-replica")
    );
    // (The path starts in the Shutdown phase, where it may pass through
    // any front end's shutdown: every step takes the same time there.)
    assert!(
        !t.critical_path
            .iter()
            .any(|k| k == "web/vm/web-02/start-replica"),
        "{:?}",
        t.critical_path
    );

    // Now the database is slow: the path goes through sql-02 instead.
    let slow_db = Script {
        slow: &[("database/vm/sql-02/failover", 90_000)],
        ..PLAIN
    };
    let t = timeline(planned(), &slow_db);
    assert_is_a_chain(&t, planned());
    assert!(
        t.critical_path
            .iter()
            .any(|k| k == "database/vm/sql-02/failover")
    );
    assert!(
        !t.critical_path
            .iter()
            .any(|k| k.starts_with("database/vm/sql-01/") && !k.ends_with("/shutdown-primary")),
        "{:?}",
        t.critical_path
    );
    // Only the path's steps are marked.
    let marked: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.critical)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(marked, t.critical_path);
}

#[test]
fn a_clean_planned_failover_is_a_success_with_its_rto() {
    let t = timeline(planned(), &PLAIN);
    assert_eq!(t.verdict, Verdict::Success, "{:?}", t.warnings);
    assert!(t.failures.is_empty());
    assert!(t.rto.applicable);
    // Required: every VM but the optional app-03.
    assert_eq!(
        t.rto.required_vms,
        ["app-01", "app-02", "sql-01", "sql-02", "web-01", "web-02"]
    );
    // The RTO ends when the last required VM's start-replica succeeded.
    let last_up = ["web-01", "web-02"]
        .iter()
        .map(|v| {
            t.step(&format!("web/vm/{v}/start-replica"))
                .unwrap()
                .finished_at
                .unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(t.rto.achieved_ms, Some(last_up - t.started_at.unwrap()));
    // The DNS update runs after the VMs: outside the RTO, inside the duration.
    assert!(t.duration_ms.unwrap() > t.rto.achieved_ms.unwrap());
    // Groups: every VM done, in order.
    let names: Vec<&str> = t.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["database", "application", "web"]);
    let app = &t.groups[1];
    assert_eq!((app.vms_total, app.vms_done, app.vms_failed), (3, 3, 0));
    // Failover phases: the groups' primaries went down in reverse order,
    // and they boot in dependency order.
    let at = |k: &str| t.step(k).unwrap();
    assert!(
        at("web/vm/web-01/shutdown-primary").finished_at
            <= at("application/vm/app-01/shutdown-primary").started_at
    );
    assert!(
        at("database/vm/sql-01/start-replica").finished_at
            <= at("application/vm/app-01/start-replica").started_at
    );
    assert!(t.groups[0].finished_at.unwrap() <= t.groups[1].finished_at.unwrap());
}

#[test]
fn a_retried_failure_gives_warnings_with_its_output_tail() {
    let how = Script {
        fail_once: &["web/vm/web-01/start-replica"],
        ..PLAIN
    };
    let t = timeline(planned(), &how);
    assert_eq!(t.status, "succeeded");
    assert_eq!(t.verdict, Verdict::Warnings);
    assert_eq!(t.failures.len(), 1);
    let f = &t.failures[0];
    assert_eq!(f.step, "web/vm/web-01/start-replica");
    assert_eq!(f.attempt, 1);
    assert!(f.recovered);
    assert!(f.output_tail.as_deref().unwrap().contains("exit 3"));
    let s = t.step("web/vm/web-01/start-replica").unwrap();
    assert_eq!(s.attempts, 2);
    assert_eq!(s.attempt_log.len(), 2);
    assert!(t.warnings.iter().any(|w| w.contains("attempt 2")));
}

#[test]
fn a_required_vm_that_never_runs_means_no_rto_and_errors() {
    let how = Script {
        fail: &["web/vm/web-02/start-replica"],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &how);
    assert_eq!(t.status, "completed with errors");
    assert_eq!(t.verdict, Verdict::Errors);
    assert_eq!(t.rto.achieved_ms, None);
    assert_eq!(t.rto.not_running, ["web-02"]);
    let web = &t.groups[2];
    assert_eq!((web.vms_done, web.vms_failed), (1, 1));
    assert!(t.failures.iter().all(|f| !f.recovered));
}

#[test]
fn an_optional_vm_failing_is_a_warning_and_not_in_the_rto() {
    let how = Script {
        fail: &["application/vm/app-03/start-replica"],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &how);
    assert_eq!(
        t.verdict,
        Verdict::Warnings,
        "{} {:?}",
        t.status,
        t.warnings
    );
    assert!(t.rto.achieved_ms.is_some());
    assert!(t.warnings.iter().any(|w| w.contains("optional")));
}

#[test]
fn a_test_failover_keeps_its_notes_and_its_warnings_and_ends_its_path_before_cleanup() {
    let test = Operation::failover(FailoverKind::Test);
    let t = timeline(test, &PLAIN);
    assert_eq!(t.status, "test completed");
    assert_eq!(t.failover, Some("test"));
    assert_eq!(t.test.as_ref().unwrap().notes, "drill <ok> & fine");
    // The no-network warning of web-02's test VM.
    assert_eq!(t.verdict, Verdict::Warnings);
    assert!(t.warnings.iter().any(|w| w.contains("no network")));
    // RTO: until the last test VM was started.
    assert!(t.rto.achieved_ms.is_some());
    assert!(t.critical_path.iter().all(|k| !k.starts_with("cleanup/")));
    assert_is_a_chain(&t, test);
}

#[test]
fn a_running_job_is_in_progress_with_elapsed_times() {
    let plan = three_tier();
    let (ctx, st, events) = drive(&plan, planned(), &PLAIN);
    // Cut the log in the middle and replay it.
    let cut = events.len() / 2;
    let st_half = crate::core::replay(&ctx, &events[..cut]).unwrap();
    assert_ne!(st_half.status(), st.status());
    let now = events[cut - 1].at() + 500;
    let t = Timeline::build(&plan, &st_half, &ctx, &events[..cut], now);
    assert_eq!(t.verdict, Verdict::InProgress);
    assert_eq!(t.finished_at, None);
    assert_eq!(t.duration_ms, Some(now - T0));
    assert!(
        t.steps
            .iter()
            .any(|s| s.state == "running" && s.duration_ms.is_some())
    );
}

#[test]
fn a_manual_step_nobody_answered_is_a_failure_of_the_record() {
    let how = Script {
        unanswered: &["application/post/verify-health"],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &how);
    let step = t.step("application/post/verify-health").unwrap();
    assert_eq!(step.state, "timed_out", "{:?}", step.detail);
    assert_eq!(t.verdict, Verdict::Errors, "{}", t.status);
    let f = t
        .failures
        .iter()
        .find(|f| f.step == "application/post/verify-health")
        .expect("listed as a failure");
    assert!(f.error.contains("timed out"));
    assert!(!f.recovered);
}

#[test]
fn a_test_where_a_required_vm_never_started_is_errors_whatever_its_status() {
    let how = Script {
        fail: &["database/vm/sql-01/start-test-vm"],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Test), &how);
    // The core closes the test normally; the record still has an error.
    assert_eq!(t.status, "test completed");
    assert_eq!(t.verdict, Verdict::Errors, "{:?}", t.errors);
    assert!(
        t.errors
            .iter()
            .any(|e| e.contains("sql-01/start-test-vm failed"))
    );
    assert!(t.errors.iter().any(|e| e.contains("not running: sql-01")));
    assert_eq!((t.counts.failed_steps, t.counts.failed_required), (1, 1));
    assert_eq!((t.counts.vms_recovered, t.counts.vms_required), (5, 6));
}

#[test]
fn a_skipped_required_vm_is_an_error_the_operator_accepted() {
    let how = Script {
        fail: &["web/vm/web-01/start-replica"],
        skip_halted: true,
        ..PLAIN
    };
    let t = timeline(planned(), &how);
    assert_eq!(t.verdict, Verdict::Errors, "{:?}", t.errors);
    assert!(
        t.errors
            .iter()
            .any(|e| e.contains("skipped by bob") && e.contains("start-replica broke")),
        "{:?}",
        t.errors
    );
    let f = &t.failures[0];
    assert!(f.skipped && !f.recovered, "{f:?}");
    assert_eq!(t.counts.skipped_steps, 1);
    assert_eq!(t.counts.failed_required, 1);
    // 6 required VMs (app-03 is optional); web-01 never started.
    assert_eq!((t.counts.vms_recovered, t.counts.vms_required), (5, 6));
    let skip = t
        .operator_actions
        .iter()
        .find(|a| a.action == "skip")
        .unwrap();
    assert_eq!(skip.step.as_deref(), Some("web/vm/web-01/start-replica"));
    assert_eq!(skip.by, "bob");
}

#[test]
fn a_cancelled_test_stays_cancelled_after_its_cleanup_and_its_clock_stops() {
    let how = Script {
        cancel_at: Some("application/vm/app-01/create-test-vm"),
        ..PLAIN
    };
    let test = Operation::failover(FailoverKind::Test);
    let plan = three_tier();
    let (ctx, st, events) = drive(&plan, test, &how);
    assert!(st.status().is_terminal(), "{}", st.status());
    let t = Timeline::build(&plan, &st, &ctx, &events, T0 + 10_000_000);
    assert_eq!(t.verdict, Verdict::Cancelled, "{} {:?}", t.status, t.errors);
    assert!(t.cancelled);
    // Later readings show the same durations: nothing grows after the end.
    let later = Timeline::build(&plan, &st, &ctx, &events, T0 + 90_000_000);
    let d = |t: &Timeline| {
        (
            t.duration_ms,
            t.groups.iter().map(|g| g.duration_ms).collect::<Vec<_>>(),
            t.groups
                .iter()
                .flat_map(|g| g.vms.iter().map(|v| (v.state, v.duration_ms)))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(d(&t), d(&later));
    let web = t.groups.iter().find(|g| g.name == "web").unwrap();
    assert!(web.vms.is_empty() || web.vms.iter().all(|v| v.state != "running"));
    let cancel = t
        .operator_actions
        .iter()
        .find(|a| a.action == "cancel")
        .unwrap();
    assert_eq!(cancel.by, "dave");
    assert!(
        t.operator_actions
            .iter()
            .any(|a| a.action == "complete-test")
    );
}

#[test]
fn a_warning_line_in_a_script_output_is_only_output() {
    let how = Script {
        tails: &[("web/post/update-dns", "warning: this is just text")],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &how);
    assert_eq!(t.verdict, Verdict::Success, "{:?}", t.warnings);
    // A VM operation's record written before warnings were typed: drplan
    // appended them to its one-line summary, and they still count.
    let how = Script {
        tails: &[(
            "web/vm/web-01/start-replica",
            "started web-01\nwarning: attached to no network",
        )],
        ..PLAIN
    };
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &how);
    assert_eq!(t.verdict, Verdict::Warnings);
    assert_eq!(
        t.warnings,
        ["web/vm/web-01/start-replica: attached to no network"]
    );
}

#[test]
fn recovery_points_give_the_data_lost() {
    let t = timeline(Operation::failover(FailoverKind::Unplanned), &PLAIN);
    assert_eq!(t.recovery_points.len(), 7, "{:?}", t.recovery_points);
    assert!(
        t.recovery_points
            .iter()
            .all(|p| p.data_loss_ms == 120_000 && p.kind == PointKind::CrashConsistent)
    );
    assert_eq!(t.achieved_rpo_ms, Some(120_000));
    let t = timeline(planned(), &PLAIN);
    assert!(t.recovery_points.iter().all(|p| p.data_loss_ms == 0));
    assert_eq!(t.achieved_rpo_ms, Some(0));
}

/// Records written before warnings, recovery points and error kinds were
/// typed still read: no warnings, no point, a failure without a kind that
/// counts as retryable (how it was treated when it was recorded).
#[test]
fn step_records_of_older_drplan_still_read() {
    let old = r#"{"type":"step_finished","step":4,"attempt":1,
        "outcome":{"kind":"failed","error":"start-replica of `web-01` failed"},
        "output_tail":null,"at":1700000000000}"#;
    let ev: JobEvent = serde_json::from_str(old).expect("an old record reads");
    let JobEvent::StepFinished {
        outcome,
        warnings,
        recovery_point,
        values,
        ..
    } = &ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        outcome,
        &Outcome::Failed {
            error: "start-replica of `web-01` failed".into(),
            error_kind: None,
            retryable: true,
        }
    );
    assert!(warnings.is_empty() && values.is_empty() && recovery_point.is_none());
    // What this version writes for the same record: nothing new appears.
    let again = serde_json::to_value(&ev).unwrap();
    assert!(again.get("warnings").is_none() && again.get("recovery_point").is_none());
    assert!(again["outcome"].get("retryable").is_none(), "{again}");
    // A new record says what is new.
    let typed = Outcome::Failed {
        error: "x".into(),
        error_kind: Some(ErrorKind::Injected),
        retryable: false,
    };
    let v = serde_json::to_value(&typed).unwrap();
    assert_eq!(v["error_kind"], "injected");
    assert_eq!(v["retryable"], false);
    assert_eq!(serde_json::from_value::<Outcome>(v).unwrap(), typed);
}

/// A script's retry policy applies to a retryable failure only.
#[test]
fn a_failure_no_retry_can_fix_is_not_retried() {
    let unplanned = Operation::failover(FailoverKind::Unplanned);
    // update-dns: `retries: 2` in the shipped plan.
    let how = Script {
        fail: &["web/post/update-dns"],
        ..PLAIN
    };
    let t = timeline(unplanned, &how);
    assert_eq!(t.step("web/post/update-dns").unwrap().attempts, 3);
    let how = Script {
        fail_hard: &["web/post/update-dns"],
        ..PLAIN
    };
    let t = timeline(unplanned, &how);
    let s = t.step("web/post/update-dns").unwrap();
    assert_eq!((s.attempts, s.state), (1, "failed"));
    assert!(!t.failures[0].retryable);
    assert_eq!(t.verdict, Verdict::Errors);
}

/// The verdict without the plan agrees with the timeline's.
#[test]
fn the_verdict_alone_agrees_with_the_timeline() {
    let plan = three_tier();
    for (op, how) in [
        (planned(), PLAIN),
        (
            Operation::failover(FailoverKind::Test),
            Script {
                fail: &["database/vm/sql-01/start-test-vm"],
                ..PLAIN
            },
        ),
        (
            planned(),
            Script {
                fail: &["web/vm/web-01/start-replica"],
                skip_halted: true,
                ..PLAIN
            },
        ),
    ] {
        let (ctx, st, events) = drive(&plan, op, &how);
        let t = Timeline::build(&plan, &st, &ctx, &events, T0 + 10_000_000);
        let (v, c) = Timeline::verdict(&st, &ctx, &events);
        assert_eq!(v, t.verdict);
        assert_eq!(
            (c.vms_recovered, c.vms_required, c.failed_steps),
            (
                t.counts.vms_recovered,
                t.counts.vms_required,
                t.counts.failed_steps
            )
        );
    }
}
