//! Hash field expiry (Redis 7.4 and 8.0): HEXPIRE, HPEXPIRE, HEXPIREAT, HPEXPIREAT, HTTL,
//! HPTTL, HEXPIRETIME, HPEXPIRETIME, HPERSIST, HGETEX, HSETEX, HGETDEL.
//!
//! A field's expiry is an absolute time in the engine (`BigHash`), logged as such; expired
//! fields are removed before any command sees the hash (lazy) and by the sweeper, a bounded
//! number per hash per visit (`engine/expire.rs`), each announced as `hexpired`.
//!
//! Replies are compared byte for byte with Redis 8 (`tests/scripts/hash-ttl-8.txt`, run by
//! `tests/differential.rs` against the server `scripts/redis8` fetches), including what is
//! easy to get wrong:
//! - the key is looked up before the arguments are read, so a key of another type answers
//!   WRONGTYPE even to a malformed command (HSETEX alone parses first);
//! - each command has its own text for a bad field count;
//! - expiry times are bounded to 2^46 - 1 ms, a negative one has its own error, and a time
//!   already passed (0 included) deletes the field;
//! - seconds are rounded up (HTTL, HEXPIRETIME), unlike a key's TTL, which is rounded;
//! - a field named twice is handled twice, in order (the second HGETDEL finds it gone).

use super::args::{int, is};
use super::hashes::engine;
use super::{wrong_args, CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::pubsub::class;
use crate::store::StoreError;

/// The latest field expiry Redis accepts (unix ms): 2^46 - 1.
const MAX_FIELD_EXPIRE: i64 = (1 << 46) - 1;

const NUMFIELDS_MISMATCH: &str = "ERR The `numfields` parameter must match the number of arguments";
const FIELDS_MISSING: &str =
    "ERR Mandatory argument FIELDS is missing or not at the right position";

/// How a command words a field count that is not a positive integer.
#[derive(Clone, Copy)]
enum CountError {
    /// HEXPIRE and its kin.
    Expire,
    /// HTTL and its kin, HPERSIST, HGETEX, HGETDEL.
    Plain,
}

/// `FIELDS numfields field …` starting at `a[i]`: the fields.
fn fields<'a, 'b>(
    a: &'b [&'a [u8]],
    i: usize,
    style: CountError,
) -> Result<&'b [&'a [u8]], CmdError> {
    if a.get(i).is_none_or(|w| !is(w, "fields")) {
        return Err(CmdError::msg(FIELDS_MISSING));
    }
    let n = a
        .get(i + 1)
        .and_then(|n| int(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            CmdError::msg(match style {
                CountError::Expire => "ERR Parameter `numFields` should be greater than 0",
                CountError::Plain => "ERR Number of fields must be a positive integer",
            })
        })?;
    let rest = &a[i + 2..];
    if rest.len() as i64 != n {
        return Err(CmdError::msg(NUMFIELDS_MISMATCH));
    }
    Ok(rest)
}

/// A malformed command's error, unless the key holds another type: Redis looks the key up
/// before it reads the arguments, so that answers WRONGTYPE first. Only on the error path,
/// so a well-formed command pays no second lookup.
fn type_first<S: Deployment>(cx: &Ctx<'_, '_, S>, key: &[u8], err: CmdError) -> CmdError {
    let Ok(e) = engine(cx) else { return err };
    let checked = e.read(cx.client.db, key, cx.now, |k| match k {
        Some(k) => k.hash_or_wrongtype().map(|_| ()),
        None => Ok(()),
    });
    match checked {
        Err(wrongtype) => wrongtype.into(),
        Ok(()) => err,
    }
}

/// An expiry time argument: `n` in `ms_per` units, from now unless `absolute`, as unix ms.
fn expire_time(
    arg: &[u8],
    ms_per: i64,
    absolute: bool,
    now: i64,
    name: &str,
) -> Result<i64, CmdError> {
    let n = int(arg)?;
    if n < 0 {
        return Err(CmdError::msg("ERR invalid expire time, must be >= 0"));
    }
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    let mut at = n.checked_mul(ms_per).ok_or_else(invalid)?;
    if !absolute {
        at = at.checked_add(now).ok_or_else(invalid)?;
    }
    if at > MAX_FIELD_EXPIRE {
        return Err(invalid());
    }
    Ok(at)
}

/// How a command's time argument is read.
#[derive(Clone, Copy)]
pub enum Unit {
    Seconds,
    Millis,
}

/// `HEXPIRE|HPEXPIRE|HEXPIREAT|HPEXPIREAT key time [NX|XX|GT|LT] FIELDS n field …`: per
/// field -2 (no such field), 0 (condition not met), 1 (set), 2 (deleted: the time has come).
pub async fn hexpire<S: Deployment>(
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
    let ms_per = match unit {
        Unit::Seconds => 1000,
        Unit::Millis => 1,
    };
    let parsed = expire_time(a[2], ms_per, absolute, cx.now, name).and_then(|when| {
        let (cond, at_fields) = match a.get(3) {
            Some(w) if is(w, "nx") || is(w, "xx") || is(w, "gt") || is(w, "lt") => {
                (Some(w.to_ascii_lowercase()), 4)
            }
            _ => (None, 3),
        };
        Ok((when, cond, fields(a, at_fields, CountError::Expire)?))
    });
    let (when, cond, fs) = parsed.map_err(|e| type_first(cx, a[1], e))?;
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
/// -1 (no expiry), or the time; seconds rounded up, as Redis does for fields.
pub async fn httl<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], form: TtlForm) -> CmdResult {
    let fs = fields(a, 2, CountError::Plain).map_err(|e| type_first(cx, a[1], e))?;
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
                            TtlForm::Seconds => (left + 999) / 1000,
                            TtlForm::Millis => left,
                            TtlForm::UnixSeconds => (at + 999) / 1000,
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
pub async fn hpersist<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let fs = fields(a, 2, CountError::Plain).map_err(|e| type_first(cx, a[1], e))?;
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

/// What HGETEX or HSETEX does to the fields' expiry.
#[derive(Clone, Copy)]
enum Expiry {
    /// Expire at this unix ms time; one already passed (0 included) deletes the field.
    At(i64),
    /// HGETEX's PERSIST: remove it.
    Persist,
    /// HSETEX's KEEPTTL: keep each field's.
    KeepTtl,
}

/// The expiry option at `a[i]` (`EX s|PX ms|EXAT t|PXAT t`, and PERSIST for HGETEX or
/// KEEPTTL for HSETEX): how many arguments it took and what it asks; None if `a[i]` is not one.
fn expiry_option(
    a: &[&[u8]],
    i: usize,
    now: i64,
    name: &str,
) -> Result<Option<(usize, Expiry)>, CmdError> {
    let Some(w) = a.get(i) else { return Ok(None) };
    let timed = |ms_per: i64, absolute: bool| -> Result<(usize, Expiry), CmdError> {
        let n = a.get(i + 1).ok_or_else(|| wrong_args(name))?;
        Ok((2, Expiry::At(expire_time(n, ms_per, absolute, now, name)?)))
    };
    Ok(Some(if is(w, "ex") {
        timed(1000, false)?
    } else if is(w, "px") {
        timed(1, false)?
    } else if is(w, "exat") {
        timed(1000, true)?
    } else if is(w, "pxat") {
        timed(1, true)?
    } else if is(w, "persist") && name == "hgetex" {
        (1, Expiry::Persist)
    } else if is(w, "keepttl") && name == "hsetex" {
        (1, Expiry::KeepTtl)
    } else {
        return Ok(None);
    }))
}

/// `HGETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST] FIELDS n field …`: the values, after
/// setting (or removing) the fields' expiry; a time already passed deletes them. Fields are
/// handled in order, so one named twice after it expired reads as nil.
pub async fn hgetex<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let now = cx.now;
    let parsed = expiry_option(a, 2, now, "hgetex").and_then(|opt| {
        let (skip, ttl) = opt.map_or((0, None), |(n, t)| (n, Some(t)));
        // Too few arguments left for FIELDS n field: an arity error.
        if 2 + skip + 1 >= a.len() {
            return Err(wrong_args("hgetex"));
        }
        Ok((ttl, fields(a, 2 + skip, CountError::Plain)?))
    });
    let (ttl, fs) = parsed.map_err(|e| type_first(cx, a[1], e))?;
    let e = engine(cx)?;
    let (values, changed, gone) = e.write(cx.db(), a[1], now, |w| {
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(fs.len());
        let mut changed = false;
        for f in fs {
            let (v, had_ttl) = match w.hash()? {
                None => (None, false),
                Some(h) => (h.get(f).map(<[u8]>::to_vec), h.field_expire(f).is_some()),
            };
            if v.is_some() {
                match ttl {
                    None | Some(Expiry::KeepTtl) => {}
                    Some(Expiry::At(at)) if at <= now => changed |= w.hdel(f),
                    Some(Expiry::At(at)) => changed |= w.hexpire(f, at),
                    Some(Expiry::Persist) if had_ttl => changed |= w.hexpire(f, 0),
                    Some(Expiry::Persist) => {}
                }
            }
            values.push(v);
        }
        Ok((values, changed, w.get().is_none()))
    })?;
    if changed {
        cx.notify(
            class::HASH,
            match ttl {
                Some(Expiry::Persist) => "hpersist",
                Some(Expiry::At(at)) if at <= now => "hexpired",
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

/// HSETEX's arguments, read before the key is looked up (unlike the other commands here).
struct HsetexArgs<'b, 'a> {
    /// FNX (true) or FXX (false).
    only: Option<bool>,
    ttl: Option<Expiry>,
    /// Field, value pairs.
    pairs: &'b [&'a [u8]],
}

fn hsetex_args<'a, 'b>(a: &'b [&'a [u8]], now: i64) -> Result<HsetexArgs<'b, 'a>, CmdError> {
    let mut i = 2;
    let mut only = None;
    let mut ttl = None;
    while let Some(w) = a.get(i) {
        if is(w, "fields") {
            break;
        }
        if is(w, "fnx") || is(w, "fxx") {
            if only.is_some() {
                return Err(CmdError::msg(
                    "ERR Only one of FXX or FNX arguments can be specified",
                ));
            }
            only = Some(is(w, "fnx"));
            i += 1;
            continue;
        }
        match expiry_option(a, i, now, "hsetex")? {
            Some(_) if ttl.is_some() => {
                return Err(CmdError::msg(
                    "ERR Only one of EX, PX, EXAT, PXAT or KEEPTTL arguments can be specified",
                ))
            }
            Some((n, t)) => {
                ttl = Some(t);
                i += n;
            }
            None => {
                return Err(CmdError::msg(format!(
                    "ERR unknown argument: {}",
                    String::from_utf8_lossy(w)
                )))
            }
        }
    }
    if a.get(i).is_none() {
        return Err(CmdError::msg(FIELDS_MISSING));
    }
    let n = a
        .get(i + 1)
        .ok_or_else(|| wrong_args("hsetex"))
        .and_then(|n| {
            int(n)
                .ok()
                .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
                .ok_or_else(|| CmdError::msg("ERR invalid number of fields"))
        })?;
    let rest = &a[i + 2..];
    if rest.len() as i64 != 2 * n {
        return Err(wrong_args("hsetex"));
    }
    Ok(HsetexArgs {
        only,
        ttl,
        pairs: rest,
    })
}

/// `HSETEX key [FNX|FXX] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL] FIELDS n field value …`: 1 if
/// the fields were set, 0 if FNX/FXX stopped it. Without KEEPTTL the fields' old expiry goes.
pub async fn hsetex<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let now = cx.now;
    let HsetexArgs {
        only,
        ttl,
        pairs: rest,
    } = hsetex_args(a, now)?;
    let e = engine(cx)?;
    let set = e.write(cx.db(), a[1], now, |w| {
        let h = w.hash()?;
        let existing: Vec<Option<Option<i64>>> = rest
            .chunks_exact(2)
            .map(|fv| h.and_then(|h| h.get(fv[0]).map(|_| h.field_expire(fv[0]))))
            .collect();
        let present = existing.iter().filter(|x| x.is_some()).count();
        match only {
            Some(true) if present > 0 => return Ok(false),
            Some(false) if present < existing.len() => return Ok(false),
            _ => {}
        }
        for (fv, old) in rest.chunks_exact(2).zip(&existing) {
            // HSET clears the field's expiry; what the option asks comes after.
            w.hset(fv[0], fv[1]);
            match ttl {
                Some(Expiry::At(at)) if at <= now => {
                    w.hdel(fv[0]);
                }
                Some(Expiry::At(at)) => {
                    w.hexpire(fv[0], at);
                }
                Some(Expiry::KeepTtl) => {
                    if let Some(Some(t)) = old {
                        w.hexpire(fv[0], *t);
                    }
                }
                None | Some(Expiry::Persist) => {}
            }
        }
        Ok(true)
    })?;
    if set {
        cx.notify(class::HASH, "hset", a[1]);
        if matches!(ttl, Some(Expiry::At(_))) {
            cx.notify(class::HASH, "hexpire", a[1]);
        }
    }
    cx.out.int(set as i64);
    Ok(())
}

/// `HGETDEL key FIELDS n field …`: the values, and the fields deleted, in order (a field
/// named twice reads as nil the second time).
pub async fn hgetdel<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let fs = fields(a, 2, CountError::Plain).map_err(|e| type_first(cx, a[1], e))?;
    let e = engine(cx)?;
    let (values, gone) = e.write(cx.db(), a[1], cx.now, |w| {
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(fs.len());
        for f in fs {
            let v = w.hash()?.and_then(|h| h.get(f).map(<[u8]>::to_vec));
            if v.is_some() {
                w.hdel(f);
            }
            values.push(v);
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
