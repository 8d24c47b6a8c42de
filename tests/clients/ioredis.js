// ioredis through the sessiond gateway: multi(), watch, pipelines, hashes, pub/sub,
// blocking pops and custom Lua commands. Prints "ok <checks>"; exits 1 on failure.
const Redis = require("ioredis");

const [host, port] = process.env.SESSIOND_ADDR.split(":");
const tag = process.env.KEY_TAG || "js";
const k = (name) => `{${tag}}:${name}`;
const opts = { host, port: Number(port), maxRetriesPerRequest: 1, enableOfflineQueue: true };
let checks = 0;
function check(cond, what) {
  if (!cond) {
    console.log("FAIL", what);
    process.exit(1);
  }
  checks++;
}

(async () => {
  const r = new Redis(opts);
  await r.del(k("a"), k("n"), k("h"), k("w"), k("q"));

  let res = await r.multi().set(k("a"), "1").incr(k("n")).hset(k("h"), "f", "v", "g", "w").exec();
  check(JSON.stringify(res) === JSON.stringify([[null, "OK"], [null, 1], [null, 2]]), `multi ${JSON.stringify(res)}`);
  res = await r.pipeline().get(k("a")).hgetall(k("h")).exec();
  check(res[0][1] === "1" && res[1][1].f === "v", `pipeline ${JSON.stringify(res)}`);

  // WATCH, changed by another client: exec() gives null.
  const other = new Redis(opts);
  await r.watch(k("w"));
  await other.set(k("w"), "theirs");
  res = await r.multi().set(k("w"), "mine").exec();
  check(res === null, `watched exec ${JSON.stringify(res)}`);
  check((await r.get(k("w"))) === "theirs", "watched key kept");
  // Not changed: exec() applies.
  await r.watch(k("w"));
  res = await r.multi().set(k("w"), "mine").exec();
  check(res && res[0][1] === "OK", `exec ${JSON.stringify(res)}`);

  // Pub/sub.
  const sub = new Redis(opts);
  const got = new Promise((resolve) => sub.on("message", (ch, msg) => resolve([ch, msg])));
  await sub.subscribe(k("ch"));
  check((await r.publish(k("ch"), "hello")) >= 1, "publish");
  const [ch, msg] = await got;
  check(ch === k("ch") && msg === "hello", `message ${ch} ${msg}`);
  sub.disconnect();

  // Blocking pop answered by another client.
  setTimeout(() => other.rpush(k("q"), "job"), 200);
  res = await r.blpop(k("q"), 5);
  check(JSON.stringify(res) === JSON.stringify([k("q"), "job"]), `blpop ${JSON.stringify(res)}`);

  // A custom command: EVALSHA, with EVAL on NOSCRIPT.
  r.defineCommand("getset2", {
    numberOfKeys: 1,
    lua: "local v = redis.call('GET', KEYS[1]); redis.call('SET', KEYS[1], ARGV[1]); return v",
  });
  check((await r.getset2(k("a"), "2")) === "1", "custom command");
  check((await r.get(k("a"))) === "2", "custom command wrote");
  // Custom commands in a pipeline and in a transaction, and one that returns a table.
  r.defineCommand("pair", {
    numberOfKeys: 2,
    lua: "return {redis.call('INCR', KEYS[1]), redis.call('INCRBY', KEYS[2], ARGV[1])}",
  });
  res = await r.pipeline().pair(k("p1"), k("p2"), 5).pair(k("p1"), k("p2"), 5).exec();
  check(JSON.stringify(res) === JSON.stringify([[null, [1, 5]], [null, [2, 10]]]), `pipelined custom ${JSON.stringify(res)}`);
  res = await r.multi().pair(k("p1"), k("p2"), 1).get(k("p1")).exec();
  check(JSON.stringify(res) === JSON.stringify([[null, [3, 11]], [null, "3"]]), `custom in multi ${JSON.stringify(res)}`);
  // A script error reaches the caller as a ReplyError naming the script.
  r.defineCommand("broken", { numberOfKeys: 0, lua: "return redis.call('NOSUCH')" });
  try {
    await r.broken();
    check(false, "broken script must fail");
  } catch (e) {
    check(/Unknown Redis command called from script/.test(e.message), `script error ${e.message}`);
  }

  r.disconnect();
  other.disconnect();
  console.log("ok", checks);
})().catch((e) => {
  console.log("FAIL", e);
  process.exit(1);
});
