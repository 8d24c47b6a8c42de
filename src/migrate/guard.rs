//! The guarded ramp: step the migration back by itself when the store serving the current
//! stage degrades (`--migrate-guard errors=1%,p99=20ms,window=30s`).
//!
//! The first seed's first criterion for its dark launch was "favouring availability during
//! system degradation". Without a guard, in `live` a write fails while the new store is down
//! although the old store holds every session. With one, once a full window shows the
//! serving store past a bound (its share of failed calls, or its p99 call latency), the
//! stage steps back one (for example `live` → `shadow`, where the old store answers and is
//! written first), so writes keep working; the step is logged and audited with its reason.
//!
//! Rules:
//! * **Never forward.** The guard only steps back; going forward again is an operator's
//!   decision, once the store is healthy.
//! * **A full window of evidence.** A window starts at the later of the last step and the
//!   guard's start, so one bad second right after a step cannot cascade; and it needs at
//!   least [`MIN_CALLS`] calls, so a quiet store is not judged on three requests.
//! * **Failures, not client errors.** A failed call is one the store could not answer
//!   (connection lost, timeout, OOM), not `WRONGTYPE` or a bad integer: those are the
//!   client's own and say nothing about the store's health.

use std::time::Duration;

use super::stage::{Setting, Side, Stage};
use super::timed::WindowStats;

/// Calls a window needs before the guard judges the store.
pub const MIN_CALLS: u64 = 20;

/// `--migrate-guard`: the bounds and the window they are measured over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Failed calls as a fraction of all calls (0.01 for `errors=1%`).
    pub errors: Option<f64>,
    pub p99: Option<Duration>,
    pub window: Duration,
}

impl GuardConfig {
    /// Parses `errors=1%,p99=20ms,window=30s` (either bound may be left out; the window
    /// defaults to 30 s and is at most 60 s).
    pub fn parse(s: &str) -> Result<GuardConfig, String> {
        let mut g = GuardConfig {
            errors: None,
            p99: None,
            window: Duration::from_secs(30),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("migrate-guard: '{part}': expected name=value"))?;
            match k {
                "errors" => {
                    let pct = v
                        .strip_suffix('%')
                        .and_then(|n| n.parse::<f64>().ok())
                        .filter(|n| (0.0..=100.0).contains(n))
                        .ok_or_else(|| {
                            format!("migrate-guard: errors={v}: expected a percentage such as 1%")
                        })?;
                    g.errors = Some(pct / 100.0);
                }
                "p99" => g.p99 = Some(duration(v, "p99")?),
                "window" => g.window = duration(v, "window")?,
                _ => {
                    return Err(format!(
                        "migrate-guard: unknown bound '{k}' (errors, p99, window)"
                    ))
                }
            }
        }
        if g.errors.is_none() && g.p99.is_none() {
            return Err("migrate-guard: give errors=N% and/or p99=DURATION".into());
        }
        if g.window < Duration::from_secs(1) || g.window > Duration::from_secs(60) {
            return Err("migrate-guard: window must be 1s to 60s".into());
        }
        Ok(g)
    }

    /// The guard's setting as it was given (`CONFIG GET`, the console).
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = self.errors {
            parts.push(format!("errors={}%", e * 100.0));
        }
        if let Some(p) = self.p99 {
            parts.push(format!("p99={}ms", p.as_millis()));
        }
        parts.push(format!("window={}s", self.window.as_secs()));
        parts.join(",")
    }
}

fn duration(v: &str, what: &str) -> Result<Duration, String> {
    let bad = || format!("migrate-guard: {what}={v}: expected a duration such as 20ms or 30s");
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(bad()),
    }
}

/// What the guard decided about one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within bounds, or not enough evidence yet.
    Healthy,
    /// Step back, for this reason.
    StepBack(String),
}

/// Judges the serving store's last window against the bounds.
pub fn judge(cfg: &GuardConfig, serving: &str, w: &WindowStats) -> Verdict {
    if w.calls < MIN_CALLS {
        return Verdict::Healthy;
    }
    if let Some(limit) = cfg.errors {
        let ratio = w.failures as f64 / w.calls as f64;
        if ratio > limit {
            return Verdict::StepBack(format!(
                "{serving} store failed {} of {} calls ({:.1}%) in the last {}s, over the {}% bound",
                w.failures,
                w.calls,
                ratio * 100.0,
                w.seconds,
                limit * 100.0
            ));
        }
    }
    if let (Some(limit), Some(p99)) = (cfg.p99, w.latency.quantile_us(0.99)) {
        if Duration::from_micros(p99) > limit {
            return Verdict::StepBack(format!(
                "{serving} store p99 call latency reached {} ms in the last {}s, over the {} ms bound",
                p99 as f64 / 1000.0,
                w.seconds,
                limit.as_millis()
            ));
        }
    }
    Verdict::Healthy
}

/// The setting one stage back, same percentage; `None` at `off`.
pub fn step_back(s: Setting) -> Option<Setting> {
    if s.stage == Stage::Off {
        return None;
    }
    Setting::new(s.stage.previous(), s.percent()).ok()
}

/// Which store serves a stage, by name.
pub fn serving_side(stage: Stage) -> (Side, &'static str) {
    match stage.plan().serve {
        Side::Old => (Side::Old, "old"),
        Side::New => (Side::New, "new"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::Snapshot;

    fn window(calls: u64, failures: u64, p99_bucket: usize) -> WindowStats {
        let mut latency = Snapshot::default();
        latency.counts[p99_bucket] = calls;
        latency.count = calls;
        WindowStats {
            calls,
            failures,
            latency,
            seconds: 30,
        }
    }

    #[test]
    fn parses_the_documented_form() {
        let g = GuardConfig::parse("errors=1%,p99=20ms,window=30s").unwrap();
        assert_eq!(g.errors, Some(0.01));
        assert_eq!(g.p99, Some(Duration::from_millis(20)));
        assert_eq!(g.window, Duration::from_secs(30));
        assert_eq!(g.render(), "errors=1%,p99=20ms,window=30s");
        assert_eq!(
            GuardConfig::parse("errors=5%").unwrap().window,
            Duration::from_secs(30)
        );
        for bad in [
            "",
            "window=10s",
            "errors=1",
            "p99=20",
            "errors=1%,window=0s",
            "speed=1%",
            "errors=101%",
        ] {
            assert!(GuardConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn judges_failures_and_latency_only_with_enough_calls() {
        let g = GuardConfig::parse("errors=1%,p99=20ms,window=30s").unwrap();
        assert_eq!(
            judge(&g, "new", &window(10, 10, 0)),
            Verdict::Healthy,
            "too few calls"
        );
        assert_eq!(
            judge(&g, "new", &window(1000, 10, 0)),
            Verdict::Healthy,
            "1.0% is not over 1%"
        );
        assert!(
            matches!(judge(&g, "new", &window(1000, 11, 0)), Verdict::StepBack(r) if r.contains("11 of 1000"))
        );
        // Bucket 10 is ≤ 25 ms: over 20 ms.
        assert!(
            matches!(judge(&g, "new", &window(1000, 0, 10)), Verdict::StepBack(r) if r.contains("p99"))
        );
        assert_eq!(
            judge(&g, "new", &window(1000, 0, 9)),
            Verdict::Healthy,
            "≤ 10 ms"
        );
    }

    #[test]
    fn steps_back_one_stage_never_past_off() {
        let s = Setting::new(Stage::Live, 30.0).unwrap();
        let b = step_back(s).unwrap();
        assert_eq!((b.stage, b.percent()), (Stage::Shadow, 30.0));
        assert_eq!(step_back(Setting::new(Stage::Off, 100.0).unwrap()), None);
        assert_eq!(serving_side(Stage::Live).1, "new");
        assert_eq!(serving_side(Stage::Shadow).1, "old");
    }
}
