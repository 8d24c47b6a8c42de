//! Connection commands: PING, ECHO, AUTH, HELLO, SELECT, QUIT, RESET.

use std::sync::atomic::Ordering;

use super::args::{int, is, lossy};
use super::{wrong_args, CmdError, CmdResult, Ctx, Flow};
use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::server::auth_guard;

pub fn ping<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if cx.client.proto == Proto::Resp2 && cx.client.sub.as_ref().is_some_and(|s| s.active()) {
        return super::pubsub::subscribed_ping(cx, a);
    }
    match a.len() {
        1 => cx.out.simple("PONG"),
        2 => cx.out.bulk(a[1]),
        _ => return Err(wrong_args("ping")),
    }
    Ok(())
}

pub fn echo<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    cx.out.bulk(a[1]);
    Ok(())
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Logs the connection in as `user` if `pass` is its password and the user is enabled. A
/// failure is logged in `ACL LOG` (reason `auth`), answered late, and the connection closed
/// after too many (`server/auth_guard.rs`).
async fn authenticate<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    user: &[u8],
    pass: &[u8],
) -> CmdResult {
    let acl = &cx.server.settings.acl;
    if let Some(u) = acl.authenticate(user, pass) {
        cx.client.log_in(u);
        cx.client.acl_version = 0;
        return Ok(());
    }
    let now = crate::clock::now_ms();
    acl.log.add(
        "auth",
        "toplevel",
        "auth".into(),
        lossy(user),
        super::client::client_info(&cx.client.handle, now),
        now,
    );
    cx.client.auth_failures += 1;
    cx.server.auth_failures.record(&cx.client.handle.addr);
    tokio::time::sleep(auth_guard::failure_delay(cx.client.auth_failures)).await;
    if cx.client.auth_failures >= auth_guard::MAX_FAILURES_PER_CONNECTION {
        cx.flow = Flow::Close;
    }
    Err(CmdError::msg(WRONGPASS))
}

pub async fn auth<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    if a.len() == 2 {
        if cx.server.settings.acl.default_user().nopass {
            return Err(CmdError::msg(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        authenticate(cx, b"default", a[1]).await?;
    } else {
        authenticate(cx, a[1], a[2]).await?;
    }
    cx.out.ok();
    Ok(())
}

/// Client names may not contain spaces or special characters (Redis's rule).
pub fn validate_name(name: &[u8]) -> CmdResult {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(CmdError::msg(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
pub async fn hello<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let mut ver = None;
    let mut i = 1;
    if a.len() >= 2 {
        let v = int(a[1])
            .map_err(|_| CmdError::msg("ERR Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(CmdError::msg("NOPROTO unsupported protocol version"));
        }
        ver = Some(v);
        i = 2;
    }
    let mut creds = None;
    let mut name = None;
    while i < a.len() {
        let more = a.len() - 1 - i;
        if is(a[i], "auth") && more >= 2 {
            creds = Some((a[i + 1], a[i + 2]));
            i += 3;
        } else if is(a[i], "setname") && more >= 1 {
            validate_name(a[i + 1])?;
            name = Some(a[i + 1]);
            i += 2;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Syntax error in HELLO option '{}'",
                lossy(a[i])
            )));
        }
    }
    if let Some((u, p)) = creds {
        authenticate(cx, u, p).await?;
    }
    if !cx.client.authenticated {
        return Err(CmdError::msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = name {
        cx.client.handle.update_names(|names| names.name = lossy(n));
    }
    if let Some(v) = ver {
        cx.client.proto = if v == 3 { Proto::Resp3 } else { Proto::Resp2 };
    }
    // The reply uses the protocol just selected.
    let proto = cx.client.proto;
    let id = cx.client.handle.id as i64;
    let mut reply = crate::resp::Reply::new(cx.out.buffer(), proto);
    reply.map(7);
    reply.bulk(b"server");
    reply.bulk(b"redis");
    reply.bulk(b"version");
    reply.bulk(crate::REDIS_COMPAT_VERSION.as_bytes());
    reply.bulk(b"proto");
    reply.int(if proto == Proto::Resp3 { 3 } else { 2 });
    reply.bulk(b"id");
    reply.int(id);
    reply.bulk(b"mode");
    reply.bulk(b"standalone");
    reply.bulk(b"role");
    reply.bulk(b"master");
    reply.bulk(b"modules");
    reply.array(0);
    Ok(())
}

pub fn select<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let db = int(a[1])?;
    if db != 0 && cx.store().gateway().is_some_and(|u| u.is_cluster()) {
        // Redis Cluster has database 0 only, and says so.
        return Err(CmdError::msg("ERR SELECT is not allowed in cluster mode"));
    }
    if db < 0 || db as usize >= cx.store().databases() {
        return Err(CmdError::msg("ERR DB index is out of range"));
    }
    cx.client.db = db as usize;
    cx.client.handle.db.store(db as usize, Ordering::Relaxed);
    cx.out.ok();
    Ok(())
}

pub fn quit<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    cx.out.ok();
    cx.flow = Flow::Close;
    Ok(())
}

pub fn reset<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    cx.client.tx.reset();
    cx.client.sub = None;
    cx.client.db = 0;
    cx.client.handle.db.store(0, Ordering::Relaxed);
    cx.client.proto = Proto::Resp2;
    cx.client.authenticated = cx.server.settings.open_to(cx.client.local) == Ok(true);
    cx.client.user = cx.server.settings.acl.default_user();
    cx.client.acl_version = 0;
    cx.client.handle.update_names(|n| {
        n.name.clear();
        n.user.clear();
    });
    cx.out.simple("RESET");
    Ok(())
}
