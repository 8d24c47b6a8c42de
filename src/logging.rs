//! Logging that never blocks a request.
//!
//! The first seed's twemproxy stalled when its log disk did: it wrote log lines inline. Here
//! every line goes through a bounded in-memory queue to a writer thread; when the queue is
//! full (the disk or pipe behind it is stuck or too slow), the line is dropped and counted,
//! and the request that logged it carries on. `INFO server` reports the count as
//! `log_lines_dropped`, so an operator can see that lines were lost and why none of them
//! slowed anything down.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

use crate::config::Config;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped because the writer could not keep up.
pub fn dropped() -> usize {
    DROPPED.get().map_or(0, |c| c.dropped_lines())
}

/// Redis's log levels, in order, and the `tracing` level each maps to.
const LEVELS: [(&str, LevelFilter); 4] = [
    ("debug", LevelFilter::DEBUG),
    ("verbose", LevelFilter::DEBUG),
    ("notice", LevelFilter::INFO),
    ("warning", LevelFilter::WARN),
];

/// The running level (an index into [`LEVELS`]) and the handle that changes the filter, so
/// `CONFIG SET loglevel` and a reload take effect at once, without a restart.
static LEVEL: AtomicU8 = AtomicU8::new(2);
static FILTER: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

fn level_index(name: &str) -> Option<usize> {
    LEVELS.iter().position(|(n, _)| *n == name)
}

/// The running log level, by its Redis name.
pub fn level() -> &'static str {
    LEVELS[usize::from(LEVEL.load(Ordering::Relaxed)).min(LEVELS.len() - 1)].0
}

/// Whether `name` is a log level (`CONFIG SET` checks before it applies anything).
pub fn is_level(name: &str) -> bool {
    level_index(name).is_some()
}

/// Changes the log level of the running process.
pub fn set_level(name: &str) -> Result<(), String> {
    let i = level_index(name)
        .ok_or("argument(s) must be one of the following: debug, verbose, notice, warning")?;
    if let Some(h) = FILTER.get() {
        h.reload(LEVELS[i].1)
            .map_err(|e| format!("cannot change the log level: {e}"))?;
    }
    LEVEL.store(i as u8, Ordering::Relaxed);
    Ok(())
}

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the queue.
pub fn init(cfg: &Config) -> WorkerGuard {
    let index = level_index(&cfg.loglevel).unwrap_or(2);
    LEVEL.store(index as u8, Ordering::Relaxed);
    let (filter, handle) = reload::Layer::new(LEVELS[index].1);
    let _ = FILTER.set(handle);
    let builder = || {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(cfg.log_buffer_lines)
            .thread_name("sessiond-log")
    };
    let (writer, guard) = match &cfg.logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            match file {
                Ok(f) => builder().finish(f),
                Err(e) => {
                    eprintln!("cannot open logfile {path}: {e}; logging to stderr");
                    builder().finish(std::io::stderr())
                }
            }
        }
        None => builder().finish(std::io::stderr()),
    };
    let _ = DROPPED.set(writer.error_counter());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        // Colour only for a person at a terminal: a file or a pipe gets plain text.
        .with_ansi(cfg.logfile.is_none() && std::io::stderr().is_terminal())
        .with_target(false);
    tracing_subscriber::registry().with(filter).with(fmt).init();
    guard
}

/// A log line that input can trigger, at most [`THROTTLE_BURST`] times per
/// [`THROTTLE_WINDOW_MS`]: the lines beyond are counted, and the count is given with the next
/// line logged. An operator's occasional command is always logged; a client cannot turn its
/// own misbehaviour into megabytes of log.
pub struct Throttle {
    /// (window start in unix ms, lines logged in it, lines suppressed since the last logged).
    state: std::sync::Mutex<(i64, u32, u64)>,
}

pub const THROTTLE_WINDOW_MS: i64 = 10_000;
pub const THROTTLE_BURST: u32 = 10;

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            state: std::sync::Mutex::new((i64::MIN, 0, 0)),
        }
    }

    /// Whether a line may be logged now: `Some(n)` with the lines suppressed before it, or
    /// `None` (the line is counted instead).
    pub fn allow(&self) -> Option<u64> {
        let now = crate::clock::now_ms();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == i64::MIN || now - s.0 >= THROTTLE_WINDOW_MS {
            s.0 = now;
            s.1 = 0;
        }
        if s.1 >= THROTTLE_BURST {
            s.2 += 1;
            return None;
        }
        s.1 += 1;
        Some(std::mem::take(&mut s.2))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

/// The note a throttled line carries about the lines left out before it.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it were left out of the log)")
    }
}

/// Logs `line` as a warning unless `throttle` has used up its window's burst.
pub fn throttled(throttle: &Throttle, line: std::fmt::Arguments<'_>) {
    if let Some(n) = throttle.allow() {
        tracing::warn!("{line}{}", suppressed_note(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_allows_a_burst_then_counts() {
        let t = Throttle::new();
        for _ in 0..THROTTLE_BURST {
            assert_eq!(t.allow(), Some(0));
        }
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        // A new window: the next line carries the count.
        t.state.lock().unwrap().0 -= THROTTLE_WINDOW_MS;
        assert_eq!(t.allow(), Some(2));
        assert_eq!(t.allow(), Some(0));
    }
}
