//! One client connection: read → parse every complete command → execute in order → one write.
//!
//! Pipelining falls out of the loop's shape: all commands found in a read are executed and
//! their replies accumulate in one output buffer that is written once. Protocol errors are
//! answered with Redis's error text after the replies of the commands before them, then the
//! connection closes, as Redis does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::clients::ClientHandle;
use super::gateway::{self, ClientSide, GatewayClient};
use super::Server;
use crate::cmd::{self, ClientState, Flow};
use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::resp::{Parsed, Reply, RequestParser};

const READ_CHUNK: usize = 16 * 1024;
/// Replies are flushed mid-batch once this much is pending, so a pipelined batch of large
/// values never accumulates in memory: the client's reading speed throttles execution
/// (backpressure), and small-reply pipelines still leave in one write.
const OUT_FLUSH: usize = 64 * 1024;

pub async fn serve_connection<S, IO>(
    server: Arc<Server<S>>,
    mut io: IO,
    addr: String,
    laddr: String,
    direct_fd: Option<std::os::fd::RawFd>,
    tls: Option<crate::tls::TlsPeer>,
) where
    S: Deployment,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let now = crate::clock::now_ms();
    server.stats.connections_received.add(0, 1);
    // A client that proved itself with a certificate counts as local for protected mode
    // (as in Redis, a TLS listener with tls-auth-clients yes is authenticated).
    let local = super::auth_guard::is_local(&addr) || tls.as_ref().is_some_and(|t| t.verified);
    let authenticated = match server.settings.open_to(local) {
        Ok(open) => open,
        Err(denied) => {
            server.stats.rejected_connections.add(0, 1);
            let _ = io.write_all(format!("-{denied}\r\n").as_bytes()).await;
            return;
        }
    };
    let maxclients = server.settings.maxclients.load(Ordering::Relaxed);
    let Some(handle) = server.clients.register(addr, laddr, maxclients, now) else {
        server.stats.rejected_connections.add(0, 1);
        let _ = io
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let id = handle.id;
    // tls-auth-clients-user CN: the certificate names the ACL user.
    let cert_user = tls
        .and_then(|t| t.cert_user)
        .and_then(|name| server.settings.acl.user(&name))
        .filter(|u| u.enabled);
    let mut bufs = Buffers {
        read: super::bufpool::take(READ_CHUNK),
        write: super::bufpool::take(READ_CHUNK),
        peer_closed: false,
    };
    run(
        &server,
        &mut io,
        &handle,
        authenticated,
        local,
        direct_fd,
        cert_user,
        &mut bufs,
    )
    .await;
    super::bufpool::give(bufs.read);
    super::bufpool::give(bufs.write);
    // When the server ends the connection (QUIT, a limit, a kill), its FIN goes first, so
    // the client reads the last replies and then an orderly end even if it had sent more.
    // When the client closed first, as a connection-per-request client does after its
    // reply, a plain socket's close says all there is (one system call less); TLS still
    // sends its close_notify.
    if !bufs.peer_closed || direct_fd.is_none() {
        let _ = io.shutdown().await;
    }
    server.clients.unregister(id);
}

/// A connection's input and output buffers, recycled between connections (`bufpool.rs`),
/// and how it ended.
struct Buffers {
    read: BytesMut,
    write: BytesMut,
    /// The client closed its side first (a connection-per-request client after its reply).
    peer_closed: bool,
}

#[allow(clippy::too_many_arguments)]
async fn run<S, IO>(
    server: &Server<S>,
    io: &mut IO,
    handle: &Arc<ClientHandle>,
    authenticated: bool,
    local: bool,
    // The socket's descriptor when bytes may be written to it behind `io`'s back (plain
    // TCP and unix sockets, never TLS): an idle subscriber's messages then go straight
    // from the publisher to the socket (`pubsub.rs`).
    direct_fd: Option<std::os::fd::RawFd>,
    cert_user: Option<Arc<crate::acl::User>>,
    bufs: &mut Buffers,
) where
    S: Deployment,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut state = ClientState::new(
        handle.clone(),
        authenticated,
        local,
        server.settings.acl.default_user(),
    );
    if let Some(u) = cert_user {
        state.log_in(u);
    }
    let Buffers {
        read: rbuf,
        write: wbuf,
        peer_closed,
    } = bufs;
    let mut parser = RequestParser::new();
    // Killed by CLIENT KILL, or by the server's shutdown (`Server::begin_shutdown`). Built
    // once per connection, not per read.
    let stop = handle.killed();
    tokio::pin!(stop);
    let gateway = server.store.gateway();
    // Boxed: the gateway state is large and the connection's future is kept small (see
    // `serve_connection`).
    let mut forwarder = gateway.map(|_| Box::new(GatewayClient::new(handle.id)));
    // Client bytes read while a blocking command waits (gateway), parsed after the batch.
    let mut side = BytesMut::new();
    let _counted = server
        .persist
        .as_ref()
        .and_then(|p| p.journal())
        .map(|j| j.connection());
    loop {
        if server.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        let timeout = server.settings.timeout_secs.load(Ordering::Relaxed);
        // A subscriber (gateway) also waits for messages from its upstream connection, and
        // is exempt from the idle timeout, as in Redis.
        let subscribed = forwarder.as_deref().is_some_and(|g| g.is_subscribed())
            || state.sub.as_ref().is_some_and(|s| s.active());
        let read = async {
            if timeout > 0 && !subscribed {
                tokio::time::timeout(Duration::from_secs(timeout), io.read_buf(&mut *rbuf))
                    .await
                    .ok()
            } else {
                Some(io.read_buf(&mut *rbuf).await)
            }
        };
        // An embedded-engine subscriber waits for its mailbox (`pubsub.rs`).
        let mailbox = state.sub.as_ref().map(|s| s.mailbox.clone());
        let subscribed = subscribed || mailbox.is_some();
        let pushed = async {
            match (gateway, forwarder.as_deref_mut(), &mailbox) {
                (Some(up), Some(gw), _) if subscribed => {
                    // Boxed: a subscriber's wait is large and rare (see serve_connection).
                    Box::pin(gw.pubsub_read(up, &state, &mut *wbuf)).await
                }
                (None, _, Some(m)) => {
                    // Nothing of ours is waiting to be written (the batch was flushed),
                    // so publishers may write to the socket while this waits.
                    m.parked(direct_fd).await;
                    m.drain_into(&mut *wbuf)
                        .map_err(|_| "pubsub output limit".to_string())
                }
                _ => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            r = read => match r {
                None => return, // idle timeout, as Redis's `timeout`
                Some(Ok(0)) => {
                    *peer_closed = true;
                    return;
                }
                Some(Err(_)) => return,
                Some(Ok(n)) => {
                    // Publishers stopped writing directly when the wait ended; what they
                    // queued since (the rest of a frame the socket took only part of
                    // included) goes before any reply.
                    if let Some(m) = &mailbox {
                        let _ = m.drain_into(&mut *wbuf);
                    }
                    n
                }
            },
            p = pushed => {
                if p.is_err() {
                    return;
                }
                // A subscriber that stops reading must not hold the connection in a write
                // forever: its mailbox closing (at the pubsub limit) ends the wait.
                let written = match &mailbox {
                    Some(m) => tokio::select! {
                        r = flush(server, io, &mut state, &mut *wbuf) => r.is_ok(),
                        _ = m.closed() => false,
                    },
                    None => flush(server, io, &mut state, &mut *wbuf).await.is_ok(),
                };
                if !written {
                    return;
                }
                continue;
            }
            _ = &mut stop => return,
        };
        server.stats.net_input_bytes.add(handle.id, n as u64);
        let limit = server
            .settings
            .client_query_buffer_limit
            .load(Ordering::Relaxed);
        if rbuf.len() as u64 > limit {
            static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
            crate::logging::throttled(
                &LOG,
                format_args!(
                    "closing client {} ({}) that reached the query buffer limit ({limit} bytes)",
                    handle.id, handle.addr
                ),
            );
            return;
        }

        let limits = server.settings.limits();
        let mut pos = 0;
        let mut close = false;
        let mut executed = 0u64;
        // The engine's commands of this batch share one clock reading per command.
        state.clock = gateway.is_none().then(crate::clock::Chain::start);
        loop {
            match parser.parse(rbuf, pos, &limits, state.authenticated) {
                Ok(Parsed::Command { consumed }) => {
                    pos += consumed;
                    if parser.argc() == 0 {
                        continue;
                    }
                    // The argument slices: on the stack for the usual short command.
                    let mut few: [&[u8]; 8] = [&[]; 8];
                    let mut many: Vec<&[u8]> = Vec::new();
                    let args: &[&[u8]] = if parser.argc() <= few.len() {
                        parser.args_into(rbuf, &mut few)
                    } else {
                        parser.args(rbuf, &mut many);
                        &many
                    };
                    let flow = if let (Some(up), Some(gw)) = (gateway, forwarder.as_deref_mut()) {
                        let mut client = ClientSide {
                            io: &mut *io,
                            side: &mut side,
                            limit,
                        };
                        let r = gateway::command(
                            server,
                            up,
                            gw,
                            &mut state,
                            args,
                            &mut *wbuf,
                            &mut client,
                        )
                        .await;
                        match r {
                            Some(flow) => flow,
                            None => {
                                executed += 1;
                                // Backpressure: with as much in flight as the client may
                                // have, take the oldest replies (and write them once they
                                // fill the buffer) before going on with its pipeline.
                                while gw.fwd.is_full() {
                                    gw.fwd.drain_oldest(up, &mut *wbuf).await;
                                    if wbuf.len() >= OUT_FLUSH
                                        && flush(server, io, &mut state, &mut *wbuf).await.is_err()
                                    {
                                        return;
                                    }
                                }
                                continue;
                            }
                        }
                    } else {
                        let mut reply = Reply::new(&mut *wbuf, state.proto);
                        let flow = cmd::execute(server, &mut state, args, &mut reply).await;
                        if let Some(b) = state.blocked.take() {
                            // A blocking command found nothing: the replies so far leave
                            // now, then the client waits (its further input is kept).
                            if flush(server, io, &mut state, &mut *wbuf).await.is_err() {
                                unblock(server, &b);
                                return;
                            }
                            match wait_blocked(server, io, &b, &mut side, &mut stop).await {
                                Some(r) => wbuf.extend_from_slice(&r),
                                None => return,
                            }
                            state.clock = Some(crate::clock::Chain::start());
                        }
                        flow
                    };
                    executed += 1;
                    if flow == Flow::Close {
                        close = true;
                        break;
                    }
                    if wbuf.len() >= OUT_FLUSH
                        && flush(server, io, &mut state, &mut *wbuf).await.is_err()
                    {
                        return;
                    }
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => {
                    if let (Some(up), Some(gw)) = (gateway, forwarder.as_deref_mut()) {
                        gw.drain(up, &mut *wbuf).await;
                    }
                    Reply::new(&mut *wbuf, state.proto).error(&format!("ERR {}", e.0));
                    tracing::debug!(client = handle.id, "protocol error: {}", e.0);
                    close = true;
                    break;
                }
            }
        }
        if executed > 0 {
            server.stats.commands_processed.add(handle.id, executed);
            let now = match state.clock.take() {
                Some(c) => c.now_ms(),
                None => crate::clock::now_ms(),
            };
            handle.last_ms.store(now, Ordering::Relaxed);
        }
        state.clock = None;
        if let (Some(up), Some(gw)) = (gateway, forwarder.as_deref_mut()) {
            gw.finish_batch(up, &state, &mut *wbuf).await;
        }
        // Drop what was consumed; a partially received command stays at the front.
        rbuf.advance(pos);
        if !side.is_empty() {
            rbuf.extend_from_slice(&side);
            side.clear();
        }
        if parser.is_mid_command() {
            parser.rebase(pos);
        }
        if !wbuf.is_empty() && flush(server, io, &mut state, &mut *wbuf).await.is_err() {
            return;
        }
        if close || handle.is_killed() {
            return;
        }
        if state.proto == Proto::Resp3 {
            handle.resp.store(3, Ordering::Relaxed);
        } else {
            handle.resp.store(2, Ordering::Relaxed);
        }
        if let Some(sub) = state.sub.as_ref() {
            sub.set_proto(state.proto);
        }
    }
}

fn unblock<S: Deployment>(server: &Server<S>, b: &cmd::blocking::Blocked) {
    b.waiter.cancel();
    if let Some(e) = server.store.engine() {
        e.unblock(&b.waiter);
    }
}

/// Waits for a blocked client's reply: served, timed out, or the client gone (None: the
/// connection ends). Input that arrives meanwhile is kept in `side`, bounded by the query
/// buffer limit, and run after the block as Redis does.
async fn wait_blocked<S, IO, F>(
    server: &Server<S>,
    io: &mut IO,
    b: &cmd::blocking::Blocked,
    side: &mut BytesMut,
    stop: &mut std::pin::Pin<&mut F>,
) -> Option<bytes::Bytes>
where
    S: Deployment,
    IO: AsyncRead + Unpin,
    F: std::future::Future<Output = ()>,
{
    let deadline = async {
        match b.deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let reply = loop {
        tokio::select! {
            r = b.waiter.served() => break Some(r),
            _ = &mut deadline => break Some(b.waiter.cancel().unwrap_or_else(|| b.timeout_reply.clone())),
            n = io.read_buf(side) => {
                let limit = server.settings.client_query_buffer_limit.load(Ordering::Relaxed);
                match n {
                    Ok(n) if n > 0 && (side.len() as u64) <= limit => continue,
                    _ => {
                        // Gone (or flooding): Redis forgets a disconnected client's block.
                        b.waiter.cancel();
                        break None;
                    }
                }
            }
            _ = stop.as_mut() => break None,
        }
    };
    unblock(server, b);
    reply
}

/// Writes the pending replies and empties the buffer. If they include a write command's,
/// first waits until the log holds it as durably as `appendfsync` promises; if it cannot
/// (a failing disk), the replies are not sent and the connection closes: a client never sees
/// success for a write that was not logged.
async fn flush<S, IO>(
    server: &Server<S>,
    io: &mut IO,
    state: &mut ClientState,
    wbuf: &mut BytesMut,
) -> std::io::Result<()>
where
    S: Deployment,
    IO: AsyncWrite + Unpin,
{
    if std::mem::take(&mut state.wrote) {
        if let Some(j) = server.persist.as_ref().and_then(|p| p.journal()) {
            if let Err(e) = j.commit(j.appended()).await {
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(
                    &LOG,
                    format_args!("closing client {}: {e}", state.handle.id),
                );
                return Err(std::io::Error::other(e));
            }
        }
    }
    let limit = server.settings.output_limit();
    if limit.hard > 0 && wbuf.len() as u64 > limit.hard {
        output_limit_reached(state, wbuf.len(), "hard");
        return Err(std::io::ErrorKind::OutOfMemory.into());
    }
    server
        .stats
        .net_output_bytes
        .add(state.handle.id, wbuf.len() as u64);
    if limit.soft > 0 && wbuf.len() as u64 > limit.soft {
        // Over the soft limit for longer than its seconds: a client that does not read is
        // disconnected rather than waited on (Redis's `client-output-buffer-limit`).
        let wait = Duration::from_secs(limit.soft_seconds);
        if tokio::time::timeout(wait, io.write_all(wbuf))
            .await
            .is_err()
        {
            output_limit_reached(state, wbuf.len(), "soft");
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    } else {
        io.write_all(wbuf).await?;
    }
    wbuf.clear();
    // The wait for the socket (and the log) is no command's time.
    if state.clock.is_some() {
        state.clock = Some(crate::clock::Chain::start());
    }
    // One batch of huge replies must not pin its capacity for the connection's life.
    if wbuf.capacity() > 4 * OUT_FLUSH {
        *wbuf = BytesMut::with_capacity(READ_CHUNK);
    }
    Ok(())
}

fn output_limit_reached(state: &ClientState, pending: usize, which: &str) {
    crate::logging::throttled(
        &OUTPUT_LIMIT_LOG,
        format_args!(
            "closing client {} ({}): {pending} bytes of replies pending, over the {which} \
             client-output-buffer-limit",
            state.handle.id, state.handle.addr
        ),
    );
}

static OUTPUT_LIMIT_LOG: crate::logging::Throttle = crate::logging::Throttle::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, E, G, F, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C, D, E, G) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// A connection's future is allocated and initialised for every connection, and a
    /// PHP-style client connects for one request. It was 5.8 KB in gateway mode before the
    /// rare paths (connecting, transactions, subscribers, redirections) were boxed; an
    /// await added inline on the common path would quietly make it large again.
    #[test]
    fn connection_futures_stay_small() {
        let gateway =
            future_size(serve_connection::<crate::upstream::Upstream, tokio::net::UnixStream>);
        let engine = future_size(serve_connection::<crate::engine::Engine, tokio::net::UnixStream>);
        assert!(
            gateway <= 3 * 1024,
            "gateway connection future: {gateway} bytes"
        );
        assert!(
            engine <= 3 * 1024,
            "engine connection future: {engine} bytes"
        );
    }
}
