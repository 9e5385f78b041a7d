//! Failover phases through the real binary on the shipped three-tier plan:
//! what `run` prints and `show` records of a planned failover (every primary
//! down, front end first, before anything fails over; boot by dependency),
//! and how `graph` draws the phases.

use serde_json::Value;

mod support;
use support::{all, drplan, expect_code, json, out, plan};

/// (key, started_at, finished_at) of every step of `show --format json`.
fn spans(doc: &Value) -> Vec<(String, u64, u64)> {
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| {
            Some((
                s["key"].as_str()?.to_string(),
                s["started_at"].as_u64()?,
                s["finished_at"].as_u64()?,
            ))
        })
        .collect()
}

#[test]
fn a_planned_failover_shuts_every_primary_down_front_end_first_then_boots_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let p = plan();
    let fast = ["--time-scale", "0.001", "--data-dir", d, "--no-prompt"];
    let mut args = vec!["run", p.to_str().unwrap(), "--failover", "planned"];
    args.extend_from_slice(&fast);
    let run = drplan(&args);
    expect_code(&run, 0);
    // The progress lines, in the order they happened: every shutdown ended
    // before the first other VM operation started.
    let text = out(&run);
    let lines: Vec<&str> = text.lines().collect();
    let last_shutdown_ok = lines
        .iter()
        .rposition(|l| l.contains("ok        ") && l.contains("/shutdown-primary"))
        .expect("shutdowns reported");
    let first_other = lines
        .iter()
        .position(|l| l.contains("started   ") && !l.contains("/shutdown-primary"))
        .expect("other steps started");
    assert!(last_shutdown_ok < first_other, "{text}");
    let first_of = |group: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!("started   {group}/vm/")))
            .unwrap()
    };
    assert!(first_of("web") < first_of("application"), "{text}");
    assert!(first_of("application") < first_of("database"), "{text}");

    let mut args = vec!["ack", "1", "application/post/verify-health", "--by", "bob"];
    args.extend_from_slice(&fast);
    expect_code(&drplan(&args), 0);
    let show = drplan(&["show", "1", "--format", "json", "--data-dir", d]);
    expect_code(&show, 0);
    let doc = json(&show);
    assert_eq!(doc["status"], "succeeded", "{}", all(&show));
    let s = spans(&doc);
    let get = |k: &str| s.iter().find(|(key, ..)| key == k).unwrap().clone();
    let last_down = s
        .iter()
        .filter(|(k, ..)| k.ends_with("/shutdown-primary"))
        .map(|(_, _, f)| *f)
        .max()
        .unwrap();
    assert_eq!(
        s.iter()
            .filter(|(k, ..)| k.ends_with("/shutdown-primary"))
            .count(),
        7
    );
    for (k, started, _) in &s {
        if !k.ends_with("/shutdown-primary") {
            assert!(
                *started >= last_down,
                "{k} started before every primary was down"
            );
        }
    }
    for (later, earlier) in [
        (
            "application/vm/app-01/shutdown-primary",
            "web/vm/web-02/shutdown-primary",
        ),
        (
            "database/vm/sql-01/shutdown-primary",
            "application/vm/app-03/shutdown-primary",
        ),
        (
            "application/vm/app-01/start-replica",
            "database/vm/sql-02/start-replica",
        ),
        ("web/vm/web-01/start-replica", "application/post/settle"),
    ] {
        assert!(
            get(later).1 >= get(earlier).2,
            "{later} before {earlier} ended"
        );
    }
}

#[test]
fn graph_draws_the_three_phases_with_their_groups() {
    let p = plan();
    let o = drplan(&["graph", p.to_str().unwrap(), "--failover", "planned"]);
    expect_code(&o, 0);
    let dot = out(&o);
    let at = |needle: &str| {
        dot.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {dot}"))
    };
    assert!(at("label=\"1. Shutdown (primary site)\"") < at("label=\"2. Failover\""));
    assert!(at("label=\"2. Failover\"") < at("label=\"3. Boot (recovery site, group by group)\""));
    // Inside the Shutdown phase, the front end comes first.
    assert!(at("web-01: shutdown-primary") < at("sql-01: shutdown-primary"));
    // A test failover has no Shutdown phase.
    let o = drplan(&[
        "graph",
        p.to_str().unwrap(),
        "--failover",
        "test",
        "--format",
        "mermaid",
    ]);
    expect_code(&o, 0);
    let mm = out(&o);
    assert!(!mm.contains("Shutdown"), "{mm}");
    assert!(mm.contains("subgraph p0[\"2. Failover\"]"), "{mm}");
}
