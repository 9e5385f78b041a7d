//! Live progress, `drplan watch` and answering in place, through the built
//! binary: on a pseudo-terminal (util-linux `script` gives the command a
//! pty for stdin and stdout) and piped.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;
use support::{all as text, bin, drplan_in as piped, plan};

/// Single-quote for `sh -c`.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run drplan on a pty, typing `input` (all at once: the pty buffers it
/// until the prompts read it line by line).
fn on_pty(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut line = sh(bin());
    for a in args {
        line.push(' ');
        line.push_str(&sh(a));
    }
    line.push_str(&format!(
        " --data-dir {} --time-scale 0.001",
        sh(dir.to_str().unwrap())
    ));
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("DRPLAN_DATA_DIR")
        .env("USER", "alice")
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs (Debian: bsdutils)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn show(dir: &Path) -> Value {
    let o = piped(dir, &["show", "1", "--format", "json"]);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn on_a_terminal_run_asks_in_place_and_follows_the_drill_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = plan();
    // The manual step: done, a note, who; then the cleanup: notes, who.
    let o = on_pty(
        dir,
        &["run", p.to_str().unwrap(), "--failover", "test"],
        "d\nall green\nbob\nc\ndrill ok\ncarol\n",
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("answer: [d]one, [f]ailed"), "{out}");
    assert!(out.contains("[c]lean up the test now"), "{out}");
    // The bars: one per group.
    for g in ["database", "application", "web"] {
        assert!(out.contains(&format!("{g:<16} [")), "{g} bar in {out}");
    }
    assert!(out.contains("job 1 test completed"), "{out}");
    let v = show(dir);
    assert_eq!(v["status"], "test completed");
    assert_eq!(v["test"]["notes"], "drill ok");
    assert_eq!(v["test"]["by"], "carol");
    let verify = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "application/post/verify-health")
        .unwrap();
    assert_eq!(verify["answer"]["note"], "all green");
    assert_eq!(verify["answer"]["by"], "bob");
}

#[test]
fn quitting_the_prompt_leaves_the_job_waiting_and_watch_picks_it_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = plan();
    let o = on_pty(
        dir,
        &[
            "run",
            p.to_str().unwrap(),
            "--failover",
            "planned",
            "--inject",
            "fail-once:start-replica:web-01",
        ],
        // Nonsense is asked again; then quit.
        "x\nq\n",
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("please answer with one of the letters"),
        "{out}"
    );
    assert!(out.contains("nothing done"), "{out}");
    assert_eq!(show(dir)["status"], "waiting for operator");

    // --no-prompt: never asked, even on a terminal.
    let o = on_pty(dir, &["watch", "1", "--no-prompt"], "d\n");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("answer: ["), "{out}");
    assert!(
        out.contains("drplan ack 1 application/post/verify-health"),
        "{out}"
    );
    assert_eq!(show(dir)["status"], "waiting for operator");

    // Piped: no question, the exact command, where each group stands.
    let o = piped(dir, &["watch", "1", "--time-scale", "0.001"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("answer: ["), "{out}");
    assert!(
        out.contains("job 1: planned failover of plan orders"),
        "{out}"
    );
    assert!(
        out.contains("group database       2/2 VMs  done in"),
        "{out}"
    );
    assert!(
        out.contains("drplan ack 1 application/post/verify-health --by NAME"),
        "{out}"
    );

    // JSON: where it stands first, what it waits for last.
    let o = piped(
        dir,
        &["watch", "1", "--time-scale", "0.001", "--format", "json"],
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines[0]["event"], "watching");
    assert_eq!(lines[0]["groups"][0]["name"], "database");
    assert_eq!(lines[0]["groups"][0]["vms_done"], 2);
    assert_eq!(lines.last().unwrap()["event"], "waiting");

    // On a terminal: answer the manual step, then retry the failed start.
    let o = on_pty(dir, &["watch", "1"], "d\n\n\nr\n\n");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("[r]etry, [s]kip, [c]ancel"), "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("job 1 succeeded"), "{out}");
    let v = show(dir);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["verdict"], "WARNINGS");

    // Watching a finished job: its outcome, at once.
    let o = piped(dir, &["watch", "1"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("job 1 succeeded"), "{}", text(&o));
}
