//! Hash commands (Redis's `t_hash.c`): each parses its arguments, takes the key from the
//! engine's typed API (`engine/access.rs`) and writes Redis's reply. Checks come in Redis's
//! order (argument count, then numeric arguments, then the key's type), so the same bad input
//! gets the same error.

use super::args::{int, is};
use super::keys::parse_cursor;
use super::{wrong_args, CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::{Engine, HashRef};
use crate::pubsub::class;
use crate::store::StoreError;
use crate::util::glob::glob_match;
use crate::util::longdouble::LongDouble;

/// Largest `|count|` HRANDFIELD answers in one reply. Redis tries any count, and a negative
/// one of billions makes it build a reply until it runs out of memory; a bounded error is
/// the better answer for a server other clients depend on.
const RANDFIELD_MAX: u64 = 1 << 24;

/// The engine behind the store: hash commands exist only on it (checked before dispatch, see
/// `cmd::check_known`, so this is a safety net, not a path a client can reach).
pub(super) fn engine<'a, S: Deployment>(cx: &Ctx<'a, '_, S>) -> Result<&'a Engine, CmdError> {
    let server = cx.server;
    server
        .store
        .engine()
        .ok_or_else(|| CmdError::msg("ERR this command needs the embedded engine"))
}

fn pairs_ok(a: &[&[u8]], name: &str) -> CmdResult {
    if a.len().is_multiple_of(2) {
        Ok(())
    } else {
        Err(wrong_args(name))
    }
}

/// `HSET key field value [field value …]` (integer: fields added) and `HMSET` (`+OK`).
pub async fn hset<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], hmset: bool) -> CmdResult {
    pairs_ok(a, if hmset { "hmset" } else { "hset" })?;
    let e = engine(cx)?;
    let added = e.write(cx.db(), a[1], cx.now, |w| {
        w.hash()?;
        Ok(a[2..]
            .chunks_exact(2)
            .filter(|fv| w.hset(fv[0], fv[1]))
            .count())
    })?;
    cx.notify(class::HASH, "hset", a[1]);
    if hmset {
        cx.out.ok();
    } else {
        cx.out.int(added as i64);
    }
    Ok(())
}

/// `HSETNX key field value`.
pub async fn hsetnx<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let set = e.write(cx.db(), a[1], cx.now, |w| {
        if w.hash()?.is_some_and(|h| h.get(a[2]).is_some()) {
            return Ok(false);
        }
        w.hset(a[2], a[3]);
        Ok(true)
    })?;
    if set {
        cx.notify(class::HASH, "hset", a[1]);
    }
    cx.out.int(set as i64);
    Ok(())
}

/// Runs `f` on the hash at `key` (None if absent), WRONGTYPE for another type.
fn read_hash<S: Deployment, R>(
    cx: &mut Ctx<'_, '_, S>,
    key: &[u8],
    f: impl FnOnce(Option<HashRef<'_>>, &mut crate::resp::Reply<'_>) -> R,
) -> Result<R, CmdError> {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.read(db, key, now, |k| match k {
        None => Ok(f(None, out)),
        Some(k) => Ok(f(Some(k.hash_or_wrongtype()?), out)),
    })
    .map_err(|e: StoreError| e.into())
}

pub async fn hget<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_hash(cx, a[1], |h, out| out.bulk_opt(h.and_then(|h| h.get(a[2]))))
}

pub async fn hmget<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_hash(cx, a[1], |h, out| {
        out.array(a.len() - 2);
        for f in &a[2..] {
            out.bulk_opt(h.and_then(|h| h.get(f)));
        }
    })
}

pub async fn hexists<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_hash(cx, a[1], |h, out| {
        out.int(h.is_some_and(|h| h.get(a[2]).is_some()) as i64)
    })
}

pub async fn hstrlen<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_hash(cx, a[1], |h, out| {
        out.int(h.and_then(|h| h.get(a[2])).map_or(0, |v| v.len() as i64))
    })
}

pub async fn hlen<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_hash(cx, a[1], |h, out| out.int(h.map_or(0, |h| h.len() as i64)))
}

/// What `HGETALL`, `HKEYS` and `HVALS` return of each field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Both,
    Fields,
    Values,
}

pub async fn hgetall<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], part: Part) -> CmdResult {
    read_hash(cx, a[1], |h, out| {
        let n = h.map_or(0, |h| h.len());
        match part {
            Part::Both => out.map(n),
            _ => out.array(n),
        }
        for (f, v) in h.iter().flat_map(|h| h.iter()) {
            if part != Part::Values {
                out.bulk(f);
            }
            if part != Part::Fields {
                out.bulk(v);
            }
        }
    })
}

pub async fn hdel<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let n = e.write(cx.db(), a[1], cx.now, |w| {
        if w.hash()?.is_none() {
            return Ok((0, false));
        }
        Ok(w.remove_each(&a[2..], |w, m| w.hdel(m)))
    })?;
    let (n, gone) = n;
    if n > 0 {
        cx.notify(class::HASH, "hdel", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.int(n);
    Ok(())
}

/// Puts back the expiry a field had before an increment rewrote it: HSET clears a field's
/// expiry, HINCRBY and HINCRBYFLOAT keep it (as Redis 7.4 and later do).
fn keep_field_expiry(w: &mut crate::engine::KeyWriter<'_>, field: &[u8], at: Option<i64>) {
    if let Some(at) = at {
        w.hexpire(field, at);
    }
}

/// `HINCRBY key field increment`.
pub async fn hincrby<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let incr = int(a[3])?;
    let e = engine(cx)?;
    let v = e.write(cx.db(), a[1], cx.now, |w| {
        let cur = match w.hash()?.and_then(|h| h.get(a[2])) {
            None => 0,
            Some(v) => crate::resp::parse::parse_i64(v)
                .ok_or_else(|| StoreError::Other("ERR hash value is not an integer".into()))?,
        };
        let new = cur.checked_add(incr).ok_or(StoreError::Overflow)?;
        let keep = w.hash()?.and_then(|h| h.field_expire(a[2]));
        w.hset(a[2], itoa::Buffer::new().format(new).as_bytes());
        keep_field_expiry(w, a[2], keep);
        Ok(new)
    })?;
    cx.notify(class::HASH, "hincrby", a[1]);
    cx.out.int(v);
    Ok(())
}

/// `HINCRBYFLOAT key field increment`: long double arithmetic, as Redis (see
/// `util/longdouble.rs`).
pub async fn hincrbyfloat<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let incr =
        LongDouble::parse(a[3]).ok_or_else(|| CmdError::msg("ERR value is not a valid float"))?;
    if incr.is_infinite() {
        return Err(CmdError::msg("ERR value is NaN or Infinity"));
    }
    let e = engine(cx)?;
    let v = e.write(cx.db(), a[1], cx.now, |w| {
        let cur = match w.hash()?.and_then(|h| h.get(a[2])) {
            None => LongDouble::ZERO,
            Some(v) => LongDouble::parse(v)
                .ok_or_else(|| StoreError::Other("ERR hash value is not a float".into()))?,
        };
        let new = cur.checked_add(incr).ok_or_else(|| {
            StoreError::Other("ERR increment would produce NaN or Infinity".into())
        })?;
        let text = new.to_human();
        let keep = w.hash()?.and_then(|h| h.field_expire(a[2]));
        w.hset(a[2], text.as_bytes());
        keep_field_expiry(w, a[2], keep);
        Ok(text)
    })?;
    cx.notify(class::HASH, "hincrbyfloat", a[1]);
    cx.out.bulk(v.as_bytes());
    Ok(())
}

/// `HRANDFIELD key [count [WITHVALUES]]`.
pub async fn hrandfield<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 {
        return read_hash(cx, a[1], |h, out| match h.filter(|h| !h.is_empty()) {
            None => out.null(),
            Some(h) => {
                let i = fastrand::usize(..h.len());
                out.bulk(h.iter().nth(i).map_or(&b""[..], |(f, _)| f));
            }
        });
    }
    let (count, unique, with_values) =
        super::args::random_count(a, "withvalues", "HRANDFIELD", RANDFIELD_MAX)?;
    let resp3 = cx.out.resp3();
    read_hash(cx, a[1], |h, out| {
        let Some(h) = h.filter(|h| !h.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let all: Vec<(&[u8], &[u8])> = h.iter().collect();
        let picks = super::args::random_picks(all.len(), count, unique);
        let per = if with_values && !resp3 { 2 } else { 1 };
        out.array(picks.len() * per);
        for i in picks {
            let (f, v) = all[i];
            if with_values {
                if resp3 {
                    out.array(2);
                }
                out.bulk(f);
                out.bulk(v);
            } else {
                out.bulk(f);
            }
        }
    })
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]`. A whole hash is returned in one step
/// (cursor 0): a packed hash is small, as in Redis, and a big one is a hash table without a
/// stable cursor order; COUNT is a hint, so one step is within Redis's contract.
pub async fn hscan<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    parse_cursor(a[2]).ok_or_else(|| CmdError::msg("ERR invalid cursor"))?;
    // As Redis: a missing key answers an empty scan before the options are even read.
    read_hash(cx, a[1], |h, out| {
        let Some(h) = h else {
            out.array(2);
            out.bulk(b"0");
            out.array(0);
            return Ok(());
        };
        let mut pattern: Option<&[u8]> = None;
        let mut i = 3;
        while i < a.len() {
            if i + 1 >= a.len() {
                return Err(CmdError::Syntax);
            }
            if is(a[i], "count") {
                if int(a[i + 1])? < 1 {
                    return Err(CmdError::Syntax);
                }
            } else if is(a[i], "match") {
                pattern = (a[i + 1] != b"*").then_some(a[i + 1]);
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
        let found: Vec<(&[u8], &[u8])> = h
            .iter()
            .filter(|(f, _)| pattern.is_none_or(|p| glob_match(p, f, false)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(found.len() * 2);
        for (f, v) in found {
            out.bulk(f);
            out.bulk(v);
        }
        Ok(())
    })?
}
