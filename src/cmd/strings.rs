//! String commands: GET, SET and its variants, MGET/MSET, APPEND, STRLEN, INCR/DECR.

use super::args::{int, is};
use super::{wrong_args, CmdError, CmdResult, Ctx};
use crate::pubsub::class;
use crate::store::{SetCondition, SetOptions, Store, StoreError, TtlChange};
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

pub async fn get<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let v = cx.store().get(cx.db(), a[1], cx.now).await?;
    cx.out.bulk_opt(v.as_deref());
    Ok(())
}

pub async fn set<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
pub async fn setex<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], unit: i64) -> CmdResult {
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

pub async fn setnx<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

pub async fn getex<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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

pub async fn getdel<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let v = cx.store().get_del(cx.db(), a[1], cx.now).await?;
    if v.is_some() {
        cx.notify(class::GENERIC, "del", a[1]);
    }
    cx.out.bulk_opt(v.as_deref());
    Ok(())
}

pub async fn getset<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let opts = SetOptions {
        get: true,
        ..SetOptions::plain()
    };
    let r = cx.store().set(cx.db(), a[1], a[2], opts, cx.now).await?;
    cx.notify(class::STRING, "set", a[1]);
    cx.out.bulk_opt(r.previous.as_deref());
    Ok(())
}

pub async fn mget<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let vals = cx.store().mget(cx.db(), &a[1..], cx.now).await?;
    cx.out.array(vals.len());
    for v in vals {
        cx.out.bulk_opt(v.as_deref());
    }
    Ok(())
}

pub async fn mset<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], nx: bool) -> CmdResult {
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

pub async fn append<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let n = cx.store().append(cx.db(), a[1], a[2], cx.now).await?;
    cx.notify(class::STRING, "append", a[1]);
    cx.out.int(n as i64);
    Ok(())
}

pub async fn strlen<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let n = cx.store().strlen(cx.db(), a[1], cx.now).await?;
    cx.out.int(n as i64);
    Ok(())
}

/// INCR/DECR (`fixed` = ±1) and INCRBY (delta from the argument).
pub async fn incr<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], fixed: Option<i64>) -> CmdResult {
    let delta = match fixed {
        Some(d) => d,
        None => int(a[2])?,
    };
    let n = cx.store().incr_by(cx.db(), a[1], delta, cx.now).await?;
    cx.notify(class::STRING, "incrby", a[1]);
    cx.out.int(n);
    Ok(())
}

pub async fn decrby<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
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
pub async fn incrbyfloat<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = super::hashes::engine(cx)?;
    let v = e.write(cx.db(), a[1], cx.now, |w| {
        let (cur, expire) = match w.get() {
            None => (LongDouble::ZERO, 0),
            Some(k) => {
                let s = k.string().ok_or(StoreError::WrongType)?;
                let v = LongDouble::parse(s)
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
