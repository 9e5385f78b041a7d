//! `drplan estimate` end to end: assumed figures without history, measured
//! ones after real runs (and saying which is which), the critical path, and
//! a store held by another process.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use drplan_engine::store::sled_store::SledStore;
use serde_json::Value;

mod support;
use support::{all, drplan, expect_code, json, plan, serial};

fn estimate(dir: &Path, extra: &[&str]) -> Output {
    let p = plan();
    let mut args = vec![
        "estimate",
        p.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    drplan(&args)
}

fn step<'a>(est: &'a Value, key: &str) -> &'a Value {
    est["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no step {key}"))
}

/// The path is a chain in time: it starts at 0, each node starts when the
/// one before it finished, and it ends at the figure it explains.
#[track_caller]
fn check_chain(est: &Value, path: &str, end_ms: &Value) {
    let keys = est[path].as_array().unwrap();
    assert!(!keys.is_empty(), "{path} is empty");
    let mut at = 0;
    for k in keys {
        let s = step(est, k.as_str().unwrap());
        assert_eq!(
            s["start_ms"], at,
            "{path}: {k} starts when the previous ends"
        );
        assert_eq!(
            s["finish_ms"].as_u64().unwrap() - s["start_ms"].as_u64().unwrap(),
            s["ms"].as_u64().unwrap()
        );
        at = s["finish_ms"].as_u64().unwrap();
    }
    assert_eq!(&Value::from(at), end_ms, "{path} ends at its figure");
}

#[test]
fn without_history_every_figure_is_assumed_and_nothing_is_created() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let o = estimate(&dir, &["--failover", "planned", "--format", "json"]);
    expect_code(&o, 0);
    assert!(!dir.exists(), "estimate created the data directory");
    let doc = json(&o);
    assert!(
        doc["history"]["note"]
            .as_str()
            .unwrap()
            .contains("no store")
    );
    let e = &doc["estimates"][0];
    assert_eq!(e["measured"], 0);
    // The RTO path of a planned failover of three-tier, by hand, phase by
    // phase: 3 tiers' shutdowns one after another (20s each, front end
    // first); then 30s sync + 40s failover (every VM at once); then the
    // boot: quiesce (its 10m timeout) + 3 tiers x 60s start + verify-health
    // (5m operator delay) + settle (1m wait).
    assert_eq!(
        e["rto_ms"],
        3 * 20_000 + 70_000 + 600_000 + 3 * 60_000 + 300_000 + 60_000
    );
    // ... and the plan completes after update-dns (2m) and smoke-test (5m
    // default timeout of the plan) on top.
    assert_eq!(e["total_ms"], 1_270_000 + 120_000 + 300_000);
    check_chain(e, "rto_path", &e["rto_ms"]);
    check_chain(e, "critical_path", &e["total_ms"]);
    assert_eq!(step(e, "database/pre/quiesce")["basis"], "script_timeout");
    assert_eq!(
        step(e, "application/post/verify-health")["basis"],
        "operator_delay"
    );
    assert_eq!(step(e, "application/post/settle")["basis"], "plan_wait");
    assert_eq!(step(e, "web/vm/web-01/failover")["basis"], "fabric_latency");
}

#[test]
fn a_faster_operator_and_a_time_scale_change_the_assumed_figures() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let o = estimate(
        tmp.path(),
        &[
            "--failover",
            "unplanned",
            "--operator-delay",
            "1m",
            "--time-scale",
            "0.5",
            "--format",
            "json",
        ],
    );
    expect_code(&o, 0);
    let e = &json(&o)["estimates"][0];
    // At half scale: every VM's failover (20s) at once, alongside its
    // best-effort shutdown (10s, waited on by its own start only); then
    // 3 tiers x 30s start + 1m operator + 30s settle (scaled).
    assert_eq!(e["rto_ms"], 20_000 + 3 * 30_000 + 60_000 + 30_000);
    // A manual step's timeout caps the operator delay.
    let o = estimate(
        tmp.path(),
        &[
            "--failover",
            "unplanned",
            "--operator-delay",
            "2h",
            "--format",
            "json",
        ],
    );
    let e = &json(&o)["estimates"][0];
    let v = step(e, "application/post/verify-health");
    assert_eq!(v["ms"], 30 * 60_000);
    assert_eq!(v["basis"], "manual_timeout");
}

/// After a drill, the test failover's figures are measured (and say so);
/// figures it could not measure stay assumed.
#[test]
fn after_a_drill_the_estimate_uses_measured_figures() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let p = plan();
    let p = p.to_str().unwrap();
    let fast = ["--time-scale", "0.001", "--data-dir", d];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&fast);
        let o = drplan(&a);
        expect_code(&o, 0);
    };
    run(&["run", p, "--failover", "test"]);
    run(&["ack", "1", "application/post/verify-health"]);
    run(&["cleanup", "1", "--notes", "drill ok"]);

    let o = estimate(
        tmp.path(),
        &[
            "--failover",
            "test",
            "--time-scale",
            "0.001",
            "--format",
            "json",
        ],
    );
    expect_code(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["history"]["jobs"], serde_json::json!([1]));
    // Runs at the same time scale: nothing left out.
    assert_eq!(doc["notes"], serde_json::json!([]));
    assert_eq!(doc["history"]["left_out"], serde_json::json!([]));
    let e = &doc["estimates"][0];
    // Every VM operation, script and manual step of the drill was measured;
    // only the wait is the plan's own.
    assert_eq!(e["assumed"], 1, "{e}");
    let s = step(e, "web/vm/web-01/start-test-vm");
    assert_eq!(s["basis"], "measured_vm");
    assert_eq!(s["samples"], 1);
    assert_eq!(
        step(e, "application/post/verify-health")["basis"],
        "measured_step"
    );
    assert_eq!(step(e, "web/post/smoke-test")["basis"], "measured_step");
    // Measured at 1/1000 of 60s, plus the engine's overhead: far below the
    // assumed figure.
    assert!(s["ms"].as_u64().unwrap() < 10_000, "{s}");
    check_chain(e, "critical_path", &e["total_ms"]);

    // A planned failover never ran: its VM operations fall back to the
    // fabric (or to other VMs' runs of the same operation: none here),
    // while the shared steps are measured.
    let o = estimate(
        tmp.path(),
        &[
            "--failover",
            "planned",
            "--time-scale",
            "0.001",
            "--format",
            "json",
        ],
    );
    let doc = json(&o);
    let e = &doc["estimates"][0];
    assert_eq!(
        step(e, "web/vm/web-01/start-replica")["basis"],
        "fabric_latency"
    );
    assert_eq!(step(e, "web/post/smoke-test")["basis"], "measured_step");
    // At another time scale the drill is left out (counted, with how to
    // use it), never mixed with figures on this scale.
    let o = estimate(tmp.path(), &["--failover", "planned", "--format", "json"]);
    let doc = json(&o);
    let e = &doc["estimates"][0];
    assert_eq!(step(e, "web/post/smoke-test")["basis"], "script_timeout");
    assert_eq!(doc["history"]["jobs"], serde_json::json!([]));
    assert_eq!(
        doc["history"]["left_out"],
        serde_json::json!([{"reason": "other_scale", "time_scales": [0.001], "jobs": [1]}])
    );
    assert!(
        doc["notes"][0]
            .as_str()
            .unwrap_or("")
            .contains("pass --time-scale 0.001"),
        "{}",
        doc["notes"]
    );

    // The human report names its sources.
    let o = estimate(tmp.path(), &["--failover", "test", "--time-scale", "0.001"]);
    expect_code(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "history:  1 finished run in",
        "measured: median of 1 run on this VM",
        "the plan's wait",
        "<- RTO",
        "critical path",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn a_store_in_use_is_reported_at_once() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let held = Arc::new(SledStore::open(tmp.path()).expect("the store opens"));
    let o = estimate(tmp.path(), &["--failover", "test"]);
    expect_code(&o, 2);
    let text = all(&o);
    assert!(text.contains("in use"), "{text}");
    assert!(text.contains("--no-history"), "{text}");
    // ... and --no-history still answers.
    let o = estimate(tmp.path(), &["--failover", "test", "--no-history"]);
    expect_code(&o, 0);
    drop(held);
}

#[test]
fn groups_wider_than_the_concurrency_limit_are_pointed_out() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let large = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/large.yaml");
    let o = drplan(&[
        "estimate",
        large.to_str().unwrap(),
        "--no-history",
        "--failover",
        "planned",
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    // Every one of its 1,000 VMs fails over at once in the Failover phase.
    assert!(
        text.contains("the planned failover runs up to 1000 VM operations at once in this estimate, but `drplan run` runs at most 8"),
        "{text}"
    );
    // The three-tier plan's planned failover fits (7 VMs fail over at
    // once): no such note.
    let o = estimate(tmp.path(), &["--no-history", "--failover", "planned"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("at most 8"));
    // Its unplanned failover does not: 7 best-effort shutdowns beside 7
    // failovers.
    let o = estimate(tmp.path(), &["--no-history", "--failover", "unplanned"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("the unplanned failover runs up to 14 VM operations at once"),
        "{text}"
    );
}

#[test]
fn the_summary_covers_every_failover_kind() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let o = estimate(tmp.path(), &["--no-history"]);
    expect_code(&o, 0);
    let text = String::from_utf8_lossy(&o.stdout);
    for kind in ["test", "planned", "unplanned"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(kind)),
            "no {kind} row in:\n{text}"
        );
    }
    let o = estimate(tmp.path(), &["--no-history", "--format", "json"]);
    assert_eq!(json(&o)["estimates"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_is_refused_with_a_located_message() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let o = estimate(tmp.path(), &["--time-scale", "0"]);
    expect_code(&o, 2);
    assert!(all(&o).contains("--time-scale"));
    let o = estimate(tmp.path(), &["--operator-delay", "soon"]);
    expect_code(&o, 2);
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "drplan: 1\nname: x\ngroups: 3\n").unwrap();
    let o = drplan(&["estimate", bad.to_str().unwrap()]);
    expect_code(&o, 1);
    assert!(all(&o).contains("bad.yaml"), "{}", all(&o));
}
