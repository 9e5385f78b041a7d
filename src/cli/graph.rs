//! `drplan graph`: draw the execution graph of a plan for one failover kind.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use drplan_engine::core::StepState;
use drplan_engine::plan::render::{NodeStyle, RenderOptions, Rgb, to_dot, to_mermaid};
use drplan_engine::plan::{self, Direction, FailoverKind, Operation};
use drplan_engine::store::JobId;

use super::progress::duration;
use super::render_diag::{Renderer, Sources};
use super::show::Reader;
use super::validate::{human_report, judge, load, width};
use super::{Exit, FabricArg, GlobalOpts, emit};

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The plan file (not needed with --job).
    #[arg(value_name = "PLAN", required_unless_present = "job")]
    pub plan: Option<PathBuf>,
    /// Draw the plan a job ran, each node coloured by its outcome in that
    /// job (green succeeded, red failed, amber waits for an operator, blue
    /// running, grey skipped), the critical path outlined.
    #[arg(long, value_name = "JOB", value_parser = super::text::parse_job_id, conflicts_with_all = ["plan", "failover", "reverse"])]
    pub job: Option<u64>,
    /// The data directory of --job (default: $DRPLAN_DATA_DIR, else the
    /// user's data directory + `/drplan`).
    #[arg(long, value_name = "DIR", requires = "job")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub fabric: FabricArg,
    /// Which failover to draw: the per-VM operations and the steps that
    /// apply differ by kind.
    #[arg(long, value_enum, default_value_t = Kind::Planned)]
    pub failover: Kind,
    /// Draw the failback (reverse direction) instead of the failover.
    #[arg(long)]
    pub reverse: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A drill: test VMs from replicas, production untouched.
    Test,
    /// Primary healthy: shut down, ship the final delta, fail over.
    Planned,
    /// Primary down: fail over to a recovery point.
    Unplanned,
}

impl From<Kind> for FailoverKind {
    fn from(k: Kind) -> FailoverKind {
        match k {
            Kind::Test => FailoverKind::Test,
            Kind::Planned => FailoverKind::Planned,
            Kind::Unplanned => FailoverKind::Unplanned,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT: `drplan graph PLAN | dot -Tsvg > plan.svg`.
    Dot,
    /// A Mermaid flowchart, for Markdown pages that render Mermaid.
    Mermaid,
}

pub fn run(args: &GraphArgs, global: &GlobalOpts) -> Exit {
    if let Some(job) = args.job {
        return match job_graph(job, args) {
            Ok(e) | Err(e) => e,
        };
    }
    let Some(plan_path) = args.plan.as_deref() else {
        // clap requires PLAN unless --job is given.
        eprintln!("drplan: give a PLAN file or --job JOB");
        return Exit::CouldNotRun;
    };
    let fabric = args.fabric.fabric.as_deref();
    let mut sources = Sources::default();
    let loaded = load(plan_path, fabric, &mut sources);
    let given: Vec<&Path> = std::iter::once(plan_path).chain(fabric).collect();
    let report = judge(plan_path, &loaded, &given, false);
    // Problems and warnings go to stderr, as `validate` renders them, so
    // stdout carries only the graph.
    let plan = match loaded.plan {
        Some(plan) if report.valid => plan,
        _ => {
            let exit = report.exit;
            print_stderr(&[report], &mut sources, global);
            // Not valid: 1, or 2 when a file could not be read at all.
            return exit.max(Exit::Problems);
        }
    };
    if report.warnings > 0 {
        print_stderr(&[report], &mut sources, global);
    }
    let mut op = Operation::failover(args.failover.into());
    if let Operation::Failover { direction, .. } = &mut op
        && args.reverse
    {
        *direction = Direction::Reverse;
    }
    let exec = plan::compile(&plan, op);
    tracing::info!(nodes = exec.nodes.len(), operation = %op, "plan compiled");
    let opts = RenderOptions::default();
    let text = match args.format {
        GraphFormat::Dot => to_dot(&plan, &exec, &opts),
        GraphFormat::Mermaid => to_mermaid(&plan, &exec, &opts),
    };
    emit(&text)
}

/// The graph of the plan a job ran, coloured by the job's outcomes.
fn job_graph(job: u64, args: &GraphArgs) -> Result<Exit, Exit> {
    let r = Reader::open(args.data_dir.as_deref())?;
    let meta = r.meta(JobId(job))?;
    let (t, plan) = r.timeline(&meta)?;
    // The main plan only: a test's cleanup is a separate, later phase.
    let exec = plan::compile(&plan, meta.operation);
    let mut opts = RenderOptions {
        title: Some(format!(
            "{}: {} (job {}, {})",
            plan.name, meta.operation, job, t.status
        )),
        ..RenderOptions::default()
    };
    for s in t.steps.iter().filter(|s| !s.cleanup) {
        let (fill, text, note) = match s.state {
            "succeeded" => (
                Rgb(0xce, 0xea, 0xd6),
                Rgb(0x0d, 0x65, 0x2d),
                format!(
                    "{}{}",
                    s.duration_ms.map(duration).unwrap_or_default(),
                    if s.attempts > 1 {
                        format!(", {} attempts", s.attempts)
                    } else {
                        String::new()
                    }
                ),
            ),
            "failed" | "timed_out" => (
                Rgb(0xf6, 0xae, 0xa9),
                Rgb(0x82, 0x1b, 0x13),
                match &s.detail {
                    StepState::Failed { error, .. } => {
                        format!("FAILED: {}", error.chars().take(60).collect::<String>())
                    }
                    _ => "TIMED OUT".into(),
                },
            ),
            "awaiting_operator" => (
                Rgb(0xfd, 0xe2, 0x93),
                Rgb(0x7a, 0x4f, 0x01),
                "waits for an operator".into(),
            ),
            "running" | "retry_waiting" => (
                Rgb(0xc6, 0xda, 0xfc),
                Rgb(0x17, 0x4e, 0xa6),
                s.state.replace('_', " "),
            ),
            "skipped" | "cancelled" => {
                (Rgb(0xe8, 0xea, 0xed), Rgb(0x5f, 0x63, 0x68), s.state.into())
            }
            _ => continue,
        };
        opts.styles.insert(
            s.id,
            NodeStyle {
                fill: Some(fill),
                border: s.critical.then_some(Rgb(0x7c, 0x3a, 0xed)),
                text: Some(text),
                note: Some(if s.critical {
                    format!("{note} (critical path)")
                } else {
                    note
                }),
            },
        );
    }
    let text = match args.format {
        GraphFormat::Dot => to_dot(&plan, &exec, &opts),
        GraphFormat::Mermaid => to_mermaid(&plan, &exec, &opts),
    };
    Ok(emit(&text))
}

fn print_stderr(
    reports: &[super::validate::PlanReport],
    sources: &mut Sources,
    global: &GlobalOpts,
) {
    let tty = std::io::stderr().is_terminal();
    let renderer = Renderer::new(global.color.enabled(tty), width(std::io::stderr()));
    // Best effort: if stderr is gone there is nobody to tell.
    let _ = std::io::stderr().write_all(human_report(reports, sources, &renderer).as_bytes());
}
