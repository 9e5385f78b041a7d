//! A portable backup of a store: JSON lines (`drplan store export` /
//! `drplan store import`).
//!
//! # Format (export format 1)
//!
//! ```text
//! {"drplan_export":1,"record_format":1,"written_by":"drplan 0.1.0","next_job":4,"counts":{...}}
//! {"t":"event","job":1,"seq":0,"fmt":1,"body":{"Submitted":{...}}}
//! {"t":"meta","job":1,"fmt":1,"body":{"id":1,"plan_name":"orders",...}}
//! {"t":"text","hash":"9f2c...","text":"drplan: 1\nname: orders\n..."}
//! {"t":"lease","vm":"web-01","job":3}
//! ...
//! {"t":"end","records":57,"blake3":"<hex>"}
//! ```
//!
//! - The **header** gives the export format, the newest record format the
//!   writer knew, the next job id and the number of records of each kind.
//! - One **record** per line, in the order of [`Store::for_each_record`]
//!   (events, metadata, snapshots, timers, leases, items, texts, blobs), so
//!   that an import can write each as it reads it (events before the
//!   snapshots that cover them) and a store exports to the same bytes every
//!   time (backups can be diffed). A codec record (`DRPR`, version, JSON)
//!   is written as its version (`fmt`) and its JSON (`body`), verbatim, so
//!   it is readable and round-trips byte for byte (plan models are stored
//!   under the hash of their bytes); a plain text as `text`; anything else
//!   (damaged bytes) as `hex`.
//! - The **end line** counts the records and carries the blake3 hash of
//!   every byte before it: a truncated or edited file is refused.
//!
//! An import refuses a non-empty store, a newer export or record format, a
//! malformed line (naming its number), counts that differ from the header,
//! and a missing or wrong end line; what the store itself refuses (an event
//! out of order, a snapshot ahead of its log, a job id past `next_job`) is
//! reported at its line too. An import that fails leaves a partly written
//! store behind: import into a fresh store and discard it on error (the CLI
//! imports into a temporary directory and renames it into place).
//!
//! Unknown keys ([`Record::Unknown`]: damage, or a newer drplan's records)
//! are not exported; [`export`] reports how many it skipped.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::codec::{MAGIC, RECORD_FORMAT};
use super::{JobId, Record, Store, StoreError, TimerEntry, Write};

/// The export format this build writes and the newest it reads.
///
/// - 1: the records of a store up to format 4.
/// - 2: the same lines, but a plan model may name the `Phases` compile
///   layout (store format 5): a drplan that reads only format 1 would
///   import such jobs and recompile them to other step numbers, so it must
///   refuse the file. Format-1 exports still import as they are.
pub const EXPORT_FORMAT: u32 = 2;

/// The longest line an import reads (a 25,000-VM job's snapshot is ~10 MB).
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// Writes per store batch during an import (bounds memory, not atomicity:
/// an import is made atomic by its caller).
const BATCH: usize = 512;

/// Everything an export or an import can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[source] io::Error),
    #[error("cannot read the export at line {line}: {source}")]
    Read {
        line: u64,
        #[source]
        source: io::Error,
    },
    /// A line that is not what the format says.
    #[error("line {line} of the export: {detail}")]
    Bad { line: u64, detail: String },
    #[error(
        "the export is truncated: it ends after line {lines} without its end line (an \
         interrupted copy or export?)"
    )]
    Truncated { lines: u64 },
    #[error(
        "the export is damaged: its checksum does not match its content (found {found}, \
         expected {expected})"
    )]
    Checksum { found: String, expected: String },
    #[error(
        "the export uses {what} {found}, but this drplan only understands up to {supported}; \
         upgrade drplan to import it"
    )]
    NewerFormat {
        what: &'static str,
        found: u64,
        supported: u64,
    },
    #[error("the target store is not empty ({detail}); import only into a new data directory")]
    NotEmpty { detail: String },
}

/// How many records of each kind an export holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub events: u64,
    pub jobs: u64,
    pub snapshots: u64,
    pub timers: u64,
    pub leases: u64,
    pub items: u64,
    pub texts: u64,
    pub blobs: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.events
            + self.jobs
            + self.snapshots
            + self.timers
            + self.leases
            + self.items
            + self.texts
            + self.blobs
    }

    fn add(&mut self, kind: Kind) {
        let n = match kind {
            Kind::Event => &mut self.events,
            Kind::Meta => &mut self.jobs,
            Kind::Snapshot => &mut self.snapshots,
            Kind::Timer => &mut self.timers,
            Kind::Lease => &mut self.leases,
            Kind::Item => &mut self.items,
            Kind::Text => &mut self.texts,
            Kind::Blob => &mut self.blobs,
            Kind::End => return,
        };
        *n += 1;
    }
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub drplan_export: u32,
    /// The newest record format (`store::codec`) the writer knew.
    pub record_format: u16,
    pub written_by: String,
    pub next_job: u64,
    pub counts: Counts,
}

/// What [`export`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub header: Header,
    /// Keys the store could not place, not exported (hex).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Event,
    Meta,
    Snapshot,
    Timer,
    Lease,
    Item,
    Text,
    Blob,
    End,
}

/// One line after the header. A flat struct rather than a tagged enum:
/// serde buffers tagged enums, which loses `RawValue`'s exact text.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    t: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timer: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// A codec record's format version ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fmt: Option<u16>,
    /// ... and its JSON, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Box<RawValue>>,
    /// A payload that is plain UTF-8 text (plan texts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Any other payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
    /// End line: the number of records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<u64>,
    /// End line: blake3 of every byte before the end line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
}

impl Line {
    fn of(kind: Kind) -> Line {
        Line {
            t: Some(kind),
            ..Line::default()
        }
    }

    /// Puts a payload in the most readable exact form.
    fn with_payload(mut self, bytes: &[u8]) -> Line {
        if let Some((fmt, body)) = codec_body(bytes) {
            self.fmt = Some(fmt);
            self.body = Some(body);
        } else if let Ok(text) = std::str::from_utf8(bytes) {
            self.text = Some(text.to_string());
        } else {
            self.hex = Some(to_hex(bytes));
        }
        self
    }

    /// The payload bytes back, exactly.
    fn payload(&mut self, line: u64) -> Result<Vec<u8>, BackupError> {
        let bad = |detail: String| BackupError::Bad { line, detail };
        match (
            self.fmt.take(),
            self.body.take(),
            self.text.take(),
            self.hex.take(),
        ) {
            (Some(fmt), Some(body), None, None) => {
                if fmt > RECORD_FORMAT {
                    return Err(BackupError::NewerFormat {
                        what: "record format",
                        found: fmt.into(),
                        supported: RECORD_FORMAT.into(),
                    });
                }
                let mut out = Vec::with_capacity(6 + body.get().len());
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&fmt.to_be_bytes());
                out.extend_from_slice(body.get().as_bytes());
                Ok(out)
            }
            (None, None, Some(text), None) => Ok(text.into_bytes()),
            (None, None, None, Some(hex)) => {
                from_hex(&hex).ok_or_else(|| bad("`hex` is not hexadecimal".into()))
            }
            _ => Err(bad(
                "a record needs exactly one payload: `fmt` with `body`, `text` or `hex`".into(),
            )),
        }
    }
}

/// `(version, JSON)` of a codec record whose JSON can be embedded verbatim.
fn codec_body(bytes: &[u8]) -> Option<(u16, Box<RawValue>)> {
    if bytes.len() < 6 || bytes[..4] != MAGIC {
        return None;
    }
    let fmt = u16::from_be_bytes([bytes[4], bytes[5]]);
    let body = std::str::from_utf8(&bytes[6..]).ok()?;
    // A line holds no newline, and `RawValue` trims surrounding whitespace:
    // only a body that survives unchanged is embedded.
    if body.contains('\n') {
        return None;
    }
    let raw = RawValue::from_string(body.to_string()).ok()?;
    (raw.get() == body).then_some((fmt, raw))
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn record_line(record: Record) -> Option<Line> {
    Some(match record {
        Record::NextJob(_) | Record::Unknown { .. } => return None,
        Record::Event { job, seq, payload } => Line {
            job: Some(job.0),
            seq: Some(seq),
            ..Line::of(Kind::Event)
        }
        .with_payload(&payload),
        Record::JobMeta { job, payload } => Line {
            job: Some(job.0),
            ..Line::of(Kind::Meta)
        }
        .with_payload(&payload),
        Record::Snapshot { job, seq, payload } => Line {
            job: Some(job.0),
            seq: Some(seq),
            ..Line::of(Kind::Snapshot)
        }
        .with_payload(&payload),
        Record::Timer(t) => Line {
            due_ms: Some(t.due_ms),
            job: Some(t.job.0),
            timer: Some(t.timer),
            ..Line::of(Kind::Timer)
        },
        Record::Lease { vm, job } => Line {
            vm: Some(vm),
            job: Some(job.0),
            ..Line::of(Kind::Lease)
        },
        Record::Item { vm, payload } => Line {
            vm: Some(vm),
            ..Line::of(Kind::Item)
        }
        .with_payload(&payload),
        Record::Text { hash, text } => Line {
            hash: Some(hash),
            ..Line::of(Kind::Text)
        }
        .with_payload(&text),
        Record::Blob { key, payload } => Line {
            key: Some(key),
            ..Line::of(Kind::Blob)
        }
        .with_payload(&payload),
    })
}

fn kind_of(record: &Record) -> Option<Kind> {
    Some(match record {
        Record::NextJob(_) | Record::Unknown { .. } => return None,
        Record::Event { .. } => Kind::Event,
        Record::JobMeta { .. } => Kind::Meta,
        Record::Snapshot { .. } => Kind::Snapshot,
        Record::Timer(_) => Kind::Timer,
        Record::Lease { .. } => Kind::Lease,
        Record::Item { .. } => Kind::Item,
        Record::Text { .. } => Kind::Text,
        Record::Blob { .. } => Kind::Blob,
    })
}

/// A writer that hashes what goes through it.
struct Hashing<'a> {
    out: &'a mut dyn io::Write,
    hash: blake3::Hasher,
}

impl Hashing<'_> {
    fn line(&mut self, value: &impl Serialize) -> Result<(), BackupError> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| BackupError::Write(e.into()))?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out.write_all(&bytes).map_err(BackupError::Write)
    }
}

/// Writes every record of `store` to `out` (see the module docs). Reads the
/// store twice (counts for the header, then the records); the caller keeps
/// it from changing in between (the CLI holds the store's lock).
pub fn export(store: &dyn Store, out: &mut dyn io::Write) -> Result<ExportSummary, BackupError> {
    let mut counts = Counts::default();
    let mut next_job = 1;
    let mut skipped = Vec::new();
    store.for_each_record(&mut |record| {
        match &record {
            Record::NextJob(n) => next_job = *n,
            Record::Unknown { key, .. } => skipped.push(to_hex(key)),
            r => counts.add(kind_of(r).unwrap_or(Kind::End)),
        }
        Ok(())
    })?;
    let header = Header {
        drplan_export: EXPORT_FORMAT,
        record_format: RECORD_FORMAT,
        written_by: format!("drplan {}", env!("CARGO_PKG_VERSION")),
        next_job,
        counts,
    };
    let mut w = Hashing {
        out,
        hash: blake3::Hasher::new(),
    };
    w.line(&header)?;
    let mut written = Counts::default();
    let mut failure = None;
    let listed = store.for_each_record(&mut |record| {
        let kind = kind_of(&record);
        if let Some(line) = record_line(record) {
            if let Err(e) = w.line(&line) {
                failure = Some(e);
                // Stops the scan; the real error is in `failure`.
                return Err(StoreError::CommitterStopped);
            }
            written.add(kind.unwrap_or(Kind::End));
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    listed?;
    if written != header.counts {
        return Err(BackupError::Store(StoreError::corrupt(
            "store",
            "it changed while it was exported",
        )));
    }
    let end = Line {
        records: Some(written.total()),
        blake3: Some(w.hash.finalize().to_hex().to_string()),
        ..Line::of(Kind::End)
    };
    let bytes = serde_json::to_vec(&end).map_err(|e| BackupError::Write(e.into()))?;
    w.out.write_all(&bytes).map_err(BackupError::Write)?;
    w.out.write_all(b"\n").map_err(BackupError::Write)?;
    w.out.flush().map_err(BackupError::Write)?;
    Ok(ExportSummary { header, skipped })
}

/// Reads lines, hashing them, refusing overlong ones.
struct Lines<R> {
    input: R,
    hash: blake3::Hasher,
    number: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    /// The next line (without its newline), `None` at the end of input.
    fn next(&mut self, hash: bool) -> Result<Option<&str>, BackupError> {
        self.buf.clear();
        self.number += 1;
        let line = self.number;
        let n = io::Read::take(&mut self.input, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| BackupError::Read { line, source })?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(BackupError::Bad {
                    line,
                    detail: format!("longer than {} MiB", MAX_LINE_BYTES >> 20),
                });
            }
            // The last line lost its newline: the file was cut.
            return Err(BackupError::Truncated { lines: line - 1 });
        }
        if hash {
            self.hash.update(&self.buf);
        }
        let text =
            std::str::from_utf8(&self.buf[..self.buf.len() - 1]).map_err(|e| BackupError::Bad {
                line,
                detail: format!("not UTF-8 ({e})"),
            })?;
        Ok(Some(text))
    }
}

/// Reads an export into `store`, which must be empty, and flushes it.
/// Returns the header. See the module docs for what is refused.
pub fn import(input: impl BufRead, store: &dyn Store) -> Result<Header, BackupError> {
    let mut lines = Lines {
        input,
        hash: blake3::Hasher::new(),
        number: 0,
        buf: Vec::new(),
    };
    let header = read_header(&mut lines)?;
    ensure_empty(store)?;
    // Job ids: allocated up to the exported next id, so that every job
    // (also one allocated but never recorded) keeps its number and a new
    // job never reuses one.
    if header.next_job == 0 {
        return Err(BackupError::Bad {
            line: 1,
            detail: "`next_job` 0 is not a possible next job id (ids start at 1)".into(),
        });
    }
    let mut ids = Ids {
        allocated: 0,
        last: header.next_job - 1,
    };
    let last_id = ids.last;
    let mut batch: Vec<Write> = Vec::new();
    // Leases, per job (the export lists them by VM): each job's taken at
    // once, when the first record after the leases arrives; a store that
    // keeps a job's leases in one value would rewrite it per VM otherwise.
    let mut leases: BTreeMap<JobId, (u64, Vec<String>)> = BTreeMap::new();
    let mut seen = Counts::default();
    let mut order = Kind::Event;
    loop {
        // The end line is not part of what its checksum covers.
        let before = lines.hash.clone();
        let line = lines.number + 1;
        let bad = |detail: String| BackupError::Bad { line, detail };
        let Some(text) = lines.next(true)? else {
            return Err(BackupError::Truncated { lines: line - 1 });
        };
        let mut l: Line = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let kind = l.t.ok_or_else(|| bad("no record type `t`".into()))?;
        if kind != Kind::Lease && !leases.is_empty() {
            flush_batch(store, &mut batch, line)?;
            acquire_leases(store, &mut ids, std::mem::take(&mut leases))?;
        }
        if kind == Kind::End {
            flush_batch(store, &mut batch, line)?;
            finish(&mut lines, before, &l, &seen, &header)?;
            break;
        }
        // Records come in the export's order; a file edited into another
        // order would have its snapshots refused by the store anyway, this
        // says why.
        if kind_rank(kind) < kind_rank(order) {
            return Err(bad(format!(
                "a {kind:?} record after the {order:?} records: records are out of order"
            )));
        }
        order = kind;
        seen.add(kind);
        let job = |l: &Line| -> Result<JobId, BackupError> {
            let j = l.job.ok_or_else(|| bad("no `job`".into()))?;
            if j == 0 || j > last_id {
                return Err(bad(format!(
                    "job {j} is not below the export's next job id {}",
                    header.next_job
                )));
            }
            Ok(JobId(j))
        };
        let need = |v: Option<u64>, name: &str| v.ok_or_else(|| bad(format!("no `{name}`")));
        let need_str = |v: Option<String>, name: &str| v.ok_or_else(|| bad(format!("no `{name}`")));
        match kind {
            Kind::Event => {
                let job = job(&l)?;
                let seq = need(l.seq, "seq")?;
                let payload = l.payload(line)?;
                batch.push(Write::Event { job, seq, payload });
            }
            Kind::Meta => {
                let job = job(&l)?;
                batch.push(Write::JobMeta {
                    job,
                    payload: l.payload(line)?,
                });
            }
            Kind::Snapshot => {
                let job = job(&l)?;
                let seq = need(l.seq, "seq")?;
                batch.push(Write::Snapshot {
                    job,
                    seq,
                    payload: l.payload(line)?,
                });
            }
            Kind::Timer => {
                let t = TimerEntry {
                    due_ms: need(l.due_ms, "due_ms")?,
                    job: job(&l)?,
                    timer: need(l.timer, "timer")?,
                };
                batch.push(Write::ArmTimer {
                    due_ms: t.due_ms,
                    job: t.job,
                    timer: t.timer,
                });
            }
            Kind::Lease => {
                let job = job(&l)?;
                let vm = need_str(l.vm.take(), "vm")?;
                leases.entry(job).or_insert((line, Vec::new())).1.push(vm);
            }
            Kind::Item => {
                let vm = need_str(l.vm.take(), "vm")?;
                batch.push(Write::Item {
                    vm,
                    payload: l.payload(line)?,
                });
            }
            Kind::Text => {
                let hash = need_str(l.hash.take(), "hash")?;
                let text = String::from_utf8(l.payload(line)?)
                    .map_err(|_| bad("a text record that is not UTF-8".into()))?;
                batch.push(Write::Text { hash, text });
            }
            Kind::Blob => {
                let key = need_str(l.key.take(), "key")?;
                batch.push(Write::Blob {
                    key,
                    payload: Some(l.payload(line)?),
                });
            }
            Kind::End => unreachable!("handled above"),
        }
        if let Some(j) = batch.last().and_then(Write::job) {
            ids.reach(store, j.0, line)?;
        }
        if batch.len() >= BATCH {
            flush_batch(store, &mut batch, line)?;
        }
    }
    ids.reach(store, ids.last, lines.number)?;
    store.flush()?;
    Ok(header)
}

/// The most consecutive job ids an import allocates that no record uses.
/// Ids are allocated one by one (the `Store` trait has no "set next id"),
/// and a real store has a gap only where a submission crashed before its
/// first commit, so a bigger jump means a damaged or forged file.
const MAX_ID_GAP: u64 = 10_000;

/// Job ids allocated so far in the target store.
struct Ids {
    allocated: u64,
    last: u64,
}

impl Ids {
    /// Allocates ids up to `job`.
    fn reach(&mut self, store: &dyn Store, job: u64, line: u64) -> Result<(), BackupError> {
        let job = job.min(self.last);
        if job > self.allocated.saturating_add(MAX_ID_GAP) {
            return Err(BackupError::Bad {
                line,
                detail: format!(
                    "job ids jump from {} to {job}: more than {MAX_ID_GAP} ids that no record \
                     uses (a damaged or edited export?)",
                    self.allocated
                ),
            });
        }
        while self.allocated < job {
            let id = store.allocate_job_id()?;
            self.allocated += 1;
            if id.0 != self.allocated {
                return Err(BackupError::Bad {
                    line,
                    detail: format!(
                        "the target store allocated job id {id}, expected {}",
                        self.allocated
                    ),
                });
            }
        }
        Ok(())
    }
}

fn kind_rank(kind: Kind) -> u8 {
    kind as u8
}

/// Takes the leases read so far, one call per job (errors name the job's
/// first lease line). Leases are not batch writes: the caller flushes what
/// is queued first, so that the jobs exist.
fn acquire_leases(
    store: &dyn Store,
    ids: &mut Ids,
    leases: BTreeMap<JobId, (u64, Vec<String>)>,
) -> Result<(), BackupError> {
    for (job, (line, vms)) in leases {
        ids.reach(store, job.0, line)?;
        store
            .acquire_leases(job, &vms)
            .map_err(|e| BackupError::Bad {
                line,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

fn flush_batch(store: &dyn Store, batch: &mut Vec<Write>, line: u64) -> Result<(), BackupError> {
    if batch.is_empty() {
        return Ok(());
    }
    store.apply(batch).map_err(|e| BackupError::Bad {
        line,
        detail: format!("the store refuses the records up to here: {e}"),
    })?;
    batch.clear();
    Ok(())
}

fn read_header<R: BufRead>(lines: &mut Lines<R>) -> Result<Header, BackupError> {
    let Some(text) = lines.next(true)? else {
        return Err(BackupError::Bad {
            line: 1,
            detail: "the file is empty, not a drplan export".into(),
        });
    };
    let bad = |detail: String| BackupError::Bad { line: 1, detail };
    // The version first: a newer export may have other header fields.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not a drplan export header: {e}")))?;
    let version = value
        .get("drplan_export")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("not a drplan export (no `drplan_export` version)".into()))?;
    if version > u64::from(EXPORT_FORMAT) {
        return Err(BackupError::NewerFormat {
            what: "export format",
            found: version,
            supported: EXPORT_FORMAT.into(),
        });
    }
    let header: Header = serde_json::from_value(value).map_err(|e| bad(format!("header: {e}")))?;
    if header.drplan_export == 0 {
        return Err(bad("export format 0 was never written".into()));
    }
    if header.record_format > RECORD_FORMAT {
        return Err(BackupError::NewerFormat {
            what: "record format",
            found: header.record_format.into(),
            supported: RECORD_FORMAT.into(),
        });
    }
    Ok(header)
}

fn ensure_empty(store: &dyn Store) -> Result<(), BackupError> {
    let mut found: Option<String> = None;
    let listed = store.for_each_record(&mut |record| {
        let what = match record {
            Record::NextJob(1) => return Ok(()),
            Record::NextJob(n) => format!("job ids up to {} were allocated", n.saturating_sub(1)),
            Record::Event { job, .. } | Record::JobMeta { job, .. } => {
                format!("it holds job {job}")
            }
            other => format!("it holds a record: {other:?}")
                .chars()
                .take(120)
                .collect(),
        };
        found = Some(what);
        Err(StoreError::CommitterStopped)
    });
    if let Some(detail) = found {
        return Err(BackupError::NotEmpty { detail });
    }
    listed?;
    Ok(())
}

fn finish<R: BufRead>(
    lines: &mut Lines<R>,
    before: blake3::Hasher,
    end: &Line,
    seen: &Counts,
    header: &Header,
) -> Result<(), BackupError> {
    let line = lines.number;
    let bad = |detail: String| BackupError::Bad { line, detail };
    let expected = end
        .blake3
        .as_deref()
        .ok_or_else(|| bad("the end line has no `blake3`".into()))?;
    let found = before.finalize().to_hex().to_string();
    if found != expected {
        return Err(BackupError::Checksum {
            found,
            expected: expected.to_string(),
        });
    }
    if end.records != Some(seen.total()) {
        return Err(bad(format!(
            "the end line counts {:?} records, the file has {}",
            end.records,
            seen.total()
        )));
    }
    if *seen != header.counts {
        return Err(bad(format!(
            "the header counts {:?}, the file has {:?}",
            header.counts, seen
        )));
    }
    if lines.next(false)?.is_some() {
        return Err(BackupError::Bad {
            line: lines.number,
            detail: "content after the end line".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec;
    use crate::store::mem::MemStore;

    fn sample() -> MemStore {
        let s = MemStore::new();
        let a = s.allocate_job_id().unwrap();
        let b = s.allocate_job_id().unwrap();
        let _unused = s.allocate_job_id().unwrap();
        s.acquire_leases(b, &["web-01".into()]).unwrap();
        // Listed by VM, the two jobs' leases interleave.
        s.acquire_leases(a, &["db-01".into(), "web-03".into()])
            .unwrap();
        s.apply(&[
            Write::Event {
                job: a,
                seq: 0,
                payload: codec::encode(&"submitted"),
            },
            Write::Event {
                job: a,
                seq: 1,
                payload: vec![0xff, 0x00, b'\n'],
            },
            Write::Event {
                job: b,
                seq: 0,
                payload: codec::encode(&serde_json::json!({"x": [1, "two\nlines"]})),
            },
            Write::JobMeta {
                job: a,
                payload: codec::encode(&"meta a"),
            },
            Write::Snapshot {
                job: a,
                seq: 1,
                payload: codec::encode(&7),
            },
            Write::ArmTimer {
                due_ms: 99,
                job: b,
                timer: 5,
            },
            Write::Item {
                vm: "web-01".into(),
                payload: codec::encode(&"protected"),
            },
            Write::Text {
                hash: "h1".into(),
                text: "name: web\n  indented: \"quoted\"\n".into(),
            },
            Write::Blob {
                key: "fabric/full".into(),
                payload: Some(codec::encode(&[1, 2, 3])),
            },
        ])
        .unwrap();
        s.flush().unwrap();
        s
    }

    fn export_bytes(s: &dyn Store) -> Vec<u8> {
        let mut out = Vec::new();
        export(s, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_is_exact_and_readable() {
        let s = sample();
        let bytes = export_bytes(&s);
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Readable: a codec record's JSON is embedded as JSON.
        assert!(
            text.contains(r#""fmt":1,"body":{"x":[1,"two\nlines"]}"#),
            "{text}"
        );
        assert!(text.contains(r#""hex":"ff000a""#), "{text}");
        let copy = MemStore::new();
        let header = import(&bytes[..], &copy).unwrap();
        assert_eq!(header.next_job, 4);
        assert_eq!(header.counts.total(), 12);
        assert_eq!(export_bytes(&copy), bytes);
        // The next job id continues where the original's would.
        assert_eq!(copy.allocate_job_id().unwrap(), JobId(4));
    }

    /// Into a store that keeps a job's leases in one value: each job's
    /// leases, spread over the export by VM, end up with their job.
    #[test]
    fn round_trip_through_sled_is_exact() {
        let s = sample();
        let bytes = export_bytes(&s);
        let tmp = tempfile::tempdir().unwrap();
        let sled = crate::store::sled_store::SledStore::open(tmp.path()).unwrap();
        import(&bytes[..], &sled).unwrap();
        assert_eq!(sled.leases().unwrap(), s.leases().unwrap());
        assert_eq!(sled.leases().unwrap().len(), 3);
        assert_eq!(export_bytes(&sled), bytes);
    }

    #[test]
    fn refuses_a_non_empty_store() {
        let bytes = export_bytes(&sample());
        let err = import(&bytes[..], &sample()).unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty { .. }), "{err}");
    }

    #[test]
    fn refuses_truncation_at_every_line() {
        let bytes = export_bytes(&sample());
        let ends: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        for cut in ends[..ends.len() - 1]
            .iter()
            .copied()
            .chain([bytes.len() - 5])
        {
            let err = import(&bytes[..cut], &MemStore::new()).unwrap_err();
            assert!(
                matches!(err, BackupError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_changed_byte() {
        let bytes = export_bytes(&sample());
        let text = String::from_utf8(bytes).unwrap();
        let changed = text.replacen("meta a", "meta b", 1);
        let err = import(changed.as_bytes(), &MemStore::new()).unwrap_err();
        assert!(matches!(err, BackupError::Checksum { .. }), "{err}");
    }

    #[test]
    fn refuses_newer_formats() {
        let bytes = export_bytes(&sample());
        let text = String::from_utf8(bytes).unwrap();
        let newer = text.replacen(
            &format!("\"drplan_export\":{EXPORT_FORMAT}"),
            &format!("\"drplan_export\":{}", EXPORT_FORMAT + 1),
            1,
        );
        let err = import(newer.as_bytes(), &MemStore::new()).unwrap_err();
        assert!(
            matches!(err, BackupError::NewerFormat { found, .. } if found == u64::from(EXPORT_FORMAT + 1)),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade drplan"), "{err}");
        let newer = text.replacen("\"fmt\":1", "\"fmt\":9", 1);
        let err = import(newer.as_bytes(), &MemStore::new()).unwrap_err();
        assert!(
            matches!(err, BackupError::NewerFormat { found: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let bytes = export_bytes(&sample());
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[3] = "{\"t\":\"event\",\"job\":1}";
        let broken = lines.join("\n") + "\n";
        let err = import(broken.as_bytes(), &MemStore::new()).unwrap_err();
        assert!(matches!(err, BackupError::Bad { line: 4, .. }), "{err}");
        for garbage in ["", "not json\n", "{}\n", "[1]\n"] {
            let err = import(garbage.as_bytes(), &MemStore::new()).unwrap_err();
            assert!(
                matches!(err, BackupError::Bad { line: 1, .. }),
                "{garbage:?}: {err}"
            );
        }
    }
}
