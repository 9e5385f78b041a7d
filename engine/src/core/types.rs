//! The data of the core: persisted events, effects, timers, step and job
//! states. Events and [`JobState`] are serde types and therefore a
//! compatibility promise (events are the durable log, states are snapshots):
//! rename nothing, add variants at the end, and let the store codec's version
//! carry migrations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::item::ItemEvent;
use crate::plan::compile::{Operation, StepId, VmOp};
use crate::store::JobId;

/// Unix time in milliseconds. The core never reads a clock: every instant
/// arrives inside an event.
pub type Millis = u64;

/// What a job was asked to do (the first event of every job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: JobId,
    pub plan_name: String,
    /// Content hash of the plan text the job runs (the store keeps the text).
    pub plan_hash: String,
    pub operation: Operation,
    pub requested_by: String,
    /// The VMs the job leases (sorted, as [`crate::plan::ExecPlan::vms`]).
    pub vms: Vec<String>,
    /// A scheduled job starts at this time (or earlier on `StartNow`).
    pub start_at: Option<Millis>,
    /// The job that caused this one (e.g. an auto-commit after a failover).
    pub parent: Option<JobId>,
    /// VMs of the plan the job leaves as they are (sorted, disjoint from
    /// `vms`): already where the operation takes them, e.g. the VMs a
    /// cancelled failover already failed over when the failover continues
    /// (`core::item::leaves_alone`). Their steps end `Skipped { LeftAlone }`
    /// when the job starts. Absent in jobs recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<String>,
}

/// How a step attempt ended, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed {
        error: String,
        /// What kind of error it was (a fabric error's kind, a script that
        /// failed or could not start). Absent in records of drplan before
        /// typed errors, and for failures drplan itself reports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_kind: Option<ErrorKind>,
        /// Whether a new attempt can succeed without anything else changing
        /// (`FabricError::retryable`; a script that could not start is not).
        /// A non-retryable failure is never retried automatically. Records
        /// of older drplan read as retryable, which is how they were treated
        /// (so their replay is unchanged).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        retryable: bool,
    },
    /// The runtime enforces script and VM-operation timeouts and reports them.
    TimedOut,
    /// The attempt was cancelled (normally because drplan asked to).
    Cancelled,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Outcome {
    /// A failure drplan reports itself (no fabric or script error kind),
    /// retryable.
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            error_kind: None,
            retryable: true,
        }
    }
}

/// The kind of a failed attempt's error: a [`crate::fabric::FabricError`]'s
/// variant, or how a script failed. Persisted (in [`Outcome::Failed`]):
/// add kinds at the end, rename none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UnknownVm,
    NotReady,
    Unreachable,
    NoRecoveryPoint,
    Injected,
    KeyReused,
    /// The script ran and exited non-zero (or was killed by a signal).
    ScriptFailed,
    /// The script could not be started (missing, not executable, bad `#!`).
    ScriptCouldNotStart,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownVm => "unknown_vm",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::NoRecoveryPoint => "no_recovery_point",
            ErrorKind::Injected => "injected",
            ErrorKind::KeyReused => "key_reused",
            ErrorKind::ScriptFailed => "script_failed",
            ErrorKind::ScriptCouldNotStart => "script_could_not_start",
        }
    }
}

/// The kind of a recovery point a failover used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointKind {
    AppConsistent,
    CrashConsistent,
    /// The final delta a planned failover shipped after the primary was shut
    /// down: nothing written before the shutdown is lost.
    FinalSync,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::AppConsistent => "app-consistent",
            PointKind::CrashConsistent => "crash-consistent",
            PointKind::FinalSync => "final sync",
        }
    }
}

/// The recovery point a failover (or a change of recovery point) used, as
/// recorded with the step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRecord {
    /// When the point was taken (Unix ms).
    pub at: Millis,
    pub kind: PointKind,
}

/// An operator's command on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OperatorAction {
    /// Run a failed step again (a new attempt, a new idempotency key).
    Retry {
        step: StepId,
    },
    /// Give up on a failed step; it counts as done for its dependents.
    Skip {
        step: StepId,
    },
    Cancel,
    /// Close an open test failover: clean up everything it created.
    CompleteTest {
        notes: String,
    },
    /// Start a scheduled job now.
    StartNow,
}

/// A persisted input of a job. **Compatibility promise**: these are the
/// records of the job event log; the store codec versions them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    Submitted {
        spec: JobSpec,
        at: Millis,
    },
    Started {
        at: Millis,
    },
    StepFinished {
        step: StepId,
        attempt: u32,
        outcome: Outcome,
        /// The last lines of a script's output, for the operator.
        output_tail: Option<String>,
        /// Values a script published (`key=value` lines of its
        /// `DRPLAN_OUTPUT` file) for later steps. Kept in the event so that
        /// they survive restarts; absent in records of older drplan
        /// versions (serde default: none).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        values: BTreeMap<String, String>,
        /// What the operator must know although the attempt may have
        /// succeeded (a NIC attached to no network, an ignored line of a
        /// script's `DRPLAN_OUTPUT` file, a script's `DRPLAN_WARNING`
        /// values): data, never parsed back out of `output_tail`. Absent in
        /// records of older drplan (see docs/operator.md for how those read).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        /// The recovery point a failover step used (absent otherwise, and in
        /// records of older drplan).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_point: Option<PointRecord>,
        at: Millis,
    },
    ManualAnswered {
        step: StepId,
        done: bool,
        by: String,
        note: Option<String>,
        at: Millis,
    },
    TimerFired {
        timer: TimerId,
        at: Millis,
    },
    OperatorAction {
        action: OperatorAction,
        by: String,
        at: Millis,
    },
}

impl JobEvent {
    /// When the event happened.
    pub fn at(&self) -> Millis {
        match self {
            JobEvent::Submitted { at, .. }
            | JobEvent::Started { at }
            | JobEvent::StepFinished { at, .. }
            | JobEvent::ManualAnswered { at, .. }
            | JobEvent::TimerFired { at, .. }
            | JobEvent::OperatorAction { at, .. } => *at,
        }
    }
}

/// A job's timers. The store indexes them by due time as a `u64`
/// ([`TimerId::to_u64`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "timer", rename_all = "snake_case")]
pub enum TimerId {
    /// A test failover left open this long is forcibly ended.
    TestDeadline,
    /// Run attempt `attempt + 1` of a script.
    Retry { step: StepId, attempt: u32 },
    /// A manual step was not answered in time.
    ManualTimeout { step: StepId },
    /// A wait step is over.
    Wait { step: StepId },
    /// A scheduled job's start time.
    ScheduledStart,
}

const TAG_SHIFT: u32 = 56;
const STEP_SHIFT: u32 = 24;
const ATTEMPT_MASK: u64 = (1 << STEP_SHIFT) - 1;

impl TimerId {
    /// A dense `u64` for the store's timer index: tag (8 bits), step (32),
    /// attempt (24). `None` when the numbers do not fit, which no validated
    /// plan reaches (2^32 steps, 2^24 attempts).
    pub fn to_u64(self) -> Option<u64> {
        let pack = |tag: u64, step: StepId, attempt: u32| -> Option<u64> {
            let step = u32::try_from(step).ok()? as u64;
            let attempt = attempt as u64;
            (attempt <= ATTEMPT_MASK).then_some((tag << TAG_SHIFT) | (step << STEP_SHIFT) | attempt)
        };
        match self {
            TimerId::TestDeadline => pack(0, 0, 0),
            TimerId::Retry { step, attempt } => pack(1, step, attempt),
            TimerId::ManualTimeout { step } => pack(2, step, 0),
            TimerId::Wait { step } => pack(3, step, 0),
            TimerId::ScheduledStart => pack(4, 0, 0),
        }
    }

    /// The inverse of [`TimerId::to_u64`].
    pub fn from_u64(v: u64) -> Option<TimerId> {
        let step = ((v >> STEP_SHIFT) & u32::MAX as u64) as StepId;
        let attempt = (v & ATTEMPT_MASK) as u32;
        let t = match v >> TAG_SHIFT {
            0 => TimerId::TestDeadline,
            1 => TimerId::Retry { step, attempt },
            2 => TimerId::ManualTimeout { step },
            3 => TimerId::Wait { step },
            4 => TimerId::ScheduledStart,
            _ => return None,
        };
        // Reject encodings with stray bits, so decoding is exact.
        (t.to_u64() == Some(v)).then_some(t)
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerId::TestDeadline => f.write_str("test deadline"),
            TimerId::Retry { step, attempt } => {
                write!(f, "retry of step {step} after attempt {attempt}")
            }
            TimerId::ManualTimeout { step } => write!(f, "timeout of manual step {step}"),
            TimerId::Wait { step } => write!(f, "end of wait step {step}"),
            TimerId::ScheduledStart => f.write_str("scheduled start"),
        }
    }
}

/// The idempotency key of one attempt of one step: `{job}/{node key}/{attempt}`.
/// The fabric and the script runner treat a repeated key as the same
/// operation, which makes re-issuing after a crash safe.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdemKey {
    pub job: JobId,
    pub node: String,
    pub attempt: u32,
}

impl fmt::Display for IdemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.job, self.node, self.attempt)
    }
}

/// What the runtime must do after a transition. Bookkeeping effects are
/// written in the same atomic store batch as the event that caused them,
/// before any external effect is performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    // External: performed after the batch is durable.
    RunVmOp {
        step: StepId,
        attempt: u32,
        key: IdemKey,
        vm: String,
        op: VmOp,
    },
    RunScript {
        step: StepId,
        attempt: u32,
        key: IdemKey,
    },
    /// Tell operators a step waits for them (a manual step, or a failure
    /// under the planned-failover policy).
    AwaitOperator {
        step: StepId,
    },
    CancelStep {
        step: StepId,
        attempt: u32,
    },
    // Bookkeeping: part of the event's batch.
    ArmTimer {
        timer: TimerId,
        due: Millis,
    },
    DisarmTimer {
        timer: TimerId,
        due: Millis,
    },
    ReleaseLeases,
    Item {
        vm: String,
        event: ItemEvent,
    },
    /// Submit a follow-up job (auto-commit / auto-rollback) at `due`.
    ScheduleFollowUp {
        operation: Operation,
        due: Millis,
    },
    Finished {
        status: JobStatus,
    },
}

impl Effect {
    /// True for effects the runtime writes into the event's own batch.
    pub fn is_bookkeeping(&self) -> bool {
        !matches!(
            self,
            Effect::RunVmOp { .. }
                | Effect::RunScript { .. }
                | Effect::AwaitOperator { .. }
                | Effect::CancelStep { .. }
        )
    }
}

/// Operators' names for where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    NotStarted,
    InProgress,
    WaitingForOperator,
    Succeeded,
    CompletedWithErrors,
    Failed,
    Cancelling,
    Cancelled,
    // Test failovers.
    AwaitingCleanup,
    CleaningUp,
    CleanupIncomplete,
    TestCompleted,
    TestForciblyEnded,
}

impl JobStatus {
    /// A terminal job accepts no further event and holds no lease or timer.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded
                | JobStatus::CompletedWithErrors
                | JobStatus::Failed
                | JobStatus::Cancelled
                | JobStatus::TestCompleted
                | JobStatus::TestForciblyEnded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::NotStarted => "not started",
            JobStatus::InProgress => "in progress",
            JobStatus::WaitingForOperator => "waiting for operator",
            JobStatus::Succeeded => "succeeded",
            JobStatus::CompletedWithErrors => "completed with errors",
            JobStatus::Failed => "failed",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Cancelled => "cancelled",
            JobStatus::AwaitingCleanup => "awaiting cleanup",
            JobStatus::CleaningUp => "cleaning up",
            JobStatus::CleanupIncomplete => "cleanup incomplete",
            JobStatus::TestCompleted => "test completed",
            JobStatus::TestForciblyEnded => "test forcibly ended",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    Error { error: String },
    TimedOut,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error { error } => f.write_str(error),
            Failure::TimedOut => f.write_str("timed out"),
        }
    }
}

/// Why a step waits for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AwaitReason {
    /// A manual step: the operator confirms it done (or not).
    Manual,
    /// A failed required step under the planned-failover policy: the plan is
    /// halted until the operator retries, skips or cancels.
    Failed { failure: Failure },
}

/// Why a step did not run (or stopped counting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// An earlier operation of the same VM chain failed (that step's id).
    ChainFailed { step: StepId },
    /// The operator skipped the step after it failed.
    Operator { by: String },
    /// A manual step with `on_timeout: continue` got no answer in time.
    ManualTimedOut,
    /// Test cleanup: the VM's test VM was never requested, nothing to delete.
    NothingToClean,
    /// The job leaves this VM as it is (see `JobSpec::left_alone`): its
    /// operations, and the pre/post steps of a group whose VMs are all
    /// left alone, do not run. Not an error.
    LeftAlone,
}

/// The state of one step (one attempt counter per step; attempts start at 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running {
        attempt: u32,
    },
    /// Attempt `attempt` failed; the retry timer runs attempt `attempt + 1`.
    RetryWaiting {
        attempt: u32,
        failure: Failure,
    },
    AwaitingOperator {
        attempt: u32,
        reason: AwaitReason,
    },
    Succeeded {
        attempt: u32,
    },
    Failed {
        attempt: u32,
        error: String,
    },
    TimedOut {
        attempt: u32,
    },
    Skipped {
        reason: SkipReason,
    },
    Cancelled {
        attempt: u32,
    },
}

impl StepState {
    /// Finished in some way: nothing more will happen to the step unless an
    /// operator retries it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            StepState::Succeeded { .. }
                | StepState::Failed { .. }
                | StepState::TimedOut { .. }
                | StepState::Skipped { .. }
                | StepState::Cancelled { .. }
        )
    }

    /// Ended in failure (not skipped, not cancelled).
    pub fn is_failure(&self) -> bool {
        matches!(self, StepState::Failed { .. } | StepState::TimedOut { .. })
    }

    /// The latest attempt started (0 = never started).
    pub fn attempt(&self) -> u32 {
        match self {
            StepState::Pending | StepState::Skipped { .. } => 0,
            StepState::Running { attempt }
            | StepState::RetryWaiting { attempt, .. }
            | StepState::AwaitingOperator { attempt, .. }
            | StepState::Succeeded { attempt }
            | StepState::Failed { attempt, .. }
            | StepState::TimedOut { attempt }
            | StepState::Cancelled { attempt } => *attempt,
        }
    }

    /// The machine name of the state (what `drplan show --format json`,
    /// reports and simulations print): `pending`, `running`,
    /// `retry_waiting`, `awaiting_operator`, `succeeded`, `failed`,
    /// `timed_out`, `skipped`, `cancelled`.
    pub fn machine_name(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running { .. } => "running",
            StepState::RetryWaiting { .. } => "retry_waiting",
            StepState::AwaitingOperator { .. } => "awaiting_operator",
            StepState::Succeeded { .. } => "succeeded",
            StepState::Failed { .. } => "failed",
            StepState::TimedOut { .. } => "timed_out",
            StepState::Skipped { .. } => "skipped",
            StepState::Cancelled { .. } => "cancelled",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running { .. } => "running",
            StepState::RetryWaiting { .. } => "waiting to retry",
            StepState::AwaitingOperator {
                reason: AwaitReason::Manual,
                ..
            } => "waiting for an operator's answer",
            StepState::AwaitingOperator { .. } => "failed, waiting for an operator's decision",
            StepState::Succeeded { .. } => "succeeded",
            StepState::Failed { .. } => "failed",
            StepState::TimedOut { .. } => "timed out",
            StepState::Skipped { .. } => "skipped",
            StepState::Cancelled { .. } => "cancelled",
        }
    }
}

/// One step's record: its state and when it first started / last finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub state: StepState,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

impl StepRecord {
    pub(crate) const PENDING: StepRecord = StepRecord {
        state: StepState::Pending,
        started_at: None,
        finished_at: None,
    };
}

/// A manual step's answer, kept for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub done: bool,
    pub by: String,
    pub note: Option<String>,
    pub at: Millis,
}

/// What to do once a cancellation has drained the running steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterCancel {
    /// A non-test job: it ends Cancelled.
    Cancelled,
    /// A cancelled test: test VMs may exist, so the test stays open.
    AwaitCleanup,
    /// A completed (or forcibly ended) test: clean up.
    Cleanup,
}

/// Where a job is in its life. [`JobState::status`] derives the operator's
/// status from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    NotStarted,
    /// Running the main DAG.
    Running,
    Cancelling {
        then: AfterCancel,
    },
    AwaitingCleanup,
    CleaningUp,
    CleanupIncomplete,
    Finished {
        status: JobStatus,
    },
}

/// How a test ended: the operator's notes, who closed it, and whether the
/// deadline did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestClosure {
    pub notes: String,
    pub by: String,
    pub at: Millis,
    pub forced: bool,
}

/// The state of a job: what snapshots hold. One [`StepRecord`] per step,
/// indexed by [`StepId`] in the job's numbering (main plan nodes first, then
/// the test cleanup nodes shifted by the main plan's length); sparse maps for
/// the rare data (outputs, answers) keep a 10,000-VM job small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub spec: JobSpec,
    pub submitted_at: Millis,
    pub mode: Mode,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub steps: Vec<StepRecord>,
    /// Steps that are running, waiting to retry or waiting for an operator.
    pub active: BTreeSet<StepId>,
    /// Armed timers and when they are due (a list on the wire: JSON map
    /// keys must be strings).
    #[serde(with = "timer_list")]
    pub timers: BTreeMap<TimerId, Millis>,
    /// Last output tail reported per step.
    pub outputs: BTreeMap<StepId, String>,
    /// Manual answers per step (the latest).
    pub answers: BTreeMap<StepId, Answer>,
    /// Set once a test is completed or forcibly ended.
    pub test: Option<TestClosure>,
    /// Values published by the job's successful script attempts, later
    /// ones overriding earlier ones (what the next scripts see).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// A scheduling hint, not state: never stored, equal to every other.
    #[serde(skip)]
    pub dep_cursor: DepCursor,
    /// How many active steps wait for an operator (a hint like
    /// `dep_cursor`): what `status` and the planned halt check would
    /// otherwise scan `active` for at every event.
    #[serde(skip)]
    pub awaiting: AwaitCounts,
}

/// Per *dependency class* (the steps whose dependency lists are identical,
/// `JobContext::dep_class`), how many of the dependencies (in
/// `JobContext::deps` order) were found satisfied in a row when the core
/// last asked whether a step of the class could start, and whether all of
/// them were found satisfied since the last *regression* (see `core::job`'s
/// `deps_ready`).
///
/// Why: a group's first operations each depend on the last operation of
/// every VM of the group before (one class), and each of those finishing
/// asks again; rescanning the dependencies from the first each time made a
/// 100-VM group's join cost O(VMs³) per job. A cursor makes the failing
/// checks amortized O(1), shared by the whole class. Satisfaction is not
/// monotone (a retried step runs again), so "all satisfied" is trusted only
/// while no step has left a finished state since it was found
/// (`regressions` counts those; `Tx::set`, the one function that changes
/// step states, bumps it), and the cursor's prefix is checked again before
/// a class is found satisfied anew.
///
/// It is only a hint, excluded from equality and from snapshots: a state
/// rebuilt by replay starts with nothing found, which is always correct.
#[derive(Debug, Clone, Default)]
pub struct DepCursor {
    at: Vec<u32>,
    /// Per class: `regressions + 1` when all its dependencies were found
    /// satisfied (0: not since the state was built).
    satisfied_at: Vec<u64>,
    regressions: u64,
}

impl DepCursor {
    /// The cursor of dependency class `class` (0 when never set).
    pub fn get(&self, class: usize) -> usize {
        self.at.get(class).map_or(0, |&c| c as usize)
    }

    pub fn set(&mut self, class: usize, at: usize) {
        if class >= self.at.len() {
            if at == 0 {
                return;
            }
            self.at.resize(class + 1, 0);
        }
        self.at[class] = u32::try_from(at).unwrap_or(u32::MAX);
    }

    /// Whether every dependency of `class` was found satisfied and no step
    /// left a finished state since.
    pub fn known_satisfied(&self, class: usize) -> bool {
        self.satisfied_at.get(class) == Some(&(self.regressions + 1))
    }

    /// Every dependency of `class` was just found satisfied.
    pub fn found_satisfied(&mut self, class: usize) {
        if class >= self.satisfied_at.len() {
            self.satisfied_at.resize(class + 1, 0);
        }
        self.satisfied_at[class] = self.regressions + 1;
    }

    /// A step left a finished state: a dependency found satisfied may not
    /// be any more.
    pub fn regressed(&mut self) {
        self.regressions += 1;
    }
}

impl PartialEq for DepCursor {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DepCursor {}

/// Of the active steps, how many wait for an operator and how many of those
/// wait because they failed (a halted planned failover). Kept by the core
/// as it changes step states; `None` until the core first counts a state it
/// did not build itself (one decoded from a snapshot, say), so readers fall
/// back to scanning `active`. Excluded from equality and from snapshots,
/// like [`DepCursor`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AwaitCounts(pub(crate) Option<Awaiting>);

/// See [`AwaitCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Awaiting {
    pub any: u32,
    pub failed: u32,
}

impl Awaiting {
    /// What one step in state `s` adds.
    pub fn of(s: &StepState) -> Awaiting {
        match s {
            StepState::AwaitingOperator { reason, .. } => Awaiting {
                any: 1,
                failed: u32::from(matches!(reason, AwaitReason::Failed { .. })),
            },
            _ => Awaiting::default(),
        }
    }
}

impl PartialEq for AwaitCounts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AwaitCounts {}

/// `BTreeMap<TimerId, Millis>` as a list of `{timer, due}` records.
mod timer_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Armed {
        timer: TimerId,
        due: Millis,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<TimerId, Millis>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|(t, d)| Armed { timer: *t, due: *d }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<TimerId, Millis>, D::Error> {
        let v: Vec<Armed> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|a| (a.timer, a.due)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::DepCursor;

    /// "All satisfied" holds for a class until any step leaves a finished
    /// state; the cursor itself is kept per class.
    #[test]
    fn a_class_found_satisfied_is_trusted_only_until_a_regression() {
        let mut c = DepCursor::default();
        assert!(!c.known_satisfied(3), "nothing found yet");
        c.set(3, 7);
        assert_eq!((c.get(3), c.get(2), c.get(99)), (7, 0, 0));
        c.found_satisfied(3);
        assert!(c.known_satisfied(3));
        assert!(!c.known_satisfied(2), "another class is not");
        c.regressed();
        assert!(!c.known_satisfied(3), "a regression voids what was found");
        c.found_satisfied(3);
        assert!(c.known_satisfied(3), "found again after it");
        assert_eq!(c, DepCursor::default(), "a hint: equal to any other");
    }
}
