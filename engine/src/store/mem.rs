//! An in-memory [`Store`] for tests, able to simulate a crash.
//!
//! It keeps two states: *applied* (what readers see) and *durable* (what a
//! crash would leave). Changes go to `applied` at once and are queued; a
//! flush replays the queue onto `durable`. [`MemStore::crash_copy`] returns a
//! store holding only the durable state, which is what a process restarted
//! after a crash would find. Replaying the queue (instead of cloning the
//! whole state at each flush) keeps a flush proportional to what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::{
    EventVisitor, JobId, Record, RecordVisitor, Store, StoreError, TimerEntry, Write, check_batch,
};

/// The in-memory store. Cheap to create; `Send + Sync`.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    applied: State,
    durable: State,
    /// Changes applied since the last flush, in order.
    pending: Vec<Change>,
    /// Test hook: the next flushes fail (to exercise error paths).
    fail_flushes: u32,
}

#[derive(Debug, Clone)]
enum Change {
    Batch(Vec<Write>),
    AllocateJob,
    Lease(JobId, Vec<String>),
}

#[derive(Debug, Clone)]
struct State {
    next_job: u64,
    events: BTreeMap<JobId, Vec<Vec<u8>>>,
    meta: BTreeMap<JobId, Vec<u8>>,
    snapshots: BTreeMap<JobId, (u64, Vec<u8>)>,
    timers: BTreeSet<TimerEntry>,
    leases: BTreeMap<String, JobId>,
    items: BTreeMap<String, Vec<u8>>,
    texts: BTreeMap<String, String>,
    blobs: BTreeMap<String, Vec<u8>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            // Job ids start at 1 so that 0 can never be mistaken for a job.
            next_job: 1,
            events: BTreeMap::new(),
            meta: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            timers: BTreeSet::new(),
            leases: BTreeMap::new(),
            items: BTreeMap::new(),
            texts: BTreeMap::new(),
            blobs: BTreeMap::new(),
        }
    }
}

impl State {
    /// Applies a change that was already checked.
    fn change(&mut self, change: &Change) {
        match change {
            Change::AllocateJob => self.next_job += 1,
            Change::Lease(job, vms) => {
                for vm in vms {
                    self.leases.insert(vm.clone(), *job);
                }
            }
            Change::Batch(batch) => {
                for write in batch {
                    self.write(write);
                }
            }
        }
    }

    fn write(&mut self, write: &Write) {
        match write {
            Write::Event { job, payload, .. } => {
                self.events.entry(*job).or_default().push(payload.clone())
            }
            Write::JobMeta { job, payload } => {
                self.meta.insert(*job, payload.clone());
            }
            Write::Snapshot { job, seq, payload } => {
                self.snapshots.insert(*job, (*seq, payload.clone()));
            }
            Write::ArmTimer { due_ms, job, timer } => {
                self.timers.insert(TimerEntry {
                    due_ms: *due_ms,
                    job: *job,
                    timer: *timer,
                });
            }
            Write::DisarmTimer { due_ms, job, timer } => {
                self.timers.remove(&TimerEntry {
                    due_ms: *due_ms,
                    job: *job,
                    timer: *timer,
                });
            }
            Write::ReleaseLeases { job } => self.leases.retain(|_, holder| holder != job),
            Write::Item { vm, payload } => {
                self.items.insert(vm.clone(), payload.clone());
            }
            Write::Text { hash, text } => {
                self.texts.insert(hash.clone(), text.clone());
            }
            Write::Blob { key, payload } => match payload {
                Some(p) => {
                    self.blobs.insert(key.clone(), p.clone());
                }
                None => {
                    self.blobs.remove(key);
                }
            },
        }
    }

    fn last_seq(&self, job: JobId) -> Option<u64> {
        self.events
            .get(&job)
            .and_then(|log| (log.len() as u64).checked_sub(1))
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a process restarted after a crash right now would find: only the
    /// flushed changes. The copy's applied and durable states are both that.
    pub fn crash_copy(&self) -> MemStore {
        let inner = self.lock();
        MemStore {
            inner: Mutex::new(Inner {
                applied: inner.durable.clone(),
                durable: inner.durable.clone(),
                pending: Vec::new(),
                fail_flushes: 0,
            }),
        }
    }

    /// Test hook: make the next `n` flushes fail with an I/O error (nothing
    /// becomes durable), to exercise callers' error paths.
    pub fn fail_next_flushes(&self, n: u32) {
        self.lock().fail_flushes = n;
    }

    /// How many changes are applied but not yet flushed.
    pub fn unflushed_changes(&self) -> usize {
        self.lock().pending.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock happens only between a check and a
        // write that cannot fail, so the state is still consistent: recover
        // the guard rather than poisoning every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        // A copy, so that `f` may call back into the store (no lock held).
        let st = self.lock().applied.clone();
        f(Record::NextJob(st.next_job))?;
        for (job, log) in st.events {
            for (seq, payload) in log.into_iter().enumerate() {
                f(Record::Event {
                    job,
                    seq: seq as u64,
                    payload,
                })?;
            }
        }
        for (job, payload) in st.meta {
            f(Record::JobMeta { job, payload })?;
        }
        for (job, (seq, payload)) in st.snapshots {
            f(Record::Snapshot { job, seq, payload })?;
        }
        for t in st.timers {
            f(Record::Timer(t))?;
        }
        for (vm, job) in st.leases {
            f(Record::Lease { vm, job })?;
        }
        for (vm, payload) in st.items {
            f(Record::Item { vm, payload })?;
        }
        for (hash, text) in st.texts {
            f(Record::Text {
                hash,
                text: text.into_bytes(),
            })?;
        }
        for (key, payload) in st.blobs {
            f(Record::Blob { key, payload })?;
        }
        Ok(())
    }

    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let state = &inner.applied;
        check_batch(batch, state.next_job, |job| Ok(state.last_seq(job)))?;
        let change = Change::Batch(batch.to_vec());
        inner.applied.change(&change);
        inner.pending.push(change);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.fail_flushes > 0 {
            inner.fail_flushes -= 1;
            return Err(StoreError::io(
                "flushing the in-memory store",
                std::io::Error::other("injected flush failure"),
            ));
        }
        let pending = std::mem::take(&mut inner.pending);
        for change in &pending {
            inner.durable.change(change);
        }
        Ok(())
    }

    fn allocate_job_id(&self) -> Result<JobId, StoreError> {
        let mut inner = self.lock();
        let id = JobId(inner.applied.next_job);
        inner.applied.change(&Change::AllocateJob);
        inner.pending.push(Change::AllocateJob);
        Ok(id)
    }

    fn acquire_leases(&self, job: JobId, vms: &[String]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if job.0 == 0 || job.0 >= inner.applied.next_job {
            return Err(StoreError::UnknownJob { job });
        }
        for vm in vms {
            if let Some(holder) = inner.applied.leases.get(vm)
                && *holder != job
            {
                return Err(StoreError::LeaseHeld {
                    vm: vm.clone(),
                    holder: *holder,
                });
            }
        }
        let change = Change::Lease(job, vms.to_vec());
        inner.applied.change(&change);
        inner.pending.push(change);
        Ok(())
    }

    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .applied
            .leases
            .iter()
            .map(|(vm, job)| (vm.clone(), *job))
            .collect())
    }

    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        // Copy the requested part out first: calling `f` under the lock would
        // deadlock if `f` used the store.
        let slice: Vec<Vec<u8>> = {
            let inner = self.lock();
            match inner.applied.events.get(&job) {
                Some(log) => {
                    let start = usize::try_from(from_seq).unwrap_or(usize::MAX);
                    log.get(start..).map(<[_]>::to_vec).unwrap_or_default()
                }
                None => Vec::new(),
            }
        };
        for (i, payload) in slice.iter().enumerate() {
            f(from_seq + i as u64, payload)?;
        }
        Ok(())
    }

    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().applied.last_seq(job))
    }

    fn jobs(&self) -> Result<Vec<(JobId, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .applied
            .meta
            .iter()
            .map(|(job, meta)| (*job, meta.clone()))
            .collect())
    }

    fn job_meta(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().applied.meta.get(&job).cloned())
    }

    fn snapshot(&self, job: JobId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self.lock().applied.snapshots.get(&job).cloned())
    }

    fn timers(&self) -> Result<Vec<TimerEntry>, StoreError> {
        Ok(self.lock().applied.timers.iter().copied().collect())
    }

    fn timers_due(&self, now_ms: u64) -> Result<Vec<TimerEntry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .applied
            .timers
            .iter()
            .take_while(|t| t.due_ms <= now_ms)
            .copied()
            .collect())
    }

    fn items(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .applied
            .items
            .iter()
            .map(|(vm, p)| (vm.clone(), p.clone()))
            .collect())
    }

    fn item(&self, vm: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().applied.items.get(vm).cloned())
    }

    fn text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().applied.texts.get(hash).cloned())
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().applied.blobs.get(key).cloned())
    }

    fn blobs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .applied
            .blobs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
