//! Set commands (Redis's `t_set.c`). Single-key commands read or write their key through the
//! engine's typed API; multi-key ones (SINTER, SMOVE, the STORE forms…) run in one
//! multi-shard block (`Engine::with_keys`), so they are atomic as in Redis. Checks come in
//! Redis's order (every key's type before any result).

use super::args::{int, is};
use super::hashes::engine;
use super::keys::parse_cursor;
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::{Engine, SetRef};
use crate::pubsub::class;
use crate::resp::Reply;
use crate::store::StoreError;
use crate::util::glob::glob_match;

/// Largest `|count|` of SRANDMEMBER with repetitions in one reply (see HRANDFIELD).
const RANDOM_MAX: u64 = 1 << 24;

fn read_set<S: Deployment, R>(
    cx: &mut Ctx<'_, '_, S>,
    key: &[u8],
    f: impl FnOnce(Option<SetRef<'_>>, &mut Reply<'_>) -> R,
) -> Result<R, CmdError> {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.read(db, key, now, |k| match k {
        None => Ok(f(None, out)),
        Some(k) => Ok(f(Some(k.set_or_wrongtype()?), out)),
    })
    .map_err(|e: StoreError| e.into())
}

pub async fn sadd<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let n = e.write(cx.db(), a[1], cx.now, |w| {
        w.set()?;
        Ok(a[2..].iter().filter(|m| w.sadd(m)).count())
    })?;
    if n > 0 {
        cx.notify(class::SET, "sadd", a[1]);
    }
    cx.out.int(n as i64);
    Ok(())
}

pub async fn srem<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let n = e.write(cx.db(), a[1], cx.now, |w| {
        if w.set()?.is_none() {
            return Ok((0, false));
        }
        Ok(w.remove_each(&a[2..], |w, m| w.srem(m)))
    })?;
    let (n, gone) = n;
    if n > 0 {
        cx.notify(class::SET, "srem", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.int(n);
    Ok(())
}

pub async fn smembers<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_set(cx, a[1], |s, out| {
        out.set(s.map_or(0, |s| s.len()));
        for m in s.iter().flat_map(|s| s.iter()) {
            out.bulk(m);
        }
    })
}

pub async fn sismember<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_set(cx, a[1], |s, out| {
        out.int(s.is_some_and(|s| s.contains(a[2])) as i64)
    })
}

pub async fn smismember<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_set(cx, a[1], |s, out| {
        out.array(a.len() - 2);
        for m in &a[2..] {
            out.int(s.is_some_and(|s| s.contains(m)) as i64);
        }
    })
}

pub async fn scard<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_set(cx, a[1], |s, out| out.int(s.map_or(0, |s| s.len() as i64)))
}

/// `SPOP key [count]`.
pub async fn spop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => {
            let n = int(a[2])
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::msg("ERR value is out of range, must be positive"))?;
            Some(n as u64)
        }
        _ => return Err(CmdError::Syntax),
    };
    let e = engine(cx)?;
    let popped = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(s) = w.set()? else {
            return Ok(Vec::new());
        };
        let members: Vec<Vec<u8>> = s.iter().map(<[u8]>::to_vec).collect();
        let picks: Vec<Vec<u8>> =
            super::args::random_picks(members.len(), count.unwrap_or(1), true)
                .into_iter()
                .map(|i| members[i].clone())
                .collect();
        for m in &picks {
            w.srem(m);
        }
        Ok(picks)
    })?;
    if !popped.is_empty() {
        cx.notify(class::SET, "spop", a[1]);
        let gone = e.read(cx.db(), a[1], cx.now, |k| k.is_none());
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    match count {
        None => cx.out.bulk_opt(popped.first().map(|m| &m[..])),
        Some(_) => {
            cx.out.set(popped.len());
            for m in &popped {
                cx.out.bulk(m);
            }
        }
    }
    Ok(())
}

/// `SRANDMEMBER key [count]`.
pub async fn srandmember<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 {
        return read_set(cx, a[1], |s, out| match s.filter(|s| !s.is_empty()) {
            None => out.null(),
            Some(s) => {
                let i = fastrand::usize(..s.len());
                out.bulk(s.iter().nth(i).unwrap_or_default());
            }
        });
    }
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let l = int(a[2])?;
    if l == i64::MIN {
        return Err(CmdError::msg(format!(
            "ERR value is out of range, value must between -{max} and {max}",
            max = i64::MAX
        )));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    if !unique && count > RANDOM_MAX {
        return Err(CmdError::msg(format!(
            "ERR SRANDMEMBER count is too large for one reply (at most {RANDOM_MAX} with repetitions)"
        )));
    }
    read_set(cx, a[1], |s, out| {
        let Some(s) = s.filter(|s| !s.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let all: Vec<&[u8]> = s.iter().collect();
        let picks = super::args::random_picks(all.len(), count, unique);
        out.array(picks.len());
        for i in picks {
            out.bulk(all[i]);
        }
    })
}

/// `SMOVE source destination member`.
pub async fn smove<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let moved = e.with_keys(&a[1..3], || -> Result<bool, StoreError> {
        let src_has = e.read(db, a[1], now, |k| match k {
            None => Ok(None),
            Some(k) => k.set_or_wrongtype().map(|s| Some(s.contains(a[3]))),
        })?;
        if src_has.is_none() {
            return Ok(false);
        }
        e.read(db, a[2], now, |k| match k {
            Some(k) => k.set_or_wrongtype().map(|_| ()),
            None => Ok(()),
        })?;
        match src_has {
            None | Some(false) => Ok(false),
            Some(true) if a[1] == a[2] => Ok(true),
            Some(true) => {
                e.write(db, a[1], now, |w| Ok(w.srem(a[3])))?;
                e.write(db, a[2], now, |w| Ok(w.sadd(a[3])))?;
                Ok(true)
            }
        }
    })?;
    if moved && a[1] != a[2] {
        cx.notify(class::SET, "srem", a[1]);
        if e.read(db, a[1], now, |k| k.is_none()) {
            cx.notify(class::GENERIC, "del", a[1]);
        }
        cx.notify(class::SET, "sadd", a[2]);
    }
    cx.out.int(moved as i64);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Inter,
    Union,
    Diff,
}

/// The members of `op` over `keys` (owned, distinct), or WRONGTYPE. Call inside a block
/// holding the keys.
fn combine(
    e: &Engine,
    db: usize,
    keys: &[&[u8]],
    now: i64,
    op: Op,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut sets: Vec<Option<Vec<Vec<u8>>>> = Vec::with_capacity(keys.len());
    for k in keys {
        let s = e.read(db, k, now, |r| match r {
            None => Ok(None),
            Some(r) => r
                .set_or_wrongtype()
                .map(|s| Some(s.iter().map(<[u8]>::to_vec).collect::<Vec<_>>())),
        })?;
        sets.push(s);
    }
    // Every key is type-checked first; then a missing one empties an intersection.
    if op == Op::Inter && sets.iter().any(Option::is_none) {
        return Ok(Vec::new());
    }
    let mut it = sets.into_iter();
    let first = it.next().flatten().unwrap_or_default();
    let rest: Vec<std::collections::HashSet<Vec<u8>>> = it
        .map(|s| s.unwrap_or_default().into_iter().collect())
        .collect();
    Ok(match op {
        Op::Inter => first
            .into_iter()
            .filter(|m| rest.iter().all(|s| s.contains(m)))
            .collect(),
        Op::Diff => first
            .into_iter()
            .filter(|m| !rest.iter().any(|s| s.contains(m)))
            .collect(),
        Op::Union => {
            let mut seen: std::collections::HashSet<Vec<u8>> = first.iter().cloned().collect();
            let mut out = first;
            for s in rest {
                for m in s {
                    if seen.insert(m.clone()) {
                        out.push(m);
                    }
                }
            }
            out
        }
    })
}

/// `SINTER`, `SUNION`, `SDIFF`.
pub async fn combine_cmd<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], op: Op) -> CmdResult {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let keys = &a[1..];
    let members = e.with_keys(keys, || combine(e, db, keys, now, op))?;
    cx.out.set(members.len());
    for m in &members {
        cx.out.bulk(m);
    }
    Ok(())
}

/// `SINTERSTORE`, `SUNIONSTORE`, `SDIFFSTORE destination key [key …]`.
pub async fn store_cmd<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], op: Op) -> CmdResult {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let (n, existed) = e.with_keys(&a[1..], || -> Result<(usize, bool), StoreError> {
        let members = combine(e, db, &a[2..], now, op)?;
        let refs: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
        let existed = e.write(db, a[1], now, |w| {
            let existed = w.get().is_some();
            w.store_set(&refs);
            Ok(existed)
        })?;
        Ok((refs.len(), existed))
    })?;
    if n > 0 {
        let event = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        cx.notify(class::SET, event, a[1]);
    } else if existed {
        cx.notify(class::GENERIC, "del", a[1]);
    }
    cx.out.int(n as i64);
    Ok(())
}

/// `SINTERCARD numkeys key [key …] [LIMIT limit]`.
pub async fn sintercard<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let numkeys = super::args::int(a[1])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::msg("ERR numkeys should be greater than 0"))?;
    if numkeys > (a.len() - 2) as i64 {
        return Err(CmdError::msg(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let numkeys = numkeys as usize;
    let keys = &a[2..2 + numkeys];
    let mut limit = 0u64;
    let mut i = 2 + numkeys;
    while i < a.len() {
        if is(a[i], "limit") && i + 1 < a.len() {
            let l = super::args::int(a[i + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::msg("ERR LIMIT can't be negative"))?;
            limit = l as u64;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let members = e.with_keys(keys, || combine(e, db, keys, now, Op::Inter))?;
    let n = members.len() as u64;
    cx.out.int(if limit > 0 { n.min(limit) } else { n } as i64);
    Ok(())
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`: a whole set in one step, as HSCAN.
pub async fn sscan<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    parse_cursor(a[2]).ok_or_else(|| CmdError::msg("ERR invalid cursor"))?;
    read_set(cx, a[1], |s, out| {
        let Some(s) = s else {
            out.array(2);
            out.bulk(b"0");
            out.array(0);
            return Ok(());
        };
        let pattern = scan_options(a)?;
        let found: Vec<&[u8]> = s
            .iter()
            .filter(|m| pattern.is_none_or(|p| glob_match(p, m, false)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(found.len());
        for m in found {
            out.bulk(m);
        }
        Ok(())
    })?
}

/// The options of HSCAN/SSCAN/ZSCAN (`MATCH`, `COUNT`), as Redis checks them; the pattern.
pub fn scan_options<'a>(a: &[&'a [u8]]) -> Result<Option<&'a [u8]>, CmdError> {
    let mut pattern = None;
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
    Ok(pattern)
}
