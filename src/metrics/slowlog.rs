//! The slow log (`SLOWLOG GET/LEN/RESET`, as Redis's `slowlog.c`): the last
//! `slowlog-max-len` commands that ran for at least `slowlog-log-slower-than` microseconds.
//!
//! **No key or value is ever written to it.** A session store's keys are session ids (a
//! bearer credential) and its values are users' session data, and the slow log is read by
//! whoever can run `SLOWLOG GET`. So an entry keeps the command's name (and subcommand)
//! and replaces every other argument by its length and the first 8 hex digits of its
//! SHA-1: `sha1:1f3a6b2c (36 bytes)`. That is enough to tell arguments apart and to check
//! whether a known session id was involved (`printf %s "$id" | sha1sum`), and not enough to
//! read one back. Redis shows arguments up to 128 bytes; this is where sessiond differs on
//! purpose. The arguments of `AUTH` and `HELLO` (passwords, even hashed) are not kept at all.
//!
//! Recording: the command's duration is compared with the threshold (a relaxed atomic) on
//! every command; only a slow one takes the log's mutex.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Redis's limit of arguments kept per entry (the last slot says how many more there were).
const MAX_ARGS: usize = 32;

#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u64,
    pub unix_secs: i64,
    pub micros: u64,
    pub args: Vec<Bytes>,
    pub peer: String,
    pub name: String,
}

pub struct SlowLog {
    /// µs; negative: off; 0: every command.
    pub slower_than: AtomicI64,
    pub max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

/// An argument as the slow log shows it (see the module docs).
pub fn redact(arg: &[u8]) -> Bytes {
    let digest = sha1_smol::Sha1::from(arg).digest().to_string();
    Bytes::from(format!("sha1:{} ({} bytes)", &digest[..8], arg.len()))
}

impl SlowLog {
    pub fn new(slower_than: i64, max_len: usize) -> Self {
        SlowLog {
            slower_than: AtomicI64::new(slower_than),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a command that took `micros` belongs in the log.
    pub fn is_slow(&self, micros: u64) -> bool {
        let t = self.slower_than.load(Ordering::Relaxed);
        t >= 0 && micros >= t as u64
    }

    /// Logs a slow command. `keep` is how many leading arguments are shown as they are (the
    /// name, and the subcommand of a container command).
    pub fn push(&self, args: &[&[u8]], keep: usize, micros: u64, peer: &str, name: &str) {
        let max_len = self.max_len.load(Ordering::Relaxed);
        if max_len == 0 {
            return;
        }
        let secret = args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"auth") || n.eq_ignore_ascii_case(b"hello"));
        let shown = args.len().min(MAX_ARGS);
        let mut out = Vec::with_capacity(shown);
        for (i, a) in args.iter().enumerate().take(shown) {
            if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
                out.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGS + 1
                )));
                break;
            }
            out.push(if i < keep {
                Bytes::copy_from_slice(&a[..a.len().min(128)])
            } else if secret {
                Bytes::from_static(b"(redacted)")
            } else {
                redact(a)
            });
        }
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_secs: crate::clock::now_ms() / 1000,
            micros,
            args: out,
            peer: peer.to_string(),
            name: name.to_string(),
        };
        let mut q = self.lock();
        q.push_front(entry);
        q.truncate(max_len);
    }

    /// The newest `count` entries, newest first.
    pub fn newest(&self, count: usize) -> Vec<Entry> {
        self.lock().iter().take(count).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// `CONFIG SET slowlog-max-len`: a shorter log drops its oldest entries at once.
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Ordering::Relaxed);
        self.lock().truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_never_kept() {
        let log = SlowLog::new(0, 10);
        let key = b"spring:session:sessions:6f1c2a9e-4c1b-4c57-9a3e-2b1f0d6d5e77";
        log.push(
            &[b"HSET", key, b"attr", b"secret value"],
            1,
            12,
            "1.2.3.4:5",
            "app",
        );
        let e = &log.newest(1)[0];
        assert_eq!(e.args[0], Bytes::from_static(b"HSET"));
        let shown: Vec<String> = e
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into())
            .collect();
        for s in &shown[1..] {
            assert!(s.starts_with("sha1:") && s.ends_with(" bytes)"), "{s}");
        }
        assert!(!shown
            .iter()
            .any(|s| s.contains("session") || s.contains("secret")));
        assert_eq!(
            shown[1],
            format!(
                "sha1:{} ({} bytes)",
                &sha1_smol::Sha1::from(&key[..]).digest().to_string()[..8],
                key.len()
            )
        );
    }

    #[test]
    fn passwords_are_redacted_entirely() {
        let log = SlowLog::new(0, 10);
        log.push(&[b"AUTH", b"user", b"hunter2"], 1, 12, "", "");
        let e = &log.newest(1)[0];
        assert_eq!(&e.args[1][..], b"(redacted)");
        assert_eq!(&e.args[2][..], b"(redacted)");
    }

    #[test]
    fn the_log_keeps_the_newest_entries_up_to_its_length() {
        let log = SlowLog::new(0, 3);
        for i in 0..5u8 {
            log.push(&[b"GET", &[i]], 1, u64::from(i), "", "");
        }
        assert_eq!(log.len(), 3);
        let ids: Vec<u64> = log.newest(10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [4, 3, 2]);
        log.set_max_len(1);
        assert_eq!(log.newest(10)[0].id, 4);
        assert_eq!(log.len(), 1);
        assert!(!SlowLog::new(-1, 3).is_slow(1_000_000));
        assert!(SlowLog::new(0, 3).is_slow(0));
        assert!(!SlowLog::new(10, 3).is_slow(9));
    }

    #[test]
    fn long_commands_keep_redis_s_argument_count() {
        let log = SlowLog::new(0, 3);
        let args: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        log.push(&refs, 1, 5, "", "");
        let e = &log.newest(1)[0];
        assert_eq!(e.args.len(), 32);
        assert_eq!(&e.args[31][..], b"... (9 more arguments)");
    }
}
