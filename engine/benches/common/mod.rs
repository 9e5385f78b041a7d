//! Shared by the benches: this machine's floor for durable writes, measured
//! in the same run as the figure it is compared with.

use std::io::Write as _;

use criterion::{Criterion, Throughput};

/// Appends a 256-byte record to a plain file with one `fdatasync` each.
pub fn raw_fdatasync(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(tmp.path().join("log")).unwrap();
    let record = [0x5au8; 256];
    let mut g = c.benchmark_group("fdatasync");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_256B", |b| {
        b.iter(|| {
            file.write_all(&record).unwrap();
            file.sync_data().unwrap();
        })
    });
    g.finish();
}
