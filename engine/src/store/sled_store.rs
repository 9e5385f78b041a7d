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
//! | `e/<job be64><seq be64>` | event payload |
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

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    EventVisitor, JobId, Record, RecordVisitor, Store, StoreError, TimerEntry, Write, check_batch,
};

/// The store format version this build writes and the newest it opens.
pub const STORE_FORMAT: u16 = 1;

const KEY_FORMAT: &[u8] = b"meta/format";
const KEY_NEXT_JOB: &[u8] = b"meta/next_job";
/// A counter bumped by every batch (see [`SledStore::generation`]).
const KEY_GENERATION: &[u8] = b"meta/generation";
const P_EVENT: &[u8] = b"e/";
const P_META: &[u8] = b"m/";
const P_SNAP: &[u8] = b"s/";
const P_TIMER: &[u8] = b"t/";
const P_LEASE: &[u8] = b"l/";
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
}

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

impl SledStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// Errors: [`StoreError::Locked`] when another process (or another handle
    /// in this one) has it open, [`StoreError::NewerFormat`] when a newer
    /// drplan wrote it, [`StoreError::Corrupt`] when it is damaged.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let created_dir = !dir.exists();
        fs::create_dir_all(dir)
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
        };
        store.check_format(marked)?;
        let generation = match store.get(KEY_GENERATION)? {
            Some(v) => be64(&v, "store generation")?,
            None => 0,
        };
        store.generation.store(generation, Ordering::SeqCst);
        store.opened_generation = generation;
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

    fn check_format(&self, marked: bool) -> Result<(), StoreError> {
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
                Ok(())
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
                self.write_marker()
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
            let f = File::create(&tmp)?;
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
            for entry in self.scan(prefix) {
                let (k, v) = entry?;
                if let Some(record) = classify(&k, &v) {
                    f(record)?;
                }
            }
        }
        for entry in self.db.iter() {
            let (k, v) = entry.map_err(|e| self.sled_err("reading the store", e))?;
            if k == KEY_FORMAT
                || k == KEY_NEXT_JOB
                || k == KEY_GENERATION
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
        let _w = self.writer();
        check_batch(batch, self.next_job()?, |job| self.last_seq(job))?;
        let mut out = sled::Batch::default();
        // Under the write lock: generations are written in batch order.
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        out.insert(KEY_GENERATION, &generation.to_be_bytes());
        for write in batch {
            match write {
                Write::Event { job, seq, payload } => {
                    out.insert(event_key(*job, *seq), payload.as_slice())
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
                    for entry in self.scan(P_LEASE) {
                        let (k, v) = entry?;
                        if be64(&v, "lease holder")? == job.0 {
                            out.remove(k);
                        }
                    }
                }
                Write::Item { vm, payload } => out.insert(str_key(P_ITEM, vm), payload.as_slice()),
                Write::Text { hash, text } => out.insert(str_key(P_TEXT, hash), text.as_bytes()),
                Write::Blob { key, payload } => match payload {
                    Some(p) => out.insert(str_key(P_BLOB, key), p.as_slice()),
                    None => out.remove(str_key(P_BLOB, key)),
                },
            }
        }
        self.db
            .apply_batch(out)
            .map_err(|e| self.sled_err("writing a batch", e))
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
        let mut batch = sled::Batch::default();
        for vm in vms {
            let key = str_key(P_LEASE, vm);
            if let Some(v) = self.get(&key)? {
                let holder = JobId(be64(&v, "lease holder")?);
                if holder != job {
                    return Err(StoreError::LeaseHeld {
                        vm: vm.clone(),
                        holder,
                    });
                }
            }
            batch.insert(key, &job.0.to_be_bytes());
        }
        self.db
            .apply_batch(batch)
            .map_err(|e| self.sled_err("writing leases", e))
    }

    fn leases(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        self.scan(P_LEASE)
            .map(|entry| {
                let (k, v) = entry?;
                Ok((key_str(&k, "lease")?, JobId(be64(&v, "lease holder")?)))
            })
            .collect()
    }

    fn for_each_event(
        &self,
        job: JobId,
        from_seq: u64,
        f: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        let range = event_key(job, from_seq)..=event_key(job, u64::MAX);
        for entry in self.db.range(range) {
            let (k, v) = entry.map_err(|e| self.sled_err("reading events", e))?;
            let seq = be64(&k[P_EVENT.len() + 8..], "event key")?;
            f(seq, &v)?;
        }
        Ok(())
    }

    fn last_seq(&self, job: JobId) -> Result<Option<u64>, StoreError> {
        match self.db.scan_prefix(job_key(P_EVENT, job)).next_back() {
            None => Ok(None),
            Some(entry) => {
                let (k, _) = entry.map_err(|e| self.sled_err("reading events", e))?;
                Ok(Some(be64(&k[P_EVENT.len() + 8..], "event key")?))
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
