//! Shared helpers for the core tests: plan builders and a tiny driver.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drplan_engine::core::*;
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::*;
use drplan_engine::store::JobId;

pub const T0: Millis = 1_700_000_000_000;

pub fn script(name: &str, retries: u32) -> Step {
    Step {
        name: name.into(),
        action: StepAction::Script {
            command: Command::Shell("true".into()),
            timeout: Duration::from_secs(60),
            retries,
            retry_delay: Duration::from_secs(10),
            env: BTreeMap::new(),
        },
        when: When::default(),
        optional: false,
    }
}

pub fn manual(name: &str, timeout: Option<Duration>, on_timeout: OnTimeout) -> Step {
    Step {
        name: name.into(),
        action: StepAction::Manual {
            instructions: "check it".into(),
            timeout,
            on_timeout,
        },
        when: When::default(),
        optional: false,
    }
}

pub fn wait(name: &str, secs: u64) -> Step {
    Step {
        name: name.into(),
        action: StepAction::Wait {
            duration: Duration::from_secs(secs),
        },
        when: When::default(),
        optional: false,
    }
}

pub fn group(
    name: &str,
    after: Vec<usize>,
    vms: &[(&str, bool)],
    pre: Vec<Step>,
    post: Vec<Step>,
) -> Group {
    Group {
        name: name.into(),
        after,
        vms: vms
            .iter()
            .map(|(n, o)| GroupVm {
                name: n.to_string(),
                optional: *o,
            })
            .collect(),
        pre,
        post,
    }
}

pub fn plan(groups: Vec<Group>, cleanup: Vec<Step>) -> Plan {
    Plan {
        name: "p".into(),
        description: None,
        source: CloudRef {
            site: "a".into(),
            cloud: "c".into(),
        },
        target: CloudRef {
            site: "b".into(),
            cloud: "c".into(),
        },
        base_dir: PathBuf::from("."),
        fabric_path: None,
        groups,
        test: TestSettings {
            network: Some("test-net".into()),
            max_duration: Duration::from_secs(3600),
            cleanup,
        },
        commit: CommitPolicy::Manual,
        layout: drplan_engine::plan::model::CompileLayout::default(),
    }
}

/// A plan of `groups` groups of `vms` VMs each, in a line, with a pre and a
/// post script per group.
pub fn big_plan(groups: usize, vms: usize) -> Plan {
    let gs = (0..groups)
        .map(|g| {
            let names: Vec<(String, bool)> =
                (0..vms).map(|v| (format!("vm-{g}-{v}"), false)).collect();
            let refs: Vec<(&str, bool)> = names.iter().map(|(n, o)| (n.as_str(), *o)).collect();
            group(
                &format!("g{g}"),
                if g == 0 { vec![] } else { vec![g - 1] },
                &refs,
                vec![script("pre", 0)],
                vec![script("post", 0)],
            )
        })
        .collect();
    plan(gs, vec![])
}

pub fn spec(ctx: &JobContext, op: Operation) -> JobSpec {
    JobSpec {
        id: JobId(7),
        plan_name: "p".into(),
        plan_hash: "h".into(),
        operation: op,
        requested_by: "alice".into(),
        vms: ctx.main.vms().iter().map(|s| s.to_string()).collect(),
        start_at: None,
        parent: None,
        left_alone: Vec::new(),
    }
}

pub fn planned() -> Operation {
    Operation::failover(FailoverKind::Planned)
}
pub fn unplanned() -> Operation {
    Operation::failover(FailoverKind::Unplanned)
}
pub fn test_op() -> Operation {
    Operation::failover(FailoverKind::Test)
}

/// A job being driven in a test: its state, its event log, everything it
/// emitted, and the time.
pub struct Job {
    pub ctx: JobContext,
    pub state: JobState,
    pub log: Vec<JobEvent>,
    pub effects: Vec<Effect>,
    pub now: Millis,
}

impl Job {
    pub fn submit(p: &Plan, op: Operation) -> Job {
        let ctx = JobContext::new(p, op);
        let ev = JobEvent::Submitted {
            spec: spec(&ctx, op),
            at: T0,
        };
        let (state, effects) = submit(&ctx, &ev).expect("submit");
        Job {
            ctx,
            state,
            log: vec![ev],
            effects,
            now: T0,
        }
    }

    /// Apply an event; on success log it and keep its effects.
    pub fn send(&mut self, ev: JobEvent) -> Result<Vec<Effect>, Rejected> {
        let fx = apply(&self.ctx, &mut self.state, &ev)?;
        self.log.push(ev);
        self.effects.extend(fx.iter().cloned());
        Ok(fx)
    }

    pub fn tick(&mut self, ms: Millis) -> Millis {
        self.now += ms;
        self.now
    }

    /// Steps currently running a script or VM operation: (step, attempt).
    pub fn running(&self) -> Vec<(usize, u32)> {
        self.state
            .active
            .iter()
            .filter_map(|&s| match self.state.steps[s].state {
                StepState::Running { attempt } if outside(&self.ctx, s) => Some((s, attempt)),
                _ => None,
            })
            .collect()
    }

    pub fn finish_all_ok(&mut self) {
        while let Some(&(step, attempt)) = self.running().first() {
            let at = self.tick(1000);
            self.send(JobEvent::StepFinished {
                step,
                attempt,
                outcome: Outcome::Succeeded,
                output_tail: None,
                values: Default::default(),
                at,
                warnings: Vec::new(),
                recovery_point: None,
            })
            .expect("outcome");
        }
    }
}

/// Whether a step runs outside (script or VM op) rather than on a timer or
/// an answer.
pub fn outside(ctx: &JobContext, step: usize) -> bool {
    use drplan_engine::plan::compile::NodeKind;
    match &ctx.node(step).unwrap().kind {
        NodeKind::Vm { .. } => true,
        NodeKind::Step(s) => matches!(s.action, StepAction::Script { .. }),
    }
}

// ---------------------------------------------------------------------------
// Random plans

use drplan_engine::plan::compile::RecoveryPoint;
use proptest::prelude::*;
use proptest::sample::subsequence;

fn arb_when() -> impl Strategy<Value = When> {
    (
        subsequence(FailoverKind::ALL.to_vec(), 0..=3),
        subsequence(vec![Direction::Forward, Direction::Reverse], 0..=2),
    )
        .prop_map(|(kinds, directions)| When { kinds, directions })
}

fn arb_action() -> impl Strategy<Value = StepAction> {
    prop_oneof![
        4 => (0u32..3, 1u64..30).prop_map(|(retries, delay)| StepAction::Script {
            command: Command::Shell("true".into()),
            timeout: Duration::from_secs(60),
            retries,
            retry_delay: Duration::from_secs(delay),
            env: BTreeMap::new(),
        }),
        2 => (proptest::option::of(1u64..600), any::<bool>()).prop_map(|(t, cont)| StepAction::Manual {
            instructions: "do it".into(),
            timeout: t.map(Duration::from_secs),
            on_timeout: if cont { OnTimeout::Continue } else { OnTimeout::Fail },
        }),
        1 => (1u64..600).prop_map(|s| StepAction::Wait { duration: Duration::from_secs(s) }),
    ]
}

fn arb_steps(prefix: &'static str, max: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (arb_action(), arb_when(), proptest::bool::weighted(0.2)),
        0..=max,
    )
    .prop_map(move |v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (action, when, optional))| Step {
                name: format!("{prefix}{i}"),
                action,
                when,
                optional,
            })
            .collect()
    })
}

/// Random group DAGs (each group after a random subset of earlier ones),
/// VMs with optional flags, pre/post steps of every kind with `when` sets,
/// test cleanup steps and a commit policy.
pub fn arb_plan() -> impl Strategy<Value = Plan> {
    let group = (
        any::<u8>(),
        proptest::collection::vec(proptest::bool::weighted(0.2), 0..=3),
        arb_steps("pre", 2),
        arb_steps("post", 2),
    );
    (
        proptest::collection::vec(group, 1..=4),
        arb_steps("clean", 2),
        0u8..3,
        1u64..10,
    )
        .prop_map(|(gs, cleanup, commit, hours)| {
            let groups = gs
                .into_iter()
                .enumerate()
                .map(|(g, (mask, vms, pre, post))| Group {
                    name: format!("g{g}"),
                    after: (0..g).filter(|d| mask & (1 << d) != 0).collect(),
                    vms: vms
                        .into_iter()
                        .enumerate()
                        .map(|(i, optional)| GroupVm {
                            name: format!("vm{g}{i}"),
                            optional,
                        })
                        .collect(),
                    pre,
                    post,
                })
                .collect();
            let mut p = plan(groups, cleanup);
            p.test.max_duration = Duration::from_secs(hours * 3600);
            p.commit = match commit {
                0 => CommitPolicy::Manual,
                1 => CommitPolicy::AutoCommit {
                    after: Duration::from_secs(600),
                },
                _ => CommitPolicy::AutoRollback {
                    after: Duration::from_secs(600),
                },
            };
            p
        })
}

pub fn arb_operation() -> impl Strategy<Value = Operation> {
    let dir = prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)];
    let rp = prop_oneof![
        Just(RecoveryPoint::LatestProcessed),
        Just(RecoveryPoint::Latest),
        Just(RecoveryPoint::LatestAppConsistent),
        (0u64..1_000_000).prop_map(RecoveryPoint::At),
    ];
    prop_oneof![
        4 => (
            prop_oneof![
                Just(FailoverKind::Test),
                Just(FailoverKind::Planned),
                Just(FailoverKind::Unplanned)
            ],
            dir,
            rp.clone(),
            any::<bool>()
        )
            .prop_map(|(kind, direction, recovery_point, shutdown_primary)| {
                Operation::Failover {
                    kind,
                    direction,
                    recovery_point,
                    shutdown_primary,
                }
            }),
        1 => prop_oneof![
            Just(Operation::Commit),
            Just(Operation::Rollback),
            Just(Operation::ReverseReplicate),
            rp.prop_map(|recovery_point| Operation::ChangeRecoveryPoint { recovery_point }),
            Just(Operation::EnableProtection),
            any::<bool>().prop_map(|delete_replica| Operation::DisableProtection { delete_replica }),
        ],
    ]
}

/// The item state a VM must be in for `op` (what check_operation accepts).
pub fn initial_item(op: &Operation) -> ItemState {
    match *op {
        Operation::Failover { direction, .. } => ItemState::Protected { direction },
        Operation::TestCleanup => ItemState::TestAwaitingCleanup {
            direction: Direction::Forward,
        },
        Operation::Commit | Operation::ChangeRecoveryPoint { .. } | Operation::Rollback => {
            ItemState::FailedOver {
                direction: Direction::Forward,
                recovery_point: RecoveryPoint::Latest,
            }
        }
        Operation::ReverseReplicate => ItemState::Committed {
            direction: Direction::Forward,
        },
        Operation::EnableProtection => ItemState::Unprotected,
        Operation::DisableProtection { .. } => ItemState::Protected {
            direction: Direction::Forward,
        },
    }
}

pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
