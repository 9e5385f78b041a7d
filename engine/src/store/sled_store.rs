//! The on-disk [`Store`], on sled 0.34.
//!
//! # Layout
//! One sled tree, keys by prefix, so that every [`Write`] batch becomes ONE
//! `sled::Batch` (sled makes a batch atomic, also across a crash, only
//! within one tree):
//!
//! | key | value |
//! | --- | --- |
//! | `meta/format` | store format version, `u16` big-endian |
//! | `meta/next_job` | next job id, `u64` big-endian |
//! | `e/<job be64><seq be64>` | event payload, or a *run* of events from `seq` (below) |
//! | `m/<job be64>` | job metadata |
//! | `s/<job be64>` | snapshot: seq `be64`, then payload |
//! | `t/<due be64><job be64><timer be64>` | empty (a timer index by due time) |
//! | `l/<vm>` | holder job, `be64` |
//! | `i/<vm>` | replicated-item record |
//! | `x/<hash>` | plan or inventory text (UTF-8) |
//! | `b/<key>` | generic record ([`Write::Blob`]) |
//!
//! Big-endian integers make sled's byte order the numeric order, so a
//! job's events and the timers come out of a prefix scan already sorted.
//!
//! # Groups and event runs
//! [`Store::apply_group`] (the group committer's one call per group; `apply`
//! is a group of one) checks each batch against the store plus the batches
//! of the group accepted before it, then writes every accepted batch with
//! ONE `sled::Batch` (later writes of a key win; `meta/generation` moves
//! once per group). The events of one job accepted in one group are ONE
//! value, a *run*, under the key of its first event: `DRRN`, the run
//! version, the event count (`u32` big-endian), then the *body*: per event
//! its length (`u32` big-endian) and its payload (the unchanged `codec`
//! record). Version 1 stores the body as it is; version 2 (store format 3)
//! stores its length (`u32` big-endian) and the body as one LZ4 block,
//! written whenever that is smaller (a group's JSON events repeat their
//! field names: 7.5× smaller in a planned 10 × 100 failover; bodies over
//! 1 MiB stay plain). A run is cut at about 32 KiB. A lone event stays a
//! plain value (unless its payload itself opens with `DRRN`: then it is a
//! run of one). Why: sled
//! keeps a leaf's keys together and rewrites the leaf as it grows, so one
//! key per event (and one `apply_batch` per event) had a planned 10 × 100
//! failover write ~245 MiB; one key per job per group and one `apply_batch`
//! per group write ~25× less, with the CPU to match (docs/store.md).
//!
//! Readers see events, never runs: `for_each_event` starts at the last key
//! at or before `from_seq` (a reverse range look-up finds the run holding
//! it), `last_seq` reads the last key's run, `for_each_record` lists one
//! `Record::Event` per event (so exports do not depend on grouping). A
//! malformed run is [`StoreError::Corrupt`] naming the job and the key.
//! Stores of format 1 (one plain value per event) and 2 (plain runs) read
//! as they are; their first write records the current [`STORE_FORMAT`].
//!
//! # Leases
//! A job's leases are one value, `L/<job>` (format 4; `store::leases`),
//! checked against an in-memory index of every holder. Per-VM `l/<vm>`
//! keys of older stores are honoured and released as before.
//!
//! # Durability
//! sled's `flush()` writes its log buffers with `pwrite` and then, on Linux,
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`. That pushes the pages
//! to the device but flushes neither the device's volatile write cache nor
//! the file's metadata (its size, when the log grew), so a flushed write can
//! still vanish on power loss. [`SledStore::flush`] therefore follows
//! `db.flush()` with `fdatasync` of sled's log file, `<dir>/db`, through a
//! descriptor of our own (`fdatasync` acts on the inode, so it covers the
//! pages sled wrote through its descriptor). What else sled writes:
//! - `blobs/<lsn>`: values too large for a log segment (over about 128 KiB
//!   with the default 512 KiB segments) are written to their own file, which
//!   sled never syncs. A flush syncs every blob file it has not synced yet
//!   and the `blobs` directory.
//! - `snap.<lsn>`: a snapshot of the page table, synced by sled before it is
//!   renamed into place, but the rename is not made durable; a flush that
//!   sees a new snapshot name fsyncs the directory. (Recovery still works
//!   from an older snapshot plus the log.)
//! - `conf`: written once at creation; the directory is fsynced at creation
//!   (after the marker file `drplan.store` that tells a new store from a
//!   damaged one).
//!
//! One `fdatasync` per flush, not per event: the group committer
//! (`store::commit`) makes one flush serve many writers.
//!
//! After a failed `fdatasync` the kernel may have dropped the dirty pages and
//! cleared the error, so a retry could "succeed" without the data: the store
//! refuses every later flush until it is reopened (the PostgreSQL "fsyncgate"
//! lesson).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::leases::{LeaseIndex, decode_set, encode_set};
use super::{
    EventVisitor, JobId, Record, RecordVisitor, Store, StoreError, TimerEntry, Write, check_batch,
};

/// The store format version this build writes and the newest it opens.
///
/// - 1: one key per event, the value the event's payload.
/// - 2: also event *runs*: the events of one job written by one group
///   commit under the key of the first, in one value (see the module docs).
///   A format-1 store opens and reads as it is; its first write marks it
///   format 2, so that a drplan that knows only format 1 refuses it
///   ([`StoreError::NewerFormat`]) instead of misreading a run as one event.
/// - 3: runs may be LZ4-compressed (run version 2). A format-1 or format-2
///   store opens and reads as it is; its first write marks it format 3, so
///   that a drplan that knows only plain runs refuses it.
/// - 4: a job's leases are one value, `L/<job>` (see `store::leases`), not
///   one `l/<vm>` key per VM. Older stores' per-VM leases are read as they
///   are and released as before; the first write marks the store format 4,
///   so that a drplan that knows only per-VM leases (and would take a VM
///   leased in a set for free) refuses it.
/// - 5: a stored plan model may name the `Phases` compile layout
///   (`plan::model::CompileLayout`). A drplan that knows only per-group
///   compilation would ignore the field and recompile such a job to other
///   step numbers, misreading its whole log, so it must refuse the store.
///   Nothing else changed: an older store opens as it is and its first
///   write marks it format 5.
pub const STORE_FORMAT: u16 = 5;

const KEY_FORMAT: &[u8] = b"meta/format";
const KEY_NEXT_JOB: &[u8] = b"meta/next_job";
/// A counter bumped by every batch (see [`SledStore::generation`]).
const KEY_GENERATION: &[u8] = b"meta/generation";
const P_EVENT: &[u8] = b"e/";
const P_META: &[u8] = b"m/";
const P_SNAP: &[u8] = b"s/";
const P_TIMER: &[u8] = b"t/";
/// Per-VM leases of formats 1–3: `l/<vm>` → the holder.
const P_LEASE: &[u8] = b"l/";
/// A job's lease set (format 4): `L/<job>` → its VMs (`store::leases`).
const P_JOB_LEASES: &[u8] = b"L/";
const P_ITEM: &[u8] = b"i/";
const P_TEXT: &[u8] = b"x/";
const P_BLOB: &[u8] = b"b/";

/// Our own lock file. sled locks `<dir>/db` too, but only reports that as
/// an I/O error with a message; our lock gives a clean [`StoreError::Locked`]
/// and is taken before sled touches anything.
const LOCK_FILE: &str = "drplan.lock";

/// Written (and synced) once the store is initialised. sled reads a damaged
/// or truncated log as an empty database; this file is how we tell "new"
/// from "lost".
const MARKER_FILE: &str = "drplan.store";

/// The data directory: `DRPLAN_DATA_DIR` if set, else the user's data
/// directory + `/drplan` (`$XDG_DATA_HOME` or `~/.local/share` on Linux,
/// `~/Library/Application Support` on macOS, `%APPDATA%` on Windows).
pub fn default_data_dir() -> Result<PathBuf, StoreError> {
    data_dir_from(|name| std::env::var_os(name))
}

/// [`default_data_dir`] with the environment given as a function (so that
/// it can be tested without changing the process environment).
pub fn data_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StoreError> {
    if let Some(dir) = env("DRPLAN_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    user_data_dir(&env)
        .map(|d| d.join("drplan"))
        .ok_or_else(|| {
            StoreError::io(
                "finding the data directory",
                std::io::Error::other("no home directory is known; set DRPLAN_DATA_DIR"),
            )
        })
}

fn user_data_dir(env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if cfg!(windows) {
        return env("APPDATA").and_then(absolute);
    }
    let home = env("HOME").and_then(absolute);
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Application Support"));
    }
    env("XDG_DATA_HOME")
        .and_then(absolute)
        .or_else(|| home.map(|h| h.join(".local/share")))
}

/// The sled-backed store. Opening it locks its directory for this process.
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    /// `<dir>/db`, opened by us to `fdatasync` it.
    data_file: File,
    /// Held (and flock-ed) for as long as the store is open.
    _lock: File,
    /// Serializes writers: a batch's checks (dense sequence, leases) and its
    /// write must not interleave with another writer's.
    write_lock: Mutex<()>,
    /// Files and names the last flush made durable (see module docs).
    synced: Mutex<Synced>,
    /// Set when an fdatasync failed: no flush may succeed after that.
    poisoned: AtomicBool,
    /// Test hook: the next fdatasync reports an I/O error.
    inject_sync_failure: AtomicBool,
    /// The batch counter (`meta/generation`), and its value at open: a
    /// clean close that changed it records it in the marker file.
    generation: AtomicU64,
    opened_generation: u64,
    /// The format version `meta/format` holds: below [`STORE_FORMAT`] for
    /// an older store until its first write records the new one.
    format_on_disk: AtomicU16,
    /// Who holds which VM (read at open, changed after each write of
    /// leases succeeded, under the writer lock).
    leases: Mutex<LeaseIndex>,
    /// The last event of each job a group wrote (or looked up to check a
    /// batch), so that checking the next batch of a running job does not
    /// read and decompress its last run again. Events are written only by
    /// `apply_group`, under the writer lock, which keeps this in step.
    last_seqs: Mutex<HashMap<JobId, u64>>,
    /// Set when this is a private copy of a store that could not be opened
    /// in place ([`SledStore::open_for_reading`]): removed after the rest
    /// (fields drop in order, so the database is closed first).
    read_copy: Option<ReadCopy>,
}

/// A private copy of a store, removed when dropped.
struct ReadCopy(PathBuf);

impl Drop for ReadCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// While alive, files this process creates are private (umask 077): the
/// store's own files (`conf`, `db`, `blobs/`, the lock and marker files)
/// are created 0600 and its directories 0700, not only the data directory.
/// Process-wide, so it is held only while a store opens (before any
/// script runs); files sled creates later (`snap.*`) are tightened by
/// [`tighten`] at the next open.
struct PrivateUmask(libc::mode_t);

impl PrivateUmask {
    fn set() -> PrivateUmask {
        // SAFETY: umask has no preconditions and cannot fail.
        PrivateUmask(unsafe { libc::umask(0o077) })
    }
}

impl Drop for PrivateUmask {
    fn drop(&mut self) {
        // SAFETY: as above; restores the mask found at `set`.
        unsafe { libc::umask(self.0) };
    }
}

/// Makes the files of a store directory private (0600, directories 0700),
/// one level into its subdirectories (`blobs/`): a store written by an
/// older drplan, or a snapshot file sled created since. Best effort: a
/// file of another owner or on read-only media is left as it is.
fn tighten(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if meta.is_dir() {
            if meta.permissions().mode() & 0o077 != 0 {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
            }
            if entry.file_name() == "blobs" {
                tighten(&path);
            }
        } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        }
    }
}

/// Copies a store's files (`db`, `conf`, `blobs/`, `snap.*`, the marker)
/// into a new private directory under the temporary directory.
fn copy_store(dir: &Path) -> Result<ReadCopy, StoreError> {
    let base = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let to = base.join(format!("drplan-read-{}-{nanos}", std::process::id()));
    let copy = ReadCopy(to.clone());
    let io = |what: &str, p: &Path, e| StoreError::io(format!("{what} {}", p.display()), e);
    private_dir_builder()
        .create(&to)
        .map_err(|e| io("creating", &to, e))?;
    let copy_dir = |from: &Path, to: &Path| -> Result<(), StoreError> {
        for entry in fs::read_dir(from).map_err(|e| io("reading", from, e))? {
            let entry = entry.map_err(|e| io("reading", from, e))?;
            let path = entry.path();
            if path.is_file() && entry.file_name() != LOCK_FILE {
                let dest = to.join(entry.file_name());
                fs::copy(&path, &dest).map_err(|e| io("copying", &path, e))?;
                // The copy must be writable (sled opens it for writing);
                // `fs::copy` kept the read-only source's mode.
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))
                    .map_err(|e| io("copying", &path, e))?;
            }
        }
        Ok(())
    };
    copy_dir(dir, &to)?;
    let blobs = dir.join("blobs");
    if blobs.is_dir() {
        let dest = to.join("blobs");
        private_dir_builder()
            .create(&dest)
            .map_err(|e| io("creating", &dest, e))?;
        copy_dir(&blobs, &dest)?;
    }
    Ok(copy)
}

/// Jobs [`SledStore`] remembers the last event of; past this the memory
/// starts afresh (a miss only costs a read).
const LAST_SEQS_KEPT: usize = 65_536;

#[derive(Default)]
struct Synced {
    blobs: HashSet<OsString>,
    snapshots: HashSet<OsString>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

/// Creates missing directories readable by their owner only.
fn private_dir_builder() -> fs::DirBuilder {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`. Directories it
    /// creates are private to the user (0700 on Unix): a store holds plans,
    /// job histories and script output. An existing directory keeps its
    /// permissions (`drplan serve` tightens its own, for its socket); the
    /// files inside are created private (0600, umask 077 while opening)
    /// and tightened at each open (see docs/store.md).
    ///
    /// Errors: [`StoreError::Locked`] when another process (or another handle
    /// in this one) has it open, [`StoreError::NewerFormat`] when a newer
    /// drplan wrote it, [`StoreError::Corrupt`] when it is damaged.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let umask = PrivateUmask::set();
        let store = SledStore::open_private(dir);
        drop(umask);
        if store.is_ok() {
            tighten(dir);
        }
        store
    }

    /// Opens the store in `dir` for reading only (`show`, `jobs`, `report`,
    /// `store check`). When it cannot be opened in place because its
    /// directory cannot be written (read-only media or mount, no write
    /// permission: the store's lock and log need writes), a private copy in
    /// the temporary directory is opened instead and removed when closed:
    /// the reader sees the store as it is, and whatever the open writes
    /// (sled's recovery, the lock) goes to the copy. Never use it to run
    /// jobs: their events would be lost with the copy.
    pub fn open_for_reading(dir: &Path) -> Result<SledStore, StoreError> {
        match SledStore::open(dir) {
            Err(e) if e.is_read_only() && dir.join("db").is_file() => {
                tracing::info!(dir = %dir.display(), error = %e, "the store is read-only; reading a private copy");
                let copy = copy_store(dir)?;
                let umask = PrivateUmask::set();
                let store = SledStore::open_private(&copy.0);
                drop(umask);
                let mut store = store?;
                store.read_copy = Some(copy);
                Ok(store)
            }
            other => other,
        }
    }

    /// Whether this is a private copy of a read-only store
    /// ([`SledStore::open_for_reading`]).
    pub fn is_read_copy(&self) -> bool {
        self.read_copy.is_some()
    }

    fn open_private(dir: &Path) -> Result<SledStore, StoreError> {
        let created_dir = !dir.exists();
        private_dir_builder()
            .create(dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        if created_dir && let Some(parent) = dir.parent() {
            // Make the new directory's name durable in its parent.
            sync_dir(parent)?;
        }
        let lock = lock_dir(dir)?;
        let marked = dir.join(MARKER_FILE).exists();
        let db = open_sled(dir)?;
        let data_file = File::options()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .map_err(|e| StoreError::io(format!("opening {}", dir.join("db").display()), e))?;
        let mut store = SledStore {
            dir: dir.to_path_buf(),
            db,
            data_file,
            _lock: lock,
            write_lock: Mutex::new(()),
            synced: Mutex::new(Synced::default()),
            poisoned: AtomicBool::new(false),
            inject_sync_failure: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            opened_generation: 0,
            format_on_disk: AtomicU16::new(STORE_FORMAT),
            leases: Mutex::new(LeaseIndex::default()),
            last_seqs: Mutex::new(HashMap::new()),
            read_copy: None,
        };
        let format = store.check_format(marked)?;
        store.format_on_disk.store(format, Ordering::SeqCst);
        let generation = match store.get(KEY_GENERATION)? {
            Some(v) => be64(&v, "store generation")?,
            None => 0,
        };
        store.generation.store(generation, Ordering::SeqCst);
        store.opened_generation = generation;
        store.leases = Mutex::new(store.read_leases()?);
        // The marker records the generation of the last clean close. A log
        // that opens at an older one lost data that was durable (sled reads
        // a damaged message as the end of its log, silently): refuse it
        // rather than run on a past that operators already acted upon.
        if let Some(seen) = read_marker_generation(&dir.join(MARKER_FILE))
            && generation < seen
        {
            return Err(StoreError::corrupt(
                format!("store in {}", dir.display()),
                format!(
                    "its log ends at write {generation}, but it held {seen} writes when drplan \
                     last closed it: the `db` file is damaged or was replaced by an older copy \
                     (restore a backup with `drplan store import`)"
                ),
            ));
        }
        Ok(store)
    }

    /// Test hook: the next flush's `fdatasync` fails as if the disk
    /// returned EIO, to exercise what follows a failed sync.
    #[doc(hidden)]
    pub fn inject_sync_failure(&self) {
        self.inject_sync_failure.store(true, Ordering::SeqCst);
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks (or, for a new store, writes) the format marker; returns the
    /// format version the store holds.
    fn check_format(&self, marked: bool) -> Result<u16, StoreError> {
        match self.get(KEY_FORMAT)? {
            Some(v) => {
                let found = match <[u8; 2]>::try_from(v.as_ref()) {
                    Ok(b) => u16::from_be_bytes(b),
                    Err(_) => {
                        return Err(StoreError::corrupt(
                            format!("store format marker in {}", self.dir.display()),
                            format!("{} byte(s) instead of 2", v.len()),
                        ));
                    }
                };
                if found > STORE_FORMAT {
                    return Err(StoreError::NewerFormat {
                        what: format!("the store in {}", self.dir.display()),
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                if found == 0 {
                    return Err(StoreError::corrupt(
                        format!("store format marker in {}", self.dir.display()),
                        "version 0 was never written",
                    ));
                }
                if !marked {
                    // A crash between initialising and writing the marker.
                    self.write_marker()?;
                }
                Ok(found)
            }
            // sled reads a damaged log as a shorter (even empty) one. The
            // marker file says this store was initialised, so an empty tree
            // means its data was lost: refuse rather than start afresh.
            None if marked => Err(StoreError::corrupt(
                format!("store in {}", self.dir.display()),
                format!(
                    "it was initialised ({MARKER_FILE} exists) but its log holds no data: \
                     the `db` file is damaged or was replaced"
                ),
            )),
            None if self.db.is_empty() => {
                let mut batch = sled::Batch::default();
                batch.insert(KEY_FORMAT, &STORE_FORMAT.to_be_bytes());
                batch.insert(KEY_NEXT_JOB, &1u64.to_be_bytes());
                self.db
                    .apply_batch(batch)
                    .map_err(|e| self.sled_err("initialising the store", e))?;
                self.flush()?;
                // Only once the format is durable: the marker (and, with the
                // directory fsync, the names of `db`, `conf` and `blobs/`).
                self.write_marker()?;
                Ok(STORE_FORMAT)
            }
            None => Err(StoreError::corrupt(
                format!("store in {}", self.dir.display()),
                "it holds data but no format marker (not a drplan store?)",
            )),
        }
    }

    fn write_marker(&self) -> Result<(), StoreError> {
        self.write_marker_with(self.generation.load(Ordering::SeqCst))
    }

    /// Writes the marker (a temporary file renamed over it, so a crash
    /// never leaves it half written) and makes it durable.
    fn write_marker_with(&self, generation: u64) -> Result<(), StoreError> {
        let path = self.dir.join(MARKER_FILE);
        let tmp = self.dir.join(format!("{MARKER_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            // Private from creation (written at close, outside the
            // umask of `open`).
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                File::options()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?
            };
            std::io::Write::write_all(
                &mut &f,
                format!("drplan store, format {STORE_FORMAT}\ngeneration {generation}\n")
                    .as_bytes(),
            )?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
        sync_dir(&self.dir)
    }

    fn sled_err(&self, doing: &str, e: sled::Error) -> StoreError {
        map_sled_error(&self.dir, doing, e)
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db
            .get(key)
            .map_err(|e| self.sled_err("reading the store", e))
    }

    fn next_job(&self) -> Result<u64, StoreError> {
        match self.get(KEY_NEXT_JOB)? {
            Some(v) => be64(&v, "next job id"),
            None => Err(StoreError::corrupt("next job id", "missing")),
        }
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data of its own; poisoning carries no meaning.
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every lease key as read: per-VM keys of older formats, lease sets,
    /// and what does not decode (described for a message).
    fn lease_keys(&self) -> Result<Vec<LeaseKey>, StoreError> {
        let mut keys = Vec::new();
        for entry in self.scan(P_LEASE) {
            let (k, v) = entry?;
            keys.push(match (key_str(&k, "lease"), be64(&v, "lease holder")) {
                (Ok(vm), Ok(job)) => LeaseKey::PerVm(vm, JobId(job)),
                _ => LeaseKey::Damaged(format!("the lease key {}", show_key(&k))),
            });
        }
        for entry in self.scan(P_JOB_LEASES) {
            let (k, v) = entry?;
            keys.push(match (job_lease_key_job(&k), decode_set(&v)) {
                (Some(job), Ok(vms)) => LeaseKey::Set(job, vms),
                (None, _) => LeaseKey::Damaged(format!("the lease key {}", show_key(&k))),
                (Some(job), Err(e)) => LeaseKey::Damaged(format!("the leases of job {job}: {e}")),
            });
        }
        Ok(keys)
    }

    /// The lease index, from both kinds of lease keys. A key that does not
    /// decode is recorded as damage (refusing leases until it is repaired)
    /// rather than refusing the whole store: `store check` and exports
    /// still work.
    fn read_leases(&self) -> Result<LeaseIndex, StoreError> {
        let mut index = LeaseIndex::default();
        for key in self.lease_keys()? {
            match key {
                LeaseKey::PerVm(vm, job) => index.add_legacy(vm, job),
                LeaseKey::Set(job, vms) => index.add_set(job, vms),
                LeaseKey::Damaged(what) => index.add_damaged(what),
            }
        }
        Ok(index)
    }

    /// One `Record::Lease` per leased VM, sorted by VM, from both kinds of
    /// lease keys as they are on disk (a damaged key is left to the
    /// unknown-key pass of `for_each_record`).
    fn visit_leases(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        let mut leases = Vec::new();
        for key in self.lease_keys()? {
            match key {
                LeaseKey::PerVm(vm, job) => leases.push((vm, job)),
                LeaseKey::Set(job, vms) => leases.extend(vms.into_iter().map(|vm| (vm, job))),
                LeaseKey::Damaged(_) => {}
            }
        }
        leases.sort();
        leases
            .into_iter()
            .try_for_each(|(vm, job)| f(Record::Lease { vm, job }))
    }

    fn lease_index(&self) -> MutexGuard<'_, LeaseIndex> {
        // Changed only after a successful write, in one call: a panic
        // cannot leave it half-updated.
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + '_ {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map_err(|e| self.sled_err("reading the store", e)))
    }

    /// Makes new blob files and a new snapshot name durable (module docs).
    fn sync_side_files(&self) -> Result<(), StoreError> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let blob_dir = self.dir.join("blobs");
        let mut blobs = HashSet::new();
        let mut new_blob = false;
        if let Ok(entries) = fs::read_dir(&blob_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !synced.blobs.contains(&name) {
                    // sled may garbage-collect a blob between listing and
                    // opening it; a vanished blob needs no sync.
                    if let Ok(f) = File::open(entry.path()) {
                        f.sync_all().map_err(|e| {
                            StoreError::io(format!("syncing {}", entry.path().display()), e)
                        })?;
                    }
                    new_blob = true;
                }
                blobs.insert(name);
            }
        }
        if new_blob {
            sync_dir(&blob_dir)?;
        }
        synced.blobs = blobs;
        let mut snapshots = HashSet::new();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| StoreError::io(format!("listing {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let s = name.to_string_lossy();
            if s.starts_with("snap.") && !s.ends_with(".generating") && !s.ends_with("in___motion")
            {
                snapshots.insert(name);
            }
        }
        if snapshots != synced.snapshots {
            sync_dir(&self.dir)?;
            synced.snapshots = snapshots;
        }
        Ok(())
    }

    /// Adds one accepted batch's writes to the group's sled batch (events
    /// to the group's runs). Later writes of a key replace earlier ones:
    /// `sled::Batch` keeps the last write of each key.
    fn add_writes<'a>(
        &self,
        batch: &'a [Write],
        out: &mut sled::Batch,
        runs: &mut RunBuilder<'a>,
        group_last: &mut HashMap<JobId, u64>,
        released: &mut Vec<JobId>,
    ) -> Result<(), StoreError> {
        for write in batch {
            match write {
                Write::Event { job, seq, payload } => {
                    runs.push(*job, *seq, payload);
                    group_last.insert(*job, *seq);
                }
                Write::JobMeta { job, payload } => {
                    out.insert(job_key(P_META, *job), payload.as_slice())
                }
                Write::Snapshot { job, seq, payload } => {
                    let mut v = Vec::with_capacity(8 + payload.len());
                    v.extend_from_slice(&seq.to_be_bytes());
                    v.extend_from_slice(payload);
                    out.insert(job_key(P_SNAP, *job), v);
                }
                Write::ArmTimer { due_ms, job, timer } => {
                    out.insert(timer_key(*due_ms, *job, *timer), &[][..])
                }
                Write::DisarmTimer { due_ms, job, timer } => {
                    out.remove(timer_key(*due_ms, *job, *timer))
                }
                Write::ReleaseLeases { job } => {
                    out.remove(job_key(P_JOB_LEASES, *job));
                    // Leases are written only by `acquire_leases`, never by a
                    // batch, so the tree holds them as this group sees them.
                    if self.lease_index().is_legacy(*job) {
                        for entry in self.scan(P_LEASE) {
                            let (k, v) = entry?;
                            if be64(&v, "lease holder")? == job.0 {
                                out.remove(k);
                            }
                        }
                    }
                    released.push(*job);
                }
                Write::Item { vm, payload } => out.insert(str_key(P_ITEM, vm), payload.as_slice()),
                Write::Text { hash, text } => out.insert(str_key(P_TEXT, hash), text.as_bytes()),
                Write::Blob { key, payload } => match payload {
                    Some(p) => out.insert(str_key(P_BLOB, key), p.as_slice()),
                    None => out.remove(str_key(P_BLOB, key)),
                },
            }
        }
        Ok(())
    }

    /// Calls `f` with each event one event key holds (one, or a run's).
    fn visit_value(
        &self,
        key: &[u8],
        value: &[u8],
        f: &mut JobEventVisitor<'_>,
    ) -> Result<(), StoreError> {
        let (job, first) = event_key_parts(key)?;
        if !is_run(value) {
            return f(job, first, value);
        }
        let run = decode_run(job, key, first, value)?;
        for (i, payload) in run.payloads().enumerate() {
            f(job, first + i as u64, payload)?;
        }
        Ok(())
    }

    fn poison(&self, detail: String) -> StoreError {
        self.poisoned.store(true, Ordering::SeqCst);
        StoreError::FlushFailed { detail }
    }
}

impl Store for SledStore {
    fn for_each_record(&self, f: &mut RecordVisitor<'_>) -> Result<(), StoreError> {
        f(Record::NextJob(self.next_job()?))?;
        // One scan per kind, in the order the trait promises; a key of a
        // known prefix that does not parse is left to the last pass.
        for prefix in [
            P_EVENT, P_META, P_SNAP, P_TIMER, P_LEASE, P_ITEM, P_TEXT, P_BLOB,
        ] {
            if prefix == P_LEASE {
                self.visit_leases(f)?;
                continue;
            }
            for entry in self.scan(prefix) {
                let (k, v) = entry?;
                if is_event_key(&k) {
                    // One record per event, whether the key holds one or
                    // a run: exports do not depend on how events were
                    // grouped when written.
                    self.visit_value(&k, &v, &mut |job, seq, payload| {
                        f(Record::Event {
                            job,
                            seq,
                            payload: payload.to_vec(),
                        })
                    })?;
                } else if let Some(record) = classify(&k, &v) {
                    f(record)?;
                }
            }
        }
        for entry in self.db.iter() {
            let (k, v) = entry.map_err(|e| self.sled_err("reading the store", e))?;
            if k == KEY_FORMAT
                || k == KEY_NEXT_JOB
                || k == KEY_GENERATION
                // Listed above, run or not (without copying a run's value).
                || is_event_key(&k)
                || lease_set(&k, &v).is_some()
                || classify(&k, &v).is_some()
            {
                continue;
            }
            f(Record::Unknown {
                key: k.to_vec(),
                value: v.to_vec(),
            })?;
        }
        Ok(())
    }

    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        // One code path for both: a lone batch is a group of one (its
        // events of one job become one run too).
        self.apply_group(&[batch])
            .pop()
            .unwrap_or_else(|| Err(StoreError::corrupt("a batch", "no outcome")))
    }

    fn apply_group(&self, batches: &[&[Write]]) -> Vec<Result<(), StoreError>> {
        let _w = self.writer();
        let next_job = match self.next_job() {
            Ok(n) => n,
            Err(e) => return vec![Err(e); batches.len()],
        };
        let mut outcomes = Vec::with_capacity(batches.len());
        // The last event of every job a batch accepted so far in this group
        // has: later batches are checked against the store plus these.
        let mut group_last: HashMap<JobId, u64> = HashMap::new();
        let mut runs = RunBuilder::default();
        let mut out = sled::Batch::default();
        // Jobs whose leases this group removes: the index forgets them once
        // the write succeeded.
        let mut released = Vec::new();
        let mut accepted = 0usize;
        let mut known = self.last_seqs.lock().unwrap_or_else(|e| e.into_inner());
        for batch in batches {
            let checked = check_batch(batch, next_job, |job| {
                if let Some(seq) = group_last.get(&job).or_else(|| known.get(&job)) {
                    return Ok(Some(*seq));
                }
                let last = self.last_seq(job)?;
                if let Some(seq) = last {
                    known.insert(job, seq);
                }
                Ok(last)
            });
            if let Err(e) = checked {
                outcomes.push(Err(e));
                continue;
            }
            if let Err(e) =
                self.add_writes(batch, &mut out, &mut runs, &mut group_last, &mut released)
            {
                // Only a failed read of the leases can get here; what this
                // batch added to `out` would be half a batch, so the group
                // cannot be written: fail the batches accepted so far too.
                return fail_accepted(outcomes, Err(e), batches.len());
            }
            accepted += 1;
            outcomes.push(Ok(()));
        }
        if accepted == 0 {
            return outcomes;
        }
        runs.finish_into(&mut out);
        // Under the write lock: generations are written in group order. The
        // in-memory counter moves only once the write succeeded, so a failed
        // write never makes a clean close record a generation the log lacks.
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        out.insert(KEY_GENERATION, &generation.to_be_bytes());
        let bump_format = self.format_on_disk.load(Ordering::SeqCst) < STORE_FORMAT;
        if bump_format {
            // The first write to an older store: it may write runs, which
            // an older drplan would misread; record the new format with it.
            out.insert(KEY_FORMAT, &STORE_FORMAT.to_be_bytes());
        }
        match self.db.apply_batch(out) {
            Ok(()) => {
                if known.len() + group_last.len() > LAST_SEQS_KEPT {
                    known.clear();
                }
                known.extend(group_last);
                self.generation.store(generation, Ordering::SeqCst);
                if bump_format {
                    self.format_on_disk.store(STORE_FORMAT, Ordering::SeqCst);
                }
                if !released.is_empty() {
                    let mut index = self.lease_index();
                    for job in released {
                        index.released(job);
                    }
                }
                outcomes
            }
            Err(e) => {
                // Whatever sled kept of the group, the store is read again.
                known.clear();
                let e = self.sled_err("writing a batch", e);
                fail_accepted(outcomes, Err(e), batches.len())
            }
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::FlushFailed {
                detail: format!(
                    "an earlier flush of {} failed; restart drplan so that it reopens the store \
                     and sees what actually reached the disk",
                    self.dir.display()
                ),
            });
        }
        self.db.flush().map_err(|e| {
            self.poison(format!(
                "sled could not write its log in {}: {e}",
                self.dir.display()
            ))
        })?;
        self.sync_side_files()
            .map_err(|e| self.poison(e.to_string()))?;
        let synced = if self.inject_sync_failure.swap(false, Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            self.data_file.sync_data()
        };
        synced.map_err(|e| {
            self.poison(format!(
                "fdatasync of {} failed: {e}",
                self.dir.join("db").display()
            ))
        })
    }

    fn allocate_job_id(&self) -> Result<JobId, StoreError> {
        let _w = self.writer();
        let id = self.next_job()?;
        self.db
            .insert(KEY_NEXT_JOB, &(id + 1).to_be_bytes())
            .map_err(|e| self.sled_err("allocating a job id", e))?;
        Ok(JobId(id))
    }

    fn acquire_leases(&self, job: JobId, vms: &[String]) -> Result<(), StoreError> {
        let _w = self.writer();
        if job.0 == 0 || job.0 >= self.next_job()? {
            return Err(StoreError::UnknownJob { job });
        }
        let Some(set) = self.lease_index().plan_acquire(job, vms)? else {
            return Ok(());
        };
        let key = job_key(P_JOB_LEASES, job);
        let value = encode_set(&set);
        let bump_format = self.format_on_disk.load(Ordering::SeqCst) < STORE_FORMAT;
        let written = if bump_format {
            // An older drplan would not see a lease set: record the format
            // with the first one.
            let mut batch = sled::Batch::default();
            batch.insert(key, value);
            batch.insert(KEY_FORMAT, &STORE_FORMAT.to_be_bytes());
            self.db.apply_batch(batch)
        } else {
            // One key: no batch needed (sled writes one insert atomically).
            self.db.insert(key, value).map(drop)
        };
        written.map_err(|e| self.sled_err("writing leases", e))?;
        if bump_format {
            self.format_on_disk.store(STORE_FORMAT, Ordering::SeqCst);
        }
        self.lease_index().acquired(job, set);
        Ok(())
    }

    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        self.lease_index().leases()
    }

    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        // `from_seq` may lie inside a run, whose key is its first event's:
        // start at the last key at or before it (a reverse range look-up).
        let start = match self
            .db
            .range(event_key(job, 0)..=event_key(job, from_seq))
            .next_back()
        {
            Some(entry) => entry
                .map_err(|e| self.sled_err("reading events", e))?
                .0
                .to_vec(),
            None => event_key(job, from_seq),
        };
        for entry in self.db.range(start..=event_key(job, u64::MAX)) {
            let (k, v) = entry.map_err(|e| self.sled_err("reading events", e))?;
            self.visit_value(&k, &v, &mut |_, seq, payload| {
                if seq >= from_seq {
                    f(seq, payload)
                } else {
                    Ok(())
                }
            })?;
        }
        Ok(())
    }

    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError> {
        match self.db.scan_prefix(job_key(P_EVENT, job)).next_back() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(|e| self.sled_err("reading events", e))?;
                let (_, first) = event_key_parts(&k)?;
                if !is_run(&v) {
                    return Ok(Some(first));
                }
                let count = decode_run(job, &k, first, &v)?.len() as u64;
                Ok(Some(first + count - 1))
            }
        }
    }

    fn jobs(&self) -> Result<Vec<(JobId, Vec<u8>)>, StoreError> {
        self.scan(P_META)
            .map(|entry| {
                let (k, v) = entry?;
                Ok((JobId(be64(&k[P_META.len()..], "job key")?), v.to_vec()))
            })
            .collect()
    }

    fn job_meta(&self, job: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&job_key(P_META, job))?.map(|v| v.to_vec()))
    }

    fn snapshot(&self, job: JobId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match self.get(&job_key(P_SNAP, job))? {
            None => Ok(None),
            Some(v) if v.len() >= 8 => Ok(Some((be64(&v[..8], "snapshot")?, v[8..].to_vec()))),
            Some(v) => Err(StoreError::corrupt(
                format!("snapshot of job {job}"),
                format!("{} byte(s), shorter than its 8-byte header", v.len()),
            )),
        }
    }

    fn timers(&self) -> Result<Vec<TimerEntry>, StoreError> {
        self.scan(P_TIMER)
            .map(|entry| timer_entry(&entry?.0))
            .collect()
    }

    fn timers_due(&self, now_ms: u64) -> Result<Vec<TimerEntry>, StoreError> {
        // Keys sort by due time: stop at the first timer not yet due.
        let mut end = P_TIMER.to_vec();
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let range = if now_ms == u64::MAX {
            self.db.range(P_TIMER.to_vec()..b"t0".to_vec())
        } else {
            self.db.range(P_TIMER.to_vec()..end)
        };
        range
            .map(|entry| {
                let (k, _) = entry.map_err(|e| self.sled_err("reading timers", e))?;
                timer_entry(&k)
            })
            .collect()
    }

    fn items(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan(P_ITEM)
            .map(|entry| {
                let (k, v) = entry?;
                Ok((key_str(&k, "item")?, v.to_vec()))
            })
            .collect()
    }

    fn item(&self, vm: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&str_key(P_ITEM, vm))?.map(|v| v.to_vec()))
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&str_key(P_BLOB, key))?.map(|v| v.to_vec()))
    }

    fn blobs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // sled scans in byte order: the order `blobs_with_prefix` promises.
        self.scan(&str_key(P_BLOB, prefix))
            .map(|entry| {
                let (k, v) = entry?;
                Ok((key_str(&k, "blob")?, v.to_vec()))
            })
            .collect()
    }

    fn text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        match self.get(&str_key(P_TEXT, hash))? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec()).map(Some).map_err(|e| {
                StoreError::corrupt(format!("text {hash}"), format!("not UTF-8: {e}"))
            }),
        }
    }
}

impl Drop for SledStore {
    /// A clean close: make everything durable and record the generation
    /// reached in the marker (see [`SledStore::open`]). Only when it
    /// changed, and never after a failed flush (what is durable is then
    /// unknown; recording too high a generation would refuse a sound log).
    fn drop(&mut self) {
        let generation = self.generation.load(Ordering::SeqCst);
        if generation == self.opened_generation || self.poisoned.load(Ordering::SeqCst) {
            return;
        }
        if self.flush().is_ok()
            && let Err(e) = self.write_marker_with(generation)
        {
            tracing::warn!(error = %e, "could not record the store's generation");
        }
    }
}

/// The generation a marker file records (`None`: none, an older marker).
fn read_marker_generation(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("generation "))
        .and_then(|g| g.trim().parse().ok())
}

/// Takes the directory's lock file, or reports who has it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {
            record_holder(&file);
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => {
            Err(StoreError::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Who holds a data directory's lock, as the holder wrote it into the lock
/// file: its pid and command line (`pid 4242: drplan run plans/x.yaml ...`).
/// `None` when the file is missing, empty or unreadable. Only meaningful
/// while the lock is held (a released lock keeps its last holder's text).
pub fn lock_holder(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Writes this process's pid and command line into the lock file it holds,
/// so that another process refused the lock can say who has it. Best
/// effort: the lock itself is the `flock`, not the text.
fn record_holder(mut file: &File) {
    use std::io::{Seek, Write};
    let command: Vec<String> = std::env::args()
        .take(16)
        .map(|a| {
            if a.len() > 200 {
                format!("{}...", &a[..a.floor_char_boundary(200)])
            } else {
                a
            }
        })
        .collect();
    let text = format!("pid {}: {}\n", std::process::id(), command.join(" "));
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()));
}

/// Opens sled, turning its failures (and panics) into store errors.
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    // We hold our own lock, so a lock failure from sled can only come from
    // this process: a store just dropped whose sled threads have not yet let
    // go of `<dir>/db`. That clears within milliseconds; wait a little.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        // sled 0.34 asserts on some kinds of damage (a truncated segment
        // header, an impossible offset) instead of returning
        // `Error::Corruption`. A panic here would take the whole daemon down
        // with a message about sled internals; catch it and report a damaged
        // store instead. AssertUnwindSafe: nothing of ours is shared with the
        // closure, and whatever sled built is dropped with the panic.
        let opened = catch_unwind(AssertUnwindSafe(|| sled::Config::new().path(dir).open()));
        match opened {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) => match map_sled_error(dir, "opening the store", e) {
                StoreError::Locked { .. } if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return Err(other),
            },
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                return Err(StoreError::corrupt(
                    format!("store in {}", dir.display()),
                    format!("sled could not read it (it panicked: {detail})"),
                ));
            }
        }
    }
}

fn map_sled_error(dir: &Path, doing: &str, e: sled::Error) -> StoreError {
    match e {
        // sled reports its own file lock only as this message.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                dir: dir.to_path_buf(),
            }
        }
        sled::Error::Io(io) => StoreError::io(format!("{doing} in {}", dir.display()), io),
        sled::Error::Corruption { at, .. } => StoreError::corrupt(
            format!("store in {}", dir.display()),
            format!("sled found damaged data at {at:?} while {doing}"),
        ),
        other => StoreError::corrupt(
            format!("store in {}", dir.display()),
            format!("sled failed while {doing}: {other}"),
        ),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

fn job_key(prefix: &[u8], job: JobId) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&job.0.to_be_bytes());
    k
}

fn event_key(job: JobId, seq: u64) -> Vec<u8> {
    let mut k = job_key(P_EVENT, job);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn timer_key(due_ms: u64, job: JobId, timer: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(P_TIMER.len() + 24);
    k.extend_from_slice(P_TIMER);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&job.0.to_be_bytes());
    k.extend_from_slice(&timer.to_be_bytes());
    k
}

/// One lease key of the store, as read.
enum LeaseKey {
    /// `l/<vm>` of formats 1–3: the VM and its holder.
    PerVm(String, JobId),
    /// `L/<job>`: the job and its VMs.
    Set(JobId, Vec<String>),
    /// A key that does not decode, described.
    Damaged(String),
}

/// A lease-set key and value that decode (`None`: not one, or damaged).
fn lease_set(key: &[u8], value: &[u8]) -> Option<(JobId, Vec<String>)> {
    Some((job_lease_key_job(key)?, decode_set(value).ok()?))
}

/// The job of a lease-set key `L/<job>` (`None`: not one).
fn job_lease_key_job(key: &[u8]) -> Option<JobId> {
    let body = key.strip_prefix(P_JOB_LEASES)?;
    <[u8; 8]>::try_from(body)
        .ok()
        .map(|b| JobId(u64::from_be_bytes(b)))
}

/// A key as an operator can read it in a message (bytes escaped).
fn show_key(key: &[u8]) -> String {
    format!("`{}`", key.escape_ascii())
}

fn str_key(prefix: &[u8], s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + s.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(s.as_bytes());
    k
}

fn key_str(key: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(key[2..].to_vec())
        .map_err(|e| StoreError::corrupt(format!("{what} key"), format!("not UTF-8: {e}")))
}

fn be64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt(what, format!("{} byte(s) instead of 8", bytes.len())))
}

fn timer_entry(key: &[u8]) -> Result<TimerEntry, StoreError> {
    let body = &key[P_TIMER.len()..];
    if body.len() != 24 {
        return Err(StoreError::corrupt(
            "timer key",
            format!("{} byte(s) instead of 24", body.len()),
        ));
    }
    Ok(TimerEntry {
        due_ms: be64(&body[..8], "timer due time")?,
        job: JobId(be64(&body[8..16], "timer job")?),
        timer: be64(&body[16..], "timer id")?,
    })
}

/// What [`SledStore::visit_value`] calls with each (job, seq, payload).
type JobEventVisitor<'a> = dyn FnMut(JobId, u64, &[u8]) -> Result<(), StoreError> + 'a;

/// Opens an event run value: 4 magic bytes, then the run format version.
/// A journal event payload is a `codec` record (it opens with `DRPR`), so a
/// format-1 store never holds a plain event value that opens like a run; a
/// later store writes any payload that does as a run of one, so that
/// "opens with the magic" always means "is a run".
const RUN_MAGIC: [u8; 4] = *b"DRRN";
/// Run version 1 (store format 2): the body follows the header as it is.
const RUN_PLAIN: u8 = 1;
/// Run version 2 (store format 3): the body's length (`u32` big-endian)
/// follows the header, then the body as one LZ4 block.
const RUN_LZ4: u8 = 2;
/// Magic, version, event count (`u32` big-endian); then the *body*: per
/// event its length (`u32` big-endian) and its payload, unchanged.
const RUN_HEADER: usize = RUN_MAGIC.len() + 1 + 4;
/// A run grows to about this many bytes, then the next event of the job
/// starts a new one. Small enough to stay a plain value of sled's log
/// (sled moves values over ~128 KiB to their own blob files) and to be
/// cheap to decode when reading from inside it; large enough that a group's
/// events of one job are one key (a typical event is ~200 bytes).
const RUN_MAX_BYTES: usize = 32 * 1024;
/// The largest body written compressed. A run holds at most one event past
/// [`RUN_MAX_BYTES`], so only a run with an unusually large event (a long
/// script output tail is bounded at 64 KiB) comes near it; a bigger body is
/// written plain. The reader refuses a compressed body that claims more, so
/// a damaged length cannot size a huge allocation.
const RUN_LZ4_MAX_BODY: usize = 1 << 20;

fn is_run(value: &[u8]) -> bool {
    value.starts_with(&RUN_MAGIC)
}

/// A well-formed event key: the prefix, then job and sequence (16 bytes).
fn is_event_key(key: &[u8]) -> bool {
    key.starts_with(P_EVENT) && key.len() == P_EVENT.len() + 16
}

/// The job and sequence number an event key names.
fn event_key_parts(key: &[u8]) -> Result<(JobId, u64), StoreError> {
    let body = &key[P_EVENT.len().min(key.len())..];
    if body.len() != 16 {
        return Err(StoreError::corrupt(
            "event key",
            format!("{} byte(s) after the prefix instead of 16", body.len()),
        ));
    }
    Ok((
        JobId(be64(&body[..8], "event key")?),
        be64(&body[8..], "event key")?,
    ))
}

/// A run's value: LZ4-compressed (run version 2) when that is smaller, else
/// plain (version 1). `None` beyond what the `u32` lengths can describe.
fn encode_run(payloads: &[&[u8]]) -> Option<Vec<u8>> {
    let size = RUN_HEADER + payloads.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&RUN_MAGIC);
    v.push(RUN_PLAIN);
    v.extend_from_slice(&u32::try_from(payloads.len()).ok()?.to_be_bytes());
    for p in payloads {
        v.extend_from_slice(&u32::try_from(p.len()).ok()?.to_be_bytes());
        v.extend_from_slice(p);
    }
    let body = &v[RUN_HEADER..];
    if body.len() <= RUN_LZ4_MAX_BODY {
        let packed = lz4_flex::block::compress(body);
        if packed.len() + 4 < body.len() {
            let body_len = u32::try_from(body.len()).ok()?.to_be_bytes();
            v.truncate(RUN_HEADER);
            v[RUN_MAGIC.len()] = RUN_LZ4;
            v.extend_from_slice(&body_len);
            v.extend_from_slice(&packed);
        }
    }
    Some(v)
}

/// A decoded run: its body (borrowed from a plain run, decompressed from an
/// LZ4 one) and where each event's payload lies in it.
#[derive(Debug)]
struct DecodedRun<'v> {
    body: std::borrow::Cow<'v, [u8]>,
    spans: Vec<std::ops::Range<usize>>,
}

impl DecodedRun<'_> {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|r| &self.body[r.clone()])
    }
}

/// The payloads of the run stored under `key` (job `job`, first event
/// `first`). Anything malformed is a [`StoreError::Corrupt`] naming the job
/// and the key, never a panic or a huge allocation.
fn decode_run<'v>(
    job: JobId,
    key: &[u8],
    first: u64,
    value: &'v [u8],
) -> Result<DecodedRun<'v>, StoreError> {
    let bad = |detail: String| {
        StoreError::corrupt(
            format!("event run of job {job} (key e/{job}/{first}: {key:02x?})"),
            detail,
        )
    };
    if value.len() < RUN_HEADER || !is_run(value) {
        return Err(bad(format!(
            "{} byte(s), not a run header (magic {:?}, version, count)",
            value.len(),
            String::from_utf8_lossy(&RUN_MAGIC)
        )));
    }
    let u32_of = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_of(value, RUN_MAGIC.len() + 1).unwrap_or(0);
    if count == 0 {
        return Err(bad("a run of no event".into()));
    }
    let rest = &value[RUN_HEADER..];
    let body = match value[RUN_MAGIC.len()] {
        RUN_PLAIN => std::borrow::Cow::Borrowed(rest),
        RUN_LZ4 => {
            let Some(len) = u32_of(rest, 0) else {
                return Err(bad("a compressed run without its body's length".into()));
            };
            // LZ4 cannot expand a byte into more than 255.
            if len > RUN_LZ4_MAX_BODY || len > (rest.len() - 4).saturating_mul(255) {
                return Err(bad(format!(
                    "a compressed body of {} byte(s) claims {len} byte(s) decompressed",
                    rest.len() - 4
                )));
            }
            let mut out = vec![0; len];
            match lz4_flex::block::decompress_into(&rest[4..], &mut out) {
                Ok(n) if n == len => {}
                Ok(n) => {
                    return Err(bad(format!(
                        "the compressed body gives {n} byte(s), not the {len} it claims"
                    )));
                }
                Err(e) => return Err(bad(format!("the compressed body does not decompress: {e}"))),
            }
            std::borrow::Cow::Owned(out)
        }
        version => {
            return Err(bad(format!(
                "run format version {version}, this drplan knows {RUN_PLAIN} and {RUN_LZ4}"
            )));
        }
    };
    // Every event needs at least its 4-byte length: a count the body
    // cannot hold is damage (and must not size an allocation).
    if count > body.len() / 4 {
        return Err(bad(format!(
            "claims {count} event(s), more than its {} byte(s) can hold",
            body.len()
        )));
    }
    if first.checked_add(count as u64 - 1).is_none() {
        return Err(bad(format!(
            "{count} event(s) from {first} run past the last sequence number"
        )));
    }
    let mut spans = Vec::with_capacity(count);
    let mut at = 0;
    for i in 0..count {
        let Some(len) = u32_of(&body, at) else {
            return Err(bad(format!(
                "event {} (#{i} of the run) has no length: the body ends at byte {}",
                first + i as u64,
                body.len()
            )));
        };
        let span = at + 4..at + 4 + len;
        if span.end > body.len() {
            return Err(bad(format!(
                "event {} (#{i} of the run) claims {len} byte(s) at offset {} of the body, \
                 past its end ({} byte(s))",
                first + i as u64,
                span.start,
                body.len()
            )));
        }
        at = span.end;
        spans.push(span);
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} trailing byte(s) after its {count} event(s)",
            body.len() - at
        )));
    }
    Ok(DecodedRun { body, spans })
}

/// The events of one job accepted in one group, gathered into runs.
struct Run<'a> {
    job: JobId,
    first: u64,
    payloads: Vec<&'a [u8]>,
    bytes: usize,
}

/// Gathers a group's events into runs, one open run per job.
#[derive(Default)]
struct RunBuilder<'a> {
    open: HashMap<JobId, Run<'a>>,
    done: Vec<Run<'a>>,
}

impl<'a> RunBuilder<'a> {
    /// Adds event `seq` of `job`; the caller checked it is the job's next.
    fn push(&mut self, job: JobId, seq: u64, payload: &'a [u8]) {
        let size = 4 + payload.len();
        match self.open.get_mut(&job) {
            Some(run) if run.bytes + size <= RUN_MAX_BYTES => {
                debug_assert_eq!(run.first + run.payloads.len() as u64, seq);
                run.payloads.push(payload);
                run.bytes += size;
            }
            _ => {
                let run = Run {
                    job,
                    first: seq,
                    payloads: vec![payload],
                    bytes: RUN_HEADER + size,
                };
                if let Some(full) = self.open.insert(job, run) {
                    self.done.push(full);
                }
            }
        }
    }

    /// Writes every run into `out`: a lone event as its plain payload
    /// (unless that opens like a run), more as one run value.
    fn finish_into(self, out: &mut sled::Batch) {
        for run in self.done.into_iter().chain(self.open.into_values()) {
            let key = event_key(run.job, run.first);
            if let [lone] = run.payloads[..]
                && !is_run(lone)
            {
                out.insert(key, lone);
                continue;
            }
            match encode_run(&run.payloads) {
                Some(value) => out.insert(key, value),
                // Beyond 4 GiB, which sled cannot hold anyway: what a run's
                // `u32` lengths cannot describe.
                None => {
                    for (i, p) in run.payloads.iter().enumerate() {
                        out.insert(event_key(run.job, run.first + i as u64), *p);
                    }
                }
            }
        }
    }
}

/// Every outcome `Ok` so far becomes `err` (the group was not written), and
/// the batches not reached yet get it too.
fn fail_accepted(
    mut outcomes: Vec<Result<(), StoreError>>,
    err: Result<(), StoreError>,
    total: usize,
) -> Vec<Result<(), StoreError>> {
    for o in &mut outcomes {
        if o.is_ok() {
            *o = err.clone();
        }
    }
    outcomes.resize(total, err);
    outcomes
}

/// The record a key and value of the tree hold, if they are well formed.
fn classify(key: &[u8], value: &[u8]) -> Option<Record> {
    let u64_at = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let (prefix, body) = (key.get(..2)?, &key[2.min(key.len())..]);
    Some(match prefix {
        p if p == P_EVENT && body.len() == 16 => Record::Event {
            job: JobId(u64_at(&body[..8])?),
            seq: u64_at(&body[8..])?,
            payload: value.to_vec(),
        },
        p if p == P_META && body.len() == 8 => Record::JobMeta {
            job: JobId(u64_at(body)?),
            payload: value.to_vec(),
        },
        p if p == P_SNAP && body.len() == 8 && value.len() >= 8 => Record::Snapshot {
            job: JobId(u64_at(body)?),
            seq: u64_at(&value[..8])?,
            payload: value[8..].to_vec(),
        },
        p if p == P_TIMER && body.len() == 24 && value.is_empty() => Record::Timer(TimerEntry {
            due_ms: u64_at(&body[..8])?,
            job: JobId(u64_at(&body[8..16])?),
            timer: u64_at(&body[16..])?,
        }),
        p if p == P_LEASE => Record::Lease {
            vm: text(body)?,
            job: JobId(u64_at(value)?),
        },
        p if p == P_ITEM => Record::Item {
            vm: text(body)?,
            payload: value.to_vec(),
        },
        p if p == P_TEXT => Record::Text {
            hash: text(body)?,
            text: value.to_vec(),
        },
        p if p == P_BLOB => Record::Blob {
            key: text(body)?,
            payload: value.to_vec(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn corrupt<T>(r: Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Corrupt { .. }))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::proptest_cases(64), ..ProptestConfig::default() })]

        /// Whatever payloads, a run decodes to exactly them.
        #[test]
        fn runs_round_trip(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..20),
            first in any::<u64>().prop_map(|f| f / 2),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let value = encode_run(&refs).unwrap();
            prop_assert!(is_run(&value));
            let key = event_key(JobId(1), first);
            let run = decode_run(JobId(1), &key, first, &value).unwrap();
            prop_assert_eq!(run.payloads().collect::<Vec<_>>(), refs);
        }

        /// Events that repeat themselves (as a job's JSON events do) are
        /// written compressed, and decode to exactly themselves.
        #[test]
        fn repetitive_runs_are_compressed_and_round_trip(
            words in prop::collection::vec("[a-z]{1,6}", 1..5),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 8..60),
        ) {
            let payloads: Vec<Vec<u8>> = picks
                .iter()
                .map(|i| format!(r#"{{"step":"{}","state":"done"}}"#, i.get(&words)).into_bytes())
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let value = encode_run(&refs).unwrap();
            let plain: usize = refs.iter().map(|p| 4 + p.len()).sum();
            prop_assert_eq!(value[RUN_MAGIC.len()], RUN_LZ4);
            prop_assert!(value.len() < plain / 2, "{} bytes for {plain}", value.len());
            let run = decode_run(JobId(1), &event_key(JobId(1), 5), 5, &value).unwrap();
            prop_assert_eq!(run.payloads().collect::<Vec<_>>(), refs);
        }

        /// A damaged compressed run: any bytes after its header, a cut, an
        /// extension or a changed byte are `Corrupt` or decode to events
        /// (never a panic, never an allocation sized by a damaged length);
        /// a cut is always `Corrupt`.
        #[test]
        fn damaged_compressed_runs_are_corrupt_never_a_panic(
            tail in prop::collection::vec(any::<u8>(), 0..64),
            picks in prop::collection::vec(0..3usize, 8..40),
            cut in any::<prop::sample::Index>(),
            extra in prop::collection::vec(any::<u8>(), 1..4),
            flip in any::<prop::sample::Index>(),
            xor in 1..=255u8,
        ) {
            let mut value = RUN_MAGIC.to_vec();
            value.push(RUN_LZ4);
            value.extend_from_slice(&tail);
            events_or_corrupt(&value)?;
            let payloads: Vec<Vec<u8>> = picks
                .iter()
                .map(|&i| format!(r#"DRPR{{"event":"{}"}}"#, ["start", "finish", "retry"][i]).into_bytes())
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let good = encode_run(&refs).unwrap();
            prop_assert_eq!(good[RUN_MAGIC.len()], RUN_LZ4);
            cut_is_corrupt(&good, cut)?;
            let mut long = good.clone();
            long.extend_from_slice(&extra);
            let mut flipped = good.clone();
            flipped[flip.index(good.len())] ^= xor;
            events_or_corrupt(&long)?;
            events_or_corrupt(&flipped)?;
        }

        /// Any bytes after the magic: a run or `Corrupt`, never a panic;
        /// and every truncation or extension of a valid run is `Corrupt`.
        #[test]
        fn damaged_runs_are_corrupt_never_a_panic(
            tail in prop::collection::vec(any::<u8>(), 0..64),
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..6),
            cut in any::<prop::sample::Index>(),
            extra in prop::collection::vec(any::<u8>(), 1..4),
        ) {
            let mut value = RUN_MAGIC.to_vec();
            value.extend_from_slice(&tail);
            events_or_corrupt(&value)?;
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let good = encode_run(&refs).unwrap();
            cut_is_corrupt(&good, cut)?;
            let mut long = good.clone();
            long.extend_from_slice(&extra);
            let key = event_key(JobId(7), 3);
            prop_assert!(corrupt(decode_run(JobId(7), &key, 3, &long)));
        }
    }

    /// `value`, read as the run of job 7 from event 3, decodes to events or
    /// is `Corrupt` naming the job; anything else (or a panic) fails.
    fn events_or_corrupt(value: &[u8]) -> Result<(), TestCaseError> {
        let key = event_key(JobId(7), 3);
        match decode_run(JobId(7), &key, 3, value) {
            Ok(run) => prop_assert!(run.len() > 0),
            Err(StoreError::Corrupt { what, .. }) => prop_assert!(what.contains("job 7")),
            Err(e) => prop_assert!(false, "{e:?}"),
        }
        Ok(())
    }

    /// A well-formed run cut at `cut` is `Corrupt`.
    fn cut_is_corrupt(good: &[u8], cut: prop::sample::Index) -> Result<(), TestCaseError> {
        let key = event_key(JobId(7), 3);
        let short = &good[..cut.index(good.len())];
        prop_assert!(
            corrupt(decode_run(JobId(7), &key, 3, short)),
            "a run cut at {} of {} bytes must be refused",
            short.len(),
            good.len()
        );
        Ok(())
    }

    #[test]
    fn a_run_past_the_last_sequence_number_is_corrupt() {
        let value = encode_run(&[b"a", b"b"]).unwrap();
        let key = event_key(JobId(1), u64::MAX);
        let err = decode_run(JobId(1), &key, u64::MAX, &value).unwrap_err();
        assert!(err.to_string().contains("past the last"), "{err}");
        // One event at the very last sequence number is fine.
        let one = encode_run(&[b"a"]).unwrap();
        let run = decode_run(JobId(1), &key, u64::MAX, &one).unwrap();
        assert_eq!(run.payloads().collect::<Vec<_>>(), vec![&b"a"[..]]);
    }

    /// A compressed run whose body claims more than the writer ever
    /// compresses (or than LZ4 can expand its bytes into) is refused before
    /// anything is allocated for it.
    #[test]
    fn a_compressed_run_claiming_a_huge_body_is_corrupt() {
        let key = event_key(JobId(2), 0);
        for (claim, packed) in [
            (u32::MAX, 1000),
            (RUN_LZ4_MAX_BODY as u32 + 1, 10_000),
            (2_551, 10),
        ] {
            let mut value = RUN_MAGIC.to_vec();
            value.push(RUN_LZ4);
            value.extend_from_slice(&1u32.to_be_bytes());
            value.extend_from_slice(&claim.to_be_bytes());
            value.extend(std::iter::repeat_n(0u8, packed));
            let err = decode_run(JobId(2), &key, 0, &value).unwrap_err();
            assert!(err.to_string().contains("claims"), "{err}");
        }
    }
}
