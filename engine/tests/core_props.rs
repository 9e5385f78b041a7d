//! Property tests of the job machine (proptest-state-machine): random plans ×
//! random step outcomes × operator actions × timer firings (early ones too)
//! × illegal events, checked after every transition against a small
//! reference model of the rules (the `oracle_*` functions below, written
//! from the rules, not from the implementation), and driven to the end in
//! `teardown` to check the terminal guarantees.

mod core_support;

use std::collections::{BTreeMap, BTreeSet};

use core_support::*;
use drplan_engine::core::item;
use drplan_engine::core::*;
use drplan_engine::plan::compile::{NodeKind, Operation};
use drplan_engine::plan::model::{CommitPolicy, FailoverKind, Plan};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

#[derive(Clone, Debug)]
pub struct Scenario {
    plan: Plan,
    op: Operation,
    scheduled: bool,
    /// Start the items in the other state the operation accepts (a failed
    /// failover, for a retry or a rollback).
    alt_items: bool,
}

/// The reference state: the scenario plus a coarse model of the job's phase,
/// which biases what is generated next.
#[derive(Clone, Debug)]
pub struct RefState {
    sc: Scenario,
    started: bool,
    closed: bool,
}

#[derive(Clone, Debug)]
pub enum Act {
    Start,
    StartNow,
    Finish {
        pick: u8,
        outcome: u8,
    },
    Answer {
        pick: u8,
        done: bool,
    },
    Fire {
        pick: u8,
        early: bool,
    },
    Retry {
        pick: u8,
    },
    Skip {
        pick: u8,
    },
    Cancel,
    CompleteTest,
    /// An outcome for a step/attempt that is not running (usually).
    Stale {
        pick: u8,
        attempt: u8,
    },
    UnknownStep,
    Resubmit,
}

pub struct CoreMachine;

impl ReferenceStateMachine for CoreMachine {
    type State = RefState;
    type Transition = Act;

    fn init_state() -> BoxedStrategy<RefState> {
        (
            arb_plan(),
            arb_operation(),
            proptest::bool::weighted(0.25),
            any::<bool>(),
        )
            .prop_map(|(plan, op, scheduled, alt_items)| RefState {
                sc: Scenario {
                    plan,
                    op,
                    scheduled,
                    alt_items,
                },
                started: false,
                closed: false,
            })
            .boxed()
    }

    fn transitions(state: &RefState) -> BoxedStrategy<Act> {
        let p = any::<u8>();
        if !state.started {
            return prop_oneof![
                8 => Just(Act::Start),
                4 => Just(Act::StartNow),
                4 => (p, any::<bool>()).prop_map(|(pick, early)| Act::Fire { pick, early }),
                1 => Just(Act::Cancel),
                1 => Just(Act::CompleteTest),
                1 => (p, any::<u8>()).prop_map(|(pick, attempt)| Act::Stale { pick, attempt }),
                1 => Just(Act::Resubmit),
            ]
            .boxed();
        }
        prop_oneof![
            30 => (p, any::<u8>()).prop_map(|(pick, outcome)| Act::Finish { pick, outcome }),
            6 => (p, proptest::bool::weighted(0.8)).prop_map(|(pick, done)| Act::Answer { pick, done }),
            8 => (p, proptest::bool::weighted(0.2)).prop_map(|(pick, early)| Act::Fire { pick, early }),
            4 => p.prop_map(|pick| Act::Retry { pick }),
            3 => p.prop_map(|pick| Act::Skip { pick }),
            1 => Just(Act::Cancel),
            1 => Just(Act::CompleteTest),
            1 => (p, any::<u8>()).prop_map(|(pick, attempt)| Act::Stale { pick, attempt }),
            1 => Just(Act::UnknownStep),
            1 => Just(Act::Resubmit),
            1 => Just(Act::Start),
        ]
        .boxed()
    }

    fn apply(mut state: RefState, act: &Act) -> RefState {
        match act {
            Act::Start | Act::StartNow | Act::Fire { .. } => state.started = true,
            Act::CompleteTest => state.closed = true,
            _ => {}
        }
        state
    }
}

/// The system under test plus everything observed from its effects.
pub struct Sut {
    job: Job,
    op: Operation,
    /// (step, attempt) of every run effect issued.
    issued: BTreeSet<(usize, u32)>,
    /// Timers as the store's index would hold them (from effects only).
    timers: BTreeMap<TimerId, Millis>,
    releases: usize,
    finished: usize,
    follow_ups: usize,
    items: BTreeMap<String, ItemState>,
    forced_at: Option<Millis>,
}

fn is_planned(op: &Operation) -> bool {
    op.kind() == Some(FailoverKind::Planned)
}

/// Reference rule: may `dep` (final or not) let its dependents start?
fn oracle_dep_done(job: &Job, op: &Operation, dep: usize) -> bool {
    let node = job.ctx.node(dep).unwrap();
    let s = &job.state.steps[dep].state;
    let done = !matches!(
        s,
        StepState::Pending
            | StepState::Running { .. }
            | StepState::RetryWaiting { .. }
            | StepState::AwaitingOperator { .. }
    );
    if !done {
        return false;
    }
    if is_planned(op) && !job.ctx.is_cleanup(dep) && !node.optional {
        matches!(s, StepState::Succeeded { .. } | StepState::Skipped { .. })
    } else {
        true
    }
}

fn oracle_halted(job: &Job) -> bool {
    job.state.steps.iter().any(|r| {
        matches!(
            r.state,
            StepState::AwaitingOperator {
                reason: AwaitReason::Failed { .. },
                ..
            }
        )
    })
}

/// Reference rule: a required step that failed or was skipped by an
/// operator after failing is an error.
fn oracle_error(s: &StepState) -> bool {
    matches!(
        s,
        StepState::Failed { .. }
            | StepState::TimedOut { .. }
            | StepState::Skipped {
                reason: SkipReason::Operator { .. }
            }
    )
}

impl Sut {
    fn new(sc: &Scenario) -> Sut {
        let ctx = JobContext::new(&sc.plan, sc.op);
        let mut spec = spec(&ctx, sc.op);
        if sc.scheduled {
            spec.start_at = Some(T0 + 5_000);
        }
        let ev = JobEvent::Submitted { spec, at: T0 };
        let (state, effects) = submit(&ctx, &ev).expect("a valid submission is accepted");
        let items = ctx
            .main
            .vms()
            .into_iter()
            .map(|v| {
                let st = match sc.op {
                    Operation::Failover {
                        kind: FailoverKind::Planned | FailoverKind::Unplanned,
                        direction,
                        ..
                    } if sc.alt_items => ItemState::FailoverFailed { direction },
                    Operation::Rollback if sc.alt_items => ItemState::FailoverFailed {
                        direction: drplan_engine::plan::model::Direction::Forward,
                    },
                    _ => initial_item(&sc.op),
                };
                item::check_operation(v, &st, &sc.op).expect("initial item fits the operation");
                (v.to_string(), st)
            })
            .collect();
        let mut sut = Sut {
            job: Job {
                ctx,
                state,
                log: vec![ev],
                effects: Vec::new(),
                now: T0,
            },
            op: sc.op,
            issued: BTreeSet::new(),
            timers: BTreeMap::new(),
            releases: 0,
            finished: 0,
            follow_ups: 0,
            items,
            forced_at: None,
        };
        sut.observe(None, &sut.job.state.clone(), &effects);
        sut
    }

    /// Send an event; check that a rejection changes nothing and that an
    /// accepted event's effects obey the rules.
    fn send(&mut self, ev: JobEvent) -> Result<(), Rejected> {
        let before = self.job.state.clone();
        match apply(&self.job.ctx, &mut self.job.state, &ev) {
            Err(e) => {
                assert_eq!(
                    self.job.state, before,
                    "a rejected event ({e}) changed the state"
                );
                assert!(!e.to_string().is_empty());
                Err(e)
            }
            Ok(fx) => {
                self.job.log.push(ev.clone());
                self.observe(Some((&ev, &before)), &before, &fx);
                self.job.effects.extend(fx);
                Ok(())
            }
        }
    }

    fn observe(&mut self, ev: Option<(&JobEvent, &JobState)>, before: &JobState, fx: &[Effect]) {
        let job = &self.job;
        let st = &job.state;
        let ctx = &job.ctx;
        if let Some((JobEvent::TimerFired { timer, at }, prev)) = ev {
            let due = prev.timers[timer];
            assert!(*at >= due, "timer {timer} fired early");
            assert!(self.timers.remove(timer).is_some());
            if *timer == TimerId::TestDeadline {
                assert!(self.forced_at.is_none());
                self.forced_at = Some(*at);
                let t = st.test.as_ref().expect("a forced end records the closure");
                assert!(t.forced && t.at == *at && t.notes.starts_with("forcibly ended"));
            }
        }
        let is_test = self.op.kind() == Some(FailoverKind::Test);
        for e in fx {
            match e {
                Effect::RunVmOp {
                    step, attempt, key, ..
                }
                | Effect::RunScript { step, attempt, key } => {
                    assert!(
                        self.issued.insert((*step, *attempt)),
                        "step {step} attempt {attempt} issued twice"
                    );
                    let node = ctx.node(*step).unwrap();
                    assert_eq!(key.to_string(), format!("7/{}/{attempt}", node.key));
                    assert_eq!(
                        st.steps[*step].state,
                        StepState::Running { attempt: *attempt }
                    );
                    if *attempt == 1 {
                        assert_eq!(before.steps[*step].state, StepState::Pending);
                    } else {
                        assert_eq!(before.steps[*step].state.attempt(), attempt - 1);
                    }
                    if let Effect::RunVmOp { op, vm, .. } = e {
                        assert!(
                            !(is_test && op.touches_production()),
                            "a test failover touched production: {op:?} on {vm}"
                        );
                        assert!(matches!(&node.kind, NodeKind::Vm { op: o, .. } if o == op));
                    }
                }
                Effect::AwaitOperator { step } => {
                    assert!(matches!(
                        st.steps[*step].state,
                        StepState::AwaitingOperator { .. }
                    ));
                }
                Effect::CancelStep { step, attempt } => {
                    assert_eq!(
                        st.steps[*step].state,
                        StepState::Running { attempt: *attempt }
                    );
                    assert!(matches!(st.mode, Mode::Cancelling { .. }));
                }
                Effect::ArmTimer { timer, due } => {
                    assert!(
                        self.timers.insert(*timer, *due).is_none(),
                        "{timer} armed twice"
                    );
                }
                Effect::DisarmTimer { timer, due } => {
                    assert_eq!(
                        self.timers.remove(timer),
                        Some(*due),
                        "{timer} was not armed"
                    );
                }
                Effect::ReleaseLeases => self.releases += 1,
                Effect::Item { vm, event } => {
                    let cur = self.items[vm];
                    let next = item::transition(&cur, event)
                        .unwrap_or_else(|e| panic!("illegal item event for {vm}: {e}"));
                    self.items.insert(vm.clone(), next);
                }
                Effect::ScheduleFollowUp { .. } => self.follow_ups += 1,
                Effect::Finished { status } => {
                    self.finished += 1;
                    assert_eq!(*status, st.status());
                    assert!(status.is_terminal());
                }
            }
        }
        // New steps start only when the reference rules allow it.
        for e in fx {
            if let Effect::RunVmOp {
                step, attempt: 1, ..
            }
            | Effect::RunScript {
                step, attempt: 1, ..
            } = e
            {
                self.check_may_start(*step);
            }
        }
        for (s, r) in st.steps.iter().enumerate() {
            let fresh = before.steps[s].state == StepState::Pending
                && matches!(
                    r.state,
                    StepState::AwaitingOperator {
                        reason: AwaitReason::Manual,
                        ..
                    } | StepState::Running { .. }
                );
            if fresh {
                self.check_may_start(s);
            }
        }
        self.check_state();
    }

    fn check_may_start(&self, step: usize) {
        let job = &self.job;
        for &d in &job.ctx.node(step).unwrap().deps {
            let d = if job.ctx.is_cleanup(step) {
                d + job.ctx.main_len()
            } else {
                d
            };
            assert!(
                oracle_dep_done(job, &self.op, d),
                "step {step} started before its dependency {d} allowed it ({:?})",
                job.state.steps[d].state
            );
        }
        if job.ctx.is_cleanup(step) {
            assert_eq!(job.state.mode, Mode::CleaningUp);
        } else {
            assert_eq!(job.state.mode, Mode::Running);
            assert!(
                !oracle_halted(job),
                "step {step} started while the plan is halted"
            );
        }
    }

    /// Invariants of any state.
    fn check_state(&self) {
        let job = &self.job;
        let st = &job.state;
        assert_eq!(
            self.timers, st.timers,
            "effects and state disagree on timers"
        );
        let active: BTreeSet<usize> = (0..st.steps.len())
            .filter(|&s| !st.steps[s].state.is_final() && st.steps[s].state != StepState::Pending)
            .collect();
        assert_eq!(active, st.active);
        // Eagerness: while nothing blocks, no step that the rules allow to
        // start is left waiting.
        let phase = match st.mode {
            Mode::Running if !oracle_halted(job) => Some(false),
            Mode::CleaningUp => Some(true),
            _ => None,
        };
        if let Some(cleanup) = phase {
            for s in 0..st.steps.len() {
                if st.steps[s].state != StepState::Pending || job.ctx.is_cleanup(s) != cleanup {
                    continue;
                }
                let node = job.ctx.node(s).unwrap();
                let off = if cleanup { job.ctx.main_len() } else { 0 };
                let ready = node
                    .deps
                    .iter()
                    .all(|&d| oracle_dep_done(job, &self.op, d + off));
                assert!(!ready, "step {} could start but was left pending", node.key);
            }
        }
        // Every attempt that runs outside was issued (exactly once: `observe`
        // refuses a second issue).
        for (s, r) in st.steps.iter().enumerate() {
            let a = r.state.attempt();
            if a > 0 && outside(&job.ctx, s) && !matches!(r.state, StepState::Skipped { .. }) {
                assert!(
                    self.issued.contains(&(s, a)),
                    "step {s} attempt {a} never issued"
                );
            }
        }
        // Every step waiting on a timer has it armed, and only those.
        for (s, r) in st.steps.iter().enumerate() {
            if let StepState::RetryWaiting { attempt, .. } = r.state {
                assert!(st.timers.contains_key(&TimerId::Retry { step: s, attempt }));
            }
        }
        for t in st.timers.keys() {
            match *t {
                TimerId::Retry { step, attempt } => assert!(matches!(
                    st.steps[step].state,
                    StepState::RetryWaiting { attempt: a, .. } if a == attempt
                )),
                TimerId::ManualTimeout { step } => assert!(matches!(
                    st.steps[step].state,
                    StepState::AwaitingOperator {
                        reason: AwaitReason::Manual,
                        ..
                    }
                )),
                TimerId::Wait { step } => {
                    assert!(matches!(st.steps[step].state, StepState::Running { .. }))
                }
                TimerId::TestDeadline => assert!(st.test.is_none()),
                TimerId::ScheduledStart => assert_eq!(st.mode, Mode::NotStarted),
            }
        }
        let is_test = self.op.kind() == Some(FailoverKind::Test);
        if is_test && st.test.is_none() && st.started_at.is_some() && !st.is_terminal() {
            assert!(
                st.timers.contains_key(&TimerId::TestDeadline),
                "an open test has a deadline"
            );
        }
        // Error policies.
        for (s, r) in st.steps.iter().enumerate() {
            let node = job.ctx.node(s).unwrap();
            let halting = is_planned(&self.op) && !job.ctx.is_cleanup(s) && !node.optional;
            if let StepState::AwaitingOperator {
                reason: AwaitReason::Failed { .. },
                ..
            } = r.state
            {
                assert!(halting, "only a planned failover halts on a failure");
            }
            if halting && r.state.is_failure() {
                assert!(
                    matches!(
                        st.mode,
                        Mode::Cancelling { .. }
                            | Mode::Finished {
                                status: JobStatus::Cancelled
                            }
                    ),
                    "a planned failover recorded a required failure without halting"
                );
            }
        }
        // A failed VM operation stops the rest of its chain: no later
        // operation of the VM starts after it failed. (In an unplanned
        // failover the failover does not wait for the best-effort
        // shutdown, so it may have started already, but never after the
        // failure and never as its dependent.)
        for (s, r) in st.steps.iter().enumerate() {
            if !r.state.is_failure() {
                continue;
            }
            let node = job.ctx.node(s).unwrap();
            let NodeKind::Vm { vm, .. } = &node.kind else {
                continue;
            };
            for (t, r2) in st.steps.iter().enumerate().skip(s + 1) {
                let n2 = job.ctx.node(t).unwrap();
                if n2.vm() == Some(vm.as_str())
                    && n2.group == node.group
                    && job.ctx.is_cleanup(t) == job.ctx.is_cleanup(s)
                    && let Some(started) = r2.started_at
                {
                    assert!(
                        !waits_for(&job.ctx, t, s) && Some(started) <= r.finished_at,
                        "{} ran after {} failed",
                        n2.key,
                        node.key
                    );
                }
            }
        }
        let awaiting = st
            .steps
            .iter()
            .any(|r| matches!(r.state, StepState::AwaitingOperator { .. }));
        if matches!(st.mode, Mode::Running | Mode::CleaningUp) {
            assert_eq!(awaiting, st.status() == JobStatus::WaitingForOperator);
        }
        if st.is_terminal() {
            assert!(st.timers.is_empty(), "a terminal job holds timers");
            assert_eq!(self.releases, 1, "leases released exactly once");
            assert_eq!(self.finished, 1);
            assert!(st.active.is_empty());
        } else {
            assert_eq!(self.releases, 0, "leases released before the end");
        }
        // Replaying the log rebuilds exactly this state.
        let replayed = replay(&job.ctx, &job.log).expect("the log replays");
        assert_eq!(&replayed, st, "replay differs from the live state");
    }

    fn steps_where(&self, f: impl Fn(&StepState) -> bool) -> Vec<usize> {
        (0..self.job.state.steps.len())
            .filter(|&s| f(&self.job.state.steps[s].state))
            .collect()
    }

    fn act(&mut self, act: &Act) {
        let at = self.job.tick(1_000);
        let by = "op".to_string();
        let pick = |v: &[usize], p: u8| (!v.is_empty()).then(|| v[p as usize % v.len()]);
        match *act {
            Act::Start => {
                let scheduled = self.job.state.timers.contains_key(&TimerId::ScheduledStart);
                let was = self.job.state.mode;
                let r = self.send(JobEvent::Started { at });
                assert_eq!(r.is_ok(), was == Mode::NotStarted && !scheduled, "{r:?}");
            }
            Act::StartNow => {
                let was = self.job.state.mode;
                let r = self.op_action(OperatorAction::StartNow, by, at);
                assert_eq!(r.is_ok(), was == Mode::NotStarted, "{r:?}");
            }
            Act::Finish { pick: p, outcome } => {
                let running: Vec<usize> = self.job.running().into_iter().map(|(s, _)| s).collect();
                if let Some(step) = pick(&running, p) {
                    let attempt = self.job.state.steps[step].state.attempt();
                    let outcome = match outcome % 10 {
                        0..=5 => Outcome::Succeeded,
                        6 | 7 => Outcome::Failed {
                            error: "boom".into(),
                            error_kind: None,
                            retryable: true,
                        },
                        8 => Outcome::TimedOut,
                        _ => Outcome::Cancelled,
                    };
                    let ev = JobEvent::StepFinished {
                        step,
                        attempt,
                        outcome,
                        output_tail: Some("out".into()),
                        values: Default::default(),
                        at,
                        warnings: Vec::new(),
                        recovery_point: None,
                    };
                    self.send(ev.clone())
                        .expect("an outcome of a running step is accepted");
                    // At-least-once delivery: the same outcome again changes nothing.
                    let dup = self.send(ev).expect_err("a duplicate outcome is rejected");
                    assert!(
                        dup.is_duplicate() || matches!(dup, Rejected::JobFinished { .. }),
                        "{dup}"
                    );
                }
            }
            Act::Answer { pick: p, done } => {
                let waiting = self.steps_where(|s| {
                    matches!(
                        s,
                        StepState::AwaitingOperator {
                            reason: AwaitReason::Manual,
                            ..
                        }
                    )
                });
                let any: Vec<usize> = (0..self.job.state.steps.len()).collect();
                let (step, legal) = match pick(&waiting, p) {
                    Some(s) => (s, true),
                    None => match pick(&any, p) {
                        Some(s) => (s, false),
                        None => return,
                    },
                };
                let r = self.send(JobEvent::ManualAnswered {
                    step,
                    done,
                    by,
                    note: Some("n".into()),
                    at,
                });
                assert_eq!(r.is_ok(), legal, "{r:?}");
            }
            Act::Fire { pick: p, early } => {
                let timers: Vec<(TimerId, Millis)> = self
                    .job
                    .state
                    .timers
                    .iter()
                    .map(|(t, d)| (*t, *d))
                    .collect();
                if timers.is_empty() {
                    return;
                }
                let (timer, due) = timers[p as usize % timers.len()];
                if early && due > 0 {
                    let r = self.send(JobEvent::TimerFired { timer, at: due - 1 });
                    assert!(
                        matches!(r, Err(Rejected::TimerEarly { .. })),
                        "timer {timer} fired before it was due: {r:?}"
                    );
                } else {
                    let at = self.job.now.max(due);
                    self.job.now = at;
                    self.send(JobEvent::TimerFired { timer, at })
                        .expect("an armed timer fires at its due time");
                    // Fired twice (redelivery): rejected, harmless.
                    let again = self.send(JobEvent::TimerFired { timer, at });
                    assert!(
                        matches!(again, Err(ref e) if e.is_duplicate())
                            || self.job.state.timers.contains_key(&timer)
                            || again.is_err()
                    );
                }
            }
            Act::Retry { pick: p } | Act::Skip { pick: p } => {
                let retry = matches!(act, Act::Retry { .. });
                let st = &self.job.state;
                let ctx = &self.job.ctx;
                let in_cleanup = matches!(st.mode, Mode::CleaningUp | Mode::CleanupIncomplete);
                let legal: Vec<usize> = (0..st.steps.len())
                    .filter(|&s| match &st.steps[s].state {
                        StepState::AwaitingOperator {
                            reason: AwaitReason::Failed { .. },
                            ..
                        } => true,
                        x => in_cleanup && ctx.is_cleanup(s) && x.is_failure(),
                    })
                    .collect();
                let any: Vec<usize> = (0..st.steps.len()).collect();
                let Some(step) = pick(&legal, p).or_else(|| pick(&any, p)) else {
                    return;
                };
                let ok = legal.contains(&step);
                let action = if retry {
                    OperatorAction::Retry { step }
                } else {
                    OperatorAction::Skip { step }
                };
                let r = self.op_action(action, by, at);
                assert_eq!(r.is_ok(), ok, "{r:?}");
            }
            Act::Cancel => {
                let mode = self.job.state.mode;
                let r = self.op_action(OperatorAction::Cancel, by, at);
                assert_eq!(
                    r.is_ok(),
                    matches!(mode, Mode::NotStarted | Mode::Running),
                    "{r:?}"
                );
            }
            Act::CompleteTest => {
                let mode = self.job.state.mode;
                let is_test = self.op.kind() == Some(FailoverKind::Test);
                let r = self.op_action(
                    OperatorAction::CompleteTest {
                        notes: "all good".into(),
                    },
                    by,
                    at,
                );
                let open = matches!(
                    mode,
                    Mode::Running
                        | Mode::AwaitingCleanup
                        | Mode::Cancelling {
                            then: AfterCancel::AwaitCleanup
                        }
                );
                assert_eq!(r.is_ok(), is_test && open, "{r:?}");
                if !is_test {
                    assert!(matches!(
                        r,
                        Err(Rejected::NotATest { .. }) | Err(Rejected::JobFinished { .. })
                    ));
                }
            }
            Act::Stale { pick: p, attempt } => {
                let n = self.job.state.steps.len();
                if n == 0 {
                    return;
                }
                let step = p as usize % n;
                let attempt = attempt as u32 % 4;
                let legal = self.job.state.steps[step].state == StepState::Running { attempt }
                    && outside(&self.job.ctx, step);
                if legal {
                    return;
                }
                let r = self.send(JobEvent::StepFinished {
                    step,
                    attempt,
                    outcome: Outcome::Succeeded,
                    output_tail: None,
                    values: Default::default(),
                    at,
                    warnings: Vec::new(),
                    recovery_point: None,
                });
                assert!(r.is_err(), "a stale outcome was accepted");
            }
            Act::UnknownStep => {
                let step = self.job.state.steps.len() + 3;
                let r = self.op_action(OperatorAction::Retry { step }, by, at);
                assert!(
                    matches!(
                        r,
                        Err(Rejected::UnknownStep { .. }) | Err(Rejected::JobFinished { .. })
                    ),
                    "{r:?}"
                );
            }
            Act::Resubmit => {
                let spec = self.job.state.spec.clone();
                let r = self.send(JobEvent::Submitted { spec, at });
                assert!(r.is_err());
            }
        }
    }

    fn op_action(
        &mut self,
        action: OperatorAction,
        by: String,
        at: Millis,
    ) -> Result<(), Rejected> {
        self.send(JobEvent::OperatorAction { action, by, at })
    }

    /// Drive the job to its end, choosing success everywhere (liveness: a
    /// job can always be finished by operators and a healthy fabric).
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.job.state.is_terminal() {
                return;
            }
            let at = self.job.tick(1_000);
            let by = "drain".to_string();
            let st = &self.job.state;
            match st.mode {
                Mode::NotStarted => {
                    let ev = match st.timers.get(&TimerId::ScheduledStart) {
                        Some(&due) => {
                            self.job.now = self.job.now.max(due);
                            JobEvent::TimerFired {
                                timer: TimerId::ScheduledStart,
                                at: self.job.now,
                            }
                        }
                        None => JobEvent::Started { at },
                    };
                    self.send(ev).unwrap();
                    continue;
                }
                Mode::AwaitingCleanup => {
                    self.op_action(
                        OperatorAction::CompleteTest {
                            notes: "done".into(),
                        },
                        by,
                        at,
                    )
                    .unwrap();
                    continue;
                }
                Mode::CleanupIncomplete => {
                    let failed = self.steps_where(StepState::is_failure);
                    let step = *failed
                        .iter()
                        .rev()
                        .find(|&&s| self.job.ctx.is_cleanup(s))
                        .unwrap();
                    self.op_action(OperatorAction::Retry { step }, by, at)
                        .unwrap();
                    continue;
                }
                _ => {}
            }
            if let Some(&(step, attempt)) = self.job.running().first() {
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
                .unwrap();
                continue;
            }
            let awaiting = self.steps_where(|s| matches!(s, StepState::AwaitingOperator { .. }));
            if let Some(&step) = awaiting.first() {
                let ev = match self.job.state.steps[step].state {
                    StepState::AwaitingOperator {
                        reason: AwaitReason::Manual,
                        ..
                    } => JobEvent::ManualAnswered {
                        step,
                        done: true,
                        by,
                        note: None,
                        at,
                    },
                    _ => JobEvent::OperatorAction {
                        action: OperatorAction::Retry { step },
                        by,
                        at,
                    },
                };
                self.send(ev).unwrap();
                continue;
            }
            let next = self
                .job
                .state
                .timers
                .iter()
                .filter(|(t, _)| **t != TimerId::TestDeadline)
                .chain(self.job.state.timers.get_key_value(&TimerId::TestDeadline))
                .map(|(t, d)| (*t, *d))
                .next();
            if let Some((timer, due)) = next {
                self.job.now = self.job.now.max(due);
                let at = self.job.now;
                self.send(JobEvent::TimerFired { timer, at }).unwrap();
                continue;
            }
            panic!("the job is stuck: {:?}", self.job.state.status());
        }
        panic!("the job did not finish");
    }

    fn check_end(&self, plan: &Plan) {
        let job = &self.job;
        let st = &job.state;
        let status = st.status();
        assert!(st.is_terminal());
        let main = 0..job.ctx.main_len();
        match self.op.kind() {
            Some(FailoverKind::Test) => {
                if status != JobStatus::Cancelled {
                    assert_eq!(
                        status == JobStatus::TestForciblyEnded,
                        self.forced_at.is_some(),
                        "forced end iff the deadline fired"
                    );
                    assert!(matches!(
                        status,
                        JobStatus::TestCompleted | JobStatus::TestForciblyEnded
                    ));
                    assert!(st.test.is_some(), "the closure notes are recorded");
                } else {
                    assert!(
                        st.started_at.is_none(),
                        "a started test is never just cancelled"
                    );
                }
                for (vm, it) in &self.items {
                    assert!(
                        matches!(it, ItemState::Protected { .. }),
                        "{vm} left in {it}"
                    );
                }
            }
            _ if status == JobStatus::Cancelled => {}
            _ => {
                let errors = main.clone().any(|s| {
                    !job.ctx.node(s).unwrap().optional && oracle_error(&st.steps[s].state)
                });
                assert_eq!(status == JobStatus::Succeeded, !errors, "status {status}");
                assert!(matches!(
                    status,
                    JobStatus::Succeeded | JobStatus::CompletedWithErrors | JobStatus::Failed
                ));
                let follow = matches!(
                    self.op.kind(),
                    Some(FailoverKind::Planned | FailoverKind::Unplanned)
                ) && status != JobStatus::Failed
                    && plan.commit != CommitPolicy::Manual;
                assert_eq!(self.follow_ups, usize::from(follow));
                // A VM whose failover op succeeded is failed over (or later started).
                for s in main {
                    if let NodeKind::Vm { vm, op } = &job.ctx.node(s).unwrap().kind
                        && matches!(op, drplan_engine::plan::VmOp::Failover { .. })
                        && matches!(st.steps[s].state, StepState::Succeeded { .. })
                    {
                        assert!(matches!(self.items[vm], ItemState::FailedOver { .. }));
                    }
                }
            }
        }
        if self.op.kind().is_none() || status == JobStatus::Cancelled {
            assert_eq!(self.follow_ups, 0);
        }
        // In-progress item states never outlive their job.
        for (vm, it) in &self.items {
            assert!(
                !matches!(
                    it,
                    ItemState::FailoverInProgress { .. }
                        | ItemState::TestFailoverInProgress { .. }
                        | ItemState::ReverseReplicating { .. }
                ),
                "{vm} left {it}"
            );
        }
    }
}

pub struct CoreTest;

impl StateMachineTest for CoreTest {
    type SystemUnderTest = Sut;
    type Reference = CoreMachine;

    fn init_test(ref_state: &RefState) -> Sut {
        Sut::new(&ref_state.sc)
    }

    fn apply(mut sut: Sut, _ref_state: &RefState, act: Act) -> Sut {
        sut.act(&act);
        sut
    }

    fn teardown(mut sut: Sut, ref_state: RefState) {
        sut.drain();
        sut.check_state();
        sut.check_end(&ref_state.sc.plan);
        // A terminal job takes nothing more.
        let r = sut.send(JobEvent::Started { at: sut.job.now });
        assert!(matches!(r, Err(Rejected::JobFinished { .. })));
    }
}

prop_state_machine! {
    #![proptest_config(Config {
        cases: cases(64),
        max_shrink_iters: 2_000,
        ..Config::default()
    })]
    #[test]
    fn job_machine_follows_the_rules(sequential 1..60 => CoreTest);
}

/// Whether step `later` waits for step `earlier`, directly or not.
fn waits_for(ctx: &JobContext, later: usize, earlier: usize) -> bool {
    let mut todo = vec![later];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(s) = todo.pop() {
        for &d in ctx.deps(s) {
            if d == earlier {
                return true;
            }
            if d > earlier && seen.insert(d) {
                todo.push(d);
            }
        }
    }
    false
}
