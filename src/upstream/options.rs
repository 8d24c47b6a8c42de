//! The gateway's settings ([`Options`]) and where reads may go ([`ReadFrom`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::url::UpstreamUrl;
use super::{node, stream};

/// Where reads go when the upstream has replicas (Sentinel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Always the primary: every client reads its own writes.
    Never,
    /// The primary while it is healthy; a replica while it is not (reads keep working
    /// during a failover; a read may then miss a write the old primary had not replicated).
    OnPrimaryFailure,
    /// Replicas when any is healthy: spreads reads, but a client may not see its own
    /// writes until they replicate.
    Always,
}

impl ReadFrom {
    pub fn parse(s: &str) -> Option<ReadFrom> {
        match s {
            "never" => Some(ReadFrom::Never),
            "on-primary-failure" => Some(ReadFrom::OnPrimaryFailure),
            "always" => Some(ReadFrom::Always),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Never => "never",
            ReadFrom::OnPrimaryFailure => "on-primary-failure",
            ReadFrom::Always => "always",
        }
    }
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: UpstreamUrl,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Databases clients may SELECT (the upstream's `databases`).
    pub databases: usize,
    /// Connections per node, database and protocol.
    pub connections: usize,
    /// The most dedicated (pinned) connections at once, over all nodes.
    pub pinned_max: usize,
    pub connect_timeout: Duration,
    /// How long a client waits for an upstream reply before it gets an error, in ms; see
    /// [`Options::timeout`]. Shared by every clone, so a reload changes it for the running
    /// upstream.
    timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// What happened to the topology, newest last: primary switches, ejections, recoveries
    /// (the console's timeline). Shared by every clone, as the nodes hold one.
    pub timeline: Arc<Mutex<std::collections::VecDeque<(i64, String)>>>,
    pub health_interval: Duration,
    /// Failed health checks in a row before a node is ejected.
    pub failure_limit: u32,
    pub read_from_replica: ReadFrom,
    /// How long a write waits for a healthy primary (during a failover) before failing;
    /// zero fails at once.
    pub failover_wait: Duration,
    /// How often the topology is asked for again (Sentinel), besides following its events.
    pub refresh_interval: Duration,
    /// TLS to every node and sentinel (`rediss…://`), built at start from the URL's options.
    pub tls: Option<stream::Connector>,
}

impl Options {
    /// How long a client waits for an upstream reply before it gets an error (live).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Adds an event to the topology timeline (the last 100 are kept).
    pub fn note(&self, event: String) {
        let mut t = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == 100 {
            t.pop_front();
        }
        t.push_back((crate::clock::now_ms(), event));
    }

    pub fn set_timeout(&self, d: Duration) {
        self.timeout_ms
            .store(d.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    pub fn new(url: UpstreamUrl, databases: usize) -> Options {
        Options {
            user: url.user.clone(),
            password: url.password.clone(),
            url,
            databases,
            connections: 2,
            pinned_max: 1000,
            connect_timeout: Duration::from_millis(1000),
            timeout_ms: Arc::new(std::sync::atomic::AtomicU64::new(1000)),
            timeline: Arc::default(),
            health_interval: node::HEALTH_INTERVAL,
            failure_limit: 3,
            read_from_replica: ReadFrom::Never,
            failover_wait: Duration::ZERO,
            refresh_interval: Duration::from_millis(1000),
            tls: None,
        }
    }
}
