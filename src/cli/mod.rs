//! Command-line parsing, logging set-up and dispatch.
//!
//! Exit codes are a contract for scripts and CI:
//! - 0: success (a valid plan; warnings allowed unless `--deny-warnings`;
//!   a job that succeeded, or that waits for an operator);
//! - 1: problems found in a plan or inventory; a job that ended badly
//!   (failed, completed with errors, cancelled, test forcibly ended); an
//!   operator action or a submission the core refused;
//! - 2: could not run: bad arguments (clap's usage errors already exit 2),
//!   a file that cannot be read (missing, a directory, too large, not
//!   UTF-8 text), output that cannot be written, an unknown job or step, a
//!   data directory in use by another process.

mod completions;
mod engine_host;
mod estimate;
mod followup;
mod graph;
mod history;
mod jobs;
mod operator;
mod progress;
mod prompt;
mod protect;
mod render_diag;
mod report;
mod run;
mod schema;
mod serve;
mod show;
mod simulate;
mod store;
mod text;
mod validate;
mod watch;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The process outcome, ordered so that the worst of several wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Problems = 1,
    CouldNotRun = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (warnings allowed unless --deny-warnings); a job that succeeded
     or waits for an operator
  1  problems found in a plan or inventory; a job that ended badly; an action
     the engine refused
  2  could not run: bad arguments, a file that cannot be read, an unknown job
     or step, a data directory in use";

const VALIDATE_HELP: &str = "\
Examples:
  drplan validate plans/web.yaml
  drplan validate plans/*.yaml --fabric fabric.yaml --deny-warnings
  drplan validate plans/web.yaml --format json | jq '.plans[].diagnostics[]'

Exit codes:
  0  every plan is valid (warnings allowed unless --deny-warnings)
  1  problems found in a plan or inventory
  2  could not run: bad arguments, a plan or --fabric file that cannot be read";

const GRAPH_HELP: &str = "\
Shapes: box = script, trapezium = manual step, hexagon = wait,
rounded box = VM operation; dashed = optional VM or step.

Examples:
  drplan graph plans/web.yaml | dot -Tsvg > web.svg
  drplan graph plans/web.yaml --failover test --format mermaid

Exit codes:
  0  the graph was printed (warnings are shown on stderr)
  1  problems found in the plan or inventory (shown on stderr)
  2  could not run: bad arguments, a file that cannot be read";

const SCHEMA_HELP: &str = "\
Editors with a YAML language server pick the schema up from a first line
such as:
  # yaml-language-server: $schema=plan.schema.json
The repository keeps the output in plans/plan.schema.json and
plans/fabric.schema.json.";

/// Validate, render and run disaster-recovery plans for replicated VMs.
///
/// A plan (YAML) gathers VMs in groups that fail over in dependency order,
/// with scripts, manual steps and waits before and after each group. An
/// inventory ("fabric") file describes the sites, clouds, networks,
/// replication policies and VMs the plan is checked against.
#[derive(Debug, Parser)]
#[command(name = "drplan", version, arg_required_else_help = true, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts (before or after the command name).
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// More log output on stderr: -v info, -vv debug, -vvv trace
    /// (RUST_LOG, when set, takes precedence).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Global options")]
    pub log_format: LogFormat,
    /// When to colour output: `auto` colours only on a terminal and when
    /// NO_COLOR is not set.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, help_heading = "Global options")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour what goes to a stream that is (or is not) a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: set and not empty disables colour.
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check plans (and their inventory) and report every problem, located.
    #[command(after_help = VALIDATE_HELP)]
    Validate(validate::ValidateArgs),
    /// Draw a plan's execution graph for one failover kind (Graphviz DOT or Mermaid).
    #[command(after_help = GRAPH_HELP)]
    Graph(graph::GraphArgs),
    /// Print the JSON Schema of the plan or inventory file format (for editors).
    #[command(after_help = SCHEMA_HELP)]
    Schema(schema::SchemaArgs),
    /// List the jobs of a data directory (newest last).
    Jobs(jobs::JobsArgs),
    /// Run a failover of a plan on the simulated fabric and follow it until
    /// it ends or waits for an operator.
    #[command(after_help = RUN_HELP)]
    Run(run::RunArgs),
    /// Show a job's timeline: every step with its state, times, outcome and
    /// output.
    Show(show::ShowArgs),
    /// Answer a manual step (done, or `--failed`), then follow the job.
    #[command(after_help = OPERATOR_HELP)]
    Ack(operator::AckArgs),
    /// Retry a failed step the job halted on, then follow the job.
    #[command(after_help = OPERATOR_HELP)]
    Retry(operator::StepArgs),
    /// Skip a failed step the job halted on, then follow the job.
    #[command(after_help = OPERATOR_HELP)]
    Skip(operator::StepArgs),
    /// Cancel a job, then follow it until it stops.
    #[command(after_help = OPERATOR_HELP)]
    Cancel(operator::CancelArgs),
    /// Close an open test failover (deletes its test VMs), then follow it.
    #[command(after_help = OPERATOR_HELP)]
    Cleanup(operator::CleanupArgs),
    /// Resume unfinished jobs (all, or one) and follow them.
    #[command(after_help = OPERATOR_HELP)]
    Resume(operator::ResumeArgs),
    /// Commit a finished planned or unplanned failover (or failback): its
    /// other recovery points are discarded. Then follow the job.
    #[command(after_help = FOLLOWUP_HELP)]
    Commit(followup::JobArgs),
    /// Replicate back to the old primary after a committed failover (the
    /// VMs become protected in the reverse direction). Then follow the job.
    #[command(after_help = FOLLOWUP_HELP)]
    Reprotect(followup::JobArgs),
    /// Fail back: a planned failover in the reverse direction, of a plan
    /// file or of the plan a job ran. Follow it like `run`.
    #[command(after_help = FOLLOWUP_HELP)]
    Failback(followup::FailbackArgs),
    /// Before commit: move the failed-over VMs to another recovery point.
    #[command(after_help = FOLLOWUP_HELP)]
    ChangeRecoveryPoint(followup::ChangeRecoveryPointArgs),
    /// Roll back an uncommitted failover (the primary becomes active again),
    /// also one cancelled or halted midway: every VM of the plan not
    /// committed returns to the primary (a primary the failover shut down
    /// starts again).
    #[command(after_help = FOLLOWUP_HELP)]
    Rollback(followup::JobArgs),
    /// Continue a planned or unplanned failover that stopped midway
    /// (cancelled, failed, completed with errors): the same failover again
    /// over the job's plan, for the VMs not yet failed over; those already
    /// failed over are left alone. Then follow the job.
    #[command(after_help = FOLLOWUP_HELP)]
    Continue(followup::JobArgs),
    /// Enable protection of VMs (or onboard VMs replicated outside drplan)
    /// as a job: prerequisites check, replica creation, initial
    /// replication, finalize. Follows it, with the copy's progress.
    #[command(after_help = PROTECT_HELP)]
    Protect(protect::ProtectArgs),
    /// Disable protection of VMs as a job, deleting or keeping the replicas.
    #[command(after_help = PROTECT_HELP)]
    Unprotect(protect::UnprotectArgs),
    /// List every VM of the inventory with its protection state, the job
    /// holding it, its replica and its replication health.
    #[command(after_help = PROTECT_HELP)]
    Vms(protect::VmsArgs),
    /// List the recovery points a VM's retention window keeps.
    #[command(after_help = PROTECT_HELP)]
    RecoveryPoints(protect::RecoveryPointsArgs),
    /// Estimate the bandwidth and time initial and delta replication need.
    #[command(after_help = PROTECT_HELP)]
    Capacity(protect::CapacityArgs),
    /// Run the engine as a long-lived server with a local API: timers fire,
    /// jobs progress, and the other commands reach it from any terminal.
    #[command(after_help = serve::HELP)]
    Serve(serve::ServeArgs),
    /// Write a job's audit report (Markdown, or one self-contained HTML page
    /// with a Gantt chart): outcome, achieved RTO, durations, failures.
    #[command(after_help = REPORT_HELP)]
    Report(report::ReportArgs),
    /// List every plan the store has run, with its last test failover and
    /// its last planned or unplanned failover (date, outcome, achieved RTO).
    Plans(history::PlansArgs),
    /// List the runs of one plan (by name or plan file) with the RTO trend.
    History(history::HistoryArgs),
    /// Follow a job until it ends or waits for an operator: where each group
    /// stands, then live progress (on a terminal: answer in place).
    #[command(after_help = OPERATOR_HELP)]
    Watch(watch::WatchArgs),
    /// Predict a plan's recovery time (RTO) from its critical path, with
    /// figures measured in past runs where there are some.
    #[command(after_help = ESTIMATE_HELP)]
    Estimate(estimate::EstimateArgs),
    /// What if: run a plan with injected faults on an in-memory store and
    /// the simulated fabric, in virtual time; print the timeline, the
    /// outcome and the RTO.
    #[command(after_help = SIMULATE_HELP)]
    Simulate(simulate::SimulateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one per subcommand with `-o DIR`.
    Man(completions::ManArgs),
    /// Verify the store, or back it up to / restore it from a JSON-lines file.
    #[command(after_help = store::STORE_HELP)]
    Store(store::StoreArgs),
}

const PROTECT_HELP: &str = "\
Protection of the shipped inventory's VMs (the inventory: --fabric or $DRPLAN_FABRIC):
  drplan vms --fabric plans/fabric.yaml
  drplan protect --all --fabric plans/fabric.yaml          every VM not yet protected
  drplan protect rpt-01 --start-at +1h --fabric plans/fabric.yaml
  drplan recovery-points sql-01 --fabric plans/fabric.yaml
  drplan unprotect rpt-02 --delete-replica --fabric plans/fabric.yaml
  drplan capacity --change-rate 5% --bandwidth 200mbps --fabric plans/fabric.yaml

Exit codes:
  0  done (the job succeeded, or waits on its scheduled start)
  1  the job ended badly, or the engine refused it (a VM busy or not in the
     state the operation needs, each named)
  2  could not run: bad arguments, an unknown VM or cloud, an unreadable
     inventory, the data directory in use";

const REPORT_HELP: &str = "\
Examples:
  drplan report 1 > drill.md
  drplan report 1 --format html -o drill.html

Outcome: SUCCESS, WARNINGS (ended well, but a step was retried or skipped,
an optional step failed, an output warns, or a test was forcibly ended),
ERRORS (failed, completed with errors, cleanup incomplete), CANCELLED, or
IN PROGRESS. Achieved RTO: from the job's start until the last required
(not optional) VM was running.";

const ESTIMATE_HELP: &str = "\
Examples:
  drplan estimate plans/three-tier.yaml
  drplan estimate plans/three-tier.yaml --failover unplanned --data-dir /var/lib/drplan
  drplan estimate plans/three-tier.yaml --failover test --time-scale 0.01 --format json

Exit codes:
  0  the estimate was printed
  1  problems found in the plan or inventory
  2  could not run: bad arguments, an unreadable file, the data directory in use";

const SIMULATE_HELP: &str = "\
Scripts are not executed unless --run-scripts: each counts as succeeded after
its timeout. Manual steps are answered \"done\" after --operator-delay.
Faults: those of `drplan run --inject`, plus fail-step:STEP (a script fails
every attempt, a manual step is answered \"not done\").

Examples:
  drplan simulate plans/three-tier.yaml --failover planned --inject fail:start-replica:web-01
  drplan simulate plans/three-tier.yaml --failover unplanned --inject site-down:primary-vmm
  drplan simulate plans/three-tier.yaml --failover test --inject fail-step:smoke-test

Exit codes:
  0  the simulated job succeeded (or, for a test, awaits its cleanup) and no
     required step failed
  1  the simulated job ends badly, halts on a failure, or a required step
     failed; problems in the plan
  2  could not run: bad arguments or faults, an unreadable file";

const COMPLETIONS_HELP: &str = "\
Examples:
  drplan completions bash > ~/.local/share/bash-completion/completions/drplan
  drplan completions zsh > ~/.zfunc/_drplan
  drplan completions fish > ~/.config/fish/completions/drplan.fish";

const FOLLOWUP_HELP: &str = "\
The lifecycle after a planned or unplanned failover (job 1):
  drplan commit 1        keep the failed-over VMs (or: drplan rollback 1)
  drplan reprotect 1     replicate back to the old primary
  drplan failback plans/three-tier.yaml
  drplan commit 4        then reprotect again: protected as at the start

Exit codes:
  0  the job succeeded, or waits for an operator (the command to type is printed)
  1  the job ended badly, or it was refused (the earlier job is not a failover
     that ended, or a VM is not in the state the operation needs)
  2  could not run: unknown job, unreadable file, the data directory in use";

const RUN_HELP: &str = "\
Examples:
  drplan run plans/three-tier.yaml --failover test
  drplan run plans/three-tier.yaml --failover planned --inject fail-once:start-replica:web-01
  drplan run plans/three-tier.yaml --failover unplanned --inject site-down:primary-vmm \\
      --recovery-point latest-app-consistent

Exit codes:
  0  the job succeeded, or waits for an operator (the command to type is printed)
  1  the job ended badly (failed, completed with errors, cancelled), the plan has
     problems, or the core refused the job (VMs busy or not ready)
  2  could not run: bad arguments, an unreadable file, the data directory in use";

const OPERATOR_HELP: &str = "\
Exit codes:
  0  done: the job succeeded, or waits for an operator again
  1  the job ended badly, or the action was refused (e.g. the step does not wait)
  2  could not run: unknown job or step, the data directory in use";

/// A plan path argument and the optional inventory override, shared by the
/// commands that load plans.
#[derive(Debug, Args)]
pub struct FabricArg {
    /// Inventory file to check the plan against; overrides the plan's own
    /// `fabric:` key.
    #[arg(long, value_name = "FILE")]
    pub fabric: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    // Usage errors exit 2 and --help/--version exit 0, both inside clap.
    let cli = Cli::parse();
    init_logging(&cli.global, matches!(cli.command, Command::Serve(_)));
    progress::set_color(cli.global.color.enabled(std::io::stdout().is_terminal()));
    let exit = match cli.command {
        Command::Validate(args) => validate::run(&args, &cli.global),
        Command::Graph(args) => graph::run(&args, &cli.global),
        Command::Schema(args) => schema::run(&args),
        Command::Jobs(args) => jobs::run(&args),
        Command::Run(args) => run::run(&args, &cli.global),
        Command::Show(args) => show::run(&args),
        Command::Ack(args) => operator::ack(&args),
        Command::Retry(args) => operator::retry(&args),
        Command::Skip(args) => operator::skip(&args),
        Command::Cancel(args) => operator::cancel(&args),
        Command::Cleanup(args) => operator::cleanup(&args),
        Command::Resume(args) => operator::resume(&args),
        Command::Commit(args) => followup::commit(&args),
        Command::Reprotect(args) => followup::reprotect(&args),
        Command::Failback(args) => followup::failback(&args, &cli.global),
        Command::ChangeRecoveryPoint(args) => followup::change_recovery_point(&args),
        Command::Rollback(args) => followup::rollback(&args),
        Command::Continue(args) => followup::continue_failover(&args),
        Command::Protect(args) => protect::protect(&args),
        Command::Unprotect(args) => protect::unprotect(&args),
        Command::Vms(args) => protect::vms(&args),
        Command::RecoveryPoints(args) => protect::recovery_points(&args),
        Command::Capacity(args) => protect::capacity(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Plans(args) => history::plans(&args),
        Command::History(args) => history::run_history(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Estimate(args) => estimate::run(&args, &cli.global),
        Command::Simulate(args) => simulate::run(&args, &cli.global),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
        Command::Store(args) => store::run(&args),
    };
    exit.into()
}

/// Logs go to stderr so they never mix with a command's output (a graph,
/// a schema, a JSON report).
fn init_logging(global: &GlobalOpts, serving: bool) {
    use tracing_subscriber::EnvFilter;
    // At the default verbosity, sled's own error logs and the engine's
    // running account of a store failure stay quiet in a command: it ends
    // with one plain line saying what to free and what to run next
    // (`progress::store_failed_line`). A server has no such line: its log
    // keeps the engine's account. `-v` shows everything.
    let default_level = match global.verbose {
        0 if serving => "warn,sled=off",
        0 => "warn,sled=off,drplan_engine::store_failed=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // An unparsable RUST_LOG falls back to the -v level rather than failing
    // a command that has nothing to do with logging.
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(&s).unwrap_or_else(|e| {
            eprintln!("drplan: ignoring RUST_LOG `{s}` ({e}); logging at `{default_level}`");
            EnvFilter::new(default_level)
        }),
        _ => EnvFilter::new(default_level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: never panic if something initialised a subscriber already.
    let _ = match global.log_format {
        LogFormat::Text => builder
            .with_ansi(global.color.enabled(std::io::stderr().is_terminal()))
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Write a command's output to stdout. A closed pipe (`drplan graph | head`)
/// is not an error worth a message; any other write failure is "could not
/// run".
pub fn emit(text: &str) -> Exit {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Exit::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => {
            eprintln!("drplan: cannot write the output: {e}");
            Exit::CouldNotRun
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_ordering_makes_the_worst_win() {
        assert_eq!(
            [Exit::Problems, Exit::CouldNotRun, Exit::Ok]
                .into_iter()
                .max(),
            Some(Exit::CouldNotRun)
        );
        assert_eq!(Exit::Problems.max(Exit::Ok), Exit::Problems);
    }
}
