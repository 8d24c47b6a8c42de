//! The migration router: a [`Store`] over an old and a new store, following the stage table
//! in [`super::stage`].
//!
//! Per session (its id is the key without the client prefix), the current setting gives a
//! stage and the stage a [`Plan`]: which store answers, whether the other is read and
//! compared, whether it is written too, whether a miss falls back to the old store. The
//! rules every method keeps:
//! * **The authoritative store is written first** and its outcome is the reply. The other
//!   store is then brought to the same state; if that fails, the request still succeeds and
//!   the failure is counted (`secondary_write_errors`).
//! * **Nobody is logged out.** Where the new store serves, a miss (or an error) there is
//!   looked up in the old store; a session found there is served and copied forward with its
//!   remaining TTL, never over a value written to the new store meanwhile (`SET … NX`).
//! * **Deletes and TTL changes reach both stores** while both are written.
//! * **Shadow reads never change a reply**: the compared store's answer only feeds counters
//!   and the mismatch samples.
//!
//! The setting is one atomic word, so a change made through the admin API is seen by the
//! next command of every connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::command::CommandStore;
use super::stage::{bucket, Plan, Setting, Side, Stage};
use crate::deployment::Deployment;
use crate::legacy::keymap::KeyMap;
use crate::store::{
    Db, SetCondition, SetOptions, SetOutcome, Store, StoreResult, Ttl, TtlChange, UnixMs,
};

/// Outcomes of comparing the two stores' answers to one read.
#[derive(Default)]
pub struct CompareCounters {
    pub matched: AtomicU64,
    pub mismatched: AtomicU64,
    pub missing_in_new: AtomicU64,
    pub missing_in_old: AtomicU64,
    pub errors: AtomicU64,
}

/// One mismatch, kept for operators: never the value, and the session id only hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: UnixMs,
    pub op: &'static str,
    pub kind: &'static str,
    /// The session's ramp bucket and a hash of its id (not reversible to the id).
    pub id_hash: String,
}

/// How many mismatch samples are kept (the oldest go first).
pub const SAMPLES: usize = 64;

#[derive(Default)]
pub struct MigrationStats {
    pub compare: CompareCounters,
    pub secondary_write_errors: AtomicU64,
    pub fallback_reads: AtomicU64,
    pub copied_forward: AtomicU64,
    /// Shadow comparisons of typed commands, by command family (`typed.rs`).
    pub by_family: super::typed::FamilyCompare,
    samples: Mutex<VecDeque<Sample>>,
}

impl MigrationStats {
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub(super) fn sample(&self, op: &'static str, kind: &'static str, id: &[u8]) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == SAMPLES {
            s.pop_front();
        }
        let digest = crc32fast::hash(id);
        s.push_back(Sample {
            at_ms: crate::clock::now_ms(),
            op,
            kind,
            id_hash: format!("{:04}-{digest:08x}", bucket(id)),
        });
    }
}

pub struct Router<O: Store, N: Store> {
    pub old: O,
    pub new: N,
    pub keys: KeyMap,
    /// Stage index << 16 | basis points.
    setting: AtomicU32,
    pub stats: MigrationStats,
    /// Names of the two stores, for status reports.
    pub old_kind: &'static str,
    pub new_kind: &'static str,
    /// The guarded ramp's bounds (`guard.rs`), changeable live; `None`: off.
    pub guard: Mutex<Option<super::guard::GuardConfig>>,
    /// Orders typed writes and their mirrors per key (`typed.rs`).
    pub(super) locks: super::typed::KeyLocks,
    /// Share of shadow reads compared, in hundredths of a percent (`migrate-shadow-sample`).
    pub shadow_sample: AtomicU32,
    /// Who the router's own copies are sent as.
    pub(super) internal: std::sync::Arc<crate::server::clients::ClientHandle>,
}

/// `migrate-shadow-sample` as hundredths of a percent.
pub fn sample_basis_points(percent: f64) -> Result<u32, String> {
    if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
        return Err(format!("{percent}: expected 0 to 100"));
    }
    Ok((percent * 100.0).round() as u32)
}

fn pack(s: Setting) -> u32 {
    let i = Stage::ALL.iter().position(|&x| x == s.stage).unwrap_or(0) as u32;
    (i << 16) | s.basis_points.min(10_000)
}

fn unpack(v: u32) -> Setting {
    Setting {
        stage: Stage::ALL[((v >> 16) as usize).min(Stage::ALL.len() - 1)],
        basis_points: v & 0xffff,
    }
}

fn latency_line(side: &str, l: Option<super::timed::Latency>) -> String {
    match l {
        Some(l) => format!(
            "latency_{side}:calls={},p50_us={},p99_us={},p999_us={},max_us={}\r\n",
            l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us
        ),
        None => String::new(),
    }
}

/// The TTL to give a copy: what the source has left.
fn remaining(t: Ttl) -> Option<TtlChange> {
    match t {
        Ttl::Missing => None,
        Ttl::Persistent => Some(TtlChange::Clear),
        Ttl::At(ms) => Some(TtlChange::At(ms)),
    }
}

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> Router<O, N> {
    /// GET, routed by stage. `locked`: the caller holds the key's write lock (a write that
    /// brings the key forward first).
    async fn get_inner(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
        locked: bool,
    ) -> StoreResult<Option<Bytes>> {
        let p = self.plan(key);
        let id = self.keys.session_id(key);
        match (p.serve, p.compare) {
            (Side::Old, false) => self.old.get(db, key, now).await,
            (Side::Old, true) => {
                let (o, n) = tokio::join!(self.old.get(db, key, now), self.new.get(db, key, now));
                self.compared("get", id, &o, &n);
                o
            }
            (Side::New, compare) => {
                let (n, o) = if compare {
                    let (n, o) =
                        tokio::join!(self.new.get(db, key, now), self.old.get(db, key, now));
                    self.compared("get", id, &o, &n);
                    (n, Some(o))
                } else {
                    (self.new.get(db, key, now).await, None)
                };
                match n {
                    Ok(Some(v)) => Ok(Some(v)),
                    n if p.fall_back => {
                        let o = match o {
                            Some(o) => o,
                            None => self.old.get(db, key, now).await,
                        };
                        if let Ok(Some(_)) = &o {
                            self.stats.fallback_reads.fetch_add(1, Ordering::Relaxed);
                            if n.is_ok() {
                                self.copy_forward(db, key, now, locked).await;
                            }
                        }
                        match (o, n) {
                            (Ok(Some(v)), _) => Ok(Some(v)),
                            (_, n) => n,
                        }
                    }
                    n => n,
                }
            }
        }
    }

    /// Makes sure the new store has `key` before an operation that looks at its current
    /// value runs there (fallback stages): a copy of any type between Redis-protocol
    /// stores (`typed.rs`), a read that copies a string session forward otherwise.
    async fn forward(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<()> {
        if self.old.speaks_redis().is_ok() && self.new.speaks_redis().is_ok() {
            self.copy_forward_typed((&self.internal, db), key)
                .await
                .map(|_| ())
        } else {
            self.get_inner(db, key, now, true).await.map(|_| ())
        }
    }

    /// The embedded side's pub/sub hub, if a side is the embedded engine.
    pub fn embedded_hub(&self) -> Option<std::sync::Arc<crate::pubsub::Hub>> {
        self.old.hub().or_else(|| self.new.hub())
    }
}

impl<O: Store, N: Store> Router<O, N> {
    pub fn new(old: O, new: N, keys: KeyMap, setting: Setting) -> Self {
        Router {
            old,
            new,
            keys,
            setting: AtomicU32::new(pack(setting)),
            stats: MigrationStats::default(),
            old_kind: "old",
            new_kind: "new",
            guard: Mutex::new(None),
            locks: Default::default(),
            shadow_sample: AtomicU32::new((crate::config::DEFAULT_SHADOW_SAMPLE * 100.0) as u32),
            internal: crate::server::clients::ClientHandle::internal("migration-router"),
        }
    }

    pub fn setting(&self) -> Setting {
        unpack(self.setting.load(Ordering::Acquire))
    }

    /// Changes stage and percentage; every connection's next command sees it.
    pub fn set_setting(&self, s: Setting) {
        let before = self.setting();
        self.setting.store(pack(s), Ordering::Release);
        tracing::warn!(
            "migration: {} {}% -> {} {}%",
            before.stage,
            before.percent(),
            s.stage,
            s.percent()
        );
    }

    /// `INFO migration`.
    pub fn info(&self) -> String {
        let s = self.setting();
        let c = &self.stats.compare;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# Migration\r\nmigration_stage:{}\r\nmigration_percent:{}\r\nmigration_previous_stage:{}\r\ncompare_match:{}\r\ncompare_mismatch:{}\r\ncompare_missing_in_new:{}\r\ncompare_missing_in_old:{}\r\ncompare_errors:{}\r\nsecondary_write_errors:{}\r\nfallback_reads:{}\r\ncopied_forward:{}\r\nmismatch_samples:{}\r\n{}{}",
            s.stage,
            s.percent(),
            s.stage.previous(),
            n(&c.matched),
            n(&c.mismatched),
            n(&c.missing_in_new),
            n(&c.missing_in_old),
            n(&c.errors),
            n(&self.stats.secondary_write_errors),
            n(&self.stats.fallback_reads),
            n(&self.stats.copied_forward),
            self.stats.samples().len(),
            latency_line("old", self.old.latency()),
            latency_line("new", self.new.latency()),
        ) + &self.stats.by_family.info()
    }

    fn plan(&self, key: &[u8]) -> Plan {
        let mut p = self.setting().stage_for(self.keys.session_id(key)).plan();
        p.compare &= self.sampled();
        p
    }

    /// Whether this read is one of the compared share (`migrate-shadow-sample`).
    pub(super) fn sampled(&self) -> bool {
        let bp = self.shadow_sample.load(Ordering::Relaxed);
        bp >= 10_000 || fastrand::u32(..10_000) < bp
    }

    /// What keyspace-wide commands (DBSIZE, SCAN, FLUSHALL…) do: the current stage's plan,
    /// writing both stores if either the stage or the one before writes them.
    fn global_plan(&self) -> Plan {
        let s = self.setting();
        let mut p = s.stage.plan();
        let prev = s.stage.previous().plan();
        p.write_both |= prev.write_both || prev.serve != p.serve;
        p
    }

    fn secondary<T>(&self, r: StoreResult<T>) {
        if r.is_err() {
            self.stats
                .secondary_write_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn compared(
        &self,
        op: &'static str,
        id: &[u8],
        old: &StoreResult<Option<Bytes>>,
        new: &StoreResult<Option<Bytes>>,
    ) {
        let c = &self.stats.compare;
        // The string path compares GET-shaped reads: the `string` family.
        let family = &self.stats.by_family.counts[0];
        let kind = match (old, new) {
            (Ok(a), Ok(b)) if a == b => {
                c.matched.fetch_add(1, Ordering::Relaxed);
                family[0].fetch_add(1, Ordering::Relaxed);
                return;
            }
            (Ok(Some(_)), Ok(None)) => {
                c.missing_in_new.fetch_add(1, Ordering::Relaxed);
                "missing-in-new"
            }
            (Ok(None), Ok(Some(_))) => {
                c.missing_in_old.fetch_add(1, Ordering::Relaxed);
                "missing-in-old"
            }
            (Ok(_), Ok(_)) => {
                c.mismatched.fetch_add(1, Ordering::Relaxed);
                "mismatch"
            }
            _ => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        family[1].fetch_add(1, Ordering::Relaxed);
        self.stats.sample(op, kind, id);
    }

    /// Copies a session found only in the old store into the new one, with the TTL it has
    /// left there, unless the new store got a value meanwhile. Under the key's write lock
    /// (taken here unless the caller holds it), and from a fresh read of the old store: a
    /// write that deleted the session from both stores since it was read must not see it
    /// copied back.
    async fn copy_forward(&self, db: Db, key: &[u8], now: UnixMs, locked: bool) {
        let _held = if locked {
            None
        } else {
            Some(self.locks.lock(&[key]).await)
        };
        let Ok(Some((value, t))) = self.old.get_with_ttl(db, key, now).await else {
            return;
        };
        let Some(ttl) = remaining(t) else { return };
        let opts = SetOptions {
            ttl,
            condition: SetCondition::IfAbsent,
            get: false,
        };
        let r = self.new.set(db, key, &value, opts, now).await;
        if matches!(r, Ok(SetOutcome { written: true, .. })) {
            self.stats.copied_forward.fetch_add(1, Ordering::Relaxed);
        }
        self.secondary(r);
    }

    /// Brings `key` in the non-authoritative store to what the authoritative one holds
    /// (value and TTL), for writes that are not simply repeatable (APPEND, INCRBY, KEEPTTL).
    async fn mirror(&self, serve: Side, db: Db, key: &[u8], now: UnixMs) {
        match serve {
            Side::Old => mirror_key(&self.old, &self.new, db, key, now, &self.stats).await,
            Side::New => mirror_key(&self.new, &self.old, db, key, now, &self.stats).await,
        }
    }
}

async fn mirror_key<A: Store, B: Store>(
    from: &A,
    to: &B,
    db: Db,
    key: &[u8],
    now: UnixMs,
    stats: &MigrationStats,
) {
    let fail = || {
        stats.secondary_write_errors.fetch_add(1, Ordering::Relaxed);
    };
    let (v, t) = match (from.get(db, key, now).await, from.ttl(db, key, now).await) {
        (Ok(v), Ok(t)) => (v, t),
        _ => return fail(),
    };
    let r = match (v, remaining(t)) {
        (Some(v), Some(ttl)) => {
            let opts = SetOptions {
                ttl,
                condition: SetCondition::Always,
                get: false,
            };
            to.set(db, key, &v, opts, now).await.map(|_| ())
        }
        _ => to.del(db, &[key], now).await.map(|_| ()),
    };
    if r.is_err() {
        fail();
    }
}

/// Runs `$op` on the store a plan serves from and, when it writes both, `$mirror` on the
/// other (`$s` names the store in both expressions).
macro_rules! on {
    ($self:ident, $side:expr, |$s:ident| $op:expr) => {
        match $side {
            Side::Old => {
                let $s = &$self.old;
                $op
            }
            Side::New => {
                let $s = &$self.new;
                $op
            }
        }
    };
}

fn other(s: Side) -> Side {
    match s {
        Side::Old => Side::New,
        Side::New => Side::Old,
    }
}

mod control;
mod strings;
