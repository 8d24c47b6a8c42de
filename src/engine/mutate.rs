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
use super::persist::db32;
use super::table::Table;
use super::{Db, Inner, ShardData};
use crate::persist::format::Op;
use crate::persist::journal::FrameWriter;

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
        if let Some(j) = self.inner.journal.get() {
            self.frame.get_or_insert_with(|| j.begin_frame()).push(&op);
        }
    }

    /// Creates or overwrites `rec.key` (`exists`: the caller found it live).
    pub fn put(&mut self, s: &mut ShardData, db: Db, hash: u64, rec: Record<'_>, exists: bool) {
        write(&mut s.dbs[db], hash, &rec, exists, &self.inner.hasher_fn());
        self.record(Op::Set {
            db: db32(db),
            key: rec.key,
            value: rec.value,
            expire: rec.expire,
        });
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
        let t = &mut s.dbs[db];
        let n = t.append_value(hash, key, tail, Token(()))?;
        if let Some(e) = t.find(hash, key) {
            // The whole new value: replay never depends on what it appended to.
            self.record(Op::Set {
                db: db32(db),
                key,
                value: e.value(),
                expire: e.expire(),
            });
        }
        Some(n)
    }

    /// Deletes `key`; whether it was there.
    pub fn del(&mut self, s: &mut ShardData, db: Db, hash: u64, key: &[u8]) -> bool {
        let removed = s.dbs[db]
            .remove(hash, key, &self.inner.hasher_fn(), Token(()))
            .is_some();
        if removed {
            self.record(Op::Del { db: db32(db), key });
        }
        removed
    }

    /// Sets (or with 0 clears) a key's absolute expiry.
    pub fn expire(&mut self, s: &mut ShardData, db: Db, hash: u64, key: &[u8], at: i64) {
        if s.dbs[db].set_expire(hash, key, at, Token(())) {
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
        for s in shards.iter_mut() {
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
        for s in shards.iter_mut() {
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

/// Drops a key found expired. Not logged: the log already holds its absolute expiry, so
/// replay (followed by the purge of expired keys) ends without it too.
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
}
