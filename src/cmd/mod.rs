//! Commands: each parses its own arguments, calls the [`Store`] and writes its reply.
//!
//! [`execute`] does what Redis's `processCommand` does before a command runs, in the same
//! order, so the same bad input gets the same error: look the name up (unknown command),
//! check the arity (wrong number of arguments), check authentication (NOAUTH). Then it calls
//! the command's function through one `match`: static dispatch, no boxing.
//!
//! Files group commands as Redis's sources do: `strings`, `keys`, `expire`, `connection`,
//! `client`, `server` (INFO, CONFIG, COMMAND…), `script` (the recognised session scripts),
//! `hashes`.

pub mod args;
pub mod blocking;
pub mod client;
pub mod connection;
pub mod expire;
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
pub mod strings;
pub mod table;
pub mod zsets;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::server::clients::ClientHandle;
use crate::server::Server;
use crate::store::{Store, StoreError};
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
    /// Channels and patterns subscribed to (embedded engine).
    pub sub: Option<crate::pubsub::Subscription>,
    /// Keys the current command may have given data to, for blocked clients (`blocking.rs`).
    pub ready: Vec<(usize, Vec<u8>)>,
    /// Inside EXEC: blocking commands do not block, blocked clients are served after it.
    pub in_exec: bool,
    /// Set by a blocking command that found nothing: the connection waits on it.
    pub blocked: Option<blocking::Blocked>,
}

impl ClientState {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool, local: bool) -> Self {
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
        }
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
pub struct Ctx<'a, 'b, S: Store> {
    pub server: &'a Server<S>,
    pub client: &'a mut ClientState,
    pub out: &'a mut Reply<'b>,
    /// The command's clock reading (unix ms): one per command, as Redis's `commandTimeSnapshot`.
    pub now: i64,
    pub flow: Flow,
}

impl<S: Store> Ctx<'_, '_, S> {
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

/// Runs one command and writes its reply.
pub async fn execute<S: Store>(
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
            out.error(&e);
            Flow::Continue
        }
    }
}

/// What Redis checks before running a command, in its order: known name, arity,
/// authentication, and (with persistence) that the log can take writes. Returns the
/// command's table entry or the error reply's text.
pub fn check<S: Store>(
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
pub fn check_known<S: Store>(
    server: &Server<S>,
    client: &mut ClientState,
    idx: usize,
    args: &[&[u8]],
) -> Result<&'static table::Spec, String> {
    let spec = &table::commands()[idx];
    let implemented = match spec.id {
        None => false,
        // Typed commands need the engine itself (the migration router does not offer them).
        Some(id) => !id.engine_only() || server.store.engine().is_some(),
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
    client.handle.last_cmd.store(idx, Ordering::Relaxed);
    if table::is_write(spec) {
        if let Some(e) = server.persist.as_ref().and_then(|p| p.write_error()) {
            return Err(format!("MISCONF {e}"));
        }
        client.wrote = true;
    }
    Ok(spec)
}

/// Runs a command that passed [`check`].
pub async fn execute_checked<S: Store>(
    server: &Server<S>,
    client: &mut ClientState,
    spec: &table::Spec,
    args: &[&[u8]],
    out: &mut Reply<'_>,
) -> Flow {
    execute_checked_at(server, client, spec, args, out, crate::clock::now_ms()).await
}

/// [`execute_checked`] at a given clock reading (EXEC runs its commands at one time, as
/// Redis does).
pub async fn execute_checked_at<S: Store>(
    server: &Server<S>,
    client: &mut ClientState,
    spec: &table::Spec,
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
    let result = match server.store.engine() {
        // Commands on the typed API make room (or refuse with OOM) here, by their flag.
        Some(e) if id.engine_only() && spec.flags.has(table::Flags::DENYOOM) => {
            match e.reserve_memory() {
                Ok(()) => run(&mut cx, id, args).await,
                Err(err) => Err(err.into()),
            }
        }
        _ => run(&mut cx, id, args).await,
    };
    if let Err(e) = result {
        cx.out.error(&e.message());
    }
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

async fn run<S: Store>(cx: &mut Ctx<'_, '_, S>, id: CmdId, a: &[&[u8]]) -> CmdResult {
    use CmdId::*;
    match id {
        Get => strings::get(cx, a).await,
        Set => strings::set(cx, a).await,
        SetEx => strings::setex(cx, a, 1000).await,
        PSetEx => strings::setex(cx, a, 1).await,
        SetNx => strings::setnx(cx, a).await,
        GetEx => strings::getex(cx, a).await,
        GetDel => strings::getdel(cx, a).await,
        GetSet => strings::getset(cx, a).await,
        MGet => strings::mget(cx, a).await,
        MSet => strings::mset(cx, a, false).await,
        MSetNx => strings::mset(cx, a, true).await,
        Append => strings::append(cx, a).await,
        StrLen => strings::strlen(cx, a).await,
        Incr => strings::incr(cx, a, Some(1)).await,
        Decr => strings::incr(cx, a, Some(-1)).await,
        IncrBy => strings::incr(cx, a, None).await,
        DecrBy => strings::decrby(cx, a).await,
        Del | Unlink => keys::del(cx, a).await,
        Exists => keys::exists(cx, a).await,
        Type => keys::key_type(cx, a).await,
        Rename => keys::rename(cx, a, false).await,
        RenameNx => keys::rename(cx, a, true).await,
        Scan => keys::scan(cx, a).await,
        Keys => keys::keys(cx, a).await,
        RandomKey => keys::randomkey(cx).await,
        Expire => expire::expire(cx, a, expire::Unit::Seconds, false).await,
        PExpire => expire::expire(cx, a, expire::Unit::Millis, false).await,
        ExpireAt => expire::expire(cx, a, expire::Unit::Seconds, true).await,
        PExpireAt => expire::expire(cx, a, expire::Unit::Millis, true).await,
        Ttl => expire::ttl(cx, a, expire::TtlForm::Seconds).await,
        PTtl => expire::ttl(cx, a, expire::TtlForm::Millis).await,
        ExpireTime => expire::ttl(cx, a, expire::TtlForm::UnixSeconds).await,
        PExpireTime => expire::ttl(cx, a, expire::TtlForm::UnixMillis).await,
        Persist => expire::persist(cx, a).await,
        Ping if cx.client.proto == Proto::Resp2
            && cx.client.sub.as_ref().is_some_and(|s| s.active()) =>
        {
            pubsub::subscribed_ping(cx, a)
        }
        Ping => connection::ping(cx, a),
        Echo => connection::echo(cx, a),
        Auth => connection::auth(cx, a).await,
        Hello => connection::hello(cx, a).await,
        Select => connection::select(cx, a),
        Quit => connection::quit(cx),
        Reset => connection::reset(cx),
        Client => client::client(cx, a),
        Command => server::command(cx, a),
        Info => info::info(cx, a),
        Config => server::config(cx, a),
        Time => server::time(cx),
        DbSize => server::dbsize(cx).await,
        FlushDb => server::flushdb(cx, a).await,
        FlushAll => server::flushall(cx, a).await,
        SwapDb => server::swapdb(cx, a).await,
        Eval => script::eval(cx, a, false).await,
        EvalSha => script::eval(cx, a, true).await,
        Script => script::script(cx, a),
        Save => persistence::save(cx).await,
        BgSave => persistence::bgsave(cx, a),
        BgRewriteAof => persistence::bgrewriteaof(cx),
        LastSave => persistence::lastsave(cx),
        Shutdown => persistence::shutdown(cx, a).await,
        HSet => hashes::hset(cx, a, false).await,
        HMSet => hashes::hset(cx, a, true).await,
        HSetNx => hashes::hsetnx(cx, a).await,
        HGet => hashes::hget(cx, a).await,
        HMGet => hashes::hmget(cx, a).await,
        HGetAll => hashes::hgetall(cx, a, hashes::Part::Both).await,
        HKeys => hashes::hgetall(cx, a, hashes::Part::Fields).await,
        HVals => hashes::hgetall(cx, a, hashes::Part::Values).await,
        HDel => hashes::hdel(cx, a).await,
        HExists => hashes::hexists(cx, a).await,
        HLen => hashes::hlen(cx, a).await,
        HStrLen => hashes::hstrlen(cx, a).await,
        HIncrBy => hashes::hincrby(cx, a).await,
        HIncrByFloat => hashes::hincrbyfloat(cx, a).await,
        IncrByFloat => strings::incrbyfloat(cx, a).await,
        HRandField => hashes::hrandfield(cx, a).await,
        HScan => hashes::hscan(cx, a).await,
        Multi => multi::multi(cx),
        Exec => multi::exec(cx).await,
        Discard => multi::discard(cx),
        Watch => multi::watch(cx, a),
        Unwatch => multi::unwatch(cx),
        SAdd => sets::sadd(cx, a).await,
        SRem => sets::srem(cx, a).await,
        SMembers => sets::smembers(cx, a).await,
        SIsMember => sets::sismember(cx, a).await,
        SMIsMember => sets::smismember(cx, a).await,
        SCard => sets::scard(cx, a).await,
        SPop => sets::spop(cx, a).await,
        SRandMember => sets::srandmember(cx, a).await,
        SMove => sets::smove(cx, a).await,
        SInter => sets::combine_cmd(cx, a, sets::Op::Inter).await,
        SUnion => sets::combine_cmd(cx, a, sets::Op::Union).await,
        SDiff => sets::combine_cmd(cx, a, sets::Op::Diff).await,
        SInterStore => sets::store_cmd(cx, a, sets::Op::Inter).await,
        SUnionStore => sets::store_cmd(cx, a, sets::Op::Union).await,
        SDiffStore => sets::store_cmd(cx, a, sets::Op::Diff).await,
        SInterCard => sets::sintercard(cx, a).await,
        SScan => sets::sscan(cx, a).await,
        Subscribe => pubsub::subscribe(cx, a, crate::pubsub::Kind::Channel),
        Unsubscribe => pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Channel),
        PSubscribe => pubsub::subscribe(cx, a, crate::pubsub::Kind::Pattern),
        PUnsubscribe => pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Pattern),
        SSubscribe => pubsub::subscribe(cx, a, crate::pubsub::Kind::Shard),
        SUnsubscribe => pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Shard),
        Publish => pubsub::publish(cx, a, false),
        SPublish => pubsub::publish(cx, a, true),
        PubSub => pubsub::pubsub(cx, a),
        ZAdd => zsets::zadd(cx, a, false).await,
        ZIncrBy => zsets::zadd(cx, a, true).await,
        ZRem => zsets::zrem(cx, a).await,
        ZCard => zsets::zcard(cx, a).await,
        ZScore => zsets::zscore(cx, a).await,
        ZMScore => zsets::zmscore(cx, a).await,
        ZRank => zsets::zrank(cx, a, false).await,
        ZRevRank => zsets::zrank(cx, a, true).await,
        ZRange => zsets::zrange(cx, a, zsets::RangeCmd::Range).await,
        ZRevRange => zsets::zrange(cx, a, zsets::RangeCmd::RevRange).await,
        ZRangeByScore => zsets::zrange(cx, a, zsets::RangeCmd::ByScore).await,
        ZRevRangeByScore => zsets::zrange(cx, a, zsets::RangeCmd::RevByScore).await,
        ZRangeByLex => zsets::zrange(cx, a, zsets::RangeCmd::ByLex).await,
        ZRevRangeByLex => zsets::zrange(cx, a, zsets::RangeCmd::RevByLex).await,
        ZRangeStore => zsets::zrangestore(cx, a).await,
        ZCount => zsets::zcount(cx, a, false).await,
        ZLexCount => zsets::zcount(cx, a, true).await,
        ZRemRangeByRank => zsets::zremrange(cx, a, b'r').await,
        ZRemRangeByScore => zsets::zremrange(cx, a, b's').await,
        ZRemRangeByLex => zsets::zremrange(cx, a, b'l').await,
        ZPopMin => zsets::zpop(cx, a, false).await,
        ZPopMax => zsets::zpop(cx, a, true).await,
        ZMPop => zsets::zmpop(cx, a).await,
        ZRandMember => zsets::zrandmember(cx, a).await,
        ZUnion => zsets::zsetop(cx, a, zsets::SetOp::Union, false).await,
        ZInter => zsets::zsetop(cx, a, zsets::SetOp::Inter, false).await,
        ZDiff => zsets::zsetop(cx, a, zsets::SetOp::Diff, false).await,
        ZUnionStore => zsets::zsetop(cx, a, zsets::SetOp::Union, true).await,
        ZInterStore => zsets::zsetop(cx, a, zsets::SetOp::Inter, true).await,
        ZDiffStore => zsets::zsetop(cx, a, zsets::SetOp::Diff, true).await,
        ZInterCard => zsets::zintercard(cx, a).await,
        ZScan => zsets::zscan(cx, a).await,
        LPush => lists::push(cx, a, lists::End::Left, false).await,
        RPush => lists::push(cx, a, lists::End::Right, false).await,
        LPushX => lists::push(cx, a, lists::End::Left, true).await,
        RPushX => lists::push(cx, a, lists::End::Right, true).await,
        LPop => lists::pop(cx, a, lists::End::Left).await,
        RPop => lists::pop(cx, a, lists::End::Right).await,
        LLen => lists::llen(cx, a).await,
        LIndex => lists::lindex(cx, a).await,
        LRange => lists::lrange(cx, a).await,
        LSet => lists::lset(cx, a).await,
        LInsert => lists::linsert(cx, a).await,
        LRem => lists::lrem(cx, a).await,
        LTrim => lists::ltrim(cx, a).await,
        LPos => lists::lpos(cx, a).await,
        LMove => lists::lmove(cx, a, false).await,
        RPopLPush => lists::lmove(cx, a, true).await,
        LMPop => lists::lmpop(cx, a).await,
        BLPop => blocking::bpop(cx, a, lists::End::Left).await,
        BRPop => blocking::bpop(cx, a, lists::End::Right).await,
        BLMove => blocking::blmove(cx, a, false).await,
        BRPopLPush => blocking::blmove(cx, a, true).await,
        BLMPop => blocking::blmpop(cx, a).await,
        BZPopMin => blocking::bzpop(cx, a, false).await,
        BZPopMax => blocking::bzpop(cx, a, true).await,
        BZMPop => blocking::bzmpop(cx, a).await,
        SetRange => strings::setrange(cx, a).await,
        GetRange => strings::getrange(cx, a).await,
        Substr => strings::getrange(cx, a).await,
        Lcs => strings::lcs(cx, a).await,
        Copy => keys::copy(cx, a).await,
        Move => keys::move_key(cx, a).await,
        Touch => keys::touch(cx, a).await,
        Object => object::object(cx, a).await,
        Memory => object::memory(cx, a).await,
        Wait => blocking::wait(cx, a).await,
        HExpire => hash_ttl::hexpire(cx, a, hash_ttl::Unit::Seconds, false).await,
        HPExpire => hash_ttl::hexpire(cx, a, hash_ttl::Unit::Millis, false).await,
        HExpireAt => hash_ttl::hexpire(cx, a, hash_ttl::Unit::Seconds, true).await,
        HPExpireAt => hash_ttl::hexpire(cx, a, hash_ttl::Unit::Millis, true).await,
        HTtl => hash_ttl::httl(cx, a, hash_ttl::TtlForm::Seconds).await,
        HPTtl => hash_ttl::httl(cx, a, hash_ttl::TtlForm::Millis).await,
        HExpireTime => hash_ttl::httl(cx, a, hash_ttl::TtlForm::UnixSeconds).await,
        HPExpireTime => hash_ttl::httl(cx, a, hash_ttl::TtlForm::UnixMillis).await,
        HPersist => hash_ttl::hpersist(cx, a).await,
        HGetEx => hash_ttl::hgetex(cx, a).await,
        HSetEx => hash_ttl::hsetex(cx, a).await,
        HGetDel => hash_ttl::hgetdel(cx, a).await,
        Dump => keys::dump(cx, a).await,
        Restore => keys::restore(cx, a).await,
    }
}
