//! `drplan run`: validate a plan, submit a failover on the simulated
//! fabric and follow it in the foreground until it ends or waits for an
//! operator.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use drplan_engine::fabric::{FaultError, FaultSet};
use drplan_engine::plan::compile::RecoveryPoint;
use drplan_engine::plan::model::{Plan, StepAction};
use drplan_engine::plan::{Direction, Operation};
use drplan_engine::runtime::Submission;

use super::engine_host::{self, Running, Session, SimOptions, SimWorld};
use super::graph::Kind;
use super::progress::{FollowFormat, Printer};
use super::render_diag::{Renderer, Sources};
use super::validate::{human_report, judge, load, width};
use super::{Exit, GlobalOpts, emit};

/// Options shared by every command that runs the engine.
#[derive(Debug, Args, Clone)]
pub struct EngineOpts {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Inventory file for the simulated fabric; overrides the plan's own
    /// `fabric:` key.
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// Simulated fabric speed: 1.0 = realistic latencies, 0.01 = a hundred
    /// times faster (the shipped demo runs in seconds).
    #[arg(long, value_name = "X", default_value_t = 0.01)]
    pub time_scale: f64,
    /// Output: one plain line per update, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = FollowFormat::Human)]
    pub format: FollowFormat,
    /// Print only the outcome (and what to type next).
    #[arg(long, short)]
    pub quiet: bool,
    /// Never ask in place when the job waits for an operator, even on a
    /// terminal: print the command to continue and exit 0 (for scripts and
    /// command chains run from a terminal).
    #[arg(long)]
    pub no_prompt: bool,
}

impl EngineOpts {
    pub fn printer(&self) -> Printer {
        // Every command that follows a job takes its printer from here, so
        // this is where `--no-prompt` reaches the prompt (a process-wide
        // switch keeps `Printer`'s shape, which other commands build on).
        if self.no_prompt {
            super::prompt::disable();
        }
        Printer {
            format: self.format,
            quiet: self.quiet,
            data_dir: self.data_dir.clone(),
            fabric: self.fabric.clone(),
        }
    }

    /// A time scale the simulator accepts (positive, finite).
    pub fn check_time_scale(&self) -> Result<(), Exit> {
        if self.time_scale.is_finite() && self.time_scale > 0.0 {
            Ok(())
        } else {
            eprintln!(
                "drplan: --time-scale must be a positive number, not {}",
                self.time_scale
            );
            Err(Exit::CouldNotRun)
        }
    }
}

/// Who acts: `--by`, else $USER, else "operator".
pub fn default_by() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Which failover to run.
    #[arg(long, value_enum)]
    pub failover: Kind,
    #[command(flatten)]
    pub engine: EngineOpts,
    /// Unplanned failovers: the recovery point to fail over to: latest,
    /// latest-processed, latest-app-consistent, or an RFC 3339 time.
    #[arg(long, value_name = "POINT", value_parser = parse_recovery_point)]
    pub recovery_point: Option<RecoveryPoint>,
    /// Unplanned failovers: do not try to shut the primary down first.
    #[arg(long)]
    pub no_shutdown_primary: bool,
    /// Fail back (reverse direction) instead of failing over.
    #[arg(long)]
    pub reverse: bool,
    /// Inject a fault into the simulated fabric, e.g.
    /// `fail-once:start-replica:web-01`, `site-down:primary-vmm`.
    #[arg(long, value_name = "FAULT")]
    pub inject: Vec<String>,
    /// Read faults from a file (`faults:` then a list of fault strings).
    #[arg(long, value_name = "FILE")]
    pub inject_file: Option<PathBuf>,
    /// Who requests the job (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Submit, print the job id and exit; `drplan resume JOB` follows it.
    #[arg(long)]
    pub detach: bool,
}

pub fn parse_recovery_point(s: &str) -> Result<RecoveryPoint, String> {
    match s {
        "latest" => Ok(RecoveryPoint::Latest),
        "latest-processed" => Ok(RecoveryPoint::LatestProcessed),
        "latest-app-consistent" => Ok(RecoveryPoint::LatestAppConsistent),
        _ => humantime::parse_rfc3339_weak(s)
            .map_err(|e| {
                format!(
                    "expected latest, latest-processed, latest-app-consistent or an \
                     RFC 3339 time (2026-11-26T10:00:00Z): {e}"
                )
            })
            .and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| RecoveryPoint::At(d.as_secs()))
                    .map_err(|_| "a time before 1970".to_string())
            }),
    }
}

fn print_fault_errors(errors: &[FaultError]) {
    for e in errors {
        eprintln!("drplan: {e}");
    }
}

/// The faults of `--inject` and `--inject-file`, checked against the
/// inventory. Unreadable or wrong faults: exit 2 (bad arguments).
fn faults(args: &RunArgs, inv: &drplan_engine::plan::model::Inventory) -> Result<FaultSet, Exit> {
    let mut set = FaultSet::from_cli(&args.inject).map_err(|e| {
        print_fault_errors(&e);
        Exit::CouldNotRun
    })?;
    if let Some(f) = &args.inject_file {
        let more = FaultSet::from_file(f).map_err(|e| {
            print_fault_errors(&e);
            Exit::CouldNotRun
        })?;
        set.faults.extend(more.faults);
    }
    let wrong = set.check(inv);
    if !wrong.is_empty() {
        print_fault_errors(&wrong);
        return Err(Exit::CouldNotRun);
    }
    Ok(set)
}

pub fn run(args: &RunArgs, global: &GlobalOpts) -> Exit {
    match run_inner(args, global) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &RunArgs, global: &GlobalOpts) -> Result<Exit, Exit> {
    args.engine.check_time_scale()?;
    // 1. The plan, checked like `validate` (diagnostics on stderr: stdout
    // carries the progress).
    let fabric = args.engine.fabric.as_deref();
    let mut sources = Sources::default();
    let mut loaded = load(&args.plan, fabric, &mut sources);
    // The inventory's declared protection (DP0603) is only where drplan
    // starts from: the submission checks each VM's current state in the
    // store and names every VM not ready, so the declaration's warning
    // would be stale here (after `protect` or `unprotect`).
    loaded
        .diagnostics
        .retain(|d| d.code != drplan_engine::plan::diag::codes::VM_NOT_PROTECTED);
    let given: Vec<&Path> = std::iter::once(args.plan.as_path()).chain(fabric).collect();
    let report = judge(&args.plan, &loaded, &given, false);
    let (plan, text, inventory) = match (loaded.plan, loaded.plan_text, loaded.inventory) {
        (Some(p), Some(t), Some(i)) if report.valid => (p, t, i),
        (Some(p), Some(_), None) if report.valid => {
            eprintln!(
                "drplan: plan `{}` names no inventory; `run` needs one for the simulated \
                 fabric: pass --fabric FILE",
                p.name
            );
            return Err(Exit::CouldNotRun);
        }
        _ => {
            let exit = report.exit.max(Exit::Problems);
            print_stderr(&[report], &mut sources, global);
            return Err(exit);
        }
    };
    if report.warnings > 0 {
        print_stderr(&[report], &mut sources, global);
    }
    let faults = faults(args, &inventory)?;
    let plan = for_simulation(plan, args.engine.time_scale);

    // 2. The operation.
    let mut op = Operation::failover(args.failover.into());
    if let Operation::Failover {
        direction,
        recovery_point,
        shutdown_primary,
        ..
    } = &mut op
    {
        if args.reverse {
            *direction = Direction::Reverse;
        }
        if let Some(rp) = args.recovery_point {
            *recovery_point = rp;
        }
        *shutdown_primary = !args.no_shutdown_primary;
    }
    let by = args.by.clone().unwrap_or_else(default_by);

    // 3. The engine: the data directory's server, or one hosted here.
    let dir = engine_host::data_dir(args.engine.data_dir.as_deref())?;
    let opts = SimOptions {
        time_scale: args.engine.time_scale,
        faults: Some(faults),
    };
    let rt = engine_host::runtime()?;
    let printer = args.engine.printer();
    let detach = args.detach;
    let explicit_rp = args.recovery_point;
    let plan_name = plan.name.clone();
    // `--detach`: an engine that outlives this command must run the job.
    let serve_fabric = fabric
        .and_then(|f| std::path::absolute(f).ok())
        .or_else(|| plan.fabric_path.clone());
    let time_scale = args.engine.time_scale;
    Ok(rt.block_on(async move {
        if let (true, Some(f)) = (detach, &serve_fabric)
            && let Err(e) = engine_host::ensure_server(&dir, f, time_scale).await
        {
            return e;
        }
        let session = match Session::open(&dir).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        // Never a detached job that nothing executes.
        if detach && !session.is_remote() {
            eprintln!(
                "drplan: --detach needs an engine that outlives this command, and `drplan serve` \
                 could not start on {} (see {}); run without --detach, or start `drplan serve` \
                 first",
                dir.display(),
                dir.join(engine_host::DETACHED_LOG).display()
            );
            return Exit::CouldNotRun;
        }
        // A server gets the faults as text (those of a fault file too) and
        // puts them in force on its own fabric, replacing the previous ones
        // as a hosted run does.
        let remote_faults = session.is_remote().then(|| {
            opts.faults
                .iter()
                .flat_map(|set| set.faults.iter().map(ToString::to_string))
                .collect::<Vec<String>>()
        });
        let running = match session
            .engine(&dir, || {
                let world = SimWorld::load(&dir, &inventory, &opts)?;
                Ok((inventory, world))
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return e,
        };
        // An explicit recovery point must exist for every VM (the list
        // `drplan recovery-points VM` shows): refused before the job starts,
        // naming each VM without one, rather than failing VM by VM. Checked
        // here when this process hosts the engine; a server's fabric refuses
        // a missing point when the failover step runs.
        if let (
            Running::Local(host),
            Some(rp),
            Some(drplan_engine::plan::FailoverKind::Unplanned),
        ) = (&running, explicit_rp, op.kind())
        {
            let vms: Vec<&str> = plan
                .groups
                .iter()
                .flat_map(|g| g.vms.iter().map(|v| v.name.as_str()))
                .collect();
            let now = super::progress::now_ms();
            if let Err(problems) =
                drplan_engine::protect::check_recovery_point(&host.world.fabric, &vms, rp, now)
            {
                eprintln!("drplan: cannot submit: recovery point `{rp}` is not available:");
                for p in problems {
                    eprintln!("  {p}");
                }
                eprintln!("  `drplan recovery-points VM` lists the points each VM keeps");
                running.stop().await;
                return Exit::Problems;
            }
        }
        let api = running.api();
        let updates = match api.subscribe(None).await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("drplan: {e}");
                running.stop().await;
                return Exit::CouldNotRun;
            }
        };
        let sub = Submission::new(plan, text, op, &by);
        let job = match api.submit(sub, remote_faults).await {
            Ok(j) => j,
            Err(e) => {
                eprintln!("drplan: cannot submit: {e}");
                running.stop().await;
                // A refusal of the core (VMs busy, not ready): a problem,
                // not a usage error.
                return if e.is_refusal() {
                    Exit::Problems
                } else {
                    Exit::CouldNotRun
                };
            }
        };
        let head = format!("job {job}: {op} of plan {plan_name}");
        match printer.format {
            FollowFormat::Human => {
                let _ = emit(&format!("{head}\n"));
            }
            FollowFormat::Json => {
                let v = serde_json::json!({
                    "job": job, "event": "submitted", "operation": op.to_string(),
                    "plan": plan_name, "requested_by": by,
                });
                let _ = emit(&format!("{v}\n"));
            }
        }
        if detach {
            // The job is durable and started, and a server runs it on (one
            // was started above when none answered).
            running.stop().await;
            return Exit::Ok;
        }
        let exit = super::prompt::follow_prompting(api, printer, &[job], updates, &|| {
            running.save_world()
        })
        .await;
        running.stop().await;
        exit
    }))
}

/// The plan as the simulated run executes it:
/// - its directories absolute, so its scripts run and a later command (from
///   another working directory) finds its inventory;
/// - its waits and script retry delays multiplied by the time scale, like
///   the simulated fabric's latencies, so a demo with a one-minute `settle`
///   wait runs in seconds. Script and manual-step timeouts are not scaled:
///   scripts and operators live in real time. The job keeps the original
///   plan text for audits.
fn for_simulation(mut plan: Plan, scale: f64) -> Plan {
    if let Ok(abs) = std::path::absolute(&plan.base_dir) {
        plan.base_dir = abs;
    }
    if let Some(f) = &plan.fabric_path
        && let Ok(abs) = std::path::absolute(f)
    {
        plan.fabric_path = Some(abs);
    }
    if scale == 1.0 {
        return plan;
    }
    let scaled = |d: &mut Duration| *d = d.mul_f64(scale);
    let steps = plan
        .groups
        .iter_mut()
        .flat_map(|g| g.pre.iter_mut().chain(g.post.iter_mut()))
        .chain(plan.test.cleanup.iter_mut());
    for step in steps {
        match &mut step.action {
            StepAction::Wait { duration } => scaled(duration),
            StepAction::Script { retry_delay, .. } => scaled(retry_delay),
            StepAction::Manual { .. } => {}
        }
    }
    plan
}

fn print_stderr(
    reports: &[super::validate::PlanReport],
    sources: &mut Sources,
    global: &GlobalOpts,
) {
    let tty = std::io::stderr().is_terminal();
    let renderer = Renderer::new(global.color.enabled(tty), width(std::io::stderr()));
    let _ = std::io::stderr().write_all(human_report(reports, sources, &renderer).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_points_parse() {
        assert_eq!(parse_recovery_point("latest"), Ok(RecoveryPoint::Latest));
        assert_eq!(
            parse_recovery_point("latest-app-consistent"),
            Ok(RecoveryPoint::LatestAppConsistent)
        );
        assert_eq!(
            parse_recovery_point("2026-11-26T00:00:00Z"),
            Ok(RecoveryPoint::At(1_795_651_200))
        );
        assert!(parse_recovery_point("yesterday").is_err());
    }
}
