//! Start-up: replay the snapshot and the logs the manifest names, repair a torn tail, refuse
//! corruption.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::format::{read_frames, Op, Outcome, ReadError, Tail, LOG_MAGIC, SNAPSHOT_MAGIC};
use crate::engine::Engine;

/// What loading found, for the log and INFO.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub snapshot_records: u64,
    pub log_frames: u64,
    /// Bytes cut off the end of the last log (a write torn by a crash).
    pub torn_bytes: u64,
    /// Length of the last log after loading (where appending resumes).
    pub last_log_len: u64,
    pub expired_dropped: u64,
    pub keys_loaded: u64,
}

/// Reads one file of frames from disk, visiting its operations.
pub fn read_file(
    path: &Path,
    magic: &[u8; 16],
    visit: impl FnMut(Op<'_>) -> Result<(), String>,
) -> Result<Outcome, String> {
    let name = path.display();
    let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let len = f.metadata().map_err(|e| format!("{name}: {e}"))?.len();
    let mut scan = f.try_clone().map_err(|e| format!("{name}: {e}"))?;
    read_frames(
        BufReader::with_capacity(1 << 20, f),
        len,
        magic,
        visit,
        |off| {
            // Only after damage: read the rest to look for valid frames beyond it.
            let mut rest = Vec::new();
            scan.seek(SeekFrom::Start(off))?;
            scan.read_to_end(&mut rest)?;
            Ok(rest)
        },
    )
    .map_err(|e| match e {
        ReadError::Visit { offset, reason } => format!("{name}: at offset {offset}: {reason}"),
        e => format!("{name}: {e}"),
    })
}

fn corrupt(path: &Path, offset: u64, reason: &str, next_valid: u64) -> String {
    format!(
        "{} is corrupt at offset {offset} ({reason}); valid data follows at offset {next_valid}, \
         so it is not dropped silently. Inspect it with `sessiond check-aof {}` and repair with \
         `sessiond check-aof --fix {}` (the original is kept as a .bak file)",
        path.display(),
        path.display(),
        path.display()
    )
}

/// Replays `snapshot` (if any) then `logs` into `engine`. A torn tail on the last log is cut
/// off (with a warning saying how much); any other damage is an error naming file and offset.
pub fn replay(
    engine: &Engine,
    dir: &Path,
    snapshot: Option<&str>,
    logs: &[String],
) -> Result<LoadReport, String> {
    let mut report = LoadReport::default();
    if let Some(name) = snapshot {
        let path = dir.join(name);
        let mut ended = None;
        let mut records = 0u64;
        let out = read_file(&path, SNAPSHOT_MAGIC, |op| {
            if ended.is_some() {
                return Err("data after the end marker".into());
            }
            match op {
                Op::End { keys } => ended = Some(keys),
                Op::Set { .. } | Op::Value { .. } => {
                    records += 1;
                    engine.apply(&op)?
                }
                _ => return Err("unexpected operation in a snapshot".into()),
            }
            Ok(())
        })?;
        match (&out.tail, ended) {
            (Tail::Clean, Some(keys)) if keys == records => {}
            (Tail::Clean, Some(keys)) => {
                return Err(format!(
                    "{}: end marker says {keys} records, file holds {records}",
                    path.display()
                ))
            }
            (Tail::Clean, None) => {
                return Err(format!(
                    "{}: snapshot is incomplete (no end marker at offset {})",
                    path.display(),
                    out.valid_len
                ))
            }
            (Tail::Torn { offset, .. }, _) => {
                return Err(format!(
                    "{}: snapshot is truncated or damaged at offset {offset}",
                    path.display()
                ))
            }
            (
                Tail::Corrupt {
                    offset,
                    reason,
                    next_valid,
                },
                _,
            ) => return Err(corrupt(&path, *offset, reason, *next_valid)),
        }
        report.snapshot_records = records;
    }
    for (n, name) in logs.iter().enumerate() {
        let last = n + 1 == logs.len();
        let path = dir.join(name);
        let out = read_file(&path, LOG_MAGIC, |op| engine.apply(&op))?;
        report.log_frames += out.frames;
        match out.tail {
            Tail::Clean => {}
            Tail::Torn { offset, dropped } if last => {
                tracing::warn!(
                    "{}: the last record was torn by a crash mid-write; truncating {dropped} bytes at offset {offset}",
                    path.display()
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if offset < 16 {
                    // Not even the header survived: start the file afresh.
                    use std::io::Write;
                    f.set_len(0)
                        .and_then(|_| (&f).write_all(LOG_MAGIC))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                } else {
                    f.set_len(offset)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                f.sync_all()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                report.torn_bytes = dropped;
            }
            Tail::Torn { offset, dropped } => {
                return Err(format!(
                    "{} ends with {dropped} damaged bytes at offset {offset}, but it is not the \
                     newest log, so they cannot come from a crash mid-write. Inspect it with \
                     `sessiond check-aof {}`",
                    path.display(),
                    path.display()
                ))
            }
            Tail::Corrupt {
                offset,
                ref reason,
                next_valid,
            } => return Err(corrupt(&path, offset, reason, next_valid)),
        }
        if last {
            report.last_log_len = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
        }
    }
    Ok(report)
}
