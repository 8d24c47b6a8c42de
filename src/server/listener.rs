//! Accept loops for TCP and unix sockets, protected-mode checks, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use super::connection::serve_connection;
use super::Server;
use crate::deployment::Deployment;

/// Refuse to listen on a non-loopback address without a password, unless protected mode is
/// off: a session store open to the network without authentication hands out every login.
pub fn check_protected_mode(
    addrs: &[SocketAddr],
    has_password: bool,
    protected: bool,
) -> Result<(), String> {
    if has_password || !protected {
        return Ok(());
    }
    if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to listen on non-loopback address {a} without a password: set --requirepass, \
             or --protected-mode no if the network is trusted"
        ));
    }
    Ok(())
}

pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The next accepted TCP connection, or None once the server is shutting down. Accept
/// errors (EMFILE and friends) are logged, throttled, and backed off from briefly instead of
/// spinning.
async fn next_tcp<S: Deployment>(
    server: &Server<S>,
    listener: &TcpListener,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        if server.shutting_down.load(Ordering::SeqCst) {
            return None;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = server.shutdown.notified() => return None,
        };
        match accepted {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                return Some((sock, peer));
            }
            Err(e) => {
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(&LOG, format_args!("accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Spawns a connection's task with its future boxed. A task's header and future share one
/// cache-line-aligned allocation: for a connection's future (kilobytes), glibc serves that
/// through its slow aligned path, and tokio copies the whole future in and out of the task
/// (at spawn and on completion). Boxed, the task is a few hundred bytes and the future is
/// allocated once, unaligned, and never moved; a connection that lives for one request
/// saves about a microsecond (docs/BENCHMARKS.md, "connection per request").
fn spawn_boxed<F>(fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(Box::pin(fut));
}

pub async fn accept_tcp<S: Deployment>(server: Arc<Server<S>>, listener: TcpListener) {
    let laddr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    while let Some((sock, peer)) = next_tcp(&server, &listener).await {
        let server = server.clone();
        let laddr = laddr.clone();
        // Plain TCP: a publisher may write to this socket directly (pubsub.rs).
        let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
        spawn_boxed(serve_connection(
            server,
            sock,
            peer.to_string(),
            laddr,
            fd,
            None,
        ));
    }
}

/// How long a TLS client may take to finish its handshake (a slow or silent one holds no
/// client slot, but does hold a task and a socket until then).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TLS handshakes in progress, bounded by `maxclients`: a flood of unfinished handshakes
/// cannot grow without limit.
static HANDSHAKES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The TLS listener: each connection gets the acceptor configured now (a certificate
/// reloaded since applies to new connections only), then is served like any other.
pub async fn accept_tls<S: Deployment>(
    server: Arc<Server<S>>,
    listener: TcpListener,
    tls: Arc<crate::tls::TlsServer>,
) {
    let laddr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    while let Some((sock, peer)) = next_tcp(&server, &listener).await {
        let max = server.settings.maxclients.load(Ordering::Relaxed);
        if HANDSHAKES.fetch_add(1, Ordering::AcqRel) >= max {
            HANDSHAKES.fetch_sub(1, Ordering::AcqRel);
            server.stats.rejected_connections.add(0, 1);
            continue;
        }
        let server = server.clone();
        let laddr = laddr.clone();
        let acceptor = tls.acceptor();
        let verified = tls.clients_authenticated();
        let user_from_cn = tls.options.user_from_cn;
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await;
            HANDSHAKES.fetch_sub(1, Ordering::AcqRel);
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                    crate::logging::throttled(
                        &LOG,
                        format_args!("TLS handshake with {peer} failed: {e}"),
                    );
                    return;
                }
                Err(_) => return,
            };
            let cert_user = if user_from_cn {
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::tls::cert::common_name(c))
            } else {
                None
            };
            let peer_info = crate::tls::TlsPeer {
                verified,
                cert_user,
            };
            // Never a direct descriptor: bytes must go through the TLS session. Boxed, as
            // in `spawn_boxed`: the handshake's task stays small.
            Box::pin(serve_connection(
                server,
                stream,
                peer.to_string(),
                laddr,
                None,
                Some(peer_info),
            ))
            .await;
        });
    }
}

pub async fn accept_unix<S: Deployment>(
    server: Arc<Server<S>>,
    listener: UnixListener,
    path: String,
) {
    loop {
        if server.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = server.shutdown.notified() => return,
        };
        match accepted {
            Ok((sock, _)) => {
                let server = server.clone();
                let path = path.clone();
                let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
                let peer = format!("{path}:0");
                spawn_boxed(serve_connection(server, sock, peer, path, fd, None));
            }
            Err(e) => {
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(&LOG, format_args!("accept on unix socket failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Copies of the listening sockets, for the rescue acceptor (see [`install_rescue`]).
pub enum Dup {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, String),
}

/// A second descriptor for a listening socket (both accept from the same queue).
pub fn dup_fd<T: std::os::fd::AsRawFd>(l: &T) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsFd, BorrowedFd};
    // SAFETY: the descriptor is valid for as long as `l` lives, which spans this call.
    let fd = unsafe { BorrowedFd::borrow_raw(l.as_raw_fd()) };
    fd.as_fd().try_clone_to_owned()
}

/// On the current-thread runtime (one worker), a script past `busy-reply-threshold` holds
/// the only thread that runs connections. Redis would still answer `-BUSY` and take SCRIPT
/// KILL; here the busy hook starts a thread with a runtime of its own that accepts *new*
/// connections on copies of the listening sockets and serves them (they get `-BUSY`, or run
/// SCRIPT KILL, FUNCTION KILL, SHUTDOWN NOSAVE) until no script is busy, then finishes the
/// connections it took and ends. Connections accepted before stay queued on the busy worker
/// until the script ends. The multi-thread runtime needs none of this: its busy worker hands
/// its queue to a new thread (`script/run.rs`).
pub fn install_rescue<S: Deployment>(server: &Arc<Server<S>>, dups: Vec<Dup>) {
    let weak = Arc::downgrade(server);
    let dups = Arc::new(std::sync::Mutex::new(dups));
    server.scripts.busy.set_rescue(Box::new(move || {
        let Some(server) = weak.upgrade() else {
            return;
        };
        let copies: Vec<Dup> = {
            let dups = dups.lock().unwrap_or_else(|p| p.into_inner());
            dups.iter()
                .filter_map(|d| match d {
                    Dup::Tcp(l) => l.try_clone().ok().map(Dup::Tcp),
                    Dup::Unix(l, p) => l.try_clone().ok().map(|l| Dup::Unix(l, p.clone())),
                })
                .collect()
        };
        let spawned = std::thread::Builder::new()
            .name("sessiond-busy".into())
            .spawn(move || rescue(server, copies));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the busy-script acceptor: {e}");
        }
    }));
}

fn rescue<S: Deployment>(server: Arc<Server<S>>, dups: Vec<Dup>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!("cannot start the busy-script acceptor: {e}");
            server.scripts.busy.rescue_ended();
            return;
        }
    };
    tracing::warn!("a script is busy: accepting new connections on a second thread meanwhile");
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tick = std::time::Duration::from_millis(50);
    let mut listeners = Vec::new();
    rt.block_on(async {
        for d in dups {
            match d {
                Dup::Tcp(l) => {
                    let _ = l.set_nonblocking(true);
                    if let Ok(l) = TcpListener::from_std(l) {
                        listeners.push(Either::Tcp(l));
                    }
                }
                Dup::Unix(l, path) => {
                    let _ = l.set_nonblocking(true);
                    if let Ok(l) = UnixListener::from_std(l) {
                        listeners.push(Either::Unix(l, path));
                    }
                }
            }
        }
    });
    loop {
        // Accept while a script is busy; serve what was accepted until it closes.
        rt.block_on(async {
            loop {
                let busy = server.scripts.busy.any();
                if !busy && live.load(Ordering::Acquire) == 0 {
                    return;
                }
                if !busy {
                    tokio::time::sleep(tick).await;
                    continue;
                }
                for l in &listeners {
                    let accepted =
                        tokio::time::timeout(tick / listeners.len().max(1) as u32, l.accept())
                            .await;
                    let Ok(Some((conn, peer, laddr))) = accepted else {
                        continue;
                    };
                    let server = server.clone();
                    let live = live.clone();
                    live.fetch_add(1, Ordering::AcqRel);
                    tokio::spawn(async move {
                        match conn {
                            Conn::Tcp(sock) => {
                                let _ = sock.set_nodelay(true);
                                let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
                                serve_connection(server, sock, peer, laddr, fd, None).await
                            }
                            Conn::Unix(sock) => {
                                let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
                                serve_connection(server, sock, peer, laddr, fd, None).await
                            }
                        }
                        live.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            }
        });
        server.scripts.busy.rescue_ended();
        // A script that turned busy while this thread was leaving found it still running:
        // keep going for it (unless another acceptor has started since).
        if !server.scripts.busy.any() || !server.scripts.busy.claim_rescue() {
            break;
        }
    }
}

enum Either {
    Tcp(TcpListener),
    Unix(UnixListener, String),
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Either {
    /// One accepted connection: it, its peer's address, the listener's address.
    async fn accept(&self) -> Option<(Conn, String, String)> {
        match self {
            Either::Tcp(l) => {
                let (sock, peer) = l.accept().await.ok()?;
                let laddr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                Some((Conn::Tcp(sock), peer.to_string(), laddr))
            }
            Either::Unix(l, path) => {
                let (sock, _) = l.accept().await.ok()?;
                Some((Conn::Unix(sock), format!("{path}:0"), path.clone()))
            }
        }
    }
}
