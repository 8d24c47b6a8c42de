//! A chained hash table of [`Entry`] records, one per (shard, database).
//!
//! Chaining rather than open addressing because it gives `SCAN` Redis's guarantee for free:
//! a record always lives in the bucket its hash selects, so the reverse-binary cursor of
//! Redis's `dictScan` visits every record present for the whole iteration exactly where it
//! expects it, across any number of grows and shrinks between calls.
//!
//! Every group of `GROUP` buckets carries a deadline tag (`due`): a lower bound of the
//! earliest expiry among its records, hash fields' expiries included. Writes only lower it;
//! the active sweep (`expire.rs`) visits a group only when its tag has come, and then sets it
//! exactly again. Reading a record costs a cache miss (on virtual machines, whose hosts take
//! back pages left untouched for a few seconds, several microseconds), and a sweep that read
//! every record once a second kept 7–36% of a core busy on a million idle sessions; reading
//! a 4-byte tag per `GROUP` buckets costs almost nothing. Memory: 0.5 bytes per bucket.
//!
//! Tables grow at load factor 1 and shrink below 1/8. A resize moves the whole table at once;
//! that is bounded because a table holds only one shard's share of the keys (1/64 of the
//! database), so even a table of a million keys moves ~16k records per resize.

use super::entry::Entry;
use super::mutate::Token;
use super::value::Kind;

const MIN_BUCKETS: usize = 4;
/// Buckets per deadline tag.
pub const GROUP: usize = 8;
/// The tag of a group none of whose records has a deadline.
const NEVER: u32 = u32::MAX;

/// A deadline (ms since the Unix epoch) as a tag: whole seconds, rounded down, so a tag is
/// never later than the deadline it stands for.
fn tag(at: i64) -> u32 {
    (at.max(0) / 1000).min(NEVER as i64 - 1) as u32
}

/// The earliest deadline in a record: its own expiry, or its hash's first field expiry.
pub fn deadline(e: &Entry) -> Option<i64> {
    let own = (e.expire() != 0).then(|| e.expire());
    let field = if e.kind() == Kind::Hash {
        super::hash::HashRef::of(e).and_then(|h| h.next_expiry())
    } else {
        None
    };
    match (own, field) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub struct Table {
    buckets: Vec<Option<Entry>>,
    /// Per group of `GROUP` buckets: a tag (see [`tag`]) no later than the earliest deadline
    /// of its records, `NEVER` if none has one. Only lowered by writes; set exactly by
    /// [`retag`](Self::retag).
    due: Vec<u32>,
    len: usize,
    /// Records with a TTL (for `INFO keyspace` `expires=`).
    volatile: usize,
    /// Allocator footprint of all records (for `used_memory`).
    entry_bytes: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub const fn new() -> Self {
        Table {
            buckets: Vec::new(),
            due: Vec::new(),
            len: 0,
            volatile: 0,
            entry_bytes: 0,
        }
    }

    /// Bytes this table holds: records plus the bucket array.
    pub fn bytes(&self) -> usize {
        self.entry_bytes + self.overhead_bytes()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn volatile(&self) -> usize {
        self.volatile
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Bytes of the bucket array and its deadline tags (for memory accounting).
    pub fn overhead_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Option<Entry>>()
            + self.due.capacity() * std::mem::size_of::<u32>()
    }

    /// Lowers the tag of the group holding bucket `i` to `at`.
    #[inline]
    fn lower(&mut self, i: usize, at: Option<i64>) {
        if let Some(at) = at {
            if let Some(d) = self.due.get_mut(i / GROUP) {
                *d = (*d).min(tag(at));
            }
        }
    }

    /// Groups of buckets (each with its deadline tag).
    pub fn groups(&self) -> usize {
        self.due.len()
    }

    /// Whether group `g` may hold a record whose deadline is `now` or earlier.
    pub fn group_due(&self, g: usize, now: i64) -> bool {
        self.due.get(g).is_some_and(|&d| d <= tag(now))
    }

    /// The bucket indices of group `g`.
    pub fn group_buckets(&self, g: usize) -> std::ops::Range<usize> {
        let n = self.buckets.len();
        (g * GROUP).min(n)..((g + 1) * GROUP).min(n)
    }

    /// Sets group `g`'s tag exactly, from its records (after the sweep has visited them).
    pub fn retag(&mut self, g: usize) {
        let mut d = NEVER;
        for b in self.group_buckets(g) {
            for e in self.bucket(b) {
                if let Some(at) = deadline(e) {
                    d = d.min(tag(at));
                }
            }
        }
        if let Some(t) = self.due.get_mut(g) {
            *t = d;
        }
    }

    #[inline]
    fn index(&self, hash: u64) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    pub fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut cur = self.buckets[self.index(hash)].as_ref();
        while let Some(e) = cur {
            if e.key().is(key) {
                return Some(e);
            }
            cur = e.next().as_ref();
        }
        None
    }

    /// The slot (bucket head or predecessor's `next`) that holds `key`.
    fn slot_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Option<Entry>> {
        if self.buckets.is_empty() {
            return None;
        }
        let i = self.index(hash);
        let mut slot = &mut self.buckets[i];
        loop {
            let hit = match slot {
                None => return None,
                Some(e) => e.key().is(key),
            };
            if hit {
                return Some(slot);
            }
            slot = match slot {
                Some(e) => e.next_mut(),
                None => return None,
            };
        }
    }

    /// Mutable access for TTL and LRU updates only: value changes must go through
    /// [`overwrite`](Self::overwrite) / [`append_value`](Self::append_value) and TTL
    /// changes through [`set_expire`](Self::set_expire) so the counters stay right.
    pub fn find_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Entry> {
        self.slot_mut(hash, key).and_then(|s| s.as_mut())
    }

    /// Set or clear the TTL of a record, keeping the volatile count right.
    pub fn set_expire(&mut self, hash: u64, key: &[u8], at: i64, _: Token) -> bool {
        let Some(e) = self.find_mut(hash, key) else {
            return false;
        };
        let before = e.expire() != 0;
        e.set_expire(at);
        let after = at != 0;
        match (before, after) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        if after {
            self.lower(self.index(hash), Some(at));
        }
        true
    }

    /// Insert a record whose key is known to be absent. `hasher` recomputes hashes on resize.
    pub fn insert_new(
        &mut self,
        hash: u64,
        mut entry: Entry,
        hasher: &impl Fn(&[u8]) -> u64,
        _: Token,
    ) {
        if self.len >= self.buckets.len() {
            self.resize((self.len + 1).next_power_of_two().max(MIN_BUCKETS), hasher);
        }
        if entry.expire() != 0 {
            self.volatile += 1;
        }
        self.entry_bytes += entry.footprint();
        let i = self.index(hash);
        self.lower(i, deadline(&entry));
        *entry.next_mut() = self.buckets[i].take();
        self.buckets[i] = Some(entry);
        self.len += 1;
    }

    pub fn remove(
        &mut self,
        hash: u64,
        key: &[u8],
        hasher: &impl Fn(&[u8]) -> u64,
        _: Token,
    ) -> Option<Entry> {
        let slot = self.slot_mut(hash, key)?;
        let mut e = slot.take()?;
        *slot = e.take_next();
        self.len -= 1;
        if e.expire() != 0 {
            self.volatile -= 1;
        }
        self.entry_bytes -= e.footprint();
        self.maybe_shrink(hasher);
        Some(e)
    }

    fn maybe_shrink(&mut self, hasher: &impl Fn(&[u8]) -> u64) {
        if self.len == 0 {
            self.buckets = Vec::new();
            self.due = Vec::new();
        } else if self.buckets.len() > MIN_BUCKETS && self.len * 8 < self.buckets.len() {
            self.resize((self.len * 2).next_power_of_two().max(MIN_BUCKETS), hasher);
        }
    }

    fn resize(&mut self, size: usize, hasher: &impl Fn(&[u8]) -> u64) {
        let mut fresh: Vec<Option<Entry>> = Vec::with_capacity(size);
        fresh.resize_with(size, || None);
        let old = std::mem::replace(&mut self.buckets, fresh);
        self.due = vec![NEVER; size.div_ceil(GROUP)];
        let mask = size - 1;
        for mut head in old {
            while let Some(mut e) = head {
                head = e.take_next();
                let i = (e.key().with(hasher) as usize) & mask;
                self.lower(i, deadline(&e));
                *e.next_mut() = self.buckets[i].take();
                self.buckets[i] = Some(e);
            }
        }
    }

    /// Overwrite an existing record's value, expiry and LRU clock in one walk of its chain
    /// (the SET path), keeping the size and volatile counters right. False if absent.
    pub fn overwrite(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        expire: i64,
        lru: u32,
        _: Token,
    ) -> bool {
        let Some(e) = self.find_mut(hash, key) else {
            return false;
        };
        let (before, was_volatile) = (e.footprint(), e.expire() != 0);
        e.set_value(value);
        e.set_expire(expire);
        e.set_lru(lru);
        let after = e.footprint();
        self.entry_bytes = self.entry_bytes + after - before;
        match (was_volatile, expire != 0) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        if expire != 0 {
            self.lower(self.index(hash), Some(expire));
        }
        true
    }

    /// Changes a record's value in place through `f` (a collection write), keeping the size
    /// counter right; None if absent. `f` must not change the TTL.
    pub fn update<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        _: Token,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Option<R> {
        let e = self.find_mut(hash, key)?;
        let before = e.footprint();
        let r = f(e);
        let after = e.footprint();
        // A collection write may give a hash field a deadline.
        let at = deadline(e);
        self.entry_bytes = self.entry_bytes + after - before;
        self.lower(self.index(hash), at);
        Some(r)
    }

    /// Append to a record's value; returns the new length, None if absent.
    pub fn append_value(&mut self, hash: u64, key: &[u8], tail: &[u8], _: Token) -> Option<usize> {
        let e = self.find_mut(hash, key)?;
        let before = e.footprint();
        e.append_value(tail);
        let after = e.footprint();
        let len = e.string().map_or(0, |s| s.len());
        self.entry_bytes = self.entry_bytes + after - before;
        Some(len)
    }

    /// Visit the records of the bucket `cursor` selects and return the next cursor, 0 when the
    /// iteration is complete. This is Redis's `dictScan` cursor: the bucket index is
    /// incremented in bit-reversed order, so when the table doubles or halves between calls,
    /// buckets already visited map onto buckets the cursor will not visit again, and none not
    /// yet visited is skipped.
    pub fn scan_bucket(&self, cursor: u64, mut f: impl FnMut(&Entry)) -> u64 {
        if self.buckets.is_empty() {
            return 0;
        }
        let mask = (self.buckets.len() - 1) as u64;
        let mut cur = self.buckets[(cursor & mask) as usize].as_ref();
        while let Some(e) = cur {
            f(e);
            cur = e.next().as_ref();
        }
        let mut v = cursor | !mask;
        v = v.reverse_bits();
        v = v.wrapping_add(1);
        v.reverse_bits()
    }

    /// Remove the records of one bucket for which `dead` holds; returns the removed records'
    /// footprints summed. Used by active expiry and SCAN-style sweeps (no shrink here: the
    /// sweeper calls [`shrink_if_sparse`](Self::shrink_if_sparse) after its batch).
    pub fn purge_bucket(
        &mut self,
        index: usize,
        mut dead: impl FnMut(&Entry) -> bool,
    ) -> (usize, usize) {
        let mut removed = 0;
        let mut bytes = 0;
        let Some(mut slot) = self.buckets.get_mut(index) else {
            return (0, 0);
        };
        loop {
            let kill = match slot {
                None => break,
                Some(e) => dead(e),
            };
            if kill {
                let Some(mut e) = slot.take() else { break };
                *slot = e.take_next();
                if e.expire() != 0 {
                    self.volatile -= 1;
                }
                self.len -= 1;
                removed += 1;
                bytes += e.footprint();
                self.entry_bytes -= e.footprint();
            } else {
                slot = match slot {
                    Some(e) => e.next_mut(),
                    None => break,
                };
            }
        }
        (removed, bytes)
    }

    pub fn shrink_if_sparse(&mut self, hasher: &impl Fn(&[u8]) -> u64) {
        self.maybe_shrink(hasher);
    }

    /// The records of one bucket (for sampling).
    pub fn bucket(&self, index: usize) -> impl Iterator<Item = &Entry> {
        let mut cur = self.buckets.get(index).and_then(|b| b.as_ref());
        std::iter::from_fn(move || {
            let e = cur?;
            cur = e.next().as_ref();
            Some(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mutate::test_token;
    use std::collections::HashSet;

    fn h(k: &[u8]) -> u64 {
        use std::hash::Hasher;
        // Fixed keys: the same buckets on every run.
        let mut s = std::hash::DefaultHasher::new();
        s.write(k);
        s.finish()
    }

    /// Deadline tags: a write lowers its group's tag, a group with no deadline is never due,
    /// and `retag` raises a tag again once the early record is gone.
    #[test]
    fn deadline_tags_follow_writes() {
        let mut t = Table::new();
        let tok = test_token;
        for i in 0..64u32 {
            let k = i.to_be_bytes();
            t.insert_new(h(&k), Entry::new(&k, b"v", 0, 0), &h, tok());
        }
        let all_groups =
            |t: &Table, now: i64| (0..t.groups()).filter(|&g| t.group_due(g, now)).count();
        assert_eq!(t.groups(), 64usize.div_ceil(GROUP));
        assert_eq!(all_groups(&t, i64::MAX / 2), 0, "no deadline, never due");
        // One record gets a TTL: its group alone is due from then on.
        let k = 7u32.to_be_bytes();
        assert!(t.set_expire(h(&k), &k, 5_000, tok()));
        let g = (h(&k) as usize & (t.bucket_count() - 1)) / GROUP;
        assert!(!t.group_due(g, 3_999));
        assert!(t.group_due(g, 5_000));
        assert_eq!(all_groups(&t, 5_000), 1);
        // Raising the TTL leaves the tag early (a lower bound) until the group is re-read.
        assert!(t.set_expire(h(&k), &k, 90_000, tok()));
        assert!(t.group_due(g, 5_000));
        t.retag(g);
        assert!(!t.group_due(g, 5_000));
        assert!(t.group_due(g, 90_000));
        // A resize recomputes every tag from the records.
        for i in 64..200u32 {
            let k = i.to_be_bytes();
            t.insert_new(h(&k), Entry::new(&k, b"v", 0, 0), &h, tok());
        }
        assert_eq!(all_groups(&t, 89_999), 0);
        assert_eq!(all_groups(&t, 90_000), 1);
        // Removal leaves the tag; re-reading clears it.
        let g = (h(&k) as usize & (t.bucket_count() - 1)) / GROUP;
        assert!(t.remove(h(&k), &k, &h, tok()).is_some());
        assert!(t.group_due(g, 90_000));
        t.retag(g);
        assert_eq!(all_groups(&t, i64::MAX / 2), 0);
    }

    #[test]
    fn insert_find_remove() {
        let mut t = Table::new();
        for i in 0..1000u32 {
            let k = i.to_be_bytes();
            t.insert_new(
                h(&k),
                Entry::new(&k, b"v", if i % 2 == 0 { 5 } else { 0 }, 0),
                &h,
                test_token(),
            );
        }
        assert_eq!(t.len(), 1000);
        assert_eq!(t.volatile(), 500);
        for i in 0..1000u32 {
            assert!(t.find(h(&i.to_be_bytes()), &i.to_be_bytes()).is_some());
        }
        for i in 0..990u32 {
            assert!(t
                .remove(h(&i.to_be_bytes()), &i.to_be_bytes(), &h, test_token())
                .is_some());
        }
        assert_eq!(t.len(), 10);
        assert!(t.bucket_count() < 128, "shrunk to {}", t.bucket_count());
        assert!(t
            .find(h(&5u32.to_be_bytes()), &5u32.to_be_bytes())
            .is_none());
        assert!(t
            .find(h(&995u32.to_be_bytes()), &995u32.to_be_bytes())
            .is_some());
    }

    /// Redis's SCAN guarantee: keys present for the whole iteration are returned even when
    /// the table grows and shrinks between steps.
    #[test]
    fn scan_survives_resizes() {
        let mut t = Table::new();
        let stable: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("stable:{i}").into_bytes())
            .collect();
        for k in &stable {
            t.insert_new(h(k), Entry::new(k, b"", 0, 0), &h, test_token());
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0u32;
        loop {
            cursor = t.scan_bucket(cursor, |e| {
                seen.insert(e.key().to_vec());
            });
            step += 1;
            // Churn: grow a lot, then shrink, while the scan is in progress.
            if step.is_multiple_of(7) && step < 200 {
                for j in 0..400u32 {
                    let k = format!("tmp:{step}:{j}").into_bytes();
                    t.insert_new(h(&k), Entry::new(&k, b"", 0, 0), &h, test_token());
                }
            }
            if step.is_multiple_of(11) {
                let tmp: Vec<Vec<u8>> = (0..t.bucket_count())
                    .flat_map(|b| t.bucket(b).map(|e| e.key().to_vec()).collect::<Vec<_>>())
                    .filter(|k| k.starts_with(b"tmp:"))
                    .collect();
                for k in tmp {
                    t.remove(h(&k), &k, &h, test_token());
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for k in &stable {
            assert!(seen.contains(k), "missed {:?}", String::from_utf8_lossy(k));
        }
    }
}
