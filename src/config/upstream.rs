//! Gateway options from `--upstream` and the `upstream-*` settings.

use super::*;

/// Gateway options for one upstream URL, with the `upstream-*` settings applied.
pub(super) fn upstream_options(
    u: &str,
    databases: usize,
    p: &Parts,
) -> Result<UpstreamOptions, String> {
    let url = UpstreamUrl::parse(u).map_err(|e| format!("--upstream: {e}"))?;
    // A cluster has only database 0.
    let databases = if matches!(url.topology, Topology::Cluster(_)) {
        1
    } else {
        databases
    };
    let mut o = UpstreamOptions::new(url, databases);
    if let Some(n) = p.upstream_connections {
        o.connections = n;
    }
    if let Some(n) = p.upstream_pinned_max {
        o.pinned_max = n;
    }
    if let Some(d) = p.upstream_timeout {
        o.set_timeout(d);
    }
    if let Some(d) = p.upstream_connect_timeout {
        o.connect_timeout = d;
    }
    if let Some(d) = p.upstream_health_interval {
        o.health_interval = d;
    }
    if let Some(n) = p.upstream_failure_limit {
        o.failure_limit = n;
    }
    if let Some(r) = p.upstream_read_from_replica {
        o.read_from_replica = r;
    }
    if let Some(d) = p.upstream_failover_wait {
        o.failover_wait = d;
    }
    if let Some(d) = p.upstream_refresh_interval {
        o.refresh_interval = d;
    }
    Ok(o)
}
