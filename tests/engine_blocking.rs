//! Blocking commands on the embedded engine: the client blocked first is served first, a
//! timeout answers nil, a disconnect cancels the block (the element stays in the list),
//! BLMOVE moves, and a blocked client's pipelined commands wait for it.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Waits (polling INFO) until `n` clients are blocked.
fn await_blocked(c: &mut Conn, n: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v: u64 = info_field(c, "clients", "blocked_clients")
            .parse()
            .unwrap_or(0);
        if v == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{v} clients blocked, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_client_blocked_first_is_served_first() {
    let s = sessiond(&["--threads", "2"]);
    let mut ctl = s.connect();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut c = s.connect();
        c.send_raw(&encode(&[b"BLPOP", b"q", b"0"]));
        await_blocked(&mut ctl, i + 1);
        waiters.push(c);
    }
    assert_eq!(
        ctl.cmd(&["RPUSH", "q", "first", "second", "third"]),
        Value::Int(3)
    );
    for (c, want) in waiters.iter_mut().zip(["first", "second", "third"]) {
        assert_eq!(
            c.read().expect("served"),
            Value::Array(vec![Value::bulk("q"), Value::bulk(want)])
        );
    }
    assert_eq!(ctl.cmd(&["EXISTS", "q"]), Value::Int(0));
    await_blocked(&mut ctl, 0);
}

#[test]
fn timeouts_answer_nil_and_disconnects_cancel_the_block() {
    let s = sessiond(&[]);
    let mut ctl = s.connect();
    let mut c = s.connect();
    assert_eq!(c.cmd(&["BLPOP", "q", "0.05"]), Value::NullArray);
    assert_eq!(c.cmd(&["BZPOPMIN", "z", "0.05"]), Value::NullArray);
    assert_eq!(
        c.cmd(&["BLMOVE", "q", "d", "LEFT", "RIGHT", "0.05"]),
        Value::NullArray
    );
    // A client that goes away while blocked does not take an element later pushed.
    let mut gone = s.connect();
    gone.send_raw(&encode(&[b"BLPOP", b"q", b"0"]));
    await_blocked(&mut ctl, 1);
    drop(gone);
    await_blocked(&mut ctl, 0);
    assert_eq!(ctl.cmd(&["RPUSH", "q", "kept"]), Value::Int(1));
    assert_eq!(
        ctl.cmd(&["LRANGE", "q", "0", "-1"]),
        Value::Array(vec![Value::bulk("kept")])
    );
}

#[test]
fn blmove_moves_and_pipelined_commands_wait_for_the_block() {
    let s = sessiond(&[]);
    let mut ctl = s.connect();
    let mut c = s.connect();
    let mut pipeline = encode(&[b"BLMOVE", b"jobs", b"work", b"LEFT", b"RIGHT", b"0"]);
    pipeline.extend(encode(&[b"LLEN", b"work"]));
    c.send_raw(&pipeline);
    await_blocked(&mut ctl, 1);
    assert_eq!(ctl.cmd(&["LPUSH", "jobs", "job-1"]), Value::Int(1));
    assert_eq!(c.read().expect("served"), Value::bulk("job-1"));
    assert_eq!(c.read().expect("then LLEN"), Value::Int(1));
    assert_eq!(
        ctl.cmd(&["LRANGE", "work", "0", "-1"]),
        Value::Array(vec![Value::bulk("job-1")])
    );
    // A blocked BZPOPMAX served by ZADD, in RESP3 with a double score.
    let mut z = s.connect();
    z.cmd(&["HELLO", "3"]);
    z.send_raw(&encode(&[b"BZPOPMAX", b"prio", b"0"]));
    await_blocked(&mut ctl, 1);
    ctl.cmd(&["ZADD", "prio", "1.5", "low", "9", "high"]);
    assert_eq!(
        z.read().expect("served"),
        Value::Array(vec![
            Value::bulk("prio"),
            Value::bulk("high"),
            Value::Double("9".into())
        ])
    );
}

#[test]
fn inside_a_transaction_a_blocking_command_does_not_block() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    c.cmd(&["MULTI"]);
    c.cmd(&["BLPOP", "empty", "0"]);
    c.cmd(&["RPUSH", "full", "x"]);
    c.cmd(&["BLPOP", "full", "0"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![
            Value::NullArray,
            Value::Int(1),
            Value::Array(vec![Value::bulk("full"), Value::bulk("x")])
        ])
    );
}

/// The server's clock, in milliseconds (`TIME`).
fn server_ms(c: &mut Conn) -> i64 {
    match c.cmd(&["TIME"]) {
        Value::Array(v) if v.len() == 2 => {
            let secs: i64 = v[0].as_str().parse().expect("seconds");
            let micros: i64 = v[1].as_str().parse().expect("microseconds");
            secs * 1000 + micros / 1000
        }
        other => panic!("TIME answered {other:?}"),
    }
}

/// A connection reads the clock once per command of a pipeline, each command starting where
/// the one before ended (`clock::Chain`). A wait inside the pipeline must start the chain
/// again: the commands after a block run at their own time (a TTL counts from then, as in
/// Redis) and the wait is not in their slow-log durations.
#[test]
fn commands_after_a_block_run_at_their_own_time() {
    let s = sessiond(&[]);
    let mut ctl = s.connect();
    ctl.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    let mut c = s.connect();
    let mut pipeline = encode(&[b"BLPOP", b"q", b"0"]);
    pipeline.extend(encode(&[b"SET", b"k", b"v", b"PX", b"100000"]));
    pipeline.extend(encode(&[b"PEXPIRETIME", b"k"]));
    c.send_raw(&pipeline);
    await_blocked(&mut ctl, 1);
    // Let the server's clock move on by 300 ms while the client is blocked.
    let blocked_at = server_ms(&mut ctl);
    let deadline = Instant::now() + DEADLINE;
    let mut pushed_at = blocked_at;
    while pushed_at < blocked_at + 300 {
        assert!(Instant::now() < deadline, "the server's clock did not move");
        std::thread::sleep(Duration::from_millis(10));
        pushed_at = server_ms(&mut ctl);
    }
    ctl.cmd(&["SLOWLOG", "RESET"]);
    assert_eq!(ctl.cmd(&["RPUSH", "q", "x"]), Value::Int(1));
    assert_eq!(
        c.read().expect("served"),
        Value::Array(vec![Value::bulk("q"), Value::bulk("x")])
    );
    assert_eq!(c.read().expect("SET"), Value::Simple("OK".into()));
    let Some(Value::Int(expires)) = c.read() else {
        panic!("PEXPIRETIME gave no integer")
    };
    assert!(
        expires >= pushed_at + 100_000,
        "the TTL counts from {} ms before the SET ran",
        pushed_at + 100_000 - expires
    );
    let Value::Array(entries) = ctl.cmd(&["SLOWLOG", "GET", "-1"]) else {
        panic!("SLOWLOG GET")
    };
    let mut seen = 0;
    for e in entries {
        let Value::Array(f) = e else { continue };
        let (Value::Int(micros), Value::Array(args)) = (&f[2], &f[3]) else {
            continue;
        };
        let name = args[0].as_str();
        if name == "SET" || name == "PEXPIRETIME" {
            seen += 1;
            assert!(
                *micros < 300_000,
                "{name} took {micros} µs: the block's wait"
            );
        }
    }
    assert_eq!(seen, 2, "SET and PEXPIRETIME in the slow log");
}
