//! The latency monitor (`LATENCY LATEST/HISTORY/RESET`, as Redis's `latency.c`).
//!
//! With `latency-monitor-threshold` set to N milliseconds (0, the default, turns it off),
//! every event that takes N ms or more is sampled under its event name: `command` and
//! `fast-command` (commands Redis flags `fast`), as Redis names them. Each event keeps its
//! last 160 samples, one per second at most (two in the same second keep the larger), and
//! the largest ever seen.
//!
//! Only events at or past the threshold take the mutex, so the monitor costs nothing on
//! the hot path beyond the comparison.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
const SAMPLES: usize = 160;

#[derive(Default, Clone, Debug)]
pub struct Series {
    /// (unix seconds, ms), oldest first.
    pub samples: VecDeque<(i64, u64)>,
    pub max: u64,
}

#[derive(Default)]
pub struct LatencyMonitor {
    /// Milliseconds; 0: off.
    pub threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl LatencyMonitor {
    pub fn new(threshold_ms: u64) -> Self {
        LatencyMonitor {
            threshold_ms: AtomicU64::new(threshold_ms),
            events: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Series>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `ms` for `event` if the monitor is on and `ms` reaches its threshold.
    pub fn sample_if_needed(&self, event: &'static str, ms: u64) {
        let t = self.threshold_ms.load(Ordering::Relaxed);
        if t > 0 && ms >= t {
            self.sample(event, crate::clock::now_ms() / 1000, ms);
        }
    }

    fn sample(&self, event: &'static str, now_secs: i64, ms: u64) {
        let mut events = self.lock();
        let s = events.entry(event).or_default();
        s.max = s.max.max(ms);
        match s.samples.back_mut() {
            Some(last) if last.0 == now_secs => last.1 = last.1.max(ms),
            _ => {
                s.samples.push_back((now_secs, ms));
                if s.samples.len() > SAMPLES {
                    s.samples.pop_front();
                }
            }
        }
    }

    /// `LATENCY LATEST`: (event, time of the latest sample, its ms, the largest ms).
    pub fn latest(&self) -> Vec<(&'static str, i64, u64, u64)> {
        self.lock()
            .iter()
            .filter_map(|(name, s)| s.samples.back().map(|&(t, ms)| (*name, t, ms, s.max)))
            .collect()
    }

    /// `LATENCY HISTORY event`: its samples, oldest first (none for an unknown event).
    pub fn history(&self, event: &[u8]) -> Vec<(i64, u64)> {
        self.lock()
            .iter()
            .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(event))
            .map(|(_, s)| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// `LATENCY RESET [event …]`: how many events had samples and were cleared.
    pub fn reset(&self, events: &[&[u8]]) -> usize {
        let mut all = self.lock();
        if events.is_empty() {
            let n = all.len();
            all.clear();
            return n;
        }
        let before = all.len();
        all.retain(|name, _| {
            !events
                .iter()
                .any(|e| name.as_bytes().eq_ignore_ascii_case(e))
        });
        before - all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_at_or_over_the_threshold_are_kept_one_per_second() {
        let m = LatencyMonitor::new(0);
        m.sample_if_needed("command", 500);
        assert!(m.latest().is_empty(), "threshold 0 is off");
        m.threshold_ms.store(10, Ordering::Relaxed);
        m.sample_if_needed("command", 9);
        assert!(m.latest().is_empty());
        m.sample("command", 100, 10);
        m.sample("command", 100, 30);
        m.sample("command", 100, 20);
        m.sample("command", 101, 12);
        assert_eq!(m.history(b"command"), [(100, 30), (101, 12)]);
        assert_eq!(m.latest(), [("command", 101, 12, 30)]);
        for t in 0..200 {
            m.sample("fast-command", 1000 + t, 11);
        }
        assert_eq!(m.history(b"FAST-COMMAND").len(), SAMPLES);
        assert_eq!(m.reset(&[b"command", b"nosuch"]), 1);
        assert_eq!(m.reset(&[]), 1);
        assert!(m.latest().is_empty());
    }
}
