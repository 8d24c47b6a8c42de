//! Pinned connections: an upstream connection held by one client while its state lives on
//! the server — from `WATCH` or `MULTI` to `EXEC`/`DISCARD`/`UNWATCH`, and for the duration
//! of a blocking command.
//!
//! The multiplexed connections ([`super::conn`]) interleave many clients' commands, which is
//! what makes the gateway cheap, and exactly what a transaction cannot survive: a `MULTI`
//! on a shared connection would queue other clients' commands into it, and a `BLPOP` would
//! hold up every reply behind it. So such a client borrows a connection of its own.
//!
//! **Bounded.** One semaphore caps pinned connections over all nodes
//! (`upstream-pinned-max`, default 1000); a client past it gets an error at once rather
//! than a wait that could stall it behind other clients' blocking commands.
//! **Reused.** A connection whose client left it clean (after `EXEC`, `DISCARD`,
//! `UNWATCH`, or a blocking command's reply) goes back to an idle list per node, database
//! and protocol (at most [`IDLE_PER_POOL`] kept), so a transaction does not pay a connect.
//! A connection in any other state (client gone mid-transaction or mid-block, a timeout,
//! an error) is closed: Redis then discards the transaction and forgets the block.
//!
//! Commands are pipelined like the multiplexed path: [`Pinned::push`] encodes into a
//! pending request, [`Pinned::drain`] sends it and reads one reply per command. Each pushed
//! command carries what to do with its reply ([`Fix`]): the gateway hides the replies of
//! commands it added itself and substitutes Redis's `EXECABORT` where it discarded a
//! transaction it had refused to queue into.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::stream::UpStream;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{connect, encode, Handshake, MAX_REPLY_BULK};
use super::node::Node;
use super::Options;
use crate::resp::value::FrameScanner;

/// Idle pinned connections kept per node, database and protocol.
pub const IDLE_PER_POOL: usize = 16;

/// What the client gets for one pushed command's reply.
#[derive(Debug, Clone)]
pub enum Fix {
    /// The upstream's reply, as it is.
    Keep,
    /// Nothing: the gateway sent the command for its own reasons.
    Drop,
    /// This reply instead (a complete RESP frame).
    Replace(Bytes),
    /// A command queued in a cluster transaction: a `-MOVED` becomes `+QUEUED`, because
    /// the gateway will replay the transaction on the slot's new owner at `EXEC`.
    QueuedIfMoved,
}

/// The shared limit and the idle lists.
pub struct PinnedPool {
    permits: Arc<Semaphore>,
    max: usize,
    idle: Mutex<HashMap<(u64, usize), Vec<UpStream>>>,
    /// Pinned connections opened, and reused from the idle lists (INFO).
    pub opened: AtomicU64,
    pub reused: AtomicU64,
    pub refused: AtomicU64,
}

impl PinnedPool {
    pub fn new(max: usize) -> PinnedPool {
        PinnedPool {
            permits: Arc::new(Semaphore::new(max)),
            max,
            idle: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Pinned connections held by clients now.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A connection of the client's own to `node`, in database `db`.
    pub async fn take(
        self: &Arc<Self>,
        node: &Arc<Node>,
        opts: &Options,
        db: usize,
        resp3: bool,
    ) -> Result<Pinned, String> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "ERR sessiond gateway: all {} pinned upstream connections are in use \
                 (transactions, blocking commands and subscribers each hold one; \
                 see upstream-pinned-max)",
                self.max
            ));
        };
        if !node.is_healthy() {
            return Err(format!(
                "ERR upstream {} is down ({})",
                node.addr,
                node.last_error()
            ));
        }
        let pool = node
            .pool_key(db, resp3)
            .ok_or_else(|| "ERR DB index is out of range".to_string())?;
        let reused = loop {
            let candidate = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&(node.id, pool))
                .and_then(Vec::pop);
            match candidate {
                // A connection the server closed meanwhile reads as end-of-file (or an
                // error) at once; a live idle one has nothing to read.
                Some(s) if is_open(&s) => break Some(s),
                Some(_) => continue,
                None => break None,
            }
        };
        let stream = match reused {
            Some(s) => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                s
            }
            None => {
                let hs = Handshake {
                    user: opts.user.clone(),
                    password: opts.password.clone(),
                    db,
                    resp3,
                    tls: opts.tls.clone(),
                };
                node.stats.connects.fetch_add(1, Ordering::Relaxed);
                self.opened.fetch_add(1, Ordering::Relaxed);
                connect(&node.addr, &hs, opts.connect_timeout)
                    .await
                    .map_err(|e| format!("ERR upstream unavailable: {e}"))?
            }
        };
        Ok(Pinned {
            node: node.clone(),
            pool,
            stream,
            pending: BytesMut::new(),
            fixes: Vec::new(),
            buf: BytesMut::with_capacity(4096),
            scanner: FrameScanner::default(),
            found: 0,
            scanned: 0,
            broken: false,
            moved: Vec::new(),
            _permit: permit,
        })
    }

    /// Takes a connection back: kept for reuse if its client left it clean.
    pub fn give_back(&self, p: Pinned) {
        if p.broken || !p.pending.is_empty() || !p.fixes.is_empty() || !p.buf.is_empty() {
            return; // dropped: closed
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry((p.node.id, p.pool)).or_default();
        if list.len() < IDLE_PER_POOL {
            list.push(p.stream);
        }
    }
}

fn is_open(s: &UpStream) -> bool {
    s.is_idle_open()
}

/// One client's own upstream connection.
pub struct Pinned {
    pub node: Arc<Node>,
    pool: usize,
    stream: UpStream,
    /// Commands encoded and not yet sent, and what to do with each one's reply.
    pending: BytesMut,
    fixes: Vec<Fix>,
    /// Replies read and not yet handed out; `found` of them complete, `scanned` bytes long.
    buf: BytesMut,
    scanner: FrameScanner,
    found: usize,
    scanned: usize,
    /// Failed or timed out: never reused.
    broken: bool,
    /// `-MOVED` replies seen (cluster): the gateway corrects its slot map with them, so a
    /// client that retries its aborted transaction reaches the slot's new owner.
    pub moved: Vec<(u16, String)>,
    _permit: OwnedSemaphorePermit,
}

impl Pinned {
    /// Queues `count` commands already encoded, their replies kept.
    pub fn push_encoded(&mut self, bytes: &[u8], count: usize) {
        self.pending.extend_from_slice(bytes);
        self.fixes.extend(std::iter::repeat_n(Fix::Keep, count));
    }

    /// Queues a command.
    pub fn push(&mut self, args: &[&[u8]], fix: Fix) {
        encode(&mut self.pending, args);
        self.fixes.push(fix);
    }

    /// Sends a command at once, expecting no particular number of replies (subscriber
    /// mode: replies and messages are read with [`Pinned::next_frame`]).
    pub async fn send_unsolicited(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        self.node.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.broken = true;
        self.stream
            .write_all(&req)
            .await
            .map_err(|_| super::forward::lost_message(&self.node.addr))?;
        self.broken = false;
        Ok(())
    }

    /// The next complete frame the server sends (subscriber mode). Cancel-safe.
    pub async fn next_frame(&mut self) -> Result<Bytes, String> {
        loop {
            match self
                .scanner
                .next_frame(&self.buf[self.scanned..], MAX_REPLY_BULK)
            {
                Ok(Some(n)) => {
                    let frame = self.buf.split_to(self.scanned + n).freeze();
                    self.scanned = 0;
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(format!("ERR bad reply from upstream: {}", e.0));
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.broken = true;
                    return Err(super::forward::lost_message(&self.node.addr));
                }
                Ok(_) => {}
            }
        }
    }

    /// Marks the connection as not reusable (its server-side state is unknown).
    pub fn spoil(&mut self) {
        self.broken = true;
    }

    /// Commands pushed whose replies have not been handed out.
    pub fn outstanding(&self) -> usize {
        self.fixes.len()
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends what was pushed and appends the replies (fixed) to `out`, waiting at most
    /// `timeout` (`None`: as long as it takes, for blocking commands). Cancel-safe: a
    /// cancelled drain resumes where it stopped. On failure every outstanding command gets
    /// the error and the connection is marked broken.
    pub async fn drain(&mut self, out: &mut BytesMut, timeout: Option<Duration>) {
        let addr = self.node.addr.clone();
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, self.exchange(out)).await {
                Ok(r) => r,
                Err(_) => Err(super::forward::timeout_message(&addr, t)),
            },
            None => self.exchange(out).await,
        };
        if let Err(msg) = result {
            self.broken = true;
            self.node.stats.errors.fetch_add(1, Ordering::Relaxed);
            for fix in self.fixes.drain(..) {
                if !matches!(fix, Fix::Drop) {
                    out.extend_from_slice(b"-");
                    out.extend_from_slice(msg.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            self.pending.clear();
        }
    }

    async fn exchange(&mut self, out: &mut BytesMut) -> Result<(), String> {
        let node = self.node.clone();
        let lost = || super::forward::lost_message(&node.addr);
        if !self.pending.is_empty() {
            let req = std::mem::take(&mut self.pending);
            self.node
                .stats
                .requests
                .fetch_add(self.fixes.len() as u64, Ordering::Relaxed);
            // Not cancel-safe by itself, but a cancelled write is only ever followed by
            // dropping the connection (the client went away).
            self.broken = true;
            self.stream.write_all(&req).await.map_err(|_| lost())?;
            self.broken = false;
        }
        while !self.fixes.is_empty() {
            // Hand out complete replies in order.
            while self.found < self.fixes.len() {
                match self
                    .scanner
                    .next_frame(&self.buf[self.scanned..], MAX_REPLY_BULK)
                {
                    Ok(Some(n)) => {
                        self.scanned += n;
                        self.found += 1;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(format!("ERR bad reply from upstream: {}", e.0)),
                }
            }
            if self.found > 0 {
                let replies = self.buf.split_to(self.scanned).freeze();
                if super::cluster::may_redirect(&replies) {
                    self.note_moved(&replies);
                }
                let fixes: Vec<Fix> = self.fixes.drain(..self.found).collect();
                apply_fixes(&replies, &fixes, out);
                self.scanned = 0;
                self.found = 0;
                continue;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(lost()),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

impl Pinned {
    fn note_moved(&mut self, replies: &[u8]) {
        let mut scanner = FrameScanner::default();
        let mut at = 0;
        while let Ok(Some(n)) = scanner.next_frame(&replies[at..], MAX_REPLY_BULK) {
            if let Some(super::cluster::Redirect::Moved(slot, addr)) =
                super::cluster::redirect(&replies[at..at + n])
            {
                self.moved.push((slot, addr));
            }
            at += n;
        }
    }
}

/// Copies `replies` (one frame per fix) to `out`, applying each fix.
fn apply_fixes(replies: &Bytes, fixes: &[Fix], out: &mut BytesMut) {
    if fixes.iter().all(|f| matches!(f, Fix::Keep)) {
        out.extend_from_slice(replies);
        return;
    }
    let mut scanner = FrameScanner::default();
    let mut at = 0;
    for fix in fixes {
        let n = match scanner.next_frame(&replies[at..], MAX_REPLY_BULK) {
            Ok(Some(n)) => n,
            _ => break,
        };
        match fix {
            Fix::Keep => out.extend_from_slice(&replies[at..at + n]),
            Fix::Drop => {}
            Fix::Replace(b) => out.extend_from_slice(b),
            Fix::QueuedIfMoved if replies[at..at + n].starts_with(b"-MOVED ") => {
                out.extend_from_slice(b"+QUEUED\r\n")
            }
            Fix::QueuedIfMoved => out.extend_from_slice(&replies[at..at + n]),
        }
        at += n;
    }
}
