//! `drplan run`, the operator commands and `show`, end to end through the
//! built binary: the shipped three-tier plan on the simulated fabric, a
//! fresh data directory per test, stdin not a terminal.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use drplan_engine::store::sled_store::SledStore;
use serde_json::Value;

mod support;
use support::{all, expect_code, out, plan, serial};

/// Runs drplan with `args` then `--data-dir DIR` (every command here takes
/// it) and a fast simulated fabric.
fn drplan(dir: &Path, args: &[&str], fast: bool) -> Output {
    let mut cmd = support::cmd_in(dir, args);
    if fast {
        cmd.args(["--time-scale", "0.001"]);
    }
    support::output(cmd)
}

#[test]
fn test_failover_waits_for_the_manual_step_then_for_cleanup_then_completes() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();

    let run = drplan(dir, &["run", plan, "--failover", "test"], true);
    expect_code(&run, 0);
    let text = out(&run);
    assert!(
        text.starts_with("job 1: test failover of plan orders\n"),
        "{text}"
    );
    assert!(
        text.contains("ok        database/vm/sql-01/create-test-vm"),
        "{text}"
    );
    assert!(
        text.contains("drplan ack 1 application/post/verify-health --by NAME"),
        "{text}"
    );
    // It stopped at the manual step: every test VM was created (the
    // Failover phase), but the web group has not booted.
    assert!(
        text.contains("ok        web/vm/web-01/create-test-vm"),
        "{text}"
    );
    assert!(!text.contains("web/vm/web-01/start-test-vm"), "{text}");

    let ack = drplan(
        dir,
        &[
            "ack",
            "1",
            "application/post/verify-health",
            "--note",
            "all green",
        ],
        true,
    );
    expect_code(&ack, 0);
    let text = out(&ack);
    assert!(
        text.contains("answered  application/post/verify-health done by alice: all green"),
        "{text}"
    );
    assert!(text.contains("ok        web/post/smoke-test"), "{text}");
    assert!(text.contains("drplan cleanup 1 --notes TEXT"), "{text}");

    let cleanup = drplan(dir, &["cleanup", "1", "--notes", "drill ok"], true);
    expect_code(&cleanup, 0);
    let text = out(&cleanup);
    assert!(text.contains("ok        cleanup/remove-test-dns"), "{text}");
    assert!(text.contains("job 1 test completed"), "{text}");

    let show = drplan(dir, &["show", "1", "--format", "json"], false);
    expect_code(&show, 0);
    let v: Value = serde_json::from_slice(&show.stdout).expect("one JSON document");
    assert_eq!(v["status"], "test completed");
    assert_eq!(v["test"]["notes"], "drill ok");
    let steps = v["steps"].as_array().expect("steps");
    // 7 VMs x (create, start, delete test VM), plus the steps.
    assert!(steps.len() > 7 * 3, "{steps:?}");
    for s in steps {
        assert_eq!(s["state"], "succeeded", "{s}");
        // Manual steps and waits end by an answer or a timer; VM operations
        // and scripts by a recorded outcome.
        if s["key"].as_str().is_some_and(|k| k.contains("/vm/")) {
            assert_eq!(s["outcomes"][0]["kind"], "succeeded", "{s}");
            assert!(s["output_tail"].is_string(), "{s}");
        }
    }
    let verify = steps
        .iter()
        .find(|s| s["key"] == "application/post/verify-health")
        .expect("the manual step is listed");
    assert_eq!(verify["answer"]["note"], "all green");
    assert_eq!(verify["answer"]["by"], "alice");
    assert!(
        steps.iter().any(|s| s["key"] == "cleanup/remove-test-dns"),
        "the cleanup steps are listed"
    );

    let human = drplan(dir, &["show", "1"], false);
    expect_code(&human, 0);
    let text = out(&human);
    assert!(text.contains("status:        test completed"), "{text}");
    assert!(text.contains("test closed:   by alice: drill ok"), "{text}");

    let jobs = drplan(dir, &["jobs", "--format", "json"], false);
    expect_code(&jobs, 0);
    let v: Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let listed = drplan(dir, &["jobs"], false);
    assert!(out(&listed).contains("test completed"), "{}", out(&listed));
}

#[test]
fn planned_failover_halts_on_an_injected_fault_and_a_retry_in_a_later_command_finishes_it() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();

    let run = drplan(
        dir,
        &[
            "run",
            plan,
            "--failover",
            "planned",
            "--inject",
            "fail-once:start-replica:web-01",
        ],
        true,
    );
    expect_code(&run, 0);
    // The application group's manual step comes before the web group.
    assert!(
        out(&run).contains("drplan ack 1 application/post/verify-health"),
        "{}",
        all(&run)
    );

    // The answer runs the web group, where the injected fault (kept in the
    // data directory's simulated world) fires: the job halts.
    let ack = drplan(dir, &["ack", "1", "application/post/verify-health"], true);
    expect_code(&ack, 0);
    let text = out(&ack);
    assert!(
        text.contains("FAILED    web/vm/web-01/start-replica"),
        "{text}"
    );
    for cmd in [
        "drplan retry 1 web/vm/web-01/start-replica",
        "drplan skip 1 web/vm/web-01/start-replica",
        "drplan cancel 1",
    ] {
        assert!(text.contains(cmd), "missing `{cmd}` in:\n{text}");
    }
    assert!(!text.contains("web/post/update-dns"), "{text}");

    // A new process: the simulated world it restores has web-01 failed
    // over, so the second attempt of start-replica succeeds.
    let retry = drplan(dir, &["retry", "1", "web/vm/web-01/start-replica"], true);
    expect_code(&retry, 0);
    let text = out(&retry);
    assert!(
        text.contains("ok        web/vm/web-01/start-replica attempt 2"),
        "{text}"
    );
    assert!(text.contains("job 1 succeeded"), "{text}");

    // The same action again: the core refuses it (the job is finished).
    let again = drplan(dir, &["retry", "1", "web/vm/web-01/start-replica"], true);
    expect_code(&again, 1);
    assert!(all(&again).contains("finished"), "{}", all(&again));

    let show = drplan(dir, &["show", "1", "--format", "json"], false);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    let start = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "web/vm/web-01/start-replica")
        .expect("listed")
        .clone();
    assert_eq!(start["attempts"], 2, "{start}");
    assert_eq!(start["outcomes"][0]["kind"], "failed", "{start}");
    assert_eq!(start["outcomes"][1]["kind"], "succeeded", "{start}");
}

#[test]
fn json_progress_is_one_object_per_line_and_detach_only_submits() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();

    let run = drplan(
        dir,
        &["run", plan, "--failover", "test", "--format", "json"],
        true,
    );
    expect_code(&run, 0);
    let lines: Vec<Value> = out(&run)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines[0]["event"], "submitted");
    assert!(lines.iter().any(|l| l["event"] == "step_finished"));
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "waiting");
    assert_eq!(last["step"], "application/post/verify-health");
    assert_eq!(last["reason"], "manual");

    // A second job over the same VMs (leased by job 1): the core refuses
    // it (exit 1) and names job 1.
    let busy = drplan(dir, &["run", plan, "--failover", "test", "--detach"], true);
    expect_code(&busy, 1);
    assert!(all(&busy).contains("job 1"), "{}", all(&busy));

    // `resume` follows the unfinished job to the same prompt again.
    let resume = drplan(dir, &["resume"], true);
    expect_code(&resume, 0);
    assert!(
        out(&resume).contains("drplan ack 1 application/post/verify-health"),
        "{}",
        all(&resume)
    );
}

#[test]
fn bad_input_is_reported_with_the_right_exit_code() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan_s = plan.to_str().unwrap();

    // Unknown job, in a directory that does not exist yet: not created.
    let nowhere = dir.join("none");
    let o = drplan(&nowhere, &["ack", "3", "a/b"], true);
    expect_code(&o, 2);
    assert!(all(&o).contains("job 3 does not exist"), "{}", all(&o));
    assert!(!nowhere.exists());

    let run = drplan(dir, &["run", plan_s, "--failover", "test", "--quiet"], true);
    expect_code(&run, 0);
    // Quiet: the header and the prompt only.
    assert!(!out(&run).contains("started"), "{}", out(&run));

    let o = drplan(dir, &["show", "42"], false);
    expect_code(&o, 2);
    assert!(all(&o).contains("job 42 does not exist"), "{}", all(&o));

    let o = drplan(dir, &["ack", "1", "application/post/verify-helth"], true);
    expect_code(&o, 2);
    let text = all(&o);
    assert!(
        text.contains("has no step `application/post/verify-helth`"),
        "{text}"
    );
    assert!(text.contains("did you mean"), "{text}");
    assert!(text.contains("application/post/verify-health"), "{text}");
    // Nothing was answered: the job still waits at the same step.
    let show = drplan(dir, &["show", "1", "--format", "json"], false);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "waiting for operator");

    // An action the core refuses: retrying a step that did not fail.
    let o = drplan(dir, &["retry", "1", "application/post/verify-health"], true);
    expect_code(&o, 1);

    // An invalid plan (the shipped one copied away from its inventory and
    // scripts): diagnostics like `validate`, exit 1, no job.
    let bad = dir.join("bad.yaml");
    std::fs::copy(&plan, &bad).unwrap();
    let o = drplan(
        dir,
        &["run", bad.to_str().unwrap(), "--failover", "test"],
        true,
    );
    expect_code(&o, 1);
    let text = all(&o);
    assert!(text.contains("fabric.yaml"), "{text}");
    assert!(text.contains("bad.yaml: 6 errors, 0 warnings"), "{text}");
    assert!(!out(&o).contains("job 2"), "{text}");

    // A bad fault: a usage error.
    let o = drplan(
        dir,
        &["run", plan_s, "--failover", "test", "--inject", "fial:x:y"],
        true,
    );
    expect_code(&o, 2);

    // The data directory in use by another process (here: this one).
    let held = Arc::new(SledStore::open(dir).expect("the store opens"));
    let start = std::time::Instant::now();
    let o = drplan(dir, &["run", plan_s, "--failover", "test"], true);
    expect_code(&o, 2);
    assert!(all(&o).contains("in use"), "{}", all(&o));
    let o = drplan(dir, &["resume", "1"], true);
    expect_code(&o, 2);
    assert!(all(&o).contains("in use"), "{}", all(&o));
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    drop(held);
}

#[test]
fn a_manual_step_answered_not_done_halts_and_a_cancel_ends_the_job_with_exit_1() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();

    let run = drplan(dir, &["run", plan, "--failover", "planned", "-q"], true);
    expect_code(&run, 0);
    let ack = drplan(
        dir,
        &[
            "ack",
            "1",
            "application/post/verify-health",
            "--failed",
            "--note",
            "app-02 is down",
            "--by",
            "bob",
        ],
        true,
    );
    expect_code(&ack, 0);
    let text = out(&ack);
    assert!(text.contains("NOT done by bob: app-02 is down"), "{text}");
    assert!(
        text.contains("drplan retry 1 application/post/verify-health"),
        "{text}"
    );
    assert!(text.contains("drplan cancel 1"), "{text}");

    let cancel = drplan(dir, &["cancel", "1"], true);
    expect_code(&cancel, 1);
    assert!(out(&cancel).contains("job 1 cancelled"), "{}", all(&cancel));

    let show = drplan(dir, &["show", "1"], false);
    expect_code(&show, 0);
    let text = out(&show);
    assert!(text.contains("status:        cancelled"), "{text}");
    assert!(
        text.contains("answered not done by bob: app-02 is down"),
        "{text}"
    );
    assert!(text.contains("      error: "), "{text}");
    // Steps after the halt never ran.
    assert!(
        text.lines()
            .any(|l| l.contains("web/post/update-dns") && l.contains("pending")),
        "{text}"
    );
}
