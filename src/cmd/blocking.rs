//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP)
//! and the serving of blocked clients.
//!
//! A blocking command first tries its keys, in order, as its non-blocking form would. If all
//! are empty it registers a [`Waiter`] on them in the same block of shard locks
//! (`engine/blocked.rs`) and leaves the client blocked: the connection (`server/
//! connection.rs`) then waits for the waiter, the timeout, or the client going away (which
//! cancels the waiter, as Redis forgets a disconnected client's block).
//!
//! Any command that may give a key data (pushes, LMOVE's destination, ZADD, the STORE
//! forms…) calls [`signal`] for it; once the command (or a whole EXEC) has run, [`serve`]
//! hands the key's data to its waiters in the order they blocked, each pop done on the
//! waiter's behalf under the key's locks, logged and announced like any pop, and its reply
//! written into the waiter. The client blocked first is served first, as in Redis. Unlike
//! Redis, serving happens just after the command's locks are released, not inside them, so
//! a client popping the same key at that instant can take an element first; waiters among
//! themselves keep their order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::hashes::engine;
use super::lists::{self, End};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::blocked::{BlockOp, Slot, Waiter};
use crate::engine::Engine;
use crate::pubsub::{class, Notifier};
use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::store::StoreError;
use crate::util::longdouble::LongDouble;

/// A client waiting in a blocking command, for the connection to wait on.
pub struct Blocked {
    pub waiter: Arc<Waiter>,
    pub deadline: Option<Instant>,
    /// What the client gets on timeout (a nil of the command's kind).
    pub timeout_reply: Bytes,
}

/// Marks `key` as possibly having data for blocked clients (served after the command).
pub fn signal<S: Deployment>(cx: &mut Ctx<'_, '_, S>, key: &[u8]) {
    let server = cx.server;
    if server.store.engine().is_some_and(Engine::has_blocked) {
        cx.client.ready.push((cx.client.db, key.to_vec()));
    }
}

/// Serves the waiters of every key signalled by the command that just ran.
pub fn serve_ready(e: &Engine, notifier: &Notifier, ready: Vec<(usize, Vec<u8>)>, now: i64) {
    for (db, key) in ready {
        serve(e, notifier, db, &key, now);
    }
}

/// Hands `key`'s data to its waiters, first blocked first, while it has data.
pub fn serve(e: &Engine, notifier: &Notifier, db: usize, key: &[u8], now: i64) {
    while let Some(w) = e.first_waiter(db, key) {
        let mut keys: Vec<&[u8]> = vec![key];
        if let BlockOp::ListMove { dst, .. } = &w.op {
            keys.push(dst);
        }
        let outcome = e.with_keys(&keys, || -> Result<Option<Vec<Event>>, StoreError> {
            let mut slot = w.slot();
            if !matches!(*slot, Slot::Waiting) {
                return Ok(Some(Vec::new())); // finished meanwhile: drop it, go on
            }
            let proto = if w.resp3 { Proto::Resp3 } else { Proto::Resp2 };
            let mut buf = BytesMut::new();
            let mut out = Reply::new(&mut buf, proto);
            let Some(events) = perform(e, &w, db, key, now, &mut out)? else {
                return Ok(None); // no data (left): stop
            };
            *slot = Slot::Served(buf.freeze());
            Ok(Some(events))
        });
        match outcome {
            Ok(None) | Err(_) => break,
            Ok(Some(events)) => {
                e.unblock(&w);
                w.wake();
                for ev in events {
                    if notifier.wants(ev.class) {
                        notifier.notify(ev.class, ev.name, &ev.key, db);
                    }
                }
            }
        }
    }
}

/// A keyspace event of a pop done for a waiter.
struct Event {
    class: u32,
    name: &'static str,
    key: Vec<u8>,
}

fn ev(class: u32, name: &'static str, key: &[u8]) -> Event {
    Event {
        class,
        name,
        key: key.to_vec(),
    }
}

/// Does the waiter's operation on `key`; its reply, or None when `key` has nothing.
fn perform(
    e: &Engine,
    w: &Waiter,
    db: usize,
    key: &[u8],
    now: i64,
    out: &mut Reply<'_>,
) -> Result<Option<Vec<Event>>, StoreError> {
    match &w.op {
        BlockOp::ListPop { left, count } => {
            let end = if *left { End::Left } else { End::Right };
            let (items, gone) = lists::pop_list(e, db, key, now, end, count.unwrap_or(1))?;
            if items.is_empty() {
                return Ok(None);
            }
            out.array(2);
            out.bulk(key);
            match count {
                None => out.bulk(&items[0]),
                Some(_) => {
                    out.array(items.len());
                    for v in &items {
                        out.bulk(v);
                    }
                }
            }
            Ok(Some(pop_events(key, end.pop_event(), class::LIST, gone)))
        }
        BlockOp::ListMove {
            dst,
            from_left,
            to_left,
        } => {
            let from = if *from_left { End::Left } else { End::Right };
            let to = if *to_left { End::Left } else { End::Right };
            let Some((v, gone)) = lists::move_one(e, db, key, dst, now, from, to)? else {
                return Ok(None);
            };
            out.bulk(&v);
            let mut evs = pop_events(key, from.pop_event(), class::LIST, gone);
            evs.push(ev(class::LIST, to.push_event(), dst));
            Ok(Some(evs))
        }
        BlockOp::ZPop { max, count } => {
            let (items, gone) = super::zsets::pop_zset(e, db, key, now, count.unwrap_or(1), *max)?;
            if items.is_empty() {
                return Ok(None);
            }
            out.array(if count.is_some() { 2 } else { 3 });
            out.bulk(key);
            match count {
                None => {
                    out.bulk(&items[0].0);
                    out.double(items[0].1);
                }
                Some(_) => {
                    out.array(items.len());
                    for (m, s) in &items {
                        out.array(2);
                        out.bulk(m);
                        out.double(*s);
                    }
                }
            }
            let name = if *max { "zpopmax" } else { "zpopmin" };
            Ok(Some(pop_events(key, name, class::ZSET, gone)))
        }
        BlockOp::Wait => Ok(None),
    }
}

fn pop_events(key: &[u8], name: &'static str, cls: u32, gone: bool) -> Vec<Event> {
    let mut v = vec![ev(cls, name, key)];
    if gone {
        v.push(ev(class::GENERIC, "del", key));
    }
    v
}

/// Redis's `getTimeoutFromObjectOrReply` for seconds: the deadline (None = forever).
fn timeout_arg(a: &[u8], now: i64) -> Result<Option<i64>, CmdError> {
    let v = LongDouble::parse(a)
        .and_then(|v| v.to_f64())
        .ok_or_else(|| CmdError::msg("ERR timeout is not a float or out of range"))?;
    let ms = v * 1000.0;
    if !ms.is_finite() || ms >= (i64::MAX - now) as f64 {
        return Err(CmdError::msg("ERR timeout is out of range"));
    }
    let ms = ms as i64;
    if ms < 0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    Ok((ms > 0).then_some(ms))
}

/// Blocks the client on `keys` with `op`, or answers its timeout reply at once inside a
/// transaction (Redis never blocks there).
fn block<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    keys: &[&[u8]],
    op: BlockOp,
    timeout_ms: Option<i64>,
    nil_array: bool,
) {
    let proto = cx.client.proto;
    let mut buf = BytesMut::new();
    {
        let mut r = Reply::new(&mut buf, proto);
        if op == BlockOp::Wait {
            r.int(0);
        } else if nil_array {
            r.null_array();
        } else {
            r.null();
        }
    }
    if cx.client.in_exec {
        cx.out.buffer().extend_from_slice(&buf);
        return;
    }
    let w = Waiter::new(
        cx.client.handle.id,
        cx.client.db,
        keys.iter().map(|k| k.to_vec()).collect(),
        op,
        proto == Proto::Resp3,
    );
    if let Some(e) = cx.server.store.engine() {
        e.block(&w);
    }
    cx.client.blocked = Some(Blocked {
        waiter: w,
        deadline: timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms as u64)),
        timeout_reply: buf.freeze(),
    });
}

/// `BLPOP`/`BRPOP key [key …] timeout`.
pub async fn bpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], end: End) -> CmdResult {
    let timeout = timeout_arg(a[a.len() - 1], cx.now)?;
    let keys = &a[1..a.len() - 1];
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let op = BlockOp::ListPop {
        left: end == End::Left,
        count: None,
    };
    let found = e.with_keys(keys, || -> Result<_, StoreError> {
        for k in keys {
            let (items, gone) = lists::pop_list(e, db, k, now, end, 1)?;
            if let Some(v) = items.into_iter().next() {
                return Ok(Some((k.to_vec(), v, gone)));
            }
        }
        Ok(None)
    })?;
    match found {
        Some((k, v, gone)) => {
            lists::pop_events(cx, &k, end, gone);
            cx.out.array(2);
            cx.out.bulk(&k);
            cx.out.bulk(&v);
        }
        None => block_checked(cx, e, keys, op, timeout, true),
    }
    Ok(())
}

/// Registers the waiter unless a key got data since the check (then serves at once).
fn block_checked<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    e: &Engine,
    keys: &[&[u8]],
    op: BlockOp,
    timeout: Option<i64>,
    nil_array: bool,
) {
    // The check above and the registration must see the same keys: take the keys' shards
    // again and re-check emptiness while registering.
    let (db, now) = (cx.db(), cx.now);
    let all_empty = e.with_keys(keys, || {
        let empty = keys.iter().all(|k| {
            e.read(db, k, now, |r| {
                r.is_none_or(|r| {
                    r.list()
                        .map_or(r.zset().is_none_or(|z| z.is_empty()), |l| l.is_empty())
                })
            })
        });
        if empty {
            block(cx, keys, op.clone(), timeout, nil_array);
        }
        empty
    });
    if !all_empty {
        // Data arrived in between: serve this client like any waiter, right away.
        block(cx, keys, op, timeout, nil_array);
        for k in keys {
            serve(e, &cx.server.notifier, db, k, now);
        }
    }
}

/// `BLMOVE src dst LEFT|RIGHT LEFT|RIGHT timeout` and `BRPOPLPUSH src dst timeout`.
pub async fn blmove<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    brpoplpush: bool,
) -> CmdResult {
    let (from, to, t) = if brpoplpush {
        (End::Right, End::Left, a[3])
    } else {
        match (End::parse(a[3]), End::parse(a[4])) {
            (Some(f), Some(t)) => (f, t, a[5]),
            _ => return Err(CmdError::Syntax),
        }
    };
    let timeout = timeout_arg(t, cx.now)?;
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let moved = e.with_keys(&a[1..3], || {
        lists::move_one(e, db, a[1], a[2], now, from, to)
    })?;
    match moved {
        Some((v, gone)) => {
            lists::move_events(cx, a[1], a[2], from, to, gone);
            signal(cx, a[2]);
            cx.out.bulk(&v);
        }
        None => {
            let op = BlockOp::ListMove {
                dst: a[2].to_vec(),
                from_left: from == End::Left,
                to_left: to == End::Left,
            };
            // Redis answers a timed-out BLMOVE with a null array, not a null string.
            block_checked(cx, e, &a[1..2], op, timeout, true);
        }
    }
    Ok(())
}

/// `BLMPOP timeout numkeys key … LEFT|RIGHT [COUNT n]`.
pub async fn blmpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let timeout = timeout_arg(a[1], cx.now)?;
    let (keys, end, count) = lists::parse_mpop(a, 2)?;
    let e = engine(cx)?;
    match lists::mpop(e, cx.db(), keys, cx.now, end, count)? {
        Some((k, items, gone)) => {
            lists::pop_events(cx, &k, end, gone);
            cx.out.array(2);
            cx.out.bulk(&k);
            cx.out.array(items.len());
            for v in &items {
                cx.out.bulk(v);
            }
        }
        None => {
            let op = BlockOp::ListPop {
                left: end == End::Left,
                count: Some(count),
            };
            block_checked(cx, e, keys, op, timeout, true);
        }
    }
    Ok(())
}

/// `BZPOPMIN`/`BZPOPMAX key [key …] timeout`.
pub async fn bzpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], max: bool) -> CmdResult {
    let timeout = timeout_arg(a[a.len() - 1], cx.now)?;
    let keys = &a[1..a.len() - 1];
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let found = e.with_keys(keys, || -> Result<_, StoreError> {
        for k in keys {
            let (items, gone) = super::zsets::pop_zset(e, db, k, now, 1, max)?;
            if let Some(item) = items.into_iter().next() {
                return Ok(Some((k.to_vec(), item, gone)));
            }
        }
        Ok(None)
    })?;
    match found {
        Some((k, (m, s), gone)) => {
            cx.notify(class::ZSET, if max { "zpopmax" } else { "zpopmin" }, &k);
            if gone {
                cx.notify(class::GENERIC, "del", &k);
            }
            cx.out.array(3);
            cx.out.bulk(&k);
            cx.out.bulk(&m);
            cx.out.double(s);
        }
        None => block_checked(
            cx,
            e,
            keys,
            BlockOp::ZPop { max, count: None },
            timeout,
            true,
        ),
    }
    Ok(())
}

/// `BZMPOP timeout numkeys key … MIN|MAX [COUNT n]`.
pub async fn bzmpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let timeout = timeout_arg(a[1], cx.now)?;
    let e = engine(cx)?;
    let (keys, max, count) = super::zsets::parse_mpop_args(a, 2)?;
    let (db, now) = (cx.db(), cx.now);
    let found = e.with_keys(keys, || -> Result<_, StoreError> {
        for k in keys {
            let (items, gone) = super::zsets::pop_zset(e, db, k, now, count, max)?;
            if !items.is_empty() {
                return Ok(Some((k.to_vec(), items, gone)));
            }
        }
        Ok(None)
    })?;
    match found {
        Some((k, items, gone)) => {
            cx.notify(class::ZSET, if max { "zpopmax" } else { "zpopmin" }, &k);
            if gone {
                cx.notify(class::GENERIC, "del", &k);
            }
            cx.out.array(2);
            cx.out.bulk(&k);
            cx.out.array(items.len());
            for (m, s) in &items {
                cx.out.array(2);
                cx.out.bulk(m);
                cx.out.double(*s);
            }
        }
        None => block_checked(
            cx,
            e,
            keys,
            BlockOp::ZPop {
                max,
                count: Some(count),
            },
            timeout,
            true,
        ),
    }
    Ok(())
}

/// `WAIT numreplicas timeout`: sessiond has no replicas, so 0 at once when none is asked for
/// (or inside a transaction), else 0 after the timeout (0: never, until the client goes), as
/// a Redis primary without replicas answers.
pub async fn wait<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let numreplicas = super::args::int(a[1])?;
    let timeout = super::args::int(a[2])?;
    if timeout < 0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    if numreplicas <= 0 || cx.client.in_exec {
        cx.out.int(0);
        return Ok(());
    }
    block(
        cx,
        &[],
        BlockOp::Wait,
        (timeout > 0).then_some(timeout),
        false,
    );
    Ok(())
}
