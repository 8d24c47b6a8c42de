//! Gateway options from `--upstream` and the `upstream-*` settings.

use super::*;

/// Gateway options for one upstream URL, with the `upstream-*` settings applied.
pub(super) fn upstream_options(
    u: &str,
    databases: usize,
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<UpstreamOptions, String> {
    let url = UpstreamUrl::parse(u).map_err(|e| format!("--upstream: {e}"))?;
    // A cluster has only database 0.
    let databases = if matches!(url.topology, Topology::Cluster(_)) {
        1
    } else {
        databases
    };
    let mut o = UpstreamOptions::new(url, databases);
    let ms = std::time::Duration::from_millis;
    if let Some(n) = args.upstream_connections.or(file.upstream_connections) {
        if n == 0 || n > 64 {
            return Err("upstream-connections: 1 to 64".into());
        }
        o.connections = n;
    }
    if let Some(n) = args.upstream_pinned_max.or(file.upstream_pinned_max) {
        if n > 1_000_000 {
            return Err("upstream-pinned-max: 0 to 1000000".into());
        }
        o.pinned_max = n;
    }
    let positive = |v: u64, name: &str| {
        if v == 0 {
            Err(format!("{name}: must be above 0"))
        } else {
            Ok(ms(v))
        }
    };
    if let Some(v) = args.upstream_timeout_ms.or(file.upstream_timeout_ms) {
        o.set_timeout(positive(v, "upstream-timeout-ms")?);
    }
    if let Some(v) = args
        .upstream_connect_timeout_ms
        .or(file.upstream_connect_timeout_ms)
    {
        o.connect_timeout = positive(v, "upstream-connect-timeout-ms")?;
    }
    if let Some(v) = args
        .upstream_health_interval_ms
        .or(file.upstream_health_interval_ms)
    {
        o.health_interval = positive(v, "upstream-health-interval-ms")?;
    }
    if let Some(v) = args.upstream_failure_limit.or(file.upstream_failure_limit) {
        o.failure_limit = v.max(1);
    }
    if let Some(v) = args
        .upstream_read_from_replica
        .clone()
        .or(file.upstream_read_from_replica.clone())
    {
        o.read_from_replica = ReadFrom::parse(&v).ok_or_else(|| {
            format!(
                "upstream-read-from-replica '{v}': expected never, on-primary-failure or always"
            )
        })?;
    }
    if let Some(v) = args
        .upstream_failover_wait_ms
        .or(file.upstream_failover_wait_ms)
    {
        o.failover_wait = ms(v);
    }
    if let Some(v) = args
        .upstream_refresh_interval_ms
        .or(file.upstream_refresh_interval_ms)
    {
        o.refresh_interval = positive(v, "upstream-refresh-interval-ms")?;
    }
    Ok(o)
}
