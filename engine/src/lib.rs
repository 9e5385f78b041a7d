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
//! - [`protect`]: protection management: enable / onboard / disable
//!   protection as jobs (synthetic plans), replication health, recovery
//!   point checks, the capacity estimate.
//! - [`report`]: the timeline of a job (critical path, achieved RTO,
//!   verdict) computed from its record, for `show`, `report` and `history`.
//! - [`store_check`]: verifies a store record by record (`drplan store
//!   check`); [`store::backup`] exports and imports it as JSON lines.
//! - [`runtime`]: the tokio `Engine` that performs the journal's effects
//!   (fabric operations, scripts, timers, operator prompts).
//! - [`api`]: the local API (`drplan serve`): a versioned line protocol, its
//!   server and client, and the `Control` trait both an in-process engine
//!   and a remote client implement.

//! - [`analysis`]: RTO estimates from past runs and what-if simulations of
//!   a plan (the runtime on an in-memory store, in virtual time).

pub mod analysis;
#[cfg(unix)]
pub mod api;
pub mod core;
pub mod fabric;
pub mod journal;
pub mod plan;
pub mod protect;
pub mod report;
#[cfg(unix)]
pub mod runtime;
#[cfg(unix)]
pub mod script;
pub mod store;
pub mod store_check;
pub mod text;

/// Cases per property test of the unit tests: `PROPTEST_CASES` if set (the
/// soak command raises it), else `default` (CI stays bounded).
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// The `tracing` target of the engine's logs that tell a store failure
/// (disk full, read-only, I/O error) as it happens. A front end that reports
/// the failure itself (the CLI prints one plain line with what to free and
/// what to run next) can filter this target out; a server keeps it.
pub const STORE_FAILED_TARGET: &str = "drplan_engine::store_failed";
