//! Logging of the CLI: `--log-format json` writes one JSON object per line
//! to stderr, with the job's span (job id, plan, kind, operation) and the
//! step's span (step key, attempt); `--format json` output on stdout never
//! contains a log line; `-v`/`-vv` and `RUST_LOG` choose the level
//! (`RUST_LOG` wins).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod support;
use support::{err as stderr, plan};

/// `drplan run` of a planned failover (it stops at the plan's manual step
/// and exits 0), with `extra` flags and `rust_log` as RUST_LOG.
fn run(dir: &Path, extra: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = support::cmd(&["run"]);
    cmd.arg(plan())
        .args(["--failover", "planned", "--time-scale", "0.001"])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove("RUST_LOG");
    if let Some(l) = rust_log {
        cmd.env("RUST_LOG", l);
    }
    let o = support::output(cmd);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn json_logs_carry_job_and_step_spans_and_stay_off_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        tmp.path(),
        &["-v", "--log-format", "json", "--format", "json"],
        None,
    );
    // stdout: the command's JSON lines only, none of them a log record.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.trim().is_empty(), "no output on stdout");
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_none() && v.get("target").is_none(),
            "a log record on stdout: {line}"
        );
    }
    // stderr: every line a JSON log record.
    let err = stderr(&o);
    let records: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(records.len() > 10, "{err}");
    for r in &records {
        assert!(r["timestamp"].is_string(), "{r}");
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&r["level"].as_str().unwrap_or("")),
            "-v logs info and above only: {r}"
        );
        assert!(r["target"].is_string(), "{r}");
        assert!(r["fields"]["message"].is_string(), "{r}");
    }
    // A step's outcome: inside its step span, inside its job span.
    let step = records
        .iter()
        .find(|r| {
            r["fields"]["message"] == "step succeeded"
                && r["span"]["step"] == "database/vm/sql-01/shutdown-primary"
        })
        .unwrap_or_else(|| panic!("no step record for sql-01's shutdown in:\n{err}"));
    assert_eq!(step["span"]["name"], "step", "{step}");
    assert_eq!(step["span"]["attempt"], 1, "{step}");
    let spans = step["spans"].as_array().expect("the span list");
    let job = spans
        .iter()
        .find(|s| s["name"] == "job")
        .unwrap_or_else(|| panic!("no job span around the step: {step}"));
    assert_eq!(job["job"], "1", "{step}");
    assert_eq!(job["plan"], "orders", "{step}");
    assert_eq!(job["kind"], "planned", "{step}");
    assert_eq!(job["operation"], "planned failover", "{step}");
}

#[test]
fn verbosity_flags_and_rust_log_choose_the_level() {
    let levels = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["level"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // Default: warnings and errors only (a healthy run has none).
    let tmp = tempfile::tempdir().unwrap();
    let quiet = run(tmp.path(), &["--log-format", "json"], None);
    assert!(
        levels(&quiet).iter().all(|l| l == "WARN" || l == "ERROR"),
        "{}",
        stderr(&quiet)
    );
    // -vv: debug records (the VM operations starting).
    let tmp = tempfile::tempdir().unwrap();
    let debug = run(tmp.path(), &["-vv", "--log-format", "json"], None);
    assert!(
        levels(&debug).iter().any(|l| l == "DEBUG"),
        "{}",
        stderr(&debug)
    );
    assert!(stderr(&debug).contains("VM operation started"));
    // RUST_LOG wins over -vv.
    let tmp = tempfile::tempdir().unwrap();
    let warn = run(tmp.path(), &["-vv", "--log-format", "json"], Some("warn"));
    assert!(
        levels(&warn).iter().all(|l| l == "WARN" || l == "ERROR"),
        "{}",
        stderr(&warn)
    );
    // Text format by default: human lines, not JSON.
    let tmp = tempfile::tempdir().unwrap();
    let text = run(tmp.path(), &["-v"], None);
    let e = stderr(&text);
    assert!(e.contains("INFO") && e.contains("step succeeded"), "{e}");
    assert!(serde_json::from_str::<Value>(e.lines().next().unwrap_or("")).is_err());
}

#[test]
fn a_bad_rust_log_is_reported_and_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &[], Some("drplan=[nope"));
    let e = stderr(&o);
    assert!(e.contains("ignoring RUST_LOG `drplan=[nope`"), "{e}");
}
