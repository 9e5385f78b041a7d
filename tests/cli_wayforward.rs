//! A way forward from every stop (issue #15 items 3 and 9), through the
//! built binary on the shipped three-tier plan: a planned, an unplanned and
//! a test failover are cancelled at every step of the compiled plan (each
//! VM operation held in flight by a `slow:` fault, each manual step while
//! it waits); then the way forward `cancel` printed is run to the end,
//! answering the waits it prints on the way. At the end every VM of the
//! plan is on one side (`drplan vms`), and `drplan store check` is clean.
//!
//! The steps come from `drplan simulate --format json`, never from a list
//! here, so a change to the compiled order (the failover phases) keeps the
//! test exhaustive. The cases run on a few threads, each with its own data
//! directory and `drplan serve` (the run follows through the server while
//! `show` and `cancel` reach the job from another process).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{all, cmd, cmd_in, expect_code, json, out, output, plan};

/// How long a `slow:` fault holds a VM operation (real time: the fault is
/// not scaled): long enough to see it run and cancel it from another
/// process, short enough for a `continue` that meets the same fault again
/// (faults stay in force for later commands).
const HOLD: &str = "6s";

/// One place to stop a failover: the step, and how it is held there.
#[derive(Debug, Clone)]
struct Case {
    kind: &'static str,
    key: String,
    /// `slow:OP:VM:HOLD` for a VM operation; `None` for a manual step (the
    /// run stops there by itself).
    fault: Option<String>,
    /// Which printed way forward to take (every kind is taken somewhere).
    choice: usize,
}

/// The steps of the plan's `kind` failover that a cancel can land on.
fn cases(kind: &'static str) -> Vec<Case> {
    let p = plan();
    let o = output(cmd(&[
        "simulate",
        p.to_str().unwrap(),
        "--failover",
        kind,
        "--format",
        "json",
    ]));
    expect_code(&o, 0);
    let v = json(&o);
    let steps = v["steps"].as_array().expect("steps");
    let mut out = Vec::new();
    for s in steps {
        let key = s["key"].as_str().unwrap().to_string();
        let fault = match s["kind"].as_str().unwrap() {
            "vm-op" if !key.starts_with("cleanup/") => {
                // GROUP/vm/VM/OP
                let parts: Vec<&str> = key.split('/').collect();
                let (vm, op) = (parts[parts.len() - 2], parts[parts.len() - 1]);
                Some(format!("slow:{op}:{vm}:{HOLD}"))
            }
            "manual" => None,
            _ => continue,
        };
        out.push(Case {
            kind,
            key,
            fault,
            choice: 0,
        });
    }
    assert!(out.len() > 5, "too few steps to cancel at: {out:?}");
    out
}

struct Serve {
    child: Child,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let fabric = support::shipped("fabric.yaml");
        let fabric = fabric.to_str().unwrap();
        let mut c = cmd_in(dir, &["serve", "--time-scale", "0.001", "--fabric", fabric]);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = c.spawn().expect("serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on unix:") => break,
                Some(Ok(_)) => {}
                _ => {
                    let _ = child.kill();
                    panic!("serve did not start");
                }
            }
        }
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Serve { child }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drplan(dir: &Path, args: &[&str]) -> Output {
    output(cmd_in(dir, args))
}

/// The state of step `key` of job 1, as `show` reports it.
fn step_state(dir: &Path, key: &str) -> Option<String> {
    let o = drplan(dir, &["show", "1", "--format", "json"]);
    if o.status.code() != Some(0) {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v["steps"]
        .as_array()?
        .iter()
        .find(|s| s["key"] == key)
        .and_then(|s| s["state"].as_str().map(String::from))
}

/// The commands a follower printed under `label` (e.g. `continue:`), as
/// arguments (the leading `drplan` removed).
fn printed(text: &str, label: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(label))
        .map(|cmd| {
            cmd.split_whitespace()
                .skip(1)
                .filter(|w| !matches!(*w, "[--note" | "TEXT]"))
                .map(|w| match w {
                    "NAME" => "tester",
                    "TEXT" => "observed",
                    w => w,
                })
                .map(String::from)
                .collect()
        })
        .collect()
}

/// Runs a printed command as printed, at the serve's time scale.
fn run_printed(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = cmd(&refs);
    c.args(["--time-scale", "0.001"]);
    output(c)
}

/// Runs `first`, then answers every manual step it (and each answer)
/// stops at with the printed `done:` command, until a job ends.
fn through(first: &[String], trail: &mut String) -> Output {
    let mut o = run_printed(first);
    for _ in 0..10 {
        trail.push_str(&all(&o));
        let Some(ack) = printed(&out(&o), "done:").into_iter().next() else {
            return o;
        };
        o = run_printed(&ack);
    }
    panic!("the way forward never ended:\n{trail}");
}

/// Each VM of the plan and the side it is on per `vms`, or its state when
/// it is on neither.
fn sides(dir: &Path) -> BTreeMap<String, String> {
    let fabric = support::shipped("fabric.yaml");
    let o = drplan(
        dir,
        &[
            "vms",
            "--format",
            "json",
            "--fabric",
            fabric.to_str().unwrap(),
        ],
    );
    expect_code(&o, 0);
    let plan_vms = [
        "sql-01", "sql-02", "app-01", "app-02", "app-03", "web-01", "web-02",
    ];
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| plan_vms.contains(&v["vm"].as_str().unwrap()))
        .map(|v| {
            let item = &v["item"];
            let side = match (item["state"].as_str(), item["direction"].as_str()) {
                (Some("protected"), Some("forward")) => "primary".to_string(),
                (Some("failed_over" | "committed"), Some("forward")) => "secondary".to_string(),
                _ => format!("{item}"),
            };
            (v["vm"].as_str().unwrap().to_string(), side)
        })
        .collect()
}

/// One case: stop, cancel, follow the printed way forward, check the end.
fn run_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let serve = Serve::start(dir);
    let p = plan();
    let mut args = vec![
        "run",
        p.to_str().unwrap(),
        "--failover",
        case.kind,
        "--no-prompt",
    ];
    if let Some(f) = &case.fault {
        args.extend(["--inject", f]);
    }
    let mut run = cmd_in(dir, &args);
    run.stdout(Stdio::piped()).stderr(Stdio::piped());
    // The processes following the job: the run, then the answers to the
    // manual steps it stops at on the way to a later step.
    let mut followers: Vec<Child> = vec![run.spawn().expect("run")];
    let mut trail = String::new();
    if case.fault.is_some() {
        // Hold on until the step runs (it then runs for HOLD).
        let deadline = Instant::now() + Duration::from_secs(120);
        while step_state(dir, &case.key).as_deref() != Some("running") {
            let mut running = Vec::new();
            for mut child in std::mem::take(&mut followers) {
                if child.try_wait().expect("try_wait").is_none() {
                    running.push(child);
                    continue;
                }
                let o = child.wait_with_output().unwrap();
                trail.push_str(&all(&o));
                for ack in printed(&out(&o), "done:") {
                    let refs: Vec<&str> = ack.iter().map(String::as_str).collect();
                    let mut c = cmd(&refs);
                    c.stdout(Stdio::piped()).stderr(Stdio::piped());
                    running.push(c.spawn().expect("ack"));
                }
            }
            followers = running;
            if Instant::now() > deadline {
                for mut r in followers {
                    let _ = r.kill();
                    let _ = r.wait();
                }
                return Err(format!("step {} never ran:\n{trail}", case.key));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        // A manual step: the run stops there by itself.
        let o = followers.pop().unwrap().wait_with_output().unwrap();
        trail.push_str(&all(&o));
        if !out(&o).contains(&format!("manual step {}", case.key)) {
            return Err(format!("the run did not stop at {}:\n{trail}", case.key));
        }
    }
    let cancel = drplan(dir, &["cancel", "1"]);
    trail.push_str(&all(&cancel));
    if cancel.status.code() == Some(2) {
        return Err(format!("cancel could not run:\n{trail}"));
    }
    for r in followers {
        // They followed the job through the server to its end.
        let o = r.wait_with_output().unwrap();
        trail.push_str(&all(&o));
    }
    if case.fault.is_some() && step_state(dir, &case.key).as_deref() != Some("cancelled") {
        return Err(format!(
            "{} was not cancelled in flight:\n{trail}",
            case.key
        ));
    }
    serve.stop();
    let text = out(&cancel);
    {
        // Every command printed is accepted: take one by the case's turn.
        // A cancelled drill waits for its cleanup; a failover prints its
        // way forward.
        let mut options: Vec<(&str, Vec<String>)> = Vec::new();
        for label in ["continue:", "rollback:", "commit:", "cleanup:"] {
            for c in printed(&text, label) {
                options.push((label, c));
            }
        }
        let wanted = if case.kind == "test" {
            "cleanup:"
        } else {
            "rollback:"
        };
        if !options.iter().any(|(l, _)| *l == wanted) {
            return Err(format!("no way forward printed:\n{trail}"));
        }
        let (label, first) = options[case.choice % options.len()].clone();
        let o = through(&first, &mut trail);
        if o.status.code() != Some(0) {
            return Err(format!("`{label}` ended badly:\n{trail}"));
        }
        // A commit leaves what never failed over at the primary: its own
        // way forward continues the failover.
        if label == "commit:" {
            let job = first[1].clone();
            let cont: Vec<String> = ["continue", job.as_str(), "--data-dir"]
                .iter()
                .map(|s| s.to_string())
                .chain([dir.to_str().unwrap().to_string()])
                .collect();
            if text.contains("continue:") {
                let o = through(&cont, &mut trail);
                if o.status.code() != Some(0) {
                    return Err(format!("continue after commit ended badly:\n{trail}"));
                }
            }
        }
    }
    let sides = sides(dir);
    let first = sides.values().next().cloned().unwrap_or_default();
    if sides.len() != 7 || sides.values().any(|s| *s != first) || first.starts_with('{') {
        return Err(format!("VMs on different sides: {sides:?}\n{trail}"));
    }
    let check = drplan(dir, &["store", "check"]);
    if check.status.code() != Some(0) {
        return Err(format!("store check:\n{}\n{trail}", all(&check)));
    }
    Ok(())
}

#[test]
fn every_cancelled_failover_has_a_way_forward_to_one_side() {
    let mut all_cases = Vec::new();
    for kind in ["planned", "unplanned", "test"] {
        for (i, mut c) in cases(kind).into_iter().enumerate() {
            c.choice = i;
            all_cases.push(c);
        }
    }
    let queue = Mutex::new(all_cases.clone());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let Some(case) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    if let Err(e) = run_case(&case) {
                        failures.lock().unwrap().push(format!(
                            "{} failover, cancelled at {}: {e}",
                            case.kind, case.key
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all_cases.len(),
        failures.join("\n\n")
    );
}

/// `resume` after a drill's deadline passed while no engine ran follows the
/// forced end to its real end: it does not print the cleanup the drill is
/// leaving (which would be refused) nor exit while it cleans up. Whether
/// the follower sees the job before the overdue timer fires is a race (on
/// this machine the timer usually wins, so the test passes without the
/// fix in `progress::timer_due` too); the test checks the end the operator
/// must see either way. The plan is
/// the shipped one with a 5-second deadline (the binary has no clock
/// control: the test waits for the real deadline, polling).
#[test]
fn resume_follows_a_drill_past_its_deadline_to_the_forced_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let plans = tmp.path().join("plans");
    std::fs::create_dir(&plans).unwrap();
    let text = std::fs::read_to_string(plan()).unwrap();
    assert!(text.contains("max_duration: 7d"));
    std::fs::write(
        plans.join("three-tier.yaml"),
        text.replace("max_duration: 7d", "max_duration: 5s"),
    )
    .unwrap();
    for f in ["fabric.yaml", "scripts"] {
        std::os::unix::fs::symlink(support::shipped(f), plans.join(f)).unwrap();
    }
    let p = plans.join("three-tier.yaml");
    let p = p.to_str().unwrap();
    let run = drplan(
        &dir,
        &[
            "run",
            p,
            "--failover",
            "test",
            "--no-prompt",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&run, 0);
    assert!(out(&run).contains("waits: manual step"), "{}", all(&run));
    // Answered: the drill is up and waits for its cleanup.
    let mut ack = printed(&out(&run), "done:").remove(0);
    ack.extend(["--time-scale".to_string(), "0.001".to_string()]);
    let ack = output(cmd(&ack.iter().map(String::as_str).collect::<Vec<_>>()));
    expect_code(&ack, 0);
    assert!(out(&ack).contains("clean up"), "{}", all(&ack));
    // The deadline passes while no engine runs.
    let show = drplan(&dir, &["show", "1", "--format", "json"]);
    let started = json(&show)["started_at"].as_u64().expect("started_at");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    while now() < started + 5_500 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let resume = drplan(&dir, &["resume", "1", "--time-scale", "0.001"]);
    let text = all(&resume);
    assert!(
        text.contains("test forcibly ended") || text.contains("forcibly"),
        "{text}"
    );
    assert!(!text.contains("drplan cleanup 1"), "{text}");
    assert!(!text.contains("waits:"), "{text}");
    let show = drplan(&dir, &["show", "1", "--format", "json"]);
    expect_code(&show, 0);
    let status = json(&show)["status"].as_str().unwrap().to_string();
    assert!(status.contains("forcibly"), "status {status}");
}

/// The one command printed under `label` in `o`'s output.
#[track_caller]
fn the_printed(o: &Output, label: &str) -> Vec<String> {
    let mut found = printed(&out(o), label);
    assert_eq!(
        found.len(),
        1,
        "one `{label}` command expected:\n{}",
        all(o)
    );
    found.remove(0)
}

/// After every kind of wait, the command printed for it is accepted: a
/// halted failure (skip), the way forward of a failover completed with
/// errors (rollback), a manual step (ack), a drill awaiting its cleanup
/// (cleanup) and a cleanup step that failed (skip).
#[test]
fn every_printed_wait_command_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = plan();
    let p = p.to_str().unwrap();
    // A planned failover halts at a failed step.
    let run = drplan(
        dir,
        &[
            "run",
            p,
            "--failover",
            "planned",
            "--no-prompt",
            "--time-scale",
            "0.001",
            "--inject",
            "fail:start-replica:web-01",
        ],
    );
    expect_code(&run, 0);
    // The manual step of the application tier comes first.
    let ack = run_printed(&the_printed(&run, "done:"));
    expect_code(&ack, 0);
    assert!(printed(&out(&ack), "retry:").len() == 1, "{}", all(&ack));
    assert!(printed(&out(&ack), "cancel:").len() == 1, "{}", all(&ack));
    let skip = run_printed(&the_printed(&ack, "skip:"));
    // Skipping a required VM: completed with errors, and a way forward.
    expect_code(&skip, 1);
    let rollback = run_printed(&the_printed(&skip, "rollback:"));
    expect_code(&rollback, 0);
    assert!(out(&rollback).contains("succeeded"), "{}", all(&rollback));

    // A drill: manual step, awaiting cleanup, a cleanup step that fails.
    let run = drplan(
        dir,
        &[
            "run",
            p,
            "--failover",
            "test",
            "--no-prompt",
            "--time-scale",
            "0.001",
            "--inject",
            "fail:delete-test-vm:web-02",
        ],
    );
    expect_code(&run, 0);
    let ack = run_printed(&the_printed(&run, "done:"));
    expect_code(&ack, 0);
    let cleanup = run_printed(&the_printed(&ack, "cleanup:"));
    expect_code(&cleanup, 0);
    assert!(out(&cleanup).contains("FAILED"), "{}", all(&cleanup));
    let skip = run_printed(&the_printed(&cleanup, "skip:"));
    assert_ne!(skip.status.code(), Some(2), "{}", all(&skip));
    assert!(
        out(&skip).contains("job 3 test completed"),
        "{}",
        all(&skip)
    );
    let check = drplan(dir, &["store", "check"]);
    expect_code(&check, 0);
}
