//! Gateway over Sentinel, with real processes: one primary, two replicas, three
//! redis-sentinel (down-after-milliseconds 1000). Under load the primary is SIGKILLed:
//! with `read-from-replica on-primary-failure` no read fails, and writes resume through the
//! same sessiond once Sentinel has promoted a replica. The timeline is printed.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::sentinel::{field, poll, sentinel_set};
use support::{redis_server, sessiond, Conn, Proc, Value};

#[test]
fn primary_killed_under_load_reads_never_fail_and_writes_resume() {
    let mut primary = redis_server(&[]);
    let pp = primary.port.to_string();
    let replicas: Vec<Proc> = (0..2)
        .map(|_| redis_server(&["--replicaof", "127.0.0.1", &pp]))
        .collect();
    let (_sentinels, url) = sentinel_set(&primary, &replicas);
    let gw = sessiond(&[
        "--upstream",
        &url,
        "--upstream-read-from-replica",
        "on-primary-failure",
        "--upstream-health-interval-ms",
        "200",
    ]);

    // Sessions written before the failure, replicated to both replicas.
    let mut c = gw.connect();
    for i in 0..100 {
        let k = format!("sess:{i}");
        assert_eq!(
            c.cmd(&["SETEX", &k, "3600", &k]),
            Value::Simple("OK".into())
        );
    }
    let mut p = primary.connect();
    assert_eq!(p.cmd(&["WAIT", "2", "10000"]), Value::Int(2));

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let failed_reads = Arc::new(Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (stop, reads, failed) = (stop.clone(), reads.clone(), failed_reads.clone());
            let port = gw.port;
            std::thread::spawn(move || {
                let mut c = Conn::connect(port);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("sess:{}", i % 100);
                    let v = c.cmd(&["GET", &k]);
                    if v != Value::bulk(&k) {
                        failed.lock().expect("lock").push(format!("GET {k}: {v:?}"));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            })
        })
        .collect();
    // The writer records when writes stop and start working.
    let write_log = Arc::new(Mutex::new(Vec::<(Instant, bool)>::new()));
    let writer = {
        let (stop, log) = (stop.clone(), write_log.clone());
        let port = gw.port;
        std::thread::spawn(move || {
            let mut c = Conn::connect(port);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = c.cmd(&["SETEX", &format!("new:{i}"), "3600", "v"])
                    == Value::Simple("OK".into());
                log.lock().expect("lock").push((Instant::now(), ok));
                i += 1;
                if !ok {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    poll("load to start", Duration::from_secs(10), || {
        (reads.load(Ordering::Relaxed) > 200).then_some(())
    });

    let killed = Instant::now();
    let killed_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    primary.kill();
    let mut m = gw.connect();
    poll(
        "writes to resume after the failover",
        Duration::from_secs(60),
        || {
            let log = write_log.lock().expect("lock");
            let failed_after = log.iter().position(|(t, ok)| *t > killed && !ok);
            failed_after.and_then(|f| log[f..].iter().find(|(_, ok)| *ok).map(|(t, _)| *t))
        },
    );
    // Keep the load on a little after the switch.
    let reads_then = reads.load(Ordering::Relaxed);
    poll("reads after the switch", Duration::from_secs(10), || {
        (reads.load(Ordering::Relaxed) > reads_then + 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    writer.join().expect("writer");

    let log = write_log.lock().expect("lock");
    let first_fail = log
        .iter()
        .find(|(t, ok)| *t > killed && !ok)
        .map(|(t, _)| *t);
    let back = first_fail.and_then(|f| log.iter().find(|(t, ok)| *t > f && *ok).map(|(t, _)| *t));
    let switch = field(&mut m, "upstream", "upstream_last_switch");
    // "old -> new at unix ms N": when sessiond heard of the promotion, as an offset from
    // the kill (wall clock at the kill + the Instant offsets).
    let switch_ms: Option<i64> = switch.rsplit(' ').next().and_then(|n| n.parse().ok());
    let switch_after_kill = switch_ms.map(|s| s - killed_unix_ms);
    eprintln!(
        "failover timeline: primary SIGKILLed at 0 ms; first failed write at {:?} ms; \
         sessiond saw the promotion at {:?} ms; writes back at {:?} ms; {} reads, none failed",
        first_fail.map(|t| (t - killed).as_millis()),
        switch_after_kill,
        back.map(|t| (t - killed).as_millis()),
        reads.load(Ordering::Relaxed)
    );
    let failed = failed_reads.lock().expect("lock");
    assert!(
        failed.is_empty(),
        "{} reads failed: {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(3)],
        m.cmd(&["INFO", "upstream"]).as_str()
    );
    assert!(back.is_some(), "writes did not resume");
    assert_eq!(field(&mut m, "upstream", "upstream_primary_switches"), "1");
    // Everything acknowledged before the kill is still there, on the new primary.
    for i in (0..100).step_by(10) {
        let k = format!("sess:{i}");
        assert_eq!(c.cmd(&["GET", &k]), Value::bulk(&k));
    }
}

/// A subscriber through the gateway gets keyspace `expired` events from the primary, and
/// keeps getting them after a Sentinel failover: the gateway subscribes again on the new
/// primary, and gives it the `notify-keyspace-events` the application set through the
/// gateway (as Spring Session does once, at start), which the replica never had.
#[test]
fn a_subscriber_keeps_its_keyspace_events_across_a_failover() {
    let mut primary = redis_server(&[]);
    let pp = primary.port.to_string();
    let replica = redis_server(&["--replicaof", "127.0.0.1", &pp]);
    let (_sentinels, url) = sentinel_set(&primary, std::slice::from_ref(&replica));
    let gw = sessiond(&["--upstream", &url, "--upstream-health-interval-ms", "200"]);
    let mut app = gw.connect();
    assert_eq!(
        app.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Ex"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        replica
            .connect()
            .cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        Value::Array(vec![Value::bulk("notify-keyspace-events"), Value::bulk("")]),
        "the replica does not have it yet"
    );
    let gw_port = gw.port;
    let mut sub = gw.connect();
    sub.send_raw(&support::encode(&[
        b"PSUBSCRIBE",
        b"__keyevent@0__:expired",
    ]));
    assert!(matches!(sub.read(), Some(Value::Array(_))));
    sub.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut c = gw.connect();
    // Sets short-lived keys until the subscriber hears one of them expire.
    let replica_port = replica.port;
    let mut heard = |c: &mut Conn, tag: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        for i in 0.. {
            if Instant::now() >= deadline {
                let mut a = Conn::connect(gw_port);
                let mut r = Conn::connect(replica_port);
                panic!(
                    "no expired event for {tag}:*; replica: notify-keyspace-events {:?}, numpat {:?}, role {:?}; gateway: {}",
                    r.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
                    r.cmd(&["PUBSUB", "NUMPAT"]),
                    r.cmd(&["ROLE"]),
                    a.cmd(&["INFO", "upstream"]).as_str()
                );
            }
            let key = format!("{tag}:{i}");
            if c.try_cmd(&["SET", &key, "v", "PX", "20"]) != Some(Value::Simple("OK".into())) {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            while let Some(v) = sub.read() {
                if let Value::Array(v) = v {
                    if v[3].as_str().starts_with(tag) {
                        return;
                    }
                }
            }
        }
    };
    heard(&mut c, "before");
    let killed = Instant::now();
    primary.kill();
    heard(&mut c, "after");
    match replica
        .connect()
        .cmd(&["CONFIG", "GET", "notify-keyspace-events"])
    {
        Value::Array(v) => {
            let flags = v[1].as_str();
            assert!(flags.contains('E') && flags.contains('x'), "{flags}");
        }
        v => panic!("{v:?}"),
    }
    eprintln!(
        "expired events heard again {:?} after the primary was killed",
        killed.elapsed()
    );
    let mut admin = gw.connect();
    assert_ne!(
        field(&mut admin, "upstream", "upstream_primary_switches"),
        "0"
    );
}
