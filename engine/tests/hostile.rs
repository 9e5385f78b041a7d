//! Hostile input: whatever the bytes, reading a plan or an inventory ends in
//! `Ok` or in clear, located diagnostics, in bounded time and memory; never
//! a panic, a hang or a stack overflow.
//!
//! The deep-nesting tests run on a 2 MiB thread (libtest's and tokio's
//! default) on purpose: that is the stack the depth limit is designed for,
//! in a debug build.

use std::io::Write;

use drplan_engine::plan::diag::{Diagnostic, codes};
use drplan_engine::plan::fabric_file::FabricFile;
use drplan_engine::plan::file::PlanFile;
use drplan_engine::plan::{self, yaml};
use proptest::prelude::*;

/// Run `f` on a thread with a 2 MiB stack, whatever the test harness does.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the test body panicked");
}

fn plan_bytes(bytes: &[u8]) -> Result<PlanFile, Vec<Diagnostic>> {
    yaml::parse::<PlanFile>("plan.yaml", bytes)
}

/// The single diagnostic a hostile input must end in.
fn one_error(bytes: &[u8]) -> Diagnostic {
    match plan_bytes(bytes) {
        Ok(p) => panic!("hostile input parsed: {p:?}"),
        Err(mut d) => {
            assert_eq!(d.len(), 1, "expected one error, got {d:#?}");
            d.remove(0)
        }
    }
}

fn assert_error(bytes: &[u8], code: &str, line: u64, column: u64) -> Diagnostic {
    let d = one_error(bytes);
    assert_eq!((d.code, d.line, d.column), (code, line, column), "{d:#?}");
    d
}

const SMALL_PLAN: &str = "drplan: 1
name: p
source: primary-vmm/gold
target: secondary-vmm/gold-dr
groups:
  - name: db
    vms: [db-1, { name: db-2, optional: true }]
    pre:
      - name: stop
        run: [./stop.sh, --now]
        retries: 2
        env: { MODE: drain }
  - name: web
    after: [db]
    vms: [web-1]
    post:
      - name: check
        manual: Verify the shop.
      - name: settle
        wait: 30s
";

#[test]
fn the_base_plan_is_valid() {
    plan_bytes(SMALL_PLAN.as_bytes()).unwrap_or_else(|d| panic!("{d:#?}"));
}

#[test]
fn empty_files() {
    for text in [
        "",
        "   \n\n\t \r\n",
        "# only a comment\n   # and another\n",
        "---\n",
        "---\n...\n",
        "~\n",
    ] {
        let d = assert_error(text.as_bytes(), codes::EMPTY, 1, 1);
        assert_eq!(
            d.message,
            "the file is empty: a plan needs at least `drplan`, `name`, `source`, `target` and `groups`"
        );
    }
    // The message follows the file type.
    let d = yaml::parse::<FabricFile>("fabric.yaml", b"# nothing yet\n").expect_err("empty");
    assert_eq!(
        d[0].message,
        "the file is empty: an inventory needs at least `drplan-fabric` and `sites`"
    );
}

#[test]
fn non_utf8_is_refused_at_the_first_bad_byte() {
    // Latin-1 `é` on line 2, column 10.
    let d = assert_error(b"drplan: 1\nname: caf\xE9\n", codes::NOT_UTF8, 2, 10);
    assert!(d.message.contains("0xE9"), "{d}");
    // A truncated multi-byte character at the very end, after `é` (2 bytes, 1 column).
    assert_error(
        "name: é"
            .as_bytes()
            .iter()
            .chain(b"\n\xE2\x82")
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
        codes::NOT_UTF8,
        2,
        1,
    );
}

#[test]
fn binary_data_is_refused_where_it_starts() {
    assert_error(b"drplan: 1\nname: a\x00b\n", codes::NOT_UTF8, 2, 8);
    // Columns count characters, not bytes.
    assert_error("name: çà\x07\n".as_bytes(), codes::NOT_UTF8, 1, 9);
    // DEL and a C1 control character.
    assert_error(b"a: \x7F\n", codes::NOT_UTF8, 1, 4);
    assert_error(
        "a: b\nc: \u{85}ok\u{9B}\n".as_bytes(),
        codes::NOT_UTF8,
        2,
        7,
    );
    // A PNG header: not UTF-8 at its second byte.
    assert_error(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        codes::NOT_UTF8,
        1,
        1,
    );
    // Valid UTF-8 but control characters: an ELF header.
    assert_error(b"\x7FELF\x02\x01\x01\x00", codes::NOT_UTF8, 1, 1);
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_fine() {
    let crlf = SMALL_PLAN.replace('\n', "\r\n");
    let with_bom = format!("\u{FEFF}{crlf}");
    plan_bytes(with_bom.as_bytes()).unwrap_or_else(|d| panic!("{d:#?}"));
}

#[test]
fn an_oversized_buffer_is_refused_without_parsing() {
    let big = vec![b'a'; yaml::MAX_FILE_BYTES + 1];
    let d = one_error(&big);
    assert_eq!(d.code, codes::TOO_LARGE, "{d}");
}

#[test]
fn a_50_mb_file_is_refused_by_the_loader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.yaml");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(b"drplan: 1\nname: huge\n").expect("write");
    // Sparse: 50 MB long without writing 50 MB.
    f.set_len(50 << 20).expect("set_len");
    drop(f);
    let d = plan::read_source(&path).expect_err("a 50 MB file must be refused");
    assert_eq!(d.code, codes::TOO_LARGE, "{d}");
    let loaded = plan::load(&path, None);
    assert!(loaded.plan.is_none());
    assert_eq!(
        loaded
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        vec![codes::TOO_LARGE],
        "{:#?}",
        loaded.diagnostics
    );
}

/// An endless file is refused after reading just past the limit: this
/// would hang (or exhaust memory) if the reader read to the end first.
#[cfg(target_os = "linux")]
#[test]
fn an_endless_file_is_refused_after_the_limit() {
    let d = plan::read_source(std::path::Path::new("/dev/zero")).expect_err("endless input");
    assert_eq!(d.code, codes::TOO_LARGE, "{d}");
}

#[test]
fn deep_flow_sequences_hit_the_depth_limit() {
    on_small_stack(|| {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let d = one_error(text.as_bytes());
        assert_eq!((d.code, d.line), (codes::LIMIT, 1), "{d}");
        assert!(d.message.contains("nesting deeper than"), "{d}");
        // Unclosed, too.
        let d = one_error("[".repeat(10_000).as_bytes());
        assert_eq!(d.code, codes::LIMIT, "{d}");
    });
}

#[test]
fn deep_block_sequences_hit_the_depth_limit() {
    on_small_stack(|| {
        let text = format!("{}x\n", "- ".repeat(10_000));
        let d = one_error(text.as_bytes());
        assert_eq!((d.code, d.line), (codes::LIMIT, 1), "{d}");
        assert!(d.message.contains("nesting deeper than"), "{d}");
    });
}

#[test]
fn deep_flow_mappings_hit_the_depth_limit() {
    on_small_stack(|| {
        let text = format!("{}1{}", "{a: ".repeat(10_000), "}".repeat(10_000));
        let d = one_error(text.as_bytes());
        assert_eq!((d.code, d.line), (codes::LIMIT, 1), "{d}");
    });
}

#[test]
fn deep_block_mappings_hit_the_depth_limit() {
    on_small_stack(|| {
        // Indented one more space per level: 2,000 levels in 2 MB.
        let text: String = (0..2_000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let d = one_error(text.as_bytes());
        assert_eq!(d.code, codes::LIMIT, "{d}");
        // Reported where the level past the limit starts.
        let limit = yaml::MAX_DEPTH as u64;
        assert!(d.line > limit - 3 && d.line < limit + 3, "{d}");
    });
}

#[test]
fn nesting_just_under_the_limit_fits_a_test_thread_stack() {
    on_small_stack(|| {
        // The limit is about depth, not about lists: nesting just under it
        // parses (on this 2 MiB thread, in a debug build) and is then rejected
        // for its shape, not for its depth. Both where the decoder reads a
        // number and where it buffers an untagged VM entry.
        let nest = |depth: usize, inner: &str| {
            format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
        };
        // The root mapping is level 1.
        let depth = yaml::MAX_DEPTH - 1;
        let text = format!(
            "drplan: {}\nname: p\nsource: a/b\ntarget: c/d\ngroups: []\n",
            nest(depth, "1")
        );
        let d = one_error(text.as_bytes());
        assert_eq!(d.code, codes::WRONG_TYPE, "{d}");
        let text = format!(
            "drplan: 1\nname: p\nsource: a/b\ntarget: c/d\ngroups:\n  - name: g\n    vms: [{}]\n",
            // root, groups, group and vms are four levels.
            nest(yaml::MAX_DEPTH - 4, "x")
        );
        let d = plan_bytes(text.as_bytes()).expect_err("nested VM entry");
        assert!(d.iter().all(|d| d.code != codes::LIMIT), "{d:#?}");
        // One more level on top is a limit error.
        let text = format!("a: {}\n", nest(depth + 1, "1"));
        assert_eq!(one_error(text.as_bytes()).code, codes::LIMIT);
    });
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("{n}: &{n} [{refs}]\n"));
        prev = n;
    }
    let d = one_error(text.as_bytes());
    assert_eq!(d.code, codes::LIMIT, "{d}");
    assert!(d.message.contains("alias bomb"), "{d}");
    assert!(d.line >= 1, "{d}");
}

#[test]
fn a_wide_alias_fan_out_is_refused() {
    // Few anchors, very many aliases: the alias/anchor ratio.
    let mut text = String::from("a: &a x\nb: [");
    text.push_str(&vec!["*a"; 20_000].join(", "));
    text.push_str("]\n");
    let d = one_error(text.as_bytes());
    assert_eq!(d.code, codes::LIMIT, "{d}");
}

#[test]
fn many_documents_are_one_error_at_the_second() {
    let text = format!("{SMALL_PLAN}{}", "---\na: 1\n".repeat(10_000));
    let d = one_error(text.as_bytes());
    assert_eq!((d.code, d.line, d.column), (codes::SYNTAX, 21, 1), "{d}");
    assert!(d.message.contains("document"), "{d}");
    let d = one_error("---\n".repeat(10_000).as_bytes());
    assert_eq!(d.line, 2, "{d}");
}

#[test]
fn a_million_unknown_keys_give_a_bounded_list() {
    let text: String = (0..20_000).map(|i| format!("k{i}: v\n")).collect();
    let d = plan_bytes(text.as_bytes()).expect_err("unknown keys");
    assert!(d.len() <= yaml::MAX_DIAGNOSTICS + 1, "{}", d.len());
    assert_eq!(d.last().map(|d| d.code), Some(codes::LIMIT));
}

#[test]
fn syntax_errors_are_located_once() {
    let d = one_error(b"drplan: 1\nname: [unclosed\nsource: x\n");
    assert_eq!(d.code, codes::SYNTAX, "{d}");
    assert!(d.line >= 2, "{d}");
    // The parser's location is not repeated inside the message.
    assert!(!d.message.contains("line"), "{d}");
    let d = one_error(b"drplan: 1\n  name: p\n");
    assert_eq!((d.code, d.line), (codes::SYNTAX, 2), "{d}");
    let d = one_error(b"a: *nowhere\n");
    assert_eq!(d.line, 1, "{d}");
}

/// Every diagnostic of a failed parse points into the file (except a file
/// refused for its size, which points at the whole file).
fn assert_located(diags: &[Diagnostic]) {
    assert!(!diags.is_empty());
    for d in diags {
        if d.code != codes::TOO_LARGE {
            assert!(d.line >= 1 && d.column >= 1, "unlocated: {d:#?}");
        }
    }
}

fn check_both(bytes: &[u8]) {
    if let Err(d) = yaml::parse::<PlanFile>("plan.yaml", bytes) {
        assert_located(&d);
    }
    if let Err(d) = yaml::parse::<FabricFile>("fabric.yaml", bytes) {
        assert_located(&d);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to YAML, plus anything at all.
    let interesting = prop_oneof![
        Just(b':'),
        Just(b'-'),
        Just(b' '),
        Just(b'\n'),
        Just(b'['),
        Just(b']'),
        Just(b'{'),
        Just(b'&'),
        Just(b'*'),
        Just(b'"'),
        Just(b'#'),
        Just(b'\t'),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = text.to_vec();
    for m in muts {
        let len = v.len().max(1);
        match m {
            Mutation::Replace(i, b) => {
                if !v.is_empty() {
                    let i = i % v.len();
                    v[i] = *b;
                }
            }
            Mutation::Insert(i, b) => {
                let i = i % (v.len() + 1);
                v.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(v.len());
                if i < end {
                    v.drain(i..end);
                }
            }
            Mutation::Truncate(i) => v.truncate(i % len),
        }
    }
    v
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_both(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[a-z:\\-\\[\\]{}&*!|>'\" \n#,?~0-9]{0,200}") {
        check_both(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    /// Mutated plans never panic, every error is located, and the shape
    /// check never flags a file the decoder accepts.
    #[test]
    fn mutated_plans_never_panic(muts in prop::collection::vec(mutation(), 1..4)) {
        let bytes = apply(SMALL_PLAN.as_bytes(), &muts);
        check_both(&bytes);
        if yaml::parse::<PlanFile>("plan.yaml", &bytes).is_ok() {
            let shape = yaml::check_shape::<PlanFile>("plan.yaml", &bytes);
            prop_assert!(shape.is_empty(), "decoder accepts but the check flags: {:#?}\n{}", shape, String::from_utf8_lossy(&bytes));
        }
    }
}
