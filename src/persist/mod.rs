//! Crash-safe persistence for the embedded engine: an append-only log plus snapshots, kept
//! consistent by a manifest.
//!
//! # Files (in `--dir`)
//! * `sessiond.manifest` — the snapshot and logs that make up the data ([`manifest`]);
//! * `snapshot-N.sdb` — every live record at some moment, ending with an end marker;
//! * `log-N.aof` — every change since, one checksummed frame per command ([`format`]);
//! * `LOCK` — held (flock) while a server uses the directory, so two never share it.
//!
//! # Write path and the fsync policies
//! Each mutation appends its result to the journal inside the shard lock; the connection,
//! before its replies leave, waits for the journal to reach the policy's durability
//! ([`journal`]): written to the OS (`no`, `everysec`; a SIGKILL loses nothing acknowledged),
//! or fsynced (`always`, with group commit: one fsync covers every client waiting). Reads do
//! not wait, so under `always` a client can read a value whose fsync is still in flight (its
//! writer has not been acknowledged yet); every *acknowledged* write is on disk.
//!
//! # Expiry
//! Records carry absolute unix-ms expiry times, so a restart never extends a session. Replay
//! ignores the clock (a later EXPIRE may extend a key that, by now, looks expired), then drops
//! everything expired before the server accepts a connection.
//!
//! # Rewrite (compaction), without fork and without doubling memory
//! When the log outgrows `auto-aof-rewrite-percentage` of the last snapshot's size (and
//! `auto-aof-rewrite-min-size`), or on BGREWRITEAOF/BGSAVE/SAVE:
//! 1. create `log-(N+1).aof` and write a manifest naming old snapshot + old logs + new log;
//! 2. switch the journal to the new log (the old one is written and fsynced first);
//! 3. write `snapshot-(N+1).sdb` from the live engine while clients keep writing, one shard
//!    lock held for at most a few hundred buckets at a time (the only pause clients see);
//!    fsync, rename into place;
//! 4. write a manifest naming only the new snapshot and the new log; delete the old files.
//!
//! The snapshot is "fuzzy": each key is copied at some moment after step 2. Every log record
//! is a result (SET of the whole value, DEL, EXPIREAT of an absolute time), so replaying the
//! new log over any such copy ends in the state the server had. SWAPDB is the one operation
//! whose replay is not idempotent; it is refused while a snapshot is being written.
//! Memory: the copy is streamed in 64 KiB frames; nothing is duplicated in RAM.
//!
//! With `appendonly no`, there is no log: SAVE/BGSAVE and a graceful shutdown write a
//! snapshot, as Redis's RDB.

pub mod check;
pub mod format;
pub mod journal;
pub mod load;
pub mod manifest;
mod op;
mod rewrite;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use crate::engine::Engine;
pub use journal::Fsync;
use journal::{Journal, LogFile};
use manifest::{log_name, Manifest, MANIFEST};

/// Persistence settings (Redis's names).
#[derive(Debug, Clone)]
pub struct PersistConfig {
    pub dir: PathBuf,
    pub appendonly: bool,
    pub appendfsync: Fsync,
    /// Rewrite when the log exceeds this percentage of the last snapshot's size…
    pub auto_rewrite_percentage: u64,
    /// …and is at least this many bytes.
    pub auto_rewrite_min_size: u64,
    /// `always`: how long an fsync round may wait for more writers (see [`journal`]).
    pub group_commit_window: std::time::Duration,
}

/// Counters and times for `INFO persistence`.
#[derive(Default)]
struct Stats {
    last_save_unix: AtomicI64,
    last_save_ok: AtomicBool,
    saves: AtomicU64,
    last_rewrite_ms: AtomicI64,
    /// Unix ms when the running rewrite started; 0 when none runs.
    rewrite_started_ms: AtomicI64,
    base_size: AtomicU64,
    /// The journal's frame count when the last snapshot began.
    frames_at_save: AtomicU64,
    /// Rewrites failed in a row (a full disk): automatic ones back off, 2^n s up to 64 s.
    failures_in_a_row: AtomicU64,
    /// Unix ms before which no automatic rewrite starts.
    next_auto_rewrite_ms: AtomicI64,
}

/// The persistence state `/metrics` reports.
pub struct PersistMetrics {
    /// Writes are refused (MISCONF): the log cannot be written.
    pub write_error: bool,
    pub rewriting: bool,
    pub rewrites: u64,
    pub last_save_unix: i64,
}

pub struct Persistence {
    cfg: PersistConfig,
    engine: Engine,
    journal: Option<Arc<Journal>>,
    manifest: Mutex<Manifest>,
    /// A snapshot/rewrite is running (one at a time).
    running: AtomicBool,
    shutdown_prepared: AtomicBool,
    stats: Stats,
    pub load: load::LoadReport,
    pub load_ms: u64,
    /// Held for the process's life: the directory's flock.
    _lock: File,
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Creates a new, empty log file (header written and fsynced). The name must be new: an
/// existing file is never truncated. If the header cannot be written (a full disk), the
/// file this call created is removed again.
fn create_log(dir: &Path, generation: u64) -> Result<LogFile, String> {
    let path = dir.join(log_name(generation));
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    if let Err(e) = f
        .write_all(format::LOG_MAGIC)
        .and_then(|_| f.sync_all())
        .and_then(|_| manifest::sync_dir(dir))
    {
        drop(f);
        let _ = fs::remove_file(&path);
        return Err(io_err(&path, e));
    }
    Ok(LogFile {
        file: Arc::new(f),
        path,
        len: format::LOG_MAGIC.len() as u64,
    })
}

impl Persistence {
    /// Opens (creating if needed) the data directory, loads its data into `engine`, and
    /// attaches the journal. Nothing is served before this returns.
    pub fn open(cfg: PersistConfig, engine: &Engine) -> Result<Arc<Persistence>, String> {
        let started = Instant::now();
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create --dir {}: {e}", dir.display()))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        lock.try_lock().map_err(|_| {
            format!(
                "{} is in use by another sessiond (its LOCK file is held)",
                dir.display()
            )
        })?;
        let (mut m, inferred) =
            match Manifest::read(&dir)? {
                Some(m) => (m, false),
                None => {
                    match Manifest::infer(&dir)? {
                        Some(m) => {
                            tracing::warn!(
                        "{} has data files but no {MANIFEST}: rebuilding it from the files \
                         present (snapshot: {}; logs: {})",
                        dir.display(),
                        m.snapshot.as_deref().unwrap_or("none"),
                        if m.logs.is_empty() { "none".to_string() } else { m.logs.join(", ") }
                    );
                            (m, true)
                        }
                        None => (Manifest::default(), false),
                    }
                }
            };
        // New files are numbered past every file present, so creating one never meets (and
        // never truncates) a file the manifest does not account for.
        let present = manifest::DataFiles::scan(&dir).map_err(|e| io_err(&dir, e))?;
        m.generation = m.generation.max(present.max_generation);
        let mut report = load::replay(engine, &dir, m.snapshot.as_deref(), &m.logs)?;
        if inferred {
            m.write(&dir).map_err(|e| io_err(&dir, e))?;
        }
        let now = crate::clock::now_ms();
        report.expired_dropped = engine.purge_expired(now);
        report.keys_loaded = engine.key_count();
        let journal = if cfg.appendonly {
            let log = match m.logs.last() {
                Some(name) => {
                    let path = dir.join(name);
                    // Not O_APPEND: the journal writes at explicit offsets (see journal.rs).
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_err(&path, e))?;
                    LogFile {
                        file: Arc::new(f),
                        path,
                        len: report.last_log_len,
                    }
                }
                None => {
                    m.generation += 1;
                    let log = create_log(&dir, m.generation)?;
                    m.logs.push(log_name(m.generation));
                    m.write(&dir).map_err(|e| io_err(&dir, e))?;
                    log
                }
            };
            let j = Journal::start(log, cfg.appendfsync, cfg.group_commit_window);
            engine.attach_journal(j.clone());
            Some(j)
        } else {
            None
        };
        let base_size = m
            .snapshot
            .as_ref()
            .and_then(|s| fs::metadata(dir.join(s)).ok())
            .map_or(0, |md| md.len());
        let load_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            "loaded {} keys from {} in {load_ms} ms ({} snapshot records, {} log records, {} expired while down)",
            report.keys_loaded,
            dir.display(),
            report.snapshot_records,
            report.log_frames,
            report.expired_dropped
        );
        let p = Persistence {
            cfg,
            engine: engine.clone(),
            journal,
            manifest: Mutex::new(m),
            running: AtomicBool::new(false),
            shutdown_prepared: AtomicBool::new(false),
            stats: Stats::default(),
            load: report,
            load_ms,
            _lock: lock,
        };
        p.stats.last_save_unix.store(now / 1000, Ordering::Relaxed);
        p.stats.last_save_ok.store(true, Ordering::Relaxed);
        p.stats.last_rewrite_ms.store(-1, Ordering::Relaxed);
        p.stats.base_size.store(base_size, Ordering::Relaxed);
        Ok(Arc::new(p))
    }

    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    pub fn config(&self) -> &PersistConfig {
        &self.cfg
    }

    /// The error that stops writes (a failing disk), if any.
    pub fn write_error(&self) -> Option<String> {
        self.journal.as_ref().and_then(|j| j.error())
    }

    pub fn rewrite_in_progress(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn claim(&self) -> Result<(), String> {
        self.running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
            .map_err(|_| "in progress".to_string())
    }

    /// Starts a snapshot/rewrite on a background thread. Err if one is already running.
    pub fn start_background(self: &Arc<Self>, why: &'static str) -> Result<(), String> {
        self.claim()?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("sessiond-rewrite".into())
            .spawn(move || {
                if let Err(e) = me.rewrite(why) {
                    tracing::error!("background {why} failed: {e}");
                }
                me.running.store(false, Ordering::SeqCst);
            })
            .map(|_| ())
            .map_err(|e| {
                self.running.store(false, Ordering::SeqCst);
                e.to_string()
            })
    }

    /// Writes a snapshot now and waits for it (SAVE). Err("in progress") if a background
    /// one is running.
    pub fn save(&self) -> Result<(), String> {
        self.claim()?;
        let r = self.rewrite("save");
        self.running.store(false, Ordering::SeqCst);
        r
    }

    /// Waits for a running background snapshot to finish (shutdown).
    fn wait_idle(&self) {
        while self.rewrite_in_progress() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Called about once a second: starts a rewrite when the log has outgrown the snapshot.
    pub fn cron(self: &Arc<Self>) {
        let Some(j) = &self.journal else { return };
        if self.rewrite_in_progress() {
            return;
        }
        if crate::clock::now_ms() < self.stats.next_auto_rewrite_ms.load(Ordering::Relaxed) {
            return;
        }
        let len = j.file_len();
        let base = self.stats.base_size.load(Ordering::Relaxed);
        let pct = self.cfg.auto_rewrite_percentage;
        if pct == 0 || len < self.cfg.auto_rewrite_min_size {
            return;
        }
        if base == 0 || len.saturating_mul(100) > base.saturating_mul(100 + pct) {
            tracing::info!(
                "starting automatic log rewrite: log {len} bytes, last snapshot {base} bytes"
            );
            let _ = self.start_background("log rewrite");
        }
    }

    /// Prepares a graceful shutdown (SHUTDOWN, or a signal): everything logged is fsynced;
    /// with `save` a snapshot is written too, and without a log one is written unless
    /// `nosave`. On error the server keeps running (as Redis's SHUTDOWN does).
    pub fn shutdown(&self, save: bool, nosave: bool) -> Result<(), String> {
        if let Some(j) = &self.journal {
            j.sync_all()?;
        }
        if save || (self.journal.is_none() && !nosave) {
            loop {
                self.wait_idle();
                match self.save() {
                    Err(e) if e == "in progress" => continue,
                    r => break r?,
                }
            }
        }
        self.shutdown_prepared.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) already ran.
    pub fn shutdown_prepared(&self) -> bool {
        self.shutdown_prepared.load(Ordering::SeqCst)
    }

    /// The very last step, after every connection has ended: fsync what they wrote since.
    pub fn finish(&self) -> Result<(), String> {
        self.wait_idle();
        if let Some(j) = &self.journal {
            j.sync_all()?;
            j.stop();
        }
        Ok(())
    }

    pub fn last_save_unix(&self) -> i64 {
        self.stats.last_save_unix.load(Ordering::Relaxed)
    }

    /// What `/metrics` reports (`metrics/export.rs`).
    pub fn metrics(&self) -> PersistMetrics {
        PersistMetrics {
            write_error: self.write_error().is_some(),
            rewriting: self.rewrite_in_progress(),
            rewrites: self.stats.saves.load(Ordering::Relaxed),
            last_save_unix: self.last_save_unix(),
        }
    }

    /// The `INFO persistence` section's fields.
    pub fn info_fields(&self) -> Vec<(&'static str, String)> {
        let st = &self.stats;
        let now = crate::clock::now_ms();
        let started = st.rewrite_started_ms.load(Ordering::Relaxed);
        // The claim, taken before BGSAVE/BGREWRITEAOF replies: a client that asks right
        // after its reply sees the rewrite as running, never the previous status.
        let running = self.rewrite_in_progress();
        let current = if started != 0 {
            ((now - started) / 1000).to_string()
        } else {
            "-1".into()
        };
        let ok = |b: bool| if b { "ok" } else { "err" }.to_string();
        let last_ok = st.last_save_ok.load(Ordering::Relaxed);
        let last_secs = match st.last_rewrite_ms.load(Ordering::Relaxed) {
            -1 => "-1".to_string(),
            ms => (ms / 1000).to_string(),
        };
        let changes = self.journal.as_ref().map_or(0, |j| {
            j.frames()
                .saturating_sub(st.frames_at_save.load(Ordering::Relaxed))
        });
        let mut v = vec![
            ("loading", "0".to_string()),
            ("async_loading", "0".into()),
            ("rdb_changes_since_last_save", changes.to_string()),
            ("rdb_bgsave_in_progress", (running as u8).to_string()),
            ("rdb_last_save_time", self.last_save_unix().to_string()),
            ("rdb_last_bgsave_status", ok(last_ok)),
            ("rdb_last_bgsave_time_sec", last_secs.clone()),
            ("rdb_current_bgsave_time_sec", current.clone()),
            ("rdb_saves", st.saves.load(Ordering::Relaxed).to_string()),
            (
                "rdb_last_load_keys_expired",
                self.load.expired_dropped.to_string(),
            ),
            (
                "rdb_last_load_keys_loaded",
                self.load.keys_loaded.to_string(),
            ),
            ("aof_enabled", (self.journal.is_some() as u8).to_string()),
            ("aof_rewrite_in_progress", (running as u8).to_string()),
            ("aof_rewrite_scheduled", "0".into()),
            ("aof_last_rewrite_time_sec", last_secs),
            ("aof_current_rewrite_time_sec", current),
            ("aof_last_bgrewrite_status", ok(last_ok)),
            ("aof_rewrites", st.saves.load(Ordering::Relaxed).to_string()),
            ("aof_last_write_status", ok(self.write_error().is_none())),
        ];
        if let Some(j) = &self.journal {
            v.extend([
                ("aof_current_size", j.file_len().to_string()),
                (
                    "aof_base_size",
                    st.base_size.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "aof_buffer_length",
                    (j.appended() - j.written()).to_string(),
                ),
                ("aof_fsync_policy", j.policy().name().to_string()),
                ("aof_fsyncs", j.fsyncs.load(Ordering::Relaxed).to_string()),
            ]);
        }
        v.extend([
            ("sessiond_dir", self.cfg.dir.display().to_string()),
            ("sessiond_load_time_ms", self.load_ms.to_string()),
            ("sessiond_load_torn_bytes", self.load.torn_bytes.to_string()),
        ]);
        v
    }
}
