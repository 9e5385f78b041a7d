//! Durable storage behind a [`Store`] trait: job event logs, job metadata,
//! snapshots, a timer index by due time, VM leases, replicated-item records
//! and the exact plan texts jobs ran (by content hash).
//!
//! The store is a key-value log with atomic batches. Nothing written is
//! *acknowledged* until [`Store::flush`] returned: that is the durability
//! barrier (for sled: `flush()` and then `fdatasync` of its data file).
//! Callers that want many concurrent writers to share one flush use the group
//! committer ([`commit::GroupCommitter`]).
//!
//! Layout:
//! - [`Store`]: the contract; [`Write`] is one write of an atomic batch.
//! - [`mem::MemStore`]: in memory, for tests; it keeps the *applied* and the
//!   *durable* (flushed) state apart so a test can simulate a crash
//!   ([`mem::MemStore::crash_copy`]).
//! - [`sled_store::SledStore`]: on disk (sled), with an explicit `fdatasync`
//!   because sled's own flush does not survive a power loss on Linux.
//! - [`commit::GroupCommitter`]: one thread that applies every pending batch
//!   and makes them durable with one flush.
//! - [`codec`]: versioned encoding of the records callers store.
//!
//! The store does not interpret payloads: events, metadata, snapshots and
//! items are opaque bytes (encoded by callers with [`codec`]). What it does
//! enforce: event logs are dense (event `n` follows event `n - 1`), jobs are
//! allocated before use, snapshots cover only existing events, and a VM is
//! leased by at most one job.
//!
//! ```
//! use std::sync::Arc;
//! use drplan_engine::store::{codec, commit::GroupCommitter, mem::MemStore, Store, Write};
//!
//! let store = Arc::new(MemStore::new());
//! let committer = GroupCommitter::new(store.clone());
//! let job = store.allocate_job_id()?;
//! store.acquire_leases(job, &["web1".to_string()])?;
//! // Durable once `commit` returns (it also makes the lease durable).
//! committer.commit(vec![
//!     Write::JobMeta { job, payload: codec::encode(&"test failover of plan web") },
//!     Write::Event { job, seq: 0, payload: codec::encode(&"started") },
//! ])?;
//! // What a restart after a crash would find:
//! let after_crash = store.crash_copy();
//! let events = after_crash.events(job, 0)?;
//! assert_eq!(codec::decode::<String>(&events[0].1)?, "started");
//! assert_eq!(after_crash.leases()?, vec![("web1".to_string(), job)]);
//! # Ok::<(), drplan_engine::store::StoreError>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod backup;
pub mod codec;
pub mod commit;
mod error;
mod leases;
pub mod mem;
pub mod on_flush;
pub mod sled_store;

pub use error::StoreError;

/// A job's identifier, allocated by the store, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One write in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Append event `seq` (dense: 0, 1, 2, ... per job) to a job's log.
    Event {
        job: JobId,
        seq: u64,
        payload: Vec<u8>,
    },
    /// Replace a job's metadata record (its summary: operation, plan, status).
    JobMeta { job: JobId, payload: Vec<u8> },
    /// Replace a job's snapshot (state as of event `seq`, inclusive).
    Snapshot {
        job: JobId,
        seq: u64,
        payload: Vec<u8>,
    },
    /// Arm timer `timer` of `job`, due at `due_ms` (Unix milliseconds).
    ArmTimer { due_ms: u64, job: JobId, timer: u64 },
    /// Disarm a timer (no-op when not armed).
    DisarmTimer { due_ms: u64, job: JobId, timer: u64 },
    /// Release every lease `job` holds.
    ReleaseLeases { job: JobId },
    /// Replace a replicated item's record (one per VM).
    Item { vm: String, payload: Vec<u8> },
    /// Store a plan (or inventory) text under its content hash.
    Text { hash: String, text: String },
    /// Replace (`Some`) or delete (`None`) a generic record under `key`:
    /// state of other components (the simulated fabric's world) that must
    /// be durable in the same batch as the events it explains.
    Blob {
        key: String,
        payload: Option<Vec<u8>>,
    },
}

/// An armed timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerEntry {
    pub due_ms: u64,
    pub job: JobId,
    pub timer: u64,
}

impl Write {
    /// The job this write belongs to, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Write::Event { job, .. }
            | Write::JobMeta { job, .. }
            | Write::Snapshot { job, .. }
            | Write::ArmTimer { job, .. }
            | Write::DisarmTimer { job, .. }
            | Write::ReleaseLeases { job } => Some(*job),
            Write::Item { .. } | Write::Text { .. } | Write::Blob { .. } => None,
        }
    }
}

/// One record of a store, as [`Store::for_each_record`] lists it: what a
/// backup (`store::backup`) copies and a check verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The next job id the store would allocate.
    NextJob(u64),
    Event {
        job: JobId,
        seq: u64,
        payload: Vec<u8>,
    },
    JobMeta {
        job: JobId,
        payload: Vec<u8>,
    },
    Snapshot {
        job: JobId,
        seq: u64,
        payload: Vec<u8>,
    },
    Timer(TimerEntry),
    Lease {
        vm: String,
        job: JobId,
    },
    Item {
        vm: String,
        payload: Vec<u8>,
    },
    /// A plan text or plan model under its key (bytes as stored: a damaged
    /// one need not be UTF-8).
    Text {
        hash: String,
        text: Vec<u8>,
    },
    Blob {
        key: String,
        payload: Vec<u8>,
    },
    /// A key the store cannot place (damage, or a newer drplan's record):
    /// reported by a check, never copied by a backup.
    Unknown {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// What [`Store::for_each_record`] calls with each record.
pub type RecordVisitor<'a> = dyn FnMut(Record) -> Result<(), StoreError> + 'a;

/// What [`Store::for_each_event`] calls with each (seq, payload).
pub type EventVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StoreError> + 'a;

/// Durable storage for jobs, timers, leases, items and plan texts.
///
/// Every method is synchronous and may block on disk I/O: the async runtime
/// calls it from a dedicated thread (the group committer) or
/// `spawn_blocking`.
///
/// Visibility and durability are separate on purpose. A change made by
/// [`Store::apply`], [`Store::allocate_job_id`] or [`Store::acquire_leases`]
/// is visible to every reader at once, but it is durable only once a later
/// [`Store::flush`] has returned `Ok`. Nothing may be acted upon (an effect
/// started, a caller answered) before that flush. After a crash the store
/// holds a prefix of the changes in the order they were made: every change
/// flushed, possibly some later ones, never a later one without an earlier
/// one, never part of a batch.
pub trait Store: Send + Sync {
    /// Applies a batch atomically: all of it or (on error, or across a crash)
    /// none of it. Visible at once, not yet durable.
    ///
    /// Checked before anything is written: each [`Write::Event`] must be the
    /// next of its job ([`StoreError::SeqGap`]), every job must have been
    /// allocated ([`StoreError::UnknownJob`]), and a snapshot may only cover
    /// events the log has once the batch is applied
    /// ([`StoreError::SnapshotAhead`]).
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// Applies a group of batches, in order, as if by [`Store::apply`] one
    /// after the other, and returns one outcome per batch (same order).
    ///
    /// Each batch is checked against the store *plus the batches of the
    /// group accepted before it*; a rejected batch fails only its own
    /// outcome, the others go on. A store may write the accepted batches
    /// together (the group committer calls this once per group, then
    /// flushes once): across a crash the group is then all or nothing, which
    /// still honours the prefix promise below, because no batch of a group
    /// is acknowledged before the group's flush. When that shared write
    /// fails, every accepted batch gets its error.
    ///
    /// The default calls [`Store::apply`] per batch.
    fn apply_group(&self, batches: &[&[Write]]) -> Vec<Result<(), StoreError>> {
        batches.iter().map(|batch| self.apply(batch)).collect()
    }

    /// The durability barrier: when it returns `Ok`, every change made before
    /// it was called is on stable storage (survives a power loss).
    fn flush(&self) -> Result<(), StoreError>;

    /// Allocates a new job id (never reused once flushed; ids start at 1).
    fn allocate_job_id(&self) -> Result<JobId, StoreError>;

    /// Leases every VM of `vms` to `job`, all or none. A VM leased to another
    /// job fails the whole call with [`StoreError::LeaseHeld`] naming the
    /// holder; VMs `job` already holds are fine. Durable at the next flush.
    fn acquire_leases(&self, job: JobId, vms: &[String]) -> Result<(), StoreError>;

    /// Every lease, as (VM, holder), sorted by VM.
    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError>;

    /// Calls `f` with each event of `job` from `from_seq` on, in order,
    /// without loading the whole log (a job may have 100,000 events). Stops
    /// at the first error `f` returns.
    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError>;

    /// The events of `job` from `from_seq` on, as (seq, payload).
    fn events(&self, job: JobId, from_seq: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        self.for_each_event(job, from_seq, &mut |seq, payload| {
            out.push((seq, payload.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// The sequence number of the last event of `job` (`None`: no event).
    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError>;

    /// Every job that has metadata, with it, sorted by id.
    fn jobs(&self) -> Result<Vec<(JobId, Vec<u8>)>, StoreError>;

    /// One job's metadata.
    fn job_meta(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError>;

    /// A job's latest snapshot, as (seq covered, payload).
    fn snapshot(&self, job: JobId) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Every armed timer, sorted by due time (then job, then timer).
    fn timers(&self) -> Result<Vec<TimerEntry>, StoreError>;

    /// Armed timers due at or before `now_ms`, sorted by due time.
    fn timers_due(&self, now_ms: u64) -> Result<Vec<TimerEntry>, StoreError> {
        let mut all = self.timers()?;
        all.retain(|t| t.due_ms <= now_ms);
        Ok(all)
    }

    /// Every replicated-item record, as (VM, payload), sorted by VM.
    fn items(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// One replicated item's record.
    fn item(&self, vm: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A stored plan or inventory text by its content hash.
    fn text(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// One generic record ([`Write::Blob`]).
    ///
    /// The default refuses: a store that keeps no blobs must say so rather
    /// than answer "absent" (a restore would silently start afresh).
    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(no_blobs(key))
    }

    /// Every generic record whose key starts with `prefix`, as (key,
    /// payload), sorted by key (byte order).
    fn blobs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(no_blobs(prefix))
    }

    /// Calls `f` with every record the store holds, one at a time (a store
    /// may hold millions of events), in this order: [`Record::NextJob`],
    /// events (by job, then seq), job metadata, snapshots, timers, leases,
    /// items, texts, blobs (each sorted by key), then unknown keys. Stops
    /// at the first error `f` returns. Backups and `drplan store check`
    /// read the store through this.
    ///
    /// The default refuses: a store that cannot list its records must say
    /// so rather than produce an empty backup.
    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        let _ = f;
        Err(StoreError::io(
            "listing the store's records",
            std::io::Error::other("this store cannot list its records"),
        ))
    }
}

fn no_blobs(key: &str) -> StoreError {
    StoreError::io(
        format!("reading blob `{key}`"),
        std::io::Error::other("this store keeps no blobs"),
    )
}

/// Checks a batch against the store's current state, before anything of it
/// is written, so that a rejected batch leaves no trace.
///
/// `next_job` is the next id the store would allocate; `last_seq` reads the
/// current last event of a job.
pub(crate) fn check_batch(
    batch: &[Write],
    next_job: u64,
    mut last_seq: impl FnMut(JobId) -> Result<Option<u64>, StoreError>,
) -> Result<(), StoreError> {
    // Per job touched by the batch: the number of events its log will have
    // after the events seen so far in this batch.
    let mut len: HashMap<JobId, u64> = HashMap::new();
    for write in batch {
        if let Some(job) = write.job()
            && (job.0 == 0 || job.0 >= next_job)
        {
            return Err(StoreError::UnknownJob { job });
        }
        if let Write::Event { job, seq, .. } = write {
            let have = match len.get(job) {
                Some(n) => *n,
                None => last_seq(*job)?.map_or(0, |s| s + 1),
            };
            if *seq != have {
                return Err(StoreError::SeqGap {
                    job: *job,
                    expected: have,
                    found: *seq,
                });
            }
            len.insert(*job, have + 1);
        }
    }
    // Snapshots are checked against the log as it will be after the whole
    // batch: the batch is atomic, so its order inside does not matter.
    for write in batch {
        if let Write::Snapshot { job, seq, .. } = write {
            let have = match len.get(job) {
                Some(n) => *n,
                None => last_seq(*job)?.map_or(0, |s| s + 1),
            };
            if *seq >= have {
                return Err(StoreError::SnapshotAhead {
                    job: *job,
                    seq: *seq,
                    have,
                });
            }
        }
    }
    Ok(())
}
