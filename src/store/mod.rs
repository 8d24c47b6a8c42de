//! The `Store` trait: the one seam between commands and data.
//!
//! Commands (in `cmd/`) parse arguments, call a `Store` method and format the reply. They
//! never touch an engine's internals. Everything that can hold sessions implements this trait:
//! the embedded engine (`engine/`), later a remote Redis/Valkey upstream (gateway mode) and the
//! migration router, which is itself a `Store` over two stores.
//!
//! Design choices:
//! * **Semantic operations, not raw commands.** The router must know that a command is a read,
//!   a write or a TTL change to route it between two stores; a `Store` therefore offers
//!   `get`, `set`, `expire`… with typed options. Reply formatting stays in one place (`cmd/`),
//!   so every store produces byte-identical Redis replies.
//! * **Async methods, static dispatch.** A network store must await; the embedded engine never
//!   does, and because connections are generic over the store type its futures compile to plain
//!   calls. No boxing on the hot path.
//! * **Absolute expiry times.** Relative TTLs are converted once, in the command, using the
//!   command's clock reading, so a store (or two stores in a migration) cannot drift.

pub mod composite;

use std::future::Future;

use bytes::Bytes;

/// Unix time in milliseconds.
pub type UnixMs = i64;

/// Logical database index (`SELECT n`).
pub type Db = usize;

/// Errors a store can report; each maps to a Redis error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `-ERR value is not an integer or out of range`
    NotInteger,
    /// `-ERR increment or decrement would overflow`
    Overflow,
    /// `-ERR no such key`
    NoSuchKey,
    /// `-OOM command not allowed when used memory > 'maxmemory'.`
    OutOfMemory,
    /// `-ERR string exceeds maximum allowed size (proto-max-bulk-len)`
    TooBig,
    /// `-WRONGTYPE Operation against a key holding the wrong kind of value`
    WrongType,
    /// Any other error, already in Redis form (`WRONGTYPE …`, `ERR …`), e.g. from an upstream.
    Other(String),
}

impl StoreError {
    pub fn message(&self) -> String {
        match self {
            StoreError::NotInteger => "ERR value is not an integer or out of range".into(),
            StoreError::Overflow => "ERR increment or decrement would overflow".into(),
            StoreError::NoSuchKey => "ERR no such key".into(),
            StoreError::OutOfMemory => {
                "OOM command not allowed when used memory > 'maxmemory'.".into()
            }
            StoreError::TooBig => {
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into()
            }
            StoreError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            }
            StoreError::Other(s) => s.clone(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a write does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlChange {
    /// Remove any TTL (plain `SET`, `GETEX PERSIST`).
    Clear,
    /// Keep the existing TTL (`SET … KEEPTTL`; also `GETEX` without options).
    Keep,
    /// Expire at this absolute time.
    At(UnixMs),
}

/// `NX` / `XX` on `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    IfAbsent,
    IfPresent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    pub ttl: TtlChange,
    pub condition: SetCondition,
    /// Return the previous value (`SET … GET`, `GETSET`).
    pub get: bool,
}

impl SetOptions {
    pub fn plain() -> Self {
        SetOptions {
            ttl: TtlChange::Clear,
            condition: SetCondition::Always,
            get: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false when NX/XX prevented it).
    pub written: bool,
    /// The previous value, when `SetOptions::get` was asked for.
    pub previous: Option<Bytes>,
}

/// `NX` / `XX` / `GT` / `LT` on `EXPIRE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// Only if the key has no TTL.
    Nx,
    /// Only if the key has a TTL.
    Xx,
    /// Only if the new expiry is later (a key without TTL counts as infinite).
    Gt,
    /// Only if the new expiry is earlier (a key without TTL counts as infinite).
    Lt,
}

/// The TTL state of a key, for `TTL`/`PTTL`/`EXPIRETIME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Missing,
    Persistent,
    At(UnixMs),
}

/// Types of value a store can hold, as `TYPE` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    String,
    Hash,
    Other(String),
}

impl KeyType {
    pub fn name(&self) -> &str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::Other(s) => s,
        }
    }
}

/// Filters of `SCAN`.
#[derive(Debug, Clone, Default)]
pub struct ScanFilter {
    pub pattern: Option<Vec<u8>>,
    pub key_type: Option<Vec<u8>>,
    /// `COUNT`: work hint, as in Redis.
    pub count: usize,
}

/// Counters a store exposes for `INFO`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub used_memory: u64,
    pub peak_memory: u64,
    pub maxmemory: u64,
    pub maxmemory_policy: &'static str,
    pub expired_keys: u64,
    pub evicted_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// Per database: (db, keys, keys with a TTL, average remaining TTL in ms).
    pub keyspace: Vec<(Db, u64, u64, u64)>,
}

impl StoreStats {
    /// What a store without memory accounting reports (SQL, session files, Redis as a store).
    pub fn unaccounted() -> Self {
        StoreStats {
            maxmemory_policy: "noeviction",
            ..StoreStats::default()
        }
    }
}

/// Everything a command may ask of the data. See the module docs for the contract.
///
/// Every method that takes a `now` is evaluated as of that time (lazy expiry, relative
/// TTLs). Multi-key methods are atomic with respect to other clients, as in Redis.
pub trait Store: Send + Sync + 'static {
    fn get(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;
    /// `GETEX`: read and change the TTL in one step.
    ///
    /// This and the other composite operations below have versions in terms of the primitive
    /// ones in [`composite`], for stores that have nothing better (SQL, session files); they
    /// are not atomic, and a store calls them by name. The trait has no default bodies, so a
    /// store, and above all a wrapper that forwards to another (`AnyStore`, `Timed`), answers
    /// every method itself: a forgotten method is a compile error, not a silent fallback that
    /// loses the inner store's atomic version or one of its capabilities.
    fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;
    /// A value and its TTL state (backfill, copy-forward). Stores that keep both together
    /// (session files, SQL rows) answer in one read.
    fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<(Bytes, Ttl)>>> + Send;
    fn get_del(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;
    fn mget(
        &self,
        db: Db,
        keys: &[&[u8]],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Vec<Option<Bytes>>>> + Send;
    fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<SetOutcome>> + Send;
    /// `MSET` (`only_if_none_exist == false`, always true) and `MSETNX`.
    fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Returns the new length.
    fn append(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn strlen(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn incr_by(
        &self,
        db: Db,
        key: &[u8],
        delta: i64,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// `DEL`/`UNLINK`: number of keys removed.
    fn del(
        &self,
        db: Db,
        keys: &[&[u8]],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Delete `key` only if its value equals `expected` (the session-lock release script).
    fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Number of the given keys that exist (a key named twice counts twice).
    fn exists(
        &self,
        db: Db,
        keys: &[&[u8]],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn key_type(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<KeyType>>> + Send;
    /// `RENAME` (`only_if_absent == false`) / `RENAMENX`. `Err(NoSuchKey)` if `src` is missing;
    /// `Ok(false)` if NX prevented it.
    fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Set an absolute expiry. A time at or before `now` deletes the key (Redis semantics).
    /// Returns whether the key existed and the condition held.
    fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn persist(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn ttl(&self, db: Db, key: &[u8], now: UnixMs)
        -> impl Future<Output = StoreResult<Ttl>> + Send;
    /// One `SCAN` step: the next cursor (0 when done) and the keys found.
    fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<(u64, Vec<Bytes>)>> + Send;
    fn keys(
        &self,
        db: Db,
        pattern: &[u8],
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Vec<Bytes>>> + Send;
    fn random_key(
        &self,
        db: Db,
        now: UnixMs,
    ) -> impl Future<Output = StoreResult<Option<Bytes>>> + Send;
    fn dbsize(&self, db: Db) -> impl Future<Output = StoreResult<u64>> + Send;
    fn flush_db(&self, db: Db) -> impl Future<Output = StoreResult<()>> + Send;
    fn flush_all(&self) -> impl Future<Output = StoreResult<()>> + Send;
    fn swap_db(&self, a: Db, b: Db) -> impl Future<Output = StoreResult<()>> + Send;
    /// Counters for INFO; stores without memory accounting report zeros.
    fn stats(&self, now: UnixMs) -> StoreStats;
    /// Number of logical databases (stores with one database keep the default).
    fn databases(&self) -> usize;
    /// Runtime-settable memory limit (`CONFIG SET maxmemory`); ignored by stores that have
    /// none of their own.
    fn set_maxmemory(&self, bytes: u64);
    /// Runtime-settable eviction policy; `false` if the name is not a policy this store knows.
    fn set_maxmemory_policy(&self, policy: &str) -> bool;
    /// Call latency, for stores that measure it (the migration router's two sides).
    fn latency(&self) -> Option<crate::metrics::histogram::Latency>;
    /// Extra `INFO` sections this store reports (name, text with its `# Title` line).
    fn info_sections(&self) -> Vec<(&'static str, String)>;
}
