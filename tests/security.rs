//! A server reachable by strangers: password guessing, protected mode applied to the live
//! settings, and CONFIG SET that changes all or nothing. Each test failed before its fix.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::{encode, sessiond, Conn, TempDir, Value};

/// A connection from 127.0.0.2: loopback traffic, but not a local client by Redis's rule
/// (only 127.0.0.1, ::1 and the unix socket are), so protected mode applies to it.
fn remote(port: u16) -> Conn {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        sock.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    });
    let s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Conn {
        reader: std::io::BufReader::new(s.try_clone().unwrap()),
        writer: s,
    }
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn is_denied(v: Option<Value>) -> bool {
    matches!(v, Some(Value::Error(e)) if e.starts_with("DENIED "))
}

/// One connection pipelining wrong passwords: it gets Redis's WRONGPASS, ten times, slower
/// each time, then the connection is closed; the log gets one line per address per 10 s.
/// Before: ~300k answers a second on one connection and a log line for each.
#[test]
fn password_guessing_is_slowed_cut_off_and_logged_once_per_window() {
    let dir = TempDir::new("authflood");
    let log = dir.path("sessiond.log");
    let log_s = log.to_string_lossy().into_owned();
    let s = sessiond(&["--requirepass", "right", "--logfile", &log_s]);
    let mut c = s.connect();
    let mut burst = Vec::new();
    for i in 0..50 {
        burst.extend_from_slice(&encode(&[b"AUTH", format!("guess{i}").as_bytes()]));
    }
    c.send_raw(&burst);
    let mut wrongpass = 0;
    while let Some(v) = c.read() {
        assert_eq!(
            v,
            Value::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
        );
        wrongpass += 1;
    }
    assert_eq!(wrongpass, 10, "closed after ten failures");
    // A new connection with the right password still works: guessing locks nobody out.
    let mut good = s.connect();
    assert_eq!(good.cmd(&["AUTH", "right"]), ok());
    assert!(matches!(good.cmd(&["AUTH", "wrong"]), Value::Error(_)));
    // The window's summary: one line for the address, none per attempt.
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("failed AUTH from 127.0.0.1") {
            break text;
        }
        assert!(Instant::now() < deadline, "no summary line: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("AUTH")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("11 failed AUTH from 127.0.0.1 in the last 10 s"),
        "{lines:?}"
    );
}

/// Protected mode follows the live settings: removing the password keeps remote clients
/// out (DENIED) instead of opening the server to them, turning protected mode on takes
/// effect at once, and a local client opened while a password was set is let in once it is
/// removed. Before: `CONFIG SET requirepass ""` left the server open to every address and
/// `CONFIG SET protected-mode yes` did nothing.
#[test]
fn protected_mode_applies_to_the_live_password_and_setting() {
    let s = sessiond(&["--requirepass", "pw"]);
    let mut r1 = remote(s.port);
    assert_eq!(
        r1.cmd(&["PING"]),
        Value::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(r1.cmd(&["AUTH", "pw"]), ok());
    let mut r2 = remote(s.port); // remote, never authenticated
    let mut l1 = s.connect(); // local, never authenticated
    assert_eq!(
        l1.cmd(&["PING"]),
        Value::Error("NOAUTH Authentication required.".into())
    );

    let mut admin = s.connect();
    assert_eq!(admin.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(admin.cmd(&["CONFIG", "SET", "requirepass", ""]), ok());

    // No password now: remote clients are refused, at connect and on open connections.
    let mut r3 = remote(s.port);
    assert!(is_denied(r3.read()), "a new remote connection is refused");
    assert!(r3.read().is_none(), "…and closed");
    r2.send_raw(&encode(&[b"PING"]));
    assert!(is_denied(r2.read()));
    // What authenticated before keeps working; a local client is let in.
    assert_eq!(r1.cmd(&["PING"]), Value::Simple("PONG".into()));
    assert_eq!(l1.cmd(&["PING"]), Value::Simple("PONG".into()));

    // Protected mode off: remote clients may connect without a password; on again: not.
    assert_eq!(admin.cmd(&["CONFIG", "SET", "protected-mode", "no"]), ok());
    assert_eq!(remote(s.port).cmd(&["PING"]), Value::Simple("PONG".into()));
    assert_eq!(admin.cmd(&["CONFIG", "SET", "protected-mode", "yes"]), ok());
    let mut r5 = remote(s.port);
    assert!(is_denied(r5.read()));
    let mut rest = Vec::new();
    let _ = r5.reader.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

/// CONFIG SET with several parameters checks them all before changing any (Redis 7).
#[test]
fn config_set_is_all_or_nothing() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    let get = |c: &mut Conn, p: &str| match c.cmd(&["CONFIG", "GET", p]) {
        Value::Array(v) => v[1].as_str(),
        v => panic!("{v:?}"),
    };
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "timeout", "5", "maxclients", "x"]),
        Value::Error(e) if e.contains("'maxclients'")
    ));
    assert_eq!(get(&mut c, "timeout"), "0", "nothing changed");
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "maxclients", "0"]),
        Value::Error(e) if e.contains("between 1 and")
    ));
    assert_eq!(get(&mut c, "maxclients"), "10000");
    assert!(matches!(
        c.cmd(&["CONFIG", "SET", "timeout", "5", "timeout", "6"]),
        Value::Error(e) if e.contains("duplicate parameter")
    ));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "timeout", "5", "maxclients", "50"]),
        ok()
    );
    assert_eq!(get(&mut c, "timeout"), "5");
    assert_eq!(get(&mut c, "maxclients"), "50");
}
