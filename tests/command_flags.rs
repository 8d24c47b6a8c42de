//! The command table's flags decide durability (a write's reply waits for the log) and
//! routing (a gateway never re-sends a write). Two checks that they are right: every
//! command's flags equal redis-server's, and every command that actually logs a change when
//! the differential scripts run carries `write`.

mod support;

use std::collections::{BTreeSet, HashMap};

use support::{redis_server, script_lines, sessiond, Conn, Value};

/// `COMMAND INFO name` → (arity, flags).
fn info(c: &mut Conn, name: &str) -> Option<(i64, BTreeSet<String>)> {
    match c.cmd(&["COMMAND", "INFO", name]) {
        Value::Array(v) => match v.into_iter().next()? {
            Value::Array(d) => {
                let arity = match d[1] {
                    Value::Int(n) => n,
                    ref v => panic!("{name} arity: {v:?}"),
                };
                let flags = match &d[2] {
                    Value::Array(f) | Value::Set(f) => f.iter().map(Value::as_str).collect(),
                    v => panic!("{name} flags: {v:?}"),
                };
                Some((arity, flags))
            }
            _ => None,
        },
        v => panic!("COMMAND INFO {name}: {v:?}"),
    }
}

fn our_commands(c: &mut Conn) -> Vec<String> {
    match c.cmd(&["COMMAND"]) {
        Value::Array(all) => all
            .iter()
            .map(|d| match d {
                Value::Array(d) => d[0].as_str(),
                v => panic!("{v:?}"),
            })
            .collect(),
        v => panic!("COMMAND: {v:?}"),
    }
}

#[test]
fn every_commands_flags_and_arity_equal_redis() {
    let redis = redis_server(&[]);
    let ours = sessiond(&[]);
    let (mut rc, mut sc) = (redis.connect(), ours.connect());
    let names = our_commands(&mut sc);
    assert!(names.len() > 50, "{names:?}");
    // Commands newer than the oracle are described in commands-newer.tsv, from Redis's docs.
    let newer = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cmd/commands-newer.tsv"),
    )
    .expect("commands-newer.tsv");
    let newer: BTreeSet<&str> = newer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .collect();
    for name in names {
        let Some(expected) = info(&mut rc, &name) else {
            assert!(newer.contains(name.as_str()), "redis has no {name}");
            continue;
        };
        let got = info(&mut sc, &name).unwrap();
        assert_eq!(got, expected, "COMMAND INFO {name}");
    }
}

#[test]
fn every_command_that_logs_a_change_is_flagged_write() {
    let s = sessiond(&["--appendfsync", "always"]);
    let mut c = s.connect();
    let mut admin = s.connect();
    let mut flags: HashMap<String, BTreeSet<String>> = HashMap::new();
    for name in our_commands(&mut admin) {
        let f = info(&mut admin, &name).unwrap().1;
        flags.insert(name, f);
    }
    let changes = |admin: &mut Conn| -> u64 {
        let text = admin.cmd(&["INFO", "persistence"]).as_str();
        text.lines()
            .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let mut checked = BTreeSet::new();
    for script in [
        "strings.txt",
        "keys.txt",
        "expire.txt",
        "hashes.txt",
        "floats.txt",
        "sets.txt",
        "zsets.txt",
        "zset-engine.txt",
        "lists.txt",
        "keys-more.txt",
        "hash-ttl.txt",
        // Last: it ends with QUIT.
        "connection.txt",
    ] {
        for line in script_lines(script) {
            let name = String::from_utf8_lossy(&line.args[0]).to_ascii_lowercase();
            let argv: Vec<&[u8]> = line.args.iter().map(|a| a.as_slice()).collect();
            let before = changes(&mut admin);
            if std::env::var("SHOW").is_ok() {
                eprintln!("{script}:{}: {}", line.lineno, line.text);
            }
            let _ = c.cmd_bytes(&argv);
            let after = changes(&mut admin);
            if after > before {
                let f = flags.get(&name).unwrap_or_else(|| {
                    panic!(
                        "{script}:{}: {} logged a change but is not in COMMAND",
                        line.lineno, line.text
                    )
                });
                // Scripts are the exception, as in Redis: EVAL carries no write flag, and
                // sessiond treats every script as a write (`table::is_write`).
                assert!(
                    f.contains("write") || name == "eval" || name == "evalsha",
                    "{script}:{}: {} logged a change, but its flags {f:?} lack write",
                    line.lineno,
                    line.text
                );
                checked.insert(name);
            }
        }
    }
    // The scripts exercise every writing command this table has.
    let writers: BTreeSet<String> = flags
        .iter()
        .filter(|(_, f)| f.contains("write"))
        .map(|(n, _)| n.clone())
        .collect();
    let unexercised: Vec<&String> = writers.difference(&checked).collect();
    assert!(
        unexercised.is_empty(),
        "write commands the scripts never saw log a change: {unexercised:?}"
    );
}
