//! Answering in place: when a followed job waits for an operator (a manual
//! step, a failure that halted a planned failover, an open test waiting for
//! its cleanup) and both stdin and stdout are a terminal, ask right there —
//! then carry on following the job. Anywhere else (a pipe, CI, `--format
//! json`) nothing is asked: the exact command to continue was printed and
//! the command exits 0, as before.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use drplan_engine::api::{ApiError, Control, Updates};
use drplan_engine::core::JobStatus;
use drplan_engine::journal::JobMeta;
use drplan_engine::plan::{FailoverKind, Operation};
use drplan_engine::protect::ProtectJob;
use drplan_engine::store::JobId;

use super::Exit;
use super::progress::{FollowFormat, Follower, Printer, prompts};
use super::run::default_by;

/// What the operator chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Done { note: Option<String>, by: String },
    NotDone { note: Option<String>, by: String },
    Retry { by: String },
    Skip { by: String },
    Cancel { by: String },
    Cleanup { notes: String, by: String },
    Quit,
}

/// Set by `--no-prompt`.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Never ask in this process (`--no-prompt`).
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

/// Whether `run` and the operator commands may ask in place.
pub fn interactive(printer: &Printer) -> bool {
    !DISABLED.load(Ordering::Relaxed)
        && printer.format == FollowFormat::Human
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
}

/// Whether a destructive command (cancelling a planned or unplanned
/// failover, deleting replicas) asks before it acts: only when both stdin
/// and stdout are a terminal, and not with `--yes`. Anywhere else (a
/// script, CI, a pipe) it acts at once, as it always did: a script cannot
/// answer, and it chose the command. `--no-prompt` does not skip it: that
/// flag is about answering waiting jobs in place, and a confirmation is
/// the one question a person at a terminal should always see.
pub fn must_confirm(yes: bool, stdin_terminal: bool, stdout_terminal: bool) -> bool {
    !yes && stdin_terminal && stdout_terminal
}

/// Whether an answer to a `[y/N]` question goes ahead: `y` or `yes`, in
/// any case; anything else (an empty line too) does not.
pub fn confirms(answer: &str) -> bool {
    let a = answer.trim();
    a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
}

/// Ask `question` (the consequences, on lines of their own) with `[y/N]`
/// when [`must_confirm`] says so; `true` to go ahead. The end of input
/// declines. Blocking: call it before the runtime, or through
/// [`confirm_async`].
pub fn confirm(question: &str, yes: bool) -> bool {
    if !must_confirm(
        yes,
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    ) {
        return true;
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "{question}
Go ahead? [y/N] "
    );
    let _ = out.flush();
    drop(out);
    let mut s = String::new();
    match std::io::stdin().lock().read_line(&mut s) {
        Ok(0) | Err(_) => false,
        Ok(_) => confirms(&s),
    }
}

/// What `drplan cancel` asks before cancelling an unfinished planned or
/// unplanned failover (or failback): production is moving, and a cancel
/// leaves it part-way. `None` for every other job (a drill, a protection
/// job, a follow-up, a finished job the engine refuses anyway): nothing
/// to confirm.
pub fn cancel_question(meta: &JobMeta) -> Option<String> {
    let kind = meta.operation.kind()?;
    if !matches!(kind, FailoverKind::Planned | FailoverKind::Unplanned) || meta.status.is_terminal()
    {
        return None;
    }
    Some(format!(
        "Cancel job {} ({} of plan {}, {})?\n  \
         Running VM operations and scripts are stopped where they are; steps not \
         yet started never run.\n  \
         VMs already failed over stay failed over (`drplan rollback {}` returns \
         them to the primary); the others stay where they are.",
        meta.id, meta.operation, meta.plan_name, meta.status, meta.id
    ))
}

/// What `drplan unprotect` asks before a job that deletes replicas (asked
/// with `--delete-replica`, or the policy's default): the replicas and
/// their recovery points are gone for good. `None` when it keeps them.
pub fn delete_replica_question(job: &ProtectJob) -> Option<String> {
    if !matches!(
        job.operation,
        Operation::DisableProtection {
            delete_replica: true
        }
    ) {
        return None;
    }
    let vms = job.plan.groups.iter().flat_map(|g| g.vms.iter());
    let names: Vec<&str> = vms.map(|v| v.name.as_str()).collect();
    let one = names.len() == 1;
    Some(format!(
        "Disable protection of {} ({}) and DELETE {}?\n  \
         {} recovery points are lost: {} cannot fail over until protected \
         again (a full initial replication).",
        super::text::count(names.len(), "VM"),
        names.join(", "),
        if one { "its replica" } else { "their replicas" },
        if one { "Its" } else { "Their" },
        if one { "the VM" } else { "these VMs" },
    ))
}

/// [`confirm`] on a blocking thread, for async code.
pub async fn confirm_async(question: String, yes: bool) -> bool {
    tokio::task::spawn_blocking(move || confirm(&question, yes))
        .await
        .unwrap_or(false)
}

/// Follow `jobs` like [`Follower::follow`]; on a terminal, ask the operator
/// whenever one of them waits, perform the answer and follow on.
pub async fn follow_prompting(
    engine: &dyn Control,
    printer: Printer,
    jobs: &[JobId],
    updates: Updates,
    on_step: &dyn Fn(),
) -> Exit {
    let ask = interactive(&printer);
    let mut follower = Follower::new(engine, printer.clone());
    let mut updates = updates;
    let mut jobs = jobs.to_vec();
    loop {
        let exit = follower.follow(&jobs, updates, on_step).await;
        if !ask {
            return exit;
        }
        // The first job still waiting, with what it waits for.
        let mut asked = None;
        let mut open = Vec::new();
        for &job in &jobs {
            let Ok(Some(status)) = engine.status(job).await else {
                continue;
            };
            if status.is_terminal() {
                continue;
            }
            open.push(job);
            if asked.is_none()
                && let (Ok(Some(st)), Ok(ctx)) = (engine.job(job).await, engine.context(job).await)
                && let Some(p) = prompts(job, Some(status), &st, &ctx, &printer.suffix())
                    .into_iter()
                    .find(|p| p.reason != "scheduled")
            {
                let step = p.step.as_deref().and_then(|k| {
                    (0..ctx.len()).find(|&s| ctx.node(s).is_some_and(|n| n.key == k))
                });
                asked = Some((job, status, p.reason, step));
            }
        }
        let Some((job, status, reason, step)) = asked else {
            return exit;
        };
        let choice = read_choice(job, status, reason).await;
        if choice == Choice::Quit {
            println!("   nothing done: the commands above continue the job");
            return exit;
        }
        // Subscribe before acting, so nothing the action causes is missed.
        updates = match engine.subscribe(None).await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("drplan: {e}");
                return Exit::CouldNotRun;
            }
        };
        let done = perform(engine, job, step, choice).await;
        if let Err(e) = done {
            // Refused (e.g. answered meanwhile from another terminal): say
            // so and look again.
            eprintln!("drplan: job {job}: {e}");
        }
        jobs = open;
    }
}

async fn perform(
    engine: &dyn Control,
    job: JobId,
    step: Option<usize>,
    choice: Choice,
) -> Result<(), ApiError> {
    let need = |step: Option<usize>| {
        step.ok_or_else(|| ApiError::refused("unknown_step", format!("job {job} waits on no step")))
    };
    match choice {
        Choice::Done { note, by } => {
            engine
                .answer_manual(job, need(step)?, true, &by, note)
                .await
        }
        Choice::NotDone { note, by } => {
            engine
                .answer_manual(job, need(step)?, false, &by, note)
                .await
        }
        Choice::Retry { by } => engine.retry(job, need(step)?, &by).await,
        Choice::Skip { by } => engine.skip(job, need(step)?, &by).await,
        Choice::Cancel { by } => engine.cancel(job, &by).await,
        Choice::Cleanup { notes, by } => engine.complete_test(job, &notes, &by).await,
        Choice::Quit => Ok(()),
    }
}

/// Read one line on a blocking thread (stdin is blocking); `None` at the
/// end of input.
async fn line(question: String) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{question}");
        let _ = out.flush();
        drop(out);
        let mut s = String::new();
        match std::io::stdin().lock().read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim().to_string()),
        }
    })
    .await
    .ok()
    .flatten()
}

async fn note(question: &str) -> Option<Option<String>> {
    let n = line(format!("   {question}: ")).await?;
    Some((!n.is_empty()).then_some(n))
}

async fn by() -> Option<String> {
    let default = default_by();
    let b = line(format!("   by [{default}]: ")).await?;
    Some(if b.is_empty() { default } else { b })
}

/// Ask until the answer is understood; end of input means quit.
async fn read_choice(job: JobId, status: JobStatus, reason: &str) -> Choice {
    let question = match reason {
        "manual" => "   answer: [d]one, [f]ailed (not done), [q]uit and print the command? ",
        "failed" => "   [r]etry, [s]kip, [c]ancel the job, [q]uit and print the command? ",
        "cleanup_failed" => "   [r]etry, [s]kip (the test stays open until done), [q]uit? ",
        "cleanup" => "   [c]lean up the test now, [q]uit and leave it open? ",
        _ => return Choice::Quit,
    };
    let _ = status;
    loop {
        let Some(a) = line(question.to_string()).await else {
            return Choice::Quit;
        };
        let a = a.to_ascii_lowercase();
        let first = a.chars().next();
        let choice = match (reason, first) {
            (_, Some('q')) => Some(Choice::Quit),
            ("manual", Some('d')) => {
                let Some(n) = note("note (optional)").await else {
                    return Choice::Quit;
                };
                by().await.map(|by| Choice::Done { note: n, by })
            }
            ("manual", Some('f')) => {
                let Some(n) = note("what went wrong (optional)").await else {
                    return Choice::Quit;
                };
                by().await.map(|by| Choice::NotDone { note: n, by })
            }
            ("failed" | "cleanup_failed", Some('r')) => by().await.map(|by| Choice::Retry { by }),
            ("failed" | "cleanup_failed", Some('s')) => by().await.map(|by| Choice::Skip { by }),
            ("failed", Some('c')) => {
                let Some(sure) = line(format!("   cancel job {job}? [y/N] ")).await else {
                    return Choice::Quit;
                };
                if confirms(&sure) {
                    by().await.map(|by| Choice::Cancel { by })
                } else {
                    continue;
                }
            }
            ("cleanup", Some('c')) => loop {
                let Some(n) = note("notes: what did the drill show? (required)").await else {
                    return Choice::Quit;
                };
                if let Some(notes) = n {
                    break by().await.map(|by| Choice::Cleanup { notes, by });
                }
            },
            _ => {
                println!("   please answer with one of the letters in brackets");
                continue;
            }
        };
        return choice.unwrap_or(Choice::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_without_yes_is_asked() {
        assert!(must_confirm(false, true, true));
        assert!(!must_confirm(true, true, true), "--yes skips the question");
        assert!(!must_confirm(false, false, true), "stdin not a terminal");
        assert!(!must_confirm(false, true, false), "stdout not a terminal");
        assert!(!must_confirm(false, false, false));
    }

    #[test]
    fn only_yes_goes_ahead() {
        for a in ["y", "Y", "yes", "YES", " yes\n"] {
            assert!(confirms(a), "{a:?}");
        }
        for a in ["", "n", "no", "yess", "sure", "\n"] {
            assert!(!confirms(a), "{a:?}");
        }
    }
}
