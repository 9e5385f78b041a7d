//! `drplan`: validate, render and (later) run disaster-recovery plans.
//!
//! This binary is thin on purpose: it parses arguments and dispatches to
//! [`cli`], whose modules only adapt the engine (`drplan_engine`) to a
//! terminal. All plan logic lives in the engine.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
