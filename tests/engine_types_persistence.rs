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
