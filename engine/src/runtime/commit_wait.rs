//! Keeping a paused test clock still while events wait for their commit.
//!
//! [`Inner::record`](super::Inner) awaits the store's commit thread without
//! holding a thread. Under tokio's paused clock (a current-thread runtime
//! with `start_paused`, as the engine's tests and `drplan simulate` use),
//! the runtime auto-advances virtual time as soon as no task can run, and a
//! task awaiting another OS thread looks idle: timers (a fabric latency, a
//! manual timeout, the 14-day test deadline) would fire while an event
//! that comes before them is still being flushed. Nothing unsafe follows
//! (no effect is performed before its event is durable), but a virtual
//! run would no longer unfold as the same run does in real time.
//!
//! tokio does not auto-advance a current-thread runtime while one of its
//! blocking-pool tasks runs. So while any commit wait is in flight, one
//! blocking task parks on a condition variable, and it ends when the last
//! wait ends: one hand-off per busy period instead of one per event, and
//! none at all on a multi-thread runtime, whose clock cannot be paused.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The commit waits of one engine.
pub(super) struct CommitWaits {
    state: Mutex<State>,
    idle: Condvar,
    /// Whether the engine runs on a current-thread runtime (the only kind
    /// whose clock can be paused): only then is a guard task needed.
    guard_needed: bool,
}

#[derive(Default)]
struct State {
    /// Commit waits in flight.
    waiting: usize,
    /// A guard task is alive (it clears this, under the lock, when it sees
    /// no wait left, so a wait that begins meanwhile spawns a new one).
    guard: bool,
}

impl CommitWaits {
    /// For the runtime the caller runs on.
    pub(super) fn for_current_runtime() -> Arc<CommitWaits> {
        let guard_needed = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        Arc::new(CommitWaits {
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            guard_needed,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Two counters updated together under the lock: a panic cannot
        // leave them half-written, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One commit wait in flight; dropping it ends the wait.
pub(super) struct CommitWait {
    waits: Arc<CommitWaits>,
}

impl CommitWait {
    /// Marks a commit wait as begun (call before awaiting the commit).
    pub(super) fn begin(waits: &Arc<CommitWaits>) -> CommitWait {
        let mut st = waits.lock();
        st.waiting += 1;
        if waits.guard_needed && !st.guard {
            st.guard = true;
            let w = Arc::clone(waits);
            // Spawned before the caller awaits: the runtime never sees the
            // waiting task idle without a blocking task beside it.
            drop(tokio::task::spawn_blocking(move || {
                let mut st = w.lock();
                while st.waiting > 0 {
                    st = w.idle.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.guard = false;
            }));
        }
        CommitWait {
            waits: Arc::clone(waits),
        }
    }
}

impl Drop for CommitWait {
    fn drop(&mut self) {
        let mut st = self.waits.lock();
        st.waiting -= 1;
        if st.waiting == 0 {
            self.waits.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Without the guard a paused runtime jumps its clock while a task waits
    /// for another thread; with it, virtual time stands still until the
    /// wait ends.
    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_stands_still_during_a_commit_wait() {
        let waits = CommitWaits::for_current_runtime();
        assert!(waits.guard_needed);
        for guarded in [false, true] {
            let start = tokio::time::Instant::now();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            // A timer far in the future competes with the "commit".
            let timer = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let wait = guarded.then(|| CommitWait::begin(&waits));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let _ = tx.send(());
            });
            rx.await.unwrap();
            drop(wait);
            let jumped = start.elapsed() >= Duration::from_secs(3600);
            assert_eq!(jumped, !guarded, "guarded: {guarded}");
            timer.abort();
        }
    }

    #[test]
    fn a_multi_thread_runtime_needs_no_guard() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let waits = rt.block_on(async { CommitWaits::for_current_runtime() });
        assert!(!waits.guard_needed);
        let w = CommitWait::begin(&waits);
        assert_eq!(waits.lock().waiting, 1);
        drop(w);
        assert_eq!(waits.lock().waiting, 0);
        assert!(!waits.lock().guard);
    }
}
