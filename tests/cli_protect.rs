//! Protection management through the built binary, as a new user would:
//! `vms`, `protect` (with progress), a drill over the newly protected VMs,
//! `unprotect`, the refusal by name, a scheduled initial replication that
//! a later process carries on, `recovery-points` and `capacity`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::{all, expect_code, out, serial, shipped};

/// drplan with `args`, the data directory and the shipped inventory.
fn drplan(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = support::cmd(args);
    // `capacity` reads no data directory.
    if args.first() != Some(&"capacity") {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.env("DRPLAN_FABRIC", shipped("fabric.yaml"));
    support::output(cmd)
}

fn vms_json(dir: &Path) -> Vec<Value> {
    let o = drplan(dir, &["vms", "--format", "json"]);
    expect_code(&o, 0);
    serde_json::from_slice::<Vec<Value>>(&o.stdout).expect("vms json")
}

fn row<'a>(rows: &'a [Value], vm: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["vm"] == vm)
        .unwrap_or_else(|| panic!("no {vm} in {rows:?}"))
}

#[test]
fn protect_watch_progress_drill_then_unprotect_one() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = shipped("reporting.yaml");
    let plan = plan.to_str().unwrap();

    // A fresh data directory shows what the inventory declares, without
    // creating a store.
    let vms = drplan(dir, &["vms"]);
    expect_code(&vms, 0);
    let text = out(&vms);
    assert!(text.starts_with("VM "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("rpt-01") && l.contains("unprotected")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sql-01") && l.contains("healthy")),
        "{text}"
    );
    assert!(
        text.contains("onboard with `drplan protect VM`): legacy-01"),
        "{text}"
    );

    // A drill over unprotected VMs is refused, naming each and its state
    // (and using up no job id: the protection below is job 1).
    let refused = drplan(dir, &["run", plan, "--failover", "test"]);
    expect_code(&refused, 1);
    let err = all(&refused);
    for vm in ["legacy-01", "rpt-01", "rpt-02"] {
        assert!(err.contains(&format!("VM `{vm}` is unprotected")), "{err}");
    }

    // Protect everything not yet protected, on a slow link so that the
    // copy's progress shows (80 GB at 100 Mbit/s = 6,400 s, × 0.0005).
    let p = drplan(
        dir,
        &[
            "protect",
            "--all",
            "--bandwidth",
            "100mbps",
            "--time-scale",
            "0.0005",
        ],
    );
    expect_code(&p, 0);
    let text = out(&p);
    assert!(
        text.contains(
            "job 1: enable protection of 3 VMs (primary-vmm/gold -> secondary-vmm/gold-dr)"
        ),
        "{text}"
    );
    assert!(
        text.contains("left alone, protected (forward): sql-01, sql-02,"),
        "{text}"
    );
    assert!(
        text.contains("legacy-01: onboard its existing replica (nothing copied)"),
        "{text}"
    );
    assert!(
        text.contains(".. initial replication of rpt-01: "),
        "no progress line:\n{text}"
    );
    assert!(
        text.contains("protect/vm/rpt-02/finalize-protection"),
        "{text}"
    );
    assert!(text.contains("job 1 succeeded"), "{text}");

    let rows = vms_json(dir);
    for vm in ["legacy-01", "rpt-01", "rpt-02"] {
        let r = row(&rows, vm);
        assert_eq!(r["item"]["state"], "protected", "{r}");
        assert_eq!(r["health"]["level"], "healthy", "{r}");
        assert_eq!(r["job"], Value::Null, "{r}");
    }
    assert_eq!(row(&rows, "legacy-01")["initial_replication"], "onboarded");
    assert_eq!(row(&rows, "rpt-01")["initial_replication"], "network");

    // The drill now runs, and cleans up.
    let run = drplan(
        dir,
        &["run", plan, "--failover", "test", "--time-scale", "0.001"],
    );
    expect_code(&run, 0);
    assert!(
        out(&run).contains("job 2: test failover of plan reporting"),
        "{}",
        all(&run)
    );
    let clean = drplan(
        dir,
        &["cleanup", "2", "--notes", "ok", "--time-scale", "0.001"],
    );
    expect_code(&clean, 0);

    // Disable one VM, deleting its replica; a drill over it is refused.
    let u = drplan(
        dir,
        &[
            "unprotect",
            "rpt-02",
            "--delete-replica",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&u, 0);
    assert!(
        out(&u).contains("disable protection (delete replica) of 1 VM"),
        "{}",
        all(&u)
    );
    let rows = vms_json(dir);
    let r = row(&rows, "rpt-02");
    assert_eq!(r["item"]["state"], "unprotected", "{r}");
    assert_eq!(r["replica"], Value::Null, "{r}");
    assert_eq!(row(&rows, "rpt-01")["item"]["state"], "protected");
    let again = drplan(dir, &["run", plan, "--failover", "test"]);
    expect_code(&again, 1);
    let err = all(&again);
    assert!(err.contains("VM `rpt-02` is unprotected"), "{err}");
    // The refusal names only rpt-02, from its state in the store; nothing
    // speaks of what the inventory declares.
    assert!(!err.contains("VM `rpt-01` is unprotected"), "{err}");
    assert!(!err.contains("declared unprotected"), "{err}");
}

#[test]
fn a_scheduled_initial_replication_waits_then_a_later_process_finishes_it() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = drplan(dir, &["protect", "rpt-01", "--start-at", "+2s"]);
    expect_code(&p, 0);
    let text = out(&p);
    assert!(text.contains("initial replication scheduled at"), "{text}");
    assert!(text.contains("drplan resume 1"), "{text}");
    // The waiting job holds the VM, visibly.
    let rows = vms_json(dir);
    assert_eq!(row(&rows, "rpt-01")["job"], 1);
    let show = drplan(dir, &["show", "1"]);
    expect_code(&show, 0);
    assert!(
        out(&show).contains("protect/pre/scheduled-start"),
        "{}",
        all(&show)
    );
    // A second protect of the same VM is refused while it waits.
    let busy = drplan(dir, &["protect", "rpt-01", "--now"]);
    expect_code(&busy, 1);
    assert!(all(&busy).contains("rpt-01"), "{}", all(&busy));

    std::thread::sleep(std::time::Duration::from_millis(2200));
    let r = drplan(dir, &["resume", "1", "--time-scale", "0.0005"]);
    expect_code(&r, 0);
    assert!(out(&r).contains("job 1 succeeded"), "{}", all(&r));
    let rows = vms_json(dir);
    assert_eq!(row(&rows, "rpt-01")["item"]["state"], "protected");
}

#[test]
fn recovery_points_and_the_unplanned_choice_checked_against_them() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rp = drplan(dir, &["recovery-points", "sql-01"]);
    expect_code(&rp, 0);
    let text = out(&rp);
    // 12 h of points every 5 minutes, app-consistent every 4 h.
    assert!(
        text.contains("policy gold-ws2012r2: copy every 5m, 12 h retention"),
        "{text}"
    );
    let points = text.lines().filter(|l| l.ends_with("-consistent")).count();
    assert!((144..=145).contains(&points), "{points} points:\n{text}");
    assert!(
        text.lines()
            .filter(|l| l.ends_with("app-consistent"))
            .count()
            >= 3,
        "{text}"
    );

    let none = drplan(dir, &["recovery-points", "rpt-01"]);
    expect_code(&none, 0);
    assert!(
        out(&none).contains("0 recovery points kept"),
        "{}",
        all(&none)
    );

    let unknown = drplan(dir, &["recovery-points", "sql-1"]);
    expect_code(&unknown, 2);
    assert!(
        all(&unknown).contains("did you mean `sql-01`"),
        "{}",
        all(&unknown)
    );

    // A point older than the retention window is refused before the job
    // starts, naming every VM.
    let plan = shipped("three-tier.yaml");
    let old = drplan(
        dir,
        &[
            "run",
            plan.to_str().unwrap(),
            "--failover",
            "unplanned",
            "--recovery-point",
            "2020-01-01T00:00:00Z",
        ],
    );
    expect_code(&old, 1);
    let err = all(&old);
    assert!(err.contains("recovery point `at:"), "{err}");
    for vm in ["sql-01", "app-01", "web-02"] {
        assert!(
            err.contains(&format!("VM `{vm}`: no recovery point at or before")),
            "{err}"
        );
    }
    assert!(!out(&old).contains("job 1"), "{err}");
}

#[test]
fn capacity_estimate_and_bad_input() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = drplan(
        dir,
        &[
            "capacity",
            "sql-01",
            "sql-02",
            "--change-rate",
            "5%",
            "--bandwidth",
            "100mbps",
        ],
    );
    expect_code(&c, 0);
    let text = out(&c);
    // 1,000 GB compressed to 500 GB = 4,000,000 Mbit at 100 Mbit/s.
    assert!(
        text.contains("capacity estimate for 2 VMs (1000 GB of disks)"),
        "{text}"
    );
    assert!(
        text.contains("500 GB to copy; 11h 6m 40s at 100 Mbit/s"),
        "{text}"
    );
    assert!(text.contains("50.0 GB changed per day (5.0%)"), "{text}");
    let json = drplan(
        dir,
        &[
            "capacity",
            "--cloud",
            "primary-vmm/gold",
            "--format",
            "json",
        ],
    );
    expect_code(&json, 0);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["estimate"]["vms"], 19);

    for (args, needle) in [
        (
            vec!["capacity", "--change-rate", "150%"],
            "between 0% and 100%",
        ),
        (
            vec!["capacity", "--bandwidth", "fast"],
            "positive bandwidth",
        ),
        (vec!["protect"], "no VM given"),
        (vec!["protect", "web-1"], "did you mean `web-01`"),
        (
            vec!["protect", "--cloud", "nowhere/x"],
            "`nowhere/x` is not a source cloud",
        ),
        (
            vec!["protect", "rpt-01", "--start-at", "tomorrow"],
            "RFC 3339",
        ),
        (
            vec!["unprotect", "sql-01", "--delete-replica", "--keep-replica"],
            "cannot be used with",
        ),
    ] {
        let o = drplan(dir, &args);
        expect_code(&o, 2);
        assert!(all(&o).contains(needle), "{args:?}:\n{}", all(&o));
    }
    // Without any inventory named.
    let mut c = Command::new(env!("CARGO_BIN_EXE_drplan"));
    c.args(["vms", "--data-dir"])
        .arg(dir)
        .env_remove("DRPLAN_FABRIC");
    let o = support::output(c);
    expect_code(&o, 2);
    assert!(all(&o).contains("pass --fabric FILE"), "{}", all(&o));
    // Protecting a VM that is protected already names it and its state.
    let o = drplan(dir, &["protect", "sql-01", "--time-scale", "0.001"]);
    expect_code(&o, 1);
    assert!(
        all(&o).contains("VM `sql-01` is protected (forward)"),
        "{}",
        all(&o)
    );
}

#[test]
fn json_output_carries_progress_events() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 80 GB at 100 Mbit/s = 6,400 s, × 0.0004 = 2.6 s: a progress event a second.
    let o = drplan(
        dir,
        &[
            "protect",
            "rpt-01",
            "--format",
            "json",
            "--bandwidth",
            "100",
            "--time-scale",
            "0.0004",
        ],
    );
    expect_code(&o, 0);
    let events: Vec<Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let progress: Vec<&Value> = events.iter().filter(|e| e["event"] == "progress").collect();
    assert!(!progress.is_empty(), "{events:?}");
    assert_eq!(progress[0]["vm"], "rpt-01");
    assert_eq!(progress[0]["total_bytes"], 80_000_000_000u64);
    assert!(
        progress
            .iter()
            .all(|p| p["fraction"].as_f64().unwrap() <= 1.0)
    );
    assert_eq!(events.last().unwrap()["status"], "succeeded", "{events:?}");
}
