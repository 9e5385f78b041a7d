//! The simulated fabric's world persisted in the engine's store, atomically
//! with the events it explains (`Engine::start_persisting`).
//!
//! Unlike runtime_crash.rs (where the fabric is an external system that
//! survives drplan's crash), here the simulated world dies with the
//! process: the new engine runs on a NEW SimFabric built from the inventory
//! and restored from the crash copy of the store. The job must still end as
//! an uninterrupted one: every outcome the log holds has its world change
//! restored (the world is never older than the log), and no operation is
//! issued under a new key.

mod runtime_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::{Effect, JobContext, JobEvent, JobStatus, Outcome};
use drplan_engine::fabric::{FabricState, FabricStateError, SimFabric};
use drplan_engine::journal::{Journal, SubmitRequest};
use drplan_engine::plan::compile::{NodeKind, Operation};
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{
    DELTA_PREFIX, Engine, EngineConfig, FULL_KEY, FabricPersistence, TestClock, Update,
};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write, codec};
use runtime_support::*;

/// The fabric's persistence hook with forgetting turned off, so a test can
/// count every key executed over the whole job (the real hook forgets a
/// finished job's keys; `finished_jobs_keys_are_forgotten_durably` checks
/// that).
struct KeepKeys(Arc<SimFabric>);

impl FabricState for KeepKeys {
    fn take_delta(&self) -> Option<Vec<u8>> {
        FabricState::take_delta(&*self.0)
    }
    fn full(&self) -> Vec<u8> {
        self.0.full()
    }
    fn restore_from(
        &self,
        full: Option<Vec<u8>>,
        deltas: Vec<Vec<u8>>,
    ) -> Result<(), FabricStateError> {
        self.0.restore_from(full, deltas)
    }
    fn forget_keys(&self, _prefix: &str) -> usize {
        0
    }
}

struct Running {
    engine: Engine,
    _scratch: tempfile::TempDir,
}

async fn persisting(
    store: Arc<dyn Store>,
    fabric: Arc<SimFabric>,
    state: Arc<dyn FabricState>,
    compact_after: u64,
    clock: Arc<TestClock>,
    s: &Shipped,
) -> Running {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let engine = Engine::start_persisting(
        EngineConfig {
            store,
            fabric,
            scripts: runner(scratch.path()),
            clock,
            max_concurrent_vm_ops: 4,
            inventory: Some(s.inventory.clone()),
        },
        FabricPersistence {
            state,
            compact_after,
        },
    )
    .await
    .expect("engine starts");
    Running {
        engine,
        _scratch: scratch,
    }
}

/// Answers manual steps and completes a test until the job ends.
async fn drive(engine: &Engine, job: JobId) -> JobStatus {
    loop {
        let st = wait(engine, job, |s| {
            s.is_terminal() || s == JobStatus::WaitingForOperator || s == JobStatus::AwaitingCleanup
        })
        .await;
        if st.is_terminal() {
            return st;
        }
        if st == JobStatus::AwaitingCleanup {
            engine
                .complete_test(job, "ok", "bob")
                .await
                .expect("complete");
            continue;
        }
        assert_eq!(st, JobStatus::WaitingForOperator);
        for (step, key, failed) in awaiting(engine, job).await {
            assert!(!failed, "{key} failed");
            engine
                .answer_manual(job, step, true, "bob", None)
                .await
                .expect("answer");
        }
    }
}

/// (op, vm) → distinct keys executed, from the fabric's key records.
fn keys_per_op(fabric: &SimFabric) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for (key, _) in fabric.executed() {
        // key = {job}/{group}/vm/{vm}/{op}/{attempt}
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        *m.entry((parts[4].to_string(), parts[3].to_string()))
            .or_default() += 1;
    }
    m
}

fn key_set(fabric: &SimFabric) -> BTreeSet<String> {
    fabric.executed().into_iter().map(|(k, _)| k).collect()
}

/// A fresh fabric restored from what `store` holds.
fn restored(s: &Shipped, store: &dyn Store) -> Arc<SimFabric> {
    let fabric = sim(&s.inventory, &[]);
    let full = store.blob(FULL_KEY).unwrap();
    let deltas = store.blobs_with_prefix(DELTA_PREFIX).unwrap();
    FabricState::restore_from(&*fabric, full, deltas.into_iter().map(|(_, d)| d).collect())
        .expect("restores");
    fabric
}

/// Keys of the VM operations whose success the store's log holds.
fn durable_vm_outcomes(
    s: &Shipped,
    kind: FailoverKind,
    store: &dyn Store,
    job: JobId,
) -> Vec<String> {
    let ctx = JobContext::new(&s.plan, Operation::failover(kind));
    let mut keys = Vec::new();
    for (_, bytes) in store.events(job, 0).unwrap() {
        let ev: JobEvent = codec::decode(&bytes).unwrap();
        if let JobEvent::StepFinished {
            step,
            attempt,
            outcome: Outcome::Succeeded,
            ..
        } = ev
            && let Some(node) = ctx.node(step)
            && matches!(node.kind, NodeKind::Vm { .. })
        {
            keys.push(format!("{job}/{}/{attempt}", node.key));
        }
    }
    keys
}

/// Runs a job of `kind` uninterrupted with persistence; its key records.
async fn reference(s: &Shipped, kind: FailoverKind) -> BTreeMap<(String, String), usize> {
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let keep = Arc::new(KeepKeys(fabric.clone()));
    let h = persisting(mem(), fabric.clone(), keep, 256, clock, s).await;
    let job = h.engine.submit(submission(s, kind)).await.unwrap();
    drive(&h.engine, job).await;
    h.engine.shutdown().await;
    keys_per_op(&fabric)
}

/// Runs a job until `k` events were recorded; returns the job and whether
/// it got that far (else it ended first).
async fn run_until(engine: &Engine, s: &Shipped, kind: FailoverKind, k: usize) -> (JobId, bool) {
    let mut updates = engine.subscribe_all();
    let job = engine.submit(submission(s, kind)).await.unwrap();
    let mut seen = 0;
    while let Some(u) = updates.next().await {
        match u.update {
            Update::Recorded(_) => seen += 1,
            Update::AwaitingOperator { step } => {
                engine
                    .answer_manual(job, step, true, "bob", None)
                    .await
                    .expect("answer");
            }
            Update::AttemptStarted { .. } => {}
        }
        if seen >= k {
            return (job, true);
        }
        if u.status == Some(JobStatus::AwaitingCleanup) {
            engine
                .complete_test(job, "ok", "bob")
                .await
                .expect("complete");
        }
        if u.status.is_some_and(JobStatus::is_terminal) {
            break;
        }
    }
    (job, false)
}

/// Crash at several points on a MemStore; a new engine on the crash copy
/// with a NEW fabric restored from it finishes the job.
async fn crash_and_restore(kind: FailoverKind) {
    let s = three_tier();
    let reference = reference(&s, kind).await;
    assert!(reference.len() >= 7 * 3, "{reference:?}");

    let mut crashes = 0;
    let mut durable_outcomes = 0;
    for k in [1usize, 2, 3, 5, 8, 12, 17, 23, 30, 38, 47] {
        let store = mem();
        let first_fabric = sim(&s.inventory, &[]);
        let clock = Arc::new(TestClock::new(T0));
        let first = persisting(
            store.clone(),
            first_fabric.clone(),
            Arc::new(KeepKeys(first_fabric.clone())),
            // Compact often on odd points: restore from full + deltas.
            if k % 2 == 1 { 4 } else { 256 },
            clock.clone(),
            &s,
        )
        .await;
        let (job, reached) = run_until(&first.engine, &s, kind, k).await;
        let copy: MemStore = store.crash_copy();
        let executed_before_crash = key_set(&first_fabric);
        first.engine.shutdown().await;
        drop(first);
        if !reached {
            break;
        }
        crashes += 1;

        // The world restored from the crash copy holds the change of every
        // operation whose outcome the log holds, and only operations the
        // first fabric executed.
        let durable = durable_vm_outcomes(&s, kind, &copy, job);
        durable_outcomes += durable.len();
        let restored_keys = key_set(&restored(&s, &copy));
        for key in &durable {
            assert!(
                restored_keys.contains(key),
                "crash after {k}: outcome of {key} is durable but its world change is not"
            );
        }
        assert!(
            restored_keys.is_subset(&executed_before_crash),
            "crash after {k}"
        );

        let second_fabric = sim(&s.inventory, &[]);
        let second = persisting(
            Arc::new(copy),
            second_fabric.clone(),
            Arc::new(KeepKeys(second_fabric.clone())),
            4,
            clock,
            &s,
        )
        .await;
        // The new fabric starts from the restored world, not a fresh one.
        let at_start = key_set(&second_fabric);
        assert!(restored_keys.is_subset(&at_start), "crash after {k}");
        let end = drive(&second.engine, job).await;
        let events = second.engine.events(job).await.unwrap();
        let expected = match kind {
            FailoverKind::Test => JobStatus::TestCompleted,
            _ => JobStatus::Succeeded,
        };
        assert_eq!(end, expected, "crash after {k}: {}", history(&events));
        assert!(
            failures(&events).is_empty(),
            "crash after {k}: {}",
            history(&events)
        );
        // Every operation under one key, executed once over both fabrics:
        // the restored keys by the first (the second answered repeats from
        // their records), the others by the second.
        assert_eq!(keys_per_op(&second_fabric), reference, "crash after {k}");
        assert!(
            second_fabric.residue().is_empty(),
            "crash after {k}: test VMs left: {:?}",
            second_fabric.residue()
        );
        second.engine.shutdown().await;
    }
    eprintln!("{kind:?}: crash points {crashes}; durable VM outcomes checked {durable_outcomes}");
    assert!(crashes >= 6, "only {crashes} crash points reached");
    assert!(durable_outcomes > 0, "no crash point had a durable outcome");
}

#[tokio::test(start_paused = true)]
async fn a_planned_failover_survives_crashes_with_a_restored_fabric() {
    crash_and_restore(FailoverKind::Planned).await;
}

#[tokio::test(start_paused = true)]
async fn a_test_failover_survives_crashes_without_residue() {
    crash_and_restore(FailoverKind::Test).await;
}

/// Without persistence a fresh fabric does not know what the log says was
/// done: the control that shows the crash tests above can fail.
#[tokio::test(start_paused = true)]
async fn without_persistence_a_fresh_fabric_misses_durable_outcomes() {
    let s = three_tier();
    let store = mem();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let h = engine(store.clone(), fabric.clone(), clock, &s.inventory).await;
    let (job, reached) = run_until(&h, &s, FailoverKind::Planned, 12).await;
    assert!(reached);
    let copy = store.crash_copy();
    h.shutdown().await;
    let durable = durable_vm_outcomes(&s, FailoverKind::Planned, &copy, job);
    assert!(!durable.is_empty());
    // Nothing of the world was persisted.
    assert!(copy.blobs_with_prefix("").unwrap().is_empty());
    let fresh = key_set(&restored(&s, &copy));
    assert!(durable.iter().all(|k| !fresh.contains(k)));
}

/// Compaction folds deltas into `fabric/full`; full + deltas restore the
/// live world exactly. Finished jobs' keys are forgotten, durably.
#[tokio::test(start_paused = true)]
async fn compaction_and_forgetting_keep_the_saved_world_equal_to_the_live_one() {
    let s = three_tier();
    let store = mem();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let h = persisting(store.clone(), fabric.clone(), fabric.clone(), 3, clock, &s).await;
    let mut updates = h.engine.subscribe_all();
    let job = h
        .engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    // Mid-job: a full snapshot exists, at most 3 deltas beside it, and the
    // durable world equals the live one once everything is recorded.
    let mut checked_mid = false;
    while let Some(u) = updates.next().await {
        if let Update::AwaitingOperator { step } = u.update {
            // Everything so far is recorded (the job waits for the
            // operator): the saved world must equal the live one.
            let saved = restored(&s, &store.crash_copy()).snapshot();
            let live = fabric.snapshot();
            assert_eq!(saved.vms, live.vms);
            assert_eq!(saved.keys, live.keys);
            assert!(!live.keys.is_empty());
            checked_mid = true;
            h.engine
                .answer_manual(job, step, true, "bob", None)
                .await
                .unwrap();
        }
        if u.status.is_some_and(JobStatus::is_terminal) {
            break;
        }
    }
    assert!(checked_mid, "the job never waited for its manual step");
    assert_eq!(
        h.engine.status(job).await.unwrap(),
        Some(JobStatus::Succeeded)
    );
    // Let the forgetting commit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copy = store.crash_copy();
    assert!(copy.blob(FULL_KEY).unwrap().is_some(), "never compacted");
    let deltas = copy.blobs_with_prefix(DELTA_PREFIX).unwrap();
    assert!(deltas.len() <= 3, "{} deltas kept", deltas.len());
    assert!(fabric.executed().is_empty(), "keys of a finished job kept");
    let saved = restored(&s, &copy).snapshot();
    let live = fabric.snapshot();
    assert_eq!(saved.vms, live.vms);
    assert!(saved.keys.is_empty(), "forgetting not persisted");
    // The failover really changed the world (so equality means something).
    let fresh = sim(&s.inventory, &[]).snapshot();
    assert_ne!(saved.vms, fresh.vms);
    h.engine.shutdown().await;
}

/// The same crash-and-restore on the on-disk store: everything is dropped
/// and the store reopened, as a new process would.
#[tokio::test(start_paused = true)]
async fn on_sled_a_reopened_store_restores_the_fabric() {
    let s = three_tier();
    let reference = reference(&s, FailoverKind::Planned).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let clock = Arc::new(TestClock::new(T0));
    let (job, durable, before) = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        let fabric = sim(&s.inventory, &[]);
        let first = persisting(
            store.clone(),
            fabric.clone(),
            Arc::new(KeepKeys(fabric.clone())),
            4,
            clock.clone(),
            &s,
        )
        .await;
        let (job, reached) = run_until(&first.engine, &s, FailoverKind::Planned, 20).await;
        assert!(reached);
        first.engine.shutdown().await;
        drop(first);
        // In-flight operations end (without recording) and let go of the
        // engine, and with it the store.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let durable = durable_vm_outcomes(&s, FailoverKind::Planned, &*store, job);
        (job, durable, key_set(&fabric))
    };
    assert!(!durable.is_empty());
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).expect("reopens"));
    let restored_keys = key_set(&restored(&s, &*store));
    for key in &durable {
        assert!(
            restored_keys.contains(key),
            "{key} durable without its world"
        );
    }
    assert!(restored_keys.is_subset(&before));
    let fabric = sim(&s.inventory, &[]);
    let second = persisting(
        store,
        fabric.clone(),
        Arc::new(KeepKeys(fabric.clone())),
        4,
        clock,
        &s,
    )
    .await;
    let end = drive(&second.engine, job).await;
    let events = second.engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::Succeeded, "{}", history(&events));
    assert!(failures(&events).is_empty(), "{}", history(&events));
    assert_eq!(keys_per_op(&fabric), reference);
    second.engine.shutdown().await;
}

fn marker(key: &str) -> Write {
    Write::Blob {
        key: key.to_string(),
        payload: Some(key.as_bytes().to_vec()),
    }
}

/// `record_with` writes its extras in the event's batch (durable with it)
/// and nothing for a repeated delivery; `record_then` does not even compute
/// them then (a fabric delta taken for nothing would be lost).
#[test]
fn journal_extras_go_with_their_event_and_only_with_it() {
    let s = three_tier();
    let store = mem();
    let j = Journal::open(store.clone()).unwrap();
    let (job, _) = j
        .submit(SubmitRequest {
            plan: s.plan.clone(),
            plan_text: s.text.clone(),
            operation: Operation::failover(FailoverKind::Planned),
            requested_by: "alice".into(),
            at: T0,
            start_at: None,
            parent: None,
        })
        .unwrap();
    let fx = j
        .record_with(job, JobEvent::Started { at: T0 + 1 }, vec![marker("start")])
        .unwrap();
    let copy = store.crash_copy();
    assert_eq!(copy.blob("start").unwrap(), Some(b"start".to_vec()));
    assert_eq!(copy.last_seq(job).unwrap(), Some(1));
    let (step, attempt) = fx
        .iter()
        .find_map(|e| match e {
            Effect::RunVmOp { step, attempt, .. } | Effect::RunScript { step, attempt, .. } => {
                Some((*step, *attempt))
            }
            _ => None,
        })
        .expect("something runs after the start");
    let done = JobEvent::StepFinished {
        step,
        attempt,
        outcome: Outcome::Succeeded,
        output_tail: None,
        values: Default::default(),
        at: T0 + 2,
        warnings: Vec::new(),
        recovery_point: None,
    };
    j.record_with(job, done.clone(), vec![marker("done")])
        .unwrap();
    // The repeat is dropped: neither its extras nor a call of the hook.
    assert_eq!(
        j.record_with(job, done.clone(), vec![marker("repeat")])
            .unwrap(),
        vec![]
    );
    let mut called = false;
    let fx = j
        .record_then(job, done, &mut || {
            called = true;
            Ok(vec![marker("lazy")])
        })
        .unwrap();
    assert!(fx.is_empty());
    assert!(!called, "extras computed for a dropped event");
    // A refused event writes none either.
    assert!(
        j.record_with(
            job,
            JobEvent::Started { at: T0 + 3 },
            vec![marker("refused")]
        )
        .map_or(true, |fx| fx.is_empty())
    );
    j.commit_extra(&mut || Ok(vec![marker("alone")])).unwrap();
    let copy = store.crash_copy();
    let keys: Vec<String> = copy
        .blobs_with_prefix("")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["alone", "done", "start"]);
    assert_eq!(copy.last_seq(job).unwrap(), Some(2));
}

/// A damaged saved world stops the start with an error (no panic, and no
/// job resumed against a world that is not the saved one).
#[tokio::test(start_paused = true)]
async fn a_damaged_saved_world_is_an_error_not_a_panic() {
    let s = three_tier();
    for (key, payload) in [
        (
            format!("{DELTA_PREFIX}00000000000000000000"),
            b"garbage".to_vec(),
        ),
        (FULL_KEY.to_string(), b"DRPR".to_vec()),
        (format!("{DELTA_PREFIX}not-a-number"), b"x".to_vec()),
    ] {
        let store = mem();
        store
            .apply(&[Write::Blob {
                key: key.clone(),
                payload: Some(payload),
            }])
            .unwrap();
        let fabric = sim(&s.inventory, &[]);
        let scratch = tempfile::tempdir().unwrap();
        let err = Engine::start_persisting(
            EngineConfig {
                store,
                fabric: fabric.clone(),
                scripts: runner(scratch.path()),
                clock: Arc::new(TestClock::new(T0)),
                max_concurrent_vm_ops: 4,
                inventory: Some(s.inventory.clone()),
            },
            FabricPersistence::new(fabric),
        )
        .await
        .expect_err(&key);
        assert!(!err.to_string().is_empty(), "{key}");
    }
}

/// The crash soak's residue (seed 20261126: `TestCompleted`, yet the saved
/// world kept `app-01-test` and `sql-02-test`). A restore without a full
/// snapshot applies the store's deltas to the world the fabric was built
/// with, which the CLI loads from its `sim-state.json`; a process killed
/// mid-cleanup may have saved that file AHEAD of the store: test VMs
/// deleted (with their key records) in memory, the deltas never durable.
/// The next process answers the repeated deletes from those key records,
/// which changes no VM, so unless the base itself is recorded the store's
/// world keeps the test VMs the job reports cleaned up. Keys are kept
/// (as the soak does, `DRPLAN_SIM_KEEP_OP_KEYS=1`) so the records outlive
/// the job; without that, a killed cleanup has the same records anyway.
///
/// `legacy`: the store holds deltas only (as every data directory did
/// before the first engine start recorded the base), so the restore starts
/// from the file's world; else from the store's full snapshot.
async fn base_world_ahead_of_the_store(legacy: bool) {
    use drplan_engine::fabric::{FaultSet, SimConfig};
    let s = three_tier();
    let store = mem();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let first = persisting(
        store.clone(),
        fabric.clone(),
        Arc::new(KeepKeys(fabric.clone())),
        256,
        clock.clone(),
        &s,
    )
    .await;
    let job = first
        .engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    // Up to the open test: its VMs exist, and so does the store's record
    // of them (deltas only: 256 before a compaction).
    loop {
        let st = wait(&first.engine, job, |s| {
            s.is_terminal() || s == JobStatus::WaitingForOperator || s == JobStatus::AwaitingCleanup
        })
        .await;
        if st == JobStatus::AwaitingCleanup {
            break;
        }
        assert_eq!(st, JobStatus::WaitingForOperator, "ended early");
        for (step, _, _) in awaiting(&first.engine, job).await {
            first
                .engine
                .answer_manual(job, step, true, "bob", None)
                .await
                .unwrap();
        }
    }
    let created = fabric.residue().len();
    assert!(created >= 2, "only {created} test VMs");
    let copy = Arc::new(store.crash_copy());
    if legacy {
        copy.apply(&[Write::Blob {
            key: FULL_KEY.to_string(),
            payload: None,
        }])
        .unwrap();
        copy.flush().unwrap();
    }
    assert!(copy.blob(FULL_KEY).unwrap().is_none() == legacy);

    // The first process cleans up in memory and saves that world beside
    // the store (`sim-state.json`); none of it reaches the crash copy.
    first.engine.complete_test(job, "ok", "bob").await.unwrap();
    let end = wait(&first.engine, job, JobStatus::is_terminal).await;
    assert_eq!(end, JobStatus::TestCompleted);
    assert!(fabric.residue().is_empty());
    let ahead = fabric.snapshot();
    first.engine.shutdown().await;
    drop(first);

    // The next process: world from the file, store from the crash copy.
    let second_fabric = Arc::new(
        SimFabric::restore(
            &s.inventory,
            SimConfig::default().with_time_scale(0.01),
            FaultSet::default(),
            ahead,
        )
        .expect("the saved world fits"),
    );
    let second = persisting(
        copy.clone(),
        second_fabric.clone(),
        Arc::new(KeepKeys(second_fabric.clone())),
        256,
        clock,
        &s,
    )
    .await;
    assert_eq!(
        second.engine.status(job).await.unwrap(),
        Some(JobStatus::AwaitingCleanup)
    );
    second.engine.complete_test(job, "ok", "bob").await.unwrap();
    let end = wait(&second.engine, job, JobStatus::is_terminal).await;
    let events = second.engine.events(job).await.unwrap();
    assert_eq!(end, JobStatus::TestCompleted, "{}", history(&events));
    assert!(second_fabric.residue().is_empty());
    second.engine.shutdown().await;

    // What the store alone says (a store export, the crash soak's check,
    // a data directory whose `sim-state.json` is gone): the live world.
    let saved = restored(&s, &copy.crash_copy());
    assert!(
        saved.residue().is_empty(),
        "the store's world keeps test VMs of a completed test: {:?}",
        saved.residue()
    );
    let live = second_fabric.snapshot();
    let saved = saved.snapshot();
    assert_eq!(saved.vms, live.vms);
    assert_eq!(saved.keys, live.keys);
}

#[tokio::test(start_paused = true)]
async fn a_base_world_ahead_of_a_store_without_full_snapshot_is_recorded_in_it() {
    base_world_ahead_of_the_store(true).await;
}

#[tokio::test(start_paused = true)]
async fn a_world_saved_ahead_of_the_store_does_not_outlive_it() {
    base_world_ahead_of_the_store(false).await;
}
