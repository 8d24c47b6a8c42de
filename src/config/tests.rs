use super::*;
use clap::{Args, FromArgMatches};

fn resolve(given: &[(&str, &str)]) -> Result<Config, String> {
    Config::resolve(&ServeArgs::with(None, given))
}

/// The flags clap builds from the table, parsed as a shell would pass them.
fn flags(argv: &[&str]) -> Result<ServeArgs, clap::Error> {
    let cmd = ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true));
    let m = cmd.try_get_matches_from(argv)?;
    ServeArgs::from_arg_matches(&m)
}

#[test]
fn file_then_flags() {
    let dir = std::env::temp_dir().join(format!("sessiond-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "maxmemory = \"2gb\"\nmaxmemory-policy = \"volatile-ttl\"\nprotected-mode = \"no\"\nlisten = [\"127.0.0.1:7000\"]\ntimeout = 30\nappendonly = false\n").unwrap();
    let args = ServeArgs::with(Some(path.clone()), &[("maxmemory", "512mb")]);
    let c = Config::resolve(&args).unwrap();
    assert_eq!(c.maxmemory, 512 * 1024 * 1024, "flag wins over file");
    assert_eq!(c.maxmemory_policy, Policy::VolatileTtl);
    assert!(!c.protected_mode);
    assert!(!c.appendonly, "a TOML boolean");
    assert_eq!(c.timeout, 30, "a TOML integer");
    assert_eq!(c.listen[0].port(), 7000);
    assert!(resolve(&[("threads", "0")])
        .unwrap_err()
        .contains("threads"));
    std::fs::write(&path, "bogus-key = 1\n").unwrap();
    assert!(Config::resolve(&ServeArgs::with(Some(path.clone()), &[]))
        .unwrap_err()
        .contains("bogus-key"));
    // A CONFIG-only parameter is not a file key.
    std::fs::write(&path, "maxmemory-samples = 5\n").unwrap();
    assert!(Config::resolve(&ServeArgs::with(Some(path.clone()), &[]))
        .unwrap_err()
        .contains("maxmemory-samples"));
    std::fs::write(&path, "timeout = [1]\n").unwrap();
    assert!(Config::resolve(&ServeArgs::with(Some(path), &[]))
        .unwrap_err()
        .contains("timeout"));
}

#[test]
fn tls_settings_need_each_other() {
    assert!(resolve(&[("tls-port", "6390")])
        .unwrap_err()
        .contains("tls-cert-file"));
    let files_only = [("tls-cert-file", "c.pem"), ("tls-key-file", "k.pem")];
    assert!(resolve(&files_only).unwrap_err().contains("tls-port"));
    let bad_auth = [
        ("tls-port", "6390"),
        ("tls-cert-file", "c.pem"),
        ("tls-key-file", "k.pem"),
        ("tls-auth-clients", "maybe"),
    ];
    assert!(resolve(&bad_auth).unwrap_err().contains("tls-auth-clients"));
}

/// One row per setting: names, aliases and environment variables unique; a live setting
/// is also a `CONFIG` parameter and has a parser.
#[test]
fn the_table_is_consistent() {
    let mut names = std::collections::HashSet::new();
    for def in table::all() {
        for name in std::iter::once(def.name).chain(def.aliases.iter().copied()) {
            assert!(names.insert(name), "{name} twice");
            assert_eq!(name, name.to_ascii_lowercase());
        }
        if def.apply.is_some() || def.check.is_some() || def.mode.is_some() {
            assert!(
                def.get.is_some(),
                "{}: live but not in CONFIG GET",
                def.name
            );
            assert!(def.load.is_some(), "{}: live but no parser", def.name);
        }
        if def.load.is_some() {
            assert!(
                !def.help.is_empty() && !def.value_name.is_empty(),
                "{}",
                def.name
            );
        }
        assert!(def.load.is_some() || def.get.is_some(), "{}", def.name);
    }
    // Every flag clap builds comes from a row (the builder panics on a duplicate).
    let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
    cmd.debug_assert();
}

/// Start-up and CONFIG SET share one parser per setting, so a value one refuses the other
/// refuses too. Before the table, start-up took `maxclients 0` as 1, and `log-buffer-lines
/// 0`, `upstream-failure-limit 0` and `proto-max-multibulk-len 0` likewise.
#[test]
fn start_refuses_what_config_set_refuses() {
    for (name, bad) in [
        ("maxclients", "0"),
        ("maxclients", "-1"),
        ("timeout", "abc"),
        ("timeout", "-1"),
        ("proto-max-multibulk-len", "0"),
        ("log-buffer-lines", "0"),
        ("upstream-failure-limit", "0"),
        ("slowlog-log-slower-than", "-2"),
        ("proto-max-bulk-len", "1kb"),
        ("client-query-buffer-limit", "100"),
        ("lua-memory-limit", "100"),
        ("notify-keyspace-events", "Q"),
        ("maxmemory-policy", "volatile-lru-ish"),
        ("protected-mode", "maybe"),
        ("migrate-shadow-sample", "101"),
        ("upstream-timeout-ms", "0"),
    ] {
        let err = resolve(&[(name, bad)]).expect_err(name);
        assert!(err.starts_with(name), "{name} {bad}: {err}");
        let def = table::find(name).unwrap();
        let load = def.load.unwrap();
        let scratch_err = load(&mut Config::default(), bad).unwrap_err();
        assert!(err.ends_with(&scratch_err), "{err} / {scratch_err}");
    }
    // Redis's texts, as CONFIG SET replies them.
    let load =
        |name: &str, v: &str| (table::find(name).unwrap().load.unwrap())(&mut Config::default(), v);
    assert_eq!(
        load("maxclients", "0").unwrap_err(),
        "argument must be between 1 and 4294967295 inclusive"
    );
    assert_eq!(
        load("timeout", "x").unwrap_err(),
        "argument couldn't be parsed into an integer"
    );
    assert_eq!(
        load("slowlog-log-slower-than", "-2").unwrap_err(),
        format!("argument must be between -1 and {} inclusive", i64::MAX)
    );
}

#[test]
fn flags_and_their_values() {
    let args = flags(&[
        "--listen",
        "127.0.0.1:7001,127.0.0.1:7002",
        "--listen",
        "127.0.0.1:7003",
        "--slowlog-log-slower-than",
        "-1",
        "--maxmemory",
        "1mb",
    ])
    .unwrap();
    let c = Config::resolve(&args).unwrap();
    let ports: Vec<u16> = c.listen.iter().map(|a| a.port()).collect();
    assert_eq!(ports, [7001, 7002, 7003]);
    assert_eq!(c.slowlog_log_slower_than, -1);
    assert_eq!(c.maxmemory, 1024 * 1024);
    assert!(flags(&["--no-such-setting", "1"]).is_err());
    // Values are checked by the table, with the setting's name in the error.
    let args = flags(&["--maxclients", "0"]).unwrap();
    assert!(Config::resolve(&args)
        .unwrap_err()
        .starts_with("maxclients '0'"));
    // A secret is not echoed.
    let args = flags(&["--upstream", "redis://:hunter2@"]).unwrap();
    let err = Config::resolve(&args).unwrap_err();
    assert!(
        err.starts_with("upstream") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn the_migration_settings_combine() {
    let c = resolve(&[
        ("migrate-from", "embedded"),
        ("migrate-to", "redis://127.0.0.1:1"),
        ("migrate-stage", "shadow"),
        ("migrate-percent", "25"),
        ("migrate-shadow-sample", "50"),
    ])
    .unwrap();
    let m = c.migration.unwrap();
    assert_eq!(m.setting.stage, Stage::Shadow);
    assert_eq!(m.setting.percent(), 25.0);
    assert_eq!(m.shadow_sample, 5000);
    assert!(resolve(&[("migrate-from", "embedded")])
        .unwrap_err()
        .contains("go together"));
    assert!(resolve(&[
        ("upstream", "redis://127.0.0.1:1"),
        ("migrate-from", "embedded"),
        ("migrate-to", "redis://127.0.0.1:1"),
    ])
    .unwrap_err()
    .contains("exclude each other"));
}
