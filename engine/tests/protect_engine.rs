//! Protection management on the engine, in virtual time: enable, onboard
//! and disable protection as jobs; the failover refusal naming each
//! not-ready VM; a scheduled initial replication across an engine restart;
//! initial replication progress; recovery point checks.

mod runtime_support;

use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::item::ItemState;
use drplan_engine::core::{JobEvent, JobStatus, StepState, TimerId};
use drplan_engine::fabric::sim::Protection;
use drplan_engine::fabric::{FaultSet, SimConfig, SimFabric};
use drplan_engine::journal::JournalError;
use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::plan::model::{Direction, FailoverKind, Inventory};
use drplan_engine::protect::{self, Schedule};
use drplan_engine::runtime::{
    Engine, EngineConfig, EngineError, FabricPersistence, Submission, TestClock,
};
use drplan_engine::store::Store;
use drplan_engine::store::mem::MemStore;
use runtime_support::*;

fn reporting() -> Shipped {
    let loaded = drplan_engine::plan::load(&plans_dir().join("reporting.yaml"), None);
    assert!(!loaded.failed(false), "{:?}", loaded.diagnostics);
    Shipped {
        plan: loaded.plan.expect("plan"),
        text: loaded.plan_text.expect("text"),
        inventory: loaded.inventory.expect("inventory"),
    }
}

struct Running {
    engine: Engine,
    fabric: Arc<SimFabric>,
    _scratch: tempfile::TempDir,
}

/// An engine over `store` whose simulated world is persisted in it (as the
/// CLI runs it): a restart meets the world the jobs left.
async fn start(
    store: Arc<dyn Store>,
    inv: &Inventory,
    clock: Arc<TestClock>,
    faults: &[&str],
) -> Running {
    let faults = FaultSet::from_cli(faults).expect("faults");
    let fabric = Arc::new(SimFabric::new(
        inv,
        SimConfig::default().with_time_scale(0.01),
        faults,
    ));
    let scratch = tempfile::tempdir().expect("scratch");
    let engine = Engine::start_persisting(
        EngineConfig {
            store,
            fabric: fabric.clone(),
            scripts: runner(scratch.path()),
            clock,
            max_concurrent_vm_ops: 4,
            inventory: Some(inv.clone()),
        },
        FabricPersistence::new(fabric.clone()),
    )
    .await
    .expect("engine starts");
    Running {
        engine,
        fabric,
        _scratch: scratch,
    }
}

fn enable(inv: &Inventory, vms: &[&str], schedule: Schedule, now: u64) -> Submission {
    let vms: Vec<String> = vms.iter().map(|v| v.to_string()).collect();
    let job = protect::enable_job(inv, &vms, schedule, now, None).expect("enable job");
    Submission::new(job.plan, job.text, job.operation, "alice")
}

fn disable(inv: &Inventory, vms: &[&str], delete: Option<bool>) -> Submission {
    let vms: Vec<String> = vms.iter().map(|v| v.to_string()).collect();
    let job = protect::disable_job(inv, &vms, delete, T0, None).expect("disable job");
    Submission::new(job.plan, job.text, job.operation, "alice")
}

fn not_ready(e: EngineError) -> Vec<(String, ItemState)> {
    match e {
        EngineError::Journal(JournalError::NotReady(v)) => {
            v.into_iter().map(|n| (n.vm, n.state)).collect()
        }
        other => panic!("expected NotReady, got {other}"),
    }
}

const FWD: ItemState = ItemState::Protected {
    direction: Direction::Forward,
};

#[tokio::test(start_paused = true)]
async fn protect_then_test_failover_of_a_plan_over_the_new_vms() {
    let s = reporting();
    let inv = &s.inventory;
    let store: Arc<dyn Store> = mem();
    let clock = Arc::new(TestClock::new(T0));
    let r = start(store.clone(), inv, clock.clone(), &[]).await;

    // Before protection: the failover is refused, naming every VM and its
    // state, and nothing is leased.
    let e = r
        .engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap_err();
    let msg = e.to_string();
    for vm in ["legacy-01", "rpt-01", "rpt-02"] {
        assert!(msg.contains(&format!("`{vm}` is unprotected")), "{msg}");
    }
    assert_eq!(not_ready(e).len(), 3);
    assert!(r.engine.journal().leases().unwrap().is_empty());

    // Enable (and onboard legacy-01).
    let legacy_replica = r.fabric.vm("legacy-01").unwrap().replica.unwrap().host;
    let job = r
        .engine
        .submit(enable(
            inv,
            &["legacy-01", "rpt-01", "rpt-02"],
            Schedule::Now,
            T0,
        ))
        .await
        .expect("enable submitted");
    // While the copy runs: progress moves, the VM is not ready.
    let mut seen = Vec::new();
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(t) = r.fabric.transfers().into_iter().find(|t| t.vm == "rpt-01") {
            seen.push(t.fraction);
            if t.fraction > 0.3 {
                break;
            }
        }
    }
    assert!(
        seen.len() >= 2 && seen.windows(2).all(|w| w[0] <= w[1]) && seen[0] < 0.5,
        "progress seen: {seen:?}"
    );
    let t = r.fabric.transfers();
    let rpt = t.iter().find(|t| t.vm == "rpt-01").expect("rpt-01 copying");
    assert_eq!(rpt.total_bytes, 80_000_000_000);
    assert_eq!(rpt.method, "network");
    assert!(
        t.iter().all(|t| t.vm != "legacy-01"),
        "onboarding copies nothing: {t:?}"
    );
    assert_eq!(
        r.engine.journal().item("rpt-01").unwrap(),
        Some(ItemState::EnablingProtection)
    );
    let busy = r
        .engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap_err();
    assert!(
        busy.to_string().contains(&format!("in use by job {job}")),
        "{busy}"
    );

    let st = wait(&r.engine, job, |s| s.is_terminal()).await;
    assert_eq!(
        st,
        JobStatus::Succeeded,
        "{}",
        history(&r.engine.events(job).await.unwrap())
    );
    // 80 GB at 1 Gbit/s = 640 s, × 0.01: the copy slept its bytes' time.
    let ev = r.engine.events(job).await.unwrap();
    let ctx = r.engine.context(job).await.unwrap();
    let copy = ctx
        .main
        .node("protect/vm/rpt-01/initial-replication")
        .unwrap()
        .id;
    let st_job = r.engine.job(job).await.unwrap().unwrap();
    let rec = &st_job.steps[copy];
    let took = rec.finished_at.unwrap() - rec.started_at.unwrap();
    assert!((6_400..7_000).contains(&took), "copy took {took} ms");
    assert!(
        ev.iter()
            .any(|e| matches!(e, JobEvent::StepFinished { .. }))
    );
    for vm in ["legacy-01", "rpt-01", "rpt-02"] {
        assert_eq!(r.engine.journal().item(vm).unwrap(), Some(FWD), "{vm}");
        assert_eq!(r.fabric.vm(vm).unwrap().protection, Protection::Protected);
    }
    let legacy = r.fabric.vm("legacy-01").unwrap();
    assert_eq!(
        legacy.replica.unwrap().host,
        legacy_replica,
        "adopted, not recreated"
    );
    assert_eq!(legacy.initial.unwrap().method, "onboarded");
    // Its initial-replication step reported that nothing was copied.
    assert!(
        history(&ev).contains("nothing to copy: the replica of legacy-01"),
        "{}",
        history(&ev)
    );

    // Recovery points appear from protection on; a point from before it
    // does not exist and is refused by name.
    tokio::time::sleep(Duration::from_secs(900)).await;
    let now = clock_now(&clock);
    assert!(!r.fabric.recovery_points("rpt-01", now).unwrap().is_empty());
    let before = RecoveryPoint::At(T0 / 1000 - 3600);
    let problems =
        protect::check_recovery_point(&r.fabric, &["rpt-01", "sql-01"], before, now).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("VM `rpt-01`"), "{problems:?}");

    // Now the drill runs.
    let test = r
        .engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .expect("test failover accepted once protected");
    wait(&r.engine, test, |s| s == JobStatus::AwaitingCleanup).await;
    r.engine.complete_test(test, "ok", "bob").await.unwrap();
    assert_eq!(
        wait(&r.engine, test, |s| s.is_terminal()).await,
        JobStatus::TestCompleted
    );
    r.engine.shutdown().await;
}

fn clock_now(c: &TestClock) -> u64 {
    use drplan_engine::runtime::Clock;
    c.now_ms()
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_initial_replication_survives_an_engine_restart() {
    let s = reporting();
    let inv = &s.inventory;
    let store = Arc::new(MemStore::new());
    let clock = Arc::new(TestClock::new(T0));
    let r = start(store.clone(), inv, clock.clone(), &[]).await;
    let due = T0 + 2 * 3_600_000;
    let job = r
        .engine
        .submit(enable(inv, &["rpt-01"], Schedule::At(due), T0))
        .await
        .unwrap();
    // The job waits, visibly: its first step is the running wait, with a
    // durable timer; nothing was copied.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = r.engine.job(job).await.unwrap().unwrap();
    let ctx = r.engine.context(job).await.unwrap();
    assert_eq!(ctx.main.nodes[0].key, "protect/pre/scheduled-start");
    assert!(matches!(st.steps[0].state, StepState::Running { .. }));
    assert_eq!(st.timers.get(&TimerId::Wait { step: 0 }), Some(&due));
    assert!(st.steps[1..].iter().all(|s| s.state == StepState::Pending));
    assert_eq!(
        r.engine.status(job).await.unwrap(),
        Some(JobStatus::InProgress)
    );
    assert!(r.fabric.transfers().is_empty());
    // The VM is leased by the waiting job: a second protect is refused.
    let again = r
        .engine
        .submit(enable(inv, &["rpt-01"], Schedule::Now, T0))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("rpt-01"), "{again}");

    // Crash: what the store made durable is all a new engine gets. The
    // engine is down for an hour (the clock moves on without it).
    let copy = Arc::new(store.crash_copy());
    r.engine.shutdown().await;
    drop(r);
    let clock2 = Arc::new(TestClock::new(T0 + 3_600_000));
    let r2 = start(copy.clone(), inv, clock2.clone(), &[]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = r2.engine.job(job).await.unwrap().unwrap();
    assert!(
        matches!(st.steps[0].state, StepState::Running { .. }),
        "still waiting after the restart: {:?}",
        st.steps[0].state
    );
    assert_eq!(st.steps[1].state, StepState::Pending);

    let end = wait(&r2.engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::Succeeded);
    let st = r2.engine.job(job).await.unwrap().unwrap();
    // Never early: the prerequisites check began at the scheduled time.
    let began = st.steps[1].started_at.unwrap();
    assert!(began >= due, "started {began} before {due}");
    assert!(began < due + 60_000, "started {} ms late", began - due);
    let fired = r2
        .engine
        .events(job)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                JobEvent::TimerFired {
                    timer: TimerId::Wait { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(fired, 1);
    assert_eq!(r2.engine.journal().item("rpt-01").unwrap(), Some(FWD));
    assert_eq!(
        r2.fabric.vm("rpt-01").unwrap().protection,
        Protection::Protected
    );
    r2.engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn disable_is_refused_while_the_vm_is_in_a_job_then_deletes_or_keeps_the_replica() {
    let s = three_tier();
    let inv = &s.inventory;
    let store: Arc<dyn Store> = mem();
    let clock = Arc::new(TestClock::new(T0));
    let r = start(store, inv, clock, &[]).await;
    let test = r
        .engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    wait(&r.engine, test, |s| s == JobStatus::WaitingForOperator).await;
    let busy = r
        .engine
        .submit(disable(inv, &["web-01"], Some(true)))
        .await
        .unwrap_err();
    let m = busy.to_string();
    assert!(
        m.contains("web-01") && m.contains(&format!("job {test}")),
        "{m}"
    );
    r.engine.cancel(test, "bob").await.unwrap();
    wait(&r.engine, test, |s| {
        s == JobStatus::AwaitingCleanup || s.is_terminal()
    })
    .await;
    if r.engine.status(test).await.unwrap() == Some(JobStatus::AwaitingCleanup) {
        r.engine.complete_test(test, "stop", "bob").await.unwrap();
    }
    wait(&r.engine, test, |s| s.is_terminal()).await;

    // Delete web-01's replica; keep web-02's (the policy's default).
    let d = r
        .engine
        .submit(disable(inv, &["web-01"], Some(true)))
        .await
        .unwrap();
    assert_eq!(
        wait(&r.engine, d, |s| s.is_terminal()).await,
        JobStatus::Succeeded
    );
    let k = r
        .engine
        .submit(disable(inv, &["web-02"], None))
        .await
        .unwrap();
    assert_eq!(
        wait(&r.engine, k, |s| s.is_terminal()).await,
        JobStatus::Succeeded
    );
    let ctx = r.engine.context(k).await.unwrap();
    assert_eq!(
        ctx.main.operation,
        Operation::DisableProtection {
            delete_replica: false
        }
    );
    assert!(r.fabric.vm("web-01").unwrap().replica.is_none());
    assert!(r.fabric.vm("web-02").unwrap().replica.is_some());
    for vm in ["web-01", "web-02"] {
        assert_eq!(
            r.engine.journal().item(vm).unwrap(),
            Some(ItemState::Unprotected)
        );
    }
    // A failover over them is now refused, by name.
    let e = r
        .engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap_err();
    let names: Vec<String> = not_ready(e).into_iter().map(|(v, _)| v).collect();
    assert_eq!(names, ["web-01", "web-02"]);
    // Disabling twice is refused: it is not protected any more.
    let twice = r
        .engine
        .submit(disable(inv, &["web-01"], None))
        .await
        .unwrap_err();
    assert!(
        twice.to_string().contains("`web-01` is unprotected"),
        "{twice}"
    );

    // Protecting web-02 again reuses its kept replica.
    let kept = r.fabric.vm("web-02").unwrap().replica.unwrap().host;
    let p = r
        .engine
        .submit(enable(inv, &["web-02"], Schedule::Now, T0))
        .await
        .unwrap();
    assert_eq!(
        wait(&r.engine, p, |s| s.is_terminal()).await,
        JobStatus::Succeeded
    );
    assert_eq!(r.fabric.vm("web-02").unwrap().replica.unwrap().host, kept);
    assert_eq!(r.engine.journal().item("web-02").unwrap(), Some(FWD));
    r.engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_initial_replication_leaves_the_vm_unprotected_and_retryable() {
    let s = reporting();
    let inv = &s.inventory;
    let store: Arc<dyn Store> = mem();
    let clock = Arc::new(TestClock::new(T0));
    let r = start(store, inv, clock, &["fail:initial-replication:rpt-02"]).await;
    let job = r
        .engine
        .submit(enable(inv, &["rpt-01", "rpt-02"], Schedule::Now, T0))
        .await
        .unwrap();
    let end = wait(&r.engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::CompletedWithErrors);
    assert_eq!(r.engine.journal().item("rpt-01").unwrap(), Some(FWD));
    assert_eq!(
        r.engine.journal().item("rpt-02").unwrap(),
        Some(ItemState::Unprotected)
    );
    let st = r.engine.job(job).await.unwrap().unwrap();
    let ctx = r.engine.context(job).await.unwrap();
    let fin = ctx
        .main
        .node("protect/vm/rpt-02/finalize-protection")
        .unwrap()
        .id;
    assert!(
        matches!(st.steps[fin].state, StepState::Skipped { .. }),
        "{:?}",
        st.steps[fin].state
    );
    // The fault cleared, a new protect job finishes it on the same replica.
    let host = r.fabric.vm("rpt-02").unwrap().replica.unwrap().host;
    r.fabric.set_faults(FaultSet::default());
    let again = r
        .engine
        .submit(enable(inv, &["rpt-02"], Schedule::Now, T0))
        .await
        .unwrap();
    assert_eq!(
        wait(&r.engine, again, |s| s.is_terminal()).await,
        JobStatus::Succeeded
    );
    assert_eq!(r.fabric.vm("rpt-02").unwrap().replica.unwrap().host, host);
    assert_eq!(r.engine.journal().item("rpt-02").unwrap(), Some(FWD));
    r.engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn offline_initial_replication_exports_and_imports_at_disk_speed() {
    let s = reporting();
    let mut inv = s.inventory.clone();
    inv.policies[0].initial_replication = drplan_engine::plan::model::InitialReplication::Offline {
        export_path: "/export/drplan".into(),
        import_path: "/import/drplan".into(),
    };
    let store: Arc<dyn Store> = mem();
    let clock = Arc::new(TestClock::new(T0));
    let r = start(store, &inv, clock, &[]).await;
    let job = r
        .engine
        .submit(enable(&inv, &["rpt-01"], Schedule::Policy, T0))
        .await
        .unwrap();
    assert_eq!(
        wait(&r.engine, job, |s| s.is_terminal()).await,
        JobStatus::Succeeded
    );
    let ev = history(&r.engine.events(job).await.unwrap());
    assert!(
        ev.contains("exported to /export/drplan") && ev.contains("imported from /import/drplan"),
        "{ev}"
    );
    // 80 GB exported then imported at 4 Gbit/s: 2 × 160 s, × 0.01.
    let ctx = r.engine.context(job).await.unwrap();
    let copy = ctx
        .main
        .node("protect/vm/rpt-01/initial-replication")
        .unwrap()
        .id;
    let st = r.engine.job(job).await.unwrap().unwrap();
    let took = st.steps[copy].finished_at.unwrap() - st.steps[copy].started_at.unwrap();
    assert!(
        (3_200..3_800).contains(&took),
        "offline copy took {took} ms"
    );
    assert_eq!(
        r.fabric.vm("rpt-01").unwrap().initial.unwrap().method,
        "offline"
    );
    r.engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn health_is_critical_while_a_replica_host_is_down() {
    use drplan_engine::protect::health::Level;
    use drplan_engine::protect::status::vm_statuses;
    let s = three_tier();
    let inv = &s.inventory;
    let fabric = sim(inv, &[]);
    let now = T0;
    let item = |vm: &str| protect::default_item(inv, vm);
    let rows = vm_statuses(inv, &fabric, &item, &[], now);
    let sql = rows.iter().find(|r| r.vm == "sql-01").unwrap();
    assert_eq!(sql.health.level, Level::Healthy, "{}", sql.health.reason);
    assert!(sql.health.points > 100, "{}", sql.health.points);
    assert!(sql.health.latest_app_consistent.is_some());
    let host = fabric.vm("sql-01").unwrap().replica.unwrap().host;
    fabric.add_fault(format!("host-down:{host}").parse().unwrap());
    let rows = vm_statuses(inv, &fabric, &item, &[], now);
    let sql = rows.iter().find(|r| r.vm == "sql-01").unwrap();
    assert_eq!(sql.health.level, Level::Critical);
    assert!(sql.health.reason.contains(&host), "{}", sql.health.reason);
    let rpt = rows.iter().find(|r| r.vm == "rpt-01").unwrap();
    assert_eq!(rpt.health.level, Level::NotApplicable);
    assert_eq!(rpt.item, ItemState::Unprotected);
}
