//! The embedded in-memory engine: the default [`Store`].
//!
//! Layout: `SHARDS` independent shards, each a mutex over one hash [`Table`] per logical
//! database. A key's shard is chosen by the top bits of its (seeded) hash, its bucket by the
//! low bits. There is no global lock: a command locks only the shard(s) of its keys for the
//! few hundred nanoseconds it needs, so every tokio worker thread does useful work at once.
//! Multi-key commands (MSET, MGET, DEL, RENAME…) lock their shards in index order, which makes
//! them atomic as in Redis and rules out deadlock.
//!
//! Expiry is lazy on every access (an expired key is never returned) plus an active sweep in
//! a background thread ([`expire`]); eviction under `maxmemory` is in [`evict`].
//!
//! **Hashing.** Session ids come from cookies, so a client chooses the keys. With a fast
//! unkeyed (or weakly keyed) hash an attacker can compute ids that share a bucket and turn
//! every lookup into a walk of one long chain (hash flooding). Keys are hashed with SipHash-1-3
//! under a random 128-bit key drawn from the OS per process (`std`'s `RandomState`, the
//! choice Redis makes with SipHash too): without the key, collisions cannot be computed
//! offline. Its cost, measured against the previous foldhash, is in docs/BENCHMARKS.md.

mod entry;
pub mod evict;
pub mod expire;
mod mutate;
mod persist;
mod table;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::persist::journal::Journal;
use crate::store::*;
use crate::util::glob::glob_match;
use entry::Entry;
pub use evict::Policy;
use mutate::{Changes, Record};
use table::Table;

/// Number of shards: a power of two well above the core count, so two threads rarely want
/// the same shard, and small enough that whole-keyspace operations stay cheap.
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
/// SCAN cursors carry the shard index in their top byte and the table cursor below it.
const CURSOR_SHARD_SHIFT: u32 = 56;
const CURSOR_TABLE_MASK: u64 = (1 << CURSOR_SHARD_SHIFT) - 1;
/// Buckets visited per lock acquisition by long walks (SCAN, KEYS, sweeps), so a big walk
/// never holds a shard for long.
const WALK_CHUNK: usize = 256;

/// Per-shard data behind the shard's mutex.
pub(crate) struct ShardData {
    dbs: Box<[Table]>,
    hits: u64,
    misses: u64,
    expired: u64,
    evicted: u64,
    /// Sweep position per database (active expiry).
    sweep_pos: Box<[usize]>,
    /// Remaining-TTL samples from the last sweep, per database: (sum ms, count).
    ttl_samples: Box<[(u64, u64)]>,
}

impl ShardData {
    fn bytes(&self) -> usize {
        self.dbs.iter().map(Table::bytes).sum()
    }
}

/// One shard, padded to its own cache lines so neighbouring locks do not false-share.
#[repr(align(128))]
pub(crate) struct Shard {
    data: Mutex<ShardData>,
    /// Bytes held, published after every mutation for lock-free `used_memory` reads.
    bytes: AtomicUsize,
}

pub(crate) struct Inner {
    shards: Box<[Shard]>,
    hasher: std::hash::RandomState,
    databases: usize,
    maxmemory: AtomicU64,
    policy: AtomicU8,
    peak: AtomicU64,
    /// Seconds since start, updated by the sweeper; the LRU clock (as Redis's `lruclock`).
    lru_clock: AtomicU32,
    started: Instant,
    /// The append-only log, once persistence has loaded the data and attached it.
    journal: OnceLock<Arc<Journal>>,
    /// A snapshot is being written (SWAPDB waits for it to end).
    snapshot_active: AtomicBool,
}

/// The embedded engine. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Settings the engine is created with.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub databases: usize,
    pub maxmemory: u64,
    pub policy: Policy,
    /// Run the active-expiry thread on the wall clock. Off only in unit tests, which drive
    /// `expire::sweep_tick` with their own clock and must not race a real-time sweeper.
    pub active_expiry: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            databases: 16,
            maxmemory: 0,
            policy: Policy::NoEviction,
            active_expiry: true,
        }
    }
}

impl Engine {
    /// Creates the engine and starts its active-expiry thread (which stops when the last
    /// handle to the engine is dropped).
    pub fn new(cfg: EngineConfig) -> Engine {
        let databases = cfg.databases.max(1);
        let shards = (0..SHARDS)
            .map(|_| Shard {
                data: Mutex::new(ShardData {
                    dbs: (0..databases).map(|_| Table::new()).collect(),
                    hits: 0,
                    misses: 0,
                    expired: 0,
                    evicted: 0,
                    sweep_pos: vec![0; databases].into_boxed_slice(),
                    ttl_samples: vec![(0, 0); databases].into_boxed_slice(),
                }),
                bytes: AtomicUsize::new(0),
            })
            .collect();
        let inner = Arc::new(Inner {
            shards,
            hasher: std::hash::RandomState::new(),
            databases,
            maxmemory: AtomicU64::new(cfg.maxmemory),
            policy: AtomicU8::new(cfg.policy as u8),
            peak: AtomicU64::new(0),
            lru_clock: AtomicU32::new(0),
            started: Instant::now(),
            journal: OnceLock::new(),
            snapshot_active: AtomicBool::new(false),
        });
        if cfg.active_expiry {
            expire::spawn_sweeper(Arc::downgrade(&inner));
        }
        Engine { inner }
    }
}

impl Inner {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard_of(hash: u64) -> usize {
        (hash >> (64 - SHARD_BITS)) as usize
    }

    fn hasher_fn(&self) -> impl Fn(&[u8]) -> u64 + '_ {
        move |k| self.hash(k)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ShardData> {
        // A panic while holding a shard cannot leave a table half-modified (every mutation
        // completes before anything can panic), so a poisoned lock is safe to keep using.
        self.shards[shard]
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, shard: usize, data: &ShardData) {
        self.shards[shard]
            .bytes
            .store(data.bytes(), Ordering::Relaxed);
    }

    /// Runs `f` on the shard of `key` and republishes the shard's byte count.
    fn with_key<R>(&self, key: &[u8], f: impl FnOnce(&mut ShardData, u64) -> R) -> R {
        let hash = self.hash(key);
        let s = Self::shard_of(hash);
        let mut g = self.lock(s);
        let r = f(&mut g, hash);
        self.publish(s, &g);
        r
    }

    /// Locks the shards of all `keys` in index order (deadlock-free, atomic across them).
    fn lock_keys(&self, keys: &[&[u8]]) -> MultiLock<'_> {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k)).collect();
        let mut idx: Vec<usize> = hashes.iter().map(|h| Self::shard_of(*h)).collect();
        idx.sort_unstable();
        idx.dedup();
        let guards = idx.iter().map(|&i| (i, self.lock(i))).collect();
        MultiLock {
            inner: self,
            guards,
            hashes,
        }
    }

    pub(crate) fn used_memory(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.bytes.load(Ordering::Relaxed) as u64)
            .sum()
    }

    pub(crate) fn lru_now(&self) -> u32 {
        self.lru_clock.load(Ordering::Relaxed)
    }

    fn policy(&self) -> Policy {
        Policy::from_u8(self.policy.load(Ordering::Relaxed))
    }
}

/// Several shard guards held at once.
struct MultiLock<'a> {
    inner: &'a Inner,
    guards: Vec<(usize, MutexGuard<'a, ShardData>)>,
    hashes: Vec<u64>,
}

impl MultiLock<'_> {
    /// The shard data and hash for the `i`-th key.
    fn key(&mut self, i: usize) -> (&mut ShardData, u64) {
        let h = self.hashes[i];
        let s = Inner::shard_of(h);
        let pos = self
            .guards
            .iter()
            .position(|(idx, _)| *idx == s)
            .unwrap_or(0);
        (&mut self.guards[pos].1, h)
    }
}

impl Drop for MultiLock<'_> {
    fn drop(&mut self) {
        for (i, g) in &self.guards {
            self.inner.publish(*i, g);
        }
    }
}

impl ShardData {
    /// Lazy expiry: drop the key if its time has passed. Returns whether it is live.
    fn expire_if_needed(
        &mut self,
        db: Db,
        hash: u64,
        key: &[u8],
        now: UnixMs,
        hasher: &impl Fn(&[u8]) -> u64,
    ) -> bool {
        let t = &mut self.dbs[db];
        match t.find(hash, key) {
            None => false,
            Some(e) if e.is_expired(now) => {
                mutate::expired(t, hash, key, hasher);
                self.expired += 1;
                false
            }
            Some(_) => true,
        }
    }

    fn live(
        &mut self,
        db: Db,
        hash: u64,
        key: &[u8],
        now: UnixMs,
        hasher: &impl Fn(&[u8]) -> u64,
    ) -> Option<&mut Entry> {
        if !self.expire_if_needed(db, hash, key, now, hasher) {
            return None;
        }
        self.dbs[db].find_mut(hash, key)
    }

    /// Read access that counts hits/misses and refreshes the LRU clock.
    fn read(
        &mut self,
        db: Db,
        hash: u64,
        key: &[u8],
        now: UnixMs,
        lru: u32,
        hasher: &impl Fn(&[u8]) -> u64,
    ) -> Option<&mut Entry> {
        if !self.expire_if_needed(db, hash, key, now, hasher) {
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        let e = self.dbs[db].find_mut(hash, key)?;
        e.set_lru(lru);
        Some(e)
    }
}

fn copy(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

/// Redis's integer parsing of a stored value for INCR: strict, at most 20 characters.
fn parse_stored_int(v: &[u8]) -> Option<i64> {
    crate::resp::parse::parse_i64(v)
}

impl Engine {
    /// Empties one database (`Some`) or all, atomically across shards (every shard lock is
    /// held, so the log's FLUSH record sits exactly between the writes before and after it).
    /// The records are freed after the locks are released.
    fn flush(&self, db: Option<Db>) {
        let i = &self.inner;
        let mut guards: Vec<_> = (0..SHARDS).map(|s| i.lock(s)).collect();
        let old = {
            let mut shards: Vec<&mut ShardData> = guards.iter_mut().map(|g| &mut **g).collect();
            Changes::new(i).flush(&mut shards, db)
        };
        for (s, g) in guards.iter().enumerate() {
            i.publish(s, g);
        }
        drop(guards);
        drop(old);
    }

    /// How many of `keys` are live (a key named twice counts twice), under one multi-shard
    /// lock; with `remove`, deletes them too (DEL/UNLINK).
    fn count_live(&self, db: Db, keys: &[&[u8]], now: UnixMs, remove: bool) -> u64 {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        let mut locks = i.lock_keys(keys);
        let mut changes = Changes::new(i);
        let mut n = 0;
        for (idx, k) in keys.iter().enumerate() {
            let (s, h) = locks.key(idx);
            if s.live(db, h, k, now, &hasher).is_some() {
                if remove {
                    changes.del(s, db, h, k);
                }
                n += 1;
            }
        }
        n
    }
}

impl Store for Engine {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        let lru = i.lru_now();
        Ok(i.with_key(key, |s, h| {
            s.read(db, h, key, now, lru, &i.hasher_fn())
                .map(|e| copy(e.value()))
        }))
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
        Ok(i.with_key(key, |s, h| {
            let v = copy(s.read(db, h, key, now, lru, &hasher)?.value());
            let mut changes = Changes::new(i);
            match ttl {
                TtlChange::Keep => {}
                TtlChange::Clear => changes.expire(s, db, h, key, 0),
                TtlChange::At(at) if at <= now => {
                    changes.del(s, db, h, key);
                }
                TtlChange::At(at) => changes.expire(s, db, h, key, at),
            }
            Some(v)
        }))
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        let i = &self.inner;
        let lru = i.lru_now();
        let hasher = i.hasher_fn();
        Ok(i.with_key(key, |s, h| {
            let v = copy(s.read(db, h, key, now, lru, &hasher)?.value());
            Changes::new(i).del(s, db, h, key);
            Some(v)
        }))
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
                s.read(db, h, k, now, lru, &hasher).map(|e| copy(e.value()))
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
        Ok(i.with_key(key, |s, h| {
            let (exists, old_expire, previous) = match s.live(db, h, key, now, &hasher) {
                Some(e) => (
                    true,
                    e.expire(),
                    if opts.get {
                        Some(copy(e.value()))
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
            SetOutcome {
                written: allowed,
                previous,
            }
        }))
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
            let cur = s.live(db, h, key, now, &hasher).map(|e| e.value().len());
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
        Ok(i.with_key(key, |s, h| {
            s.read(db, h, key, now, lru, &i.hasher_fn())
                .map_or(0, |e| e.value().len() as u64)
        }))
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
                    parse_stored_int(e.value()).ok_or(StoreError::NotInteger)?,
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
                .is_some_and(|e| e.value() == expected);
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
                .map(|_| KeyType::String)
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
        let Some(e) = s.live(db, hs, src, now, &hasher) else {
            return Err(StoreError::NoSuchKey);
        };
        let (value, expire, lru) = (e.value().to_vec(), e.expire(), e.lru());
        if src == dst {
            return Ok(!only_if_absent);
        }
        let (d, hd) = locks.key(1);
        let dst_exists = d.live(db, hd, dst, now, &hasher).is_some();
        if dst_exists && only_if_absent {
            return Ok(false);
        }
        // One frame: replay moves the key whole or (torn) not at all.
        let mut changes = Changes::new(i);
        changes.put(
            d,
            db,
            hd,
            Record {
                key: dst,
                value: &value,
                expire,
                lru,
            },
            dst_exists,
        );
        let (s, hs) = locks.key(0);
        changes.del(s, db, hs, src);
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
        let mut found: Vec<Bytes> = Vec::new();
        let type_ok = filter
            .key_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case(b"string"));
        while found.len() < count && budget > 0 {
            let g = i.lock(shard);
            let table = &g.dbs[db];
            for _ in 0..WALK_CHUNK {
                tc = table.scan_bucket(tc, |e| {
                    if !e.is_expired(now) {
                        found.push(copy(e.key()));
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
        found.retain(|k| {
            type_ok
                && filter
                    .pattern
                    .as_deref()
                    .is_none_or(|p| glob_match(p, k, false))
        });
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
                        if !e.is_expired(now) && (all || glob_match(pattern, e.key(), false)) {
                            out.push(copy(e.key()));
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
                return Ok(Some(copy(e.key())));
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

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod tests;
