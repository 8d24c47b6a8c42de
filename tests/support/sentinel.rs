//! Sentinel topologies for the integration tests: real redis-sentinel processes watching a
//! real primary, started and polled until they are ready to fail over.

use std::time::{Duration, Instant};

use super::{Conn, Proc, Value};

pub const MASTER: &str = "sessions";

fn sentinel(primary_port: u16) -> Proc {
    super::redis_sentinel(primary_port, MASTER, 2)
}

/// Three sentinels watching `primary`, started once every replica's link is up, and
/// returned once every sentinel knows every replica with fresh INFO (a sentinel only
/// promotes a replica whose INFO it has read recently; one it has never asked would abort
/// the first failover attempt). Also returns the gateway's `redis+sentinel://` URL.
pub fn sentinel_set(primary: &Proc, replicas: &[Proc]) -> (Vec<Proc>, String) {
    for r in replicas {
        let mut c = r.connect();
        poll("replication link up", Duration::from_secs(20), || {
            (field(&mut c, "replication", "master_link_status") == "up").then_some(())
        });
    }
    let sentinels: Vec<Proc> = (0..3).map(|_| sentinel(primary.port)).collect();
    for s in &sentinels {
        let mut c = s.connect();
        poll(
            "sentinels to know every replica",
            Duration::from_secs(30),
            || {
                let Value::Array(known) = c.cmd(&["SENTINEL", "replicas", MASTER]) else {
                    return None;
                };
                let ready = |r: &Value| {
                    let Value::Array(fields) = r else {
                        return false;
                    };
                    let get = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0].as_str() == name)
                            .map(|kv| kv[1].as_str())
                            .unwrap_or_default()
                    };
                    get("info-refresh").parse::<u64>().is_ok_and(|ms| ms < 5000)
                        && get("flags") == "slave"
                        && get("master-link-status") == "ok"
                };
                (known.len() == replicas.len() && known.iter().all(ready)).then_some(())
            },
        );
    }
    let url = format!(
        "redis+sentinel://{}/{MASTER}",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    (sentinels, url)
}

pub fn field(c: &mut Conn, section: &str, name: &str) -> String {
    c.cmd(&["INFO", section])
        .as_str()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        .unwrap_or_default()
}

pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
