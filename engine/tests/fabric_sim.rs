//! The simulated fabric: idempotency by key, legality, placement, test VM
//! cleanup, latencies in virtual time, snapshot and restore.

mod fabric_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drplan_engine::fabric::sim::{Protection, Replication};
use drplan_engine::fabric::{
    Fabric, FabricError, Fault, FaultSet, OpContext, OpKey, OpKind, SimConfig, SimFabric, SimState,
};
use drplan_engine::plan::compile::{RecoveryPoint, VmOp};
use drplan_engine::plan::model::{Direction, FailoverKind, ProtectionState};
use fabric_support::*;

const H: u64 = 3_600_000;

#[tokio::test]
async fn the_same_key_runs_once_and_returns_the_same_report() {
    let inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Planned);
    let first = run_ok(&f, "j1", "sql-01", &planned_chain(), &cx).await;
    let before = f.snapshot();
    let again = run_ok(&f, "j1", "sql-01", &planned_chain(), &cx).await;
    assert_eq!(first, again);
    assert_eq!(f.duplicate_count(), 4);
    for op in [
        OpKind::ShutdownPrimary,
        OpKind::SyncFinalDelta,
        OpKind::Failover,
        OpKind::StartReplica,
    ] {
        assert_eq!(f.executions(op, "sql-01"), 1, "{op}");
    }
    assert!(f.executed().iter().all(|(_, calls)| *calls == 2));
    // The world did not change (only the call counters did).
    let after = f.snapshot();
    assert_eq!(before.vms, after.vms);
    assert!(after.generation > before.generation);
    // A recorded failure is returned again too, and a key names one op.
    let k = OpKey::from("j9/sql-01/commit/1");
    let e1 = f.create_test_vm(&k, "sql-01", None, &cx).await.unwrap_err();
    let e2 = f.create_test_vm(&k, "sql-01", None, &cx).await.unwrap_err();
    assert_eq!(e1, e2);
    let e3 = f.commit(&k, "sql-01", &plain()).await.unwrap_err();
    assert!(matches!(e3, FabricError::KeyReused { .. }), "{e3:?}");
    assert!(!f.vm("sql-01").unwrap().failover.unwrap().committed);
}

#[tokio::test(start_paused = true)]
async fn concurrent_repeats_of_a_key_wait_for_the_one_execution() {
    let inv = shipped();
    let f = Arc::new(SimFabric::new(
        &inv,
        SimConfig::default(),
        FaultSet::default(),
    ));
    let dynf: Arc<dyn Fabric> = f.clone();
    let cx = ctx(FailoverKind::Test);
    let op = VmOp::CreateTestVm {
        network: Some("test-bubble".into()),
    };
    let k = key("t1", "web-01", &op, 1);
    let t0 = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (f, k, op) = (dynf.clone(), k.clone(), op.clone());
            tokio::spawn(async move { f.run(&k, "web-01", &op, &cx).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(f.executions(OpKind::CreateTestVm, "web-01"), 1);
    assert_eq!(f.duplicate_count(), 4);
    // They all waited for the one latency, not five.
    assert_eq!(t0.elapsed(), results[0].duration());
    assert_eq!(f.residue().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_operation_did_nothing_and_can_run_again() {
    let inv = shipped();
    let f = SimFabric::new(&inv, SimConfig::default(), FaultSet::default());
    let cx = ctx(FailoverKind::Planned);
    let k = OpKey::from("j1/web-01/shutdown-primary/1");
    let cancelled = tokio::time::timeout(
        Duration::from_secs(1),
        f.shutdown_primary(&k, "web-01", false, &cx),
    )
    .await;
    assert!(cancelled.is_err(), "20 s latency, 1 s timeout");
    assert!(f.vm("web-01").unwrap().primary.unwrap().running);
    assert!(f.executed().is_empty());
    f.shutdown_primary(&k, "web-01", false, &cx).await.unwrap();
    assert!(!f.vm("web-01").unwrap().primary.unwrap().running);
}

#[tokio::test]
async fn illegal_operations_fail_like_a_real_fabric() {
    let mut inv = shipped();
    inv.vms
        .iter_mut()
        .find(|v| v.name == "mon-01")
        .unwrap()
        .protection = ProtectionState::Unprotected;
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Unplanned);
    let not_ready = |e: FabricError, text: &str| {
        assert!(matches!(e, FabricError::NotReady { .. }), "{e:?}");
        assert!(!e.retryable());
        assert!(e.to_string().contains(text), "`{e}` lacks `{text}`");
    };
    // Failover of a VM that is not replicating.
    let e = f
        .failover(&"a".into(), "mon-01", RecoveryPoint::Latest, &cx)
        .await
        .unwrap_err();
    not_ready(e, "not protected");
    // Start replica before failover; commit before failover.
    let e = f
        .start_replica(&"b".into(), "web-01", &cx)
        .await
        .unwrap_err();
    not_ready(e, "has not failed over");
    let e = f.commit(&"c".into(), "web-01", &plain()).await.unwrap_err();
    not_ready(e, "nothing to commit");
    let e = f
        .reverse_replicate(&"c2".into(), "web-01", &plain())
        .await
        .unwrap_err();
    not_ready(e, "has not failed over");
    // Sync with the primary still running.
    let e = f
        .sync_final_delta(&"d".into(), "web-01", &ctx(FailoverKind::Planned))
        .await
        .unwrap_err();
    not_ready(e, "still running");
    // A failover while a test is open; a second test while one is open.
    let t = ctx(FailoverKind::Test);
    run_ok(&f, "t1", "app-01", &test_chain(None), &t).await;
    let e = f
        .failover(&"e".into(), "app-01", RecoveryPoint::Latest, &cx)
        .await
        .unwrap_err();
    not_ready(e, "open test failover");
    let e = f
        .create_test_vm(&"e2".into(), "app-01", None, &t)
        .await
        .unwrap_err();
    not_ready(e, "clean that test up first");
    // A test of a failed-over VM; a failover in the wrong direction.
    run_ok(
        &f,
        "j1",
        "web-01",
        &unplanned_chain(RecoveryPoint::Latest),
        &cx,
    )
    .await;
    let e = f
        .create_test_vm(&"f".into(), "web-01", None, &t)
        .await
        .unwrap_err();
    not_ready(e, "has failed over");
    let back = ctx_dir(FailoverKind::Planned, Direction::Reverse, NOW);
    let e = f
        .shutdown_primary(&"g".into(), "web-02", false, &back)
        .await
        .unwrap_err();
    not_ready(e, "a reverse failover needs it to replicate reverse");
    // Roll back after commit; change the recovery point after commit.
    f.commit(&"h".into(), "web-01", &plain()).await.unwrap();
    let e = f
        .rollback(&"i".into(), "web-01", &plain())
        .await
        .unwrap_err();
    not_ready(e, "cannot be rolled back");
    let e = f
        .change_recovery_point(&"j".into(), "web-01", RecoveryPoint::Latest, &plain())
        .await
        .unwrap_err();
    not_ready(e, "discarded");
    let e = f.start_replica(&"k".into(), "nope", &cx).await.unwrap_err();
    assert_eq!(e, FabricError::UnknownVm { vm: "nope".into() });
}

#[tokio::test]
async fn replicas_are_placed_deterministically_and_balanced() {
    let inv = shipped();
    let a = instant(&inv);
    let b = instant(&inv);
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    // Unprotected VMs have no replica until `drplan protect` creates one.
    for vm in inv
        .vms
        .iter()
        .filter(|v| v.protection != drplan_engine::plan::model::ProtectionState::Unprotected)
    {
        let r = a.vm(&vm.name).unwrap().replica.unwrap();
        assert_eq!(r, b.vm(&vm.name).unwrap().replica.unwrap());
        assert_eq!(
            (r.site.as_str(), r.cloud.as_str()),
            ("secondary-vmm", "gold-dr")
        );
        *per_host.entry(r.host).or_default() += 1;
    }
    assert_eq!(per_host.len(), 4, "{per_host:?}");
    let (min, max) = (
        per_host.values().min().unwrap(),
        per_host.values().max().unwrap(),
    );
    assert!(max - min <= 1, "{per_host:?}");
}

#[tokio::test]
async fn test_vms_live_on_the_replica_host_and_cleanup_leaves_no_residue() {
    let inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Test);
    let vms = ["sql-01", "sql-02", "app-01", "web-01"];
    for vm in vms {
        let r = run_ok(&f, "t1", vm, &test_chain(Some("test-bubble")), &cx).await;
        let replica_host = f.vm(vm).unwrap().replica.unwrap().host;
        assert_eq!(r[0].host.as_deref(), Some(replica_host.as_str()));
        assert_eq!(r[0].test_vm.as_deref(), Some(format!("{vm}-test").as_str()));
        let t = f.vm(vm).unwrap().test_vm.unwrap();
        assert!(t.running);
        assert_eq!(t.host, replica_host);
    }
    // Production and replication are untouched by a test.
    let web = f.vm("web-01").unwrap();
    assert!(web.primary.as_ref().unwrap().running);
    assert!(matches!(
        web.replication,
        Replication::Active {
            final_delta: None,
            ..
        }
    ));
    assert!(!web.replica.as_ref().unwrap().running);
    assert_eq!(f.residue().len(), 4);
    for vm in vms {
        let r = f
            .delete_test_vm(
                &format!("c1/{vm}/delete-test-vm/1").as_str().into(),
                vm,
                &plain(),
            )
            .await
            .unwrap();
        assert!(r.remaining.is_empty());
        assert_eq!(r.test_vm, Some(format!("{vm}-test")));
    }
    assert!(f.residue().is_empty(), "{:?}", f.residue());
    // Nothing to delete is a success that says so.
    let r = f
        .delete_test_vm(&"c1/app-02/delete-test-vm/1".into(), "app-02", &plain())
        .await
        .unwrap();
    assert!(r.summary.contains("nothing to delete"));
}

#[tokio::test]
async fn a_cleanup_on_a_down_host_is_reported_incomplete() {
    let inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Test);
    run_ok(&f, "t1", "web-01", &test_chain(None), &cx).await;
    run_ok(&f, "t1", "web-02", &test_chain(None), &cx).await;
    let host = f.vm("web-01").unwrap().test_vm.unwrap().host;
    f.add_fault(Fault::HostDown { host: host.clone() });
    let e = f
        .delete_test_vm(&"c1/web-01/delete-test-vm/1".into(), "web-01", &plain())
        .await
        .unwrap_err();
    assert!(e.retryable());
    assert!(
        e.to_string().contains("web-01-test") && e.to_string().contains("it remains"),
        "{e}"
    );
    let web02_host = f.vm("web-02").unwrap().test_vm.unwrap().host;
    assert_ne!(web02_host, host, "placement spreads these two");
    f.delete_test_vm(&"c1/web-02/delete-test-vm/1".into(), "web-02", &plain())
        .await
        .unwrap();
    let residue = f.residue();
    assert_eq!(residue.len(), 1);
    assert_eq!(
        (residue[0].vm.as_str(), residue[0].host.as_str()),
        ("web-01", host.as_str())
    );
    assert_eq!(residue[0].created_by, "t1/web-01/create-test-vm/1");
    f.set_faults(FaultSet::default());
    f.delete_test_vm(&"c1/web-01/delete-test-vm/2".into(), "web-01", &plain())
        .await
        .unwrap();
    assert!(f.residue().is_empty());
}

#[tokio::test(start_paused = true)]
async fn latencies_are_scaled_and_slept_in_virtual_time() {
    let inv = shipped();
    let cfg = SimConfig {
        time_scale: 0.01,
        jitter: 0.2,
        seed: 7,
        ..SimConfig::default()
    };
    let f = SimFabric::new(&inv, cfg.clone(), FaultSet::default());
    let cx = ctx(FailoverKind::Planned);
    let mut total = Duration::ZERO;
    for (i, op) in planned_chain().iter().enumerate() {
        let t0 = tokio::time::Instant::now();
        let r = f
            .run(&key("j1", "app-03", op, 1), "app-03", op, &cx)
            .await
            .unwrap();
        let took = t0.elapsed();
        let base = SimConfig::default_latency(OpKind::of(op)).mul_f64(0.01);
        assert!(
            took >= base.mul_f64(0.8) && took <= base.mul_f64(1.2),
            "step {i} {}: {took:?} vs {base:?}",
            op.name()
        );
        // The report says how long it took, to the millisecond.
        assert_eq!(r.duration_ms, took.as_millis() as u64);
        total += took;
    }
    // 20 + 30 + 40 + 60 s of fabric time at 1 %: about 1.5 s.
    assert!(
        total > Duration::from_millis(1200) && total < Duration::from_millis(1800),
        "{total:?}"
    );
    // Deterministic: the same seed and keys give the same delays.
    let g = SimFabric::new(&inv, cfg.clone(), FaultSet::default());
    let t0 = tokio::time::Instant::now();
    run_ok(&g, "j1", "app-03", &planned_chain(), &cx).await;
    assert_eq!(t0.elapsed(), total);
    // Configured latencies replace the defaults.
    let mut cfg = cfg;
    cfg.latencies
        .insert(OpKind::ShutdownPrimary, Duration::from_secs(1000));
    cfg.jitter = 0.0;
    let h = SimFabric::new(&inv, cfg, FaultSet::default());
    let t0 = tokio::time::Instant::now();
    h.shutdown_primary(&"x".into(), "web-01", false, &cx)
        .await
        .unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    // Time scale 0 does not sleep at all.
    let z = instant(&inv);
    let t0 = tokio::time::Instant::now();
    run_ok(&z, "j1", "app-03", &planned_chain(), &cx).await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn recovery_points_follow_the_policy_and_the_request() {
    let inv = shipped();
    let f = instant(&inv);
    // The shipped policy: every 5 minutes, 12 h retention, app-consistent every 4 h.
    let pts = f.recovery_points("sql-01", NOW + 7 * 60_000).unwrap();
    assert_eq!(pts.len(), 145);
    assert_eq!(pts.last().unwrap().at, NOW + 5 * 60_000);
    let cx = ctx_dir(
        FailoverKind::Unplanned,
        Direction::Forward,
        NOW + 7 * 60_000,
    );
    let r = f
        .failover(
            &"u1".into(),
            "sql-01",
            RecoveryPoint::LatestAppConsistent,
            &cx,
        )
        .await
        .unwrap();
    let p = r.recovery_point.unwrap();
    assert!(p.app_consistent);
    assert_eq!(p.at, NOW); // NOW is midnight: a multiple of 4 h
    assert_eq!(p.requested, RecoveryPoint::LatestAppConsistent);
    // Replication stopped at failover: later, no newer points appear.
    let later = f.recovery_points("sql-01", NOW + 5 * H).unwrap();
    assert_eq!(later.last().unwrap().at, NOW + 5 * 60_000);
    // Before commit the point can change; after, only it is left.
    let at = (NOW - 2 * H + 1000) / 1000;
    let r = f
        .change_recovery_point(&"u2".into(), "sql-01", RecoveryPoint::At(at), &cx)
        .await
        .unwrap();
    assert_eq!(r.recovery_point.unwrap().at, NOW - 2 * H);
    let too_old = f
        .change_recovery_point(
            &"u3".into(),
            "sql-01",
            RecoveryPoint::At((NOW - 20 * H) / 1000),
            &cx,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(too_old, FabricError::NoRecoveryPoint { .. }),
        "{too_old:?}"
    );
    f.commit(&"u4".into(), "sql-01", &plain()).await.unwrap();
    let kept = f.recovery_points("sql-01", NOW + 5 * H).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].at, NOW - 2 * H);
    // A planned failover lands on the final delta: no data loss.
    let cx = ctx_dir(FailoverKind::Planned, Direction::Forward, NOW + 123_456);
    let r = run_ok(&f, "p1", "sql-02", &planned_chain(), &cx).await;
    assert_eq!(r[2].recovery_point.unwrap().at, NOW + 123_456);
}

#[tokio::test]
async fn failover_commit_reverse_failback_and_rollback() {
    let inv = shipped();
    let f = instant(&inv);
    run_ok(
        &f,
        "j1",
        "app-01",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    run_ok(
        &f,
        "j2",
        "app-01",
        &[VmOp::Commit, VmOp::ReverseReplicate],
        &plain(),
    )
    .await;
    let vm = f.vm("app-01").unwrap();
    assert_eq!(vm.direction, Direction::Reverse);
    assert!(matches!(vm.replication, Replication::Active { .. }));
    assert!(vm.replica.as_ref().unwrap().running && !vm.primary.as_ref().unwrap().running);
    // Fail back, then replicate forward again: where it all started.
    let back = ctx_dir(FailoverKind::Planned, Direction::Reverse, NOW + H);
    run_ok(&f, "j3", "app-01", &planned_chain(), &back).await;
    run_ok(
        &f,
        "j4",
        "app-01",
        &[VmOp::Commit, VmOp::ReverseReplicate],
        &OpContext::at(NOW + 2 * H),
    )
    .await;
    let vm = f.vm("app-01").unwrap();
    assert_eq!(vm.direction, Direction::Forward);
    assert!(vm.primary.as_ref().unwrap().running && !vm.replica.as_ref().unwrap().running);

    // Rollback of an uncommitted failover: the primary runs again.
    run_ok(
        &f,
        "j5",
        "app-02",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    let r = f.rollback(&"r1".into(), "app-02", &plain()).await.unwrap();
    assert!(r.summary.contains("replica on"), "{}", r.summary);
    let vm = f.vm("app-02").unwrap();
    assert!(vm.failover.is_none() && vm.primary.as_ref().unwrap().running);
    assert!(!vm.replica.as_ref().unwrap().running);
    assert!(matches!(
        vm.replication,
        Replication::Active {
            final_delta: None,
            ..
        }
    ));
    let r = f.rollback(&"r2".into(), "app-02", &plain()).await.unwrap();
    assert!(r.summary.contains("nothing to roll back"));
    // A planned failover stopped after the final delta rolls back too.
    run_ok(
        &f,
        "j6",
        "app-03",
        &planned_chain()[..2],
        &ctx(FailoverKind::Planned),
    )
    .await;
    f.rollback(&"r3".into(), "app-03", &plain()).await.unwrap();
    assert!(f.vm("app-03").unwrap().primary.unwrap().running);

    // Stop replication freezes points; disable protection deletes the replica.
    f.stop_replication(&"s1".into(), "web-02", &plain())
        .await
        .unwrap();
    assert!(matches!(
        f.vm("web-02").unwrap().replication,
        Replication::Stopped { .. }
    ));
    let r = f
        .disable_protection(&"d1".into(), "web-02", true, &plain())
        .await
        .unwrap();
    assert!(r.summary.contains("deleted its replica"), "{}", r.summary);
    let vm = f.vm("web-02").unwrap();
    assert_eq!(vm.protection, Protection::Unprotected);
    assert!(vm.replica.is_none() && vm.primary.is_some());
    f.disable_protection(&"d2".into(), "web-01", false, &plain())
        .await
        .unwrap();
    assert!(f.vm("web-01").unwrap().replica.is_some());
}

#[tokio::test]
async fn snapshot_and_restore_mid_scenario() {
    let inv = shipped();
    let f = with_faults(&inv, &["fail-once:failover:web-01"]);
    let cx = ctx(FailoverKind::Planned);
    let chain = planned_chain();
    run_ok(&f, "j1", "web-01", &chain[..2], &cx).await;
    run_ok(
        &f,
        "t1",
        "sql-01",
        &test_chain(Some("test-bubble")),
        &ctx(FailoverKind::Test),
    )
    .await;
    // The fail-once fault fires before the snapshot: it must not fire again.
    let e = f
        .run(&key("j1", "web-01", &chain[2], 1), "web-01", &chain[2], &cx)
        .await;
    assert!(e.is_err());
    let state = f.snapshot();
    let json = serde_json::to_vec(&state).unwrap();
    let saved: SimState = serde_json::from_slice(&json).unwrap();
    assert_eq!(saved, state);
    let g = SimFabric::restore(&inv, SimConfig::instant(), f.faults(), saved).unwrap();
    // Re-issued keys are answered from the record, without running again.
    let again = run_chain(&g, "j1", "web-01", &chain, &cx).await;
    assert!(again.1.is_some(), "attempt 1 of the failover stays failed");
    assert_eq!(g.executions(OpKind::ShutdownPrimary, "web-01"), 1);
    assert!(g.duplicate_count() >= 3);
    // The scenario goes on where it was.
    let op = &chain[2];
    g.run(&key("j1", "web-01", op, 2), "web-01", op, &cx)
        .await
        .unwrap();
    g.run(&key("j1", "web-01", &chain[3], 1), "web-01", &chain[3], &cx)
        .await
        .unwrap();
    assert!(g.vm("web-01").unwrap().replica.unwrap().running);
    assert_eq!(g.residue().len(), 1, "the open test survives the restart");
    g.delete_test_vm(&"c1".into(), "sql-01", &plain())
        .await
        .unwrap();
    assert!(g.residue().is_empty());

    // Restoring against an inventory that lost a VM is refused; one that
    // gained a VM starts it fresh.
    let mut smaller = inv.clone();
    smaller.vms.retain(|v| v.name != "mon-01");
    let err = SimFabric::restore(
        &smaller,
        SimConfig::instant(),
        FaultSet::default(),
        g.snapshot(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("mon-01"), "{err}");
    let mut bigger = inv.clone();
    let mut new_vm = bigger.vms[0].clone();
    new_vm.name = "new-01".into();
    bigger.vms.push(new_vm);
    let h = SimFabric::restore(
        &bigger,
        SimConfig::instant(),
        FaultSet::default(),
        g.snapshot(),
    )
    .unwrap();
    assert!(h.vm("new-01").is_some());
    let mut bad = g.snapshot();
    bad.format = 99;
    assert!(SimFabric::restore(&inv, SimConfig::instant(), FaultSet::default(), bad).is_err());
}

#[tokio::test]
async fn deltas_rebuild_the_state_and_forgotten_keys_go() {
    let inv = shipped();
    let f = instant(&inv);
    let mut persisted = f.snapshot();
    assert!(f.take_delta().is_empty());
    let mut deltas = Vec::new();
    run_ok(
        &f,
        "1",
        "web-01",
        &planned_chain()[..2],
        &ctx(FailoverKind::Planned),
    )
    .await;
    deltas.push(f.take_delta());
    run_ok(
        &f,
        "1",
        "web-01",
        &planned_chain()[2..],
        &ctx(FailoverKind::Planned),
    )
    .await;
    run_ok(
        &f,
        "2",
        "sql-01",
        &test_chain(None),
        &ctx(FailoverKind::Test),
    )
    .await;
    // A repeat changes only its call counter.
    run_ok(
        &f,
        "2",
        "sql-01",
        &test_chain(None),
        &ctx(FailoverKind::Test),
    )
    .await;
    deltas.push(f.take_delta());
    assert_eq!(deltas[0].vms.len(), 1);
    assert_eq!(deltas[0].keys.len(), 2);
    assert_eq!(deltas[1].vms.len(), 2);
    assert_eq!(deltas[1].keys.len(), 4);
    assert_eq!(f.forget_keys("1/"), 4);
    deltas.push(f.take_delta());
    assert_eq!(deltas[2].keys.values().filter(|r| r.is_none()).count(), 4);
    for d in &deltas {
        persisted.apply(d);
    }
    // An old delta applied late does not roll anything back.
    persisted.apply(&deltas[0]);
    assert_eq!(persisted, f.snapshot());
    assert_eq!(f.executed().len(), 2);
    assert!(f.executed().iter().all(|(k, _)| k.starts_with("2/")));
}

#[tokio::test]
async fn run_dispatches_every_vm_op_to_its_method() {
    let inv = shipped();
    let f = instant(&inv);
    let planned = ctx(FailoverKind::Planned);
    let test = ctx(FailoverKind::Test);
    // Each op in an order where it is legal, with the context it needs.
    let script: Vec<(&str, VmOp, OpContext)> = vec![
        ("sql-02", VmOp::CreateTestVm { network: None }, test),
        ("sql-02", VmOp::StartTestVm, test),
        ("sql-02", VmOp::DeleteTestVm, plain()),
        (
            "sql-02",
            VmOp::ShutdownPrimary {
                if_reachable: false,
            },
            planned,
        ),
        ("sql-02", VmOp::SyncFinalDelta, planned),
        (
            "sql-02",
            VmOp::Failover {
                recovery_point: RecoveryPoint::Latest,
            },
            planned,
        ),
        ("sql-02", VmOp::StartReplica, planned),
        (
            "sql-02",
            VmOp::ChangeRecoveryPoint {
                recovery_point: RecoveryPoint::LatestProcessed,
            },
            plain(),
        ),
        ("sql-02", VmOp::Rollback, plain()),
        (
            "sql-01",
            VmOp::ShutdownPrimary { if_reachable: true },
            ctx(FailoverKind::Unplanned),
        ),
        (
            "sql-01",
            VmOp::Failover {
                recovery_point: RecoveryPoint::Latest,
            },
            ctx(FailoverKind::Unplanned),
        ),
        ("sql-01", VmOp::Commit, plain()),
        ("sql-01", VmOp::ReverseReplicate, plain()),
    ];
    for (i, (vm, op, cx)) in script.iter().enumerate() {
        let r = f
            .run(&OpKey(format!("s{i}")), vm, op, cx)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", op.name()));
        assert_eq!(r.op, OpKind::of(op));
        assert_eq!(r.op.as_str(), op.name());
        assert_eq!(r.vm, *vm);
    }
    assert_eq!(f.vm("sql-01").unwrap().direction, Direction::Reverse);
    assert!(f.vm("sql-02").unwrap().failover.is_none());
}
