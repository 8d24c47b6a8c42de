//! Hash field expiry (Redis 7.4 and 8.0): HEXPIRE, HPEXPIRE, HEXPIREAT, HPEXPIREAT, HTTL,
//! HPTTL, HEXPIRETIME, HPEXPIRETIME, HPERSIST, HGETEX, HSETEX, HGETDEL.
//!
//! A field's expiry is an absolute time in the engine (`BigHash`), logged as such; expired
//! fields are removed before any command sees the hash (lazy) and by the sweeper, a bounded
//! number per hash per visit (`engine/expire.rs`), each announced as `hexpired`. The oracle of
//! the differential tests (redis-server 7.0) has none of these commands; their replies follow
//! Redis's documentation and are checked in `tests/engine_hash_ttl.rs`.

use super::args::{int, is};
use super::hashes::engine;
use super::{CmdError, CmdResult, Ctx};
use crate::pubsub::class;
use crate::store::{Store, StoreError};

/// `FIELDS numfields field …` starting at `a[i]`: the fields.
fn fields<'a, 'b>(a: &'b [&'a [u8]], i: usize) -> Result<&'b [&'a [u8]], CmdError> {
    if a.get(i).is_none_or(|w| !is(w, "fields")) {
        return Err(CmdError::msg(
            "ERR Mandatory argument FIELDS is missing or not at the right position",
        ));
    }
    let n = a
        .get(i + 1)
        .map(|n| int(n))
        .transpose()?
        .ok_or(CmdError::Syntax)?;
    if n <= 0 {
        return Err(CmdError::msg(
            "ERR Parameter `numFields` should be greater than 0",
        ));
    }
    let rest = &a[i + 2..];
    if rest.len() != n as usize {
        return Err(CmdError::msg(
            "ERR The `numfields` parameter must match the number of arguments",
        ));
    }
    Ok(rest)
}

/// How a command's time argument is read.
#[derive(Clone, Copy)]
pub enum Unit {
    Seconds,
    Millis,
}

/// `HEXPIRE|HPEXPIRE|HEXPIREAT|HPEXPIREAT key time [NX|XX|GT|LT] FIELDS n field …`: per
/// field -2 (no such field), 0 (condition not met), 1 (set), 2 (deleted: the time has come).
pub async fn hexpire<S: Store>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    unit: Unit,
    absolute: bool,
) -> CmdResult {
    let name = match (unit, absolute) {
        (Unit::Seconds, false) => "hexpire",
        (Unit::Millis, false) => "hpexpire",
        (Unit::Seconds, true) => "hexpireat",
        (Unit::Millis, true) => "hpexpireat",
    };
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    let mut when = int(a[2])?;
    if when < 0 {
        return Err(invalid());
    }
    if matches!(unit, Unit::Seconds) {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    if !absolute {
        when = when.checked_add(cx.now).ok_or_else(invalid)?;
    }
    // Redis bounds field expiry times to 2^48 ms.
    if when > (1i64 << 48) {
        return Err(invalid());
    }
    let (cond, at_fields) = match a.get(3) {
        Some(w) if is(w, "nx") || is(w, "xx") || is(w, "gt") || is(w, "lt") => {
            (Some(w.to_ascii_lowercase()), 4)
        }
        _ => (None, 3),
    };
    let fs = fields(a, at_fields)?;
    let e = engine(cx)?;
    let now = cx.now;
    let (results, gone) = e.write(cx.db(), a[1], now, |w| {
        if w.hash()?.is_none() {
            return Ok((vec![-2i64; fs.len()], false));
        }
        let mut out = Vec::with_capacity(fs.len());
        for f in fs {
            // Each field as the ones before it left the hash (a field named twice).
            let cur = w.hash()?.and_then(|h| h.get(f).map(|_| h.field_expire(f)));
            let Some(cur) = cur else {
                out.push(-2);
                continue;
            };
            let ok = match cond.as_deref() {
                None => true,
                Some(b"nx") => cur.is_none(),
                Some(b"xx") => cur.is_some(),
                Some(b"gt") => cur.is_some_and(|c| when > c),
                _ => cur.is_none_or(|c| when < c),
            };
            if !ok {
                out.push(0);
            } else if when <= now {
                w.hdel(f);
                out.push(2);
            } else {
                w.hexpire(f, when);
                out.push(1);
            }
            if w.get().is_none() {
                // The last field went: the others are gone with the key.
                out.extend(std::iter::repeat_n(-2, fs.len() - out.len()));
                break;
            }
        }
        Ok((out, w.get().is_none()))
    })?;
    if results.contains(&1) {
        cx.notify(class::HASH, "hexpire", a[1]);
    }
    if results.contains(&2) {
        cx.notify(class::HASH, "hexpired", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.array(results.len());
    for r in results {
        cx.out.int(r);
    }
    Ok(())
}

/// What HTTL and its kin report.
#[derive(Clone, Copy)]
pub enum TtlForm {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

/// `HTTL|HPTTL|HEXPIRETIME|HPEXPIRETIME key FIELDS n field …`: per field -2 (no such field),
/// -1 (no expiry), or the time.
pub async fn httl<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], form: TtlForm) -> CmdResult {
    let fs = fields(a, 2)?;
    let e = engine(cx)?;
    let now = cx.now;
    let out = &mut *cx.out;
    e.read(cx.client.db, a[1], now, |k| {
        let h = match k {
            None => None,
            Some(k) => Some(k.hash_or_wrongtype()?),
        };
        out.array(fs.len());
        for f in fs {
            let v = match h.filter(|h| h.get(f).is_some()) {
                None => -2,
                Some(h) => match h.field_expire(f) {
                    None => -1,
                    Some(at) => {
                        let left = (at - now).max(0);
                        match form {
                            TtlForm::Seconds => (left + 500) / 1000,
                            TtlForm::Millis => left,
                            TtlForm::UnixSeconds => at / 1000,
                            TtlForm::UnixMillis => at,
                        }
                    }
                },
            };
            out.int(v);
        }
        Ok::<(), StoreError>(())
    })?;
    Ok(())
}

/// `HPERSIST key FIELDS n field …`: per field -2 (no such field), -1 (no expiry), 1 (removed).
pub async fn hpersist<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let fs = fields(a, 2)?;
    let e = engine(cx)?;
    let results = e.write(cx.db(), a[1], cx.now, |w| {
        if w.hash()?.is_none() {
            return Ok(vec![-2i64; fs.len()]);
        }
        let mut out = Vec::with_capacity(fs.len());
        for f in fs {
            let cur = w.hash()?.and_then(|h| h.get(f).map(|_| h.field_expire(f)));
            out.push(match cur {
                None => -2,
                Some(None) => -1,
                Some(Some(_)) => {
                    w.hexpire(f, 0);
                    1
                }
            });
        }
        Ok(out)
    })?;
    if results.contains(&1) {
        cx.notify(class::HASH, "hpersist", a[1]);
    }
    cx.out.array(results.len());
    for r in results {
        cx.out.int(r);
    }
    Ok(())
}

/// An expiry option of HGETEX/HSETEX: an absolute time, PERSIST (0), or KEEPTTL (None).
fn expiry_option<S: Store>(
    cx: &Ctx<'_, '_, S>,
    a: &[&[u8]],
    i: usize,
    name: &str,
) -> Result<Option<(usize, Option<i64>)>, CmdError> {
    let Some(w) = a.get(i) else { return Ok(None) };
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    let timed = |ms_per: i64, absolute: bool| -> Result<i64, CmdError> {
        let n = int(a.get(i + 1).ok_or(CmdError::Syntax)?)?;
        if n <= 0 {
            return Err(invalid());
        }
        let mut at = n.checked_mul(ms_per).ok_or_else(invalid)?;
        if !absolute {
            at = at.checked_add(cx.now).ok_or_else(invalid)?;
        }
        Ok(at)
    };
    Ok(Some(if is(w, "ex") {
        (2, Some(timed(1000, false)?))
    } else if is(w, "px") {
        (2, Some(timed(1, false)?))
    } else if is(w, "exat") {
        (2, Some(timed(1000, true)?))
    } else if is(w, "pxat") {
        (2, Some(timed(1, true)?))
    } else if is(w, "persist") && name == "hgetex" {
        (1, Some(0))
    } else if is(w, "keepttl") && name == "hsetex" {
        (1, None)
    } else {
        return Ok(None);
    }))
}

/// `HGETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST] FIELDS n field …`: the values, after
/// setting (or removing) the fields' expiry; a time already passed deletes them.
pub async fn hgetex<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (skip, ttl) = match expiry_option(cx, a, 2, "hgetex")? {
        Some((n, t)) => (n, t),
        None => (0, None),
    };
    let fs = fields(a, 2 + skip)?;
    let e = engine(cx)?;
    let now = cx.now;
    let (values, changed, gone) = e.write(cx.db(), a[1], now, |w| {
        let Some(h) = w.hash()? else {
            return Ok((vec![None; fs.len()], false, false));
        };
        let values: Vec<Option<Vec<u8>>> =
            fs.iter().map(|f| h.get(f).map(<[u8]>::to_vec)).collect();
        let mut changed = false;
        if let Some(at) = ttl {
            for (f, v) in fs.iter().zip(&values) {
                if v.is_none() || w.get().is_none() {
                    continue;
                }
                if at != 0 && at <= now {
                    changed |= w.hdel(f);
                } else {
                    changed |= w.hexpire(f, at);
                }
            }
        }
        Ok((values, changed, w.get().is_none()))
    })?;
    if changed {
        cx.notify(
            class::HASH,
            match ttl {
                Some(0) => "hpersist",
                Some(at) if at <= now => "hexpired",
                _ => "hexpire",
            },
            a[1],
        );
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.array(values.len());
    for v in &values {
        cx.out.bulk_opt(v.as_deref());
    }
    Ok(())
}

/// `HSETEX key [FNX|FXX] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL] FIELDS n field value …`: 1 if
/// the fields were set, 0 if FNX/FXX stopped it. Without KEEPTTL the fields' old expiry goes.
pub async fn hsetex<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let mut i = 2;
    let mut only = None;
    let mut ttl: Option<Option<i64>> = None; // None: no option (clear); Some(None): KEEPTTL
    loop {
        match a.get(i) {
            Some(w) if only.is_none() && (is(w, "fnx") || is(w, "fxx")) => {
                only = Some(is(w, "fnx"));
                i += 1;
            }
            _ => match expiry_option(cx, a, i, "hsetex")? {
                Some((n, t)) if ttl.is_none() => {
                    ttl = Some(t);
                    i += n;
                }
                _ => break,
            },
        }
    }
    if a.get(i).is_none_or(|w| !is(w, "fields")) {
        return Err(CmdError::msg(
            "ERR Mandatory argument FIELDS is missing or not at the right position",
        ));
    }
    let n = int(a.get(i + 1).ok_or(CmdError::Syntax)?)?;
    if n <= 0 {
        return Err(CmdError::msg(
            "ERR Parameter `numFields` should be greater than 0",
        ));
    }
    let rest = &a[i + 2..];
    if rest.len() != 2 * n as usize {
        return Err(CmdError::msg(
            "ERR The `numfields` parameter must match the number of arguments",
        ));
    }
    let e = engine(cx)?;
    let now = cx.now;
    let set = e.write(cx.db(), a[1], now, |w| {
        let h = w.hash()?;
        let existing: Vec<Option<i64>> = rest
            .chunks_exact(2)
            .map(|fv| h.and_then(|h| h.get(fv[0]).map(|_| h.field_expire(fv[0]).unwrap_or(0))))
            .map(|x| x.map(|t| t.max(0)))
            .collect();
        let present = existing.iter().filter(|x| x.is_some()).count();
        match only {
            Some(true) if present > 0 => return Ok(false),
            Some(false) if present < existing.len() => return Ok(false),
            _ => {}
        }
        for (fv, old) in rest.chunks_exact(2).zip(&existing) {
            w.hset(fv[0], fv[1]);
            match ttl {
                Some(Some(at)) if at <= now => {
                    w.hdel(fv[0]);
                }
                Some(Some(at)) => {
                    w.hexpire(fv[0], at);
                }
                Some(None) => {
                    if let Some(t) = old.filter(|t| *t > 0) {
                        w.hexpire(fv[0], t);
                    }
                }
                None => {}
            }
        }
        Ok(true)
    })?;
    if set {
        cx.notify(class::HASH, "hset", a[1]);
        if matches!(ttl, Some(Some(_))) {
            cx.notify(class::HASH, "hexpire", a[1]);
        }
    }
    cx.out.int(set as i64);
    Ok(())
}

/// `HGETDEL key FIELDS n field …`: the values, and the fields deleted.
pub async fn hgetdel<S: Store>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let fs = fields(a, 2)?;
    let e = engine(cx)?;
    let (values, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        let Some(h) = w.hash()? else {
            return Ok((vec![None; fs.len()], false));
        };
        let values: Vec<Option<Vec<u8>>> =
            fs.iter().map(|f| h.get(f).map(<[u8]>::to_vec)).collect();
        for (f, v) in fs.iter().zip(&values) {
            if v.is_some() && w.get().is_some() {
                w.hdel(f);
            }
        }
        Ok((values, w.get().is_none()))
    })?;
    if values.iter().any(Option::is_some) {
        cx.notify(class::HASH, "hdel", a[1]);
        if gone {
            cx.notify(class::GENERIC, "del", a[1]);
        }
    }
    cx.out.array(values.len());
    for v in &values {
        cx.out.bulk_opt(v.as_deref());
    }
    Ok(())
}
