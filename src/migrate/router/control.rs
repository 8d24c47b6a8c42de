//! The operator's side of the router: the stage and percentage, the guard, the shadow
//! sample, and what the router reports (metrics families, the admin API's status), through
//! [`MigrationControl`]. Commands other than strings are handed to `typed.rs` from here.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Router;
use crate::deployment::{Deployment, MigrationControl};
use crate::migrate::command::{CommandStore, Frame};
use crate::migrate::stage::{Setting, Side, Stage};
use crate::migrate::typed::{Request, Transaction};
use crate::store::StoreResult;

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

    fn guard(&self) -> Option<crate::migrate::guard::GuardConfig> {
        *self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_guard(&self, g: Option<crate::migrate::guard::GuardConfig>) {
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
        req: Request<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>> {
        Box::pin(Router::command(self, req))
    }

    fn everywhere<'a>(
        &'a self,
        req: Request<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>> {
        Box::pin(Router::everywhere(self, req))
    }

    fn transaction<'a>(
        &'a self,
        req: Transaction<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>> {
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
        for stage in crate::migrate::stage::Stage::ALL {
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
