//! What one setting is: the row type of the settings table (`table.rs`), the running server
//! as settings see it ([`Running`]), and the value parsers the rows share.
//!
//! Why a table: a setting used to be written in about nine places (a flag, a file field, a
//! config field, its start-up parse, `CONFIG GET`'s list and arm, `CONFIG SET`'s list, its
//! prepare arm and its apply arm), and start-up and `CONFIG SET` validated some values
//! differently. Now a setting is one row: its name (the flag, the `SESSIOND_*` variable, the
//! file key and the `CONFIG` parameter), its help, one parser that every source goes
//! through (flag, environment, file, reload, `CONFIG SET`, the admin API), what `CONFIG
//! GET` shows, and, if it can change while the server runs, how it is applied.

use std::sync::atomic::Ordering;

use super::Config;
use crate::deployment::MigrationControl;

/// How a value is written in the TOML file (the flag and `CONFIG SET` take text), and how
/// its flag parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number; may be negative.
    Int,
    /// A number, whole or not.
    Float,
    /// Bytes, or with a unit (`512mb`): a TOML integer or string.
    Size,
    /// `yes`/`no`: a TOML boolean or string.
    Bool,
    /// Several values: a TOML array; repeated or comma-separated as a flag.
    List,
}

/// Who changes a live setting, and why: written to the audit log for the migration's
/// settings.
pub struct By<'a> {
    pub who: &'a str,
    pub why: &'a str,
}

/// Parses and validates a value into the configuration. The one rule for a setting, at
/// start (flag, environment, file), on reload and for `CONFIG SET`. Errors are Redis's
/// `CONFIG SET` texts where Redis has the setting.
pub type Load = fn(&mut Config, &str) -> Result<(), String>;
/// What `CONFIG GET` shows.
pub type Get = fn(&dyn Running) -> String;
/// Whether the running server has what a setting changes (for example `appendfsync`
/// needs the append-only log), asked before its value is parsed.
pub type Mode = fn(&dyn Running) -> Result<(), String>;
/// Whether the running server takes this new value (loaded into the `Config`), for example
/// `maxclients` within the open-file limit.
pub type Check = fn(&dyn Running, &Config) -> Result<(), String>;
/// Takes the new value (loaded into the `Config`) into the running server.
pub type Apply = fn(&dyn Running, &Config, &By);

/// One row of the settings table.
pub struct Def {
    /// The flag (`--name`), the file key and the `CONFIG` parameter. The environment
    /// variable is `SESSIOND_` and the name in upper case with `_` for `-`.
    pub name: &'static str,
    /// Other `CONFIG` names for it (Redis's older names).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// The flag's value in `--help`.
    pub value_name: &'static str,
    pub help: &'static str,
    /// Never echoed in errors, hidden in `--help`'s environment values.
    pub secret: bool,
    /// None: not a setting of sessiond (a Redis parameter `CONFIG GET` answers).
    pub load: Option<Load>,
    /// None: not a `CONFIG` parameter.
    pub get: Option<Get>,
    /// None: fixed until a restart.
    pub mode: Option<Mode>,
    pub check: Option<Check>,
    pub apply: Option<Apply>,
}

impl Def {
    /// A setting with its flag, environment variable and file key.
    pub const fn new(
        name: &'static str,
        kind: Kind,
        value_name: &'static str,
        help: &'static str,
        load: Load,
    ) -> Def {
        Def {
            name,
            aliases: &[],
            kind,
            value_name,
            help,
            secret: false,
            load: Some(load),
            get: None,
            mode: None,
            check: None,
            apply: None,
        }
    }

    /// A Redis parameter `CONFIG GET` answers that is not a sessiond setting.
    pub const fn shown(name: &'static str, get: Get) -> Def {
        Def {
            name,
            aliases: &[],
            kind: Kind::Text,
            value_name: "",
            help: "",
            secret: false,
            load: None,
            get: Some(get),
            mode: None,
            check: None,
            apply: None,
        }
    }

    pub const fn get(mut self, get: Get) -> Def {
        self.get = Some(get);
        self
    }

    /// Settable while the server runs (`CONFIG SET`, reload).
    pub const fn live(mut self, apply: Apply) -> Def {
        self.apply = Some(apply);
        self
    }

    pub const fn mode(mut self, mode: Mode) -> Def {
        self.mode = Some(mode);
        self
    }

    pub const fn check(mut self, check: Check) -> Def {
        self.check = Some(check);
        self
    }

    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Def {
        self.aliases = aliases;
        self
    }

    pub const fn secret(mut self) -> Def {
        self.secret = true;
        self
    }

    /// The environment variable of the setting.
    pub fn env(&self) -> String {
        format!(
            "SESSIOND_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Whether `name` (lower case) names this row in `CONFIG`.
    pub fn is(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// The running server as its settings see it: where `CONFIG GET` reads a value and where a
/// live change goes. `server::Server` implements it.
pub trait Running {
    /// The configuration the server started with.
    fn config(&self) -> &Config;
    fn settings(&self) -> &crate::server::settings::Settings;
    fn slowlog(&self) -> &crate::metrics::slowlog::SlowLog;
    fn latency(&self) -> &crate::metrics::latency::LatencyMonitor;
    fn pubsub(&self) -> &crate::pubsub::Hub;
    /// The script registries a scripting setting applies to: the server's, and in migration
    /// mode the embedded side's (scripts routed there run under its registry).
    fn scripts(&self) -> Vec<&crate::script::Scripts>;
    fn journal(&self) -> Option<&crate::persist::journal::Journal>;
    fn migration(&self) -> Option<&dyn MigrationControl>;
    fn is_gateway(&self) -> bool;
    fn databases(&self) -> usize;
    /// `maxmemory` and `maxmemory-policy` as the store has them.
    fn memory(&self) -> (u64, String);
    fn set_maxmemory(&self, bytes: u64);
    fn set_maxmemory_policy(&self, policy: &str);
    fn audit(&self) -> &crate::audit::Audit;
}

impl dyn Running + '_ {
    /// The upstream options of every Redis the server talks to (the gateway's, or a
    /// migration's Redis stores). Clones of one `Options` share their live settings.
    pub fn upstreams(&self) -> Vec<&crate::upstream::Options> {
        let cfg = self.config();
        let mut v: Vec<&crate::upstream::Options> = cfg.upstream.iter().collect();
        if let Some(m) = &cfg.migration {
            for side in [&m.from, &m.to] {
                if let super::StoreUrl::Redis(o) = side {
                    v.push(o);
                }
            }
        }
        v
    }
}

// The parsers rows share, with Redis's `CONFIG SET` error texts.

pub fn integer(v: &str) -> Result<i64, String> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

/// A whole number in `min..=max` (Redis's "long long" settings).
pub fn int_in(v: &str, min: i64, max: i64) -> Result<i64, String> {
    let n = integer(v)?;
    if n < min || n > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(n)
}

/// A whole number from `min` up.
pub fn int_from(v: &str, min: i64) -> Result<i64, String> {
    int_in(v, min, i64::MAX)
}

/// A non-negative count.
pub fn count(v: &str) -> Result<u64, String> {
    int_from(v, 0).map(|n| n as u64)
}

/// A positive count of milliseconds.
pub fn millis(v: &str) -> Result<std::time::Duration, String> {
    int_from(v, 1).map(|n| std::time::Duration::from_millis(n as u64))
}

pub fn float(v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| "argument couldn't be parsed into a number".to_string())
}

/// Bytes, or with a unit (`k`=1000, `kb`=1024, as Redis).
pub fn memory(v: &str) -> Result<u64, String> {
    crate::util::size::parse_size(v).map_err(|_| "argument must be a memory value".to_string())
}

/// Bytes from `min` (text as written in the error) up to `max`.
pub fn memory_in(v: &str, min: u64, max: u64, range: &str) -> Result<u64, String> {
    let n = memory(v)?;
    if n < min || n > max {
        return Err(format!("argument must be {range}"));
    }
    Ok(n)
}

pub fn yes_no(v: &str) -> Result<bool, String> {
    super::parse_yes_no(v).map_err(|_| "argument must be 'yes' or 'no'".to_string())
}

/// One of `names` (Redis's enum settings).
pub fn one_of<T>(v: &str, names: &[&str], parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    parse(v).ok_or_else(|| {
        format!(
            "argument(s) must be one of the following: {}",
            names.join(", ")
        )
    })
}

/// Text, empty meaning none.
pub fn text(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

pub fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The `Ordering` live settings are read and written with: each is one value, read by the
/// next command.
pub const R: Ordering = Ordering::Relaxed;

/// The migration's settings need a migrating server.
pub fn migrating(r: &dyn Running) -> Result<(), String> {
    if r.migration().is_none() {
        return Err("not migrating (start with --migrate-from and --migrate-to)".into());
    }
    Ok(())
}

/// What a file value of this kind looks like, for errors.
pub fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Int => "a whole number",
        Kind::Float => "a number",
        Kind::Size => "a size like 512mb or a number of bytes",
        Kind::Bool => "yes or no",
        Kind::List => "an array of strings",
    }
}
