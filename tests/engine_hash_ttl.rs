//! Hash field expiry (Redis 7.4/8.0 commands) where a script of exact replies cannot show it:
//! relative TTLs counting down, lazy and active reclaiming with `hexpired` events, and field
//! expiry times surviving a restart. Exact replies and error texts are compared with Redis 8
//! by `tests/differential.rs` (tests/scripts/hash-ttl-8.txt).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn ints(v: Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|x| match x {
                Value::Int(n) => n,
                other => panic!("not an integer: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn field_expiry_commands_answer_as_redis_documents() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    c.cmd(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
    // -2: no such field; 1: set.
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "h", "100", "FIELDS", "2", "a", "zz"])),
        vec![1, -2]
    );
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "nokey", "100", "FIELDS", "1", "a"])),
        vec![-2]
    );
    // Conditions: NX only without a TTL, XX only with one, GT/LT against it (none = forever).
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "h", "200", "NX", "FIELDS", "2", "a", "b"])),
        vec![0, 1]
    );
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "h", "300", "XX", "FIELDS", "2", "a", "c"])),
        vec![1, 0]
    );
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "h", "50", "GT", "FIELDS", "2", "a", "c"])),
        vec![0, 0]
    );
    assert_eq!(
        ints(c.cmd(&["HEXPIRE", "h", "50", "LT", "FIELDS", "2", "a", "c"])),
        vec![1, 1]
    );
    let ttl = ints(c.cmd(&["HTTL", "h", "FIELDS", "4", "a", "b", "c", "zz"]));
    assert!(
        (49..=50).contains(&ttl[0]) && (199..=200).contains(&ttl[1]),
        "{ttl:?}"
    );
    assert_eq!(ttl[3], -2);
    let pttl = ints(c.cmd(&["HPTTL", "h", "FIELDS", "1", "a"]))[0];
    assert!((49_000..=50_000).contains(&pttl), "{pttl}");
    let at = ints(c.cmd(&["HPEXPIRETIME", "h", "FIELDS", "1", "b"]))[0];
    let secs = ints(c.cmd(&["HEXPIRETIME", "h", "FIELDS", "1", "b"]))[0];
    // Seconds are rounded up for fields (a key's are rounded).
    assert_eq!(secs, (at + 999) / 1000);
    // HPERSIST: 1 removed, -1 had none, -2 no field.
    assert_eq!(
        ints(c.cmd(&["HPERSIST", "h", "FIELDS", "3", "a", "a", "zz"])),
        vec![1, -1, -2]
    );
    assert_eq!(ints(c.cmd(&["HTTL", "h", "FIELDS", "1", "a"])), vec![-1]);
    // HSET clears a field's expiry.
    c.cmd(&["HSET", "h", "b", "new"]);
    assert_eq!(ints(c.cmd(&["HTTL", "h", "FIELDS", "1", "b"])), vec![-1]);
    // A time already passed deletes the field (2); the last field takes the key with it.
    assert_eq!(
        ints(c.cmd(&["HPEXPIREAT", "h", "1", "FIELDS", "1", "a"])),
        vec![2]
    );
    assert_eq!(c.cmd(&["HEXISTS", "h", "a"]), Value::Int(0));
    // Error texts, and which error comes first, are compared with Redis 8 in
    // tests/scripts/hash-ttl-8.txt.
    c.cmd(&["SET", "str", "x"]);
    assert!(
        matches!(c.cmd(&["HTTL", "str", "FIELDS", "1", "a"]), Value::Error(e) if e.starts_with("WRONGTYPE"))
    );
    // HGETEX / HSETEX / HGETDEL (Redis 8.0).
    c.cmd(&["DEL", "g"]);
    assert_eq!(
        c.cmd(&["HSETEX", "g", "FNX", "EX", "100", "FIELDS", "2", "x", "1", "y", "2"]),
        Value::Int(1)
    );
    assert_eq!(
        c.cmd(&["HSETEX", "g", "FNX", "FIELDS", "1", "x", "9"]),
        Value::Int(0)
    );
    assert_eq!(
        c.cmd(&["HSETEX", "g", "FXX", "KEEPTTL", "FIELDS", "1", "x", "3"]),
        Value::Int(1)
    );
    let t = ints(c.cmd(&["HTTL", "g", "FIELDS", "2", "x", "y"]));
    assert!(
        t.iter().all(|s| (99..=100).contains(s)),
        "KEEPTTL kept it: {t:?}"
    );
    assert_eq!(
        c.cmd(&["HGETEX", "g", "PERSIST", "FIELDS", "2", "x", "zz"]),
        Value::Array(vec![Value::bulk("3"), Value::Null])
    );
    assert_eq!(ints(c.cmd(&["HTTL", "g", "FIELDS", "1", "x"])), vec![-1]);
    assert_eq!(
        c.cmd(&["HGETDEL", "g", "FIELDS", "2", "y", "zz"]),
        Value::Array(vec![Value::bulk("2"), Value::Null])
    );
    assert_eq!(c.cmd(&["HKEYS", "g"]), Value::Array(vec![Value::bulk("x")]));
}

#[test]
fn expired_fields_go_lazily_and_by_the_sweeper_with_events() {
    let s = sessiond(&["--notify-keyspace-events", "Kh"]);
    let mut sub = s.connect();
    sub.cmd(&["PSUBSCRIBE", "__keyspace@0__:*"]);
    let mut c = s.connect();
    c.cmd(&["HSET", "read", "a", "1", "b", "2"]);
    c.cmd(&["HSET", "swept", "a", "1", "b", "2"]);
    c.cmd(&["HPEXPIRE", "read", "20", "FIELDS", "1", "a"]);
    c.cmd(&["HPEXPIRE", "swept", "20", "FIELDS", "1", "a"]);
    let until = Instant::now() + Duration::from_millis(40);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Read: the expired field is gone before the command sees the hash.
    assert_eq!(
        c.cmd(&["HGETALL", "read"]),
        Value::Array(vec![Value::bulk("b"), Value::bulk("2")])
    );
    let mut events = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while events.len() < 6 {
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        if let Some(Value::Array(m)) = sub.read() {
            events.push(format!("{} {}", m[2].as_str(), m[3].as_str()));
        }
    }
    // hset ×2, hexpire ×2, then hexpired for each (the read one at once, the other when
    // the sweeper gets to it), in that order per key.
    assert!(
        events.contains(&"__keyspace@0__:read hexpired".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"__keyspace@0__:swept hexpired".to_string()),
        "{events:?}"
    );
    assert_eq!(c.cmd(&["HLEN", "swept"]), Value::Int(1));
}

#[test]
fn field_expiry_survives_a_restart_and_a_rewrite() {
    let dir = TempDir::new("hash-ttl");
    {
        let s = sessiond_in(&dir, &["--appendfsync", "always"]);
        let mut c = s.connect();
        c.cmd(&["HSET", "h", "keep", "1", "ttl", "2", "gone", "3"]);
        c.cmd(&["HEXPIRE", "h", "1000", "FIELDS", "1", "ttl"]);
        c.cmd(&["HPEXPIRE", "h", "50", "FIELDS", "1", "gone"]);
        c.cmd(&["HSET", "h2", "x", "1"]);
        c.cmd(&["HEXPIRE", "h2", "1000", "FIELDS", "1", "x"]);
        c.cmd(&["BGREWRITEAOF"]);
        let deadline = Instant::now() + DEADLINE;
        while info_field(&mut c, "persistence", "aof_rewrite_in_progress") != "0"
            || info_field(&mut c, "persistence", "aof_rewrites") == "0"
        {
            assert!(Instant::now() < deadline, "rewrite did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        c.cmd(&["HEXPIRE", "h2", "2000", "FIELDS", "1", "x"]);
        let mut s = s;
        s.kill();
    }
    let until = Instant::now() + Duration::from_millis(60);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["HMGET", "h", "keep", "ttl", "gone"]),
        Value::Array(vec![Value::bulk("1"), Value::bulk("2"), Value::Null])
    );
    let t = ints(c.cmd(&["HTTL", "h", "FIELDS", "2", "keep", "ttl"]));
    assert_eq!(t[0], -1);
    assert!((990..=1000).contains(&t[1]), "{t:?}");
    let t2 = ints(c.cmd(&["HTTL", "h2", "FIELDS", "1", "x"]))[0];
    assert!(
        (1990..=2000).contains(&t2),
        "the change after the rewrite: {t2}"
    );
}
