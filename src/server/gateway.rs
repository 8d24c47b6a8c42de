//! One client's commands in gateway mode: forwarded, pinned, or answered here.
//!
//! [`GatewayClient`] holds the client's forwarding state: its multiplexed forwarder, and while
//! it needs one (transaction, blocking command) its pinned upstream connection
//! (`upstream/pinned.rs`). What happens to each command is decided by
//! `upstream::policy::action` from the command table.
//!
//! Replies keep the order of commands: before anything is answered here, or sent on another
//! path, the replies of everything already sent are collected.
//!
//! **Transactions.** `WATCH` or `MULTI` pins the client to a connection to the node of its
//! keys (the primary for a keyless `MULTI`); every command until `EXEC`, `DISCARD` or
//! `UNWATCH` goes there, so the upstream sees exactly the client's transaction and its
//! replies (`+QUEUED`, `EXECABORT`, a nil `EXEC` after a touched `WATCH`) are its own.
//! A command sessiond cannot queue into the upstream's transaction (one it answers itself,
//! or whose keys are in another slot of a cluster) gets an error, and the transaction is
//! then discarded at `EXEC` with Redis's `EXECABORT`, as Redis does for a command it
//! refuses to queue. In a cluster, a `MULTI` before any key is held here (`+OK`, then
//! `+QUEUED` for keyless commands) until the first key names the node.
//!
//! **A transaction pipelined whole** (`MULTI` … `EXEC` in one read, as redis-py's
//! `pipeline()`, ioredis's `multi()` and Predis's `transaction()` send it) needs no pinned
//! connection: it is collected here and sent as one contiguous request on the client's
//! shared connection, where nothing can fall between its `MULTI` and `EXEC` (standalone and
//! Sentinel upstreams; a cluster always pins). If the read ends before `EXEC`, or a command
//! comes that cannot be queued that way, the collected part moves to a pinned connection.
//!
//! **Blocking commands** wait on their own pinned connection while the client connection
//! keeps reading: a client that disconnects closes that connection, which makes Redis
//! forget the block.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::subscriber::Subscriber;
use super::transaction;
use super::Server;
use crate::cmd::{self, table, ClientState, Flow};
use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::upstream::cluster;
use crate::upstream::conn::encode;
use crate::upstream::forward::ClientForwarder;
use crate::upstream::pinned::{Fix, Pinned};
use crate::upstream::policy::{self, Action};
use crate::upstream::Upstream;

pub(super) const EXECABORT: &[u8] =
    b"-EXECABORT Transaction discarded because of previous errors.\r\n";
pub(super) const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// A transaction being collected from one read of the client's input.
#[derive(Debug, Default)]
struct Collecting {
    buf: BytesMut,
    /// Where each command ends in `buf`.
    ends: Vec<usize>,
}

/// The most commands, and bytes, collected before the transaction moves to a pinned
/// connection (where it is sent as it comes, with the usual backpressure).
pub(super) const MAX_COLLECTED: usize = 1024;
pub(super) const MAX_COLLECTED_BYTES: usize = 1 << 20;
/// A collected transaction's buffers up to this size are kept for the client's next one
/// (an idle client holds at most this much for it).
const KEEP_COLLECTED_BYTES: usize = 8 * 1024;

impl Collecting {
    /// Keeps `self`'s buffers for the next transaction in `spare`, unless a large one grew
    /// them.
    fn give_back(mut self, spare: &mut Collecting) {
        if self.buf.capacity() <= KEEP_COLLECTED_BYTES && self.ends.capacity() <= MAX_COLLECTED {
            self.buf.clear();
            self.ends.clear();
            *spare = self;
        }
    }
}

#[derive(Debug, Default)]
pub(super) enum Tx {
    #[default]
    None,
    /// `WATCH` sent, no `MULTI` yet.
    Watching,
    /// In `MULTI`. `dirty`: a command was refused, `EXEC` discards. `held`: (cluster) the
    /// `MULTI` and keyless commands not sent yet because no key has named the node.
    Multi {
        dirty: bool,
        held: Option<Vec<Vec<Vec<u8>>>>,
    },
}

/// A client's gateway state.
pub struct GatewayClient {
    pub fwd: ClientForwarder,
    pub(super) pinned: Option<Pinned>,
    pub(super) tx: Tx,
    /// In subscriber mode (`server/subscriber.rs`).
    pub(super) sub: Option<Subscriber>,
    collecting: Option<Collecting>,
    /// The buffers of the last transaction collected, for the next one: a client that sends
    /// transaction after transaction allocates none per transaction.
    spare: Collecting,
    /// Cluster: the slot the pinned transaction's keys are in.
    pub(super) slot: Option<u16>,
    /// A `WATCH` is part of the current transaction.
    pub(super) watched: bool,
    /// Cluster: the commands queued in the transaction, to replay on a slot's new owner if
    /// the node answered `-MOVED` while queueing (`None`: too many, or not replayable).
    pub(super) replay: Option<Vec<Vec<Vec<u8>>>>,
    /// A `-MOVED` came back for a command of the current transaction.
    pub(super) tx_moved: bool,
    /// The bytes held in `replay`.
    pub(super) replay_bytes: usize,
}

/// The client connection as seen while a blocking command waits: its socket, read into
/// `side` so a disconnect is noticed.
pub struct ClientSide<'a, IO> {
    pub io: &'a mut IO,
    pub side: &'a mut BytesMut,
    pub limit: u64,
}

impl GatewayClient {
    pub fn new(client: u64) -> Self {
        GatewayClient {
            fwd: ClientForwarder::new(client),
            pinned: None,
            tx: Tx::None,
            slot: None,
            sub: None,
            collecting: None,
            spare: Collecting::default(),
            watched: false,
            replay: None,
            tx_moved: false,
            replay_bytes: 0,
        }
    }

    pub(super) fn in_multi(&self) -> bool {
        matches!(self.tx, Tx::Multi { .. })
    }

    /// The end of a read: a transaction still being collected moves to a pinned connection
    /// (the client waits for its `+QUEUED`s), then every reply is collected.
    pub async fn finish_batch(&mut self, up: &Upstream, state: &ClientState, out: &mut BytesMut) {
        self.materialize(up, state, out).await;
        self.drain(up, out).await;
    }

    /// Moves a collected transaction to a pinned connection, where it goes on as one the
    /// client began there.
    pub(super) async fn materialize(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        out: &mut BytesMut,
    ) {
        let Some(c) = self.collecting.take() else {
            return;
        };
        self.tx = Tx::Multi {
            dirty: false,
            held: None,
        };
        match Box::pin(self.pin(up, state, None, out)).await {
            Ok(()) => {
                if let Some(p) = self.pinned.as_mut() {
                    p.push_encoded(&c.buf, c.ends.len());
                }
                c.give_back(&mut self.spare);
            }
            Err(e) => {
                // MULTI failed, so the client is in no transaction (as when Redis refuses
                // MULTI), and none of what it meant to queue runs: each gets the error.
                for _ in &c.ends {
                    Reply::new(out, state.proto).error(&e);
                }
                self.tx = Tx::None;
            }
        }
    }

    /// Collects every reply still to come, in order, into `out`.
    pub async fn drain(&mut self, up: &Upstream, out: &mut BytesMut) {
        self.fwd.drain(up, out).await;
        if let Some(p) = self.pinned.as_mut() {
            Box::pin(p.drain(out, Some(up.opts.timeout()))).await;
            if !p.moved.is_empty() && matches!(self.tx, Tx::Multi { .. }) {
                self.tx_moved = true;
            }
            for (slot, addr) in p.moved.drain(..) {
                up.moved(slot, &addr);
            }
            if p.is_broken() {
                self.pinned = None;
                self.lost_pinned();
            }
        }
    }

    /// The pinned connection failed: the upstream has forgotten the transaction.
    pub(super) fn lost_pinned(&mut self) {
        match &mut self.tx {
            Tx::Multi { dirty, .. } => *dirty = true,
            _ => self.tx = Tx::None,
        }
    }

    /// Ends pinning when the client's state on the upstream is clean again.
    pub(super) fn release(&mut self, up: &Upstream) {
        if matches!(self.tx, Tx::None) {
            self.slot = None;
            self.watched = false;
            self.replay = None;
            self.tx_moved = false;
            self.replay_bytes = 0;
            if let Some(p) = self.pinned.take() {
                up.pinned.give_back(p);
            }
        }
    }

    pub(super) fn mark_dirty(&mut self) {
        if let Tx::Multi { dirty, .. } = &mut self.tx {
            *dirty = true;
        }
    }

    /// Pins to the node of `key` (primary when keyless), after collecting what is in flight.
    pub(super) async fn pin(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        key: Option<&[u8]>,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        if self.pinned.is_some() {
            return Ok(());
        }
        self.fwd.drain(up, out).await;
        let node = up.route(key, true, state.handle.id);
        let p = up
            .pinned
            .take(&node, &up.opts, state.db, state.proto == Proto::Resp3)
            .await?;
        self.slot = key.map(cluster::slot);
        self.pinned = Some(p);
        Ok(())
    }

    /// In a cluster, whether `keys` may join the pinned transaction (same slot as before).
    pub(super) fn slot_ok(&mut self, up: &Upstream, keys: &[&[u8]]) -> bool {
        if !up.is_cluster() {
            return true;
        }
        for k in keys {
            let s = cluster::slot(k);
            match self.slot {
                None => self.slot = Some(s),
                Some(x) if x == s => {}
                Some(_) => return false,
            }
        }
        true
    }
}

/// One command in gateway mode. `None`: forwarded on the multiplexed path, its reply comes
/// later; `Some(flow)`: its reply is in `wbuf`.
pub async fn command<S: Deployment, IO: AsyncRead + Unpin>(
    server: &Server<S>,
    up: &Upstream,
    gw: &mut GatewayClient,
    state: &mut ClientState,
    args: &[&[u8]],
    wbuf: &mut BytesMut,
    client: &mut ClientSide<'_, IO>,
) -> Option<Flow> {
    let checked = match table::lookup(args[0]) {
        // A command sessiond does not know (a newer server's, a module's): forwarded as it
        // is once the client is authenticated; in a cluster, routed by its first argument.
        None => match auth_only(server, state, args[0]) {
            Ok(()) => None,
            Err(e) => Some(Err(e)),
        },
        Some(idx) => Some(cmd::check_known(server, state, idx, args)),
    };
    let spec = match checked {
        Some(Ok(top)) => Some(table::subcommand(top, args).unwrap_or(top)),
        None => None,
        Some(Err(e)) => {
            gw.materialize(up, state, wbuf).await;
            gw.drain(up, wbuf).await;
            gw.mark_dirty();
            Reply::new(wbuf, state.proto).error(&e);
            return Some(Flow::Continue);
        }
    };
    let cluster = up.is_cluster();
    let action = spec.map_or(Action::Forward, |s| policy::action(s, args, cluster));
    // The first key routes the command; the others matter only to a cluster's slot check and
    // to transactions, so they are collected only there (not a vector per command).
    let first_key = match spec {
        Some(s) => crate::cmd::keyspec::first_key_of(s, args),
        None => args.get(1).copied(),
    };
    let all_keys = || -> Vec<&[u8]> {
        match spec {
            Some(s) => crate::cmd::keyspec::keys_of(s, args),
            None => args.get(1).copied().into_iter().collect(),
        }
    };

    // Collecting a pipelined transaction.
    if let Some(c) = gw.collecting.as_mut() {
        let queueable = match action {
            Action::Forward | Action::Block | Action::AllPrimaries => true,
            Action::Exec | Action::Discard => true,
            Action::Local => is_any(args[0], &[b"ping", b"echo", b"time"]),
            _ => false,
        };
        if queueable && c.ends.len() < MAX_COLLECTED && c.buf.len() < MAX_COLLECTED_BYTES {
            encode(&mut c.buf, args);
            c.ends.push(c.buf.len());
            if matches!(action, Action::Exec | Action::Discard) {
                let c = std::mem::take(c);
                gw.collecting = None;
                let resp3 = state.proto == Proto::Resp3;
                if let Err(e) = gw
                    .fwd
                    .push_transaction(up, state.db, resp3, &c.buf, &c.ends)
                    .await
                {
                    gw.drain(up, wbuf).await;
                    for _ in &c.ends {
                        Reply::new(wbuf, state.proto).error(&e);
                    }
                    return Some(Flow::Continue);
                }
                c.give_back(&mut gw.spare);
            }
            return None;
        }
        gw.materialize(up, state, wbuf).await;
    }
    // A subscriber: its commands go to its upstream connection (`subscriber.rs`).
    if gw.sub.is_some() {
        return Some(Box::pin(gw.subscribed_command(server, state, args, action, wbuf)).await);
    }
    // Inside a transaction: everything goes to the pinned connection, but what cannot be
    // queued there.
    if gw.in_multi() {
        return Some(
            Box::pin(transaction::in_multi(
                server,
                up,
                gw,
                state,
                args,
                action,
                &all_keys(),
                wbuf,
            ))
            .await,
        );
    }
    if matches!(gw.tx, Tx::Watching) {
        return Some(
            Box::pin(transaction::watching(
                server,
                up,
                gw,
                state,
                args,
                action,
                &all_keys(),
                wbuf,
                client,
            ))
            .await,
        );
    }
    match action {
        Action::Subscribe => {
            if let Err(e) = Box::pin(gw.subscribe(up, state, args, wbuf)).await {
                gw.sub = None;
                Reply::new(wbuf, state.proto).error(&e);
            }
            Some(Flow::Continue)
        }
        Action::Multi => {
            if cluster {
                gw.drain(up, wbuf).await;
                // Held until a key names the node.
                gw.tx = Tx::Multi {
                    dirty: false,
                    held: Some(vec![vec![b"MULTI".to_vec()]]),
                };
                gw.replay = Some(Vec::new());
                wbuf.extend_from_slice(b"+OK\r\n");
                return Some(Flow::Continue);
            }
            // Collected, in the hope that EXEC comes in the same read.
            let mut c = std::mem::take(&mut gw.spare);
            encode(&mut c.buf, args);
            c.ends.push(c.buf.len());
            gw.collecting = Some(c);
            None
        }
        Action::Watch => {
            gw.drain(up, wbuf).await;
            if !gw.slot_ok(up, &all_keys()) {
                gw.slot = None;
                Reply::new(wbuf, state.proto).error(CROSSSLOT);
                return Some(Flow::Continue);
            }
            gw.slot = None;
            if let Err(e) = Box::pin(gw.pin(up, state, first_key, wbuf)).await {
                Reply::new(wbuf, state.proto).error(&e);
                return Some(Flow::Continue);
            }
            gw.tx = Tx::Watching;
            gw.watched = true;
            push(gw, args, Fix::Keep);
            Some(Flow::Continue)
        }
        Action::Block => {
            if cluster && !same_slot(&all_keys()) {
                gw.drain(up, wbuf).await;
                Reply::new(wbuf, state.proto).error(CROSSSLOT);
                return Some(Flow::Continue);
            }
            gw.drain(up, wbuf).await;
            if let Err(e) = Box::pin(gw.pin(up, state, first_key, wbuf)).await {
                Reply::new(wbuf, state.proto).error(&e);
                return Some(Flow::Continue);
            }
            push(gw, args, Fix::Keep);
            let flow = Box::pin(wait_blocked(server, gw, state, wbuf, client)).await;
            gw.release(up);
            Some(flow)
        }
        // EXEC, DISCARD and UNWATCH outside a transaction change nothing on the upstream;
        // forwarded for Redis's own replies.
        Action::Forward | Action::Exec | Action::Discard | Action::Unwatch => {
            if cluster && !same_slot(&all_keys()) {
                if spec.is_some_and(policy::splits) {
                    return Box::pin(local(server, gw, up, state, args, wbuf)).await;
                }
                gw.drain(up, wbuf).await;
                Reply::new(wbuf, state.proto).error(CROSSSLOT);
                return Some(Flow::Continue);
            }
            if gw.pinned.is_some() {
                gw.drain(up, wbuf).await;
            }
            let read_only = spec.is_some_and(|s| s.is_read_only());
            let resp3 = state.proto == Proto::Resp3;
            // PUBLISH goes where subscribers of its channel are pinned (`subscriber.rs`).
            let key = match spec {
                Some(s) if s.name == "publish" => args.get(1).copied(),
                _ => first_key,
            };
            match gw.fwd.push(up, state.db, resp3, read_only, key, args).await {
                Ok(()) => {
                    let family = spec.map_or(crate::metrics::UNKNOWN, |s| s.family);
                    server.commands.forwarded(family, state.handle.id);
                    None
                }
                Err(e) => {
                    gw.drain(up, wbuf).await;
                    Reply::new(wbuf, state.proto).error(&e);
                    Some(Flow::Continue)
                }
            }
        }
        Action::AllPrimaries => {
            gw.drain(up, wbuf).await;
            let reply = Box::pin(up.all_primaries(state.db, args, spec)).await;
            if reply.starts_with(b"+OK") && spec.is_some_and(|s| s.name == "config|set") {
                // Only `notify-keyspace-events` is sent this way (policy.rs).
                if let Some(v) = args.get(3) {
                    up.remember_notify_events(v);
                }
            }
            wbuf.extend_from_slice(&reply);
            Some(Flow::Continue)
        }
        Action::Refuse(msg) => {
            let family = spec.map_or(crate::metrics::UNKNOWN, |s| s.family);
            server.commands.rejected(family, state.handle.id);
            gw.drain(up, wbuf).await;
            Reply::new(wbuf, state.proto).error(msg);
            Some(Flow::Continue)
        }
        // Boxed, as every path but forwarding above: a connection's future holds the largest
        // of its awaits, and a short-lived connection pays for its size (allocation, copies).
        Action::Local => Box::pin(local(server, gw, up, state, args, wbuf)).await,
    }
}

pub(super) fn same_slot(keys: &[&[u8]]) -> bool {
    let mut slots = keys.iter().map(|k| cluster::slot(k));
    let first = slots.next();
    slots.all(|s| Some(s) == first)
}

pub(super) fn push(gw: &mut GatewayClient, args: &[&[u8]], fix: Fix) {
    if let Some(p) = gw.pinned.as_mut() {
        p.push(args, fix);
    }
}

/// The client's authentication and ACL, for a command not in the table (a newer server's,
/// a module's): forwarded only for a user allowed every command, since sessiond cannot tell
/// which category or keys it has.
fn auth_only<S: Deployment>(
    server: &Server<S>,
    state: &mut ClientState,
    name: &[u8],
) -> Result<(), String> {
    if !state.authenticated {
        match server.settings.open_to(state.local) {
            Ok(true) => state.authenticated = true,
            Ok(false) => return Err("NOAUTH Authentication required.".into()),
            Err(denied) => return Err(denied.into()),
        }
    }
    cmd::current_user(server, state);
    if state.user.unrestricted() {
        return Ok(());
    }
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let now = crate::clock::now_ms();
    server.settings.acl.log.add(
        "command",
        "toplevel",
        name.clone(),
        state.user.name.clone(),
        cmd::client::client_info(&state.handle, now),
        now,
    );
    Err(format!(
        "NOPERM this user has no permissions to run the '{name}' command"
    ))
}

/// Runs a command with sessiond's own code, after the replies before it.
pub(super) async fn local<S: Deployment>(
    server: &Server<S>,
    gw: &mut GatewayClient,
    up: &Upstream,
    state: &mut ClientState,
    args: &[&[u8]],
    wbuf: &mut BytesMut,
) -> Option<Flow> {
    gw.drain(up, wbuf).await;
    let Some(idx) = table::lookup(args[0]) else {
        Reply::new(wbuf, state.proto).error(&cmd::unknown_command_error(args));
        return Some(Flow::Continue);
    };
    let spec = &table::commands()[idx];
    if matches!(spec.id, Some(table::CmdId::Reset)) {
        // RESET leaves any transaction: the pinned connection is closed (Redis discards).
        gw.tx = Tx::None;
        gw.slot = None;
        gw.pinned = None;
    }
    let mut reply = Reply::new(wbuf, state.proto);
    Some(cmd::execute_checked(server, state, spec, args, &mut reply).await)
}

pub(super) fn is_any(name: &[u8], names: &[&[u8]]) -> bool {
    names.iter().any(|n| name.eq_ignore_ascii_case(n))
}

pub(super) fn is_select(args: &[&[u8]]) -> bool {
    args[0].eq_ignore_ascii_case(b"select")
}

/// Waits for a blocking command's reply on the pinned connection while watching the client:
/// if it disconnects (or is killed, or the server stops), the pinned connection is closed,
/// so Redis forgets the block.
pub(super) async fn wait_blocked<S: Deployment, IO: AsyncRead + Unpin>(
    server: &Server<S>,
    gw: &mut GatewayClient,
    state: &ClientState,
    wbuf: &mut BytesMut,
    client: &mut ClientSide<'_, IO>,
) -> Flow {
    let Some(p) = gw.pinned.as_mut() else {
        return Flow::Continue;
    };
    let gone = async {
        loop {
            match client.io.read_buf(client.side).await {
                Ok(0) | Err(_) => return,
                Ok(_) if client.side.len() as u64 > client.limit => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = p.drain(wbuf, None) => {
            if p.is_broken() {
                gw.pinned = None;
                gw.lost_pinned();
            }
            Flow::Continue
        }
        _ = gone => {
            gw.pinned = None;
            gw.tx = Tx::None;
            Flow::Close
        }
        _ = state.handle.killed() => {
            gw.pinned = None;
            Flow::Close
        }
        _ = server.shutdown.notified() => {
            gw.pinned = None;
            Flow::Close
        }
    }
}
