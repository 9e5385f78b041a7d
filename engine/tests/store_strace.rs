//! Proof, from the system calls themselves, that an acknowledged commit was
//! `fdatasync`ed: sled's own flush ends in `sync_file_range`, which does not
//! survive a power loss, so this is what stands between "acknowledged" and
//! "lost".
//!
//! The test runs this same binary (filtered to this test, with an env var
//! selecting the child role) under
//! `strace -f -e trace=fdatasync,fsync,sync_file_range,pwrite64,write`. The
//! child does group commits from several threads and prints `ACK <id>` after
//! each commit returned. Each batch carries a marker `MARK-<id>-` in a
//! generic record next to its events (the events themselves go to the log
//! LZ4-compressed, where the marker's bytes need not appear), so the parent
//! can find the `pwrite64` that put the batch into sled's log file
//! and check that an `fdatasync` of that file started after that write ended
//! and finished before the `ACK` was written; and that there was exactly one
//! `fdatasync` per group commit (plus one when the store was created), not
//! one per event.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use drplan_engine::store::commit::GroupCommitter;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write};

const CHILD_ENV: &str = "DRPLAN_STORE_STRACE_CHILD";
const THREADS: u64 = 8;
const COMMITS_PER_THREAD: u64 = 12;
const EVENTS_PER_BATCH: u64 = 3;

fn child(dir: &Path) {
    let store = Arc::new(SledStore::open(dir).unwrap());
    let jobs: Vec<JobId> = (0..THREADS)
        .map(|_| store.allocate_job_id().unwrap())
        .collect();
    let committer = Arc::new(GroupCommitter::new(store.clone()));
    std::thread::scope(|scope| {
        for (t, job) in jobs.iter().enumerate() {
            let committer = Arc::clone(&committer);
            scope.spawn(move || {
                for i in 0..COMMITS_PER_THREAD {
                    let id = t as u64 * 1000 + i;
                    let mut batch: Vec<Write> = (0..EVENTS_PER_BATCH)
                        .map(|k| Write::Event {
                            job: *job,
                            seq: i * EVENTS_PER_BATCH + k,
                            payload: format!("event {k} of batch {id:06}").into_bytes(),
                        })
                        .collect();
                    batch.push(Write::Blob {
                        key: format!("strace/{id:06}"),
                        payload: Some(format!("MARK-{id:06}-").into_bytes()),
                    });
                    committer.commit(batch).unwrap();
                    println!("ACK {id:06}");
                }
            });
        }
    });
    let stats = committer.stats();
    println!("STATS flushes={} batches={}", stats.flushes, stats.batches);
}

/// One system call as strace logged it (possibly over two lines when
/// another thread's call interrupted it).
#[derive(Debug)]
struct Call {
    name: String,
    fd_path: Option<Vec<u8>>,
    data: Vec<u8>,
    /// Line of the call's entry and of its return.
    start: usize,
    end: Option<usize>,
    ret: Option<String>,
}

/// Decodes strace's `-xx` strings (`\x41\x42`).
fn decode_hex(s: &str) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1] == b'x'
            && let (Some(hi), Some(lo)) = (hex(b[i + 2]), hex(b[i + 3]))
        {
            out.push(hi * 16 + lo);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The `<path>` of the first argument and the first quoted string.
fn parse_args(args: &str) -> (Option<Vec<u8>>, Vec<u8>) {
    // First argument `N<path>` when the call takes a descriptor.
    let fd_path = args
        .split_once('<')
        .filter(|(fd, _)| !fd.is_empty() && fd.chars().all(|c| c.is_ascii_digit()))
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(path, _)| decode_hex(path));
    let data = args
        .split_once('"')
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(s, _)| decode_hex(s))
        .unwrap_or_default();
    (fd_path, data)
}

fn parse_strace(log: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for (line_no, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            // `<... name resumed>...) = ret`
            if let Some(idx) = open.remove(pid) {
                calls[idx].end = Some(line_no);
                calls[idx].ret = resumed.rsplit_once(" = ").map(|(_, r)| r.to_string());
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue; // signals, exits
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let (fd_path, data) = parse_args(args);
        let unfinished = rest.ends_with("<unfinished ...>");
        calls.push(Call {
            name: name.to_string(),
            fd_path,
            data,
            start: line_no,
            end: (!unfinished).then_some(line_no),
            ret: if unfinished {
                None
            } else {
                rest.rsplit_once(" = ").map(|(_, r)| r.to_string())
            },
        });
        if unfinished {
            open.insert(pid.to_string(), calls.len() - 1);
        }
    }
    calls
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn strace_proves_fdatasync_before_every_ack() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let strace_ok = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        strace_ok,
        "strace is not installed: install strace (apt-get install -y strace) to run this \
         durability proof"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log_path = tmp.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-xx", "-s", "4000000", "-o"])
        .arg(&log_path)
        .args(["-e", "trace=fdatasync,fsync,sync_file_range,pwrite64,write"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "strace_proves_fdatasync_before_every_ack",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (flushes, batches) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STATS flushes="))
        .and_then(|rest| rest.split_once(" batches="))
        .map(|(f, b)| (f.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        .unwrap_or_else(|| panic!("child printed no stats: {stdout}"));
    assert_eq!(batches as u64, THREADS * COMMITS_PER_THREAD);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let calls = parse_strace(&log);
    let db = std::fs::canonicalize(dir.join("db")).unwrap();
    let db = db.as_os_str().as_encoded_bytes();
    let on_db = |c: &&Call| c.fd_path.as_deref() == Some(db);
    let pwrites: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "pwrite64")
        .filter(on_db)
        .collect();
    let syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "fdatasync")
        .filter(on_db)
        .collect();
    for s in &syncs {
        assert_eq!(s.ret.as_deref(), Some("0"), "a failed fdatasync: {s:?}");
    }
    let acks: Vec<(String, usize)> = calls
        .iter()
        .filter(|c| c.name == "write" && c.data.starts_with(b"ACK "))
        .map(|c| {
            let id = String::from_utf8_lossy(&c.data[4..]).trim().to_string();
            (id, c.start)
        })
        .collect();
    assert_eq!(acks.len(), batches, "one ACK per commit in the trace");

    for (id, ack_line) in &acks {
        let marker = format!("MARK-{id}-");
        let write = pwrites
            .iter()
            .find(|c| contains(&c.data, marker.as_bytes()))
            .unwrap_or_else(|| panic!("no pwrite64 to sled's log carried batch {id}"));
        let written = write.end.expect("the pwrite64 returned");
        let covered = syncs
            .iter()
            .any(|s| s.start > written && s.end.is_some_and(|e| e < *ack_line));
        assert!(
            covered,
            "batch {id}: written at strace line {written}, acknowledged at line {ack_line}, \
             but no fdatasync of the log ran in between"
        );
    }
    // One fdatasync per group commit, plus the one that made the new
    // store's format marker durable and the clean close's (which records
    // the store's generation in the marker); not one per event.
    assert_eq!(
        syncs.len(),
        flushes + 2,
        "fdatasync calls on the log vs group commits"
    );
    let events = THREADS * COMMITS_PER_THREAD * EVENTS_PER_BATCH;
    assert!((syncs.len() as u64) < events);
    let count = |name: &str| calls.iter().filter(|c| c.name == name).count();
    eprintln!(
        "strace: {} commits ({events} events) acknowledged after {} fdatasync(db) \
         ({flushes} group flushes + 1 at creation + 1 at close); {} pwrite64(db), {} sync_file_range, {} fsync",
        acks.len(),
        syncs.len(),
        pwrites.len(),
        count("sync_file_range"),
        count("fsync"),
    );
}

#[test]
fn the_strace_parser_reads_interrupted_calls() {
    let log = "\
100 pwrite64(5<\\x2f\\x64\\x62>, \"\\x41\\x42\", 2, 0 <unfinished ...>
101 write(1<\\x70>, \"\\x41\\x43\\x4b\\x20\\x31\\x0a\", 6) = 6
100 <... pwrite64 resumed>) = 2
100 fdatasync(5<\\x2f\\x64\\x62>) = 0
100 +++ exited with 0 +++
";
    let calls = parse_strace(log);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].name, "pwrite64");
    assert_eq!(calls[0].fd_path.as_deref(), Some(&b"/db"[..]));
    assert_eq!(calls[0].data, b"AB");
    assert_eq!((calls[0].start, calls[0].end), (0, Some(2)));
    assert_eq!(calls[0].ret.as_deref(), Some("2"));
    assert_eq!(calls[1].data, b"ACK 1\n");
    assert_eq!(calls[2].name, "fdatasync");
    assert_eq!(calls[2].ret.as_deref(), Some("0"));
}
