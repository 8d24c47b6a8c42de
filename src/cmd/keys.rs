//! Generic key commands: DEL/UNLINK, EXISTS, TYPE, RENAME(NX), SCAN, KEYS, RANDOMKEY.

use super::args::{int, is};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::store::{ScanFilter, StoreError};

pub async fn del<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let server = cx.server;
    if let (true, Some(e)) = (
        cx.notifying(crate::pubsub::class::GENERIC),
        server.store.engine(),
    ) {
        // Which keys went, for their `del` events: the same atomic DEL, key by key.
        let (db, now) = (cx.db(), cx.now);
        let keys = &a[1..];
        let gone: Vec<bool> = e.with_keys(keys, || {
            keys.iter()
                .map(|k| e.write(db, k, now, |w| Ok(w.del())).unwrap_or(false))
                .collect()
        });
        for (k, g) in keys.iter().zip(&gone) {
            if *g {
                cx.notify(crate::pubsub::class::GENERIC, "del", k);
            }
        }
        cx.out.int(gone.iter().filter(|g| **g).count() as i64);
        return Ok(());
    }
    let n = cx.store().del(cx.db(), &a[1..], cx.now).await?;
    cx.out.int(n as i64);
    Ok(())
}

pub async fn exists<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let n = cx.store().exists(cx.db(), &a[1..], cx.now).await?;
    cx.out.int(n as i64);
    Ok(())
}

pub async fn key_type<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let t = cx.store().key_type(cx.db(), a[1], cx.now).await?;
    cx.out.simple(t.as_ref().map_or("none", |t| t.name()));
    Ok(())
}

pub async fn rename<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], nx: bool) -> CmdResult {
    let r = cx.store().rename(cx.db(), a[1], a[2], nx, cx.now).await;
    if r == Ok(true) {
        cx.notify(crate::pubsub::class::GENERIC, "rename_from", a[1]);
        cx.notify(crate::pubsub::class::GENERIC, "rename_to", a[2]);
        super::blocking::signal(cx, a[2]);
    }
    match r {
        Ok(done) if nx => cx.out.int(done as i64),
        Ok(_) => cx.out.ok(),
        Err(StoreError::NoSuchKey) => return Err(CmdError::msg("ERR no such key")),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
pub async fn scan<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let cursor = parse_cursor(a[1]).ok_or_else(|| CmdError::msg("ERR invalid cursor"))?;
    let mut filter = ScanFilter {
        count: 10,
        ..Default::default()
    };
    let mut i = 2;
    while i < a.len() {
        let has_next = i + 1 < a.len();
        if is(a[i], "count") && has_next {
            let n = int(a[i + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            filter.count = n.min(1 << 30) as usize;
        } else if is(a[i], "match") && has_next {
            let p = a[i + 1];
            // "*" matches everything: skip the matcher, as Redis does.
            filter.pattern = if p == b"*" { None } else { Some(p.to_vec()) };
        } else if is(a[i], "type") && has_next {
            filter.key_type = Some(a[i + 1].to_vec());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let (next, keys) = cx.store().scan(cx.db(), cursor, &filter, cx.now).await?;
    cx.out.array(2);
    cx.out.bulk(next.to_string().as_bytes());
    cx.out.array(keys.len());
    for k in keys {
        cx.out.bulk(&k);
    }
    Ok(())
}

/// A SCAN cursor exactly as Redis reads it with `strtoul`: optional sign (a negative number
/// wraps around), decimal digits, nothing else; an empty string is cursor 0.
pub fn parse_cursor(s: &[u8]) -> Option<u64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return if s.is_empty() { Some(0) } else { None };
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

pub async fn keys<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let keys = cx.store().keys(cx.db(), a[1], cx.now).await?;
    cx.out.array(keys.len());
    for k in keys {
        cx.out.bulk(&k);
    }
    Ok(())
}

pub async fn randomkey<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let k = cx.store().random_key(cx.db(), cx.now).await?;
    cx.out.bulk_opt(k.as_deref());
    Ok(())
}

fn db_index<S: Deployment>(cx: &Ctx<'_, '_, S>, a: &[u8]) -> Result<usize, CmdError> {
    let n = int(a)?;
    if n < 0 || n as usize >= cx.store().databases() {
        return Err(CmdError::msg("ERR DB index is out of range"));
    }
    Ok(n as usize)
}

/// `COPY source destination [DB destination-db] [REPLACE]`.
pub async fn copy<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let mut dst_db = cx.db();
    let mut replace = false;
    let mut j = 3;
    while j < a.len() {
        if is(a[j], "replace") {
            replace = true;
        } else if is(a[j], "db") && j + 1 < a.len() {
            dst_db = db_index(cx, a[j + 1])?;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if a[1] == a[2] && dst_db == cx.db() {
        return Err(CmdError::msg(
            "ERR source and destination objects are the same",
        ));
    }
    let e = super::hashes::engine(cx)?;
    let done = e.copy_key(cx.db(), a[1], dst_db, a[2], replace, cx.now);
    if done {
        let n = &cx.server.notifier;
        if n.wants(crate::pubsub::class::GENERIC) {
            n.notify(crate::pubsub::class::GENERIC, "copy_to", a[2], dst_db);
        }
        if dst_db == cx.db() {
            super::blocking::signal(cx, a[2]);
        }
    }
    cx.out.int(done as i64);
    Ok(())
}

/// `MOVE key db`.
pub async fn move_key<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let to = db_index(cx, a[2])?;
    if to == cx.db() {
        return Err(CmdError::msg(
            "ERR source and destination objects are the same",
        ));
    }
    let e = super::hashes::engine(cx)?;
    let done = e.move_key(cx.db(), a[1], to, cx.now);
    if done {
        cx.notify(crate::pubsub::class::GENERIC, "move_from", a[1]);
        let n = &cx.server.notifier;
        if n.wants(crate::pubsub::class::GENERIC) {
            n.notify(crate::pubsub::class::GENERIC, "move_to", a[1], to);
        }
    }
    cx.out.int(done as i64);
    Ok(())
}

/// `TOUCH key [key …]`: how many exist (each read refreshes its LRU clock).
pub async fn touch<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = super::hashes::engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    let n = a[1..]
        .iter()
        .filter(|k| e.read(db, k, now, |r| r.is_some()))
        .count();
    cx.out.int(n as i64);
    Ok(())
}

/// `DUMP key`: the value in Redis's serialization format (`util/rdb.rs`), or nil.
pub async fn dump<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let e = super::hashes::engine(cx)?;
    let payload = e.read(cx.db(), a[1], cx.now, |k| k.map(|k| k.to_rdb()));
    match payload {
        None => cx.out.null(),
        Some(Ok(v)) => cx.out.bulk(&crate::util::rdb::dump(&v)),
        Some(Err(msg)) => return Err(CmdError::msg(msg)),
    }
    Ok(())
}

/// `RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]`,
/// checks in Redis's order.
pub async fn restore<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None::<i64>, None::<i64>);
    let mut j = 4;
    while j < a.len() {
        let more = a.len() - j - 1;
        if is(a[j], "replace") {
            replace = true;
        } else if is(a[j], "absttl") {
            absttl = true;
        } else if is(a[j], "idletime") && more >= 1 && freq.is_none() {
            let v = int(a[j + 1])?;
            if v < 0 {
                return Err(CmdError::msg("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v);
            j += 1;
        } else if is(a[j], "freq") && more >= 1 && idle.is_none() {
            let v = int(a[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err(CmdError::msg(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(v);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let e = super::hashes::engine(cx)?;
    let (db, now) = (cx.db(), cx.now);
    if !replace && e.read(db, a[1], now, |k| k.is_some()) {
        return Err(CmdError::msg("BUSYKEY Target key name already exists."));
    }
    let ttl = int(a[2])?;
    if ttl < 0 {
        return Err(CmdError::msg("ERR Invalid TTL value, must be >= 0"));
    }
    let value = crate::util::rdb::restore(a[3]).map_err(|e| CmdError::msg(e.message()))?;
    let at = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t,
        (t, false) => t.saturating_add(now),
    };
    let idle = idle.map(|i| i.clamp(0, i64::from(u32::MAX)) as u32);
    let (stored, deleted) = e.write(db, a[1], now, |w| {
        if at != 0 && at <= now {
            // Already expired: the key is only deleted (with REPLACE), as Redis does.
            return Ok((false, replace && w.del()));
        }
        if w.store_rdb(&value, at, idle) {
            Ok((true, false))
        } else {
            Err(StoreError::Other("ERR Bad data format".into()))
        }
    })?;
    if stored {
        cx.notify(crate::pubsub::class::GENERIC, "restore", a[1]);
        super::blocking::signal(cx, a[1]);
    } else if deleted {
        cx.notify(crate::pubsub::class::GENERIC, "del", a[1]);
    }
    cx.out.ok();
    Ok(())
}
