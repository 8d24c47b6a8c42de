//! `CLIENT` subcommands: ID, GETNAME, SETNAME, SETINFO, INFO, LIST, KILL, HELP.

use std::sync::atomic::Ordering;

use super::args::{int, is, lossy};
use super::connection::validate_name;
use super::{CmdError, CmdResult, Ctx, Flow};
use crate::deployment::Deployment;
use crate::server::clients::ClientHandle;

fn sub_arity(sub: &str, ok: bool) -> CmdResult {
    if ok {
        Ok(())
    } else {
        Err(CmdError::msg(format!(
            "ERR wrong number of arguments for 'client|{sub}' command"
        )))
    }
}

pub fn client<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = lossy(a[1]).to_ascii_lowercase();
    match sub.as_str() {
        "id" => {
            sub_arity("id", a.len() == 2)?;
            cx.out.int(cx.client.handle.id as i64);
        }
        "getname" => {
            sub_arity("getname", a.len() == 2)?;
            let n = cx.client.handle.names().name;
            cx.out.bulk_opt(if n.is_empty() {
                None
            } else {
                Some(n.as_bytes())
            });
        }
        "setname" => {
            sub_arity("setname", a.len() == 3)?;
            validate_name(a[2])?;
            let name = lossy(a[2]);
            cx.client.handle.update_names(|n| n.name = name);
            cx.out.ok();
        }
        "setinfo" => {
            sub_arity("setinfo", a.len() == 4)?;
            let attr = lossy(a[2]).to_ascii_lowercase();
            if attr != "lib-name" && attr != "lib-ver" {
                return Err(CmdError::msg(format!(
                    "ERR Unrecognized option '{}'",
                    lossy(a[2])
                )));
            }
            if a[3].iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                return Err(CmdError::msg(format!(
                    "ERR {attr} cannot contain spaces, newlines or special characters."
                )));
            }
            let v = lossy(a[3]);
            cx.client.handle.update_names(|n| {
                if attr == "lib-name" {
                    n.lib_name = v
                } else {
                    n.lib_ver = v
                }
            });
            cx.out.ok();
        }
        "info" => {
            sub_arity("info", a.len() == 2)?;
            let line = client_line(cx, &cx.client.handle.clone());
            cx.out.verbatim(line.as_bytes());
        }
        "list" => {
            let all = cx.server.clients.snapshot();
            let mut ids: Option<Vec<u64>> = None;
            let mut i = 2;
            while i < a.len() {
                if is(a[i], "type") && i + 1 < a.len() {
                    let t = lossy(a[i + 1]).to_ascii_lowercase();
                    if !matches!(t.as_str(), "normal" | "master" | "replica" | "pubsub") {
                        return Err(CmdError::msg(format!(
                            "ERR Unknown client type '{}'",
                            lossy(a[i + 1])
                        )));
                    }
                    if t != "normal" {
                        ids = Some(Vec::new());
                    }
                    i += 2;
                } else if is(a[i], "id") && i + 1 < a.len() {
                    let mut v = ids.take().unwrap_or_default();
                    for x in &a[i + 1..] {
                        let id = int(x)
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| CmdError::msg("ERR Invalid client ID"))?;
                        v.push(id as u64);
                    }
                    ids = Some(v);
                    i = a.len();
                } else {
                    return Err(CmdError::Syntax);
                }
            }
            let mut text = String::new();
            for h in all
                .iter()
                .filter(|h| ids.as_ref().is_none_or(|v| v.contains(&h.id)))
            {
                text.push_str(&client_line(cx, h));
            }
            cx.out.verbatim(text.as_bytes());
        }
        "kill" => kill(cx, a)?,
        "help" => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID, ADDR, LADDR, SKIPME.",
                "LIST [options ...]",
                "    Return information about client connections.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "SETINFO <option> <value>",
                "    Set client meta attr (lib-name, lib-ver).",
                "HELP",
                "    Print this help.",
            ];
            cx.out.array(lines.len());
            for l in lines {
                cx.out.simple(l);
            }
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                lossy(a[1])
            )));
        }
    }
    Ok(())
}

/// One line of CLIENT LIST, with Redis's field names (fields sessiond has no notion of are 0).
fn client_line<S: Deployment>(cx: &Ctx<'_, '_, S>, h: &ClientHandle) -> String {
    let mut line = client_info(h, cx.now);
    line.push('\n');
    line
}

/// A client described as CLIENT LIST does (without the newline; `ACL LOG`'s client-info).
pub fn client_info(h: &ClientHandle, now: i64) -> String {
    let names = h.names();
    let user = if names.user.is_empty() {
        "default"
    } else {
        names.user.as_str()
    };
    let cmd = match h.last_cmd.load(Ordering::Relaxed) {
        usize::MAX => "NULL".to_string(),
        i => super::table::commands()
            .get(i)
            .map_or("NULL", |s| s.name)
            .to_string(),
    };
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
        h.id,
        h.addr,
        h.laddr,
        names.name,
        (now - h.created_ms).max(0) / 1000,
        (now - h.last_ms.load(Ordering::Relaxed)).max(0) / 1000,
        h.db.load(Ordering::Relaxed),
        cmd,
        user,
        h.resp.load(Ordering::Relaxed),
        names.lib_name,
        names.lib_ver,
    )
}

fn kill<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let me = cx.client.handle.id;
    let all = cx.server.clients.snapshot();
    if a.len() == 3 {
        // Old form: CLIENT KILL addr:port.
        let addr = lossy(a[2]);
        let Some(h) = all.iter().find(|h| h.addr == addr) else {
            return Err(CmdError::msg("ERR No such client"));
        };
        h.kill();
        cx.server.clients.unregister(h.id);
        if h.id == me {
            cx.flow = Flow::Close;
        }
        cx.out.ok();
        return Ok(());
    }
    if !a.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let (mut id, mut addr, mut laddr, mut user, mut skipme) = (None, None, None, None, true);
    for pair in a[2..].chunks_exact(2) {
        let v = pair[1];
        if is(pair[0], "id") {
            id = Some(
                int(v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| CmdError::msg("ERR client-id should be greater than 0"))?
                    as u64,
            );
        } else if is(pair[0], "addr") {
            addr = Some(lossy(v));
        } else if is(pair[0], "laddr") {
            laddr = Some(lossy(v));
        } else if is(pair[0], "skipme") {
            skipme = if is(v, "yes") {
                true
            } else if is(v, "no") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
        } else if is(pair[0], "user") {
            let name = lossy(v);
            if cx.server.settings.acl.user(&name).is_none() {
                return Err(CmdError::msg(format!("ERR No such user '{name}'")));
            }
            user = Some(name);
        } else if is(pair[0], "type") || is(pair[0], "maxage") {
            // Accepted for compatibility; every sessiond client is a normal client.
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let mut killed = 0;
    for h in &all {
        if id.is_some_and(|i| i != h.id)
            || addr.as_ref().is_some_and(|x| *x != h.addr)
            || laddr.as_ref().is_some_and(|x| *x != h.laddr)
            || user.as_ref().is_some_and(|u| *u != h.user_name())
            || (skipme && h.id == me)
        {
            continue;
        }
        // Gone at once, as in Redis: no longer listed, counted or killable again, even
        // while its task is still draining.
        h.kill();
        cx.server.clients.unregister(h.id);
        if h.id == me {
            cx.flow = Flow::Close;
        }
        killed += 1;
    }
    cx.out.int(killed);
    Ok(())
}
