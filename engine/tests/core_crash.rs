//! Crash at every event boundary. A simulated runtime drives a job from what
//! it learns through effects only (running operations, operator prompts, the
//! durable timer index), against a fake fabric whose outcomes are a pure
//! function of the idempotency key. For every prefix of the resulting log we
//! "crash": rebuild the state from the prefix, rebuild the runtime's memory
//! from `resume_effects`, continue with the same choices, and demand the
//! same final state and the same completed operations as the uninterrupted
//! run; started operations without a recorded outcome must be re-issued
//! under the same key.

mod core_support;

use std::collections::{BTreeMap, BTreeSet};

use core_support::*;
use drplan_engine::core::*;
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::Plan;
use proptest::prelude::*;

fn hash(seed: u64, s: &str) -> u64 {
    // FNV-1a: deterministic across runs and platforms.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fabric and script runner: survives crashes; the outcome of an
/// operation depends only on its key.
#[derive(Clone, Debug, PartialEq)]
struct Fabric {
    seed: u64,
    /// How often each key was requested (re-issues count).
    requests: BTreeMap<String, u32>,
    /// Outcomes reported, per key.
    completed: BTreeMap<String, Outcome>,
}

/// The runtime's memory: lost in a crash.
#[derive(Clone, Debug, PartialEq, Default)]
struct Volatile {
    /// (step, attempt) → (key, cancel requested).
    inflight: BTreeMap<(usize, u32), (String, bool)>,
    prompts: BTreeSet<usize>,
}

#[derive(Clone)]
struct World {
    ctx: std::sync::Arc<JobContext>,
    state: JobState,
    log: Vec<JobEvent>,
    /// The store's timer index (durable, kept by bookkeeping effects).
    timers: BTreeMap<TimerId, Millis>,
    mem: Volatile,
    fabric: Fabric,
    now: Millis,
}

impl World {
    fn perform(&mut self, fx: &[Effect]) {
        for e in fx {
            match e {
                Effect::RunVmOp {
                    step, attempt, key, ..
                }
                | Effect::RunScript { step, attempt, key } => {
                    let k = key.to_string();
                    *self.fabric.requests.entry(k.clone()).or_default() += 1;
                    let prev = self.mem.inflight.insert((*step, *attempt), (k, false));
                    assert!(
                        prev.is_none()
                            || prev.as_ref().unwrap().0 == self.mem.inflight[&(*step, *attempt)].0
                    );
                }
                Effect::CancelStep { step, attempt } => {
                    self.mem
                        .inflight
                        .get_mut(&(*step, *attempt))
                        .expect("cancel of an operation in flight")
                        .1 = true;
                }
                Effect::AwaitOperator { step } => {
                    self.mem.prompts.insert(*step);
                }
                _ => {}
            }
        }
    }

    /// The bookkeeping half of a batch (timer index), applied with the event.
    fn book(timers: &mut BTreeMap<TimerId, Millis>, ev: &JobEvent, fx: &[Effect]) {
        if let JobEvent::TimerFired { timer, .. } = ev {
            timers.remove(timer);
        }
        for e in fx {
            match e {
                Effect::ArmTimer { timer, due } => {
                    timers.insert(*timer, *due);
                }
                Effect::DisarmTimer { timer, .. } => {
                    timers.remove(timer);
                }
                _ => {}
            }
        }
    }

    /// The prompts that still stand (a cancel or a timeout may have closed one).
    fn open_prompts(&self) -> BTreeSet<usize> {
        self.mem
            .prompts
            .iter()
            .copied()
            .filter(|&s| {
                matches!(
                    self.state.steps[s].state,
                    StepState::AwaitingOperator { .. }
                )
            })
            .collect()
    }

    /// Choose and build the next event from what the runtime knows.
    fn next_event(&mut self, choice: u8) -> Option<JobEvent> {
        if self.state.is_terminal() {
            return None;
        }
        enum Cand {
            Finish((usize, u32)),
            Prompt(usize),
            Fire(TimerId, Millis),
            Start,
            Complete,
            Cancel,
            FixCleanup(usize),
        }
        let mut c: Vec<Cand> = Vec::new();
        c.extend(self.mem.inflight.keys().map(|k| Cand::Finish(*k)));
        c.extend(self.open_prompts().into_iter().map(Cand::Prompt));
        // The test deadline is hours away: it fires only now and then, or
        // when nothing else can happen.
        c.extend(
            self.timers
                .iter()
                .filter(|(t, _)| **t != TimerId::TestDeadline || choice.is_multiple_of(11))
                .map(|(t, d)| Cand::Fire(*t, *d)),
        );
        match self.state.mode {
            Mode::NotStarted if !self.timers.contains_key(&TimerId::ScheduledStart) => {
                c.push(Cand::Start)
            }
            Mode::AwaitingCleanup => c.push(Cand::Complete),
            Mode::CleanupIncomplete => {
                let failed = (self.ctx.main_len()..self.ctx.len())
                    .find(|&s| self.state.steps[s].state.is_failure())
                    .expect("an incomplete cleanup has a failed step");
                c.push(Cand::FixCleanup(failed));
            }
            Mode::Running if choice.is_multiple_of(29) => c.push(Cand::Cancel),
            _ => {}
        }
        if c.is_empty()
            && let Some(&due) = self.timers.get(&TimerId::TestDeadline)
        {
            c.push(Cand::Fire(TimerId::TestDeadline, due));
        }
        if c.is_empty() {
            return None;
        }
        self.now += 1_000;
        let at = self.now;
        let by = "ops".to_string();
        let seed = self.fabric.seed;
        Some(match c.swap_remove(choice as usize % c.len()) {
            Cand::Finish((step, attempt)) => {
                let (key, cancel) = self.mem.inflight.remove(&(step, attempt)).unwrap();
                let outcome = if cancel {
                    Outcome::Cancelled
                } else {
                    match hash(seed, &key) % 8 {
                        0 => Outcome::Failed {
                            error: format!("fabric error on {key}"),
                            error_kind: None,
                            retryable: true,
                        },
                        1 => Outcome::TimedOut,
                        _ => Outcome::Succeeded,
                    }
                };
                let prev = self.fabric.completed.insert(key.clone(), outcome.clone());
                assert!(prev.is_none(), "operation {key} completed twice");
                JobEvent::StepFinished {
                    step,
                    attempt,
                    outcome,
                    output_tail: None,
                    values: Default::default(),
                    at,
                    warnings: Vec::new(),
                    recovery_point: None,
                }
            }
            Cand::Prompt(step) => {
                self.mem.prompts.remove(&step);
                let StepState::AwaitingOperator { attempt, reason } =
                    self.state.steps[step].state.clone()
                else {
                    unreachable!()
                };
                let h = hash(seed, &format!("{step}/{attempt}"));
                match reason {
                    AwaitReason::Manual => JobEvent::ManualAnswered {
                        step,
                        done: !h.is_multiple_of(4),
                        by,
                        note: None,
                        at,
                    },
                    AwaitReason::Failed { .. } => JobEvent::OperatorAction {
                        action: if h.is_multiple_of(3) {
                            OperatorAction::Skip { step }
                        } else {
                            OperatorAction::Retry { step }
                        },
                        by,
                        at,
                    },
                }
            }
            Cand::Fire(timer, due) => {
                self.now = self.now.max(due);
                JobEvent::TimerFired {
                    timer,
                    at: self.now,
                }
            }
            Cand::Start => JobEvent::Started { at },
            Cand::Complete => JobEvent::OperatorAction {
                action: OperatorAction::CompleteTest {
                    notes: "seen".into(),
                },
                by,
                at,
            },
            Cand::Cancel => JobEvent::OperatorAction {
                action: OperatorAction::Cancel,
                by,
                at,
            },
            Cand::FixCleanup(step) => JobEvent::OperatorAction {
                action: if hash(seed, &format!("fix{step}")).is_multiple_of(2) {
                    OperatorAction::Skip { step }
                } else {
                    OperatorAction::Retry { step }
                },
                by,
                at,
            },
        })
    }

    /// Run until the end (or `max` events), recording a snapshot of the
    /// world after every event.
    fn run(&mut self, choices: &[u8], max: usize, snaps: &mut Vec<World>) {
        while self.log.len() < max {
            let choice = choices[self.log.len() % choices.len()];
            let Some(ev) = self.next_event(choice) else {
                break;
            };
            let fx = apply(&self.ctx, &mut self.state, &ev)
                .unwrap_or_else(|e| panic!("the runtime's own event was rejected: {e}\n{ev:?}"));
            World::book(&mut self.timers, &ev, &fx);
            self.log.push(ev);
            self.perform(&fx);
            snaps.push(self.clone());
        }
    }
}

fn start(p: &Plan, op: Operation, scheduled: bool, seed: u64) -> World {
    let ctx = JobContext::new(p, op);
    let mut spec = spec(&ctx, op);
    if scheduled {
        spec.start_at = Some(T0 + 3_000);
    }
    let ev = JobEvent::Submitted { spec, at: T0 };
    let (state, fx) = submit(&ctx, &ev).unwrap();
    let mut w = World {
        ctx: std::sync::Arc::new(ctx),
        state,
        log: vec![ev.clone()],
        timers: BTreeMap::new(),
        mem: Volatile::default(),
        fabric: Fabric {
            seed,
            requests: BTreeMap::new(),
            completed: BTreeMap::new(),
        },
        now: T0,
    };
    World::book(&mut w.timers, &ev, &fx);
    w.perform(&fx);
    w
}

/// Rebuild a world from the durable part of `at_crash`: its log (replayed,
/// the timer index rebuilt from the bookkeeping effects) and the fabric.
fn recover(at_crash: &World) -> World {
    let ctx = at_crash.ctx.clone();
    let (first, rest) = at_crash.log.split_first().unwrap();
    let (mut state, fx) = submit(&ctx, first).unwrap();
    let mut timers = BTreeMap::new();
    World::book(&mut timers, first, &fx);
    for ev in rest {
        let fx = apply(&ctx, &mut state, ev).expect("a logged event replays");
        World::book(&mut timers, ev, &fx);
    }
    let mut w = World {
        ctx: ctx.clone(),
        state,
        log: at_crash.log.clone(),
        timers,
        mem: Volatile::default(),
        fabric: at_crash.fabric.clone(),
        now: at_crash.now,
    };
    let fx = resume_effects(&ctx, &w.state);
    assert!(
        fx.iter().all(|e| !e.is_bookkeeping()),
        "resume re-issues external effects only"
    );
    w.perform(&fx);
    w
}

const MAX_EVENTS: usize = 300;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn crash_at_every_event_boundary_changes_nothing(
        p in arb_plan(),
        op in arb_operation(),
        scheduled in proptest::bool::weighted(0.2),
        seed in any::<u64>(),
        choices in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut full = start(&p, op, scheduled, seed);
        let first = full.clone();
        let mut snaps = vec![first];
        full.run(&choices, MAX_EVENTS, &mut snaps);

        for (k, at_crash) in snaps.iter().enumerate() {
            let mut w = recover(at_crash);
            prop_assert_eq!(&w.state, &at_crash.state, "replayed state differs at boundary {}", k);
            prop_assert_eq!(&w.timers, &at_crash.timers);
            // Everything in flight is re-issued under the same key, and
            // every open prompt is shown again.
            prop_assert_eq!(&w.mem.inflight, &at_crash.mem.inflight, "in-flight work differs at boundary {}", k);
            prop_assert_eq!(w.open_prompts(), at_crash.open_prompts());
            for (key, _) in at_crash.mem.inflight.values() {
                prop_assert_eq!(w.fabric.requests[key], at_crash.fabric.requests[key] + 1);
            }
            let mut ignore = Vec::new();
            w.run(&choices, MAX_EVENTS, &mut ignore);
            prop_assert_eq!(&w.state, &full.state, "final state differs after a crash at boundary {}", k);
            prop_assert_eq!(&w.fabric.completed, &full.fabric.completed);
            prop_assert_eq!(&w.log, &full.log);
        }
        // The run either ended or hit the bound; an ended job is settled.
        if full.state.is_terminal() {
            prop_assert!(full.timers.is_empty());
            prop_assert!(full.mem.inflight.is_empty());
        }
    }
}
