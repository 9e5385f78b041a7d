//! The commands that follow a failover: `commit`, `reprotect`,
//! `change-recovery-point`, `rollback` and `failback`. Each submits a new
//! job over the validated plan the earlier job stored (plan files may have
//! changed or gone since), then follows it like `drplan run`. Whether the
//! VMs are in the right state is the core's call at submit: its refusal
//! names each VM and its state, and exits 1.

use std::path::PathBuf;

use clap::Args;
use drplan_engine::core::JobStatus;
use drplan_engine::journal::JobMeta;
use drplan_engine::plan::compile::RecoveryPoint;
use drplan_engine::plan::{Direction, FailoverKind, Operation};
use drplan_engine::runtime::Submission;
use drplan_engine::store::JobId;

use super::engine_host::{self, Session};
use super::graph::Kind;
use super::progress::FollowFormat;
use super::run::{EngineOpts, RunArgs, default_by, parse_recovery_point};
use super::{Exit, GlobalOpts, emit};

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The failover job's id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// Who requests the job (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct ChangeRecoveryPointArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// The recovery point to move to: latest, latest-processed,
    /// latest-app-consistent, or an RFC 3339 time.
    #[arg(long, value_name = "POINT", value_parser = parse_recovery_point)]
    pub recovery_point: RecoveryPoint,
}

#[derive(Debug, Args)]
pub struct FailbackArgs {
    /// A plan file, or the id of a job whose stored plan to fail back.
    #[arg(value_name = "PLAN|JOB")]
    pub target: String,
    /// Who requests the job (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

pub fn commit(a: &JobArgs) -> Exit {
    follow_up(a, Operation::Commit)
}

pub fn reprotect(a: &JobArgs) -> Exit {
    follow_up(a, Operation::ReverseReplicate)
}

pub fn rollback(a: &JobArgs) -> Exit {
    follow_up(a, Operation::Rollback)
}

/// The same failover as job `a.job` (kind, direction, recovery point),
/// over its stored plan: the core acts on the VMs not yet failed over and
/// leaves the others alone (`item::leaves_alone`).
pub fn continue_failover(a: &JobArgs) -> Exit {
    let choose = |meta: &JobMeta| match meta.operation {
        op @ Operation::Failover {
            kind: FailoverKind::Planned | FailoverKind::Unplanned,
            ..
        } => Ok(op),
        Operation::Failover { .. } => Err(format!(
            "job {} is a test failover; a drill is not continued but run again \
             (`drplan run PLAN --failover test`) once it is cleaned up",
            meta.id
        )),
        other => Err(format!(
            "job {} is a {other}, not a planned or unplanned failover",
            meta.id
        )),
    };
    match follow_up_inner(a, "continue", &choose) {
        Ok(e) | Err(e) => e,
    }
}

pub fn change_recovery_point(a: &ChangeRecoveryPointArgs) -> Exit {
    follow_up(
        &a.job,
        Operation::ChangeRecoveryPoint {
            recovery_point: a.recovery_point,
        },
    )
}

/// A planned failover in the reverse direction. A plan file goes through
/// `run` (validated like any run); a job id reuses that job's stored plan.
pub fn failback(a: &FailbackArgs, global: &GlobalOpts) -> Exit {
    let op = Operation::Failover {
        kind: FailoverKind::Planned,
        direction: Direction::Reverse,
        recovery_point: RecoveryPoint::default(),
        shutdown_primary: true,
    };
    match a.target.parse::<u64>() {
        Ok(job) if !std::path::Path::new(&a.target).exists() => {
            let j = JobArgs {
                job,
                by: a.by.clone(),
                engine: a.engine.clone(),
            };
            follow_up(&j, op)
        }
        _ => {
            let args = RunArgs {
                plan: PathBuf::from(&a.target),
                failover: Kind::Planned,
                engine: a.engine.clone(),
                recovery_point: None,
                no_shutdown_primary: false,
                reverse: true,
                inject: Vec::new(),
                inject_file: None,
                by: a.by.clone(),
                detach: false,
            };
            super::run::run(&args, global)
        }
    }
}

fn follow_up(a: &JobArgs, op: Operation) -> Exit {
    match follow_up_inner(a, verb(&op), &|_| Ok(op)) {
        Ok(e) | Err(e) => e,
    }
}

/// Why `op` cannot follow the job `meta` ran, judged from the job record
/// alone (the core then checks every VM's state at submit).
fn refusal(meta: &JobMeta, op: &Operation, verb: &str) -> Option<String> {
    let needs_failover = !matches!(op, Operation::Failover { .. });
    match meta.operation {
        Operation::Failover {
            kind: FailoverKind::Test,
            ..
        } if needs_failover => Some(format!(
            "job {} is a test failover: its test VMs are closed with `drplan cleanup {}`, \
             not `{verb}`",
            meta.id, meta.id,
        )),
        Operation::Failover { .. } | Operation::Commit | Operation::ReverseReplicate => {
            if meta.status.is_terminal() {
                None
            } else {
                Some(format!(
                    "job {} has not ended (it is {}); `drplan resume {}` follows it",
                    meta.id, meta.status, meta.id
                ))
            }
        }
        _ if needs_failover => Some(format!(
            "job {} is a {}, not a failover; `{verb}` follows a planned or unplanned failover",
            meta.id, meta.operation,
        )),
        _ => None,
    }
}

fn verb(op: &Operation) -> &'static str {
    match op {
        Operation::Commit => "commit",
        Operation::ReverseReplicate => "reprotect",
        Operation::Rollback => "rollback",
        Operation::ChangeRecoveryPoint { .. } => "change-recovery-point",
        Operation::Failover { .. } => "failback",
        Operation::TestCleanup => "cleanup",
        Operation::EnableProtection => "protect",
        Operation::DisableProtection { .. } => "unprotect",
    }
}

/// Submits the operation `choose` picks for the job (or refuses with its
/// reason), named `verb` in messages, and follows it.
fn follow_up_inner(
    a: &JobArgs,
    verb: &str,
    choose: &dyn Fn(&JobMeta) -> Result<Operation, String>,
) -> Result<Exit, Exit> {
    let opts = &a.engine;
    opts.check_time_scale()?;
    let dir = engine_host::data_dir(opts.data_dir.as_deref())?;
    if !dir.exists() {
        eprintln!(
            "drplan: job {} does not exist (no data directory `{}`)",
            a.job,
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    let rt = engine_host::runtime()?;
    let printer = opts.printer();
    let by = a.by.clone().unwrap_or_else(default_by);
    let time_scale = opts.time_scale;
    let fabric = opts.fabric.clone();
    let wanted = a.job;
    rt.block_on(async move {
        let session = Session::open(&dir).await?;
        let Some(meta) = session.job_meta(JobId(wanted)).await? else {
            eprintln!("drplan: job {wanted} does not exist in `{}`", dir.display());
            return Err(Exit::CouldNotRun);
        };
        let op = match choose(&meta) {
            Ok(op) => op,
            Err(why) => {
                eprintln!("drplan: cannot {verb}: {why}");
                return Err(Exit::Problems);
            }
        };
        if let Some(why) = refusal(&meta, &op, verb) {
            eprintln!("drplan: cannot {verb}: {why}");
            return Err(Exit::Problems);
        }
        // Commit etc. of a job that ended badly: the core's item check still
        // decides, VM by VM (a failover that completed with errors may have
        // failed some VMs over).
        if matches!(meta.status, JobStatus::Cancelled) {
            eprintln!(
                "drplan: note: job {} was cancelled; the engine checks each VM's state",
                meta.id
            );
        }
        let (mut plan, text) = session.job_plan(&meta).await?;
        // A new job runs today's failover phases, even after a job stored
        // by a drplan that laid failovers out per group (its model says so).
        plan.layout = drplan_engine::plan::model::CompileLayout::default();
        let plan_name = plan.name.clone();
        let parent = meta.id;
        let (running, updates) = session
            .follow_engine(&dir, fabric.as_deref(), time_scale, &plan)
            .await?;
        let api = running.api();
        let sub = Submission::new(plan, text, op, &by);
        let job = match api.submit(sub, None).await {
            Ok(j) => j,
            Err(e) => {
                eprintln!("drplan: cannot {verb} (after job {parent}): {e}");
                running.stop().await;
                return Ok(if e.is_refusal() {
                    Exit::Problems
                } else {
                    Exit::CouldNotRun
                });
            }
        };
        let head = format!("job {job}: {op} of plan {plan_name} (after job {parent})");
        match printer.format {
            FollowFormat::Human => {
                let _ = emit(&format!("{head}\n"));
            }
            FollowFormat::Json => {
                let v = serde_json::json!({
                    "job": job, "event": "submitted", "operation": op.to_string(),
                    "plan": plan_name, "requested_by": by, "after": parent,
                });
                let _ = emit(&format!("{v}\n"));
            }
        }
        let exit = super::prompt::follow_prompting(api, printer, &[job], updates, &|| {
            running.save_world()
        })
        .await;
        running.stop().await;
        Ok(exit)
    })
}
