//! `drplan report JOB --format md|html [-o FILE]`: the audit record of a
//! drill or failover — who, what, when, the verdict, the achieved RTO, per
//! group and per VM durations, every failure with its output, the notes of
//! a completed test, and (HTML) a Gantt chart of the run.
//!
//! The HTML page is self-contained (inline CSS, inline SVG, no script, no
//! network) and well-formed XML, so it opens anywhere, can be archived as
//! one file and is checked by an XML parser in the tests. Every text from
//! the plan, the operators or script output is escaped.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use drplan_engine::report::{StepView, Timeline, Verdict};
use drplan_engine::store::JobId;

use super::progress::duration;
use super::show::{Reader, counts_text, error_class, rpo_text, rto_text, skip_text, time};
use super::{Exit, emit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown (tables; renders on any forge).
    Md,
    /// One self-contained HTML page with a Gantt chart (inline SVG).
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The job id (as `drplan jobs` lists it).
    #[arg(value_name = "JOB", value_parser = super::text::parse_job_id)]
    pub job: u64,
    /// The data directory (default: $DRPLAN_DATA_DIR, else the user's data
    /// directory + `/drplan`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Report format: Markdown, or one HTML page.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Exit {
    match run_inner(args) {
        Ok(e) | Err(e) => e,
    }
}

fn run_inner(args: &ReportArgs) -> Result<Exit, Exit> {
    let r = Reader::open(args.data_dir.as_deref())?;
    let meta = r.meta(JobId(args.job))?;
    let (t, _) = r.timeline(&meta)?;
    let text = match args.format {
        ReportFormat::Md => markdown(&t),
        ReportFormat::Html => html(&t),
    };
    match &args.output {
        None => Ok(emit(&text)),
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                eprintln!("drplan: cannot write `{}`: {e}", path.display());
                Exit::CouldNotRun
            })?;
            eprintln!(
                "drplan: report of job {} written to {}",
                t.job,
                path.display()
            );
            Ok(Exit::Ok)
        }
    }
}

fn opt_duration(ms: Option<u64>) -> String {
    ms.map(duration).unwrap_or_else(|| "-".into())
}

fn offset(t: &Timeline, at: Option<u64>) -> String {
    match (t.started_at, at) {
        (Some(s), Some(a)) => format!("+{}", duration(a.saturating_sub(s))),
        _ => "-".into(),
    }
}

fn title(t: &Timeline) -> String {
    format!(
        "drplan report: {} of plan {} (job {})",
        t.operation, t.plan, t.job
    )
}

/// The facts at the top of both formats: (label, value).
fn facts(t: &Timeline) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("Plan", t.plan.clone()),
        ("Plan content hash (blake3)", t.plan_hash.clone()),
        ("Operation", t.operation.clone()),
        ("Job", t.job.to_string()),
        ("Started by", t.requested_by.clone()),
        ("Started", time(t.started_at)),
        ("Ended", time(t.finished_at)),
        ("Duration", opt_duration(t.duration_ms)),
        ("Status", t.status.to_string()),
        ("Outcome", t.verdict.as_str().to_string()),
        ("Achieved RTO", rto_text(t)),
    ];
    let (vms, failures) = counts_text(t);
    if t.counts.vms_required > 0 {
        v.push(("VMs recovered", vms));
    }
    v.push(("Failures", failures));
    if let Some(rpo) = rpo_text(t) {
        v.push(("Data lost (achieved RPO)", rpo));
    }
    if let Some(ms) = t.critical_path_ms {
        v.push((
            "Critical path",
            format!(
                "{} over {}",
                duration(ms),
                super::text::count(t.critical_path.len(), "step")
            ),
        ));
    }
    if let Some(p) = t.parent {
        v.push(("Follows job", p.to_string()));
    }
    if let Some(c) = &t.test {
        let how = if c.forced {
            "forcibly ended at its deadline"
        } else {
            "completed"
        };
        v.push((
            "Test closed",
            format!("{how} by {} at {}", c.by, time(Some(c.at))),
        ));
    }
    v
}

/// Markdown text: renderers pass inline HTML through, so markup from plan
/// names, notes or errors is escaped; `*`, `_` and backticks are escaped so
/// a name like `web_01_*` stays literal.
fn md(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '*' | '_' | '`' | '[' | ']' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            c => o.push(c),
        }
    }
    o
}

/// A Markdown table cell: escaped, no line breaks, pipes escaped.
fn cell(s: &str) -> String {
    md(s).replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn fence(text: &str) -> String {
    // A fence longer than any backtick run inside the text.
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

pub fn markdown(t: &Timeline) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", md(&title(t)));
    let _ = writeln!(o, "| | |\n|---|---|");
    for (k, v) in facts(t) {
        let v = if k == "Outcome" {
            format!("**{v}**")
        } else {
            cell(&v)
        };
        let _ = writeln!(o, "| {k} | {v} |");
    }
    if let Some(c) = &t.test {
        let _ = writeln!(o, "\n## Test notes\n");
        for l in c.notes.lines() {
            let _ = writeln!(o, "> {}", md(l));
        }
    }
    let answers: Vec<&StepView> = t.steps.iter().filter(|s| s.answer.is_some()).collect();
    if !answers.is_empty() {
        let _ = writeln!(o, "\n## Manual steps\n");
        let _ = writeln!(
            o,
            "| step | answer | by | at | note |\n|---|---|---|---|---|"
        );
        for s in answers {
            let a = s.answer.as_ref().expect("filtered");
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                cell(&s.key),
                if a.done { "done" } else { "NOT done" },
                cell(&a.by),
                time(Some(a.at)),
                cell(a.note.as_deref().unwrap_or(""))
            );
        }
    }
    if !t.errors.is_empty() {
        let _ = writeln!(o, "\n## Errors\n");
        for e in &t.errors {
            let _ = writeln!(o, "- {}", md(&e.replace('\n', " ")));
        }
    }
    if !t.recovery_points.is_empty() {
        let _ = writeln!(o, "\n## Recovery points used\n");
        let _ = writeln!(
            o,
            "Data lost: from the recovery point to the job's start (0 for the final delta of a planned failover).\n\n| VM | point | type | data lost | step |\n|---|---|---|---|---|"
        );
        for p in &t.recovery_points {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                cell(&p.vm),
                time(Some(p.point_at)),
                p.kind.as_str(),
                duration(p.data_loss_ms),
                cell(&p.step)
            );
        }
    }
    if !t.operator_actions.is_empty() {
        let _ = writeln!(o, "\n## Operator actions\n");
        let _ = writeln!(
            o,
            "| at | by | action | step | note |\n|---|---|---|---|---|"
        );
        for a in &t.operator_actions {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                time(Some(a.at)),
                cell(&a.by),
                a.action,
                cell(a.step.as_deref().unwrap_or("")),
                cell(a.note.as_deref().unwrap_or(""))
            );
        }
    }
    let _ = writeln!(o, "\n## Groups\n");
    let _ = writeln!(
        o,
        "| group | VMs done | VMs failed | start | duration |\n|---|---|---|---|---|"
    );
    for g in &t.groups {
        let _ = writeln!(
            o,
            "| {} | {}/{} | {} | {} | {} |",
            cell(&g.name),
            g.vms_done,
            g.vms_total,
            g.vms_failed,
            offset(t, g.started_at),
            opt_duration(g.duration_ms)
        );
    }
    let _ = writeln!(o, "\n## VMs\n");
    let _ = writeln!(
        o,
        "| VM | group | required | state | running at | duration |\n|---|---|---|---|---|---|"
    );
    for g in &t.groups {
        for vm in &g.vms {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&vm.name),
                cell(&g.name),
                if vm.optional { "optional" } else { "required" },
                vm.state,
                offset(t, vm.up_at),
                opt_duration(vm.duration_ms)
            );
        }
    }
    let _ = writeln!(o, "\n## Failures\n");
    if t.failures.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for f in &t.failures {
        let _ = writeln!(
            o,
            "### {} (attempt {}){}\n\nAt {}: {} ({})\n",
            md(&f.step),
            f.attempt,
            failure_note(f),
            time(Some(f.at)),
            md(&f.error),
            error_class(f.error_kind, f.retryable)
        );
        if let Some(tail) = &f.output_tail {
            let fence = fence(tail);
            let _ = writeln!(o, "{fence}text\n{}\n{fence}\n", tail.trim_end());
        }
    }
    if !t.warnings.is_empty() {
        let _ = writeln!(o, "\n## Warnings\n");
        for w in &t.warnings {
            let _ = writeln!(o, "- {}", md(&w.replace('\n', " ")));
        }
    }
    let _ = writeln!(o, "\n## Timeline\n");
    let _ = writeln!(
        o,
        "Steps marked ★ are on the critical path.\n\n| | step | state | start | started (UTC) | ended (UTC) | duration | attempts |\n|---|---|---|---|---|---|---|---|"
    );
    for s in &t.steps {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            if s.critical { "★" } else { "" },
            cell(&s.key),
            s.state,
            offset(t, s.started_at),
            time(s.started_at),
            time(s.finished_at),
            opt_duration(s.duration_ms),
            s.attempts
        );
    }
    let _ = writeln!(
        o,
        "\n_Achieved RTO: from the job's start until the last required (not optional) VM was running. Generated by drplan._"
    );
    o
}

/// How a failure was resolved, for its heading.
fn failure_note(f: &drplan_engine::report::FailureView) -> &'static str {
    match (f.recovered, f.skipped, f.optional) {
        (true, _, _) => " (recovered: a later attempt succeeded)",
        (false, true, false) => " (skipped by an operator: an error accepted)",
        (false, true, true) => " (optional, skipped by an operator)",
        (false, false, true) => " (optional)",
        (false, false, false) => "",
    }
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters are not allowed in XML: a script's output
            // may carry them (colour codes).
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Success => "ok",
        Verdict::Warnings => "warn",
        Verdict::Errors => "err",
        Verdict::Cancelled => "cancel",
        Verdict::InProgress => "run",
    }
}

fn step_class(s: &StepView) -> &'static str {
    match s.state {
        "succeeded" if s.attempts > 1 => "warn",
        "succeeded" => "ok",
        "failed" | "timed_out" => "err",
        "skipped" | "cancelled" => "skip",
        "pending" => "pending",
        _ => "run",
    }
}

const CSS: &str = "
body{font-family:-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1f2933;margin:0;background:#f4f6f8}
main{max-width:1180px;margin:0 auto;padding:28px 36px 48px;background:#fff;min-height:100vh;box-shadow:0 0 24px rgba(0,0,0,.06)}
header{display:flex;justify-content:space-between;align-items:flex-start;border-bottom:3px solid #1f3a5f;padding-bottom:14px;margin-bottom:20px}
header h1{font-size:22px;margin:0 0 4px;color:#1f3a5f}
header .sub{color:#52606d;font-size:13px}
.badge{font-weight:700;font-size:15px;letter-spacing:.06em;padding:8px 16px;border-radius:6px;color:#fff;white-space:nowrap}
.badge.ok{background:#1e8e3e}.badge.warn{background:#c77700}.badge.err{background:#c5221f}.badge.cancel{background:#5f6368}.badge.run{background:#1a73e8}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:0 0 22px}
.card{border:1px solid #d9e2ec;border-radius:8px;padding:10px 14px}
.card .k{font-size:11px;text-transform:uppercase;letter-spacing:.08em;color:#7b8794}
.card .v{font-size:20px;font-weight:600;margin-top:4px;color:#102a43}
.card .n{font-size:12px;color:#52606d;margin-top:2px}
h2{font-size:16px;color:#1f3a5f;border-bottom:1px solid #d9e2ec;padding-bottom:4px;margin:26px 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;background:#f0f4f8;color:#334e68;font-weight:600}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts td:first-child{color:#52606d;width:220px}
code,pre{font-family:'SFMono-Regular',Menlo,Consolas,monospace;font-size:12px}
pre{background:#102a43;color:#e4e7eb;padding:10px 12px;border-radius:6px;overflow-x:auto;white-space:pre-wrap}
.st{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11px;font-weight:600}
.st.ok{background:#e6f4ea;color:#137333}.st.warn{background:#fef7e0;color:#b06000}.st.err{background:#fce8e6;color:#c5221f}
.st.skip,.st.pending,.st.cancel{background:#f1f3f4;color:#5f6368}.st.run{background:#e8f0fe;color:#1967d2}
.fail{border-left:4px solid #c5221f;padding:4px 12px;margin:10px 0}
.fail.rec{border-left-color:#c77700}
.notes{background:#f0f4f8;border-left:4px solid #1f3a5f;padding:8px 14px;white-space:pre-wrap}
.crit{color:#7c3aed;font-weight:700}
footer{margin-top:30px;color:#7b8794;font-size:12px}
svg text{font-family:inherit}
";

/// One bar of the Gantt chart.
struct Row {
    group: String,
    label: String,
    start: u64,
    end: u64,
    class: &'static str,
    critical: bool,
    tip: String,
}

/// Above this many step bars, each VM gets one bar for its whole chain of
/// operations: a chart of thousands of rows helps nobody.
const MAX_STEP_ROWS: usize = 250;

fn rows(t: &Timeline, start: u64) -> Vec<Row> {
    let end_of = |s: &StepView| {
        s.finished_at
            .unwrap_or_else(|| s.started_at.unwrap_or(start) + s.duration_ms.unwrap_or(0))
    };
    let step_row = |g: &str, s: &StepView| Row {
        group: g.to_string(),
        label: s
            .key
            .split_once('/')
            .map(|(_, rest)| rest)
            .unwrap_or(&s.key)
            .to_string(),
        start: s.started_at.unwrap_or(start),
        end: end_of(s),
        class: step_class(s),
        critical: s.critical,
        tip: format!(
            "{}: {} {} from {}",
            s.key,
            s.state,
            opt_duration(s.duration_ms),
            offset(t, s.started_at)
        ),
    };
    let started = |s: &&StepView| s.started_at.is_some();
    let total = t
        .groups
        .iter()
        .flat_map(|g| g.steps.iter().map(|&s| &t.steps[s]))
        .filter(started)
        .count();
    let mut out = Vec::new();
    for g in &t.groups {
        let mut seen_vms = std::collections::BTreeSet::new();
        for s in g.steps.iter().map(|&s| &t.steps[s]).filter(started) {
            match &s.vm {
                Some(vm) if total > MAX_STEP_ROWS => {
                    if !seen_vms.insert(vm.clone()) {
                        continue;
                    }
                    let Some(v) = g.vms.iter().find(|v| &v.name == vm) else {
                        continue;
                    };
                    let steps: Vec<&StepView> = v.steps.iter().map(|&i| &t.steps[i]).collect();
                    let retried = steps.iter().any(|s| s.attempts > 1);
                    out.push(Row {
                        group: g.name.clone(),
                        label: format!("vm {}", v.name),
                        start: v.started_at.unwrap_or(start),
                        end: steps.iter().map(|s| end_of(s)).max().unwrap_or(start),
                        class: match v.state {
                            "done" if retried => "warn",
                            "done" => "ok",
                            "failed" => "err",
                            "pending" => "pending",
                            _ => "run",
                        },
                        critical: steps.iter().any(|s| s.critical),
                        tip: format!(
                            "{}: {} {} from {}",
                            v.name,
                            v.state,
                            opt_duration(v.duration_ms),
                            offset(t, v.started_at)
                        ),
                    });
                }
                _ => out.push(step_row(&g.name, s)),
            }
        }
    }
    out
}

/// The Gantt chart of the main plan: one row per step (per VM for large
/// plans), grouped, bars coloured by outcome, the critical path outlined,
/// the RTO marked.
fn gantt(t: &Timeline) -> String {
    let Some(start) = t.started_at else {
        return "<p>The job has not started: nothing to chart.</p>".into();
    };
    let rows = rows(t, start);
    if rows.is_empty() {
        return "<p>No step has started: nothing to chart.</p>".into();
    }
    let span = rows
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(start)
        .saturating_sub(start)
        .max(1);
    let (label_w, chart_w, row_h, top) = (250.0, 840.0, 18.0, 28.0);
    let mut group_rows = 0;
    let mut last_group: Option<&str> = None;
    for r in &rows {
        if Some(r.group.as_str()) != last_group {
            group_rows += 1;
            last_group = Some(&r.group);
        }
    }
    let height = top + (rows.len() + group_rows) as f64 * row_h + 36.0;
    let width = label_w + chart_w + 20.0;
    let x = |ms: u64| label_w + (ms.saturating_sub(start)) as f64 / span as f64 * chart_w;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"gantt\" role=\"img\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\"><title>{}</title>",
        esc(&format!("Gantt chart of job {}", t.job))
    );
    // Time axis: about 8 ticks at round durations.
    let step = nice_step(span / 8);
    let mut tick = 0;
    while tick <= span {
        let tx = label_w + tick as f64 / span as f64 * chart_w;
        let _ = write!(
            o,
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#e4e7eb\"/><text x=\"{tx:.1}\" y=\"18\" font-size=\"10\" fill=\"#7b8794\" text-anchor=\"middle\">+{}</text>",
            top - 4.0,
            height - 30.0,
            esc(&duration(tick))
        );
        tick += step;
    }
    let mut y = top;
    let mut last_group: Option<&str> = None;
    for r in &rows {
        if Some(r.group.as_str()) != last_group {
            last_group = Some(&r.group);
            let _ = write!(
                o,
                "<rect x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{row_h}\" fill=\"#f0f4f8\"/><text x=\"6\" y=\"{:.1}\" font-size=\"12\" font-weight=\"700\" fill=\"#1f3a5f\">{}</text>",
                y + 13.0,
                esc(&format!("group {}", r.group))
            );
            y += row_h;
        }
        let colour = match r.class {
            "ok" => "#34a853",
            "warn" => "#f29900",
            "err" => "#d93025",
            "skip" | "pending" => "#9aa0a6",
            _ => "#4285f4",
        };
        let (x0, x1) = (x(r.start), x(r.end));
        let w = (x1 - x0).max(2.0);
        let crit = if r.critical {
            " stroke=\"#7c3aed\" stroke-width=\"2\""
        } else {
            ""
        };
        let _ = write!(
            o,
            "<text x=\"16\" y=\"{:.1}\" font-size=\"11\" fill=\"{}\">{}{}</text><rect class=\"bar\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{colour}\"{crit}><title>{}</title></rect>",
            y + 13.0,
            if r.critical { "#5b21b6" } else { "#334e68" },
            if r.critical { "\u{2605} " } else { "" },
            esc(&r.label),
            y + 3.0,
            row_h - 6.0,
            esc(&r.tip)
        );
        y += row_h;
    }
    if let Some(rto) = t.rto.achieved_ms {
        let rx = x(start + rto);
        let _ = write!(
            o,
            "<line x1=\"{rx:.1}\" y1=\"{:.1}\" x2=\"{rx:.1}\" y2=\"{:.1}\" stroke=\"#c5221f\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/><text x=\"{rx:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#c5221f\" text-anchor=\"middle\">{}</text>",
            top - 4.0,
            y + 4.0,
            y + 18.0,
            esc(&format!("RTO {}", duration(rto)))
        );
    }
    o.push_str("</svg>");
    o
}

/// A round tick interval not below `ms`.
fn nice_step(ms: u64) -> u64 {
    const STEPS: [u64; 18] = [
        10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000,
        300_000, 600_000, 1_800_000, 3_600_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|&s| s >= ms)
        .unwrap_or_else(|| ms.div_ceil(3_600_000) * 3_600_000)
}

pub fn html(t: &Timeline) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&title(t))
    );
    let _ = write!(
        o,
        "<header><div><h1>{}</h1><div class=\"sub\">{} of plan <b>{}</b> · job {} · started by {} · {}</div></div><div class=\"badge {}\" id=\"verdict\">{}</div></header>",
        esc("Recovery plan run report"),
        esc(&t.operation),
        esc(&t.plan),
        t.job,
        esc(&t.requested_by),
        esc(&time(t.started_at)),
        verdict_class(t.verdict),
        t.verdict.as_str()
    );
    // Cards: the figures auditors ask for first.
    let c = &t.counts;
    let optional_vms: usize = t
        .groups
        .iter()
        .flat_map(|g| &g.vms)
        .filter(|v| v.optional)
        .count();
    let rto = match t.rto.achieved_ms {
        Some(ms) => duration(ms),
        None if !t.rto.applicable => "n/a".into(),
        None => "not achieved".into(),
    };
    let rto_note = t
        .rto
        .last_vm
        .as_ref()
        .map(|v| format!("last required VM: {v}"))
        .unwrap_or_else(|| rto_text(t));
    let cards = [
        ("Achieved RTO", rto, rto_note),
        (
            "Duration",
            opt_duration(t.duration_ms),
            format!("critical path {}", opt_duration(t.critical_path_ms)),
        ),
        (
            "VMs recovered",
            format!("{} / {}", c.vms_recovered, c.vms_required),
            format!("required VMs running · {optional_vms} optional not counted"),
        ),
        (
            "Failures",
            c.failed_steps.to_string(),
            format!(
                "{} required · {} skipped · {} recovered · {}",
                c.failed_required,
                c.skipped_steps,
                super::text::count(c.recovered_attempts, "retried attempt"),
                super::text::count(c.warnings, "warning")
            ),
        ),
        (
            "Data lost",
            t.achieved_rpo_ms
                .map(duration)
                .unwrap_or_else(|| "n/a".into()),
            rpo_text(t).unwrap_or_else(|| "no recovery point used".into()),
        ),
    ];
    o.push_str("<section class=\"cards\">");
    for (k, v, n) in cards {
        let _ = write!(
            o,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"n\">{}</div></div>",
            esc(k),
            esc(&v),
            esc(&n)
        );
    }
    o.push_str("</section>");

    o.push_str("<h2>Summary</h2><table class=\"facts\">");
    for (k, v) in facts(t) {
        let v = if k == "Plan content hash (blake3)" {
            format!("<code>{}</code>", esc(&v))
        } else if k == "Outcome" {
            format!(
                "<span class=\"st {}\">{}</span>",
                verdict_class(t.verdict),
                esc(&v)
            )
        } else {
            esc(&v)
        };
        let _ = write!(o, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    o.push_str("</table>");
    if let Some(c) = &t.test {
        let _ = write!(
            o,
            "<h2>Test notes</h2><div class=\"notes\" id=\"notes\">{}</div>",
            esc(&c.notes)
        );
    }

    let _ = write!(
        o,
        "<h2>Timeline</h2><p style=\"font-size:12px;color:#52606d\">Bars: <span class=\"st ok\">succeeded</span> <span class=\"st warn\">succeeded after a retry</span> <span class=\"st err\">failed</span> <span class=\"st skip\">skipped</span> <span class=\"st run\">running or waiting</span> · <span class=\"crit\">\u{2605} outlined</span>: critical path · dashed red line: achieved RTO.</p>{}",
        gantt(t)
    );

    if !t.errors.is_empty() {
        o.push_str("<h2>Errors</h2><ul id=\"errors\">");
        for e in &t.errors {
            let _ = write!(o, "<li>{}</li>", esc(e));
        }
        o.push_str("</ul>");
    }
    if !t.recovery_points.is_empty() {
        o.push_str("<h2>Recovery points used</h2><p style=\"font-size:12px;color:#52606d\">Data lost: from the recovery point to the job's start (0 for the final delta of a planned failover).</p><table id=\"points\"><tr><th>VM</th><th>point</th><th>type</th><th>data lost</th><th>step</th></tr>");
        for p in &t.recovery_points {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>",
                esc(&p.vm),
                esc(&time(Some(p.point_at))),
                p.kind.as_str(),
                esc(&duration(p.data_loss_ms)),
                esc(&p.step)
            );
        }
        o.push_str("</table>");
    }
    if !t.operator_actions.is_empty() {
        o.push_str("<h2>Operator actions</h2><table id=\"actions\"><tr><th>at</th><th>by</th><th>action</th><th>step</th><th>note</th></tr>");
        for a in &t.operator_actions {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&time(Some(a.at))),
                esc(&a.by),
                a.action,
                esc(a.step.as_deref().unwrap_or("")),
                esc(a.note.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</table>");
    }

    o.push_str("<h2>Groups</h2><table><tr><th>group</th><th>VMs done</th><th>VMs failed</th><th>start</th><th>duration</th></tr>");
    for g in &t.groups {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&g.name),
            g.vms_done,
            g.vms_total,
            g.vms_failed,
            esc(&offset(t, g.started_at)),
            esc(&opt_duration(g.duration_ms))
        );
    }
    o.push_str("</table>");

    o.push_str("<h2>Virtual machines</h2><table id=\"vms\"><tr><th>VM</th><th>group</th><th>required</th><th>state</th><th>running at</th><th>duration</th></tr>");
    for g in &t.groups {
        for vm in &g.vms {
            let class = match vm.state {
                "done" => "ok",
                "failed" => "err",
                "running" => "run",
                "stopped" => "skip",
                _ => "pending",
            };
            let _ = write!(
                o,
                "<tr class=\"vm\"><td>{}</td><td>{}</td><td>{}</td><td><span class=\"st {class}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&vm.name),
                esc(&g.name),
                if vm.optional { "optional" } else { "required" },
                vm.state,
                esc(&offset(t, vm.up_at)),
                esc(&opt_duration(vm.duration_ms))
            );
        }
    }
    o.push_str("</table>");

    o.push_str("<h2>Failures</h2>");
    if t.failures.is_empty() {
        o.push_str("<p>None.</p>");
    }
    for f in &t.failures {
        let class = if f.recovered || f.optional {
            "fail rec"
        } else {
            "fail"
        };
        let _ = write!(
            o,
            "<div class=\"{class}\"><b>{}</b> attempt {}{}<br/><span style=\"font-size:12px;color:#52606d\">{}</span> {} <i>({})</i>",
            esc(&f.step),
            f.attempt,
            esc(failure_note(f)),
            esc(&time(Some(f.at))),
            esc(&f.error),
            esc(&error_class(f.error_kind, f.retryable))
        );
        if let Some(tail) = &f.output_tail {
            let _ = write!(o, "<pre>{}</pre>", esc(tail.trim_end()));
        }
        o.push_str("</div>");
    }
    if !t.warnings.is_empty() {
        o.push_str("<h2>Warnings</h2><ul>");
        for w in &t.warnings {
            let _ = write!(o, "<li>{}</li>", esc(w));
        }
        o.push_str("</ul>");
    }

    o.push_str("<h2>Steps</h2><table><tr><th></th><th>step</th><th>state</th><th>start</th><th>started (UTC)</th><th>ended (UTC)</th><th>duration</th><th>attempts</th><th>detail</th></tr>");
    for s in &t.steps {
        let mut detail = String::new();
        if let Some(a) = &s.answer {
            let _ = write!(
                detail,
                "answered {} by {}{}",
                if a.done { "done" } else { "NOT done" },
                a.by,
                a.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
        }
        if let drplan_engine::core::StepState::Skipped { reason } = &s.detail {
            let _ = write!(detail, "skipped: {}", skip_text(t, reason));
        }
        let _ = write!(
            o,
            "<tr><td class=\"crit\">{}</td><td><code>{}</code></td><td><span class=\"st {}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if s.critical { "\u{2605}" } else { "" },
            esc(&s.key),
            step_class(s),
            s.state,
            esc(&offset(t, s.started_at)),
            esc(&time(s.started_at)),
            esc(&time(s.finished_at)),
            esc(&opt_duration(s.duration_ms)),
            s.attempts,
            esc(&detail)
        );
    }
    o.push_str("</table>");
    let _ = writeln!(
        o,
        "<footer>Achieved RTO: from the job's start until the last required (not optional) VM was running (its start-replica or start-test-vm succeeded). Critical path: the chain of steps, each released by the one before it, that ended last. Generated by drplan {}.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(
            esc("<b a=\"1\">&'\u{1b}[31m"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;\u{FFFD}[31m"
        );
    }

    #[test]
    fn markdown_text_cannot_inject_html_or_formatting() {
        assert_eq!(
            md("<b>a_b*</b> & `x`"),
            "&lt;b&gt;a\\_b\\*&lt;/b&gt; &amp; \\`x\\`"
        );
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn fences_outgrow_backticks_inside() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(nice_step(0), 10);
        assert_eq!(nice_step(130), 200);
        assert_eq!(nice_step(7_000), 10_000);
        assert_eq!(nice_step(5 * 3_600_000 + 1), 6 * 3_600_000);
    }
}
