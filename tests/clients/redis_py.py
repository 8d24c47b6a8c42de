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

# Locks run Lua scripts (EVALSHA, loaded on NOSCRIPT): not on the embedded engine until it
# runs Lua (SESSIOND_NO_LUA).
if not os.environ.get("SESSIOND_NO_LUA"):
    lock = r.lock(k("lock"), timeout=5)
    check(lock.acquire(blocking=False), "lock acquired")
    check(not new().lock(k("lock"), timeout=5).acquire(blocking=False), "lock held")
    lock.release()
    check(new().lock(k("lock"), timeout=5).acquire(blocking=False), "lock free again")

print("ok", checks)
