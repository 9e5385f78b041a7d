//! `drplan simulate`: a what-if run of a plan with injected faults, on an
//! in-memory store and the simulated fabric in virtual time. It never opens
//! a data directory: nothing of the real store is read or written.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::analysis::estimate::{DEFAULT_OPERATOR_DELAY, DurationModel};
use drplan_engine::analysis::simulate::{
    SimRequest, Simulation, resolve_step_faults, simulate, split_injections,
};
use drplan_engine::analysis::timeline::{self, Outcome, Row};
use drplan_engine::core::{JobContext, JobStatus};
use drplan_engine::fabric::FaultSet;
use drplan_engine::plan::compile::{Operation, RecoveryPoint};
use drplan_engine::script::{RunnerConfig, ScriptRunner};
use serde::Serialize;

use super::estimate::{RUN_MAX_VM_OPS, check_time_scale, load_plan, parse_duration};
use super::graph::Kind;
use super::progress::duration;
use super::run::parse_recovery_point;
use super::validate::OutputFormat;
use super::{Exit, GlobalOpts, emit};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Which failover to simulate.
    #[arg(long, value_enum)]
    pub failover: Kind,
    /// Inventory file; overrides the plan's own `fabric:` key.
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// A fault, as for `drplan run` (`fail:start-replica:web-01`,
    /// `site-down:primary-vmm`, ...), or `fail-step:STEP`: a script fails
    /// every attempt, a manual step is answered "not done".
    #[arg(long, value_name = "FAULT")]
    pub inject: Vec<String>,
    /// Read fabric faults from a file (`faults:` then a list).
    #[arg(long, value_name = "FILE")]
    pub inject_file: Option<PathBuf>,
    /// Unplanned failovers: the recovery point (latest, latest-processed,
    /// latest-app-consistent, or an RFC 3339 time).
    #[arg(long, value_name = "POINT", value_parser = parse_recovery_point)]
    pub recovery_point: Option<RecoveryPoint>,
    /// Unplanned failovers: do not try to shut the primary down first.
    #[arg(long)]
    pub no_shutdown_primary: bool,
    /// How long the simulated operator takes to answer a manual step.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub operator_delay: Duration,
    /// Execute the plan's scripts for real (default: each counts as
    /// succeeded after its estimated duration, its timeout).
    #[arg(long)]
    pub run_scripts: bool,
    /// Scale the fabric's latencies and the plan's waits (1 = realistic).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Output format: the simulated timeline, outcome and RTO, or JSON
    /// `{"plan","operation","faults","status","outcome","steps",...}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// The JSON document.
#[derive(Debug, Serialize)]
struct Report<'a> {
    plan: &'a str,
    operation: String,
    faults: &'a [String],
    scripts: &'static str,
    operator_delay_ms: u64,
    /// The job's status where the simulation stopped.
    status: &'static str,
    outcome: &'a Outcome,
    policy: &'static str,
    steps: &'a [Row],
}

pub fn run(args: &SimulateArgs, global: &GlobalOpts) -> Exit {
    match run_inner(args, global) {
        Ok(e) | Err(e) => e,
    }
}

fn bad(errors: impl IntoIterator<Item = impl std::fmt::Display>) -> Exit {
    for e in errors {
        eprintln!("drplan: {e}");
    }
    Exit::CouldNotRun
}

fn run_inner(args: &SimulateArgs, global: &GlobalOpts) -> Result<Exit, Exit> {
    check_time_scale(args.time_scale)?;
    let (mut plan, text, inventory) = load_plan(&args.plan, args.fabric.as_deref(), global)?;
    // Scripts resolve against the plan's directory; absolute, so they run
    // whatever the engine's working directory (as `run` does).
    if let Ok(abs) = std::path::absolute(&plan.base_dir) {
        plan.base_dir = abs;
    }
    let Some(inventory) = inventory else {
        eprintln!(
            "drplan: plan `{}` names no inventory; `simulate` needs one for the simulated \
             fabric: pass --fabric FILE",
            plan.name
        );
        return Err(Exit::CouldNotRun);
    };
    let mut operation = Operation::failover(args.failover.into());
    if let Operation::Failover {
        recovery_point,
        shutdown_primary,
        ..
    } = &mut operation
    {
        if let Some(rp) = args.recovery_point {
            *recovery_point = rp;
        }
        *shutdown_primary = !args.no_shutdown_primary;
    }
    // Faults: the fabric's own (checked against the inventory, as `run`
    // does) and the simulation's `fail-step:` (checked against the plan).
    let (fabric_faults, step_faults) = split_injections(&args.inject);
    let mut faults = FaultSet::from_cli(&fabric_faults).map_err(bad)?;
    if let Some(f) = &args.inject_file {
        faults
            .faults
            .extend(FaultSet::from_file(f).map_err(bad)?.faults);
    }
    let wrong = faults.check(&inventory);
    if !wrong.is_empty() {
        return Err(bad(wrong));
    }
    let ctx = JobContext::new(&plan, operation);
    let fail_steps: BTreeSet<String> = resolve_step_faults(&ctx, &step_faults).map_err(bad)?;

    // Scripts run (with --run-scripts, and the failing shells of
    // `fail-step`) in a scratch directory of their own.
    let scratch = std::env::temp_dir().join(format!("drplan-simulate-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        eprintln!("drplan: cannot create `{}`: {e}", scratch.display());
        return Err(Exit::CouldNotRun);
    }
    let mut config = RunnerConfig::from_process_env();
    config.scratch_dir = scratch.clone();
    config.inherited_env.retain(|(k, _)| k != "TMPDIR");
    config
        .inherited_env
        .push(("TMPDIR".into(), scratch.clone().into_os_string()));
    let model = DurationModel {
        time_scale: args.time_scale,
        operator_delay: args.operator_delay,
        ..DurationModel::assumed()
    };
    let start_at = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let result = simulate(SimRequest {
        plan: plan.clone(),
        plan_text: text,
        inventory,
        operation,
        faults,
        fail_steps,
        run_scripts: args.run_scripts,
        scripts: ScriptRunner::new(config),
        model,
        max_concurrent_vm_ops: RUN_MAX_VM_OPS,
        start_at,
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let sim = result.map_err(|e| {
        eprintln!("drplan: {e}");
        Exit::CouldNotRun
    })?;
    let rows = timeline::rows(&sim.ctx, &sim.state, &sim.events, &sim.figures);
    let outcome = timeline::outcome(&sim.ctx, &sim.state, sim.status);
    // Exit 1 for any predicted trouble a plan author would want CI to catch:
    // a bad end, a halt, or a required step that failed (a drill with a
    // failed smoke test still "awaits cleanup").
    let errors = sim.state.summary(&sim.ctx).errors;
    let exit = if good(sim.status) && outcome.halted_at.is_empty() && errors == 0 {
        Exit::Ok
    } else {
        Exit::Problems
    };
    let scripts = if args.run_scripts {
        "executed"
    } else {
        "simulated"
    };
    let policy = timeline::policy(operation.kind());
    let shown = match args.format {
        OutputFormat::Json => {
            let report = Report {
                plan: &plan.name,
                operation: operation.to_string(),
                faults: &args.inject,
                scripts,
                operator_delay_ms: args.operator_delay.as_millis() as u64,
                status: sim.status.as_str(),
                outcome: &outcome,
                policy,
                steps: &rows,
            };
            let mut t = serde_json::to_string_pretty(&report).unwrap_or_default();
            t.push('\n');
            emit(&t)
        }
        OutputFormat::Human => emit(&human(args, &plan.name, operation, &sim, &rows, &outcome)),
    };
    Ok(exit.max(shown))
}

/// Statuses a simulated run can stop in without a problem: it succeeded,
/// or it is a drill that awaits its cleanup.
fn good(status: JobStatus) -> bool {
    matches!(status, JobStatus::Succeeded | JobStatus::AwaitingCleanup)
}

fn offset(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(0) => "+0s".into(),
        Some(m) => format!("+{}", duration(m)),
    }
}

fn human(
    args: &SimulateArgs,
    plan: &str,
    op: Operation,
    sim: &Simulation,
    rows: &[Row],
    outcome: &Outcome,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "simulated {op} of plan {plan} (virtual time; no store was touched)"
    );
    if args.inject.is_empty() && args.inject_file.is_none() {
        let _ = writeln!(o, "  faults:        none");
    } else {
        let mut all = args.inject.clone();
        if let Some(f) = &args.inject_file {
            all.push(format!("(from {})", f.display()));
        }
        let _ = writeln!(o, "  faults:        {}", all.join(", "));
    }
    let _ = writeln!(
        o,
        "  scripts:       {}",
        if sim.run_scripts {
            "executed for real (--run-scripts)"
        } else {
            "not run: each counts as succeeded after its timeout (an upper bound)"
        }
    );
    let delay = if args.operator_delay == DEFAULT_OPERATOR_DELAY {
        format!(
            "{} (default)",
            duration(DEFAULT_OPERATOR_DELAY.as_millis() as u64)
        )
    } else {
        duration(args.operator_delay.as_millis() as u64)
    };
    let _ = writeln!(o, "  manual steps:  answered \"done\" after {delay}");
    let _ = writeln!(o, "\ntimeline:");
    for r in rows {
        let took = match (r.start_ms, r.finish_ms) {
            (Some(a), Some(b)) => duration(b.saturating_sub(a)),
            _ => String::new(),
        };
        let attempts = if r.attempts > 1 {
            format!(", {} attempts", r.attempts)
        } else {
            String::new()
        };
        let optional = if r.optional { " (optional)" } else { "" };
        let simulated = match (r.kind, r.figure.is_some()) {
            ("script", true) => " [simulated script]",
            ("manual", _) if r.state == "succeeded" || r.state == "failed" => {
                " [answered by the simulation]"
            }
            _ => "",
        };
        let _ = writeln!(
            o,
            "  {:>9} {:>9} {:>8}  {:<18} {}{optional}{attempts}{simulated}",
            offset(r.start_ms),
            offset(r.finish_ms),
            took,
            r.state,
            r.key
        );
        if let Some(e) = &r.error {
            let _ = writeln!(o, "      error: {e}");
        }
        if let Some(s) = &r.skipped {
            let _ = writeln!(o, "      skipped: {s}");
        }
        for w in &r.warnings {
            let _ = writeln!(o, "      {w}");
        }
    }
    let _ = writeln!(o, "\noutcome: {}", outcome.status);
    let _ = writeln!(o, "  policy:  {}", timeline::policy(op.kind()));
    if !outcome.halted_at.is_empty() {
        let _ = writeln!(
            o,
            "  halted:  the plan waits for an operator's decision on {} (retry, skip or cancel)",
            outcome.halted_at.join(", ")
        );
    }
    let list = |o: &mut String, label: &str, v: &[String]| {
        if !v.is_empty() {
            let _ = writeln!(o, "  {label:<8} {}", v.join(", "));
        }
    };
    list(&mut o, "failed:", &outcome.failed);
    list(&mut o, "skipped:", &outcome.skipped);
    list(&mut o, "not run:", &outcome.never_ran);
    match outcome.rto_ms {
        Some(ms) => {
            let _ = writeln!(
                o,
                "  estimated RTO: {} (every required VM running)",
                duration(ms)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  estimated RTO: not reached: required {} not running: {}",
                super::text::noun_for(outcome.vms_not_recovered.len(), "VM"),
                outcome.vms_not_recovered.join(", ")
            );
        }
    }
    let _ = writeln!(o, "  elapsed (virtual): {}", duration(outcome.elapsed_ms));
    o
}
