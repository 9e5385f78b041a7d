//! `drplan graph`: draw the execution graph of a plan for one failover kind.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use drplan_engine::plan::render::{RenderOptions, to_dot, to_mermaid};
use drplan_engine::plan::{self, Direction, FailoverKind, Operation};

use super::render_diag::{Renderer, Sources};
use super::validate::{human_report, judge, load, width};
use super::{Exit, FabricArg, GlobalOpts, emit};

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
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
    let fabric = args.fabric.fabric.as_deref();
    let mut sources = Sources::default();
    let loaded = load(&args.plan, fabric, &mut sources);
    let given: Vec<&Path> = std::iter::once(args.plan.as_path()).chain(fabric).collect();
    let report = judge(&args.plan, &loaded, &given, false);
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
