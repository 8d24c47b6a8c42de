//! The engine's side of every [`Store`] operation: look the key up under its shard lock,
//! apply Redis's semantics (conditions, TTL forms, lazy expiry), and change data only through
//! [`Changes`](super::mutate::Changes), which logs as it changes.

use bytes::Bytes;

use super::mutate::{Changes, Record};
use super::*;

impl Store for Engine {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        let lru = i.lru_now();
        i.with_key(key, |s, h| {
            s.read(db, h, key, now, lru, &i.hasher_fn())
                .map(|e| e.str_or_wrongtype().map(copy_str))
                .transpose()
        })
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            let Some(e) = s.read(db, h, key, now, lru, &hasher) else {
                return Ok(None);
            };
            let v = copy_str(e.str_or_wrongtype()?);
            let mut changes = Changes::new(i);
            match ttl {
                TtlChange::Keep => {}
                TtlChange::Clear => changes.expire(s, db, h, key, 0),
                TtlChange::At(at) if at <= now => {
                    changes.del(s, db, h, key);
                }
                TtlChange::At(at) => changes.expire(s, db, h, key, at),
            }
            Ok(Some(v))
        })
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            let Some(e) = s.read(db, h, key, now, lru, &hasher) else {
                return Ok(None);
            };
            let v = copy_str(e.str_or_wrongtype()?);
            Changes::new(i).del(s, db, h, key);
            Ok(Some(v))
        })
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        let i = &self.inner;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        let mut locks = i.lock_keys(keys);
        Ok(keys
            .iter()
            .enumerate()
            .map(|(n, k)| {
                let (s, h) = locks.key(n);
                // MGET answers nil for a key of another type, as Redis does.
                s.read(db, h, k, now, lru, &hasher)
                    .and_then(|e| e.string().map(copy_str))
            })
            .collect())
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        let i = &self.inner;
        evict::reserve(i)?;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            let (exists, old_expire, previous) = match s.live(db, h, key, now, &hasher) {
                Some(e) => (
                    true,
                    e.expire(),
                    if opts.get {
                        Some(copy_str(e.str_or_wrongtype()?))
                    } else {
                        None
                    },
                ),
                None => (false, 0, None),
            };
            let allowed = match opts.condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !exists,
                SetCondition::IfPresent => exists,
            };
            if allowed {
                let expire = match opts.ttl {
                    TtlChange::Clear => 0,
                    TtlChange::Keep => old_expire,
                    TtlChange::At(at) => at,
                };
                Changes::new(i).put(
                    s,
                    db,
                    h,
                    Record {
                        key,
                        value,
                        expire,
                        lru,
                    },
                    exists,
                );
            }
            Ok(SetOutcome {
                written: allowed,
                previous,
            })
        })
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        let i = &self.inner;
        evict::reserve(i)?;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        let keys: Vec<&[u8]> = pairs.iter().map(|p| p.0).collect();
        let mut locks = i.lock_keys(&keys);
        if only_if_none_exist {
            for (n, k) in keys.iter().enumerate() {
                let (s, h) = locks.key(n);
                if s.live(db, h, k, now, &hasher).is_some() {
                    return Ok(false);
                }
            }
        }
        let mut changes = Changes::new(i);
        for (n, (k, v)) in pairs.iter().enumerate() {
            let (s, h) = locks.key(n);
            let exists = s.live(db, h, k, now, &hasher).is_some();
            changes.put(
                s,
                db,
                h,
                Record {
                    key: k,
                    value: v,
                    expire: 0,
                    lru,
                },
                exists,
            );
        }
        Ok(true)
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        let i = &self.inner;
        evict::reserve(i)?;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            let cur = match s.live(db, h, key, now, &hasher) {
                Some(e) => Some(e.str_or_wrongtype()?.len()),
                None => None,
            };
            match cur {
                Some(len) => {
                    if (len + value.len()) as u64
                        > crate::resp::Limits::default().max_bulk_len as u64
                    {
                        return Err(StoreError::TooBig);
                    }
                    let n = Changes::new(i).append(s, db, h, key, value).unwrap_or(0);
                    Ok(n as u64)
                }
                None => {
                    Changes::new(i).put(
                        s,
                        db,
                        h,
                        Record {
                            key,
                            value,
                            expire: 0,
                            lru,
                        },
                        false,
                    );
                    Ok(value.len() as u64)
                }
            }
        })
    }

    async fn strlen(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
        let i = &self.inner;
        let lru = i.lru_now();
        i.with_key(key, |s, h| {
            match s.read(db, h, key, now, lru, &i.hasher_fn()) {
                Some(e) => Ok(e.str_or_wrongtype()?.len() as u64),
                None => Ok(0),
            }
        })
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        let i = &self.inner;
        evict::reserve(i)?;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            // INCR keeps the key's TTL.
            let (exists, cur, expire) = match s.live(db, h, key, now, &hasher) {
                Some(e) => (
                    true,
                    parse_stored_int(&e.str_or_wrongtype()?.bytes())
                        .ok_or(StoreError::NotInteger)?,
                    e.expire(),
                ),
                None => (false, 0, 0),
            };
            let new = cur.checked_add(delta).ok_or(StoreError::Overflow)?;
            let mut buf = itoa::Buffer::new();
            let value = buf.format(new).as_bytes();
            Changes::new(i).put(
                s,
                db,
                h,
                Record {
                    key,
                    value,
                    expire,
                    lru,
                },
                exists,
            );
            Ok(new)
        })
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Ok(self.count_live(db, keys, now, true))
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        Ok(i.with_key(key, |s, h| {
            let equal = s
                .live(db, h, key, now, &hasher)
                .is_some_and(|e| e.string().is_some_and(|v| v == *expected));
            if equal {
                Changes::new(i).del(s, db, h, key);
            }
            equal
        }))
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Ok(self.count_live(db, keys, now, false))
    }

    async fn key_type(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<KeyType>> {
        let i = &self.inner;
        Ok(i.with_key(key, |s, h| {
            s.live(db, h, key, now, &i.hasher_fn())
                .map(|e| match e.kind().type_name() {
                    "string" => KeyType::String,
                    "hash" => KeyType::Hash,
                    other => KeyType::Other(other.into()),
                })
        }))
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        let mut locks = i.lock_keys(&[src, dst]);
        let (s, hs) = locks.key(0);
        if s.live(db, hs, src, now, &hasher).is_none() {
            return Err(StoreError::NoSuchKey);
        }
        if src == dst {
            return Ok(!only_if_absent);
        }
        let (d, hd) = locks.key(1);
        let dst_exists = d.live(db, hd, dst, now, &hasher).is_some();
        if dst_exists && only_if_absent {
            return Ok(false);
        }
        // One frame: replay moves the key whole or (torn) not at all. The record itself moves
        // (a big collection is not copied).
        let mut changes = Changes::new(i);
        let (s, hs) = locks.key(0);
        let Some(moved) = changes.take(s, db, hs, src) else {
            return Err(StoreError::NoSuchKey);
        };
        let (d, hd) = locks.key(1);
        changes.put_entry(d, db, hd, moved.rekeyed(dst), dst_exists);
        Ok(true)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        Ok(i.with_key(key, |s, h| {
            let Some(e) = s.live(db, h, key, now, &hasher) else {
                return false;
            };
            let cur = e.expire();
            let ok = match cond {
                ExpireCondition::Always => true,
                ExpireCondition::Nx => cur == 0,
                ExpireCondition::Xx => cur != 0,
                ExpireCondition::Gt => cur != 0 && at > cur,
                ExpireCondition::Lt => cur == 0 || at < cur,
            };
            if !ok {
                return false;
            }
            let mut changes = Changes::new(i);
            if at <= now {
                changes.del(s, db, h, key);
            } else {
                changes.expire(s, db, h, key, at);
            }
            true
        }))
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        let i = &self.inner;
        Ok(i.with_key(key, |s, h| {
            let had = s
                .live(db, h, key, now, &i.hasher_fn())
                .is_some_and(|e| e.expire() != 0);
            if had {
                Changes::new(i).expire(s, db, h, key, 0);
            }
            had
        }))
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        let i = &self.inner;
        Ok(
            i.with_key(key, |s, h| match s.live(db, h, key, now, &i.hasher_fn()) {
                None => Ttl::Missing,
                Some(e) if e.expire() == 0 => Ttl::Persistent,
                Some(e) => Ttl::At(e.expire()),
            }),
        )
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        let i = &self.inner;
        let mut shard = (cursor >> CURSOR_SHARD_SHIFT) as usize;
        let mut tc = cursor & CURSOR_TABLE_MASK;
        if shard >= SHARDS {
            return Ok((0, Vec::new()));
        }
        let count = filter.count.max(1);
        let mut budget = count.saturating_mul(10);
        // Visited keys, and whether each is of the TYPE asked for.
        let mut found: Vec<(Bytes, bool)> = Vec::new();
        let wanted = filter.key_type.as_deref();
        while found.len() < count && budget > 0 {
            let g = i.lock(shard);
            let table = &g.dbs[db];
            for _ in 0..WALK_CHUNK {
                tc = table.scan_bucket(tc, |e| {
                    if !e.is_expired(now) {
                        let type_ok = wanted.is_none_or(|t| {
                            t.eq_ignore_ascii_case(e.kind().type_name().as_bytes())
                        });
                        found.push((Bytes::from(e.key().to_vec()), type_ok));
                    }
                });
                budget -= 1;
                if tc == 0 || found.len() >= count || budget == 0 {
                    break;
                }
            }
            drop(g);
            if tc == 0 {
                shard += 1;
                if shard == SHARDS {
                    break;
                }
            }
        }
        // As in Redis, MATCH and TYPE filter what was visited; they do not extend the walk.
        let found: Vec<Bytes> = found
            .into_iter()
            .filter(|(k, type_ok)| {
                *type_ok
                    && filter
                        .pattern
                        .as_deref()
                        .is_none_or(|p| glob_match(p, k, false))
            })
            .map(|(k, _)| k)
            .collect();
        let next = if shard == SHARDS {
            0
        } else {
            ((shard as u64) << CURSOR_SHARD_SHIFT) | tc
        };
        Ok((next, found))
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        let i = &self.inner;
        let all = pattern == b"*";
        let mut out = Vec::new();
        for s in 0..SHARDS {
            let mut b = 0;
            loop {
                let g = i.lock(s);
                let t = &g.dbs[db];
                let end = (b + WALK_CHUNK).min(t.bucket_count());
                for idx in b..end {
                    for e in t.bucket(idx) {
                        if !e.is_expired(now)
                            && (all || e.key().with(|k| glob_match(pattern, k, false)))
                        {
                            out.push(Bytes::from(e.key().to_vec()));
                        }
                    }
                }
                b = end;
                if b >= t.bucket_count() {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        for _ in 0..100 {
            let start = fastrand::usize(..SHARDS);
            let Some(s) = (0..SHARDS)
                .map(|k| (start + k) % SHARDS)
                .find(|&s| !i.lock(s).dbs[db].is_empty())
            else {
                return Ok(None);
            };
            let g = i.lock(s);
            let t = &g.dbs[db];
            if t.is_empty() {
                continue;
            }
            let n = t.bucket_count();
            let b0 = fastrand::usize(..n);
            let Some(b) = (0..n)
                .map(|k| (b0 + k) % n)
                .find(|&b| t.bucket(b).next().is_some())
            else {
                continue;
            };
            let chain: Vec<&Entry> = t.bucket(b).collect();
            let e = chain[fastrand::usize(..chain.len())];
            if !e.is_expired(now) {
                return Ok(Some(Bytes::from(e.key().to_vec())));
            }
        }
        Ok(None)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        Ok((0..SHARDS)
            .map(|s| self.inner.lock(s).dbs[db].len() as u64)
            .sum())
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        self.flush(Some(db));
        Ok(())
    }

    async fn flush_all(&self) -> StoreResult<()> {
        self.flush(None);
        Ok(())
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        let i = &self.inner;
        // All shards at once, so no client sees half-swapped databases.
        let mut guards: Vec<_> = (0..SHARDS).map(|s| i.lock(s)).collect();
        if i.snapshot_active.load(Ordering::SeqCst) {
            return Err(StoreError::Other(
                "ERR SWAPDB is not allowed while a snapshot or log rewrite is in progress; retry when INFO persistence shows aof_rewrite_in_progress:0".into(),
            ));
        }
        let mut shards: Vec<&mut ShardData> = guards.iter_mut().map(|g| &mut **g).collect();
        Changes::new(i).swap_db(&mut shards, a, b);
        Ok(())
    }

    fn stats(&self, _now: UnixMs) -> StoreStats {
        let i = &self.inner;
        let mut st = StoreStats {
            used_memory: i.used_memory(),
            maxmemory: i.maxmemory.load(Ordering::Relaxed),
            maxmemory_policy: i.policy().name(),
            ..Default::default()
        };
        let mut per_db = vec![(0u64, 0u64, 0u64, 0u64); i.databases];
        for s in 0..SHARDS {
            let g = i.lock(s);
            st.expired_keys += g.expired;
            st.evicted_keys += g.evicted;
            st.keyspace_hits += g.hits;
            st.keyspace_misses += g.misses;
            for (db, t) in g.dbs.iter().enumerate() {
                per_db[db].0 += t.len() as u64;
                per_db[db].1 += t.volatile() as u64;
                per_db[db].2 += g.ttl_samples[db].0;
                per_db[db].3 += g.ttl_samples[db].1;
            }
        }
        st.peak_memory = i
            .peak
            .fetch_max(st.used_memory, Ordering::Relaxed)
            .max(st.used_memory);
        st.keyspace = per_db
            .into_iter()
            .enumerate()
            .filter(|(_, d)| d.0 > 0)
            .map(|(db, (keys, vol, sum, n))| (db, keys, vol, sum.checked_div(n).unwrap_or(0)))
            .collect();
        st
    }

    fn databases(&self) -> usize {
        self.inner.databases
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(bytes::Bytes, crate::store::Ttl)>> {
        // Two reads at one `now`: only backfill and copy-forward ask, and they compare.
        crate::store::composite::get_with_ttl(self, db, key, now).await
    }

    fn latency(&self) -> Option<crate::metrics::histogram::Latency> {
        None
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn set_maxmemory(&self, bytes: u64) {
        self.inner.maxmemory.store(bytes, Ordering::Relaxed);
    }

    fn set_maxmemory_policy(&self, policy: &str) -> bool {
        match Policy::parse(policy) {
            Some(p) => {
                self.inner.policy.store(p as u8, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

impl crate::deployment::Deployment for Engine {
    fn gateway(&self) -> Option<&crate::upstream::Upstream> {
        None
    }

    fn engine(&self) -> Option<&Engine> {
        Some(self)
    }

    fn migration(&self) -> Option<&dyn crate::deployment::MigrationControl> {
        None
    }
}
