//! The command table: every Redis command as data.
//!
//! `commands.tsv` is Redis's own description of its commands, one row per command or
//! subcommand (`config|get`): arity, flags, the legacy key range, ACL categories, key
//! specifications, tips, group, version and summary. `tests/command_table.rs` compares it
//! with a live redis-server's `COMMAND` and `COMMAND DOCS`, both ways, so it cannot drift;
//! `commands-newer.tsv` adds the commands of newer servers (Redis 7.2, Valkey 8) in the same
//! notation. The file is compiled in and parsed once, on first use.
//!
//! Everything that must know what a command *is* reads this table instead of listing names:
//! the arity and authentication checks ([`super::check`]), durability (a write's reply waits
//! for the log), the gateway's routing (key positions from the key specs, read-only retries,
//! cluster slots; see `upstream/policy.rs`), and later ACL. What the embedded engine
//! implements is the separate, short [`ENGINE`] list: a row with no [`CmdId`] is a command
//! the gateway forwards and the engine does not know (yet).
//!
//! Arity follows Redis: positive = exact argument count (name included), negative = at least
//! that many.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::LazyLock;

pub use super::keyspec::{keys, Begin, Find, KeySpec};

pub use super::dispatch::{CmdId, ENGINE};

/// A command's flags, typed: the routing, durability and ACL code ask `flags.has(WRITE)`,
/// never the position of a string in a list. Bits are Redis's `CMD_*` constants, whose
/// order is also the order `COMMAND` lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u32);

impl Flags {
    pub const WRITE: Flags = Flags(1 << 0);
    pub const READONLY: Flags = Flags(1 << 1);
    pub const DENYOOM: Flags = Flags(1 << 2);
    pub const MODULE: Flags = Flags(1 << 3);
    pub const ADMIN: Flags = Flags(1 << 4);
    pub const PUBSUB: Flags = Flags(1 << 5);
    pub const NOSCRIPT: Flags = Flags(1 << 6);
    pub const BLOCKING: Flags = Flags(1 << 8);
    pub const LOADING: Flags = Flags(1 << 9);
    pub const STALE: Flags = Flags(1 << 10);
    pub const SKIP_MONITOR: Flags = Flags(1 << 11);
    pub const SKIP_SLOWLOG: Flags = Flags(1 << 12);
    pub const ASKING: Flags = Flags(1 << 13);
    pub const FAST: Flags = Flags(1 << 14);
    pub const NO_AUTH: Flags = Flags(1 << 15);
    pub const MAY_REPLICATE: Flags = Flags(1 << 16);
    pub const SENTINEL: Flags = Flags(1 << 17);
    pub const ONLY_SENTINEL: Flags = Flags(1 << 18);
    pub const NO_MANDATORY_KEYS: Flags = Flags(1 << 19);
    pub const PROTECTED: Flags = Flags(1 << 20);
    pub const NO_ASYNC_LOADING: Flags = Flags(1 << 23);
    pub const NO_MULTI: Flags = Flags(1 << 24);
    pub const MOVABLE_KEYS: Flags = Flags(1 << 25);
    pub const ALLOW_BUSY: Flags = Flags(1 << 26);
    pub const NONE: Flags = Flags(0);

    /// Names as `COMMAND` shows them, in its order.
    const NAMES: &[(Flags, &'static str)] = &[
        (Flags::WRITE, "write"),
        (Flags::READONLY, "readonly"),
        (Flags::DENYOOM, "denyoom"),
        (Flags::MODULE, "module"),
        (Flags::ADMIN, "admin"),
        (Flags::PUBSUB, "pubsub"),
        (Flags::NOSCRIPT, "noscript"),
        (Flags::BLOCKING, "blocking"),
        (Flags::LOADING, "loading"),
        (Flags::STALE, "stale"),
        (Flags::SKIP_MONITOR, "skip_monitor"),
        (Flags::SKIP_SLOWLOG, "skip_slowlog"),
        (Flags::ASKING, "asking"),
        (Flags::FAST, "fast"),
        (Flags::NO_AUTH, "no_auth"),
        (Flags::MAY_REPLICATE, "may_replicate"),
        (Flags::SENTINEL, "sentinel"),
        (Flags::ONLY_SENTINEL, "only_sentinel"),
        (Flags::NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (Flags::PROTECTED, "protected"),
        (Flags::NO_ASYNC_LOADING, "no_async_loading"),
        (Flags::NO_MULTI, "no_multi"),
        (Flags::MOVABLE_KEYS, "movablekeys"),
        (Flags::ALLOW_BUSY, "allow_busy"),
    ];

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub const fn has(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }

    /// The flags' names in `COMMAND`'s order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .iter()
            .filter(move |(f, _)| self.has(*f))
            .map(|(_, n)| *n)
    }

    fn parse(list: &'static str) -> Result<Flags, String> {
        let mut f = Flags::NONE;
        for name in items(list) {
            let (bit, _) = Flags::NAMES
                .iter()
                .find(|(_, n)| *n == name)
                .ok_or_else(|| format!("unknown flag {name}"))?;
            f = f.union(*bit);
        }
        Ok(f)
    }
}

/// One command or subcommand.
#[derive(Debug)]
pub struct Spec {
    /// Lower case; a subcommand is `parent|sub`, as `COMMAND` names it.
    pub name: &'static str,
    /// What the embedded engine runs, if it implements the command.
    pub id: Option<CmdId>,
    pub arity: i32,
    pub flags: Flags,
    /// The legacy key range `COMMAND` reports (first, last, step).
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// ACL categories, without the `@`.
    pub acl: Vec<&'static str>,
    pub key_specs: Vec<KeySpec>,
    /// Redis's command tips (`request_policy:all_shards`, `nondeterministic_output`…).
    pub tips: Vec<&'static str>,
    pub group: &'static str,
    /// `group` as an index into [`crate::metrics::FAMILIES`] (the metrics' label).
    pub family: usize,
    pub since: &'static str,
    pub summary: &'static str,
    /// Indexes of its subcommands in [`commands`].
    pub subcommands: Vec<usize>,
    /// Whether the command is newer than the oracle (`commands-newer.tsv`).
    pub newer: bool,
    /// Its place in [`commands`] (for tables kept beside this one, indexed alike).
    pub index: usize,
}

impl Spec {
    /// Whether the command only reads data (safe to send again after a lost connection).
    pub fn is_read_only(&self) -> bool {
        self.flags.has(Flags::READONLY)
    }

    pub fn has_tip(&self, tip: &str) -> bool {
        self.tips.contains(&tip)
    }

    /// The short name a container command's subcommand has after the `|`.
    pub fn sub_name(&self) -> &'static str {
        self.name.split_once('|').map_or(self.name, |(_, s)| s)
    }
}

struct Table {
    specs: Vec<Spec>,
    /// Top-level commands by name (subcommands are found through their parent, as Redis's
    /// lookup does: `config|get` sent as a command name is unknown).
    index: HashMap<&'static [u8], usize, BuildHasherDefault<NameHash>>,
}

/// FNV-1a over a command name. The names are the table's own, fixed at build time, and a
/// lookup inserts nothing, so the keyed hash the other maps use (against chosen collisions)
/// buys nothing here; on a name of a few bytes its rounds cost more than the name. Every
/// command is looked up here at least once.
struct NameHash(u64);

impl Default for NameHash {
    fn default() -> Self {
        NameHash(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for NameHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const REDIS: &str = include_str!("commands.tsv");
const NEWER: &str = include_str!("commands-newer.tsv");

static TABLE: LazyLock<Table> = LazyLock::new(|| match load() {
    Ok(t) => t,
    // The files are compiled in and parsed by a unit test, so this cannot happen in a
    // released binary.
    Err(e) => panic!("command table: {e}"),
});

fn items(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.split(',').filter(|s| !s.is_empty() && *s != "-")
}

fn parse_row(line: &'static str, newer: bool) -> Result<Spec, String> {
    let f: Vec<&'static str> = line.split('\t').collect();
    let [name, arity, flags, keys, acl, key_specs, tips, group, since, summary] = f[..] else {
        return Err(format!("{} fields in: {line}", f.len()));
    };
    let num = |s: &str| {
        s.parse::<i32>()
            .map_err(|_| format!("{name}: bad number {s}"))
    };
    let range: Vec<&str> = keys.split(',').collect();
    let [first, last, step] = range[..] else {
        return Err(format!("{name}: bad key range {keys}"));
    };
    let key_specs = if key_specs == "-" {
        Vec::new()
    } else {
        key_specs
            .split(';')
            .map(KeySpec::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: {e}"))?
    };
    Ok(Spec {
        name,
        id: ENGINE.iter().find(|(n, _)| *n == name).map(|(_, id)| *id),
        arity: num(arity)?,
        flags: Flags::parse(flags).map_err(|e| format!("{name}: {e}"))?,
        first_key: num(first)?,
        last_key: num(last)?,
        step: num(step)?,
        acl: items(acl).collect(),
        key_specs,
        tips: items(tips).collect(),
        group,
        family: crate::metrics::family_of(group),
        since,
        summary,
        subcommands: Vec::new(),
        newer,
        index: 0,
    })
}

fn load() -> Result<Table, String> {
    let mut specs = Vec::new();
    for (text, newer) in [(REDIS, false), (NEWER, true)] {
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            specs.push(parse_row(line, newer)?);
        }
    }
    for (i, s) in specs.iter_mut().enumerate() {
        s.index = i;
    }
    let mut index: HashMap<&'static [u8], usize, BuildHasherDefault<NameHash>> = HashMap::default();
    for (i, s) in specs.iter().enumerate() {
        if !s.name.contains('|') && index.insert(s.name.as_bytes(), i).is_some() {
            return Err(format!("{} twice", s.name));
        }
    }
    let mut subs: Vec<(usize, usize)> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        if let Some((parent, _)) = s.name.split_once('|') {
            let p = index
                .get(parent.as_bytes())
                .ok_or_else(|| format!("{}: no parent", s.name))?;
            subs.push((*p, i));
        }
    }
    for (p, i) in subs {
        specs[p].subcommands.push(i);
    }
    for (name, _) in ENGINE {
        if !index.contains_key(name.as_bytes()) {
            return Err(format!("engine command {name} is not in the table"));
        }
    }
    Ok(Table { specs, index })
}

/// Every command and subcommand.
pub fn commands() -> &'static [Spec] {
    &TABLE.specs
}

/// The commands the embedded engine implements (its `COMMAND` output).
pub fn engine_commands() -> impl Iterator<Item = &'static Spec> {
    commands()
        .iter()
        .filter(|s| s.id.is_some() && !s.name.contains('|'))
}

/// Finds a top-level command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<usize> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    TABLE.index.get(&buf[..name.len()]).copied()
}

/// A command by its `COMMAND INFO` name: `get`, or `config|get` for a subcommand.
pub fn find(name: &[u8]) -> Option<&'static Spec> {
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    match lower.split_once('|') {
        None => lookup(name).map(|i| &commands()[i]),
        Some((parent, sub)) => {
            let p = &commands()[lookup(parent.as_bytes())?];
            p.subcommands
                .iter()
                .map(|&i| &commands()[i])
                .find(|s| s.sub_name() == sub)
        }
    }
}

/// The spec that describes `args`: the subcommand's for a container command (`OBJECT
/// ENCODING key`), the command's otherwise. `None` for an unknown command.
pub fn resolve(args: &[&[u8]]) -> Option<&'static Spec> {
    let spec = &commands()[lookup(args.first()?)?];
    Some(subcommand(spec, args).unwrap_or(spec))
}

/// A container command's subcommand named by `args[1]`, if it has one by that name.
pub fn subcommand(spec: &'static Spec, args: &[&[u8]]) -> Option<&'static Spec> {
    if spec.subcommands.is_empty() {
        return None;
    }
    let sub = args.get(1)?;
    spec.subcommands
        .iter()
        .map(|&i| &commands()[i])
        .find(|s| s.sub_name().as_bytes().eq_ignore_ascii_case(sub))
}

/// Whether the command may change data (so its reply waits for the log, and a gateway
/// never sends it twice). Scripts and functions may write without the flag, as in Redis.
pub fn is_write(spec: &Spec) -> bool {
    spec.flags.has(Flags::WRITE) || (spec.group == "scripting" && !spec.is_read_only())
}

pub fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = argc as i32;
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_is_consistent() {
        let t = load().unwrap();
        assert!(t.specs.len() > 350, "{}", t.specs.len());
        assert_eq!(
            lookup(b"GeT").map(|i| commands()[i].id),
            Some(Some(CmdId::Get))
        );
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(
            lookup(b"config|get"),
            None,
            "subcommands only through the parent"
        );
        assert_eq!(find(b"CONFIG|GET").map(|s| s.arity), Some(-3));
        assert!(lookup(b"georadiusbymember_ro").is_some());
        assert!(arity_ok(-2, 5) && !arity_ok(-2, 1) && arity_ok(3, 3) && !arity_ok(3, 4));
        assert_eq!(engine_commands().count(), ENGINE.len());
    }

    #[test]
    fn flags_render_in_redis_order_and_never_both_write_and_readonly() {
        let set = find(b"set").unwrap();
        assert_eq!(set.flags.names().collect::<Vec<_>>(), ["write", "denyoom"]);
        assert!(is_write(set));
        assert!(!is_write(find(b"get").unwrap()));
        assert!(is_write(find(b"eval").unwrap()));
        assert!(is_write(find(b"fcall").unwrap()));
        assert!(!is_write(find(b"eval_ro").unwrap()));
        for c in commands() {
            assert!(
                !(c.flags.has(Flags::WRITE) && c.flags.has(Flags::READONLY)),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn subcommands_resolve_through_their_parent() {
        let args: [&[u8]; 3] = [b"object", b"ENCODING", b"k"];
        assert_eq!(resolve(&args).map(|s| s.name), Some("object|encoding"));
        let args: [&[u8]; 2] = [b"object", b"nosuch"];
        assert_eq!(resolve(&args).map(|s| s.name), Some("object"));
        assert!(find(b"client|kill").is_some());
    }
}
