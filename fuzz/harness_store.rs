//! The store-level fuzz harness (see `harness.rs`): a whole store read
//! from an export file. Shared by `fuzz_targets/journal.rs` and
//! `engine/tests/fuzz_regressions.rs`.

#![allow(dead_code)]

use std::sync::Arc;

use drplan_engine::journal::Journal;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::{Store, backup};

/// (c) A whole store: the bytes read as an export file (`drplan store
/// export`), imported into a `MemStore`, checked, then a journal opened on
/// it and every query asked. Anything imported must export back to the same
/// records.
pub fn journal(data: &[u8]) {
    let store = Arc::new(MemStore::new());
    if backup::import(data, &*store).is_err() {
        return;
    }
    let mut again = Vec::new();
    backup::export(&*store, &mut again).expect("an imported store exports");
    let store2 = MemStore::new();
    backup::import(&again[..], &store2).expect("an export imports");
    let mut third = Vec::new();
    backup::export(&store2, &mut third).expect("an imported store exports");
    assert!(again == third, "export → import → export differs");

    let _ = drplan_engine::store_check::check(&*store);
    let Ok(journal) = Journal::open(store.clone()) else {
        return;
    };
    let _ = journal.resume();
    let _ = journal.due_timers(u64::MAX);
    if let Ok(metas) = journal.jobs() {
        for m in metas {
            let _ = journal.job(m.id);
            let _ = journal.events(m.id);
        }
    }
    let _ = store.leases();
}
