//! Golden event/effect traces: a readable record of what the core does for a
//! whole scenario, reviewed as a snapshot (`cargo insta review`).

mod core_support;

use std::fmt::Write;
use std::time::Duration;

use core_support::*;
use drplan_engine::core::*;
use drplan_engine::plan::model::OnTimeout;

fn node(job: &Job, step: usize) -> String {
    job.ctx
        .node(step)
        .map(|n| n.key.clone())
        .unwrap_or_default()
}

fn effect(job: &Job, e: &Effect) -> String {
    let t = |ms: Millis| format!("+{}s", (ms - T0) / 1000);
    match e {
        Effect::RunVmOp { key, .. } | Effect::RunScript { key, .. } => format!("run {key}"),
        Effect::AwaitOperator { step } => format!("prompt operator: {}", node(job, *step)),
        Effect::CancelStep { step, attempt } => {
            format!("cancel {} (attempt {attempt})", node(job, *step))
        }
        Effect::ArmTimer { timer, due } => format!("arm {timer} at {}", t(*due)),
        Effect::DisarmTimer { timer, .. } => format!("disarm {timer}"),
        Effect::ReleaseLeases => "release leases".into(),
        Effect::Item { vm, event } => format!("item {vm}: {event:?}"),
        Effect::ScheduleFollowUp { operation, due } => {
            format!("schedule {operation} at {}", t(*due))
        }
        Effect::Finished { status } => format!("finished: {status}"),
    }
}

/// Apply events one by one, rendering each event, its effects and the status.
struct Trace {
    job: Job,
    out: String,
}

impl Trace {
    fn send(&mut self, what: &str, ev: JobEvent) {
        let at = ev.at();
        let fx = self.job.send(ev).unwrap_or_else(|e| panic!("{what}: {e}"));
        let _ = writeln!(self.out, "+{}s {what}", (at - T0) / 1000);
        for e in &fx {
            let _ = writeln!(self.out, "    {}", effect(&self.job, e));
        }
        let _ = writeln!(self.out, "    = {}", self.job.state.status());
    }

    fn outcome(&mut self, key: &str, outcome: Outcome) {
        let step = (0..self.job.ctx.len())
            .find(|&s| node(&self.job, s) == key)
            .unwrap();
        let attempt = self.job.state.steps[step].state.attempt();
        let at = self.job.tick(10_000);
        let what = format!("{key} #{attempt}: {outcome:?}");
        self.send(
            &what,
            JobEvent::StepFinished {
                step,
                attempt,
                outcome,
                output_tail: None,
                values: Default::default(),
                at,
                warnings: Vec::new(),
                recovery_point: None,
            },
        );
    }
}

#[test]
fn trace_of_a_test_failover_with_a_failure_and_an_incomplete_cleanup() {
    let p = plan(
        vec![group(
            "app",
            vec![],
            &[("web", false), ("db", false)],
            vec![manual(
                "announce",
                Some(Duration::from_secs(600)),
                OnTimeout::Continue,
            )],
            vec![script("smoke", 1)],
        )],
        vec![script("report", 0)],
    );
    let mut t = Trace {
        job: Job::submit(&p, test_op()),
        out: String::new(),
    };
    // Failover phase: every test VM is created at once; then the group
    // boots: its pre step, its VMs' starts, its post step.
    t.send("started", JobEvent::Started { at: T0 });
    t.outcome("app/vm/web/create-test-vm", Outcome::Succeeded);
    t.outcome(
        "app/vm/db/create-test-vm",
        Outcome::Failed {
            error: "no capacity".into(),
            error_kind: None,
            retryable: true,
        },
    );
    let at = t.job.tick(5_000);
    let announce = (0..t.job.ctx.len())
        .find(|&s| node(&t.job, s) == "app/pre/announce")
        .unwrap();
    t.send(
        "announce answered done",
        JobEvent::ManualAnswered {
            step: announce,
            done: true,
            by: "alice".into(),
            note: None,
            at,
        },
    );
    t.outcome("app/vm/web/start-test-vm", Outcome::Succeeded);
    t.outcome("app/post/smoke", Outcome::TimedOut);
    let at = t.job.now + 10_000;
    t.job.now = at;
    let smoke = (0..t.job.ctx.len())
        .find(|&s| node(&t.job, s) == "app/post/smoke")
        .unwrap();
    t.send(
        "retry timer fired",
        JobEvent::TimerFired {
            timer: TimerId::Retry {
                step: smoke,
                attempt: 1,
            },
            at,
        },
    );
    t.outcome("app/post/smoke", Outcome::Succeeded);
    let at = t.job.tick(60_000);
    t.send(
        "operator completes the test",
        JobEvent::OperatorAction {
            action: OperatorAction::CompleteTest {
                notes: "web served pages; db had no capacity".into(),
            },
            by: "alice".into(),
            at,
        },
    );
    t.outcome(
        "app/vm/web/delete-test-vm",
        Outcome::Failed {
            error: "locked".into(),
            error_kind: None,
            retryable: true,
        },
    );
    t.outcome("app/vm/db/delete-test-vm", Outcome::Succeeded);
    t.outcome("cleanup/report", Outcome::Succeeded);
    let at = t.job.tick(60_000);
    let del = (0..t.job.ctx.len())
        .find(|&s| node(&t.job, s) == "app/vm/web/delete-test-vm")
        .unwrap();
    t.send(
        "operator retries the delete",
        JobEvent::OperatorAction {
            action: OperatorAction::Retry { step: del },
            by: "alice".into(),
            at,
        },
    );
    t.outcome("app/vm/web/delete-test-vm", Outcome::Succeeded);
    insta::assert_snapshot!(t.out);
}

#[test]
fn trace_of_a_planned_failover_halted_then_cancelled() {
    let p = plan(
        vec![
            group("db", vec![], &[("db", false)], vec![], vec![]),
            group("web", vec![0], &[("web", false)], vec![], vec![]),
        ],
        vec![],
    );
    let mut t = Trace {
        job: Job::submit(&p, planned()),
        out: String::new(),
    };
    // Shutdown phase, front end first; then every VM's final sync at once.
    t.send("started", JobEvent::Started { at: T0 });
    t.outcome("web/vm/web/shutdown-primary", Outcome::Succeeded);
    t.outcome("db/vm/db/shutdown-primary", Outcome::Succeeded);
    t.outcome(
        "db/vm/db/sync-final-delta",
        Outcome::Failed {
            error: "replication broken".into(),
            error_kind: None,
            retryable: true,
        },
    );
    let at = t.job.tick(60_000);
    t.send(
        "operator cancels",
        JobEvent::OperatorAction {
            action: OperatorAction::Cancel,
            by: "bob".into(),
            at,
        },
    );
    t.outcome("web/vm/web/sync-final-delta", Outcome::Cancelled);
    insta::assert_snapshot!(t.out);
}
