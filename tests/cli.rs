//! Black-box tests of the `drplan` binary: exit codes, human and JSON
//! output, logging flags, and graph output checked by Graphviz itself and by
//! a structural Mermaid check.
//!
//! Fixtures live in `tests/fixtures/cli/`. The renderers are also exercised
//! on hand-built plans (names full of quotes, backslashes, keywords and
//! Unicode that the validator would refuse), so escaping is tested without
//! depending on what validation accepts.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use drplan_engine::plan::compile::{ExecPlan, Operation, compile};
use drplan_engine::plan::model::{
    CloudRef, Command as ScriptCommand, CommitPolicy, FailoverKind, Group, GroupVm, OnTimeout,
    Plan, Step, StepAction, TestSettings, When,
};
use drplan_engine::plan::render::{RenderOptions, to_dot, to_mermaid};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli")
}

/// Run drplan in the fixtures directory (so diagnostics name files as
/// `invalid.yaml`), with no colour and no inherited log settings.
fn drplan(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drplan"));
    c.args(args)
        .current_dir(fixtures())
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1");
    support::output(c)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout:\n{}\n--- stderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

/// The path of Graphviz's `dot`. A missing Graphviz fails the test: a
/// silently skipped check would let broken DOT through.
fn dot_program() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dot"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("Graphviz `dot` is not installed: install graphviz (apt-get install -y graphviz) to run the DOT checks")
}

/// Run `dot -Tsvg` on `text`; fail on any error or warning; return the SVG.
fn graphviz_svg(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(dot_program())
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start dot");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "Graphviz rejected the DOT: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("SVG is UTF-8")
}

/// Structural checks of a Mermaid flowchart, the rules the renderer
/// promises: starts with `flowchart`; node ids declared once; edges, class
/// and style lines only reference declared ids; every label is one quoted
/// string with no raw `"`, and `#`, `<`, `>`, `&` only as entity codes or
/// `<br>`; subgraphs balanced (phases nest groups). Returns the number of
/// nodes declared.
fn check_mermaid(text: &str) -> usize {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("flowchart "), "first line: {first:?}");
    let mut declared = std::collections::BTreeSet::new();
    let mut depth = 0i32;
    let is_id = |s: &str, prefix: char| {
        s.strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let check_label = |label: &str, line: &str| {
        assert!(!label.contains('"'), "raw quote in label: {line}");
        let rest = label.replace("<br>", "");
        assert!(!rest.contains(['<', '>']), "raw angle bracket: {line}");
        // Every `#` and `&` starts an entity code `#name;`/`#123;`.
        for (i, c) in rest.char_indices() {
            if c == '&' {
                panic!("raw ampersand: {line}");
            }
            if c == '#' {
                let code: String = rest[i + 1..].chars().take_while(|c| *c != ';').collect();
                assert!(
                    !code.is_empty()
                        && code.chars().all(|c| c.is_ascii_alphanumeric())
                        && rest[i + 1 + code.len()..].starts_with(';'),
                    "`#` outside an entity code: {line}"
                );
            }
        }
    };
    // Edges and class/style lines are checked after all declarations.
    let mut references: Vec<(String, String)> = Vec::new();
    for line in lines {
        let t = line.trim();
        if t.is_empty() || t.starts_with("%%") || t.starts_with("classDef ") {
            continue;
        }
        if let Some(rest) = t.strip_prefix("subgraph ") {
            let (id, label) = rest.split_once('[').expect("subgraph id[\"label\"]");
            // `g…` a group, `p…` a failover phase around its groups.
            assert!(is_id(id, 'g') || is_id(id, 'p'), "subgraph id: {line}");
            let label = label
                .strip_prefix('"')
                .and_then(|l| l.strip_suffix("\"]"))
                .unwrap_or_else(|| panic!("subgraph label not quoted: {line}"));
            check_label(label, line);
            assert!(declared.insert(id.to_string()), "id declared twice: {line}");
            depth += 1;
        } else if t == "end" {
            depth -= 1;
            assert!(depth >= 0, "unbalanced end");
        } else if let Some((a, b)) = t.split_once(" --> ") {
            references.push((a.to_string(), line.to_string()));
            references.push((b.to_string(), line.to_string()));
        } else if let Some(rest) = t.strip_prefix("class ") {
            let (ids, _class) = rest.split_once(' ').expect("class IDS NAME");
            for id in ids.split(',') {
                references.push((id.to_string(), line.to_string()));
            }
        } else if let Some(rest) = t.strip_prefix("style ") {
            let (id, _) = rest.split_once(' ').expect("style ID CSS");
            references.push((id.to_string(), line.to_string()));
        } else {
            // A node: nID then one of the shapes, the label quoted inside.
            let id_end = t
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(t.len());
            let (id, shape) = t.split_at(id_end);
            assert!(is_id(id, 'n'), "unexpected line: {line}");
            let label = [
                ("[\"", "\"]"),
                ("(\"", "\")"),
                ("{{\"", "\"}}"),
                ("[\\\"", "\"/]"),
            ]
            .iter()
            .find_map(|(open, close)| shape.strip_prefix(open)?.strip_suffix(close))
            .unwrap_or_else(|| panic!("unknown node shape or unquoted label: {line}"));
            check_label(label, line);
            assert!(declared.insert(id.to_string()), "id declared twice: {line}");
        }
    }
    assert_eq!(depth, 0, "unbalanced subgraphs");
    for (id, line) in references {
        assert!(
            declared.contains(&id) && id.starts_with('n'),
            "undeclared node `{id}`: {line}"
        );
    }
    declared.iter().filter(|id| id.starts_with('n')).count()
}

// ---------------------------------------------------------------------------
// Hand-built plans

fn step(name: &str, action: StepAction, optional: bool) -> Step {
    Step {
        name: name.into(),
        action,
        when: When::default(),
        optional,
    }
}

fn script(name: &str) -> Step {
    step(
        name,
        StepAction::Script {
            command: ScriptCommand::Argv(vec!["/bin/true".into()]),
            timeout: Duration::from_secs(600),
            retries: 0,
            retry_delay: Duration::from_secs(10),
            env: Default::default(),
        },
        false,
    )
}

fn manual(name: &str) -> Step {
    step(
        name,
        StepAction::Manual {
            instructions: "Check.".into(),
            timeout: None,
            on_timeout: OnTimeout::Fail,
        },
        false,
    )
}

fn wait(name: &str) -> Step {
    step(
        name,
        StepAction::Wait {
            duration: Duration::from_secs(30),
        },
        false,
    )
}

fn group(
    name: &str,
    after: &[usize],
    vms: &[(&str, bool)],
    pre: Vec<Step>,
    post: Vec<Step>,
) -> Group {
    Group {
        name: name.into(),
        after: after.to_vec(),
        vms: vms
            .iter()
            .map(|(n, optional)| GroupVm {
                name: n.to_string(),
                optional: *optional,
            })
            .collect(),
        pre,
        post,
    }
}

fn plan(name: &str, groups: Vec<Group>) -> Plan {
    Plan {
        name: name.into(),
        description: None,
        source: CloudRef {
            site: "hq".into(),
            cloud: "gold".into(),
        },
        target: CloudRef {
            site: "dr".into(),
            cloud: "gold-dr".into(),
        },
        base_dir: fixtures(),
        fabric_path: None,
        groups,
        test: TestSettings {
            network: Some("drill".into()),
            max_duration: Duration::from_secs(14 * 24 * 3600),
            cleanup: vec![],
        },
        commit: CommitPolicy::Manual,
        layout: drplan_engine::plan::model::CompileLayout::default(),
    }
}

/// The model of `tests/fixtures/cli/diamond.yaml`, as validation should
/// produce it (only what rendering reads matters).
fn diamond() -> Plan {
    plan(
        "diamond",
        vec![
            group(
                "db",
                &[],
                &[("db-1", false)],
                vec![],
                vec![manual("check-db")],
            ),
            group("app", &[0], &[("app-1", false)], vec![], vec![]),
            group(
                "web",
                &[0],
                &[("web-1", false), ("web-2", true)],
                vec![],
                vec![wait("settle")],
            ),
            group(
                "frontdoor",
                &[1, 2],
                &[("lb-1", false)],
                vec![script("update-dns")],
                vec![],
            ),
        ],
    )
}

/// Names no validator would accept, to prove the renderers escape them.
fn nasty() -> Plan {
    plan(
        "nasty \"plan\"",
        vec![
            group(
                "end",
                &[],
                &[("C:\\temp\\vm\\", false), ("ünïcødé-€", true)],
                vec![script("x;y --> z"), manual("#hash & <b>bold</b>")],
                vec![wait("`tick` \"q\"")],
            ),
            group(
                "a \"quoted\" group",
                &[0],
                &[("node", false), ("two\nlines", false)],
                vec![script("subgraph")],
                vec![manual("graph; digraph { }")],
            ),
            group(
                "style",
                &[1],
                &[("class", false), ("click", false)],
                vec![],
                vec![],
            ),
        ],
    )
}

fn compiled(p: &Plan, kind: FailoverKind) -> ExecPlan {
    compile(p, Operation::failover(kind))
}

// ---------------------------------------------------------------------------
// Exit codes and arguments

#[test]
fn no_arguments_prints_help_and_exits_2() {
    let o = drplan(&[]);
    assert_exit(&o, 2);
    let all = stdout(&o) + &stderr(&o);
    assert!(all.contains("Usage: drplan"), "{all}");
    assert!(all.contains("validate") && all.contains("graph") && all.contains("schema"));
}

#[test]
fn bad_flag_or_value_exits_2() {
    for args in [
        &["validate", "--bogus", "diamond.yaml"][..],
        &["validate", "--format", "xml", "diamond.yaml"],
        &["validate"],
        &["graph", "diamond.yaml", "--failover", "sideways"],
        &["graph"],
        &["schema", "nope"],
        &["frobnicate"],
    ] {
        let o = drplan(args);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("error:"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_and_version_exit_0() {
    let o = drplan(&["validate", "--help"]);
    assert_exit(&o, 0);
    let help = stdout(&o);
    for needle in ["--fabric", "--format", "--deny-warnings", "Exit codes"] {
        assert!(help.contains(needle), "missing {needle}: {help}");
    }
    assert_exit(&drplan(&["--version"]), 0);
}

#[test]
fn missing_plan_exits_2_with_a_clear_message() {
    for format in ["human", "json"] {
        let o = drplan(&["validate", "--format", format, "no-such-plan.yaml"]);
        assert_exit(&o, 2);
        let out = stdout(&o);
        assert!(out.contains("cannot read `no-such-plan.yaml`"), "{out}");
        assert!(out.contains("DP0101"), "{out}");
    }
    let o = drplan(&["graph", "no-such-plan.yaml"]);
    assert_exit(&o, 2);
    assert!(o.stdout.is_empty(), "no graph on failure");
    assert!(stderr(&o).contains("cannot read `no-such-plan.yaml`"));
}

#[test]
fn directory_or_binary_plan_exits_2() {
    let o = drplan(&["validate", "."]);
    assert_exit(&o, 2);
    assert!(stdout(&o).contains("is a directory"), "{}", stdout(&o));

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("plan.yaml");
    std::fs::write(&bin, b"\x7fELF\x00\x01\xff\xfe binary").unwrap();
    let o = drplan(&["validate", bin.to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(stdout(&o).contains("UTF-8"), "{}", stdout(&o));
}

#[test]
fn unreadable_fabric_given_on_the_command_line_exits_2() {
    let o = drplan(&[
        "validate",
        "diamond.yaml",
        "--fabric",
        "no-such-fabric.yaml",
    ]);
    assert_exit(&o, 2);
    assert!(stdout(&o).contains("no-such-fabric.yaml"), "{}", stdout(&o));
}

#[test]
fn inventory_named_by_the_plan_but_missing_is_a_plan_problem() {
    let o = drplan(&["validate", "bad-fabric-ref.yaml"]);
    assert_exit(&o, 1);
    assert!(
        stdout(&o).contains("no-such-inventory.yaml"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn invalid_plan_exits_1() {
    let o = drplan(&["validate", "invalid.yaml"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("nmae"), "the unknown key is named: {out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("invalid.yaml: ") && last.contains("error"),
        "summary: {last}"
    );

    let o = drplan(&["graph", "invalid.yaml"]);
    assert_exit(&o, 1);
    assert!(o.stdout.is_empty(), "no graph for an invalid plan");
    assert!(stderr(&o).contains("nmae"), "{}", stderr(&o));
}

#[test]
fn worst_outcome_of_several_plans_wins() {
    let o = drplan(&[
        "validate",
        "invalid.yaml",
        "no-such-plan.yaml",
        "--format",
        "json",
    ]);
    assert_exit(&o, 2);
    let plans = json(&o)["plans"].as_array().unwrap().clone();
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0]["file"], "invalid.yaml");
    assert_eq!(plans[1]["file"], "no-such-plan.yaml");
    assert!(plans.iter().all(|p| p["valid"] == false));
}

// ---------------------------------------------------------------------------
// Output formats (the located diagnostics need the real YAML shape checker)

#[test]
fn json_report_has_located_diagnostics() {
    let o = drplan(&["validate", "--format", "json", "invalid.yaml"]);
    assert_exit(&o, 1);
    let doc = json(&o);
    let plan = &doc["plans"][0];
    assert_eq!(plan["file"], "invalid.yaml");
    assert_eq!(plan["valid"], false);
    assert!(plan["errors"].as_u64().unwrap() >= 1);
    let diags = plan["diagnostics"].as_array().unwrap();
    assert_eq!(
        plan["errors"].as_u64().unwrap() as usize,
        diags.iter().filter(|d| d["severity"] == "error").count()
    );
    // `  - nmae: app` is line 9; the key starts at column 5.
    let d = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap_or("").contains("nmae"))
        .unwrap_or_else(|| panic!("no diagnostic about `nmae`: {doc:#}"));
    assert_eq!(d["file"], "invalid.yaml");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(9), Some(5)),
        "{d:#}"
    );
    assert_eq!(d["code"], "DP0201", "{d:#}");
    assert_eq!(d["severity"], "error");
}

#[test]
fn human_report_shows_a_snippet_at_the_position() {
    let o = drplan(&["validate", "invalid.yaml"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("DP0201"), "{out}");
    assert!(out.contains("[invalid.yaml:9:5]"), "{out}");
    assert!(out.contains(" 9 │   - nmae: app"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "no colour when not on a terminal: {out}"
    );
}

#[test]
fn valid_plan_exits_0_with_a_summary() {
    let o = drplan(&["validate", "diamond.yaml"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "diamond.yaml: valid (4 groups, 5 VMs, 3 steps)\n"
    );

    let o = drplan(&["validate", "--format", "json", "diamond.yaml"]);
    assert_exit(&o, 0);
    let p = &json(&o)["plans"][0];
    assert_eq!(p["valid"], true);
    assert_eq!(p["errors"], 0);
    assert_eq!(p["stats"]["vms"], 5);
}

#[test]
fn warnings_pass_unless_denied() {
    // `orphan-1` sits on a network with no mapping: it would come up with
    // no network after failover, which the operator must be warned about.
    let o = drplan(&["validate", "--format", "json", "warn.yaml"]);
    assert_exit(&o, 0);
    let p = &json(&o)["plans"][0];
    assert!(p["warnings"].as_u64().unwrap() >= 1, "{p:#}");
    assert_eq!(p["errors"], 0);
    let o = drplan(&["validate", "--deny-warnings", "warn.yaml"]);
    assert_exit(&o, 1);
    assert!(stdout(&o).contains("warnings denied"), "{}", stdout(&o));
}

#[test]
fn colour_follows_the_color_flag() {
    // `drplan()` sets NO_COLOR and pipes stdout: `auto` means no colour.
    let plain = drplan(&["validate", "invalid.yaml"]);
    assert!(!stdout(&plain).contains('\u{1b}'), "{}", stdout(&plain));
    let never = drplan(&["validate", "invalid.yaml", "--color", "never"]);
    assert_eq!(stdout(&never), stdout(&plain));
    let always = drplan(&["validate", "--color", "always", "invalid.yaml"]);
    assert_exit(&always, 1);
    assert!(stdout(&always).contains("\u{1b}["), "{}", stdout(&always));
}

// ---------------------------------------------------------------------------
// Logging flags

#[test]
fn json_logs_go_to_stderr_only() {
    let o = drplan(&["-v", "--log-format", "json", "schema"]);
    assert_exit(&o, 0);
    serde_json::from_slice::<Value>(&o.stdout).expect("stdout is the schema alone");
    let o = drplan(&["validate", "invalid.yaml", "-v", "--log-format", "json"]);
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty(), "-v logs something");
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    assert!(err.contains("loading plan"), "{err}");
}

#[test]
fn rust_log_is_respected() {
    let quiet = drplan(&["validate", "invalid.yaml"]);
    assert!(
        stderr(&quiet).is_empty(),
        "no logs by default: {}",
        stderr(&quiet)
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_drplan"));
    c.args(["validate", "invalid.yaml"])
        .current_dir(fixtures())
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1");
    let o = support::output(c);
    assert!(stderr(&o).contains("plan loaded"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------
// Graph rendering on hand-built plans (independent of validation)

#[test]
fn dot_of_every_failover_kind_is_accepted_by_graphviz() {
    for p in [diamond(), nasty()] {
        for kind in FailoverKind::ALL {
            let exec = compiled(&p, kind);
            let svg = graphviz_svg(&to_dot(&p, &exec, &RenderOptions::default()));
            // One drawn node per plan node: nothing merged or lost to a
            // badly escaped id.
            assert_eq!(
                svg.matches("class=\"node\"").count(),
                exec.nodes.len(),
                "{kind} {}",
                p.name
            );
        }
    }
}

#[test]
fn nasty_names_survive_graphviz_intact() {
    let p = nasty();
    let exec = compiled(&p, FailoverKind::Planned);
    let svg = graphviz_svg(&to_dot(&p, &exec, &RenderOptions::default()));
    // SVG text is XML-escaped (Graphviz also writes `-` as `&#45;`): check
    // the names as Graphviz drew them.
    for needle in [
        "C:\\temp\\vm\\: shutdown&#45;primary",
        "ünïcødé&#45;€: failover",
        "a &quot;quoted&quot; group",
        "#hash &amp; &lt;b&gt;bold&lt;/b&gt;",
        ">end<",
        "x;y &#45;&#45;&gt; z",
        "`tick` &quot;q&quot;",
    ] {
        assert!(svg.contains(needle), "`{needle}` not in the SVG:\n{svg}");
    }
}

#[test]
fn mermaid_is_structurally_sound() {
    for p in [diamond(), nasty()] {
        for kind in FailoverKind::ALL {
            let exec = compiled(&p, kind);
            let text = to_mermaid(&p, &exec, &RenderOptions::default());
            assert_eq!(check_mermaid(&text), exec.nodes.len(), "{text}");
        }
    }
    let p = nasty();
    let text = to_mermaid(
        &p,
        &compiled(&p, FailoverKind::Test),
        &RenderOptions::default(),
    );
    assert!(text.contains("a #quot;quoted#quot; group"), "{text}");
    assert!(text.contains("two<br>lines"), "{text}");
}

#[test]
fn the_mermaid_checker_catches_broken_output() {
    // The checker itself must be able to fail, or the test above proves nothing.
    let good = "flowchart TB\n  subgraph g0[\"a\"]\n    n0[\"x\"]\n  end\n";
    assert_eq!(check_mermaid(good), 1);
    for bad in [
        "graph TB\n",
        "flowchart TB\n  n0[\"x\"]\n  n0[\"y\"]\n",
        "flowchart TB\n  n0[\"x\"]\n  n0 --> n1\n",
        "flowchart TB\n  n0[\"a \"b\"]\n",
        "flowchart TB\n  n0[\"a # b\"]\n",
        "flowchart TB\n  n0[x]\n",
        "flowchart TB\n  subgraph g0[\"a\"]\n",
    ] {
        let caught = std::panic::catch_unwind(|| check_mermaid(bad)).is_err();
        assert!(caught, "accepted: {bad:?}");
    }
}

#[test]
fn diamond_snapshots() {
    let p = diamond();
    let exec = compiled(&p, FailoverKind::Planned);
    insta::assert_snapshot!(
        "diamond_planned_dot",
        to_dot(&p, &exec, &RenderOptions::default())
    );
    insta::assert_snapshot!(
        "diamond_planned_mermaid",
        to_mermaid(&p, &exec, &RenderOptions::default())
    );
}

/// Locks the escaping of hostile names; `tests/tools/mermaid-check.sh` runs
/// mermaid's own parser over the Mermaid snapshot.
#[test]
fn nasty_names_snapshots() {
    let p = nasty();
    let exec = compiled(&p, FailoverKind::Test);
    insta::assert_snapshot!(
        "nasty_test_dot",
        to_dot(&p, &exec, &RenderOptions::default())
    );
    insta::assert_snapshot!(
        "nasty_test_mermaid",
        to_mermaid(&p, &exec, &RenderOptions::default())
    );
}

// ---------------------------------------------------------------------------
// Graph through the CLI (needs the real validator)

#[test]
fn graph_cli_matches_the_snapshots_and_graphviz_accepts_it() {
    let o = drplan(&["graph", "diamond.yaml"]);
    assert_exit(&o, 0);
    let dot = stdout(&o);
    graphviz_svg(&dot);
    insta::assert_snapshot!("diamond_planned_dot", dot);

    let o = drplan(&["graph", "diamond.yaml", "--format", "mermaid"]);
    assert_exit(&o, 0);
    let mm = stdout(&o);
    check_mermaid(&mm);
    insta::assert_snapshot!("diamond_planned_mermaid", mm);
}

#[test]
fn graph_cli_draws_each_failover_kind() {
    for kind in ["test", "planned", "unplanned"] {
        let o = drplan(&["graph", "diamond.yaml", "--failover", kind]);
        assert_exit(&o, 0);
        let dot = stdout(&o);
        assert!(dot.contains(&format!("diamond: {kind} failover")), "{dot}");
        graphviz_svg(&dot);
        let o = drplan(&[
            "graph",
            "diamond.yaml",
            "--failover",
            kind,
            "--format",
            "mermaid",
        ]);
        assert_exit(&o, 0);
        check_mermaid(&stdout(&o));
    }
    let o = drplan(&["graph", "diamond.yaml", "--failover", "test"]);
    assert!(stdout(&o).contains("db-1: create-test-vm"));
    assert!(
        !stdout(&o).contains("shutdown-primary"),
        "a test never touches production"
    );
}
