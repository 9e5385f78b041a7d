//! No cliffs, through the real binary: a 100,000-group chain validates and
//! draws; a 50,000-group cycle and a 300 KB line give short, located
//! output; a deep chain simulates.
//!
//! The binary's main thread has the platform's ordinary stack: a check
//! that recursed once per group (the cycle search did) died here with
//! "has overflowed its stack" at about 90,000 groups.

use std::path::Path;

use drplan_engine::plan::generate::{CHAIN_FABRIC_FILE, GeneratedPlan, chain_plan};

mod support;
use support::{all, drplan, expect_code, json, out};

/// Write `g`'s plan (as `chain.yaml`) and inventory into `dir`.
fn write(dir: &Path, g: &GeneratedPlan) -> String {
    let plan = dir.join("chain.yaml");
    std::fs::write(&plan, &g.plan_yaml).unwrap();
    std::fs::write(dir.join(CHAIN_FABRIC_FILE), &g.fabric_yaml).unwrap();
    plan.to_str().unwrap().to_string()
}

#[test]
fn a_100000_group_chain_validates_and_draws() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let g = chain_plan(100_000);
    let plan = write(dir.path(), &g);

    let o = drplan(&["validate", &plan]);
    expect_code(&o, 0);
    assert!(
        out(&o).contains("valid (100000 groups, 100000 VMs, 0 steps)"),
        "{}",
        all(&o)
    );

    let first = &g.plan.groups[0].name;
    let last = &g.plan.groups[99_999].name;
    for format in ["dot", "mermaid"] {
        let o = drplan(&["graph", &plan, "--format", format]);
        expect_code(&o, 0);
        let text = out(&o);
        assert!(text.contains(first.as_str()) && text.contains(last.as_str()));
    }
}

#[test]
fn a_deep_chain_simulates() {
    // The simulated engine costs about 1.5 ms per VM operation in a debug
    // build (every event crosses threads, as in a real run), so this test
    // keeps to 5,000 groups (20,000 VM operations, in a chain); the depth
    // of the plan is not what limits it. A 100,000-group chain was
    // simulated by hand (`drplan simulate --failover planned`: succeeded,
    // 400,000 steps).
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let g = chain_plan(5_000);
    let plan = write(dir.path(), &g);
    let o = drplan(&[
        "simulate",
        &plan,
        "--failover",
        "planned",
        "--time-scale",
        "0.001",
        "--format",
        "json",
    ]);
    expect_code(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["status"], "succeeded", "{}", all(&o));
    let steps = doc["steps"].as_array().unwrap();
    assert!(steps.len() >= 4 * 5_000, "{}", steps.len());
    assert!(steps.iter().all(|s| s["state"] == "succeeded"));
}

#[test]
fn huge_cycles_and_lines_give_short_located_output() {
    let _serial = support::serial();
    let dir = tempfile::tempdir().unwrap();
    let head = "drplan: 1\nname: p\nsource: a/b\ntarget: c/d\ngroups:\n";

    // 50,000 groups in one ring: the first comes after the last.
    let mut ring = format!("{head}  - name: g0\n    after: [g49999]\n    vms: [v0]\n");
    for i in 1..50_000 {
        ring.push_str(&format!("  - name: g{i}\n    vms: [v{i}]\n"));
    }
    // A 300 KB line: a list of 40,000 VMs with the first one again at its end.
    let vms: String = (0..40_000).map(|i| format!("v{i}, ")).collect();
    let long = format!("{head}  - name: g\n    vms: [{vms}v0]\n");
    // A 300 KB name.
    let name = format!("{head}  - name: {}\n    vms: [v]\n", "n".repeat(300_000));

    for (file, text, code, line) in [
        ("ring.yaml", ring, "DP0308", 7),
        ("long.yaml", long, "DP0304", 7),
        ("name.yaml", name, "DP0301", 6),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let o = drplan(&["validate", p]);
        expect_code(&o, 1);
        let shown = all(&o);
        assert!(
            shown.len() < 3_000,
            "{file}: {} bytes:\n{shown}",
            shown.len()
        );
        assert!(shown.contains(code), "{file}: {shown}");
        assert!(
            shown.contains(&format!("{p}:{line}:")),
            "{file}: located: {shown}"
        );

        let o = drplan(&["validate", p, "--format", "json"]);
        expect_code(&o, 1);
        assert!(out(&o).len() < 3_000, "{file}: {} bytes", out(&o).len());
        let d = &json(&o)["plans"][0]["diagnostics"][0];
        assert_eq!(d["code"], code, "{file}");
        assert_eq!(d["line"], line, "{file}");
    }

    // 20,000 mistakes: the first 200 are rendered, the rest counted; the
    // summary counts every one, and JSON lists every one.
    let mut many = head.to_string();
    for i in 0..20_000 {
        many.push_str(&format!("  - name: g_{i}!\n    vms: [v{i}]\n"));
    }
    let path = dir.path().join("many.yaml");
    std::fs::write(&path, many).unwrap();
    let p = path.to_str().unwrap();
    let o = drplan(&["validate", p]);
    expect_code(&o, 1);
    let shown = all(&o);
    assert!(shown.len() < 200_000, "{} bytes", shown.len());
    assert_eq!(shown.matches("DP0301").count(), 200);
    assert!(
        shown.contains("… and 19800 more problems not shown"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{p}: 20000 errors, 0 warnings")),
        "{shown}"
    );
    let o = drplan(&["validate", p, "--format", "json"]);
    let doc = json(&o);
    assert_eq!(
        doc["plans"][0]["diagnostics"].as_array().unwrap().len(),
        20_000
    );
    assert_eq!(doc["plans"][0]["errors"], 20_000);
}
