//! The network side: listeners ([`listener`]), one task per client connection
//! ([`connection`]), and the state all connections share ([`Server`]).

pub mod auth_guard;
pub mod bufpool;
pub mod clients;
pub mod connection;
pub mod fd_limit;
pub mod gateway;
pub mod listener;
pub mod live;
pub mod output_limit;
pub mod reload;
pub mod settings;
pub mod subscriber;
pub mod transaction;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::deployment::Deployment;
use crate::persist::Persistence;
use clients::ClientRegistry;
use settings::Settings;

/// A counter that many threads bump without sharing a cache line: one cell per slot,
/// summed when read (INFO is rare, increments are per command).
#[derive(Default)]
pub struct Counter {
    cells: [Padded; 16],
}

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

impl Counter {
    pub fn add(&self, slot: u64, n: u64) {
        self.cells[(slot % 16) as usize]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    pub fn reset(&self) {
        for c in &self.cells {
            c.0.store(0, Ordering::Relaxed);
        }
    }
}

/// Server-wide counters for `INFO stats`.
#[derive(Default)]
pub struct ServerStats {
    pub connections_received: Counter,
    pub commands_processed: Counter,
    pub rejected_connections: Counter,
    pub net_input_bytes: Counter,
    pub net_output_bytes: Counter,
}

/// Everything connections share.
pub struct Server<S: Deployment> {
    pub store: S,
    pub config: Config,
    pub settings: Settings,
    pub clients: ClientRegistry,
    pub stats: ServerStats,
    pub scripts: crate::script::Scripts,
    pub started: Instant,
    pub run_id: String,
    /// Set by `SHUTDOWN` or a signal; listeners stop accepting.
    pub shutting_down: AtomicBool,
    pub shutdown: tokio::sync::Notify,
    /// The TLS listener's certificates and settings, once it is bound (reloaded on SIGHUP).
    pub tls: std::sync::OnceLock<Arc<crate::tls::TlsServer>>,
    /// The admin API's HTTPS certificate, if it has one (reloaded on SIGHUP too).
    pub admin_tls: std::sync::OnceLock<Arc<crate::tls::TlsServer>>,
    /// The embedded engine's persistence (none for stores that persist elsewhere).
    pub persist: Option<Arc<Persistence>>,
    /// Failed AUTHs by address, for the log.
    pub auth_failures: auth_guard::AuthFailures,
    /// Subscriptions and keyspace notifications (embedded engine; `pubsub.rs`).
    pub pubsub: Arc<crate::pubsub::Hub>,
    pub notifier: crate::pubsub::Notifier,
    /// Per-family command counts and latencies (`metrics/`).
    pub commands: crate::metrics::CommandMetrics,
    pub slowlog: crate::metrics::slowlog::SlowLog,
    pub latency: crate::metrics::latency::LatencyMonitor,
    /// The configuration file as last loaded (`reload.rs`).
    pub reloader: reload::Reloader,
    /// Changes operators (and the migration guard) make, with who and why (`audit.rs`).
    pub audit: crate::audit::Audit,
}

impl<S: Deployment> Server<S> {
    /// Waits until every write made so far is in the append-only log (as the policy
    /// defines it: written to the OS, or fsynced under `always`). A connection does this
    /// before its replies leave; a write made anywhere else (the admin API, the backfill)
    /// must do it before it reports success, or a crash can undo what it reported.
    pub async fn durable(&self) -> Result<(), String> {
        if let Some(j) = self.persist.as_ref().and_then(|p| p.journal()) {
            j.commit(j.appended()).await?;
        }
        Ok(())
    }

    pub fn new(store: S, config: Config) -> Self {
        let run_id: String = (0..40)
            .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
            .collect();
        let pubsub = Arc::new(crate::pubsub::Hub::default());
        pubsub.set_limit(config.client_output_buffer_limit.pubsub);
        pubsub.notify_flags.store(
            crate::pubsub::parse_flags(config.notify_keyspace_events.as_bytes()).unwrap_or(0),
            Ordering::Relaxed,
        );
        let notifier = crate::pubsub::Notifier(pubsub.clone());
        if let Some(e) = store.engine() {
            e.set_notifier(notifier.clone());
        }
        let scripts = crate::script::Scripts::new(&config);
        Server {
            commands: Default::default(),
            reloader: reload::Reloader::new(&config),
            audit: crate::audit::Audit::new(Some(&config.dir)),
            slowlog: crate::metrics::slowlog::SlowLog::new(
                config.slowlog_log_slower_than,
                config.slowlog_max_len,
            ),
            latency: crate::metrics::latency::LatencyMonitor::new(config.latency_monitor_threshold),
            store,
            pubsub,
            notifier,
            settings: Settings::new(&config),
            config,
            clients: ClientRegistry::default(),
            stats: ServerStats::default(),
            scripts,
            started: Instant::now(),
            run_id,
            shutting_down: AtomicBool::new(false),
            shutdown: tokio::sync::Notify::new(),
            persist: None,
            tls: std::sync::OnceLock::new(),
            admin_tls: std::sync::OnceLock::new(),
            auth_failures: Default::default(),
        }
    }

    /// Stops accepting and ends every connection. Connections are ended through their own
    /// handles rather than by each waiting on `shutdown`: a waiter on one server-wide
    /// `Notify` takes its mutex when it registers and when it leaves, which every
    /// connection would do (contended across workers) for nothing but this moment. One
    /// registered after the snapshot sees `shutting_down` (set first) at its next turn.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
        for client in self.clients.snapshot() {
            client.kill();
        }
    }
}
