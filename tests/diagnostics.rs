//! Golden diagnostics: every plan in `tests/plans/invalid/` and every
//! inventory in `tests/plans/invalid-fabric/` is loaded the way the CLI
//! loads it, and the rendered diagnostics (`file:line:col: error[CODE]:
//! message` plus hints) are compared with a reviewed snapshot in
//! `tests/snapshots/`. Each file must yield at least one error, and the
//! valid fixtures none at all.
//!
//! Update with `INSTA_UPDATE=always cargo nextest run -p drplan --test
//! diagnostics` (or `cargo insta review`) and review the `.snap` files by
//! eye: the point is that line:col and wording are right.

use std::path::{Path, PathBuf};

use drplan_engine::plan::diag::codes;
use drplan_engine::plan::{self, Diagnostic, Severity};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.yaml` files of a fixture folder, sorted so runs are deterministic.
fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Diagnostics as a user sees them, with the checkout's path removed so the
/// snapshot does not depend on where the repository lives.
fn render(diags: &[Diagnostic]) -> String {
    let prefix = format!("{}/", root().display());
    diags
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn assert_has_error(path: &Path, diags: &[Diagnostic]) {
    for d in diags {
        let (_, _, severities) = codes::ALL
            .iter()
            .find(|(c, _, _)| *c == d.code)
            .unwrap_or_else(|| panic!("{}: {} is not in codes::ALL", path.display(), d.code));
        assert!(
            severities.contains(&d.severity),
            "{}: {} is reported as a {}, which the code table does not allow: {d}",
            path.display(),
            d.code,
            d.severity
        );
    }
    assert!(
        diags.iter().any(|d| d.severity == Severity::Error),
        "{} is in an invalid corpus but yields no error:\n{}",
        path.display(),
        render(diags)
    );
}

#[test]
fn invalid_plans() {
    let files = fixtures("tests/plans/invalid");
    assert!(files.len() >= 25, "only {} invalid plans", files.len());
    for path in files {
        let loaded = plan::load(&path, None);
        assert_has_error(&path, &loaded.diagnostics);
        assert!(
            loaded.plan.is_none(),
            "{}: a plan with errors",
            path.display()
        );
        insta::assert_snapshot!(stem(&path), render(&loaded.diagnostics));
    }
}

#[test]
fn invalid_fabrics() {
    let files = fixtures("tests/plans/invalid-fabric");
    assert!(files.len() >= 8, "only {} invalid inventories", files.len());
    for path in files {
        let (inventory, _, diags) = plan::load_fabric(&path);
        assert_has_error(&path, &diags);
        assert!(
            inventory.is_none(),
            "{}: an inventory with errors",
            path.display()
        );
        insta::assert_snapshot!(format!("fabric-{}", stem(&path)), render(&diags));
    }
}

/// The inventory the invalid plans cross-check against is itself valid, and
/// a plan written against it passes, so the errors in the corpus come from
/// the plans' own mistakes.
#[test]
fn valid_fixtures_have_no_diagnostics() {
    let (inventory, _, diags) = plan::load_fabric(&root().join("tests/plans/fabric.yaml"));
    assert_eq!(render(&diags), "");
    let inventory = inventory.expect("a valid inventory");
    assert_eq!(inventory.vms.len(), 8);

    let loaded = plan::load(&root().join("tests/plans/valid.yaml"), None);
    assert_eq!(render(&loaded.diagnostics), "");
    let plan = loaded.plan.expect("a valid plan");
    assert_eq!(plan.groups.len(), 3);
    assert!(
        loaded.inventory.is_some(),
        "the plan's `fabric:` was loaded"
    );
}

/// Fixtures holding exactly one mistake: each gets exactly one diagnostic,
/// no follow-up caused by the first ("does nothing", "no VMs", "missing"
/// under "unknown key").
#[test]
fn one_mistake_one_diagnostic() {
    for name in [
        "tab-indentation",
        "inventory-file-missing",
        "whole-file-is-a-list",
        "misspelt-step-key",
        "misspelt-group-name-key",
        "vms-not-a-list",
        "shape-misnamed-field",
    ] {
        let path = root().join(format!("tests/plans/invalid/{name}.yaml"));
        let loaded = plan::load(&path, None);
        assert_eq!(
            loaded.diagnostics.len(),
            1,
            "{name}:\n{}",
            render(&loaded.diagnostics)
        );
    }
}

/// docs/plan-format.md's code table and the tool agree on every code, its
/// name and its severity: neither can gain, lose or change one alone.
#[test]
fn the_documented_code_table_is_the_tools() {
    let doc = std::fs::read_to_string(root().join("docs/plan-format.md")).unwrap();
    let table = doc
        .split("## Diagnostic codes")
        .nth(1)
        .expect("docs/plan-format.md has a `## Diagnostic codes` section");
    let mut documented = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| DP")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", code, name, severity, meaning, ""]
        let (code, name, severity) = (cells[1], cells[2].trim_matches('`'), cells[3]);
        let mut severities = Vec::new();
        for (word, s) in [("error", Severity::Error), ("warning", Severity::Warning)] {
            if severity.contains(word) {
                severities.push(s);
            }
        }
        documented.push((code.to_string(), name.to_string(), severities));
    }
    let tool: Vec<(String, String, Vec<Severity>)> = codes::ALL
        .iter()
        .map(|(c, n, s)| (c.to_string(), n.to_string(), s.to_vec()))
        .collect();
    assert_eq!(
        documented, tool,
        "docs/plan-format.md's table differs from diag::codes::ALL"
    );
}
