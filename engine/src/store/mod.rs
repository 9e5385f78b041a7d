//! Durable storage behind a [`Store`] trait: job event logs, job metadata,
//! snapshots, a timer index by due time, VM leases, replicated-item records
//! and the exact plan texts jobs ran (by content hash).
//!
//! The store is a key-value log with atomic batches. Nothing written is
//! *acknowledged* until [`Store::flush`] returned: that is the durability
//! barrier (for sled: `flush()` and then `fdatasync` of its data file).
//! Callers that want many concurrent writers to share one flush use the group
//! committer (`store::commit`).
//!
//! (Being written: see issue 3. The trait below is the contract.)

use std::fmt;

use serde::{Deserialize, Serialize};

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
}

/// An armed timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerEntry {
    pub due_ms: u64,
    pub job: JobId,
    pub timer: u64,
}
