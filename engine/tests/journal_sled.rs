//! The journal on disk (SledStore): the two-week test window across a
//! restart, and a whole planned failover that reopens to the same state
//! and history (and equals the same run on the in-memory store).

mod core_support;
mod journal_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use core_support::{group, manual, plan, script, wait};
use drplan_engine::core::item::ItemState;
use drplan_engine::core::{self, Effect, JobContext, JobEvent, JobStatus, Mode, Rejected, TimerId};
use drplan_engine::journal::{Journal, JournalError, JournalOptions};
use drplan_engine::plan::compile::{Operation, VmOp};
use drplan_engine::plan::model::{Direction, FailoverKind, MAX_TEST_DURATION, OnTimeout, Plan};
use drplan_engine::store::Store;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::SledStore;
use journal_support::*;

const DAY: u64 = 24 * 3600 * 1000;

fn all_ok() -> Fabric {
    Fabric {
        seed: 1,
        failing: 0,
        ..Fabric::default()
    }
}

#[test]
fn an_open_test_is_forcibly_ended_after_two_weeks_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(
        vec![group(
            "g",
            vec![],
            &[("web1", false), ("db1", false)],
            vec![script("pre", 0)],
            vec![],
        )],
        vec![script("tidy", 0)],
    );
    p.test.max_duration = MAX_TEST_DURATION;
    let op = Operation::failover(FailoverKind::Test);

    let (job, started, due, out) = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut sim = Sim::new(store, JournalOptions::default(), all_ok(), vec![1]);
        let job = sim.submit(&p, op, None).unwrap();
        while sim.journal.job(job).unwrap().unwrap().mode != Mode::AwaitingCleanup {
            assert!(sim.step(), "the test stalled before its cleanup");
        }
        let st = sim.journal.job(job).unwrap().unwrap();
        let started = st.started_at.unwrap();
        let due = st.timers[&TimerId::TestDeadline];
        assert_eq!(due, started + 14 * DAY);
        (job, started, due, sim.out.clone())
        // The journal and the store are dropped here: drplan stops.
    };

    // drplan restarts fifteen days later.
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let journal = Journal::open(store.clone()).unwrap();
    assert_eq!(
        journal.resume(),
        vec![],
        "an open test has nothing in flight"
    );
    assert_eq!(
        journal.job(job).unwrap().unwrap().status(),
        JobStatus::AwaitingCleanup
    );
    assert_eq!(journal.due_timers(due - 1).unwrap(), vec![]);
    let early = journal.record(
        job,
        JobEvent::TimerFired {
            timer: TimerId::TestDeadline,
            at: due - 1,
        },
    );
    assert!(
        matches!(
            early,
            Err(JournalError::Rejected(Rejected::TimerEarly { .. }))
        ),
        "{early:?}"
    );
    let now = started + 15 * DAY;
    assert_eq!(
        journal.due_timers(now).unwrap(),
        vec![(job, TimerId::TestDeadline, due)]
    );
    let fx = journal
        .record(
            job,
            JobEvent::TimerFired {
                timer: TimerId::TestDeadline,
                at: due,
            },
        )
        .unwrap();
    // Forcing the end starts the cleanup: the test VMs are deleted.
    let deletes = fx
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::RunVmOp {
                    op: VmOp::DeleteTestVm,
                    ..
                }
            )
        })
        .count();
    assert_eq!(deletes, 2, "{fx:?}");
    assert_eq!(
        journal.due_timers(now).unwrap(),
        vec![],
        "the fired deadline left the index"
    );

    let mut sim = Sim::with_journal(journal, Outside { now, ..out }, vec![1]);
    sim.perform(job, &fx);
    sim.run(100, |_| {});
    let st = sim.journal.job(job).unwrap().unwrap();
    assert_eq!(st.status(), JobStatus::TestForciblyEnded);
    let closure = st.test.as_ref().unwrap();
    assert!(
        closure.forced && closure.notes.contains("forcibly ended"),
        "{closure:?}"
    );
    assert_eq!(store.leases().unwrap(), vec![]);
    assert_eq!(store.timers().unwrap(), vec![]);
    for vm in ["db1", "web1"] {
        assert_eq!(
            sim.journal.item(vm).unwrap(),
            Some(ItemState::Protected {
                direction: Direction::Forward
            })
        );
    }
}

fn three_tier() -> Plan {
    plan(
        vec![
            group(
                "db",
                vec![],
                &[("db1", false), ("db2", false)],
                vec![script("stop-app", 1)],
                vec![],
            ),
            group(
                "app",
                vec![0],
                &[("app1", false)],
                vec![manual(
                    "check replication",
                    Some(Duration::from_secs(600)),
                    OnTimeout::Fail,
                )],
                vec![wait("settle", 30)],
            ),
            group(
                "web",
                vec![1],
                &[("web1", false), ("web2", true)],
                vec![],
                vec![script("dns", 2)],
            ),
        ],
        vec![],
    )
}

struct Run {
    states: BTreeMap<drplan_engine::store::JobId, core::JobState>,
    logs: Vec<Vec<JobEvent>>,
    metas: Vec<drplan_engine::journal::JobMeta>,
    items: Vec<Option<ItemState>>,
}

fn capture(j: &Journal) -> Run {
    let metas = j.jobs().unwrap();
    Run {
        states: metas
            .iter()
            .map(|m| (m.id, j.job(m.id).unwrap().unwrap()))
            .collect(),
        logs: metas.iter().map(|m| j.events(m.id).unwrap()).collect(),
        items: ["app1", "db1", "db2", "web1", "web2"]
            .iter()
            .map(|v| j.item(v).unwrap())
            .collect(),
        metas,
    }
}

#[test]
fn a_planned_failover_on_sled_reopens_to_the_same_state_and_history() {
    let p = three_tier();
    let op = Operation::failover(FailoverKind::Planned);
    let choices = vec![
        3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6,
    ];
    let fabric = Fabric {
        seed: 7,
        failing: 3,
        ..Fabric::default()
    };

    // The reference: the same script on the in-memory store.
    let mem = Arc::new(MemStore::new());
    let mut sim = Sim::new(
        mem,
        JournalOptions::default(),
        fabric.clone(),
        choices.clone(),
    );
    let job = sim.submit(&p, op, None).unwrap();
    sim.run(500, |_| {});
    let reference = capture(&sim.journal);

    let dir = tempfile::tempdir().unwrap();
    let on_disk = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let opts = JournalOptions {
            snapshot_every: 4,
            ..JournalOptions::default()
        };
        let mut sim = Sim::new(store, opts, fabric, choices);
        assert_eq!(sim.submit(&p, op, None).unwrap(), job);
        sim.run(500, |_| {});
        capture(&sim.journal)
    };
    let reopened = {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        capture(&Journal::open(store).unwrap())
    };

    let st = &reference.states[&job];
    assert!(st.is_terminal(), "the run must end: {:?}", st.status());
    assert!(
        reference.logs[0].len() > 20,
        "a short run proves little: {}",
        reference.logs[0].len()
    );
    // The script must have hit failures and operator decisions.
    assert!(
        reference.logs[0]
            .iter()
            .any(|e| matches!(e, JobEvent::OperatorAction { .. })),
        "{:#?}",
        reference.logs[0]
    );
    for run in [&on_disk, &reopened] {
        assert_eq!(run.states, reference.states);
        assert_eq!(run.logs, reference.logs);
        assert_eq!(run.metas, reference.metas);
        assert_eq!(run.items, reference.items);
    }
    // The log replays, through the pure core alone, to the same state.
    let ctx = JobContext::new(&p, op);
    assert_eq!(&core::replay(&ctx, &reopened.logs[0]).unwrap(), st);
}
