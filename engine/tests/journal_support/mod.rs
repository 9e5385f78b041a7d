//! A simulated runtime for journal tests: it drives every live job of a
//! [`Journal`] from what it learns through effects only (operations in
//! flight, operator prompts) and the store's durable timer index, against a
//! fake fabric that executes each idempotency key at most once and whose
//! outcomes are a pure function of the key.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use drplan_engine::core::*;
use drplan_engine::journal::{Journal, JournalError, JournalOptions, SubmitRequest};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::model::Plan;
use drplan_engine::store::{JobId, Store};

pub const T0: Millis = 1_700_000_000_000;

pub fn hash(seed: u64, s: &str) -> u64 {
    // FNV-1a: deterministic across runs and platforms.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fabric and script runner: outlives crashes of drplan.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Fabric {
    pub seed: u64,
    /// Out of 8, how many keys fail (0: everything succeeds).
    pub failing: u64,
    /// How often each key was requested (re-issues count).
    pub requests: BTreeMap<String, u32>,
    /// Keys executed (a repeated request of a key is deduplicated).
    pub executed: BTreeSet<String>,
    /// Outcomes reported, per key.
    pub completed: BTreeMap<String, Outcome>,
}

impl Fabric {
    fn outcome(&self, key: &str) -> Outcome {
        match hash(self.seed, key) % 8 {
            h if h < self.failing && h.is_multiple_of(2) => Outcome::Failed {
                error: format!("fabric error on {key}"),
                error_kind: None,
                retryable: true,
            },
            h if h < self.failing => Outcome::TimedOut,
            _ => Outcome::Succeeded,
        }
    }
}

/// What the runtime knows only in memory (lost in a crash).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Volatile {
    /// (job, step, attempt) → (key, cancel requested).
    pub inflight: BTreeMap<(JobId, usize, u32), (String, bool)>,
    pub prompts: BTreeSet<(JobId, usize)>,
}

/// Everything that survives a crash of drplan besides the store: the
/// fabric, the clock, and the script of choices.
#[derive(Clone, Debug)]
pub struct Outside {
    pub fabric: Fabric,
    pub now: Millis,
    /// Successful journal calls so far (indexes `choices`).
    pub commits: usize,
}

pub struct Sim {
    pub journal: Journal,
    pub out: Outside,
    pub mem: Volatile,
    pub choices: Vec<u8>,
}

impl Sim {
    pub fn new(
        store: Arc<dyn Store>,
        opts: JournalOptions,
        fabric: Fabric,
        choices: Vec<u8>,
    ) -> Sim {
        Sim {
            journal: Journal::open_with(store, opts).expect("open"),
            out: Outside {
                fabric,
                now: T0,
                commits: 0,
            },
            mem: Volatile::default(),
            choices: if choices.is_empty() { vec![0] } else { choices },
        }
    }

    /// A sim over an already opened journal (nothing in flight).
    pub fn with_journal(journal: Journal, out: Outside, choices: Vec<u8>) -> Sim {
        Sim {
            journal,
            out,
            mem: Volatile::default(),
            choices,
        }
    }

    /// Restart on `store` (a crash copy): reopen, then perform what
    /// `resume` says.
    pub fn restart(
        store: Arc<dyn Store>,
        opts: JournalOptions,
        out: Outside,
        choices: Vec<u8>,
    ) -> Sim {
        let journal = Journal::open_with(store, opts).expect("reopen after a crash");
        let mut sim = Sim {
            journal,
            out,
            mem: Volatile::default(),
            choices,
        };
        let fx = sim.journal.resume();
        assert!(
            fx.iter().all(|(_, e)| !e.is_bookkeeping()),
            "resume re-issues external effects only"
        );
        for (job, e) in fx {
            sim.perform(job, std::slice::from_ref(&e));
        }
        sim
    }

    pub fn submit(
        &mut self,
        plan: &Plan,
        operation: Operation,
        start_at: Option<Millis>,
    ) -> Result<JobId, JournalError> {
        let (id, fx) = self.journal.submit(SubmitRequest {
            plan: plan.clone(),
            plan_text: format!("# plan {}\n", plan.name),
            operation,
            requested_by: "alice".into(),
            at: self.out.now,
            start_at,
            parent: None,
        })?;
        self.out.commits += 1;
        self.perform(id, &fx);
        Ok(id)
    }

    pub fn perform(&mut self, job: JobId, fx: &[Effect]) {
        for e in fx {
            match e {
                Effect::RunVmOp {
                    step, attempt, key, ..
                }
                | Effect::RunScript { step, attempt, key } => {
                    let k = key.to_string();
                    assert_eq!(key.job, job);
                    *self.out.fabric.requests.entry(k.clone()).or_default() += 1;
                    // The fabric deduplicates by key: a repeat is the same operation.
                    self.out.fabric.executed.insert(k.clone());
                    let prev = self
                        .mem
                        .inflight
                        .insert((job, *step, *attempt), (k.clone(), false));
                    assert!(prev.is_none_or(|(pk, _)| pk == k), "one attempt, one key");
                }
                Effect::CancelStep { step, attempt } => {
                    self.mem
                        .inflight
                        .get_mut(&(job, *step, *attempt))
                        .expect("cancel of an operation in flight")
                        .1 = true;
                }
                Effect::AwaitOperator { step } => {
                    self.mem.prompts.insert((job, *step));
                }
                other => panic!("a bookkeeping effect reached the runtime: {other:?}"),
            }
        }
    }

    /// Live jobs and their states.
    pub fn live(&self) -> Vec<(JobId, JobState)> {
        self.journal
            .jobs()
            .unwrap()
            .into_iter()
            .filter(|m| !m.status.is_terminal())
            .map(|m| (m.id, self.journal.job(m.id).unwrap().unwrap()))
            .collect()
    }

    /// Choose the next input from what the runtime knows.
    pub fn next_event(&mut self, choice: u8) -> Option<(JobId, JobEvent)> {
        enum Cand {
            Finish((JobId, usize, u32)),
            Prompt(JobId, usize),
            Fire(JobId, TimerId, Millis),
            Start(JobId),
            Complete(JobId),
            Cancel(JobId),
            FixCleanup(JobId, usize),
        }
        let live = self.live();
        let states: BTreeMap<JobId, JobState> = live.into_iter().collect();
        let mut c: Vec<Cand> = Vec::new();
        c.extend(self.mem.inflight.keys().map(|k| Cand::Finish(*k)));
        for &(job, step) in &self.mem.prompts {
            if states
                .get(&job)
                .is_some_and(|s| matches!(s.steps[step].state, StepState::AwaitingOperator { .. }))
            {
                c.push(Cand::Prompt(job, step));
            }
        }
        let timers = self.journal.due_timers(u64::MAX).unwrap();
        c.extend(
            timers
                .iter()
                .filter(|(_, t, _)| *t != TimerId::TestDeadline || choice.is_multiple_of(11))
                .map(|(j, t, d)| Cand::Fire(*j, *t, *d)),
        );
        for (&job, st) in &states {
            match st.mode {
                Mode::NotStarted if !st.timers.contains_key(&TimerId::ScheduledStart) => {
                    c.push(Cand::Start(job))
                }
                Mode::AwaitingCleanup => c.push(Cand::Complete(job)),
                Mode::CleanupIncomplete => {
                    let failed = st
                        .steps
                        .iter()
                        .enumerate()
                        .rev()
                        .find(|(_, r)| r.state.is_failure())
                        .map(|(s, _)| s)
                        .expect("an incomplete cleanup has a failed step");
                    c.push(Cand::FixCleanup(job, failed));
                }
                Mode::Running if choice.is_multiple_of(29) => c.push(Cand::Cancel(job)),
                _ => {}
            }
        }
        if c.is_empty()
            && let Some((j, t, d)) = timers.first()
        {
            c.push(Cand::Fire(*j, *t, *d));
        }
        if c.is_empty() {
            return None;
        }
        self.out.now += 1_000;
        let at = self.out.now;
        let by = "ops".to_string();
        let seed = self.out.fabric.seed;
        Some(match c.swap_remove(choice as usize % c.len()) {
            Cand::Finish((job, step, attempt)) => {
                let (key, cancel) = self.mem.inflight[&(job, step, attempt)].clone();
                let outcome = if cancel {
                    Outcome::Cancelled
                } else {
                    self.out.fabric.outcome(&key)
                };
                (
                    job,
                    JobEvent::StepFinished {
                        step,
                        attempt,
                        outcome,
                        output_tail: Some(format!("output of {key}")),
                        values: Default::default(),
                        at,
                        warnings: Vec::new(),
                        recovery_point: None,
                    },
                )
            }
            Cand::Prompt(job, step) => {
                let StepState::AwaitingOperator { attempt, reason } =
                    states[&job].steps[step].state.clone()
                else {
                    unreachable!()
                };
                let h = hash(seed, &format!("{job}/{step}/{attempt}"));
                let ev = match reason {
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
                };
                (job, ev)
            }
            Cand::Fire(job, timer, due) => {
                self.out.now = self.out.now.max(due);
                (
                    job,
                    JobEvent::TimerFired {
                        timer,
                        at: self.out.now,
                    },
                )
            }
            Cand::Start(job) => (job, JobEvent::Started { at }),
            Cand::Complete(job) => (
                job,
                JobEvent::OperatorAction {
                    action: OperatorAction::CompleteTest {
                        notes: "seen".into(),
                    },
                    by,
                    at,
                },
            ),
            Cand::Cancel(job) => (
                job,
                JobEvent::OperatorAction {
                    action: OperatorAction::Cancel,
                    by,
                    at,
                },
            ),
            Cand::FixCleanup(job, step) => (
                job,
                JobEvent::OperatorAction {
                    action: if hash(seed, &format!("fix{job}/{step}")).is_multiple_of(2) {
                        OperatorAction::Skip { step }
                    } else {
                        OperatorAction::Retry { step }
                    },
                    by,
                    at,
                },
            ),
        })
    }

    /// Record one input chosen by the script; false when nothing can happen.
    /// `after_commit` sees the sim after every successful commit.
    pub fn step(&mut self) -> bool {
        let choice = self.choices[self.out.commits % self.choices.len()];
        let Some((job, ev)) = self.next_event(choice) else {
            return false;
        };
        match self.journal.record(job, ev.clone()) {
            Ok(fx) => {
                self.out.commits += 1;
                self.settle(job, &ev);
                self.perform(job, &fx);
            }
            // A (follow-up) job whose VMs are not ready or taken when it
            // starts: the operator cancels it.
            Err(JournalError::NotReady(_) | JournalError::VmBusy { .. }) => {
                let fx = self
                    .journal
                    .record(
                        job,
                        JobEvent::OperatorAction {
                            action: OperatorAction::Cancel,
                            by: "ops".into(),
                            at: self.out.now,
                        },
                    )
                    .expect("cancel of a job that could not start");
                self.out.commits += 1;
                self.perform(job, &fx);
            }
            Err(e) => panic!("the runtime's own event was refused: {e}\n{ev:?}"),
        }
        true
    }

    /// After an outcome is durable the fabric forgets the operation.
    fn settle(&mut self, job: JobId, ev: &JobEvent) {
        match ev {
            JobEvent::StepFinished {
                step,
                attempt,
                outcome,
                ..
            } => {
                let (key, _) = self
                    .mem
                    .inflight
                    .remove(&(job, *step, *attempt))
                    .expect("in flight");
                let prev = self
                    .out
                    .fabric
                    .completed
                    .insert(key.clone(), outcome.clone());
                assert!(prev.is_none(), "operation {key} completed twice");
            }
            JobEvent::ManualAnswered { step, .. }
            | JobEvent::OperatorAction {
                action: OperatorAction::Retry { step } | OperatorAction::Skip { step },
                ..
            } => {
                self.mem.prompts.remove(&(job, *step));
            }
            _ => {}
        }
    }

    /// Run until nothing can happen or `max` commits, calling `each` after
    /// every commit.
    pub fn run(&mut self, max: usize, mut each: impl FnMut(&Sim)) {
        while self.out.commits < max && self.step() {
            each(self);
        }
    }

    /// Every job's final state, by id.
    pub fn states(&self) -> BTreeMap<JobId, JobState> {
        self.journal
            .jobs()
            .unwrap()
            .into_iter()
            .map(|m| (m.id, self.journal.job(m.id).unwrap().unwrap()))
            .collect()
    }
}
