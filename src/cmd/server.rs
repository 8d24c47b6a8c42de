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
            let mut found: Vec<(&str, &crate::config::def::Def)> = Vec::new();
            for pat in &a[2..] {
                for (name, def) in live::params() {
                    if glob_match(pat, name.as_bytes(), true) && !found.iter().any(|f| f.0 == name)
                    {
                        found.push((name, def));
                    }
                }
            }
            cx.out.map(found.len());
            for (name, def) in found {
                let value = def.get.map(|g| g(cx.server)).unwrap_or_default();
                cx.out.bulk(name.as_bytes());
                cx.out.bulk(value.as_bytes());
            }
        }
        "set" => {
            arity(a.len() >= 4 && a.len().is_multiple_of(2))?;
            let names: Vec<String> = a[2..]
                .chunks_exact(2)
                .map(|p| lossy(p[0]).to_ascii_lowercase())
                .collect();
            // Every name is checked first, so a bad one changes nothing.
            for (i, name) in names.iter().enumerate() {
                if live::get(cx.server, name).is_none() {
                    return Err(CmdError::msg(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        lossy(a[2 + 2 * i])
                    )));
                }
                if names[..i].contains(name) {
                    return Err(CmdError::msg(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                    )));
                }
            }
            let values: Vec<String> = a[2..].chunks_exact(2).map(|p| lossy(p[1])).collect();
            let pairs: Vec<(&str, &str)> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let h = &cx.client.handle;
            let who = format!("client {} {}", h.id, h.addr);
            let by = crate::config::def::By {
                who: &who,
                why: "CONFIG SET",
            };
            let applied = live::set(cx.server, &pairs, &by).map_err(|e| match e {
                live::Refused::Unknown(name) => CmdError::msg(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                )),
                live::Refused::Failed(name, e) => CmdError::msg(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                )),
            })?;
            static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
            for (name, _, value) in applied {
                if !crate::config::table::find(&name).is_some_and(|d| d.secret) {
                    if let Some(n) = LOG.allow() {
                        let note = crate::logging::suppressed_note(n);
                        tracing::info!("CONFIG SET {name} {value}{note}");
                    }
                }
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
