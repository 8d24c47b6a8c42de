//! The commands the embedded engine implements: one row each, naming the command, its
//! identifier, where it runs (`any` store, or the `engine` only: commands on the engine's
//! typed API, which the migration router does not offer) and the function that runs it.
//! Everything else about a command (arity, flags, key specs, ACL categories) is Redis's own
//! description in `commands.tsv`. Adding a command is one row here and its function, in the
//! file of its Redis group.

use super::*;
use crate::deployment::Deployment;

macro_rules! engine_commands {
    (|$cx:ident, $a:ident| $( $name:literal => $id:ident, $scope:ident, $call:expr; )*) => {
        /// A command the engine implements.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum CmdId {
            $( $id, )*
        }

        /// The commands the embedded engine implements (`cmd::run` calls each one's
        /// function). In gateway mode every row of the table is accepted; in embedded mode only
        /// these, the rest get Redis's "unknown command".
        pub const ENGINE: &[(&str, CmdId)] = &[ $( ($name, CmdId::$id), )* ];

        impl CmdId {
            /// Commands on the engine's typed API (`engine/access.rs`), which the migration
            /// router does not offer: they exist only with the embedded engine (or forwarded by
            /// a gateway).
            pub fn engine_only(self) -> bool {
                match self {
                    $( CmdId::$id => engine_commands!(@scope $scope), )*
                }
            }
        }

        /// Runs the command's function.
        pub(super) async fn run<S: Deployment>($cx: &mut Ctx<'_, '_, S>, id: CmdId, $a: &[&[u8]]) -> CmdResult {
            match id {
                $( CmdId::$id => $call, )*
            }
        }
    };
    (@scope engine) => { true };
    (@scope any) => { false };
}

engine_commands! { |cx, a|
    "get" => Get, any, strings::get(cx, a).await;
    "set" => Set, any, strings::set(cx, a).await;
    "setex" => SetEx, any, strings::setex(cx, a, 1000).await;
    "psetex" => PSetEx, any, strings::setex(cx, a, 1).await;
    "setnx" => SetNx, any, strings::setnx(cx, a).await;
    "getex" => GetEx, any, strings::getex(cx, a).await;
    "getdel" => GetDel, any, strings::getdel(cx, a).await;
    "getset" => GetSet, any, strings::getset(cx, a).await;
    "mget" => MGet, any, strings::mget(cx, a).await;
    "mset" => MSet, any, strings::mset(cx, a, false).await;
    "msetnx" => MSetNx, any, strings::mset(cx, a, true).await;
    "append" => Append, any, strings::append(cx, a).await;
    "strlen" => StrLen, any, strings::strlen(cx, a).await;
    "incr" => Incr, any, strings::incr(cx, a, Some(1)).await;
    "decr" => Decr, any, strings::incr(cx, a, Some(-1)).await;
    "incrby" => IncrBy, any, strings::incr(cx, a, None).await;
    "decrby" => DecrBy, any, strings::decrby(cx, a).await;
    "del" => Del, any, keys::del(cx, a).await;
    "unlink" => Unlink, any, keys::del(cx, a).await;
    "exists" => Exists, any, keys::exists(cx, a).await;
    "type" => Type, any, keys::key_type(cx, a).await;
    "rename" => Rename, any, keys::rename(cx, a, false).await;
    "renamenx" => RenameNx, any, keys::rename(cx, a, true).await;
    "scan" => Scan, any, keys::scan(cx, a).await;
    "keys" => Keys, any, keys::keys(cx, a).await;
    "randomkey" => RandomKey, any, keys::randomkey(cx).await;
    "expire" => Expire, any, expire::expire(cx, a, expire::Unit::Seconds, false).await;
    "pexpire" => PExpire, any, expire::expire(cx, a, expire::Unit::Millis, false).await;
    "expireat" => ExpireAt, any, expire::expire(cx, a, expire::Unit::Seconds, true).await;
    "pexpireat" => PExpireAt, any, expire::expire(cx, a, expire::Unit::Millis, true).await;
    "ttl" => Ttl, any, expire::ttl(cx, a, expire::TtlForm::Seconds).await;
    "pttl" => PTtl, any, expire::ttl(cx, a, expire::TtlForm::Millis).await;
    "expiretime" => ExpireTime, any, expire::ttl(cx, a, expire::TtlForm::UnixSeconds).await;
    "pexpiretime" => PExpireTime, any, expire::ttl(cx, a, expire::TtlForm::UnixMillis).await;
    "persist" => Persist, any, expire::persist(cx, a).await;
    "ping" => Ping, any, connection::ping(cx, a);
    "echo" => Echo, any, connection::echo(cx, a);
    "auth" => Auth, any, connection::auth(cx, a).await;
    "hello" => Hello, any, connection::hello(cx, a).await;
    "select" => Select, any, connection::select(cx, a);
    "quit" => Quit, any, connection::quit(cx);
    "reset" => Reset, any, connection::reset(cx);
    "client" => Client, any, client::client(cx, a);
    "command" => Command, any, server::command(cx, a);
    "info" => Info, any, info::info(cx, a);
    "config" => Config, any, server::config(cx, a);
    "slowlog" => SlowLog, any, slowlog::slowlog(cx, a);
    "acl" => Acl, any, acl::acl(cx, a);
    "latency" => Latency, any, slowlog::latency(cx, a);
    "time" => Time, any, server::time(cx);
    "dbsize" => DbSize, any, server::dbsize(cx).await;
    "flushdb" => FlushDb, any, server::flushdb(cx, a).await;
    "flushall" => FlushAll, any, server::flushall(cx, a).await;
    "swapdb" => SwapDb, any, server::swapdb(cx, a).await;
    "eval" => Eval, any, script::eval(cx, a, false, false).await;
    "evalsha" => EvalSha, any, script::eval(cx, a, true, false).await;
    "eval_ro" => EvalRo, any, script::eval(cx, a, false, true).await;
    "evalsha_ro" => EvalShaRo, any, script::eval(cx, a, true, true).await;
    "fcall" => FCall, any, function::fcall(cx, a, false).await;
    "fcall_ro" => FCallRo, any, function::fcall(cx, a, true).await;
    "function" => Function, any, function::function(cx, a).await;
    "script" => Script, any, script::script(cx, a);
    "save" => Save, any, persistence::save(cx).await;
    "bgsave" => BgSave, any, persistence::bgsave(cx, a);
    "bgrewriteaof" => BgRewriteAof, any, persistence::bgrewriteaof(cx);
    "lastsave" => LastSave, any, persistence::lastsave(cx);
    "shutdown" => Shutdown, any, persistence::shutdown(cx, a).await;
    "hset" => HSet, engine, hashes::hset(cx, a, false).await;
    "hsetnx" => HSetNx, engine, hashes::hsetnx(cx, a).await;
    "hmset" => HMSet, engine, hashes::hset(cx, a, true).await;
    "hget" => HGet, engine, hashes::hget(cx, a).await;
    "hmget" => HMGet, engine, hashes::hmget(cx, a).await;
    "hgetall" => HGetAll, engine, hashes::hgetall(cx, a, hashes::Part::Both).await;
    "hkeys" => HKeys, engine, hashes::hgetall(cx, a, hashes::Part::Fields).await;
    "hvals" => HVals, engine, hashes::hgetall(cx, a, hashes::Part::Values).await;
    "hdel" => HDel, engine, hashes::hdel(cx, a).await;
    "hexists" => HExists, engine, hashes::hexists(cx, a).await;
    "hlen" => HLen, engine, hashes::hlen(cx, a).await;
    "hstrlen" => HStrLen, engine, hashes::hstrlen(cx, a).await;
    "hincrby" => HIncrBy, engine, hashes::hincrby(cx, a).await;
    "hincrbyfloat" => HIncrByFloat, engine, hashes::hincrbyfloat(cx, a).await;
    "incrbyfloat" => IncrByFloat, engine, strings::incrbyfloat(cx, a).await;
    "hrandfield" => HRandField, engine, hashes::hrandfield(cx, a).await;
    "hscan" => HScan, engine, hashes::hscan(cx, a).await;
    "multi" => Multi, engine, multi::multi(cx);
    "exec" => Exec, engine, multi::exec(cx).await;
    "discard" => Discard, engine, multi::discard(cx);
    "watch" => Watch, engine, multi::watch(cx, a);
    "unwatch" => Unwatch, engine, multi::unwatch(cx);
    "sadd" => SAdd, engine, sets::sadd(cx, a).await;
    "srem" => SRem, engine, sets::srem(cx, a).await;
    "smembers" => SMembers, engine, sets::smembers(cx, a).await;
    "sismember" => SIsMember, engine, sets::sismember(cx, a).await;
    "smismember" => SMIsMember, engine, sets::smismember(cx, a).await;
    "scard" => SCard, engine, sets::scard(cx, a).await;
    "spop" => SPop, engine, sets::spop(cx, a).await;
    "srandmember" => SRandMember, engine, sets::srandmember(cx, a).await;
    "smove" => SMove, engine, sets::smove(cx, a).await;
    "sinter" => SInter, engine, sets::combine_cmd(cx, a, sets::Op::Inter).await;
    "sunion" => SUnion, engine, sets::combine_cmd(cx, a, sets::Op::Union).await;
    "sdiff" => SDiff, engine, sets::combine_cmd(cx, a, sets::Op::Diff).await;
    "sinterstore" => SInterStore, engine, sets::store_cmd(cx, a, sets::Op::Inter).await;
    "sunionstore" => SUnionStore, engine, sets::store_cmd(cx, a, sets::Op::Union).await;
    "sdiffstore" => SDiffStore, engine, sets::store_cmd(cx, a, sets::Op::Diff).await;
    "sintercard" => SInterCard, engine, sets::sintercard(cx, a).await;
    "sscan" => SScan, engine, sets::sscan(cx, a).await;
    "subscribe" => Subscribe, engine, pubsub::subscribe(cx, a, crate::pubsub::Kind::Channel);
    "unsubscribe" => Unsubscribe, engine, pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Channel);
    "psubscribe" => PSubscribe, engine, pubsub::subscribe(cx, a, crate::pubsub::Kind::Pattern);
    "punsubscribe" => PUnsubscribe, engine, pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Pattern);
    "ssubscribe" => SSubscribe, engine, pubsub::subscribe(cx, a, crate::pubsub::Kind::Shard);
    "sunsubscribe" => SUnsubscribe, engine, pubsub::unsubscribe(cx, a, crate::pubsub::Kind::Shard);
    "publish" => Publish, engine, pubsub::publish(cx, a, false);
    "spublish" => SPublish, engine, pubsub::publish(cx, a, true);
    "pubsub" => PubSub, engine, pubsub::pubsub(cx, a);
    "zadd" => ZAdd, engine, zsets::zadd(cx, a, false).await;
    "zincrby" => ZIncrBy, engine, zsets::zadd(cx, a, true).await;
    "zrem" => ZRem, engine, zsets::zrem(cx, a).await;
    "zcard" => ZCard, engine, zsets::zcard(cx, a).await;
    "zscore" => ZScore, engine, zsets::zscore(cx, a).await;
    "zmscore" => ZMScore, engine, zsets::zmscore(cx, a).await;
    "zrank" => ZRank, engine, zsets::zrank(cx, a, false).await;
    "zrevrank" => ZRevRank, engine, zsets::zrank(cx, a, true).await;
    "zrange" => ZRange, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::Range).await;
    "zrevrange" => ZRevRange, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::RevRange).await;
    "zrangebyscore" => ZRangeByScore, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::ByScore).await;
    "zrevrangebyscore" => ZRevRangeByScore, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::RevByScore).await;
    "zrangebylex" => ZRangeByLex, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::ByLex).await;
    "zrevrangebylex" => ZRevRangeByLex, engine, zset_ranges::zrange(cx, a, zset_ranges::RangeCmd::RevByLex).await;
    "zrangestore" => ZRangeStore, engine, zset_ranges::zrangestore(cx, a).await;
    "zcount" => ZCount, engine, zset_ranges::zcount(cx, a, false).await;
    "zlexcount" => ZLexCount, engine, zset_ranges::zcount(cx, a, true).await;
    "zremrangebyrank" => ZRemRangeByRank, engine, zset_ranges::zremrange(cx, a, b'r').await;
    "zremrangebyscore" => ZRemRangeByScore, engine, zset_ranges::zremrange(cx, a, b's').await;
    "zremrangebylex" => ZRemRangeByLex, engine, zset_ranges::zremrange(cx, a, b'l').await;
    "zpopmin" => ZPopMin, engine, zsets::zpop(cx, a, false).await;
    "zpopmax" => ZPopMax, engine, zsets::zpop(cx, a, true).await;
    "zmpop" => ZMPop, engine, zsets::zmpop(cx, a).await;
    "zrandmember" => ZRandMember, engine, zsets::zrandmember(cx, a).await;
    "zunion" => ZUnion, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Union, false).await;
    "zinter" => ZInter, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Inter, false).await;
    "zdiff" => ZDiff, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Diff, false).await;
    "zunionstore" => ZUnionStore, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Union, true).await;
    "zinterstore" => ZInterStore, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Inter, true).await;
    "zdiffstore" => ZDiffStore, engine, zset_ops::zsetop(cx, a, zset_ops::SetOp::Diff, true).await;
    "zintercard" => ZInterCard, engine, zset_ops::zintercard(cx, a).await;
    "zscan" => ZScan, engine, zsets::zscan(cx, a).await;
    "lpush" => LPush, engine, lists::push(cx, a, lists::End::Left, false).await;
    "rpush" => RPush, engine, lists::push(cx, a, lists::End::Right, false).await;
    "lpushx" => LPushX, engine, lists::push(cx, a, lists::End::Left, true).await;
    "rpushx" => RPushX, engine, lists::push(cx, a, lists::End::Right, true).await;
    "lpop" => LPop, engine, lists::pop(cx, a, lists::End::Left).await;
    "rpop" => RPop, engine, lists::pop(cx, a, lists::End::Right).await;
    "llen" => LLen, engine, lists::llen(cx, a).await;
    "lindex" => LIndex, engine, lists::lindex(cx, a).await;
    "lrange" => LRange, engine, lists::lrange(cx, a).await;
    "lset" => LSet, engine, lists::lset(cx, a).await;
    "linsert" => LInsert, engine, lists::linsert(cx, a).await;
    "lrem" => LRem, engine, lists::lrem(cx, a).await;
    "ltrim" => LTrim, engine, lists::ltrim(cx, a).await;
    "lpos" => LPos, engine, lists::lpos(cx, a).await;
    "lmove" => LMove, engine, lists::lmove(cx, a, false).await;
    "rpoplpush" => RPopLPush, engine, lists::lmove(cx, a, true).await;
    "lmpop" => LMPop, engine, lists::lmpop(cx, a).await;
    "blpop" => BLPop, engine, blocking::bpop(cx, a, lists::End::Left).await;
    "brpop" => BRPop, engine, blocking::bpop(cx, a, lists::End::Right).await;
    "blmove" => BLMove, engine, blocking::blmove(cx, a, false).await;
    "brpoplpush" => BRPopLPush, engine, blocking::blmove(cx, a, true).await;
    "blmpop" => BLMPop, engine, blocking::blmpop(cx, a).await;
    "bzpopmin" => BZPopMin, engine, blocking::bzpop(cx, a, false).await;
    "bzpopmax" => BZPopMax, engine, blocking::bzpop(cx, a, true).await;
    "bzmpop" => BZMPop, engine, blocking::bzmpop(cx, a).await;
    "setrange" => SetRange, engine, strings::setrange(cx, a).await;
    "getrange" => GetRange, engine, strings::getrange(cx, a).await;
    "substr" => Substr, engine, strings::getrange(cx, a).await;
    "lcs" => Lcs, engine, strings::lcs(cx, a).await;
    "copy" => Copy, engine, keys::copy(cx, a).await;
    "move" => Move, engine, keys::move_key(cx, a).await;
    "touch" => Touch, engine, keys::touch(cx, a).await;
    "object" => Object, engine, object::object(cx, a).await;
    "memory" => Memory, engine, object::memory(cx, a).await;
    "wait" => Wait, engine, blocking::wait(cx, a).await;
    "hexpire" => HExpire, engine, hash_ttl::hexpire(cx, a, hash_ttl::Unit::Seconds, false).await;
    "hpexpire" => HPExpire, engine, hash_ttl::hexpire(cx, a, hash_ttl::Unit::Millis, false).await;
    "hexpireat" => HExpireAt, engine, hash_ttl::hexpire(cx, a, hash_ttl::Unit::Seconds, true).await;
    "hpexpireat" => HPExpireAt, engine, hash_ttl::hexpire(cx, a, hash_ttl::Unit::Millis, true).await;
    "httl" => HTtl, engine, hash_ttl::httl(cx, a, hash_ttl::TtlForm::Seconds).await;
    "hpttl" => HPTtl, engine, hash_ttl::httl(cx, a, hash_ttl::TtlForm::Millis).await;
    "hexpiretime" => HExpireTime, engine, hash_ttl::httl(cx, a, hash_ttl::TtlForm::UnixSeconds).await;
    "hpexpiretime" => HPExpireTime, engine, hash_ttl::httl(cx, a, hash_ttl::TtlForm::UnixMillis).await;
    "hpersist" => HPersist, engine, hash_ttl::hpersist(cx, a).await;
    "hgetex" => HGetEx, engine, hash_ttl::hgetex(cx, a).await;
    "hsetex" => HSetEx, engine, hash_ttl::hsetex(cx, a).await;
    "hgetdel" => HGetDel, engine, hash_ttl::hgetdel(cx, a).await;
    "dump" => Dump, engine, keys::dump(cx, a).await;
    "restore" => Restore, engine, keys::restore(cx, a).await;
}
