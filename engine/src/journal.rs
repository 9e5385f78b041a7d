//! The journal: the pure core, event-sourced on the durable store.
//!
//! [`Journal`] is where the sans-IO core ([`crate::core`]) meets the store
//! ([`crate::store`]). It keeps every live job in memory (its
//! [`JobContext`], [`JobState`] and next sequence number), and for every
//! input it
//!
//! 1. applies the event to the cached state with [`core::apply`];
//! 2. turns the event and the bookkeeping effects ([`Effect::is_bookkeeping`])
//!    into ONE atomic store batch: the event, the job's metadata when its
//!    status changed, timers, lease release, replicated-item records, a
//!    follow-up job, and now and then a snapshot (see [`snapshot_interval`]);
//! 3. queues that batch to the [`GroupCommitter`] while still holding the
//!    job's lock, then waits for its flush outside the lock
//!    ([`Journal::begin_record`] / [`PendingRecord`]): concurrent calls,
//!    for different jobs or for the same job, share one flush, and a job's
//!    events reach the store in the order they were applied;
//! 4. only once the batch is durable hands back the external effects (run a
//!    VM operation, run a script, prompt an operator, cancel a step) for the
//!    runtime to perform.
//!
//! The API is synchronous: every call but [`Journal::begin_record`] may
//! block on a flush. The async runtime calls `begin_record` on its worker
//! (it blocks on nothing but the job's lock and in-memory store look-ups;
//! only its failure path waits for a barrier commit) and awaits
//! [`PendingRecord::wait_async`]; everything else runs on a blocking thread.
//!
//! # Failure model
//!
//! - A rejected event ([`Rejected`]) writes nothing; a duplicate outcome
//!   (at-least-once delivery, [`Rejected::is_duplicate`]), and an outcome
//!   or timer that arrives after its job ended, is `Ok(vec![])`.
//! - A failure *before* the commit (an illegal replicated-item transition,
//!   a VM taken at start, a record that cannot be encoded) writes nothing;
//!   the job's cached state is rebuilt from the store, so it is again the
//!   last durable state.
//! - A failed *commit* (the flush failed, the commit thread stopped) leaves
//!   the batch "unknown": it was applied and may still reach the disk. The
//!   journal cannot roll the store back, and acting on the batch or
//!   forgetting it would both be wrong, so it **poisons itself**: every later
//!   `submit` / `record` fails with [`JournalError::Poisoned`] until the
//!   process reopens the store ([`Journal::open`]) and resumes from what is
//!   really durable. Nothing that was not durable is ever acknowledged or
//!   performed.
//!
//! # What is stored per job
//!
//! - the plan text by its blake3 hash ([`Write::Text`], named in the spec);
//! - the validated plan model ([`PlanRecord`], codec-encoded) under
//!   `model:<blake3 of the record>`: a restart rebuilds the job from it and
//!   never depends on plan files still existing or still validating
//!   (compilation is deterministic, so the same step numbering results);
//! - [`JobMeta`], a small summary that lists jobs without reading logs;
//! - the event log (seq 0 is `Submitted`, carrying the [`JobSpec`]);
//! - a [`JobState`] snapshot every [`snapshot_interval`] events.
//!
//! # Leases and replicated items
//!
//! `submit` leases every VM of the job (all or none) before anything else,
//! then checks the VMs' replicated-item records with [`item::check_job`] while it
//! holds them, so no other job can change them in between. A VM with no
//! record takes its state from [`JournalOptions::default_item`]
//! (`Protected { Forward }` unless the caller says otherwise; the runtime
//! passes the inventory's declared state, `protect::default_item`, and
//! protect / unprotect jobs write the records: docs/protection.md).
//! A follow-up job (auto-commit, auto-rollback) is created in its parent's
//! final batch; its VMs are reserved right after that commit when they are
//! free, and in any case leased and checked again when it starts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::item::{self, IllegalItemTransition, ItemState, NotReady};
use crate::core::{
    self, Effect, JobContext, JobEvent, JobSpec, JobState, JobStatus, Millis, Mode, Rejected,
    TimerId,
};
use crate::plan::compile::Operation;
use crate::plan::model::{Direction, Plan};
use crate::store::commit::{GroupCommitter, Ticket};
use crate::store::{JobId, Store, StoreError, Write, codec};

/// Events between two snapshots of a job's state, unless configured.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1024;

/// Steps of a job per unit of [`JournalOptions::snapshot_every`]: a job
/// with more steps gets a proportionally wider interval.
pub const SNAPSHOT_STEPS: usize = 1024;

/// Events between two snapshots of a job with `steps` steps: `every`, times
/// one more for each further [`SNAPSHOT_STEPS`] steps.
///
/// Why: a snapshot's size (and the time to encode and write it, under the
/// job's lock) grows with the job's steps — 540 KB of JSON for a 4,000-step
/// failover. A fixed interval makes snapshots of big jobs the dominant cost
/// per event; an interval proportional to the steps keeps it constant per
/// event, while a reopen still replays at most about one event per step
/// on top of decoding the snapshot, which is itself about one record per
/// step. Jobs of up to `SNAPSHOT_STEPS` steps keep exactly `every`.
pub fn snapshot_interval(every: u64, steps: usize) -> u64 {
    let units = steps.div_ceil(SNAPSHOT_STEPS).max(1) as u64;
    every.saturating_mul(units)
}

/// What to submit: a validated plan, its text, and what to do with it.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub plan: Plan,
    /// The exact plan text (kept by content hash for audits).
    pub plan_text: String,
    pub operation: Operation,
    pub requested_by: String,
    /// Submission time (Unix ms).
    pub at: Millis,
    /// A scheduled start (the job waits for its `ScheduledStart` timer).
    pub start_at: Option<Millis>,
    pub parent: Option<JobId>,
}

/// A job's summary record, stored beside its log and rewritten whenever its
/// status changes. Versioned by the store codec; new fields get serde
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    pub id: JobId,
    pub plan_name: String,
    /// blake3 of the plan text (the store keeps the text under it).
    pub plan_hash: String,
    /// Store key of the validated plan model ([`PlanRecord`]).
    pub model_key: String,
    pub operation: Operation,
    pub status: JobStatus,
    pub requested_by: String,
    pub parent: Option<JobId>,
    pub start_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Facts about how the job ran that are not part of its request, set
    /// by the journal's host: [`TIME_SCALE_LABEL`]. Empty in stores written
    /// before drplan recorded any (their time scale is unknown).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The label of the simulated fabric's time scale(s) a job ran at: one
/// number (`0.01`), or several separated by `,` when processes at different
/// `--time-scale`s ran parts of it (its durations then mix scales).
pub const TIME_SCALE_LABEL: &str = "fabric.time_scale";

impl JobMeta {
    /// The time scales the job ran at, in the order first seen; empty when
    /// unknown (a job recorded before drplan kept them, or a fabric that
    /// does not scale time).
    pub fn time_scales(&self) -> Vec<f64> {
        self.labels
            .get(TIME_SCALE_LABEL)
            .map(|v| parse_scales(v))
            .unwrap_or_default()
    }

    /// Adds `scale` to the job's time scales (nothing when already there).
    pub fn add_time_scale(&mut self, scale: f64) {
        add_time_scale(&mut self.labels, scale);
    }
}

/// Adds `scale` to the [`TIME_SCALE_LABEL`] of `labels`, unless there.
fn add_time_scale(labels: &mut BTreeMap<String, String>, scale: f64) {
    let label = labels.entry(TIME_SCALE_LABEL.to_string()).or_default();
    if !parse_scales(label).iter().any(|&s| same_scale(s, scale)) {
        if !label.is_empty() {
            label.push(',');
        }
        label.push_str(&scale.to_string());
    }
}

/// The numbers of a [`TIME_SCALE_LABEL`] value (a damaged part is skipped).
fn parse_scales(label: &str) -> Vec<f64> {
    label
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Whether two time scales are the same setting (`--time-scale 0.01`
/// written twice), allowing for float formatting round trips.
pub fn same_scale(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The validated plan a job runs, as stored (codec-encoded JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan: Plan,
}

/// A VM's replicated-item state when the store has no record for it.
pub type DefaultItem = Arc<dyn Fn(&str) -> ItemState + Send + Sync>;

/// Tunables of a [`Journal`].
#[derive(Clone)]
pub struct JournalOptions {
    /// A snapshot of a job's state is written with every event whose
    /// sequence number is a multiple of this, widened for jobs of many
    /// steps by [`snapshot_interval`] (0: never).
    pub snapshot_every: u64,
    /// The state of a VM without an item record (see the module docs).
    pub default_item: DefaultItem,
    /// The simulated fabric's time scale of the process hosting this
    /// journal, recorded on every job it submits or resumes
    /// ([`TIME_SCALE_LABEL`]); `None` records nothing.
    pub time_scale: Option<f64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            default_item: Arc::new(|_| ItemState::Protected {
                direction: Direction::Forward,
            }),
            time_scale: None,
        }
    }
}

impl std::fmt::Debug for JournalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalOptions")
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

/// Everything the journal can refuse or fail with.
#[derive(Debug, Clone, Error)]
pub enum JournalError {
    /// A VM of the job is leased by another job.
    #[error("{}", busy_message(vm, *holder, holder_operation.as_ref(), holder_plan.as_deref()))]
    VmBusy {
        vm: String,
        holder: JobId,
        holder_operation: Option<Operation>,
        holder_plan: Option<String>,
    },
    /// Replicated items are not in a state the operation needs (all of them).
    #[error("{}", not_ready_message(.0))]
    NotReady(Vec<NotReady>),
    /// The core refused the event; nothing was written.
    #[error(transparent)]
    Rejected(Rejected),
    #[error("job {0} does not exist")]
    UnknownJob(JobId),
    #[error("job {job} is finished ({status}); it takes no more events")]
    Finished { job: JobId, status: JobStatus },
    /// A stored record of a job cannot be read back.
    #[error("job {job}: {} is damaged: {detail}", seq.map_or_else(|| "a record".to_string(), |s| format!("event {s}")))]
    Damaged {
        job: JobId,
        seq: Option<u64>,
        detail: String,
    },
    /// A job asked for an item transition its VM's record does not allow:
    /// a bug (the lease should have kept the item stable). Nothing written.
    #[error("job {job}: VM `{vm}`: {source}; nothing was recorded")]
    IllegalItem {
        job: JobId,
        vm: String,
        source: IllegalItemTransition,
    },
    /// A commit failed; see the module docs.
    #[error(
        "the journal stopped after a failed commit ({detail}); nothing since was acknowledged: \
         restart drplan to resume from the durable state"
    )]
    Poisoned { detail: String },
    /// [`Journal::begin_record`] met a job whose cached state an earlier
    /// failure left ahead of the store. Rebuilding it waits for the group
    /// committer, which `begin_record` never does (it runs on async
    /// workers): the caller runs [`Journal::resync_job`] where blocking is
    /// allowed and tries again. Callers of the blocking API never see it.
    #[error("job {job}: its cached state must be rebuilt from the store first")]
    Stale { job: JobId },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn busy_message(
    vm: &str,
    holder: JobId,
    operation: Option<&Operation>,
    plan: Option<&str>,
) -> String {
    let what = match (operation, plan) {
        (Some(op), Some(plan)) => format!(" ({op} of plan `{plan}`)"),
        (Some(op), None) => format!(" ({op})"),
        (None, Some(plan)) => format!(" (plan `{plan}`)"),
        (None, None) => String::new(),
    };
    format!("VM `{vm}` is in use by job {holder}{what}; wait for that job to finish or cancel it")
}

fn not_ready_message(problems: &[NotReady]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let n = crate::text::count(problems.len(), "VM");
    format!("{n} not ready: {}", lines.join("; "))
}

/// One live job in memory.
struct Live {
    ctx: Arc<JobContext>,
    plan: Arc<Plan>,
    state: JobState,
    next_seq: u64,
    meta: JobMeta,
    /// The cached state may be ahead of the store (a failure between apply
    /// and queue whose resync did not finish): rebuild before use.
    stale: bool,
}

type Cell = Arc<Mutex<Live>>;

/// The event-sourced job store. `Sync`: share it behind an `Arc`; calls for
/// different jobs run concurrently and share flushes, calls for one job are
/// serialized (its events are committed in sequence order).
pub struct Journal {
    store: Arc<dyn Store>,
    committer: GroupCommitter,
    opts: JournalOptions,
    /// Live (non-terminal) jobs. The map lock is held only to look a job up
    /// or insert/remove one, never across a commit.
    live: RwLock<BTreeMap<JobId, Cell>>,
    poisoned: OnceLock<String>,
    /// Replicated-item states as of the batches queued so far (what the
    /// store holds once they are applied), filled from the store on first
    /// use. A job's VMs are leased to it, so their records change only
    /// through this journal, under that job's lock; reading the store and
    /// decoding the record again for every VM transition was a third of
    /// the work done under the job's lock.
    items: Mutex<HashMap<String, ItemState>>,
    /// Held while lazily computed extra writes ([`Journal::record_then`])
    /// are computed and queued, so that the store applies them in the order
    /// they were computed (a fabric delta taken later is never durable
    /// without the ones taken before it).
    extra_order: Mutex<()>,
}

/// Extra writes computed only once an event is sure to be committed, just
/// before its batch is queued (see [`Journal::record_then`]).
pub type ExtraWrites<'a> = dyn FnMut() -> Result<Vec<Write>, JournalError> + Send + 'a;

/// What a durable event gives back: the external effects to perform and the
/// job's status right after the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub effects: Vec<Effect>,
    pub status: JobStatus,
    /// The job's published script values as of this event, when the
    /// effects start a script (what that script must see; never values of
    /// a later, not yet durable event).
    pub values: Option<BTreeMap<String, String>>,
    /// The event's batch changed the timer index (armed or disarmed a
    /// timer) or a job's status or leases (a timer refused earlier, say a
    /// follow-up waiting for VMs, may now succeed): the runtime wakes its
    /// timer loop only then.
    pub wake_timers: bool,
    /// The event is in the store. `false`: it was dropped (a repeated or
    /// late delivery), so nothing may announce it as recorded.
    pub stored: bool,
    /// The event changed the job's status (its summary record was
    /// rewritten in the same batch).
    pub status_changed: bool,
}

/// An event applied and queued by [`Journal::begin_record`], not yet known
/// to be durable. Its effects are released by [`PendingRecord::wait`] or
/// [`PendingRecord::wait_async`] only once the batch is durable. Dropping it
/// without waiting performs nothing (the batch still commits; a restart
/// re-derives its effects).
#[must_use = "the effects of an event are released only by waiting for its commit"]
pub struct PendingRecord {
    job: JobId,
    /// `None`: the event was dropped (nothing to commit).
    ticket: Option<Ticket>,
    effects: Vec<Effect>,
    status: JobStatus,
    values: Option<BTreeMap<String, String>>,
    wake_timers: bool,
    status_changed: bool,
    finished: bool,
    children: Vec<Live>,
}

impl std::fmt::Debug for PendingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecord")
            .field("job", &self.job)
            .field("queued", &self.ticket.is_some())
            .field("effects", &self.effects)
            .finish_non_exhaustive()
    }
}

impl PendingRecord {
    fn dropped(job: JobId, status: JobStatus) -> PendingRecord {
        PendingRecord {
            job,
            ticket: None,
            effects: Vec::new(),
            status,
            values: None,
            wake_timers: false,
            status_changed: false,
            finished: false,
            children: Vec::new(),
        }
    }

    /// Blocks until the batch is durable (never call from an async task).
    /// `journal` is the one that made this record.
    pub fn wait(mut self, journal: &Journal) -> Result<Recorded, JournalError> {
        let outcome = self.ticket.take().map(Ticket::wait);
        self.finish(journal, outcome)
    }

    /// Waits for the batch to be durable without blocking a thread.
    pub async fn wait_async(mut self, journal: &Journal) -> Result<Recorded, JournalError> {
        let outcome = match self.ticket.take() {
            Some(t) => Some(t.wait_async().await),
            None => None,
        };
        self.finish(journal, outcome)
    }

    fn finish(
        self,
        j: &Journal,
        outcome: Option<Result<(), StoreError>>,
    ) -> Result<Recorded, JournalError> {
        let stored = outcome.is_some();
        if let Some(outcome) = outcome {
            j.commit_outcome(outcome)?;
            // Durable, but if a batch queued before it failed, the journal
            // stopped: act on nothing past a failure (resume re-derives
            // these effects from the store after the restart).
            j.check_poison()?;
            j.settle(self.job, self.finished, self.children);
        }
        Ok(Recorded {
            effects: self.effects,
            status: self.status,
            values: self.values,
            wake_timers: self.wake_timers,
            stored,
            status_changed: stored && self.status_changed,
        })
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("opts", &self.opts)
            .field("poisoned", &self.poisoned.get())
            .finish_non_exhaustive()
    }
}

/// The writes of one commit, plus jobs it creates and the replicated-item
/// states it writes.
struct Batch {
    writes: Vec<Write>,
    children: Vec<Live>,
    items: BTreeMap<String, ItemState>,
}

impl Journal {
    /// Opens the journal on `store` with default options.
    pub fn open(store: Arc<dyn Store>) -> Result<Journal, JournalError> {
        Journal::open_with(store, JournalOptions::default())
    }

    /// Opens the journal: rebuilds every non-terminal job from its snapshot
    /// and the tail of its log, and releases leases no live job owns (a
    /// submission that crashed before its commit).
    pub fn open_with(store: Arc<dyn Store>, opts: JournalOptions) -> Result<Journal, JournalError> {
        let mut live = BTreeMap::new();
        for (id, bytes) in store.jobs()? {
            let meta: JobMeta = codec::decode(&bytes).map_err(|e| JournalError::Damaged {
                job: id,
                seq: None,
                detail: format!("job metadata: {e}"),
            })?;
            if meta.status.is_terminal() {
                continue;
            }
            let mut job = load(&*store, meta)?;
            // This process runs the rest of the job at its own scale: noted
            // in memory, written with the job's next metadata (every job
            // writes one when it ends, which is when it is measured).
            if let Some(scale) = opts.time_scale {
                job.meta.add_time_scale(scale);
            }
            live.insert(id, Arc::new(Mutex::new(job)));
        }
        let orphans: BTreeSet<JobId> = store
            .leases()?
            .into_iter()
            .map(|(_, holder)| holder)
            .filter(|h| !live.contains_key(h))
            .collect();
        let committer = GroupCommitter::new(store.clone());
        if !orphans.is_empty() {
            tracing::info!(
                ?orphans,
                "releasing leases of jobs that were never recorded"
            );
            committer.commit(
                orphans
                    .into_iter()
                    .map(|job| Write::ReleaseLeases { job })
                    .collect(),
            )?;
        }
        Ok(Journal {
            store,
            committer,
            items: Mutex::new(HashMap::new()),
            extra_order: Mutex::new(()),
            opts,
            live: RwLock::new(live),
            poisoned: OnceLock::new(),
        })
    }

    /// The store underneath (for diagnostics and tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Flush statistics of the group committer.
    pub fn commit_stats(&self) -> crate::store::commit::CommitStats {
        self.committer.stats()
    }

    /// Submits a job: leases its VMs, checks their replicated items, and
    /// durably records the plan, the job and its `Submitted` event. Returns
    /// the job id and the external effects (none for a fresh job: it waits
    /// for `Started` or its scheduled start).
    pub fn submit(&self, req: SubmitRequest) -> Result<(JobId, Vec<Effect>), JournalError> {
        self.check_poison()?;
        let ctx = JobContext::new(&req.plan, req.operation);
        let vms: Vec<String> = ctx.main.vms().iter().map(|s| s.to_string()).collect();
        let plan_hash = blake3::hash(req.plan_text.as_bytes()).to_hex().to_string();
        let plan = Arc::new(req.plan);
        let (model_key, model_text) = model_record(&plan)?;

        // The refusals an operator can cause (a VM busy in another job, or
        // not in the state the operation needs) are checked before a job id
        // is allocated, so that a refused submission does not use one up and
        // `drplan jobs` shows no gap. Both are checked again below under the
        // leases: a concurrent submission that takes a VM in between still
        // gets its refusal, at the cost of an unused id (the only way one is
        // skipped, besides a crash between allocation and commit).
        self.check_free(&vms)?;
        // Not ready, or nothing to act on; VMs the operation leaves alone
        // (a `continue` of a stopped failover) are no refusal.
        self.select_items(&req.operation, &vms)?;
        let id = self.store.allocate_job_id()?;
        // Every VM of the plan first: one held by another job is refused
        // naming that job, whatever its state.
        self.acquire(id, &vms)?;
        let mut vms = vms;
        // From here the job holds leases: give them back on any refusal.
        let prepared = (|| {
            // The VMs the job acts on and those it leaves alone
            // (`item::check_job`); only the former stay leased.
            let selection = self.select_items(&req.operation, &vms)?;
            let left_alone = selection.left_alone;
            if !left_alone.is_empty() {
                self.commit(vec![Write::ReleaseLeases { job: id }])?;
                vms = selection.acting;
                self.acquire(id, &vms)?;
                self.check_items(&req.operation, &vms)?;
            }
            let spec = JobSpec {
                left_alone: left_alone.clone(),
                id,
                plan_name: plan.name.clone(),
                plan_hash: plan_hash.clone(),
                operation: req.operation,
                requested_by: req.requested_by.clone(),
                vms: vms.clone(),
                start_at: req.start_at,
                parent: req.parent,
            };
            let event = JobEvent::Submitted { spec, at: req.at };
            let (state, fx) = core::submit(&ctx, &event).map_err(JournalError::Rejected)?;
            let meta = JobMeta {
                id,
                plan_name: plan.name.clone(),
                plan_hash: plan_hash.clone(),
                model_key: model_key.clone(),
                operation: req.operation,
                status: state.status(),
                requested_by: req.requested_by.clone(),
                parent: req.parent,
                start_at: req.start_at,
                created_at: req.at,
                updated_at: req.at,
                labels: self.new_labels(),
            };
            let mut writes = Vec::with_capacity(5 + fx.len());
            if self.store.text(&plan_hash)?.is_none() {
                writes.push(Write::Text {
                    hash: plan_hash.clone(),
                    text: req.plan_text.clone(),
                });
            }
            if self.store.text(&model_key)?.is_none() {
                writes.push(Write::Text {
                    hash: model_key.clone(),
                    text: model_text,
                });
            }
            writes.push(Write::JobMeta {
                job: id,
                payload: codec::try_encode(&meta)?,
            });
            writes.push(Write::Event {
                job: id,
                seq: 0,
                payload: codec::try_encode(&event)?,
            });
            let mut items = BTreeMap::new();
            let external = self.bookkeeping(id, &fx, &mut items, &mut Vec::new(), &mut writes)?;
            Ok((state, meta, writes, external, items))
        })();
        let (state, meta, writes, external, items) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.commit(vec![Write::ReleaseLeases { job: id }])?;
                return Err(e);
            }
        };
        self.commit(writes)?;
        self.remember_items(items);
        let job = Live {
            ctx: Arc::new(ctx),
            plan,
            state,
            next_seq: 1,
            meta,
            stale: false,
        };
        self.write_live().insert(id, Arc::new(Mutex::new(job)));
        Ok((id, external))
    }

    /// Records one event of a live job: applies it, commits it with its
    /// bookkeeping, and returns the external effects to perform (only once
    /// the commit is durable).
    pub fn record(&self, job: JobId, event: JobEvent) -> Result<Vec<Effect>, JournalError> {
        self.record_with(job, event, Vec::new())
    }

    /// [`Journal::record`], with `extra` writes in the SAME atomic batch as
    /// the event. Nothing of `extra` is written when the event is dropped
    /// (a repeated or late delivery) or rejected.
    pub fn record_with(
        &self,
        job: JobId,
        event: JobEvent,
        extra: Vec<Write>,
    ) -> Result<Vec<Effect>, JournalError> {
        let mut extra = Some(extra);
        self.record_then(job, event, &mut || Ok(extra.take().unwrap_or_default()))
    }

    /// [`Journal::record_with`], the extra writes computed by `extra` only
    /// once the event is sure to be committed, and queued in the order the
    /// calls computed them (across every caller of `record_then` and
    /// [`Journal::commit_extra`]). `extra` is not called for a dropped or
    /// rejected event, so what it would have taken (say a fabric delta) is
    /// left for the next call.
    pub fn record_then(
        &self,
        job: JobId,
        event: JobEvent,
        extra: &mut ExtraWrites<'_>,
    ) -> Result<Vec<Effect>, JournalError> {
        let pending = match self.begin_record(job, event.clone(), extra) {
            Err(JournalError::Stale { .. }) => {
                self.resync_job(job)?;
                self.begin_record(job, event, extra)?
            }
            other => other?,
        };
        Ok(pending.wait(self)?.effects)
    }

    /// Rebuilds the cached state of a job that an earlier failure left
    /// ahead of the store (see [`JournalError::Stale`]). Blocks until every
    /// batch queued before is durable: never call it on an async worker.
    pub fn resync_job(&self, job: JobId) -> Result<(), JournalError> {
        self.check_poison()?;
        let cell = self.cell(job)?;
        let mut live = lock_job(&cell, job)?;
        if live.stale {
            self.resync(&mut live)?;
        }
        Ok(())
    }

    /// The first half of [`Journal::record_then`]: applies the event to the
    /// job's cached state and queues its batch to the group committer, all
    /// under the job's lock, then releases the lock and returns a
    /// [`PendingRecord`] whose `wait` (blocking) or `wait_async` gives the
    /// external effects once the batch is durable.
    ///
    /// Why split: while one caller waits for its flush, the next event of the
    /// same job (another VM of the group finishing) can already be applied
    /// and queued behind it, so concurrent completions of one job share a
    /// flush instead of paying one each. The guarantees stay those of
    /// `record`:
    /// - a job's events are queued, hence applied by the store, in the order
    ///   they were applied to the cached state (the lock covers apply and
    ///   queue);
    /// - effects are handed out only once their batch is durable;
    /// - a failed commit poisons the journal, and a waiter whose batch is
    ///   durable but finds the journal poisoned gets `Poisoned` too (its
    ///   effects are re-derived by `resume` after the restart), so nothing
    ///   is acted on past a failure.
    ///
    /// A dropped event (repeat, late outcome) gives a pending record with no
    /// batch and no effects.
    ///
    /// Never waits for the store (it runs on async workers): a failure
    /// after the event was applied to the cache (a follow-up whose VMs were
    /// taken meanwhile, say) marks the job stale and returns that failure;
    /// the job's next `begin_record` then answers [`JournalError::Stale`]
    /// until [`Journal::resync_job`] rebuilt it.
    pub fn begin_record(
        &self,
        job: JobId,
        event: JobEvent,
        extra: &mut ExtraWrites<'_>,
    ) -> Result<PendingRecord, JournalError> {
        self.check_poison()?;
        let cell = match self.cell(job) {
            Ok(cell) => cell,
            Err(JournalError::Finished { status, .. }) if late_delivery(&event) => {
                tracing::debug!(%job, "dropping an outcome delivered after the job ended");
                return Ok(PendingRecord::dropped(job, status));
            }
            Err(e) => return Err(e),
        };
        // Encoded before taking the job's lock (it does not depend on the
        // job's state), so concurrent outcomes of one job wait less.
        let payload = codec::try_encode(&event)?;
        let mut live = lock_job(&cell, job)?;
        // Another caller may have poisoned the journal while we waited.
        self.check_poison()?;
        if live.stale {
            // An earlier failure before its commit left the cache ahead of
            // the store: it must be rebuilt once every batch queued before
            // is in, a wait this call never does.
            return Err(JournalError::Stale { job });
        }
        let before = live.state.status();
        let was_not_started = live.state.mode == Mode::NotStarted;
        // A fired timer leaves the state without a disarm effect; its index
        // entry goes in the same batch.
        let fired = match &event {
            JobEvent::TimerFired { timer, .. } => {
                live.state.timers.get(timer).map(|due| (*timer, *due))
            }
            _ => None,
        };
        let l = &mut *live;
        let fx = match core::apply(&l.ctx, &mut l.state, &event) {
            Ok(fx) => fx,
            Err(r) if r.is_duplicate() => {
                tracing::debug!(%job, reason = %r, "dropping a repeated delivery");
                return Ok(PendingRecord::dropped(job, before));
            }
            Err(Rejected::JobFinished { status, .. }) if late_delivery(&event) => {
                tracing::debug!(%job, "dropping an outcome delivered after the job ended");
                return Ok(PendingRecord::dropped(job, status));
            }
            Err(Rejected::JobFinished { job, status }) => {
                return Err(JournalError::Finished { job, status });
            }
            Err(r) => return Err(JournalError::Rejected(r)),
        };
        // The cached state is now ahead of the store. Until the batch is
        // queued, any failure must restore it (resync) or poison.
        let status = l.state.status();
        let batch = match self.prepare(
            l,
            (&event, payload),
            fired,
            (before, status),
            was_not_started,
            &fx,
        ) {
            Ok(b) => b,
            Err(e) => {
                l.stale = true;
                return Err(e);
            }
        };
        let Batch {
            mut writes,
            children,
            items,
        } = batch;
        let wake_timers = writes.iter().any(|w| {
            matches!(
                w,
                Write::ArmTimer { .. }
                    | Write::DisarmTimer { .. }
                    | Write::JobMeta { .. }
                    | Write::ReleaseLeases { .. }
            )
        });
        let ticket = {
            let _order = self.order();
            match extra() {
                Ok(more) => writes.extend(more),
                Err(e) => {
                    l.stale = true;
                    return Err(e);
                }
            }
            self.committer.submit(writes)
        };
        self.remember_items(items);
        // Queued: the next event of this job goes behind it. Should this
        // batch fail, the journal is poisoned and the cache is never used
        // again.
        l.next_seq += 1;
        if status != before {
            l.meta.status = status;
            l.meta.updated_at = event.at();
        }
        let finished = l.state.is_terminal();
        let effects: Vec<Effect> = fx.into_iter().filter(|e| !e.is_bookkeeping()).collect();
        let values = effects
            .iter()
            .any(|e| matches!(e, Effect::RunScript { .. }))
            .then(|| l.state.values.clone());
        drop(live);
        Ok(PendingRecord {
            job,
            ticket: Some(ticket),
            effects,
            status,
            values,
            wake_timers,
            status_changed: status != before,
            finished,
            children,
        })
    }

    /// After a failure before a commit: waits until every batch queued
    /// before (earlier events of this job among them) is applied and
    /// durable, then rebuilds the job's cache from the store. A failed
    /// barrier poisons the journal; the cell stays marked stale.
    fn resync(&self, l: &mut Live) -> Result<(), JournalError> {
        l.stale = true;
        self.commit(Vec::new())?;
        self.reload(l)?;
        l.stale = false;
        Ok(())
    }

    /// Once a pending record's batch is durable: forget a finished job,
    /// adopt follow-ups and reserve their VMs.
    fn settle(&self, job: JobId, finished: bool, children: Vec<Live>) {
        if children.is_empty() && !finished {
            return;
        }
        let mut map = self.write_live();
        if finished {
            map.remove(&job);
        }
        for child in children {
            let (id, vms) = (child.meta.id, child.state.spec.vms.clone());
            map.insert(id, Arc::new(Mutex::new(child)));
            // Reserve the follow-up's VMs now that the parent released
            // them; if someone was faster, the start will tell.
            match self.store.acquire_leases(id, &vms) {
                Ok(()) => drop(self.committer.submit(Vec::new())),
                Err(e) => {
                    tracing::info!(job = %id, error = %e, "follow-up job's VMs not reserved")
                }
            }
        }
    }

    /// Builds the batch for an applied event.
    fn prepare(
        &self,
        l: &mut Live,
        (event, payload): (&JobEvent, Vec<u8>),
        fired: Option<(TimerId, Millis)>,
        (before, status): (JobStatus, JobStatus),
        was_not_started: bool,
        fx: &[Effect],
    ) -> Result<Batch, JournalError> {
        let job = l.meta.id;
        if was_not_started && l.state.mode != Mode::NotStarted && !l.state.is_terminal() {
            // The job starts: it must hold its VMs (a follow-up may not yet)
            // and they must still be ready.
            self.acquire(job, &l.state.spec.vms)?;
            self.check_items(&l.state.spec.operation, &l.state.spec.vms)?;
        }
        let seq = l.next_seq;
        let mut writes = Vec::with_capacity(2 + fx.len());
        writes.push(Write::Event { job, seq, payload });
        if let Some((timer, due)) = fired {
            writes.push(Write::DisarmTimer {
                due_ms: due,
                job,
                timer: timer_u64(job, timer)?,
            });
        }
        if status != before {
            let mut meta = l.meta.clone();
            meta.status = status;
            meta.updated_at = event.at();
            writes.push(Write::JobMeta {
                job,
                payload: codec::try_encode(&meta)?,
            });
        }
        let mut items = BTreeMap::new();
        let mut children = Vec::new();
        let mut follow_ups = Vec::new();
        self.bookkeeping(job, fx, &mut items, &mut follow_ups, &mut writes)?;
        for (operation, due) in follow_ups {
            let child = self.follow_up(l, operation, due, event.at(), &mut writes)?;
            children.push(child);
        }
        if self.opts.snapshot_every > 0
            && seq.is_multiple_of(snapshot_interval(self.opts.snapshot_every, l.ctx.len()))
        {
            writes.push(Write::Snapshot {
                job,
                seq,
                payload: codec::try_encode(&l.state)?,
            });
        }
        Ok(Batch {
            writes,
            children,
            items,
        })
    }

    /// Maps bookkeeping effects to writes; returns the external effects.
    /// Follow-ups are returned in `follow_ups` (they need the parent).
    fn bookkeeping(
        &self,
        job: JobId,
        fx: &[Effect],
        items: &mut BTreeMap<String, ItemState>,
        follow_ups: &mut Vec<(Operation, Millis)>,
        writes: &mut Vec<Write>,
    ) -> Result<Vec<Effect>, JournalError> {
        let mut external = Vec::new();
        for e in fx {
            match e {
                Effect::ArmTimer { timer, due } => writes.push(Write::ArmTimer {
                    due_ms: *due,
                    job,
                    timer: timer_u64(job, *timer)?,
                }),
                Effect::DisarmTimer { timer, due } => writes.push(Write::DisarmTimer {
                    due_ms: *due,
                    job,
                    timer: timer_u64(job, *timer)?,
                }),
                Effect::ReleaseLeases => writes.push(Write::ReleaseLeases { job }),
                Effect::Item { vm, event } => {
                    let current = match items.get(vm) {
                        Some(s) => *s,
                        None => self.item_state(vm)?,
                    };
                    let next = item::transition(&current, event).map_err(|source| {
                        JournalError::IllegalItem {
                            job,
                            vm: vm.clone(),
                            source,
                        }
                    })?;
                    items.insert(vm.clone(), next);
                    writes.push(Write::Item {
                        vm: vm.clone(),
                        payload: codec::try_encode(&next)?,
                    });
                }
                Effect::ScheduleFollowUp { operation, due } => follow_ups.push((*operation, *due)),
                Effect::Finished { .. } => {}
                Effect::RunVmOp { .. }
                | Effect::RunScript { .. }
                | Effect::AwaitOperator { .. }
                | Effect::CancelStep { .. } => external.push(e.clone()),
            }
        }
        Ok(external)
    }

    /// A follow-up job of `parent` (same plan), written into the parent's
    /// batch: metadata, `Submitted` with its scheduled start, its timer.
    fn follow_up(
        &self,
        parent: &Live,
        operation: Operation,
        due: Millis,
        at: Millis,
        writes: &mut Vec<Write>,
    ) -> Result<Live, JournalError> {
        let id = self.store.allocate_job_id()?;
        let ctx = JobContext::new(&parent.plan, operation);
        let spec = JobSpec {
            id,
            plan_name: parent.meta.plan_name.clone(),
            plan_hash: parent.meta.plan_hash.clone(),
            operation,
            requested_by: parent.meta.requested_by.clone(),
            vms: ctx.main.vms().iter().map(|s| s.to_string()).collect(),
            start_at: Some(due),
            parent: Some(parent.meta.id),
            left_alone: Vec::new(),
        };
        let event = JobEvent::Submitted { spec, at };
        let (state, fx) = core::submit(&ctx, &event).map_err(JournalError::Rejected)?;
        let meta = JobMeta {
            id,
            operation,
            status: state.status(),
            parent: Some(parent.meta.id),
            start_at: Some(due),
            created_at: at,
            updated_at: at,
            labels: self.new_labels(),
            ..parent.meta.clone()
        };
        writes.push(Write::JobMeta {
            job: id,
            payload: codec::try_encode(&meta)?,
        });
        writes.push(Write::Event {
            job: id,
            seq: 0,
            payload: codec::try_encode(&event)?,
        });
        // A fresh job's effects are its start timer only.
        self.bookkeeping(id, &fx, &mut BTreeMap::new(), &mut Vec::new(), writes)?;
        Ok(Live {
            ctx: Arc::new(ctx),
            plan: parent.plan.clone(),
            state,
            next_seq: 1,
            meta,
            stale: false,
        })
    }

    /// What to issue again after a restart, per live job (see
    /// [`core::resume_effects`]).
    pub fn resume(&self) -> Vec<(JobId, Effect)> {
        let cells: Vec<(JobId, Cell)> = self
            .read_live()
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, cell) in cells {
            let Ok(live) = cell.lock() else { continue };
            out.extend(
                core::resume_effects(&live.ctx, &live.state)
                    .into_iter()
                    .map(|e| (id, e)),
            );
        }
        out
    }

    /// Armed timers due at or before `now`, from the store's index, sorted
    /// by due time: (job, timer, due).
    pub fn due_timers(&self, now: Millis) -> Result<Vec<(JobId, TimerId, Millis)>, JournalError> {
        self.store
            .timers_due(now)?
            .into_iter()
            .map(|t| {
                let timer = TimerId::from_u64(t.timer).ok_or_else(|| JournalError::Damaged {
                    job: t.job,
                    seq: None,
                    detail: format!("timer index entry {:#x} is not a timer", t.timer),
                })?;
                Ok((t.job, timer, t.due_ms))
            })
            .collect()
    }

    /// A job's current state: live ones from memory, finished ones rebuilt
    /// from the store.
    pub fn job(&self, id: JobId) -> Result<Option<JobState>, JournalError> {
        if let Some(cell) = self.read_live().get(&id).cloned() {
            let live = lock_job(&cell, id)?;
            // A stale cache is ahead of the store (an event that failed
            // before its commit): answer what is durable.
            if !live.stale {
                return Ok(Some(live.state.clone()));
            }
        }
        let Some(bytes) = self.store.job_meta(id)? else {
            return Ok(None);
        };
        Ok(Some(load(&*self.store, decode_meta(id, &bytes)?)?.state))
    }

    /// The compiled plans of a live job (what the runtime needs to perform
    /// its effects).
    pub fn context(&self, id: JobId) -> Option<Arc<JobContext>> {
        let cell = self.read_live().get(&id).cloned()?;
        let live = cell.lock().ok()?;
        Some(live.ctx.clone())
    }

    /// Every job's summary, by id.
    pub fn jobs(&self) -> Result<Vec<JobMeta>, JournalError> {
        self.store
            .jobs()?
            .into_iter()
            .map(|(id, bytes)| decode_meta(id, &bytes))
            .collect()
    }

    /// A job's whole history.
    pub fn events(&self, id: JobId) -> Result<Vec<JobEvent>, JournalError> {
        let mut out = Vec::new();
        for (seq, bytes) in self.store.events(id, 0)? {
            out.push(decode_event(id, seq, &bytes)?);
        }
        Ok(out)
    }

    /// A VM's stored replicated-item record (`None`: no record yet).
    pub fn item(&self, vm: &str) -> Result<Option<ItemState>, JournalError> {
        self.store
            .item(vm)?
            .map(|bytes| decode_item(vm, &bytes))
            .transpose()
    }

    /// Every lease, as (VM, holder).
    pub fn leases(&self) -> Result<Vec<(String, JobId)>, JournalError> {
        Ok(self.store.leases()?)
    }

    // ---------------------------------------------------------------------

    fn check_poison(&self) -> Result<(), JournalError> {
        match self.poisoned.get() {
            Some(detail) => Err(JournalError::Poisoned {
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Commits a batch durably; any failure poisons the journal.
    /// Commits writes computed by `extra` (and nothing else: say a fabric
    /// delta not tied to an event), queued in order with those of
    /// [`Journal::record_then`]. Nothing is committed when `extra` returns
    /// no write.
    pub fn commit_extra(&self, extra: &mut ExtraWrites<'_>) -> Result<(), JournalError> {
        self.check_poison()?;
        let ticket = {
            let _order = self.order();
            let writes = extra()?;
            if writes.is_empty() {
                return Ok(());
            }
            self.committer.submit(writes)
        };
        self.wait_commit(ticket)
    }

    fn order(&self) -> MutexGuard<'_, ()> {
        // Guards no data: poisoning carries no meaning.
        self.extra_order.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, writes: Vec<Write>) -> Result<(), JournalError> {
        self.wait_commit(self.committer.submit(writes))
    }

    fn wait_commit(&self, ticket: Ticket) -> Result<(), JournalError> {
        self.commit_outcome(ticket.wait())
    }

    /// A commit's outcome; a failure poisons the journal.
    fn commit_outcome(&self, outcome: Result<(), StoreError>) -> Result<(), JournalError> {
        outcome.map_err(|e| {
            let detail = e.to_string();
            tracing::error!(
                target: crate::STORE_FAILED_TARGET,
                error = %detail,
                "commit failed; the journal refuses work until reopened"
            );
            let _ = self.poisoned.set(detail.clone());
            JournalError::Poisoned { detail }
        })
    }

    fn cell(&self, job: JobId) -> Result<Cell, JournalError> {
        if let Some(c) = self.read_live().get(&job) {
            return Ok(c.clone());
        }
        match self.store.job_meta(job)? {
            Some(bytes) => {
                let meta = decode_meta(job, &bytes)?;
                Err(JournalError::Finished {
                    job,
                    status: meta.status,
                })
            }
            None => Err(JournalError::UnknownJob(job)),
        }
    }

    /// Rebuilds a job's cached state from the store (its last durable state,
    /// since nothing of the failed attempt was written).
    fn reload(&self, l: &mut Live) -> Result<(), JournalError> {
        let fresh = load(&*self.store, l.meta.clone())?;
        *l = fresh;
        Ok(())
    }

    fn acquire(&self, job: JobId, vms: &[String]) -> Result<(), JournalError> {
        match self.store.acquire_leases(job, vms) {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseHeld { vm, holder }) => Err(self.busy(vm, holder)),
            Err(e) => Err(e.into()),
        }
    }

    /// The labels of a job this journal creates: its host's time scale.
    fn new_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(scale) = self.opts.time_scale {
            add_time_scale(&mut labels, scale);
        }
        labels
    }

    /// Refuses, as [`Journal::acquire`] would, when one of `vms` is leased
    /// by a job: the check a new job makes before it has an id.
    fn check_free(&self, vms: &[String]) -> Result<(), JournalError> {
        let wanted: BTreeSet<&str> = vms.iter().map(String::as_str).collect();
        match self
            .store
            .leases()?
            .into_iter()
            .find(|(vm, _)| wanted.contains(vm.as_str()))
        {
            Some((vm, holder)) => Err(self.busy(vm, holder)),
            None => Ok(()),
        }
    }

    /// "VM busy", with what the holder does when its record says.
    fn busy(&self, vm: String, holder: JobId) -> JournalError {
        let meta = self
            .store
            .job_meta(holder)
            .ok()
            .flatten()
            .and_then(|b| codec::decode::<JobMeta>(&b).ok());
        JournalError::VmBusy {
            vm,
            holder,
            holder_operation: meta.as_ref().map(|m| m.operation),
            holder_plan: meta.map(|m| m.plan_name),
        }
    }

    fn item_state(&self, vm: &str) -> Result<ItemState, JournalError> {
        if let Some(state) = lock_items(&self.items).get(vm) {
            return Ok(*state);
        }
        let state = match self.store.item(vm)? {
            Some(bytes) => decode_item(vm, &bytes)?,
            None => (self.opts.default_item)(vm),
        };
        lock_items(&self.items).insert(vm.to_string(), state);
        Ok(state)
    }

    /// Records the item states of a batch just queued (see `items`).
    fn remember_items(&self, items: BTreeMap<String, ItemState>) {
        if !items.is_empty() {
            lock_items(&self.items).extend(items);
        }
    }

    fn select_items(
        &self,
        operation: &Operation,
        vms: &[String],
    ) -> Result<item::Selection, JournalError> {
        let states = vms
            .iter()
            .map(|vm| self.item_state(vm))
            .collect::<Result<Vec<_>, _>>()?;
        item::check_job(operation, vms.iter().map(String::as_str).zip(states.iter()))
            .map_err(JournalError::NotReady)
    }

    /// Every VM of `vms` is one the operation acts on (none left alone).
    fn check_items(&self, operation: &Operation, vms: &[String]) -> Result<(), JournalError> {
        let states = vms
            .iter()
            .map(|vm| self.item_state(vm))
            .collect::<Result<Vec<_>, _>>()?;
        let problems: Vec<_> = vms
            .iter()
            .zip(&states)
            .filter_map(|(vm, st)| item::check_operation(vm, st, operation).err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(JournalError::NotReady(problems))
        }
    }

    fn read_live(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<JobId, Cell>> {
        // The map is only ever changed by single inserts/removes, which a
        // panic cannot leave half done.
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_live(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<JobId, Cell>> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An outcome or a timer arriving after its job ended: at-least-once
/// delivery makes this routine (the job ended on the first delivery, or
/// ended otherwise and the outcome no longer matters), so it is dropped like
/// any other repeat. Operators' commands on a finished job are refused.
fn late_delivery(event: &JobEvent) -> bool {
    matches!(
        event,
        JobEvent::StepFinished { .. } | JobEvent::TimerFired { .. }
    )
}

fn lock_items(
    items: &Mutex<HashMap<String, ItemState>>,
) -> MutexGuard<'_, HashMap<String, ItemState>> {
    // Whole entries are inserted under the lock: a panic elsewhere cannot
    // leave one half-written, so a poisoned lock is still usable.
    items.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_job(cell: &Cell, job: JobId) -> Result<MutexGuard<'_, Live>, JournalError> {
    // A panic while a job was being recorded may have left its state ahead
    // of the store: refuse to use it rather than guess.
    cell.lock().map_err(|_| JournalError::Poisoned {
        detail: format!("a thread panicked while recording job {job}"),
    })
}

fn timer_u64(job: JobId, timer: TimerId) -> Result<u64, JournalError> {
    timer.to_u64().ok_or_else(|| JournalError::Damaged {
        job,
        seq: None,
        detail: format!("timer `{timer}` does not fit the timer index"),
    })
}

fn model_record(plan: &Plan) -> Result<(String, String), JournalError> {
    let bytes = codec::try_encode(&PlanRecord { plan: plan.clone() })?;
    let key = format!("model:{}", blake3::hash(&bytes).to_hex());
    // The codec header is ASCII for every version below 128 and the body
    // is JSON, so the record is valid UTF-8 and fits a text entry.
    let text = String::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
        what: "plan model record".into(),
        detail: e.to_string(),
    })?;
    Ok((key, text))
}

fn decode_meta(job: JobId, bytes: &[u8]) -> Result<JobMeta, JournalError> {
    codec::decode(bytes).map_err(|e| JournalError::Damaged {
        job,
        seq: None,
        detail: format!("job metadata: {e}"),
    })
}

fn decode_event(job: JobId, seq: u64, bytes: &[u8]) -> Result<JobEvent, JournalError> {
    codec::decode(bytes).map_err(|e| JournalError::Damaged {
        job,
        seq: Some(seq),
        detail: e.to_string(),
    })
}

fn decode_item(vm: &str, bytes: &[u8]) -> Result<ItemState, JournalError> {
    codec::decode(bytes).map_err(|e| {
        JournalError::Store(StoreError::Corrupt {
            what: format!("replicated-item record of VM `{vm}`"),
            detail: e.to_string(),
        })
    })
}

/// Rebuilds one job from the store: its plan model, its snapshot (if any)
/// and the events after it.
fn load(store: &dyn Store, meta: JobMeta) -> Result<Live, JournalError> {
    let job = meta.id;
    let damaged = |seq: Option<u64>, detail: String| JournalError::Damaged { job, seq, detail };
    let text = store.text(&meta.model_key)?.ok_or_else(|| {
        damaged(
            None,
            format!("its plan model `{}` is missing", meta.model_key),
        )
    })?;
    let record: PlanRecord =
        codec::decode(text.as_bytes()).map_err(|e| damaged(None, format!("plan model: {e}")))?;
    // The model was validated when the job was submitted, but the bytes
    // read back may be damaged: compiling an inconsistent plan would panic.
    record
        .plan
        .check()
        .map_err(|e| damaged(None, format!("plan model: {e}")))?;
    let plan = Arc::new(record.plan);
    let ctx = JobContext::new(&plan, meta.operation);

    // Start from the snapshot, else from event 0 (`Submitted`); one scan
    // of the log either way.
    let (mut state, from): (Option<JobState>, u64) = match store.snapshot(job)? {
        Some((seq, bytes)) => {
            let state: JobState =
                codec::decode(&bytes).map_err(|e| damaged(Some(seq), format!("snapshot: {e}")))?;
            if state.spec.id != job || state.steps.len() != ctx.len() {
                return Err(damaged(
                    Some(seq),
                    "snapshot does not belong to this job and plan".into(),
                ));
            }
            snapshot_indexes_ok(&state)
                .map_err(|e| damaged(Some(seq), format!("snapshot: {e}")))?;
            (Some(state), seq + 1)
        }
        None => (None, 0),
    };
    let mut failure: Option<JournalError> = None;
    let mut next_seq = from;
    let visited = store.for_each_event(job, from, &mut |seq, bytes| {
        let outcome = decode_event(job, seq, bytes).and_then(|event| match state.as_mut() {
            Some(st) => core::apply(&ctx, st, &event)
                .map(|_| ())
                .map_err(|e| damaged(Some(seq), format!("does not replay: {e}"))),
            None => {
                let (st, _) = core::submit(&ctx, &event)
                    .map_err(|e| damaged(Some(seq), format!("does not replay: {e}")))?;
                state = Some(st);
                Ok(())
            }
        });
        match outcome {
            Ok(()) => {
                next_seq = seq + 1;
                Ok(())
            }
            Err(e) => {
                failure = Some(e);
                // Stops the scan; the real error is in `failure`.
                Err(StoreError::CommitterStopped)
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    visited?;
    let state = state.ok_or_else(|| damaged(Some(0), "the log is empty".into()))?;
    Ok(Live {
        ctx: Arc::new(ctx),
        plan,
        state,
        next_seq,
        meta,
        stale: false,
    })
}

/// The step ids a decoded snapshot refers to are steps of its plan: the
/// core indexes its step table with them (a damaged snapshot must be an
/// error, not a panic).
fn snapshot_indexes_ok(state: &JobState) -> Result<(), String> {
    let n = state.steps.len();
    let timer_step = |t: &TimerId| match t {
        TimerId::Retry { step, .. } | TimerId::ManualTimeout { step } | TimerId::Wait { step } => {
            Some(*step)
        }
        TimerId::TestDeadline | TimerId::ScheduledStart => None,
    };
    let bad = state
        .active
        .iter()
        .copied()
        .chain(state.outputs.keys().copied())
        .chain(state.answers.keys().copied())
        .chain(state.timers.keys().filter_map(timer_step))
        .find(|&s| s >= n);
    match bad {
        Some(s) => Err(format!(
            "it names step {s}, but the plan has {}",
            crate::text::count(n, "step")
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_interval_widens_with_the_steps_only_past_the_unit() {
        assert_eq!(snapshot_interval(1024, 0), 1024);
        assert_eq!(snapshot_interval(1024, 40), 1024);
        assert_eq!(snapshot_interval(5, SNAPSHOT_STEPS), 5);
        assert_eq!(snapshot_interval(5, SNAPSHOT_STEPS + 1), 10);
        // The 10 x 100 planned failover (4,000 steps): every 4,096 events.
        assert_eq!(snapshot_interval(1024, 4000), 4096);
        assert_eq!(snapshot_interval(u64::MAX, 10 * SNAPSHOT_STEPS), u64::MAX);
    }
}
