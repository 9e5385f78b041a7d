//! Rendering a compiled plan ([`ExecPlan`]) as a Graphviz DOT or Mermaid
//! flowchart, for `drplan graph` and, later, job progress views.
//!
//! Both renderers follow the same conventions so the two pictures agree:
//! - one cluster (DOT) / subgraph (Mermaid) per group, labelled with the
//!   group name; test cleanup steps sit in a cluster of their own; a phased
//!   failover ([`Stage`]) nests its groups' clusters in one cluster per
//!   phase, labelled `1. Shutdown (primary site)`, `2. Failover`, `3. Boot
//!   (recovery site, group by group)` (a group appears once per phase it
//!   has nodes in);
//! - a node per [`ExecNode`], labelled with the step name or `vm: op`; its
//!   shape tells the kind: script = box, manual = trapezium (the flowchart
//!   symbol for a manual operation), wait = hexagon, VM operation = rounded box;
//! - optional VMs and steps are drawn dashed;
//! - an edge `a -> b` for every dependency (`b` waits for `a`).
//!
//! Identifiers are generated (`n0`, `n1`, … for nodes, `g0`, … for groups)
//! and every piece of plan text goes into a quoted, escaped label, so no
//! name can break the syntax or collide with a keyword (Mermaid's `end`,
//! DOT's `node`). Output is deterministic: nodes in id order, edges in
//! (target, source) order, no hash-map iteration.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::compile::{ExecNode, ExecPlan, NodeKind, Stage, StepId};
use super::model::{Plan, StepAction};

/// An RGB colour (only hex digits ever reach the output, so colours need no
/// escaping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Extra styling of one node, e.g. its outcome in a job (`drplan graph
/// --job`). Everything is optional; an empty style changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStyle {
    /// Fill colour of the node.
    pub fill: Option<Rgb>,
    /// Border colour of the node.
    pub border: Option<Rgb>,
    /// Text colour (pick one that contrasts with `fill`).
    pub text: Option<Rgb>,
    /// A second label line, e.g. `failed (exit 3)` or `running 2m10s`.
    pub note: Option<String>,
}

/// Rendering options. `RenderOptions::default()` renders the plain plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// The graph title; by default `PLAN: OPERATION`, e.g. `web: planned failover`.
    pub title: Option<String>,
    /// Per-node styles, by node id. Ids not in the plan are ignored.
    pub styles: BTreeMap<StepId, NodeStyle>,
}

/// How a node is drawn: its kind decides the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Script,
    Manual,
    Wait,
    VmOp,
}

fn shape(node: &ExecNode) -> Shape {
    match &node.kind {
        NodeKind::Vm { .. } => Shape::VmOp,
        NodeKind::Step(step) => match step.action {
            StepAction::Script { .. } => Shape::Script,
            StepAction::Manual { .. } => Shape::Manual,
            StepAction::Wait { .. } => Shape::Wait,
        },
    }
}

/// The node's text: the step name, or `vm: op` for a VM operation.
fn label(node: &ExecNode) -> String {
    match &node.kind {
        NodeKind::Step(step) => step.name.clone(),
        NodeKind::Vm { vm, op } => format!("{vm}: {}", op.name()),
    }
}

/// One cluster: its label and node ids.
type Cluster = (String, Vec<StepId>);

/// Clusters in first-appearance order, each inside its failover phase when
/// the plan is laid out in phases: (phase label or `None`, clusters of
/// that phase). Nodes without a group (test cleanup) get one cluster of
/// their own. Empty groups have no nodes and so no cluster (Graphviz drops
/// empty clusters anyway, and Mermaid would draw an empty box).
fn clusters(plan: &Plan, exec: &ExecPlan) -> Vec<(Option<String>, Vec<Cluster>)> {
    // Keyed by (phase, group index); `usize::MAX` stands for "no group".
    let mut order: Vec<(Option<Stage>, usize)> = Vec::new();
    let mut members: BTreeMap<(Option<Stage>, usize), Vec<StepId>> = BTreeMap::new();
    for n in &exec.nodes {
        let key = (n.stage, n.group.unwrap_or(usize::MAX));
        let entry = members.entry(key).or_default();
        if entry.is_empty() {
            order.push(key);
        }
        entry.push(n.id);
    }
    let mut out: Vec<(Option<String>, Vec<Cluster>)> = Vec::new();
    let mut current: Option<Option<Stage>> = None;
    for key in order {
        let (stage, group) = key;
        let name = if group == usize::MAX {
            "test cleanup".to_string()
        } else {
            plan.groups
                .get(group)
                .map(|g| g.name.clone())
                // An ExecPlan compiled from another plan: still render
                // rather than panic.
                .unwrap_or_else(|| format!("group {group}"))
        };
        let ids = members.remove(&key).unwrap_or_default();
        // Compile emits the phases one after another, so a phase's groups
        // are consecutive here.
        if current != Some(stage) || out.is_empty() {
            out.push((stage.map(stage_label), Vec::new()));
            current = Some(stage);
        }
        if let Some(last) = out.last_mut() {
            last.1.push((name, ids));
        }
    }
    out
}

/// The label of a failover phase's cluster.
fn stage_label(stage: Stage) -> String {
    match stage {
        Stage::Shutdown => "1. Shutdown (primary site)",
        Stage::Failover => "2. Failover",
        Stage::Boot => "3. Boot (recovery site, group by group)",
    }
    .to_string()
}

fn title(plan: &Plan, exec: &ExecPlan, opts: &RenderOptions) -> String {
    opts.title
        .clone()
        .unwrap_or_else(|| format!("{}: {}", plan.name, exec.operation))
}

/// Every edge as (from, to), sorted by target then source.
fn edges(exec: &ExecPlan) -> Vec<(StepId, StepId)> {
    let mut e: Vec<(StepId, StepId)> = exec
        .nodes
        .iter()
        .flat_map(|n| n.deps.iter().map(move |&d| (d, n.id)))
        .collect();
    e.sort_by_key(|&(from, to)| (to, from));
    e.dedup();
    e
}

// ---------------------------------------------------------------------------
// DOT

/// Escape text for a double-quoted DOT string used as a label. In labels a
/// backslash starts an escape (`\n`, `\l`, `\N`, `\G`, …), so a literal one
/// is doubled; quotes are escaped; line breaks become `\n` (centred line)
/// and other control characters a space. Non-ASCII text stays as is: DOT
/// files are UTF-8.
pub fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Render as a Graphviz DOT digraph (`dot -Tsvg` draws it).
pub fn to_dot(plan: &Plan, exec: &ExecPlan, opts: &RenderOptions) -> String {
    let mut out = String::new();
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "digraph drplan {{");
    let _ = writeln!(
        out,
        "  graph [label=\"{}\", labelloc=t, fontname=\"Helvetica\"];",
        dot_escape(&title(plan, exec, opts))
    );
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", shape=box];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\"];");
    let mut i = 0;
    for (p, (stage, groups)) in clusters(plan, exec).iter().enumerate() {
        let indent = if let Some(label) = stage {
            let _ = writeln!(out, "  subgraph cluster_p{p} {{");
            let _ = writeln!(out, "    label=\"{}\";", dot_escape(label));
            let _ = writeln!(out, "    style=dashed;");
            "    "
        } else {
            "  "
        };
        for (name, ids) in groups {
            let _ = writeln!(out, "{indent}subgraph cluster_g{i} {{");
            let _ = writeln!(out, "{indent}  label=\"{}\";", dot_escape(name));
            for &id in ids {
                let _ = writeln!(out, "{indent}  {}", dot_node(&exec.nodes[id], opts));
            }
            let _ = writeln!(out, "{indent}}}");
            i += 1;
        }
        if stage.is_some() {
            let _ = writeln!(out, "  }}");
        }
    }
    for (from, to) in edges(exec) {
        let _ = writeln!(out, "  n{from} -> n{to};");
    }
    out.push_str("}\n");
    out
}

fn dot_node(node: &ExecNode, opts: &RenderOptions) -> String {
    let style = opts.styles.get(&node.id);
    let mut text = label(node);
    if let Some(note) = style.and_then(|s| s.note.as_deref()) {
        text.push('\n');
        text.push_str(note);
    }
    let (shape_name, mut styles) = match shape(node) {
        Shape::Script => ("box", vec![]),
        Shape::Manual => ("invtrapezium", vec![]),
        Shape::Wait => ("hexagon", vec![]),
        Shape::VmOp => ("box", vec!["rounded"]),
    };
    if node.optional {
        styles.push("dashed");
    }
    let mut attrs = format!("label=\"{}\", shape={shape_name}", dot_escape(&text));
    if let Some(s) = style {
        if s.fill.is_some() {
            styles.push("filled");
        }
        if let Some(c) = s.fill {
            let _ = write!(attrs, ", fillcolor=\"{}\"", c.hex());
        }
        if let Some(c) = s.border {
            let _ = write!(attrs, ", color=\"{}\"", c.hex());
        }
        if let Some(c) = s.text {
            let _ = write!(attrs, ", fontcolor=\"{}\"", c.hex());
        }
    }
    if !styles.is_empty() {
        let _ = write!(attrs, ", style=\"{}\"", styles.join(","));
    }
    format!("n{} [{attrs}];", node.id)
}

// ---------------------------------------------------------------------------
// Mermaid

/// Escape text for a double-quoted Mermaid label. Mermaid has no backslash
/// escapes; it has entity codes (`#quot;`, `#35;`), and labels are HTML, so
/// `"`, `#`, `&`, `<`, `>` and the backtick (which would start a Markdown
/// string) become entity codes; line breaks become `<br>`, other control
/// characters a space. Everything else, Unicode included, stays as is.
pub fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#amp;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '`' => out.push_str("#96;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => out.push_str("<br>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Render as a Mermaid flowchart (top to bottom, like DOT's default).
pub fn to_mermaid(plan: &Plan, exec: &ExecPlan, opts: &RenderOptions) -> String {
    let mut out = String::from("flowchart TB\n");
    // A comment rather than front-matter `title:` so the text starts with
    // `flowchart` and needs no YAML escaping; `%%` comments end at the line
    // end, so line breaks in the title are flattened.
    let t: String = title(plan, exec, opts)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(out, "  %% {t}");
    let _ = writeln!(out, "  classDef optional stroke-dasharray: 5 5");
    let mut i = 0;
    for (p, (stage, groups)) in clusters(plan, exec).iter().enumerate() {
        let indent = if let Some(label) = stage {
            let _ = writeln!(out, "  subgraph p{p}[\"{}\"]", mermaid_escape(label));
            "    "
        } else {
            "  "
        };
        for (name, ids) in groups {
            let _ = writeln!(out, "{indent}subgraph g{i}[\"{}\"]", mermaid_escape(name));
            for &id in ids {
                let _ = writeln!(out, "{indent}  {}", mermaid_node(&exec.nodes[id], opts));
            }
            let _ = writeln!(out, "{indent}end");
            i += 1;
        }
        if stage.is_some() {
            let _ = writeln!(out, "  end");
        }
    }
    for (from, to) in edges(exec) {
        let _ = writeln!(out, "  n{from} --> n{to}");
    }
    let optional: Vec<String> = exec
        .nodes
        .iter()
        .filter(|n| n.optional)
        .map(|n| format!("n{}", n.id))
        .collect();
    if !optional.is_empty() {
        let _ = writeln!(out, "  class {} optional", optional.join(","));
    }
    for (id, s) in &opts.styles {
        if *id >= exec.nodes.len() {
            continue;
        }
        let mut parts = Vec::new();
        if let Some(c) = s.fill {
            parts.push(format!("fill:{}", c.hex()));
        }
        if let Some(c) = s.border {
            parts.push(format!("stroke:{}", c.hex()));
        }
        if let Some(c) = s.text {
            parts.push(format!("color:{}", c.hex()));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "  style n{id} {}", parts.join(","));
        }
    }
    out
}

fn mermaid_node(node: &ExecNode, opts: &RenderOptions) -> String {
    let mut text = mermaid_escape(&label(node));
    if let Some(note) = opts.styles.get(&node.id).and_then(|s| s.note.as_deref()) {
        text.push_str("<br>");
        text.push_str(&mermaid_escape(note));
    }
    let id = node.id;
    match shape(node) {
        Shape::Script => format!("n{id}[\"{text}\"]"),
        // `[\ … /]`: a trapezoid wider at the top, the manual-operation symbol.
        Shape::Manual => format!("n{id}[\\\"{text}\"/]"),
        Shape::Wait => format!("n{id}{{{{\"{text}\"}}}}"),
        Shape::VmOp => format!("n{id}(\"{text}\")"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::plan::compile::{Operation, compile};
    use crate::plan::model::{
        CloudRef, CommitPolicy, FailoverKind, Group, GroupVm, Step, TestSettings, When,
    };

    fn step(name: &str, action: StepAction, optional: bool) -> Step {
        Step {
            name: name.to_string(),
            action,
            when: When::default(),
            optional,
        }
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

    fn manual(name: &str) -> Step {
        step(
            name,
            StepAction::Manual {
                instructions: "check".into(),
                timeout: None,
                on_timeout: Default::default(),
            },
            false,
        )
    }

    fn plan(groups: Vec<Group>) -> Plan {
        Plan {
            name: "p".into(),
            description: None,
            source: CloudRef {
                site: "a".into(),
                cloud: "c".into(),
            },
            target: CloudRef {
                site: "b".into(),
                cloud: "c".into(),
            },
            base_dir: PathBuf::from("."),
            fabric_path: None,
            groups,
            test: TestSettings {
                network: None,
                max_duration: Duration::from_secs(3600),
                cleanup: vec![],
            },
            commit: CommitPolicy::Manual,
            layout: crate::plan::model::CompileLayout::default(),
        }
    }

    fn group(name: &str, after: Vec<usize>, vms: &[(&str, bool)], pre: Vec<Step>) -> Group {
        Group {
            name: name.into(),
            after,
            vms: vms
                .iter()
                .map(|(n, o)| GroupVm {
                    name: n.to_string(),
                    optional: *o,
                })
                .collect(),
            pre,
            post: vec![],
        }
    }

    #[test]
    fn dot_escape_handles_quotes_backslashes_and_newlines() {
        assert_eq!(dot_escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(dot_escape("x\r\ny\nz\tw"), r"x\ny\nz w");
        assert_eq!(dot_escape("ünï €"), "ünï €");
        // A trailing backslash must not escape the closing quote.
        assert_eq!(dot_escape("x\\"), "x\\\\");
    }

    #[test]
    fn mermaid_escape_uses_entity_codes() {
        assert_eq!(mermaid_escape(r#"a"b#c"#), "a#quot;b#35;c");
        assert_eq!(mermaid_escape("<end> & `x`"), "#lt;end#gt; #amp; #96;x#96;");
        assert_eq!(mermaid_escape("l1\nl2"), "l1<br>l2");
    }

    #[test]
    fn shapes_optional_and_styles_reach_the_dot_output() {
        let p = plan(vec![group(
            "g",
            vec![],
            &[("vm1", true)],
            vec![wait("w"), manual("m")],
        )]);
        // Phases: the test VM is created first (n0), then the group boots:
        // its pre steps (n1, n2), then the VM starts (n3).
        let exec = compile(&p, Operation::failover(FailoverKind::Test));
        let mut opts = RenderOptions::default();
        opts.styles.insert(
            1,
            NodeStyle {
                fill: Some(Rgb(0x2e, 0x7d, 0x32)),
                note: Some("done".into()),
                ..Default::default()
            },
        );
        let dot = to_dot(&p, &exec, &opts);
        assert!(
            dot.contains(
                r##"n1 [label="w\ndone", shape=hexagon, fillcolor="#2e7d32", style="filled"];"##
            ),
            "{dot}"
        );
        assert!(
            dot.contains(r#"n2 [label="m", shape=invtrapezium];"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#"n0 [label="vm1: create-test-vm", shape=box, style="rounded,dashed"];"#),
            "{dot}"
        );
        assert!(
            dot.contains("n0 -> n1;\n  n1 -> n2;\n  n2 -> n3;\n"),
            "{dot}"
        );
        let mm = to_mermaid(&p, &exec, &opts);
        assert!(mm.contains("n1{{\"w<br>done\"}}"), "{mm}");
        assert!(mm.contains("n2[\\\"m\"/]"), "{mm}");
        assert!(mm.contains("class n0,n3 optional"), "{mm}");
        assert!(mm.contains("style n1 fill:#2e7d32"), "{mm}");
        // The phases are clusters around the group's clusters.
        assert!(dot.contains("label=\"2. Failover\";"), "{dot}");
        assert!(
            mm.contains("subgraph p1[\"3. Boot (recovery site, group by group)\"]"),
            "{mm}"
        );
    }

    #[test]
    fn empty_groups_get_no_cluster_and_unknown_style_ids_are_ignored() {
        let p = plan(vec![
            group("empty", vec![], &[], vec![]),
            group("g", vec![0], &[("v", false)], vec![]),
        ]);
        let exec = compile(&p, Operation::failover(FailoverKind::Planned));
        let mut opts = RenderOptions::default();
        opts.styles.insert(
            999,
            NodeStyle {
                fill: Some(Rgb(1, 2, 3)),
                ..Default::default()
            },
        );
        let dot = to_dot(&p, &exec, &opts);
        assert!(!dot.contains("\"empty\""), "{dot}");
        // `g` once in each of the three phases, each phase a cluster.
        assert_eq!(dot.matches("subgraph cluster_g").count(), 3, "{dot}");
        assert_eq!(dot.matches("subgraph cluster_p").count(), 3, "{dot}");
        let mm = to_mermaid(&p, &exec, &opts);
        assert!(!mm.contains("n999"), "{mm}");
        assert_eq!(mm.matches("subgraph g").count(), 3, "{mm}");
        assert_eq!(mm.matches("subgraph p").count(), 3, "{mm}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let p = plan(vec![
            group("a", vec![], &[("x", false), ("y", false)], vec![]),
            group("b", vec![0], &[("z", false)], vec![]),
            group("c", vec![0], &[("w", false)], vec![]),
        ]);
        let exec = compile(&p, Operation::failover(FailoverKind::Unplanned));
        let o = RenderOptions::default();
        assert_eq!(to_dot(&p, &exec, &o), to_dot(&p, &exec, &o));
        assert_eq!(to_mermaid(&p, &exec, &o), to_mermaid(&p, &exec, &o));
        // Edges are sorted by target: b's and c's first nodes each wait for
        // both of a's VM chains.
        let dot = to_dot(&p, &exec, &o);
        let edge_lines: Vec<&str> = dot.lines().filter(|l| l.contains("->")).collect();
        let mut sorted = edge_lines.clone();
        sorted.sort_by_key(|l| {
            let (f, t) = l.trim().trim_end_matches(';').split_once(" -> ").unwrap();
            (
                t[1..].parse::<usize>().unwrap(),
                f[1..].parse::<usize>().unwrap(),
            )
        });
        assert_eq!(edge_lines, sorted);
    }
}
