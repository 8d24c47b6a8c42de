//! End-to-end with the real PHP session handler (php-cli + phpredis from Debian): sessions
//! written and read across separate PHP processes, regenerate, destroy, gc_maxlifetime as the
//! TTL, session locking serialising two concurrent requests, persistent connections and the
//! unix socket.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{sessiond, Conn, Proc, TempDir, Value, DEADLINE};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php/session.php")
}

/// A php command line with phpredis as the session handler.
fn php(save_path: &str, ini: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new("php");
    // Debian's conf.d loads phpredis (and igbinary, which it links against). Warnings go to
    // stderr so that any warning fails the test.
    c.args([
        "-d",
        "display_errors=stderr",
        "-d",
        "session.save_handler=redis",
    ])
    .args(["-d", &format!("session.save_path=\"{save_path}\"")])
    .args([
        "-d",
        "session.use_strict_mode=0",
        "-d",
        "session.serialize_handler=php",
    ]);
    for (k, v) in ini {
        c.args(["-d", &format!("{k}={v}")]);
    }
    c.arg(script()).args(args);
    c
}

fn run(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run php");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "php failed ({}): stdout={} stderr={}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tcp(s: &Proc) -> String {
    format!("tcp://127.0.0.1:{}", s.port)
}

fn key(id: &str) -> String {
    format!("PHPREDIS_SESSION:{id}")
}

#[test]
fn sessions_survive_across_php_processes() {
    let s = sessiond(&[]);
    let path = tcp(&s);
    assert_eq!(
        run(&mut php(&path, &[], &["write", "sess1", "alice"])),
        "ok"
    );
    assert_eq!(
        run(&mut php(&path, &[], &["read", "sess1"])),
        r#"{"user":"alice","n":1}"#
    );
    assert_eq!(
        run(&mut php(&path, &[], &["write", "sess1", "alice"])),
        "ok"
    );
    assert_eq!(
        run(&mut php(&path, &[], &["read", "sess1"])),
        r#"{"user":"alice","n":2}"#
    );
    // A different session is independent; an unknown one is empty (not an error).
    assert_eq!(run(&mut php(&path, &[], &["read", "other"])), "[]");
    let mut c = s.connect();
    assert_eq!(c.cmd(&["EXISTS", &key("sess1")]), Value::Int(1));
}

#[test]
fn gc_maxlifetime_becomes_the_ttl() {
    let s = sessiond(&[]);
    run(&mut php(
        &tcp(&s),
        &[("session.gc_maxlifetime", "1234")],
        &["write", "ttl1", "bob"],
    ));
    let mut c = s.connect();
    let Value::Int(ttl) = c.cmd(&["TTL", &key("ttl1")]) else {
        panic!("TTL not an integer")
    };
    assert!(
        (1230..=1234).contains(&ttl),
        "TTL {ttl} should come from gc_maxlifetime 1234"
    );
}

#[test]
fn regenerate_id_moves_the_session_and_destroy_removes_it() {
    let s = sessiond(&[]);
    let path = tcp(&s);
    run(&mut php(&path, &[], &["write", "old1", "carol"]));
    let new_id = run(&mut php(&path, &[], &["regenerate", "old1"]));
    assert_ne!(new_id, "old1");
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["EXISTS", &key("old1")]),
        Value::Int(0),
        "regenerate(true) deletes the old session"
    );
    assert_eq!(
        run(&mut php(&path, &[], &["read", &new_id])),
        r#"{"user":"carol","n":1,"regenerated":true}"#
    );
    assert_eq!(
        run(&mut php(&path, &[], &["destroy", &new_id])),
        "destroyed"
    );
    assert_eq!(c.cmd(&["EXISTS", &key(&new_id)]), Value::Int(0));
}

#[test]
fn persistent_connections_and_unix_socket() {
    let dir = TempDir::new("php-unix");
    let sock = dir.path("sessiond.sock");
    let sock_s = sock.to_string_lossy().to_string();
    let s = sessiond(&["--unixsocket", &sock_s]);
    let persistent = format!("{}?persistent=1&timeout=5", tcp(&s));
    assert_eq!(
        run(&mut php(&persistent, &[], &["write", "p1", "dave"])),
        "ok"
    );
    let unix = format!("unix://{sock_s}");
    assert_eq!(
        run(&mut php(&unix, &[], &["read", "p1"])),
        r#"{"user":"dave","n":1}"#
    );
    assert_eq!(run(&mut php(&unix, &[], &["write", "p1", "dave"])), "ok");
    assert_eq!(
        run(&mut php(&persistent, &[], &["read", "p1"])),
        r#"{"user":"dave","n":2}"#
    );
}

fn wait_file(p: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while !p.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn commands_processed(c: &mut Conn) -> u64 {
    let info = c.cmd(&["INFO", "stats"]).as_str();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed in INFO")
}

/// Two concurrent requests on one session with phpredis locking: the second waits for the
/// first's lock, so neither read-modify-write is lost (counter ends at 2, not 1). The lock
/// release goes through EVALSHA/EVAL of phpredis's script.
#[test]
fn session_locking_serialises_concurrent_requests() {
    locking_serialises(&sessiond(&[]));
}

/// The same through the gateway in front of a real redis-server: phpredis sees no
/// difference, and the lock script runs in Redis's own Lua.
#[test]
fn session_locking_through_the_gateway() {
    let r = support::redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", r.port);
    let gw = sessiond(&["--upstream", &url]);
    locking_serialises(&gw);
    let mut direct = r.connect();
    assert_eq!(
        direct.cmd(&["GET", &key("lock1")]),
        Value::bulk("counter|i:2;"),
        "the session is in the upstream"
    );
}

fn locking_serialises(s: &Proc) {
    let dir = TempDir::new("php-lock");
    let path = tcp(s);
    let ini = [
        ("redis.session.locking_enabled", "1"),
        ("redis.session.lock_expire", "60"),
        ("redis.session.lock_retries", "5000"),
        ("redis.session.lock_wait_time", "5000"),
    ];
    let (m1, go) = (dir.path("first"), dir.path("go"));
    let m2 = dir.path("second");
    let spawn = |args: &[&str]| -> Child {
        php(&path, &ini, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn php")
    };
    let first = spawn(&[
        "increment",
        "lock1",
        &m1.to_string_lossy(),
        &go.to_string_lossy(),
    ]);
    wait_file(&m1); // the first request holds the session lock now
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["EXISTS", &format!("{}_LOCK", key("lock1"))]),
        Value::Int(1),
        "lock key held"
    );
    let second = spawn(&["increment", "lock1", &m2.to_string_lossy(), ""]);
    wait_file(&dir.path("second.starting"));
    // The second request is retrying the lock (its SET NX attempts show up as commands) and
    // has not got into the session.
    let base = commands_processed(&mut c);
    let deadline = Instant::now() + DEADLINE;
    while commands_processed(&mut c) < base + 5 {
        assert!(
            Instant::now() < deadline,
            "second request never tried to take the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !m2.exists(),
        "second request entered the session while the first held the lock"
    );
    std::fs::write(&go, "go").expect("write go file");
    let out1 = first.wait_with_output().expect("first");
    let out2 = second.wait_with_output().expect("second");
    for o in [&out1, &out2] {
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "php: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(String::from_utf8_lossy(&out1.stdout), "1");
    assert_eq!(
        String::from_utf8_lossy(&out2.stdout),
        "2",
        "second request saw the first's write"
    );
    assert_eq!(
        run(&mut php(&path, &[], &["read", "lock1"])),
        r#"{"counter":2}"#
    );
    assert_eq!(
        c.cmd(&["EXISTS", &format!("{}_LOCK", key("lock1"))]),
        Value::Int(0),
        "lock released"
    );
    // The release went through phpredis's script: EVALSHA (NOSCRIPT at first), then EVAL,
    // which put it in the script cache.
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            "b70c2384248f88e6b75b9f89241a180f856ad852"
        ]),
        Value::Array(vec![Value::Int(1)])
    );
}

/// `redis.session.early_refresh=1` (phpredis ≥ 6) reads sessions with `GETEX key EX ttl`,
/// refreshing the TTL on every read. Debian's phpredis 5.3.7 predates that option, so the
/// test sends the exact command phpredis sends.
#[test]
fn early_refresh_getex_extends_the_ttl() {
    let s = sessiond(&[]);
    run(&mut php(
        &tcp(&s),
        &[("session.gc_maxlifetime", "1440")],
        &["write", "er1", "erin"],
    ));
    let mut c = s.connect();
    let k = key("er1");
    assert_eq!(c.cmd(&["EXPIRE", &k, "5"]), Value::Int(1));
    let v = c.cmd(&["GETEX", &k, "EX", "1440"]);
    assert!(
        v.as_str().contains("erin"),
        "GETEX returns the session: {v:?}"
    );
    let Value::Int(ttl) = c.cmd(&["TTL", &k]) else {
        panic!()
    };
    assert!(ttl > 1400, "TTL refreshed to {ttl}");
}

/// The second seed's migration: sessions in PHP's session files (written by PHP's own
/// `files` handler) move to the embedded engine while real PHP processes, now using phpredis
/// against sessiond, keep reading and writing them through every stage, with a rollback.
#[test]
fn php_session_files_migrate_to_the_embedded_engine() {
    let dir = TempDir::new("php-files");
    let files = dir.path("sessions");
    std::fs::create_dir_all(&files).expect("sessions dir");
    let files_s = files.to_string_lossy().into_owned();
    // The old application: PHP's own files handler.
    let php_files = |args: &[&str]| {
        let mut cmd = Command::new("php");
        cmd.args([
            "-d",
            "display_errors=stderr",
            "-d",
            "session.save_handler=files",
            "-d",
            &format!("session.save_path={files_s}"),
            "-d",
            "session.use_strict_mode=0",
            "-d",
            "session.serialize_handler=php",
        ])
        .arg(script())
        .args(args);
        run(&mut cmd)
    };
    assert_eq!(php_files(&["write", "f1", "alice"]), "ok");
    assert_eq!(php_files(&["write", "f2", "bob"]), "ok");
    assert_eq!(php_files(&["read", "f1"]), r#"{"user":"alice","n":1}"#);
    for t in 0..3 {
        assert_eq!(php_files(&["write", &format!("w{t}"), "worker"]), "ok");
    }

    let from = format!("files://{files_s}?gc_maxlifetime=1440");
    let s = sessiond(&["--migrate-from", &from, "--migrate-to", "embedded"]);
    let path = tcp(&s);
    let mut admin = s.connect();
    // Continuous load: three workers, each a stream of real PHP requests on its own session
    // (write, then read back), for the whole migration.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, done, path) = (stop.clone(), done.clone(), path.clone());
            std::thread::spawn(move || {
                let id = format!("w{t}");
                let mut n = 1;
                let mut wrong = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if run(&mut php(&path, &[], &["write", &id, "worker"])) != "ok" {
                        wrong.push(format!("{id}: write failed"));
                    }
                    n += 1;
                    let got = run(&mut php(&path, &[], &["read", &id]));
                    let want = format!(r#"{{"user":"worker","n":{n}}}"#);
                    if got != want {
                        wrong.push(format!("{id}: read {got}, want {want}"));
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (id, n, wrong)
            })
        })
        .collect();
    let mut n = 1;
    let stages = [
        "off",
        "dualwrite",
        "shadow",
        "live",
        "rampdown", // forward
        "live",
        "shadow", // two stages back
        "live",
        "rampdown",
        "complete", // and forward again
    ];
    for stage in stages {
        assert_eq!(
            admin.cmd(&["CONFIG", "SET", "migrate-stage", stage]),
            Value::Simple("OK".into())
        );
        assert_eq!(
            run(&mut php(&path, &[], &["write", "f1", "alice"])),
            "ok",
            "{stage}"
        );
        n += 1;
        assert_eq!(
            run(&mut php(&path, &[], &["read", "f1"])),
            format!(r#"{{"user":"alice","n":{n}}}"#),
            "{stage}: f1 after its write"
        );
        assert_eq!(
            run(&mut php(&path, &[], &["read", "f2"])),
            r#"{"user":"bob","n":1}"#,
            "{stage}: f2, only ever written by the old application"
        );
        // Let every worker get a few requests through in this stage.
        let from = done.load(std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + DEADLINE;
        while done.load(std::sync::atomic::Ordering::Relaxed) < from + 6 {
            assert!(Instant::now() < deadline, "PHP workers stalled in {stage}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let (id, n, wrong) = w.join().expect("worker");
        assert!(wrong.is_empty(), "{wrong:?}");
        // In `complete`, the embedded engine alone has each worker's last write.
        assert_eq!(
            run(&mut php(&path, &[], &["read", &id])),
            format!(r#"{{"user":"worker","n":{n}}}"#)
        );
    }
    // Until complete every write also reached the files: the old application would still
    // see the session as of the last stage before complete.
    assert_eq!(
        php_files(&["read", "f1"]),
        format!(r#"{{"user":"alice","n":{}}}"#, n - 1)
    );
    let info = admin.cmd(&["INFO", "migration"]).as_str();
    assert!(info.contains("secondary_write_errors:0"), "{info}");
}

/// Sessions as an ACL user limited to the session keys (`~PHPREDIS_SESSION:* +@read
/// +@write`), logged in by phpredis with `auth[]=user&auth[]=password`: writes, reads,
/// regenerate and destroy work; the same user cannot read another key, and a wrong password
/// makes PHP fail.
#[test]
fn sessions_as_a_limited_acl_user() {
    let s = sessiond(&["--requirepass", "adminpw"]);
    let mut admin = s.connect();
    assert_eq!(admin.cmd(&["AUTH", "adminpw"]), Value::Simple("OK".into()));
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">apppw",
            "~PHPREDIS_SESSION:*",
            "+@read",
            "+@write",
        ]),
        Value::Simple("OK".into())
    );
    let path = format!("{}?auth[]=app&auth[]=apppw", tcp(&s));
    assert_eq!(run(&mut php(&path, &[], &["write", "acl1", "bob"])), "ok");
    assert_eq!(
        run(&mut php(&path, &[], &["read", "acl1"])),
        r#"{"user":"bob","n":1}"#
    );
    let new_id = run(&mut php(&path, &[], &["regenerate", "acl1"]));
    assert_eq!(admin.cmd(&["EXISTS", &key("acl1")]), Value::Int(0));
    assert_eq!(admin.cmd(&["EXISTS", &key(&new_id)]), Value::Int(1));
    assert_eq!(
        run(&mut php(&path, &[], &["destroy", &new_id])),
        "destroyed"
    );
    assert_eq!(admin.cmd(&["EXISTS", &key(&new_id)]), Value::Int(0));
    // The session user sees only session keys.
    admin.cmd(&["SET", "secret", "x"]);
    let mut app = s.connect();
    assert_eq!(
        app.cmd(&["AUTH", "app", "apppw"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        app.cmd(&["GET", "secret"]),
        Value::Error(
            "NOPERM this user has no permissions to access one of the keys used as arguments"
                .into()
        )
    );
    // A wrong password: PHP cannot open the session (phpredis warns, the write fails).
    let bad = format!("{}?auth[]=app&auth[]=wrong", tcp(&s));
    let out = php(&bad, &[], &["write", "acl2", "eve"])
        .output()
        .expect("run php");
    assert!(
        !out.stderr.is_empty() || !out.status.success(),
        "a wrong password must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(admin.cmd(&["EXISTS", &key("acl2")]), Value::Int(0));
}
