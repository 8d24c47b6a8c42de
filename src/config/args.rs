//! The flags of `sessiond serve` (and their `SESSIOND_*` environment variables), named after
//! Redis's configuration directives; `super::Config::resolve` merges them over the file.

use std::path::PathBuf;

use clap::Args;

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
