//! `WATCH`: optimistic locking for `MULTI`/`EXEC`.
//!
//! Each shard keeps a registry of its watched keys: (database, key) → the flags of the
//! clients watching it. Every change to a key goes through `mutate.rs`, and every mutator
//! there calls [`touch`] for the key it changed (FLUSHDB, FLUSHALL and SWAPDB touch each
//! watched key that existed in the databases involved), so a watcher cannot miss a write:
//! the same construction that makes every write logged. With no watcher in a shard the cost
//! is one `is_empty` check per write.
//!
//! A key that *expires* after `WATCH` also fails the `EXEC` (Redis 6.0.9 and later). Expiry
//! removes keys without a write (lazily or by the sweeper), so instead of a touch the watch
//! remembers the key's expiry time, and `EXEC` compares it with its clock.
//!
//! [`Watches`] is a client's side: its flag and keys, unregistered on `UNWATCH`, `EXEC`,
//! `DISCARD`, `RESET` and when the client goes away (drop).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Db, Engine, Inner, ShardData, UnixMs};

/// A shard's watched keys.
pub(super) type Registry = HashMap<(Db, Box<[u8]>), Vec<Arc<AtomicBool>>>;

/// Marks the watchers of `key` in `db`.
#[inline]
pub(super) fn touch(s: &ShardData, db: Db, key: &[u8]) {
    if s.watched.is_empty() {
        return;
    }
    if let Some(flags) = s.watched.get(&(db, Box::from(key))) {
        for f in flags {
            f.store(true, Ordering::Release);
        }
    }
}

/// Marks the watchers of every watched key of `db` that exists in `db` or `other` (FLUSHDB
/// with `other == db`, SWAPDB, FLUSHALL per database), as Redis's
/// `touchAllWatchedKeysInDb`.
pub(super) fn touch_db(s: &ShardData, db: Db, other: Db, hasher: &impl Fn(&[u8]) -> u64) {
    for ((d, key), flags) in &s.watched {
        if *d != db {
            continue;
        }
        let h = hasher(key);
        if s.dbs[db].find(h, key).is_some() || s.dbs[other].find(h, key).is_some() {
            for f in flags {
                f.store(true, Ordering::Release);
            }
        }
    }
}

/// One client's watches.
pub struct Watches {
    engine: Engine,
    flag: Arc<AtomicBool>,
    /// (database, key, the key's expiry when watched: 0 if it had none or was absent).
    keys: Vec<(Db, Box<[u8]>, UnixMs)>,
}

impl Watches {
    pub fn new(engine: &Engine) -> Watches {
        Watches {
            engine: engine.clone(),
            flag: Arc::new(AtomicBool::new(false)),
            keys: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The watched keys (EXEC locks their shards too, so its check is atomic with its run).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(|(_, k, _)| &**k)
    }

    /// Starts watching `key` (again watching a key already watched does nothing, as Redis).
    pub fn add(&mut self, db: Db, key: &[u8], now: UnixMs) {
        if self.keys.iter().any(|(d, k, _)| *d == db && **k == *key) {
            return;
        }
        let i = &self.engine.inner;
        let hash = i.hash(key);
        let mut g = i.lock(Inner::shard_of(hash));
        let expire = match g.dbs[db].find(hash, key) {
            Some(e) if !e.is_expired(now) => e.expire(),
            _ => 0,
        };
        g.watched
            .entry((db, Box::from(key)))
            .or_default()
            .push(self.flag.clone());
        drop(g);
        self.keys.push((db, key.into(), expire));
    }

    /// Whether a watched key changed or expired since it was watched. Call it with the
    /// watched keys' shards held (inside [`Engine::atomically`]).
    pub fn broken(&self, now: UnixMs) -> bool {
        self.flag.load(Ordering::Acquire)
            || self.keys.iter().any(|&(_, _, exp)| exp != 0 && exp < now)
    }

    /// Stops watching everything.
    pub fn clear(&mut self) {
        let i = &self.engine.inner;
        for (db, key, _) in self.keys.drain(..) {
            let hash = i.hash(&key);
            let mut g = i.lock(Inner::shard_of(hash));
            let id = (db, key);
            if let Some(flags) = g.watched.get_mut(&id) {
                flags.retain(|f| !Arc::ptr_eq(f, &self.flag));
                if flags.is_empty() {
                    g.watched.remove(&id);
                }
            }
        }
        self.flag.store(false, Ordering::Release);
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("keys", &self.keys.len())
            .finish()
    }
}
