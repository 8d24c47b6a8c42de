//! Configuration: command-line flags named after Redis's config directives, `SESSIOND_*`
//! environment variables, and a TOML file (`--config`) with the same keys, all read through
//! one table of settings (`table.rs`; what a row is: `def.rs`).
//!
//! Precedence: flag > environment > file > default. Every setting has a key in all three.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::legacy::keymap::KeyMap;
use crate::migrate::stage::{Setting, Stage};
use crate::upstream::url::{Topology, UpstreamUrl};
use crate::upstream::Options as UpstreamOptions;

use crate::engine::Policy;
use crate::persist::{Fsync, PersistConfig};

mod args;
pub mod def;
pub mod table;
#[cfg(test)]
mod tests;
mod tls;
mod upstream;

pub use args::ServeArgs;
pub use table::Parts;
use tls::{admin_options, tls_options};
use upstream::upstream_options;

/// Resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub unixsocket: Option<String>,
    pub requirepass: Option<String>,
    pub maxmemory: u64,
    pub maxmemory_policy: Policy,
    pub pack_text_values: bool,
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
    /// The settings `finish` combines into `tls`, `admin`, `upstream` and `migration`, as
    /// given.
    pub parts: Parts,
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
            pack_text_values: true,
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
            parts: Parts::default(),
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

/// The file's values as text, by key: what a flag would say (a boolean as yes/no, an
/// array comma-separated). Every key must be a setting.
fn file_values(text: &str) -> Result<BTreeMap<String, String>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut values = BTreeMap::new();
    for (key, value) in doc {
        let Some(def) = table::all().find(|d| d.name == key && d.load.is_some()) else {
            return Err(format!("unknown key `{key}`"));
        };
        let text = match (&value, def.kind) {
            (toml::Value::Array(items), def::Kind::List) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("{key}: expected an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            (toml::Value::Array(_) | toml::Value::Table(_) | toml::Value::Datetime(_), _) => {
                return Err(format!("{key}: expected {}", def::expected(def.kind)));
            }
            (v, _) => file_text(v),
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// A TOML value as a flag or `CONFIG SET` takes it.
pub fn file_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => def::yes(*b),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Array(items) => items.iter().map(file_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
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

    /// Resolves flags/env (already merged by clap) over the config file over defaults:
    /// each setting's value goes through its row's parser (`table.rs`), then the settings
    /// that combine are combined and checked together ([`Config::finish`]).
    pub fn resolve(args: &ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                file_values(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => Default::default(),
        };
        let mut c = Config {
            config_file: args.config.clone(),
            args: args.clone(),
            ..Config::default()
        };
        for def in table::all() {
            let Some(load) = def.load else { continue };
            let Some(value) = args.given.get(def.name).or(file.get(def.name)) else {
                continue;
            };
            load(&mut c, value).map_err(|e| match def.secret {
                true => format!("{}: {e}", def.name),
                false => format!("{} '{value}': {e}", def.name),
            })?;
        }
        c.finish()?;
        Ok(c)
    }

    /// Combines the settings gathered in [`Parts`] (the TLS listener, the admin API, the
    /// upstream, the migration), with the checks between them.
    fn finish(&mut self) -> Result<(), String> {
        self.tls = tls_options(&self.parts)?;
        self.admin = admin_options(&self.parts)?;
        let p = self.parts.clone();
        if let Some(u) = &p.upstream {
            if p.migrate_from.is_some() || p.migrate_to.is_some() {
                return Err(
                    "--upstream and --migrate-from/--migrate-to exclude each other: \
                            name the upstream as one side of the migration"
                        .into(),
                );
            }
            self.upstream = Some(upstream_options(u, self.databases, &p)?);
        }
        match (&p.migrate_from, &p.migrate_to) {
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
                        upstream_options(u, self.databases, &p)
                            .map(|o| StoreUrl::Redis(Box::new(o)))
                    }
                };
                let (from, to) = (side(from)?, side(to)?);
                if matches!((&from, &to), (StoreUrl::Embedded, StoreUrl::Embedded)) {
                    return Err("a migration needs two different stores".into());
                }
                let mut keys = KeyMap::default();
                if let Some(prefix) = &p.migrate_client_prefix {
                    keys.client_prefix = prefix.clone().into_bytes();
                }
                if let Some(prefix) = &p.migrate_legacy_prefix {
                    keys.legacy_prefix = prefix.clone().into_bytes();
                }
                let setting = Setting::new(
                    p.migrate_stage.unwrap_or(Stage::Off),
                    p.migrate_percent.unwrap_or(100.0),
                )
                .map_err(|e| format!("migrate-percent: {e}"))?;
                let shadow_sample = match p.migrate_shadow_sample {
                    Some(bp) => bp,
                    None => crate::migrate::router::sample_basis_points(DEFAULT_SHADOW_SAMPLE)?,
                };
                self.migration = Some(MigrationConfig {
                    from,
                    to,
                    setting,
                    keys,
                    guard: p.migrate_guard,
                    shadow_sample,
                });
            }
            _ => return Err("--migrate-from and --migrate-to go together".into()),
        }
        Ok(())
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
