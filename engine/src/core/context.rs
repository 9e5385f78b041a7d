//! What a job's transitions need to know about its plan: the compiled DAGs
//! and a few derived indexes, built once per job (not persisted: recompiling
//! the stored plan text gives the same numbering).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plan::compile::{ExecNode, ExecPlan, NodeKind, Operation, StepId, compile};
use crate::plan::model::{CommitPolicy, FailoverKind, MAX_TEST_DURATION, Plan};

use super::types::Millis;

/// Which chain a VM node belongs to: (cleanup part?, group, VM).
type ChainKey<'a> = (bool, Option<usize>, &'a str);

/// One VM's chain of operations in one part of the job (not necessarily a
/// dependency chain: see `JobContext::from_plans`).
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub vm: String,
    /// Step ids in chain order.
    pub steps: Vec<StepId>,
    pub cleanup: bool,
}

/// The compiled plans of a job plus the plan facts the core needs.
///
/// Step ids: `0..main.nodes.len()` are the main plan's nodes; for a test
/// failover the cleanup plan's nodes follow, shifted by `main.nodes.len()`.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub main: ExecPlan,
    /// The test cleanup plan (`compile(plan, Operation::TestCleanup)`); test
    /// failovers only.
    pub cleanup: Option<ExecPlan>,
    /// How long a test may stay open (at most [`MAX_TEST_DURATION`]).
    pub test_max_duration: Duration,
    pub commit: CommitPolicy,
    /// The cleanup plan's dependency lists, shifted into the job's
    /// numbering (the main plan's are its nodes' own).
    cleanup_deps: Vec<Vec<StepId>>,
    /// Step → its dependency class: steps with identical dependency lists
    /// share one (see `JobState::dep_cursor`).
    dep_class: Vec<u32>,
    /// Step → the steps that depend on it, by id: those of step `s` are
    /// `dependents[dependents_at[s]..dependents_at[s + 1]]` (one array, not
    /// a vector per step: a group join of 100 × 100 VMs is 10,000 edges).
    dependents_at: Vec<usize>,
    dependents: Vec<StepId>,
    chains: Vec<Chain>,
    /// Node → index into `chains`.
    chain_of: Vec<Option<u32>>,
    /// Cleanup chain index → the main chain of the same VM (test jobs).
    cleanup_source: BTreeMap<usize, usize>,
}

impl JobContext {
    /// Compile `plan` for `operation` (and its test cleanup, for tests).
    pub fn new(plan: &Plan, operation: Operation) -> JobContext {
        let main = compile(plan, operation);
        let cleanup = (operation.kind() == Some(FailoverKind::Test))
            .then(|| compile(plan, Operation::TestCleanup));
        JobContext::from_plans(main, cleanup, plan.test.max_duration, plan.commit)
    }

    /// Build from already compiled plans.
    pub fn from_plans(
        main: ExecPlan,
        cleanup: Option<ExecPlan>,
        test_max_duration: Duration,
        commit: CommitPolicy,
    ) -> JobContext {
        let n = main.nodes.len();
        let m = cleanup.as_ref().map_or(0, |c| c.nodes.len());
        let cleanup_deps: Vec<Vec<StepId>> = cleanup.as_ref().map_or_else(Vec::new, |c| {
            c.nodes
                .iter()
                .map(|x| x.deps.iter().map(|d| d + n).collect())
                .collect()
        });
        let deps = |id: StepId| deps_of(&main, &cleanup_deps, id);
        // Steps with identical dependency lists of two or more (a group
        // join gives the first operations of a group one list) share a
        // class; any other step is a class of its own (numbered by its id,
        // so the shared ones are numbered from n + m up).
        let mut classes: BTreeMap<&[StepId], u32> = BTreeMap::new();
        let dep_class: Vec<u32> = (0..n + m)
            .map(|id| {
                let ds = deps(id);
                if ds.len() < 2 {
                    return id as u32;
                }
                let next = (n + m + classes.len()) as u32;
                *classes.entry(ds).or_insert(next)
            })
            .collect();
        drop(classes);
        // Dependents: count, then fill in id order (so each step's list is
        // sorted by id, and a class's members sit together).
        let mut dependents_at = vec![0usize; n + m + 1];
        for id in 0..n + m {
            for &d in deps(id) {
                if d < n + m {
                    dependents_at[d + 1] += 1;
                }
            }
        }
        for i in 0..n + m {
            dependents_at[i + 1] += dependents_at[i];
        }
        let mut filled = dependents_at.clone();
        let mut dependents = vec![0; dependents_at[n + m]];
        for id in 0..n + m {
            for &d in deps(id) {
                if d < n + m {
                    dependents[filled[d]] = id;
                    filled[d] += 1;
                }
            }
        }
        drop(filled);

        // VM chains: a VM's operations in id order are its chain (compile
        // emits them in chain order). Per group they are consecutive; in a
        // phased failover they are spread over the phases (shutdown, then
        // failover, then start, each phase emitting every VM), and an
        // unplanned failover's failover does not even wait for the
        // shutdown. Either way a failed operation ends the rest of its VM's
        // chain (`SkipReason::ChainFailed`). Keyed by (part, group, vm).
        let mut chains: Vec<Chain> = Vec::new();
        let mut chain_of = vec![None; n + m];
        let mut index: BTreeMap<ChainKey<'_>, usize> = BTreeMap::new();
        let parts = [(false, &main.nodes, 0)]
            .into_iter()
            .chain(cleanup.as_ref().map(|c| (true, &c.nodes, n)));
        // The chain of the previous VM node: consecutive nodes of one VM
        // need no look-up (the index still decides for any other order).
        let mut last: Option<(ChainKey<'_>, usize)> = None;
        for (is_cleanup, nodes, offset) in parts {
            for node in nodes.iter() {
                if let NodeKind::Vm { vm, .. } = &node.kind {
                    let key = (is_cleanup, node.group, vm.as_str());
                    let c = match last {
                        Some((k, c)) if k == key => c,
                        _ => *index.entry(key).or_insert_with(|| {
                            chains.push(Chain {
                                vm: vm.clone(),
                                steps: Vec::new(),
                                cleanup: is_cleanup,
                            });
                            chains.len() - 1
                        }),
                    };
                    last = Some((key, c));
                    chains[c].steps.push(node.id + offset);
                    chain_of[node.id + offset] = Some(c as u32);
                }
            }
        }
        let mut cleanup_source = BTreeMap::new();
        for (&(is_cleanup, group, vm), &c) in &index {
            if is_cleanup && let Some(&src) = index.get(&(false, group, vm)) {
                cleanup_source.insert(c, src);
            }
        }
        JobContext {
            main,
            cleanup,
            test_max_duration: test_max_duration.min(MAX_TEST_DURATION),
            commit,
            cleanup_deps,
            dep_class,
            dependents_at,
            dependents,
            chains,
            chain_of,
            cleanup_source,
        }
    }

    /// Number of steps (main plus cleanup).
    pub fn len(&self) -> usize {
        self.main.nodes.len() + self.cleanup_deps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of main-plan steps; ids from here on are cleanup steps.
    pub fn main_len(&self) -> usize {
        self.main.nodes.len()
    }

    pub fn is_cleanup(&self, step: StepId) -> bool {
        step >= self.main_len()
    }

    /// The node of a step (ids in the job's numbering).
    pub fn node(&self, step: StepId) -> Option<&ExecNode> {
        let n = self.main_len();
        if step < n {
            self.main.nodes.get(step)
        } else {
            self.cleanup.as_ref()?.nodes.get(step - n)
        }
    }

    /// A step's dependencies, in the job's numbering.
    pub fn deps(&self, step: StepId) -> &[StepId] {
        deps_of(&self.main, &self.cleanup_deps, step)
    }

    /// The steps that depend on `step`, by id (so those of one dependency
    /// class, such as a group's first operations, are usually next to each
    /// other).
    pub fn dependents(&self, step: StepId) -> &[StepId] {
        &self.dependents[self.dependents_at[step]..self.dependents_at[step + 1]]
    }

    /// The dependency class of `step`: steps with the same dependency list
    /// of two or more have the same class; any other step's class is its
    /// own id (a number below twice the number of steps).
    pub fn dep_class(&self, step: StepId) -> usize {
        self.dep_class[step] as usize
    }

    pub fn is_test(&self) -> bool {
        self.main.operation.kind() == Some(FailoverKind::Test)
    }

    /// The test deadline in milliseconds.
    pub fn test_max_ms(&self) -> Millis {
        ms(self.test_max_duration)
    }

    pub(crate) fn chain(&self, step: StepId) -> Option<(usize, &Chain)> {
        let c = self.chain_of.get(step).copied().flatten()? as usize;
        Some((c, &self.chains[c]))
    }

    pub(crate) fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// For a cleanup chain, the main chain of the same VM.
    pub(crate) fn cleanup_source(&self, chain: usize) -> Option<&Chain> {
        self.cleanup_source.get(&chain).map(|&c| &self.chains[c])
    }
}

/// A step's dependencies in the job's numbering: a main step's are its
/// node's own, a cleanup step's the shifted copy in `cleanup_deps`.
fn deps_of<'a>(main: &'a ExecPlan, cleanup_deps: &'a [Vec<StepId>], step: StepId) -> &'a [StepId] {
    match main.nodes.get(step) {
        Some(node) => &node.deps,
        None => &cleanup_deps[step - main.nodes.len()],
    }
}

/// A duration in milliseconds, saturating (a validated plan never comes near).
pub(crate) fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
