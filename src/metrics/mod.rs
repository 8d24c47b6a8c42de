//! What operators watch: per-family command metrics, the slow log, the latency monitor,
//! and their Prometheus exposition (`export.rs`, served as `GET /metrics` by the admin
//! listener).
//!
//! **Recording is on the hot path, reading is not.** A command costs two clock readings and
//! a few relaxed atomic adds on stripes of its own client ([`Histogram`], the server's
//! `Counter`); everything else (summing stripes, walking upstream nodes, asking the store
//! for its key counts) happens when Prometheus scrapes, every few seconds. Gauges that
//! INFO already computes (keys, memory, persistence state) are read from the same sources
//! INFO reads, so the two never disagree.
//!
//! **Families, not commands.** Latency histograms are kept per Redis command group
//! (`string`, `hash`, `sorted-set`…, as `COMMAND DOCS` names them): about twenty series of
//! twenty buckets instead of one per each of ~250 commands, which keeps a scrape small and
//! the memory fixed. The slow log names individual slow commands.

pub mod export;
pub mod histogram;
pub mod latency;
pub mod slowlog;

use std::time::Duration;

pub use histogram::Histogram;

use crate::server::Counter;

/// Command families: Redis's command groups, plus `unknown` for names not in the table.
pub const FAMILIES: [&str; 18] = [
    "string",
    "hash",
    "list",
    "set",
    "sorted-set",
    "generic",
    "transactions",
    "pubsub",
    "connection",
    "server",
    "scripting",
    "geo",
    "hyperloglog",
    "stream",
    "bitmap",
    "cluster",
    "sentinel",
    "unknown",
];

/// The family index of a command group (`unknown` for a group not listed).
pub fn family_of(group: &str) -> usize {
    FAMILIES
        .iter()
        .position(|f| *f == group)
        .unwrap_or(FAMILIES.len() - 1)
}

/// The index of the `unknown` family.
pub const UNKNOWN: usize = FAMILIES.len() - 1;

/// Per family: commands run here (with their latency), commands forwarded to an upstream
/// (gateway mode: their latency is the upstream's, see the node histograms), and errors.
#[derive(Default)]
pub struct CommandMetrics {
    latency: [Histogram; FAMILIES.len()],
    forwarded: [Counter; FAMILIES.len()],
    errors: [Counter; FAMILIES.len()],
}

impl CommandMetrics {
    /// A command that ran here: its time and whether its reply was an error.
    pub fn ran(&self, family: usize, client: u64, elapsed: Duration, failed: bool) {
        let f = family.min(UNKNOWN);
        self.latency[f].record(client, elapsed);
        if failed {
            self.errors[f].add(client, 1);
        }
    }

    /// A command refused before it ran (unknown, wrong arity, NOAUTH, MISCONF…): an error
    /// of its family, not a call.
    pub fn rejected(&self, family: usize, client: u64) {
        self.errors[family.min(UNKNOWN)].add(client, 1);
    }

    /// A command the gateway forwarded.
    pub fn forwarded(&self, family: usize, client: u64) {
        self.forwarded[family.min(UNKNOWN)].add(client, 1);
    }

    pub fn latency(&self, family: usize) -> histogram::Snapshot {
        self.latency[family].snapshot()
    }

    pub fn calls(&self, family: usize) -> u64 {
        self.latency[family].snapshot().count + self.forwarded[family].get()
    }

    pub fn errors(&self, family: usize) -> u64 {
        self.errors[family].get()
    }

    /// Every family's latency summed (the console's p50/p99 of all commands run here).
    pub fn all_latency(&self) -> histogram::Snapshot {
        let mut total = histogram::Snapshot::default();
        for h in &self.latency {
            let s = h.snapshot();
            for (t, c) in total.counts.iter_mut().zip(s.counts) {
                *t += c;
            }
            total.count += s.count;
            total.sum_seconds += s.sum_seconds;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_of_the_command_table_has_its_family() {
        for spec in crate::cmd::table::commands() {
            assert_ne!(
                spec.family, UNKNOWN,
                "{} (group {}) has no family",
                spec.name, spec.group
            );
        }
    }

    #[test]
    fn calls_count_both_run_and_forwarded_commands() {
        let m = CommandMetrics::default();
        let hash = family_of("hash");
        m.ran(hash, 1, Duration::from_micros(30), false);
        m.ran(hash, 2, Duration::from_micros(30), true);
        m.forwarded(hash, 3);
        m.rejected(hash, 3);
        assert_eq!(m.calls(hash), 3);
        assert_eq!(m.errors(hash), 2);
        assert_eq!(m.latency(hash).count, 2);
        assert_eq!(m.all_latency().count, 2);
    }
}
