//! The RTO estimate: the longest path through a compiled plan, each node
//! weighted by the best figure available for it.
//!
//! Figures, best first (see docs/operator-estimate.md):
//! - VM operations: the median of this operation on this VM in past jobs of
//!   the plan; else the median of this operation on any VM; else the
//!   simulated fabric's configured latency (`SimConfig`).
//! - Scripts: the median of the step's successful attempts; else its
//!   timeout (an upper bound: a script that took longer would have failed).
//! - Manual steps: the median prompt-to-answer delay; else the assumed
//!   operator delay, at most the step's timeout.
//! - Waits: their duration, exactly.
//!
//! The estimate assumes every step succeeds at its first attempt and that
//! nothing limits parallelism; the simulation (`analysis::simulate`) runs
//! the real engine instead, with its concurrency cap and error policy.

use std::time::Duration;

use serde::Serialize;

use super::history::{Measurements, median};
use crate::fabric::{OpKind, SimConfig};
use crate::plan::compile::{ExecNode, ExecPlan, NodeKind, Phase, StepId};
use crate::plan::model::StepAction;

/// Where a figure comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum Basis {
    /// The median of this operation on this VM.
    MeasuredVm { samples: usize },
    /// The median of this operation over every VM (none measured on this one).
    MeasuredOp { samples: usize },
    /// The median of this step's successful attempts / answers.
    MeasuredStep { samples: usize },
    /// The simulated fabric's configured latency for the operation.
    FabricLatency,
    /// A script's timeout: the longest a successful attempt can take.
    ScriptTimeout,
    /// The assumed operator delay for a manual step.
    OperatorDelay,
    /// The step's timeout, when shorter than the assumed operator delay.
    ManualTimeout,
    /// A wait step's own duration.
    PlanWait,
}

impl Basis {
    pub fn is_measured(&self) -> bool {
        matches!(
            self,
            Basis::MeasuredVm { .. } | Basis::MeasuredOp { .. } | Basis::MeasuredStep { .. }
        )
    }

    /// For people: "measured, median of 3 runs on this VM", "assumed: ...".
    pub fn describe(&self) -> String {
        let runs = |n: &usize| crate::text::count(n, "run");
        match self {
            Basis::MeasuredVm { samples } => {
                format!("measured: median of {} on this VM", runs(samples))
            }
            Basis::MeasuredOp { samples } => {
                format!(
                    "measured: median of {} of this operation on other VMs",
                    runs(samples)
                )
            }
            Basis::MeasuredStep { samples } => format!("measured: median of {}", runs(samples)),
            Basis::FabricLatency => "assumed: the simulated fabric's latency".into(),
            Basis::ScriptTimeout => "assumed: the script's timeout (an upper bound)".into(),
            Basis::OperatorDelay => "assumed: operator delay".into(),
            Basis::ManualTimeout => {
                "assumed: the step's timeout (shorter than the operator delay)".into()
            }
            Basis::PlanWait => "the plan's wait".into(),
        }
    }
}

/// A duration and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Figure {
    pub ms: u64,
    #[serde(flatten)]
    pub basis: Basis,
}

/// Everything the estimate (and the simulation) knows about durations.
#[derive(Debug, Clone)]
pub struct DurationModel {
    pub measured: Measurements,
    /// The fallback latencies (its `latency(op)`, unscaled).
    pub fabric: SimConfig,
    /// Multiplies the fabric's latencies and the plan's waits, like
    /// `drplan run --time-scale` does, so an estimate can be compared with
    /// runs made at that scale. 1.0 = realistic.
    pub time_scale: f64,
    /// How long an operator takes to answer a manual step.
    pub operator_delay: Duration,
}

/// The operator delay assumed when none is given.
pub const DEFAULT_OPERATOR_DELAY: Duration = Duration::from_secs(5 * 60);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl DurationModel {
    /// No history: every figure assumed.
    pub fn assumed() -> DurationModel {
        DurationModel {
            measured: Measurements::default(),
            fabric: SimConfig::default(),
            time_scale: 1.0,
            operator_delay: DEFAULT_OPERATOR_DELAY,
        }
    }

    fn scaled(&self, d: Duration) -> u64 {
        ms(d.mul_f64(self.time_scale))
    }

    /// The figure for one node of a compiled plan.
    pub fn figure(&self, node: &ExecNode) -> Figure {
        match &node.kind {
            NodeKind::Vm { vm, op } => {
                let name = op.name();
                if let Some(s) = self.measured.vm_ops.get(&(name.to_string(), vm.clone()))
                    && let Some(m) = median(s)
                {
                    return Figure {
                        ms: m,
                        basis: Basis::MeasuredVm { samples: s.len() },
                    };
                }
                if let Some(s) = self.measured.ops.get(name)
                    && let Some(m) = median(s)
                {
                    return Figure {
                        ms: m,
                        basis: Basis::MeasuredOp { samples: s.len() },
                    };
                }
                let latency = OpKind::parse(name)
                    .map(|k| self.fabric.latency(k))
                    .unwrap_or_default();
                Figure {
                    ms: self.scaled(latency),
                    basis: Basis::FabricLatency,
                }
            }
            NodeKind::Step(step) => match &step.action {
                StepAction::Wait { duration } => Figure {
                    ms: self.scaled(*duration),
                    basis: Basis::PlanWait,
                },
                StepAction::Script { timeout, .. } => {
                    match self
                        .measured
                        .scripts
                        .get(&node.key)
                        .and_then(|s| Some((median(s)?, s.len())))
                    {
                        Some((m, n)) => Figure {
                            ms: m,
                            basis: Basis::MeasuredStep { samples: n },
                        },
                        None => Figure {
                            ms: ms(*timeout),
                            basis: Basis::ScriptTimeout,
                        },
                    }
                }
                StepAction::Manual { timeout, .. } => {
                    match self
                        .measured
                        .manual
                        .get(&node.key)
                        .and_then(|s| Some((median(s)?, s.len())))
                    {
                        Some((m, n)) => Figure {
                            ms: m,
                            basis: Basis::MeasuredStep { samples: n },
                        },
                        None => match timeout {
                            Some(t) if *t < self.operator_delay => Figure {
                                ms: ms(*t),
                                basis: Basis::ManualTimeout,
                            },
                            _ => Figure {
                                ms: ms(self.operator_delay),
                                basis: Basis::OperatorDelay,
                            },
                        },
                    }
                }
            },
        }
    }
}

/// One node of the estimate.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEstimate {
    pub step: StepId,
    pub key: String,
    /// Offsets from the job's start, in milliseconds.
    pub start_ms: u64,
    pub finish_ms: u64,
    #[serde(flatten)]
    pub figure: Figure,
}

/// The estimate of one compiled plan.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub nodes: Vec<NodeEstimate>,
    /// The recovery time: from the start until the last required VM is
    /// running (its last operation done). `None` when the plan has no
    /// required VM.
    pub rto_ms: Option<u64>,
    /// The chain that determines the RTO, first node first.
    pub rto_path: Vec<StepId>,
    /// Until the plan's last step is done.
    pub total_ms: u64,
    /// The chain that determines the total, first node first.
    pub critical_path: Vec<StepId>,
}

impl Estimate {
    /// Whether every figure on the critical path and the RTO path was measured.
    pub fn count_measured(&self) -> (usize, usize) {
        let measured = self
            .nodes
            .iter()
            .filter(|n| n.figure.basis.is_measured())
            .count();
        (measured, self.nodes.len())
    }
}

/// The last node of every required VM's operation chain.
pub fn required_vm_tails(plan: &ExecPlan) -> Vec<StepId> {
    let mut last: std::collections::BTreeMap<&str, StepId> = Default::default();
    for n in &plan.nodes {
        if n.phase == Phase::Vm
            && !n.optional
            && let Some(vm) = n.vm()
        {
            // Chains are numbered in order, so the highest id is the tail.
            last.insert(vm, n.id);
        }
    }
    last.into_values().collect()
}

/// The longest path through `plan` with `model`'s figures.
pub fn estimate(plan: &ExecPlan, model: &DurationModel) -> Estimate {
    let n = plan.nodes.len();
    let mut nodes = Vec::with_capacity(n);
    let mut finish = vec![0u64; n];
    // The dependency that finished last: the critical predecessor.
    let mut pred: Vec<Option<StepId>> = vec![None; n];
    for node in &plan.nodes {
        // Dependencies have lower ids (compile's guarantee), so one pass in
        // id order sees every dependency's finish first.
        for &d in &node.deps {
            if pred[node.id].is_none_or(|p| finish[d] > finish[p]) {
                pred[node.id] = Some(d);
            }
        }
        let start = pred[node.id].map_or(0, |p| finish[p]);
        let figure = model.figure(node);
        finish[node.id] = start.saturating_add(figure.ms);
        nodes.push(NodeEstimate {
            step: node.id,
            key: node.key.clone(),
            start_ms: start,
            finish_ms: finish[node.id],
            figure,
        });
    }
    let path_to = |end: StepId| {
        let mut p = vec![end];
        let mut at = end;
        while let Some(d) = pred[at] {
            p.push(d);
            at = d;
        }
        p.reverse();
        p
    };
    // Ties go to the lowest id: deterministic.
    let last = (0..n).max_by_key(|&i| (finish[i], std::cmp::Reverse(i)));
    let rto_end = required_vm_tails(plan)
        .into_iter()
        .max_by_key(|&i| (finish[i], std::cmp::Reverse(i)));
    Estimate {
        rto_ms: rto_end.map(|i| finish[i]),
        rto_path: rto_end.map(path_to).unwrap_or_default(),
        total_ms: last.map(|i| finish[i]).unwrap_or(0),
        critical_path: last.map(path_to).unwrap_or_default(),
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::{Operation, compile};
    use crate::plan::model::{FailoverKind, Plan};

    fn three_tier() -> Plan {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/three-tier.yaml");
        crate::plan::load(&path, None)
            .plan
            .expect("the shipped plan loads")
    }

    /// An optional VM is never where the RTO is reached, but a slow one
    /// still delays it: the groups after it wait for its chain.
    #[test]
    fn a_slow_optional_vm_delays_the_groups_after_it() {
        let exec = compile(&three_tier(), Operation::failover(FailoverKind::Unplanned));
        let mut model = DurationModel::assumed();
        let fast = estimate(&exec, &model);
        model.measured.vm_ops.insert(
            ("start-replica".into(), "app-03".into()),
            vec![3_600_000, 3_600_000, 1],
        );
        let slow = estimate(&exec, &model);
        let delta = 3_600_000 - 60_000;
        assert_eq!(slow.rto_ms, fast.rto_ms.map(|r| r + delta));
        assert_eq!(slow.total_ms, fast.total_ms + delta);
        let keys =
            |p: &[StepId]| -> Vec<&str> { p.iter().map(|&i| exec.nodes[i].key.as_str()).collect() };
        let rto_path = keys(&slow.rto_path);
        assert!(rto_path.contains(&"application/vm/app-03/start-replica"));
        assert!(
            rto_path.last().unwrap().starts_with("web/vm/web-0"),
            "{rto_path:?}"
        );
        assert!(!keys(&fast.rto_path).iter().any(|k| k.contains("app-03")));
        let n = exec.node("application/vm/app-03/start-replica").unwrap().id;
        assert_eq!(slow.nodes[n].figure.basis, Basis::MeasuredVm { samples: 3 });
        // Other VMs' start-replica: no per-operation samples were added, so
        // they stay assumed.
        let n = exec.node("application/vm/app-01/start-replica").unwrap().id;
        assert_eq!(slow.nodes[n].figure.basis, Basis::FabricLatency);
    }

    #[test]
    fn the_rto_path_ends_at_the_last_required_vm() {
        let exec = compile(&three_tier(), Operation::failover(FailoverKind::Planned));
        let e = estimate(&exec, &DurationModel::assumed());
        let end = *e.rto_path.last().unwrap();
        assert!(required_vm_tails(&exec).contains(&end));
        assert_eq!(Some(e.nodes[end].finish_ms), e.rto_ms);
        assert_eq!(
            e.nodes[*e.critical_path.last().unwrap()].finish_ms,
            e.total_ms
        );
        // Each path is a dependency chain.
        for w in e.critical_path.windows(2) {
            assert!(exec.nodes[w[1]].deps.contains(&w[0]));
        }
    }
}
