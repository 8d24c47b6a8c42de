//! The manifest: which snapshot and which log files make up the data, in replay order.
//!
//! It is the single point of truth that makes a rewrite crash-safe: files are only ever
//! added to the data by writing a new manifest (to a temporary file, fsynced, renamed over the
//! old one, directory fsynced), and removed only after a manifest that no longer names them is
//! durable. A crash at any moment leaves a manifest that names a complete, consistent set.
//!
//! ```text
//! # sessiond manifest v1
//! generation 7
//! snapshot snapshot-7.sdb
//! log log-7.aof
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub const MANIFEST: &str = "sessiond.manifest";
const HEADER: &str = "# sessiond manifest v1";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Increases with every rewrite; names the files it creates.
    pub generation: u64,
    pub snapshot: Option<String>,
    /// Log files, oldest first; only the last is appended to.
    pub logs: Vec<String>,
}

pub fn snapshot_name(generation: u64) -> String {
    format!("snapshot-{generation}.sdb")
}

pub fn log_name(generation: u64) -> String {
    format!("log-{generation}.aof")
}

/// A file name the manifest may contain: plain, inside the data directory.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.contains('\\') && s != "." && s != ".."
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not a sessiond manifest (bad first line)".into());
        }
        let mut m = Manifest::default();
        for (n, line) in lines.enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (kind, arg) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {}: '{line}'", n + 2))?;
            match kind {
                "generation" => {
                    m.generation = arg
                        .parse()
                        .map_err(|_| format!("line {}: bad generation '{arg}'", n + 2))?
                }
                "snapshot" if plain_name(arg) && m.snapshot.is_none() => {
                    m.snapshot = Some(arg.to_string())
                }
                "log" if plain_name(arg) => m.logs.push(arg.to_string()),
                _ => return Err(format!("line {}: '{line}'", n + 2)),
            }
        }
        Ok(m)
    }

    pub fn render(&self) -> String {
        let mut s = format!("{HEADER}\ngeneration {}\n", self.generation);
        if let Some(snap) = &self.snapshot {
            s.push_str(&format!("snapshot {snap}\n"));
        }
        for l in &self.logs {
            s.push_str(&format!("log {l}\n"));
        }
        s
    }

    /// Reads the manifest of `dir`; `Ok(None)` if there is none (a new data directory).
    pub fn read(dir: &Path) -> Result<Option<Manifest>, String> {
        let path = dir.join(MANIFEST);
        match fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Replaces the manifest of `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(self.render().as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, dir.join(MANIFEST))?;
        sync_dir(dir)
    }

    /// The manifest the data files present in `dir` imply, for a directory whose manifest
    /// is missing (deleted by hand, lost with a partial backup restore). `Ok(None)` when
    /// there are no data files: a new directory.
    ///
    /// The rewrite procedure (see `mod.rs`) makes this well defined: `snapshot-K.sdb` exists
    /// only once complete (written as `.tmp`, fsynced, renamed), and it holds the state as of
    /// the switch to `log-K.aof`, so the newest snapshot plus every log of generation `K` or
    /// later, in order, is the data. Older logs are ones a finished rewrite had not yet
    /// deleted. Without a snapshot, every log from the oldest is the data. This is what
    /// Redis's multi-part AOF loader does with its base and incremental files.
    pub fn infer(dir: &Path) -> Result<Option<Manifest>, String> {
        let found = DataFiles::scan(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if found.snapshots.is_empty() && found.logs.is_empty() {
            return Ok(None);
        }
        let snapshot = found.snapshots.iter().max().copied();
        let from = snapshot.unwrap_or(0);
        let mut logs: Vec<u64> = found.logs.iter().copied().filter(|&g| g >= from).collect();
        logs.sort_unstable();
        Ok(Some(Manifest {
            generation: found.max_generation,
            snapshot: snapshot.map(snapshot_name),
            logs: logs.into_iter().map(log_name).collect(),
        }))
    }

    /// Every file this manifest names.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.snapshot
            .iter()
            .chain(self.logs.iter())
            .map(String::as_str)
    }
}

/// The data files found in a directory, by generation.
#[derive(Debug, Default)]
pub struct DataFiles {
    pub snapshots: Vec<u64>,
    pub logs: Vec<u64>,
    /// The highest generation any of our file names carries, temporary ones included:
    /// a new generation is numbered past it, so creating a file never meets an old one.
    pub max_generation: u64,
}

impl DataFiles {
    pub fn scan(dir: &Path) -> io::Result<DataFiles> {
        let mut found = DataFiles::default();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let (generation, kind) = match parse_name(name) {
                Some(x) => x,
                None => continue,
            };
            found.max_generation = found.max_generation.max(generation);
            match kind {
                FileKind::Snapshot => found.snapshots.push(generation),
                FileKind::Log => found.logs.push(generation),
                FileKind::Temporary => {}
            }
        }
        Ok(found)
    }
}

enum FileKind {
    Snapshot,
    Log,
    Temporary,
}

/// `snapshot-N.sdb`, `log-N.aof`, or one of those with a `.tmp` suffix.
fn parse_name(name: &str) -> Option<(u64, FileKind)> {
    let (name, tmp) = match name.strip_suffix(".tmp") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let (n, kind) = if let Some(rest) = name.strip_prefix("snapshot-") {
        (rest.strip_suffix(".sdb")?, FileKind::Snapshot)
    } else {
        let rest = name.strip_prefix("log-")?;
        (rest.strip_suffix(".aof")?, FileKind::Log)
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let g = n.parse().ok()?;
    Some((g, if tmp { FileKind::Temporary } else { kind }))
}

/// Makes renames and creations in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_paths() {
        let m = Manifest {
            generation: 3,
            snapshot: Some(snapshot_name(3)),
            logs: vec![log_name(3), log_name(4)],
        };
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert!(Manifest::parse("# sessiond manifest v1\nlog ../etc/passwd\n").is_err());
        assert!(Manifest::parse("hello\n").is_err());
        assert!(Manifest::parse("# sessiond manifest v1\nsnapshot a\nsnapshot b\n").is_err());
    }

    fn dir_with(name: &str, files: &[&str]) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sessiond-infer-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for f in files {
            File::create(dir.join(f)).unwrap();
        }
        dir
    }

    #[test]
    fn infer_takes_the_newest_snapshot_and_the_logs_after_it() {
        let dir = dir_with(
            "full",
            &[
                "snapshot-3.sdb",
                "snapshot-5.sdb",
                "log-3.aof",
                "log-4.aof",
                "log-5.aof",
                "log-12.aof",
                "log-6.aof",
                "snapshot-13.sdb.tmp",
                "log-x.aof",
                "notes.txt",
            ],
        );
        let m = Manifest::infer(&dir).unwrap().unwrap();
        assert_eq!(m.snapshot.as_deref(), Some("snapshot-5.sdb"));
        assert_eq!(m.logs, ["log-5.aof", "log-6.aof", "log-12.aof"]);
        assert_eq!(m.generation, 13, "past every file name, temporary ones too");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn infer_without_snapshot_or_files() {
        let dir = dir_with("logs", &["log-2.aof", "log-1.aof"]);
        let m = Manifest::infer(&dir).unwrap().unwrap();
        assert_eq!(m.snapshot, None);
        assert_eq!(m.logs, ["log-1.aof", "log-2.aof"]);
        assert_eq!(m.generation, 2);
        let _ = fs::remove_dir_all(&dir);
        let dir = dir_with("empty", &["LOCK", "admin.token"]);
        assert_eq!(Manifest::infer(&dir).unwrap(), None);
        let _ = fs::remove_dir_all(dir);
    }
}
