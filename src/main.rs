//! `drplan`: validate, render and (later) run disaster-recovery plans.
//!
//! This binary is thin on purpose: it parses arguments and dispatches to
//! [`cli`], whose modules only adapt the engine (`drplan_engine`) to a
//! terminal. All plan logic lives in the engine.

mod cli;

/// mimalloc instead of the system allocator: see the note on the dependency
/// in Cargo.toml (measured in BENCHMARKS.md, "Runtime").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
