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
//! * Every `TICK` (100 ms) the sweeper passes, in each table, `max(MIN_BUCKETS_PER_TICK,
//!   buckets / TICKS_PER_PASS)` buckets from where it stopped last time, in groups of
//!   `table::GROUP`, removing expired records. A full pass over any table therefore takes
//!   about one second (`TICKS_PER_PASS` ticks), whatever its size: an expired session is
//!   reclaimed within ~1 s of its deadline (or at once, if it is accessed).
//! * It reads the records of a group only when the group's deadline tag has come (see
//!   `table.rs`: a lower bound of the earliest expiry in the group, kept by every write).
//!   Reading a record is a cache miss, and on a virtual machine whose host takes back pages
//!   left untouched for a few seconds (this project's benchmark machine: about 7 µs per
//!   page touched after 5 s idle) it is far more; a walk that read every record once a
//!   second kept 7–36% of a core busy on a million idle sessions (Redis, sampling: 0–3%).
//!   Now an idle table costs a 4-byte read per 8 buckets, and records are read where
//!   something is due (plus one group per table per tick, which keeps `avg_ttl` sampled).
//! * The walk takes a shard lock for at most `CHUNK` buckets at a time and then releases it,
//!   so requests to that shard wait at most a few microseconds behind the sweeper.
//! * Memory reaches an equilibrium under steady create/expire load: live sessions plus at
//!   most ~1 s of expired-but-unreclaimed ones (the seeds' "5 GB equilibrium").
//! * A mass expiry (a million sessions ending in the same second) costs the same bounded
//!   work per chunk; it is spread over the next pass, never done under one lock.
//!
//! Trade-off: the tags cost 0.5 byte per bucket, and every write lowers one. In exchange no
//! expiry index is kept (Redis keeps a second dictionary of volatile keys), reclamation
//! latency is deterministic, and a group is read when one of its records is due, not once a
//! second.
//!
//! Where it runs. Inside a tokio runtime (always, in `serve`) the sweep is a task on the
//! workers, as Redis runs its expiry cycle inside its event loop: one chunk at a time, with a
//! yield between chunks, so a request waits behind at most one chunk and never behind a
//! lock. A thread of its own was the first design and cost the tail: on a machine whose
//! cores are all busy, the kernel can preempt that thread while it holds a shard lock, and a
//! worker that needs the shard then sleeps until the sweeper is scheduled again, for a
//! scheduler slice (milliseconds). Measured with the pipelined MULTI mix (bench/loadgen
//! `multi`, 3 alternating rounds): p99 962/881/1,031 µs with the thread against 760/803/689
//! µs with no sweep at all, p999 about 3.2 ms against 2.1 ms. Without a runtime (tools,
//! some tests) it still runs on a thread.
//!
//! The sweep also advances the LRU clock and samples remaining TTLs for
//! `INFO keyspace avg_ttl`.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::table::GROUP;
use super::{Inner, SHARDS};

const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_PASS: usize = 10;
const MIN_BUCKETS_PER_TICK: usize = 16;
const CHUNK: usize = 128;
/// Empty tables looked at between two yields of the sweep task (each is one uncontended
/// lock), so a tick over 16 databases × 64 shards does not hold the worker in one go.
const IDLE_TABLES_PER_YIELD: usize = 64;

pub(super) fn spawn_sweeper(engine: Weak<Inner>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(sweep_task(engine));
        return;
    }
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

/// The sweep as a task of the runtime: one tick every `TICK`, a yield after every chunk.
async fn sweep_task(engine: Weak<Inner>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An interval's first tick completes at once; the sweep starts one `TICK` in.
    every.tick().await;
    loop {
        every.tick().await;
        let Some(mut inner) = engine.upgrade() else {
            return;
        };
        let mut tick = Tick::new(&inner, crate::clock::now_ms());
        let mut idle = 0;
        loop {
            match tick.step(&inner) {
                Step::Done => break,
                Step::Idle if idle < IDLE_TABLES_PER_YIELD => {
                    idle += 1;
                    continue;
                }
                Step::Idle | Step::Worked => idle = 0,
            }
            // Between chunks, with no lock held: the requests queued meanwhile run first.
            // The engine is not kept alive across the yield, so dropping it ends the task.
            drop(inner);
            tokio::task::yield_now().await;
            inner = match engine.upgrade() {
                Some(i) => i,
                None => return,
            };
        }
        tick.finish(&inner);
    }
}

/// Expired hash fields reclaimed per hash per sweep visit.
const FIELDS_PER_HASH: usize = 64;

/// One tick of the sweep over every table, run to the end. For the thread and for tests;
/// returns the number of records it read.
pub(super) fn sweep_tick(inner: &Inner, now: i64) -> u64 {
    let mut tick = Tick::new(inner, now);
    while !matches!(tick.step(inner), Step::Done) {}
    tick.finish(inner);
    tick.visited
}

/// What one [`Tick::step`] did.
enum Step {
    /// Swept a chunk of groups (under the shard lock, released again).
    Worked,
    /// Looked at an empty table.
    Idle,
    /// The tick has visited every table.
    Done,
}

/// Where one tick of the sweep stands, so it can be run a chunk at a time: the table it is
/// in (shard, database), the groups of buckets it still owes that table, and the TTL sample
/// so far.
struct Tick {
    now: i64,
    shard: usize,
    db: usize,
    todo: Option<usize>,
    ttl_sum: u64,
    ttl_n: u64,
    /// Records read this tick.
    visited: u64,
}

impl Tick {
    fn new(inner: &Inner, now: i64) -> Tick {
        inner
            .lru_clock
            .store(inner.started.elapsed().as_secs() as u32, Ordering::Relaxed);
        Tick {
            now,
            shard: 0,
            db: 0,
            todo: None,
            ttl_sum: 0,
            ttl_n: 0,
            visited: 0,
        }
    }

    /// Sweeps at most one chunk (`CHUNK` buckets, one lock hold) of the current table.
    fn step(&mut self, inner: &Inner) -> Step {
        if self.shard >= SHARDS {
            return Step::Done;
        }
        let (todo, first) = match self.todo {
            Some(t) => (t, false),
            None => {
                let n = inner.lock(self.shard).dbs[self.db].groups();
                if n == 0 {
                    self.next_table(inner);
                    return Step::Idle;
                }
                let per_tick = (n * GROUP / TICKS_PER_PASS).max(MIN_BUCKETS_PER_TICK) / GROUP;
                (per_tick.clamp(1, n), true)
            }
        };
        match self.chunk(inner, todo, first) {
            Some(batch) if batch < todo => self.todo = Some(todo - batch),
            _ => self.next_table(inner),
        }
        Step::Worked
    }

    fn next_table(&mut self, inner: &Inner) {
        if self.ttl_n > 0 {
            inner.lock(self.shard).ttl_samples[self.db] = (self.ttl_sum, self.ttl_n);
        }
        (self.ttl_sum, self.ttl_n, self.todo) = (0, 0, None);
        self.db += 1;
        if self.db >= inner.databases {
            self.db = 0;
            self.shard += 1;
        }
    }

    fn finish(&self, inner: &Inner) {
        let used = inner.used_memory();
        inner.peak.fetch_max(used, Ordering::Relaxed);
    }

    /// One lock hold over up to `CHUNK` buckets' worth of the `todo` groups owed to the
    /// current table: groups whose deadline tag has not come are passed over without reading
    /// a record, except the first group of the table's first chunk in a tick (`sample`),
    /// which is always read so that `avg_ttl` keeps being sampled. Returns the number of
    /// groups passed, or None if the table is empty now.
    fn chunk(&mut self, inner: &Inner, todo: usize, sample: bool) -> Option<usize> {
        let (s, db, now) = (self.shard, self.db, self.now);
        let (ttl_sum, ttl_n) = (&mut self.ttl_sum, &mut self.ttl_n);
        let visited = &mut self.visited;
        let hasher = inner.hasher_fn();
        let mut g = inner.lock(s);
        let n = g.dbs[db].groups();
        if n == 0 {
            return None;
        }
        let mut pos = g.sweep_pos[db] % n;
        let batch = todo.min(CHUNK / GROUP);
        let mut expired = 0;
        // Keys to announce as `expired` (only when someone listens for them).
        let notifier = inner
            .notifier
            .get()
            .filter(|n| n.wants(crate::pubsub::class::EXPIRED));
        let mut gone: Vec<Vec<u8>> = Vec::new();
        // Hash fields with TTLs in the groups read: at most FIELDS_PER_HASH per hash per
        // visit, so a hash with many due fields is reclaimed over several ticks rather than
        // in one lock hold.
        let mut due: Vec<Vec<u8>> = Vec::new();
        let mut read: Vec<usize> = Vec::new();
        for i in 0..batch {
            let group = pos;
            pos = (pos + 1) % n;
            let t = &mut g.dbs[db];
            if !(t.group_due(group, now) || (sample && i == 0)) {
                continue;
            }
            read.push(group);
            for b in t.group_buckets(group) {
                let (removed, _) = t.purge_bucket(b, |e| {
                    *visited += 1;
                    let dead = e.is_expired(now);
                    if !dead && e.expire() != 0 {
                        *ttl_sum += (e.expire() - now) as u64;
                        *ttl_n += 1;
                    }
                    if dead && notifier.is_some() {
                        gone.push(e.key().to_vec());
                    }
                    dead
                });
                expired += removed as u64;
                for e in t.bucket(b) {
                    if e.kind() == super::value::Kind::Hash
                        && super::hash::HashRef::of(e)
                            .and_then(|h| h.next_expiry())
                            .is_some_and(|at| at < now)
                    {
                        due.push(e.key().to_vec());
                    }
                }
            }
        }
        let mut hexpired: Vec<(Vec<u8>, bool)> = Vec::new();
        for k in due {
            let h = inner.hash(&k);
            let (fields, gone) =
                super::mutate::expired_fields(&mut g.dbs[db], h, &k, now, FIELDS_PER_HASH, &hasher);
            if !fields.is_empty() {
                hexpired.push((k, gone));
            }
        }
        // The groups read get exact tags again. (If reclaiming a hash shrank the table, the
        // indices name other groups now; an exact tag is right for any group.)
        for group in read {
            g.dbs[db].retag(group);
        }
        g.sweep_pos[db] = pos;
        g.expired += expired;
        if expired > 0 {
            g.dbs[db].shrink_if_sparse(&hasher);
        }
        inner.publish(s, &mut g);
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
        Some(batch)
    }
}
