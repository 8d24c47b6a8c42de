//! The migration router end to end, with real processes: sessions move from a redis-server
//! (the old store) to sessiond's embedded engine (the new one) while clients keep reading
//! and writing through sessiond. The stages are stepped from `off` to `complete` with
//! percentage ramps and a rollback of two stages in the middle, live (CONFIG SET). Asserted:
//! no read of a live session ever misses (no logouts), and the final content is exactly
//! what the clients wrote (no lost writes).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{migrate_cmd, redis_server, sessiond, Conn, Proc, Value};

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 50;

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn key(client: usize, i: usize) -> String {
    format!("PHPREDIS_SESSION:c{client}s{i}")
}

/// One client's loop: it owns its sessions, so it knows exactly what each must hold.
fn client(
    port: u16,
    me: usize,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    logouts: Arc<Mutex<Vec<String>>>,
) -> HashMap<String, Option<String>> {
    let mut c = Conn::connect(port);
    let mut expected: HashMap<String, Option<String>> = (0..PER_CLIENT)
        .map(|i| (key(me, i), Some(format!("legacy-{me}-{i}"))))
        .collect();
    let mut rng = fastrand::Rng::with_seed(me as u64 + 7);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = key(me, rng.usize(..PER_CLIENT));
        match rng.u8(..100) {
            0..=69 => {
                let got = c.cmd(&["GET", &k]);
                let want = match expected[&k].as_deref() {
                    Some(v) => Value::bulk(v),
                    None => Value::Null,
                };
                if got != want {
                    logouts
                        .lock()
                        .expect("lock")
                        .push(format!("GET {k}: got {got:?}, want {want:?}"));
                }
            }
            70..=89 => {
                let v = format!("v{me}-{n}");
                assert_eq!(c.cmd(&["SETEX", &k, "3600", &v]), ok());
                expected.insert(k, Some(v));
            }
            90..=96 => {
                let r = c.cmd(&["EXPIRE", &k, "7200"]);
                let want = Value::Int(expected[&k].is_some() as i64);
                assert_eq!(r, want, "EXPIRE {k}");
            }
            _ => {
                c.cmd(&["DEL", &k]);
                expected.insert(k, None);
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    expected
}

#[test]
fn redis_to_embedded_through_every_stage_with_a_rollback() {
    let old = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", old.port);
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        "--migrate-shadow-sample",
        "100",
    ]);
    // The legacy sessions, written to the old store before the migration starts.
    let mut o = old.connect();
    for c in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            let v = format!("legacy-{c}-{i}");
            assert_eq!(o.cmd(&["SETEX", &key(c, i), "3600", &v]), ok());
        }
    }
    migrate_under_load(&s);
}

/// Clients read and write their sessions through `s` while the stages are stepped from off
/// to complete, with a rollback of two stages; then checks no logouts and no lost writes.
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
            ok()
        );
        // Let the clients run a while in each setting.
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
    // Roll back two stages, then go forward again.
    step("shadow", "100");
    step("live", "100");
    step("rampdown", "100");
    // Every session read once in rampdown is copied forward (what the backfill does in bulk).
    let mut sweep = s.connect();
    for c in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            sweep.cmd(&["GET", &key(c, i)]);
        }
    }
    step("complete", "100");
    stop.store(true, Ordering::Relaxed);
    let expected: Vec<HashMap<String, Option<String>>> = clients
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();

    let logouts = logouts.lock().expect("lock");
    assert!(
        logouts.is_empty(),
        "{} reads saw the wrong session, e.g. {:?}",
        logouts.len(),
        &logouts[..logouts.len().min(3)]
    );
    // In `complete` sessiond reads only the new store: everything the clients wrote is there.
    let mut c = s.connect();
    for exp in &expected {
        for (k, v) in exp {
            let want = match v {
                Some(v) => Value::bulk(v),
                None => Value::Null,
            };
            assert_eq!(c.cmd(&["GET", k]), want, "final content of {k}");
        }
    }
    let info = c.cmd(&["INFO", "migration"]).as_str();
    assert!(info.contains("migration_stage:complete"), "{info}");
    assert!(info.contains("secondary_write_errors:0"), "{info}");
    // The stages really ran: sessions were compared in shadow/live and copied forward.
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(field("compare_match") > 0, "{info}");
    assert!(field("copied_forward") > 0, "{info}");
}

fn ctl(admin: &str, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(support::sessiond_bin())
        .args(["ctl", "--admin", admin])
        .args(extra)
        .env_remove("SESSIOND_ADMIN_TOKEN")
        .env_remove("SESSIOND_DIR")
        .output()
        .expect("sessiond ctl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The admin API and `sessiond ctl`: status, a live change that the next command on an
/// already open connection sees, the generated token, and refusals.
#[test]
fn admin_api_and_ctl_control_the_migration() {
    let old = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", old.port);
    let admin_port = support::free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "dualwrite",
        "--migrate-shadow-sample",
        "100",
        "--admin-listen",
        &admin,
    ]);
    let dir = s.dir.0.to_string_lossy().into_owned();
    let mut c = s.connect();
    let (ok, text) = ctl(&admin, &["--dir", &dir, "migration", "status", "--json"]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON status");
    assert_eq!(v["stage"], "dualwrite");
    assert_eq!(v["percent"], 100.0);
    assert_eq!(v["stores"]["old"], "redis");

    // Shadow for everyone: the open connection's next read is compared.
    assert_eq!(
        c.cmd(&["SETEX", "PHPREDIS_SESSION:x", "60", "v"]),
        Value::Simple("OK".into())
    );
    let (ok, text) = ctl(
        &admin,
        &[
            "--dir",
            &dir,
            "migration",
            "set",
            "--stage",
            "shadow",
            "--percent",
            "100",
        ],
    );
    assert!(ok && text.contains("stage shadow at 100"), "{text}");
    assert_eq!(c.cmd(&["GET", "PHPREDIS_SESSION:x"]), Value::bulk("v"));
    let info = c.cmd(&["INFO", "migration"]).as_str();
    assert!(info.contains("migration_stage:shadow"), "{info}");
    assert!(info.contains("compare_match:1"), "{info}");
    // Both stores were called and timed; the admin API reports their latencies.
    let (_, text) = ctl(&admin, &["--dir", &dir, "migration", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON status");
    for side in ["old", "new"] {
        let calls = v["latency_us"][side]["count"].as_u64().unwrap_or(0);
        assert!(calls >= 2, "{side}: {text}");
        assert!(
            v["latency_us"][side]["p99_us"].as_u64().unwrap_or(0) >= 1,
            "{text}"
        );
    }
    assert!(info.contains("latency_old:calls="), "{info}");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "migrate-stage"]),
        Value::Array(vec![Value::bulk("migrate-stage"), Value::bulk("shadow")])
    );

    // Refusals: no token or a wrong one, a bad stage, a bad percentage.
    let (ok, text) = ctl(&admin, &["--token", "wrong", "migration", "status"]);
    assert!(!ok && text.contains("401"), "{text}");
    let (ok, text) = ctl(
        &admin,
        &["--dir", &dir, "migration", "set", "--stage", "bogus"],
    );
    assert!(!ok && text.contains("400"), "{text}");
    let (ok, text) = ctl(
        &admin,
        &["--dir", &dir, "migration", "set", "--percent", "101"],
    );
    assert!(!ok && text.contains("400"), "{text}");
    let (ok, _) = ctl(&admin, &["--dir", "/nonexistent", "migration", "status"]);
    assert!(!ok);
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "migrate-stage", "sideways"]),
        Value::Error(_)
    ));
    // Stage and percentage in one CONFIG SET change together or not at all.
    assert!(matches!(
        c.cmd(&[
            "CONFIG",
            "SET",
            "migrate-stage",
            "live",
            "migrate-percent",
            "200"
        ]),
        Value::Error(_)
    ));
    // Nothing changed by the refused requests.
    let (_, text) = ctl(&admin, &["--dir", &dir, "migration", "status"]);
    assert!(text.contains("stage shadow at 100"), "{text}");
}

/// A throwaway MariaDB: its own data directory, loopback port and socket, no grant tables
/// (any local user may connect), stopped when dropped.
struct Mariadb {
    child: std::process::Child,
    port: u16,
    sock: String,
    _dir: support::TempDir,
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mariadb {
    fn start() -> Mariadb {
        let dir = support::TempDir::new("mariadb");
        let data = dir.path("data");
        // Its own temp dir too: two bootstraps at once in the shared /tmp have been seen to
        // trip over each other's temporary tables ("Could not remove temporary table").
        let tmp = dir.path("tmp");
        std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
        let out = std::process::Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db (run scripts/test, which installs mariadb-server)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = support::free_port();
        let sock = dir.path("mysqld.sock").to_string_lossy().into_owned();
        let child = std::process::Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--skip-grant-tables",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={sock}"))
            .arg(format!("--pid-file={}", dir.path("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.path("error.log").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mariadbd");
        let m = Mariadb {
            child,
            port,
            sock,
            _dir: dir,
        };
        let deadline = Instant::now() + support::DEADLINE;
        while !m.sql("SELECT 1").0 {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn sql(&self, statements: &str) -> (bool, String) {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-N", "-B"])
            .arg(format!("--socket={}", self.sock))
            .args(["-e", statements])
            .output()
            .expect("mariadb client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// memcached on a free loopback port, stopped when dropped.
struct Memcached(std::process::Child);

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn memcached() -> (Memcached, u16) {
    let port = support::free_port();
    let child = std::process::Command::new("memcached")
        .args(["-l", "127.0.0.1", "-U", "0", "-u", "root", "-m", "64"])
        .args(["-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("memcached (run scripts/test, which installs it)");
    let child = Memcached(child);
    let deadline = Instant::now() + support::DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn memcached_stat(port: u16, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("memcached");
    s.write_all(b"stats\r\n").expect("stats");
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with("END\r\n") {
        let n = s.read(&mut buf).expect("stats reply");
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The first seed, reproduced: sessions in MariaDB behind memcached (the old store) move to
/// redis-server (the new one) under client load through every stage, with a rollback.
#[test]
fn mariadb_and_memcached_to_redis_through_every_stage() {
    let db = Mariadb::start();
    let (_mc, mc_port) = memcached();
    let new = redis_server(&[]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let mut inserts = String::from(
        "CREATE DATABASE app; USE app; CREATE TABLE sessions (id VARBINARY(255) NOT NULL PRIMARY KEY, \
         data MEDIUMBLOB NOT NULL, expires_at BIGINT NOT NULL, KEY (expires_at));",
    );
    for c in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            inserts.push_str(&format!(
                "INSERT INTO sessions VALUES ('c{c}s{i}', 'legacy-{c}-{i}', {});",
                now_ms + 3_600_000
            ));
        }
    }
    let (ok, out) = db.sql(&inserts);
    assert!(ok, "{out}");
    let from = format!(
        "mysql://root@127.0.0.1:{}/app?memcached=127.0.0.1:{mc_port}&memcached_prefix=sess:",
        db.port
    );
    let to = format!("redis://127.0.0.1:{}", new.port);
    let s = sessiond(&[
        "--migrate-from",
        &from,
        "--migrate-to",
        &to,
        "--migrate-shadow-sample",
        "100",
    ]);
    migrate_under_load(&s);
    // The cache in front of the table served reads (read-through filled it).
    assert!(memcached_stat(mc_port, "get_hits") > 0);
    // The table was written through until `complete`: a session the clients changed there
    // holds their value, not the legacy one.
    let (ok, rows) = db.sql("SELECT COUNT(*) FROM app.sessions WHERE data NOT LIKE 'legacy-%'");
    assert!(ok && rows.trim().parse::<u64>().unwrap_or(0) > 0, "{rows}");
}

/// Backfill from MariaDB to redis-server: rate-limited, killed half-way and resumed from its
/// checkpoint; expired rows are not copied, a session written to the new store meanwhile is
/// not overwritten, TTLs carry over; verify then reports exactly that one difference.
#[test]
fn backfill_resumes_after_interruption_and_never_overwrites() {
    let db = Mariadb::start();
    let new = redis_server(&[]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut sql = String::from(
        "CREATE DATABASE app; USE app; CREATE TABLE sessions (id VARBINARY(255) NOT NULL PRIMARY KEY, \
         data MEDIUMBLOB NOT NULL, expires_at BIGINT NOT NULL, KEY (expires_at)); INSERT INTO sessions VALUES ",
    );
    let rows: Vec<String> = (0..3000)
        .map(|i| format!("('s{i:05}', 'data-{i}', {})", now_ms + 600_000 + i))
        .chain((0..100).map(|i| format!("('old{i}', 'x', {})", now_ms - 1000)))
        .collect();
    sql.push_str(&rows.join(","));
    let (created, out) = db.sql(&sql);
    assert!(created, "{out}");
    // Written to the new store by the router meanwhile: newer than the table's copy.
    let mut r = new.connect();
    assert_eq!(
        r.cmd(&["SET", "PHPREDIS_SESSION:s00007", "newer", "PX", "900000"]),
        ok()
    );

    let dir = support::TempDir::new("backfill");
    let checkpoint = dir.path("backfill.json");
    let cp = checkpoint.to_string_lossy().into_owned();
    let from = format!("mysql://root@127.0.0.1:{}/app", db.port);
    let to = format!("redis://127.0.0.1:{}", new.port);
    let base = [
        "--from",
        &from,
        "--to",
        &to,
        "--batch",
        "100",
        "--checkpoint",
        &cp,
        "--quiet",
    ];
    let interrupted_at = support::backfill_killed_after(&base, "1000", &checkpoint, 500);
    assert!(
        interrupted_at < 3000,
        "interrupted too late to test resuming"
    );

    let out = migrate_cmd(&["backfill"])
        .args(base)
        .args(["--rate", "0"])
        .output()
        .expect("backfill");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("3000 sessions seen"), "{report}");
    // Resumed: only the batch cut short by the kill is looked at twice, not everything
    // the first run did.
    let kept: u64 = report
        .split(" already there")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("kept count in the report");
    assert!(kept <= 1 + 100, "{report}");
    assert_eq!(
        r.cmd(&["DBSIZE"]),
        Value::Int(3000),
        "expired rows are not copied"
    );
    assert_eq!(
        r.cmd(&["GET", "PHPREDIS_SESSION:s00007"]),
        Value::bulk("newer")
    );
    assert_eq!(
        r.cmd(&["GET", "PHPREDIS_SESSION:s02999"]),
        Value::bulk("data-2999")
    );
    let Value::Int(at) = r.cmd(&["PEXPIRETIME", "PHPREDIS_SESSION:s02999"]) else {
        panic!("PEXPIRETIME")
    };
    assert_eq!(at, now_ms + 600_000 + 2999, "the TTL carried over exactly");

    let report = support::report_of(
        &mut migrate_cmd(&["verify", "--from", &from, "--to", &to]),
        false,
    );
    assert!(
        report.contains("3000 sessions checked; 0 missing, 1 with another value, 0 with a TTL"),
        "{report}"
    );
}

/// Backfill from PHP session files: live sessions copied with PHP's expiry
/// (mtime + gc_maxlifetime), expired ones left behind; verify agrees.
#[test]
fn backfill_from_php_session_files() {
    let dir = support::TempDir::new("files-backfill");
    let files = dir.path("sessions");
    std::fs::create_dir_all(&files).expect("dir");
    let now = std::time::SystemTime::now();
    for i in 0..50 {
        std::fs::write(
            files.join(format!("sess_live{i}")),
            format!("user|s:1:\"{i}\";"),
        )
        .expect("write");
    }
    for i in 0..5 {
        let f = files.join(format!("sess_old{i}"));
        std::fs::write(&f, "x").expect("write");
        let old = std::fs::File::options().write(true).open(&f).expect("open");
        old.set_modified(now - Duration::from_secs(7200))
            .expect("mtime");
    }
    let new = redis_server(&[]);
    let from = format!("files://{}?gc_maxlifetime=1440", files.display());
    let to = format!("redis://127.0.0.1:{}", new.port);
    let out = migrate_cmd(&["backfill", "--from", &from, "--to", &to, "--quiet"])
        .output()
        .expect("backfill");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(report.contains("50 sessions seen, 50 copied"), "{report}");
    let mut r = new.connect();
    assert_eq!(r.cmd(&["DBSIZE"]), Value::Int(50));
    assert_eq!(
        r.cmd(&["GET", "PHPREDIS_SESSION:live7"]),
        Value::bulk("user|s:1:\"7\";")
    );
    let Value::Int(ttl) = r.cmd(&["TTL", "PHPREDIS_SESSION:live7"]) else {
        panic!("TTL")
    };
    assert!(
        (1400..=1440).contains(&ttl),
        "PHP's expiry carried over: {ttl}"
    );
    let out = migrate_cmd(&["verify", "--from", &from, "--to", &to])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
