//! The group committer: grouping, per-ticket outcomes, failure handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drplan_engine::store::commit::GroupCommitter;
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::on_flush::OnFlush;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{EventVisitor, JobId, Store, StoreError, TimerEntry, Write};

fn ev(job: JobId, seq: u64, payload: &str) -> Write {
    Write::Event {
        job,
        seq,
        payload: payload.as_bytes().to_vec(),
    }
}

/// A MemStore whose flush takes a while, like a real fdatasync, and counts
/// flushes: makes grouping certain instead of timing-dependent.
struct SlowFlush {
    inner: MemStore,
    delay: Duration,
    flushes: AtomicU64,
    /// `apply_group` calls: the committer makes one per group.
    groups: AtomicU64,
}

impl Store for SlowFlush {
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }
    fn apply_group(&self, batches: &[&[Write]]) -> Vec<Result<(), StoreError>> {
        self.groups.fetch_add(1, Ordering::SeqCst);
        self.inner.apply_group(batches)
    }
    fn flush(&self) -> Result<(), StoreError> {
        std::thread::sleep(self.delay);
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush()
    }
    fn allocate_job_id(&self) -> Result<JobId, StoreError> {
        self.inner.allocate_job_id()
    }
    fn acquire_leases(&self, job: JobId, vms: &[String]) -> Result<(), StoreError> {
        self.inner.acquire_leases(job, vms)
    }
    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        self.inner.leases()
    }
    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.for_each_event(job, from_seq, f)
    }
    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError> {
        self.inner.last_seq(job)
    }
    fn jobs(&self) -> Result<Vec<(JobId, Vec<u8>)>, StoreError> {
        self.inner.jobs()
    }
    fn job_meta(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.job_meta(job)
    }
    fn snapshot(&self, job: JobId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.snapshot(job)
    }
    fn timers(&self) -> Result<Vec<TimerEntry>, StoreError> {
        self.inner.timers()
    }
    fn items(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.items()
    }
    fn item(&self, vm: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.item(vm)
    }
    fn text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.text(hash)
    }
}

/// 64 writers, each committing `per_writer` batches of 2 events to its own
/// job. Returns (batches, flushes) as the committer counted them.
fn run_writers(store: Arc<dyn Store>, per_writer: u64) -> (u64, u64, u64) {
    let jobs: Vec<JobId> = (0..64).map(|_| store.allocate_job_id().unwrap()).collect();
    let committer = Arc::new(GroupCommitter::new(Arc::clone(&store)));
    std::thread::scope(|scope| {
        for job in &jobs {
            let committer = Arc::clone(&committer);
            scope.spawn(move || {
                for i in 0..per_writer {
                    committer
                        .commit(vec![
                            ev(*job, 2 * i, &format!("{job}/{i}/a")),
                            ev(*job, 2 * i + 1, &format!("{job}/{i}/b")),
                        ])
                        .unwrap();
                }
            });
        }
    });
    for job in &jobs {
        let events = store.events(*job, 0).unwrap();
        assert_eq!(events.len() as u64, 2 * per_writer);
        assert_eq!(events[1].1, format!("{job}/0/b").into_bytes());
    }
    let stats = committer.stats();
    (stats.batches, stats.flushes, stats.largest_group)
}

#[test]
fn one_flush_serves_many_writers() {
    let store = Arc::new(SlowFlush {
        inner: MemStore::new(),
        delay: Duration::from_millis(5),
        flushes: AtomicU64::new(0),
        groups: AtomicU64::new(0),
    });
    let (batches, flushes, largest) = run_writers(store.clone(), 10);
    assert_eq!(batches, 640);
    assert_eq!(flushes, store.flushes.load(Ordering::SeqCst));
    // One store write per group, not per batch.
    assert_eq!(flushes, store.groups.load(Ordering::SeqCst));
    // While one 5 ms flush runs, the other writers queue: a group should
    // hold most of them. One flush per batch would be 640.
    assert!(
        flushes <= 640 / 8,
        "{flushes} flushes for {batches} batches"
    );
    assert!(largest >= 16, "largest group {largest}");
    eprintln!("slow-flush store: {batches} batches, {flushes} flushes, largest group {largest}");
}

#[test]
fn sixty_four_writers_on_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(tmp.path()).unwrap());
    let (batches, flushes, largest) = run_writers(store, 20);
    assert_eq!(batches, 1280);
    assert!(flushes < batches, "{flushes} flushes for {batches} batches");
    eprintln!(
        "sled, 64 writers: {batches} batches, {flushes} flushes ({:.1} batches/flush), largest group {largest}",
        batches as f64 / flushes as f64
    );
}

#[test]
fn a_rejected_batch_fails_only_its_own_ticket() {
    let store = Arc::new(MemStore::new());
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    let t1 = committer.submit(vec![ev(job, 0, "a")]);
    let t2 = committer.submit(vec![ev(job, 5, "gap")]);
    let t3 = committer.submit(vec![ev(job, 1, "b")]);
    assert!(t1.wait().is_ok());
    assert!(matches!(
        t2.wait().unwrap_err(),
        StoreError::SeqGap {
            expected: 1,
            found: 5,
            ..
        }
    ));
    assert!(t3.wait().is_ok());
    // Acknowledged means durable: a crash now keeps both.
    assert_eq!(store.crash_copy().last_seq(job).unwrap(), Some(1));
}

/// On sled, the group is one write: a rejected batch in the middle of a
/// group (events of the same job before and after it) still fails only its
/// own ticket, and what was acknowledged survives a reopen.
#[test]
fn a_rejected_batch_in_a_sled_group_fails_only_its_own_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let job;
    {
        let sled = Arc::new(SledStore::open(tmp.path()).unwrap());
        job = sled.allocate_job_id().unwrap();
        // A slow flush: while the first group flushes, the rest queue up
        // and form the next group.
        let store = Arc::new(OnFlush::new(sled.clone(), |s: &SledStore| {
            std::thread::sleep(Duration::from_millis(30));
            s.flush()
        }));
        let committer = GroupCommitter::new(store);
        let first = committer.submit(Vec::new());
        let tickets = [
            committer.submit(vec![ev(job, 0, "a"), ev(job, 1, "b")]),
            committer.submit(vec![ev(job, 7, "gap")]),
            committer.submit(vec![ev(job, 2, "c")]),
            committer.submit(vec![ev(JobId(42), 0, "unknown job")]),
            committer.submit(vec![ev(job, 3, "d")]),
        ];
        first.wait().unwrap();
        let answers: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
        assert!(
            committer.stats().largest_group >= 2,
            "{:?}",
            committer.stats()
        );
        assert!(answers[0].is_ok() && answers[2].is_ok() && answers[4].is_ok());
        assert!(
            matches!(answers[1], Err(StoreError::SeqGap { expected: 2, .. })),
            "{answers:?}"
        );
        assert!(
            matches!(answers[3], Err(StoreError::UnknownJob { .. })),
            "{answers:?}"
        );
    }
    let sled = SledStore::open(tmp.path()).unwrap();
    let payloads: Vec<_> = sled
        .events(job, 0)
        .unwrap()
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(payloads, ["a", "b", "c", "d"]);
}

#[test]
fn a_failed_flush_fails_its_group_and_a_later_flush_recovers() {
    let store = Arc::new(MemStore::new());
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    store.fail_next_flushes(2);
    let err = committer.commit(vec![ev(job, 0, "a")]).unwrap_err();
    assert!(matches!(err, StoreError::FlushFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("injected"), "{err}");
    // Nothing of it is durable.
    assert_eq!(store.crash_copy().last_seq(job).unwrap(), None);
    // The next group fails too while flushes keep failing...
    let err = committer.commit(vec![ev(job, 1, "b")]).unwrap_err();
    assert!(matches!(err, StoreError::FlushFailed { .. }), "{err:?}");
    // ...and once a flush succeeds, it carries everything applied before.
    committer.commit(vec![ev(job, 2, "c")]).unwrap();
    assert_eq!(store.crash_copy().last_seq(job).unwrap(), Some(2));
}

#[test]
fn an_empty_batch_is_a_durability_barrier() {
    let store = Arc::new(MemStore::new());
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    store.acquire_leases(job, &["vm1".to_string()]).unwrap();
    assert!(store.crash_copy().leases().unwrap().is_empty());
    committer.commit(Vec::new()).unwrap();
    assert_eq!(
        store.crash_copy().leases().unwrap(),
        vec![("vm1".to_string(), job)]
    );
}

#[test]
fn dropping_the_committer_commits_what_is_queued() {
    let store = Arc::new(SlowFlush {
        inner: MemStore::new(),
        delay: Duration::from_millis(2),
        flushes: AtomicU64::new(0),
        groups: AtomicU64::new(0),
    });
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    let tickets: Vec<_> = (0..50)
        .map(|i| committer.submit(vec![ev(job, i, "x")]))
        .collect();
    drop(committer);
    for t in tickets {
        t.wait().unwrap();
    }
    assert_eq!(store.inner.crash_copy().last_seq(job).unwrap(), Some(49));
}

#[test]
fn tickets_can_be_awaited() {
    let store = Arc::new(MemStore::new());
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        committer
            .submit(vec![ev(job, 0, "a")])
            .wait_async()
            .await
            .unwrap();
        let err = committer
            .submit(vec![ev(job, 0, "again")])
            .wait_async()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::SeqGap { .. }), "{err:?}");
    });
    assert_eq!(store.crash_copy().last_seq(job).unwrap(), Some(0));
}

/// A store whose flush panics: the commit thread dies with it.

#[test]
fn a_dead_commit_thread_fails_tickets_instead_of_hanging() {
    let store = Arc::new(OnFlush::new(MemStore::new(), |_| {
        panic!("simulated bug inside the store")
    }));
    let job = store.allocate_job_id().unwrap();
    let committer = GroupCommitter::new(store);
    let err = committer.commit(vec![ev(job, 0, "a")]).unwrap_err();
    assert!(matches!(err, StoreError::CommitterStopped), "{err:?}");
    // Later submissions are answered too, not left waiting forever.
    let (tx, rx) = std::sync::mpsc::channel();
    let later = committer.submit(vec![ev(job, 1, "b")]);
    std::thread::spawn(move || tx.send(later.wait()).unwrap());
    let answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a ticket submitted after the commit thread died was never answered");
    assert!(matches!(answer, Err(StoreError::CommitterStopped)));
}
