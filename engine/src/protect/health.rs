//! Replication health of one protected VM: its latest recovery point and
//! latest app-consistent point, the lag against the policy's copy
//! frequency, and a level with documented thresholds.
//!
//! Thresholds (F = the policy's copy frequency; lag = now − the latest
//! recovery point received):
//!
//! | level | when |
//! | --- | --- |
//! | healthy | replication runs and lag ≤ 2·F (the delta of the current interval is in flight: normal) |
//! | warning | replication runs and 2·F < lag ≤ 6·F (deltas are late: more than one interval missed), or the policy takes app-consistent snapshots and none is kept, or the newest is older than 2 × their frequency |
//! | critical | lag > 6·F; replication is stopped, paused (a site or host it needs is down) or off while the VM counts as protected; or no recovery point yet more than 2·F after replication started |
//!
//! A VM that is not protected has no health level (`not-applicable`).
//! Pure: every input, including `now`, is an argument.

use serde::{Deserialize, Serialize};

use crate::core::Millis;
use crate::fabric::points::{PointInfo, PointPolicy};

/// The health level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Healthy,
    Warning,
    Critical,
    /// Not protected: no replication to judge.
    NotApplicable,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::NotApplicable => "-",
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lag (in copy intervals) above which health is a warning.
pub const WARNING_INTERVALS: u64 = 2;
/// Lag (in copy intervals) above which health is critical.
pub const CRITICAL_INTERVALS: u64 = 6;

/// What replication is doing, as the fabric reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicating {
    /// Deltas ship; `since` = when replication (after the initial copy)
    /// started.
    Active { since: Millis },
    /// Deltas would ship but a site or host they need is down (why).
    Paused { since: Millis, why: String },
    /// Replication stopped (failover) at this time.
    Stopped { at: Millis },
    /// No replication.
    Off,
}

/// The health of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub level: Level,
    /// The latest recovery point (Unix ms).
    pub latest: Option<Millis>,
    pub latest_app_consistent: Option<Millis>,
    /// now − latest point.
    pub lag_ms: Option<u64>,
    /// The copy frequency it is judged against.
    pub copy_every_ms: u64,
    /// How many recovery points the retention window keeps now.
    pub points: usize,
    /// Why the level is what it is, in the operator's words.
    pub reason: String,
}

/// Judge replication health (see the module docs for the thresholds).
pub fn assess(
    policy: &PointPolicy,
    replicating: &Replicating,
    points: &[PointInfo],
    now: Millis,
) -> Health {
    let f = policy.copy_every_ms.max(1);
    let latest = points.iter().map(|p| p.at).max();
    let latest_app = points
        .iter()
        .filter(|p| p.app_consistent)
        .map(|p| p.at)
        .max();
    let lag = latest.map(|l| now.saturating_sub(l));
    let mut h = Health {
        level: Level::Healthy,
        latest,
        latest_app_consistent: latest_app,
        lag_ms: lag,
        copy_every_ms: f,
        points: points.len(),
        reason: String::new(),
    };
    let secs = |ms: u64| humantime::format_duration(std::time::Duration::from_secs(ms / 1000));
    let (level, reason) = match replicating {
        Replicating::Off => (Level::Critical, "replication is off".to_string()),
        Replicating::Stopped { .. } => (
            Level::Critical,
            "replication is stopped (failed over): no new recovery points".to_string(),
        ),
        Replicating::Paused { why, .. } => {
            (Level::Critical, format!("replication is paused: {why}"))
        }
        Replicating::Active { since } => match lag {
            None if now.saturating_sub(*since) > WARNING_INTERVALS * f => (
                Level::Critical,
                format!(
                    "no recovery point {} after replication started",
                    secs(now.saturating_sub(*since))
                ),
            ),
            None => (
                Level::Healthy,
                "replication started; the first recovery point is due within one interval"
                    .to_string(),
            ),
            Some(l) if l > CRITICAL_INTERVALS * f => (
                Level::Critical,
                format!(
                    "lag {} is over {CRITICAL_INTERVALS}× the copy frequency",
                    secs(l)
                ),
            ),
            Some(l) if l > WARNING_INTERVALS * f => (
                Level::Warning,
                format!(
                    "lag {} is over {WARNING_INTERVALS}× the copy frequency",
                    secs(l)
                ),
            ),
            Some(l) => (
                Level::Healthy,
                format!("lag {} (copy every {})", secs(l), secs(f)),
            ),
        },
    };
    h.level = level;
    h.reason = reason;
    // App-consistent points: only a warning, and only when replication is
    // otherwise fine (a critical reason is the one to act on).
    if h.level == Level::Healthy
        && let (Some(every), Replicating::Active { since }) =
            (policy.app_consistent_every_ms, replicating)
    {
        let old_enough = now.saturating_sub(*since) > 2 * every;
        match latest_app {
            None if old_enough => {
                h.level = Level::Warning;
                h.reason = format!(
                    "no app-consistent recovery point kept (policy: every {})",
                    secs(every)
                );
            }
            Some(a) if now.saturating_sub(a) > 2 * every => {
                h.level = Level::Warning;
                h.reason = format!(
                    "the latest app-consistent point is {} old (policy: every {})",
                    secs(now.saturating_sub(a)),
                    secs(every)
                );
            }
            _ => {}
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn policy() -> PointPolicy {
        PointPolicy {
            copy_every_ms: 5 * MIN,
            retention_ms: 12 * 60 * MIN,
            app_consistent_every_ms: Some(4 * 60 * MIN),
        }
    }

    fn pt(at: Millis, app: bool) -> PointInfo {
        PointInfo {
            at,
            app_consistent: app,
        }
    }

    #[test]
    fn thresholds_are_two_and_six_intervals() {
        let p = policy();
        let active = Replicating::Active { since: 0 };
        let base = 10 * 60 * MIN; // app-consistent at 8 h, within 2 × 4 h
        let pts = [pt(8 * 60 * MIN, true), pt(base, false)];
        let at = |lag| assess(&p, &active, &pts, base + lag);
        assert_eq!(at(0).level, Level::Healthy);
        assert_eq!(at(10 * MIN).level, Level::Healthy);
        assert_eq!(at(10 * MIN + 1).level, Level::Warning);
        assert_eq!(at(30 * MIN).level, Level::Warning);
        assert_eq!(at(30 * MIN + 1).level, Level::Critical);
        assert_eq!(at(7 * MIN).lag_ms, Some(7 * MIN));
        assert_eq!(at(0).latest_app_consistent, Some(8 * 60 * MIN));
    }

    #[test]
    fn stopped_paused_off_are_critical() {
        let p = policy();
        let pts = [pt(5 * MIN, false)];
        for r in [
            Replicating::Off,
            Replicating::Stopped { at: 5 * MIN },
            Replicating::Paused {
                since: 0,
                why: "host hv-s01 is down".into(),
            },
        ] {
            let h = assess(&p, &r, &pts, 6 * MIN);
            assert_eq!(h.level, Level::Critical, "{r:?}");
        }
        let h = assess(
            &p,
            &Replicating::Paused {
                since: 0,
                why: "host hv-s01 is down".into(),
            },
            &pts,
            6 * MIN,
        );
        assert!(h.reason.contains("hv-s01"), "{}", h.reason);
    }

    #[test]
    fn a_new_replication_is_healthy_until_its_first_point_is_overdue() {
        let p = policy();
        let r = Replicating::Active { since: 100 * MIN };
        assert_eq!(assess(&p, &r, &[], 101 * MIN).level, Level::Healthy);
        assert_eq!(assess(&p, &r, &[], 111 * MIN).level, Level::Critical);
    }

    #[test]
    fn missing_app_consistent_points_warn() {
        let p = policy();
        let r = Replicating::Active { since: 0 };
        let now = 20 * 60 * MIN;
        let h = assess(&p, &r, &[pt(now - MIN, false)], now);
        assert_eq!(h.level, Level::Warning);
        assert!(h.reason.contains("app-consistent"), "{}", h.reason);
        let fresh = assess(
            &p,
            &r,
            &[pt(16 * 60 * MIN, true), pt(now - MIN, false)],
            now,
        );
        assert_eq!(fresh.level, Level::Healthy, "{}", fresh.reason);
    }
}
