//! One upstream server: its pooled connections, its health, its counters.
//!
//! Connections are pooled per (database, protocol), because an upstream connection's
//! `SELECT` and `HELLO` state belongs to the connection: clients in db 3 share connections
//! that selected db 3, RESP3 clients share connections that said `HELLO 3`. Each pool has a
//! small fixed number of connections (`upstream-connections`), opened on first use. A client
//! always uses the same connection of a pool (its id modulo the pool size), so its requests
//! reach the server in the order it sent them: read-your-writes holds for every client.
//!
//! Health: a checker task PINGs the node every `health-interval`. After `failure-limit`
//! failures in a row the node is ejected: its connections are closed (requests in flight
//! fail at once instead of waiting out their timeout) and new requests get an error
//! immediately. The first PING that succeeds again brings it back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;

use super::conn::{encode, Conn, Handshake};
use super::Options;
use crate::resp::value::{decode, Value};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
pub struct NodeStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub ejections: AtomicU64,
    pub connects: AtomicU64,
    /// Request round trips and error replies on the multiplexed connections (`/metrics`).
    pub wire: Arc<super::conn::WireStats>,
}

pub struct Node {
    /// Unique for the process's lifetime (clients cache connections by it).
    pub id: u64,
    pub addr: String,
    opts: Arc<Options>,
    /// `[db * 2 + resp3][slot]`.
    pools: Vec<Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>>,
    healthy: AtomicBool,
    /// Set when the node is retired from the topology (its checker stops).
    retired: AtomicBool,
    last_error: Mutex<String>,
    pub stats: NodeStats,
}

impl Node {
    pub fn new(addr: String, opts: Arc<Options>) -> Arc<Node> {
        let pools = (0..opts.databases * 2)
            .map(|_| {
                (0..opts.connections)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect()
            })
            .collect();
        Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            addr,
            opts,
            pools,
            healthy: AtomicBool::new(true),
            retired: AtomicBool::new(false),
            last_error: Mutex::new(String::new()),
            stats: NodeStats::default(),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
    }

    /// Index of a pool.
    pub fn pool_key(&self, db: usize, resp3: bool) -> Option<usize> {
        (db < self.opts.databases).then_some(db * 2 + resp3 as usize)
    }

    /// The live connection `client` uses in pool `key`, if it has one and nobody is opening
    /// it right now: the common case, answered without an await. Callers keep the
    /// connecting path ([`Self::conn`]) boxed, out of their own futures, and allocate that
    /// box only when they must connect.
    pub fn live_conn(&self, key: usize, client: u64) -> Option<Arc<Conn>> {
        if !self.is_healthy() {
            return None;
        }
        let pool = &self.pools[key];
        let slot = pool[(client % pool.len() as u64) as usize]
            .try_lock()
            .ok()?;
        slot.as_ref().filter(|c| c.is_alive()).cloned()
    }

    /// The connection `client` uses in pool `key`, opened if needed.
    pub async fn conn(&self, key: usize, client: u64) -> Result<Arc<Conn>, String> {
        if !self.is_healthy() {
            return Err(format!(
                "ERR upstream {} is down ({})",
                self.addr,
                self.last_error()
            ));
        }
        let pool = &self.pools[key];
        let mut slot = pool[(client % pool.len() as u64) as usize].lock().await;
        if let Some(c) = slot.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let hs = Handshake {
            user: self.opts.user.clone(),
            password: self.opts.password.clone(),
            db: key / 2,
            resp3: key % 2 == 1,
            tls: self.opts.tls.clone(),
        };
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        match Conn::open(
            &self.addr,
            &hs,
            self.opts.connect_timeout,
            self.stats.wire.clone(),
        )
        .await
        {
            Ok(c) => {
                let c = Arc::new(c);
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                // Refused or unreachable: stop sending it requests until a health check
                // succeeds, rather than have every client find out by itself.
                self.set_error(&e);
                drop(slot);
                self.eject(&e);
                Err(format!("ERR upstream unavailable: {e}"))
            }
        }
    }

    /// Marks the node down and closes its connections (once; the health checker restores it).
    fn eject(&self, why: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            self.stats.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("upstream {} ejected: {why}", self.addr);
            self.opts.note(format!("{} ejected: {why}", self.addr));
            self.close_all();
        }
    }

    /// Closes every pooled connection: requests in flight on them fail now.
    fn close_all(&self) {
        for pool in &self.pools {
            for slot in pool {
                if let Ok(mut s) = slot.try_lock() {
                    if let Some(c) = s.take() {
                        c.kill();
                    }
                }
            }
        }
    }

    /// Connections open, requests in flight, and requests per `write` on the open
    /// connections, for INFO.
    pub fn usage(&self) -> (usize, u64, f64) {
        let mut open = 0;
        let mut in_flight = 0;
        let (mut writes, mut requests) = (0, 0);
        for pool in &self.pools {
            for slot in pool {
                if let Ok(s) = slot.try_lock() {
                    if let Some(c) = s.as_ref().filter(|c| c.is_alive()) {
                        open += 1;
                        in_flight += c.in_flight.load(Ordering::Relaxed);
                        writes += c.writes.load(Ordering::Relaxed);
                        requests += c.requests.load(Ordering::Relaxed);
                    }
                }
            }
        }
        (open, in_flight, requests as f64 / writes.max(1) as f64)
    }

    /// Stops the health checker and closes the connections (node left the topology).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.close_all();
    }

    /// Runs until the node is retired: PING every interval, eject and restore.
    pub async fn check_health(self: Arc<Self>) {
        let mut conn: Option<Conn> = None;
        let mut failures = 0u32;
        let mut tick = tokio::time::interval(self.opts.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.retired.load(Ordering::Acquire) {
            tick.tick().await;
            match self.ping(&mut conn).await {
                Ok(()) => {
                    failures = 0;
                    if !self.healthy.swap(true, Ordering::AcqRel) {
                        tracing::warn!("upstream {} is back", self.addr);
                        self.opts.note(format!("{} is back", self.addr));
                        self.set_error("");
                    }
                }
                Err(e) => {
                    conn = None;
                    self.set_error(&e);
                    failures += 1;
                    if failures >= self.opts.failure_limit
                        && self.healthy.swap(false, Ordering::AcqRel)
                    {
                        self.stats.ejections.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "upstream {} ejected after {failures} failed health checks: {e}",
                            self.addr
                        );
                        self.opts.note(format!(
                            "{} ejected after {failures} failed health checks: {e}",
                            self.addr
                        ));
                        self.close_all();
                    }
                }
            }
        }
    }

    async fn ping(&self, conn: &mut Option<Conn>) -> Result<(), String> {
        if conn.as_ref().is_none_or(|c| !c.is_alive()) {
            let hs = Handshake {
                user: self.opts.user.clone(),
                password: self.opts.password.clone(),
                db: 0,
                resp3: false,
                tls: self.opts.tls.clone(),
            };
            *conn = Some(
                Conn::open(
                    &self.addr,
                    &hs,
                    self.opts.connect_timeout,
                    self.stats.wire.clone(),
                )
                .await?,
            );
        }
        let Some(c) = conn.as_ref() else {
            return Err("no connection".into());
        };
        let mut req = BytesMut::new();
        encode(&mut req, &[b"PING"]);
        let rx = c.send(req.freeze(), 1);
        match tokio::time::timeout(self.opts.timeout(), rx).await {
            Err(_) => Err(format!(
                "PING timed out after {} ms",
                self.opts.timeout().as_millis()
            )),
            Ok(Err(_)) => Err("connection lost".into()),
            Ok(Ok(bytes)) => match decode(&bytes, 1024) {
                Ok(Some((Value::Simple(s), _))) if s == "PONG" => Ok(()),
                Ok(Some((Value::Error(e), _))) => Err(e),
                _ => Err("unexpected reply to PING".into()),
            },
        }
    }
}

/// Default pause between health checks.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(1000);
