//! Real client libraries: redis-py, ioredis, Predis and Ruby's redis gem run their
//! transactions (MULTI/EXEC, WATCH with retries), pipelines, hashes, pub/sub, blocking pops
//! and Lua scripts (redis-py's `Lock`, ioredis `defineCommand`, Predis `ScriptCommand`, a
//! Redisson-style renewal, ASP.NET Core's session script, a rate limiter, a job queue)
//! through the gateway to a redis-server, a Sentinel set and a 3-primary cluster
//! (hash-tagged keys), and against the embedded engine. Each program (tests/clients/) prints
//! `ok <checks>` or the first failure.
//!
//! `scripts/test` installs them: redis-py in a venv and ioredis with npm, both under
//! `target/clients/`, and Debian's php-nrk-predis and ruby-redis.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{redis_cluster, redis_sentinel, redis_server, sessiond, Proc};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that runs one client program, or a panic naming what to install.
fn client(name: &str) -> Command {
    let script = root().join("tests/clients").join(name);
    let need = |p: PathBuf| {
        assert!(
            p.exists(),
            "{} is missing: run the README's test command (scripts/test), which installs it",
            p.display()
        );
        p
    };
    match name {
        "redis_py.py" => {
            let mut c = Command::new(need(root().join("target/clients/venv/bin/python")));
            c.arg(script);
            c
        }
        "ioredis.js" => {
            let modules = need(root().join("target/clients/node/node_modules/ioredis"));
            let mut c = Command::new("node");
            c.arg(script).env("NODE_PATH", modules.parent().unwrap());
            c
        }
        "predis.php" => {
            need(PathBuf::from("/usr/share/php/Predis/Autoloader.php"));
            let mut c = Command::new("php");
            c.arg(script);
            c
        }
        "ruby_redis.rb" => {
            let mut c = Command::new("ruby");
            c.arg(script);
            c
        }
        _ => unreachable!(),
    }
}

const CLIENTS: [&str; 4] = ["redis_py.py", "ioredis.js", "predis.php", "ruby_redis.rb"];

fn run_all(gw: &Proc, topology: &str) {
    let mut failures = Vec::new();
    for name in CLIENTS {
        let mut cmd = client(name);
        let out = cmd
            .env("SESSIOND_ADDR", format!("127.0.0.1:{}", gw.port))
            .env("KEY_TAG", format!("{topology}-{name}"))
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.trim_end().ends_with(|c: char| c.is_ascii_digit()) {
            failures.push(format!(
                "{name} ({topology}): {}\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn client_libraries_against_the_embedded_engine() {
    let s = sessiond(&[]);
    run_all(&s, "embedded");
}

#[test]
fn client_libraries_through_the_gateway_to_redis_server() {
    let r = redis_server(&[]);
    let gw = sessiond(&["--upstream", &format!("redis://127.0.0.1:{}", r.port)]);
    run_all(&gw, "single");
}

#[test]
fn client_libraries_through_the_gateway_to_a_sentinel_set() {
    let primary = redis_server(&[]);
    let s = redis_sentinel(primary.port, "sessions", 1);
    let url = format!("redis+sentinel://127.0.0.1:{}/sessions", s.port);
    let gw = sessiond(&["--upstream", &url]);
    run_all(&gw, "sentinel");
}

#[test]
fn client_libraries_through_the_gateway_to_a_cluster() {
    let nodes = redis_cluster();
    let url = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
    let gw = sessiond(&["--upstream", &url]);
    run_all(&gw, "cluster");
}
