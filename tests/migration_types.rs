//! Migrations carry every type, live (issue #15): string sessions, Spring-shaped hash
//! sessions and per-user set indexes move between Redis-protocol stores while clients read
//! and write them through sessiond. 5,000 keys exist before the start; the stages are stepped
//! from `off` to `complete` with percentage ramps and a rollback of two stages in the middle
//! (CONFIG SET, live). Asserted: no read of a live session ever misses or differs (no
//! logouts), and at the end every key has exactly the type and value the clients left it
//! with, and its TTL (no lost writes). Three moves: redis-server to the embedded engine, the
//! embedded engine to redis-server, and redis-server to a 3-master Redis Cluster. Some of the
//! writes are MULTI/EXEC transactions.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{encode, migrate_cmd, redis8_server, redis_server, sessiond, Conn, Proc, Value};

/// Preloaded: 2,000 string sessions, 2,000 hash sessions, 1,000 set indexes.
const STRINGS: usize = 2000;
const HASHES: usize = 2000;
const SETS: usize = 1000;
const CLIENTS: usize = 4;
/// Keys of each type each client owns (the rest are only migrated).
const OWNED: usize = 25;
/// Every shadow read compared (the default compares a sample), so the counts are exact.
const SAMPLE: &str = "--migrate-shadow-sample";

fn str_key(i: usize) -> String {
    format!("sess:{i}")
}

fn hash_key(i: usize) -> String {
    format!("spring:session:sessions:{i:06}")
}

fn set_key(u: usize) -> String {
    format!("spring:session:index:user:{u}")
}

/// What one key must hold.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    None,
    Str(String),
    Hash(BTreeMap<String, String>),
    Set(BTreeSet<String>),
}

fn preloaded() -> HashMap<String, Want> {
    let mut m = HashMap::new();
    for i in 0..STRINGS {
        m.insert(str_key(i), Want::Str(format!("legacy-{i}")));
    }
    for i in 0..HASHES {
        m.insert(hash_key(i), Want::Hash(spring(i, 1)));
    }
    for u in 0..SETS {
        let members = (0..HASHES)
            .filter(|i| i % SETS == u)
            .map(|i| format!("{i:06}"))
            .collect();
        m.insert(set_key(u), Want::Set(members));
    }
    m
}

/// A Spring Session hash: what `RedisIndexedSessionRepository` writes.
fn spring(i: usize, accessed: u64) -> BTreeMap<String, String> {
    [
        ("creationTime", "1700000000000".to_string()),
        ("lastAccessedTime", accessed.to_string()),
        ("maxInactiveInterval", "1800".to_string()),
        ("sessionAttr:user", format!("user{}", i % SETS)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Sends every command, then reads every reply (one round trip per batch).
fn pipeline(c: &mut Conn, cmds: &[Vec<String>]) {
    for chunk in cmds.chunks(500) {
        let mut buf = Vec::new();
        for cmd in chunk {
            let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
            buf.extend(encode(&args));
        }
        c.send_raw(&buf);
        for cmd in chunk {
            let r = c.read().expect("reply");
            assert!(!matches!(r, Value::Error(_)), "{cmd:?}: {r:?}");
        }
    }
}

fn preload(c: &mut Conn) {
    let mut cmds = Vec::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (k, w) in preloaded() {
        match w {
            Want::Str(v) => cmds.push(s(&["SETEX", &k, "3600", &v])),
            Want::Hash(h) => {
                let mut cmd = s(&["HSET", &k]);
                for (f, v) in h {
                    cmd.push(f);
                    cmd.push(v);
                }
                cmds.push(cmd);
                cmds.push(s(&["EXPIRE", &k, "3600"]));
            }
            Want::Set(m) => {
                let mut cmd = s(&["SADD", &k]);
                cmd.extend(m);
                cmds.push(cmd);
            }
            Want::None => {}
        }
    }
    pipeline(c, &cmds);
}

/// Reads a key the way its type is read; `Want::None` when missing.
fn read(c: &mut Conn, key: &str, like: &Want) -> Want {
    let items = |v: Value| -> Vec<String> {
        match v {
            Value::Array(items) => items.into_iter().map(|i| i.as_str()).collect(),
            other => panic!("{key}: {other:?}"),
        }
    };
    match like {
        Want::Str(_) => match c.cmd(&["GET", key]) {
            Value::Null => Want::None,
            v => Want::Str(v.as_str()),
        },
        Want::Hash(_) => {
            let flat = items(c.cmd(&["HGETALL", key]));
            if flat.is_empty() {
                return Want::None;
            }
            Want::Hash(
                flat.chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            )
        }
        Want::Set(_) => {
            let m: BTreeSet<String> = items(c.cmd(&["SMEMBERS", key])).into_iter().collect();
            if m.is_empty() {
                Want::None
            } else {
                Want::Set(m)
            }
        }
        Want::None => Want::None,
    }
}

/// How each key of a type reads (the type is kept when a key is deleted).
fn kind_of(key: &str) -> Want {
    if key.starts_with("sess:") {
        Want::Str(String::new())
    } else if key.starts_with("spring:session:sessions:") {
        Want::Hash(BTreeMap::new())
    } else {
        Want::Set(BTreeSet::new())
    }
}

/// One client's loop over the keys it owns, so it knows what each must hold.
fn client(
    port: u16,
    me: usize,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    logouts: Arc<Mutex<Vec<String>>>,
) -> HashMap<String, Want> {
    let mut c = Conn::connect(port);
    let all = preloaded();
    let range = me * OWNED..(me + 1) * OWNED;
    let mut want: HashMap<String, Want> = range
        .clone()
        .flat_map(|i| [str_key(i), hash_key(i), set_key(i)])
        .map(|k| {
            let w = all[&k].clone();
            (k, w)
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(me as u64 + 15);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let i = range.start + rng.usize(..OWNED);
        let op = rng.u8(..100);
        let key = match op {
            0..=54 | 97..=99 => hash_key(i),
            55..=77 => set_key(i),
            _ => str_key(i),
        };
        let w = want[&key].clone();
        match op {
            // Reads: the session must be exactly what this client left.
            0..=29 | 55..=69 | 78..=89 => {
                let got = read(&mut c, &key, &kind_of(&key));
                if got != w {
                    logouts
                        .lock()
                        .expect("lock")
                        .push(format!("{key}: got {got:?}, want {w:?}"));
                }
            }
            // A request touches the hash session (Spring: HSET, then PEXPIRE).
            30..=44 => {
                let mut h = match w {
                    Want::Hash(h) => h,
                    _ => spring(i, 0),
                };
                h.insert("lastAccessedTime".into(), n.to_string());
                let mut cmd = vec!["HSET".to_string(), key.clone()];
                for (f, v) in &h {
                    cmd.push(f.clone());
                    cmd.push(v.clone());
                }
                let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                assert!(matches!(c.cmd(&args), Value::Int(_)), "HSET {key}");
                assert_eq!(c.cmd(&["PEXPIRE", &key, "1800000"]), Value::Int(1));
                want.insert(key, Want::Hash(h));
            }
            // Not idempotent: replaying it on the second store would count twice.
            45..=49 => {
                let mut h = match w {
                    Want::Hash(h) => h,
                    _ => BTreeMap::new(),
                };
                let hits = h.get("hits").map_or(0, |v| v.parse::<i64>().unwrap_or(0)) + 1;
                // In a transaction (redis-py, Predis and ioredis send MULTI/EXEC): run as one
                // on the authoritative store, its keys mirrored after.
                assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
                assert_eq!(
                    c.cmd(&["HINCRBY", &key, "hits", "1"]),
                    Value::Simple("QUEUED".into())
                );
                assert_eq!(
                    c.cmd(&["PEXPIRE", &key, "1800000"]),
                    Value::Simple("QUEUED".into())
                );
                assert_eq!(
                    c.cmd(&["EXEC"]),
                    Value::Array(vec![Value::Int(hits), Value::Int(1)]),
                    "MULTI/EXEC on {key}"
                );
                h.insert("hits".into(), hits.to_string());
                want.insert(key, Want::Hash(h));
            }
            50..=54 => {
                c.cmd(&["DEL", &key]);
                want.insert(key, Want::None);
            }
            97..=99 => {
                if let Want::Hash(mut h) = w {
                    c.cmd(&["HDEL", &key, "sessionAttr:user"]);
                    h.remove("sessionAttr:user");
                    let w = if h.is_empty() {
                        Want::None
                    } else {
                        Want::Hash(h)
                    };
                    want.insert(key, w);
                }
            }
            70..=77 => {
                let mut m = match w {
                    Want::Set(m) => m,
                    _ => BTreeSet::new(),
                };
                let member = format!("m{}", rng.u8(..4));
                if rng.bool() {
                    c.cmd(&["SADD", &key, &member]);
                    m.insert(member);
                } else {
                    c.cmd(&["SREM", &key, &member]);
                    m.remove(&member);
                }
                let w = if m.is_empty() {
                    Want::None
                } else {
                    Want::Set(m)
                };
                want.insert(key, w);
            }
            _ => {
                let v = format!("v{me}-{n}");
                assert_eq!(
                    c.cmd(&["SETEX", &key, "3600", &v]),
                    Value::Simple("OK".into())
                );
                want.insert(key, Want::Str(v));
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    want
}

/// Steps the stages under load and checks no logouts, no lost writes, every type and TTL.
fn migrate_under_load(s: &Proc) {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let logouts = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|me| {
            let (stop, ops, logouts) = (stop.clone(), ops.clone(), logouts.clone());
            let port = s.port;
            std::thread::spawn(move || client(port, me, stop, ops, logouts))
        })
        .collect();
    let mut admin = s.connect();
    let mut step = |stage: &str, percent: &str| {
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "migrate-stage",
                stage,
                "migrate-percent",
                percent
            ]),
            Value::Simple("OK".into())
        );
        let from = ops.load(Ordering::Relaxed);
        let deadline = Instant::now() + support::DEADLINE;
        while ops.load(Ordering::Relaxed) < from + 400 {
            assert!(
                Instant::now() < deadline,
                "clients stalled at {stage} {percent}%"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    step("dualwrite", "1");
    step("dualwrite", "100");
    step("shadow", "1");
    step("shadow", "100");
    step("live", "1");
    step("live", "50");
    step("live", "100");
    step("rampdown", "100");
    // Roll back two stages, then forward again.
    step("shadow", "100");
    step("live", "100");
    step("rampdown", "100");
    // Every key read once in rampdown is copied forward, whatever its type.
    let mut sweep = s.connect();
    for k in preloaded().keys() {
        read(&mut sweep, k, &kind_of(k));
    }
    step("complete", "100");
    stop.store(true, Ordering::Relaxed);
    let mut want = preloaded();
    for t in clients {
        want.extend(t.join().expect("client"));
    }
    let logouts = logouts.lock().expect("lock");
    assert!(
        logouts.is_empty(),
        "{} reads saw the wrong session, e.g. {:?}",
        logouts.len(),
        &logouts[..logouts.len().min(3)]
    );
    // In `complete` sessiond reads only the new store: every key is there as left.
    let mut c = s.connect();
    let mut wrong = Vec::new();
    for (k, w) in &want {
        let got = read(&mut c, k, &kind_of(k));
        if &got != w {
            wrong.push(format!("{k}: got {got:?}, want {w:?}"));
            continue;
        }
        let ttl = c.cmd(&["TTL", k]);
        let ok = match (w, &ttl) {
            (Want::None, Value::Int(-2)) => true,
            (Want::Set(_), Value::Int(-1)) => true,
            (Want::Str(_) | Want::Hash(_), Value::Int(t)) => (1..=3600).contains(t),
            _ => false,
        };
        if !ok {
            wrong.push(format!("{k}: TTL {ttl:?} for {w:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} keys differ at the end, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    let info = c.cmd(&["INFO", "migration"]).as_str();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(field("secondary_write_errors"), 0, "{info}");
    assert!(field("compare_match") > 0, "{info}");
    assert!(field("copied_forward") > 0, "{info}");
    // Typed reads were compared, and counted by family.
    assert!(info.contains("compare_family_hash:match="), "{info}");
    assert!(info.contains("compare_family_set:match="), "{info}");
}

#[test]
fn every_type_from_redis_to_embedded() {
    let old = redis_server(&[]);
    preload(&mut old.connect());
    let url = format!("redis://127.0.0.1:{}", old.port);
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        SAMPLE,
        "100",
    ]);
    migrate_under_load(&s);
}

#[test]
fn every_type_from_embedded_to_redis() {
    let new = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", new.port);
    let s = sessiond(&[
        "--migrate-from",
        "embedded",
        "--migrate-to",
        &url,
        SAMPLE,
        "100",
    ]);
    // Stage off: the keys go to the old store, the embedded engine, only.
    preload(&mut s.connect());
    assert_eq!(new.connect().cmd(&["DBSIZE"]), Value::Int(0));
    migrate_under_load(&s);
}

#[test]
fn every_type_from_redis_to_a_cluster() {
    let old = redis_server(&[]);
    preload(&mut old.connect());
    let nodes = support::redis_cluster();
    let from = format!("redis://127.0.0.1:{}", old.port);
    let to = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let s = sessiond(&["--migrate-from", &from, "--migrate-to", &to, SAMPLE, "100"]);
    migrate_under_load(&s);
    // The keys really are spread over the three primaries.
    for n in &nodes {
        let keys = n.connect().cmd(&["DBSIZE"]);
        assert!(matches!(keys, Value::Int(k) if k > 1000), "{keys:?}");
    }
}

/// `migrate verify` between Redis-protocol stores compares values by content, page by page:
/// after a backfill into a redis-server and into the embedded engine (which encodes DUMP
/// payloads its own way) both are clean; then each kind of difference made in the target
/// is reported once, and a hash rebuilt with the same fields in another order is not a
/// difference.
#[test]
fn verify_compares_every_type_by_content() {
    let (old, new, _, total) = preloaded_pair();
    let from = format!("redis://127.0.0.1:{}", old.port);
    let to = format!("redis://127.0.0.1:{}", new.port);
    let dir = support::TempDir::new("verify-engine");
    let engine_dir = dir.0.display().to_string();
    for target in [&to[..], "embedded"] {
        let sides = ["--from", &from, "--to", target, "--dir", &engine_dir];
        succeeds(
            migrate_cmd(&["backfill"])
                .args(sides)
                .args(["--rate", "0", "--quiet"]),
        );
        let report = succeeds(migrate_cmd(&["verify"]).args(sides));
        assert!(
            report.contains(&format!(
                "{total} sessions checked; 0 missing, 0 with another value, 0 with a TTL"
            )),
            "{target}: {report}"
        );
    }

    let mut n = new.connect();
    // The same fields in another order: another payload, the same hash.
    let h = hash_key(6);
    assert_eq!(n.cmd(&["HDEL", &h, "creationTime"]), Value::Int(1));
    assert_eq!(
        n.cmd(&["HSET", &h, "creationTime", "1700000000000"]),
        Value::Int(1)
    );
    assert_eq!(n.cmd(&["DEL", &str_key(3)]), Value::Int(1));
    assert_eq!(
        n.cmd(&["HSET", &hash_key(5), "lastAccessedTime", "2"]),
        Value::Int(0)
    );
    assert_eq!(n.cmd(&["ZADD", "zset:17", "9", "a"]), Value::Int(0));
    assert_eq!(n.cmd(&["RPUSH", "list:42", "z"]), Value::Int(4));
    assert_eq!(n.cmd(&["PEXPIRE", &set_key(5), "999999999"]), Value::Int(1));
    let report = support::report_of(
        &mut migrate_cmd(&["verify", "--from", &from, "--to", &to]),
        false,
    );
    assert!(
        report.contains(&format!(
            "{total} sessions checked; 1 missing, 3 with another value, 1 with a TTL"
        )),
        "{report}"
    );
}

/// `migrate backfill` into a 3-master cluster: each page's keys span every primary and
/// go as one pipelined request per node; every key arrives with its type, elements and
/// absolute expiry, on the node that serves its slot.
#[test]
fn backfill_into_a_cluster() {
    let old = redis_server(&[]);
    let mut o = old.connect();
    preload(&mut o);
    let total = STRINGS + HASHES + SETS + more_types(&mut o);
    let nodes = support::redis_cluster();
    let from = format!("redis://127.0.0.1:{}", old.port);
    let to = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let report = succeeds(
        migrate_cmd(&["backfill", "--from", &from, "--to", &to])
            .args(["--batch", "500", "--rate", "0", "--quiet"]),
    );
    assert!(
        report.contains(&format!("{total} sessions seen, {total} copied")),
        "{report}"
    );
    let mut conns: Vec<Conn> = nodes.iter().map(|n| n.connect()).collect();
    let mut sum = 0;
    for c in &mut conns {
        let Value::Int(n) = c.cmd(&["DBSIZE"]) else {
            panic!("DBSIZE")
        };
        assert!(n > 0, "every primary holds some keys");
        sum += n;
    }
    assert_eq!(sum, total as i64);
    for k in sample_keys() {
        let owner = conns
            .iter_mut()
            .find_map(|c| (c.cmd(&["EXISTS", &k]) == Value::Int(1)).then_some(c))
            .unwrap_or_else(|| panic!("{k} on no node"));
        let (a, b) = (dump_view(&mut o, &k), dump_view(owner, &k));
        assert_eq!(a, b, "{k}");
    }
}

/// A legacy store holds strings only: any other type is refused with an error that names
/// it, and nothing is written.
#[test]
fn legacy_stores_refuse_other_types_by_name() {
    let dir = support::TempDir::new("php-files");
    let files = format!("files://{}", dir.0.display());
    let s = sessiond(&["--migrate-from", &files, "--migrate-to", "embedded"]);
    let mut c = s.connect();
    let r = c.cmd(&["HSET", "PHPREDIS_SESSION:x", "f", "v"]);
    let Value::Error(e) = r else { panic!("{r:?}") };
    assert!(e.contains("php-files"), "{e}");
    assert!(e.contains("'hset'"), "{e}");
    assert_eq!(c.cmd(&["EXISTS", "PHPREDIS_SESSION:x"]), Value::Int(0));
    // Strings still work.
    assert_eq!(
        c.cmd(&["SET", "PHPREDIS_SESSION:x", "v"]),
        Value::Simple("OK".into())
    );
}

/// One key of each type that `preload` and `more_types` write.
fn sample_keys() -> [String; 5] {
    [
        str_key(3),
        hash_key(1999),
        set_key(5),
        "zset:17".to_string(),
        "list:42".to_string(),
    ]
}

/// Runs a `migrate` command that must succeed: its report (standard output).
fn succeeds(cmd: &mut std::process::Command) -> String {
    support::report_of(cmd, true)
}

/// Two redis-servers, the first preloaded with every type: (old, new, a connection to
/// old, how many keys it holds).
fn preloaded_pair() -> (Proc, Proc, Conn, usize) {
    let old = redis_server(&[]);
    let new = redis_server(&[]);
    let mut o = old.connect();
    preload(&mut o);
    let total = STRINGS + HASHES + SETS + more_types(&mut o);
    (old, new, o, total)
}

/// Sorted sets and lists too, for the backfill.
fn more_types(c: &mut Conn) -> usize {
    let mut cmds = Vec::new();
    for i in 0..200 {
        let k = format!("zset:{i}");
        cmds.push(vec![
            "ZADD".into(),
            k.clone(),
            "1.5".into(),
            "a".into(),
            i.to_string(),
            "b".into(),
        ]);
        cmds.push(vec!["PEXPIRE".into(), k, "3600000".into()]);
        cmds.push(vec![
            "RPUSH".into(),
            format!("list:{i}"),
            "x".into(),
            "y".into(),
            i.to_string(),
        ]);
    }
    pipeline(c, &cmds);
    400
}

/// What a key holds on a server, compared across two: type, elements, absolute expiry.
fn dump_view(c: &mut Conn, key: &str) -> (Value, Value, Value) {
    let kind = c.cmd(&["TYPE", key]);
    let content = match kind.as_str().as_str() {
        "string" => c.cmd(&["GET", key]),
        "hash" => match c.cmd(&["HGETALL", key]) {
            Value::Array(items) => {
                let mut pairs: Vec<String> = items
                    .chunks(2)
                    .map(|p| format!("{}={}", p[0].as_str(), p[1].as_str()))
                    .collect();
                pairs.sort();
                Value::Array(pairs.iter().map(|p| Value::bulk(p)).collect())
            }
            v => v,
        },
        "set" => match c.cmd(&["SMEMBERS", key]) {
            Value::Array(mut items) => {
                items.sort_by_key(|v| v.as_str());
                Value::Array(items)
            }
            v => v,
        },
        "zset" => c.cmd(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
        "list" => c.cmd(&["LRANGE", key, "0", "-1"]),
        _ => Value::Null,
    };
    (kind, content, c.cmd(&["PEXPIRETIME", key]))
}

/// A backfill between `sides` (`--from … --to …`), rate-limited, killed with SIGKILL
/// half-way and run again from its checkpoint to the end: the second run's report, which
/// must have seen all `total` sessions.
fn killed_and_resumed(sides: &[&str], checkpoint: &std::path::Path, total: usize) -> String {
    let cp = checkpoint.to_string_lossy().into_owned();
    let mut base = sides.to_vec();
    base.extend(["--batch", "100", "--checkpoint", &cp, "--quiet"]);
    let at = support::backfill_killed_after(&base, "2000", checkpoint, 1000);
    assert!(at < total as u64, "interrupted too late");
    let report = succeeds(migrate_cmd(&["backfill"]).args(&base).args(["--rate", "0"]));
    assert!(
        report.contains(&format!("{total} sessions seen")),
        "{report}"
    );
    report
}

/// Backfill from redis-server into the embedded engine, killed with SIGKILL half-way and
/// resumed from its checkpoint: no session is lost. The checkpoint moves past a page only
/// once the engine's log holds the page's copies; before, the engine's writes stayed in
/// the log's buffer until the end of the run, so a run killed half-way had written nothing,
/// and the resumed run skipped everything its checkpoint counted as copied.
#[test]
fn backfill_into_the_engine_killed_and_resumed_loses_nothing() {
    let old = redis_server(&[]);
    let mut o = old.connect();
    preload(&mut o);
    let total = STRINGS + HASHES + SETS + more_types(&mut o);
    let dir = support::TempDir::new("backfill-engine");
    let data = dir.path("data");
    let checkpoint = dir.path("backfill.json");
    let d = data.to_string_lossy().into_owned();
    let from = format!("redis://127.0.0.1:{}", old.port);
    let sides = ["--from", &from, "--to", "embedded", "--dir", &d];
    let report = killed_and_resumed(&sides, &checkpoint, total);
    let served = sessiond(&["--dir", &d]);
    let mut n = served.connect();
    assert_eq!(
        n.cmd(&["DBSIZE"]),
        Value::Int(total as i64),
        "sessions lost across the kill: {report}"
    );
    for k in sample_keys() {
        let (a, b) = (dump_view(&mut o, &k), dump_view(&mut n, &k));
        assert_eq!(a, b, "{k}");
    }
}

/// Backfill of every type from redis-server to redis-server: rate-limited, killed half-way
/// and resumed from its checkpoint, never overwriting a key written to the target
/// meanwhile, every key's type, elements and absolute expiry carried; then verify is clean
/// while a router writes and deletes keys in both stores.
#[test]
fn backfill_every_type_resumes_and_verify_is_clean_under_traffic() {
    let (old, new, mut o, total) = preloaded_pair();
    // Written to the new store by the router meanwhile: newer than the old store's copy.
    let mut n = new.connect();
    let newer = hash_key(7);
    assert_eq!(
        n.cmd(&["HSET", &newer, "lastAccessedTime", "99"]),
        Value::Int(1)
    );

    let dir = support::TempDir::new("backfill-types");
    let checkpoint = dir.path("backfill.json");
    let from = format!("redis://127.0.0.1:{}", old.port);
    let to = format!("redis://127.0.0.1:{}", new.port);
    let report = killed_and_resumed(&["--from", &from, "--to", &to], &checkpoint, total);
    // Resumed: only the pages whose writes were in flight at the kill (two at most, see
    // `backfill::AHEAD`) and the newer key were already there.
    let kept: u64 = report
        .split(" already there")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("kept count in the report");
    assert!((1..=1 + 2 * 100).contains(&kept), "{report}");
    assert_eq!(n.cmd(&["DBSIZE"]), Value::Int(total as i64));
    assert_eq!(
        n.cmd(&["HGETALL", &newer]),
        Value::Array(vec![Value::bulk("lastAccessedTime"), Value::bulk("99")]),
        "a key written meanwhile is never overwritten"
    );
    for k in sample_keys() {
        let (a, b) = (dump_view(&mut o, &k), dump_view(&mut n, &k));
        assert_eq!(a, b, "{k}");
        assert!(!matches!(a.0.as_str().as_str(), "none"), "{k}");
    }

    // verify, while a router in dualwrite changes and deletes keys in both stores: clean.
    assert_eq!(o.cmd(&["DEL", &newer]), Value::Int(1));
    assert_eq!(n.cmd(&["DEL", &newer]), Value::Int(1));
    let s = sessiond(&[
        "--migrate-from",
        &from,
        "--migrate-to",
        &to,
        "--migrate-stage",
        "dualwrite",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, writes, port) = (stop.clone(), writes.clone(), s.port);
        std::thread::spawn(move || {
            let mut c = Conn::connect(port);
            let mut rng = fastrand::Rng::with_seed(3);
            while !stop.load(Ordering::Relaxed) {
                let i = rng.usize(..HASHES);
                match rng.u8(..4) {
                    0 => c.cmd(&["DEL", &hash_key(i)]),
                    1 => c.cmd(&["SADD", &set_key(i % SETS), "new"]),
                    2 => c.cmd(&["DEL", &str_key(i)]),
                    _ => c.cmd(&["HINCRBY", &hash_key(i), "hits", "1"]),
                };
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let deadline = Instant::now() + support::DEADLINE;
    while writes.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "no traffic");
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = writes.load(Ordering::Relaxed);
    let out = migrate_cmd(&["verify", "--from", &from, "--to", &to])
        .output()
        .expect("verify");
    let during = writes.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("0 missing, 0 with another value, 0 with a TTL"),
        "{report}"
    );
    assert!(during > 0, "verify ran while traffic ran");
}

/// MULTI/EXEC during a migration: the queue runs as one transaction on the store written
/// first, and the keys it changed are then the same in the other store; what cannot be
/// routed (WATCH, a keyless command, a blocking one) is refused with an error that says why.
#[test]
fn transactions_run_on_the_authoritative_store_and_are_mirrored() {
    let old = redis_server(&[]);
    let new = redis_server(&[]);
    let s = sessiond(&[
        "--migrate-from",
        &format!("redis://127.0.0.1:{}", old.port),
        "--migrate-to",
        &format!("redis://127.0.0.1:{}", new.port),
        "--migrate-stage",
        "dualwrite",
    ]);
    let (mut c, mut o, mut n) = (s.connect(), old.connect(), new.connect());
    // Shadow reads are sampled at 10% unless set (the benchmark's choice).
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "migrate-shadow-sample"]),
        Value::Array(vec![
            Value::bulk("migrate-shadow-sample"),
            Value::bulk("10")
        ])
    );
    let queued = Value::Simple("QUEUED".into());
    for (stage, serving) in [("dualwrite", "old"), ("live", "new")] {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "migrate-stage", stage]),
            Value::Simple("OK".into())
        );
        assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
        assert_eq!(c.cmd(&["HINCRBY", "cart:1", "items", "2"]), queued);
        assert_eq!(c.cmd(&["RPUSH", "log:1", stage]), queued);
        assert_eq!(c.cmd(&["PEXPIRE", "cart:1", "600000"]), queued);
        let Value::Array(r) = c.cmd(&["EXEC"]) else {
            panic!("EXEC")
        };
        assert_eq!(r[2], Value::Int(1), "{stage}: {r:?}");
        for k in ["cart:1", "log:1"] {
            assert_eq!(
                dump_view(&mut o, k),
                dump_view(&mut n, k),
                "{stage}: {k} differs after a transaction served by {serving}"
            );
        }
    }
    assert_eq!(
        n.cmd(&["HGET", "cart:1", "items"]),
        Value::bulk("4"),
        "the increments ran once each"
    );
    let Value::Error(e) = c.cmd(&["WATCH", "cart:1"]) else {
        panic!("WATCH")
    };
    assert!(
        e.contains("'watch' is not available during a migration"),
        "{e}"
    );
    for refused in [&["KEYS", "*"][..], &["BLPOP", "log:1", "1"]] {
        assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
        assert_eq!(c.cmd(refused), queued);
        let Value::Error(e) = c.cmd(&["EXEC"]) else {
            panic!("EXEC {refused:?}")
        };
        assert!(e.starts_with("EXECABORT"), "{e}");
    }
    // DISCARD forgets the queue.
    assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(&["DEL", "cart:1"]), queued);
    assert_eq!(c.cmd(&["DISCARD"]), Value::Simple("OK".into()));
    assert_eq!(n.cmd(&["EXISTS", "cart:1"]), Value::Int(1));
}

/// `migrate-shadow-sample`: the share of reads compared in shadow and live, live.
#[test]
fn shadow_sample_sets_the_share_of_compared_reads() {
    let old = redis_server(&[]);
    let s = sessiond(&[
        "--migrate-from",
        &format!("redis://127.0.0.1:{}", old.port),
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "shadow",
        "--migrate-shadow-sample",
        "0",
    ]);
    let mut c = s.connect();
    let compared = |c: &mut Conn| -> u64 {
        let info = c.cmd(&["INFO", "migration"]).as_str();
        info.lines()
            .find_map(|l| l.strip_prefix("compare_match:"))
            .and_then(|v| v.parse().ok())
            .expect("compare_match")
    };
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "migrate-shadow-sample"]),
        Value::Array(vec![Value::bulk("migrate-shadow-sample"), Value::bulk("0")])
    );
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["SET", "k", "v"]);
    for _ in 0..50 {
        assert_eq!(c.cmd(&["HGET", "h", "f"]), Value::bulk("v"));
        assert_eq!(c.cmd(&["GET", "k"]), Value::bulk("v"));
    }
    assert_eq!(compared(&mut c), 0, "nothing compared at 0%");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "migrate-shadow-sample", "100"]),
        Value::Simple("OK".into())
    );
    for _ in 0..50 {
        c.cmd(&["HGET", "h", "f"]);
        c.cmd(&["GET", "k"]);
    }
    assert_eq!(compared(&mut c), 100, "every read compared at 100%");
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "migrate-shadow-sample", "101"]),
        Value::Error(_)
    ));
}

/// Hash field TTLs travel with the hash: copy-forward, the mirror of a write, and backfill.
/// Redis 7.0's DUMP format (the one the engine writes) has none, so such a hash goes field by
/// field, each with its expiry; Redis 8's own payload of one is refused by the engine's
/// RESTORE and goes the same way. `old` is written directly; `new` is the embedded engine
/// (None) or a server; the backfill copies `old` into `backfill_to`.
fn field_ttls_travel(old: &Proc, new: Option<&Proc>, backfill_to: &Proc) {
    let mut o = old.connect();
    assert_eq!(
        o.cmd(&["HSET", "sess:f", "a", "1", "b", "2"]),
        Value::Int(2)
    );
    assert_eq!(
        o.cmd(&["HPEXPIRE", "sess:f", "600000", "FIELDS", "1", "a"]),
        Value::Array(vec![Value::Int(1)])
    );
    assert_eq!(o.cmd(&["EXPIRE", "sess:f", "3600"]), Value::Int(1));
    let times = |c: &mut Conn, fields: &[&str]| -> Value {
        let n = fields.len().to_string();
        let mut args = vec!["HPEXPIRETIME", "sess:f", "FIELDS", n.as_str()];
        args.extend_from_slice(fields);
        c.cmd(&args)
    };
    let url = format!("redis://127.0.0.1:{}", old.port);
    let to = new.map_or("embedded".to_string(), |p| {
        format!("redis://127.0.0.1:{}", p.port)
    });
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        &to,
        "--migrate-stage",
        "rampdown",
    ]);
    let mut c = s.connect();
    // Copy-forward on a read in rampdown.
    let Value::Array(all) = c.cmd(&["HGETALL", "sess:f"]) else {
        panic!("HGETALL")
    };
    assert_eq!(all.len(), 4);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "migrate-stage", "complete"]),
        Value::Simple("OK".into())
    );
    assert_eq!(times(&mut c, &["a", "b"]), times(&mut o, &["a", "b"]));
    assert!(matches!(times(&mut c, &["a"]), Value::Array(t) if t[0] != Value::Int(-1)));
    assert_eq!(
        c.cmd(&["PEXPIRETIME", "sess:f"]),
        o.cmd(&["PEXPIRETIME", "sess:f"])
    );
    // The mirror of a write (live: the new store first, then the old one).
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "migrate-stage", "live"]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["HSET", "sess:f", "c", "3"]), Value::Int(1));
    assert_eq!(
        c.cmd(&["HPEXPIRE", "sess:f", "900000", "FIELDS", "1", "c"]),
        Value::Array(vec![Value::Int(1)])
    );
    assert_eq!(o.cmd(&["HGET", "sess:f", "c"]), Value::bulk("3"));
    assert_eq!(
        times(&mut o, &["a", "b", "c"]),
        times(&mut c, &["a", "b", "c"])
    );
    if let Some(n) = new {
        assert_eq!(
            times(&mut n.connect(), &["a", "b", "c"]),
            times(&mut o, &["a", "b", "c"])
        );
    }
    let info = c.cmd(&["INFO", "migration"]).as_str();
    assert!(info.contains("secondary_write_errors:0"), "{info}");
    // Backfill.
    let out = std::process::Command::new(support::sessiond_bin())
        .args(["migrate", "backfill", "--from", &url, "--to"])
        .arg(format!("redis://127.0.0.1:{}", backfill_to.port))
        .arg("--quiet")
        .output()
        .expect("backfill");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(report.contains("0 errors"), "{report}");
    let mut t = backfill_to.connect();
    assert_eq!(
        times(&mut t, &["a", "b", "c"]),
        times(&mut o, &["a", "b", "c"])
    );
    assert_eq!(
        t.cmd(&["PEXPIRETIME", "sess:f"]),
        o.cmd(&["PEXPIRETIME", "sess:f"])
    );
}

/// Between two engines (another sessiond as the old store, through `redis://`).
#[test]
fn hash_field_ttls_travel_between_engines() {
    field_ttls_travel(&sessiond(&[]), None, &sessiond(&[]));
}

/// From Redis 8 (`scripts/redis8`; Debian 12's Redis 7.0 has no field TTLs) to the embedded
/// engine, and backfilled into another engine.
#[test]
fn hash_field_ttls_travel_from_redis_8_to_the_engine() {
    field_ttls_travel(&redis8_server(&[]), None, &sessiond(&[]));
}

/// From an engine to Redis 8, and backfilled into another Redis 8.
#[test]
fn hash_field_ttls_travel_from_the_engine_to_redis_8() {
    field_ttls_travel(
        &sessiond(&[]),
        Some(&redis8_server(&[])),
        &redis8_server(&[]),
    );
}
