//! The fabric: the VMM sites that actually shut down, replicate, fail over
//! and start VMs. The runtime performs every [`crate::core::Effect::RunVmOp`]
//! through a [`Fabric`]; the core never sees one.
//!
//! - [`Fabric`]: the contract (async, `Send + Sync`, usable as
//!   `Arc<dyn Fabric>`). Every operation is idempotent by its [`OpKey`]: the
//!   same key is the same operation, and a repeat returns the recorded result
//!   without doing anything twice. That is what makes the runtime's "re-issue
//!   started work after a crash under the same key" safe.
//! - [`sim::SimFabric`]: the embedded simulated two-site fabric (latencies,
//!   fault injection, network-mapping rules, snapshot/restore).
//! - [`faults`]: the fault-injection language (`fail:start-replica:web-01`).
//! - [`network`]: the network-mapping rules, as pure functions.
//! - [`points`]: recovery points derived from a replication policy.
//!
//! Notes for the runtime are in `docs/fabric.md`.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::{ErrorKind, IdemKey, Millis, Outcome, PointKind, PointRecord};
use crate::plan::compile::{Operation, RecoveryPoint, VmOp};
use crate::plan::model::{Direction, FailoverKind};

pub mod faults;
pub mod network;
pub mod points;
pub mod sim;

pub use faults::{Fault, FaultError, FaultSet};
pub use network::Attachment;
pub use points::PointUsed;
pub use sim::{SimConfig, SimDelta, SimFabric, SimState};

/// A stateful (simulated) fabric whose world the runtime persists in its
/// store, in the same batch as the outcomes it explains (docs/fabric.md,
/// "Persistence"). A real fabric keeps its own state and needs none of this.
pub trait FabricState: Send + Sync {
    /// What changed since the last call, encoded; `None` when nothing did.
    fn take_delta(&self) -> Option<Vec<u8>>;
    /// The whole state, encoded: replaces every delta taken so far.
    fn full(&self) -> Vec<u8>;
    /// Replaces the state with `full` (or the state at construction when
    /// `None`) with `deltas` applied in order. Called before any operation.
    fn restore_from(
        &self,
        full: Option<Vec<u8>>,
        deltas: Vec<Vec<u8>>,
    ) -> Result<(), FabricStateError>;
    /// Forgets the operation-key records starting with `prefix` (a finished
    /// job's); returns how many. The change shows in the next delta.
    fn forget_keys(&self, prefix: &str) -> usize;
}

/// Why a saved fabric state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum FabricStateError {
    #[error("the saved fabric state cannot be read: {0}")]
    Decode(#[from] crate::store::StoreError),
    #[error(transparent)]
    Restore(#[from] sim::RestoreError),
}

/// The idempotency key of one fabric operation: the string form of a
/// [`core::IdemKey`](IdemKey) (`{job}/{node}/{attempt}`) or any other string
/// a caller uses consistently. Same key = same operation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpKey(pub String);

impl OpKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&IdemKey> for OpKey {
    fn from(k: &IdemKey) -> OpKey {
        // Sized up front: this runs for every VM operation, and growing a
        // string through the formatter reallocates it a few times.
        use std::fmt::Write;
        let mut s = String::with_capacity(k.node.len() + 24);
        let _ = write!(s, "{k}");
        OpKey(s)
    }
}

impl From<IdemKey> for OpKey {
    fn from(k: IdemKey) -> OpKey {
        OpKey::from(&k)
    }
}

impl From<&str> for OpKey {
    fn from(s: &str) -> OpKey {
        OpKey(s.to_string())
    }
}

impl From<String> for OpKey {
    fn from(s: String) -> OpKey {
        OpKey(s)
    }
}

/// The fabric operations, by their stable names (the names of
/// [`VmOp::name`], plus the two that no plan compiles to yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    ShutdownPrimary,
    SyncFinalDelta,
    Failover,
    StartReplica,
    CreateTestVm,
    StartTestVm,
    DeleteTestVm,
    Commit,
    ChangeRecoveryPoint,
    ReverseReplicate,
    StopReplication,
    DisableProtection,
    Rollback,
    CheckPrerequisites,
    CreateReplica,
    InitialReplication,
    FinalizeProtection,
}

impl OpKind {
    pub const ALL: [OpKind; 17] = [
        OpKind::ShutdownPrimary,
        OpKind::SyncFinalDelta,
        OpKind::Failover,
        OpKind::StartReplica,
        OpKind::CreateTestVm,
        OpKind::StartTestVm,
        OpKind::DeleteTestVm,
        OpKind::Commit,
        OpKind::ChangeRecoveryPoint,
        OpKind::ReverseReplicate,
        OpKind::StopReplication,
        OpKind::DisableProtection,
        OpKind::Rollback,
        OpKind::CheckPrerequisites,
        OpKind::CreateReplica,
        OpKind::InitialReplication,
        OpKind::FinalizeProtection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::ShutdownPrimary => "shutdown-primary",
            OpKind::SyncFinalDelta => "sync-final-delta",
            OpKind::Failover => "failover",
            OpKind::StartReplica => "start-replica",
            OpKind::CreateTestVm => "create-test-vm",
            OpKind::StartTestVm => "start-test-vm",
            OpKind::DeleteTestVm => "delete-test-vm",
            OpKind::Commit => "commit",
            OpKind::ChangeRecoveryPoint => "change-recovery-point",
            OpKind::ReverseReplicate => "reverse-replicate",
            OpKind::StopReplication => "stop-replication",
            OpKind::DisableProtection => "disable-protection",
            OpKind::Rollback => "rollback",
            OpKind::CheckPrerequisites => "prerequisites-check",
            OpKind::CreateReplica => "create-replica",
            OpKind::InitialReplication => "initial-replication",
            OpKind::FinalizeProtection => "finalize-protection",
        }
    }

    /// The operation a [`VmOp`] is.
    pub fn of(op: &VmOp) -> OpKind {
        match op {
            VmOp::ShutdownPrimary { .. } => OpKind::ShutdownPrimary,
            VmOp::SyncFinalDelta => OpKind::SyncFinalDelta,
            VmOp::Failover { .. } => OpKind::Failover,
            VmOp::StartReplica => OpKind::StartReplica,
            VmOp::CreateTestVm { .. } => OpKind::CreateTestVm,
            VmOp::StartTestVm => OpKind::StartTestVm,
            VmOp::DeleteTestVm => OpKind::DeleteTestVm,
            VmOp::Commit => OpKind::Commit,
            VmOp::ChangeRecoveryPoint { .. } => OpKind::ChangeRecoveryPoint,
            VmOp::ReverseReplicate => OpKind::ReverseReplicate,
            VmOp::Rollback => OpKind::Rollback,
            VmOp::CheckPrerequisites => OpKind::CheckPrerequisites,
            VmOp::CreateReplica => OpKind::CreateReplica,
            VmOp::InitialReplication => OpKind::InitialReplication,
            VmOp::FinalizeProtection => OpKind::FinalizeProtection,
            VmOp::DisableProtection { .. } => OpKind::DisableProtection,
        }
    }

    pub fn parse(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the job around an operation is doing: the fabric checks a VM's state
/// against it (a forward failover of a VM that now replicates in reverse is
/// refused; a planned failover needs the final delta shipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpContext {
    /// The runtime's clock (Unix ms): recovery points are derived from it.
    pub now: Millis,
    /// The failover kind, for failover jobs.
    pub kind: Option<FailoverKind>,
    /// The failover direction, for failover jobs.
    pub direction: Option<Direction>,
}

impl OpContext {
    /// A context with no job around it (an operator's own operation).
    pub fn at(now: Millis) -> OpContext {
        OpContext {
            now,
            kind: None,
            direction: None,
        }
    }

    /// The context of a job running `operation` at `now`.
    pub fn for_operation(operation: &Operation, now: Millis) -> OpContext {
        match *operation {
            Operation::Failover {
                kind, direction, ..
            } => OpContext {
                now,
                kind: Some(kind),
                direction: Some(direction),
            },
            _ => OpContext::at(now),
        }
    }
}

/// What an operation did, for the operator and the job history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReport {
    pub op: OpKind,
    pub vm: String,
    /// One line for the operator: what happened.
    pub summary: String,
    /// Things the operator must know although the operation succeeded
    /// (e.g. a NIC attached to no network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where each NIC ended up (start replica, create test VM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The recovery point failed over to (failover, change recovery point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_point: Option<PointUsed>,
    /// The host the operation acted on (replica host, test VM host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The test VM created, started or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_vm: Option<String>,
    /// Delete test VM: the test VMs of this VM still present afterwards
    /// (empty when the cleanup is complete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<String>,
    /// How long the operation took (the simulated fabric's delay, as slept).
    pub duration_ms: u64,
}

impl OpReport {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }

    /// The recovery point used, as the journal records it.
    pub fn point_record(&self) -> Option<PointRecord> {
        self.recovery_point.map(|p| PointRecord {
            at: p.at,
            kind: if p.final_delta {
                PointKind::FinalSync
            } else if p.app_consistent {
                PointKind::AppConsistent
            } else {
                PointKind::CrashConsistent
            },
        })
    }
}

/// Why a fabric operation failed. Every message names the VM and says what
/// an operator can do; [`FabricError::retryable`] says whether trying again
/// (with a new attempt key) can help without changing anything else.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum FabricError {
    #[error("VM `{vm}` is not in the fabric inventory")]
    UnknownVm { vm: String },
    /// The VM is not in a state the operation needs (start replica before
    /// failover, commit twice over a test, ...).
    #[error("{op} of `{vm}`: {message}")]
    NotReady {
        vm: String,
        op: OpKind,
        message: String,
    },
    /// A site or host the operation needs cannot be reached.
    #[error("{op} of `{vm}`: {message}")]
    Unreachable {
        vm: String,
        op: OpKind,
        /// `site NAME` or `host NAME`.
        what: String,
        message: String,
    },
    /// No recovery point matches the request.
    #[error("{op} of `{vm}`: {message}")]
    NoRecoveryPoint {
        vm: String,
        op: OpKind,
        message: String,
    },
    /// An injected fault (`fail:` or `fail-once:`).
    #[error("{op} of `{vm}` failed: injected fault `{fault}`")]
    Injected {
        vm: String,
        op: OpKind,
        fault: String,
        /// `fail-once`: the next attempt succeeds.
        transient: bool,
    },
    /// The key was used before for a different operation: a caller bug.
    #[error(
        "operation key `{key}` was first used for {first}, now for {now}: a key names one operation"
    )]
    KeyReused {
        key: String,
        first: String,
        now: String,
    },
}

impl FabricError {
    /// Whether a new attempt can succeed without anything else changing
    /// (a host or site coming back counts: they are transient).
    pub fn retryable(&self) -> bool {
        match self {
            FabricError::Unreachable { .. } => true,
            FabricError::Injected { transient, .. } => *transient,
            FabricError::UnknownVm { .. }
            | FabricError::NotReady { .. }
            | FabricError::NoRecoveryPoint { .. }
            | FabricError::KeyReused { .. } => false,
        }
    }

    /// The error's kind, as the journal keeps it ([`crate::core::Outcome::Failed`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            FabricError::UnknownVm { .. } => ErrorKind::UnknownVm,
            FabricError::NotReady { .. } => ErrorKind::NotReady,
            FabricError::Unreachable { .. } => ErrorKind::Unreachable,
            FabricError::NoRecoveryPoint { .. } => ErrorKind::NoRecoveryPoint,
            FabricError::Injected { .. } => ErrorKind::Injected,
            FabricError::KeyReused { .. } => ErrorKind::KeyReused,
        }
    }

    /// The failed attempt's outcome, typed: message, kind, retryable.
    pub fn to_outcome(&self) -> Outcome {
        Outcome::Failed {
            error: self.to_string(),
            error_kind: Some(self.kind()),
            retryable: self.retryable(),
        }
    }

    /// The VM the error is about, if any.
    pub fn vm(&self) -> Option<&str> {
        match self {
            FabricError::UnknownVm { vm }
            | FabricError::NotReady { vm, .. }
            | FabricError::Unreachable { vm, .. }
            | FabricError::NoRecoveryPoint { vm, .. }
            | FabricError::Injected { vm, .. } => Some(vm),
            FabricError::KeyReused { .. } => None,
        }
    }
}

/// The result of one fabric operation.
pub type OpResult = Result<OpReport, FabricError>;

/// The refusal of a protection operation by a fabric that does not
/// implement protection management.
fn unsupported(vm: &str, op: OpKind) -> FabricError {
    FabricError::NotReady {
        vm: vm.to_string(),
        op,
        message: "this fabric does not implement protection management".into(),
    }
}

/// A fabric: the two sites' VMM servers as drplan drives them.
///
/// Every method is idempotent by `key`: calling it again with the same key
/// (after a crash, or concurrently) returns the result recorded for the
/// first call, success or failure, and does nothing more. A new attempt of a
/// failed step must therefore use a new key (the core's [`IdemKey`] carries
/// the attempt number). Reusing a key for another VM or operation is refused
/// with [`FabricError::KeyReused`].
///
/// Cancellation: dropping a returned future before it completes leaves the
/// fabric as if the call had never been made (the simulated fabric applies
/// an operation's effect in one step, at its end).
#[async_trait]
pub trait Fabric: Send + Sync {
    /// Shut the source VM down. With `if_reachable`, an unreachable source
    /// (its site or host down) is not a failure: the report says so.
    async fn shutdown_primary(
        &self,
        key: &OpKey,
        vm: &str,
        if_reachable: bool,
        ctx: &OpContext,
    ) -> OpResult;

    /// Ship the last delta (planned failover; the source must be off).
    async fn sync_final_delta(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Fail the replica over to a recovery point; replication stops.
    async fn failover(
        &self,
        key: &OpKey,
        vm: &str,
        recovery_point: RecoveryPoint,
        ctx: &OpContext,
    ) -> OpResult;

    /// Start the failed-over replica, attached per the network mapping.
    async fn start_replica(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Create a test VM from the replica on the replica's host, attached to
    /// `network` of the replica's site (or to none).
    async fn create_test_vm(
        &self,
        key: &OpKey,
        vm: &str,
        network: Option<&str>,
        ctx: &OpContext,
    ) -> OpResult;

    async fn start_test_vm(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Delete the VM's test VM and verify it is gone; the report lists what
    /// remains. Nothing to delete is a success.
    async fn delete_test_vm(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Commit a failover: the other recovery points are discarded.
    async fn commit(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Before commit: move the failed-over replica to another recovery point.
    async fn change_recovery_point(
        &self,
        key: &OpKey,
        vm: &str,
        recovery_point: RecoveryPoint,
        ctx: &OpContext,
    ) -> OpResult;

    /// After commit: replicate from the new source back to the old one.
    async fn reverse_replicate(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Stop shipping deltas (recovery points freeze).
    async fn stop_replication(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Disable protection, deleting the replica VM or keeping it.
    async fn disable_protection(
        &self,
        key: &OpKey,
        vm: &str,
        delete_replica: bool,
        ctx: &OpContext,
    ) -> OpResult;

    /// Undo an uncommitted failover: the source runs and replicates again.
    async fn rollback(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult;

    /// Enable protection, 1: check that the VM can be protected (pairing,
    /// policy for its host OS, a target host, reachable sites). Provided so
    /// that fabrics written before protection management still compile:
    /// they refuse it.
    async fn check_prerequisites(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        let _ = (key, ctx);
        Err(unsupported(vm, OpKind::CheckPrerequisites))
    }

    /// Enable protection, 2: create the replica VM on a host of the paired
    /// cloud, or adopt a replica that exists outside drplan.
    async fn create_replica(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        let _ = (key, ctx);
        Err(unsupported(vm, OpKind::CreateReplica))
    }

    /// Enable protection, 3: the initial copy per the policy (network now,
    /// network at the scheduled time — the job waits for it — or offline).
    async fn initial_replication(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        let _ = (key, ctx);
        Err(unsupported(vm, OpKind::InitialReplication))
    }

    /// Enable protection, 4: start delta replication; recovery points exist
    /// from now on.
    async fn finalize_protection(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        let _ = (key, ctx);
        Err(unsupported(vm, OpKind::FinalizeProtection))
    }

    /// The simulated fabric's time scale (1 = realistic latencies), `None`
    /// for a fabric that does not scale time (a real one). The runtime
    /// records it on every job it submits or resumes, so that measurements
    /// made at different scales are never mixed (`drplan estimate`).
    fn time_scale(&self) -> Option<f64> {
        None
    }

    /// Perform a compiled [`VmOp`]: what the runtime calls for
    /// [`crate::core::Effect::RunVmOp`].
    async fn run(&self, key: &OpKey, vm: &str, op: &VmOp, ctx: &OpContext) -> OpResult {
        match op {
            VmOp::ShutdownPrimary { if_reachable } => {
                self.shutdown_primary(key, vm, *if_reachable, ctx).await
            }
            VmOp::SyncFinalDelta => self.sync_final_delta(key, vm, ctx).await,
            VmOp::Failover { recovery_point } => self.failover(key, vm, *recovery_point, ctx).await,
            VmOp::StartReplica => self.start_replica(key, vm, ctx).await,
            VmOp::CreateTestVm { network } => {
                self.create_test_vm(key, vm, network.as_deref(), ctx).await
            }
            VmOp::StartTestVm => self.start_test_vm(key, vm, ctx).await,
            VmOp::DeleteTestVm => self.delete_test_vm(key, vm, ctx).await,
            VmOp::Commit => self.commit(key, vm, ctx).await,
            VmOp::ChangeRecoveryPoint { recovery_point } => {
                self.change_recovery_point(key, vm, *recovery_point, ctx)
                    .await
            }
            VmOp::ReverseReplicate => self.reverse_replicate(key, vm, ctx).await,
            VmOp::Rollback => self.rollback(key, vm, ctx).await,
            VmOp::CheckPrerequisites => self.check_prerequisites(key, vm, ctx).await,
            VmOp::CreateReplica => self.create_replica(key, vm, ctx).await,
            VmOp::InitialReplication => self.initial_replication(key, vm, ctx).await,
            VmOp::FinalizeProtection => self.finalize_protection(key, vm, ctx).await,
            VmOp::DisableProtection { delete_replica } => {
                self.disable_protection(key, vm, *delete_replica, ctx).await
            }
        }
    }
}
