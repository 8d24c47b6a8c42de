//! The backfill's copy: three overlapping stages (list, read, write) with a bounded number
//! of pages in flight, and the checkpoint written in page order.

use super::*;

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
        to.durable().await?;
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
///   request), up to [`AHEAD`] pages' reads in flight, while the next page is listed;
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
    let (list_tx, list_rx) = tokio::sync::mpsc::channel(AHEAD);
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
            // Up to AHEAD pages' reads in flight, answered in order: with one, the source
            // sat idle from the end of each page's reply until the next request came.
            let listed = futures_util::stream::unfold(list_rx, |mut rx| async move {
                rx.recv().await.map(|l| (l, rx))
            });
            let reads = listed
                .map(|listed| {
                    let (from, me) = (from.clone(), me.clone());
                    async move {
                        let (items, next, now) = listed?;
                        let reads = read_page(&from, &me, &items).await;
                        Ok((items, next, reads, now))
                    }
                })
                .buffered(AHEAD);
            let mut reads = std::pin::pin!(reads);
            while let Some(read) = reads.next().await {
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
        // Everything before `next` is copied, and in the target's log: that is the
        // checkpoint. (The wait also writes the embedded target's log out a page at a time,
        // instead of holding every copied page in its buffer until the end.)
        p.cursor = next;
        to.durable().await?;
        if let Some(path) = &o.checkpoint {
            save(path, p)?;
        }
        bar.set_position(p.seen);
        pace(o.rate, p.seen - seen_at_start, started).await;
    }
    Ok(())
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
pub(super) const CONCURRENCY: usize = 256;

pub(super) enum Copy {
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
