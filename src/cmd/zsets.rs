//! Sorted set commands (Redis's `t_zset.c`). Ranges are walked in (score, member) order as
//! Redis walks its listpacks and skiplists, so replies (order included) are Redis's; the
//! argument checks come in Redis's order. Multi-key commands run in one multi-shard block.

use super::args::{int, is};
use super::hashes::engine;
use super::keys::parse_cursor;
use super::sets::scan_options;
use super::{CmdError, CmdResult, Ctx};
use crate::engine::{Engine, KeyRef, ZSetRef};
use crate::pubsub::class;
use crate::resp::Reply;
use crate::store::{Store, StoreError};
use crate::util::double;
use crate::util::glob::glob_match;

const NOT_FLOAT: &str = "ERR value is not a valid float";

/// Members with their scores, owned (read under a lock, replied to after).
type Items = Vec<(Vec<u8>, f64)>;
/// What a pop took from one key, and whether that emptied (deleted) it.
type Popped = (Items, bool);
/// Largest `|count|` of ZRANDMEMBER with repetitions in one reply (see HRANDFIELD).
const RANDOM_MAX: u64 = 1 << 24;

fn score_arg(a: &[u8]) -> Result<f64, CmdError> {
    double::parse(a).ok_or_else(|| CmdError::msg(NOT_FLOAT))
}

fn read_zset<S: Store, R>(
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
fn emit(out: &mut Reply<'_>, items: &[(Vec<u8>, f64)], withscores: bool) {
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
        out.bulk(m);
        if withscores {
            out.double(*s);
        }
    }
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …]`.
pub async fn zadd<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], incr_cmd: bool) -> CmdResult {
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

pub async fn zrem<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = engine(cx)?;
    let (n, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        if w.zset()?.is_none() {
            return Ok((0, false));
        }
        let mut n = 0;
        for m in &a[2..] {
            if w.get().is_none() {
                break;
            }
            n += w.zrem(m) as i64;
        }
        Ok((n, w.get().is_none()))
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

pub async fn zcard<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_zset(cx, a[1], |z, out| out.int(z.map_or(0, |z| z.len() as i64)))
}

pub async fn zscore<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_zset(cx, a[1], |z, out| match z.and_then(|z| z.score(a[2])) {
        Some(s) => out.double(s),
        None => out.null(),
    })
}

pub async fn zmscore<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
pub async fn zrank<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], rev: bool) -> CmdResult {
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

/// One end of a score range: the value and whether it is excluded (`(1.5`).
#[derive(Clone, Copy)]
struct Bound(f64, bool);

fn score_bound(a: &[u8]) -> Option<Bound> {
    match a.strip_prefix(b"(") {
        Some(rest) => double::parse(rest).map(|v| Bound(v, true)),
        None => double::parse(a).map(|v| Bound(v, false)),
    }
}

/// A lex bound: `-`, `+`, `[x` or `(x`.
#[derive(Clone)]
enum Lex {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

fn lex_bound(a: &[u8]) -> Option<Lex> {
    match a.first() {
        Some(b'-') if a.len() == 1 => Some(Lex::Min),
        Some(b'+') if a.len() == 1 => Some(Lex::Max),
        Some(b'[') => Some(Lex::Incl(a[1..].to_vec())),
        Some(b'(') => Some(Lex::Excl(a[1..].to_vec())),
        _ => None,
    }
}

fn gte_min(m: &[u8], min: &Lex) -> bool {
    match min {
        Lex::Min => true,
        Lex::Max => false,
        Lex::Incl(x) => m >= &x[..],
        Lex::Excl(x) => m > &x[..],
    }
}

fn lte_max(m: &[u8], max: &Lex) -> bool {
    match max {
        Lex::Min => false,
        Lex::Max => true,
        Lex::Incl(x) => m <= &x[..],
        Lex::Excl(x) => m < &x[..],
    }
}

fn gte_smin(s: f64, b: Bound) -> bool {
    if b.1 {
        s > b.0
    } else {
        s >= b.0
    }
}

fn lte_smax(s: f64, b: Bound) -> bool {
    if b.1 {
        s < b.0
    } else {
        s <= b.0
    }
}

/// What a range selects.
#[derive(Clone)]
enum Range {
    Rank(i64, i64),
    Score(Bound, Bound),
    Lex(Lex, Lex),
}

/// A parsed range request (ZRANGE and its older forms).
struct RangeReq {
    range: Range,
    rev: bool,
    withscores: bool,
    offset: i64,
    limit: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fixed {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Redis's `zrangeGenericCommand` argument handling; `args` starts at the source key.
fn parse_range(
    args: &[&[u8]],
    store: bool,
    fixed: Fixed,
    rev_fixed: Option<bool>,
) -> Result<RangeReq, CmdError> {
    let mut kind = fixed;
    let mut rev = rev_fixed;
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let o = args[j];
        if !store && is(o, "withscores") {
            withscores = true;
        } else if is(o, "limit") && left >= 2 {
            offset = int(args[j + 1])?;
            limit = int(args[j + 2])?;
            j += 2;
        } else if rev.is_none() && is(o, "rev") {
            rev = Some(true);
        } else if kind == Fixed::Auto && is(o, "bylex") {
            kind = Fixed::Lex;
        } else if kind == Fixed::Auto && is(o, "byscore") {
            kind = Fixed::Score;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == Fixed::Auto {
        kind = Fixed::Rank;
    }
    if limit != -1 && kind == Fixed::Rank {
        return Err(CmdError::msg(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == Fixed::Lex {
        return Err(CmdError::msg(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut lo, mut hi) = (args[1], args[2]);
    if rev && kind != Fixed::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let range = match kind {
        Fixed::Score => match (score_bound(lo), score_bound(hi)) {
            (Some(a), Some(b)) => Range::Score(a, b),
            _ => return Err(CmdError::msg("ERR min or max is not a float")),
        },
        Fixed::Lex => match (lex_bound(lo), lex_bound(hi)) {
            (Some(a), Some(b)) => Range::Lex(a, b),
            _ => return Err(CmdError::msg("ERR min or max not valid string range item")),
        },
        _ => Range::Rank(int(lo)?, int(hi)?),
    };
    Ok(RangeReq {
        range,
        rev,
        withscores: withscores || store,
        offset,
        limit,
    })
}

/// The members a range selects, in reply order.
fn select(z: ZSetRef<'_>, r: &RangeReq) -> Vec<(Vec<u8>, f64)> {
    let own = |(m, s): (&[u8], f64)| (m.to_vec(), s);
    match &r.range {
        Range::Rank(start, end) => {
            let len = z.len() as i64;
            let (mut start, mut end) = (*start, *end);
            if start < 0 {
                start += len;
            }
            if end < 0 {
                end += len;
            }
            start = start.max(0);
            if start > end || start >= len {
                return Vec::new();
            }
            end = end.min(len - 1);
            let n = (end - start + 1) as usize;
            let it = if r.rev { z.desc() } else { z.asc() };
            it.skip(start as usize).take(n).map(own).collect()
        }
        Range::Score(min, max) => {
            if r.offset < 0 {
                return Vec::new();
            }
            let limit = if r.limit < 0 {
                usize::MAX
            } else {
                r.limit as usize
            };
            let (min, max) = (*min, *max);
            if r.rev {
                z.desc()
                    .skip_while(|(_, s)| !lte_smax(*s, max))
                    .take_while(|(_, s)| gte_smin(*s, min))
                    .skip(r.offset as usize)
                    .take(limit)
                    .map(own)
                    .collect()
            } else {
                z.asc()
                    .skip_while(|(_, s)| !gte_smin(*s, min))
                    .take_while(|(_, s)| lte_smax(*s, max))
                    .skip(r.offset as usize)
                    .take(limit)
                    .map(own)
                    .collect()
            }
        }
        Range::Lex(min, max) => {
            if r.offset < 0 {
                return Vec::new();
            }
            let limit = if r.limit < 0 {
                usize::MAX
            } else {
                r.limit as usize
            };
            if r.rev {
                z.desc()
                    .skip_while(|(m, _)| !lte_max(m, max))
                    .take_while(|(m, _)| gte_min(m, min))
                    .skip(r.offset as usize)
                    .take(limit)
                    .map(own)
                    .collect()
            } else {
                z.asc()
                    .skip_while(|(m, _)| !gte_min(m, min))
                    .take_while(|(m, _)| lte_max(m, max))
                    .skip(r.offset as usize)
                    .take(limit)
                    .map(own)
                    .collect()
            }
        }
    }
}

/// Which of the range commands.
#[derive(Clone, Copy)]
pub enum RangeCmd {
    Range,
    RevRange,
    ByScore,
    RevByScore,
    ByLex,
    RevByLex,
}

pub async fn zrange<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], which: RangeCmd) -> CmdResult {
    let (fixed, rev) = match which {
        RangeCmd::Range => (Fixed::Auto, None),
        RangeCmd::RevRange => (Fixed::Rank, Some(true)),
        RangeCmd::ByScore => (Fixed::Score, Some(false)),
        RangeCmd::RevByScore => (Fixed::Score, Some(true)),
        RangeCmd::ByLex => (Fixed::Lex, Some(false)),
        RangeCmd::RevByLex => (Fixed::Lex, Some(true)),
    };
    let req = parse_range(&a[1..], false, fixed, rev)?;
    read_zset(cx, a[1], |z, out| {
        let items = z.map(|z| select(z, &req)).unwrap_or_default();
        emit(out, &items, req.withscores);
    })
}

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`.
pub async fn zrangestore<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let req = parse_range(&a[2..], true, Fixed::Auto, None)?;
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let (n, existed) = e.with_keys(&a[1..3], || -> Result<(usize, bool), StoreError> {
        let items = e.read(db, a[2], now, |k| match k {
            None => Ok(Vec::new()),
            Some(k) => k.zset_or_wrongtype().map(|z| select(z, &req)),
        })?;
        store_items(e, db, a[1], now, &items)
    })?;
    stored(cx, a[1], "zrangestore", n, existed);
    Ok(())
}

fn store_items(
    e: &Engine,
    db: usize,
    dst: &[u8],
    now: i64,
    items: &[(Vec<u8>, f64)],
) -> Result<(usize, bool), StoreError> {
    let refs: Vec<(&[u8], f64)> = items.iter().map(|(m, s)| (&m[..], *s)).collect();
    e.write(db, dst, now, |w| {
        let existed = w.get().is_some();
        w.store_zset(&refs);
        Ok((refs.len(), existed))
    })
}

fn stored<S: Store>(cx: &mut Ctx<'_, '_, S>, dst: &[u8], event: &str, n: usize, existed: bool) {
    if n > 0 {
        cx.notify(class::ZSET, event, dst);
        super::blocking::signal(cx, dst);
    } else if existed {
        cx.notify(class::GENERIC, "del", dst);
    }
    cx.out.int(n as i64);
}

/// `ZCOUNT key min max` (`lex`: `ZLEXCOUNT`).
pub async fn zcount<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], lex: bool) -> CmdResult {
    let range = if lex {
        match (lex_bound(a[2]), lex_bound(a[3])) {
            (Some(x), Some(y)) => Range::Lex(x, y),
            _ => return Err(CmdError::msg("ERR min or max not valid string range item")),
        }
    } else {
        match (score_bound(a[2]), score_bound(a[3])) {
            (Some(x), Some(y)) => Range::Score(x, y),
            _ => return Err(CmdError::msg("ERR min or max is not a float")),
        }
    };
    let req = RangeReq {
        range,
        rev: false,
        withscores: false,
        offset: 0,
        limit: -1,
    };
    read_zset(cx, a[1], |z, out| {
        out.int(z.map_or(0, |z| select(z, &req).len() as i64))
    })
}

/// `ZREMRANGEBYRANK|BYSCORE|BYLEX key a b`.
pub async fn zremrange<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], kind: u8) -> CmdResult {
    let (range, event) = match kind {
        b'r' => (Range::Rank(int(a[2])?, int(a[3])?), "zremrangebyrank"),
        b's' => match (score_bound(a[2]), score_bound(a[3])) {
            (Some(x), Some(y)) => (Range::Score(x, y), "zremrangebyscore"),
            _ => return Err(CmdError::msg("ERR min or max is not a float")),
        },
        _ => match (lex_bound(a[2]), lex_bound(a[3])) {
            (Some(x), Some(y)) => (Range::Lex(x, y), "zremrangebylex"),
            _ => return Err(CmdError::msg("ERR min or max not valid string range item")),
        },
    };
    let req = RangeReq {
        range,
        rev: false,
        withscores: false,
        offset: 0,
        limit: -1,
    };
    let e = engine(cx)?;
    let (n, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(z) = w.zset()? else {
            return Ok((0, false));
        };
        let victims = select(z, &req);
        for (m, _) in &victims {
            w.zrem(m);
        }
        Ok((victims.len(), w.get().is_none()))
    })?;
    if n > 0 {
        cx.notify(class::ZSET, event, a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.int(n as i64);
    Ok(())
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
pub async fn zpop<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], max: bool) -> CmdResult {
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
pub async fn zmpop<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

fn reply_mpop<S: Store>(cx: &mut Ctx<'_, '_, S>, found: Option<(Vec<u8>, Popped)>, max: bool) {
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
    let numkeys = int(a[first])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::msg("ERR numkeys should be greater than 0"))?
        as usize;
    if numkeys > a.len() - first - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[first + 1..first + 1 + numkeys];
    let mut j = first + 1 + numkeys;
    let max = match a.get(j) {
        Some(w) if is(w, "min") => false,
        Some(w) if is(w, "max") => true,
        _ => return Err(CmdError::Syntax),
    };
    j += 1;
    let mut count = None;
    while j < a.len() {
        if count.is_none() && is(a[j], "count") && j + 1 < a.len() {
            let c = int(a[j + 1])
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| CmdError::msg("ERR count should be greater than 0"))?;
            count = Some(c as usize);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((keys, max, count.unwrap_or(1)))
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`.
pub async fn zrandmember<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 2 {
        return read_zset(cx, a[1], |z, out| match z.filter(|z| !z.is_empty()) {
            None => out.null(),
            Some(z) => {
                let i = fastrand::usize(..z.len());
                out.bulk(z.asc().nth(i).map_or(&b""[..], |(m, _)| m));
            }
        });
    }
    let l = int(a[2])?;
    if l == i64::MIN {
        return Err(CmdError::msg(format!(
            "ERR value is out of range, value must between -{max} and {max}",
            max = i64::MAX
        )));
    }
    let withscores = match a.len() {
        3 => false,
        4 if is(a[3], "withscores") => true,
        _ => return Err(CmdError::Syntax),
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::msg("ERR value is out of range"));
    }
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    if !unique && count > RANDOM_MAX {
        return Err(CmdError::msg(format!(
            "ERR ZRANDMEMBER count is too large for one reply (at most {RANDOM_MAX} with repetitions)"
        )));
    }
    read_zset(cx, a[1], |z, out| {
        let Some(z) = z.filter(|z| !z.is_empty() && count > 0) else {
            out.array(0);
            return;
        };
        let all: Vec<(Vec<u8>, f64)> = z.asc().map(|(m, s)| (m.to_vec(), s)).collect();
        let picks: Vec<(Vec<u8>, f64)> = if !unique {
            (0..count)
                .map(|_| all[fastrand::usize(..all.len())].clone())
                .collect()
        } else if count as usize >= all.len() {
            all
        } else {
            let mut idx: Vec<usize> = (0..all.len()).collect();
            fastrand::shuffle(&mut idx);
            idx.truncate(count as usize);
            idx.into_iter().map(|i| all[i].clone()).collect()
        };
        emit(out, &picks, withscores);
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The members of one source key: a sorted set, or a set (every score 1, as Redis).
fn source(k: Option<KeyRef<'_>>) -> Result<Option<Items>, StoreError> {
    let Some(k) = k else { return Ok(None) };
    if let Some(z) = k.zset() {
        return Ok(Some(z.asc().map(|(m, s)| (m.to_vec(), s)).collect()));
    }
    if let Some(s) = k.set() {
        return Ok(Some(s.iter().map(|m| (m.to_vec(), 1.0)).collect()));
    }
    Err(StoreError::WrongType)
}

fn combine_scores(a: f64, b: f64, agg: Aggregate) -> f64 {
    match agg {
        Aggregate::Sum => {
            let r = a + b;
            // inf + -inf is NaN in IEEE; Redis makes it 0.
            if r.is_nan() {
                0.0
            } else {
                r
            }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

/// `ZUNION|ZINTER|ZDIFF numkeys key … [WEIGHTS …] [AGGREGATE …] [WITHSCORES]` and the STORE
/// forms (`store`: the destination is `a[1]`, numkeys at `a[2]`).
pub async fn zsetop<S: Store>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    op: SetOp,
    store: bool,
) -> CmdResult {
    let first = if store { 2 } else { 1 };
    let numkeys = int(a[first])?;
    if numkeys < 1 {
        let name = match (op, store) {
            (SetOp::Union, true) => "zunionstore",
            (SetOp::Inter, true) => "zinterstore",
            (SetOp::Diff, true) => "zdiffstore",
            (SetOp::Union, false) => "zunion",
            (SetOp::Inter, false) => "zinter",
            (SetOp::Diff, false) => "zdiff",
        };
        return Err(CmdError::msg(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > a.len() - first - 1 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[first + 1..first + 1 + numkeys];
    let mut weights = vec![1.0f64; numkeys];
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut j = first + 1 + numkeys;
    while j < a.len() {
        let left = a.len() - j - 1;
        if op != SetOp::Diff && is(a[j], "weights") && left >= numkeys {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = double::parse(a[j + 1 + i])
                    .ok_or_else(|| CmdError::msg("ERR weight value is not a float"))?;
            }
            j += numkeys + 1;
        } else if op != SetOp::Diff && is(a[j], "aggregate") && left >= 1 {
            agg = if is(a[j + 1], "sum") {
                Aggregate::Sum
            } else if is(a[j + 1], "min") {
                Aggregate::Min
            } else if is(a[j + 1], "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if !store && is(a[j], "withscores") {
            withscores = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let lock: &[&[u8]] = if store {
        &a[1..first + 1 + numkeys]
    } else {
        keys
    };
    let keys_owned: Vec<&[u8]> = lock.to_vec();
    let result = e.with_keys(&keys_owned, || -> Result<_, StoreError> {
        let mut sources = Vec::with_capacity(numkeys);
        for k in keys {
            sources.push(e.read(db, k, now, source)?);
        }
        let items = compute(sources, &weights, agg, op);
        if store {
            let (n, existed) = store_items(e, db, a[1], now, &items)?;
            Ok((items, Some((n, existed))))
        } else {
            Ok((items, None))
        }
    })?;
    match result {
        (_, Some((n, existed))) => {
            let event = match op {
                SetOp::Union => "zunionstore",
                SetOp::Inter => "zinterstore",
                SetOp::Diff => "zdiffstore",
            };
            stored(cx, a[1], event, n, existed);
        }
        (items, None) => emit(cx.out, &items, withscores),
    }
    Ok(())
}

/// The result of a set operation, sorted by (score, member) as Redis's result zset is.
fn compute(
    sources: Vec<Option<Items>>,
    weights: &[f64],
    agg: Aggregate,
    op: SetOp,
) -> Vec<(Vec<u8>, f64)> {
    use std::collections::HashMap;
    let weighted: Vec<Vec<(Vec<u8>, f64)>> = sources
        .into_iter()
        .zip(weights)
        .map(|(s, w)| {
            s.unwrap_or_default()
                .into_iter()
                .map(|(m, sc)| {
                    let v = sc * w;
                    (m, if v.is_nan() { 0.0 } else { v })
                })
                .collect()
        })
        .collect();
    let mut out: Vec<(Vec<u8>, f64)> = match op {
        SetOp::Union => {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for src in weighted {
                for (m, s) in src {
                    acc.entry(m)
                        .and_modify(|v| *v = combine_scores(*v, s, agg))
                        .or_insert(s);
                }
            }
            acc.into_iter().collect()
        }
        SetOp::Inter => {
            let mut it = weighted.into_iter();
            let first = it.next().unwrap_or_default();
            let rest: Vec<HashMap<Vec<u8>, f64>> = it.map(|s| s.into_iter().collect()).collect();
            first
                .into_iter()
                .filter_map(|(m, s)| {
                    let mut v = s;
                    for r in &rest {
                        v = combine_scores(v, *r.get(&m)?, agg);
                    }
                    Some((m, v))
                })
                .collect()
        }
        SetOp::Diff => {
            let mut it = weighted.into_iter();
            let first = it.next().unwrap_or_default();
            let rest: Vec<std::collections::HashSet<Vec<u8>>> = it
                .map(|s| s.into_iter().map(|(m, _)| m).collect())
                .collect();
            first
                .into_iter()
                .filter(|(m, _)| !rest.iter().any(|r| r.contains(m)))
                .collect()
        }
    };
    out.sort_by(|x, y| {
        x.1.partial_cmp(&y.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| x.0.cmp(&y.0))
    });
    out
}

/// `ZINTERCARD numkeys key … [LIMIT limit]`.
pub async fn zintercard<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let numkeys = int(a[1])?;
    if numkeys < 1 {
        return Err(CmdError::msg(
            "ERR at least 1 input key is needed for 'zintercard' command",
        ));
    }
    let numkeys = numkeys as usize;
    if numkeys > a.len() - 2 {
        return Err(CmdError::Syntax);
    }
    let keys = &a[2..2 + numkeys];
    let mut limit = 0usize;
    let mut j = 2 + numkeys;
    while j < a.len() {
        if is(a[j], "limit") && j + 1 < a.len() {
            limit = int(a[j + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::msg("ERR LIMIT can't be negative"))?
                as usize;
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let n = e.with_keys(keys, || -> Result<usize, StoreError> {
        let mut sources = Vec::new();
        for k in keys {
            sources.push(e.read(db, k, now, source)?);
        }
        Ok(compute(sources, &vec![1.0; numkeys], Aggregate::Sum, SetOp::Inter).len())
    })?;
    cx.out.int(if limit > 0 { n.min(limit) } else { n } as i64);
    Ok(())
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: a whole sorted set in one step (see
/// HSCAN); scores as `%.17g` strings in either protocol, as Redis.
pub async fn zscan<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
