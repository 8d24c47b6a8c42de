# Ruby's redis gem (Debian's ruby-redis) through sessiond (gateway or embedded engine):
# multi, watch, pipelined, hashes (mapped_hmset), pub/sub and blocking pops. Prints "ok <checks>"; exits 1 on failure.
require "redis"

host, port = ENV.fetch("SESSIOND_ADDR").split(":")
tag = ENV.fetch("KEY_TAG", "rb")
$checks = 0
def k(tag, name) = "{#{tag}}:#{name}"
def check(cond, what)
  unless cond
    puts "FAIL #{what}"
    exit 1
  end
  $checks += 1
end
def client(host, port) = Redis.new(host: host, port: port.to_i, timeout: 10)

r = client(host, port)
r.del(k(tag, "a"), k(tag, "n"), k(tag, "w"), k(tag, "q"))

res = r.multi do |tx|
  tx.set(k(tag, "a"), "1")
  tx.incr(k(tag, "n"))
  tx.hset(k(tag, "h"), "f", "v")
end
check(res == ["OK", 1, true] || res == ["OK", 1, 1] || res == ["OK", 1, false] || res[0] == "OK", "multi #{res.inspect}")

res = r.pipelined do |p|
  p.get(k(tag, "a"))
  p.hgetall(k(tag, "h"))
end
check(res == ["1", { "f" => "v" }], "pipelined #{res.inspect}")

# A session hash as Rails/Rack stores write it.
r.mapped_hmset(k(tag, "sess"), { "user" => "alice", "csrf" => "t0k3n" })
check(r.mapped_hmget(k(tag, "sess"), "user", "csrf") == { "user" => "alice", "csrf" => "t0k3n" }, "mapped_hmset")

# WATCH, changed by another client: multi returns nil.
r.watch(k(tag, "w"))
client(host, port).set(k(tag, "w"), "theirs")
res = r.multi { |tx| tx.set(k(tag, "w"), "mine") }
check(res.nil?, "watched multi #{res.inspect}")
check(r.get(k(tag, "w")) == "theirs", "watched key kept")

# Pub/sub.
received = nil
subscriber = client(host, port)
sub = Thread.new do
  subscriber.subscribe_with_timeout(5, k(tag, "ch")) do |on|
    on.message do |_ch, msg|
      received = msg
      subscriber.unsubscribe
    end
  end
rescue Redis::TimeoutError
end
deadline = Time.now + 5
delivered = 0
while delivered.zero? && Time.now < deadline
  delivered = r.publish(k(tag, "ch"), "hello")
  sleep 0.05 if delivered.zero?
end
sub.join
check(received == "hello", "message #{received.inspect}")

# Blocking pop answered by another client.
Thread.new { sleep 0.2; client(host, port).rpush(k(tag, "q"), "job") }
check(r.blpop(k(tag, "q"), timeout: 5) == [k(tag, "q"), "job"], "blpop")

# Scripts: EVAL, EVALSHA of a loaded script, and an error raised from Lua.
sha = r.script(:load, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
r.del(k(tag, "counter"))
check(r.evalsha(sha, keys: [k(tag, "counter")], argv: [5]) == 5, "evalsha")
check(r.eval("return {KEYS[1], tonumber(ARGV[1]) * 2}", keys: [k(tag, "x")], argv: [21]) == [k(tag, "x"), 42], "eval")
begin
  r.eval("return redis.error_reply('MY failure')")
  check(false, "error_reply must raise")
rescue Redis::CommandError => e
  check(e.message == "MY failure", "error_reply #{e.message}")
end

puts "ok #{$checks}"
