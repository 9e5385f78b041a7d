//! The verdict and the "VMs recovered" figure of a job's report, checked
//! against a reference written from the documented definition
//! (docs/operator.md, "Outcome") and against the simulated fabric's world.
//!
//! Each case generates a plan (groups of the shipped fabric's VMs, some
//! optional, manual and wait steps), a failover kind, injected faults
//! (`fail:` and `fail-once:` on the kind's operations) and a list of
//! operator decisions (retry, skip, answer done, answer failed, cancel,
//! clean up, leave it to the timeout), possibly a cancel while the job runs.
//! The job runs on the real runtime over the real sled store, in paused
//! virtual time, until it ends. Then:
//! - [`reference_verdict`], computed from the job's record and the world,
//!   must equal `Timeline::verdict`;
//! - `counts.vms_recovered` must equal the required VMs the world runs (at
//!   the end of a failover; while a test was open, before its cleanup).
//!
//! Cases: `PROPTEST_CASES` (default 16; each case runs a whole job).

mod runtime_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::{
    AwaitReason, JobEvent, JobStatus, OperatorAction, Outcome, SkipReason, StepState,
};
use drplan_engine::fabric::SimFabric;
use drplan_engine::plan::compile::{NodeKind, Operation, VmOp};
use drplan_engine::plan::model::{FailoverKind, Plan};
use drplan_engine::report::{Timeline, Verdict};
use drplan_engine::runtime::{Clock, Engine, Submission, TestClock};
use drplan_engine::store::JobId;
use drplan_engine::store::sled_store::SledStore;
use proptest::prelude::*;
use runtime_support::{T0, engine, plans_dir, sim};

const VMS: [&str; 7] = [
    "sql-01", "sql-02", "app-01", "app-02", "app-03", "web-01", "web-02",
];

#[derive(Debug, Clone)]
struct GroupSpec {
    vms: Vec<(usize, bool)>,
    /// A manual step after the VMs, and what a timeout does.
    manual: Option<bool>,
    wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Retry,
    Skip,
    AckDone,
    AckFailed,
    Cancel,
    Cleanup,
    /// Do nothing: a manual step times out, a test reaches its deadline.
    Leave,
}

#[derive(Debug, Clone)]
struct Case {
    kind: FailoverKind,
    groups: Vec<GroupSpec>,
    faults: Vec<String>,
    acts: Vec<Act>,
    /// Cancel while running, this long (virtual ms) after the start.
    cancel_after: Option<u64>,
}

fn ops_of(kind: FailoverKind) -> &'static [&'static str] {
    match kind {
        FailoverKind::Test => &["create-test-vm", "start-test-vm", "delete-test-vm"],
        FailoverKind::Planned => &[
            "shutdown-primary",
            "sync-final-delta",
            "failover",
            "start-replica",
        ],
        FailoverKind::Unplanned => &["failover", "start-replica"],
    }
}

fn case() -> impl Strategy<Value = Case> {
    let kind = prop_oneof![
        Just(FailoverKind::Test),
        Just(FailoverKind::Planned),
        Just(FailoverKind::Unplanned)
    ];
    // Which VMs, in which of up to three groups, which optional.
    let placement = prop::collection::vec((0usize..4, prop::bool::weighted(0.25)), VMS.len());
    let steps = prop::collection::vec((prop::option::of(any::<bool>()), any::<bool>()), 3);
    let acts = prop::collection::vec(
        prop_oneof![
            Just(Act::Retry),
            Just(Act::Skip),
            Just(Act::AckDone),
            Just(Act::AckFailed),
            Just(Act::Cancel),
            Just(Act::Cleanup),
            Just(Act::Leave),
        ],
        0..8,
    );
    let faults = prop::collection::vec((0usize..VMS.len(), 0usize..4, any::<bool>()), 0..4);
    (
        kind,
        placement,
        steps,
        acts,
        faults,
        prop::option::of(0u64..6_000),
    )
        .prop_map(|(kind, placement, steps, acts, faults, cancel_after)| {
            let mut groups: Vec<GroupSpec> = steps
                .into_iter()
                .map(|(manual, wait)| GroupSpec {
                    vms: Vec::new(),
                    manual,
                    wait,
                })
                .collect();
            for (vm, (g, optional)) in placement.into_iter().enumerate() {
                // 3: not in the plan.
                if let Some(group) = groups.get_mut(g) {
                    group.vms.push((vm, optional));
                }
            }
            groups.retain(|g| !g.vms.is_empty());
            if groups.is_empty() {
                groups.push(GroupSpec {
                    vms: vec![(0, false)],
                    manual: None,
                    wait: false,
                });
            }
            let ops = ops_of(kind);
            let faults = faults
                .into_iter()
                .map(|(vm, op, once)| {
                    let how = if once { "fail-once" } else { "fail" };
                    format!("{how}:{}:{}", ops[op % ops.len()], VMS[vm])
                })
                .collect();
            Case {
                kind,
                groups,
                faults,
                acts,
                cancel_after,
            }
        })
}

fn plan_text(c: &Case) -> String {
    let fabric = plans_dir().join("fabric.yaml");
    let mut y = format!(
        "drplan: 1\nname: props\nsource: primary-vmm/gold\ntarget: secondary-vmm/gold-dr\nfabric: {}\ntest:\n  network: test-bubble\n  max_duration: 1d\ngroups:\n",
        fabric.display()
    );
    for (i, g) in c.groups.iter().enumerate() {
        y.push_str(&format!("  - name: g{i}\n    vms:\n"));
        for &(vm, optional) in &g.vms {
            y.push_str(&format!(
                "      - {{ name: {}, optional: {optional} }}\n",
                VMS[vm]
            ));
        }
        if g.manual.is_some() || g.wait {
            y.push_str("    post:\n");
        }
        if let Some(cont) = g.manual {
            let on = if cont { "continue" } else { "fail" };
            y.push_str(&format!(
                "      - name: check\n        manual: check the tier\n        timeout: 30m\n        on_timeout: {on}\n"
            ));
        }
        if g.wait {
            y.push_str("      - name: settle\n        wait: 10s\n");
        }
    }
    y
}

fn load(dir: &std::path::Path, c: &Case) -> (Plan, String, drplan_engine::plan::model::Inventory) {
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan_text(c)).unwrap();
    let loaded = drplan_engine::plan::load(&path, None);
    assert!(
        !loaded.failed(false),
        "{:#?}\n{}",
        loaded.diagnostics,
        plan_text(c)
    );
    (
        loaded.plan.unwrap(),
        loaded.plan_text.unwrap(),
        loaded.inventory.unwrap(),
    )
}

/// The required VMs of the plan (not marked optional).
fn required(c: &Case) -> BTreeSet<&'static str> {
    c.groups
        .iter()
        .flat_map(|g| &g.vms)
        .filter(|(_, optional)| !optional)
        .map(|&(vm, _)| VMS[vm])
        .collect()
}

/// Of `vms`, those the world runs: the failed-over replica (failovers) or
/// the test VM (tests).
fn running_in_world(fabric: &SimFabric, vms: &BTreeSet<&'static str>, test: bool) -> usize {
    vms.iter()
        .filter(|vm| {
            let Some(v) = fabric.vm(vm) else { return false };
            if test {
                v.test_vm.is_some_and(|t| t.running)
            } else {
                v.failover.is_some() && v.target().is_some_and(|t| t.running)
            }
        })
        .count()
}

/// The verdict as docs/operator.md defines it, from the job's record and
/// the world (`required_running`: how many required VMs ran), written
/// without the report's code.
fn reference_verdict(
    c: &Case,
    st: &drplan_engine::core::JobState,
    ctx: &drplan_engine::core::JobContext,
    events: &[JobEvent],
    required_running: usize,
) -> Verdict {
    let status = st.status();
    let cancelled = events.iter().any(|e| {
        matches!(
            e,
            JobEvent::OperatorAction {
                action: OperatorAction::Cancel,
                ..
            }
        )
    });
    if cancelled && status != JobStatus::CleanupIncomplete {
        return Verdict::Cancelled;
    }
    if !status.is_terminal() && status != JobStatus::CleanupIncomplete {
        return Verdict::InProgress;
    }
    let optional = |s: usize| ctx.node(s).is_some_and(|n| n.optional);
    let mut error = status == JobStatus::CleanupIncomplete
        || matches!(status, JobStatus::Failed | JobStatus::CompletedWithErrors)
        || required_running < required(c).len();
    let mut warning = st.test.as_ref().is_some_and(|t| t.forced);
    for (s, rec) in st.steps.iter().enumerate() {
        let failed_attempts = events
            .iter()
            .filter(|e| {
                matches!(e, JobEvent::StepFinished { step, outcome: Outcome::Failed { .. } | Outcome::TimedOut, .. } if *step == s)
            })
            .count();
        match &rec.state {
            StepState::Failed { .. } | StepState::TimedOut { .. } => {
                if optional(s) {
                    warning = true
                } else {
                    error = true
                }
            }
            StepState::Skipped {
                reason: SkipReason::Operator { .. },
            } => {
                if optional(s) {
                    warning = true
                } else {
                    error = true
                }
            }
            StepState::Skipped {
                reason: SkipReason::ManualTimedOut,
            } => warning = true,
            StepState::Succeeded { .. } if failed_attempts > 0 => warning = true,
            _ => {}
        }
    }
    warning |= events
        .iter()
        .any(|e| matches!(e, JobEvent::StepFinished { warnings, .. } if !warnings.is_empty()));
    if error {
        Verdict::Errors
    } else if warning {
        Verdict::Warnings
    } else {
        Verdict::Success
    }
}

/// Drives the job with the case's decisions until it ends. Returns how
/// many required VMs the world ran while a test was open (tests only).
async fn drive(e: &Engine, fabric: &SimFabric, job: JobId, c: &Case) -> Option<usize> {
    let mut acts = c.acts.iter().copied();
    let mut open_test = None;
    let stops = |s: JobStatus| {
        s.is_terminal()
            || matches!(
                s,
                JobStatus::WaitingForOperator
                    | JobStatus::AwaitingCleanup
                    | JobStatus::CleanupIncomplete
            )
    };
    let bound = Duration::from_secs(60 * 24 * 3600);
    if let Some(ms) = c.cancel_after {
        let waited =
            tokio::time::timeout(Duration::from_millis(ms), e.wait_until(job, stops)).await;
        if waited.is_err() {
            // Refused when the job just ended or waits: that is fine.
            let _ = e.cancel(job, "carol").await;
        }
    }
    for _ in 0..60 {
        let status = tokio::time::timeout(bound, e.wait_until(job, stops))
            .await
            .expect("the job stops or waits")
            .expect("wait_until");
        if status.is_terminal() {
            return open_test;
        }
        let st = e.job(job).await.unwrap().unwrap();
        if status == JobStatus::AwaitingCleanup && open_test.is_none() {
            open_test = Some(running_in_world(fabric, &required(c), true));
        }
        let mut waiting: Vec<(usize, bool)> = st
            .active
            .iter()
            .filter_map(|&s| match &st.steps[s].state {
                StepState::AwaitingOperator { reason, .. } => {
                    Some((s, matches!(reason, AwaitReason::Manual)))
                }
                _ => None,
            })
            .collect();
        // An incomplete cleanup waits on its failed steps.
        if status == JobStatus::CleanupIncomplete {
            let main = e.context(job).await.unwrap().main_len();
            waiting.extend(
                (main..st.steps.len())
                    .filter(|&s| st.steps[s].state.is_failure())
                    .map(|s| (s, false)),
            );
        }
        let act = acts.next();
        match waiting.first() {
            Some(&(step, true)) => match act {
                Some(Act::AckFailed) => e.answer_manual(job, step, false, "bob", None).await,
                Some(Act::Cancel) => e.cancel(job, "carol").await,
                Some(Act::Leave) => {
                    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
                    Ok(())
                }
                _ => {
                    let note = Some("looks fine".to_string());
                    e.answer_manual(job, step, true, "bob", note).await
                }
            }
            .ok(),
            Some(&(step, false)) => match act {
                Some(Act::Retry | Act::Leave) => e.retry(job, step, "bob").await,
                Some(Act::Cancel) if status != JobStatus::CleanupIncomplete => {
                    e.cancel(job, "carol").await
                }
                _ => e.skip(job, step, "bob").await,
            }
            .ok(),
            None if status == JobStatus::AwaitingCleanup => match act {
                Some(Act::Leave) => {
                    tokio::time::sleep(Duration::from_secs(25 * 3600)).await;
                    Some(())
                }
                _ => e.complete_test(job, "drill done", "bob").await.ok(),
            },
            // Between two events: look again.
            None => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Some(())
            }
        };
    }
    let st = e.job(job).await.unwrap().unwrap();
    let states: Vec<_> = st.steps.iter().map(|r| r.state.machine_name()).collect();
    panic!(
        "job {job} did not end after 60 decisions: {} {states:?} {c:?}",
        st.status()
    );
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (plan, text, inventory) = load(dir.path(), c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let faults: Vec<&str> = c.faults.iter().map(String::as_str).collect();
        let fabric = sim(&inventory, &faults);
        let store = Arc::new(SledStore::open(&dir.path().join("store")).expect("sled opens"));
        let clock = Arc::new(TestClock::new(T0));
        let e = engine(store, fabric.clone(), clock.clone(), &inventory).await;
        let sub = Submission::new(plan.clone(), text, Operation::failover(c.kind), "alice");
        let job = e.submit(sub).await.expect("submitted");
        let open_test = drive(&e, &fabric, job, c).await;

        let st = e.job(job).await.unwrap().unwrap();
        let ctx = e.context(job).await.unwrap();
        let events = e.events(job).await.unwrap();
        let t = Timeline::build(&plan, &st, &ctx, &events, clock.now_ms());
        let test = c.kind == FailoverKind::Test;
        // The world: required VMs running at the end of a failover, or
        // while the test was open (its cleanup deletes them); a test
        // cancelled before it was ever open ran none that count.
        let world = if test {
            open_test.unwrap_or(0)
        } else {
            running_in_world(&fabric, &required(c), false)
        };
        let plan_yaml = plan_text(c);
        prop_assert_eq!(
            t.counts.vms_recovered,
            world,
            "VMs recovered vs the world; status {}; plan:\n{}",
            t.status,
            plan_yaml
        );
        prop_assert_eq!(t.counts.vms_required, required(c).len());
        let want = reference_verdict(c, &st, &ctx, &events, world);
        prop_assert_eq!(
            t.verdict,
            want,
            "status {}; errors {:?}; warnings {:?}; plan:\n{}",
            t.status,
            &t.errors,
            &t.warnings,
            plan_yaml
        );
        // The cards never contradict the verdict.
        if t.verdict == Verdict::Success {
            prop_assert_eq!(t.counts.failed_steps, 0);
            prop_assert_eq!(t.counts.vms_recovered, t.counts.vms_required);
        }
        if t.verdict == Verdict::Warnings {
            prop_assert_eq!(t.counts.failed_required, 0);
        }
        // Durations stop at the end.
        let later = Timeline::build(&plan, &st, &ctx, &events, clock.now_ms() + 3_600_000);
        prop_assert_eq!(t.duration_ms, later.duration_ms);
        prop_assert_eq!(
            t.groups.iter().map(|g| g.duration_ms).collect::<Vec<_>>(),
            later
                .groups
                .iter()
                .map(|g| g.duration_ms)
                .collect::<Vec<_>>()
        );
        // Every VM the plan starts: the up operation of each.
        let ups = ctx
            .main
            .nodes
            .iter()
            .filter(|n| {
                matches!(
                    &n.kind,
                    NodeKind::Vm {
                        op: VmOp::StartReplica | VmOp::StartTestVm,
                        ..
                    }
                )
            })
            .count();
        prop_assert!(ups >= t.counts.vms_required);
        e.engine.shutdown().await;
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_verdict_and_vms_recovered_follow_the_definition_and_the_world(c in case()) {
        run_case(&c)?;
    }
}
