//! Lua scripts on the embedded engine beyond what the differential script shows: a runaway
//! script gives -BUSY to others and SCRIPT KILL ends it (on both runtimes), a crash during a
//! writing script leaves all of its writes or none, scripts on different keys run at the
//! same time, undeclared keys are refused unless allowed, sandbox escapes fail, and
//! function libraries survive restarts and move to and from redis-server.

mod support;

use std::time::Instant;

use support::{info_field, redis_server, sessiond, sessiond_in, Conn, TempDir, Value, DEADLINE};

fn eval(c: &mut Conn, script: &str, keys: &[&str], args: &[&str]) -> Value {
    let n = keys.len().to_string();
    let mut argv = vec!["EVAL", script, &n];
    argv.extend(keys);
    argv.extend(args);
    c.cmd(&argv)
}

/// Sends a command without reading its reply.
fn send(c: &mut Conn, args: &[&str]) {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    c.send_raw(&support::encode(&a));
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether a reply is waiting on `c` (without blocking).
fn reply_waiting(c: &Conn) -> bool {
    let s = c.reader.get_ref();
    s.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    let waiting = matches!(s.peek(&mut b), Ok(n) if n > 0) || !c.reader.buffer().is_empty();
    s.set_nonblocking(false).expect("blocking");
    waiting
}

/// Whether a new connection's PING gets -BUSY. With one worker, a connection the worker
/// accepted just before the script started waits for the script like every connection it
/// had; the probe then gives up on it and tries a new one.
fn is_busy(port: u16) -> bool {
    let mut c = Conn::connect(port);
    c.writer
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("timeout");
    matches!(c.try_cmd(&["PING"]), Some(Value::Error(e)) if e.starts_with("BUSY "))
}

fn runaway_script_is_busy_then_killed(threads: &[&str]) {
    let mut args = vec!["--busy-reply-threshold", "100"];
    args.extend(threads);
    let s = sessiond(&args);
    let mut idle = s.connect();
    assert_eq!(idle.cmd(&["SET", "k", "v"]), Value::Simple("OK".into()));
    let mut runner = s.connect();
    send(&mut runner, &["EVAL", "while true do end", "0"]);
    poll("other clients get -BUSY", || is_busy(s.port));
    let mut c = s.connect();
    assert!(
        matches!(c.cmd(&["GET", "k"]), Value::Error(e) if e == "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
    );
    assert!(matches!(c.cmd(&["FUNCTION", "KILL"]), Value::Error(e) if e.starts_with("NOTBUSY")));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), Value::Simple("OK".into()));
    match runner.read() {
        Some(Value::Error(e)) => assert!(
            e.starts_with("ERR Script killed by user with SCRIPT KILL... script: "),
            "{e}"
        ),
        other => panic!("killed script: {other:?}"),
    }
    // Everyone is served again, the connection that waited through it included.
    assert_eq!(idle.cmd(&["GET", "k"]), Value::bulk("v"));
    assert_eq!(runner.cmd(&["PING"]), Value::Simple("PONG".into()));
    assert!(matches!(c.cmd(&["SCRIPT", "KILL"]), Value::Error(e) if e.starts_with("NOTBUSY")));
    // A script that catches errors cannot catch its kill.
    send(
        &mut runner,
        &[
            "EVAL",
            "while true do pcall(function() while true do end end) end",
            "0",
        ],
    );
    poll("busy again", || is_busy(s.port));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), Value::Simple("OK".into()));
    assert!(matches!(runner.read(), Some(Value::Error(e)) if e.contains("Script killed")));
    assert_eq!(runner.cmd(&["PING"]), Value::Simple("PONG".into()));
}

#[test]
fn a_runaway_script_gets_busy_for_others_and_script_kill_ends_it_with_one_worker() {
    runaway_script_is_busy_then_killed(&[]);
}

#[test]
fn a_runaway_script_gets_busy_for_others_and_script_kill_ends_it_with_two_workers() {
    runaway_script_is_busy_then_killed(&["--threads", "2"]);
}

/// A script that wrote cannot be killed; SHUTDOWN NOSAVE ends the server, and the
/// script's writes are not in the log: all or nothing.
#[test]
fn a_busy_script_that_wrote_is_unkillable_and_shutdown_nosave_drops_all_its_writes() {
    let dir = TempDir::new("lua-unkillable");
    let mut s = sessiond_in(
        &dir,
        &["--busy-reply-threshold", "100", "--appendfsync", "always"],
    );
    let mut c = s.connect();
    assert_eq!(c.cmd(&["SET", "before", "1"]), Value::Simple("OK".into()));
    let mut runner = s.connect();
    send(
        &mut runner,
        &[
            "EVAL",
            "redis.call('SET', KEYS[1], 'x') redis.call('SET', KEYS[2], 'y') while true do end",
            "2",
            "w1",
            "w2",
        ],
    );
    poll("busy", || is_busy(s.port));
    let mut other = s.connect();
    assert!(
        matches!(other.cmd(&["SCRIPT", "KILL"]), Value::Error(e) if e.starts_with("UNKILLABLE Sorry the script already executed write commands"))
    );
    assert!(matches!(other.cmd(&["SHUTDOWN"]), Value::Error(_)));
    assert_eq!(other.try_cmd(&["SHUTDOWN", "NOSAVE"]), None);
    s.wait_exit();
    drop(s);
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["GET", "before"]), Value::bulk("1"));
    assert_eq!(c.cmd(&["EXISTS", "w1", "w2"]), Value::Int(0));
}

/// kill -9 while a script that has written runs: after the restart none of its writes are
/// there, and every write of a script that finished is.
#[test]
fn kill_9_during_a_writing_script_leaves_all_of_its_writes_or_none() {
    let dir = TempDir::new("lua-kill9");
    let mut s = sessiond_in(
        &dir,
        &["--busy-reply-threshold", "100", "--appendfsync", "always"],
    );
    let mut c = s.connect();
    let keys: Vec<String> = (0..40).map(|i| format!("done:{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let write_all = "for i, k in ipairs(KEYS) do redis.call('SET', k, i) end return #KEYS";
    assert_eq!(eval(&mut c, write_all, &key_refs, &[]), Value::Int(40));
    let half: Vec<String> = (0..40).map(|i| format!("torn:{i}")).collect();
    let half_refs: Vec<&str> = half.iter().map(String::as_str).collect();
    let n = half.len().to_string();
    let mut argv = vec![
        "EVAL",
        "for i, k in ipairs(KEYS) do redis.call('SET', k, i) end while true do end",
        &n,
    ];
    argv.extend(&half_refs);
    send(&mut c, &argv);
    // Busy means it ran past its writes (they come first) and still runs.
    poll("busy", || is_busy(s.port));
    s.kill();
    drop(s);
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    let mut done = vec!["EXISTS"];
    done.extend(&key_refs);
    assert_eq!(c.cmd(&done), Value::Int(40));
    let mut torn = vec!["EXISTS"];
    torn.extend(&half_refs);
    assert_eq!(c.cmd(&torn), Value::Int(0));
}

/// A script holds only its keys' shards: while one runs (forever, here) on one key, a
/// script on another key runs and answers. Then the first is made busy and killed.
#[test]
fn scripts_on_different_keys_run_at_the_same_time() {
    let s = sessiond(&["--threads", "2", "--busy-reply-threshold", "600000"]);
    let mut c1 = s.connect();
    let id = c1.cmd(&["CLIENT", "ID"]).as_str();
    send(&mut c1, &["EVAL", "while true do end", "1", "session:a"]);
    let mut admin = s.connect();
    poll("the first script runs", || {
        admin
            .cmd(&["CLIENT", "LIST", "ID", &id])
            .as_str()
            .contains("cmd=eval")
    });
    assert!(!reply_waiting(&c1), "the first script still runs");
    let mut c2 = s.connect();
    // A key in another shard than session:a (64 shards; any of these will do).
    let other = (0..10)
        .map(|i| format!("session:b{i}"))
        .find(|k| {
            let v = eval(
                &mut c2,
                "return redis.call('SET', KEYS[1], 'ok')",
                &[k],
                &[],
            );
            v == Value::Simple("OK".into())
        })
        .expect("a script on another key ran");
    assert_eq!(c2.cmd(&["GET", &other]), Value::bulk("ok"));
    assert!(
        !reply_waiting(&c1),
        "the first script was still running meanwhile"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "busy-reply-threshold", "1"]),
        Value::Simple("OK".into())
    );
    poll("busy", || is_busy(s.port));
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]), Value::Simple("OK".into()));
    assert!(matches!(c1.read(), Some(Value::Error(e)) if e.contains("Script killed")));
}

#[test]
fn undeclared_keys_are_refused_unless_the_script_or_the_server_allows_them() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    c.cmd(&["SET", "other", "v"]);
    match eval(&mut c, "return redis.call('GET', 'other')", &[], &[]) {
        Value::Error(e) => assert!(
            e.starts_with(
                "ERR Script attempted to access key 'other' that it did not declare in KEYS"
            ) && e.ends_with("on @user_script:1."),
            "{e}"
        ),
        v => panic!("{v:?}"),
    }
    assert!(
        matches!(eval(&mut c, "return redis.call('DBSIZE')", &[], &[]), Value::Error(e) if e.contains("reaches beyond its keys"))
    );
    // A refused command changes nothing; commands before it in the script stay done (Redis
    // does not roll scripts back either).
    let v = eval(
        &mut c,
        "redis.call('SET', KEYS[1], 'x') return redis.call('SET', 'other', 'changed')",
        &["mine"],
        &[],
    );
    assert!(matches!(v, Value::Error(_)));
    assert_eq!(c.cmd(&["GET", "other"]), Value::bulk("v"));
    assert_eq!(c.cmd(&["GET", "mine"]), Value::bulk("x"));
    // Allowed by Redis's no-cluster flag, by sessiond's comment, or by the server setting.
    assert_eq!(
        eval(
            &mut c,
            "#!lua flags=no-cluster\nreturn redis.call('GET', 'other')",
            &[],
            &[]
        ),
        Value::bulk("v")
    );
    assert_eq!(
        eval(
            &mut c,
            "--!sessiond allow-undeclared-keys\nreturn redis.call('DBSIZE')",
            &[],
            &[]
        ),
        Value::Int(2)
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "lua-allow-undeclared-keys", "yes"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        eval(&mut c, "return redis.call('GET', 'other')", &[], &[]),
        Value::bulk("v")
    );
    // Inside EXEC, a script that may touch any key makes the transaction hold every shard.
    c.cmd(&["CONFIG", "SET", "lua-allow-undeclared-keys", "no"]);
    assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
    c.cmd(&[
        "EVAL",
        "#!lua flags=no-cluster\nreturn redis.call('INCR', 'counter')",
        "0",
    ]);
    c.cmd(&["EVAL", "return redis.call('INCR', KEYS[1])", "1", "counter"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![Value::Int(1), Value::Int(2)])
    );
}

#[test]
fn sandbox_escapes_and_bad_scripts_fail_and_the_server_keeps_serving() {
    let s = sessiond(&["--lua-memory-limit", "16mb"]);
    let mut c = s.connect();
    let err = |v: Value| match v {
        Value::Error(e) => e,
        v => panic!("expected an error, got {v:?}"),
    };
    // No bytecode: string.dump's output does not load.
    assert_eq!(
        eval(
            &mut c,
            "local f, e = loadstring(string.dump(function() return 1 end)) return {tostring(f), e}",
            &[],
            &[]
        ),
        Value::Array(vec![
            Value::bulk("nil"),
            Value::bulk("loading binary chunks is not allowed")
        ])
    );
    // No way out of the environment: loadstring's functions see the same read-only globals.
    assert!(err(eval(&mut c, "loadstring('x = 1')()", &[], &[])).contains("readonly table"));
    assert!(err(eval(
        &mut c,
        "local mt = getmetatable(_G) mt.__newindex = nil x = 1",
        &[],
        &[]
    ))
    .contains("readonly table"));
    // The string metatable a script gets is a decoy: the next script's strings still work.
    eval(&mut c, "getmetatable('').__index = {}", &[], &[]);
    assert_eq!(
        eval(&mut c, "return ('ab'):rep(2)", &[], &[]),
        Value::bulk("abab")
    );
    // Nothing of os but the clock.
    assert_eq!(
        eval(
            &mut c,
            "return {type(os.execute), type(os.getenv), type(os.clock)}",
            &[],
            &[]
        ),
        Value::Array(vec![
            Value::bulk("nil"),
            Value::bulk("nil"),
            Value::bulk("function")
        ])
    );
    for global in [
        "io", "debug", "require", "dofile", "loadfile", "package", "setfenv",
    ] {
        assert!(err(eval(&mut c, &format!("return {global}"), &[], &[]))
            .contains("nonexistent global variable"));
    }
    // Unbounded allocation: "not enough memory", and the next script runs.
    let e = err(eval(
        &mut c,
        "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end",
        &[],
        &[],
    ));
    assert!(e.contains("not enough memory"), "{e}");
    assert_eq!(eval(&mut c, "return 1", &[], &[]), Value::Int(1));
    // A table that contains itself: the reply ends in an error instead of never ending.
    let mut c2 = s.connect();
    let mut v = eval(&mut c2, "local t = {} t[1] = t return t", &[], &[]);
    let mut depth = 0;
    while let Value::Array(mut items) = v {
        depth += 1;
        v = items.pop().expect("one item");
    }
    assert!(depth > 10);
    assert!(matches!(v, Value::Error(e) if e.contains("reached lua stack limit")));
    assert_eq!(c2.cmd(&["PING"]), Value::Simple("PONG".into()));
    // Errors inside pcall are values; the script goes on.
    assert_eq!(
        eval(
            &mut c,
            "local ok, e = pcall(redis.call, 'INCR', KEYS[1]) return {tostring(ok), e}",
            &["str"],
            &[]
        ),
        Value::Array(vec![Value::bulk("true"), Value::Int(1)])
    );
}

#[test]
fn function_libraries_survive_a_restart_and_move_to_and_from_redis() {
    let dir = TempDir::new("lua-functions");
    let lib = "#!lua name=sessions\nredis.register_function('touch', function(keys, args) redis.call('SET', keys[1], args[1]) return redis.call('GET', keys[1]) end)";
    let mut s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), Value::bulk("sessions"));
    s.terminate();
    drop(s);
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["FCALL", "touch", "1", "k", "after-restart"]),
        Value::bulk("after-restart")
    );
    assert_eq!(info_field(&mut c, "memory", "number_of_libraries"), "1");
    assert_eq!(info_field(&mut c, "memory", "number_of_functions"), "1");
    c.cmd(&["SCRIPT", "LOAD", "return 1"]);
    assert_eq!(
        info_field(&mut c, "memory", "number_of_cached_scripts"),
        "1"
    );
    // sessiond's FUNCTION DUMP restores into redis-server, and Redis's into sessiond.
    let r = redis_server(&[]);
    let mut rc = r.connect();
    let ours = match c.cmd(&["FUNCTION", "DUMP"]) {
        Value::Bulk(b) => b,
        v => panic!("{v:?}"),
    };
    assert_eq!(
        rc.cmd_bytes(&[b"FUNCTION", b"RESTORE", &ours]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        rc.cmd(&["FCALL", "touch", "1", "k", "in-redis"]),
        Value::bulk("in-redis")
    );
    rc.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=fromredis\nredis.register_function('twice', function(keys, args) return args[1] .. args[1] .. string.rep('-', 200) end)",
    ]);
    let theirs = match rc.cmd(&["FUNCTION", "DUMP"]) {
        Value::Bulk(b) => b,
        v => panic!("{v:?}"),
    };
    assert_eq!(
        c.cmd_bytes(&[b"FUNCTION", b"RESTORE", &theirs, b"REPLACE"]),
        Value::Simple("OK".into())
    );
    match c.cmd(&["FCALL", "twice", "0", "ab"]) {
        Value::Bulk(b) => assert!(b.starts_with(b"abab---")),
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        c.cmd_bytes(&[b"FUNCTION", b"RESTORE", &theirs]),
        Value::Error(e) if e.contains("already exists")
    ));
}

/// In migration mode between Redis-protocol stores a script runs in every stage, on the
/// store its first key's stage writes first, and its declared keys are then mirrored to the
/// other store; functions are loaded into both. The lock release runs in every stage (the
/// router's compare-and-delete). A script that declares no key cannot be mirrored: refused.
#[test]
fn in_migration_mode_scripts_run_on_the_authoritative_store_and_are_mirrored() {
    let old = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", old.port);
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "complete",
    ]);
    let mut c = s.connect();
    let mut o = old.connect();
    let incr = "redis.call('SADD', KEYS[2], ARGV[1]) return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let keys = ["PHPREDIS_SESSION:n", "PHPREDIS_SESSION:seen"];
    assert_eq!(eval(&mut c, incr, &keys, &["2"]), Value::Int(2));
    assert_eq!(c.cmd(&["GET", "PHPREDIS_SESSION:n"]), Value::bulk("2"));
    // `complete`: the old store is not written.
    assert_eq!(o.cmd(&["EXISTS", "PHPREDIS_SESSION:n"]), Value::Int(0));
    let release = "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
    let mut n = 2;
    for (stage, percent) in [
        ("live", "100"),
        ("rampdown", "100"),
        ("complete", "50"),
        ("dualwrite", "100"),
        ("off", "100"),
    ] {
        assert_eq!(
            c.cmd(&[
                "CONFIG",
                "SET",
                "migrate-stage",
                stage,
                "migrate-percent",
                percent
            ]),
            Value::Simple("OK".into())
        );
        n += 1;
        assert_eq!(
            eval(&mut c, incr, &keys, &["1"]),
            Value::Int(n),
            "{stage}: the script ran once, on the store written first"
        );
        // Every stage but complete writes the old store: the script's keys are there too.
        if stage != "complete" {
            assert_eq!(
                o.cmd(&["GET", keys[0]]),
                Value::bulk(&n.to_string()),
                "{stage}"
            );
            assert_eq!(o.cmd(&["SCARD", keys[1]]), Value::Int(2), "{stage}");
        }
        c.cmd(&["SET", "PHPREDIS_SESSION:lock", "me"]);
        assert_eq!(
            eval(&mut c, release, &["PHPREDIS_SESSION:lock"], &["me"]),
            Value::Int(1),
            "{stage}: the lock release runs"
        );
    }
    // EVALSHA of a script the router has seen runs too (sent with its body).
    let Value::Bulk(sha) = c.cmd(&["SCRIPT", "LOAD", incr]) else {
        panic!("SCRIPT LOAD")
    };
    let sha = String::from_utf8_lossy(&sha).into_owned();
    assert_eq!(
        c.cmd(&["EVALSHA", &sha, "2", keys[0], keys[1], "1"]),
        Value::Int(n + 1)
    );
    // Functions: loaded into both stores, called on the one written first, mirrored.
    c.cmd(&[
        "CONFIG",
        "SET",
        "migrate-stage",
        "live",
        "migrate-percent",
        "100",
    ]);
    let lib = "#!lua name=counters\nredis.register_function('bump', function(keys, args) return redis.call('HINCRBY', keys[1], 'n', 1) end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), Value::bulk("counters"));
    assert!(
        o.cmd(&["FUNCTION", "LIST"]).as_str().contains("counters"),
        "the old store has the library too"
    );
    assert_eq!(
        c.cmd(&["FCALL", "bump", "1", "PHPREDIS_SESSION:h"]),
        Value::Int(1)
    );
    assert_eq!(
        c.cmd(&["FCALL", "bump", "1", "PHPREDIS_SESSION:h"]),
        Value::Int(2)
    );
    assert_eq!(
        o.cmd(&["HGET", "PHPREDIS_SESSION:h", "n"]),
        Value::bulk("2")
    );
    // The scripting settings changed live reach the embedded side, where this script runs.
    c.cmd(&[
        "CONFIG",
        "SET",
        "migrate-stage",
        "complete",
        "migrate-percent",
        "100",
    ]);
    let undeclared = "return redis.call('GET', 'PHPREDIS_SESSION:elsewhere')";
    match eval(&mut c, undeclared, &["PHPREDIS_SESSION:x"], &[]) {
        Value::Error(e) => assert!(e.contains("did not declare"), "{e}"),
        v => panic!("{v:?}"),
    }
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "lua-allow-undeclared-keys", "yes"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        eval(&mut c, undeclared, &["PHPREDIS_SESSION:x"], &[]),
        Value::Null
    );
    // A script that names no key: nothing to mirror, so it is refused, saying why.
    match eval(&mut c, "return redis.call('SET', 'x', 1)", &[], &[]) {
        Value::Error(e) => assert!(e.contains("changes no key it names"), "{e}"),
        v => panic!("{v:?}"),
    }
}
