//! How much could io_uring save a connection-per-request server on this kernel? (issue #17)
//!
//! Two minimal servers on a unix socket, each answering every RESP command with a nil
//! (`$-1`), so what they cost is almost only their I/O model:
//!
//! * `tokio`: the model sessiond uses today: a current-thread runtime (epoll, edge
//!   triggered), one task per connection: `accept4`, `epoll_ctl` add, `recv`, `send`,
//!   `recv` of the end, `epoll_ctl` delete, `close`;
//! * `uring`: one thread, one io_uring: a multishot accept, then `recv`, `send`, `recv`,
//!   `close` for each connection as submission entries; everything queued in a loop turn
//!   goes to the kernel with one `io_uring_enter`, which also waits for the next
//!   completions.
//!
//!     uring-probe tokio|uring SOCKET_PATH
//!
//! Load both with `redis-benchmark -s SOCKET_PATH -t get -c 50 -k 0` and compare requests/s
//! and CPU per request (bench/seed, BENCH_ONLY=probe). What the `uring` floor gains over the
//! `tokio` floor bounds what moving sessiond's data path to io_uring can gain.
//!
//! Both floors also serve TCP (`uring-probe tokio|uring HOST:PORT`: bench/scripts, and
//! bench/ab-binaries's `floor` and `floor-uring` on the session mixes); the `tokio` floor
//! also serves TLS (`uring-probe tls HOST:PORT CERT KEY`, rustls as sessiond, for bench/tls): what a
//! server that does nothing reaches on those loads bounds what any server can reach there.

use std::os::fd::AsRawFd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `uring-probe tls HOST:PORT CERT KEY`: the epoll floor behind TLS (rustls with ring,
    // as sessiond), for bench/tls: what any server reaches there with this load generator.
    if args.len() == 5 && args[1] == "tls" {
        let r = tls_acceptor(&args[3], &args[4]).and_then(|a| {
            std::net::TcpListener::bind(args[2].as_str()).and_then(|l| run_tokio_tcp(l, Some(a)))
        });
        if let Err(e) = r {
            eprintln!("uring-probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.len() != 3 {
        eprintln!("usage: uring-probe tokio|uring SOCKET_PATH|HOST:PORT");
        std::process::exit(2);
    }
    // A TCP address gives the epoll floor on TCP, for loads that only speak TCP (bench/scripts
    // measures what a server that does nothing reaches on its EVALSHA loads).
    if let Ok(addr) = args[2].parse::<std::net::SocketAddr>() {
        let r = std::net::TcpListener::bind(addr).and_then(|l| match args[1].as_str() {
            // The io_uring floor on TCP: what that I/O model reaches on request/response
            // loads with kept connections (the embedded session mix).
            "uring" => run_uring(l.as_raw_fd(), true),
            _ => run_tokio_tcp(l, None),
        });
        if let Err(e) = r {
            eprintln!("uring-probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    let _ = std::fs::remove_file(&args[2]);
    let listener = match std::os::unix::net::UnixListener::bind(&args[2]) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("uring-probe: cannot bind {}: {e}", args[2]);
            std::process::exit(1);
        }
    };
    let r = match args[1].as_str() {
        "tokio" => run_tokio(listener),
        "uring" => run_uring(listener.as_raw_fd(), false),
        m => {
            eprintln!("uring-probe: unknown mode {m}");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("uring-probe: {e}");
        std::process::exit(1);
    }
}

/// The number of complete RESP commands (arrays of bulk strings, or inline lines) at the
/// front of `buf`, and the bytes they take.
fn commands(buf: &[u8]) -> (usize, usize) {
    let mut at = 0;
    let mut n = 0;
    loop {
        match command_len(&buf[at..]) {
            Some(len) => {
                at += len;
                n += 1;
            }
            None => return (n, at),
        }
    }
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(s: &[u8]) -> Option<usize> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn command_len(buf: &[u8]) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    if buf[0] != b'*' {
        return line(buf).map(|(_, len)| len);
    }
    let (head, mut at) = line(buf)?;
    let items = number(&head[1..])?;
    for _ in 0..items {
        let (h, len) = line(&buf[at..])?;
        let bulk = number(h.get(1..)?)?;
        at += len + bulk + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

const NIL: &[u8] = b"$-1\r\n";
const BUF: usize = 16 * 1024;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
}

fn run_tokio(listener: std::os::unix::net::UnixListener) -> std::io::Result<()> {
    runtime()?.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        loop {
            let (sock, _) = listener.accept().await?;
            tokio::spawn(answer_nils(sock));
        }
    })
}

/// The same floor on TCP, with Nagle off as redis-server and sessiond set it; behind TLS
/// when given an acceptor.
fn run_tokio_tcp(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    runtime()?.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            match tls.clone() {
                None => drop(tokio::spawn(answer_nils(sock))),
                Some(acceptor) => drop(tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(sock).await {
                        answer_nils(tls).await;
                    }
                })),
            }
        }
    })
}

/// The acceptor of the TLS floor: TLS 1.2/1.3 with ring, as sessiond; no client certificate
/// asked (the handshake is once per connection, and the loads keep their connections).
fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: String| std::io::Error::other(e);
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("{cert}: {e}")))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{key}: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// One connection of the epoll floor: read what came, answer each complete command with a
/// nil in one write.
async fn answer_nils<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut sock: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; BUF];
    let mut len = 0;
    let mut out = Vec::new();
    loop {
        let n = match sock.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        let (count, used) = commands(&buf[..len]);
        buf.copy_within(used..len, 0);
        len -= used;
        if len == BUF {
            return;
        }
        out.clear();
        for _ in 0..count {
            out.extend_from_slice(NIL);
        }
        // `flush` is a no-op on a socket; behind TLS it sends the record.
        if !out.is_empty() && (sock.write_all(&out).await.is_err() || sock.flush().await.is_err()) {
            return;
        }
    }
}

/// What a completion is for: the operation in the low byte, the connection above it.
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
const CLOSE: u64 = 3;

struct Conn {
    fd: i32,
    buf: Vec<u8>,
    len: usize,
    out: Vec<u8>,
    sent: usize,
}

/// The io_uring floor on the listening socket `lfd` (which the caller keeps open); `tcp`
/// sets TCP_NODELAY on each accepted connection, as sessiond and Redis do.
fn run_uring(lfd: i32, tcp: bool) -> std::io::Result<()> {
    use io_uring::{cqueue, opcode, squeue, types, IoUring};

    // PROBE_URING=plain|coop|defer: how completions' task work is run (the default,
    // interrupting the thread; at the next system call; only when waiting for completions).
    let mut builder = IoUring::builder();
    match std::env::var("PROBE_URING").as_deref() {
        Ok("plain") => {}
        Ok("defer") => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        _ => {
            builder.setup_single_issuer().setup_coop_taskrun();
        }
    }
    let mut ring: IoUring = builder.build(4096)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut pending: Vec<squeue::Entry> = Vec::new();

    let recv = |c: &mut Conn, idx: usize| {
        opcode::Recv::new(
            types::Fd(c.fd),
            // SAFETY (of the kernel's write): the buffer lives in `conns` until the
            // connection's close completes, and is not touched while a recv is in flight.
            unsafe { c.buf.as_mut_ptr().add(c.len) },
            (BUF - c.len) as u32,
        )
        .build()
        .user_data(((idx as u64) << 8) | RECV)
    };
    let send = |c: &Conn, idx: usize| {
        opcode::Send::new(
            types::Fd(c.fd),
            // SAFETY: as for recv: `out` is not modified until this send completes.
            unsafe { c.out.as_ptr().add(c.sent) },
            (c.out.len() - c.sent) as u32,
        )
        .build()
        .user_data(((idx as u64) << 8) | SEND)
    };
    let close = |fd: i32, idx: usize| {
        opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(((idx as u64) << 8) | CLOSE)
    };

    pending.push(
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    );
    let mut done: Vec<(u64, i32, u32)> = Vec::new();
    loop {
        {
            let mut sq = ring.submission();
            for e in pending.drain(..) {
                // SAFETY: every entry's buffers outlive the operation (see recv/send).
                while unsafe { sq.push(&e) }.is_err() {
                    drop(sq);
                    ring.submit()?;
                    sq = ring.submission();
                }
            }
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(data, res, flags) in &done {
            let idx = (data >> 8) as usize;
            match data & 0xff {
                ACCEPT => {
                    if !cqueue::more(flags) {
                        pending.push(
                            opcode::AcceptMulti::new(types::Fd(lfd))
                                .build()
                                .user_data(ACCEPT),
                        );
                    }
                    if res < 0 {
                        continue;
                    }
                    if tcp {
                        let one: libc::c_int = 1;
                        // SAFETY: `res` is the socket just accepted; the option is an int.
                        unsafe {
                            libc::setsockopt(
                                res,
                                libc::IPPROTO_TCP,
                                libc::TCP_NODELAY,
                                (&one as *const libc::c_int).cast(),
                                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                            )
                        };
                    }
                    let c = Conn {
                        fd: res,
                        buf: vec![0u8; BUF],
                        len: 0,
                        out: Vec::new(),
                        sent: 0,
                    };
                    let idx = match free.pop() {
                        Some(i) => {
                            conns[i] = Some(c);
                            i
                        }
                        None => {
                            conns.push(Some(c));
                            conns.len() - 1
                        }
                    };
                    if let Some(c) = conns[idx].as_mut() {
                        pending.push(recv(c, idx));
                    }
                }
                RECV => {
                    let Some(c) = conns[idx].as_mut() else {
                        continue;
                    };
                    if res <= 0 {
                        pending.push(close(c.fd, idx));
                        continue;
                    }
                    c.len += res as usize;
                    let (count, used) = commands(&c.buf[..c.len]);
                    c.buf.copy_within(used..c.len, 0);
                    c.len -= used;
                    if c.len == BUF {
                        pending.push(close(c.fd, idx));
                        continue;
                    }
                    c.out.clear();
                    c.sent = 0;
                    for _ in 0..count {
                        c.out.extend_from_slice(NIL);
                    }
                    if c.out.is_empty() {
                        pending.push(recv(c, idx));
                    } else {
                        pending.push(send(c, idx));
                    }
                }
                SEND => {
                    let Some(c) = conns[idx].as_mut() else {
                        continue;
                    };
                    if res < 0 {
                        pending.push(close(c.fd, idx));
                        continue;
                    }
                    c.sent += res as usize;
                    if c.sent < c.out.len() {
                        pending.push(send(c, idx));
                    } else {
                        pending.push(recv(c, idx));
                    }
                }
                CLOSE => {
                    conns[idx] = None;
                    free.push(idx);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_complete_commands_only() {
        let two = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGE";
        let (n, used) = commands(two);
        assert_eq!(n, 2);
        assert_eq!(&two[used..], b"*2\r\n$3\r\nGE");
        assert_eq!(commands(b"PING\r\n"), (1, 6));
        assert_eq!(commands(b""), (0, 0));
    }
}
