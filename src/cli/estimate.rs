//! `drplan estimate`: predict a plan's recovery time from its critical path,
//! with measured figures from past runs in the store where there are some
//! and labelled assumptions elsewhere. Nothing runs; the store is only read.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use drplan_engine::analysis::estimate::{
    DEFAULT_OPERATOR_DELAY, DurationModel, Estimate, estimate,
};
use drplan_engine::analysis::history::{Measurements, measurements_from_store_where};
use drplan_engine::fabric::SimConfig;
use drplan_engine::journal::{JobMeta, same_scale};
use drplan_engine::plan::compile::{Operation, compile};
use drplan_engine::plan::model::{FailoverKind, Inventory, Plan};
use serde::Serialize;

use super::engine_host;
use super::graph::Kind;
use super::progress::duration;
use super::render_diag::{Renderer, Sources};
use super::validate::{OutputFormat, human_report, judge, load, width};
use super::{Exit, GlobalOpts, emit};

/// VM operations in flight at once: what `drplan run` gives its engine
/// (`engine_host`), so a simulated wide group queues like a real one and
/// the estimate can say when its unlimited-parallelism path is optimistic.
pub const RUN_MAX_VM_OPS: usize = 8;

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// The failover to estimate (default: a summary of all three).
    #[arg(long, value_enum)]
    pub failover: Option<Kind>,
    /// Inventory file; overrides the plan's own `fabric:` key.
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
    /// The data directory whose past runs are measured (default:
    /// $DRPLAN_DATA_DIR, else the user's data directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Assume no history: every figure from the fabric's latencies and the
    /// plan (what `simulate` uses).
    #[arg(long)]
    pub no_history: bool,
    /// How long an operator takes to answer a manual step, when no answer
    /// was measured.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub operator_delay: Duration,
    /// The simulated fabric's time scale the estimate reports at: assumed
    /// latencies and the plan's waits are scaled by it, and only past runs
    /// made at this `drplan run --time-scale` are measured (`run` defaults
    /// to 0.01); the others are left out and counted.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub time_scale: f64,
    /// List every step's figure, not just the critical path.
    #[arg(long)]
    pub all: bool,
    /// Output format: the critical path and RTO of each failover kind, or
    /// JSON `{"plan","time_scale","estimates":[{"failover","rto_ms",
    /// "critical_path","steps",...}],"history",...}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration such as 90s, 5m or 1h: {e}"))
}

/// A validated plan (and its inventory, when it names one), diagnostics on
/// stderr. Shared by `estimate` and `simulate`.
pub fn load_plan(
    path: &Path,
    fabric: Option<&Path>,
    global: &GlobalOpts,
) -> Result<(Plan, String, Option<Inventory>), Exit> {
    let mut sources = Sources::default();
    let loaded = load(path, fabric, &mut sources);
    let given: Vec<&Path> = std::iter::once(path).chain(fabric).collect();
    let report = judge(path, &loaded, &given, false);
    let print = |sources: &mut Sources, report| {
        let tty = std::io::stderr().is_terminal();
        let renderer = Renderer::new(global.color.enabled(tty), width(std::io::stderr()));
        let _ = std::io::stderr().write_all(human_report(&[report], sources, &renderer).as_bytes());
    };
    match (loaded.plan, loaded.plan_text, loaded.inventory) {
        (Some(p), Some(t), inv) if report.valid => {
            if report.warnings > 0 {
                print(&mut sources, report);
            }
            Ok((p, t, inv))
        }
        _ => {
            let exit = report.exit.max(Exit::Problems);
            print(&mut sources, report);
            Err(exit)
        }
    }
}

pub fn check_time_scale(x: f64) -> Result<(), Exit> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        eprintln!("drplan: --time-scale must be a positive number, not {x}");
        Err(Exit::CouldNotRun)
    }
}

/// Where the measurements come from.
#[derive(Debug, Serialize)]
struct Source {
    data_dir: Option<String>,
    /// Finished jobs of this plan that were measured.
    jobs: Vec<u64>,
    /// Why there is no history, when there is none.
    note: Option<String>,
    /// Finished jobs of this plan that were not measured, by reason.
    left_out: Vec<LeftOut>,
}

/// Finished runs of the plan left out of the measurements, and why: only
/// runs made at the time scale the estimate reports are measured, since
/// the simulated fabric's durations scale with it (a run at 0.01 is a
/// hundred times faster than one at 1) and a median over several scales
/// is no figure at all.
#[derive(Debug, Serialize)]
struct LeftOut {
    /// `other_scale`, `mixed_scales` or `unknown_scale`.
    reason: &'static str,
    /// The time scale(s) they ran at (one for `other_scale`, several for
    /// `mixed_scales`, none when unknown).
    time_scales: Vec<f64>,
    jobs: Vec<u64>,
}

impl LeftOut {
    /// The reason for people, with what to do about it.
    fn note(&self) -> String {
        let runs = super::text::count(self.jobs.len(), "finished run");
        let ids: Vec<String> = self.jobs.iter().map(u64::to_string).collect();
        let jobs = format!(
            "{} {}",
            super::text::noun_for(self.jobs.len(), "job"),
            ids.join(", ")
        );
        let scales: Vec<String> = self.time_scales.iter().map(f64::to_string).collect();
        match self.reason {
            "other_scale" => format!(
                "left out {runs} at time scale {} ({jobs}): pass --time-scale {} to estimate \
                 from them",
                scales.join(""),
                scales.join("")
            ),
            "mixed_scales" => format!(
                "left out {runs} that ran partly at each of the time scales {} ({jobs}): \
                 their durations mix scales",
                scales.join(", ")
            ),
            _ => format!(
                "left out {runs} of unknown time scale ({jobs}): recorded before drplan \
                 kept the scale a job ran at"
            ),
        }
    }
}

/// Sorts a finished job into the measured (`true`) or a [`LeftOut`] group.
fn at_scale(meta: &JobMeta, scale: f64, left_out: &mut Vec<LeftOut>) -> bool {
    let scales = meta.time_scales();
    let reason = match scales.as_slice() {
        [s] if same_scale(*s, scale) => return true,
        [] => "unknown_scale",
        [_] => "other_scale",
        _ => "mixed_scales",
    };
    match left_out
        .iter_mut()
        .find(|l| l.reason == reason && l.time_scales == scales)
    {
        Some(l) => l.jobs.push(meta.id.0),
        None => left_out.push(LeftOut {
            reason,
            time_scales: scales,
            jobs: vec![meta.id.0],
        }),
    }
    false
}

/// [`measurements_from_store_where`] through the local API of the process that
/// holds the data directory.
async fn remote_measurements(
    c: &drplan_engine::api::client::Client,
    plan_name: &str,
    keep: &mut dyn FnMut(&JobMeta) -> bool,
) -> Result<Measurements, Exit> {
    use drplan_engine::api::Control;
    use drplan_engine::core::JobContext;
    let mut m = Measurements::default();
    let mut metas = c.jobs().await.map_err(engine_host::api_fail)?;
    metas.retain(|meta| {
        meta.plan_name == plan_name && drplan_engine::analysis::history::measurable(meta.status)
    });
    // The same order and filter as `measurements_from_store_where`.
    metas.sort_by_key(|meta| meta.id);
    metas.retain(|meta| keep(meta));
    metas.sort_by_key(|meta| meta.id);
    for meta in metas {
        let Some(plan) = c.plan(meta.id).await.map_err(engine_host::api_fail)? else {
            continue;
        };
        let events = c.events(meta.id).await.map_err(engine_host::api_fail)?;
        let ctx = JobContext::new(&plan.plan, meta.operation);
        m.add_job(meta.id, &ctx, &events).map_err(|e| {
            eprintln!("drplan: job {}: its log does not replay: {e}", meta.id);
            Exit::CouldNotRun
        })?;
    }
    Ok(m)
}

/// The measurements of `plan_name` in the data directory, without creating
/// anything: a directory without a store has no history.
fn history(args: &EstimateArgs, plan_name: &str) -> Result<(Measurements, Source), Exit> {
    if args.no_history {
        let note = Some("--no-history: every figure is assumed".into());
        return Ok((
            Measurements::default(),
            Source {
                data_dir: None,
                jobs: vec![],
                note,
                left_out: vec![],
            },
        ));
    }
    let dir = engine_host::data_dir(args.data_dir.as_deref())?;
    let shown = Some(dir.display().to_string());
    // sled's log file: its absence means there is no store (and opening
    // one would create it).
    if !dir.join("db").exists() {
        let note = Some(format!(
            "no store in `{}`: no past runs to measure",
            dir.display()
        ));
        return Ok((
            Measurements::default(),
            Source {
                data_dir: shown,
                jobs: vec![],
                note,
                left_out: vec![],
            },
        ));
    }
    // A store held by a running drplan is read through that process (its
    // local API); one held by a process that serves nothing is refused at
    // once (exit 2), never waited on.
    let rt = engine_host::runtime()?;
    let session = rt
        .block_on(engine_host::Session::open_reading(&dir))
        .inspect_err(|_| {
            eprintln!(
                "drplan: cannot read past runs from `{}`; --no-history estimates without them",
                dir.display()
            );
        })?;
    let mut left_out = Vec::new();
    let mut keep = |meta: &JobMeta| at_scale(meta, args.time_scale, &mut left_out);
    let m = match &session {
        engine_host::Session::Local(store) => {
            measurements_from_store_where(store.as_ref(), plan_name, &mut keep).map_err(|e| {
                eprintln!("drplan: {e}");
                Exit::CouldNotRun
            })?
        }
        engine_host::Session::Remote(c) => {
            rt.block_on(remote_measurements(c, plan_name, &mut keep))?
        }
    };
    for l in &mut left_out {
        l.jobs.sort_unstable();
    }
    let jobs = m.jobs.iter().map(|j| j.0).collect::<Vec<_>>();
    let note = jobs.is_empty().then(|| {
        format!(
            "no finished run of plan `{plan_name}` at time scale {} in `{}`",
            args.time_scale,
            dir.display()
        )
    });
    Ok((
        m,
        Source {
            data_dir: shown,
            jobs,
            note,
            left_out,
        },
    ))
}

/// One failover's estimate, ready to print.
#[derive(Debug, Serialize)]
struct KindEstimate {
    failover: String,
    rto_ms: Option<u64>,
    total_ms: u64,
    measured: usize,
    assumed: usize,
    critical_path: Vec<String>,
    rto_path: Vec<String>,
    steps: Vec<drplan_engine::analysis::estimate::NodeEstimate>,
    #[serde(skip)]
    estimate: Estimate,
}

fn estimate_kind(plan: &Plan, kind: FailoverKind, model: &DurationModel) -> KindEstimate {
    let exec = compile(plan, Operation::failover(kind));
    let e = estimate(&exec, model);
    let (measured, total) = e.count_measured();
    let keys = |p: &[usize]| p.iter().map(|&i| exec.nodes[i].key.clone()).collect();
    KindEstimate {
        failover: kind.to_string(),
        rto_ms: e.rto_ms,
        total_ms: e.total_ms,
        measured,
        assumed: total - measured,
        critical_path: keys(&e.critical_path),
        rto_path: keys(&e.rto_path),
        steps: e.nodes.clone(),
        estimate: e,
    }
}

/// The most VM operations the estimate's schedule has running at one time
/// (an operation ending when another starts does not overlap it).
fn peak_vm_ops(steps: &[drplan_engine::analysis::estimate::NodeEstimate]) -> usize {
    let mut edges: Vec<(u64, i32)> = steps
        .iter()
        .filter(|n| n.key.contains("/vm/") && n.finish_ms > n.start_ms)
        .flat_map(|n| [(n.start_ms, 1), (n.finish_ms, -1)])
        .collect();
    // Ends before starts at the same time.
    edges.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak.max(0) as usize
}

pub fn run(args: &EstimateArgs, global: &GlobalOpts) -> Exit {
    match run_inner(args, global) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &EstimateArgs, global: &GlobalOpts) -> Result<Exit, Exit> {
    check_time_scale(args.time_scale)?;
    let (plan, _, _) = load_plan(&args.plan, args.fabric.as_deref(), global)?;
    let (measured, source) = history(args, &plan.name)?;
    let mut hints: Vec<String> = source.left_out.iter().map(LeftOut::note).collect();
    let model = DurationModel {
        measured,
        fabric: SimConfig::default(),
        time_scale: args.time_scale,
        operator_delay: args.operator_delay,
    };
    let kinds: Vec<FailoverKind> = match args.failover {
        Some(k) => vec![k.into()],
        None => FailoverKind::ALL.to_vec(),
    };
    let results: Vec<KindEstimate> = kinds
        .iter()
        .map(|&k| estimate_kind(&plan, k, &model))
        .collect();
    // The phases put many VMs' operations side by side (every VM's
    // failover at once; an unplanned failover's best-effort shutdowns
    // beside them): say when the schedule needs more than the engine runs.
    for k in &results {
        let peak = peak_vm_ops(&k.steps);
        if peak > RUN_MAX_VM_OPS {
            hints.push(format!(
                "the {} failover runs up to {peak} VM operations at once in this estimate, but \
                 `drplan run` runs at most {RUN_MAX_VM_OPS}: the critical path assumes no such \
                 limit, so the real RTO is longer; `drplan simulate` models the limit",
                k.failover
            ));
        }
    }
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "plan": plan.name,
                "history": source,
                "operator_delay_ms": args.operator_delay.as_millis() as u64,
                "time_scale": args.time_scale,
                "notes": hints,
                "estimates": results,
            });
            Ok(emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )))
        }
        OutputFormat::Human => {
            let mut o = String::new();
            header(&mut o, &plan, &source, &hints, args);
            if args.failover.is_none() {
                summary(&mut o, &results);
            } else {
                for k in &results {
                    detail(&mut o, k, args.all);
                }
            }
            Ok(emit(&o))
        }
    }
}

fn header(o: &mut String, plan: &Plan, source: &Source, hints: &[String], args: &EstimateArgs) {
    use std::fmt::Write as _;
    let _ = writeln!(o, "estimate for plan {}", plan.name);
    // Every figure, measured or assumed, is on this scale.
    let _ = writeln!(
        o,
        "  scale:    time scale {} of the simulated fabric{}",
        args.time_scale,
        if args.time_scale == 1.0 {
            " (realistic latencies)"
        } else {
            ""
        }
    );
    match (&source.note, source.jobs.as_slice()) {
        (Some(n), _) => {
            let _ = writeln!(o, "  history:  {n}");
        }
        (None, jobs) => {
            let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
            let _ = writeln!(
                o,
                "  history:  {} in `{}` ({} {})",
                super::text::count(jobs.len(), "finished run"),
                source.data_dir.as_deref().unwrap_or("?"),
                super::text::noun_for(jobs.len(), "job"),
                ids.join(", ")
            );
        }
    }
    if args.operator_delay != DEFAULT_OPERATOR_DELAY {
        let _ = writeln!(
            o,
            "  assuming: operator delay {}",
            duration(args.operator_delay.as_millis() as u64),
        );
    }
    for h in hints {
        let _ = writeln!(o, "  note:     {h}");
    }
}

fn offset(ms: u64) -> String {
    if ms == 0 {
        "+0s".into()
    } else {
        format!("+{}", duration(ms))
    }
}

fn rto(ms: Option<u64>) -> String {
    ms.map_or_else(|| "- (no required VM)".into(), duration)
}

fn summary(o: &mut String, results: &[KindEstimate]) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "\n  {:<10} {:>10} {:>14}   FIGURES",
        "FAILOVER", "RTO", "PLAN COMPLETE"
    );
    for k in results {
        let _ = writeln!(
            o,
            "  {:<10} {:>10} {:>14}   {} measured, {} assumed",
            k.failover,
            rto(k.rto_ms),
            duration(k.total_ms),
            k.measured,
            k.assumed
        );
    }
    let _ = writeln!(
        o,
        "\nRTO: from the start until the last required VM is running. \
         `--failover KIND` shows the critical path and where each figure comes from."
    );
}

fn detail(o: &mut String, k: &KindEstimate, all: bool) {
    use std::fmt::Write as _;
    let e = &k.estimate;
    let _ = writeln!(o, "\n{} failover", k.failover);
    let _ = writeln!(
        o,
        "  recovery time (RTO): {}   (every required VM running)",
        rto(k.rto_ms)
    );
    let _ = writeln!(o, "  plan complete:       {}", duration(k.total_ms));
    let _ = writeln!(
        o,
        "  figures:             {} measured, {} assumed",
        k.measured, k.assumed
    );
    let row = |o: &mut String, i: usize, mark: &str| {
        let n = &e.nodes[i];
        let _ = writeln!(
            o,
            "  {:>9} -> {:>9}  {:>8}  {:<40} {}{mark}",
            offset(n.start_ms),
            offset(n.finish_ms),
            duration(n.figure.ms),
            n.key,
            n.figure.basis.describe(),
        );
    };
    let rto_end = e.rto_path.last().copied();
    let _ = writeln!(o, "\ncritical path (determines when the plan completes):");
    for &i in &e.critical_path {
        let mark = if Some(i) == rto_end { "   <- RTO" } else { "" };
        row(o, i, mark);
    }
    if rto_end.is_some_and(|r| !e.critical_path.contains(&r)) {
        let _ = writeln!(o, "\npath to the RTO (the last required VM running):");
        for &i in &e.rto_path {
            let mark = if Some(i) == rto_end { "   <- RTO" } else { "" };
            row(o, i, mark);
        }
    }
    if all {
        let _ = writeln!(o, "\nevery step:");
        for i in 0..e.nodes.len() {
            row(o, i, "");
        }
    }
}
