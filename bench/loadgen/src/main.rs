//! Session-mix load generator: the same load against any Redis-protocol server.
//!
//! `loadgen mix HOST:PORT --clients 50 --seconds 10 --keys 100000 --value 512`
//!   Each client runs request/response (no pipelining, like a PHP worker): 80% GET,
//!   15% SETEX, 5% EXPIRE over a skewed key population (key = keys × u³, so a small set of
//!   sessions is hot), after populating every key. Latencies go into an HdrHistogram.
//! `loadgen fill HOST:PORT --keys 1000000 --value 100`
//!   Writes that many sessions (SETEX, pipelined) for memory measurements.
//!
//! `loadgen hashfill|hashmix HOST:PORT …`
//!   The same with sessions stored as hashes (Spring Session, ASP.NET Core): fill writes
//!   `HSET` with four fields; the mix is 70% HGETALL, 20% HSET of two fields, 10% PEXPIRE.
//! `loadgen springfill HOST:PORT --keys N --value BYTES --ttl S`
//!   Spring Session-shaped sessions for memory measurements: six fields (creation and
//!   access times, max inactive interval, a security context of `--value` bytes, a user
//!   name, a CSRF token) and a TTL, HSET + PEXPIRE pipelined.
//! `loadgen sessionhash HOST:PORT …`
//!   The hash-session mix of issue #12: 80% HGETALL, 15% HSET of two fields followed by
//!   PEXPIRE (pipelined, one sample), 5% DEL (a logout; the next HSET recreates it).
//! `loadgen zindex HOST:PORT …`
//!   Sorted-set index upkeep (an expiry index per principal): 60% ZADD of a session with its
//!   expiry time, 30% ZRANGEBYSCORE up to now LIMIT 0 10, 10% ZREM, over `--keys` indexes.
//! `loadgen multi HOST:PORT …`
//!   Each request is a pipelined transaction, as redis-py's `pipeline()` sends it:
//!   MULTI, HSET, PEXPIRE, EXEC (one latency sample per transaction).
//! `loadgen pipeline HOST:PORT …`
//!   The same four frames per round trip without a transaction, so a proxy without MULTI
//!   (nutcracker) can carry it: HSET, PEXPIRE, HGET, PTTL of one session, pipelined.
//! `loadgen lockscript HOST:PORT …`
//!   A lock cycle per request, pipelined: `SET lock token PX 30000`, then the lock release
//!   script by EVALSHA (the compare-and-delete phpredis, Laravel and Redlock send), over
//!   `--keys` locks chosen uniformly (1: one hot lock). `lockscript-lua`: the same cycle with
//!   a release script of the same meaning but another text (sessiond interprets it).
//! `loadgen ratelimit HOST:PORT …`
//!   A fixed-window rate limiter by EVALSHA (INCR, EXPIRE on the first hit, compare with the
//!   limit) over `--keys` counters chosen uniformly.
//! `loadgen block HOST:PORT --clients N --seconds S`
//!   N connections blocked in BLPOP on empty lists, held for S seconds (prints when ready).
//! `loadgen pubsub HOST:PORT --clients N --messages M`
//!   N subscribers of one channel, one publisher sending M messages 1 ms apart; prints when
//!   subscribed (then waits `--hold` seconds), then the delivery latencies.
//!
//! Prints one JSON object with ops, ops/s, p50/p99/p999 (µs) and errors. Single-threaded on
//! purpose: like redis-benchmark it uses one core, leaving the other to the server.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    clients: usize,
    seconds: u64,
    keys: u64,
    value: usize,
    ttl: u64,
    prefill: bool,
    /// First key index (so several populations can coexist).
    offset: u64,
    /// With `fill`: `SET k v PXAT <ms>` (all keys expire at the same instant) instead of SETEX.
    pxat: u64,
    /// Sessions as hashes (`hashfill`, `hashmix`).
    hash: bool,
    /// Spring Session-shaped hashes (`springfill`).
    spring: bool,
    /// `pubsub`: messages to publish, and seconds to hold the subscribers before.
    messages: u64,
    hold: u64,
    /// `fill`'s values: 0 the letter `v` repeated, 1 text that differs per key (printable
    /// ASCII), 2 bytes that differ per key (binary). A store that packs or compresses values
    /// can be measured on each.
    content: u64,
}

/// A `fill` value of `len` bytes for key `k` (see `Args::content`).
fn content(kind: u64, k: u64, len: usize) -> Vec<u8> {
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match kind {
                1 => b' ' + (x % 95) as u8,
                2 => (x >> 24) as u8,
                _ => b'v',
            }
        })
        .collect()
}

fn parse_args() -> (String, Args) {
    let argv: Vec<String> = std::env::args().collect();
    let usage = "usage: loadgen mix|fill|hashmix|hashfill|springfill|sessionhash|zindex|multi|pipeline|lockscript|lockscript-lua|ratelimit|block|pubsub HOST:PORT [--clients N] [--seconds S] [--keys N] [--value BYTES] [--ttl S] [--prefill 0|1] [--offset N] [--pxat UNIX_MS] [--messages N] [--hold S] [--content 0|1|2]";
    if argv.len() < 3 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let mut a = Args {
        addr: argv[2].clone(),
        clients: 50,
        seconds: 10,
        keys: 100_000,
        value: 512,
        ttl: 1800,
        prefill: true,
        offset: 0,
        pxat: 0,
        hash: false,
        spring: false,
        messages: 1000,
        hold: 0,
        content: 0,
    };
    let mut i = 3;
    while i + 1 < argv.len() {
        let v: u64 = argv[i + 1].parse().unwrap_or_else(|_| {
            eprintln!("{usage}");
            std::process::exit(2)
        });
        match argv[i].as_str() {
            "--clients" => a.clients = v as usize,
            "--seconds" => a.seconds = v,
            "--keys" => a.keys = v,
            "--value" => a.value = v as usize,
            "--ttl" => a.ttl = v,
            "--prefill" => a.prefill = v != 0,
            "--offset" => a.offset = v,
            "--pxat" => a.pxat = v,
            "--messages" => a.messages = v,
            "--hold" => a.hold = v,
            "--content" => a.content = v,
            _ => {
                eprintln!("{usage}");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    (argv[1].clone(), a)
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one complete reply, nested aggregates included; false for an error reply.
async fn read_reply(r: &mut BufReader<Rd>, line: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut pending = 1u64;
    let mut ok = true;
    let mut first = true;
    while pending > 0 {
        line.clear();
        r.read_until(b'\n', line).await?;
        if line.len() < 3 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        pending -= 1;
        let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        match line[0] {
            b'$' | b'=' | b'!' if n >= 0 => {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).await?;
            }
            b'*' | b'~' | b'>' if n > 0 => pending += n as u64,
            b'%' if n > 0 => pending += 2 * n as u64,
            b'-' if first => ok = false,
            _ => {}
        }
        first = false;
    }
    Ok(ok)
}

/// Reads one flat array reply (a pub/sub message) and returns its bulk items.
async fn read_items(r: &mut BufReader<Rd>, line: &mut Vec<u8>) -> std::io::Result<Vec<Vec<u8>>> {
    line.clear();
    r.read_until(b'\n', line).await?;
    if line.len() < 3 || !matches!(line[0], b'*' | b'>') {
        return Err(std::io::Error::other("expected an array"));
    }
    let n: usize = std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_until(b'\n', line).await?;
        if line.first() == Some(&b'$') {
            let len: usize = std::str::from_utf8(&line[1..line.len() - 2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf).await?;
            buf.truncate(len);
            items.push(buf);
        } else {
            items.push(line[1..line.len() - 2].to_vec());
        }
    }
    Ok(items)
}

fn key(i: u64) -> Vec<u8> {
    format!("PHPREDIS_SESSION:{i:026}").into_bytes()
}

async fn connect(addr: &str) -> (BufReader<Rd>, Wr) {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (r, w) = match tls::connector() {
        None => {
            let (r, w) = s.into_split();
            (Rd::Plain(r), Wr::Plain(w))
        }
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let t = c.connect(name, s).await.expect("TLS handshake");
            let (r, w) = tokio::io::split(t);
            (Rd::Tls(r), Wr::Tls(w))
        }
    };
    (BufReader::with_capacity(64 * 1024, r), w)
}

/// Writes `keys` sessions with SETEX, 64 commands per pipeline, from `clients` connections.
async fn fill(a: &Args) -> u64 {
    let value = vec![b'v'; a.value];
    let ttl = a.ttl.to_string();
    let per = a.keys.div_ceil(a.clients as u64);
    let mut tasks = Vec::new();
    for c in 0..a.clients as u64 {
        let (addr, value, ttl) = (a.addr.clone(), value.clone(), ttl.clone());
        let (offset, pxat, hash, spring) = (a.offset, a.pxat, a.hash, a.spring);
        let (kind, len) = (a.content, a.value);
        let ttl_ms = (a.ttl * 1000).to_string();
        let (start, end) = (c * per, ((c + 1) * per).min(a.keys));
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = connect(&addr).await;
            let mut line = Vec::new();
            let mut errors = 0u64;
            let mut i = start;
            while i < end {
                let batch_end = (i + 64).min(end);
                let mut buf = Vec::new();
                for k in i..batch_end {
                    if spring {
                        let csrf = format!("{:036}", offset + k);
                        encode(
                            &mut buf,
                            &[
                                b"HSET",
                                &key(offset + k),
                                b"creationTime",
                                b"1700000000000",
                                b"maxInactiveInterval",
                                b"1800",
                                b"lastAccessedTime",
                                b"1700000000000",
                                b"sessionAttr:SPRING_SECURITY_CONTEXT",
                                &value,
                                b"sessionAttr:user",
                                b"alice",
                                b"sessionAttr:csrf",
                                csrf.as_bytes(),
                            ],
                        );
                        encode(
                            &mut buf,
                            &[b"PEXPIRE", &key(offset + k), (ttl_ms).as_bytes()],
                        );
                    } else if hash {
                        encode(
                            &mut buf,
                            &[
                                b"HSET",
                                &key(offset + k),
                                b"creationTime",
                                b"1700000000000",
                                b"maxInactiveInterval",
                                b"1800",
                                b"lastAccessedTime",
                                b"1700000000000",
                                b"sessionAttr:data",
                                &value,
                            ],
                        );
                    } else if pxat > 0 {
                        encode(
                            &mut buf,
                            &[
                                b"SET",
                                &key(offset + k),
                                &value,
                                b"PXAT",
                                pxat.to_string().as_bytes(),
                            ],
                        );
                    } else if kind != 0 {
                        let v = content(kind, offset + k, len);
                        encode(&mut buf, &[b"SETEX", &key(offset + k), ttl.as_bytes(), &v]);
                    } else {
                        encode(
                            &mut buf,
                            &[b"SETEX", &key(offset + k), ttl.as_bytes(), &value],
                        );
                    }
                }
                w.write_all(&buf).await.expect("write");
                let per_key = if spring { 2 } else { 1 };
                for _ in 0..(batch_end - i) * per_key {
                    if !read_reply(&mut r, &mut line).await.expect("reply") {
                        errors += 1;
                    }
                }
                i = batch_end;
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.expect("task");
    }
    errors
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Strings,
    Hashes,
    Multi,
    /// The MULTI load's commands plus two reads, four per round trip, no transaction.
    Pipeline,
    SessionHash,
    ZIndex,
    LockScript,
    /// The same lock cycle with a release script sessiond does not recognise (interpreted).
    LockScriptLua,
    RateLimit,
}

const LOCK_RELEASE: &str = "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
const LOCK_RELEASE_OTHER: &str = "local token = redis.call('get', KEYS[1]) if token == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
const RATE_LIMIT: &str = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end if n > tonumber(ARGV[2]) then return 0 end return 1";

fn sha1_hex(s: &str) -> String {
    sha1_smol::Sha1::from(s).digest().to_string()
}

async fn mix(a: &Args, workload: Workload) -> (u64, f64, Histogram<u64>, u64) {
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        let addr = a.addr.clone();
        let (keys, ttl, value) = (a.keys, a.ttl.to_string(), vec![b's'; a.value]);
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = connect(&addr).await;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut line = Vec::new();
            let mut buf = Vec::new();
            let (mut ops, mut errors) = (0u64, 0u64);
            let mut rng = fastrand::Rng::new();
            // Scripts are loaded once per connection, then called by EVALSHA.
            let script = match workload {
                Workload::LockScript => Some(LOCK_RELEASE),
                Workload::LockScriptLua => Some(LOCK_RELEASE_OTHER),
                Workload::RateLimit => Some(RATE_LIMIT),
                _ => None,
            };
            if let Some(text) = script {
                encode(&mut buf, &[b"SCRIPT", b"LOAD", text.as_bytes()]);
                w.write_all(&buf).await.expect("write");
                if !read_reply(&mut r, &mut line).await.expect("reply") {
                    errors += 1;
                }
            }
            let sha = script.map(sha1_hex).unwrap_or_default();
            let token = format!("token-{}", rng.u64(..));
            while Instant::now() < deadline {
                let u = rng.f64();
                let k = if script.is_some() {
                    format!("lock:{}", rng.u64(..keys.max(1))).into_bytes()
                } else {
                    key(((keys as f64) * u * u * u) as u64)
                };
                buf.clear();
                let p = rng.u32(..100);
                let now = b"1700000001000";
                let mut replies = 1;
                match workload {
                    Workload::Strings if p < 80 => encode(&mut buf, &[b"GET", &k]),
                    Workload::Strings if p < 95 => {
                        encode(&mut buf, &[b"SETEX", &k, ttl.as_bytes(), &value])
                    }
                    Workload::Strings => encode(&mut buf, &[b"EXPIRE", &k, ttl.as_bytes()]),
                    Workload::Hashes if p < 70 => encode(&mut buf, &[b"HGETALL", &k]),
                    Workload::Hashes if p < 90 => encode(
                        &mut buf,
                        &[
                            b"HSET",
                            &k,
                            b"lastAccessedTime",
                            now,
                            b"sessionAttr:data",
                            &value,
                        ],
                    ),
                    Workload::Hashes => encode(&mut buf, &[b"PEXPIRE", &k, b"1800000"]),
                    Workload::SessionHash if p < 80 => encode(&mut buf, &[b"HGETALL", &k]),
                    Workload::SessionHash if p < 95 => {
                        encode(
                            &mut buf,
                            &[
                                b"HSET",
                                &k,
                                b"lastAccessedTime",
                                now,
                                b"sessionAttr:SPRING_SECURITY_CONTEXT",
                                &value,
                            ],
                        );
                        encode(&mut buf, &[b"PEXPIRE", &k, b"1800000"]);
                        replies = 2;
                    }
                    Workload::SessionHash => encode(&mut buf, &[b"DEL", &k]),
                    Workload::ZIndex => {
                        let idx = format!("idx:{}", rng.u64(..keys.max(1)));
                        let member = format!("session:{}", rng.u32(..1000));
                        let score = (1_700_000_000_000u64 + rng.u64(..3_600_000)).to_string();
                        if p < 60 {
                            encode(
                                &mut buf,
                                &[b"ZADD", idx.as_bytes(), score.as_bytes(), member.as_bytes()],
                            );
                        } else if p < 90 {
                            encode(
                                &mut buf,
                                &[
                                    b"ZRANGEBYSCORE",
                                    idx.as_bytes(),
                                    b"-inf",
                                    score.as_bytes(),
                                    b"LIMIT",
                                    b"0",
                                    b"10",
                                ],
                            );
                        } else {
                            encode(&mut buf, &[b"ZREM", idx.as_bytes(), member.as_bytes()]);
                        }
                    }
                    Workload::LockScript | Workload::LockScriptLua => {
                        encode(&mut buf, &[b"SET", &k, token.as_bytes(), b"PX", b"30000"]);
                        encode(
                            &mut buf,
                            &[b"EVALSHA", sha.as_bytes(), b"1", &k, token.as_bytes()],
                        );
                        replies = 2;
                    }
                    Workload::RateLimit => {
                        encode(
                            &mut buf,
                            &[b"EVALSHA", sha.as_bytes(), b"1", &k, b"60", b"1000000000"],
                        );
                    }
                    Workload::Multi => {
                        encode(&mut buf, &[b"MULTI"]);
                        encode(&mut buf, &[b"HSET", &k, b"lastAccessedTime", now]);
                        encode(&mut buf, &[b"PEXPIRE", &k, b"1800000"]);
                        encode(&mut buf, &[b"EXEC"]);
                        replies = 4;
                    }
                    Workload::Pipeline => {
                        encode(&mut buf, &[b"HSET", &k, b"lastAccessedTime", now]);
                        encode(&mut buf, &[b"PEXPIRE", &k, b"1800000"]);
                        encode(&mut buf, &[b"HGET", &k, b"lastAccessedTime"]);
                        encode(&mut buf, &[b"PTTL", &k]);
                        replies = 4;
                    }
                }
                let t0 = Instant::now();
                w.write_all(&buf).await.expect("write");
                for _ in 0..replies {
                    if !read_reply(&mut r, &mut line).await.expect("reply") {
                        errors += 1;
                    }
                }
                let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                ops += 1;
            }
            (ops, hist, errors)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        let (o, h, e) = t.await.expect("task");
        ops += o;
        errors += e;
        total.add(h).expect("merge");
    }
    (ops, started.elapsed().as_secs_f64(), total, errors)
}

/// Holds `clients` connections blocked in BLPOP for `seconds`.
async fn block(a: &Args) {
    let mut conns = Vec::new();
    for i in 0..a.clients {
        let (r, mut w) = connect(&a.addr).await;
        let mut buf = Vec::new();
        let k = format!("loadgen:blocked:{i}");
        encode(&mut buf, &[b"BLPOP", k.as_bytes(), b"0"]);
        w.write_all(&buf).await.expect("write");
        conns.push((r, w));
    }
    println!("{{\"blocked\":{}}}", conns.len());
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
}

/// One publisher, `clients` subscribers of one channel: delivery latency of `messages`
/// messages sent 1 ms apart.
async fn pubsub(a: &Args) {
    use std::io::Write;
    let started = Instant::now();
    let mut subs = Vec::new();
    for _ in 0..a.clients {
        let (mut r, mut w) = connect(&a.addr).await;
        let mut buf = Vec::new();
        encode(&mut buf, &[b"SUBSCRIBE", b"loadgen:channel"]);
        w.write_all(&buf).await.expect("write");
        let mut line = Vec::new();
        read_items(&mut r, &mut line).await.expect("subscribed");
        subs.push((r, w));
    }
    let subscribe_ms = started.elapsed().as_millis();
    println!(
        "{{\"subscribed\":{},\"subscribe_ms\":{subscribe_ms}}}",
        subs.len()
    );
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let messages = a.messages;
    let mut tasks = Vec::new();
    for (mut r, w) in subs {
        tasks.push(tokio::spawn(async move {
            let _keep = w;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut line = Vec::new();
            let mut got = 0;
            while got < messages {
                let deadline = tokio::time::sleep(Duration::from_secs(10));
                let items = tokio::select! {
                    i = read_items(&mut r, &mut line) => i,
                    _ = deadline => break,
                };
                let Ok(items) = items else { break };
                let sent: u64 = items
                    .last()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now = started.elapsed().as_micros() as u64;
                let _ = hist.record(now.saturating_sub(sent).max(1));
                got += 1;
            }
            (got, hist)
        }));
    }
    let (mut pr, mut pw) = connect(&a.addr).await;
    let mut line = Vec::new();
    let t0 = Instant::now();
    for _ in 0..messages {
        let mut buf = Vec::new();
        let sent = started.elapsed().as_micros().to_string();
        encode(&mut buf, &[b"PUBLISH", b"loadgen:channel", sent.as_bytes()]);
        pw.write_all(&buf).await.expect("write");
        read_reply(&mut pr, &mut line).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut delivered = 0;
    for t in tasks {
        let (got, h) = t.await.expect("task");
        delivered += got;
        total.add(h).expect("merge");
    }
    println!(
        "{{\"delivered\":{delivered},\"expected\":{},\"publish_seconds\":{publish_secs:.3},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{}}}",
        messages * a.clients as u64,
        total.value_at_quantile(0.50),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999)
    );
}

fn main() {
    let (mode, a) = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match mode.as_str() {
            "fill" => {
                let t0 = Instant::now();
                let errors = fill(&a).await;
                println!(
                    "{{\"ops\":{},\"seconds\":{:.3},\"errors\":{}}}",
                    a.keys,
                    t0.elapsed().as_secs_f64(),
                    errors
                );
            }
            "springfill" => {
                let t0 = Instant::now();
                let errors = fill(&Args { spring: true, ..a }).await;
                println!(
                    "{{\"ops\":{},\"seconds\":{:.3},\"errors\":{}}}",
                    a.keys,
                    t0.elapsed().as_secs_f64(),
                    errors
                );
            }
            "hashfill" => {
                let t0 = Instant::now();
                let errors = fill(&Args { hash: true, ..a }).await;
                println!(
                    "{{\"ops\":{},\"seconds\":{:.3},\"errors\":{}}}",
                    a.keys,
                    t0.elapsed().as_secs_f64(),
                    errors
                );
            }
            "block" => block(&a).await,
            "pubsub" => pubsub(&a).await,
            "mix" | "hashmix" | "multi" | "pipeline" | "sessionhash" | "zindex" | "lockscript" | "lockscript-lua" | "ratelimit" => {
                let workload = match mode.as_str() {
                    "mix" => Workload::Strings,
                    "hashmix" => Workload::Hashes,
                    "sessionhash" => Workload::SessionHash,
                    "zindex" => Workload::ZIndex,
                    "lockscript" => Workload::LockScript,
                    "lockscript-lua" => Workload::LockScriptLua,
                    "ratelimit" => Workload::RateLimit,
                    "pipeline" => Workload::Pipeline,
                    _ => Workload::Multi,
                };
                if a.prefill
                    && !matches!(
                        workload,
                        Workload::ZIndex
                            | Workload::LockScript
                            | Workload::LockScriptLua
                            | Workload::RateLimit
                    )
                {
                    let hash = workload != Workload::Strings;
                    let spring = workload == Workload::SessionHash;
                    let prefill = Args { clients: 8, addr: a.addr.clone(), hash, spring, ..a };
                    fill(&prefill).await;
                }
                let (ops, secs, h, errors) = mix(&a, workload).await;
                println!(
                    "{{\"ops\":{ops},\"seconds\":{secs:.3},\"ops_per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{errors}}}",
                    ops as f64 / secs,
                    h.value_at_quantile(0.50),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999)
                );
            }
            _ => {
                eprintln!("unknown mode {mode}");
                std::process::exit(2);
            }
        }
    });
}

/// TLS when `LOADGEN_TLS=ca.crt,client.crt,client.key` is set (bench/tls); plain TCP
/// otherwise, with the same split halves as before (no extra cost on the plain path).
mod tls {
    use std::sync::{Arc, OnceLock};

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    pub fn connector() -> Option<tokio_rustls::TlsConnector> {
        static C: OnceLock<Option<tokio_rustls::TlsConnector>> = OnceLock::new();
        C.get_or_init(|| {
            let v = std::env::var("LOADGEN_TLS").ok()?;
            let f: Vec<&str> = v.split(',').collect();
            let [ca, cert, key] = f[..] else {
                panic!("LOADGEN_TLS=ca,cert,key")
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("ca") {
                roots.add(c.expect("ca cert")).expect("root");
            }
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(certs, key)
                .expect("client cert");
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        })
        .clone()
    }
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A connection's read half.
enum Rd {
    Plain(tokio::net::tcp::OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// A connection's write half.
enum Wr {
    Plain(tokio::net::tcp::OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl tokio::io::AsyncRead for Rd {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Rd::Plain(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            Rd::Tls(r) => std::pin::Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Wr {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Wr::Plain(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            Wr::Tls(w) => std::pin::Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Wr::Plain(w) => std::pin::Pin::new(w).poll_flush(cx),
            Wr::Tls(w) => std::pin::Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Wr::Plain(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            Wr::Tls(w) => std::pin::Pin::new(w).poll_shutdown(cx),
        }
    }
}
