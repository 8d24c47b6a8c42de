//! Gateway: transactions and blocking commands on pinned upstream connections, against a
//! real redis-server. A WATCH race through one shared upstream connection has exactly one
//! winner; 200 clients blocked in BLPOP delay none of the others; a client that disconnects
//! while blocked releases its upstream connection; the pinned-connection limit answers
//! with a clear error.

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{encode, info_field, redis_server, sessiond, Conn, Proc, Value};

fn gateway(upstream: &Proc, extra: &[&str]) -> Proc {
    let url = format!("redis://127.0.0.1:{}", upstream.port);
    let mut args = vec!["--upstream", url.as_str()];
    args.extend_from_slice(extra);
    sessiond(&args)
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + support::DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn blocked_clients(redis: &mut Conn) -> u64 {
    info_field(redis, "clients", "blocked_clients")
        .parse()
        .unwrap()
}

fn pinned_in_use(gw: &mut Conn) -> u64 {
    info_field(gw, "upstream", "upstream_pinned_in_use")
        .parse()
        .unwrap()
}

/// Two clients WATCH the same key through a gateway with a single multiplexed upstream
/// connection and race to change it: in every round exactly one EXEC wins, the other gets
/// a nil reply, and the counter counts only the winners.
#[test]
fn watch_race_through_one_shared_connection_has_exactly_one_winner() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &["--upstream-connections", "1"]);
    let rounds = 30;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            let mut c = gw.connect();
            std::thread::spawn(move || {
                let mut wins = Vec::new();
                for round in 0..rounds {
                    let key = format!("race:{round}");
                    barrier.wait();
                    assert_eq!(c.cmd(&["WATCH", &key]), Value::Simple("OK".into()));
                    let seen = match c.cmd(&["GET", &key]) {
                        Value::Bulk(b) => String::from_utf8(b).unwrap().parse::<u64>().unwrap(),
                        Value::Null => 0,
                        v => panic!("{v:?}"),
                    };
                    // Both have read before either writes.
                    barrier.wait();
                    assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
                    let next = (seen + 1).to_string();
                    assert_eq!(c.cmd(&["SET", &key, &next]), Value::Simple("QUEUED".into()));
                    assert_eq!(
                        c.cmd(&["INCR", "race:wins"]),
                        Value::Simple("QUEUED".into())
                    );
                    match c.cmd(&["EXEC"]) {
                        Value::Array(v) => {
                            assert_eq!(v[0], Value::Simple("OK".into()));
                            wins.push(round);
                        }
                        Value::NullArray => {}
                        v => panic!("EXEC: {v:?}"),
                    }
                }
                wins
            })
        })
        .collect();
    let wins: Vec<Vec<usize>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut all: Vec<usize> = wins.concat();
    all.sort();
    assert_eq!(all, (0..rounds).collect::<Vec<_>>(), "one winner per round");
    let mut c = r.connect();
    assert_eq!(
        c.cmd(&["GET", "race:wins"]),
        Value::bulk(&rounds.to_string())
    );
    for round in 0..rounds {
        assert_eq!(c.cmd(&["GET", &format!("race:{round}")]), Value::bulk("1"));
    }
}

/// 200 clients blocked in BLPOP (no timeout) while 50 others run GET/SET: every GET/SET
/// is answered, and every blocked client gets its element once one is pushed.
#[test]
fn blocked_clients_do_not_delay_other_clients() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &[]);
    let mut admin = r.connect();
    let mut blocked: Vec<Conn> = (0..200)
        .map(|i| {
            let mut c = gw.connect();
            let key = format!("queue:{i}");
            c.send_raw(&encode(&[b"BLPOP", key.as_bytes(), b"0"]));
            c
        })
        .collect();
    poll("200 blocked clients", || blocked_clients(&mut admin) == 200);
    let workers: Vec<_> = (0..50)
        .map(|w| {
            let mut c = gw.connect();
            std::thread::spawn(move || {
                let mut answered = 0;
                for i in 0..20 {
                    let key = format!("k:{w}:{i}");
                    assert_eq!(c.cmd(&["SET", &key, "v"]), Value::Simple("OK".into()));
                    assert_eq!(c.cmd(&["GET", &key]), Value::bulk("v"));
                    answered += 2;
                }
                answered
            })
        })
        .collect();
    let answered: usize = workers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 50 * 20 * 2);
    assert_eq!(blocked_clients(&mut admin), 200, "still blocked meanwhile");
    for i in 0..200 {
        admin.cmd(&["RPUSH", &format!("queue:{i}"), "job"]);
    }
    for (i, c) in blocked.iter_mut().enumerate() {
        assert_eq!(
            c.read().unwrap(),
            Value::Array(vec![Value::bulk(&format!("queue:{i}")), Value::bulk("job")])
        );
    }
    let mut g = gw.connect();
    poll("pinned connections released", || pinned_in_use(&mut g) == 0);
    // Released clean, so the next blocking command reuses one instead of connecting.
    assert_eq!(g.cmd(&["BLPOP", "empty", "0.05"]), Value::NullArray);
    assert!(
        info_field(&mut g, "upstream", "upstream_pinned_reused")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

/// A client that disconnects while blocked releases its upstream connection, and Redis
/// forgets the block (the element pushed later is not lost to a dead client).
#[test]
fn disconnecting_while_blocked_releases_the_upstream_connection() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &[]);
    let mut admin = r.connect();
    let mut g = gw.connect();
    {
        let mut c = gw.connect();
        c.send_raw(&encode(&[b"BLPOP", b"jobs", b"0"]));
        poll("blocked", || blocked_clients(&mut admin) == 1);
        assert_eq!(pinned_in_use(&mut g), 1);
    }
    poll("block released", || blocked_clients(&mut admin) == 0);
    poll("pinned released", || pinned_in_use(&mut g) == 0);
    admin.cmd(&["RPUSH", "jobs", "j1"]);
    assert_eq!(
        admin.cmd(&["LLEN", "jobs"]),
        Value::Int(1),
        "nobody took it"
    );
    // Timeouts are Redis's own.
    let t = Instant::now();
    assert_eq!(g.cmd(&["BLPOP", "nothing", "0.2"]), Value::NullArray);
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        g.cmd(&["BLPOP", "jobs", "0"]),
        Value::Array(vec![Value::bulk("jobs"), Value::bulk("j1")])
    );
}

/// Past `upstream-pinned-max`, a transaction or blocking command gets a clear error at once
/// and nothing runs; when a connection is free again it works.
#[test]
fn the_pinned_connection_limit_answers_with_a_clear_error() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &["--upstream-pinned-max", "1"]);
    let mut admin = r.connect();
    let mut a = gw.connect();
    a.send_raw(&encode(&[b"BLPOP", b"q", b"0"]));
    poll("blocked", || blocked_clients(&mut admin) == 1);
    let mut b = gw.connect();
    let refused = |v: Value| match v {
        Value::Error(e) => assert!(e.contains("upstream-pinned-max"), "{e}"),
        v => panic!("{v:?}"),
    };
    refused(b.cmd(&["BLPOP", "q", "0"]));
    refused(b.cmd(&["MULTI"]));
    // Not in a transaction: SET runs at once, EXEC has nothing to execute.
    assert_eq!(b.cmd(&["SET", "x", "1"]), Value::Simple("OK".into()));
    assert_eq!(
        b.cmd(&["EXEC"]),
        Value::Error("ERR EXEC without MULTI".into())
    );
    admin.cmd(&["RPUSH", "q", "v"]);
    assert_eq!(
        a.read().unwrap(),
        Value::Array(vec![Value::bulk("q"), Value::bulk("v")])
    );
    poll("released", || pinned_in_use(&mut b) == 0);
    assert_eq!(b.cmd(&["MULTI"]), Value::Simple("OK".into()));
    assert_eq!(b.cmd(&["INCR", "x"]), Value::Simple("QUEUED".into()));
    assert_eq!(b.cmd(&["EXEC"]), Value::Array(vec![Value::Int(2)]));
    assert!(
        info_field(&mut b, "upstream", "upstream_pinned_refused")
            .parse::<u64>()
            .unwrap()
            >= 2
    );
}

/// A client that disconnects in the middle of a transaction leaves nothing applied, and a
/// pipelined MULTI…EXEC (as redis-py's pipeline sends it) is answered in order.
#[test]
fn transactions_are_isolated_and_pipelined() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &["--upstream-connections", "1"]);
    let mut admin = r.connect();
    {
        let mut c = gw.connect();
        assert_eq!(c.cmd(&["MULTI"]), Value::Simple("OK".into()));
        assert_eq!(c.cmd(&["SET", "half", "1"]), Value::Simple("QUEUED".into()));
        // Meanwhile another client's commands on the same shared upstream connection are
        // not queued into this transaction.
        let mut other = gw.connect();
        assert_eq!(
            other.cmd(&["SET", "other", "1"]),
            Value::Simple("OK".into())
        );
        assert_eq!(admin.cmd(&["GET", "other"]), Value::bulk("1"));
    }
    let mut g = gw.connect();
    poll("pinned released", || pinned_in_use(&mut g) == 0);
    assert_eq!(admin.cmd(&["EXISTS", "half"]), Value::Int(0));
    let mut pipeline = Vec::new();
    for cmd in [
        &["MULTI"][..],
        &["SET", "p", "1"],
        &["INCR", "p"],
        &["GET", "p"],
        &["EXEC"],
        &["GET", "p"],
    ] {
        let a: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        pipeline.extend_from_slice(&encode(&a));
    }
    let opened = info_field(&mut g, "upstream", "upstream_pinned_opened");
    g.send_raw(&pipeline);
    let replies: Vec<Value> = (0..6).map(|_| g.read().unwrap()).collect();
    assert_eq!(
        replies,
        vec![
            Value::Simple("OK".into()),
            Value::Simple("QUEUED".into()),
            Value::Simple("QUEUED".into()),
            Value::Simple("QUEUED".into()),
            Value::Array(vec![
                Value::Simple("OK".into()),
                Value::Int(2),
                Value::bulk("2")
            ]),
            Value::bulk("2"),
        ]
    );
    // Pipelined whole, it went out on the shared connection: no pinned connection taken.
    assert_eq!(
        info_field(&mut g, "upstream", "upstream_pinned_opened"),
        opened
    );

    // A pipelined transaction with a command rejected while queueing is discarded whole,
    // with the replies Redis gives.
    let mut pipeline = Vec::new();
    for cmd in [
        &["MULTI"][..],
        &["SET", "q", "1"],
        &["GET"],
        &["EXEC"],
        &["EXISTS", "q"],
    ] {
        let a: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        pipeline.extend_from_slice(&encode(&a));
    }
    g.send_raw(&pipeline);
    let replies: Vec<Value> = (0..5).map(|_| g.read().unwrap()).collect();
    assert_eq!(
        replies,
        vec![
            Value::Simple("OK".into()),
            Value::Simple("QUEUED".into()),
            Value::Error("ERR wrong number of arguments for 'get' command".into()),
            Value::Error("EXECABORT Transaction discarded because of previous errors.".into()),
            Value::Int(0),
        ]
    );
}

/// A pipelined transaction larger than what the gateway collects (1 MiB) moves to a pinned
/// connection part way and still runs whole, with every reply in order.
#[test]
fn a_transaction_larger_than_the_collection_bound_still_runs_whole() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &[]);
    let mut g = gw.connect();
    let value = "v".repeat(100_000);
    let mut pipeline = encode(&[b"MULTI"]);
    for i in 0..20 {
        let k = format!("big:{i}");
        pipeline.extend_from_slice(&encode(&[b"SET", k.as_bytes(), value.as_bytes()]));
    }
    pipeline.extend_from_slice(&encode(&[b"EXEC"]));
    pipeline.extend_from_slice(&encode(&[b"DBSIZE"]));
    g.send_raw(&pipeline);
    assert_eq!(g.read().unwrap(), Value::Simple("OK".into()));
    for _ in 0..20 {
        assert_eq!(g.read().unwrap(), Value::Simple("QUEUED".into()));
    }
    assert_eq!(
        g.read().unwrap(),
        Value::Array(vec![Value::Simple("OK".into()); 20])
    );
    assert_eq!(g.read().unwrap(), Value::Int(20));
    assert_eq!(
        info_field(&mut g, "upstream", "upstream_pinned_opened"),
        "1"
    );
}
