//! One conformance suite, run against every `Store` implementation, plus the
//! checks only the on-disk store can have (format marker, locking, damage).

use std::path::{Path, PathBuf};
use std::process::Command;

use drplan_engine::store::codec;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::{STORE_FORMAT, SledStore};
use drplan_engine::store::{JobId, Store, StoreError, TimerEntry, Write};

/// A store under test that can be "restarted": what survives is what was
/// flushed (MemStore: its crash copy; SledStore: drop and reopen the dir).
trait Harness: Sized {
    fn create() -> Self;
    fn store(&self) -> &dyn Store;
    fn restart(self) -> Self;
}

struct Mem(MemStore);

impl Harness for Mem {
    fn create() -> Self {
        Mem(MemStore::new())
    }
    fn store(&self) -> &dyn Store {
        &self.0
    }
    fn restart(self) -> Self {
        Mem(self.0.crash_copy())
    }
}

struct Sled {
    // Field order matters: the store is dropped before the directory.
    store: Option<SledStore>,
    dir: tempfile::TempDir,
}

impl Harness for Sled {
    fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("data")).unwrap();
        Sled {
            store: Some(store),
            dir,
        }
    }
    fn store(&self) -> &dyn Store {
        self.store.as_ref().unwrap()
    }
    fn restart(mut self) -> Self {
        drop(self.store.take());
        self.store = Some(SledStore::open(&self.dir.path().join("data")).unwrap());
        self
    }
}

fn ev(job: JobId, seq: u64, payload: &str) -> Write {
    Write::Event {
        job,
        seq,
        payload: payload.as_bytes().to_vec(),
    }
}

fn payloads(store: &dyn Store, job: JobId) -> Vec<(u64, String)> {
    store
        .events(job, 0)
        .unwrap()
        .into_iter()
        .map(|(s, p)| (s, String::from_utf8(p).unwrap()))
        .collect()
}

fn vms(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// ---- the suite ----

fn dense_sequences_are_enforced<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let job = s.allocate_job_id().unwrap();
    s.apply(&[ev(job, 0, "a"), ev(job, 1, "b")]).unwrap();
    s.apply(&[ev(job, 2, "c")]).unwrap();
    // A gap.
    let err = s.apply(&[ev(job, 4, "e")]).unwrap_err();
    assert!(
        matches!(err, StoreError::SeqGap { job: j, expected: 3, found: 4 } if j == job),
        "{err:?}"
    );
    // A repeat.
    let err = s.apply(&[ev(job, 2, "again")]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SeqGap {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    // A gap inside one batch.
    let err = s.apply(&[ev(job, 3, "d"), ev(job, 5, "f")]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SeqGap {
                expected: 4,
                found: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.last_seq(job).unwrap(), Some(2));
    assert_eq!(
        payloads(s, job),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    // A fresh job starts at 0, and another job's log is independent.
    let other = s.allocate_job_id().unwrap();
    assert_eq!(s.last_seq(other).unwrap(), None);
    let err = s.apply(&[ev(other, 1, "x")]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SeqGap {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err:?}"
    );
    s.apply(&[ev(other, 0, "x"), ev(job, 3, "d")]).unwrap();
    assert_eq!(s.last_seq(job).unwrap(), Some(3));
    assert_eq!(s.last_seq(other).unwrap(), Some(0));
}

fn a_rejected_batch_leaves_no_trace<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let job = s.allocate_job_id().unwrap();
    s.apply(&[ev(job, 0, "first")]).unwrap();
    let batch = [
        Write::JobMeta {
            job,
            payload: b"meta".to_vec(),
        },
        ev(job, 1, "second"),
        Write::ArmTimer {
            due_ms: 10,
            job,
            timer: 1,
        },
        Write::Item {
            vm: "vm1".into(),
            payload: b"item".to_vec(),
        },
        Write::Text {
            hash: "h".into(),
            text: "plan".into(),
        },
        ev(job, 3, "gap"),
    ];
    assert!(s.apply(&batch).is_err());
    assert_eq!(s.last_seq(job).unwrap(), Some(0));
    assert_eq!(s.job_meta(job).unwrap(), None);
    assert!(s.jobs().unwrap().is_empty());
    assert!(s.timers().unwrap().is_empty());
    assert_eq!(s.item("vm1").unwrap(), None);
    assert_eq!(s.text("h").unwrap(), None);
    // The same batch without the bad event goes through entirely.
    s.apply(&batch[..5]).unwrap();
    assert_eq!(s.last_seq(job).unwrap(), Some(1));
    assert_eq!(s.job_meta(job).unwrap(), Some(b"meta".to_vec()));
    assert_eq!(s.timers().unwrap().len(), 1);
    assert_eq!(s.item("vm1").unwrap(), Some(b"item".to_vec()));
    assert_eq!(s.text("h").unwrap().as_deref(), Some("plan"));
}

fn unknown_jobs_and_early_snapshots_are_refused<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let err = s.apply(&[ev(JobId(1), 0, "x")]).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownJob { job: JobId(1) }),
        "{err:?}"
    );
    let err = s
        .apply(&[Write::JobMeta {
            job: JobId(0),
            payload: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownJob { .. }), "{err:?}");
    let job = s.allocate_job_id().unwrap();
    assert_eq!(job, JobId(1), "job ids start at 1");
    let snap = |seq| Write::Snapshot {
        job,
        seq,
        payload: b"state".to_vec(),
    };
    let err = s.apply(&[snap(0)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SnapshotAhead {
                seq: 0,
                have: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // Events and the snapshot covering them may come in one batch, in any
    // order.
    s.apply(&[snap(1), ev(job, 0, "a"), ev(job, 1, "b")])
        .unwrap();
    assert_eq!(s.snapshot(job).unwrap(), Some((1, b"state".to_vec())));
    let err = s.apply(&[snap(2)]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SnapshotAhead {
                seq: 2,
                have: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

fn leases_conflict_naming_the_holder<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let a = s.allocate_job_id().unwrap();
    let b = s.allocate_job_id().unwrap();
    s.acquire_leases(a, &vms(&["web1", "db1"])).unwrap();
    // Re-acquiring your own leases is fine.
    s.acquire_leases(a, &vms(&["db1", "app1"])).unwrap();
    // b wants one free VM and one of a's: refused, naming a, and it gets none.
    let err = s.acquire_leases(b, &vms(&["free1", "db1"])).unwrap_err();
    match &err {
        StoreError::LeaseHeld { vm, holder } => {
            assert_eq!(vm, "db1");
            assert_eq!(*holder, a);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    assert!(err.to_string().contains("job 1"), "{err}");
    assert_eq!(
        s.leases().unwrap(),
        vec![
            ("app1".to_string(), a),
            ("db1".to_string(), a),
            ("web1".to_string(), a)
        ]
    );
    // Unknown jobs cannot hold leases.
    assert!(matches!(
        s.acquire_leases(JobId(99), &vms(&["x"])).unwrap_err(),
        StoreError::UnknownJob { .. }
    ));
    // Once a releases, b gets them.
    s.apply(&[Write::ReleaseLeases { job: a }]).unwrap();
    assert!(s.leases().unwrap().is_empty());
    s.acquire_leases(b, &vms(&["free1", "db1"])).unwrap();
    assert_eq!(
        s.leases().unwrap(),
        vec![("db1".to_string(), b), ("free1".to_string(), b)]
    );
}

fn timers_come_out_sorted_by_due_time<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let j1 = s.allocate_job_id().unwrap();
    let j2 = s.allocate_job_id().unwrap();
    // Due times chosen so that byte order of little-endian or decimal text
    // would differ from numeric order.
    let dues = [1_000_000u64, 256, 1, 65_536, 255, 1u64 << 40, 10];
    let mut batch = Vec::new();
    for (i, due) in dues.iter().enumerate() {
        batch.push(Write::ArmTimer {
            due_ms: *due,
            job: if i % 2 == 0 { j1 } else { j2 },
            timer: i as u64,
        });
    }
    s.apply(&batch).unwrap();
    let got: Vec<u64> = s.timers().unwrap().iter().map(|t| t.due_ms).collect();
    let mut want = dues.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        s.timers_due(256)
            .unwrap()
            .iter()
            .map(|t| t.due_ms)
            .collect::<Vec<_>>(),
        vec![1, 10, 255, 256]
    );
    assert!(s.timers_due(0).unwrap().is_empty());
    assert_eq!(s.timers_due(u64::MAX).unwrap().len(), dues.len());
    // Disarm one; disarming something not armed is a no-op.
    s.apply(&[
        Write::DisarmTimer {
            due_ms: 255,
            job: j1,
            timer: 4,
        },
        // Right due time and timer, wrong job: not that timer.
        Write::DisarmTimer {
            due_ms: 256,
            job: j1,
            timer: 1,
        },
        Write::DisarmTimer {
            due_ms: 7,
            job: j1,
            timer: 7,
        },
    ])
    .unwrap();
    assert_eq!(
        s.timers_due(256).unwrap(),
        vec![
            TimerEntry {
                due_ms: 1,
                job: j1,
                timer: 2
            },
            TimerEntry {
                due_ms: 10,
                job: j1,
                timer: 6
            },
            TimerEntry {
                due_ms: 256,
                job: j2,
                timer: 1
            },
        ]
    );
}

fn records_round_trip<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let j1 = s.allocate_job_id().unwrap();
    let j2 = s.allocate_job_id().unwrap();
    assert!(j2 > j1);
    s.apply(&[
        Write::JobMeta {
            job: j2,
            payload: b"two".to_vec(),
        },
        Write::JobMeta {
            job: j1,
            payload: b"one".to_vec(),
        },
        Write::JobMeta {
            job: j1,
            payload: b"one, replaced".to_vec(),
        },
        Write::Item {
            vm: "zeta".into(),
            payload: b"z".to_vec(),
        },
        Write::Item {
            vm: "alpha/β".into(),
            payload: vec![0, 255, 7],
        },
        Write::Text {
            hash: "blake3:abc".into(),
            text: "groups: []\n".into(),
        },
    ])
    .unwrap();
    assert_eq!(
        s.jobs().unwrap(),
        vec![(j1, b"one, replaced".to_vec()), (j2, b"two".to_vec())]
    );
    assert_eq!(
        s.items().unwrap(),
        vec![
            ("alpha/β".to_string(), vec![0, 255, 7]),
            ("zeta".to_string(), b"z".to_vec())
        ]
    );
    assert_eq!(s.item("nope").unwrap(), None);
    assert_eq!(
        s.text("blake3:abc").unwrap().as_deref(),
        Some("groups: []\n")
    );
    assert_eq!(s.text("blake3:other").unwrap(), None);
    assert_eq!(s.snapshot(j1).unwrap(), None);
}

fn events_stream_from_any_point<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let job = s.allocate_job_id().unwrap();
    let batch: Vec<Write> = (0..300).map(|i| ev(job, i, &format!("e{i}"))).collect();
    s.apply(&batch).unwrap();
    let from = s.events(job, 250).unwrap();
    assert_eq!(from.len(), 50);
    assert_eq!(from[0], (250, b"e250".to_vec()));
    assert!(s.events(job, 300).unwrap().is_empty());
    assert!(s.events(job, u64::MAX).unwrap().is_empty());
    // The visitor's error stops the walk and comes back unchanged.
    let mut seen = 0;
    let err = s
        .for_each_event(job, 0, &mut |seq, _| {
            seen += 1;
            if seq == 9 {
                return Err(StoreError::Corrupt {
                    what: "test".into(),
                    detail: "stop".into(),
                });
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(seen, 10);
    assert!(matches!(err, StoreError::Corrupt { .. }));
    // Logs of neighbouring jobs do not bleed into each other.
    let next = s.allocate_job_id().unwrap();
    s.apply(&[ev(next, 0, "n")]).unwrap();
    assert_eq!(s.events(job, 0).unwrap().len(), 300);
    assert_eq!(s.events(next, 0).unwrap(), vec![(0, b"n".to_vec())]);
}

fn restart_keeps_what_was_flushed<H: Harness>() {
    let h = H::create();
    let (j1, j2);
    {
        let s = h.store();
        j1 = s.allocate_job_id().unwrap();
        j2 = s.allocate_job_id().unwrap();
        s.apply(&[
            ev(j1, 0, "a"),
            ev(j1, 1, "b"),
            Write::JobMeta {
                job: j1,
                payload: b"m".to_vec(),
            },
            Write::Snapshot {
                job: j1,
                seq: 1,
                payload: b"snap".to_vec(),
            },
            Write::ArmTimer {
                due_ms: 5,
                job: j2,
                timer: 9,
            },
            Write::Item {
                vm: "vm".into(),
                payload: b"i".to_vec(),
            },
            Write::Text {
                hash: "h".into(),
                text: "t".into(),
            },
        ])
        .unwrap();
        s.acquire_leases(j2, &vms(&["vm"])).unwrap();
        s.flush().unwrap();
    }
    let h = h.restart();
    let s = h.store();
    assert_eq!(payloads(s, j1), vec![(0, "a".into()), (1, "b".into())]);
    assert_eq!(s.jobs().unwrap(), vec![(j1, b"m".to_vec())]);
    assert_eq!(s.snapshot(j1).unwrap(), Some((1, b"snap".to_vec())));
    assert_eq!(s.timers().unwrap().len(), 1);
    assert_eq!(s.item("vm").unwrap(), Some(b"i".to_vec()));
    assert_eq!(s.text("h").unwrap().as_deref(), Some("t"));
    assert_eq!(s.leases().unwrap(), vec![("vm".to_string(), j2)]);
    // Ids are never reused, and logs continue where they ended.
    let j3 = s.allocate_job_id().unwrap();
    assert!(j3 > j2, "{j3} after {j2}");
    s.apply(&[ev(j1, 2, "c")]).unwrap();
    s.flush().unwrap();
    let h = h.restart();
    assert_eq!(h.store().last_seq(j1).unwrap(), Some(2));
    assert!(h.store().allocate_job_id().unwrap() > j3);
}

fn corrupt_records_are_errors<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let job = s.allocate_job_id().unwrap();
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Rec {
        step: String,
    }
    s.apply(&[
        Write::Event {
            job,
            seq: 0,
            payload: codec::encode(&Rec { step: "s1".into() }),
        },
        Write::Event {
            job,
            seq: 1,
            payload: b"\x00\x01garbage".to_vec(),
        },
    ])
    .unwrap();
    let events = s.events(job, 0).unwrap();
    assert_eq!(
        codec::decode::<Rec>(&events[0].1).unwrap(),
        Rec { step: "s1".into() }
    );
    let err = codec::decode::<Rec>(&events[1].1).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

fn blob(key: &str, payload: Option<&str>) -> Write {
    Write::Blob {
        key: key.to_string(),
        payload: payload.map(|p| p.as_bytes().to_vec()),
    }
}

fn blob_list(store: &dyn Store, prefix: &str) -> Vec<(String, String)> {
    store
        .blobs_with_prefix(prefix)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect()
}

/// Generic records: replaced, deleted, listed by prefix in key order (not
/// in write order), atomic with the events of their batch, and only what
/// was flushed survives a restart.
fn blobs_round_trip_in_key_order<H: Harness>() {
    let h = H::create();
    let s = h.store();
    let job = s.allocate_job_id().unwrap();
    // Written out of order, with a neighbour prefix that must not match.
    s.apply(&[
        blob("fabric/delta/00000000000000000002", Some("d2")),
        blob("fabric/delta/00000000000000000001", Some("d1")),
        blob("fabric/full", Some("full")),
        blob("fabric/deltaX", Some("other")),
        blob("fabric/delta/00000000000000000003", Some("d3")),
        ev(job, 0, "with the blobs"),
    ])
    .unwrap();
    s.flush().unwrap();
    assert_eq!(
        blob_list(s, "fabric/delta/"),
        vec![
            ("fabric/delta/00000000000000000001".into(), "d1".into()),
            ("fabric/delta/00000000000000000002".into(), "d2".into()),
            ("fabric/delta/00000000000000000003".into(), "d3".into()),
        ]
    );
    assert_eq!(s.blob("fabric/full").unwrap(), Some(b"full".to_vec()));
    assert_eq!(s.blob("fabric/none").unwrap(), None);
    // Replace one, delete one (and delete one that never existed: no-op).
    s.apply(&[
        blob("fabric/full", Some("full2")),
        blob("fabric/delta/00000000000000000001", None),
        blob("fabric/never", None),
    ])
    .unwrap();
    // A rejected batch writes none of its blobs.
    let err = s
        .apply(&[blob("fabric/rejected", Some("x")), ev(job, 5, "gap")])
        .unwrap_err();
    assert!(matches!(err, StoreError::SeqGap { .. }), "{err:?}");
    assert_eq!(s.blob("fabric/rejected").unwrap(), None);
    s.flush().unwrap();
    let h = h.restart();
    let s = h.store();
    assert_eq!(s.blob("fabric/full").unwrap(), Some(b"full2".to_vec()));
    assert_eq!(
        blob_list(s, "fabric/"),
        vec![
            ("fabric/delta/00000000000000000002".into(), "d2".into()),
            ("fabric/delta/00000000000000000003".into(), "d3".into()),
            ("fabric/deltaX".into(), "other".into()),
            ("fabric/full".into(), "full2".into()),
        ]
    );
    assert!(s.blobs_with_prefix("nothing/").unwrap().is_empty());
}

macro_rules! suite {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;
            #[test]
            fn dense_sequences_are_enforced() {
                super::dense_sequences_are_enforced::<$harness>();
            }
            #[test]
            fn a_rejected_batch_leaves_no_trace() {
                super::a_rejected_batch_leaves_no_trace::<$harness>();
            }
            #[test]
            fn unknown_jobs_and_early_snapshots_are_refused() {
                super::unknown_jobs_and_early_snapshots_are_refused::<$harness>();
            }
            #[test]
            fn leases_conflict_naming_the_holder() {
                super::leases_conflict_naming_the_holder::<$harness>();
            }
            #[test]
            fn timers_come_out_sorted_by_due_time() {
                super::timers_come_out_sorted_by_due_time::<$harness>();
            }
            #[test]
            fn records_round_trip() {
                super::records_round_trip::<$harness>();
            }
            #[test]
            fn events_stream_from_any_point() {
                super::events_stream_from_any_point::<$harness>();
            }
            #[test]
            fn restart_keeps_what_was_flushed() {
                super::restart_keeps_what_was_flushed::<$harness>();
            }
            #[test]
            fn blobs_round_trip_in_key_order() {
                super::blobs_round_trip_in_key_order::<$harness>();
            }
            #[test]
            fn corrupt_records_are_errors() {
                super::corrupt_records_are_errors::<$harness>();
            }
        }
    };
}

suite!(on_mem, Mem);
suite!(on_sled, Sled);

// ---- MemStore only: the crash simulation itself ----

#[test]
fn mem_crash_copy_drops_what_was_not_flushed() {
    let s = MemStore::new();
    let job = s.allocate_job_id().unwrap();
    s.apply(&[ev(job, 0, "durable")]).unwrap();
    s.flush().unwrap();
    s.apply(&[ev(job, 1, "volatile")]).unwrap();
    s.acquire_leases(job, &vms(&["vm"])).unwrap();
    let later = s.allocate_job_id().unwrap();
    assert_eq!(s.unflushed_changes(), 3);
    let crashed = s.crash_copy();
    assert_eq!(payloads(&crashed, job), vec![(0, "durable".into())]);
    assert!(crashed.leases().unwrap().is_empty());
    // The id handed out before the crash was never made durable, so it is
    // handed out again: nothing durable refers to it.
    assert_eq!(crashed.allocate_job_id().unwrap(), later);
    // A failed flush makes nothing durable.
    s.fail_next_flushes(1);
    assert!(matches!(s.flush().unwrap_err(), StoreError::Io { .. }));
    assert_eq!(s.crash_copy().last_seq(job).unwrap(), Some(0));
    s.flush().unwrap();
    assert_eq!(s.crash_copy().last_seq(job).unwrap(), Some(1));
}

#[test]
fn mem_blobs_are_durable_only_after_a_flush() {
    let s = MemStore::new();
    s.apply(&[blob("k", Some("durable"))]).unwrap();
    s.flush().unwrap();
    s.apply(&[blob("k", None), blob("v", Some("volatile"))])
        .unwrap();
    // Applied: visible at once.
    assert_eq!(s.blob("k").unwrap(), None);
    assert_eq!(s.blob("v").unwrap(), Some(b"volatile".to_vec()));
    let crashed = s.crash_copy();
    assert_eq!(crashed.blob("k").unwrap(), Some(b"durable".to_vec()));
    assert_eq!(crashed.blob("v").unwrap(), None);
    s.flush().unwrap();
    let crashed = s.crash_copy();
    assert_eq!(crashed.blob("k").unwrap(), None);
    assert_eq!(
        blob_list(&crashed, ""),
        vec![("v".into(), "volatile".into())]
    );
}

// ---- SledStore only ----

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("nested").join("data")
}

/// Rewrites one raw key of a closed store with sled directly.
/// Opens sled directly. A store dropped a moment ago may still have sled's
/// background threads holding `<dir>/db`'s lock for a few milliseconds (more
/// on a loaded machine), so retry a lock failure for a while.
fn raw_sled(dir: &Path) -> ::sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match ::sled::open(dir) {
            Ok(db) => return db,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled cannot open {}: {e}", dir.display()),
        }
    }
}

fn poke(dir: &Path, key: &[u8], value: &[u8]) {
    let db = raw_sled(dir);
    db.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn sled_writes_its_format_and_refuses_a_newer_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    drop(SledStore::open(&dir).unwrap());
    let db = raw_sled(&dir);
    assert_eq!(
        db.get(b"meta/format").unwrap().as_deref(),
        Some(&STORE_FORMAT.to_be_bytes()[..])
    );
    drop(db);
    poke(&dir, b"meta/format", &(STORE_FORMAT + 1).to_be_bytes());
    let err = SledStore::open(&dir).unwrap_err();
    match &err {
        StoreError::NewerFormat {
            found, supported, ..
        } => {
            assert_eq!(*found, STORE_FORMAT + 1);
            assert_eq!(*supported, STORE_FORMAT);
        }
        other => panic!("expected NewerFormat, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade drplan"), "{err}");
}

#[test]
fn sled_damaged_internal_records_are_corrupt_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    {
        let s = SledStore::open(&dir).unwrap();
        let job = s.allocate_job_id().unwrap();
        s.acquire_leases(job, &vms(&["vm1"])).unwrap();
        s.flush().unwrap();
    }
    // A lease whose holder is not 8 bytes.
    poke(&dir, b"l/vm1", b"xyz");
    let s = SledStore::open(&dir).unwrap();
    let err = s.leases().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    drop(s);
    // A format marker of the wrong size.
    poke(&dir, b"meta/format", b"\x01");
    let err = SledStore::open(&dir).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // Data without any marker is not a drplan store.
    let other = tmp.path().join("foreign");
    poke(&other, b"k", b"v");
    let err = SledStore::open(&other).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

fn lease_set_key(job: JobId) -> Vec<u8> {
    let mut k = b"L/".to_vec();
    k.extend_from_slice(&job.0.to_be_bytes());
    k
}

/// The raw keys of a closed store under `prefix`.
fn raw_keys(dir: &Path, prefix: &[u8]) -> Vec<Vec<u8>> {
    raw_sled(dir)
        .scan_prefix(prefix)
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect()
}

fn raw_format(dir: &Path) -> u16 {
    let v = raw_sled(dir).get(b"meta/format").unwrap().unwrap();
    u16::from_be_bytes(v.as_ref().try_into().unwrap())
}

/// Format 4 keeps a job's leases in one value (one sled write to take or
/// give back 1,000 of them); the per-VM lease keys of a format-3 store are
/// still seen, refused to others and released.
#[test]
fn sled_keeps_a_jobs_leases_in_one_value_and_honours_per_vm_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let (a, b, c);
    {
        let s = SledStore::open(&dir).unwrap();
        a = s.allocate_job_id().unwrap();
        b = s.allocate_job_id().unwrap();
        c = s.allocate_job_id().unwrap();
        s.acquire_leases(a, &vms(&["vm1", "vm2"])).unwrap();
        s.acquire_leases(a, &vms(&["vm3", "vm2"])).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(raw_keys(&dir, b"L/"), vec![lease_set_key(a)]);
    assert!(raw_keys(&dir, b"l/").is_empty());
    // What a format-3 drplan left behind: a per-VM lease of job b.
    {
        let db = raw_sled(&dir);
        db.insert(b"l/old1", &b.0.to_be_bytes()).unwrap();
        db.insert(b"meta/format", &3u16.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    {
        let s = SledStore::open(&dir).unwrap();
        let all = vec![
            ("old1".to_string(), b),
            ("vm1".to_string(), a),
            ("vm2".to_string(), a),
            ("vm3".to_string(), a),
        ];
        assert_eq!(s.leases().unwrap(), all);
        let mut listed = Vec::new();
        s.for_each_record(&mut |r| {
            if let drplan_engine::store::Record::Lease { vm, job } = r {
                listed.push((vm, job));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(listed, all, "exports list one lease per VM, by VM");
        for (vm, holder) in [("old1", b), ("vm3", a)] {
            match s.acquire_leases(c, &vms(&["free", vm])).unwrap_err() {
                StoreError::LeaseHeld { vm: v, holder: h } => {
                    assert_eq!((v.as_str(), h), (vm, holder))
                }
                other => panic!("expected LeaseHeld, got {other:?}"),
            }
        }
        assert_eq!(s.leases().unwrap(), all, "a refused call takes nothing");
        s.apply(&[Write::ReleaseLeases { job: b }]).unwrap();
        s.acquire_leases(c, &vms(&["old1"])).unwrap();
        s.flush().unwrap();
    }
    assert!(raw_keys(&dir, b"l/").is_empty(), "the per-VM lease is gone");
    assert_eq!(raw_format(&dir), STORE_FORMAT, "the first write marks it");
    let s = SledStore::open(&dir).unwrap();
    assert_eq!(
        s.leases().unwrap(),
        vec![
            ("old1".to_string(), c),
            ("vm1".to_string(), a),
            ("vm2".to_string(), a),
            ("vm3".to_string(), a),
        ]
    );
    s.apply(&[Write::ReleaseLeases { job: a }]).unwrap();
    s.acquire_leases(c, &vms(&["vm2"])).unwrap();
}

/// A damaged lease set does not stop the store from opening (exports and
/// `store check` still work), but nobody can take a lease while nobody
/// can tell which VMs it covered.
#[test]
fn sled_a_damaged_lease_set_refuses_leases_not_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let (a, b);
    {
        let s = SledStore::open(&dir).unwrap();
        a = s.allocate_job_id().unwrap();
        b = s.allocate_job_id().unwrap();
        s.acquire_leases(a, &vms(&["vm1"])).unwrap();
        s.apply(&[ev(a, 0, "x")]).unwrap();
        s.flush().unwrap();
    }
    // A count of two VMs, and only one.
    let mut damaged = 2u32.to_be_bytes().to_vec();
    damaged.extend_from_slice(&3u32.to_be_bytes());
    damaged.extend_from_slice(b"vm1");
    poke(&dir, &lease_set_key(a), &damaged);
    {
        let s = SledStore::open(&dir).unwrap();
        assert_eq!(payloads(&s, a), vec![(0, "x".to_string())]);
        for err in [
            s.leases().unwrap_err(),
            s.acquire_leases(b, &vms(&["vm9"])).unwrap_err(),
        ] {
            match &err {
                StoreError::Corrupt { detail, .. } => {
                    assert!(detail.contains("job 1"), "{err}");
                    assert!(detail.contains("store check"), "{err}");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        let mut unknown = Vec::new();
        s.for_each_record(&mut |r| {
            if let drplan_engine::store::Record::Unknown { key, .. } = r {
                unknown.push(key);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(unknown, vec![lease_set_key(a)], "listed for the checker");
        // Releasing the damaged set removes it; the next open is sound.
        s.apply(&[Write::ReleaseLeases { job: a }]).unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(&dir).unwrap();
    s.acquire_leases(b, &vms(&["vm1"])).unwrap();
    assert_eq!(s.leases().unwrap(), vec![("vm1".to_string(), b)]);
}

#[test]
fn sled_garbage_files_are_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    {
        let s = SledStore::open(&dir).unwrap();
        let job = s.allocate_job_id().unwrap();
        s.apply(&[ev(job, 0, "x")]).unwrap();
        s.flush().unwrap();
    }
    // Overwrite the whole log with noise.
    let len = std::fs::metadata(dir.join("db")).unwrap().len() as usize;
    let noise: Vec<u8> = (0..len.max(4096)).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.join("db"), noise).unwrap();
    match SledStore::open(&dir) {
        Err(e @ StoreError::Corrupt { .. }) => eprintln!("garbage log: {e}"),
        // sled may also treat the noise as an empty log; then the missing
        // marker must be noticed.
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A garbage config file.
    let dir2 = tmp.path().join("conf");
    drop(SledStore::open(&dir2).unwrap());
    std::fs::write(dir2.join("conf"), b"\xff\xfe not a config").unwrap();
    let err = SledStore::open(&dir2).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn sled_open_twice_in_one_process_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let first = SledStore::open(&dir).unwrap();
    let err = SledStore::open(&dir).unwrap_err();
    match &err {
        StoreError::Locked { dir: d } => assert_eq!(d, &dir),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("drplan serve"), "{msg}");
    drop(first);
    // Released with the store.
    SledStore::open(&dir).unwrap();
}

const CHILD_ENV: &str = "DRPLAN_STORE_TEST_LOCK_CHILD";

/// Both sides of the test: the parent holds the store and runs this same
/// test binary, filtered to this test, as a child that tries to open it.
#[test]
fn sled_open_from_a_second_process_is_locked() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let outcome = match SledStore::open(Path::new(&dir)) {
            Err(StoreError::Locked { dir }) => format!("LOCKED {}", dir.display()),
            Err(e) => format!("OTHER-ERROR {e}"),
            Ok(_) => "OPENED".to_string(),
        };
        println!("CHILD-RESULT {outcome}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let run_child = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "sled_open_from_a_second_process_is_locked",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, &dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("CHILD-RESULT ").map(str::to_string))
            .unwrap_or_else(|| panic!("child printed no result: {out:?}"))
    };
    let store = SledStore::open(&dir).unwrap();
    assert_eq!(run_child(), format!("LOCKED {}", dir.display()));
    drop(store);
    assert_eq!(run_child(), "OPENED");
}

#[test]
fn sled_large_values_survive_a_restart() {
    // Values over sled's blob threshold (~128 KiB) live in their own files,
    // which the flush must sync too.
    let h = Sled::create();
    let job = h.store().allocate_job_id().unwrap();
    let big: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    h.store()
        .apply(&[Write::Text {
            hash: "big".into(),
            text: big.clone(),
        }])
        .unwrap();
    h.store().apply(&[ev(job, 0, "after")]).unwrap();
    h.store().flush().unwrap();
    let h = h.restart();
    assert_eq!(h.store().text("big").unwrap(), Some(big));
    assert_eq!(h.store().last_seq(job).unwrap(), Some(0));
}

#[test]
fn the_data_dir_comes_from_the_environment() {
    use drplan_engine::store::sled_store::data_dir_from;
    use std::ffi::OsString;
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let dir = |vars| data_dir_from(env(vars)).ok();
    assert_eq!(
        dir(&[("DRPLAN_DATA_DIR", "/srv/drplan"), ("HOME", "/home/op")]),
        Some(PathBuf::from("/srv/drplan"))
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            dir(&[("DRPLAN_DATA_DIR", ""), ("HOME", "/home/op")]),
            Some(PathBuf::from("/home/op/.local/share/drplan"))
        );
        assert_eq!(
            dir(&[("XDG_DATA_HOME", "/data"), ("HOME", "/home/op")]),
            Some(PathBuf::from("/data/drplan"))
        );
        // A relative XDG_DATA_HOME is invalid per the spec: ignored.
        assert_eq!(
            dir(&[("XDG_DATA_HOME", "rel"), ("HOME", "/home/op")]),
            Some(PathBuf::from("/home/op/.local/share/drplan"))
        );
    }
    assert!(
        data_dir_from(env(&[]))
            .unwrap_err()
            .to_string()
            .contains("DRPLAN_DATA_DIR")
    );
}

fn payload_of(seq: u64) -> Vec<u8> {
    format!("event {seq} {}", "x".repeat(100)).into_bytes()
}

#[test]
fn sled_damage_anywhere_in_the_log_never_panics_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    {
        let s = SledStore::open(&dir).unwrap();
        let job = s.allocate_job_id().unwrap();
        for seq in 0..200 {
            s.apply(&[Write::Event {
                job,
                seq,
                payload: payload_of(seq),
            }])
            .unwrap();
        }
        s.flush().unwrap();
    }
    let pristine = std::fs::read(dir.join("db")).unwrap();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..24 {
        let mut bytes = pristine.clone();
        let at = (i * 7919 + 13) % bytes.len();
        for b in &mut bytes[at..(at + 16).min(pristine.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(dir.join("db"), &bytes).unwrap();
        let outcome = match SledStore::open(&dir) {
            Ok(s) => {
                // sled reads a damaged message as the end of its log, so it
                // may recover fewer events (see docs/store.md); what it does
                // recover must be a dense prefix with exact payloads.
                let events = s.events(JobId(1), 0).unwrap();
                for (i, (seq, payload)) in events.iter().enumerate() {
                    assert_eq!(*seq, i as u64);
                    assert_eq!(payload, &payload_of(*seq));
                }
                format!("opened, {} events", events.len())
            }
            Err(StoreError::Corrupt { .. }) => "corrupt".to_string(),
            Err(e) => format!("other error: {e}"),
        };
        outcomes.insert(at, outcome);
    }
    eprintln!("{outcomes:#?}");
    assert!(
        outcomes.values().all(|o| !o.starts_with("other")),
        "{outcomes:#?}"
    );
}

#[test]
fn sled_after_a_failed_fdatasync_no_flush_succeeds_until_reopened() {
    use drplan_engine::store::commit::GroupCommitter;
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let store = Arc::new(SledStore::open(&dir).unwrap());
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    committer.commit(vec![ev(job, 0, "durable")]).unwrap();
    store.inject_sync_failure();
    let err = committer.commit(vec![ev(job, 1, "unknown")]).unwrap_err();
    assert!(matches!(err, StoreError::FlushFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("fdatasync"), "{err}");
    // The kernel may have dropped the pages of the failed sync: a later
    // flush that "succeeds" would acknowledge data that is not on disk.
    let err = committer.commit(vec![ev(job, 2, "later")]).unwrap_err();
    assert!(err.to_string().contains("restart drplan"), "{err}");
    assert!(store.flush().is_err());
    drop(committer);
    drop(store);
    // Reopening starts from what is really on disk.
    let store = SledStore::open(&dir).unwrap();
    assert!(store.last_seq(job).unwrap() >= Some(0));
    store.flush().unwrap();
}

/// A store holds plans, job histories and script output: the directories
/// `SledStore::open` creates are private to the user; one that existed
/// keeps the permissions its owner gave it.
#[cfg(unix)]
#[test]
fn directories_a_store_creates_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = shared.join("new").join("data");
    drop(SledStore::open(&dir).unwrap());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&shared.join("new")), 0o700);
    assert_eq!(mode(&shared), 0o755, "an existing directory is left alone");
    // Reopening changes nothing either.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    drop(SledStore::open(&dir).unwrap());
    assert_eq!(mode(&dir), 0o750);
}
