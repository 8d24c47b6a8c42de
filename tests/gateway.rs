//! Gateway mode against real redis-server processes: the same command scripts through
//! sessiond (`--upstream`) and straight to redis-server give identical replies; pipelines,
//! SELECT, AUTH and RESP3 per client; an upstream that stops answering gives timeouts, not
//! hangs, and is used again once it answers.

mod support;

use std::time::{Duration, Instant};

use support::{info_field, redis_server, run_script, sessiond, Conn, Proc, Value};

fn gateway(upstream: &Proc, extra: &[&str]) -> Proc {
    let url = format!("redis://127.0.0.1:{}", upstream.port);
    let mut args = vec!["--upstream", url.as_str()];
    args.extend_from_slice(extra);
    sessiond(&args)
}

fn differential(script: &str) {
    let direct = redis_server(&[]);
    let behind = redis_server(&[]);
    let gw = gateway(&behind, &[]);
    let mut rc = direct.connect();
    let mut gc = gw.connect();
    let failures = run_script(script, &mut rc, &mut gc);
    assert!(
        failures.is_empty(),
        "{} replies through the gateway differ from redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn strings_through_gateway_match_redis() {
    differential("strings.txt");
}

#[test]
fn keys_through_gateway_match_redis() {
    differential("keys.txt");
}

#[test]
fn expire_through_gateway_match_redis() {
    differential("expire.txt");
}

#[test]
fn connection_commands_through_gateway_match_redis() {
    differential("connection.txt");
}

#[test]
fn resp3_through_gateway_matches_redis() {
    differential("resp3.txt");
}

/// Every data-type family, scripting and transactions: the same scripts through the
/// gateway and straight to redis-server give identical replies.
#[test]
fn every_command_family_through_gateway_matches_redis() {
    let mut failures = Vec::new();
    for script in [
        "hashes.txt",
        "lists.txt",
        "sets.txt",
        "zsets.txt",
        "streams.txt",
        "hyperloglog.txt",
        "bitmaps.txt",
        "geo.txt",
        "scripting.txt",
        "lua.txt",
        "transactions.txt",
        "session-frameworks.txt",
    ] {
        let direct = redis_server(&[]);
        let behind = redis_server(&[]);
        let gw = gateway(&behind, &[]);
        let mut rc = direct.connect();
        let mut gc = gw.connect();
        failures.extend(run_script(script, &mut rc, &mut gc));
    }
    assert!(
        failures.is_empty(),
        "{} replies through the gateway differ from redis-server:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Polls `f` until it returns `Some`, or fails after the harness deadline.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipeline mixing forwarded and locally answered commands gets its replies in order,
/// with SELECT applying per client from the next command on.
#[test]
fn pipelines_keep_order_across_local_and_forwarded_commands() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &[]);
    let mut c = gw.connect();
    let script: &[&[&str]] = &[
        &["SET", "k", "zero"],
        &["PING"],
        &["GET", "k"],
        &["SELECT", "2"],
        &["GET", "k"],
        &["SET", "k", "two"],
        &["ECHO", "local"],
        &["GET", "k"],
        &["SELECT", "0"],
        &["GET", "k"],
        &["NOSUCHCOMMAND"],
        &["INCR", "k"],
        &["MGET", "k", "missing"],
    ];
    let mut raw = Vec::new();
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        raw.extend_from_slice(&support::encode(&args));
    }
    c.send_raw(&raw);
    let replies: Vec<Value> = (0..script.len())
        .map(|_| c.read().expect("reply"))
        .collect();
    assert_eq!(replies[0], Value::Simple("OK".into()));
    assert_eq!(replies[2], Value::bulk("zero"));
    assert_eq!(replies[4], Value::Null);
    assert_eq!(replies[7], Value::bulk("two"));
    assert_eq!(replies[9], Value::bulk("zero"));
    assert_eq!(
        replies[11],
        Value::Error("ERR value is not an integer or out of range".into())
    );
    assert_eq!(replies[1], Value::Simple("PONG".into()));
    assert_eq!(replies[6], Value::bulk("local"));
    assert!(matches!(&replies[10], Value::Error(e) if e.starts_with("ERR unknown command")));
    assert!(matches!(&replies[12], Value::Array(v) if v.len() == 2));
    // And the data landed in the upstream's databases, as the client selected them.
    let mut direct = r.connect();
    assert_eq!(direct.cmd(&["SELECT", "2"]), Value::Simple("OK".into()));
    assert_eq!(direct.cmd(&["GET", "k"]), Value::bulk("two"));
}

/// Clients authenticate to sessiond with its password; sessiond authenticates to the
/// upstream with the URL's. Neither password works in the other place.
#[test]
fn auth_is_checked_by_sessiond_and_done_upstream_by_sessiond() {
    let r = redis_server(&["--requirepass", "upstream-pw"]);
    let url = format!("redis://:upstream-pw@127.0.0.1:{}/0", r.port);
    let gw = sessiond(&["--upstream", &url, "--requirepass", "client-pw"]);
    let mut c = gw.connect();
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Value::Error("NOAUTH Authentication required.".into())
    );
    assert!(
        matches!(c.cmd(&["AUTH", "upstream-pw"]), Value::Error(e) if e.starts_with("WRONGPASS"))
    );
    assert_eq!(c.cmd(&["AUTH", "client-pw"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(&["SET", "k", "v"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(&["GET", "k"]), Value::bulk("v"));
    let mut d = r.connect();
    assert_eq!(d.cmd(&["AUTH", "upstream-pw"]), Value::Simple("OK".into()));
    assert_eq!(d.cmd(&["GET", "k"]), Value::bulk("v"));
}

/// Many clients share a few upstream connections, and every client reads its own writes.
#[test]
fn many_clients_are_multiplexed_onto_few_upstream_connections() {
    let r = redis_server(&[]);
    let gw = gateway(&r, &["--upstream-connections", "2"]);
    let port = gw.port;
    let threads: Vec<_> = (0..40)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(port);
                for i in 0..50 {
                    let key = format!("client{t}:key");
                    let val = format!("{t}-{i}");
                    assert_eq!(c.cmd(&["SET", &key, &val]), Value::Simple("OK".into()));
                    assert_eq!(c.cmd(&["GET", &key]), Value::bulk(&val), "read-your-writes");
                }
                c
            })
        })
        .collect();
    let conns: Vec<Conn> = threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    // All 40 clients are still connected to sessiond; redis-server sees its own test
    // connection, sessiond's health check and at most two pooled connections.
    let mut d = r.connect();
    let upstream_clients: usize = info_field(&mut d, "clients", "connected_clients")
        .parse()
        .expect("connected_clients");
    assert!(
        upstream_clients <= 4,
        "{upstream_clients} upstream connections for 40 clients"
    );
    assert_eq!(conns.len(), 40);
    assert_eq!(d.cmd(&["DBSIZE"]), Value::Int(40));
}

/// An upstream that stops answering (SIGSTOP) gives clients error replies (timeouts, then
/// fast failures once it is ejected), never a hang; after SIGCONT it is used again.
#[test]
fn stopped_upstream_gives_errors_not_hangs_and_recovers() {
    let r = redis_server(&[]);
    let gw = gateway(
        &r,
        &[
            "--upstream-timeout-ms",
            "300",
            "--upstream-health-interval-ms",
            "100",
            "--upstream-failure-limit",
            "2",
        ],
    );
    let mut c = gw.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Value::Simple("OK".into()));
    r.signal("STOP");
    // The first request waits out its timeout and gets an error reply (the client's own
    // read timeout is 10 s: a hang would fail here).
    match c.cmd(&["GET", "k"]) {
        Value::Error(e) => assert!(
            e.contains("timed out") || e.contains("is down") || e.contains("connection lost"),
            "{e}"
        ),
        other => panic!("expected an error while the upstream is stopped, got {other:?}"),
    }
    // Health checks eject the node: requests then fail at once, with a clear error.
    let mut m = gw.connect();
    poll("the stopped upstream to be ejected", || {
        (info_field(&mut m, "upstream", "upstream_node0").contains("health=down")).then_some(())
    });
    match c.cmd(&["GET", "k"]) {
        Value::Error(e) => assert!(e.contains("is down"), "{e}"),
        other => panic!("expected an error from an ejected upstream, got {other:?}"),
    }
    r.signal("CONT");
    let v = poll("the upstream to be used again", || {
        match c.cmd(&["GET", "k"]) {
            Value::Error(_) => None,
            v => Some(v),
        }
    });
    assert_eq!(v, Value::bulk("v"));
    let ejections = info_field(&mut m, "upstream", "upstream_node0");
    assert!(ejections.contains("ejections=1"), "{ejections}");
}

/// sessiond starts even when its upstream is not there yet, answers with errors, and serves
/// once the upstream appears.
#[test]
fn upstream_down_at_start_then_up() {
    let port = support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let gw = sessiond(&[
        "--upstream",
        &url,
        "--upstream-health-interval-ms",
        "100",
        "--upstream-connect-timeout-ms",
        "300",
    ]);
    let mut c = gw.connect();
    assert!(matches!(c.cmd(&["GET", "k"]), Value::Error(e) if e.starts_with("ERR upstream")));
    let _r = support::redis_server_on(port, &[]);
    let v = poll("the upstream to come up", || {
        match c.cmd(&["SET", "k", "v"]) {
            Value::Error(_) => None,
            v => Some(v),
        }
    });
    assert_eq!(v, Value::Simple("OK".into()));
}

/// Commands the gateway refuses say why; a command it does not know is the upstream's to
/// answer (here redis-server's own "unknown command", byte for byte).
#[test]
fn refused_and_unknown_commands_through_gateway() {
    let direct = redis_server(&[]);
    let behind = redis_server(&[]);
    let gw = gateway(&behind, &[]);
    let mut c = gw.connect();
    for cmd in [
        &["CLIENT", "TRACKING", "on"][..],
        &["MONITOR"],
        &["DEBUG", "SLEEP", "0"],
        &["CLUSTER", "INFO"],
        &["REPLICAOF", "NO", "ONE"],
    ] {
        match c.cmd(cmd) {
            Value::Error(e) => assert!(e.contains("sessiond gateway"), "{cmd:?}: {e}"),
            v => panic!("{cmd:?}: {v:?}"),
        }
    }
    let mut d = direct.connect();
    for cmd in [
        &["NOSUCHCMD", "a", "b"][..],
        &["OBJECT", "NOSUCH"],
        &["XINFO", "STREAM"],
    ] {
        assert_eq!(c.cmd(cmd), d.cmd(cmd), "{cmd:?}");
    }
    // The connection is still usable after all of them.
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
}
