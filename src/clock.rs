//! Wall-clock time in the units Redis uses for expiry.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix time in microseconds (for `TIME`).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The clock of a run of commands a connection executes back to back: one reading per
/// command.
///
/// Redis reads the time twice per command: at its start (the command's "now", which expiry
/// and TTLs use) and at its end (its duration, for the slow log, the latency monitor and
/// the per-command histograms). In a pipeline one command ends where the next starts, so a
/// connection keeps the last reading and each command reads the clock once, at its end; its
/// start is the end of the one before. Its wall-clock time is the chain's wall-clock
/// reading plus the monotonic time since, to the microsecond.
///
/// A chain is only valid while the connection does not wait: it is started when a batch of
/// input is parsed and started again after every wait within the batch (a flush to a full
/// socket, a blocked command), so no wait is counted as a command's time and the wall clock
/// is read afresh at least once per batch. Paths without a chain read the clocks directly.
#[derive(Clone, Copy, Debug)]
pub struct Chain {
    wall_us: i64,
    base: Instant,
    last: Instant,
}

impl Chain {
    /// Reads both clocks.
    pub fn start() -> Chain {
        let base = Instant::now();
        Chain {
            wall_us: now_us(),
            base,
            last: base,
        }
    }

    /// Unix time in milliseconds at the last reading.
    pub fn now_ms(&self) -> i64 {
        let since = self.last.saturating_duration_since(self.base).as_micros() as i64;
        (self.wall_us + since) / 1000
    }

    /// The last reading: where the next command starts.
    pub fn last(&self) -> Instant {
        self.last
    }

    /// Reads the clock; the reading becomes the last one.
    pub fn read(&mut self) -> Instant {
        self.last = Instant::now();
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_chain_tells_the_wall_clock_and_the_time_between_readings() {
        let before = now_ms();
        let mut c = Chain::start();
        let at = c.now_ms();
        assert!(at >= before && at <= now_ms(), "{before} <= {at}");
        let start = c.last();
        std::thread::sleep(Duration::from_millis(20));
        let end = c.read();
        assert_eq!(c.last(), end);
        let lap = end - start;
        assert!(lap >= Duration::from_millis(20), "{lap:?}");
        // The wall time moved with the monotonic reading.
        assert!(c.now_ms() >= at + 20, "{} after {at}", c.now_ms());
        assert!(c.now_ms() <= now_ms());
    }
}
