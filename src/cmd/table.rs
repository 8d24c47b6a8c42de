//! The command table: names, arities and metadata (for `COMMAND INFO/DOCS`), as Redis 7
//! declares them. Arity follows Redis: positive = exact argument count (name included),
//! negative = at least that many.

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdId {
    Get,
    Set,
    SetEx,
    PSetEx,
    SetNx,
    GetEx,
    GetDel,
    GetSet,
    MGet,
    MSet,
    MSetNx,
    Append,
    StrLen,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    Del,
    Unlink,
    Exists,
    Type,
    Rename,
    RenameNx,
    Scan,
    Keys,
    RandomKey,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
    Persist,
    Ping,
    Echo,
    Auth,
    Hello,
    Select,
    Quit,
    Reset,
    Client,
    Command,
    Info,
    Config,
    Time,
    DbSize,
    FlushDb,
    FlushAll,
    SwapDb,
    Eval,
    EvalSha,
    Script,
    Save,
    BgSave,
    BgRewriteAof,
    LastSave,
    Shutdown,
}

/// A command's flags, typed: the routing, durability and ACL code ask `flags.has(WRITE)`,
/// never the position of a string in a list. Bits are in Redis's order (its `CMD_*`
/// constants), which is also the order `COMMAND` lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    pub const WRITE: Flags = Flags(1 << 0);
    pub const READONLY: Flags = Flags(1 << 1);
    pub const DENYOOM: Flags = Flags(1 << 2);
    pub const ADMIN: Flags = Flags(1 << 4);
    pub const NOSCRIPT: Flags = Flags(1 << 6);
    pub const LOADING: Flags = Flags(1 << 9);
    pub const STALE: Flags = Flags(1 << 10);
    pub const SKIP_MONITOR: Flags = Flags(1 << 11);
    pub const FAST: Flags = Flags(1 << 14);
    pub const NO_AUTH: Flags = Flags(1 << 15);
    pub const MAY_REPLICATE: Flags = Flags(1 << 16);
    pub const NO_MANDATORY_KEYS: Flags = Flags(1 << 19);
    pub const NO_ASYNC_LOADING: Flags = Flags(1 << 23);
    pub const NO_MULTI: Flags = Flags(1 << 24);
    pub const MOVABLE_KEYS: Flags = Flags(1 << 25);
    pub const ALLOW_BUSY: Flags = Flags(1 << 26);
    pub const NONE: Flags = Flags(0);

    /// Names as `COMMAND` shows them, by bit.
    const NAMES: &[(Flags, &'static str)] = &[
        (Flags::WRITE, "write"),
        (Flags::READONLY, "readonly"),
        (Flags::DENYOOM, "denyoom"),
        (Flags::ADMIN, "admin"),
        (Flags::NOSCRIPT, "noscript"),
        (Flags::LOADING, "loading"),
        (Flags::STALE, "stale"),
        (Flags::SKIP_MONITOR, "skip_monitor"),
        (Flags::FAST, "fast"),
        (Flags::NO_AUTH, "no_auth"),
        (Flags::MAY_REPLICATE, "may_replicate"),
        (Flags::NO_MANDATORY_KEYS, "no_mandatory_keys"),
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
}

/// `a | b | …` in a const context.
macro_rules! flags {
    ($($f:ident)|+) => { Flags::NONE$(.union(Flags::$f))+ };
}

pub struct Spec {
    pub name: &'static str,
    pub id: CmdId,
    pub arity: i32,
    pub flags: Flags,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
}

/// Builds a table row; positional on purpose so the table reads as one line per command.
#[allow(clippy::too_many_arguments)]
const fn c(
    name: &'static str,
    id: CmdId,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        id,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        since,
        summary,
    }
}

const RO_FAST: Flags = flags!(READONLY | FAST);
const RO: Flags = flags!(READONLY);
const W_OOM: Flags = flags!(WRITE | DENYOOM);
const W_OOM_FAST: Flags = flags!(WRITE | DENYOOM | FAST);
const W: Flags = flags!(WRITE);
const W_FAST: Flags = flags!(WRITE | FAST);
const FAST: Flags = flags!(FAST);
const CONN: Flags = flags!(NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY);
const SCRIPTING: Flags = flags!(NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS | MOVABLE_KEYS);
const LOADING_STALE: Flags = flags!(LOADING | STALE);
const LOADING_STALE_FAST: Flags = flags!(LOADING | STALE | FAST);
const ADMIN_SAVE: Flags = flags!(ADMIN | NOSCRIPT | NO_ASYNC_LOADING);
const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);

pub static COMMANDS: &[Spec] = &[
    c("get", CmdId::Get, 2, RO_FAST, ONE, "string", "1.0.0", "Returns the string value of a key."),
    c("set", CmdId::Set, -3, W_OOM, ONE, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    c("setex", CmdId::SetEx, 4, W_OOM, ONE, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    c("psetex", CmdId::PSetEx, 4, W_OOM, ONE, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    c("setnx", CmdId::SetNx, 3, W_OOM_FAST, ONE, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    c("getex", CmdId::GetEx, -2, W_FAST, ONE, "string", "6.2.0", "Returns the string value of a key after setting its expiration time."),
    c("getdel", CmdId::GetDel, 2, W_FAST, ONE, "string", "6.2.0", "Returns the string value of a key after deleting the key."),
    c("getset", CmdId::GetSet, 3, W_OOM_FAST, ONE, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    c("mget", CmdId::MGet, -2, RO_FAST, ALL, "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    c("mset", CmdId::MSet, -3, W_OOM, (1, -1, 2), "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    c("msetnx", CmdId::MSetNx, -3, W_OOM, (1, -1, 2), "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    c("append", CmdId::Append, 3, W_OOM_FAST, ONE, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    c("strlen", CmdId::StrLen, 2, RO_FAST, ONE, "string", "2.2.0", "Returns the length of a string value."),
    c("incr", CmdId::Incr, 2, W_OOM_FAST, ONE, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    c("decr", CmdId::Decr, 2, W_OOM_FAST, ONE, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    c("incrby", CmdId::IncrBy, 3, W_OOM_FAST, ONE, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    c("decrby", CmdId::DecrBy, 3, W_OOM_FAST, ONE, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    c("del", CmdId::Del, -2, W, ALL, "generic", "1.0.0", "Deletes one or more keys."),
    c("unlink", CmdId::Unlink, -2, W_FAST, ALL, "generic", "4.0.0", "Asynchronously deletes one or more keys."),
    c("exists", CmdId::Exists, -2, RO_FAST, ALL, "generic", "1.0.0", "Determines whether one or more keys exist."),
    c("type", CmdId::Type, 2, RO_FAST, ONE, "generic", "1.0.0", "Determines the type of value stored at a key."),
    c("rename", CmdId::Rename, 3, W, (1, 2, 1), "generic", "1.0.0", "Renames a key and overwrites the destination."),
    c("renamenx", CmdId::RenameNx, 3, W_FAST, (1, 2, 1), "generic", "1.0.0", "Renames a key only when the target key name doesn't exist."),
    c("scan", CmdId::Scan, -2, RO, NONE, "generic", "2.8.0", "Iterates over the key names in the database."),
    c("keys", CmdId::Keys, 2, RO, NONE, "generic", "1.0.0", "Returns all key names that match a pattern."),
    c("randomkey", CmdId::RandomKey, 1, RO, NONE, "generic", "1.0.0", "Returns a random key name from the database."),
    c("expire", CmdId::Expire, -3, W_FAST, ONE, "generic", "1.0.0", "Sets the expiration time of a key in seconds."),
    c("pexpire", CmdId::PExpire, -3, W_FAST, ONE, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds."),
    c("expireat", CmdId::ExpireAt, -3, W_FAST, ONE, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    c("pexpireat", CmdId::PExpireAt, -3, W_FAST, ONE, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    c("ttl", CmdId::Ttl, 2, RO_FAST, ONE, "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
    c("pttl", CmdId::PTtl, 2, RO_FAST, ONE, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key."),
    c("expiretime", CmdId::ExpireTime, 2, RO_FAST, ONE, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp."),
    c("pexpiretime", CmdId::PExpireTime, 2, RO_FAST, ONE, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    c("persist", CmdId::Persist, 2, W_FAST, ONE, "generic", "2.2.0", "Removes the expiration time of a key."),
    c("ping", CmdId::Ping, -1, FAST, NONE, "connection", "1.0.0", "Returns the server's liveliness response."),
    c("echo", CmdId::Echo, 2, LOADING_STALE_FAST, NONE, "connection", "1.0.0", "Returns the given string."),
    c("auth", CmdId::Auth, -2, CONN, NONE, "connection", "1.0.0", "Authenticates the connection."),
    c("hello", CmdId::Hello, -1, CONN, NONE, "connection", "6.0.0", "Handshakes with the Redis server."),
    c("select", CmdId::Select, 2, LOADING_STALE_FAST, NONE, "connection", "1.0.0", "Changes the selected database."),
    c("quit", CmdId::Quit, -1, CONN, NONE, "connection", "1.0.0", "Closes the connection."),
    c("reset", CmdId::Reset, 1, CONN, NONE, "connection", "6.2.0", "Resets the connection."),
    c("client", CmdId::Client, -2, Flags::NONE, NONE, "connection", "2.4.0", "A container for client connection commands."),
    c("command", CmdId::Command, -1, LOADING_STALE, NONE, "server", "2.8.13", "Returns detailed information about all commands."),
    c("info", CmdId::Info, -1, LOADING_STALE, NONE, "server", "1.0.0", "Returns information and statistics about the server."),
    c("config", CmdId::Config, -2, Flags::NONE, NONE, "server", "2.0.0", "A container for server configuration commands."),
    c("time", CmdId::Time, 1, LOADING_STALE_FAST, NONE, "server", "2.6.0", "Returns the server time."),
    c("dbsize", CmdId::DbSize, 1, RO_FAST, NONE, "server", "1.0.0", "Returns the number of keys in the database."),
    c("flushdb", CmdId::FlushDb, -1, W, NONE, "server", "1.0.0", "Removes all keys from the current database."),
    c("flushall", CmdId::FlushAll, -1, W, NONE, "server", "1.0.0", "Removes all keys from all databases."),
    c("swapdb", CmdId::SwapDb, 3, W_FAST, NONE, "server", "4.0.0", "Swaps two Redis databases."),
    c("eval", CmdId::Eval, -3, SCRIPTING, NONE, "scripting", "2.6.0", "Executes a server-side Lua script."),
    c("evalsha", CmdId::EvalSha, -3, SCRIPTING, NONE, "scripting", "2.6.0", "Executes a server-side Lua script by SHA1 digest."),
    c("script", CmdId::Script, -2, Flags::NONE, NONE, "scripting", "2.6.0", "A container for Lua scripts management commands."),
    c("save", CmdId::Save, 1, flags!(ADMIN | NOSCRIPT | NO_ASYNC_LOADING | NO_MULTI), NONE, "server", "1.0.0", "Synchronously saves the database(s) to disk."),
    c("bgsave", CmdId::BgSave, -1, ADMIN_SAVE, NONE, "server", "1.0.0", "Asynchronously saves the database(s) to disk."),
    c("bgrewriteaof", CmdId::BgRewriteAof, 1, ADMIN_SAVE, NONE, "server", "1.0.0", "Asynchronously rewrites the append-only file to disk."),
    c("lastsave", CmdId::LastSave, 1, LOADING_STALE_FAST, NONE, "server", "1.0.0", "Returns the Unix timestamp of the last successful save to disk."),
    c("shutdown", CmdId::Shutdown, -1, flags!(ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY), NONE, "server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
];

static INDEX: LazyLock<HashMap<&'static str, usize>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name, i))
        .collect()
});

/// Finds a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<usize> {
    let mut buf = [0u8; 16];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    INDEX.get(lower).copied()
}

/// Whether the command may change data (so its reply waits for the log, and a gateway
/// never sends it twice). Scripts may write without the flag, as in Redis.
pub fn is_write(spec: &Spec) -> bool {
    spec.flags.has(Flags::WRITE) || matches!(spec.id, CmdId::Eval | CmdId::EvalSha)
}

/// Whether a gateway passes the command to the upstream. Commands about the client or the
/// sessiond process itself are answered locally.
pub fn forwarded(id: CmdId) -> bool {
    use CmdId::*;
    !matches!(
        id,
        Ping | Echo
            | Auth
            | Hello
            | Select
            | Quit
            | Reset
            | Client
            | Command
            | Info
            | Config
            | Time
            | Save
            | BgSave
            | BgRewriteAof
            | LastSave
            | Shutdown
    )
}

/// The key a command is routed by (its first key), if it has one.
pub fn routing_key<'a>(spec: &Spec, args: &[&'a [u8]]) -> Option<&'a [u8]> {
    match spec.id {
        // EVAL script numkeys key…
        CmdId::Eval | CmdId::EvalSha => match args.get(2) {
            Some(n) if *n != b"0" => args.get(3).copied(),
            _ => None,
        },
        _ if spec.first_key > 0 => args.get(spec.first_key as usize).copied(),
        _ => None,
    }
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
    fn lookup_is_case_insensitive_and_table_consistent() {
        assert_eq!(lookup(b"GeT").map(|i| COMMANDS[i].id), Some(CmdId::Get));
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(lookup(b"averyveryverylongcommandname"), None);
        let mut names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len(), "duplicate command names");
        assert!(arity_ok(-2, 5) && !arity_ok(-2, 1) && arity_ok(3, 3) && !arity_ok(3, 4));
    }

    #[test]
    fn flags_render_in_redis_order_and_never_both_write_and_readonly() {
        let set = &COMMANDS[lookup(b"set").unwrap()];
        assert_eq!(set.flags.names().collect::<Vec<_>>(), ["write", "denyoom"]);
        assert!(is_write(set));
        assert!(!is_write(&COMMANDS[lookup(b"get").unwrap()]));
        for c in COMMANDS {
            assert!(
                !(c.flags.has(Flags::WRITE) && c.flags.has(Flags::READONLY)),
                "{}",
                c.name
            );
        }
    }
}
