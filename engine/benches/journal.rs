//! Journal benchmarks: rebuilding a long job, and what a durable transition
//! costs next to the machine's raw `fdatasync` rate.
//!
//! Run: `cargo bench -p drplan-engine --bench journal`. Figures and the
//! machine they came from are in docs/journal.md.
//!
//! - `fdatasync/raw_256B`: the floor, measured in the same run: append 256
//!   bytes to a file and `fdatasync`, per record.
//! - `store/durable_append_256B`: the store alone (apply one event, flush):
//!   the ceiling for one job's durable transitions.
//! - `reopen/100k_events/{snapshots,no_snapshots}`: open a SledStore and
//!   `Journal::open` a job of 100,000 events (a planned failover whose
//!   flaky script an operator retried 50,000 times), with a snapshot every
//!   1,024 events and without any.
//! - `reopen/100k_events/store_open_only`: `SledStore::open` alone on the
//!   snapshotted store, to show the store's share.
//! - `reopen/25k_vms/snapshots`: the same for a planned failover over
//!   25,000 VMs (`generate::large_plan(1250, 20, 7)`, ~100,000 events) where
//!   state and plan are large.
//! - `rebuild_in_memory/100k_events/{snapshots,no_snapshots}`: the
//!   journal's own share (decode, replay) on the in-memory store.
//! - `durable/1_job`: one job, one durable commit (one fdatasync) per event.
//! - `durable/64_jobs`: 64 jobs on 64 threads through group commit.
//! - `chain/1000_steps`: a linear chain of 1,000 script steps run to the
//!   end, every transition durable; throughput in steps/s.

mod common;
use common::raw_fdatasync;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drplan_engine::core::{Effect, JobEvent, OperatorAction, Outcome};
use drplan_engine::journal::{Journal, JournalOptions, SubmitRequest};
use drplan_engine::plan::compile::Operation;
use drplan_engine::plan::generate;
use drplan_engine::plan::model::{
    CloudRef, Command, CommitPolicy, FailoverKind, Group, Plan, Step, StepAction, TestSettings,
    When,
};
use drplan_engine::store::mem::MemStore;
use drplan_engine::store::on_flush::OnFlush;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write};

const T0: u64 = 1_700_000_000_000;

fn script(name: &str) -> Step {
    Step {
        name: name.into(),
        action: StepAction::Script {
            command: Command::Shell("true".into()),
            timeout: Duration::from_secs(60),
            retries: 0,
            retry_delay: Duration::from_secs(10),
            env: Default::default(),
        },
        when: When::default(),
        optional: false,
    }
}

/// A plan of `n` groups in a line, one script each, no VMs.
fn chain(n: usize) -> Plan {
    Plan {
        name: format!("chain-{n}"),
        description: None,
        source: CloudRef {
            site: "a".into(),
            cloud: "c".into(),
        },
        target: CloudRef {
            site: "b".into(),
            cloud: "c".into(),
        },
        base_dir: PathBuf::from("."),
        fabric_path: None,
        groups: (0..n)
            .map(|g| Group {
                name: format!("g{g}"),
                after: if g == 0 { vec![] } else { vec![g - 1] },
                vms: vec![],
                pre: vec![script("s")],
                post: vec![],
            })
            .collect(),
        test: TestSettings {
            network: None,
            max_duration: Duration::from_secs(3600),
            cleanup: vec![],
        },
        commit: CommitPolicy::Manual,
        layout: drplan_engine::plan::model::CompileLayout::default(),
    }
}

fn planned() -> Operation {
    Operation::failover(FailoverKind::Planned)
}

fn submit(j: &Journal, p: &Plan) -> JobId {
    j.submit(SubmitRequest {
        plan: p.clone(),
        plan_text: format!("# {}\n", p.name),
        operation: planned(),
        requested_by: "bench".into(),
        at: T0,
        start_at: None,
        parent: None,
    })
    .unwrap()
    .0
}

/// Drives a one-script planned failover as a retry loop: the script fails,
/// the operator retries it; two events per attempt.
struct RetryLoop {
    job: JobId,
    step: usize,
    attempt: u32,
    failed: bool,
    at: u64,
}

impl RetryLoop {
    fn start(j: &Journal) -> RetryLoop {
        let job = submit(j, &chain(1));
        let fx = j.record(job, JobEvent::Started { at: T0 + 1 }).unwrap();
        let Some(Effect::RunScript { step, attempt, .. }) = fx.first().cloned() else {
            panic!("the script starts: {fx:?}")
        };
        RetryLoop {
            job,
            step,
            attempt,
            failed: false,
            at: T0 + 1,
        }
    }

    fn next(&mut self, j: &Journal) {
        self.at += 1;
        let ev = if self.failed {
            JobEvent::OperatorAction {
                action: OperatorAction::Retry { step: self.step },
                by: "bench".into(),
                at: self.at,
            }
        } else {
            JobEvent::StepFinished {
                step: self.step,
                attempt: self.attempt,
                outcome: Outcome::Failed {
                    error: "flaky".into(),
                    error_kind: None,
                    retryable: true,
                },
                output_tail: Some("exit status 1".into()),
                values: Default::default(),
                at: self.at,
                warnings: Vec::new(),
                recovery_point: None,
            }
        };
        j.record(self.job, ev).unwrap();
        if self.failed {
            self.attempt += 1;
        }
        self.failed = !self.failed;
    }
}

/// Sled without the per-commit fdatasync, to build large fixtures quickly
/// (one real flush at the end). Never used for a timed durable path.
fn unsynced(sled: Arc<SledStore>) -> OnFlush<SledStore> {
    OnFlush::new(sled, |_| Ok(()))
}

/// Builds a store at `dir` with one job of `events` events (retry loop).
fn build_retry_job(dir: &Path, events: u64, snapshot_every: u64) {
    let sled = Arc::new(SledStore::open(dir).unwrap());
    {
        let opts = JournalOptions {
            snapshot_every,
            ..JournalOptions::default()
        };
        let j = Journal::open_with(Arc::new(unsynced(sled.clone())), opts).unwrap();
        let mut l = RetryLoop::start(&j);
        // Submitted + Started + the first RunScript are 2 events.
        for _ in 2..events {
            l.next(&j);
        }
    }
    sled.flush().unwrap();
}

/// Builds a store at `dir` with a 25,000-VM planned failover run to its end
/// except for the last step, every step succeeding.
fn build_large_job(dir: &Path) -> u64 {
    let generated = generate::large_plan(1250, 20, 7);
    let sled = Arc::new(SledStore::open(dir).unwrap());
    let events;
    {
        let j = Journal::open(Arc::new(unsynced(sled.clone()))).unwrap();
        let job = submit(&j, &generated.plan);
        let mut fx = j.record(job, JobEvent::Started { at: T0 + 1 }).unwrap();
        let mut at = T0 + 1;
        let mut held: Option<JobEvent> = None;
        loop {
            while let Some(e) = fx.pop() {
                at += 1;
                let ev = match e {
                    Effect::RunVmOp { step, attempt, .. }
                    | Effect::RunScript { step, attempt, .. } => JobEvent::StepFinished {
                        step,
                        attempt,
                        outcome: Outcome::Succeeded,
                        output_tail: None,
                        values: Default::default(),
                        at,
                        warnings: Vec::new(),
                        recovery_point: None,
                    },
                    Effect::AwaitOperator { step } => JobEvent::ManualAnswered {
                        step,
                        done: true,
                        by: "bench".into(),
                        note: None,
                        at,
                    },
                    _ => continue,
                };
                // Keep the job live: hold back its very last outcome.
                if fx.is_empty() && j.due_timers(u64::MAX).unwrap().is_empty() && held.is_none() {
                    held = Some(ev);
                    break;
                }
                fx.extend(j.record(job, ev).unwrap());
            }
            if held.is_some() {
                break;
            }
            let due = j.due_timers(u64::MAX).unwrap();
            let Some(&(_, timer, due_at)) = due.first() else {
                break;
            };
            at = at.max(due_at);
            fx.extend(j.record(job, JobEvent::TimerFired { timer, at }).unwrap());
        }
        events = j.events(job).unwrap().len() as u64;
    }
    sled.flush().unwrap();
    events
}

/// The journal's own share of a reopen: the same 100,000-event job on the
/// in-memory store (no disk, no log scan by sled).
fn rebuild(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let mut g = c.benchmark_group("rebuild_in_memory");
    g.sample_size(10);
    for (name, every) in [
        ("100k_events/snapshots", 1024),
        ("100k_events/no_snapshots", 0),
    ] {
        let mem = Arc::new(MemStore::new());
        {
            let opts = JournalOptions {
                snapshot_every: every,
                ..JournalOptions::default()
            };
            let j = Journal::open_with(mem.clone(), opts).unwrap();
            let mut l = RetryLoop::start(&j);
            for _ in 2..EVENTS {
                l.next(&j);
            }
        }
        g.bench_function(name, |b| {
            b.iter(|| black_box(Journal::open(mem.clone()).unwrap().resume().len()))
        });
    }
    g.finish();
}

/// The store alone: one 256-byte event applied and flushed (sled flush +
/// fdatasync), no journal, no commit thread: the journal's ceiling.
fn store_durable_append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SledStore::open(tmp.path()).unwrap();
    let job = store.allocate_job_id().unwrap();
    let payload = vec![0x5au8; 256];
    let mut seq = 0u64;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("durable_append_256B", |b| {
        b.iter(|| {
            store
                .apply(&[Write::Event {
                    job,
                    seq,
                    payload: payload.clone(),
                }])
                .unwrap();
            store.flush().unwrap();
            seq += 1;
        })
    });
    g.finish();
}

fn reopen(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let with = tmp.path().join("snapshots");
    let without = tmp.path().join("no-snapshots");
    let large = tmp.path().join("large");
    let t = Instant::now();
    build_retry_job(&with, EVENTS, 1024);
    build_retry_job(&without, EVENTS, 0);
    eprintln!("built two 100,000-event jobs in {:?}", t.elapsed());
    let t = Instant::now();
    let large_events = build_large_job(&large);
    eprintln!(
        "built a 25,000-VM job of {large_events} events in {:?}",
        t.elapsed()
    );

    let mut g = c.benchmark_group("reopen");
    g.sample_size(10);
    // The store's share: opening sled alone (it scans its log).
    g.bench_function("100k_events/store_open_only", |b| {
        b.iter(|| black_box(SledStore::open(&with).unwrap().dir().to_path_buf()))
    });
    for (name, dir) in [
        ("100k_events/snapshots", &with),
        ("100k_events/no_snapshots", &without),
        ("25k_vms/snapshots", &large),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let store = Arc::new(SledStore::open(dir).unwrap());
                let j = Journal::open(store).unwrap();
                black_box(j.resume().len())
            })
        });
    }
    g.finish();
}

fn durable(c: &mut Criterion) {
    const JOBS: usize = 64;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(tmp.path()).unwrap());
    let j = Journal::open(store).unwrap();
    let mut g = c.benchmark_group("durable");
    g.throughput(Throughput::Elements(1));
    let mut one = RetryLoop::start(&j);
    g.bench_function("1_job", |b| b.iter(|| one.next(&j)));
    let mut loops: Vec<RetryLoop> = (0..JOBS).map(|_| RetryLoop::start(&j)).collect();
    let before = j.commit_stats();
    g.bench_function("64_jobs", |b| {
        b.iter_custom(|iters| {
            let per_job = iters.div_ceil(JOBS as u64);
            let start = Instant::now();
            std::thread::scope(|s| {
                for l in loops.iter_mut() {
                    let j = &j;
                    s.spawn(move || {
                        for _ in 0..per_job {
                            l.next(j);
                        }
                    });
                }
            });
            // Time per event, as if exactly `iters` were recorded.
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_job * JOBS as u64) as f64)
        })
    });
    g.finish();
    let after = j.commit_stats();
    let (batches, flushes) = (
        after.batches - before.batches,
        after.flushes - before.flushes,
    );
    eprintln!(
        "64 jobs: {batches} commits in {flushes} flushes ({:.1} per flush, largest group {})",
        batches as f64 / flushes.max(1) as f64,
        after.largest_group
    );
}

fn chain_1000(c: &mut Criterion) {
    const STEPS: usize = 1000;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(tmp.path()).unwrap());
    let j = Journal::open(store).unwrap();
    let p = chain(STEPS);
    let mut g = c.benchmark_group("chain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(STEPS as u64));
    g.bench_function("1000_steps", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let job = submit(&j, &p);
                let start = Instant::now();
                let mut fx = j.record(job, JobEvent::Started { at: T0 + 1 }).unwrap();
                let mut at = T0 + 1;
                let mut steps = 0;
                while let Some(Effect::RunScript { step, attempt, .. }) = fx.pop() {
                    at += 1;
                    steps += 1;
                    fx = j
                        .record(
                            job,
                            JobEvent::StepFinished {
                                step,
                                attempt,
                                outcome: Outcome::Succeeded,
                                output_tail: None,
                                values: Default::default(),
                                at,
                                warnings: Vec::new(),
                                recovery_point: None,
                            },
                        )
                        .unwrap();
                }
                total += start.elapsed();
                assert_eq!(steps, STEPS);
                assert!(j.job(job).unwrap().unwrap().is_terminal());
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = raw_fdatasync, store_durable_append, durable, chain_1000, reopen, rebuild
}
criterion_main!(benches);
