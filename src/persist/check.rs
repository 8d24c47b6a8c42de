//! `sessiond check-aof [--fix] PATH`: checks a log or snapshot file (or every file a data
//! directory's manifest names) and, with `--fix`, repairs it.
//!
//! Repair keeps every valid frame: a torn tail is cut off, and a damaged region in the middle
//! is cut out with the valid frames after it kept (Redis's `redis-check-aof --fix` truncates
//! everything after the first error instead). Each dropped region is reported with its offset
//! and length, and the original file is kept as `<file>.bak`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{
    decode_ops, find_valid_frame, frame, frame_at, Op, FRAME_HEADER, LOG_MAGIC, SNAPSHOT_MAGIC,
};
use super::manifest::{sync_dir, Manifest, MANIFEST};

/// A damaged byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
    /// Nothing valid follows it: what a crash mid-write leaves.
    pub torn: bool,
}

#[derive(Debug, Default)]
pub struct FileReport {
    pub path: PathBuf,
    pub frames: u64,
    pub damage: Vec<Damage>,
    /// Snapshot only: whether a correct end marker is present.
    pub snapshot_end_ok: Option<bool>,
    pub fixed: bool,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.damage.is_empty() && self.snapshot_end_ok != Some(false)
    }
}

/// Checks one file; with `fix`, rewrites it without the damaged regions.
pub fn check_file(path: &Path, fix: bool) -> Result<FileReport, String> {
    let img = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut report, repaired) =
        analyze(&img, fix).map_err(|e| format!("{}: {e}", path.display()))?;
    report.path = path.to_path_buf();
    if let Some(out) = repaired {
        let bak = PathBuf::from(format!("{}.bak", path.display()));
        let tmp = PathBuf::from(format!("{}.fixed", path.display()));
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // Nothing half-written is left behind, and the message says what room it needs.
            let _ = fs::remove_file(&tmp);
            return Err(format!(
                "{}: cannot write the repaired copy ({} bytes, beside the original): {e}",
                path.display(),
                out.len()
            ));
        }
        fs::rename(path, &bak).map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir).map_err(io)?;
        }
        report.fixed = true;
    }
    Ok(report)
}

/// Checks a file image in memory; with `fix` and damage found, also returns the repaired
/// image: every valid frame in order, and for a snapshot a correct end marker. The repaired
/// image always checks clean (the `check_repair` fuzz target holds it to that).
pub fn analyze(img: &[u8], fix: bool) -> Result<(FileReport, Option<Vec<u8>>), String> {
    let snapshot = img.starts_with(SNAPSHOT_MAGIC);
    if !snapshot && !img.starts_with(LOG_MAGIC) && img.len() >= 16 {
        return Err("not a sessiond log or snapshot (bad header)".into());
    }
    let mut report = FileReport::default();
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut pos = 16.min(img.len());
    if img.len() < 16 {
        report.damage.push(Damage {
            offset: 0,
            len: img.len() as u64,
            torn: true,
        });
    }
    while pos < img.len() {
        if let Some(end) = frame_at(img, pos) {
            kept.push((pos, end));
            report.frames += 1;
            pos = end;
            continue;
        }
        match find_valid_frame(img, pos + 1) {
            Some(next) => {
                report.damage.push(Damage {
                    offset: pos as u64,
                    len: (next - pos) as u64,
                    torn: false,
                });
                pos = next;
            }
            None => {
                report.damage.push(Damage {
                    offset: pos as u64,
                    len: (img.len() - pos) as u64,
                    torn: true,
                });
                break;
            }
        }
    }
    // A snapshot must end with an end marker counting its records.
    let mut records = 0u64;
    let mut end_marker = None;
    if snapshot {
        for &(a, b) in &kept {
            for op in decode_ops(&img[a + FRAME_HEADER..b]).unwrap_or_default() {
                match op {
                    Op::End { keys } => end_marker = Some(keys),
                    Op::Set { .. } | Op::Value { .. } => records += 1,
                    _ => {}
                }
            }
        }
        report.snapshot_end_ok = Some(end_marker == Some(records));
    }
    if !fix || report.ok() {
        return Ok((report, None));
    }
    let mut out = if snapshot {
        SNAPSHOT_MAGIC.to_vec()
    } else {
        LOG_MAGIC.to_vec()
    };
    for &(a, b) in &kept {
        let ops = decode_ops(&img[a + FRAME_HEADER..b]).unwrap_or_default();
        if snapshot && ops.iter().any(|o| matches!(o, Op::End { .. })) {
            // The end marker moves to the end; whatever else its frame held stays.
            let rest: Vec<Op<'_>> = ops
                .into_iter()
                .filter(|o| !matches!(o, Op::End { .. }))
                .collect();
            if !rest.is_empty() {
                frame(&mut out, &rest);
            }
        } else {
            out.extend_from_slice(&img[a..b]);
        }
    }
    if snapshot {
        frame(&mut out, &[Op::End { keys: records }]);
    }
    Ok((report, Some(out)))
}

/// Checks `path`: one file, or a data directory (every file its manifest names).
pub fn check(path: &Path, fix: bool) -> Result<Vec<FileReport>, String> {
    if !path.is_dir() {
        return Ok(vec![check_file(path, fix)?]);
    }
    let m = match Manifest::read(path)? {
        Some(m) => m,
        None => {
            let m = Manifest::infer(path)?.ok_or_else(|| {
                format!(
                    "{}: no {MANIFEST} and no snapshot-N.sdb or log-N.aof files here",
                    path.display()
                )
            })?;
            println!(
                "{}: no {MANIFEST}; the files present make this one:\n{}",
                path.display(),
                m.render().trim_end()
            );
            if fix {
                m.write(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                println!("{MANIFEST} written");
            } else {
                println!("(run again with --fix to write it; `sessiond serve` also rebuilds it)");
            }
            m
        }
    };
    m.files().map(|f| check_file(&path.join(f), fix)).collect()
}

/// Renders a report the way the command prints it.
pub fn describe(r: &FileReport) -> String {
    let mut s = format!("{}: {} valid frames", r.path.display(), r.frames);
    if r.ok() {
        s.push_str(", OK");
    }
    for d in &r.damage {
        s.push_str(&format!(
            "\n  {} at offset {}: {} bytes{}",
            if d.torn {
                "torn tail (a crash mid-write)"
            } else {
                "CORRUPT region, valid frames follow"
            },
            d.offset,
            d.len,
            if r.fixed { " dropped" } else { "" }
        ));
    }
    if r.snapshot_end_ok == Some(false) {
        s.push_str(&format!(
            "\n  snapshot end marker missing or wrong{}",
            if r.fixed { " (rewritten)" } else { "" }
        ));
    }
    if r.fixed {
        s.push_str(&format!(
            "\n  repaired; the original is kept as {}.bak",
            r.path.display()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut img = LOG_MAGIC.to_vec();
        let mut ends = vec![img.len()];
        for i in 0..n {
            let k = format!("k{i}");
            frame(
                &mut img,
                &[Op::Set {
                    db: 0,
                    key: k.as_bytes(),
                    value: b"value",
                    expire: 0,
                }],
            );
            ends.push(img.len());
        }
        (img, ends)
    }

    #[test]
    fn fix_cuts_out_a_damaged_middle_and_keeps_what_follows() {
        let dir = std::env::temp_dir().join(format!("sessiond-check-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log-1.aof");
        let (mut img, ends) = frames(5);
        img[ends[2] + FRAME_HEADER + 1] ^= 0x40; // damage frame 3 of 5
        img.extend_from_slice(b"\x07\x00"); // and a torn tail
        fs::write(&path, &img).unwrap();
        let r = check_file(&path, false).unwrap();
        assert_eq!(r.frames, 4);
        assert_eq!(
            r.damage,
            vec![
                Damage {
                    offset: ends[2] as u64,
                    len: (ends[3] - ends[2]) as u64,
                    torn: false
                },
                Damage {
                    offset: ends[5] as u64,
                    len: 2,
                    torn: true
                }
            ]
        );
        let r = check_file(&path, true).unwrap();
        assert!(r.fixed);
        let again = check_file(&path, false).unwrap();
        assert!(again.ok(), "{}", describe(&again));
        assert_eq!(again.frames, 4);
        assert_eq!(fs::read(dir.join("log-1.aof.bak")).unwrap(), img);
        fs::remove_dir_all(&dir).unwrap();
    }
}
