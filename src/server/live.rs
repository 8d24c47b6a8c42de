//! Settings while the server runs: what `CONFIG GET` reads and what `CONFIG SET`, a reload
//! of the configuration file (`reload.rs`) and the admin API's migration changes apply.
//! All go through [`set`], so each setting is parsed and checked by its row of the settings
//! table (`config/table.rs`), the same rule as at start.
//!
//! A change is all or nothing: every value is parsed and checked before any is applied.

use crate::config::def::{By, Def, Running};
use crate::config::table;
use crate::config::Config;
use crate::deployment::{Deployment, MigrationControl};
use crate::server::Server;

impl<S: Deployment> Running for Server<S> {
    fn config(&self) -> &Config {
        &self.config
    }
    fn settings(&self) -> &crate::server::settings::Settings {
        &self.settings
    }
    fn slowlog(&self) -> &crate::metrics::slowlog::SlowLog {
        &self.slowlog
    }
    fn latency(&self) -> &crate::metrics::latency::LatencyMonitor {
        &self.latency
    }
    fn pubsub(&self) -> &crate::pubsub::Hub {
        &self.pubsub
    }
    fn scripts(&self) -> Vec<&crate::script::Scripts> {
        let mut v = vec![&self.scripts];
        if let Some(inner) = self.store.migration().and_then(|m| m.embedded_scripts()) {
            v.push(inner);
        }
        v
    }
    fn journal(&self) -> Option<&crate::persist::journal::Journal> {
        self.persist
            .as_ref()
            .and_then(|p| p.journal())
            .map(|j| &**j)
    }
    fn migration(&self) -> Option<&dyn MigrationControl> {
        self.store.migration()
    }
    fn is_gateway(&self) -> bool {
        self.store.gateway().is_some()
    }
    fn databases(&self) -> usize {
        self.store.databases()
    }
    fn memory(&self) -> (u64, String) {
        let s = self.store.stats(crate::clock::now_ms());
        (s.maxmemory, s.maxmemory_policy.to_string())
    }
    fn set_maxmemory(&self, bytes: u64) {
        self.store.set_maxmemory(bytes);
    }
    fn set_maxmemory_policy(&self, policy: &str) {
        let _ = self.store.set_maxmemory_policy(policy);
    }
    fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }
}

/// The `CONFIG` parameters, each name once (aliases included), in table order.
pub fn params() -> impl Iterator<Item = (&'static str, &'static Def)> {
    table::all().filter(|d| d.get.is_some()).flat_map(|d| {
        std::iter::once(d.name)
            .chain(d.aliases.iter().copied())
            .map(move |n| (n, d))
    })
}

/// `CONFIG GET` of one parameter (lower case); `None` if there is no such parameter.
pub fn get(r: &dyn Running, name: &str) -> Option<String> {
    let def = table::find(name)?;
    def.get.map(|g| g(r))
}

/// Why a change was refused.
#[derive(Debug)]
pub enum Refused {
    /// No such `CONFIG` parameter.
    Unknown(String),
    /// (parameter, why), in Redis's words where Redis has the setting.
    Failed(String, String),
}

/// Sets `(name, value)` pairs (names lower case): all are parsed and checked before any is
/// applied, so one bad value changes nothing. Returns `(name, old value, new value)` per
/// pair applied, a secret's values as `(hidden)`.
///
/// Each value is parsed into a scratch configuration over the setting's current value
/// (`client-output-buffer-limit` names only the classes it changes); a row applies only
/// the fields it loaded. The migration's stage and percentage change together: a value
/// for one keeps the other's running value.
pub fn set(
    r: &dyn Running,
    pairs: &[(&str, &str)],
    by: &By,
) -> Result<Vec<(String, String, String)>, Refused> {
    let mut scratch = Config::default();
    let mut rows = Vec::with_capacity(pairs.len());
    for &(name, value) in pairs {
        let def = table::find(name)
            .filter(|d| d.get.is_some())
            .ok_or_else(|| Refused::Unknown(name.to_string()))?;
        let failed = |e: String| Refused::Failed(name.to_string(), e);
        let (Some(load), Some(get), Some(_)) = (def.load, def.get, def.apply) else {
            return Err(failed("can't set immutable config".into()));
        };
        if let Some(mode) = def.mode {
            mode(r).map_err(failed)?;
        }
        let _ = load(&mut scratch, &get(r));
        load(&mut scratch, value).map_err(failed)?;
        rows.push((name, value, def));
    }
    for &(name, _, def) in &rows {
        if let Some(check) = def.check {
            check(r, &scratch).map_err(|e| Refused::Failed(name.to_string(), e))?;
        }
    }
    // What is reported (a reload's report, the admin API's reply) never holds a secret.
    let shown = |def: &Def, v: String| {
        if def.secret {
            "(hidden)".to_string()
        } else {
            v
        }
    };
    // Every old value is read before anything changes (two rows may share one apply).
    let before: Vec<String> = rows
        .iter()
        .map(|(_, _, def)| shown(def, def.get.map(|g| g(r)).unwrap_or_default()))
        .collect();
    let mut applied = Vec::with_capacity(rows.len());
    let mut done: Vec<crate::config::def::Apply> = Vec::with_capacity(rows.len());
    for ((name, value, def), before) in rows.into_iter().zip(before) {
        // Rows that share one apply (the migration's stage and percentage, which change
        // together) apply, and are audited, once.
        if let Some(apply) = def.apply {
            if !done.iter().any(|d| std::ptr::fn_addr_eq(*d, apply)) {
                apply(r, &scratch, by);
                done.push(apply);
            }
        }
        applied.push((name.to_string(), before, shown(def, value.to_string())));
    }
    Ok(applied)
}

/// The live settings' names (for a reload: the others need a restart).
pub fn is_live(name: &str) -> bool {
    table::find(name).is_some_and(|d| d.apply.is_some())
}
