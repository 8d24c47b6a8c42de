//! Commands: each parses its own arguments, calls the [`Store`] and writes its reply.
//!
//! [`execute`] does what Redis's `processCommand` does before a command runs, in the same
//! order, so the same bad input gets the same error: look the name up (unknown command),
//! check the arity (wrong number of arguments), check authentication (NOAUTH). Then it calls
//! the command's function through one `match`: static dispatch, no boxing.
//!
//! Files group commands as Redis's sources do: `strings`, `keys`, `expire`, `connection`,
//! `client`, `server` (INFO, CONFIG, COMMAND…), `script` and `function` (Lua; the interpreter
//! is `src/script/`),
//! `hashes`.

pub mod acl;
pub mod args;
pub mod blocking;
pub mod client;
pub mod connection;
pub mod dispatch;
pub mod expire;
pub mod function;
pub mod hash_ttl;
pub mod hashes;
pub mod info;
pub mod keys;
pub mod keyspec;
pub mod lists;
pub mod multi;
pub mod object;
pub mod persistence;
pub mod pubsub;
pub mod script;
pub mod server;
pub mod sets;
pub mod slowlog;
pub mod strings;
pub mod table;
pub mod zset_ops;
pub mod zset_ranges;
pub mod zsets;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::server::clients::ClientHandle;
use crate::server::Server;
use crate::store::StoreError;
use table::CmdId;

/// Per-connection state commands may read and change.
pub struct ClientState {
    pub db: usize,
    pub proto: Proto,
    pub authenticated: bool,
    pub handle: Arc<ClientHandle>,
    /// A write command ran since the replies were last flushed: they may leave only once
    /// the log holds it (see `persist/journal.rs`).
    pub wrote: bool,
    /// A local client for protected mode (see `server/auth_guard.rs`).
    pub local: bool,
    /// Failed AUTH attempts on this connection.
    pub auth_failures: u32,
    /// MULTI/EXEC and WATCH state (embedded engine).
    pub tx: multi::Transaction,
    /// Channels and patterns subscribed to (embedded engine). Boxed: few clients subscribe,
    /// and every connection's future holds this state.
    pub sub: Option<Box<crate::pubsub::Subscription>>,
    /// Keys the current command may have given data to, for blocked clients (`blocking.rs`).
    pub ready: Vec<(usize, Vec<u8>)>,
    /// Inside EXEC: blocking commands do not block, blocked clients are served after it.
    pub in_exec: bool,
    /// Set by a blocking command that found nothing: the connection waits on it.
    pub blocked: Option<blocking::Blocked>,
    /// The ACL user, as of the ACL version `acl_version` (see `acl/mod.rs`).
    pub user: Arc<crate::acl::User>,
    pub acl_version: u64,
    /// The clock of the commands the connection is running back to back (see
    /// [`crate::clock::Chain`]); `None`: read the clocks per command.
    pub clock: Option<crate::clock::Chain>,
}

impl ClientState {
    pub fn new(
        handle: Arc<ClientHandle>,
        authenticated: bool,
        local: bool,
        user: Arc<crate::acl::User>,
    ) -> Self {
        ClientState {
            db: 0,
            proto: Proto::Resp2,
            authenticated,
            handle,
            wrote: false,
            local,
            auth_failures: 0,
            tx: multi::Transaction::default(),
            sub: None,
            ready: Vec::new(),
            in_exec: false,
            blocked: None,
            user,
            acl_version: 0,
            clock: None,
        }
    }

    /// Logs in as `user` (AUTH, HELLO … AUTH).
    pub fn log_in(&mut self, user: Arc<crate::acl::User>) {
        self.authenticated = true;
        let name = user.name.clone();
        self.handle.update_names(|n| n.user = name);
        self.user = user;
    }
}

/// Whether the connection continues after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close after flushing the replies (QUIT).
    Close,
}

/// A command's failure, turned into a Redis error reply by [`execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// `ERR syntax error`
    Syntax,
    /// `ERR value is not an integer or out of range`
    NotInteger,
    /// A full error text, code included (`ERR …`, `NOSCRIPT …`).
    Msg(String),
    Store(StoreError),
}

impl CmdError {
    pub fn msg(s: impl Into<String>) -> Self {
        CmdError::Msg(s.into())
    }

    pub fn message(&self) -> String {
        match self {
            CmdError::Syntax => "ERR syntax error".into(),
            CmdError::NotInteger => "ERR value is not an integer or out of range".into(),
            CmdError::Msg(s) => s.clone(),
            CmdError::Store(e) => e.message(),
        }
    }
}

impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> Self {
        CmdError::Store(e)
    }
}

pub type CmdResult = Result<(), CmdError>;

/// What a command function gets.
pub struct Ctx<'a, 'b, S: Deployment> {
    pub server: &'a Server<S>,
    pub client: &'a mut ClientState,
    pub out: &'a mut Reply<'b>,
    /// The command's clock reading (unix ms): one per command, as Redis's `commandTimeSnapshot`.
    pub now: i64,
    pub flow: Flow,
}

impl<S: Deployment> Ctx<'_, '_, S> {
    pub fn store(&self) -> &S {
        &self.server.store
    }

    pub fn db(&self) -> usize {
        self.client.db
    }

    /// Publishes a keyspace notification of this command (Redis's `notifyKeyspaceEvent`),
    /// if its class is enabled.
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        let n = &self.server.notifier;
        if n.wants(class) {
            n.notify(class, event, key, self.client.db);
        }
    }

    /// Whether events of `class` are published (to skip work that only they need).
    pub fn notifying(&self, class: u32) -> bool {
        self.server.notifier.wants(class)
    }
}

/// Redis's text for an unknown command: name and the first arguments, each quoted.
pub fn unknown_command_error(args: &[&[u8]]) -> String {
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
    let mut rest = String::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let s = String::from_utf8_lossy(&a[..a.len().min(room)]);
        rest.push_str(&format!("'{s}' "));
    }
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

pub fn wrong_args(name: &str) -> CmdError {
    CmdError::Msg(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Records a command that ran: its family's metrics, and the slow log and latency monitor
/// when it was slow enough for them (their thresholds are relaxed atomics; only a slow
/// command takes a lock).
fn observe<S: Deployment>(
    server: &Server<S>,
    client: &ClientState,
    spec: &'static table::Spec,
    args: &[&[u8]],
    elapsed: std::time::Duration,
    failed: bool,
) {
    let id = client.handle.id;
    server.commands.ran(spec.family, id, elapsed, failed);
    let micros = elapsed.as_micros() as u64;
    if server.slowlog.is_slow(micros) && !spec.flags.has(table::Flags::SKIP_SLOWLOG) {
        let name = client.handle.names().name;
        let keep = slowlog::shown_args(spec, args);
        server
            .slowlog
            .push(args, keep, micros, &client.handle.addr, &name);
    }
    let event = if spec.flags.has(table::Flags::FAST) {
        "fast-command"
    } else {
        "command"
    };
    server.latency.sample_if_needed(event, micros / 1000);
}

/// Runs one command and writes its reply.
pub async fn execute<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Flow {
    if client.tx.in_multi() {
        if let Some(flow) = multi::queue(server, client, args, out) {
            return flow;
        }
    }
    match check(server, client, args) {
        Ok(spec) => execute_checked(server, client, spec, args, out).await,
        Err(e) => {
            let family = table::lookup(args[0])
                .map_or(crate::metrics::UNKNOWN, |i| table::commands()[i].family);
            server.commands.rejected(family, client.handle.id);
            out.error(&e);
            Flow::Continue
        }
    }
}

/// What Redis checks before running a command, in its order: known name, arity,
/// authentication, and (with persistence) that the log can take writes. Returns the
/// command's table entry or the error reply's text.
pub fn check<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    args: &[&[u8]],
) -> Result<&'static table::Spec, String> {
    let Some(idx) = table::lookup(args[0]) else {
        return Err(unknown_command_error(args));
    };
    check_known(server, client, idx, args)
}

/// [`check`] for a command already found in the table at `idx`.
pub fn check_known<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    idx: usize,
    args: &[&[u8]],
) -> Result<&'static table::Spec, String> {
    let spec = &table::commands()[idx];
    let implemented = match spec.id {
        None => false,
        // Typed commands need the engine itself, or a migration router that routes them
        // as commands (`migrate/typed.rs`).
        Some(id) => {
            !id.engine_only()
                || server.store.engine().is_some()
                || server.store.migration().is_some()
        }
    };
    if !implemented && server.store.gateway().is_none() {
        // In the table (the gateway forwards it) but not implemented by this store.
        return Err(unknown_command_error(args));
    }
    if !table::arity_ok(spec.arity, args.len()) {
        return Err(wrong_args(spec.name).message());
    }
    if !client.authenticated && !spec.flags.has(table::Flags::NO_AUTH) {
        // The settings of now, not of when the client connected: a password removed since
        // lets it in, protected mode switched on since keeps a remote client out.
        match server.settings.open_to(client.local) {
            Ok(true) => client.authenticated = true,
            Ok(false) => return Err("NOAUTH Authentication required.".into()),
            Err(denied) => return Err(denied.into()),
        }
    }
    // As Redis's `c->cmd`, set before the ACL check, so ACL LOG's client-info names it.
    client.handle.last_cmd.store(idx, Ordering::Relaxed);
    if !spec.flags.has(table::Flags::NO_AUTH) {
        if let Err(denied) = acl_check(server, client, spec, args, "toplevel") {
            return Err(denied.error());
        }
    }
    if client.proto == Proto::Resp2
        && client.sub.as_ref().is_some_and(|s| s.active())
        && !matches!(
            spec.id,
            Some(
                CmdId::Subscribe
                    | CmdId::Unsubscribe
                    | CmdId::PSubscribe
                    | CmdId::PUnsubscribe
                    | CmdId::SSubscribe
                    | CmdId::SUnsubscribe
                    | CmdId::Ping
                    | CmdId::Quit
                    | CmdId::Reset
            )
        )
    {
        return Err(format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
    }
    if server.scripts.busy.any() {
        // A script runs past busy-reply-threshold: only what Redis allows then.
        let eff = table::subcommand(spec, args).unwrap_or(spec);
        if let Some(busy) = server.scripts.busy.refuse(spec.flags.union(eff.flags)) {
            return Err(busy);
        }
    }
    if table::is_write(spec) {
        if let Some(e) = server.persist.as_ref().and_then(|p| p.write_error()) {
            return Err(format!("MISCONF {e}"));
        }
        client.wrote = true;
    }
    Ok(spec)
}

/// The client's user with the ACL's current rules: a change since its last command (ACL
/// SETUSER, DELUSER, LOAD, requirepass) applies from this command on. A deleted user's
/// connection is being closed; until then it may run nothing.
pub fn current_user<S: Deployment>(server: &Server<S>, client: &mut ClientState) {
    let acl = &server.settings.acl;
    let v = acl.version();
    if v != client.acl_version {
        client.acl_version = v;
        client.user = acl
            .user(&client.user.name)
            .unwrap_or_else(|| Arc::new(crate::acl::User::new(&client.user.name)));
    }
}

/// Checks a command (`spec` the top-level row) against the client's user, logging a refusal
/// in `ACL LOG` with `context` (`toplevel`, `multi`, `lua`).
pub fn acl_check<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    spec: &'static table::Spec,
    args: &[&[u8]],
    context: &'static str,
) -> Result<(), crate::acl::Denied> {
    current_user(server, client);
    if client.user.unrestricted() {
        return Ok(());
    }
    let eff = table::subcommand(spec, args).unwrap_or(spec);
    crate::acl::user::check(&client.user, eff, args).inspect_err(|denied| {
        let (reason, object) = denied.reason();
        let now = crate::clock::now_ms();
        server.settings.acl.log.add(
            reason,
            context,
            object,
            client.user.name.clone(),
            client::client_info(&client.handle, now),
            now,
        );
    })
}

/// Runs a command that passed [`check`].
pub async fn execute_checked<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    spec: &'static table::Spec,
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Flow {
    let now = match &client.clock {
        Some(c) => c.now_ms(),
        None => crate::clock::now_ms(),
    };
    execute_checked_at(server, client, spec, args, out, now).await
}

/// [`execute_checked`] at a given clock reading (EXEC runs its commands at one time, as
/// Redis does).
pub async fn execute_checked_at<S: Deployment>(
    server: &Server<S>,
    client: &mut ClientState,
    spec: &'static table::Spec,
    args: &[&[u8]],
    out: &mut Reply<'_>,
    now: i64,
) -> Flow {
    let mut cx = Ctx {
        server,
        client,
        out,
        now,
        flow: Flow::Continue,
    };
    let Some(id) = spec.id else {
        cx.out.error(&unknown_command_error(args));
        return cx.flow;
    };
    let start = cx.out.len();
    // With a chain, the last reading (the end of the command before); a command that runs
    // others (EXEC) spans theirs.
    let began = match &cx.client.clock {
        Some(c) => c.last(),
        None => std::time::Instant::now(),
    };
    let result = match server.store.engine() {
        // Commands on the typed API make room (or refuse with OOM) here, by their flag.
        Some(e) if id.engine_only() && spec.flags.has(table::Flags::DENYOOM) => {
            match e.reserve_memory() {
                Ok(()) => dispatch::run(&mut cx, id, args).await,
                Err(err) => Err(err.into()),
            }
        }
        None if id.engine_only() => match server.store.migration() {
            Some(m) => migrated(&mut cx, m, spec, args).await,
            None => dispatch::run(&mut cx, id, args).await,
        },
        _ => dispatch::run(&mut cx, id, args).await,
    };
    let failed = match result {
        Err(e) => {
            cx.out.error(&e.message());
            true
        }
        // A command that wrote its own error reply (EXEC's EXECABORT, a blocked pop's…).
        Ok(()) => cx.out.buffer().get(start) == Some(&b'-'),
    };
    let ended = match cx.client.clock.as_mut() {
        Some(c) => c.read(),
        None => std::time::Instant::now(),
    };
    let elapsed = ended.saturating_duration_since(began);
    observe(server, cx.client, spec, args, elapsed, failed);
    if !cx.client.in_exec && !cx.client.ready.is_empty() {
        if let Some(e) = server.store.engine() {
            let ready = std::mem::take(&mut cx.client.ready);
            blocking::serve_ready(e, &server.notifier, ready, now);
        }
    }
    if let Some(sub) = cx.client.sub.as_ref() {
        // Messages this command caused (its own PUBLISH, keyspace events of its writes) go
        // before its reply, as Redis writes them.
        let buf = cx.out.buffer();
        let reply = buf.split_off(start);
        if sub.mailbox.drain_into(buf).is_err() {
            cx.flow = Flow::Close;
        }
        buf.unsplit(reply);
    }
    cx.flow
}

/// A typed command during a migration: routed between the two stores as a command
/// (`migrate/typed.rs`), its reply frame copied to the client.
async fn migrated<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    m: &dyn crate::deployment::MigrationControl,
    spec: &'static table::Spec,
    args: &[&[u8]],
) -> CmdResult {
    let eff = table::subcommand(spec, args).unwrap_or(spec);
    if let Some(e) = crate::migrate::typed::refusal(eff, args) {
        return Err(CmdError::Msg(e));
    }
    if let Err(why) = m.commands_supported() {
        let name = spec.name;
        return Err(CmdError::Msg(format!(
            "ERR '{name}' needs a Redis-protocol store on both sides of the migration, and {why}"
        )));
    }
    match spec.id {
        // The queue is kept here, as in the embedded mode; EXEC hands it to the router.
        Some(CmdId::Multi) => return multi::begin(cx),
        Some(CmdId::Discard) => return multi::discard(cx),
        Some(CmdId::Unwatch) => {
            cx.out.ok();
            return Ok(());
        }
        Some(CmdId::Exec) => return multi::exec_migrating(cx, m).await,
        _ => {}
    }
    let req = crate::deployment::CommandRequest {
        client: &cx.client.handle,
        db: cx.client.db,
        args,
        spec: eff,
        resp3: cx.client.proto == Proto::Resp3,
    };
    let (frame, wrote) = m.command(req).await?;
    if wrote {
        cx.client.wrote = true;
    }
    cx.out.buffer().extend_from_slice(&frame);
    Ok(())
}

/// During a migration between Redis-protocol stores, routes `args` (a script or function
/// command) as a command on the store its first key's stage writes first, its declared keys
/// mirrored after (`migrate/typed.rs`). `None` when not migrating between such stores: the
/// caller runs the command itself.
pub(crate) async fn route_migrating<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    args: &[&[u8]],
    everywhere: bool,
) -> Option<CmdResult> {
    if cx.server.store.engine().is_some() {
        return None;
    }
    let m = cx.server.store.migration()?;
    m.commands_supported().ok()?;
    let spec = table::lookup(args[0]).map(|i| &table::commands()[i])?;
    let eff = table::subcommand(spec, args).unwrap_or(spec);
    let req = crate::deployment::CommandRequest {
        client: &cx.client.handle,
        db: cx.client.db,
        args,
        spec: eff,
        resp3: cx.client.proto == Proto::Resp3,
    };
    let r = if everywhere {
        m.everywhere(req).await
    } else {
        m.command(req).await
    };
    Some(match r {
        Ok((frame, wrote)) => {
            if wrote {
                cx.client.wrote = true;
            }
            cx.out.buffer().extend_from_slice(&frame);
            Ok(())
        }
        Err(e) => Err(e.into()),
    })
}

/// Polls a future once: the engine's operations complete without waiting.
pub(crate) fn run_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
