//! Example-based tests of the job machine: one scenario per rule.

mod core_support;

use core_support::*;
use drplan_engine::core::*;

#[test]
fn planned_failover_happy_path_runs_groups_in_order_and_finishes() {
    let p = plan(
        vec![
            group(
                "db",
                vec![],
                &[("db1", false)],
                vec![script("pre", 0)],
                vec![],
            ),
            group(
                "app",
                vec![0],
                &[("app1", false), ("app2", false)],
                vec![],
                vec![script("dns", 0)],
            ),
        ],
        vec![],
    );
    let mut job = Job::submit(&p, planned());
    assert_eq!(job.state.status(), JobStatus::NotStarted);
    let fx = job.send(JobEvent::Started { at: T0 }).unwrap();
    // Failover phases: first the primaries of the last group (the front
    // end) are shut down; the database's pre script runs only at its boot.
    let started: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::RunVmOp { key, .. } => Some(key.node.as_str()),
            Effect::RunScript { .. } => Some("a script"),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            "app/vm/app1/shutdown-primary",
            "app/vm/app2/shutdown-primary"
        ],
        "{fx:?}"
    );
    assert_eq!(job.state.status(), JobStatus::InProgress);
    job.finish_all_ok();
    assert_eq!(job.state.status(), JobStatus::Succeeded);
    let releases = job
        .effects
        .iter()
        .filter(|e| **e == Effect::ReleaseLeases)
        .count();
    assert_eq!(releases, 1);
    assert!(job.state.timers.is_empty());
    // Each VM went FailoverStarted then FailoverSucceeded.
    let items: Vec<_> = job
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Item { vm, event } if vm == "app1" => Some(*event),
            _ => None,
        })
        .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], ItemEvent::FailoverStarted);
    assert!(matches!(items[1], ItemEvent::FailoverSucceeded { .. }));
    // The idempotency key names job, node and attempt.
    let key = job.effects.iter().find_map(|e| match e {
        Effect::RunScript { key, .. } => Some(key.to_string()),
        _ => None,
    });
    assert_eq!(key.as_deref(), Some("7/db/pre/pre/1"));
}
