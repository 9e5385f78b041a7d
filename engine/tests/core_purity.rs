//! The architecture invariant of `engine/src/core`: no tokio, no store, no
//! clock, no randomness, no I/O. The compiler cannot enforce it inside one
//! crate, so this test reads the sources and refuses the usual ways in.

use std::path::Path;

const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "async runtime"),
    ("std::time::SystemTime", "wall clock"),
    ("SystemTime", "wall clock"),
    ("Instant", "monotonic clock"),
    ("std::fs", "file system"),
    ("std::io", "I/O"),
    ("std::net", "network"),
    ("std::process", "processes"),
    ("std::env", "environment"),
    ("std::thread", "threads"),
    ("rand", "randomness"),
    ("crate::store::Store", "the store"),
    ("sled", "the store"),
    ("println!", "output"),
    ("eprintln!", "output"),
    (
        "HashMap",
        "iteration order that changes per process (use BTreeMap)",
    ),
    (
        "HashSet",
        "iteration order that changes per process (use BTreeSet)",
    ),
];

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '!'))
}

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut checked = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (bad, why) in FORBIDDEN {
                let hit = if bad.contains("::") || bad.ends_with('!') {
                    code.contains(bad)
                } else {
                    words(code).any(|w| w == *bad || w.split("::").any(|p| p == *bad))
                };
                if hit {
                    problems.push(format!("{}:{}: `{bad}` ({why})", path.display(), n + 1));
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 4, "expected the core's files, found {checked}");
    assert!(
        problems.is_empty(),
        "the core must stay pure:\n{}",
        problems.join("\n")
    );
}
