//! Clients that send and never read: what they may cost the server. In gateway mode a
//! pipeline of big reads used to be forwarded whole, its replies held in memory (1.2 GB for
//! two clients, 600 MB kept after they left); now a client has about a megabyte of replies
//! in flight and the rest of its pipeline waits until it reads, as in the embedded engine.
//! `client-output-buffer-limit` decides when such a client is disconnected instead.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{encode, info_field, redis_server, sessiond, Conn, Proc, Value};

fn gateway(upstream: &Proc, extra: &[&str]) -> Proc {
    let url = format!("redis://127.0.0.1:{}", upstream.port);
    let mut args = vec!["--upstream", url.as_str()];
    args.extend_from_slice(extra);
    sessiond(&args)
}

/// `calls=N` of one command in redis-server's INFO commandstats.
fn calls(redis: &mut Conn, cmd: &str) -> u64 {
    let v = info_field(redis, "commandstats", &format!("cmdstat_{cmd}"));
    v.split(',')
        .find_map(|f| f.strip_prefix("calls="))
        .map_or(0, |n| n.parse().unwrap())
}

fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

const BIG: usize = 1 << 20;
const PIPELINE: usize = 300;

/// A client that pipelines 300 `GET`s of a 1 MB value in one write and never reads.
fn greedy_client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let one = encode(&[b"GET", b"big"]);
    s.try_clone()
        .unwrap()
        .write_all(&one.repeat(PIPELINE))
        .unwrap();
    s
}

#[test]
fn gateway_clients_that_do_not_read_hold_a_bounded_amount_of_replies() {
    let redis = redis_server(&[]);
    let gw = gateway(&redis, &[]);
    let mut rc = redis.connect();
    assert_eq!(
        rc.cmd(&["SET", "big", &"x".repeat(BIG)]),
        Value::Simple("OK".into())
    );
    let mut greedy = [greedy_client(gw.port), greedy_client(gw.port)];
    // Wait until both pipelines have started upstream…
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(&mut rc, "get") < 2 {
        assert!(Instant::now() < deadline, "the GETs never reached redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    // …then give the gateway time to do whatever it will do with clients that never read.
    // (Nothing to poll for: the point is that nothing more happens.)
    std::thread::sleep(Duration::from_secs(2));
    let forwarded = calls(&mut rc, "get");
    let rss = rss_mb(gw.child.id());
    // Socket buffers take a few replies; the rest of each pipeline must wait. Before the
    // fix all 600 GETs were forwarded and their replies held: ~1.2 GB.
    assert!(
        forwarded < 2 * PIPELINE as u64 / 4,
        "{forwarded} of {} GETs forwarded for clients that read nothing",
        2 * PIPELINE
    );
    assert!(rss < 256, "gateway RSS {rss} MB");

    // A client that then reads gets every reply, whole and in order.
    let mut buf = vec![0u8; 1 << 16];
    let mut expected = Vec::with_capacity(BIG + 32);
    expected.extend_from_slice(format!("${BIG}\r\n").as_bytes());
    expected.extend_from_slice(&vec![b'x'; BIG]);
    expected.extend_from_slice(b"\r\n");
    let total = expected.len() * PIPELINE;
    let c = &mut greedy[0];
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = 0usize;
    while got < total {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed after {got} of {total} bytes");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, expected[(got + i) % expected.len()], "byte {}", got + i);
        }
        got += n;
    }
    assert!(calls(&mut rc, "get") >= PIPELINE as u64);
    drop(greedy);
    // The gateway serves on.
    assert_eq!(gw.connect().cmd(&["STRLEN", "big"]), Value::Int(BIG as i64));
}

/// With a soft limit, a client whose replies stay unread past it is disconnected; CONFIG
/// GET/SET speak Redis's syntax. Checked in both modes: the limit is the connection's.
#[test]
fn client_output_buffer_limit_disconnects_clients_that_do_not_read() {
    let redis = redis_server(&[]);
    let gw = gateway(&redis, &[]);
    let embedded = sessiond(&[]);
    for server in [&gw, &embedded] {
        let mut admin = server.connect();
        assert_eq!(
            admin.cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
            Value::Array(vec![
                Value::bulk("client-output-buffer-limit"),
                Value::bulk("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
            ])
        );
        assert!(matches!(
            admin.cmd(&["CONFIG", "SET", "client-output-buffer-limit", "normal 1 2"]),
            Value::Error(_)
        ));
        assert_eq!(
            admin.cmd(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 0 256kb 1"
            ]),
            Value::Simple("OK".into())
        );
        assert_eq!(
            admin.cmd(&["SET", "big", &"x".repeat(BIG)]),
            Value::Simple("OK".into())
        );
        let greedy = greedy_client(server.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while info_field(&mut admin, "clients", "connected_clients") != "1" {
            assert!(
                Instant::now() < deadline,
                "the client that does not read was never disconnected"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(greedy);
        assert_eq!(admin.cmd(&["STRLEN", "big"]), Value::Int(BIG as i64));
    }
}

/// With an open-file limit of 256, maxclients is lowered to fit at start (Redis keeps 32
/// descriptors for itself), so the clients past it are refused with Redis's error instead
/// of hanging in an accept queue that the server cannot empty.
#[test]
fn maxclients_fits_the_open_file_limit() {
    let s = support::start_custom("sh", "fdlimit", |port, dir| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(format!(
            "ulimit -n 256 && exec '{}' serve --listen 127.0.0.1:{port} --dir '{}'",
            support::sessiond_bin(),
            dir.0.display()
        ));
        c
    });
    let mut admin = s.connect();
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "maxclients"]),
        Value::Array(vec![Value::bulk("maxclients"), Value::bulk("224")])
    );
    assert!(matches!(
        admin.cmd(&["CONFIG", "SET", "maxclients", "1000"]),
        Value::Error(e) if e.contains("open-file limit")
    ));
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..240 {
        let mut c = s.connect();
        c.send_raw(&encode(&[b"PING"]));
        match c.read() {
            Some(Value::Simple(p)) if p == "PONG" => conns.push(c),
            Some(Value::Error(e)) if e == "ERR max number of clients reached" => refused += 1,
            other => panic!("connection {}: {other:?}", conns.len() + refused),
        }
    }
    assert!(refused >= 240 - 224, "{refused} refused");
    assert!(conns.len() >= 200, "{} served", conns.len());
}
