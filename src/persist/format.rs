//! The on-disk format shared by the log and by snapshots: a file header, then checksummed
//! frames, each holding one or more operations.
//!
//! ```text
//! file   = magic(16) frame*
//! frame  = len:u32le  len_check:u32le  crc:u32le  payload[len]
//! payload= op+          (all ops of one command: the frame is the unit of atomicity)
//! op     = 1 SET      db key value expire     (expire: absolute unix ms, 0 = none)
//!        | 2 DEL      db key
//!        | 3 EXPIREAT db key at               (at 0 = PERSIST)
//!        | 4 FLUSHDB  db
//!        | 5 FLUSHALL
//!        | 6 SWAPDB   db db
//!        | 7 END      keys                    (last frame of a snapshot)
//!        | 8 VALUE    db key type payload expire   (a whole typed value; payload: pack)
//!        | 9 HSET     db key field value      (creates the hash if absent)
//!        | 10 HDEL    db key field            (deletes the key with its last field)
//!        | 11 SADD    db key member           (creates the set if absent)
//!        | 12 SREM    db key member           (deletes the key with its last member)
//!        | 13 ZADD    db key member score     (score: 8 bytes, f64 little-endian)
//!        | 14 ZREM    db key member           (deletes the key with its last member)
//!        | 15 LEDIT   db key prev version edit   (a list edit, applied only to the list at
//!                                             version `prev`; 0 creates; see engine/list.rs)
//!        | 16 HPEXPIREAT db key field at      (a hash field's absolute expiry; 0 = none)
//! db, lengths, times = LEB128 varints; key, value = varint length + bytes
//! ```
//!
//! `len_check` is `len` scrambled with a constant, so a reader can tell a real frame start
//! from garbage in O(1) — that is what lets it look *past* a damaged frame for later valid
//! frames, and so tell a torn tail (crash mid-write: nothing valid follows) from corruption in
//! the middle of a file (valid frames follow: never dropped silently). `crc` is CRC-32 of the
//! length bytes and the payload, so a flipped bit anywhere in a frame is detected.
//!
//! Every operation records a *result*, never a relative change: APPEND and INCR log the new
//! value, EXPIRE logs an absolute time, RENAME logs DEL + SET (or VALUE), HINCRBY logs HSET
//! of the new value. A collection's `payload` is the engine's pack encoding (a varint count,
//! then varint-length elements; `engine/value.rs`); `type` is 1 for a hash, 2 for a set, 3 for a sorted set (member, 8-byte score pairs), 4 for a list (an 8-byte version, then the
//! elements), 5 for a hash with field TTLs (field, value, 8-byte expiry triples; 0 = none). Replaying a suffix of the log
//! over a state that already contains some of its effects therefore ends in the same state,
//! which is what makes a snapshot taken while writes continue (a "fuzzy" snapshot) safe to
//! combine with the log written from the moment it started (see `persist/mod.rs`).

use std::io::{self, Read};

pub use super::op::{decode_ops, Op, OpIter};

pub const LOG_MAGIC: &[u8; 16] = b"SESSIOND-LOG-v1\n";
pub const SNAPSHOT_MAGIC: &[u8; 16] = b"SESSIOND-SNP-v1\n";
pub const FRAME_HEADER: usize = 12;
/// Largest frame a reader accepts. One command's operations fit: a client's query buffer is
/// limited to 4 GiB by the configuration's own bounds, and a frame to 2 GiB here.
pub const MAX_FRAME: u32 = 1 << 31;
const LEN_SCRAMBLE: u32 = 0x5E55_10D0;

/// Starts a frame at the end of `buf`; returns its start for [`end_frame`].
pub fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Completes the frame begun at `start`: fills in its length and checksums.
pub fn end_frame(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - FRAME_HEADER) as u32;
    let len_bytes = len.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&(len ^ LEN_SCRAMBLE).to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Appends a whole frame holding `ops`.
pub fn frame(buf: &mut Vec<u8>, ops: &[Op<'_>]) {
    let start = begin_frame(buf);
    for op in ops {
        op.encode(buf);
    }
    end_frame(buf, start);
}

/// Whether `h` (at least `FRAME_HEADER` bytes) starts a plausible frame; returns its length.
fn header_len(h: &[u8]) -> Option<u32> {
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?);
    let check = u32::from_le_bytes(h[4..8].try_into().ok()?);
    (check == len ^ LEN_SCRAMBLE && len > 0 && len <= MAX_FRAME).then_some(len)
}

fn crc_ok(h: &[u8], payload: &[u8]) -> bool {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[0..4]);
    c.update(payload);
    h[8..12] == c.finalize().to_le_bytes()
}

/// How a file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a valid frame.
    Clean,
    /// The bytes from `offset` on are an incomplete or damaged final frame and nothing valid
    /// follows them: what a crash in the middle of a write leaves.
    Torn { offset: u64, dropped: u64 },
    /// Damage at `offset` with valid frames after it (the first at `next_valid`): corruption,
    /// never dropped silently.
    Corrupt {
        offset: u64,
        reason: String,
        next_valid: u64,
    },
}

/// What reading a file found.
#[derive(Debug)]
pub struct Outcome {
    /// Valid frames read (and visited).
    pub frames: u64,
    /// Bytes of the file up to the end of the last valid frame before any damage.
    pub valid_len: u64,
    pub tail: Tail,
}

/// A file that cannot be read as the expected kind at all.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    BadMagic,
    /// The visitor refused an operation.
    Visit {
        offset: u64,
        reason: String,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::BadMagic => write!(f, "not a sessiond file (bad header)"),
            ReadError::Visit { offset, reason } => write!(f, "at offset {offset}: {reason}"),
        }
    }
}

/// Reads a file of frames after checking its magic, calling `visit` for every operation of
/// every valid frame in order. Stops at the first damaged frame and classifies it (torn tail
/// or corruption). A file shorter than its header counts as a torn empty file.
///
/// Memory is bounded by the largest frame (a payload is allocated only after its length
/// passed the header check and fits in what is left of the file).
pub fn read_frames<R: Read>(
    mut r: R,
    file_len: u64,
    magic: &[u8; 16],
    mut visit: impl FnMut(Op<'_>) -> Result<(), String>,
    mut rest_for_scan: impl FnMut(u64) -> io::Result<Vec<u8>>,
) -> Result<Outcome, ReadError> {
    let mut head = [0u8; 16];
    if file_len < 16 {
        // Created, then crashed before the header was complete.
        return Ok(Outcome {
            frames: 0,
            valid_len: 0,
            tail: Tail::Torn {
                offset: 0,
                dropped: file_len,
            },
        });
    }
    r.read_exact(&mut head).map_err(ReadError::Io)?;
    if &head != magic {
        return Err(ReadError::BadMagic);
    }
    let mut off = 16u64;
    let mut frames = 0u64;
    let mut payload = Vec::new();
    'frames: loop {
        if off == file_len {
            return Ok(Outcome {
                frames,
                valid_len: off,
                tail: Tail::Clean,
            });
        }
        let damage = 'frame: {
            let left = file_len - off;
            if left < FRAME_HEADER as u64 {
                break 'frame "incomplete frame header";
            }
            let mut h = [0u8; FRAME_HEADER];
            r.read_exact(&mut h).map_err(ReadError::Io)?;
            let Some(len) = header_len(&h) else {
                break 'frame "bad frame header";
            };
            if u64::from(len) > left - FRAME_HEADER as u64 {
                break 'frame "frame runs past the end of the file";
            }
            payload.resize(len as usize, 0);
            r.read_exact(&mut payload).map_err(ReadError::Io)?;
            if !crc_ok(&h, &payload) {
                break 'frame "checksum mismatch";
            }
            let Some(ops) = decode_ops(&payload) else {
                break 'frame "malformed operation in a frame with a valid checksum";
            };
            for op in ops {
                visit(op).map_err(|reason| ReadError::Visit {
                    offset: off,
                    reason,
                })?;
            }
            frames += 1;
            off += FRAME_HEADER as u64 + u64::from(len);
            continue 'frames;
        };
        let rest = rest_for_scan(off).map_err(ReadError::Io)?;
        let tail = match find_valid_frame(&rest, 1) {
            Some(at) => Tail::Corrupt {
                offset: off,
                reason: damage.to_string(),
                next_valid: off + at as u64,
            },
            None => Tail::Torn {
                offset: off,
                dropped: file_len - off,
            },
        };
        return Ok(Outcome {
            frames,
            valid_len: off,
            tail,
        });
    }
}

/// If a complete valid frame starts at `p` in `buf`, where it ends.
pub fn frame_at(buf: &[u8], p: usize) -> Option<usize> {
    let header = buf.get(p..p.checked_add(FRAME_HEADER)?)?;
    let len = header_len(header)?;
    let end = p + FRAME_HEADER + len as usize;
    let payload = buf.get(p + FRAME_HEADER..end)?;
    (crc_ok(header, payload) && decode_ops(payload).is_some()).then_some(end)
}

/// The first position at or after `from` in `buf` where a complete valid frame starts.
pub fn find_valid_frame(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len().saturating_sub(FRAME_HEADER - 1)).find(|&p| frame_at(buf, p).is_some())
}

/// Reads a whole in-memory file image (tests and `check-aof`).
pub fn read_image(
    image: &[u8],
    magic: &[u8; 16],
    visit: impl FnMut(Op<'_>) -> Result<(), String>,
) -> Result<Outcome, ReadError> {
    read_frames(image, image.len() as u64, magic, visit, |off| {
        Ok(image[off as usize..].to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn set(key: &[u8], value: &[u8], expire: i64) -> Op<'static> {
        Op::Set {
            db: 0,
            key: Box::leak(key.to_vec().into_boxed_slice()),
            value: Box::leak(value.to_vec().into_boxed_slice()),
            expire,
        }
    }

    /// The state a sequence of frames leads to (db 0 only), as replay builds it.
    fn apply(state: &mut HashMap<Vec<u8>, (Vec<u8>, i64)>, op: &Op<'_>) {
        match *op {
            Op::Set {
                key, value, expire, ..
            } => {
                state.insert(key.to_vec(), (value.to_vec(), expire));
            }
            Op::Del { key, .. } => {
                state.remove(key);
            }
            Op::ExpireAt { key, at, .. } => {
                if let Some(e) = state.get_mut(key) {
                    e.1 = at;
                }
            }
            Op::FlushDb { .. } | Op::FlushAll => state.clear(),
            _ => {}
        }
    }

    fn log_of(frames: &[Vec<Op<'static>>]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = LOG_MAGIC.to_vec();
        let mut ends = vec![buf.len()];
        for f in frames {
            frame(&mut buf, f);
            ends.push(buf.len());
        }
        (buf, ends)
    }

    fn arb_op() -> impl Strategy<Value = Op<'static>> {
        let key = prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c']), 1..3);
        prop_oneof![
            (
                key.clone(),
                prop::collection::vec(any::<u8>(), 0..40),
                0i64..1 << 45
            )
                .prop_map(|(k, v, e)| set(&k, &v, e)),
            key.clone().prop_map(|k| Op::Del {
                db: 0,
                key: Box::leak(k.into_boxed_slice())
            }),
            (key, 0i64..1 << 45).prop_map(|(k, at)| Op::ExpireAt {
                db: 0,
                key: Box::leak(k.into_boxed_slice()),
                at
            }),
            Just(Op::FlushDb { db: 0 }),
        ]
    }

    #[test]
    fn round_trip_every_op() {
        let ops = vec![
            set(b"k", b"v", 0),
            set(b"", &[0xff; 300], i64::MAX),
            Op::Del { db: 7, key: b"x" },
            Op::ExpireAt {
                db: 1,
                key: b"y",
                at: 1_700_000_000_000,
            },
            Op::FlushDb { db: 3 },
            Op::FlushAll,
            Op::SwapDb { a: 0, b: 15 },
            Op::End { keys: 12345 },
        ];
        let (img, _) = log_of(std::slice::from_ref(&ops));
        let mut seen = Vec::new();
        let out = read_image(&img, LOG_MAGIC, |op| {
            seen.push(format!("{op:?}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(out.tail, Tail::Clean);
        assert_eq!(out.frames, 1);
        let want: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn wrong_magic_is_refused() {
        let (mut img, _) = log_of(&[vec![set(b"k", b"v", 0)]]);
        assert!(matches!(
            read_image(&img, SNAPSHOT_MAGIC, |_| Ok(())),
            Err(ReadError::BadMagic)
        ));
        img.truncate(5);
        let out = read_image(&img, LOG_MAGIC, |_| Ok(())).unwrap();
        assert_eq!(
            out.tail,
            Tail::Torn {
                offset: 0,
                dropped: 5
            }
        );
    }

    proptest! {
        /// Any prefix of a valid log replays to the state after the last complete frame in it,
        /// and is reported as a torn tail (never as corruption), with the exact bytes dropped.
        #[test]
        fn any_prefix_replays_consistently(
            frames in prop::collection::vec(prop::collection::vec(arb_op(), 1..4), 1..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let (img, ends) = log_of(&frames);
            let cut = cut.index(img.len() + 1);
            let prefix = &img[..cut];
            let mut got = HashMap::new();
            let out = read_image(prefix, LOG_MAGIC, |op| { apply(&mut got, &op); Ok(()) }).unwrap();
            let complete = ends.iter().filter(|&&e| e <= cut).count().saturating_sub(1);
            let mut want = HashMap::new();
            for f in &frames[..complete] {
                for op in f { apply(&mut want, op); }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(out.frames, complete as u64);
            if cut < 16 || ends.contains(&cut) {
                let ok = matches!(out.tail, Tail::Clean | Tail::Torn { .. });
                prop_assert!(ok, "{:?}", out.tail);
            } else {
                prop_assert_eq!(out.tail, Tail::Torn {
                    offset: ends[complete] as u64,
                    dropped: (cut - ends[complete]) as u64,
                });
            }
        }

        /// A flipped byte anywhere in a frame is detected: it never replays as valid data.
        #[test]
        fn flipped_bytes_are_detected(
            frames in prop::collection::vec(prop::collection::vec(arb_op(), 1..4), 2..8),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut img, ends) = log_of(&frames);
            let pos = 16 + at.index(img.len() - 16);
            img[pos] ^= 1 << bit;
            let damaged = ends.iter().position(|&e| e > pos).unwrap() - 1;
            let out = read_image(&img, LOG_MAGIC, |_| Ok(())).unwrap();
            prop_assert_eq!(out.frames, damaged as u64, "frames before the damage are kept");
            prop_assert_eq!(out.valid_len, ends[damaged] as u64);
            if damaged + 1 < frames.len() {
                // Valid frames follow: corruption, with the next valid frame found.
                let got = match &out.tail {
                    Tail::Corrupt { offset, next_valid, .. } => Some((*offset, *next_valid)),
                    _ => None,
                };
                prop_assert_eq!(got, Some((ends[damaged] as u64, ends[damaged + 1] as u64)), "{:?}", out.tail);
            } else {
                let torn = matches!(out.tail, Tail::Torn { .. });
                prop_assert!(torn, "{:?}", out.tail);
            }
        }
    }
}
