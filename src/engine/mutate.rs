//! The one way the engine changes its data: [`Changes`].
//!
//! Each mutator here applies one change to a table and appends the change's *result* to the
//! command's log frame (a SET of the whole value, a DEL, an absolute EXPIREAT; see
//! `persist/format.rs`). The tables' mutating methods take a [`Token`] that only this file
//! can make, so no code elsewhere in the engine can change a table and forget the log:
//! durability by construction instead of a second call to remember.
//!
//! A command makes one `Changes` and passes it to every mutator it calls, so its operations
//! form one frame: replay applies all of them or, after a torn write, none. The frame is
//! opened at the first change (a command that changes nothing never touches the journal) and
//! closed when the `Changes` is dropped. That must happen while the command still holds its
//! shard locks, so that the log orders two writes to a key as they were applied: create it
//! *after* taking the locks, and it is dropped before them.
//!
//! Two kinds of change are deliberately not logged, and they are made here too, by name:
//! dropping a key that has expired ([`expired`]; its end is already in the log as an
//! absolute time), and start-up replay ([`Replay`]; it applies what the log says).

use super::entry::Entry;
use super::hash::{self, HashRef};
use super::list::{self, Edit, ListRef};
use super::persist::{db32, whole_value};
use super::set::{self, NewSet, SetRef};
use super::table::Table;
use super::value::Kind;
use super::watch::{touch, touch_db};
use super::zset::{self, NewZSet, ZSetRef};
use super::{Db, Inner, ShardData};
use crate::persist::format::Op;
use crate::persist::journal::FrameWriter;
use crate::pubsub::class;

/// Permission to change a table. Only this module can make one.
#[derive(Clone, Copy)]
pub(super) struct Token(());

/// For the table's own unit tests.
#[cfg(test)]
pub(super) fn test_token() -> Token {
    Token(())
}

/// What a write stores: key, value, absolute expiry (0 = none) and LRU clock.
pub(super) struct Record<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expire: i64,
    pub lru: u32,
}

/// One command's changes and its log frame (see the module docs).
pub(super) struct Changes<'a> {
    inner: &'a Inner,
    frame: Option<FrameWriter<'a>>,
}

impl<'a> Changes<'a> {
    pub fn new(inner: &'a Inner) -> Self {
        Changes { inner, frame: None }
    }

    fn record(&mut self, op: Op<'_>) {
        if super::txn::record(self.inner, &op) {
            return; // inside EXEC: the block's one frame
        }
        if let Some(j) = self.inner.journal.get() {
            self.frame.get_or_insert_with(|| j.begin_frame()).push(&op);
        }
    }

    /// Creates or overwrites `rec.key` (`exists`: the caller found it live).
    pub fn put(&mut self, s: &mut ShardData, db: Db, hash: u64, rec: Record<'_>, exists: bool) {
        touch(s, db, rec.key);
        write(&mut s.dbs[db], hash, &rec, exists, &self.inner.hasher_fn());
        if !exists {
            self.inner.notify(class::NEW, "new", rec.key, db);
        }
        self.record(Op::Set {
            db: db32(db),
            key: rec.key,
            value: rec.value,
            expire: rec.expire,
        });
    }

    /// A new list version (a list made whole, by RESTORE).
    pub fn next_list_version(&self) -> u64 {
        self.inner.list_versions.next()
    }

    /// Stores a whole record (RENAME, COPY, RESTORE) over whatever `key` held (`exists`: the
    /// caller found it live). Logs the whole value.
    pub fn put_entry(&mut self, s: &mut ShardData, db: Db, hash: u64, entry: Entry, exists: bool) {
        let key = entry.key().to_vec();
        touch(s, db, &key);
        let t = &mut s.dbs[db];
        let hasher = self.inner.hasher_fn();
        if exists {
            t.remove(hash, &key, &hasher, Token(()));
        }
        whole_value(db32(db), &entry, |op| self.record(op));
        if !exists {
            self.inner.notify(class::NEW, "new", &key, db);
        }
        t.insert_new(hash, entry, &hasher, Token(()));
    }

    /// Sets a field of the hash at `key`, creating the hash (no TTL) when `key` is absent. The
    /// caller has checked that a live `key` is a hash. True if the field is new.
    #[allow(clippy::too_many_arguments)]
    pub fn hset(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        field: &[u8],
        value: &[u8],
        lru: u32,
    ) -> bool {
        touch(s, db, key);
        let is_new = self.upsert(
            s,
            db,
            h,
            key,
            |e| hash::set_field(e, field, value),
            || (hash::new_value(field, value).into_entry(key, 0, lru), true),
        );
        self.record(Op::HSet {
            db: db32(db),
            key,
            field,
            value,
        });
        is_new
    }

    /// Removes a field of the hash at `key` (a live hash: the caller checked), and the key
    /// with its last field. Whether the field was there.
    pub fn hdel(&mut self, s: &mut ShardData, db: Db, h: u64, key: &[u8], field: &[u8]) -> bool {
        let op = Op::HDel {
            db: db32(db),
            key,
            field,
        };
        self.remove_elem(s, db, h, key, |e| hash::del_field(e, field), op)
    }

    /// Changes the collection at `key` in place with `change`, or, when `key` is absent,
    /// inserts what `create` builds (a new key, announced as such). The caller logs.
    fn upsert<R>(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        change: impl FnOnce(&mut Entry) -> R,
        create: impl FnOnce() -> (Entry, R),
    ) -> R {
        let t = &mut s.dbs[db];
        match t.update(h, key, Token(()), change) {
            Some(r) => r,
            None => {
                let (e, r) = create();
                t.insert_new(h, e, &self.inner.hasher_fn(), Token(()));
                self.inner.notify(class::NEW, "new", key, db);
                r
            }
        }
    }

    /// Removes one element of the collection at `key` with `remove`; if it was there,
    /// touches the watchers, logs `op` and drops a collection left empty.
    fn remove_elem(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        remove: impl FnOnce(&mut Entry) -> bool,
        op: Op<'_>,
    ) -> bool {
        let removed = s.dbs[db].update(h, key, Token(()), remove).unwrap_or(false);
        if removed {
            touch(s, db, key);
            self.record(op);
            drop_if_empty(&mut s.dbs[db], h, key, &self.inner.hasher_fn());
        }
        removed
    }

    /// Adds a member to the set at `key`, creating the set (no TTL) when `key` is absent. The
    /// caller has checked that a live `key` is a set. True if the member is new.
    #[allow(clippy::too_many_arguments)]
    pub fn sadd(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        member: &[u8],
        lru: u32,
    ) -> bool {
        let added = self.upsert(
            s,
            db,
            h,
            key,
            |e| set::add(e, member),
            || {
                (
                    NewSet::from_members(&[member]).into_entry(key, 0, lru),
                    true,
                )
            },
        );
        if added {
            touch(s, db, key);
            self.record(Op::SAdd {
                db: db32(db),
                key,
                member,
            });
        }
        added
    }

    /// Removes a member of the set at `key` (a live set), and the key with its last member.
    pub fn srem(&mut self, s: &mut ShardData, db: Db, h: u64, key: &[u8], member: &[u8]) -> bool {
        let op = Op::SRem {
            db: db32(db),
            key,
            member,
        };
        self.remove_elem(s, db, h, key, |e| set::remove(e, member), op)
    }

    /// Sets a member's score in the sorted set at `key`, creating it (no TTL) when `key` is
    /// absent. The caller has checked that a live `key` is a sorted set. True if new.
    #[allow(clippy::too_many_arguments)]
    pub fn zadd(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        member: &[u8],
        score: f64,
        lru: u32,
    ) -> bool {
        touch(s, db, key);
        let added = self.upsert(
            s,
            db,
            h,
            key,
            |e| zset::add(e, member, score),
            || {
                (
                    NewZSet::from_pairs(&[(member, score)]).into_entry(key, 0, lru),
                    true,
                )
            },
        );
        self.record(Op::ZAdd {
            db: db32(db),
            key,
            member,
            score_bits: score.to_bits(),
        });
        added
    }

    /// Removes a member of the sorted set at `key` (a live one), and the key with the last.
    pub fn zrem(&mut self, s: &mut ShardData, db: Db, h: u64, key: &[u8], member: &[u8]) -> bool {
        let op = Op::ZRem {
            db: db32(db),
            key,
            member,
        };
        self.remove_elem(s, db, h, key, |e| zset::remove(e, member), op)
    }

    /// Applies `edit` to the list at `key` (a live list: the caller checked), or creates the
    /// list with a push when `key` is absent; deletes the key when the list ends empty.
    /// Logged with the list's version before and after (see `list.rs`).
    #[allow(clippy::too_many_arguments)]
    pub fn list_edit(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        edit: &Edit<'_>,
        lru: u32,
    ) {
        touch(s, db, key);
        let version = self.inner.list_versions.next();
        let t = &mut s.dbs[db];
        let prev = match t.find(h, key).and_then(ListRef::of) {
            Some(l) => {
                let prev = l.version();
                t.update(h, key, Token(()), |e| list::apply(e, edit, version));
                prev
            }
            None => {
                // Only a push creates a list, and a push of nothing creates nothing (no
                // command sends one; Redis never keeps an empty list).
                let elems = match edit {
                    Edit::PushHead(v) | Edit::PushTail(v) if !v.is_empty() => v.clone(),
                    _ => return,
                };
                let e = list::new_entry(key, &elems, version, 0, lru);
                t.insert_new(h, e, &self.inner.hasher_fn(), Token(()));
                self.inner.notify(class::NEW, "new", key, db);
                0
            }
        };
        let encoded = list::encode(edit);
        self.record(Op::LEdit {
            db: db32(db),
            key,
            prev,
            version,
            edit: &encoded,
        });
        drop_if_empty(&mut s.dbs[db], h, key, &self.inner.hasher_fn());
    }

    /// Sets (or with 0 removes) the expiry of a field of the hash at `key` (a live hash);
    /// false if the field is absent.
    pub fn hexpire(
        &mut self,
        s: &mut ShardData,
        db: Db,
        h: u64,
        key: &[u8],
        field: &[u8],
        at: i64,
    ) -> bool {
        let done = s.dbs[db]
            .update(h, key, Token(()), |e| hash::set_field_expire(e, field, at))
            .unwrap_or(false);
        if done {
            touch(s, db, key);
            self.record(Op::HPExpireAt {
                db: db32(db),
                key,
                field,
                at,
            });
        }
        done
    }

    /// Appends to a live key's value; the new length, or None if it is absent.
    pub fn append(
        &mut self,
        s: &mut ShardData,
        db: Db,
        hash: u64,
        key: &[u8],
        tail: &[u8],
    ) -> Option<usize> {
        touch(s, db, key);
        let t = &mut s.dbs[db];
        let n = t.append_value(hash, key, tail, Token(()))?;
        if let Some(e) = t.find(hash, key) {
            // The whole new value: replay never depends on what it appended to.
            self.record(Op::Set {
                db: db32(db),
                key,
                value: &e.string().map(|s| s.bytes()).unwrap_or_default(),
                expire: e.expire(),
            });
        }
        Some(n)
    }

    /// A write found its key expired and dropped it ([`expired`]): logged as DEL here,
    /// because what the write does next is logged as a change to a key (HSET, SADD, LPUSH…),
    /// and replay, which ignores the clock, would apply it to the old value, whose expiry
    /// would then take the new data with it. (Redis logs a DEL for every key it expires.)
    pub fn expired_before_write(&mut self, db: Db, key: &[u8]) {
        self.record(Op::Del { db: db32(db), key });
    }

    /// Removes `key` and returns its record (RENAME); logged as DEL.
    pub fn take(&mut self, s: &mut ShardData, db: Db, hash: u64, key: &[u8]) -> Option<Entry> {
        let e = s.dbs[db].remove(hash, key, &self.inner.hasher_fn(), Token(()))?;
        touch(s, db, key);
        self.record(Op::Del { db: db32(db), key });
        Some(e)
    }

    /// Deletes `key`; whether it was there.
    pub fn del(&mut self, s: &mut ShardData, db: Db, hash: u64, key: &[u8]) -> bool {
        let removed = s.dbs[db]
            .remove(hash, key, &self.inner.hasher_fn(), Token(()))
            .is_some();
        if removed {
            touch(s, db, key);
            self.record(Op::Del { db: db32(db), key });
        }
        removed
    }

    /// Sets (or with 0 clears) a key's absolute expiry.
    pub fn expire(&mut self, s: &mut ShardData, db: Db, hash: u64, key: &[u8], at: i64) {
        if s.dbs[db].set_expire(hash, key, at, Token(())) {
            touch(s, db, key);
            self.record(Op::ExpireAt {
                db: db32(db),
                key,
                at,
            });
        }
    }

    /// Empties one database (`Some`) or all in the shards given; returns the old tables, to
    /// be freed after the locks are released. The caller holds every shard.
    pub fn flush(&mut self, shards: &mut [&mut ShardData], db: Option<Db>) -> Vec<Table> {
        let mut old = Vec::new();
        let hasher = self.inner.hasher_fn();
        for s in shards.iter_mut() {
            if !s.watched.is_empty() {
                let n = s.dbs.len();
                for d in db.map_or(0..n, |d| d..d + 1) {
                    touch_db(s, d, d, &hasher);
                }
            }
            match db {
                Some(db) => old.push(std::mem::take(&mut s.dbs[db])),
                None => old.extend(s.dbs.iter_mut().map(std::mem::take)),
            }
        }
        self.record(match db {
            Some(db) => Op::FlushDb { db: db32(db) },
            None => Op::FlushAll,
        });
        old
    }

    /// Swaps two databases in the shards given. The caller holds every shard.
    pub fn swap_db(&mut self, shards: &mut [&mut ShardData], a: Db, b: Db) {
        let hasher = self.inner.hasher_fn();
        for s in shards.iter_mut() {
            if !s.watched.is_empty() {
                touch_db(s, a, b, &hasher);
                touch_db(s, b, a, &hasher);
            }
            s.dbs.swap(a, b);
            s.sweep_pos.swap(a, b);
        }
        self.record(Op::SwapDb {
            a: db32(a),
            b: db32(b),
        });
    }
}

/// The table write under every SET: overwrite in one walk, or insert.
fn write(t: &mut Table, hash: u64, rec: &Record<'_>, exists: bool, hasher: &impl Fn(&[u8]) -> u64) {
    if exists {
        t.overwrite(hash, rec.key, rec.value, rec.expire, rec.lru, Token(()));
    } else {
        t.insert_new(
            hash,
            Entry::new(rec.key, rec.value, rec.expire, rec.lru),
            hasher,
            Token(()),
        );
    }
}

/// Removes `key` if it holds an empty collection: Redis never keeps one.
fn drop_if_empty(t: &mut Table, h: u64, key: &[u8], hasher: &impl Fn(&[u8]) -> u64) {
    let empty = t.find(h, key).is_some_and(|e| match e.kind() {
        Kind::HashPack | Kind::Hash => HashRef::of(e).is_some_and(|x| x.is_empty()),
        Kind::SetPack | Kind::Set => SetRef::of(e).is_some_and(|x| x.is_empty()),
        Kind::ZSetPack | Kind::ZSet => ZSetRef::of(e).is_some_and(|x| x.is_empty()),
        Kind::ListPack | Kind::List => ListRef::of(e).is_some_and(|x| x.is_empty()),
        Kind::Str => false,
    });
    if empty {
        t.remove(h, key, hasher, Token(()));
    }
}

/// Drops up to `max` fields of the hash at `key` that expired at `now`, and the key with its
/// last field. Not logged, for the reason expired keys are not: the log holds the fields'
/// absolute expiry times. Returns the fields and whether the key went.
pub(super) fn expired_fields(
    t: &mut Table,
    hash: u64,
    key: &[u8],
    now: i64,
    max: usize,
    hasher: &impl Fn(&[u8]) -> u64,
) -> (Vec<Box<[u8]>>, bool) {
    let gone = t
        .update(hash, key, Token(()), |e| hash::pop_expired(e, now, max))
        .unwrap_or_default();
    let before = t.find(hash, key).is_some();
    if !gone.is_empty() {
        drop_if_empty(t, hash, key, hasher);
    }
    let key_gone = before && t.find(hash, key).is_none();
    (gone, key_gone)
}

/// Drops a key found expired. Not logged here: the log already holds its absolute expiry,
/// so replay (followed by the purge of expired keys) ends without it too. A write that
/// follows logs the drop first ([`Changes::expired_before_write`]).
pub(super) fn expired(t: &mut Table, hash: u64, key: &[u8], hasher: &impl Fn(&[u8]) -> u64) {
    t.remove(hash, key, hasher, Token(()));
}

/// Start-up replay: applies logged operations without logging them again.
pub(super) struct Replay;

impl Replay {
    pub fn put(
        t: &mut Table,
        hash: u64,
        rec: Record<'_>,
        exists: bool,
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        write(t, hash, &rec, exists, hasher);
    }

    pub fn del(t: &mut Table, hash: u64, key: &[u8], hasher: &impl Fn(&[u8]) -> u64) {
        t.remove(hash, key, hasher, Token(()));
    }

    pub fn expire(t: &mut Table, hash: u64, key: &[u8], at: i64) {
        t.set_expire(hash, key, at, Token(()));
    }

    pub fn put_entry(t: &mut Table, hash: u64, entry: Entry, hasher: &impl Fn(&[u8]) -> u64) {
        entry.key().with(|k| t.remove(hash, k, hasher, Token(())));
        t.insert_new(hash, entry, hasher, Token(()));
    }

    /// HSET as logged: a key of another type is replaced (a later record of the log brings
    /// it to its final state, see `persist/format.rs`).
    pub fn hset(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        field: &[u8],
        value: &[u8],
        lru: u32,
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        let is_hash = t.find(hash, key).and_then(HashRef::of).is_some();
        if is_hash {
            t.update(hash, key, Token(()), |e| hash::set_field(e, field, value));
        } else {
            t.remove(hash, key, hasher, Token(()));
            let e = hash::new_value(field, value).into_entry(key, 0, lru);
            t.insert_new(hash, e, hasher, Token(()));
        }
    }

    pub fn hdel(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        field: &[u8],
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        if t.find(hash, key).and_then(HashRef::of).is_none() {
            return;
        }
        t.update(hash, key, Token(()), |e| hash::del_field(e, field));
        drop_if_empty(t, hash, key, hasher);
    }

    /// SADD as logged (a key of another type is replaced, as for HSET).
    pub fn sadd(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        member: &[u8],
        lru: u32,
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        if t.find(hash, key).and_then(SetRef::of).is_some() {
            t.update(hash, key, Token(()), |e| set::add(e, member));
        } else {
            t.remove(hash, key, hasher, Token(()));
            let e = NewSet::from_members(&[member]).into_entry(key, 0, lru);
            t.insert_new(hash, e, hasher, Token(()));
        }
    }

    pub fn zadd(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        member: &[u8],
        score: f64,
        lru: u32,
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        if t.find(hash, key).and_then(ZSetRef::of).is_some() {
            t.update(hash, key, Token(()), |e| zset::add(e, member, score));
        } else {
            t.remove(hash, key, hasher, Token(()));
            let e = NewZSet::from_pairs(&[(member, score)]).into_entry(key, 0, lru);
            t.insert_new(hash, e, hasher, Token(()));
        }
    }

    /// HPEXPIREAT as logged (a field or hash that is not there: nothing to do).
    pub fn hexpire(t: &mut Table, hash: u64, key: &[u8], field: &[u8], at: i64) {
        if t.find(hash, key).and_then(HashRef::of).is_some() {
            t.update(hash, key, Token(()), |e| {
                hash::set_field_expire(e, field, at)
            });
        }
    }

    /// LEDIT as logged: applied only to the list at version `prev` (see `list.rs`).
    #[allow(clippy::too_many_arguments)]
    pub fn list_edit(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        prev: u64,
        version: u64,
        edit: &Edit<'_>,
        lru: u32,
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        let current = t.find(hash, key).and_then(ListRef::of).map(|l| l.version());
        if prev == 0 {
            if current.is_some_and(|v| v >= version) {
                return; // the snapshot holds this list or a newer one
            }
            let elems = match edit {
                Edit::PushHead(v) | Edit::PushTail(v) if !v.is_empty() => v.clone(),
                _ => return,
            };
            t.remove(hash, key, hasher, Token(()));
            t.insert_new(
                hash,
                list::new_entry(key, &elems, version, 0, lru),
                hasher,
                Token(()),
            );
        } else if current == Some(prev) {
            t.update(hash, key, Token(()), |e| list::apply(e, edit, version));
            drop_if_empty(t, hash, key, hasher);
        }
    }

    pub fn zrem(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        member: &[u8],
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        if t.find(hash, key).and_then(ZSetRef::of).is_none() {
            return;
        }
        t.update(hash, key, Token(()), |e| zset::remove(e, member));
        drop_if_empty(t, hash, key, hasher);
    }

    pub fn srem(
        t: &mut Table,
        hash: u64,
        key: &[u8],
        member: &[u8],
        hasher: &impl Fn(&[u8]) -> u64,
    ) {
        if t.find(hash, key).and_then(SetRef::of).is_none() {
            return;
        }
        t.update(hash, key, Token(()), |e| set::remove(e, member));
        drop_if_empty(t, hash, key, hasher);
    }
}
