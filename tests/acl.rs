//! ACL users beyond what a script of replies shows (tests/scripts/acl.txt does that, against
//! redis-server): command rules mean what Redis means by them, for every command; sessiond's
//! description of a user recreates it in Redis; changes reach connections already logged in;
//! the ACL file (Redis's format, loaded by a real redis-server too); `requirepass` as the
//! default user's password; refusals grouped in ACL LOG; and the same rules in gateway and
//! migration modes.

mod support;

use std::time::{Duration, Instant};

use sessiond::cmd::table;
use support::{redis_server, sessiond, Conn, Proc, TempDir, Value, DEADLINE};

fn ok(v: Value) {
    assert_eq!(v, Value::Simple("OK".into()));
}

fn setuser(c: &mut Conn, name: &str, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", name];
    args.extend_from_slice(rules);
    ok(c.cmd(&args));
}

/// Arguments for every command and subcommand both servers know (not the newer ones, not
/// containers themselves): the name, then `x` up to the arity.
fn every_command() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for spec in table::commands() {
        if spec.newer || !spec.subcommands.is_empty() {
            continue;
        }
        let mut args: Vec<String> = spec.name.split('|').map(String::from).collect();
        let n = spec.arity.unsigned_abs() as usize;
        while args.len() < n {
            args.push("x".into());
        }
        out.push(args);
    }
    assert!(out.len() > 300, "{}", out.len());
    out
}

fn dryrun(c: &mut Conn, user: &str, cmds: &[Vec<String>]) -> Vec<String> {
    cmds.iter()
        .map(|args| {
            let mut a = vec!["ACL", "DRYRUN", user];
            a.extend(args.iter().map(String::as_str));
            format!("{}: {:?}", args.join(" "), c.cmd(&a))
        })
        .collect()
}

const RULE_SETS: &[&[&str]] = &[
    &["+@read", "-get"],
    &["+@all", "-@dangerous", "+flushdb"],
    &["-@all", "+@hash", "-@write"],
    &["+@write", "+@read", "-@hash"],
    &["-@all", "+@slow", "-@admin"],
    &["+config|get", "+client", "-client|kill", "+select|0"],
    &["+@all", "-@hash", "+hget", "-@hash"],
    &["+@READ", "+GET", "+Hset"],
    &["allcommands", "-@keyspace", "+del", "-config|set"],
    &[
        "+@pubsub",
        "+@transaction",
        "-exec",
        "+@scripting",
        "-@write",
        "+set",
    ],
];

/// For each rule set, every command is allowed or refused alike by redis-server and
/// sessiond (ACL DRYRUN), and the rules sessiond prints for the user (ACL LIST), given to
/// redis-server as a new user, allow exactly the same commands there: the description is
/// faithful even where its text differs from Redis 7.0's (which it rebuilds in hash order).
#[test]
fn command_rules_mean_what_redis_means_for_every_command() {
    let r = redis_server(&[]);
    let s = sessiond(&[]);
    let (mut rc, mut sc) = (r.connect(), s.connect());
    let cmds = every_command();
    for (i, rules) in RULE_SETS.iter().enumerate() {
        let name = format!("u{i}");
        let mut all = vec!["on", "~*", "&*"];
        all.extend_from_slice(rules);
        setuser(&mut rc, &name, &all);
        setuser(&mut sc, &name, &all);
        let want = dryrun(&mut rc, &name, &cmds);
        let got = dryrun(&mut sc, &name, &cmds);
        let diff: Vec<String> = want
            .iter()
            .zip(&got)
            .filter(|(w, g)| w != g)
            .map(|(w, g)| format!("redis: {w}\n  ours: {g}"))
            .collect();
        assert!(diff.is_empty(), "{rules:?}:\n{}", diff.join("\n"));
        // Our description, replayed by Redis.
        let line = sc.cmd(&["ACL", "GETUSER", &name]);
        let Value::Array(fields) = line else {
            panic!("GETUSER: {line:?}")
        };
        let commands = fields[5].as_str();
        let mirror = format!("m{i}");
        let mut again = vec!["reset", "on", "~*", "&*"];
        again.extend(commands.split(' '));
        setuser(&mut rc, &mirror, &again);
        assert_eq!(
            dryrun(&mut rc, &mirror, &cmds),
            want,
            "{rules:?} described as {commands}"
        );
    }
    // First-argument rules.
    setuser(&mut sc, "f", &["on", "~*", "+select|0"]);
    setuser(&mut rc, "f", &["on", "~*", "+select|0"]);
    for db in ["0", "1"] {
        assert_eq!(
            sc.cmd(&["ACL", "DRYRUN", "f", "select", db]),
            rc.cmd(&["ACL", "DRYRUN", "f", "select", db])
        );
    }
}

/// A change to a user reaches its connections at their next command; deleting it closes
/// them.
#[test]
fn changes_reach_connected_clients_and_deluser_disconnects() {
    let s = sessiond(&[]);
    let mut admin = s.connect();
    setuser(&mut admin, "app", &["on", ">pw", "~*", "+get"]);
    let mut app = s.connect();
    ok(app.cmd(&["AUTH", "app", "pw"]));
    assert!(matches!(app.cmd(&["SET", "k", "v"]), Value::Error(e) if e.starts_with("NOPERM")));
    setuser(&mut admin, "app", &["+set"]);
    ok(app.cmd(&["SET", "k", "v"]));
    setuser(&mut admin, "app", &["-get"]);
    assert!(matches!(app.cmd(&["GET", "k"]), Value::Error(e) if e.starts_with("NOPERM")));
    let Value::Simple(_) = admin.cmd(&["PING"]) else {
        panic!("admin")
    };
    assert_eq!(admin.cmd(&["ACL", "DELUSER", "app"]), Value::Int(1));
    let deadline = Instant::now() + DEADLINE;
    while !app.is_closed() {
        assert!(
            Instant::now() < deadline,
            "the deleted user's connection stays open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A disabled user cannot log in; its password no longer works either.
    setuser(&mut admin, "off", &["off", ">pw", "+@all", "~*"]);
    let mut c = s.connect();
    assert!(matches!(c.cmd(&["AUTH", "off", "pw"]), Value::Error(e) if e.starts_with("WRONGPASS")));
}

/// Permissions are checked again at EXEC: a command whose permission went away after it was
/// queued gets Redis's error in its place, the others run.
#[test]
fn exec_checks_queued_commands_again() {
    let s = sessiond(&[]);
    let mut admin = s.connect();
    setuser(&mut admin, "q", &["on", ">pw", "~*", "+@all"]);
    let mut q = s.connect();
    ok(q.cmd(&["AUTH", "q", "pw"]));
    ok(q.cmd(&["MULTI"]));
    assert_eq!(q.cmd(&["SET", "k", "v"]), Value::Simple("QUEUED".into()));
    assert_eq!(q.cmd(&["GET", "k"]), Value::Simple("QUEUED".into()));
    setuser(&mut admin, "q", &["-set"]);
    assert_eq!(
        q.cmd(&["EXEC"]),
        Value::Array(vec![
            Value::Error("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: no permission to execute the command or subcommand".into()),
            Value::Null,
        ])
    );
}

/// `requirepass` is the default user's password, as in Redis: CONFIG SET changes it, an
/// empty one makes the user `nopass` again, and ACL LIST shows its digest.
#[test]
fn requirepass_is_the_default_users_password() {
    let s = sessiond(&["--requirepass", "first"]);
    let mut c = s.connect();
    assert!(matches!(c.cmd(&["GET", "k"]), Value::Error(e) if e.starts_with("NOAUTH")));
    ok(c.cmd(&["AUTH", "default", "first"]));
    let list = c.cmd(&["ACL", "LIST"]);
    assert!(
        format!("{list:?}").contains("user default on #"),
        "{list:?}"
    );
    ok(c.cmd(&["CONFIG", "SET", "requirepass", "second"]));
    let mut d = s.connect();
    assert!(matches!(d.cmd(&["AUTH", "first"]), Value::Error(e) if e.starts_with("WRONGPASS")));
    ok(d.cmd(&["AUTH", "second"]));
    ok(c.cmd(&["CONFIG", "SET", "requirepass", ""]));
    let mut e = s.connect();
    assert_eq!(e.cmd(&["ACL", "WHOAMI"]), Value::bulk("default"));
    assert!(format!("{:?}", e.cmd(&["ACL", "LIST"])).contains("user default on nopass"));
}

/// The ACL file: read at start, written by ACL SAVE in Redis's format (a real redis-server
/// loads it and grants the same), re-read by ACL LOAD (a bad line changes nothing), and a
/// bad file stops the start with the line named.
#[test]
fn the_acl_file_loads_saves_and_is_redis_format() {
    let dir = TempDir::new("aclfile");
    let path = dir.path("users.acl");
    std::fs::write(
        &path,
        "# sessions\nuser app on >pw ~PHPREDIS_SESSION:* +@read +@write -flushall\n",
    )
    .expect("write");
    let file = path.to_str().expect("path");
    let s = sessiond(&["--aclfile", file]);
    let mut c = s.connect();
    assert_eq!(
        c.cmd(&["ACL", "USERS"]),
        Value::Array(vec![Value::bulk("app"), Value::bulk("default")])
    );
    let mut app = s.connect();
    ok(app.cmd(&["AUTH", "app", "pw"]));
    assert!(matches!(app.cmd(&["FLUSHALL"]), Value::Error(e) if e.starts_with("NOPERM")));
    setuser(&mut c, "ops", &["on", ">opspw", "+@admin", "&*"]);
    ok(c.cmd(&["ACL", "SAVE"]));
    let saved = std::fs::read_to_string(&path).expect("saved");
    assert!(saved.contains("user ops on #"), "{saved}");
    assert!(!saved.contains("opspw"), "only digests are saved: {saved}");
    // redis-server reads the file sessiond wrote and grants the same.
    let r = redis_server(&["--aclfile", file]);
    let mut rc = r.connect();
    for args in [
        &["ACL", "DRYRUN", "app", "get", "PHPREDIS_SESSION:1"][..],
        &["ACL", "DRYRUN", "app", "get", "other"],
        &["ACL", "DRYRUN", "app", "flushall"],
        &["ACL", "DRYRUN", "ops", "config", "set", "maxmemory", "0"],
        &["ACL", "DRYRUN", "ops", "get", "k"],
    ] {
        assert_eq!(c.cmd(args), rc.cmd(args), "{args:?}");
    }
    let mut as_ops = r.connect();
    ok(as_ops.cmd(&["AUTH", "ops", "opspw"]));
    // ACL LOAD: a file with a bad line changes nothing; a good one replaces every user and
    // closes the connections of users that are gone.
    std::fs::write(&path, "user app on >pw +get ~*\nuser bad +nosuch\n").expect("write");
    let err = c.cmd(&["ACL", "LOAD"]);
    assert!(
        matches!(&err, Value::Error(e) if e.contains(":2:")),
        "{err:?}"
    );
    assert_eq!(
        c.cmd(&["ACL", "DRYRUN", "ops", "config", "get", "x"]),
        Value::Simple("OK".into())
    );
    let mut ops = s.connect();
    ok(ops.cmd(&["AUTH", "ops", "opspw"]));
    std::fs::write(&path, "user app on >pw +get ~*\n").expect("write");
    ok(c.cmd(&["ACL", "LOAD"]));
    assert_eq!(
        c.cmd(&["ACL", "USERS"]),
        Value::Array(vec![Value::bulk("app"), Value::bulk("default")])
    );
    let deadline = Instant::now() + DEADLINE;
    while !ops.is_closed() {
        assert!(
            Instant::now() < deadline,
            "a removed user's connection stays open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A bad file stops the start, naming the line.
    std::fs::write(&path, "user a on +get\nuser b on +nosuch\n").expect("write");
    let out = std::process::Command::new(support::sessiond_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--aclfile",
            file,
            "--dir",
        ])
        .arg(dir.path("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("users.acl:2:") && err.contains("+nosuch"),
        "{err}"
    );
}

/// Refusals and failed logins are recorded in ACL LOG, like events grouped into one entry
/// (a client looping on a refused command fills one entry, not the log).
#[test]
fn acl_log_groups_repeated_refusals() {
    let s = sessiond(&[]);
    let mut admin = s.connect();
    setuser(&mut admin, "app", &["on", ">pw", "~s:*", "+get"]);
    let mut app = s.connect();
    ok(app.cmd(&["AUTH", "app", "pw"]));
    for _ in 0..500 {
        assert!(matches!(app.cmd(&["GET", "other"]), Value::Error(_)));
    }
    assert!(matches!(app.cmd(&["SET", "s:1", "v"]), Value::Error(_)));
    let Value::Array(entries) = admin.cmd(&["ACL", "LOG"]) else {
        panic!("ACL LOG")
    };
    assert_eq!(entries.len(), 2, "{entries:?}");
    let field = |e: &Value, name: &str| -> Value {
        let Value::Array(kv) = e else { panic!("{e:?}") };
        kv.chunks(2)
            .find(|p| p[0].as_str() == name)
            .map(|p| p[1].clone())
            .expect(name)
    };
    assert_eq!(field(&entries[0], "reason"), Value::bulk("command"));
    assert_eq!(field(&entries[0], "object"), Value::bulk("set"));
    assert_eq!(field(&entries[1], "reason"), Value::bulk("key"));
    assert_eq!(field(&entries[1], "object"), Value::bulk("other"));
    assert_eq!(field(&entries[1], "count"), Value::Int(500));
    assert!(field(&entries[1], "client-info")
        .as_str()
        .contains("user=app"));
    ok(admin.cmd(&["CONFIG", "SET", "acllog-max-len", "1"]));
    let Value::Array(entries) = admin.cmd(&["ACL", "LOG"]) else {
        panic!("ACL LOG")
    };
    assert_eq!(entries.len(), 1);
}

fn limited_user_checks(s: &Proc) {
    let mut admin = s.connect();
    setuser(
        &mut admin,
        "app",
        &[
            "on",
            ">pw",
            "~PHPREDIS_SESSION:*",
            "+@read",
            "+@write",
            "-flushall",
        ],
    );
    let mut app = s.connect();
    ok(app.cmd(&["AUTH", "app", "pw"]));
    ok(app.cmd(&["SET", "PHPREDIS_SESSION:1", "v"]));
    assert_eq!(app.cmd(&["GET", "PHPREDIS_SESSION:1"]), Value::bulk("v"));
    assert_eq!(
        app.cmd(&["HSET", "PHPREDIS_SESSION:h", "f", "1"]),
        Value::Int(1)
    );
    assert_eq!(
        app.cmd(&["GET", "other"]),
        Value::Error(
            "NOPERM this user has no permissions to access one of the keys used as arguments"
                .into()
        )
    );
    assert_eq!(
        app.cmd(&["FLUSHALL"]),
        Value::Error("NOPERM this user has no permissions to run the 'flushall' command".into())
    );
    assert_eq!(
        app.cmd(&["ACL", "WHOAMI"]),
        Value::Error("NOPERM this user has no permissions to run the 'acl|whoami' command".into())
    );
    assert_eq!(admin.cmd(&["ACL", "WHOAMI"]), Value::bulk("default"));
}

/// Gateway mode: sessiond authenticates its clients with its own users; it reaches the
/// upstream with its own credentials (the URL's), which a client never needs.
#[test]
fn acl_users_in_gateway_mode() {
    let r = redis_server(&["--requirepass", "upstreampw"]);
    let url = format!("redis://:upstreampw@127.0.0.1:{}", r.port);
    let s = sessiond(&["--upstream", &url]);
    limited_user_checks(&s);
    // What the limited user wrote reached Redis.
    let mut rc = r.connect();
    ok(rc.cmd(&["AUTH", "upstreampw"]));
    assert_eq!(rc.cmd(&["GET", "PHPREDIS_SESSION:1"]), Value::bulk("v"));
    // ACL is sessiond's, not forwarded: Redis has only its default user.
    assert_eq!(
        rc.cmd(&["ACL", "USERS"]),
        Value::Array(vec![Value::bulk("default")])
    );
}

/// Migration mode: the router checks the same rules before routing.
#[test]
fn acl_users_in_migration_mode() {
    let r = redis_server(&[]);
    let s = sessiond(&[
        "--migrate-from",
        &format!("redis://127.0.0.1:{}", r.port),
        "--migrate-to",
        "embedded",
        "--migrate-stage",
        "live",
    ]);
    limited_user_checks(&s);
}
