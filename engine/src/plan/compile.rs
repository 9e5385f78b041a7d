//! Compile a validated plan and an operation into an execution DAG.
//!
//! A failover is laid out in three phases ([`Stage`]), as Azure Site
//! Recovery runs a recovery plan (group types Shutdown, Failover, Boot) and
//! SRM a planned migration (docs/plan-format.md, "Failover phases"):
//! - **Shutdown**: every primary VM is shut down. Planned: in reverse
//!   dependency order (a group's shutdowns wait for those of the groups that
//!   come after it: the front end goes down first); groups without `after`
//!   go last, one after another in reverse file order, so the phase ends in
//!   one group. Unplanned: best effort (`if_reachable`), all at once, and
//!   nothing but the VM's own start waits for it. Test: none.
//! - **Failover**: each VM's remaining operations before its start (final
//!   sync and failover; test: create the test VM), every VM in parallel.
//!   Planned: once the whole Shutdown phase has ended.
//! - **Boot**: group by group in dependency order: the group's `pre` steps
//!   (once its VMs failed over), each VM's start, the group's `post` steps.
//!
//! Any other operation (commit, cleanup, ...), and a failover of a plan
//! model stored before phases existed ([`CompileLayout::Groups`]), is laid
//! out per group: its `pre` steps in order, then one operation chain per VM
//! (the chains run in parallel), then its `post` steps; a failover's group
//! starts after the groups it comes after.
//!
//! Parts that are empty are passed through, so an empty group still
//! carries its dependencies. Steps whose `when` excludes the operation are
//! absent.
//!
//! Compilation is deterministic: the same plan and operation always give the
//! same nodes with the same ids in the same (topological) order. Durable jobs
//! rely on this: they store the plan model and recompile it on restart, and
//! step ids in the event log refer to this numbering; the model's
//! [`CompileLayout`] keeps that true across drplan versions.

use std::fmt;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use super::model::{CompileLayout, Direction, FailoverKind, Plan, Step};

/// Index of a node in [`ExecPlan::nodes`].
pub type StepId = usize;

/// Which recovery point an unplanned failover (or a change of recovery point)
/// goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryPoint {
    /// The latest point already processed on the replica (fastest RTO).
    #[default]
    LatestProcessed,
    /// The latest point received, processing pending logs first (lowest RPO).
    Latest,
    /// The latest app-consistent snapshot.
    LatestAppConsistent,
    /// The latest point at or before this time (seconds since the Unix epoch).
    At(u64),
}

impl fmt::Display for RecoveryPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryPoint::LatestProcessed => f.write_str("latest-processed"),
            RecoveryPoint::Latest => f.write_str("latest"),
            RecoveryPoint::LatestAppConsistent => f.write_str("latest-app-consistent"),
            RecoveryPoint::At(t) => write!(f, "at:{t}"),
        }
    }
}

/// What a job does over a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// A planned, unplanned or test failover in a direction (reverse = failback).
    Failover {
        kind: FailoverKind,
        direction: Direction,
        /// Unplanned only; ignored otherwise.
        recovery_point: RecoveryPoint,
        /// Unplanned only: try to shut the primary down first (if reachable).
        shutdown_primary: bool,
    },
    /// Delete the test VMs of a test failover, then run the cleanup steps.
    TestCleanup,
    /// Commit failed-over VMs (discard the other recovery points).
    Commit,
    /// Before commit: move failed-over VMs to another recovery point.
    ChangeRecoveryPoint { recovery_point: RecoveryPoint },
    /// After commit: replicate from the (new) source back to the old primary.
    ReverseReplicate,
    /// Roll back an uncommitted failover (the primary becomes active again).
    Rollback,
    /// Enable protection of the plan's VMs (a synthetic plan built by
    /// [`crate::protect`]): prerequisites check, replica creation, initial
    /// replication, finalize. A VM the inventory marks as replicated outside
    /// drplan is onboarded by the same chain without copying again.
    EnableProtection,
    /// Disable protection of the plan's VMs, deleting their replicas or
    /// keeping them (resolved from the policy when the operator did not say).
    DisableProtection { delete_replica: bool },
}

impl Operation {
    pub fn failover(kind: FailoverKind) -> Operation {
        Operation::Failover {
            kind,
            direction: Direction::Forward,
            recovery_point: RecoveryPoint::default(),
            shutdown_primary: true,
        }
    }

    /// The failover kind, for failovers.
    pub fn kind(&self) -> Option<FailoverKind> {
        match self {
            Operation::Failover { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Failover {
                kind,
                direction: Direction::Forward,
                ..
            } => write!(f, "{kind} failover"),
            Operation::Failover {
                kind,
                direction: Direction::Reverse,
                ..
            } => write!(f, "{kind} failback"),
            Operation::TestCleanup => f.write_str("test cleanup"),
            Operation::Commit => f.write_str("commit"),
            Operation::ChangeRecoveryPoint { recovery_point } => {
                write!(f, "change recovery point to {recovery_point}")
            }
            Operation::ReverseReplicate => f.write_str("reverse replicate"),
            Operation::Rollback => f.write_str("rollback"),
            Operation::EnableProtection => f.write_str("enable protection"),
            Operation::DisableProtection {
                delete_replica: true,
            } => f.write_str("disable protection (delete replica)"),
            Operation::DisableProtection {
                delete_replica: false,
            } => f.write_str("disable protection (keep replica)"),
        }
    }
}

/// A fabric operation on one VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmOp {
    /// Shut the source VM down. `if_reachable`: an unreachable primary is
    /// not a failure (unplanned failover).
    ShutdownPrimary {
        if_reachable: bool,
    },
    /// Ship the last delta (planned failover: no data loss).
    SyncFinalDelta,
    /// Fail the replica over to a recovery point.
    Failover {
        recovery_point: RecoveryPoint,
    },
    /// Start the replica attached per the network mapping rules.
    StartReplica,
    /// Create a test VM from the replica on the replica's host, attached to
    /// the test network (or to none).
    CreateTestVm {
        network: Option<String>,
    },
    StartTestVm,
    DeleteTestVm,
    Commit,
    ChangeRecoveryPoint {
        recovery_point: RecoveryPoint,
    },
    ReverseReplicate,
    /// Undo an uncommitted failover.
    Rollback,
    /// Enable protection, 1: check what the replica needs (pairing, policy,
    /// a target host of the right OS, reachable sites).
    CheckPrerequisites,
    /// Enable protection, 2: create the replica VM on a host of the paired
    /// cloud (or adopt the replica that exists outside drplan).
    CreateReplica,
    /// Enable protection, 3: copy the VM's disks per the policy (network or
    /// offline); nothing to copy for an adopted replica.
    InitialReplication,
    /// Enable protection, 4: start delta replication; the VM is protected.
    FinalizeProtection,
    /// Disable protection, deleting the replica or keeping it.
    DisableProtection {
        delete_replica: bool,
    },
}

impl VmOp {
    /// A short stable name, used in step keys and idempotency keys.
    pub fn name(&self) -> &'static str {
        match self {
            VmOp::ShutdownPrimary { .. } => "shutdown-primary",
            VmOp::SyncFinalDelta => "sync-final-delta",
            VmOp::Failover { .. } => "failover",
            VmOp::StartReplica => "start-replica",
            VmOp::CreateTestVm { .. } => "create-test-vm",
            VmOp::StartTestVm => "start-test-vm",
            VmOp::DeleteTestVm => "delete-test-vm",
            VmOp::Commit => "commit",
            VmOp::ChangeRecoveryPoint { .. } => "change-recovery-point",
            VmOp::ReverseReplicate => "reverse-replicate",
            VmOp::Rollback => "rollback",
            VmOp::CheckPrerequisites => "prerequisites-check",
            VmOp::CreateReplica => "create-replica",
            VmOp::InitialReplication => "initial-replication",
            VmOp::FinalizeProtection => "finalize-protection",
            VmOp::DisableProtection { .. } => "disable-protection",
        }
    }

    /// Whether the operation touches a primary VM or replication. A test
    /// failover must never issue one of these.
    pub fn touches_production(&self) -> bool {
        !matches!(
            self,
            VmOp::CreateTestVm { .. } | VmOp::StartTestVm | VmOp::DeleteTestVm
        )
    }
}

/// Where a node sits in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pre,
    Vm,
    Post,
    /// Test cleanup steps (not in a group).
    Cleanup,
}

/// The phase of a failover a node belongs to ([`CompileLayout::Phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Primaries shut down (planned: front end first; unplanned: best effort).
    Shutdown,
    /// Final sync and failover of every VM (test: test VMs created).
    Failover,
    /// Group by group: `pre` steps, VM starts, `post` steps.
    Boot,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Shutdown => "shutdown",
            Stage::Failover => "failover",
            Stage::Boot => "boot",
        }
    }

    /// The phase a VM operation of a failover runs in.
    pub fn of(op: &VmOp) -> Stage {
        match op {
            VmOp::ShutdownPrimary { .. } => Stage::Shutdown,
            VmOp::StartReplica | VmOp::StartTestVm => Stage::Boot,
            _ => Stage::Failover,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A script, manual or wait step from the plan. Shared, not copied: a
    /// step is a few hundred bytes with its own allocations, and keeping it
    /// out of line keeps every node (most are VM operations) small.
    Step(#[serde(with = "arc_step")] Arc<Step>),
    /// A fabric operation on a VM.
    Vm { vm: String, op: VmOp },
}

/// Serde for `Arc<Step>` as a plain `Step` (serde's `rc` feature is not
/// enabled, and the serialized form must not depend on the sharing).
mod arc_step {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Step;

    pub fn serialize<S: Serializer>(step: &Arc<Step>, s: S) -> Result<S::Ok, S::Error> {
        Step::serialize(step, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Step>, D::Error> {
        Step::deserialize(d).map(Arc::new)
    }
}

/// One node of the execution DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecNode {
    pub id: StepId,
    /// Stable, human-readable key, unique in the plan:
    /// `GROUP/pre/STEP`, `GROUP/vm/VM/OP`, `GROUP/post/STEP`, `cleanup/STEP`.
    pub key: String,
    /// Index into [`Plan::groups`]; `None` for test cleanup steps.
    pub group: Option<usize>,
    pub phase: Phase,
    pub kind: NodeKind,
    /// Nodes that must finish first (ids are always lower than `id`).
    pub deps: Vec<StepId>,
    /// Failure does not fail the group (optional VM or step).
    pub optional: bool,
    /// The failover phase of the node; `None` outside a phased failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

impl ExecNode {
    /// The VM this node operates on, if any.
    pub fn vm(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Vm { vm, .. } => Some(vm),
            NodeKind::Step(_) => None,
        }
    }
}

/// A compiled plan: nodes in a deterministic topological order.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub operation: Operation,
    pub nodes: Vec<ExecNode>,
    /// The same DAG as a petgraph graph: node weight = [`StepId`], an edge
    /// `a -> b` means `b` waits for `a`. `NodeIndex::new(id)` is node `id`.
    pub graph: DiGraph<StepId, ()>,
}

impl ExecPlan {
    /// Every VM the operation touches, sorted and deduplicated.
    pub fn vms(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.nodes.iter().filter_map(|n| n.vm()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn node(&self, key: &str) -> Option<&ExecNode> {
        self.nodes.iter().find(|n| n.key == key)
    }
}

/// Builds the node list while keeping ids dense and dependencies explicit.
struct Builder {
    nodes: Vec<ExecNode>,
    /// The phase the nodes pushed now belong to.
    stage: Option<Stage>,
}

impl Builder {
    fn push(
        &mut self,
        key: String,
        group: Option<usize>,
        phase: Phase,
        kind: NodeKind,
        deps: Vec<StepId>,
        optional: bool,
    ) -> StepId {
        let id = self.nodes.len();
        debug_assert!(deps.iter().all(|d| *d < id));
        self.nodes.push(ExecNode {
            id,
            key,
            group,
            phase,
            kind,
            deps,
            optional,
            stage: self.stage,
        });
        id
    }

    /// Steps in sequence after `deps`; returns the new frontier. `prefix`
    /// is the key up to and including the last `/`.
    fn chain_steps(
        &mut self,
        prefix: &str,
        group: Option<usize>,
        phase: Phase,
        steps: &[Step],
        op: &Operation,
        mut frontier: Vec<StepId>,
    ) -> Vec<StepId> {
        for step in steps.iter().filter(|s| step_applies(s, op)) {
            let id = self.push(
                key(&[prefix, &step.name]),
                group,
                phase,
                NodeKind::Step(Arc::new(step.clone())),
                frontier,
                step.optional,
            );
            frontier = vec![id];
        }
        frontier
    }
}

impl Builder {
    /// One VM's `ops` in sequence after `deps` (keys `PREFIX VM/OP`, the
    /// prefix being `GROUP/vm/`); returns the new frontier (`deps` when
    /// `ops` is empty).
    fn vm_ops(
        &mut self,
        prefix: &str,
        group: usize,
        vm: &super::model::GroupVm,
        ops: &[VmOp],
        mut frontier: Vec<StepId>,
    ) -> Vec<StepId> {
        for vm_op in ops {
            let id = self.push(
                key(&[prefix, &vm.name, "/", vm_op.name()]),
                Some(group),
                Phase::Vm,
                NodeKind::Vm {
                    vm: vm.name.clone(),
                    op: vm_op.clone(),
                },
                frontier,
                vm.optional,
            );
            frontier = vec![id];
        }
        frontier
    }
}

/// Concatenate `parts` into a string allocated once at its exact size
/// (`format!` guesses the size and may grow the buffer several times; this
/// runs once per node, 40,000 times for a 10,000-VM plan).
fn key(parts: &[&str]) -> String {
    let mut k = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.push_str(p);
    }
    k
}

/// Whether a plan step runs for this operation. Group steps run for
/// failovers (per `when`); test cleanup steps run for the cleanup only.
fn step_applies(step: &Step, op: &Operation) -> bool {
    match op {
        Operation::Failover {
            kind, direction, ..
        } => step.when.applies(*kind, *direction),
        // The synthetic protection plan carries only the steps it needs
        // (the wait for a scheduled initial replication).
        Operation::EnableProtection => true,
        _ => false,
    }
}

/// The per-VM operation chain for an operation.
pub fn vm_chain(plan: &Plan, op: &Operation) -> Vec<VmOp> {
    match *op {
        Operation::Failover {
            kind: FailoverKind::Test,
            ..
        } => {
            vec![
                VmOp::CreateTestVm {
                    network: plan.test.network.clone(),
                },
                VmOp::StartTestVm,
            ]
        }
        Operation::Failover {
            kind: FailoverKind::Planned,
            ..
        } => vec![
            VmOp::ShutdownPrimary {
                if_reachable: false,
            },
            VmOp::SyncFinalDelta,
            VmOp::Failover {
                recovery_point: RecoveryPoint::Latest,
            },
            VmOp::StartReplica,
        ],
        Operation::Failover {
            kind: FailoverKind::Unplanned,
            recovery_point,
            shutdown_primary,
            ..
        } => {
            let mut ops = Vec::new();
            if shutdown_primary {
                ops.push(VmOp::ShutdownPrimary { if_reachable: true });
            }
            ops.push(VmOp::Failover { recovery_point });
            ops.push(VmOp::StartReplica);
            ops
        }
        Operation::TestCleanup => vec![VmOp::DeleteTestVm],
        Operation::Commit => vec![VmOp::Commit],
        Operation::ChangeRecoveryPoint { recovery_point } => {
            vec![VmOp::ChangeRecoveryPoint { recovery_point }]
        }
        Operation::ReverseReplicate => vec![VmOp::ReverseReplicate],
        Operation::Rollback => vec![VmOp::Rollback],
        Operation::EnableProtection => vec![
            VmOp::CheckPrerequisites,
            VmOp::CreateReplica,
            VmOp::InitialReplication,
            VmOp::FinalizeProtection,
        ],
        Operation::DisableProtection { delete_replica } => {
            vec![VmOp::DisableProtection { delete_replica }]
        }
    }
}

/// Compile `plan` for `op`. The plan is already validated (its group graph is
/// acyclic), so this cannot fail.
pub fn compile(plan: &Plan, op: Operation) -> ExecPlan {
    let chain = vm_chain(plan, &op);
    // Reserve the whole node list up front: growing a 40,000-node vector
    // moves every node several times. An upper bound (every step counted,
    // whatever its `when`) is close enough.
    let capacity = plan
        .groups
        .iter()
        .map(|g| g.pre.len() + g.post.len() + g.vms.len() * chain.len())
        .sum::<usize>()
        + plan.test.cleanup.len();
    let mut b = Builder {
        nodes: Vec::with_capacity(capacity),
        stage: None,
    };

    // Groups in a topological order of their `after` graph: file order when
    // it already is one (the common case), otherwise the earliest-in-file
    // ready group first, so the result depends only on the plan.
    let order = group_order(plan);
    match op {
        Operation::Failover { kind, .. } if plan.layout == CompileLayout::Phases => {
            compile_phases(&mut b, plan, &op, kind, &chain, &order);
        }
        _ => compile_groups(&mut b, plan, &op, &chain, &order),
    }

    if op == Operation::TestCleanup {
        // Cleanup steps run once every test VM is gone.
        let all: Vec<StepId> = (0..b.nodes.len()).collect();
        let mut frontier = all;
        for step in &plan.test.cleanup {
            let id = b.push(
                key(&["cleanup/", &step.name]),
                None,
                Phase::Cleanup,
                NodeKind::Step(Arc::new(step.clone())),
                frontier,
                step.optional,
            );
            frontier = vec![id];
        }
    }

    let edges = b.nodes.iter().map(|n| n.deps.len()).sum();
    let mut graph = DiGraph::with_capacity(b.nodes.len(), edges);
    for n in &b.nodes {
        graph.add_node(n.id);
    }
    for n in &b.nodes {
        for &d in &n.deps {
            graph.add_edge(NodeIndex::new(d), NodeIndex::new(n.id), ());
        }
    }
    ExecPlan {
        operation: op,
        nodes: b.nodes,
        graph,
    }
}

/// The per-group layout: each group's `pre` steps, its VMs' whole chains,
/// its `post` steps. A failover's group waits for the groups it comes after;
/// any other operation (commit, cleanup and the like) acts on every VM at
/// once: group order matters for starting machines, not for these.
fn compile_groups(b: &mut Builder, plan: &Plan, op: &Operation, chain: &[VmOp], order: &[usize]) {
    let is_failover = matches!(op, Operation::Failover { .. });
    let mut exits: Vec<Vec<StepId>> = vec![Vec::new(); plan.groups.len()];
    // Reused for every group: `GROUP/pre/`, `GROUP/vm/`, `GROUP/post/`.
    let mut prefix = String::new();
    for &g in order {
        let group = &plan.groups[g];
        let entry: Vec<StepId> = if is_failover {
            union(group.after.iter().map(|&d| exits[d].as_slice()))
        } else {
            Vec::new()
        };
        set_prefix(&mut prefix, &group.name, "/pre/");
        let after_pre = b.chain_steps(&prefix, Some(g), Phase::Pre, &group.pre, op, entry);
        set_prefix(&mut prefix, &group.name, "/vm/");
        let mut vm_tails = Vec::with_capacity(group.vms.len());
        for vm in &group.vms {
            let tail = b.vm_ops(&prefix, g, vm, chain, after_pre.clone());
            vm_tails.extend(tail);
        }
        let before_post = if group.vms.is_empty() {
            after_pre
        } else {
            vm_tails
        };
        set_prefix(&mut prefix, &group.name, "/post/");
        exits[g] = b.chain_steps(&prefix, Some(g), Phase::Post, &group.post, op, before_post);
    }
}

/// The phased layout of a failover (see the module documentation).
fn compile_phases(
    b: &mut Builder,
    plan: &Plan,
    op: &Operation,
    kind: FailoverKind,
    chain: &[VmOp],
    order: &[usize],
) {
    let n = plan.groups.len();
    let ops_in = |stage: Stage| -> Vec<VmOp> {
        chain
            .iter()
            .filter(|o| Stage::of(o) == stage)
            .cloned()
            .collect()
    };
    let (shutdown, failover, boot) = (
        ops_in(Stage::Shutdown),
        ops_in(Stage::Failover),
        ops_in(Stage::Boot),
    );
    // Planned: the Failover phase waits for every shutdown (front end down
    // before anything moves). Unplanned: a shutdown is best effort and the
    // primary site may be down: nothing but the VM's own start waits for it
    // (so that, where the primary still answers, it and the replica never
    // run at once).
    let planned = kind == FailoverKind::Planned;
    let mut prefix = String::new();
    // Per group, per VM: what its next phase must wait for.
    let mut vm_tails: Vec<Vec<Vec<StepId>>> = plan
        .groups
        .iter()
        .map(|g| vec![Vec::new(); g.vms.len()])
        .collect();

    // Shutdown. Planned: reverse dependency order, so the groups that come
    // after a group (its dependents) are emitted, and go down, first.
    b.stage = Some(Stage::Shutdown);
    let mut barrier: Vec<StepId> = Vec::new();
    if !shutdown.is_empty() {
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, g) in plan.groups.iter().enumerate() {
            for &d in &g.after {
                dependents[d].push(i);
            }
        }
        let mut exits: Vec<Vec<StepId>> = vec![Vec::new(); n];
        // The exit of the root group (no `after`) emitted last: roots go
        // down one after another, so the phase ends in one group and the
        // Failover phase waits on that group's shutdowns only (not on every
        // root's: a plan of many independent groups would otherwise need
        // roots × VMs edges).
        let mut last_root: Vec<StepId> = Vec::new();
        for &g in order.iter().rev() {
            let group = &plan.groups[g];
            let entry = if planned {
                let mut from: Vec<&[StepId]> =
                    dependents[g].iter().map(|&h| exits[h].as_slice()).collect();
                if group.after.is_empty() {
                    from.push(&last_root);
                }
                union(from)
            } else {
                Vec::new()
            };
            set_prefix(&mut prefix, &group.name, "/vm/");
            let mut group_exit = Vec::with_capacity(group.vms.len());
            for (v, vm) in group.vms.iter().enumerate() {
                let tail = b.vm_ops(&prefix, g, vm, &shutdown, entry.clone());
                group_exit.extend_from_slice(&tail);
                vm_tails[g][v] = tail;
            }
            exits[g] = if group.vms.is_empty() {
                entry
            } else {
                group_exit
            };
            if group.after.is_empty() {
                last_root = exits[g].clone();
            }
        }
        if planned {
            barrier = last_root;
        }
    }

    // Failover: every VM in parallel.
    b.stage = Some(Stage::Failover);
    if !failover.is_empty() {
        for &g in order {
            let group = &plan.groups[g];
            set_prefix(&mut prefix, &group.name, "/vm/");
            for (v, vm) in group.vms.iter().enumerate() {
                let tail = b.vm_ops(&prefix, g, vm, &failover, barrier.clone());
                let tails = &mut vm_tails[g][v];
                if planned {
                    // Its own shutdown is behind the barrier already.
                    tails.clear();
                }
                tails.extend(tail);
            }
        }
    }

    // Boot: group by group in dependency order, `pre` steps once the
    // group's VMs failed over, each VM's start, `post` steps.
    b.stage = Some(Stage::Boot);
    let mut exits: Vec<Vec<StepId>> = vec![Vec::new(); n];
    for &g in order {
        let group = &plan.groups[g];
        let entry = union(group.after.iter().map(|&d| exits[d].as_slice()));
        let tails = std::mem::take(&mut vm_tails[g]);
        set_prefix(&mut prefix, &group.name, "/pre/");
        let applies = group.pre.iter().any(|s| step_applies(s, op));
        let after_pre = if applies {
            let mut from: Vec<&[StepId]> = vec![&entry];
            from.extend(tails.iter().map(Vec::as_slice));
            let start = union(from);
            Some(b.chain_steps(&prefix, Some(g), Phase::Pre, &group.pre, op, start))
        } else {
            None
        };
        set_prefix(&mut prefix, &group.name, "/vm/");
        let mut started = Vec::with_capacity(group.vms.len());
        for (vm, own) in group.vms.iter().zip(&tails) {
            // After `pre` (which waited for every VM of the group), else
            // after the groups before and the VM's own failover.
            let deps = match &after_pre {
                Some(f) => f.clone(),
                None => union([entry.as_slice(), own.as_slice()]),
            };
            started.extend(b.vm_ops(&prefix, g, vm, &boot, deps));
        }
        let before_post = if group.vms.is_empty() {
            after_pre.unwrap_or(entry)
        } else {
            started
        };
        set_prefix(&mut prefix, &group.name, "/post/");
        exits[g] = b.chain_steps(&prefix, Some(g), Phase::Post, &group.post, op, before_post);
    }
    b.stage = None;
}

/// The sorted, deduplicated union of some lists of step ids.
fn union<'a>(lists: impl IntoIterator<Item = &'a [StepId]>) -> Vec<StepId> {
    let mut all: Vec<StepId> = lists.into_iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `prefix` = `group` + `tail`, reusing its buffer.
fn set_prefix(prefix: &mut String, group: &str, tail: &str) {
    prefix.clear();
    prefix.push_str(group);
    prefix.push_str(tail);
}

/// A deterministic topological order of the groups (Kahn's algorithm,
/// always taking the lowest file index that is ready).
pub fn group_order(plan: &Plan) -> Vec<usize> {
    let n = plan.groups.len();
    let mut indegree: Vec<usize> = plan.groups.iter().map(|g| g.after.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, g) in plan.groups.iter().enumerate() {
        for &d in &g.after {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        order.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    // A validated plan is acyclic; if not, the groups left out never run,
    // which the validator reports as a cycle before we get here.
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::generate::large_plan;

    fn operations() -> Vec<Operation> {
        vec![
            Operation::failover(FailoverKind::Test),
            Operation::failover(FailoverKind::Planned),
            Operation::failover(FailoverKind::Unplanned),
            Operation::Failover {
                kind: FailoverKind::Planned,
                direction: Direction::Reverse,
                recovery_point: RecoveryPoint::default(),
                shutdown_primary: true,
            },
            Operation::TestCleanup,
            Operation::Commit,
        ]
    }

    /// The keys built piecewise are the documented `GROUP/pre/STEP`,
    /// `GROUP/vm/VM/OP`, `GROUP/post/STEP`, `cleanup/STEP`, spelled out
    /// here independently with `format!`.
    #[test]
    fn keys_are_the_documented_ones() {
        let g = large_plan(40, 3, 7);
        let plan = &g.plan;
        for op in operations() {
            let exec = compile(plan, op);
            assert!(!exec.nodes.is_empty(), "{op}");
            for n in &exec.nodes {
                let group = n.group.map(|i| plan.groups[i].name.as_str());
                let expected = match (&n.kind, n.phase, group) {
                    (NodeKind::Step(s), Phase::Pre, Some(g)) => format!("{g}/pre/{}", s.name),
                    (NodeKind::Step(s), Phase::Post, Some(g)) => format!("{g}/post/{}", s.name),
                    (NodeKind::Step(s), Phase::Cleanup, None) => format!("cleanup/{}", s.name),
                    (NodeKind::Vm { vm, op }, Phase::Vm, Some(g)) => {
                        format!("{g}/vm/{vm}/{}", op.name())
                    }
                    other => panic!("unexpected node shape {other:?}"),
                };
                assert_eq!(n.key, expected);
                assert!(n.deps.iter().all(|&d| d < n.id), "{}", n.key);
            }
            let edges: usize = exec.nodes.iter().map(|n| n.deps.len()).sum();
            assert_eq!(exec.graph.edge_count(), edges);
        }
    }

    /// Sharing steps (`Arc<Step>`) changes nothing in the serialized form:
    /// a node reads back equal, and a step node is a plain step in JSON.
    #[test]
    fn nodes_serialize_as_plain_steps() {
        let g = large_plan(20, 2, 3);
        let exec = compile(&g.plan, Operation::failover(FailoverKind::Planned));
        let step_node = exec
            .nodes
            .iter()
            .find(|n| matches!(n.kind, NodeKind::Step(_)))
            .expect("the generated plan has steps");
        let NodeKind::Step(step) = &step_node.kind else {
            unreachable!()
        };
        let json = serde_json::to_value(&step_node.kind).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({ "Step": serde_json::to_value(&**step).expect("step") })
        );
        let text = serde_json::to_string(&exec.nodes).expect("serializes");
        let back: Vec<ExecNode> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, exec.nodes);
    }
}
