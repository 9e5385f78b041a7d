//! Rendering engine diagnostics compiler-style with miette: the code, the
//! message, a snippet of the file with a label under the offending text,
//! and the hint as `help`.
//!
//! The engine reports positions as 1-based line and column, columns counted
//! in characters (Unicode scalar values), `0:0` when unknown. miette wants
//! byte offsets, so [`offset_of`] does the conversion, carefully: multi-byte
//! UTF-8, CRLF line ends, and positions past the end of a line or of the
//! file (clamped, never a panic).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use drplan_engine::plan::{self, Diagnostic, Severity};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

/// Source texts by the file name diagnostics use. The plan and inventory
/// texts are already in memory after loading; other files are read on
/// demand, once. A file that cannot be read (or is not UTF-8) is remembered
/// as `None`: its diagnostics are shown without a snippet.
#[derive(Default)]
pub struct Sources {
    files: HashMap<String, Option<Arc<SourceFile>>>,
}

impl Sources {
    pub fn insert(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.files
                .insert(name.to_string(), Some(Arc::new(SourceFile::new(t))));
        }
    }

    fn get(&mut self, name: &str) -> Option<Arc<SourceFile>> {
        self.files
            .entry(name.to_string())
            .or_insert_with(|| {
                // read_source refuses directories and oversized files.
                let bytes = plan::read_source(Path::new(name)).ok()?;
                let text = String::from_utf8(bytes).ok()?;
                Some(Arc::new(SourceFile::new(&text)))
            })
            .clone()
    }
}

/// A source text with an index of its line starts, so that locating each
/// of thousands of diagnostics in a large file costs a binary search, not a
/// scan of the file.
pub struct SourceFile {
    text: Arc<str>,
    /// Byte offset of the start of each line; a final `\n` does not start
    /// a new (empty) line.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(text: &str) -> SourceFile {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.match_indices('\n')
                .map(|(i, _)| i + 1)
                .filter(|&s| s < text.len()),
        );
        SourceFile {
            text: Arc::from(text),
            line_starts,
        }
    }

    /// The byte offset of 1-based `line`:`column` (column in characters).
    /// `None` when the line is 0 (position unknown). A line past the end
    /// points at the end of the last line; a column past the end of its
    /// line points at the line end (before a `\r\n` or `\n`). Column 0 is
    /// taken as 1.
    pub fn offset(&self, line: u64, column: u64) -> Option<usize> {
        if line == 0 {
            return None;
        }
        let index = usize::try_from(line - 1).unwrap_or(usize::MAX);
        let Some(&start) = self.line_starts.get(index) else {
            let last = *self.line_starts.last().unwrap_or(&0);
            return Some(line_end(&self.text, last));
        };
        let end = line_end(&self.text, start);
        let col = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
        Some(
            self.text[start..end]
                .char_indices()
                .nth(col)
                .map_or(end, |(i, _)| start + i),
        )
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// The lines around `offset` (`context` lines either side) as
    /// (start byte, end byte, 0-based first line).
    fn window(&self, offset: usize, context: usize) -> (usize, usize, usize) {
        let line = self.line_of(offset);
        let first = line.saturating_sub(context);
        let start = self.line_starts[first];
        let end = self
            .line_starts
            .get(line + context + 1)
            .copied()
            .unwrap_or(self.text.len());
        (start, end, first)
    }
}

/// The byte offset of 1-based `line`:`column` in `text`; see
/// [`SourceFile::offset`].
#[cfg(test)]
fn offset_of(text: &str, line: u64, column: u64) -> Option<usize> {
    SourceFile::new(text).offset(line, column)
}

/// The end of the line starting at `start`, excluding its `\n` or `\r\n`.
fn line_end(text: &str, start: usize) -> usize {
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    if end > start && text.as_bytes()[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// The length in bytes of the YAML token starting at `offset`, so the label
/// underlines the whole name or value rather than one character: a quoted
/// scalar up to its closing quote, otherwise up to whitespace, a flow
/// indicator (`,[]{}`) or a `: ` separator. Zero at a line end.
pub fn token_len(text: &str, offset: usize) -> usize {
    let rest = &text[offset..line_end(text, offset)];
    let mut chars = rest.char_indices();
    let Some((_, first)) = chars.next() else {
        return 0;
    };
    if first == '"' || first == '\'' {
        let mut escaped = false;
        for (i, c) in chars {
            if first == '"' && c == '\\' && !escaped {
                escaped = true;
                continue;
            }
            if c == first && !escaped {
                return i + c.len_utf8();
            }
            escaped = false;
        }
        return rest.len();
    }
    let mut end = rest.len();
    let mut iter = rest.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let stop = c.is_whitespace()
            || matches!(c, ',' | '[' | ']' | '{' | '}')
            || (c == ':' && iter.peek().is_none_or(|(_, n)| n.is_whitespace()));
        if stop {
            end = i;
            break;
        }
    }
    // A token that starts with an indicator (`- `, `: `) still gets one
    // character underlined.
    end.max(first.len_utf8())
}

/// The few lines of a file around a diagnostic, as miette's source. miette
/// scans its source from the start for every snippet, which made thousands
/// of diagnostics in a large plan quadratic; a window keeps each snippet
/// cheap. Spans are relative to the window; line numbers are shifted back
/// and the header's column counted in characters, as drplan reports them
/// (miette counts bytes).
///
/// Long lines are cut to [`SNIPPET_LINE_CHARS`] characters around the
/// label (with `…` where text was left out): a 300 KB line of a hostile or
/// generated file is shown as a line, never echoed whole (miette also
/// panics on columns beyond 65,535).
struct Window {
    name: String,
    /// The excerpt: the window's lines, each cut to a readable length.
    text: String,
    first_line: usize,
    /// The label's column in the file, in characters (0-based).
    column: usize,
}

/// The most characters of a source line a snippet shows.
const SNIPPET_LINE_CHARS: usize = 160;

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.first_line + 1)
    }
}

impl Window {
    /// The window of `context` lines either side of byte `offset`, and the
    /// label's span (`len` bytes from `offset` in the file) within it.
    fn new(
        name: &str,
        file: &SourceFile,
        offset: usize,
        len: usize,
        context: usize,
    ) -> (Window, (usize, usize)) {
        let (start, end, first_line) = file.window(offset, context);
        let label_line_start = file.line_starts[file.line_of(offset)];
        let column = file.text[label_line_start..offset].chars().count();
        let mut text = String::new();
        let mut span = (0, 0);
        let mut at = start;
        while at < end {
            let stop = file.text[at..end].find('\n').map_or(end, |i| at + i + 1);
            let line = &file.text[at..stop];
            let body = line.trim_end_matches(['\n', '\r']);
            let newline = &line[body.len()..];
            if at == label_line_start {
                let (cut, skipped) = excerpt(body, offset - at);
                let from = text.len() + (offset - at - skipped);
                text.push_str(&cut);
                let room = text.len().saturating_sub(from);
                span = (from, len.min(room));
            } else {
                text.push_str(&excerpt(body, 0).0);
            }
            text.push_str(newline);
            at = stop;
        }
        (
            Window {
                name: name.to_string(),
                text,
                first_line,
                column,
            },
            span,
        )
    }
}

/// `line` cut to at most [`SNIPPET_LINE_CHARS`] characters that include byte
/// `keep` (where the label is), with `…` where text was left out; and how
/// many bytes of `line` the excerpt's first byte stands for minus the bytes
/// the leading `…` adds (so `keep - skipped` is `keep` in the excerpt).
fn excerpt(line: &str, keep: usize) -> (String, usize) {
    if line.chars().nth(SNIPPET_LINE_CHARS).is_none() {
        return (line.to_string(), 0);
    }
    // Start a third of the width before the label, on a character boundary.
    let keep_char = line[..keep.min(line.len())].chars().count();
    let first = keep_char.saturating_sub(SNIPPET_LINE_CHARS / 3);
    let mut chars = line.char_indices().skip(first);
    let from = chars.clone().next().map_or(line.len(), |(i, _)| i);
    let to = chars
        .nth(SNIPPET_LINE_CHARS - 2)
        .map_or(line.len(), |(i, _)| i);
    let mut out = String::new();
    let mut skipped = from;
    if from > 0 {
        out.push('…');
        skipped -= '…'.len_utf8().min(from);
    }
    out.push_str(&line[from..to]);
    if to < line.len() {
        out.push('…');
    }
    (out, skipped)
}

impl SourceCode for Window {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        let column = if context_lines_before == 0 && context_lines_after == 0 {
            // The header's `line:col`: the label's column in the file.
            self.column
        } else {
            inner.column()
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            column,
            inner.line_count() + self.first_line,
        )))
    }
}

/// One engine diagnostic in miette's terms.
struct Report {
    message: String,
    code: &'static str,
    severity: Severity,
    help: Option<String>,
    source: Option<Window>,
    label: Option<LabeledSpan>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.label
            .clone()
            .map(|l| Box::new(std::iter::once(l)) as Box<dyn Iterator<Item = LabeledSpan>>)
    }
}

/// Renders diagnostics with a fixed theme and width.
pub struct Renderer {
    handler: GraphicalReportHandler,
}

impl Renderer {
    /// `color`: ANSI colours (decided by the caller from the stream and
    /// `--color`/NO_COLOR). `width`: wrap width in columns.
    pub fn new(color: bool, width: usize) -> Renderer {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        Renderer {
            handler: GraphicalReportHandler::new_themed(theme)
                .with_width(width)
                .with_context_lines(1)
                // No hyperlinks: the codes are not URLs (yet).
                .with_links(false),
        }
    }

    /// Render one diagnostic; the text ends with a newline.
    pub fn render(&self, d: &Diagnostic, sources: &mut Sources) -> String {
        let snippet = offset_of_diag(d, sources);
        let message = match &snippet {
            // miette's snippet header shows `file:line:col`.
            Some(_) => d.message.clone(),
            None if d.line == 0 => {
                if d.message.contains(&d.file) {
                    d.message.clone()
                } else {
                    format!("{}: {}", d.file, d.message)
                }
            }
            None => format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message),
        };
        let (source, label) = match snippet {
            Some((file, offset)) => {
                let len = token_len(&file.text, offset);
                // Two lines either side: more than the one context line
                // shown, so miette never runs out of window.
                let (window, span) = Window::new(&d.file, &file, offset, len, 2);
                (
                    Some(window),
                    Some(LabeledSpan::new_primary_with_span(
                        Some(label_text(d).to_string()),
                        span,
                    )),
                )
            }
            None => (None, None),
        };
        let report = Report {
            message,
            code: d.code,
            severity: d.severity,
            help: d.hint.clone(),
            source,
            label,
        };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &report).is_err() {
            // The renderer failed (it should not): fall back to the plain
            // `file:line:col: error[CODE]: message` form.
            out = format!("{d}\n");
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

fn label_text(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "here",
        Severity::Warning => "this",
    }
}

fn offset_of_diag(d: &Diagnostic, sources: &mut Sources) -> Option<(Arc<SourceFile>, usize)> {
    if d.line == 0 {
        return None;
    }
    let file = sources.get(&d.file)?;
    let offset = file.offset(d.line, d.column)?;
    Some((file, offset))
}

#[cfg(test)]
mod tests {
    use drplan_engine::plan::diag::{Pos, codes};

    use super::*;

    #[test]
    fn offsets_count_columns_in_characters() {
        let text = "a: 1\nnäme: é€x\n";
        assert_eq!(offset_of(text, 1, 1), Some(0));
        assert_eq!(offset_of(text, 2, 1), Some(5));
        // `é€x`: column 7 is `é` (byte 5 + 6 after `näme: ` = "n" 1 + "ä" 2 + "me: " 4).
        assert_eq!(&text[offset_of(text, 2, 7).unwrap()..], "é€x\n");
        assert_eq!(&text[offset_of(text, 2, 9).unwrap()..], "x\n");
    }

    #[test]
    fn crlf_line_ends_are_not_part_of_the_line() {
        let text = "a: 1\r\nbb: 2\r\n";
        assert_eq!(offset_of(text, 2, 1), Some(6));
        assert_eq!(&text[offset_of(text, 2, 5).unwrap()..], "2\r\n");
        // Past the end of the line: just before the `\r\n`.
        assert_eq!(offset_of(text, 2, 50), Some(11));
        assert_eq!(offset_of(text, 1, 50), Some(4));
    }

    #[test]
    fn positions_past_the_end_are_clamped() {
        let text = "a: 1\nb: 2\n";
        // The last line, at its end (not past the final newline).
        assert_eq!(offset_of(text, 3, 1), Some(9));
        assert_eq!(offset_of(text, 99, 99), Some(9));
        assert_eq!(offset_of("", 5, 5), Some(0));
        assert_eq!(offset_of("no newline", 2, 1), Some(10));
        assert_eq!(offset_of(text, 1, 0), Some(0));
        assert_eq!(offset_of(text, 0, 0), None);
        assert_eq!(offset_of(text, u64::MAX, u64::MAX), Some(9));
        assert_eq!(offset_of(text, 1, u64::MAX), Some(4));
    }

    #[test]
    fn tokens_cover_names_and_quoted_values() {
        let text = "  nmae: web-1 # c\n  x: \"a \\\" b\" y\n  - [vm1, vm2]\n  t: 10:30\n";
        let at = |l, c| offset_of(text, l, c).unwrap();
        let tok = |l, c| &text[at(l, c)..at(l, c) + token_len(text, at(l, c))];
        assert_eq!(tok(1, 3), "nmae");
        assert_eq!(tok(1, 9), "web-1");
        assert_eq!(tok(2, 6), "\"a \\\" b\"");
        assert_eq!(tok(3, 3), "-");
        assert_eq!(tok(3, 6), "vm1");
        assert_eq!(tok(4, 6), "10:30");
        assert_eq!(token_len(text, text.len()), 0);
    }

    fn render(d: &Diagnostic, file_text: Option<&str>) -> String {
        let mut sources = Sources::default();
        sources.insert(&d.file, file_text);
        Renderer::new(false, 100).render(d, &mut sources)
    }

    #[test]
    fn rendered_report_has_code_snippet_label_and_help() {
        let text = "drplan: 1\nname: wëb\ngroups:\n  - nmae: app\n";
        let d = Diagnostic::error(
            codes::UNKNOWN_FIELD,
            "plans/x.yaml",
            Pos::new(4, 5),
            "unknown key `nmae`",
        )
        .with_hint("did you mean `name`?");
        let out = render(&d, Some(text));
        assert!(out.contains("DP0201"), "{out}");
        assert!(out.contains("unknown key `nmae`"), "{out}");
        assert!(out.contains("[plans/x.yaml:4:5]"), "{out}");
        assert!(out.contains("  - nmae: app"), "{out}");
        // A 4-character underline starting under the `n` of `nmae`.
        assert!(out.contains(" 4 │   - nmae: app\n   ·     ──┬─\n"), "{out}");
        assert!(out.contains("help: did you mean `name`?"), "{out}");
        assert!(!out.contains('\u{1b}'), "no colour codes: {out}");
    }

    #[test]
    fn unknown_position_or_missing_source_renders_without_snippet() {
        let d = Diagnostic::error(codes::IO, "gone.yaml", Pos::UNKNOWN, "cannot read");
        let out = render(&d, None);
        assert!(out.contains("gone.yaml: cannot read"), "{out}");
        assert!(!out.contains('╭'), "{out}");
        // A position in a file that cannot be read still names the place.
        let d = Diagnostic::warning(codes::SYNTAX, "/nonexistent/x.yaml", Pos::new(3, 2), "odd");
        let out = render(&d, None);
        assert!(out.contains("/nonexistent/x.yaml:3:2: odd"), "{out}");
    }

    #[test]
    fn header_columns_count_characters_and_lines_deep_in_a_file_are_right() {
        let mut text = String::new();
        for i in 1..=30_000 {
            text.push_str(&format!("      - vm-{i:05}\n"));
        }
        text.push_str("  ünï: €x\n");
        let d = Diagnostic::error(
            codes::UNKNOWN_VM,
            "big.yaml",
            Pos::new(25_000, 9),
            "unknown VM",
        );
        let out = render(&d, Some(&text));
        assert!(out.contains("[big.yaml:25000:9]"), "{out}");
        assert!(out.contains("24999 │       - vm-24999\n"), "{out}");
        assert!(out.contains("25000 │       - vm-25000\n"), "{out}");
        assert!(out.contains("25001 │       - vm-25001\n"), "{out}");
        assert!(
            out.contains("·         ────┬───"),
            "underline under vm-25000: {out}"
        );
        // `€` is column 8 in characters (byte 11 of its line).
        let d = Diagnostic::error(codes::BAD_VALUE, "big.yaml", Pos::new(30_001, 8), "bad");
        let out = render(&d, Some(&text));
        assert!(out.contains("[big.yaml:30001:8]"), "{out}");
        assert!(out.contains("30001 │   ünï: €x\n"), "{out}");
        assert!(out.contains("·        ─┬\n"), "underline under `€x`: {out}");
    }

    #[test]
    fn long_lines_are_cut_around_the_label() {
        // A 300 KB line, the label near its end: miette alone panicked on
        // the column and would have echoed the whole line.
        let long: String = (0..40_000).map(|i| format!("v{i}, ")).collect();
        let text = format!("groups:\n  - vms: [{long}dup]\n    name: g\n");
        let column = 11 + long.chars().count() as u64;
        let d = Diagnostic::error(codes::DUPLICATE_VM, "l.yaml", Pos::new(2, column), "twice");
        let out = render(&d, Some(&text));
        assert!(out.len() < 2_000, "{} bytes", out.len());
        assert!(out.contains(&format!("[l.yaml:2:{column}]")), "{out}");
        assert!(out.contains(" 2 │ …"), "{out}");
        assert!(out.contains("v39999, dup]\n"), "{out}");
        let snippet_line = out.lines().find(|l| l.contains("dup]")).unwrap();
        let under = out
            .lines()
            .skip_while(|l| !l.contains("dup]"))
            .nth(1)
            .unwrap();
        let at = |l: &str, pat: &str| l[..l.find(pat).unwrap()].chars().count();
        assert_eq!(
            at(snippet_line, "dup]"),
            at(under, "─"),
            "underline under `dup`: {out}"
        );
        // Context lines are cut too, from their start; short ones are whole.
        let text = format!("a: [{long}]\nb: x\n");
        let d = Diagnostic::error(codes::BAD_VALUE, "l.yaml", Pos::new(2, 4), "bad");
        let out = render(&d, Some(&text));
        assert!(out.contains(" 1 │ a: [v0, v1, "), "{out}");
        assert!(out.contains(" 2 │ b: x\n"), "{out}");
        assert!(out.len() < 2_000, "{} bytes", out.len());
    }

    #[test]
    fn past_the_end_positions_render_without_panicking() {
        for (l, c) in [(1, 1), (2, 1), (99, 1), (1, 99), (u64::MAX, u64::MAX)] {
            for text in ["", "a", "a\n", "a\r\n", "é€\r\nß"] {
                let d = Diagnostic::error(codes::SYNTAX, "f.yaml", Pos::new(l, c), "m");
                let out = render(&d, Some(text));
                assert!(out.contains("DP0105"), "{out}");
            }
        }
    }
}
