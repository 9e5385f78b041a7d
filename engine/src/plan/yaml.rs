//! Reading YAML safely: limits, syntax errors, and the shape checked against
//! the JSON Schema so every unknown key, wrong type and missing field is
//! reported at once.
//!
//! Four stages, each of which may end the read with located diagnostics:
//!
//! 1. **Bytes**: size ([`MAX_FILE_BYTES`]), UTF-8, binary data (NUL and other
//!    control characters), an empty or comment-only file. Cheap linear scans,
//!    done before the parser sees anything.
//! 2. **Syntax**: the text is parsed by `serde_saphyr` into a generic tree of
//!    `Node`s that keeps the position of every key and value. The parser
//!    runs under a [`serde_saphyr::Budget`] that bounds nesting depth,
//!    aliases, nodes, events and scalar bytes, so deep nesting, alias bombs
//!    and document storms end in one `LIMIT` error instead of a stack overflow
//!    or an out-of-memory kill.
//! 3. **Shape**: the tree is checked against the JSON Schema that `schemars`
//!    derives for `T` (compiled once per type into a flat table of
//!    `Shape`s). This is where all unknown keys, wrong types, missing
//!    fields, bad enum values and duplicate keys are collected, not just the
//!    first one that serde would stop at.
//! 4. **Typed decode**: `T` deserialized from the text with the same limits.
//!    The shape check is written to accept exactly what this decoder
//!    accepts (`name: 123` is the text "123" for both; a number is not text
//!    inside an untagged enum for either).
//!
//! [`parse`] runs stage 1, then stage 4, and stages 2 and 3 only when the
//! decode fails: a valid plan is parsed once (the decode is most of the
//! cost), and a broken one gets every problem. Should the decoder object to
//! something the checker missed, its own error is reported, still located.
//!
//! Why a schema walk and not serde errors alone: serde stops at the first
//! problem, and plan authors fix one typo per run. The schema is the single
//! source of truth for the file's shape (editors use the same schema), so the
//! checker and the editor can never disagree about which keys exist.

use std::any::type_name;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use schemars::JsonSchema;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Error as YamlError, Spanned};

use super::diag::{Diagnostic, Pos, codes, did_you_mean};

/// The largest plan or inventory file drplan reads (16 MiB).
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The deepest nesting of lists and mappings accepted. A plan needs about
/// seven levels (plan → groups → group → pre → step → run → argument).
/// Every stage that reads the tree recurses once per level, and serde_saphyr
/// takes ~40 KB of stack per level in a debug build (~4 KB in release), so
/// 32 levels stay well inside a 2 MiB thread (a test or tokio worker) even
/// unoptimized; 64 would not.
pub const MAX_DEPTH: usize = 32;

/// At most this many diagnostics are returned from one file; a hostile file
/// with a million unknown keys must not produce a million diagnostics.
pub const MAX_DIAGNOSTICS: usize = 500;

/// Total `*alias` expansions replayed, across the file. Real plans use a few
/// anchors for shared steps; a billion-laughs file needs millions.
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Nodes (scalars, lists, mappings). A 10,000-VM inventory has ~400,000.
const MAX_NODES: usize = 2_000_000;

/// Parse `bytes` (named `file` in diagnostics) into `T`.
///
/// On failure returns every problem found, sorted by position. Never panics,
/// whatever the bytes; time and memory are linear in the input, which is
/// itself capped at [`MAX_FILE_BYTES`].
pub fn parse<T: DeserializeOwned + JsonSchema>(
    file: &str,
    bytes: &[u8],
) -> Result<T, Vec<Diagnostic>> {
    let cx = Cx {
        file,
        schema: schema_for::<T>(),
    };
    let text = check_bytes(&cx, bytes).map_err(|d| vec![d])?;
    // The typed decode first: a valid file (the common case, and the one
    // whose speed matters) is parsed once. Only a failure pays for the tree
    // and the schema walk that find every other problem too.
    let err = match serde_saphyr::from_str_with_options::<T>(text, typed_options()) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if is_fatal(&err) {
        // Syntax and limits: the tree parse would stop at the same place,
        // after redoing the same (possibly hostile) work.
        return Err(vec![yaml_error(&cx, text, &err)]);
    }
    let diags = shape_problems(&cx, text);
    if diags.is_empty() {
        // The checker found nothing the decoder objects to: still report
        // the decoder's own (located) error rather than nothing.
        return Err(vec![yaml_error(&cx, text, &err)]);
    }
    Err(diags)
}

/// Like [`parse`], but when every shape problem can be set aside (an
/// unknown key, or a bad value of an optional key), also decode the file
/// *without* the offending entries, so that semantic validation can run and
/// report its problems too: authors get every problem in one pass, as a
/// compiler gives them. Returns the value (if one could be decoded) and the
/// shape diagnostics; a value returned together with diagnostics must only
/// be validated, never run.
pub fn parse_lenient<T: DeserializeOwned + JsonSchema>(
    file: &str,
    bytes: &[u8],
) -> (Option<T>, Vec<Diagnostic>) {
    let l = parse_lenient_regions(file, bytes);
    (l.value, l.diagnostics)
}

/// What [`parse_lenient_regions`] found.
#[derive(Debug)]
pub struct Lenient<T> {
    /// The value decoded without the entries set aside, if one could be.
    pub value: Option<T>,
    /// The shape problems, sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// Every mapping an entry was set aside from: what validation then
    /// sees there is not what the author wrote (see [`drop_follow_ups`]).
    pub set_aside: Vec<SetAside<Pos>>,
}

/// [`parse_lenient`], also returning where entries were set aside.
pub fn parse_lenient_regions<T: DeserializeOwned + JsonSchema>(
    file: &str,
    bytes: &[u8],
) -> Lenient<T> {
    let fail = |d| Lenient {
        value: None,
        diagnostics: vec![d],
        set_aside: Vec::new(),
    };
    let cx = Cx {
        file,
        schema: schema_for::<T>(),
    };
    let text = match check_bytes(&cx, bytes) {
        Ok(t) => t,
        Err(d) => return fail(d),
    };
    let err = match serde_saphyr::from_str_with_options::<T>(text, typed_options()) {
        Ok(v) => {
            return Lenient {
                value: Some(v),
                diagnostics: Vec::new(),
                set_aside: Vec::new(),
            };
        }
        Err(e) => e,
    };
    if is_fatal(&err) {
        return fail(yaml_error(&cx, text, &err));
    }
    let root = match parse_tree(&cx, text) {
        Ok(r) => r,
        Err(d) => return fail(d),
    };
    let mut checker = Checker {
        file: cx.file,
        text,
        schema: cx.schema,
        diags: Vec::new(),
        path: Vec::new(),
        repairs: Vec::new(),
        covered: Vec::new(),
        set_aside: Vec::new(),
    };
    checker.find_duplicate_keys(&root);
    checker.check(&root, cx.schema.root, false);
    if checker.diags.is_empty() {
        return fail(yaml_error(&cx, text, &err));
    }
    let value = if checker.all_covered() {
        let repaired = blank_ranges(text, &checker.repairs);
        serde_saphyr::from_str_with_options::<T>(&repaired, typed_options()).ok()
    } else {
        None
    };
    let mut diags = checker.diags;
    super::diag::sort(&mut diags);
    let at = |b: usize| pos_at(text, b);
    let set_aside = checker
        .set_aside
        .iter()
        .map(|r| SetAside {
            from: at(r.from),
            to: at(r.to),
            nested: r.nested.iter().map(|&(a, b)| (at(a), at(b))).collect(),
        })
        .collect();
    Lenient {
        value,
        diagnostics: diags,
        set_aside,
    }
}

/// Checks that judge a mapping as a whole (is the group empty, does the
/// step do something, do its settings combine): after an entry of that
/// mapping was set aside for a shape error, they would judge something the
/// author did not write, and report the same mistake a second time
/// ("step `s` does nothing" under "unknown key `rn`").
const WHOLE_MAPPING_CHECKS: &[&str] = &[
    codes::EMPTY_GROUP,
    codes::STEP_KIND,
    codes::FIELD_NOT_FOR_KIND,
    codes::NO_EFFECT,
    codes::MISSING_WINDOW,
    codes::POLICY_APP_CONSISTENT,
    codes::POLICY_INITIAL,
    codes::POLICY_OS,
];

/// Drop the semantic diagnostics that judge a mapping an entry was set
/// aside from (see [`Lenient::set_aside`]): one mistake, one diagnostic.
pub fn drop_follow_ups(diags: &mut Vec<Diagnostic>, set_aside: &[SetAside<Pos>]) {
    if set_aside.is_empty() {
        return;
    }
    diags.retain(|d| {
        !(WHOLE_MAPPING_CHECKS.contains(&d.code) && set_aside.iter().any(|r| r.holds(d.pos())))
    });
}

/// `text` with the characters of each byte range replaced by spaces (one
/// space per character, newlines kept), so every line and column outside
/// the ranges stays where it was.
fn blank_ranges(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let blank = c != '\n' && ranges.iter().any(|&(a, b)| i >= a && i < b);
        out.push(if blank { ' ' } else { c });
    }
    out
}

/// The byte range of a mapping entry `k: v` in `text`, if it can be cut out
/// without changing the meaning of anything else. Block entries run from the
/// key to the end of the last line that belongs to them (more indented
/// lines, or `- ` items at the key's indentation); flow entries
/// (`{a: 1, k: v}`) only when the value is a one-line scalar, together with
/// the comma that follows.
fn entry_range(text: &str, k: &Node<'_>, v: &Node<'_>) -> Option<(usize, usize)> {
    let ks = k.start as usize;
    let line_start = text[..ks].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..ks];
    if before.chars().all(|c| c == ' ' || c == '-') {
        let indent = ks - line_start;
        let mut end = text[ks..].find('\n').map_or(text.len(), |i| ks + i);
        let mut rest = end;
        while rest < text.len() {
            let next_start = rest + 1;
            let next_end = text[next_start..]
                .find('\n')
                .map_or(text.len(), |i| next_start + i);
            let line = &text[next_start..next_end];
            let trimmed = line.trim_start_matches(' ');
            let ind = line.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                rest = next_end;
                continue;
            }
            let compact_item = ind == indent && (trimmed == "-" || trimmed.starts_with("- "));
            if ind > indent || compact_item {
                end = next_end;
                rest = next_end;
            } else {
                break;
            }
        }
        return Some((ks, end));
    }
    if !v.is_scalar() || v.len == 0 {
        return None;
    }
    let mut end = v.start as usize + v.len as usize;
    if end > text.len() || text[ks..end].contains('\n') {
        return None;
    }
    let tail = &text[end..];
    let skipped = tail.len() - tail.trim_start_matches(' ').len();
    if tail[skipped..].starts_with(',') {
        end += skipped + 1;
    }
    Some((ks, end))
}

/// Every shape problem of `bytes` read as `T` (stages 1 to 3), without
/// decoding it: empty when [`parse`] would succeed. For tools (and tests)
/// that want the full list even when the decoder alone would accept the file.
pub fn check_shape<T: JsonSchema>(file: &str, bytes: &[u8]) -> Vec<Diagnostic> {
    let cx = Cx {
        file,
        schema: schema_for::<T>(),
    };
    match check_bytes(&cx, bytes) {
        Ok(text) => shape_problems(&cx, text),
        Err(d) => vec![d],
    }
}

/// Stages 2 and 3: the tree, then the schema walk.
fn shape_problems(cx: &Cx<'_>, text: &str) -> Vec<Diagnostic> {
    let root = match parse_tree(cx, text) {
        Ok(r) => r,
        Err(d) => return vec![d],
    };
    let schema = cx.schema;
    let mut checker = Checker {
        file: cx.file,
        text,
        schema,
        diags: Vec::new(),
        path: Vec::new(),
        repairs: Vec::new(),
        covered: Vec::new(),
        set_aside: Vec::new(),
    };
    checker.find_duplicate_keys(&root);
    checker.check(&root, schema.root, false);
    let mut diags = checker.diags;
    super::diag::sort(&mut diags);
    diags
}

/// Errors about the text itself (syntax, limits) rather than its shape.
fn is_fatal(err: &YamlError) -> bool {
    let mut inner = err.without_snippet();
    while let YamlError::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    matches!(
        inner,
        YamlError::Budget { .. }
            | YamlError::AliasReplayLimitExceeded { .. }
            | YamlError::AliasExpansionLimitExceeded { .. }
            | YamlError::AliasReplayStackDepthExceeded { .. }
            | YamlError::AliasReplayCounterOverflow { .. }
            | YamlError::ExternalMessage { .. }
            | YamlError::MultipleDocuments { .. }
            | YamlError::UnknownAnchor { .. }
            | YamlError::RecursiveReferencesRequireWeakTypes { .. }
            | YamlError::InvalidUtf8Input
            | YamlError::IOError { .. }
    )
}

// ---------------------------------------------------------------------------
// Stage 1: bytes

/// Size, encoding, binary data and emptiness, before any parsing.
fn check_bytes<'a>(cx: &Cx<'_>, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    let file = cx.file;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            codes::TOO_LARGE,
            file,
            Pos::UNKNOWN,
            format!(
                "the file is {} bytes, larger than the {} MiB drplan reads",
                bytes.len(),
                MAX_FILE_BYTES >> 20
            ),
        )
        .with_hint("a plan of 10,000 VMs is about 1 MiB; is this the right file?"));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            // Count the position over the valid prefix only: it is text.
            let prefix = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            return Err(Diagnostic::error(
                codes::NOT_UTF8,
                file,
                pos_at(prefix, at),
                format!(
                    "the file is not UTF-8 text: byte 0x{:02X} here cannot start or continue a character",
                    bytes[at]
                ),
            )
            .with_hint("save the file as UTF-8 (editors call it \"UTF-8\" or \"Unicode\")"));
        }
    };
    if let Some((at, what)) = find_binary(bytes) {
        return Err(Diagnostic::error(
            codes::NOT_UTF8,
            file,
            pos_at(text, at),
            format!("the file contains binary data: {what} is not allowed in a text file"),
        )
        .with_hint("plans and inventories are plain text; is this the right file?"));
    }
    let body = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let blank = body.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    });
    if blank {
        return Err(empty_file(cx));
    }
    Ok(text)
}

/// "the file is empty: a plan needs at least `drplan`, `name`, ...", from
/// the schema's required keys, so it is right for every file type.
fn empty_file(cx: &Cx<'_>) -> Diagnostic {
    let root = &cx.schema.shapes[cx.schema.root];
    let required: Vec<String> = root.required.iter().map(|r| format!("`{r}`")).collect();
    let needs = match required.split_last() {
        None => String::new(),
        Some((last, [])) => format!(
            ": {} {} needs at least {last}",
            article(cx.noun()),
            cx.noun()
        ),
        Some((last, rest)) => format!(
            ": {} {} needs at least {} and {last}",
            article(cx.noun()),
            cx.noun(),
            rest.join(", ")
        ),
    };
    Diagnostic::error(
        codes::EMPTY,
        cx.file,
        Pos::new(1, 1),
        format!("the file is empty{needs}"),
    )
    .with_hint("see `plans/` for complete examples")
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The first byte that is not printable text per YAML 1.2 (§5.1): C0 control
/// characters other than tab, LF and CR, DEL, C1 controls other than NEL, and
/// the non-characters U+FFFE / U+FFFF. `bytes` is valid UTF-8.
fn find_binary(bytes: &[u8]) -> Option<(usize, String)> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\t' | b'\n' | b'\r' => {}
            0x00 => return Some((i, "a NUL byte (0x00)".into())),
            0x01..=0x1F | 0x7F => return Some((i, format!("the control character 0x{b:02X}"))),
            0xC2 if matches!(bytes.get(i + 1), Some(0x80..=0x9F)) && bytes[i + 1] != 0x85 => {
                return Some((i, format!("the control character U+{:04X}", bytes[i + 1])));
            }
            0xEF if bytes.get(i + 1) == Some(&0xBF)
                && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                return Some((i, "a non-character (U+FFFE or U+FFFF)".into()));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The 1-based line and column (in characters, as the parser counts them) of
/// byte offset `at` in `text`.
fn pos_at(text: &str, at: usize) -> Pos {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col =
        std::str::from_utf8(&before[line_start..]).map_or(0, |s| s.chars().count()) as u64 + 1;
    Pos::new(line, col)
}

// ---------------------------------------------------------------------------
// Stage 2: syntax

/// One YAML node and where it is.
#[derive(Debug)]
struct Node<'a> {
    kind: Kind<'a>,
    /// Where the node is used (for an alias, the `*alias`).
    line: u32,
    column: u32,
    /// Byte range of the node's source text where it is defined (for an
    /// alias, the anchored value), to re-read scalars exactly.
    start: u32,
    len: u32,
}

/// What a node holds, as `deserialize_any` sees it: the same view serde's
/// untagged enums get, which the shape check relies on.
#[derive(Debug)]
enum Kind<'a> {
    Null,
    /// Booleans and floats are only ever shown in their source spelling.
    Bool,
    Int(i128),
    Float,
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    /// Keys in file order, duplicates kept (they are reported, not merged).
    Map(Vec<(Node<'a>, Node<'a>)>),
}

impl<'a> Node<'a> {
    fn from_spanned(s: Spanned<Kind<'a>>) -> Node<'a> {
        let span = s.defined.span();
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Node {
            kind: s.value,
            line: clamp(s.referenced.line()),
            column: clamp(s.referenced.column()),
            start: clamp(span.byte_offset().unwrap_or(0)),
            len: clamp(span.byte_len().unwrap_or(0)),
        }
    }

    fn pos(&self) -> Pos {
        Pos::new(u64::from(self.line), u64::from(self.column))
    }

    /// The node's source text (empty when unknown).
    fn raw<'t>(&self, text: &'t str) -> &'t str {
        let start = self.start as usize;
        let end = start.saturating_add(self.len as usize);
        text.get(start..end).unwrap_or("")
    }

    fn is_scalar(&self) -> bool {
        !matches!(self.kind, Kind::Seq(_) | Kind::Map(_))
    }

    /// The text of a scalar as a name (a key, an enum value): the string
    /// itself, or the source spelling of a number or boolean.
    fn scalar_text<'s>(&'s self, text: &'s str) -> Option<Cow<'s, str>> {
        match &self.kind {
            Kind::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Kind::Seq(_) | Kind::Map(_) => None,
            _ => Some(Cow::Borrowed(self.raw(text).trim())),
        }
    }
}

impl<'de> de::Deserialize<'de> for Kind<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind<'de>, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind<'de>, E> {
        Ok(Kind::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind<'de>, E> {
        {
            let _ = v;
            Ok(Kind::Bool)
        }
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind<'de>, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind<'de>, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind<'de>, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Kind<'de>, E> {
        Ok(i128::try_from(v).map_or(Kind::Float, Kind::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind<'de>, E> {
        {
            let _ = v;
            Ok(Kind::Float)
        }
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Kind<'de>, E> {
        Ok(Kind::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind<'de>, E> {
        Ok(Kind::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind<'de>, E> {
        Ok(Kind::Str(Cow::Owned(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Kind<'de>, E> {
        Ok(Kind::Str(Cow::Owned(
            String::from_utf8_lossy(v).into_owned(),
        )))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<Spanned<Kind<'de>>>()? {
            items.push(Node::from_spanned(item));
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<Spanned<Kind<'de>>>()? {
            let value = map.next_value::<Spanned<Kind<'de>>>()?;
            entries.push((Node::from_spanned(key), Node::from_spanned(value)));
        }
        Ok(Kind::Map(entries))
    }
}

fn budget() -> Option<Budget> {
    serde_saphyr::budget! {
        max_depth: MAX_DEPTH,
        // One more than the depth limit, so deep `[[[` trips the budget's
        // depth check (a clear LIMIT) before the scanner's own limit.
        flow_nesting_limit: MAX_DEPTH + 1,
        max_nodes: MAX_NODES,
        max_events: 2 * MAX_NODES,
        max_aliases: 10_000,
        max_anchors: 10_000,
        max_recorded_anchor_events: MAX_REPLAYED_EVENTS,
        max_documents: 1,
        max_merge_keys: 1_000,
        max_inclusion_depth: 0,
    }
}

fn alias_limits() -> serde_saphyr::options::AliasLimits {
    serde_saphyr::alias_limits! {
        max_total_replayed_events: MAX_REPLAYED_EVENTS,
        max_replay_stack_depth: 16,
    }
}

/// Options for reading the generic tree: duplicate keys are passed through
/// so the shape check can report every one of them; non-finite floats are
/// passed through because `.inf` is a fine string where text is expected.
fn tree_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: budget(),
        alias_limits: alias_limits(),
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
    }
}

/// Options for the typed decode (stage 4): the same limits, duplicate keys
/// rejected (stage 3 already reported them).
fn typed_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: budget(),
        alias_limits: alias_limits(),
        duplicate_keys: DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

fn parse_tree<'a>(cx: &Cx<'_>, text: &'a str) -> Result<Node<'a>, Diagnostic> {
    let root: Spanned<Kind<'a>> = serde_saphyr::from_str_with_options(text, tree_options())
        .map_err(|e| yaml_error(cx, text, &e))?;
    let root = Node::from_spanned(root);
    if matches!(root.kind, Kind::Null) {
        // `---` alone, `~`, or `...`: no content at all.
        return Err(empty_file(cx));
    }
    Ok(root)
}

/// One located diagnostic for a parser or decoder error in `text`.
fn yaml_error(cx: &Cx<'_>, text: &str, err: &YamlError) -> Diagnostic {
    let file = cx.file;
    let root_noun = cx.noun();
    // Unwrap the snippet and alias wrappers to the error that says what went
    // wrong; keep the outer location (the alias use) when the inner has none.
    let outer_pos = err.location().map(Pos::from);
    let mut inner = err.without_snippet();
    while let YamlError::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let pos = inner
        .location()
        .map(Pos::from)
        .filter(|p| p.line > 0)
        .or(outer_pos)
        .unwrap_or(Pos::UNKNOWN);
    let parser_says = || {
        use serde_saphyr::MessageFormatter;
        let msg = serde_saphyr::DefaultMessageFormatter.format_message(inner);
        // The message is printed on one line after `file:line:col:`.
        msg.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let err = |code, msg: String| Diagnostic::error(code, file, pos, msg);
    match inner {
        YamlError::Budget { breach, .. } => limit_error(cx, pos, breach),
        // The scanner looks ahead of the parser, so deep `[[[` / `{a: {a:`
        // trips its own nesting limit before the budget sees the depth.
        YamlError::ExternalMessage { source, .. } if is_nesting_limit(source) => limit_error(
            cx,
            pos,
            &BudgetBreach::Depth {
                depth: MAX_DEPTH + 1,
            },
        ),
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => err(
            codes::LIMIT,
            "too many aliases: the file looks like an alias bomb (`*alias` expanding to more than \
             100,000 values)"
                .into(),
        )
        .with_hint("write the values out, or use fewer nested `*alias` references"),
        YamlError::MultipleDocuments { .. } => err(
            codes::SYNTAX,
            format!(
                "a second YAML document starts here: the {root_noun} file must be a single document"
            ),
        )
        .with_hint("remove the `---` line and what follows, or split it into its own file"),
        YamlError::DuplicateMappingKey { key, .. } => err(
            codes::SYNTAX,
            match key {
                Some(k) => format!("`{k}` is given twice in the same mapping"),
                None => "the same key is given twice in the same mapping".into(),
            },
        ),
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let d = err(codes::UNKNOWN_FIELD, format!("unknown key `{field}`"));
            match did_you_mean(field, expected.iter().copied()) {
                Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                None => d,
            }
        }
        YamlError::SerdeMissingField { field, .. } => {
            err(codes::MISSING_FIELD, format!("missing `{field}`"))
        }
        YamlError::SerdeUnknownVariant { .. } | YamlError::SerdeInvalidValue { .. } => {
            err(codes::BAD_VALUE, parser_says())
        }
        YamlError::SerdeInvalidType { .. }
        | YamlError::SerdeInvalidLength { .. }
        | YamlError::InvalidScalar { .. }
        | YamlError::NullIntoString { .. }
        | YamlError::InvalidBooleanStrict { .. }
        | YamlError::TaggedScalarCannotDeserializeIntoString { .. }
        | YamlError::NonFiniteFloat { .. }
        | YamlError::BinaryNotUtf8 { .. }
        | YamlError::InvalidBinaryBase64 { .. }
        | YamlError::UnsupportedTag { .. } => err(codes::WRONG_TYPE, parser_says()),
        YamlError::InvalidUtf8Input => err(codes::NOT_UTF8, "the file is not UTF-8 text".into()),
        _ => {
            let says = parser_says();
            match tab_indent(text, pos, &says) {
                Some(at) => Diagnostic::error(
                    codes::SYNTAX,
                    file,
                    at,
                    "a tab is used for indentation here: YAML indents with spaces only",
                )
                .with_hint(
                    "replace the tab with spaces (most editors have \"indent using spaces\")",
                ),
                None if says.contains("simple key") && line_chars(text, pos) > 1024 => err(
                    codes::SYNTAX,
                    "this line is too long to hold a key: YAML reads at most 1024 \
                     characters before a key's `:`"
                        .into(),
                )
                .with_hint("is this the right file? (a key is a short name such as `vms`)"),
                None => err(codes::SYNTAX, format!("invalid YAML: {says}")),
            }
        }
    }
}

/// The length in characters of the line at `pos` (0 when there is none).
fn line_chars(text: &str, pos: Pos) -> usize {
    usize::try_from(pos.line.saturating_sub(1))
        .ok()
        .and_then(|i| text.lines().nth(i))
        .map_or(0, |l| l.chars().count())
}

/// Where the tab is, when the parser's complaint `says` is about a tab used
/// for indentation. The parser does not always point at it: a plain scalar
/// that may continue on the next line ends with "while scanning a plain
/// scalar, found a tab" at the end of the line *before* the tab. The tab is
/// in the leading whitespace of the first line from the parser's on that
/// has one.
fn tab_indent(text: &str, pos: Pos, says: &str) -> Option<Pos> {
    if !says.contains("tab") || pos.line == 0 {
        return None;
    }
    let from = usize::try_from(pos.line - 1).ok()?;
    text.lines().enumerate().skip(from).find_map(|(i, line)| {
        let indent = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        let tab = indent.find('\t')?;
        Some(Pos::new(i as u64 + 1, tab as u64 + 1))
    })
}

fn is_nesting_limit(source: &serde_saphyr::ExternalMessageSource) -> bool {
    use serde_saphyr::granit_parser::ErrorKind;
    matches!(source, serde_saphyr::ExternalMessageSource::Parser(e)
        if matches!(e.kind(), ErrorKind::RecursionLimitExceeded))
}

/// A budget breach in plain words.
fn limit_error(cx: &Cx<'_>, pos: Pos, breach: &BudgetBreach) -> Diagnostic {
    let noun = cx.noun();
    let (msg, hint) = match breach {
        BudgetBreach::Depth { .. } => (
            format!("nesting deeper than {MAX_DEPTH} levels"),
            "plans and inventories need fewer than ten levels of lists and mappings; is this the right file?",
        ),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. }
        | BudgetBreach::MergeKeys { .. } => (
            "too many aliases: the file looks like an alias bomb".to_string(),
            "write the values out, or use fewer `&anchor` / `*alias` references",
        ),
        BudgetBreach::Documents { .. } => (
            format!(
                "more than one YAML document: {} {noun} file is a single document",
                article(noun)
            ),
            "remove the `---` line and what follows, or split it into its own file",
        ),
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => (
            format!(
                "more than {MAX_NODES} values: the file is too big to be {} {noun}",
                article(noun)
            ),
            "an inventory of 10,000 VMs has about 400,000 values; is this the right file?",
        ),
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => (
            "too much text in the file's values".to_string(),
            "is this the right file?",
        ),
        _ => (
            format!("the file exceeds a reading limit ({breach:?})"),
            "is this the right file?",
        ),
    };
    // A second document breaks the format, not a resource limit.
    let code = match breach {
        BudgetBreach::Documents { .. } => codes::SYNTAX,
        _ => codes::LIMIT,
    };
    Diagnostic::error(code, cx.file, pos, msg).with_hint(hint)
}

// ---------------------------------------------------------------------------
// Stage 3: the schema, compiled

/// What every stage needs to word its diagnostics.
struct Cx<'a> {
    file: &'a str,
    schema: &'static Schema,
}

impl Cx<'_> {
    /// "plan", "inventory".
    fn noun(&self) -> &'static str {
        self.schema.shapes[self.schema.root]
            .noun
            .as_deref()
            .unwrap_or("file")
    }
}

type ShapeId = usize;

/// One schema, flattened: `$ref`s are resolved to indices once, so checking
/// a node is a table lookup, never a JSON walk or a clone.
#[derive(Debug, Default)]
struct Shape {
    /// Allowed JSON types; `ANY` when the schema does not say.
    types: u8,
    /// Inclusive integer range (from `format` and `minimum`/`maximum`).
    int_range: Option<(i128, i128)>,
    /// Allowed values (from `enum`, `const`, or a `oneOf` of constants).
    allowed: Option<Vec<String>>,
    /// Properties (in the schema's order, which is alphabetical).
    props: Vec<Prop>,
    /// Required property names in declaration order, for messages.
    required: Vec<String>,
    /// `additionalProperties`: `None` = any key allowed with any value.
    additional: Additional,
    items: Option<ShapeId>,
    /// `anyOf` / `oneOf` branches (an `Option<T>` or an untagged enum).
    branches: Vec<ShapeId>,
    /// What the author calls a mapping of this shape, e.g. "group".
    noun: Option<String>,
}

#[derive(Debug, Default)]
enum Additional {
    #[default]
    Any,
    Deny,
    Shape(ShapeId),
}

#[derive(Debug)]
struct Prop {
    name: String,
    shape: ShapeId,
    required: bool,
    description: Option<String>,
}

const NULL: u8 = 1;
const BOOL: u8 = 2;
const INT: u8 = 4;
const NUM: u8 = 8;
const STR: u8 = 16;
const ARR: u8 = 32;
const OBJ: u8 = 64;
const ANY: u8 = 127;

#[derive(Debug)]
struct Schema {
    shapes: Vec<Shape>,
    root: ShapeId,
}

/// The compiled schema of `T`, built once per type for the process.
fn schema_for<T: JsonSchema>() -> &'static Schema {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static Schema>>> = OnceLock::new();
    let key = type_name::<T>();
    let cache = CACHE.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked mid-insert of a
    // complete value; the map itself is still sound.
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key).or_insert_with(|| {
        let json = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
        // Leaked on purpose: one small table per file type, for the process.
        Box::leak(Box::new(Compiler::compile(&json, short_type_name(key))))
    })
}

struct Compiler<'j> {
    defs: Option<&'j serde_json::Map<String, Value>>,
    shapes: Vec<Shape>,
    by_ref: HashMap<&'j str, ShapeId>,
}

impl<'j> Compiler<'j> {
    fn compile(root: &'j Value, root_name: &str) -> Schema {
        let mut c = Compiler {
            defs: root.get("$defs").and_then(Value::as_object),
            shapes: Vec::new(),
            by_ref: HashMap::new(),
        };
        let root_id = c.node(root);
        if c.shapes[root_id].noun.is_none() {
            c.shapes[root_id].noun = Some(noun_for(root_name));
        }
        Schema {
            shapes: c.shapes,
            root: root_id,
        }
    }

    fn node(&mut self, v: &'j Value) -> ShapeId {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            return self.reference(r);
        }
        let id = self.shapes.len();
        self.shapes.push(Shape::default());
        let shape = self.build(v);
        self.shapes[id] = shape;
        id
    }

    fn reference(&mut self, r: &'j str) -> ShapeId {
        if let Some(&id) = self.by_ref.get(r) {
            return id;
        }
        let name = r.rsplit('/').next().unwrap_or(r);
        let def = self.defs.and_then(|d| d.get(name));
        // Reserve the id first so a recursive type can refer to itself.
        let id = self.shapes.len();
        self.shapes.push(Shape {
            types: ANY,
            ..Shape::default()
        });
        self.by_ref.insert(r, id);
        // An unresolvable reference accepts anything (stage 4 still checks
        // the value); a reference to a reference is followed.
        let Some(def) = def else { return id };
        if def.get("$ref").is_some() {
            let target = self.node(def);
            self.by_ref.insert(r, target);
            return target;
        }
        let mut shape = self.build(def);
        shape.noun = Some(noun_for(name));
        self.shapes[id] = shape;
        id
    }

    /// Compile one schema object (not a `$ref`).
    fn build(&mut self, v: &'j Value) -> Shape {
        let mut s = Shape {
            types: ANY,
            ..Shape::default()
        };
        let o = match v {
            Value::Bool(false) => {
                s.types = 0;
                return s;
            }
            Value::Object(o) => o,
            _ => return s,
        };
        if let Some(t) = o.get("type") {
            s.types = match t {
                Value::String(t) => type_bit(t),
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(type_bit)
                    .fold(0, |a, b| a | b),
                _ => ANY,
            };
        }
        if s.types & INT != 0 {
            s.int_range = Some(int_range(o));
        }
        if let Some(c) = o.get("const") {
            s.allowed = Some(vec![json_text(c)]);
        }
        if let Some(Value::Array(e)) = o.get("enum") {
            s.allowed = Some(e.iter().map(json_text).collect());
        }
        if let Some(Value::Object(props)) = o.get("properties") {
            let required: Vec<&str> = o
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            s.required = required.iter().map(|r| r.to_string()).collect();
            for (name, pv) in props {
                let shape = self.node(pv);
                s.props.push(Prop {
                    name: name.clone(),
                    shape,
                    required: required.contains(&name.as_str()),
                    description: pv
                        .get("description")
                        .and_then(Value::as_str)
                        .map(first_paragraph),
                });
            }
        }
        s.additional = match o.get("additionalProperties") {
            Some(Value::Bool(false)) => Additional::Deny,
            Some(a @ Value::Object(m)) if !m.is_empty() => Additional::Shape(self.node(a)),
            _ => Additional::Any,
        };
        if let Some(items) = o.get("items") {
            s.items = Some(self.node(items));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(bs)) = o.get(key) {
                for b in bs {
                    let bid = self.node(b);
                    s.branches.push(bid);
                }
            }
        }
        // A `oneOf` of constants is a string enum (schemars emits one for
        // unit variants with doc comments): fold it into `allowed`.
        let constant = |b: &Shape| b.allowed.is_some() && b.branches.is_empty();
        if !s.branches.is_empty() && s.branches.iter().all(|&b| constant(&self.shapes[b])) {
            let mut allowed = Vec::new();
            let mut types = 0;
            for &b in &s.branches {
                allowed.extend(self.shapes[b].allowed.iter().flatten().cloned());
                types |= self.shapes[b].types;
            }
            s.allowed = Some(allowed);
            s.types &= types;
            s.branches.clear();
        }
        s
    }
}

fn type_bit(t: &str) -> u8 {
    match t {
        "null" => NULL,
        "boolean" => BOOL,
        "integer" => INT,
        "number" => NUM | INT,
        "string" => STR,
        "array" => ARR,
        "object" => OBJ,
        _ => ANY,
    }
}

fn int_range(o: &serde_json::Map<String, Value>) -> (i128, i128) {
    let (mut lo, mut hi) = match o.get("format").and_then(Value::as_str) {
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") | Some("uint") => (0, u32::MAX.into()),
        Some("uint64") => (0, u64::MAX.into()),
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") | Some("int") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        _ => (i128::MIN, i128::MAX),
    };
    if let Some(m) = o.get("minimum").and_then(Value::as_f64) {
        lo = lo.max(m.ceil() as i128);
    }
    if let Some(m) = o.get("maximum").and_then(Value::as_f64) {
        hi = hi.min(m.floor() as i128);
    }
    (lo, hi)
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first paragraph of a doc comment, on one line.
fn first_paragraph(d: &str) -> String {
    let para = d.split("\n\n").next().unwrap_or(d);
    para.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn short_type_name(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// What a plan author calls a mapping of the Rust type `name`:
/// `GroupFile` → "group", `InitialReplicationFile` → "initial replication".
fn noun_for(name: &str) -> String {
    let base = name.strip_suffix("File").unwrap_or(name);
    match base {
        "Fabric" => return "inventory".into(),
        "Vm" | "VmOptions" | "VmEntry" => return "VM".into(),
        "Nic" => return "network adapter".into(),
        _ => {}
    }
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    if out.is_empty() { "file".into() } else { out }
}

// ---------------------------------------------------------------------------
// Stage 3: the check

enum Seg<'n> {
    Key(&'n str),
    Index,
}

struct Checker<'n> {
    file: &'n str,
    text: &'n str,
    schema: &'static Schema,
    diags: Vec<Diagnostic>,
    path: Vec<Seg<'n>>,
    /// Byte ranges of entries that can be cut out (see [`parse_lenient`]).
    repairs: Vec<(usize, usize)>,
    /// Ranges of `diags` indices that those cuts set aside.
    covered: Vec<std::ops::Range<usize>>,
    /// The mappings those entries were cut from, in bytes.
    set_aside: Vec<SetAside<usize>>,
}

/// Where entries were set aside: a mapping, from its first to its last
/// character, without the nested lists and mappings of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside<P> {
    pub from: P,
    pub to: P,
    pub nested: Vec<(P, P)>,
}

impl SetAside<Pos> {
    /// Whether `at` is in the mapping itself (not in a nested value).
    pub fn holds(&self, at: Pos) -> bool {
        self.from <= at && at <= self.to && !self.nested.iter().any(|&(a, b)| a <= at && at <= b)
    }
}

/// The byte just past the last character of `node` (containers only know
/// where they start). Recursion is bounded by [`MAX_DEPTH`].
fn extent_end(node: &Node<'_>) -> usize {
    let own = node.start as usize + node.len as usize;
    match &node.kind {
        Kind::Seq(items) => items.iter().map(extent_end).fold(own, usize::max),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| extent_end(k).max(extent_end(v)))
            .fold(own, usize::max),
        _ => own,
    }
}

impl<'n> Checker<'n> {
    /// Whether every problem found sits in an entry that can be cut out.
    fn all_covered(&self) -> bool {
        !self.full() && (0..self.diags.len()).all(|i| self.covered.iter().any(|r| r.contains(&i)))
    }

    fn push(&mut self, d: Diagnostic) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(d);
        } else if self.diags.len() == MAX_DIAGNOSTICS {
            let pos = d.pos();
            self.diags.push(
                Diagnostic::error(
                    codes::LIMIT,
                    self.file,
                    pos,
                    format!("more than {MAX_DIAGNOSTICS} problems; stopped here"),
                )
                .with_hint("fix the problems above and run again"),
            );
        }
    }

    fn full(&self) -> bool {
        self.diags.len() > MAX_DIAGNOSTICS
    }

    /// How the current place is named in a message: "`retries`", "each
    /// entry of `after`", "the plan".
    fn place(&self, shape: &Shape) -> String {
        match self.path.last() {
            Some(Seg::Key(k)) => format!("`{k}`"),
            Some(Seg::Index) => {
                let parent = self.path.iter().rev().find_map(|s| match s {
                    Seg::Key(k) => Some(*k),
                    Seg::Index => None,
                });
                match (parent, &shape.noun) {
                    (_, Some(n)) => format!("each {n}"),
                    (Some(k), None) => format!("each entry of `{k}`"),
                    (None, None) => "each entry".into(),
                }
            }
            None => format!("the {}", shape.noun.as_deref().unwrap_or("file")),
        }
    }

    /// Report every key given twice in one mapping, anywhere in the tree
    /// (also where the schema accepts anything), at the second key.
    fn find_duplicate_keys(&mut self, node: &'n Node<'n>) {
        match &node.kind {
            Kind::Seq(items) => {
                for i in items {
                    self.find_duplicate_keys(i);
                }
            }
            Kind::Map(entries) => {
                let text = self.text;
                // Small mappings (nearly all) are scanned; big ones hashed,
                // so a hostile 100,000-key mapping stays linear.
                let mut seen: HashMap<Cow<'_, str>, u32> = HashMap::new();
                for (i, (k, v)) in entries.iter().enumerate() {
                    if let Some(name) = k.scalar_text(text) {
                        let first = if entries.len() <= 16 {
                            entries[..i]
                                .iter()
                                .find(|(p, _)| p.scalar_text(text).as_deref() == Some(&*name))
                                .map(|(p, _)| p.line)
                        } else {
                            match seen.get(&name) {
                                Some(&line) => Some(line),
                                None => {
                                    seen.insert(name.clone(), k.line);
                                    None
                                }
                            }
                        };
                        if let Some(line) = first {
                            let d = Diagnostic::error(
                                codes::SYNTAX,
                                self.file,
                                k.pos(),
                                format!(
                                    "`{}` is given twice in the same mapping (first at line {line})",
                                    clip(&name)
                                ),
                            )
                            .with_hint("keys must be unique: remove one, or merge them");
                            self.push(d);
                        }
                    }
                    self.find_duplicate_keys(v);
                }
            }
            _ => {}
        }
    }

    /// Check `node` against shape `id`. `strict`: inside an untagged enum,
    /// where serde buffers values and converts nothing (a number is not
    /// text there), as opposed to direct typed decoding (where it is).
    fn check(&mut self, node: &'n Node<'n>, id: ShapeId, strict: bool) {
        if self.full() {
            return;
        }
        let schema = self.schema;
        let shape = &schema.shapes[id];
        if !shape.branches.is_empty() {
            self.check_branches(node, shape, strict);
            return;
        }
        if let Some(allowed) = &shape.allowed
            && node.is_scalar()
            && !matches!(node.kind, Kind::Null)
        {
            let value = node.scalar_text(self.text).unwrap_or_default();
            if !allowed.iter().any(|a| *a == value) {
                let list = join_ticks(allowed.iter().map(String::as_str));
                let mut d = Diagnostic::error(
                    codes::BAD_VALUE,
                    self.file,
                    node.pos(),
                    format!(
                        "{} must be one of {list}, but this is `{}`",
                        self.place(shape),
                        clip(&value)
                    ),
                );
                if let Some(m) = did_you_mean(&value, allowed.iter().map(String::as_str)) {
                    d = d.with_hint(format!("did you mean `{m}`?"));
                }
                self.push(d);
            }
            return;
        }
        match &node.kind {
            Kind::Null => {
                if shape.types & NULL == 0 {
                    self.wrong_type(node, shape);
                }
            }
            Kind::Map(entries) => {
                if shape.types & OBJ == 0 {
                    self.wrong_type(node, shape);
                } else {
                    self.check_map(node, entries, shape, strict);
                }
            }
            Kind::Seq(items) => {
                if shape.types & ARR == 0 {
                    // Inside an untagged enum (buffered, `strict`), serde's
                    // derived structs also accept their fields as a
                    // positional list (`[db-2, true]` for `{name: db-2,
                    // optional: true}`). The schema has no field order to
                    // check it against, so leave such a list to the decoder
                    // rather than flag what it accepts. Decoded directly (a
                    // whole file that is a list, `test: [a]`), a struct
                    // must be a mapping.
                    if !(strict && is_struct(shape)) {
                        self.wrong_type(node, shape);
                    }
                } else if let Some(item) = shape.items {
                    for i in items {
                        self.path.push(Seg::Index);
                        self.check(i, item, strict);
                        self.path.pop();
                    }
                }
            }
            _ => self.check_scalar(node, shape, strict),
        }
    }

    fn check_scalar(&mut self, node: &'n Node<'n>, shape: &Shape, strict: bool) {
        let t = shape.types;
        let ok = match &node.kind {
            // Direct typed decoding reads any non-null scalar as text
            // (`name: 123` is the name "123"); an untagged enum does not.
            _ if t & STR != 0 && (!strict || matches!(node.kind, Kind::Str(_))) => true,
            Kind::Bool => t & BOOL != 0,
            Kind::Int(n) if t & INT != 0 => {
                let (lo, hi) = shape.int_range.unwrap_or((i128::MIN, i128::MAX));
                if *n < lo || *n > hi {
                    self.push(Diagnostic::error(
                        codes::BAD_VALUE,
                        self.file,
                        node.pos(),
                        format!(
                            "{} must be a whole number from {lo} to {hi}, but this is `{n}`",
                            self.place(shape)
                        ),
                    ));
                    return;
                }
                true
            }
            Kind::Float => t & NUM != 0,
            // Quoted `"5"`, `"yes"`, `0X1F`: the typed decoder parses the
            // text, so ask it rather than guess.
            Kind::Str(_) if !strict && t & INT != 0 => {
                match serde_saphyr::from_str::<i128>(node.raw(self.text)) {
                    Ok(n) => {
                        let (lo, hi) = shape.int_range.unwrap_or((i128::MIN, i128::MAX));
                        n >= lo && n <= hi
                    }
                    Err(_) => false,
                }
            }
            Kind::Str(_) if !strict && t & BOOL != 0 => {
                serde_saphyr::from_str::<bool>(node.raw(self.text)).is_ok()
            }
            _ => false,
        };
        if !ok {
            self.wrong_type(node, shape);
        }
    }

    fn check_map(
        &mut self,
        node: &'n Node<'n>,
        entries: &'n [(Node<'n>, Node<'n>)],
        shape: &'static Shape,
        strict: bool,
    ) {
        let mut cut = false;
        for (k, v) in entries {
            let before = self.diags.len();
            // Set aside: an unknown key, or a bad value of an optional key.
            let can_cut = match k.scalar_text(self.text) {
                Some(name) => match shape.props.iter().find(|p| p.name == name) {
                    Some(p) => !p.required,
                    None => matches!(shape.additional, Additional::Deny),
                },
                None => false,
            };
            self.check_entry(k, v, shape, strict);
            let after = self.diags.len();
            // Cut the innermost entries only: when the problems inside this
            // entry were all set aside already, the entry itself stays.
            let uncovered = (before..after).any(|i| !self.covered.iter().any(|r| r.contains(&i)));
            if uncovered
                && can_cut
                && !strict
                && let Some(range) = entry_range(self.text, k, v)
            {
                self.repairs.push(range);
                self.covered.push(before..after);
                cut = true;
            }
        }
        if cut {
            // The mapping itself, without its nested lists and mappings:
            // what the checks of the mapping as a whole point at.
            let nested = entries
                .iter()
                .filter(|(_, v)| !v.is_scalar())
                .map(|(_, v)| (v.start as usize, extent_end(v)))
                .collect();
            self.set_aside.push(SetAside {
                from: node.start as usize,
                to: extent_end(node),
                nested,
            });
        }
        self.check_missing(node, shape);
    }

    fn check_entry(
        &mut self,
        k: &'n Node<'n>,
        v: &'n Node<'n>,
        shape: &'static Shape,
        strict: bool,
    ) {
        {
            let Some(name) = k.scalar_text(self.text) else {
                self.push(Diagnostic::error(
                    codes::WRONG_TYPE,
                    self.file,
                    k.pos(),
                    "a key must be a name, not a list or a mapping",
                ));
                return;
            };
            if let Some(i) = shape.props.iter().position(|p| p.name == name) {
                self.path.push(Seg::Key(key_str(k, self.text)));
                self.check(v, shape.props[i].shape, strict);
                self.path.pop();
                return;
            }
            match shape.additional {
                Additional::Any => {}
                Additional::Shape(a) => {
                    self.path.push(Seg::Key(key_str(k, self.text)));
                    self.check(v, a, strict);
                    self.path.pop();
                }
                Additional::Deny => {
                    let noun = shape.noun.as_deref().unwrap_or("mapping");
                    let mut d = Diagnostic::error(
                        codes::UNKNOWN_FIELD,
                        self.file,
                        k.pos(),
                        format!("unknown key `{}` in the {noun}", clip(&name)),
                    );
                    let names = shape.props.iter().map(|p| p.name.as_str());
                    d = match did_you_mean(&name, names.clone()) {
                        Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                        None => {
                            let list: Vec<String> = names.map(|n| format!("`{n}`")).collect();
                            d.with_hint(format!("the keys of a {noun} are {}", list.join(", ")))
                        }
                    };
                    self.push(d);
                }
            }
        }
    }

    fn check_missing(&mut self, node: &'n Node<'n>, shape: &'static Shape) {
        let seen: Vec<bool> = match &node.kind {
            Kind::Map(entries) => shape
                .props
                .iter()
                .map(|p| {
                    entries
                        .iter()
                        .any(|(k, _)| k.scalar_text(self.text).as_deref() == Some(p.name.as_str()))
                })
                .collect(),
            _ => return,
        };
        // A misspelt required key (`nmae: web`) is one mistake: the unknown
        // key is reported with "did you mean `name`?", and `name` is not
        // reported missing on top of it.
        let misspelt: Vec<&str> = match &node.kind {
            Kind::Map(entries) if matches!(shape.additional, Additional::Deny) => entries
                .iter()
                .filter_map(|(k, _)| k.scalar_text(self.text))
                .filter(|k| !shape.props.iter().any(|p| p.name == *k))
                .filter_map(|k| did_you_mean(&k, shape.props.iter().map(|p| p.name.as_str())))
                .collect(),
            _ => Vec::new(),
        };
        for (p, seen) in shape.props.iter().zip(seen) {
            if p.required && !seen && !misspelt.contains(&p.name.as_str()) {
                let noun = shape.noun.as_deref().unwrap_or("mapping");
                let what = match self.path.last() {
                    Some(Seg::Key(k)) => format!("`{k}`"),
                    Some(Seg::Index) => format!("this {noun}"),
                    None => format!("the {noun}"),
                };
                let mut d = Diagnostic::error(
                    codes::MISSING_FIELD,
                    self.file,
                    node.pos(),
                    format!("{what} is missing `{}`", p.name),
                );
                d = match &p.description {
                    Some(desc) => d.with_hint(format!("add `{}:`: {desc}", p.name)),
                    None => d.with_hint(format!("add `{}:`", p.name)),
                };
                self.push(d);
            }
        }
    }

    fn check_branches(&mut self, node: &'n Node<'n>, shape: &'static Shape, strict: bool) {
        let shapes = &self.schema.shapes;
        let is_null_only = |b: ShapeId| shapes[b].types == NULL && shapes[b].branches.is_empty();
        if matches!(node.kind, Kind::Null)
            && shape.branches.iter().any(|&b| shapes[b].types & NULL != 0)
        {
            return;
        }
        let real: Vec<ShapeId> = shape
            .branches
            .iter()
            .copied()
            .filter(|&b| !is_null_only(b))
            .collect();
        if let [only] = real[..] {
            // `Option<T>`: serde decodes `T` directly, nothing is buffered.
            self.check(node, only, strict);
            return;
        }
        // An untagged enum: serde tries each variant on a buffered copy of
        // the value. Check every branch whose outer type fits; the first
        // clean one wins, else report the branch with the fewest problems.
        let mut best: Option<Vec<Diagnostic>> = None;
        for &b in &real {
            if !kind_fits(shapes, b, node) {
                continue;
            }
            let saved = std::mem::take(&mut self.diags);
            self.check(node, b, true);
            let found = std::mem::replace(&mut self.diags, saved);
            if found.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                best = Some(found);
            }
        }
        match best {
            Some(diags) => {
                for d in diags {
                    self.push(d);
                }
            }
            None => self.wrong_type(node, shape),
        }
    }

    fn wrong_type(&mut self, node: &Node<'_>, shape: &Shape) {
        let expected = expect_phrase(&self.schema.shapes, shape);
        let got = describe(node, self.text);
        let mut d = Diagnostic::error(
            codes::WRONG_TYPE,
            self.file,
            node.pos(),
            format!("{} must be {expected}, but {got}", self.place(shape)),
        );
        let wants = want_bits(&self.schema.shapes, shape);
        let hint = match &node.kind {
            Kind::Null => Some("give a value after the `:`, or remove the key".to_string()),
            Kind::Map(_) if wants & STR != 0 => {
                Some("text containing `: ` must be quoted, e.g. \"Check: DNS\"".to_string())
            }
            // Only reachable inside an untagged enum (a VM entry), where a
            // bare `no`, `on` or `y` is a boolean, not a name.
            Kind::Bool | Kind::Int(_) | Kind::Float if wants & STR != 0 => Some(format!(
                "put it in quotes to make it text: \"{}\"",
                clip(node.raw(self.text).trim())
            )),
            Kind::Str(_) | Kind::Int(_) if wants & ARR != 0 => {
                Some("write a list as `[a, b]`, or as lines starting with `- `".to_string())
            }
            _ => None,
        };
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.push(d);
    }
}

/// The key's text as borrowed from the tree (for the path).
fn key_str<'n>(k: &'n Node<'n>, text: &'n str) -> &'n str {
    match &k.kind {
        Kind::Str(s) => s.as_ref(),
        _ => k.raw(text).trim(),
    }
}

/// Whether `node`'s outer kind is one branch `b` can take (strictly: the
/// buffered view of an untagged enum).
fn kind_fits(shapes: &[Shape], b: ShapeId, node: &Node<'_>) -> bool {
    let s = &shapes[b];
    if !s.branches.is_empty() {
        return s.branches.iter().any(|&x| kind_fits(shapes, x, node));
    }
    let need = match node.kind {
        Kind::Null => NULL,
        Kind::Bool => BOOL,
        Kind::Int(_) => INT,
        Kind::Float => NUM,
        Kind::Str(_) => STR,
        // A list fits a struct too: see `check`.
        Kind::Seq(_) if is_struct(s) => OBJ,
        Kind::Seq(_) => ARR,
        Kind::Map(_) => OBJ,
    };
    s.types & need != 0
}

/// A mapping with named fields (a Rust struct), not a free-form map.
fn is_struct(s: &Shape) -> bool {
    s.types & OBJ != 0 && !s.props.is_empty()
}

/// All types a shape (and its branches) accepts.
fn want_bits(shapes: &[Shape], s: &Shape) -> u8 {
    if s.branches.is_empty() {
        s.types
    } else {
        s.branches
            .iter()
            .fold(0, |a, &b| a | want_bits(shapes, &shapes[b]))
    }
}

/// "text", "a whole number", "a list or a mapping", ...
fn expect_phrase(shapes: &[Shape], s: &Shape) -> String {
    if let Some(allowed) = &s.allowed {
        return format!("one of {}", join_ticks(allowed.iter().map(String::as_str)));
    }
    let bits = want_bits(shapes, s);
    let mut parts = Vec::new();
    if bits & STR != 0 {
        parts.push("text".to_string());
    }
    if bits & NUM != 0 {
        parts.push("a number".into());
    } else if bits & INT != 0 {
        let range = if s.branches.is_empty() {
            s.int_range
        } else {
            None
        };
        parts.push(match range {
            Some((0, _)) => "a whole number (0 or more)".into(),
            _ => "a whole number".into(),
        });
    }
    if bits & BOOL != 0 {
        parts.push("`true` or `false`".into());
    }
    if bits & ARR != 0 {
        parts.push("a list".into());
    }
    if bits & OBJ != 0 {
        parts.push("a mapping of keys to values".into());
    }
    match parts.len() {
        0 => "absent".into(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} or {last}", parts.join(", "))
        }
    }
}

/// "this is the text `three`", "it is empty", "this is a list".
fn describe(node: &Node<'_>, text: &str) -> String {
    match &node.kind {
        Kind::Null => "it is empty".into(),
        Kind::Bool => format!("this is the yes/no value `{}`", clip(node.raw(text).trim())),
        Kind::Int(_) | Kind::Float => {
            format!("this is the number `{}`", clip(node.raw(text).trim()))
        }
        Kind::Str(s) => format!("this is the text `{}`", clip(s)),
        Kind::Seq(_) => "this is a list".into(),
        Kind::Map(_) => "this is a mapping".into(),
    }
}

/// A value shortened for a one-line message.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

fn join_ticks<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    match v.len() {
        0 => "no keys".into(),
        1 => v[0].clone(),
        _ => format!("{} or {}", v[..v.len() - 1].join(", "), v[v.len() - 1]),
    }
}
