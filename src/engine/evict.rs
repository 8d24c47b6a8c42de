//! Eviction under `maxmemory`, with Redis's policy names.
//!
//! Before a write that may grow memory, [`reserve`] checks `used_memory` against
//! `maxmemory`. Over the limit:
//! * `noeviction` refuses the write with Redis's `-OOM` error;
//! * `allkeys-lru` evicts the least recently used of a random sample of records (Redis's
//!   approximated LRU: `SAMPLES` candidates, 1-second clock);
//! * `volatile-ttl` evicts, among sampled records that have a TTL, the one closest to
//!   expiring — for sessions, the one whose user is most likely gone.
//!
//! What `used_memory` counts (documented in the README): the allocator footprint of every
//! record (header + key + value, rounded as glibc malloc rounds) plus the hash tables' bucket
//! arrays. Connection buffers and the process's fixed overhead are not counted, so the
//! process RSS is somewhat higher; `INFO memory` shows both.

use std::sync::atomic::Ordering;

use super::{Inner, SHARDS};
use crate::store::{StoreError, StoreResult};

/// Candidates sampled per eviction (Redis's default `maxmemory-samples`).
const SAMPLES: usize = 5;
/// Most evictions one write may perform before giving up.
const MAX_EVICTIONS_PER_WRITE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Policy {
    NoEviction = 0,
    VolatileTtl = 1,
    AllKeysLru = 2,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().as_str() {
            "noeviction" => Some(Policy::NoEviction),
            "volatile-ttl" => Some(Policy::VolatileTtl),
            "allkeys-lru" => Some(Policy::AllKeysLru),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::VolatileTtl => "volatile-ttl",
            Policy::AllKeysLru => "allkeys-lru",
        }
    }

    pub(super) fn from_u8(v: u8) -> Policy {
        match v {
            1 => Policy::VolatileTtl,
            2 => Policy::AllKeysLru,
            _ => Policy::NoEviction,
        }
    }
}

/// Makes room for a write, or refuses it.
pub(super) fn reserve(inner: &Inner) -> StoreResult<()> {
    let max = inner.maxmemory.load(Ordering::Relaxed);
    if max == 0 || inner.used_memory() <= max {
        return Ok(());
    }
    let policy = inner.policy();
    if policy == Policy::NoEviction {
        return Err(StoreError::OutOfMemory);
    }
    if super::txn::active(inner) {
        // Inside EXEC only the block's shards may be touched (txn.rs): no eviction there.
        return Ok(());
    }
    for _ in 0..MAX_EVICTIONS_PER_WRITE {
        if !evict_one(inner, policy) {
            return Err(StoreError::OutOfMemory);
        }
        if inner.used_memory() <= max {
            return Ok(());
        }
    }
    Ok(())
}

/// A sampled candidate: where it is and how good a victim it is (lower is better).
struct Candidate {
    shard: usize,
    db: usize,
    key: Vec<u8>,
    score: i64,
}

fn evict_one(inner: &Inner, policy: Policy) -> bool {
    let mut best: Option<Candidate> = None;
    let mut sampled = 0;
    let lru_now = inner.lru_now();
    // Shards in random order until SAMPLES of them gave a candidate. If any evictable record
    // exists, it is found: a false OOM would refuse a session write for nothing.
    let start = fastrand::usize(..SHARDS);
    for s in (0..SHARDS).map(|k| (start + k) % SHARDS) {
        if sampled == SAMPLES {
            break;
        }
        let g = inner.lock(s);
        let db0 = fastrand::usize(..inner.databases);
        for db in (0..inner.databases).map(|k| (db0 + k) % inner.databases) {
            let t = &g.dbs[db];
            if t.is_empty() || (policy == Policy::VolatileTtl && t.volatile() == 0) {
                continue;
            }
            // Walk from a random bucket to the first bucket with an eligible record (tables
            // are at least 1/8 full, so this is short).
            let n = t.bucket_count();
            let b0 = fastrand::usize(..n);
            let mut found = false;
            for b in (0..n).map(|k| (b0 + k) % n) {
                for e in t.bucket(b) {
                    let score = match policy {
                        // Longest idle first; idle time modulo the clock's 24 bits.
                        Policy::AllKeysLru => {
                            -i64::from(lru_now.wrapping_sub(e.lru()) & super::entry::LRU_MASK)
                        }
                        Policy::VolatileTtl if e.expire() != 0 => e.expire(),
                        _ => continue,
                    };
                    found = true;
                    if best.as_ref().is_none_or(|c| score < c.score) {
                        best = Some(Candidate {
                            shard: s,
                            db,
                            key: e.key().to_vec(),
                            score,
                        });
                    }
                }
                if found {
                    break;
                }
            }
            if found {
                sampled += 1;
                break;
            }
        }
    }
    let Some(victim) = best else { return false };
    let hash = inner.hash(&victim.key);
    let mut g = inner.lock(victim.shard);
    let removed = super::mutate::Changes::new(inner).del(&mut g, victim.db, hash, &victim.key);
    if removed {
        g.evicted += 1;
        inner.notify(
            crate::pubsub::class::EVICTED,
            "evicted",
            &victim.key,
            victim.db,
        );
    }
    inner.publish(victim.shard, &mut g);
    removed
}
