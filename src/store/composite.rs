//! Composite string operations in terms of a store's primitive ones, for stores that have
//! nothing better (SQL rows, PHP session files). None of these is atomic: another client can
//! act between the steps. The engine and Redis have atomic versions of their own, and a
//! wrapper (`AnyStore`, `Timed`) forwards to its inner store's; that is why these are free
//! functions a store calls by name rather than default bodies of [`Store`] a wrapper could
//! inherit without noticing.

use bytes::Bytes;

use super::{Db, ExpireCondition, KeyType, SetOptions, Store, StoreResult, Ttl, TtlChange, UnixMs};

/// `GETEX`: a read, then a TTL change when the key exists.
pub async fn get_ex<S: Store>(
    s: &S,
    db: Db,
    key: &[u8],
    ttl: TtlChange,
    now: UnixMs,
) -> StoreResult<Option<Bytes>> {
    let v = s.get(db, key, now).await?;
    if v.is_some() {
        match ttl {
            TtlChange::Keep => {}
            TtlChange::Clear => {
                s.persist(db, key, now).await?;
            }
            TtlChange::At(t) => {
                s.expire_at(db, key, t, ExpireCondition::Always, now)
                    .await?;
            }
        }
    }
    Ok(v)
}

/// A value and its TTL state, by two reads.
pub async fn get_with_ttl<S: Store>(
    s: &S,
    db: Db,
    key: &[u8],
    now: UnixMs,
) -> StoreResult<Option<(Bytes, Ttl)>> {
    let Some(v) = s.get(db, key, now).await? else {
        return Ok(None);
    };
    Ok(match s.ttl(db, key, now).await? {
        Ttl::Missing => None,
        t => Some((v, t)),
    })
}

/// `GETDEL`: a read, then a delete when the key exists.
pub async fn get_del<S: Store>(
    s: &S,
    db: Db,
    key: &[u8],
    now: UnixMs,
) -> StoreResult<Option<Bytes>> {
    let v = s.get(db, key, now).await?;
    if v.is_some() {
        s.del(db, &[key], now).await?;
    }
    Ok(v)
}

/// `MGET`: one read per key.
pub async fn mget<S: Store>(
    s: &S,
    db: Db,
    keys: &[&[u8]],
    now: UnixMs,
) -> StoreResult<Vec<Option<Bytes>>> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(s.get(db, k, now).await?);
    }
    Ok(out)
}

/// `MSET`/`MSETNX`: the existence checks (NX), then one write per key.
pub async fn mset<S: Store>(
    s: &S,
    db: Db,
    pairs: &[(&[u8], &[u8])],
    only_if_none_exist: bool,
    now: UnixMs,
) -> StoreResult<bool> {
    if only_if_none_exist {
        for (k, _) in pairs {
            if s.exists(db, &[k], now).await? > 0 {
                return Ok(false);
            }
        }
    }
    for (k, v) in pairs {
        s.set(db, k, v, SetOptions::plain(), now).await?;
    }
    Ok(true)
}

/// `STRLEN` by reading the value.
pub async fn strlen<S: Store>(s: &S, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
    Ok(s.get(db, key, now).await?.map_or(0, |v| v.len() as u64))
}

/// `TYPE` for a store of strings only.
pub async fn key_type<S: Store>(
    s: &S,
    db: Db,
    key: &[u8],
    now: UnixMs,
) -> StoreResult<Option<KeyType>> {
    Ok((s.exists(db, &[key], now).await? == 1).then_some(KeyType::String))
}

/// Writes a store's composite string methods (`get_ex`, `get_del`, `mget`, `mset`,
/// `strlen`, `key_type`) as calls of this module's versions, inside an `impl Store`: for a
/// store with nothing better, so the choice is made, and seen, at the impl.
macro_rules! by_primitives {
    () => {
        async fn get_ex(
            &self,
            db: $crate::store::Db,
            key: &[u8],
            ttl: $crate::store::TtlChange,
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<Option<bytes::Bytes>> {
            $crate::store::composite::get_ex(self, db, key, ttl, now).await
        }
        async fn get_del(
            &self,
            db: $crate::store::Db,
            key: &[u8],
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<Option<bytes::Bytes>> {
            $crate::store::composite::get_del(self, db, key, now).await
        }
        async fn mget(
            &self,
            db: $crate::store::Db,
            keys: &[&[u8]],
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<Vec<Option<bytes::Bytes>>> {
            $crate::store::composite::mget(self, db, keys, now).await
        }
        async fn mset(
            &self,
            db: $crate::store::Db,
            pairs: &[(&[u8], &[u8])],
            only_if_none_exist: bool,
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<bool> {
            $crate::store::composite::mset(self, db, pairs, only_if_none_exist, now).await
        }
        async fn strlen(
            &self,
            db: $crate::store::Db,
            key: &[u8],
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<u64> {
            $crate::store::composite::strlen(self, db, key, now).await
        }
        async fn key_type(
            &self,
            db: $crate::store::Db,
            key: &[u8],
            now: $crate::store::UnixMs,
        ) -> $crate::store::StoreResult<Option<$crate::store::KeyType>> {
            $crate::store::composite::key_type(self, db, key, now).await
        }
    };
}
pub(crate) use by_primitives;

/// Writes the capability methods of a store that has none of them (no memory accounting,
/// one database, no latency or INFO sections of its own), inside an `impl Store`.
macro_rules! no_capabilities {
    () => {
        fn stats(&self, _now: $crate::store::UnixMs) -> $crate::store::StoreStats {
            $crate::store::StoreStats::unaccounted()
        }
        fn databases(&self) -> usize {
            1
        }
        fn set_maxmemory(&self, _bytes: u64) {}
        fn set_maxmemory_policy(&self, _policy: &str) -> bool {
            false
        }
        fn latency(&self) -> Option<$crate::metrics::histogram::Latency> {
            None
        }
        fn info_sections(&self) -> Vec<(&'static str, String)> {
            Vec::new()
        }
    };
}
pub(crate) use no_capabilities;
