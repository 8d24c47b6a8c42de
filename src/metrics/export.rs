//! `GET /metrics`: everything an operator graphs, in the OpenMetrics text format that
//! Prometheus scrapes (encoded by the `prometheus-client` crate).
//!
//! A scrape first *gathers* ([`gather`]): it reads the server's counters, the store's
//! statistics (the same ones INFO shows), the persistence state, every upstream node and
//! the migration router into a list of [`Families`]. Then it *encodes* that list. The parts
//! that know their own state (the upstream, the migration router) add their families
//! through [`Families`] themselves, so this module does not reach into their internals.
//!
//! Names follow the Prometheus conventions: the `sessiond_` prefix, `_total` on counters
//! (added by the encoder), base units in the name (`_seconds`, `_bytes`).

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::Snapshot;
use super::FAMILIES;
use crate::deployment::Deployment;
use crate::server::Server;

#[derive(Debug, Clone)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Snapshot),
}

#[derive(Debug, Clone)]
struct Sample {
    labels: Vec<(String, String)>,
    value: Value,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: &'static str,
    samples: Vec<Sample>,
}

/// Metric families gathered for one scrape.
#[derive(Debug, Default, Clone)]
pub struct Families(Vec<Family>);

/// Labels as `(name, value)` pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Families {
    fn add(&mut self, name: &str, help: &'static str, labels: Labels<'_>, value: Value) {
        let sample = Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        };
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push(sample),
            None => self.0.push(Family {
                name: name.to_string(),
                help,
                samples: vec![sample],
            }),
        }
    }

    /// A counter; `name` without `_total` (the encoder adds it).
    pub fn counter(&mut self, name: &str, help: &'static str, labels: Labels<'_>, v: u64) {
        self.add(name, help, labels, Value::Counter(v));
    }

    pub fn gauge(&mut self, name: &str, help: &'static str, labels: Labels<'_>, v: f64) {
        self.add(name, help, labels, Value::Gauge(v));
    }

    /// A latency histogram; `name` ends in `_seconds`.
    pub fn histogram(&mut self, name: &str, help: &'static str, labels: Labels<'_>, s: Snapshot) {
        self.add(name, help, labels, Value::Histogram(s));
    }

    /// The value of a counter or gauge sample (tests, the console).
    pub fn value(&self, name: &str, labels: Labels<'_>) -> Option<f64> {
        let f = self.0.iter().find(|f| f.name == name)?;
        let s = f.samples.iter().find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })?;
        match &s.value {
            Value::Counter(v) => Some(*v as f64),
            Value::Gauge(v) => Some(*v),
            Value::Histogram(h) => Some(h.count as f64),
        }
    }

    /// The OpenMetrics text of these families.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("sessiond");
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an error here would be an encoder bug.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!("encoding /metrics failed: {e}");
        }
        out
    }
}

fn encode_value(m: &mut MetricEncoder<'_>, v: &Value) -> Result<(), std::fmt::Error> {
    match v {
        Value::Counter(c) => m.encode_counter::<NoLabelSet, _, u64>(c, None),
        Value::Gauge(g) => m.encode_gauge(g),
        Value::Histogram(h) => {
            m.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets(), None)
        }
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.samples.first().map(|s| &s.value) {
                Some(Value::Counter(_)) => MetricType::Counter,
                Some(Value::Gauge(_)) => MetricType::Gauge,
                Some(Value::Histogram(_)) => MetricType::Histogram,
                None => continue,
            };
            let mut m = encoder.encode_descriptor(&f.name, f.help, None, kind)?;
            for s in &f.samples {
                if s.labels.is_empty() {
                    encode_value(&mut m, &s.value)?;
                } else {
                    let mut fm = m.encode_family(&s.labels)?;
                    encode_value(&mut fm, &s.value)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads everything `/metrics` reports from a running server.
pub fn gather<S: Deployment>(server: &Server<S>) -> Families {
    let mut f = Families::default();
    commands(server, &mut f);
    clients(server, &mut f);
    store(server, &mut f);
    persistence(server, &mut f);
    if let Some(up) = server.store.gateway() {
        up.metrics(&mut f);
    }
    if let Some(m) = server.store.migration() {
        m.metrics(&mut f);
    }
    f
}

fn commands<S: Deployment>(server: &Server<S>, f: &mut Families) {
    let m = &server.commands;
    for (i, fam) in FAMILIES.iter().enumerate() {
        let calls = m.calls(i);
        let errors = m.errors(i);
        if calls == 0 && errors == 0 {
            continue;
        }
        let l: Labels<'_> = &[("family", fam)];
        f.counter(
            "commands",
            "Commands by family (Redis's command groups).",
            l,
            calls,
        );
        f.counter(
            "command_errors",
            "Commands that replied with an error or were refused, by family.",
            l,
            errors,
        );
        let h = m.latency(i);
        if h.count > 0 {
            f.histogram(
                "command_duration_seconds",
                "Time to run a command here (not forwarded ones: see the upstream request histograms).",
                l,
                h,
            );
        }
    }
    f.gauge(
        "slowlog_length",
        "Entries in the slow log.",
        &[],
        server.slowlog.len() as f64,
    );
}

fn clients<S: Deployment>(server: &Server<S>, f: &mut Families) {
    let st = &server.stats;
    f.gauge(
        "connected_clients",
        "Client connections open.",
        &[],
        server.clients.count() as f64,
    );
    f.gauge(
        "blocked_clients",
        "Clients waiting in a blocking command.",
        &[],
        server.store.engine().map_or(0, |e| e.blocked_clients()) as f64,
    );
    f.gauge(
        "pubsub_clients",
        "Clients with at least one subscription.",
        &[],
        server.pubsub.subscribers() as f64,
    );
    f.counter(
        "connections_received",
        "Client connections accepted.",
        &[],
        st.connections_received.get(),
    );
    f.counter(
        "rejected_connections",
        "Client connections refused (maxclients).",
        &[],
        st.rejected_connections.get(),
    );
    f.counter(
        "net_input_bytes",
        "Bytes read from clients.",
        &[],
        st.net_input_bytes.get(),
    );
    f.counter(
        "net_output_bytes",
        "Bytes written to clients.",
        &[],
        st.net_output_bytes.get() + server.pubsub.direct_bytes.load(Ordering::Relaxed),
    );
    f.gauge(
        "uptime_seconds",
        "Seconds since the server started.",
        &[],
        server.started.elapsed().as_secs_f64(),
    );
}

fn store<S: Deployment>(server: &Server<S>, f: &mut Families) {
    let s = server.store.stats(crate::clock::now_ms());
    for (db, keys, volatile, _) in &s.keyspace {
        let db = db.to_string();
        let l: Labels<'_> = &[("db", &db)];
        f.gauge("keys", "Keys per database.", l, *keys as f64);
        f.gauge(
            "keys_with_ttl",
            "Keys with a time to live, per database.",
            l,
            *volatile as f64,
        );
    }
    f.gauge(
        "memory_used_bytes",
        "Memory the data takes (INFO used_memory).",
        &[],
        s.used_memory as f64,
    );
    f.gauge(
        "memory_max_bytes",
        "maxmemory (0: no limit).",
        &[],
        s.maxmemory as f64,
    );
    f.gauge(
        "resident_memory_bytes",
        "The process's resident set size.",
        &[],
        crate::cmd::info::rss_bytes() as f64,
    );
    f.counter(
        "evicted_keys",
        "Keys evicted for maxmemory.",
        &[],
        s.evicted_keys,
    );
    f.counter(
        "expired_keys",
        "Keys removed because their TTL passed.",
        &[],
        s.expired_keys,
    );
    f.counter(
        "keyspace_hits",
        "Key lookups that found the key.",
        &[],
        s.keyspace_hits,
    );
    f.counter(
        "keyspace_misses",
        "Key lookups that did not find the key.",
        &[],
        s.keyspace_misses,
    );
}

fn persistence<S: Deployment>(server: &Server<S>, f: &mut Families) {
    let Some(p) = server.persist.as_ref() else {
        return;
    };
    let stats = p.metrics();
    f.gauge(
        "persistence_write_error",
        "1 while writes are refused (MISCONF) because the log cannot be written.",
        &[],
        stats.write_error as u8 as f64,
    );
    f.gauge(
        "rewrite_in_progress",
        "1 while a snapshot/log rewrite runs.",
        &[],
        stats.rewriting as u8 as f64,
    );
    f.counter(
        "rewrites",
        "Snapshots/log rewrites completed.",
        &[],
        stats.rewrites,
    );
    f.gauge(
        "last_save_timestamp_seconds",
        "Unix time of the last successful snapshot.",
        &[],
        stats.last_save_unix as f64,
    );
    if let Some(j) = p.journal() {
        f.gauge(
            "log_size_bytes",
            "Size of the append-only log file.",
            &[],
            j.file_len() as f64,
        );
        f.counter(
            "log_fsyncs",
            "fsyncs of the append-only log.",
            &[],
            j.fsyncs.load(Ordering::Relaxed),
        );
        f.histogram(
            "log_fsync_duration_seconds",
            "Time one fsync of the append-only log takes.",
            &[],
            j.fsync_latency.snapshot(),
        );
    }
}

/// The `Content-Type` of [`Families::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_as_openmetrics() {
        let mut f = Families::default();
        f.counter("commands", "Commands.", &[("family", "hash")], 3);
        f.counter("commands", "Commands.", &[("family", "string")], 4);
        f.gauge("connected_clients", "Clients.", &[], 2.0);
        let h = super::super::Histogram::default();
        h.record(0, std::time::Duration::from_micros(20));
        f.histogram(
            "command_duration_seconds",
            "Time.",
            &[("family", "hash")],
            h.snapshot(),
        );
        let text = f.encode();
        assert!(
            text.contains("# TYPE sessiond_commands counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sessiond_commands_total{family=\"hash\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sessiond_commands_total{family=\"string\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("sessiond_connected_clients 2"), "{text}");
        assert!(
            text.contains(
                "sessiond_command_duration_seconds_bucket{le=\"0.000025\",family=\"hash\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sessiond_command_duration_seconds_bucket{le=\"+Inf\",family=\"hash\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(f.value("commands", &[("family", "string")]), Some(4.0));
    }
}
