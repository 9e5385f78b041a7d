//! Scripts that fight back: they hang, ignore SIGTERM, leave processes
//! holding the output pipe, escape their process group, or flood output.
//! The run must end promptly, leave no process of the script's group
//! behind, and keep memory bounded. Real processes with short timeouts:
//! correctness tests, not benchmarks (bounds are generous for a loaded CI).

mod script_support;

use std::time::{Duration, Instant};

use drplan_engine::script::{RunnerConfig, ScriptOutcome, ScriptRunner};
use script_support::*;

#[tokio::test]
async fn a_hanging_command_times_out_quickly() {
    become_subreaper();
    // The default 5 s grace: `sleep` exits on SIGTERM, so it is not used.
    let runner = ScriptRunner::new(RunnerConfig::from_process_env());
    let mut req = request(shell("echo pgid $$; sleep 60"));
    req.timeout = Duration::from_millis(300);
    let r = run(&runner, req).await;
    assert_eq!(r.outcome, ScriptOutcome::TimedOut, "{}", r.output);
    assert!(r.duration >= Duration::from_millis(300), "{:?}", r.duration);
    assert!(r.duration < Duration::from_secs(2), "{:?}", r.duration);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(group_gone(number_after(&r.output, "pgid ")));
}

#[tokio::test]
async fn a_script_ignoring_sigterm_is_killed_after_the_grace_period() {
    become_subreaper();
    let runner = runner(); // 500 ms grace
    let mut req = request(argv(&["./ignore-term.sh"]));
    req.timeout = Duration::from_millis(300);
    let r = run(&runner, req).await;
    assert_eq!(r.outcome, ScriptOutcome::TimedOut);
    // Timeout, then the whole grace period, then SIGKILL.
    assert!(r.duration >= Duration::from_millis(800), "{:?}", r.duration);
    assert!(r.duration < Duration::from_secs(3), "{:?}", r.duration);
    eprintln!(
        "SIGTERM-ignoring script: ended {:?} after start (timeout 300 ms + grace 500 ms)",
        r.duration
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("did not exit within 500ms of SIGTERM")),
        "{:?}",
        r.warnings
    );
    assert!(group_gone(number_after(&r.output, "pgid ")));
}

#[tokio::test]
async fn a_background_child_holding_the_pipe_does_not_keep_the_run_going() {
    become_subreaper();
    let r = run(&runner(), request(argv(&["./background-holds-pipe.sh"]))).await;
    // The script itself succeeded; its leftover was stopped.
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    // drain (300 ms) + SIGTERM, which `sleep` obeys at once.
    assert!(r.duration < Duration::from_secs(2), "{:?}", r.duration);
    assert!(
        r.warnings.iter().any(|w| w
            .ends_with("left 1 process running in its process group; stopped them with SIGTERM")),
        "{:?}",
        r.warnings
    );
    assert!(group_gone(number_after(&r.output, "pgid ")));
}

#[tokio::test]
async fn leftovers_ignoring_sigterm_are_killed_too() {
    become_subreaper();
    let r = run(
        &runner(),
        request(shell(
            "trap '' TERM; sleep 60 >/dev/null 2>&1 & sleep 60 & echo pgid $$",
        )),
    )
    .await;
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    assert!(r.duration < Duration::from_secs(3), "{:?}", r.duration);
    assert!(
        r.warnings.iter().any(|w| w.ends_with(
            "left 2 processes running in its process group; killed them (SIGKILL) after they \
             ignored SIGTERM for 500ms"
        )),
        "{:?}",
        r.warnings
    );
    assert!(group_gone(number_after(&r.output, "pgid ")));
}

#[tokio::test]
async fn a_process_escaping_with_setsid_cannot_hang_the_run() {
    let r = run(&runner(), request(argv(&["./escape-setsid.sh"]))).await;
    let escaped = number_after(&r.output, "escaped ");
    // Clean up what drplan (by design) could not.
    // SAFETY: plain kill of the pid the fixture reported.
    unsafe {
        libc::kill(escaped, libc::SIGKILL);
    }
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    // Two drain periods of 300 ms, and no more.
    assert!(r.duration < Duration::from_secs(2), "{:?}", r.duration);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("the output pipe was still open")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn cancellation_stops_the_group() {
    become_subreaper();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = runner();
    let mut req = request(shell("echo pgid $$; sleep 60 & sleep 60; wait"));
    req.timeout = Duration::from_secs(60);
    let started = Instant::now();
    let (r, ()) = tokio::join!(
        runner.run(req, async {
            let _ = rx.await;
        }),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send(()).unwrap();
        }
    );
    assert_eq!(r.outcome, ScriptOutcome::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(group_gone(number_after(&r.output, "pgid ")));
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    become_subreaper();
    let runner = runner();
    let pidfile = tempfile::NamedTempFile::new().unwrap();
    let line = format!("echo $$ >{}; exec sleep 60", pidfile.path().display());
    let run = runner.run(request(shell(&line)), std::future::pending());
    // Abandon the run once the script is surely up.
    let _ = tokio::time::timeout(Duration::from_millis(500), run).await;
    let pgid: i32 = std::fs::read_to_string(pidfile.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The drop sent SIGKILL; a reaper thread collects the main process.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !group_gone(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(group_gone(pgid), "group {pgid} still alive after drop");
}

#[tokio::test]
async fn a_gigabyte_of_output_keeps_the_tail_and_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let before = peak_rss_kib();
    let mut req = request(shell(
        "head -c 1073741824 /dev/zero | tr '\\0' x; printf '\\n\\377 invalid\\nEND\\n'",
    ));
    req.timeout = Duration::from_secs(120);
    let started = Instant::now();
    let r = run(&runner(), req).await;
    let elapsed = started.elapsed();
    let growth_kib = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "1 GiB flood: {elapsed:?}, peak RSS growth {growth_kib} KiB, tail {} bytes, header {:?}",
        r.output.len(),
        r.output.lines().next()
    );
    assert_eq!(r.outcome, ScriptOutcome::Succeeded);
    assert_eq!(r.output_bytes, GIB + 15);
    assert!(r.output.len() <= 64 * 1024, "{}", r.output.len());
    assert!(
        r.output.starts_with("[... 1023.9 MiB omitted ...]\n"),
        "{:?}",
        &r.output[..60]
    );
    assert!(
        r.output.ends_with("x\n\u{FFFD} invalid\nEND\n"),
        "{:?}",
        &r.output[r.output.len() - 30..]
    );
    // What is shown plus what is omitted is everything (the invalid byte
    // is shown as a 3-byte replacement character).
    let shown = r.output.len() - r.output.find('\n').unwrap() - 1 - 2;
    assert_eq!(r.output_omitted + shown as u64, r.output_bytes);
    assert!(growth_kib < 32 * 1024, "peak RSS grew {growth_kib} KiB");
}

#[tokio::test]
async fn a_flood_that_never_ends_times_out_with_bounded_memory() {
    become_subreaper();
    let pidfile = tempfile::NamedTempFile::new().unwrap();
    let before = peak_rss_kib();
    let line = format!(
        "echo $$ >{}; yes 'all work and no play'",
        pidfile.path().display()
    );
    let mut req = request(shell(&line));
    req.timeout = Duration::from_millis(1500);
    let r = run(&runner(), req).await;
    let growth_kib = peak_rss_kib().saturating_sub(before);
    eprintln!(
        "`yes` for 1.5 s: {} bytes written, {} kept, peak RSS growth {growth_kib} KiB",
        r.output_bytes,
        r.output.len()
    );
    assert_eq!(r.outcome, ScriptOutcome::TimedOut);
    assert!(r.duration < Duration::from_secs(4), "{:?}", r.duration);
    assert!(r.output_bytes > 64 * 1024, "{}", r.output_bytes);
    assert!(r.output.len() <= 64 * 1024);
    assert!(r.output.starts_with("[... "), "{:?}", &r.output[..40]);
    assert!(
        r.output
            .lines()
            .skip(1)
            .all(|l| "all work and no play".contains(l))
    );
    assert!(growth_kib < 32 * 1024, "peak RSS grew {growth_kib} KiB");
    let pgid: i32 = std::fs::read_to_string(pidfile.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(group_gone(pgid));
}

#[tokio::test]
async fn the_script_leads_its_own_process_group() {
    // Without this, every `group_gone` check above would pass vacuously.
    let r = run(
        &runner(),
        request(shell("echo $$; cut -d' ' -f5 /proc/$$/stat")),
    )
    .await;
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.output);
    assert_eq!(lines[0], lines[1], "pid and process group differ");
    assert_ne!(lines[1].parse::<u32>().unwrap(), std::process::id());
}

#[tokio::test]
async fn a_values_file_replaced_by_a_fifo_or_a_link_cannot_block_or_flood() {
    let cases = [
        (
            "rm \"$DRPLAN_OUTPUT\"; mkfifo \"$DRPLAN_OUTPUT\"",
            "could not be read (it is not a regular file)",
        ),
        (
            "rm \"$DRPLAN_OUTPUT\"; ln -s /dev/zero \"$DRPLAN_OUTPUT\"",
            "replaced by a symbolic link",
        ),
        ("rm \"$DRPLAN_OUTPUT\"", "was removed by the script"),
    ];
    for (line, expect) in cases {
        let r = run(&runner(), request(shell(line))).await;
        assert_eq!(r.outcome, ScriptOutcome::Succeeded, "{line}: {}", r.output);
        assert!(r.values.is_empty());
        assert!(
            r.duration < Duration::from_secs(2),
            "{line}: {:?}",
            r.duration
        );
        assert!(
            r.warnings.iter().any(|w| w.contains(expect)),
            "{line}: {:?}",
            r.warnings
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_do_not_hold_each_other_open() {
    // While long attempts run, short ones started alongside end at once
    // and see only their own output: no run's pipe leaks into another's
    // processes (it would keep it open until they exit).
    let runner = std::sync::Arc::new(runner());
    let mut handles = Vec::new();
    for i in 0..12 {
        let runner = std::sync::Arc::clone(&runner);
        handles.push(tokio::spawn(async move {
            let line = if i % 3 == 0 {
                format!("echo long {i}; sleep 3")
            } else {
                format!("echo short {i}")
            };
            let r = run(&runner, request(shell(&line))).await;
            (i, r)
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        assert_eq!(r.outcome, ScriptOutcome::Succeeded);
        assert!(r.warnings.is_empty(), "{i}: {:?}", r.warnings);
        if i % 3 == 0 {
            assert_eq!(r.output, format!("long {i}\n"));
        } else {
            assert_eq!(r.output, format!("short {i}\n"));
            assert!(r.duration < Duration::from_secs(2), "{i}: {:?}", r.duration);
        }
    }
}
