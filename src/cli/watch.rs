//! `drplan watch JOB`: follow a job until it ends or waits for an
//! operator — first where it stands (one line per group), then live. On a
//! terminal it asks in place when the job waits, like `run`.
//!
//! Watching hosts the engine like every command that follows a job (the
//! store is held by one process at a time): the job resumes if it was
//! interrupted, exactly as `drplan resume JOB` would.

use clap::Args;
use drplan_engine::store::JobId;

use super::engine_host::{self, Host, SimOptions, SimWorld};
use super::progress::{FollowFormat, duration, group_stats, now_ms};
use super::run::EngineOpts;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB")]
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
    let store = engine_host::open_store(&dir)?;
    let Some(meta) = engine_host::job_meta(store.as_ref(), job)? else {
        eprintln!("drplan: job {job} does not exist in `{}`", dir.display());
        return Err(Exit::CouldNotRun);
    };
    let plan = engine_host::job_plan(store.as_ref(), &meta)?;
    let inventory = engine_host::load_inventory(opts.fabric.as_deref(), &plan)?;
    let sim = SimOptions {
        time_scale: opts.time_scale,
        faults: None,
    };
    let world = SimWorld::load(&dir, &inventory, &sim)?;
    let rt = engine_host::runtime()?;
    let printer = opts.printer();
    Ok(rt.block_on(async move {
        let host = match Host::start(&dir, store, inventory, world).await {
            Ok(h) => h,
            Err(e) => return e,
        };
        let updates = host.engine.subscribe_all();
        // Where the job stands before following it.
        if !printer.quiet
            && let (Ok(Some(st)), Ok(ctx)) =
                (host.engine.job(job).await, host.engine.context(job).await)
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
        let world = &host.world;
        let exit = super::prompt::follow_prompting(&host.engine, printer, &[job], updates, &|| {
            world.save()
        })
        .await;
        host.stop().await;
        exit
    }))
}
