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
/// file (a name, a value): a 300 KB name is shown by its first characters.
pub const MAX_QUOTE_CHARS: usize = 60;

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

/// Stable diagnostic codes. Documented in `docs/plan-format.md`; never reuse
/// a retired code.
pub mod codes {
    // 01xx: reading the file
    pub const IO: &str = "DP0101";
    pub const TOO_LARGE: &str = "DP0102";
    pub const NOT_UTF8: &str = "DP0103";
    pub const EMPTY: &str = "DP0104";
    pub const SYNTAX: &str = "DP0105";
    pub const LIMIT: &str = "DP0106";
    // 02xx: shape
    pub const UNKNOWN_FIELD: &str = "DP0201";
    pub const WRONG_TYPE: &str = "DP0202";
    pub const MISSING_FIELD: &str = "DP0203";
    pub const BAD_VALUE: &str = "DP0204";
    pub const VERSION: &str = "DP0205";
    // 03xx: names and structure
    pub const INVALID_NAME: &str = "DP0301";
    pub const DUPLICATE_GROUP: &str = "DP0302";
    pub const DUPLICATE_STEP: &str = "DP0303";
    pub const DUPLICATE_VM: &str = "DP0304";
    pub const VM_IN_TWO_GROUPS: &str = "DP0305";
    pub const UNKNOWN_GROUP: &str = "DP0306";
    pub const SELF_DEPENDENCY: &str = "DP0307";
    pub const CYCLE: &str = "DP0308";
    pub const EMPTY_PLAN: &str = "DP0309";
    pub const BAD_SITE_CLOUD: &str = "DP0310";
    pub const SAME_SOURCE_TARGET: &str = "DP0311";
    pub const EMPTY_GROUP: &str = "DP0312";
    // 04xx: durations and numbers
    pub const BAD_DURATION: &str = "DP0401";
    pub const ZERO_DURATION: &str = "DP0402";
    pub const TEST_WINDOW: &str = "DP0403";
    pub const MISSING_WINDOW: &str = "DP0404";
    // 05xx: steps
    pub const STEP_KIND: &str = "DP0501";
    pub const EMPTY_ARGV: &str = "DP0502";
    pub const PROGRAM_MISSING: &str = "DP0503";
    pub const NOT_EXECUTABLE: &str = "DP0504";
    pub const NOT_ON_PATH: &str = "DP0505";
    pub const UNKNOWN_WHEN: &str = "DP0506";
    pub const FIELD_NOT_FOR_KIND: &str = "DP0507";
    pub const NEVER_RUNS: &str = "DP0508";
    /// A setting that is ignored where it is written (warning).
    pub const NO_EFFECT: &str = "DP0509";
    // 06xx: plan against the inventory
    pub const FABRIC_UNREADABLE: &str = "DP0601";
    pub const UNKNOWN_VM: &str = "DP0602";
    pub const VM_NOT_PROTECTED: &str = "DP0603";
    pub const VM_WRONG_CLOUD: &str = "DP0604";
    pub const NOT_PAIRED: &str = "DP0605";
    pub const NO_NETWORK_MAPPING: &str = "DP0606";
    pub const UNKNOWN_SITE_CLOUD: &str = "DP0607";
    pub const UNKNOWN_TEST_NETWORK: &str = "DP0608";
    /// The test network is a failover target network, not an isolated one (warning).
    pub const TEST_NETWORK_NOT_ISOLATED: &str = "DP0609";
    // 07xx: inventory itself
    pub const FABRIC_DUPLICATE: &str = "DP0701";
    pub const FABRIC_UNKNOWN_REF: &str = "DP0702";
    pub const POLICY_COPY_FREQUENCY: &str = "DP0703";
    pub const POLICY_APP_CONSISTENT: &str = "DP0704";
    pub const POLICY_AUTH: &str = "DP0705";
    pub const POLICY_PORT: &str = "DP0706";
    pub const POLICY_INITIAL: &str = "DP0707";
    pub const POLICY_OS: &str = "DP0708";
    pub const FABRIC_BAD_VALUE: &str = "DP0709";
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
