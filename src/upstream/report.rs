//! What the upstream tells operators: the `INFO upstream` section and its `/metrics`
//! families (node roles and health, request counts and latencies, ejections, failovers seen,
//! requests per write, cluster redirections).

use std::sync::atomic::Ordering;

use super::url::Topology;
use super::Upstream;
use crate::metrics::export::Families;

impl Upstream {
    /// `INFO upstream`.
    pub fn info(&self) -> String {
        let mode = match &self.url().topology {
            Topology::Single(_) => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster(_) => "cluster",
        };
        let mut s = format!(
            "# Upstream\r\nupstream_mode:{mode}\r\nupstream_url:{}\r\nupstream_timeout_ms:{}\r\nupstream_connections_per_pool:{}\r\nupstream_read_from_replica:{}\r\nupstream_primary_switches:{}\r\nupstream_last_switch:{}\r\n",
            self.url(),
            self.opts.timeout().as_millis(),
            self.opts.connections,
            self.opts.read_from_replica.name(),
            self.shared.switches.load(Ordering::Relaxed),
            self.shared
                .last_switch
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if self.is_cluster() {
            s.push_str(&format!(
                "upstream_cluster_moved:{}\r\nupstream_cluster_ask:{}\r\n",
                self.shared.moved.load(Ordering::Relaxed),
                self.shared.asked.load(Ordering::Relaxed)
            ));
        }
        let nodes = self.nodes();
        s.push_str(&format!(
            "upstream_pinned_max:{}\r\nupstream_pinned_in_use:{}\r\nupstream_pinned_opened:{}\r\nupstream_pinned_reused:{}\r\nupstream_pinned_refused:{}\r\n",
            self.opts.pinned_max,
            self.pinned.in_use(),
            self.pinned.opened.load(Ordering::Relaxed),
            self.pinned.reused.load(Ordering::Relaxed),
            self.pinned.refused.load(Ordering::Relaxed),
        ));
        s.push_str(&format!("upstream_nodes:{}\r\n", nodes.len()));
        for (i, (n, role)) in nodes.iter().enumerate() {
            let (conns, in_flight, batch) = n.usage();
            let st = &n.stats;
            s.push_str(&format!(
                "upstream_node{i}:addr={},role={role},health={},conns={conns},in_flight={in_flight},requests_per_write={batch:.2},requests={},errors={},timeouts={},ejections={},connects={},last_error={}\r\n",
                n.addr,
                if n.is_healthy() { "up" } else { "down" },
                st.requests.load(Ordering::Relaxed),
                st.errors.load(Ordering::Relaxed),
                st.timeouts.load(Ordering::Relaxed),
                st.ejections.load(Ordering::Relaxed),
                st.connects.load(Ordering::Relaxed),
                n.last_error().replace(['\r', '\n', ','], " "),
            ));
        }
        s
    }

    /// The topology for the console: mode, nodes (address, role, health, counters, last
    /// error) and the primary switches seen.
    pub fn console_view(&self) -> serde_json::Value {
        let sh = &self.shared;
        let mode = match &self.url().topology {
            Topology::Single(_) => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster(_) => "cluster",
        };
        let nodes: Vec<serde_json::Value> = self
            .nodes()
            .into_iter()
            .map(|(n, role)| {
                let st = &n.stats;
                let lat = st.wire.latency.snapshot();
                serde_json::json!({
                    "addr": n.addr,
                    "role": role,
                    "healthy": n.is_healthy(),
                    "requests": st.requests.load(Ordering::Relaxed),
                    "errors": st.errors.load(Ordering::Relaxed),
                    "timeouts": st.timeouts.load(Ordering::Relaxed),
                    "ejections": st.ejections.load(Ordering::Relaxed),
                    "p99_us": lat.quantile_us(0.99),
                    "error_replies": st.wire.error_replies.load(Ordering::Relaxed),
                    "last_error": n.last_error(),
                })
            })
            .collect();
        serde_json::json!({
            "gateway": true,
            "mode": mode,
            "url": self.url().to_string(),
            "primary_switches": sh.switches.load(Ordering::Relaxed),
            "last_switch": sh.last_switch.lock().unwrap_or_else(|p| p.into_inner()).to_string(),
            "nodes": nodes,
            "timeline": self.opts.timeline.lock().unwrap_or_else(|p| p.into_inner())
                .iter().rev().map(|(at, e)| serde_json::json!({ "at_ms": at, "event": e }))
                .collect::<Vec<_>>(),
        })
    }

    /// Every node's request round trips, summed (the console's latency in gateway mode).
    pub fn request_latency(&self) -> crate::metrics::histogram::Snapshot {
        let mut total = crate::metrics::histogram::Snapshot::default();
        for (n, _) in self.nodes() {
            let s = n.stats.wire.latency.snapshot();
            for (t, c) in total.counts.iter_mut().zip(s.counts) {
                *t += c;
            }
            total.count += s.count;
            total.sum_seconds += s.sum_seconds;
        }
        total
    }

    /// Error replies from every node (the console's errors/s in gateway mode).
    pub fn error_replies(&self) -> u64 {
        self.nodes()
            .iter()
            .map(|(n, _)| n.stats.wire.error_replies.load(Ordering::Relaxed))
            .sum()
    }

    /// Adds the upstream's families to a `/metrics` scrape.
    pub fn metrics(&self, f: &mut Families) {
        let sh = &self.shared;
        f.counter(
            "upstream_primary_switches",
            "Primary changes seen (Sentinel failovers).",
            &[],
            sh.switches.load(Ordering::Relaxed),
        );
        if self.is_cluster() {
            f.counter(
                "upstream_cluster_moved",
                "MOVED redirections followed.",
                &[],
                sh.moved.load(Ordering::Relaxed),
            );
            f.counter(
                "upstream_cluster_ask",
                "ASK redirections followed.",
                &[],
                sh.asked.load(Ordering::Relaxed),
            );
        }
        f.gauge(
            "upstream_pinned_in_use",
            "Pinned connections (transactions, blocking commands) in use.",
            &[],
            self.pinned.in_use() as f64,
        );
        f.counter(
            "upstream_pinned_refused",
            "Pinned connections refused at the limit.",
            &[],
            self.pinned.refused.load(Ordering::Relaxed),
        );
        for (n, role) in self.nodes() {
            let st = &n.stats;
            let addr = n.addr.as_str();
            let l: &[(&str, &str)] = &[("node", addr)];
            f.gauge(
                "upstream_node_up",
                "1 while the node is healthy (0: ejected), labelled with its role.",
                &[("node", addr), ("role", role)],
                if n.is_healthy() { 1.0 } else { 0.0 },
            );
            let (conns, in_flight, batch) = n.usage();
            f.gauge(
                "upstream_node_connections",
                "Multiplexed connections open to the node.",
                l,
                conns as f64,
            );
            f.gauge(
                "upstream_node_in_flight",
                "Requests sent to the node and not yet answered.",
                l,
                in_flight as f64,
            );
            f.gauge(
                "upstream_node_requests_per_write",
                "Requests per socket write (pipelining achieved).",
                l,
                batch,
            );
            f.counter(
                "upstream_node_requests",
                "Commands sent to the node.",
                l,
                st.requests.load(Ordering::Relaxed),
            );
            f.counter(
                "upstream_node_errors",
                "Commands lost with a failed connection.",
                l,
                st.errors.load(Ordering::Relaxed),
            );
            f.counter(
                "upstream_node_timeouts",
                "Commands that timed out.",
                l,
                st.timeouts.load(Ordering::Relaxed),
            );
            f.counter(
                "upstream_node_ejections",
                "Times the node was ejected as unhealthy.",
                l,
                st.ejections.load(Ordering::Relaxed),
            );
            f.counter(
                "upstream_node_connects",
                "Connections opened to the node.",
                l,
                st.connects.load(Ordering::Relaxed),
            );
            f.histogram(
                "upstream_node_request_duration_seconds",
                "Round trip of one request (a batch of pipelined commands) on a multiplexed connection.",
                l,
                st.wire.latency.snapshot(),
            );
            f.counter(
                "upstream_node_error_replies",
                "Error replies the node sent (MOVED/ASK redirections included).",
                l,
                st.wire.error_replies.load(Ordering::Relaxed),
            );
        }
    }
}
