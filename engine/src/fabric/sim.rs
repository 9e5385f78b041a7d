//! [`SimFabric`]: the embedded simulated two-site fabric.
//!
//! Built from a validated [`Inventory`], it keeps per-VM state (which copy is
//! the source, power, replication, failover, test VM), enforces what a real
//! fabric would refuse (start a replica before failover, commit twice over a
//! test, ...), applies the network-mapping rules, sleeps per-operation
//! latencies with `tokio::time` (so tests pause time), injects faults
//! deterministically and records every operation key it executed.
//!
//! An operation runs in three parts: claim its key (a repeat returns the
//! recorded result; a concurrent repeat waits for the first), sleep its
//! latency without holding any lock, then check and apply its effect and
//! record the result in one critical section (an operation with no latency
//! does all three under the one lock that claims it: no in-flight entry, no
//! second lock). Because the effect is applied
//! at once at the end, a cancelled (dropped) operation did nothing, and every
//! [`SimState`] snapshot is consistent: an operation's effect is in it
//! exactly when its key's result is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::faults::{Fault, FaultSet};
use super::network::{self, Attachment, NicState};
use super::points::{History, PointInfo, PointPolicy, PointUsed, fmt_time};
use super::{
    Fabric, FabricError, FabricState, FabricStateError, OpContext, OpKey, OpKind, OpReport,
    OpResult,
};
use crate::core::Millis;
use crate::plan::compile::RecoveryPoint;
use crate::plan::model::{
    Direction, FailoverKind, InitialReplication, Inventory, Mapping, Policy, ProtectionState, Vm,
};
use crate::store::codec;

/// The format version of [`SimState`].
pub const SIM_STATE_FORMAT: u32 = 1;

/// How the simulated fabric behaves in time.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Per-operation latency before scaling; missing ops use
    /// [`SimConfig::default_latency`].
    pub latencies: BTreeMap<OpKind, Duration>,
    /// Multiplies every latency: 1.0 = realistic, 0.01 = the shipped demo
    /// plan in seconds, 0 = instant (no sleep at all: benchmarks).
    pub time_scale: f64,
    /// Relative jitter: a latency varies by up to ± this fraction (0.1 =
    /// ±10 %), the same for the same key and seed.
    pub jitter: f64,
    pub seed: u64,
    /// When replication of every protected VM started (recovery points
    /// exist from then on). Unix ms; 0 = long ago.
    pub replication_since: Millis,
    /// Initial replication over the network: the link's bandwidth in
    /// Mbit/s (a VM's `disk_gb` × 8,000 Mbit / this = seconds, × the time
    /// scale). No jitter: a copy takes what the bytes take.
    pub bandwidth_mbps: f64,
    /// Offline initial replication: the speed (Mbit/s) of exporting the
    /// disks to the export path and importing them at the import path
    /// (each); the disks' transport between sites is the operator's.
    pub offline_disk_mbps: f64,
}

/// The default initial-replication bandwidth (1 Gbit/s).
pub const DEFAULT_BANDWIDTH_MBPS: f64 = 1000.0;

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            latencies: BTreeMap::new(),
            time_scale: 1.0,
            jitter: 0.1,
            seed: 0,
            replication_since: 0,
            bandwidth_mbps: DEFAULT_BANDWIDTH_MBPS,
            offline_disk_mbps: 4000.0,
        }
    }
}

impl SimConfig {
    /// No latency, no jitter: for benchmarks and logic tests.
    pub fn instant() -> SimConfig {
        SimConfig {
            time_scale: 0.0,
            jitter: 0.0,
            ..SimConfig::default()
        }
    }

    pub fn with_time_scale(mut self, scale: f64) -> SimConfig {
        self.time_scale = scale;
        self
    }

    /// What each operation takes on a real two-site fabric, roughly.
    pub fn default_latency(op: OpKind) -> Duration {
        let s = match op {
            OpKind::ShutdownPrimary => 20,
            OpKind::SyncFinalDelta => 30,
            OpKind::Failover => 40,
            OpKind::StartReplica => 60,
            OpKind::CreateTestVm => 45,
            OpKind::StartTestVm => 60,
            OpKind::DeleteTestVm => 20,
            OpKind::Commit => 10,
            OpKind::ChangeRecoveryPoint => 30,
            OpKind::ReverseReplicate => 60,
            OpKind::StopReplication => 5,
            OpKind::DisableProtection => 10,
            OpKind::Rollback => 40,
            OpKind::CheckPrerequisites => 5,
            OpKind::CreateReplica => 30,
            // Only the setup: the copy itself takes its bytes' time
            // (`SimConfig::initial_copy`).
            OpKind::InitialReplication => 5,
            OpKind::FinalizeProtection => 5,
        };
        Duration::from_secs(s)
    }

    /// How long the initial copy of `disk_gb` takes, unscaled: over the
    /// network at `bandwidth_mbps`, or offline (export + import at
    /// `offline_disk_mbps`). A non-positive speed is treated as 1 Mbit/s
    /// rather than dividing by zero.
    pub fn initial_copy(&self, disk_gb: u64, offline: bool) -> Duration {
        let mbits = disk_gb as f64 * 8_000.0;
        let secs = if offline {
            2.0 * mbits / self.offline_disk_mbps.max(1.0)
        } else {
            mbits / self.bandwidth_mbps.max(1.0)
        };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// The time scale as a multiplier (non-finite or negative: 0).
    fn scale(&self) -> f64 {
        if self.time_scale.is_finite() {
            self.time_scale.max(0.0)
        } else {
            0.0
        }
    }

    /// The unscaled latency of an operation.
    pub fn latency(&self, op: OpKind) -> Duration {
        self.latencies
            .get(&op)
            .copied()
            .unwrap_or_else(|| SimConfig::default_latency(op))
    }

    /// The delay of one operation: latency × (1 ± jitter) × time scale. The
    /// jitter is a function of (seed, key), so a repeated run (or a replayed
    /// key) takes exactly as long, whatever the scheduling order.
    pub fn delay(&self, op: OpKind, key: &str) -> Duration {
        let scale = if self.time_scale.is_finite() {
            self.time_scale.max(0.0)
        } else {
            0.0
        };
        if scale == 0.0 {
            return Duration::ZERO;
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        h.update(key.as_bytes());
        let bytes = h.finalize();
        let u = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes")) as f64
            / u64::MAX as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = (1.0 + jitter * (2.0 * u - 1.0)) * scale;
        Duration::try_from_secs_f64(self.latency(op).as_secs_f64() * factor)
            .unwrap_or(Duration::ZERO)
    }
}

// ---------------------------------------------------------------------------
// State

/// How a VM is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    Protected,
    Unprotected,
    /// Replicated by something else: drplan does not drive its replica.
    External,
    /// A protect job is under way: the replica exists (created or adopted),
    /// the initial copy may be running; no failover yet.
    Enabling,
}

/// The initial copy of a VM under protection (see
/// [`SimVm::initial`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialCopy {
    /// `network`, `offline` or `onboarded` (an adopted replica: nothing
    /// copied).
    pub method: String,
    /// Bytes to copy (0 when onboarded).
    pub bytes: u64,
    /// When the copy finished (Unix ms), once it has.
    pub finished_at: Option<Millis>,
}

/// One copy of a VM (the inventory's primary, or its replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCopy {
    pub site: String,
    pub cloud: String,
    pub host: String,
    pub running: bool,
    pub nics: Vec<NicState>,
}

/// Replication of a VM from its source copy to its target copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Replication {
    Off,
    Active {
        since: Millis,
        final_delta: Option<Millis>,
    },
    Stopped {
        since: Millis,
        at: Millis,
        final_delta: Option<Millis>,
    },
}

/// A failover that happened (the target copy is the failed-over one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedOver {
    pub point: PointUsed,
    pub committed: bool,
    pub at: Millis,
}

/// A test VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestVm {
    pub name: String,
    pub site: String,
    pub host: String,
    pub running: bool,
    pub attachments: Vec<Attachment>,
    /// The operation key that created it.
    pub created_by: String,
}

/// The simulated state of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimVm {
    pub protection: Protection,
    /// Forward: the primary copy is the source; Reverse: the replica is.
    pub direction: Direction,
    /// The copy at the inventory's site, cloud and host.
    pub primary: Option<VmCopy>,
    /// The copy on a host of the paired target cloud.
    pub replica: Option<VmCopy>,
    pub policy: PointPolicy,
    pub replication: Replication,
    pub failover: Option<FailedOver>,
    pub test_vm: Option<TestVm>,
    /// Protection enabled by drplan: how the replica got its data.
    /// Absent for VMs protected before drplan (the inventory's state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<InitialCopy>,
}

impl SimVm {
    pub fn source(&self) -> Option<&VmCopy> {
        match self.direction {
            Direction::Forward => self.primary.as_ref(),
            Direction::Reverse => self.replica.as_ref(),
        }
    }

    pub fn target(&self) -> Option<&VmCopy> {
        match self.direction {
            Direction::Forward => self.replica.as_ref(),
            Direction::Reverse => self.primary.as_ref(),
        }
    }

    fn copies_mut(&mut self) -> (Option<&mut VmCopy>, Option<&mut VmCopy>) {
        match self.direction {
            Direction::Forward => (self.primary.as_mut(), self.replica.as_mut()),
            Direction::Reverse => (self.replica.as_mut(), self.primary.as_mut()),
        }
    }

    fn history(&self) -> Option<History> {
        let only = self.failover.filter(|f| f.committed).map(|f| f.point);
        match self.replication {
            Replication::Off => None,
            Replication::Active { since, final_delta } => Some(History {
                since,
                stopped_at: None,
                final_delta,
                only,
            }),
            Replication::Stopped {
                since,
                at,
                final_delta,
            } => Some(History {
                since,
                stopped_at: Some(at),
                final_delta,
                only,
            }),
        }
    }
}

/// What the fabric remembers of one operation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub op: OpKind,
    pub vm: String,
    /// How many times the key was submitted (1 = never repeated).
    pub calls: u64,
    pub result: OpResult,
}

/// The whole simulated world, for persistence: serde, versioned by `format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    pub format: u32,
    /// Bumped by every change: of two snapshots, the higher is newer.
    pub generation: u64,
    pub vms: BTreeMap<String, SimVm>,
    pub keys: BTreeMap<String, KeyRecord>,
    /// `fail-once` faults already fired, as `FAULT|OP|VM`.
    pub fired_once: BTreeSet<String>,
}

/// The changes of [`SimFabric::take_delta`]: current values of what
/// changed; a key mapped to `None` was forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDelta {
    pub generation: u64,
    pub vms: BTreeMap<String, SimVm>,
    pub keys: BTreeMap<String, Option<KeyRecord>>,
    pub fired_once: BTreeSet<String>,
}

impl SimDelta {
    pub fn is_empty(&self) -> bool {
        self.vms.is_empty() && self.keys.is_empty()
    }
}

impl SimState {
    /// Apply a delta taken after this state (deltas must be applied in the
    /// order they were taken; an older one is ignored).
    pub fn apply(&mut self, delta: &SimDelta) {
        if delta.generation < self.generation {
            return;
        }
        self.generation = delta.generation;
        for (n, v) in &delta.vms {
            self.vms.insert(n.clone(), v.clone());
        }
        for (k, r) in &delta.keys {
            match r {
                Some(r) => {
                    self.keys.insert(k.clone(), r.clone());
                }
                None => {
                    self.keys.remove(k);
                }
            }
        }
        self.fired_once = delta.fired_once.clone();
    }
}

/// A saved state checked against the inventory: VMs added to the
/// inventory since start fresh; VMs removed from it are an error.
fn checked_state(
    inventory: &Inventory,
    config: &SimConfig,
    mut state: SimState,
) -> Result<SimState, RestoreError> {
    if state.format != SIM_STATE_FORMAT {
        return Err(RestoreError::Format {
            found: state.format,
        });
    }
    let unknown: Vec<String> = state
        .vms
        .keys()
        .filter(|n| inventory.vm(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(RestoreError::UnknownVms { vms: unknown });
    }
    for (name, vm) in initial_vms(inventory, config.replication_since) {
        state.vms.entry(name).or_insert(vm);
    }
    Ok(state)
}

/// Persistence through the runtime's store (see [`FabricState`]): deltas
/// and snapshots are [`SimDelta`] and [`SimState`] in the store codec.
impl FabricState for SimFabric {
    fn take_delta(&self) -> Option<Vec<u8>> {
        let delta = SimFabric::take_delta(self);
        (!delta.is_empty()).then(|| codec::encode(&delta))
    }

    fn full(&self) -> Vec<u8> {
        codec::encode(&self.snapshot())
    }

    fn restore_from(
        &self,
        full: Option<Vec<u8>>,
        deltas: Vec<Vec<u8>>,
    ) -> Result<(), FabricStateError> {
        if full.is_none() && deltas.is_empty() {
            return Ok(()); // nothing saved: the fresh world stands
        }
        // Without a snapshot the deltas start from the world at
        // construction, which is this fabric's (nothing has run on it yet).
        let mut state = match full {
            Some(bytes) => codec::decode::<SimState>(&bytes)?,
            None => self.snapshot(),
        };
        for bytes in &deltas {
            state.apply(&codec::decode::<SimDelta>(bytes)?);
        }
        self.replace_state(state)?;
        Ok(())
    }

    fn forget_keys(&self, prefix: &str) -> usize {
        SimFabric::forget_keys(self, prefix)
    }
}

/// A test VM still present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Residue {
    pub vm: String,
    pub test_vm: String,
    pub site: String,
    pub host: String,
    pub created_by: String,
}

/// Why a saved [`SimState`] cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "simulated fabric state format {found} is not supported (this build reads {SIM_STATE_FORMAT})"
    )]
    Format { found: u32 },
    #[error(
        "the saved simulated fabric has VMs the inventory no longer has: {}",
        vms.join(", ")
    )]
    UnknownVms { vms: Vec<String> },
}

// ---------------------------------------------------------------------------
// The fabric

/// What one call asks for (the arguments of a [`Fabric`] method).
#[derive(Debug, Clone)]
enum Request {
    Shutdown { if_reachable: bool },
    Sync,
    Failover(RecoveryPoint),
    StartReplica,
    CreateTest(Option<String>),
    StartTest,
    DeleteTest,
    Commit,
    ChangeRp(RecoveryPoint),
    Reverse,
    StopReplication,
    Disable { delete_replica: bool },
    Rollback,
    Prerequisites,
    CreateReplica,
    InitialCopy,
    Finalize,
}

impl Request {
    fn kind(&self) -> OpKind {
        match self {
            Request::Shutdown { .. } => OpKind::ShutdownPrimary,
            Request::Sync => OpKind::SyncFinalDelta,
            Request::Failover(_) => OpKind::Failover,
            Request::StartReplica => OpKind::StartReplica,
            Request::CreateTest(_) => OpKind::CreateTestVm,
            Request::StartTest => OpKind::StartTestVm,
            Request::DeleteTest => OpKind::DeleteTestVm,
            Request::Commit => OpKind::Commit,
            Request::ChangeRp(_) => OpKind::ChangeRecoveryPoint,
            Request::Reverse => OpKind::ReverseReplicate,
            Request::StopReplication => OpKind::StopReplication,
            Request::Disable { .. } => OpKind::DisableProtection,
            Request::Rollback => OpKind::Rollback,
            Request::Prerequisites => OpKind::CheckPrerequisites,
            Request::CreateReplica => OpKind::CreateReplica,
            Request::InitialCopy => OpKind::InitialReplication,
            Request::Finalize => OpKind::FinalizeProtection,
        }
    }
}

struct World {
    state: SimState,
    faults: FaultSet,
    mappings: Vec<Mapping>,
    /// Keys being executed (with a delay: a zero-delay operation completes
    /// under the lock that claims it). The channel that hands the result to a
    /// concurrent call with the same key is made only once such a call
    /// comes (rare: a re-issue racing the first attempt), not per operation.
    in_flight: HashMap<String, Option<watch::Sender<Option<OpResult>>>>,
    /// Initial copies in flight, by key: progress for the operator. Not
    /// persisted: a copy interrupted by a restart starts over when its
    /// operation is re-issued (as a real copy restarts or resyncs).
    transfers: BTreeMap<String, Transfer>,
    /// Changed since the last [`SimFabric::take_delta`].
    dirty_vms: BTreeSet<String>,
    dirty_keys: BTreeSet<String>,
}

/// The simulated fabric. Share it as `Arc<SimFabric>` (or `Arc<dyn Fabric>`).
pub struct SimFabric {
    /// Networks (and the mappings at construction) come from here.
    inventory: Inventory,
    config: SimConfig,
    // A std mutex, not a tokio one: it is never held across an await, and
    // critical sections are short map updates.
    world: Mutex<World>,
}

/// Removes an in-flight key if its operation is dropped before it finishes,
/// so that waiters retry instead of waiting forever.
struct InFlight<'a> {
    fabric: &'a SimFabric,
    key: Option<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let mut w = self.fabric.lock();
            w.in_flight.remove(&k);
            w.transfers.remove(&k);
        }
    }
}

/// An initial copy in flight.
#[derive(Debug, Clone)]
struct Transfer {
    vm: String,
    method: &'static str,
    bytes: u64,
    started: tokio::time::Instant,
    /// As slept (scaled).
    duration: Duration,
}

/// How far an initial copy has come (see [`SimFabric::transfers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferProgress {
    pub vm: String,
    /// The operation key of the copy.
    pub key: String,
    /// `network` or `offline`.
    pub method: String,
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// 0.0 ..= 1.0.
    pub fraction: f64,
    /// Time left, as the simulation sleeps it (scaled).
    pub remaining_ms: u64,
}

impl SimFabric {
    /// A fresh world from a validated inventory: primaries running, every
    /// protected VM replicating to a host of its paired cloud.
    pub fn new(inventory: &Inventory, config: SimConfig, faults: FaultSet) -> SimFabric {
        let vms = initial_vms(inventory, config.replication_since);
        SimFabric {
            inventory: inventory.clone(),
            world: Mutex::new(World {
                state: SimState {
                    format: SIM_STATE_FORMAT,
                    generation: 0,
                    vms,
                    keys: BTreeMap::new(),
                    fired_once: BTreeSet::new(),
                },
                faults,
                mappings: inventory.network_mappings.clone(),
                in_flight: HashMap::new(),
                transfers: BTreeMap::new(),
                dirty_vms: BTreeSet::new(),
                dirty_keys: BTreeSet::new(),
            }),
            config,
        }
    }

    /// The world as saved by [`SimFabric::snapshot`], against the current
    /// inventory: VMs added to the inventory since start fresh; VMs removed
    /// from it are an error (their state would be lost silently).
    pub fn restore(
        inventory: &Inventory,
        config: SimConfig,
        faults: FaultSet,
        state: SimState,
    ) -> Result<SimFabric, RestoreError> {
        let state = checked_state(inventory, &config, state)?;
        Ok(SimFabric {
            inventory: inventory.clone(),
            config,
            world: Mutex::new(World {
                state,
                faults,
                mappings: inventory.network_mappings.clone(),
                in_flight: HashMap::new(),
                transfers: BTreeMap::new(),
                dirty_vms: BTreeSet::new(),
                dirty_keys: BTreeSet::new(),
            }),
        })
    }

    /// Replaces the world of this fabric with a saved one (as
    /// [`SimFabric::restore`] does for a new fabric), for a runtime that
    /// restores the world from its store after the fabric was built. Nothing
    /// may be in flight; the change tracking starts afresh.
    pub fn replace_state(&self, state: SimState) -> Result<(), RestoreError> {
        let state = checked_state(&self.inventory, &self.config, state)?;
        let mut w = self.lock();
        w.state = state;
        w.dirty_vms.clear();
        w.dirty_keys.clear();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-changed
        // (effects are applied by plain assignments after every check), so
        // a poisoned lock is still usable.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// A consistent copy of the world, for persistence.
    pub fn snapshot(&self) -> SimState {
        self.lock().state.clone()
    }

    /// What changed since the last call (or since construction): the
    /// current value of every VM and key record touched, for a runtime that
    /// persists the world incrementally (in the same store batch as the
    /// outcomes it reports; see docs/fabric.md). Applying every delta in
    /// order to the snapshot taken at construction gives [`Self::snapshot`].
    pub fn take_delta(&self) -> SimDelta {
        let mut w = self.lock();
        let World {
            state,
            dirty_vms,
            dirty_keys,
            ..
        } = &mut *w;
        SimDelta {
            generation: state.generation,
            vms: std::mem::take(dirty_vms)
                .into_iter()
                .filter_map(|n| state.vms.get(&n).map(|v| (n, v.clone())))
                .collect(),
            keys: std::mem::take(dirty_keys)
                .into_iter()
                .map(|k| {
                    let rec = state.keys.get(&k).cloned();
                    (k, rec)
                })
                .collect(),
            fired_once: state.fired_once.clone(),
        }
    }

    /// Forget the key records whose key starts with `prefix` (e.g. `"42/"`,
    /// every key of job 42): once a job is terminal its keys are never
    /// re-issued, and 10,000 VMs leave 40,000 records per failover.
    pub fn forget_keys(&self, prefix: &str) -> usize {
        let mut w = self.lock();
        let World {
            state, dirty_keys, ..
        } = &mut *w;
        let gone: Vec<String> = state
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            state.keys.remove(k);
            dirty_keys.insert(k.clone());
        }
        if !gone.is_empty() {
            state.generation += 1;
        }
        gone.len()
    }

    /// The generation of the current state (see [`SimState::generation`]).
    pub fn generation(&self) -> u64 {
        self.lock().state.generation
    }

    pub fn faults(&self) -> FaultSet {
        self.lock().faults.clone()
    }

    /// Replace the faults in force (e.g. bring a site back).
    pub fn set_faults(&self, faults: FaultSet) {
        self.lock().faults = faults;
    }

    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.faults.push(fault);
    }

    /// Change the network mappings: replicas started from now on are
    /// attached per the new ones.
    pub fn set_network_mappings(&self, mappings: Vec<Mapping>) {
        self.lock().mappings = mappings;
    }

    /// One VM's state.
    pub fn vm(&self, name: &str) -> Option<SimVm> {
        self.lock().state.vms.get(name).cloned()
    }

    /// Every operation key executed and how many times it was submitted.
    pub fn executed(&self) -> Vec<(String, u64)> {
        self.lock()
            .state
            .keys
            .iter()
            .map(|(k, r)| (k.clone(), r.calls))
            .collect()
    }

    /// Submissions answered from the record instead of executed: repeats of
    /// a key (after a crash, or concurrent).
    pub fn duplicate_count(&self) -> u64 {
        self.lock()
            .state
            .keys
            .values()
            .map(|r| r.calls.saturating_sub(1))
            .sum()
    }

    /// How many distinct keys executed `op` on `vm` (a runtime that issues a
    /// finished step again under a new key shows up here).
    pub fn executions(&self, op: OpKind, vm: &str) -> usize {
        self.lock()
            .state
            .keys
            .values()
            .filter(|r| r.op == op && r.vm == vm)
            .count()
    }

    /// Every test VM still present: a cleanup that leaves one behind shows.
    pub fn residue(&self) -> Vec<Residue> {
        self.lock()
            .state
            .vms
            .iter()
            .filter_map(|(name, v)| {
                v.test_vm.as_ref().map(|t| Residue {
                    vm: name.clone(),
                    test_vm: t.name.clone(),
                    site: t.site.clone(),
                    host: t.host.clone(),
                    created_by: t.created_by.clone(),
                })
            })
            .collect()
    }

    /// The initial copies running now, by VM, with their progress (the
    /// fraction of the copy's simulated duration that has passed, on tokio's
    /// clock, so paused-time tests see it move).
    pub fn transfers(&self) -> Vec<TransferProgress> {
        let now = tokio::time::Instant::now();
        let w = self.lock();
        let mut out: Vec<TransferProgress> = w
            .transfers
            .iter()
            .map(|(key, t)| {
                let elapsed = now.saturating_duration_since(t.started);
                let fraction = if t.duration.is_zero() {
                    1.0
                } else {
                    (elapsed.as_secs_f64() / t.duration.as_secs_f64()).clamp(0.0, 1.0)
                };
                TransferProgress {
                    vm: t.vm.clone(),
                    key: key.clone(),
                    method: t.method.to_string(),
                    total_bytes: t.bytes,
                    done_bytes: (t.bytes as f64 * fraction) as u64,
                    fraction,
                    remaining_ms: t.duration.saturating_sub(elapsed).as_millis() as u64,
                }
            })
            .collect();
        out.sort_by(|a, b| a.vm.cmp(&b.vm));
        out
    }

    /// The unscaled delay of `op` on `vm` in the current world: the initial
    /// copy depends on the VM's disk size and policy, anything else on its
    /// latency. Also says what an initial copy moves.
    fn op_delay(&self, w: &World, op: OpKind, vm: &str, key: &str) -> (Duration, Option<Transfer>) {
        let base = self.config.delay(op, key);
        if op != OpKind::InitialReplication {
            return (base, None);
        }
        let Some(v) = w.state.vms.get(vm) else {
            return (base, None);
        };
        // An adopted replica has nothing to copy; a VM not being enabled is
        // refused when the operation applies, at once.
        let copying = v.protection == Protection::Enabling
            && v.initial.as_ref().is_some_and(|i| i.method != "onboarded");
        let Some(inv_vm) = self.inventory.vm(vm).filter(|_| copying) else {
            return (base, None);
        };
        let offline = matches!(
            vm_policy(&self.inventory, inv_vm).map(|p| &p.initial_replication),
            Some(InitialReplication::Offline { .. })
        );
        let copy = self
            .config
            .initial_copy(inv_vm.disk_gb, offline)
            .mul_f64(self.config.scale());
        let transfer = Transfer {
            vm: vm.to_string(),
            method: if offline { "offline" } else { "network" },
            bytes: inv_vm.disk_gb.saturating_mul(1_000_000_000),
            started: tokio::time::Instant::now(),
            duration: copy,
        };
        (base.saturating_add(copy), Some(transfer))
    }

    /// The point `requested` selects for `vm` at `now`, or why none does
    /// (the same choice a failover makes): checks an operator's
    /// `--recovery-point` before a job is submitted.
    pub fn select_point(
        &self,
        vm: &str,
        now: Millis,
        requested: RecoveryPoint,
    ) -> Result<PointUsed, String> {
        let w = self.lock();
        let Some(v) = w.state.vms.get(vm) else {
            return Err(format!("VM `{vm}` is not in the fabric inventory"));
        };
        match v.history() {
            Some(h) => h.select(&v.policy, now, requested),
            None => Err("it does not replicate: no recovery point exists".to_string()),
        }
    }

    /// The recovery points of a VM available at `now`, oldest first.
    pub fn recovery_points(&self, vm: &str, now: Millis) -> Result<Vec<PointInfo>, FabricError> {
        let w = self.lock();
        let v = w
            .state
            .vms
            .get(vm)
            .ok_or_else(|| FabricError::UnknownVm { vm: vm.to_string() })?;
        Ok(v.history()
            .map(|h| h.points(&v.policy, now))
            .unwrap_or_default())
    }

    /// Claim, sleep, apply, record: see the module docs.
    async fn execute(&self, key: &OpKey, vm: &str, req: Request, ctx: &OpContext) -> OpResult {
        let op = req.kind();
        let key_s = key.as_str();
        let delay = loop {
            let mut rx = {
                let mut w = self.lock();
                if let Some(rec) = w.state.keys.get_mut(key_s) {
                    if rec.op != op || rec.vm != vm {
                        return Err(FabricError::KeyReused {
                            key: key_s.to_string(),
                            first: format!("{} of `{}`", rec.op, rec.vm),
                            now: format!("{op} of `{vm}`"),
                        });
                    }
                    rec.calls += 1;
                    let result = rec.result.clone();
                    w.state.generation += 1;
                    w.dirty_keys.insert(key_s.to_string());
                    return result;
                }
                match w.in_flight.get_mut(key_s) {
                    Some(waiters) => waiters
                        .get_or_insert_with(|| watch::channel(None).0)
                        .subscribe(),
                    None => {
                        let extra = w.faults.extra_delay(op, vm);
                        let (d, transfer) = self.op_delay(&w, op, vm, key_s);
                        // Whole milliseconds: tokio's timer has that
                        // resolution, so the report states what was slept.
                        let d = d + extra;
                        let d = Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64);
                        if d.is_zero() {
                            // Nothing to wait for (a zero-latency fabric):
                            // apply under this same lock, with no in-flight
                            // entry for a concurrent repeat to wait on.
                            return self.complete(&mut w, key_s, vm, &req, ctx, d);
                        }
                        w.in_flight.insert(key_s.to_string(), None);
                        if let Some(t) = transfer {
                            w.transfers.insert(key_s.to_string(), t);
                        }
                        break d;
                    }
                }
            };
            // Another call runs this key: wait for its result. If it is
            // dropped first (sender gone), claim the key again.
            if rx.wait_for(|r| r.is_some()).await.is_ok() {
                continue; // the result is recorded now: answered above
            }
        };
        let mut guard = InFlight {
            fabric: self,
            key: Some(key_s.to_string()),
        };
        tokio::time::sleep(delay).await;
        let mut w = self.lock();
        let result = self.complete(&mut w, key_s, vm, &req, ctx, delay);
        w.transfers.remove(key_s);
        if let Some(Some(tx)) = w.in_flight.remove(key_s) {
            tx.send_replace(Some(result.clone()));
        }
        guard.key = None;
        result
    }

    /// Applies an operation whose delay has passed and records its result
    /// under its key (what a repeat of the key is answered with).
    fn complete(
        &self,
        w: &mut World,
        key: &str,
        vm: &str,
        req: &Request,
        ctx: &OpContext,
        delay: Duration,
    ) -> OpResult {
        let op = req.kind();
        let World {
            state,
            faults,
            mappings,
            dirty_vms,
            dirty_keys,
            ..
        } = w;
        let cx = Cx {
            key,
            vm,
            op,
            ctx,
            faults,
            mappings,
            inventory: &self.inventory,
        };
        let result = cx.apply(state, req).map(|mut report| {
            report.duration_ms = delay.as_millis() as u64;
            report
        });
        state.keys.insert(
            key.to_string(),
            KeyRecord {
                op,
                vm: vm.to_string(),
                calls: 1,
                result: result.clone(),
            },
        );
        state.generation += 1;
        if !dirty_vms.contains(vm) {
            dirty_vms.insert(vm.to_string());
        }
        dirty_keys.insert(key.to_string());
        result
    }
}

/// Initial per-VM state: replicas placed on the paired cloud's hosts, the
/// least loaded first (by count, in inventory order; hosts running the
/// primary's OS preferred), so placement is deterministic and balanced.
fn initial_vms(inv: &Inventory, since: Millis) -> BTreeMap<String, SimVm> {
    let mut load: HashMap<(String, String, String), usize> = HashMap::new();
    let mut out = BTreeMap::new();
    for vm in &inv.vms {
        let nics: Vec<NicState> = vm
            .nics
            .iter()
            .map(|n| NicState {
                network: Some(n.network.clone()),
                subnet: n.subnet.clone(),
            })
            .collect();
        let primary = VmCopy {
            site: vm.site.clone(),
            cloud: vm.cloud.clone(),
            host: vm.host.clone(),
            running: true,
            nics: nics.clone(),
        };
        let os = inv
            .sites
            .iter()
            .filter(|s| s.name == vm.site)
            .flat_map(|s| s.clouds.iter())
            .flat_map(|c| c.hosts.iter())
            .find(|h| h.name == vm.host)
            .map(|h| h.os.clone());
        let pairing = inv
            .pairings
            .iter()
            .find(|p| p.source.site == vm.site && p.source.cloud == vm.cloud);
        let policy = pairing
            .and_then(|p| {
                let named: Vec<_> = inv
                    .policies
                    .iter()
                    .filter(|pol| p.policies.contains(&pol.name))
                    .collect();
                named
                    .iter()
                    .find(|pol| Some(&pol.host_os) == os.as_ref())
                    .or(named.first())
                    .map(|pol| PointPolicy::of(pol))
            })
            .unwrap_or_default();
        let target_hosts: Vec<(&str, &str)> = pairing
            .into_iter()
            .flat_map(|p| {
                inv.sites
                    .iter()
                    .filter(move |s| s.name == p.target.site)
                    .flat_map(|s| s.clouds.iter())
                    .filter(move |c| c.name == p.target.cloud)
                    .flat_map(|c| c.hosts.iter())
            })
            .map(|h| (h.name.as_str(), h.os.as_str()))
            .collect();
        let same_os: Vec<&str> = target_hosts
            .iter()
            .filter(|(_, o)| Some(*o) == os.as_deref())
            .map(|(h, _)| *h)
            .collect();
        let candidates: Vec<&str> = if same_os.is_empty() {
            target_hosts.iter().map(|(h, _)| *h).collect()
        } else {
            same_os
        };
        let protection = match vm.protection {
            ProtectionState::Protected => Protection::Protected,
            ProtectionState::Unprotected => Protection::Unprotected,
            ProtectionState::ReplicatedExternally => Protection::External,
        };
        let replica = match (protection, pairing) {
            // A replica made outside drplan exists too: onboarding adopts it.
            (Protection::Protected | Protection::External, Some(p)) if !candidates.is_empty() => {
                let host = candidates
                    .iter()
                    .min_by_key(|h| {
                        load.get(&(p.target.site.clone(), p.target.cloud.clone(), h.to_string()))
                            .copied()
                            .unwrap_or(0)
                    })
                    .expect("candidates is not empty")
                    .to_string();
                *load
                    .entry((p.target.site.clone(), p.target.cloud.clone(), host.clone()))
                    .or_default() += 1;
                Some(VmCopy {
                    site: p.target.site.clone(),
                    cloud: p.target.cloud.clone(),
                    host,
                    running: false,
                    nics: vec![
                        NicState {
                            network: None,
                            subnet: None
                        };
                        nics.len()
                    ],
                })
            }
            _ => None,
        };
        let replication = if replica.is_some() && protection == Protection::Protected {
            Replication::Active {
                since,
                final_delta: None,
            }
        } else {
            Replication::Off
        };
        out.insert(
            vm.name.clone(),
            SimVm {
                protection,
                direction: Direction::Forward,
                primary: Some(primary),
                replica,
                policy,
                replication,
                failover: None,
                test_vm: None,
                initial: None,
            },
        );
    }
    out
}

/// The policy that applies to `vm`: its cloud's pairing's policy for the
/// OS of the VM's host (else the pairing's first policy).
pub fn vm_policy<'a>(inv: &'a Inventory, vm: &Vm) -> Option<&'a Policy> {
    let os = host_os(inv, &vm.site, &vm.host);
    let pairing = inv
        .pairings
        .iter()
        .find(|p| p.source.site == vm.site && p.source.cloud == vm.cloud)?;
    let named: Vec<&Policy> = inv
        .policies
        .iter()
        .filter(|pol| pairing.policies.contains(&pol.name))
        .collect();
    named
        .iter()
        .find(|pol| Some(pol.host_os.as_str()) == os)
        .or(named.first())
        .copied()
}

fn host_os<'a>(inv: &'a Inventory, site: &str, host: &str) -> Option<&'a str> {
    inv.sites
        .iter()
        .filter(|s| s.name == site)
        .flat_map(|s| s.clouds.iter())
        .flat_map(|c| c.hosts.iter())
        .find(|h| h.name == host)
        .map(|h| h.os.as_str())
}

// ---------------------------------------------------------------------------
// The operations: checks, then effects, in one critical section.

/// One operation being applied.
struct Cx<'a> {
    key: &'a str,
    vm: &'a str,
    op: OpKind,
    ctx: &'a OpContext,
    faults: &'a FaultSet,
    mappings: &'a [Mapping],
    inventory: &'a Inventory,
}

type Res<T> = Result<T, FabricError>;

fn flip(d: Direction) -> Direction {
    match d {
        Direction::Forward => Direction::Reverse,
        Direction::Reverse => Direction::Forward,
    }
}

impl Cx<'_> {
    fn report(&self, summary: String) -> OpReport {
        OpReport {
            op: self.op,
            vm: self.vm.to_string(),
            summary,
            warnings: Vec::new(),
            attachments: Vec::new(),
            recovery_point: None,
            host: None,
            test_vm: None,
            remaining: Vec::new(),
            duration_ms: 0,
        }
    }

    fn not_ready(&self, message: impl Into<String>) -> FabricError {
        FabricError::NotReady {
            vm: self.vm.to_string(),
            op: self.op,
            message: message.into(),
        }
    }

    /// Whether a site/host can be reached: `Err((what, why))` if not.
    fn reach(&self, site: &str, host: &str) -> Result<(), (String, String)> {
        if self.faults.site_down(site) {
            return Err((format!("site {site}"), format!("site {site} is down")));
        }
        if self.faults.host_down(host) {
            return Err((
                format!("host {host}"),
                format!("host {host} (at {site}) is down"),
            ));
        }
        Ok(())
    }

    fn need(&self, copy: &VmCopy, doing: &str) -> Res<()> {
        self.reach(&copy.site, &copy.host)
            .map_err(|(what, why)| FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                message: format!("cannot {doing}: {why} (retry once {what} is back)"),
                what,
            })
    }

    /// Injected `fail` / `fail-once` faults, checked after the real checks.
    fn injected(&self, fired: &mut BTreeSet<String>) -> Res<()> {
        if let Some(f) = self.faults.fail(self.op, self.vm) {
            return Err(FabricError::Injected {
                vm: self.vm.to_string(),
                op: self.op,
                fault: f.to_string(),
                transient: false,
            });
        }
        for f in self.faults.fail_once(self.op, self.vm) {
            if fired.insert(format!("{f}|{}|{}", self.op, self.vm)) {
                return Err(FabricError::Injected {
                    vm: self.vm.to_string(),
                    op: self.op,
                    fault: f.to_string(),
                    transient: true,
                });
            }
        }
        Ok(())
    }

    fn protected(&self, v: &SimVm) -> Res<()> {
        match v.protection {
            Protection::Unprotected => {
                Err(self.not_ready("it is not protected: it has no replica"))
            }
            Protection::External => Err(self
                .not_ready("it is replicated outside drplan: onboard it first (`drplan protect`)")),
            Protection::Enabling => Err(self.not_ready(
                "protection is being enabled: its initial replication has not finished",
            )),
            Protection::Protected if v.target().is_none() || v.source().is_none() => {
                Err(self.not_ready("it has no replica (deleted when protection was disabled)"))
            }
            Protection::Protected => Ok(()),
        }
    }

    fn direction(&self, v: &SimVm) -> Res<()> {
        match self.ctx.direction {
            Some(d) if d != v.direction => Err(self.not_ready(format!(
                "it replicates {} ({} to {}); a {d} failover needs it to replicate {d}",
                v.direction,
                v.source().map_or("?", |c| c.site.as_str()),
                v.target().map_or("?", |c| c.site.as_str()),
            ))),
            _ => Ok(()),
        }
    }

    fn apply(&self, state: &mut SimState, req: &Request) -> OpResult {
        let SimState {
            vms, fired_once, ..
        } = state;
        // Replica placement balances the target hosts by the copies they
        // already hold (replicas, and primaries after a reverse).
        let vms_load: BTreeMap<String, usize> = if matches!(req, Request::CreateReplica) {
            let mut load = BTreeMap::new();
            for (name, other) in vms.iter() {
                if name == self.vm {
                    continue;
                }
                for c in [&other.primary, &other.replica].into_iter().flatten() {
                    *load.entry(c.host.clone()).or_default() += 1;
                }
            }
            load
        } else {
            BTreeMap::new()
        };
        let v = vms.get_mut(self.vm).ok_or_else(|| FabricError::UnknownVm {
            vm: self.vm.to_string(),
        })?;
        match req {
            Request::Shutdown { if_reachable } => self.shutdown(v, *if_reachable, fired_once),
            Request::Sync => self.sync(v, fired_once),
            Request::Failover(rp) => self.failover(v, *rp, fired_once),
            Request::StartReplica => self.start_replica(v, fired_once),
            Request::CreateTest(net) => self.create_test(v, net.as_deref(), fired_once),
            Request::StartTest => self.start_test(v, fired_once),
            Request::DeleteTest => self.delete_test(v, fired_once),
            Request::Commit => self.commit(v, fired_once),
            Request::ChangeRp(rp) => self.change_rp(v, *rp, fired_once),
            Request::Reverse => self.reverse(v, fired_once),
            Request::StopReplication => self.stop_replication(v, fired_once),
            Request::Disable { delete_replica } => self.disable(v, *delete_replica, fired_once),
            Request::Rollback => self.rollback(v, fired_once),
            Request::Prerequisites => self.prerequisites(v, fired_once),
            Request::CreateReplica => self.create_replica(v, &vms_load, fired_once),
            Request::InitialCopy => self.initial_copy(v, fired_once),
            Request::Finalize => self.finalize(v, fired_once),
        }
    }

    fn shutdown(
        &self,
        v: &mut SimVm,
        if_reachable: bool,
        fired: &mut BTreeSet<String>,
    ) -> OpResult {
        self.direction(v)?;
        let Some(src) = v.source() else {
            return Err(self.not_ready("it has no source copy to shut down"));
        };
        if let Err((what, why)) = self.reach(&src.site, &src.host) {
            if if_reachable {
                let mut r = self.report(format!(
                    "primary unreachable ({why}): {} was not shut down",
                    self.vm
                ));
                r.warnings.push(format!(
                    "the primary of {} at {} could not be reached and may still be running: keep it off when {what} is back, so that it and the replica never run at once",
                    self.vm, src.site
                ));
                r.host = Some(src.host.clone());
                return Ok(r);
            }
            return Err(FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                message: format!(
                    "cannot shut down the primary: {why} (retry once {what} is back, or run an unplanned failover)"
                ),
                what,
            });
        }
        self.injected(fired)?;
        let (Some(src), _) = v.copies_mut() else {
            unreachable!("checked above")
        };
        let mut r = self.report(if src.running {
            format!("shut down {} at {} (host {})", self.vm, src.site, src.host)
        } else {
            format!("{} at {} was already off", self.vm, src.site)
        });
        src.running = false;
        r.host = Some(src.host.clone());
        Ok(r)
    }

    fn sync(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        self.direction(v)?;
        let (since, final_delta) = match v.replication {
            Replication::Off => return Err(self.not_ready("its replication is off")),
            Replication::Stopped { at, .. } => {
                return Err(self.not_ready(format!(
                    "its replication stopped at {}: no delta can ship (fail over without it: an unplanned failover)",
                    fmt_time(at)
                )));
            }
            Replication::Active { since, final_delta } => (since, final_delta),
        };
        let (src, tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        if src.running {
            return Err(self.not_ready(format!(
                "it is still running at {}: shut it down first, so that the final delta is the last one",
                src.site
            )));
        }
        self.need(src, "ship the final delta from the primary")?;
        self.need(tgt, "ship the final delta to the replica")?;
        self.injected(fired)?;
        let (src_site, tgt_site, tgt_host) = (src.site.clone(), tgt.site.clone(), tgt.host.clone());
        let mut r = match final_delta {
            Some(at) => self.report(format!(
                "the final delta of {} was already shipped at {}",
                self.vm,
                fmt_time(at)
            )),
            None => {
                let at = self.ctx.now.max(since);
                v.replication = Replication::Active {
                    since,
                    final_delta: Some(at),
                };
                self.report(format!(
                    "shipped the final delta of {} from {} to {} at {}",
                    self.vm,
                    src_site,
                    tgt_site,
                    fmt_time(at)
                ))
            }
        };
        r.host = Some(tgt_host);
        Ok(r)
    }

    fn failover(&self, v: &mut SimVm, rp: RecoveryPoint, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        self.direction(v)?;
        if let Some(fo) = v.failover {
            return Err(self.not_ready(if fo.committed {
                format!("it already failed over to {} and was committed", fo.point)
            } else {
                format!(
                    "it already failed over to {}: change the recovery point, commit or roll back",
                    fo.point
                )
            }));
        }
        if let Some(t) = &v.test_vm {
            return Err(self.not_ready(format!(
                "it has an open test failover (test VM {} on {}): complete the test first",
                t.name, t.host
            )));
        }
        let final_delta = match v.replication {
            Replication::Off => return Err(self.not_ready("it is not replicating")),
            Replication::Active { final_delta, .. } | Replication::Stopped { final_delta, .. } => {
                final_delta
            }
        };
        if self.ctx.kind == Some(FailoverKind::Planned) && final_delta.is_none() {
            return Err(self.not_ready(
                "a planned failover needs the final delta shipped first (sync-final-delta); with the primary unreachable, run an unplanned failover",
            ));
        }
        let tgt = v.target().expect("protected");
        self.need(tgt, "fail over the replica")?;
        self.injected(fired)?;
        // A state restored from disk may be inconsistent: refuse, do not panic.
        let history = v
            .history()
            .ok_or_else(|| self.not_ready("it is not replicating"))?;
        let point = history.select(&v.policy, self.ctx.now, rp).map_err(|m| {
            FabricError::NoRecoveryPoint {
                vm: self.vm.to_string(),
                op: self.op,
                message: m,
            }
        })?;
        let host = tgt.host.clone();
        v.replication = match v.replication {
            Replication::Active { since, final_delta } => Replication::Stopped {
                since,
                at: self.ctx.now.max(since),
                final_delta,
            },
            other => other,
        };
        v.failover = Some(FailedOver {
            point,
            committed: false,
            at: self.ctx.now,
        });
        let mut r = self.report(format!(
            "failed {} over to the recovery point of {point} on {host}",
            self.vm
        ));
        r.recovery_point = Some(point);
        r.host = Some(host);
        Ok(r)
    }

    fn start_replica(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        self.direction(v)?;
        if v.failover.is_none() {
            return Err(self.not_ready(
                "it has not failed over: its replica cannot start yet (run the failover first)",
            ));
        }
        let (src, tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        self.need(tgt, "start the replica")?;
        self.injected(fired)?;
        // Mappings are read now, at every start: a changed mapping
        // re-attaches the replica.
        let (attachments, mut warnings) = network::replica_attachments(
            self.vm,
            &src.site,
            &src.nics,
            &tgt.site,
            self.mappings,
            &self.inventory.networks,
        );
        if src.running {
            match self.reach(&src.site, &src.host) {
                Ok(()) => warnings.push(format!(
                    "{} is still running at {}: two copies now run; shut the primary down",
                    self.vm, src.site
                )),
                Err((what, _)) => warnings.push(format!(
                    "the primary of {} at {} cannot be reached and may still be running: keep it off when {what} is back",
                    self.vm, src.site
                )),
            }
        }
        let new_nics: Vec<NicState> = attachments.iter().map(Attachment::state).collect();
        let (_, Some(tgt)) = v.copies_mut() else {
            unreachable!("protected")
        };
        let summary = if tgt.running {
            if tgt.nics == new_nics {
                format!(
                    "{} was already running on {}; attachments unchanged ({})",
                    self.vm,
                    tgt.host,
                    network::describe(&attachments)
                )
            } else {
                format!(
                    "{} was already running on {}; re-attached per the current network mapping: {}",
                    self.vm,
                    tgt.host,
                    network::describe(&attachments)
                )
            }
        } else {
            format!(
                "started {} on {} ({}), attached to {}",
                self.vm,
                tgt.host,
                tgt.site,
                network::describe(&attachments)
            )
        };
        tgt.running = true;
        tgt.nics = new_nics;
        let mut r = self.report(summary);
        r.host = Some(tgt.host.clone());
        r.warnings = warnings;
        r.attachments = attachments;
        Ok(r)
    }

    fn create_test(
        &self,
        v: &mut SimVm,
        network_name: Option<&str>,
        fired: &mut BTreeSet<String>,
    ) -> OpResult {
        self.protected(v)?;
        self.direction(v)?;
        if let Some(fo) = v.failover {
            return Err(self.not_ready(format!(
                "it has failed over (to {}): a test failover needs a VM that is replicating",
                fo.point
            )));
        }
        if !matches!(v.replication, Replication::Active { .. }) {
            return Err(self.not_ready("it is not replicating"));
        }
        if let Some(t) = &v.test_vm {
            return Err(self.not_ready(format!(
                "test VM {} from an earlier test still exists on {} (created by `{}`): clean that test up first",
                t.name, t.host, t.created_by
            )));
        }
        let (src, tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        self.need(tgt, "create the test VM on the replica's host")?;
        self.injected(fired)?;
        let (attachments, warnings) = network::test_attachments(
            self.vm,
            &src.nics,
            &tgt.site,
            network_name,
            &self.inventory.networks,
        );
        let name = format!("{}-test", self.vm);
        let mut r = self.report(format!(
            "created test VM {name} on {} (the replica's host), attached to {}",
            tgt.host,
            if network_name.is_none() {
                "no network (the plan names no test network)".to_string()
            } else {
                network::describe(&attachments)
            }
        ));
        r.host = Some(tgt.host.clone());
        r.test_vm = Some(name.clone());
        r.warnings = warnings;
        r.attachments = attachments.clone();
        v.test_vm = Some(TestVm {
            name,
            site: tgt.site.clone(),
            host: tgt.host.clone(),
            running: false,
            attachments,
            created_by: self.key.to_string(),
        });
        Ok(r)
    }

    fn start_test(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.direction(v)?;
        let Some(t) = &v.test_vm else {
            return Err(self.not_ready("it has no test VM (create-test-vm first)"));
        };
        self.reach(&t.site, &t.host)
            .map_err(|(what, why)| FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                message: format!("cannot start test VM {}: {why}", t.name),
                what,
            })?;
        self.injected(fired)?;
        let t = v.test_vm.as_mut().expect("checked");
        let mut r = self.report(if t.running {
            format!("test VM {} was already running on {}", t.name, t.host)
        } else {
            format!("started test VM {} on {}", t.name, t.host)
        });
        t.running = true;
        r.host = Some(t.host.clone());
        r.test_vm = Some(t.name.clone());
        r.attachments = t.attachments.clone();
        Ok(r)
    }

    fn delete_test(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        let Some(t) = &v.test_vm else {
            return Ok(self.report(format!("{} has no test VM: nothing to delete", self.vm)));
        };
        self.reach(&t.site, &t.host)
            .map_err(|(what, why)| FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                message: format!(
                    "cannot delete test VM {} on {}: {why}; it remains (retry once {what} is back)",
                    t.name, t.host
                ),
                what,
            })?;
        self.injected(fired)?;
        let t = v.test_vm.take().expect("checked");
        // Verify, as a real fabric's cleanup must: list what is left.
        let remaining: Vec<String> = v.test_vm.iter().map(|t| t.name.clone()).collect();
        let mut r = self.report(if remaining.is_empty() {
            format!("deleted test VM {} from {}", t.name, t.host)
        } else {
            format!(
                "deleted test VM {} from {}, but {} remain",
                t.name,
                t.host,
                remaining.join(", ")
            )
        });
        r.host = Some(t.host);
        r.test_vm = Some(t.name);
        r.remaining = remaining;
        Ok(r)
    }

    fn commit(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        let Some(fo) = v.failover else {
            return Err(self.not_ready("it has not failed over: there is nothing to commit"));
        };
        let tgt = v.target().expect("protected");
        if fo.committed {
            let mut r = self.report(format!("{} was already committed to {}", self.vm, fo.point));
            r.recovery_point = Some(fo.point);
            return Ok(r);
        }
        self.need(tgt, "commit the failover")?;
        self.injected(fired)?;
        let host = tgt.host.clone();
        v.failover = Some(FailedOver {
            committed: true,
            ..fo
        });
        let mut r = self.report(format!(
            "committed {} to {}; the other recovery points are discarded",
            self.vm, fo.point
        ));
        r.recovery_point = Some(fo.point);
        r.host = Some(host);
        Ok(r)
    }

    fn change_rp(
        &self,
        v: &mut SimVm,
        rp: RecoveryPoint,
        fired: &mut BTreeSet<String>,
    ) -> OpResult {
        self.protected(v)?;
        let Some(fo) = v.failover else {
            return Err(
                self.not_ready("it has not failed over: there is no recovery point to change")
            );
        };
        if fo.committed {
            return Err(self.not_ready("it is committed: the other recovery points were discarded"));
        }
        let tgt = v.target().expect("protected");
        self.need(tgt, "change the recovery point")?;
        self.injected(fired)?;
        let point = v
            .history()
            .ok_or_else(|| self.not_ready("it is not replicating"))?
            .select(&v.policy, self.ctx.now, rp)
            .map_err(|m| FabricError::NoRecoveryPoint {
                vm: self.vm.to_string(),
                op: self.op,
                message: m,
            })?;
        let host = tgt.host.clone();
        v.failover = Some(FailedOver { point, ..fo });
        let mut r = self.report(format!(
            "moved {} from the recovery point of {} to {point}",
            self.vm,
            fmt_time(fo.point.at)
        ));
        r.recovery_point = Some(point);
        r.host = Some(host);
        Ok(r)
    }

    fn reverse(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        match v.failover {
            None => {
                return Err(
                    self.not_ready("it has not failed over: there is nothing to replicate back")
                );
            }
            Some(fo) if !fo.committed => {
                return Err(self.not_ready(
                    "its failover is not committed: commit it first (or roll it back)",
                ));
            }
            Some(_) => {}
        }
        let (src, tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        self.need(src, &format!("reach {} to replicate back to it", src.site))?;
        self.need(tgt, "replicate from the failed-over VM")?;
        self.injected(fired)?;
        let mut r = self.report(String::new());
        if src.running {
            r.warnings.push(format!(
                "the old copy of {} at {} was running; it was shut down and is now overwritten by reverse replication",
                self.vm, src.site
            ));
        }
        let (Some(src), _) = v.copies_mut() else {
            unreachable!("protected")
        };
        src.running = false;
        v.direction = flip(v.direction);
        v.replication = Replication::Active {
            since: self.ctx.now,
            final_delta: None,
        };
        v.failover = None;
        let (new_src, new_tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        r.summary = format!(
            "{} now replicates from {} to {} ({})",
            self.vm, new_src.site, new_tgt.site, v.direction
        );
        r.host = Some(new_tgt.host.clone());
        Ok(r)
    }

    fn stop_replication(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        let (since, final_delta) = match v.replication {
            Replication::Off => return Err(self.not_ready("its replication is off")),
            Replication::Stopped { at, .. } => {
                return Ok(self.report(format!(
                    "replication of {} was already stopped at {}",
                    self.vm,
                    fmt_time(at)
                )));
            }
            Replication::Active { since, final_delta } => (since, final_delta),
        };
        self.need(v.target().expect("protected"), "stop replication")?;
        self.injected(fired)?;
        let at = self.ctx.now.max(since);
        v.replication = Replication::Stopped {
            since,
            at,
            final_delta,
        };
        Ok(self.report(format!(
            "stopped replication of {} at {}; its recovery points are frozen",
            self.vm,
            fmt_time(at)
        )))
    }

    fn disable(
        &self,
        v: &mut SimVm,
        delete_replica: bool,
        fired: &mut BTreeSet<String>,
    ) -> OpResult {
        if v.protection != Protection::Protected {
            return Ok(self.report(format!("{} is not protected: nothing to disable", self.vm)));
        }
        if let Some(t) = &v.test_vm {
            return Err(self.not_ready(format!(
                "it has an open test failover (test VM {} on {}): complete the test first",
                t.name, t.host
            )));
        }
        if let Some(fo) = v.failover
            && !fo.committed
        {
            return Err(
                self.not_ready("it failed over and is not committed: commit or roll back first")
            );
        }
        // After a committed failover the failed-over copy is the VM and the
        // old source is "the replica"; otherwise the target is.
        let failed_over = v.failover.is_some();
        let replica = if failed_over { v.source() } else { v.target() }.cloned();
        if delete_replica && let Some(t) = &replica {
            self.need(t, "delete the replica")?;
        }
        self.injected(fired)?;
        if failed_over {
            v.direction = flip(v.direction);
        }
        v.protection = Protection::Unprotected;
        v.replication = Replication::Off;
        v.failover = None;
        let summary = match (&replica, delete_replica) {
            (Some(t), true) => {
                match v.direction {
                    Direction::Forward => v.replica = None,
                    Direction::Reverse => v.primary = None,
                }
                format!(
                    "disabled protection of {}; deleted its replica on {} ({})",
                    self.vm, t.host, t.site
                )
            }
            (Some(t), false) => format!(
                "disabled protection of {}; its replica on {} ({}) is kept",
                self.vm, t.host, t.site
            ),
            (None, _) => format!("disabled protection of {}", self.vm),
        };
        Ok(self.report(summary))
    }

    fn rollback(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        self.protected(v)?;
        if let Some(fo) = v.failover
            && fo.committed
        {
            return Err(self.not_ready(
                "it is committed: a committed failover cannot be rolled back; reverse replicate and fail back instead",
            ));
        }
        let (src, tgt) = (
            v.source().expect("protected"),
            v.target().expect("protected"),
        );
        let interrupted = !matches!(
            v.replication,
            Replication::Active {
                final_delta: None,
                ..
            }
        );
        if v.failover.is_none() && !interrupted && src.running {
            return Ok(self.report(format!("{}: nothing to roll back", self.vm)));
        }
        self.need(
            src,
            &format!("roll back: the primary at {} must run again", src.site),
        )?;
        if v.failover.is_some() {
            self.need(tgt, "stop the failed-over replica")?;
        }
        self.injected(fired)?;
        let since = match v.replication {
            Replication::Active { since, .. } | Replication::Stopped { since, .. } => since,
            Replication::Off => self.ctx.now,
        };
        let stopped_replica = v.failover.is_some() && tgt.running;
        let (src_site, tgt_site, tgt_host) = (src.site.clone(), tgt.site.clone(), tgt.host.clone());
        let (Some(src), Some(tgt)) = v.copies_mut() else {
            unreachable!("protected")
        };
        src.running = true;
        tgt.running = false;
        v.failover = None;
        v.replication = Replication::Active {
            since,
            final_delta: None,
        };
        let mut r = self.report(format!(
            "rolled {} back: it runs at {src_site} and replicates to {tgt_site} again{}",
            self.vm,
            if stopped_replica {
                format!(" (replica on {tgt_host} stopped)")
            } else {
                String::new()
            }
        ));
        r.host = Some(tgt_host);
        Ok(r)
    }

    /// What the VM's protection needs: its inventory entry, the pairing of
    /// its cloud, the policy for its host's OS, and the target cloud's hosts
    /// (those of the same OS first).
    fn protection_setup(&self) -> Res<ProtectionSetup<'_>> {
        let inv_vm = self
            .inventory
            .vm(self.vm)
            .ok_or_else(|| FabricError::UnknownVm {
                vm: self.vm.to_string(),
            })?;
        let pairing = self
            .inventory
            .pairings
            .iter()
            .find(|p| p.source.site == inv_vm.site && p.source.cloud == inv_vm.cloud)
            .ok_or_else(|| {
                self.not_ready(format!(
                    "its cloud {}/{} is paired with no cloud: add a pairing to the inventory",
                    inv_vm.site, inv_vm.cloud
                ))
            })?;
        let policy = vm_policy(self.inventory, inv_vm).ok_or_else(|| {
            self.not_ready(format!(
                "the pairing {} -> {} has no replication policy",
                pairing.source, pairing.target
            ))
        })?;
        let os = host_os(self.inventory, &inv_vm.site, &inv_vm.host);
        let mut hosts: Vec<(&str, bool)> = self
            .inventory
            .sites
            .iter()
            .filter(|s| s.name == pairing.target.site)
            .flat_map(|s| s.clouds.iter())
            .filter(|c| c.name == pairing.target.cloud)
            .flat_map(|c| c.hosts.iter())
            .map(|h| (h.name.as_str(), Some(h.os.as_str()) == os))
            .collect();
        if hosts.is_empty() {
            return Err(self.not_ready(format!(
                "the target cloud {} has no host for its replica",
                pairing.target
            )));
        }
        if hosts.iter().any(|(_, same)| *same) {
            hosts.retain(|(_, same)| *same);
        }
        Ok(ProtectionSetup {
            vm: inv_vm,
            target_site: &pairing.target.site,
            target_cloud: &pairing.target.cloud,
            policy,
            hosts: hosts.into_iter().map(|(h, _)| h).collect(),
        })
    }

    fn prerequisites(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        if v.protection == Protection::Protected {
            return Err(self.not_ready(
                "it is already protected: disable protection first to protect it again",
            ));
        }
        let setup = self.protection_setup()?;
        let primary = v
            .primary
            .as_ref()
            .ok_or_else(|| self.not_ready("it has no primary copy to replicate"))?;
        self.need(primary, "check the primary")?;
        if self.faults.site_down(setup.target_site) {
            return Err(FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                what: format!("site {}", setup.target_site),
                message: format!(
                    "cannot reach the target site: site {} is down (retry once it is back)",
                    setup.target_site
                ),
            });
        }
        self.injected(fired)?;
        let how = match (&v.protection, &setup.policy.initial_replication) {
            (Protection::External, _) => {
                "its replica exists outside drplan: it will be onboarded, nothing copied"
                    .to_string()
            }
            (
                _,
                InitialReplication::Offline {
                    export_path,
                    import_path,
                },
            ) => format!(
                "offline initial replication of {} GB (export to {export_path}, import from {import_path})",
                setup.vm.disk_gb
            ),
            (_, InitialReplication::Network { .. }) => format!(
                "initial replication of {} GB over the network",
                setup.vm.disk_gb
            ),
        };
        Ok(self.report(format!(
            "prerequisites met for {}: pairing {}/{} -> {}/{}, policy {} (copy every {}, {} h of recovery points); {how}",
            self.vm,
            setup.vm.site,
            setup.vm.cloud,
            setup.target_site,
            setup.target_cloud,
            setup.policy.name,
            humantime::format_duration(setup.policy.copy_frequency),
            setup.policy.retention_hours,
        )))
    }

    fn create_replica(
        &self,
        v: &mut SimVm,
        load: &BTreeMap<String, usize>,
        fired: &mut BTreeSet<String>,
    ) -> OpResult {
        match v.protection {
            Protection::Protected => {
                return Err(self.not_ready("it is already protected"));
            }
            Protection::External => {
                let Some(r) = v.replica.clone() else {
                    return Err(self.not_ready(
                        "it is marked replicated outside drplan, but no replica was found on the paired cloud",
                    ));
                };
                self.need(&r, "adopt the replica")?;
                self.injected(fired)?;
                v.protection = Protection::Enabling;
                v.initial = Some(InitialCopy {
                    method: "onboarded".into(),
                    bytes: 0,
                    finished_at: None,
                });
                let mut rep = self.report(format!(
                    "adopted the existing replica of {} on {} ({}): onboarded, nothing to copy",
                    self.vm, r.host, r.site
                ));
                rep.host = Some(r.host);
                return Ok(rep);
            }
            Protection::Unprotected | Protection::Enabling => {}
        }
        let setup = self.protection_setup()?;
        let method = match setup.policy.initial_replication {
            InitialReplication::Offline { .. } => "offline",
            InitialReplication::Network { .. } => "network",
        };
        let nics = v.primary.as_ref().map_or(0, |p| p.nics.len());
        // A replica left by an earlier attempt (or kept when protection was
        // disabled) on the paired cloud is reused, not duplicated.
        if let Some(r) = v.replica.clone()
            && r.site == setup.target_site
            && r.cloud == setup.target_cloud
        {
            self.need(&r, "reuse the replica")?;
            self.injected(fired)?;
            v.protection = Protection::Enabling;
            v.direction = Direction::Forward;
            v.initial = Some(InitialCopy {
                method: method.into(),
                bytes: setup.vm.disk_gb.saturating_mul(1_000_000_000),
                finished_at: None,
            });
            let mut rep = self.report(format!(
                "reused the existing replica of {} on {} ({}); it will be resynchronized",
                self.vm, r.host, r.site
            ));
            rep.host = Some(r.host);
            return Ok(rep);
        }
        let host = setup
            .hosts
            .iter()
            .min_by_key(|h| load.get(**h).copied().unwrap_or(0))
            .expect("protection_setup returns at least one host")
            .to_string();
        if let Err((what, why)) = self.reach(setup.target_site, &host) {
            return Err(FabricError::Unreachable {
                vm: self.vm.to_string(),
                op: self.op,
                message: format!("cannot create the replica: {why} (retry once {what} is back)"),
                what,
            });
        }
        self.injected(fired)?;
        v.replica = Some(VmCopy {
            site: setup.target_site.to_string(),
            cloud: setup.target_cloud.to_string(),
            host: host.clone(),
            running: false,
            nics: vec![
                NicState {
                    network: None,
                    subnet: None,
                };
                nics
            ],
        });
        v.direction = Direction::Forward;
        v.protection = Protection::Enabling;
        v.replication = Replication::Off;
        v.initial = Some(InitialCopy {
            method: method.into(),
            bytes: setup.vm.disk_gb.saturating_mul(1_000_000_000),
            finished_at: None,
        });
        let mut rep = self.report(format!(
            "created the replica of {} on {} ({}/{})",
            self.vm, host, setup.target_site, setup.target_cloud
        ));
        rep.host = Some(host);
        Ok(rep)
    }

    fn initial_copy(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        if v.protection != Protection::Enabling {
            return Err(self.not_ready("it has no replica being set up: create the replica first"));
        }
        let (Some(src), Some(tgt)) = (v.primary.clone(), v.replica.clone()) else {
            return Err(self.not_ready("it has no replica: create the replica first"));
        };
        let Some(initial) = v.initial.clone() else {
            return Err(self.not_ready("its replica was not created by this protection"));
        };
        if initial.method == "onboarded" {
            self.injected(fired)?;
            v.initial = Some(InitialCopy {
                finished_at: Some(self.ctx.now),
                ..initial
            });
            return Ok(self.report(format!(
                "nothing to copy: the replica of {} on {} was onboarded",
                self.vm, tgt.host
            )));
        }
        self.need(&src, "copy from the primary")?;
        self.need(&tgt, "copy to the replica")?;
        self.injected(fired)?;
        let summary = match self
            .protection_setup()
            .map(|s| &s.policy.initial_replication)
        {
            Ok(InitialReplication::Offline {
                export_path,
                import_path,
            }) => format!(
                "initial replication of {} done offline: {} GB exported to {export_path} at {}, imported from {import_path} at {}",
                self.vm,
                initial.bytes / 1_000_000_000,
                src.site,
                tgt.site
            ),
            _ => format!(
                "initial replication of {} done: {} GB copied over the network to {} ({})",
                self.vm,
                initial.bytes / 1_000_000_000,
                tgt.host,
                tgt.site
            ),
        };
        v.initial = Some(InitialCopy {
            finished_at: Some(self.ctx.now),
            ..initial
        });
        let mut rep = self.report(summary);
        rep.host = Some(tgt.host);
        Ok(rep)
    }

    fn finalize(&self, v: &mut SimVm, fired: &mut BTreeSet<String>) -> OpResult {
        if v.protection != Protection::Enabling
            || v.initial.as_ref().is_none_or(|i| i.finished_at.is_none())
        {
            return Err(self.not_ready(
                "its initial replication has not finished: protection cannot be finalized",
            ));
        }
        self.injected(fired)?;
        let setup = self.protection_setup()?;
        v.policy = PointPolicy::of(setup.policy);
        v.protection = Protection::Protected;
        v.direction = Direction::Forward;
        v.failover = None;
        v.replication = Replication::Active {
            since: self.ctx.now,
            final_delta: None,
        };
        Ok(self.report(format!(
            "{} is protected: deltas ship every {} to {}/{}",
            self.vm,
            humantime::format_duration(setup.policy.copy_frequency),
            setup.target_site,
            setup.target_cloud
        )))
    }
}

/// See [`Cx::protection_setup`].
struct ProtectionSetup<'a> {
    vm: &'a Vm,
    target_site: &'a str,
    target_cloud: &'a str,
    policy: &'a Policy,
    /// Candidate hosts for the replica.
    hosts: Vec<&'a str>,
}

#[async_trait]
impl Fabric for SimFabric {
    fn time_scale(&self) -> Option<f64> {
        Some(self.config.time_scale)
    }

    async fn shutdown_primary(
        &self,
        key: &OpKey,
        vm: &str,
        if_reachable: bool,
        ctx: &OpContext,
    ) -> OpResult {
        self.execute(key, vm, Request::Shutdown { if_reachable }, ctx)
            .await
    }

    async fn sync_final_delta(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Sync, ctx).await
    }

    async fn failover(
        &self,
        key: &OpKey,
        vm: &str,
        recovery_point: RecoveryPoint,
        ctx: &OpContext,
    ) -> OpResult {
        self.execute(key, vm, Request::Failover(recovery_point), ctx)
            .await
    }

    async fn start_replica(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::StartReplica, ctx).await
    }

    async fn create_test_vm(
        &self,
        key: &OpKey,
        vm: &str,
        network: Option<&str>,
        ctx: &OpContext,
    ) -> OpResult {
        self.execute(
            key,
            vm,
            Request::CreateTest(network.map(str::to_string)),
            ctx,
        )
        .await
    }

    async fn start_test_vm(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::StartTest, ctx).await
    }

    async fn delete_test_vm(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::DeleteTest, ctx).await
    }

    async fn commit(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Commit, ctx).await
    }

    async fn change_recovery_point(
        &self,
        key: &OpKey,
        vm: &str,
        recovery_point: RecoveryPoint,
        ctx: &OpContext,
    ) -> OpResult {
        self.execute(key, vm, Request::ChangeRp(recovery_point), ctx)
            .await
    }

    async fn reverse_replicate(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Reverse, ctx).await
    }

    async fn stop_replication(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::StopReplication, ctx).await
    }

    async fn disable_protection(
        &self,
        key: &OpKey,
        vm: &str,
        delete_replica: bool,
        ctx: &OpContext,
    ) -> OpResult {
        self.execute(key, vm, Request::Disable { delete_replica }, ctx)
            .await
    }

    async fn rollback(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Rollback, ctx).await
    }

    async fn check_prerequisites(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Prerequisites, ctx).await
    }

    async fn create_replica(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::CreateReplica, ctx).await
    }

    async fn initial_replication(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::InitialCopy, ctx).await
    }

    async fn finalize_protection(&self, key: &OpKey, vm: &str, ctx: &OpContext) -> OpResult {
        self.execute(key, vm, Request::Finalize, ctx).await
    }
}
