//! Values a script publishes: `key=value` lines in the `DRPLAN_OUTPUT` file.
//!
//! The file is written by arbitrary code, so nothing in it may crash the
//! engine or grow its memory: the read is bounded, and every bad line
//! becomes a warning for the operator, never an error.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::tail::human_bytes;

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters: safe as the tail of an
/// environment variable name (`DRPLAN_VALUE_<key>`) in every shell.
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 128
}

/// Reads and parses the file, at most `limit` bytes of it.
pub(crate) fn read_values(
    path: &Path,
    limit: u64,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut data = Vec::new();
    // The script may have replaced the file: by a FIFO (a plain open would
    // block for ever), or by a symlink to a device or a huge file. Open
    // without following links and without blocking, and read only a
    // regular file, and only `limit` bytes of it.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path);
    let read = opened.and_then(|f| {
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("it is not a regular file"));
        }
        f.take(limit.saturating_add(1)).read_to_end(&mut data)
    });
    if let Err(e) = read {
        if e.kind() == io::ErrorKind::NotFound {
            warnings.push(
                "the DRPLAN_OUTPUT file was removed by the script; no values were published"
                    .to_string(),
            );
        } else if e.raw_os_error() == Some(libc::ELOOP) {
            warnings.push(
                "the DRPLAN_OUTPUT file was replaced by a symbolic link; no values were \
                 published (append to the file instead)"
                    .to_string(),
            );
        } else {
            warnings.push(format!(
                "the DRPLAN_OUTPUT file could not be read ({e}); no values were published"
            ));
        }
        return BTreeMap::new();
    }
    if data.len() as u64 > limit {
        // Keep the complete lines that fit, so a runaway writer still
        // publishes what it wrote first.
        data.truncate(limit as usize);
        let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        data.truncate(end);
        warnings.push(format!(
            "DRPLAN_OUTPUT is larger than {}: only the complete lines in its first {} were used",
            human_bytes(limit),
            human_bytes(limit)
        ));
    }
    parse_values(&data, warnings)
}

/// The reserved key through which a script raises a warning: each
/// `warning=TEXT` line of its `DRPLAN_OUTPUT` file is one warning for the
/// operator (the job's verdict becomes WARNINGS), never a published value.
/// A `warning:` line in the script's *output* is just output.
pub const WARNING_KEY: &str = "warning";

/// At most this many warnings a script raises are kept (the rest are
/// counted in one more warning), each at most this many characters.
const MAX_RAISED: usize = 20;
const MAX_RAISED_CHARS: usize = 500;

/// Parses `key=value` lines. Blank lines and `#` comments are skipped; the
/// value is everything after the first `=`, kept as written (no quotes are
/// removed, no trimming except a trailing `\r`); a repeated key keeps its
/// last value, as a shell assignment would. `warning=TEXT` lines
/// ([`WARNING_KEY`]) are warnings the script raises: appended to
/// `warnings`, every one of them, not published.
pub(crate) fn parse_values(data: &[u8], warnings: &mut Vec<String>) -> BTreeMap<String, String> {
    const MAX_WARNINGS: usize = 20;
    let mut raised = 0usize;
    let mut values = BTreeMap::new();
    let mut bad = 0usize;
    let mut warn = |warnings: &mut Vec<String>, line: usize, what: String| {
        bad += 1;
        if bad <= MAX_WARNINGS {
            warnings.push(format!("DRPLAN_OUTPUT line {line}: {what}; line ignored"));
        }
    };
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            warn(warnings, n, "not valid UTF-8".to_string());
            continue;
        };
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            warn(
                warnings,
                n,
                format!("expected `key=value`, found `{}`", clip(line)),
            );
            continue;
        };
        if !is_valid_key(key) {
            warn(
                warnings,
                n,
                format!(
                    "`{}` is not a valid key (letters, digits and `_`, not starting with a digit)",
                    clip(key)
                ),
            );
            continue;
        }
        if value.contains('\0') {
            // It could never be passed on in an environment variable.
            warn(
                warnings,
                n,
                format!("the value of `{key}` contains a NUL byte"),
            );
            continue;
        }
        if key == WARNING_KEY {
            raised += 1;
            if raised <= MAX_RAISED {
                let text = value.trim();
                let mut w: String = text.chars().take(MAX_RAISED_CHARS).collect();
                if w.len() < text.len() {
                    w.push_str("...");
                }
                warnings.push(w);
            }
            continue;
        }
        values.insert(key.to_string(), value.to_string());
    }
    if raised > MAX_RAISED {
        warnings.push(format!(
            "the script raised {} more warnings (DRPLAN_OUTPUT `warning=` lines)",
            raised - MAX_RAISED
        ));
    }
    if bad > MAX_WARNINGS {
        warnings.push(format!(
            "DRPLAN_OUTPUT: {} more bad lines ignored",
            bad - MAX_WARNINGS
        ));
    }
    values
}

/// A bad line quoted in a warning, shortened.
fn clip(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let short: String = s.chars().take(MAX).collect();
    format!("{short}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> (BTreeMap<String, String>, Vec<String>) {
        let mut w = Vec::new();
        (parse_values(s, &mut w), w)
    }

    #[test]
    fn parses_lines() {
        let (v, w) = parse(b"a=1\n# note\n\nB_2=x=y\r\nempty=\na=2\n");
        assert_eq!(w, Vec::<String>::new());
        let v: Vec<_> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(v, [("B_2", "x=y"), ("a", "2"), ("empty", "")]);
    }

    #[test]
    fn bad_lines_are_warnings() {
        let (v, w) = parse(b"no equals\n1a=x\nk\xff=1\n=v\nok=\x00\ngood=yes");
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v["good"], "yes");
        assert_eq!(w.len(), 5, "{w:#?}");
        assert!(
            w[0].starts_with("DRPLAN_OUTPUT line 1: expected `key=value`"),
            "{}",
            w[0]
        );
        assert!(w[1].contains("`1a` is not a valid key"), "{}", w[1]);
        assert!(w[2].contains("not valid UTF-8"), "{}", w[2]);
        assert!(w[4].contains("NUL"), "{}", w[4]);
    }

    #[test]
    fn warning_lines_raise_warnings_and_publish_nothing() {
        let (v, w) = parse(b"warning=replica lag 40s\nzone=a\nwarning= second \n");
        assert_eq!(v.keys().collect::<Vec<_>>(), ["zone"]);
        assert_eq!(w, ["replica lag 40s", "second"]);
        let many = "warning=x\n".repeat(25);
        let (_, w) = parse(many.as_bytes());
        assert_eq!(w.len(), 21, "{w:?}");
        assert!(w[20].contains("5 more warnings"), "{}", w[20]);
        let long = format!("warning={}", "é".repeat(600));
        let (_, w) = parse(long.as_bytes());
        assert_eq!(w[0].chars().count(), 503);
    }

    #[test]
    fn warnings_are_bounded() {
        let data = "junk\n".repeat(10_000);
        let (_, w) = parse(data.as_bytes());
        assert_eq!(w.len(), 21);
        assert!(w[20].contains("9980 more"), "{}", w[20]);
    }

    #[test]
    fn keys() {
        for ok in ["a", "_", "A_1", "dns_zone"] {
            assert!(is_valid_key(ok), "{ok}");
        }
        for bad in ["", "1", "a-b", "a b", "é", &"k".repeat(129)] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }
}
