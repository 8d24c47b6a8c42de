//! Redis's serialization format for one value (`DUMP` / `RESTORE`), so that a real
//! redis-server restores what sessiond dumps and the reverse.
//!
//! A payload is `type, value, RDB version (2 bytes LE), CRC-64 (8 bytes LE)`, the checksum
//! being Redis's CRC-64 (Jones polynomial, reflected) of everything before it.
//!
//! **Writing** uses the simplest encodings every Redis 7 loads: a string as a length and its
//! bytes; a set, a hash and a sorted set in their plain forms (`RDB_TYPE_SET`, `RDB_TYPE_HASH`,
//! `RDB_TYPE_ZSET_2`, which Redis itself writes for its large ones); a list as a quicklist of
//! listpacks (`RDB_TYPE_LIST_QUICKLIST_2`, the only list form Redis 7 writes), every element a
//! string entry. The version written is 10 (Redis 7.0), which every Redis 7 accepts.
//!
//! **Reading** takes what Redis 7.0–7.4 writes: integer-encoded and LZF-compressed strings,
//! intsets, listpacks (hashes, sorted sets, 7.2's set listpacks, quicklist nodes), and the
//! plain forms. Older ziplist encodings (RDB 9 and before, Redis ≤ 6.2), streams, modules and
//! 7.4's hashes with field TTLs are refused with Redis's "Bad data format".

/// The RDB version sessiond writes (Redis 7.0's).
pub const WRITE_VERSION: u16 = 10;
/// The newest version read (Redis 7.4's); payloads from newer servers are refused, as Redis
/// refuses payloads newer than itself.
pub const READ_VERSION: u16 = 12;

/// A value as `DUMP`/`RESTORE` carry it.
#[derive(Debug, Clone, PartialEq)]
pub enum RdbValue {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    ZSet(Vec<(Vec<u8>, f64)>),
}

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;
const TYPE_SET_LISTPACK: u8 = 20;

/// Most bytes of list elements in one written listpack node (Redis's default node size).
const NODE_BYTES: usize = 8 * 1024;

// ---- CRC-64 (Jones, reflected), as Redis's crc64.c ----

fn crc64_table() -> &'static [u64; 256] {
    static T: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        // The Jones polynomial 0xad93d23594c935a9, bit-reversed for the reflected algorithm.
        const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        t
    })
}

pub fn crc64(data: &[u8]) -> u64 {
    let t = crc64_table();
    data.iter().fold(0u64, |crc, &b| {
        t[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

// ---- writing ----

fn put_len(out: &mut Vec<u8>, n: usize) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

/// A listpack of string entries.
fn listpack(elems: &[&[u8]]) -> Vec<u8> {
    let mut lp = vec![0u8; 6];
    for e in elems {
        let start = lp.len();
        let n = e.len();
        if n < 64 {
            lp.push(0x80 | n as u8);
        } else if n < 4096 {
            lp.push(0xE0 | (n >> 8) as u8);
            lp.push(n as u8);
        } else {
            lp.push(0xF0);
            lp.extend_from_slice(&(n as u32).to_le_bytes());
        }
        lp.extend_from_slice(e);
        // The entry's length, written so it can be read backwards (Redis's lpEncodeBacklen):
        // most significant 7 bits first, every byte after the first with its high bit set.
        let l = lp.len() - start;
        let bytes = match l {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        for k in (0..bytes).rev() {
            let b = ((l >> (7 * k)) & 127) as u8;
            lp.push(if k == bytes - 1 { b } else { b | 128 });
        }
    }
    lp.push(0xFF);
    let total = lp.len() as u32;
    lp[0..4].copy_from_slice(&total.to_le_bytes());
    let count = elems.len().min(65535) as u16;
    lp[4..6].copy_from_slice(&count.to_le_bytes());
    lp
}

/// `DUMP`'s payload for a value.
pub fn dump(v: &RdbValue) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        RdbValue::Str(s) => {
            out.push(TYPE_STRING);
            put_str(&mut out, s);
        }
        RdbValue::Set(members) => {
            out.push(TYPE_SET);
            put_len(&mut out, members.len());
            for m in members {
                put_str(&mut out, m);
            }
        }
        RdbValue::Hash(pairs) => {
            out.push(TYPE_HASH);
            put_len(&mut out, pairs.len());
            for (f, val) in pairs {
                put_str(&mut out, f);
                put_str(&mut out, val);
            }
        }
        RdbValue::ZSet(items) => {
            out.push(TYPE_ZSET_2);
            put_len(&mut out, items.len());
            for (m, s) in items {
                put_str(&mut out, m);
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        RdbValue::List(elems) => {
            out.push(TYPE_LIST_QUICKLIST_2);
            let mut nodes: Vec<Vec<&[u8]>> = vec![Vec::new()];
            let mut size = 0;
            for e in elems {
                if size + e.len() > NODE_BYTES && !nodes.last().is_none_or(Vec::is_empty) {
                    nodes.push(Vec::new());
                    size = 0;
                }
                size += e.len();
                if let Some(n) = nodes.last_mut() {
                    n.push(e);
                }
            }
            nodes.retain(|n| !n.is_empty());
            put_len(&mut out, nodes.len());
            for n in nodes {
                put_len(&mut out, 2); // a packed (listpack) node
                put_str(&mut out, &listpack(&n));
            }
        }
    }
    out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

// ---- reading ----

/// Why a payload was refused, in Redis's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// `ERR DUMP payload version or checksum are wrong`
    VersionOrChecksum,
    /// `ERR Bad data format`
    BadFormat,
}

impl RestoreError {
    pub fn message(self) -> &'static str {
        match self {
            RestoreError::VersionOrChecksum => "ERR DUMP payload version or checksum are wrong",
            RestoreError::BadFormat => "ERR Bad data format",
        }
    }
}

struct Reader<'a> {
    p: &'a [u8],
}

type R<T> = Result<T, RestoreError>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.p.len() {
            return Err(RestoreError::BadFormat);
        }
        let (a, b) = self.p.split_at(n);
        self.p = b;
        Ok(a)
    }

    fn byte(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    /// A length, or (for a string) a special encoding: (value, encoded).
    fn len_enc(&mut self) -> R<(u64, bool)> {
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => (u64::from(b & 0x3F), false),
            1 => (u64::from(b & 0x3F) << 8 | u64::from(self.byte()?), false),
            2 if b == 0x80 => (u64::from(u32::from_be_bytes(self.arr()?)), false),
            2 if b == 0x81 => (u64::from_be_bytes(self.arr()?), false),
            3 => (u64::from(b & 0x3F), true),
            _ => return Err(RestoreError::BadFormat),
        })
    }

    fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        self.take(N)?
            .try_into()
            .map_err(|_| RestoreError::BadFormat)
    }

    /// A length bounded by what is left to read (every element takes a byte at least), so a
    /// forged length cannot make us allocate.
    fn len(&mut self) -> R<usize> {
        match self.len_enc()? {
            (n, false) if n as usize <= self.p.len() => Ok(n as usize),
            _ => Err(RestoreError::BadFormat),
        }
    }

    fn string(&mut self) -> R<Vec<u8>> {
        let (n, encoded) = self.len_enc()?;
        if !encoded {
            return Ok(self
                .take(usize::try_from(n).map_err(|_| RestoreError::BadFormat)?)?
                .to_vec());
        }
        match n {
            0 => Ok((self.byte()? as i8).to_string().into_bytes()),
            1 => Ok(i16::from_le_bytes(self.arr()?).to_string().into_bytes()),
            2 => Ok(i32::from_le_bytes(self.arr()?).to_string().into_bytes()),
            3 => {
                let clen = self.len()?;
                let (ulen, _) = self.len_enc()?;
                let ulen = usize::try_from(ulen).map_err(|_| RestoreError::BadFormat)?;
                // A 3-byte LZF back reference yields at most 264 bytes (88:1); refuse claims
                // beyond what the input can hold.
                if ulen > clen.saturating_mul(90) + 64 {
                    return Err(RestoreError::BadFormat);
                }
                lzf_decompress(self.take(clen)?, ulen)
            }
            _ => Err(RestoreError::BadFormat),
        }
    }
}

/// LZF decompression (the format Redis compresses long strings with).
fn lzf_decompress(input: &[u8], out_len: usize) -> R<Vec<u8>> {
    // Grown as bytes are produced: a claimed length is not trusted with an allocation.
    let mut out = Vec::with_capacity(out_len.min(input.len().saturating_mul(4)));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(i..i + n).ok_or(RestoreError::BadFormat)?;
            out.extend_from_slice(lit);
            i += n;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += *input.get(i).ok_or(RestoreError::BadFormat)? as usize;
                i += 1;
            }
            let off =
                ((ctrl & 0x1F) << 8) + *input.get(i).ok_or(RestoreError::BadFormat)? as usize + 1;
            i += 1;
            if off > out.len() {
                return Err(RestoreError::BadFormat);
            }
            let start = out.len() - off;
            for k in 0..n + 2 {
                out.push(out[start + k]);
            }
        }
        if out.len() > out_len {
            return Err(RestoreError::BadFormat);
        }
    }
    if out.len() != out_len {
        return Err(RestoreError::BadFormat);
    }
    Ok(out)
}

/// The entries of a listpack, as strings (integers in decimal, as Redis returns them).
fn read_listpack(lp: &[u8]) -> R<Vec<Vec<u8>>> {
    if lp.len() < 7
        || u32::from_le_bytes(lp[0..4].try_into().map_err(|_| RestoreError::BadFormat)?) as usize
            != lp.len()
    {
        return Err(RestoreError::BadFormat);
    }
    let mut r = Reader { p: &lp[6..] };
    let mut out = Vec::new();
    loop {
        let start_len = r.p.len();
        let b = r.byte()?;
        if b == 0xFF {
            break;
        }
        let v: Vec<u8> = if b & 0x80 == 0 {
            (b & 0x7F).to_string().into_bytes()
        } else if b & 0xC0 == 0x80 {
            r.take((b & 0x3F) as usize)?.to_vec()
        } else if b & 0xE0 == 0xC0 {
            let raw = (i32::from(b & 0x1F) << 8) | i32::from(r.byte()?);
            let v = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
            v.to_string().into_bytes()
        } else if b & 0xF0 == 0xE0 {
            let n = (usize::from(b & 0x0F) << 8) | usize::from(r.byte()?);
            r.take(n)?.to_vec()
        } else {
            match b {
                0xF0 => {
                    let n = u32::from_le_bytes(r.arr()?) as usize;
                    r.take(n)?.to_vec()
                }
                0xF1 => i16::from_le_bytes(r.arr()?).to_string().into_bytes(),
                0xF2 => {
                    let a: [u8; 3] = r.arr()?;
                    let v = i32::from_le_bytes([a[0], a[1], a[2], 0]) << 8 >> 8;
                    v.to_string().into_bytes()
                }
                0xF3 => i32::from_le_bytes(r.arr()?).to_string().into_bytes(),
                0xF4 => i64::from_le_bytes(r.arr()?).to_string().into_bytes(),
                _ => return Err(RestoreError::BadFormat),
            }
        };
        let l = start_len - r.p.len();
        let back = match l {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        r.take(back)?;
        out.push(v);
    }
    if !r.p.is_empty() {
        return Err(RestoreError::BadFormat);
    }
    Ok(out)
}

fn read_intset(b: &[u8]) -> R<Vec<Vec<u8>>> {
    let mut r = Reader { p: b };
    let enc = u32::from_le_bytes(r.arr()?) as usize;
    let n = u32::from_le_bytes(r.arr()?) as usize;
    if !matches!(enc, 2 | 4 | 8) || r.p.len() != n.saturating_mul(enc) {
        return Err(RestoreError::BadFormat);
    }
    (0..n)
        .map(|_| {
            Ok(match enc {
                2 => i16::from_le_bytes(r.arr()?).to_string(),
                4 => i32::from_le_bytes(r.arr()?).to_string(),
                _ => i64::from_le_bytes(r.arr()?).to_string(),
            }
            .into_bytes())
        })
        .collect()
}

fn pairs(v: Vec<Vec<u8>>) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
    if !v.len().is_multiple_of(2) {
        return Err(RestoreError::BadFormat);
    }
    let mut it = v.into_iter();
    let mut out = Vec::new();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn score_text(b: &[u8]) -> R<f64> {
    crate::util::double::parse(b).ok_or(RestoreError::BadFormat)
}

/// Checks a `RESTORE` payload's version and checksum and reads its value.
/// RDB's opcode for a function library (its code, as FUNCTION DUMP writes it).
const OPCODE_FUNCTION2: u8 = 245;

/// FUNCTION DUMP's payload: each library's code under the function opcode, then the
/// version and CRC-64 footer every DUMP payload has.
pub fn dump_functions(codes: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(OPCODE_FUNCTION2);
        put_str(&mut out, code);
    }
    out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A DUMP payload's body, once its footer (RDB version, CRC-64) checks out.
fn checked_body(payload: &[u8]) -> Result<&[u8], RestoreError> {
    if payload.len() < 10 {
        return Err(RestoreError::VersionOrChecksum);
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let crc = u64::from_le_bytes(
        footer[2..10]
            .try_into()
            .map_err(|_| RestoreError::VersionOrChecksum)?,
    );
    if version > READ_VERSION || crc64(&payload[..payload.len() - 8]) != crc {
        return Err(RestoreError::VersionOrChecksum);
    }
    Ok(body)
}

/// The libraries' code in a FUNCTION DUMP payload (Redis's own payloads included: their
/// long strings are LZF-compressed).
pub fn restore_functions(payload: &[u8]) -> Result<Vec<Vec<u8>>, RestoreError> {
    let mut r = Reader {
        p: checked_body(payload)?,
    };
    let mut codes = Vec::new();
    while !r.p.is_empty() {
        if r.byte()? != OPCODE_FUNCTION2 {
            return Err(RestoreError::BadFormat);
        }
        codes.push(r.string()?);
    }
    Ok(codes)
}

pub fn restore(payload: &[u8]) -> Result<RdbValue, RestoreError> {
    let mut r = Reader {
        p: checked_body(payload)?,
    };
    let t = r.byte()?;
    let v = match t {
        TYPE_STRING => RdbValue::Str(r.string()?),
        TYPE_SET => {
            let n = r.len()?;
            RdbValue::Set((0..n).map(|_| r.string()).collect::<R<_>>()?)
        }
        TYPE_LIST => {
            let n = r.len()?;
            RdbValue::List((0..n).map(|_| r.string()).collect::<R<_>>()?)
        }
        TYPE_HASH => {
            let n = r.len()?;
            RdbValue::Hash(
                (0..n)
                    .map(|_| Ok((r.string()?, r.string()?)))
                    .collect::<R<_>>()?,
            )
        }
        TYPE_ZSET_2 => {
            let n = r.len()?;
            RdbValue::ZSet(
                (0..n)
                    .map(|_| {
                        let m = r.string()?;
                        let s = f64::from_le_bytes(r.arr()?);
                        if s.is_nan() {
                            return Err(RestoreError::BadFormat);
                        }
                        Ok((m, s))
                    })
                    .collect::<R<_>>()?,
            )
        }
        TYPE_ZSET => {
            let n = r.len()?;
            RdbValue::ZSet(
                (0..n)
                    .map(|_| {
                        let m = r.string()?;
                        let l = r.byte()?;
                        let s = match l {
                            253 => return Err(RestoreError::BadFormat),
                            254 => f64::INFINITY,
                            255 => f64::NEG_INFINITY,
                            n => score_text(r.take(n as usize)?)?,
                        };
                        Ok((m, s))
                    })
                    .collect::<R<_>>()?,
            )
        }
        TYPE_SET_INTSET => RdbValue::Set(read_intset(&r.string()?)?),
        TYPE_SET_LISTPACK => RdbValue::Set(read_listpack(&r.string()?)?),
        TYPE_HASH_LISTPACK => RdbValue::Hash(pairs(read_listpack(&r.string()?)?)?),
        TYPE_ZSET_LISTPACK => RdbValue::ZSet(
            pairs(read_listpack(&r.string()?)?)?
                .into_iter()
                .map(|(m, s)| Ok((m, score_text(&s)?)))
                .collect::<R<_>>()?,
        ),
        TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.len()?;
            let mut elems = Vec::new();
            for _ in 0..nodes {
                let (container, _) = r.len_enc()?;
                let blob = r.string()?;
                match container {
                    1 => elems.push(blob),
                    2 => elems.extend(read_listpack(&blob)?),
                    _ => return Err(RestoreError::BadFormat),
                }
            }
            RdbValue::List(elems)
        }
        _ => return Err(RestoreError::BadFormat),
    };
    if !r.p.is_empty() {
        return Err(RestoreError::BadFormat);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_jones() {
        // Redis's crc64.c test vector.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn every_value_round_trips() {
        let big: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("element-{i}").into_bytes())
            .collect();
        for v in [
            RdbValue::Str(b"hello".to_vec()),
            RdbValue::Str(vec![7u8; 100_000]),
            RdbValue::Set(vec![b"a".to_vec(), b"1".to_vec()]),
            RdbValue::Hash(vec![(b"f".to_vec(), vec![1u8; 300])]),
            RdbValue::ZSet(vec![
                (b"m".to_vec(), 1.5),
                (b"n".to_vec(), f64::NEG_INFINITY),
            ]),
            RdbValue::List(vec![b"x".to_vec(), vec![2u8; 5000], b"".to_vec()]),
            RdbValue::List(big),
        ] {
            let p = dump(&v);
            assert_eq!(restore(&p), Ok(v));
        }
    }

    #[test]
    fn corrupt_payloads_are_refused() {
        let mut p = dump(&RdbValue::Str(b"hello".to_vec()));
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(restore(&p), Err(RestoreError::VersionOrChecksum));
        assert_eq!(restore(b"short"), Err(RestoreError::VersionOrChecksum));
    }

    #[test]
    fn a_forged_length_is_refused_without_allocating_it() {
        // A string "compressed" to 2 bytes claiming 1 GiB.
        let mut p = vec![TYPE_STRING, 0xC3, 0x02, 0x80];
        p.extend_from_slice(&(1u32 << 30).to_be_bytes());
        p.extend_from_slice(&[0x00, b'a']);
        p.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(restore(&p), Err(RestoreError::BadFormat));
    }

    #[test]
    fn lzf_reads_back_references() {
        // "aaaaaaaaaa": literal 'a', then a back reference of length 9 at offset 1.
        let c = [0x00, b'a', 0xE0, 0x00, 0x00];
        assert_eq!(lzf_decompress(&c, 10).ok(), Some(b"aaaaaaaaaa".to_vec()));
    }
}
