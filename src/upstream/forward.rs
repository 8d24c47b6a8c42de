//! The client side of forwarding: one [`ClientForwarder`] per client connection.
//!
//! Commands found in one read are not sent one by one. Consecutive forwarded commands for
//! the same connection are encoded into one request ([`ClientForwarder::push`]), so a client
//! pipeline of 16 GETs costs one request, one reply hand-off and one wake-up. Before a
//! command sessiond answers itself, and at the end of the batch, the replies of everything
//! sent so far are collected in order ([`ClientForwarder::drain`]), so the client's replies
//! stay in the order of its commands.
//!
//! Every command gets exactly one reply. If a request fails (connection lost, timeout, node
//! down), each of its commands gets an error reply; a read-only request whose connection was
//! lost is sent once more first.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::cluster;
use super::conn::{encode, Conn, Replies, MAX_REPLY_BULK};
use super::node::Node;
use super::Upstream;
use crate::resp::value::FrameScanner;

/// How many times a failed read-only request is sent again.
const READ_RETRIES: u32 = 4;

/// Backpressure: the reply bytes one client may have in flight (sent upstream, not yet
/// written to the client), as estimated from its replies so far. Past it, the connection
/// collects the oldest request's replies, writes them to the client when they fill the
/// output buffer, and reads nothing more from the client meanwhile, as the embedded engine
/// does. A client that pipelines 300 `GET`s of 1 MB and never reads holds about this much
/// (plus one reply) instead of 300 MB.
const INFLIGHT_REPLY_BYTES: usize = 1 << 20;
/// The most commands in flight for one client, however small their replies.
const MAX_INFLIGHT_COMMANDS: usize = 128;
/// The most commands in one request: a long pipeline leaves as several, so its first
/// replies can be handed on while later ones are still coming.
const MAX_REQUEST_COMMANDS: usize = 64;
/// The reply size assumed before a client has had any: a new client starts with a small
/// window that opens as its replies prove small (see [`ClientForwarder::window`]).
const FIRST_REPLY_ESTIMATE: usize = 128 * 1024;

pub fn lost_message(addr: &str) -> String {
    format!("ERR upstream {addr} connection lost; the command may or may not have run")
}

pub fn timeout_message(addr: &str, t: Duration) -> String {
    format!("ERR upstream {addr} timed out after {} ms", t.as_millis())
}

/// The size a client's request buffer starts at: most requests fit, and it is within the
/// allocator's per-thread cache.
const SCRATCH_START: usize = 1024;
/// A request buffer grown to about this by a large request is not kept: an idle client
/// holds at most this much for its next request (thousands of idle clients, each once sent
/// one large value, must not hold a large buffer each).
const SCRATCH_KEEP: usize = 8 * 1024;

/// Commands encoded for one target, not yet sent (their bytes: `ClientForwarder::scratch`).
struct Open {
    node: Arc<Node>,
    pool: usize,
    count: usize,
    read_only: bool,
    /// Where each command ends in the request, kept in a cluster only: a redirected command
    /// is sent again alone.
    ends: Vec<usize>,
}

/// A request sent (or failed before it could be).
struct Sent {
    node: Arc<Node>,
    pool: usize,
    count: usize,
    deadline: Instant,
    outcome: Result<oneshot::Receiver<Replies>, String>,
    /// The connection it went out on.
    conn: Option<Arc<Conn>>,
    /// Kept for a retry when the request only reads.
    retry: Option<Bytes>,
    /// The request and its command boundaries, for cluster redirections.
    bytes: Bytes,
    ends: Vec<usize>,
}

pub struct ClientForwarder {
    client: u64,
    /// Connections this client used, by (node id, pool): no lock on the hot path.
    conns: Vec<(u64, usize, Arc<Conn>)>,
    open: Option<Open>,
    /// The open request's bytes. Each request is split off it when sent and the buffer is
    /// reused once the request's replies are in (and its bytes dropped), so forwarding a
    /// command allocates no buffer of its own.
    scratch: BytesMut,
    sent: VecDeque<Sent>,
    /// Commands pushed whose replies have not been collected yet.
    outstanding: usize,
    /// Moving average of this client's reply size in bytes.
    reply_estimate: usize,
    /// The timer of the request being waited for, one per client and moved to each new
    /// deadline. A deadline later than the one set only updates the timer's entry; a timer
    /// per request would be put into and taken out of the runtime's timer wheel every time.
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientForwarder {
    pub fn new(client: u64) -> Self {
        ClientForwarder {
            client,
            conns: Vec::new(),
            open: None,
            scratch: BytesMut::new(),
            sent: VecDeque::new(),
            outstanding: 0,
            reply_estimate: FIRST_REPLY_ESTIMATE,
            timer: None,
        }
    }

    /// Whether anything is waiting to be sent or answered.
    pub fn is_idle(&self) -> bool {
        self.open.is_none() && self.sent.is_empty()
    }

    /// How many commands this client may have in flight: [`INFLIGHT_REPLY_BYTES`] worth of
    /// replies of the size seen so far, at least one, at most [`MAX_INFLIGHT_COMMANDS`].
    fn window(&self) -> usize {
        (INFLIGHT_REPLY_BYTES / self.reply_estimate.max(1)).clamp(1, MAX_INFLIGHT_COMMANDS)
    }

    /// Whether the client has as much in flight as it may: the connection should collect
    /// the oldest replies ([`Self::drain_oldest`]) before reading or pushing more.
    pub fn is_full(&self) -> bool {
        self.outstanding >= self.window()
    }

    fn note_replies(&mut self, bytes: usize, count: usize) {
        if let Some(avg) = bytes.checked_div(count) {
            self.reply_estimate = (self.reply_estimate + avg).div_ceil(2).max(16);
        }
        self.outstanding = self.outstanding.saturating_sub(count);
    }

    /// Adds a command to the current request, sending the previous one first if this
    /// command goes elsewhere. `key` is the routing key (first key) if the command has one.
    pub async fn push(
        &mut self,
        up: &Upstream,
        db: usize,
        resp3: bool,
        read_only: bool,
        key: Option<&[u8]>,
        args: &[&[u8]],
    ) -> Result<(), String> {
        self.open_for(up, db, resp3, read_only, key).await?;
        let mut full = false;
        if let Some(o) = self.open.as_mut() {
            encode(&mut self.scratch, args);
            o.count += 1;
            o.read_only &= read_only;
            if up.is_cluster() {
                o.ends.push(self.scratch.len());
            }
            full = o.count >= MAX_REQUEST_COMMANDS;
        }
        self.outstanding += 1;
        if full {
            self.send(up).await;
        }
        Ok(())
    }

    /// Adds a whole transaction, `MULTI` … `EXEC` already encoded (`ends`: where each
    /// command ends), to the primary's request. A request's bytes reach the upstream
    /// contiguously and Redis runs one connection's commands in order, so no other client's
    /// command can fall between this `MULTI` and its `EXEC`: a transaction the client
    /// pipelined whole needs no connection of its own. Never retried (it writes), and only
    /// for a standalone or Sentinel upstream (a cluster redirection would re-send a single
    /// queued command outside its transaction).
    pub async fn push_transaction(
        &mut self,
        up: &Upstream,
        db: usize,
        resp3: bool,
        bytes: &[u8],
        ends: &[usize],
    ) -> Result<(), String> {
        self.open_for(up, db, resp3, false, None).await?;
        if let Some(o) = self.open.as_mut() {
            let base = self.scratch.len();
            self.scratch.extend_from_slice(bytes);
            o.count += ends.len();
            o.read_only = false;
            if up.is_cluster() {
                o.ends.extend(ends.iter().map(|e| base + e));
            }
        }
        self.outstanding += ends.len();
        // Sent at once: a transaction is the end of what the client pipelined with it.
        self.send(up).await;
        Ok(())
    }

    /// Makes the open request the one for the node `key` routes to (sending the previous
    /// one if it went elsewhere).
    async fn open_for(
        &mut self,
        up: &Upstream,
        db: usize,
        resp3: bool,
        read_only: bool,
        key: Option<&[u8]>,
    ) -> Result<(), String> {
        let mut node = up.route(key, !read_only, self.client);
        if !read_only && !node.is_healthy() && !up.opts.failover_wait.is_zero() {
            // A write waits (bounded) for a healthy primary: Sentinel may be promoting one.
            let deadline = Instant::now() + up.opts.failover_wait;
            while !node.is_healthy() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                node = up.route(key, true, self.client);
            }
        }
        let pool = node
            .pool_key(db, resp3)
            .ok_or_else(|| "ERR DB index is out of range".to_string())?;
        let same = self
            .open
            .as_ref()
            .is_some_and(|o| o.node.id == node.id && o.pool == pool);
        if !same {
            self.send(up).await;
            if self.scratch.capacity() == 0 {
                self.scratch.reserve(SCRATCH_START);
            }
            self.open = Some(Open {
                node,
                pool,
                count: 0,
                read_only: true,
                ends: Vec::new(),
            });
        }
        Ok(())
    }

    async fn conn(&mut self, node: &Arc<Node>, pool: usize) -> Result<Arc<Conn>, String> {
        if let Some(i) = self
            .conns
            .iter()
            .position(|(n, p, _)| *n == node.id && *p == pool)
        {
            if self.conns[i].2.is_alive() && node.is_healthy() {
                return Ok(self.conns[i].2.clone());
            }
            self.conns.swap_remove(i);
        }
        // Connecting (TCP, TLS, handshake) is rare and its future is large: boxed, so it does
        // not enlarge every connection's task (see serve_connection), and only when the
        // pool's connection is not up.
        let c = match node.live_conn(pool, self.client) {
            Some(c) => c,
            None => Box::pin(node.conn(pool, self.client)).await?,
        };
        self.conns.push((node.id, pool, c.clone()));
        Ok(c)
    }

    /// Sends the open request, if any.
    async fn send(&mut self, up: &Upstream) {
        let Some(o) = self.open.take() else { return };
        let bytes = self.scratch.split().freeze();
        // The buffer behind a large request is about twice its size (it grew by doubling):
        // not kept for the next one.
        if bytes.len() > SCRATCH_KEEP / 2 {
            self.scratch = BytesMut::new();
        }
        let (outcome, conn) = match self.conn(&o.node, o.pool).await {
            Ok(c) => (Ok(c.send(bytes.clone(), o.count)), Some(c)),
            Err(e) => (Err(e), None),
        };
        o.node
            .stats
            .requests
            .fetch_add(o.count as u64, Ordering::Relaxed);
        self.sent.push_back(Sent {
            node: o.node,
            pool: o.pool,
            count: o.count,
            deadline: Instant::now() + up.opts.timeout(),
            outcome,
            conn,
            retry: o.read_only.then(|| bytes.clone()),
            bytes,
            ends: o.ends,
        });
    }

    /// Sends what is open and appends every reply, in order, to `out`.
    pub async fn drain(&mut self, up: &Upstream, out: &mut BytesMut) {
        self.send(up).await;
        while !self.sent.is_empty() {
            self.collect_oldest(up, out).await;
        }
    }

    /// Appends the replies of the oldest request to `out` (sending the open one first if
    /// nothing else is in flight): one step of backpressure.
    pub async fn drain_oldest(&mut self, up: &Upstream, out: &mut BytesMut) {
        if self.sent.is_empty() {
            self.send(up).await;
        }
        self.collect_oldest(up, out).await;
    }

    async fn collect_oldest(&mut self, up: &Upstream, out: &mut BytesMut) {
        let before = out.len();
        let count = self.sent.front().map_or(0, |s| s.count);
        self.collect_one(up, out).await;
        self.note_replies(out.len() - before, count);
    }

    async fn collect_one(&mut self, up: &Upstream, out: &mut BytesMut) {
        if let Some(mut s) = self.sent.pop_front() {
            let (bytes, ends, pool, deadline) = (
                s.bytes.clone(),
                std::mem::take(&mut s.ends),
                s.pool,
                s.deadline,
            );
            match self.wait(up, s).await {
                Ok(replies) if up.is_cluster() && cluster::may_redirect(&replies) => {
                    // Boxed: rare (cluster redirections), and a large future.
                    Box::pin(
                        self.follow_redirects(up, &bytes, &ends, pool, deadline, &replies, out),
                    )
                    .await
                }
                Ok(replies) => out.extend_from_slice(&replies),
                Err((msg, count)) => {
                    for _ in 0..count {
                        out.extend_from_slice(b"-");
                        out.extend_from_slice(msg.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
    }

    /// Copies `replies` to `out`, replacing each `-MOVED`/`-ASK` with the reply of the
    /// command sent where the cluster said.
    #[allow(clippy::too_many_arguments)]
    async fn follow_redirects(
        &mut self,
        up: &Upstream,
        bytes: &Bytes,
        ends: &[usize],
        pool: usize,
        deadline: Instant,
        replies: &[u8],
        out: &mut BytesMut,
    ) {
        let mut scanner = FrameScanner::default();
        let mut at = 0;
        let mut i = 0;
        while at < replies.len() {
            let n = match scanner.next_frame(&replies[at..], MAX_REPLY_BULK) {
                Ok(Some(n)) => n,
                _ => {
                    out.extend_from_slice(&replies[at..]);
                    return;
                }
            };
            let frame = &replies[at..at + n];
            match (cluster::redirect(frame), ends.get(i)) {
                (Some(r), Some(&end)) => {
                    let start = if i == 0 { 0 } else { ends[i - 1] };
                    let cmd = bytes.slice(start..end);
                    match self.redirected(up, r, cmd, pool, deadline).await {
                        Ok(reply) => out.extend_from_slice(&reply),
                        Err(msg) => {
                            out.extend_from_slice(b"-");
                            out.extend_from_slice(msg.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                }
                _ => out.extend_from_slice(frame),
            }
            at += n;
            i += 1;
        }
    }

    /// Sends one command where a redirection points, following up to five more.
    async fn redirected(
        &mut self,
        up: &Upstream,
        mut r: cluster::Redirect,
        cmd: Bytes,
        pool: usize,
        deadline: Instant,
    ) -> Result<Bytes, String> {
        for _ in 0..5 {
            let (node, req, count) = match &r {
                cluster::Redirect::Moved(slot, addr) => {
                    up.moved(*slot, addr);
                    (up.node(addr), cmd.clone(), 1)
                }
                cluster::Redirect::Ask(_, addr) => {
                    // ASKING applies to the next command on the same connection only.
                    up.asked();
                    let mut b = BytesMut::with_capacity(cmd.len() + 16);
                    encode(&mut b, &[b"ASKING"]);
                    b.extend_from_slice(&cmd);
                    (up.node(addr), b.freeze(), 2)
                }
            };
            let conn = self.conn(&node, pool).await?;
            let replies = match tokio::time::timeout_at(deadline, conn.send(req, count)).await {
                Ok(Ok(b)) => b,
                Ok(Err(_)) => return Err(lost_message(&node.addr)),
                Err(_) => return Err(timeout_message(&node.addr, up.opts.timeout())),
            };
            let reply = if count == 2 {
                let mut sc = FrameScanner::default();
                match sc.next_frame(&replies, MAX_REPLY_BULK) {
                    Ok(Some(n)) => replies.slice(n..),
                    _ => return Err("ERR malformed reply to ASKING".into()),
                }
            } else {
                replies
            };
            match cluster::redirect(&reply) {
                Some(next) => r = next,
                None => return Ok(reply),
            }
        }
        Err("ERR too many cluster redirections".into())
    }

    /// `rx`, or `Err` once `deadline` passes first: `tokio::time::timeout_at` on the
    /// client's one timer.
    async fn until(
        &mut self,
        deadline: Instant,
        mut rx: oneshot::Receiver<Replies>,
    ) -> Result<Result<Replies, oneshot::error::RecvError>, ()> {
        let timer = match self.timer.as_mut() {
            Some(t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        tokio::select! {
            biased;
            r = &mut rx => Ok(r),
            _ = timer.as_mut() => Err(()),
        }
    }

    async fn wait(&mut self, up: &Upstream, mut s: Sent) -> Result<Replies, (String, usize)> {
        // A read may be sent again: it changes nothing. Up to READ_RETRIES more times, each
        // time re-routed and on a fresh connection, all within the request's deadline. More
        // than one, because a server being killed can still accept a connection it then
        // resets; the refused connect after that ejects it and routes reads elsewhere.
        let mut attempts = 0;
        loop {
            let failure = match s.outcome {
                Err(e) => e,
                Ok(rx) => match self.until(s.deadline, rx).await {
                    Ok(Ok(replies)) => return Ok(replies),
                    Err(()) => {
                        s.node
                            .stats
                            .timeouts
                            .fetch_add(s.count as u64, Ordering::Relaxed);
                        return Err((timeout_message(&s.node.addr, up.opts.timeout()), s.count));
                    }
                    Ok(Err(_)) => {
                        // Make sure nobody sends on it again before its reader notices.
                        if let Some(c) = s.conn.take() {
                            c.kill();
                        }
                        lost_message(&s.node.addr)
                    }
                },
            };
            s.node
                .stats
                .errors
                .fetch_add(s.count as u64, Ordering::Relaxed);
            attempts += 1;
            let Some(bytes) = s
                .retry
                .clone()
                .filter(|_| attempts <= READ_RETRIES && Instant::now() < s.deadline)
            else {
                return Err((failure, s.count));
            };
            // Re-routed: with read-from-replica, a failed primary sends reads to a replica.
            let node = up.route(None, false, self.client);
            (s.outcome, s.conn) = match self.conn(&node, s.pool).await {
                Ok(c) => (Ok(c.send(bytes, s.count)), Some(c)),
                Err(e) => (Err(e), None),
            };
            s.node = node;
        }
    }
}
