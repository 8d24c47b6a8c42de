//! Active expiry: reclaiming sessions nobody reads again.
//!
//! Lazy expiry (every access checks the record's deadline, see `ShardData::live`) makes expiry
//! *correct*: an expired session is never returned. It does not make it *cheap*: a session
//! whose user never comes back would stay in memory forever. The active sweep reclaims those.
//!
//! The algorithm. Redis samples 20 random keys from its `expires` dictionary ten times a
//! second and repeats while more than a quarter of a sample was expired, under a CPU budget.
//! That needs a second dictionary of volatile keys (memory per session) and reclaims only
//! probabilistically. Sessions almost all have a TTL, so sessiond instead *walks* every table
//! with a cursor:
//!
//! * Every `TICK` (100 ms) the sweeper visits, in each table, `max(MIN_BUCKETS_PER_TICK,
//!   buckets / TICKS_PER_PASS)` buckets from where it stopped last time, removing expired
//!   records. A full pass over any table therefore takes about one second
//!   (`TICKS_PER_PASS` ticks), whatever its size: an expired session is reclaimed within
//!   ~1 s of its deadline (or at once, if it is accessed).
//! * The walk takes a shard lock for at most `CHUNK` buckets at a time and then releases it,
//!   so requests to that shard wait at most a few microseconds behind the sweeper.
//! * Memory reaches an equilibrium under steady create/expire load: live sessions plus at
//!   most ~1 s of expired-but-unreclaimed ones (the seeds' "5 GB equilibrium").
//! * A mass expiry (a million sessions ending in the same second) costs the same bounded
//!   work per chunk; it is spread over the next pass, never done under one lock.
//!
//! Trade-off: the sweep costs CPU proportional to the number of keys (about a pointer chase
//! per record per second), paid even when nothing expires. At 1M sessions that is on the
//! order of 10 ms of CPU per second (1%). In exchange no memory is spent on an expiry index
//! and reclamation latency is deterministic.
//!
//! The same thread also advances the LRU clock and samples remaining TTLs for
//! `INFO keyspace avg_ttl`.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::{Inner, SHARDS};

const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_PASS: usize = 10;
const MIN_BUCKETS_PER_TICK: usize = 16;
const CHUNK: usize = 128;

pub(super) fn spawn_sweeper(engine: Weak<Inner>) {
    let spawned = std::thread::Builder::new()
        .name("sessiond-expire".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(inner) = engine.upgrade() else {
                return;
            };
            sweep_tick(&inner, crate::clock::now_ms());
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the active-expiry thread: {e}; expired keys will be reclaimed only on access");
    }
}

/// Expired hash fields reclaimed per hash per sweep visit.
const FIELDS_PER_HASH: usize = 64;

/// One tick of the sweep over every table. Public to the engine for tests.
pub(super) fn sweep_tick(inner: &Inner, now: i64) {
    inner
        .lru_clock
        .store(inner.started.elapsed().as_secs() as u32, Ordering::Relaxed);
    let hasher = inner.hasher_fn();
    for s in 0..SHARDS {
        for db in 0..inner.databases {
            let mut todo = {
                let g = inner.lock(s);
                let n = g.dbs[db].bucket_count();
                if n == 0 {
                    continue;
                }
                (n / TICKS_PER_PASS).max(MIN_BUCKETS_PER_TICK).min(n)
            };
            let (mut ttl_sum, mut ttl_n) = (0u64, 0u64);
            while todo > 0 {
                let mut g = inner.lock(s);
                let n = g.dbs[db].bucket_count();
                if n == 0 {
                    break;
                }
                let mut pos = g.sweep_pos[db] % n;
                let first = pos;
                let batch = todo.min(CHUNK);
                let mut expired = 0;
                // Keys to announce as `expired` (only when someone listens for them).
                let notifier = inner
                    .notifier
                    .get()
                    .filter(|n| n.wants(crate::pubsub::class::EXPIRED));
                let mut gone: Vec<Vec<u8>> = Vec::new();
                for _ in 0..batch {
                    let (removed, _) = g.dbs[db].purge_bucket(pos, |e| {
                        let dead = e.is_expired(now);
                        if !dead && e.expire() != 0 {
                            ttl_sum += (e.expire() - now) as u64;
                            ttl_n += 1;
                        }
                        if dead && notifier.is_some() {
                            gone.push(e.key().to_vec());
                        }
                        dead
                    });
                    expired += removed as u64;
                    pos = (pos + 1) % n;
                }
                // Hash fields with TTLs in the buckets just visited: at most FIELDS_PER_HASH
                // per hash per visit, so a hash with many due fields is reclaimed over
                // several ticks rather than in one lock hold.
                let mut due: Vec<Vec<u8>> = Vec::new();
                let now_n = g.dbs[db].bucket_count();
                for b in 0..batch.min(now_n) {
                    for e in g.dbs[db].bucket((first + b) % now_n.max(1)) {
                        if e.kind() == super::value::Kind::Hash
                            && super::hash::HashRef::of(e)
                                .and_then(|h| h.next_expiry())
                                .is_some_and(|at| at <= now)
                        {
                            due.push(e.key().to_vec());
                        }
                    }
                }
                let mut hexpired: Vec<(Vec<u8>, bool)> = Vec::new();
                for k in due {
                    let h = inner.hash(&k);
                    let (fields, gone) = super::mutate::expired_fields(
                        &mut g.dbs[db],
                        h,
                        &k,
                        now,
                        FIELDS_PER_HASH,
                        &hasher,
                    );
                    if !fields.is_empty() {
                        hexpired.push((k, gone));
                    }
                }
                g.sweep_pos[db] = pos;
                g.expired += expired;
                if expired > 0 {
                    g.dbs[db].shrink_if_sparse(&hasher);
                }
                inner.publish(s, &g);
                drop(g);
                if let Some(n) = notifier {
                    for k in &gone {
                        n.notify(crate::pubsub::class::EXPIRED, "expired", k, db);
                    }
                }
                if let Some(n) = inner.notifier.get() {
                    for (k, key_gone) in &hexpired {
                        n.notify(crate::pubsub::class::HASH, "hexpired", k, db);
                        if *key_gone {
                            n.notify(crate::pubsub::class::GENERIC, "del", k, db);
                        }
                    }
                }
                todo -= batch;
            }
            if ttl_n > 0 {
                inner.lock(s).ttl_samples[db] = (ttl_sum, ttl_n);
            }
        }
    }
    let used = inner.used_memory();
    inner.peak.fetch_max(used, Ordering::Relaxed);
}
