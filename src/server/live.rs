//! Settings that change while the server runs, by their Redis names: what `CONFIG GET`
//! reads and `CONFIG SET` changes, and what a configuration reload (`SIGHUP`, `sessiond ctl
//! reload`, see `reload.rs`) applies. One path for both: a reload is a `CONFIG SET` of every
//! live setting whose value in the file changed, so a setting becomes live-reloadable by
//! being settable here.
//!
//! Every change is first *prepared* (parsed and validated into a [`Change`]) and only then
//! *applied*, so a command or a file with one bad value changes nothing.

use std::sync::atomic::Ordering;

use crate::deployment::Deployment;
use crate::migrate::stage::{Setting, Stage};
use crate::server::output_limit::OutputLimits;
use crate::server::Server;
use crate::util::size::parse_size;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parameters `CONFIG GET` knows, in Redis's names.
pub const PARAMS: &[&str] = &[
    "bind",
    "port",
    "unixsocket",
    "requirepass",
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "databases",
    "protected-mode",
    "timeout",
    "maxclients",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "client-output-buffer-limit",
    "proto-max-multibulk-len",
    "loglevel",
    "logfile",
    "appendonly",
    "appendfsync",
    "dir",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "group-commit-window-us",
    "migrate-stage",
    "migrate-percent",
    "migrate-guard",
    "migrate-shadow-sample",
    "upstream-timeout-ms",
    "save",
    "notify-keyspace-events",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "acllog-max-len",
    "aclfile",
    "latency-monitor-threshold",
    "busy-reply-threshold",
    "lua-time-limit",
    "lua-allow-undeclared-keys",
    "lua-memory-limit",
];

pub fn get<S: Deployment>(server: &Server<S>, name: &str) -> String {
    let cfg = &server.config;
    let st = &server.settings;
    let stats = || server.store.stats(crate::clock::now_ms());
    let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
    match name {
        "bind" => cfg
            .listen
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        "port" => cfg.listen.first().map_or(0, |a| a.port()).to_string(),
        "unixsocket" => cfg.unixsocket.clone().unwrap_or_default(),
        "requirepass" => st.requirepass().unwrap_or_default(),
        "maxmemory" => stats().maxmemory.to_string(),
        "maxmemory-policy" => stats().maxmemory_policy.to_string(),
        "maxmemory-samples" => "5".into(),
        "databases" => server.store.databases().to_string(),
        "protected-mode" => yn(st.protected_mode.load(Ordering::Relaxed)),
        "timeout" => st.timeout_secs.load(Ordering::Relaxed).to_string(),
        "maxclients" => st.maxclients.load(Ordering::Relaxed).to_string(),
        "proto-max-bulk-len" => st.proto_max_bulk_len.load(Ordering::Relaxed).to_string(),
        "client-query-buffer-limit" => st
            .client_query_buffer_limit
            .load(Ordering::Relaxed)
            .to_string(),
        "client-output-buffer-limit" => st.output_limits().render(),
        "proto-max-multibulk-len" => st
            .proto_max_multibulk_len
            .load(Ordering::Relaxed)
            .to_string(),
        "slowlog-log-slower-than" => server
            .slowlog
            .slower_than
            .load(Ordering::Relaxed)
            .to_string(),
        "slowlog-max-len" => server.slowlog.max_len.load(Ordering::Relaxed).to_string(),
        "acllog-max-len" => st.acl.log.max_len.load(Ordering::Relaxed).to_string(),
        "aclfile" => cfg
            .aclfile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        "latency-monitor-threshold" => server
            .latency
            .threshold_ms
            .load(Ordering::Relaxed)
            .to_string(),
        "busy-reply-threshold" | "lua-time-limit" => server
            .scripts
            .busy
            .threshold_ms
            .load(Ordering::Relaxed)
            .to_string(),
        "lua-allow-undeclared-keys" => yn(server.scripts.allow_undeclared.load(Ordering::Relaxed)),
        "lua-memory-limit" => server
            .scripts
            .memory_limit
            .load(Ordering::Relaxed)
            .to_string(),
        "loglevel" => crate::logging::level().to_string(),
        "logfile" => cfg.logfile.clone().unwrap_or_default(),
        "appendonly" => yn(server
            .persist
            .as_ref()
            .is_some_and(|p| p.journal().is_some())),
        "appendfsync" => server
            .persist
            .as_ref()
            .and_then(|p| p.journal())
            .map_or(cfg.appendfsync, |j| j.policy())
            .name()
            .into(),
        "dir" => std::fs::canonicalize(&cfg.dir)
            .unwrap_or_else(|_| cfg.dir.clone())
            .display()
            .to_string(),
        "auto-aof-rewrite-percentage" => cfg.auto_aof_rewrite_percentage.to_string(),
        "auto-aof-rewrite-min-size" => cfg.auto_aof_rewrite_min_size.to_string(),
        "group-commit-window-us" => cfg.group_commit_window_us.to_string(),
        "migrate-stage" => server
            .store
            .migration()
            .map(|m| m.setting().stage.to_string())
            .unwrap_or_default(),
        "migrate-percent" => server
            .store
            .migration()
            .map(|m| m.setting().percent().to_string())
            .unwrap_or_default(),
        "migrate-guard" => server
            .store
            .migration()
            .map(|m| m.guard().map_or_else(|| "off".to_string(), |g| g.render()))
            .unwrap_or_default(),
        "migrate-shadow-sample" => server
            .store
            .migration()
            .map(|m| (m.shadow_sample() as f64 / 100.0).to_string())
            .unwrap_or_default(),
        "upstream-timeout-ms" => upstream_options(server)
            .first()
            .map(|o| o.timeout().as_millis().to_string())
            .unwrap_or_default(),
        "save" => String::new(),
        "notify-keyspace-events" => {
            crate::pubsub::flags_to_string(server.pubsub.notify_flags.load(Ordering::Relaxed))
        }
        _ => String::new(),
    }
}

/// The stage and percentage a CONFIG SET asks for, if it names either; `Err((param, why))`.
pub fn migration_change<S: Deployment>(
    server: &Server<S>,
    pairs: &[&[u8]],
) -> Result<Option<Setting>, (String, String)> {
    let mut stage = None;
    let mut percent = None;
    for pair in pairs.chunks_exact(2) {
        let name = lossy(pair[0]).to_ascii_lowercase();
        let value = lossy(pair[1]);
        match name.as_str() {
            "migrate-stage" => {
                stage = Some(Stage::parse(&value).ok_or((name.clone(), "argument must be one of the following: off, dualwrite, shadow, live, rampdown, complete".to_string()))?);
            }
            "migrate-percent" => {
                percent = Some(value.parse::<f64>().map_err(|_| {
                    (
                        name.clone(),
                        "argument couldn't be parsed into a number".to_string(),
                    )
                })?);
            }
            _ => {}
        }
    }
    if stage.is_none() && percent.is_none() {
        return Ok(None);
    }
    let which = if stage.is_some() {
        "migrate-stage"
    } else {
        "migrate-percent"
    };
    let Some(m) = server.store.migration() else {
        return Err((
            which.into(),
            "not migrating (start with --migrate-from and --migrate-to)".into(),
        ));
    };
    let current = m.setting();
    Setting::new(
        stage.unwrap_or(current.stage),
        percent.unwrap_or(current.percent()),
    )
    .map(Some)
    .map_err(|e| ("migrate-percent".into(), e))
}

/// One validated `CONFIG SET` change. Every parameter of a command is parsed and checked
/// into one of these before any is applied, so a bad value changes nothing (Redis 7).
pub enum Change {
    LogLevel(String),
    MigrateGuard(Option<crate::migrate::guard::GuardConfig>),
    MigrateShadowSample(u32),
    UpstreamTimeout(std::time::Duration),
    RequirePass(String),
    MaxMemory(u64),
    MaxMemoryPolicy(String),
    Timeout(u64),
    MaxClients(usize),
    ProtoMaxBulkLen(i64),
    ClientQueryBufferLimit(u64),
    ClientOutputBufferLimit(OutputLimits),
    ProtoMaxMultibulkLen(i64),
    ProtectedMode(bool),
    AppendFsync(crate::persist::Fsync),
    NotifyKeyspaceEvents(u32),
    SlowlogSlowerThan(i64),
    SlowlogMaxLen(usize),
    AcllogMaxLen(usize),
    LatencyThreshold(u64),
    BusyThreshold(u64),
    LuaUndeclared(bool),
    LuaMemory(u64),
}

/// A Redis "long long" setting from `min` up (Redis's bounds and error texts).
fn long_in(v: &str, min: i64) -> Result<i64, String> {
    let n = v
        .parse::<i64>()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    if n < min {
        return Err(format!(
            "argument must be between {min} and {} inclusive",
            i64::MAX
        ));
    }
    Ok(n)
}

/// The settings `CONFIG SET` (and so a reload) can change; the others in [`PARAMS`] are
/// read-only while the server runs. `migrate-stage` and `migrate-percent` change together
/// through [`migration_change`].
pub const SETTABLE: &[&str] = &[
    "requirepass",
    "maxmemory",
    "maxmemory-policy",
    "timeout",
    "maxclients",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "client-output-buffer-limit",
    "proto-max-multibulk-len",
    "protected-mode",
    "appendfsync",
    "notify-keyspace-events",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "acllog-max-len",
    "latency-monitor-threshold",
    "busy-reply-threshold",
    "lua-time-limit",
    "lua-allow-undeclared-keys",
    "lua-memory-limit",
    "loglevel",
    "migrate-guard",
    "migrate-shadow-sample",
    "upstream-timeout-ms",
];

/// The upstream options of every Redis the server talks to (the gateway's, or a
/// migration's Redis stores). Clones of one `Options` share their live settings.
fn upstream_options<S: Deployment>(server: &Server<S>) -> Vec<&crate::upstream::Options> {
    use crate::config::StoreUrl;
    let cfg = &server.config;
    let mut v: Vec<&crate::upstream::Options> = cfg.upstream.iter().collect();
    if let Some(m) = &cfg.migration {
        for side in [&m.from, &m.to] {
            if let StoreUrl::Redis(o) = side {
                v.push(o);
            }
        }
    }
    v
}

/// The script registries a scripting setting applies to: the server's, and in migration mode
/// the embedded side's (scripts routed there run under its registry).
fn scripts_of<S: Deployment>(server: &Server<S>) -> Vec<&crate::script::Scripts> {
    let mut v = vec![&server.scripts];
    if let Some(inner) = server.store.migration().and_then(|m| m.embedded_scripts()) {
        v.push(inner);
    }
    v
}

pub fn prepare<S: Deployment>(
    server: &Server<S>,
    name: &str,
    value: &str,
) -> Result<Change, String> {
    let st = &server.settings;
    let num = |v: &str| {
        v.parse::<u64>()
            .map_err(|_| "argument couldn't be parsed into an integer".to_string())
    };
    let memory = |v: &str| parse_size(v).map_err(|_| "argument must be a memory value".to_string());
    if !SETTABLE.contains(&name) {
        return Err("can't set immutable config".into());
    }
    Ok(match name {
        "maxmemory" | "maxmemory-policy" if server.store.gateway().is_some() => {
            return Err("memory limits belong to the upstream Redis; set them there".into());
        }
        "requirepass" => Change::RequirePass(value.to_string()),
        "maxmemory" => Change::MaxMemory(memory(value)?),
        "maxmemory-policy" => {
            if crate::engine::Policy::parse(value).is_none() {
                return Err("argument(s) must be one of the following: noeviction, volatile-ttl, allkeys-lru".into());
            }
            Change::MaxMemoryPolicy(value.to_string())
        }
        "timeout" => Change::Timeout(num(value)?),
        "maxclients" => {
            let n = value
                .parse::<i64>()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            if !(1..=i64::from(u32::MAX)).contains(&n) {
                return Err("argument must be between 1 and 4294967295 inclusive".into());
            }
            if let Some(fit) = crate::server::fd_limit::max_fitting().filter(|&f| n as usize > f) {
                return Err(format!(
                    "the open-file limit allows at most {fit} clients; raise it (ulimit -n) first"
                ));
            }
            Change::MaxClients(n as usize)
        }
        "proto-max-bulk-len" => {
            let v = memory(value)?;
            if !(1024 * 1024..=u32::MAX as u64).contains(&v) {
                return Err("argument must be between 1mb and 4gb".into());
            }
            Change::ProtoMaxBulkLen(v as i64)
        }
        "client-query-buffer-limit" => {
            let v = memory(value)?;
            if v < 1024 * 1024 {
                return Err("argument must be at least 1mb".into());
            }
            Change::ClientQueryBufferLimit(v)
        }
        "client-output-buffer-limit" => {
            Change::ClientOutputBufferLimit(st.output_limits().parse_over(value)?)
        }
        "proto-max-multibulk-len" => Change::ProtoMaxMultibulkLen(num(value)?.max(1) as i64),
        "protected-mode" => Change::ProtectedMode(crate::config::parse_yes_no(value)?),
        "appendfsync" => {
            let p = crate::persist::Fsync::parse(value).ok_or_else(|| {
                "argument(s) must be one of the following: always, everysec, no".to_string()
            })?;
            if server.persist.as_ref().and_then(|p| p.journal()).is_none() {
                return Err("appendonly is off (start with --appendonly yes)".into());
            }
            Change::AppendFsync(p)
        }
        "notify-keyspace-events" => Change::NotifyKeyspaceEvents(
            crate::pubsub::parse_flags(value.as_bytes())
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?,
        ),
        "loglevel" => {
            if !crate::logging::is_level(value) {
                return Err(
                    "argument(s) must be one of the following: debug, verbose, notice, warning"
                        .into(),
                );
            }
            Change::LogLevel(value.to_string())
        }
        "migrate-guard" => {
            if server.store.migration().is_none() {
                return Err("not migrating (start with --migrate-from and --migrate-to)".into());
            }
            Change::MigrateGuard(match value {
                "off" | "" => None,
                g => Some(crate::migrate::guard::GuardConfig::parse(g)?),
            })
        }
        "migrate-shadow-sample" => {
            if server.store.migration().is_none() {
                return Err("not migrating (start with --migrate-from and --migrate-to)".into());
            }
            let p = value
                .parse::<f64>()
                .map_err(|_| "argument couldn't be parsed into a number".to_string())?;
            Change::MigrateShadowSample(crate::migrate::router::sample_basis_points(p)?)
        }
        "upstream-timeout-ms" => {
            if upstream_options(server).is_empty() {
                return Err("no upstream Redis in this mode".into());
            }
            let n = num(value)?;
            if n == 0 {
                return Err("argument must be at least 1".into());
            }
            Change::UpstreamTimeout(std::time::Duration::from_millis(n))
        }
        "slowlog-log-slower-than" => Change::SlowlogSlowerThan(long_in(value, -1)?),
        "slowlog-max-len" => Change::SlowlogMaxLen(long_in(value, 0)? as usize),
        "acllog-max-len" => Change::AcllogMaxLen(long_in(value, 0)? as usize),
        "latency-monitor-threshold" => Change::LatencyThreshold(long_in(value, 0)? as u64),
        "busy-reply-threshold" | "lua-time-limit" => {
            Change::BusyThreshold(long_in(value, 0)? as u64)
        }
        "lua-allow-undeclared-keys" => Change::LuaUndeclared(crate::config::parse_yes_no(value)?),
        "lua-memory-limit" => {
            let v = memory(value)?;
            if v < 1024 * 1024 {
                return Err("argument must be at least 1mb".into());
            }
            Change::LuaMemory(v)
        }
        _ => return Err("can't set immutable config".into()),
    })
}

/// Applies a prepared change; `who` is written to the audit log for changes to the
/// migration.
pub fn apply<S: Deployment>(server: &Server<S>, change: Change, who: &str) {
    let st = &server.settings;
    match change {
        Change::RequirePass(p) => st.set_requirepass(Some(p)),
        Change::MaxMemory(n) => server.store.set_maxmemory(n),
        Change::MaxMemoryPolicy(p) => {
            let _ = server.store.set_maxmemory_policy(&p);
        }
        Change::Timeout(n) => st.timeout_secs.store(n, Ordering::Relaxed),
        Change::MaxClients(n) => st.maxclients.store(n, Ordering::Relaxed),
        Change::ProtoMaxBulkLen(n) => st.proto_max_bulk_len.store(n, Ordering::Relaxed),
        Change::ClientQueryBufferLimit(n) => {
            st.client_query_buffer_limit.store(n, Ordering::Relaxed)
        }
        Change::ClientOutputBufferLimit(l) => {
            st.set_output_limits(l);
            server.pubsub.set_limit(l.pubsub);
        }
        Change::NotifyKeyspaceEvents(f) => {
            server.pubsub.notify_flags.store(f, Ordering::Relaxed);
        }
        Change::ProtoMaxMultibulkLen(n) => st.proto_max_multibulk_len.store(n, Ordering::Relaxed),
        Change::ProtectedMode(b) => st.protected_mode.store(b, Ordering::Relaxed),
        Change::MigrateGuard(g) => {
            if let Some(m) = server.store.migration() {
                let render = |g: Option<crate::migrate::guard::GuardConfig>| {
                    g.map_or_else(|| "off".to_string(), |g| g.render())
                };
                let before = render(m.guard());
                m.set_guard(g);
                server
                    .audit
                    .record(who, "migration guard", &before, &render(g), "");
            }
        }
        Change::MigrateShadowSample(bp) => {
            if let Some(m) = server.store.migration() {
                let before = format!("{}%", m.shadow_sample() as f64 / 100.0);
                m.set_shadow_sample(bp);
                let after = format!("{}%", bp as f64 / 100.0);
                server
                    .audit
                    .record(who, "migration shadow sample", &before, &after, "");
            }
        }
        Change::UpstreamTimeout(d) => {
            for o in upstream_options(server) {
                o.set_timeout(d);
            }
        }
        Change::LogLevel(l) => {
            if let Err(e) = crate::logging::set_level(&l) {
                tracing::warn!("{e}");
            }
        }
        Change::SlowlogSlowerThan(n) => server.slowlog.slower_than.store(n, Ordering::Relaxed),
        Change::SlowlogMaxLen(n) => server.slowlog.set_max_len(n),
        Change::AcllogMaxLen(n) => server.settings.acl.log.set_max_len(n),
        Change::LatencyThreshold(n) => server.latency.threshold_ms.store(n, Ordering::Relaxed),
        Change::BusyThreshold(n) => {
            for s in scripts_of(server) {
                s.busy.threshold_ms.store(n, Ordering::Relaxed);
            }
        }
        Change::LuaUndeclared(b) => {
            for s in scripts_of(server) {
                s.allow_undeclared.store(b, Ordering::Relaxed);
            }
        }
        Change::LuaMemory(n) => {
            for s in scripts_of(server) {
                s.memory_limit.store(n, Ordering::Relaxed);
            }
        }
        Change::AppendFsync(p) => {
            if let Some(j) = server.persist.as_ref().and_then(|p| p.journal()) {
                j.set_policy(p);
            }
        }
    }
}
