//! The runtime: drives the durable core with tokio.
//!
//! [`Engine`] owns a [`Journal`] and performs the external effects the core
//! returns: VM operations through a [`Fabric`] (bounded by a semaphore),
//! scripts through a [`ScriptRunner`], operator prompts as [`JobUpdate`]s,
//! cancellations of in-flight attempts. Every outcome goes back through the
//! journal as an event; a timer loop records `TimerFired` once an armed
//! timer is due. Nothing here decides anything: the core does.
//!
//! # Threads and blocking
//!
//! Recording an event (the hot path: every outcome) applies it and queues
//! its batch on the worker that has the outcome — CPU work and in-memory
//! store look-ups under the job's lock — and then awaits the group commit
//! without holding a thread (`commit_wait.rs` keeps a paused test clock
//! still meanwhile). Other journal calls that may read much of the store
//! (queries, submission, the timer index) run on tokio's blocking pool
//! (`spawn_blocking`), never on a worker. A script attempt runs
//! on the blocking pool too, inside its own small current-thread runtime:
//! a child process lives in real time, and its timeout must not be driven by
//! (possibly paused, virtual) engine time. Under a paused current-thread
//! test runtime, tokio does not auto-advance time while a blocking task
//! runs, so tests neither sleep for real nor fire timers during a script.
//!
//! # Restart
//!
//! [`Engine::start`] reopens the journal and performs
//! [`Journal::resume`]: in-flight attempts are issued again under their
//! idempotency keys (the fabric answers a repeated key from its record),
//! operator prompts are published again, and a job whose `Started` never
//! became durable is started. Timers live in the store's index; the timer
//! loop fires the overdue ones at once.
//!
//! # Shutdown
//!
//! [`Engine::shutdown`] (or dropping the engine) stops accepting work and
//! drops in-flight attempts without recording their outcomes (scripts are
//! stopped); a new engine on the same store issues them again.

mod clock;
mod commit_wait;
mod persist;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use clock::{Clock, SteadyClock, SystemClock, TestClock};
use commit_wait::{CommitWait, CommitWaits};
pub use persist::{DEFAULT_COMPACT_AFTER, DELTA_PREFIX, FULL_KEY, FabricPersistence, delta_key};

use crate::core::{
    Effect, IdemKey, JobContext, JobEvent, JobState, JobStatus, Millis, OperatorAction, Outcome,
    TimerId,
};
use crate::fabric::network::pick_subnet;
use crate::fabric::{Fabric, FabricError, FabricStateError, OpContext, OpKey, OpReport};
use crate::journal::{JobMeta, Journal, JournalError, PlanRecord, SubmitRequest};
use crate::plan::compile::{NodeKind, Operation, StepId, VmOp};
use crate::plan::model::{Inventory, Plan, StepAction};
use crate::script::{ScriptContext, ScriptNic, ScriptRequest, ScriptRunner, ScriptVm};
use crate::store::{JobId, Store, codec};

/// Lines of a script's output kept in the job history (the event log).
pub const OUTPUT_TAIL_LINES: usize = 40;
/// Bytes of a script's output kept in the job history.
pub const OUTPUT_TAIL_BYTES: usize = 4096;
/// A wall-clock step (against engine time) the timer loop reports; smaller
/// ones are drift and slewing, not worth a warning.
const WALL_STEP_REPORTED_MS: u64 = 2_000;
/// Updates buffered per subscriber before it lags.
const UPDATE_BUFFER: usize = 4096;

/// What an [`Engine`] runs on.
pub struct EngineConfig {
    pub store: Arc<dyn Store>,
    pub fabric: Arc<dyn Fabric>,
    pub scripts: ScriptRunner,
    pub clock: Arc<dyn Clock>,
    /// VM operations in flight at once, over all jobs (at least 1).
    pub max_concurrent_vm_ops: usize,
    /// The fabric inventory, for the script context (target networks of
    /// the group's VMs); without it scripts see VM names only.
    pub inventory: Option<Inventory>,
}

/// Everything the runtime can fail with.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The journal refused or failed (VM busy, not ready, rejected action,
    /// unknown or finished job, store failure): its message is the one an
    /// operator needs.
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the engine is shutting down; it accepts no new work")]
    ShuttingDown,
    #[error("job {0} does not exist")]
    UnknownJob(JobId),
    /// The fabric's saved world could not be restored.
    #[error(transparent)]
    FabricState(#[from] FabricStateError),
    /// A background task of the runtime panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The store could not make an event durable (disk full, read-only,
    /// I/O error): the engine stopped issuing work. Nothing that was not
    /// durable was acted on; `drplan resume` (a new engine on the reopened
    /// store) continues from what reached the disk once it is writable.
    #[error(
        "drplan stopped: the store could not write ({detail}); no further step was started. \
         Free space or fix the disk, then run `drplan resume` (or restart `drplan serve`) to \
         continue from what reached the disk"
    )]
    StoreFailed { detail: String },
}

/// A job to submit.
#[derive(Debug, Clone)]
pub struct Submission {
    pub plan: Plan,
    /// The exact plan text, kept for audits.
    pub plan_text: String,
    pub operation: Operation,
    pub requested_by: String,
    /// A scheduled start (Unix ms); `None` starts the job at once.
    pub start_at: Option<Millis>,
}

impl Submission {
    /// A job that starts at once.
    pub fn new(plan: Plan, plan_text: String, operation: Operation, by: &str) -> Submission {
        Submission {
            plan,
            plan_text,
            operation,
            requested_by: by.to_string(),
            start_at: None,
        }
    }
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An event became durable.
    Recorded(JobEvent),
    /// An attempt of a step was handed to the fabric or the script runner.
    AttemptStarted {
        step: StepId,
        attempt: u32,
        key: IdemKey,
    },
    /// A step waits for an operator (a manual step or a halted failure).
    AwaitingOperator { step: StepId },
}

/// One update of one job, with the job's status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    pub job: JobId,
    pub update: Update,
    /// `None` when the status could not be read (a store failure).
    pub status: Option<JobStatus>,
}

/// A job's updates (see [`Engine::subscribe`]).
pub struct JobUpdates {
    job: Option<JobId>,
    rx: broadcast::Receiver<JobUpdate>,
    /// Set when the engine halts on a store failure: no update will come.
    halt: watch::Receiver<bool>,
}

impl JobUpdates {
    /// The next update, `None` once the engine is gone. A subscriber that
    /// fell behind skips what it missed (query the history with
    /// [`Engine::events`]).
    /// Also `None` once the engine halted on a store failure
    /// ([`Engine::halted`] says why).
    pub async fn next(&mut self) -> Option<JobUpdate> {
        loop {
            let received = tokio::select! {
                biased;
                r = self.rx.recv() => r,
                _ = switched_on(self.halt.clone()) => return None,
            };
            match received {
                Ok(u) if self.job.is_none_or(|j| j == u.job) => return Some(u),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "a job subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Like [`JobUpdates::next`], but a subscriber that fell behind is told
    /// (`Err(missed)`) instead of skipping silently: the local API ends a
    /// lagging remote subscription with that count rather than hide a gap.
    pub async fn next_or_lag(&mut self) -> Option<Result<JobUpdate, u64>> {
        loop {
            match self.rx.recv().await {
                Ok(u) if self.job.is_none_or(|j| j == u.job) => return Some(Ok(u)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(Err(n)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// What the runtime needs about a job to perform its effects.
struct JobInfo {
    ctx: Arc<JobContext>,
    plan: Arc<Plan>,
}

type AttemptId = (JobId, StepId, u32);

struct Inner {
    journal: Arc<Journal>,
    fabric: Arc<dyn Fabric>,
    /// Persists the fabric's world with the events (None: not persisted).
    persister: Option<Arc<persist::Persister>>,
    scripts: ScriptRunner,
    clock: Arc<dyn Clock>,
    inventory: Option<Inventory>,
    vm_ops: Arc<Semaphore>,
    /// Cancellation switch of every attempt in flight.
    running: Mutex<HashMap<AttemptId, watch::Sender<bool>>>,
    jobs: Mutex<HashMap<JobId, Arc<JobInfo>>>,
    /// `CancelStep`s performed before the attempt they cancel was
    /// registered: with pipelined commits the effects of two events of one
    /// job can be performed out of order, so a cancel may overtake the start
    /// it cancels. `register` honours them.
    cancelled_early: Mutex<HashSet<AttemptId>>,
    /// Set once the store failed to make an event durable (see
    /// [`EngineError::StoreFailed`]); from then on no effect is performed.
    halted: OnceLock<String>,
    /// Switched on together with `halted`, to wake waiters.
    halt: watch::Sender<bool>,
    updates: broadcast::Sender<JobUpdate>,
    timers_changed: Notify,
    shutdown: watch::Sender<bool>,
    /// Commit waits in flight (see `commit_wait.rs`).
    commit_waits: Arc<CommitWaits>,
    /// Bumped whenever a job's status changed (or a job was submitted):
    /// what [`Engine::wait_until`] waits on, so that waiting for a status
    /// costs nothing per event that leaves it unchanged.
    status_changes: watch::Sender<u64>,
}

/// The drplan engine: a journal plus the tokio tasks that perform its
/// effects. Dropping it shuts it down (see the module docs).
pub struct Engine {
    inner: Arc<Inner>,
    timer_loop: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("journal", &self.inner.journal)
            .finish_non_exhaustive()
    }
}

// A std mutex: held only for short map operations, never across an await.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn task_error(e: tokio::task::JoinError) -> EngineError {
    EngineError::Task(e.to_string())
}

/// Waits until a switch is on; never returns if its sender is gone.
async fn switched_on(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Engine {
    /// Opens the journal on `config.store`, resumes every live job and
    /// starts the timer loop. Must be called inside a tokio runtime.
    pub async fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        Self::start_inner(config, None).await
    }

    /// [`Engine::start`] for a stateful fabric whose world the engine
    /// persists in its store (the simulated fabric): the world is first
    /// restored from the store (so build the fabric fresh from the
    /// inventory), then every recorded event carries the fabric's changes
    /// in its batch. See `runtime/persist.rs`.
    pub async fn start_persisting(
        config: EngineConfig,
        persistence: FabricPersistence,
    ) -> Result<Engine, EngineError> {
        Self::start_inner(config, Some(persistence)).await
    }

    async fn start_inner(
        config: EngineConfig,
        persistence: Option<FabricPersistence>,
    ) -> Result<Engine, EngineError> {
        let store = config.store.clone();
        // A VM no job has touched yet has the protection the inventory
        // declares (protection management, docs/protection.md).
        let mut journal_opts = match &config.inventory {
            Some(inv) => {
                // Looked up for every VM a job starts or moves: an index,
                // not a scan of the inventory's VM list each time.
                let declared: HashMap<String, crate::core::ItemState> = inv
                    .vms
                    .iter()
                    .map(|v| {
                        let item = crate::protect::item_declared(Some(v.protection));
                        (v.name.clone(), item)
                    })
                    .collect();
                let unknown = crate::protect::item_declared(None);
                crate::journal::JournalOptions {
                    default_item: Arc::new(move |vm| declared.get(vm).copied().unwrap_or(unknown)),
                    ..Default::default()
                }
            }
            None => crate::journal::JournalOptions::default(),
        };
        // Every job this engine submits or resumes records the fabric's time
        // scale, so that durations measured at different scales never mix.
        journal_opts.time_scale = config.fabric.time_scale();
        let journal = tokio::task::spawn_blocking(move || Journal::open_with(store, journal_opts))
            .await
            .map_err(task_error)??;
        // The world before anything is resumed: a resumed operation must
        // meet the world its earlier attempt left.
        let persister = match persistence {
            Some(p) => {
                let store = config.store.clone();
                let persister =
                    tokio::task::spawn_blocking(move || persist::Persister::restore(p, &*store))
                        .await
                        .map_err(task_error)??;
                Some(Arc::new(persister))
            }
            None => None,
        };
        let (updates, _) = broadcast::channel(UPDATE_BUFFER);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            journal: Arc::new(journal),
            fabric: config.fabric,
            persister,
            scripts: config.scripts,
            // Engine time follows elapsed time from this start, whatever
            // the wall clock does meanwhile (see `runtime/clock.rs`).
            clock: Arc::new(SteadyClock::new(config.clock)),
            inventory: config.inventory,
            vm_ops: Arc::new(Semaphore::new(config.max_concurrent_vm_ops.max(1))),
            running: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            cancelled_early: Mutex::new(HashSet::new()),
            halted: OnceLock::new(),
            halt: watch::channel(false).0,
            updates,
            timers_changed: Notify::new(),
            shutdown,
            commit_waits: CommitWaits::for_current_runtime(),
            status_changes: watch::channel(0).0,
        });

        // Resume: re-issue what was in flight, re-prompt operators, start
        // jobs whose `Started` never became durable.
        let (resume, metas) = inner.blocking(|j| Ok((j.resume(), j.jobs()?))).await?;
        let mut by_job: BTreeMap<JobId, Vec<Effect>> = BTreeMap::new();
        for (job, e) in resume {
            by_job.entry(job).or_default().push(e);
        }
        for (job, fx) in by_job {
            tracing::info!(%job, effects = fx.len(), "resuming job");
            // Scripts re-issued after a restart see the values published
            // before it (they are part of the durable state).
            let values = if fx.iter().any(|e| matches!(e, Effect::RunScript { .. })) {
                let state = inner.blocking(move |j| j.job(job)).await?;
                state.map(|s| Arc::new(s.values)).unwrap_or_default()
            } else {
                Arc::default()
            };
            inner.perform(job, fx, values);
        }
        // Jobs that ended just before a crash may have left key records
        // behind (the forgetting was not durable yet).
        if let Some(p) = &inner.persister {
            let mut forgotten = 0;
            for meta in metas.iter().filter(|m| m.status.is_terminal()) {
                forgotten += p.forget_job(meta.id);
            }
            if forgotten > 0 {
                inner.persist_world().await;
            }
        }
        for meta in metas {
            if meta.status == JobStatus::NotStarted && meta.start_at.is_none() {
                let at = inner.clock.now_ms();
                if let Err(e) = inner.record(meta.id, JobEvent::Started { at }).await {
                    tracing::warn!(job = %meta.id, error = %e, "could not start a submitted job");
                }
            }
        }

        let timer_loop = tokio::spawn(inner.clone().timer_loop());
        Ok(Engine {
            inner,
            timer_loop: Mutex::new(Some(timer_loop)),
        })
    }

    /// The journal (read-only queries beyond the ones here).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.inner.journal
    }

    /// Why the engine stopped issuing work, once its store failed to make
    /// an event durable (disk full, read-only, I/O error): the store's
    /// message, naming the data directory and the OS error. `None` while
    /// healthy. A halted engine refuses every command with
    /// [`EngineError::StoreFailed`]; drop it, reopen the store and start a
    /// new engine to continue.
    pub fn halted(&self) -> Option<String> {
        self.inner.halted.get().cloned()
    }

    /// Submits a job; one that is not scheduled is started at once.
    /// `VmBusy` and `NotReady` refusals come back as
    /// [`EngineError::Journal`] with the journal's message.
    pub async fn submit(&self, sub: Submission) -> Result<JobId, EngineError> {
        let inner = &self.inner;
        inner.check_open()?;
        let at = inner.clock.now_ms();
        let plan = Arc::new(sub.plan.clone());
        let start_at = sub.start_at;
        let req = SubmitRequest {
            plan: sub.plan,
            plan_text: sub.plan_text,
            operation: sub.operation,
            requested_by: sub.requested_by,
            at,
            start_at,
            parent: None,
        };
        let (job, fx, status) = inner
            .blocking(move |j| {
                let (job, fx) = j.submit(req)?;
                Ok((job, fx, status_of(j, job)?))
            })
            .await?;
        // The journal compiled the plan already (a 10,000-VM plan takes
        // milliseconds to compile): share its context.
        let ctx = match inner.journal.context(job) {
            Some(c) => c,
            None => Arc::new(JobContext::new(&plan, sub.operation)),
        };
        lock(&inner.jobs).insert(job, Arc::new(JobInfo { ctx, plan }));
        if let Ok(events) = inner.blocking(move |j| j.events(job)).await
            && let Some(first) = events.into_iter().next()
        {
            inner.publish(job, Update::Recorded(first), status);
        }
        inner.status_changes.send_modify(|n| *n = n.wrapping_add(1));
        // The submit batch may have armed a timer (a scheduled start): the
        // timer loop must look at the index again, or it sleeps through it
        // until its next periodic re-check.
        inner.timers_changed.notify_one();
        inner.perform(job, fx, Arc::default());
        if start_at.is_none() {
            inner
                .record(
                    job,
                    JobEvent::Started {
                        at: inner.clock.now_ms(),
                    },
                )
                .await?;
        }
        Ok(job)
    }

    /// Records `Started` for a job submitted without starting (normally
    /// done by [`Engine::submit`]; scheduled jobs start on their timer or
    /// with [`Engine::start_now`]).
    pub async fn start_job(&self, job: JobId) -> Result<(), EngineError> {
        self.inner.check_open()?;
        let at = self.inner.clock.now_ms();
        self.inner.record(job, JobEvent::Started { at }).await
    }

    /// An operator's answer to a manual step.
    pub async fn answer_manual(
        &self,
        job: JobId,
        step: StepId,
        done: bool,
        by: &str,
        note: Option<String>,
    ) -> Result<(), EngineError> {
        self.inner.check_open()?;
        let at = self.inner.clock.now_ms();
        let ev = JobEvent::ManualAnswered {
            step,
            done,
            by: by.to_string(),
            note,
            at,
        };
        self.inner.record(job, ev).await
    }

    pub async fn retry(&self, job: JobId, step: StepId, by: &str) -> Result<(), EngineError> {
        self.operator(job, OperatorAction::Retry { step }, by).await
    }

    pub async fn skip(&self, job: JobId, step: StepId, by: &str) -> Result<(), EngineError> {
        self.operator(job, OperatorAction::Skip { step }, by).await
    }

    pub async fn cancel(&self, job: JobId, by: &str) -> Result<(), EngineError> {
        self.operator(job, OperatorAction::Cancel, by).await
    }

    /// Closes an open test failover: its test VMs are deleted.
    pub async fn complete_test(
        &self,
        job: JobId,
        notes: &str,
        by: &str,
    ) -> Result<(), EngineError> {
        let action = OperatorAction::CompleteTest {
            notes: notes.to_string(),
        };
        self.operator(job, action, by).await
    }

    /// Starts a scheduled job now.
    pub async fn start_now(&self, job: JobId, by: &str) -> Result<(), EngineError> {
        self.operator(job, OperatorAction::StartNow, by).await
    }

    async fn operator(
        &self,
        job: JobId,
        action: OperatorAction,
        by: &str,
    ) -> Result<(), EngineError> {
        self.inner.check_open()?;
        let at = self.inner.clock.now_ms();
        let ev = JobEvent::OperatorAction {
            action,
            by: by.to_string(),
            at,
        };
        self.inner.record(job, ev).await
    }

    /// A job's status (`None`: no such job).
    pub async fn status(&self, job: JobId) -> Result<Option<JobStatus>, EngineError> {
        self.inner.blocking(move |j| status_of(j, job)).await
    }

    /// A job's whole state (steps, timers, outputs, answers).
    pub async fn job(&self, job: JobId) -> Result<Option<JobState>, EngineError> {
        self.inner.blocking(move |j| j.job(job)).await
    }

    /// Every job's summary.
    pub async fn jobs(&self) -> Result<Vec<JobMeta>, EngineError> {
        self.inner.blocking(|j| j.jobs()).await
    }

    /// A job's history.
    pub async fn events(&self, job: JobId) -> Result<Vec<JobEvent>, EngineError> {
        self.inner.blocking(move |j| j.events(job)).await
    }

    /// The compiled plans of a job (to find step ids by key).
    pub async fn context(&self, job: JobId) -> Result<Arc<JobContext>, EngineError> {
        Ok(self.inner.info(job).await?.ctx.clone())
    }

    /// The step id of a node key (`web/post/update-dns`,
    /// `database/vm/sql-01/failover`, `cleanup/remove-test-dns`).
    pub async fn step_id(&self, job: JobId, key: &str) -> Result<Option<StepId>, EngineError> {
        let ctx = self.context(job).await?;
        Ok((0..ctx.len()).find(|&s| ctx.node(s).is_some_and(|n| n.key == key)))
    }

    /// Updates of one job from now on.
    pub fn subscribe(&self, job: JobId) -> JobUpdates {
        JobUpdates {
            job: Some(job),
            rx: self.inner.updates.subscribe(),
            halt: self.inner.halt.subscribe(),
        }
    }

    /// Updates of every job from now on.
    pub fn subscribe_all(&self) -> JobUpdates {
        JobUpdates {
            job: None,
            rx: self.inner.updates.subscribe(),
            halt: self.inner.halt.subscribe(),
        }
    }

    /// Waits until `pred` holds for the job's status, and returns it.
    ///
    /// The status is read from the store first and again after every status
    /// change of any job (never per event: most events change none).
    pub async fn wait_until(
        &self,
        job: JobId,
        pred: impl Fn(JobStatus) -> bool,
    ) -> Result<JobStatus, EngineError> {
        // Subscribe before the first look, so no change falls in between.
        let mut changes = self.inner.status_changes.subscribe();
        let halt = self.inner.halt.subscribe();
        loop {
            self.inner.check_halted()?;
            match self.status(job).await? {
                None => return Err(EngineError::UnknownJob(job)),
                Some(s) if pred(s) => return Ok(s),
                Some(_) => {}
            }
            tokio::select! {
                biased;
                // A halted engine records nothing more: say why.
                _ = switched_on(halt.clone()) => self.inner.check_halted()?,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(EngineError::ShuttingDown);
                    }
                }
            }
        }
    }

    /// Stops accepting work, drops in-flight attempts (their outcomes are
    /// not recorded; a new engine issues them again) and waits for the
    /// timer loop to end.
    pub async fn shutdown(&self) {
        self.inner.stop();
        let handle = lock(&self.timer_loop).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

impl Inner {
    fn check_halted(&self) -> Result<(), EngineError> {
        match self.halted.get() {
            Some(detail) => Err(EngineError::StoreFailed {
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), EngineError> {
        self.check_halted()?;
        if *self.shutdown.borrow() {
            Err(EngineError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Turns a journal failure into the engine's answer; a store failure
    /// (the journal poisoned itself) halts the engine.
    fn failed(&self, e: EngineError) -> EngineError {
        let detail = match &e {
            EngineError::Journal(JournalError::Poisoned { detail }) => detail.clone(),
            EngineError::Journal(JournalError::Store(
                err @ (crate::store::StoreError::FlushFailed { .. }
                | crate::store::StoreError::Io { .. }
                | crate::store::StoreError::CommitterStopped),
            )) => err.to_string(),
            _ => return e,
        };
        if self.halted.set(detail.clone()).is_ok() {
            self.halt.send_replace(true);
            tracing::error!(
                target: crate::STORE_FAILED_TARGET,
                error = %detail,
                "the store cannot write: drplan stops issuing work; free space or fix the disk, \
                 then run `drplan resume`"
            );
        }
        EngineError::StoreFailed { detail }
    }

    /// Commits the fabric's changes not tied to an event (forgotten keys).
    async fn persist_world(self: &Arc<Self>) {
        let Some(p) = self.persister.clone() else {
            return;
        };
        if let Err(e) = self
            .blocking(move |j| j.commit_extra(&mut || p.writes()))
            .await
        {
            tracing::warn!(error = %e, "could not persist the fabric's world");
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    /// Runs a journal call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let j = self.journal.clone();
        Ok(tokio::task::spawn_blocking(move || f(&j))
            .await
            .map_err(task_error)??)
    }

    fn publish(&self, job: JobId, update: Update, status: Option<JobStatus>) {
        // No subscriber is fine.
        let _ = self.updates.send(JobUpdate {
            job,
            update,
            status,
        });
    }

    /// Records an event, publishes it and performs its external effects.
    ///
    /// The event is applied and queued under the job's lock right here on
    /// the worker (CPU work and in-memory store look-ups, no disk wait),
    /// then its durability is awaited without holding that lock or a
    /// thread, so that concurrent outcomes of one job share a flush and no
    /// thread hand-off is paid per event. While the wait lasts, a
    /// [`CommitWait`] keeps a paused test clock from jumping ahead (see
    /// there).
    async fn record(self: &Arc<Self>, job: JobId, event: JobEvent) -> Result<(), EngineError> {
        self.check_halted()?;
        let j = &self.journal;
        let begin = || match &self.persister {
            Some(p) => j.begin_record(job, event.clone(), &mut || p.writes()),
            None => j.begin_record(job, event.clone(), &mut || Ok(Vec::new())),
        };
        let begun = match begin() {
            // An earlier failure left the job's cache ahead of the store:
            // rebuilding it waits for the committer, so it runs on the
            // blocking pool, never here on a worker (a blocking wait here
            // would stall, or on a current-thread runtime panic, the task:
            // the timer loop, say).
            Err(JournalError::Stale { .. }) => {
                self.blocking(move |j| j.resync_job(job))
                    .await
                    .map_err(|e| self.failed(e))?;
                begin()
            }
            other => other,
        };
        let pending = match begun {
            Ok(p) => p,
            Err(e) => {
                // A failure after the event was applied to the job's cache
                // left it stale: rebuild it now, off the worker, so that
                // queries and the next event meet the durable state.
                if !matches!(e, JournalError::Poisoned { .. }) {
                    let _ = self.blocking(move |j| j.resync_job(job)).await;
                }
                return Err(self.failed(e.into()));
            }
        };
        let recorded = {
            let _waiting = CommitWait::begin(&self.commit_waits);
            pending.wait_async(j).await
        }
        .map_err(|e| self.failed(e.into()))?;
        let status = Some(recorded.status);
        let wake_timers = recorded.wake_timers;
        let fx = recorded.effects;
        let values = Arc::new(recorded.values.unwrap_or_default());
        // Subscribers (and `--format json` output) see only what is in the
        // store: a dropped repeat or late delivery is not announced.
        if recorded.stored {
            self.publish(job, Update::Recorded(event), status);
        }
        if recorded.status_changed {
            self.status_changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        // A finished job's operation keys are never issued again: forget
        // their records, durably, so they do not pile up. (Its `Finished`
        // effect is bookkeeping the journal keeps to itself.)
        if let Some(p) = &self.persister
            && status.is_some_and(JobStatus::is_terminal)
            && p.forget_job(job) > 0
        {
            self.persist_world().await;
        }
        // The journal keeps bookkeeping effects (armed timers) to itself
        // and says whether this event may matter to the timer loop. Waking
        // it for every event would cost two store scans per event.
        if wake_timers {
            self.timers_changed.notify_one();
        }
        self.perform(job, fx, values);
        Ok(())
    }

    /// Performs the effects of one durable transition; `values` are the
    /// job's published script values as of that transition.
    fn perform(
        self: &Arc<Self>,
        job: JobId,
        fx: Vec<Effect>,
        values: Arc<BTreeMap<String, String>>,
    ) {
        if self.halted.get().is_some() {
            // Defensive: a halted engine got no durable transition to act
            // on, but nothing may start once the store failed.
            return;
        }
        // Logs of this transition and of the attempts it starts carry the
        // job (and, once its plan is loaded, the plan and operation), so
        // `-v` and `--log-format json` tie every line to its job.
        let job_span = self.job_span(job);
        let _entered = job_span.enter();
        for e in fx {
            match e {
                Effect::RunVmOp {
                    step,
                    attempt,
                    key,
                    vm,
                    op,
                } => {
                    let cancel = self.register(job, step, attempt);
                    let me = self.clone();
                    let span = attempt_span(&job_span, &key.node, attempt);
                    tokio::spawn(
                        async move { me.run_vm_op(job, step, attempt, key, vm, op, cancel).await }
                            .instrument(span),
                    );
                }
                Effect::RunScript { step, attempt, key } => {
                    let cancel = self.register(job, step, attempt);
                    let me = self.clone();
                    let span = attempt_span(&job_span, &key.node, attempt);
                    let values = values.clone();
                    tokio::spawn(
                        async move { me.run_script(job, step, attempt, key, values, cancel).await }
                            .instrument(span),
                    );
                }
                Effect::AwaitOperator { step } => {
                    tracing::info!(%job, step, "waiting for an operator");
                    self.publish(job, Update::AwaitingOperator { step }, None);
                }
                Effect::CancelStep { step, attempt } => {
                    let running = lock(&self.running);
                    match running.get(&(job, step, attempt)) {
                        Some(tx) => {
                            tx.send_replace(true);
                        }
                        None => {
                            lock(&self.cancelled_early).insert((job, step, attempt));
                        }
                    }
                }
                Effect::Finished { status } => {
                    tracing::info!(%job, %status, "job finished");
                    // A finished job runs nothing more; queries rebuild its
                    // plan from the store if asked.
                    lock(&self.jobs).remove(&job);
                    lock(&self.cancelled_early).retain(|(j, _, _)| *j != job);
                }
                Effect::ArmTimer { .. }
                | Effect::DisarmTimer { .. }
                | Effect::ReleaseLeases
                | Effect::Item { .. }
                | Effect::ScheduleFollowUp { .. } => {}
            }
        }
    }

    /// The tracing span of a job: its id, and its plan and operation when
    /// the job's plan is loaded already (never a store read here: this runs
    /// on every transition). A root span: transitions are performed from
    /// inside the attempt that finished, and nesting each job span in the
    /// last attempt's would grow the span chain with every step.
    fn job_span(&self, job: JobId) -> tracing::Span {
        let info = lock(&self.jobs).get(&job).cloned();
        match info {
            Some(i) => tracing::info_span!(
                parent: None,
                "job",
                job = %job,
                plan = %i.plan.name,
                kind = kind_of(&i.ctx.main.operation),
                operation = %i.ctx.main.operation
            ),
            None => tracing::info_span!(parent: None, "job", job = %job),
        }
    }

    /// The cancellation switch of an attempt, registered before its task is
    /// spawned so that a `CancelStep` right behind it finds it.
    fn register(&self, job: JobId, step: StepId, attempt: u32) -> watch::Receiver<bool> {
        // Same lock order as `CancelStep`: running, then cancelled_early.
        let mut running = lock(&self.running);
        let early = lock(&self.cancelled_early).remove(&(job, step, attempt));
        let (tx, rx) = watch::channel(early);
        running.insert((job, step, attempt), tx);
        rx
    }

    async fn info(&self, job: JobId) -> Result<Arc<JobInfo>, EngineError> {
        if let Some(i) = lock(&self.jobs).get(&job) {
            return Ok(i.clone());
        }
        let store = self.journal.store().clone();
        let info = self
            .blocking(move |j| {
                let meta = meta_of(j, job)?.ok_or(JournalError::UnknownJob(job))?;
                let damaged = |detail: String| JournalError::Damaged {
                    job,
                    seq: None,
                    detail,
                };
                let text = store.text(&meta.model_key)?.ok_or_else(|| {
                    damaged(format!("plan model `{}` is missing", meta.model_key))
                })?;
                let record: PlanRecord = codec::decode(text.as_bytes())
                    .map_err(|e| damaged(format!("plan model: {e}")))?;
                let plan = Arc::new(record.plan);
                let ctx = match j.context(job) {
                    Some(c) => c,
                    None => Arc::new(JobContext::new(&plan, meta.operation)),
                };
                Ok(Arc::new(JobInfo { ctx, plan }))
            })
            .await?;
        lock(&self.jobs).insert(job, info.clone());
        Ok(info)
    }

    /// Records an attempt's outcome unless the engine is stopping (then the
    /// attempt is re-issued after a restart instead).
    async fn finish_attempt(
        self: &Arc<Self>,
        job: JobId,
        step: StepId,
        attempt: u32,
        end: AttemptEnd,
    ) {
        lock(&self.running).remove(&(job, step, attempt));
        if self.stopping() {
            return;
        }
        match &end.outcome {
            Outcome::Succeeded => tracing::info!("step succeeded"),
            Outcome::Failed {
                error, retryable, ..
            } => tracing::warn!(%error, retryable, "step failed"),
            other => tracing::info!(outcome = ?other, "step ended"),
        }
        let ev = JobEvent::StepFinished {
            step,
            attempt,
            outcome: end.outcome,
            output_tail: end.output_tail,
            values: end.values,
            warnings: end.warnings,
            recovery_point: end.recovery_point,
            at: self.clock.now_ms(),
        };
        match self.record(job, ev).await {
            Ok(_) => {}
            // Said once, when the engine halted (`halted`).
            Err(e @ EngineError::StoreFailed { .. }) => tracing::error!(
                target: crate::STORE_FAILED_TARGET,
                %job, step, attempt, error = %e, "could not record an outcome"
            ),
            Err(e) => {
                tracing::error!(%job, step, attempt, error = %e, "could not record an outcome")
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_vm_op(
        self: Arc<Self>,
        job: JobId,
        step: StepId,
        attempt: u32,
        key: IdemKey,
        vm: String,
        op: VmOp,
        cancel: watch::Receiver<bool>,
    ) {
        let operation = match self.info(job).await {
            Ok(i) => i.ctx.main.operation,
            Err(e) => {
                tracing::error!(%job, step, error = %e, "cannot perform a VM operation");
                return;
            }
        };
        let work = async {
            // A closed semaphore never happens (it is never closed).
            let _permit = self.vm_ops.clone().acquire_owned().await.ok();
            self.publish(
                job,
                Update::AttemptStarted {
                    step,
                    attempt,
                    key: key.clone(),
                },
                None,
            );
            let ctx = OpContext::for_operation(&operation, self.clock.now_ms());
            tracing::debug!(vm = %vm, op = op.name(), key = %key, "VM operation started");
            self.fabric.run(&OpKey::from(&key), &vm, &op, &ctx).await
        };
        let result = tokio::select! {
            _ = switched_on(self.shutdown.subscribe()) => return,
            _ = switched_on(cancel) => None,
            r = work => Some(r),
        };
        let end = match result {
            None => AttemptEnd::of(Outcome::Cancelled),
            Some(r) => vm_outcome(r),
        };
        self.finish_attempt(job, step, attempt, end).await;
    }

    async fn run_script(
        self: Arc<Self>,
        job: JobId,
        step: StepId,
        attempt: u32,
        key: IdemKey,
        values: Arc<BTreeMap<String, String>>,
        cancel: watch::Receiver<bool>,
    ) {
        let req = match self.info(job).await {
            Ok(info) => self.script_request(&info, job, step, attempt, &key, &values),
            Err(e) => Err(e.to_string()),
        };
        let req = match req {
            Ok(r) => r,
            Err(error) => {
                let end = AttemptEnd::of(Outcome::failed(error));
                self.finish_attempt(job, step, attempt, end).await;
                return;
            }
        };
        tracing::debug!(key = %key, "script started");
        self.publish(job, Update::AttemptStarted { step, attempt, key }, None);
        let runner = self.scripts.clone();
        let shutdown = self.shutdown.subscribe();
        let stop = async move {
            tokio::select! {
                _ = switched_on(cancel) => {}
                _ = switched_on(shutdown) => {}
            }
        };
        // Its own runtime on a blocking thread: see the module docs.
        let ran = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("could not start the script's runtime: {e}"))?;
            Ok::<_, String>(rt.block_on(runner.run(req, stop)))
        })
        .await;
        let end = match ran {
            Ok(Ok(res)) => script_outcome(res),
            Ok(Err(error)) => AttemptEnd::of(Outcome::failed(error)),
            Err(e) => AttemptEnd::of(Outcome::failed(format!("the script runner failed: {e}"))),
        };
        self.finish_attempt(job, step, attempt, end).await;
    }

    /// The request of one script attempt, or why there is none.
    fn script_request(
        &self,
        info: &JobInfo,
        job: JobId,
        step: StepId,
        attempt: u32,
        key: &IdemKey,
        values: &BTreeMap<String, String>,
    ) -> Result<ScriptRequest, String> {
        let node = info
            .ctx
            .node(step)
            .ok_or_else(|| format!("step {step} is not in the job's plan"))?;
        let NodeKind::Step(s) = &node.kind else {
            return Err(format!("step `{}` is not a script step", node.key));
        };
        let StepAction::Script {
            command,
            timeout,
            env,
            ..
        } = &s.action
        else {
            return Err(format!("step `{}` is not a script step", node.key));
        };
        let Operation::Failover {
            kind, direction, ..
        } = info.ctx.main.operation
        else {
            return Err(format!(
                "script step `{}` in a {} job: scripts run only in failovers",
                node.key, info.ctx.main.operation
            ));
        };
        let plan = &info.plan;
        let group = node.group.and_then(|g| plan.groups.get(g));
        // A group's VMs, or every VM of the plan for test cleanup steps.
        let names: Vec<&str> = match group {
            Some(g) => g.vms.iter().map(|v| v.name.as_str()).collect(),
            None => plan
                .groups
                .iter()
                .flat_map(|g| g.vms.iter().map(|v| v.name.as_str()))
                .collect(),
        };
        let test = kind == crate::plan::model::FailoverKind::Test;
        let vms = names
            .into_iter()
            .map(|name| ScriptVm {
                name: name.to_string(),
                nics: self.script_nics(plan, name, test),
            })
            .collect();
        let context = ScriptContext {
            job_id: job.to_string(),
            plan: plan.name.clone(),
            kind,
            direction,
            group: group.map(|g| g.name.clone()),
            step: s.name.clone(),
            attempt,
            idempotency_key: key.to_string(),
            vms,
            values: values.clone(),
        };
        Ok(ScriptRequest {
            command: command.clone(),
            cwd: plan.base_dir.clone(),
            timeout: *timeout,
            env: env.clone(),
            context,
        })
    }

    /// Where a VM's NICs attach after failover, per the inventory: the
    /// mapped target network (a test: the plan's test network), the subnet
    /// by the mapping rules. Without an inventory: no NICs.
    fn script_nics(&self, plan: &Plan, vm: &str, test: bool) -> Vec<ScriptNic> {
        let Some(inv) = &self.inventory else {
            return Vec::new();
        };
        let Some(v) = inv.vm(vm) else {
            return Vec::new();
        };
        v.nics
            .iter()
            .map(|nic| {
                let network = if test {
                    plan.test.network.clone()
                } else {
                    inv.mapped_network(&v.site, &nic.network)
                        .map(|m| m.target.clone())
                };
                let subnet = network
                    .as_deref()
                    .and_then(|n| inv.network(&plan.target.site, n))
                    .and_then(|n| pick_subnet(n, nic.subnet.as_deref()));
                ScriptNic {
                    source_network: nic.network.clone(),
                    network,
                    subnet,
                    ip: None,
                }
            })
            .collect()
    }

    /// Fires due timers; sleeps until the next one (or until one is armed).
    async fn timer_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        // Timers whose firing failed (not a duplicate): not retried in a
        // tight loop; they are tried again after the next change.
        let mut failed: Vec<(JobId, TimerId, Millis)> = Vec::new();
        // Timers fired in the previous round: one still due after being
        // fired was not disarmed (the journal dropped the event); firing it
        // again would spin.
        let mut fired: Vec<(JobId, TimerId, Millis)> = Vec::new();
        // The wall clock's offset from engine time last reported.
        let mut offset_seen: i64 = 0;
        loop {
            if self.stopping() {
                return;
            }
            if let Some(offset) = self.clock.wall_offset_ms()
                && offset.abs_diff(offset_seen) > WALL_STEP_REPORTED_MS
            {
                // Timers follow elapsed time: a stepped wall clock moves
                // none of them. Say so once per step, for the operator
                // comparing the job's times with the machine's clock.
                tracing::warn!(
                    offset_ms = offset,
                    step_ms = offset - offset_seen,
                    "the wall clock was stepped while the engine runs; timers and \
                     event times follow the elapsed time since the engine started, \
                     and the next engine start adopts the wall clock"
                );
                offset_seen = offset;
            }
            let now = self.clock.now_ms();
            let due = match self.blocking(move |j| j.due_timers(now)).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the timer index");
                    Vec::new()
                }
            };
            let last = std::mem::take(&mut fired);
            for (job, timer, when) in due {
                if self.stopping() {
                    return;
                }
                if failed.contains(&(job, timer, when)) {
                    continue;
                }
                if last.contains(&(job, timer, when)) {
                    tracing::warn!(%job, %timer, "a fired timer is still armed; not firing it again");
                    failed.push((job, timer, when));
                    continue;
                }
                fired.push((job, timer, when));
                tracing::info!(%job, %timer, due = when, now, "timer fired");
                if let Err(e) = self
                    .record(job, JobEvent::TimerFired { timer, at: now })
                    .await
                {
                    tracing::error!(%job, %timer, error = %e, "could not fire a timer");
                    failed.push((job, timer, when));
                }
            }
            let next = match self.blocking(|j| Ok(j.store().timers()?)).await {
                Ok(ts) => ts
                    .iter()
                    .filter(|t| {
                        TimerId::from_u64(t.timer)
                            .is_none_or(|id| !failed.contains(&(t.job, id, t.due_ms)))
                    })
                    .map(|t| t.due_ms)
                    .min(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the timer index");
                    None
                }
            };
            let now = self.clock.now_ms();
            let mut nap = self.clock.recheck_every();
            if let Some(next) = next {
                nap = nap.min(Duration::from_millis(next.saturating_sub(now)));
            }
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.timers_changed.notified() => { failed.clear(); }
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}

/// A job's summary record, read from the store (one small record: cheaper
/// than the job's whole state, which has one entry per step).
/// The span of one attempt of a step, inside its job's span.
fn attempt_span(job: &tracing::Span, step: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!(parent: job, "step", step, attempt)
}

/// The short name of what a job does, for logs: the failover kind
/// (`test`, `planned`, `unplanned`), else the operation's name.
fn kind_of(op: &Operation) -> String {
    match op {
        Operation::Failover { kind, .. } => kind.to_string(),
        other => other.to_string(),
    }
}

fn meta_of(j: &Journal, job: JobId) -> Result<Option<JobMeta>, JournalError> {
    let Some(bytes) = j.store().job_meta(job)? else {
        return Ok(None);
    };
    codec::decode(&bytes)
        .map(Some)
        .map_err(|e| JournalError::Damaged {
            job,
            seq: None,
            detail: format!("job metadata: {e}"),
        })
}

/// A job's status: the journal rewrites the summary record in the same
/// commit as every status change.
fn status_of(j: &Journal, job: JobId) -> Result<Option<JobStatus>, JournalError> {
    Ok(meta_of(j, job)?.map(|m| m.status))
}

/// How an attempt ended, with everything [`JobEvent::StepFinished`] keeps
/// of it: typed, never text markers inside the output.
#[derive(Debug, PartialEq)]
struct AttemptEnd {
    outcome: Outcome,
    output_tail: Option<String>,
    values: BTreeMap<String, String>,
    warnings: Vec<String>,
    recovery_point: Option<crate::core::PointRecord>,
}

impl AttemptEnd {
    fn of(outcome: Outcome) -> AttemptEnd {
        AttemptEnd {
            outcome,
            output_tail: None,
            values: BTreeMap::new(),
            warnings: Vec::new(),
            recovery_point: None,
        }
    }
}

/// A fabric result as the core sees it, and what the history keeps of it:
/// the summary as output, the warnings and the recovery point as data, a
/// failure with its kind and whether it is retryable.
fn vm_outcome(r: Result<OpReport, FabricError>) -> AttemptEnd {
    match r {
        Ok(report) => AttemptEnd {
            recovery_point: report.point_record(),
            output_tail: Some(report.summary),
            warnings: report.warnings,
            ..AttemptEnd::of(Outcome::Succeeded)
        },
        Err(e) => AttemptEnd::of(e.to_outcome()),
    }
}

/// A script attempt's result as the core sees it: its output stays plain
/// output (a `warning:` line in it is just text); the runner's warnings and
/// those the script raised (`warning=` lines of `DRPLAN_OUTPUT`) are data.
fn script_outcome(res: crate::script::ScriptResult) -> AttemptEnd {
    // Recorded with the outcome (the core keeps them only for a success),
    // so they survive restarts.
    let values = if res.outcome == crate::script::ScriptOutcome::Succeeded {
        res.values
    } else {
        BTreeMap::new()
    };
    let tail = tail_of(&res.output);
    AttemptEnd {
        outcome: res.outcome.to_core(),
        output_tail: (!tail.is_empty()).then_some(tail),
        values,
        warnings: res.warnings,
        recovery_point: None,
    }
}

/// The last lines of an output, bounded in lines and bytes.
fn tail_of(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join("\n");
    if tail.len() > OUTPUT_TAIL_BYTES {
        let mut cut = tail.len() - OUTPUT_TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = format!("[…] {}", &tail[cut..]);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_within_bounds() {
        let out: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail_of(&out);
        assert!(t.starts_with("line 60"), "{t}");
        assert!(t.ends_with("line 99"));
        let long = "é".repeat(10_000);
        let t = tail_of(&long);
        assert!(t.len() <= OUTPUT_TAIL_BYTES + 8, "{}", t.len());
        assert!(t.starts_with("[…]"));
    }

    #[test]
    fn fabric_errors_stay_typed_and_warnings_are_data() {
        let err = FabricError::UnknownVm { vm: "x".into() };
        let end = vm_outcome(Err(err));
        assert_eq!(
            end.outcome,
            Outcome::Failed {
                error: "VM `x` is not in the fabric inventory".into(),
                error_kind: Some(crate::core::ErrorKind::UnknownVm),
                retryable: false,
            }
        );
        assert_eq!(end.output_tail, None);
        let transient = FabricError::Unreachable {
            vm: "x".into(),
            op: crate::fabric::OpKind::StartReplica,
            what: "host h".into(),
            message: "host h is down".into(),
        };
        assert!(matches!(
            vm_outcome(Err(transient)).outcome,
            Outcome::Failed {
                error_kind: Some(crate::core::ErrorKind::Unreachable),
                retryable: true,
                ..
            }
        ));
        let report = OpReport {
            op: crate::fabric::OpKind::StartReplica,
            vm: "x".into(),
            summary: "started x".into(),
            warnings: vec!["NIC eth0 attached to no network".into()],
            attachments: Vec::new(),
            recovery_point: None,
            host: None,
            test_vm: None,
            remaining: Vec::new(),
            duration_ms: 1,
        };
        let end = vm_outcome(Ok(report));
        assert_eq!(end.output_tail.as_deref(), Some("started x"));
        assert_eq!(end.warnings, ["NIC eth0 attached to no network"]);
    }
}
