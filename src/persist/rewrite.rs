//! Snapshot + log rewrite (compaction); the procedure and why it is safe are in `mod.rs`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::manifest::{log_name, snapshot_name, sync_dir, Manifest};
use super::{create_log, format, io_err, Persistence};

/// Clears the engine's snapshot flag however the rewrite ends.
struct SnapshotFlag<'a>(&'a crate::engine::Engine);

impl Drop for SnapshotFlag<'_> {
    fn drop(&mut self) {
        self.0.set_snapshot_active(false);
    }
}

impl Persistence {
    /// Writes a new snapshot and (with a log) starts a new log, then retires the old files.
    /// The caller holds the `running` claim.
    pub(super) fn rewrite(&self, why: &str) -> Result<(), String> {
        let started = Instant::now();
        self.stats
            .rewrite_started_ms
            .store(crate::clock::now_ms().max(1), Ordering::SeqCst);
        let result = self.rewrite_inner();
        let ms = started.elapsed().as_millis() as i64;
        self.stats.rewrite_started_ms.store(0, Ordering::SeqCst);
        self.stats.last_rewrite_ms.store(ms, Ordering::Relaxed);
        self.stats
            .last_save_ok
            .store(result.is_ok(), Ordering::Relaxed);
        match &result {
            Ok(records) => {
                self.stats.saves.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .last_save_unix
                    .store(crate::clock::now_ms() / 1000, Ordering::Relaxed);
                tracing::info!("{why}: snapshot of {records} records written in {ms} ms");
            }
            Err(e) => tracing::error!("{why} failed after {ms} ms: {e}"),
        }
        let failures = if result.is_ok() {
            0
        } else {
            self.stats.failures_in_a_row.load(Ordering::Relaxed) + 1
        };
        self.stats
            .failures_in_a_row
            .store(failures, Ordering::Relaxed);
        let wait_ms = if failures == 0 {
            0
        } else {
            1000i64 << (failures - 1).min(6)
        };
        self.stats
            .next_auto_rewrite_ms
            .store(crate::clock::now_ms() + wait_ms, Ordering::Relaxed);
        result.map(|_| ())
    }

    /// Streams the engine into `tmp`, fsyncs it and renames it to `path`: records and size.
    fn write_snapshot(&self, tmp: &Path, path: &Path) -> Result<(u64, u64), String> {
        let file = File::create(tmp).map_err(|e| io_err(tmp, e))?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        w.write_all(format::SNAPSHOT_MAGIC)
            .map_err(|e| io_err(tmp, e))?;
        let now = crate::clock::now_ms();
        let records = self
            .engine
            .dump(now, &mut |b| w.write_all(b))
            .map_err(|e| io_err(tmp, e))?;
        let file = w.into_inner().map_err(|e| io_err(tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(tmp, e))?;
        let size = file.metadata().map_err(|e| io_err(tmp, e))?.len();
        drop(file);
        fs::rename(tmp, path).map_err(|e| io_err(path, e))?;
        Ok((records, size))
    }

    fn rewrite_inner(&self) -> Result<u64, String> {
        let dir = self.cfg.dir.as_path();
        self.engine.set_snapshot_active(true);
        let _flag = SnapshotFlag(&self.engine);
        let old = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let generation = old.generation + 1;

        // 1–2. New log named in the manifest, then the journal switches to it.
        let appended_at_switch = if let Some(j) = &self.journal {
            let log = create_log(dir, generation)?;
            let mut during = old.clone();
            during.generation = generation;
            during.logs.push(log_name(generation));
            if let Err(e) = during.write(dir) {
                // Not named by any manifest and never appended to: ours to remove.
                let _ = fs::remove_file(&log.path);
                return Err(io_err(dir, e));
            }
            *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = during;
            j.rotate(log)?;
            j.frames()
        } else {
            0
        };

        // 3. The snapshot, streamed from the engine.
        let name = snapshot_name(generation);
        let tmp = dir.join(format!("{name}.tmp"));
        let path = dir.join(&name);
        let (records, size) = self.write_snapshot(&tmp, &path).inspect_err(|_| {
            // A half-written snapshot would only hold on to the space a full disk needs back.
            let _ = fs::remove_file(&tmp);
        })?;
        sync_dir(dir).map_err(|e| io_err(dir, e))?;

        // 4. The new manifest, then the old files go.
        let new = Manifest {
            generation,
            snapshot: Some(name),
            logs: if self.journal.is_some() {
                vec![log_name(generation)]
            } else {
                Vec::new()
            },
        };
        new.write(dir).map_err(|e| io_err(dir, e))?;
        let previous = std::mem::replace(
            &mut *self.manifest.lock().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        for f in old.files().chain(previous.files()) {
            if !new.files().any(|n| n == f) {
                let _ = fs::remove_file(dir.join(f));
            }
        }
        self.stats.base_size.store(size, Ordering::Relaxed);
        self.stats
            .frames_at_save
            .store(appended_at_switch, Ordering::Relaxed);
        Ok(records)
    }
}
