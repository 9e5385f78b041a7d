//! The verdict and what an auditor reads, through the built binary, for
//! the cases a new user found wrong: a drill whose required VM never
//! started, a drill cancelled before its web tier and then cleaned up, a
//! planned failover with a skipped required VM, and the recovery points of
//! unplanned and planned failovers. `show`, `report` (badge and cards),
//! `plans` and `--format json` must agree with docs/operator.md.

use std::path::Path;
use std::process::Output;

mod support;
use support::{all, json, out, plan};

fn drplan(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = support::cmd_in(dir, args);
    if matches!(
        args.first(),
        Some(&("run" | "ack" | "cleanup" | "retry" | "skip" | "cancel" | "resume"))
    ) {
        cmd.args(["--time-scale", "0.001", "--no-prompt"]);
    }
    support::output(cmd)
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "output:\n{}", all(&o));
    o
}

fn run(dir: &Path, kind: &str, faults: &[&str]) {
    let p = plan();
    let mut args = vec!["run", p.to_str().unwrap(), "--failover", kind, "-q"];
    for f in faults {
        args.extend(["--inject", f]);
    }
    drplan(dir, &args);
}

fn show(dir: &Path, job: &str) -> serde_json::Value {
    json(&ok(drplan(dir, &["show", job, "--format", "json"])))
}

/// The HTML report's cards: (title, value) in order.
fn cards(dir: &Path, job: &str) -> Vec<(String, String)> {
    let html = out(&ok(drplan(dir, &["report", job, "--format", "html"])));
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("well-formed");
    let text = |n: roxmltree::Node, class: &str| {
        n.children()
            .find(|c| c.attribute("class") == Some(class))
            .and_then(|c| c.text())
            .unwrap_or("")
            .to_string()
    };
    let badge = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("verdict"))
        .and_then(|n| n.text())
        .unwrap_or("")
        .to_string();
    let mut v = vec![("badge".to_string(), badge)];
    v.extend(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("card"))
            .map(|n| (text(n, "k"), text(n, "v"))),
    );
    v
}

fn card(cards: &[(String, String)], k: &str) -> String {
    cards
        .iter()
        .find(|(t, _)| t == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no card {k}: {cards:?}"))
}

#[test]
fn a_drill_whose_required_vm_never_started_is_errors_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, "test", &["fail:start-test-vm:sql-01"]);
    ok(drplan(
        dir,
        &["ack", "1", "application/post/verify-health", "-q"],
    ));
    // The cleanup ends the job: its last line names the verdict, and the
    // exit code says it ended badly.
    let end = drplan(dir, &["cleanup", "1", "--notes", "done"]);
    assert_eq!(end.status.code(), Some(1), "{}", all(&end));
    assert!(all(&end).contains("test completed in"), "{}", all(&end));
    assert!(all(&end).contains(": ERRORS"), "{}", all(&end));
    let v = show(dir, "1");
    assert_eq!(v["status"], "test completed");
    assert_eq!(v["verdict"], "ERRORS", "{}", v["errors"]);
    assert_eq!(v["counts"]["vms_recovered"], 5);
    assert_eq!(v["counts"]["vms_required"], 6);
    let f = &v["failures"][0];
    assert_eq!(f["error_kind"], "injected");
    assert_eq!(f["retryable"], false);
    let c = cards(dir, "1");
    assert_eq!(card(&c, "badge"), "ERRORS");
    assert_eq!(card(&c, "VMs recovered"), "5 / 6");
    assert_eq!(card(&c, "Failures"), "1");
    let plans = out(&ok(drplan(dir, &["plans"])));
    assert!(plans.contains("ERRORS"), "{plans}");
    let human = out(&ok(drplan(dir, &["show", "1"])));
    assert!(human.contains("not retryable"), "{human}");
}

#[test]
fn a_drill_cancelled_before_its_web_tier_stays_cancelled_after_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // It waits at the application tier's manual step: web has not started.
    run(dir, "test", &[]);
    drplan(dir, &["cancel", "1", "--by", "carol", "-q"]);
    // The cleanup did what was asked: exit 0, and the verdict says the
    // drill was cancelled (docs/operator.md).
    let end = drplan(dir, &["cleanup", "1", "--notes", "aborted"]);
    assert_eq!(end.status.code(), Some(0), "{}", all(&end));
    assert!(all(&end).contains(": CANCELLED"), "{}", all(&end));
    let v = show(dir, "1");
    assert_eq!(v["verdict"], "CANCELLED", "{v:#}");
    assert_eq!(v["cancelled"], true);
    assert_eq!(v["counts"]["vms_recovered"], 4);
    let c = cards(dir, "1");
    assert_eq!(card(&c, "badge"), "CANCELLED");
    let md = out(&ok(drplan(dir, &["report", "1", "--format", "md"])));
    assert!(md.contains("**CANCELLED**"), "{md}");
    assert!(md.contains("| carol | cancel |"), "{md}");
    let plans = out(&ok(drplan(dir, &["plans"])));
    assert!(plans.contains("CANCELLED"), "{plans}");
    // Durations stop at the end: no group ends after the job did.
    let end = v["finished_at"].as_u64().unwrap();
    for g in v["groups"].as_array().unwrap() {
        if let (Some(a), Some(d)) = (g["started_at"].as_u64(), g["duration_ms"].as_u64()) {
            assert!(a + d <= end, "group {} runs past the end: {g:#}", g["name"]);
        }
        for vm in g["vms"].as_array().unwrap() {
            assert_ne!(vm["state"], "running", "{vm:#}");
        }
    }
}

#[test]
fn a_planned_failover_with_a_skipped_required_vm_is_errors_with_5_of_6() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, "planned", &["fail:start-replica:web-01"]);
    ok(drplan(
        dir,
        &["ack", "1", "application/post/verify-health", "-q"],
    ));
    drplan(
        dir,
        &[
            "skip",
            "1",
            "web/vm/web-01/start-replica",
            "--by",
            "bob",
            "-q",
        ],
    );
    let v = show(dir, "1");
    assert_eq!(v["verdict"], "ERRORS", "{v:#}");
    assert_eq!(v["counts"]["vms_recovered"], 5);
    assert_eq!(v["counts"]["vms_required"], 6);
    assert_eq!(v["counts"]["skipped_steps"], 1);
    let c = cards(dir, "1");
    assert_eq!(card(&c, "badge"), "ERRORS");
    assert_eq!(card(&c, "VMs recovered"), "5 / 6");
    assert_eq!(card(&c, "Failures"), "1");
    // The planned failover shipped the final delta: no data lost.
    assert_eq!(card(&c, "Data lost"), "0ms");
    let points = v["recovery_points"].as_array().unwrap();
    assert_eq!(points.len(), 7, "{points:#?}");
    assert!(
        points
            .iter()
            .all(|p| p["kind"] == "final-sync" && p["data_loss_ms"] == 0)
    );
    let md = out(&ok(drplan(dir, &["report", "1", "--format", "md"])));
    assert!(
        md.contains("| bob | skip | web/vm/web-01/start-replica |"),
        "{md}"
    );
    assert!(md.contains("skipped by an operator"), "{md}");
}

#[test]
fn an_unplanned_failover_shows_the_recovery_point_and_the_data_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(dir, "unplanned", &[]);
    ok(drplan(
        dir,
        &["ack", "1", "application/post/verify-health", "-q"],
    ));
    let v = show(dir, "1");
    assert_eq!(v["verdict"], "SUCCESS", "{v:#}");
    let start = v["started_at"].as_u64().unwrap();
    let points = v["recovery_points"].as_array().unwrap();
    assert_eq!(points.len(), 7);
    for p in points {
        assert_ne!(p["kind"], "final-sync", "{p}");
        let at = p["point_at"].as_u64().unwrap();
        assert_eq!(p["data_loss_ms"].as_u64().unwrap(), start - at);
    }
    let worst = points
        .iter()
        .map(|p| p["data_loss_ms"].as_u64().unwrap())
        .max();
    assert_eq!(v["achieved_rpo_ms"].as_u64(), worst);
    let human = out(&ok(drplan(dir, &["show", "1"])));
    assert!(human.contains("data lost:"), "{human}");
    assert!(human.contains("recovery point: "), "{human}");
    // Wall-clock start and end of each step, not only offsets.
    let step = &v["steps"][0];
    assert!(step["started_at"].as_u64().unwrap() >= start);
    assert!(step["finished_at"].as_u64().unwrap() >= step["started_at"].as_u64().unwrap());
    let md = out(&ok(drplan(dir, &["report", "1", "--format", "md"])));
    assert!(md.contains("## Recovery points used"), "{md}");
    assert!(md.contains("crash-consistent"), "{md}");
}

/// A plan of one VM and `post` steps, beside a copy of nothing else.
fn script_plan(dir: &Path, post: &str) -> std::path::PathBuf {
    let fabric = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/fabric.yaml");
    let text = format!(
        "drplan: 1\nname: signals\nsource: primary-vmm/gold\ntarget: secondary-vmm/gold-dr\n\
         fabric: {}\ngroups:\n  - name: db\n    vms: [sql-01]\n    post:\n{post}",
        fabric.display()
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_script_printing_warning_is_output_and_a_warning_line_of_drplan_output_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, dir2) = (tmp.path().join("1"), tmp.path().join("2"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    let dir = dir.as_path();
    // A script that prints `warning:` lines only: SUCCESS.
    let p = script_plan(
        dir,
        "      - name: chatty\n        shell: \"echo 'warning: this is only text'\"\n",
    );
    let args = ["run", p.to_str().unwrap(), "--failover", "unplanned", "-q"];
    ok(drplan(dir, &args));
    let v = show(dir, "1");
    assert_eq!(v["verdict"], "SUCCESS", "{:#}", v["warnings"]);
    let step = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "db/post/chatty")
        .unwrap();
    assert!(
        step["output_tail"]
            .as_str()
            .unwrap()
            .contains("warning: this is only text")
    );
    // The explicit channel: a `warning=` line of DRPLAN_OUTPUT.
    let dir = dir2.as_path();
    let p = script_plan(
        dir,
        "      - name: lag\n        shell: \"echo 'warning=replica lag 40s' >> $DRPLAN_OUTPUT; echo 'zone=a' >> $DRPLAN_OUTPUT\"\n",
    );
    let args = ["run", p.to_str().unwrap(), "--failover", "unplanned", "-q"];
    ok(drplan(dir, &args));
    let v = show(dir, "1");
    assert_eq!(v["verdict"], "WARNINGS", "{v:#}");
    assert_eq!(v["warnings"][0], "db/post/lag: replica lag 40s");
    let human = out(&ok(drplan(dir, &["show", "1"])));
    assert!(human.contains("replica lag 40s"), "{human}");
}
