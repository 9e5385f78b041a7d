//! `drplan store check`: verify a store record by record, without writing.
//!
//! The store itself only knows bytes under keys; this check knows what each
//! record must be (it sits above `journal`, which is why it is not inside
//! `store`). It reads every record once through [`Store::for_each_record`]
//! and decodes it with its type, then replays every job's log from event 0
//! (the snapshot must equal the replay at its sequence number, the final
//! state must have the status the job's metadata says), and checks the
//! indexes: every timer and lease belongs to a live job, every timer a live
//! job has armed is in the index, every job's plan text and plan model are
//! present and hash to their keys.
//!
//! Problems are collected, not returned at the first: each names the record
//! (key) and the job it belongs to. Only a store that cannot be read at all
//! is an `Err`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::core::{self, ItemState, JobContext, JobEvent, JobState, TimerId};
use crate::fabric::{SimDelta, SimState};
use crate::journal::{JobMeta, PlanRecord};
use crate::store::backup::Counts;
use crate::store::{JobId, Record, Store, StoreError, codec};

/// The key of the simulated fabric's saved world and the prefix of its
/// deltas (`runtime::FULL_KEY` / `runtime::DELTA_PREFIX`; repeated here
/// because `runtime` exists only on unix).
const FABRIC_FULL: &str = "fabric/full";
const FABRIC_DELTA: &str = "fabric/delta/";

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Harmless or repaired on the next open (an orphan lease).
    Warning,
    /// Data that cannot be read, or that contradicts other data.
    Error,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Which record: `job 3 event 17`, `lease web-01`, `text model:ab12…`.
    pub record: String,
    pub job: Option<JobId>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}: {}", self.record, self.message)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub next_job: u64,
    /// Records of each kind.
    pub counts: Counts,
    /// Jobs whose whole log replayed.
    pub jobs_replayed: u64,
    /// Jobs not finished (they resume when an engine opens the store).
    pub live_jobs: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// What phase 1 keeps of each job.
#[derive(Default)]
struct JobFacts {
    events: u64,
    /// The log is dense 0..events and every event decoded.
    log_ok: bool,
    meta: Option<JobMeta>,
    snapshot_seq: Option<u64>,
}

/// The most problems reported (a store with a million bad records must not
/// produce a million lines).
pub const MAX_PROBLEMS: usize = 1000;

struct Collector {
    problems: Vec<Problem>,
    dropped: usize,
}

impl Collector {
    fn push(&mut self, severity: Severity, record: String, job: Option<JobId>, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                severity,
                record,
                job,
                message,
            });
        } else {
            self.dropped += 1;
        }
    }

    fn error(&mut self, record: String, job: Option<JobId>, message: impl Into<String>) {
        self.push(Severity::Error, record, job, message.into());
    }
}

/// Verifies every record of `store` (see the module docs). Never writes.
pub fn check(store: &dyn Store) -> Result<Report, StoreError> {
    let mut out = Collector {
        problems: Vec::new(),
        dropped: 0,
    };
    let mut report = Report::default();
    let mut jobs: BTreeMap<JobId, JobFacts> = BTreeMap::new();
    let mut timers = Vec::new();
    let mut leases = Vec::new();
    let mut texts = BTreeSet::new();

    // Phase 1: every record decodes with its type.
    store.for_each_record(&mut |record| {
        match record {
            Record::NextJob(n) => report.next_job = n,
            Record::Event { job, seq, payload } => {
                report.counts.events += 1;
                let facts = jobs.entry(job).or_insert_with(|| JobFacts {
                    log_ok: true,
                    ..JobFacts::default()
                });
                let where_ = format!("job {job} event {seq}");
                if seq != facts.events {
                    out.error(
                        where_.clone(),
                        Some(job),
                        format!("the log is not dense: expected event {}", facts.events),
                    );
                    facts.log_ok = false;
                }
                facts.events = seq.saturating_add(1);
                if let Err(e) = codec::decode::<JobEvent>(&payload) {
                    out.error(where_, Some(job), e.to_string());
                    facts.log_ok = false;
                }
            }
            Record::JobMeta { job, payload } => {
                report.counts.jobs += 1;
                let where_ = format!("job {job} metadata");
                match codec::decode::<JobMeta>(&payload) {
                    Ok(meta) if meta.id != job => out.error(
                        where_,
                        Some(job),
                        format!("it describes job {} instead", meta.id),
                    ),
                    Ok(meta) => jobs.entry(job).or_default().meta = Some(meta),
                    Err(e) => out.error(where_, Some(job), e.to_string()),
                }
            }
            Record::Snapshot { job, seq, payload } => {
                report.counts.snapshots += 1;
                match codec::decode::<JobState>(&payload) {
                    Ok(_) => jobs.entry(job).or_default().snapshot_seq = Some(seq),
                    Err(e) => out.error(format!("job {job} snapshot"), Some(job), e.to_string()),
                }
            }
            Record::Timer(t) => {
                report.counts.timers += 1;
                timers.push(t);
            }
            Record::Lease { vm, job } => {
                report.counts.leases += 1;
                leases.push((vm, job));
            }
            Record::Item { vm, payload } => {
                report.counts.items += 1;
                if let Err(e) = codec::decode::<ItemState>(&payload) {
                    out.error(format!("item {vm}"), None, e.to_string());
                }
            }
            Record::Text { hash, text } => {
                report.counts.texts += 1;
                check_text(&mut out, &hash, &text);
                texts.insert(hash);
            }
            Record::Blob { key, payload } => {
                report.counts.blobs += 1;
                let decoded = if key == FABRIC_FULL {
                    codec::decode::<SimState>(&payload).map(|_| ())
                } else if let Some(seq) = key.strip_prefix(FABRIC_DELTA) {
                    if seq.len() != 20 || seq.parse::<u64>().is_err() {
                        out.error(
                            format!("blob {key}"),
                            None,
                            "a fabric delta key needs a 20-digit sequence number",
                        );
                    }
                    codec::decode::<SimDelta>(&payload).map(|_| ())
                } else {
                    out.push(
                        Severity::Warning,
                        format!("blob {key}"),
                        None,
                        "no drplan component uses this key".into(),
                    );
                    codec::peek_version(&payload).map(|_| ())
                };
                if let Err(e) = decoded {
                    out.error(format!("blob {key}"), None, e.to_string());
                }
            }
            Record::Unknown { key, value } => out.error(
                format!("key {}", String::from_utf8_lossy(&key).escape_debug()),
                None,
                format!(
                    "not a key drplan writes ({} byte value): damage, or a newer drplan's record",
                    value.len()
                ),
            ),
        }
        Ok(())
    })?;

    // Phase 2: replay every job with metadata; check its records agree.
    let mut live: BTreeMap<JobId, JobState> = BTreeMap::new();
    for (&job, facts) in &jobs {
        if job.0 == 0 || job.0 >= report.next_job {
            out.error(
                format!("job {job}"),
                Some(job),
                format!(
                    "its id is not below the store's next job id {}",
                    report.next_job
                ),
            );
        }
        let Some(meta) = &facts.meta else {
            out.error(
                format!("job {job}"),
                Some(job),
                "it has events or a snapshot but no metadata record",
            );
            continue;
        };
        if !texts.contains(&meta.plan_hash) {
            out.error(
                format!("job {job} metadata"),
                Some(job),
                format!("its plan text `{}` is missing", meta.plan_hash),
            );
        }
        if facts.events == 0 {
            out.error(format!("job {job}"), Some(job), "its log is empty");
            continue;
        }
        if !facts.log_ok {
            continue; // already reported; a replay would stop at the same place
        }
        if let Some(seq) = facts.snapshot_seq
            && seq >= facts.events
        {
            out.error(
                format!("job {job} snapshot"),
                Some(job),
                format!(
                    "it covers event {seq}, but the log has {}",
                    crate::text::count(facts.events, "event")
                ),
            );
            continue;
        }
        match replay(store, meta, facts.snapshot_seq) {
            Ok(state) => {
                report.jobs_replayed += 1;
                if state.status() != meta.status {
                    out.error(
                        format!("job {job} metadata"),
                        Some(job),
                        format!(
                            "it says {}, but its log replays to {}",
                            meta.status,
                            state.status()
                        ),
                    );
                }
                if !state.is_terminal() {
                    report.live_jobs += 1;
                    live.insert(job, state);
                }
            }
            Err((record, message)) => out.error(record, Some(job), message),
        }
    }

    // Indexes.
    let mut indexed = BTreeSet::new();
    for t in &timers {
        let record = format!("timer {:#x} of job {} due {}", t.timer, t.job, t.due_ms);
        let Some(timer) = TimerId::from_u64(t.timer) else {
            out.error(record, Some(t.job), "not a timer id drplan writes");
            continue;
        };
        match live.get(&t.job) {
            Some(state) if state.timers.get(&timer) == Some(&t.due_ms) => {
                indexed.insert((t.job, timer));
            }
            Some(_) => out.error(
                record,
                Some(t.job),
                "the job's state has no such timer armed at that time: it would fire for nothing",
            ),
            None => out.error(
                record,
                Some(t.job),
                "it belongs to a job that is finished or does not exist",
            ),
        }
    }
    for (job, state) in &live {
        for (timer, due) in &state.timers {
            if !indexed.contains(&(*job, *timer)) {
                out.error(
                    format!("job {job} timer {timer}"),
                    Some(*job),
                    format!("armed in the job's state (due {due}) but missing from the timer index: it would never fire"),
                );
            }
        }
    }
    for (vm, holder) in &leases {
        let record = format!("lease {vm}");
        if live.contains_key(holder) {
            continue;
        }
        match jobs.get(holder).and_then(|f| f.meta.as_ref()) {
            Some(meta) if meta.status.is_terminal() => out.error(
                record,
                Some(*holder),
                format!(
                    "held by job {holder}, which is finished ({}): the VM can never be used again",
                    meta.status
                ),
            ),
            // A live job whose replay failed is reported above.
            Some(_) => {}
            None => out.push(
                Severity::Warning,
                record,
                Some(*holder),
                format!(
                    "held by job {holder}, which was never recorded (a submission that crashed); \
                     released when an engine next opens the store"
                ),
            ),
        }
    }
    report.problems = out.problems;
    if out.dropped > 0 {
        report.problems.push(Problem {
            severity: Severity::Error,
            record: "store".into(),
            job: None,
            message: format!(
                "{} not listed",
                crate::text::count(out.dropped, "more problem")
            ),
        });
    }
    Ok(report)
}

/// A text record: plan texts are UTF-8 under the blake3 of their bytes;
/// plan models (`model:<blake3>`) decode, pass [`crate::plan::model::Plan::check`]
/// and hash to their key.
fn check_text(out: &mut Collector, hash: &str, bytes: &[u8]) {
    let record = format!("text {hash}");
    let actual = blake3::hash(bytes).to_hex().to_string();
    if let Some(model_hash) = hash.strip_prefix("model:") {
        match codec::decode::<PlanRecord>(bytes) {
            Ok(r) => {
                if let Err(e) = r.plan.check() {
                    out.error(record.clone(), None, format!("plan model: {e}"));
                }
            }
            Err(e) => out.error(record.clone(), None, e.to_string()),
        }
        if model_hash != actual {
            out.error(record, None, "its content does not hash to its key");
        }
    } else if std::str::from_utf8(bytes).is_err() {
        out.error(record, None, "a plan text that is not UTF-8");
    } else if hash != actual {
        out.error(record, None, "its content does not hash to its key");
    }
}

/// Replays a job's whole log; at the snapshot's sequence number the replay
/// must equal the snapshot. Errors: (record, message).
fn replay(
    store: &dyn Store,
    meta: &JobMeta,
    snapshot_seq: Option<u64>,
) -> Result<JobState, (String, String)> {
    let job = meta.id;
    let plan_record = format!("job {job} plan model");
    let text = store
        .text(&meta.model_key)
        .map_err(|e| (plan_record.clone(), e.to_string()))?
        .ok_or_else(|| {
            (
                format!("job {job} metadata"),
                format!("its plan model `{}` is missing", meta.model_key),
            )
        })?;
    let plan = codec::decode::<PlanRecord>(text.as_bytes())
        .map_err(|e| (plan_record.clone(), e.to_string()))?
        .plan;
    plan.check().map_err(|e| (plan_record, e))?;
    let ctx = JobContext::new(&plan, meta.operation);
    let snapshot = match snapshot_seq {
        Some(_) => store
            .snapshot(job)
            .map_err(|e| (format!("job {job} snapshot"), e.to_string()))?
            .and_then(|(seq, bytes)| Some((seq, codec::decode::<JobState>(&bytes).ok()?))),
        None => None,
    };
    let mut state: Option<JobState> = None;
    let mut failure: Option<(String, String)> = None;
    let visited = store.for_each_event(job, 0, &mut |seq, bytes| {
        let fail = |m: String| (format!("job {job} event {seq}"), m);
        let mut step = || -> Result<(), (String, String)> {
            let event: JobEvent = codec::decode(bytes).map_err(|e| fail(e.to_string()))?;
            match state.as_mut() {
                Some(st) => {
                    core::apply(&ctx, st, &event)
                        .map_err(|e| fail(format!("does not replay: {e}")))?;
                }
                None => {
                    let (st, _) = core::submit(&ctx, &event)
                        .map_err(|e| fail(format!("does not replay: {e}")))?;
                    state = Some(st);
                }
            }
            if let Some((snap_seq, snap)) = &snapshot
                && *snap_seq == seq
                && state.as_ref() != Some(snap)
            {
                return Err((
                    format!("job {job} snapshot"),
                    format!("it differs from the replay of events 0..={seq}"),
                ));
            }
            Ok(())
        };
        match step() {
            Ok(()) => Ok(()),
            Err(e) => {
                failure = Some(e);
                Err(StoreError::CommitterStopped) // stops the scan
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    visited.map_err(|e| (format!("job {job} events"), e.to_string()))?;
    state.ok_or_else(|| (format!("job {job}"), "its log is empty".to_string()))
}
