//! Shared integration-test harness: throwaway real servers on free loopback ports in temp
//! dirs, readiness polled with a deadline, every process killed when its guard drops, and a
//! raw RESP client that shows replies exactly as they came off the wire.

#![allow(dead_code)]

pub mod certs;
pub mod reloadable;
pub mod sentinel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A port nobody listens on right now. Chosen below Linux's ephemeral range (32768-60999),
/// so the many client connections tests open can never take it before the server binds it,
/// and spread by process id and a counter so parallel tests rarely pick the same one (a
/// collision is retried by [`start`]).
pub fn free_port() -> u16 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919);
    loop {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (base.wrapping_add(n.wrapping_mul(104_729)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("sessiond-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub name: &'static str,
    pub dir: TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn connect(&self) -> Conn {
        Conn::connect(self.port)
    }

    /// SIGKILL, and reap: a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (after SHUTDOWN).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`…) without waiting.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.child.id()))
            .status();
        assert!(st.is_ok_and(|s| s.success()), "kill -{sig} {}", self.name);
    }

    /// Sends SIGTERM and waits for exit (graceful-shutdown tests).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // The shell's builtin `kill`: no dependency on procps being installed.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn require(bin: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output();
    match found {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!("{bin} is not installed: run the README's test command (scripts/test), which installs it"),
    }
}

/// Polls until `port` answers PING. `Err` with the process's stderr if it exited (a port
/// taken between choosing and binding it, typically).
fn wait_ready(child: &mut Child, port: u16, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("{name} exited before becoming ready ({st}): {err}"));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 64];
            // +PONG, or -NOAUTH when a password is set: either way something serves. It is
            // ours only if our child is still alive (checked on the next line).
            if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                if let Ok(None) = child.try_wait() {
                    return Ok(());
                }
                continue;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} not ready on port {port} within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Any server on a fresh port: `command` builds its command line for a port and temp dir.
/// `name` is the binary, checked to be installed first.
pub fn start_custom(
    name: &'static str,
    tag: &str,
    command: impl FnMut(u16, &TempDir) -> Command,
) -> Proc {
    require(name);
    start(name, tag, command)
}

/// Starts a server on a fresh port, retrying with another port if it fails to start.
fn start(name: &'static str, tag: &str, mut command: impl FnMut(u16, &TempDir) -> Command) -> Proc {
    let mut last = String::new();
    for _ in 0..5 {
        let dir = TempDir::new(tag);
        let port = free_port();
        let mut child = command(port, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        match wait_ready(&mut child, port, name) {
            Ok(()) => {
                return Proc {
                    child,
                    port,
                    name,
                    dir,
                }
            }
            Err(e) => last = e,
        }
    }
    panic!("{name} did not start after 5 attempts: {last}");
}

fn redis_command(bin: &str, port: u16, dir: &TempDir, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(&dir.0)
    .args(extra);
    c
}

pub fn redis_server(extra: &[&str]) -> Proc {
    let bin = require("redis-server");
    start("redis-server", "redis", |port, dir| {
        redis_command(&bin, port, dir, extra)
    })
}

/// The Redis 8 that `scripts/redis8` unpacks under target/redis8 (Debian 13's build, run by
/// its own loader): the oracle for commands newer than Debian 12's redis-server 7.0.
pub fn redis8_bin() -> String {
    let bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis8/bin/redis-server");
    assert!(
        bin.exists(),
        "{} is missing: run the README's test command (scripts/test), which fetches it with scripts/redis8",
        bin.display()
    );
    bin.to_string_lossy().into_owned()
}

/// A throwaway Redis 8 (see [`redis8_bin`]).
pub fn redis8_server(extra: &[&str]) -> Proc {
    let bin = redis8_bin();
    start("redis-server", "redis8", |port, dir| {
        redis_command(&bin, port, dir, extra)
    })
}

/// redis-server on a given port (one chosen earlier, e.g. for a gateway started first).
pub fn redis_server_on(port: u16, extra: &[&str]) -> Proc {
    let bin = require("redis-server");
    let dir = TempDir::new("redis");
    let mut child = redis_command(&bin, port, &dir, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
    if let Err(e) = wait_ready(&mut child, port, "redis-server") {
        panic!("redis-server on port {port}: {e}");
    }
    Proc {
        child,
        port,
        name: "redis-server",
        dir,
    }
}

/// `sessiond migrate ARGS…`, not yet run.
#[allow(dead_code)]
pub fn migrate_cmd(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(sessiond_bin());
    c.arg("migrate").args(args);
    c
}

/// The sessions a backfill's checkpoint file counts as seen (0 before it exists).
#[allow(dead_code)]
pub fn checkpoint_seen(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["seen"].as_u64())
        .unwrap_or(0)
}

/// A backfill interrupted half-way: starts `sessiond migrate backfill ARGS… --rate RATE`,
/// waits (polled) until its checkpoint counts at least `seen` sessions, and kills it with
/// SIGKILL. Returns what the checkpoint counted then.
#[allow(dead_code)]
pub fn backfill_killed_after(
    args: &[&str],
    rate: &str,
    checkpoint: &std::path::Path,
    seen: u64,
) -> u64 {
    let mut first = migrate_cmd(&["backfill"])
        .args(args)
        .args(["--rate", rate])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("backfill");
    let deadline = Instant::now() + DEADLINE;
    while checkpoint_seen(checkpoint) < seen {
        assert!(Instant::now() < deadline, "backfill made no progress");
        assert!(
            first.try_wait().expect("wait").is_none(),
            "backfill ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = first.kill();
    let _ = first.wait();
    checkpoint_seen(checkpoint)
}

/// Runs a command that must succeed (`ok`) or fail (`!ok`): its standard output.
#[allow(dead_code)]
pub fn report_of(cmd: &mut std::process::Command, ok: bool) -> String {
    let out = cmd.output().expect("run");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.success(),
        ok,
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

pub fn sessiond_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sessiond")
}

pub fn sessiond(extra: &[&str]) -> Proc {
    sessiond_with_env(extra, &[])
}

/// sessiond with extra arguments and environment variables. Its data directory is the
/// process's temp dir unless `extra` names one with `--dir`.
pub fn sessiond_with_env(extra: &[&str], env: &[(&str, &str)]) -> Proc {
    start("sessiond", "sessiond", |port, dir| {
        let mut c = Command::new(sessiond_bin());
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        if !extra.contains(&"--dir") {
            c.arg("--dir").arg(&dir.0);
        }
        c.args(extra)
            .env_remove("SESSIOND_CONFIG")
            .env_remove("SESSIOND_DIR");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    })
}

/// A server with a second port (its TLS port) beside the one readiness is polled on, both
/// chosen afresh on every attempt: a second port taken meanwhile is retried like a taken
/// first one. `command` gets (port, second port, dir); the second port is returned.
pub fn start_with_second_port(
    name: &'static str,
    tag: &str,
    mut command: impl FnMut(u16, u16, &TempDir) -> Command,
) -> (Proc, u16) {
    let second = std::cell::Cell::new(0u16);
    let p = start(name, tag, |port, dir| {
        let t = free_port();
        second.set(t);
        command(port, t, dir)
    });
    (p, second.get())
}

/// sessiond with a second port (see [`start_with_second_port`]): `extra(second_port)` gives
/// its arguments beyond `serve --listen … --dir …`.
pub fn sessiond_with_second_port(extra: impl Fn(u16) -> Vec<String>) -> (Proc, u16) {
    start_with_second_port("sessiond", "sessiond", |port, second, dir| {
        let mut c = Command::new(sessiond_bin());
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--dir")
            .arg(&dir.0)
            .args(extra(second))
            .env_remove("SESSIOND_CONFIG")
            .env_remove("SESSIOND_DIR");
        c
    })
}

/// redis-server with a second port (see [`start_with_second_port`]).
pub fn redis_with_second_port(extra: impl Fn(u16) -> Vec<String>) -> (Proc, u16) {
    let bin = require("redis-server");
    start_with_second_port("redis-server", "redis", |port, second, dir| {
        let args = extra(second);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        redis_command(&bin, port, dir, &refs)
    })
}

/// sessiond on the data directory `dir` (restart and crash tests).
pub fn sessiond_in(dir: &TempDir, extra: &[&str]) -> Proc {
    let d = dir.0.to_string_lossy().into_owned();
    let mut args = vec!["--dir", d.as_str()];
    args.extend_from_slice(extra);
    sessiond(&args)
}

/// Runs `sessiond serve` on `dir` expecting it to refuse to start; its output.
pub fn serve_refused(dir: &TempDir) -> std::process::Output {
    Command::new(sessiond_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--dir",
        ])
        .arg(&dir.0)
        .output()
        .expect("run sessiond")
}

/// One field of an INFO section, trimmed; empty if absent.
pub fn info_field(c: &mut Conn, section: &str, field: &str) -> String {
    let info = c.cmd(&["INFO", section]).as_str();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// A reply, as parsed from the wire (RESP2 and RESP3).
#[derive(Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    NullArray,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Verbatim(String, Vec<u8>),
    Double(String),
    Bool(bool),
    Big(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "+{s}"),
            Value::Error(s) => write!(f, "-{s}"),
            Value::Int(i) => write!(f, ":{i}"),
            Value::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Null => write!(f, "(nil)"),
            Value::NullArray => write!(f, "(nil-array)"),
            Value::Array(v) => f.debug_list().entries(v).finish(),
            Value::Set(v) => write!(f, "set{:?}", v),
            Value::Map(v) => f
                .debug_map()
                .entries(v.iter().map(|(k, v)| (k, v)))
                .finish(),
            Value::Verbatim(t, b) => write!(f, "={t}:{:?}", String::from_utf8_lossy(b)),
            Value::Double(d) => write!(f, ",{d}"),
            Value::Bool(b) => write!(f, "#{b}"),
            Value::Big(b) => write!(f, "({b}"),
        }
    }
}

impl Value {
    pub fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    /// Same type and same shape, values ignored (for replies that legitimately differ).
    pub fn same_shape(&self, other: &Value) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Verbatim(_, b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> String {
        match self {
            Value::Simple(s) | Value::Error(s) => s.clone(),
            Value::Bulk(b) | Value::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
            Value::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// A blocking RESP connection for tests.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

impl Conn {
    pub fn connect(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.set_nodelay(true);
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    pub fn send_raw(&mut self, data: &[u8]) {
        self.writer.write_all(data).expect("write");
    }

    pub fn cmd(&mut self, args: &[&str]) -> Value {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd_bytes(&a)
    }

    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Value {
        self.send_raw(&encode(args));
        self.read().expect("reply")
    }

    /// A command that may meet a closed connection: `None` if it did.
    pub fn try_cmd(&mut self, args: &[&str]) -> Option<Value> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.writer.write_all(&encode(&a)).ok()?;
        self.read()
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub fn read(&mut self) -> Option<Value> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        assert!(
            line.ends_with(b"\r\n"),
            "reply line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        );
        let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let num = || body.parse::<i64>().expect("length");
        Some(match line[0] {
            b'+' => Value::Simple(body),
            b'-' => Value::Error(body),
            b':' => Value::Int(num()),
            b',' => Value::Double(body),
            b'(' => Value::Big(body),
            b'#' => Value::Bool(body == "t"),
            b'_' => Value::Null,
            b'$' if num() < 0 => Value::Null,
            b'*' if num() < 0 => Value::NullArray,
            b'$' | b'=' => {
                let mut buf = vec![0u8; num() as usize + 2];
                self.reader.read_exact(&mut buf).ok()?;
                buf.truncate(buf.len() - 2);
                if line[0] == b'=' {
                    let data = buf.split_off(4);
                    Value::Verbatim(String::from_utf8_lossy(&buf[..3]).into_owned(), data)
                } else {
                    Value::Bulk(buf)
                }
            }
            b'*' | b'~' | b'>' => {
                let items = (0..num())
                    .map(|_| self.read())
                    .collect::<Option<Vec<_>>>()?;
                if line[0] == b'~' {
                    Value::Set(items)
                } else {
                    Value::Array(items)
                }
            }
            b'%' => {
                let mut pairs = Vec::new();
                for _ in 0..num() {
                    pairs.push((self.read()?, self.read()?));
                }
                Value::Map(pairs)
            }
            other => panic!("unknown reply type {:?}", other as char),
        })
    }

    /// True if the server has closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}

pub fn sorted(v: Value) -> Value {
    match v {
        Value::Array(items) | Value::Set(items) => {
            let mut items: Vec<Value> = items.into_iter().map(sorted).collect();
            items.sort_by_key(|a| format!("{a:?}"));
            Value::Array(items)
        }
        other => other,
    }
}

/// One command of a differential script: line number, comparison mode (`=` exact, `~` same
/// shape, `@` same when sorted), the line's text and its arguments.
pub struct ScriptLine {
    pub lineno: usize,
    pub mode: char,
    pub text: String,
    pub args: Vec<Vec<u8>>,
}

/// The commands of a script in tests/scripts.
pub fn script_lines(name: &str) -> Vec<ScriptLine> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("script");
    let mut out = Vec::new();
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mode, cmd) = match line.split_at(2) {
            ("~ ", rest) => ('~', rest),
            ("@ ", rest) => ('@', rest),
            _ => ('=', line),
        };
        let args = sessiond::resp::parse::split_args(cmd.as_bytes()).expect("script line parses");
        out.push(ScriptLine {
            lineno: lineno + 1,
            mode,
            text: cmd.to_string(),
            args,
        });
    }
    out
}

/// Runs a differential script (tests/scripts) on both servers; returns the mismatches as readable lines.
pub fn run_script(name: &str, redis: &mut Conn, ours: &mut Conn) -> Vec<String> {
    let mut failures = Vec::new();
    for ScriptLine {
        lineno,
        mode,
        text: cmd,
        args,
    } in script_lines(name)
    {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let expected = redis.cmd_bytes(&argv);
        let got = ours.cmd_bytes(&argv);
        let same = match mode {
            '~' => expected.same_shape(&got),
            '@' => sorted(expected.clone()) == sorted(got.clone()),
            _ => expected == got,
        };
        if !same {
            failures.push(format!(
                "{name}:{lineno}: {cmd}\n    redis:    {expected:?}\n    sessiond: {got:?}"
            ));
        }
    }
    failures
}

/// A Redis Cluster of three primaries on fresh ports (`redis-cli --cluster create`), every
/// node reporting `cluster_state:ok`.
pub fn redis_cluster() -> Vec<Proc> {
    let nodes: Vec<Proc> = (0..3)
        .map(|_| redis_server(&["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]))
        .collect();
    let mut args = vec!["--cluster".to_string(), "create".to_string()];
    args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let out = Command::new(require("redis-cli"))
        .args(&args)
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_cluster_ok(&nodes);
    nodes
}

/// Polls every node until it reports `cluster_state:ok`.
pub fn wait_cluster_ok(nodes: &[Proc]) {
    for n in nodes {
        let mut c = n.connect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c
            .cmd(&["CLUSTER", "INFO"])
            .as_str()
            .contains("cluster_state:ok")
        {
            assert!(Instant::now() < deadline, "cluster_state:ok on every node");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A redis-sentinel watching `primary_port` as master `master`, with quorum `quorum`.
pub fn redis_sentinel(primary_port: u16, master: &str, quorum: u32) -> Proc {
    let master = master.to_string();
    start_custom("redis-sentinel", "sentinel", move |port, dir| {
        let conf = dir.path("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {master} 1000\n\
                 sentinel failover-timeout {master} 5000\n\
                 sentinel parallel-syncs {master} 2\n",
                dir.0.display()
            ),
        )
        .expect("sentinel.conf");
        let mut c = Command::new("redis-sentinel");
        c.arg(conf);
        c
    })
}
