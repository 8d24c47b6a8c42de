//! Per-store latency for the migration router: every call to a store is timed into an HDR
//! histogram, so the admin API and `INFO migration` can show what each store costs (the
//! reason to run `shadow` before `live`).

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetOptions, SetOutcome, Store, StoreError,
    StoreResult, StoreStats, Ttl, TtlChange, UnixMs,
};

pub use crate::metrics::histogram::Latency;

/// One store's calls over recent seconds: what the guarded ramp (`guard.rs`) judges.
#[derive(Debug, Clone, Default)]
pub struct WindowStats {
    pub calls: u64,
    /// Calls the store could not answer (see [`Outcome`]).
    pub failures: u64,
    pub latency: crate::metrics::histogram::Snapshot,
    /// The seconds covered.
    pub seconds: u64,
}

/// Per-second cells of a ring covering the last [`RING`] seconds.
#[derive(Clone, Copy)]
struct Second {
    sec: i64,
    calls: u64,
    failures: u64,
    counts: [u64; crate::metrics::histogram::BUCKETS],
}

const RING: usize = 64;

/// Whether a call's outcome says the store failed: it could not answer (a lost
/// connection, a timeout, out of memory). A client's own error (`WRONGTYPE`, not an
/// integer…) is an answer, not a failure.
pub trait Outcome {
    fn failed(&self) -> bool;
}

impl<T> Outcome for StoreResult<T> {
    fn failed(&self) -> bool {
        match self {
            Err(StoreError::OutOfMemory) => true,
            Err(StoreError::Other(m)) => !m.starts_with("WRONGTYPE"),
            _ => false,
        }
    }
}

/// A store whose calls are timed.
pub struct Timed<S> {
    pub inner: S,
    hist: Mutex<Histogram<u64>>,
    ring: Mutex<[Second; RING]>,
    /// The same calls in Prometheus's fixed buckets (`/metrics`), without a lock.
    buckets: crate::metrics::Histogram,
}

impl<S> Timed<S> {
    pub fn new(inner: S) -> Self {
        // 1 µs to 60 s, 3 significant digits (~10 KB).
        let hist = Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits is valid"));
        Timed {
            inner,
            hist: Mutex::new(hist),
            ring: Mutex::new(
                [Second {
                    sec: -1,
                    calls: 0,
                    failures: 0,
                    counts: [0; crate::metrics::histogram::BUCKETS],
                }; RING],
            ),
            buckets: Default::default(),
        }
    }

    /// The calls of the last `seconds` whole seconds that started at or after `since_ms`
    /// (the current, partial second is included).
    pub fn window(&self, seconds: u64, since_ms: i64) -> WindowStats {
        let now = crate::clock::now_ms() / 1000;
        let first = (now - seconds.min(RING as u64 - 1) as i64 + 1).max((since_ms + 999) / 1000);
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut w = WindowStats {
            seconds: (now - first + 1).max(0) as u64,
            ..WindowStats::default()
        };
        for c in ring.iter().filter(|c| c.sec >= first && c.sec <= now) {
            w.calls += c.calls;
            w.failures += c.failures;
            for (t, n) in w.latency.counts.iter_mut().zip(c.counts) {
                *t += n;
            }
        }
        w.latency.count = w.calls;
        w
    }

    pub(super) async fn timed<T: Outcome>(&self, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let r = f.await;
        let elapsed = t.elapsed();
        self.buckets.record(0, elapsed);
        {
            let sec = crate::clock::now_ms() / 1000;
            let bucket = crate::metrics::histogram::BOUNDS_US
                .partition_point(|&b| b < elapsed.as_micros() as u64);
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            let c = &mut ring[sec.rem_euclid(RING as i64) as usize];
            if c.sec != sec {
                *c = Second {
                    sec,
                    calls: 0,
                    failures: 0,
                    counts: [0; crate::metrics::histogram::BUCKETS],
                };
            }
            c.calls += 1;
            c.failures += u64::from(r.failed());
            c.counts[bucket] += 1;
        }
        let us = elapsed.as_micros() as u64;
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.record(us.clamp(1, 60_000_000));
        r
    }

    pub fn latency(&self) -> Latency {
        let b = self.buckets.snapshot();
        let h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        Latency {
            buckets: b.counts,
            sum_ns: (b.sum_seconds * 1e9) as u64,
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

impl<S: Store> Store for Timed<S> {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        self.timed(self.inner.get(db, key, now)).await
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        self.timed(self.inner.get_ex(db, key, ttl, now)).await
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        self.timed(self.inner.get_del(db, key, now)).await
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        self.timed(self.inner.get_with_ttl(db, key, now)).await
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        self.timed(self.inner.mget(db, keys, now)).await
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        self.timed(self.inner.set(db, key, value, opts, now)).await
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        self.timed(self.inner.mset(db, pairs, only_if_none_exist, now))
            .await
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        self.timed(self.inner.append(db, key, value, now)).await
    }

    async fn strlen(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
        self.timed(self.inner.strlen(db, key, now)).await
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        self.timed(self.inner.incr_by(db, key, delta, now)).await
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        self.timed(self.inner.del(db, keys, now)).await
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        self.timed(self.inner.del_if_equal(db, key, expected, now))
            .await
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        self.timed(self.inner.exists(db, keys, now)).await
    }

    async fn key_type(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<KeyType>> {
        self.timed(self.inner.key_type(db, key, now)).await
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        self.timed(self.inner.rename(db, src, dst, only_if_absent, now))
            .await
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        self.timed(self.inner.expire_at(db, key, at, cond, now))
            .await
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        self.timed(self.inner.persist(db, key, now)).await
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        self.timed(self.inner.ttl(db, key, now)).await
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        self.timed(self.inner.scan(db, cursor, filter, now)).await
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        self.timed(self.inner.keys(db, pattern, now)).await
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        self.timed(self.inner.random_key(db, now)).await
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        self.timed(self.inner.dbsize(db)).await
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        self.timed(self.inner.flush_db(db)).await
    }

    async fn flush_all(&self) -> StoreResult<()> {
        self.timed(self.inner.flush_all()).await
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        self.timed(self.inner.swap_db(a, b)).await
    }

    fn stats(&self, now: UnixMs) -> StoreStats {
        self.inner.stats(now)
    }

    fn databases(&self) -> usize {
        self.inner.databases()
    }

    fn set_maxmemory(&self, bytes: u64) {
        self.inner.set_maxmemory(bytes)
    }

    fn set_maxmemory_policy(&self, policy: &str) -> bool {
        self.inner.set_maxmemory_policy(policy)
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        self.inner.info_sections()
    }

    fn latency(&self) -> Option<Latency> {
        Some(Timed::latency(self))
    }
}

impl<S: crate::deployment::Deployment> crate::deployment::Deployment for Timed<S> {
    fn gateway(&self) -> Option<&crate::upstream::Upstream> {
        None
    }

    fn engine(&self) -> Option<&crate::engine::Engine> {
        self.inner.engine()
    }

    fn migration(&self) -> Option<&dyn crate::deployment::MigrationControl> {
        self.inner.migration()
    }
}
