//! # drplan-engine
//!
//! The engine behind `drplan`: it reads disaster-recovery plans, validates
//! them against a fabric inventory, compiles them to an execution DAG and
//! (later layers) runs them as durable state machines.
//!
//! Layout:
//! - [`plan`]: the plan language (YAML files, diagnostics, validation,
//!   compilation to an execution DAG, graph rendering).

pub mod plan;
pub mod store;
