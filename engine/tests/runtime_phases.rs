//! Failover phases as the engine runs them on the shipped three-tier plan
//! (real engine, real scripts, simulated fabric, paused time): the order of
//! what happened, read from the job's own step records; and a job stored
//! with the per-group layout of drplan before phases resuming on the real
//! sled store.

mod runtime_support;

use std::sync::Arc;

use drplan_engine::core::{JobState, JobStatus, StepState};
use drplan_engine::fabric::OpKind;
use drplan_engine::journal::{JobMeta, PlanRecord};
use drplan_engine::plan::compile::NodeKind;
use drplan_engine::plan::model::{CompileLayout, FailoverKind};
use drplan_engine::runtime::TestClock;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{Store, codec};
use runtime_support::*;

/// (key, started_at, finished_at) of every step that ran.
async fn spans(engine: &Harness, job: drplan_engine::store::JobId) -> Vec<(String, u64, u64)> {
    let st: JobState = engine.job(job).await.unwrap().expect("job");
    let ctx = engine.context(job).await.unwrap();
    (0..ctx.main_len())
        .filter_map(|s| {
            let r = &st.steps[s];
            Some((ctx.node(s)?.key.clone(), r.started_at?, r.finished_at?))
        })
        .collect()
}

fn span<'a>(all: &'a [(String, u64, u64)], key: &str) -> &'a (String, u64, u64) {
    all.iter()
        .find(|(k, ..)| k == key)
        .unwrap_or_else(|| panic!("{key} did not run: {all:?}"))
}

fn op_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap()
}

#[tokio::test(start_paused = true)]
async fn planned_failover_shuts_every_primary_down_front_end_first_then_boots_by_dependency() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .expect("submitted");
    answer_verify_health(&engine, job).await;
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::Succeeded);
    let all = spans(&engine, job).await;

    let shutdowns: Vec<_> = all
        .iter()
        .filter(|(k, ..)| op_of(k) == "shutdown-primary")
        .collect();
    assert_eq!(shutdowns.len(), 7, "{all:?}");
    // Every primary is down before anything else starts at all.
    let last_down = shutdowns.iter().map(|(_, _, f)| *f).max().unwrap();
    for (k, started, _) in &all {
        if op_of(k) != "shutdown-primary" {
            assert!(
                *started >= last_down,
                "{k} started before every primary was down"
            );
        }
    }
    // Front end first: web, then application, then database.
    let tier = |t: &'static str| shutdowns.iter().filter(move |(k, ..)| k.starts_with(t));
    let ends = |t: &'static str| tier(t).map(|(_, _, f)| *f).max().unwrap();
    let starts = |t: &'static str| tier(t).map(|(_, s, _)| *s).min().unwrap();
    assert!(ends("web/") <= starts("application/"));
    assert!(ends("application/") <= starts("database/"));
    // The database quiesce now runs after the failover, before the start.
    assert!(span(&all, "database/vm/sql-02/failover").2 <= span(&all, "database/pre/quiesce").1);
    // Boot by dependency: database up, then application (and its post
    // steps), then web.
    let up = |vm: &str, group: &str| span(&all, &format!("{group}/vm/{vm}/start-replica")).clone();
    for app in ["app-01", "app-02", "app-03"] {
        for sql in ["sql-01", "sql-02"] {
            assert!(up(sql, "database").2 <= up(app, "application").1);
        }
    }
    for web in ["web-01", "web-02"] {
        assert!(span(&all, "application/post/settle").2 <= up(web, "web").1);
    }
    // The primaries are off, the replicas run.
    for vm in ["sql-01", "app-02", "web-01"] {
        let v = fabric.vm(vm).unwrap();
        assert!(
            !v.primary.as_ref().unwrap().running,
            "{vm}: primary still runs"
        );
        assert!(
            v.replica.as_ref().unwrap().running,
            "{vm}: replica not running"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn unplanned_failover_with_the_primary_site_down_does_not_wait_on_shutdowns() {
    let s = three_tier();
    // Slow shutdowns too: were anything but a VM's own start waiting for
    // them, the failovers would start late.
    let fabric = sim(
        &s.inventory,
        &["site-down:primary-vmm", "slow:shutdown-primary:web-01:200s"],
    );
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Unplanned))
        .await
        .expect("submitted");
    answer_verify_health(&engine, job).await;
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    let all = spans(&engine, job).await;
    assert_eq!(end, JobStatus::Succeeded, "{all:?}");
    let first_start = all.iter().map(|(_, s, _)| *s).min().unwrap();
    for (k, started, _) in all.iter().filter(|(k, ..)| op_of(k) == "failover") {
        assert_eq!(*started, first_start, "{k} waited for something");
    }
    let web01_down = span(&all, "web/vm/web-01/shutdown-primary");
    for (k, started, _) in all.iter().filter(|(k, ..)| !k.contains("web-01")) {
        assert!(
            *started < web01_down.2
                || k.starts_with("web/post/")
                || k.starts_with("web/vm/web-02/start"),
            "{k} waited for the slow shutdown of web-01"
        );
    }
    // Only the VM's own start waited for its (unreachable) primary.
    assert!(web01_down.2 <= span(&all, "web/vm/web-01/start-replica").1);
}

#[tokio::test(start_paused = true)]
async fn test_failover_never_touches_a_primary() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock, &s.inventory).await;
    let before: Vec<_> = ["sql-01", "app-03", "web-02"]
        .iter()
        .map(|v| fabric.vm(v).unwrap())
        .collect();
    let job = engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .expect("submitted");
    answer_verify_health(&engine, job).await;
    wait(&engine, job, |s| s == JobStatus::AwaitingCleanup).await;
    let all = spans(&engine, job).await;
    // Test VMs are created in one phase, then booted group by group.
    let last_create = all
        .iter()
        .filter(|(k, ..)| op_of(k) == "create-test-vm")
        .map(|(_, _, f)| *f)
        .max()
        .unwrap();
    assert!(
        span(&all, "database/vm/sql-01/start-test-vm").1
            >= span(&all, "database/vm/sql-01/create-test-vm").2
    );
    assert!(span(&all, "application/post/settle").2 <= span(&all, "web/vm/web-01/start-test-vm").1);
    assert!(last_create > 0);
    for (key, _) in fabric.executed() {
        for op in [
            "shutdown-primary",
            "sync-final-delta",
            "/failover/",
            "start-replica",
        ] {
            assert!(!key.contains(op), "a test failover ran {key}");
        }
    }
    let after: Vec<_> = ["sql-01", "app-03", "web-02"]
        .iter()
        .map(|v| fabric.vm(v).unwrap())
        .collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.primary, a.primary, "a primary changed");
        assert_eq!(b.replication, a.replication, "replication changed");
        assert!(a.primary.as_ref().unwrap().running);
    }
}

/// A planned failover stored by drplan before phases (its plan model has no
/// `layout`), halted on a failure with some VMs failed over: a restart of
/// today's engine on the same sled store reads its steps with the per-group
/// numbering, and a retry of the failed step takes it to the end.
#[tokio::test(start_paused = true)]
async fn a_job_stored_with_the_per_group_layout_resumes_with_its_own_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = three_tier();
    s.plan.layout = CompileLayout::Groups;
    let fabric = sim(&s.inventory, &["fail:start-replica:app-01"]);
    let clock = Arc::new(TestClock::new(T0));

    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    let first = engine(store.clone(), fabric.clone(), clock.clone(), &s.inventory).await;
    let job = first
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .expect("submitted");
    wait(&first, job, |s| s == JobStatus::WaitingForOperator).await;
    let failed = awaiting(&first, job).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, "application/vm/app-01/start-replica");
    first.shutdown().await;
    drop(first);

    // What is on disk is what drplan before phases wrote: no `layout`.
    let meta: JobMeta = codec::decode(&store.job_meta(job).unwrap().expect("meta")).unwrap();
    let model = store.text(&meta.model_key).unwrap().expect("model");
    assert!(!model.contains("layout"), "{model}");
    let record: PlanRecord = codec::decode(model.as_bytes()).unwrap();
    assert_eq!(record.plan.layout, CompileLayout::Groups);

    fabric.set_faults(Default::default());
    let second = engine(store.clone(), fabric.clone(), clock, &s.inventory).await;
    let ctx = second.context(job).await.unwrap();
    assert_eq!(ctx.node(0).unwrap().key, "database/pre/quiesce");
    let st = second.job(job).await.unwrap().unwrap();
    let done: Vec<&str> = (0..ctx.main_len())
        .filter(|&i| matches!(st.steps[i].state, StepState::Succeeded { .. }))
        .map(|i| ctx.node(i).unwrap().key.as_str())
        .collect();
    // The per-group layout: the database ran completely, the application's
    // chains up to their start; nothing of the web tier.
    assert!(
        done.contains(&"database/vm/sql-02/start-replica"),
        "{done:?}"
    );
    assert!(done.contains(&"application/vm/app-02/failover"), "{done:?}");
    assert!(!done.iter().any(|k| k.starts_with("web/")), "{done:?}");
    let failed = awaiting(&second, job).await;
    assert_eq!(failed[0].1, "application/vm/app-01/start-replica");
    second.retry(job, failed[0].0, "bob").await.expect("retry");
    answer_verify_health(&second, job).await;
    let end = wait(&second, job, |s| s.is_terminal()).await;
    let st = second.job(job).await.unwrap().unwrap();
    let events = second.events(job).await.unwrap();
    assert_eq!(end, JobStatus::Succeeded, "{}", history(&events));
    // Every VM operation ran exactly once (the retried start twice): none
    // was redone or confused with another under a different numbering.
    for (i, n) in ctx.main.nodes.iter().enumerate() {
        assert!(
            matches!(st.steps[i].state, StepState::Succeeded { .. }),
            "{}: {:?}",
            n.key,
            st.steps[i].state
        );
        if let NodeKind::Vm { vm, op } = &n.kind {
            let expected = if n.key == "application/vm/app-01/start-replica" {
                2
            } else {
                1
            };
            assert_eq!(fabric.executions(OpKind::of(op), vm), expected, "{}", n.key);
        }
    }
    // It kept the old order: the web tier went down only after the
    // application tier ran again.
    let all = spans(&second, job).await;
    assert!(
        span(&all, "application/post/settle").2 <= span(&all, "web/vm/web-01/shutdown-primary").1
    );
    second.shutdown().await;
}
