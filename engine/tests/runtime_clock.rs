//! Clock trouble (issue #6 item 8): the wall clock is stepped forwards or
//! backwards while the engine runs. Durable timers must follow real elapsed
//! time: the test deadline neither fires early (wall +15 days) nor late
//! (wall -1 day), and a short `wait` step lasts its duration. Each test
//! fails when the engine compares due times with the raw wall clock
//! (replace `SteadyClock::new(config.clock)` by `config.clock` in
//! `Engine::start` to see it).
//!
//! All in paused virtual time: `TestClock` is the wall clock (it follows
//! tokio's time, and `jump`/`jump_back` step it without moving tokio's).

mod runtime_support;

use std::sync::Arc;
use std::time::Duration;

use drplan_engine::core::{JobEvent, JobStatus, TimerId};
use drplan_engine::plan::model::FailoverKind;
use drplan_engine::runtime::{Clock, Engine, TestClock};
use drplan_engine::store::JobId;
use runtime_support::*;

const DAY: Duration = Duration::from_secs(24 * 3600);
const SEVEN_DAYS_MS: u64 = 7 * 24 * 3600 * 1000;
const MINUTE: Duration = Duration::from_secs(60);

/// Asserts that `elapsed` (virtual time since the test opened at engine
/// time `open_ms`) is when the deadline `due` was to fire, within a minute.
#[track_caller]
fn fired_on_time(elapsed: Duration, open_ms: u64, due: u64) {
    let want = Duration::from_millis(due - open_ms);
    assert!(
        elapsed >= want && elapsed < want + MINUTE,
        "the deadline fired after {elapsed:?} of elapsed time; due after {want:?}"
    );
}

/// The armed test deadline of a job (engine time, Unix ms).
async fn deadline(engine: &Engine, job: JobId) -> u64 {
    let st = engine.job(job).await.unwrap().unwrap();
    *st.timers
        .get(&TimerId::TestDeadline)
        .expect("the test deadline is armed")
}

/// A three-tier test failover left open (AwaitingCleanup); returns the job
/// and the virtual instant at which it opened.
async fn open_test(engine: &Engine) -> (JobId, tokio::time::Instant) {
    let s = three_tier();
    let job = engine
        .submit(submission(&s, FailoverKind::Test))
        .await
        .unwrap();
    answer_verify_health(engine, job).await;
    wait(engine, job, |s| s == JobStatus::AwaitingCleanup).await;
    (job, tokio::time::Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_forward_does_not_fire_the_test_deadline_early() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;
    let (job, opened) = open_test(&engine).await;
    let open_ms = clock.now_ms();
    let due = deadline(&engine, job).await;

    // Someone sets the machine's clock fifteen days ahead: past the
    // seven-day deadline by the wall clock.
    clock.jump(15 * DAY);
    // Two virtual days later (the timer loop has re-checked the clock
    // since), the test is still open: the deadline did not fire early.
    tokio::time::sleep(2 * DAY).await;
    assert_eq!(
        engine.status(job).await.unwrap(),
        Some(JobStatus::AwaitingCleanup),
        "the deadline fired early:\n{}",
        history(&engine.events(job).await.unwrap())
    );
    assert!(!fabric.residue().is_empty(), "test VMs deleted early");

    // It fires once seven days have really elapsed.
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::TestForciblyEnded);
    fired_on_time(opened.elapsed(), open_ms, due);
    let closure = engine.job(job).await.unwrap().unwrap().test.unwrap();
    assert!(closure.forced);
    assert!(
        closure.at >= due,
        "closed at {} before due {due}",
        closure.at
    );
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_backward_does_not_lose_or_delay_the_test_deadline() {
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;
    let (job, opened) = open_test(&engine).await;
    let open_ms = clock.now_ms();
    let due = deadline(&engine, job).await;
    assert!(due >= T0 + SEVEN_DAYS_MS);

    // The clock is set back a day (an NTP correction, a wrong manual fix).
    clock.jump_back(DAY);
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::TestForciblyEnded);
    // Fired after seven days of real elapsed time, not eight.
    fired_on_time(opened.elapsed(), open_ms, due);
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
}

#[tokio::test(start_paused = true)]
async fn a_wait_step_lasts_its_duration_across_a_wall_clock_jump() {
    // Planned failover: after `verify-health` is answered, the one-minute
    // `settle` wait is armed; the wall clock jumps a day ahead right then.
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let engine = engine(mem(), fabric.clone(), clock.clone(), &s.inventory).await;
    let job = engine
        .submit(submission(&s, FailoverKind::Planned))
        .await
        .unwrap();
    answer_verify_health(&engine, job).await;
    let answered = tokio::time::Instant::now();
    clock.jump(DAY);
    let end = wait(&engine, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::Succeeded);
    let events = engine.events(job).await.unwrap();
    let answered_at = events
        .iter()
        .find_map(|e| match e {
            JobEvent::ManualAnswered { at, .. } => Some(*at),
            _ => None,
        })
        .unwrap();
    let fired_at = events
        .iter()
        .find_map(|e| match e {
            JobEvent::TimerFired {
                timer: TimerId::Wait { .. },
                at,
            } => Some(*at),
            _ => None,
        })
        .expect("the settle wait fired");
    // Engine time: exactly the wait, not the jump.
    assert!(
        (answered_at + 60_000..answered_at + 61_000).contains(&fired_at),
        "settle fired {} ms after the answer",
        fired_at as i64 - answered_at as i64
    );
    // And in elapsed (virtual) time the job went on after the minute.
    assert!(answered.elapsed() >= Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn across_a_restart_the_wall_clock_is_the_reference() {
    // The engine stops with the test open; while it is down the clock goes
    // back a day. The next engine anchors to the wall clock as it is:
    // the deadline, an absolute time, fires a day of elapsed time later
    // than seven days after opening (documented: no monotonic reference
    // survives a restart). It is not lost.
    let s = three_tier();
    let fabric = sim(&s.inventory, &[]);
    let clock = Arc::new(TestClock::new(T0));
    let store = mem();
    let first = engine(store.clone(), fabric.clone(), clock.clone(), &s.inventory).await;
    let (job, opened) = open_test(&first).await;
    let open_ms = clock.now_ms();
    let due = deadline(&first, job).await;
    first.shutdown().await;
    drop(first);

    clock.jump_back(DAY);
    let second = engine(store, fabric.clone(), clock.clone(), &s.inventory).await;
    let end = wait(&second, job, |s| s.is_terminal()).await;
    assert_eq!(end, JobStatus::TestForciblyEnded);
    let closure = second.job(job).await.unwrap().unwrap().test.unwrap();
    assert!(closure.at >= due, "fired before its due time");
    // A day later than the deadline's duration: the wall clock's day.
    fired_on_time(opened.elapsed(), open_ms, due + SEVEN_DAYS_MS / 7);
    assert!(fabric.residue().is_empty(), "{:?}", fabric.residue());
}
