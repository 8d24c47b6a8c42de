//! Accept loops for TCP and unix sockets, protected-mode checks, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};

use super::connection::serve_connection;
use super::Server;
use crate::store::Store;

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

pub async fn accept_tcp<S: Store>(server: Arc<Server<S>>, listener: TcpListener) {
    let laddr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        if server.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = server.shutdown.notified() => return,
        };
        match accepted {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                let server = server.clone();
                let laddr = laddr.clone();
                // Plain TCP: a publisher may write to this socket directly (pubsub.rs).
                let fd = Some(std::os::fd::AsRawFd::as_raw_fd(&sock));
                tokio::spawn(async move {
                    serve_connection(server, sock, peer.to_string(), laddr, fd).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(&LOG, format_args!("accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

pub async fn accept_unix<S: Store>(server: Arc<Server<S>>, listener: UnixListener, path: String) {
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
                tokio::spawn(async move {
                    serve_connection(server, sock, format!("{path}:0"), path, fd).await;
                });
            }
            Err(e) => {
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(&LOG, format_args!("accept on unix socket failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
