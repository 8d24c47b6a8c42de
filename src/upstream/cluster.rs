//! Redis Cluster: which node owns a key, and how that map is learned and corrected.
//!
//! A key belongs to one of 16384 hash slots: CRC16 (XMODEM) of the key, or only of the part
//! between the first `{` and the next `}` when that part is not empty (a *hash tag*). Keys
//! that share a tag share a slot and so a node: name a session's keys `sess:{<id>}:data`,
//! `sess:{<id>}:lock` and multi-key commands on them work in a cluster.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked of any known node, at start and every
//! refresh interval. Between refreshes it is corrected by the cluster itself: a node that
//! does not own a slot answers `-MOVED <slot> <host:port>` (the slot has moved for good: the
//! map is updated and a refresh is requested) or `-ASK <slot> <host:port>` (the slot is being
//! migrated: that one command is sent to the target, preceded by `ASKING`).

use std::time::Duration;

use super::stream::Connector;

use super::sentinel::{addr, ValueReader};
use crate::resp::value::Value;

pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM), as Redis Cluster uses it: polynomial 0x1021, initial value 0.
fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The CRC of each byte value, shifted through the polynomial (0x1021) eight times: a
/// key's CRC then costs one lookup per byte instead of eight shifts. Every command of a
/// cluster computes it, and a bulk copy does for every key.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The hash slot of a key, honouring hash tags.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        key[open + 1..]
            .iter()
            .position(|&c| c == b'}')
            .filter(|&len| len > 0)
            .map(|len| &key[open + 1..open + 1 + len])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// One range of `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    pub primary: String,
    pub replicas: Vec<String>,
}

fn node_addr(v: &Value, fallback_host: &str) -> Option<String> {
    let Value::Array(a) = v else { return None };
    let host = a.first()?.text()?;
    let port = a.get(1)?.int()?;
    // An empty or `?` host means "the address you reached me on".
    let host = if host.is_empty() || host == "?" {
        fallback_host.to_string()
    } else {
        host
    };
    Some(addr(&host, &port.to_string()))
}

/// Parses a `CLUSTER SLOTS` reply.
pub fn parse_slots(v: &Value, fallback_host: &str) -> Result<Vec<Range>, String> {
    let Value::Array(ranges) = v else {
        return Err(format!("unexpected CLUSTER SLOTS reply: {v:?}"));
    };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(r) = r else { continue };
        let (Some(start), Some(end)) = (
            r.first().and_then(Value::int),
            r.get(1).and_then(Value::int),
        ) else {
            continue;
        };
        if !(0..SLOTS as i64).contains(&start) || !(start..SLOTS as i64).contains(&end) {
            return Err(format!("CLUSTER SLOTS range {start}-{end} out of bounds"));
        }
        let Some(primary) = r.get(2).and_then(|n| node_addr(n, fallback_host)) else {
            continue;
        };
        let replicas = r
            .iter()
            .skip(3)
            .filter_map(|n| node_addr(n, fallback_host))
            .collect();
        out.push(Range {
            start: start as u16,
            end: end as u16,
            primary,
            replicas,
        });
    }
    if out.is_empty() {
        return Err("CLUSTER SLOTS: no slots are served (is the cluster created?)".into());
    }
    Ok(out)
}

/// `CLUSTER SLOTS` from the first of `nodes` that answers.
pub async fn discover(
    nodes: &[String],
    user: Option<&str>,
    password: Option<&str>,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<Vec<Range>, String> {
    let mut errors = Vec::new();
    for n in nodes {
        let work = async {
            let s = super::stream::dial(n, tls, timeout).await?;
            let mut c = ValueReader::new(s);
            if let Some(p) = password {
                match user {
                    Some(u) => c.send(&[b"AUTH", u.as_bytes(), p.as_bytes()]).await?,
                    None => c.send(&[b"AUTH", p.as_bytes()]).await?,
                }
                if let Value::Error(e) = c.next().await? {
                    return Err(e);
                }
            }
            c.send(&[b"CLUSTER", b"SLOTS"]).await?;
            let host = n.rsplit_once(':').map_or(n.as_str(), |(h, _)| h);
            match c.next().await? {
                Value::Error(e) => Err(e),
                v => parse_slots(&v, host.trim_matches(['[', ']'])),
            }
        };
        match tokio::time::timeout(timeout * 2, work).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => errors.push(format!("{n}: {e}")),
            Err(_) => errors.push(format!("{n}: timed out")),
        }
    }
    Err(format!(
        "no cluster node answered CLUSTER SLOTS: {}",
        errors.join("; ")
    ))
}

/// A redirection in a reply: `-MOVED 3999 127.0.0.1:6381` or `-ASK …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved(u16, String),
    Ask(u16, String),
}

/// The redirection a reply frame carries, if any.
pub fn redirect(frame: &[u8]) -> Option<Redirect> {
    let (ask, rest) = if let Some(r) = frame.strip_prefix(b"-MOVED ") {
        (false, r)
    } else if let Some(r) = frame.strip_prefix(b"-ASK ") {
        (true, r)
    } else {
        return None;
    };
    let line = std::str::from_utf8(rest).ok()?.trim_end();
    let (slot, to) = line.split_once(' ')?;
    let slot: u16 = slot.parse().ok().filter(|&s| (s as usize) < SLOTS)?;
    let to = to.to_string();
    Some(if ask {
        Redirect::Ask(slot, to)
    } else {
        Redirect::Moved(slot, to)
    })
}

/// Whether a block of replies may hold a redirection (cheap check before splitting it).
pub fn may_redirect(replies: &[u8]) -> bool {
    replies.windows(5).any(|w| w == b"-MOVE" || w == b"-ASK ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // The table gives what the polynomial gives bit by bit, byte after byte.
        let bitwise = |data: &[u8]| {
            let mut crc: u16 = 0;
            for &b in data {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        };
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for end in 0..all.len() {
            assert_eq!(crc16(&all[..end]), bitwise(&all[..end]), "{end} bytes");
        }
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn redirects() {
        assert_eq!(
            redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Moved(3999, "127.0.0.1:6381".into()))
        );
        assert_eq!(
            redirect(b"-ASK 1 10.0.0.2:7000\r\n"),
            Some(Redirect::Ask(1, "10.0.0.2:7000".into()))
        );
        assert_eq!(redirect(b"-ERR x\r\n"), None);
        assert_eq!(redirect(b"-MOVED 99999 a:1\r\n"), None);
        assert!(may_redirect(b"+OK\r\n-MOVED 1 a:1\r\n"));
        assert!(!may_redirect(b"+OK\r\n$5\r\nhello\r\n"));
    }

    #[test]
    fn parses_cluster_slots() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::Bulk(h.to_string().into()),
                Value::Int(p),
                Value::Bulk("id".into()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("", 7001)]),
        ]);
        let r = parse_slots(&v, "10.1.1.1").unwrap();
        assert_eq!(r[0].primary, "127.0.0.1:7000");
        assert_eq!(r[0].replicas, vec!["127.0.0.1:7003".to_string()]);
        assert_eq!(r[1].primary, "10.1.1.1:7001");
        assert!(parse_slots(&Value::Array(vec![]), "x").is_err());
    }
}
