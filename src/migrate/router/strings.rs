//! The router's string data path: each `Store` method follows the session's [`Plan`] (which
//! store answers, which is compared, which is written too, whether a miss falls back), by the
//! rules in the module above.

use bytes::Bytes;

use super::{other, Router};
use crate::deployment::{Deployment, MigrationControl};
use crate::migrate::command::CommandStore;
use crate::migrate::stage::Side;
use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetCondition, SetOptions, SetOutcome, Store,
    StoreResult, StoreStats, Ttl, TtlChange, UnixMs,
};

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> Store for Router<O, N> {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        self.get_inner(db, key, now, false).await
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        // Make sure the served store has the session (fallback copies it forward), then
        // change the TTL on both.
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let v = on!(self, p.serve, |s| s.get_ex(db, key, ttl, now).await)?;
        if p.write_both && v.is_some() && ttl != TtlChange::Keep {
            let r = on!(self, other(p.serve), |s| match ttl {
                TtlChange::At(at) => s
                    .expire_at(db, key, at, ExpireCondition::Always, now)
                    .await
                    .map(|_| ()),
                _ => s.persist(db, key, now).await.map(|_| ()),
            });
            self.secondary(r);
        }
        Ok(v)
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        let v = if p.fall_back {
            let v = self.get_inner(db, key, now, true).await?;
            on!(self, p.serve, |s| s.del(db, &[key], now).await)?;
            v
        } else {
            on!(self, p.serve, |s| s.get_del(db, key, now).await)?
        };
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.del(db, &[key], now).await);
            self.secondary(r);
        }
        Ok(v)
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(db, k, now).await?);
        }
        Ok(out)
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back
            && (opts.condition != SetCondition::Always || opts.get || opts.ttl == TtlChange::Keep)
        {
            // NX/XX/GET/KEEPTTL look at the current value: bring it forward first.
            self.forward(db, key, now).await?;
        }
        let out = on!(self, p.serve, |s| s.set(db, key, value, opts, now).await)?;
        if p.write_both && out.written {
            if opts.ttl == TtlChange::Keep {
                self.mirror(p.serve, db, key, now).await;
            } else {
                let plain = SetOptions {
                    ttl: opts.ttl,
                    condition: SetCondition::Always,
                    get: false,
                };
                let r = on!(self, other(p.serve), |s| s
                    .set(db, key, value, plain, now)
                    .await);
                self.secondary(r);
            }
        }
        Ok(out)
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        if only_if_none_exist {
            let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
            let _held = self.locks.lock(&keys).await;
            // All-or-nothing needs one store to decide: the one serving the first key.
            let p = self.plan(pairs.first().map_or(&b""[..], |(k, _)| *k));
            if p.fall_back {
                for (k, _) in pairs {
                    self.forward(db, k, now).await?;
                }
            }
            let ok = on!(self, p.serve, |s| s.mset(db, pairs, true, now).await)?;
            if ok && p.write_both {
                let r = on!(self, other(p.serve), |s| s
                    .mset(db, pairs, false, now)
                    .await);
                self.secondary(r);
            }
            return Ok(ok);
        }
        for (k, v) in pairs {
            self.set(db, k, v, SetOptions::plain(), now).await?;
        }
        Ok(true)
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let n = on!(self, p.serve, |s| s.append(db, key, value, now).await)?;
        if p.write_both {
            self.mirror(p.serve, db, key, now).await;
        }
        Ok(n)
    }

    async fn strlen(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
        Ok(self.get(db, key, now).await?.map_or(0, |v| v.len() as u64))
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let n = on!(self, p.serve, |s| s.incr_by(db, key, delta, now).await)?;
        if p.write_both {
            self.mirror(p.serve, db, key, now).await;
        }
        Ok(n)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(keys).await;
        let mut n = 0;
        for k in keys {
            let p = self.plan(k);
            let mut d = on!(self, p.serve, |s| s.del(db, &[k], now).await)?;
            if p.fall_back || p.write_both {
                // Deletes reach both stores while both may hold the session.
                let r = on!(self, other(p.serve), |s| s.del(db, &[k], now).await);
                if p.fall_back && d == 0 {
                    d = *r.as_ref().unwrap_or(&0);
                }
                self.secondary(r);
            }
            n += d;
        }
        Ok(n)
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let deleted = on!(self, p.serve, |s| s
            .del_if_equal(db, key, expected, now)
            .await)?;
        if deleted && p.write_both {
            let r = on!(self, other(p.serve), |s| s.del(db, &[key], now).await);
            self.secondary(r);
        }
        Ok(deleted)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        let mut n = 0;
        for k in keys {
            let p = self.plan(k);
            let mut e = on!(self, p.serve, |s| s.exists(db, &[k], now).await)?;
            if e == 0 && p.fall_back {
                e = self.old.exists(db, &[k], now).await.unwrap_or(0);
            }
            n += e;
        }
        Ok(n)
    }

    async fn key_type(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<KeyType>> {
        let p = self.plan(key);
        let t = on!(self, p.serve, |s| s.key_type(db, key, now).await)?;
        if t.is_none() && p.fall_back {
            return self.old.key_type(db, key, now).await;
        }
        Ok(t)
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[src, dst]).await;
        let p = self.plan(src);
        if p.fall_back {
            self.forward(db, src, now).await?;
        }
        let done = on!(self, p.serve, |s| s
            .rename(db, src, dst, only_if_absent, now)
            .await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s
                .rename(db, src, dst, false, now)
                .await);
            // A source missing in the other store is not a failure: there was nothing to move.
            if !matches!(r, Err(crate::store::StoreError::NoSuchKey)) {
                self.secondary(r);
            }
        }
        Ok(done)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let done = on!(self, p.serve, |s| s.expire_at(db, key, at, cond, now).await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s
                .expire_at(db, key, at, ExpireCondition::Always, now)
                .await);
            self.secondary(r);
        }
        Ok(done)
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let done = on!(self, p.serve, |s| s.persist(db, key, now).await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s.persist(db, key, now).await);
            self.secondary(r);
        }
        Ok(done)
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        let p = self.plan(key);
        let t = on!(self, p.serve, |s| s.ttl(db, key, now).await)?;
        if t == Ttl::Missing && p.fall_back {
            return self.old.ttl(db, key, now).await;
        }
        Ok(t)
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        on!(self, self.global_plan().serve, |s| s
            .scan(db, cursor, filter, now)
            .await)
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        on!(self, self.global_plan().serve, |s| s
            .keys(db, pattern, now)
            .await)
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        on!(self, self.global_plan().serve, |s| s
            .random_key(db, now)
            .await)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        on!(self, self.global_plan().serve, |s| s.dbsize(db).await)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.flush_db(db).await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.flush_db(db).await);
            self.secondary(r);
        }
        Ok(())
    }

    async fn flush_all(&self) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.flush_all().await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.flush_all().await);
            self.secondary(r);
        }
        Ok(())
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.swap_db(a, b).await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.swap_db(a, b).await);
            self.secondary(r);
        }
        Ok(())
    }

    fn stats(&self, now: UnixMs) -> StoreStats {
        on!(self, self.global_plan().serve, |s| s.stats(now))
    }

    fn databases(&self) -> usize {
        self.old.databases().min(self.new.databases())
    }

    fn set_maxmemory(&self, bytes: u64) {
        self.new.set_maxmemory(bytes);
    }

    fn set_maxmemory_policy(&self, policy: &str) -> bool {
        self.new.set_maxmemory_policy(policy)
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        // Routed as the two reads it is made of.
        crate::store::composite::get_with_ttl(self, db, key, now).await
    }

    /// Each side's latency is reported in the router's own metrics.
    fn latency(&self) -> Option<crate::metrics::histogram::Latency> {
        None
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("migration", self.info())];
        v.extend(self.old.info_sections());
        v.extend(self.new.info_sections());
        v
    }
}

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> Deployment for Router<O, N> {
    fn gateway(&self) -> Option<&crate::upstream::Upstream> {
        None
    }

    /// Not the engine even when a side is: commands go through the router's stages.
    fn engine(&self) -> Option<&crate::engine::Engine> {
        None
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}
