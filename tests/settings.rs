//! The settings table (`src/config/table/`) seen from outside: every source of a value (flag,
//! environment, file, `CONFIG SET`, the admin API) goes through one parser per setting, so
//! they take and refuse the same values with the same words.

mod support;

use std::io::{Read, Write};

use support::{redis_server, sessiond, sessiond_with_env, TempDir, Value};

/// One request to the admin API; the whole response (status line, headers, body).
fn http(admin: &str, token: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(admin).expect("admin API");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn pairs(v: Value) -> Vec<(String, String)> {
    let Value::Array(items) = v else {
        panic!("CONFIG GET: {v:?}")
    };
    items
        .chunks_exact(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect()
}

/// Whatever `CONFIG GET *` shows, `CONFIG SET` takes back unchanged, or refuses for a reason
/// of the running server, never for the value's form.
#[test]
fn config_set_takes_back_what_config_get_shows() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    let all = pairs(c.cmd(&["CONFIG", "GET", "*"]));
    assert!(all.len() >= 35, "{all:?}");
    let mut set = Vec::new();
    for (name, value) in &all {
        match c.cmd(&["CONFIG", "SET", name, value]) {
            Value::Simple(ok) if ok == "OK" => {
                let now = pairs(c.cmd(&["CONFIG", "GET", name]));
                assert_eq!(now, [(name.clone(), value.clone())], "{name}");
                set.push(name.as_str());
            }
            Value::Error(e) => assert!(
                e.ends_with("can't set immutable config")
                    || e.ends_with("not migrating (start with --migrate-from and --migrate-to)")
                    || e.ends_with("no upstream Redis in this mode"),
                "{name} {value:?}: {e}"
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    for live in [
        "timeout",
        "maxclients",
        "maxmemory",
        "client-output-buffer-limit",
        "notify-keyspace-events",
        "slowlog-log-slower-than",
        "lua-time-limit",
        "busy-reply-threshold",
        "appendfsync",
        "loglevel",
        "requirepass",
    ] {
        assert!(set.contains(&live), "{live} not settable: {set:?}");
    }
    for fixed in ["dir", "databases", "port", "appendonly"] {
        assert!(!set.contains(&fixed), "{fixed}");
    }
}

/// A value `CONFIG SET` refuses, start-up refuses too, with the same words (before the
/// table, `--maxclients 0` started with 1 and `--timeout -1` with clap's own error).
#[test]
fn start_up_refuses_what_config_set_refuses() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    for (name, bad) in [
        ("maxclients", "0"),
        ("timeout", "-1"),
        ("slowlog-log-slower-than", "-2"),
        ("proto-max-bulk-len", "1kb"),
        ("notify-keyspace-events", "Q"),
        ("maxmemory-policy", "sometimes"),
        ("protected-mode", "maybe"),
    ] {
        let Value::Error(e) = c.cmd(&["CONFIG", "SET", name, bad]) else {
            panic!("CONFIG SET {name} {bad} accepted")
        };
        let why = e
            .split_once(") - ")
            .map(|(_, w)| w.to_string())
            .unwrap_or_else(|| panic!("{e}"));
        let dir = TempDir::new("settings-refused");
        let out = std::process::Command::new(support::sessiond_bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", support::free_port()),
            ])
            .arg("--dir")
            .arg(&dir.0)
            .arg(format!("--{name}={bad}"))
            .env_remove("SESSIOND_CONFIG")
            .output()
            .expect("run sessiond");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {bad}: {stderr}");
        assert!(
            stderr.contains(&format!("{name} '{bad}': {why}")),
            "{name} {bad}: {stderr} / {why}"
        );
    }
}

/// Flag over environment over file over default, for one setting, through the real binary.
#[test]
fn flag_over_environment_over_file() {
    let dir = TempDir::new("settings-sources");
    let file = dir.path("sessiond.toml");
    std::fs::write(
        &file,
        "timeout = 9\nslowlog-max-len = 64\nprotected-mode = true\n",
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let get = |extra: &[&str], env: &[(&str, &str)]| {
        let s = sessiond_with_env(extra, env);
        let mut c = s.connect();
        let v = pairs(c.cmd(&["CONFIG", "GET", "timeout"]));
        let len = pairs(c.cmd(&["CONFIG", "GET", "slowlog-max-len"]));
        (v[0].1.clone(), len[0].1.clone())
    };
    assert_eq!(get(&["--config", &file], &[]), ("9".into(), "64".into()));
    let env = [("SESSIOND_TIMEOUT", "7")];
    assert_eq!(get(&["--config", &file], &env), ("7".into(), "64".into()));
    assert_eq!(
        get(&["--config", &file, "--timeout", "8"], &env),
        ("8".into(), "64".into())
    );
    assert_eq!(get(&[], &[]), ("0".into(), "128".into()));
}

/// The admin API's migration change goes through the same rows as CONFIG SET: the same
/// refusal, and a refused request changes nothing.
#[test]
fn the_admin_api_and_config_set_share_the_migration_settings() {
    let old = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", old.port);
    let admin = format!("127.0.0.1:{}", support::free_port());
    let s = sessiond(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        "--admin-listen",
        &admin,
    ]);
    let mut c = s.connect();
    let Value::Error(e) = c.cmd(&["CONFIG", "SET", "migrate-percent", "101"]) else {
        panic!("percent 101 accepted")
    };
    let why = e.split_once(") - ").map(|(_, w)| w.to_string()).unwrap();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(support::sessiond_bin())
            .args(["ctl", "--admin", &admin, "--dir"])
            .arg(&s.dir.0)
            .args(args)
            .env_remove("SESSIOND_ADMIN_TOKEN")
            .env_remove("SESSIOND_DIR")
            .output()
            .expect("sessiond ctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = ctl(&["migration", "set", "--stage", "shadow", "--percent", "101"]);
    assert!(
        !ok && text.contains("400") && text.contains(&why),
        "{text} / {why}"
    );
    // The guard has no ctl flag: the API's JSON, as the console sends it.
    let token = std::fs::read_to_string(s.dir.path("admin.token")).expect("admin.token");
    let body = r#"{"stage": "live", "guard": "errors=lots"}"#;
    let text = http(&admin, &token, "PUT", "/admin/migration", body);
    let Value::Error(guard_why) = c.cmd(&["CONFIG", "SET", "migrate-guard", "errors=lots"]) else {
        panic!("guard accepted")
    };
    let guard_why = guard_why
        .split_once(") - ")
        .map(|(_, w)| w.to_string())
        .unwrap();
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains(&guard_why),
        "{text} / {guard_why}"
    );
    assert_eq!(
        pairs(c.cmd(&["CONFIG", "GET", "migrate-stage"])),
        [("migrate-stage".to_string(), "off".to_string())],
        "a refused change changes nothing"
    );
    let (ok, text) = ctl(&["migration", "set", "--stage", "shadow", "--percent", "20"]);
    assert!(ok, "{text}");
    assert_eq!(
        pairs(c.cmd(&["CONFIG", "GET", "migrate-*"]))[..2],
        [
            ("migrate-stage".to_string(), "shadow".to_string()),
            ("migrate-percent".to_string(), "20".to_string()),
        ]
    );
    // A percentage alone keeps the running stage.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "migrate-percent", "30"]),
        Value::Simple("OK".into())
    );
    assert_eq!(
        pairs(c.cmd(&["CONFIG", "GET", "migrate-stage"])),
        [("migrate-stage".to_string(), "shadow".to_string())]
    );
    // Stage and percentage changed together are one change in the audit log.
    assert_eq!(
        c.cmd(&[
            "CONFIG",
            "SET",
            "migrate-stage",
            "live",
            "migrate-percent",
            "40"
        ]),
        Value::Simple("OK".into())
    );
    let audit = std::fs::read_to_string(s.dir.path("audit.log")).expect("audit.log");
    let count = |to: &str| {
        audit
            .lines()
            .filter(|l| l.contains(&format!("\"to\":\"{to}\"")))
            .count()
    };
    assert_eq!(count("shadow 20%"), 1, "{audit}");
    assert_eq!(count("shadow 30%"), 1, "{audit}");
    assert_eq!(count("live 40%"), 1, "{audit}");
}

/// The README's configuration table lists every setting the binary has, with its
/// environment variable, and its list of live settings is the binary's.
#[test]
fn the_readme_lists_every_setting() {
    let out = std::process::Command::new(support::sessiond_bin())
        .args(["serve", "--help"])
        .output()
        .expect("sessiond serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let config = readme
        .split_once("## Configuration")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .expect("README: ## Configuration");
    let (mut flags, mut live) = (Vec::new(), Vec::new());
    let mut current = String::new();
    for line in help.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            current = rest.split([' ', '=']).next().unwrap_or("").to_string();
            if current != "config" && current != "help" {
                flags.push(current.clone());
            }
        } else if t.contains(&format!("Live: CONFIG SET {current} changes it.")) {
            live.push(current.clone());
        }
    }
    assert!(flags.len() >= 60, "{help}");
    for flag in &flags {
        let env = format!("SESSIOND_{}", flag.to_ascii_uppercase().replace('-', "_"));
        let row = config
            .lines()
            .find(|l| {
                let first = l.split('|').nth(1).unwrap_or("");
                l.starts_with("| `--")
                    && (first.contains(&format!("`--{flag}`"))
                        || first.contains(&format!("`--{flag} ")))
            })
            .unwrap_or_else(|| panic!("README's configuration table has no --{flag}"));
        assert!(row.contains(&env), "--{flag}: {env} not in {row}");
    }
    let listed = config
        .split_once("change these at run time")
        .map(|(_, rest)| rest.split("\n\n").next().unwrap_or(""))
        .expect("README: the live settings' list");
    let mut named: Vec<String> = listed
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(String::from)
        .filter(|n| n != "lua-time-limit" && n != "config")
        .collect();
    named.sort();
    live.sort();
    assert!(live.len() >= 20, "{live:?}");
    assert_eq!(named, live, "README's live settings against --help's");
}

/// `GET/PUT /admin/settings`: the running values from the table, and changes through the
/// same path as CONFIG SET.
#[test]
fn the_admin_api_reads_and_changes_settings() {
    let admin = format!("127.0.0.1:{}", support::free_port());
    let s = sessiond(&["--admin-listen", &admin, "--requirepass", "sesame"]);
    let token = std::fs::read_to_string(s.dir.path("admin.token")).expect("admin.token");
    let mut c = s.connect();
    assert_eq!(c.cmd(&["AUTH", "sesame"]), Value::Simple("OK".into()));

    let text = http(&admin, &token, "GET", "/admin/settings", "");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).expect("JSON");
    let find = |name: &str| {
        body["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
    };
    assert_eq!(find("timeout")["value"], "0");
    assert_eq!(find("timeout")["live"], true);
    assert_eq!(find("databases")["live"], false);
    assert_eq!(
        find("requirepass")["value"],
        "(set)",
        "a secret is not shown"
    );
    assert!(!text.contains("sesame"));

    // All or nothing: one bad value, nothing changes.
    let text = http(
        &admin,
        &token,
        "PUT",
        "/admin/settings",
        r#"{"timeout": 30, "maxclients": 0}"#,
    );
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("maxclients"),
        "{text}"
    );
    assert_eq!(pairs(c.cmd(&["CONFIG", "GET", "timeout"]))[0].1, "0");
    let text = http(
        &admin,
        &token,
        "PUT",
        "/admin/settings",
        r#"{"databases": 4}"#,
    );
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("immutable"),
        "{text}"
    );
    let text = http(
        &admin,
        &token,
        "PUT",
        "/admin/settings",
        r#"{"timeout": 30, "slowlog-max-len": "64"}"#,
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(pairs(c.cmd(&["CONFIG", "GET", "timeout"]))[0].1, "30");
    assert_eq!(
        pairs(c.cmd(&["CONFIG", "GET", "slowlog-max-len"]))[0].1,
        "64"
    );
    let text = http(
        &admin,
        &token,
        "PUT",
        "/admin/settings",
        r#"{"timeout": 5}"#,
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // A password changes, and is in no reply.
    let text = http(
        &admin,
        &token,
        "PUT",
        "/admin/settings",
        r#"{"requirepass": "opensesame"}"#,
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.contains("sesame") && text.contains("(hidden)"),
        "{text}"
    );
    let mut fresh = s.connect();
    assert!(matches!(fresh.cmd(&["AUTH", "sesame"]), Value::Error(_)));
    assert_eq!(
        fresh.cmd(&["AUTH", "opensesame"]),
        Value::Simple("OK".into())
    );
    let text = http(
        &admin,
        "wrong",
        "PUT",
        "/admin/settings",
        r#"{"timeout": 1}"#,
    );
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert_eq!(pairs(c.cmd(&["CONFIG", "GET", "timeout"]))[0].1, "5");
}
