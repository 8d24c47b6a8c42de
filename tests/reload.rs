//! Live reload of the configuration file: SIGHUP and `sessiond ctl reload` under load.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::reloadable::{ctl, Reloadable, TOKEN};
use support::{sessiond, Conn, Value};

fn config_get(c: &mut Conn, name: &str) -> String {
    match c.cmd(&["CONFIG", "GET", name]) {
        Value::Array(v) if v.len() == 2 => v[1].as_str(),
        other => panic!("CONFIG GET {name}: {other:?}"),
    }
}

/// Polls until `name` reads `want` (a SIGHUP is handled asynchronously).
fn wait_for(c: &mut Conn, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = config_get(c, name);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {got:?}, never became {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_and_ctl_reload_apply_live_settings_without_dropping_connections() {
    let s = Reloadable::start(
        "slowlog-max-len = 128\nloglevel = \"notice\"\nmaxclients = 1000\ndatabases = 16\n",
        &["--maxclients", "500"],
    );
    let admin = s.admin.clone();

    // Load on four connections for the whole test: none may fail or be dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, ops) = (stop.clone(), ops.clone());
            let mut c = s.proc.connect();
            std::thread::spawn(move || {
                let key = format!("session:{w}");
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(
                        c.cmd(&["SET", &key, "v", "EX", "60"]),
                        Value::Simple("OK".into())
                    );
                    assert_eq!(c.cmd(&["GET", &key]), Value::bulk("v"));
                    ops.fetch_add(2, Ordering::Relaxed);
                }
                c
            })
        })
        .collect();

    let mut c = s.proc.connect();
    assert_eq!(config_get(&mut c, "slowlog-max-len"), "128");
    s.rewrite(
        "slowlog-max-len = 7\nloglevel = \"warning\"\nlatency-monitor-threshold = 5\n\
         notify-keyspace-events = \"Ex\"\nmaxclients = 100\ndatabases = 4\n",
    );
    s.proc.signal("HUP");
    wait_for(&mut c, "slowlog-max-len", "7");
    assert_eq!(config_get(&mut c, "loglevel"), "warning");
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "5");
    assert_eq!(config_get(&mut c, "notify-keyspace-events"), "xE");
    // The flag still wins over the file, as at start; databases needs a restart.
    assert_eq!(config_get(&mut c, "maxclients"), "500");
    assert_eq!(config_get(&mut c, "databases"), "16");

    // ctl reload reports what it did: the file as just loaded, a new change, the rest.
    s.rewrite(
        "slowlog-max-len = 9\nloglevel = \"warning\"\nlatency-monitor-threshold = 5\n\
         notify-keyspace-events = \"Ex\"\nmaxclients = 200\ndatabases = 8\n",
    );
    let (ok, text) = ctl(&admin, &["reload", "--json"]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON report");
    assert_eq!(
        v["applied"],
        serde_json::json!([["slowlog-max-len", "7", "9"]]),
        "{text}"
    );
    assert_eq!(v["overridden"], serde_json::json!(["maxclients"]), "{text}");
    assert_eq!(
        v["restart_needed"],
        serde_json::json!(["databases"]),
        "{text}"
    );
    assert_eq!(config_get(&mut c, "slowlog-max-len"), "9");

    // An invalid file is refused whole, saying where, and nothing changes.
    s.rewrite("slowlog-max-len = 3\nmaxmemory-policy = \"sometimes\"\n");
    let (ok, text) = ctl(&admin, &["reload"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("400") && text.contains("maxmemory-policy"),
        "{text}"
    );
    s.rewrite("slowlog-max-len = [oops\n");
    let (ok, text) = ctl(&admin, &["reload"]);
    assert!(!ok && text.contains("line 1"), "{text}");
    assert_eq!(config_get(&mut c, "slowlog-max-len"), "9");

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let mut conn = w.join().expect("a load connection failed");
        assert_eq!(conn.cmd(&["PING"]), Value::Simple("PONG".into()));
    }
    assert!(ops.load(Ordering::Relaxed) > 0);
}

#[test]
fn reload_without_a_config_file_is_refused() {
    let admin = format!("127.0.0.1:{}", support::free_port());
    let _s = sessiond(&["--admin-listen", &admin, "--admin-token", TOKEN]);
    let (ok, text) = ctl(&admin, &["reload"]);
    assert!(!ok && text.contains("without --config"), "{text}");
}

/// Gateway and migration settings change live too: the upstream timeout the running
/// upstream uses, and the migration guard.
#[test]
fn reload_changes_the_upstream_timeout_and_the_migration_guard() {
    let r = support::redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", r.port);
    let gw = Reloadable::start("upstream-timeout-ms = 1000\n", &["--upstream", &url]);
    let mut c = gw.proc.connect();
    assert_eq!(config_get(&mut c, "upstream-timeout-ms"), "1000");
    gw.rewrite("upstream-timeout-ms = 250\n");
    let (ok, text) = gw.reload(&[]);
    assert!(ok && text.contains("upstream-timeout-ms"), "{text}");
    assert_eq!(config_get(&mut c, "upstream-timeout-ms"), "250");
    // The running upstream uses it (INFO reads the upstream's own options).
    let info = c.cmd(&["INFO", "upstream"]).as_str();
    assert!(info.contains("upstream_timeout_ms:250"), "{info}");
    drop(gw);

    let m = Reloadable::start(
        "migrate-stage = \"dualwrite\"\n",
        &["--migrate-from", &url, "--migrate-to", "embedded"],
    );
    let mut c = m.proc.connect();
    assert_eq!(config_get(&mut c, "migrate-guard"), "off");
    m.rewrite(
        "migrate-stage = \"shadow\"\nmigrate-percent = 25\nmigrate-guard = \"errors=2%,window=10s\"\n",
    );
    m.proc.signal("HUP");
    wait_for(&mut c, "migrate-stage", "shadow");
    assert_eq!(config_get(&mut c, "migrate-percent"), "25");
    wait_for(&mut c, "migrate-guard", "errors=2%,window=10s");
    let audit = std::fs::read_to_string(m.proc.dir.0.join("audit.log")).expect("audit.log");
    assert!(audit.contains("\"who\":\"reload\""), "{audit}");
}

/// A reload with a new single-node upstream URL: the same client connection's next write
/// goes to the new server.
#[test]
fn reload_points_the_gateway_at_a_new_server() {
    let a = support::redis_server(&[]);
    let b = support::redis_server(&[]);
    let gw = Reloadable::start(
        &format!("upstream = \"redis://127.0.0.1:{}\"\n", a.port),
        &[],
    );
    let mut c = gw.proc.connect();
    assert_eq!(c.cmd(&["SET", "k1", "a"]), Value::Simple("OK".into()));
    gw.rewrite(&format!("upstream = \"redis://127.0.0.1:{}\"\n", b.port));
    let (ok, text) = gw.reload(&["--json"]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON report");
    assert_eq!(v["applied"][0][0], "upstream", "{text}");
    assert_eq!(c.cmd(&["SET", "k2", "b"]), Value::Simple("OK".into()));
    assert_eq!(b.connect().cmd(&["GET", "k2"]), Value::bulk("b"));
    assert_eq!(a.connect().cmd(&["GET", "k2"]), Value::Null);
    assert_eq!(a.connect().cmd(&["GET", "k1"]), Value::bulk("a"));
    // A different kind of URL needs a restart, and says so.
    gw.rewrite("upstream = \"redis+cluster://127.0.0.1:1\"\n");
    let (ok, text) = gw.reload(&["--json"]);
    assert!(ok, "{text}");
    assert!(text.contains("restart needed"), "{text}");
}
