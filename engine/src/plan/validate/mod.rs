//! Semantic validation of plans and inventories.
//!
//! The YAML layer ([`super::yaml`]) guarantees the *shape* (fields, types);
//! this module checks what the shape cannot say: names, references between
//! groups, dependency cycles, durations, step kinds, scripts on disk, and the
//! plan against the fabric inventory. Like a compiler, it never stops at the
//! first problem: every rule runs and every problem becomes a located
//! [`Diagnostic`]; the validated model is returned only when none of them is
//! an error.
//!
//! Layout: the plan rules live in `plan.rs`, step rules in `steps.rs`,
//! the group graph (`after`, cycles) in `graph.rs`, the plan-against-inventory
//! cross-checks in `cross.rs` and the inventory's own rules in `fabric.rs`.
//! Shared helpers (names, durations, `site/cloud`) are below.

mod cross;
mod fabric;
mod graph;
mod plan;
mod steps;

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::diag::{Diagnostic, Pos, Severity, did_you_mean};
use super::fabric_file::FabricFile;
use super::file::PlanFile;
use super::model::{CloudRef, Inventory, Plan};

pub use graph::dependency_cycles;

/// Validate a parsed plan; `inventory` enables the cross-checks against the
/// fabric. Returns the validated plan iff no diagnostic is an error
/// (warnings are allowed), and every diagnostic found, sorted.
pub fn validate_plan(
    file: &str,
    plan: &PlanFile,
    base_dir: &Path,
    inventory: Option<&Inventory>,
) -> (Option<Plan>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(file);
    let validated = plan::validate(&mut ctx, plan, base_dir, inventory);
    ctx.finish(validated)
}

/// Validate a parsed inventory. Returns the validated inventory iff no
/// diagnostic is an error, and every diagnostic found, sorted.
pub fn validate_fabric(file: &str, fabric: &FabricFile) -> (Option<Inventory>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(file);
    let validated = fabric::validate(&mut ctx, fabric);
    ctx.finish(validated)
}

/// Whether `name` is a valid plan, group, step or VM name:
/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`. Names end up in step keys
/// (`GROUP/vm/VM/OP`), file names and shell-free logs, hence the small
/// alphabet.
pub fn is_valid_name(name: &str) -> bool {
    name_problem(name).is_none()
}

/// The longest name allowed.
pub const MAX_NAME_LEN: usize = 63;

/// What is wrong with a name, in words, or `None` when it is valid.
fn name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Some("is empty".to_string());
    };
    if name.chars().count() > MAX_NAME_LEN {
        return Some(format!(
            "is {} characters long; names have at most {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Some(format!(
            "starts with {}; names start with a letter or digit",
            describe_char(first)
        ));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!("contains {}", describe_char(bad)));
    }
    None
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

const NAME_HINT: &str = "names use letters, digits, `.`, `_` and `-`, start with a letter or digit, and have at most 63 characters";

/// Examples shown when a duration does not parse.
const DURATION_HINT: &str = "write a number and a unit, e.g. 30s, 5m, 1h30m, 14d";

/// The source position of a spanned value.
fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos::from(s.referenced)
}

/// Collects diagnostics for one file.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    /// What the file system said about each script path, and whether each
    /// bare program name is on PATH: large plans run the same few scripts
    /// from hundreds of steps, and every look-up is one system call per
    /// PATH entry. Per validation run, so a script added since is seen.
    programs: steps::ProgramCache,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str) -> Self {
        Ctx {
            file,
            diags: Vec::new(),
            programs: steps::ProgramCache::default(),
        }
    }

    fn error(&mut self, code: &'static str, pos: Pos, message: impl Into<String>) -> Note<'_> {
        self.diags
            .push(Diagnostic::error(code, self.file, pos, message));
        Note(self.diags.last_mut().expect("just pushed"))
    }

    fn warning(&mut self, code: &'static str, pos: Pos, message: impl Into<String>) -> Note<'_> {
        self.diags
            .push(Diagnostic::warning(code, self.file, pos, message));
        Note(self.diags.last_mut().expect("just pushed"))
    }

    fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    fn finish<T>(self, validated: Option<T>) -> (Option<T>, Vec<Diagnostic>) {
        let mut diags = self.diags;
        super::diag::sort(&mut diags);
        let ok = !diags.iter().any(|d| d.severity == Severity::Error);
        (validated.filter(|_| ok), diags)
    }

    /// Check a name against [`is_valid_name`]; `what` is e.g. "group name".
    fn check_name(&mut self, code: &'static str, what: &str, name: &str, at: Pos) -> bool {
        if name.is_empty() {
            self.error(code, at, format!("{what} is empty"))
                .hint(NAME_HINT);
            return false;
        }
        match name_problem(name) {
            None => true,
            Some(problem) => {
                self.error(code, at, format!("{what} `{name}` {problem}"))
                    .hint(NAME_HINT);
                false
            }
        }
    }

    /// Parse a duration field. `field` names it as the author wrote it
    /// (e.g. "`timeout` of step `notify`"). Zero is refused unless
    /// `zero_ok` says why it would make sense; `zero_hint` explains the refusal.
    fn duration(
        &mut self,
        field: &str,
        value: &Spanned<String>,
        zero_ok: bool,
        zero_hint: &str,
    ) -> Option<Duration> {
        let at = pos(value);
        let text = value.value.trim();
        if text.is_empty() {
            self.error(
                super::diag::codes::BAD_DURATION,
                at,
                format!("{field} is empty"),
            )
            .hint(DURATION_HINT);
            return None;
        }
        if text.starts_with('-') {
            self.error(
                super::diag::codes::BAD_DURATION,
                at,
                format!("{field} cannot be negative (`{}`)", value.value),
            )
            .hint(DURATION_HINT);
            return None;
        }
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.error(
                    super::diag::codes::ZERO_DURATION,
                    at,
                    format!("{field} cannot be zero"),
                )
                .hint(zero_hint);
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    super::diag::codes::BAD_DURATION,
                    at,
                    format!(
                        "{field} is `{}`, which is not a duration: {}",
                        value.value,
                        why_not_duration(text, &e)
                    ),
                )
                .hint(DURATION_HINT);
                None
            }
        }
    }
}

/// humantime's error, in the plan author's words.
fn why_not_duration(text: &str, e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    match e {
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("`{value}` needs a unit, e.g. `{value}s` or `{value}m`")
        }
        E::UnknownUnit { unit, .. } => format!("`{unit}` is not a unit drplan knows"),
        E::NumberExpected(_) => "a duration is a number followed by a unit".to_string(),
        // `get`, not indexing: never panic on an offset inside a character.
        E::InvalidCharacter(i) => match text.get(*i..).and_then(|t| t.chars().next()) {
            Some(c) => format!("{} is not allowed in a duration", describe_char(c)),
            None => "it ends unexpectedly".to_string(),
        },
        E::NumberOverflow => "it is too large".to_string(),
        E::Empty => "it is empty".to_string(),
    }
}

/// A just-pushed diagnostic, to attach a hint to.
struct Note<'a>(&'a mut Diagnostic);

impl Note<'_> {
    fn hint(self, hint: impl Into<String>) {
        self.0.hint = Some(super::diag::bounded(hint.into()));
    }

    /// A "did you mean" hint when a close candidate exists, else `otherwise`.
    fn did_you_mean<'c>(
        self,
        name: &str,
        candidates: impl IntoIterator<Item = &'c str>,
        otherwise: Option<String>,
    ) {
        match did_you_mean(name, candidates) {
            Some(c) => self.hint(format!("did you mean `{c}`?")),
            None => {
                if let Some(o) = otherwise {
                    self.hint(o)
                }
            }
        }
    }
}

/// Split `site/cloud` (or `site/network`, ...). Both parts must be non-empty
/// and there must be exactly one `/`.
fn split_ref(text: &str) -> Option<(&str, &str)> {
    let (a, b) = text.split_once('/')?;
    if a.trim().is_empty() || b.trim().is_empty() || b.contains('/') {
        return None;
    }
    if a.trim() != a || b.trim() != b {
        return None;
    }
    Some((a, b))
}

fn cloud_ref(text: &str) -> Option<CloudRef> {
    split_ref(text).map(|(site, cloud)| CloudRef {
        site: site.to_string(),
        cloud: cloud.to_string(),
    })
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests;
