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
mod options;
pub mod pinned;
pub mod policy;
mod report;
mod request;
mod retarget;
pub mod sentinel;
mod store;
pub mod stream;
mod topology;
pub mod url;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::Db;
use node::Node;
use url::Topology;

pub use options::{Options, ReadFrom};
use topology::{follow_cluster, follow_sentinel, follow_sentinels, node_at, Routes, Shared};

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
        self.route_in(&self.shared.routes(), key, write, client)
    }

    /// [`Upstream::route`] on one snapshot of the routes: a caller routing many keys at
    /// once (a bulk copy's page) reads the routes once, not once per key.
    fn route_in(&self, r: &Routes, key: Option<&[u8]>, write: bool, client: u64) -> Arc<Node> {
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
}
