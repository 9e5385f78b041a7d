//! Differential test: random sequences of operations (valid and invalid
//! batches, groups of batches, lease requests, flushes and restarts) run on
//! `MemStore` and `SledStore` side by side must give the same answers and
//! leave the same state. A group goes through `SledStore::apply_group` (one
//! sled write, a job's events as one run) and through `MemStore::apply`
//! batch by batch: reading it back (from every sequence number) must not
//! tell the two apart. The conformance suite pins each rule down by example; this looks
//! for the combinations nobody wrote down.
//!
//! Cases: `PROPTEST_CASES` (default 24; each case opens sled a few times).

use drplan_engine::store::mem::MemStore;
use drplan_engine::store::sled_store::SledStore;
use drplan_engine::store::{JobId, Store, StoreError, Write};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum W {
    /// Event for job `job`, at the expected seq shifted by `shift - 1`.
    Event {
        job: u8,
        shift: u8,
    },
    Meta {
        job: u8,
        tag: u8,
    },
    Snapshot {
        job: u8,
        seq: u8,
    },
    Arm {
        job: u8,
        due: u16,
        timer: u8,
    },
    Disarm {
        job: u8,
        due: u16,
        timer: u8,
    },
    Release {
        job: u8,
    },
    Item {
        vm: u8,
        tag: u8,
    },
    Text {
        hash: u8,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    Apply(Vec<W>),
    /// Batches applied as one group (sled) or one by one (MemStore).
    ApplyGroup(Vec<Vec<W>>),
    Acquire {
        job: u8,
        vms: Vec<u8>,
    },
    Flush,
    FlushAndRestart,
}

fn write_strategy() -> impl Strategy<Value = W> {
    prop_oneof![
        4 => (0u8..4, prop_oneof![8 => Just(1u8), 1 => Just(0u8), 1 => Just(2u8)])
            .prop_map(|(job, shift)| W::Event { job, shift }),
        1 => (0u8..4, any::<u8>()).prop_map(|(job, tag)| W::Meta { job, tag }),
        1 => (0u8..4, 0u8..6).prop_map(|(job, seq)| W::Snapshot { job, seq }),
        2 => (0u8..4, 0u16..8, 0u8..3).prop_map(|(job, due, timer)| W::Arm { job, due, timer }),
        1 => (0u8..4, 0u16..8, 0u8..3)
            .prop_map(|(job, due, timer)| W::Disarm { job, due, timer }),
        1 => (0u8..4).prop_map(|job| W::Release { job }),
        1 => (0u8..4, any::<u8>()).prop_map(|(vm, tag)| W::Item { vm, tag }),
        1 => (0u8..3).prop_map(|hash| W::Text { hash }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Allocate),
        6 => prop::collection::vec(write_strategy(), 1..5).prop_map(Op::Apply),
        4 => prop::collection::vec(prop::collection::vec(write_strategy(), 0..6), 1..6)
            .prop_map(Op::ApplyGroup),
        2 => (0u8..4, prop::collection::vec(0u8..4, 0..3))
            .prop_map(|(job, vms)| Op::Acquire { job, vms }),
        1 => Just(Op::Flush),
        1 => Just(Op::FlushAndRestart),
    ]
}

/// Job ids 1..=4; an id not yet allocated exercises `UnknownJob`.
fn job(n: u8) -> JobId {
    JobId(u64::from(n) + 1)
}

/// Turns the abstract writes into concrete ones, reading the expected next
/// seq from `store` (both stores must agree on it, which is checked).
fn concrete(store: &dyn Store, ws: &[W]) -> Vec<Write> {
    let mut next: std::collections::HashMap<JobId, u64> = Default::default();
    ws.iter()
        .map(|w| match *w {
            W::Event { job: j, shift } => {
                let j = job(j);
                let n = *next
                    .entry(j)
                    .or_insert_with(|| store.last_seq(j).unwrap_or(None).map_or(0, |s| s + 1));
                let seq = (n + u64::from(shift)).saturating_sub(1);
                next.insert(j, n + 1);
                Write::Event {
                    job: j,
                    seq,
                    payload: format!("{j}:{seq}").into_bytes(),
                }
            }
            W::Meta { job: j, tag } => Write::JobMeta {
                job: job(j),
                payload: vec![tag],
            },
            W::Snapshot { job: j, seq } => Write::Snapshot {
                job: job(j),
                seq: u64::from(seq),
                payload: vec![seq],
            },
            W::Arm { job: j, due, timer } => Write::ArmTimer {
                due_ms: u64::from(due) * 1000,
                job: job(j),
                timer: u64::from(timer),
            },
            W::Disarm { job: j, due, timer } => Write::DisarmTimer {
                due_ms: u64::from(due) * 1000,
                job: job(j),
                timer: u64::from(timer),
            },
            W::Release { job: j } => Write::ReleaseLeases { job: job(j) },
            W::Item { vm, tag } => Write::Item {
                vm: format!("vm{vm}"),
                payload: vec![tag],
            },
            W::Text { hash } => Write::Text {
                hash: format!("h{hash}"),
                text: format!("plan {hash}"),
            },
        })
        .collect()
}

/// Everything observable, as one comparable value.
fn observe(s: &dyn Store) -> String {
    let mut out = String::new();
    for n in 0..5u8 {
        let j = job(n);
        let last = s.last_seq(j).unwrap();
        out += &format!(
            "job {j}: last {last:?} events {:?} meta {:?} snap {:?}\n",
            s.events(j, 0).unwrap(),
            s.job_meta(j).unwrap(),
            s.snapshot(j).unwrap()
        );
        // From every point, also inside a run.
        for from in 1..=last.map_or(0, |l| l + 2) {
            out += &format!("  from {from}: {:?}\n", s.events(j, from).unwrap());
        }
    }
    out += &format!("jobs {:?}\n", s.jobs().unwrap());
    out += &format!("timers {:?}\n", s.timers().unwrap());
    out += &format!("due<=3000 {:?}\n", s.timers_due(3000).unwrap());
    out += &format!("leases {:?}\n", s.leases().unwrap());
    out += &format!("items {:?}\n", s.items().unwrap());
    for h in 0..3 {
        out += &format!("text h{h} {:?}\n", s.text(&format!("h{h}")).unwrap());
    }
    out
}

/// Errors compared by kind and content, not by wording.
fn outcome<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {e:?}"),
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut mem = MemStore::new();
    let mut sled = SledStore::open(&dir).unwrap();
    for (i, op) in ops.iter().enumerate() {
        let (a, b) = match op {
            Op::Allocate => (
                outcome(mem.allocate_job_id()),
                outcome(sled.allocate_job_id()),
            ),
            Op::Apply(ws) => {
                let batch = concrete(&mem, ws);
                prop_assert_eq!(&batch, &concrete(&sled, ws), "op {}: stores disagree", i);
                (outcome(mem.apply(&batch)), outcome(sled.apply(&batch)))
            }
            Op::ApplyGroup(group) => {
                // Each batch made concrete against the state the batches
                // before it leave (MemStore applies them as it goes).
                let mut batches = Vec::new();
                let mut on_mem = Vec::new();
                for ws in group {
                    let batch = concrete(&mem, ws);
                    on_mem.push(outcome(mem.apply(&batch)));
                    batches.push(batch);
                }
                let refs: Vec<&[Write]> = batches.iter().map(Vec::as_slice).collect();
                let on_sled: Vec<String> =
                    sled.apply_group(&refs).into_iter().map(outcome).collect();
                (format!("{on_mem:?}"), format!("{on_sled:?}"))
            }
            Op::Acquire { job: j, vms } => {
                let vms: Vec<String> = vms.iter().map(|v| format!("vm{v}")).collect();
                (
                    outcome(mem.acquire_leases(job(*j), &vms)),
                    outcome(sled.acquire_leases(job(*j), &vms)),
                )
            }
            Op::Flush => (outcome(mem.flush()), outcome(sled.flush())),
            Op::FlushAndRestart => {
                let flushed = (outcome(mem.flush()), outcome(sled.flush()));
                mem = mem.crash_copy();
                drop(sled);
                sled = SledStore::open(&dir).unwrap();
                flushed
            }
        };
        prop_assert_eq!(a, b, "op {} ({:?}): different answers", i, op);
        prop_assert_eq!(
            observe(&mem),
            observe(&sled),
            "op {} ({:?}): different state",
            i,
            op
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mem_and_sled_agree(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(&ops)?;
    }
}
