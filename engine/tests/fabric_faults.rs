//! Fault injection: the language (command line, file, serde) and each
//! fault's effect on the simulated fabric.

mod fabric_support;

use std::time::Duration;

use drplan_engine::fabric::{
    Fabric, FabricError, Fault, FaultSet, OpKey, OpKind, SimConfig, SimFabric,
};
use drplan_engine::plan::compile::{RecoveryPoint, VmOp};
use drplan_engine::plan::model::FailoverKind;
use fabric_support::*;

fn errors(args: &[&str]) -> Vec<String> {
    FaultSet::from_cli(args)
        .expect_err("bad faults")
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn good_faults_parse_and_print_back() {
    for s in [
        "fail:start-replica:web-01",
        "fail-once:failover:*",
        "fail:*:sql-01",
        "slow:create-test-vm:web-02:1m 30s",
        "site-down:primary-vmm",
        "host-down:hv-s02",
        "fail:stop-replication:app-01",
        "fail:disable-protection:app-01",
    ] {
        let f: Fault = s.parse().unwrap_or_else(|e| panic!("{s}: {e:?}"));
        assert_eq!(f.to_string(), s);
    }
    assert_eq!(
        "slow:start-replica:web-01:90s".parse::<Fault>().unwrap(),
        Fault::Slow {
            op: Some(OpKind::StartReplica),
            vm: Some("web-01".into()),
            extra: Duration::from_secs(90)
        }
    );
    assert_eq!(
        "fail-once:*:*".parse::<Fault>().unwrap(),
        Fault::FailOnce { op: None, vm: None }
    );
}

#[test]
fn bad_faults_say_what_and_where() {
    assert_eq!(
        errors(&["fial:start-replica:web-01"]),
        vec![
            "--inject `fial:start-replica:web-01`: unknown fault `fial`; expected fail, fail-once, slow, site-down, host-down"
        ]
    );
    let e = errors(&["fail:strat-replica:web-01"]);
    assert!(
        e[0].starts_with("--inject `fail:strat-replica:web-01`: unknown operation `strat-replica`; did you mean `start-replica`?"),
        "{e:?}"
    );
    let e = errors(&["fail:start-replica"]);
    assert_eq!(
        e,
        vec!["--inject `fail:start-replica`: `fail` takes 2 arguments (fail:OP:VM), got 1"]
    );
    let e = errors(&["slow:start-replica:web-01:5x"]);
    assert!(e[0].contains("bad duration `5x`"), "{e:?}");
    let e = errors(&["site-down:"]);
    assert!(e[0].contains("the site name is empty"), "{e:?}");
    let e = errors(&["host-down:hv*"]);
    assert!(e[0].contains("is not a host name"), "{e:?}");
    let e = errors(&[""]);
    assert!(e[0].contains("empty fault"), "{e:?}");
    // Every bad one is reported, the good ones do not hide them.
    let e = errors(&["fail:commit:a", "nope", "site-down:x", "fail:x:y"]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("--inject `nope`"));
    assert!(e[1].starts_with("--inject `fail:x:y`"));
}

#[test]
fn fault_files_in_yaml_and_json() {
    let yaml = "# drill faults\nfaults:\n  - fail:start-replica:web-01\n  - 'slow:failover:*:10s'\n  - site-down:primary-vmm\n";
    let set = FaultSet::from_text("faults.yaml", yaml).unwrap();
    assert_eq!(set.faults.len(), 3);
    assert_eq!(set.faults[1].to_string(), "slow:failover:*:10s");
    let json = r#"{"faults": ["host-down:hv-s01", "fail-once:commit:*"]}"#;
    let set = FaultSet::from_text("faults.json", json).unwrap();
    assert_eq!(
        set.faults,
        vec![
            Fault::HostDown {
                host: "hv-s01".into()
            },
            Fault::FailOnce {
                op: Some(OpKind::Commit),
                vm: None
            }
        ]
    );
    // A bad entry is located at its line and column.
    let bad = "faults:\n  - fail:start-replica:web-01\n  - fial:commit:web-01\n";
    let e = FaultSet::from_text("faults.yaml", bad).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "faults.yaml:3:5: `fial:commit:web-01`: unknown fault `fial`; expected fail, fail-once, slow, site-down, host-down"
    );
    // The file's shape is checked too.
    let e = FaultSet::from_text("faults.yaml", "fault:\n  - site-down:x\n").unwrap_err();
    assert!(e[0].to_string().starts_with("faults.yaml:1:"), "{e:?}");
    assert!(e.iter().any(|e| e.message.contains("fault")), "{e:?}");
    // From disk.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, yaml).unwrap();
    assert_eq!(FaultSet::from_file(&p).unwrap().faults.len(), 3);
    let e = FaultSet::from_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(e[0].to_string().contains("missing.yaml"), "{e:?}");
}

#[test]
fn faults_are_serde_strings_and_checked_against_the_inventory() {
    let set = FaultSet::from_cli(&["fail:commit:web-01", "slow:*:*:2s"]).unwrap();
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, r#"["fail:commit:web-01","slow:*:*:2s"]"#);
    assert_eq!(serde_json::from_str::<FaultSet>(&json).unwrap(), set);
    assert!(serde_json::from_str::<FaultSet>(r#"["fial:x:y"]"#).is_err());

    let inv = shipped();
    let set = FaultSet::from_cli(&[
        "fail:commit:web-1",
        "site-down:primary",
        "host-down:hv-s01",
        "fail:commit:*",
    ])
    .unwrap();
    let e: Vec<String> = set.check(&inv).iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("VM `web-1` is not in the inventory; did you mean `web-01`?"),
        "{e:?}"
    );
    assert!(
        e[1].contains("site `primary` is not in the inventory"),
        "{e:?}"
    );
}

#[tokio::test]
async fn primary_site_down_stops_a_planned_failover_at_sync() {
    let inv = shipped();
    let f = instant(&inv);
    let cx = ctx(FailoverKind::Planned);
    let chain = planned_chain();
    // The primary is shut down, then its site is lost before the final delta.
    run_ok(&f, "j1", "sql-01", &chain[..1], &cx).await;
    f.add_fault("site-down:primary-vmm".parse().unwrap());
    let (_, err) = run_chain(&f, "j1", "sql-01", &chain[1..], &cx).await;
    let (op, e) = err.expect("sync fails");
    assert_eq!(op, VmOp::SyncFinalDelta);
    assert!(
        matches!(&e, FabricError::Unreachable { what, .. } if what == "site primary-vmm"),
        "{e:?}"
    );
    assert!(e.retryable());
    assert!(e.to_string().contains("site primary-vmm is down"), "{e}");
    // The planned failover cannot proceed without its final delta.
    let e = f
        .failover(
            &"j1/x/failover/1".into(),
            "sql-01",
            RecoveryPoint::Latest,
            &cx,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs the final delta"), "{e}");
    // A planned shutdown of a primary that cannot be reached fails at once.
    let (_, err) = run_chain(&f, "j1", "sql-02", &chain, &cx).await;
    let (op, e) = err.unwrap();
    assert_eq!(op.name(), "shutdown-primary");
    assert!(matches!(e, FabricError::Unreachable { .. }));
    // Nothing failed over.
    assert!(f.vm("sql-01").unwrap().failover.is_none());
}

#[tokio::test]
async fn primary_site_down_unplanned_runs_with_a_note() {
    let inv = shipped();
    let f = with_faults(&inv, &["site-down:primary-vmm"]);
    let cx = ctx(FailoverKind::Unplanned);
    let r = run_ok(
        &f,
        "j1",
        "web-01",
        &unplanned_chain(RecoveryPoint::LatestProcessed),
        &cx,
    )
    .await;
    assert!(
        r[0].summary.starts_with("primary unreachable"),
        "{}",
        r[0].summary
    );
    assert!(
        r[0].warnings[0].contains("may still be running"),
        "{:?}",
        r[0].warnings
    );
    let point = r[1].recovery_point.expect("a point");
    assert!(point.at < NOW);
    assert!(
        r[2].warnings
            .iter()
            .any(|w| w.contains("cannot be reached")),
        "{:?}",
        r[2].warnings
    );
    let vm = f.vm("web-01").unwrap();
    assert!(vm.replica.unwrap().running);
}

#[tokio::test]
async fn host_down_fails_what_runs_on_it_until_it_is_back() {
    let inv = shipped();
    let f = instant(&inv);
    let host = f.vm("app-01").unwrap().replica.unwrap().host;
    f.add_fault(Fault::HostDown { host: host.clone() });
    let cx = ctx(FailoverKind::Test);
    let (_, err) = run_chain(&f, "t1", "app-01", &test_chain(Some("test-bubble")), &cx).await;
    let (op, e) = err.unwrap();
    assert_eq!(op.name(), "create-test-vm");
    assert!(
        matches!(&e, FabricError::Unreachable { what, .. } if *what == format!("host {host}")),
        "{e:?}"
    );
    // A VM whose replica is elsewhere is unaffected.
    let other = inv
        .vms
        .iter()
        .find(|v| f.vm(&v.name).unwrap().replica.unwrap().host != host)
        .unwrap();
    run_ok(&f, "t1", &other.name, &test_chain(Some("test-bubble")), &cx).await;
    // The host is back: a new attempt succeeds.
    f.set_faults(FaultSet::default());
    f.create_test_vm(
        &"t1/app-01/create-test-vm/2".into(),
        "app-01",
        Some("test-bubble"),
        &cx,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn fail_once_then_a_new_attempt_succeeds() {
    let inv = shipped();
    let f = with_faults(&inv, &["fail-once:start-replica:*"]);
    let cx = ctx(FailoverKind::Planned);
    let (_, err) = run_chain(&f, "j1", "web-02", &planned_chain(), &cx).await;
    let (op, e) = err.unwrap();
    assert_eq!(op, VmOp::StartReplica);
    assert!(e.retryable(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "start-replica of `web-02` failed: injected fault `fail-once:start-replica:*`"
    );
    // The same key is the same (failed) operation.
    let k1 = key("j1", "web-02", &VmOp::StartReplica, 1);
    assert_eq!(f.start_replica(&k1, "web-02", &cx).await.unwrap_err(), e);
    // Attempt 2 succeeds; attempt 3 (another step) is unaffected.
    let k2 = key("j1", "web-02", &VmOp::StartReplica, 2);
    f.start_replica(&k2, "web-02", &cx).await.unwrap();
    // Once per VM: another VM fails once too.
    let (_, err) = run_chain(&f, "j1", "web-01", &planned_chain(), &cx).await;
    assert!(err.is_some());
}

#[tokio::test]
async fn fail_always_is_not_retryable() {
    let inv = shipped();
    let f = with_faults(&inv, &["fail:commit:sql-01"]);
    run_ok(
        &f,
        "j1",
        "sql-01",
        &planned_chain(),
        &ctx(FailoverKind::Planned),
    )
    .await;
    for attempt in 1..=3 {
        let e = f
            .commit(
                &key("c", "sql-01", &VmOp::Commit, attempt),
                "sql-01",
                &plain(),
            )
            .await
            .unwrap_err();
        assert!(!e.retryable());
    }
    assert!(!f.vm("sql-01").unwrap().failover.unwrap().committed);
}

#[tokio::test(start_paused = true)]
async fn slow_adds_real_time_even_when_instant() {
    let inv = shipped();
    let f = SimFabric::new(
        &inv,
        SimConfig::instant(),
        FaultSet::from_cli(&["slow:create-test-vm:web-01:90s"]).unwrap(),
    );
    let cx = ctx(FailoverKind::Test);
    let t0 = tokio::time::Instant::now();
    let r = f
        .create_test_vm(&OpKey::from("k1"), "web-01", None, &cx)
        .await
        .unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(90));
    assert_eq!(r.duration(), Duration::from_secs(90));
    let t1 = tokio::time::Instant::now();
    f.create_test_vm(&OpKey::from("k2"), "web-02", None, &cx)
        .await
        .unwrap();
    assert_eq!(t1.elapsed(), Duration::ZERO);
}
