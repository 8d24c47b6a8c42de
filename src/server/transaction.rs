//! Transactions through the gateway: a client between `WATCH`/`MULTI` and
//! `EXEC`/`DISCARD`/`UNWATCH`, on its pinned connection (see `gateway.rs` for when a
//! transaction pipelined whole is sent without one).
//!
//! What Redis would queue goes to the upstream's own transaction and its replies come back
//! as they are. What sessiond cannot queue there (a command it answers itself, keys in
//! another slot of a cluster) gets an error and makes `EXEC` answer `EXECABORT`, as Redis
//! does for a command it rejects while queueing. In a cluster, the `MULTI` is held until a
//! key names the node, and a slot that moves while the transaction is queued is followed:
//! the transaction is replayed on the new owner at `EXEC`.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;

use super::gateway::{
    is_select, local, push, wait_blocked, ClientSide, GatewayClient, Tx, CROSSSLOT, EXECABORT,
    MAX_COLLECTED, MAX_COLLECTED_BYTES,
};
use super::Server;
use crate::cmd::{table, ClientState, Flow};
use crate::deployment::Deployment;
use crate::resp::Reply;
use crate::upstream::cluster;
use crate::upstream::pinned::Fix;
use crate::upstream::policy::Action;
use crate::upstream::Upstream;

/// A command while `WATCH` is in effect (no `MULTI` yet): the client's commands go to its
/// pinned connection, so its reads see what the watch guards.
#[allow(clippy::too_many_arguments)]
pub(super) async fn watching<S: Deployment, IO: AsyncRead + Unpin>(
    server: &Server<S>,
    up: &Upstream,
    gw: &mut GatewayClient,
    state: &mut ClientState,
    args: &[&[u8]],
    action: Action,
    keys: &[&[u8]],
    wbuf: &mut BytesMut,
    client: &mut ClientSide<'_, IO>,
) -> Flow {
    match action {
        Action::Multi => {
            gw.tx = Tx::Multi {
                dirty: false,
                held: None,
            };
            push(gw, args, Fix::Keep);
        }
        Action::Unwatch => {
            push(gw, args, Fix::Keep);
            gw.drain(up, wbuf).await;
            gw.tx = Tx::None;
            gw.release(up);
        }
        Action::Exec | Action::Discard | Action::Watch => push(gw, args, Fix::Keep),
        Action::Subscribe => {
            gw.drain(up, wbuf).await;
            Reply::new(wbuf, state.proto).error(
                "ERR SUBSCRIBE while WATCH is in effect is not supported by the sessiond gateway",
            );
        }
        Action::Forward | Action::AllPrimaries | Action::Block => {
            if !gw.slot_ok(up, keys) {
                gw.drain(up, wbuf).await;
                Reply::new(wbuf, state.proto).error(CROSSSLOT);
                return Flow::Continue;
            }
            push(gw, args, Fix::Keep);
            if action == Action::Block {
                return wait_blocked(server, gw, state, wbuf, client).await;
            }
        }
        Action::Refuse(msg) => {
            gw.drain(up, wbuf).await;
            Reply::new(wbuf, state.proto).error(msg);
        }
        Action::Local => {
            if is_select(args) {
                gw.drain(up, wbuf).await;
                Reply::new(wbuf, state.proto).error(
                    "ERR SELECT while WATCH is in effect is not supported by the sessiond gateway",
                );
                return Flow::Continue;
            }
            return local(server, gw, up, state, args, wbuf)
                .await
                .unwrap_or(Flow::Continue);
        }
    }
    if gw.pinned.as_ref().is_some_and(|p| p.outstanding() >= 64) {
        gw.drain(up, wbuf).await;
    }
    Flow::Continue
}

/// A command inside `MULTI`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn in_multi<S: Deployment>(
    server: &Server<S>,
    up: &Upstream,
    gw: &mut GatewayClient,
    state: &mut ClientState,
    args: &[&[u8]],
    action: Action,
    keys: &[&[u8]],
    wbuf: &mut BytesMut,
) -> Flow {
    let queueable = match action {
        Action::Forward | Action::Block | Action::AllPrimaries => true,
        Action::Multi | Action::Watch | Action::Exec | Action::Discard | Action::Unwatch => true,
        // Redis queues these too, and the upstream answers them as well as sessiond would.
        Action::Local => {
            let n = args[0];
            n.eq_ignore_ascii_case(b"ping")
                || n.eq_ignore_ascii_case(b"echo")
                || n.eq_ignore_ascii_case(b"time")
        }
        Action::Refuse(_) | Action::Subscribe => false,
    };
    if !queueable {
        let is_quit =
            args[0].eq_ignore_ascii_case(b"quit") || args[0].eq_ignore_ascii_case(b"reset");
        if is_quit {
            return local(server, gw, up, state, args, wbuf)
                .await
                .unwrap_or(Flow::Continue);
        }
        gw.drain(up, wbuf).await;
        gw.mark_dirty();
        let msg = match action {
            Action::Refuse(m) => m.to_string(),
            _ => format!(
                "ERR {} inside MULTI is not supported by the sessiond gateway",
                String::from_utf8_lossy(args[0]).to_uppercase()
            ),
        };
        Reply::new(wbuf, state.proto).error(&msg);
        return Flow::Continue;
    }
    if !matches!(action, Action::Exec | Action::Discard) && !gw.slot_ok(up, keys) {
        gw.drain(up, wbuf).await;
        gw.mark_dirty();
        Reply::new(wbuf, state.proto).error(CROSSSLOT);
        return Flow::Continue;
    }
    // Cluster, nothing sent yet: hold keyless commands, open at the first key or at EXEC.
    if let Tx::Multi {
        held: Some(held), ..
    } = &mut gw.tx
    {
        match action {
            Action::Discard => {
                gw.tx = Tx::None;
                gw.slot = None;
                gw.drain(up, wbuf).await;
                wbuf.extend_from_slice(b"+OK\r\n");
                return Flow::Continue;
            }
            Action::Exec | Action::Multi | Action::Watch => {}
            // Held, within the same bounds as a collected transaction; past them the
            // transaction opens on a primary (a later key in another slot's node is then
            // answered -MOVED there and replayed on its owner at EXEC).
            _ if keys.is_empty()
                && held.len() < MAX_COLLECTED
                && gw.replay_bytes + args.iter().map(|a| a.len()).sum::<usize>()
                    <= MAX_COLLECTED_BYTES =>
            {
                gw.replay_bytes += args.iter().map(|a| a.len()).sum::<usize>();
                held.push(args.iter().map(|a| a.to_vec()).collect());
                gw.fwd.drain(up, wbuf).await;
                if let Some(p) = gw.pinned.as_mut() {
                    p.drain(wbuf, Some(up.opts.timeout())).await;
                }
                wbuf.extend_from_slice(b"+QUEUED\r\n");
                return Flow::Continue;
            }
            _ => {}
        }
        if matches!(action, Action::Multi | Action::Watch) {
            // Redis's errors for these need no upstream.
            gw.drain(up, wbuf).await;
            let msg = if action == Action::Multi {
                "ERR MULTI calls can not be nested"
            } else {
                "ERR WATCH inside MULTI is not allowed"
            };
            Reply::new(wbuf, state.proto).error(msg);
            return Flow::Continue;
        }
        let held = std::mem::take(held);
        if let Err(e) = gw.pin(up, state, keys.first().copied(), wbuf).await {
            gw.tx = Tx::None;
            gw.slot = None;
            Reply::new(wbuf, state.proto).error(&e);
            return Flow::Continue;
        }
        if let (Some(p), Tx::Multi { held: h, .. }) = (gw.pinned.as_mut(), &mut gw.tx) {
            for cmd in &held {
                let a: Vec<&[u8]> = cmd.iter().map(|v| v.as_slice()).collect();
                p.push(&a, Fix::Drop);
            }
            *h = None;
        }
        if let Some(r) = gw.replay.as_mut() {
            r.extend(held.into_iter().skip(1)); // all but the MULTI
        }
        if !keys.is_empty() {
            gw.slot = keys.first().map(|k| cluster::slot(k));
        }
    }
    if gw.pinned.is_none() {
        // The pinned connection was lost (or never made): the upstream has forgotten the
        // transaction. Every command still gets its reply, and EXEC aborts.
        gw.drain(up, wbuf).await;
        match action {
            Action::Exec => {
                wbuf.extend_from_slice(EXECABORT);
                gw.tx = Tx::None;
            }
            Action::Discard => {
                wbuf.extend_from_slice(b"+OK\r\n");
                gw.tx = Tx::None;
            }
            _ => {
                gw.mark_dirty();
                Reply::new(wbuf, state.proto).error(
                    "ERR the upstream connection of this transaction was lost; EXEC will abort it",
                );
            }
        }
        return Flow::Continue;
    }
    match action {
        Action::Exec => {
            let dirty = matches!(gw.tx, Tx::Multi { dirty: true, .. });
            if dirty {
                // The upstream has queued the commands before the refused one: discard them
                // and answer as Redis does for a transaction with a rejected command.
                let discard: [&[u8]; 1] = [b"DISCARD"];
                push(gw, &discard, Fix::Replace(Bytes::from_static(EXECABORT)));
                if gw.pinned.is_none() {
                    wbuf.extend_from_slice(EXECABORT);
                }
            } else if gw.replay.is_some() && !gw.watched {
                // Cluster: if a node answered -MOVED while queueing (its slot moved), the
                // transaction is replayed on the new owner, as cluster clients do.
                gw.drain(up, wbuf).await;
                if gw.tx_moved {
                    replay_on_new_owner(up, gw, state, wbuf).await;
                } else {
                    push(gw, args, Fix::Keep);
                }
            } else {
                push(gw, args, Fix::Keep);
            }
            gw.drain(up, wbuf).await;
            gw.tx = Tx::None;
            gw.release(up);
        }
        Action::Discard => {
            push(gw, args, Fix::Keep);
            gw.drain(up, wbuf).await;
            gw.tx = Tx::None;
            gw.release(up);
        }
        _ => {
            let size: usize = args.iter().map(|a| a.len()).sum();
            let replayable = !gw.watched
                && gw.replay.as_ref().is_some_and(|r| r.len() < MAX_COLLECTED)
                && gw.replay_bytes + size <= MAX_COLLECTED_BYTES;
            if replayable {
                gw.replay_bytes += size;
                if let Some(r) = gw.replay.as_mut() {
                    r.push(args.iter().map(|a| a.to_vec()).collect());
                }
                push(gw, args, Fix::QueuedIfMoved);
            } else {
                gw.replay = None;
                push(gw, args, Fix::Keep);
            }
            if gw.pinned.as_ref().is_some_and(|p| p.outstanding() >= 64) {
                gw.drain(up, wbuf).await;
            }
        }
    }
    Flow::Continue
}

/// Replays a cluster transaction whose slot moved while it was queued: `DISCARD` on the old
/// node, then `MULTI`, the queued commands and `EXEC` on the slot's owner by the corrected
/// map; only `EXEC`'s reply reaches the client (it has had its `+QUEUED`s).
async fn replay_on_new_owner(
    up: &Upstream,
    gw: &mut GatewayClient,
    state: &ClientState,
    wbuf: &mut BytesMut,
) {
    let discard: [&[u8]; 1] = [b"DISCARD"];
    push(gw, &discard, Fix::Drop);
    gw.drain(up, wbuf).await;
    if let Some(p) = gw.pinned.take() {
        up.pinned.give_back(p);
    }
    let cmds = gw.replay.take().unwrap_or_default();
    let key = cmds.iter().find_map(|c| {
        let a: Vec<&[u8]> = c.iter().map(|v| v.as_slice()).collect();
        table::keys(&a).first().map(|k| k.to_vec())
    });
    gw.slot = None;
    if let Err(e) = gw.pin(up, state, key.as_deref(), wbuf).await {
        Reply::new(wbuf, state.proto).error(&e);
        return;
    }
    let multi: [&[u8]; 1] = [b"MULTI"];
    push(gw, &multi, Fix::Drop);
    for c in &cmds {
        let a: Vec<&[u8]> = c.iter().map(|v| v.as_slice()).collect();
        push(gw, &a, Fix::Drop);
    }
    let exec: [&[u8]; 1] = [b"EXEC"];
    push(gw, &exec, Fix::Keep);
}
