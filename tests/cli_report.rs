//! `drplan show`, `report`, `plans` and `history` end to end through the
//! built binary: a drill and a planned failover of the shipped three-tier
//! plan on the simulated fabric, then what the store says about them.

use std::path::Path;
use std::process::Output;

mod support;
use support::{all, json, plan};

const VMS: [&str; 7] = [
    "sql-01", "sql-02", "app-01", "app-02", "app-03", "web-01", "web-02",
];

/// drplan with `args` and `--data-dir DIR`, and a fast simulated fabric
/// for the commands that run the engine.
fn drplan(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = support::cmd_in(dir, args);
    if matches!(
        args.first(),
        Some(&("run" | "ack" | "cleanup" | "retry" | "resume"))
    ) {
        cmd.args(["--time-scale", "0.001"]);
    }
    support::output(cmd)
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "output:\n{}", all(&o));
    o
}

const NOTES: &str = "<b>\"drill\"</b> & 'ok' — app tier slow </pre>";

/// Job 1: a drill answered and closed with notes full of markup.
fn drill(dir: &Path) {
    let p = plan();
    ok(drplan(
        dir,
        &["run", p.to_str().unwrap(), "--failover", "test", "-q"],
    ));
    ok(drplan(
        dir,
        &[
            "ack",
            "1",
            "application/post/verify-health",
            "--by",
            "bob",
            "--note",
            "green <ok>",
            "-q",
        ],
    ));
    ok(drplan(dir, &["cleanup", "1", "--notes", NOTES, "-q"]));
}

/// Every element's text, depth first.
fn text_of(n: roxmltree::Node) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .map(|d| d.text().unwrap_or(""))
        .collect()
}

#[test]
fn a_drill_report_is_well_formed_html_with_the_chart_every_vm_and_the_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill(dir);

    let file = dir.join("drill.html");
    ok(drplan(
        dir,
        &[
            "report",
            "1",
            "--format",
            "html",
            "-o",
            file.to_str().unwrap(),
        ],
    ));
    let html = std::fs::read_to_string(&file).unwrap();
    // Self-contained: nothing is fetched when it opens.
    for outside in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(outside), "{outside} in the report");
    }
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"));
    let by_id = |id: &str| {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no #{id}"))
    };
    // The Gantt chart: an SVG with one bar per step of the main plan.
    let gantt = by_id("gantt");
    assert_eq!(gantt.tag_name().name(), "svg");
    let bars = gantt
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .count();
    let show = json(&ok(drplan(dir, &["show", "1", "--format", "json"])));
    let main_steps = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cleanup"] == false)
        .count();
    assert_eq!(bars, main_steps);
    // Each VM has its row.
    let rows: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("vm"))
        .map(|n| text_of(n.first_element_child().unwrap()))
        .collect();
    assert_eq!(rows, VMS);
    // The notes come back exactly, as text: the markup was escaped.
    assert_eq!(text_of(by_id("notes")), NOTES);
    assert!(!by_id("notes").descendants().any(|n| n.has_tag_name("b")));
    let verdict = text_of(by_id("verdict"));
    assert_eq!(verdict, show["verdict"].as_str().unwrap());

    // Markdown: the same facts.
    let md = String::from_utf8(ok(drplan(dir, &["report", "1"])).stdout).unwrap();
    assert!(md.contains("| Operation | test failover |"), "{md}");
    // Markup in the notes is shown, not interpreted.
    assert!(
        md.contains("> &lt;b&gt;\"drill\"&lt;/b&gt; &amp; 'ok' — app tier slow &lt;/pre&gt;"),
        "{md}"
    );
    assert!(md.contains("| Achieved RTO | "), "{md}");
    assert!(
        md.contains("| application/post/verify-health | done | bob |"),
        "{md}"
    );
    for vm in VMS {
        assert!(md.contains(&format!("| {vm} | ")), "{vm} in {md}");
    }

    // Bad requests: exit 2, said clearly.
    let o = drplan(dir, &["report", "9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all(&o).contains("job 9 does not exist"), "{}", all(&o));
    let o = drplan(dir, &["report", "1", "-o", "/nonexistent/x.html"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all(&o).contains("cannot write `/nonexistent/x.html`"));
}

#[test]
fn show_marks_the_critical_path_and_history_tracks_the_rto() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drill(dir);
    // Job 2: a planned failover that halts on a fault and is retried.
    let p = plan();
    ok(drplan(
        dir,
        &[
            "run",
            p.to_str().unwrap(),
            "--failover",
            "planned",
            "--inject",
            "fail-once:start-replica:web-01",
            "-q",
        ],
    ));
    ok(drplan(
        dir,
        &["ack", "2", "application/post/verify-health", "-q"],
    ));
    ok(drplan(
        dir,
        &["retry", "2", "web/vm/web-01/start-replica", "-q"],
    ));

    let v = json(&ok(drplan(dir, &["show", "2", "--format", "json"])));
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["verdict"], "WARNINGS");
    let steps = v["steps"].as_array().unwrap();
    let path: Vec<&str> = v["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    // The retried web-01 start was the slowest: the path goes through it,
    // and it ends at the step that finished last.
    assert!(path.contains(&"web/vm/web-01/start-replica"), "{path:?}");
    let last_end = steps.iter().filter_map(|s| s["finished_at"].as_u64()).max();
    let end_of = |k: &str| steps.iter().find(|s| s["key"] == k).unwrap()["finished_at"].as_u64();
    assert_eq!(end_of(path.last().unwrap()), last_end);
    let marked: Vec<&str> = steps
        .iter()
        .filter(|s| s["critical"] == true)
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(marked, path);
    // The RTO ends when web-01 finally ran.
    let start = v["started_at"].as_u64().unwrap();
    assert_eq!(
        v["rto"]["achieved_ms"].as_u64(),
        Some(end_of("web/vm/web-01/start-replica").unwrap() - start)
    );
    assert_eq!(v["failures"][0]["step"], "web/vm/web-01/start-replica");
    assert_eq!(v["failures"][0]["recovered"], true);
    let human = String::from_utf8(ok(drplan(dir, &["show", "2"])).stdout).unwrap();
    assert!(
        human
            .lines()
            .any(|l| l.trim_start().starts_with('*') && l.contains("web/vm/web-01/start-replica")),
        "{human}"
    );
    assert!(human.contains("verdict:       WARNINGS"), "{human}");

    // plans: the last drill and the last failover of the plan.
    let plans = json(&ok(drplan(dir, &["plans", "--format", "json"])));
    let orders = &plans[0];
    assert_eq!(orders["plan"], "orders");
    assert_eq!(orders["runs"], 2);
    assert_eq!(orders["last_test"]["job"], 1);
    assert!(orders["last_test"]["rto_ms"].is_u64());
    assert_eq!(orders["last_failover"]["job"], 2);
    assert_eq!(orders["last_failover"]["verdict"], "WARNINGS");
    let listed = String::from_utf8(ok(drplan(dir, &["plans"])).stdout).unwrap();
    assert!(listed.contains("orders"), "{listed}");
    assert!(listed.contains("planned failover:"), "{listed}");

    // history, by name and by file: both runs, the trend per kind.
    let h = json(&ok(drplan(dir, &["history", "orders", "--format", "json"])));
    let by_file = json(&ok(drplan(
        dir,
        &["history", p.to_str().unwrap(), "--format", "json"],
    )));
    assert_eq!(h["runs"], by_file["runs"]);
    let jobs: Vec<u64> = h["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_u64().unwrap())
        .collect();
    assert_eq!(jobs, [1, 2]);
    assert_eq!(h["runs"][0]["notes"], NOTES);
    let kinds: Vec<&str> = h["trends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["failover"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["test", "planned"]);
    assert_eq!(h["trends"][1]["last_ms"], v["rto"]["achieved_ms"]);
    let text = String::from_utf8(ok(drplan(dir, &["history", "orders"])).stdout).unwrap();
    assert!(text.contains("RTO trend"), "{text}");

    // The graph of the job: coloured by outcome, the path outlined.
    let dot = String::from_utf8(ok(drplan(dir, &["graph", "--job", "2"])).stdout).unwrap();
    assert!(
        dot.contains("label=\"orders: planned failover (job 2, succeeded)\""),
        "{dot}"
    );
    let web01 = dot
        .lines()
        .find(|l| l.contains("label=\"web-01: start-replica"))
        .unwrap_or_else(|| panic!("{dot}"));
    assert!(web01.contains("2 attempts (critical path)"), "{web01}");
    assert!(web01.contains("fillcolor=\"#ceead6\""), "{web01}");
    assert!(web01.contains("color=\"#7c3aed\""), "{web01}");
    let web02 = dot
        .lines()
        .find(|l| l.contains("label=\"web-02: start-replica"))
        .unwrap();
    assert!(!web02.contains("critical"), "{web02}");
    ok(drplan(dir, &["graph", "--job", "2", "--format", "mermaid"]));
    let o = drplan(dir, &["graph", "--job", "7"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));

    let o = drplan(dir, &["history", "order"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all(&o).contains("did you mean: orders"), "{}", all(&o));
}
