//! Capacity estimate (the reference product's capacity-planning step):
//! from VM disk sizes, a daily change rate and the copy frequency, the
//! bandwidth initial and delta replication need, how long the initial copy
//! takes at a given bandwidth, and the replica storage recovery points use.
//!
//! Model (documented in docs/protection.md; GB = 10^9 bytes, Mbit = 10^6
//! bits):
//! - initial copy = the disks' size × the compression factor (0.5 when the
//!   policy compresses, else 1.0);
//! - daily change = disks × change rate; deltas are bursty, so the
//!   bandwidth delta replication needs is the daily average × the peak
//!   factor (default 3: a busy hour writes three times the average hour),
//!   compressed like the initial copy; each cycle ships
//!   `daily change / (86,400 s / F) × peak` and must fit in one interval F;
//! - recovery-point storage on the replica ≈ retention hours × the hourly
//!   change (uncompressed: points are stored as differencing disks).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to estimate for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityInput {
    /// Each VM's disk size in GB.
    pub disks_gb: Vec<u64>,
    /// Fraction of the disks written per day (0.05 = 5 %).
    pub daily_change: f64,
    /// The policy's copy frequency.
    pub copy_every: Duration,
    pub retention_hours: u32,
    pub compression: bool,
    /// The bandwidth available for replication, Mbit/s.
    pub bandwidth_mbps: f64,
    /// Busy-hour factor over the average change rate.
    pub peak_factor: f64,
    /// The initial copy should finish within this (optional).
    pub initial_window: Option<Duration>,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityEstimate {
    pub vms: usize,
    pub total_disk_gb: u64,
    /// Bytes the initial copy moves (after compression), in GB.
    pub initial_gb: f64,
    /// How long the initial copy takes at `bandwidth_mbps`.
    pub initial_time: Duration,
    /// The bandwidth to finish the initial copy within the window, Mbit/s.
    pub initial_mbps_for_window: Option<f64>,
    /// Data changed per day, GB.
    pub daily_change_gb: f64,
    /// The bandwidth delta replication needs at busy hours, Mbit/s.
    pub delta_mbps: f64,
    /// One cycle's delta at busy hours, MB.
    pub delta_per_cycle_mb: f64,
    /// Replica storage for the kept recovery points, GB.
    pub recovery_point_storage_gb: f64,
    /// Whether `bandwidth_mbps` carries the delta replication.
    pub bandwidth_suffices: bool,
}

/// Why the input cannot be estimated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("the daily change rate must be between 0 and 100 %, not {0}")]
    ChangeRate(String),
    #[error("the bandwidth must be a positive number of Mbit/s, not {0}")]
    Bandwidth(String),
    #[error("the peak factor must be at least 1, not {0}")]
    Peak(String),
    #[error("the copy frequency must be longer than zero")]
    CopyFrequency,
}

pub fn estimate(i: &CapacityInput) -> Result<CapacityEstimate, CapacityError> {
    if !(i.daily_change.is_finite() && (0.0..=1.0).contains(&i.daily_change)) {
        return Err(CapacityError::ChangeRate(format!(
            "{} %",
            i.daily_change * 100.0
        )));
    }
    if !(i.bandwidth_mbps.is_finite() && i.bandwidth_mbps > 0.0) {
        return Err(CapacityError::Bandwidth(i.bandwidth_mbps.to_string()));
    }
    if !(i.peak_factor.is_finite() && i.peak_factor >= 1.0) {
        return Err(CapacityError::Peak(i.peak_factor.to_string()));
    }
    if i.copy_every.is_zero() {
        return Err(CapacityError::CopyFrequency);
    }
    let total: u64 = i.disks_gb.iter().sum();
    let compress = if i.compression { 0.5 } else { 1.0 };
    let initial_gb = total as f64 * compress;
    let initial_secs = initial_gb * 8_000.0 / i.bandwidth_mbps;
    let daily_change_gb = total as f64 * i.daily_change;
    let avg_mbps = daily_change_gb * 8_000.0 / 86_400.0;
    let delta_mbps = avg_mbps * i.peak_factor * compress;
    let cycles_per_day = 86_400.0 / i.copy_every.as_secs_f64();
    let delta_per_cycle_mb = daily_change_gb * 1000.0 / cycles_per_day * i.peak_factor * compress;
    let recovery_point_storage_gb = daily_change_gb / 24.0 * i.retention_hours as f64;
    Ok(CapacityEstimate {
        vms: i.disks_gb.len(),
        total_disk_gb: total,
        initial_gb,
        initial_time: Duration::try_from_secs_f64(initial_secs).unwrap_or(Duration::MAX),
        initial_mbps_for_window: i
            .initial_window
            .filter(|w| !w.is_zero())
            .map(|w| initial_gb * 8_000.0 / w.as_secs_f64()),
        daily_change_gb,
        delta_mbps,
        delta_per_cycle_mb,
        recovery_point_storage_gb,
        bandwidth_suffices: delta_mbps <= i.bandwidth_mbps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CapacityInput {
        CapacityInput {
            disks_gb: vec![500, 500],
            daily_change: 0.05,
            copy_every: Duration::from_secs(300),
            retention_hours: 12,
            compression: false,
            bandwidth_mbps: 1000.0,
            peak_factor: 3.0,
            initial_window: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn one_terabyte_at_one_gigabit() {
        let e = estimate(&input()).unwrap();
        assert_eq!(e.total_disk_gb, 1000);
        // 1,000 GB = 8,000,000 Mbit at 1,000 Mbit/s = 8,000 s.
        assert_eq!(e.initial_time, Duration::from_secs(8000));
        // 50 GB/day = 4.63 Mbit/s average, × 3 at peak.
        assert!((e.delta_mbps - 50.0 * 8000.0 / 86400.0 * 3.0).abs() < 1e-9);
        // 288 cycles a day: 50,000 MB / 288 × 3.
        assert!((e.delta_per_cycle_mb - 50_000.0 / 288.0 * 3.0).abs() < 1e-9);
        assert!((e.recovery_point_storage_gb - 25.0).abs() < 1e-9);
        assert!((e.initial_mbps_for_window.unwrap() - 8_000_000.0 / 3600.0).abs() < 1e-6);
        assert!(e.bandwidth_suffices);
    }

    #[test]
    fn compression_halves_what_crosses_the_link() {
        let mut i = input();
        let plain = estimate(&i).unwrap();
        i.compression = true;
        let c = estimate(&i).unwrap();
        assert_eq!(c.initial_time, plain.initial_time / 2);
        assert!((c.delta_mbps * 2.0 - plain.delta_mbps).abs() < 1e-9);
    }

    #[test]
    fn a_thin_link_does_not_carry_the_deltas() {
        let mut i = input();
        i.bandwidth_mbps = 10.0;
        assert!(!estimate(&i).unwrap().bandwidth_suffices);
    }

    #[test]
    fn bad_input_is_refused_with_the_value() {
        let mut i = input();
        i.daily_change = 1.5;
        assert!(estimate(&i).unwrap_err().to_string().contains("150 %"));
        let mut i = input();
        i.bandwidth_mbps = 0.0;
        assert!(estimate(&i).is_err());
        let mut i = input();
        i.peak_factor = 0.5;
        assert!(estimate(&i).is_err());
        let mut i = input();
        i.copy_every = Duration::ZERO;
        assert!(estimate(&i).is_err());
    }
}
