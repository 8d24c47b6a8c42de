//! Pub/sub and keyspace notifications on the embedded engine, compared with a real
//! redis-server: the same subscriber/publisher conversation on both must produce the same
//! frames. Also: sessions expiring produce `expired` events, and a subscriber that does not
//! read is cut off at the pubsub output limit without slowing the publisher.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// One step of a two-connection conversation: which connection sends what, and how many
/// frames it then reads.
struct Step(usize, &'static [&'static str], usize);

fn converse(port: u16, steps: &[Step]) -> Vec<String> {
    let mut conns = [Conn::connect(port), Conn::connect(port)];
    let mut log = Vec::new();
    for Step(c, cmd, replies) in steps {
        let a: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        conns[*c].send_raw(&encode(&a));
        for _ in 0..*replies {
            let Some(v) = conns[*c].read() else {
                log.push(format!("{c} {}: (no frame)", cmd.join(" ")));
                return log;
            };
            // HELLO's map carries a version and client id that legitimately differ.
            let shown = if cmd.first() == Some(&"HELLO") {
                format!("{}", matches!(v, Value::Map(_)))
            } else {
                format!("{v:?}")
            };
            log.push(format!("{c} {}: {shown}", cmd.join(" ")));
        }
    }
    log
}

fn same_as_redis(steps: &[Step]) {
    let r = redis_server(&[]);
    let s = sessiond(&[]);
    let want = converse(r.port, steps);
    let got = converse(s.port, steps);
    if want != got || std::env::var("SHOW").is_ok() {
        eprintln!("redis:\n{}\nsessiond:\n{}", want.join("\n"), got.join("\n"));
    }
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w, "sessiond differs from redis-server");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn subscriber_mode_matches_redis() {
    same_as_redis(&[
        Step(0, &["SUBSCRIBE", "a", "b", "a"], 3),
        Step(0, &["GET", "x"], 1),
        Step(0, &["PING"], 1),
        Step(0, &["PING", "hi"], 1),
        Step(1, &["PUBLISH", "a", "hello"], 1),
        Step(0, &[], 1),
        Step(1, &["PUBLISH", "nobody", "x"], 1),
        Step(0, &["PSUBSCRIBE", "h*", "a"], 2),
        Step(1, &["PUBLISH", "a", "both"], 1),
        Step(0, &[], 2),
        Step(1, &["PUBSUB", "NUMSUB", "a", "b", "zz"], 1),
        Step(1, &["PUBSUB", "NUMPAT"], 1),
        Step(1, &["PUBSUB", "CHANNELS", "b*"], 1),
        Step(0, &["UNSUBSCRIBE", "b", "nope"], 2),
        Step(0, &["PUNSUBSCRIBE"], 2),
        Step(0, &["UNSUBSCRIBE"], 1),
        Step(0, &["UNSUBSCRIBE"], 1),
        Step(0, &["GET", "x"], 1),
        Step(0, &["SSUBSCRIBE", "s1"], 1),
        Step(1, &["SPUBLISH", "s1", "m"], 1),
        Step(0, &[], 1),
        Step(1, &["PUBSUB", "SHARDCHANNELS"], 1),
        Step(1, &["PUBSUB", "SHARDNUMSUB", "s1"], 1),
        Step(0, &["SUNSUBSCRIBE"], 1),
        Step(1, &["PUBSUB", "NOPE"], 1),
        Step(0, &["HELLO", "3"], 1),
        Step(0, &["SUBSCRIBE", "r3"], 1),
        Step(0, &["GET", "x"], 1),
        Step(1, &["PUBLISH", "r3", "push"], 1),
        Step(0, &[], 1),
        Step(0, &["PING"], 1),
        Step(0, &["RESET"], 1),
        Step(1, &["PUBSUB", "NUMSUB", "r3"], 1),
    ]);
}

#[test]
fn keyspace_notifications_match_redis() {
    same_as_redis(&[
        Step(1, &["CONFIG", "SET", "notify-keyspace-events", "KEA"], 1),
        Step(1, &["CONFIG", "GET", "notify-keyspace-events"], 1),
        Step(0, &["PSUBSCRIBE", "__key*__:*"], 1),
        Step(1, &["SET", "k", "v"], 1),
        Step(0, &[], 2),
        Step(1, &["SET", "k", "v2", "EX", "100"], 1),
        Step(0, &[], 4),
        Step(1, &["PERSIST", "k"], 1),
        Step(0, &[], 2),
        Step(1, &["APPEND", "k", "x"], 1),
        Step(0, &[], 2),
        Step(1, &["INCRBY", "n", "2"], 1),
        Step(0, &[], 2),
        Step(1, &["RENAME", "n", "m"], 1),
        Step(0, &[], 4),
        Step(1, &["DEL", "k", "m", "zz"], 1),
        Step(0, &[], 4),
        Step(1, &["HSET", "h", "f", "v"], 1),
        Step(0, &[], 2),
        Step(1, &["HDEL", "h", "f"], 1),
        Step(0, &[], 4),
        Step(1, &["SADD", "s", "a", "b"], 1),
        Step(0, &[], 2),
        Step(1, &["SREM", "s", "a", "b"], 1),
        Step(0, &[], 4),
        Step(1, &["SET", "e", "v"], 1),
        Step(0, &[], 2),
        Step(1, &["EXPIRE", "e", "0"], 1),
        Step(0, &[], 2),
        Step(1, &["CONFIG", "SET", "notify-keyspace-events", "KEAn"], 1),
        Step(1, &["CONFIG", "GET", "notify-keyspace-events"], 1),
        Step(1, &["SET", "fresh", "1"], 1),
        Step(0, &[], 4),
        Step(1, &["CONFIG", "SET", "notify-keyspace-events", "Ex"], 1),
        Step(1, &["CONFIG", "SET", "notify-keyspace-events", "Kq"], 1),
        Step(1, &["SET", "quiet", "1"], 1),
        Step(1, &["DEL", "fresh", "quiet"], 1),
        Step(1, &["PUBLISH", "__keyevent@0__:marker", "end"], 1),
        Step(0, &[], 1),
    ]);
}

/// What a subscriber gets next, skipping nothing; None after `wait`.
fn next_message(c: &mut Conn, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(v) = c.read() {
            return Some(v);
        }
    }
    None
}

#[test]
fn expiring_sessions_announce_themselves() {
    let s = sessiond(&["--notify-keyspace-events", "Ex"]);
    let mut sub = s.connect();
    sub.cmd(&["SUBSCRIBE", "__keyevent@0__:expired"]);
    let mut c = s.connect();
    // One found by the sweeper, never read again; one found by a read.
    c.cmd(&["SET", "sess:swept", "v", "PX", "30"]);
    c.cmd(&["HSET", "sess:read", "user", "alice"]);
    c.cmd(&["PEXPIRE", "sess:read", "30"]);
    let read_at = Instant::now() + Duration::from_millis(60);
    while Instant::now() < read_at {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.cmd(&["HGET", "sess:read", "user"]), Value::Null);
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_message(&mut sub, DEADLINE).expect("an expired event");
        let Value::Array(parts) = m else {
            panic!("message {m:?}")
        };
        assert_eq!(parts[0], Value::bulk("message"));
        assert_eq!(parts[1], Value::bulk("__keyevent@0__:expired"));
        got.push(parts[2].as_str());
    }
    got.sort();
    assert_eq!(got, vec!["sess:read".to_string(), "sess:swept".to_string()]);
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_the_publisher_never_waits() {
    let s = sessiond(&["--client-output-buffer-limit", "pubsub 1mb 0 0"]);
    let mut slow = s.connect();
    slow.cmd(&["SUBSCRIBE", "news"]);
    let mut fast = s.connect();
    fast.cmd(&["SUBSCRIBE", "news"]);
    let mut p = s.connect();
    let payload = "x".repeat(4096);
    // 8 MB to a subscriber that reads nothing: far past its 1 MB limit. The other
    // subscriber reads as it goes.
    let mut receivers = Vec::new();
    for _ in 0..2000 {
        let Value::Int(n) = p.cmd(&["PUBLISH", "news", &payload]) else {
            panic!("PUBLISH")
        };
        receivers.push(n);
        let m = fast
            .read()
            .expect("the reading subscriber gets every message");
        assert!(matches!(m, Value::Array(_)));
    }
    assert_eq!(receivers[0], 2);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let Value::Array(r) = p.cmd(&["PUBSUB", "NUMSUB", "news"]) else {
            panic!("NUMSUB")
        };
        let Value::Int(n) = r[1] else {
            panic!("NUMSUB count")
        };
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "slow subscriber never cut off");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The slow one's connection is closed (whatever it had been sent before the limit).
    let mut closed = false;
    for _ in 0..4000 {
        if slow.read().is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow subscriber's connection was closed");
}

/// Publishers write to an idle subscriber's socket themselves; when the socket takes only
/// part of a message, the subscriber's connection writes the rest, and its own replies
/// never land inside a message. Large messages (past the socket buffer) read slowly, with
/// PINGs in between, on RESP2 and RESP3: every message arrives whole, in order.
#[test]
fn messages_stay_whole_and_ordered_when_the_socket_fills() {
    let s = sessiond(&[]);
    for resp3 in [false, true] {
        let mut sub = s.connect();
        if resp3 {
            assert!(matches!(sub.cmd(&["HELLO", "3"]), Value::Map(_)));
        }
        sub.send_raw(&encode(&[b"SUBSCRIBE", b"big"]));
        sub.read().expect("subscribe confirmation");
        let mut publisher = s.connect();
        let sizes: Vec<usize> = (0..40).map(|i| 1 + (i * 37_003) % 400_000).collect();
        let sent = std::thread::spawn({
            let sizes = sizes.clone();
            move || {
                for (i, n) in sizes.iter().enumerate() {
                    let body = vec![b'a' + (i % 26) as u8; *n];
                    assert_eq!(
                        publisher.cmd_bytes(&[b"PUBLISH", b"big", &body]),
                        Value::Int(1)
                    );
                }
            }
        });
        let mut pongs = 0;
        for (i, n) in sizes.iter().enumerate() {
            if i % 5 == 0 {
                // A command between messages: its reply comes after whole frames only.
                sub.send_raw(&encode(&[b"PING", b"between"]));
            }
            std::thread::sleep(Duration::from_millis(2));
            loop {
                let v = sub.read().expect("frame");
                let parts = match v {
                    Value::Array(p) | Value::Set(p) => p,
                    Value::Bulk(b) if b == b"between" => {
                        pongs += 1;
                        continue;
                    }
                    other => panic!("unexpected frame {other:?}"),
                };
                if parts.len() == 2 && parts[0].as_str() == "pong" {
                    pongs += 1;
                    continue;
                }
                assert_eq!(parts[0].as_str(), "message");
                let body = parts[2].as_bytes().expect("message body");
                assert_eq!(body.len(), *n, "message {i} has the wrong length");
                assert!(
                    body.iter().all(|&b| b == b'a' + (i % 26) as u8),
                    "message {i}"
                );
                break;
            }
        }
        sent.join().expect("publisher");
        // Bytes publishers wrote themselves count as output, as in Redis.
        let mut info = s.connect();
        let out: u64 = info_field(&mut info, "stats", "total_net_output_bytes")
            .parse()
            .expect("total_net_output_bytes");
        assert!(out >= sizes.iter().sum::<usize>() as u64, "{out}");
        while pongs < 8 {
            let v = sub.read().expect("pong");
            assert!(
                matches!(&v, Value::Array(p) | Value::Set(p) if p[0].as_str() == "pong")
                    || v == Value::bulk("between"),
                "{v:?}"
            );
            pongs += 1;
        }
        assert_eq!(
            sub.cmd(&["PING"]),
            if resp3 {
                Value::Simple("PONG".into())
            } else {
                Value::Array(vec![Value::bulk("pong"), Value::bulk("")])
            }
        );
    }
}
