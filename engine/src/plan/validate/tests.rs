//! Unit tests of individual rules: a plan text in, the codes (and where
//! useful the message or position) out.

use std::path::Path;

use super::super::diag::{Diagnostic, Severity, codes};
use super::super::file::PlanFile;
use super::super::model::{self, CommitPolicy, Inventory, StepAction};
use super::*;

fn check(text: &str) -> (Option<Plan>, Vec<Diagnostic>) {
    check_with(text, None)
}

fn check_with(text: &str, inv: Option<&Inventory>) -> (Option<Plan>, Vec<Diagnostic>) {
    let file: PlanFile = serde_saphyr::from_str(text).expect("test plans parse");
    validate_plan("plan.yaml", &file, Path::new("."), inv)
}

fn codes_of(diags: &[Diagnostic]) -> Vec<&'static str> {
    diags.iter().map(|d| d.code).collect()
}

const HEAD: &str = "drplan: 1\nname: p\nsource: a/x\ntarget: b/y\n";

fn plan(groups: &str) -> String {
    format!("{HEAD}groups:\n{groups}")
}

#[test]
fn minimal_plan_is_valid_with_defaults() {
    let (p, d) = check(&plan(
        "  - name: web\n    vms: [web01]\n    post:\n      - name: dns\n        shell: echo hi\n",
    ));
    assert!(d.is_empty(), "{d:?}");
    let p = p.expect("valid");
    assert_eq!(p.groups[0].after, Vec::<usize>::new());
    let StepAction::Script {
        timeout,
        retries,
        retry_delay,
        ..
    } = &p.groups[0].post[0].action
    else {
        panic!("a script")
    };
    assert_eq!(*timeout, model::DEFAULT_SCRIPT_TIMEOUT);
    assert_eq!(*retries, 0);
    assert_eq!(*retry_delay, model::DEFAULT_RETRY_DELAY);
    assert_eq!(p.test.max_duration, model::MAX_TEST_DURATION);
    assert_eq!(p.commit, CommitPolicy::Manual);
}

#[test]
fn omitted_after_means_previous_group_and_empty_after_means_none() {
    let (p, d) = check(&plan(
        "  - name: a\n    vms: [v1]\n  - name: b\n    vms: [v2]\n  - name: c\n    after: []\n    vms: [v3]\n  - name: d\n    after: [a, b, a]\n    vms: [v4]\n",
    ));
    assert!(d.is_empty(), "{d:?}");
    let p = p.unwrap();
    let afters: Vec<Vec<usize>> = p.groups.iter().map(|g| g.after.clone()).collect();
    assert_eq!(afters, vec![vec![], vec![0], vec![], vec![0, 1]]);
}

#[test]
fn version_two_asks_to_upgrade() {
    let text = plan("  - name: a\n    vms: [v]\n").replace("drplan: 1", "drplan: 2");
    let (p, d) = check(&text);
    assert!(p.is_none());
    assert_eq!(codes_of(&d), [codes::VERSION]);
    assert!(d[0].message.contains("format 2"));
    assert_eq!(d[0].hint.as_deref(), Some("upgrade drplan"));
}

#[test]
fn names_say_what_is_wrong() {
    assert!(is_valid_name("web-01.a_b"));
    assert!(!is_valid_name("-web"));
    assert!(!is_valid_name(""));
    assert!(!is_valid_name(&"a".repeat(64)));
    assert!(is_valid_name(&"a".repeat(63)));
    assert!(!is_valid_name("wéb"));
    let (_, d) = check(&plan("  - name: front end\n    vms: [web01]\n"));
    assert_eq!(codes_of(&d), [codes::INVALID_NAME]);
    assert!(
        d[0].message.contains("contains a space"),
        "{}",
        d[0].message
    );
    assert_eq!((d[0].line, d[0].column), (6, 11));
}

#[test]
fn source_target_shape_and_equality() {
    let text = "drplan: 1\nname: p\nsource: gold\ntarget: a/\ngroups:\n  - name: g\n    vms: [v]\n";
    let (_, d) = check(text);
    assert_eq!(codes_of(&d), [codes::BAD_SITE_CLOUD, codes::BAD_SITE_CLOUD]);
    let text = "drplan: 1\nname: p\nsource: a/x\ntarget: a/x\ngroups:\n  - name: g\n    vms: [v]\n";
    let (_, d) = check(text);
    assert_eq!(codes_of(&d), [codes::SAME_SOURCE_TARGET]);
    assert_eq!(d[0].line, 4);
}

#[test]
fn empty_plan_and_empty_group() {
    let (p, d) = check(&format!("{HEAD}groups: []\n"));
    assert!(p.is_none());
    assert_eq!(codes_of(&d), [codes::EMPTY_PLAN]);
    let (p, d) = check(&plan("  - name: a\n    vms: [v]\n  - name: spacer\n"));
    assert!(p.is_some(), "a warning does not block the plan");
    assert_eq!(codes_of(&d), [codes::EMPTY_GROUP]);
    assert_eq!(d[0].severity, Severity::Warning);
}

#[test]
fn duplicates_point_at_the_second_and_name_the_first() {
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v1, v1]\n  - name: a\n    vms: [v2]\n  - name: b\n    vms: [v2]\n    pre:\n      - name: s\n        wait: 1s\n      - name: s\n        wait: 1s\n",
    ));
    assert_eq!(
        codes_of(&d),
        [
            codes::DUPLICATE_VM,
            codes::DUPLICATE_GROUP,
            codes::VM_IN_TWO_GROUPS,
            codes::DUPLICATE_STEP
        ]
    );
    assert!(d[0].message.contains("first on line 7"));
    assert!(d[1].message.contains("first on line 6"));
    assert!(
        d[2].message.contains("group `a` (line 9)"),
        "{}",
        d[2].message
    );
}

#[test]
fn unknown_group_has_did_you_mean_and_self_dependency_is_caught() {
    let (_, d) = check(&plan(
        "  - name: database\n    vms: [v1]\n  - name: app\n    after: [databse, app]\n    vms: [v2]\n",
    ));
    assert_eq!(codes_of(&d), [codes::UNKNOWN_GROUP, codes::SELF_DEPENDENCY]);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `database`?"));
}

#[test]
fn cycle_is_one_diagnostic_naming_every_group_at_the_closing_entry() {
    let (p, d) = check(&plan(
        "  - name: app\n    after: [cache]\n    vms: [v1]\n  - name: web\n    after: [app]\n    vms: [v2]\n  - name: cache\n    after: [web]\n    vms: [v3]\n",
    ));
    assert!(p.is_none());
    assert_eq!(codes_of(&d), [codes::CYCLE]);
    assert_eq!(
        d[0].message,
        "groups depend on each other in a cycle: app → web → cache → app"
    );
    assert_eq!((d[0].line, d[0].column), (7, 13));
}

#[test]
fn implicit_previous_group_can_close_a_cycle() {
    let (_, d) = check(&plan(
        "  - name: a\n    after: [b]\n    vms: [v1]\n  - name: b\n    vms: [v2]\n",
    ));
    assert_eq!(codes_of(&d), [codes::CYCLE]);
    assert_eq!(
        d[0].message,
        "groups depend on each other in a cycle: a → b → a"
    );
    // `a` is first in the file and its `after: [b]` closes the cycle.
    assert_eq!(d[0].line, 7);
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v1]\n  - name: b\n    after: [c]\n    vms: [v2]\n  - name: c\n    vms: [v3]\n",
    ));
    assert_eq!(codes_of(&d), [codes::CYCLE]);
    assert_eq!(
        d[0].message,
        "groups depend on each other in a cycle: b → c → b"
    );
    assert_eq!(d[0].line, 9, "at b's `after: [c]`");
}

#[test]
fn a_long_cycle_is_summarized() {
    let mut text = String::from("  - name: g0\n    after: [g49999]\n    vms: [v0]\n");
    for i in 1..50_000 {
        text.push_str(&format!("  - name: g{i}\n    vms: [v{i}]\n"));
    }
    // drplan's own reader: serde_saphyr's default budget stops at 250,000 values.
    let file: PlanFile = crate::plan::yaml::parse("plan.yaml", plan(&text).as_bytes()).unwrap();
    let (_, d) = validate_plan("plan.yaml", &file, Path::new("."), None);
    assert_eq!(codes_of(&d), [codes::CYCLE]);
    assert_eq!(
        d[0].message,
        "50000 groups depend on each other in a cycle: g0 → g1 → g2 → g3 → g4 → g5 → g6 → g7 \
         → (49989 more) → g49997 → g49998 → g49999 → g0"
    );
    assert_eq!(
        (d[0].line, d[0].column),
        (7, 13),
        "at the closing `after` entry"
    );
}

#[test]
fn dependency_cycles_finds_real_cycles() {
    // 0 <- 1 <- 2 <- 0 (2 after 1, 1 after 0, 0 after 2), 3 after 3 ignored, 4 after 0.
    let after = vec![vec![2], vec![0], vec![1], vec![3], vec![0]];
    assert_eq!(dependency_cycles(&after), vec![vec![0, 1, 2]]);
    assert!(dependency_cycles(&[vec![], vec![0], vec![0, 1]]).is_empty());
}

#[test]
fn durations_bad_negative_zero_and_test_window() {
    let text = format!(
        "{HEAD}defaults:\n  script_timeout: 5 mins\n  retry_delay: 0s\ntest:\n  max_duration: 15d\ncommit:\n  policy: auto-commit\n  after: -5m\ngroups:\n  - name: a\n    vms: [v]\n    pre:\n      - name: w\n        wait: 0s\n      - name: t\n        shell: x\n        timeout: soon\n"
    );
    let (p, d) = check(&text);
    assert!(p.is_none());
    assert_eq!(
        codes_of(&d),
        [
            codes::TEST_WINDOW,
            codes::BAD_DURATION,
            codes::ZERO_DURATION,
            codes::BAD_DURATION
        ]
    );
    assert!(d[1].message.contains("cannot be negative"));
    assert!(
        d[3].hint
            .as_deref()
            .unwrap()
            .contains("30s, 5m, 1h30m, 14d")
    );
}

#[test]
fn step_kind_none_or_several() {
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: nothing\n        timeout: 1m\n      - name: both\n        shell: echo\n        manual: do it\n",
    ));
    assert_eq!(codes_of(&d), [codes::STEP_KIND, codes::STEP_KIND]);
    assert!(d[1].message.contains("`shell` and `manual`"));
    assert_eq!(d[1].line, 13, "at the second kind");
}

#[test]
fn fields_that_do_not_fit_the_kind() {
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: m\n        manual: check\n        retries: 2\n        env: { A: b }\n      - name: w\n        wait: 5s\n        timeout: 1m\n        on_timeout: continue\n      - name: s\n        shell: echo\n        on_timeout: fail\n",
    ));
    assert_eq!(codes_of(&d), vec![codes::FIELD_NOT_FOR_KIND; 5]);
}

#[test]
fn manual_step_options_resolve() {
    let (p, d) = check(&format!(
        "{HEAD}defaults:\n  manual_timeout: 1h\ngroups:\n  - name: a\n    vms: [v]\n    pre:\n      - name: m\n        manual: check\n        on_timeout: continue\n      - name: n\n        manual: check\n        timeout: 5m\n"
    ));
    assert!(d.is_empty(), "{d:?}");
    let p = p.unwrap();
    assert_eq!(
        p.groups[0].pre[0].action,
        StepAction::Manual {
            instructions: "check".into(),
            timeout: Some(std::time::Duration::from_secs(3600)),
            on_timeout: model::OnTimeout::Continue
        }
    );
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: m\n        manual: check\n        on_timeout: contiue\n",
    ));
    assert_eq!(codes_of(&d), [codes::BAD_VALUE]);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `continue`?"));
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: m\n        manual: check\n        on_timeout: continue\n",
    ));
    assert_eq!(codes_of(&d), [codes::NO_EFFECT]);
}

#[test]
fn argv_checks() {
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: e\n        run: []\n      - name: f\n        run: ['']\n      - name: g\n        shell: '  '\n      - name: h\n        run: [./no/such/script.sh]\n      - name: i\n        run: [surely-not-a-program-on-path-xyz]\n      - name: j\n        run: [/]\n",
    ));
    assert_eq!(
        codes_of(&d),
        [
            codes::EMPTY_ARGV,
            codes::EMPTY_ARGV,
            codes::EMPTY_ARGV,
            codes::PROGRAM_MISSING,
            codes::NOT_ON_PATH,
            codes::NOT_EXECUTABLE
        ]
    );
    assert_eq!(d[4].severity, Severity::Warning);
}

#[cfg(unix)]
#[test]
fn program_mode_bits_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text =
        plan("  - name: a\n    vms: [v]\n    pre:\n      - name: s\n        run: [./s.sh]\n");
    let file: PlanFile = serde_saphyr::from_str(&text).unwrap();
    let (_, d) = validate_plan("plan.yaml", &file, dir.path(), None);
    assert_eq!(codes_of(&d), [codes::NOT_EXECUTABLE]);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (p, d) = validate_plan("plan.yaml", &file, dir.path(), None);
    assert!(d.is_empty(), "{d:?}");
    assert!(p.is_some());
}

#[test]
fn when_words() {
    let (p, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: s\n        shell: x\n        when: [planned, reverse, planned]\n",
    ));
    assert!(d.is_empty());
    let w = &p.unwrap().groups[0].pre[0].when;
    assert_eq!(w.kinds, [model::FailoverKind::Planned]);
    assert_eq!(w.directions, [model::Direction::Reverse]);
    let (_, d) = check(&plan(
        "  - name: a\n    vms: [v]\n    pre:\n      - name: s\n        shell: x\n        when: [planed, sideways]\n",
    ));
    assert_eq!(codes_of(&d), [codes::UNKNOWN_WHEN, codes::UNKNOWN_WHEN]);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `planned`?"));
}

#[test]
fn when_on_cleanup_is_a_warning() {
    let (p, d) = check(&format!(
        "{HEAD}test:\n  cleanup:\n    - name: c\n      shell: x\n      when: [planned]\ngroups:\n  - name: a\n    vms: [v]\n"
    ));
    assert_eq!(codes_of(&d), [codes::FIELD_NOT_FOR_KIND]);
    assert_eq!(d[0].severity, Severity::Warning);
    assert_eq!(p.unwrap().test.cleanup[0].when, model::When::default());
}

#[test]
fn commit_policies() {
    let c = |s: &str| {
        check(&format!(
            "{HEAD}commit:\n{s}groups:\n  - name: a\n    vms: [v]\n"
        ))
    };
    let (p, d) = c("  policy: auto-rollback\n  after: 4h\n");
    assert!(d.is_empty());
    assert_eq!(
        p.unwrap().commit,
        CommitPolicy::AutoRollback {
            after: std::time::Duration::from_secs(4 * 3600)
        }
    );
    let (_, d) = c("  policy: auto-commit\n");
    assert_eq!(codes_of(&d), [codes::MISSING_WINDOW]);
    let (p, d) = c("  policy: none\n  after: 1h\n");
    assert!(p.is_some());
    assert_eq!(codes_of(&d), [codes::NO_EFFECT]);
}

fn inventory() -> Inventory {
    let text = r#"
drplan-fabric: 1
sites:
  - name: a
    clouds:
      - name: x
        hosts: [{ name: h1, os: ws2012r2 }]
      - name: z
        hosts: [{ name: h3, os: ws2012r2 }]
  - name: b
    clouds:
      - name: y
        hosts: [{ name: h2, os: ws2012r2 }]
networks:
  - { site: a, name: corp }
  - { site: a, name: dmz }
  - { site: b, name: corp }
  - { site: b, name: bubble }
policies:
  - { name: p, host_os: ws2012r2, copy_frequency: 5m, authentication: certificate }
pairings:
  - { source: a/x, target: b/y, policies: [p] }
network_mappings:
  - { source: a/corp, target: b/corp }
vms:
  - { name: web01, site: a, cloud: x, host: h1, protection: protected, nics: [{ network: corp }, { network: dmz }] }
  - { name: old01, site: a, cloud: x, host: h1, protection: unprotected }
  - { name: ext01, site: a, cloud: x, host: h1, protection: replicated-externally }
  - { name: zed01, site: a, cloud: z, host: h3, protection: protected }
"#;
    let f = serde_saphyr::from_str(text).unwrap();
    let (inv, d) = validate_fabric("fabric.yaml", &f);
    assert!(d.is_empty(), "{d:?}");
    inv.unwrap()
}

#[test]
fn cross_checks_against_the_inventory() {
    let inv = inventory();
    let text = "drplan: 1\nname: p\nsource: a/x\ntarget: b/y\ntest:\n  network: bubbel\ngroups:\n  - name: g\n    vms: [web01, old01, ext01, zed01, web1]\n";
    let (p, d) = check_with(text, Some(&inv));
    assert!(p.is_none());
    assert_eq!(
        codes_of(&d),
        [
            codes::UNKNOWN_TEST_NETWORK,
            codes::NO_NETWORK_MAPPING,
            codes::VM_NOT_PROTECTED,
            codes::VM_NOT_PROTECTED,
            codes::VM_WRONG_CLOUD,
            codes::UNKNOWN_VM,
        ]
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `bubble`?"));
    assert_eq!(
        d[1].message,
        "after failover `web01` would be attached to no network: `a/dmz` has no network mapping"
    );
    // Declared unprotected or replicated outside drplan: both warnings (a
    // failover is refused at submission while they are not protected).
    assert_eq!(d[2].severity, Severity::Warning);
    assert!(
        d[2].message.contains("declared unprotected"),
        "{}",
        d[2].message
    );
    assert_eq!(d[3].severity, Severity::Warning);
    assert_eq!(d[5].hint.as_deref(), Some("did you mean `web01`?"));
}

#[test]
fn test_network_should_be_isolated() {
    let inv = inventory();
    let text = "drplan: 1\nname: p\nsource: a/x\ntarget: b/y\ntest:\n  network: corp\ngroups:\n  - name: g\n    vms: [zed01]\n";
    let (_, d) = check_with(text, Some(&inv));
    assert_eq!(d[0].code, codes::TEST_NETWORK_NOT_ISOLATED);
    assert_eq!(d[0].severity, Severity::Warning);
    assert!(
        d[0].message.contains("`a/corp` maps to it"),
        "{}",
        d[0].message
    );
}

#[test]
fn unknown_and_unpaired_clouds() {
    let inv = inventory();
    let g = "groups:\n  - name: g\n    vms: [web01]\n";
    let (_, d) = check_with(
        &format!("drplan: 1\nname: p\nsource: aa/x\ntarget: b/yy\n{g}"),
        Some(&inv),
    );
    // web01's unmapped `dmz` NIC is still worth a warning; its cloud is not
    // compared with a source that does not exist.
    assert_eq!(
        codes_of(&d),
        [
            codes::UNKNOWN_SITE_CLOUD,
            codes::UNKNOWN_SITE_CLOUD,
            codes::NO_NETWORK_MAPPING
        ]
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `a`?"));
    let (_, d) = check_with(
        &format!("drplan: 1\nname: p\nsource: a/x\ntarget: a/z\n{g}"),
        Some(&inv),
    );
    assert_eq!(codes_of(&d), [codes::NOT_PAIRED, codes::NO_NETWORK_MAPPING]);
    assert!(d[0].hint.as_deref().unwrap().contains("`b/y`"));
}

fn fabric_codes(text: &str) -> Vec<&'static str> {
    let f = serde_saphyr::from_str(text).expect("test inventories parse");
    let (inv, d) = validate_fabric("fabric.yaml", &f);
    assert_eq!(
        inv.is_some(),
        !d.iter().any(|d| d.severity == Severity::Error)
    );
    codes_of(&d)
}

const SITES: &str = "drplan-fabric: 1\nsites:\n  - name: a\n    clouds:\n      - name: x\n        hosts: [{ name: h1, os: ws2012r2 }, { name: h2, os: ws2016 }]\n  - name: b\n    clouds:\n      - name: y\n";

#[test]
fn policy_rules() {
    let pol = |fields: &str| {
        fabric_codes(&format!(
            "{SITES}policies:\n  - {{ name: p, host_os: ws2012r2, {fields} }}\n"
        ))
    };
    assert!(pol("copy_frequency: 5m, authentication: kerberos").is_empty());
    assert_eq!(
        pol("copy_frequency: 10m, authentication: certificate"),
        [codes::POLICY_COPY_FREQUENCY]
    );
    assert_eq!(
        pol("copy_frequency: 30s, authentication: certifcate"),
        [codes::POLICY_AUTH]
    );
    assert_eq!(
        pol("copy_frequency: 30s, authentication: certificate, port: 70000"),
        [codes::POLICY_PORT]
    );
    assert_eq!(
        pol("copy_frequency: 30s, authentication: certificate, retention_hours: 25"),
        [codes::FABRIC_BAD_VALUE]
    );
    assert_eq!(
        pol("copy_frequency: 30s, authentication: certificate, app_consistent_frequency: 2h"),
        [codes::POLICY_APP_CONSISTENT],
        "retention 0 makes app-consistent snapshots meaningless"
    );
    assert_eq!(
        pol(
            "copy_frequency: 30s, authentication: certificate, retention_hours: 4, app_consistent_frequency: 4h"
        ),
        [codes::POLICY_APP_CONSISTENT]
    );
    assert!(pol("copy_frequency: 30s, authentication: certificate, retention_hours: 5, app_consistent_frequency: 4h").is_empty());
    assert_eq!(
        pol(
            "copy_frequency: 30s, authentication: certificate, retention_hours: 24, app_consistent_frequency: 90m"
        ),
        [codes::POLICY_APP_CONSISTENT]
    );
    assert_eq!(
        pol(
            "copy_frequency: 30s, authentication: certificate, initial_replication: { method: offline, export_path: /e }"
        ),
        [codes::POLICY_INITIAL]
    );
    assert_eq!(
        pol(
            "copy_frequency: 30s, authentication: certificate, initial_replication: { method: network, start: tomorrow }"
        ),
        [codes::POLICY_INITIAL]
    );
    assert!(pol("copy_frequency: 30s, authentication: certificate, initial_replication: { method: network, start: '2026-12-01T02:00:00Z' }").is_empty());
}

#[test]
fn pairing_needs_one_policy_per_host_os() {
    let policies = "policies:\n  - { name: old, host_os: ws2012r2, copy_frequency: 5m, authentication: certificate }\n  - { name: new, host_os: ws2016, copy_frequency: 5m, authentication: kerberos }\n  - { name: old2, host_os: ws2012r2, copy_frequency: 15m, authentication: certificate }\n  - { name: other, host_os: ws2019, copy_frequency: 15m, authentication: certificate }\n";
    let pair = |p: &str| {
        fabric_codes(&format!(
            "{SITES}{policies}pairings:\n  - {{ source: a/x, target: b/y, policies: [{p}] }}\n"
        ))
    };
    assert!(pair("old, new").is_empty());
    assert_eq!(pair("old"), [codes::POLICY_OS], "no policy for ws2016");
    assert_eq!(
        pair("old, new, old2"),
        [codes::POLICY_OS],
        "two for ws2012r2"
    );
    assert_eq!(
        pair("old, new, other"),
        [codes::POLICY_OS],
        "ws2019 runs nowhere"
    );
    // The misspelt policy was probably the ws2016 one: one error, not two.
    assert_eq!(pair("old, neww"), [codes::FABRIC_UNKNOWN_REF]);
}

#[test]
fn pairings_self_and_twice() {
    let codes = fabric_codes(&format!(
        "{SITES}pairings:\n  - {{ source: a/x, target: a/x, policies: [] }}\n  - {{ source: a/x, target: b/y, policies: [] }}\n  - {{ source: b/y, target: c/y, policies: [] }}\n"
    ));
    // Both pairings of a/x lack policies for its two OSes (2 × 2).
    assert_eq!(
        codes,
        [
            codes::POLICY_OS,
            codes::POLICY_OS,
            codes::FABRIC_BAD_VALUE,
            codes::FABRIC_DUPLICATE,
            codes::POLICY_OS,
            codes::POLICY_OS,
            codes::FABRIC_UNKNOWN_REF
        ]
    );
}

#[test]
fn odd_durations_never_panic_and_are_explained() {
    for (text, expect) in [
        ("５m", "a number followed by a unit"),
        ("5m√", "`√` is not allowed"),
        ("99999999999999999999999d", "too large"),
        ("90", "needs a unit"),
        ("  ", "is empty"),
        ("1h -5m", "is not"),
    ] {
        let (_, d) = check(&plan(&format!(
            "  - name: a\n    vms: [v]\n    pre:\n      - name: w\n        wait: '{text}'\n"
        )));
        assert_eq!(codes_of(&d), [codes::BAD_DURATION], "{text}");
        assert!(d[0].message.contains(expect), "{text}: {}", d[0].message);
    }
}
