//! Reply parsing, for sessiond as a *client* of Redis (gateway mode).
//!
//! Two levels, because the gateway needs both:
//! * [`FrameScanner`] only finds where each reply ends. Forwarded replies are copied to the
//!   client byte for byte, so the hot path never builds values: it walks headers and skips
//!   bulk payloads, keeps no stack (an aggregate just adds its element count to the number of
//!   items still to read), and resumes where it stopped when a reply arrives in pieces.
//! * [`decode`] builds a [`Value`] for the replies sessiond itself reads (health checks,
//!   Sentinel and Cluster topology, the `Store` methods).
//!
//! Upstreams are trusted more than clients but still bounded: a bulk length above
//! `max_bulk` or a malformed header is a protocol error that closes the upstream connection,
//! and nothing is allocated from a declared length.

use bytes::Bytes;

/// A decoded reply. RESP3-only scalars are kept as their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    /// Arrays, sets, pushes; maps flattened to key, value, key, value…
    Array(Vec<Value>),
}

impl Value {
    /// The value as text (simple strings, bulk strings, integers).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Simple(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// A malformed reply from an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub String);

/// Deepest nesting [`decode`] follows (Redis's own replies nest at most a few levels).
const MAX_DEPTH: usize = 32;

/// A header line: its type byte, its text, and the offset after its CRLF.
type Line<'a> = (u8, &'a [u8], usize);

/// The header line starting at `at`, if it has all arrived.
fn line(buf: &[u8], at: usize) -> Result<Option<Line<'_>>, ReplyError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let rest = &buf[at + 1..];
    match memchr_crlf(rest) {
        Some(end) => Ok(Some((kind, &rest[..end], at + 1 + end + 2))),
        None if rest.len() > 64 * 1024 && !matches!(kind, b'+' | b'-') => {
            Err(ReplyError("reply header line too long".into()))
        }
        None => Ok(None),
    }
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|&c| c == b'\r') {
        let i = from + i;
        if b.get(i + 1) == Some(&b'\n') {
            return Some(i);
        }
        if i + 1 >= b.len() {
            return None;
        }
        from = i + 1;
    }
    None
}

fn number(text: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            ReplyError(format!(
                "bad length or integer in reply: {:?}",
                String::from_utf8_lossy(&text[..text.len().min(32)])
            ))
        })
}

/// What one header says follows it.
enum Item {
    /// A complete scalar ending at this offset.
    Done(usize),
    /// `n` more items follow (aggregates); the header ends at the offset.
    Nested(u64, usize),
    /// A payload of `len` bytes + CRLF starts at the offset.
    Payload(usize, usize),
}

fn item(buf: &[u8], at: usize, max_bulk: u64) -> Result<Option<Item>, ReplyError> {
    let Some((kind, text, next)) = line(buf, at)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Item::Done(next),
        b'$' | b'!' | b'=' => {
            let n = number(text)?;
            if n < 0 {
                Item::Done(next)
            } else if n as u64 > max_bulk {
                return Err(ReplyError(format!(
                    "reply bulk of {n} bytes is over the limit"
                )));
            } else {
                Item::Payload(n as usize, next)
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(text)?;
            if n < 0 {
                // A null aggregate (`*-1`), read as the decoder reads it.
                Item::Done(next)
            } else {
                let n = n as u64;
                Item::Nested(
                    match kind {
                        b'%' => n.saturating_mul(2),
                        // An attribute map precedes the reply it annotates.
                        b'|' => n.saturating_mul(2).saturating_add(1),
                        _ => n,
                    },
                    next,
                )
            }
        }
        other => {
            return Err(ReplyError(format!(
                "unexpected reply type byte 0x{other:02x}"
            )))
        }
    }))
}

/// Finds reply boundaries in a growing buffer, resuming where it stopped.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Offset of the next unscanned byte of the current reply.
    pos: usize,
    /// Items of the current reply still to read (0: between replies).
    remaining: u64,
}

impl FrameScanner {
    /// The length of the complete reply at the start of `buf`, or `None` until it has all
    /// arrived. Call again with the same buffer (grown) after `None`; after `Some(len)` the
    /// caller removes `len` bytes from the front and the scanner starts afresh.
    pub fn next_frame(&mut self, buf: &[u8], max_bulk: u64) -> Result<Option<usize>, ReplyError> {
        if self.remaining == 0 {
            self.pos = 0;
            self.remaining = 1;
        }
        while self.remaining > 0 {
            match item(buf, self.pos, max_bulk)? {
                None => return Ok(None),
                Some(Item::Done(next)) => {
                    self.pos = next;
                    self.remaining -= 1;
                }
                Some(Item::Nested(n, next)) => {
                    self.pos = next;
                    self.remaining = (self.remaining - 1).saturating_add(n);
                }
                Some(Item::Payload(len, start)) => {
                    let end = start + len + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(ReplyError("bulk reply not terminated by CRLF".into()));
                    }
                    self.pos = end;
                    self.remaining -= 1;
                }
            }
        }
        Ok(Some(self.pos))
    }
}

/// Decodes one complete reply at the start of `buf`: the value and its length, or `None`
/// if it has not all arrived.
pub fn decode(buf: &[u8], max_bulk: u64) -> Result<Option<(Value, usize)>, ReplyError> {
    decode_at(buf, 0, max_bulk, 0)
}

fn decode_at(
    buf: &[u8],
    at: usize,
    max_bulk: u64,
    depth: usize,
) -> Result<Option<(Value, usize)>, ReplyError> {
    if depth > MAX_DEPTH {
        return Err(ReplyError("reply nested too deeply".into()));
    }
    let Some((kind, text, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let s = || String::from_utf8_lossy(text).into_owned();
    let v = match kind {
        b'+' | b',' | b'(' => Value::Simple(s()),
        b'#' => Value::Int((text == b"t") as i64),
        b'-' => Value::Error(s()),
        b':' => Value::Int(number(text)?),
        b'_' => Value::Nil,
        b'$' | b'!' | b'=' => {
            let n = number(text)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            if n as u64 > max_bulk {
                return Err(ReplyError(format!(
                    "reply bulk of {n} bytes is over the limit"
                )));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ReplyError("bulk reply not terminated by CRLF".into()));
            }
            let bytes = Bytes::copy_from_slice(&buf[next..end]);
            let v = if kind == b'!' {
                Value::Error(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                Value::Bulk(bytes)
            };
            return Ok(Some((v, end + 2)));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(text)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let items = if matches!(kind, b'%' | b'|') {
                n as u64 * 2
            } else {
                n as u64
            };
            let mut out = Vec::new();
            let mut pos = next;
            for _ in 0..items {
                let Some((v, p)) = decode_at(buf, pos, max_bulk, depth + 1)? else {
                    return Ok(None);
                };
                out.push(v);
                pos = p;
            }
            if kind == b'|' {
                // Attributes are metadata; the reply is what follows them.
                return decode_at(buf, pos, max_bulk, depth + 1);
            }
            return Ok(Some((Value::Array(out), pos)));
        }
        other => {
            return Err(ReplyError(format!(
                "unexpected reply type byte 0x{other:02x}"
            )))
        }
    };
    Ok(Some((v, next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1 << 20;

    fn frames(buf: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut s = FrameScanner::default();
        let mut at = 0;
        while let Some(n) = s.next_frame(&buf[at..], MAX).unwrap() {
            out.push(n);
            at += n;
        }
        out
    }

    #[test]
    fn scans_each_type() {
        let replies: [&[u8]; 12] = [
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":42\r\n",
            b"$5\r\nhel\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"_\r\n",
            b"%1\r\n+k\r\n,1.5\r\n",
            b"|1\r\n+a\r\n+b\r\n:7\r\n",
            b"~0\r\n",
            b"=7\r\ntxt:abc\r\n",
        ];
        let all: Vec<u8> = replies.concat();
        let lens: Vec<usize> = replies.iter().map(|r| r.len()).collect();
        assert_eq!(frames(&all), lens);
        let (v, n) = decode(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", MAX)
            .unwrap()
            .unwrap();
        assert_eq!(n, 19);
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk(Bytes::from_static(b"a")),
                Value::Array(vec![Value::Int(1)])
            ])
        );
        assert_eq!(
            decode(b"|1\r\n+a\r\n+b\r\n:7\r\n", MAX).unwrap().unwrap(),
            (Value::Int(7), 16)
        );
    }

    /// Found by the `reply_scanner` fuzz target: a negative count on a RESP3 aggregate was a
    /// null to the decoder but "annotates the next reply" to the scanner.
    #[test]
    fn negative_aggregate_counts_are_nulls_to_both() {
        for r in [
            &b"|-1\r\n"[..],
            b"%-4\r\n",
            b"~-1\r\n",
            b">-2\r\n",
            b"*-1\r\n",
        ] {
            let mut s = FrameScanner::default();
            assert_eq!(s.next_frame(r, MAX).unwrap(), Some(r.len()), "{r:?}");
            assert_eq!(decode(r, MAX).unwrap().map(|x| x.1), Some(r.len()), "{r:?}");
        }
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        let mut s = FrameScanner::default();
        assert!(s.next_frame(b"?x\r\n", MAX).is_err());
        let mut s = FrameScanner::default();
        assert!(s.next_frame(b"$99999999\r\n", MAX).is_err());
        let mut s = FrameScanner::default();
        assert!(s.next_frame(b"$1\r\nab\r\n", MAX).is_err());
        assert!(decode(b"*1\r\n$x\r\n", MAX).is_err());
        let deep = "*1\r\n".repeat(100) + ":1\r\n";
        assert!(decode(deep.as_bytes(), MAX).is_err());
        // The scanner needs no stack, so depth is no problem for it.
        assert_eq!(frames(deep.as_bytes()), vec![deep.len()]);
    }

    fn arb_reply() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            "[a-zA-Z ]{0,10}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            any::<i64>().prop_map(|i| format!(":{i}\r\n").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                let mut v = format!("${}\r\n", b.len()).into_bytes();
                v.extend_from_slice(&b);
                v.extend_from_slice(b"\r\n");
                v
            }),
            Just(b"$-1\r\n".to_vec()),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            proptest::collection::vec(inner, 0..8).prop_map(|items| {
                let mut v = format!("*{}\r\n", items.len()).into_bytes();
                for i in items {
                    v.extend_from_slice(&i);
                }
                v
            })
        })
    }

    proptest! {
        /// Fed in arbitrary pieces, the scanner finds exactly the reply boundaries, and
        /// agrees with the decoder.
        #[test]
        fn boundaries_survive_any_split(replies in proptest::collection::vec(arb_reply(), 1..6),
                                        cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
            let all: Vec<u8> = replies.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (all.len() + 1)).collect();
            cuts.push(all.len());
            cuts.sort();
            let mut s = FrameScanner::default();
            let mut start = 0;
            let mut found = Vec::new();
            for cut in cuts {
                while let Some(n) = s.next_frame(&all[start..cut], MAX).unwrap() {
                    let (_, dn) = decode(&all[start..start + n], MAX).unwrap().unwrap();
                    prop_assert_eq!(dn, n);
                    found.push(n);
                    start += n;
                }
            }
            let want: Vec<usize> = replies.iter().map(|r| r.len()).collect();
            prop_assert_eq!(found, want);
        }
    }
}
