//! `drplan watch JOB`: follow a job until it ends or waits for an
//! operator — first where it stands (one line per group), then live. On a
//! terminal it asks in place when the job waits, like `run`.
//!
//! Watching goes through the data directory's server when one runs; else
//! it hosts the engine like every command that follows a job (the store is
//! held by one process at a time): the job resumes if it was interrupted,
//! exactly as `drplan resume JOB` would.

use clap::Args;
use drplan_engine::store::JobId;

use super::engine_host::{self, Session};
use super::progress::{FollowFormat, duration, group_stats, now_ms};
use super::run::EngineOpts;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    #[command(flatten)]
    pub engine: EngineOpts,
}

pub fn run(args: &WatchArgs) -> Exit {
    match run_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &WatchArgs) -> Result<Exit, Exit> {
    let opts = &args.engine;
    opts.check_time_scale()?;
    let job = JobId(args.job);
    let dir = engine_host::data_dir(opts.data_dir.as_deref())?;
    if !dir.exists() {
        eprintln!(
            "drplan: job {job} does not exist (no data directory `{}`)",
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    let rt = engine_host::runtime()?;
    let printer = opts.printer();
    let time_scale = opts.time_scale;
    let fabric = opts.fabric.clone();
    rt.block_on(async move {
        // The data directory's server when one runs, else an engine here.
        let session = Session::open(&dir).await?;
        let Some(meta) = session.job_meta(job).await? else {
            eprintln!("drplan: job {job} does not exist in `{}`", dir.display());
            return Err(Exit::CouldNotRun);
        };
        let (plan, _) = session.job_plan(&meta).await?;
        let (running, updates) = session
            .follow_engine(&dir, fabric.as_deref(), time_scale, &plan)
            .await?;
        let api = running.api();
        // Where the job stands before following it.
        if !printer.quiet
            && let (Ok(Some(st)), Ok(ctx)) = (api.job(job).await, api.context(job).await)
        {
            let status = st.status();
            let now = now_ms();
            match printer.format {
                FollowFormat::Json => {
                    let v = serde_json::json!({
                        "job": job, "event": "watching", "status": status.as_str(),
                        "operation": meta.operation.to_string(), "plan": meta.plan_name,
                        "started_at": st.started_at,
                        "groups": group_stats(&st, &ctx),
                    });
                    let _ = emit(&format!("{v}\n"));
                }
                FollowFormat::Human => {
                    let since = st
                        .started_at
                        .map(|a| format!(", started {} ago", duration(now.saturating_sub(a))))
                        .unwrap_or_default();
                    let _ = emit(&format!(
                        "job {job}: {} of plan {} — {status}{since}\n",
                        meta.operation, meta.plan_name
                    ));
                }
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
