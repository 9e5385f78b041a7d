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
//! - [`fabric`]: the `Fabric` trait the runtime performs VM operations
//!   through, and the simulated two-site fabric (`SimFabric`).
//! - [`store`]: the durable store (sled; an in-memory one for tests).
//! - [`journal`]: the core event-sourced on the store: submit, record,
//!   reopen and resume jobs.
//! - [`script`]: runs one attempt of a script step as a child process in
//!   its own process group (timeouts, bounded output, published values).
//! - [`store_check`]: verifies a store record by record (`drplan store
//!   check`); [`store::backup`] exports and imports it as JSON lines.
//! - [`runtime`]: the tokio `Engine` that performs the journal's effects
//!   (fabric operations, scripts, timers, operator prompts).

pub mod core;
pub mod fabric;
pub mod journal;
pub mod plan;
#[cfg(unix)]
pub mod runtime;
#[cfg(unix)]
pub mod script;
pub mod store;
pub mod store_check;
