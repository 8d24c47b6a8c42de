"""redis-py through the sessiond gateway: pipelines, transactions with WATCH, hashes,
pub/sub, blocking pops and Lua-backed locks. Keys share a hash tag so the same script runs
against a cluster. Prints "ok <checks>"; exits 1 on the first failure."""
import os
import sys
import threading

import redis

host, port = os.environ["SESSIOND_ADDR"].rsplit(":", 1)
tag = os.environ.get("KEY_TAG", "py")


def new():
    return redis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=10)


def k(name):
    return "{%s}:%s" % (tag, name)


checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("FAIL", what)
        sys.exit(1)
    checks += 1


r = new()
r.delete(k("a"), k("n"), k("h"), k("c"), k("q"), k("w"))

# pipeline() is a MULTI/EXEC transaction by default (Django's cache.set_many uses it).
res = r.pipeline().set(k("a"), "1").incr(k("n")).hset(k("h"), mapping={"f": "v", "g": "w"}).expire(k("h"), 100).execute()
check(res == [True, 1, 2, True], "transactional pipeline %r" % res)
res = r.pipeline(transaction=False).get(k("a")).hgetall(k("h")).ttl(k("h")).execute()
check(res[0] == "1" and res[1] == {"f": "v", "g": "w"} and 0 < res[2] <= 100, "pipeline %r" % res)

# A queued command Redis rejects aborts the whole transaction.
try:
    r.pipeline().set(k("x"), "1").execute_command("GET").execute()
    check(False, "EXECABORT expected")
except redis.ResponseError as e:
    check("EXECABORT" in str(e) or "wrong number" in str(e), "abort %s" % e)
check(r.exists(k("x")) == 0, "aborted transaction applied nothing")


# transaction() retries on WATCH conflicts: 4 threads x 25 increments, none lost.
def incr_all():
    c = new()

    def incr(pipe):
        v = int(pipe.get(k("c")) or 0)
        pipe.multi()
        pipe.set(k("c"), v + 1)

    for _ in range(25):
        c.transaction(incr, k("c"))


threads = [threading.Thread(target=incr_all) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
check(r.get(k("c")) == "100", "optimistic increments %r" % r.get(k("c")))

# WATCH then a change by someone else: the transaction fails.
with r.pipeline() as pipe:
    pipe.watch(k("w"))
    new().set(k("w"), "theirs")
    pipe.multi()
    pipe.set(k("w"), "mine")
    try:
        pipe.execute()
        check(False, "WatchError expected")
    except redis.WatchError:
        check(True, "")
check(r.get(k("w")) == "theirs", "watched key kept")

# Pub/sub.
p = r.pubsub()
p.subscribe(k("ch"))
msg = p.get_message(timeout=5)
check(msg and msg["type"] == "subscribe", "subscribe %r" % msg)
check(r.publish(k("ch"), "hello") >= 1, "publish reached a subscriber")
msg = p.get_message(timeout=5)
check(msg and msg["data"] == "hello", "message %r" % msg)
p.close()

# A blocking pop answered by another client's push.
threading.Timer(0.2, lambda: new().rpush(k("q"), "job")).start()
check(r.blpop(k("q"), timeout=5) == (k("q"), "job"), "blpop")
check(r.blpop(k("q"), timeout=0.1) is None, "blpop timeout")

# Locks run Lua scripts (EVALSHA, loaded on NOSCRIPT): acquire, extend, reacquire, release;
# a lock someone else holds cannot be released or extended.
lock = r.lock(k("lock"), timeout=5)
check(lock.acquire(blocking=False), "lock acquired")
other = new().lock(k("lock"), timeout=5)
check(not other.acquire(blocking=False), "lock held")
check(lock.extend(10), "lock extended")
check(9000 < r.pttl(k("lock")) <= 15000, "extended ttl %r" % r.pttl(k("lock")))
check(lock.reacquire(), "lock reacquired")
check(4000 < r.pttl(k("lock")) <= 5000, "reacquired ttl %r" % r.pttl(k("lock")))
# A client whose token is not the holder's (redis-py clears its token on release, so it is
# set before each attempt).
other.local.token = b"not-the-owner"
try:
    other.extend(10)
    check(False, "extending someone else's lock must fail")
except redis.exceptions.LockNotOwnedError:
    check(True, "")
other.local.token = b"not-the-owner"
try:
    other.release()
    check(False, "releasing someone else's lock must fail")
except redis.exceptions.LockNotOwnedError:
    check(True, "")
check(r.exists(k("lock")) == 1, "a foreign release left the lock")
lock.release()
check(r.exists(k("lock")) == 0, "released")
check(new().lock(k("lock"), timeout=5).acquire(blocking=False), "lock free again")

# Redisson-style: renew every lock key given in KEYS (pexpire in a loop over KEYS).
for name in ("r1", "r2", "r3"):
    r.set(k(name), "owner")
renew = r.register_script(
    "local n = 0 for i, key in ipairs(KEYS) do "
    "if redis.call('get', key) == ARGV[1] then redis.call('pexpire', key, ARGV[2]) n = n + 1 end end "
    "return n"
)
check(renew(keys=[k("r1"), k("r2"), k("r3")], args=["owner", 30000]) == 3, "renewed 3")
check(all(0 < r.pttl(k(n)) <= 30000 for n in ("r1", "r2", "r3")), "renewed ttls")

# ASP.NET Core's RedisCache (.NET 8 and earlier) stores a session with this script.
aspnet = r.register_script(
    "redis.call('HSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[4])\n"
    "if ARGV[3] ~= '-1' then\n  redis.call('EXPIRE', KEYS[1], ARGV[3])\nend\nreturn 1"
)
check(aspnet(keys=[k("sess")], args=["-1", "1200000000", "1200", "payload"]) == 1, "aspnet set")
check(r.hgetall(k("sess")) == {"absexp": "-1", "sldexp": "1200000000", "data": "payload"}, "aspnet hash")
check(0 < r.ttl(k("sess")) <= 1200, "aspnet ttl")

# A fixed-window rate limiter: INCR, EXPIRE on the first hit.
limiter = r.register_script(
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "if n > tonumber(ARGV[2]) then return 0 end return 1"
)
r.delete(k("rate"))
allowed = sum(limiter(keys=[k("rate")], args=[60, 5]) for _ in range(8))
check(allowed == 5, "rate limiter allowed %d" % allowed)
check(0 < r.ttl(k("rate")) <= 60, "rate window")

# A job queue: move a job from waiting to active and record it, all keys declared.
r.delete(k("wait"), k("active"), k("jobs"))
r.rpush(k("wait"), "job1", "job2")
take = r.register_script(
    "local id = redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) "
    "if not id then return false end "
    "redis.call('HSET', KEYS[3], id, ARGV[1]) return id"
)
check(take(keys=[k("wait"), k("active"), k("jobs")], args=["worker-1"]) == "job2", "job taken")
check(r.lrange(k("active"), 0, -1) == ["job2"] and r.hget(k("jobs"), "job2") == "worker-1", "job recorded")
check(take(keys=[k("wait"), k("active"), k("jobs")], args=["worker-1"]) == "job1", "second job")
check(take(keys=[k("wait"), k("active"), k("jobs")], args=["worker-1"]) is None, "queue empty")

print("ok", checks)
