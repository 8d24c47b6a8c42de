//! What can a Redis proxy reach on this machine when its own work costs next to nothing?
//! (issue #11)
//!
//! Issue #11 asks the gateway for MULTI/EXEC at ≥ 0.9× the transactions/s of direct Redis.
//! On a 2-core machine the load generator, the proxy and redis-server share the cores, and a
//! proxy adds a second socket hop whose kernel work no proxy can avoid. This binary measures
//! that floor with two minimal proxies, each on the current-thread runtime sessiond's
//! gateway uses on this machine:
//!
//! * `mux`: the gateway's model with none of its work. Every client's complete commands
//!   (counted, not parsed) go as they came to one shared upstream connection; a writer
//!   task sends everything queued with one `write`, a reader task counts replies off the
//!   socket and hands each client its run. No command table, no re-encoding, no ACL, no
//!   timers, no metrics.
//! * `pair`: a byte relay. Each client gets an upstream connection of its own, and bytes
//!   are copied both ways. The least user-space work a proxy can do, and no batching.
//!
//!     proxy-floor mux|pair LISTEN_ADDR UPSTREAM_ADDR
//!
//! It prints `ready` once listening. Not a product: it knows RESP2 arrays of bulk strings
//! and nothing else (no inline commands, no RESP3, no bound on a client's buffer), and it
//! serves benchmarks only (`bench/gateway`, `BENCH_ONLY=floor`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 || !matches!(args[1].as_str(), "mux" | "pair") {
        eprintln!("usage: proxy-floor mux|pair LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-floor: {e}");
            std::process::exit(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let r = local.block_on(&rt, run(args[1].clone(), args[2].clone(), args[3].clone()));
    if let Err(e) = r {
        eprintln!("proxy-floor: {e}");
        std::process::exit(1);
    }
}

async fn run(mode: String, listen: String, upstream: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&listen).await?;
    let mux = if mode == "mux" {
        Some(Mux::connect(&upstream).await?)
    } else {
        None
    };
    println!("ready");
    loop {
        let (client, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        match &mux {
            Some(m) => {
                let queue = m.queue.clone();
                tokio::task::spawn_local(serve_mux(client, queue));
            }
            None => {
                let upstream = upstream.clone();
                tokio::task::spawn_local(async move {
                    let mut client = client;
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = up.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                });
            }
        }
    }
}

/// A run of complete commands from one client and where its replies go.
type Request = (Bytes, usize, oneshot::Sender<Bytes>);

/// Requests sent upstream and not yet answered, oldest first: how many replies each awaits
/// and where they go.
type Waiting = Rc<RefCell<VecDeque<(usize, oneshot::Sender<Bytes>)>>>;

struct Mux {
    queue: mpsc::UnboundedSender<Request>,
}

impl Mux {
    async fn connect(addr: &str) -> std::io::Result<Mux> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let (mut rd, mut wr) = sock.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let waiting: Waiting = Rc::default();
        let w = waiting.clone();
        tokio::task::spawn_local(async move {
            let mut batch = Vec::new();
            let mut out = Vec::with_capacity(64 * 1024);
            while rx.recv_many(&mut batch, 1024).await > 0 {
                out.clear();
                for (bytes, count, reply) in batch.drain(..) {
                    out.extend_from_slice(&bytes);
                    w.borrow_mut().push_back((count, reply));
                }
                if wr.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        tokio::task::spawn_local(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut scanned = 0;
            let mut counted = 0;
            loop {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Some(len) = frame_len(&buf[scanned..]) {
                    scanned += len;
                    counted += 1;
                    let mut q = waiting.borrow_mut();
                    let Some((need, _)) = q.front() else { return };
                    if counted == *need {
                        if let Some((_, reply)) = q.pop_front() {
                            let _ = reply.send(buf.split_to(scanned).freeze());
                        }
                        scanned = 0;
                        counted = 0;
                    }
                }
            }
        });
        Ok(Mux { queue: tx })
    }
}

async fn serve_mux(mut client: TcpStream, queue: mpsc::UnboundedSender<Request>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4 * 1024 {
            buf.reserve(16 * 1024);
        }
        match client.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (count, used) = commands(&buf);
        if count == 0 {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        if queue
            .send((buf.split_to(used).freeze(), count, tx))
            .is_err()
        {
            return;
        }
        let Ok(replies) = rx.await else { return };
        if client.write_all(&replies).await.is_err() {
            return;
        }
    }
}

/// The number of complete commands (arrays of bulk strings) at the front of `buf`, and the
/// bytes they take.
fn commands(buf: &[u8]) -> (usize, usize) {
    let (mut n, mut at) = (0, 0);
    while let Some(len) = frame_len(&buf[at..]) {
        at += len;
        n += 1;
    }
    (n, at)
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The length of the complete RESP2 frame at the front of `buf`, if it is all there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let (head, mut at) = line(buf)?;
    match head.first()? {
        b'+' | b'-' | b':' => Some(at),
        b'$' => {
            let n = number(&head[1..])?;
            if n < 0 {
                return Some(at);
            }
            at += n as usize + 2;
            (at <= buf.len()).then_some(at)
        }
        b'*' => {
            let n = number(&head[1..])?;
            for _ in 0..n.max(0) {
                at += frame_len(&buf[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_only_when_complete() {
        let b = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
        assert_eq!(commands(b), (1, 20));
        assert_eq!(frame_len(b"*3\r\n+OK\r\n:1\r\n$-1\r\n"), Some(18));
        assert_eq!(frame_len(b"*2\r\n$2\r\nab\r\n"), None);
        assert_eq!(frame_len(b"*-1\r\n"), Some(5));
    }
}
