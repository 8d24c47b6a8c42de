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
pub mod sentinel;
pub mod url;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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

/// Where reads go when the upstream has replicas (Sentinel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Always the primary: every client reads its own writes.
    Never,
    /// The primary while it is healthy; a replica while it is not (reads keep working
    /// during a failover; a read may then miss a write the old primary had not replicated).
    OnPrimaryFailure,
    /// Replicas when any is healthy: spreads reads, but a client may not see its own
    /// writes until they replicate.
    Always,
}

impl ReadFrom {
    pub fn parse(s: &str) -> Option<ReadFrom> {
        match s {
            "never" => Some(ReadFrom::Never),
            "on-primary-failure" => Some(ReadFrom::OnPrimaryFailure),
            "always" => Some(ReadFrom::Always),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Never => "never",
            ReadFrom::OnPrimaryFailure => "on-primary-failure",
            ReadFrom::Always => "always",
        }
    }
}

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
    pub read_from_replica: ReadFrom,
    /// How long a write waits for a healthy primary (during a failover) before failing;
    /// zero fails at once.
    pub failover_wait: Duration,
    /// How often the topology is asked for again (Sentinel), besides following its events.
    pub refresh_interval: Duration,
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
            read_from_replica: ReadFrom::Never,
            failover_wait: Duration::ZERO,
            refresh_interval: Duration::from_millis(1000),
        }
    }
}

/// The nodes commands go to, replaced as a whole when the topology changes.
struct Routes {
    primary: Arc<Node>,
    replicas: Vec<Arc<Node>>,
}

/// Topology state shared with the tasks that follow it.
struct Shared {
    opts: Arc<Options>,
    routes: RwLock<Arc<Routes>>,
    /// Every node ever routed to, by address: a replica promoted to primary keeps its
    /// connections, health and counters.
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    /// Primary switches seen (Sentinel).
    switches: AtomicU64,
    last_switch: Mutex<String>,
}

/// The node at `addr` from `nodes`, created (with its health checker) if new.
fn node_at(nodes: &mut HashMap<String, Arc<Node>>, addr: &str, opts: &Arc<Options>) -> Arc<Node> {
    nodes
        .entry(addr.to_string())
        .or_insert_with(|| {
            let n = Node::new(addr.to_string(), opts.clone());
            tokio::spawn(n.clone().check_health());
            n
        })
        .clone()
}

impl Shared {
    fn node(&self, addr: &str) -> Arc<Node> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        node_at(&mut nodes, addr, &self.opts)
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies what Sentinel reports.
    fn set_view(&self, primary: &str, replicas: &[String]) {
        let current = self.routes();
        let same_replicas = current.replicas.len() == replicas.len()
            && current
                .replicas
                .iter()
                .zip(replicas)
                .all(|(n, a)| n.addr == *a);
        if current.primary.addr == primary && same_replicas {
            return;
        }
        let routes = Routes {
            primary: self.node(primary),
            replicas: replicas
                .iter()
                .filter(|a| a.as_str() != primary)
                .map(|a| self.node(a))
                .collect(),
        };
        if current.primary.addr != primary {
            self.switches.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "{} -> {primary} at unix ms {}",
                current.primary.addr,
                crate::clock::now_ms()
            );
            tracing::warn!("upstream primary switched: {msg}");
            *self.last_switch.lock().unwrap_or_else(|p| p.into_inner()) = msg;
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }
}

/// The upstream store: where forwarded commands and `Store` calls go.
pub struct Upstream {
    pub opts: Arc<Options>,
    shared: Arc<Shared>,
    /// Round-robin over pool slots for `Store` calls.
    next_slot: AtomicU64,
}

impl Upstream {
    /// Builds the topology and starts the tasks that keep it current. A single upstream
    /// need not be up: sessiond starts anyway, answers with clear errors, and recovers when
    /// it appears. With Sentinel, one sentinel must answer at start.
    pub async fn start(opts: Options) -> Result<Upstream, String> {
        let opts = Arc::new(opts);
        let (primary, replicas, sentinels) = match &opts.url.topology {
            Topology::Single(addr) => (addr.clone(), Vec::new(), None),
            Topology::Sentinel { sentinels, master } => {
                let view = sentinel::discover(sentinels, master, opts.connect_timeout).await?;
                tracing::info!(
                    "sentinel: primary of '{master}' is {}, replicas {:?}",
                    view.primary,
                    view.replicas
                );
                (
                    view.primary,
                    view.replicas,
                    Some((sentinels.clone(), master.clone())),
                )
            }
            Topology::Cluster(_) => {
                return Err("redis+cluster:// upstreams are not implemented yet".into())
            }
        };
        let mut nodes = HashMap::new();
        let routes = Routes {
            primary: node_at(&mut nodes, &primary, &opts),
            replicas: replicas
                .iter()
                .map(|a| node_at(&mut nodes, a, &opts))
                .collect(),
        };
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            routes: RwLock::new(Arc::new(routes)),
            nodes: Mutex::new(nodes),
            switches: AtomicU64::new(0),
            last_switch: Mutex::new(String::new()),
        });
        if let Some((sentinels, master)) = sentinels {
            follow_sentinels(&shared, sentinels, master);
        }
        Ok(Upstream {
            opts,
            shared,
            next_slot: AtomicU64::new(0),
        })
    }

    /// The node a command goes to. `client` spreads replica reads and keeps one client on
    /// one replica.
    pub fn route(&self, _key: Option<&[u8]>, write: bool, client: u64) -> Arc<Node> {
        let r = self.shared.routes();
        if write || r.replicas.is_empty() {
            return r.primary.clone();
        }
        let replica = || {
            let n = r.replicas.len();
            (0..n)
                .map(|i| &r.replicas[(client as usize + i) % n])
                .find(|x| x.is_healthy())
                .cloned()
        };
        match self.opts.read_from_replica {
            ReadFrom::Never => r.primary.clone(),
            ReadFrom::OnPrimaryFailure if r.primary.is_healthy() => r.primary.clone(),
            ReadFrom::OnPrimaryFailure | ReadFrom::Always => {
                replica().unwrap_or_else(|| r.primary.clone())
            }
        }
    }

    pub fn nodes(&self) -> Vec<(Arc<Node>, &'static str)> {
        let r = self.shared.routes();
        let mut v = vec![(r.primary.clone(), "master")];
        v.extend(r.replicas.iter().map(|n| (n.clone(), "replica")));
        v
    }

    /// `INFO upstream`.
    pub fn info(&self) -> String {
        let mode = match &self.opts.url.topology {
            Topology::Single(_) => "single",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster(_) => "cluster",
        };
        let mut s = format!(
            "# Upstream\r\nupstream_mode:{mode}\r\nupstream_url:{}\r\nupstream_timeout_ms:{}\r\nupstream_connections_per_pool:{}\r\nupstream_read_from_replica:{}\r\nupstream_primary_switches:{}\r\nupstream_last_switch:{}\r\n",
            self.opts.url,
            self.opts.timeout.as_millis(),
            self.opts.connections,
            self.opts.read_from_replica.name(),
            self.shared.switches.load(Ordering::Relaxed),
            self.shared
                .last_switch
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let nodes = self.nodes();
        s.push_str(&format!("upstream_nodes:{}\r\n", nodes.len()));
        for (i, (n, role)) in nodes.iter().enumerate() {
            let (conns, in_flight, batch) = n.usage();
            let st = &n.stats;
            s.push_str(&format!(
                "upstream_node{i}:addr={},role={role},health={},conns={conns},in_flight={in_flight},requests_per_write={batch:.2},requests={},errors={},timeouts={},ejections={},connects={},last_error={}\r\n",
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
    /// failed are retried once, re-routed (to a replica if the primary is down and the
    /// policy allows).
    async fn call(&self, db: Db, args: &[&[u8]], read_only: bool) -> StoreResult<Value> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if read_only { 2 } else { 1 };
        let mut last = StoreError::Other("ERR upstream unavailable".into());
        for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(args.get(1).copied(), !read_only, slot);
            let key = node
                .pool_key(db, false)
                .ok_or_else(|| StoreError::Other("ERR DB index is out of range".into()))?;
            let conn = match node.conn(key, slot).await {
                Ok(c) => c,
                Err(e) => {
                    last = StoreError::Other(e);
                    continue;
                }
            };
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

/// Follows `+switch-master` on every sentinel and re-asks the topology every refresh
/// interval, for the lifetime of the process.
fn follow_sentinels(shared: &Arc<Shared>, sentinels: Vec<String>, master: String) {
    for s in sentinels.clone() {
        let shared = shared.clone();
        let master = master.clone();
        tokio::spawn(async move {
            loop {
                let sh = shared.clone();
                let r = sentinel::follow(&s, &master, shared.opts.connect_timeout, |primary| {
                    let replicas: Vec<String> = sh
                        .routes()
                        .replicas
                        .iter()
                        .map(|n| n.addr.clone())
                        .collect();
                    sh.set_view(&primary, &replicas);
                })
                .await;
                if let Err(e) = r {
                    tracing::debug!("sentinel {s}: {e}; reconnecting");
                }
                tokio::time::sleep(shared.opts.refresh_interval).await;
            }
        });
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(shared.opts.refresh_interval).await;
            match sentinel::discover(&sentinels, &master, shared.opts.connect_timeout).await {
                Ok(v) => shared.set_view(&v.primary, &v.replicas),
                Err(e) => tracing::warn!("sentinel refresh: {e}"),
            }
        }
    });
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
