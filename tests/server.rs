//! Server behaviour with real processes: safety defaults, limits, client management,
//! configuration sources, pipelining, concurrency and shutdown.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use support::{free_port, sessiond, sessiond_bin, Conn, TempDir, Value};

#[test]
fn protected_mode_refuses_public_address_without_password() {
    let port = free_port();
    let out = Command::new(sessiond_bin())
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run sessiond");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on non-loopback address"),
        "{err}"
    );
    // With a password, or protected mode off, it serves (tests connect over loopback only).
    let s = sessiond(&[
        "--listen",
        &format!("0.0.0.0:{}", free_port()),
        "--requirepass",
        "pw",
    ]);
    assert_eq!(s.connect().cmd(&["AUTH", "pw"]), Value::Simple("OK".into()));
    let s2 = sessiond(&[
        "--listen",
        &format!("0.0.0.0:{}", free_port()),
        "--protected-mode",
        "no",
    ]);
    assert_eq!(s2.connect().cmd(&["PING"]), Value::Simple("PONG".into()));
}

#[test]
fn maxclients_rejects_with_redis_error() {
    let s = sessiond(&["--maxclients", "2"]);
    // The readiness probe's connection may still hold a slot: wait until only `a` is left.
    let deadline = std::time::Instant::now() + support::DEADLINE;
    let mut a = loop {
        let mut a = s.connect();
        a.send_raw(b"PING\r\n");
        if a.read() == Some(Value::Simple("PONG".into())) {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no slot for the first client"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    while !a
        .cmd(&["INFO", "clients"])
        .as_str()
        .contains("connected_clients:1\r\n")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "probe connection never went away"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut b = s.connect();
    assert_eq!(b.cmd(&["PING"]), Value::Simple("PONG".into()));
    let mut c = s.connect();
    assert_eq!(
        c.read(),
        Some(Value::Error("ERR max number of clients reached".into()))
    );
    assert!(c.is_closed());
    drop(a);
    // The freed slot becomes available once the server has noticed the close.
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        let mut d = s.connect();
        d.send_raw(b"PING\r\n");
        if d.read() == Some(Value::Simple("PONG".into())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn idle_timeout_closes_connections() {
    let s = sessiond(&["--timeout", "1"]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    assert!(c.is_closed(), "idle client closed after --timeout");
}

#[test]
fn client_kill_and_list() {
    let s = sessiond(&[]);
    let mut victim = s.connect();
    assert_eq!(
        victim.cmd(&["CLIENT", "SETNAME", "victim"]),
        Value::Simple("OK".into())
    );
    let Value::Int(id) = victim.cmd(&["CLIENT", "ID"]) else {
        panic!()
    };
    let mut admin = s.connect();
    let list = admin.cmd(&["CLIENT", "LIST"]).as_str();
    assert!(
        list.contains(&format!("id={id} ")) && list.contains("name=victim"),
        "{list}"
    );
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        Value::Int(1)
    );
    assert!(victim.is_closed());
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        Value::Int(0)
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut s = sessiond(&[]);
    let mut c = s.connect();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Value::Simple("OK".into()));
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn config_file_env_and_flags_combine() {
    let dir = TempDir::new("cfg");
    let path = dir.path("sessiond.toml");
    std::fs::write(
        &path,
        "maxmemory = \"64mb\"\nmaxmemory-policy = \"volatile-ttl\"\ndatabases = 4\n",
    )
    .unwrap();
    let path_s = path.to_string_lossy().to_string();
    let s = support::sessiond_with_env(
        &["--config", &path_s, "--databases", "8"],
        &[("SESSIOND_MAXMEMORY", "32mb")],
    );
    let mut c = s.connect();
    let get = |c: &mut Conn, k: &str| match c.cmd(&["CONFIG", "GET", k]) {
        Value::Array(v) => v[1].as_str(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        get(&mut c, "maxmemory"),
        (32 * 1024 * 1024).to_string(),
        "env beats file"
    );
    assert_eq!(
        get(&mut c, "maxmemory-policy"),
        "volatile-ttl",
        "file beats default"
    );
    assert_eq!(get(&mut c, "databases"), "8", "flag beats file");
}

#[test]
fn pipelined_commands_reply_in_order() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    let n = 10_000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend(support::encode(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]));
        batch.extend(support::encode(&[b"GET", format!("k{i}").as_bytes()]));
    }
    c.send_raw(&batch);
    for i in 0..n {
        assert_eq!(c.read(), Some(Value::Simple("OK".into())));
        assert_eq!(c.read(), Some(Value::bulk(&format!("v{i}"))));
    }
}

#[test]
fn concurrent_clients_are_atomic() {
    let s = Arc::new(sessiond(&[]));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let port = s.port;
            std::thread::spawn(move || {
                let mut c = Conn::connect(port);
                for i in 0..500 {
                    c.cmd(&["INCR", "counter"]);
                    c.cmd(&["MSET", &format!("a{i}"), "x", &format!("b{i}"), "x"]);
                    c.cmd(&["SETEX", &format!("sess:{i}"), "100", "data"]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = s.connect();
    assert_eq!(c.cmd(&["GET", "counter"]), Value::bulk("4000"));
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(1 + 500 * 3));
}

#[test]
fn query_buffer_limit_disconnects() {
    let s = sessiond(&["--client-query-buffer-limit", "1mb"]);
    let mut c = s.connect();
    // A 4 MB argument, allowed by proto-max-bulk-len, exceeds the 1 MB query buffer limit.
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4000000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    let mut closed = false;
    for _ in 0..64 {
        if c.writer.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
    }
    assert!(
        closed || c.is_closed(),
        "client over the query buffer limit is disconnected"
    );
    assert_eq!(s.connect().cmd(&["DBSIZE"]), Value::Int(0));
}

#[test]
fn logs_never_contain_session_values_or_keys() {
    let dir = TempDir::new("logs");
    let log = dir.path("sessiond.log");
    let log_s = log.to_string_lossy().to_string();
    let mut s = sessiond(&[
        "--loglevel",
        "debug",
        "--logfile",
        &log_s,
        "--requirepass",
        "hunter2",
    ]);
    let mut c = s.connect();
    c.cmd(&["AUTH", "wrong-password"]);
    c.cmd(&["AUTH", "hunter2"]);
    c.cmd(&[
        "SET",
        "PHPREDIS_SESSION:secretsessionid",
        "user|s:6:\"topsecretvalue\";",
    ]);
    c.cmd(&["CONFIG", "SET", "requirepass", "newsecret"]);
    c.cmd(&["FLUSHALL"]);
    c.send_raw(b"*1\r\n$x\r\n");
    let _ = c.read();
    drop(c);
    s.terminate();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("1 failed AUTH from 127.0.0.1 in the last 10 s"),
        "log has events: {text}"
    );
    for secret in [
        "topsecretvalue",
        "secretsessionid",
        "hunter2",
        "wrong-password",
        "newsecret",
    ] {
        assert!(!text.contains(secret), "log leaks {secret}: {text}");
    }
}

/// Random bytes, random framing fragments and random commands from many connections never
/// crash the server; it keeps answering.
#[test]
fn garbage_input_never_crashes_the_server() {
    let s = sessiond(&[]);
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fragments: &[&[u8]] = &[
        b"*",
        b"$",
        b"\r\n",
        b"-1",
        b"0",
        b"99999999999",
        b"SET",
        b"GET",
        b"\"",
        b"'",
        b"\\x",
        b" ",
        b"\0",
        b"*2\r\n",
        b"$3\r\n",
        b"HELLO",
        b"3",
        b"EVAL",
        b"SCAN",
        b"CLIENT",
        b"KILL",
    ];
    for _ in 0..300 {
        let mut c = s.connect();
        let mut data = Vec::new();
        for _ in 0..(next() % 40) {
            if next() % 3 == 0 {
                data.push(next() as u8);
            } else {
                data.extend_from_slice(fragments[(next() % fragments.len() as u64) as usize]);
            }
        }
        data.extend_from_slice(b"\r\n");
        let _ = c.writer.write_all(&data);
        let _ = c.writer.shutdown(std::net::Shutdown::Write);
        // Drain whatever comes back until the server closes or the stream ends.
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.reader, &mut sink);
    }
    assert_eq!(s.connect().cmd(&["PING"]), Value::Simple("PONG".into()));
}

#[test]
fn client_setinfo_shows_in_client_list() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "lib-name", "redis-py"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "LIB-VER", "5.0.1"]),
        Value::Simple("OK".into())
    );
    assert!(
        matches!(c.cmd(&["CLIENT", "SETINFO", "bogus", "x"]), Value::Error(e) if e.starts_with("ERR Unrecognized option"))
    );
    assert!(matches!(
        c.cmd(&["CLIENT", "SETINFO", "lib-name", "has space"]),
        Value::Error(_)
    ));
    let info = c.cmd(&["CLIENT", "INFO"]).as_str();
    assert!(info.contains("lib-name=redis-py lib-ver=5.0.1"), "{info}");
}

/// A pipelined batch whose replies are far larger than the output flush threshold: replies are
/// written as they are produced (bounded memory), complete and in order.
#[test]
fn large_pipelined_replies_stream_in_order() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    let big = vec![b'x'; 256 * 1024];
    assert_eq!(
        c.cmd_bytes(&[b"SET", b"big", &big]),
        Value::Simple("OK".into())
    );
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(support::encode(&[b"GET", b"big"]));
        batch.extend(support::encode(&[b"ECHO", format!("{i}").as_bytes()]));
    }
    // 200 x 256 KiB = 50 MiB of replies to one write of requests.
    c.send_raw(&batch);
    for i in 0..200 {
        assert_eq!(c.read(), Some(Value::Bulk(big.clone())), "GET {i}");
        assert_eq!(c.read(), Some(Value::bulk(&i.to_string())), "ECHO {i}");
    }
}

/// A log destination that stops taking lines (a FIFO nobody reads) never slows requests
/// down: once the bounded queue is full, lines are dropped and counted in INFO.
#[test]
fn stuck_log_drops_lines_instead_of_blocking() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = TempDir::new("fifo");
    let fifo = dir.path("log.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // Hold the read end open without ever reading: the pipe fills and the writer blocks.
    const O_NONBLOCK: i32 = 0o4000;
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .expect("open fifo");
    let fifo_s = fifo.to_string_lossy().into_owned();
    let s = sessiond(&[
        "--logfile",
        &fifo_s,
        "--loglevel",
        "debug",
        "--log-buffer-lines",
        "50",
    ]);
    // Every protocol error logs a debug line: far more than pipe and queue hold.
    for _ in 0..1500 {
        let mut c = s.connect();
        c.send_raw(b"*1\r\n$x\r\n");
        assert!(matches!(c.read(), Some(Value::Error(_))));
    }
    let mut c = s.connect();
    assert_eq!(c.cmd(&["PING"]), Value::Simple("PONG".into()));
    let info = c.cmd(&["INFO", "server"]).as_str();
    let dropped: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("log_lines_dropped:"))
        .and_then(|v| v.parse().ok())
        .expect("log_lines_dropped in INFO server");
    assert!(
        dropped > 0,
        "no line dropped: the log cannot have been stuck"
    );
}

/// Logs written to standard error that is not a terminal (a file, a pipe, journald) carry no
/// ANSI colour codes.
#[test]
fn logs_to_a_file_through_stderr_have_no_colour_codes() {
    let dir = TempDir::new("ansi");
    let log = dir.path("stderr.log");
    let mut s = support::start_custom("sh", "ansi", |port, data| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "exec '{}' serve --listen 127.0.0.1:{port} --dir '{}' 2>'{}'",
            sessiond_bin(),
            data.0.display(),
            log.display()
        ));
        c
    });
    let mut c = s.connect();
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "timeout", "0"]),
        Value::Simple(_)
    ));
    drop(c);
    s.terminate();
    let text = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("ready"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        !text.contains(&0x1b),
        "ANSI escape in: {}",
        String::from_utf8_lossy(&text)
    );
}
