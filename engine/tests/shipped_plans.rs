//! The plans and inventories shipped in `plans/` are examples people copy:
//! they must load without a single error or warning, start with the schema
//! comment editors use, and (for the generated large plan) be exactly what
//! the generator produces. The example scripts must run anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use drplan_engine::plan::fabric_file::FabricFile;
use drplan_engine::plan::file::PlanFile;
use drplan_engine::plan::generate::{self, LARGE_FABRIC_FILE};
use drplan_engine::plan::{self, FailoverKind, NodeKind, Operation, Phase};

/// The plans shipped in `plans/`, each with the inventory its `fabric:` names.
const PLANS: [(&str, &str); 3] = [
    ("three-tier.yaml", "fabric.yaml"),
    ("diamond.yaml", "fabric.yaml"),
    ("large.yaml", LARGE_FABRIC_FILE),
];
const INVENTORIES: [&str; 2] = ["fabric.yaml", LARGE_FABRIC_FILE];
const SCRIPTS: [&str; 4] = [
    "quiesce-db.sh",
    "update-dns.sh",
    "smoke-test.sh",
    "cleanup-test-dns.sh",
];

const REGENERATE: &str =
    "DRPLAN_REGENERATE=1 cargo nextest run -p drplan-engine --test shipped_plans";

fn plans_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")
}

fn read(name: &str) -> String {
    let path = plans_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn render(diags: &[plan::Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect::<String>()
}

#[test]
fn every_file_starts_with_its_schema_comment() {
    for (plan, _) in PLANS {
        let text = read(plan);
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=./plan.schema.json"),
            "{plan}: line 1 must point editors at the plan schema"
        );
    }
    for fabric in INVENTORIES {
        let text = read(fabric);
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=./fabric.schema.json"),
            "{fabric}: line 1 must point editors at the inventory schema"
        );
    }
}

#[test]
fn every_file_parses() {
    for (plan, fabric) in PLANS {
        let parsed: PlanFile = plan::yaml::parse(plan, read(plan).as_bytes())
            .unwrap_or_else(|d| panic!("{plan} does not parse:\n{}", render(&d)));
        assert_eq!(parsed.drplan.value, 1, "{plan}");
        assert_eq!(
            parsed.fabric.as_ref().map(|f| f.value.as_str()),
            Some(fabric),
            "{plan} names the wrong inventory"
        );
        assert!(!parsed.groups.value.is_empty(), "{plan} has no groups");
    }
    for fabric in INVENTORIES {
        let parsed: FabricFile = plan::yaml::parse(fabric, read(fabric).as_bytes())
            .unwrap_or_else(|d| panic!("{fabric} does not parse:\n{}", render(&d)));
        assert_eq!(parsed.drplan_fabric.value, 1, "{fabric}");
        assert!(!parsed.vms.is_empty(), "{fabric} has no VMs");
    }
}

#[test]
fn every_plan_loads_without_diagnostics() {
    for (plan, _) in PLANS {
        let loaded = plan::load(&plans_dir().join(plan), None);
        assert!(
            loaded.diagnostics.is_empty(),
            "{plan} must load without errors or warnings:\n{}",
            render(&loaded.diagnostics)
        );
    }
}

#[test]
fn every_plan_validates() {
    for (plan, _) in PLANS {
        let loaded = plan::load(&plans_dir().join(plan), None);
        assert!(
            loaded.inventory.is_some(),
            "{plan}: the inventory did not validate"
        );
        assert!(loaded.plan.is_some(), "{plan}: the plan did not validate");
    }
}

fn load_ok(name: &str) -> plan::Plan {
    let loaded = plan::load(&plans_dir().join(name), None);
    assert!(
        loaded.diagnostics.is_empty(),
        "{name}:\n{}",
        render(&loaded.diagnostics)
    );
    loaded
        .plan
        .unwrap_or_else(|| panic!("{name}: the plan did not validate"))
}

/// The shipped plans mean what their comments say: each `when` selects the
/// steps intended for each failover kind.
#[test]
fn three_tier_steps_follow_their_when() {
    let plan = load_ok("three-tier.yaml");
    let steps = |kind| -> Vec<String> {
        plan::compile(&plan, Operation::failover(kind))
            .nodes
            .into_iter()
            .filter(|n| matches!(n.kind, NodeKind::Step(_)))
            .map(|n| n.key)
            .collect()
    };
    assert_eq!(
        steps(FailoverKind::Planned),
        [
            "database/pre/quiesce",
            "application/post/verify-health",
            "application/post/settle",
            "web/post/update-dns",
            "web/post/smoke-test"
        ]
    );
    assert_eq!(
        steps(FailoverKind::Unplanned),
        [
            "application/post/verify-health",
            "application/post/settle",
            "web/post/update-dns",
            "web/post/smoke-test"
        ]
    );
    assert_eq!(
        steps(FailoverKind::Test),
        [
            "application/post/verify-health",
            "application/post/settle",
            "web/post/register-test-dns",
            "web/post/smoke-test"
        ]
    );
    let cleanup = plan::compile(&plan, Operation::TestCleanup);
    let last = cleanup.nodes.last().expect("cleanup has nodes");
    assert_eq!(last.key, "cleanup/remove-test-dns");
    assert_eq!(last.phase, Phase::Cleanup);
    assert_eq!(plan.test.max_duration.as_secs(), 7 * 24 * 3600);
    assert_eq!(plan.test.network.as_deref(), Some("test-bubble"));
}

/// The diamond really is one: `frontend` waits for both arms, the arms wait
/// only for `storage`, and `monitoring` starts at once.
#[test]
fn diamond_has_its_shape() {
    let plan = load_ok("diamond.yaml");
    let index = |name: &str| plan.groups.iter().position(|g| g.name == name).unwrap();
    let after = |name: &str| plan.groups[index(name)].after.clone();
    assert_eq!(after("storage"), Vec::<usize>::new());
    assert_eq!(after("auth"), [index("storage")]);
    assert_eq!(after("catalog"), [index("storage")]);
    let mut frontend = after("frontend");
    frontend.sort_unstable();
    assert_eq!(frontend, [index("auth"), index("catalog")]);
    assert_eq!(after("monitoring"), Vec::<usize>::new());

    // Failover phases: the groups boot in that shape (the Shutdown phase
    // runs it backwards, the Failover phase has no group order).
    let exec = plan::compile(&plan, Operation::failover(FailoverKind::Planned));
    let id = |key: &str| exec.node(key).unwrap_or_else(|| panic!("no {key}")).id;
    let deps = |key: &str| {
        exec.node(key)
            .unwrap_or_else(|| panic!("no {key}"))
            .deps
            .clone()
    };
    assert_eq!(
        deps("monitoring/vm/mon-01/start-replica"),
        [id("monitoring/vm/mon-01/failover")],
        "monitoring must not wait"
    );
    assert_eq!(
        deps("storage/vm/stor-01/start-replica"),
        [id("storage/vm/stor-01/failover")],
        "storage must not wait"
    );
    // The arms start after storage's `settle` wait, not after each other.
    let settle = id("storage/post/settle");
    assert_eq!(
        deps("auth/vm/auth-01/start-replica"),
        [id("auth/vm/auth-01/failover"), settle]
    );
    assert_eq!(
        deps("catalog/pre/announce"),
        [
            id("catalog/vm/catalog-01/failover"),
            id("catalog/vm/catalog-02/failover"),
            settle
        ]
    );
    // Shut down backwards: the front end (and monitoring) at once, the
    // arms after the front end, storage last.
    assert!(deps("frontend/vm/front-01/shutdown-primary").is_empty());
    assert!(deps("monitoring/vm/mon-01/shutdown-primary").is_empty());
    let front = [
        id("frontend/vm/front-01/shutdown-primary"),
        id("frontend/vm/front-02/shutdown-primary"),
    ];
    assert_eq!(deps("auth/vm/auth-02/shutdown-primary"), front);
    assert_eq!(deps("catalog/vm/catalog-01/shutdown-primary"), front);
}

#[test]
fn large_plan_is_the_generators_output() {
    let generated = generate::shipped_large_plan();
    let dir = plans_dir();
    if std::env::var_os("DRPLAN_REGENERATE").is_some_and(|v| v == "1") {
        std::fs::write(dir.join("large.yaml"), &generated.plan_yaml).unwrap();
        std::fs::write(dir.join(LARGE_FABRIC_FILE), &generated.fabric_yaml).unwrap();
    }
    // Compared as whole strings, but reported by first differing line: a
    // 1,000-VM file is useless in an assertion message.
    for (name, want) in [
        ("large.yaml", &generated.plan_yaml),
        (LARGE_FABRIC_FILE, &generated.fabric_yaml),
    ] {
        let have = read(name);
        if &have != want {
            let line = have
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| have.lines().count().min(want.lines().count()))
                + 1;
            panic!(
                "plans/{name} differs from the generator's output from line {line} on; \
                 regenerate it with `{REGENERATE}` and commit the result"
            );
        }
    }
    let vms: usize = generated.plan.groups.iter().map(|g| g.vms.len()).sum();
    assert!(vms >= 1000, "the large plan has only {vms} VMs");
}

/// The generator builds the validated plan independently of the validator;
/// the two must agree on every resolved default and dependency.
#[test]
fn large_plan_validates_to_the_generators_model() {
    let want = generate::shipped_large_plan().plan;
    let have = load_ok("large.yaml");
    assert_eq!(have.name, want.name);
    assert_eq!(have.description, want.description);
    assert_eq!(have.source, want.source);
    assert_eq!(have.target, want.target);
    assert_eq!(have.test, want.test);
    assert_eq!(have.commit, want.commit);
    assert_eq!(have.groups.len(), want.groups.len());
    for (h, w) in have.groups.iter().zip(&want.groups) {
        assert_eq!(h, w, "group {}", w.name);
    }
}

#[cfg(unix)]
#[test]
fn scripts_are_executable() {
    use std::os::unix::fs::PermissionsExt;
    for script in SCRIPTS {
        let path = plans_dir().join("scripts").join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 == 0o111,
            "{script} is not executable ({mode:o})"
        );
        assert!(
            read(&format!("scripts/{script}")).starts_with("#!/bin/sh\n"),
            "{script} must be a POSIX sh script"
        );
    }
}

/// Run a script the way drplan does: from the plan's directory, with the
/// DRPLAN_* environment. Returns (success, stdout, the DRPLAN_OUTPUT text).
fn run_script(tmp: &Path, args: &[&str], key: &str, kind: &str) -> (bool, String, String) {
    let output_file = tmp.join(format!("output-{}", key.replace('/', "_")));
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(plans_dir())
        .env("TMPDIR", tmp)
        .env("DRPLAN_JOB_ID", "job-test")
        .env("DRPLAN_FAILOVER_KIND", kind)
        .env("DRPLAN_DIRECTION", "forward")
        .env("DRPLAN_GROUP", "web")
        .env("DRPLAN_VMS", r#"["web-01","web-02"]"#)
        .env("DRPLAN_IDEMPOTENCY_KEY", key)
        .env("DRPLAN_OUTPUT", &output_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    let output = std::fs::read_to_string(&output_file).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        output,
    )
}

#[cfg(unix)]
#[test]
fn scripts_succeed_and_stay_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["scripts/quiesce-db.sh", "--database", "orders"],
            "quiesced_database=orders",
            "planned",
        ),
        (
            &["scripts/update-dns.sh", "--zone", "orders.example"],
            "dns_updated=web-01,web-02",
            "planned",
        ),
        (
            &["scripts/smoke-test.sh", "--url", "https://orders.example/"],
            "smoke_vms_checked=2",
            "test",
        ),
        (
            &[
                "scripts/cleanup-test-dns.sh",
                "--zone",
                "orders.test.example",
            ],
            "test_dns_records_removed=2",
            "test",
        ),
    ];
    for (args, expect, kind) in cases {
        let key = format!("job-test/{}/1", args[0]);
        let (ok, stdout, output) = run_script(tmp.path(), args, &key, kind);
        assert!(ok, "{} failed:\n{stdout}", args[0]);
        assert!(
            output.contains(expect),
            "{}: output was {output:?}",
            args[0]
        );
        // The same key again: the work is not redone, and the outputs are
        // reported again so a retried step still has them.
        let (ok, stdout, again) = run_script(tmp.path(), args, &key, kind);
        assert!(ok, "{} failed on a repeat:\n{stdout}", args[0]);
        assert!(again.matches(expect).count() == 2, "{}: {again:?}", args[0]);
        if args[0] != "scripts/smoke-test.sh" {
            assert!(stdout.contains("already done"), "{}: {stdout}", args[0]);
        }
    }
    // The cleanup script refuses a production zone.
    let (ok, _, _) = run_script(
        tmp.path(),
        &["scripts/cleanup-test-dns.sh", "--zone", "orders.example"],
        "job-test/refuse/1",
        "test",
    );
    assert!(!ok, "cleanup-test-dns must refuse a production zone");
}
