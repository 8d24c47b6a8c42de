//! `redis-cli` against sessiond: interactive use (under a pseudo-terminal, as a person types
//! it), scripted use on stdin, and `--pipe` mass insertion. Interactive and scripted output
//! is compared with the same session against a real redis-server.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{redis_server, sessiond, Value};

const SESSION: &str = "SET sess:1 \"hello world\" EX 3600\nGET sess:1\nTTL sess:1\nEXISTS sess:1 nope\nSCAN 0\nGETDEL sess:1\nGET sess:1\nDEL sess:1\nINCRBY n 5\nMGET n nope\nNOSUCH cmd\nSET\nHELLO 3\nGET n\nCONFIG GET maxmemory\n";

/// Runs redis-cli with `input` on stdin. With `tty`, under `script` so redis-cli believes a
/// person is typing (TERM=dumb keeps linenoise in plain line mode).
fn cli(port: u16, input: &str, tty: bool, extra: &[&str]) -> String {
    let mut cmd = if tty {
        let mut c = Command::new("script");
        let line = format!("redis-cli -p {port} {}", extra.join(" "));
        c.args(["-qec", &line, "/dev/null"]).env("TERM", "dumb");
        c
    } else {
        let mut c = Command::new("redis-cli");
        c.args(["-p", &port.to_string()]).args(extra);
        c
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("redis-cli output");
    assert!(
        out.status.success(),
        "redis-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HELLO's server version and client id legitimately differ; everything else must not.
    String::from_utf8_lossy(&out.stdout)
        .replace(&port.to_string(), "PORT")
        .split('\n')
        .filter(|l| {
            !(l.contains("\"version\"")
                || l.contains("\"id\"")
                || l.starts_with("version ")
                || l.starts_with("id "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn interactive_session_matches_redis() {
    let (r, s) = (redis_server(&[]), sessiond(&[]));
    let input = format!("{SESSION}quit\n");
    let expected = cli(r.port, &input, true, &[]);
    let got = cli(s.port, &input, true, &[]);
    assert!(
        got.contains("127.0.0.1:PORT> \"hello world\""),
        "interactive prompt output:\n{got}"
    );
    assert_eq!(expected, got, "interactive redis-cli output differs");
}

#[test]
fn scripted_stdin_matches_redis() {
    let (r, s) = (redis_server(&[]), sessiond(&[]));
    let expected = cli(r.port, SESSION, false, &[]);
    let got = cli(s.port, SESSION, false, &[]);
    assert_eq!(expected, got);
}

#[test]
fn pipe_mass_insertion() {
    let s = sessiond(&[]);
    let n = 100_000;
    let mut proto = Vec::with_capacity(n * 80);
    for i in 0..n {
        let k = format!("PHPREDIS_SESSION:{i:026}");
        let v = format!("user|s:{}:\"u{i}\";", i.to_string().len() + 1);
        proto.extend(support::encode(&[
            b"SETEX",
            k.as_bytes(),
            b"3600",
            v.as_bytes(),
        ]));
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &s.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli --pipe");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&proto)
        .expect("write");
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "--pipe failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("errors: 0, replies: {n}")),
        "--pipe summary: {text}"
    );
    let mut c = s.connect();
    assert_eq!(c.cmd(&["DBSIZE"]), Value::Int(n as i64));
    let k = format!("PHPREDIS_SESSION:{:026}", 4242);
    assert_eq!(c.cmd(&["GET", &k]), Value::bulk("user|s:5:\"u4242\";"));
}
