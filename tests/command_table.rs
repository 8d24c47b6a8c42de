//! The command table (`src/cmd/commands.tsv`) is Redis's own description of its commands,
//! read from a live redis-server: names (subcommands as `parent|sub`), arity, flags, the
//! legacy key range, ACL categories, key specifications, tips, group, version and summary.
//! Gateway routing, cluster slots, durability waits and (later) ACL all read it, so it must
//! not drift from the oracle: this test compares every row with `COMMAND` and
//! `COMMAND DOCS` of the installed redis-server, both ways.
//!
//! Commands newer than the oracle (Redis 7.2, Valkey 8) are kept apart in
//! `src/cmd/commands-newer.tsv`: none of them may exist in the oracle (then it belongs in the
//! main file), and each must equal the row of Redis 8 (`scripts/redis8`).
//!
//! To regenerate both files after upgrading an oracle:
//! `SESSIOND_WRITE_COMMANDS=1 cargo test --test command_table`.

mod support;

use std::collections::BTreeMap;

use support::{redis8_server, redis_server, Conn, Value};

/// `[k, v, k, v…]` (RESP2) or a map (RESP3) as pairs with string keys.
fn pairs(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
        Value::Array(a) => a
            .chunks(2)
            .map(|c| (c[0].as_str(), c.get(1).cloned().unwrap_or(Value::Null)))
            .collect(),
        Value::Null | Value::NullArray => Vec::new(),
        other => panic!("expected pairs, got {other:?}"),
    }
}

fn get(v: &Value, key: &str) -> Value {
    pairs(v)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.clone(),
        Value::Null | Value::NullArray => Vec::new(),
        other => panic!("expected a list, got {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A comma list, or `-` when empty (the file's notation).
fn list(v: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = v.into_iter().collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// One key specification in the file's notation: `FLAGS:begin_search:find_keys`, e.g.
/// `RW,access,delete:index(1):range(0,1,0)` or `RO,access:keyword(STREAMS,1):range(-1,1,2)`.
fn key_spec(ks: &Value) -> String {
    let flags = list(items(&get(ks, "flags")).iter().map(Value::as_str));
    let begin = get(ks, "begin_search");
    let spec = get(&begin, "spec");
    let begin = match get(&begin, "type").as_str().as_str() {
        "index" => format!("index({})", int(&get(&spec, "index"))),
        "keyword" => format!(
            "keyword({},{})",
            get(&spec, "keyword").as_str(),
            int(&get(&spec, "startfrom"))
        ),
        "unknown" => "unknown".into(),
        t => panic!("begin_search type {t}"),
    };
    let find = get(ks, "find_keys");
    let spec = get(&find, "spec");
    let find = match get(&find, "type").as_str().as_str() {
        "range" => format!(
            "range({},{},{})",
            int(&get(&spec, "lastkey")),
            int(&get(&spec, "keystep")),
            int(&get(&spec, "limit"))
        ),
        "keynum" => format!(
            "keynum({},{},{})",
            int(&get(&spec, "keynumidx")),
            int(&get(&spec, "firstkey")),
            int(&get(&spec, "keystep"))
        ),
        "unknown" => "unknown".into(),
        t => panic!("find_keys type {t}"),
    };
    format!("{flags}:{begin}:{find}")
}

/// `COMMAND` entry (and its subcommands) → rows keyed by name, docs fields still empty.
fn info_rows(entry: &Value, out: &mut BTreeMap<String, Vec<String>>) {
    let e = items(entry);
    let name = e[0].as_str().to_lowercase();
    let flags = list(items(&e[2]).iter().map(Value::as_str));
    let keys = format!("{},{},{}", int(&e[3]), int(&e[4]), int(&e[5]));
    let acl = list(
        items(&e[6])
            .iter()
            .map(|c| c.as_str().trim_start_matches('@').to_string()),
    );
    let tips = list(items(&e[7]).iter().map(Value::as_str));
    let specs: Vec<String> = items(&e[8]).iter().map(key_spec).collect();
    let specs = if specs.is_empty() {
        "-".into()
    } else {
        specs.join(";")
    };
    out.insert(
        name,
        vec![int(&e[1]).to_string(), flags, keys, acl, specs, tips],
    );
    for sub in items(&e[9]) {
        info_rows(&sub, out);
    }
}

/// `COMMAND DOCS` entry → group, since, summary appended to the rows.
fn doc_rows(name: &str, doc: &Value, rows: &mut BTreeMap<String, Vec<String>>) {
    let name = name.to_lowercase();
    if let Some(row) = rows.get_mut(&name) {
        for field in ["group", "since", "summary"] {
            let v = get(doc, field).as_str();
            assert!(
                !v.contains('\t') && !v.contains('\n'),
                "{name} {field}: {v}"
            );
            row.push(v);
        }
    }
    for (sub, d) in pairs(&get(doc, "subcommands")) {
        doc_rows(&sub, &d, rows);
    }
}

/// The oracle's table, as the file's lines (without the header).
fn oracle(c: &mut Conn) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for entry in items(&c.cmd(&["COMMAND"])) {
        info_rows(&entry, &mut rows);
    }
    for (name, doc) in pairs(&c.cmd(&["COMMAND", "DOCS"])) {
        doc_rows(&name, &doc, &mut rows);
    }
    rows.into_iter()
        .map(|(name, fields)| {
            assert_eq!(fields.len(), 9, "{name}: no docs");
            let line = format!("{name}\t{}", fields.join("\t"));
            (name, line)
        })
        .collect()
}

const TABLE: &str = "src/cmd/commands.tsv";
const NEWER: &str = "src/cmd/commands-newer.tsv";
const HEADER: &str = "# name\tarity\tflags\tkeys\tacl\tkey_specs\ttips\tgroup\tsince\tsummary\n";

fn rows_of(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            (
                l.split('\t').next().unwrap_or("").to_string(),
                l.to_string(),
            )
        })
        .collect()
}

#[test]
fn command_table_equals_a_live_redis_servers_command_output() {
    let redis = redis_server(&[]);
    let mut c = redis.connect();
    let live = oracle(&mut c);
    assert!(live.len() > 300, "only {} commands", live.len());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("SESSIOND_WRITE_COMMANDS").is_some() {
        let mut text = String::from(HEADER);
        for line in live.values() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
    }
    let ours = rows_of(&std::fs::read_to_string(&path).unwrap());
    let mut problems = Vec::new();
    for (name, line) in &live {
        match ours.get(name) {
            None => problems.push(format!("missing: {line}")),
            Some(mine) if mine != line => {
                problems.push(format!("differs:\n  ours:  {mine}\n  redis: {line}"))
            }
            Some(_) => {}
        }
    }
    for name in ours.keys() {
        if !live.contains_key(name) {
            problems.push(format!("not in redis-server: {name}"));
        }
    }
    let newer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(NEWER);
    for name in rows_of(&std::fs::read_to_string(newer).unwrap()).keys() {
        if live.contains_key(name) {
            problems.push(format!("{name} is in the oracle: move it to {TABLE}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The rows of commands newer than the main oracle equal Redis 8's own (`scripts/redis8`),
/// every one that Redis 8 has.
#[test]
fn newer_commands_equal_redis_8s_command_output() {
    let redis = redis8_server(&[]);
    let live = oracle(&mut redis.connect());
    let newer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(NEWER);
    let text = std::fs::read_to_string(&newer).unwrap();
    let ours = rows_of(&text);
    assert!(!ours.is_empty());
    if std::env::var_os("SESSIOND_WRITE_COMMANDS").is_some() {
        let mut out: String = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        for (name, mine) in &ours {
            out.push_str(live.get(name).unwrap_or(mine));
            out.push('\n');
        }
        std::fs::write(&newer, out).unwrap();
    }
    let mut problems = Vec::new();
    for (name, mine) in &ours {
        match live.get(name) {
            None => problems.push(format!("not in Redis 8: {name}")),
            Some(line) if line != mine => {
                problems.push(format!("differs:\n  ours:    {mine}\n  redis 8: {line}"))
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The table as sessiond reads it answers `COMMAND GETKEYS` like Redis for commands of
/// every key-spec shape (index, keyword, range with limit, keynum, subcommands).
#[test]
fn key_positions_from_the_table_equal_command_getkeys() {
    let redis = redis_server(&[]);
    let mut c = redis.connect();
    let cases: &[&[&str]] = &[
        &["GET", "k"],
        &["MSET", "a", "1", "b", "2"],
        &["MGET", "a", "b", "c"],
        &["DEL", "a", "b"],
        &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
        &["EVAL", "return 1", "2", "k1", "k2", "argv1"],
        &["FCALL", "f", "1", "k1", "a"],
        &["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "0"],
        &["BLMPOP", "0", "2", "l1", "l2", "LEFT"],
        &["LMOVE", "a", "b", "LEFT", "RIGHT"],
        &["BRPOPLPUSH", "a", "b", "0"],
        &["BLPOP", "a", "b", "0"],
        &["SINTERCARD", "2", "a", "b", "LIMIT", "1"],
        &["OBJECT", "ENCODING", "k"],
        &["XINFO", "STREAM", "s"],
        &["MEMORY", "USAGE", "k"],
        &["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"],
        // SORT's STORE and MIGRATE's KEYS are specs Redis marks unknown or incomplete
        // (its own code finds them); the gateway routes by the first key and a cluster
        // answers CROSSSLOT itself if the others differ.
        &["SORT", "k"],
        &["LCS", "a", "b"],
        &["HSET", "h", "f", "v"],
        &["RENAME", "a", "b"],
    ];
    for args in cases {
        let mut q = vec!["COMMAND", "GETKEYS"];
        q.extend_from_slice(args);
        let expected: Vec<String> = items(&c.cmd(&q)).iter().map(Value::as_str).collect();
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let got: Vec<String> = sessiond::cmd::table::keys(&argv)
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(got, expected, "keys of {args:?}");
    }
}
