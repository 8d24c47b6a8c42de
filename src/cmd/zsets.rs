//! Sorted set commands (Redis's `t_zset.c`). Ranges are walked in (score, member) order as
//! Redis walks its listpacks and skiplists, so replies (order included) are Redis's; the
//! argument checks come in Redis's order. Multi-key commands run in one multi-shard block.

use super::args::{int, is};
use super::hashes::engine;
use super::keys::parse_cursor;
use super::sets::scan_options;
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::{Engine, ZSetRef};
use crate::pubsub::class;
use crate::resp::Reply;
use crate::store::StoreError;
use crate::util::double;
use crate::util::glob::glob_match;

const NOT_FLOAT: &str = "ERR value is not a valid float";

/// Members with their scores, owned (read under a lock, replied to after).
pub(super) type Items = Vec<(Vec<u8>, f64)>;
/// What a pop took from one key, and whether that emptied (deleted) it.
type Popped = (Items, bool);
/// Largest `|count|` of ZRANDMEMBER with repetitions in one reply (see HRANDFIELD).
const RANDOM_MAX: u64 = 1 << 24;

fn score_arg(a: &[u8]) -> Result<f64, CmdError> {
    double::parse(a).ok_or_else(|| CmdError::msg(NOT_FLOAT))
}

pub(super) fn read_zset<S: Deployment, R>(
    cx: &mut Ctx<'_, '_, S>,
    key: &[u8],
    f: impl FnOnce(Option<ZSetRef<'_>>, &mut Reply<'_>) -> R,
) -> Result<R, CmdError> {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.read(db, key, now, |k| match k {
        None => Ok(f(None, out)),
        Some(k) => Ok(f(Some(k.zset_or_wrongtype()?), out)),
    })
    .map_err(|e: StoreError| e.into())
}

/// Writes members, with their scores if asked: flat in RESP2, [member, score] pairs in RESP3.
pub(super) fn emit<M: AsRef<[u8]>>(out: &mut Reply<'_>, items: &[(M, f64)], withscores: bool) {
    let resp3 = out.resp3();
    out.array(if withscores && !resp3 {
        2 * items.len()
    } else {
        items.len()
    });
    for (m, s) in items {
        if withscores && resp3 {
            out.array(2);
        }
        out.bulk(m.as_ref());
        if withscores {
            out.double(*s);
        }
    }
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …]`.
pub async fn zadd<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    incr_cmd: bool,
) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, incr_cmd);
    let mut i = 2;
    if !incr_cmd {
        while i < a.len() {
            let o = a[i];
            if is(o, "nx") {
                nx = true;
            } else if is(o, "xx") {
                xx = true;
            } else if is(o, "gt") {
                gt = true;
            } else if is(o, "lt") {
                lt = true;
            } else if is(o, "ch") {
                ch = true;
            } else if is(o, "incr") {
                incr = true;
            } else {
                break;
            }
            i += 1;
        }
    }
    let rest = &a[i..];
    let pairs: Vec<(&[u8], &[u8])> = if incr_cmd {
        // ZINCRBY key increment member
        vec![(a[2], a[3])]
    } else {
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(CmdError::Syntax);
        }
        rest.chunks_exact(2).map(|p| (p[0], p[1])).collect()
    };
    if nx && xx {
        return Err(CmdError::msg(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(CmdError::msg(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && pairs.len() > 1 {
        return Err(CmdError::msg(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let scores: Vec<f64> = pairs
        .iter()
        .map(|(s, _)| score_arg(s))
        .collect::<Result<_, _>>()?;
    let e = engine(cx)?;
    // (added, updated, the INCR result: None when a flag stopped it)
    let (added, updated, result) = e.write(cx.db(), a[1], cx.now, |w| {
        let exists = w.zset()?.is_some();
        if !exists && xx {
            return Ok((0, 0, None));
        }
        let (mut added, mut updated, mut result) = (0, 0, None);
        for ((_, m), score) in pairs.iter().zip(&scores) {
            let old = w.zset()?.and_then(|z| z.score(m));
            match old {
                Some(old) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { old + score } else { *score };
                    if new.is_nan() {
                        return Err(StoreError::Other(
                            "ERR resulting score is not a number (NaN)".into(),
                        ));
                    }
                    if (gt && new <= old) || (lt && new >= old) {
                        continue;
                    }
                    if new != old {
                        w.zadd(m, new);
                        updated += 1;
                    }
                    result = Some(new);
                }
                None => {
                    if xx {
                        continue;
                    }
                    w.zadd(m, *score);
                    added += 1;
                    result = Some(*score);
                }
            }
        }
        Ok((added, updated, result))
    })?;
    if added + updated > 0 {
        cx.notify(class::ZSET, if incr { "zincr" } else { "zadd" }, a[1]);
        super::blocking::signal(cx, a[1]);
    }
    if incr {
        match result {
            Some(s) => cx.out.double(s),
            None => cx.out.null(),
        }
    } else {
        cx.out.int(added + if ch { updated } else { 0 });
    }
    Ok(())
}

pub async fn zrem<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let (n, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        if w.zset()?.is_none() {
            return Ok((0, false));
        }
        Ok(w.remove_each(&a[2..], |w, m| w.zrem(m)))
    })?;
    if n > 0 {
        cx.notify(class::ZSET, "zrem", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.int(n);
    Ok(())
}

pub async fn zcard<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_zset(cx, a[1], |z, out| out.int(z.map_or(0, |z| z.len() as i64)))
}

pub async fn zscore<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_zset(cx, a[1], |z, out| match z.and_then(|z| z.score(a[2])) {
        Some(s) => out.double(s),
        None => out.null(),
    })
}

pub async fn zmscore<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_zset(cx, a[1], |z, out| {
        out.array(a.len() - 2);
        for m in &a[2..] {
            match z.and_then(|z| z.score(m)) {
                Some(s) => out.double(s),
                None => out.null(),
            }
        }
    })
}

/// `ZRANK` / `ZREVRANK key member [WITHSCORE]`.
pub async fn zrank<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], rev: bool) -> CmdResult {
    let withscore = match a.len() {
        3 => false,
        4 if is(a[3], "withscore") => true,
        _ => return Err(CmdError::Syntax),
    };
    read_zset(cx, a[1], |z, out| match z.and_then(|z| z.rank(a[2], rev)) {
        None if withscore => out.null_array(),
        None => out.null(),
        Some((r, s)) if withscore => {
            out.array(2);
            out.int(r as i64);
            out.double(s);
        }
        Some((r, _)) => out.int(r as i64),
    })
}

/// Pops up to `count` members from one end of the zset at `key` (inside a write).
pub fn pop_zset(
    e: &Engine,
    db: usize,
    key: &[u8],
    now: i64,
    count: usize,
    max: bool,
) -> Result<Popped, StoreError> {
    e.write(db, key, now, |w| {
        let Some(z) = w.zset()? else {
            return Ok((Vec::new(), false));
        };
        let it = if max { z.desc() } else { z.asc() };
        let items: Vec<(Vec<u8>, f64)> = it.take(count).map(|(m, s)| (m.to_vec(), s)).collect();
        for (m, _) in &items {
            w.zrem(m);
        }
        Ok((items, w.get().is_none()))
    })
}

/// `ZPOPMIN` / `ZPOPMAX key [count]`.
pub async fn zpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], max: bool) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => Some(
            int(a[2])
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::msg("ERR value is out of range, must be positive"))?
                as usize,
        ),
        _ => return Err(CmdError::Syntax),
    };
    let e = engine(cx)?;
    let (items, gone) = pop_zset(e, cx.db(), a[1], cx.now, count.unwrap_or(1), max)?;
    if !items.is_empty() {
        cx.notify(class::ZSET, if max { "zpopmax" } else { "zpopmin" }, a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    if count.is_none() {
        // One pair, flat, in both protocols.
        cx.out.array(2 * items.len());
        for (m, s) in &items {
            cx.out.bulk(m);
            cx.out.double(*s);
        }
    } else {
        emit(cx.out, &items, true);
    }
    Ok(())
}

/// `ZMPOP numkeys key [key …] MIN|MAX [COUNT count]`.
pub async fn zmpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (keys, max, count) = parse_mpop_args(a, 1)?;
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let found = e.with_keys(keys, || -> Result<_, StoreError> {
        for k in keys {
            let (items, gone) = pop_zset(e, db, k, now, count, max)?;
            if !items.is_empty() {
                return Ok(Some((k.to_vec(), (items, gone))));
            }
        }
        Ok(None)
    })?;
    reply_mpop(cx, found, max);
    Ok(())
}

fn reply_mpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, found: Option<(Vec<u8>, Popped)>, max: bool) {
    match found {
        None => cx.out.null_array(),
        Some((k, (items, gone))) => {
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
    }
}

/// `numkeys key … MIN|MAX [COUNT n]` of ZMPOP (`first` = index of numkeys).
pub fn parse_mpop_args<'a, 'b>(
    a: &'b [&'a [u8]],
    first: usize,
) -> Result<(&'b [&'a [u8]], bool, usize), CmdError> {
    super::args::mpop(a, first, ("min", "max"))
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`.
pub async fn zrandmember<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 {
        return read_zset(cx, a[1], |z, out| match z.filter(|z| !z.is_empty()) {
            None => out.null(),
            Some(z) => {
                let i = fastrand::usize(..z.len());
                out.bulk(z.asc_at(i).next().map_or(&b""[..], |(m, _)| m));
            }
        });
    }
    let (count, unique, withscores) =
        super::args::random_count(a, "withscores", "ZRANDMEMBER", RANDOM_MAX)?;
    read_zset(cx, a[1], |z, out| {
        let Some(z) = z.filter(|z| !z.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let all: Vec<(Vec<u8>, f64)> = z.asc().map(|(m, s)| (m.to_vec(), s)).collect();
        let picks: Vec<(Vec<u8>, f64)> = super::args::random_picks(all.len(), count, unique)
            .into_iter()
            .map(|i| all[i].clone())
            .collect();
        emit(out, &picks, withscores);
    })
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: a whole sorted set in one step (see
/// HSCAN); scores as `%.17g` strings in either protocol, as Redis.
pub async fn zscan<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    parse_cursor(a[2]).ok_or_else(|| CmdError::msg("ERR invalid cursor"))?;
    read_zset(cx, a[1], |z, out| {
        let Some(z) = z else {
            out.array(2);
            out.bulk(b"0");
            out.array(0);
            return Ok(());
        };
        let pattern = scan_options(a)?;
        let found: Vec<(&[u8], f64)> = z
            .asc()
            .filter(|(m, _)| pattern.is_none_or(|p| glob_match(p, m, false)))
            .collect();
        out.array(2);
        out.bulk(b"0");
        out.array(found.len() * 2);
        for (m, s) in found {
            out.bulk(m);
            out.bulk(double::fmt_g17(s).as_bytes());
        }
        Ok(())
    })?
}
