//! The committed JSON Schemas under `plans/` must match what the engine
//! generates, and must be useful to an editor (a declared draft, a title,
//! a description on every property for hover help, unknown keys refused).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const REGENERATE: &str = "regenerate with:\n  \
     cargo run -q -- schema plan > plans/plan.schema.json\n  \
     cargo run -q -- schema fabric > plans/fabric.schema.json";

fn committed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}\n{REGENERATE}", path.display()))
}

/// What `drplan schema KIND` prints, run through the real binary so the
/// regeneration command in the message is the one being tested.
fn generated(kind: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_drplan"))
        .args(["schema", kind])
        .output()
        .expect("run drplan");
    assert!(out.status.success(), "drplan schema {kind} failed: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 schema")
}

fn check_fresh(kind: &str, file: &str) {
    let gen_text = generated(kind);
    let committed_text = committed(file);
    if gen_text != committed_text {
        let first_diff = gen_text
            .lines()
            .zip(committed_text.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_string(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!("plans/{file} is stale ({first_diff}); {REGENERATE}");
    }
}

#[test]
fn plan_schema_is_fresh() {
    check_fresh("plan", "plan.schema.json");
}

#[test]
fn fabric_schema_is_fresh() {
    check_fresh("fabric", "fabric.schema.json");
}

#[test]
fn schema_defaults_to_plan() {
    let out = Command::new(env!("CARGO_BIN_EXE_drplan"))
        .arg("schema")
        .output()
        .expect("run drplan");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated("plan"));
    assert!(
        out.stdout.ends_with(b"}\n"),
        "pretty JSON with a trailing newline"
    );
}

/// Every object schema (the root and each `$defs` entry) with properties:
/// each property has a description, and unknown keys are refused, which is
/// what makes an editor flag a typo the way `drplan validate` does.
fn check_editor_friendly(schema: &Value, title: &str) {
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "the draft editors are told to use"
    );
    assert_eq!(schema["title"], title);
    assert!(
        schema["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let mut objects = vec![("(root)".to_string(), schema)];
    if let Some(defs) = schema["$defs"].as_object() {
        objects.extend(defs.iter().map(|(k, v)| (k.clone(), v)));
    }
    let mut checked = 0;
    for (name, obj) in objects {
        assert!(
            obj["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name} has no description (add a doc comment)"
        );
        let Some(props) = obj["properties"].as_object() else {
            continue;
        };
        assert_eq!(
            obj["additionalProperties"],
            Value::Bool(false),
            "{name} accepts unknown keys (add #[serde(deny_unknown_fields)])"
        );
        for (prop, p) in props {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{name}.{prop} has no description (add a doc comment)"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "only {checked} properties found: schema shape changed?"
    );
}

#[test]
fn plan_schema_is_editor_friendly() {
    let schema: Value = serde_json::from_str(&committed("plan.schema.json")).unwrap();
    check_editor_friendly(&schema, "drplan recovery plan (format v1)");
    let required = schema["required"].as_array().unwrap();
    for key in ["drplan", "name", "source", "target", "groups"] {
        assert!(
            required.contains(&Value::from(key)),
            "`{key}` must be required"
        );
    }
}

#[test]
fn fabric_schema_is_editor_friendly() {
    let schema: Value = serde_json::from_str(&committed("fabric.schema.json")).unwrap();
    check_editor_friendly(&schema, "drplan fabric inventory (format v1)");
    assert!(
        schema["properties"]["drplan-fabric"].is_object(),
        "the version key is spelled `drplan-fabric`"
    );
}
