//! Reply encoding straight into the connection's output buffer.
//!
//! Commands never build a reply tree: they call `bulk`, `int`, `array`… on a [`Reply`], which
//! appends bytes to the buffer that a connection flushes once per batch of pipelined commands.
//! RESP3 types (maps, sets, nulls, doubles, verbatim strings) degrade to their RESP2 forms when
//! the client speaks RESP2, exactly as Redis's `addReply*` functions do.

use bytes::{BufMut, BytesMut};

/// Protocol version chosen by the client (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

/// `s` with CR and LF replaced by spaces, so a line reply can never break the framing.
fn one_line(s: &[u8]) -> Vec<u8> {
    s.iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

/// Appends replies to an output buffer.
pub struct Reply<'a> {
    out: &'a mut BytesMut,
    proto: Proto,
}

impl<'a> Reply<'a> {
    pub fn new(out: &'a mut BytesMut, proto: Proto) -> Self {
        Reply { out, proto }
    }

    /// The underlying buffer (for a reply encoded with another protocol, as HELLO's).
    pub fn buffer(&mut self) -> &mut BytesMut {
        self.out
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn resp3(&self) -> bool {
        self.proto == Proto::Resp3
    }

    /// Bytes written so far (lets a caller undo a partial reply).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn truncate(&mut self, len: usize) {
        self.out.truncate(len);
    }

    fn line(&mut self, prefix: u8, body: &[u8]) {
        self.out.reserve(body.len() + 3);
        self.out.put_u8(prefix);
        self.out.put_slice(body);
        self.out.put_slice(b"\r\n");
    }

    fn int_line(&mut self, prefix: u8, n: i64) {
        let mut b = itoa::Buffer::new();
        self.line(prefix, b.format(n).as_bytes());
    }

    /// `+OK`-style status reply. `s` must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// A `HELP` subcommand's reply: one status line per line of text.
    pub fn help(&mut self, lines: &[&str]) {
        self.array(lines.len());
        for l in lines {
            self.simple(l);
        }
    }

    pub fn ok(&mut self) {
        self.out.put_slice(b"+OK\r\n");
    }

    /// Error reply; `msg` starts with the error code (`ERR`, `WRONGTYPE`…). CR/LF are replaced
    /// by spaces so a message can never break the framing.
    pub fn error(&mut self, msg: &str) {
        self.line(b'-', &one_line(msg.as_bytes()));
    }

    pub fn int(&mut self, n: i64) {
        self.int_line(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        let mut b = itoa::Buffer::new();
        let len = b.format(data.len());
        self.out.reserve(data.len() + len.len() + 5);
        self.out.put_u8(b'$');
        self.out.put_slice(len.as_bytes());
        self.out.put_slice(b"\r\n");
        self.out.put_slice(data);
        self.out.put_slice(b"\r\n");
    }

    /// A bulk string of `len` bytes that `fill` writes in place (a value stored packed is
    /// unpacked straight into the reply).
    pub fn bulk_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let mut b = itoa::Buffer::new();
        let digits = b.format(len);
        self.out.reserve(len + digits.len() + 5);
        self.out.put_u8(b'$');
        self.out.put_slice(digits.as_bytes());
        self.out.put_slice(b"\r\n");
        let start = self.out.len();
        self.out.resize(start + len, 0);
        fill(&mut self.out[start..]);
        self.out.put_slice(b"\r\n");
    }

    pub fn bulk_opt(&mut self, data: Option<&[u8]>) {
        match data {
            Some(d) => self.bulk(d),
            None => self.null(),
        }
    }

    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(n).as_bytes());
    }

    /// The null bulk string (`$-1` in RESP2, `_` in RESP3).
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.put_slice(b"$-1\r\n"),
            Proto::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    /// The null array (`*-1` in RESP2, `_` in RESP3).
    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.put_slice(b"*-1\r\n"),
            Proto::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.int_line(b'*', len as i64);
    }

    /// A double as Redis's `addReplyDouble` writes it: `%.17g` (and `inf`/`-inf`) as a bulk
    /// string in RESP2, a `,` double in RESP3.
    pub fn double(&mut self, d: f64) {
        let text = crate::util::double::fmt_g17(d);
        match self.proto {
            Proto::Resp2 => self.bulk(text.as_bytes()),
            Proto::Resp3 => self.line(b',', text.as_bytes()),
        }
    }

    /// A push (`>len`) in RESP3, an array in RESP2: pub/sub confirmations and messages.
    pub fn push(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.int_line(b'*', len as i64),
            Proto::Resp3 => self.int_line(b'>', len as i64),
        }
    }

    /// A map of `len` pairs: `%len` in RESP3, a flat array of `2*len` in RESP2.
    pub fn map(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.int_line(b'*', 2 * len as i64),
            Proto::Resp3 => self.int_line(b'%', len as i64),
        }
    }

    /// A set: `~len` in RESP3, an array in RESP2.
    pub fn set(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.int_line(b'*', len as i64),
            Proto::Resp3 => self.int_line(b'~', len as i64),
        }
    }

    /// A status reply from bytes a client chose (a script's `{ok=…}`): CR and LF become
    /// spaces, as in [`Reply::error`].
    pub fn simple_bytes(&mut self, s: &[u8]) {
        self.line(b'+', &one_line(s));
    }

    /// An error reply from bytes a client chose (a script's `{err=…}`), cleaned as
    /// [`Reply::error`].
    pub fn error_bytes(&mut self, msg: &[u8]) {
        self.line(b'-', &one_line(msg));
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2 (Redis's `addReplyBool`).
    pub fn boolean(&mut self, b: bool) {
        match (self.proto, b) {
            (Proto::Resp3, true) => self.out.put_slice(b"#t\r\n"),
            (Proto::Resp3, false) => self.out.put_slice(b"#f\r\n"),
            (Proto::Resp2, true) => self.out.put_slice(b":1\r\n"),
            (Proto::Resp2, false) => self.out.put_slice(b":0\r\n"),
        }
    }

    /// A big number: `(digits` in RESP3, a bulk string in RESP2.
    pub fn big_number(&mut self, digits: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(digits),
            Proto::Resp3 => {
                self.line(b'(', &one_line(digits));
            }
        }
    }

    /// A verbatim string with its three-letter format (`=len\r\nfmt:...`) in RESP3, a bulk
    /// string in RESP2.
    pub fn verbatim_as(&mut self, format: &[u8; 3], text: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(text),
            Proto::Resp3 => {
                let mut b = itoa::Buffer::new();
                self.out.put_u8(b'=');
                self.out.put_slice(b.format(text.len() + 4).as_bytes());
                self.out.put_slice(b"\r\n");
                self.out.put_slice(format);
                self.out.put_u8(b':');
                self.out.put_slice(text);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// A verbatim string (`=len\r\ntxt:...`) in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        self.verbatim_as(b"txt", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(proto: Proto, f: impl FnOnce(&mut Reply)) -> String {
        let mut buf = BytesMut::new();
        f(&mut Reply::new(&mut buf, proto));
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn resp2_and_resp3_forms() {
        assert_eq!(render(Proto::Resp2, |r| r.null()), "$-1\r\n");
        assert_eq!(render(Proto::Resp3, |r| r.null()), "_\r\n");
        assert_eq!(render(Proto::Resp2, |r| r.map(2)), "*4\r\n");
        assert_eq!(render(Proto::Resp3, |r| r.map(2)), "%2\r\n");
        assert_eq!(
            render(Proto::Resp3, |r| r.verbatim(b"a")),
            "=5\r\ntxt:a\r\n"
        );
        assert_eq!(render(Proto::Resp2, |r| r.bulk(b"")), "$0\r\n\r\n");
        assert_eq!(render(Proto::Resp2, |r| r.int(-5)), ":-5\r\n");
        assert_eq!(
            render(Proto::Resp2, |r| r.error("ERR a\r\nb")),
            "-ERR a  b\r\n"
        );
    }
}
