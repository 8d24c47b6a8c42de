//! Durability as a property: whatever sequence of writes the engine executes, replaying the
//! log it wrote gives back exactly the live state. Every mutating Store operation is drawn
//! (SET with every condition and TTL form, MSET/MSETNX, APPEND, INCRBY, DEL, the lock
//! release, RENAME/RENAMENX, EXPIREAT with every condition, PERSIST, GETEX, GETDEL,
//! FLUSHDB, FLUSHALL, SWAPDB, and eviction under maxmemory; hash writes: HSET of one field
//! or of many at once (so packs grow into big hashes), HDEL, HINCRBY), on a few keys in a few
//! databases, with time moving on so that keys expire on the way. A mutation that forgot
//! its log record, or logged something other than its result, shows up as a difference.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::list::Edit;
use super::tests::block;
use super::*;
use crate::persist::format::Op;
use crate::persist::journal::{Fsync, Journal, LogFile};
use crate::persist::load;

#[derive(Debug, Clone)]
enum Step {
    Set(u8, u8, u8, u8, u8, bool),
    MSet(Vec<(u8, u8)>, bool),
    Append(u8, u8),
    IncrBy(u8, i8),
    Del(Vec<u8>),
    DelIfEqual(u8, u8),
    Rename(u8, u8, bool),
    ExpireAt(u8, i16, u8),
    Persist(u8),
    GetEx(u8, u8, i16),
    GetDel(u8),
    Select(u8),
    FlushDb,
    FlushAll,
    SwapDb(u8, u8),
    Tick(u16),
    MaxMemory(bool),
    HSet(u8, u8, u8),
    HSetMany(u8, u8),
    HDel(u8, u8),
    HIncrBy(u8, u8, i8),
    SAdd(u8, u8),
    SAddMany(u8, u16),
    SRem(u8, u8),
    StoreSet(u8, u8),
    ZAdd(u8, u8, i8),
    ZAddMany(u8, u8),
    ZRem(u8, u8),
    LPush(u8, bool, u8),
    LPushMany(u8, u8),
    LPop(u8, bool, u8),
    LSet(u8, u8, u8),
    LRemove(u8, u8),
    LTrim(u8, u8, u8),
    HExpire(u8, u8, i16),
}

fn step() -> impl Strategy<Value = Step> {
    let k = 0u8..6;
    prop_oneof![
        6 => (k.clone(), 0u8..4, 0u8..3, 0u8..4, any::<u8>(), any::<bool>())
            .prop_map(|(k, v, c, t, n, g)| Step::Set(k, v, c, t, n, g)),
        1 => (prop::collection::vec((0u8..6, 0u8..4), 1..4), any::<bool>())
            .prop_map(|(p, nx)| Step::MSet(p, nx)),
        1 => (k.clone(), 0u8..4).prop_map(|(k, v)| Step::Append(k, v)),
        1 => (k.clone(), any::<i8>()).prop_map(|(k, d)| Step::IncrBy(k, d)),
        1 => prop::collection::vec(0u8..6, 1..3).prop_map(Step::Del),
        1 => (k.clone(), 0u8..4).prop_map(|(k, v)| Step::DelIfEqual(k, v)),
        1 => (k.clone(), 0u8..6, any::<bool>()).prop_map(|(a, b, nx)| Step::Rename(a, b, nx)),
        2 => (k.clone(), any::<i16>(), 0u8..5).prop_map(|(k, t, c)| Step::ExpireAt(k, t, c)),
        1 => k.clone().prop_map(Step::Persist),
        1 => (k.clone(), 0u8..3, any::<i16>()).prop_map(|(k, m, t)| Step::GetEx(k, m, t)),
        1 => k.prop_map(Step::GetDel),
        1 => (0u8..3).prop_map(Step::Select),
        1 => Just(Step::FlushDb),
        1 => Just(Step::FlushAll),
        1 => (0u8..3, 0u8..3).prop_map(|(a, b)| Step::SwapDb(a, b)),
        2 => (0u16..3000).prop_map(Step::Tick),
        1 => any::<bool>().prop_map(Step::MaxMemory),
        3 => (0u8..6, 0u8..8, 0u8..5).prop_map(|(k, f, v)| Step::HSet(k, f, v)),
        1 => (0u8..6, 0u8..160).prop_map(|(k, n)| Step::HSetMany(k, n)),
        2 => (0u8..6, 0u8..8).prop_map(|(k, f)| Step::HDel(k, f)),
        1 => (0u8..6, 0u8..8, any::<i8>()).prop_map(|(k, f, d)| Step::HIncrBy(k, f, d)),
        3 => (0u8..6, 0u8..8).prop_map(|(k, m)| Step::SAdd(k, m)),
        1 => (0u8..6, 0u16..600).prop_map(|(k, n)| Step::SAddMany(k, n)),
        2 => (0u8..6, 0u8..8).prop_map(|(k, m)| Step::SRem(k, m)),
        1 => (0u8..6, 0u8..5).prop_map(|(k, n)| Step::StoreSet(k, n)),
        3 => (0u8..6, 0u8..8, any::<i8>()).prop_map(|(k, m, s)| Step::ZAdd(k, m, s)),
        1 => (0u8..6, 0u8..200).prop_map(|(k, n)| Step::ZAddMany(k, n)),
        2 => (0u8..6, 0u8..8).prop_map(|(k, m)| Step::ZRem(k, m)),
        3 => (0u8..6, any::<bool>(), 0u8..5).prop_map(|(k, l, v)| Step::LPush(k, l, v)),
        1 => (0u8..6, 0u8..120).prop_map(|(k, n)| Step::LPushMany(k, n)),
        2 => (0u8..6, any::<bool>(), 0u8..4).prop_map(|(k, l, n)| Step::LPop(k, l, n)),
        1 => (0u8..6, 0u8..6, 0u8..5).prop_map(|(k, i, v)| Step::LSet(k, i, v)),
        1 => (0u8..6, 0u8..6).prop_map(|(k, i)| Step::LRemove(k, i)),
        1 => (0u8..6, 0u8..6, 0u8..6).prop_map(|(k, a, b)| Step::LTrim(k, a, b)),
        2 => (0u8..6, 0u8..8, any::<i16>()).prop_map(|(k, f, t)| Step::HExpire(k, f, t)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("PHPREDIS_SESSION:k{k}").into_bytes()
}

fn value(v: u8) -> Vec<u8> {
    match v {
        0 => b"10".to_vec(),
        1 => b"-3".to_vec(),
        2 => b"user|s:5:\"alice\";".to_vec(),
        3 => vec![b'x'; 300],
        // Longer than a pack element may be: the hash becomes a big one.
        _ => vec![b'y'; super::value::PACK_MAX_ELEMENT + 1],
    }
}

fn field(f: u8) -> Vec<u8> {
    format!("f{f}").into_bytes()
}

/// Every live record: (db, key, value, expiry).
fn contents(e: &Engine, now: i64) -> Vec<(u32, Vec<u8>, Vec<u8>, i64)> {
    e.purge_expired(now);
    let mut image = Vec::new();
    e.dump(now, &mut |b| {
        image.extend_from_slice(b);
        Ok(())
    })
    .expect("dump");
    let mut out = Vec::new();
    let mut framed = crate::persist::format::SNAPSHOT_MAGIC.to_vec();
    framed.extend_from_slice(&image);
    crate::persist::format::read_image(&framed, crate::persist::format::SNAPSHOT_MAGIC, |op| {
        match op {
            Op::Set {
                db,
                key,
                value,
                expire,
            } => out.push((db, key.to_vec(), value.to_vec(), expire)),
            // A collection's order depends on its encoding: compare its pairs sorted.
            Op::Value {
                db,
                key,
                type_code,
                payload,
                expire,
            } => {
                let elems: Vec<&[u8]> = super::value::Pack(payload).iter().collect();
                let ordered = type_code == 4;
                let mut items: Vec<Vec<u8>> = if type_code == 1 || type_code == 3 {
                    elems
                        .chunks(2)
                        .map(|p| [p[0], b"=", p[1]].concat())
                        .collect()
                } else {
                    elems.iter().map(|m| m.to_vec()).collect()
                };
                if !ordered {
                    items.sort();
                }
                let mut canon = vec![type_code];
                for i in items {
                    canon.extend_from_slice(&(i.len() as u32).to_le_bytes());
                    canon.extend_from_slice(&i);
                }
                out.push((db, key.to_vec(), canon, expire));
            }
            _ => {}
        }
        Ok(())
    })
    .expect("read back");
    out.sort();
    out
}

fn run(steps: &[Step], dir: &std::path::Path) -> Result<(), TestCaseError> {
    let cfg = EngineConfig {
        databases: 3,
        active_expiry: false,
        ..Default::default()
    };
    let live = Engine::new(cfg.clone());
    let path = dir.join("log-1.aof");
    let mut f = std::fs::File::create(&path).expect("log");
    std::io::Write::write_all(&mut f, crate::persist::format::LOG_MAGIC).expect("magic");
    let log = LogFile {
        file: Arc::new(f),
        path: path.clone(),
        len: 16,
    };
    let j = Journal::start(log, Fsync::No, Duration::ZERO);
    live.attach_journal(j.clone());
    let mut now: i64 = 1_700_000_000_000;
    let mut db = 0usize;
    for s in steps {
        match s.clone() {
            Step::Set(k, v, c, t, n, get) => {
                let ttl = match t {
                    0 => TtlChange::Clear,
                    1 => TtlChange::Keep,
                    2 => TtlChange::At(now + 1 + i64::from(n) * 20),
                    _ => TtlChange::At(now - i64::from(n)),
                };
                let condition = match c {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    _ => SetCondition::IfPresent,
                };
                let opts = SetOptions {
                    ttl,
                    condition,
                    get,
                };
                let _ = block(live.set(db, &key(k), &value(v), opts, now));
            }
            Step::MSet(pairs, nx) => {
                let owned: Vec<(Vec<u8>, Vec<u8>)> =
                    pairs.iter().map(|&(k, v)| (key(k), value(v))).collect();
                let refs: Vec<(&[u8], &[u8])> =
                    owned.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                let _ = block(live.mset(db, &refs, nx, now));
            }
            Step::Append(k, v) => {
                let _ = block(live.append(db, &key(k), &value(v), now));
            }
            Step::IncrBy(k, d) => {
                let _ = block(live.incr_by(db, &key(k), i64::from(d), now));
            }
            Step::Del(ks) => {
                let owned: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
                let refs: Vec<&[u8]> = owned.iter().map(|k| &k[..]).collect();
                let _ = block(live.del(db, &refs, now));
            }
            Step::DelIfEqual(k, v) => {
                let _ = block(live.del_if_equal(db, &key(k), &value(v), now));
            }
            Step::Rename(a, b, nx) => {
                let _ = block(live.rename(db, &key(a), &key(b), nx, now));
            }
            Step::ExpireAt(k, t, c) => {
                let cond = match c {
                    0 => ExpireCondition::Always,
                    1 => ExpireCondition::Nx,
                    2 => ExpireCondition::Xx,
                    3 => ExpireCondition::Gt,
                    _ => ExpireCondition::Lt,
                };
                let _ = block(live.expire_at(db, &key(k), now + i64::from(t), cond, now));
            }
            Step::Persist(k) => {
                let _ = block(live.persist(db, &key(k), now));
            }
            Step::GetEx(k, m, t) => {
                let ttl = match m {
                    0 => TtlChange::Keep,
                    1 => TtlChange::Clear,
                    _ => TtlChange::At(now + i64::from(t)),
                };
                let _ = block(live.get_ex(db, &key(k), ttl, now));
            }
            Step::GetDel(k) => {
                let _ = block(live.get_del(db, &key(k), now));
            }
            Step::Select(d) => db = usize::from(d),
            Step::FlushDb => {
                let _ = block(live.flush_db(db));
            }
            Step::FlushAll => {
                let _ = block(live.flush_all());
            }
            Step::SwapDb(a, b) => {
                let _ = block(live.swap_db(usize::from(a), usize::from(b)));
            }
            Step::Tick(ms) => now += i64::from(ms),
            Step::HSet(k, f, v) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.hash()?;
                    Ok(w.hset(&field(f), &value(v)))
                });
            }
            Step::HSetMany(k, n) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.hash()?;
                    for f in 0..n {
                        w.hset(&field(f), &value(f % 4));
                    }
                    Ok(())
                });
            }
            Step::HDel(k, f) => {
                let _ = live.write(db, &key(k), now, |w| {
                    if w.hash()?.is_some() {
                        w.hdel(&field(f));
                    }
                    Ok(())
                });
            }
            Step::SAdd(k, m) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.set()?;
                    Ok(w.sadd(&field(m)))
                });
            }
            Step::SAddMany(k, n) => {
                // Integers: packs stay packed up to 512 of them, then become big sets.
                let _ = live.write(db, &key(k), now, |w| {
                    w.set()?;
                    for m in 0..n {
                        w.sadd(m.to_string().as_bytes());
                    }
                    Ok(())
                });
            }
            Step::SRem(k, m) => {
                let _ = live.write(db, &key(k), now, |w| {
                    if w.set()?.is_some() {
                        w.srem(&field(m));
                    }
                    Ok(())
                });
            }
            Step::StoreSet(k, n) => {
                let members: Vec<Vec<u8>> = (0..n).map(field).collect();
                let refs: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
                let _ = live.write(db, &key(k), now, |w| {
                    w.store_set(&refs);
                    Ok(())
                });
            }
            Step::ZAdd(k, m, sc) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.zset()?;
                    Ok(w.zadd(&field(m), f64::from(sc) / 4.0))
                });
            }
            Step::ZAddMany(k, n) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.zset()?;
                    for m in 0..n {
                        w.zadd(&field(m), f64::from(m % 7));
                    }
                    Ok(())
                });
            }
            Step::ZRem(k, m) => {
                let _ = live.write(db, &key(k), now, |w| {
                    if w.zset()?.is_some() {
                        w.zrem(&field(m));
                    }
                    Ok(())
                });
            }
            Step::LPush(k, left, v) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.list()?;
                    let val = value(v);
                    w.list_edit(&if left {
                        Edit::PushHead(vec![&val])
                    } else {
                        Edit::PushTail(vec![&val])
                    });
                    Ok(())
                });
            }
            Step::LPushMany(k, n) => {
                let _ = live.write(db, &key(k), now, |w| {
                    w.list()?;
                    let vals: Vec<Vec<u8>> =
                        (0..n).map(|i| vec![b'v'; usize::from(i) * 3]).collect();
                    w.list_edit(&Edit::PushTail(vals.iter().map(|v| &v[..]).collect()));
                    Ok(())
                });
            }
            Step::LPop(k, left, n) => {
                let _ = live.write(db, &key(k), now, |w| {
                    let Some(len) = w.list()?.map(|l| l.len()) else {
                        return Ok(());
                    };
                    let n = usize::from(n).min(len).max(1);
                    w.list_edit(&if left {
                        Edit::PopHead(n)
                    } else {
                        Edit::PopTail(n)
                    });
                    Ok(())
                });
            }
            Step::LSet(k, i, v) => {
                let _ = live.write(db, &key(k), now, |w| {
                    let Some(len) = w.list()?.map(|l| l.len()) else {
                        return Ok(());
                    };
                    let val = value(v);
                    w.list_edit(&Edit::Set(usize::from(i) % len, &val));
                    w.list_edit(&Edit::Insert(usize::from(i).min(len), b"ins"));
                    Ok(())
                });
            }
            Step::LRemove(k, i) => {
                let _ = live.write(db, &key(k), now, |w| {
                    let Some(len) = w.list()?.map(|l| l.len()) else {
                        return Ok(());
                    };
                    w.list_edit(&Edit::Remove(usize::from(i) % len));
                    Ok(())
                });
            }
            Step::LTrim(k, a, b) => {
                let _ = live.write(db, &key(k), now, |w| {
                    if w.list()?.is_none() {
                        return Ok(());
                    }
                    w.list_edit(&Edit::Trim(usize::from(a), usize::from(b)));
                    Ok(())
                });
            }
            Step::HExpire(k, f, t) => {
                // Field TTLs in the past and future of `now`, and removals (0).
                let _ = live.write(db, &key(k), now, |w| {
                    if w.hash()?.is_some() {
                        let at = if t % 5 == 0 { 0 } else { now + i64::from(t) };
                        w.hexpire(&field(f), at);
                    }
                    Ok(())
                });
            }
            Step::HIncrBy(k, f, d) => {
                let _ = live.write(db, &key(k), now, |w| {
                    let cur = match w.hash()?.and_then(|h| h.get(&field(f))) {
                        None => 0,
                        Some(v) => {
                            crate::resp::parse::parse_i64(v).ok_or(StoreError::NotInteger)?
                        }
                    };
                    w.hset(&field(f), (cur + i64::from(d)).to_string().as_bytes());
                    Ok(())
                });
            }
            Step::MaxMemory(on) => {
                // Small enough that the next writes evict (allkeys-lru), which is logged.
                live.set_maxmemory_policy("allkeys-lru");
                live.set_maxmemory(if on { 1 } else { 0 });
            }
        }
    }
    j.sync_all().map_err(TestCaseError::fail)?;
    j.stop();
    let replayed = Engine::new(cfg);
    load::replay(&replayed, dir, None, &["log-1.aof".to_string()]).map_err(TestCaseError::fail)?;
    prop_assert_eq!(contents(&replayed, now), contents(&live, now));
    Ok(())
}

/// Found by the property test below: a hash expires, and a write at its deadline finds it
/// expired, drops it and creates a new one without a TTL. The drop was not logged, so
/// replay applied the HSET to the old hash and its expiry took the new data away.
#[test]
fn a_write_after_its_key_expired_survives_replay() {
    let dir = std::env::temp_dir().join(format!(
        "sessiond-durability-expired-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    for tick in [1, 500] {
        let steps = [
            Step::HSet(2, 0, 0),
            Step::ExpireAt(2, 1, 0),
            Step::Tick(tick),
            Step::HSet(2, 0, 0),
        ];
        let r = run(&steps, &dir);
        assert!(r.is_ok(), "tick {tick}: {r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_log_gives_back_the_live_state(steps in prop::collection::vec(step(), 1..60)) {
        let dir = std::env::temp_dir().join(format!(
            "sessiond-durability-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let r = run(&steps, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        r?;
    }
}
