//! SIGKILL at random moments: every acknowledged event survives.
//!
//! A child process (this test binary, filtered to this test, with an env var
//! selecting the child role) appends events to a few jobs from several
//! writer threads through the group committer, printing `ACK <job> <first>
//! <last>` after each commit returned. The parent kills it with SIGKILL at a
//! random moment, reopens the store, and checks that every event ever
//! acknowledged is there with its exact payload, that every log is dense,
//! and that the store always reopens. The next child continues each log
//! where it ends.
//!
//! What this proves is page-cache durability (the process dying, not the
//! machine): after SIGKILL the kernel still writes out what sled handed it.
//! Power-loss durability rests on the `fdatasync` that `store_strace.rs`
//! proves.
//!
//! `DRPLAN_KILLS` sets the number of kills (default 30), `DRPLAN_KILL_SEED`
//! the random seed (printed, to replay a failure).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drplan_engine::store::commit::GroupCommitter;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write};

const CHILD_ENV: &str = "DRPLAN_STORE_CRASH_CHILD";
const WRITERS: usize = 4;

/// Deterministic, varied payloads, so the parent can check each byte.
fn payload_of(job: JobId, seq: u64) -> Vec<u8> {
    let pad = ((job.0 * 31 + seq * 17) % 300) as usize;
    format!("job{job}-seq{seq}-{}", "x".repeat(pad)).into_bytes()
}

fn child(dir: &Path) {
    let store = match SledStore::open(dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            println!("OPEN-ERROR {e}");
            std::process::exit(1);
        }
    };
    let committer = Arc::new(GroupCommitter::new(store.clone()));
    // Jobs are created durably before anything is appended to them; a kill
    // in between leaves fewer jobs, and the next child creates the rest.
    while store.jobs().unwrap().len() < WRITERS {
        let job = store.allocate_job_id().unwrap();
        committer
            .commit(vec![Write::JobMeta {
                job,
                payload: b"writer".to_vec(),
            }])
            .unwrap();
    }
    let jobs: Vec<JobId> = store.jobs().unwrap().into_iter().map(|(j, _)| j).collect();
    println!("READY");
    std::thread::scope(|scope| {
        for job in jobs.into_iter().take(WRITERS) {
            let committer = Arc::clone(&committer);
            let store = Arc::clone(&store);
            scope.spawn(move || {
                let mut next = store.last_seq(job).unwrap().map_or(0, |s| s + 1);
                // A cap so that a child the parent forgot can not run forever.
                for round in 0..20_000u64 {
                    let n = 1 + round % 3;
                    let batch = (next..next + n)
                        .map(|seq| Write::Event {
                            job,
                            seq,
                            payload: payload_of(job, seq),
                        })
                        .collect();
                    committer.commit(batch).unwrap();
                    println!("ACK {} {} {}", job.0, next, next + n - 1);
                    next += n;
                }
            });
        }
    });
}

/// xorshift64*: enough randomness for kill timing, replayable by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Reads the child's stdout to its end; only complete lines count (a line
/// cut by the kill was never fully written, so it acknowledged nothing).
/// Says on `ready` when the child has opened the store.
fn read_lines(stdout: std::process::ChildStdout, ready: mpsc::Sender<()>) -> Vec<String> {
    let mut reader = std::io::BufReader::new(stdout);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(_) if buf.ends_with(b"\n") => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                // libtest may print "test <name> ... " before our first line.
                if line.ends_with("READY") {
                    let _ = ready.send(());
                }
                lines.push(line);
            }
            Ok(_) => return lines,
        }
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_event() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let kills: u32 = std::env::var("DRPLAN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("DRPLAN_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("DRPLAN_KILL_SEED={seed} DRPLAN_KILLS={kills}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let exe = std::env::current_exe().unwrap();

    // The highest acknowledged seq per job, over all children so far.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut acked_events = 0u64;
    let mut kills_after_ready = 0;
    let mut kills_with_acks = 0;
    let started = Instant::now();
    for kill in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "sigkill_never_loses_an_acknowledged_event",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || read_lines(stdout, ready_tx));
        // One kill in four lands anywhere in start-up (opening, recovering,
        // creating jobs); the others while the writers append.
        if !rng.next().is_multiple_of(4) {
            let _ = ready_rx.recv_timeout(Duration::from_secs(20));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 200));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let lines = reader.join().unwrap();

        let mut this_run = 0;
        for line in &lines {
            if let Some(err) = line.strip_prefix("OPEN-ERROR ") {
                panic!("kill {kill}: the child could not open the store: {err}");
            }
            if line.ends_with("READY") {
                kills_after_ready += 1;
            }
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let nums: Vec<u64> = rest.split(' ').map(|n| n.parse().unwrap()).collect();
            let (job, first, last) = (nums[0], nums[1], nums[2]);
            let best = acked.entry(job).or_insert(0);
            *best = (*best).max(last);
            this_run += last - first + 1;
        }
        acked_events += this_run;
        if this_run > 0 {
            kills_with_acks += 1;
        }

        let store = SledStore::open(&dir)
            .unwrap_or_else(|e| panic!("kill {kill}: the store did not reopen: {e}"));
        for (job, max_acked) in &acked {
            let job = JobId(*job);
            let mut expected = 0u64;
            store
                .for_each_event(job, 0, &mut |seq, payload| {
                    assert_eq!(seq, expected, "kill {kill}: job {job}'s log has a gap");
                    assert!(
                        payload == payload_of(job, seq).as_slice(),
                        "kill {kill}: job {job} event {seq} has the wrong payload"
                    );
                    expected += 1;
                    Ok(())
                })
                .unwrap();
            assert!(
                expected > *max_acked,
                "kill {kill}: job {job} acknowledged event {max_acked}, but only {expected} \
                 event(s) survived"
            );
        }
    }
    let store = SledStore::open(&dir).unwrap();
    let total: u64 = acked
        .keys()
        .map(|j| store.last_seq(JobId(*j)).unwrap().map_or(0, |s| s + 1))
        .sum();
    eprintln!(
        "{kills} SIGKILLs in {:.1}s: {kills_after_ready} after the child was ready, \
         {kills_with_acks} with acknowledged commits; {acked_events} events acknowledged, \
         {total} in the store at the end, none lost",
        started.elapsed().as_secs_f64()
    );
    // The test must have exercised something: kills while appending.
    assert!(
        kills_with_acks > 0 && acked_events > 0,
        "no commit was ever acknowledged"
    );
}
