//! Journal rules on the in-memory store: VM exclusivity (durable), item
//! checks at submission, the auto-commit follow-up job, damaged records.

mod core_support;
mod journal_support;

use std::sync::Arc;
use std::time::Duration;

use core_support::{group, plan, script};
use drplan_engine::core::item::ItemState;
use drplan_engine::core::{JobStatus, Mode, TimerId};
use drplan_engine::journal::{Journal, JournalError, JournalOptions};
use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::plan::model::{CommitPolicy, Direction, FailoverKind, Plan};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::{Store, Write, codec};
use journal_support::*;

fn named(name: &str, vms: &[&str]) -> Plan {
    let vms: Vec<(&str, bool)> = vms.iter().map(|v| (*v, false)).collect();
    let mut p = plan(
        vec![group("g", vec![], &vms, vec![script("pre", 0)], vec![])],
        vec![],
    );
    p.name = name.into();
    p
}

fn all_ok() -> Fabric {
    Fabric {
        seed: 1,
        failing: 0,
        ..Fabric::default()
    }
}

/// Choice 1: never cancels, never fires the test deadline early.
const CALM: [u8; 1] = [1];

fn test_op() -> Operation {
    Operation::failover(FailoverKind::Test)
}

fn planned() -> Operation {
    Operation::failover(FailoverKind::Planned)
}

#[test]
fn a_vm_in_use_refuses_a_second_job_until_the_first_ends_also_after_a_restart() {
    let mem = Arc::new(MemStore::new());
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let first = sim
        .submit(&named("p1", &["web1", "db1"]), test_op(), None)
        .unwrap();
    let second = named("p2", &["app1", "web1"]);

    let err = sim.submit(&second, planned(), None).unwrap_err();
    match &err {
        JournalError::VmBusy {
            vm,
            holder,
            holder_operation,
            holder_plan,
        } => {
            assert_eq!(vm, "web1");
            assert_eq!(*holder, first);
            assert_eq!(*holder_operation, Some(test_op()));
            assert_eq!(holder_plan.as_deref(), Some("p1"));
        }
        other => panic!("expected VmBusy, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("web1")
            && msg.contains("job 1")
            && msg.contains("test failover")
            && msg.contains("p1"),
        "{msg}"
    );
    // Nothing of the refused job holds a VM (all or none).
    assert!(mem.leases().unwrap().iter().all(|(_, h)| *h == first));

    // The lease is durable: a restart still refuses.
    let after = Arc::new(mem.crash_copy());
    drop(sim);
    let mut sim = Sim::restart(
        after.clone(),
        JournalOptions::default(),
        Outside {
            fabric: all_ok(),
            now: T0 + 60_000,
            commits: 0,
        },
        CALM.to_vec(),
    );
    assert!(matches!(
        sim.submit(&second, planned(), None),
        Err(JournalError::VmBusy { holder, .. }) if holder == first
    ));

    // Run the test to its end (completed, cleaned up): the VMs are free.
    sim.run(200, |_| {});
    assert_eq!(
        sim.journal.job(first).unwrap().unwrap().status(),
        JobStatus::TestCompleted
    );
    assert_eq!(after.leases().unwrap(), vec![]);
    let next = sim.submit(&second, planned(), None).unwrap();
    assert_eq!(
        after.leases().unwrap(),
        vec![("app1".to_string(), next), ("web1".to_string(), next)]
    );
}

#[test]
fn items_not_ready_refuse_the_job_and_give_the_vms_back() {
    let mem = Arc::new(MemStore::new());
    let failed_over = ItemState::FailedOver {
        direction: Direction::Forward,
        recovery_point: RecoveryPoint::Latest,
    };
    let writes = vec![Write::Item {
        vm: "db1".into(),
        payload: codec::encode(&failed_over),
    }];
    mem.apply(&writes).unwrap();
    mem.flush().unwrap();
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let p = named("p1", &["web1", "db1", "app1"]);
    match sim.submit(&p, test_op(), None).unwrap_err() {
        JournalError::NotReady(problems) => {
            let vms: Vec<&str> = problems.iter().map(|n| n.vm.as_str()).collect();
            assert_eq!(vms, ["db1"]);
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert_eq!(mem.leases().unwrap(), vec![]);
    assert_eq!(sim.journal.jobs().unwrap(), vec![]);
    // A commit is what that VM is ready for; the others default to
    // Protected{Forward}, which a commit leaves alone (the way forward from
    // a half-moved plan): the job leases db1 only.
    sim.submit(&p, Operation::Commit, None)
        .expect("a commit of the VM that failed over");
    let leased: Vec<String> = mem
        .leases()
        .unwrap()
        .into_iter()
        .map(|(vm, _)| vm)
        .collect();
    assert_eq!(leased, ["db1"]);
}

#[test]
fn a_planned_failover_with_auto_commit_leaves_a_scheduled_commit_job() {
    let mem = Arc::new(MemStore::new());
    let mut p = named("p1", &["web1", "db1"]);
    p.commit = CommitPolicy::AutoCommit {
        after: Duration::from_secs(3600),
    };
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let parent = sim.submit(&p, planned(), None).unwrap();
    while !sim.journal.job(parent).unwrap().unwrap().is_terminal() {
        assert!(sim.step(), "the failover stalled");
    }
    let done = sim.journal.job(parent).unwrap().unwrap();
    assert_eq!(done.status(), JobStatus::Succeeded);
    let end = done.finished_at.unwrap();

    let jobs = sim.journal.jobs().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    // The summary follows the status (written with the final event).
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(jobs[0].updated_at, end);
    let child = &jobs[1];
    assert_eq!(child.operation, Operation::Commit);
    assert_eq!(child.parent, Some(parent));
    assert_eq!(child.status, JobStatus::NotStarted);
    assert_eq!(child.plan_hash, jobs[0].plan_hash);
    let state = sim.journal.job(child.id).unwrap().unwrap();
    assert_eq!(state.mode, Mode::NotStarted);
    assert_eq!(
        state.timers.get(&TimerId::ScheduledStart),
        Some(&(end + 3_600_000))
    );
    // Durable: the timer index and the reservation of its VMs.
    let after = Arc::new(mem.crash_copy());
    let timers = after.timers().unwrap();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].job, child.id);
    assert_eq!(timers[0].due_ms, end + 3_600_000);
    assert_eq!(
        TimerId::from_u64(timers[0].timer),
        Some(TimerId::ScheduledStart)
    );
    assert!(
        sim.journal
            .due_timers(end + 3_600_000 - 1)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        mem.leases().unwrap(),
        vec![
            ("db1".to_string(), child.id),
            ("web1".to_string(), child.id)
        ]
    );

    // After a restart the commit starts on its timer and commits the VMs.
    let mut sim = Sim::restart(
        after.clone(),
        JournalOptions::default(),
        sim.out.clone(),
        CALM.to_vec(),
    );
    sim.run(100, |_| {});
    assert_eq!(
        sim.journal.job(child.id).unwrap().unwrap().status(),
        JobStatus::Succeeded
    );
    for vm in ["db1", "web1"] {
        assert_eq!(
            sim.journal.item(vm).unwrap(),
            Some(ItemState::Committed {
                direction: Direction::Forward
            })
        );
    }
    assert_eq!(after.leases().unwrap(), vec![]);
    assert_eq!(after.timers().unwrap(), vec![]);
}

#[test]
fn a_damaged_event_is_a_clear_error_naming_job_and_seq() {
    let mem = Arc::new(MemStore::new());
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let job = sim
        .submit(&named("p1", &["web1"]), planned(), None)
        .unwrap();
    sim.step(); // Started: event 1
    drop(sim);
    mem.apply(&[Write::Event {
        job,
        seq: 2,
        payload: b"DRPR\x00\x01{\"type\":\"no such event\"}".to_vec(),
    }])
    .unwrap();
    mem.flush().unwrap();
    let err = Journal::open(mem.clone()).unwrap_err();
    assert!(
        matches!(err, JournalError::Damaged { job: j, seq: Some(2), .. } if j == job),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("job 1: event 2 is damaged"),
        "{err}"
    );

    // An event that decodes but does not replay is damaged too.
    let mem = Arc::new(MemStore::new());
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let job = sim
        .submit(&named("p1", &["web1"]), planned(), None)
        .unwrap();
    drop(sim);
    let early = drplan_engine::core::JobEvent::TimerFired {
        timer: TimerId::TestDeadline,
        at: T0,
    };
    mem.apply(&[Write::Event {
        job,
        seq: 1,
        payload: codec::encode(&early),
    }])
    .unwrap();
    let err = Journal::open(mem.clone()).unwrap_err();
    assert!(
        matches!(err, JournalError::Damaged { job: j, seq: Some(1), .. } if j == job),
        "{err:?}"
    );
}

#[test]
fn a_repeated_outcome_is_acknowledged_without_a_second_record() {
    let mem = Arc::new(MemStore::new());
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    let job = sim
        .submit(&named("p1", &["web1"]), planned(), None)
        .unwrap();
    let fx = sim
        .journal
        .record(job, drplan_engine::core::JobEvent::Started { at: T0 + 1 })
        .unwrap();
    // Failover phases: the primary's shutdown starts first.
    let Some(drplan_engine::core::Effect::RunVmOp { step, attempt, .. }) = fx
        .iter()
        .find(|e| matches!(e, drplan_engine::core::Effect::RunVmOp { .. }))
        .cloned()
    else {
        panic!("the primary's shutdown starts first: {fx:?}");
    };
    let outcome = drplan_engine::core::JobEvent::StepFinished {
        step,
        attempt,
        outcome: drplan_engine::core::Outcome::Succeeded,
        output_tail: None,
        values: Default::default(),
        at: T0 + 2,
        warnings: Vec::new(),
        recovery_point: None,
    };
    let first = sim.journal.record(job, outcome.clone()).unwrap();
    assert!(
        !first.is_empty(),
        "the final sync starts after the shutdown"
    );
    let log = sim.journal.events(job).unwrap();
    assert_eq!(sim.journal.record(job, outcome).unwrap(), vec![]);
    assert_eq!(
        sim.journal.events(job).unwrap(),
        log,
        "the repeat is not logged"
    );
    // A real refusal is an error and writes nothing either.
    let refused = sim
        .journal
        .record(job, drplan_engine::core::JobEvent::Started { at: T0 + 3 });
    assert!(
        matches!(refused, Err(JournalError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(sim.journal.events(job).unwrap(), log);
}

#[test]
fn leases_of_a_submission_that_never_committed_are_released_on_open() {
    // A submission leased its VMs, another commit's flush made the leases
    // durable, and drplan died before the submission's own commit.
    let mem = Arc::new(MemStore::new());
    let ghost = mem.allocate_job_id().unwrap();
    mem.acquire_leases(ghost, &["web1".to_string()]).unwrap();
    mem.flush().unwrap();
    let mut sim = Sim::new(
        mem.clone(),
        JournalOptions::default(),
        all_ok(),
        CALM.to_vec(),
    );
    assert_eq!(
        mem.crash_copy().leases().unwrap(),
        vec![],
        "released durably"
    );
    let job = sim
        .submit(&named("p1", &["web1"]), planned(), None)
        .unwrap();
    assert_ne!(job, ghost);
}
