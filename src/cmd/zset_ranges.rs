//! Sorted-set ranges (Redis's `zrangeGenericCommand` and kin): ZRANGE with BYSCORE, BYLEX,
//! REV and LIMIT, the older range commands, ZRANGESTORE, ZCOUNT, ZLEXCOUNT and the
//! ZREMRANGEBY… commands. A range is walked in (score, member) order, as Redis walks its
//! listpacks and skiplists, so replies come in Redis's order.

use super::args::{int, is};
use super::hashes::engine;
use super::zsets::{emit, read_zset};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::{Engine, ZSetRef};
use crate::pubsub::class;
use crate::store::StoreError;
use crate::util::double;

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

/// How many members a range selects (ZCOUNT, ZLEXCOUNT), without collecting them.
fn count(z: ZSetRef<'_>, r: &RangeReq) -> usize {
    match &r.range {
        Range::Score(min, max) => {
            let (min, max) = (*min, *max);
            z.asc_from(min.0)
                .skip_while(|(_, s)| !gte_smin(*s, min))
                .take_while(|(_, s)| lte_smax(*s, max))
                .count()
        }
        _ => select(z, r).len(),
    }
}

/// The members a range selects, in reply order.
fn select<'a>(z: ZSetRef<'a>, r: &RangeReq) -> Vec<(&'a [u8], f64)> {
    let own = |(m, s): (&'a [u8], f64)| (m, s);
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
            let it = if r.rev {
                z.desc_at(start as usize)
            } else {
                z.asc_at(start as usize)
            };
            it.take(n).map(own).collect()
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
            // The seek lands on the bound's score; an exclusive bound skips its members.
            if r.rev {
                z.desc_from(max.0)
                    .skip_while(|(_, s)| !lte_smax(*s, max))
                    .take_while(|(_, s)| gte_smin(*s, min))
                    .skip(r.offset as usize)
                    .take(limit)
                    .map(own)
                    .collect()
            } else {
                z.asc_from(min.0)
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

pub async fn zrange<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    which: RangeCmd,
) -> CmdResult {
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
pub async fn zrangestore<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let req = parse_range(&a[2..], true, Fixed::Auto, None)?;
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let (n, existed) = e.with_keys(&a[1..3], || -> Result<(usize, bool), StoreError> {
        let items = e.read(db, a[2], now, |k| match k {
            None => Ok(Vec::new()),
            Some(k) => k.zset_or_wrongtype().map(|z| {
                select(z, &req)
                    .into_iter()
                    .map(|(m, s)| (m.to_vec(), s))
                    .collect::<Vec<_>>()
            }),
        })?;
        store_items(e, db, a[1], now, &items)
    })?;
    stored(cx, a[1], "zrangestore", n, existed);
    Ok(())
}

pub(super) fn store_items(
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

pub(super) fn stored<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    dst: &[u8],
    event: &str,
    n: usize,
    existed: bool,
) {
    if n > 0 {
        cx.notify(class::ZSET, event, dst);
        super::blocking::signal(cx, dst);
    } else if existed {
        cx.notify(class::GENERIC, "del", dst);
    }
    cx.out.int(n as i64);
}

/// `ZCOUNT key min max` (`lex`: `ZLEXCOUNT`).
pub async fn zcount<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], lex: bool) -> CmdResult {
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
        out.int(z.map_or(0, |z| count(z, &req) as i64))
    })
}

/// `ZREMRANGEBYRANK|BYSCORE|BYLEX key a b`.
pub async fn zremrange<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], kind: u8) -> CmdResult {
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
        let victims: Vec<Vec<u8>> = select(z, &req)
            .into_iter()
            .map(|(m, _)| m.to_vec())
            .collect();
        for m in &victims {
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
