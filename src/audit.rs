//! The audit log: every change an operator (or the migration guard) makes to the dark
//! launch, or to a session through the console, with who made it, when, from what to what,
//! and why.
//!
//! Lines are JSON, appended to `<dir>/audit.log` (one object per line, so `jq` and log
//! shippers read it as it is), and the last [`RECENT`] are kept in memory for the console.
//! "Who" is never a secret: an admin token appears as `token:` and the first 8 hex digits of
//! its SHA-1, a client as its id and address.
//!
//! Changes are rare (a stage step, a logout), so the append is done inline; a failure to
//! write is logged (rate-limited) and the change itself still happens: the audit trail
//! must not become a way to block the operator from stepping a migration back.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Entries kept in memory for the console.
pub const RECENT: usize = 200;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub at_ms: i64,
    pub who: String,
    pub what: String,
    pub from: String,
    pub to: String,
    pub why: String,
}

pub struct Audit {
    path: Option<PathBuf>,
    recent: Mutex<VecDeque<Entry>>,
}

/// Who an admin token is, without the token.
pub fn token_id(token: &str) -> String {
    let d = sha1_smol::Sha1::from(token).digest().to_string();
    format!("token:{}", &d[..8])
}

impl Audit {
    /// An audit log in `dir` (`None`: in memory only, for tests).
    pub fn new(dir: Option<&Path>) -> Audit {
        Audit {
            path: dir.map(|d| d.join("audit.log")),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn record(&self, who: &str, what: &str, from: &str, to: &str, why: &str) {
        let e = Entry {
            at_ms: crate::clock::now_ms(),
            who: who.into(),
            what: what.into(),
            from: from.into(),
            to: to.into(),
            why: why.into(),
        };
        tracing::info!(
            "audit: {who} {what}: {from} -> {to}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        );
        if let Some(path) = &self.path {
            let line = serde_json::to_string(&e).unwrap_or_default() + "\n";
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(err) = written {
                static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                crate::logging::throttled(
                    &LOG,
                    format_args!("cannot append to {}: {err}", path.display()),
                );
            }
        }
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(e);
    }

    /// The newest entries, newest first.
    pub fn recent(&self) -> Vec<Entry> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_json_lines_and_kept_newest_first() {
        let dir = std::env::temp_dir().join(format!("sessiond-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Audit::new(Some(&dir));
        a.record(&token_id("secret"), "migration", "shadow 5%", "live 5%", "");
        a.record(
            "guard",
            "migration",
            "live 5%",
            "shadow 5%",
            "new store failed 50 of 60 calls",
        );
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["who"], "guard");
        assert!(!text.contains("secret"));
        assert!(lines[0]["who"].as_str().unwrap().starts_with("token:"));
        assert_eq!(a.recent()[0].who, "guard");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
