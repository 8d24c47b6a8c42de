//! List commands (Redis's `t_list.c`). Each change is one of the list edits of
//! `engine/list.rs` (pushes, pops, set/insert/remove at an index, trim), made through the
//! engine's typed API and logged with the list's version. The blocking forms are in
//! `blocking.rs`.

use super::args::{int, is};
use super::hashes::engine;
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::engine::{Edit, Engine, ListRef};
use crate::pubsub::class;
use crate::resp::Reply;
use crate::store::StoreError;

fn read_list<S: Deployment, R>(
    cx: &mut Ctx<'_, '_, S>,
    key: &[u8],
    f: impl FnOnce(Option<ListRef<'_>>, &mut Reply<'_>) -> R,
) -> Result<R, CmdError> {
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let out = &mut *cx.out;
    e.read(db, key, now, |k| match k {
        None => Ok(f(None, out)),
        Some(k) => Ok(f(Some(k.list_or_wrongtype()?), out)),
    })
    .map_err(|e: StoreError| e.into())
}

/// What an LMPOP took: the key, its elements, and whether that emptied the list.
pub type Popped = (Vec<u8>, Vec<Vec<u8>>, bool);

/// Which end of a list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Left,
    Right,
}

impl End {
    pub fn parse(a: &[u8]) -> Option<End> {
        if is(a, "left") {
            Some(End::Left)
        } else if is(a, "right") {
            Some(End::Right)
        } else {
            None
        }
    }

    pub fn pop_event(self) -> &'static str {
        match self {
            End::Left => "lpop",
            End::Right => "rpop",
        }
    }

    pub fn push_event(self) -> &'static str {
        match self {
            End::Left => "lpush",
            End::Right => "rpush",
        }
    }
}

/// `LPUSH`/`RPUSH` (and the `X` forms, which push only onto an existing list).
pub async fn push<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    end: End,
    only_existing: bool,
) -> CmdResult {
    let e = engine(cx)?;
    let len = e.write(cx.db(), a[1], cx.now, |w| {
        if w.list()?.is_none() && only_existing {
            return Ok(0);
        }
        let elems: Vec<&[u8]> = a[2..].to_vec();
        let edit = match end {
            // LPUSH a b c leaves c b a at the head.
            End::Left => Edit::PushHead(elems.into_iter().rev().collect()),
            End::Right => Edit::PushTail(elems),
        };
        w.list_edit(&edit);
        Ok(w.list()?.map_or(0, |l| l.len()))
    })?;
    if len > 0 {
        cx.notify(class::LIST, end.push_event(), a[1]);
        super::blocking::signal(cx, a[1]);
    }
    cx.out.int(len as i64);
    Ok(())
}

/// Pops up to `count` elements from one end of the list at `key`, inside a write; also
/// whether that emptied (deleted) the list.
pub fn pop_list(
    e: &Engine,
    db: usize,
    key: &[u8],
    now: i64,
    end: End,
    count: usize,
) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
    e.write(db, key, now, |w| {
        let Some(l) = w.list()? else {
            return Ok((Vec::new(), false));
        };
        let n = count.min(l.len());
        let taken: Vec<Vec<u8>> = match end {
            End::Left => l.iter().take(n).map(<[u8]>::to_vec).collect(),
            End::Right => l.iter().rev().take(n).map(<[u8]>::to_vec).collect(),
        };
        if n > 0 {
            w.list_edit(&match end {
                End::Left => Edit::PopHead(n),
                End::Right => Edit::PopTail(n),
            });
        }
        Ok((taken, w.get().is_none()))
    })
}

pub fn pop_events<S: Deployment>(cx: &Ctx<'_, '_, S>, key: &[u8], end: End, gone: bool) {
    cx.notify(class::LIST, end.pop_event(), key);
    if gone {
        cx.notify(class::GENERIC, "del", key);
    }
}

/// `LPOP`/`RPOP key [count]`.
pub async fn pop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], end: End) -> CmdResult {
    let count = match a.len() {
        2 => None,
        3 => Some(
            int(a[2])
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CmdError::msg("ERR value is out of range, must be positive"))?
                as usize,
        ),
        _ => {
            return Err(super::wrong_args(match end {
                End::Left => "lpop",
                End::Right => "rpop",
            }))
        }
    };
    let e = engine(cx)?;
    let exists = e.read(cx.db(), a[1], cx.now, |k| match k {
        None => Ok(false),
        Some(k) => k.list_or_wrongtype().map(|_| true),
    })?;
    if !exists {
        match count {
            Some(_) => cx.out.null_array(),
            None => cx.out.null(),
        }
        return Ok(());
    }
    if count == Some(0) {
        cx.out.array(0);
        return Ok(());
    }
    let (items, gone) = pop_list(e, cx.db(), a[1], cx.now, end, count.unwrap_or(1))?;
    if !items.is_empty() {
        pop_events(cx, a[1], end, gone);
    }
    match count {
        None => cx.out.bulk_opt(items.first().map(|v| &v[..])),
        Some(_) if items.is_empty() => cx.out.null_array(),
        Some(_) => {
            cx.out.array(items.len());
            for v in &items {
                cx.out.bulk(v);
            }
        }
    }
    Ok(())
}

pub async fn llen<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    read_list(cx, a[1], |l, out| out.int(l.map_or(0, |l| l.len() as i64)))
}

/// Normalizes a Redis index (negative from the tail); None when outside the list.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub async fn lindex<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let i = int(a[2])?;
    read_list(cx, a[1], |l, out| {
        out.bulk_opt(l.and_then(|l| index(i, l.len()).and_then(|i| l.get(i))))
    })
}

pub async fn lrange<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (start, end) = (int(a[2])?, int(a[3])?);
    read_list(cx, a[1], |l, out| {
        let Some(l) = l else {
            out.array(0);
            return;
        };
        let len = l.len() as i64;
        let mut s = if start < 0 { start + len } else { start };
        let mut t = if end < 0 { end + len } else { end };
        s = s.max(0);
        if s > t || s >= len {
            out.array(0);
            return;
        }
        t = t.min(len - 1);
        out.array((t - s + 1) as usize);
        for v in l.iter().skip(s as usize).take((t - s + 1) as usize) {
            out.bulk(v);
        }
    })
}

pub async fn lset<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let i = int(a[2])?;
    let e = engine(cx)?;
    e.write(cx.db(), a[1], cx.now, |w| {
        let Some(l) = w.list()? else {
            return Err(StoreError::NoSuchKey);
        };
        let Some(i) = index(i, l.len()) else {
            return Err(StoreError::Other("ERR index out of range".into()));
        };
        w.list_edit(&Edit::Set(i, a[3]));
        Ok(())
    })?;
    cx.notify(class::LIST, "lset", a[1]);
    cx.out.ok();
    Ok(())
}

/// `LINSERT key BEFORE|AFTER pivot element`.
pub async fn linsert<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let after = if is(a[2], "after") {
        true
    } else if is(a[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let e = engine(cx)?;
    let n = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(l) = w.list()? else {
            return Ok(0);
        };
        let Some(p) = l.iter().position(|v| v == a[3]) else {
            return Ok(-1);
        };
        w.list_edit(&Edit::Insert(if after { p + 1 } else { p }, a[4]));
        Ok(w.list()?.map_or(0, |l| l.len() as i64))
    })?;
    if n > 0 {
        cx.notify(class::LIST, "linsert", a[1]);
    }
    cx.out.int(n);
    Ok(())
}

/// `LREM key count element`.
pub async fn lrem<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let count = int(a[2])?;
    let e = engine(cx)?;
    let (n, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(l) = w.list()? else {
            return Ok((0, false));
        };
        let len = l.len();
        let mut hits: Vec<usize> = l
            .iter()
            .enumerate()
            .filter(|(_, v)| *v == a[3])
            .map(|(i, _)| i)
            .collect();
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        if count < 0 {
            hits.reverse();
        }
        hits.truncate(limit);
        // Remove from the highest index down, so earlier indexes stay valid.
        hits.sort_unstable_by(|x, y| y.cmp(x));
        let n = hits.len();
        for i in hits {
            w.list_edit(&Edit::Remove(i));
        }
        let _ = len;
        Ok((n, w.get().is_none()))
    })?;
    if n > 0 {
        cx.notify(class::LIST, "lrem", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.int(n as i64);
    Ok(())
}

/// `LTRIM key start stop`.
pub async fn ltrim<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (start, end) = (int(a[2])?, int(a[3])?);
    let e = engine(cx)?;
    let gone = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(l) = w.list()? else {
            return Ok(None);
        };
        let len = l.len() as i64;
        let mut s = if start < 0 { start + len } else { start };
        let mut t = if end < 0 { end + len } else { end };
        s = s.max(0);
        let edit = if s > t || s >= len {
            Edit::Trim(1, 0)
        } else {
            t = t.min(len - 1);
            if s == 0 && t == len - 1 {
                return Ok(Some(false)); // nothing to trim
            }
            Edit::Trim(s as usize, t as usize)
        };
        w.list_edit(&edit);
        Ok(Some(w.get().is_none()))
    })?;
    if let Some(gone) = gone {
        cx.notify(class::LIST, "ltrim", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.ok();
    Ok(())
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`.
pub async fn lpos<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut j = 3;
    while j < a.len() {
        if j + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        let v = int(a[j + 1])?;
        if is(a[j], "rank") {
            if v == 0 {
                return Err(CmdError::msg("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
            }
            // Redis negates a negative rank; LONG_MIN stays negative there, which makes it
            // match the first element from the tail.
            rank = if v == i64::MIN { -1 } else { v };
        } else if is(a[j], "count") {
            if v < 0 {
                return Err(CmdError::msg("ERR COUNT can't be negative"));
            }
            count = Some(v);
        } else if is(a[j], "maxlen") {
            if v < 0 {
                return Err(CmdError::msg("ERR MAXLEN can't be negative"));
            }
            maxlen = v;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 2;
    }
    read_list(cx, a[1], |l, out| {
        let Some(l) = l else {
            match count {
                Some(_) => out.array(0),
                None => out.null(),
            }
            return;
        };
        let len = l.len();
        let scan = if maxlen == 0 {
            len
        } else {
            (maxlen as usize).min(len)
        };
        let positions: Box<dyn Iterator<Item = (usize, &[u8])>> = if rank > 0 {
            Box::new(l.iter().enumerate().take(scan))
        } else {
            Box::new(
                l.iter()
                    .rev()
                    .enumerate()
                    .map(move |(i, v)| (len - 1 - i, v))
                    .take(scan),
            )
        };
        let skip = (rank.unsigned_abs() - 1) as usize;
        let want = match count {
            Some(0) => usize::MAX,
            Some(c) => c as usize,
            None => 1,
        };
        let found: Vec<usize> = positions
            .filter(|(_, v)| *v == a[2])
            .map(|(i, _)| i)
            .skip(skip)
            .take(want)
            .collect();
        match count {
            Some(_) => {
                out.array(found.len());
                for i in found {
                    out.int(i as i64);
                }
            }
            None => match found.first() {
                Some(i) => out.int(*i as i64),
                None => out.null(),
            },
        }
    })
}

/// Moves one element from an end of `src` to an end of `dst` (LMOVE and the blocking forms),
/// atomically; the element, or None when `src` is empty. Call inside a block holding both.
pub fn move_one(
    e: &Engine,
    db: usize,
    src: &[u8],
    dst: &[u8],
    now: i64,
    from: End,
    to: End,
) -> Result<Option<(Vec<u8>, bool)>, StoreError> {
    let has = e.read(db, src, now, |k| match k {
        None => Ok(None),
        Some(k) => k.list_or_wrongtype().map(|l| Some(l.len())),
    })?;
    if has.is_none() {
        return Ok(None);
    }
    e.read(db, dst, now, |k| match k {
        None => Ok(()),
        Some(k) => k.list_or_wrongtype().map(|_| ()),
    })?;
    let (items, gone) = pop_list(e, db, src, now, from, 1)?;
    let Some(v) = items.into_iter().next() else {
        return Ok(None);
    };
    e.write(db, dst, now, |w| {
        w.list_edit(&match to {
            End::Left => Edit::PushHead(vec![&v]),
            End::Right => Edit::PushTail(vec![&v]),
        });
        Ok(())
    })?;
    Ok(Some((v, gone)))
}

pub fn move_events<S: Deployment>(
    cx: &Ctx<'_, '_, S>,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
    gone: bool,
) {
    pop_events(cx, src, from, gone);
    cx.notify(class::LIST, to.push_event(), dst);
}

/// `LMOVE src dst LEFT|RIGHT LEFT|RIGHT` and `RPOPLPUSH src dst`.
pub async fn lmove<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    rpoplpush: bool,
) -> CmdResult {
    let (from, to) = if rpoplpush {
        (End::Right, End::Left)
    } else {
        match (End::parse(a[3]), End::parse(a[4])) {
            (Some(f), Some(t)) => (f, t),
            _ => return Err(CmdError::Syntax),
        }
    };
    let e = engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let moved = e.with_keys(&a[1..3], || move_one(e, db, a[1], a[2], now, from, to))?;
    match moved {
        None => cx.out.null(),
        Some((v, gone)) => {
            move_events(cx, a[1], a[2], from, to, gone);
            super::blocking::signal(cx, a[2]);
            cx.out.bulk(&v);
        }
    }
    Ok(())
}

/// `numkeys key … LEFT|RIGHT [COUNT n]` of LMPOP/BLMPOP (`first`: index of numkeys).
pub fn parse_mpop<'a, 'b>(
    a: &'b [&'a [u8]],
    first: usize,
) -> Result<(&'b [&'a [u8]], End, usize), CmdError> {
    let (keys, right, count) = super::args::mpop(a, first, ("left", "right"))?;
    Ok((keys, if right { End::Right } else { End::Left }, count))
}

/// The first non-empty list of `keys`, popped: (key, elements, emptied).
pub fn mpop(
    e: &Engine,
    db: usize,
    keys: &[&[u8]],
    now: i64,
    end: End,
    count: usize,
) -> Result<Option<Popped>, StoreError> {
    e.with_keys(keys, || {
        for k in keys {
            let (items, gone) = pop_list(e, db, k, now, end, count)?;
            if !items.is_empty() {
                return Ok(Some((k.to_vec(), items, gone)));
            }
        }
        Ok(None)
    })
}

/// `LMPOP numkeys key … LEFT|RIGHT [COUNT n]`.
pub async fn lmpop<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (keys, end, count) = parse_mpop(a, 1)?;
    let e = engine(cx)?;
    let found = mpop(e, cx.db(), keys, cx.now, end, count)?;
    match found {
        None => cx.out.null_array(),
        Some((k, items, gone)) => {
            pop_events(cx, &k, end, gone);
            cx.out.array(2);
            cx.out.bulk(&k);
            cx.out.array(items.len());
            for v in &items {
                cx.out.bulk(v);
            }
        }
    }
    Ok(())
}
