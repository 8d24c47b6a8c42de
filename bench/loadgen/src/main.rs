//! Session-mix load generator: the same load against any Redis-protocol server.
//!
//! `loadgen mix HOST:PORT --clients 50 --seconds 10 --keys 100000 --value 512`
//!   Each client runs request/response (no pipelining, like a PHP worker): 80% GET,
//!   15% SETEX, 5% EXPIRE over a skewed key population (key = keys × u³, so a small set of
//!   sessions is hot), after populating every key. Latencies go into an HdrHistogram.
//! `loadgen fill HOST:PORT --keys 1000000 --value 100`
//!   Writes that many sessions (SETEX, pipelined) for memory measurements.
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
}

fn parse_args() -> (String, Args) {
    let argv: Vec<String> = std::env::args().collect();
    let usage = "usage: loadgen mix|fill HOST:PORT [--clients N] [--seconds S] [--keys N] [--value BYTES] [--ttl S] [--prefill 0|1] [--offset N] [--pxat UNIX_MS]";
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

/// Reads one reply; returns false for an error reply.
async fn read_reply(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    r.read_until(b'\n', line).await?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    match line[0] {
        b'$' => {
            let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            if n >= 0 {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).await?;
            }
            Ok(true)
        }
        b'-' => Ok(false),
        _ => Ok(true),
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("PHPREDIS_SESSION:{i:026}").into_bytes()
}

async fn connect(
    addr: &str,
) -> (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (r, w) = s.into_split();
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
        let (offset, pxat) = (a.offset, a.pxat);
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
                    if pxat > 0 {
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
                    } else {
                        encode(
                            &mut buf,
                            &[b"SETEX", &key(offset + k), ttl.as_bytes(), &value],
                        );
                    }
                }
                w.write_all(&buf).await.expect("write");
                for _ in i..batch_end {
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

async fn mix(a: &Args) -> (u64, f64, Histogram<u64>, u64) {
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
            while Instant::now() < deadline {
                let u = rng.f64();
                let k = key(((keys as f64) * u * u * u) as u64);
                buf.clear();
                let p = rng.u32(..100);
                if p < 80 {
                    encode(&mut buf, &[b"GET", &k]);
                } else if p < 95 {
                    encode(&mut buf, &[b"SETEX", &k, ttl.as_bytes(), &value]);
                } else {
                    encode(&mut buf, &[b"EXPIRE", &k, ttl.as_bytes()]);
                }
                let t0 = Instant::now();
                w.write_all(&buf).await.expect("write");
                if !read_reply(&mut r, &mut line).await.expect("reply") {
                    errors += 1;
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
            "mix" => {
                if a.prefill {
                    let prefill = Args { clients: 8, addr: a.addr.clone(), ..a };
                    fill(&prefill).await;
                }
                let (ops, secs, h, errors) = mix(&a).await;
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
