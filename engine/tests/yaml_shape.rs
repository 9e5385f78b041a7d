//! The shape check of plan and inventory files: every unknown key, wrong
//! type, missing field, bad value and duplicate key reported at once, each
//! at the exact line and column of the offending text.

use drplan_engine::plan::diag::{Diagnostic, codes};
use drplan_engine::plan::fabric_file::FabricFile;
use drplan_engine::plan::file::{CommitPolicyName, PlanFile, VmEntryFile};
use drplan_engine::plan::yaml;

fn plan(text: &str) -> Result<PlanFile, Vec<Diagnostic>> {
    yaml::parse::<PlanFile>("plan.yaml", text.as_bytes())
}

/// `(code, line, column)` of each diagnostic, in order.
fn located(diags: &[Diagnostic]) -> Vec<(&'static str, u64, u64)> {
    diags.iter().map(|d| (d.code, d.line, d.column)).collect()
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match plan(text) {
        Ok(p) => panic!("expected errors, parsed {p:?}"),
        Err(d) => d,
    }
}

const VALID_PLAN: &str = r#"# A three-tier application.
drplan: 1
name: web-shop
description: Orders and payments.
source: primary-vmm/gold
target: secondary-vmm/gold-dr
fabric: fabric.yaml
defaults:
  script_timeout: 10m
  retries: 1
  retry_delay: 15s
test:
  network: test-net
  max_duration: 3d
  cleanup:
    - name: drop-test-dns
      run: [./scripts/dns.sh, cleanup]
commit:
  policy: auto-commit
  after: 2h
groups:
  - name: db
    after: []
    vms:
      - db-1
      - { name: db-2, optional: true }
    pre:
      - name: stop-writes
        run: [./scripts/stop-writes.sh, --all]
        timeout: 5m
        retries: 2
        env:
          MODE: drain
        when: [planned]
  - name: app
    after: [db]
    vms: [app-1, app-2]
    post:
      - name: smoke
        shell: curl -fsS http://app-1/health
        optional: true
  - name: web
    vms: [web-1]
    pre:
      - name: settle
        wait: 30s
    post:
      - name: confirm
        manual: "Check: the shop answers on https://shop.example"
        timeout: 1h
        on_timeout: continue
"#;

#[test]
fn a_valid_plan_parses() {
    let p = plan(VALID_PLAN).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(p.drplan.value, 1);
    assert_eq!(p.name.value, "web-shop");
    // Spans survive: `name` is on line 3, its value at column 7.
    assert_eq!(
        (p.name.referenced.line(), p.name.referenced.column()),
        (3, 7)
    );
    assert_eq!(p.groups.value.len(), 3);
    let db = &p.groups.value[0];
    assert_eq!(db.after.as_deref().map(<[_]>::len), Some(0));
    assert!(matches!(&db.vms[0].value, VmEntryFile::Name(n) if n == "db-1"));
    assert!(matches!(&db.vms[1].value, VmEntryFile::Detailed(o) if o.name == "db-2" && o.optional));
    assert_eq!(db.pre[0].retries.as_ref().map(|r| r.value), Some(2));
    assert_eq!(db.pre[0].env.get("MODE").map(String::as_str), Some("drain"));
    assert_eq!(p.groups.value[2].after, None);
    assert_eq!(
        p.groups.value[2].post[0]
            .manual
            .as_ref()
            .map(|m| m.value.as_str()),
        Some("Check: the shop answers on https://shop.example")
    );
    assert_eq!(
        p.commit.map(|c| c.policy.value),
        Some(CommitPolicyName::AutoCommit)
    );
    assert_eq!(
        yaml::check_shape::<PlanFile>("plan.yaml", VALID_PLAN.as_bytes()),
        vec![]
    );
}

#[test]
fn every_problem_is_reported_at_once_and_located() {
    let text = r#"drplan: 1
name: web-shop
source: primary-vmm/gold
target: secondary-vmm/gold-dr
descripton: typo of description
colour: blue
defaults:
  retries: three
commit:
  policy: auto_commit
groups:
  - name: db
    vms: [db-1]
  - vms: [web-1]
    afterr: [db]
    pre:
      - name: stop
        run: ./stop.sh
        retries: -1
"#;
    let d = errors(text);
    assert_eq!(
        located(&d),
        vec![
            (codes::UNKNOWN_FIELD, 5, 1),
            (codes::UNKNOWN_FIELD, 6, 1),
            (codes::WRONG_TYPE, 8, 12),
            (codes::BAD_VALUE, 10, 11),
            (codes::MISSING_FIELD, 14, 5),
            (codes::UNKNOWN_FIELD, 15, 5),
            (codes::WRONG_TYPE, 18, 14),
            (codes::BAD_VALUE, 19, 18),
        ],
        "{d:#?}"
    );
    // A close match gets a did-you-mean; no match lists the allowed keys.
    assert_eq!(d[0].message, "unknown key `descripton` in the plan");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `description`?"));
    assert_eq!(d[1].message, "unknown key `colour` in the plan");
    let h = d[1].hint.as_deref().unwrap_or_default();
    for key in [
        "drplan",
        "name",
        "source",
        "target",
        "groups",
        "description",
    ] {
        assert!(h.contains(&format!("`{key}`")), "{h}");
    }
    assert_eq!(
        d[2].message,
        "`retries` must be a whole number (0 or more), but this is the text `three`"
    );
    assert_eq!(
        d[3].message,
        "`policy` must be one of `none`, `auto-commit` or `auto-rollback`, but this is `auto_commit`"
    );
    assert_eq!(d[3].hint.as_deref(), Some("did you mean `auto-commit`?"));
    assert_eq!(d[4].message, "this group is missing `name`");
    assert_eq!(d[5].hint.as_deref(), Some("did you mean `after`?"));
    assert_eq!(
        d[6].message,
        "`run` must be a list, but this is the text `./stop.sh`"
    );
    assert!(d[7].message.contains("`-1`"), "{}", d[7].message);
    for x in &d {
        assert_eq!(x.file, "plan.yaml");
        assert_eq!(x.severity, drplan_engine::plan::Severity::Error);
    }
}

#[test]
fn missing_required_fields_of_the_plan_are_all_listed() {
    let d = errors("drplan: 1\ndescription: only this\n");
    assert_eq!(
        located(&d),
        vec![
            (codes::MISSING_FIELD, 1, 1),
            (codes::MISSING_FIELD, 1, 1),
            (codes::MISSING_FIELD, 1, 1),
            (codes::MISSING_FIELD, 1, 1),
        ]
    );
    let mut msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    msgs.sort_unstable();
    assert_eq!(
        msgs,
        vec![
            "the plan is missing `groups`",
            "the plan is missing `name`",
            "the plan is missing `source`",
            "the plan is missing `target`",
        ]
    );
    // The hint quotes the field's documentation.
    assert!(
        d.iter()
            .any(|d| d.hint.as_deref().unwrap_or("").contains("site/cloud"))
    );
}

#[test]
fn duplicate_keys_are_reported_at_the_second_one() {
    let text = "drplan: 1\nname: a\nname: b\nsource: s/c\ntarget: t/c\ngroups:\n  - name: g\n    vms: [vm-1]\n    vms: [vm-2]\n";
    let d = errors(text);
    assert_eq!(
        located(&d),
        vec![(codes::SYNTAX, 3, 1), (codes::SYNTAX, 9, 5)],
        "{d:#?}"
    );
    assert_eq!(
        d[0].message,
        "`name` is given twice in the same mapping (first at line 2)"
    );
}

/// The shape check and the typed decoder must agree: a value the decoder
/// accepts must not be flagged, and a value it rejects must be.
#[test]
fn the_shape_check_agrees_with_the_decoder() {
    let base = |group: &str| {
        format!("drplan: 1\nname: p\nsource: s/c\ntarget: t/c\ngroups:\n  - name: g\n{group}")
    };
    // (group body, accepted?)
    let cases: &[(&str, bool)] = &[
        ("    vms: [a]\n", true),
        // A number or boolean where text is expected is its text...
        ("    vms: [a]\n    after: [123, true, 1.5]\n", true),
        // ...but not inside an untagged enum (a VM entry).
        ("    vms: [123]\n", false),
        // YAML 1.1 booleans: a bare `no` is not the VM "no", for either.
        ("    vms: [\"no\"]\n", true),
        ("    vms: [no]\n", false),
        ("    vms: [{name: 123}]\n", false),
        ("    vms: [{name: x, optional: yes}]\n", true),
        ("    vms: [{name: x, optional: maybe}]\n", false),
        ("    vms: [{nam: x}]\n", false),
        // serde reads a struct from a positional list; so does the check.
        ("    vms: [[a]]\n", true),
        ("    vms: [[a, true]]\n", true),
        // Quoted numbers are numbers to the decoder.
        ("    pre: [{name: s, wait: 1s, retries: \"3\"}]\n", true),
        ("    pre: [{name: s, wait: 1s, retries: 0x10}]\n", true),
        ("    pre: [{name: s, wait: 1s, retries: 3.5}]\n", false),
        (
            "    pre: [{name: s, wait: 1s, retries: 4294967296}]\n",
            false,
        ),
        (
            "    pre: [{name: s, wait: 1s, retries: 4294967295}]\n",
            true,
        ),
        ("    pre: [{name: s, wait: 1s, optional: \"true\"}]\n", true),
        ("    pre: [{name: s, wait: 1s, optional: 1}]\n", false),
        // Null: fine for optional values, not for required text.
        ("    after: ~\n", true),
        ("    after:\n", true),
        ("    pre: [{name: ~, wait: 1s}]\n", false),
        ("    pre: [{name: \"\", wait: 1s}]\n", true),
        ("    pre: [{name: s, env: {A: 1, B: true}}]\n", true),
        ("    pre: [{name: s, env: {A: [1]}}]\n", false),
        ("    pre: [{name: s, env: [A]}]\n", false),
        ("    vms: a\n", false),
    ];
    for (group, accepted) in cases {
        let text = base(group);
        let parsed = plan(&text);
        let shape = yaml::check_shape::<PlanFile>("plan.yaml", text.as_bytes());
        assert_eq!(
            parsed.is_ok(),
            *accepted,
            "decode of {group:?}: {parsed:#?}"
        );
        assert_eq!(
            shape.is_empty(),
            *accepted,
            "shape of {group:?}: {shape:#?}"
        );
        if let Err(d) = parsed {
            assert!(d.iter().all(|d| d.line >= 6), "{group:?}: {d:#?}");
        }
    }
}

#[test]
fn a_vm_named_like_a_boolean_gets_a_quoting_hint() {
    let d = errors(
        "drplan: 1\nname: p\nsource: s/c\ntarget: t/c\ngroups:\n  - name: g\n    vms: [web, on]\n",
    );
    assert_eq!(located(&d), vec![(codes::WRONG_TYPE, 7, 16)], "{d:#?}");
    assert_eq!(
        d[0].message,
        "each VM must be text or a mapping of keys to values, but this is the yes/no value `on`"
    );
    assert_eq!(
        d[0].hint.as_deref(),
        Some("put it in quotes to make it text: \"on\"")
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_what_was_found() {
    let d = errors(
        "drplan: one\nname: [a]\nsource: s/c\ntarget: t/c\ngroups: {}\ncommit: 5\ntest:\n  network: {a: b}\n",
    );
    let msgs: Vec<(u64, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(
        msgs,
        vec![
            (
                1,
                "`drplan` must be a whole number (0 or more), but this is the text `one`"
            ),
            (2, "`name` must be text, but this is a list"),
            (5, "`groups` must be a list, but this is a mapping"),
            (
                6,
                "`commit` must be a mapping of keys to values, but this is the number `5`"
            ),
            (8, "`network` must be text, but this is a mapping"),
        ]
    );
    assert!(d.iter().all(|d| d.code == codes::WRONG_TYPE));
}

#[test]
fn an_error_only_the_decoder_sees_is_still_located() {
    // A `!!binary` tag the schema walk has no notion of: the decoder
    // rejects it and its error keeps its position.
    let text = "drplan: 1\nname: !!binary /w==\nsource: s/c\ntarget: t/c\ngroups: []\n";
    let d = errors(text);
    assert_eq!(located(&d), vec![(codes::WRONG_TYPE, 2, 16)], "{d:#?}");
    assert!(d[0].message.contains("binary"), "{d:#?}");
}

const VALID_FABRIC: &str = r#"drplan-fabric: 1
sites:
  - name: primary-vmm
    clouds:
      - name: gold
        hosts:
          - { name: hv-01, os: ws2012r2 }
    storage: [fast]
  - name: secondary-vmm
    clouds:
      - name: gold-dr
        hosts:
          - { name: hv-11, os: ws2012r2 }
networks:
  - site: primary-vmm
    name: corp
    subnets:
      - { name: app, cidr: 10.1.2.0/24 }
  - site: secondary-vmm
    name: corp-dr
    subnets: [{ name: app }]
policies:
  - name: gold-policy
    host_os: ws2012r2
    copy_frequency: 5m
    retention_hours: 24
    app_consistent_frequency: 4h
    compression: true
    authentication: certificate
    port: 8084
    initial_replication:
      method: network
      start: now
pairings:
  - source: primary-vmm/gold
    target: secondary-vmm/gold-dr
    policies: [gold-policy]
network_mappings:
  - { source: primary-vmm/corp, target: secondary-vmm/corp-dr }
vms:
  - name: db-1
    site: primary-vmm
    cloud: gold
    host: hv-01
    nics: [{ network: corp, subnet: app, ip: 10.1.2.10 }]
    disk_gb: 120
    protection: protected
"#;

#[test]
fn a_valid_inventory_parses() {
    let f = yaml::parse::<FabricFile>("fabric.yaml", VALID_FABRIC.as_bytes())
        .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(f.drplan_fabric.value, 1);
    assert_eq!(f.sites.len(), 2);
    assert_eq!(f.vms[0].disk_gb, Some(120));
    assert_eq!(f.policies[0].port.as_ref().map(|p| p.value), Some(8084));
}

#[test]
fn inventory_problems_are_all_reported() {
    let text = "drplan-fabric: 1\nsites:\n  - name: a\n    cloud: []\nvms:\n  - name: v\n    site: a\n    cloud: c\n    disk_gb: -5\n";
    let d = yaml::parse::<FabricFile>("fabric.yaml", text.as_bytes()).unwrap_err();
    assert_eq!(
        located(&d),
        vec![
            (codes::UNKNOWN_FIELD, 4, 5),
            (codes::MISSING_FIELD, 6, 5),
            (codes::MISSING_FIELD, 6, 5),
            (codes::BAD_VALUE, 9, 14),
        ],
        "{d:#?}"
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `clouds`?"));
    assert_eq!(d[1].message, "this VM is missing `host`");
    assert_eq!(d[2].message, "this VM is missing `protection`");
}

/// A file with shape problems that can be set aside (unknown keys, bad
/// values of optional keys) is still decoded without them, so semantic
/// validation can report its problems in the same run.
#[test]
fn lenient_parse_sets_aside_unknown_keys_and_keeps_positions() {
    let text = "drplan: 1\nname: p\nsource: a/b\ntarget: c/d\nbogus: {x: 1}\ngroups:\n  - {name: g, colour: red, vms: [v1]}\n  - name: h\n    pre:\n      - name: s\n        retries: many\n        run: [\"true\"]\n";
    let (plan, diags) = yaml::parse_lenient::<PlanFile>("p.yaml", text.as_bytes());
    let found: Vec<(&str, u64, u64)> = diags.iter().map(|d| (d.code, d.line, d.column)).collect();
    assert_eq!(
        found,
        vec![("DP0201", 5, 1), ("DP0201", 7, 15), ("DP0202", 11, 18)],
        "{diags:#?}"
    );
    let plan = plan.expect("every problem can be set aside, so the rest decodes");
    let groups = &plan.groups.value;
    assert_eq!(groups.len(), 2);
    // Positions after the cut-out text are unchanged.
    assert_eq!(
        (
            groups[1].name.referenced.line(),
            groups[1].name.referenced.column()
        ),
        (8, 11)
    );
    assert_eq!(
        groups[1].pre[0].retries, None,
        "the bad optional value is set aside"
    );
    assert_eq!(groups[0].vms.len(), 1);
}

/// A missing required key cannot be set aside: no value, only the shape
/// problems.
#[test]
fn lenient_parse_gives_up_on_missing_required_keys() {
    let text = "drplan: 1\nname: p\nsource: a/b\ngroups: []\nextra: 1\n";
    let (plan, diags) = yaml::parse_lenient::<PlanFile>("p.yaml", text.as_bytes());
    assert!(plan.is_none());
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert!(
        codes.contains(&"DP0203") && codes.contains(&"DP0201"),
        "{diags:#?}"
    );
}

#[test]
fn a_tab_used_for_indentation_is_reported_at_the_tab() {
    // After a plain scalar the parser complains at the end of the line
    // before ("while scanning a plain scalar, found a tab"); after a block
    // indicator at the tab. Both are reported where the tab is, CRLF too.
    for (text, at) in [
        (
            "drplan: 1\nname: p\ngroups:\n  - name: g\n\tvms: [x]\n",
            (5, 1),
        ),
        (
            "drplan: 1\nname: p\ngroups:\n  - name: g\n  \tvms: [x]\n",
            (5, 3),
        ),
        ("drplan: 1\r\ngroups:\r\n\t- name: g\r\n", (3, 1)),
        (
            "drplan: 1\nname: p\ngroups:\n  - name: g\n    vms:\n\n    \t- x\n",
            (7, 5),
        ),
    ] {
        let d = errors(text);
        assert_eq!(
            located(&d),
            [(codes::SYNTAX, at.0, at.1)],
            "{text:?}: {d:?}"
        );
        assert!(
            d[0].message.contains("tab is used for indentation"),
            "{d:?}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_mapping_is_a_type_error() {
    for (text, what) in [
        ("- a\n- b\n", "a list"),
        ("hello\n", "the text `hello`"),
        ("42\n", "the number `42`"),
    ] {
        let d = errors(text);
        assert_eq!(located(&d), [(codes::WRONG_TYPE, 1, 1)], "{text:?}");
        assert!(
            d[0].message.contains(&format!(
                "the plan must be a mapping of keys to values, but this is {what}"
            )),
            "{d:?}"
        );
        let d = yaml::parse::<FabricFile>("f.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(located(&d), [(codes::WRONG_TYPE, 1, 1)], "{text:?}");
        assert!(d[0].message.starts_with("the inventory must be"), "{d:?}");
    }
    // A struct nested in the plan, written as a list, too.
    let d =
        errors("drplan: 1\nname: p\nsource: a/b\ntarget: c/d\ntest: [a]\ngroups: [{name: g}]\n");
    assert_eq!(located(&d), [(codes::WRONG_TYPE, 5, 7)]);
}

#[test]
fn a_key_longer_than_yaml_allows_is_named_as_such() {
    let text = format!("drplan: 1\n{}: 1\n", "k".repeat(300_000));
    let d = errors(&text);
    assert_eq!(located(&d), [(codes::SYNTAX, 2, 1)], "{d:?}");
    assert!(d[0].message.contains("1024 characters"), "{d:?}");
}

#[test]
fn a_misspelt_required_key_is_one_problem() {
    let (_, d) = yaml::parse_lenient::<PlanFile>(
        "p.yaml",
        b"drplan: 1\nname: p\nsource: a/b\ntarget: c/d\ngroups:\n  - nmae: g\n    vms: [x]\n",
    );
    assert_eq!(located(&d), [(codes::UNKNOWN_FIELD, 6, 5)], "{d:?}");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `name`?"));
}
