//! Configuration: command-line flags named after Redis's config directives, `SESSIOND_*`
//! environment variables, and a TOML file (`--config`) with the same keys.
//!
//! Precedence: flag > environment > file > default. Every setting has a key in all three.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use crate::migrate::keymap::KeyMap;
use crate::migrate::stage::{Setting, Stage};
use crate::upstream::url::{Topology, UpstreamUrl};
use crate::upstream::{Options as UpstreamOptions, ReadFrom};

use crate::engine::Policy;
use crate::persist::{Fsync, PersistConfig};
use crate::util::size::parse_size;

/// Options of `sessiond serve`. All optional here so that the config file can fill gaps.
/// (Serialized by their file keys to tell a reload which settings a flag or the
/// environment fixes.)
#[derive(Args, Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML configuration file; its keys are the long option names (e.g. `maxmemory-policy`).
    #[arg(long, env = "SESSIOND_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on, HOST:PORT. May be repeated (or comma-separated in the env var).
    /// Default 127.0.0.1:6380.
    #[arg(
        long,
        env = "SESSIOND_LISTEN",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// Also listen on this unix socket path (as Redis's `unixsocket`).
    #[arg(long, env = "SESSIOND_UNIXSOCKET", value_name = "PATH")]
    pub unixsocket: Option<String>,

    /// Password clients must give with AUTH or HELLO … AUTH (as Redis's `requirepass`).
    #[arg(
        long,
        env = "SESSIOND_REQUIREPASS",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub requirepass: Option<String>,

    /// ACL users file, in Redis's format (`user <name> <rules…>` per line): loaded at start,
    /// re-read by ACL LOAD, written by ACL SAVE (as Redis's `aclfile`).
    #[arg(long, env = "SESSIOND_ACLFILE", value_name = "PATH")]
    pub aclfile: Option<String>,

    /// Also accept TLS connections on this port, on the addresses of --listen (as Redis's
    /// `tls-port`). Needs --tls-cert-file and --tls-key-file.
    #[arg(long, env = "SESSIOND_TLS_PORT", value_name = "PORT")]
    pub tls_port: Option<u16>,

    /// The server's certificate chain (PEM), re-read on SIGHUP.
    #[arg(long, env = "SESSIOND_TLS_CERT_FILE", value_name = "PATH")]
    pub tls_cert_file: Option<String>,

    /// The server's private key (PEM), re-read on SIGHUP.
    #[arg(long, env = "SESSIOND_TLS_KEY_FILE", value_name = "PATH")]
    pub tls_key_file: Option<String>,

    /// CA certificates (PEM) client certificates are checked against.
    #[arg(long, env = "SESSIOND_TLS_CA_CERT_FILE", value_name = "PATH")]
    pub tls_ca_cert_file: Option<String>,

    /// Whether clients must present a certificate: yes (default, as Redis), optional, no.
    #[arg(
        long,
        env = "SESSIOND_TLS_AUTH_CLIENTS",
        value_name = "yes|no|optional"
    )]
    pub tls_auth_clients: Option<String>,

    /// TLS versions to accept, space separated: `TLSv1.2 TLSv1.3` (the default).
    #[arg(long, env = "SESSIOND_TLS_PROTOCOLS", value_name = "LIST")]
    pub tls_protocols: Option<String>,

    /// TLS 1.3 cipher suites, OpenSSL's names, colon separated (default: all rustls offers).
    #[arg(long, env = "SESSIOND_TLS_CIPHERSUITES", value_name = "LIST")]
    pub tls_ciphersuites: Option<String>,

    /// TLS 1.2 cipher suites, OpenSSL's names, colon separated (default: all rustls offers).
    #[arg(long, env = "SESSIOND_TLS_CIPHERS", value_name = "LIST")]
    pub tls_ciphers: Option<String>,

    /// `CN`: a client certificate's Common Name logs the connection in as that ACL user;
    /// `off` (default): it does not.
    #[arg(long, env = "SESSIOND_TLS_AUTH_CLIENTS_USER", value_name = "off|CN")]
    pub tls_auth_clients_user: Option<String>,

    /// Entries ACL LOG keeps (refused commands, failed AUTHs). Default 128.
    #[arg(long, env = "SESSIOND_ACLLOG_MAX_LEN", value_name = "N")]
    pub acllog_max_len: Option<usize>,

    /// Memory limit for stored sessions: bytes, or with a unit (`512mb`, `2gb`; `k`=1000,
    /// `kb`=1024 as in Redis). 0 means no limit. Default 0.
    #[arg(long, env = "SESSIOND_MAXMEMORY", value_name = "BYTES")]
    pub maxmemory: Option<String>,

    /// What to do when `maxmemory` is reached: `noeviction` (refuse writes), `volatile-ttl`
    /// (evict the sessions closest to expiring), `allkeys-lru`. Default noeviction.
    #[arg(long, env = "SESSIOND_MAXMEMORY_POLICY", value_name = "POLICY")]
    pub maxmemory_policy: Option<String>,

    /// Number of logical databases (SELECT 0..N-1). Default 16.
    #[arg(long, env = "SESSIOND_DATABASES", value_name = "N")]
    pub databases: Option<usize>,

    /// `yes`: without a password, refuse to listen on non-loopback addresses. Default yes.
    #[arg(long, env = "SESSIOND_PROTECTED_MODE", value_name = "yes|no")]
    pub protected_mode: Option<String>,

    /// Close client connections idle for this many seconds; 0 disables. Default 0.
    #[arg(long, env = "SESSIOND_TIMEOUT", value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Maximum simultaneous client connections. Default 10000.
    #[arg(long, env = "SESSIOND_MAXCLIENTS", value_name = "N")]
    pub maxclients: Option<usize>,

    /// Largest single argument (bulk string) a client may send. Default 512mb.
    #[arg(long, env = "SESSIOND_PROTO_MAX_BULK_LEN", value_name = "BYTES")]
    pub proto_max_bulk_len: Option<String>,

    /// Most arguments in one command. Default 1048576.
    #[arg(long, env = "SESSIOND_PROTO_MAX_MULTIBULK_LEN", value_name = "N")]
    pub proto_max_multibulk_len: Option<usize>,

    /// Largest unprocessed input buffered per client before it is disconnected. Default 1gb.
    #[arg(long, env = "SESSIOND_CLIENT_QUERY_BUFFER_LIMIT", value_name = "BYTES")]
    pub client_query_buffer_limit: Option<String>,

    /// When a client that does not read its replies is disconnected, in Redis's syntax
    /// `normal HARD SOFT SECONDS` (also `pubsub …`, `replica …`). Default `normal 0 0 0`
    /// (never: the client is waited on, and its replies stay bounded by backpressure).
    #[arg(
        long,
        env = "SESSIOND_CLIENT_OUTPUT_BUFFER_LIMIT",
        value_name = "LIMITS"
    )]
    pub client_output_buffer_limit: Option<String>,

    /// Keyspace notifications to publish, in Redis's letters (`KEA`, `Ex` for expiry
    /// events…). Default none.
    #[arg(long, env = "SESSIOND_NOTIFY_KEYSPACE_EVENTS", value_name = "CLASSES")]
    pub notify_keyspace_events: Option<String>,

    /// Commands slower than this many microseconds go to the slow log (negative: none,
    /// 0: every command). Default 10000, as Redis.
    #[arg(
        long,
        env = "SESSIOND_SLOWLOG_LOG_SLOWER_THAN",
        value_name = "MICROS",
        allow_negative_numbers = true
    )]
    pub slowlog_log_slower_than: Option<i64>,

    /// Entries the slow log keeps. Default 128.
    #[arg(long, env = "SESSIOND_SLOWLOG_MAX_LEN", value_name = "N")]
    pub slowlog_max_len: Option<usize>,

    /// The latency monitor samples events of at least this many milliseconds (0: off, the
    /// default).
    #[arg(long, env = "SESSIOND_LATENCY_MONITOR_THRESHOLD", value_name = "MS")]
    pub latency_monitor_threshold: Option<u64>,

    /// A script running longer than this many milliseconds makes other clients' commands
    /// answer -BUSY and can be stopped with SCRIPT KILL (Redis's `busy-reply-threshold`,
    /// formerly `lua-time-limit`). Default 5000.
    #[arg(long, env = "SESSIOND_BUSY_REPLY_THRESHOLD", value_name = "MS")]
    pub busy_reply_threshold: Option<u64>,

    /// `yes`: every script may touch keys it did not declare in KEYS, and so runs under every
    /// shard lock (serially, as on Redis). Default `no`: a script holds only its declared keys'
    /// shards, and touching another key is an error (see the README, "Scripts").
    #[arg(
        long,
        env = "SESSIOND_LUA_ALLOW_UNDECLARED_KEYS",
        value_name = "yes|no"
    )]
    pub lua_allow_undeclared_keys: Option<String>,

    /// Memory one worker thread's Lua interpreter may use (`256mb` by default); a script
    /// past it fails with "not enough memory".
    #[arg(long, env = "SESSIOND_LUA_MEMORY_LIMIT", value_name = "BYTES")]
    pub lua_memory_limit: Option<String>,

    /// Worker threads serving connections. Default: one less than the number of CPU cores
    /// (at least 1), leaving a core to the kernel's network work and co-located clients.
    #[arg(long, env = "SESSIOND_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// Log verbosity: debug, verbose, notice, warning (Redis's names). Default notice.
    #[arg(long, env = "SESSIOND_LOGLEVEL", value_name = "LEVEL")]
    pub loglevel: Option<String>,

    /// Log to this file instead of standard error. Logging never blocks requests: lines go
    /// through a bounded buffer and are dropped (and counted) if the disk cannot keep up.
    #[arg(long, env = "SESSIOND_LOGFILE", value_name = "PATH")]
    pub logfile: Option<String>,

    /// Data directory: the append-only log, snapshots and their manifest (created if
    /// missing; one server per directory). Default ./sessiond-data.
    #[arg(long, env = "SESSIOND_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// `yes`: log every write before acknowledging it, so a restart or crash logs nobody out.
    /// `no`: only snapshots (SAVE, BGSAVE, and at a graceful shutdown). Default yes.
    #[arg(long, env = "SESSIOND_APPENDONLY", value_name = "yes|no")]
    pub appendonly: Option<String>,

    /// When the log is fsynced: `always` (before each reply; concurrent clients share one
    /// fsync), `everysec` (at most ~1 s of acknowledged writes lost on power loss; none on a
    /// process crash), `no` (the OS decides). Default everysec.
    #[arg(long, env = "SESSIOND_APPENDFSYNC", value_name = "POLICY")]
    pub appendfsync: Option<String>,

    /// Rewrite (compact) the log when it exceeds this percentage of the last snapshot's size;
    /// 0 disables automatic rewrites. Default 100.
    #[arg(
        long,
        env = "SESSIOND_AUTO_AOF_REWRITE_PERCENTAGE",
        value_name = "PERCENT"
    )]
    pub auto_aof_rewrite_percentage: Option<u64>,

    /// …but not before the log reaches this size. Default 64mb.
    #[arg(long, env = "SESSIOND_AUTO_AOF_REWRITE_MIN_SIZE", value_name = "BYTES")]
    pub auto_aof_rewrite_min_size: Option<String>,

    /// `appendfsync always`: how long an fsync round may be held open for more concurrent
    /// writers to share it, in microseconds; 0 disables. Only when at least two writers are
    /// waiting, and never longer than it takes every connected client to join. Default 1000.
    #[arg(long, env = "SESSIOND_GROUP_COMMIT_WINDOW_US", value_name = "MICROS")]
    pub group_commit_window_us: Option<u64>,

    /// Log lines queued for the log writer before new ones are dropped (and counted in
    /// INFO as log_lines_dropped) rather than slow a request down. Default 128000.
    #[arg(long, env = "SESSIOND_LOG_BUFFER_LINES", value_name = "N")]
    pub log_buffer_lines: Option<usize>,

    /// Gateway mode: keep sessions on Redis/Valkey instead of the embedded engine.
    /// `redis://[user:pass@]host:port[/db]`, `redis+sentinel://[pass@]s1:26379,s2/<master>`
    /// or `redis+cluster://host:port,host:port`. Persistence options then do not apply.
    #[arg(long, env = "SESSIOND_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// Gateway: connections per upstream node, database and protocol. Default 2.
    #[arg(long, env = "SESSIOND_UPSTREAM_CONNECTIONS", value_name = "N")]
    pub upstream_connections: Option<usize>,

    /// Gateway: the most dedicated upstream connections held at once, by clients in a
    /// transaction (WATCH/MULTI), a blocking command or subscriber mode. Past it such a
    /// client gets an error at once. Default 1000.
    #[arg(long, env = "SESSIOND_UPSTREAM_PINNED_MAX", value_name = "N")]
    pub upstream_pinned_max: Option<usize>,

    /// Gateway: how long a client waits for an upstream reply before getting an error.
    /// Default 1000.
    #[arg(long, env = "SESSIOND_UPSTREAM_TIMEOUT_MS", value_name = "MS")]
    pub upstream_timeout_ms: Option<u64>,

    /// Gateway: how long connecting (and authenticating) to an upstream may take. Default 1000.
    #[arg(long, env = "SESSIOND_UPSTREAM_CONNECT_TIMEOUT_MS", value_name = "MS")]
    pub upstream_connect_timeout_ms: Option<u64>,

    /// Gateway: pause between health-check PINGs of each upstream node. Default 1000.
    #[arg(long, env = "SESSIOND_UPSTREAM_HEALTH_INTERVAL_MS", value_name = "MS")]
    pub upstream_health_interval_ms: Option<u64>,

    /// Gateway: failed health checks in a row before a node is ejected. Default 3.
    #[arg(long, env = "SESSIOND_UPSTREAM_FAILURE_LIMIT", value_name = "N")]
    pub upstream_failure_limit: Option<u32>,

    /// Gateway with Sentinel: where reads go. `never` (the primary: read-your-writes),
    /// `on-primary-failure` (a replica while the primary is down), `always` (replicas).
    /// Default never.
    #[arg(
        long,
        env = "SESSIOND_UPSTREAM_READ_FROM_REPLICA",
        value_name = "POLICY"
    )]
    pub upstream_read_from_replica: Option<String>,

    /// Gateway: how long a write waits for a healthy primary (e.g. while Sentinel promotes
    /// one) before it fails; 0 fails at once. Default 0.
    #[arg(long, env = "SESSIOND_UPSTREAM_FAILOVER_WAIT_MS", value_name = "MS")]
    pub upstream_failover_wait_ms: Option<u64>,

    /// Gateway with Sentinel or Cluster: how often the topology is asked for again, besides
    /// following Sentinel's events and the cluster's redirections. Default 1000.
    #[arg(long, env = "SESSIOND_UPSTREAM_REFRESH_INTERVAL_MS", value_name = "MS")]
    pub upstream_refresh_interval_ms: Option<u64>,

    /// Admin HTTP API (migration control and status), e.g. 127.0.0.1:6381. Off by default.
    #[arg(long, env = "SESSIOND_ADMIN_LISTEN", value_name = "HOST:PORT")]
    pub admin_listen: Option<String>,

    /// The admin API's and console's certificate chain (PEM): served over HTTPS, and
    /// required for a non-loopback --admin-listen unless --admin-allow-plaintext yes.
    #[arg(long, env = "SESSIOND_ADMIN_TLS_CERT_FILE", value_name = "PATH")]
    pub admin_tls_cert_file: Option<String>,

    /// The admin API's private key (PEM).
    #[arg(long, env = "SESSIOND_ADMIN_TLS_KEY_FILE", value_name = "PATH")]
    pub admin_tls_key_file: Option<String>,

    /// `yes`: serve the admin API over plain HTTP on a non-loopback address (trusted
    /// networks only: the token crosses it readable). Default no.
    #[arg(long, env = "SESSIOND_ADMIN_ALLOW_PLAINTEXT", value_name = "yes|no")]
    pub admin_allow_plaintext: Option<String>,

    /// Bearer token the admin API requires. Default: a random one, written to
    /// <dir>/admin.token for `sessiond ctl` (loopback admin addresses only).
    #[arg(
        long,
        env = "SESSIOND_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Let the console's session lookup show values (`yes`/`no`). Default no: the console
    /// shows a session's type, TTL, size and store, never its data.
    #[arg(long, env = "SESSIOND_CONSOLE_SHOW_VALUES", value_name = "YES|NO")]
    pub console_show_values: Option<String>,

    /// Migration: the store sessions are moving from: `embedded` or a Redis URL (as for
    /// --upstream). With --migrate-to, sessiond serves through the migration router.
    #[arg(long, env = "SESSIOND_MIGRATE_FROM", value_name = "URL")]
    pub migrate_from: Option<String>,

    /// Migration: the store sessions are moving to.
    #[arg(long, env = "SESSIOND_MIGRATE_TO", value_name = "URL")]
    pub migrate_to: Option<String>,

    /// Migration stage at start: off, dualwrite, shadow, live, rampdown, complete. Default off.
    #[arg(long, env = "SESSIOND_MIGRATE_STAGE", value_name = "STAGE")]
    pub migrate_stage: Option<String>,

    /// Share of sessions in the stage (the rest are in the stage before), 0-100. Default 100.
    #[arg(long, env = "SESSIOND_MIGRATE_PERCENT", value_name = "PERCENT")]
    pub migrate_percent: Option<f64>,

    /// The guarded ramp: step the stage back by itself when the store serving it degrades,
    /// e.g. `errors=1%,p99=20ms,window=30s` (either bound; window 1-60 s, default 30 s).
    /// Never steps forward. Default off.
    #[arg(long, env = "SESSIOND_MIGRATE_GUARD", value_name = "BOUNDS")]
    pub migrate_guard: Option<String>,

    /// Share of reads compared in the shadow and live stages, 0-100 (the others read only
    /// the serving store). Default 10 (docs/BENCHMARKS.md, "Migrations of every type").
    #[arg(long, env = "SESSIOND_MIGRATE_SHADOW_SAMPLE", value_name = "PERCENT")]
    pub migrate_shadow_sample: Option<f64>,

    /// What clients put before the session id. Default PHPREDIS_SESSION:
    #[arg(long, env = "SESSIOND_MIGRATE_CLIENT_PREFIX", value_name = "PREFIX")]
    pub migrate_client_prefix: Option<String>,

    /// What the legacy store puts before the session id. Default none.
    #[arg(long, env = "SESSIOND_MIGRATE_LEGACY_PREFIX", value_name = "PREFIX")]
    pub migrate_legacy_prefix: Option<String>,
}

/// The configuration file: the same keys as the long options.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<String>>,
    unixsocket: Option<String>,
    requirepass: Option<String>,
    aclfile: Option<String>,
    acllog_max_len: Option<usize>,
    tls_port: Option<u16>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_ca_cert_file: Option<String>,
    tls_auth_clients: Option<String>,
    tls_protocols: Option<String>,
    tls_ciphersuites: Option<String>,
    tls_ciphers: Option<String>,
    tls_auth_clients_user: Option<String>,
    maxmemory: Option<toml::Value>,
    maxmemory_policy: Option<String>,
    databases: Option<usize>,
    protected_mode: Option<toml::Value>,
    timeout: Option<u64>,
    maxclients: Option<usize>,
    proto_max_bulk_len: Option<toml::Value>,
    proto_max_multibulk_len: Option<usize>,
    client_query_buffer_limit: Option<toml::Value>,
    client_output_buffer_limit: Option<String>,
    notify_keyspace_events: Option<String>,
    slowlog_log_slower_than: Option<i64>,
    slowlog_max_len: Option<usize>,
    latency_monitor_threshold: Option<u64>,
    busy_reply_threshold: Option<u64>,
    lua_allow_undeclared_keys: Option<toml::Value>,
    lua_memory_limit: Option<toml::Value>,
    threads: Option<usize>,
    loglevel: Option<String>,
    logfile: Option<String>,
    dir: Option<PathBuf>,
    appendonly: Option<toml::Value>,
    appendfsync: Option<String>,
    auto_aof_rewrite_percentage: Option<u64>,
    auto_aof_rewrite_min_size: Option<toml::Value>,
    group_commit_window_us: Option<u64>,
    log_buffer_lines: Option<usize>,
    upstream: Option<String>,
    upstream_connections: Option<usize>,
    upstream_pinned_max: Option<usize>,
    upstream_timeout_ms: Option<u64>,
    upstream_connect_timeout_ms: Option<u64>,
    upstream_health_interval_ms: Option<u64>,
    upstream_failure_limit: Option<u32>,
    upstream_read_from_replica: Option<String>,
    upstream_failover_wait_ms: Option<u64>,
    upstream_refresh_interval_ms: Option<u64>,
    admin_listen: Option<String>,
    admin_token: Option<String>,
    admin_tls_cert_file: Option<String>,
    admin_tls_key_file: Option<String>,
    admin_allow_plaintext: Option<String>,
    console_show_values: Option<String>,
    migrate_from: Option<String>,
    migrate_to: Option<String>,
    migrate_stage: Option<String>,
    migrate_percent: Option<f64>,
    migrate_guard: Option<String>,
    migrate_shadow_sample: Option<f64>,
    migrate_client_prefix: Option<String>,
    migrate_legacy_prefix: Option<String>,
}

/// Resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub unixsocket: Option<String>,
    pub requirepass: Option<String>,
    pub maxmemory: u64,
    pub maxmemory_policy: Policy,
    pub databases: usize,
    pub protected_mode: bool,
    pub timeout: u64,
    pub maxclients: usize,
    pub proto_max_bulk_len: u64,
    pub proto_max_multibulk_len: usize,
    pub client_query_buffer_limit: u64,
    pub client_output_buffer_limit: crate::server::output_limit::OutputLimits,
    /// `notify-keyspace-events`, validated letters.
    pub notify_keyspace_events: String,
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: usize,
    /// `aclfile` (none: users live in memory only).
    pub aclfile: Option<std::path::PathBuf>,
    pub acllog_max_len: usize,
    /// The TLS listener's settings, if `tls-port` is set.
    pub tls: Option<crate::tls::TlsOptions>,
    pub latency_monitor_threshold: u64,
    /// `busy-reply-threshold`, ms.
    pub busy_reply_threshold: u64,
    pub lua_allow_undeclared_keys: bool,
    pub lua_memory_limit: u64,
    /// Worker threads; 0 = the default, see [`Config::effective_threads`].
    pub threads: usize,
    pub loglevel: String,
    pub logfile: Option<String>,
    pub config_file: Option<PathBuf>,
    /// The flags and environment the server started with (a reload resolves the file
    /// again under them).
    pub args: ServeArgs,
    pub dir: PathBuf,
    pub appendonly: bool,
    pub appendfsync: Fsync,
    pub auto_aof_rewrite_percentage: u64,
    pub auto_aof_rewrite_min_size: u64,
    pub group_commit_window_us: u64,
    pub log_buffer_lines: usize,
    /// Gateway mode (`--upstream`); `None`: the embedded engine.
    pub upstream: Option<UpstreamOptions>,
    /// Migration mode (`--migrate-from`, `--migrate-to`).
    pub migration: Option<MigrationConfig>,
    pub admin: Option<crate::admin::AdminConfig>,
}

/// One side of a migration.
#[derive(Clone, Debug)]
pub enum StoreUrl {
    Embedded,
    Redis(Box<UpstreamOptions>),
    /// PHP session files: the directory and PHP's `session.gc_maxlifetime`.
    Files {
        dir: PathBuf,
        gc_maxlifetime: i64,
    },
    /// A MySQL/MariaDB table, optionally behind memcached.
    Sql(Box<crate::migrate::sql::SqlConfig>),
}

impl StoreUrl {
    /// A store URL with default gateway settings (the `migrate` commands).
    pub fn parse(u: &str) -> Result<StoreUrl, String> {
        if let Some(f) = StoreUrl::parse_files(u) {
            return f;
        }
        if u.starts_with("mysql://") || u.starts_with("mariadb://") {
            let u = u.replacen("mariadb://", "mysql://", 1);
            return crate::migrate::sql::SqlConfig::parse(&u).map(|c| StoreUrl::Sql(Box::new(c)));
        }
        if u == "embedded" {
            return Ok(StoreUrl::Embedded);
        }
        let url = UpstreamUrl::parse(u)?;
        let dbs = if matches!(url.topology, Topology::Cluster(_)) {
            1
        } else {
            16
        };
        Ok(StoreUrl::Redis(Box::new(UpstreamOptions::new(url, dbs))))
    }

    /// `files:///var/lib/php/sessions[?gc_maxlifetime=1440]`.
    fn parse_files(u: &str) -> Option<Result<StoreUrl, String>> {
        let rest = u.strip_prefix("files://")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') {
            return Some(Err(format!("'{u}': expected files:///absolute/path")));
        }
        let mut gc_maxlifetime = 1440;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("gc_maxlifetime", v)) => match v.parse::<i64>() {
                    Ok(n) if n > 0 => gc_maxlifetime = n,
                    _ => {
                        return Some(Err(format!(
                            "'{u}': gc_maxlifetime must be a positive number of seconds"
                        )))
                    }
                },
                _ => return Some(Err(format!("'{u}': unknown parameter '{kv}'"))),
            }
        }
        Some(Ok(StoreUrl::Files {
            dir: PathBuf::from(path),
            gc_maxlifetime,
        }))
    }
}

/// The share of shadow reads compared unless set: a tenth of the work of comparing every
/// read, still thousands of comparisons a second at session-store rates. Its latency gain
/// varied between benchmark runs (docs/BENCHMARKS.md, "Migrations of every type").
pub const DEFAULT_SHADOW_SAMPLE: f64 = 10.0;

#[derive(Clone, Debug)]
pub struct MigrationConfig {
    pub from: StoreUrl,
    pub to: StoreUrl,
    pub setting: Setting,
    pub keys: KeyMap,
    pub guard: Option<crate::migrate::guard::GuardConfig>,
    /// Share of shadow reads compared, in hundredths of a percent.
    pub shadow_sample: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 6380))],
            unixsocket: None,
            requirepass: None,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            databases: 16,
            protected_mode: true,
            timeout: 0,
            maxclients: 10000,
            proto_max_bulk_len: 512 * 1024 * 1024,
            proto_max_multibulk_len: 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            client_output_buffer_limit: Default::default(),
            notify_keyspace_events: String::new(),
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            aclfile: None,
            acllog_max_len: crate::acl::log::DEFAULT_MAX_LEN,
            tls: None,
            latency_monitor_threshold: 0,
            busy_reply_threshold: crate::script::run::DEFAULT_BUSY_MS,
            lua_allow_undeclared_keys: false,
            lua_memory_limit: crate::script::vm::DEFAULT_MEMORY_LIMIT,
            threads: 0,
            loglevel: "notice".into(),
            logfile: None,
            config_file: None,
            args: ServeArgs::default(),
            dir: PathBuf::from("sessiond-data"),
            appendonly: true,
            appendfsync: Fsync::EverySec,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 * 1024 * 1024,
            group_commit_window_us: 1000,
            log_buffer_lines: 128_000,
            upstream: None,
            migration: None,
            admin: None,
        }
    }
}

/// `yes`/`no` as Redis writes booleans (also `true`/`false`).
pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("expected yes or no, got '{s}'")),
    }
}

fn toml_size(v: &toml::Value, key: &str) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => parse_size(s),
        _ => Err(format!(
            "{key}: expected a size like 512mb or a number of bytes"
        )),
    }
}

fn toml_bool(v: &toml::Value, key: &str) -> Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) => parse_yes_no(s),
        _ => Err(format!("{key}: expected yes or no")),
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("invalid listen address '{s}': {e}"))?
        .next()
        .ok_or_else(|| format!("listen address '{s}' resolves to nothing"))
}

impl Config {
    /// Worker threads to run. The default is cores − 1 (at least 1). Measured on 2 cores with
    /// the load generator co-located (docs/BENCHMARKS.md): a second worker only steals work
    /// against the client and costs throughput, p99 and CPU per operation.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    }

    /// Resolves flags/env (already merged by clap) over the config file over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        // The fields below are taken out one by one; the gateway and migration options
        // read a whole copy.
        let whole_file = file.clone();
        let mut c = Config {
            config_file: args.config.clone(),
            args: args.clone(),
            ..Config::default()
        };
        let listen: Vec<String> = if !args.listen.is_empty() {
            args.listen.clone()
        } else {
            file.listen.clone().unwrap_or_default()
        };
        if !listen.is_empty() {
            c.listen = listen
                .iter()
                .map(|s| parse_addr(s))
                .collect::<Result<_, _>>()?;
        }
        c.unixsocket = args
            .unixsocket
            .clone()
            .or(file.unixsocket)
            .filter(|s| !s.is_empty());
        c.requirepass = args
            .requirepass
            .clone()
            .or(file.requirepass)
            .filter(|s| !s.is_empty());
        if let Some(m) = &args.maxmemory {
            c.maxmemory = parse_size(m).map_err(|e| format!("--maxmemory: {e}"))?;
        } else if let Some(v) = &file.maxmemory {
            c.maxmemory = toml_size(v, "maxmemory")?;
        }
        if let Some(p) = args.maxmemory_policy.clone().or(file.maxmemory_policy) {
            c.maxmemory_policy = Policy::parse(&p).ok_or_else(|| {
                format!("maxmemory-policy '{p}': expected noeviction, volatile-ttl or allkeys-lru")
            })?;
        }
        if let Some(d) = args.databases.or(file.databases) {
            if d == 0 || d > 1_000_000 {
                return Err(format!("databases {d}: expected 1 to 1000000"));
            }
            c.databases = d;
        }
        if let Some(p) = &args.protected_mode {
            c.protected_mode = parse_yes_no(p).map_err(|e| format!("--protected-mode: {e}"))?;
        } else if let Some(v) = &file.protected_mode {
            c.protected_mode = toml_bool(v, "protected-mode")?;
        }
        if let Some(t) = args.timeout.or(file.timeout) {
            c.timeout = t;
        }
        if let Some(m) = args.maxclients.or(file.maxclients) {
            c.maxclients = m.max(1);
        }
        if let Some(s) = &args.proto_max_bulk_len {
            c.proto_max_bulk_len =
                parse_size(s).map_err(|e| format!("--proto-max-bulk-len: {e}"))?;
        } else if let Some(v) = &file.proto_max_bulk_len {
            c.proto_max_bulk_len = toml_size(v, "proto-max-bulk-len")?;
        }
        if c.proto_max_bulk_len < 1024 * 1024 || c.proto_max_bulk_len > u32::MAX as u64 {
            return Err("proto-max-bulk-len must be between 1mb and 4gb".into());
        }
        if let Some(n) = args
            .proto_max_multibulk_len
            .or(file.proto_max_multibulk_len)
        {
            c.proto_max_multibulk_len = n.max(1);
        }
        if let Some(s) = &args.client_query_buffer_limit {
            c.client_query_buffer_limit =
                parse_size(s).map_err(|e| format!("--client-query-buffer-limit: {e}"))?;
        } else if let Some(v) = &file.client_query_buffer_limit {
            c.client_query_buffer_limit = toml_size(v, "client-query-buffer-limit")?;
        }
        if c.client_query_buffer_limit < 1024 * 1024 {
            return Err("client-query-buffer-limit must be at least 1mb".into());
        }
        if let Some(l) = args
            .client_output_buffer_limit
            .clone()
            .or(file.client_output_buffer_limit)
        {
            c.client_output_buffer_limit = c
                .client_output_buffer_limit
                .parse_over(&l)
                .map_err(|e| format!("client-output-buffer-limit: {e}"))?;
        }
        if let Some(n) = args
            .notify_keyspace_events
            .clone()
            .or(file.notify_keyspace_events)
        {
            if crate::pubsub::parse_flags(n.as_bytes()).is_none() {
                return Err(format!(
                    "notify-keyspace-events {n:?}: invalid event class character; use 'Ag$lshzxeKEtmdn'"
                ));
            }
            c.notify_keyspace_events = n;
        }
        if let Some(n) = args
            .slowlog_log_slower_than
            .or(file.slowlog_log_slower_than)
        {
            if n < -1 {
                return Err(format!(
                    "slowlog-log-slower-than {n}: expected -1 (off), 0 (every command) or more microseconds"
                ));
            }
            c.slowlog_log_slower_than = n;
        }
        if let Some(n) = args.slowlog_max_len.or(file.slowlog_max_len) {
            c.slowlog_max_len = n;
        }
        c.aclfile = args
            .aclfile
            .clone()
            .or(file.aclfile)
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from);
        if let Some(n) = args.acllog_max_len.or(file.acllog_max_len) {
            c.acllog_max_len = n;
        }
        c.tls = tls_options(args, &whole_file)?;
        if let Some(n) = args
            .latency_monitor_threshold
            .or(file.latency_monitor_threshold)
        {
            c.latency_monitor_threshold = n;
        }
        if let Some(n) = args.busy_reply_threshold.or(file.busy_reply_threshold) {
            c.busy_reply_threshold = n;
        }
        if let Some(v) = &args.lua_allow_undeclared_keys {
            c.lua_allow_undeclared_keys =
                parse_yes_no(v).map_err(|e| format!("--lua-allow-undeclared-keys: {e}"))?;
        } else if let Some(v) = &file.lua_allow_undeclared_keys {
            c.lua_allow_undeclared_keys = toml_bool(v, "lua-allow-undeclared-keys")?;
        }
        if let Some(v) = &args.lua_memory_limit {
            c.lua_memory_limit = crate::util::size::parse_size(v)
                .map_err(|e| format!("--lua-memory-limit {v}: {e}"))?;
        } else if let Some(v) = &file.lua_memory_limit {
            c.lua_memory_limit = toml_size(v, "lua-memory-limit")?;
        }
        if let Some(t) = args.threads.or(file.threads) {
            if t == 0 || t > 1024 {
                return Err(format!("threads {t}: expected 1 to 1024"));
            }
            c.threads = t;
        }
        if let Some(l) = args.loglevel.clone().or(file.loglevel) {
            if !matches!(l.as_str(), "debug" | "verbose" | "notice" | "warning") {
                return Err(format!(
                    "loglevel '{l}': expected debug, verbose, notice or warning"
                ));
            }
            c.loglevel = l;
        }
        c.logfile = args
            .logfile
            .clone()
            .or(file.logfile)
            .filter(|s| !s.is_empty());
        if let Some(d) = args.dir.clone().or(file.dir) {
            if d.as_os_str().is_empty() {
                return Err("dir must not be empty".into());
            }
            c.dir = d;
        }
        if let Some(a) = &args.appendonly {
            c.appendonly = parse_yes_no(a).map_err(|e| format!("--appendonly: {e}"))?;
        } else if let Some(v) = &file.appendonly {
            c.appendonly = toml_bool(v, "appendonly")?;
        }
        if let Some(p) = args.appendfsync.clone().or(file.appendfsync.clone()) {
            c.appendfsync = Fsync::parse(&p)
                .ok_or_else(|| format!("appendfsync '{p}': expected always, everysec or no"))?;
        }
        if let Some(p) = args
            .auto_aof_rewrite_percentage
            .or(file.auto_aof_rewrite_percentage)
        {
            c.auto_aof_rewrite_percentage = p;
        }
        if let Some(s) = &args.auto_aof_rewrite_min_size {
            c.auto_aof_rewrite_min_size =
                parse_size(s).map_err(|e| format!("--auto-aof-rewrite-min-size: {e}"))?;
        } else if let Some(v) = &file.auto_aof_rewrite_min_size {
            c.auto_aof_rewrite_min_size = toml_size(v, "auto-aof-rewrite-min-size")?;
        }
        if let Some(w) = args.group_commit_window_us.or(file.group_commit_window_us) {
            if w > 1_000_000 {
                return Err(format!(
                    "group-commit-window-us {w}: at most 1000000 (one second)"
                ));
            }
            c.group_commit_window_us = w;
        }
        if let Some(n) = args.log_buffer_lines.or(file.log_buffer_lines) {
            c.log_buffer_lines = n.max(1);
        }
        let file = whole_file;
        if let Some(a) = args.admin_listen.clone().or(file.admin_listen.clone()) {
            let listen: SocketAddr = a
                .parse()
                .map_err(|_| format!("--admin-listen '{a}': expected HOST:PORT"))?;
            let show_values = match args
                .console_show_values
                .clone()
                .or(file.console_show_values.clone())
            {
                Some(v) => parse_yes_no(&v).map_err(|e| format!("console-show-values: {e}"))?,
                None => false,
            };
            c.admin = Some(crate::admin::AdminConfig {
                listen,
                token: args
                    .admin_token
                    .clone()
                    .or(file.admin_token.clone())
                    .filter(|t| !t.is_empty()),
                show_values,
                tls: match (
                    args.admin_tls_cert_file
                        .clone()
                        .or(file.admin_tls_cert_file.clone()),
                    args.admin_tls_key_file
                        .clone()
                        .or(file.admin_tls_key_file.clone()),
                ) {
                    (Some(c), Some(k)) => Some((c.into(), k.into())),
                    (None, None) => None,
                    _ => {
                        return Err(
                            "--admin-tls-cert-file and --admin-tls-key-file go together".into()
                        )
                    }
                },
                allow_plaintext: match args
                    .admin_allow_plaintext
                    .clone()
                    .or(file.admin_allow_plaintext.clone())
                {
                    Some(v) => {
                        parse_yes_no(&v).map_err(|e| format!("admin-allow-plaintext: {e}"))?
                    }
                    None => false,
                },
            });
        }
        let migrate_from = args.migrate_from.clone().or(file.migrate_from.clone());
        let migrate_to = args.migrate_to.clone().or(file.migrate_to.clone());
        if let Some(u) = args.upstream.clone().or(file.upstream.clone()) {
            if migrate_from.is_some() || migrate_to.is_some() {
                return Err(
                    "--upstream and --migrate-from/--migrate-to exclude each other: \
                            name the upstream as one side of the migration"
                        .into(),
                );
            }
            c.upstream = Some(upstream_options(&u, c.databases, args, &file)?);
        }
        match (migrate_from, migrate_to) {
            (None, None) => {}
            (Some(from), Some(to)) => {
                let side = |u: &str| -> Result<StoreUrl, String> {
                    if let Some(f) = StoreUrl::parse_files(u) {
                        f
                    } else if u.starts_with("mysql://") || u.starts_with("mariadb://") {
                        let u = u.replacen("mariadb://", "mysql://", 1);
                        crate::migrate::sql::SqlConfig::parse(&u)
                            .map(|c| StoreUrl::Sql(Box::new(c)))
                    } else if u == "embedded" {
                        Ok(StoreUrl::Embedded)
                    } else {
                        upstream_options(u, c.databases, args, &file)
                            .map(|o| StoreUrl::Redis(Box::new(o)))
                    }
                };
                let (from, to) = (side(&from)?, side(&to)?);
                if matches!((&from, &to), (StoreUrl::Embedded, StoreUrl::Embedded)) {
                    return Err("a migration needs two different stores".into());
                }
                let stage_name = args
                    .migrate_stage
                    .clone()
                    .or(file.migrate_stage.clone())
                    .unwrap_or_else(|| "off".into());
                let stage = Stage::parse(&stage_name).ok_or_else(|| {
                    format!("migrate-stage '{stage_name}': expected off, dualwrite, shadow, live, rampdown or complete")
                })?;
                let percent = args
                    .migrate_percent
                    .or(file.migrate_percent)
                    .unwrap_or(100.0);
                let mut keys = KeyMap::default();
                if let Some(p) = args
                    .migrate_client_prefix
                    .clone()
                    .or(file.migrate_client_prefix.clone())
                {
                    keys.client_prefix = p.into_bytes();
                }
                if let Some(p) = args
                    .migrate_legacy_prefix
                    .clone()
                    .or(file.migrate_legacy_prefix.clone())
                {
                    keys.legacy_prefix = p.into_bytes();
                }
                let guard = match args.migrate_guard.clone().or(file.migrate_guard.clone()) {
                    Some(g) if g != "off" => Some(crate::migrate::guard::GuardConfig::parse(&g)?),
                    _ => None,
                };
                let sample = args
                    .migrate_shadow_sample
                    .or(file.migrate_shadow_sample)
                    .unwrap_or(DEFAULT_SHADOW_SAMPLE);
                let shadow_sample = crate::migrate::router::sample_basis_points(sample)
                    .map_err(|e| format!("migrate-shadow-sample: {e}"))?;
                c.migration = Some(MigrationConfig {
                    from,
                    to,
                    setting: Setting::new(stage, percent)
                        .map_err(|e| format!("migrate-percent: {e}"))?,
                    keys,
                    guard,
                    shadow_sample,
                });
            }
            _ => return Err("--migrate-from and --migrate-to go together".into()),
        }
        Ok(c)
    }

    /// The persistence part of the configuration.
    pub fn persist(&self) -> PersistConfig {
        PersistConfig {
            dir: self.dir.clone(),
            appendonly: self.appendonly,
            appendfsync: self.appendfsync,
            auto_rewrite_percentage: self.auto_aof_rewrite_percentage,
            auto_rewrite_min_size: self.auto_aof_rewrite_min_size,
            group_commit_window: std::time::Duration::from_micros(self.group_commit_window_us),
        }
    }
}

/// Gateway options for one upstream URL, with the `upstream-*` settings applied.
fn upstream_options(
    u: &str,
    databases: usize,
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<UpstreamOptions, String> {
    let url = UpstreamUrl::parse(u).map_err(|e| format!("--upstream: {e}"))?;
    // A cluster has only database 0.
    let databases = if matches!(url.topology, Topology::Cluster(_)) {
        1
    } else {
        databases
    };
    let mut o = UpstreamOptions::new(url, databases);
    let ms = std::time::Duration::from_millis;
    if let Some(n) = args.upstream_connections.or(file.upstream_connections) {
        if n == 0 || n > 64 {
            return Err("upstream-connections: 1 to 64".into());
        }
        o.connections = n;
    }
    if let Some(n) = args.upstream_pinned_max.or(file.upstream_pinned_max) {
        if n > 1_000_000 {
            return Err("upstream-pinned-max: 0 to 1000000".into());
        }
        o.pinned_max = n;
    }
    let positive = |v: u64, name: &str| {
        if v == 0 {
            Err(format!("{name}: must be above 0"))
        } else {
            Ok(ms(v))
        }
    };
    if let Some(v) = args.upstream_timeout_ms.or(file.upstream_timeout_ms) {
        o.set_timeout(positive(v, "upstream-timeout-ms")?);
    }
    if let Some(v) = args
        .upstream_connect_timeout_ms
        .or(file.upstream_connect_timeout_ms)
    {
        o.connect_timeout = positive(v, "upstream-connect-timeout-ms")?;
    }
    if let Some(v) = args
        .upstream_health_interval_ms
        .or(file.upstream_health_interval_ms)
    {
        o.health_interval = positive(v, "upstream-health-interval-ms")?;
    }
    if let Some(v) = args.upstream_failure_limit.or(file.upstream_failure_limit) {
        o.failure_limit = v.max(1);
    }
    if let Some(v) = args
        .upstream_read_from_replica
        .clone()
        .or(file.upstream_read_from_replica.clone())
    {
        o.read_from_replica = ReadFrom::parse(&v).ok_or_else(|| {
            format!(
                "upstream-read-from-replica '{v}': expected never, on-primary-failure or always"
            )
        })?;
    }
    if let Some(v) = args
        .upstream_failover_wait_ms
        .or(file.upstream_failover_wait_ms)
    {
        o.failover_wait = ms(v);
    }
    if let Some(v) = args
        .upstream_refresh_interval_ms
        .or(file.upstream_refresh_interval_ms)
    {
        o.refresh_interval = positive(v, "upstream-refresh-interval-ms")?;
    }
    Ok(o)
}

/// The TLS listener's settings from flags and file; an error for a TLS setting without
/// `tls-port` or a port without its certificate and key.
fn tls_options(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<crate::tls::TlsOptions>, String> {
    let pick =
        |a: &Option<String>, f: &Option<String>| a.clone().or(f.clone()).filter(|s| !s.is_empty());
    let cert = pick(&args.tls_cert_file, &file.tls_cert_file);
    let key = pick(&args.tls_key_file, &file.tls_key_file);
    let Some(port) = args.tls_port.or(file.tls_port).filter(|p| *p != 0) else {
        if cert.is_some() || key.is_some() {
            return Err("tls-cert-file/tls-key-file are set but tls-port is not".into());
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("tls-port needs tls-cert-file and tls-key-file".into());
    };
    let auth_clients = match pick(&args.tls_auth_clients, &file.tls_auth_clients) {
        Some(s) => crate::tls::AuthClients::parse(&s)?,
        None => crate::tls::AuthClients::Yes,
    };
    let user_from_cn = match pick(&args.tls_auth_clients_user, &file.tls_auth_clients_user)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("off") => false,
        Some("cn") => true,
        Some(other) => return Err(format!("tls-auth-clients-user {other}: expected off or CN")),
    };
    let list = |v: Option<String>, sep: char| -> Vec<String> {
        v.map(|s| {
            s.split(sep)
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
    };
    Ok(Some(crate::tls::TlsOptions {
        port,
        cert_file: cert.into(),
        key_file: key.into(),
        ca_cert_file: pick(&args.tls_ca_cert_file, &file.tls_ca_cert_file).map(Into::into),
        auth_clients,
        protocols: list(pick(&args.tls_protocols, &file.tls_protocols), ' '),
        ciphersuites: list(pick(&args.tls_ciphersuites, &file.tls_ciphersuites), ':'),
        ciphers: list(pick(&args.tls_ciphers, &file.tls_ciphers), ':'),
        user_from_cn,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("sessiond-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "maxmemory = \"2gb\"\nmaxmemory-policy = \"volatile-ttl\"\nprotected-mode = \"no\"\nlisten = [\"127.0.0.1:7000\"]\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            maxmemory: Some("512mb".into()),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.maxmemory, 512 * 1024 * 1024, "flag wins over file");
        assert_eq!(c.maxmemory_policy, Policy::VolatileTtl);
        assert!(!c.protected_mode);
        assert_eq!(c.listen[0].port(), 7000);
        let bad = ServeArgs {
            threads: Some(0),
            ..Default::default()
        };
        assert!(Config::resolve(&bad).unwrap_err().contains("threads"));
        std::fs::write(&path, "bogus-key = 1\n").unwrap();
        assert!(Config::resolve(&ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .contains("bogus-key"));
    }
}
