//! Helpers shared by the script runner tests: requests with a realistic
//! context, a runner with short grace periods, and process-group checks.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drplan_engine::plan::model::{Command, Direction, FailoverKind};
use drplan_engine::script::{
    RunnerConfig, ScriptContext, ScriptNic, ScriptRequest, ScriptResult, ScriptRunner, ScriptVm,
};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripts")
}

pub fn argv(args: &[&str]) -> Command {
    Command::Argv(args.iter().map(|s| s.to_string()).collect())
}

pub fn shell(line: &str) -> Command {
    Command::Shell(line.to_string())
}

pub fn context() -> ScriptContext {
    ScriptContext {
        job_id: "42".to_string(),
        plan: "shop".to_string(),
        kind: FailoverKind::Planned,
        direction: Direction::Forward,
        group: Some("web".to_string()),
        step: "update-dns".to_string(),
        attempt: 1,
        idempotency_key: "42/web/post/update-dns/1".to_string(),
        vms: vec![
            ScriptVm {
                name: "web-01".to_string(),
                nics: vec![ScriptNic {
                    source_network: "prod".to_string(),
                    network: Some("prod-dr".to_string()),
                    subnet: Some("web".to_string()),
                    ip: Some("10.2.0.11".to_string()),
                }],
            },
            ScriptVm {
                name: "web-02".to_string(),
                nics: vec![ScriptNic {
                    source_network: "prod".to_string(),
                    network: None,
                    subnet: None,
                    ip: None,
                }],
            },
        ],
        values: BTreeMap::new(),
    }
}

pub fn request(command: Command) -> ScriptRequest {
    ScriptRequest {
        command,
        cwd: fixtures(),
        timeout: Duration::from_secs(20),
        env: BTreeMap::new(),
        context: context(),
    }
}

/// A runner with a short grace and drain so hostile tests finish quickly.
pub fn runner() -> ScriptRunner {
    ScriptRunner::new(RunnerConfig {
        kill_grace: Duration::from_millis(500),
        drain_timeout: Duration::from_millis(300),
        ..RunnerConfig::from_process_env()
    })
}

pub async fn run(runner: &ScriptRunner, req: ScriptRequest) -> ScriptResult {
    runner.run(req, std::future::pending()).await
}

/// Orphans of the script's group are re-parented to this process rather
/// than to PID 1, which in a container may never reap them: then "no
/// process of the group remains" can be checked exactly (a zombie still
/// counts as a member for `kill`).
pub fn become_subreaper() {
    // SAFETY: plain prctl on this process.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl: {}", std::io::Error::last_os_error());
}

/// True when no process at all is left in group `pgid` (ESRCH).
pub fn group_gone(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The number after `word ` in the output (e.g. `pgid 1234`).
pub fn number_after(output: &str, word: &str) -> i32 {
    output
        .lines()
        .find_map(|l| l.strip_prefix(word)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{word}` line in output:\n{output}"))
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
