//! Property tests of plan validation.
//!
//! - Random valid plans (random group DAGs in file order, `after` pointing
//!   only backwards or omitted, VMs unique across groups, steps of every
//!   kind with fitting options), written as YAML text the way an author
//!   would: they validate with no errors, `after` resolves as the format
//!   says, and every compiled operation is in topological order.
//! - Round trip: the parsed `PlanFile` serialized with `serde_saphyr` and
//!   parsed again validates to the same `model::Plan`.
//! - Cycles: an acyclic plan plus k back-edges forming k vertex-disjoint
//!   cycles reports exactly those k cycles.
//!
//! Case counts are bounded (64 by default, `PROPTEST_CASES` overrides).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::plan::diag::{Severity, codes};
use drplan_engine::plan::file::PlanFile;
use drplan_engine::plan::validate::{dependency_cycles, validate_plan};
use drplan_engine::plan::{Diagnostic, Direction, FailoverKind, Plan, compile};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64)
}

// ---------------------------------------------------------------------------
// A plan spec and its YAML text

#[derive(Debug, Clone)]
enum Kind {
    Shell,
    Run,
    Manual { on_timeout: Option<&'static str> },
    Wait(&'static str),
}

#[derive(Debug, Clone)]
struct StepSpec {
    kind: Kind,
    timeout: Option<&'static str>,
    retries: Option<u32>,
    retry_delay: Option<&'static str>,
    env: bool,
    when: Option<Vec<&'static str>>,
    optional: bool,
}

#[derive(Debug, Clone)]
struct GroupSpec {
    name: String,
    /// `None`: omitted (the previous group); `Some`: written as a list of
    /// indices of earlier groups (possibly repeated, possibly empty).
    after: Option<Vec<usize>>,
    vms: Vec<bool>,
    pre: Vec<StepSpec>,
    post: Vec<StepSpec>,
}

#[derive(Debug, Clone)]
struct PlanSpec {
    groups: Vec<GroupSpec>,
    defaults: Option<(Option<&'static str>, Option<u32>)>,
    max_duration: Option<&'static str>,
    cleanup: Vec<StepSpec>,
    commit: Option<(&'static str, Option<&'static str>)>,
}

const DURATIONS: [&str; 6] = ["30s", "5m", "90s", "1h30m", "2h", "3d"];
const WHEN: [&str; 5] = ["test", "planned", "unplanned", "forward", "reverse"];

fn duration() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&DURATIONS[..])
}

fn step(in_cleanup: bool) -> impl Strategy<Value = StepSpec> {
    let kind = prop_oneof![
        Just(Kind::Shell),
        Just(Kind::Run),
        prop::option::of(prop::sample::select(vec!["fail", "continue"]))
            .prop_map(|on_timeout| Kind::Manual { on_timeout }),
        duration().prop_map(Kind::Wait),
    ];
    let when = if in_cleanup {
        // `when` is meaningless on cleanup steps (a warning); keep it out.
        Just(None).boxed()
    } else {
        prop::option::of(prop::sample::subsequence(&WHEN[..], 1..=3)).boxed()
    };
    (
        kind,
        prop::option::of(duration()),
        prop::option::of(0u32..4),
        prop::option::of(duration()),
        any::<bool>(),
        when,
        any::<bool>(),
    )
        .prop_map(
            |(kind, timeout, retries, retry_delay, env, when, optional)| {
                // Only the options that fit the kind, as a careful author writes.
                let script = matches!(kind, Kind::Shell | Kind::Run);
                let manual = matches!(kind, Kind::Manual { .. });
                let timeout = if script || manual { timeout } else { None };
                // An `on_timeout` without a timeout is a warning; give it one.
                let timeout = match kind {
                    Kind::Manual {
                        on_timeout: Some(_),
                    } => timeout.or(Some("1h")),
                    _ => timeout,
                };
                StepSpec {
                    timeout,
                    retries: retries.filter(|_| script),
                    retry_delay: retry_delay.filter(|_| script),
                    env: env && script,
                    when,
                    optional,
                    kind,
                }
            },
        )
}

fn group(i: usize) -> impl Strategy<Value = GroupSpec> {
    let after = if i == 0 {
        prop::option::of(Just(Vec::new())).boxed()
    } else {
        prop::option::of(prop::collection::vec(0..i, 0..=3)).boxed()
    };
    (
        "[a-z][a-z0-9_.]{0,6}",
        after,
        prop::collection::vec(any::<bool>(), 0..=3),
        prop::collection::vec(step(false), 0..=2),
        prop::collection::vec(step(false), 0..=2),
    )
        .prop_map(move |(prefix, after, vms, pre, post)| GroupSpec {
            // The index suffix keeps names unique.
            name: format!("{prefix}-{i}"),
            after,
            // At least one VM, so no group is empty (a warning).
            vms: if vms.is_empty() { vec![false] } else { vms },
            pre,
            post,
        })
}

fn plan_spec(max_groups: usize) -> impl Strategy<Value = PlanSpec> {
    (1..=max_groups)
        .prop_flat_map(|n| (0..n).map(group).collect::<Vec<_>>())
        .prop_flat_map(|groups| {
            (
                Just(groups),
                prop::option::of((prop::option::of(duration()), prop::option::of(0u32..3))),
                prop::option::of(prop::sample::select(vec!["1h", "2d", "14d", "336h"])),
                prop::collection::vec(step(true), 0..=2),
                prop::option::of(prop_oneof![
                    Just(("none", None)),
                    duration().prop_map(|d| ("auto-commit", Some(d))),
                    duration().prop_map(|d| ("auto-rollback", Some(d))),
                ]),
            )
        })
        .prop_map(
            |(groups, defaults, max_duration, cleanup, commit)| PlanSpec {
                groups,
                defaults,
                max_duration,
                cleanup,
                commit,
            },
        )
}

fn write_steps(out: &mut String, indent: &str, key: &str, steps: &[StepSpec]) {
    if steps.is_empty() {
        return;
    }
    writeln!(out, "{indent}{key}:").unwrap();
    for (j, s) in steps.iter().enumerate() {
        writeln!(out, "{indent}  - name: s{j}").unwrap();
        let f = format!("{indent}    ");
        match &s.kind {
            Kind::Shell => writeln!(out, "{f}shell: echo step {j}").unwrap(),
            Kind::Run => writeln!(out, "{f}run: [sh, -c, 'exit 0']").unwrap(),
            Kind::Manual { on_timeout } => {
                writeln!(out, "{f}manual: Check step {j} by hand").unwrap();
                if let Some(o) = on_timeout {
                    writeln!(out, "{f}on_timeout: {o}").unwrap();
                }
            }
            Kind::Wait(d) => writeln!(out, "{f}wait: {d}").unwrap(),
        }
        if let Some(t) = s.timeout {
            writeln!(out, "{f}timeout: {t}").unwrap();
        }
        if let Some(r) = s.retries {
            writeln!(out, "{f}retries: {r}").unwrap();
        }
        if let Some(d) = s.retry_delay {
            writeln!(out, "{f}retry_delay: {d}").unwrap();
        }
        if s.env {
            writeln!(out, "{f}env: {{ ZONE: corp.example, STEP: s{j} }}").unwrap();
        }
        if let Some(w) = &s.when {
            writeln!(out, "{f}when: [{}]", w.join(", ")).unwrap();
        }
        if s.optional {
            writeln!(out, "{f}optional: true").unwrap();
        }
    }
}

fn yaml(spec: &PlanSpec) -> String {
    let mut out = String::new();
    out.push_str(
        "drplan: 1\nname: prop-plan\nsource: primary-vmm/gold\ntarget: recovery-vmm/gold\n",
    );
    if let Some((timeout, retries)) = spec.defaults {
        out.push_str("defaults:\n");
        if let Some(t) = timeout {
            writeln!(out, "  script_timeout: {t}").unwrap();
        }
        if let Some(r) = retries {
            writeln!(out, "  retries: {r}").unwrap();
        }
    }
    if spec.max_duration.is_some() || !spec.cleanup.is_empty() {
        out.push_str("test:\n  network: test-bubble\n");
        if let Some(m) = spec.max_duration {
            writeln!(out, "  max_duration: {m}").unwrap();
        }
        write_steps(&mut out, "  ", "cleanup", &spec.cleanup);
    }
    if let Some((policy, after)) = spec.commit {
        writeln!(out, "commit:\n  policy: {policy}").unwrap();
        if let Some(a) = after {
            writeln!(out, "  after: {a}").unwrap();
        }
    }
    out.push_str("groups:\n");
    for (i, g) in spec.groups.iter().enumerate() {
        writeln!(out, "  - name: {}", g.name).unwrap();
        if let Some(after) = &g.after {
            let names: Vec<&str> = after
                .iter()
                .map(|&d| spec.groups[d].name.as_str())
                .collect();
            writeln!(out, "    after: [{}]", names.join(", ")).unwrap();
        }
        out.push_str("    vms:\n");
        for (j, optional) in g.vms.iter().enumerate() {
            if *optional {
                writeln!(out, "      - {{ name: vm{i}-{j}, optional: true }}").unwrap();
            } else {
                writeln!(out, "      - vm{i}-{j}").unwrap();
            }
        }
        write_steps(&mut out, "    ", "pre", &g.pre);
        write_steps(&mut out, "    ", "post", &g.post);
    }
    out
}

/// What `after` must resolve to: omitted = the previous group (none for the
/// first), written = those groups in order, without repeats.
fn expected_after(spec: &PlanSpec) -> Vec<Vec<usize>> {
    spec.groups
        .iter()
        .enumerate()
        .map(|(i, g)| match &g.after {
            None => (i > 0).then(|| i - 1).into_iter().collect(),
            Some(list) => {
                let mut v = Vec::new();
                for &d in list {
                    if !v.contains(&d) {
                        v.push(d);
                    }
                }
                v
            }
        })
        .collect()
}

fn parse(text: &str) -> PlanFile {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("generated YAML parses: {e}\n{text}"))
}

fn validate(file: &PlanFile) -> (Option<Plan>, Vec<Diagnostic>) {
    validate_plan("prop.yaml", file, Path::new("/plans"), None)
}

fn errors(diags: &[Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

fn operations() -> Vec<Operation> {
    let mut ops = Vec::new();
    for kind in FailoverKind::ALL {
        for direction in [Direction::Forward, Direction::Reverse] {
            ops.push(Operation::Failover {
                kind,
                direction,
                recovery_point: RecoveryPoint::LatestAppConsistent,
                shutdown_primary: true,
            });
        }
    }
    ops.extend([
        Operation::TestCleanup,
        Operation::Commit,
        Operation::ReverseReplicate,
        Operation::Rollback,
    ]);
    ops
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn valid_plans_validate_and_compile_in_topological_order(spec in plan_spec(8)) {
        let text = yaml(&spec);
        let file = parse(&text);
        let (plan, diags) = validate(&file);
        prop_assert!(errors(&diags).is_empty(), "{:?}\n{}", errors(&diags), text);
        let plan = plan.expect("no errors, so a plan");

        let after: Vec<Vec<usize>> = plan.groups.iter().map(|g| g.after.clone()).collect();
        prop_assert_eq!(after, expected_after(&spec));
        let vms: usize = plan.groups.iter().map(|g| g.vms.len()).sum();
        prop_assert_eq!(vms, spec.groups.iter().map(|g| g.vms.len()).sum::<usize>());

        for op in operations() {
            let exec = compile(&plan, op);
            for (i, node) in exec.nodes.iter().enumerate() {
                prop_assert_eq!(node.id, i);
                for &d in &node.deps {
                    prop_assert!(d < node.id, "{op}: node {} depends on later {d}", node.key);
                }
            }
            // A failover reaches every VM of the plan.
            if let Operation::Failover { .. } = op {
                prop_assert_eq!(exec.vms().len(), vms);
            }
        }
    }

    #[test]
    fn valid_plans_round_trip_through_serde_saphyr(spec in plan_spec(6)) {
        let text = yaml(&spec);
        let file = parse(&text);
        let (plan, _) = validate(&file);
        let plan = plan.expect("a valid plan");
        let again = serde_saphyr::to_string(&file).expect("a plan file serializes");
        let file2 = parse(&again);
        let (plan2, diags2) = validate(&file2);
        prop_assert!(errors(&diags2).is_empty(), "{:?}\n{}", errors(&diags2), again);
        prop_assert_eq!(Some(plan), plan2);
    }

    #[test]
    fn cycle_detection_finds_exactly_the_injected_cycles(
        blocks in prop::collection::vec(prop_oneof![3 => Just(1usize), 2 => 2usize..=4], 1..=8),
        extra in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..=2), 32),
        implicit in prop::collection::vec(any::<bool>(), 32),
    ) {
        // Lay the blocks out in file order. A singleton block is an acyclic
        // group; a block of 2..4 groups is a cycle: each group after the one
        // before it, and the first after the last (the back-edge). Other
        // dependencies only point at earlier blocks, so the blocks are the
        // strongly connected components.
        let mut start = Vec::new();
        let mut n = 0;
        for &len in &blocks {
            start.push(n);
            n += len;
        }
        let mut after: Vec<Option<Vec<usize>>> = vec![None; n];
        let mut injected: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        let name = |i: usize| format!("g{i}");
        for (b, &len) in blocks.iter().enumerate() {
            let s = start[b];
            let earlier: Vec<usize> = (0..s).collect();
            for (k, i) in (s..s + len).enumerate() {
                let mut deps: Vec<usize> = if earlier.is_empty() {
                    Vec::new()
                } else {
                    extra[i % extra.len()]
                        .iter()
                        .map(|ix| earlier[ix.index(earlier.len())])
                        .collect()
                };
                let leave_implicit = deps.is_empty() && implicit[i % implicit.len()];
                if len > 1 {
                    // Inside a cycle: after the previous group (which may be
                    // left implicit when it is the only dependency), and the
                    // first group after the last one.
                    if k > 0 && leave_implicit {
                        after[i] = None;
                        continue;
                    }
                    deps.push(if k == 0 { s + len - 1 } else { i - 1 });
                } else if leave_implicit && i > 0 {
                    // A singleton's implicit previous group is in an earlier block.
                    after[i] = None;
                    continue;
                }
                after[i] = Some(deps);
            }
            if len > 1 {
                injected.insert((s..s + len).map(name).collect());
            }
        }

        let mut text = String::from("drplan: 1\nname: cycles\nsource: a/x\ntarget: b/y\ngroups:\n");
        for (i, a) in after.iter().enumerate() {
            writeln!(text, "  - name: {}\n    vms: [vm{i}]", name(i)).unwrap();
            if let Some(deps) = a {
                let names: Vec<String> = deps.iter().map(|&d| name(d)).collect();
                writeln!(text, "    after: [{}]", names.join(", ")).unwrap();
            }
        }
        let (plan, diags) = validate(&parse(&text));
        prop_assert_eq!(plan.is_some(), injected.is_empty());
        let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for d in &diags {
            prop_assert_eq!(d.code, codes::CYCLE, "only cycles are wrong: {}\n{}", d, text);
            let path = d.message.rsplit(": ").next().unwrap();
            let mut names: Vec<String> = path.split(" → ").map(str::to_string).collect();
            prop_assert_eq!(names.first(), names.last(), "a cycle closes: {}", d.message);
            names.pop();
            let set: BTreeSet<String> = names.iter().cloned().collect();
            prop_assert_eq!(set.len(), names.len(), "a simple cycle: {}", d.message);
            prop_assert!(reported.insert(set), "one diagnostic per cycle: {}", d.message);
        }
        prop_assert_eq!(&reported, &injected, "\n{}", text);

        // The pure function agrees, and each path is a real cycle: every
        // group starts after the one before it, the first after the last.
        let resolved: Vec<Vec<usize>> = after
            .iter()
            .enumerate()
            .map(|(i, a)| a.clone().unwrap_or_else(|| (i > 0).then(|| i - 1).into_iter().collect()))
            .collect();
        let cycles = dependency_cycles(&resolved);
        prop_assert_eq!(cycles.len(), injected.len());
        for c in &cycles {
            for w in c.windows(2) {
                prop_assert!(resolved[w[1]].contains(&w[0]), "{:?} is not a path", c);
            }
            prop_assert!(resolved[c[0]].contains(c.last().unwrap()), "{:?} does not close", c);
        }
    }
}
