//! `drplan completions` and `drplan man`: generated from the CLI definition
//! at run time, so every subcommand (whoever added it) is in them.

use std::process::{Command, Output, Stdio};

mod support;
use support::drplan;

fn stdout(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

/// The subcommands `drplan --help` lists (the source of truth the user
/// sees), without `help`.
fn subcommands() -> Vec<String> {
    let help = stdout(&drplan(&["--help"]));
    let section = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section");
    let names: Vec<String> = section
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // Subcommand lines are indented by two; wrapped help text by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in [
        "validate",
        "run",
        "estimate",
        "simulate",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    names
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let script = stdout(&drplan(&["completions", "bash"]));
    assert!(
        script.contains("complete -F"),
        "not a bash completion script"
    );
    for sub in subcommands() {
        assert!(
            script.contains(&format!("drplan__{}", sub.replace('-', "__")))
                || script.contains(&sub),
            "`{sub}` missing from the bash completion"
        );
    }
    // A subcommand's own flags are completed too.
    assert!(script.contains("--operator-delay"));
    // Syntax check by bash itself, when present.
    if let Ok(o) = Command::new("bash")
        .args(["-n", "-c", &script])
        .stdin(Stdio::null())
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn every_shell_gets_a_script() {
    for (shell, marker) in [
        ("zsh", "#compdef drplan"),
        ("fish", "complete -c drplan"),
        ("elvish", "edit:completion:arg-completer[drplan]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let s = stdout(&drplan(&["completions", shell]));
        assert!(s.contains(marker), "{shell}: no `{marker}`");
        assert!(s.contains("simulate"), "{shell}: no simulate");
    }
    let o = drplan(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_man_page_is_roff_and_renders() {
    let page = stdout(&drplan(&["man"]));
    assert!(
        page.starts_with(".ie") || page.contains(".TH drplan 1"),
        "{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    // Rendered by groff's man macros when present (Debian's `man` uses it).
    if let Ok(mut child) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        assert!(
            o.stderr.is_empty(),
            "groff warnings: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn man_writes_one_page_per_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let o = drplan(&["man", "-o", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(dir.join("drplan.1").is_file());
    for sub in subcommands() {
        let page = dir.join(format!("drplan-{sub}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".SH NAME"), "{}", page.display());
    }
    // The estimate page carries its examples.
    let est = std::fs::read_to_string(dir.join("drplan-estimate.1")).unwrap();
    // (roff escapes the dashes of options.)
    assert!(est.contains(r"\-\-failover"), "{est}");
}
