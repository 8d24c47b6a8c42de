//! The engine's typed API for commands on types beyond strings.
//!
//! The `Store` trait offers semantic string operations because the migration router must see
//! each one. Commands on hashes (and the other collection types) run only on the engine, so
//! instead of one trait method per command they get a key under its shard lock: read-only
//! through [`Engine::read`], or through a [`KeyWriter`] whose every change goes through
//! `mutate.rs` and is therefore logged. Each command's semantics then live in one place, its
//! function in `cmd/` (Redis's `t_hash.c`), and the engine offers only what a type needs.

use super::entry::Entry;
use super::hash::HashRef;
use super::list::{Edit, ListRef};
use super::mutate::{Changes, Record};
use super::set::{NewSet, SetRef};
use super::zset::{NewZSet, ZSetRef};
use super::*;

/// A live key, as a command reads it.
#[derive(Clone, Copy)]
pub struct KeyRef<'a>(&'a Entry);

impl<'a> KeyRef<'a> {
    pub fn type_name(&self) -> &'static str {
        self.0.kind().type_name()
    }

    /// The string value, if the key is a string.
    pub fn string(&self) -> Option<Str<'a>> {
        self.0.string()
    }

    /// The hash, if the key is one.
    pub fn hash(&self) -> Option<HashRef<'a>> {
        HashRef::of(self.0)
    }

    /// The hash, or WRONGTYPE.
    pub fn hash_or_wrongtype(&self) -> StoreResult<HashRef<'a>> {
        self.hash().ok_or(StoreError::WrongType)
    }

    /// The set, if the key is one.
    pub fn set(&self) -> Option<SetRef<'a>> {
        SetRef::of(self.0)
    }

    pub fn set_or_wrongtype(&self) -> StoreResult<SetRef<'a>> {
        self.set().ok_or(StoreError::WrongType)
    }

    /// The sorted set, if the key is one.
    pub fn zset(&self) -> Option<ZSetRef<'a>> {
        ZSetRef::of(self.0)
    }

    pub fn zset_or_wrongtype(&self) -> StoreResult<ZSetRef<'a>> {
        self.zset().ok_or(StoreError::WrongType)
    }

    /// The list, if the key is one.
    pub fn list(&self) -> Option<ListRef<'a>> {
        ListRef::of(self.0)
    }

    pub fn list_or_wrongtype(&self) -> StoreResult<ListRef<'a>> {
        self.list().ok_or(StoreError::WrongType)
    }

    /// The encoding's name, as `OBJECT ENCODING` reports it.
    pub fn encoding(&self) -> &'static str {
        if let Some(l) = self.list() {
            return l.encoding();
        }
        if let Some(h) = self.hash() {
            return h.encoding();
        }
        if let Some(z) = self.zset() {
            return z.encoding();
        }
        if let Some(s) = self.set() {
            return s.encoding();
        }
        match self.0.string() {
            Some(v) if v.len() <= 20 && crate::resp::parse::parse_i64(&v.bytes()).is_some() => {
                "int"
            }
            Some(v) if v.len() <= 44 => "embstr",
            _ => "raw",
        }
    }

    /// Absolute expiry in unix ms, 0 without a TTL.
    pub fn expire(&self) -> i64 {
        self.0.expire()
    }

    /// The value as `DUMP` carries it; an error for what Redis 7.0's format cannot hold (a
    /// hash with field TTLs).
    pub fn to_rdb(&self) -> Result<crate::util::rdb::RdbValue, &'static str> {
        use crate::util::rdb::RdbValue;
        let own = |b: &[u8]| b.to_vec();
        if let Some(s) = self.string() {
            return Ok(RdbValue::Str(s.to_vec()));
        }
        if let Some(h) = self.hash() {
            if h.next_expiry().is_some() {
                return Err("ERR DUMP of a hash with field expiry is not supported (Redis 7.0's format has no field TTLs)");
            }
            return Ok(RdbValue::Hash(
                h.iter().map(|(f, v)| (own(f), own(v))).collect(),
            ));
        }
        if let Some(s) = self.set() {
            return Ok(RdbValue::Set(s.iter().map(own).collect()));
        }
        if let Some(z) = self.zset() {
            return Ok(RdbValue::ZSet(z.asc().map(|(m, s)| (own(m), s)).collect()));
        }
        if let Some(l) = self.list() {
            return Ok(RdbValue::List(l.iter().map(own).collect()));
        }
        Err("ERR unknown value type")
    }

    /// Bytes the key costs: its record, its collection, and its share of the bucket array.
    pub fn footprint(&self) -> usize {
        self.0.footprint() + std::mem::size_of::<usize>()
    }

    /// Seconds since the key was last read or written (`OBJECT IDLETIME`).
    pub fn idle_secs(&self, lru_now: u32) -> u32 {
        lru_now.wrapping_sub(self.0.lru()) & super::entry::LRU_MASK
    }
}

/// Write access to one key under its shard lock; see the module docs.
pub struct KeyWriter<'a> {
    s: &'a mut ShardData,
    changes: Changes<'a>,
    db: Db,
    h: u64,
    key: &'a [u8],
    lru: u32,
}

impl KeyWriter<'_> {
    /// The key, if live.
    pub fn get(&self) -> Option<KeyRef<'_>> {
        self.s.dbs[self.db].find(self.h, self.key).map(KeyRef)
    }

    /// The hash at the key: `Ok(None)` if absent, WRONGTYPE if another type.
    pub fn hash(&self) -> StoreResult<Option<HashRef<'_>>> {
        match self.get() {
            None => Ok(None),
            Some(k) => k.hash_or_wrongtype().map(Some),
        }
    }

    /// Sets a hash field, creating the hash if the key is absent; true if the field is new.
    /// The caller has checked the type with [`hash`](Self::hash).
    pub fn hset(&mut self, field: &[u8], value: &[u8]) -> bool {
        self.changes
            .hset(self.s, self.db, self.h, self.key, field, value, self.lru)
    }

    /// Stores a string at the key (over any type), expiring at `expire` (0: never).
    pub fn set_string(&mut self, value: &[u8], expire: i64) {
        let exists = self.get().is_some();
        let rec = Record {
            key: self.key,
            value,
            expire,
            lru: self.lru,
        };
        self.changes.put(self.s, self.db, self.h, rec, exists);
    }

    /// The set at the key: `Ok(None)` if absent, WRONGTYPE if another type.
    pub fn set(&self) -> StoreResult<Option<SetRef<'_>>> {
        match self.get() {
            None => Ok(None),
            Some(k) => k.set_or_wrongtype().map(Some),
        }
    }

    /// Adds a set member, creating the set if the key is absent; true if it is new. The
    /// caller has checked the type with [`set`](Self::set).
    pub fn sadd(&mut self, member: &[u8]) -> bool {
        self.changes
            .sadd(self.s, self.db, self.h, self.key, member, self.lru)
    }

    /// Removes a set member (the key with the last one); whether it was there.
    pub fn srem(&mut self, member: &[u8]) -> bool {
        self.changes.srem(self.s, self.db, self.h, self.key, member)
    }

    /// Replaces whatever the key holds with a set of `members` (distinct), no TTL; deletes
    /// the key when `members` is empty (the STORE commands).
    pub fn store_set(&mut self, members: &[&[u8]]) {
        let exists = self.get().is_some();
        if members.is_empty() {
            if exists {
                self.changes.del(self.s, self.db, self.h, self.key);
            }
            return;
        }
        let e = NewSet::from_members(members).into_entry(self.key, 0, self.lru);
        self.changes.put_entry(self.s, self.db, self.h, e, exists);
    }

    /// The sorted set at the key: `Ok(None)` if absent, WRONGTYPE if another type.
    pub fn zset(&self) -> StoreResult<Option<ZSetRef<'_>>> {
        match self.get() {
            None => Ok(None),
            Some(k) => k.zset_or_wrongtype().map(Some),
        }
    }

    /// Sets a member's score, creating the sorted set if the key is absent; true if new.
    pub fn zadd(&mut self, member: &[u8], score: f64) -> bool {
        // -0 stays -0 in the big encoding only (`zset::add`), as in Redis.
        self.changes
            .zadd(self.s, self.db, self.h, self.key, member, score, self.lru)
    }

    /// Removes a member (the key with the last one); whether it was there.
    pub fn zrem(&mut self, member: &[u8]) -> bool {
        self.changes.zrem(self.s, self.db, self.h, self.key, member)
    }

    /// Replaces whatever the key holds with a sorted set of these (distinct) members, no
    /// TTL; deletes the key when there are none (ZUNIONSTORE and the other STORE forms).
    pub fn store_zset(&mut self, items: &[(&[u8], f64)]) {
        let exists = self.get().is_some();
        if items.is_empty() {
            if exists {
                self.changes.del(self.s, self.db, self.h, self.key);
            }
            return;
        }
        let e = NewZSet::from_pairs(items).into_entry(self.key, 0, self.lru);
        self.changes.put_entry(self.s, self.db, self.h, e, exists);
    }

    /// The list at the key: `Ok(None)` if absent, WRONGTYPE if another type.
    pub fn list(&self) -> StoreResult<Option<ListRef<'_>>> {
        match self.get() {
            None => Ok(None),
            Some(k) => k.list_or_wrongtype().map(Some),
        }
    }

    /// Changes the list (or creates it with a push when the key is absent); the key goes
    /// when the list ends empty. The caller has checked the type with [`list`](Self::list).
    pub fn list_edit(&mut self, edit: &Edit<'_>) {
        self.changes
            .list_edit(self.s, self.db, self.h, self.key, edit, self.lru)
    }

    /// Stores a value read by `RESTORE` (over whatever the key holds), with its expiry, as one
    /// logged value; false for an empty collection (Redis refuses those as bad data).
    pub fn store_rdb(
        &mut self,
        v: &crate::util::rdb::RdbValue,
        expire: i64,
        idle_secs: Option<u32>,
    ) -> bool {
        use crate::util::rdb::RdbValue;
        let lru = match idle_secs {
            Some(idle) => self.lru.wrapping_sub(idle) & super::entry::LRU_MASK,
            None => self.lru,
        };
        let e = match v {
            RdbValue::Str(s) => super::entry::Entry::new(self.key, s, expire, lru),
            RdbValue::List(items) if !items.is_empty() => {
                let refs: Vec<&[u8]> = items.iter().map(|x| &x[..]).collect();
                let version = self.changes.next_list_version();
                super::list::new_entry(self.key, &refs, version, expire, lru)
            }
            RdbValue::Set(items) if !items.is_empty() => {
                let mut refs: Vec<&[u8]> = items.iter().map(|x| &x[..]).collect();
                refs.sort_unstable();
                refs.dedup();
                NewSet::from_members(&refs).into_entry(self.key, expire, lru)
            }
            RdbValue::Hash(pairs) if !pairs.is_empty() => {
                let mut seen = Unique::new(pairs.len());
                let mut uniq: Vec<(&[u8], &[u8])> = Vec::with_capacity(pairs.len());
                for (f, v) in pairs.iter().rev() {
                    if seen.first(f, uniq.iter().map(|u| u.0)) {
                        uniq.push((f, v));
                    }
                }
                uniq.reverse();
                super::hash::NewHash::from_pairs(uniq.len(), uniq.into_iter())
                    .into_entry(self.key, expire, lru)
            }
            RdbValue::ZSet(items) if !items.is_empty() => {
                let mut seen = Unique::new(items.len());
                let mut uniq: Vec<(&[u8], f64)> = Vec::with_capacity(items.len());
                for (m, s) in items.iter().rev() {
                    if seen.first(m, uniq.iter().map(|u| u.0)) {
                        uniq.push((m, *s + 0.0));
                    }
                }
                NewZSet::from_pairs(&uniq).into_entry(self.key, expire, lru)
            }
            _ => return false,
        };
        let exists = self.get().is_some();
        self.changes.put_entry(self.s, self.db, self.h, e, exists);
        true
    }

    /// Removes each of `items` with `remove` (HDEL, SREM, ZREM) until the collection, and
    /// with it the key, is gone: how many were removed, and whether the key went.
    pub fn remove_each(
        &mut self,
        items: &[&[u8]],
        mut remove: impl FnMut(&mut Self, &[u8]) -> bool,
    ) -> (i64, bool) {
        let mut n = 0;
        for item in items {
            if self.get().is_none() {
                break;
            }
            n += i64::from(remove(self, item));
        }
        (n, self.get().is_none())
    }

    /// Deletes the key; whether it existed.
    pub fn del(&mut self) -> bool {
        self.changes.del(self.s, self.db, self.h, self.key)
    }

    /// Sets (or with 0 removes) a hash field's absolute expiry; false if the field is absent.
    pub fn hexpire(&mut self, field: &[u8], at: i64) -> bool {
        self.changes
            .hexpire(self.s, self.db, self.h, self.key, field, at)
    }

    /// Removes a hash field (the key with the last one); whether it was there.
    pub fn hdel(&mut self, field: &[u8]) -> bool {
        self.changes.hdel(self.s, self.db, self.h, self.key, field)
    }
}

impl Engine {
    /// Runs `f` on the live key (None if absent), counting a keyspace hit or miss and
    /// refreshing the key's LRU clock, as any read does.
    pub fn read<R>(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
        f: impl FnOnce(Option<KeyRef<'_>>) -> R,
    ) -> R {
        let i = &self.inner;
        let lru = i.lru_now();
        i.with_key(key, |s, h| {
            f(s.read(db, h, key, now, lru, &i.hasher_fn())
                .map(|e| KeyRef(e)))
        })
    }

    /// Runs `f` on the live key without counting a hit or refreshing its LRU clock (OBJECT,
    /// MEMORY USAGE: looking must not change what is looked at).
    pub fn peek<R>(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
        f: impl FnOnce(Option<KeyRef<'_>>, u32) -> R,
    ) -> R {
        let i = &self.inner;
        let lru = i.lru_now();
        i.with_key(key, |s, h| {
            f(
                s.live(db, h, key, now, &i.hasher_fn()).map(|e| KeyRef(e)),
                lru,
            )
        })
    }

    /// `COPY src dst [DB n] [REPLACE]` (`dst_db` may be `db`): whether it copied. The copy keeps
    /// the TTL; a collection is cloned whole and logged as one value.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_key(
        &self,
        db: Db,
        src: &[u8],
        dst_db: Db,
        dst: &[u8],
        replace: bool,
        now: UnixMs,
    ) -> bool {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        self.atomically(Some(&[src, dst]), || {
            let hs = i.hash(src);
            let mut g = i.lock(Inner::shard_of(hs));
            let Some(copy) = g.live(db, hs, src, now, &hasher).map(|e| e.copied(dst)) else {
                return false;
            };
            drop(g);
            let hd = i.hash(dst);
            let mut g = i.lock(Inner::shard_of(hd));
            let exists = g.live(dst_db, hd, dst, now, &hasher).is_some();
            if exists && !replace {
                return false;
            }
            Changes::new(i).put_entry(&mut g, dst_db, hd, copy, exists);
            true
        })
    }

    /// `MOVE key db`: whether it moved (not if `key` is absent or exists in `to`).
    pub fn move_key(&self, db: Db, key: &[u8], to: Db, now: UnixMs) -> bool {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        i.with_key(key, |s, h| {
            if s.live(db, h, key, now, &hasher).is_none()
                || s.live(to, h, key, now, &hasher).is_some()
            {
                return false;
            }
            let mut changes = Changes::new(i);
            let Some(e) = changes.take(s, db, h, key) else {
                return false;
            };
            changes.put_entry(s, to, h, e, false);
            true
        })
    }

    /// Runs `f` with every one of `keys` live or absent, under one multi-shard block (see
    /// `txn.rs`): multi-key reads and writes (SINTER, SMOVE, SUNIONSTORE…) are atomic.
    pub fn with_keys<R>(&self, keys: &[&[u8]], f: impl FnOnce() -> R) -> R {
        self.atomically(Some(keys), f)
    }

    /// Under `maxmemory`, makes room for a write (evicting by the policy) or refuses it with
    /// OOM. The command layer calls it before every command Redis flags `denyoom`, as Redis's
    /// `processCommand` does; commands that only remove data never need it.
    pub fn reserve_memory(&self) -> StoreResult<()> {
        evict::reserve(&self.inner)
    }

    /// Runs `f` with write access to the key. Everything `f` changes is one log frame.
    pub fn write<R>(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
        f: impl FnOnce(&mut KeyWriter<'_>) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let i = &self.inner;
        let lru = i.lru_now();
        i.with_key(key, |s, h| {
            let dropped = s.lazy_expire(db, h, key, now, &i.hasher_fn()) == super::Lazy::Expired;
            let mut w = KeyWriter {
                s,
                changes: Changes::new(i),
                db,
                h,
                key,
                lru,
            };
            if dropped {
                w.changes.expired_before_write(db, key);
            }
            f(&mut w)
        })
    }
}

/// Which fields (members) of a restored collection come first, when the payload repeats
/// one. A session hash has a handful of fields: those are compared with the ones kept so
/// far, which costs less than hashing each into a set (one allocation and a SipHash per
/// field; measured at about 4% of a bulk copy into the engine). Past [`Unique::LINEAR`]
/// entries the set is used.
enum Unique<'a> {
    Few,
    Many(std::collections::HashSet<&'a [u8]>),
}

impl<'a> Unique<'a> {
    const LINEAR: usize = 16;

    fn new(n: usize) -> Self {
        if n <= Self::LINEAR {
            Unique::Few
        } else {
            Unique::Many(std::collections::HashSet::with_capacity(n))
        }
    }

    /// True the first time `item` is offered; `kept` are the items accepted so far.
    fn first<'k>(&mut self, item: &'a [u8], mut kept: impl Iterator<Item = &'k [u8]>) -> bool {
        match self {
            Unique::Few => !kept.any(|k| k == item),
            Unique::Many(set) => set.insert(item),
        }
    }
}
