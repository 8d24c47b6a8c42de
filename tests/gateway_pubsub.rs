//! Pub/sub through the gateway, against real redis-server processes: a subscriber sees
//! exactly what it would see connected to Redis (the same frames, RESP2 and RESP3, commands
//! in subscriber mode included); leaving subscriber mode gives the connection back; keyspace
//! notifications configured through the gateway arrive.

mod support;

use std::time::{Duration, Instant};

use support::{encode, info_field, redis_server, sessiond, Conn, Proc, Value};

fn gateway(upstream: &Proc) -> Proc {
    let url = format!("redis://127.0.0.1:{}", upstream.port);
    sessiond(&["--upstream", &url])
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + support::DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(c: &mut Conn, args: &[&str]) {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    c.send_raw(&encode(&a));
}

/// One step of a subscriber session: a command from the subscriber (and how many frames
/// come back), or a PUBLISH from another client (and the frames the subscriber gets).
enum Step {
    Sub(&'static [&'static str], usize),
    Publish(&'static str, &'static str, usize),
}

/// Runs the steps against a server: every frame the subscriber receives, in order, and the
/// PUBLISH counts.
fn session(server_port: u16, resp3: bool, steps: &[Step]) -> Vec<Value> {
    let mut sub = Conn::connect(server_port);
    let mut publisher = Conn::connect(server_port);
    let mut frames = Vec::new();
    if resp3 {
        let hello = sub.cmd(&["HELLO", "3"]);
        assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    }
    for step in steps {
        match step {
            Step::Sub(args, n) => {
                send(&mut sub, args);
                for _ in 0..*n {
                    frames.push(sub.read().expect("frame"));
                }
            }
            Step::Publish(ch, msg, n) => {
                frames.push(publisher.cmd(&["PUBLISH", ch, msg]));
                for _ in 0..*n {
                    frames.push(sub.read().expect("message"));
                }
            }
        }
    }
    frames
}

const STEPS: &[Step] = &[
    Step::Sub(&["SUBSCRIBE", "news", "alerts"], 2),
    Step::Sub(&["PSUBSCRIBE", "session:*"], 1),
    Step::Publish("news", "hello", 1),
    Step::Publish("session:42", "expired", 1),
    Step::Publish("nobody", "x", 0),
    Step::Sub(&["PING"], 1),
    Step::Sub(&["PING", "marker"], 1),
    Step::Sub(&["SUBSCRIBE", "news"], 1),
    Step::Sub(&["UNSUBSCRIBE", "alerts"], 1),
    Step::Publish("alerts", "gone", 0),
    Step::Sub(&["UNSUBSCRIBE"], 1),
    Step::Sub(&["PUNSUBSCRIBE"], 1),
    // Subscriber mode is over.
    Step::Sub(&["SET", "k", "v"], 1),
    Step::Sub(&["GET", "k"], 1),
    Step::Publish("news", "late", 0),
];

#[test]
fn a_subscriber_sees_the_same_frames_as_on_redis_resp2() {
    let direct = redis_server(&[]);
    let behind = redis_server(&[]);
    let gw = gateway(&behind);
    let expected = session(direct.port, false, STEPS);
    let got = session(gw.port, false, STEPS);
    assert_eq!(got, expected);
    let mut c = gw.connect();
    poll("the subscriber's connection back in the pool", || {
        info_field(&mut c, "upstream", "upstream_pinned_in_use") == "0"
    });
}

#[test]
fn a_subscriber_sees_the_same_frames_as_on_redis_resp3() {
    let direct = redis_server(&[]);
    let behind = redis_server(&[]);
    let gw = gateway(&behind);
    let expected = session(direct.port, true, STEPS);
    let got = session(gw.port, true, STEPS);
    assert_eq!(got, expected);
}

/// Commands sessiond answers itself keep their place among the upstream's frames: in RESP2
/// they get Redis's subscriber-mode error, in RESP3 their answer.
#[test]
fn commands_answered_by_sessiond_keep_their_order_in_subscriber_mode() {
    let direct = redis_server(&[]);
    let behind = redis_server(&[]);
    let gw = gateway(&behind);
    let steps: &[Step] = &[
        Step::Sub(&["SUBSCRIBE", "c"], 1),
        Step::Sub(&["CLIENT", "GETNAME"], 1),
        Step::Sub(&["PING", "between"], 1),
        Step::Sub(&["SELECT", "0"], 1),
        Step::Sub(&["GET", "k"], 1),
        Step::Publish("c", "m", 1),
        Step::Sub(&["ECHO", "e"], 1),
    ];
    for resp3 in [false, true] {
        assert_eq!(
            session(gw.port, resp3, steps),
            session(direct.port, resp3, steps),
            "resp3: {resp3}"
        );
    }
}

/// `CONFIG SET notify-keyspace-events` through the gateway configures the upstream, and a
/// subscriber gets its keyspace events (what Spring Session listens for).
#[test]
fn keyspace_notifications_reach_a_subscriber() {
    let r = redis_server(&[]);
    let gw = gateway(&r);
    let mut c = gw.connect();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Egx"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        r.connect()
            .cmd(&["CONFIG", "GET", "notify-keyspace-events"])
    );
    let mut sub = gw.connect();
    send(&mut sub, &["PSUBSCRIBE", "__keyevent@0__:*"]);
    assert!(matches!(sub.read(), Some(Value::Array(_))));
    assert_eq!(
        c.cmd(&["SET", "session:1", "data", "PX", "30"]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["DEL", "nothing"]), Value::Int(0));
    assert_eq!(
        c.cmd(&["SET", "session:2", "x"]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["DEL", "session:2"]), Value::Int(1));
    let next = |sub: &mut Conn| match sub.read() {
        Some(Value::Array(v)) => (v[2].as_str(), v[3].as_str()),
        v => panic!("{v:?}"),
    };
    // Events arrive in the order they happen: the TTL set, the DEL, the expiry when it
    // comes.
    assert_eq!(
        next(&mut sub),
        ("__keyevent@0__:expire".into(), "session:1".into())
    );
    assert_eq!(
        next(&mut sub),
        ("__keyevent@0__:del".into(), "session:2".into())
    );
    assert_eq!(
        next(&mut sub),
        ("__keyevent@0__:expired".into(), "session:1".into())
    );
}
