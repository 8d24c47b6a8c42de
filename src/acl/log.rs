//! `ACL LOG`: refused commands and failed AUTHs, newest first, bounded.
//!
//! As in Redis, an event like a recent one (same reason, context, object and user, within
//! 60 s) bumps that entry's count instead of adding one, so a client retrying a forbidden
//! command or guessing passwords in a loop fills one entry, not the log; and the log keeps
//! at most `acllog-max-len` entries (default 128). Memory is bounded either way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How long an entry keeps absorbing like events.
const GROUPING_MS: i64 = 60_000;
/// How many of the newest entries are searched for a like one.
const GROUPING_SEARCH: usize = 10;
pub const DEFAULT_MAX_LEN: usize = 128;

#[derive(Clone, Debug)]
pub struct Entry {
    pub count: u64,
    pub reason: &'static str,
    pub context: &'static str,
    pub object: String,
    pub username: String,
    /// When the entry last absorbed an event (unix ms).
    pub updated_ms: i64,
    pub client_info: String,
}

pub struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
    pub max_len: AtomicUsize,
}

impl Default for AclLog {
    fn default() -> Self {
        AclLog {
            entries: Mutex::new(VecDeque::new()),
            max_len: AtomicUsize::new(DEFAULT_MAX_LEN),
        }
    }
}

impl AclLog {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        reason: &'static str,
        context: &'static str,
        object: String,
        username: String,
        client_info: String,
        now_ms: i64,
    ) {
        let max = self.max_len.load(Ordering::Relaxed);
        let mut log = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let like = log.iter().take(GROUPING_SEARCH).position(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now_ms - e.updated_ms < GROUPING_MS
        });
        if let Some(i) = like {
            if let Some(mut e) = log.remove(i) {
                e.count += 1;
                e.updated_ms = now_ms;
                e.client_info = client_info;
                log.push_front(e);
            }
        } else {
            log.push_front(Entry {
                count: 1,
                reason,
                context,
                object,
                username,
                updated_ms: now_ms,
                client_info,
            });
        }
        log.truncate(max);
    }

    /// The newest `n` entries.
    pub fn newest(&self, n: usize) -> Vec<Entry> {
        let log = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().take(n).cloned().collect()
    }

    pub fn reset(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Applies a new `acllog-max-len` at once.
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Ordering::Relaxed);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_events_group_and_the_log_is_bounded() {
        let log = AclLog::default();
        for i in 0..5 {
            log.add(
                "auth",
                "toplevel",
                "AUTH".into(),
                "app".into(),
                String::new(),
                i,
            );
        }
        assert_eq!(log.newest(10).len(), 1);
        assert_eq!(log.newest(10)[0].count, 5);
        log.add(
            "auth",
            "toplevel",
            "AUTH".into(),
            "app".into(),
            String::new(),
            70_000,
        );
        assert_eq!(log.newest(10).len(), 2, "past 60 s: a new entry");
        log.set_max_len(3);
        for i in 0..10 {
            log.add(
                "key",
                "toplevel",
                format!("k{i}"),
                "app".into(),
                String::new(),
                0,
            );
        }
        assert_eq!(log.newest(100).len(), 3);
        assert_eq!(log.newest(1)[0].object, "k9");
    }
}
