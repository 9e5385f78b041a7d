//! Where the runtime gets `now` from. The core never reads a clock; the
//! runtime stamps every event it records with [`Clock::now_ms`] and sleeps
//! on tokio timers until the next armed timer is due.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::Millis;

/// A source of Unix-millisecond time for the runtime.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> Millis;

    /// The longest the timer loop sleeps before looking at the clock again.
    /// A wall clock can be stepped (NTP, an operator), so a sleep computed
    /// from it must be re-checked now and then.
    fn recheck_every(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock driven by tokio's time: `base + (tokio now - tokio start) +
/// jumps`. Under `tokio::time::pause()` it moves only when virtual time
/// does, so a two-week deadline passes in milliseconds of real time;
/// [`TestClock::jump`] moves it without tokio (e.g. "drplan was down for
/// fifteen days" between two engines).
#[derive(Debug)]
pub struct TestClock {
    base: Millis,
    start: tokio::time::Instant,
    jumped: AtomicU64,
}

impl TestClock {
    /// A clock that reads `base` now. Must be created inside a tokio
    /// runtime (it reads `tokio::time::Instant::now`).
    pub fn new(base: Millis) -> TestClock {
        TestClock {
            base,
            start: tokio::time::Instant::now(),
            jumped: AtomicU64::new(0),
        }
    }

    /// Move the clock forward by `d` at once (no tokio timer fires because
    /// of it: the engine notices at its next look at the clock).
    pub fn jump(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.jumped.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> Millis {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base
            .saturating_add(elapsed)
            .saturating_add(self.jumped.load(Ordering::SeqCst))
    }

    // Virtual time: a long sleep costs nothing, and fewer wake-ups keep
    // paused-time tests fast.
    fn recheck_every(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }
}
