//! The guarded ramp (`--migrate-guard`): in `live`, the new store dies (killed, or stopped
//! with SIGSTOP) under write load; the guard steps the stage back to `shadow`, where the old
//! store answers and is written first, and no write fails after that.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{redis_server, sessiond, Conn, Value};

fn config_get(c: &mut Conn, name: &str) -> String {
    match c.cmd(&["CONFIG", "GET", name]) {
        Value::Array(v) if v.len() == 2 => v[1].as_str(),
        other => panic!("CONFIG GET {name}: {other:?}"),
    }
}

fn guard_steps_back_when_the_new_store_fails(how: &str) {
    let old = redis_server(&[]);
    let mut new = redis_server(&[]);
    let s = sessiond(&[
        "--migrate-from",
        &format!("redis://127.0.0.1:{}", old.port),
        "--migrate-to",
        &format!("redis://127.0.0.1:{}", new.port),
        "--migrate-stage",
        "live",
        "--migrate-guard",
        "errors=1%,window=3s",
        "--upstream-timeout-ms",
        "300",
        "--upstream-connect-timeout-ms",
        "300",
    ]);
    // (when a write was sent, whether it succeeded), from 8 writers.
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (log, stop) = (log.clone(), stop.clone());
            let mut c = s.connect();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("PHPREDIS_SESSION:w{w}-{i}");
                    let sent = Instant::now();
                    let ok = c.cmd(&["SETEX", &key, "600", "data"]) == Value::Simple("OK".into());
                    log.lock().unwrap().push((sent, ok));
                    i += 1;
                }
            })
        })
        .collect();
    let successes = |log: &Mutex<Vec<(Instant, bool)>>, after: Instant| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(t, ok)| *ok && *t >= after)
            .count()
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    while successes(&log, start) < 100 {
        assert!(Instant::now() < deadline, "no writes succeed in live");
        std::thread::sleep(Duration::from_millis(10));
    }

    match how {
        "kill" => new.kill(),
        _ => new.signal("STOP"),
    }
    let mut c = s.connect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while config_get(&mut c, "migrate-stage") != "shadow" {
        assert!(
            Instant::now() < deadline,
            "the guard never stepped back ({how})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stepped = Instant::now();
    let deadline = stepped + Duration::from_secs(60);
    while successes(&log, stepped) < 16 {
        assert!(
            Instant::now() < deadline,
            "writes do not succeed in shadow ({how})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let log = log.lock().unwrap();
    let failed_after = log.iter().filter(|(t, ok)| !ok && *t >= stepped).count();
    assert_eq!(failed_after, 0, "writes failed after the step back ({how})");
    assert!(
        log.iter().any(|(_, ok)| !ok),
        "no write failed at all: the new store's failure was not seen ({how})"
    );
    // Never forward by itself; the step is audited with its reason.
    assert_eq!(config_get(&mut c, "migrate-stage"), "shadow");
    let audit = std::fs::read_to_string(s.dir.0.join("audit.log")).expect("audit.log");
    let line = audit
        .lines()
        .find(|l| l.contains("\"who\":\"guard\""))
        .unwrap_or_else(|| panic!("no guard entry in {audit}"));
    assert!(
        line.contains("live 100%") && line.contains("shadow 100%"),
        "{line}"
    );
    assert!(line.contains("new store"), "{line}");
    if how == "stop" {
        new.signal("CONT");
    }
}

#[test]
fn the_guard_steps_back_when_the_new_store_is_killed() {
    guard_steps_back_when_the_new_store_fails("kill");
}

#[test]
fn the_guard_steps_back_when_the_new_store_is_stopped() {
    guard_steps_back_when_the_new_store_fails("stop");
}
