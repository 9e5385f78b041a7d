//! # drplan-engine
//!
//! The engine behind `drplan`: it reads disaster-recovery plans, validates
//! them against a fabric inventory, compiles them to an execution DAG and
//! (later layers) runs them as durable state machines.
//!
//! Layout:
//! - [`plan`]: the plan language (YAML files, diagnostics, validation,
//!   compilation to an execution DAG, graph rendering).
//! - [`core`]: the pure job, step and replicated-item state machines (no
//!   I/O, no clock: events in, effects out).
//! - [`store`]: durable storage (event logs, timers, leases, items).
//! - [`journal`]: the core event-sourced on the store: submit, record,
//!   reopen and resume jobs.

pub mod core;
pub mod journal;
pub mod plan;
pub mod store;
