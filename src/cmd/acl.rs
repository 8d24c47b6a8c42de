//! `ACL`: users and their rules (`acl/`), with Redis 7's subcommands and replies.

use std::io::Read;

use super::args::{int, lossy};
use super::slowlog::sub_spec;
use super::{table, CmdError, CmdResult, Ctx};
use crate::acl::user::{hex, CATEGORIES};
use crate::deployment::Deployment;

const ACL_HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

pub fn acl<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = sub_spec("acl", a)?;
    let acl = &cx.server.settings.acl;
    match sub.sub_name() {
        "help" => cx.out.help(ACL_HELP),
        "whoami" => {
            super::current_user(cx.server, cx.client);
            cx.out.bulk(cx.client.user.name.as_bytes());
        }
        "users" => {
            let users = acl.users();
            cx.out.array(users.len());
            for u in users {
                cx.out.bulk(u.name.as_bytes());
            }
        }
        "list" => {
            let users = acl.users();
            cx.out.array(users.len());
            for u in users {
                cx.out.bulk(u.describe().as_bytes());
            }
        }
        "setuser" => {
            acl.setuser(a[2], &a[3..]).map_err(CmdError::msg)?;
            cx.out.ok();
        }
        "deluser" => {
            let gone = acl.deluser(&a[2..]).map_err(CmdError::msg)?;
            close_connections_of(cx, &gone);
            cx.out.int(gone.len() as i64);
        }
        "getuser" => getuser(cx, a[2]),
        "cat" => cat(cx, a)?,
        "genpass" => genpass(cx, a)?,
        "dryrun" => dryrun(cx, a)?,
        "log" => log(cx, a)?,
        "load" => {
            let requirepass = cx.server.settings.requirepass();
            let gone = acl.load(requirepass.as_deref()).map_err(CmdError::msg)?;
            close_connections_of(cx, &gone);
            cx.out.ok();
        }
        "save" => {
            acl.save().map_err(CmdError::msg)?;
            cx.out.ok();
        }
        _ => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{}'. Try ACL HELP.",
                lossy(a[1])
            )))
        }
    }
    Ok(())
}

/// Closes the connections authenticated as users that no longer exist (as Redis does).
fn close_connections_of<S: Deployment>(cx: &mut Ctx<'_, '_, S>, gone: &[String]) {
    if gone.is_empty() {
        return;
    }
    for h in cx.server.clients.snapshot() {
        if gone.contains(&h.user_name()) {
            h.kill();
        }
    }
    if gone.contains(&cx.client.user.name) {
        cx.flow = super::Flow::Close;
    }
}

/// `ACL GETUSER name`: flags, passwords, commands, keys, channels, selectors (none).
fn getuser<S: Deployment>(cx: &mut Ctx<'_, '_, S>, name: &[u8]) {
    let Some(u) = cx.server.settings.acl.user(&lossy(name)) else {
        cx.out.null();
        return;
    };
    let out = &mut *cx.out;
    out.map(6);
    out.bulk(b"flags");
    let flags = u.flags();
    out.array(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"passwords");
    out.array(u.passwords.len());
    for p in &u.passwords {
        out.bulk(hex(p).as_bytes());
    }
    out.bulk(b"commands");
    out.bulk(u.describe_commands().as_bytes());
    out.bulk(b"keys");
    out.bulk(u.describe_keys().as_bytes());
    out.bulk(b"channels");
    out.bulk(u.describe_channels().as_bytes());
    out.bulk(b"selectors");
    out.array(0);
}

/// `ACL CAT [category]`: the categories, or the commands (and subcommands) in one.
fn cat<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let Some(name) = a.get(2) else {
        cx.out.array(CATEGORIES.len());
        for c in CATEGORIES {
            cx.out.bulk(c.as_bytes());
        }
        return Ok(());
    };
    let wanted = lossy(name).to_ascii_lowercase();
    let Some(category) = CATEGORIES.iter().find(|c| **c == wanted) else {
        return Err(CmdError::msg(format!(
            "ERR Unknown category '{}'",
            lossy(name)
        )));
    };
    let names: Vec<&str> = table::commands()
        .iter()
        .filter(|s| s.acl.contains(category))
        .map(|s| s.name)
        .collect();
    cx.out.array(names.len());
    for n in names {
        cx.out.bulk(n.as_bytes());
    }
    Ok(())
}

/// `ACL GENPASS [bits]`: random hex from the kernel's generator, `bits` rounded up to a
/// whole hex digit (default 256).
fn genpass<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let bits = match a.get(2) {
        None => 256,
        Some(b) => int(b)?,
    };
    if !(1..=4096).contains(&bits) {
        return Err(CmdError::msg(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
        ));
    }
    let chars = (bits as usize).div_ceil(4);
    let mut bytes = vec![0u8; chars.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CmdError::msg(format!("ERR no random source: {e}")))?;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in &bytes {
        text.push_str(&format!("{b:02x}"));
    }
    text.truncate(chars);
    cx.out.bulk(text.as_bytes());
    Ok(())
}

/// `ACL DRYRUN user command [arg…]`: whether the user may run it, without running it.
fn dryrun<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let name = lossy(a[2]);
    let Some(u) = cx.server.settings.acl.user(&name) else {
        return Err(CmdError::msg(format!("ERR User '{name}' not found")));
    };
    let args = &a[3..];
    let Some(idx) = table::lookup(args[0]) else {
        return Err(CmdError::msg(format!(
            "ERR Command '{}' not found",
            lossy(args[0])
        )));
    };
    let spec = &table::commands()[idx];
    if !table::arity_ok(spec.arity, args.len()) {
        return Err(super::wrong_args(spec.name));
    }
    let eff = table::subcommand(spec, args).unwrap_or(spec);
    match crate::acl::user::check(&u, eff, args) {
        Ok(()) => cx.out.ok(),
        Err(d) => cx.out.bulk(d.dryrun().as_bytes()),
    }
    Ok(())
}

/// `ACL LOG [count | RESET]`.
fn log<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let log = &cx.server.settings.acl.log;
    if a.len() > 3 {
        return Err(CmdError::msg(
            "ERR unknown subcommand or wrong number of arguments for 'LOG'. Try ACL HELP.",
        ));
    }
    let count = match a.get(2) {
        None => 10,
        Some(w) if w.eq_ignore_ascii_case(b"reset") => {
            log.reset();
            cx.out.ok();
            return Ok(());
        }
        Some(n) => int(n)?.max(0) as usize,
    };
    let now = crate::clock::now_ms();
    let entries = log.newest(count);
    let out = &mut *cx.out;
    out.array(entries.len());
    for e in entries {
        out.map(7);
        out.bulk(b"count");
        out.int(e.count as i64);
        out.bulk(b"reason");
        out.bulk(e.reason.as_bytes());
        out.bulk(b"context");
        out.bulk(e.context.as_bytes());
        out.bulk(b"object");
        out.bulk(e.object.as_bytes());
        out.bulk(b"username");
        out.bulk(e.username.as_bytes());
        out.bulk(b"age-seconds");
        out.double((now - e.updated_ms).max(0) as f64 / 1000.0);
        out.bulk(b"client-info");
        out.bulk(e.client_info.as_bytes());
    }
    Ok(())
}
