//! The pure core: the job, step and replicated-item state machines.
//!
//! A job is a fold of its events: [`submit`] takes the first event
//! (`Submitted`), [`apply`] / [`transition`] every later one, and each
//! returns the [`Effect`]s the runtime must carry out: run a VM operation or
//! a script, prompt an operator, arm a timer, update a replicated item,
//! release leases. [`resume_effects`] says what to issue again after a
//! restart; [`replay`] rebuilds a state from a log.
//!
//! # Architecture invariant
//!
//! The core has **no tokio, no store, no clock, no randomness and no I/O**.
//! Time arrives inside events (`at`, Unix milliseconds); transitions are
//! deterministic functions of (context, state, event); effects are data. A
//! test (`engine/tests/core_purity.rs`) greps this directory for the usual
//! ways to break that.
//!
//! # Persist before acting
//!
//! The runtime appends the event and writes the bookkeeping effects
//! ([`Effect::is_bookkeeping`]: timers, item records, lease release, the
//! follow-up job, the final status) in one atomic batch, and only then
//! performs the external effects. A crash between the two is covered by
//! [`resume_effects`], which re-issues started work under the same
//! idempotency key ([`IdemKey`]).
//!
//! # Delivery
//!
//! A rejected event changes nothing and is not logged. Outcomes arrive at
//! least once: a duplicate (or stale) outcome is rejected with
//! [`Rejected::StaleOutcome`], which [`Rejected::is_duplicate`] tells the
//! runtime to drop quietly; the log therefore holds each outcome once.
//!
//! Files: [`types`] (events, effects, states), [`context`] (compiled plans
//! and indexes), [`job`] (transitions), [`item`] (replicated items).

pub mod context;
pub mod item;
pub mod job;
pub mod types;

pub use context::JobContext;
pub use item::{IllegalItemTransition, ItemEvent, ItemState, NotReady, Selection, check_job};
pub use job::{Rejected, Summary, apply, replay, resume_effects, submit, transition};
pub use types::*;
