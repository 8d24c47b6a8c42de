//! The operations a frame's payload holds: their encoding (`Op::encode`) and decoding
//! (`OpIter`). The grammar, and why every operation records a result, is in `format.rs`.

const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;
const OP_EXPIREAT: u8 = 3;
const OP_FLUSHDB: u8 = 4;
const OP_FLUSHALL: u8 = 5;
const OP_SWAPDB: u8 = 6;
const OP_END: u8 = 7;
const OP_VALUE: u8 = 8;
const OP_HSET: u8 = 9;
const OP_HDEL: u8 = 10;
const OP_SADD: u8 = 11;
const OP_SREM: u8 = 12;
const OP_ZADD: u8 = 13;
const OP_ZREM: u8 = 14;
const OP_LEDIT: u8 = 15;
const OP_HPEXPIREAT: u8 = 16;

/// One logged operation, borrowing its bytes from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Set {
        db: u32,
        key: &'a [u8],
        value: &'a [u8],
        expire: i64,
    },
    Del {
        db: u32,
        key: &'a [u8],
    },
    ExpireAt {
        db: u32,
        key: &'a [u8],
        at: i64,
    },
    FlushDb {
        db: u32,
    },
    FlushAll,
    SwapDb {
        a: u32,
        b: u32,
    },
    End {
        keys: u64,
    },
    Value {
        db: u32,
        key: &'a [u8],
        type_code: u8,
        payload: &'a [u8],
        expire: i64,
    },
    HSet {
        db: u32,
        key: &'a [u8],
        field: &'a [u8],
        value: &'a [u8],
    },
    HDel {
        db: u32,
        key: &'a [u8],
        field: &'a [u8],
    },
    SAdd {
        db: u32,
        key: &'a [u8],
        member: &'a [u8],
    },
    SRem {
        db: u32,
        key: &'a [u8],
        member: &'a [u8],
    },
    ZAdd {
        db: u32,
        key: &'a [u8],
        member: &'a [u8],
        /// The score's IEEE-754 bits (`f64::to_bits`), so operations stay `Eq`.
        score_bits: u64,
    },
    ZRem {
        db: u32,
        key: &'a [u8],
        member: &'a [u8],
    },
    LEdit {
        db: u32,
        key: &'a [u8],
        prev: u64,
        version: u64,
        edit: &'a [u8],
    },
    HPExpireAt {
        db: u32,
        key: &'a [u8],
        field: &'a [u8],
        at: i64,
    },
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

impl Op<'_> {
    /// Appends the operation's encoding to a frame payload.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match *self {
            Op::Set {
                db,
                key,
                value,
                expire,
            } => {
                buf.push(OP_SET);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, value);
                put_varint(buf, expire.max(0) as u64);
            }
            Op::Del { db, key } => {
                buf.push(OP_DEL);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
            }
            Op::ExpireAt { db, key, at } => {
                buf.push(OP_EXPIREAT);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_varint(buf, at.max(0) as u64);
            }
            Op::FlushDb { db } => {
                buf.push(OP_FLUSHDB);
                put_varint(buf, db as u64);
            }
            Op::FlushAll => buf.push(OP_FLUSHALL),
            Op::SwapDb { a, b } => {
                buf.push(OP_SWAPDB);
                put_varint(buf, a as u64);
                put_varint(buf, b as u64);
            }
            Op::End { keys } => {
                buf.push(OP_END);
                put_varint(buf, keys);
            }
            Op::Value {
                db,
                key,
                type_code,
                payload,
                expire,
            } => {
                buf.push(OP_VALUE);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                buf.push(type_code);
                put_bytes(buf, payload);
                put_varint(buf, expire.max(0) as u64);
            }
            Op::HSet {
                db,
                key,
                field,
                value,
            } => {
                buf.push(OP_HSET);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, field);
                put_bytes(buf, value);
            }
            Op::HDel { db, key, field } => {
                buf.push(OP_HDEL);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, field);
            }
            Op::SAdd { db, key, member }
            | Op::SRem { db, key, member }
            | Op::ZRem { db, key, member } => {
                buf.push(match self {
                    Op::SAdd { .. } => OP_SADD,
                    Op::SRem { .. } => OP_SREM,
                    _ => OP_ZREM,
                });
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, member);
            }
            Op::HPExpireAt { db, key, field, at } => {
                buf.push(OP_HPEXPIREAT);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, field);
                put_varint(buf, at.max(0) as u64);
            }
            Op::LEdit {
                db,
                key,
                prev,
                version,
                edit,
            } => {
                buf.push(OP_LEDIT);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_varint(buf, prev);
                put_varint(buf, version);
                put_bytes(buf, edit);
            }
            Op::ZAdd {
                db,
                key,
                member,
                score_bits,
            } => {
                buf.push(OP_ZADD);
                put_varint(buf, db as u64);
                put_bytes(buf, key);
                put_bytes(buf, member);
                buf.extend_from_slice(&score_bits.to_le_bytes());
            }
        }
    }
}

/// Decodes the operations of one frame payload.
pub struct OpIter<'a> {
    p: &'a [u8],
}

impl<'a> OpIter<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        OpIter { p: payload }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.p.split_first()?;
            self.p = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn db(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    fn time(&mut self) -> Option<i64> {
        i64::try_from(self.varint()?).ok()
    }

    fn f64(&mut self) -> Option<f64> {
        if self.p.len() < 8 {
            return None;
        }
        let (b, rest) = self.p.split_at(8);
        self.p = rest;
        let v = f64::from_le_bytes(b.try_into().ok()?);
        (!v.is_nan()).then_some(v)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.p.split_first()?;
        self.p = rest;
        Some(b)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.p.len() {
            return None;
        }
        let (b, rest) = self.p.split_at(n);
        self.p = rest;
        Some(b)
    }

    fn op(&mut self) -> Option<Op<'a>> {
        let (&code, rest) = self.p.split_first()?;
        self.p = rest;
        Some(match code {
            OP_SET => Op::Set {
                db: self.db()?,
                key: self.bytes()?,
                value: self.bytes()?,
                expire: self.time()?,
            },
            OP_DEL => Op::Del {
                db: self.db()?,
                key: self.bytes()?,
            },
            OP_EXPIREAT => Op::ExpireAt {
                db: self.db()?,
                key: self.bytes()?,
                at: self.time()?,
            },
            OP_FLUSHDB => Op::FlushDb { db: self.db()? },
            OP_FLUSHALL => Op::FlushAll,
            OP_SWAPDB => Op::SwapDb {
                a: self.db()?,
                b: self.db()?,
            },
            OP_END => Op::End {
                keys: self.varint()?,
            },
            OP_VALUE => Op::Value {
                db: self.db()?,
                key: self.bytes()?,
                type_code: self.byte()?,
                payload: self.bytes()?,
                expire: self.time()?,
            },
            OP_HSET => Op::HSet {
                db: self.db()?,
                key: self.bytes()?,
                field: self.bytes()?,
                value: self.bytes()?,
            },
            OP_HDEL => Op::HDel {
                db: self.db()?,
                key: self.bytes()?,
                field: self.bytes()?,
            },
            OP_SADD => Op::SAdd {
                db: self.db()?,
                key: self.bytes()?,
                member: self.bytes()?,
            },
            OP_SREM => Op::SRem {
                db: self.db()?,
                key: self.bytes()?,
                member: self.bytes()?,
            },
            OP_ZADD => Op::ZAdd {
                db: self.db()?,
                key: self.bytes()?,
                member: self.bytes()?,
                score_bits: self.f64()?.to_bits(),
            },
            OP_HPEXPIREAT => Op::HPExpireAt {
                db: self.db()?,
                key: self.bytes()?,
                field: self.bytes()?,
                at: self.time()?,
            },
            OP_LEDIT => Op::LEdit {
                db: self.db()?,
                key: self.bytes()?,
                prev: self.varint()?,
                version: self.varint()?,
                edit: self.bytes()?,
            },
            OP_ZREM => Op::ZRem {
                db: self.db()?,
                key: self.bytes()?,
                member: self.bytes()?,
            },
            _ => return None,
        })
    }
}

impl<'a> Iterator for OpIter<'a> {
    /// `Err(())` for a malformed operation (the frame's checksum matched, so this is a bug
    /// or a deliberate forgery, and is reported as corruption).
    type Item = Result<Op<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.p.is_empty() {
            return None;
        }
        Some(self.op().ok_or(()))
    }
}

/// Decodes every operation of a payload, or `None` if any is malformed.
pub fn decode_ops(payload: &[u8]) -> Option<Vec<Op<'_>>> {
    OpIter::new(payload).collect::<Result<Vec<_>, ()>>().ok()
}
