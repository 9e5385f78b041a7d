//! Hostile scripts and secrets through the real binary (issue #6 item 4):
//! the runner's own tests (engine/tests/script_hostile.rs, script_env.rs)
//! prove each protection on the runner; these prove the engine and the CLI
//! use it: a script that floods output, ignores SIGTERM and leaves a child
//! holding its pipe is ended by its timeout with its whole process group,
//! `drplan` stays small, and the job history keeps a bounded tail; a script
//! sees none of the engine's environment unless the plan passes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan_engine::core::{JobEvent, JobStatus, Outcome};
use drplan_engine::journal::Journal;
use drplan_engine::runtime::{OUTPUT_TAIL_BYTES, OUTPUT_TAIL_LINES};
use drplan_engine::store::JobId;
use drplan_engine::store::sled_store::SledStore;

mod support;
use support::serial;

/// A one-group plan (the shipped inventory's sql-01) whose group runs
/// `post` steps, written to `dir`.
fn plan(dir: &Path, post: &str) -> PathBuf {
    let fabric = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/fabric.yaml");
    let text = format!(
        "drplan: 1\nname: hostile\nsource: primary-vmm/gold\ntarget: secondary-vmm/gold-dr\n\
         fabric: {}\ntest:\n  network: test-bubble\ncommit:\n  policy: none\n\
         groups:\n  - name: db\n    vms: [sql-01]\n    post:\n{post}",
        fabric.display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs an unplanned failover (it runs to the end whatever fails) of
/// `plan` with `env` added to drplan's own environment. Returns the job's
/// events and drplan's peak resident memory (KiB).
fn run(dir: &Path, plan: &Path, env: &[(&str, &str)]) -> (JobStatus, Vec<JobEvent>, u64) {
    let data = dir.join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drplan"));
    cmd.arg("run")
        .arg(plan)
        .args([
            "--failover",
            "unplanned",
            "--time-scale",
            "0.001",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("DRPLAN_DATA_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("drplan starts");
    let pid = child.id();
    // Peak RSS, sampled while it runs (VmHWM only grows).
    let mut peak_kib = 0;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "drplan hangs on a hostile script"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 1: the job completed with errors (a failed step), 0: it succeeded.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{status:?}\n{stdout}\n{stderr}"
    );
    let store = Arc::new(SledStore::open(&data).expect("store"));
    let journal = Journal::open(store).expect("journal");
    let job = JobId(1);
    let st = journal.job(job).unwrap().expect("job 1");
    (st.status(), journal.events(job).unwrap(), peak_kib)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether any process is left in process group `pgid` (from /proc).
fn group_alive(pgid: u32) -> Vec<u32> {
    let mut alive = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split
        // after its closing parenthesis.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // A zombie waits for its parent to reap it: it runs nothing.
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            alive.push(pid);
        }
    }
    alive
}

/// The output tail and outcome the history keeps for the step whose tail
/// contains `marker` (or the only failed step).
fn finished(events: &[JobEvent]) -> Vec<(Outcome, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::StepFinished {
                outcome,
                output_tail,
                ..
            } => Some((outcome.clone(), output_tail.clone().unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_script_sees_no_engine_secret_unless_the_plan_passes_it() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let other = format!("ENGINE_ONLY_{}", std::process::id());
    let post = format!(
        "      - name: env-check\n        shell: \"env | grep -E '^(DRPLAN_API_TOKEN|AWS_SECRET_ACCESS_KEY|SSH_AUTH_SOCK|{other}|PLAN_TOKEN)=' | sort; echo env-checked\"\n        env:\n          PLAN_TOKEN: passed-by-the-plan\n"
    );
    let plan = plan(tmp.path(), &post);
    let (status, events, _) = run(
        tmp.path(),
        &plan,
        &[
            ("DRPLAN_API_TOKEN", "engine-token-123"),
            ("AWS_SECRET_ACCESS_KEY", "engine-aws-secret"),
            ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
            (&other, "engine-only-value"),
        ],
    );
    assert_eq!(status, JobStatus::Succeeded, "{events:#?}");
    let tail = finished(&events)
        .into_iter()
        .map(|(_, t)| t)
        .find(|t| t.contains("env-checked"))
        .expect("the env-check step's output is in the history");
    // The script saw exactly what the plan passed, nothing of the engine's.
    assert_eq!(
        tail.lines().collect::<Vec<_>>(),
        ["PLAN_TOKEN=passed-by-the-plan", "env-checked"],
        "{tail}"
    );
    for secret in [
        "engine-token-123",
        "engine-aws-secret",
        "agent.sock",
        "engine-only-value",
    ] {
        let leaked = events.iter().any(|e| format!("{e:?}").contains(secret));
        assert!(!leaked, "{secret} reached the job history");
    }
}

#[test]
fn a_flooding_hanging_sigterm_ignoring_script_is_ended_with_its_group_and_bounded() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    // Ignores SIGTERM (inherited by its children), leaves a child holding
    // the output pipe, then prints without end.
    let post = "      - name: hostile\n        shell: \"trap '' TERM; echo $$ > pgid; sleep 300 & yes 'flood flood flood flood flood flood flood flood'\"\n        timeout: 2s\n        retries: 0\n";
    let plan = plan(tmp.path(), post);
    let started = Instant::now();
    let (status, events, peak_kib) = run(tmp.path(), &plan, &[]);
    let took = started.elapsed();
    assert_eq!(status, JobStatus::CompletedWithErrors, "{events:#?}");
    let (outcome, tail) = finished(&events)
        .into_iter()
        .find(|(_, t)| t.contains("flood"))
        .expect("the hostile step's output is in the history");
    assert_eq!(outcome, Outcome::TimedOut);
    // Bounded tail: the last lines, within the history's byte budget; the
    // runner's warnings are data on the event, not lines of the output.
    let output = &tail;
    assert!(output.len() <= OUTPUT_TAIL_BYTES + 8, "{}", output.len());
    assert!(output.lines().count() <= OUTPUT_TAIL_LINES, "{output}");
    let warnings: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::StepFinished { warnings, .. } => Some(warnings),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("did not exit within")),
        "no SIGKILL warning: {warnings:?}"
    );
    // The whole group is gone: the script, `yes` and the `sleep` child.
    let pgid: u32 = std::fs::read_to_string(tmp.path().join("pgid"))
        .expect("the script wrote its pgid")
        .trim()
        .parse()
        .unwrap();
    let alive = group_alive(pgid);
    assert!(
        alive.is_empty(),
        "processes of group {pgid} left: {alive:?}"
    );
    // drplan's memory stayed small while gigabytes went through its pipe.
    eprintln!(
        "hostile script through drplan: ended in {took:?} (timeout 2 s + grace 5 s), \
         peak RSS of drplan {peak_kib} KiB, history tail {} bytes",
        output.len()
    );
    assert!(peak_kib > 0, "could not sample drplan's memory");
    assert!(peak_kib < 128 * 1024, "drplan grew to {peak_kib} KiB");
    // Timeout 2 s, then the 5 s SIGTERM grace, then SIGKILL: well under
    // the 300 s the script would run.
    assert!(took < Duration::from_secs(60), "{took:?}");
}
