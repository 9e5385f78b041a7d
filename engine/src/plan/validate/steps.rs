//! Step rules: one kind per step, fields that fit the kind, durations,
//! `when`, `on_timeout`, and the script's program on disk or on PATH.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::diag::{Pos, codes};
use super::super::file::StepFile;
use super::super::model::{Command, Direction, FailoverKind, OnTimeout, Step, StepAction, When};
use super::{Ctx, and_list, pos};

/// Plan-wide step defaults, resolved.
pub(super) struct Defaults {
    pub script_timeout: Duration,
    pub manual_timeout: Option<Duration>,
    pub retries: u32,
    pub retry_delay: Duration,
}

/// Which list a step is in, for messages.
#[derive(Clone, Copy)]
pub(super) enum StepList<'a> {
    Group { group: &'a str, phase: &'a str },
    Cleanup,
}

impl StepList<'_> {
    fn describe(&self) -> String {
        match self {
            StepList::Group { group, phase } => format!("the `{phase}` steps of group `{group}`"),
            StepList::Cleanup => "the test cleanup steps".to_string(),
        }
    }
}

const WHEN_WORDS: [&str; 5] = ["test", "planned", "unplanned", "forward", "reverse"];

/// Validate a list of steps; returns the steps that are valid (the caller
/// only uses them when the whole plan has no errors).
pub(super) fn validate_list(
    ctx: &mut Ctx,
    steps: &[StepFile],
    defaults: &Defaults,
    base_dir: &Path,
    list: StepList,
) -> Vec<Step> {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        let name = s.name.value.as_str();
        ctx.check_name(codes::INVALID_NAME, "step name", name, pos(&s.name));
        if let Some(first) = seen.get(name) {
            ctx.error(
                codes::DUPLICATE_STEP,
                pos(&s.name),
                format!(
                    "step `{name}` appears twice in {} (first on line {})",
                    list.describe(),
                    first.line
                ),
            )
            .hint("step names are unique in their list: they name the step in logs and in `drplan show`");
        } else {
            seen.insert(name, pos(&s.name));
        }
        if let Some(step) = validate_step(ctx, s, defaults, base_dir, list) {
            out.push(step);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Shell,
    Manual,
    Wait,
}

fn validate_step(
    ctx: &mut Ctx,
    s: &StepFile,
    defaults: &Defaults,
    base_dir: &Path,
    list: StepList,
) -> Option<Step> {
    let name = s.name.value.as_str();
    let kinds: Vec<(Kind, &str, Pos)> = [
        (Kind::Run, "run", s.run.as_ref().map(pos)),
        (Kind::Shell, "shell", s.shell.as_ref().map(pos)),
        (Kind::Manual, "manual", s.manual.as_ref().map(pos)),
        (Kind::Wait, "wait", s.wait.as_ref().map(pos)),
    ]
    .into_iter()
    .filter_map(|(k, field, p)| p.map(|p| (k, field, p)))
    .collect();
    // In file order, so "the second" is the second the author wrote.
    let mut kinds = kinds;
    kinds.sort_by_key(|(_, _, p)| *p);

    // Fields shared by several kinds are parsed whatever the kind, so a bad
    // duration is reported even when the kind is also wrong.
    let timeout = s.timeout.as_ref().and_then(|t| {
        ctx.duration(
            &format!("`timeout` of step `{name}`"),
            t,
            false,
            "the step would time out at once; omit `timeout` for the default",
        )
    });
    // A zero retry delay is a legitimate choice (retry at once), unlike a
    // zero timeout, which could never succeed.
    let retry_delay = s
        .retry_delay
        .as_ref()
        .and_then(|t| ctx.duration(&format!("`retry_delay` of step `{name}`"), t, true, ""));
    let when = when(ctx, s, list);
    let on_timeout = on_timeout(ctx, s);

    let kind = match kinds.as_slice() {
        [] => {
            ctx.error(
                codes::STEP_KIND,
                pos(&s.name),
                format!("step `{name}` does nothing: it has none of `run`, `shell`, `manual` or `wait`"),
            )
            .hint("give it exactly one, e.g. `run: [./scripts/notify.sh]` or `manual: Check the load balancer`");
            return None;
        }
        [(kind, _, _)] => *kind,
        [_, (_, _, second), ..] => {
            let fields: Vec<String> = kinds.iter().map(|(_, f, _)| format!("`{f}`")).collect();
            ctx.error(
                codes::STEP_KIND,
                *second,
                format!(
                    "step `{name}` has {}; a step does exactly one thing",
                    and_list(&fields)
                ),
            )
            .hint("split it into one step per action, in the order they should happen");
            return None;
        }
    };

    let kind_name = match kind {
        Kind::Run | Kind::Shell => "a script",
        Kind::Manual => "a manual step",
        Kind::Wait => "a wait step",
    };
    let mut not_for = |field: &str, at: Pos, why: &str| {
        ctx.error(
            codes::FIELD_NOT_FOR_KIND,
            at,
            format!("`{field}` does not apply to {kind_name} (step `{name}`)"),
        )
        .hint(why.to_string());
    };
    if matches!(kind, Kind::Manual | Kind::Wait) {
        if let Some(r) = &s.retries {
            not_for("retries", pos(r), "only scripts are retried; remove it");
        }
        if let Some(r) = &s.retry_delay {
            not_for("retry_delay", pos(r), "only scripts are retried; remove it");
        }
        if !s.env.is_empty() {
            not_for(
                "env",
                pos(&s.name),
                "environment variables are for scripts; remove it",
            );
        }
    }
    if matches!(kind, Kind::Run | Kind::Shell | Kind::Wait)
        && let Some(o) = &s.on_timeout
    {
        not_for(
            "on_timeout",
            pos(o),
            "`on_timeout` is for manual steps; a script that times out fails (and is retried if it has `retries`); use `optional: true` to let the plan go on",
        );
    }
    if kind == Kind::Wait
        && let Some(t) = &s.timeout
    {
        not_for(
            "timeout",
            pos(t),
            "a wait step lasts exactly its `wait`; remove `timeout`",
        );
    }

    let action = match kind {
        Kind::Run => {
            let run = s.run.as_ref().expect("kind is run");
            let command = argv(ctx, name, run, base_dir)?;
            StepAction::Script {
                command,
                timeout: timeout.unwrap_or(defaults.script_timeout),
                retries: s.retries.as_ref().map_or(defaults.retries, |r| r.value),
                retry_delay: retry_delay.unwrap_or(defaults.retry_delay),
                env: s.env.clone(),
            }
        }
        Kind::Shell => {
            let shell = s.shell.as_ref().expect("kind is shell");
            if shell.value.trim().is_empty() {
                ctx.error(
                    codes::EMPTY_ARGV,
                    pos(shell),
                    format!("step `{name}` has an empty `shell` command"),
                )
                .hint("write the command, e.g. `shell: ./scripts/update-dns.sh --zone corp`");
                return None;
            }
            StepAction::Script {
                command: Command::Shell(shell.value.clone()),
                timeout: timeout.unwrap_or(defaults.script_timeout),
                retries: s.retries.as_ref().map_or(defaults.retries, |r| r.value),
                retry_delay: retry_delay.unwrap_or(defaults.retry_delay),
                env: s.env.clone(),
            }
        }
        Kind::Manual => {
            let manual = s.manual.as_ref().expect("kind is manual");
            if manual.value.trim().is_empty() {
                ctx.error(
                    codes::BAD_VALUE,
                    pos(manual),
                    format!("manual step `{name}` has no instructions"),
                )
                .hint("say what the operator must do and check before confirming");
                return None;
            }
            let timeout = timeout.or(defaults.manual_timeout);
            // Only for a valid `on_timeout`: a misspelt one is already an error.
            if timeout.is_none()
                && on_timeout.is_some()
                && let Some(o) = &s.on_timeout
            {
                ctx.warning(
                    codes::NO_EFFECT,
                    pos(o),
                    format!("`on_timeout` has no effect: manual step `{name}` has no timeout"),
                )
                .hint("add `timeout` (or `defaults.manual_timeout`), or remove `on_timeout`");
            }
            StepAction::Manual {
                instructions: manual.value.clone(),
                timeout,
                on_timeout: on_timeout.unwrap_or_default(),
            }
        }
        Kind::Wait => {
            let wait = s.wait.as_ref().expect("kind is wait");
            let duration = ctx.duration(
                &format!("`wait` of step `{name}`"),
                wait,
                false,
                "a wait of zero does nothing; remove the step",
            )?;
            StepAction::Wait { duration }
        }
    };
    Some(Step {
        name: name.to_string(),
        action,
        when: when?,
        optional: s.optional,
    })
}

/// `when`. Test cleanup steps run only when a test is completed, so `when`
/// means nothing there: we warn with FIELD_NOT_FOR_KIND (a field that does
/// not apply where it is written, like `retries` on a manual step; a
/// warning, not an error, because the plan still does the only thing it can
/// mean) and store "always". NEVER_RUNS is not used: with this vocabulary
/// every non-empty `when` matches some failover (kinds and directions are
/// independent sets, each empty set meaning "any"), so no group step can be
/// unreachable; the code stays reserved for a vocabulary where that changes.
fn when(ctx: &mut Ctx, s: &StepFile, list: StepList) -> Option<When> {
    let Some(entries) = &s.when else {
        return Some(When::default());
    };
    let mut w = When::default();
    let mut ok = true;
    for e in entries {
        let word = e.value.as_str();
        match word {
            "test" | "planned" | "unplanned" => {
                let k: FailoverKind = word.parse().expect("a kind");
                if !w.kinds.contains(&k) {
                    w.kinds.push(k);
                }
            }
            "forward" | "reverse" => {
                let d = if word == "forward" {
                    Direction::Forward
                } else {
                    Direction::Reverse
                };
                if !w.directions.contains(&d) {
                    w.directions.push(d);
                }
            }
            _ => {
                ok = false;
                ctx.error(
                    codes::UNKNOWN_WHEN,
                    pos(e),
                    format!(
                        "`when` of step `{}` lists `{word}`, which is not a failover kind or direction",
                        s.name.value
                    ),
                )
                .did_you_mean(word, WHEN_WORDS, Some(when_hint(word)));
            }
        }
    }
    if let StepList::Cleanup = list {
        let at = entries.first().map_or(pos(&s.name), pos);
        ctx.warning(
            codes::FIELD_NOT_FOR_KIND,
            at,
            format!(
                "`when` has no effect on test cleanup step `{}`: cleanup steps run whenever a test failover is completed",
                s.name.value
            ),
        )
        .hint("remove `when`");
        return ok.then(When::default);
    }
    ok.then_some(w)
}

/// Words operators use for the vocabulary of `when`.
fn when_hint(word: &str) -> String {
    let meant = match word.to_ascii_lowercase().as_str() {
        "failback" | "fail-back" | "back" => Some("reverse"),
        // Not "failover": it may mean a direction or the planned and
        // unplanned kinds, and a wrong guess is worse than the list.
        "drill" | "dr-test" | "rehearsal" => Some("test"),
        "emergency" | "disaster" => Some("unplanned"),
        "migration" | "maintenance" => Some("planned"),
        _ => None,
    };
    let list = "`when` takes test, planned, unplanned, forward and reverse";
    match meant {
        Some(m) => format!("for a {word}, write `{m}`; {list}"),
        None => list.to_string(),
    }
}

fn on_timeout(ctx: &mut Ctx, s: &StepFile) -> Option<OnTimeout> {
    let o = s.on_timeout.as_ref()?;
    match o.value.as_str() {
        "fail" => Some(OnTimeout::Fail),
        "continue" => Some(OnTimeout::Continue),
        other => {
            ctx.error(
                codes::BAD_VALUE,
                pos(o),
                format!("`on_timeout` is `{other}`; it must be `fail` or `continue`"),
            )
            .did_you_mean(
                other,
                ["fail", "continue"],
                Some("`fail` fails the step when its timeout passes; `continue` skips it and goes on".into()),
            );
            None
        }
    }
}

/// A `run` argv: non-empty, and its program exists (and is executable).
fn argv(ctx: &mut Ctx, name: &str, run: &Spanned<Vec<String>>, base_dir: &Path) -> Option<Command> {
    let at = pos(run);
    let Some(program) = run.value.first() else {
        ctx.error(
            codes::EMPTY_ARGV,
            at,
            format!("step `{name}` has an empty `run` list"),
        )
        .hint("`run` is the program and its arguments, e.g. `run: [./scripts/update-dns.sh, --zone, corp]`");
        return None;
    };
    if program.trim().is_empty() {
        ctx.error(
            codes::EMPTY_ARGV,
            at,
            format!("step `{name}` runs an empty program name"),
        )
        .hint("the first element of `run` is the program: a path with a `/`, or a name looked up on PATH");
        return None;
    }
    if program.contains('/') {
        let path = if Path::new(program).is_absolute() {
            PathBuf::from(program)
        } else {
            // Drop `.` components so messages show `dir/scripts/x.sh`, not
            // `dir/./scripts/x.sh`.
            let mut p = base_dir.to_path_buf();
            p.extend(
                Path::new(program)
                    .components()
                    .filter(|c| *c != std::path::Component::CurDir),
            );
            p
        };
        match ctx.programs.metadata(&path) {
            Err((std::io::ErrorKind::NotFound, _)) => {
                ctx.error(
                    codes::PROGRAM_MISSING,
                    at,
                    format!("step `{name}` runs `{program}`, which does not exist"),
                )
                .hint(format!(
                    "a program with a `/` is relative to the plan file's folder: looked for `{}`",
                    path.display()
                ));
                return None;
            }
            Err((_, e)) => {
                ctx.error(
                    codes::PROGRAM_MISSING,
                    at,
                    format!("step `{name}` runs `{program}`, which cannot be read: {e}"),
                );
                return None;
            }
            Ok(m) if m.is_dir() => {
                ctx.error(
                    codes::NOT_EXECUTABLE,
                    at,
                    format!("step `{name}` runs `{program}`, which is a directory"),
                )
                .hint("name the script inside it");
                return None;
            }
            Ok(m) if !m.is_file() || !is_executable(&m) => {
                ctx.error(
                    codes::NOT_EXECUTABLE,
                    at,
                    format!("step `{name}` runs `{program}`, which is not an executable file"),
                )
                .hint(format!(
                    "make it executable (`chmod +x {}`), or run it through its interpreter, e.g. `run: [sh, {program}]`",
                    path.display()
                ));
                return None;
            }
            Ok(_) => {}
        }
    } else if !ctx.programs.on_path(program) {
        ctx.warning(
            codes::NOT_ON_PATH,
            at,
            format!("step `{name}` runs `{program}`, which is not on this machine's PATH"),
        )
        .hint(format!("the engine host may differ; if the program lives next to the plan, write it as a path (`./{program}`)"));
    }
    Some(Command::Argv(run.value.clone()))
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_m: &std::fs::Metadata) -> bool {
    true
}

/// Whether `program` is an executable file in a directory of `$PATH`.
/// Memoized file-system look-ups for [`argv`] (see `Ctx::programs`).
#[derive(Default)]
pub(super) struct ProgramCache {
    metadata: HashMap<PathBuf, Result<std::fs::Metadata, (std::io::ErrorKind, String)>>,
    on_path: HashMap<String, bool>,
}

impl ProgramCache {
    fn metadata(&mut self, path: &Path) -> Result<std::fs::Metadata, (std::io::ErrorKind, String)> {
        if let Some(m) = self.metadata.get(path) {
            return m.clone();
        }
        let m = std::fs::metadata(path).map_err(|e| (e.kind(), e.to_string()));
        self.metadata.insert(path.to_path_buf(), m.clone());
        m
    }

    fn on_path(&mut self, program: &str) -> bool {
        if let Some(&found) = self.on_path.get(program) {
            return found;
        }
        let found = on_path(program);
        self.on_path.insert(program.to_string(), found);
        found
    }
}

fn on_path(program: &str) -> bool {
    let Some(paths) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&paths).any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && is_executable(&m))
    })
}
