//! `drplan plans` and `drplan history PLAN`: what the store has run, for
//! auditors ("when was this plan last tested, did it pass, how long did
//! recovery take?") and for spotting a recovery time that creeps up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use drplan_engine::journal::JobMeta;
use drplan_engine::report::{Timeline, Verdict};
use serde::Serialize;

use super::engine_host;
use super::progress::{close_matches, duration};
use super::show::{Reader, time};
use super::validate::OutputFormat;
use super::{Exit, emit};

#[derive(Debug, Args)]
pub struct PlansArgs {
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: a table of the plans, or a JSON array
    /// `[{"plan","runs","last_test","last_failover","last_run"}]`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// A plan name (as `drplan plans` lists it) or a plan file.
    #[arg(value_name = "PLAN")]
    pub plan: String,
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format: the plan's runs and its RTO trend per failover kind,
    /// or JSON `{"plan","runs":[{"job","operation","status","verdict",...}],
    /// "trends":[...]}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

/// One run of a plan, as the history lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub job: u64,
    pub operation: String,
    /// `test`, `planned`, `unplanned`; `None` for commit, reprotect, ...
    pub failover: Option<&'static str>,
    pub plan_hash: String,
    pub requested_by: String,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub status: &'static str,
    pub verdict: Verdict,
    pub duration_ms: Option<u64>,
    pub rto_ms: Option<u64>,
    /// The RTO minus the previous run's of the same failover kind.
    pub rto_change_ms: Option<i64>,
    /// The notes given when a test was completed.
    pub notes: Option<String>,
}

impl Run {
    fn of(t: &Timeline) -> Run {
        Run {
            job: t.job.0,
            operation: t.operation.clone(),
            failover: t.failover,
            plan_hash: t.plan_hash.clone(),
            requested_by: t.requested_by.clone(),
            started_at: t.started_at,
            finished_at: t.finished_at,
            status: t.status,
            verdict: t.verdict,
            duration_ms: t.duration_ms,
            rto_ms: t.rto.achieved_ms,
            rto_change_ms: None,
            notes: t.test.as_ref().map(|c| c.notes.clone()),
        }
    }
}

/// RTO figures of one failover kind over a plan's runs.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub failover: &'static str,
    pub runs: usize,
    pub last_ms: Option<u64>,
    pub median_ms: Option<u64>,
    pub best_ms: Option<u64>,
    pub worst_ms: Option<u64>,
    /// Oldest first.
    pub series_ms: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub plan: String,
    pub runs: usize,
    pub last_test: Option<Run>,
    /// The last planned or unplanned failover (failbacks included).
    pub last_failover: Option<Run>,
    pub last_run: Option<Run>,
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub plan: String,
    pub runs: Vec<Run>,
    pub trends: Vec<Trend>,
}

/// Every job's timeline, oldest first, grouped by plan name.
fn by_plan(r: &Reader) -> Result<BTreeMap<String, Vec<Timeline>>, Exit> {
    let metas: Vec<JobMeta> = r.all_jobs()?;
    let mut out: BTreeMap<String, Vec<Timeline>> = BTreeMap::new();
    for m in &metas {
        let (t, _) = r.timeline(m)?;
        out.entry(m.plan_name.clone()).or_default().push(t);
    }
    Ok(out)
}

pub fn summaries(plans: &BTreeMap<String, Vec<Timeline>>) -> Vec<PlanSummary> {
    plans
        .iter()
        .map(|(name, ts)| {
            let last = |f: &dyn Fn(&Timeline) -> bool| ts.iter().rev().find(|t| f(t)).map(Run::of);
            PlanSummary {
                plan: name.clone(),
                runs: ts.len(),
                last_test: last(&|t| t.failover == Some("test")),
                last_failover: last(&|t| matches!(t.failover, Some("planned" | "unplanned"))),
                last_run: last(&|_| true),
            }
        })
        .collect()
}

pub fn history(name: &str, ts: &[Timeline]) -> History {
    let mut runs: Vec<Run> = ts.iter().map(Run::of).collect();
    let mut previous: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &mut runs {
        if let (Some(kind), Some(rto)) = (r.failover, r.rto_ms) {
            if let Some(p) = previous.get(kind) {
                r.rto_change_ms = Some(rto as i64 - *p as i64);
            }
            previous.insert(kind, rto);
        }
    }
    let trends = ["test", "planned", "unplanned"]
        .into_iter()
        .filter_map(|kind| {
            let of_kind: Vec<&Run> = runs.iter().filter(|r| r.failover == Some(kind)).collect();
            if of_kind.is_empty() {
                return None;
            }
            let series: Vec<u64> = of_kind.iter().filter_map(|r| r.rto_ms).collect();
            let mut sorted = series.clone();
            sorted.sort_unstable();
            Some(Trend {
                failover: kind,
                runs: of_kind.len(),
                last_ms: series.last().copied(),
                median_ms: (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2]),
                best_ms: sorted.first().copied(),
                worst_ms: sorted.last().copied(),
                series_ms: series,
            })
        })
        .collect();
    History {
        plan: name.to_string(),
        runs,
        trends,
    }
}

/// `▁▃▅█`: one bar per run, scaled between the best and the worst.
pub fn sparkline(series: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (Some(lo), Some(hi)) = (series.iter().min(), series.iter().max()) else {
        return String::new();
    };
    series
        .iter()
        .map(|v| {
            let i = if hi == lo {
                3
            } else {
                ((v - lo) * 7 / (hi - lo)) as usize
            };
            BARS[i]
        })
        .collect()
}

fn date(ms: Option<u64>) -> String {
    let t = time(ms);
    // `2026-11-26T15:04:05Z` → `2026-11-26 15:04`
    if t.len() >= 16 {
        format!("{} {}", &t[..10], &t[11..16])
    } else {
        t
    }
}

fn rto(ms: Option<u64>) -> String {
    ms.map(duration).unwrap_or_else(|| "-".into())
}

fn run_cell(r: &Option<Run>) -> String {
    match r {
        None => "never".into(),
        Some(r) => format!(
            "{} {} RTO {} (job {})",
            date(r.started_at),
            r.verdict.as_str(),
            rto(r.rto_ms),
            r.job
        ),
    }
}

fn plans_human(dir: &Path, s: &[PlanSummary]) -> String {
    if s.is_empty() {
        return format!("no plan has run in `{}`\n", dir.display());
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<20} {:>4}  {:<44}  LAST PLANNED/UNPLANNED FAILOVER",
        "PLAN", "RUNS", "LAST TEST FAILOVER"
    );
    for p in s {
        let failover = match &p.last_failover {
            Some(r) => format!("{}: {}", r.operation, run_cell(&p.last_failover)),
            None => "never".into(),
        };
        let _ = writeln!(
            o,
            "{:<20} {:>4}  {:<44}  {failover}",
            p.plan,
            p.runs,
            run_cell(&p.last_test)
        );
    }
    o
}

fn history_human(h: &History) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "plan {}: {}\n",
        h.plan,
        super::text::count(h.runs.len(), "run")
    );
    let _ = writeln!(
        o,
        "{:>5}  {:<16}  {:<30}  {:<11}  {:>8}  {:>8}  {:>8}  {:<12}  BY",
        "JOB", "STARTED (UTC)", "OPERATION", "OUTCOME", "DURATION", "RTO", "CHANGE", "PLAN HASH"
    );
    for r in &h.runs {
        let change = r
            .rto_change_ms
            .map(|c| {
                let sign = if c < 0 { "-" } else { "+" };
                format!("{sign}{}", duration(c.unsigned_abs()))
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{:>5}  {:<16}  {:<30}  {:<11}  {:>8}  {:>8}  {:>8}  {:<12}  {}",
            r.job,
            date(r.started_at),
            r.operation,
            r.verdict.as_str(),
            rto(r.duration_ms),
            rto(r.rto_ms),
            change,
            r.plan_hash.chars().take(12).collect::<String>(),
            r.requested_by
        );
    }
    if !h.trends.is_empty() {
        let _ = writeln!(o, "\nRTO trend (oldest first):");
        for t in &h.trends {
            let _ = writeln!(
                o,
                "  {:<9} {:>3} {:<4}  {}  last {}, median {}, best {}, worst {}",
                t.failover,
                t.runs,
                super::text::noun_for(t.runs, "run"),
                sparkline(&t.series_ms),
                rto(t.last_ms),
                rto(t.median_ms),
                rto(t.best_ms),
                rto(t.worst_ms)
            );
        }
    }
    o
}

fn json<T: Serialize>(v: &T) -> Exit {
    match serde_json::to_string_pretty(v) {
        Ok(mut t) => {
            t.push('\n');
            emit(&t)
        }
        Err(e) => {
            eprintln!("drplan: {e}");
            Exit::CouldNotRun
        }
    }
}

pub fn plans(args: &PlansArgs) -> Exit {
    let dir = match engine_host::data_dir(args.data_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // Listing never creates a store.
    let all = if dir.exists() {
        match Reader::open(Some(&dir)).and_then(|r| by_plan(&r)) {
            Ok(a) => a,
            Err(e) => return e,
        }
    } else {
        BTreeMap::new()
    };
    let s = summaries(&all);
    match args.format {
        OutputFormat::Json => json(&s),
        OutputFormat::Human => emit(&plans_human(&dir, &s)),
    }
}

/// The plan name an argument means: a plan file's `name:`, else the name.
fn plan_name(arg: &str) -> Result<String, Exit> {
    let p = Path::new(arg);
    if p.is_file() {
        let loaded = drplan_engine::plan::load(p, None);
        return match loaded.plan {
            Some(plan) => Ok(plan.name),
            None => {
                eprintln!(
                    "drplan: `{arg}` is not a valid plan (`drplan validate {arg}` says why); \
                     give the plan's name instead"
                );
                Err(Exit::Problems)
            }
        };
    }
    Ok(arg.to_string())
}

pub fn run_history(args: &HistoryArgs) -> Exit {
    match history_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

fn history_inner(args: &HistoryArgs) -> Result<Exit, Exit> {
    let name = plan_name(&args.plan)?;
    let r = Reader::open(args.data_dir.as_deref())?;
    let mut all = by_plan(&r)?;
    let Some(ts) = all.remove(&name) else {
        let names: Vec<String> = all.keys().cloned().collect();
        eprintln!(
            "drplan: plan `{name}` has never run in `{}`",
            r.dir.display()
        );
        let close = close_matches(&name, &names);
        if !close.is_empty() {
            eprintln!("  did you mean: {}", close.join(", "));
        } else if !names.is_empty() {
            eprintln!("  plans that ran: {}", names.join(", "));
        }
        return Err(Exit::CouldNotRun);
    };
    let h = history(&name, &ts);
    Ok(match args.format {
        OutputFormat::Json => json(&h),
        OutputFormat::Human => emit(&history_human(&h)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_between_best_and_worst() {
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[5, 5]), "▄▄");
        assert_eq!(sparkline(&[10, 20, 80]), "▁▂█");
    }
}
