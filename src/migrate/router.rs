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
use super::keymap::KeyMap;
use super::stage::{bucket, Plan, Setting, Side, Stage};
use crate::deployment::{Deployment, MigrationControl};
use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetCondition, SetOptions, SetOutcome, Store,
    StoreResult, StoreStats, Ttl, TtlChange, UnixMs,
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

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> MigrationControl for Router<O, N> {
    fn setting(&self) -> Setting {
        Router::setting(self)
    }

    fn set_setting(&self, s: Setting) {
        Router::set_setting(self, s)
    }

    fn serving(&self, key: &[u8]) -> &'static str {
        match self.plan(key).serve {
            Side::Old => "old",
            Side::New => "new",
        }
    }

    fn guard(&self) -> Option<super::guard::GuardConfig> {
        *self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_guard(&self, g: Option<super::guard::GuardConfig>) {
        *self.guard.lock().unwrap_or_else(|p| p.into_inner()) = g;
    }

    fn shadow_sample(&self) -> u32 {
        self.shadow_sample.load(Ordering::Relaxed)
    }

    fn embedded_scripts(&self) -> Option<&crate::script::Scripts> {
        self.old.scripts().or_else(|| self.new.scripts())
    }

    fn set_shadow_sample(&self, basis_points: u32) {
        self.shadow_sample
            .store(basis_points.min(10_000), Ordering::Relaxed);
    }

    fn commands_supported(&self) -> Result<(), String> {
        self.old
            .speaks_redis()
            .map_err(|e| format!("the old store: {e}"))?;
        self.new
            .speaks_redis()
            .map_err(|e| format!("the new store: {e}"))
    }

    fn command<'a>(
        &'a self,
        req: super::typed::Request<'a>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = StoreResult<super::command::Frame>> + Send + 'a>,
    > {
        Box::pin(Router::command(self, req))
    }

    fn everywhere<'a>(
        &'a self,
        req: super::typed::Request<'a>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = StoreResult<super::command::Frame>> + Send + 'a>,
    > {
        Box::pin(Router::everywhere(self, req))
    }

    fn transaction<'a>(
        &'a self,
        req: super::typed::Transaction<'a>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = StoreResult<super::command::Frame>> + Send + 'a>,
    > {
        Box::pin(Router::transaction(self, req))
    }

    fn script_engine(&self) -> Result<&crate::engine::Engine, String> {
        let s = Router::setting(self);
        let (side, store) = match s.stage {
            Stage::Off => ("old", self.old.engine()),
            Stage::Complete if s.basis_points >= 10_000 => ("new", self.new.engine()),
            _ => {
                return Err(format!(
                    "ERR scripts do not run in migration stage {} at {}%: it writes both stores, and a script cannot run atomically on two (only the lock release runs; see the README)",
                    s.stage,
                    s.percent()
                ))
            }
        };
        store.ok_or_else(|| {
            let kind = if side == "old" { self.old_kind } else { self.new_kind };
            format!(
                "ERR scripts run in migration mode only when the store that serves every session is the embedded engine; here it is the {side} store ({kind})"
            )
        })
    }

    fn metrics(&self, f: &mut crate::metrics::export::Families) {
        let s = Router::setting(self);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for stage in super::stage::Stage::ALL {
            f.gauge(
                "migration_stage",
                "1 for the migration's current stage (one series per stage).",
                &[("stage", stage.name())],
                if stage == s.stage { 1.0 } else { 0.0 },
            );
        }
        f.gauge(
            "migration_percent",
            "Share of sessions the current stage applies to, in percent.",
            &[],
            s.percent(),
        );
        let c = &self.stats.compare;
        for (result, v) in [
            ("match", &c.matched),
            ("mismatch", &c.mismatched),
            ("missing_in_new", &c.missing_in_new),
            ("missing_in_old", &c.missing_in_old),
            ("error", &c.errors),
        ] {
            f.counter(
                "migration_comparisons",
                "Shadow reads compared, by result.",
                &[("result", result)],
                n(v),
            );
        }
        for (family, [m, d]) in crate::metrics::FAMILIES
            .iter()
            .zip(&self.stats.by_family.counts)
        {
            let (m, d) = (n(m), n(d));
            if m + d > 0 {
                for (result, v) in [("match", m), ("differ", d)] {
                    f.counter(
                        "migration_family_comparisons",
                        "Shadow reads compared, by command family and result.",
                        &[("family", family), ("result", result)],
                        v,
                    );
                }
            }
        }
        f.counter(
            "migration_fallback_reads",
            "Reads served by the old store because the new one lacked the session.",
            &[],
            n(&self.stats.fallback_reads),
        );
        f.counter(
            "migration_copied_forward",
            "Sessions copied forward to the new store on read.",
            &[],
            n(&self.stats.copied_forward),
        );
        f.counter(
            "migration_secondary_write_errors",
            "Writes to the store not serving the stage that failed.",
            &[],
            n(&self.stats.secondary_write_errors),
        );
        for (side, l) in [("old", self.old.latency()), ("new", self.new.latency())] {
            if let Some(l) = l {
                f.histogram(
                    "migration_store_duration_seconds",
                    "Time one call to each side of the migration takes.",
                    &[("store", side)],
                    l.histogram(),
                );
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let s = Router::setting(self);
        let c = &self.stats.compare;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "stage": s.stage.name(),
            "percent": s.percent(),
            "previous_stage": s.stage.previous().name(),
            "guard": MigrationControl::guard(self).map(|g| g.render()),
            "stores": { "old": self.old_kind, "new": self.new_kind },
            "compare": {
                "match": n(&c.matched),
                "mismatch": n(&c.mismatched),
                "missing_in_new": n(&c.missing_in_new),
                "missing_in_old": n(&c.missing_in_old),
                "errors": n(&c.errors),
            },
            "latency_us": {
                "old": self.old.latency(),
                "new": self.new.latency(),
            },
            "secondary_write_errors": n(&self.stats.secondary_write_errors),
            "fallback_reads": n(&self.stats.fallback_reads),
            "copied_forward": n(&self.stats.copied_forward),
            "mismatch_samples": self.stats.samples().iter().map(|x| serde_json::json!({
                "at_ms": x.at_ms, "op": x.op, "kind": x.kind, "id_hash": x.id_hash,
            })).collect::<Vec<_>>(),
        })
    }
}

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> Store for Router<O, N> {
    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        self.get_inner(db, key, now, false).await
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        // Make sure the served store has the session (fallback copies it forward), then
        // change the TTL on both.
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let v = on!(self, p.serve, |s| s.get_ex(db, key, ttl, now).await)?;
        if p.write_both && v.is_some() && ttl != TtlChange::Keep {
            let r = on!(self, other(p.serve), |s| match ttl {
                TtlChange::At(at) => s
                    .expire_at(db, key, at, ExpireCondition::Always, now)
                    .await
                    .map(|_| ()),
                _ => s.persist(db, key, now).await.map(|_| ()),
            });
            self.secondary(r);
        }
        Ok(v)
    }

    async fn get_del(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        let v = if p.fall_back {
            let v = self.get_inner(db, key, now, true).await?;
            on!(self, p.serve, |s| s.del(db, &[key], now).await)?;
            v
        } else {
            on!(self, p.serve, |s| s.get_del(db, key, now).await)?
        };
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.del(db, &[key], now).await);
            self.secondary(r);
        }
        Ok(v)
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(db, k, now).await?);
        }
        Ok(out)
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back
            && (opts.condition != SetCondition::Always || opts.get || opts.ttl == TtlChange::Keep)
        {
            // NX/XX/GET/KEEPTTL look at the current value: bring it forward first.
            self.forward(db, key, now).await?;
        }
        let out = on!(self, p.serve, |s| s.set(db, key, value, opts, now).await)?;
        if p.write_both && out.written {
            if opts.ttl == TtlChange::Keep {
                self.mirror(p.serve, db, key, now).await;
            } else {
                let plain = SetOptions {
                    ttl: opts.ttl,
                    condition: SetCondition::Always,
                    get: false,
                };
                let r = on!(self, other(p.serve), |s| s
                    .set(db, key, value, plain, now)
                    .await);
                self.secondary(r);
            }
        }
        Ok(out)
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        if only_if_none_exist {
            let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
            let _held = self.locks.lock(&keys).await;
            // All-or-nothing needs one store to decide: the one serving the first key.
            let p = self.plan(pairs.first().map_or(&b""[..], |(k, _)| *k));
            if p.fall_back {
                for (k, _) in pairs {
                    self.forward(db, k, now).await?;
                }
            }
            let ok = on!(self, p.serve, |s| s.mset(db, pairs, true, now).await)?;
            if ok && p.write_both {
                let r = on!(self, other(p.serve), |s| s
                    .mset(db, pairs, false, now)
                    .await);
                self.secondary(r);
            }
            return Ok(ok);
        }
        for (k, v) in pairs {
            self.set(db, k, v, SetOptions::plain(), now).await?;
        }
        Ok(true)
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let n = on!(self, p.serve, |s| s.append(db, key, value, now).await)?;
        if p.write_both {
            self.mirror(p.serve, db, key, now).await;
        }
        Ok(n)
    }

    async fn strlen(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<u64> {
        Ok(self.get(db, key, now).await?.map_or(0, |v| v.len() as u64))
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let n = on!(self, p.serve, |s| s.incr_by(db, key, delta, now).await)?;
        if p.write_both {
            self.mirror(p.serve, db, key, now).await;
        }
        Ok(n)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(keys).await;
        let mut n = 0;
        for k in keys {
            let p = self.plan(k);
            let mut d = on!(self, p.serve, |s| s.del(db, &[k], now).await)?;
            if p.fall_back || p.write_both {
                // Deletes reach both stores while both may hold the session.
                let r = on!(self, other(p.serve), |s| s.del(db, &[k], now).await);
                if p.fall_back && d == 0 {
                    d = *r.as_ref().unwrap_or(&0);
                }
                self.secondary(r);
            }
            n += d;
        }
        Ok(n)
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let deleted = on!(self, p.serve, |s| s
            .del_if_equal(db, key, expected, now)
            .await)?;
        if deleted && p.write_both {
            let r = on!(self, other(p.serve), |s| s.del(db, &[key], now).await);
            self.secondary(r);
        }
        Ok(deleted)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        let mut n = 0;
        for k in keys {
            let p = self.plan(k);
            let mut e = on!(self, p.serve, |s| s.exists(db, &[k], now).await)?;
            if e == 0 && p.fall_back {
                e = self.old.exists(db, &[k], now).await.unwrap_or(0);
            }
            n += e;
        }
        Ok(n)
    }

    async fn key_type(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<KeyType>> {
        let p = self.plan(key);
        let t = on!(self, p.serve, |s| s.key_type(db, key, now).await)?;
        if t.is_none() && p.fall_back {
            return self.old.key_type(db, key, now).await;
        }
        Ok(t)
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[src, dst]).await;
        let p = self.plan(src);
        if p.fall_back {
            self.forward(db, src, now).await?;
        }
        let done = on!(self, p.serve, |s| s
            .rename(db, src, dst, only_if_absent, now)
            .await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s
                .rename(db, src, dst, false, now)
                .await);
            // A source missing in the other store is not a failure: there was nothing to move.
            if !matches!(r, Err(crate::store::StoreError::NoSuchKey)) {
                self.secondary(r);
            }
        }
        Ok(done)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let done = on!(self, p.serve, |s| s.expire_at(db, key, at, cond, now).await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s
                .expire_at(db, key, at, ExpireCondition::Always, now)
                .await);
            self.secondary(r);
        }
        Ok(done)
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        // Ordered against copies and mirrors of the same key (`typed.rs`).
        let _held = self.locks.lock(&[key]).await;
        let p = self.plan(key);
        if p.fall_back {
            self.forward(db, key, now).await?;
        }
        let done = on!(self, p.serve, |s| s.persist(db, key, now).await)?;
        if done && p.write_both {
            let r = on!(self, other(p.serve), |s| s.persist(db, key, now).await);
            self.secondary(r);
        }
        Ok(done)
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        let p = self.plan(key);
        let t = on!(self, p.serve, |s| s.ttl(db, key, now).await)?;
        if t == Ttl::Missing && p.fall_back {
            return self.old.ttl(db, key, now).await;
        }
        Ok(t)
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        on!(self, self.global_plan().serve, |s| s
            .scan(db, cursor, filter, now)
            .await)
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        on!(self, self.global_plan().serve, |s| s
            .keys(db, pattern, now)
            .await)
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        on!(self, self.global_plan().serve, |s| s
            .random_key(db, now)
            .await)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        on!(self, self.global_plan().serve, |s| s.dbsize(db).await)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.flush_db(db).await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.flush_db(db).await);
            self.secondary(r);
        }
        Ok(())
    }

    async fn flush_all(&self) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.flush_all().await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.flush_all().await);
            self.secondary(r);
        }
        Ok(())
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        let p = self.global_plan();
        on!(self, p.serve, |s| s.swap_db(a, b).await)?;
        if p.write_both {
            let r = on!(self, other(p.serve), |s| s.swap_db(a, b).await);
            self.secondary(r);
        }
        Ok(())
    }

    fn stats(&self, now: UnixMs) -> StoreStats {
        on!(self, self.global_plan().serve, |s| s.stats(now))
    }

    fn databases(&self) -> usize {
        self.old.databases().min(self.new.databases())
    }

    fn set_maxmemory(&self, bytes: u64) {
        self.new.set_maxmemory(bytes);
    }

    fn set_maxmemory_policy(&self, policy: &str) -> bool {
        self.new.set_maxmemory_policy(policy)
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        // Routed as the two reads it is made of.
        crate::store::composite::get_with_ttl(self, db, key, now).await
    }

    /// Each side's latency is reported in the router's own metrics.
    fn latency(&self) -> Option<crate::metrics::histogram::Latency> {
        None
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("migration", self.info())];
        v.extend(self.old.info_sections());
        v.extend(self.new.info_sections());
        v
    }
}

impl<O: Deployment + CommandStore, N: Deployment + CommandStore> Deployment for Router<O, N> {
    fn gateway(&self) -> Option<&crate::upstream::Upstream> {
        None
    }

    /// Not the engine even when a side is: commands go through the router's stages.
    fn engine(&self) -> Option<&crate::engine::Engine> {
        None
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}
