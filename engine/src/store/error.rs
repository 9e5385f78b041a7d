//! The store layer's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::JobId;

/// Everything that can go wrong in the store.
///
/// `Clone` because the group committer hands the same flush failure to every
/// caller whose batch was in the failed group; that is why I/O errors are
/// held in an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An event was not the next one of its job's log. Nothing of the batch
    /// was applied.
    #[error("event {found} of job {job} is out of order: the log expects event {expected} next")]
    SeqGap {
        job: JobId,
        expected: u64,
        found: u64,
    },

    /// A snapshot claims to cover events the log does not have. Nothing of
    /// the batch was applied.
    #[error(
        "snapshot of job {job} claims to cover event {seq}, but the log only has {have} event(s)"
    )]
    SnapshotAhead { job: JobId, seq: u64, have: u64 },

    /// A write names a job the store never allocated. Nothing of the batch
    /// was applied.
    #[error("job {job} was never allocated by this store")]
    UnknownJob { job: JobId },

    /// A VM is already leased by another job (two plans may not fail the
    /// same VM over at once). No lease of the request was taken.
    #[error("VM `{vm}` is in use by job {holder}; wait for that job to finish or cancel it")]
    LeaseHeld { vm: String, holder: JobId },

    /// The store (or one record in it) was written by a newer drplan.
    #[error(
        "{what} uses format version {found}, but this drplan only understands up to version \
         {supported}; upgrade drplan to read it"
    )]
    NewerFormat {
        what: String,
        found: u16,
        supported: u16,
    },

    /// Bytes on disk are not what they should be.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },

    /// Another process (or another handle in this process) has the store
    /// open.
    #[error(
        "the data directory {} is in use by another drplan process (is `drplan serve` \
         running?); stop it or point DRPLAN_DATA_DIR at another directory",
        dir.display()
    )]
    Locked { dir: PathBuf },

    /// An operating-system I/O error, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<io::Error>,
    },

    /// A flush failed earlier; nothing applied since can be acknowledged as
    /// durable until a flush succeeds again.
    #[error("the store could not make writes durable ({detail}); nothing since was acknowledged")]
    FlushFailed { detail: String },

    /// The group committer has stopped (it was dropped or its thread died).
    #[error("the store's commit thread has stopped")]
    CommitterStopped,
}

impl StoreError {
    /// Whether this is a failure to write the store's directory (read-only
    /// media or mount, no write permission).
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
