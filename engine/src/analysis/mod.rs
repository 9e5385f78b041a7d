//! Operator analysis of plans: how long a recovery will take and what a
//! failure would do, before anything runs.
//!
//! - [`history`]: measured durations from the event logs of past jobs
//!   (replayed through the pure core to find when each attempt started).
//! - [`estimate`]: the RTO estimate, the longest path through the compiled
//!   plan with measured or assumed figures, each labelled.
//! - [`simulate`] (unix): the real engine on an in-memory store and the
//!   simulated fabric in tokio's paused time, with injected faults.
//! - [`timeline`]: a step-by-step account of a job's state (used for
//!   simulations).
//!
//! Nothing here writes a store: the history is read record by record
//! (no journal is opened), and a simulation's store lives in memory.

pub mod estimate;
pub mod history;
#[cfg(unix)]
pub mod simulate;
pub mod timeline;
