//! Redis Sentinel: where the primary and its replicas are, and when that changes.
//!
//! sessiond asks the sentinels (in the URL's order, first that answers) for the primary
//! (`SENTINEL get-master-addr-by-name`) and the replicas (`SENTINEL replicas`), and then:
//! * subscribes to `+switch-master` on every sentinel, so a promotion re-routes writes the
//!   moment Sentinel announces it, without a restart;
//! * asks again every refresh interval, so a missed message (a sentinel restarting, a
//!   partition) is corrected within that interval.
//!
//! Sentinel itself decides failovers; sessiond never promotes anything. What it adds is
//! routing during the gap: with `read-from-replica = on-primary-failure`, reads go to a
//! healthy replica while the primary is unreachable, so sessions stay readable while Sentinel
//! waits out `down-after-milliseconds` and promotes.

use std::time::Duration;

use super::stream::Connector;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{encode, MAX_REPLY_BULK};
use crate::resp::value::{decode, Value};

/// What Sentinel says the topology is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub primary: String,
    /// The replicas Sentinel knows.
    pub replicas: Vec<String>,
}

/// Joins host and port as an address, bracketing IPv6 hosts.
pub fn addr(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Reads replies off a stream one at a time.
pub struct ValueReader {
    pub stream: super::stream::UpStream,
    buf: BytesMut,
}

impl ValueReader {
    pub fn new(stream: super::stream::UpStream) -> Self {
        ValueReader {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    pub async fn next(&mut self) -> Result<Value, String> {
        loop {
            match decode(&self.buf, MAX_REPLY_BULK) {
                Ok(Some((v, n))) => {
                    let _ = self.buf.split_to(n);
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => return Err(e.0),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub async fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut b = BytesMut::new();
        encode(&mut b, args);
        self.stream.write_all(&b).await.map_err(|e| e.to_string())
    }
}

async fn connect(
    sentinel: &str,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<ValueReader, String> {
    let s = super::stream::dial(sentinel, tls, timeout)
        .await
        .map_err(|e| format!("sentinel {sentinel}: {e}"))?;
    Ok(ValueReader::new(s))
}

/// Field `name` of a flattened field/value array (RESP2 form of a map).
fn field<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items
        .chunks(2)
        .find(|kv| kv[0].text().as_deref() == Some(name))
        .and_then(|kv| kv.get(1))
}

/// Asks one sentinel.
async fn ask(
    sentinel: &str,
    master: &str,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<View, String> {
    let work = async {
        let mut c = connect(sentinel, tls, timeout).await?;
        c.send(&[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()])
            .await?;
        c.send(&[b"SENTINEL", b"replicas", master.as_bytes()])
            .await?;
        let primary = match c.next().await? {
            Value::Array(a) if a.len() == 2 => {
                let (h, p) = (a[0].text(), a[1].text());
                match (h, p) {
                    (Some(h), Some(p)) => addr(&h, &p),
                    _ => return Err(format!("sentinel {sentinel}: bad master address")),
                }
            }
            Value::Nil => return Err(format!("sentinel {sentinel}: no master named '{master}'")),
            Value::Error(e) => return Err(format!("sentinel {sentinel}: {e}")),
            v => return Err(format!("sentinel {sentinel}: unexpected reply {v:?}")),
        };
        let mut replicas = Vec::new();
        if let Value::Array(list) = c.next().await? {
            for r in list {
                // Every replica Sentinel knows, whatever its flags (a sentinel that has just
                // started shows them `disconnected`): sessiond's own health checks decide
                // whether a replica takes reads.
                let Value::Array(fields) = r else { continue };
                if let (Some(h), Some(p)) = (
                    field(&fields, "ip").and_then(Value::text),
                    field(&fields, "port").and_then(Value::text),
                ) {
                    replicas.push(addr(&h, &p));
                }
            }
        }
        replicas.sort();
        Ok(View { primary, replicas })
    };
    tokio::time::timeout(timeout * 2, work)
        .await
        .map_err(|_| format!("sentinel {sentinel}: timed out"))?
}

/// The first answer from the sentinels, tried in order.
pub async fn discover(
    sentinels: &[String],
    master: &str,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<View, String> {
    let mut errors = Vec::new();
    for s in sentinels {
        match ask(s, master, tls, timeout).await {
            Ok(v) => return Ok(v),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no sentinel answered: {}", errors.join("; ")))
}

/// Subscribes to `+switch-master` on one sentinel and calls `on_switch` with the new
/// primary's address for every switch of `master`. Returns when the connection fails.
pub async fn follow(
    sentinel: &str,
    master: &str,
    tls: Option<&Connector>,
    timeout: Duration,
    on_switch: impl Fn(String),
) -> Result<(), String> {
    let mut c = connect(sentinel, tls, timeout).await?;
    c.send(&[b"SUBSCRIBE", b"+switch-master"]).await?;
    loop {
        let msg = c.next().await?;
        let Value::Array(parts) = msg else { continue };
        if parts.len() != 3 || parts[0].text().as_deref() != Some("message") {
            continue;
        }
        // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
        let Some(payload) = parts[2].text() else {
            continue;
        };
        let words: Vec<&str> = payload.split_whitespace().collect();
        if words.len() == 5 && words[0] == master {
            on_switch(addr(words[3], words[4]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_addresses() {
        let f = vec![
            Value::Bulk("ip".into()),
            Value::Bulk("10.0.0.1".into()),
            Value::Bulk("port".into()),
            Value::Bulk("6380".into()),
        ];
        assert_eq!(
            field(&f, "port").and_then(Value::text).as_deref(),
            Some("6380")
        );
        assert_eq!(field(&f, "flags"), None);
        assert_eq!(addr("10.0.0.1", "6380"), "10.0.0.1:6380");
        assert_eq!(addr("::1", "6380"), "[::1]:6380");
    }
}
