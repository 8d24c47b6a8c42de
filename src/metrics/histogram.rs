//! A latency histogram cheap enough to record every command.
//!
//! Prometheus histograms are cumulative counts over fixed upper bounds. Recording is a
//! search over the bounds and two relaxed atomic adds; reading (a scrape, once every few
//! seconds) sums the stripes. Each stripe sits on its own cache lines so that the worker
//! threads recording commands of different clients do not bounce one line between cores;
//! the stripe is chosen by the caller (a client id), so one client's records stay on one
//! stripe.
//!
//! The bounds (10 µs to 10 s) cover an in-memory command on a loopback connection (tens of
//! microseconds), an upstream round trip (hundreds), an fsync (milliseconds) and a
//! pathological command or stalled disk (seconds). Counts beyond the last bound land in
//! `+Inf`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (`+Inf` follows).
pub const BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets: one per bound, and `+Inf`.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;
const STRIPES: usize = 4;

#[repr(align(128))]
#[derive(Default)]
struct Stripe {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

#[derive(Default)]
pub struct Histogram {
    stripes: [Stripe; STRIPES],
}

/// What a scrape reads: per-bucket counts (not cumulative), their total and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub counts: [u64; BUCKETS],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Snapshot {
    /// `(upper bound in seconds, count)` pairs, the last bound `f64::MAX` for `+Inf`, as the
    /// Prometheus encoder wants them.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS_US
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// An estimate of quantile `q` (0..1): the upper bound of the bucket it falls in, in
    /// microseconds (`None` with no samples; the last finite bound for `+Inf`).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_US[i.min(BOUNDS_US.len() - 1)]);
            }
        }
        BOUNDS_US.last().copied()
    }

    /// The difference from an earlier snapshot of the same histogram.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut d = Snapshot::default();
        for i in 0..BUCKETS {
            d.counts[i] = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        d.count = self.count.saturating_sub(earlier.count);
        d.sum_seconds = (self.sum_seconds - earlier.sum_seconds).max(0.0);
        d
    }
}

impl Histogram {
    pub fn record(&self, stripe: u64, elapsed: Duration) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let i = BOUNDS_US.partition_point(|&b| b < us);
        let s = &self.stripes[stripe as usize % STRIPES];
        s.counts[i].fetch_add(1, Ordering::Relaxed);
        s.sum_ns.fetch_add(
            elapsed.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut sum_ns = 0u64;
        for s in &self.stripes {
            for (i, c) in s.counts.iter().enumerate() {
                snap.counts[i] += c.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(s.sum_ns.load(Ordering::Relaxed));
        }
        snap.count = snap.counts.iter().sum();
        snap.sum_seconds = sum_ns as f64 / 1e9;
        snap
    }
}

/// A latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The calls in Prometheus's buckets (`/metrics`; not in the admin API's JSON).
    #[serde(skip)]
    pub buckets: [u64; BUCKETS],
    #[serde(skip)]
    pub sum_ns: u64,
}

impl Latency {
    /// The bucket counts as a histogram snapshot.
    pub fn histogram(&self) -> Snapshot {
        Snapshot {
            counts: self.buckets,
            count: self.buckets.iter().sum(),
            sum_seconds: self.sum_ns as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_bucket_whose_bound_covers_them() {
        let h = Histogram::default();
        h.record(0, Duration::from_micros(10)); // le 10 µs
        h.record(1, Duration::from_micros(11)); // le 25 µs
        h.record(2, Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[BUCKETS - 1], 1);
        assert!((s.sum_seconds - 60.000021).abs() < 1e-9);
        let b = s.buckets();
        assert_eq!(b[0], (0.00001, 1));
        assert_eq!(b[BUCKETS - 1], (f64::MAX, 1));
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(0, Duration::from_micros(40));
        }
        h.record(0, Duration::from_millis(3));
        let s = h.snapshot();
        assert_eq!(s.quantile_us(0.5), Some(50));
        assert_eq!(s.quantile_us(0.99), Some(50));
        assert_eq!(s.quantile_us(1.0), Some(5_000));
        assert_eq!(Histogram::default().snapshot().quantile_us(0.5), None);
        let later = {
            h.record(0, Duration::from_micros(5));
            h.snapshot()
        };
        let d = later.since(&s);
        assert_eq!(d.count, 1);
        assert_eq!(d.counts[0], 1);
    }
}
