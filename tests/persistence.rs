//! Crash safety with real processes: sessiond is SIGKILLed at random moments while verifying
//! clients write, expire and delete sessions, then restarted on the same data directory; what
//! it serves afterwards must be exactly what it acknowledged. Also graceful shutdown, torn
//! tails, corruption and `check-aof --fix`, and log rewrites under load.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a key should hold: `None` = absent; `Some((value, expire_at))` with `expire_at` 0 for
/// no expiry; for a relative TTL, `expire_at` is the latest time the server could have chosen.
type KeyState = Option<(String, i64)>;

#[derive(Default)]
struct Expected {
    /// Last acknowledged state per key.
    acked: HashMap<String, KeyState>,
    /// The one operation per client that was sent but not acknowledged when the server died.
    in_flight: HashMap<String, KeyState>,
    /// Keys whose last acknowledged write used a relative TTL (EX/PX): the server chose the
    /// exact expiry, no later than recorded.
    relative: HashMap<String, bool>,
    /// Acknowledged operations so far.
    acks: usize,
}

/// One verifying client: random SET (PXAT or EX or none), short-lived sessions, DEL, EXPIRE,
/// on its own keys, until the connection dies. Returns what it knows.
fn client_loop(
    port: u16,
    id: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Expected>>,
) {
    let mut c = Conn::connect(port);
    let mut seq = 0u64;
    let mut rng = fastrand::Rng::with_seed((id * 1000 + round) as u64);
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("PHPREDIS_SESSION:r{round}c{id}k{}", rng.usize(..40));
        let value = format!("v{seq}-{}", "x".repeat(rng.usize(..200)));
        let now = now_ms();
        let (args, next, relative): (Vec<String>, KeyState, bool) = match rng.u8(..10) {
            0..=3 => {
                let at = now + 60_000 + rng.i64(0..60_000);
                (
                    vec![
                        "SET".into(),
                        key.clone(),
                        value.clone(),
                        "PXAT".into(),
                        at.to_string(),
                    ],
                    Some((value, at)),
                    false,
                )
            }
            4..=5 => (
                vec!["SETEX".into(), key.clone(), "1440".into(), value.clone()],
                // Filled in after the reply: the server's clock is at most "now after reply".
                Some((value, 0)),
                true,
            ),
            6 => {
                // A session that expires almost at once: must never come back after a restart.
                let at = now + 50;
                (
                    vec![
                        "SET".into(),
                        key.clone(),
                        value.clone(),
                        "PXAT".into(),
                        at.to_string(),
                    ],
                    Some((value, at)),
                    false,
                )
            }
            7 => (
                vec!["SET".into(), key.clone(), value.clone()],
                Some((value, 0)),
                false,
            ),
            _ => (vec!["DEL".into(), key.clone()], None, false),
        };
        out.lock().unwrap().in_flight.insert(key.clone(), {
            let mut n = next.clone();
            if relative {
                if let Some((_, at)) = n.as_mut() {
                    *at = i64::MAX; // unknown until acknowledged
                }
            }
            n
        });
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = c.try_cmd(&refs);
        let mut e = out.lock().unwrap();
        e.in_flight.remove(&key);
        match reply {
            Some(Value::Simple(_)) | Some(Value::Int(_)) => {
                let mut n = next;
                if relative {
                    if let Some((_, at)) = n.as_mut() {
                        *at = now_ms() + 1_440_000;
                    }
                }
                e.relative.insert(key.clone(), relative);
                e.acked.insert(key, n);
                e.acks += 1;
            }
            Some(other) => panic!("unexpected reply {other:?}"),
            None => {
                // Died mid-command: it may or may not have been applied.
                let mut n = next;
                if relative {
                    if let Some((_, at)) = n.as_mut() {
                        *at = i64::MAX;
                    }
                }
                e.in_flight.insert(key, n);
                return;
            }
        }
    }
}

/// Checks the restarted server against what the clients were told.
fn verify(c: &mut Conn, e: &Expected) -> usize {
    let mut checked = 0;
    for (key, acked) in &e.acked {
        let value = match c.cmd(&["GET", key]) {
            Value::Bulk(b) => Some(String::from_utf8(b).unwrap()),
            Value::Null => None,
            other => panic!("GET {key}: {other:?}"),
        };
        let expire_at = match c.cmd(&["PEXPIRETIME", key]) {
            Value::Int(t) => t,
            other => panic!("PEXPIRETIME {key}: {other:?}"),
        };
        // Read after the replies: a key that expired while we asked counts as expired.
        let now = now_ms();
        let allowed: Vec<&KeyState> = std::iter::once(acked).chain(e.in_flight.get(key)).collect();
        let ok = allowed.iter().any(|want| match (want, &value) {
            // Deleted, or expired by now: must be absent.
            (None, v) => v.is_none(),
            // Absent is right only once it has expired.
            (Some((_, at)), None) => *at != 0 && *at <= now,
            // Read by GET, expired before PEXPIRETIME asked (a 50 ms session).
            (Some((wv, at)), Some(v)) if expire_at == -2 => wv == v && *at != 0 && *at <= now,
            (Some((wv, at)), Some(v)) => {
                wv == v
                    && if *at == 0 {
                        expire_at == -1
                    } else if *at == i64::MAX || e.relative.get(key) == Some(&true) {
                        // Relative TTL: never longer than it was.
                        expire_at > 0 && expire_at <= *at
                    } else {
                        expire_at == *at
                    }
            }
        });
        assert!(
            ok,
            "key {key}: server has {value:?} (pexpiretime {expire_at}), acknowledged {acked:?}, in flight {:?}",
            e.in_flight.get(key)
        );
        checked += 1;
    }
    checked
}

fn crash_rounds(fsync: &str, rounds: usize) {
    let dir = TempDir::new(&format!("crash-{fsync}"));
    let expected = Arc::new(Mutex::new(Expected::default()));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut total_checked = 0;
    for round in 0..rounds {
        let mut server = sessiond_in(&dir, &["--appendfsync", fsync]);
        let port = server.port;
        // Everything acknowledged in earlier rounds survived this restart too.
        total_checked += verify(&mut server.connect(), &expected.lock().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|id| {
                let (stop, out) = (stop.clone(), expected.clone());
                std::thread::spawn(move || client_loop(port, id, round, stop, out))
            })
            .collect();
        // Kill after a random number of acknowledged writes (polled); in odd rounds a log
        // rewrite starts first, so some kills land in the middle of one.
        let target = expected.lock().unwrap().acks + 100 + rng.usize(..1500);
        if round % 2 == 1 {
            let _ = server.connect().try_cmd(&["BGREWRITEAOF"]);
        }
        let deadline = Instant::now() + DEADLINE;
        while expected.lock().unwrap().acks < target {
            assert!(Instant::now() < deadline, "clients made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
    }
    let server = sessiond_in(&dir, &["--appendfsync", fsync]);
    total_checked += verify(&mut server.connect(), &expected.lock().unwrap());
    assert!(
        total_checked > 100,
        "too few keys verified: {total_checked}"
    );
    eprintln!("crash-soak {fsync}: {rounds} SIGKILL rounds, {total_checked} key checks, all as acknowledged");
}

/// Rounds per crash test: a few in the suite; `bench/crash-soak` sets
/// `SESSIOND_CRASH_ROUNDS=20`.
fn rounds(default: usize) -> usize {
    std::env::var("SESSIOND_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sigkill_with_appendfsync_always_loses_no_acknowledged_write() {
    crash_rounds("always", rounds(4));
}

/// `everysec` fsyncs once a second, but every acknowledged write has been handed to the OS
/// before its reply, so a process crash (not a power loss) loses nothing either.
#[test]
fn sigkill_with_appendfsync_everysec_loses_no_acknowledged_write() {
    crash_rounds("everysec", rounds(3));
}

#[test]
fn restart_keeps_absolute_expiry_and_drops_what_expired_while_down() {
    let dir = TempDir::new("ttl");
    let mut s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    let far = now_ms() + 3_600_000;
    let soon = now_ms() + 300;
    assert_eq!(
        c.cmd(&["SET", "long", "a", "PXAT", &far.to_string()]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["SET", "short", "b", "PXAT", &soon.to_string()]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["SETEX", "rel", "100", "c"]),
        Value::Simple("OK".into())
    );
    let rel_at = match c.cmd(&["PEXPIRETIME", "rel"]) {
        Value::Int(t) => t,
        v => panic!("{v:?}"),
    };
    assert_eq!(c.cmd(&["SET", "forever", "d"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(&["SET", "gone", "e"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(&["DEL", "gone"]), Value::Int(1));
    assert_eq!(s.terminate().code(), Some(0), "SIGTERM exits 0");
    // Down until `short` has expired.
    while now_ms() <= soon {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["PEXPIRETIME", "long"]),
        Value::Int(far),
        "a restart never extends a session"
    );
    assert_eq!(c.cmd(&["PEXPIRETIME", "rel"]), Value::Int(rel_at));
    assert_eq!(c.cmd(&["GET", "short"]), Value::Null);
    assert_eq!(c.cmd(&["GET", "gone"]), Value::Null);
    assert_eq!(c.cmd(&["GET", "forever"]), Value::bulk("d"));
    assert_eq!(
        c.cmd(&["DBSIZE"]),
        Value::Int(3),
        "expired session not loaded"
    );
    assert_eq!(
        info_field(&mut c, "persistence", "rdb_last_load_keys_expired"),
        "1"
    );
}

#[test]
fn shutdown_command_and_appendonly_no_snapshots() {
    let dir = TempDir::new("snap");
    // Without a log, a graceful shutdown writes a snapshot…
    let mut s = sessiond_in(&dir, &["--appendonly", "no"]);
    let mut c = s.connect();
    c.cmd(&["SET", "k1", "v1"]);
    assert_eq!(info_field(&mut c, "persistence", "aof_enabled"), "0");
    c.send_raw(&encode(&[b"SHUTDOWN"]));
    assert!(c.read().is_none(), "SHUTDOWN closes without a reply");
    assert_eq!(s.wait_exit().code(), Some(0));
    let mut s = sessiond_in(&dir, &["--appendonly", "no"]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["GET", "k1"]), Value::bulk("v1"));
    // …SHUTDOWN NOSAVE does not…
    c.cmd(&["SET", "k2", "v2"]);
    c.send_raw(&encode(&[b"SHUTDOWN", b"NOSAVE"]));
    assert!(c.read().is_none());
    assert_eq!(s.wait_exit().code(), Some(0));
    let s = sessiond_in(&dir, &["--appendonly", "no"]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["GET", "k2"]), Value::Null);
    // …and SAVE does, with LASTSAVE moving.
    c.cmd(&["SET", "k3", "v3"]);
    let before = match c.cmd(&["LASTSAVE"]) {
        Value::Int(t) => t,
        v => panic!("{v:?}"),
    };
    assert_eq!(c.cmd(&["SAVE"]), Value::Simple("OK".into()));
    assert!(matches!(c.cmd(&["LASTSAVE"]), Value::Int(t) if t >= before));
    assert_eq!(info_field(&mut c, "persistence", "rdb_saves"), "1");
    assert_eq!(
        c.cmd(&["SHUTDOWN", "BOGUS"]),
        Value::Error("ERR syntax error".into())
    );
    drop(c);
    drop(s); // SIGKILL
    let s = sessiond_in(&dir, &["--appendonly", "no"]);
    assert_eq!(s.connect().cmd(&["GET", "k3"]), Value::bulk("v3"));
}

fn only_log(dir: &TempDir) -> std::path::PathBuf {
    let m = std::fs::read_to_string(dir.path("sessiond.manifest")).unwrap();
    let name = m
        .lines()
        .filter_map(|l| l.strip_prefix("log "))
        .next_back()
        .unwrap();
    dir.path(name)
}

#[test]
fn torn_tail_is_truncated_and_corruption_stops_startup_until_fixed() {
    let dir = TempDir::new("torn");
    let mut s = sessiond_in(&dir, &["--appendfsync", "always"]);
    let mut c = s.connect();
    for i in 0..50 {
        c.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    s.kill();
    let log = only_log(&dir);
    let clean = std::fs::read(&log).unwrap();
    // A crash mid-write: half a frame at the end.
    let mut torn = clean.clone();
    torn.extend_from_slice(&clean[clean.len() - 30..clean.len() - 10]);
    std::fs::write(&log, &torn).unwrap();
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(50));
    assert_eq!(
        info_field(&mut c, "persistence", "sessiond_load_torn_bytes"),
        "20"
    );
    drop(c);
    drop(s);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        clean,
        "the torn bytes were cut off"
    );

    // A flipped byte in the middle: start-up refuses, naming file and offset.
    let mut bad = clean.clone();
    let mid = clean.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(&log, &bad).unwrap();
    let out = serve_refused(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&log.display().to_string()) && err.contains("corrupt at offset"),
        "{err}"
    );

    // check-aof reports it; --fix keeps every valid record and the original as .bak.
    let check = std::process::Command::new(sessiond_bin())
        .args(["check-aof"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("CORRUPT region"));
    let fix = std::process::Command::new(sessiond_bin())
        .args(["check-aof", "--fix"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(
        fix.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fix.stdout)
    );
    assert_eq!(
        std::fs::read(format!("{}.bak", log.display())).unwrap(),
        bad
    );
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["DBSIZE"]),
        Value::Int(49),
        "only the damaged record is lost"
    );
    assert_eq!(c.cmd(&["GET", "k49"]), Value::bulk("v49"));
}

#[test]
fn automatic_rewrite_under_load_keeps_every_session() {
    let dir = TempDir::new("rewrite");
    let s = sessiond_in(
        &dir,
        &[
            "--auto-aof-rewrite-min-size",
            "200kb",
            "--auto-aof-rewrite-percentage",
            "50",
        ],
    );
    let mut c = s.connect();
    let value = "s".repeat(300);
    // Overwrite a small working set many times: the log grows, the data does not.
    let mut rounds = 0;
    let deadline = Instant::now() + DEADLINE;
    while info_field(&mut c, "persistence", "aof_rewrites")
        .parse::<u64>()
        .unwrap()
        < 2
    {
        assert!(Instant::now() < deadline, "no automatic rewrite happened");
        for i in 0..500 {
            c.cmd(&[
                "SETEX",
                &format!("PHPREDIS_SESSION:{i}"),
                "1440",
                &format!("{rounds}{value}"),
            ]);
        }
        rounds += 1;
    }
    // Writes during and after the rewrites, then a crash.
    for i in 0..500 {
        c.cmd(&[
            "SETEX",
            &format!("PHPREDIS_SESSION:{i}"),
            "1440",
            &format!("final{i}"),
        ]);
    }
    let size: u64 = info_field(&mut c, "persistence", "aof_current_size")
        .parse()
        .unwrap();
    assert!(
        size < 200 * 1024 * 3,
        "log was compacted (now {size} bytes)"
    );
    drop(c);
    drop(s);
    let files: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".aof")).count(),
        1,
        "old logs deleted: {files:?}"
    );
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(500));
    for i in [0, 250, 499] {
        assert_eq!(
            c.cmd(&["GET", &format!("PHPREDIS_SESSION:{i}")]),
            Value::bulk(&format!("final{i}"))
        );
    }
}

#[test]
fn a_data_directory_serves_one_server_at_a_time() {
    let dir = TempDir::new("lock");
    let _s = sessiond_in(&dir, &[]);
    let out = serve_refused(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another sessiond"));
}
