//! `drplan jobs`: list the jobs a data directory holds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use drplan_engine::journal::JobMeta;
use drplan_engine::store::sled_store::{SledStore, default_data_dir};
use drplan_engine::store::{Store, codec};

use super::validate::OutputFormat;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format.
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
            Err(e) => {
                eprintln!("drplan: {e}");
                return Exit::CouldNotRun;
            }
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

fn read_jobs(dir: &std::path::Path) -> Result<Vec<JobMeta>, String> {
    let store = SledStore::open(dir).map_err(|e| e.to_string())?;
    let mut metas = Vec::new();
    for (id, bytes) in store.jobs().map_err(|e| e.to_string())? {
        let meta: JobMeta =
            codec::decode(&bytes).map_err(|e| format!("job {id} in `{}`: {e}", dir.display()))?;
        metas.push(meta);
    }
    metas.sort_by_key(|m| m.id);
    Ok(metas)
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
