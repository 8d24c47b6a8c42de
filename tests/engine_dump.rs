//! DUMP and RESTORE between sessiond and a real redis-server, both ways, for every type and
//! the encodings Redis writes (integer and LZF-compressed strings, intsets, listpacks, plain
//! sets/hashes/sorted sets, multi-node quicklists); RESTORE's errors as Redis's.

mod support;

use support::*;

/// Builds the same keys on a server.
fn populate(c: &mut Conn) {
    let long: String = "session-data-".repeat(50); // compressible: LZF in Redis's DUMP
    c.cmd(&["SET", "s:short", "hello"]);
    c.cmd(&["SET", "s:int", "12345"]);
    c.cmd(&["SET", "s:neg", "-7"]);
    c.cmd(&["SET", "s:long", &long]);
    c.cmd(&["HSET", "h:small", "user", "alice", "n", "42"]);
    for i in 0..200 {
        c.cmd(&["HSET", "h:big", &format!("f{i}"), &format!("value-{i}")]);
    }
    c.cmd(&["SADD", "set:ints", "3", "-1", "70000", "5000000000"]);
    c.cmd(&["SADD", "set:strs", "a", "b", "c"]);
    for i in 0..600 {
        c.cmd(&["SADD", "set:big", &format!("m{i}")]);
    }
    c.cmd(&["ZADD", "z:small", "1.5", "a", "-2", "b", "inf", "c"]);
    for i in 0..200 {
        c.cmd(&[
            "ZADD",
            "z:big",
            &format!("{}", i as f64 / 3.0),
            &format!("m{i}"),
        ]);
    }
    c.cmd(&["RPUSH", "l:small", "x", "1", "-300", "70000", "y"]);
    for i in 0..3000 {
        c.cmd(&[
            "RPUSH",
            "l:big",
            &format!("element-{i}-{}", "p".repeat(i % 50)),
        ]);
    }
    c.cmd(&["PEXPIRE", "h:small", "100000"]);
}

const KEYS: [&str; 14] = [
    "s:short", "s:int", "s:neg", "s:long", "h:small", "h:big", "set:ints", "set:strs", "set:big",
    "z:small", "z:big", "l:small", "l:big", "nokey",
];

fn sorted(v: Value) -> Value {
    match v {
        Value::Array(mut items) | Value::Set(mut items) => {
            items.sort_by_key(|x| format!("{x:?}"));
            Value::Array(items)
        }
        other => other,
    }
}

/// What a key holds, in a form both servers give alike.
fn read(c: &mut Conn, key: &str) -> Value {
    let t = c.cmd(&["TYPE", key]).as_str();
    match t.as_str() {
        "string" => c.cmd(&["GET", key]),
        "hash" => {
            // Pairs, sorted by field.
            let Value::Array(flat) = c.cmd(&["HGETALL", key]) else {
                panic!("HGETALL")
            };
            let mut pairs: Vec<(String, String)> = flat
                .chunks(2)
                .map(|p| (p[0].as_str(), p[1].as_str()))
                .collect();
            pairs.sort();
            Value::Array(
                pairs
                    .into_iter()
                    .map(|(f, v)| Value::bulk(&format!("{f}={v}")))
                    .collect(),
            )
        }
        "set" => sorted(c.cmd(&["SMEMBERS", key])),
        "zset" => c.cmd(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
        "list" => c.cmd(&["LRANGE", key, "0", "-1"]),
        _ => Value::Null,
    }
}

fn copy_all(from: &mut Conn, to: &mut Conn) {
    for key in KEYS {
        match from.cmd(&["DUMP", key]) {
            Value::Null => {
                assert_eq!(key, "nokey");
                continue;
            }
            Value::Bulk(payload) => {
                let pttl = match from.cmd(&["PTTL", key]) {
                    Value::Int(n) if n > 0 => n.to_string(),
                    _ => "0".into(),
                };
                let r = to.cmd_bytes(&[b"RESTORE", key.as_bytes(), pttl.as_bytes(), &payload]);
                assert_eq!(r, Value::Simple("OK".into()), "RESTORE {key}");
            }
            other => panic!("DUMP {key}: {other:?}"),
        }
    }
}

fn same_everywhere(a: &mut Conn, b: &mut Conn) {
    for key in KEYS {
        assert_eq!(read(b, key), read(a, key), "{key}");
        assert_eq!(b.cmd(&["TYPE", key]), a.cmd(&["TYPE", key]), "{key}");
    }
    let ttl = match b.cmd(&["PTTL", "h:small"]) {
        Value::Int(n) => n,
        v => panic!("{v:?}"),
    };
    assert!(ttl > 90_000, "the TTL came along: {ttl}");
}

#[test]
fn redis_dumps_restore_into_sessiond() {
    let r = redis_server(&[]);
    let s = sessiond(&[]);
    let (mut rc, mut sc) = (r.connect(), s.connect());
    populate(&mut rc);
    copy_all(&mut rc, &mut sc);
    same_everywhere(&mut rc, &mut sc);
}

#[test]
fn sessiond_dumps_restore_into_redis() {
    let r = redis_server(&[]);
    let s = sessiond(&[]);
    let (mut rc, mut sc) = (r.connect(), s.connect());
    populate(&mut sc);
    copy_all(&mut sc, &mut rc);
    same_everywhere(&mut sc, &mut rc);
}

#[test]
fn restore_errors_match_redis() {
    let r = redis_server(&[]);
    let s = sessiond(&[]);
    for c in [&mut r.connect(), &mut s.connect()] {
        c.cmd(&["SET", "k", "v"]);
    }
    let good = {
        let mut c = r.connect();
        match c.cmd(&["DUMP", "k"]) {
            Value::Bulk(p) => p,
            v => panic!("{v:?}"),
        }
    };
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![b"RESTORE", b"k", b"0", &good],
        vec![b"RESTORE", b"k2", b"-1", &good],
        vec![b"RESTORE", b"k2", b"x", &good],
        vec![b"RESTORE", b"k2", b"0", &bad],
        vec![b"RESTORE", b"k2", b"0", b"garbage"],
        vec![b"RESTORE", b"k2", b"0", &good, b"FOO"],
        vec![b"RESTORE", b"k2", b"0", &good, b"IDLETIME", b"-1"],
        vec![b"RESTORE", b"k2", b"0", &good, b"FREQ", b"300"],
        vec![
            b"RESTORE",
            b"k2",
            b"0",
            &good,
            b"IDLETIME",
            b"5",
            b"FREQ",
            b"5",
        ],
        vec![b"RESTORE", b"k", b"0", &good, b"REPLACE"],
        vec![b"RESTORE", b"k3", b"1", &good, b"ABSTTL"],
        vec![b"EXISTS", b"k3"],
        vec![b"RESTORE", b"k4", b"100000", &good, b"IDLETIME", b"10"],
        vec![b"GET", b"k4"],
        vec![b"DUMP", b"nokey"],
    ];
    let (mut rc, mut sc) = (r.connect(), s.connect());
    for args in cases {
        let want = rc.cmd_bytes(&args);
        let got = sc.cmd_bytes(&args);
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(args[0]));
    }
}

/// A payload that repeats a field (or a sorted-set member) is not something Redis writes,
/// but RESTORE takes bytes from the network: the last occurrence wins and the collection
/// holds each field once, for the few fields of a session hash and for a large hash alike.
#[test]
fn restore_keeps_the_last_of_a_repeated_field() {
    use sessiond::util::rdb::{dump, RdbValue};
    let s = sessiond(&[]);
    let mut c = s.connect();
    let pair = |f: &str, v: &str| (f.as_bytes().to_vec(), v.as_bytes().to_vec());
    let few = dump(&RdbValue::Hash(vec![
        pair("f", "1"),
        pair("g", "2"),
        pair("f", "3"),
    ]));
    assert_eq!(
        c.cmd_bytes(&[b"RESTORE", b"h:few", b"0", &few]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["HLEN", "h:few"]), Value::Int(2));
    assert_eq!(c.cmd(&["HGET", "h:few", "f"]), Value::bulk("3"));
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
        .map(|i| pair(&format!("f{i}"), &format!("v{i}")))
        .collect();
    pairs.push(pair("f7", "last"));
    let many = dump(&RdbValue::Hash(pairs));
    assert_eq!(
        c.cmd_bytes(&[b"RESTORE", b"h:many", b"0", &many]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["HLEN", "h:many"]), Value::Int(40));
    assert_eq!(c.cmd(&["HGET", "h:many", "f7"]), Value::bulk("last"));
    let z = dump(&RdbValue::ZSet(vec![
        (b"m".to_vec(), 1.0),
        (b"n".to_vec(), 2.0),
        (b"m".to_vec(), 5.0),
    ]));
    assert_eq!(
        c.cmd_bytes(&[b"RESTORE", b"z", b"0", &z]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["ZCARD", "z"]), Value::Int(2));
    assert_eq!(c.cmd(&["ZSCORE", "z", "m"]), Value::bulk("5"));
}
