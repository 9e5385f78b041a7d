//! `drplan simulate` end to end: its predictions against real `drplan run`s
//! with the same faults, fault handling, and that it never touches a data
//! directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;
use support::{all, drplan, expect_code, json, plan};

/// `steps[].key` → `steps[].state` of a `show` or `simulate` document.
fn states(doc: &Value) -> BTreeMap<String, String> {
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().expect("key").to_string(),
                s["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

fn simulate(kind: &str, extra: &[&str]) -> Output {
    let p = plan();
    let mut args = vec![
        "simulate",
        p.to_str().unwrap(),
        "--failover",
        kind,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    drplan(&args)
}

/// A real run of the plan with `fault`, its manual steps answered "done"
/// whenever the job waits on one (as the simulation does), until it stops
/// for anything else. Returns `drplan show --format json`.
fn real_run(dir: &Path, kind: &str, fault: &str) -> Value {
    let d = dir.to_str().unwrap();
    let p = plan();
    let fast = ["--time-scale", "0.001", "--data-dir", d];
    let mut args = vec![
        "run",
        p.to_str().unwrap(),
        "--failover",
        kind,
        "--inject",
        fault,
    ];
    args.extend_from_slice(&fast);
    let o = drplan(&args);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", all(&o));
    for _ in 0..5 {
        let show = drplan(&["show", "1", "--format", "json", "--data-dir", d]);
        expect_code(&show, 0);
        let doc = json(&show);
        let manual: Vec<String> = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["state"] == "awaiting_operator" && s["detail"]["reason"]["reason"] == "manual"
            })
            .map(|s| s["key"].as_str().unwrap().to_string())
            .collect();
        let Some(step) = manual.first() else {
            return doc;
        };
        let mut args = vec!["ack", "1", step.as_str()];
        args.extend_from_slice(&fast);
        let o = drplan(&args);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", all(&o));
    }
    panic!("the real run kept waiting on manual steps");
}

/// The acceptance check: with a failing replica start, `simulate`
/// predicts the job status and every step's fate (failed, skipped, never
/// ran, halted) that a real `drplan run` with the same fault ends with,
/// under both error policies.
#[test]
fn simulate_predicts_what_a_real_run_with_the_same_fault_does() {
    let fault = "fail:start-replica:web-01";
    let mut seen = Vec::new();
    for kind in ["planned", "unplanned"] {
        let dir = tempfile::tempdir().unwrap();
        let real = real_run(dir.path(), kind, fault);
        let sim = simulate(kind, &["--inject", fault]);
        // Exit 1: the predicted outcome is bad (halted / with errors).
        expect_code(&sim, 1);
        let sim = json(&sim);
        assert_eq!(sim["status"], real["status"], "{kind}: job status");
        assert_eq!(states(&sim), states(&real), "{kind}: step states");
        seen.push((
            real["status"].as_str().unwrap().to_string(),
            states(&real)["web/vm/web-01/start-replica"].clone(),
        ));
    }
    // Not a vacuous comparison: the two policies end differently, and the
    // injected step is where they differ.
    assert_eq!(
        seen,
        [
            (
                "waiting for operator".to_string(),
                "awaiting_operator".to_string()
            ),
            ("completed with errors".to_string(), "failed".to_string()),
        ]
    );
}

/// `drplan simulate PLAN --failover test EXTRA...`, stdin not a terminal,
/// with the environment left to the caller.
fn simulate_test(plan: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drplan"));
    c.args(["simulate", plan.to_str().unwrap(), "--failover", "test"])
        .args(extra)
        .stdin(Stdio::null());
    c
}

#[test]
fn simulate_never_touches_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let p = plan();
    let mut c = simulate_test(&p, &["--inject", "fail-step:smoke-test"]);
    c.env("DRPLAN_DATA_DIR", &data)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"));
    let o = support::output(c);
    expect_code(&o, 1);
    assert!(!data.exists(), "simulate created {}", data.display());
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "simulate wrote into $HOME"
    );
}

#[test]
fn fail_step_fails_a_script_at_every_attempt_and_a_manual_step() {
    let o = simulate("test", &["--inject", "fail-step:smoke-test"]);
    expect_code(&o, 1);
    let doc = json(&o);
    let smoke = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "web/post/smoke-test")
        .unwrap();
    assert_eq!(smoke["state"], "failed");
    // The plan's default `retries: 1`: two attempts, both failed.
    assert_eq!(smoke["attempts"], 2);
    assert!(
        smoke["error"].as_str().unwrap_or("").contains("exit"),
        "{smoke}"
    );

    // A manual step answered "not done" halts a planned failover there.
    let o = simulate("planned", &["--inject", "fail-step:verify-health"]);
    expect_code(&o, 1);
    let doc = json(&o);
    assert_eq!(doc["status"], "waiting for operator");
    assert_eq!(
        doc["outcome"]["halted_at"],
        serde_json::json!(["application/post/verify-health"])
    );
    // Phases: every primary went down before the halt; the front end has
    // not booted.
    assert_eq!(states(&doc)["web/vm/web-01/shutdown-primary"], "succeeded");
    assert_eq!(states(&doc)["web/vm/web-01/start-replica"], "pending");
}

#[test]
fn a_slow_operator_lets_the_manual_timeout_fire() {
    // verify-health times out after 30m: an operator who needs 45m is too late.
    let o = simulate("unplanned", &["--operator-delay", "45m"]);
    expect_code(&o, 1);
    let doc = json(&o);
    assert_eq!(states(&doc)["application/post/verify-health"], "timed_out");
    let o = simulate("unplanned", &["--operator-delay", "29m"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["status"], "succeeded");
}

#[test]
fn without_faults_the_simulated_rto_is_the_estimate() {
    let p = plan();
    for kind in ["test", "planned", "unplanned"] {
        let o = simulate(kind, &[]);
        expect_code(&o, 0);
        let sim = json(&o);
        let est = drplan(&[
            "estimate",
            p.to_str().unwrap(),
            "--failover",
            kind,
            "--no-history",
            "--format",
            "json",
        ]);
        expect_code(&est, 0);
        let est = json(&est);
        let e = &est["estimates"][0];
        if kind == "unplanned" {
            // 7 best-effort shutdowns beside 7 failovers: more than the
            // 8 VM operations the engine runs at once, as the estimate's
            // note says. Each of the first queued failovers waits one
            // shutdown (20s): the simulation is that much later.
            assert!(
                est["notes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n.as_str().unwrap().contains("14 VM operations at once")),
                "{est}"
            );
            let (sim_rto, est_rto) = (
                sim["outcome"]["rto_ms"].as_u64().unwrap(),
                e["rto_ms"].as_u64().unwrap(),
            );
            assert_eq!(sim_rto, est_rto + 20_000, "{kind}: RTO");
            continue;
        }
        assert_eq!(sim["outcome"]["rto_ms"], e["rto_ms"], "{kind}: RTO");
        assert!(sim["outcome"]["rto_ms"].as_u64().unwrap() > 0);
        // A test failover stops awaiting cleanup, before the cleanup steps.
        assert_eq!(sim["outcome"]["elapsed_ms"], e["total_ms"], "{kind}: total");
    }
}

#[test]
fn wrong_faults_are_refused_before_anything_runs() {
    for (fault, says) in [
        ("fail:start-replica:web-99", "web-99"),
        ("fial:start-replica:web-01", "unknown fault"),
        (
            "fail-step:smoke-tset",
            "did you mean `fail-step:web/post/smoke-test`",
        ),
        ("fail-step:settle", "wait step"),
    ] {
        let o = simulate("planned", &["--inject", fault]);
        expect_code(&o, 2);
        assert!(all(&o).contains(says), "{fault}: {}", all(&o));
    }
    let o = drplan(&["simulate", "/nonexistent/plan.yaml", "--failover", "test"]);
    expect_code(&o, 2);
}

#[test]
fn the_human_timeline_shows_the_halt_and_the_rto() {
    let p = plan();
    let o = drplan(&[
        "simulate",
        p.to_str().unwrap(),
        "--failover",
        "planned",
        "--inject",
        "fail:start-replica:web-01",
    ]);
    expect_code(&o, 1);
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "simulated planned failover of plan orders",
        "database/pre/quiesce [simulated script]",
        "error: start-replica of `web-01` failed",
        "halted:  the plan waits for an operator's decision on web/vm/web-01/start-replica",
        "estimated RTO: not reached: required VM not running: web-01",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn run_scripts_executes_the_plans_scripts() {
    // From another working directory: scripts resolve against the plan's.
    let tmp = tempfile::tempdir().unwrap();
    let p = plan();
    let mut c = simulate_test(&p, &["--run-scripts", "--format", "json"]);
    c.current_dir(tmp.path()).env_remove("DRPLAN_DATA_DIR");
    let o = support::output(c);
    expect_code(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["scripts"], "executed");
    for key in ["web/post/register-test-dns", "web/post/smoke-test"] {
        let s = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap();
        assert_eq!(s["state"], "succeeded", "{s}");
        // Executed, so no assumed figure; a real process takes no virtual
        // time.
        assert!(s["figure"].is_null(), "{s}");
        assert_eq!(s["start_ms"], s["finish_ms"], "{s}");
    }
}

#[test]
fn fabric_warnings_reach_the_timeline() {
    let o = simulate("unplanned", &["--inject", "site-down:primary-vmm"]);
    expect_code(&o, 0);
    let doc = json(&o);
    let s = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "web/vm/web-01/shutdown-primary")
        .unwrap();
    assert!(
        s["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("could not be reached"),
        "{s}"
    );
}
