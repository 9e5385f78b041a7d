//! Store benchmarks: what durability costs, and what group commit buys.
//!
//! Run: `cargo bench -p drplan-engine --bench store`. Figures and the
//! machine they came from are in docs/store.md.
//!
//! - `fdatasync/raw_256B`: the floor. Append 256 bytes to a plain file and
//!   fdatasync, per record: no store can make single events durable faster.
//! - `sled/durable_append`: one event, then `flush` (sled flush + fdatasync).
//! - `group_commit/64_writers`: 64 threads each committing one event at a
//!   time through the group committer; throughput in events/s.
//! - `reopen/100k_events`: open a store and stream back a job of 100,000
//!   events (decoding and replay are the core's and not included).

mod common;
use common::raw_fdatasync;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drplan_engine::store::commit::GroupCommitter;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, Write};

fn sled_durable_append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SledStore::open(tmp.path()).unwrap();
    let job = store.allocate_job_id().unwrap();
    let payload = vec![0x5au8; 256];
    let mut seq = 0u64;
    let mut g = c.benchmark_group("sled");
    g.throughput(Throughput::Elements(1));
    g.bench_function("durable_append", |b| {
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

fn group_commit(c: &mut Criterion) {
    const WRITERS: u64 = 64;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(tmp.path()).unwrap());
    let jobs: Vec<JobId> = (0..WRITERS)
        .map(|_| store.allocate_job_id().unwrap())
        .collect();
    let committer = Arc::new(GroupCommitter::new(store.clone()));
    let payload = vec![0x5au8; 256];
    let mut g = c.benchmark_group("group_commit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("64_writers", |b| {
        b.iter_custom(|iters| {
            let per_writer = iters.div_ceil(WRITERS);
            let start = Instant::now();
            std::thread::scope(|scope| {
                for job in &jobs {
                    let committer = Arc::clone(&committer);
                    let store = Arc::clone(&store);
                    let payload = payload.clone();
                    scope.spawn(move || {
                        let first = store.last_seq(*job).unwrap().map_or(0, |s| s + 1);
                        for seq in first..first + per_writer {
                            committer
                                .commit(vec![Write::Event {
                                    job: *job,
                                    seq,
                                    payload: payload.clone(),
                                }])
                                .unwrap();
                        }
                    });
                }
            });
            // Time per event, as if exactly `iters` were committed.
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_writer * WRITERS) as f64)
        })
    });
    g.finish();
    let stats = committer.stats();
    eprintln!(
        "group commit: {} batches in {} flushes ({:.1} per flush, largest group {})",
        stats.batches,
        stats.flushes,
        stats.batches as f64 / stats.flushes.max(1) as f64,
        stats.largest_group
    );
}

fn reopen_100k(c: &mut Criterion) {
    const EVENTS: u64 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let job = {
        let store = SledStore::open(&dir).unwrap();
        let job = store.allocate_job_id().unwrap();
        for chunk in 0..EVENTS / 1000 {
            let batch: Vec<Write> = (chunk * 1000..(chunk + 1) * 1000)
                .map(|seq| Write::Event {
                    job,
                    seq,
                    payload: format!("{{\"step\":\"s{seq}\",\"outcome\":\"ok\"}}").into_bytes(),
                })
                .collect();
            store.apply(&batch).unwrap();
        }
        store.flush().unwrap();
        job
    };
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10);
    g.bench_function("100k_events", |b| {
        b.iter(|| {
            let store = SledStore::open(&dir).unwrap();
            let mut n = 0u64;
            let mut bytes = 0usize;
            store
                .for_each_event(job, 0, &mut |_, payload| {
                    n += 1;
                    bytes += payload.len();
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, EVENTS);
            black_box(bytes)
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
    targets = raw_fdatasync, sled_durable_append, group_commit, reopen_100k
}
criterion_main!(benches);
