//! String commands: GET, SET and its variants, MGET/MSET, APPEND, STRLEN, INCR/DECR.

use super::args::{int, is};
use super::{wrong_args, CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::pubsub::class;
use crate::store::{SetCondition, SetOptions, StoreError, TtlChange};
use crate::util::longdouble::LongDouble;

/// Which command parses extended SET-style arguments (they accept different options).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExtFor {
    Set,
    GetEx,
}

/// The parsed options of `SET` / `GETEX`: Redis's `parseExtendedStringArgumentsOrReply`.
pub struct Extended {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub keepttl: bool,
    pub persist: bool,
    pub ttl: Option<TtlChange>,
}

pub fn parse_extended(
    args: &[&[u8]],
    kind: ExtFor,
    name: &str,
    now: i64,
) -> Result<Extended, CmdError> {
    let mut e = Extended {
        nx: false,
        xx: false,
        get: false,
        keepttl: false,
        persist: false,
        ttl: None,
    };
    // (unit in ms, absolute?) and the raw argument, parsed after all flags as Redis does.
    let mut expire: Option<(i64, bool, &[u8])> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        let has_next = i + 1 < args.len();
        let set = kind == ExtFor::Set;
        if is(a, "nx") && !e.xx && set {
            e.nx = true;
        } else if is(a, "xx") && !e.nx && set {
            e.xx = true;
        } else if is(a, "get") && set {
            e.get = true;
        } else if is(a, "keepttl") && !e.persist && expire.is_none() && set {
            e.keepttl = true;
        } else if is(a, "persist") && kind == ExtFor::GetEx && expire.is_none() && !e.keepttl {
            e.persist = true;
        } else if (is(a, "ex") || is(a, "px") || is(a, "exat") || is(a, "pxat"))
            && !e.keepttl
            && !e.persist
            && has_next
            && expire.is_none_or(|(u, abs, _)| (u, abs) == unit_of(a))
        {
            let (u, abs) = unit_of(a);
            expire = Some((u, abs, args[i + 1]));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if let Some((unit, absolute, raw)) = expire {
        let n = int(raw)?;
        let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
        if n <= 0 || (unit == 1000 && n > i64::MAX / 1000) {
            return Err(invalid());
        }
        let mut ms = n * unit;
        if !absolute {
            ms = ms.checked_add(now).ok_or_else(invalid)?;
        }
        e.ttl = Some(TtlChange::At(ms));
    }
    Ok(e)
}

fn unit_of(a: &[u8]) -> (i64, bool) {
    if is(a, "ex") {
        (1000, false)
    } else if is(a, "px") {
        (1, false)
    } else if is(a, "exat") {
        (1000, true)
    } else {
        (1, true)
    }
}

pub async fn get<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    // The embedded engine: the value goes from the record into the reply under the shard
    // lock. `Store::get` hands back an owned copy, an allocation per read of the commonest
    // command, which a store behind a network needs and the engine does not.
    if let Some(e) = cx.server.store.engine() {
        let (db, now) = (cx.db(), cx.now);
        let out = &mut *cx.out;
        return e
            .read(db, a[1], now, |k| match k {
                None => {
                    out.bulk_opt(None);
                    Ok(())
                }
                Some(k) => {
                    let v = k.string().ok_or(StoreError::WrongType)?;
                    out.bulk_with(v.len(), |d| v.copy_to(d));
                    Ok(())
                }
            })
            .map_err(|e: StoreError| e.into());
    }
    let v = cx.store().get(cx.db(), a[1], cx.now).await?;
    cx.out.bulk_opt(v.as_deref());
    Ok(())
}

pub async fn set<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = parse_extended(&a[3..], ExtFor::Set, "set", cx.now)?;
    let opts = SetOptions {
        ttl: e.ttl.unwrap_or(if e.keepttl {
            TtlChange::Keep
        } else {
            TtlChange::Clear
        }),
        condition: if e.nx {
            SetCondition::IfAbsent
        } else if e.xx {
            SetCondition::IfPresent
        } else {
            SetCondition::Always
        },
        get: e.get,
    };
    let r = cx.store().set(cx.db(), a[1], a[2], opts, cx.now).await?;
    if r.written {
        cx.notify(class::STRING, "set", a[1]);
        if matches!(opts.ttl, TtlChange::At(_)) {
            cx.notify(class::GENERIC, "expire", a[1]);
        }
    }
    if e.get {
        cx.out.bulk_opt(r.previous.as_deref());
    } else if r.written {
        cx.out.ok();
    } else {
        cx.out.null();
    }
    Ok(())
}

/// SETEX (`unit` = 1000) and PSETEX (`unit` = 1).
pub async fn setex<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], unit: i64) -> CmdResult {
    let n = int(a[2])?;
    let name = if unit == 1000 { "setex" } else { "psetex" };
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    if n <= 0 || (unit == 1000 && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let at = (n * unit).checked_add(cx.now).ok_or_else(invalid)?;
    let opts = SetOptions {
        ttl: TtlChange::At(at),
        ..SetOptions::plain()
    };
    cx.store().set(cx.db(), a[1], a[3], opts, cx.now).await?;
    cx.notify(class::STRING, "set", a[1]);
    cx.notify(class::GENERIC, "expire", a[1]);
    cx.out.ok();
    Ok(())
}

pub async fn setnx<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let opts = SetOptions {
        condition: SetCondition::IfAbsent,
        ..SetOptions::plain()
    };
    let r = cx.store().set(cx.db(), a[1], a[2], opts, cx.now).await?;
    if r.written {
        cx.notify(class::STRING, "set", a[1]);
    }
    cx.out.int(r.written as i64);
    Ok(())
}

pub async fn getex<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = parse_extended(&a[2..], ExtFor::GetEx, "getex", cx.now)?;
    let ttl = match (e.ttl, e.persist) {
        (Some(t), _) => t,
        (None, true) => TtlChange::Clear,
        (None, false) => TtlChange::Keep,
    };
    // The TTL a PERSIST removes, to know whether it is an event.
    let had_ttl = e.persist
        && cx.notifying(class::GENERIC)
        && matches!(
            cx.store().ttl(cx.db(), a[1], cx.now).await?,
            crate::store::Ttl::At(_)
        );
    let v = cx.store().get_ex(cx.db(), a[1], ttl, cx.now).await?;
    if v.is_some() {
        match ttl {
            TtlChange::At(at) if at <= cx.now => cx.notify(class::GENERIC, "del", a[1]),
            TtlChange::At(_) => cx.notify(class::GENERIC, "expire", a[1]),
            TtlChange::Clear if had_ttl => cx.notify(class::GENERIC, "persist", a[1]),
            _ => {}
        }
    }
    cx.out.bulk_opt(v.as_deref());
    Ok(())
}

pub async fn getdel<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let v = cx.store().get_del(cx.db(), a[1], cx.now).await?;
    if v.is_some() {
        cx.notify(class::GENERIC, "del", a[1]);
    }
    cx.out.bulk_opt(v.as_deref());
    Ok(())
}

pub async fn getset<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let opts = SetOptions {
        get: true,
        ..SetOptions::plain()
    };
    let r = cx.store().set(cx.db(), a[1], a[2], opts, cx.now).await?;
    cx.notify(class::STRING, "set", a[1]);
    cx.out.bulk_opt(r.previous.as_deref());
    Ok(())
}

pub async fn mget<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let vals = cx.store().mget(cx.db(), &a[1..], cx.now).await?;
    cx.out.array(vals.len());
    for v in vals {
        cx.out.bulk_opt(v.as_deref());
    }
    Ok(())
}

pub async fn mset<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], nx: bool) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(wrong_args(if nx { "msetnx" } else { "mset" }));
    }
    let pairs: Vec<(&[u8], &[u8])> = a[1..].chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let ok = cx.store().mset(cx.db(), &pairs, nx, cx.now).await?;
    if ok {
        for (k, _) in &pairs {
            cx.notify(class::STRING, "set", k);
        }
    }
    if nx {
        cx.out.int(ok as i64);
    } else {
        cx.out.ok();
    }
    Ok(())
}

pub async fn append<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let n = cx.store().append(cx.db(), a[1], a[2], cx.now).await?;
    cx.notify(class::STRING, "append", a[1]);
    cx.out.int(n as i64);
    Ok(())
}

pub async fn strlen<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let n = cx.store().strlen(cx.db(), a[1], cx.now).await?;
    cx.out.int(n as i64);
    Ok(())
}

/// INCR/DECR (`fixed` = ±1) and INCRBY (delta from the argument).
pub async fn incr<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    fixed: Option<i64>,
) -> CmdResult {
    let delta = match fixed {
        Some(d) => d,
        None => int(a[2])?,
    };
    let n = cx.store().incr_by(cx.db(), a[1], delta, cx.now).await?;
    cx.notify(class::STRING, "incrby", a[1]);
    cx.out.int(n);
    Ok(())
}

pub async fn decrby<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let d = int(a[2])?;
    if d == i64::MIN {
        return Err(CmdError::msg("ERR decrement would overflow"));
    }
    let n = cx.store().incr_by(cx.db(), a[1], -d, cx.now).await?;
    cx.notify(class::STRING, "incrby", a[1]);
    cx.out.int(n);
    Ok(())
}

/// `INCRBYFLOAT key increment`: long double arithmetic, as Redis (`util/longdouble.rs`). The
/// key keeps its TTL. It runs on the engine's typed API (not a `Store` method), like the
/// commands of the other types.
pub async fn incrbyfloat<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = super::hashes::engine(cx)?;
    let v = e.write(cx.db(), a[1], cx.now, |w| {
        let (cur, expire) = match w.get() {
            None => (LongDouble::ZERO, 0),
            Some(k) => {
                let s = k.string().ok_or(StoreError::WrongType)?;
                let v = LongDouble::parse(&s.bytes())
                    .ok_or_else(|| StoreError::Other("ERR value is not a valid float".into()))?;
                (v, k.expire())
            }
        };
        let incr = LongDouble::parse(a[2])
            .ok_or_else(|| StoreError::Other("ERR value is not a valid float".into()))?;
        let new = cur.checked_add(incr).ok_or_else(|| {
            StoreError::Other("ERR increment would produce NaN or Infinity".into())
        })?;
        let text = new.to_human();
        w.set_string(text.as_bytes(), expire);
        Ok(text)
    })?;
    cx.notify(class::STRING, "incrbyfloat", a[1]);
    cx.out.bulk(v.as_bytes());
    Ok(())
}

/// `SETRANGE key offset value`: zero-padded, as Redis; on the engine's typed API.
pub async fn setrange<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let offset = int(a[2])?;
    if offset < 0 {
        return Err(CmdError::msg("ERR offset is out of range"));
    }
    let offset = offset as u64;
    let value = a[3];
    let max = cx
        .server
        .settings
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed) as u64;
    let too_big = || CmdError::msg("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    let e = super::hashes::engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let cur = e.read(db, a[1], now, |k| match k {
        None => Ok(None),
        Some(k) => k
            .string()
            .map(|s| Some(s.len()))
            .ok_or(StoreError::WrongType),
    })?;
    if value.is_empty() {
        cx.out.int(cur.unwrap_or(0) as i64);
        return Ok(());
    }
    if offset + value.len() as u64 > max {
        return Err(too_big());
    }
    let len = e.write(db, a[1], now, |w| {
        let (old, expire) = match w.get() {
            None => (Vec::new(), 0),
            Some(k) => (
                k.string().ok_or(StoreError::WrongType)?.to_vec(),
                k.expire(),
            ),
        };
        let end = offset as usize + value.len();
        let mut new = old;
        if new.len() < end {
            new.resize(end, 0);
        }
        new[offset as usize..end].copy_from_slice(value);
        w.set_string(&new, expire);
        Ok(new.len())
    })?;
    cx.notify(class::STRING, "setrange", a[1]);
    cx.out.int(len as i64);
    Ok(())
}

/// `GETRANGE key start end` (and `SUBSTR`).
pub async fn getrange<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (mut start, mut end) = (int(a[2])?, int(a[3])?);
    let v = cx.store().get(cx.db(), a[1], cx.now).await?;
    let Some(v) = v else {
        cx.out.bulk(b"");
        return Ok(());
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        cx.out.bulk(b"");
        return Ok(());
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        cx.out.bulk(b"");
    } else {
        cx.out.bulk(&v[start as usize..=end as usize]);
    }
    Ok(())
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: Redis's dynamic programme
/// and its walk back from the end, so the matches come in Redis's order.
pub async fn lcs<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = super::hashes::engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let get = |k: &[u8]| {
        e.read(db, k, now, |r| match r {
            None => Ok(Vec::new()),
            Some(r) => r.string().map(|s| s.to_vec()).ok_or(()),
        })
    };
    let (va, vb) = match (get(a[1]), get(a[2])) {
        (Ok(x), Ok(y)) => (x, y),
        _ => {
            return Err(CmdError::msg(
                "ERR The specified keys must contain string values",
            ))
        }
    };
    let (mut getlen, mut getidx, mut withmatchlen, mut minmatchlen) = (false, false, false, 0i64);
    let mut j = 3;
    while j < a.len() {
        let more = a.len() - j - 1;
        if is(a[j], "idx") {
            getidx = true;
        } else if is(a[j], "len") {
            getlen = true;
        } else if is(a[j], "withmatchlen") {
            withmatchlen = true;
        } else if is(a[j], "minmatchlen") && more > 0 {
            minmatchlen = int(a[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if getidx && getlen {
        return Err(CmdError::msg(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (va.len(), vb.len());
    let max = cx
        .server
        .settings
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed) as u64;
    if ((alen as u64 + 1) * (blen as u64 + 1)) * 4 > max {
        return Err(CmdError::msg(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    // table[i][j]: length of the LCS of a[..i] and b[..j].
    let w = blen + 1;
    let mut t = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for k in 1..=blen {
            t[i * w + k] = if va[i - 1] == vb[k - 1] {
                t[(i - 1) * w + k - 1] + 1
            } else {
                t[(i - 1) * w + k].max(t[i * w + k - 1])
            };
        }
    }
    let idx = t[alen * w + blen] as usize;
    let mut result = vec![0u8; idx];
    // Walk back, collecting ranges of consecutive matches (Redis's walk: a match that does
    // not extend the current range closes it, and is not itself the start of the next).
    // ((start, end) in a, (start, end) in b, length)
    type Match = ((usize, usize), (usize, usize), usize);
    let mut matches: Vec<Match> = Vec::new();
    let (mut i, mut k, mut left) = (alen, blen, idx);
    let (mut arange_start, mut arange_end, mut brange_start, mut brange_end) =
        (alen, 0usize, 0usize, 0usize);
    while i > 0 && k > 0 {
        let mut emit = false;
        if va[i - 1] == vb[k - 1] {
            result[left - 1] = va[i - 1];
            left -= 1;
            if arange_start == alen {
                arange_start = i - 1;
                arange_end = i - 1;
                brange_start = k - 1;
                brange_end = k - 1;
            } else if arange_start == i && brange_start == k {
                arange_start -= 1;
                brange_start -= 1;
            } else {
                emit = true;
            }
            if arange_start == 0 || brange_start == 0 {
                emit = true;
            }
            i -= 1;
            k -= 1;
        } else {
            if t[(i - 1) * w + k] > t[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            if arange_start != alen {
                emit = true;
            }
        }
        if emit {
            let mlen = arange_end - arange_start + 1;
            if minmatchlen == 0 || mlen >= minmatchlen as usize {
                matches.push(((arange_start, arange_end), (brange_start, brange_end), mlen));
            }
            arange_start = alen;
        }
    }
    if getidx {
        cx.out.map(2);
        cx.out.bulk(b"matches");
        cx.out.array(matches.len());
        for ((a0, a1), (b0, b1), mlen) in &matches {
            cx.out.array(if withmatchlen { 3 } else { 2 });
            cx.out.array(2);
            cx.out.int(*a0 as i64);
            cx.out.int(*a1 as i64);
            cx.out.array(2);
            cx.out.int(*b0 as i64);
            cx.out.int(*b1 as i64);
            if withmatchlen {
                cx.out.int(*mlen as i64);
            }
        }
        cx.out.bulk(b"len");
        cx.out.int(idx as i64);
    } else if getlen {
        cx.out.int(idx as i64);
    } else {
        cx.out.bulk(&result);
    }
    Ok(())
}
