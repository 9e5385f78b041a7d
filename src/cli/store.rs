//! `drplan store check | export | import`: verify a data directory's store,
//! back it up to a portable JSON-lines file, and restore it from one.
//!
//! Exit codes (the contract of `src/cli/mod.rs`):
//! - `check`: 0 no error found (warnings allowed), 1 problems found (also a
//!   store too damaged to open), 2 could not run (no store there, in use by
//!   another process, written by a newer drplan, I/O error).
//! - `export`: 0 written, 1 written but records the store could not place
//!   were left out (run `check`), 2 could not run (as above, or damaged).
//! - `import`: 0 restored, 1 the file is damaged, truncated or edited
//!   (nothing was restored), 2 could not run (the target is not empty, the
//!   file is unreadable or from a newer drplan).

use std::fs;
use std::io::{self, BufReader, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use drplan_engine::store::StoreError;
use drplan_engine::store::backup::{self, BackupError};
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store_check::{self, Severity};

use super::text::count;
use super::validate::OutputFormat;
use super::{Exit, emit, engine_host};

pub const STORE_HELP: &str = "\
Examples:
  drplan store check
  drplan store export -o drplan-backup.jsonl
  drplan store import drplan-backup.jsonl --data-dir /var/lib/drplan-restored

A backup is one JSON object per line: a header (format version, next job id,
counts), one line per record (events, job metadata, snapshots, timers, leases,
replicated items, plan texts, the simulated fabric's world), and an end line
with a blake3 checksum. Stop `drplan serve` (or any running command) first:
a store in use cannot be read.

Exit codes:
  check   0 no error found, 1 problems found, 2 could not run
  export  0 written, 1 written without records the store could not place,
          2 could not run (no store, in use, damaged, newer format)
  import  0 restored, 1 the file is damaged/truncated (nothing restored),
          2 could not run (target not empty, unreadable or newer file)";

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Verify a store: decode every record, replay every job's log against
    /// its snapshot and metadata, check the timer and lease indexes.
    Check(CheckArgs),
    /// Back the store up to a portable JSON-lines file (stdout by default).
    Export(ExportArgs),
    /// Restore a store from an export into a new (or empty) data directory.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a summary line and the problems found, or JSON
    /// `{"next_job","counts","jobs_replayed","live_jobs","problems"}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write to FILE (atomically: a temporary file renamed into place)
    /// instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export to restore (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The data directory to create; it must not exist or be empty
    /// (default: $DRPLAN_DATA_DIR, else the user's data directory +
    /// `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: &StoreArgs) -> Exit {
    let result = match &args.command {
        StoreCommand::Check(a) => check(a),
        StoreCommand::Export(a) => export(a),
        StoreCommand::Import(a) => import(a),
    };
    result.unwrap_or_else(|e| e)
}

/// Opens an existing store for reading. Never creates one: a directory
/// without a store is "could not run". `damaged_exit` is what a store too
/// damaged to open exits with.
fn open_existing(dir: &Path, damaged_exit: Exit) -> Result<SledStore, Exit> {
    // A store whose log was deleted still has its marker: let the store
    // report that as damage rather than "nothing here".
    if !dir.join("db").is_file() && !dir.join("drplan.store").is_file() {
        eprintln!(
            "drplan: there is no drplan store in `{}` (no `db` file); pass --data-dir DIR",
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    SledStore::open_for_reading(dir).map_err(|e| {
        eprintln!("drplan: {e}");
        match e {
            StoreError::Corrupt { .. } => damaged_exit,
            _ => Exit::CouldNotRun,
        }
    })
}

fn check(args: &CheckArgs) -> Result<Exit, Exit> {
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    let store = open_existing(&dir, Exit::Problems)?;
    let report = store_check::check(&store).map_err(|e| {
        eprintln!("drplan: cannot read the store in `{}`: {e}", dir.display());
        // A read that fails half way through is damage, like a failed open.
        match e {
            StoreError::Corrupt { .. } => Exit::Problems,
            _ => Exit::CouldNotRun,
        }
    })?;
    let exit = if report.errors() > 0 {
        Exit::Problems
    } else {
        Exit::Ok
    };
    let text = match args.format {
        OutputFormat::Json => {
            let mut t = serde_json::to_string_pretty(&report).map_err(|e| {
                eprintln!("drplan: cannot render the report: {e}");
                Exit::CouldNotRun
            })?;
            t.push('\n');
            t
        }
        OutputFormat::Human => render_check(&dir, &report),
    };
    Ok(emit(&text).max(exit))
}

fn render_check(dir: &Path, r: &store_check::Report) -> String {
    use std::fmt::Write as _;
    let c = &r.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "store `{}`: {} ({} replayed, {} unfinished), {}, {}, \
         {}, {}, {}, {}, {}; next job id {}",
        dir.display(),
        count(c.jobs, "job"),
        r.jobs_replayed,
        r.live_jobs,
        count(c.events, "event"),
        count(c.snapshots, "snapshot"),
        count(c.timers, "timer"),
        count(c.leases, "lease"),
        count(c.items, "item"),
        count(c.texts, "text"),
        count(c.blobs, "blob"),
        r.next_job
    );
    for p in &r.problems {
        let _ = writeln!(out, "  {p}");
    }
    let warnings = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    let _ = match (r.errors(), warnings) {
        (0, 0) => writeln!(out, "ok: no problem found"),
        (0, w) => writeln!(out, "ok: no error, {}", count(w, "warning")),
        (e, w) => writeln!(
            out,
            "{}, {}: back the store up (`drplan store export`) before \
             anything else touches it",
            count(e, "error"),
            count(w, "warning")
        ),
    };
    out
}

fn export(args: &ExportArgs) -> Result<Exit, Exit> {
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    let store = open_existing(&dir, Exit::CouldNotRun)?;
    let summary = match &args.output {
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            match backup::export(&store, &mut out) {
                Ok(s) => s,
                // `drplan store export | head` is not an error worth a word.
                Err(BackupError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(Exit::Ok);
                }
                Err(e) => {
                    eprintln!("drplan: export failed: {e}");
                    return Err(Exit::CouldNotRun);
                }
            }
        }
        Some(path) => export_to_file(&store, path)?,
    };
    let h = &summary.header;
    eprintln!(
        "drplan: exported {}: {}, {}, {}; next job id {}{}",
        count(h.counts.total(), "record"),
        count(h.counts.jobs, "job"),
        count(h.counts.events, "event"),
        count(h.counts.snapshots, "snapshot"),
        h.next_job,
        args.output
            .as_ref()
            .map(|p| format!(" to `{}`", p.display()))
            .unwrap_or_default()
    );
    if summary.skipped.is_empty() {
        Ok(Exit::Ok)
    } else {
        eprintln!(
            "drplan: {} the store could not place left out (first: {}); run \
             `drplan store check`",
            count(summary.skipped.len(), "key"),
            summary.skipped[0]
        );
        Ok(Exit::Problems)
    }
}

/// Writes the export next to `path` and renames it into place once
/// complete and synced, so `path` is never a partial file.
fn export_to_file(store: &SledStore, path: &Path) -> Result<backup::ExportSummary, Exit> {
    let tmp = temp_sibling(path, "export");
    let result = (|| -> Result<backup::ExportSummary, String> {
        let file = fs::File::create(&tmp).map_err(|e| format!("cannot create: {e}"))?;
        let mut out = io::BufWriter::new(file);
        let summary = backup::export(store, &mut out).map_err(|e| e.to_string())?;
        let file = out
            .into_inner()
            .map_err(|e| format!("cannot write: {}", e.error()))?;
        file.sync_all().map_err(|e| format!("cannot sync: {e}"))?;
        fs::rename(&tmp, path).map_err(|e| format!("cannot rename into place: {e}"))?;
        sync_parent(path);
        Ok(summary)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        eprintln!("drplan: export to `{}` failed: {e}", path.display());
        Exit::CouldNotRun
    })
}

fn import(args: &ImportArgs) -> Result<Exit, Exit> {
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    match fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                eprintln!(
                    "drplan: `{}` is not empty; import only into a new data directory (a \
                     restore never overwrites a store)",
                    dir.display()
                );
                return Err(Exit::CouldNotRun);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!("drplan: cannot read `{}`: {e}", dir.display());
            return Err(Exit::CouldNotRun);
        }
    }
    let input: Box<dyn io::BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        match fs::File::open(&args.file) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                eprintln!(
                    "drplan: `{}` is a directory, not an export",
                    args.file.display()
                );
                return Err(Exit::CouldNotRun);
            }
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("drplan: cannot read `{}`: {e}", args.file.display());
                return Err(Exit::CouldNotRun);
            }
        }
    };
    // Restore into a temporary directory beside the target, then rename it
    // into place: the target is either absent/empty or a complete store.
    let tmp = temp_sibling(&dir, "import");
    let _ = fs::remove_dir_all(&tmp);
    let imported = (|| -> Result<backup::Header, Exit> {
        let store = engine_host::open_store(&tmp)?;
        let header = backup::import(input, &*store).map_err(|e| {
            eprintln!("drplan: cannot import `{}`: {e}", args.file.display());
            match e {
                BackupError::Bad { .. }
                | BackupError::Truncated { .. }
                | BackupError::Checksum { .. } => Exit::Problems,
                _ => Exit::CouldNotRun,
            }
        })?;
        drop(store);
        Ok(header)
    })();
    let header = match imported {
        Ok(h) => h,
        Err(exit) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(exit);
        }
    };
    // rename(2) replaces an empty directory; a non-empty one (someone
    // created files meanwhile) makes it fail, which is what we want.
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        eprintln!(
            "drplan: cannot move the restored store into `{}`: {e}",
            dir.display()
        );
        return Err(Exit::CouldNotRun);
    }
    sync_parent(&dir);
    eprintln!(
        "drplan: restored {} ({}, {}) into `{}`; next job id {}",
        count(header.counts.total(), "record"),
        count(header.counts.jobs, "job"),
        count(header.counts.events, "event"),
        dir.display(),
        header.next_job
    );
    let _ = io::stderr().flush();
    Ok(Exit::Ok)
}

/// `<dir>/.<name>.<what>-<pid>`: same filesystem, so a rename is atomic.
fn temp_sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "drplan".into());
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.{what}-{}", std::process::id()))
}

/// Makes a rename durable (best effort: the data itself is synced).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
}
