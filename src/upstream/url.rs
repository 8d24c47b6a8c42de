//! `--upstream` URLs, in the forms Redis clients already use:
//!
//! * `redis://[user:pass@]host:port[/db]` (one server; `rediss://` is refused for now);
//! * `redis+sentinel://[user:pass@]s1:26379,s2:26379/<master-name>[/db]`;
//! * `redis+cluster://[user:pass@]host:port,host:port`.
//!
//! The password given is the one sessiond uses to authenticate to the upstream (and, for
//! Sentinel, to the Redis servers it reports); client passwords are sessiond's own
//! `requirepass`.

use std::fmt;

/// Where the sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One Redis/Valkey server.
    Single(String),
    /// A primary (and replicas) found through Sentinel.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, discovered from any of the seed nodes.
    Cluster(Vec<String>),
}

#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub topology: Topology,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The database clients start in (`SELECT` still works per client).
    pub db: usize,
    /// TLS to every node and sentinel (`rediss://`, `rediss+sentinel://`,
    /// `rediss+cluster://`), with the query's options.
    pub tls: Option<super::stream::TlsUpstream>,
}

impl fmt::Debug for UpstreamUrl {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamUrl")
            .field("topology", &self.topology)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for UpstreamUrl {
    /// The URL without credentials, for logs and INFO.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tls.is_some() { "s" } else { "" };
        match &self.topology {
            Topology::Single(a) => write!(f, "redis{s}://{a}/{}", self.db),
            Topology::Sentinel { sentinels, master } => write!(
                f,
                "redis{s}+sentinel://{}/{master}/{}",
                sentinels.join(","),
                self.db
            ),
            Topology::Cluster(seeds) => write!(f, "redis{s}+cluster://{}", seeds.join(",")),
        }
    }
}

/// Adds Redis's default port when an address has none.
fn with_port(host: &str, default: u16) -> Result<String, String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port or [v6]
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("bad address '{host}'"));
        };
        return match after.strip_prefix(':') {
            Some(p) => port(p).map(|p| format!("[{addr}]:{p}")),
            None if after.is_empty() => Ok(format!("[{addr}]:{default}")),
            None => Err(format!("bad address '{host}'")),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => port(p).map(|p| format!("{h}:{p}")),
        Some(_) => Err(format!("bad address '{host}'")),
        None => Ok(format!("{host}:{default}")),
    }
}

fn port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("bad port '{p}'"))
}

/// Decodes `%XX` escapes in credentials (a password may hold `@` or `:`).
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape in credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8".to_string())
}

/// `tls-ca-cert-file=…&tls-cert-file=…&tls-key-file=…&tls-server-name=…` (values
/// %-escaped as needed).
fn tls_options(query: Option<&str>) -> Result<super::stream::TlsUpstream, String> {
    let mut t = super::stream::TlsUpstream::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("TLS option '{pair}' needs a value"))?;
        let v = Some(unescape(v)?);
        match k {
            "tls-ca-cert-file" => t.ca_cert_file = v,
            "tls-cert-file" => t.cert_file = v,
            "tls-key-file" => t.key_file = v,
            "tls-server-name" => t.server_name = v,
            other => {
                return Err(format!(
                    "unknown TLS option '{other}' (tls-ca-cert-file, tls-cert-file, tls-key-file, tls-server-name)"
                ))
            }
        }
    }
    Ok(t)
}

fn db_index(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("bad database number '{s}'"))
}

impl UpstreamUrl {
    pub fn parse(url: &str) -> Result<UpstreamUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            "expected redis://, redis+sentinel:// or redis+cluster:// (rediss… for TLS)".to_string()
        })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (scheme, tls) = match scheme.strip_prefix("rediss") {
            Some(after) => (format!("redis{after}"), Some(tls_options(query)?)),
            None if query.is_some() => {
                return Err("options after '?' are TLS options: use rediss://".into())
            }
            None => (scheme.to_string(), None),
        };
        let scheme = scheme.as_str();
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (
                    Some(unescape(u)?).filter(|u| !u.is_empty()),
                    Some(unescape(p)?),
                ),
                // `redis://secret@host`: a password alone, as redis-cli -u reads it.
                None => (None, Some(unescape(a)?)),
            },
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_end_matches('/')),
            None => (rest, ""),
        };
        let addrs = |default: u16| -> Result<Vec<String>, String> {
            hosts
                .split(',')
                .map(|h| with_port(h.trim(), default))
                .collect()
        };
        let (topology, db) = match scheme {
            "redis" => {
                let a = addrs(6379)?;
                if a.len() != 1 {
                    return Err("redis:// takes one host; use redis+cluster:// for several".into());
                }
                let db = if path.is_empty() { 0 } else { db_index(path)? };
                (Topology::Single(a[0].clone()), db)
            }
            "redis+sentinel" => {
                let mut parts = path.splitn(2, '/');
                let master = parts.next().unwrap_or_default();
                if master.is_empty() {
                    return Err("redis+sentinel:// needs the master name: .../<master-name>".into());
                }
                let db = match parts.next() {
                    Some(d) if !d.is_empty() => db_index(d)?,
                    _ => 0,
                };
                (
                    Topology::Sentinel {
                        sentinels: addrs(26379)?,
                        master: master.to_string(),
                    },
                    db,
                )
            }
            "redis+cluster" => {
                if !path.is_empty() && path != "0" {
                    return Err("Redis Cluster has only database 0".into());
                }
                (Topology::Cluster(addrs(6379)?), 0)
            }
            other => return Err(format!("unknown scheme '{other}://'")),
        };
        Ok(UpstreamUrl {
            topology,
            user,
            password,
            db,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single() {
        let u = UpstreamUrl::parse("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!(u.topology, Topology::Single("127.0.0.1:6390".into()));
        assert_eq!(u.db, 2);
        assert_eq!(u.password, None);
        let u = UpstreamUrl::parse("redis://app:p%40ss@redis.local").unwrap();
        assert_eq!(u.topology, Topology::Single("redis.local:6379".into()));
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        let u = UpstreamUrl::parse("redis://:secret@[::1]:7000").unwrap();
        assert_eq!(u.topology, Topology::Single("[::1]:7000".into()));
        assert_eq!(u.user, None);
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert!(!format!("{u:?}").contains("secret"));
        assert!(!u.to_string().contains("secret"));
    }

    #[test]
    fn sentinel_and_cluster() {
        let u = UpstreamUrl::parse("redis+sentinel://pw@s1,s2:26380/mymaster/3").unwrap();
        assert_eq!(
            u.topology,
            Topology::Sentinel {
                sentinels: vec!["s1:26379".into(), "s2:26380".into()],
                master: "mymaster".into()
            }
        );
        assert_eq!(u.db, 3);
        let u = UpstreamUrl::parse("redis+cluster://a:7000,b:7001").unwrap();
        assert_eq!(
            u.topology,
            Topology::Cluster(vec!["a:7000".into(), "b:7001".into()])
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "127.0.0.1:6379",
            "http://x",
            "redis://",
            "redis://a:0",
            "redis://a:99999",
            "redis://a,b",
            "redis://a/x",
            "redis+sentinel://s1",
            "redis+cluster://a/1",
            "rediss://a?bogus=1",
            "redis://a?tls-ca-cert-file=x",
            "redis://%zz@a",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
