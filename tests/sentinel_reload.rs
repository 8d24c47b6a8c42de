//! A configuration reload points the gateway at a new sentinel set (its own test binary:
//! a failover of its own beside tests/sentinel.rs's would share the 2 cores with it).

mod support;

use std::time::Duration;

use support::reloadable::Reloadable;
use support::sentinel::{field, poll, sentinel_set, MASTER};
use support::{redis_server, Value};

/// A reload points the gateway at a new sentinel set: the old set's only sentinel is
/// killed, a failover is asked of the new set, and the gateway follows it there.
#[test]
fn a_reload_moves_the_gateway_to_a_new_sentinel_set() {
    let primary = redis_server(&[]);
    let pp = primary.port.to_string();
    let replica = redis_server(&["--replicaof", "127.0.0.1", &pp]);
    let (mut sentinels, _) = sentinel_set(&primary, std::slice::from_ref(&replica));
    let url_of = |ports: &[u16]| {
        format!(
            "redis+sentinel://{}/{MASTER}",
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let gw = Reloadable::start(
        &format!("upstream = \"{}\"\n", url_of(&[sentinels[0].port])),
        &["--upstream-refresh-interval-ms", "200"],
    );
    let mut c = gw.proc.connect();
    assert_eq!(c.cmd(&["SET", "before", "1"]), Value::Simple("OK".into()));

    let new_set = url_of(&[sentinels[1].port, sentinels[2].port]);
    gw.rewrite(&format!("upstream = \"{new_set}\"\n"));
    let (ok, text) = gw.reload(&[]);
    assert!(ok && text.contains("upstream"), "{text}");
    assert!(field(&mut c, "upstream", "upstream_url").contains(&sentinels[1].port.to_string()));

    // The old set goes away; the new one promotes the replica.
    sentinels[0].kill();
    let mut s2 = sentinels[1].connect();
    poll(
        "the new set to accept a failover",
        Duration::from_secs(30),
        || (s2.cmd(&["SENTINEL", "FAILOVER", MASTER]) == Value::Simple("OK".into())).then_some(()),
    );
    // (Fresh connections: Sentinel kills the normal clients of the replica it promotes.)
    poll(
        "the replica to be promoted",
        Duration::from_secs(30),
        || (field(&mut replica.connect(), "replication", "role") == "master").then_some(()),
    );
    // The gateway learns the new primary; only the new set can have told it.
    let promoted = format!("addr=127.0.0.1:{},role=master", replica.port);
    poll(
        "the gateway to follow the new primary",
        Duration::from_secs(30),
        || {
            c.cmd(&["INFO", "upstream"])
                .as_str()
                .contains(&promoted)
                .then_some(())
        },
    );
    assert_eq!(c.cmd(&["SET", "after", "2"]), Value::Simple("OK".into()));
    assert_eq!(replica.connect().cmd(&["GET", "after"]), Value::bulk("2"));
}
