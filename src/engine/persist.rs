//! The engine's side of persistence (the design is in `persist/mod.rs`):
//! * every mutation appends its *result* to the journal while it still holds the shard lock,
//!   so the log orders writes to one key exactly as they were applied; the mutators that do
//!   both are in `mutate.rs`, the only code allowed to change a table;
//! * [`Engine::apply`] replays a logged operation at start-up, ignoring the clock (a key that
//!   has expired by now may still be extended by a later record, so expired keys are dropped
//!   only after the whole replay, by [`Engine::purge_expired`]);
//! * [`Engine::dump`] writes a snapshot while clients keep writing, holding one shard lock for
//!   at most `WALK_CHUNK` buckets at a time.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entry::Entry;
use super::hash::NewHash;
use super::list;
use super::mutate::{Record, Replay};
use super::set::NewSet;
use super::value::{Kind, Obj, Pack, PackWriter};
use super::zset::{self, NewZSet};
use super::{Engine, SHARDS, WALK_CHUNK};
use crate::persist::format::{begin_frame, end_frame, frame, Op};
use crate::persist::journal::Journal;

/// Snapshot frames are cut once they hold this many bytes. A frame is the unit a damaged
/// byte costs (its checksum fails, and `check-aof --fix` cuts it out whole), so frames are
/// small: with ~150-byte session records one holds about seven sessions. The 12-byte header
/// costs about 1% of the file. Output still leaves in [`SNAPSHOT_WRITE`] chunks.
const SNAPSHOT_FRAME: usize = 1024;
/// Complete frames are handed to the writer in chunks of about this size, outside the lock.
const SNAPSHOT_WRITE: usize = 64 * 1024;

/// A database index as the log stores it.
#[inline]
pub(super) fn db32(db: usize) -> u32 {
    db as u32
}

impl Engine {
    /// From now on every mutation is appended to `journal`. Returns false if one was
    /// attached already.
    pub fn attach_journal(&self, journal: Arc<Journal>) -> bool {
        self.inner.journal.set(journal).is_ok()
    }

    /// Marks a snapshot as being written: SWAPDB is refused meanwhile, because swapping
    /// databases under a half-copied snapshot cannot be repaired by replaying the log.
    pub fn set_snapshot_active(&self, on: bool) {
        self.inner.snapshot_active.store(on, Ordering::SeqCst);
    }

    /// Applies one logged operation (start-up replay). Time-agnostic: nothing counts as
    /// expired here.
    pub fn apply(&self, op: &Op<'_>) -> Result<(), String> {
        let i = &self.inner;
        let dbs = i.databases;
        let check = |db: u32| {
            if (db as usize) < dbs {
                Ok(db as usize)
            } else {
                Err(format!(
                    "database {db} does not exist (databases is {dbs}; start with a larger --databases)"
                ))
            }
        };
        let hasher = i.hasher_fn();
        match *op {
            Op::Set {
                db,
                key,
                value,
                expire,
            } => {
                let db = check(db)?;
                let lru = i.lru_now();
                i.with_key(key, |s, h| {
                    let t = &mut s.dbs[db];
                    let exists = t.find(h, key).is_some();
                    Replay::put(
                        t,
                        h,
                        Record {
                            key,
                            value,
                            expire,
                            lru,
                        },
                        exists,
                        &hasher,
                    );
                });
            }
            Op::Del { db, key } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::del(&mut s.dbs[db], h, key, &hasher);
                });
            }
            Op::ExpireAt { db, key, at } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::expire(&mut s.dbs[db], h, key, at);
                });
            }
            Op::FlushDb { db } => {
                let db = check(db)?;
                for s in 0..SHARDS {
                    let mut g = i.lock(s);
                    g.dbs[db] = Default::default();
                    i.publish(s, &mut g);
                }
            }
            Op::FlushAll => {
                for s in 0..SHARDS {
                    let mut g = i.lock(s);
                    for t in g.dbs.iter_mut() {
                        *t = Default::default();
                    }
                    i.publish(s, &mut g);
                }
            }
            Op::SwapDb { a, b } => {
                let (a, b) = (check(a)?, check(b)?);
                for s in 0..SHARDS {
                    let mut g = i.lock(s);
                    g.dbs.swap(a, b);
                    g.sweep_pos.swap(a, b);
                }
            }
            Op::Value {
                db,
                key,
                type_code,
                payload,
                expire,
            } => {
                let db = check(db)?;
                let e = entry_from_value(key, type_code, payload, expire, i.lru_now())?;
                if let Some(l) = super::list::ListRef::of(&e) {
                    i.list_versions.seen(l.version());
                }
                i.with_key(key, |s, h| Replay::put_entry(&mut s.dbs[db], h, e, &hasher));
            }
            Op::HSet {
                db,
                key,
                field,
                value,
            } => {
                let db = check(db)?;
                let lru = i.lru_now();
                i.with_key(key, |s, h| {
                    Replay::hset(&mut s.dbs[db], h, key, field, value, lru, &hasher)
                });
            }
            Op::HDel { db, key, field } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::hdel(&mut s.dbs[db], h, key, field, &hasher)
                });
            }
            Op::SAdd { db, key, member } => {
                let db = check(db)?;
                let lru = i.lru_now();
                i.with_key(key, |s, h| {
                    Replay::sadd(&mut s.dbs[db], h, key, member, lru, &hasher)
                });
            }
            Op::SRem { db, key, member } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::srem(&mut s.dbs[db], h, key, member, &hasher)
                });
            }
            Op::ZAdd {
                db,
                key,
                member,
                score_bits,
            } => {
                let db = check(db)?;
                let lru = i.lru_now();
                let score = f64::from_bits(score_bits);
                i.with_key(key, |s, h| {
                    Replay::zadd(&mut s.dbs[db], h, key, member, score, lru, &hasher)
                });
            }
            Op::ZRem { db, key, member } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::zrem(&mut s.dbs[db], h, key, member, &hasher)
                });
            }
            Op::LEdit {
                db,
                key,
                prev,
                version,
                edit,
            } => {
                let db = check(db)?;
                let edit = super::list::decode(edit).ok_or("a malformed list edit")?;
                i.list_versions.seen(version);
                let lru = i.lru_now();
                i.with_key(key, |s, h| {
                    Replay::list_edit(&mut s.dbs[db], h, key, prev, version, &edit, lru, &hasher)
                });
            }
            Op::HPExpireAt { db, key, field, at } => {
                let db = check(db)?;
                i.with_key(key, |s, h| {
                    Replay::hexpire(&mut s.dbs[db], h, key, field, at)
                });
            }
            Op::End { .. } => {}
        }
        Ok(())
    }

    /// Writes every live record as snapshot frames through `out`, shard by shard with the
    /// SCAN cursor (so a record present during the whole dump is written at least once even
    /// while tables resize; one written twice appears in time order, and the later copy wins
    /// on load). Ends with an `End` frame. Returns the number of records written.
    pub fn dump(&self, now: i64, out: &mut impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        let i = &self.inner;
        let mut buf = Vec::with_capacity(SNAPSHOT_WRITE + SNAPSHOT_FRAME + 4096);
        // `buf` holds complete frames, then the open one, which begins at `start`.
        let mut start = begin_frame(&mut buf);
        let mut in_frame = 0u64;
        let mut records = 0u64;
        for s in 0..SHARDS {
            for db in 0..i.databases {
                let mut cursor = 0u64;
                loop {
                    {
                        let g = i.lock(s);
                        let t = &g.dbs[db];
                        for _ in 0..WALK_CHUNK {
                            cursor = t.scan_bucket(cursor, |e: &Entry| {
                                if !e.is_expired(now) {
                                    whole_value(db32(db), e, |op| op.encode(&mut buf));
                                    in_frame += 1;
                                    if buf.len() - start >= SNAPSHOT_FRAME {
                                        end_frame(&mut buf, start);
                                        records += in_frame;
                                        in_frame = 0;
                                        start = begin_frame(&mut buf);
                                    }
                                }
                            });
                            if cursor == 0 || start >= SNAPSHOT_WRITE {
                                break;
                            }
                        }
                    }
                    // Lock released: hand on the complete frames, keep the open one.
                    if start >= SNAPSHOT_WRITE {
                        out(&buf[..start])?;
                        buf.drain(..start);
                        start = 0;
                    }
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        if in_frame > 0 {
            end_frame(&mut buf, start);
            records += in_frame;
        } else {
            buf.truncate(start);
        }
        frame(&mut buf, &[Op::End { keys: records }]);
        out(&buf)?;
        Ok(records)
    }

    /// Records in all databases (expired ones not yet reclaimed included).
    pub fn key_count(&self) -> u64 {
        let i = &self.inner;
        (0..SHARDS)
            .map(|s| i.lock(s).dbs.iter().map(|t| t.len() as u64).sum::<u64>())
            .sum()
    }

    /// Removes every record expired at `now` (after a replay), and every expired hash field.
    /// Returns how many records went.
    pub fn purge_expired(&self, now: i64) -> u64 {
        let i = &self.inner;
        let hasher = i.hasher_fn();
        let mut total = 0u64;
        for s in 0..SHARDS {
            for db in 0..i.databases {
                let mut b = 0;
                loop {
                    let mut g = i.lock(s);
                    let n = g.dbs[db].bucket_count();
                    let end = (b + WALK_CHUNK).min(n);
                    let mut fields_due = Vec::new();
                    for idx in b..end {
                        total += g.dbs[db].purge_bucket(idx, |e| e.is_expired(now)).0 as u64;
                        fields_due.extend(
                            g.dbs[db]
                                .bucket(idx)
                                .filter(|e| {
                                    super::hash::HashRef::of(e)
                                        .and_then(|h| h.next_expiry())
                                        .is_some_and(|at| at < now)
                                })
                                .map(|e| e.key().to_vec()),
                        );
                    }
                    // Expired hash fields go too (and a hash left empty).
                    for k in fields_due {
                        let h = i.hash(&k);
                        let (_, gone) = super::mutate::expired_fields(
                            &mut g.dbs[db],
                            h,
                            &k,
                            now,
                            usize::MAX,
                            &hasher,
                        );
                        total += u64::from(gone);
                    }
                    let n = g.dbs[db].bucket_count();
                    b = end.min(n);
                    if b >= n {
                        g.dbs[db].shrink_if_sparse(&hasher);
                        i.publish(s, &mut g);
                        break;
                    }
                    i.publish(s, &mut g);
                }
            }
        }
        total
    }
}

/// Calls `f` with the log record that recreates `e` whole: SET for a string, VALUE with the
/// pack encoding for a collection (serialized on the spot for a big one). Used by the log
/// and by snapshots.
pub(super) fn whole_value<R>(db: u32, e: &Entry, f: impl FnOnce(Op<'_>) -> R) -> R {
    let expire = e.expire();
    e.key().with(|key| match e.obj() {
        None if e.kind() == Kind::Str => f(Op::Set {
            db,
            key,
            value: &e.string().map(|s| s.bytes()).unwrap_or_default(),
            expire,
        }),
        None => f(Op::Value {
            db,
            key,
            type_code: e.kind().type_code(),
            payload: e.value(),
            expire,
        }),
        Some(obj) => {
            let mut type_code = e.kind().type_code();
            let payload = match obj {
                Obj::Hash(h) if h.next_expiry().is_some() => {
                    type_code = 5;
                    let mut w = PackWriter::new(3 * h.len(), h.bytes());
                    for (k, v) in h.iter() {
                        w.push(k);
                        w.push(v);
                        w.push(&h.field_expire(k).unwrap_or(0).to_le_bytes());
                    }
                    w.finish()
                }
                Obj::Hash(h) => {
                    let mut w = PackWriter::new(2 * h.len(), h.bytes());
                    for (k, v) in h.iter() {
                        w.push(k);
                        w.push(v);
                    }
                    w.finish()
                }
                Obj::Set(s) => {
                    let mut w = PackWriter::new(s.len(), s.bytes());
                    for m in s.iter() {
                        w.push(m);
                    }
                    w.finish()
                }
                Obj::ZSet(z) => {
                    let mut w = PackWriter::new(2 * z.len(), z.bytes());
                    for (m, sc) in z.iter() {
                        w.push(m);
                        w.push(&zset::score_bytes(sc));
                    }
                    w.finish()
                }
                Obj::List(l) => {
                    let mut w = PackWriter::new(l.items.len() + 1, l.bytes());
                    w.push(&l.version.to_le_bytes());
                    for x in &l.items {
                        w.push(x);
                    }
                    w.finish()
                }
            };
            f(Op::Value {
                db,
                key,
                type_code,
                payload: &payload,
                expire,
            })
        }
    })
}

/// Builds the record a VALUE operation describes; an error for a type or payload this
/// version cannot read (the frame's checksum matched, so the file is from a newer version or
/// forged).
pub(super) fn entry_from_value(
    key: &[u8],
    type_code: u8,
    payload: &[u8],
    expire: i64,
    lru: u32,
) -> Result<Entry, String> {
    let n = Pack::parse(payload).ok_or("a malformed collection payload")?;
    match type_code {
        1 if n % 2 == 0 => {
            let p = Pack(payload);
            let mut it = p.iter();
            let pairs = std::iter::from_fn(move || Some((it.next()?, it.next()?)));
            // Fields are unique in what sessiond wrote; a forged duplicate keeps the last.
            let v = NewHash::from_pairs(n / 2, pairs.collect::<Vec<_>>().into_iter());
            Ok(v.into_entry(key, expire, lru))
        }
        1 => Err("a hash payload with an odd element count".into()),
        2 => {
            let p = Pack(payload);
            let mut members: Vec<&[u8]> = p.iter().collect();
            members.sort_unstable();
            members.dedup();
            Ok(NewSet::from_members(&members).into_entry(key, expire, lru))
        }
        3 if n % 2 == 0 => {
            let mut items = zset::payload_pairs(Pack(payload));
            if items.iter().any(|(_, s)| s.is_nan()) {
                return Err("a sorted set payload with a NaN score".into());
            }
            // Members are unique in what sessiond wrote; a forged duplicate keeps the last.
            items.reverse();
            let mut seen = std::collections::HashSet::new();
            items.retain(|(m, _)| seen.insert(*m));
            Ok(NewZSet::from_pairs(&items).into_entry(key, expire, lru))
        }
        3 => Err("a sorted set payload with an odd element count".into()),
        4 if n >= 1 => {
            let mut it = Pack(payload).iter();
            let version = it
                .next()
                .and_then(|v| v.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or("a list payload without its version")?;
            let elems: Vec<&[u8]> = it.collect();
            Ok(list::new_entry(key, &elems, version, expire, lru))
        }
        4 => Err("a list payload without its version".into()),
        5 if n % 3 == 0 => {
            let items: Vec<&[u8]> = Pack(payload).iter().collect();
            let mut h = super::value::BigHash::with_capacity(n / 3);
            for t in items.chunks(3) {
                h.set(t[0], t[1]);
            }
            for t in items.chunks(3) {
                let at = t[2].try_into().map(i64::from_le_bytes).unwrap_or(0);
                h.set_field_expire(t[0], at);
            }
            Ok(Entry::boxed(key, Box::new(Obj::Hash(h)), expire, lru))
        }
        5 => Err("a hash payload with field TTLs and a bad element count".into()),
        t => Err(format!("a value of unknown type {t}")),
    }
}
