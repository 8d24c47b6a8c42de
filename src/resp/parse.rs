//! Request parsing: RESP multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands
//! (`GET k\r\n`, what telnet and hand-typed `redis-cli` traffic looks like).
//!
//! Why it is written this way:
//! * **Nothing is allocated from a length read off the network.** A declared bulk length or
//!   argument count is checked against [`Limits`] and then only *remembered*; memory grows only
//!   as bytes actually arrive, and the connection caps the whole query buffer.
//! * **Zero copy.** Arguments are returned as byte ranges into the connection's read buffer, so
//!   a `GET` costs no allocation for its arguments.
//! * **Resumable.** A large command arriving over many reads is not re-scanned from its start
//!   on every read (that would be quadratic); the parser remembers how far it got, as Redis's
//!   `processMultibulkBuffer` does.
//!
//! Error texts are Redis's own, because clients and operators grep for them.

use std::ops::Range;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline command line or `*`/`$` header line.
pub const INLINE_MAX: usize = 64 * 1024;
/// Before authentication Redis accepts at most 10 arguments and 16 KiB per argument, so an
/// unauthenticated peer cannot make the server buffer much.
const UNAUTH_MAX_ARGS: i64 = 10;
const UNAUTH_MAX_BULK: i64 = 16 * 1024;

/// Bounds applied to every request before anything is buffered for it.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `proto-max-bulk-len`: the largest single argument.
    pub max_bulk_len: i64,
    /// `proto-max-multibulk-len` (a sessiond setting): the most arguments in one command.
    pub max_multibulk_len: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
        }
    }
}

/// A protocol violation: the reply text (without `-` and CRLF). The connection sends it and
/// closes, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Where one argument's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgSpan {
    /// A range of the read buffer (multibulk arguments).
    Buf(Range<usize>),
    /// A range of the parser's own scratch buffer (inline arguments, which may contain
    /// escapes and so cannot point into the read buffer).
    Inline(Range<usize>),
}

/// Progress through a multibulk command that has not fully arrived yet.
#[derive(Debug, Default)]
struct Partial {
    /// Offset (relative to the command start) where parsing resumes.
    pos: usize,
    /// Arguments still expected.
    remaining: i64,
    /// Length of the bulk whose header was read but whose payload has not arrived.
    bulk_len: Option<usize>,
}

/// Incremental request parser; one per connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    spans: Vec<ArgSpan>,
    inline: Vec<u8>,
    partial: Option<Partial>,
}

/// Outcome of one parse step.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete command ends `consumed` bytes after `start`; its arguments are in
    /// [`RequestParser::args`]. An empty command (blank inline line, `*0`) has no arguments.
    Command { consumed: usize },
    /// More bytes are needed.
    Incomplete,
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one command from `buf[start..]`. After `Parsed::Command`, the caller reads the
    /// arguments with [`args`](Self::args) and calls again with `start + consumed`.
    pub fn parse(
        &mut self,
        buf: &[u8],
        start: usize,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Parsed, ProtocolError> {
        let data = &buf[start..];
        if self.partial.is_none() {
            self.spans.clear();
            self.inline.clear();
            match data.first() {
                None => return Ok(Parsed::Incomplete),
                Some(b'*') => {}
                Some(_) => return self.parse_inline(data),
            }
        }
        self.parse_multibulk(data, start, limits, authenticated)
    }

    /// The arguments of the command just parsed.
    pub fn args<'a>(&'a self, buf: &'a [u8], out: &mut Vec<&'a [u8]>) {
        out.clear();
        for span in &self.spans {
            out.push(match span {
                ArgSpan::Buf(r) => &buf[r.clone()],
                ArgSpan::Inline(r) => &self.inline[r.clone()],
            });
        }
    }

    /// [`Self::args`] into `out` (at least [`Self::argc`] long); returns the filled part.
    pub fn args_into<'a, 'o>(&'a self, buf: &'a [u8], out: &'o mut [&'a [u8]]) -> &'o [&'a [u8]] {
        for (slot, span) in out.iter_mut().zip(&self.spans) {
            *slot = match span {
                ArgSpan::Buf(r) => &buf[r.clone()],
                ArgSpan::Inline(r) => &self.inline[r.clone()],
            };
        }
        &out[..self.spans.len().min(out.len())]
    }

    /// Number of arguments of the command just parsed.
    pub fn argc(&self) -> usize {
        self.spans.len()
    }

    fn parse_inline(&mut self, data: &[u8]) -> Result<Parsed, ProtocolError> {
        let Some(nl) = memchr(b'\n', data) else {
            if data.len() > INLINE_MAX {
                return Err(err("Protocol error: too big inline request"));
            }
            return Ok(Parsed::Incomplete);
        };
        let mut line = &data[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        let words =
            split_args(line).ok_or_else(|| err("Protocol error: unbalanced quotes in request"))?;
        for w in words {
            let s = self.inline.len();
            self.inline.extend_from_slice(&w);
            self.spans.push(ArgSpan::Inline(s..self.inline.len()));
        }
        Ok(Parsed::Command { consumed: nl + 1 })
    }

    fn parse_multibulk(
        &mut self,
        data: &[u8],
        start: usize,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<Parsed, ProtocolError> {
        let mut st = self.partial.take().unwrap_or_default();
        if st.pos == 0 {
            // The `*<count>\r\n` header.
            let Some(line_end) = find_crlf(data, 1) else {
                if data.len() > INLINE_MAX {
                    return Err(err("Protocol error: too big mbulk count string"));
                }
                return Ok(Parsed::Incomplete);
            };
            let count = parse_i64(&data[1..line_end])
                .filter(|n| *n <= i32::MAX as i64 && *n <= limits.max_multibulk_len)
                .ok_or_else(|| err("Protocol error: invalid multibulk length"))?;
            if count > UNAUTH_MAX_ARGS && !authenticated {
                return Err(err("Protocol error: unauthenticated multibulk length"));
            }
            st.pos = line_end + 2;
            if count <= 0 {
                return Ok(Parsed::Command { consumed: st.pos });
            }
            st.remaining = count;
            // Reserve for what is plausible, not for what was declared.
            self.spans.reserve(count.min(1024) as usize);
        }
        while st.remaining > 0 {
            let len = match st.bulk_len {
                Some(len) => len,
                None => {
                    let rest = &data[st.pos..];
                    let Some(line_end) = find_crlf(rest, 0) else {
                        if rest.len() > INLINE_MAX {
                            return Err(err("Protocol error: too big bulk count string"));
                        }
                        self.partial = Some(st);
                        return Ok(Parsed::Incomplete);
                    };
                    if rest[0] != b'$' {
                        return Err(ProtocolError(format!(
                            "Protocol error: expected '$', got '{}'",
                            rest[0] as char
                        )));
                    }
                    let len = parse_i64(&rest[1..line_end])
                        .filter(|n| *n >= 0 && *n <= limits.max_bulk_len)
                        .ok_or_else(|| err("Protocol error: invalid bulk length"))?;
                    if len > UNAUTH_MAX_BULK && !authenticated {
                        return Err(err("Protocol error: unauthenticated bulk length"));
                    }
                    st.pos += line_end + 2;
                    let len = len as usize;
                    st.bulk_len = Some(len);
                    len
                }
            };
            if data.len() < st.pos + len + 2 {
                self.partial = Some(st);
                return Ok(Parsed::Incomplete);
            }
            // Redis does not check the bulk terminator's bytes, only skips two.
            let abs = start + st.pos;
            self.spans.push(ArgSpan::Buf(abs..abs + len));
            st.pos += len + 2;
            st.bulk_len = None;
            st.remaining -= 1;
        }
        Ok(Parsed::Command { consumed: st.pos })
    }

    /// Bytes of the buffer that belong to a command still arriving (for `qbuf` accounting and
    /// for rebasing when the connection compacts its buffer).
    pub fn is_mid_command(&self) -> bool {
        self.partial.is_some()
    }

    /// The connection moved the unparsed tail of its buffer to offset 0: forget absolute
    /// positions of a partially parsed command so they are recomputed from the new start.
    pub fn rebase(&mut self, removed: usize) {
        for span in &mut self.spans {
            if let ArgSpan::Buf(r) = span {
                *r = r.start - removed..r.end - removed;
            }
        }
    }
}

fn err(s: &str) -> ProtocolError {
    ProtocolError(s.to_string())
}

fn memchr(b: u8, data: &[u8]) -> Option<usize> {
    data.iter().position(|&c| c == b)
}

/// Position of the `\r` of the first `\r\n` at or after `from`.
fn find_crlf(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < data.len() {
        match memchr(b'\r', &data[i..]) {
            Some(p) if i + p + 1 < data.len() => {
                if data[i + p + 1] == b'\n' {
                    return Some(i + p);
                }
                i += p + 1;
            }
            _ => return None,
        }
    }
    None
}

/// Strict decimal parse as Redis's `string2ll`: optional `-`, digits, no spaces, no `+`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    if neg && v == 0 {
        return None; // "-0" is not a canonical integer for Redis
    }
    Some(v)
}

/// Splits an inline command line like Redis's `sdssplitargs`: words separated by whitespace,
/// `"..."` with C escapes (`\n \r \t \b \a \\ \" \xHH`) and `'...'` with `\'`. A closing quote
/// must be followed by whitespace or the end. Returns `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Redis parses the line as a C string: a NUL byte ends it (inside quotes, that makes the
    // quotes unbalanced).
    let line = match line.iter().position(|&c| c == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Cmd = Vec<Vec<u8>>;

    fn parse_all(input: &[u8], authenticated: bool) -> Result<(Vec<Cmd>, usize), ProtocolError> {
        let mut p = RequestParser::new();
        let mut pos = 0;
        let mut cmds = Vec::new();
        loop {
            match p.parse(input, pos, &Limits::default(), authenticated)? {
                Parsed::Command { consumed } => {
                    let mut args = Vec::new();
                    p.args(input, &mut args);
                    cmds.push(args.iter().map(|a| a.to_vec()).collect());
                    pos += consumed;
                }
                Parsed::Incomplete => return Ok((cmds, pos)),
            }
        }
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_and_pipelining() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET";
        let (cmds, pos) = parse_all(input, true).unwrap();
        assert_eq!(
            cmds,
            vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()]]
        );
        assert_eq!(pos, 34);
    }

    #[test]
    fn inline_quoting() {
        let (cmds, _) = parse_all(b"SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\nPING\n", true).unwrap();
        assert_eq!(
            cmds[0],
            vec![
                b"SET".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        assert_eq!(cmds[1], vec![b"PING".to_vec()]);
        assert_eq!(
            parse_all(b"SET \"a\r\n", true).unwrap_err().0,
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            parse_all(b"SET \"a\"b\r\n", true).unwrap_err().0,
            "Protocol error: unbalanced quotes in request"
        );
        // A NUL ends the line as in Redis's C-string parsing (this once looped forever).
        let (cmds, _) = parse_all(b"SET a\0b c\r\n", true).unwrap();
        assert_eq!(cmds[0], vec![b"SET".to_vec(), b"a".to_vec()]);
        assert!(parse_all(b"SET \"a\0\"\r\n", true).is_err());
    }

    #[test]
    fn protocol_errors_match_redis() {
        let e = |s: &[u8], auth| parse_all(s, auth).unwrap_err().0;
        let cases: &[(&[u8], bool, &str)] = &[
            (b"*a\r\n", true, "invalid multibulk length"),
            (b"*1\r\n$a\r\n", true, "invalid bulk length"),
            (b"*1\r\n$-1\r\n", true, "invalid bulk length"),
            (b"*1\r\nxx\r\n", true, "expected '$', got 'x'"),
            (b"*11\r\n", false, "unauthenticated multibulk length"),
            (b"*1\r\n$16385\r\n", false, "unauthenticated bulk length"),
            (b"*1\r\n$536870913\r\n", true, "invalid bulk length"),
            (b"*1048577\r\n", true, "invalid multibulk length"),
        ];
        for (input, auth, msg) in cases {
            assert_eq!(
                e(input, *auth),
                format!("Protocol error: {msg}"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            e(&vec![b'a'; INLINE_MAX + 1], true),
            "Protocol error: too big inline request"
        );
        let mut big = b"*1\r\n".to_vec();
        big.extend(vec![b'$'; INLINE_MAX + 1]);
        assert_eq!(e(&big, true), "Protocol error: too big bulk count string");
    }

    #[test]
    fn empty_commands_are_skipped() {
        let (cmds, pos) = parse_all(b"*0\r\n\r\n*-1\r\n", true).unwrap();
        assert_eq!(cmds, vec![Vec::<Vec<u8>>::new(); 3]);
        assert_eq!(pos, 11);
    }

    #[test]
    fn resumes_without_rescanning() {
        let cmd = encode(&[b"SET".to_vec(), b"key".to_vec(), vec![b'v'; 1000]]);
        let mut p = RequestParser::new();
        for end in 1..cmd.len() {
            assert_eq!(
                p.parse(&cmd[..end], 0, &Limits::default(), true).unwrap(),
                Parsed::Incomplete
            );
        }
        assert_eq!(
            p.parse(&cmd, 0, &Limits::default(), true).unwrap(),
            Parsed::Command {
                consumed: cmd.len()
            }
        );
        let mut args = Vec::new();
        p.args(&cmd, &mut args);
        assert_eq!(args[2].len(), 1000);
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"01",
            b"-0",
            b"1.0",
            b"9223372036854775808",
            b"-",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    proptest! {
        /// Any sequence of commands, encoded and cut at any point, parses back exactly.
        #[test]
        fn roundtrip_any_split(cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..5), cut in 0usize..2000) {
            let mut wire = Vec::new();
            for c in &cmds { wire.extend(encode(c)); }
            let cut = cut.min(wire.len());
            let (first, pos) = parse_all(&wire[..cut], true).unwrap();
            prop_assert!(first.len() <= cmds.len());
            prop_assert_eq!(&first[..], &cmds[..first.len()]);
            let (rest, end) = parse_all(&wire[pos..], true).unwrap();
            prop_assert_eq!(pos + end, wire.len());
            prop_assert_eq!(&rest[..], &cmds[first.len()..]);
        }

        /// Garbage never panics, and whatever is accepted is bounded by the input.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..300), auth in any::<bool>()) {
            if let Ok((cmds, pos)) = parse_all(&data, auth) {
                prop_assert!(pos <= data.len());
                let total: usize = cmds.iter().flatten().map(|a| a.len()).sum();
                prop_assert!(total <= data.len());
            }
        }

        /// Frames with bogus headers in otherwise valid framing are rejected, never accepted
        /// with a wrong length.
        #[test]
        fn oversized_lengths_rejected(n in 536870913i64..i64::MAX) {
            let wire = format!("*1\r\n${}\r\n", n);
            prop_assert!(parse_all(wire.as_bytes(), true).is_err());
        }
    }
}
