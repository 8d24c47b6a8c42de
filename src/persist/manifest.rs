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
        let mut f = File::create(&tmp)?;
        f.write_all(self.render().as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(MANIFEST))?;
        sync_dir(dir)
    }

    /// Every file this manifest names.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.snapshot
            .iter()
            .chain(self.logs.iter())
            .map(String::as_str)
    }
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
}
