//! The lifecycle after a failover, end to end through the built binary:
//! planned failover → commit → reprotect → failback → commit → reprotect,
//! and the refusals (commit of a test failover, commit twice).

use std::path::Path;
use std::process::Output;

mod support;
use support::{err, expect_code, out, plan, serial};

fn drplan_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = support::cmd_in(dir, args);
    // `jobs` only lists; every other command here runs the engine.
    if args.first() != Some(&"jobs") {
        cmd.args(["--time-scale", "0.001"]);
    }
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    support::output(cmd)
}

fn drplan(dir: &Path, args: &[&str]) -> Output {
    drplan_env(dir, args, &[])
}

const VERIFY: &str = "application/post/verify-health";

#[test]
fn failover_commit_reprotect_failback_commit_reprotect() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();

    let run = drplan(dir, &["run", plan, "--failover", "planned"]);
    expect_code(&run, 0);
    assert!(
        out(&run).contains(&format!("drplan ack 1 {VERIFY}")),
        "{}",
        out(&run)
    );
    // Commit before the failover ended: refused by the job record.
    let early = drplan(dir, &["commit", "1"]);
    expect_code(&early, 1);
    assert!(
        err(&early).contains("job 1 has not ended"),
        "{}",
        err(&early)
    );
    let ack = drplan(dir, &["ack", "1", VERIFY]);
    expect_code(&ack, 0);
    assert!(out(&ack).contains("job 1 succeeded"), "{}", out(&ack));

    let commit = drplan(dir, &["commit", "1", "--by", "bob"]);
    expect_code(&commit, 0);
    let text = out(&commit);
    assert!(
        text.starts_with("job 2: commit of plan orders (after job 1)\n"),
        "{text}"
    );
    assert!(text.contains("job 2 succeeded"), "{text}");

    // Twice: the VMs are committed already; the core names each one.
    let again = drplan(dir, &["commit", "1"]);
    expect_code(&again, 1);
    let e = err(&again);
    assert!(e.contains("cannot commit"), "{e}");
    assert!(e.contains("VM `web-01` is committed"), "{e}");

    let reprotect = drplan(dir, &["reprotect", "1"]);
    expect_code(&reprotect, 0);
    let text = out(&reprotect);
    assert!(text.contains("reverse replicate of plan orders"), "{text}");
    assert!(text.contains("succeeded"), "{text}");

    let failback = drplan(dir, &["failback", plan]);
    expect_code(&failback, 0);
    let text = out(&failback);
    assert!(text.contains("planned failback of plan orders"), "{text}");
    let id = text
        .strip_prefix("job ")
        .and_then(|t| t.split(':').next())
        .expect("a job header")
        .to_string();
    assert!(
        text.contains(&format!("drplan ack {id} {VERIFY}")),
        "{text}"
    );
    let ack = drplan(dir, &["ack", &id, VERIFY]);
    expect_code(&ack, 0);
    assert!(
        out(&ack).contains(&format!("job {id} succeeded")),
        "{}",
        out(&ack)
    );

    // Failback then commit and reprotect by job id: back where we started.
    expect_code(&drplan(dir, &["commit", &id]), 0);
    expect_code(&drplan(dir, &["reprotect", &id]), 0);
    // A second failover of the plan is accepted again: VMs are protected
    // forward once more (checked by the core at submit).
    let second = drplan(dir, &["run", plan, "--failover", "planned"]);
    expect_code(&second, 0);

    let jobs = drplan(dir, &["jobs"]);
    expect_code(&jobs, 0);
    let list = out(&jobs);
    for op in [
        "planned failover",
        "commit",
        "reverse replicate",
        "planned failback",
    ] {
        assert!(list.contains(op), "{op} missing:\n{list}");
    }
    // Six ended jobs (id 3 went to the refused commit, which left no job)
    // and the second failover, waiting.
    assert_eq!(list.matches("succeeded").count(), 6, "{list}");
    assert_eq!(list.matches("waiting for operator").count(), 1, "{list}");
}

#[test]
fn commit_of_a_test_failover_is_refused_clearly() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let run = drplan(dir, &["run", plan.to_str().unwrap(), "--failover", "test"]);
    expect_code(&run, 0);
    for cmd in ["commit", "reprotect", "rollback"] {
        let o = drplan(dir, &[cmd, "1"]);
        expect_code(&o, 1);
        assert!(err(&o).contains("job 1 is a test failover"), "{}", err(&o));
        assert!(err(&o).contains("drplan cleanup 1"), "{}", err(&o));
    }
    // An unknown job: could not run.
    let o = drplan(dir, &["commit", "42"]);
    expect_code(&o, 2);
    assert!(err(&o).contains("job 42 does not exist"), "{}", err(&o));
}

#[test]
fn rollback_of_an_uncommitted_failover_succeeds_and_commit_then_is_refused() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let plan = plan.to_str().unwrap();
    expect_code(&drplan(dir, &["run", plan, "--failover", "planned"]), 0);
    expect_code(&drplan(dir, &["ack", "1", VERIFY]), 0);
    let rb = drplan(dir, &["rollback", "1"]);
    expect_code(&rb, 0);
    assert!(out(&rb).contains("succeeded"), "{}", out(&rb));
    let c = drplan(dir, &["commit", "1"]);
    expect_code(&c, 1);
    assert!(err(&c).contains("cannot commit"), "{}", err(&c));
}

#[test]
fn json_logs_carry_the_job_span() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    let run = drplan(
        dir,
        &[
            "run",
            plan.to_str().unwrap(),
            "--failover",
            "planned",
            "-v",
            "--log-format",
            "json",
        ],
    );
    expect_code(&run, 0);
    let e = err(&run);
    // The runtime's "waiting for an operator" line, inside the job's span
    // with its plan and operation.
    let line = e
        .lines()
        .find(|l| l.contains("waiting for an operator"))
        .unwrap_or_else(|| panic!("no waiting line in:\n{e}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    let span = &v["span"];
    assert_eq!(span["name"], "job", "{line}");
    assert_eq!(span["job"], "1", "{line}");
    assert_eq!(span["plan"], "orders", "{line}");
    assert_eq!(span["operation"], "planned failover", "{line}");
}
