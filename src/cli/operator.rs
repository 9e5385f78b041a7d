//! The operator commands: `ack`, `retry`, `skip`, `cancel`, `cleanup` and
//! `resume`. Each opens the data directory, starts the engine (which
//! resumes every unfinished job), performs its action and then follows the
//! job like `drplan run` until it waits again or ends.

use clap::Args;
use drplan_engine::core::JobContext;
use drplan_engine::journal::JobMeta;
use drplan_engine::store::JobId;

use super::Exit;
use super::engine_host::{self, Session};
use super::progress::{close_matches, step_keys};
use super::run::{EngineOpts, default_by};

#[derive(Debug, Args)]
pub struct AckArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// The manual step's key, e.g. `application/post/verify-health`, or a
    /// unique short name (`verify-health`).
    #[arg(value_name = "STEP")]
    pub step: String,
    /// The step could not be done (the job treats it as failed).
    #[arg(long)]
    pub failed: bool,
    /// A note for the audit record.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Who answers (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// The job id.
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// The failed step's key, e.g. `web/vm/web-01/start-replica`, or a
    /// unique short name (`web-01/start-replica`).
    #[arg(value_name = "STEP")]
    pub step: String,
    /// Who acts (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job id.
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// Do not ask for confirmation (cancelling a planned or unplanned
    /// failover asks on a terminal; never elsewhere).
    #[arg(long, short)]
    pub yes: bool,
    /// Who acts (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The test failover's job id.
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// What the drill showed (kept in the job's record).
    #[arg(long, value_name = "TEXT")]
    pub notes: String,
    /// Who acts (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The job to follow (default: every unfinished job).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: Option<u64>,
    #[command(flatten)]
    pub engine: EngineOpts,
}

/// What an operator command does once the engine runs.
enum Action {
    Ack {
        step: String,
        done: bool,
        note: Option<String>,
        by: String,
    },
    Retry {
        step: String,
        by: String,
    },
    Skip {
        step: String,
        by: String,
    },
    Cancel {
        by: String,
        yes: bool,
    },
    Cleanup {
        notes: String,
        by: String,
    },
}

impl Action {
    fn step(&self) -> Option<&str> {
        match self {
            Action::Ack { step, .. } | Action::Retry { step, .. } | Action::Skip { step, .. } => {
                Some(step)
            }
            Action::Cancel { .. } | Action::Cleanup { .. } => None,
        }
    }
}

pub fn ack(a: &AckArgs) -> Exit {
    let action = Action::Ack {
        step: a.step.clone(),
        done: !a.failed,
        note: a.note.clone(),
        by: a.by.clone().unwrap_or_else(default_by),
    };
    act(Some(JobId(a.job)), Some(action), &a.engine)
}

pub fn retry(a: &StepArgs) -> Exit {
    let action = Action::Retry {
        step: a.step.clone(),
        by: a.by.clone().unwrap_or_else(default_by),
    };
    act(Some(JobId(a.job)), Some(action), &a.engine)
}

pub fn skip(a: &StepArgs) -> Exit {
    let action = Action::Skip {
        step: a.step.clone(),
        by: a.by.clone().unwrap_or_else(default_by),
    };
    act(Some(JobId(a.job)), Some(action), &a.engine)
}

pub fn cancel(a: &CancelArgs) -> Exit {
    let action = Action::Cancel {
        by: a.by.clone().unwrap_or_else(default_by),
        yes: a.yes,
    };
    act(Some(JobId(a.job)), Some(action), &a.engine)
}

pub fn cleanup(a: &CleanupArgs) -> Exit {
    let action = Action::Cleanup {
        notes: a.notes.clone(),
        by: a.by.clone().unwrap_or_else(default_by),
    };
    act(Some(JobId(a.job)), Some(action), &a.engine)
}

pub fn resume(a: &ResumeArgs) -> Exit {
    act(a.job.map(JobId), None, &a.engine)
}

fn act(job: Option<JobId>, action: Option<Action>, opts: &EngineOpts) -> Exit {
    match act_inner(job, action, opts) {
        Ok(e) | Err(e) => e,
    }
}

/// The step id of a key (or a unique short name) in a job, or exit 2
/// with the candidates or the closest keys.
fn resolve_step(meta: &JobMeta, ctx: &JobContext, wanted: &str) -> Result<usize, Exit> {
    let keys = step_keys(ctx);
    // The full key, or a unique short name (`verify-health`), as `simulate`.
    match super::text::match_step(wanted, &keys) {
        super::text::StepMatch::One(key) => {
            if let Some(s) = (0..ctx.len()).find(|&s| ctx.node(s).is_some_and(|n| n.key == key)) {
                return Ok(s);
            }
        }
        super::text::StepMatch::Ambiguous(many) => {
            eprintln!(
                "drplan: `{wanted}` names {} of job {}; give one of their keys:",
                super::text::count(many.len(), "step"),
                meta.id
            );
            for k in many {
                eprintln!("    {k}");
            }
            return Err(Exit::CouldNotRun);
        }
        super::text::StepMatch::None => {}
    }
    let close = close_matches(wanted, &keys);
    eprintln!(
        "drplan: job {} ({} of plan {}) has no step `{wanted}`",
        meta.id, meta.operation, meta.plan_name
    );
    if close.is_empty() {
        eprintln!(
            "  steps are named like `{}`; `drplan show {}` lists them",
            keys.first()
                .map(String::as_str)
                .unwrap_or("group/post/step"),
            meta.id
        );
    } else {
        eprintln!("  did you mean:");
        for k in close {
            eprintln!("    {k}");
        }
    }
    Err(Exit::CouldNotRun)
}

fn act_inner(job: Option<JobId>, action: Option<Action>, opts: &EngineOpts) -> Result<Exit, Exit> {
    opts.check_time_scale()?;
    let dir = engine_host::data_dir(opts.data_dir.as_deref())?;
    if !dir.exists() {
        // Never create a store just to say a job is not in it.
        match job {
            Some(j) => eprintln!(
                "drplan: job {j} does not exist (no data directory `{}`)",
                dir.display()
            ),
            None => eprintln!("drplan: no data directory `{}`", dir.display()),
        }
        return Err(Exit::CouldNotRun);
    }
    let rt = engine_host::runtime()?;
    let printer = opts.printer();
    let time_scale = opts.time_scale;
    let fabric = opts.fabric.clone();
    rt.block_on(async move {
        let session = Session::open(&dir).await?;
        // The jobs to follow, and the one whose inventory the fabric uses.
        let (metas, main) = match job {
            Some(j) => {
                let Some(meta) = session.job_meta(j).await? else {
                    eprintln!("drplan: job {j} does not exist in `{}`", dir.display());
                    return Err(Exit::CouldNotRun);
                };
                (vec![meta.clone()], meta)
            }
            None => {
                let unfinished: Vec<JobMeta> = session
                    .all_jobs()
                    .await?
                    .into_iter()
                    .filter(|m| !m.status.is_terminal())
                    .collect();
                let Some(first) = unfinished.first().cloned() else {
                    let _ = super::emit(&format!("no unfinished jobs in `{}`\n", dir.display()));
                    return Ok(Exit::Ok);
                };
                (unfinished, first)
            }
        };
        let (plan, _) = session.job_plan(&main).await?;
        // Resolve the step before anything runs: a typo must not resume jobs.
        let step = match action.as_ref().and_then(Action::step) {
            Some(wanted) => {
                let ctx = JobContext::new(&plan, main.operation);
                Some(resolve_step(&main, &ctx, wanted)?)
            }
            None => None,
        };
        // A planned or unplanned failover asks first on a terminal.
        if let Some(Action::Cancel { yes, .. }) = &action
            && let Some(question) = super::prompt::cancel_question(&main)
            && !super::prompt::confirm_async(question, *yes).await
        {
            eprintln!("drplan: job {} not cancelled", main.id);
            return Ok(Exit::Problems);
        }
        let (running, updates) = session
            .follow_engine(&dir, fabric.as_deref(), time_scale, &plan)
            .await?;
        let ids: Vec<JobId> = metas.iter().map(|m| m.id).collect();
        let job_id = main.id;
        let e = running.api();
        let done = match (action, step) {
            (None, _) => Ok(()),
            (Some(Action::Ack { done, note, by, .. }), Some(s)) => {
                e.answer_manual(job_id, s, done, &by, note).await
            }
            (Some(Action::Retry { by, .. }), Some(s)) => e.retry(job_id, s, &by).await,
            (Some(Action::Skip { by, .. }), Some(s)) => e.skip(job_id, s, &by).await,
            (Some(Action::Cancel { by, .. }), _) => e.cancel(job_id, &by).await,
            (Some(Action::Cleanup { notes, by }), _) => e.complete_test(job_id, &notes, &by).await,
            // Step actions resolved their step above; nothing else gets here.
            (Some(_), None) => Ok(()),
        };
        if let Err(err) = done {
            eprintln!("drplan: job {job_id}: {err}");
            running.stop().await;
            // The core said no (not waiting, already finished, ...): 1.
            return Ok(if err.is_refusal() {
                Exit::Problems
            } else {
                Exit::CouldNotRun
            });
        }
        let exit =
            super::prompt::follow_prompting(e, printer, &ids, updates, &|| running.save_world())
                .await;
        running.stop().await;
        Ok(exit)
    })
}
