//! Gateway mode: sessions live on Redis/Valkey servers and sessiond is the pooling,
//! multiplexing gateway in front of them (the role twemproxy plays in the first seed).
//!
//! ```text
//! client conns ─► connection (parse, AUTH, SELECT, local commands)
//!                    │ forwarded commands, re-encoded, batched per target
//!                    ▼
//!                 forward::ClientForwarder ─► node::Node (pool per db/protocol)
//!                                                  └─► conn::Conn (one socket, writer + reader tasks)
//! ```
//!
//! Two ways in, one set of connections:
//! * **Forwarding** ([`forward`]): the data commands clients send are passed through as RESP,
//!   and the upstream's replies are copied back byte for byte, so they are exactly what the
//!   upstream would have said (the differential test checks it). A client's pipeline becomes
//!   one request per target, and the connection's writer merges requests from all clients
//!   into one `write`.
//! * **The [`Store`] trait**: `Upstream` implements the same semantic operations as the
//!   embedded engine, so the migration router can combine it with other stores.
//!
//! Everything that is about the client rather than the data is answered by sessiond itself:
//! `AUTH` (sessiond's `requirepass`; sessiond authenticates to the upstream with the URL's
//! credentials), `SELECT` (per client, mapped to a pool of connections in that database),
//! `HELLO`, `PING`, `CLIENT`, `INFO`, `CONFIG`, `COMMAND`, `SHUTDOWN`.
//!
//! Failure handling: connect and request timeouts, one retry of read-only requests whose
//! connection failed (never of writes, which may have run), health checks with ejection and
//! recovery ([`node`]). A client always gets a reply, an error if need be, within the request
//! timeout.

pub mod conn;
pub mod forward;
pub mod node;
pub mod url;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::resp::value::{decode, Value};
use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetCondition, SetOptions, SetOutcome, Store,
    StoreError, StoreResult, StoreStats, Ttl, TtlChange, UnixMs,
};
use conn::{encode, MAX_REPLY_BULK};
use node::Node;
use url::{Topology, UpstreamUrl};

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: UpstreamUrl,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Databases clients may SELECT (the upstream's `databases`).
    pub databases: usize,
    /// Connections per node, database and protocol.
    pub connections: usize,
    pub connect_timeout: Duration,
    /// How long a client waits for an upstream reply before it gets an error.
    pub timeout: Duration,
    pub health_interval: Duration,
    /// Failed health checks in a row before a node is ejected.
    pub failure_limit: u32,
}

impl Options {
    pub fn new(url: UpstreamUrl, databases: usize) -> Options {
        Options {
            user: url.user.clone(),
            password: url.password.clone(),
            url,
            databases,
            connections: 2,
            connect_timeout: Duration::from_millis(1000),
            timeout: Duration::from_millis(1000),
            health_interval: node::HEALTH_INTERVAL,
            failure_limit: 3,
        }
    }
}

/// The upstream store: where forwarded commands and `Store` calls go.
pub struct Upstream {
    pub opts: Arc<Options>,
    primary: Arc<Node>,
    /// Round-robin over pool slots for `Store` calls.
    next_slot: AtomicU64,
}

impl Upstream {
    /// Builds the topology and starts the health checkers. The upstream need not be up:
    /// sessiond starts anyway, answers with clear errors, and recovers when it appears.
    pub fn start(opts: Options) -> Result<Upstream, String> {
        let opts = Arc::new(opts);
        let primary = match &opts.url.topology {
            Topology::Single(addr) => Node::new(addr.clone(), opts.clone()),
            Topology::Sentinel { .. } => {
                return Err("redis+sentinel:// upstreams are not implemented yet".into())
            }
            Topology::Cluster(_) => {
                return Err("redis+cluster:// upstreams are not implemented yet".into())
            }
        };
        tokio::spawn(primary.clone().check_health());
        Ok(Upstream {
            opts,
            primary,
            next_slot: AtomicU64::new(0),
        })
    }

    /// The node a command goes to.
    pub fn route(&self, _key: Option<&[u8]>, _write: bool) -> Arc<Node> {
        self.primary.clone()
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        vec![self.primary.clone()]
    }

    /// `INFO upstream`.
    pub fn info(&self) -> String {
        let mode = match &self.opts.url.topology {
            Topology::Single(_) => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster(_) => "cluster",
        };
        let mut s = format!(
            "# Upstream\r\nupstream_mode:{mode}\r\nupstream_url:{}\r\nupstream_timeout_ms:{}\r\nupstream_connections_per_pool:{}\r\n",
            self.opts.url,
            self.opts.timeout.as_millis(),
            self.opts.connections
        );
        let nodes = self.nodes();
        s.push_str(&format!("upstream_nodes:{}\r\n", nodes.len()));
        for (i, n) in nodes.iter().enumerate() {
            let (conns, in_flight) = n.usage();
            let st = &n.stats;
            s.push_str(&format!(
                "upstream_node{i}:addr={},role=master,health={},conns={conns},in_flight={in_flight},requests={},errors={},timeouts={},ejections={},connects={},last_error={}\r\n",
                n.addr,
                if n.is_healthy() { "up" } else { "down" },
                st.requests.load(Ordering::Relaxed),
                st.errors.load(Ordering::Relaxed),
                st.timeouts.load(Ordering::Relaxed),
                st.ejections.load(Ordering::Relaxed),
                st.connects.load(Ordering::Relaxed),
                n.last_error().replace(['\r', '\n', ','], " "),
            ));
        }
        s
    }

    /// Sends one command for a `Store` method and decodes its reply. Reads whose connection
    /// failed are retried once.
    async fn call(&self, db: Db, args: &[&[u8]], read_only: bool) -> StoreResult<Value> {
        let node = self.route(args.get(1).copied(), !read_only);
        let key = node
            .pool_key(db, false)
            .ok_or_else(|| StoreError::Other("ERR DB index is out of range".into()))?;
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if read_only { 2 } else { 1 };
        let mut last = StoreError::Other("ERR upstream unavailable".into());
        for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let conn = node.conn(key, slot).await.map_err(StoreError::Other)?;
            node.stats.requests.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(self.opts.timeout, conn.send(req.clone(), 1)).await {
                Ok(Ok(bytes)) => return value(&bytes),
                Ok(Err(_)) => {
                    node.stats.errors.fetch_add(1, Ordering::Relaxed);
                    last = StoreError::Other(forward::lost_message(&node.addr));
                }
                Err(_) => {
                    node.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::Other(forward::timeout_message(
                        &node.addr,
                        self.opts.timeout,
                    )));
                }
            }
        }
        Err(last)
    }
}

fn value(bytes: &Bytes) -> StoreResult<Value> {
    match decode(bytes, MAX_REPLY_BULK) {
        Ok(Some((Value::Error(e), _))) => Err(StoreError::Other(e)),
        Ok(Some((v, _))) => Ok(v),
        _ => Err(StoreError::Other(
            "ERR malformed reply from upstream".into(),
        )),
    }
}

fn unexpected(v: &Value) -> StoreError {
    StoreError::Other(format!("ERR unexpected reply from upstream: {v:?}"))
}

fn bulk(v: Value) -> StoreResult<Option<Bytes>> {
    match v {
        Value::Bulk(b) => Ok(Some(b)),
        Value::Nil => Ok(None),
        v => Err(unexpected(&v)),
    }
}

fn int(v: Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(i),
        v => Err(unexpected(&v)),
    }
}

fn upstream_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Other(m) if m.starts_with("ERR value is not an integer") => {
            StoreError::NotInteger
        }
        StoreError::Other(m) if m.starts_with("ERR increment or decrement would overflow") => {
            StoreError::Overflow
        }
        StoreError::Other(m) if m == "ERR no such key" => StoreError::NoSuchKey,
        StoreError::Other(m) if m.starts_with("OOM ") => StoreError::OutOfMemory,
        e => e,
    }
}

/// The session-lock release that phpredis and others send as a script.
const DEL_IF_EQUAL: &[u8] =
    b"if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

impl Store for Upstream {
    async fn get(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<Bytes>> {
        bulk(self.call(db, &[b"GET", key], true).await?)
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        _now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        let v = match ttl {
            TtlChange::Keep => self.call(db, &[b"GETEX", key], false).await?,
            TtlChange::Clear => self.call(db, &[b"GETEX", key, b"PERSIST"], false).await?,
            TtlChange::At(ms) => {
                let ms = ms.to_string();
                self.call(db, &[b"GETEX", key, b"PXAT", ms.as_bytes()], false)
                    .await?
            }
        };
        bulk(v)
    }

    async fn get_del(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<Bytes>> {
        bulk(self.call(db, &[b"GETDEL", key], false).await?)
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend_from_slice(keys);
        match self.call(db, &args, true).await? {
            Value::Array(items) => items.into_iter().map(bulk).collect(),
            v => Err(unexpected(&v)),
        }
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        _now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        let ms;
        let mut args: Vec<&[u8]> = vec![b"SET", key, value];
        match opts.condition {
            SetCondition::Always => {}
            SetCondition::IfAbsent => args.push(b"NX"),
            SetCondition::IfPresent => args.push(b"XX"),
        }
        match opts.ttl {
            TtlChange::Clear => {}
            TtlChange::Keep => args.push(b"KEEPTTL"),
            TtlChange::At(t) => {
                ms = t.to_string();
                args.push(b"PXAT");
                args.push(ms.as_bytes());
            }
        }
        if opts.get {
            args.push(b"GET");
        }
        let v = self.call(db, &args, false).await.map_err(upstream_error)?;
        if opts.get {
            let previous = bulk(v)?;
            let written = match opts.condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => previous.is_none(),
                SetCondition::IfPresent => previous.is_some(),
            };
            return Ok(SetOutcome { written, previous });
        }
        Ok(SetOutcome {
            written: !matches!(v, Value::Nil),
            previous: None,
        })
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let mut args: Vec<&[u8]> = vec![if only_if_none_exist {
            b"MSETNX"
        } else {
            b"MSET"
        }];
        for (k, v) in pairs {
            args.push(k);
            args.push(v);
        }
        match self.call(db, &args, false).await.map_err(upstream_error)? {
            Value::Int(n) => Ok(n == 1),
            _ => Ok(true),
        }
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], _now: UnixMs) -> StoreResult<u64> {
        let v = self.call(db, &[b"APPEND", key, value], false).await;
        Ok(int(v.map_err(upstream_error)?)? as u64)
    }

    async fn strlen(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<u64> {
        Ok(int(self.call(db, &[b"STRLEN", key], true).await?)? as u64)
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, _now: UnixMs) -> StoreResult<i64> {
        let d = delta.to_string();
        let v = self.call(db, &[b"INCRBY", key, d.as_bytes()], false).await;
        int(v.map_err(upstream_error)?)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<u64> {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend_from_slice(keys);
        Ok(int(self.call(db, &args, false).await?)? as u64)
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let v = self
            .call(db, &[b"EVAL", DEL_IF_EQUAL, b"1", key, expected], false)
            .await?;
        Ok(int(v)? == 1)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<u64> {
        let mut args: Vec<&[u8]> = vec![b"EXISTS"];
        args.extend_from_slice(keys);
        Ok(int(self.call(db, &args, true).await?)? as u64)
    }

    async fn key_type(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<KeyType>> {
        match self.call(db, &[b"TYPE", key], true).await? {
            Value::Simple(t) if t == "none" => Ok(None),
            Value::Simple(t) if t == "string" => Ok(Some(KeyType::String)),
            Value::Simple(t) => Ok(Some(KeyType::Other(t))),
            v => Err(unexpected(&v)),
        }
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let cmd: &[u8] = if only_if_absent {
            b"RENAMENX"
        } else {
            b"RENAME"
        };
        match self
            .call(db, &[cmd, src, dst], false)
            .await
            .map_err(upstream_error)?
        {
            Value::Int(n) => Ok(n == 1),
            _ => Ok(true),
        }
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let at = at.to_string();
        let mut args: Vec<&[u8]> = vec![b"PEXPIREAT", key, at.as_bytes()];
        match cond {
            ExpireCondition::Always => {}
            ExpireCondition::Nx => args.push(b"NX"),
            ExpireCondition::Xx => args.push(b"XX"),
            ExpireCondition::Gt => args.push(b"GT"),
            ExpireCondition::Lt => args.push(b"LT"),
        }
        Ok(int(self.call(db, &args, false).await?)? == 1)
    }

    async fn persist(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<bool> {
        Ok(int(self.call(db, &[b"PERSIST", key], false).await?)? == 1)
    }

    async fn ttl(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Ttl> {
        Ok(
            match int(self.call(db, &[b"PEXPIRETIME", key], true).await?)? {
                -2 => Ttl::Missing,
                -1 => Ttl::Persistent,
                at => Ttl::At(at),
            },
        )
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        _now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        let c = cursor.to_string();
        let count = filter.count.max(1).to_string();
        let mut args: Vec<&[u8]> = vec![b"SCAN", c.as_bytes(), b"COUNT", count.as_bytes()];
        if let Some(p) = &filter.pattern {
            args.push(b"MATCH");
            args.push(p);
        }
        if let Some(t) = &filter.key_type {
            args.push(b"TYPE");
            args.push(t);
        }
        match self.call(db, &args, true).await? {
            Value::Array(mut items) if items.len() == 2 => {
                let keys = match items.pop() {
                    Some(Value::Array(k)) => k
                        .into_iter()
                        .filter_map(|k| bulk(k).ok().flatten())
                        .collect(),
                    _ => Vec::new(),
                };
                let next = items.pop().and_then(|c| c.int()).unwrap_or(0) as u64;
                Ok((next, keys))
            }
            v => Err(unexpected(&v)),
        }
    }

    async fn keys(&self, db: Db, pattern: &[u8], _now: UnixMs) -> StoreResult<Vec<Bytes>> {
        match self.call(db, &[b"KEYS", pattern], true).await? {
            Value::Array(items) => Ok(items
                .into_iter()
                .filter_map(|k| bulk(k).ok().flatten())
                .collect()),
            v => Err(unexpected(&v)),
        }
    }

    async fn random_key(&self, db: Db, _now: UnixMs) -> StoreResult<Option<Bytes>> {
        bulk(self.call(db, &[b"RANDOMKEY"], true).await?)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        Ok(int(self.call(db, &[b"DBSIZE"], true).await?)? as u64)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        self.call(db, &[b"FLUSHDB"], false).await.map(|_| ())
    }

    async fn flush_all(&self) -> StoreResult<()> {
        self.call(0, &[b"FLUSHALL"], false).await.map(|_| ())
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        let (a, b) = (a.to_string(), b.to_string());
        self.call(0, &[b"SWAPDB", a.as_bytes(), b.as_bytes()], false)
            .await
            .map(|_| ())
    }

    fn stats(&self, _now: UnixMs) -> StoreStats {
        StoreStats {
            maxmemory_policy: "noeviction",
            ..StoreStats::default()
        }
    }

    fn databases(&self) -> usize {
        self.opts.databases
    }

    fn set_maxmemory(&self, _bytes: u64) {}

    fn set_maxmemory_policy(&self, _policy: &str) -> bool {
        false
    }

    fn gateway(&self) -> Option<&Upstream> {
        Some(self)
    }
}
