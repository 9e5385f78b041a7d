//! The CLI's details, through the built binary: every command's `--help`
//! describes its own `--format` output, JOB arguments that are not numbers,
//! short step names for the operator commands, counted nouns ("1 VM"),
//! confirmation of destructive commands, `estimate`'s time scale, `run`'s
//! protection warnings and `watch` of a finished job.

use std::collections::BTreeMap;
use std::path::Path;

mod support;
use support::{all, drplan, drplan_in, expect_code, json, out, plan, serial, shipped};

/// The subcommand names of a `--help` page's "Commands:" section.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Every command path of the binary (`["store", "check"]`, ...), walking
/// the command tree through `--help`.
fn command_paths() -> Vec<Vec<String>> {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut all_paths = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = drplan(&args);
        expect_code(&o, 0);
        for sub in subcommands(&out(&o)) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        if !path.is_empty() {
            all_paths.push(path);
        }
    }
    all_paths
}

/// The description of `--format` in a long help page: the lines after the
/// option up to its "Possible values:", joined.
fn format_description(help: &str) -> Option<String> {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--format"));
    lines.next()?;
    let text: Vec<&str> = lines
        .take_while(|l| !l.trim_start().starts_with("Possible values:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Some(text.join(" "))
}

#[test]
fn every_format_option_describes_its_own_commands_output() {
    let paths = command_paths();
    assert!(paths.len() > 30, "the command tree walk found {paths:?}");
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = out(&drplan(&args));
        let name = path.join(" ");
        let Some(desc) = format_description(&help) else {
            continue;
        };
        assert!(
            !desc.is_empty(),
            "`drplan {name} --help` lists --format with no description of what it prints:\n{help}"
        );
        // validate's JSON shape belongs to validate only.
        if name != "validate" {
            assert!(
                !help.contains(r#"{"plans":["#),
                "`drplan {name} --help` describes validate's output:\n{help}"
            );
        }
        seen.entry(desc).or_default().push(name);
    }
    assert!(seen.len() > 8, "too few --format options found: {seen:?}");
    // Two commands may share a description only when they print the same
    // thing: the followers of a job (one line or JSON object per update).
    for (desc, names) in &seen {
        if names.len() > 1 {
            assert!(
                desc.contains("per update"),
                "{names:?} share the --format description {desc:?}: each describes its own output"
            );
            assert!(names.iter().any(|n| n == "run"), "{names:?}: {desc}");
        }
    }
    // Each JSON-printing listing names its own top-level shape.
    for (cmd, shape) in [
        ("jobs", r#""plan_name""#),
        ("plans", r#""last_failover""#),
        ("history", r#""trends""#),
        ("vms", r#""disk_gb""#),
        ("recovery-points", r#""retention_hours""#),
        ("show", r#""verdict""#),
        ("estimate", r#""time_scale""#),
        ("simulate", r#""faults""#),
        ("store check", r#""next_job""#),
        ("capacity", r#""policy""#),
    ] {
        let (d, _) = seen
            .iter()
            .find(|(_, n)| n.iter().any(|n| n == cmd))
            .unwrap_or_else(|| panic!("`{cmd}` has no --format: {seen:?}"));
        assert!(d.contains(shape), "`{cmd}` --format says {d:?}");
    }
}

#[test]
fn a_job_argument_that_is_not_a_number_is_named_as_such() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["show", "abc"],
        vec!["report", "abc"],
        vec!["watch", "abc"],
        vec!["ack", "abc", "verify-health"],
        vec!["retry", "abc", "x"],
        vec!["skip", "abc", "x"],
        vec!["cancel", "abc"],
        vec!["cleanup", "abc", "--notes", "n"],
        vec!["resume", "abc"],
        vec!["commit", "abc"],
        vec!["reprotect", "abc"],
        vec!["rollback", "abc"],
        vec!["change-recovery-point", "abc", "--recovery-point", "latest"],
        vec!["graph", "--job", "abc"],
    ] {
        let o = drplan_in(tmp.path(), &args);
        expect_code(&o, 2);
        let text = all(&o);
        assert!(
            text.contains("`abc` is not a job id") && text.contains("drplan jobs"),
            "{args:?}: {text}"
        );
    }
    // Nothing was created to say so.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// `drplan run` of the shipped plan at a fast time scale.
fn run_plan(dir: &Path, failover: &str, extra: &[&str]) -> std::process::Output {
    let p = plan();
    let mut args = vec![
        "run",
        p.to_str().unwrap(),
        "--failover",
        failover,
        "--time-scale",
        "0.001",
    ];
    args.extend_from_slice(extra);
    drplan_in(dir, &args)
}

/// A drill of the shipped plan, left waiting on its manual step.
fn drill_waiting(dir: &Path) {
    let o = run_plan(dir, "test", &[]);
    expect_code(&o, 0);
    assert!(all(&o).contains("waits: manual step application/post/verify-health"));
}

fn step_state(dir: &Path, key: &str) -> String {
    let v = json(&drplan_in(dir, &["show", "1", "--format", "json"]));
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no step {key} in {v}"))
}

#[test]
fn ack_takes_a_unique_short_step_name_and_lists_ambiguous_ones() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill_waiting(dir);

    // Ambiguous: every VM has a start-test-vm step; nothing is done.
    let o = drplan_in(dir, &["ack", "1", "start-test-vm", "--time-scale", "0.001"]);
    expect_code(&o, 2);
    let text = all(&o);
    assert!(
        text.contains("`start-test-vm` names 7 steps of job 1"),
        "{text}"
    );
    for k in [
        "database/vm/sql-01/start-test-vm",
        "web/vm/web-02/start-test-vm",
    ] {
        assert!(text.contains(k), "{k} in {text}");
    }
    assert_ne!(
        step_state(dir, "application/post/verify-health"),
        "succeeded"
    );

    // Unique: the short name answers the manual step.
    let o = drplan_in(
        dir,
        &[
            "ack",
            "1",
            "verify-health",
            "--by",
            "bob",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 0);
    assert_eq!(
        step_state(dir, "application/post/verify-health"),
        "succeeded"
    );

    // A short name of a step that does not wait is refused by the engine
    // (1), after resolving: the message names the full key.
    let o = drplan_in(
        dir,
        &[
            "retry",
            "1",
            "web-01/start-test-vm",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 1);
}

#[test]
fn counted_nouns_are_singular_for_one() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill_waiting(dir);
    let o = drplan_in(dir, &["store", "check"]);
    expect_code(&o, 0);
    let text = all(&o);
    assert!(text.contains("1 job ("), "{text}");
    assert!(!text.contains("(s)"), "{text}");
    let o = drplan_in(dir, &["history", "orders"]);
    expect_code(&o, 0);
    let text = all(&o);
    assert!(text.contains("plan orders: 1 run\n"), "{text}");
    assert!(!text.contains("(s)"), "{text}");

    // One VM to protect.
    let fabric = shipped("fabric.yaml");
    let o = drplan(&[
        "capacity",
        "rpt-01",
        "--change-rate",
        "5%",
        "--bandwidth",
        "200mbps",
        "--fabric",
        fabric.to_str().unwrap(),
    ]);
    expect_code(&o, 0);
    let text = all(&o);
    assert!(text.contains("capacity estimate for 1 VM ("), "{text}");
}

#[test]
fn a_refused_submission_does_not_use_up_a_job_id() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill_waiting(dir);
    // The drill holds the plan's VMs: a planned failover is refused (1).
    let o = run_plan(dir, "planned", &[]);
    expect_code(&o, 1);
    assert!(all(&o).contains("in use by job 1"), "{}", all(&o));
    // A VM (in no job) that is already protected cannot be protected
    // again (1).
    let fabric = shipped("fabric.yaml");
    let o = drplan_in(
        dir,
        &[
            "protect",
            "mon-01",
            "--fabric",
            fabric.to_str().unwrap(),
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 1);
    // Neither used up an id: the store's next job is 2.
    let v = json(&drplan_in(dir, &["store", "check", "--format", "json"]));
    assert_eq!(v["next_job"], 2, "{v}");
}

/// drplan on a pseudo-terminal (util-linux `script` gives it a pty for
/// stdin and stdout), `input` typed at once (the pty buffers it).
fn on_terminal(dir: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(support::bin());
    for a in args.iter().chain(&["--data-dir", dir.to_str().unwrap()]) {
        line = format!("{line} {}", quote(a));
    }
    let mut child = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("DRPLAN_DATA_DIR")
        .env("USER", "alice")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs (Debian: bsdutils)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn status(dir: &Path, job: &str) -> String {
    let v = json(&drplan_in(dir, &["show", job, "--format", "json"]));
    v["status"].as_str().unwrap_or_default().to_string()
}

/// A planned failover of the shipped plan waiting for an operator (its
/// manual step), with the job id 1.
fn planned_waiting(dir: &Path) {
    let o = run_plan(dir, "planned", &["--no-prompt"]);
    expect_code(&o, 0);
    assert_eq!(status(dir, "1"), "waiting for operator");
}

#[test]
fn cancelling_a_planned_failover_asks_on_a_terminal_only() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    planned_waiting(dir);

    // On a terminal: asked; "n" (or just Enter) leaves the job alone (1).
    let o = on_terminal(dir, &["cancel", "1", "--no-prompt"], "n\n");
    let text = all(&o);
    assert!(text.contains("Cancel job 1 (planned failover"), "{text}");
    assert!(text.contains("[y/N]"), "{text}");
    assert!(text.contains("not cancelled"), "{text}");
    assert_eq!(status(dir, "1"), "waiting for operator");

    // "y" cancels.
    let o = on_terminal(dir, &["cancel", "1", "--no-prompt"], "y\n");
    let text = all(&o);
    assert!(text.contains("[y/N]"), "{text}");
    assert_eq!(status(dir, "1"), "cancelled", "{text}");
}

#[test]
fn cancel_with_yes_or_off_a_terminal_never_asks() {
    let _s = serial();
    // Piped: cancelled at once, nothing asked.
    let tmp = tempfile::tempdir().unwrap();
    planned_waiting(tmp.path());
    let o = drplan_in(tmp.path(), &["cancel", "1", "--time-scale", "0.001"]);
    assert!(!all(&o).contains("[y/N]"), "{}", all(&o));
    assert_eq!(status(tmp.path(), "1"), "cancelled", "{}", all(&o));

    // On a terminal with --yes: nothing asked either.
    let tmp = tempfile::tempdir().unwrap();
    planned_waiting(tmp.path());
    let o = on_terminal(tmp.path(), &["cancel", "1", "--no-prompt", "--yes"], "");
    assert!(!all(&o).contains("[y/N]"), "{}", all(&o));
    assert_eq!(status(tmp.path(), "1"), "cancelled", "{}", all(&o));

    // A drill on a terminal: nothing to confirm (its test VMs only).
    let tmp = tempfile::tempdir().unwrap();
    drill_waiting(tmp.path());
    let o = on_terminal(tmp.path(), &["cancel", "1", "--no-prompt"], "");
    assert!(!all(&o).contains("[y/N]"), "{}", all(&o));
    assert_ne!(
        status(tmp.path(), "1"),
        "waiting for operator",
        "{}",
        all(&o)
    );
}

#[test]
fn deleting_replicas_asks_on_a_terminal() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fabric = shipped("fabric.yaml");
    let f = fabric.to_str().unwrap();
    let unprotect = ["unprotect", "mon-01", "--delete-replica", "--fabric", f];
    let o = on_terminal(dir, &unprotect, "n\n");
    let text = all(&o);
    assert!(text.contains("DELETE its replica"), "{text}");
    assert!(text.contains("nothing done"), "{text}");
    let vms = json(&drplan_in(dir, &["vms", "--fabric", f, "--format", "json"]));
    let mon = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["vm"] == "mon-01")
            .map(|x| x["state"].as_str().unwrap_or_default().to_string())
            .unwrap()
    };
    assert!(mon(&vms).starts_with("protected"), "{vms}");

    // Piped: no question, the job runs.
    let mut args = unprotect.to_vec();
    args.extend(["--time-scale", "0.001"]);
    let o = drplan_in(dir, &args);
    expect_code(&o, 0);
    assert!(!all(&o).contains("[y/N]"), "{}", all(&o));
    let vms = json(&drplan_in(dir, &["vms", "--fabric", f, "--format", "json"]));
    assert!(mon(&vms).starts_with("unprotected"), "{vms}");
}

/// The `estimate --format json` of the shipped plan's test failover.
fn estimate_json(dir: &Path, scale: &str) -> serde_json::Value {
    let p = plan();
    let o = drplan_in(
        dir,
        &[
            "estimate",
            p.to_str().unwrap(),
            "--failover",
            "test",
            "--time-scale",
            scale,
            "--format",
            "json",
        ],
    );
    expect_code(&o, 0);
    json(&o)
}

/// Answers job `job`'s manual step and closes its drill, at `scale`.
fn finish_drill(dir: &Path, job: &str, scale: &str) {
    for args in [
        vec!["ack", job, "verify-health"],
        vec!["cleanup", job, "--notes", "ok"],
    ] {
        let mut a = args.clone();
        a.extend(["--time-scale", scale, "--no-prompt"]);
        expect_code(&drplan_in(dir, &a), 0);
    }
}

#[test]
fn estimate_measures_only_runs_at_the_scale_it_reports() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Job 1 at 0.001 throughout; job 2 started at 0.001, finished at 0.002.
    drill_waiting(dir);
    finish_drill(dir, "1", "0.001");
    drill_waiting(dir);
    finish_drill(dir, "2", "0.002");
    let jobs = json(&drplan_in(dir, &["jobs", "--format", "json"]));
    assert_eq!(jobs[0]["labels"]["fabric.time_scale"], "0.001", "{jobs}");
    assert_eq!(jobs[1]["labels"]["fabric.time_scale"], "0.001,0.002");

    let v = estimate_json(dir, "0.001");
    assert_eq!(v["time_scale"], 0.001);
    assert_eq!(v["history"]["jobs"], serde_json::json!([1]), "{v}");
    assert_eq!(
        v["history"]["left_out"],
        serde_json::json!([{"reason": "mixed_scales", "time_scales": [0.001, 0.002], "jobs": [2]}])
    );
    // No run at 0.002 alone: nothing measured, both runs counted out.
    let v = estimate_json(dir, "0.002");
    assert_eq!(v["history"]["jobs"], serde_json::json!([]), "{v}");
    assert_eq!(v["estimates"][0]["measured"], 0, "{v}");
    let left = v["history"]["left_out"].as_array().unwrap();
    assert_eq!(left.len(), 2, "{v}");

    // The human form says which scale it reports and what it left out.
    let p = plan();
    let o = drplan_in(
        dir,
        &["estimate", p.to_str().unwrap(), "--time-scale", "0.001"],
    );
    let text = all(&o);
    assert!(
        text.contains("time scale 0.001 of the simulated fabric"),
        "{text}"
    );
    assert!(text.contains("1 finished run in"), "{text}");
    assert!(
        text.contains("left out 1 finished run that ran partly at each of the time scales 0.001, 0.002 (job 2)"),
        "{text}"
    );
}

#[test]
fn estimate_leaves_out_runs_of_unknown_scale() {
    use drplan_engine::journal::JobMeta;
    use drplan_engine::store::sled_store::SledStore;
    use drplan_engine::store::{JobId, Store, Write, codec};
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill_waiting(dir);
    finish_drill(dir, "1", "0.001");
    // As a store written before drplan recorded time scales: no labels.
    {
        let s = SledStore::open(dir).unwrap();
        let bytes = s.job_meta(JobId(1)).unwrap().unwrap();
        let mut meta: JobMeta = codec::decode(&bytes).unwrap();
        assert!(!meta.labels.is_empty());
        meta.labels.clear();
        let payload = codec::encode(&meta);
        assert!(!String::from_utf8_lossy(&payload).contains("labels"));
        s.apply(&[Write::JobMeta {
            job: JobId(1),
            payload,
        }])
        .unwrap();
        s.flush().unwrap();
    }
    let v = estimate_json(dir, "0.001");
    assert_eq!(v["history"]["jobs"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["history"]["left_out"],
        serde_json::json!([{"reason": "unknown_scale", "time_scales": [], "jobs": [1]}])
    );
    // The old record still reads everywhere else.
    expect_code(&drplan_in(dir, &["show", "1"]), 0);
    expect_code(&drplan_in(dir, &["store", "check"]), 0);
}

#[test]
fn run_speaks_of_each_vms_current_protection_not_the_inventorys() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fabric = shipped("fabric.yaml");
    let f = fabric.to_str().unwrap();
    let reporting = shipped("reporting.yaml");
    let r = reporting.to_str().unwrap();
    let fast = ["--time-scale", "0.001", "--no-prompt"];
    let run = |plan: &str| {
        let mut a = vec!["run", plan, "--failover", "test"];
        a.extend(fast);
        drplan_in(dir, &a)
    };
    // Declared unprotected, and so they are: refused, naming each VM's
    // state in the store; no warning about the declaration.
    let o = run(r);
    expect_code(&o, 1);
    let text = all(&o);
    assert!(text.contains("VM `rpt-01` is unprotected"), "{text}");
    assert!(!text.contains("declared unprotected"), "{text}");
    assert!(!text.contains("DP0603"), "{text}");

    // Protected since: the drill runs, without the stale warning.
    let mut a = vec![
        "protect",
        "rpt-01",
        "rpt-02",
        "legacy-01",
        "--now",
        "--fabric",
        f,
    ];
    a.extend(fast);
    expect_code(&drplan_in(dir, &a), 0);
    let o = run(r);
    expect_code(&o, 0);
    let text = all(&o);
    assert!(!text.contains("declared unprotected"), "{text}");
    assert!(!text.contains("replicated outside drplan"), "{text}");
    assert!(text.contains("test failover of plan reporting"), "{text}");

    // Declared protected but unprotected since: refused with its state.
    let mut a = vec!["unprotect", "web-01", "--keep-replica", "--fabric", f];
    a.extend(fast);
    expect_code(&drplan_in(dir, &a), 0);
    let p = plan();
    let o = run(p.to_str().unwrap());
    expect_code(&o, 1);
    assert!(
        all(&o).contains("VM `web-01` is unprotected"),
        "{}",
        all(&o)
    );
}

/// Every time in a JSON record (`at`, `*_at`) moved `by` ms earlier.
fn shift_times(v: &mut serde_json::Value, by: u64) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x.as_u64() {
                    Some(t) if k == "at" || k.ends_with("_at") => *x = (t - by).into(),
                    _ => shift_times(x, by),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| shift_times(x, by)),
        _ => {}
    }
}

#[test]
fn watch_of_a_finished_job_prints_when_things_happened() {
    let _s = serial();
    let tmp = tempfile::tempdir().unwrap();
    let ran = tmp.path().join("ran");
    let o = run_plan(&ran, "planned", &["--no-prompt"]);
    expect_code(&o, 0);
    let mut a = vec!["ack", "1", "verify-health", "--no-prompt"];
    a.extend(["--time-scale", "0.001"]);
    expect_code(&drplan_in(&ran, &a), 0);
    assert_eq!(status(&ran, "1"), "succeeded");
    // The job as if it had run three hours ago (no sleeping): every time
    // its records hold moved back, through a re-sealed export.
    const AGO: u64 = 3 * 3_600_000;
    let export = tmp.path().join("export.jsonl");
    let e = export.to_str().unwrap();
    expect_code(&drplan_in(&ran, &["store", "export", "-o", e]), 0);
    let mut body = String::new();
    let mut records = 0;
    for line in std::fs::read_to_string(&export).unwrap().lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["t"].as_str() {
            Some("end") => break,
            Some("event" | "meta") => shift_times(&mut v["body"], AGO),
            _ => {}
        }
        records += usize::from(v.get("t").is_some());
        body.push_str(&v.to_string());
        body.push('\n');
    }
    let seal = blake3::hash(body.as_bytes()).to_hex();
    body.push_str(&format!(
        "{{\"t\":\"end\",\"records\":{records},\"blake3\":\"{seal}\"}}\n"
    ));
    std::fs::write(&export, body).unwrap();
    let dir = &tmp.path().join("old");
    let o = drplan_in(dir, &["store", "import", e]);
    expect_code(&o, 0);

    let shown = json(&drplan_in(dir, &["show", "1", "--format", "json"]));
    let o = drplan_in(dir, &["watch", "1", "--time-scale", "0.001"]);
    expect_code(&o, 0);
    let text = out(&o);
    // The clock of each group's end, as `show` has it.
    for g in shown["groups"].as_array().unwrap() {
        let name = g["name"].as_str().unwrap();
        let end = g["finished_at"].as_u64().unwrap_or_else(|| panic!("{g}"));
        let secs = end / 1000 % 86_400;
        let clock = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("group {name} ")))
            .unwrap_or_else(|| panic!("no line of group {name} in:\n{text}"));
        assert!(
            line.starts_with(&clock),
            "{line} (ended at {clock})\n{text}"
        );
    }
    assert!(text.contains("started 3h"), "{text}");
}
