//! Group commit: many writers share one durability barrier.
//!
//! A flush that reaches the disk (an `fdatasync`) costs about as much for one
//! event as for a thousand, so a dedicated thread takes every batch submitted
//! since it last looked, applies them in submission order with ONE
//! [`Store::apply_group`] (sled writes the whole group as one atomic batch),
//! makes them all durable with ONE [`Store::flush`], and only then answers
//! their tickets. Under load the groups grow by themselves: while one flush
//! runs, the next group queues up.
//!
//! Outcomes, per ticket:
//! - the batch was rejected by the store's checks (say a sequence gap): that
//!   error, for that ticket only; the other batches of the group go on;
//! - the group's write failed: that error for every ticket of the group
//!   whose batch was accepted;
//! - the group's flush failed: [`StoreError::FlushFailed`] for every ticket of
//!   the group whose batch was applied. Such a batch is *not acknowledged*
//!   but may still reach the disk later (it was applied), so callers must
//!   treat it as "unknown", not "absent" (restart and read the store). Later
//!   groups flush again; [`super::sled_store::SledStore`] refuses every flush
//!   after a failed `fdatasync` (the kernel may have dropped the dirty pages
//!   and a retry could falsely succeed), so there they keep failing until the
//!   process reopens the store.
//!
//! Tickets are answered through a `tokio` oneshot channel so that both
//! blocking code ([`Ticket::wait`]) and async code ([`Ticket::wait_async`])
//! can wait on them; the commit thread itself is a plain `std` thread because
//! its work (apply, fsync) is blocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{Store, StoreError, Write};

/// Owns the commit thread. Dropping it commits what is queued, then stops
/// the thread.
pub struct GroupCommitter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The answer to one submitted batch.
#[must_use = "a batch is acknowledged only once its ticket says so"]
pub struct Ticket {
    rx: oneshot::Receiver<Result<(), StoreError>>,
}

/// Counters, to see how well writes are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Flushes performed (one per group).
    pub flushes: u64,
    /// Batches submitted and processed.
    pub batches: u64,
    /// The largest group seen, in batches.
    pub largest_group: u64,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    flushes: AtomicU64,
    batches: AtomicU64,
    largest_group: AtomicU64,
}

#[derive(Default)]
struct Queue {
    pending: Vec<(Vec<Write>, Reply)>,
    stopping: bool,
    /// The commit thread waits on `wake` (set and cleared by it, under the
    /// lock). A submitter signals the condition variable only then: a
    /// signal is a system call even when nobody waits, and while the
    /// thread applies and flushes a group (most of the time under load) it
    /// will look at the queue anyway before it sleeps.
    idle: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is a plain Vec swapped out under the lock; no panic can
        // leave it half-updated, so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupCommitter {
    /// Starts the commit thread for `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            flushes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            largest_group: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("drplan-commit".into())
            .spawn(move || run(&*store, &thread_shared))
            .expect("the OS refused to start the commit thread");
        GroupCommitter {
            shared,
            thread: Some(thread),
        }
    }

    /// Queues a batch for the next group. An empty batch is a pure
    /// durability barrier: its ticket completes once everything applied
    /// before (say by [`Store::acquire_leases`]) is durable.
    pub fn submit(&self, batch: Vec<Write>) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut queue = self.shared.lock();
        if queue.stopping {
            // The receiver is right here; ignoring a send failure is fine.
            let _ = tx.send(Err(StoreError::CommitterStopped));
        } else {
            queue.pending.push((batch, tx));
            if queue.idle {
                self.shared.wake.notify_one();
            }
        }
        Ticket { rx }
    }

    /// Submits a batch and blocks until it is durable (or failed).
    pub fn commit(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.submit(batch).wait()
    }

    /// How many flushes and batches so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            largest_group: self.shared.largest_group.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panic of the commit thread already failed its tickets (their
            // senders were dropped); nothing more to report here.
            let _ = thread.join();
        }
    }
}

impl Ticket {
    /// Blocks until the batch is durable. Do not call from inside an async
    /// task (it would block the executor): use [`Ticket::wait_async`].
    ///
    /// The one blocking receive of drplan (see `clippy.toml`): the journal's
    /// blocking API is built on it, and `runtime` calls that API only on
    /// `spawn_blocking` (`Journal::begin_record`, which runs on workers,
    /// never waits).
    #[allow(clippy::disallowed_methods)]
    pub fn wait(self) -> Result<(), StoreError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(StoreError::CommitterStopped))
    }

    /// Waits for the batch to be durable without blocking a thread.
    pub async fn wait_async(self) -> Result<(), StoreError> {
        self.rx.await.unwrap_or(Err(StoreError::CommitterStopped))
    }
}

/// If the commit thread ends (a panic inside the store), nobody would
/// answer tickets submitted later: they would wait forever. This guard marks
/// the committer stopped and fails what is queued.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.stopping = true;
        for (_, reply) in queue.pending.drain(..) {
            let _ = reply.send(Err(StoreError::CommitterStopped));
        }
    }
}

fn run(store: &dyn Store, shared: &Shared) {
    let _stop = StopOnExit(shared);
    loop {
        let group = {
            let mut queue = shared.lock();
            while queue.pending.is_empty() && !queue.stopping {
                queue.idle = true;
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
                queue.idle = false;
            }
            if queue.pending.is_empty() {
                return; // stopping, and everything queued was committed
            }
            std::mem::take(&mut queue.pending)
        };
        let size = group.len() as u64;
        let batches: Vec<&[Write]> = group.iter().map(|(batch, _)| batch.as_slice()).collect();
        let mut outcomes = store.apply_group(&batches).into_iter();
        drop(batches);
        let applied: Vec<(Result<(), StoreError>, Reply)> = group
            .into_iter()
            .map(|(_, reply)| {
                // A store must answer every batch; one that answers fewer
                // (a bug in a wrapper) must not leave a ticket acknowledged
                // for a batch it may never have written.
                let outcome = outcomes.next().unwrap_or_else(|| {
                    Err(StoreError::corrupt(
                        "group commit",
                        "the store answered fewer outcomes than batches submitted",
                    ))
                });
                (outcome, reply)
            })
            .collect();
        let flushed = store.flush();
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        shared.batches.fetch_add(size, Ordering::Relaxed);
        shared.largest_group.fetch_max(size, Ordering::Relaxed);
        for (outcome, reply) in applied {
            let answer = match (outcome, &flushed) {
                (Err(rejected), _) => Err(rejected),
                (Ok(()), Ok(())) => Ok(()),
                (Ok(()), Err(StoreError::FlushFailed { detail })) => Err(StoreError::FlushFailed {
                    detail: detail.clone(),
                }),
                (Ok(()), Err(e)) => Err(StoreError::FlushFailed {
                    detail: e.to_string(),
                }),
            };
            // A caller that stopped waiting dropped its receiver; fine.
            let _ = reply.send(answer);
        }
    }
}
