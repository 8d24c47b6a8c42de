//! Configuration: command-line flags named after Redis's config directives, `SESSIOND_*`
//! environment variables, and a TOML file (`--config`) with the same keys.
//!
//! Precedence: flag > environment > file > default. Every setting has a key in all three.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::legacy::keymap::KeyMap;
use crate::migrate::stage::{Setting, Stage};
use crate::upstream::url::{Topology, UpstreamUrl};
use crate::upstream::{Options as UpstreamOptions, ReadFrom};

use crate::engine::Policy;
use crate::persist::{Fsync, PersistConfig};
use crate::util::size::parse_size;

mod args;
#[cfg(test)]
mod tests;
mod tls;
mod upstream;

pub use args::ServeArgs;
use tls::tls_options;
use upstream::upstream_options;

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
    Sql(Box<crate::legacy::sql::SqlConfig>),
}

impl StoreUrl {
    /// A store URL with default gateway settings (the `migrate` commands).
    pub fn parse(u: &str) -> Result<StoreUrl, String> {
        if let Some(f) = StoreUrl::parse_files(u) {
            return f;
        }
        if u.starts_with("mysql://") || u.starts_with("mariadb://") {
            let u = u.replacen("mariadb://", "mysql://", 1);
            return crate::legacy::sql::SqlConfig::parse(&u).map(|c| StoreUrl::Sql(Box::new(c)));
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
                        crate::legacy::sql::SqlConfig::parse(&u).map(|c| StoreUrl::Sql(Box::new(c)))
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
