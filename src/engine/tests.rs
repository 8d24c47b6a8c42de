//! Engine unit tests: TTL semantics, eviction, SCAN, accounting.

use super::*;

/// Engines in unit tests run on the tests' simulated clock (`NOW`), so the
/// wall-clock sweeper is off; tests call `expire::sweep_tick` themselves.
fn config() -> EngineConfig {
    EngineConfig {
        active_expiry: false,
        ..Default::default()
    }
}

fn engine() -> Engine {
    Engine::new(config())
}

pub(super) fn block<F: std::future::Future>(f: F) -> F::Output {
    // Engine futures never suspend; a trivial executor is enough.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("engine future suspended"),
    }
}

const NOW: i64 = 1_700_000_000_000;

fn set(e: &Engine, k: &str, v: &str, ttl: TtlChange) {
    let opts = SetOptions {
        ttl,
        ..SetOptions::plain()
    };
    assert!(
        block(e.set(0, k.as_bytes(), v.as_bytes(), opts, NOW))
            .unwrap()
            .written
    );
}

#[test]
fn lazy_expiry_is_millisecond_exact() {
    let e = engine();
    set(&e, "s", "v", TtlChange::At(NOW + 100));
    // As Redis (`now > when`): the key lives through the millisecond of its expiry time.
    assert_eq!(
        block(e.get(0, b"s", NOW + 100)).unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(block(e.get(0, b"s", NOW + 101)).unwrap(), None);
    assert_eq!(
        block(e.dbsize(0)).unwrap(),
        0,
        "expired key removed on access"
    );
    assert_eq!(e.stats(NOW).expired_keys, 1);
}

#[test]
fn ttl_states_and_conditions() {
    let e = engine();
    set(&e, "p", "v", TtlChange::Clear);
    assert_eq!(block(e.ttl(0, b"p", NOW)).unwrap(), Ttl::Persistent);
    assert_eq!(block(e.ttl(0, b"missing", NOW)).unwrap(), Ttl::Missing);
    // GT on a persistent key fails (infinite TTL), LT succeeds.
    assert!(!block(e.expire_at(0, b"p", NOW + 10_000, ExpireCondition::Gt, NOW)).unwrap());
    assert!(block(e.expire_at(0, b"p", NOW + 10_000, ExpireCondition::Lt, NOW)).unwrap());
    assert!(!block(e.expire_at(0, b"p", NOW + 5_000, ExpireCondition::Nx, NOW)).unwrap());
    assert!(block(e.expire_at(0, b"p", NOW + 5_000, ExpireCondition::Xx, NOW)).unwrap());
    assert_eq!(block(e.ttl(0, b"p", NOW)).unwrap(), Ttl::At(NOW + 5_000));
    // KEEPTTL keeps, plain SET clears.
    set(&e, "p", "w", TtlChange::Keep);
    assert_eq!(block(e.ttl(0, b"p", NOW)).unwrap(), Ttl::At(NOW + 5_000));
    set(&e, "p", "w", TtlChange::Clear);
    assert_eq!(block(e.ttl(0, b"p", NOW)).unwrap(), Ttl::Persistent);
    // An expiry in the past deletes.
    assert!(block(e.expire_at(0, b"p", NOW - 1, ExpireCondition::Always, NOW)).unwrap());
    assert_eq!(block(e.ttl(0, b"p", NOW)).unwrap(), Ttl::Missing);
}

#[test]
fn active_sweep_reclaims_without_access() {
    let e = engine();
    for i in 0..5000 {
        set(&e, &format!("sess:{i}"), "x", TtlChange::At(NOW + 10));
    }
    for i in 0..100 {
        set(
            &e,
            &format!("keep:{i}"),
            "x",
            TtlChange::At(NOW + 1_000_000),
        );
    }
    let before = e.stats(NOW).used_memory;
    // A full pass takes TICKS_PER_PASS ticks; run a few more.
    for _ in 0..12 {
        expire::sweep_tick(&e.inner, NOW + 20);
    }
    assert_eq!(block(e.dbsize(0)).unwrap(), 100);
    let st = e.stats(NOW + 20);
    assert_eq!(st.expired_keys, 5000);
    assert!(
        st.used_memory < before / 10,
        "memory reclaimed: {} -> {}",
        before,
        st.used_memory
    );
}

#[test]
fn incr_and_append() {
    let e = engine();
    assert_eq!(block(e.incr_by(0, b"n", 5, NOW)).unwrap(), 5);
    assert_eq!(block(e.incr_by(0, b"n", -7, NOW)).unwrap(), -2);
    set(&e, "n", "9223372036854775807", TtlChange::Clear);
    assert_eq!(block(e.incr_by(0, b"n", 1, NOW)), Err(StoreError::Overflow));
    set(&e, "n", "abc", TtlChange::Clear);
    assert_eq!(
        block(e.incr_by(0, b"n", 1, NOW)),
        Err(StoreError::NotInteger)
    );
    assert_eq!(block(e.append(0, b"a", b"he", NOW)).unwrap(), 2);
    assert_eq!(block(e.append(0, b"a", b"llo", NOW)).unwrap(), 5);
    assert_eq!(
        block(e.get(0, b"a", NOW)).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
}

#[test]
fn rename_moves_ttl_and_respects_nx() {
    let e = engine();
    set(&e, "a", "1", TtlChange::At(NOW + 500));
    set(&e, "b", "2", TtlChange::Clear);
    assert_eq!(block(e.rename(0, b"a", b"b", true, NOW)), Ok(false));
    assert_eq!(block(e.rename(0, b"a", b"c", false, NOW)), Ok(true));
    assert_eq!(block(e.ttl(0, b"c", NOW)).unwrap(), Ttl::At(NOW + 500));
    assert_eq!(
        block(e.rename(0, b"a", b"c", false, NOW)),
        Err(StoreError::NoSuchKey)
    );
}

#[test]
fn scan_returns_every_stable_key_while_others_write() {
    let e = engine();
    let stable: Vec<String> = (0..2000).map(|i| format!("stable:{i}")).collect();
    for k in &stable {
        set(&e, k, "v", TtlChange::Clear);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        let filter = ScanFilter {
            count: 50,
            ..Default::default()
        };
        let (next, keys) = block(e.scan(0, cursor, &filter, NOW)).unwrap();
        seen.extend(keys.into_iter().map(|k| k.to_vec()));
        // Another client grows the keyspace a lot (forcing table resizes) mid-iteration,
        // then deletes it again (forcing shrinks).
        round += 1;
        if round < 30 {
            for j in 0..500 {
                set(&e, &format!("churn:{round}:{j}"), "v", TtlChange::Clear);
            }
        } else if round == 30 {
            let churn = block(e.keys(0, b"churn:*", NOW)).unwrap();
            let refs: Vec<&[u8]> = churn.iter().map(|k| &k[..]).collect();
            block(e.del(0, &refs, NOW)).unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for k in &stable {
        assert!(seen.contains(k.as_bytes()), "SCAN missed {k}");
    }
}

#[test]
fn noeviction_refuses_and_lru_evicts() {
    let e = Engine::new(EngineConfig {
        maxmemory: 200_000,
        ..config()
    });
    let big = "x".repeat(1000);
    let mut refused = false;
    for i in 0..1000 {
        let opts = SetOptions::plain();
        if block(e.set(0, format!("k{i}").as_bytes(), big.as_bytes(), opts, NOW))
            == Err(StoreError::OutOfMemory)
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "noeviction must refuse writes over maxmemory");
    assert!(e.set_maxmemory_policy("allkeys-lru"));
    for i in 0..1000 {
        block(e.set(
            0,
            format!("k{i}").as_bytes(),
            big.as_bytes(),
            SetOptions::plain(),
            NOW,
        ))
        .unwrap();
    }
    let st = e.stats(NOW);
    assert!(st.evicted_keys > 0);
    assert!(st.used_memory <= 200_000 + 2000, "used {}", st.used_memory);
}

#[test]
fn volatile_ttl_evicts_soonest_expiring_first() {
    let e = Engine::new(EngineConfig {
        maxmemory: 400_000,
        policy: Policy::VolatileTtl,
        ..config()
    });
    let v = "x".repeat(1000);
    // Persistent keys can never be evicted under volatile-ttl.
    for i in 0..100 {
        set(&e, &format!("persist:{i}"), &v, TtlChange::Clear);
    }
    for i in 0..600 {
        let opts = SetOptions {
            ttl: TtlChange::At(NOW + 1_000 + i),
            ..SetOptions::plain()
        };
        let _ = block(e.set(0, format!("sess:{i}").as_bytes(), v.as_bytes(), opts, NOW));
    }
    assert_eq!(block(e.keys(0, b"persist:*", NOW)).unwrap().len(), 100);
    assert!(e.stats(NOW).evicted_keys > 0);
    // The newest (latest-expiring) sessions survive more than the oldest.
    let alive = |range: std::ops::Range<i32>| {
        range
            .filter(|i| {
                block(e.get(0, format!("sess:{i}").as_bytes(), NOW))
                    .unwrap()
                    .is_some()
            })
            .count()
    };
    assert!(
        alive(500..600) > alive(0..100),
        "late {} early {}",
        alive(500..600),
        alive(0..100)
    );
}

#[test]
fn swapdb_and_flush() {
    let e = engine();
    set(&e, "a", "1", TtlChange::Clear);
    block(e.swap_db(0, 3)).unwrap();
    assert_eq!(block(e.dbsize(0)).unwrap(), 0);
    assert_eq!(block(e.dbsize(3)).unwrap(), 1);
    block(e.flush_all()).unwrap();
    assert_eq!(block(e.dbsize(3)).unwrap(), 0);
    assert_eq!(e.stats(NOW).used_memory, 0);
}

/// Regression: eviction sampled a few buckets and, in sparse tables, answered OOM although
/// evictable keys existed. It must find any evictable key.
#[test]
fn eviction_finds_the_only_candidate_in_sparse_tables() {
    let e = engine();
    for i in 0..3000 {
        set(&e, &format!("k{i}"), &"x".repeat(200), TtlChange::Clear);
    }
    let keys: Vec<Vec<u8>> = (1..3000).map(|i| format!("k{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    block(e.del(0, &refs, NOW)).unwrap();
    // One persistent key left (volatile-ttl cannot evict it), one volatile key added.
    set(&e, "sess", &"y".repeat(200), TtlChange::At(NOW + 60_000));
    e.set_maxmemory(e.stats(NOW).used_memory - 1);
    assert!(e.set_maxmemory_policy("volatile-ttl"));
    block(e.set(0, b"new", &[b'z'; 300], SetOptions::plain(), NOW)).expect("volatile key evicted");
    assert_eq!(
        block(e.exists(0, &[b"sess", b"k0"], NOW)).unwrap(),
        1,
        "only the volatile key went"
    );
    // Nothing volatile left: now the refusal is right.
    assert_eq!(
        block(e.set(0, b"more", &[b'z'; 300], SetOptions::plain(), NOW)),
        Err(StoreError::OutOfMemory)
    );
    assert!(e.set_maxmemory_policy("allkeys-lru"));
    block(e.set(0, b"more", &[b'z'; 300], SetOptions::plain(), NOW)).expect("allkeys-lru evicts");
}

/// The sweep reads records only in groups whose deadline tag has come (and one sampled
/// group per table per tick): sessions that are far from expiring are not read once a
/// second. When they expire, one pass reclaims them all.
#[test]
fn sweep_reads_only_what_is_due() {
    let e = engine();
    let n = 50_000;
    for i in 0..n {
        set(&e, &format!("sess:{i}"), "x", TtlChange::At(NOW + 600_000));
    }
    // A full pass (10 ticks) with nothing due.
    let read: u64 = (0..10)
        .map(|t| expire::sweep_tick(&e.inner, NOW + t * 100))
        .sum();
    assert!(
        read < n / 5,
        "a pass read {read} of {n} records although none was due"
    );
    assert_eq!(block(e.dbsize(0)).unwrap(), n);
    // All due: a pass reclaims most, and the tables shrink as they empty (a shrink moves
    // the cursor and slows the pass down to MIN_BUCKETS_PER_TICK); every one is gone, each
    // read, within three passes (17 ticks in 30 runs with random hash keys).
    let (mut read, mut ticks) = (0, 0);
    while block(e.dbsize(0)).unwrap() > 0 {
        assert!(ticks < 30, "reclaimed within three passes");
        read += expire::sweep_tick(&e.inner, NOW + 600_000 + ticks * 100);
        ticks += 1;
    }
    assert!(read >= n, "{read}");
}

/// Steady create/expire load with no reads: memory plateaus (the seeds' "5 GB equilibrium")
/// instead of growing with the number of sessions ever created. Simulated time: 200
/// sessions per 100 ms tick, each living 5 s; the sweeper runs every tick.
#[test]
fn steady_create_expire_load_reaches_an_equilibrium() {
    let e = engine();
    let tick_ms = 100;
    let ttl_ms = 5_000;
    let per_tick = 200;
    let mut samples = Vec::new();
    for t in 0..600i64 {
        let now = NOW + t * tick_ms;
        for i in 0..per_tick {
            let opts = SetOptions {
                ttl: TtlChange::At(now + ttl_ms),
                ..SetOptions::plain()
            };
            let k = format!("PHPREDIS_SESSION:{t}:{i}");
            block(e.set(0, k.as_bytes(), &[b's'; 200], opts, now)).unwrap();
        }
        expire::sweep_tick(&e.inner, now);
        if t >= 100 {
            samples.push((block(e.dbsize(0)).unwrap(), e.stats(now).used_memory));
        }
    }
    // Live sessions: 50 ticks x 200 = 10,000. Expired-but-unreclaimed ones are bounded by one
    // sweep pass (10 ticks) of arrivals, so the count never exceeds ~12,000, although
    // 120,000 sessions were created.
    let max_keys = samples.iter().map(|s| s.0).max().unwrap();
    let min_keys = samples.iter().map(|s| s.0).min().unwrap();
    assert!(
        min_keys >= 10_000,
        "live sessions are never dropped early: {min_keys}"
    );
    assert!(
        max_keys <= 12_200,
        "keys bounded by live + one sweep pass: {max_keys}"
    );
    let (first, last) = (samples[0].1, samples[samples.len() - 1].1);
    assert!(
        last <= first + first / 5,
        "memory flat at equilibrium: {first} -> {last}"
    );
    assert_eq!(
        e.stats(NOW).expired_keys + block(e.dbsize(0)).unwrap(),
        120_000
    );
}

#[test]
fn a_snapshot_replays_to_the_same_data_and_swapdb_waits_for_it() {
    use crate::persist::format::{read_image, SNAPSHOT_MAGIC};
    let a = engine();
    for i in 0..2000 {
        let ttl = if i % 3 == 0 {
            TtlChange::Clear
        } else {
            TtlChange::At(NOW + i)
        };
        set(&a, &format!("k{i}"), &format!("v{i}"), ttl);
    }
    block(a.set(5, b"other-db", b"x", SetOptions::plain(), NOW)).unwrap();
    // Taken at NOW + 1000: the records expired by then are left out (k1000 expires at
    // NOW + 1000 and lives through that millisecond).
    let mut img = SNAPSHOT_MAGIC.to_vec();
    let n = a
        .dump(NOW + 1000, &mut |b: &[u8]| {
            img.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    let live = (0..2000).filter(|i| i % 3 == 0 || *i >= 1000).count() as u64 + 1;
    assert_eq!(n, live);
    let b = engine();
    read_image(&img, SNAPSHOT_MAGIC, |op| b.apply(&op)).unwrap();
    assert_eq!(b.key_count(), live);
    for i in [0, 999, 1001, 1999] {
        let k = format!("k{i}");
        assert_eq!(
            block(b.get(0, k.as_bytes(), NOW)).unwrap(),
            block(a.get(0, k.as_bytes(), NOW)).unwrap()
        );
        assert_eq!(
            block(b.ttl(0, k.as_bytes(), NOW)).unwrap(),
            block(a.ttl(0, k.as_bytes(), NOW)).unwrap()
        );
    }
    assert_eq!(block(b.dbsize(5)).unwrap(), 1);

    a.set_snapshot_active(true);
    assert!(matches!(block(a.swap_db(0, 1)), Err(StoreError::Other(m)) if m.contains("SWAPDB")));
    a.set_snapshot_active(false);
    assert!(block(a.swap_db(0, 1)).is_ok());
}

/// Hash flooding: ids chosen to share a bucket under one process's hash key scatter under
/// another's, so collisions computed offline (or against another server) cannot build a
/// long chain. Here 16 ids that all land in one of 1024 buckets of engine A land in at most
/// a few of the same buckets of engine B.
#[test]
fn chosen_collisions_do_not_carry_over_to_another_hash_key() {
    let (a, b) = (engine(), engine());
    let mask = 1023u64;
    let target = a.inner.hash(b"PHPREDIS_SESSION:seed") & mask;
    let mut colliding = Vec::new();
    let mut i = 0u64;
    while colliding.len() < 16 {
        let id = format!("PHPREDIS_SESSION:{i:026x}");
        if a.inner.hash(id.as_bytes()) & mask == target {
            colliding.push(id);
        }
        i += 1;
    }
    let mut buckets = std::collections::HashMap::new();
    for id in &colliding {
        *buckets
            .entry(b.inner.hash(id.as_bytes()) & mask)
            .or_insert(0u32) += 1;
    }
    let longest = buckets.values().max().copied().unwrap_or(0);
    assert!(
        longest <= 4,
        "{longest} of 16 chosen ids share a bucket under another key"
    );
}
