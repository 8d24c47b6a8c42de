//! The operator's console in a real browser: Debian's headless Chromium, driven by
//! playwright-core (tests/clients/console.js), against sessiond in migration mode under
//! load. Screenshots go to target/console-screenshots/ (test artifacts).
//!
//! Also, without a browser: the console's login and CSRF rules over plain HTTP.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::{redis_server, sessiond, Value};

const TOKEN: &str = "console-test-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start(admin: &str, old_port: u16) -> support::Proc {
    sessiond(&[
        "--migrate-from",
        &format!("redis://127.0.0.1:{old_port}"),
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "dualwrite",
        "--admin-listen",
        admin,
        "--admin-token",
        TOKEN,
    ])
}

#[test]
fn an_operator_uses_the_console_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules = root().join("target/clients/node/node_modules");
    for need in [PathBuf::from(&chromium), modules.join("playwright-core")] {
        assert!(
            need.exists(),
            "{} is missing: run the README's test command (scripts/test), which installs it",
            need.display()
        );
    }
    let old = redis_server(&[]);
    let admin = format!("127.0.0.1:{}", support::free_port());
    let s = start(&admin, old.port);
    let key = "PHPREDIS_SESSION:console-test";
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["SETEX", key, "600", "secret-session-data"]),
        Value::Simple("OK".into())
    );

    // Load for the dashboard while the browser runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let mut c = s.connect();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("PHPREDIS_SESSION:load{}", i % 100);
                c.cmd(&["SETEX", &k, "600", "v"]);
                c.cmd(&["GET", &k]);
                i += 1;
            }
        })
    };
    let shots = root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let out = Command::new("node")
        .arg(root().join("tests/clients/console.js"))
        .arg(format!("http://{admin}"))
        .arg(TOKEN)
        .arg(key)
        .arg(&shots)
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console.js failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON from console.js");
    assert_eq!(
        v["console_errors"],
        serde_json::json!([]),
        "JavaScript console errors"
    );
    // What the browser did, seen from the data side and the audit log.
    assert_eq!(
        c.cmd(&["EXISTS", key]),
        Value::Int(0),
        "the session was logged out"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "migrate-stage"]),
        Value::Array(vec![Value::bulk("migrate-stage"), Value::bulk("dualwrite")])
    );
    let audit = std::fs::read_to_string(s.dir.0.join("audit.log")).expect("audit.log");
    assert!(audit.contains("\"to\":\"shadow 50%\""), "{audit}");
    assert!(audit.contains("session logout"), "{audit}");
    assert!(
        !audit.contains("console-test"),
        "the session id is hashed: {audit}"
    );
    for shot in [
        "01-login",
        "02-dashboard",
        "03-migration-confirm",
        "06-session",
        "07-audit",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}

/// One HTTP/1.1 request; the status, headers and body.
fn http(admin: &str, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(admin).expect("connect admin");
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Logs in to the console with the token: the session cookie (`name=value`).
fn login(admin: &str) -> String {
    let body = format!("{{\"token\":\"{TOKEN}\"}}");
    let (_, head, _) = http(
        admin,
        &format!(
            "POST /console/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.trim().split(';').next())
        .expect("cookie")
        .to_string()
}

#[test]
fn console_login_sets_a_strict_cookie_and_changes_need_the_csrf_token() {
    let old = redis_server(&[]);
    let admin = format!("127.0.0.1:{}", support::free_port());
    let _s = start(&admin, old.port);
    let post = |path: &str, body: &str, extra: &str| {
        http(
            &admin,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let (status, _, _) = post("/console/login", "{\"token\":\"wrong\"}", "");
    assert_eq!(status, 401);
    let (status, head, _) = post("/console/login", &format!("{{\"token\":\"{TOKEN}\"}}"), "");
    assert_eq!(status, 200);
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie_line.contains(attr), "{cookie_line}");
    }
    assert!(!cookie_line.contains(TOKEN), "the token is not the cookie");
    let cookie = cookie_line
        .split_once(':')
        .map(|(_, v)| v.trim())
        .and_then(|v| v.split(';').next())
        .expect("cookie value")
        .to_string();
    // The CSRF token, readable by a same-origin script.
    let (status, _, body) = http(
        &admin,
        &format!("GET /console/api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"),
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    let change = "{\"stage\":\"shadow\"}";
    let put = |extra: &str| {
        http(
            &admin,
            &format!(
                "PUT /console/api/migration HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{change}",
                change.len()
            ),
        )
    };
    assert_eq!(put("").0, 401, "no cookie");
    assert_eq!(
        put(&format!("Cookie: {cookie}\r\n")).0,
        403,
        "cookie without CSRF"
    );
    assert_eq!(
        put(&format!("Cookie: {cookie}\r\nX-CSRF-Token: nope\r\n")).0,
        403
    );
    let (status, _, body) = put(&format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"stage\":\"shadow\""), "{body}");
    // The page may not be framed and loads nothing from elsewhere.
    let (_, head, _) = http(
        &admin,
        "GET /console/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
}

/// The upstream page's data in gateway mode: the node, its role and health, and a
/// timeline that records an ejection when the node dies.
#[test]
fn the_console_shows_the_upstream_topology_and_its_timeline() {
    let mut r = redis_server(&[]);
    let admin = format!("127.0.0.1:{}", support::free_port());
    let _s = sessiond(&[
        "--upstream",
        &format!("redis://127.0.0.1:{}", r.port),
        "--upstream-health-interval-ms",
        "100",
        "--admin-listen",
        &admin,
        "--admin-token",
        TOKEN,
    ]);
    let cookie = login(&admin);
    let upstream = || {
        let (status, _, body) = http(
            &admin,
            &format!("GET /console/api/upstream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(body.trim()).expect("JSON")
    };
    let v = upstream();
    let node = format!("127.0.0.1:{}", r.port);
    assert_eq!(v["nodes"][0]["addr"], node.as_str(), "{v}");
    assert_eq!(v["nodes"][0]["role"], "master");
    assert_eq!(v["nodes"][0]["healthy"], true);
    r.kill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = upstream();
        let ejected = v["timeline"].as_array().is_some_and(|t| {
            t.iter()
                .any(|e| e["event"].as_str().is_some_and(|e| e.contains("ejected")))
        });
        if ejected {
            assert_eq!(v["nodes"][0]["healthy"], false, "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ejection in the timeline: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A logout from the console is in the append-only log before the console reports it: the
/// server killed with SIGKILL right after the reply restarts without the session. (The
/// console's delete used to leave its log record in the buffer, which only the next
/// connection that wrote would write out; a crash before that brought the session back.)
#[test]
fn a_console_logout_survives_a_crash_right_after_it() {
    let dir = support::TempDir::new("console-logout");
    let admin = format!("127.0.0.1:{}", support::free_port());
    let args = ["--admin-listen", &admin, "--admin-token", TOKEN];
    let mut s = support::sessiond_in(&dir, &args);
    let key = "PHPREDIS_SESSION:crash-logout";
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["SET", key, "v", "EX", "600"]),
        Value::Simple("OK".into())
    );
    let cookie = login(&admin);
    let (status, _, body) = http(
        &admin,
        &format!("GET /console/api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    let (status, _, body) = http(
        &admin,
        &format!("DELETE /console/api/sessions?db=0&key={key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"deleted\":1"), "{body}");
    s.kill();
    let s = support::sessiond_in(&dir, &args);
    assert_eq!(
        s.connect().cmd(&["EXISTS", key]),
        Value::Int(0),
        "the logged-out session came back after a crash"
    );
}
