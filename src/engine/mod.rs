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

mod access;
mod ascii;
pub mod blocked;
mod entry;
pub mod evict;
pub mod expire;
pub mod hash;
pub mod list;
mod mutate;
mod persist;
mod prefix;
pub mod set;
mod store;
mod table;
mod tables;
mod txn;
pub mod value;
mod watch;
pub mod zorder;
pub mod zset;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::persist::journal::Journal;
use crate::store::*;
use crate::util::glob::glob_match;
pub use access::{KeyRef, KeyWriter};
use entry::Entry;
pub use entry::Str;

/// Whether new ASCII string values are stored seven bits a character (`pack-text-values`;
/// process-wide, like the shared key prefixes).
pub fn set_pack_text(on: bool) {
    ascii::set_enabled(on);
}

pub fn pack_text() -> bool {
    ascii::enabled()
}
pub use evict::Policy;
pub use hash::HashRef;
pub use list::{Edit, ListRef};
use mutate::Changes;
pub use set::SetRef;
pub use watch::Watches;
pub use zset::ZSetRef;

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
    dbs: tables::Tables,
    hits: u64,
    misses: u64,
    expired: u64,
    evicted: u64,
    /// Sweep position per database (active expiry).
    sweep_pos: Box<[usize]>,
    /// Remaining-TTL samples from the last sweep, per database: (sum ms, count).
    ttl_samples: Box<[(u64, u64)]>,
    /// Keys clients WATCH in this shard (`watch.rs`).
    watched: watch::Registry,
    /// Keyspace notifications (`expired` found by a lazy access).
    notifier: Option<crate::pubsub::Notifier>,
    /// Clients blocked on keys of this shard (`blocked.rs`).
    blocked: blocked::Registry,
}

impl ShardData {
    fn bytes(&mut self) -> usize {
        self.dbs.total()
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
    /// Keyspace notifications for what no command does: `expired`, `evicted`, and `new`.
    notifier: OnceLock<crate::pubsub::Notifier>,
    /// Versions of lists (`list.rs`).
    list_versions: list::Versions,
    /// Clients blocked on keys (`blocked.rs`).
    blocked_clients: AtomicUsize,
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
    /// Run the active-expiry sweep on the wall clock. Off only in unit tests, which drive
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
    /// Creates the engine and starts its active-expiry sweep: a task of the current tokio
    /// runtime, or a thread when there is none. It stops when the last handle to the engine
    /// is dropped.
    pub fn new(cfg: EngineConfig) -> Engine {
        let databases = cfg.databases.max(1);
        let shards = (0..SHARDS)
            .map(|_| Shard {
                data: Mutex::new(ShardData {
                    dbs: tables::Tables::new(databases),
                    hits: 0,
                    misses: 0,
                    expired: 0,
                    evicted: 0,
                    sweep_pos: vec![0; databases].into_boxed_slice(),
                    ttl_samples: vec![(0, 0); databases].into_boxed_slice(),
                    watched: Default::default(),
                    notifier: None,
                    blocked: Default::default(),
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
            notifier: OnceLock::new(),
            list_versions: Default::default(),
            blocked_clients: AtomicUsize::new(0),
        });
        if cfg.active_expiry {
            expire::spawn_sweeper(Arc::downgrade(&inner));
        }
        Engine { inner }
    }
}

impl Engine {
    /// Where the engine announces `expired`, `evicted` and `new` keys. Set once, at start.
    pub fn set_notifier(&self, n: crate::pubsub::Notifier) {
        let i = &self.inner;
        if i.notifier.set(n.clone()).is_ok() {
            for s in 0..SHARDS {
                i.lock(s).notifier = Some(n.clone());
            }
        }
    }
}

impl Inner {
    /// Announces a keyspace event no command makes (see `set_notifier`).
    pub(crate) fn notify(&self, class: u32, event: &str, key: &[u8], db: Db) {
        if let Some(n) = self.notifier.get() {
            n.notify(class, event, key, db);
        }
    }

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

    /// The shard's data: locked now, or already held by the block running on this thread
    /// (`txn.rs`).
    fn lock(&self, shard: usize) -> txn::ShardGuard<'_> {
        match txn::held(self, shard) {
            Some(g) => g,
            None => txn::ShardGuard::Locked(self.lock_mutex(shard)),
        }
    }

    fn lock_mutex(&self, shard: usize) -> MutexGuard<'_, ShardData> {
        // A panic while holding a shard cannot leave a table half-modified (every mutation
        // completes before anything can panic), so a poisoned lock is safe to keep using.
        self.shards[shard]
            .data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, shard: usize, data: &mut ShardData) {
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
        self.publish(s, &mut g);
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
    guards: Vec<(usize, txn::ShardGuard<'a>)>,
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
        for (i, g) in &mut self.guards {
            self.inner.publish(*i, g);
        }
    }
}

/// What lazy expiry found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lazy {
    /// No such key, or a hash whose last fields just expired. Nothing is logged for those
    /// fields: their expiry times are in the log, so after a replay they expire as before.
    Absent,
    /// The key's time had passed: it is gone now.
    Expired,
    Live,
}

impl ShardData {
    /// Lazy expiry: drops the key if its time has passed, and a hash's fields whose time
    /// has passed (all of them: the command must not see one), as Redis's lazy (field)
    /// expiry. A write must log a drop of the whole key ([`Lazy::Expired`]): a replay has
    /// no clock to drop it by.
    fn lazy_expire(
        &mut self,
        db: Db,
        hash: u64,
        key: &[u8],
        now: UnixMs,
        hasher: &impl Fn(&[u8]) -> u64,
    ) -> Lazy {
        let t = &mut self.dbs[db];
        match t.find(hash, key) {
            None => Lazy::Absent,
            Some(e) if e.is_expired(now) => {
                mutate::expired(t, hash, key, hasher);
                self.expired += 1;
                if let Some(n) = &self.notifier {
                    n.notify(crate::pubsub::class::EXPIRED, "expired", key, db);
                }
                Lazy::Expired
            }
            // A hash whose earliest field expiry has passed: its expired fields go first.
            Some(e)
                if e.kind() == value::Kind::Hash
                    && HashRef::of(e)
                        .and_then(|h| h.next_expiry())
                        .is_some_and(|at| at < now) =>
            {
                let (fields, key_gone) =
                    mutate::expired_fields(t, hash, key, now, usize::MAX, hasher);
                if let Some(n) = &self.notifier {
                    if !fields.is_empty() {
                        n.notify(crate::pubsub::class::HASH, "hexpired", key, db);
                    }
                    if key_gone {
                        n.notify(crate::pubsub::class::GENERIC, "del", key, db);
                    }
                }
                if key_gone {
                    Lazy::Absent
                } else {
                    Lazy::Live
                }
            }
            Some(_) => Lazy::Live,
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
        if self.lazy_expire(db, hash, key, now, hasher) != Lazy::Live {
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
        if self.lazy_expire(db, hash, key, now, hasher) != Lazy::Live {
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        let e = self.dbs[db].find_mut(hash, key)?;
        e.set_lru(lru);
        Some(e)
    }
}

/// A string value as a reply's bytes (unpacked if it was stored packed).
fn copy_str(v: entry::Str<'_>) -> Bytes {
    match v {
        entry::Str::Plain(b) => Bytes::copy_from_slice(b),
        packed => Bytes::from(packed.to_vec()),
    }
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
        for (s, g) in guards.iter_mut().enumerate() {
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
        // One key (a session's DEL, a lock's release, most EXISTS) takes its one shard
        // without the vectors of several.
        if let [k] = keys {
            return i.with_key(k, |s, h| {
                let mut changes = Changes::new(i);
                if s.live(db, h, k, now, &hasher).is_none() {
                    return 0;
                }
                if remove {
                    changes.del(s, db, h, k);
                }
                1
            });
        }
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

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod tests;
