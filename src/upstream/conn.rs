//! One multiplexed connection to an upstream Redis: many clients' requests, one socket.
//!
//! A request is a run of encoded commands and the number of replies it expects. Two tasks
//! serve the socket:
//! * the **writer** takes every request queued since its last write (`recv_many`), records
//!   each one's reply slot in the in-flight queue, and sends them all with one `write`: the
//!   batching across clients that makes a gateway cheaper than one upstream connection per
//!   client;
//! * the **reader** scans replies off the socket ([`FrameScanner`]) and hands each request
//!   its replies, in order, as one zero-copy slice of the read buffer.
//!
//! Redis answers in order, so replies need no tags: the in-flight queue is FIFO. A request
//! whose client gave up (timeout) keeps its place and its replies are discarded when they
//! come. When either side fails, the connection is marked dead and both tasks end; every
//! request still queued or in flight then sees its reply channel closed, which the client
//! reports as a lost connection. Nothing waits forever on a dead socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::stream::{Connector, UpStream};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Histogram;
use crate::resp::value::{decode, FrameScanner, Value};

/// The largest reply bulk accepted from an upstream (Redis's own `proto-max-bulk-len`).
pub const MAX_REPLY_BULK: u64 = 512 * 1024 * 1024;

/// Replies to one request: `count` complete RESP replies, back to back.
pub type Replies = Bytes;

/// Why a request got no replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// The connection failed before the replies came.
    Lost,
}

pub struct Request {
    pub bytes: Bytes,
    pub count: usize,
    pub reply: oneshot::Sender<Replies>,
}

/// How a new connection introduces itself.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: usize,
    pub resp3: bool,
    /// TLS to the node (`rediss…://`).
    pub tls: Option<Connector>,
}

/// Encodes one command as a RESP array of bulk strings.
pub fn encode(out: &mut BytesMut, args: &[&[u8]]) {
    // Sized first: one allocation for a new buffer, not a doubling per argument.
    let digits = |n: usize| n.checked_ilog10().unwrap_or(0) as usize + 1;
    let len: usize = args.iter().map(|a| 5 + digits(a.len()) + a.len()).sum();
    out.reserve(3 + digits(args.len()) + len);
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"*");
    out.extend_from_slice(n.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.extend_from_slice(b"$");
        out.extend_from_slice(n.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A live (or dead) upstream connection.
pub struct Conn {
    queue: mpsc::UnboundedSender<Request>,
    alive: Arc<AtomicBool>,
    /// Requests sent and not yet answered (INFO).
    pub in_flight: Arc<AtomicU64>,
    /// `write` calls and the requests they carried: their ratio is the batching achieved.
    pub writes: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
}

impl Conn {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.queue.is_closed()
    }

    /// Marks the connection dead: its tasks end and every queued request fails.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::Release);
        // The writer checks `alive` after each wake; a no-op request wakes it now.
        let (tx, _) = oneshot::channel();
        let _ = self.queue.send(Request {
            bytes: Bytes::new(),
            count: 0,
            reply: tx,
        });
    }

    /// Queues a request; the receiver gets its replies, or is closed if the connection fails.
    pub fn send(&self, bytes: Bytes, count: usize) -> oneshot::Receiver<Replies> {
        let (tx, rx) = oneshot::channel();
        if self.is_alive() {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let _ = self.queue.send(Request {
                bytes,
                count,
                reply: tx,
            });
        }
        rx
    }

    /// Connects, authenticates and selects the database, each step within `timeout`.
    /// `wire` receives the time from writing each request to reading its last reply, and
    /// counts the error replies.
    pub async fn open(
        addr: &str,
        hs: &Handshake,
        timeout: Duration,
        wire: Arc<WireStats>,
    ) -> Result<Conn, String> {
        Ok(Conn::start(connect(addr, hs, timeout).await?, wire))
    }
}

/// Opens a socket to `addr` and introduces it (`HELLO`/`AUTH`, `SELECT`), each step within
/// `timeout`: for a multiplexed [`Conn`] or a pinned connection alike.
pub async fn connect(addr: &str, hs: &Handshake, timeout: Duration) -> Result<UpStream, String> {
    let mut stream = super::stream::dial(addr, hs.tls.as_ref(), timeout).await?;
    let mut hello = BytesMut::new();
    let mut expect = 0;
    let pass = hs.password.as_deref().map(str::as_bytes);
    let user = hs.user.as_deref().unwrap_or("default").as_bytes();
    if hs.resp3 {
        match pass {
            Some(p) => encode(&mut hello, &[b"HELLO", b"3", b"AUTH", user, p]),
            None => encode(&mut hello, &[b"HELLO", b"3"]),
        }
        expect += 1;
    } else if let Some(p) = pass {
        match &hs.user {
            Some(u) => encode(&mut hello, &[b"AUTH", u.as_bytes(), p]),
            None => encode(&mut hello, &[b"AUTH", p]),
        }
        expect += 1;
    }
    if hs.db != 0 {
        encode(&mut hello, &[b"SELECT", hs.db.to_string().as_bytes()]);
        expect += 1;
    }
    if expect > 0 {
        let replies = tokio::time::timeout(timeout, async {
            stream.write_all(&hello).await?;
            read_values(&mut stream, expect).await
        })
        .await
        .map_err(|_| format!("handshake with {addr}: timed out"))?
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
        if let Some(Value::Error(e)) = replies.iter().find(|v| matches!(v, Value::Error(_))) {
            return Err(format!("handshake with {addr}: {e}"));
        }
    }
    Ok(stream)
}

impl Conn {
    fn start(stream: UpStream, wire: Arc<WireStats>) -> Conn {
        let (queue, rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let in_flight = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let counters = (writes.clone(), requests.clone());
        // Plain TCP splits without a lock; a TLS session is shared by both halves.
        match stream {
            UpStream::Plain(s) => {
                let (rd, wr) = s.into_split();
                let reader =
                    tokio::spawn(read_loop(rd, in_rx, alive.clone(), in_flight.clone(), wire));
                tokio::spawn(write_loop(wr, rx, in_tx, alive.clone(), reader, counters));
            }
            tls => {
                let (rd, wr) = tokio::io::split(tls);
                let reader =
                    tokio::spawn(read_loop(rd, in_rx, alive.clone(), in_flight.clone(), wire));
                tokio::spawn(write_loop(wr, rx, in_tx, alive.clone(), reader, counters));
            }
        }
        Conn {
            queue,
            alive,
            in_flight,
            writes,
            requests,
        }
    }
}

/// Reads `n` complete replies (handshake and one-off commands).
pub async fn read_values<R: AsyncRead + Unpin>(
    stream: &mut R,
    n: usize,
) -> std::io::Result<Vec<Value>> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(n.min(16));
    while out.len() < n {
        match decode(&buf, MAX_REPLY_BULK) {
            Ok(Some((v, len))) => {
                let _ = buf.split_to(len);
                out.push(v);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.0)),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(out)
}

/// What a node's multiplexed connections measure on the wire (`/metrics`, the console).
#[derive(Default)]
pub struct WireStats {
    /// From writing a request to reading its last reply.
    pub latency: Histogram,
    /// Top-level error replies (`-ERR …`, `-WRONGTYPE …`, RESP3 blob errors).
    pub error_replies: AtomicU64,
}

struct InFlight {
    count: usize,
    sent: Instant,
    reply: oneshot::Sender<Replies>,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Request>,
    in_flight: mpsc::UnboundedSender<InFlight>,
    alive: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    (writes, requests): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    let mut batch = Vec::with_capacity(64);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while rx.recv_many(&mut batch, 1024).await > 0 {
        if !alive.load(Ordering::Acquire) {
            break;
        }
        buf.clear();
        let sent = Instant::now();
        writes.fetch_add(1, Ordering::Relaxed);
        requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for r in batch.drain(..) {
            if r.count == 0 {
                continue;
            }
            buf.extend_from_slice(&r.bytes);
            let _ = in_flight.send(InFlight {
                count: r.count,
                sent,
                reply: r.reply,
            });
        }
        if !buf.is_empty() && wr.write_all(&buf).await.is_err() {
            break;
        }
        if buf.capacity() > 1024 * 1024 {
            buf = BytesMut::with_capacity(64 * 1024);
        }
    }
    alive.store(false, Ordering::Release);
    // Requests already written may never be answered now: fail them too.
    reader.abort();
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    mut in_flight: mpsc::UnboundedReceiver<InFlight>,
    alive: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
    wire: Arc<WireStats>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = FrameScanner::default();
    let mut head: Option<(InFlight, usize, usize)> = None; // (request, replies found, bytes)
    loop {
        // One clock reading per read: the replies it completes arrived together.
        let now = Instant::now();
        // Hand out every request whose replies are complete.
        loop {
            if head.is_none() {
                match in_flight.try_recv() {
                    Ok(r) => head = Some((r, 0, 0)),
                    Err(_) => break,
                }
            }
            let Some((req, found, len)) = head.as_mut() else {
                break;
            };
            while *found < req.count {
                match scanner.next_frame(&buf[*len..], MAX_REPLY_BULK) {
                    Ok(Some(n)) => {
                        // `-` and RESP3's `!`: the upstream answered with an error.
                        if matches!(buf[*len], b'-' | b'!') {
                            wire.error_replies.fetch_add(1, Ordering::Relaxed);
                        }
                        *len += n;
                        *found += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("closing upstream connection: {}", e.0);
                        alive.store(false, Ordering::Release);
                        return;
                    }
                }
            }
            if *found < req.count {
                break;
            }
            let Some((req, _, len)) = head.take() else {
                break;
            };
            let replies = buf.split_to(len).freeze();
            counter.fetch_sub(1, Ordering::Relaxed);
            wire.latency
                .record(0, now.saturating_duration_since(req.sent));
            let _ = req.reply.send(replies);
        }
        if head.is_none() && !buf.is_empty() {
            tracing::warn!("closing upstream connection: a reply nobody asked for");
            break;
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    alive.store(false, Ordering::Release);
}
