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
                at,
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
