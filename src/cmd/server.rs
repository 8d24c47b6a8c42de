//! Server commands: DBSIZE, FLUSHDB, FLUSHALL, SWAPDB, TIME, CONFIG, COMMAND.

use std::sync::atomic::Ordering;

use super::args::{int, is, lossy};
use super::table::{engine_commands, Spec};
use super::{CmdError, CmdResult, Ctx};
use crate::migrate::stage::{Setting, Stage};
use crate::server::output_limit::OutputLimits;
use crate::store::Store;
use crate::util::glob::glob_match;
use crate::util::size::parse_size;

pub async fn dbsize<S: Store>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let n = cx.store().dbsize(cx.db()).await?;
    cx.out.int(n as i64);
    Ok(())
}

fn flush_mode(a: &[&[u8]]) -> CmdResult {
    match a.len() {
        1 => Ok(()),
        2 if is(a[1], "async") || is(a[1], "sync") => Ok(()),
        _ => Err(CmdError::Syntax),
    }
}

pub async fn flushdb<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    flush_mode(a)?;
    cx.store().flush_db(cx.db()).await?;
    static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
    if let Some(n) = LOG.allow() {
        let note = crate::logging::suppressed_note(n);
        tracing::info!(client = cx.client.handle.id, db = cx.db(), "FLUSHDB{note}");
    }
    cx.out.ok();
    Ok(())
}

pub async fn flushall<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    flush_mode(a)?;
    cx.store().flush_all().await?;
    static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
    if let Some(n) = LOG.allow() {
        let note = crate::logging::suppressed_note(n);
        tracing::info!(client = cx.client.handle.id, "FLUSHALL{note}");
    }
    cx.out.ok();
    Ok(())
}

pub async fn swapdb<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let x = int(a[1]).map_err(|_| CmdError::msg("ERR invalid first DB index"))?;
    let y = int(a[2]).map_err(|_| CmdError::msg("ERR invalid second DB index"))?;
    let n = cx.store().databases() as i64;
    if x < 0 || x >= n || y < 0 || y >= n {
        return Err(CmdError::msg("ERR DB index is out of range"));
    }
    cx.store().swap_db(x as usize, y as usize).await?;
    cx.out.ok();
    Ok(())
}

pub fn time<S: Store>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let us = crate::clock::now_us();
    cx.out.array(2);
    cx.out.bulk_int(us / 1_000_000);
    cx.out.bulk_int(us % 1_000_000);
    Ok(())
}

/// Parameters `CONFIG GET` knows, in Redis's names.
const PARAMS: &[&str] = &[
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
    "save",
    "notify-keyspace-events",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
];

fn param_value<S: Store>(cx: &Ctx<'_, '_, S>, name: &str) -> String {
    let cfg = &cx.server.config;
    let st = &cx.server.settings;
    let stats = || cx.store().stats(cx.now);
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
        "databases" => cx.store().databases().to_string(),
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
        "slowlog-log-slower-than" => cx
            .server
            .slowlog
            .slower_than
            .load(Ordering::Relaxed)
            .to_string(),
        "slowlog-max-len" => cx
            .server
            .slowlog
            .max_len
            .load(Ordering::Relaxed)
            .to_string(),
        "latency-monitor-threshold" => cx
            .server
            .latency
            .threshold_ms
            .load(Ordering::Relaxed)
            .to_string(),
        "loglevel" => cfg.loglevel.clone(),
        "logfile" => cfg.logfile.clone().unwrap_or_default(),
        "appendonly" => yn(cx
            .server
            .persist
            .as_ref()
            .is_some_and(|p| p.journal().is_some())),
        "appendfsync" => cx
            .server
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
        "migrate-stage" => cx
            .store()
            .migration()
            .map(|m| m.setting().stage.to_string())
            .unwrap_or_default(),
        "migrate-percent" => cx
            .store()
            .migration()
            .map(|m| m.setting().percent().to_string())
            .unwrap_or_default(),
        "save" => String::new(),
        "notify-keyspace-events" => {
            crate::pubsub::flags_to_string(cx.server.pubsub.notify_flags.load(Ordering::Relaxed))
        }
        _ => String::new(),
    }
}

/// The stage and percentage a CONFIG SET asks for, if it names either; `Err((param, why))`.
fn migration_change<S: Store>(
    cx: &Ctx<'_, '_, S>,
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
    let Some(m) = cx.store().migration() else {
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
enum Change {
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
    LatencyThreshold(u64),
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

fn prepare<S: Store>(cx: &Ctx<'_, '_, S>, name: &str, value: &str) -> Result<Change, String> {
    let st = &cx.server.settings;
    let num = |v: &str| {
        v.parse::<u64>()
            .map_err(|_| "argument couldn't be parsed into an integer".to_string())
    };
    let memory = |v: &str| parse_size(v).map_err(|_| "argument must be a memory value".to_string());
    Ok(match name {
        "maxmemory" | "maxmemory-policy" if cx.store().gateway().is_some() => {
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
            if cx
                .server
                .persist
                .as_ref()
                .and_then(|p| p.journal())
                .is_none()
            {
                return Err("appendonly is off (start with --appendonly yes)".into());
            }
            Change::AppendFsync(p)
        }
        "notify-keyspace-events" => Change::NotifyKeyspaceEvents(
            crate::pubsub::parse_flags(value.as_bytes())
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?,
        ),
        "slowlog-log-slower-than" => Change::SlowlogSlowerThan(long_in(value, -1)?),
        "slowlog-max-len" => Change::SlowlogMaxLen(long_in(value, 0)? as usize),
        "latency-monitor-threshold" => Change::LatencyThreshold(long_in(value, 0)? as u64),
        _ => return Err("can't set immutable config".into()),
    })
}

fn apply<S: Store>(cx: &Ctx<'_, '_, S>, change: Change) {
    let st = &cx.server.settings;
    match change {
        Change::RequirePass(p) => st.set_requirepass(Some(p)),
        Change::MaxMemory(n) => cx.store().set_maxmemory(n),
        Change::MaxMemoryPolicy(p) => {
            let _ = cx.store().set_maxmemory_policy(&p);
        }
        Change::Timeout(n) => st.timeout_secs.store(n, Ordering::Relaxed),
        Change::MaxClients(n) => st.maxclients.store(n, Ordering::Relaxed),
        Change::ProtoMaxBulkLen(n) => st.proto_max_bulk_len.store(n, Ordering::Relaxed),
        Change::ClientQueryBufferLimit(n) => {
            st.client_query_buffer_limit.store(n, Ordering::Relaxed)
        }
        Change::ClientOutputBufferLimit(l) => {
            st.set_output_limits(l);
            cx.server.pubsub.set_limit(l.pubsub);
        }
        Change::NotifyKeyspaceEvents(f) => {
            cx.server.pubsub.notify_flags.store(f, Ordering::Relaxed);
        }
        Change::ProtoMaxMultibulkLen(n) => st.proto_max_multibulk_len.store(n, Ordering::Relaxed),
        Change::ProtectedMode(b) => st.protected_mode.store(b, Ordering::Relaxed),
        Change::SlowlogSlowerThan(n) => cx.server.slowlog.slower_than.store(n, Ordering::Relaxed),
        Change::SlowlogMaxLen(n) => cx.server.slowlog.set_max_len(n),
        Change::LatencyThreshold(n) => cx.server.latency.threshold_ms.store(n, Ordering::Relaxed),
        Change::AppendFsync(p) => {
            if let Some(j) = cx.server.persist.as_ref().and_then(|p| p.journal()) {
                j.set_policy(p);
            }
        }
    }
}

pub fn config<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = lossy(a[1]).to_ascii_lowercase();
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(CmdError::msg(format!(
                "ERR wrong number of arguments for 'config|{sub}' command"
            )))
        }
    };
    match sub.as_str() {
        "get" => {
            arity(a.len() >= 3)?;
            let mut found: Vec<&str> = Vec::new();
            for pat in &a[2..] {
                for p in PARAMS {
                    if glob_match(pat, p.as_bytes(), true) && !found.contains(p) {
                        found.push(p);
                    }
                }
            }
            let pairs: Vec<(String, String)> = found
                .iter()
                .map(|p| (p.to_string(), param_value(cx, p)))
                .collect();
            cx.out.map(pairs.len());
            for (k, v) in pairs {
                cx.out.bulk(k.as_bytes());
                cx.out.bulk(v.as_bytes());
            }
        }
        "set" => {
            arity(a.len() >= 4 && a.len().is_multiple_of(2))?;
            // Validate every name first so a bad one changes nothing.
            let mut seen: Vec<String> = Vec::new();
            for pair in a[2..].chunks_exact(2) {
                let name = lossy(pair[0]).to_ascii_lowercase();
                if !PARAMS.contains(&name.as_str()) {
                    return Err(CmdError::msg(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        lossy(pair[0])
                    )));
                }
                if seen.contains(&name) {
                    return Err(CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                    )));
                }
                seen.push(name);
            }
            // A migration's stage and percentage given together change in one step, checked
            // before anything else is applied.
            let migration = migration_change(cx, &a[2..]).map_err(|(name, e)| {
                CmdError::msg(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                ))
            })?;
            // Every value is checked before any is applied: all or nothing.
            let mut changes = Vec::with_capacity(a.len() / 2);
            for pair in a[2..].chunks_exact(2) {
                let name = lossy(pair[0]).to_ascii_lowercase();
                if name.starts_with("migrate-") {
                    continue;
                }
                let change = prepare(cx, &name, &lossy(pair[1])).map_err(|e| {
                    CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                    ))
                })?;
                changes.push((name, change, pair[1]));
            }
            for (name, change, value) in changes {
                apply(cx, change);
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                if name != "requirepass" {
                    if let Some(n) = LOG.allow() {
                        let note = crate::logging::suppressed_note(n);
                        tracing::info!("CONFIG SET {name} {}{note}", lossy(value));
                    }
                }
            }
            if let (Some(s), Some(m)) = (migration, cx.store().migration()) {
                m.set_setting(s);
            }
            cx.out.ok();
        }
        "resetstat" => {
            arity(a.len() == 2)?;
            let s = &cx.server.stats;
            s.commands_processed.reset();
            s.connections_received.reset();
            s.rejected_connections.reset();
            s.net_input_bytes.reset();
            s.net_output_bytes.reset();
            cx.out.ok();
        }
        "rewrite" => {
            arity(a.len() == 2)?;
            return Err(CmdError::msg(
                "ERR The server is running without a config file",
            ));
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                lossy(a[1])
            )));
        }
    }
    Ok(())
}

fn command_info<S: Store>(cx: &mut Ctx<'_, '_, S>, s: &Spec) {
    let out = &mut cx.out;
    out.array(10);
    out.bulk(s.name.as_bytes());
    out.int(s.arity as i64);
    out.set(s.flags.names().count());
    for f in s.flags.names() {
        out.simple(f);
    }
    out.int(s.first_key as i64);
    out.int(s.last_key as i64);
    out.int(s.step as i64);
    out.set(s.acl.len());
    for c in &s.acl {
        out.simple(&format!("@{c}"));
    }
    out.array(s.tips.len());
    for t in &s.tips {
        out.simple(t);
    }
    out.array(0); // key specs
    out.array(0); // subcommands
}

fn command_docs<S: Store>(cx: &mut Ctx<'_, '_, S>, s: &Spec) {
    let out = &mut cx.out;
    out.bulk(s.name.as_bytes());
    out.map(3);
    out.bulk(b"summary");
    out.bulk(s.summary.as_bytes());
    out.bulk(b"since");
    out.bulk(s.since.as_bytes());
    out.bulk(b"group");
    out.bulk(s.group.as_bytes());
}

/// A command the engine implements, by its `COMMAND INFO` name (`config|get` included).
fn find(name: &[u8]) -> Option<&'static Spec> {
    let spec = super::table::find(name)?;
    let top = spec
        .name
        .split('|')
        .next()
        .and_then(|p| super::table::find(p.as_bytes()))?;
    top.id.is_some().then_some(spec)
}

pub fn command<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 1 {
        cx.out.array(engine_commands().count());
        for s in engine_commands() {
            command_info(cx, s);
        }
        return Ok(());
    }
    let sub = lossy(a[1]).to_ascii_lowercase();
    match sub.as_str() {
        "count" => {
            if a.len() != 2 {
                return Err(CmdError::msg(
                    "ERR wrong number of arguments for 'command|count' command",
                ));
            }
            cx.out.int(engine_commands().count() as i64);
        }
        "list" => {
            cx.out.array(engine_commands().count());
            for s in engine_commands() {
                cx.out.bulk(s.name.as_bytes());
            }
        }
        "info" => {
            let specs: Vec<Option<&Spec>> = if a.len() == 2 {
                engine_commands().map(Some).collect()
            } else {
                a[2..].iter().map(|n| find(n)).collect()
            };
            cx.out.array(specs.len());
            for s in specs {
                match s {
                    Some(s) => command_info(cx, s),
                    None => cx.out.null(),
                }
            }
        }
        "docs" => {
            let specs: Vec<&Spec> = if a.len() == 2 {
                engine_commands().collect()
            } else {
                a[2..].iter().filter_map(|n| find(n)).collect()
            };
            cx.out.map(specs.len());
            for s in specs {
                command_docs(cx, s);
            }
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                lossy(a[1])
            )));
        }
    }
    Ok(())
}
