//! `sessiond migrate backfill` and `sessiond migrate verify`: bulk copy and comparison
//! between two stores, outside the request path.
//!
//! **Backfill** walks every session of the source and copies the unexpired ones with their
//! remaining TTL, using `SET … NX` on the target: a session written to the new store
//! meanwhile (by the router's dual writes) is never overwritten with an older copy. It is
//! rate-limited (`--rate` sessions per second), shows a progress bar with rate and ETA, and
//! writes a checkpoint (the walk's position and the counters) after every batch, so an
//! interrupted run started again with the same `--checkpoint` continues where it stopped.
//!
//! **Verify** walks the source the same way and reports sessions missing in the target,
//! values that differ, and TTLs that differ by more than a tolerance. A difference is read
//! again on both sides (after a short pause, so a write the router is still mirroring lands)
//! before it is reported, and a key gone from the source meanwhile is no difference: live
//! traffic during a verify does not produce false reports.
//!
//! **Every type** between Redis-protocol stores (the embedded engine, Redis, Sentinel,
//! Cluster): the copy is `DUMP`/`PEXPIRETIME` then `RESTORE … ABSTTL` without `REPLACE`
//! (`copy.rs`), so hashes, sets, sorted sets and lists travel with their absolute expiry and
//! a key written meanwhile answers `BUSYKEY` and is kept; verify compares type, elements and
//! expiry. Legacy stores (SQL, files) hold strings, copied with `SET … NX`.
//!
//! The walk: keyset pagination (`WHERE id > last ORDER BY id`) for a SQL table, the sorted
//! directory listing for session files, `SCAN` for Redis and the embedded engine.

//!
//! Files: this one holds the walk (`page`) and the checkpoint both commands share;
//! `stages.rs` the backfill's three overlapping stages (list, read, write); `verify.rs` the
//! comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::any::AnyStore;
use super::command::CommandStore;
use super::copy;
use crate::server::clients::ClientHandle;
use crate::store::{ScanFilter, SetCondition, SetOptions, Store, Ttl, TtlChange};

mod stages;
mod verify;

use stages::Copy;
pub use stages::{backfill, BackfillOptions};
pub use verify::{verify, Differences};

/// Whether both stores carry every type (then copies are `DUMP`/`RESTORE`).
fn typed(from: &AnyStore, to: &AnyStore) -> bool {
    from.speaks_redis().is_ok() && to.speaks_redis().is_ok()
}

/// Where a walk is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    #[default]
    Start,
    /// SCAN cursor (Redis, embedded) or listing position (files).
    Scan(u64),
    /// The last id seen (SQL keyset pagination).
    After(Vec<u8>),
    Done,
}

/// One session found by a walk; its value and expiry when the walk already read them.
pub struct Item {
    pub key: Bytes,
    pub known: Option<(Bytes, Ttl)>,
}

/// The next page of sessions and the cursor after it.
pub async fn page(
    s: &AnyStore,
    cursor: &Cursor,
    n: usize,
    now: i64,
) -> Result<(Vec<Item>, Cursor), String> {
    match (s, cursor) {
        (_, Cursor::Done) => Ok((Vec::new(), Cursor::Done)),
        (AnyStore::Sql(sql), c) => {
            let after = match c {
                Cursor::After(a) => Some(a.as_slice()),
                _ => None,
            };
            let (rows, last, read) = sql
                .page_after(after, n, now)
                .await
                .map_err(|e| e.message())?;
            let next = match last {
                Some(l) if read == n => Cursor::After(l),
                _ => Cursor::Done,
            };
            let items = rows
                .into_iter()
                .map(|(key, v, exp)| Item {
                    key,
                    known: Some((
                        v,
                        if exp == 0 {
                            Ttl::Persistent
                        } else {
                            Ttl::At(exp)
                        },
                    )),
                })
                .collect();
            Ok((items, next))
        }
        (AnyStore::Files(files), c) => {
            // The listing, then every file of the page read in one blocking call.
            let at = match c {
                Cursor::Scan(x) => *x,
                _ => 0,
            };
            let filter = ScanFilter {
                count: n,
                ..ScanFilter::default()
            };
            let (next, keys) = files
                .scan(0, at, &filter, now)
                .await
                .map_err(|e| e.message())?;
            let items = files
                .read_many(keys, now)
                .await
                .map_err(|e| e.message())?
                .into_iter()
                .map(|(key, vt)| Item {
                    known: Some(match vt {
                        Some((v, e)) => (v, Ttl::At(e)),
                        None => (Bytes::new(), Ttl::Missing),
                    }),
                    key,
                })
                .collect();
            let next = if next == 0 {
                Cursor::Done
            } else {
                Cursor::Scan(next)
            };
            Ok((items, next))
        }
        (s, c) => {
            let at = match c {
                Cursor::Scan(x) => *x,
                _ => 0,
            };
            let filter = ScanFilter {
                count: n,
                ..ScanFilter::default()
            };
            let (next, keys) = s.scan(0, at, &filter, now).await.map_err(|e| e.message())?;
            let items = keys
                .into_iter()
                .map(|key| Item { key, known: None })
                .collect();
            let next = if next == 0 {
                Cursor::Done
            } else {
                Cursor::Scan(next)
            };
            Ok((items, next))
        }
    }
}

/// Counters of a backfill, also its checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub cursor: Cursor,
    pub seen: u64,
    pub copied: u64,
    /// Already in the target (written there meanwhile, or by an earlier run): left alone.
    pub kept: u64,
    /// Expired (or deleted) between listing and copying.
    pub gone: u64,
    pub errors: u64,
    /// Sessions seen by this run (not saved: a resumed run starts at 0).
    #[serde(skip)]
    pub this_run: u64,
}

impl Progress {
    /// Counts one key's outcome.
    fn count(&mut self, c: Copy) {
        self.seen += 1;
        match c {
            Copy::Copied => self.copied += 1,
            Copy::Kept => self.kept += 1,
            Copy::Gone => self.gone += 1,
            Copy::Error => self.errors += 1,
        }
    }
}

fn save(path: &Path, p: &Progress) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(p).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("checkpoint {}: {e}", path.display()))
}

fn load(path: &Path) -> Result<Progress, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            serde_json::from_str(&t).map_err(|e| format!("checkpoint {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
        Err(e) => Err(format!("checkpoint {}: {e}", path.display())),
    }
}

/// Pace: the sessions done in this run may not be ahead of rate × elapsed.
async fn pace(rate: u64, done: u64, started: Instant) {
    if rate > 0 {
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        let elapsed = started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// What the source said of one key of a page.
pub(super) enum Read {
    Live(Bytes, i64),
    Gone,
    Error,
}

/// `DUMP` and `PEXPIRETIME` of a whole page in one pipelined request to the source.
pub(super) async fn read_page(
    from: &AnyStore,
    me: &std::sync::Arc<ClientHandle>,
    items: &[Item],
) -> Vec<Read> {
    if items.is_empty() {
        return Vec::new();
    }
    let pairs: Vec<[&[u8]; 2]> = items
        .iter()
        .flat_map(|it| {
            [
                [&b"DUMP"[..], &it.key[..]],
                [&b"PEXPIRETIME"[..], &it.key[..]],
            ]
        })
        .collect();
    let reads: Vec<&[&[u8]]> = pairs.iter().map(|c| &c[..]).collect();
    let Ok(frames) = from.pipeline(me, 0, &reads).await else {
        return items.iter().map(|_| Read::Error).collect();
    };
    frames
        .chunks(2)
        .map(|pair| match (bulk_reply(&pair[0]), int_reply(&pair[1])) {
            (Some(None), _) | (_, Some(-2)) => Read::Gone,
            (Some(Some(payload)), Some(at)) => Read::Live(payload, at.max(0)),
            _ => Read::Error,
        })
        .collect()
}

/// A bulk reply frame's payload, as a slice of the frame (no copy): `Some(None)` for a
/// null (RESP2's `$-1`, RESP3's `_`), `None` for anything else (an error).
pub(super) fn bulk_reply(frame: &Bytes) -> Option<Option<Bytes>> {
    match frame.first()? {
        b'_' => Some(None),
        b'$' => {
            let end = frame.iter().position(|&c| c == b'\r')?;
            let len = std::str::from_utf8(&frame[1..end])
                .ok()?
                .parse::<i64>()
                .ok()?;
            if len < 0 {
                return Some(None);
            }
            let start = end + 2;
            let stop = start.checked_add(usize::try_from(len).ok()?)?;
            (stop + 2 <= frame.len()).then(|| Some(frame.slice(start..stop)))
        }
        _ => None,
    }
}

/// An integer reply frame's value; `None` for anything else.
pub(super) fn int_reply(frame: &[u8]) -> Option<i64> {
    let rest = frame.strip_prefix(b":")?;
    let end = rest.iter().position(|&c| c == b'\r')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}
