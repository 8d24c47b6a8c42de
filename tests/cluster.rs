//! Gateway over Redis Cluster, with real processes: three primaries created with
//! `redis-cli --cluster create`. Keys spread over the nodes by slot; multi-key and keyspace
//! commands are split and merged; hash tags keep a session's keys on one node; and a slot
//! moved by hand (the steps `redis-cli --cluster reshard` takes) is followed through `-ASK`
//! while it migrates and `-MOVED` after.

mod support;

use std::collections::HashSet;

use support::reloadable::Reloadable;
use support::{sessiond, Conn, Proc, Value};

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn cluster() -> Vec<Proc> {
    support::redis_cluster()
}

/// sessiond in front of the cluster, found through its first node.
fn gateway(nodes: &[Proc], extra: &[&str]) -> Proc {
    let url = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let mut args = vec!["--upstream", url.as_str()];
    args.extend_from_slice(extra);
    sessiond(&args)
}

fn node_of(nodes: &[Proc], slot: i64) -> usize {
    let mut c = nodes[0].connect();
    let Value::Array(ranges) = c.cmd(&["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS")
    };
    for r in ranges {
        let Value::Array(r) = r else { continue };
        let (Value::Int(a), Value::Int(b), Value::Array(n)) = (&r[0], &r[1], &r[2]) else {
            continue;
        };
        if (*a..=*b).contains(&slot) {
            let Value::Int(port) = n[1] else {
                panic!("port")
            };
            return nodes
                .iter()
                .position(|p| p.port as i64 == port)
                .expect("node");
        }
    }
    panic!("slot {slot} not served");
}

/// Gives an empty slot to node `dst`, on every node (no keys to migrate).
fn give_slot(nodes: &[Proc], slot: i64, dst: usize) {
    let dst_id = nodes[dst].connect().cmd(&["CLUSTER", "MYID"]).as_str();
    let slot = slot.to_string();
    for n in nodes {
        assert_eq!(
            n.connect()
                .cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]),
            ok()
        );
    }
}

fn upstream_field(c: &mut Conn, name: &str) -> i64 {
    c.cmd(&["INFO", "upstream"])
        .as_str()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

#[test]
fn cluster_routing_fanout_hash_tags_and_resharding() {
    let nodes = cluster();
    // No periodic refresh: the map is corrected only by what the cluster answers.
    let gw = gateway(&nodes, &["--upstream-refresh-interval-ms", "600000"]);
    let mut c = gw.connect();

    // Keys spread over all three nodes, each readable through the gateway.
    for i in 0..300 {
        let k = format!("k{i}");
        assert_eq!(c.cmd(&["SETEX", &k, "3600", &k]), ok());
    }
    let sizes: Vec<i64> = nodes
        .iter()
        .map(|n| match n.connect().cmd(&["DBSIZE"]) {
            Value::Int(n) => n,
            v => panic!("{v:?}"),
        })
        .collect();
    assert!(sizes.iter().all(|&n| n > 0), "keys not spread: {sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), 300);
    for i in (0..300).step_by(7) {
        let k = format!("k{i}");
        assert_eq!(c.cmd(&["GET", &k]), Value::bulk(&k));
    }

    // Commands over many slots are split per node and merged, in the client's order.
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    mget.push("missing");
    let vals = match c.cmd(&mget) {
        Value::Array(v) => v,
        v => panic!("MGET: {v:?}"),
    };
    assert_eq!(vals.len(), 11);
    for (k, v) in keys.iter().zip(&vals) {
        assert_eq!(v, &Value::bulk(k));
    }
    assert_eq!(vals[10], Value::Null);
    assert_eq!(c.cmd(&["EXISTS", "k1", "k2", "k3", "nope"]), Value::Int(3));
    assert_eq!(c.cmd(&["MSET", "m1", "a", "m2", "b", "m3", "c"]), ok());
    assert_eq!(c.cmd(&["DEL", "m1", "m2", "m3", "nope"]), Value::Int(3));
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(300));
    let Value::Array(all) = c.cmd(&["KEYS", "k*"]) else {
        panic!("KEYS")
    };
    assert_eq!(all.len(), 300);
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let Value::Array(r) = c.cmd(&["SCAN", &cursor, "COUNT", "50"]) else {
            panic!("SCAN")
        };
        let (Value::Bulk(next), Value::Array(ks)) = (&r[0], &r[1]) else {
            panic!("SCAN reply")
        };
        seen.extend(ks.iter().map(|k| k.as_str()));
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        300,
        "SCAN over the cluster visits every key once"
    );
    assert!(matches!(c.cmd(&["SELECT", "1"]), Value::Error(_)));

    // Hash tags: one session's keys share a slot, so multi-key commands on them go to one
    // node in one piece, with Redis's own atomicity.
    assert_eq!(
        c.cmd(&["MSET", "sess:{abc}:data", "d", "sess:{abc}:lock", "l"]),
        ok()
    );
    assert_eq!(
        c.cmd(&["MSETNX", "sess:{abc}:x", "1", "sess:{abc}:y", "2"]),
        Value::Int(1)
    );
    assert!(
        matches!(c.cmd(&["MSETNX", "a1", "1", "b1", "2", "c1", "3"]), Value::Error(e) if e.starts_with("CROSSSLOT"))
    );

    // Move k1's slot to another node, as redis-cli --cluster reshard does.
    let mut any = nodes[0].connect();
    let Value::Int(slot) = any.cmd(&["CLUSTER", "KEYSLOT", "k1"]) else {
        panic!("KEYSLOT")
    };
    let src = node_of(&nodes, slot);
    let dst = (src + 1) % 3;
    let id = |i: usize| nodes[i].connect().cmd(&["CLUSTER", "MYID"]).as_str();
    let (src_id, dst_id) = (id(src), id(dst));
    let mut s = nodes[src].connect();
    let mut d = nodes[dst].connect();
    let slot_s = slot.to_string();
    assert_eq!(
        d.cmd(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]),
        ok()
    );
    assert_eq!(
        s.cmd(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]),
        ok()
    );
    let Value::Array(in_slot) = s.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "1000"]) else {
        panic!("GETKEYSINSLOT")
    };
    let mut migrate = vec![
        "MIGRATE".to_string(),
        "127.0.0.1".to_string(),
        nodes[dst].port.to_string(),
        String::new(),
        "0".to_string(),
        "5000".to_string(),
        "KEYS".to_string(),
    ];
    migrate.extend(in_slot.iter().map(|k| k.as_str()));
    let margs: Vec<&str> = migrate.iter().map(String::as_str).collect();
    assert_eq!(s.cmd(&margs), ok());
    // Mid-migration the source answers -ASK for keys it no longer has.
    assert_eq!(c.cmd(&["GET", "k1"]), Value::bulk("k1"));
    assert!(upstream_field(&mut c, "upstream_cluster_ask") >= 1);
    // Finish: the slot belongs to the target everywhere; the gateway's map is now stale.
    for n in &nodes {
        assert_eq!(
            n.connect()
                .cmd(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]),
            ok()
        );
    }
    assert_eq!(c.cmd(&["GET", "k1"]), Value::bulk("k1"));
    assert!(upstream_field(&mut c, "upstream_cluster_moved") >= 1);
    assert_eq!(c.cmd(&["SET", "k1", "after"]), ok());
    assert_eq!(d.cmd(&["GET", "k1"]), Value::bulk("after"));
    // Pipelined, several redirected commands keep their order.
    let mut raw = Vec::new();
    for k in ["k1", "k2", "k1", "k3"] {
        raw.extend_from_slice(&support::encode(&[b"GET", k.as_bytes()]));
    }
    c.send_raw(&raw);
    let got: Vec<Value> = (0..4).map(|_| c.read().expect("reply")).collect();
    assert_eq!(
        got,
        vec![
            Value::bulk("after"),
            Value::bulk("k2"),
            Value::bulk("after"),
            Value::bulk("k3")
        ]
    );
}

fn err_starts(v: Value, prefix: &str) {
    match v {
        Value::Error(e) => assert!(e.starts_with(prefix), "{e}"),
        v => panic!("expected -{prefix}…, got {v:?}"),
    }
}

/// Transactions, scripts and blocking commands through the gateway to a 3-primary
/// cluster: keys of one slot (hash tags) work, keys of several slots get CROSSSLOT (and a
/// transaction with one is discarded), SCRIPT LOAD reaches every primary so EVALSHA works
/// wherever its keys route.
#[test]
fn transactions_scripts_and_blocking_commands_in_a_cluster() {
    let nodes = cluster();
    let gw = gateway(&nodes, &[]);
    let mut c = gw.connect();
    let queued = || Value::Simple("QUEUED".into());

    // A transaction on one slot, keys named after the MULTI (the node is chosen then).
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["PING"]), queued());
    assert_eq!(c.cmd(&["SET", "{s1}:a", "1"]), queued());
    assert_eq!(c.cmd(&["INCR", "{s1}:b"]), queued());
    assert_eq!(c.cmd(&["GET", "{s1}:a"]), queued());
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![
            Value::Simple("PONG".into()),
            ok(),
            Value::Int(1),
            Value::bulk("1")
        ])
    );
    let owner = match nodes[0].connect().cmd(&["CLUSTER", "KEYSLOT", "{s1}:a"]) {
        Value::Int(s) => node_of(&nodes, s),
        v => panic!("{v:?}"),
    };
    assert_eq!(
        nodes[owner].connect().cmd(&["GET", "{s1}:b"]),
        Value::bulk("1")
    );

    // Keys of two slots: CROSSSLOT while queueing, and EXEC discards everything.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{x}:1", "1"]), queued());
    err_starts(c.cmd(&["SET", "{y}:1", "1"]), "CROSSSLOT");
    err_starts(c.cmd(&["EXEC"]), "EXECABORT");
    assert_eq!(c.cmd(&["EXISTS", "{x}:1"]), Value::Int(0));
    // A keyless transaction, and DISCARD.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["EXEC"]), Value::Array(vec![]));
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{x}:2", "1"]), queued());
    assert_eq!(c.cmd(&["DISCARD"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "{x}:2"]), Value::Int(0));

    // WATCH pins to the key's node; a change by another client makes EXEC nil.
    let mut other = gw.connect();
    assert_eq!(c.cmd(&["WATCH", "{w}:k"]), ok());
    assert_eq!(other.cmd(&["SET", "{w}:k", "theirs"]), ok());
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{w}:k", "mine"]), queued());
    assert_eq!(c.cmd(&["EXEC"]), Value::NullArray);
    assert_eq!(c.cmd(&["GET", "{w}:k"]), Value::bulk("theirs"));
    err_starts(c.cmd(&["WATCH", "{a}1", "{b}2"]), "CROSSSLOT");

    // Scripts: routed by their keys; SCRIPT LOAD goes to every primary.
    let sha = c
        .cmd(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"])
        .as_str();
    for n in &nodes {
        assert_eq!(
            n.connect().cmd(&["SCRIPT", "EXISTS", &sha]),
            Value::Array(vec![Value::Int(1)])
        );
    }
    for i in 0..20 {
        let k = format!("script:{i}");
        assert_eq!(c.cmd(&["SET", &k, &k]), ok());
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", &k]), Value::bulk(&k));
    }
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            &sha,
            "0000000000000000000000000000000000000000"
        ]),
        Value::Array(vec![Value::Int(1), Value::Int(0)])
    );
    err_starts(
        c.cmd(&["EVAL", "return 1", "2", "{a}1", "{b}2"]),
        "CROSSSLOT",
    );
    assert_eq!(
        c.cmd(&["EVAL", "return #KEYS", "2", "{a}1", "{a}2"]),
        Value::Int(2)
    );

    // Functions too: FUNCTION LOAD reaches every primary, FCALL routes by its keys.
    let lib = "#!lua name=sesslib\nredis.register_function('touch', function(keys, args) \
               return redis.call('SET', keys[1], args[1]) end)";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), Value::bulk("sesslib"));
    for i in 0..20 {
        let k = format!("fn:{i}");
        assert_eq!(c.cmd(&["FCALL", "touch", "1", &k, "v"]), ok());
        assert_eq!(c.cmd(&["GET", &k]), Value::bulk("v"));
    }
    assert_eq!(c.cmd(&["FUNCTION", "DELETE", "sesslib"]), ok());
    for n in &nodes {
        assert_eq!(n.connect().cmd(&["FUNCTION", "LIST"]), Value::Array(vec![]));
    }

    // Blocking commands on the keys' node.
    assert_eq!(c.cmd(&["BLPOP", "{q}1", "{q}2", "0.05"]), Value::NullArray);
    err_starts(c.cmd(&["BLPOP", "{q}1", "{r}2", "0"]), "CROSSSLOT");
    assert_eq!(other.cmd(&["RPUSH", "{q}2", "job"]), Value::Int(1));
    assert_eq!(
        c.cmd(&["BLPOP", "{q}1", "{q}2", "1"]),
        Value::Array(vec![Value::bulk("{q}2"), Value::bulk("job")])
    );
}

/// Commands about databases get Redis Cluster's own refusals through the gateway.
#[test]
fn database_commands_in_a_cluster_answer_as_the_cluster_does() {
    let nodes = cluster();
    let gw = gateway(&nodes, &[]);
    let mut c = gw.connect();
    let slot = match nodes[0].connect().cmd(&["CLUSTER", "KEYSLOT", "k"]) {
        Value::Int(s) => s,
        v => panic!("{v:?}"),
    };
    let mut owner = nodes[node_of(&nodes, slot)].connect();
    for cmd in [
        &["SELECT", "0"][..],
        &["SELECT", "1"],
        &["SELECT", "x"],
        &["MOVE", "k", "1"],
        &["SWAPDB", "0", "1"],
    ] {
        assert_eq!(c.cmd(cmd), owner.cmd(cmd), "{cmd:?}");
    }
}

/// A slot that moves while a transaction is being queued: the node answers `-MOVED`, the
/// client still sees `+QUEUED`, and at `EXEC` the gateway replays the transaction on the
/// slot's new owner, as a cluster client would.
#[test]
fn a_transaction_whose_slot_moves_while_queued_is_replayed_on_the_new_owner() {
    let nodes = cluster();
    // No periodic refresh: the map is corrected only by what the cluster answers.
    let gw = gateway(&nodes, &["--upstream-refresh-interval-ms", "600000"]);
    let mut c = gw.connect();
    let queued = || Value::Simple("QUEUED".into());
    let Value::Int(slot) = nodes[0].connect().cmd(&["CLUSTER", "KEYSLOT", "{mv}"]) else {
        panic!("KEYSLOT")
    };
    let src = node_of(&nodes, slot);
    let dst = (src + 1) % 3;

    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{mv}a", "1"]), queued());
    // The (empty) slot moves to another node.
    give_slot(&nodes, slot, dst);
    assert_eq!(c.cmd(&["SET", "{mv}b", "2"]), queued());
    assert_eq!(c.cmd(&["INCR", "{mv}n"]), queued());
    assert_eq!(
        c.cmd(&["EXEC"]),
        Value::Array(vec![ok(), ok(), Value::Int(1)])
    );
    let mut d = nodes[dst].connect();
    assert_eq!(
        d.cmd(&["MGET", "{mv}a", "{mv}b"]),
        Value::Array(vec![Value::bulk("1"), Value::bulk("2")])
    );
    assert_eq!(nodes[src].connect().cmd(&["DBSIZE"]), Value::Int(0));
    // The map was corrected: the next transaction goes straight to the new owner.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["INCR", "{mv}n"]), queued());
    assert_eq!(c.cmd(&["EXEC"]), Value::Array(vec![Value::Int(2)]));
}

/// A shard-channel subscriber follows its channel's slot: when the slot moves, the old
/// owner unsubscribes it (Redis's `sunsubscribe`), and the gateway subscribes it again on
/// the new owner without the client seeing the interruption.
#[test]
fn a_shard_channel_subscriber_follows_its_slot_to_the_new_owner() {
    let nodes = cluster();
    let gw = gateway(&nodes, &["--upstream-refresh-interval-ms", "600000"]);
    let mut sub = gw.connect();
    sub.send_raw(&support::encode(&[b"SSUBSCRIBE", b"{sc}news"]));
    let smessage = |m: &str| {
        Value::Array(vec![
            Value::bulk("smessage"),
            Value::bulk("{sc}news"),
            Value::bulk(m),
        ])
    };
    assert_eq!(
        sub.read(),
        Some(Value::Array(vec![
            Value::bulk("ssubscribe"),
            Value::bulk("{sc}news"),
            Value::Int(1)
        ]))
    );
    let mut p = gw.connect();
    assert_eq!(p.cmd(&["SPUBLISH", "{sc}news", "one"]), Value::Int(1));
    assert_eq!(sub.read(), Some(smessage("one")));

    let Value::Int(slot) = nodes[0].connect().cmd(&["CLUSTER", "KEYSLOT", "{sc}news"]) else {
        panic!("KEYSLOT")
    };
    let src = node_of(&nodes, slot);
    let dst = (src + 1) % 3;
    give_slot(&nodes, slot, dst);
    // Published through the gateway until the subscriber is back (on the new owner).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.cmd(&["SPUBLISH", "{sc}news", "two"]) != Value::Int(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "never subscribed again"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(sub.read(), Some(smessage("two")), "no sunsubscribe shown");
    assert_eq!(
        nodes[dst]
            .connect()
            .cmd(&["PUBSUB", "SHARDNUMSUB", "{sc}news"]),
        Value::Array(vec![Value::bulk("{sc}news"), Value::Int(1)])
    );
}

/// A reload gives the gateway a new seed list: when the cluster it knew is gone, it finds
/// the new one through the new seeds, on the same client connection.
#[test]
fn a_reload_with_new_seeds_moves_the_gateway_to_another_cluster() {
    let mut old = cluster();
    let new = cluster();
    let seeds = |nodes: &[Proc]| {
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    };
    let url = |nodes: &[Proc]| format!("upstream = \"redis+cluster://{}\"\n", seeds(nodes));
    let gw = Reloadable::start(&url(&old[..1]), &["--upstream-refresh-interval-ms", "200"]);
    let mut c = gw.proc.connect();
    assert_eq!(c.cmd(&["SET", "before", "1"]), ok());

    gw.rewrite(&url(&new));
    let (ok_, text) = gw.reload(&[]);
    assert!(ok_ && text.contains("upstream"), "{text}");

    for n in old.iter_mut() {
        n.kill();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.cmd(&["SET", "after", "2"]) != ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never found the new cluster"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let on_new: i64 = new
        .iter()
        .map(|n| match n.connect().cmd(&["DBSIZE"]) {
            Value::Int(k) => k,
            _ => 0,
        })
        .sum();
    assert_eq!(on_new, 1, "the write is on the new cluster");
    assert_eq!(c.cmd(&["GET", "after"]), Value::bulk("2"));
}
