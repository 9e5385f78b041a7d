//! `drplan jobs`: lists what a data directory holds, never creates one, and
//! says clearly when the store is in use by another process.

use std::path::Path;
use std::sync::Arc;

use drplan_engine::journal::{Journal, SubmitRequest};
use drplan_engine::plan::{self, FailoverKind, Operation};
use drplan_engine::store::sled_store::SledStore;

mod support;
use support::{all as text, drplan, serial};

/// Submits a test failover of the shipped three-tier plan; returns the
/// journal, which keeps the store open until it is dropped.
fn submit_test_failover(dir: &Path) -> Journal {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = plan::load(&root.join("plans/three-tier.yaml"), None);
    let plan = loaded.plan.expect("the shipped plan is valid");
    let store = Arc::new(SledStore::open(dir).expect("a fresh store opens"));
    let journal = Journal::open(store).expect("the journal opens");
    journal
        .submit(SubmitRequest {
            plan,
            plan_text: loaded.plan_text.expect("text"),
            operation: Operation::failover(FailoverKind::Test),
            requested_by: "alice".into(),
            at: 1_764_000_000_000,
            start_at: None,
            parent: None,
        })
        .expect("the job is accepted");
    journal
}

#[test]
fn lists_nothing_for_a_directory_that_does_not_exist_and_does_not_create_it() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nowhere");
    let o = drplan(&["jobs", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no jobs"), "{}", text(&o));
    assert!(!dir.exists(), "listing must not create a store");
}

#[test]
fn lists_a_submitted_job_in_text_and_json() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    drop(submit_test_failover(tmp.path()));
    let dir = tmp.path().to_str().unwrap();
    let o = drplan(&["jobs", "--data-dir", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("orders") && out.contains("alice") && out.contains("test failover"),
        "{out}"
    );
    let o = drplan(&["jobs", "--data-dir", dir, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["plan_name"], "orders");
}

#[test]
fn a_store_in_use_is_refused_clearly_without_hanging() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // This process holds the store open while the CLI tries to read it.
    let _held = submit_test_failover(tmp.path());
    let o = drplan(&["jobs", "--data-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("in use"), "{}", text(&o));
}
