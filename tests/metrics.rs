//! `/metrics`, the slow log and the latency monitor, against a running sessiond in each mode.
//!
//! The exposition is parsed by the Prometheus project's own OpenMetrics parser (the Python
//! `prometheus_client`, installed by scripts/test into target/clients/venv), so a format
//! error fails the test, not only a missing number.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use support::{redis_server, sessiond, Value};

const TOKEN: &str = "metrics-test-token";

struct Scrape {
    unauthorized_status: u64,
    content_type: String,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    /// The value of the one sample named `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} samples",
            found.len()
        );
        found.first().copied()
    }

    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let names: Vec<&str> = self.samples.iter().map(|(n, _, _)| n.as_str()).collect();
            panic!("no sample {name} {labels:?}; have {names:?}")
        })
    }
}

fn scrape(admin: &str) -> Scrape {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/clients/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the README's test command (scripts/test), which installs it",
        python.display()
    );
    let out = Command::new(python)
        .arg(root.join("tests/clients/scrape_metrics.py"))
        .arg(format!("http://{admin}/metrics"))
        .arg(TOKEN)
        .output()
        .expect("run scrape_metrics.py");
    assert!(
        out.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the scraper");
    let samples = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            (
                s[0].as_str().unwrap_or_default().to_string(),
                labels,
                s[2].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    Scrape {
        unauthorized_status: v["unauthorized_status"].as_u64().unwrap_or(0),
        content_type: v["content_type"].as_str().unwrap_or_default().to_string(),
        samples,
    }
}

fn admin_args(admin: &str) -> Vec<String> {
    vec![
        "--admin-listen".into(),
        admin.into(),
        "--admin-token".into(),
        TOKEN.into(),
    ]
}

fn with_admin(extra: &[&str]) -> (support::Proc, String) {
    let admin = format!("127.0.0.1:{}", support::free_port());
    let mut args: Vec<String> = admin_args(&admin);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (sessiond(&refs), admin)
}

#[test]
fn embedded_metrics_parse_and_move_with_traffic() {
    let (s, admin) = with_admin(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut c = s.connect();
    let before = scrape(&admin);
    assert_eq!(before.unauthorized_status, 401, "no token must get 401");
    assert!(
        before
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        before.content_type
    );
    let hash_calls = before
        .get("sessiond_commands_total", &[("family", "hash")])
        .unwrap_or(0.0);
    let string_errors = before
        .get("sessiond_command_errors_total", &[("family", "string")])
        .unwrap_or(0.0);

    for i in 0..7 {
        let key = format!("spring:session:sessions:{i}");
        assert_eq!(
            c.cmd(&[
                "HSET",
                &key,
                "creationTime",
                "1",
                "maxInactiveInterval",
                "1800"
            ]),
            Value::Int(2)
        );
    }
    c.cmd(&["SET", "counter", "x"]);
    assert!(matches!(c.cmd(&["INCR", "counter"]), Value::Error(_)));
    assert!(matches!(c.cmd(&["NOSUCHCOMMAND"]), Value::Error(_)));

    let after = scrape(&admin);
    assert_eq!(
        after.must("sessiond_commands_total", &[("family", "hash")]) - hash_calls,
        7.0
    );
    assert_eq!(
        after.must("sessiond_command_errors_total", &[("family", "string")]) - string_errors,
        1.0,
        "INCR on a non-integer is one string error"
    );
    assert!(after.must("sessiond_command_errors_total", &[("family", "unknown")]) >= 1.0);
    assert!(
        after.must(
            "sessiond_command_duration_seconds_count",
            &[("family", "hash")]
        ) >= 7.0
    );
    assert_eq!(
        after.must(
            "sessiond_command_duration_seconds_bucket",
            &[("family", "hash"), ("le", "+Inf")]
        ),
        after.must(
            "sessiond_command_duration_seconds_count",
            &[("family", "hash")]
        )
    );
    assert_eq!(after.must("sessiond_keys", &[("db", "0")]), 8.0);
    assert!(after.must("sessiond_connected_clients", &[]) >= 1.0);
    assert!(after.must("sessiond_memory_used_bytes", &[]) > 0.0);
    assert!(after.must("sessiond_resident_memory_bytes", &[]) > 0.0);
    // appendfsync always: every write above was fsynced, and timed.
    assert!(after.must("sessiond_log_fsyncs_total", &[]) >= 1.0);
    assert!(after.must("sessiond_log_fsync_duration_seconds_count", &[]) >= 1.0);
    assert!(after.must("sessiond_log_size_bytes", &[]) > 0.0);
    assert_eq!(after.must("sessiond_persistence_write_error", &[]), 0.0);
    assert!(
        after.must("sessiond_net_input_bytes_total", &[])
            > before.must("sessiond_net_input_bytes_total", &[])
    );
}

#[test]
fn gateway_metrics_report_upstream_nodes() {
    let r = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", r.port);
    let (s, admin) = with_admin(&["--upstream", &url]);
    let mut c = s.connect();
    for i in 0..5 {
        assert_eq!(
            c.cmd(&["SET", &format!("k{i}"), "v"]),
            Value::Simple("OK".into())
        );
    }
    let m = scrape(&admin);
    let node = format!("127.0.0.1:{}", r.port);
    assert_eq!(
        m.must(
            "sessiond_upstream_node_up",
            &[("node", &node), ("role", "master")]
        ),
        1.0
    );
    assert!(m.must("sessiond_upstream_node_requests_total", &[("node", &node)]) >= 5.0);
    assert!(
        m.must(
            "sessiond_upstream_node_request_duration_seconds_count",
            &[("node", &node)]
        ) >= 1.0
    );
    assert!(m.must("sessiond_commands_total", &[("family", "string")]) >= 5.0);
    assert_eq!(m.must("sessiond_upstream_primary_switches_total", &[]), 0.0);
    // An error the upstream answers a forwarded command with is counted on its node.
    let errors = m.must(
        "sessiond_upstream_node_error_replies_total",
        &[("node", &node)],
    );
    c.cmd(&["SET", "notanumber", "x"]);
    assert!(matches!(c.cmd(&["INCR", "notanumber"]), Value::Error(_)));
    let m = scrape(&admin);
    assert_eq!(
        m.must(
            "sessiond_upstream_node_error_replies_total",
            &[("node", &node)]
        ) - errors,
        1.0
    );
}

#[test]
fn migration_metrics_report_stage_comparisons_and_store_latency() {
    let old = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", old.port);
    let (s, admin) = with_admin(&[
        "--migrate-from",
        &url,
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "shadow",
        "--migrate-shadow-sample",
        "100",
    ]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["SETEX", "PHPREDIS_SESSION:a", "60", "v"]),
        Value::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["GET", "PHPREDIS_SESSION:a"]), Value::bulk("v"));
    let m = scrape(&admin);
    assert_eq!(
        m.must("sessiond_migration_stage", &[("stage", "shadow")]),
        1.0
    );
    assert_eq!(
        m.must("sessiond_migration_stage", &[("stage", "live")]),
        0.0
    );
    assert_eq!(m.must("sessiond_migration_percent", &[]), 100.0);
    assert_eq!(
        m.must(
            "sessiond_migration_comparisons_total",
            &[("result", "match")]
        ),
        1.0
    );
    for side in ["old", "new"] {
        assert!(
            m.must(
                "sessiond_migration_store_duration_seconds_count",
                &[("store", side)]
            ) >= 2.0,
            "{side}"
        );
    }
}

/// The slow log keeps slow commands without their keys or values; the latency monitor
/// samples commands past its threshold.
#[test]
fn slow_commands_are_logged_without_keys_or_values() {
    let s = sessiond(&[]);
    let mut c = s.connect();
    c.cmd(&["CLIENT", "SETNAME", "checkout-app"]);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        Value::Simple("OK".into())
    );
    let key = "spring:session:sessions:0b6e2d4c-secret-session-id";
    c.cmd(&["HSET", key, "sessionAttr:user", "alice@example.com"]);
    let entries = c.cmd(&["SLOWLOG", "GET", "1"]);
    let Value::Array(entries) = entries else {
        panic!("SLOWLOG GET: {entries:?}")
    };
    let Value::Array(e) = &entries[0] else {
        panic!("entry: {entries:?}")
    };
    assert_eq!(e.len(), 6);
    let Value::Array(args) = &e[3] else {
        panic!("args: {e:?}")
    };
    let args: Vec<String> = args.iter().map(Value::as_str).collect();
    assert_eq!(args[0], "HSET");
    assert_eq!(args.len(), 4);
    for a in &args[1..] {
        assert!(a.starts_with("sha1:") && a.ends_with(" bytes)"), "{args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.contains("secret") || a.contains("alice")),
        "{args:?}"
    );
    assert_eq!(e[5], Value::bulk("checkout-app"));
    assert!(e[4].as_str().starts_with("127.0.0.1:"), "{e:?}");

    // The log's length follows slowlog-max-len; RESET empties it.
    c.cmd(&["CONFIG", "SET", "slowlog-max-len", "2"]);
    for _ in 0..5 {
        c.cmd(&["PING"]);
    }
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Value::Int(2));
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), Value::Simple("OK".into()));
    // (The RESET itself is logged after it ran.)
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Value::Int(1));
    c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    c.cmd(&["SLOWLOG", "RESET"]);
    c.cmd(&["PING"]);
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), Value::Int(0));

    // The latency monitor: off by default; at 1 ms a KEYS over 100k keys is sampled.
    let mut batch = Vec::new();
    for i in 0..100_000 {
        batch.extend(support::encode(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    c.send_raw(&batch);
    for _ in 0..100_000 {
        assert_eq!(c.read(), Some(Value::Simple("OK".into())));
    }
    c.cmd(&["KEYS", "*nomatch*"]);
    assert_eq!(c.cmd(&["LATENCY", "LATEST"]), Value::Array(vec![]));
    c.cmd(&["CONFIG", "SET", "latency-monitor-threshold", "1"]);
    c.cmd(&["KEYS", "*nomatch*"]);
    let latest = c.cmd(&["LATENCY", "LATEST"]);
    let Value::Array(events) = &latest else {
        panic!("LATENCY LATEST: {latest:?}")
    };
    let Value::Array(ev) = &events[0] else {
        panic!("{latest:?}")
    };
    assert_eq!(ev[0], Value::bulk("command"));
    let Value::Int(ms) = ev[2] else {
        panic!("{latest:?}")
    };
    assert!(ms >= 1, "{latest:?}");
    let Value::Array(hist) = c.cmd(&["LATENCY", "HISTORY", "command"]) else {
        panic!("HISTORY")
    };
    assert!(!hist.is_empty());
    assert!(matches!(c.cmd(&["LATENCY", "RESET"]), Value::Int(n) if n >= 1));
}

/// Every metric the Grafana dashboard in docs/ queries is one sessiond serves (in one mode
/// or another): a renamed metric cannot leave a dashboard panel silently empty.
#[test]
fn the_grafana_dashboard_queries_metrics_that_exist() {
    let r = redis_server(&[]);
    let url = format!("redis://127.0.0.1:{}", r.port);
    let mut names = std::collections::HashSet::new();
    let modes: [&[&str]; 3] = [
        &["--appendonly", "yes", "--appendfsync", "always"],
        &["--upstream", &url],
        &["--migrate-from", &url, "--migrate-to", "embedded"],
    ];
    for extra in modes {
        let (s, admin) = with_admin(extra);
        let mut c = s.connect();
        c.cmd(&["SET", "PHPREDIS_SESSION:k", "v"]);
        c.cmd(&["GET", "PHPREDIS_SESSION:k"]);
        for (n, _, _) in scrape(&admin).samples {
            names.insert(n);
        }
    }
    let dash = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json"),
    )
    .expect("docs/grafana-dashboard.json");
    let mut queried = 0;
    for (i, _) in dash.match_indices("sessiond_") {
        let name: String = dash[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        queried += 1;
        assert!(
            names.contains(&name),
            "the dashboard queries {name}, which no scrape served"
        );
    }
    assert!(queried > 20, "{queried} queries found");
}
