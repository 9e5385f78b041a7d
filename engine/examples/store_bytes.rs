//! How many bytes the durable store writes for one planned failover of 10
//! groups × 100 VMs (the `runtime/planned_10x100` bench's job), run to
//! `Succeeded` on a fresh SledStore: the store directory's size afterwards
//! (`du`), the bytes this process had the kernel write (`/proc/self/io`,
//! Linux), the events recorded and the commit groups.
//!
//! Run: `cargo run --release -p drplan-engine --example store_bytes [DIR]`
//! (DIR: where the fresh stores go, default the temp dir; use a disk-backed
//! one, a tmpfs writes no blocks). Figures are in docs/store.md.

#[path = "../tests/runtime_support/fidelity.rs"]
#[allow(dead_code)]
mod fidelity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use drplan_engine::core::JobStatus;
use drplan_engine::fabric::SimConfig;
use drplan_engine::runtime::SystemClock;
use drplan_engine::store::sled_store::SledStore;

const RUNS: usize = 3;

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// `write_bytes` of /proc/self/io: bytes sent to the block layer.
fn written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let (plan, inv) = fidelity::unattended(10, 100, 7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for run in 0..RUNS {
        let dir = base.join(format!("drplan-store-bytes-{}-{run}", std::process::id()));
        let before = written();
        let t = Instant::now();
        let (events, stats) = rt.block_on(async {
            let store = Arc::new(SledStore::open(&dir).expect("sled opens"));
            let clock = Arc::new(SystemClock);
            let engine = fidelity::start_engine(store, SimConfig::instant(), clock, &inv, 64).await;
            let (job, end) = fidelity::run_planned(&engine, &plan, "store_bytes").await;
            assert_eq!(end, JobStatus::Succeeded);
            let events = engine.events(job).await.expect("events").len();
            let stats = engine.journal().commit_stats();
            engine.shutdown().await;
            (events, stats)
        });
        let took = t.elapsed();
        let wrote = match (before, written()) {
            (Some(a), Some(b)) => format!("{} KiB written", (b - a) / 1024),
            _ => "bytes written unknown (no /proc/self/io)".into(),
        };
        println!(
            "run {run}: {events} events in {took:.2?} ({:.0}/s); {} flushes, {} batches; \
             store dir {} KiB; {wrote}",
            events as f64 / took.as_secs_f64(),
            stats.flushes,
            stats.batches,
            dir_bytes(&dir) / 1024,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
