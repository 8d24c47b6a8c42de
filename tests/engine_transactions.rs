//! Transactions on the embedded engine under concurrency and crashes: optimistic locking
//! with WATCH gives exact counts, no reader sees half of a transaction that spans shards,
//! and after SIGKILL a transaction is in the data wholly or not at all.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Keys of one transaction: enough that they land on several of the 64 shards whatever the
/// per-process hash key is (the chance that 12 keys share one shard is 64^-11).
fn keys() -> Vec<String> {
    (0..12).map(|i| format!("tx:key:{i}")).collect()
}

/// One `WATCH/GET/MULTI/SET/EXEC` increment, retried until its EXEC wins; returns retries.
fn increment(c: &mut Conn, key: &str) -> u64 {
    let mut retries = 0;
    loop {
        assert_eq!(c.cmd(&["WATCH", key]), Value::Simple("OK".into()));
        let cur = match c.cmd(&["GET", key]) {
            Value::Null => 0,
            v => v.as_str().parse::<i64>().expect("a number"),
        };
        assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
        let next = (cur + 1).to_string();
        assert_eq!(c.cmd(&["SET", key, &next]), Value::Simple("QUEUED".into()));
        match c.cmd(&["EXEC"]) {
            Value::NullArray => retries += 1,
            Value::Array(r) => {
                assert_eq!(r, vec![Value::Simple("OK".into())]);
                return retries;
            }
            other => panic!("EXEC answered {other:?}"),
        }
    }
}

#[test]
fn watch_increments_from_eight_clients_end_with_the_exact_count() {
    // Several worker threads, so commands of different clients really run at once (the
    // default on a 2-core machine is one).
    let s = sessiond(&["--threads", "4"]);
    let port = s.port;
    const CLIENTS: usize = 8;
    const EACH: usize = 300;
    let retries = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let retries = retries.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port);
                for _ in 0..EACH {
                    retries.fetch_add(increment(&mut c, "tx:hot"), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let total = s.connect().cmd(&["GET", "tx:hot"]);
    assert_eq!(total, Value::bulk(&(CLIENTS * EACH).to_string()));
    eprintln!(
        "{} increments, {} EXECs lost a race and retried",
        CLIENTS * EACH,
        retries.load(Ordering::Relaxed)
    );
}

#[test]
fn no_reader_sees_half_of_a_transaction_across_shards() {
    // Several worker threads, so commands of different clients really run at once (the
    // default on a 2-core machine is one).
    let s = sessiond(&["--threads", "4"]);
    let port = s.port;
    let keys = keys();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (keys, done) = (keys.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = Conn::connect(port);
            for i in 0..1500 {
                let v = i.to_string();
                c.cmd(&["MULTI"]);
                for k in &keys {
                    c.cmd(&["SET", k, &v]);
                }
                c.cmd(&["HSET", "tx:hash", "n", &v]);
                match c.cmd(&["EXEC"]) {
                    Value::Array(r) => assert_eq!(r.len(), keys.len() + 1),
                    other => panic!("EXEC answered {other:?}"),
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut reads = 0u64;
    let mut r = Conn::connect(port);
    let mut args: Vec<&str> = vec!["MGET"];
    args.extend(keys.iter().map(|k| k.as_str()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "writer made no progress");
        // MGET takes all its keys' shards at once; so does EXEC: a reply mixing two
        // transactions would show a transaction half applied.
        let Value::Array(vals) = r.cmd(&args) else {
            panic!("MGET")
        };
        assert!(
            vals.windows(2).all(|w| w[0] == w[1]),
            "a reader saw half of a transaction: {vals:?}"
        );
        reads += 1;
    }
    writer.join().expect("writer");
    assert!(reads > 0);
    eprintln!("{reads} consistent reads during 1500 transactions");
}

#[test]
fn after_sigkill_a_transaction_is_wholly_present_or_absent() {
    let dir = TempDir::new("tx-crash");
    let keys = keys();
    let mut mget: Vec<&str> = vec!["MGET"];
    mget.extend(keys.iter().map(|k| k.as_str()));
    let mut last_acked = 0u64;
    for round in 0..4 {
        let mut s = sessiond_in(&dir, &["--appendfsync", "everysec", "--threads", "4"]);
        let mut c = s.connect();
        // What the previous round left: one transaction's values, all of them.
        let Value::Array(vals) = c.cmd(&mget) else {
            panic!("MGET")
        };
        assert!(
            vals.windows(2).all(|w| w[0] == w[1]),
            "torn transaction: {vals:?}"
        );
        let h = c.cmd(&["HGET", "tx:hash", "n"]);
        assert_eq!(h, vals[0], "the hash field belongs to the same transaction");
        if round > 0 {
            let seen: u64 = vals[0].as_str().parse().expect("a value");
            assert!(
                seen >= last_acked,
                "acknowledged transaction {last_acked} lost (found {seen})"
            );
        }
        // Pipelined transactions from a second connection, killed at a polled moment.
        let port = s.port;
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (keys, acked, stop) = (keys.clone(), acked.clone(), stop.clone());
            let base = last_acked;
            std::thread::spawn(move || {
                let mut w = Conn::connect(port);
                let mut i = base;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let v = i.to_string();
                    let mut batch = encode(&[b"MULTI"]);
                    for k in &keys {
                        batch.extend(encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
                    }
                    batch.extend(encode(&[b"HSET", b"tx:hash", b"n", v.as_bytes()]));
                    batch.extend(encode(&[b"EXEC"]));
                    w.send_raw(&batch);
                    for _ in 0..keys.len() + 2 {
                        if w.read().is_none() {
                            return;
                        }
                    }
                    match w.read() {
                        Some(Value::Array(_)) => acked.store(i, Ordering::Release),
                        _ => return,
                    }
                }
            })
        };
        let target = last_acked + 50 + fastrand::u64(..400);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::Acquire) < target {
            assert!(Instant::now() < deadline, "writer made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        s.kill();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        last_acked = acked.load(Ordering::Acquire);
    }
}
