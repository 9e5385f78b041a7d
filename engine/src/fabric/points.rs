//! Recovery points, derived from a replication policy and the replication's
//! history instead of stored one by one (a 30 s policy with 24 h retention
//! keeps 2,880 of them per VM).
//!
//! Model: deltas ship at every multiple of the copy frequency since the Unix
//! epoch, from the moment replication started until it stopped (or `now`).
//! Each is a crash-consistent point; those at a multiple of the app-consistent
//! frequency are app-consistent. Points older than the retention window are
//! gone (retention 0 keeps only the latest). The replica applies deltas one
//! interval behind: the latest *processed* point is the one before the latest
//! *received*. A final delta (planned failover, source shut down cleanly) is
//! one more point, app-consistent, and the newest.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::Millis;
use crate::plan::compile::RecoveryPoint;
use crate::plan::model::Policy;

/// The policy numbers recovery points depend on, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointPolicy {
    pub copy_every_ms: u64,
    /// 0 = only the latest point is kept.
    pub retention_ms: u64,
    pub app_consistent_every_ms: Option<u64>,
}

impl PointPolicy {
    pub fn of(p: &Policy) -> PointPolicy {
        PointPolicy {
            copy_every_ms: (p.copy_frequency.as_millis() as u64).max(1),
            retention_ms: p.retention_hours as u64 * 3_600_000,
            app_consistent_every_ms: p
                .app_consistent_frequency
                .map(|d| (d.as_millis() as u64).max(1)),
        }
    }
}

impl Default for PointPolicy {
    /// 5 minutes, 24 h retention, app-consistent every 4 h.
    fn default() -> PointPolicy {
        PointPolicy {
            copy_every_ms: 300_000,
            retention_ms: 24 * 3_600_000,
            app_consistent_every_ms: Some(4 * 3_600_000),
        }
    }
}

/// The replication history points are derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// When replication (initial copy done) started.
    pub since: Millis,
    /// When it stopped (failover, stop replication), if it did.
    pub stopped_at: Option<Millis>,
    /// The final delta shipped (planned failover), if any.
    pub final_delta: Option<Millis>,
    /// Set by a commit: every point but this one is discarded.
    pub only: Option<PointUsed>,
}

/// A recovery point a failover used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointUsed {
    /// When the point was taken (Unix ms).
    pub at: Millis,
    pub app_consistent: bool,
    /// What the operator asked for.
    pub requested: RecoveryPoint,
    /// The point is the final delta a planned failover shipped (absent in
    /// states and reports of older drplan: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_delta: bool,
}

impl fmt::Display for PointUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}{})",
            fmt_time(self.at),
            if self.final_delta {
                "final sync, app-consistent"
            } else if self.app_consistent {
                "app-consistent"
            } else {
                "crash-consistent"
            },
            match self.requested {
                RecoveryPoint::Latest => ", latest".to_string(),
                RecoveryPoint::LatestProcessed => ", latest processed".to_string(),
                RecoveryPoint::LatestAppConsistent => ", latest app-consistent".to_string(),
                RecoveryPoint::At(t) => format!(", asked for at or before {}", fmt_time(t * 1000)),
            }
        )
    }
}

/// RFC 3339, to the second.
pub fn fmt_time(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One available point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInfo {
    pub at: Millis,
    pub app_consistent: bool,
}

impl History {
    /// The newest instant a point can have.
    fn newest(&self, now: Millis) -> Millis {
        self.final_delta
            .or(self.stopped_at)
            .unwrap_or(now)
            .min(now.max(self.since))
    }

    /// The latest regular (per copy frequency) point, if any was taken yet.
    fn latest_tick(&self, p: &PointPolicy, now: Millis) -> Option<Millis> {
        let t = self.newest(now) / p.copy_every_ms * p.copy_every_ms;
        (t >= self.since).then_some(t)
    }

    /// The oldest instant still kept.
    fn oldest_kept(&self, p: &PointPolicy, now: Millis) -> Option<Millis> {
        let latest = self.final_delta.or(self.latest_tick(p, now))?;
        Some(if p.retention_ms == 0 {
            latest
        } else {
            latest.saturating_sub(p.retention_ms).max(self.since)
        })
    }

    fn is_app(p: &PointPolicy, t: Millis) -> bool {
        p.app_consistent_every_ms
            .is_some_and(|a| t.is_multiple_of(a))
    }

    /// Every point available at `now`, oldest first.
    pub fn points(&self, p: &PointPolicy, now: Millis) -> Vec<PointInfo> {
        if let Some(only) = self.only {
            return vec![PointInfo {
                at: only.at,
                app_consistent: only.app_consistent,
            }];
        }
        let mut out = Vec::new();
        let (Some(oldest), latest) = (self.oldest_kept(p, now), self.latest_tick(p, now)) else {
            return out;
        };
        if let Some(latest) = latest {
            let mut t = oldest.div_ceil(p.copy_every_ms) * p.copy_every_ms;
            while t <= latest {
                if Some(t) != self.final_delta {
                    out.push(PointInfo {
                        at: t,
                        app_consistent: Self::is_app(p, t),
                    });
                }
                t += p.copy_every_ms;
            }
        }
        if let Some(f) = self.final_delta {
            out.push(PointInfo {
                at: f,
                app_consistent: true,
            });
        }
        out
    }

    /// The point a request selects, or why there is none.
    pub fn select(
        &self,
        p: &PointPolicy,
        now: Millis,
        requested: RecoveryPoint,
    ) -> Result<PointUsed, String> {
        let pts = self.points(p, now);
        let Some(last) = pts.last().copied() else {
            return Err(
                "no recovery point exists yet (initial replication has not completed)".to_string(),
            );
        };
        let used = |pt: PointInfo| PointUsed {
            at: pt.at,
            app_consistent: pt.app_consistent,
            requested,
            final_delta: Some(pt.at) == self.final_delta,
        };
        match requested {
            RecoveryPoint::Latest => Ok(used(last)),
            RecoveryPoint::LatestProcessed => {
                // A final delta is processed before the failover proceeds;
                // otherwise the replica is one interval behind.
                if self.final_delta.is_some() || pts.len() == 1 {
                    Ok(used(last))
                } else {
                    Ok(used(pts[pts.len() - 2]))
                }
            }
            RecoveryPoint::LatestAppConsistent => pts
                .iter()
                .rev()
                .find(|pt| pt.app_consistent)
                .map(|pt| used(*pt))
                .ok_or_else(|| {
                    if p.app_consistent_every_ms.is_none() {
                        "its replication policy takes no app-consistent snapshots".to_string()
                    } else {
                        format!(
                            "no app-consistent recovery point is kept (the oldest point kept is {})",
                            fmt_time(pts[0].at)
                        )
                    }
                }),
            RecoveryPoint::At(secs) => {
                let t = secs.saturating_mul(1000);
                pts.iter()
                    .rev()
                    .find(|pt| pt.at <= t)
                    .map(|pt| used(*pt))
                    .ok_or_else(|| {
                        format!(
                            "no recovery point at or before {}: the oldest kept is {}",
                            fmt_time(t),
                            fmt_time(pts[0].at)
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn pol(retention_h: u64) -> PointPolicy {
        PointPolicy {
            copy_every_ms: 300_000,
            retention_ms: retention_h * H,
            app_consistent_every_ms: Some(4 * H),
        }
    }

    fn hist(since: Millis) -> History {
        History {
            since,
            stopped_at: None,
            final_delta: None,
            only: None,
        }
    }

    #[test]
    fn points_follow_the_policy() {
        let now = 100 * H + 7 * 60_000; // 100 h 7 min
        let h = hist(0);
        let pts = h.points(&pol(12), now);
        // 12 h of 5-minute points, both ends included.
        assert_eq!(pts.len(), 12 * 12 + 1);
        assert_eq!(pts.last().unwrap().at, 100 * H + 5 * 60_000);
        assert_eq!(pts.first().unwrap().at, 88 * H + 5 * 60_000);
        let latest = h.select(&pol(12), now, RecoveryPoint::Latest).unwrap();
        assert_eq!(latest.at, 100 * H + 5 * 60_000);
        let processed = h
            .select(&pol(12), now, RecoveryPoint::LatestProcessed)
            .unwrap();
        assert_eq!(processed.at, 100 * H);
        let app = h
            .select(&pol(12), now, RecoveryPoint::LatestAppConsistent)
            .unwrap();
        assert_eq!(app.at, 100 * H);
        assert!(app.app_consistent);
        let at = h
            .select(&pol(12), now, RecoveryPoint::At((95 * H + 1234) / 1000))
            .unwrap();
        assert_eq!(at.at, 95 * H);
        let too_old = h.select(&pol(12), now, RecoveryPoint::At(H / 1000));
        assert!(too_old.unwrap_err().contains("oldest kept"));
    }

    #[test]
    fn zero_retention_keeps_only_the_latest() {
        let now = 10 * H + 1;
        let pts = hist(0).points(&pol(0), now);
        assert_eq!(pts.len(), 1);
    }

    #[test]
    fn final_delta_is_the_newest_app_consistent_point() {
        let now = 10 * H + 90_000;
        let mut h = hist(0);
        h.final_delta = Some(10 * H + 60_000);
        h.stopped_at = Some(10 * H + 60_000);
        let p = h.select(&pol(12), now, RecoveryPoint::Latest).unwrap();
        assert_eq!(p.at, 10 * H + 60_000);
        assert!(p.app_consistent);
    }

    #[test]
    fn no_point_before_replication_started() {
        let h = hist(10 * H + 1);
        assert!(
            h.select(&pol(12), 10 * H + 2, RecoveryPoint::Latest)
                .is_err()
        );
    }
}
