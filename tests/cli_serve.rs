//! `drplan serve` and the commands that reach it, through the built binary:
//! a server in the background, the other commands as separate processes.
//! While a server runs it holds the store, so every command that succeeds
//! here went through its API.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{all, cmd_in as cmd, drplan_in as drplan, expect_code, out, serial, shipped};

fn plan() -> String {
    support::plan().display().to_string()
}

fn fabric() -> String {
    shipped("fabric.yaml").display().to_string()
}

/// A `drplan serve` child, stopped (SIGTERM) when dropped.
struct Serve {
    child: Child,
    socket: PathBuf,
}

impl Serve {
    fn start(dir: &Path, extra: &[&str]) -> Serve {
        let fabric = fabric();
        let mut args = vec!["serve"];
        if !extra.contains(&"--fabric") {
            args.extend(["--fabric", fabric.as_str()]);
        }
        if !extra.contains(&"--time-scale") {
            args.extend(["--time-scale", "0.001"]);
        }
        args.extend_from_slice(extra);
        let child = cmd(dir, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let mut s = Serve {
            child,
            socket: dir.join("drplan.sock"),
        };
        s.wait_listening();
        s
    }

    /// Until the server printed its listening lines (it binds first).
    fn wait_listening(&mut self) {
        let stdout = self.child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on unix:") => break,
                Some(Ok(_)) => {}
                _ => {
                    let _ = self.child.kill();
                    let o = self.child.wait_with_output_ref();
                    panic!("serve did not start: {o}");
                }
            }
            assert!(Instant::now() < deadline, "serve takes too long to start");
        }
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(self.child.id() as i32, sig) };
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(15);
        let status = wait_bounded(&mut self.child);
        std::mem::forget(self);
        status
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitRef for Child {
    fn wait_with_output_ref(&mut self) -> String {
        let _ = self.wait();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }
}

fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn show_json(dir: &Path, job: &str) -> Value {
    let o = drplan(dir, &["show", job, "--format", "json"]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).expect("show prints JSON")
}

#[test]
fn a_drill_runs_through_the_server_from_other_processes() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let serve = Serve::start(&dir, &[]);
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&serve.socket), 0o600, "socket");

    let plan = plan();
    let run = drplan(&dir, &["run", &plan, "--failover", "test"]);
    expect_code(&run, 0);
    let text = out(&run);
    assert!(
        text.starts_with("job 1: test failover of plan orders\n"),
        "{text}"
    );
    assert!(
        text.contains("ok        database/vm/sql-01/create-test-vm"),
        "{text}"
    );
    assert!(
        text.contains("drplan ack 1 application/post/verify-health --by NAME"),
        "{text}"
    );

    let jobs = drplan(&dir, &["jobs"]);
    expect_code(&jobs, 0);
    assert!(
        out(&jobs).contains("waiting for operator"),
        "{}",
        out(&jobs)
    );

    let ack = drplan(
        &dir,
        &["ack", "1", "application/post/verify-health", "--by", "bob"],
    );
    expect_code(&ack, 0);
    assert!(
        out(&ack).contains("answered  application/post/verify-health done by bob"),
        "{}",
        out(&ack)
    );
    assert!(
        out(&ack).contains("drplan cleanup 1 --notes TEXT"),
        "{}",
        out(&ack)
    );

    // A typo'd step is caught before anything is sent (exit 2, a hint).
    let typo = drplan(&dir, &["retry", "1", "application/post/verify-helth"]);
    expect_code(&typo, 2);
    assert!(all(&typo).contains("did you mean"), "{}", all(&typo));
    // An action the engine refuses: exit 1, its reason.
    let refused = drplan(&dir, &["ack", "1", "application/post/verify-health"]);
    expect_code(&refused, 1);

    let cleanup = drplan(
        &dir,
        &["cleanup", "1", "--notes", "drill ok", "--by", "bob"],
    );
    expect_code(&cleanup, 0);
    assert!(
        out(&cleanup).contains("job 1 test completed"),
        "{}",
        out(&cleanup)
    );

    let v = show_json(&dir, "1");
    assert_eq!(v["status"], "test completed");
    assert_eq!(v["test"]["notes"], "drill ok");
    let unknown = drplan(&dir, &["show", "7"]);
    expect_code(&unknown, 2);
    assert!(
        all(&unknown).contains("job 7 does not exist"),
        "{}",
        all(&unknown)
    );

    let status = serve.stop();
    assert!(status.success(), "{status:?}");
    assert!(!dir.join("drplan.sock").exists(), "the socket is removed");
    // Without a server the commands host the engine themselves again.
    let jobs = drplan(&dir, &["jobs", "--format", "json"]);
    expect_code(&jobs, 0);
    let v: Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(v[0]["status"], "test-completed", "{v}");
}

#[test]
fn a_store_held_by_a_run_serves_other_terminals_and_a_stale_socket_confuses_no_one() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    // A run at realistic speed holds the store for minutes.
    let mut run = cmd(
        dir,
        &["run", &plan, "--failover", "test", "--time-scale", "1"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(dir.join("drplan.lock"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the run never took the store");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The run offers the local API while it holds the store: other
    // terminals' queries go through it (issue #15 item 7).
    let holder = format!("`drplan run` (pid {})", run.id());
    let jobs = drplan(dir, &["jobs"]);
    expect_code(&jobs, 0);
    assert!(out(&jobs).contains("in progress"), "{}", all(&jobs));
    let show = show_json(dir, "1");
    assert_eq!(show["status"], "in progress", "{show}");
    for args in [
        &["report", "1"][..],
        &["history", "orders"],
        &["plans"],
        &["estimate", &plan, "--failover", "test"],
    ] {
        let o = drplan(dir, args);
        expect_code(&o, 0);
    }
    // A new job is refused with what to do: the run ends with its own job.
    let diamond = shipped("diamond.yaml").display().to_string();
    let started = Instant::now();
    let other = drplan(dir, &["run", &diamond, "--failover", "test"]);
    expect_code(&other, 1);
    assert!(all(&other).contains(&holder), "{}", all(&other));
    assert!(
        all(&other).contains("wait for it to finish"),
        "{}",
        all(&other)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A command that needs the store itself says so, naming the holder.
    let vms = drplan(dir, &["vms", "--fabric", &fabric()]);
    expect_code(&vms, 2);
    assert!(
        all(&vms).contains(&format!("pid {}", run.id()))
            && all(&vms).contains("wait for that process to finish"),
        "{}",
        all(&vms)
    );
    // A server cannot start on it either.
    let o = drplan(dir, &["serve", "--fabric", &fabric()]);
    expect_code(&o, 2);
    assert!(all(&o).contains("in use"), "{}", all(&o));
    // An operator action from another terminal reaches the run's job (the
    // run may end right after: last, while it is sure to hold the store).
    let cancel = drplan(dir, &["cancel", "1", "--by", "carol"]);
    expect_code(&cancel, 0);
    assert!(out(&cancel).contains("cancel"), "{}", all(&cancel));
    let _ = run.kill();
    let _ = run.wait();

    // A socket file left behind (a killed server's): ignored by commands,
    // replaced by the next server.
    drop(std::os::unix::net::UnixListener::bind(dir.join("drplan.sock")).unwrap());
    let jobs = drplan(dir, &["jobs"]);
    expect_code(&jobs, 0);
    let serve = Serve::start(dir, &[]);
    let jobs = drplan(dir, &["jobs"]);
    expect_code(&jobs, 0);
    // A server that hangs (stopped with SIGSTOP): the command gives up on
    // it within its timeouts and says so, exit 2.
    serve.signal(19);
    let started = Instant::now();
    let o = drplan(dir, &["jobs"]);
    expect_code(&o, 2);
    assert!(all(&o).contains("does not answer"), "{}", all(&o));
    assert!(
        all(&o).contains(&format!("pid {}", serve.child.id())),
        "{}",
        all(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    serve.signal(18);
    assert!(serve.stop().success());
}

#[test]
fn a_server_killed_mid_job_resumes_it_when_started_again() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plan = plan();
    // Slow enough (time scale 0.05: a VM operation takes seconds) to be
    // killed mid-job.
    let serve = Serve::start(dir, &["--time-scale", "0.05"]);
    let run = drplan(
        dir,
        &[
            "run",
            &plan,
            "--failover",
            "planned",
            "--detach",
            "--format",
            "json",
        ],
    );
    expect_code(&run, 0);
    // Wait until some step finished and some is still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = show_json(dir, "1");
        let steps = v["steps"].as_array().unwrap();
        let done = steps.iter().filter(|s| s["state"] == "succeeded").count();
        if done >= 1 {
            assert_eq!(v["status"], "in progress", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "no step finished: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    serve.kill9();
    assert!(
        dir.join("drplan.sock").exists(),
        "a killed server leaves its socket"
    );

    let serve = Serve::start(dir, &[]);
    // `resume` through the restarted server follows the job to its manual
    // step; then the operator answers and it finishes.
    let resumed = drplan(dir, &["resume", "1"]);
    expect_code(&resumed, 0);
    assert!(
        out(&resumed).contains("drplan ack 1 application/post/verify-health"),
        "{}",
        out(&resumed)
    );
    let ack = drplan(
        dir,
        &["ack", "1", "application/post/verify-health", "--by", "bob"],
    );
    expect_code(&ack, 0);
    assert!(out(&ack).contains("job 1 succeeded"), "{}", out(&ack));
    let v = show_json(dir, "1");
    assert_eq!(v["status"], "succeeded");
    for s in v["steps"].as_array().unwrap() {
        assert!(
            ["succeeded", "skipped"].contains(&s["state"].as_str().unwrap()),
            "{s}"
        );
    }
    assert!(serve.stop().success());
}

#[test]
fn tcp_is_loopback_only_with_a_token_that_scripts_never_see() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token_file = tmp.path().join("token");
    let token_s = token_file.display().to_string();

    // Not loopback: refused without --allow-remote, before anything opens.
    let o = drplan(
        &dir,
        &[
            "serve",
            "--fabric",
            &fabric(),
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            &token_s,
        ],
    );
    expect_code(&o, 2);
    assert!(all(&o).contains("--allow-remote"), "{}", all(&o));
    assert!(!token_file.exists());
    // --listen without a token file: a usage error.
    let o = drplan(
        &dir,
        &["serve", "--fabric", &fabric(), "--listen", "127.0.0.1:0"],
    );
    expect_code(&o, 2);

    // A plan whose script writes its whole environment to a file.
    let env_out = tmp.path().join("script-env.txt");
    let plan_file = tmp.path().join("env-plan.yaml");
    std::fs::write(
        &plan_file,
        format!(
            "drplan: 1\nname: envdump\nsource: primary-vmm/gold\ntarget: secondary-vmm/gold-dr\n\
             fabric: {}\ngroups:\n  - name: web\n    vms: [web-01]\n    pre:\n      - name: dump\n        \
             shell: env > {}\n",
            fabric(),
            env_out.display()
        ),
    )
    .unwrap();

    let serve = Serve::start(&dir, &["--listen", "127.0.0.1:0", "--token-file", &token_s]);
    assert_eq!(mode(&token_file), 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);

    let run = drplan(
        &dir,
        &["run", plan_file.to_str().unwrap(), "--failover", "test"],
    );
    expect_code(&run, 0);
    let env = std::fs::read_to_string(&env_out).expect("the script ran");
    assert!(env.contains("DRPLAN_JOB_ID=1"), "{env}");
    assert!(
        !env.contains(&token),
        "the token leaked into a script's environment:\n{env}"
    );

    // Refusals over TCP, seen with a raw client.
    let port = tcp_port(&serve);
    // At most `n` answer lines, or fewer if the server closes first.
    let ask = |line: &str, n: usize| -> Vec<Value> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut got = Vec::new();
        for l in BufReader::new(s).lines().take(n) {
            match l {
                Ok(l) => got.push(serde_json::from_str(&l).unwrap()),
                Err(_) => break,
            }
        }
        got
    };
    let no_token = ask("{\"v\":1,\"id\":1,\"op\":\"jobs\"}\n", 2);
    assert_eq!(
        no_token.len(),
        1,
        "answered once, then closed: {no_token:?}"
    );
    assert_eq!(no_token[0]["error"]["code"], "unauthorized");
    let wrong = ask("{\"v\":1,\"id\":1,\"op\":\"jobs\",\"token\":\"nope\"}\n", 2);
    assert_eq!(wrong[0]["error"]["code"], "unauthorized");
    assert!(
        wrong[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong token")
    );
    let right = ask(
        &format!("{{\"v\":1,\"id\":1,\"op\":\"jobs\",\"token\":\"{token}\"}}\n"),
        1,
    );
    assert_eq!(
        right[0]["ok"]["jobs"][0]["plan_name"], "envdump",
        "{right:?}"
    );

    assert!(serve.stop().success());
    assert!(!token_file.exists(), "the token file goes with the server");
}

/// The TCP port a server listens on, from the lines it printed.
fn tcp_port(serve: &Serve) -> u16 {
    // The listening lines were consumed at start; find the port from the
    // process's sockets in /proc instead (Linux).
    let pid = serve.child.id();
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let s = l.display().to_string();
            s.strip_prefix("socket:[")
                .map(|r| r.trim_end_matches(']').to_string())
        })
        .collect();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    for line in tcp.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // local_address, st == 0A (LISTEN), inode
        if cols.len() > 9 && cols[3] == "0A" && inodes.contains(&cols[9].to_string()) {
            let port = cols[1].rsplit(':').next().unwrap();
            return u16::from_str_radix(port, 16).unwrap();
        }
    }
    panic!("the server listens on no TCP port");
}

#[test]
fn another_user_is_refused_even_when_it_can_reach_the_socket() {
    let _g = serial();
    // SAFETY: geteuid cannot fail.
    if unsafe { geteuid() } != 0 {
        eprintln!(
            "not root: cannot run a client as another user here; covered by the uid check in api::server"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let serve = Serve::start(&dir, &[]);
    // Misconfigure on purpose: open the directory, the socket and the path
    // to it to everyone, so only the peer check stands in the way.
    for p in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&serve.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The build's binary may sit under a directory only its owner can
    // enter (a checkout in a `mktemp -d`): the other user runs a copy.
    let exe = tmp.path().join("drplan");
    std::fs::copy(support::bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = {
        use std::os::unix::process::CommandExt;
        let mut c = support::cmd_of(&exe, &["jobs", "--data-dir"]);
        c.arg(&dir).uid(65534).gid(65534);
        support::output(c)
    };
    expect_code(&o, 2);
    let text = all(&o);
    assert!(text.contains("refused this client"), "{text}");
    assert!(text.contains("user id 65534"), "{text}");
    // The owner is still served.
    let mine = drplan(&dir, &["jobs"]);
    expect_code(&mine, 0);
    assert!(serve.stop().success());
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// The tests' command runner fails a command that never ends (here a
/// server, which runs until stopped) instead of waiting with it: a hang
/// must fail its test, not use up CI's time limit. It kills the command and
/// shows what it printed.
#[test]
fn a_command_that_hangs_fails_its_test_and_is_killed() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let fabric = fabric();
    let caught = std::panic::catch_unwind(|| {
        let serve = cmd(tmp.path(), &["serve", "--fabric", &fabric]);
        support::output_within(serve, Duration::from_secs(2))
    });
    let took = started.elapsed();
    let msg = match caught {
        Ok(o) => panic!("the server ended by itself: {}", all(&o)),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".into()),
    };
    assert!(msg.contains("did not finish within 2s"), "{msg}");
    assert!(
        msg.contains("serve"),
        "the message names the command: {msg}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // Killed: the store is free again at once.
    let jobs = drplan(tmp.path(), &["jobs"]);
    expect_code(&jobs, 0);
}

/// 50 one-VM plans of the large inventory, each a plan file in `dir`.
fn one_vm_plans(dir: &Path, n: usize) -> Vec<String> {
    let fabric = shipped("large-fabric.yaml").display().to_string();
    (1..=n)
        .map(|i| {
            let p = dir.join(format!("one-{i}.yaml"));
            std::fs::write(
                &p,
                format!(
                    "drplan: 1\nname: one-{i}\nsource: primary-vmm/bulk\n\
                     target: secondary-vmm/bulk-dr\nfabric: {fabric}\ngroups:\n  - name: g\n    \
                     vms: [bulk-{i:05}]\n"
                ),
            )
            .unwrap();
            p.display().to_string()
        })
        .collect()
}

#[test]
fn fifty_runs_started_at_once_against_one_server_all_start_and_finish() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let large = shipped("large-fabric.yaml").display().to_string();
    let serve = Serve::start(&dir, &["--fabric", &large]);
    let plans = one_vm_plans(tmp.path(), 50);
    let mut runs: Vec<Child> = plans
        .iter()
        .map(|p| {
            cmd(&dir, &["run", p, "--failover", "planned"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    for (i, r) in runs.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = r.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "run {i} did not finish in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = r.wait_with_output_ref();
        assert!(status.success(), "run {i}: {status:?}: {err}");
    }
    let jobs = drplan(&dir, &["jobs", "--format", "json"]);
    expect_code(&jobs, 0);
    let v: Value = serde_json::from_slice(&jobs.stdout).unwrap();
    let all_jobs = v.as_array().unwrap();
    assert_eq!(all_jobs.len(), 50, "{v}");
    assert!(all_jobs.iter().all(|j| j["status"] == "succeeded"), "{v}");
    assert!(serve.stop().success());
}

#[test]
fn idle_tcp_connections_never_lock_the_owner_out() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let token_file = tmp.path().join("token");
    let token_s = token_file.display().to_string();
    let serve = Serve::start(&dir, &["--listen", "127.0.0.1:0", "--token-file", &token_s]);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let port = tcp_port(&serve);
    // 70 connections that never say anything.
    let idle: Vec<std::net::TcpStream> = (0..70)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // The owner on the Unix socket, at once.
    let started = Instant::now();
    let jobs = drplan(&dir, &["jobs"]);
    expect_code(&jobs, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The owner over TCP, with the token, at once too.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!("{{\"v\":1,\"id\":1,\"op\":\"hello\",\"token\":\"{token}\"}}\n").as_bytes(),
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"]["server"], "drplan", "{v}");
    // The idle ones are told why and closed at their deadline.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&mut first).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("within"),
        "{v}"
    );
    drop(idle);
    assert!(serve.stop().success());
}

#[test]
fn run_detach_without_a_server_starts_one_that_runs_the_job() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let plans = one_vm_plans(tmp.path(), 1);
    let o = drplan(
        &dir,
        &[
            "run",
            &plans[0],
            "--failover",
            "planned",
            "--detach",
            "--time-scale",
            "0.001",
        ],
    );
    expect_code(&o, 0);
    assert!(all(&o).contains("started `drplan serve`"), "{}", all(&o));
    let holder = std::fs::read_to_string(dir.join("drplan.lock")).unwrap();
    let pid: i32 = holder
        .trim()
        .strip_prefix("pid ")
        .and_then(|r| r.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("lock holder: {holder}"));
    assert!(holder.contains("serve"), "{holder}");
    // The server runs the job to its end, while this terminal does nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = show_json(&dir, "1");
        if v["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the detached job never ran: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on the server this test started.
    unsafe { libc_kill(pid, 15) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.join("drplan.sock").exists() {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for a server to exit on its own; its exit status and
/// what it wrote on stderr.
fn exits_by_itself(s: &mut Serve, within: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = s.child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = s.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (status, err);
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop by itself"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_stops_when_idle_and_when_its_data_directory_is_deleted() {
    let _g = serial();
    // `--exit-when-idle` (what `run --detach` starts its server with): a
    // drill waiting for its operator keeps it up; once the job ended and
    // nothing is unfinished for the limit, it stops, exit 0.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idle");
    let mut s = Serve::start(&dir, &["--exit-when-idle", "1s"]);
    let run = drplan(&dir, &["run", &plan(), "--failover", "test", "--no-prompt"]);
    expect_code(&run, 0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        s.child.try_wait().expect("wait").is_none(),
        "a server with an unfinished job must stay up"
    );
    let cancel = drplan(&dir, &["cancel", "1", "--by", "t", "-q"]);
    expect_code(&cancel, 0);
    let cleanup = drplan(&dir, &["cleanup", "1", "--notes", "done"]);
    expect_code(&cleanup, 0);
    let (status, err) = exits_by_itself(&mut s, Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("no unfinished job"), "{err}");

    // Any server: its data directory deleted, nothing is left to serve.
    let dir = tmp.path().join("gone");
    let mut s = Serve::start(&dir, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    let (status, err) = exits_by_itself(&mut s, Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("data directory was deleted"), "{err}");
}
