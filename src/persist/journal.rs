//! The append-only log's write path: an in-memory buffer that commands append to, the file it
//! drains into, and group commit.
//!
//! Appending happens inside the engine's shard lock (so the log's order of two writes to one
//! key is the order they were applied in) and costs one short mutex and a memcpy: the frame is
//! encoded straight into the shared buffer. Positions are logical byte offsets that only grow
//! (`appended`, `written`, `synced`), so "is my write on disk yet" is a comparison.
//!
//! A connection that executed a write waits, before its replies leave, until the log holds
//! everything appended so far ([`Journal::commit`]):
//! * `appendfsync no` / `everysec`: the first connection to get there writes the whole buffer
//!   to the file itself (one `write(2)` for every client's pending records, in the page cache,
//!   as Redis does in its event loop); the others find their records already written. A
//!   background thread calls `fdatasync` once a second under `everysec`.
//! * `appendfsync always`: the sync thread writes and `fdatasync`s; every connection waiting
//!   meanwhile is covered by the next round: one fsync per round for all clients (group
//!   commit), and runtime threads never block on the disk. Under concurrency a round is held
//!   open for up to `group-commit-window-us` so that more writers share it: on a loaded
//!   two-core machine an fsync costs ~70 µs of CPU in this thread plus the kernel's journal
//!   work, and that CPU is taken from serving requests. Measured with 50 clients, a 1 ms
//!   window cut fsyncs from ~17k/s to ~5k/s and raised throughput from ~1.2× to ~1.6×
//!   redis-server's (docs/BENCHMARKS.md). A lone writer never waits (see `cut_round`).
//!
//! # A failing disk (ENOSPC, EIO)
//! A failed write or fsync leaves the unwritten bytes queued, cuts any partial frame off the
//! file (every write goes to an explicit offset, so the next one starts exactly where the
//! last whole frame ended: no hole), and sets an error that makes write commands fail with
//! Redis's `MISCONF` message; reads go on. A connection whose write could not be made durable
//! is closed without its replies: a client never sees success for a write that was not
//! logged. The sync thread retries the queued bytes with a backoff (10 ms doubling to 1 s),
//! whatever the policy, so service resumes by itself when space returns; each change of
//! state (failing, working again) is logged once, never each attempt.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::format::{begin_frame, end_frame, Op, FRAME_HEADER};

/// Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fsync {
    Always = 0,
    EverySec = 1,
    No = 2,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }

    fn from_u8(v: u8) -> Fsync {
        match v {
            0 => Fsync::Always,
            1 => Fsync::EverySec,
            _ => Fsync::No,
        }
    }
}

/// Records appended but not yet handed to the file.
struct Pending {
    buf: Vec<u8>,
    /// Logical offset of the end of `buf`.
    end: u64,
}

/// The log file currently appended to.
pub struct LogFile {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Bytes in the file (header included).
    pub len: u64,
}

struct Sink {
    log: LogFile,
    /// The previous pending buffer, kept for its capacity.
    spare: Vec<u8>,
}

struct SyncState {
    /// Highest offset a connection waits to see fsynced (`always`).
    requested: u64,
    /// Connections that asked for an fsync since the current round was cut off.
    waiters: usize,
    /// What the sync thread is doing, so that askers wake it only when it listens.
    thread: ThreadState,
    stop: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ThreadState {
    /// Waiting for work: any asker wakes it.
    Idle,
    /// Holding a round open: woken only once every connected client waits.
    Gathering,
    /// Writing and fsyncing: it looks for more work before sleeping again.
    Working,
}

pub struct Journal {
    pending: Mutex<Pending>,
    appended: AtomicU64,
    written: AtomicU64,
    synced: tokio::sync::watch::Sender<u64>,
    sink: Mutex<Sink>,
    policy: AtomicU8,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    sync: Mutex<SyncState>,
    sync_wake: Condvar,
    /// Frames appended since start (one per write command).
    frames: AtomicU64,
    /// fsyncs done since start (INFO).
    pub fsyncs: AtomicU64,
    /// How long each fsync took (`/metrics`).
    pub fsync_latency: crate::metrics::Histogram,
    pub last_fsync_ms: AtomicU64,
    /// Connected clients: a round never waits for more writers than there are.
    clients: AtomicUsize,
    /// Longest time a round is held open for more writers (0: never).
    window: Duration,
}

/// A frame encoded in a buffer of its own, appended whole by [`Journal::append_frame`].
pub struct DetachedFrame {
    buf: Vec<u8>,
}

impl Default for DetachedFrame {
    fn default() -> Self {
        let mut buf = Vec::new();
        begin_frame(&mut buf);
        DetachedFrame { buf }
    }
}

impl DetachedFrame {
    pub fn push(&mut self, op: &Op<'_>) {
        op.encode(&mut self.buf);
    }
}

/// One command's frame being written (see [`Journal::begin_frame`]).
pub struct FrameWriter<'a> {
    journal: &'a Journal,
    pending: MutexGuard<'a, Pending>,
    start: usize,
}

impl FrameWriter<'_> {
    /// Adds one operation to the frame.
    pub fn push(&mut self, op: &Op<'_>) {
        op.encode(&mut self.pending.buf);
    }
}

impl Drop for FrameWriter<'_> {
    /// Closes the frame (length and checksums) and publishes the new end of the log. A frame
    /// that got no operation is taken back.
    fn drop(&mut self) {
        let p = &mut *self.pending;
        if p.buf.len() == self.start + FRAME_HEADER {
            p.buf.truncate(self.start);
            return;
        }
        end_frame(&mut p.buf, self.start);
        p.end += (p.buf.len() - self.start) as u64;
        self.journal.appended.store(p.end, Ordering::Release);
        self.journal.frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a connection (see [`Journal::connection`]) until dropped.
pub struct Connection<'a>(&'a Journal);

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let j = self.0;
        let s = lock(&j.sync);
        j.clients.fetch_sub(1, Ordering::AcqRel);
        // A round held open for this client would otherwise sit out its window.
        if s.thread == ThreadState::Gathering && s.waiters >= j.clients.load(Ordering::Acquire) {
            drop(s);
            j.sync_wake.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal {
    /// A journal appending to `log` (open for writing, positioned at its end), and its sync
    /// thread, which stops when the journal is dropped. `window`: see [`Journal::cut_round`].
    pub fn start(log: LogFile, policy: Fsync, window: Duration) -> Arc<Journal> {
        let (synced, _) = tokio::sync::watch::channel(0);
        let j = Arc::new(Journal {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(64 * 1024),
                end: 0,
            }),
            appended: AtomicU64::new(0),
            written: AtomicU64::new(0),
            synced,
            sink: Mutex::new(Sink {
                log,
                spare: Vec::with_capacity(64 * 1024),
            }),
            policy: AtomicU8::new(policy as u8),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            sync: Mutex::new(SyncState {
                requested: 0,
                waiters: 0,
                thread: ThreadState::Working,
                stop: false,
            }),
            sync_wake: Condvar::new(),
            frames: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_latency: Default::default(),
            last_fsync_ms: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            window,
        });
        let weak = Arc::downgrade(&j);
        let _ = std::thread::Builder::new()
            .name("sessiond-fsync".into())
            .spawn(move || sync_thread(weak));
        j
    }

    pub fn policy(&self) -> Fsync {
        Fsync::from_u8(self.policy.load(Ordering::Relaxed))
    }

    pub fn set_policy(&self, p: Fsync) {
        self.policy.store(p as u8, Ordering::Relaxed);
        self.sync_wake.notify_one();
    }

    /// Appends one frame holding `ops` (one command's effects). Called under the shard lock
    /// of the keys involved.
    pub fn append(&self, ops: &[Op<'_>]) {
        let mut w = self.begin_frame();
        for op in ops {
            w.push(op);
        }
    }

    /// Opens a frame that operations are encoded into as a command makes them, straight
    /// into the pending buffer (no copy); it is closed when the writer is dropped. The
    /// buffer's mutex is held meanwhile, so nothing is written out mid-frame: keep it short.
    pub fn begin_frame(&self) -> FrameWriter<'_> {
        let mut pending = lock(&self.pending);
        let start = begin_frame(&mut pending.buf);
        FrameWriter {
            journal: self,
            pending,
            start,
        }
    }

    /// Appends a frame encoded elsewhere ([`DetachedFrame`]): a block that runs for a while
    /// (a script, EXEC) encodes its changes without holding the log's buffer, so writers on
    /// other shards are not held up by it, and appends the frame when it ends (still under
    /// its shard locks, so the log orders it before any later change of the same keys).
    pub fn append_frame(&self, frame: DetachedFrame) {
        let mut buf = frame.buf;
        if buf.len() == FRAME_HEADER {
            return;
        }
        end_frame(&mut buf, 0);
        let mut pending = lock(&self.pending);
        pending.buf.extend_from_slice(&buf);
        pending.end += buf.len() as u64;
        self.appended.store(pending.end, Ordering::Release);
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client connection for group commit, until the guard is dropped.
    pub fn connection(&self) -> Connection<'_> {
        self.clients.fetch_add(1, Ordering::AcqRel);
        Connection(self)
    }

    /// Cuts off an `always` round: the connections that asked for an fsync so far are in it.
    ///
    /// When writers are concurrent (at least two asked since the last round), the round is
    /// first held open up to the window for more of them, unless every connected client is
    /// already waiting. An fsync costs tens of microseconds of CPU besides its wall time, so
    /// on a loaded server fewer, larger rounds raise throughput and cut latency, as
    /// PostgreSQL's `commit_delay` and MySQL's `binlog_group_commit_sync_delay` do. A lone
    /// writer never waits: with one asker the round starts at once.
    fn cut_round(&self) {
        let mut s = lock(&self.sync);
        if !self.window.is_zero() && s.waiters >= 2 {
            let deadline = Instant::now() + self.window;
            s.thread = ThreadState::Gathering;
            loop {
                let now = Instant::now();
                if s.stop || s.waiters >= self.clients.load(Ordering::Acquire) || now >= deadline {
                    break;
                }
                s = self
                    .sync_wake
                    .wait_timeout(s, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        s.thread = ThreadState::Working;
        s.waiters = 0;
    }

    /// Frames (write commands) appended since start.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Logical offset of everything handed to the OS.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Logical offset of everything appended so far.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// The error that currently stops writes, if any.
    pub fn error(&self) -> Option<String> {
        if !self.failed.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.error).clone()
    }

    fn set_error(&self, e: Option<String>) {
        self.failed.store(e.is_some(), Ordering::Relaxed);
        *lock(&self.error) = e;
    }

    /// Waits until everything appended up to `target` is as durable as the policy promises:
    /// handed to the OS (`no`, `everysec`) or fsynced (`always`).
    pub async fn commit(&self, target: u64) -> Result<(), String> {
        if self.policy() != Fsync::Always {
            return self.write_out(target);
        }
        if *self.synced.borrow() >= target {
            return Ok(());
        }
        let mut rx = self.synced.subscribe();
        let wake = {
            let mut s = lock(&self.sync);
            s.requested = s.requested.max(target);
            s.waiters += 1;
            match s.thread {
                ThreadState::Idle => true,
                ThreadState::Gathering => s.waiters >= self.clients.load(Ordering::Acquire),
                ThreadState::Working => false,
            }
        };
        if wake {
            // One futex wake per round at most, not one per asker: on two cores a context
            // switch per write would cost more than the fsyncs saved.
            self.sync_wake.notify_one();
        }
        loop {
            if *rx.borrow_and_update() >= target {
                return Ok(());
            }
            if let Some(e) = self.error() {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return Err("the log is closed".into());
            }
        }
    }

    /// Writes pending records to the file until at least `target` is written.
    pub fn write_out(&self, target: u64) -> Result<(), String> {
        if self.written.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let mut sink = lock(&self.sink);
        self.write_locked(&mut sink, target)
    }

    fn write_locked(&self, sink: &mut Sink, target: u64) -> Result<(), String> {
        if self.written.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (mut buf, end) = {
            let mut p = lock(&self.pending);
            let end = p.end;
            (
                std::mem::replace(&mut p.buf, std::mem::take(&mut sink.spare)),
                end,
            )
        };
        // At the offset where the last whole frame ended, whatever the file position: after a
        // failed write the position may be past it, and a plain write would leave a hole.
        match sink.log.file.write_all_at(&buf, sink.log.len) {
            Ok(()) => {
                sink.log.len += buf.len() as u64;
                self.written.store(end, Ordering::Release);
                buf.clear();
                sink.spare = buf;
                Ok(())
            }
            Err(e) => {
                // Cut any partial frame off the file and queue the bytes again, in front of
                // whatever was appended meanwhile.
                let _ = sink.log.file.set_len(sink.log.len);
                let mut p = lock(&self.pending);
                buf.extend_from_slice(&p.buf);
                p.buf = buf;
                drop(p);
                let msg = format!(
                    "Errors writing to the AOF file: {}",
                    e.kind().to_string().to_lowercase()
                );
                self.fail(msg.clone(), || {
                    format!("writing {}: {e}", sink.log.path.display())
                });
                Err(msg)
            }
        }
    }

    /// Enters (or stays in) the failed state. Logs only the change into it, and wakes every
    /// connection waiting for an fsync so that it sees the error instead of waiting on.
    fn fail(&self, msg: String, detail: impl FnOnce() -> String) {
        if !self.failed.load(Ordering::Relaxed) {
            tracing::error!(
                "{}; write commands are refused (MISCONF) until it works again, retrying",
                detail()
            );
        }
        self.set_error(Some(msg));
        self.synced.send_modify(|_| {});
    }

    /// The sync thread's retry while failed: writes what is queued and (under `always`)
    /// fsyncs it. On success the error clears and write commands are accepted again.
    fn retry(&self) -> Result<(), String> {
        let mut sink = lock(&self.sink);
        let target = self.appended();
        self.write_locked(&mut sink, target)?;
        if self.policy() == Fsync::Always {
            let file = sink.log.file.clone();
            self.fsync(&file, target)?;
        }
        drop(sink);
        if self.failed.load(Ordering::Relaxed) {
            tracing::warn!("the append-only log can be written again; write commands resume");
            self.set_error(None);
        }
        Ok(())
    }

    /// Writes everything and fsyncs (shutdown, before a rewrite switches files).
    pub fn sync_all(&self) -> Result<(), String> {
        let mut sink = lock(&self.sink);
        self.sync_locked(&mut sink)
    }

    fn sync_locked(&self, sink: &mut Sink) -> Result<(), String> {
        let target = self.appended();
        self.write_locked(sink, target)?;
        let file = sink.log.file.clone();
        self.fsync(&file, target)
    }

    fn fsync(&self, file: &File, upto: u64) -> Result<(), String> {
        let t = Instant::now();
        match file.sync_data() {
            Ok(()) => {
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.fsync_latency.record(0, t.elapsed());
                self.last_fsync_ms
                    .store(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                self.synced.send_if_modified(|s| {
                    let grew = upto > *s;
                    *s = (*s).max(upto);
                    grew
                });
                Ok(())
            }
            Err(e) => {
                let msg = format!(
                    "Errors writing to the AOF file: fsync failed: {}",
                    e.kind().to_string().to_lowercase()
                );
                self.fail(msg.clone(), || format!("fsync of the append-only log: {e}"));
                Err(msg)
            }
        }
    }

    /// Switches to a new log file: everything appended so far is written and fsynced to the
    /// old file first, so the old file is complete and the new one starts at a frame boundary.
    pub fn rotate(&self, new: LogFile) -> Result<LogFile, String> {
        let mut sink = lock(&self.sink);
        self.sync_locked(&mut sink)?;
        Ok(std::mem::replace(&mut sink.log, new))
    }

    /// Size of the current log file in bytes.
    pub fn file_len(&self) -> u64 {
        lock(&self.sink).log.len
    }

    /// Stops the sync thread (after a final `sync_all`, at shutdown).
    pub fn stop(&self) {
        lock(&self.sync).stop = true;
        self.sync_wake.notify_one();
    }
}

/// The first retry after a failed write waits this long; each failure doubles it up to
/// [`RETRY_MAX`]: a full disk costs a few wake-ups a second, not a spinning core.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

fn sync_thread(weak: Weak<Journal>) {
    let mut last_everysec = Instant::now();
    let mut backoff = RETRY_MIN;
    loop {
        let Some(j) = weak.upgrade() else { return };
        if j.failed.load(Ordering::Relaxed) {
            // Failed: wait out the backoff (only a stop cuts it short), then retry.
            let s = lock(&j.sync);
            let (s, _) = j
                .sync_wake
                .wait_timeout_while(s, backoff, |s| !s.stop)
                .unwrap_or_else(|p| p.into_inner());
            if s.stop {
                return;
            }
            drop(s);
            match j.retry() {
                Ok(()) => backoff = RETRY_MIN,
                Err(_) => backoff = (backoff * 2).min(RETRY_MAX),
            }
            continue;
        }
        let requested = {
            let mut s = lock(&j.sync);
            s.thread = ThreadState::Idle;
            let (mut s, _) = j
                .sync_wake
                .wait_timeout_while(s, Duration::from_millis(200), |s| {
                    !s.stop
                        && s.requested <= *j.synced.borrow()
                        && !j.failed.load(Ordering::Relaxed)
                })
                .unwrap_or_else(|p| p.into_inner());
            s.thread = ThreadState::Working;
            if s.stop {
                return;
            }
            s.requested
        };
        match j.policy() {
            Fsync::Always if requested > *j.synced.borrow() => {
                j.cut_round();
                let mut sink = lock(&j.sink);
                let _ = j.sync_locked(&mut sink);
            }
            Fsync::EverySec | Fsync::Always
                if last_everysec.elapsed() >= Duration::from_secs(1) =>
            {
                last_everysec = Instant::now();
                let upto = j.written.load(Ordering::Acquire);
                if upto > *j.synced.borrow() {
                    // fsync a handle of its own: writers keep appending meanwhile.
                    let file = lock(&j.sink).log.file.clone();
                    let _ = j.fsync(&file, upto);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal on a fresh file in a temp dir, with a window no test could sit out: if a
    /// round were held open when it should not be, the test would time out instead of pass.
    fn journal(name: &str) -> (Arc<Journal>, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("sessiond-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("log");
        let file = File::create(&path).expect("log file");
        let log = LogFile {
            file: Arc::new(file),
            path,
            len: 0,
        };
        (
            Journal::start(log, Fsync::Always, Duration::from_secs(3600)),
            dir,
        )
    }

    fn set(j: &Journal, key: &[u8]) -> u64 {
        j.append(&[Op::Set {
            db: 0,
            key,
            value: b"v",
            expire: 0,
        }]);
        j.appended()
    }

    async fn commit(j: Arc<Journal>, target: u64) {
        tokio::time::timeout(Duration::from_secs(60), j.commit(target))
            .await
            .expect("commit held by the group-commit window")
            .expect("commit");
    }

    #[tokio::test]
    async fn lone_writer_never_waits_for_the_window() {
        let (j, dir) = journal("lone");
        let _a = j.connection();
        let _idle = j.connection();
        for i in 0..20u8 {
            let t = set(&j, &[i]);
            commit(j.clone(), t).await;
        }
        assert_eq!(
            j.fsyncs.load(Ordering::Relaxed),
            20,
            "one fsync per sequential write"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write that fails (here: a read-only handle, as a full disk would) reaches the
    /// waiting client as an error at once; it used to wait until something else woke it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_wakes_its_waiter_with_the_error() {
        let (good, dir) = journal("fail");
        let path = dir.join("readonly");
        std::fs::write(&path, b"").expect("file");
        let log = LogFile {
            file: Arc::new(File::open(&path).expect("open")),
            path,
            len: 0,
        };
        drop(good);
        let j = Journal::start(log, Fsync::Always, Duration::from_secs(3600));
        let _conn = j.connection();
        let t = set(&j, b"k");
        let r = tokio::time::timeout(Duration::from_secs(30), j.commit(t))
            .await
            .expect("a failed write left its waiter hanging");
        assert!(r.is_err_and(|e| e.starts_with("Errors writing to the AOF file")));
        assert!(j.error().is_some(), "writes are refused while failing");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_closes_when_every_client_waits_or_leaves() {
        let (j, dir) = journal("all");
        let tasks: Vec<_> = (0..8u8)
            .map(|c| {
                let j = j.clone();
                tokio::spawn(async move {
                    let _conn = j.connection();
                    for i in 0..10u8 {
                        let t = set(&j, &[c, i]);
                        commit(j.clone(), t).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(j.frames(), 80);
        let fsyncs = j.fsyncs.load(Ordering::Relaxed);
        assert!((1..=80).contains(&fsyncs), "{fsyncs} fsyncs");
        assert_eq!(j.clients.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
