//! The gateway's upstream (`upstream`, `upstream-*`), combined by `Config::finish` into
//! `upstream::Options` per Redis the server talks to.

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "upstream",
        Text,
        "URL",
        "Gateway mode: keep sessions on Redis/Valkey instead of the embedded engine. \
         `redis://[user:pass@]host:port[/db]`, `redis+sentinel://[pass@]s1:26379,s2/<master>` \
         or `redis+cluster://host:port,host:port`. Persistence options then do not apply.",
        |c, v| {
            crate::upstream::url::UpstreamUrl::parse(v)?;
            c.parts.upstream = text(v);
            Ok(())
        },
    )
    .secret(),
    Def::new(
        "upstream-connections",
        Int,
        "N",
        "Gateway: connections per upstream node, database and protocol. Default 2.",
        |c, v| {
            c.parts.upstream_connections = Some(int_in(v, 1, 64)? as usize);
            Ok(())
        },
    ),
    Def::new(
        "upstream-pinned-max",
        Int,
        "N",
        "Gateway: the most dedicated upstream connections held at once, by clients in a \
         transaction (WATCH/MULTI), a blocking command or subscriber mode. Past it such a \
         client gets an error at once. Default 1000.",
        |c, v| {
            c.parts.upstream_pinned_max = Some(int_in(v, 0, 1_000_000)? as usize);
            Ok(())
        },
    ),
    Def::new(
        "upstream-timeout-ms",
        Int,
        "MS",
        "Gateway: how long a client waits for an upstream reply before getting an error. \
         Default 1000.",
        |c, v| {
            c.parts.upstream_timeout = Some(millis(v)?);
            Ok(())
        },
    )
    .get(|r| {
        r.upstreams()
            .first()
            .map(|o| o.timeout().as_millis().to_string())
            .unwrap_or_default()
    })
    .mode(|r| match r.upstreams().is_empty() {
        true => Err("no upstream Redis in this mode".into()),
        false => Ok(()),
    })
    .live(|r, c, _| {
        if let Some(d) = c.parts.upstream_timeout {
            for o in r.upstreams() {
                o.set_timeout(d);
            }
        }
    }),
    Def::new(
        "upstream-connect-timeout-ms",
        Int,
        "MS",
        "Gateway: how long connecting (and authenticating) to an upstream may take. Default 1000.",
        |c, v| {
            c.parts.upstream_connect_timeout = Some(millis(v)?);
            Ok(())
        },
    ),
    Def::new(
        "upstream-health-interval-ms",
        Int,
        "MS",
        "Gateway: pause between health-check PINGs of each upstream node. Default 1000.",
        |c, v| {
            c.parts.upstream_health_interval = Some(millis(v)?);
            Ok(())
        },
    ),
    Def::new(
        "upstream-failure-limit",
        Int,
        "N",
        "Gateway: failed health checks in a row before a node is ejected. Default 3.",
        |c, v| {
            c.parts.upstream_failure_limit = Some(int_in(v, 1, i64::from(u32::MAX))? as u32);
            Ok(())
        },
    ),
    Def::new(
        "upstream-read-from-replica",
        Text,
        "POLICY",
        "Gateway with Sentinel: where reads go. `never` (the primary: read-your-writes), \
         `on-primary-failure` (a replica while the primary is down), `always` (replicas). \
         Default never.",
        |c, v| {
            let names = ["never", "on-primary-failure", "always"];
            c.parts.upstream_read_from_replica = Some(one_of(v, &names, ReadFrom::parse)?);
            Ok(())
        },
    ),
    Def::new(
        "upstream-failover-wait-ms",
        Int,
        "MS",
        "Gateway: how long a write waits for a healthy primary (e.g. while Sentinel promotes \
         one) before it fails; 0 fails at once. Default 0.",
        |c, v| {
            c.parts.upstream_failover_wait = Some(std::time::Duration::from_millis(count(v)?));
            Ok(())
        },
    ),
    Def::new(
        "upstream-refresh-interval-ms",
        Int,
        "MS",
        "Gateway with Sentinel or Cluster: how often the topology is asked for again, besides \
         following Sentinel's events and the cluster's redirections. Default 1000.",
        |c, v| {
            c.parts.upstream_refresh_interval = Some(millis(v)?);
            Ok(())
        },
    ),
];
