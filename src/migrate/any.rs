//! One type for "some store", so a router can join any two kinds chosen at run time without a
//! generic instantiation per pair.

use bytes::Bytes;

use crate::engine::Engine;
use crate::legacy::files::FilesStore;
use crate::legacy::sql::SqlStore;
use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetOptions, SetOutcome, Store, StoreResult,
    StoreStats, Ttl, TtlChange, UnixMs,
};
use crate::upstream::Upstream;

pub enum AnyStore {
    Embedded(Box<super::embedded::EmbeddedSide>),
    Redis(Box<Upstream>),
    Files(FilesStore),
    Sql(Box<SqlStore>),
}

impl AnyStore {
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Embedded(_) => "embedded",
            AnyStore::Redis(_) => "redis",
            AnyStore::Files(_) => "php-files",
            AnyStore::Sql(_) => "mysql",
        }
    }
}

macro_rules! each {
    ($self:ident, |$s:ident| $e:expr) => {
        match $self {
            AnyStore::Embedded(side) => {
                let $s = side.engine();
                $e
            }
            AnyStore::Redis($s) => $e,
            AnyStore::Files($s) => $e,
            AnyStore::Sql($s) => $e,
        }
    };
}

impl AnyStore {
    /// Waits until every write made through this store so far is in its log, as a server
    /// connection does before its replies leave. Only the embedded engine needs it: its
    /// writes append to the log's buffer, and outside a server connection nothing else
    /// writes that buffer out. A remote store has acknowledged its writes already.
    ///
    /// The backfill calls it before each checkpoint: a checkpoint past pages whose copies
    /// were still in the buffer would make a run resumed after a crash skip them.
    pub async fn durable(&self) -> Result<(), String> {
        match self {
            AnyStore::Embedded(side) => side.server.durable().await,
            _ => Ok(()),
        }
    }
}

impl Store for AnyStore {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        each!(self, |s| s.get(db, key, now).await)
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        each!(self, |s| s.get_ex(db, key, ttl, now).await)
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        each!(self, |s| s.get_del(db, key, now).await)
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        each!(self, |s| s.get_with_ttl(db, key, now).await)
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        each!(self, |s| s.mget(db, keys, now).await)
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        each!(self, |s| s.set(db, key, value, opts, now).await)
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        each!(self, |s| s.mset(db, pairs, only_if_none_exist, now).await)
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        each!(self, |s| s.append(db, key, value, now).await)
    }

    async fn strlen(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
        each!(self, |s| s.strlen(db, key, now).await)
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        each!(self, |s| s.incr_by(db, key, delta, now).await)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        each!(self, |s| s.del(db, keys, now).await)
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        each!(self, |s| s.del_if_equal(db, key, expected, now).await)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        each!(self, |s| s.exists(db, keys, now).await)
    }

    async fn key_type(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<KeyType>> {
        each!(self, |s| s.key_type(db, key, now).await)
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        each!(self, |s| s.rename(db, src, dst, only_if_absent, now).await)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        each!(self, |s| s.expire_at(db, key, at, cond, now).await)
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        each!(self, |s| s.persist(db, key, now).await)
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        each!(self, |s| s.ttl(db, key, now).await)
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        each!(self, |s| s.scan(db, cursor, filter, now).await)
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        each!(self, |s| s.keys(db, pattern, now).await)
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        each!(self, |s| s.random_key(db, now).await)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        each!(self, |s| s.dbsize(db).await)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        each!(self, |s| s.flush_db(db).await)
    }

    async fn flush_all(&self) -> StoreResult<()> {
        each!(self, |s| s.flush_all().await)
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        each!(self, |s| s.swap_db(a, b).await)
    }

    fn stats(&self, now: UnixMs) -> StoreStats {
        each!(self, |s| s.stats(now))
    }

    fn databases(&self) -> usize {
        each!(self, |s| s.databases())
    }

    fn set_maxmemory(&self, bytes: u64) {
        each!(self, |s| s.set_maxmemory(bytes))
    }

    fn set_maxmemory_policy(&self, policy: &str) -> bool {
        each!(self, |s| s.set_maxmemory_policy(policy))
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        each!(self, |s| s.info_sections())
    }

    /// The router measures each side through the `Timed` around it.
    fn latency(&self) -> Option<crate::metrics::histogram::Latency> {
        None
    }
}

impl crate::deployment::Deployment for AnyStore {
    /// A router's side is called through `Store` and `CommandStore`; raw forwarding is
    /// for a Redis upstream that is the server's own store, never one side of a migration.
    fn gateway(&self) -> Option<&Upstream> {
        None
    }

    fn engine(&self) -> Option<&Engine> {
        match self {
            AnyStore::Embedded(e) => Some(e.engine()),
            _ => None,
        }
    }

    fn migration(&self) -> Option<&dyn crate::deployment::MigrationControl> {
        None
    }
}
