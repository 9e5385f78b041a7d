//! Group application (`Store::apply_group`): outcomes per batch, event runs
//! on sled (the events of one job written by one group under one key), and
//! reading a store of the previous format (one key per event).
//!
//! The property test that random groups read back like the same batches
//! applied one by one on a `MemStore` is `store_model.rs`
//! (`mem_and_sled_agree`, its `ApplyGroup` operation).

mod core_support;
mod journal_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use core_support::{group, plan, script};
use drplan_engine::journal::{Journal, JournalOptions};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::{STORE_FORMAT, SledStore};
use drplan_engine::store::{JobId, Record, Store, StoreError, TimerEntry, Write, backup};
use journal_support::{Fabric, Sim};

fn ev(job: JobId, seq: u64, payload: &str) -> Write {
    Write::Event {
        job,
        seq,
        payload: payload.as_bytes().to_vec(),
    }
}

/// `n` events of `job` from `from`, payload `"<job>:<seq>"`.
fn events(job: JobId, from: u64, n: u64) -> Vec<Write> {
    (from..from + n)
        .map(|s| ev(job, s, &format!("{job}:{s}")))
        .collect()
}

/// A fresh `SledStore` in `dir` and a `MemStore`, one job allocated in each
/// (the same id).
fn one_job_each(dir: &Path) -> (SledStore, MemStore, JobId) {
    let sled = SledStore::open(dir).unwrap();
    let mem = MemStore::new();
    let job = sled.allocate_job_id().unwrap();
    mem.allocate_job_id().unwrap();
    (sled, mem, job)
}

fn group_of(batches: &[Vec<Write>]) -> Vec<&[Write]> {
    batches.iter().map(Vec::as_slice).collect()
}

fn kinds(outcomes: &[Result<(), StoreError>]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect()
}

/// Opens sled directly (a just-dropped store's threads may hold the lock a
/// few milliseconds).
fn raw_sled(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("sled cannot open {}: {e}", dir.display()),
        }
    }
}

fn event_key(job: JobId, seq: u64) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(&job.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The event keys of a closed store, as (job, first seq).
fn event_keys(dir: &Path) -> Vec<(u64, u64)> {
    let db = raw_sled(dir);
    db.scan_prefix(b"e/")
        .map(|e| {
            let (k, _) = e.unwrap();
            (
                u64::from_be_bytes(k[2..10].try_into().unwrap()),
                u64::from_be_bytes(k[10..18].try_into().unwrap()),
            )
        })
        .collect()
}

fn generation(dir: &Path) -> u64 {
    let db = raw_sled(dir);
    db.get(b"meta/generation")
        .unwrap()
        .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
}

fn format(dir: &Path) -> u16 {
    let db = raw_sled(dir);
    let v = db.get(b"meta/format").unwrap().unwrap();
    u16::from_be_bytes(v.as_ref().try_into().unwrap())
}

/// Every way to read a job's events must agree with `truth` (seq 0..).
fn assert_reads(store: &dyn Store, job: JobId, truth: &[(u64, Vec<u8>)]) {
    assert_eq!(
        store.last_seq(job).unwrap(),
        truth.last().map(|(s, _)| *s),
        "last_seq of job {job}"
    );
    for from in 0..=truth.len() as u64 + 1 {
        let want: Vec<_> = truth.iter().filter(|(s, _)| *s >= from).cloned().collect();
        assert_eq!(store.events(job, from).unwrap(), want, "from seq {from}");
    }
    let mut listed = Vec::new();
    store
        .for_each_record(&mut |r| {
            if let Record::Event {
                job: j,
                seq,
                payload,
            } = r
                && j == job
            {
                listed.push((seq, payload));
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(listed, truth, "for_each_record of job {job}");
}

fn truth(store: &MemStore, job: JobId) -> Vec<(u64, Vec<u8>)> {
    store.events(job, 0).unwrap()
}

/// The same group on MemStore (apply per batch) and SledStore
/// (one write): the same outcomes.
fn both(mem: &MemStore, sled: &SledStore, batches: &[Vec<Write>]) -> Vec<String> {
    let a = kinds(&mem.apply_group(&group_of(batches)));
    let b = kinds(&sled.apply_group(&group_of(batches)));
    assert_eq!(a, b, "MemStore and SledStore answer differently");
    b
}

#[test]
fn a_rejected_batch_fails_only_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let sled = SledStore::open(tmp.path()).unwrap();
    let (a, b) = (
        mem.allocate_job_id().unwrap(),
        mem.allocate_job_id().unwrap(),
    );
    assert_eq!(sled.allocate_job_id().unwrap(), a);
    assert_eq!(sled.allocate_job_id().unwrap(), b);
    let batches = vec![
        events(a, 0, 2),
        vec![ev(a, 5, "gap")],
        events(a, 2, 2),
        vec![ev(JobId(99), 0, "never allocated")],
        // A snapshot covering only events of earlier batches of the group.
        vec![Write::Snapshot {
            job: a,
            seq: 3,
            payload: b"snap".to_vec(),
        }],
        vec![Write::Snapshot {
            job: b,
            seq: 0,
            payload: b"ahead".to_vec(),
        }],
        // The rejected gap did not count: event 4 is next.
        vec![ev(a, 4, "a:4")],
        vec![],
    ];
    let got = both(&mem, &sled, &batches);
    assert_eq!(got[0], "ok");
    assert!(got[1].starts_with("SeqGap"), "{got:?}");
    assert_eq!(got[2], "ok");
    assert!(got[3].starts_with("UnknownJob"), "{got:?}");
    assert_eq!(got[4], "ok");
    assert!(got[5].starts_with("SnapshotAhead"), "{got:?}");
    assert_eq!(got[6..], ["ok", "ok"]);
    assert_reads(&sled, a, &truth(&mem, a));
    assert_eq!(sled.snapshot(a).unwrap(), Some((3, b"snap".to_vec())));
    assert_eq!(sled.snapshot(b).unwrap(), None);
    assert_eq!(sled.last_seq(b).unwrap(), None);
}

#[test]
fn interleaved_jobs_become_one_run_each_and_later_groups_add_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let (a, b);
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        a = sled.allocate_job_id().unwrap();
        b = sled.allocate_job_id().unwrap();
        assert_eq!(mem.allocate_job_id().unwrap(), a);
        assert_eq!(mem.allocate_job_id().unwrap(), b);
        // Group 1: a and b interleaved, batch by batch.
        let g1 = vec![
            events(a, 0, 3),
            events(b, 0, 1),
            events(a, 3, 2),
            events(b, 1, 4),
        ];
        assert_eq!(both(&mem, &sled, &g1), ["ok"; 4]);
        // Group 2: more of a (a run after a run), one lone event of b.
        let g2 = vec![events(a, 5, 1), events(a, 6, 3), events(b, 5, 1)];
        assert_eq!(both(&mem, &sled, &g2), ["ok"; 3]);
        for job in [a, b] {
            assert_reads(&sled, job, &truth(&mem, job));
        }
    }
    // One key per job per group: a run (or a lone event) under its first
    // event's key.
    assert_eq!(
        event_keys(tmp.path()),
        vec![(a.0, 0), (a.0, 5), (b.0, 0), (b.0, 5)]
    );
    // And after a reopen, reading from every point still matches.
    let sled = SledStore::open(tmp.path()).unwrap();
    for job in [a, b] {
        assert_reads(&sled, job, &truth(&mem, job));
    }
    // Validation after a reopen sees a run's last event.
    let next = kinds(&sled.apply_group(&[&[ev(a, 8, "dup")], &[ev(a, 9, "a:9")]]));
    assert!(next[0].starts_with("SeqGap"), "{next:?}");
    assert_eq!(next[1], "ok");
}

#[test]
fn a_long_group_is_split_into_bounded_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (sled, mem, job) = one_job_each(tmp.path());
    // 1,000 events of 200 bytes (about 200 KB) in one batch.
    let batch: Vec<Write> = (0..1000)
        .map(|s| Write::Event {
            job,
            seq: s,
            payload: vec![(s % 251) as u8; 200],
        })
        .collect();
    assert_eq!(both(&mem, &sled, &[batch]), ["ok"]);
    assert_reads(&sled, job, &truth(&mem, job));
    drop(sled);
    let keys = event_keys(tmp.path());
    assert!(
        (2..=20).contains(&keys.len()),
        "about 32 KiB per run: {keys:?}"
    );
    let sled = SledStore::open(tmp.path()).unwrap();
    assert_reads(&sled, job, &truth(&mem, job));
}

#[test]
fn later_writes_of_a_key_win_within_a_group() {
    let tmp = tempfile::tempdir().unwrap();
    let (sled, mem, job) = one_job_each(tmp.path());
    let t = |timer, due_ms| TimerEntry { due_ms, job, timer };
    let arm = |t: TimerEntry| Write::ArmTimer {
        due_ms: t.due_ms,
        job,
        timer: t.timer,
    };
    let disarm = |t: TimerEntry| Write::DisarmTimer {
        due_ms: t.due_ms,
        job,
        timer: t.timer,
    };
    let item = |tag: &str| Write::Item {
        vm: "web1".into(),
        payload: tag.as_bytes().to_vec(),
    };
    let blob = |p: Option<&str>| Write::Blob {
        key: "k".into(),
        payload: p.map(|p| p.as_bytes().to_vec()),
    };
    let g = vec![
        vec![
            arm(t(1, 100)),
            arm(t(2, 200)),
            item("first"),
            blob(Some("x")),
        ],
        vec![disarm(t(1, 100)), arm(t(3, 300)), blob(None)],
        vec![
            arm(t(3, 300)),
            disarm(t(3, 300)),
            arm(t(3, 300)),
            item("last"),
        ],
        vec![
            Write::JobMeta {
                job,
                payload: b"m1".to_vec(),
            },
            Write::JobMeta {
                job,
                payload: b"m2".to_vec(),
            },
        ],
    ];
    assert_eq!(both(&mem, &sled, &g), ["ok"; 4]);
    for s in [&mem as &dyn Store, &sled] {
        assert_eq!(s.timers().unwrap(), vec![t(2, 200), t(3, 300)]);
        assert_eq!(s.item("web1").unwrap(), Some(b"last".to_vec()));
        assert_eq!(s.blob("k").unwrap(), None);
        assert_eq!(s.job_meta(job).unwrap(), Some(b"m2".to_vec()));
    }
}

#[test]
fn the_generation_moves_once_per_written_group() {
    let tmp = tempfile::tempdir().unwrap();
    let job;
    let before = {
        let sled = SledStore::open(tmp.path()).unwrap();
        job = sled.allocate_job_id().unwrap();
        sled.apply(&events(job, 0, 1)).unwrap();
        drop(sled);
        generation(tmp.path())
    };
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        let got = sled.apply_group(&[&events(job, 1, 2), &events(job, 3, 2), &[]]);
        assert!(got.iter().all(Result::is_ok), "{got:?}");
        // A group whose every batch is rejected writes nothing.
        let got = sled.apply_group(&[&events(job, 9, 1)]);
        assert!(got[0].is_err());
    }
    assert_eq!(generation(tmp.path()), before + 1);
    // And the damage check at open accepts it (the marker recorded it).
    let sled = SledStore::open(tmp.path()).unwrap();
    assert_eq!(sled.last_seq(job).unwrap(), Some(4));
}

/// Rewrites a closed store into the previous format: one plain key per
/// event, format marker 1.
fn downgrade_to_format_1(dir: &Path) {
    let entries = event_records(dir)
        .into_iter()
        .map(|(job, seq, payload)| (event_key(job, seq), payload))
        .collect();
    replace_events(dir, entries, 1);
}

/// Every event of a closed store, in order, as (job, seq, payload).
fn event_records(dir: &Path) -> Vec<(JobId, u64, Vec<u8>)> {
    let store = SledStore::open(dir).unwrap();
    let mut all = Vec::new();
    store
        .for_each_record(&mut |r| {
            if let Record::Event { job, seq, payload } = r {
                all.push((job, seq, payload));
            }
            Ok(())
        })
        .unwrap();
    all
}

/// Replaces every event key of a closed store with `entries` (key, value)
/// and marks it `format`, with sled directly.
fn replace_events(dir: &Path, entries: Vec<(Vec<u8>, Vec<u8>)>, format: u16) {
    let db = raw_sled(dir);
    let mut batch = sled::Batch::default();
    for k in db.scan_prefix(b"e/").keys() {
        batch.remove(k.unwrap());
    }
    for (k, v) in entries {
        batch.insert(k, v);
    }
    batch.insert(&b"meta/format"[..], &format.to_be_bytes()[..]);
    db.apply_batch(batch).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_format_1_store_reads_and_takes_runs_after_its_plain_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (sled, mem, job) = one_job_each(tmp.path());
    assert_eq!(both(&mem, &sled, &[events(job, 0, 6)]), ["ok"]);
    drop(sled);
    downgrade_to_format_1(tmp.path());
    assert_eq!(event_keys(tmp.path()).len(), 6, "one key per event");
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        assert_reads(&sled, job, &truth(&mem, job));
    }
    assert_eq!(format(tmp.path()), 1, "opening and reading write nothing");
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        let g = vec![events(job, 6, 3), events(job, 9, 2)];
        assert_eq!(both(&mem, &sled, &g), ["ok", "ok"]);
        assert_reads(&sled, job, &truth(&mem, job));
    }
    assert_eq!(format(tmp.path()), STORE_FORMAT, "the first write marks it");
    assert_eq!(event_keys(tmp.path()).len(), 7, "six plain events, one run");
    let sled = SledStore::open(tmp.path()).unwrap();
    assert_reads(&sled, job, &truth(&mem, job));
}

/// `n` events of `job` from `from` that compress (as a job's JSON events
/// do: the same field names over and over).
fn json_events(job: JobId, from: u64, n: u64) -> Vec<Write> {
    (from..from + n)
        .map(|s| {
            ev(
                job,
                s,
                &format!(r#"DRPR{{"event":"step_finished","step":{s},"outcome":"succeeded"}}"#),
            )
        })
        .collect()
}

/// Rewrites a closed store into format 2: its event runs plain (run
/// version 1), format marker 2.
fn downgrade_to_format_2(dir: &Path) {
    // Group the events back into the runs their keys hold.
    let keys = event_keys(dir);
    let mut runs: Vec<(JobId, u64, Vec<Vec<u8>>)> = Vec::new();
    for (job, seq, payload) in event_records(dir) {
        if keys.contains(&(job.0, seq)) {
            runs.push((job, seq, Vec::new()));
        }
        runs.last_mut().unwrap().2.push(payload);
    }
    let entries = runs
        .iter()
        .map(|(job, first, payloads)| {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let value = match refs[..] {
                [lone] => lone.to_vec(),
                _ => run_value(refs.len() as u32, &refs),
            };
            (event_key(*job, *first), value)
        })
        .collect();
    replace_events(dir, entries, 2);
}

/// The run version byte of every event value that is a run.
fn run_versions(dir: &Path) -> Vec<u8> {
    let db = raw_sled(dir);
    db.scan_prefix(b"e/")
        .values()
        .map(|v| v.unwrap())
        .filter(|v| v.starts_with(b"DRRN"))
        .map(|v| v[4])
        .collect()
}

#[test]
fn a_format_2_store_reads_and_takes_compressed_runs_after_its_plain_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (sled, mem, job) = one_job_each(tmp.path());
    let g = [json_events(job, 0, 20), json_events(job, 20, 20)];
    assert_eq!(both(&mem, &sled, &g[..1]), ["ok"]);
    assert_eq!(both(&mem, &sled, &g[1..]), ["ok"]);
    drop(sled);
    assert_eq!(run_versions(tmp.path()), [2, 2], "compressed when written");
    let compressed = event_keys(tmp.path());
    downgrade_to_format_2(tmp.path());
    assert_eq!(event_keys(tmp.path()), compressed, "the same runs");
    assert_eq!(run_versions(tmp.path()), [1, 1]);
    assert_eq!(format(tmp.path()), 2);
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        assert_reads(&sled, job, &truth(&mem, job));
    }
    assert_eq!(format(tmp.path()), 2, "opening and reading write nothing");
    {
        let sled = SledStore::open(tmp.path()).unwrap();
        assert_eq!(both(&mem, &sled, &[json_events(job, 40, 20)]), ["ok"]);
        assert_reads(&sled, job, &truth(&mem, job));
    }
    assert_eq!(format(tmp.path()), STORE_FORMAT, "the first write marks it");
    assert_eq!(run_versions(tmp.path()), [1, 1, 2]);
    let sled = SledStore::open(tmp.path()).unwrap();
    assert_reads(&sled, job, &truth(&mem, job));
}

/// A compressed run damaged on disk is `Corrupt` naming the job and the
/// key from every reader, like a damaged plain one.
#[test]
fn a_damaged_compressed_run_is_a_corrupt_error_naming_the_job_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(tmp.path()).unwrap();
        let job = s.allocate_job_id().unwrap();
        s.apply(&events(job, 0, 3)).unwrap();
        s.apply(&json_events(job, 3, 30)).unwrap();
    }
    let db = raw_sled(tmp.path());
    let good = db.get(event_key(JobId(1), 3)).unwrap().unwrap().to_vec();
    drop(db);
    assert_eq!(&good[..5], b"DRRN\x02", "written compressed");
    let cut = good[..good.len() - 1].to_vec();
    let mut huge = good.clone();
    huge[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut short = good.clone();
    short[9..13].copy_from_slice(&8u32.to_be_bytes());
    for (what, value) in [("cut", cut), ("huge length", huge), ("short length", short)] {
        poke_event(tmp.path(), 3, &value);
        let s = SledStore::open(tmp.path()).unwrap();
        for (how, r) in [
            ("events", s.events(JobId(1), 0).map(|_| ())),
            ("last_seq", s.last_seq(JobId(1)).map(|_| ())),
            ("for_each_record", s.for_each_record(&mut |_| Ok(()))),
        ] {
            match r {
                Err(StoreError::Corrupt { what: w, detail }) => assert!(
                    w.contains("job 1") && w.contains("e/1/3"),
                    "{what}, {how}: {w}: {detail}"
                ),
                other => panic!("{what}, {how}: expected Corrupt, got {other:?}"),
            }
        }
    }
    poke_event(tmp.path(), 3, &good);
    let s = SledStore::open(tmp.path()).unwrap();
    assert_eq!(s.last_seq(JobId(1)).unwrap(), Some(32));
}

/// A drplan that knows only format 1 refuses a store whose marker is above
/// 1: a new store must carry a higher one, since it may hold runs.
#[test]
fn a_new_store_is_marked_above_format_1() {
    let tmp = tempfile::tempdir().unwrap();
    drop(SledStore::open(tmp.path()).unwrap());
    let on_disk = format(tmp.path());
    assert!(on_disk > 1, "format {on_disk}");
    assert_eq!(on_disk, STORE_FORMAT);
}

/// A job interrupted mid-run on a format-1 store resumes and ends exactly
/// like the same job whose store was never rewritten.
#[test]
fn a_job_resumes_from_a_format_1_store() {
    let p = plan(
        vec![
            group(
                "db",
                vec![],
                &[("db1", false), ("db2", false)],
                vec![script("stop-app", 1)],
                vec![],
            ),
            group(
                "web",
                vec![0],
                &[("web1", false), ("web2", true)],
                vec![],
                vec![script("dns", 2)],
            ),
        ],
        vec![],
    );
    let op = Operation::failover(FailoverKind::Planned);
    let choices = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
    let fabric = Fabric {
        seed: 7,
        failing: 0,
        ..Fabric::default()
    };
    let opts = || JournalOptions {
        snapshot_every: 4,
        ..JournalOptions::default()
    };
    let mut finals = Vec::new();
    for downgrade in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let out = {
            let store: Arc<dyn Store> = Arc::new(SledStore::open(tmp.path()).unwrap());
            let mut sim = Sim::new(store, opts(), fabric.clone(), choices.clone());
            sim.submit(&p, op, None).unwrap();
            sim.run(12, |_| {});
            assert!(
                sim.states().values().all(|s| !s.is_terminal()),
                "the job must be interrupted mid-run"
            );
            sim.out.clone()
        };
        if downgrade {
            downgrade_to_format_1(tmp.path());
            assert_eq!(format(tmp.path()), 1);
        }
        let store: Arc<dyn Store> = Arc::new(SledStore::open(tmp.path()).unwrap());
        let mut sim = Sim::restart(store.clone(), opts(), out, choices.clone());
        sim.run(500, |_| {});
        let states = sim.states();
        assert!(states.values().all(|s| s.is_terminal()), "{states:?}");
        let job = *states.keys().next().unwrap();
        finals.push((states, sim.journal.events(job).unwrap()));
        drop(sim);
        drop(store);
        assert_eq!(format(tmp.path()), STORE_FORMAT);
        // And the store reopens from scratch to the same history.
        let journal = Journal::open(Arc::new(SledStore::open(tmp.path()).unwrap())).unwrap();
        assert_eq!(journal.events(job).unwrap(), finals.last().unwrap().1);
    }
    assert_eq!(finals[0], finals[1]);
}

/// Writes `value` as the event value under (job 1, seq `first`) of a store
/// whose job 1 exists.
fn poke_event(dir: &Path, first: u64, value: &[u8]) {
    let db = raw_sled(dir);
    db.insert(event_key(JobId(1), first), value).unwrap();
    db.flush().unwrap();
}

fn run_value(count: u32, payloads: &[&[u8]]) -> Vec<u8> {
    let mut v = b"DRRN\x01".to_vec();
    v.extend_from_slice(&count.to_be_bytes());
    for p in payloads {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    v
}

#[test]
fn a_malformed_run_is_a_corrupt_error_naming_the_job_and_key() {
    let good = run_value(2, &[b"DRPR-a", b"DRPR-b"]);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    let mut long_len = run_value(1, &[b"x"]);
    long_len[9..13].copy_from_slice(&1000u32.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header cut", b"DRRN\x01\x00".to_vec()),
        ("bad version", bad_version),
        ("no event", run_value(0, &[])),
        ("count past the value", run_value(u32::MAX, &[b"a"])),
        ("count above its events", run_value(3, &[b"a", b"b"])),
        ("length past the value", long_len),
        ("trailing bytes", trailing),
    ];
    for (what, value) in cases {
        let tmp = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(tmp.path()).unwrap();
            let job = s.allocate_job_id().unwrap();
            s.apply(&events(job, 0, 3)).unwrap();
        }
        poke_event(tmp.path(), 3, &value);
        let s = SledStore::open(tmp.path()).unwrap();
        let check = |r: Result<(), StoreError>, how: &str| match r {
            Err(StoreError::Corrupt { what: w, detail }) => {
                assert!(
                    w.contains("job 1") && w.contains("e/1/3"),
                    "{what}, {how}: {w}: {detail}"
                );
            }
            other => panic!("{what}, {how}: expected Corrupt, got {other:?}"),
        };
        check(s.events(JobId(1), 0).map(|_| ()), "events from 0");
        check(s.events(JobId(1), 3).map(|_| ()), "events from inside");
        check(s.last_seq(JobId(1)).map(|_| ()), "last_seq");
        check(s.for_each_record(&mut |_| Ok(())), "for_each_record");
        check(
            s.apply(&events(JobId(1), 4, 1)),
            "a batch checked against it",
        );
        let mut out = Vec::new();
        assert!(
            backup::export(&s, &mut out).is_err(),
            "{what}: an export must not skip damaged events"
        );
    }
    // The well-formed one reads as two events.
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(tmp.path()).unwrap();
        let job = s.allocate_job_id().unwrap();
        s.apply(&events(job, 0, 3)).unwrap();
    }
    poke_event(tmp.path(), 3, &good);
    let s = SledStore::open(tmp.path()).unwrap();
    assert_eq!(s.last_seq(JobId(1)).unwrap(), Some(4));
    assert_eq!(
        s.events(JobId(1), 4).unwrap(),
        vec![(4, b"DRPR-b".to_vec())]
    );
}

#[test]
fn a_lone_payload_that_opens_like_a_run_is_stored_as_a_run_of_one() {
    let tmp = tempfile::tempdir().unwrap();
    let tricky = run_value(2, &[b"looks", b"like a run"]);
    let job;
    {
        let s = SledStore::open(tmp.path()).unwrap();
        job = s.allocate_job_id().unwrap();
        s.apply(&[Write::Event {
            job,
            seq: 0,
            payload: tricky.clone(),
        }])
        .unwrap();
        assert_eq!(s.events(job, 0).unwrap(), vec![(0, tricky.clone())]);
    }
    let s = SledStore::open(tmp.path()).unwrap();
    assert_eq!(s.events(job, 0).unwrap(), vec![(0, tricky)]);
    assert_eq!(s.last_seq(job).unwrap(), Some(0));
}

#[test]
fn export_and_import_do_not_depend_on_how_events_were_grouped() {
    // The same records, written as runs (sled, one group) and one by one
    // (MemStore), export to the same bytes; and the sled export imports
    // back to an identical export.
    let tmp = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let sled = SledStore::open(tmp.path()).unwrap();
    let (a, b) = (
        mem.allocate_job_id().unwrap(),
        mem.allocate_job_id().unwrap(),
    );
    sled.allocate_job_id().unwrap();
    sled.allocate_job_id().unwrap();
    let meta = |job| Write::JobMeta {
        job,
        payload: format!("meta {job}").into_bytes(),
    };
    let g = vec![
        [events(a, 0, 5), vec![meta(a)]].concat(),
        events(b, 0, 3),
        [events(a, 5, 2), vec![meta(b)]].concat(),
    ];
    for batch in &g {
        mem.apply(batch).unwrap();
    }
    assert!(sled.apply_group(&group_of(&g)).iter().all(Result::is_ok));
    let export = |s: &dyn Store| {
        let mut out = Vec::new();
        backup::export(s, &mut out).unwrap();
        out
    };
    let from_sled = export(&sled);
    let from_mem = export(&mem);
    // The header names the writer's version, the same for both here.
    assert_eq!(
        String::from_utf8(from_sled.clone()).unwrap(),
        String::from_utf8(from_mem).unwrap()
    );
    let tmp2 = tempfile::tempdir().unwrap();
    let again = SledStore::open(tmp2.path()).unwrap();
    backup::import(&from_sled[..], &again).unwrap();
    assert_eq!(export(&again), from_sled);
}
