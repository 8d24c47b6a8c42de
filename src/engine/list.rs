//! The list type's representation, and why lists carry a version.
//!
//! A list is a pack (its version, then its elements head to tail) while it stays under the
//! pack limits, and a [`BigList`] ring buffer after. Reads go through [`ListRef`]; every
//! change is one of a few [`Edit`]s (push at either end, pop from either end, set, insert or
//! remove at an index, trim), applied by [`apply`] and called only from `mutate.rs`, which
//! logs each edit.
//!
//! **Versions.** The log records results so that replaying it over a snapshot taken while
//! writes went on (a fuzzy snapshot, `persist/mod.rs`) converges: SET of a value, HSET of a
//! field and SADD of a member can be applied twice with no harm. A list edit cannot: pushing
//! twice pushes two elements. So every list holds a version, a number drawn from one
//! engine-wide counter that only grows, and each logged edit names the version it applies to
//! and the version it makes. Replay applies an edit only to the list at exactly that
//! version; an edit the snapshot already contains names an older version and is skipped. An
//! edit that creates a list (version 0) replaces whatever older value the key holds (an
//! expired list is not in the log, so it can still be there during replay) unless the list
//! there is already newer. The counter is moved past every version loaded at start.

use std::sync::atomic::{AtomicU64, Ordering};

use super::entry::Entry;
use super::value::{
    packed_len, BigList, Kind, Obj, Pack, PackWriter, PACK_MAX_BYTES, PACK_MAX_ELEMENT,
};

/// One change to a list; indexes are 0-based and within the list (the command checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit<'a> {
    /// The list becomes `elems` followed by the list.
    PushHead(Vec<&'a [u8]>),
    /// The list becomes the list followed by `elems`.
    PushTail(Vec<&'a [u8]>),
    PopHead(usize),
    PopTail(usize),
    Set(usize, &'a [u8]),
    /// Insert before index (index == length: at the tail).
    Insert(usize, &'a [u8]),
    Remove(usize),
    /// Keep the elements `start..=end` (an empty range empties the list).
    Trim(usize, usize),
}

/// The engine-wide version counter.
#[derive(Debug)]
pub struct Versions(AtomicU64);

impl Default for Versions {
    fn default() -> Self {
        // Start from the clock in microseconds, so versions keep growing across restarts
        // even before the loaded ones are seen.
        Versions(AtomicU64::new(crate::clock::now_us().max(1) as u64))
    }
}

impl Versions {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Moves the counter past a version found in loaded data.
    pub fn seen(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

/// A list, read-only, in either encoding.
#[derive(Clone, Copy)]
pub enum ListRef<'a> {
    Pack(Pack<'a>),
    Big(&'a BigList),
}

impl<'a> ListRef<'a> {
    pub fn of(e: &'a Entry) -> Option<ListRef<'a>> {
        match e.kind() {
            Kind::ListPack => Some(ListRef::Pack(Pack(e.value()))),
            Kind::List => match e.obj() {
                Some(Obj::List(l)) => Some(ListRef::Big(l)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ListRef::Pack(p) => p.count().saturating_sub(1),
            ListRef::Big(l) => l.items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn version(&self) -> u64 {
        match self {
            ListRef::Pack(p) => p
                .iter()
                .next()
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_le_bytes),
            ListRef::Big(l) => l.version,
        }
    }

    /// Elements from the head.
    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = &'a [u8]> + 'a> {
        match *self {
            ListRef::Pack(p) => {
                let v: Vec<&'a [u8]> = p.iter().skip(1).collect();
                Box::new(v.into_iter())
            }
            ListRef::Big(l) => Box::new(l.items.iter().map(|e| &**e)),
        }
    }

    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        match *self {
            ListRef::Pack(p) => p.iter().nth(i + 1),
            ListRef::Big(l) => l.items.get(i).map(|e| &**e),
        }
    }

    /// As `OBJECT ENCODING` names it. Redis 7.0, the oracle of the tests, stores every list
    /// as a quicklist; small lists are packs here, and named as 7.0 names them.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }
}

fn fits<'e>(elems: impl Iterator<Item = &'e [u8]>) -> (bool, usize) {
    let mut bytes = 9;
    for e in elems {
        if e.len() > PACK_MAX_ELEMENT {
            return (false, 0);
        }
        bytes += packed_len(e);
        if bytes > PACK_MAX_BYTES {
            return (false, 0);
        }
    }
    (true, bytes)
}

/// A list of `elems` at `version`, in the encoding its size calls for.
pub(super) fn new_entry(key: &[u8], elems: &[&[u8]], version: u64, expire: i64, lru: u32) -> Entry {
    match fits(elems.iter().copied()) {
        (true, bytes) => {
            let mut w = PackWriter::new(elems.len() + 1, bytes);
            w.push(&version.to_le_bytes());
            for e in elems {
                w.push(e);
            }
            Entry::with_kind(key, Kind::ListPack, &w.finish(), expire, lru)
        }
        (false, _) => {
            let mut l = BigList::new(version);
            for e in elems {
                l.push_back(e);
            }
            Entry::boxed(key, Box::new(Obj::List(l)), expire, lru)
        }
    }
}

/// Applies `edit` to the list record `e` and gives it `version`.
pub(super) fn apply(e: &mut Entry, edit: &Edit<'_>, version: u64) {
    if let Some(Obj::List(l)) = e.obj_mut() {
        match edit {
            Edit::PushHead(v) => {
                for x in v.iter().rev() {
                    l.push_front(x);
                }
            }
            Edit::PushTail(v) => {
                for x in v {
                    l.push_back(x);
                }
            }
            Edit::PopHead(n) => {
                for _ in 0..*n {
                    l.pop_front();
                }
            }
            Edit::PopTail(n) => {
                for _ in 0..*n {
                    l.pop_back();
                }
            }
            Edit::Set(i, x) => l.set(*i, x),
            Edit::Insert(i, x) => l.insert((*i).min(l.items.len()), x),
            Edit::Remove(i) => l.remove(*i),
            Edit::Trim(s, t) => {
                let len = l.items.len();
                if *s > *t || *s >= len {
                    *l = BigList::default();
                } else {
                    for _ in (*t + 1)..len {
                        l.pop_back();
                    }
                    for _ in 0..*s {
                        l.pop_front();
                    }
                }
            }
        }
        l.version = version;
        l.shrink();
        return;
    }
    // A pack: rebuild it with the edit applied.
    let old: Vec<&[u8]> = Pack(e.value()).iter().skip(1).collect();
    let mut new: Vec<&[u8]> = Vec::with_capacity(old.len() + 1);
    match edit {
        Edit::PushHead(v) => {
            new.extend(v.iter().copied());
            new.extend(old.iter().copied());
        }
        Edit::PushTail(v) => {
            new.extend(old.iter().copied());
            new.extend(v.iter().copied());
        }
        Edit::PopHead(n) => new.extend(old.iter().skip(*n).copied()),
        Edit::PopTail(n) => new.extend(old.iter().take(old.len().saturating_sub(*n)).copied()),
        Edit::Set(i, x) => {
            new.extend(old.iter().copied());
            if let Some(slot) = new.get_mut(*i) {
                *slot = x;
            }
        }
        Edit::Insert(i, x) => {
            new.extend(old.iter().copied());
            new.insert((*i).min(new.len()), x);
        }
        Edit::Remove(i) => {
            new.extend(old.iter().copied());
            if *i < new.len() {
                new.remove(*i);
            }
        }
        Edit::Trim(s, t) => {
            if s <= t && *s < old.len() {
                new.extend(old[*s..=(*t).min(old.len() - 1)].iter().copied());
            }
        }
    }
    let rebuilt = new_entry(b"", &new, version, 0, 0);
    match rebuilt.kind() {
        Kind::ListPack => e.set_packed(Kind::ListPack, rebuilt.value()),
        _ => {
            let mut l = BigList::new(version);
            for x in &new {
                l.push_back(x);
            }
            e.set_boxed(Box::new(Obj::List(l)));
        }
    }
}

const PUSH_HEAD: u8 = 1;
const PUSH_TAIL: u8 = 2;
const POP_HEAD: u8 = 3;
const POP_TAIL: u8 = 4;
const SET: u8 = 5;
const INSERT: u8 = 6;
const REMOVE: u8 = 7;
const TRIM: u8 = 8;

/// An edit as the log stores it: a code, then varints (counts, indexes) and elements as a
/// pack (`persist/format.rs` LEDIT).
pub fn encode(edit: &Edit<'_>) -> Vec<u8> {
    let (code, nums, elems): (u8, Vec<usize>, Vec<&[u8]>) = match edit {
        Edit::PushHead(v) => (PUSH_HEAD, vec![], v.clone()),
        Edit::PushTail(v) => (PUSH_TAIL, vec![], v.clone()),
        Edit::PopHead(n) => (POP_HEAD, vec![*n], vec![]),
        Edit::PopTail(n) => (POP_TAIL, vec![*n], vec![]),
        Edit::Set(i, x) => (SET, vec![*i], vec![x]),
        Edit::Insert(i, x) => (INSERT, vec![*i], vec![x]),
        Edit::Remove(i) => (REMOVE, vec![*i], vec![]),
        Edit::Trim(a, b) => (TRIM, vec![*a, *b], vec![]),
    };
    let mut w = PackWriter::new(1 + nums.len() + elems.len(), 16);
    w.push(&[code]);
    for n in nums {
        w.push(&(n as u64).to_le_bytes());
    }
    for e in elems {
        w.push(e);
    }
    w.finish()
}

/// Reads an edit written by [`encode`]; None if malformed.
pub fn decode(b: &[u8]) -> Option<Edit<'_>> {
    Pack::parse(b)?;
    let mut it = Pack(b).iter();
    let code = *it.next()?.first()?;
    let mut num = || -> Option<usize> {
        usize::try_from(u64::from_le_bytes(it.next()?.try_into().ok()?)).ok()
    };
    Some(match code {
        PUSH_HEAD | PUSH_TAIL => {
            let v: Vec<&[u8]> = Pack(b).iter().skip(1).collect();
            if code == PUSH_HEAD {
                Edit::PushHead(v)
            } else {
                Edit::PushTail(v)
            }
        }
        POP_HEAD => Edit::PopHead(num()?),
        POP_TAIL => Edit::PopTail(num()?),
        SET => {
            let i = num()?;
            Edit::Set(i, Pack(b).iter().nth(2)?)
        }
        INSERT => {
            let i = num()?;
            Edit::Insert(i, Pack(b).iter().nth(2)?)
        }
        REMOVE => Edit::Remove(num()?),
        TRIM => {
            let a = num()?;
            Edit::Trim(a, num()?)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(e: &Entry) -> Vec<Vec<u8>> {
        ListRef::of(e)
            .map(|l| l.iter().map(<[u8]>::to_vec).collect())
            .unwrap_or_default()
    }

    #[test]
    fn edits_apply_alike_in_both_encodings() {
        let mut small = new_entry(b"k", &[b"a", b"b"], 1, 0, 0);
        let big_elem = vec![b'x'; PACK_MAX_ELEMENT + 1];
        let mut big = new_entry(b"k", &[b"a", b"b", &big_elem], 1, 0, 0);
        assert_eq!(big.kind(), Kind::List);
        apply(&mut big, &Edit::PopTail(1), 2);
        for (i, edit) in [
            Edit::PushHead(vec![b"c", b"d"]),
            Edit::PushTail(vec![b"e"]),
            Edit::Set(1, b"D"),
            Edit::Insert(2, b"i"),
            Edit::Remove(0),
            Edit::PopHead(1),
            Edit::PopTail(1),
            Edit::Trim(1, 5),
        ]
        .iter()
        .enumerate()
        {
            apply(&mut small, edit, 10 + i as u64);
            apply(&mut big, edit, 10 + i as u64);
            assert_eq!(items(&small), items(&big), "after {edit:?}");
        }
        assert_eq!(items(&small), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(ListRef::of(&small).map(|l| l.version()), Some(17));
        assert_eq!(ListRef::of(&big).map(|l| l.version()), Some(17));
        apply(&mut small, &Edit::Trim(5, 1), 18);
        assert_eq!(ListRef::of(&small).map(|l| l.len()), Some(0));
    }

    #[test]
    fn edits_round_trip_through_the_log_encoding() {
        for edit in [
            Edit::PushHead(vec![b"c", b"", b"d"]),
            Edit::PushTail(vec![b"e"]),
            Edit::PopHead(3),
            Edit::PopTail(1),
            Edit::Set(1, b"D"),
            Edit::Insert(2, b"i"),
            Edit::Remove(0),
            Edit::Trim(1, 5),
        ] {
            let b = encode(&edit);
            assert_eq!(decode(&b), Some(edit));
        }
        assert_eq!(decode(b"\x01\x01\x09"), None);
    }
}
