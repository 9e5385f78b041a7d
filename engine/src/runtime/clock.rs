//! Where the runtime gets `now` from. The core never reads a clock; the
//! runtime stamps every event it records with [`Clock::now_ms`] and sleeps
//! on tokio timers until the next armed timer is due.
//!
//! # Wall-clock jumps
//!
//! Durable timers are absolute Unix-ms due times (an event's time plus the
//! timer's duration). Compared with the raw wall clock, a clock stepped
//! forward by an operator or NTP would fire a two-week test deadline at
//! once, and a clock stepped back would postpone every timer by the step.
//! So the engine never reads the wall clock directly while it runs: it reads
//! a [`SteadyClock`], which reads the wall clock once, when the engine
//! starts, and from then on adds the elapsed time of a monotonic clock
//! ([`Clock::monotonic`]: `CLOCK_BOOTTIME` on Linux, which also counts time
//! spent suspended). A wall-clock step while the engine runs changes
//! nothing the engine does; the timer loop notices the difference and logs
//! it. Across a restart the wall clock is the only reference there is: a
//! new engine anchors to it again (so a deadline passed during fifteen days
//! of downtime fires at once).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::Millis;

/// A source of Unix-millisecond time for the runtime.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> Millis;

    /// A monotonic reading (arbitrary origin) that moves with real elapsed
    /// time and never jumps when [`Clock::now_ms`] is stepped. The default
    /// is the process's `std::time::Instant`; a clock in virtual time must
    /// override it with its own notion of elapsed time.
    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }

    /// The longest the timer loop sleeps before looking at the clock again.
    /// A wall clock can be stepped (NTP, an operator), so a sleep computed
    /// from it must be re-checked now and then.
    fn recheck_every(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// For a clock that follows elapsed time rather than the wall clock
    /// ([`SteadyClock`]): how far the wall clock is from it now, in ms
    /// (positive: the wall clock is ahead). `None` for a wall clock.
    fn wall_offset_ms(&self) -> Option<i64> {
        None
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

    /// `CLOCK_BOOTTIME`: monotonic, and unlike `CLOCK_MONOTONIC` (what
    /// `Instant` reads) it keeps counting while the machine is suspended,
    /// so a deadline that passed during a suspend fires on resume instead
    /// of late by the length of the suspend.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn monotonic(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists
        // on every Linux since 2.6.39.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
            return ORIGIN.get_or_init(std::time::Instant::now).elapsed();
        }
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

/// Engine time: the wall clock of `wall` read once (the anchor), then moved
/// forward by `wall`'s [`Clock::monotonic`] elapsed time. A step of the wall
/// clock after the anchor neither fires a timer early (forward) nor delays
/// one (backward); [`SteadyClock::wall_offset_ms`] shows it.
///
/// [`super::Engine`] wraps the configured clock in one at every start, so
/// embedders get this protection without asking for it.
#[derive(Debug)]
pub struct SteadyClock {
    wall: Arc<dyn Clock>,
    /// The wall clock's reading at the anchor, and the monotonic reading
    /// at the same moment.
    anchor: (Millis, Duration),
}

impl SteadyClock {
    /// Anchors to `wall` now.
    pub fn new(wall: Arc<dyn Clock>) -> SteadyClock {
        let anchor = (wall.now_ms(), wall.monotonic());
        SteadyClock { wall, anchor }
    }

    /// The clock this one was anchored to.
    pub fn wall(&self) -> &Arc<dyn Clock> {
        &self.wall
    }
}

impl Clock for SteadyClock {
    fn now_ms(&self) -> Millis {
        let (wall, mono) = self.anchor;
        let elapsed = self.wall.monotonic().saturating_sub(mono);
        wall.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic(&self) -> Duration {
        self.wall.monotonic()
    }

    fn recheck_every(&self) -> Duration {
        self.wall.recheck_every()
    }

    fn wall_offset_ms(&self) -> Option<i64> {
        let wall = i64::try_from(self.wall.now_ms()).unwrap_or(i64::MAX);
        let steady = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        Some(wall.saturating_sub(steady))
    }
}

/// A clock driven by tokio's time: `base + (tokio now - tokio start) +
/// jumps`. Under `tokio::time::pause()` it moves only when virtual time
/// does, so a two-week deadline passes in milliseconds of real time;
/// [`TestClock::jump`] and [`TestClock::jump_back`] step it without tokio,
/// like an operator or NTP stepping a wall clock (or "drplan was down for
/// fifteen days" between two engines). Its [`Clock::monotonic`] is tokio's
/// elapsed time, which no jump moves.
#[derive(Debug)]
pub struct TestClock {
    base: Millis,
    start: tokio::time::Instant,
    /// Net jumps, in ms (negative: stepped back).
    jumped: AtomicI64,
}

impl TestClock {
    /// A clock that reads `base` now. Must be created inside a tokio
    /// runtime (it reads `tokio::time::Instant::now`).
    pub fn new(base: Millis) -> TestClock {
        TestClock {
            base,
            start: tokio::time::Instant::now(),
            jumped: AtomicI64::new(0),
        }
    }

    /// Step the clock forward by `d` at once (no tokio timer fires because
    /// of it: the engine notices at its next look at the clock).
    pub fn jump(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.jumped.fetch_add(ms, Ordering::SeqCst);
    }

    /// Step the clock back by `d` at once.
    pub fn jump_back(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.jumped.fetch_sub(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> Millis {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let t = self.base.saturating_add(elapsed);
        let j = self.jumped.load(Ordering::SeqCst);
        if j >= 0 {
            t.saturating_add(j.unsigned_abs())
        } else {
            t.saturating_sub(j.unsigned_abs())
        }
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }

    // Virtual time: a long sleep costs nothing, and fewer wake-ups keep
    // paused-time tests fast.
    fn recheck_every(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_steady_clock_ignores_wall_steps_and_follows_elapsed_time() {
        const T: Millis = 1_795_651_200_000;
        let wall = Arc::new(TestClock::new(T));
        let steady = SteadyClock::new(wall.clone());
        assert_eq!(steady.now_ms(), T);
        assert_eq!(steady.wall_offset_ms(), Some(0));
        wall.jump(Duration::from_secs(3600));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(steady.now_ms(), T + 10_000);
        assert_eq!(steady.wall_offset_ms(), Some(3_600_000));
        wall.jump_back(Duration::from_secs(7200));
        assert_eq!(steady.now_ms(), T + 10_000);
        assert_eq!(steady.wall_offset_ms(), Some(-3_600_000));
        // A new anchor (an engine restart) adopts the wall clock.
        assert_eq!(SteadyClock::new(wall.clone()).now_ms(), wall.now_ms());
    }

    #[test]
    fn the_system_clocks_monotonic_reading_moves_forward() {
        let a = SystemClock.monotonic();
        std::thread::sleep(Duration::from_millis(5));
        let b = SystemClock.monotonic();
        assert!(b >= a + Duration::from_millis(5), "{a:?} -> {b:?}");
        let steady = SteadyClock::new(Arc::new(SystemClock));
        let off = steady.wall_offset_ms().unwrap();
        assert!(off.abs() < 1000, "{off}");
    }
}
