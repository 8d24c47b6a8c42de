//! Key prefixes stored once for the whole process.
//!
//! Session frameworks name every key `<prefix><id>`: phpredis `PHPREDIS_SESSION:`, Spring
//! `spring:session:sessions:`, connect-redis `sess:`. A million sessions repeat the same
//! 17–24 bytes a million times. Instead, a record whose key starts with a known prefix keeps
//! a 3-bit id of it (in its header's spare bits, so the header does not grow) and only the
//! rest of the key. Lookups compare the prefix and the rest in place; hashing, persistence
//! and replies see the whole key, so nothing outside `entry.rs` knows.
//!
//! **Which prefixes.** A key's candidate is its part up to and including its last `:`, if
//! that is 4 to 64 bytes long. Ids live as long as a record holds them, so they are never
//! reused: the table only grows, and 7 ids fit in 3 bits. So a candidate must earn a slot:
//! it is admitted once one worker thread has seen it on [`ADMIT`] new keys. Counts are kept
//! per thread (no shared write on the insert path) in a small table of candidate hashes where
//! the least-seen gives way; so the families of a few keys each (`user:17:`) churn there and
//! never reach a slot, while a session prefix reaches one within its first hundred sessions.
//! When the slots are full, keys of other prefixes are stored whole, as before.

use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

/// Ids 1..=IDS name a prefix; 0 is "none".
pub const IDS: usize = 7;
const MIN_LEN: usize = 4;
const MAX_LEN: usize = 64;
/// New keys one thread must see under a candidate before it takes a slot.
pub const ADMIT: u32 = 64;
/// Candidates counted per thread.
const CANDIDATES: usize = 16;

pub struct Registry {
    slots: [OnceLock<Box<[u8]>>; IDS],
    admit: u32,
    register: Mutex<()>,
}

static GLOBAL: Registry = Registry::new(ADMIT);

thread_local! {
    /// (hash of a candidate, times seen) — see the module's doc.
    static SEEN: RefCell<[(u64, u32); CANDIDATES]> = const { RefCell::new([(0, 0); CANDIDATES]) };
}

/// The process's registry, which records use.
pub fn global() -> &'static Registry {
    #[cfg(test)]
    {
        // Unit tests of the record layout need a prefix whose id does not depend on which
        // tests ran first in this process.
        static FIRST: std::sync::Once = std::sync::Once::new();
        FIRST.call_once(|| {
            GLOBAL.register(b"PHPREDIS_SESSION:");
        });
    }
    &GLOBAL
}

/// FNV-1a: only to count candidates; a collision merely admits a prefix early.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Registry {
    pub const fn new(admit: u32) -> Registry {
        Registry {
            slots: [const { OnceLock::new() }; IDS],
            admit,
            register: Mutex::new(()),
        }
    }

    /// The prefix of id `id` (1..=IDS, already handed out).
    #[inline]
    pub fn get(&self, id: u8) -> &[u8] {
        match id
            .checked_sub(1)
            .and_then(|i| self.slots.get(usize::from(i)))
        {
            Some(s) => s.get().map_or(&[][..], |b| &b[..]),
            None => &[],
        }
    }

    /// The id and length of the prefix a new record of `key` should use: (0, 0) for none.
    #[inline]
    pub fn split(&self, key: &[u8]) -> (u8, usize) {
        let Some(end) = key.iter().rposition(|&b| b == b':') else {
            return (0, 0);
        };
        let len = end + 1;
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return (0, 0);
        }
        let cand = &key[..len];
        for (i, s) in self.slots.iter().enumerate() {
            match s.get() {
                Some(p) if **p == *cand => return (i as u8 + 1, len),
                Some(_) => {}
                // Slots fill in order: past the first empty one there is nothing.
                None => {
                    if self.seen(cand) >= self.admit {
                        let id = self.register(cand);
                        if id != 0 {
                            return (id, len);
                        }
                    }
                    return (0, 0);
                }
            }
        }
        (0, 0)
    }

    /// Counts one sighting of `cand` on this thread; the count so far.
    fn seen(&self, cand: &[u8]) -> u32 {
        let h = fnv(cand);
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(e) = s.iter_mut().find(|e| e.0 == h && e.1 > 0) {
                e.1 = e.1.saturating_add(1);
                return e.1;
            }
            let i = (0..CANDIDATES).min_by_key(|&i| s[i].1).unwrap_or(0);
            s[i] = (h, 1);
            1
        })
    }

    /// Hands `prefix` a slot (or finds the one it has): its id, 0 if the slots are full.
    pub fn register(&self, prefix: &[u8]) -> u8 {
        let _g = self.register.lock().unwrap_or_else(|p| p.into_inner());
        for (i, s) in self.slots.iter().enumerate() {
            match s.get() {
                Some(p) if **p == *prefix => return i as u8 + 1,
                Some(_) => {}
                None => {
                    let _ = s.set(prefix.into());
                    return i as u8 + 1;
                }
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_takes_a_slot_after_admit_new_keys() {
        let r = Registry::new(3);
        assert_eq!(r.split(b"sess-test-a:1"), (0, 0));
        assert_eq!(r.split(b"sess-test-a:2"), (0, 0));
        assert_eq!(r.split(b"sess-test-a:3"), (1, 12));
        assert_eq!(r.get(1), b"sess-test-a:");
        assert_eq!(r.split(b"sess-test-a:"), (1, 12));
        // The last colon decides; too short or too long is never a prefix.
        assert_eq!(r.split(b"sess-test-a:x:y").0, 0);
        for k in [&b"ab:x"[..], b"nocolon", &[b'p'; 70]] {
            for _ in 0..5 {
                assert_eq!(r.split(k), (0, 0));
            }
        }
    }

    #[test]
    fn seven_slots_then_keys_stay_whole() {
        let r = Registry::new(1);
        for i in 0..IDS {
            let k = format!("family-{i}:x");
            assert_eq!(r.split(k.as_bytes()), (i as u8 + 1, 9));
        }
        assert_eq!(r.split(b"family-9:x"), (0, 0));
        assert_eq!(r.split(b"family-0:y"), (1, 9));
        assert_eq!(r.get(0), b"");
        assert_eq!(r.get(8), b"");
    }

    #[test]
    fn families_of_few_keys_do_not_take_slots() {
        let r = Registry::new(ADMIT);
        for u in 0..10_000 {
            for f in ["a", "b", "c"] {
                let k = format!("user-test:{u}:{f}");
                assert_eq!(r.split(k.as_bytes()), (0, 0));
            }
        }
        assert_eq!(r.get(1), b"");
    }
}
