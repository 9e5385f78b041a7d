//! `drplan jobs`: list the jobs a data directory holds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::api::Control;
use drplan_engine::journal::JobMeta;
use drplan_engine::store::sled_store::default_data_dir;

use super::engine_host;
use super::validate::OutputFormat;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a table of the jobs, or a JSON array of job records
    /// `[{"id","plan_name","operation","status","requested_by","parent",
    /// "created_at","updated_at",...}]`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

pub fn run(args: &JobsArgs) -> Exit {
    let dir = match args
        .data_dir
        .clone()
        .map(Ok)
        .unwrap_or_else(default_data_dir)
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("drplan: {e}");
            return Exit::CouldNotRun;
        }
    };
    // Listing never creates a store: a directory that does not exist holds
    // no jobs.
    let metas = if dir.exists() {
        match read_jobs(&dir) {
            Ok(m) => m,
            Err(e) => return e,
        }
    } else {
        Vec::new()
    };
    match args.format {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(&metas).expect("job records serialise");
            text.push('\n');
            emit(&text)
        }
        OutputFormat::Human => emit(&render(&dir, &metas)),
    }
}

/// The jobs from the data directory's server, else from its store.
fn read_jobs(dir: &std::path::Path) -> Result<Vec<JobMeta>, Exit> {
    let rt = engine_host::runtime()?;
    rt.block_on(async {
        match engine_host::Session::open_reading(dir).await? {
            engine_host::Session::Local(store) => engine_host::all_jobs(store.as_ref()),
            engine_host::Session::Remote(c) => c.jobs().await.map_err(engine_host::api_fail),
        }
    })
}

fn render(dir: &std::path::Path, metas: &[JobMeta]) -> String {
    if metas.is_empty() {
        return format!("no jobs in `{}`\n", dir.display());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<20}  {:<28}  {:<24}  {:<14}  CREATED (UTC)",
        "JOB", "STATUS", "OPERATION", "PLAN", "BY"
    );
    for m in metas {
        let created =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(m.created_at));
        let _ = writeln!(
            out,
            "{:>6}  {:<20}  {:<28}  {:<24}  {:<14}  {created}",
            m.id.to_string(),
            m.status.to_string(),
            m.operation.to_string(),
            m.plan_name,
            m.requested_by
        );
    }
    out
}
