//! Lua scripting in the embedded engine: EVAL, EVALSHA, FCALL and their `_RO` forms.
//!
//! # The trade-off, and how it is resolved
//!
//! Redis runs one script at a time: a script may read and write any key, and nothing else
//! runs until it returns. The embedded engine has no global lock (64 shards, many worker
//! threads), and taking every shard for every script would make scripts a global lock
//! again: a job-queue script on one key would stall every session read on the machine.
//!
//! So a script runs **under the shard locks of the keys it declares** (`KEYS`, the keys the
//! command's key spec names), taken in shard order as every multi-key command and `EXEC`
//! takes them (`engine/txn.rs`): atomic for what it declared, and scripts on different
//! sessions run in parallel on different threads. A script that touches a key it did not
//! declare gets an error naming the key, before the command runs, so it never changes data
//! it does not hold. This is the contract Redis Cluster already imposes (a script's keys
//! must be declared so the cluster can route it), and the one the common libraries keep:
//! redis-py's `Lock`, Redisson, ioredis `defineCommand`, BullMQ, rate limiters all pass
//! their keys in `KEYS`.
//!
//! A script that builds key names itself (`'queue:' .. ARGV[1]`) can run too: either its
//! shebang says `flags=no-cluster` (Redis's own flag for "this script cannot be routed by
//! its keys"), or its text carries the comment `--!sessiond allow-undeclared-keys`, or the
//! server runs with `lua-allow-undeclared-keys yes`. Then it runs under *every* shard lock:
//! correct, and as serial as Redis, for those scripts only.
//!
//! # One interpreter per thread
//!
//! Each worker thread has its own Lua 5.1 state ([`vm`]), built once with the sandbox and
//! libraries Redis provides. Script bodies live in the server's [`Scripts`] registry (the
//! `SCRIPT LOAD` cache and `FUNCTION` libraries); a thread compiles a body the first time
//! it runs it and keeps the compiled function until the registry's epoch changes
//! (`SCRIPT FLUSH`, `FUNCTION LOAD/DELETE/FLUSH/RESTORE`). Scripts cannot keep state in
//! globals (they are read-only, as in Redis 7), so which thread's state runs a script is
//! not observable.
//!
//! # Durability
//!
//! Every command a script calls runs through the ordinary command functions, inside the
//! block the script holds, so their changes append to the block's single log frame: a
//! replay never runs Lua, and a crash leaves all of a script's writes or none.

mod argtable;
pub mod call;
pub mod convert;
pub mod fast;
pub mod function;
pub mod libs;
pub mod persist;
pub mod run;
pub mod shebang;
pub mod vm;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

pub use shebang::ScriptFlags;

/// A script's SHA1, as 40 lower-case hex digits.
pub type Sha = [u8; 40];

/// Hashes a [`Sha`] by its first 16 hex digits (already uniformly distributed): the script
/// maps are looked up on every EVALSHA, and SipHash over 40 bytes showed in its profile.
#[derive(Default, Clone, Copy)]
pub struct ShaHasher(u64);

impl std::hash::Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &c in bytes.iter().take(16) {
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c & 0x0f,
            };
            self.0 = (self.0 << 4) | u64::from(v);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

/// The build hasher of the script maps.
pub type ShaMap<V> = HashMap<Sha, V, std::hash::BuildHasherDefault<ShaHasher>>;

/// The SHA1 of `body` in hex (Redis's script name).
pub fn sha1_hex(body: &[u8]) -> Sha {
    let hex = sha1_smol::Sha1::from(body).digest().to_string();
    let mut out = [0u8; 40];
    out.copy_from_slice(hex.as_bytes());
    out
}

/// A client-given SHA1 in the registry's form, or None if it cannot name a script.
pub fn parse_sha(given: &[u8]) -> Option<Sha> {
    if given.len() != 40 {
        return None;
    }
    let mut out = [0u8; 40];
    for (o, c) in out.iter_mut().zip(given) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

/// One script of the cache: its text and what its shebang says.
#[derive(Debug)]
pub struct Script {
    pub sha: Sha,
    pub body: Bytes,
    pub flags: ScriptFlags,
    /// The lock release every session handler sends, recognised by its text: the engine
    /// runs it natively, with the interpreted script's replies (`cmd/script.rs`, `native`).
    pub lock_release: bool,
}

/// The server's scripts: the EVAL/SCRIPT LOAD cache, the state of the script running now
/// (for `-BUSY`, `SCRIPT KILL`, `FUNCTION STATS`), and the epoch threads compare with the
/// one their compiled functions came from.
pub struct Scripts {
    cache: RwLock<ShaMap<Arc<Script>>>,
    epoch: AtomicU64,
    /// Runs past `busy-reply-threshold` (see [`run::Busy`]).
    pub busy: run::Busy,
    /// `lua-allow-undeclared-keys`: every script may touch keys it did not declare (and
    /// then runs under every shard lock).
    pub allow_undeclared: AtomicBool,
    /// Bytes a thread's Lua state may hold (`lua-memory-limit`).
    pub memory_limit: AtomicU64,
    /// Identifies this registry to the per-thread states (tests run several servers in
    /// one process).
    id: u64,
    /// Counts script runs (`INFO` and the tests read it).
    pub runs: AtomicU64,
    /// FUNCTION libraries.
    libraries: RwLock<function::Libraries>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            cache: RwLock::new(ShaMap::default()),
            epoch: AtomicU64::new(0),
            busy: run::Busy::default(),
            allow_undeclared: AtomicBool::new(false),
            memory_limit: AtomicU64::new(vm::DEFAULT_MEMORY_LIMIT),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            runs: AtomicU64::new(0),
            libraries: RwLock::new(function::Libraries::default()),
        }
    }
}

impl Scripts {
    /// The registry with the configured limits.
    pub fn new(config: &crate::config::Config) -> Scripts {
        let s = Scripts::default();
        s.busy
            .threshold_ms
            .store(config.busy_reply_threshold, Ordering::Relaxed);
        s.allow_undeclared
            .store(config.lua_allow_undeclared_keys, Ordering::Relaxed);
        s.memory_limit
            .store(config.lua_memory_limit, Ordering::Relaxed);
        s
    }

    /// Adds `body` to the cache (EVAL, SCRIPT LOAD) after checking its shebang; returns it.
    pub fn add(&self, body: &[u8]) -> Result<Arc<Script>, String> {
        let sha = sha1_hex(body);
        if let Some(s) = self.get(&sha) {
            return Ok(s);
        }
        let flags = shebang::parse(body)?;
        let script = Arc::new(Script {
            sha,
            body: Bytes::copy_from_slice(body),
            flags,
            lock_release: crate::cmd::script::is_native_lock_release(body),
        });
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        Ok(cache.entry(sha).or_insert(script).clone())
    }

    pub fn get(&self, sha: &Sha) -> Option<Arc<Script>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.get(sha).cloned()
    }

    /// SCRIPT FLUSH: forgets every cached script; threads drop their compiled ones.
    pub fn flush(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.bump();
    }

    /// Number of cached scripts and the bytes of their bodies (`INFO memory`).
    pub fn cached(&self) -> (usize, usize) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        (cache.len(), cache.values().map(|s| s.body.len()).sum())
    }

    /// Invalidates every thread's compiled functions.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn libraries(&self) -> RwLockReadGuard<'_, function::Libraries> {
        self.libraries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The libraries, to change; the caller bumps the epoch after changing them.
    pub fn libraries_mut(&self) -> RwLockWriteGuard<'_, function::Libraries> {
        self.libraries.write().unwrap_or_else(|p| p.into_inner())
    }
}
