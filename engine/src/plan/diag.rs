//! Diagnostics: every problem found in a plan or inventory, each pointing at
//! the offending text.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The plan can run, but probably not as the author meant
    /// (`--deny-warnings` makes these fatal).
    Warning,
    /// The plan cannot run.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A position in a source file. Lines and columns start at 1; `0` means the
/// position is unknown (the diagnostic then points at the whole file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Pos {
        Pos {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// A source file a diagnostic may point into. Shared, so thousands of
/// diagnostics do not copy the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as the user gave it (or as resolved relative to the plan).
    pub name: Arc<str>,
    /// The full text, for rendering snippets.
    pub text: Arc<str>,
}

impl Source {
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable code (see `docs/plan-format.md`), e.g. `DP0201`.
    pub code: &'static str,
    /// The file the problem is in.
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// What is wrong, in the plan author's words.
    pub message: String,
    /// How to fix it, when there is an obvious way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error. The message is [`bounded`]: text quoted from the file is
    /// shortened, so one hostile value cannot make the output huge.
    pub fn error(code: &'static str, file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            message: bounded(message.into()),
            hint: None,
        }
    }

    pub fn warning(code: &'static str, file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, pos, message)
        }
    }

    /// Attach a hint ([`bounded`] like the message).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(bounded(hint.into()));
        self
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error[CODE]: message` then an indented hint, the
    /// format compilers use, so editors and CI logs can jump to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            self.file, self.line, self.column, self.severity, self.code, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  = hint: {h}")?;
        }
        Ok(())
    }
}

/// The most characters of one `quoted` fragment a message repeats from the
/// file (a name, a path, a command): a 300 KB name is shown by its first
/// characters, a long script path whole.
pub const MAX_QUOTE_CHARS: usize = 200;

/// The most characters of a message or hint, whatever it quotes: beyond,
/// its middle is left out (its start says what is wrong, its end where).
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `text` with every `` `quoted` `` fragment longer than
/// [`MAX_QUOTE_CHARS`] shortened to its start and `…`, and then, if still
/// longer than [`MAX_MESSAGE_CHARS`], its middle replaced by a note of how
/// much was left out. Output of drplan stays readable (and its size bounded)
/// whatever the file holds; the file itself is where the full text is.
pub fn bounded(text: String) -> String {
    if text.len() <= MAX_QUOTE_CHARS {
        return text;
    }
    let mut out = String::with_capacity(text.len().min(4 * MAX_MESSAGE_CHARS));
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backticks (an unpaired last one too: it is
        // shortened all the same).
        if i % 2 == 1 && part.chars().nth(MAX_QUOTE_CHARS).is_some() {
            out.extend(part.chars().take(MAX_QUOTE_CHARS - 1));
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    let count = out.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return out;
    }
    let head = MAX_MESSAGE_CHARS * 3 / 4;
    let tail = MAX_MESSAGE_CHARS / 5;
    let left_out = count - head - tail;
    let mut cut: String = out.chars().take(head).collect();
    cut.push_str(&format!(" […{left_out} characters left out…] "));
    cut.extend(out.chars().skip(count - tail));
    cut
}

/// Sort diagnostics by file, position, then code, so output is deterministic.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (
            a.file.as_str(),
            a.line,
            a.column,
            a.code,
            a.message.as_str(),
        )
            .cmp(&(
                b.file.as_str(),
                b.line,
                b.column,
                b.code,
                b.message.as_str(),
            ))
    });
}

/// True when any diagnostic is an error (or a warning, with `deny_warnings`).
pub fn has_failures(diags: &[Diagnostic], deny_warnings: bool) -> bool {
    diags
        .iter()
        .any(|d| d.severity == Severity::Error || deny_warnings)
}

/// The closest candidate to `name`, for "did you mean" hints.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Stable diagnostic codes. Documented in `docs/plan-format.md` (a test
/// compares that table with [`codes::ALL`]); never reuse a retired code.
pub mod codes {
    use super::Severity::{self, Error, Warning};

    /// Every code: its constant's name and the severities it is reported with.
    macro_rules! codes {
        ($($(#[$doc:meta])* $name:ident = $code:literal, [$($sev:ident),+];)*) => {
            $($(#[$doc])* pub const $name: &str = $code;)*
            /// Every code as (code, name, severities), in code order.
            pub const ALL: &[(&str, &str, &[Severity])] =
                &[$(($code, stringify!($name), &[$($sev),+])),*];
        };
    }

    codes! {
        // 01xx: reading the file
        IO = "DP0101", [Error];
        TOO_LARGE = "DP0102", [Error];
        NOT_UTF8 = "DP0103", [Error];
        EMPTY = "DP0104", [Error];
        SYNTAX = "DP0105", [Error];
        LIMIT = "DP0106", [Error];
        // 02xx: shape
        UNKNOWN_FIELD = "DP0201", [Error];
        WRONG_TYPE = "DP0202", [Error];
        MISSING_FIELD = "DP0203", [Error];
        BAD_VALUE = "DP0204", [Error];
        VERSION = "DP0205", [Error];
        // 03xx: names and structure
        INVALID_NAME = "DP0301", [Error];
        DUPLICATE_GROUP = "DP0302", [Error];
        DUPLICATE_STEP = "DP0303", [Error];
        DUPLICATE_VM = "DP0304", [Error];
        VM_IN_TWO_GROUPS = "DP0305", [Error];
        UNKNOWN_GROUP = "DP0306", [Error];
        SELF_DEPENDENCY = "DP0307", [Error];
        CYCLE = "DP0308", [Error];
        EMPTY_PLAN = "DP0309", [Error];
        BAD_SITE_CLOUD = "DP0310", [Error];
        SAME_SOURCE_TARGET = "DP0311", [Error];
        EMPTY_GROUP = "DP0312", [Warning];
        // 04xx: durations and numbers
        BAD_DURATION = "DP0401", [Error];
        ZERO_DURATION = "DP0402", [Error];
        TEST_WINDOW = "DP0403", [Error];
        MISSING_WINDOW = "DP0404", [Error];
        // 05xx: steps
        STEP_KIND = "DP0501", [Error];
        EMPTY_ARGV = "DP0502", [Error];
        PROGRAM_MISSING = "DP0503", [Error];
        NOT_EXECUTABLE = "DP0504", [Error];
        NOT_ON_PATH = "DP0505", [Warning];
        UNKNOWN_WHEN = "DP0506", [Error];
        FIELD_NOT_FOR_KIND = "DP0507", [Error, Warning];
        NEVER_RUNS = "DP0508", [Warning];
        /// A setting that is ignored where it is written (warning).
        NO_EFFECT = "DP0509", [Warning];
        // 06xx: plan against the inventory
        FABRIC_UNREADABLE = "DP0601", [Error];
        UNKNOWN_VM = "DP0602", [Error];
        VM_NOT_PROTECTED = "DP0603", [Warning];
        VM_WRONG_CLOUD = "DP0604", [Error];
        NOT_PAIRED = "DP0605", [Error];
        NO_NETWORK_MAPPING = "DP0606", [Warning];
        UNKNOWN_SITE_CLOUD = "DP0607", [Error];
        UNKNOWN_TEST_NETWORK = "DP0608", [Error];
        /// The test network is a failover target network, not an isolated one (warning).
        TEST_NETWORK_NOT_ISOLATED = "DP0609", [Warning];
        // 07xx: inventory itself
        FABRIC_DUPLICATE = "DP0701", [Error];
        FABRIC_UNKNOWN_REF = "DP0702", [Error];
        POLICY_COPY_FREQUENCY = "DP0703", [Error];
        POLICY_APP_CONSISTENT = "DP0704", [Error];
        POLICY_AUTH = "DP0705", [Error];
        POLICY_PORT = "DP0706", [Error];
        POLICY_INITIAL = "DP0707", [Error];
        POLICY_OS = "DP0708", [Error];
        FABRIC_BAD_VALUE = "DP0709", [Error];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_kept_and_long_quotes_are_cut() {
        let m = "unknown key `retires` in the step".to_string();
        assert_eq!(bounded(m.clone()), m);
        let name = "a".repeat(300_000);
        let d = Diagnostic::error(
            codes::INVALID_NAME,
            "f",
            Pos::new(1, 1),
            format!("name `{name}` is long"),
        )
        .with_hint(format!("rename `{name}`"));
        let quoted = format!("`{}…`", "a".repeat(MAX_QUOTE_CHARS - 1));
        assert_eq!(d.message, format!("name {quoted} is long"));
        assert_eq!(d.hint.as_deref(), Some(format!("rename {quoted}").as_str()));
    }

    #[test]
    fn long_unquoted_messages_keep_their_start_and_end() {
        let list: Vec<String> = (0..50_000).map(|i| format!("g{i}")).collect();
        let m = bounded(format!("start: {} :end", list.join(" → ")));
        assert!(m.chars().count() < MAX_MESSAGE_CHARS + 50, "{}", m.len());
        assert!(m.starts_with("start: g0 → g1"), "{m}");
        assert!(m.ends_with("g49999 :end"), "{m}");
        assert!(m.contains("characters left out"), "{m}");
    }
}
