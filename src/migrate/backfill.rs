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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::any::AnyStore;
use super::command::CommandStore;
use super::copy;
use crate::server::clients::ClientHandle;
use crate::store::{ScanFilter, SetCondition, SetOptions, Store, Ttl, TtlChange};

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

pub struct BackfillOptions {
    /// Sessions per second at most (0: no limit).
    pub rate: u64,
    pub batch: usize,
    pub checkpoint: Option<PathBuf>,
    pub progress_bar: bool,
}

/// Copies every unexpired session of `from` missing in `to`.
pub async fn backfill(
    from: &std::sync::Arc<AnyStore>,
    to: &AnyStore,
    o: &BackfillOptions,
) -> Result<Progress, String> {
    let mut p = match &o.checkpoint {
        Some(path) => load(path)?,
        None => Progress::default(),
    };
    let total = from.dbsize(0).await.unwrap_or(0);
    let bar = if o.progress_bar {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} sessions, {per_sec}, ETA {eta} {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    bar.set_position(p.seen);
    let started = Instant::now();
    let seen_at_start = p.seen;
    let me = ClientHandle::internal("migrate-backfill");
    if typed(from, to) {
        copy_pages(from, to, o, &me, &mut p, &bar, (started, seen_at_start)).await?;
        bar.finish();
        p.this_run = p.seen - seen_at_start;
        return Ok(p);
    }
    while p.cursor != Cursor::Done {
        let now = crate::clock::now_ms();
        let (items, next) = page(from, &p.cursor, o.batch.max(1), now).await?;
        // Up to CONCURRENCY sessions in flight, a new one starting as soon as one ends: a
        // copy is a few round trips, mostly waiting, and the multiplexed connections
        // pipeline what is in flight.
        use futures_util::StreamExt;
        let mut outcomes =
            futures_util::stream::iter(items.iter().map(|it| copy_one(from, to, it, now)))
                .buffer_unordered(CONCURRENCY);
        while let Some(o) = outcomes.next().await {
            p.count(o);
        }
        p.cursor = next;
        if let Some(path) = &o.checkpoint {
            save(path, &p)?;
        }
        bar.set_position(p.seen);
        bar.set_message(format!(
            "copied {} kept {} gone {} errors {}",
            p.copied, p.kept, p.gone, p.errors
        ));
        pace(o.rate, p.seen - seen_at_start, started).await;
    }
    bar.finish();
    p.this_run = p.seen - seen_at_start;
    Ok(p)
}

/// A page read from the source: its keys, the cursor after it, what `DUMP`/`PEXPIRETIME`
/// said of each key, and the time it was read at.
type ReadPage = (Vec<Item>, Cursor, Vec<Read>, i64);

/// Pages ahead of the one being written, at each stage.
const AHEAD: usize = 2;

/// The copy between Redis-protocol stores, in three stages that run at once so that
/// neither the source nor the target waits for the other:
/// * a task lists pages (`SCAN`);
/// * a task reads each listed page (`DUMP` and `PEXPIRETIME` of every key, one pipelined
///   request), while the next page is listed;
/// * this one writes each read page (`RESTORE`s, one pipelined request per node), with up
///   to [`AHEAD`] pages' writes in flight, and counts the outcomes in page order.
///
/// Each stage waits for a round trip; in sequence, the source sat idle while the target
/// worked and the other way round. The checkpoint moves only past pages whose every key
/// is settled, in order, so an interrupted run resumes without a gap.
async fn copy_pages(
    from: &std::sync::Arc<AnyStore>,
    to: &AnyStore,
    o: &BackfillOptions,
    me: &std::sync::Arc<ClientHandle>,
    p: &mut Progress,
    bar: &indicatif::ProgressBar,
    (started, seen_at_start): (Instant, u64),
) -> Result<(), String> {
    use futures_util::StreamExt;
    let batch = o.batch.max(1);
    let (list_tx, mut list_rx) = tokio::sync::mpsc::channel(AHEAD);
    let lister = {
        let (from, mut cursor) = (from.clone(), p.cursor.clone());
        tokio::spawn(async move {
            while cursor != Cursor::Done {
                let now = crate::clock::now_ms();
                let listed = page(&from, &cursor, batch, now).await;
                if let Ok((_, next)) = &listed {
                    cursor = next.clone();
                }
                let failed = listed.is_err();
                if list_tx
                    .send(listed.map(|(items, next)| (items, next, now)))
                    .await
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        })
    };
    let (read_tx, mut read_rx) = tokio::sync::mpsc::channel::<Result<ReadPage, String>>(AHEAD);
    let reader = {
        let (from, me) = (from.clone(), me.clone());
        tokio::spawn(async move {
            while let Some(listed) = list_rx.recv().await {
                let read = match listed {
                    Ok((items, next, now)) => {
                        let reads = read_page(&from, &me, &items).await;
                        Ok((items, next, reads, now))
                    }
                    Err(e) => Err(e),
                };
                if read_tx.send(read).await.is_err() {
                    return;
                }
            }
        })
    };
    // Ends the stages however this returns: their channels close and their tasks stop.
    struct Stop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _stop = Stop(vec![lister, reader]);
    let mut writing = futures_util::stream::FuturesOrdered::new();
    let mut listed_all = p.cursor == Cursor::Done;
    loop {
        // Keep AHEAD pages' writes in flight while pages come; then settle the oldest.
        while !listed_all && writing.len() < AHEAD {
            match read_rx.recv().await {
                Some(read) => {
                    let (items, next, reads, now) = read?;
                    writing.push_back(async move {
                        let outcomes = write_page(to, me, &items, reads, now).await;
                        (items, next, outcomes)
                    });
                }
                None => listed_all = true,
            }
        }
        let Some((items, next, mut outcomes)) = writing.next().await else {
            break;
        };
        // What the pipelined copy could not do (a hash with field TTLs, whose payload
        // one side cannot read or write) is copied key by key.
        for (c, it) in outcomes.iter_mut().zip(&items) {
            if matches!(c, Copy::Error) {
                *c = copy_typed(from, to, me, &it.key).await;
            }
        }
        for c in outcomes {
            p.count(c);
        }
        // Everything before `next` is copied: that is the checkpoint.
        p.cursor = next;
        if let Some(path) = &o.checkpoint {
            save(path, p)?;
        }
        bar.set_position(p.seen);
        pace(o.rate, p.seen - seen_at_start, started).await;
    }
    Ok(())
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
enum Read {
    Live(Bytes, i64),
    Gone,
    Error,
}

/// `DUMP` and `PEXPIRETIME` of a whole page in one pipelined request to the source.
async fn read_page(
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
fn bulk_reply(frame: &Bytes) -> Option<Option<Bytes>> {
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
fn int_reply(frame: &[u8]) -> Option<i64> {
    let rest = frame.strip_prefix(b":")?;
    let end = rest.iter().position(|&c| c == b'\r')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// One `RESTORE … ABSTTL` per live key of a page (no `REPLACE`: a key already in the target
/// is kept) in one pipelined request to the target (per node in a cluster).
async fn write_page(
    to: &AnyStore,
    me: &std::sync::Arc<ClientHandle>,
    items: &[Item],
    reads: Vec<Read>,
    now: i64,
) -> Vec<Copy> {
    let mut out: Vec<Copy> = Vec::with_capacity(items.len());
    // The expiries' digits, back to back in one buffer: (key index, digits' end, payload).
    let mut digits: Vec<u8> = Vec::with_capacity(items.len() * 13);
    let mut restores: Vec<(usize, usize, Bytes)> = Vec::with_capacity(items.len());
    let mut n = itoa::Buffer::new();
    for (i, r) in reads.into_iter().enumerate() {
        out.push(match r {
            Read::Live(_, at) if at > 0 && at <= now => Copy::Gone,
            Read::Live(payload, at) => {
                digits.extend_from_slice(n.format(at).as_bytes());
                restores.push((i, digits.len(), payload));
                Copy::Error
            }
            Read::Gone => Copy::Gone,
            Read::Error => Copy::Error,
        });
    }
    if restores.is_empty() {
        return out;
    }
    let mut begin = 0;
    let commands: Vec<[&[u8]; 5]> = restores
        .iter()
        .map(|(i, end, payload)| {
            let at = &digits[begin..*end];
            begin = *end;
            [
                &b"RESTORE"[..],
                &items[*i].key[..],
                at,
                &payload[..],
                &b"ABSTTL"[..],
            ]
        })
        .collect();
    let writes: Vec<&[&[u8]]> = commands.iter().map(|c| &c[..]).collect();
    if let Ok(frames) = to.pipeline(me, 0, &writes).await {
        for ((i, _, _), f) in restores.iter().zip(frames) {
            out[*i] = if f.starts_with(b"+") {
                Copy::Copied
            } else if f.starts_with(b"-BUSYKEY") {
                Copy::Kept
            } else {
                Copy::Error
            };
        }
    }
    out
}

/// Sessions copied at the same time.
const CONCURRENCY: usize = 256;

enum Copy {
    Copied,
    Kept,
    Gone,
    Error,
}

/// A key of any type, with its absolute expiry, unless the target has it.
async fn copy_typed(
    from: &AnyStore,
    to: &AnyStore,
    me: &std::sync::Arc<ClientHandle>,
    key: &[u8],
) -> Copy {
    match copy::copy_key(from, to, (me, 0), key, false).await {
        Ok(copy::Copied::Written) => Copy::Copied,
        Ok(copy::Copied::Busy) => Copy::Kept,
        Ok(copy::Copied::Missing) => Copy::Gone,
        Err(_) => Copy::Error,
    }
}

async fn copy_one(from: &AnyStore, to: &AnyStore, it: &Item, now: i64) -> Copy {
    let k = &it.key[..];
    let (v, t) = match &it.known {
        Some((v, t)) => (v.clone(), *t),
        None => match from.get_with_ttl(0, k, now).await {
            Ok(Some(vt)) => vt,
            Ok(None) => return Copy::Gone,
            Err(_) => return Copy::Error,
        },
    };
    let ttl = match t {
        Ttl::At(ms) if ms <= now => return Copy::Gone,
        Ttl::At(ms) => TtlChange::At(ms),
        Ttl::Missing => return Copy::Gone,
        Ttl::Persistent => TtlChange::Clear,
    };
    let opts = SetOptions {
        ttl,
        condition: SetCondition::IfAbsent,
        get: false,
    };
    match to.set(0, k, &v, opts, now).await {
        Ok(o) if o.written => Copy::Copied,
        Ok(_) => Copy::Kept,
        Err(_) => Copy::Error,
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Differences {
    pub checked: u64,
    pub missing: u64,
    pub value: u64,
    pub ttl: u64,
    pub errors: u64,
    /// A few differing sessions, by ramp bucket and hashed id (never the id or value).
    pub samples: Vec<String>,
}

impl Differences {
    pub fn none(&self) -> bool {
        self.missing == 0 && self.value == 0 && self.ttl == 0 && self.errors == 0
    }
}

/// Compares every unexpired session of `from` with `to`.
pub async fn verify(
    from: &AnyStore,
    to: &AnyStore,
    ttl_tolerance_ms: i64,
) -> Result<Differences, String> {
    let mut d = Differences::default();
    let typed = typed(from, to);
    let me = ClientHandle::internal("migrate-verify");
    let mut cursor = Cursor::Start;
    while cursor != Cursor::Done {
        let now = crate::clock::now_ms();
        let (items, next) = page(from, &cursor, 500, now).await?;
        // First pass: keys that look different.
        let mut suspects = Vec::new();
        let first: Vec<Found> = if typed {
            compare_page(from, to, &me, &items, ttl_tolerance_ms).await
        } else {
            // A legacy source: up to CONCURRENCY keys compared at once, as the backfill
            // copies them; the outcomes stay in the page's order.
            use futures_util::StreamExt;
            futures_util::stream::iter(
                items
                    .iter()
                    .map(|it| compare_one(from, to, it, now, ttl_tolerance_ms)),
            )
            .buffered(CONCURRENCY)
            .collect()
            .await
        };
        for (it, found) in items.iter().zip(first) {
            match found {
                Found::Gone => {}
                Found::Same => d.checked += 1,
                Found::Differs(_) => suspects.push(it),
            }
        }
        if !suspects.is_empty() {
            // Second look, once writes in flight (a mirror between the two stores) landed.
            tokio::time::sleep(RECHECK_AFTER).await;
            let now = crate::clock::now_ms();
            for it in suspects {
                let fresh = Item {
                    key: it.key.clone(),
                    known: None,
                };
                // A legacy source's listing carried the value: read it again too.
                let found = if typed {
                    compare_typed(from, to, &me, &it.key, ttl_tolerance_ms).await
                } else {
                    compare_one(from, to, &fresh, now, ttl_tolerance_ms).await
                };
                let kind = match found {
                    Found::Gone => continue,
                    Found::Same => {
                        d.checked += 1;
                        continue;
                    }
                    Found::Differs(kind) => kind,
                };
                d.checked += 1;
                match kind {
                    "missing" => d.missing += 1,
                    "value" => d.value += 1,
                    "ttl" => d.ttl += 1,
                    _ => d.errors += 1,
                }
                if d.samples.len() < 10 {
                    let k = &it.key[..];
                    d.samples.push(format!(
                        "{kind} {:04}-{:08x}",
                        super::stage::bucket(k),
                        crc32fast::hash(k)
                    ));
                }
            }
        }
        cursor = next;
    }
    Ok(d)
}

/// How long a suspected difference is left before it is read again.
const RECHECK_AFTER: Duration = Duration::from_millis(200);

enum Found {
    /// Not in the source (any more): nothing to compare.
    Gone,
    Same,
    Differs(&'static str),
}

/// A page compared between Redis-protocol stores in two pipelined requests per side:
/// each key's `DUMP` and `PEXPIRETIME` on both (as the backfill reads), both sides at once.
/// Equal payloads are the same value; otherwise both are decoded (`util::rdb`) and compared
/// as content: a hash's fields and a set's members in any order, a sorted set's members
/// with their scores, a list in order. Two servers may encode one value differently (the
/// engine and Redis do), and a payload one side cannot read (a hash with field TTLs, a
/// type the decoder does not know) is compared key by key with [`compare_typed`].
///
/// Key by key, a page was 500 times the several round trips of [`compare_typed`]: verify
/// ran about 27 times slower than the backfill it checks.
async fn compare_page(
    from: &AnyStore,
    to: &AnyStore,
    me: &std::sync::Arc<ClientHandle>,
    items: &[Item],
    tolerance: i64,
) -> Vec<Found> {
    let (old, new) = tokio::join!(read_page(from, me, items), read_page(to, me, items));
    let mut out = Vec::with_capacity(items.len());
    for ((it, a), b) in items.iter().zip(old).zip(new) {
        let found = match (a, b) {
            (Read::Gone, _) => Found::Gone,
            (Read::Live(..), Read::Gone) => Found::Differs("missing"),
            (Read::Live(pa, at_a), Read::Live(pb, at_b)) => match same_value(&pa, &pb) {
                Some(false) => Found::Differs("value"),
                Some(true) if (at_a == 0) != (at_b == 0) || (at_a - at_b).abs() > tolerance => {
                    Found::Differs("ttl")
                }
                Some(true) => Found::Same,
                None => compare_typed(from, to, me, &it.key, tolerance).await,
            },
            // An error on either side: the key is read again, on its own.
            _ => compare_typed(from, to, me, &it.key, tolerance).await,
        };
        out.push(found);
    }
    out
}

/// Whether two `DUMP` payloads hold the same value; `None` when one cannot be decoded.
fn same_value(a: &[u8], b: &[u8]) -> Option<bool> {
    if a == b {
        return Some(true);
    }
    Some(comparable(a)? == comparable(b)?)
}

/// A payload's value with its unordered collections sorted.
fn comparable(payload: &[u8]) -> Option<crate::util::rdb::RdbValue> {
    use crate::util::rdb::RdbValue;
    let mut v = crate::util::rdb::restore(payload).ok()?;
    match &mut v {
        RdbValue::Set(members) => members.sort_unstable(),
        RdbValue::Hash(pairs) => pairs.sort_unstable(),
        RdbValue::ZSet(members) => {
            members.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        }
        RdbValue::Str(_) | RdbValue::List(_) => {}
    }
    Some(v)
}

async fn compare_typed(
    from: &AnyStore,
    to: &AnyStore,
    me: &std::sync::Arc<ClientHandle>,
    key: &[u8],
    tolerance: i64,
) -> Found {
    let (a, b) = tokio::join!(
        copy::content(from, (me, 0), key),
        copy::content(to, (me, 0), key)
    );
    match (a, b) {
        (Ok(None), _) => Found::Gone,
        (Ok(Some(_)), Ok(None)) => Found::Differs("missing"),
        (Ok(Some(a)), Ok(Some(b))) => {
            if a.kind != b.kind || a.items != b.items {
                Found::Differs("value")
            } else if (a.expire_at == 0) != (b.expire_at == 0)
                || (a.expire_at - b.expire_at).abs() > tolerance
            {
                Found::Differs("ttl")
            } else {
                Found::Same
            }
        }
        _ => Found::Differs("error"),
    }
}

async fn compare_one(from: &AnyStore, to: &AnyStore, it: &Item, now: i64, tolerance: i64) -> Found {
    let k = &it.key[..];
    let (v, t) = match &it.known {
        Some((v, t)) => (v.clone(), *t),
        None => match from.get_with_ttl(0, k, now).await {
            Ok(Some(vt)) => vt,
            _ => return Found::Gone,
        },
    };
    if t == Ttl::Missing {
        return Found::Gone;
    }
    match (to.get(0, k, now).await, to.ttl(0, k, now).await) {
        (Ok(None), _) => Found::Differs("missing"),
        (Ok(Some(w)), _) if w != v => Found::Differs("value"),
        (Ok(Some(_)), Ok(u)) => {
            let diff = match (t, u) {
                (Ttl::At(a), Ttl::At(b)) => (a - b).abs() > tolerance,
                (a, b) => a != b,
            };
            if diff {
                Found::Differs("ttl")
            } else {
                Found::Same
            }
        }
        _ => Found::Differs("error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_compare_by_content() {
        use crate::util::rdb::{dump, RdbValue};
        let pair = |f: &str, v: &str| (f.as_bytes().to_vec(), v.as_bytes().to_vec());
        let h1 = dump(&RdbValue::Hash(vec![pair("a", "1"), pair("b", "2")]));
        let h2 = dump(&RdbValue::Hash(vec![pair("b", "2"), pair("a", "1")]));
        let h3 = dump(&RdbValue::Hash(vec![pair("a", "1"), pair("b", "3")]));
        assert_ne!(h1, h2, "the same hash, encoded in another order");
        assert_eq!(same_value(&h1, &h2), Some(true));
        assert_eq!(same_value(&h1, &h3), Some(false));
        let s1 = dump(&RdbValue::Set(vec![b"x".to_vec(), b"y".to_vec()]));
        let s2 = dump(&RdbValue::Set(vec![b"y".to_vec(), b"x".to_vec()]));
        assert_eq!(same_value(&s1, &s2), Some(true));
        let z1 = dump(&RdbValue::ZSet(vec![
            (b"m".to_vec(), 1.0),
            (b"n".to_vec(), 2.0),
        ]));
        let z2 = dump(&RdbValue::ZSet(vec![
            (b"n".to_vec(), 2.0),
            (b"m".to_vec(), 1.0),
        ]));
        let z3 = dump(&RdbValue::ZSet(vec![
            (b"n".to_vec(), 2.5),
            (b"m".to_vec(), 1.0),
        ]));
        assert_eq!(same_value(&z1, &z2), Some(true));
        assert_eq!(same_value(&z1, &z3), Some(false));
        // A list's order is its value.
        let l1 = dump(&RdbValue::List(vec![b"1".to_vec(), b"2".to_vec()]));
        let l2 = dump(&RdbValue::List(vec![b"2".to_vec(), b"1".to_vec()]));
        assert_eq!(same_value(&l1, &l2), Some(false));
        // Another type is another value; an unreadable payload is left to the slow path.
        assert_eq!(same_value(&s1, &l1), Some(false));
        assert_eq!(same_value(&h1, b"garbage"), None);
        assert_eq!(same_value(b"garbage", b"garbage"), Some(true));
    }

    #[test]
    fn reply_frames_read_without_a_copy() {
        let frame = Bytes::from_static(b"$5\r\nab\r\nc\r\n");
        let Some(Some(payload)) = bulk_reply(&frame) else {
            panic!("a bulk reply")
        };
        assert_eq!(&payload[..], b"ab\r\nc");
        // A slice of the frame, not a copy of it.
        assert_eq!(payload.as_ptr(), frame[4..].as_ptr());
        assert!(matches!(
            bulk_reply(&Bytes::from_static(b"$-1\r\n")),
            Some(None)
        ));
        assert!(matches!(
            bulk_reply(&Bytes::from_static(b"_\r\n")),
            Some(None)
        ));
        assert!(bulk_reply(&Bytes::from_static(b"-ERR no\r\n")).is_none());
        // A length past the frame's end is malformed, not a panic.
        assert!(bulk_reply(&Bytes::from_static(b"$9\r\nab\r\n")).is_none());
        assert!(bulk_reply(&Bytes::from_static(b"$x\r\n")).is_none());
        assert_eq!(int_reply(b":1767225600000\r\n"), Some(1_767_225_600_000));
        assert_eq!(int_reply(b":-2\r\n"), Some(-2));
        assert_eq!(int_reply(b"$1\r\n1\r\n"), None);
    }
}
