//! TLS for clients (issue #16): real clients (redis-cli --tls, Python's ssl module, redis-py
//! with ssl=True) against sessiond's TLS port; plain TCP to that port gets nothing; client
//! certificates that are expired, from another CA or missing are refused; a certificate
//! reloaded on SIGHUP reaches new connections while an open one keeps working; a client
//! certificate's Common Name can name the ACL user; protocol versions are enforced.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::Certs;
use support::{sessiond, Proc, DEADLINE};

/// sessiond with a TLS port (auth-clients as given) next to its plain one.
fn tls_sessiond(c: &Certs, extra: &[&str]) -> (Proc, u16) {
    let (cert, key, ca) = (c.arg("server.crt"), c.arg("server.key"), c.arg("ca.crt"));
    let (s, port) = support::sessiond_with_second_port(|tport| {
        let mut args: Vec<String> = vec![
            "--tls-port".into(),
            tport.to_string(),
            "--tls-cert-file".into(),
            cert.clone(),
            "--tls-key-file".into(),
            key.clone(),
            "--tls-ca-cert-file".into(),
            ca.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    });
    wait_listening(port);
    (s, port)
}

/// The TLS arguments a redis-server (or sentinel) takes, with its TLS port.
fn redis_tls_args(c: &Certs, tport: u16, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--tls-port".into(),
        tport.to_string(),
        "--tls-cert-file".into(),
        c.arg("server.crt"),
        "--tls-key-file".into(),
        c.arg("server.key"),
        "--tls-ca-cert-file".into(),
        c.arg("ca.crt"),
    ];
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS port {port} not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// redis-cli over TLS with a client certificate (`None`: none); its stdout, or Err with
/// what it printed when it failed.
fn cli(c: &Certs, port: u16, client: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["--tls", "--cacert", &c.arg("ca.crt"), "-h", "127.0.0.1"])
        .args(["-p", &port.to_string()]);
    if let Some(name) = client {
        cmd.args(["--cert", &c.arg(&format!("{name}.crt"))])
            .args(["--key", &c.arg(&format!("{name}.key"))]);
    }
    let out = cmd.args(args).output().expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let error_reply = ["ERR", "NOPERM", "NOAUTH", "WRONGPASS", "DENIED"]
        .iter()
        .any(|code| text.starts_with(code));
    if out.status.success() && !error_reply && !text.contains("Could not") {
        Ok(text)
    } else {
        Err(format!("{text} {err}"))
    }
}

#[test]
fn redis_cli_and_redis_py_over_tls() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let (s, port) = tls_sessiond(&c, &[]);
    assert_eq!(cli(&c, port, Some("app"), &["PING"]), Ok("PONG".into()));
    assert_eq!(
        cli(&c, port, Some("app"), &["SET", "sess:1", "v"]),
        Ok("OK".into())
    );
    // The same data on the plain port.
    let mut plain = s.connect();
    assert_eq!(plain.cmd(&["GET", "sess:1"]), support::Value::bulk("v"));
    // redis-py, ssl=True.
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients/venv/bin/python");
    assert!(python.exists(), "run scripts/test: it installs redis-py");
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{ca}', \
         ssl_certfile='{crt}', ssl_keyfile='{key}')\n\
         r.set('sess:py', 'x', ex=60)\n\
         print(r.get('sess:py').decode(), r.ttl('sess:py') > 0)\n",
        ca = c.arg("ca.crt"),
        crt = c.arg("app.crt"),
        key = c.arg("app.key"),
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "x True",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_tcp_to_the_tls_port_gets_no_reply() {
    let c = Certs::new();
    let (_s, port) = tls_sessiond(&c, &[]);
    let mut t = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    t.set_read_timeout(Some(DEADLINE)).expect("timeout");
    t.write_all(b"PING\r\n").expect("write");
    let mut buf = Vec::new();
    // The handshake fails: the server closes without ever answering in RESP.
    let _ = t.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("PONG"), "{buf:?}");
}

#[test]
fn client_certificates_expired_foreign_or_missing_are_refused() {
    let c = Certs::new();
    c.client("good", "app", "ca");
    c.ca("other");
    c.client("foreign", "app", "other");
    c.expired_client("expired", "app");
    let (_s, port) = tls_sessiond(&c, &[]);
    assert_eq!(cli(&c, port, Some("good"), &["PING"]), Ok("PONG".into()));
    for bad in [Some("foreign"), Some("expired"), None] {
        assert!(cli(&c, port, bad, &["PING"]).is_err(), "{bad:?} was let in");
    }
    // optional: no certificate is fine, a bad one still is not.
    let (_o, oport) = tls_sessiond(&c, &["--tls-auth-clients", "optional"]);
    assert_eq!(cli(&c, oport, None, &["PING"]), Ok("PONG".into()));
    assert!(cli(&c, oport, Some("expired"), &["PING"]).is_err());
    // no: no certificate asked for.
    let (_n, nport) = tls_sessiond(&c, &["--tls-auth-clients", "no"]);
    assert_eq!(cli(&c, nport, None, &["PING"]), Ok("PONG".into()));
}

/// A Python client holding one TLS connection: prints the server certificate's serial and
/// PONG, then answers PING again for each line on stdin.
const HOLDER: &str = r#"
import socket, ssl, sys
ca, crt, key, port = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="localhost")
def ping():
    s.sendall(b"PING\r\n")
    return s.recv(64).decode().strip()
print(s.getpeercert()["serialNumber"], ping(), flush=True)
for _ in sys.stdin:
    print(ping(), flush=True)
"#;

#[test]
fn a_certificate_reloaded_on_sighup_reaches_new_connections_only() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let (s, port) = tls_sessiond(&c, &[]);
    let args = [
        c.arg("ca.crt"),
        c.arg("app.crt"),
        c.arg("app.key"),
        port.to_string(),
    ];
    let mut held = Command::new("python3")
        .arg("-c")
        .arg(HOLDER)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(held.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("line").expect("read");
    let (serial, pong) = first.split_once(' ').expect("serial and reply");
    assert_eq!(pong, "+PONG");
    // Renew: a new certificate (new serial) in place of the old files, then SIGHUP.
    c.server("renewed");
    std::fs::copy(c.path("renewed.crt"), c.path("server.crt")).expect("copy");
    std::fs::copy(c.path("renewed.key"), c.path("server.key")).expect("copy");
    s.signal("HUP");
    let serial_now = || -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(HOLDER)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let deadline = Instant::now() + DEADLINE;
    while serial_now() == serial {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection opened before still works.
    let mut stdin = held.stdin.take().expect("stdin");
    writeln!(stdin).expect("write");
    assert_eq!(lines.next().expect("line").expect("read"), "+PONG");
    drop(stdin);
    let _ = held.wait();
    // A reload that fails (a key that does not match) keeps the working certificate.
    std::fs::copy(c.path("app.key"), c.path("server.key")).expect("copy");
    s.signal("HUP");
    assert_eq!(cli(&c, port, Some("app"), &["PING"]), Ok("PONG".into()));
}

#[test]
fn a_client_certificate_names_the_acl_user() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    c.client("nobody", "nobody", "ca");
    let (s, port) = tls_sessiond(
        &c,
        &["--tls-auth-clients-user", "CN", "--requirepass", "adminpw"],
    );
    let mut admin = s.connect();
    assert_eq!(
        admin.cmd(&["AUTH", "adminpw"]),
        support::Value::Simple("OK".into())
    );
    admin.cmd(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        "~sess:*",
        "+@read",
        "+@write",
        "+acl|whoami",
    ]);
    assert_eq!(
        cli(&c, port, Some("app"), &["ACL", "WHOAMI"]),
        Ok("app".into())
    );
    assert!(cli(&c, port, Some("app"), &["GET", "other"]).is_err_and(|e| e.contains("NOPERM")));
    // A CN that names no user: the connection is the default user's, which needs AUTH here.
    assert!(cli(&c, port, Some("nobody"), &["GET", "k"]).is_err_and(|e| e.contains("NOAUTH")));
}

#[test]
fn tls_protocols_are_enforced() {
    let c = Certs::new();
    let (_s, port) = tls_sessiond(
        &c,
        &["--tls-protocols", "TLSv1.3", "--tls-auth-clients", "no"],
    );
    let s_client = |flag: &str| -> bool {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), flag])
            .args(["-CAfile", &c.arg("ca.crt"), "-verify_return_error"])
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).contains("Verify return code: 0 (ok)")
            && out.status.success()
    };
    assert!(s_client("-tls1_3"));
    assert!(!s_client("-tls1_2"));
}

/// redis-server with a TLS port (client certificates required) beside its plain one.
fn tls_redis(c: &Certs) -> (Proc, u16) {
    let (r, tport) = support::redis_with_second_port(|t| redis_tls_args(c, t, &[]));
    wait_listening(tport);
    (r, tport)
}

fn tls_query(c: &Certs) -> String {
    format!(
        "tls-ca-cert-file={}&tls-cert-file={}&tls-key-file={}",
        c.arg("ca.crt"),
        c.arg("app.crt"),
        c.arg("app.key")
    )
}

/// The gateway reaches a redis-server over TLS only (`rediss://` with a client certificate):
/// plain commands, a transaction and a blocking pop (a pinned connection) all go through.
#[test]
fn the_gateway_reaches_a_tls_redis_server() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let (r, tport) = tls_redis(&c);
    let url = format!("rediss://127.0.0.1:{tport}?{}", tls_query(&c));
    let s = sessiond(&["--upstream", &url]);
    let mut g = s.connect();
    use support::Value;
    assert_eq!(g.cmd(&["SET", "sess:tls", "v"]), Value::Simple("OK".into()));
    assert_eq!(g.cmd(&["HSET", "h", "f", "1"]), Value::Int(1));
    assert_eq!(g.cmd(&["MULTI"]), Value::Simple("OK".into()));
    g.cmd(&["INCR", "n"]);
    assert_eq!(g.cmd(&["EXEC"]), Value::Array(vec![Value::Int(1)]));
    assert_eq!(g.cmd(&["RPUSH", "q", "x"]), Value::Int(1));
    assert_eq!(
        g.cmd(&["BLPOP", "q", "1"]),
        Value::Array(vec![Value::bulk("q"), Value::bulk("x")])
    );
    // It is on the server (read on its plain port).
    assert_eq!(r.connect().cmd(&["GET", "sess:tls"]), Value::bulk("v"));
    // Without a client certificate the server refuses the gateway's connections.
    let bad = format!(
        "rediss://127.0.0.1:{tport}?tls-ca-cert-file={}",
        c.arg("ca.crt")
    );
    let s2 = sessiond(&["--upstream", &bad]);
    assert!(matches!(
        s2.connect().cmd(&["GET", "sess:tls"]),
        Value::Error(_)
    ));
}

/// A Sentinel set spoken to over TLS (`rediss+sentinel://`): the sentinel watches the
/// primary's TLS port, and sessiond asks it, then reaches the primary, over TLS.
#[test]
fn the_gateway_follows_a_tls_sentinel_set() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let (r, tport) = tls_redis(&c);
    let (cert, key, ca) = (c.arg("server.crt"), c.arg("server.key"), c.arg("ca.crt"));
    let sentinel_bin = "redis-sentinel";
    let (sentinel, stport) =
        support::start_with_second_port(sentinel_bin, "sentinel-tls", |port, stport, dir| {
            let conf = dir.path("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\ntls-port {stport}\ntls-cert-file {cert}\n\
                     tls-key-file {key}\ntls-ca-cert-file {ca}\ntls-replication yes\n\
                     sentinel monitor m 127.0.0.1 {tport} 1\n",
                    dir.0.display()
                ),
            )
            .expect("sentinel.conf");
            let mut cmd = Command::new(sentinel_bin);
            cmd.arg(conf);
            cmd
        });
    wait_listening(stport);
    let url = format!("rediss+sentinel://127.0.0.1:{stport}/m?{}", tls_query(&c));
    let s = sessiond(&["--upstream", &url]);
    let mut g = s.connect();
    use support::Value;
    assert_eq!(g.cmd(&["SET", "sess:s", "v"]), Value::Simple("OK".into()));
    assert_eq!(r.connect().cmd(&["GET", "sess:s"]), Value::bulk("v"));
    drop(sentinel);
}

/// The admin API and console over HTTPS (`--admin-tls-cert-file`), the console's cookie then
/// `Secure`; plain HTTP to it gets nothing; a non-loopback admin address without TLS is
/// refused at start unless explicitly waived.
#[test]
fn the_admin_api_over_https() {
    let c = Certs::new();
    let (cert, key) = (c.arg("server.crt"), c.arg("server.key"));
    let (_s, aport) = support::sessiond_with_second_port(|aport| {
        [
            "--admin-listen",
            &format!("127.0.0.1:{aport}"),
            "--admin-token",
            "tok",
            "--admin-tls-cert-file",
            &cert,
            "--admin-tls-key-file",
            &key,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    });
    wait_listening(aport);
    let curl = |args: &[&str]| -> (bool, String) {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let url = format!("https://127.0.0.1:{aport}");
    let (ok, text) = curl(&[
        "--cacert",
        &c.arg("ca.crt"),
        "-H",
        "Authorization: Bearer tok",
        &format!("{url}/metrics"),
    ]);
    assert!(ok && text.starts_with("HTTP/1.1 200"), "{text}");
    let (ok, text) = curl(&[
        "--cacert",
        &c.arg("ca.crt"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"token":"tok"}"#,
        &format!("{url}/console/login"),
    ]);
    assert!(ok, "{text}");
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {text}"));
    assert!(cookie.contains("; Secure;"), "{cookie}");
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{aport}/metrics")]);
    assert!(!ok, "plain HTTP was answered");
    // A non-loopback admin address without TLS: refused before anything listens.
    let dir = support::TempDir::new("admin-plain");
    let out = Command::new(support::sessiond_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "tok"])
        .args(["--admin-listen", "0.0.0.0:0", "--dir"])
        .arg(&dir.0)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("TLS"),
        "{err}"
    );
}

/// A client from another address (bound to 127.0.0.2, which protected mode does not count
/// as local) is refused without a password over plain TCP, but let in over TLS with a
/// verified client certificate: the certificate is its credential.
#[test]
fn protected_mode_counts_a_verified_tls_client_as_authenticated() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let (s, port) = tls_sessiond(&c, &[]);
    let script = r#"
import socket, ssl, sys
ca, crt, key, plain, tls = sys.argv[1:6]
def sock(port):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", int(port)))
    return s
p = sock(plain)
p.sendall(b"PING\r\n")
print(p.recv(200).decode().split(" ")[0].strip())
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
t = ctx.wrap_socket(sock(tls), server_hostname="localhost")
t.sendall(b"PING\r\n")
print(t.recv(64).decode().strip())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .args([c.arg("ca.crt"), c.arg("app.crt"), c.arg("app.key")])
        .args([s.port.to_string(), port.to_string()])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "-DENIED\n+PONG",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Redis Cluster over TLS (`tls-cluster yes`, `rediss+cluster://`): discovery and every
/// node's connections speak TLS; keys spread over the three primaries.
#[test]
fn the_gateway_reaches_a_tls_cluster() {
    let c = Certs::new();
    c.client("app", "app", "ca");
    let ca = c.arg("ca.crt");
    let mut nodes = Vec::new();
    let mut tls_ports = Vec::new();
    for _ in 0..3 {
        let (node, tport) = support::redis_with_second_port(|t| {
            redis_tls_args(
                &c,
                t,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "5000",
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ],
            )
        });
        wait_listening(tport);
        nodes.push(node);
        tls_ports.push(tport);
    }
    let mut args: Vec<String> = ["--tls", "--cacert", &ca, "--cert", &c.arg("app.crt")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "--key".into(),
        c.arg("app.key"),
        "--cluster".into(),
        "create".into(),
    ]);
    args.extend(tls_ports.iter().map(|p| format!("127.0.0.1:{p}")));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let out = Command::new("redis-cli")
        .args(&args)
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    support::wait_cluster_ok(&nodes);
    let seeds: Vec<String> = tls_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!("rediss+cluster://{}?{}", seeds.join(","), tls_query(&c));
    let s = sessiond(&["--upstream", &url]);
    let mut g = s.connect();
    use support::Value;
    for i in 0..30 {
        let k = format!("sess:{i}");
        assert_eq!(g.cmd(&["SET", &k, "v"]), Value::Simple("OK".into()));
    }
    for i in 0..30 {
        assert_eq!(g.cmd(&["GET", &format!("sess:{i}")]), Value::bulk("v"));
    }
    // Spread: every primary holds some of them (counted on their plain ports).
    for n in &nodes {
        let Value::Int(keys) = n.connect().cmd(&["DBSIZE"]) else {
            panic!("DBSIZE")
        };
        assert!(keys > 0, "a primary holds none of the 30 keys");
    }
}
