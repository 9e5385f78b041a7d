//! `drplan validate`: load and check plans, report every problem.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use drplan_engine::plan::diag::codes;
use drplan_engine::plan::{self, Diagnostic, Loaded, Severity};
use serde::Serialize;

use super::render_diag::{Renderer, Sources};
use super::{Exit, FabricArg, GlobalOpts, emit};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Plan files to check.
    #[arg(value_name = "PLAN", required = true)]
    pub plans: Vec<PathBuf>,
    #[command(flatten)]
    pub fabric: FabricArg,
    /// Output format: compiler-style reports with source snippets and a
    /// summary per plan, or JSON
    /// `{"plans":[{"file","valid","errors","warnings","diagnostics"}]}`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
    /// Treat warnings as problems (exit 1).
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    // Neutral wording: many commands share this enum, and each describes
    // what it prints in its own `--format` field's doc.
    /// Text for people (what it shows: see above).
    Human,
    /// One JSON document for scripts (its shape: see above).
    Json,
}

/// Size of a valid plan, for the summary line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub groups: usize,
    pub vms: usize,
    pub steps: usize,
}

/// The result of checking one plan: what the JSON report contains per plan.
#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub file: String,
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    /// Present when the plan is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    pub diagnostics: Vec<Diagnostic>,
    #[serde(skip)]
    pub exit: Exit,
}

/// The JSON document `--format json` prints.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    plans: &'a [PlanReport],
}

/// Codes that mean a file named on the command line could not be read at
/// all: that is "could not run" (exit 2), not a problem in a plan.
const UNREADABLE: [&str; 3] = [codes::IO, codes::TOO_LARGE, codes::NOT_UTF8];

/// Judge a loaded plan. `given` are the files named on the command line (the
/// plan and `--fabric`): failing to read one of them is a usage problem,
/// while an unreadable inventory named by the plan's own `fabric:` key is a
/// problem in the plan.
pub fn judge(
    plan_path: &Path,
    loaded: &Loaded,
    given: &[&Path],
    deny_warnings: bool,
) -> PlanReport {
    let errors = count(&loaded.diagnostics, Severity::Error);
    let warnings = count(&loaded.diagnostics, Severity::Warning);
    let valid = !loaded.failed(deny_warnings);
    let given: HashSet<String> = given.iter().map(|p| p.display().to_string()).collect();
    let unreadable = loaded
        .diagnostics
        .iter()
        .any(|d| UNREADABLE.contains(&d.code) && given.contains(&d.file));
    let exit = if unreadable {
        Exit::CouldNotRun
    } else if valid {
        Exit::Ok
    } else {
        Exit::Problems
    };
    let stats = loaded.plan.as_ref().filter(|_| valid).map(|p| Stats {
        groups: p.groups.len(),
        vms: p.groups.iter().map(|g| g.vms.len()).sum(),
        steps: p
            .groups
            .iter()
            .map(|g| g.pre.len() + g.post.len())
            .sum::<usize>()
            + p.test.cleanup.len(),
    });
    PlanReport {
        file: plan_path.display().to_string(),
        valid,
        errors,
        warnings,
        stats,
        diagnostics: loaded.diagnostics.clone(),
        exit,
    }
}

fn count(diags: &[Diagnostic], severity: Severity) -> usize {
    diags.iter().filter(|d| d.severity == severity).count()
}

fn plural(n: usize, word: &str) -> String {
    super::text::count(n, word)
}

/// `plans/x.yaml: 2 errors, 1 warning` or
/// `plans/x.yaml: valid (12 groups, 340 VMs, 57 steps)`.
pub fn summary(r: &PlanReport) -> String {
    if let (true, Some(s)) = (r.valid, r.stats) {
        let size = format!(
            "{}, {}, {}",
            plural(s.groups, "group"),
            plural(s.vms, "VM"),
            plural(s.steps, "step")
        );
        if r.warnings > 0 {
            format!(
                "{}: valid with {} ({size})",
                r.file,
                plural(r.warnings, "warning")
            )
        } else {
            format!("{}: valid ({size})", r.file)
        }
    } else if r.errors == 0 && r.warnings == 0 {
        // No plan and nothing said why: an engine bug, but say something
        // true rather than "valid" or nothing.
        format!("{}: not valid (no diagnostic was produced)", r.file)
    } else {
        let mut s = format!(
            "{}: {}, {}",
            r.file,
            plural(r.errors, "error"),
            plural(r.warnings, "warning")
        );
        if r.errors == 0 {
            s.push_str(" (warnings denied)");
        }
        s
    }
}

/// The most diagnostics a human report renders. A plan generated wrong
/// (20,000 invalid names) would otherwise print 8 MB of snippets; the
/// summary lines still count every problem, and `--format json` lists them
/// all.
pub const MAX_RENDERED: usize = 200;

/// Render the diagnostics of `reports` (each once, even when several plans
/// share an inventory; the first [`MAX_RENDERED`], then how many more there
/// are) and then one summary line per plan.
pub fn human_report(reports: &[PlanReport], sources: &mut Sources, renderer: &Renderer) -> String {
    let mut out = String::new();
    let mut seen = HashSet::new();
    let mut not_shown = 0;
    for r in reports {
        for d in &r.diagnostics {
            let key = (
                d.file.as_str(),
                d.line,
                d.column,
                d.code,
                d.message.as_str(),
            );
            if !seen.insert(key) {
                continue;
            }
            if seen.len() > MAX_RENDERED {
                not_shown += 1;
                continue;
            }
            out.push_str(&renderer.render(d, sources));
            out.push('\n');
        }
    }
    if not_shown > 0 {
        out.push_str(&format!(
            "… and {} not shown: the first {MAX_RENDERED} are above (fix them first, or see \
             every one with `--format json`)\n\n",
            plural(not_shown, "more problem")
        ));
    }
    for r in reports {
        out.push_str(&summary(r));
        out.push('\n');
    }
    out
}

/// Wrap width for reports written to `stream`: the terminal's width (COLUMNS
/// wins when set), or a fixed 100 columns when not on a terminal, so piped
/// output does not depend on where it was produced.
pub fn width(stream: impl std::os::fd::AsFd + IsTerminal) -> usize {
    if !stream.is_terminal() {
        return 100;
    }
    let from_env = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let from_tty = terminal_size::terminal_size_of(&stream).map(|(w, _)| usize::from(w.0));
    from_env.or(from_tty).unwrap_or(100).max(40)
}

/// Load a plan and remember its texts for snippets.
pub fn load(path: &Path, fabric: Option<&Path>, sources: &mut Sources) -> Loaded {
    tracing::info!(plan = %path.display(), "loading plan");
    let loaded = plan::load(path, fabric);
    sources.insert(&path.display().to_string(), loaded.plan_text.as_deref());
    if let Some(fp) = &loaded.fabric_path {
        sources.insert(&fp.display().to_string(), loaded.fabric_text.as_deref());
    }
    tracing::debug!(
        plan = %path.display(),
        diagnostics = loaded.diagnostics.len(),
        valid = loaded.plan.is_some(),
        "plan loaded"
    );
    loaded
}

pub fn run(args: &ValidateArgs, global: &GlobalOpts) -> Exit {
    let fabric = args.fabric.fabric.as_deref();
    let mut sources = Sources::default();
    let reports: Vec<PlanReport> = args
        .plans
        .iter()
        .map(|p| {
            let loaded = load(p, fabric, &mut sources);
            let given: Vec<&Path> = std::iter::once(p.as_path()).chain(fabric).collect();
            judge(p, &loaded, &given, args.deny_warnings)
        })
        .collect();
    let exit = reports.iter().map(|r| r.exit).max().unwrap_or(Exit::Ok);
    let text = match args.format {
        OutputFormat::Json => {
            let mut t = serde_json::to_string_pretty(&JsonReport { plans: &reports })
                .expect("diagnostics always serialise");
            t.push('\n');
            t
        }
        OutputFormat::Human => {
            let tty = std::io::stdout().is_terminal();
            let renderer = Renderer::new(global.color.enabled(tty), width(std::io::stdout()));
            human_report(&reports, &mut sources, &renderer)
        }
    };
    emit(&text).max(exit)
}

#[cfg(test)]
mod tests {
    use drplan_engine::plan::diag::Pos;

    use super::*;

    fn report(diags: Vec<Diagnostic>, given: &[&str]) -> PlanReport {
        let loaded = Loaded {
            diagnostics: diags,
            ..Loaded::default()
        };
        let given: Vec<&Path> = given.iter().map(Path::new).collect();
        judge(Path::new("p.yaml"), &loaded, &given, false)
    }

    #[test]
    fn unreadable_given_files_are_could_not_run() {
        let d = |f: &str| Diagnostic::error(codes::IO, f, Pos::UNKNOWN, "cannot read");
        assert_eq!(
            report(vec![d("p.yaml")], &["p.yaml"]).exit,
            Exit::CouldNotRun
        );
        assert_eq!(
            report(vec![d("f.yaml")], &["p.yaml", "f.yaml"]).exit,
            Exit::CouldNotRun
        );
        // An inventory named inside the plan: a problem of the plan.
        assert_eq!(
            report(vec![d("inv.yaml")], &["p.yaml"]).exit,
            Exit::Problems
        );
        let syntax = Diagnostic::error(codes::SYNTAX, "p.yaml", Pos::new(1, 1), "bad");
        let r = report(vec![syntax], &["p.yaml"]);
        assert_eq!((r.exit, r.errors, r.warnings), (Exit::Problems, 1, 0));
        assert_eq!(summary(&r), "p.yaml: 1 error, 0 warnings");
    }

    #[test]
    fn summaries_pluralise_and_flag_denied_warnings() {
        let w = Diagnostic::warning(codes::NEVER_RUNS, "p.yaml", Pos::new(1, 1), "w");
        let loaded = Loaded {
            diagnostics: vec![w.clone(), w],
            ..Loaded::default()
        };
        let r = judge(Path::new("p.yaml"), &loaded, &[], true);
        assert_eq!(
            summary(&r),
            "p.yaml: 0 errors, 2 warnings (warnings denied)"
        );
        let r = PlanReport {
            file: "x.yaml".into(),
            valid: true,
            errors: 0,
            warnings: 1,
            stats: Some(Stats {
                groups: 1,
                vms: 340,
                steps: 57,
            }),
            diagnostics: vec![],
            exit: Exit::Ok,
        };
        assert_eq!(
            summary(&r),
            "x.yaml: valid with 1 warning (1 group, 340 VMs, 57 steps)"
        );
    }
}
