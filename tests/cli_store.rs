//! `drplan store check | export | import`, and every command on a damaged
//! or foreign data directory, end to end through the built binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write};

mod support;
use support::{all, drplan_in as drplan, expect_code, serial, shipped};

fn plan(name: &str) -> String {
    shipped(name).to_str().unwrap().to_string()
}

/// A store with three jobs of several kinds: a planned failover that
/// succeeded (job 1), its commit follow-up (job 2, not started), and a
/// test failover waiting for its manual step (job 3, unfinished).
fn populated(dir: &Path) {
    let fast = ["--time-scale", "0.001"];
    let o = drplan(
        dir,
        &[
            &["run", &plan("diamond.yaml"), "--failover", "planned"][..],
            &fast,
        ]
        .concat(),
    );
    expect_code(&o, 0);
    let o = drplan(
        dir,
        &[
            &["run", &plan("three-tier.yaml"), "--failover", "test"][..],
            &fast,
        ]
        .concat(),
    );
    expect_code(&o, 0);
    assert!(all(&o).contains("drplan ack 3 application/post/verify-health"));
}

fn export(dir: &Path, file: &Path) -> Output {
    drplan(dir, &["store", "export", "-o", file.to_str().unwrap()])
}

#[test]
fn export_import_round_trip_is_identical_and_the_unfinished_job_resumes() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("restored/b");
    populated(&a);

    let check = drplan(&a, &["store", "check"]);
    expect_code(&check, 0);
    assert!(
        all(&check).contains("ok: no problem found"),
        "{}",
        all(&check)
    );

    let first = tmp.path().join("first.jsonl");
    expect_code(&export(&a, &first), 0);
    let o = drplan(&b, &["store", "import", first.to_str().unwrap()]);
    expect_code(&o, 0);
    assert!(all(&o).contains("restored"), "{}", all(&o));
    // No temporary directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(b.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("b")]);

    let second = tmp.path().join("second.jsonl");
    expect_code(&export(&b, &second), 0);
    let (x, y) = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    assert!(x == y, "export → import → export differs");
    let text = String::from_utf8(x).unwrap();
    assert!(text.starts_with("{\"drplan_export\":2,"), "{text:.200}");
    assert!(text.contains("\"t\":\"event\""));
    assert!(text.lines().last().unwrap().contains("\"blake3\""));

    expect_code(&drplan(&b, &["store", "check"]), 0);
    for args in [
        &["jobs", "--format", "json"][..],
        &["show", "1", "--format", "json"],
        &["show", "2", "--format", "json"],
        &["show", "3", "--format", "json"],
    ] {
        let (x, y) = (drplan(&a, args), drplan(&b, args));
        expect_code(&x, 0);
        // An unfinished job's durations run up to "now", which moved
        // between the two reads: everything else must be identical.
        let (vx, vy) = (timeless(&x.stdout), timeless(&y.stdout));
        assert_eq!(vx, vy, "`{}` differs", args.join(" "));
    }

    // The unfinished test failover continues on the restored store.
    let o = drplan(
        &b,
        &[
            "ack",
            "3",
            "application/post/verify-health",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 0);
    assert!(
        all(&o).contains("drplan cleanup 3"),
        "the test failover should be up:\n{}",
        all(&o)
    );
    let o = drplan(
        &b,
        &[
            "cleanup",
            "3",
            "--notes",
            "drill ok",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 0);
    assert!(all(&o).contains("job 3 test completed"), "{}", all(&o));
    // The original is untouched, and new jobs never reuse an id.
    let show = drplan(&a, &["show", "3", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "waiting for operator", "{v}");
    let o = drplan(
        &b,
        &[
            "run",
            &plan("three-tier.yaml"),
            "--failover",
            "test",
            "--detach",
        ],
    );
    expect_code(&o, 0);
    assert!(all(&o).contains("job 4"), "{}", all(&o));
}

#[test]
fn export_of_a_store_in_use_says_so_without_waiting() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    populated(&dir);
    let held = SledStore::open(&dir).expect("the store opens");
    let start = std::time::Instant::now();
    let file = tmp.path().join("x.jsonl");
    for o in [export(&dir, &file), drplan(&dir, &["store", "check"])] {
        expect_code(&o, 2);
        assert!(all(&o).contains("in use"), "{}", all(&o));
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    assert!(!file.exists(), "no partial export is left");
    drop(held);
    expect_code(&export(&dir, &file), 0);
}

#[test]
fn import_refuses_a_non_empty_target_and_damaged_or_newer_files() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    populated(&a);
    let file = tmp.path().join("a.jsonl");
    expect_code(&export(&a, &file), 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let import = |name: &str, content: &str| -> (Output, PathBuf) {
        let f = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&f, content).unwrap();
        let target = tmp.path().join(format!("target-{name}"));
        (
            drplan(&target, &["store", "import", f.to_str().unwrap()]),
            target,
        )
    };

    // A non-empty target: never overwritten.
    let o = drplan(&a, &["store", "import", file.to_str().unwrap()]);
    expect_code(&o, 2);
    assert!(all(&o).contains("not empty"), "{}", all(&o));

    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..lines.len() / 2].join("\n") + "\n";
    let cases: Vec<(&str, String, i32, &str)> = vec![
        ("truncated", cut, 1, "truncated"),
        (
            "cut-mid-line",
            text[..text.len() - 10].to_string(),
            1,
            "truncated",
        ),
        (
            "edited",
            text.replacen("\"plan_name\":\"shop\"", "\"plan_name\":\"shoq\"", 1),
            1,
            "checksum",
        ),
        (
            "garbage-line",
            {
                let mut l = lines.clone();
                l[5] = "{not json";
                l.join("\n") + "\n"
            },
            1,
            "line 6",
        ),
        (
            "newer",
            text.replacen("\"drplan_export\":2", "\"drplan_export\":7", 1),
            2,
            "upgrade drplan",
        ),
        ("empty", String::new(), 1, "empty"),
    ];
    for (name, content, code, says) in cases {
        let (o, target) = import(name, &content);
        assert_eq!(o.status.code(), Some(code), "{name}:\n{}", all(&o));
        assert!(
            all(&o).to_lowercase().contains(says),
            "{name}: expected `{says}` in:\n{}",
            all(&o)
        );
        assert!(!all(&o).contains("panicked"), "{name}: {}", all(&o));
        assert!(!target.exists(), "{name}: a failed import left {target:?}");
    }
    // A file that does not exist.
    let o = drplan(
        &tmp.path().join("t"),
        &["store", "import", "/nonexistent/x.jsonl"],
    );
    expect_code(&o, 2);
}

/// Every command that reads the data directory, with its arguments.
fn every_command() -> Vec<Vec<String>> {
    let p = plan("three-tier.yaml");
    [
        &["jobs"][..],
        &["show", "1"],
        &["resume"],
        &["resume", "3"],
        &["ack", "3", "application/post/verify-health"],
        &["retry", "1", "frontend/vm/front-01/start-replica"],
        &["skip", "1", "frontend/vm/front-01/start-replica"],
        &["cancel", "3"],
        &["cleanup", "3", "--notes", "x"],
        &["commit", "1"],
        &["reprotect", "1"],
        &["rollback", "1"],
        &["change-recovery-point", "1", "--recovery-point", "latest"],
        &["failback", "1"],
        &["run", &p, "--failover", "test"],
        &["store", "check"],
        &["store", "export"],
    ]
    .iter()
    .map(|a| a.iter().map(|s| s.to_string()).collect())
    .collect()
}

/// Runs every command on a damaged copy of `pristine` and asserts each
/// fails with a clear message (no panic, no usage error, non-zero exit).
fn every_command_refuses(pristine: &Path, name: &str, damage: impl Fn(&Path), says: &[&str]) {
    every_command_but(pristine, name, &[], damage, says)
}

/// [`every_command_refuses`], except the commands `fine` (prefixes) that
/// rightly succeed.
fn every_command_but(
    pristine: &Path,
    name: &str,
    fine: &[&str],
    damage: impl Fn(&Path),
    says: &[&str],
) {
    for args in every_command() {
        if fine.iter().any(|f| args.join(" ").starts_with(f)) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        copy_dir(pristine, &dir);
        damage(&dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = drplan(&dir, &args);
        let text = all(&o);
        let code = o.status.code();
        assert!(
            matches!(code, Some(1 | 2)),
            "{name}: `drplan {}` exited {code:?}:\n{text}",
            args.join(" ")
        );
        assert!(
            !text.contains("panicked") && !text.contains("Usage:"),
            "{name}: `drplan {}`:\n{text}",
            args.join(" ")
        );
        assert!(
            says.iter().any(|s| text.contains(s)),
            "{name}: `drplan {}` should say one of {says:?}:\n{text}",
            args.join(" ")
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write as _};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn every_command_refuses_a_damaged_or_foreign_store_clearly() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    populated(&pristine);
    let damaged = ["corrupt store", "damaged"];

    every_command_refuses(
        &pristine,
        "truncated log",
        |d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("db"))
                .unwrap();
            f.set_len(4000).unwrap();
        },
        &damaged,
    );
    // Garbage in the middle of the log, with sled's page-table snapshot
    // gone too (it would otherwise notice): only the generation drplan
    // recorded at its last clean close tells this from a shorter log.
    every_command_refuses(
        &pristine,
        "garbage in the middle",
        |d| {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("snap.")
                {
                    std::fs::remove_file(p).unwrap();
                }
            }
            overwrite(&d.join("db"), 20_000, &[0xde; 64]);
        },
        &damaged,
    );
    every_command_refuses(
        &pristine,
        "deleted log",
        |d| std::fs::remove_file(d.join("db")).unwrap(),
        &damaged,
    );
    every_command_refuses(
        &pristine,
        "newer store format",
        |d| {
            // What a newer drplan would have written.
            let db = sled::open(d).unwrap();
            db.insert(b"meta/format", &7u16.to_be_bytes()).unwrap();
            db.flush().unwrap();
        },
        &["upgrade drplan"],
    );
    // Damage local to job 3: showing job 1 and backing the store up (to
    // repair it) still work; everything that opens the jobs refuses.
    every_command_but(
        &pristine,
        "a record that does not decode",
        &["show 1", "store export"],
        |d| {
            let s = SledStore::open(d).unwrap();
            s.apply(&[Write::JobMeta {
                job: JobId(3),
                payload: b"DRPR\x00\x01{\"id\":3,\"plan_name\":".to_vec(),
            }])
            .unwrap();
            s.flush().unwrap();
        },
        &["job 3", "damaged"],
    );
}

#[test]
fn check_reports_each_problem_with_its_record() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    populated(&dir);
    {
        let s = SledStore::open(&dir).unwrap();
        s.apply(&[
            Write::Event {
                job: JobId(1),
                seq: s.last_seq(JobId(1)).unwrap().unwrap() + 1,
                payload: b"DRPR\x00\x01{\"type\":\"nonsense\"}".to_vec(),
            },
            // A timer of a finished job would fire for nothing.
            Write::ArmTimer {
                due_ms: 5,
                job: JobId(1),
                timer: 1,
            },
        ])
        .unwrap();
        s.flush().unwrap();
    }
    let o = drplan(&dir, &["store", "check"]);
    expect_code(&o, 1);
    let text = all(&o);
    assert!(text.contains("error: job 1 event"), "{text}");
    assert!(text.contains("timer 0x1 of job 1"), "{text}");
    let o = drplan(&dir, &["store", "check", "--format", "json"]);
    expect_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["job"] == 1), "{v}");
    assert!(problems.len() >= 2, "{v}");
}

#[test]
fn a_damaged_plan_model_is_an_error_not_a_panic() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A test failover (job 4) whose stored plan model names a group that
    // does not exist (compiling it used to panic).
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("engine/tests/fuzz_corpus/journal/plan-model-after-out-of-range.jsonl");
    expect_code(
        &drplan(&dir, &["store", "import", file.to_str().unwrap()]),
        0,
    );
    for args in [
        &["show", "4"][..],
        &["resume", "4"],
        &["ack", "4", "application/post/verify-health"],
        &["cancel", "4"],
        &["store", "check"],
    ] {
        let o = drplan(&dir, args);
        let text = all(&o);
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "`{}`: {text}",
            args.join(" ")
        );
        assert!(!text.contains("panicked"), "`{}`: {text}", args.join(" "));
        assert!(
            text.contains("depends on group index 99"),
            "`{}`: {text}",
            args.join(" ")
        );
    }
}

/// The JSON output without the durations measured up to the time of reading.
fn timeless(out: &[u8]) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("duration_ms");
                m.remove("critical_path_ms");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(out).expect("JSON output");
    strip(&mut v);
    v
}

/// Every file under `dir` (not into `scripts/`, whose files are the
/// scripts' own), with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path(), mode, meta.is_dir()));
        if meta.is_dir() && e.file_name() != "scripts" {
            modes(&e.path(), out);
        }
    }
}

#[test]
fn files_inside_the_data_directory_are_created_private() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // The test runs with the usual umask (022): drplan makes them private.
    populated(&dir);
    let mut found = Vec::new();
    modes(&dir, &mut found);
    for name in [
        "db",
        "conf",
        "drplan.lock",
        "drplan.store",
        "sim-state.json",
    ] {
        assert!(
            found.iter().any(|(p, _, _)| p.file_name().unwrap() == name),
            "{name} missing: {found:?}"
        );
    }
    for (path, mode, is_dir) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
}

#[test]
fn a_read_only_data_directory_still_serves_reading_commands() {
    let _g = serial();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("not root: cannot run a command as another user here");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("data");
    populated(&dir);
    // The store belongs to `nobody` and nothing in it is writable: root
    // ignores permissions, so the commands run as `nobody`, for whom the
    // open fails the way read-only media make it fail.
    let mut all_paths = Vec::new();
    modes(&dir, &mut all_paths);
    all_paths.push((dir.clone(), 0, true));
    for (p, _, is_dir) in &all_paths {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        let mode = if *is_dir { 0o500 } else { 0o400 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let exe = tmp.path().join("drplan");
    std::fs::copy(support::bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut c = support::cmd_of(&exe, args);
        c.arg("--data-dir").arg(&dir).uid(65534).gid(65534);
        c.env("HOME", "/tmp");
        support::output(c)
    };
    let before = std::fs::read(dir.join("db")).unwrap();
    let jobs = as_nobody(&["jobs"]);
    expect_code(&jobs, 0);
    assert!(
        all(&jobs).contains("waiting for operator"),
        "{}",
        all(&jobs)
    );
    let show = as_nobody(&["show", "3"]);
    expect_code(&show, 0);
    assert!(all(&show).contains("test failover"), "{}", all(&show));
    let report = as_nobody(&["report", "1"]);
    expect_code(&report, 0);
    let check = as_nobody(&["store", "check"]);
    expect_code(&check, 0);
    assert!(all(&check).contains("no problem found"), "{}", all(&check));
    // A command that changes jobs says why it cannot.
    let ack = as_nobody(&["ack", "3", "application/post/verify-health"]);
    expect_code(&ack, 2);
    assert!(all(&ack).contains("cannot be written"), "{}", all(&ack));
    // Nothing changed in place.
    assert_eq!(std::fs::read(dir.join("db")).unwrap(), before);
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
