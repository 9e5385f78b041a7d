//! Crash recovery of the journal, at every durable boundary.
//!
//! A simulated runtime ([`journal_support::Sim`]) drives the jobs of a
//! generated plan through the journal on a [`MemStore`]. After the k-th
//! commit we take the store's `crash_copy()` (only flushed data survives),
//! reopen the journal on it, perform what `resume()` says, and continue with
//! the same choices. For every k the end must be the uninterrupted run's:
//! the same job states and logs, each operation key executed once by the
//! fabric (re-requested, under the same key, only when it was in flight at
//! the crash), and no lease or timer left once every job has ended.

mod core_support;
mod journal_support;

use std::sync::Arc;

use core_support::{arb_operation, arb_plan, cases, initial_item};
use drplan_engine::core::JobEvent;
use drplan_engine::journal::{Journal, JournalError, JournalOptions};
use drplan_engine::plan::compile::Operation;
use drplan_engine::store::Store;
use drplan_engine::store::mem::MemStore;
use journal_support::*;
use proptest::prelude::*;

const MAX_COMMITS: usize = 120;

fn options(op: Operation) -> JournalOptions {
    JournalOptions {
        // Small, so that recovery goes through snapshots as well as logs.
        snapshot_every: 5,
        default_item: Arc::new(move |_| initial_item(&op)),
        time_scale: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    #[test]
    fn crash_after_every_commit_changes_nothing(
        p in arb_plan(),
        op in arb_operation(),
        scheduled in proptest::bool::weighted(0.2),
        seed in any::<u64>(),
        failing in 0u64..4,
        choices in proptest::collection::vec(any::<u8>(), 1..48),
    ) {
        let opts = options(op);
        let mem = Arc::new(MemStore::new());
        let fabric = Fabric { seed, failing, ..Fabric::default() };
        let mut full = Sim::new(mem.clone(), opts.clone(), fabric, choices.clone());
        full.submit(&p, op, scheduled.then_some(T0 + 3_000)).unwrap();
        let mut boundaries = vec![(mem.crash_copy(), full.out.clone(), full.mem.clone())];
        full.run(MAX_COMMITS, |s| boundaries.push((mem.crash_copy(), s.out.clone(), s.mem.clone())));

        let states = full.states();
        let ended = states.values().all(|s| s.is_terminal());
        let logs: Vec<_> = states.keys().map(|id| full.journal.events(*id).unwrap()).collect();
        // Without a crash nothing is requested twice.
        prop_assert!(full.out.fabric.requests.values().all(|n| *n == 1));
        if ended {
            prop_assert_eq!(mem.leases().unwrap(), vec![]);
            prop_assert_eq!(mem.timers().unwrap(), vec![]);
        }

        for (k, (store, out, volatile)) in boundaries.into_iter().enumerate() {
            let store = Arc::new(store);
            let mut rec = Sim::restart(store.clone(), opts.clone(), out, choices.clone());
            // Exactly the operations in flight are re-issued, same keys.
            prop_assert_eq!(&rec.mem.inflight, &volatile.inflight, "in flight after a crash at commit {}", k);
            rec.run(MAX_COMMITS, |_| {});
            prop_assert_eq!(&rec.states(), &states, "final states differ after a crash at commit {}", k);
            let rec_logs: Vec<_> = states.keys().map(|id| rec.journal.events(*id).unwrap()).collect();
            prop_assert_eq!(&rec_logs, &logs, "logs differ after a crash at commit {}", k);
            prop_assert_eq!(&rec.out.fabric.completed, &full.out.fabric.completed);
            prop_assert_eq!(&rec.out.fabric.executed, &full.out.fabric.executed);
            let reissued: std::collections::BTreeSet<&String> =
                volatile.inflight.values().map(|(key, _)| key).collect();
            for (key, n) in &rec.out.fabric.requests {
                let expected = full.out.fabric.requests[key] + u32::from(reissued.contains(key));
                prop_assert_eq!(*n, expected, "requests of {} after a crash at commit {}", key, k);
            }
            if ended {
                prop_assert_eq!(store.leases().unwrap(), vec![], "leases left after a crash at commit {}", k);
                prop_assert_eq!(store.timers().unwrap(), vec![], "timers left after a crash at commit {}", k);
            }
        }
    }

    /// A crash between apply and flush: the event whose flush failed is not
    /// acknowledged, nothing is performed for it, the journal refuses more
    /// work, and after a restart the same input gives the same work.
    #[test]
    fn a_failed_flush_loses_only_the_unacknowledged_event(
        p in arb_plan(),
        op in arb_operation(),
        seed in any::<u64>(),
        failing in 0u64..4,
        choices in proptest::collection::vec(any::<u8>(), 1..48),
        stop in 0usize..16,
    ) {
        let opts = options(op);
        let mem = Arc::new(MemStore::new());
        let fabric = Fabric { seed, failing, ..Fabric::default() };
        let mut sim = Sim::new(mem.clone(), opts.clone(), fabric, choices.clone());
        let first = sim.submit(&p, op, None).unwrap();
        sim.run(stop, |_| {});
        let choice = choices[sim.out.commits % choices.len()];
        let Some((job, ev)) = sim.next_event(choice) else { return Ok(()) };

        // What the event does when its commit succeeds.
        let reference = Journal::open_with(Arc::new(mem.crash_copy()), opts.clone()).unwrap();
        let Ok(expected_fx) = reference.record(job, ev.clone()) else { return Ok(()) };
        let expected_state = reference.job(job).unwrap();

        let before_state = sim.journal.job(job).unwrap();
        let before_log = sim.journal.events(job).unwrap();
        let requests = sim.out.fabric.requests.clone();
        mem.fail_next_flushes(1);
        let err = sim.journal.record(job, ev.clone()).unwrap_err();
        prop_assert!(matches!(err, JournalError::Poisoned { .. }), "{err}");
        // Poisoned: nothing more is accepted until reopened.
        let again = sim.journal.record(job, JobEvent::Started { at: T0 });
        prop_assert!(matches!(again, Err(JournalError::Poisoned { .. })), "{:?}", again);
        let resubmit = sim.submit(&p, op, None);
        prop_assert!(matches!(resubmit, Err(JournalError::Poisoned { .. })), "{:?}", resubmit);
        prop_assert_eq!(&sim.out.fabric.requests, &requests, "nothing performed");

        let after = Arc::new(mem.crash_copy());
        let reopened = Journal::open_with(after.clone(), opts).unwrap();
        prop_assert_eq!(reopened.events(job).unwrap(), before_log, "the unacknowledged event is lost");
        prop_assert_eq!(reopened.job(job).unwrap(), before_state);
        // The same input now gives the same work as if nothing had failed.
        let fx = reopened.record(job, ev).unwrap();
        prop_assert_eq!(fx, expected_fx);
        prop_assert_eq!(reopened.job(job).unwrap(), expected_state);
        prop_assert!(reopened.job(first).unwrap().is_some());
    }
}
