//! Which nodes commands go to, and the tasks that keep that current: the routes (a primary
//! and its replicas, or a cluster's slot owners), every node ever routed to, and the
//! followers of Sentinel's `+switch-master` events and of the cluster's slot map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;

use super::conn::encode;
use super::node::Node;
use super::url::{Topology, UpstreamUrl};
use super::{cluster, sentinel, Options};

/// The nodes commands go to, replaced as a whole when the topology changes.
pub(super) struct Routes {
    pub(super) primary: Arc<Node>,
    pub(super) replicas: Vec<Arc<Node>>,
    /// Cluster: the owner of each hash slot (`None`: not served), and every primary.
    pub(super) slots: Option<Vec<Option<Arc<Node>>>>,
    pub(super) primaries: Vec<Arc<Node>>,
}

impl Routes {
    pub(super) fn single(primary: Arc<Node>, replicas: Vec<Arc<Node>>) -> Routes {
        Routes {
            primaries: vec![primary.clone()],
            primary,
            replicas,
            slots: None,
        }
    }
}

/// Topology state shared with the tasks that follow it.
pub(super) struct Shared {
    pub(super) opts: Arc<Options>,
    /// The URL the upstream follows now: `opts.url` until a reload points it elsewhere
    /// (`retarget.rs`): the sentinels asked and the cluster seeds are read from here.
    pub(super) target: RwLock<UpstreamUrl>,
    pub(super) routes: RwLock<Arc<Routes>>,
    /// Every node ever routed to, by address: a replica promoted to primary keeps its
    /// connections, health and counters.
    pub(super) nodes: Mutex<HashMap<String, Arc<Node>>>,
    /// Primary switches seen (Sentinel).
    pub(super) switches: AtomicU64,
    pub(super) last_switch: Mutex<String>,
    /// Cluster redirections followed, and a wake-up for an early slot-map refresh.
    pub(super) moved: AtomicU64,
    pub(super) asked: AtomicU64,
    pub(super) refresh: tokio::sync::Notify,
    /// The last `notify-keyspace-events` a client set through the gateway.
    pub(super) notify_events: Mutex<Option<Vec<u8>>>,
}

/// The node at `addr` from `nodes`, created (with its health checker) if new.
pub(super) fn node_at(
    nodes: &mut HashMap<String, Arc<Node>>,
    addr: &str,
    opts: &Arc<Options>,
) -> Arc<Node> {
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
    pub(super) fn node(&self, addr: &str) -> Arc<Node> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        node_at(&mut nodes, addr, &self.opts)
    }

    pub(super) fn target(&self) -> UpstreamUrl {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sentinels to ask now (none unless the URL is a Sentinel one).
    pub(super) fn sentinels(&self) -> Vec<String> {
        match self.target().topology {
            Topology::Sentinel { sentinels, .. } => sentinels,
            _ => Vec::new(),
        }
    }

    pub(super) fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies what Sentinel reports.
    pub(super) fn set_view(&self, primary: &str, replicas: &[String]) {
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
    pub(super) fn reapply_settings(&self, node: Arc<Node>) {
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
    pub(super) fn cluster_routes(&self, ranges: &[cluster::Range]) -> Routes {
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

    pub(super) fn set_cluster(&self, ranges: &[cluster::Range]) {
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
    pub(super) fn moved(&self, slot: u16, addr: &str) {
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

/// Asks for the cluster's slot map every refresh interval, and at once after a `-MOVED`.
pub(super) fn follow_cluster(shared: &Arc<Shared>) {
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
pub(super) fn follow_sentinels(shared: &Arc<Shared>, sentinels: Vec<String>, master: String) {
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
pub(super) fn follow_sentinel(shared: &Arc<Shared>, s: String, master: String) {
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
