//! Server commands: DBSIZE, FLUSHDB, FLUSHALL, SWAPDB, TIME, CONFIG, COMMAND.

use super::args::{int, is, lossy};
use super::table::{engine_commands, Spec};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::server::live;
use crate::util::glob::glob_match;

pub async fn dbsize<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
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

pub async fn flushdb<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

pub async fn flushall<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

pub async fn swapdb<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

pub fn time<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let us = crate::clock::now_us();
    cx.out.array(2);
    cx.out.bulk_int(us / 1_000_000);
    cx.out.bulk_int(us % 1_000_000);
    Ok(())
}

pub fn config<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
                for p in live::PARAMS {
                    if glob_match(pat, p.as_bytes(), true) && !found.contains(p) {
                        found.push(p);
                    }
                }
            }
            let pairs: Vec<(String, String)> = found
                .iter()
                .map(|p| (p.to_string(), live::get(cx.server, p)))
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
                if !live::PARAMS.contains(&name.as_str()) {
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
            let migration = live::migration_change(cx.server, &a[2..]).map_err(|(name, e)| {
                CmdError::msg(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                ))
            })?;
            // Every value is checked before any is applied: all or nothing.
            let mut changes = Vec::with_capacity(a.len() / 2);
            for pair in a[2..].chunks_exact(2) {
                let name = lossy(pair[0]).to_ascii_lowercase();
                if name == "migrate-stage" || name == "migrate-percent" {
                    continue;
                }
                let change = live::prepare(cx.server, &name, &lossy(pair[1])).map_err(|e| {
                    CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                    ))
                })?;
                changes.push((name, change, pair[1]));
            }
            for (name, change, value) in changes {
                let h = &cx.client.handle;
                live::apply(cx.server, change, &format!("client {} {}", h.id, h.addr));
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                if name != "requirepass" {
                    if let Some(n) = LOG.allow() {
                        let note = crate::logging::suppressed_note(n);
                        tracing::info!("CONFIG SET {name} {}{note}", lossy(value));
                    }
                }
            }
            if let (Some(s), Some(m)) = (migration, cx.store().migration()) {
                let before = m.setting();
                m.set_setting(s);
                let h = &cx.client.handle;
                cx.server.audit.record(
                    &format!("client {} {}", h.id, h.addr),
                    "migration",
                    &format!("{} {}%", before.stage, before.percent()),
                    &format!("{} {}%", s.stage, s.percent()),
                    "CONFIG SET",
                );
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
            cx.server
                .pubsub
                .direct_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
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

fn command_info<S: Deployment>(cx: &mut Ctx<'_, '_, S>, s: &Spec) {
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

fn command_docs<S: Deployment>(cx: &mut Ctx<'_, '_, S>, s: &Spec) {
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

pub fn command<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
