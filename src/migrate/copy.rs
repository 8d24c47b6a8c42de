//! Copying one key of any type between Redis-protocol stores, and reading what it holds:
//! what the router's mirror and copy-forward (`typed.rs`) and `migrate backfill`/`verify`
//! (`backfill/`) share.
//!
//! A copy is `DUMP` and `PEXPIRETIME` on the source (sent together), then `RESTORE key
//! <expiry> payload ABSTTL` on the target: Redis's own serialization, so every type and
//! encoding the two servers know travels, and an absolute expiry, so the copy dies when the
//! original does however long the copy took. `REPLACE` only where the target must become the
//! source (a mirror); a copy that must never overwrite a newer value (backfill, copy-forward)
//! leaves it out and takes `BUSYKEY` as "written meanwhile".
//!
//! Two servers encode the same value differently (the embedded engine writes the plain
//! forms, Redis its listpacks), so payloads are never compared: [`content`] reads a key's
//! type, its elements (sorted where Redis leaves the order undefined) and its expiry.

use std::sync::Arc;

use bytes::Bytes;

use super::command::{Call, CommandStore};
use crate::resp::value::{decode, Value};
use crate::server::clients::ClientHandle;
use crate::store::{Db, StoreError, StoreResult};

/// Who a copy's commands are sent as, and in which database.
pub type At<'a> = (&'a Arc<ClientHandle>, Db);

/// One command of sessiond's own on `s`; an error reply becomes an error.
pub async fn own<S: CommandStore>(
    s: &S,
    at: At<'_>,
    args: &[&[u8]],
    write: bool,
) -> StoreResult<Value> {
    let call = Call {
        client: at.0,
        db: at.1,
        key: args.get(1).copied(),
        args,
        write,
        resp3: false,
    };
    let (f, _) = s.command(call).await?;
    match decode(&f, u64::MAX) {
        Ok(Some((Value::Error(e), _))) => Err(StoreError::Other(e)),
        Ok(Some((v, _))) => Ok(v),
        _ => Err(StoreError::Other("ERR malformed reply".into())),
    }
}

fn int(v: StoreResult<Value>, what: &str) -> StoreResult<i64> {
    match v? {
        Value::Int(i) => Ok(i),
        v => Err(StoreError::Other(format!(
            "ERR unexpected {what} reply: {v:?}"
        ))),
    }
}

/// A key's serialized value and absolute expiry (unix ms, 0 for none); `None` if missing.
pub async fn dump<S: CommandStore>(
    s: &S,
    at: At<'_>,
    key: &[u8],
) -> StoreResult<Option<(Bytes, i64)>> {
    // One request for both (one write, one wake-up on a Redis connection).
    let frames = s
        .pipeline(at.0, at.1, &[&[b"DUMP", key], &[b"PEXPIRETIME", key]])
        .await?;
    let decoded = |f: &Bytes| match decode(f, u64::MAX) {
        Ok(Some((Value::Error(e), _))) => Err(StoreError::Other(e)),
        Ok(Some((v, _))) => Ok(v),
        _ => Err(StoreError::Other("ERR malformed reply".into())),
    };
    let (payload, when) = match &frames[..] {
        [p, w] => (decoded(p), decoded(w)),
        _ => return Err(StoreError::Other("ERR malformed reply".into())),
    };
    let payload = match payload? {
        Value::Bulk(b) => b,
        Value::Nil => return Ok(None),
        v => {
            return Err(StoreError::Other(format!(
                "ERR unexpected DUMP reply: {v:?}"
            )))
        }
    };
    let when = int(when, "PEXPIRETIME")?;
    if when == -2 {
        // Gone between the two (it expired): nothing to copy.
        return Ok(None);
    }
    Ok(Some((payload, when.max(0))))
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    Written,
    /// Without `replace`, the target already had the key: it stays as it is.
    Busy,
}

/// Writes a dumped value to `s` with its absolute expiry.
pub async fn restore<S: CommandStore>(
    s: &S,
    at: At<'_>,
    key: &[u8],
    payload: &[u8],
    expire_at: i64,
    replace: bool,
) -> StoreResult<Restored> {
    let when = expire_at.to_string();
    let mut args: Vec<&[u8]> = vec![b"RESTORE", key, when.as_bytes(), payload, b"ABSTTL"];
    if replace {
        args.push(b"REPLACE");
    }
    match own(s, at, &args, true).await {
        Ok(_) => Ok(Restored::Written),
        Err(StoreError::Other(m)) if m.starts_with("BUSYKEY") => Ok(Restored::Busy),
        Err(e) => Err(e),
    }
}

/// A key as copied: Redis's serialization, or, for a hash with field TTLs (which Redis 7.0's
/// format, the one the engine writes, cannot carry), its fields with their expiry times.
pub enum Snapshot {
    Payload(Bytes),
    /// (field, value, expiry in unix ms or 0).
    Fields(Vec<(Bytes, Bytes, i64)>),
}

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    Written,
    /// The target had the key (a copy without `replace`): it stays.
    Busy,
    /// The source has no such key.
    Missing,
}

/// Copies `key` from `from` to `to` with its absolute expiry, whatever its type: `DUMP` and
/// `RESTORE`, or field by field for a hash with field TTLs (the engine refuses to `DUMP`
/// one; a Redis 7.4 payload of one is refused by the engine's `RESTORE`). Without `replace`
/// a key already in `to` is kept.
pub async fn copy_key<A: CommandStore, B: CommandStore>(
    from: &A,
    to: &B,
    at: At<'_>,
    key: &[u8],
    replace: bool,
) -> StoreResult<Copied> {
    let dumped = match dump(from, at, key).await {
        Err(StoreError::Other(m)) if m.contains("field expiry") => None,
        other => Some(other?),
    };
    if let Some(dumped) = dumped {
        let Some((payload, when)) = dumped else {
            return Ok(Copied::Missing);
        };
        match restore(to, at, key, &payload, when, replace).await {
            Ok(Restored::Written) => return Ok(Copied::Written),
            Ok(Restored::Busy) => return Ok(Copied::Busy),
            Err(StoreError::Other(m)) if m.contains("Bad data format") => {}
            Err(e) => return Err(e),
        }
    }
    let Some((fields, when)) = hash_fields(from, at, key).await? else {
        return Ok(Copied::Missing);
    };
    write_fields(to, at, key, &fields, when, replace).await
}

/// A hash's fields with their expiry times, and the key's; `None` if missing.
#[allow(clippy::type_complexity)]
pub async fn hash_fields<S: CommandStore>(
    s: &S,
    at: At<'_>,
    key: &[u8],
) -> StoreResult<Option<(Vec<(Bytes, Bytes, i64)>, i64)>> {
    let Value::Array(flat) = own(s, at, &[b"HGETALL", key], false).await? else {
        return Err(StoreError::Other("ERR unexpected HGETALL reply".into()));
    };
    if flat.is_empty() {
        return Ok(None);
    }
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(Value::Bulk(f)), Some(Value::Bulk(v))) = (it.next(), it.next()) {
        pairs.push((f, v));
    }
    let count = pairs.len().to_string();
    let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", count.as_bytes()];
    args.extend(pairs.iter().map(|(f, _)| &f[..]));
    let times = match own(s, at, &args, false).await? {
        Value::Array(t) => t,
        v => {
            return Err(StoreError::Other(format!(
                "ERR unexpected HPEXPIRETIME reply: {v:?}"
            )))
        }
    };
    let when = int(
        own(s, at, &[b"PEXPIRETIME", key], false).await,
        "PEXPIRETIME",
    )?;
    let fields = pairs
        .into_iter()
        .zip(times)
        .map(|((f, v), t)| (f, v, t.int().unwrap_or(0).max(0)))
        .collect();
    Ok(Some((fields, when.max(0))))
}

/// Writes a hash field by field with each field's expiry, atomically (one script on the
/// target, which must know HPEXPIREAT: the engine, Redis 7.4 and later).
const WRITE_FIELDS: &str = "\
local replace = ARGV[1] == '1'
if not replace and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
local n = (#ARGV - 2) / 3
for i = 0, n - 1 do
  local f, v, t = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  redis.call('HSET', KEYS[1], f, v)
  if t ~= '0' then redis.call('HPEXPIREAT', KEYS[1], t, 'FIELDS', 1, f) end
end
if ARGV[2] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1";

async fn write_fields<S: CommandStore>(
    s: &S,
    at: At<'_>,
    key: &[u8],
    fields: &[(Bytes, Bytes, i64)],
    when: i64,
    replace: bool,
) -> StoreResult<Copied> {
    let times: Vec<String> = fields.iter().map(|(_, _, t)| t.to_string()).collect();
    let when = when.to_string();
    let mut args: Vec<&[u8]> = vec![
        b"EVAL",
        WRITE_FIELDS.as_bytes(),
        b"1",
        key,
        if replace { b"1" } else { b"0" },
        when.as_bytes(),
    ];
    for ((f, v, _), t) in fields.iter().zip(&times) {
        args.extend([&f[..], &v[..], t.as_bytes()]);
    }
    match own(s, at, &args, true).await? {
        Value::Int(1) => Ok(Copied::Written),
        _ => Ok(Copied::Busy),
    }
}

/// Whether `s` has `key`.
pub async fn exists<S: CommandStore>(s: &S, at: At<'_>, key: &[u8]) -> StoreResult<bool> {
    Ok(int(own(s, at, &[b"EXISTS", key], false).await, "EXISTS")? > 0)
}

/// What a key holds, comparable across servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub kind: String,
    /// The elements, sorted for hashes and sets (field-value pairs kept together).
    pub items: Vec<Value>,
    /// Absolute expiry in unix ms, 0 for none.
    pub expire_at: i64,
}

/// Reads `key`'s type, elements and expiry; `None` if missing.
pub async fn content<S: CommandStore>(
    s: &S,
    at: At<'_>,
    key: &[u8],
) -> StoreResult<Option<Content>> {
    let kind = match own(s, at, &[b"TYPE", key], false).await? {
        Value::Simple(t) => t,
        v => {
            return Err(StoreError::Other(format!(
                "ERR unexpected TYPE reply: {v:?}"
            )))
        }
    };
    let read: &[&[u8]] = match kind.as_str() {
        "none" => return Ok(None),
        "string" => &[b"GET", key],
        "hash" => &[b"HGETALL", key],
        "set" => &[b"SMEMBERS", key],
        "zset" => &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
        "list" => &[b"LRANGE", key, b"0", b"-1"],
        other => {
            return Err(StoreError::Other(format!(
                "ERR type {other} is not compared"
            )))
        }
    };
    let when_args: [&[u8]; 2] = [b"PEXPIRETIME", key];
    let (v, when) = tokio::join!(own(s, at, read, false), own(s, at, &when_args, false));
    let mut items = match v? {
        Value::Array(items) => items,
        Value::Nil => return Ok(None),
        v => vec![v],
    };
    match kind.as_str() {
        "hash" => {
            let mut pairs: Vec<(Value, Value)> = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                pairs.push((f, v));
            }
            pairs.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            items = pairs.into_iter().flat_map(|(f, v)| [f, v]).collect();
        }
        "set" => items.sort_by_key(|v| format!("{v:?}")),
        _ => {}
    }
    let when = int(when, "PEXPIRETIME")?;
    if when == -2 {
        return Ok(None);
    }
    Ok(Some(Content {
        kind,
        items,
        expire_at: when.max(0),
    }))
}
