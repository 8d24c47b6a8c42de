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
//! What each command gets is decided in [`policy`]: most are forwarded, routed by the keys
//! the command table's key specs find; what is about the client's connection to sessiond or
//! sessiond itself is answered locally (`AUTH` against sessiond's `requirepass`, `SELECT`
//! mapped to a pool in that database, `HELLO`, `CLIENT`, `INFO`, `CONFIG`…); transactions,
//! blocking commands and subscribers hold a [`pinned`] connection of their own.
//!
//! Failure handling: connect and request timeouts, one retry of read-only requests whose
//! connection failed (never of writes, which may have run), health checks with ejection and
//! recovery ([`node`]). A client always gets a reply, an error if need be, within the request
//! timeout.

pub mod cluster;
pub mod conn;
mod fanout;
pub mod forward;
pub mod node;
pub mod pinned;
pub mod policy;
mod report;
mod retarget;
pub mod sentinel;
mod store;
pub mod stream;
pub mod url;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::resp::value::{decode, FrameScanner, Value};
use crate::store::{Db, StoreError, StoreResult};
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
    /// The most dedicated (pinned) connections at once, over all nodes.
    pub pinned_max: usize,
    pub connect_timeout: Duration,
    /// How long a client waits for an upstream reply before it gets an error, in ms; see
    /// [`Options::timeout`]. Shared by every clone, so a reload changes it for the running
    /// upstream.
    timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// What happened to the topology, newest last: primary switches, ejections, recoveries
    /// (the console's timeline). Shared by every clone, as the nodes hold one.
    pub timeline: Arc<Mutex<std::collections::VecDeque<(i64, String)>>>,
    pub health_interval: Duration,
    /// Failed health checks in a row before a node is ejected.
    pub failure_limit: u32,
    pub read_from_replica: ReadFrom,
    /// How long a write waits for a healthy primary (during a failover) before failing;
    /// zero fails at once.
    pub failover_wait: Duration,
    /// How often the topology is asked for again (Sentinel), besides following its events.
    pub refresh_interval: Duration,
    /// TLS to every node and sentinel (`rediss…://`), built at start from the URL's options.
    pub tls: Option<stream::Connector>,
}

impl Options {
    /// How long a client waits for an upstream reply before it gets an error (live).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Adds an event to the topology timeline (the last 100 are kept).
    pub fn note(&self, event: String) {
        let mut t = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == 100 {
            t.pop_front();
        }
        t.push_back((crate::clock::now_ms(), event));
    }

    pub fn set_timeout(&self, d: Duration) {
        self.timeout_ms
            .store(d.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    pub fn new(url: UpstreamUrl, databases: usize) -> Options {
        Options {
            user: url.user.clone(),
            password: url.password.clone(),
            url,
            databases,
            connections: 2,
            pinned_max: 1000,
            connect_timeout: Duration::from_millis(1000),
            timeout_ms: Arc::new(std::sync::atomic::AtomicU64::new(1000)),
            timeline: Arc::default(),
            health_interval: node::HEALTH_INTERVAL,
            failure_limit: 3,
            read_from_replica: ReadFrom::Never,
            failover_wait: Duration::ZERO,
            refresh_interval: Duration::from_millis(1000),
            tls: None,
        }
    }
}

/// The nodes commands go to, replaced as a whole when the topology changes.
struct Routes {
    primary: Arc<Node>,
    replicas: Vec<Arc<Node>>,
    /// Cluster: the owner of each hash slot (`None`: not served), and every primary.
    slots: Option<Vec<Option<Arc<Node>>>>,
    primaries: Vec<Arc<Node>>,
}

impl Routes {
    fn single(primary: Arc<Node>, replicas: Vec<Arc<Node>>) -> Routes {
        Routes {
            primaries: vec![primary.clone()],
            primary,
            replicas,
            slots: None,
        }
    }
}

/// Topology state shared with the tasks that follow it.
struct Shared {
    opts: Arc<Options>,
    /// The URL the upstream follows now: `opts.url` until a reload points it elsewhere
    /// (`retarget.rs`): the sentinels asked and the cluster seeds are read from here.
    target: RwLock<UpstreamUrl>,
    routes: RwLock<Arc<Routes>>,
    /// Every node ever routed to, by address: a replica promoted to primary keeps its
    /// connections, health and counters.
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    /// Primary switches seen (Sentinel).
    switches: AtomicU64,
    last_switch: Mutex<String>,
    /// Cluster redirections followed, and a wake-up for an early slot-map refresh.
    moved: AtomicU64,
    asked: AtomicU64,
    refresh: tokio::sync::Notify,
    /// The last `notify-keyspace-events` a client set through the gateway.
    notify_events: Mutex<Option<Vec<u8>>>,
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

    fn target(&self) -> UpstreamUrl {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sentinels to ask now (none unless the URL is a Sentinel one).
    fn sentinels(&self) -> Vec<String> {
        match self.target().topology {
            Topology::Sentinel { sentinels, .. } => sentinels,
            _ => Vec::new(),
        }
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
        let routes = Routes::single(
            self.node(primary),
            replicas
                .iter()
                .filter(|a| a.as_str() != primary)
                .map(|a| self.node(a))
                .collect(),
        );
        if current.primary.addr != primary {
            self.reapply_settings(routes.primary.clone());
            self.switches.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "{} -> {primary} at unix ms {}",
                current.primary.addr,
                crate::clock::now_ms()
            );
            tracing::warn!("upstream primary switched: {msg}");
            self.opts.note(format!(
                "primary switched: {} -> {primary}",
                current.primary.addr
            ));
            *self.last_switch.lock().unwrap_or_else(|p| p.into_inner()) = msg;
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }

    /// Gives a new primary the server settings clients set through the gateway (today
    /// `notify-keyspace-events`): an application sets it once at start (Spring Session
    /// does), and a replica promoted since would not have it, so its expiry events would
    /// stop. Tried for a few seconds in the background; failures are logged.
    fn reapply_settings(&self, node: Arc<Node>) {
        let Some(value) = self
            .notify_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        tokio::spawn(async move {
            let mut req = BytesMut::new();
            encode(
                &mut req,
                &[b"CONFIG", b"SET", b"notify-keyspace-events", &value],
            );
            let req = req.freeze();
            let mut last = String::new();
            for _ in 0..50 {
                let attempt = async {
                    let conn = node.conn(0, 0).await?;
                    let reply =
                        tokio::time::timeout(Duration::from_secs(1), conn.send(req.clone(), 1))
                            .await
                            .map_err(|_| "timed out".to_string())?
                            .map_err(|_| "connection lost".to_string())?;
                    if reply.starts_with(b"+OK") {
                        Ok(())
                    } else {
                        Err(String::from_utf8_lossy(&reply).trim_end().to_string())
                    }
                };
                match attempt.await {
                    Ok(()) => {
                        tracing::info!(
                            "notify-keyspace-events '{}' applied to new primary {}",
                            String::from_utf8_lossy(&value),
                            node.addr
                        );
                        return;
                    }
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::warn!(
                "could not apply notify-keyspace-events to new primary {}: {last}",
                node.addr
            );
        });
    }

    /// A cluster slot map from `CLUSTER SLOTS` ranges.
    fn cluster_routes(&self, ranges: &[cluster::Range]) -> Routes {
        let mut slots = vec![None; cluster::SLOTS];
        let mut primaries: Vec<Arc<Node>> = Vec::new();
        let mut replicas: Vec<Arc<Node>> = Vec::new();
        for r in ranges {
            let n = self.node(&r.primary);
            for s in &mut slots[r.start as usize..=r.end as usize] {
                *s = Some(n.clone());
            }
            if !primaries.iter().any(|p| p.id == n.id) {
                primaries.push(n);
            }
            for a in &r.replicas {
                let rn = self.node(a);
                if !replicas.iter().any(|x| x.id == rn.id) {
                    replicas.push(rn);
                }
            }
        }
        primaries.sort_by(|a, b| a.addr.cmp(&b.addr));
        Routes {
            primary: primaries[0].clone(),
            replicas,
            slots: Some(slots),
            primaries,
        }
    }

    fn set_cluster(&self, ranges: &[cluster::Range]) {
        let routes = self.cluster_routes(ranges);
        let before = self.routes();
        for p in &routes.primaries {
            if before.slots.is_some() && !before.primaries.iter().any(|b| b.id == p.id) {
                self.reapply_settings(p.clone());
            }
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }

    /// `-MOVED slot addr`: the slot is `addr`'s now. Fixed in the map at once (so the next
    /// command goes straight there) and a full refresh is requested.
    fn moved(&self, slot: u16, addr: &str) {
        self.moved.fetch_add(1, Ordering::Relaxed);
        let node = self.node(addr);
        let current = self.routes();
        if let Some(slots) = &current.slots {
            if slots[slot as usize].as_ref().map(|n| n.id) != Some(node.id) {
                let mut slots = slots.clone();
                slots[slot as usize] = Some(node.clone());
                let mut primaries = current.primaries.clone();
                if !primaries.iter().any(|p| p.id == node.id) {
                    primaries.push(node);
                }
                let routes = Routes {
                    primary: current.primary.clone(),
                    replicas: current.replicas.clone(),
                    slots: Some(slots),
                    primaries,
                };
                *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
            }
        }
        self.refresh.notify_one();
    }
}

/// The upstream store: where forwarded commands and `Store` calls go.
pub struct Upstream {
    pub opts: Arc<Options>,
    /// Dedicated connections for transactions and blocking commands.
    pub pinned: Arc<pinned::PinnedPool>,
    shared: Arc<Shared>,
    /// Round-robin over pool slots for `Store` calls.
    next_slot: AtomicU64,
}

impl Upstream {
    /// Builds the topology and starts the tasks that keep it current. A single upstream
    /// need not be up: sessiond starts anyway, answers with clear errors, and recovers when
    /// it appears. With Sentinel, one sentinel must answer at start.
    pub async fn start(mut opts: Options) -> Result<Upstream, String> {
        if let Some(t) = &opts.url.tls {
            opts.tls = Some(t.connector()?);
        }
        let opts = Arc::new(opts);
        let mut ranges = None;
        let (primary, replicas, sentinels) = match &opts.url.topology {
            Topology::Single(addr) => (addr.clone(), Vec::new(), None),
            Topology::Sentinel { sentinels, master } => {
                let view =
                    sentinel::discover(sentinels, master, opts.tls.as_ref(), opts.connect_timeout)
                        .await?;
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
            Topology::Cluster(seeds) => {
                let r = cluster::discover(
                    seeds,
                    opts.user.as_deref(),
                    opts.password.as_deref(),
                    opts.tls.as_ref(),
                    opts.connect_timeout,
                )
                .await?;
                tracing::info!("cluster: {} slot ranges", r.len());
                let first = r[0].primary.clone();
                ranges = Some(r);
                (first, Vec::new(), None)
            }
        };
        let mut nodes = HashMap::new();
        let routes = Routes::single(
            node_at(&mut nodes, &primary, &opts),
            replicas
                .iter()
                .map(|a| node_at(&mut nodes, a, &opts))
                .collect(),
        );
        let shared = Arc::new(Shared {
            target: RwLock::new(opts.url.clone()),
            opts: opts.clone(),
            routes: RwLock::new(Arc::new(routes)),
            nodes: Mutex::new(nodes),
            switches: AtomicU64::new(0),
            last_switch: Mutex::new(String::new()),
            moved: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            refresh: tokio::sync::Notify::new(),
            notify_events: Mutex::new(None),
        });
        if let Some((sentinels, master)) = sentinels {
            follow_sentinels(&shared, sentinels, master);
        }
        if let Some(r) = ranges {
            shared.set_cluster(&r);
            follow_cluster(&shared);
        }
        Ok(Upstream {
            pinned: Arc::new(pinned::PinnedPool::new(opts.pinned_max)),
            opts,
            shared,
            next_slot: AtomicU64::new(0),
        })
    }

    /// The node a command goes to. `client` spreads replica reads and keeps one client on
    /// one replica.
    pub fn route(&self, key: Option<&[u8]>, write: bool, client: u64) -> Arc<Node> {
        let r = self.shared.routes();
        if let Some(slots) = &r.slots {
            // Cluster: the slot's owner; keyless commands, and slots nobody serves (the
            // node answers with Redis's own error), go to a primary.
            let owner = key.and_then(|k| slots[cluster::slot(k) as usize].clone());
            return owner
                .unwrap_or_else(|| r.primaries[client as usize % r.primaries.len()].clone());
        }
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

    /// Whether the upstream is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        // Fixed by the URL (a cluster's routes always have a slot map): no lock per command.
        matches!(self.opts.url.topology, Topology::Cluster(_))
    }

    /// The node at an address (a redirection target), known or new.
    pub fn node(&self, addr: &str) -> Arc<Node> {
        self.shared.node(addr)
    }

    /// Records a `-MOVED` (see [`Shared::moved`]).
    pub fn moved(&self, slot: u16, addr: &str) {
        self.shared.moved(slot, addr);
    }

    /// Remembers `notify-keyspace-events` set through the gateway, for new primaries.
    pub fn remember_notify_events(&self, value: &[u8]) {
        *self
            .shared
            .notify_events
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(value.to_vec());
    }

    /// Asks for the cluster's slot map now (a shard channel was moved away).
    pub fn request_refresh(&self) {
        self.shared.refresh.notify_one();
    }

    pub fn asked(&self) {
        self.shared.asked.fetch_add(1, Ordering::Relaxed);
    }

    /// Every primary (cluster fan-out), or the one primary.
    pub fn primaries(&self) -> Vec<Arc<Node>> {
        self.shared.routes().primaries.clone()
    }

    pub fn nodes(&self) -> Vec<(Arc<Node>, &'static str)> {
        let r = self.shared.routes();
        if r.slots.is_some() {
            let mut v: Vec<_> = r.primaries.iter().map(|n| (n.clone(), "master")).collect();
            v.extend(r.replicas.iter().map(|n| (n.clone(), "replica")));
            return v;
        }
        let mut v = vec![(r.primary.clone(), "master")];
        v.extend(r.replicas.iter().map(|n| (n.clone(), "replica")));
        v
    }

    /// Sends one command for a `Store` method, routed by its first argument, and decodes
    /// its reply. Reads whose connection failed are retried, re-routed (to a replica if the
    /// primary is down and the policy allows); cluster redirections are followed.
    async fn call(&self, db: Db, args: &[&[u8]], read_only: bool) -> StoreResult<Value> {
        self.call_key(db, args.get(1).copied(), args, read_only)
            .await
    }

    async fn call_key(
        &self,
        db: Db,
        key: Option<&[u8]>,
        args: &[&[u8]],
        read_only: bool,
    ) -> StoreResult<Value> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if read_only { 3 } else { 1 };
        let mut last = StoreError::Other("ERR upstream unavailable".into());
        for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(key, !read_only, slot);
            match self.call_on(&node, db, req.clone(), 1, slot).await {
                Ok(v) => return self.follow_moved(db, v, &req, slot).await,
                Err(Retry::Lost(e)) => last = StoreError::Other(e),
                Err(Retry::No(e)) => return Err(StoreError::Other(e)),
            }
        }
        Err(last)
    }

    /// One attempt on one node: the decoded last of `count` replies (errors included, as
    /// `Value::Error`).
    async fn call_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
    ) -> Result<Value, Retry> {
        let frame = self.frame_on(node, db, req, count, slot, false).await?;
        match decode(&frame, MAX_REPLY_BULK) {
            Ok(Some((v, _))) => Ok(v),
            _ => Err(Retry::No("ERR malformed reply from upstream".into())),
        }
    }

    /// One attempt on one node: the bytes of all `count` replies, in the protocol asked for
    /// (`resp3` picks the connection pool). A lost connection or a timeout kills the
    /// connection and is worth a retry.
    async fn send_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
        resp3: bool,
    ) -> Result<Bytes, Retry> {
        let key = node
            .pool_key(db, resp3)
            .ok_or_else(|| Retry::No("ERR DB index is out of range".into()))?;
        // As in `ClientForwarder::conn`: the connecting path boxed, and taken only when the
        // pool's connection is not up (this is the migration router's per-call path).
        let conn = match node.live_conn(key, slot) {
            Some(c) => c,
            None => Box::pin(node.conn(key, slot)).await.map_err(Retry::Lost)?,
        };
        node.stats.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.opts.timeout(), conn.send(req, count)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => {
                node.stats.errors.fetch_add(1, Ordering::Relaxed);
                conn.kill();
                Err(Retry::Lost(forward::lost_message(&node.addr)))
            }
            Err(_) => {
                node.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                conn.kill();
                Err(Retry::Lost(forward::timeout_message(
                    &node.addr,
                    self.opts.timeout(),
                )))
            }
        }
    }

    /// One attempt on one node: the last of `count` reply frames as it came.
    async fn frame_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
        resp3: bool,
    ) -> Result<Bytes, Retry> {
        let bytes = self.send_on(node, db, req, count, slot, resp3).await?;
        let mut at = 0;
        loop {
            let mut scan = FrameScanner::default();
            match scan.next_frame(&bytes[at..], MAX_REPLY_BULK) {
                Ok(Some(n)) if at + n >= bytes.len() => return Ok(bytes.slice(at..)),
                Ok(Some(n)) => at += n,
                _ => return Err(Retry::No("ERR malformed reply from upstream".into())),
            }
        }
    }

    /// Sends many independent commands with as few round trips as the topology allows: one
    /// request per node, grouped by each command's key (`args[1]`), the nodes at once. The
    /// replies come back in the commands' order. A command whose slot moved meanwhile is
    /// sent again on its own, its redirection followed. For bulk copies (`migrate
    /// backfill`), where one round trip per key would bound the rate.
    pub async fn pipeline(&self, db: Db, commands: &[Vec<&[u8]>]) -> StoreResult<Vec<Bytes>> {
        let keys: Vec<&[u8]> = commands
            .iter()
            .map(|c| c.get(1).copied().unwrap_or(b""))
            .collect();
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let groups = self.by_node(&keys);
        let sends = groups.iter().map(|(node, idx)| {
            let mut req = BytesMut::new();
            for &i in idx {
                encode(&mut req, &commands[i]);
            }
            self.frames_on(node, db, req.freeze(), idx.len(), slot)
        });
        let replies = futures_util::future::join_all(sends).await;
        let mut out = vec![Bytes::new(); commands.len()];
        for ((_, idx), frames) in groups.iter().zip(replies) {
            let frames = frames.map_err(|(Retry::Lost(e) | Retry::No(e))| StoreError::Other(e))?;
            for (&i, f) in idx.iter().zip(frames) {
                out[i] = f;
            }
        }
        for (i, f) in out.iter_mut().enumerate() {
            if cluster::redirect(f).is_some() {
                *f = self
                    .call_frame(db, Some(keys[i]), &commands[i], true, false)
                    .await?;
            }
        }
        Ok(out)
    }

    /// One request of `count` commands on one node: every reply frame, in order.
    async fn frames_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
    ) -> Result<Vec<Bytes>, Retry> {
        let bytes = self.send_on(node, db, req, count, slot, false).await?;
        let malformed = || Retry::No("ERR malformed reply from upstream".into());
        let mut frames = Vec::with_capacity(count);
        let mut at = 0;
        while at < bytes.len() {
            let mut scan = FrameScanner::default();
            match scan.next_frame(&bytes[at..], MAX_REPLY_BULK) {
                Ok(Some(n)) => {
                    frames.push(bytes.slice(at..at + n));
                    at += n;
                }
                _ => return Err(malformed()),
            }
        }
        if frames.len() != count {
            return Err(malformed());
        }
        Ok(frames)
    }

    /// Sends `commands` back to back on one connection of the node serving `key` (a
    /// `MULTI … EXEC` block, which Redis runs atomically) and returns the last reply frame.
    /// Nothing is retried or redirected: a transaction that met a moved slot fails with
    /// Redis's own `EXECABORT`, which the client sees.
    pub async fn call_block(
        &self,
        db: Db,
        key: Option<&[u8]>,
        commands: &[&[&[u8]]],
        resp3: bool,
    ) -> StoreResult<Bytes> {
        let mut req = BytesMut::new();
        for c in commands {
            encode(&mut req, c);
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let node = self.route(key, true, slot);
        match self
            .frame_on(&node, db, req.freeze(), commands.len(), slot, resp3)
            .await
        {
            Ok(f) => {
                if cluster::may_redirect(&f) {
                    self.request_refresh();
                }
                Ok(f)
            }
            Err(Retry::Lost(e) | Retry::No(e)) => Err(StoreError::Other(e)),
        }
    }

    /// Sends one command routed by `key` and returns its reply frame as Redis wrote it
    /// (errors included), in RESP3 when `resp3`: the migration router's typed commands,
    /// whose replies go to the client unchanged. Reads whose connection failed are retried;
    /// cluster redirections are followed.
    pub async fn call_frame(
        &self,
        db: Db,
        key: Option<&[u8]>,
        args: &[&[u8]],
        write: bool,
        resp3: bool,
    ) -> StoreResult<Bytes> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if write { 1 } else { 3 };
        let mut last = StoreError::Other("ERR upstream unavailable".into());
        'attempt: for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(key, write, slot);
            let mut frame = match self.frame_on(&node, db, req.clone(), 1, slot, resp3).await {
                Ok(f) => f,
                Err(Retry::Lost(e)) => {
                    last = StoreError::Other(e);
                    continue;
                }
                Err(Retry::No(e)) => return Err(StoreError::Other(e)),
            };
            for _ in 0..5 {
                let Some(r) = cluster::redirect(&frame) else {
                    return Ok(frame);
                };
                let (node, req, count) = match r {
                    cluster::Redirect::Moved(s, addr) => {
                        self.moved(s, &addr);
                        (self.node(&addr), req.clone(), 1)
                    }
                    cluster::Redirect::Ask(_, addr) => {
                        self.asked();
                        let mut b = BytesMut::new();
                        encode(&mut b, &[b"ASKING"]);
                        b.extend_from_slice(&req);
                        (self.node(&addr), b.freeze(), 2)
                    }
                };
                frame = match self.frame_on(&node, db, req, count, slot, resp3).await {
                    Ok(f) => f,
                    Err(Retry::Lost(e)) => {
                        last = StoreError::Other(e);
                        continue 'attempt;
                    }
                    Err(Retry::No(e)) => return Err(StoreError::Other(e)),
                };
            }
            return Err(StoreError::Other(
                "ERR too many cluster redirections".into(),
            ));
        }
        Err(last)
    }

    /// Follows `-MOVED`/`-ASK` replies (cluster), then turns error replies into errors.
    async fn follow_moved(
        &self,
        db: Db,
        mut v: Value,
        req: &Bytes,
        slot: u64,
    ) -> StoreResult<Value> {
        for _ in 0..5 {
            let Value::Error(e) = &v else { return Ok(v) };
            let Some(r) = cluster::redirect(format!("-{e}\r\n").as_bytes()) else {
                return Err(StoreError::Other(e.clone()));
            };
            let (node, req, count) = match r {
                cluster::Redirect::Moved(s, addr) => {
                    self.moved(s, &addr);
                    (self.node(&addr), req.clone(), 1)
                }
                cluster::Redirect::Ask(_, addr) => {
                    self.asked();
                    let mut b = BytesMut::new();
                    encode(&mut b, &[b"ASKING"]);
                    b.extend_from_slice(req);
                    // Two replies: ASKING's +OK, then the command's.
                    (self.node(&addr), b.freeze(), 2)
                }
            };
            v = match self.call_on(&node, db, req, count, slot).await {
                Ok(v) => v,
                Err(Retry::Lost(e) | Retry::No(e)) => return Err(StoreError::Other(e)),
            };
        }
        Err(StoreError::Other(
            "ERR too many cluster redirections".into(),
        ))
    }

    /// Groups key positions by hash slot, as a cluster node accepts a multi-key command only
    /// for keys of one slot (one group outside a cluster).
    fn by_node(&self, keys: &[&[u8]]) -> Vec<(Arc<Node>, Vec<usize>)> {
        let cluster = self.is_cluster();
        let mut groups: Vec<(u16, Arc<Node>, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let slot = if cluster { cluster::slot(k) } else { 0 };
            match groups.iter_mut().find(|(s, _, _)| *s == slot) {
                Some((_, _, v)) => v.push(i),
                None => groups.push((slot, self.route(Some(k), true, 0), vec![i])),
            }
        }
        groups.into_iter().map(|(_, n, v)| (n, v)).collect()
    }

    /// One command on a given node (cluster fan-out), redirections followed.
    async fn call_node(&self, node: &Arc<Node>, db: Db, args: &[&[u8]]) -> StoreResult<Value> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        match self.call_on(node, db, req.clone(), 1, slot).await {
            Ok(v) => self.follow_moved(db, v, &req, slot).await,
            Err(Retry::Lost(e) | Retry::No(e)) => Err(StoreError::Other(e)),
        }
    }

    /// A multi-key command (`cmd key…`) split per slot: each group's key positions and
    /// its reply, in group order.
    async fn split(
        &self,
        db: Db,
        cmd: &'static [u8],
        keys: &[&[u8]],
    ) -> StoreResult<Vec<(Vec<usize>, Value)>> {
        let mut out = Vec::new();
        for (node, idx) in self.by_node(keys) {
            let mut args = Vec::with_capacity(idx.len() + 1);
            args.push(cmd);
            args.extend(idx.iter().map(|&i| keys[i]));
            let v = self.call_node(&node, db, &args).await?;
            out.push((idx, v));
        }
        Ok(out)
    }

    /// `DEL`/`EXISTS`-style counts, summed over the groups of [`Upstream::split`].
    async fn count(&self, db: Db, cmd: &'static [u8], keys: &[&[u8]]) -> StoreResult<u64> {
        let mut total = 0;
        for (_, v) in self.split(db, cmd, keys).await? {
            total += store::int(v)? as u64;
        }
        Ok(total)
    }
}

/// Whether a failed attempt may be tried again (the request surely did not run, or only
/// read).
enum Retry {
    Lost(String),
    No(String),
}

/// Asks for the cluster's slot map every refresh interval, and at once after a `-MOVED`.
fn follow_cluster(shared: &Arc<Shared>) {
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let _ =
                tokio::time::timeout(shared.opts.refresh_interval, shared.refresh.notified()).await;
            let known: Vec<String> = shared
                .routes()
                .primaries
                .iter()
                .map(|n| n.addr.clone())
                .collect();
            let seeds = match &shared.target().topology {
                Topology::Cluster(seeds) => seeds.clone(),
                _ => Vec::new(),
            };
            let candidates: Vec<String> = known.into_iter().chain(seeds).collect();
            match cluster::discover(
                &candidates,
                shared.opts.user.as_deref(),
                shared.opts.password.as_deref(),
                shared.opts.tls.as_ref(),
                shared.opts.connect_timeout,
            )
            .await
            {
                Ok(r) => shared.set_cluster(&r),
                Err(e) => tracing::warn!("cluster refresh: {e}"),
            }
        }
    });
}

/// Follows `+switch-master` on every sentinel and re-asks the topology every refresh
/// interval, for the lifetime of the process.
fn follow_sentinels(shared: &Arc<Shared>, sentinels: Vec<String>, master: String) {
    for s in sentinels {
        follow_sentinel(shared, s, master.clone());
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(shared.opts.refresh_interval).await;
            let sentinels = shared.sentinels();
            match sentinel::discover(
                &sentinels,
                &master,
                shared.opts.tls.as_ref(),
                shared.opts.connect_timeout,
            )
            .await
            {
                Ok(v) => shared.set_view(&v.primary, &v.replicas),
                Err(e) => tracing::warn!("sentinel refresh: {e}"),
            }
        }
    });
}

/// Follows `+switch-master` on one sentinel while it is in the current set.
fn follow_sentinel(shared: &Arc<Shared>, s: String, master: String) {
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            while shared.sentinels().contains(&s) {
                let sh = shared.clone();
                let r = sentinel::follow(
                    &s,
                    &master,
                    shared.opts.tls.as_ref(),
                    shared.opts.connect_timeout,
                    |primary| {
                        let replicas: Vec<String> = sh
                            .routes()
                            .replicas
                            .iter()
                            .map(|n| n.addr.clone())
                            .collect();
                        sh.set_view(&primary, &replicas);
                    },
                )
                .await;
                if let Err(e) = r {
                    tracing::debug!("sentinel {s}: {e}; reconnecting");
                }
                tokio::time::sleep(shared.opts.refresh_interval).await;
            }
        });
    }
}
