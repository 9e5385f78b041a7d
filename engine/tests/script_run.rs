//! The script runner on well-behaved scripts: outcomes, start failures,
//! working directory, published values and idempotency keys. Real
//! processes; see script_hostile.rs for scripts that fight back.

mod script_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use drplan_engine::script::{Exit, ScriptOutcome};
use script_support::*;

#[tokio::test]
async fn exit_zero_succeeds_with_its_output() {
    let r = run(&runner(), request(argv(&["echo", "hello", "world"]))).await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    assert_eq!(r.output, "hello world\n");
    assert_eq!(r.output_bytes, 12);
    assert_eq!(r.output_omitted, 0);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[tokio::test]
async fn exit_three_fails_with_the_status() {
    let r = run(&runner(), request(shell("echo before; exit 3"))).await;
    let ScriptOutcome::Failed { exit, message } = &r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert_eq!(*exit, Exit::Code(3));
    assert_eq!(message, "`sh` exited with status 3");
    assert_eq!(r.output, "before\n");
}

#[tokio::test]
async fn killed_by_a_signal_is_a_failure_naming_it() {
    let r = run(&runner(), request(shell("kill -SEGV $$"))).await;
    let ScriptOutcome::Failed { exit, message } = &r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert_eq!(*exit, Exit::Signal(libc::SIGSEGV));
    assert!(
        message.ends_with("killed by signal 11 (SIGSEGV)"),
        "{message}"
    );
}

#[tokio::test]
async fn failure_to_core_outcome_keeps_the_message() {
    let r = run(&runner(), request(shell("exit 7"))).await;
    assert_eq!(
        r.outcome.to_core(),
        drplan_engine::core::Outcome::Failed {
            error: "`sh` exited with status 7".to_string(),
            error_kind: Some(drplan_engine::core::ErrorKind::ScriptFailed),
            retryable: true,
        }
    );
}

#[tokio::test]
async fn shell_form_interleaves_stdout_and_stderr_in_order() {
    let r = run(
        &runner(),
        request(shell("echo one; echo two >&2; echo three; echo four >&2")),
    )
    .await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    assert_eq!(r.output, "one\ntwo\nthree\nfour\n");
}

#[tokio::test]
async fn argv_is_not_interpreted_by_a_shell() {
    let r = run(&runner(), request(argv(&["echo", "$HOME", "a;b", "*"]))).await;
    assert_eq!(r.output, "$HOME a;b *\n");
}

#[tokio::test]
async fn runs_in_the_plan_directory_and_finds_relative_programs_there() {
    let r = run(&runner(), request(shell("pwd -P"))).await;
    let expect = fixtures().canonicalize().unwrap();
    assert_eq!(r.output.trim_end(), expect.to_str().unwrap());

    // `./publish.sh` is found relative to the plan directory, not to the
    // test's working directory.
    let r = run(&runner(), request(argv(&["./publish.sh"]))).await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded, "{}", r.output);
}

fn could_not_start(outcome: &ScriptOutcome) -> &str {
    match outcome {
        ScriptOutcome::CouldNotStart { message, .. } => message,
        other => panic!("expected CouldNotStart, got {other:?}"),
    }
}

#[tokio::test]
async fn a_program_not_on_path_could_not_start() {
    let r = run(&runner(), request(argv(&["drplan-no-such-program", "x"]))).await;
    let msg = could_not_start(&r.outcome);
    assert!(
        msg.starts_with("program `drplan-no-such-program` was not found on the script's PATH ("),
        "{msg}"
    );
    assert!(r.duration < Duration::from_secs(1));
}

#[tokio::test]
async fn a_missing_relative_program_names_the_path_it_looked_at() {
    let r = run(&runner(), request(argv(&["./no-such.sh"]))).await;
    let msg = could_not_start(&r.outcome);
    let path = fixtures().join("./no-such.sh");
    assert_eq!(
        msg,
        format!("program `./no-such.sh` ({}) does not exist", path.display())
    );
}

#[tokio::test]
async fn a_file_without_execute_permission_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plain.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut req = request(argv(&["./plain.sh"]));
    req.cwd = dir.path().to_path_buf();
    let r = run(&runner(), req).await;
    let msg = could_not_start(&r.outcome);
    assert!(
        msg.ends_with("is not executable (mode 644); make it so with `chmod +x`"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_directory_or_a_broken_interpreter_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let bad = dir.path().join("bad-interp.sh");
    std::fs::write(&bad, "#!/no/such/interpreter\necho hi\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let noshebang = dir.path().join("garbage");
    std::fs::write(&noshebang, [0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 0]).unwrap();
    std::fs::set_permissions(&noshebang, std::fs::Permissions::from_mode(0o755)).unwrap();

    let cases = [
        ("./sub", "is a directory, not a program"),
        (
            "./bad-interp.sh",
            "the interpreter named on its `#!` line was not found",
        ),
        ("./garbage", "is not a program this system can run"),
    ];
    for (program, expect) in cases {
        let mut req = request(argv(&[program]));
        req.cwd = dir.path().to_path_buf();
        let r = run(&runner(), req).await;
        let msg = could_not_start(&r.outcome);
        assert!(msg.contains(expect), "{program}: {msg}");
    }
}

#[tokio::test]
async fn a_missing_plan_directory_could_not_start() {
    let mut req = request(argv(&["true"]));
    req.cwd = fixtures().join("no-such-dir");
    let r = run(&runner(), req).await;
    let msg = could_not_start(&r.outcome);
    assert!(msg.starts_with("the plan's folder "), "{msg}");
    assert_eq!(
        r.outcome.to_core(),
        drplan_engine::core::Outcome::Failed {
            error: format!("could not start: {msg}"),
            // A missing folder: no retry can fix it.
            error_kind: Some(drplan_engine::core::ErrorKind::ScriptCouldNotStart),
            retryable: false,
        }
    );
}

#[tokio::test]
async fn published_values_reach_the_next_step() {
    let runner = runner();
    let first = run(&runner, request(argv(&["./publish.sh"]))).await;
    assert_eq!(first.outcome, ScriptOutcome::Succeeded, "{}", first.output);
    let values: Vec<_> = first
        .values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        values,
        [
            ("dns_zone", "shop.example"),
            ("url", "http://shop.example/?a=b")
        ]
    );
    // The two bad lines are reported, not fatal.
    assert_eq!(first.warnings.len(), 2, "{:#?}", first.warnings);
    assert!(first.warnings[0].contains("line 5: `1bad` is not a valid key"));
    assert!(first.warnings[1].contains("line 6: expected `key=value`"));

    let mut req = request(argv(&["./show-values.sh"]));
    req.context.values = first.values.clone();
    let second = run(&runner, req).await;
    assert_eq!(
        second.output,
        "zone=shop.example\nurl=http://shop.example/?a=b\n\
         json={\"dns_zone\":\"shop.example\",\"url\":\"http://shop.example/?a=b\"}\n"
    );
}

#[tokio::test]
async fn values_of_a_failed_attempt_are_not_published() {
    let r = run(
        &runner(),
        request(shell("echo key=value >>\"$DRPLAN_OUTPUT\"; exit 1")),
    )
    .await;
    assert!(matches!(r.outcome, ScriptOutcome::Failed { .. }));
    assert!(r.values.is_empty(), "{:?}", r.values);
}

#[tokio::test]
async fn an_oversized_values_file_is_cut_at_a_line_with_a_warning() {
    // 100,000 lines of 10 bytes: about 1 MiB, far over the 64 KiB bound.
    let r = run(
        &runner(),
        request(shell(
            "i=0; yes k123=abcd | head -n 100000 >>\"$DRPLAN_OUTPUT\"; echo last=1 >>\"$DRPLAN_OUTPUT\"",
        )),
    )
    .await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    assert_eq!(r.values.len(), 1, "{:?}", r.values.keys());
    assert_eq!(r.values["k123"], "abcd");
    assert!(!r.values.contains_key("last"), "read past the bound");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("DRPLAN_OUTPUT is larger than 64.0 KiB")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn each_attempt_gets_a_fresh_output_file_removed_afterwards() {
    let runner = runner();
    let r1 = run(
        &runner,
        request(shell(
            "echo \"$DRPLAN_OUTPUT\"; echo a=1 >>\"$DRPLAN_OUTPUT\"",
        )),
    )
    .await;
    let r2 = run(
        &runner,
        request(shell("echo \"$DRPLAN_OUTPUT\"; cat \"$DRPLAN_OUTPUT\"")),
    )
    .await;
    let (p1, p2) = (r1.output.trim(), r2.output.lines().next().unwrap());
    assert_ne!(p1, p2);
    // The second attempt's file starts empty.
    assert_eq!(r2.output.lines().count(), 1, "{}", r2.output);
    assert!(!std::path::Path::new(p1).exists(), "{p1} left behind");
    assert!(!std::path::Path::new(p2).exists(), "{p2} left behind");
}

#[tokio::test]
async fn a_rerun_with_the_same_key_sees_the_same_key_and_does_not_redo_work() {
    let markers = tempfile::tempdir().unwrap();
    let runner = runner();
    let req = || {
        let mut req = request(argv(&["./idempotent.sh"]));
        req.env
            .insert("MARKERS".into(), markers.path().to_str().unwrap().into());
        req
    };
    // The first run, then the same attempt issued again (as after a crash).
    let first = run(&runner, req()).await;
    let again = run(&runner, req()).await;
    let key = "42/web/post/update-dns/1";
    assert_eq!(first.output, format!("doing the work for {key}\n"));
    assert_eq!(again.output, format!("already done for {key}\n"));
    // The repeated run reports the same published values.
    assert_eq!(first.values, again.values);
    assert!(first.values.contains_key("done_at"));
    let log = std::fs::read_to_string(markers.path().join("work.log")).unwrap();
    assert_eq!(log, "work\n", "the work was done more than once");

    // A new attempt (a new key) does the work again.
    let mut next = req();
    next.context.attempt = 2;
    next.context.idempotency_key = "42/web/post/update-dns/2".into();
    let retry = run(&runner, next).await;
    assert!(
        retry.output.starts_with("doing the work"),
        "{}",
        retry.output
    );
    let log = std::fs::read_to_string(markers.path().join("work.log")).unwrap();
    assert_eq!(log, "work\nwork\n");
}

#[tokio::test]
async fn the_shipped_update_dns_script_runs_once_per_key() {
    // TMPDIR is inherited from the engine: point it at a fresh folder so
    // the script's markers do not outlive the test.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = runner().config().clone();
    config
        .inherited_env
        .retain(|(k, _)| k.to_str() != Some("TMPDIR"));
    config
        .inherited_env
        .push(("TMPDIR".into(), tmp.path().as_os_str().to_owned()));
    let runner = drplan_engine::script::ScriptRunner::new(config);
    let plans = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plans");
    let req = || {
        let mut req = request(argv(&["scripts/update-dns.sh", "--zone", "shop.example"]));
        req.cwd = plans.clone();
        req
    };
    let first = run(&runner, req()).await;
    assert_eq!(first.outcome, ScriptOutcome::Succeeded, "{}", first.output);
    // DRPLAN_VMS carries objects; the script finds the names in them.
    assert!(
        first
            .output
            .contains("would send: update add web-01.shop.example 60 A"),
        "{}",
        first.output
    );
    assert_eq!(first.values["dns_updated"], "web-01,web-02");
    let again = run(&runner, req()).await;
    assert!(
        again
            .output
            .starts_with("update-dns: already done for key 42/web/post/update-dns/1"),
        "{}",
        again.output
    );
    assert_eq!(first.values, again.values);
}

/// The `DRPLAN_*` names in the first column of the variable table of a
/// markdown file (`| `DRPLAN_X` | ... |`).
fn documented_vars(doc: &str) -> std::collections::BTreeSet<String> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `DRPLAN_"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| format!("DRPLAN_{name}"))
        .collect()
}

#[tokio::test]
async fn the_docs_list_exactly_the_variables_a_script_gets() {
    let mut req = request(argv(&["env", "-0"]));
    req.context.values.insert("zone".into(), "x".into());
    let r = run(&runner(), req).await;
    let set: std::collections::BTreeSet<String> = r
        .output
        .split('\0')
        .filter_map(|e| e.split_once('=').map(|(k, _)| k))
        .filter(|k| k.starts_with("DRPLAN_"))
        .map(|k| k.replace("DRPLAN_VALUE_zone", "DRPLAN_VALUE_<key>"))
        .collect();
    assert_eq!(set.len(), 12, "{set:?}");
    for doc in ["plan-format.md", "scripts.md"] {
        assert_eq!(
            documented_vars(doc),
            set,
            "docs/{doc} and the runner disagree"
        );
    }
}
