//! Every data type survives crashes and log rewrites: a client changes hashes, sets, sorted
//! sets and lists (keeping a model of what it was acknowledged) while log rewrites run
//! concurrently (snapshots taken while the writes go on), then sessiond is SIGKILLed at a
//! polled moment; after the restart every key is what the model says (the one command in
//! flight at the kill may be there or not).

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::*;

#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    hashes: BTreeMap<String, BTreeMap<String, String>>,
    sets: BTreeMap<String, BTreeSet<String>>,
    zsets: BTreeMap<String, BTreeMap<String, i64>>,
    lists: BTreeMap<String, VecDeque<String>>,
}

/// One random change: the command and the model after it.
fn step(rng: &mut fastrand::Rng, m: &Model, seq: u64) -> (Vec<String>, Model) {
    let mut next = m.clone();
    let k = rng.u8(..4);
    let v = format!("v{seq}");
    let cmd: Vec<String> = match rng.u8(..8) {
        0 => {
            let key = format!("h{k}");
            let f = format!("f{}", rng.u8(..6));
            next.hashes
                .entry(key.clone())
                .or_default()
                .insert(f.clone(), v.clone());
            vec!["HSET".into(), key, f, v]
        }
        1 => {
            let key = format!("h{k}");
            let f = format!("f{}", rng.u8(..6));
            if let Some(h) = next.hashes.get_mut(&key) {
                h.remove(&f);
                if h.is_empty() {
                    next.hashes.remove(&key);
                }
            }
            vec!["HDEL".into(), key, f]
        }
        2 => {
            let key = format!("s{k}");
            let mbr = format!("m{}", rng.u8(..8));
            next.sets
                .entry(key.clone())
                .or_default()
                .insert(mbr.clone());
            vec!["SADD".into(), key, mbr]
        }
        3 => {
            let key = format!("s{k}");
            let mbr = format!("m{}", rng.u8(..8));
            if let Some(s) = next.sets.get_mut(&key) {
                s.remove(&mbr);
                if s.is_empty() {
                    next.sets.remove(&key);
                }
            }
            vec!["SREM".into(), key, mbr]
        }
        4 => {
            let key = format!("z{k}");
            let mbr = format!("m{}", rng.u8(..8));
            let score = rng.i64(-50..50);
            next.zsets
                .entry(key.clone())
                .or_default()
                .insert(mbr.clone(), score);
            vec!["ZADD".into(), key, score.to_string(), mbr]
        }
        5 | 6 => {
            let key = format!("l{k}");
            next.lists
                .entry(key.clone())
                .or_default()
                .push_back(v.clone());
            vec!["RPUSH".into(), key, v]
        }
        _ => {
            let key = format!("l{k}");
            if let Some(l) = next.lists.get_mut(&key) {
                l.pop_front();
                if l.is_empty() {
                    next.lists.remove(&key);
                }
            }
            vec!["LPOP".into(), key]
        }
    };
    (cmd, next)
}

fn strs(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.into_iter().map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// What the server holds, in the model's shape.
fn read_back(c: &mut Conn) -> Model {
    let mut m = Model::default();
    for k in 0..4 {
        let key = format!("h{k}");
        let flat = strs(c.cmd(&["HGETALL", &key]));
        if !flat.is_empty() {
            m.hashes.insert(
                key,
                flat.chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            );
        }
        let key = format!("s{k}");
        let members: BTreeSet<String> = strs(c.cmd(&["SMEMBERS", &key])).into_iter().collect();
        if !members.is_empty() {
            m.sets.insert(key, members);
        }
        let key = format!("z{k}");
        let flat = strs(c.cmd(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]));
        if !flat.is_empty() {
            m.zsets.insert(
                key,
                flat.chunks(2)
                    .map(|p| (p[0].clone(), p[1].parse().expect("integer score")))
                    .collect(),
            );
        }
        let key = format!("l{k}");
        let items: VecDeque<String> = strs(c.cmd(&["LRANGE", &key, "0", "-1"]))
            .into_iter()
            .collect();
        if !items.is_empty() {
            m.lists.insert(key, items);
        }
    }
    m
}

#[test]
fn every_type_survives_sigkill_during_log_rewrites() {
    let dir = TempDir::new("types-crash");
    // (acknowledged model, the model if the command in flight was applied)
    let state = Arc::new(Mutex::new((Model::default(), Model::default())));
    // `bench/crash-soak` sets SESSIOND_CRASH_ROUNDS=20.
    let rounds: u64 = std::env::var("SESSIOND_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let mut s = sessiond_in(&dir, &["--appendfsync", "everysec", "--threads", "2"]);
        {
            let mut c = s.connect();
            let got = read_back(&mut c);
            let (acked, inflight) = state.lock().unwrap().clone();
            assert!(
                got == acked || got == inflight,
                "round {round}: after restart the data is neither what was acknowledged nor that plus the command in flight\nserver: {got:?}\nacked:  {acked:?}"
            );
            *state.lock().unwrap() = (got.clone(), got);
        }
        let port = s.port;
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, acks, state) = (stop.clone(), acks.clone(), state.clone());
            let seed = round + 2;
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut c = Conn::connect(port);
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let cur = state.lock().unwrap().0.clone();
                    let (cmd, next) = step(&mut rng, &cur, seq);
                    state.lock().unwrap().1 = next.clone();
                    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    match c.try_cmd(&args) {
                        Some(Value::Error(e)) => panic!("{cmd:?}: {e}"),
                        Some(_) => {
                            *state.lock().unwrap() = (next.clone(), next);
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        None => return,
                    }
                }
            })
        };
        // Rewrites while the writer runs: each snapshot is taken under concurrent writes.
        let mut ctl = s.connect();
        let target = 300 + fastrand::u64(..700);
        let deadline = Instant::now() + DEADLINE;
        let mut rewrites = 0;
        while acks.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "writer made no progress");
            if info_field(&mut ctl, "persistence", "aof_rewrite_in_progress") == "0" && rewrites < 5
            {
                let _ = ctl.try_cmd(&["BGREWRITEAOF"]);
                rewrites += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Let at least one rewrite finish under the writes before the kill.
        while info_field(&mut ctl, "persistence", "aof_rewrites") == "0" {
            assert!(Instant::now() < deadline, "no log rewrite completed");
            if info_field(&mut ctl, "persistence", "aof_rewrite_in_progress") == "0" {
                let _ = ctl.try_cmd(&["BGREWRITEAOF"]);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        eprintln!(
            "round {round}: {} acknowledged, {rewrites}+ rewrites, then SIGKILL",
            acks.load(Ordering::Relaxed)
        );
        s.kill();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
    }
    let s = sessiond_in(&dir, &[]);
    let got = read_back(&mut s.connect());
    let (acked, inflight) = state.lock().unwrap().clone();
    assert!(
        got == acked || got == inflight,
        "final restart lost acknowledged data"
    );
    assert!(
        !got.lists.is_empty() || !got.hashes.is_empty(),
        "the test wrote something"
    );
}

/// Session records keep a shared key prefix once and text seven bits a character
/// (`engine/prefix.rs`, `engine/ascii.rs`). What the log and its rewrite hold is the whole key
/// and value: after a rewrite, more writes and a SIGKILL, every session comes back byte for
/// byte, and the restarted server stores them as small again.
#[test]
fn sessions_stored_compactly_survive_a_rewrite_and_a_sigkill() {
    let dir = TempDir::new("compact-sessions");
    let key = |i: usize| format!("PHPREDIS_SESSION:{i:026}");
    // Text of every length around the packing bounds, some binary, some with a TTL.
    let value = |i: usize| -> Vec<u8> {
        let n = [0, 15, 16, 17, 100, 129, 4096, 4097][i % 8] + i % 3;
        let mut v: Vec<u8> = (0..n)
            .map(|j| b' ' + ((i * 31 + j * 7) % 95) as u8)
            .collect();
        if i.is_multiple_of(5) && n > 0 {
            v[n / 2] = 0xc3;
        }
        v
    };
    let text: Vec<u8> = (0..100).map(|j| b'!' + (j * 13 % 90) as u8).collect();
    let mut s = sessiond_in(&dir, &["--appendfsync", "always"]);
    let mut c = s.connect();
    let write = |c: &mut Conn, range: std::ops::Range<usize>| {
        for i in range {
            let (k, v) = (key(i), value(i));
            let mut args: Vec<&[u8]> = vec![b"SET", k.as_bytes(), &v];
            if i % 2 == 0 {
                args.extend_from_slice(&[b"EX", b"100000"]);
            }
            assert_eq!(c.cmd_bytes(&args), Value::Simple("OK".into()));
        }
    };
    write(&mut c, 0..300);
    // Writes `text` under PHPREDIS_SESSION:<name> padded to 26 characters; MEMORY USAGE.
    let put = |c: &mut Conn, name: &str| {
        let k = format!("PHPREDIS_SESSION:{name:0<26}");
        assert_eq!(
            c.cmd_bytes(&[b"SET", k.as_bytes(), &text]),
            Value::Simple("OK".into())
        );
        c.cmd(&["MEMORY", "USAGE", &k])
    };
    // 144 bytes of record (see entry.rs) and an 8-byte bucket slot. (The first 63 keys,
    // written before the prefix had earned its slot, keep their whole key: 184.)
    assert_eq!(put(&mut c, "probe"), Value::Int(152));
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Value::Simple("Background append only file rewriting started".into())
    );
    let deadline = Instant::now() + DEADLINE;
    while info_field(&mut c, "persistence", "aof_rewrites") == "0" {
        assert!(Instant::now() < deadline, "no log rewrite completed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    write(&mut c, 300..400);
    c.cmd_bytes(&[b"APPEND", key(4).as_bytes(), b" and more text"]);
    s.kill();

    let s = sessiond_in(&dir, &[]);
    let mut c = s.connect();
    for i in 0..400 {
        let mut want = value(i);
        if i == 4 {
            want.extend_from_slice(b" and more text");
        }
        assert_eq!(c.cmd(&["GET", &key(i)]), Value::Bulk(want), "session {i}");
        let ttl = c.cmd(&["TTL", &key(i)]);
        assert_eq!(
            ttl == Value::Int(-1),
            i % 2 == 1,
            "session {i}: TTL {ttl:?}"
        );
    }
    let get = |c: &mut Conn, name: &str| c.cmd(&["GET", &format!("PHPREDIS_SESSION:{name:0<26}")]);
    assert_eq!(get(&mut c, "probe"), Value::Bulk(text.clone()));
    // The load earned the prefix its slot again: a session written now is small. (Records
    // loaded before that, at most the first 63, keep their whole key.)
    assert_eq!(put(&mut c, "again"), Value::Int(152));
    // An operator who would rather spend memory than CPU: new values stay as they are (a
    // 160-byte chunk), the packed ones stay readable, and it can be turned back on.
    let set = |c: &mut Conn, on: &str| c.cmd(&["CONFIG", "SET", "pack-text-values", on]);
    assert_eq!(set(&mut c, "no"), Value::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "pack-text-values"]),
        Value::Array(vec![Value::bulk("pack-text-values"), Value::bulk("no")])
    );
    assert_eq!(put(&mut c, "plain"), Value::Int(168));
    for name in ["plain", "again"] {
        assert_eq!(get(&mut c, name), Value::Bulk(text.clone()));
    }
    assert!(matches!(set(&mut c, "maybe"), Value::Error(_)));
    assert_eq!(set(&mut c, "yes"), Value::Simple("OK".into()));
    assert_eq!(put(&mut c, "plain"), Value::Int(152));
}
